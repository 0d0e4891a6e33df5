//! IPv4 headers (RFC 791).
//!
//! [`Packet::new_checked`] validates, in this order: 20 bytes present (`Truncated`), version 4
//! (`BadVersion`), IHL ≥ 5 (`BadHeaderLength`), the header (with options) inside the buffer
//! (`Truncated`), total length ≤ buffer (`Truncated`) and total length ≥ header length
//! (`BadLength`). Bytes past the total length — Ethernet padding of short frames — are allowed and
//! ignored by [`Packet::payload`].
//!
//! For the IP header quoted inside an ICMP error, whose total length describes a datagram longer
//! than the quote, use [`Packet::new_checked_header`].

use std::net::Ipv4Addr;

use super::checksum;
use super::{clamped, clamped_mut, read_array, read_u16, write_u16, Field, WireError};

mod field {
    use super::Field;
    pub const VER_IHL: usize = 0;
    pub const TOS: usize = 1;
    pub const LENGTH: Field = 2..4;
    pub const IDENT: Field = 4..6;
    pub const FLAGS_FRAG: Field = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    /// TTL and protocol form one 16-bit word for checksum purposes.
    pub const TTL_PROTOCOL: Field = 8..10;
    pub const CHECKSUM: Field = 10..12;
    pub const SRC_ADDR: Field = 12..16;
    pub const DST_ADDR: Field = 16..20;
}

/// Length of an IPv4 header without options.
pub const MIN_HEADER_LEN: usize = field::DST_ADDR.end;
/// Length of an IPv4 header with the most options (IHL 15).
pub const MAX_HEADER_LEN: usize = 60;

const FLAG_DONT_FRAGMENT: u16 = 0x4000;
const FLAG_MORE_FRAGMENTS: u16 = 0x2000;
const FRAGMENT_OFFSET_MASK: u16 = 0x1fff;

/// IPv4 option types [`validate_options`] treats specially.
pub mod option {
    /// End of option list.
    pub const EOL: u8 = 0;
    /// No operation (padding).
    pub const NOP: u8 = 1;
    /// Router alert (RFC 2113).
    pub const ROUTER_ALERT: u8 = 148;
}

/// A view over an IPv4 packet.
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

    /// Wraps `buffer` after checking the header and the total length (see the module docs).
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let packet = Self::new_checked_header(buffer)?;
        let total = packet.total_len() as usize;
        if total > packet.buffer.as_ref().len() {
            return Err(WireError::Truncated);
        }
        if total < packet.header_len() {
            return Err(WireError::BadLength);
        }
        Ok(packet)
    }

    /// Wraps `buffer` after checking only the header itself (version, IHL, options present), not
    /// the total length: for quoted headers in ICMP errors. [`Packet::payload`] is then whatever
    /// of the datagram the buffer holds.
    #[inline]
    pub fn new_checked_header(buffer: T) -> Result<Self, WireError> {
        let data = buffer.as_ref();
        if data.len() < MIN_HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if data[field::VER_IHL] >> 4 != 4 {
            return Err(WireError::BadVersion);
        }
        let header_len = ((data[field::VER_IHL] & 0x0f) as usize) * 4;
        if header_len < MIN_HEADER_LEN {
            return Err(WireError::BadHeaderLength);
        }
        if header_len > data.len() {
            return Err(WireError::Truncated);
        }
        Ok(Packet { buffer })
    }

    /// The wrapped buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The version nibble (4 after `new_checked`).
    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Header length in bytes (IHL × 4), options included.
    #[inline]
    pub fn header_len(&self) -> usize {
        ((self.buffer.as_ref()[field::VER_IHL] & 0x0f) as usize) * 4
    }

    /// True when the header carries options (IHL > 5).
    #[inline]
    pub fn has_options(&self) -> bool {
        self.header_len() > MIN_HEADER_LEN
    }

    /// The type-of-service byte (DSCP << 2 | ECN).
    #[inline]
    pub fn tos(&self) -> u8 {
        self.buffer.as_ref()[field::TOS]
    }

    /// The DSCP (upper six bits of the TOS byte).
    #[inline]
    pub fn dscp(&self) -> u8 {
        self.tos() >> 2
    }

    /// The ECN codepoint (lower two bits of the TOS byte).
    #[inline]
    pub fn ecn(&self) -> u8 {
        self.tos() & 0x03
    }

    /// Total length of the datagram (header + payload) in bytes.
    #[inline]
    pub fn total_len(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::LENGTH])
    }

    /// Identification.
    #[inline]
    pub fn ident(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::IDENT])
    }

    #[inline]
    fn flags_fragment(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::FLAGS_FRAG])
    }

    /// DF.
    #[inline]
    pub fn dont_fragment(&self) -> bool {
        self.flags_fragment() & FLAG_DONT_FRAGMENT != 0
    }

    /// MF.
    #[inline]
    pub fn more_fragments(&self) -> bool {
        self.flags_fragment() & FLAG_MORE_FRAGMENTS != 0
    }

    /// Fragment offset in bytes (the field counts 8-byte units).
    #[inline]
    pub fn fragment_offset(&self) -> u16 {
        (self.flags_fragment() & FRAGMENT_OFFSET_MASK) << 3
    }

    /// Part of a fragmented datagram: MF set or a non-zero offset.
    #[inline]
    pub fn is_fragment(&self) -> bool {
        self.flags_fragment() & (FLAG_MORE_FRAGMENTS | FRAGMENT_OFFSET_MASK) != 0
    }

    /// The first fragment of a fragmented datagram (MF set, offset 0): the only one that carries
    /// the upper-layer header. False for an unfragmented packet.
    #[inline]
    pub fn is_first_fragment(&self) -> bool {
        self.flags_fragment() & (FLAG_MORE_FRAGMENTS | FRAGMENT_OFFSET_MASK) == FLAG_MORE_FRAGMENTS
    }

    /// Time to live.
    #[inline]
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    /// The protocol of the payload (see [`super::ip_protocol`]).
    #[inline]
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }

    /// The header checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::CHECKSUM])
    }

    /// Source address.
    #[inline]
    pub fn src_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(read_array::<4>(self.buffer.as_ref(), field::SRC_ADDR.start))
    }

    /// Destination address.
    #[inline]
    pub fn dst_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(read_array::<4>(self.buffer.as_ref(), field::DST_ADDR.start))
    }

    /// The option bytes (empty without options).
    #[inline]
    pub fn options(&self) -> &[u8] {
        clamped(self.buffer.as_ref(), MIN_HEADER_LEN, self.header_len())
    }

    /// The whole header, options included.
    #[inline]
    pub fn header(&self) -> &[u8] {
        clamped(self.buffer.as_ref(), 0, self.header_len())
    }

    /// The payload, bounded by the total length (and by the buffer, for a header-only view).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        clamped(
            self.buffer.as_ref(),
            self.header_len(),
            self.total_len() as usize,
        )
    }

    /// True when the header checksum is correct.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        checksum::verify(self.header())
    }

    /// The pseudo-header sum for this packet's upper-layer checksum, whose covered length is
    /// `upper_layer_len` (total length minus header length for an unfragmented packet).
    #[inline]
    pub fn pseudo_header_sum(&self, upper_layer_len: u16) -> u16 {
        checksum::pseudo_header_v4(
            self.src_addr(),
            self.dst_addr(),
            self.protocol(),
            upper_layer_len,
        )
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets version 4 and the header length in bytes (a multiple of 4, 20..=60).
    #[inline]
    pub fn set_header_len(&mut self, header_len: usize) {
        self.buffer.as_mut()[field::VER_IHL] = 0x40 | ((header_len / 4) as u8 & 0x0f);
    }

    /// Sets the TOS byte.
    #[inline]
    pub fn set_tos(&mut self, tos: u8) {
        self.buffer.as_mut()[field::TOS] = tos;
    }

    /// Sets the total length.
    #[inline]
    pub fn set_total_len(&mut self, len: u16) {
        write_u16(&mut self.buffer.as_mut()[field::LENGTH], len);
    }

    /// Sets the identification.
    #[inline]
    pub fn set_ident(&mut self, ident: u16) {
        write_u16(&mut self.buffer.as_mut()[field::IDENT], ident);
    }

    /// Sets DF, MF and the fragment offset (in bytes; the low three bits are dropped).
    #[inline]
    pub fn set_flags_and_offset(&mut self, dont_fragment: bool, more: bool, offset: u16) {
        let mut word = (offset >> 3) & FRAGMENT_OFFSET_MASK;
        if dont_fragment {
            word |= FLAG_DONT_FRAGMENT;
        }
        if more {
            word |= FLAG_MORE_FRAGMENTS;
        }
        write_u16(&mut self.buffer.as_mut()[field::FLAGS_FRAG], word);
    }

    /// Sets the TTL (the checksum is not updated: see [`Packet::decrement_ttl`]).
    #[inline]
    pub fn set_ttl(&mut self, ttl: u8) {
        self.buffer.as_mut()[field::TTL] = ttl;
    }

    /// Sets the protocol.
    #[inline]
    pub fn set_protocol(&mut self, protocol: u8) {
        self.buffer.as_mut()[field::PROTOCOL] = protocol;
    }

    /// Sets the checksum field.
    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        write_u16(&mut self.buffer.as_mut()[field::CHECKSUM], value);
    }

    /// Sets the source address (the checksum is not updated: see [`Packet::replace_src_addr`]).
    #[inline]
    pub fn set_src_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&addr.octets());
    }

    /// Sets the destination address (no checksum update).
    #[inline]
    pub fn set_dst_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&addr.octets());
    }

    /// Computes and stores the header checksum from scratch.
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let value = checksum::checksum(self.header());
        self.set_checksum(value);
    }

    /// Decrements the TTL and patches the header checksum incrementally (RFC 1624), as a router
    /// does on forwarding. Returns the new TTL, or `None` (and changes nothing) when the TTL is
    /// already 0. Deciding to send "time exceeded" instead (TTL ≤ 1) is the caller's business.
    #[inline]
    pub fn decrement_ttl(&mut self) -> Option<u8> {
        let data = self.buffer.as_ref();
        let ttl = data[field::TTL];
        if ttl == 0 {
            return None;
        }
        let old_word = read_u16(&data[field::TTL_PROTOCOL]);
        let new_word = old_word - 0x0100;
        let check = checksum::update_u16(self.checksum(), old_word, new_word);
        self.set_ttl(ttl - 1);
        self.set_checksum(check);
        Some(ttl - 1)
    }

    /// Rewrites the source address and patches the header checksum incrementally. Returns the old
    /// address, which the caller needs to patch the upper-layer checksum (pseudo-header) with
    /// [`checksum::update_ipv4_addr`].
    #[inline]
    pub fn replace_src_addr(&mut self, addr: Ipv4Addr) -> Ipv4Addr {
        let old = self.src_addr();
        let check = checksum::update_ipv4_addr(self.checksum(), old, addr);
        self.set_src_addr(addr);
        self.set_checksum(check);
        old
    }

    /// Rewrites the destination address and patches the header checksum; returns the old address.
    #[inline]
    pub fn replace_dst_addr(&mut self, addr: Ipv4Addr) -> Ipv4Addr {
        let old = self.dst_addr();
        let check = checksum::update_ipv4_addr(self.checksum(), old, addr);
        self.set_dst_addr(addr);
        self.set_checksum(check);
        old
    }

    /// The option bytes, mutable.
    #[inline]
    pub fn options_mut(&mut self) -> &mut [u8] {
        let end = self.header_len();
        clamped_mut(self.buffer.as_mut(), MIN_HEADER_LEN, end)
    }

    /// The payload bounded by the total length, mutable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (start, end) = (self.header_len(), self.total_len() as usize);
        clamped_mut(self.buffer.as_mut(), start, end)
    }
}

/// Checks the structure of IPv4 options as pf's `pf_walk_option` does: EOL ends the list, NOP is
/// one byte, any other option needs a length ≥ 2 that stays inside the option bytes.
///
/// Returns whether a router-alert option was seen (pf lets IGMP carry it).
pub fn validate_options(options: &[u8]) -> Result<bool, WireError> {
    let mut router_alert = false;
    let mut at = 0;
    while at < options.len() {
        match options[at] {
            option::EOL => break,
            option::NOP => at += 1,
            kind => {
                let len = *options.get(at + 1).ok_or(WireError::BadIpOptions)? as usize;
                if len < 2 || at + len > options.len() {
                    return Err(WireError::BadIpOptions);
                }
                router_alert |= kind == option::ROUTER_ALERT;
                at += len;
            }
        }
    }
    Ok(router_alert)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testutil::hex;

    const KNOWN: &str = "45 00 00 73 00 00 40 00 40 11 b8 61 c0 a8 00 01 c0 a8 00 c7";

    fn known_packet() -> Vec<u8> {
        let mut bytes = hex(KNOWN);
        bytes.resize(0x73, 0xaa);
        bytes
    }

    #[test]
    fn known_header() {
        let bytes = known_packet();
        let ip = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(ip.version(), 4);
        assert_eq!(ip.header_len(), 20);
        assert_eq!(ip.total_len(), 0x73);
        assert!(ip.dont_fragment());
        assert!(!ip.is_fragment());
        assert!(!ip.is_first_fragment());
        assert_eq!(ip.ttl(), 64);
        assert_eq!(ip.protocol(), 17);
        assert_eq!(ip.checksum(), 0xb861);
        assert!(ip.verify_checksum());
        assert_eq!(ip.src_addr(), Ipv4Addr::new(192, 168, 0, 1));
        assert_eq!(ip.dst_addr(), Ipv4Addr::new(192, 168, 0, 199));
        assert_eq!(ip.payload().len(), 0x73 - 20);
        assert!(ip.options().is_empty());
    }

    #[test]
    fn carp_test_vector_header_verifies() {
        // protocols.md §6.1 TV1
        let bytes = hex("45 10 00 38 12 34 40 00 ff 70 c7 54 c0 a8 01 02 e0 00 00 12");
        let ip = Packet::new_checked_header(&bytes[..]).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!(ip.ttl(), 255);
        assert_eq!(ip.protocol(), 112);
        assert_eq!(ip.tos(), 0x10);
        // total length 56 > 20 bytes held: the full check refuses it
        assert_eq!(Packet::new_checked(&bytes[..]), Err(WireError::Truncated));
    }

    #[test]
    fn ethernet_padding_is_ignored() {
        let mut bytes = hex("45 00 00 1c 00 01 00 00 40 01 00 00 0a 00 00 01 0a 00 00 02");
        bytes.extend_from_slice(&[8, 0, 0, 0, 0, 0, 0, 0]); // 8-byte ICMP
        bytes.extend_from_slice(&[0; 18]); // padding to 46 bytes
        let ip = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(ip.payload().len(), 8);
    }

    #[test]
    fn length_checks() {
        let good = known_packet();
        for len in 0..good.len() {
            assert_eq!(
                Packet::new_checked(&good[..len]),
                Err(WireError::Truncated),
                "prefix {len}"
            );
        }
        let mut bad = good.clone();
        bad[0] = 0x44; // IHL 4
        assert_eq!(
            Packet::new_checked(&bad[..]),
            Err(WireError::BadHeaderLength)
        );
        bad[0] = 0x65;
        assert_eq!(Packet::new_checked(&bad[..]), Err(WireError::BadVersion));
        bad[0] = 0x46;
        bad[2] = 0;
        bad[3] = 22; // total length below the 24-byte header
        assert_eq!(Packet::new_checked(&bad[..]), Err(WireError::BadLength));
        bad[0] = 0x4f; // 60-byte header in 115 bytes: fine
        bad[3] = 0x73;
        assert!(Packet::new_checked(&bad[..]).is_ok());
        assert_eq!(
            Packet::new_checked(&bad[..40]),
            Err(WireError::Truncated),
            "header cut short"
        );
    }

    #[test]
    fn fragments() {
        let mut bytes = known_packet();
        let mut ip = Packet::new_checked(&mut bytes[..]).unwrap();
        ip.set_flags_and_offset(false, true, 0);
        assert!(ip.is_fragment() && ip.is_first_fragment());
        ip.set_flags_and_offset(false, true, 1480);
        assert!(ip.is_fragment() && !ip.is_first_fragment());
        assert_eq!(ip.fragment_offset(), 1480);
        ip.set_flags_and_offset(false, false, 2960);
        assert!(ip.is_fragment() && !ip.is_first_fragment() && !ip.more_fragments());
        ip.set_flags_and_offset(true, false, 0);
        assert!(!ip.is_fragment() && ip.dont_fragment());
    }

    #[test]
    fn ttl_decrement_keeps_checksum_valid() {
        let mut bytes = known_packet();
        let mut ip = Packet::new_checked(&mut bytes[..]).unwrap();
        for expected in (0..64u8).rev() {
            assert_eq!(ip.decrement_ttl(), Some(expected));
            assert!(ip.verify_checksum(), "ttl {expected}");
            let incremental = ip.checksum();
            ip.fill_checksum();
            assert_eq!(ip.checksum(), incremental);
        }
        assert_eq!(ip.decrement_ttl(), None);
        assert!(ip.verify_checksum());
    }

    #[test]
    fn address_rewrites_keep_checksum_valid() {
        let mut bytes = known_packet();
        let mut ip = Packet::new_checked(&mut bytes[..]).unwrap();
        let old = ip.replace_src_addr(Ipv4Addr::new(203, 0, 113, 9));
        assert_eq!(old, Ipv4Addr::new(192, 168, 0, 1));
        assert!(ip.verify_checksum());
        ip.replace_dst_addr(Ipv4Addr::new(255, 255, 255, 255));
        assert!(ip.verify_checksum());
        assert_eq!(ip.dst_addr(), Ipv4Addr::BROADCAST);
    }

    #[test]
    fn option_validation() {
        assert_eq!(validate_options(&[]), Ok(false));
        assert_eq!(validate_options(&[1, 1, 1, 0]), Ok(false));
        assert_eq!(validate_options(&[148, 4, 0, 0]), Ok(true));
        assert_eq!(validate_options(&[0, 99, 99, 99]), Ok(false)); // EOL stops
        assert_eq!(
            validate_options(&[7, 1, 0, 0]),
            Err(WireError::BadIpOptions)
        );
        assert_eq!(
            validate_options(&[7, 9, 0, 0]),
            Err(WireError::BadIpOptions)
        );
        assert_eq!(
            validate_options(&[1, 1, 1, 7]),
            Err(WireError::BadIpOptions)
        );
    }
}
