//! IPv6 headers (RFC 8200) and the extension-header walk.
//!
//! [`Packet::new_checked`] validates 40 bytes present (`Truncated`), version 6 (`BadVersion`) and
//! 40 + payload length ≤ buffer (`Truncated`); trailing Ethernet padding is allowed.
//!
//! [`walk_extension_headers`] follows the chain to the upper-layer header in a bounded number of
//! steps, with the sanity checks pf's `pf_walk_header6` applies (see its docs). It never panics.

use std::net::Ipv6Addr;

use super::checksum;
use super::ip_protocol;
use super::{clamped, clamped_mut, read_array, read_u16, read_u32, write_u16, Field, WireError};

mod field {
    use super::Field;
    pub const VER_TC_FLOW: Field = 0..4;
    pub const PAYLOAD_LEN: Field = 4..6;
    pub const NEXT_HEADER: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC_ADDR: Field = 8..24;
    pub const DST_ADDR: Field = 24..40;
}

/// Length of the fixed IPv6 header.
pub const HEADER_LEN: usize = field::DST_ADDR.end;

/// How many extension headers [`walk_extension_headers`] follows before giving up. Six is the
/// most a sane packet carries (hop-by-hop, destination, routing, fragment, AH, destination); pf
/// allows 20, which only helps attackers. Exceeding it is `BadExtensionChain` ("ip-option").
pub const MAX_EXTENSION_HEADERS: usize = 8;

/// Length of the fragment extension header.
pub const FRAGMENT_HEADER_LEN: usize = 8;

/// A view over an IPv6 packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps `buffer` without checking it.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    /// Wraps `buffer` after checking the fixed header and the payload length.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let packet = Self::new_checked_header(buffer)?;
        if HEADER_LEN + packet.payload_len() as usize > packet.buffer.as_ref().len() {
            return Err(WireError::Truncated);
        }
        Ok(packet)
    }

    /// Wraps `buffer` after checking only the fixed header (for quoted headers in ICMPv6 errors);
    /// [`Packet::payload`] is then whatever of the payload the buffer holds.
    #[inline]
    pub fn new_checked_header(buffer: T) -> Result<Self, WireError> {
        let data = buffer.as_ref();
        if data.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if data[0] >> 4 != 6 {
            return Err(WireError::BadVersion);
        }
        Ok(Packet { buffer })
    }

    /// The wrapped buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    fn ver_tc_flow(&self) -> u32 {
        read_u32(&self.buffer.as_ref()[field::VER_TC_FLOW])
    }

    /// The version nibble (6 after `new_checked`).
    #[inline]
    pub fn version(&self) -> u8 {
        (self.ver_tc_flow() >> 28) as u8
    }

    /// Traffic class (DSCP << 2 | ECN).
    #[inline]
    pub fn traffic_class(&self) -> u8 {
        (self.ver_tc_flow() >> 20) as u8
    }

    /// The 20-bit flow label.
    #[inline]
    pub fn flow_label(&self) -> u32 {
        self.ver_tc_flow() & 0x000f_ffff
    }

    /// Payload length (extension headers included).
    #[inline]
    pub fn payload_len(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::PAYLOAD_LEN])
    }

    /// The next-header field of the fixed header.
    #[inline]
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[field::NEXT_HEADER]
    }

    /// Hop limit.
    #[inline]
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    /// Source address.
    #[inline]
    pub fn src_addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(read_array::<16>(
            self.buffer.as_ref(),
            field::SRC_ADDR.start,
        ))
    }

    /// Destination address.
    #[inline]
    pub fn dst_addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(read_array::<16>(
            self.buffer.as_ref(),
            field::DST_ADDR.start,
        ))
    }

    /// The payload (extension headers and upper layer) bounded by the payload length.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        clamped(
            self.buffer.as_ref(),
            HEADER_LEN,
            HEADER_LEN + self.payload_len() as usize,
        )
    }

    /// Walks the extension headers of the payload (see [`walk_extension_headers`]). Offsets in the
    /// result are from the start of the IPv6 header.
    #[inline]
    pub fn extension_headers(&self) -> Result<ExtensionChain, WireError> {
        let mut chain = walk_extension_headers(self.next_header(), self.payload())?;
        chain.offset += HEADER_LEN;
        if let Some(fragment) = chain.fragment.as_mut() {
            fragment.header_offset += HEADER_LEN;
        }
        Ok(chain)
    }

    /// The pseudo-header sum for an upper-layer checksum covering `upper_layer_len` bytes.
    #[inline]
    pub fn pseudo_header_sum(&self, next_header: u8, upper_layer_len: u32) -> u16 {
        checksum::pseudo_header_v6(
            &self.src_addr(),
            &self.dst_addr(),
            next_header,
            upper_layer_len,
        )
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets version 6, the traffic class and the flow label.
    #[inline]
    pub fn set_version_tc_flow(&mut self, traffic_class: u8, flow_label: u32) {
        let word = (6u32 << 28) | ((traffic_class as u32) << 20) | (flow_label & 0x000f_ffff);
        super::write_u32(&mut self.buffer.as_mut()[field::VER_TC_FLOW], word);
    }

    /// Sets the payload length.
    #[inline]
    pub fn set_payload_len(&mut self, len: u16) {
        write_u16(&mut self.buffer.as_mut()[field::PAYLOAD_LEN], len);
    }

    /// Sets the next-header field.
    #[inline]
    pub fn set_next_header(&mut self, value: u8) {
        self.buffer.as_mut()[field::NEXT_HEADER] = value;
    }

    /// Sets the hop limit (IPv6 has no header checksum to patch).
    #[inline]
    pub fn set_hop_limit(&mut self, value: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = value;
    }

    /// Decrements the hop limit; `None` (and no change) if it is already 0.
    #[inline]
    pub fn decrement_hop_limit(&mut self) -> Option<u8> {
        let hops = self.hop_limit().checked_sub(1)?;
        self.set_hop_limit(hops);
        Some(hops)
    }

    /// Sets the source address. Upper-layer checksums cover it through the pseudo-header: patch
    /// them with [`checksum::update_ipv6_addr`].
    #[inline]
    pub fn set_src_addr(&mut self, addr: &Ipv6Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&addr.octets());
    }

    /// Sets the destination address (see [`Packet::set_src_addr`] about checksums).
    #[inline]
    pub fn set_dst_addr(&mut self, addr: &Ipv6Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&addr.octets());
    }

    /// The payload bounded by the payload length, mutable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = HEADER_LEN + self.payload_len() as usize;
        clamped_mut(self.buffer.as_mut(), HEADER_LEN, end)
    }
}

/// What a fragment header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragmentHeader {
    /// Offset of the fragment header (from the start of the walked bytes, or of the IPv6 header
    /// when obtained through [`Packet::extension_headers`]).
    pub header_offset: usize,
    /// Fragment offset in bytes.
    pub offset: u16,
    /// The M flag.
    pub more_fragments: bool,
    /// Identification.
    pub ident: u32,
}

impl FragmentHeader {
    /// An "atomic fragment" (offset 0, M clear, RFC 6946) is a whole packet: not a fragment.
    #[inline]
    pub fn is_atomic(&self) -> bool {
        self.offset == 0 && !self.more_fragments
    }

    /// A fragment other than the first: it holds no upper-layer header.
    #[inline]
    pub fn is_non_first(&self) -> bool {
        self.offset != 0
    }
}

/// The result of walking an IPv6 extension-header chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtensionChain {
    /// The upper-layer protocol: the first next-header value that is not an extension header we
    /// walk (so also ESP 50 and "no next header" 59, which end the walk). For a non-first fragment
    /// it is the fragment header's next header — the protocol the reassembled datagram carries.
    pub next_header: u8,
    /// Offset of that upper-layer header (for a non-first fragment: of the fragment data).
    pub offset: usize,
    /// The fragment header, if one was seen.
    pub fragment: Option<FragmentHeader>,
    /// A hop-by-hop, destination-options or routing header was present (pf's "IP options":
    /// blocked unless a rule says `allow-opts`).
    pub has_options: bool,
    /// A hop-by-hop jumbo payload option was present (RFC 2675). pf drops jumbograms.
    pub jumbo: bool,
}

impl ExtensionChain {
    /// Part of a fragmented datagram (a fragment header that is not atomic).
    #[inline]
    pub fn is_fragment(&self) -> bool {
        self.fragment.is_some_and(|f| !f.is_atomic())
    }

    /// A fragment other than the first (no upper-layer header present).
    #[inline]
    pub fn is_non_first_fragment(&self) -> bool {
        self.fragment.is_some_and(|f| f.is_non_first())
    }
}

const ROUTING_TYPE_0: u8 = 0;
const OPTION_PAD1: u8 = 0;
const OPTION_JUMBO: u8 = 0xc2;

/// Walks the extension headers in `payload` (the IPv6 payload, bounded by the payload length)
/// starting from `first` (the fixed header's next header).
///
/// Followed: hop-by-hop (0), routing (43), fragment (44), destination options (60) — length in
/// 8-octet units + 1 — and AH (51) — length in 4-octet units + 2. Anything else is the upper
/// layer, including ESP (50) and no-next-header (59), which end the walk; so are Mobility (135),
/// HIP (139) and Shim6 (140), as pf treats them. A non-first fragment ends the walk at the
/// fragment data.
///
/// Errors, following pf's `pf_walk_header6` (reason in brackets):
/// - an extension header not inside the payload: `BadHeaderLength` ("bad-offset"); but after the
///   fragment header of a first fragment it is `BadFragment` ("fragment"): RFC 7112 requires the
///   whole chain in the first fragment;
/// - more than [`MAX_EXTENSION_HEADERS`] headers, hop-by-hop anywhere but first (RFC 8200 §4.1),
///   a second routing header, a type 0 routing header (RFC 5095), or malformed hop-by-hop
///   options: `BadExtensionChain` ("ip-option");
/// - a second fragment header: `BadFragment` ("fragment").
pub fn walk_extension_headers(first: u8, payload: &[u8]) -> Result<ExtensionChain, WireError> {
    let mut chain = ExtensionChain {
        next_header: first,
        offset: 0,
        fragment: None,
        has_options: false,
        jumbo: false,
    };
    let mut seen_routing = false;
    // Past a (non-atomic) fragment header, a header that does not fit violates RFC 7112.
    let short = |chain: &ExtensionChain| {
        if chain.is_fragment() {
            WireError::BadFragment
        } else {
            WireError::BadHeaderLength
        }
    };

    for step in 0..=MAX_EXTENSION_HEADERS {
        let at = chain.offset;
        let header_len = match chain.next_header {
            ip_protocol::HOPOPT | ip_protocol::IPV6_ROUTE | ip_protocol::IPV6_OPTS => {
                let fixed = payload.get(at..at + 2).ok_or_else(|| short(&chain))?;
                (fixed[1] as usize + 1) * 8
            }
            ip_protocol::AH => {
                let fixed = payload.get(at..at + 2).ok_or_else(|| short(&chain))?;
                (fixed[1] as usize + 2) * 4
            }
            ip_protocol::IPV6_FRAG => FRAGMENT_HEADER_LEN,
            _ => return Ok(chain),
        };
        if step == MAX_EXTENSION_HEADERS {
            return Err(WireError::BadExtensionChain);
        }
        let header = payload
            .get(at..at + header_len)
            .ok_or_else(|| short(&chain))?;

        match chain.next_header {
            ip_protocol::HOPOPT => {
                if step != 0 {
                    return Err(WireError::BadExtensionChain);
                }
                chain.jumbo = walk_hop_by_hop_options(&header[2..])?;
                chain.has_options = true;
            }
            ip_protocol::IPV6_ROUTE => {
                // header[2] is the routing type; the header is at least 8 bytes.
                if seen_routing || header[2] == ROUTING_TYPE_0 {
                    return Err(WireError::BadExtensionChain);
                }
                seen_routing = true;
                chain.has_options = true;
            }
            ip_protocol::IPV6_OPTS => chain.has_options = true,
            ip_protocol::IPV6_FRAG => {
                if chain.fragment.is_some() {
                    return Err(WireError::BadFragment);
                }
                let offset_flags = read_u16(&header[2..4]);
                let fragment = FragmentHeader {
                    header_offset: at,
                    offset: offset_flags & 0xfff8,
                    more_fragments: offset_flags & 0x0001 != 0,
                    ident: read_u32(&header[4..8]),
                };
                chain.fragment = Some(fragment);
                if fragment.is_non_first() {
                    // Only fragment data follows: report the protocol it belongs to.
                    chain.next_header = header[0];
                    chain.offset = at + header_len;
                    return Ok(chain);
                }
            }
            _ => {} // AH: nothing to check beyond its length
        }
        chain.next_header = header[0];
        chain.offset = at + header_len;
    }
    // The loop returns on its last step; this is not reached.
    Err(WireError::BadExtensionChain)
}

/// Walks hop-by-hop option TLVs as pf's `pf_walk_option6` does: Pad1 is one byte, every other
/// option is type, length and data that must stay inside the header. Returns whether a jumbo
/// payload option was seen.
fn walk_hop_by_hop_options(options: &[u8]) -> Result<bool, WireError> {
    let mut jumbo = false;
    let mut at = 0;
    while at < options.len() {
        let kind = options[at];
        if kind == OPTION_PAD1 {
            at += 1;
            continue;
        }
        let len = *options.get(at + 1).ok_or(WireError::BadExtensionChain)? as usize;
        if at + 2 + len > options.len() {
            return Err(WireError::BadExtensionChain);
        }
        if kind == OPTION_JUMBO {
            if jumbo {
                return Err(WireError::BadExtensionChain);
            }
            jumbo = true;
        }
        at += 2 + len;
    }
    Ok(jumbo)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ip_protocol::*;

    fn header(next: u8, payload: &[u8]) -> Vec<u8> {
        let mut bytes = vec![0u8; HEADER_LEN];
        let mut ip = Packet::new_unchecked(&mut bytes[..]);
        ip.set_version_tc_flow(0xb8, 0x12345);
        ip.set_payload_len(payload.len() as u16);
        ip.set_next_header(next);
        ip.set_hop_limit(64);
        ip.set_src_addr(&"2001:db8::1".parse().unwrap());
        ip.set_dst_addr(&"2001:db8::2".parse().unwrap());
        bytes.extend_from_slice(payload);
        bytes
    }

    /// An 8-byte options/routing header (length field 0) pointing at `next`.
    fn ext8(next: u8, third: u8) -> [u8; 8] {
        // PadN covering the remaining 6 bytes keeps hop-by-hop options well formed.
        [next, 0, third, 4, 0, 0, 0, 0]
    }

    fn frag(next: u8, offset: u16, more: bool) -> [u8; 8] {
        let word = offset | more as u16;
        let w = word.to_be_bytes();
        [next, 0, w[0], w[1], 0xde, 0xad, 0xbe, 0xef]
    }

    #[test]
    fn fixed_header_fields() {
        let bytes = header(TCP, &[0; 20]);
        let ip = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(ip.version(), 6);
        assert_eq!(ip.traffic_class(), 0xb8);
        assert_eq!(ip.flow_label(), 0x12345);
        assert_eq!(ip.payload_len(), 20);
        assert_eq!(ip.next_header(), TCP);
        assert_eq!(ip.hop_limit(), 64);
        assert_eq!(ip.src_addr(), "2001:db8::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(ip.payload().len(), 20);
        let chain = ip.extension_headers().unwrap();
        assert_eq!(chain.next_header, TCP);
        assert_eq!(chain.offset, HEADER_LEN);
        assert!(!chain.has_options && chain.fragment.is_none());
    }

    #[test]
    fn truncation_and_version() {
        let bytes = header(UDP, &[0; 8]);
        for len in 0..bytes.len() {
            assert_eq!(
                Packet::new_checked(&bytes[..len]),
                Err(WireError::Truncated)
            );
        }
        let mut padded = bytes.clone();
        padded.extend_from_slice(&[0; 10]);
        assert_eq!(Packet::new_checked(&padded[..]).unwrap().payload().len(), 8);
        let mut v4 = bytes.clone();
        v4[0] = 0x45;
        assert_eq!(Packet::new_checked(&v4[..]), Err(WireError::BadVersion));
    }

    #[test]
    fn full_chain_to_upper_layer() {
        let mut payload = Vec::new();
        payload.extend_from_slice(&ext8(IPV6_OPTS, 1)); // hop-by-hop → dst opts
        payload.extend_from_slice(&ext8(IPV6_ROUTE, 1)); // dst opts → routing
        payload.extend_from_slice(&ext8(IPV6_FRAG, 2)); // routing type 2 → fragment
        payload.extend_from_slice(&frag(AH, 0, true)); // first fragment → AH
        payload.extend_from_slice(&[IPV6_OPTS, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // AH, 12 bytes
        payload.extend_from_slice(&ext8(UDP, 1)); // dst opts → UDP
        payload.extend_from_slice(&[0; 8]);
        let bytes = header(HOPOPT, &payload);
        let chain = Packet::new_checked(&bytes[..])
            .unwrap()
            .extension_headers()
            .unwrap();
        assert_eq!(chain.next_header, UDP);
        assert_eq!(chain.offset, HEADER_LEN + 8 * 4 + 12 + 8);
        assert!(chain.has_options);
        assert!(chain.is_fragment() && !chain.is_non_first_fragment());
        let f = chain.fragment.unwrap();
        assert_eq!(f.header_offset, HEADER_LEN + 24);
        assert_eq!(f.ident, 0xdead_beef);
    }

    #[test]
    fn non_first_fragment_stops_the_walk() {
        let mut payload = frag(TCP, 1448, true).to_vec();
        payload.extend_from_slice(&[0xff; 16]); // data, not a header
        let chain = walk_extension_headers(IPV6_FRAG, &payload).unwrap();
        assert_eq!(chain.next_header, TCP);
        assert_eq!(chain.offset, 8);
        assert!(chain.is_non_first_fragment());
        assert_eq!(chain.fragment.unwrap().offset, 1448);
    }

    #[test]
    fn atomic_fragment_is_not_a_fragment() {
        let mut payload = frag(TCP, 0, false).to_vec();
        payload.extend_from_slice(&[0; 20]);
        let chain = walk_extension_headers(IPV6_FRAG, &payload).unwrap();
        assert_eq!(chain.next_header, TCP);
        assert!(chain.fragment.is_some() && !chain.is_fragment());
    }

    #[test]
    fn esp_and_no_next_header_end_the_walk() {
        let payload = ext8(ESP, 1);
        let chain = walk_extension_headers(IPV6_OPTS, &payload).unwrap();
        assert_eq!((chain.next_header, chain.offset), (ESP, 8));
        let chain = walk_extension_headers(IPV6_NONXT, &[]).unwrap();
        assert_eq!((chain.next_header, chain.offset), (IPV6_NONXT, 0));
    }

    #[test]
    fn chain_errors() {
        // header longer than the payload
        let mut long = ext8(TCP, 1);
        long[1] = 1; // 16 bytes claimed, 8 present
        assert_eq!(
            walk_extension_headers(IPV6_OPTS, &long),
            Err(WireError::BadHeaderLength)
        );
        // an extension header announced but no room for it
        assert_eq!(
            walk_extension_headers(IPV6_OPTS, &[]),
            Err(WireError::BadHeaderLength)
        );
        assert_eq!(
            walk_extension_headers(IPV6_FRAG, &[0; 7]),
            Err(WireError::BadHeaderLength)
        );
        // hop-by-hop not first
        let mut twice = ext8(HOPOPT, 1).to_vec();
        twice.extend_from_slice(&ext8(TCP, 1));
        assert_eq!(
            walk_extension_headers(IPV6_OPTS, &twice),
            Err(WireError::BadExtensionChain)
        );
        // routing type 0, and two routing headers
        assert_eq!(
            walk_extension_headers(IPV6_ROUTE, &ext8(TCP, 0)),
            Err(WireError::BadExtensionChain)
        );
        let mut two_rh = ext8(IPV6_ROUTE, 2).to_vec();
        two_rh.extend_from_slice(&ext8(TCP, 2));
        assert_eq!(
            walk_extension_headers(IPV6_ROUTE, &two_rh),
            Err(WireError::BadExtensionChain)
        );
        // two fragment headers
        let mut two_frag = frag(IPV6_FRAG, 0, true).to_vec();
        two_frag.extend_from_slice(&frag(TCP, 0, true));
        assert_eq!(
            walk_extension_headers(IPV6_FRAG, &two_frag),
            Err(WireError::BadFragment)
        );
        // a first fragment whose chain does not fit (RFC 7112)
        let mut cut = frag(IPV6_OPTS, 0, true).to_vec();
        cut.extend_from_slice(&[TCP, 1, 0, 0]);
        assert_eq!(
            walk_extension_headers(IPV6_FRAG, &cut),
            Err(WireError::BadFragment)
        );
        // malformed hop-by-hop option: PadN claiming 9 bytes in a 6-byte area
        let bad_opt = [TCP, 0, 1, 9, 0, 0, 0, 0];
        assert_eq!(
            walk_extension_headers(HOPOPT, &bad_opt),
            Err(WireError::BadExtensionChain)
        );
    }

    #[test]
    fn too_many_headers() {
        let mut payload = Vec::new();
        for _ in 0..MAX_EXTENSION_HEADERS {
            payload.extend_from_slice(&ext8(IPV6_OPTS, 1));
        }
        // MAX headers ending in TCP are fine
        let mut ok = payload.clone();
        let last = ok.len() - 8;
        ok[last] = TCP;
        assert_eq!(
            walk_extension_headers(IPV6_OPTS, &ok).unwrap().next_header,
            TCP
        );
        // one more is not
        payload.extend_from_slice(&ext8(TCP, 1));
        assert_eq!(
            walk_extension_headers(IPV6_OPTS, &payload),
            Err(WireError::BadExtensionChain)
        );
    }

    #[test]
    fn jumbo_option_is_reported() {
        let hbh = [TCP, 0, OPTION_JUMBO, 4, 0, 1, 0, 0];
        let chain = walk_extension_headers(HOPOPT, &hbh).unwrap();
        assert!(chain.jumbo && chain.has_options);
    }

    #[test]
    fn walk_never_panics_on_prefixes_and_garbage() {
        let mut rng = crate::wire::testutil::XorShift::new(0x6e);
        let mut buf = [0u8; 96];
        for _ in 0..20_000 {
            rng.fill(&mut buf);
            let first = [HOPOPT, IPV6_ROUTE, IPV6_FRAG, IPV6_OPTS, AH, TCP][rng.below(6)];
            // Bias next-header bytes towards extension headers so chains get long.
            for at in (0..buf.len()).step_by(8) {
                if rng.next_u8() < 200 {
                    buf[at] = [HOPOPT, IPV6_ROUTE, IPV6_FRAG, IPV6_OPTS, AH][rng.below(5)];
                    buf[at + 1] &= 0x01;
                }
            }
            let len = rng.below(buf.len() + 1);
            if let Ok(chain) = walk_extension_headers(first, &buf[..len]) {
                assert!(chain.offset <= len);
            }
        }
    }
}
