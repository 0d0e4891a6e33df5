//! The frames the CARP engine sends: advertisements (protocols.md §1.1–1.3) and the gratuitous
//! ARP / unsolicited Neighbor Advertisements of a takeover (§2.5).
//!
//! Built with the dataplane's header view ([`carp::Header`]) and frame builders
//! ([`IpFrame`], [`ArpFrame`], [`NeighborFrame`]): these allocate, which is fine on the control
//! core, where an advertisement goes out once per interval.

use std::net::{IpAddr, Ipv6Addr};

use rampart_conf::MacAddr;
use rampart_dataplane::wire::build::{ArpFrame, IpFrame, Link, NeighborFrame};
use rampart_dataplane::wire::{carp, MacAddrExt};

use super::hmac::{COUNTER_LEN, MD_LEN};

/// IPv4 TOS of an advertisement: `IPTOS_LOWDELAY`, as OpenBSD sends it. (IPv6 advertisements
/// carry traffic class 0, as OpenBSD's.)
pub const ADVERT_TOS: u8 = 0x10;

/// The advbase and advskew of a bow-out advertisement (§2.5): peers take over at once.
pub const BOW_OUT: u8 = 255;

/// The fields of one advertisement's 36-byte header (§1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdvertFields {
    pub vhid: u8,
    pub advbase: u8,
    pub advskew: u8,
    /// `min(demotion, 255)`.
    pub demote: u8,
    /// OpenBSD's constant per-vhid cookie.
    pub counter: [u8; COUNTER_LEN],
    pub md: [u8; MD_LEN],
}

/// The 36-byte header with version 2, type 1, authlen 7 and its checksum (over these 36 bytes
/// only, no pseudo-header: §1.3).
pub fn encode_header(fields: &AdvertFields) -> [u8; carp::HEADER_LEN] {
    let mut bytes = [0u8; carp::HEADER_LEN];
    let mut header = carp::Header::new_unchecked(&mut bytes[..]);
    header.set_version_and_type(carp::VERSION, carp::TYPE_ADVERTISEMENT);
    header.set_vhid(fields.vhid);
    header.set_advskew(fields.advskew);
    header.set_authlen(carp::AUTHLEN);
    header.set_demote(fields.demote);
    header.set_advbase(fields.advbase);
    header.set_counter_bytes(fields.counter);
    header.set_md(&fields.md);
    header.fill_checksum();
    bytes
}

/// An advertisement as a complete Ethernet frame from the virtual MAC of `fields.vhid`:
/// IPv4 with TOS 0x10, DF, TTL 255 and identification `ident`, or IPv6 with hop limit 255 and
/// traffic class 0; protocol 112. `src` and `dst` must be of one family.
pub fn advert_frame(
    fields: &AdvertFields,
    src: IpAddr,
    dst: IpAddr,
    dst_mac: MacAddr,
    ident: u16,
) -> Vec<u8> {
    IpFrame {
        link: Link {
            src_mac: carp::virtual_mac(fields.vhid),
            dst_mac,
            vlan: None,
            outer_vlan: None,
        },
        src,
        dst,
        ttl: carp::TTL,
        tos: if src.is_ipv4() { ADVERT_TOS } else { 0 },
        ident,
        dont_fragment: true,
        protocol: carp::PROTOCOL,
        payload: encode_header(fields).to_vec(),
        ..IpFrame::default()
    }
    .to_bytes()
}

/// The Ethernet destination of an advertisement to `dst`: the group's multicast MAC
/// (01:00:5e:00:00:12 or 33:33:00:00:00:12), or all zeros for a unicast peer, whose MAC only
/// the caller's neighbour table knows.
pub fn advert_dst_mac(dst: IpAddr) -> MacAddr {
    match dst {
        IpAddr::V4(a) if a.is_multicast() => MacAddr::ipv4_multicast(a),
        IpAddr::V6(a) if a.is_multicast() => MacAddr::ipv6_multicast(&a),
        _ => MacAddr::ZERO,
    }
}

/// What a new MASTER announces, from the virtual MAC of `vhid` (§2.5): a gratuitous ARP request
/// (sender = target = VIP) for every IPv4 VIP, and an unsolicited Neighbor Advertisement to
/// ff02::1 with the Override and Router flags for every IPv6 VIP, sent from `na_source` (the
/// interface's link-local address). Frames are unpadded (42 and 86 bytes); the port pads them.
pub fn announcement_frames(vhid: u8, vips: &[IpAddr], na_source: Ipv6Addr) -> Vec<Vec<u8>> {
    let mac = carp::virtual_mac(vhid);
    vips.iter()
        .map(|vip| match *vip {
            IpAddr::V4(a) => ArpFrame::gratuitous(mac, a).to_bytes(),
            IpAddr::V6(a) => NeighborFrame {
                // A firewall forwards, so OpenBSD would set the Router flag
                // (`net.inet6.ip6.forwarding`).
                router: true,
                ..NeighborFrame::unsolicited_advertisement(mac, na_source, a)
            }
            .to_bytes(),
        })
        .collect()
}
