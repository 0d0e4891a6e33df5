//! CARP's HMAC-SHA1 exactly as OpenBSD computes it (reference/protocols.md §1.4).
//!
//! - **Key**: 20 bytes, the passphrase copied raw (not hashed): its first 19 bytes, then zeros
//!   ([`key_from_passphrase`]; `rampart_conf` builds [`rampart_conf::Carp::key`] the same way).
//! - **Message**: `0x02, 0x01` (version and type as two separate bytes, not the packed `0x21`),
//!   the vhid, every IPv4 VIP sorted ascending as a big-endian `u32`, every IPv6 VIP sorted
//!   ascending by `memcmp`, then the 8 counter bytes as they are on the wire. The custom-lladdr
//!   bytes OpenBSD inserts after the type when an administrator set a carp `lladdr` are not
//!   supported: rampart always uses the standard virtual MAC, for which OpenBSD inserts nothing.
//! - **Two contexts** ([`HmacContext`]): OpenBSD *sends* without IPv6 link-local addresses and
//!   *accepts* either context.
//! - **MAC**: standard HMAC-SHA1 (OpenBSD's hand-built ipad/opad is RFC 2104 with a key shorter
//!   than the block). advbase, advskew and demote are **not** covered.
//!
//! The key, vhid and address set are fixed for a group's life and OpenBSD's counter is a
//! constant cookie, so [`CarpAuthenticator`] keys the HMAC and absorbs the message prefix once;
//! signing and verifying then hash only the 8 counter bytes.

use std::net::{IpAddr, Ipv6Addr};

use hmac::{Hmac, Mac};
use rampart_dataplane::wire::carp;
use sha1::Sha1;

/// Length of a CARP key (`CARP_KEY_LEN`).
pub const KEY_LEN: usize = 20;
/// Length of the HMAC-SHA1 digest in the header.
pub const MD_LEN: usize = carp::MD_LEN;
/// Length of the counter ("replay cookie") in the header.
pub const COUNTER_LEN: usize = 8;

type HmacSha1 = Hmac<Sha1>;

/// The key `ifconfig carpN pass <passphrase>` builds: `strlcpy` into a zeroed 20-byte buffer,
/// so at most 19 bytes count and a NUL ends the passphrase early (protocols.md §1.4, TV3).
pub fn key_from_passphrase(passphrase: &[u8]) -> [u8; KEY_LEN] {
    let mut key = [0u8; KEY_LEN];
    for (slot, &byte) in key[..KEY_LEN - 1]
        .iter_mut()
        .zip(passphrase.iter().take_while(|&&b| b != 0))
    {
        *slot = byte;
    }
    key
}

/// Which IPv6 addresses the HMAC message covers (OpenBSD's `HMAC_NOV6LL` / `HMAC_ORIG`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HmacContext {
    /// Scoped (link-local) IPv6 addresses left out: what OpenBSD always sends.
    WithoutLinkLocal,
    /// Every address, link-local ones with their embedded scope bytes zeroed: accepted on
    /// receive (FreeBSD sends this way).
    WithLinkLocal,
}

/// OpenBSD's `IN6_IS_SCOPE_EMBED`: link-local unicast, and link- or interface-local multicast.
fn is_scoped(addr: &Ipv6Addr) -> bool {
    let o = addr.octets();
    (o[0] == 0xfe && o[1] & 0xc0 == 0x80) || (o[0] == 0xff && matches!(o[1] & 0x0f, 1 | 2))
}

/// The message bytes before the counter: version, type, vhid, sorted IPv4 VIPs, sorted IPv6 VIPs.
///
/// OpenBSD picks addresses with a strict "next larger than the last" scan that starts at the
/// all-zeros value and is bounded by the all-ones value, so duplicates are hashed once and the
/// all-zeros and all-ones addresses never (neither is a usable VIP; this mirrors it anyway).
pub fn message_prefix(vhid: u8, addresses: &[IpAddr], context: HmacContext) -> Vec<u8> {
    let mut v4: Vec<u32> = addresses
        .iter()
        .filter_map(|a| match a {
            IpAddr::V4(a) => Some(u32::from(*a)),
            IpAddr::V6(_) => None,
        })
        .filter(|&a| a != 0 && a != u32::MAX)
        .collect();
    v4.sort_unstable();
    v4.dedup();

    let mut v6: Vec<[u8; 16]> = addresses
        .iter()
        .filter_map(|a| match a {
            IpAddr::V6(a) => Some(*a),
            IpAddr::V4(_) => None,
        })
        .filter_map(|a| {
            let mut octets = a.octets();
            if is_scoped(&a) {
                if context == HmacContext::WithoutLinkLocal {
                    return None;
                }
                // The KAME embedded scope id (s6_addr16[1]) is zeroed before hashing.
                octets[2] = 0;
                octets[3] = 0;
            }
            Some(octets)
        })
        .filter(|o| *o != [0u8; 16] && *o != [0xffu8; 16])
        .collect();
    v6.sort_unstable();
    v6.dedup();

    let mut message = Vec::with_capacity(3 + 4 * v4.len() + 16 * v6.len() + COUNTER_LEN);
    message.extend_from_slice(&[carp::VERSION, carp::TYPE_ADVERTISEMENT, vhid]);
    for a in v4 {
        message.extend_from_slice(&a.to_be_bytes());
    }
    for a in v6 {
        message.extend_from_slice(&a);
    }
    message
}

/// The whole HMAC message for `counter` (diagnostics and tests; the engine uses
/// [`CarpAuthenticator`]).
pub fn message(
    vhid: u8,
    addresses: &[IpAddr],
    counter: &[u8; COUNTER_LEN],
    context: HmacContext,
) -> Vec<u8> {
    let mut message = message_prefix(vhid, addresses, context);
    message.extend_from_slice(counter);
    message
}

/// Signs and verifies one group's advertisements. See the [module documentation](self).
#[derive(Clone)]
pub struct CarpAuthenticator {
    /// Keyed HMAC state after the `WithoutLinkLocal` prefix: used to sign and to verify.
    without_link_local: HmacSha1,
    /// The same after the `WithLinkLocal` prefix, when the two prefixes differ (the group has a
    /// scoped IPv6 VIP); otherwise both contexts are one and the same.
    with_link_local: Option<HmacSha1>,
}

impl std::fmt::Debug for CarpAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The keyed state is a secret: show only its shape.
        f.debug_struct("CarpAuthenticator")
            .field("two_contexts", &self.with_link_local.is_some())
            .finish_non_exhaustive()
    }
}

impl CarpAuthenticator {
    /// Keys the HMAC with `key` and absorbs the message prefix of `vhid` and `addresses`.
    pub fn new(key: &[u8; KEY_LEN], vhid: u8, addresses: &[IpAddr]) -> CarpAuthenticator {
        let keyed = |context| {
            let mut mac =
                <HmacSha1 as Mac>::new_from_slice(key).expect("HMAC accepts keys of any length");
            mac.update(&message_prefix(vhid, addresses, context));
            mac
        };
        let prefix_without = message_prefix(vhid, addresses, HmacContext::WithoutLinkLocal);
        let prefix_with = message_prefix(vhid, addresses, HmacContext::WithLinkLocal);
        CarpAuthenticator {
            without_link_local: keyed(HmacContext::WithoutLinkLocal),
            with_link_local: (prefix_with != prefix_without)
                .then(|| keyed(HmacContext::WithLinkLocal)),
        }
    }

    /// The digest OpenBSD sends for `counter` (the `WithoutLinkLocal` context).
    pub fn sign(&self, counter: &[u8; COUNTER_LEN]) -> [u8; MD_LEN] {
        self.sign_in(HmacContext::WithoutLinkLocal, counter)
    }

    /// The digest for `counter` in `context`.
    pub fn sign_in(&self, context: HmacContext, counter: &[u8; COUNTER_LEN]) -> [u8; MD_LEN] {
        let mut mac = self.state(context).clone();
        mac.update(counter);
        mac.finalize().into_bytes().into()
    }

    /// The context in which `md` authenticates `counter`, trying `WithoutLinkLocal` first as
    /// OpenBSD's `carp_hmac_verify` does; `None` if neither does. Comparisons are constant-time.
    pub fn verify(&self, counter: &[u8; COUNTER_LEN], md: &[u8]) -> Option<HmacContext> {
        [HmacContext::WithoutLinkLocal, HmacContext::WithLinkLocal]
            .into_iter()
            .take(if self.with_link_local.is_some() { 2 } else { 1 })
            .find(|&context| {
                let mut mac = self.state(context).clone();
                mac.update(counter);
                mac.verify_slice(md).is_ok()
            })
    }

    fn state(&self, context: HmacContext) -> &HmacSha1 {
        match context {
            HmacContext::WithLinkLocal => self
                .with_link_local
                .as_ref()
                .unwrap_or(&self.without_link_local),
            HmacContext::WithoutLinkLocal => &self.without_link_local,
        }
    }
}
