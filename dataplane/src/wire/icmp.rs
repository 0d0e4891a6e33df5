//! ICMP for IPv4 (RFC 792).
//!
//! [`Packet::new_checked`] requires the 8-byte header (type, code, checksum, 4 bytes that depend
//! on the type). The buffer is the whole message (the IP payload): the checksum covers all of it,
//! with no pseudo-header. For error messages the data is the quoted invoking packet (its IP header
//! and at least 8 bytes of what followed), which [`Packet::quoted_packet`] returns.

use super::checksum;
use super::{clamped, clamped_mut, read_u16, read_u32, write_u16, Field, WireError};

mod field {
    use super::Field;
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Field = 2..4;
    /// "Rest of header": identifier and sequence number for queries.
    pub const REST: Field = 4..8;
    pub const IDENT: Field = 4..6;
    pub const SEQ_NO: Field = 6..8;
    /// Next-hop MTU of "fragmentation needed" (type 3 code 4, RFC 1191).
    pub const NEXT_HOP_MTU: Field = 6..8;
    /// Pointer of "parameter problem".
    pub const POINTER: usize = 4;
    pub const DATA: usize = 8;
}

/// Length of the ICMP header.
pub const HEADER_LEN: usize = field::DATA;

/// ICMP message types.
pub mod message {
    /// Echo reply.
    pub const ECHO_REPLY: u8 = 0;
    /// Destination unreachable (an error).
    pub const DEST_UNREACHABLE: u8 = 3;
    /// Source quench (an error, deprecated by RFC 6633).
    pub const SOURCE_QUENCH: u8 = 4;
    /// Redirect (an error).
    pub const REDIRECT: u8 = 5;
    /// Echo request.
    pub const ECHO_REQUEST: u8 = 8;
    /// Router advertisement.
    pub const ROUTER_ADVERT: u8 = 9;
    /// Router solicitation.
    pub const ROUTER_SOLICIT: u8 = 10;
    /// Time exceeded (an error).
    pub const TIME_EXCEEDED: u8 = 11;
    /// Parameter problem (an error).
    pub const PARAM_PROBLEM: u8 = 12;
    /// Timestamp request.
    pub const TIMESTAMP: u8 = 13;
    /// Timestamp reply.
    pub const TIMESTAMP_REPLY: u8 = 14;
    /// Information request.
    pub const INFO_REQUEST: u8 = 15;
    /// Information reply.
    pub const INFO_REPLY: u8 = 16;
    /// Address mask request.
    pub const MASK_REQUEST: u8 = 17;
    /// Address mask reply.
    pub const MASK_REPLY: u8 = 18;
}

/// True for the error messages that quote an invoking packet.
#[inline]
pub const fn is_error_type(msg_type: u8) -> bool {
    matches!(
        msg_type,
        message::DEST_UNREACHABLE
            | message::SOURCE_QUENCH
            | message::REDIRECT
            | message::TIME_EXCEEDED
            | message::PARAM_PROBLEM
    )
}

/// True for the query/reply messages whose header carries an identifier (which pf uses in place
/// of a port for state).
#[inline]
pub const fn has_identifier(msg_type: u8) -> bool {
    matches!(
        msg_type,
        message::ECHO_REPLY
            | message::ECHO_REQUEST
            | message::TIMESTAMP
            | message::TIMESTAMP_REPLY
            | message::INFO_REQUEST
            | message::INFO_REPLY
            | message::MASK_REQUEST
            | message::MASK_REPLY
    )
}

/// A view over an ICMP message.
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

    /// The four type-dependent header bytes, as one word.
    #[inline]
    pub fn rest_of_header(&self) -> u32 {
        read_u32(&self.buffer.as_ref()[field::REST])
    }

    /// Identifier of an echo (or other query) message.
    #[inline]
    pub fn echo_ident(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::IDENT])
    }

    /// Sequence number of an echo (or other query) message.
    #[inline]
    pub fn echo_seq_no(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::SEQ_NO])
    }

    /// The identifier, for the message types that have one.
    #[inline]
    pub fn query_ident(&self) -> Option<u16> {
        has_identifier(self.msg_type()).then(|| self.echo_ident())
    }

    /// Next-hop MTU of a "fragmentation needed" message (type 3 code 4), else `None`.
    #[inline]
    pub fn next_hop_mtu(&self) -> Option<u16> {
        (self.msg_type() == message::DEST_UNREACHABLE && self.code() == 4)
            .then(|| read_u16(&self.buffer.as_ref()[field::NEXT_HOP_MTU]))
    }

    /// Pointer of a parameter-problem message, else `None`.
    #[inline]
    pub fn param_problem_pointer(&self) -> Option<u8> {
        (self.msg_type() == message::PARAM_PROBLEM).then(|| self.buffer.as_ref()[field::POINTER])
    }

    /// True for error messages (types 3, 4, 5, 11, 12).
    #[inline]
    pub fn is_error(&self) -> bool {
        is_error_type(self.msg_type())
    }

    /// Everything after the 8-byte header.
    #[inline]
    pub fn data(&self) -> &[u8] {
        clamped(self.buffer.as_ref(), HEADER_LEN, usize::MAX)
    }

    /// The quoted invoking packet of an error message (IP header first), else `None`.
    #[inline]
    pub fn quoted_packet(&self) -> Option<&[u8]> {
        self.is_error().then(|| self.data())
    }

    /// The quoted IP header of an error message — its IHL × 4 bytes — if the quote holds a
    /// plausible IPv4 header (version 4, IHL ≥ 5, all of it present).
    #[inline]
    pub fn quoted_ip_header(&self) -> Option<&[u8]> {
        let quoted = self.quoted_packet()?;
        let first = *quoted.first()?;
        let header_len = ((first & 0x0f) as usize) * 4;
        if first >> 4 != 4 || header_len < 20 {
            return None;
        }
        quoted.get(..header_len)
    }

    /// True when the checksum over the whole message is correct.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        checksum::verify(self.buffer.as_ref())
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

    /// Sets the four type-dependent bytes.
    #[inline]
    pub fn set_rest_of_header(&mut self, value: u32) {
        super::write_u32(&mut self.buffer.as_mut()[field::REST], value);
    }

    /// Sets the identifier (no checksum update: see [`Packet::replace_echo_ident`]).
    #[inline]
    pub fn set_echo_ident(&mut self, value: u16) {
        write_u16(&mut self.buffer.as_mut()[field::IDENT], value);
    }

    /// Sets the sequence number (no checksum update).
    #[inline]
    pub fn set_echo_seq_no(&mut self, value: u16) {
        write_u16(&mut self.buffer.as_mut()[field::SEQ_NO], value);
    }

    /// Rewrites the identifier (NAT of a query), patching the checksum; returns the old value.
    #[inline]
    pub fn replace_echo_ident(&mut self, value: u16) -> u16 {
        let old = self.echo_ident();
        let check = checksum::update_u16(self.checksum(), old, value);
        self.set_echo_ident(value);
        self.set_checksum(check);
        old
    }

    /// Computes and stores the checksum over the whole message.
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let value = checksum::checksum(self.buffer.as_ref());
        self.set_checksum(value);
    }

    /// Everything after the header, mutable.
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        clamped_mut(self.buffer.as_mut(), HEADER_LEN, usize::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testutil::hex;

    #[test]
    fn echo_request() {
        let mut bytes = hex("08 00 00 00 12 34 00 07 61 62 63");
        let mut icmp = Packet::new_checked(&mut bytes[..]).unwrap();
        icmp.fill_checksum();
        assert!(icmp.verify_checksum());
        assert_eq!(icmp.msg_type(), message::ECHO_REQUEST);
        assert_eq!(icmp.echo_ident(), 0x1234);
        assert_eq!(icmp.echo_seq_no(), 7);
        assert_eq!(icmp.query_ident(), Some(0x1234));
        assert!(!icmp.is_error());
        assert_eq!(icmp.quoted_packet(), None);
        assert_eq!(icmp.data(), b"abc");
        icmp.replace_echo_ident(0xfedc);
        assert!(icmp.verify_checksum());
        assert_eq!(icmp.echo_ident(), 0xfedc);
    }

    #[test]
    fn errors_quote_the_invoking_packet() {
        let mut bytes = hex("03 04 00 00 00 00 05 78");
        let quoted_ip = hex("45 00 05 dc 00 01 40 00 3f 06 00 00 0a 00 00 01 0a 00 00 02");
        bytes.extend_from_slice(&quoted_ip);
        bytes.extend_from_slice(&[0x9c, 0x40, 0x01, 0xbb, 0, 0, 0, 1]);
        let icmp = Packet::new_checked(&bytes[..]).unwrap();
        assert!(icmp.is_error());
        assert_eq!(icmp.next_hop_mtu(), Some(1400));
        assert_eq!(icmp.query_ident(), None);
        assert_eq!(icmp.quoted_packet().unwrap().len(), 28);
        assert_eq!(icmp.quoted_ip_header(), Some(&quoted_ip[..]));

        // A quote too short for its IHL has no header to offer.
        let icmp = Packet::new_checked(&bytes[..20]).unwrap();
        assert_eq!(icmp.quoted_ip_header(), None);
    }

    #[test]
    fn every_prefix_of_the_header_is_truncated() {
        let bytes = hex("0b 00 f4 ff 00 00 00 00");
        for len in 0..bytes.len() {
            assert_eq!(
                Packet::new_checked(&bytes[..len]),
                Err(WireError::Truncated)
            );
        }
        let icmp = Packet::new_checked(&bytes[..]).unwrap();
        assert!(icmp.verify_checksum());
        assert_eq!(icmp.quoted_ip_header(), None); // empty quote
    }
}
