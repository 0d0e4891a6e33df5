//! Ethernet II frames, with 802.1Q (0x8100) and 802.1ad "QinQ" (0x88a8) tags.
//!
//! [`Frame::new_checked`] checks the 14-byte untagged header; [`Frame::l2_header`] walks up to two
//! VLAN tags and reports where the L3 packet starts. Neither allocates nor panics.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::{read_u16, write_u16, Field, WireError};

/// EtherType values the dataplane names.
pub mod ethertype {
    /// IPv4.
    pub const IPV4: u16 = 0x0800;
    /// ARP.
    pub const ARP: u16 = 0x0806;
    /// IPv6.
    pub const IPV6: u16 = 0x86dd;
    /// IEEE 802.1Q customer VLAN tag.
    pub const VLAN: u16 = 0x8100;
    /// IEEE 802.1ad service VLAN tag (QinQ outer tag).
    pub const QINQ: u16 = 0x88a8;
    /// Values below this are IEEE 802.3 length fields, not EtherTypes.
    pub const MIN_ETHERTYPE: u16 = 0x0600;
}

mod field {
    use super::Field;
    pub const DESTINATION: Field = 0..6;
    pub const SOURCE: Field = 6..12;
    pub const ETHERTYPE: Field = 12..14;
    pub const PAYLOAD: usize = 14;
}

/// Length of an untagged Ethernet header.
pub const HEADER_LEN: usize = field::PAYLOAD;
/// Length of one VLAN tag (TPID + TCI).
pub const VLAN_TAG_LEN: usize = 4;
/// How many stacked tags [`Frame::l2_header`] looks through (802.1ad outer + 802.1Q inner).
pub const MAX_VLAN_TAGS: usize = 2;

/// A 48-bit IEEE MAC address: the configuration's type, re-exported so that one address type
/// crosses the whole appliance (config, neighbour tables, frames). The wire-level helpers are in
/// [`MacAddrExt`].
pub use rampart_conf::MacAddr;

/// Wire-level helpers for [`MacAddr`] (bring the trait into scope to use them).
pub trait MacAddrExt: Sized {
    /// ff:ff:ff:ff:ff:ff.
    const BROADCAST: Self;
    /// 00:00:00:00:00:00 (ARP requests' target hardware address).
    const ZERO: Self;

    /// The six octets.
    fn octets(&self) -> [u8; 6];

    /// ff:ff:ff:ff:ff:ff.
    fn is_broadcast(&self) -> bool;

    /// Group bit clear: neither multicast nor broadcast.
    fn is_unicast(&self) -> bool;

    /// The multicast MAC an IPv4 group maps to (RFC 1112 §6.4: 01:00:5e + low 23 bits).
    fn ipv4_multicast(group: Ipv4Addr) -> Self;

    /// The multicast MAC an IPv6 group maps to (RFC 2464 §7: 33:33 + low 32 bits).
    fn ipv6_multicast(group: &Ipv6Addr) -> Self;
}

impl MacAddrExt for MacAddr {
    const BROADCAST: MacAddr = MacAddr([0xff; 6]);
    const ZERO: MacAddr = MacAddr([0; 6]);

    #[inline]
    fn octets(&self) -> [u8; 6] {
        self.0
    }

    #[inline]
    fn is_broadcast(&self) -> bool {
        self.0 == [0xff; 6]
    }

    #[inline]
    fn is_unicast(&self) -> bool {
        self.0[0] & 0x01 == 0
    }

    fn ipv4_multicast(group: Ipv4Addr) -> MacAddr {
        let o = group.octets();
        MacAddr([0x01, 0x00, 0x5e, o[1] & 0x7f, o[2], o[3]])
    }

    fn ipv6_multicast(group: &Ipv6Addr) -> MacAddr {
        let o = group.octets();
        MacAddr([0x33, 0x33, o[12], o[13], o[14], o[15]])
    }
}

/// What is under the Ethernet header: the result of looking through the VLAN tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct L2Header {
    /// The VLAN ID (12 bits) of the outermost tag, if the frame is tagged.
    pub vlan: Option<u16>,
    /// The VLAN ID of the inner tag of a double-tagged (QinQ) frame.
    pub inner_vlan: Option<u16>,
    /// The EtherType after the tags (the L3 protocol).
    pub ethertype: u16,
    /// Offset of the L3 header from the start of the frame.
    pub l3_offset: usize,
}

/// A view over an Ethernet II frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// Wraps `buffer` without checking its length.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        Frame { buffer }
    }

    /// Wraps `buffer` if it holds at least the 14-byte header.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        Ok(Frame { buffer })
    }

    /// The wrapped buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Destination MAC.
    #[inline]
    pub fn dst_addr(&self) -> MacAddr {
        MacAddr(super::read_array(
            self.buffer.as_ref(),
            field::DESTINATION.start,
        ))
    }

    /// Source MAC.
    #[inline]
    pub fn src_addr(&self) -> MacAddr {
        MacAddr(super::read_array(self.buffer.as_ref(), field::SOURCE.start))
    }

    /// The EtherType field right after the addresses (a VLAN TPID if the frame is tagged).
    #[inline]
    pub fn ethertype(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::ETHERTYPE])
    }

    /// Everything after the untagged 14-byte header (tags included, if any).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..]
    }

    /// Looks through up to [`MAX_VLAN_TAGS`] 802.1Q / 802.1ad tags.
    ///
    /// A tag that the frame cuts short is `Truncated`. A third stacked tag is reported as the
    /// EtherType (a VLAN TPID), which the parser treats as unsupported.
    pub fn l2_header(&self) -> Result<L2Header, WireError> {
        let data = self.buffer.as_ref();
        let mut ethertype = self.ethertype();
        let mut offset = HEADER_LEN;
        let mut vlans = [None; MAX_VLAN_TAGS];
        for vlan in vlans.iter_mut() {
            if ethertype != ethertype::VLAN && ethertype != ethertype::QINQ {
                break;
            }
            // TCI (2 bytes) and the next EtherType (2 bytes) follow the TPID we just read.
            let tag = data
                .get(offset..offset + VLAN_TAG_LEN)
                .ok_or(WireError::Truncated)?;
            *vlan = Some(read_u16(&tag[0..2]) & 0x0fff);
            ethertype = read_u16(&tag[2..4]);
            offset += VLAN_TAG_LEN;
        }
        Ok(L2Header {
            vlan: vlans[0],
            inner_vlan: vlans[1],
            ethertype,
            l3_offset: offset,
        })
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    /// Sets the destination MAC.
    #[inline]
    pub fn set_dst_addr(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[field::DESTINATION].copy_from_slice(&addr.0);
    }

    /// Sets the source MAC.
    #[inline]
    pub fn set_src_addr(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[field::SOURCE].copy_from_slice(&addr.0);
    }

    /// Sets the outer EtherType field.
    #[inline]
    pub fn set_ethertype(&mut self, value: u16) {
        write_u16(&mut self.buffer.as_mut()[field::ETHERTYPE], value);
    }

    /// Swaps source and destination MACs and sets the new source (answering in place).
    #[inline]
    pub fn reply_from(&mut self, own: MacAddr) {
        let requester = self.src_addr();
        self.set_dst_addr(requester);
        self.set_src_addr(own);
    }

    /// Everything after the untagged header, mutable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testutil::hex;

    #[test]
    fn untagged_frame() {
        let bytes = hex("01 00 5e 00 00 12 00 00 5e 00 01 01 08 00 45");
        let frame = Frame::new_checked(&bytes[..]).unwrap();
        assert_eq!(frame.dst_addr(), MacAddr([0x01, 0, 0x5e, 0, 0, 0x12]));
        assert!(frame.dst_addr().is_multicast());
        assert_eq!(frame.src_addr().to_string(), "00:00:5e:00:01:01");
        assert_eq!(frame.ethertype(), ethertype::IPV4);
        let l2 = frame.l2_header().unwrap();
        assert_eq!(
            l2,
            L2Header {
                vlan: None,
                inner_vlan: None,
                ethertype: ethertype::IPV4,
                l3_offset: 14
            }
        );
        assert_eq!(frame.payload(), &[0x45]);
    }

    #[test]
    fn single_and_double_tags() {
        let dot1q = hex("ff ff ff ff ff ff 02 00 00 00 00 01 81 00 20 64 86 dd");
        let l2 = Frame::new_checked(&dot1q[..]).unwrap().l2_header().unwrap();
        assert_eq!(l2.vlan, Some(100)); // PCP bits (0x2000) are masked off
        assert_eq!(l2.inner_vlan, None);
        assert_eq!(l2.ethertype, ethertype::IPV6);
        assert_eq!(l2.l3_offset, 18);

        let qinq = hex("ff ff ff ff ff ff 02 00 00 00 00 01 88 a8 00 0a 81 00 00 14 08 06");
        let l2 = Frame::new_checked(&qinq[..]).unwrap().l2_header().unwrap();
        assert_eq!(l2.vlan, Some(10));
        assert_eq!(l2.inner_vlan, Some(20));
        assert_eq!(l2.ethertype, ethertype::ARP);
        assert_eq!(l2.l3_offset, 22);
    }

    #[test]
    fn truncated_headers_and_tags() {
        let qinq = hex("ff ff ff ff ff ff 02 00 00 00 00 01 88 a8 00 0a 81 00 00 14 08 06");
        for len in 0..qinq.len() {
            let result = Frame::new_checked(&qinq[..len]).and_then(|f| f.l2_header());
            assert_eq!(result, Err(WireError::Truncated), "prefix {len}");
        }
    }

    #[test]
    fn setters_and_reply() {
        let mut bytes = hex("01 00 5e 00 00 12 00 00 5e 00 01 01 08 00");
        let mut frame = Frame::new_checked(&mut bytes[..]).unwrap();
        frame.reply_from(MacAddr([2, 0, 0, 0, 0, 9]));
        assert_eq!(frame.dst_addr(), MacAddr([0, 0, 0x5e, 0, 1, 1]));
        assert_eq!(frame.src_addr(), MacAddr([2, 0, 0, 0, 0, 9]));
        frame.set_ethertype(ethertype::IPV6);
        assert_eq!(frame.ethertype(), ethertype::IPV6);
    }

    #[test]
    fn multicast_mappings() {
        assert_eq!(
            MacAddr::ipv4_multicast(Ipv4Addr::new(224, 0, 0, 18)).to_string(),
            "01:00:5e:00:00:12"
        );
        assert_eq!(
            MacAddr::ipv4_multicast(Ipv4Addr::new(239, 255, 1, 2)).to_string(),
            "01:00:5e:7f:01:02"
        );
        assert_eq!(
            MacAddr::ipv6_multicast(&"ff02::1:ff00:1".parse().unwrap()).to_string(),
            "33:33:ff:00:00:01"
        );
        assert!(MacAddr::BROADCAST.is_broadcast());
        assert!(MacAddr([2, 0, 0, 0, 0, 1]).is_unicast());
    }
}
