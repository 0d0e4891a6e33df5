//! UDP datagrams (RFC 768).
//!
//! [`Packet::new_checked`] validates 8 bytes present (`Truncated`), a length field ≥ 8
//! (`BadLength`) and ≤ the buffer (`Truncated`). The checksum is optional over IPv4 (zero means
//! "none") and mandatory over IPv6 (RFC 8200 §8.1: a zero checksum is invalid); a computed zero
//! is sent as 0xffff.

use std::net::IpAddr;

use super::checksum;
use super::{clamped, clamped_mut, read_u16, write_u16, Field, WireError};

mod field {
    use super::Field;
    pub const SRC_PORT: Field = 0..2;
    pub const DST_PORT: Field = 2..4;
    pub const LENGTH: Field = 4..6;
    pub const CHECKSUM: Field = 6..8;
    pub const PAYLOAD: usize = 8;
}

/// Length of the UDP header.
pub const HEADER_LEN: usize = field::PAYLOAD;

/// A view over a UDP datagram.
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

    /// Wraps `buffer` after checking the header and the length field.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let packet = Self::new_checked_header(buffer)?;
        let len = packet.len() as usize;
        if len < HEADER_LEN {
            return Err(WireError::BadLength);
        }
        if len > packet.buffer.as_ref().len() {
            return Err(WireError::Truncated);
        }
        Ok(packet)
    }

    /// Wraps `buffer` after checking only that the 8-byte header is present: for a first
    /// fragment or a quoted header, where the length field describes more than the buffer holds.
    #[inline]
    pub fn new_checked_header(buffer: T) -> Result<Self, WireError> {
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

    /// Source port.
    #[inline]
    pub fn src_port(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::SRC_PORT])
    }

    /// Destination port.
    #[inline]
    pub fn dst_port(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::DST_PORT])
    }

    /// The length field (header + payload).
    #[inline]
    #[allow(clippy::len_without_is_empty)] // a header field, not a container length
    pub fn len(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::LENGTH])
    }

    /// The checksum field (0: none, IPv4 only).
    #[inline]
    pub fn checksum(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::CHECKSUM])
    }

    /// The payload, bounded by the length field (and the buffer).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        clamped(self.buffer.as_ref(), HEADER_LEN, self.len() as usize)
    }

    /// The datagram as the length field bounds it.
    #[inline]
    fn datagram(&self) -> &[u8] {
        clamped(self.buffer.as_ref(), 0, self.len() as usize)
    }

    /// Checks the checksum over the pseudo-header and the datagram. Over IPv4 a zero checksum
    /// means the sender did not compute one and passes; over IPv6 it is invalid.
    #[inline]
    pub fn verify_checksum(&self, src: &IpAddr, dst: &IpAddr) -> bool {
        if self.checksum() == 0 {
            return src.is_ipv4();
        }
        let data = self.datagram();
        let pseudo = checksum::pseudo_header(src, dst, super::ip_protocol::UDP, data.len() as u32);
        checksum::combine(&[pseudo, checksum::sum(data)]) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the source port (no checksum update: see [`Packet::replace_src_port`]).
    #[inline]
    pub fn set_src_port(&mut self, port: u16) {
        write_u16(&mut self.buffer.as_mut()[field::SRC_PORT], port);
    }

    /// Sets the destination port (no checksum update).
    #[inline]
    pub fn set_dst_port(&mut self, port: u16) {
        write_u16(&mut self.buffer.as_mut()[field::DST_PORT], port);
    }

    /// Sets the length field.
    #[inline]
    pub fn set_len(&mut self, len: u16) {
        write_u16(&mut self.buffer.as_mut()[field::LENGTH], len);
    }

    /// Sets the checksum field.
    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        write_u16(&mut self.buffer.as_mut()[field::CHECKSUM], value);
    }

    /// Computes and stores the checksum (a computed 0 is stored as 0xffff).
    #[inline]
    pub fn fill_checksum(&mut self, src: &IpAddr, dst: &IpAddr) {
        self.set_checksum(0);
        let data = self.datagram();
        let pseudo = checksum::pseudo_header(src, dst, super::ip_protocol::UDP, data.len() as u32);
        let value = checksum::finish(checksum::combine(&[pseudo, checksum::sum(data)]));
        self.set_checksum(nonzero(value));
    }

    /// Patches the checksum after a 16-bit word changed from `old` to `new`, leaving an absent
    /// (zero) checksum absent.
    #[inline]
    pub fn update_checksum(&mut self, old: u16, new: u16) {
        let current = self.checksum();
        if current != 0 {
            self.set_checksum(nonzero(checksum::update_u16(current, old, new)));
        }
    }

    /// Patches the checksum for an address change in the pseudo-header (4 or 16 bytes), leaving
    /// an absent checksum absent.
    #[inline]
    pub fn update_checksum_for_address(&mut self, old: &[u8], new: &[u8]) {
        let current = self.checksum();
        if current != 0 {
            self.set_checksum(nonzero(checksum::update_bytes(current, old, new)));
        }
    }

    /// Rewrites the source port, patching the checksum; returns the old port.
    #[inline]
    pub fn replace_src_port(&mut self, port: u16) -> u16 {
        let old = self.src_port();
        self.update_checksum(old, port);
        self.set_src_port(port);
        old
    }

    /// Rewrites the destination port, patching the checksum; returns the old port.
    #[inline]
    pub fn replace_dst_port(&mut self, port: u16) -> u16 {
        let old = self.dst_port();
        self.update_checksum(old, port);
        self.set_dst_port(port);
        old
    }

    /// The payload, mutable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = self.len() as usize;
        clamped_mut(self.buffer.as_mut(), HEADER_LEN, end)
    }
}

/// UDP transmits a computed checksum of zero as all ones, keeping zero for "no checksum".
#[inline]
fn nonzero(value: u16) -> u16 {
    if value == 0 {
        0xffff
    } else {
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn datagram(payload: &[u8]) -> Vec<u8> {
        let mut bytes = vec![0u8; HEADER_LEN];
        let mut udp = Packet::new_unchecked(&mut bytes[..]);
        udp.set_src_port(5353);
        udp.set_dst_port(53);
        udp.set_len((HEADER_LEN + payload.len()) as u16);
        bytes.extend_from_slice(payload);
        bytes
    }

    #[test]
    fn fields_and_checksums() {
        let src4 = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
        let dst4 = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));
        let mut bytes = datagram(b"query");
        bytes.extend_from_slice(&[0; 3]); // trailing bytes beyond the length field
        let mut udp = Packet::new_checked(&mut bytes[..]).unwrap();
        assert_eq!(udp.src_port(), 5353);
        assert_eq!(udp.dst_port(), 53);
        assert_eq!(udp.len(), 13);
        assert_eq!(udp.payload(), b"query");
        assert!(udp.verify_checksum(&src4, &dst4), "zero = none over IPv4");
        udp.fill_checksum(&src4, &dst4);
        assert_ne!(udp.checksum(), 0);
        assert!(udp.verify_checksum(&src4, &dst4));
        udp.replace_dst_port(5300);
        assert!(udp.verify_checksum(&src4, &dst4));

        let src6 = IpAddr::V6("2001:db8::1".parse::<Ipv6Addr>().unwrap());
        let dst6 = IpAddr::V6("2001:db8::2".parse::<Ipv6Addr>().unwrap());
        udp.set_checksum(0);
        assert!(
            !udp.verify_checksum(&src6, &dst6),
            "zero is invalid over IPv6"
        );
        udp.fill_checksum(&src6, &dst6);
        assert!(udp.verify_checksum(&src6, &dst6));
    }

    #[test]
    fn absent_checksum_stays_absent() {
        let mut bytes = datagram(b"x");
        let mut udp = Packet::new_checked(&mut bytes[..]).unwrap();
        udp.replace_src_port(1);
        udp.update_checksum_for_address(&[1, 2, 3, 4], &[5, 6, 7, 8]);
        assert_eq!(udp.checksum(), 0);
    }

    #[test]
    fn computed_zero_is_sent_as_ones_and_updates_stay_nonzero() {
        // Choose the payload word so that everything sums to 0xffff: the computed checksum is
        // then 0, which UDP must send as 0xffff.
        let src = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        let dst = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
        let mut bytes = datagram(&[0, 0]);
        let pseudo = checksum::pseudo_header(&src, &dst, 17, bytes.len() as u32);
        let rest = checksum::combine(&[pseudo, checksum::sum(&bytes)]);
        bytes[8..10].copy_from_slice(&(!rest).to_be_bytes());
        let mut udp = Packet::new_checked(&mut bytes[..]).unwrap();
        udp.fill_checksum(&src, &dst);
        assert_eq!(udp.checksum(), 0xffff);
        assert!(udp.verify_checksum(&src, &dst));
        // An update that changes nothing must not turn it into 0 ("no checksum").
        udp.update_checksum(0x1234, 0x1234);
        assert_eq!(udp.checksum(), 0xffff);
        assert!(udp.verify_checksum(&src, &dst));
    }

    #[test]
    fn length_checks() {
        let bytes = datagram(b"abcdef");
        for len in 0..bytes.len() {
            assert_eq!(
                Packet::new_checked(&bytes[..len]),
                Err(WireError::Truncated),
                "prefix {len}"
            );
        }
        let mut short = bytes.clone();
        short[5] = 7; // length below the header
        assert_eq!(Packet::new_checked(&short[..]), Err(WireError::BadLength));
        assert!(Packet::new_checked_header(&bytes[..8]).is_ok());
        assert_eq!(
            Packet::new_checked_header(&bytes[..8]).unwrap().payload(),
            &[] as &[u8]
        );
    }
}
