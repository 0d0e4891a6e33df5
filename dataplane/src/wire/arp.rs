//! ARP for Ethernet and IPv4 (RFC 826), the only kind the appliance speaks.
//!
//! [`Packet::new_checked`] accepts exactly hardware type 1, protocol type 0x0800, hardware length 6
//! and protocol length 4 (anything else is `Unsupported`), in at least 28 bytes. The worker answers
//! requests for a VIP it is MASTER for in place with [`Packet::make_reply`].

use std::net::Ipv4Addr;

use super::ethernet::{ethertype, MacAddr};
use super::{read_array, read_u16, write_u16, Field, WireError};

mod field {
    use super::Field;
    pub const HTYPE: Field = 0..2;
    pub const PTYPE: Field = 2..4;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: Field = 6..8;
    pub const SHA: Field = 8..14;
    pub const SPA: Field = 14..18;
    pub const THA: Field = 18..24;
    pub const TPA: Field = 24..28;
}

/// Length of an Ethernet/IPv4 ARP packet.
pub const PACKET_LEN: usize = field::TPA.end;
/// Hardware type: Ethernet.
pub const HTYPE_ETHERNET: u16 = 1;

/// ARP operation codes.
pub mod operation {
    /// Who has TPA? Tell SPA.
    pub const REQUEST: u16 = 1;
    /// SPA is at SHA.
    pub const REPLY: u16 = 2;
}

/// A view over an Ethernet/IPv4 ARP packet.
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

    /// Wraps `buffer` if it is an Ethernet/IPv4 ARP packet of at least 28 bytes.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let data = buffer.as_ref();
        if data.len() < PACKET_LEN {
            return Err(WireError::Truncated);
        }
        if read_u16(&data[field::HTYPE]) != HTYPE_ETHERNET
            || read_u16(&data[field::PTYPE]) != ethertype::IPV4
            || data[field::HLEN] != 6
            || data[field::PLEN] != 4
        {
            return Err(WireError::Unsupported);
        }
        Ok(Packet { buffer })
    }

    /// The wrapped buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Hardware type (1 after `new_checked`).
    #[inline]
    pub fn hardware_type(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::HTYPE])
    }

    /// Protocol type (0x0800 after `new_checked`).
    #[inline]
    pub fn protocol_type(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::PTYPE])
    }

    /// Operation: [`operation::REQUEST`], [`operation::REPLY`] or something else.
    #[inline]
    pub fn operation(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::OPER])
    }

    /// Sender hardware address.
    #[inline]
    pub fn sender_hw_addr(&self) -> MacAddr {
        MacAddr(read_array(self.buffer.as_ref(), field::SHA.start))
    }

    /// Sender protocol address.
    #[inline]
    pub fn sender_proto_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(read_array::<4>(self.buffer.as_ref(), field::SPA.start))
    }

    /// Target hardware address.
    #[inline]
    pub fn target_hw_addr(&self) -> MacAddr {
        MacAddr(read_array(self.buffer.as_ref(), field::THA.start))
    }

    /// Target protocol address.
    #[inline]
    pub fn target_proto_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(read_array::<4>(self.buffer.as_ref(), field::TPA.start))
    }

    /// A gratuitous ARP announces the sender's own address: SPA == TPA.
    #[inline]
    pub fn is_gratuitous(&self) -> bool {
        self.sender_proto_addr() == self.target_proto_addr()
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Writes the fixed Ethernet/IPv4 preamble (types and lengths).
    #[inline]
    pub fn set_ethernet_ipv4(&mut self) {
        let data = self.buffer.as_mut();
        write_u16(&mut data[field::HTYPE], HTYPE_ETHERNET);
        write_u16(&mut data[field::PTYPE], ethertype::IPV4);
        data[field::HLEN] = 6;
        data[field::PLEN] = 4;
    }

    /// Sets the operation.
    #[inline]
    pub fn set_operation(&mut self, op: u16) {
        write_u16(&mut self.buffer.as_mut()[field::OPER], op);
    }

    /// Sets the sender hardware address.
    #[inline]
    pub fn set_sender_hw_addr(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[field::SHA].copy_from_slice(&addr.0);
    }

    /// Sets the sender protocol address.
    #[inline]
    pub fn set_sender_proto_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::SPA].copy_from_slice(&addr.octets());
    }

    /// Sets the target hardware address.
    #[inline]
    pub fn set_target_hw_addr(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[field::THA].copy_from_slice(&addr.0);
    }

    /// Sets the target protocol address.
    #[inline]
    pub fn set_target_proto_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::TPA].copy_from_slice(&addr.octets());
    }

    /// Turns a request into the reply "`TPA` is at `own_mac`", in place: the requester becomes
    /// the target and the asked-for address the sender. The caller rewrites the Ethernet header
    /// (see [`super::ethernet::Frame::reply_from`]).
    #[inline]
    pub fn make_reply(&mut self, own_mac: MacAddr) {
        let requester_mac = self.sender_hw_addr();
        let requester_ip = self.sender_proto_addr();
        let asked_for = self.target_proto_addr();
        self.set_operation(operation::REPLY);
        self.set_target_hw_addr(requester_mac);
        self.set_target_proto_addr(requester_ip);
        self.set_sender_hw_addr(own_mac);
        self.set_sender_proto_addr(asked_for);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testutil::hex;
    use crate::wire::MacAddrExt;

    fn request() -> Vec<u8> {
        // who-has 192.0.2.1 tell 192.0.2.10, from 02:00:00:00:00:0a
        hex("00 01 08 00 06 04 00 01 02 00 00 00 00 0a c0 00 02 0a 00 00 00 00 00 00 c0 00 02 01")
    }

    #[test]
    fn parses_request() {
        let bytes = request();
        let arp = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(arp.operation(), operation::REQUEST);
        assert_eq!(arp.sender_hw_addr(), MacAddr([2, 0, 0, 0, 0, 0x0a]));
        assert_eq!(arp.sender_proto_addr(), Ipv4Addr::new(192, 0, 2, 10));
        assert_eq!(arp.target_hw_addr(), MacAddr::ZERO);
        assert_eq!(arp.target_proto_addr(), Ipv4Addr::new(192, 0, 2, 1));
        assert!(!arp.is_gratuitous());
    }

    #[test]
    fn request_becomes_reply_in_place() {
        let mut bytes = request();
        let vmac = MacAddr([0, 0, 0x5e, 0, 1, 1]);
        Packet::new_checked(&mut bytes[..])
            .unwrap()
            .make_reply(vmac);
        let reply = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(reply.operation(), operation::REPLY);
        assert_eq!(reply.sender_hw_addr(), vmac);
        assert_eq!(reply.sender_proto_addr(), Ipv4Addr::new(192, 0, 2, 1));
        assert_eq!(reply.target_hw_addr(), MacAddr([2, 0, 0, 0, 0, 0x0a]));
        assert_eq!(reply.target_proto_addr(), Ipv4Addr::new(192, 0, 2, 10));
    }

    #[test]
    fn rejects_other_hardware_and_protocols() {
        for (at, value) in [(1, 6u8), (2, 0x86), (4, 8), (5, 16)] {
            let mut bytes = request();
            bytes[at] = value;
            assert_eq!(
                Packet::new_checked(&bytes[..]),
                Err(WireError::Unsupported),
                "byte {at}"
            );
        }
    }

    #[test]
    fn every_prefix_is_truncated() {
        let bytes = request();
        for len in 0..bytes.len() {
            assert_eq!(
                Packet::new_checked(&bytes[..len]),
                Err(WireError::Truncated)
            );
        }
    }
}
