//! ICMPv6 (RFC 4443) and neighbour discovery (RFC 4861).
//!
//! [`Packet::new_checked`] requires 8 bytes (type, code, checksum and the first body word, as pf's
//! `icmp6_hdr`). The checksum covers the IPv6 pseudo-header and the whole message.
//! [`NdiscPacket::new_checked`] accepts neighbour solicitations (135) and advertisements (136) of
//! at least 24 bytes; their options are walked by [`NdOptionsIter`], which stops with `Malformed`
//! on a zero or overrunning length (RFC 4861 §4.6 says to drop such messages).

use std::net::{IpAddr, Ipv6Addr};

use super::checksum;
use super::ethernet::MacAddr;
use super::{clamped, clamped_mut, read_array, read_u16, read_u32, write_u16, Field, WireError};

mod field {
    use super::Field;
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Field = 2..4;
    pub const IDENT: Field = 4..6;
    pub const SEQ_NO: Field = 6..8;
    /// MTU of "packet too big"; pointer of "parameter problem".
    pub const BODY_WORD: Field = 4..8;
    pub const DATA: usize = 8;
    /// Neighbour advertisement flags (R, S, O in the top bits).
    pub const ND_FLAGS: usize = 4;
    pub const ND_TARGET: Field = 8..24;
    pub const ND_OPTIONS: usize = 24;
}

/// Length of the ICMPv6 header as pf reads it (type, code, checksum, first body word).
pub const HEADER_LEN: usize = field::DATA;
/// Length of a neighbour solicitation/advertisement before its options.
pub const NDISC_LEN: usize = field::ND_OPTIONS;

/// ICMPv6 message types.
pub mod message {
    /// Destination unreachable (error).
    pub const DEST_UNREACHABLE: u8 = 1;
    /// Packet too big (error).
    pub const PACKET_TOO_BIG: u8 = 2;
    /// Time exceeded (error).
    pub const TIME_EXCEEDED: u8 = 3;
    /// Parameter problem (error).
    pub const PARAM_PROBLEM: u8 = 4;
    /// Echo request.
    pub const ECHO_REQUEST: u8 = 128;
    /// Echo reply.
    pub const ECHO_REPLY: u8 = 129;
    /// MLD query.
    pub const MLD_QUERY: u8 = 130;
    /// MLDv1 report.
    pub const MLD_REPORT: u8 = 131;
    /// MLDv1 done.
    pub const MLD_DONE: u8 = 132;
    /// Router solicitation.
    pub const ROUTER_SOLICIT: u8 = 133;
    /// Router advertisement.
    pub const ROUTER_ADVERT: u8 = 134;
    /// Neighbour solicitation.
    pub const NEIGHBOR_SOLICIT: u8 = 135;
    /// Neighbour advertisement.
    pub const NEIGHBOR_ADVERT: u8 = 136;
    /// Redirect.
    pub const REDIRECT: u8 = 137;
    /// MLDv2 report.
    pub const MLDV2_REPORT: u8 = 143;
}

/// True for error messages (types below 128), which quote the invoking packet.
#[inline]
pub const fn is_error_type(msg_type: u8) -> bool {
    msg_type < 128
}

/// True for the neighbour-discovery messages that must arrive with hop limit 255 (RFC 4861 §6.1,
/// §7.1, §8.1); pf drops them otherwise.
#[inline]
pub const fn is_neighbor_discovery(msg_type: u8) -> bool {
    matches!(
        msg_type,
        message::ROUTER_SOLICIT
            | message::ROUTER_ADVERT
            | message::NEIGHBOR_SOLICIT
            | message::NEIGHBOR_ADVERT
            | message::REDIRECT
    )
}

fn pseudo_sum(src: &Ipv6Addr, dst: &Ipv6Addr, data: &[u8]) -> u16 {
    checksum::pseudo_header(
        &IpAddr::V6(*src),
        &IpAddr::V6(*dst),
        super::ip_protocol::ICMPV6,
        data.len() as u32,
    )
}

fn verify(src: &Ipv6Addr, dst: &Ipv6Addr, data: &[u8]) -> bool {
    checksum::combine(&[pseudo_sum(src, dst, data), checksum::sum(data)]) == 0xffff
}

fn compute(src: &Ipv6Addr, dst: &Ipv6Addr, data: &[u8]) -> u16 {
    checksum::finish(checksum::combine(&[
        pseudo_sum(src, dst, data),
        checksum::sum(data),
    ]))
}

/// A view over an ICMPv6 message.
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

    /// Wraps `buffer` if it holds the 8-byte header.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        Ok(Packet { buffer })
    }

    /// The wrapped buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Message type.
    #[inline]
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }

    /// Message code.
    #[inline]
    pub fn code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    /// Checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::CHECKSUM])
    }

    /// Identifier of an echo request/reply.
    #[inline]
    pub fn echo_ident(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::IDENT])
    }

    /// Sequence number of an echo request/reply.
    #[inline]
    pub fn echo_seq_no(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::SEQ_NO])
    }

    /// The identifier of an echo request or reply, else `None`.
    #[inline]
    pub fn query_ident(&self) -> Option<u16> {
        matches!(self.msg_type(), message::ECHO_REQUEST | message::ECHO_REPLY)
            .then(|| self.echo_ident())
    }

    /// MTU of a packet-too-big message, else `None`.
    #[inline]
    pub fn mtu(&self) -> Option<u32> {
        (self.msg_type() == message::PACKET_TOO_BIG)
            .then(|| read_u32(&self.buffer.as_ref()[field::BODY_WORD]))
    }

    /// Pointer of a parameter-problem message, else `None`.
    #[inline]
    pub fn param_problem_pointer(&self) -> Option<u32> {
        (self.msg_type() == message::PARAM_PROBLEM)
            .then(|| read_u32(&self.buffer.as_ref()[field::BODY_WORD]))
    }

    /// True for error messages (types 1–127).
    #[inline]
    pub fn is_error(&self) -> bool {
        is_error_type(self.msg_type())
    }

    /// Everything after the 8-byte header.
    #[inline]
    pub fn data(&self) -> &[u8] {
        clamped(self.buffer.as_ref(), HEADER_LEN, usize::MAX)
    }

    /// The quoted invoking packet (IPv6 header first) of an error message, else `None`.
    #[inline]
    pub fn quoted_packet(&self) -> Option<&[u8]> {
        self.is_error().then(|| self.data())
    }

    /// True when the checksum over the pseudo-header and the message is correct.
    #[inline]
    pub fn verify_checksum(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> bool {
        verify(src, dst, self.buffer.as_ref())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the message type.
    #[inline]
    pub fn set_msg_type(&mut self, value: u8) {
        self.buffer.as_mut()[field::TYPE] = value;
    }

    /// Sets the message code.
    #[inline]
    pub fn set_code(&mut self, value: u8) {
        self.buffer.as_mut()[field::CODE] = value;
    }

    /// Sets the checksum field.
    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        write_u16(&mut self.buffer.as_mut()[field::CHECKSUM], value);
    }

    /// Sets the echo identifier (no checksum update).
    #[inline]
    pub fn set_echo_ident(&mut self, value: u16) {
        write_u16(&mut self.buffer.as_mut()[field::IDENT], value);
    }

    /// Sets the echo sequence number (no checksum update).
    #[inline]
    pub fn set_echo_seq_no(&mut self, value: u16) {
        write_u16(&mut self.buffer.as_mut()[field::SEQ_NO], value);
    }

    /// Sets the first body word (MTU, pointer, or unused).
    #[inline]
    pub fn set_body_word(&mut self, value: u32) {
        super::write_u32(&mut self.buffer.as_mut()[field::BODY_WORD], value);
    }

    /// Computes and stores the checksum.
    #[inline]
    pub fn fill_checksum(&mut self, src: &Ipv6Addr, dst: &Ipv6Addr) {
        self.set_checksum(0);
        let value = compute(src, dst, self.buffer.as_ref());
        self.set_checksum(value);
    }

    /// Everything after the header, mutable.
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        clamped_mut(self.buffer.as_mut(), HEADER_LEN, usize::MAX)
    }
}

/// ND option types.
pub mod nd_option {
    /// Source link-layer address.
    pub const SOURCE_LINK_ADDR: u8 = 1;
    /// Target link-layer address.
    pub const TARGET_LINK_ADDR: u8 = 2;
}

const FLAG_ROUTER: u8 = 0x80;
const FLAG_SOLICITED: u8 = 0x40;
const FLAG_OVERRIDE: u8 = 0x20;

/// A view over a neighbour solicitation (135) or advertisement (136).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NdiscPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> NdiscPacket<T> {
    /// Wraps `buffer` without checking it.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        NdiscPacket { buffer }
    }

    /// Wraps `buffer` if it is an NS or NA (`Unsupported` otherwise) of at least 24 bytes.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let data = buffer.as_ref();
        if data.len() < NDISC_LEN {
            return Err(WireError::Truncated);
        }
        if !matches!(
            data[field::TYPE],
            message::NEIGHBOR_SOLICIT | message::NEIGHBOR_ADVERT
        ) {
            return Err(WireError::Unsupported);
        }
        Ok(NdiscPacket { buffer })
    }

    /// The wrapped buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Message type (135 or 136 after `new_checked`).
    #[inline]
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }

    /// A neighbour solicitation.
    #[inline]
    pub fn is_solicitation(&self) -> bool {
        self.msg_type() == message::NEIGHBOR_SOLICIT
    }

    /// A neighbour advertisement.
    #[inline]
    pub fn is_advertisement(&self) -> bool {
        self.msg_type() == message::NEIGHBOR_ADVERT
    }

    /// The address being resolved (NS) or advertised (NA).
    #[inline]
    pub fn target_addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(read_array::<16>(
            self.buffer.as_ref(),
            field::ND_TARGET.start,
        ))
    }

    #[inline]
    fn flags(&self) -> u8 {
        if self.is_advertisement() {
            self.buffer.as_ref()[field::ND_FLAGS]
        } else {
            0 // a solicitation's word is reserved
        }
    }

    /// NA R flag: the sender is a router.
    #[inline]
    pub fn router_flag(&self) -> bool {
        self.flags() & FLAG_ROUTER != 0
    }

    /// NA S flag: a response to a solicitation.
    #[inline]
    pub fn solicited_flag(&self) -> bool {
        self.flags() & FLAG_SOLICITED != 0
    }

    /// NA O flag: override an existing cache entry.
    #[inline]
    pub fn override_flag(&self) -> bool {
        self.flags() & FLAG_OVERRIDE != 0
    }

    /// The option bytes.
    #[inline]
    pub fn options(&self) -> &[u8] {
        clamped(self.buffer.as_ref(), NDISC_LEN, usize::MAX)
    }

    /// Iterates over the options.
    #[inline]
    pub fn options_iter(&self) -> NdOptionsIter<'_> {
        NdOptionsIter {
            rest: self.options(),
        }
    }

    /// The source link-layer address option (sent with NS).
    #[inline]
    pub fn source_link_addr(&self) -> Result<Option<MacAddr>, WireError> {
        self.link_addr(nd_option::SOURCE_LINK_ADDR)
    }

    /// The target link-layer address option (sent with NA).
    #[inline]
    pub fn target_link_addr(&self) -> Result<Option<MacAddr>, WireError> {
        self.link_addr(nd_option::TARGET_LINK_ADDR)
    }

    /// The first option of `kind` as an Ethernet address. Any malformed option makes the whole
    /// message malformed (RFC 4861 §4.6); a link-layer option whose size is not Ethernet's
    /// (8 bytes) is `Malformed` too.
    fn link_addr(&self, kind: u8) -> Result<Option<MacAddr>, WireError> {
        let mut found = None;
        for option in self.options_iter() {
            let option = option?;
            if option.kind == kind && found.is_none() {
                if option.data.len() != 6 {
                    return Err(WireError::Malformed);
                }
                found = Some(MacAddr(read_array(option.data, 0)));
            }
        }
        Ok(found)
    }

    /// True when the checksum is correct.
    #[inline]
    pub fn verify_checksum(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> bool {
        verify(src, dst, self.buffer.as_ref())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> NdiscPacket<T> {
    /// Sets the target address.
    #[inline]
    pub fn set_target_addr(&mut self, addr: &Ipv6Addr) {
        self.buffer.as_mut()[field::ND_TARGET].copy_from_slice(&addr.octets());
    }

    /// Sets the NA flags (and zeroes the reserved bits of the word).
    #[inline]
    pub fn set_flags(&mut self, router: bool, solicited: bool, override_: bool) {
        let mut flags = 0;
        if router {
            flags |= FLAG_ROUTER;
        }
        if solicited {
            flags |= FLAG_SOLICITED;
        }
        if override_ {
            flags |= FLAG_OVERRIDE;
        }
        let data = self.buffer.as_mut();
        data[field::ND_FLAGS..field::ND_FLAGS + 4].copy_from_slice(&[flags, 0, 0, 0]);
    }

    /// Computes and stores the checksum.
    #[inline]
    pub fn fill_checksum(&mut self, src: &Ipv6Addr, dst: &Ipv6Addr) {
        let data = self.buffer.as_mut();
        data[field::CHECKSUM].copy_from_slice(&[0, 0]);
        let value = compute(src, dst, data);
        write_u16(&mut data[field::CHECKSUM], value);
    }
}

/// One ND option: type, and the bytes after the type and length bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NdOption<'a> {
    /// Option type.
    pub kind: u8,
    /// Option data (the option's length × 8 − 2 bytes).
    pub data: &'a [u8],
}

/// Iterator over ND options; yields `Err(Malformed)` once and stops on a zero length or an option
/// running past the end.
#[derive(Debug, Clone)]
pub struct NdOptionsIter<'a> {
    rest: &'a [u8],
}

impl<'a> NdOptionsIter<'a> {
    /// Iterates over `options`.
    #[inline]
    pub fn new(options: &'a [u8]) -> Self {
        NdOptionsIter { rest: options }
    }
}

impl<'a> Iterator for NdOptionsIter<'a> {
    type Item = Result<NdOption<'a>, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let len = match self.rest.get(1) {
            Some(&units) if units != 0 && units as usize * 8 <= self.rest.len() => {
                units as usize * 8
            }
            _ => {
                self.rest = &[];
                return Some(Err(WireError::Malformed));
            }
        };
        let option = NdOption {
            kind: self.rest[0],
            data: &self.rest[2..len],
        };
        self.rest = &self.rest[len..];
        Some(Ok(option))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs() -> (Ipv6Addr, Ipv6Addr) {
        (
            "fe80::1".parse().unwrap(),
            "ff02::1:ff00:2".parse().unwrap(),
        )
    }

    fn solicitation(options: &[u8]) -> Vec<u8> {
        let mut bytes = vec![0u8; NDISC_LEN];
        bytes[0] = message::NEIGHBOR_SOLICIT;
        bytes[8..24].copy_from_slice(&"2001:db8::2".parse::<Ipv6Addr>().unwrap().octets());
        bytes.extend_from_slice(options);
        bytes
    }

    #[test]
    fn echo_and_checksum() {
        let (src, dst) = addrs();
        let mut bytes = vec![128, 0, 0, 0, 0xbe, 0xef, 0, 1, b'p', b'i', b'n', b'g'];
        let mut icmp = Packet::new_checked(&mut bytes[..]).unwrap();
        icmp.fill_checksum(&src, &dst);
        assert!(icmp.verify_checksum(&src, &dst));
        assert!(!icmp.verify_checksum(&src, &"fe80::2".parse().unwrap()));
        assert_eq!(icmp.query_ident(), Some(0xbeef));
        assert_eq!(icmp.echo_seq_no(), 1);
        assert!(!icmp.is_error());
        assert_eq!(icmp.data(), b"ping");
    }

    #[test]
    fn errors() {
        let mut bytes = vec![2, 0, 0, 0, 0, 0, 0x05, 0x00];
        bytes.extend_from_slice(&[0x60; 48]);
        let icmp = Packet::new_checked(&bytes[..]).unwrap();
        assert!(icmp.is_error());
        assert_eq!(icmp.mtu(), Some(1280));
        assert_eq!(icmp.quoted_packet().map(<[u8]>::len), Some(48));
        assert_eq!(icmp.query_ident(), None);
        for len in 0..HEADER_LEN {
            assert_eq!(
                Packet::new_checked(&bytes[..len]),
                Err(WireError::Truncated)
            );
        }
    }

    #[test]
    fn neighbor_solicitation_with_source_link_addr() {
        let (src, dst) = addrs();
        let mut bytes = solicitation(&[1, 1, 2, 0, 0, 0, 0, 7]);
        let mut ns = NdiscPacket::new_checked(&mut bytes[..]).unwrap();
        ns.fill_checksum(&src, &dst);
        assert!(ns.verify_checksum(&src, &dst));
        assert!(ns.is_solicitation());
        assert_eq!(ns.target_addr(), "2001:db8::2".parse::<Ipv6Addr>().unwrap());
        assert_eq!(ns.source_link_addr(), Ok(Some(MacAddr([2, 0, 0, 0, 0, 7]))));
        assert_eq!(ns.target_link_addr(), Ok(None));
        assert!(!ns.router_flag() && !ns.solicited_flag() && !ns.override_flag());
        // The generic view agrees on the checksum.
        assert!(Packet::new_checked(&bytes[..])
            .unwrap()
            .verify_checksum(&src, &dst));
    }

    #[test]
    fn neighbor_advertisement_flags() {
        let mut bytes = solicitation(&[2, 1, 0, 0, 0x5e, 0, 1, 1]);
        bytes[0] = message::NEIGHBOR_ADVERT;
        let mut na = NdiscPacket::new_checked(&mut bytes[..]).unwrap();
        na.set_flags(false, true, true);
        assert!(na.is_advertisement());
        assert!(!na.router_flag() && na.solicited_flag() && na.override_flag());
        assert_eq!(
            na.target_link_addr(),
            Ok(Some(MacAddr([0, 0, 0x5e, 0, 1, 1])))
        );
    }

    #[test]
    fn malformed_options_and_types() {
        // zero length
        let bytes = solicitation(&[1, 0, 0, 0, 0, 0, 0, 0]);
        let ns = NdiscPacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(ns.source_link_addr(), Err(WireError::Malformed));
        // running past the end
        let bytes = solicitation(&[1, 2, 0, 0, 0, 0, 0, 0]);
        let ns = NdiscPacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(ns.source_link_addr(), Err(WireError::Malformed));
        // a link-layer option of a non-Ethernet size
        let bytes = solicitation(&[1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        let ns = NdiscPacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(ns.source_link_addr(), Err(WireError::Malformed));
        // a lone trailing byte
        let bytes = solicitation(&[1]);
        let ns = NdiscPacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(ns.options_iter().next(), Some(Err(WireError::Malformed)));
        // not NS/NA
        let mut other = solicitation(&[]);
        other[0] = message::ROUTER_ADVERT;
        assert_eq!(
            NdiscPacket::new_checked(&other[..]),
            Err(WireError::Unsupported)
        );
        let full = solicitation(&[]);
        for len in 0..full.len() {
            assert_eq!(
                NdiscPacket::new_checked(&full[..len]),
                Err(WireError::Truncated)
            );
        }
    }
}
