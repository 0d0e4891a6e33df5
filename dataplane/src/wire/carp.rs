//! CARP on the wire (OpenBSD; reference/protocols.md §1.1–1.3): the outer IP checks and a view
//! over the 36-byte header. The protocol engine (elections, HMAC) lives in the control plane.
//!
//! Outer rules: IP protocol 112, TTL / hop limit exactly 255 (a packet that crossed a router is
//! forged or misrouted), destination 224.0.0.18 / ff02::12 or a unicast `carppeer`.
//! The header checksum is the Internet checksum over exactly the 36 header bytes — no
//! pseudo-header; trailing bytes are ignored, not rejected.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::checksum;
use super::ethernet::MacAddr;
use super::{read_array, read_u16, write_u16, Field, WireError};

/// IP protocol number (shared with VRRP).
pub const PROTOCOL: u8 = super::ip_protocol::CARP;
/// The only TTL / hop limit CARP accepts and sends.
pub const TTL: u8 = 255;
/// IPv4 CARP group (`INADDR_CARP_GROUP`).
pub const GROUP_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// IPv6 CARP group.
pub const GROUP_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);
/// Length of the CARP header.
pub const HEADER_LEN: usize = 36;
/// Protocol version.
pub const VERSION: u8 = 2;
/// Message type: advertisement (the only one).
pub const TYPE_ADVERTISEMENT: u8 = 1;
/// `authlen` OpenBSD sends: counter and HMAC in 32-bit words (2 + 5).
pub const AUTHLEN: u8 = 7;
/// Length of the HMAC-SHA1 digest.
pub const MD_LEN: usize = 20;

mod field {
    use super::Field;
    pub const VERSION_TYPE: usize = 0;
    pub const VHID: usize = 1;
    pub const ADVSKEW: usize = 2;
    pub const AUTHLEN: usize = 3;
    /// OpenBSD's demotion count; FreeBSD and UCarp call it padding and send 0.
    pub const DEMOTE: usize = 4;
    pub const ADVBASE: usize = 5;
    pub const CHECKSUM: Field = 6..8;
    pub const COUNTER: Field = 8..16;
    pub const MD: Field = 16..36;
}

/// The virtual MAC of a vhid: 00:00:5e:00:01:vhid (RFC 5798's VRRP range, as CARP uses it).
#[inline]
pub const fn virtual_mac(vhid: u8) -> MacAddr {
    MacAddr::carp_virtual(vhid)
}

/// How a CARP or pfsync packet was addressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Destination {
    /// The protocol's multicast group.
    Group,
    /// A unicast address (a configured peer; the control plane checks which).
    Unicast,
}

/// Why a CARP or pfsync packet fails the outer IP checks (OpenBSD counts `badttl`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OuterError {
    /// TTL / hop limit is not 255.
    BadTtl,
    /// Sent to another multicast group, a broadcast or the unspecified address.
    BadDestination,
}

/// True for an address a peer could be: not multicast, not the limited broadcast, not
/// unspecified. (A subnet-directed broadcast cannot be told without the interface's prefix.)
#[inline]
pub(crate) fn is_unicast(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(a) => !a.is_multicast() && !a.is_broadcast() && !a.is_unspecified(),
        IpAddr::V6(a) => !a.is_multicast() && !a.is_unspecified(),
    }
}

/// Classifies a CARP destination: 224.0.0.18 or ff02::12 is the group, a unicast address is a
/// peer (OpenBSD has IPv6 unicast peers nowhere, but classifying them costs nothing), anything else
/// is `None`.
#[inline]
pub fn classify_destination(dst: IpAddr) -> Option<Destination> {
    match dst {
        IpAddr::V4(a) if a == GROUP_V4 => Some(Destination::Group),
        IpAddr::V6(a) if a == GROUP_V6 => Some(Destination::Group),
        other if is_unicast(other) => Some(Destination::Unicast),
        _ => None,
    }
}

/// The outer checks OpenBSD applies before looking at the CARP header: TTL (or hop limit) 255,
/// then a CARP destination.
#[inline]
pub fn check_outer(ttl: u8, dst: IpAddr) -> Result<Destination, OuterError> {
    if ttl != TTL {
        return Err(OuterError::BadTtl);
    }
    classify_destination(dst).ok_or(OuterError::BadDestination)
}

/// A view over a CARP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Header<T> {
    /// Wraps `buffer` without checking it.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        Header { buffer }
    }

    /// Wraps `buffer` if it holds the 36-byte header (more is allowed and ignored). Version,
    /// type and authlen are left to the engine, which counts them (OpenBSD checks only version).
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        Ok(Header { buffer })
    }

    /// The wrapped buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The 36 header bytes.
    #[inline]
    pub fn header(&self) -> &[u8] {
        &self.buffer.as_ref()[..HEADER_LEN]
    }

    /// Version (high nibble of byte 0; 2).
    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VERSION_TYPE] >> 4
    }

    /// Message type (low nibble of byte 0; 1 = advertisement).
    #[inline]
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::VERSION_TYPE] & 0x0f
    }

    /// Virtual host id.
    #[inline]
    pub fn vhid(&self) -> u8 {
        self.buffer.as_ref()[field::VHID]
    }

    /// Advertisement skew (255 in a bow-out advert).
    #[inline]
    pub fn advskew(&self) -> u8 {
        self.buffer.as_ref()[field::ADVSKEW]
    }

    /// Authentication length in 32-bit words (7).
    #[inline]
    pub fn authlen(&self) -> u8 {
        self.buffer.as_ref()[field::AUTHLEN]
    }

    /// Demotion count (OpenBSD).
    #[inline]
    pub fn demote(&self) -> u8 {
        self.buffer.as_ref()[field::DEMOTE]
    }

    /// Advertisement base interval in seconds (255 in a bow-out advert).
    #[inline]
    pub fn advbase(&self) -> u8 {
        self.buffer.as_ref()[field::ADVBASE]
    }

    /// Checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::CHECKSUM])
    }

    /// The 8 counter bytes (OpenBSD: a per-vhid random cookie, used to spot its own adverts).
    #[inline]
    pub fn counter_bytes(&self) -> [u8; 8] {
        read_array(self.buffer.as_ref(), field::COUNTER.start)
    }

    /// The counter as a big-endian u64.
    #[inline]
    pub fn counter(&self) -> u64 {
        u64::from_be_bytes(self.counter_bytes())
    }

    /// The HMAC-SHA1 digest.
    #[inline]
    pub fn md(&self) -> [u8; MD_LEN] {
        read_array(self.buffer.as_ref(), field::MD.start)
    }

    /// True when the Internet checksum over exactly the 36 header bytes is correct.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        checksum::verify(self.header())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Header<T> {
    /// Sets version and type.
    #[inline]
    pub fn set_version_and_type(&mut self, version: u8, msg_type: u8) {
        self.buffer.as_mut()[field::VERSION_TYPE] = (version << 4) | (msg_type & 0x0f);
    }

    /// Sets the vhid.
    #[inline]
    pub fn set_vhid(&mut self, value: u8) {
        self.buffer.as_mut()[field::VHID] = value;
    }

    /// Sets advskew.
    #[inline]
    pub fn set_advskew(&mut self, value: u8) {
        self.buffer.as_mut()[field::ADVSKEW] = value;
    }

    /// Sets authlen.
    #[inline]
    pub fn set_authlen(&mut self, value: u8) {
        self.buffer.as_mut()[field::AUTHLEN] = value;
    }

    /// Sets the demotion count.
    #[inline]
    pub fn set_demote(&mut self, value: u8) {
        self.buffer.as_mut()[field::DEMOTE] = value;
    }

    /// Sets advbase.
    #[inline]
    pub fn set_advbase(&mut self, value: u8) {
        self.buffer.as_mut()[field::ADVBASE] = value;
    }

    /// Sets the checksum field.
    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        write_u16(&mut self.buffer.as_mut()[field::CHECKSUM], value);
    }

    /// Sets the counter bytes.
    #[inline]
    pub fn set_counter_bytes(&mut self, counter: [u8; 8]) {
        self.buffer.as_mut()[field::COUNTER].copy_from_slice(&counter);
    }

    /// Sets the HMAC digest.
    #[inline]
    pub fn set_md(&mut self, md: &[u8; MD_LEN]) {
        self.buffer.as_mut()[field::MD].copy_from_slice(md);
    }

    /// Computes and stores the checksum over the 36 header bytes.
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let value = checksum::checksum(self.header());
        self.set_checksum(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ipv4;
    use crate::wire::testutil::hex;

    /// protocols.md §6.1 TV1.
    const TV1_CARP: &str = "21 01 00 07 00 01 50 e2 01 02 03 04 05 06 07 08 \
        17 b1 ef db f0 4c 5b 67 a2 d4 c6 de ec 56 e5 e4 73 ed 7a e2";
    const TV1_IP: &str = "45 10 00 38 12 34 40 00 ff 70 c7 54 c0 a8 01 02 e0 00 00 12";

    #[test]
    fn tv1_header() {
        let bytes = hex(TV1_CARP);
        let carp = Header::new_checked(&bytes[..]).unwrap();
        assert!(carp.verify_checksum());
        assert_eq!(carp.version(), VERSION);
        assert_eq!(carp.msg_type(), TYPE_ADVERTISEMENT);
        assert_eq!(carp.vhid(), 1);
        assert_eq!(carp.advskew(), 0);
        assert_eq!(carp.authlen(), AUTHLEN);
        assert_eq!(carp.demote(), 0);
        assert_eq!(carp.advbase(), 1);
        assert_eq!(carp.checksum(), 0x50e2);
        assert_eq!(carp.counter(), 0x0102_0304_0506_0708);
        assert_eq!(carp.md()[..4], [0x17, 0xb1, 0xef, 0xdb]);
    }

    #[test]
    fn tv1_ip_packet_passes_outer_checks() {
        let mut packet = hex(TV1_IP);
        packet.extend_from_slice(&hex(TV1_CARP));
        let ip = ipv4::Packet::new_checked(&packet[..]).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!(ip.protocol(), PROTOCOL);
        assert_eq!(
            check_outer(ip.ttl(), ip.dst_addr().into()),
            Ok(Destination::Group)
        );
        assert!(Header::new_checked(ip.payload()).unwrap().verify_checksum());
    }

    #[test]
    fn demote_and_bow_out_vectors_refill_to_the_documented_checksums() {
        // TV6: demote 33 → cksum 0x2fe2; TV7: advbase = advskew = 255 → 0x50e3.
        let mut bytes = hex(TV1_CARP);
        let mut carp = Header::new_checked(&mut bytes[..]).unwrap();
        carp.set_demote(33);
        carp.fill_checksum();
        assert_eq!(carp.checksum(), 0x2fe2);
        carp.set_demote(0);
        carp.set_advbase(255);
        carp.set_advskew(255);
        carp.fill_checksum();
        assert_eq!(carp.checksum(), 0x50e3);
        assert!(carp.verify_checksum());
    }

    #[test]
    fn trailing_bytes_are_ignored_and_short_headers_refused() {
        let mut bytes = hex(TV1_CARP);
        bytes.extend_from_slice(&[0xff; 7]);
        assert!(Header::new_checked(&bytes[..]).unwrap().verify_checksum());
        for len in 0..HEADER_LEN {
            assert_eq!(
                Header::new_checked(&bytes[..len]),
                Err(WireError::Truncated)
            );
        }
        bytes[20] ^= 1;
        assert!(!Header::new_checked(&bytes[..]).unwrap().verify_checksum());
    }

    #[test]
    fn outer_checks() {
        let group = IpAddr::V4(GROUP_V4);
        assert_eq!(check_outer(254, group), Err(OuterError::BadTtl));
        assert_eq!(check_outer(255, group), Ok(Destination::Group));
        assert_eq!(
            check_outer(255, IpAddr::V6(GROUP_V6)),
            Ok(Destination::Group)
        );
        assert_eq!(
            check_outer(255, "10.0.0.2".parse().unwrap()),
            Ok(Destination::Unicast)
        );
        assert_eq!(
            check_outer(255, "224.0.0.240".parse().unwrap()),
            Err(OuterError::BadDestination)
        );
        assert_eq!(
            check_outer(255, "255.255.255.255".parse().unwrap()),
            Err(OuterError::BadDestination)
        );
        assert_eq!(
            check_outer(255, "ff02::1".parse().unwrap()),
            Err(OuterError::BadDestination)
        );
        assert_eq!(virtual_mac(1).to_string(), "00:00:5e:00:01:01");
    }
}
