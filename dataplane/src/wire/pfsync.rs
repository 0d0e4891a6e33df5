//! pfsync on the wire (OpenBSD, version 6; reference/protocols.md §3.1–3.2): the outer IP checks
//! and views over the 20-byte frame header and the 4-byte section subheader. The protocol engine
//! (messages, merge rules, bulk updates) lives in the control plane.
//!
//! Outer rules: IPv4 only, IP protocol 240, TTL 255, destination 224.0.0.240 or a unicast
//! `syncpeer`. pfsync is unauthenticated: use a dedicated link.

use std::net::{IpAddr, Ipv4Addr};

pub use super::carp::{Destination, OuterError};
use super::{clamped, read_array, read_u16, write_u16, Field, WireError};

/// IP protocol number.
pub const PROTOCOL: u8 = super::ip_protocol::PFSYNC;
/// The only TTL pfsync accepts and sends.
pub const TTL: u8 = 255;
/// The pfsync group (`INADDR_PFSYNC_GROUP`).
pub const GROUP_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 240);
/// The protocol version this view was written for.
pub const VERSION: u8 = 6;
/// Length of the frame header.
pub const HEADER_LEN: usize = 20;
/// Length of a section subheader.
pub const SUBHEADER_LEN: usize = 4;

mod field {
    use super::Field;
    pub const VERSION: usize = 0;
    pub const LENGTH: Field = 2..4;
    /// Ruleset MD5 of older pfsync; sent as zero and ignored now.
    pub const PFCKSUM: Field = 4..20;

    pub const SUB_ACTION: usize = 0;
    pub const SUB_LEN: usize = 1;
    pub const SUB_COUNT: Field = 2..4;
}

/// Classifies a pfsync destination: 224.0.0.240 is the group, an IPv4 unicast address is a peer;
/// anything else, IPv6 included (OpenBSD pfsync is IPv4-only), is `None`.
#[inline]
pub fn classify_destination(dst: IpAddr) -> Option<Destination> {
    match dst {
        IpAddr::V4(a) if a == GROUP_V4 => Some(Destination::Group),
        IpAddr::V4(_) if super::carp::is_unicast(dst) => Some(Destination::Unicast),
        _ => None,
    }
}

/// The outer checks: TTL 255, then a pfsync destination.
#[inline]
pub fn check_outer(ttl: u8, dst: IpAddr) -> Result<Destination, OuterError> {
    if ttl != TTL {
        return Err(OuterError::BadTtl);
    }
    classify_destination(dst).ok_or(OuterError::BadDestination)
}

/// A view over a pfsync frame: the header and the sections its length covers.
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

    /// Wraps `buffer` (the IP payload) if it holds the header, and the length field is at least
    /// the header (`BadLength`) and at most the buffer (`Truncated`): the receiver requires the IP
    /// payload to cover `len` and ignores anything beyond it. The version is left to the engine.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let data = buffer.as_ref();
        if data.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let len = read_u16(&data[field::LENGTH]) as usize;
        if len < HEADER_LEN {
            return Err(WireError::BadLength);
        }
        if len > data.len() {
            return Err(WireError::Truncated);
        }
        Ok(Header { buffer })
    }

    /// The wrapped buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Protocol version (6).
    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VERSION]
    }

    /// Bytes from the start of this header to the end of the frame.
    #[inline]
    #[allow(clippy::len_without_is_empty)] // a header field, not a container length
    pub fn len(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::LENGTH])
    }

    /// The 16-byte `pfcksum` (zero from current senders).
    #[inline]
    pub fn pfcksum(&self) -> [u8; 16] {
        read_array(self.buffer.as_ref(), field::PFCKSUM.start)
    }

    /// The sections after the header, bounded by the length field.
    #[inline]
    pub fn sections(&self) -> &[u8] {
        clamped(self.buffer.as_ref(), HEADER_LEN, self.len() as usize)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Header<T> {
    /// Sets the version and zeroes the pad byte.
    #[inline]
    pub fn set_version(&mut self, version: u8) {
        let data = self.buffer.as_mut();
        data[field::VERSION] = version;
        data[field::VERSION + 1] = 0;
    }

    /// Sets the length field.
    #[inline]
    pub fn set_len(&mut self, len: u16) {
        write_u16(&mut self.buffer.as_mut()[field::LENGTH], len);
    }

    /// Sets `pfcksum`.
    #[inline]
    pub fn set_pfcksum(&mut self, value: &[u8; 16]) {
        self.buffer.as_mut()[field::PFCKSUM].copy_from_slice(value);
    }
}

/// A view over a section subheader: action, per-message length in 32-bit words, count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> SubHeader<T> {
    /// Wraps `buffer` without checking it.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        SubHeader { buffer }
    }

    /// Wraps `buffer` if it holds the 4-byte subheader. Whether `count` messages fit is the
    /// engine's check (`badlen`), since it may skip a section it does not know.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        if buffer.as_ref().len() < SUBHEADER_LEN {
            return Err(WireError::Truncated);
        }
        Ok(SubHeader { buffer })
    }

    /// The `PFSYNC_ACT_*` action.
    #[inline]
    pub fn action(&self) -> u8 {
        self.buffer.as_ref()[field::SUB_ACTION]
    }

    /// Length of one message in 32-bit words.
    #[inline]
    pub fn len_words(&self) -> u8 {
        self.buffer.as_ref()[field::SUB_LEN]
    }

    /// Length of one message in bytes (the stride between messages).
    #[inline]
    pub fn message_len(&self) -> usize {
        self.len_words() as usize * 4
    }

    /// Number of messages that follow.
    #[inline]
    pub fn count(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::SUB_COUNT])
    }

    /// Bytes the messages of this section occupy.
    #[inline]
    pub fn messages_len(&self) -> usize {
        self.message_len() * self.count() as usize
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> SubHeader<T> {
    /// Sets the action.
    #[inline]
    pub fn set_action(&mut self, action: u8) {
        self.buffer.as_mut()[field::SUB_ACTION] = action;
    }

    /// Sets the per-message length in 32-bit words.
    #[inline]
    pub fn set_len_words(&mut self, words: u8) {
        self.buffer.as_mut()[field::SUB_LEN] = words;
    }

    /// Sets the message count.
    #[inline]
    pub fn set_count(&mut self, count: u16) {
        write_u16(&mut self.buffer.as_mut()[field::SUB_COUNT], count);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ipv4;
    use crate::wire::testutil::hex;

    /// protocols.md §6.1 TV4: a bulk update request.
    const TV4_IP: &str = "45 10 00 38 ab cd 40 00 ff f0 e4 06 0a 00 00 01 e0 00 00 f0";

    fn tv4_payload() -> Vec<u8> {
        let mut payload = hex("06 00 00 24");
        payload.extend_from_slice(&[0; 16]);
        payload.extend_from_slice(&hex("05 03 00 01"));
        payload.extend_from_slice(&[0; 12]);
        payload
    }

    #[test]
    fn tv4_bulk_request() {
        let mut packet = hex(TV4_IP);
        packet.extend_from_slice(&tv4_payload());
        let ip = ipv4::Packet::new_checked(&packet[..]).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!(ip.protocol(), PROTOCOL);
        assert_eq!(
            check_outer(ip.ttl(), ip.dst_addr().into()),
            Ok(Destination::Group)
        );

        let pfsync = Header::new_checked(ip.payload()).unwrap();
        assert_eq!(pfsync.version(), VERSION);
        assert_eq!(pfsync.len(), 36);
        assert_eq!(pfsync.pfcksum(), [0; 16]);
        assert_eq!(pfsync.sections().len(), 16);
        let sub = SubHeader::new_checked(pfsync.sections()).unwrap();
        assert_eq!(sub.action(), 5); // UPD_REQ
        assert_eq!(sub.len_words(), 3);
        assert_eq!(sub.message_len(), 12);
        assert_eq!(sub.count(), 1);
        assert_eq!(sub.messages_len(), 12);
    }

    #[test]
    fn length_checks() {
        let payload = tv4_payload();
        for len in 0..payload.len() {
            assert_eq!(
                Header::new_checked(&payload[..len]),
                Err(WireError::Truncated),
                "prefix {len}"
            );
        }
        let mut short = payload.clone();
        short[3] = 19;
        assert_eq!(Header::new_checked(&short[..]), Err(WireError::BadLength));
        let mut longer = payload.clone();
        longer.extend_from_slice(&[0xee; 5]); // beyond len: ignored
        assert_eq!(
            Header::new_checked(&longer[..]).unwrap().sections().len(),
            16
        );
        for len in 0..SUBHEADER_LEN {
            assert_eq!(
                SubHeader::new_checked(&payload[20..20 + len]),
                Err(WireError::Truncated)
            );
        }
    }

    #[test]
    fn outer_checks() {
        assert_eq!(
            check_outer(255, "10.1.1.2".parse().unwrap()),
            Ok(Destination::Unicast)
        );
        assert_eq!(
            check_outer(64, IpAddr::V4(GROUP_V4)),
            Err(OuterError::BadTtl)
        );
        assert_eq!(
            check_outer(255, "224.0.0.18".parse().unwrap()),
            Err(OuterError::BadDestination)
        );
        assert_eq!(
            check_outer(255, "2001:db8::1".parse().unwrap()),
            Err(OuterError::BadDestination)
        );
    }

    #[test]
    fn setters() {
        let mut bytes = [0xffu8; 24];
        let mut header = Header::new_unchecked(&mut bytes[..]);
        header.set_version(VERSION);
        header.set_len(24);
        header.set_pfcksum(&[0; 16]);
        let header = Header::new_checked(&bytes[..]).unwrap();
        assert_eq!(header.version(), 6);
        assert_eq!(header.sections(), &[0xff; 4]);
        assert_eq!(bytes[1], 0);
    }
}
