//! TCP segments (RFC 9293) and their options.
//!
//! [`Packet::new_checked`] validates 20 bytes present (`Truncated`) and a data offset ≥ 5 whose
//! header fits in the buffer (`BadHeaderLength`); the buffer is the whole segment (the IP payload).
//!
//! [`OptionsIter`] walks the option bytes and cannot panic on any input: EOL ends the list, NOP is
//! one byte, every other option needs a length byte ≥ 2 that stays inside the options; a known
//! option with the wrong length is `Malformed` too. After an error the iterator is exhausted.
//! [`TcpOptions`] summarises what the state engine needs from a SYN.

use core::fmt;

use super::checksum;
use super::{clamped, clamped_mut, read_u16, read_u32, write_u16, write_u32, Field, WireError};
use std::net::IpAddr;

mod field {
    use super::Field;
    pub const SRC_PORT: Field = 0..2;
    pub const DST_PORT: Field = 2..4;
    pub const SEQ_NUM: Field = 4..8;
    pub const ACK_NUM: Field = 8..12;
    /// Data offset in the high nibble; the low bits are reserved (and the old NS flag).
    pub const DATA_OFFSET: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WINDOW: Field = 14..16;
    pub const CHECKSUM: Field = 16..18;
    pub const URGENT: Field = 18..20;
    pub const OPTIONS: usize = 20;
}

/// Length of a TCP header without options.
pub const MIN_HEADER_LEN: usize = field::OPTIONS;
/// Length of a TCP header with the most options (data offset 15).
pub const MAX_HEADER_LEN: usize = 60;

/// The TCP flags byte (FIN 0x01 … CWR 0x80).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    /// No more data from sender.
    pub const FIN: TcpFlags = TcpFlags(0x01);
    /// Synchronise sequence numbers.
    pub const SYN: TcpFlags = TcpFlags(0x02);
    /// Reset the connection.
    pub const RST: TcpFlags = TcpFlags(0x04);
    /// Push.
    pub const PSH: TcpFlags = TcpFlags(0x08);
    /// Acknowledgment field significant.
    pub const ACK: TcpFlags = TcpFlags(0x10);
    /// Urgent pointer significant.
    pub const URG: TcpFlags = TcpFlags(0x20);
    /// ECN echo.
    pub const ECE: TcpFlags = TcpFlags(0x40);
    /// Congestion window reduced.
    pub const CWR: TcpFlags = TcpFlags(0x80);

    /// The raw byte.
    #[inline]
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// All of `other`'s flags are set.
    #[inline]
    pub const fn contains(self, other: TcpFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Any of `other`'s flags is set.
    #[inline]
    pub const fn intersects(self, other: TcpFlags) -> bool {
        self.0 & other.0 != 0
    }

    /// pf's `flags S/SA` test: the bits of `mask` that are set are exactly those of `set`.
    #[inline]
    pub const fn matches(self, set: TcpFlags, mask: TcpFlags) -> bool {
        self.0 & mask.0 == set.0
    }

    /// A combination no TCP stack sends: SYN with RST, or SYN with FIN. The parser refuses these
    /// ("normalize"); pf's scrub drops the first and strips FIN from the second, and letting
    /// either reach rule evaluation lets scans slip past `flags S/SA`.
    #[inline]
    pub const fn is_invalid_combination(self) -> bool {
        self.contains(TcpFlags(0x02 | 0x04)) || self.contains(TcpFlags(0x02 | 0x01))
    }
}

impl core::ops::BitOr for TcpFlags {
    type Output = TcpFlags;
    fn bitor(self, rhs: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 | rhs.0)
    }
}

impl fmt::Debug for TcpFlags {
    /// pf's notation: `FSRPAUEW` letters for the set flags.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const LETTERS: [char; 8] = ['F', 'S', 'R', 'P', 'A', 'U', 'E', 'W'];
        for (bit, letter) in LETTERS.iter().enumerate() {
            if self.0 & (1 << bit) != 0 {
                fmt::Write::write_char(f, *letter)?;
            }
        }
        if self.0 == 0 {
            f.write_str("-")?;
        }
        Ok(())
    }
}

/// A view over a TCP segment.
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

    /// Wraps `buffer` (the whole segment) after checking the fixed header and the data offset.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let data = buffer.as_ref();
        if data.len() < MIN_HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let header_len = ((data[field::DATA_OFFSET] >> 4) as usize) * 4;
        if header_len < MIN_HEADER_LEN || header_len > data.len() {
            return Err(WireError::BadHeaderLength);
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

    /// Sequence number.
    #[inline]
    pub fn seq_number(&self) -> u32 {
        read_u32(&self.buffer.as_ref()[field::SEQ_NUM])
    }

    /// Acknowledgment number.
    #[inline]
    pub fn ack_number(&self) -> u32 {
        read_u32(&self.buffer.as_ref()[field::ACK_NUM])
    }

    /// Header length in bytes (data offset × 4), options included.
    #[inline]
    pub fn header_len(&self) -> usize {
        ((self.buffer.as_ref()[field::DATA_OFFSET] >> 4) as usize) * 4
    }

    /// The flags byte.
    #[inline]
    pub fn flags(&self) -> TcpFlags {
        TcpFlags(self.buffer.as_ref()[field::FLAGS])
    }

    /// Window (unscaled).
    #[inline]
    pub fn window_len(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::WINDOW])
    }

    /// Checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::CHECKSUM])
    }

    /// Urgent pointer.
    #[inline]
    pub fn urgent_ptr(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::URGENT])
    }

    /// The option bytes.
    #[inline]
    pub fn options(&self) -> &[u8] {
        clamped(self.buffer.as_ref(), MIN_HEADER_LEN, self.header_len())
    }

    /// Iterates over the options.
    #[inline]
    pub fn options_iter(&self) -> OptionsIter<'_> {
        OptionsIter::new(self.options())
    }

    /// The segment data after the header.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        clamped(self.buffer.as_ref(), self.header_len(), usize::MAX)
    }

    /// Length of the segment data.
    #[inline]
    pub fn payload_len(&self) -> usize {
        self.buffer.as_ref().len().saturating_sub(self.header_len())
    }

    /// Sequence space the segment occupies: data, plus one each for SYN and FIN.
    #[inline]
    pub fn segment_len(&self) -> usize {
        let flags = self.flags();
        self.payload_len()
            + flags.contains(TcpFlags::SYN) as usize
            + flags.contains(TcpFlags::FIN) as usize
    }

    /// True when the checksum over the pseudo-header of `src`/`dst` and the whole segment is
    /// correct.
    #[inline]
    pub fn verify_checksum(&self, src: &IpAddr, dst: &IpAddr) -> bool {
        let data = self.buffer.as_ref();
        let pseudo = checksum::pseudo_header(src, dst, super::ip_protocol::TCP, data.len() as u32);
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

    /// Sets the sequence number (no checksum update).
    #[inline]
    pub fn set_seq_number(&mut self, value: u32) {
        write_u32(&mut self.buffer.as_mut()[field::SEQ_NUM], value);
    }

    /// Sets the acknowledgment number (no checksum update).
    #[inline]
    pub fn set_ack_number(&mut self, value: u32) {
        write_u32(&mut self.buffer.as_mut()[field::ACK_NUM], value);
    }

    /// Sets the header length in bytes (a multiple of 4, 20..=60); clears the reserved bits.
    #[inline]
    pub fn set_header_len(&mut self, len: usize) {
        self.buffer.as_mut()[field::DATA_OFFSET] = ((len / 4) as u8 & 0x0f) << 4;
    }

    /// Sets the flags byte.
    #[inline]
    pub fn set_flags(&mut self, flags: TcpFlags) {
        self.buffer.as_mut()[field::FLAGS] = flags.0;
    }

    /// Sets the window.
    #[inline]
    pub fn set_window_len(&mut self, value: u16) {
        write_u16(&mut self.buffer.as_mut()[field::WINDOW], value);
    }

    /// Sets the checksum field.
    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        write_u16(&mut self.buffer.as_mut()[field::CHECKSUM], value);
    }

    /// Sets the urgent pointer.
    #[inline]
    pub fn set_urgent_ptr(&mut self, value: u16) {
        write_u16(&mut self.buffer.as_mut()[field::URGENT], value);
    }

    /// Computes and stores the checksum over the pseudo-header and the whole segment.
    #[inline]
    pub fn fill_checksum(&mut self, src: &IpAddr, dst: &IpAddr) {
        self.set_checksum(0);
        let data = self.buffer.as_ref();
        let pseudo = checksum::pseudo_header(src, dst, super::ip_protocol::TCP, data.len() as u32);
        let value = checksum::finish(checksum::combine(&[pseudo, checksum::sum(data)]));
        self.set_checksum(value);
    }

    /// Rewrites the source port and patches the checksum incrementally; returns the old port.
    #[inline]
    pub fn replace_src_port(&mut self, port: u16) -> u16 {
        let old = self.src_port();
        let check = checksum::update_u16(self.checksum(), old, port);
        self.set_src_port(port);
        self.set_checksum(check);
        old
    }

    /// Rewrites the destination port and patches the checksum incrementally; returns the old port.
    #[inline]
    pub fn replace_dst_port(&mut self, port: u16) -> u16 {
        let old = self.dst_port();
        let check = checksum::update_u16(self.checksum(), old, port);
        self.set_dst_port(port);
        self.set_checksum(check);
        old
    }

    /// Patches the checksum for an address change in the pseudo-header (after NAT rewrote the IP
    /// header): `old`/`new` as bytes (4 or 16).
    #[inline]
    pub fn update_checksum_for_address(&mut self, old: &[u8], new: &[u8]) {
        let check = checksum::update_bytes(self.checksum(), old, new);
        self.set_checksum(check);
    }

    /// The option bytes, mutable.
    #[inline]
    pub fn options_mut(&mut self) -> &mut [u8] {
        let end = self.header_len();
        clamped_mut(self.buffer.as_mut(), MIN_HEADER_LEN, end)
    }

    /// The segment data, mutable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = self.header_len();
        clamped_mut(self.buffer.as_mut(), start, usize::MAX)
    }
}

/// Option kinds.
pub mod option_kind {
    /// End of option list.
    pub const EOL: u8 = 0;
    /// No operation.
    pub const NOP: u8 = 1;
    /// Maximum segment size (length 4).
    pub const MSS: u8 = 2;
    /// Window scale (length 3).
    pub const WINDOW_SCALE: u8 = 3;
    /// SACK permitted (length 2).
    pub const SACK_PERMITTED: u8 = 4;
    /// SACK blocks (length 2 + 8n, n = 1..=4).
    pub const SACK: u8 = 5;
    /// Timestamps (length 10).
    pub const TIMESTAMPS: u8 = 8;
}

/// One TCP option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpOption<'a> {
    /// End of option list (the iterator stops after it).
    EndOfList,
    /// Padding.
    NoOperation,
    /// Maximum segment size.
    MaxSegmentSize(u16),
    /// Window scale shift count (as sent; RFC 7323 caps its use at 14).
    WindowScale(u8),
    /// SACK permitted.
    SackPermitted,
    /// SACK blocks: 1 to 4 (left, right) pairs as raw bytes; see [`sack_blocks`].
    SackBlocks(&'a [u8]),
    /// Timestamps.
    Timestamps {
        /// TSval.
        value: u32,
        /// TSecr.
        echo: u32,
    },
    /// Any other option, skipped by its length.
    Unknown {
        /// Option kind.
        kind: u8,
        /// Option data (after kind and length).
        data: &'a [u8],
    },
}

/// The (left edge, right edge) pairs of a SACK option's data.
pub fn sack_blocks(data: &[u8]) -> impl Iterator<Item = (u32, u32)> + '_ {
    data.chunks_exact(8)
        .map(|block| (read_u32(&block[0..4]), read_u32(&block[4..8])))
}

/// Iterator over TCP options; yields `Err(Malformed)` once and stops on a malformed option.
#[derive(Debug, Clone)]
pub struct OptionsIter<'a> {
    rest: &'a [u8],
}

impl<'a> OptionsIter<'a> {
    /// Iterates over `options` (the bytes after the fixed header).
    #[inline]
    pub fn new(options: &'a [u8]) -> Self {
        OptionsIter { rest: options }
    }
}

impl<'a> Iterator for OptionsIter<'a> {
    type Item = Result<TcpOption<'a>, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        let (&kind, after_kind) = self.rest.split_first()?;
        match kind {
            option_kind::EOL => {
                self.rest = &[];
                return Some(Ok(TcpOption::EndOfList));
            }
            option_kind::NOP => {
                self.rest = after_kind;
                return Some(Ok(TcpOption::NoOperation));
            }
            _ => {}
        }
        let len = match after_kind.first() {
            Some(&len) if len >= 2 && len as usize <= self.rest.len() => len as usize,
            _ => {
                self.rest = &[];
                return Some(Err(WireError::Malformed));
            }
        };
        let data = &self.rest[2..len];
        self.rest = &self.rest[len..];
        let option = match (kind, data.len()) {
            (option_kind::MSS, 2) => TcpOption::MaxSegmentSize(read_u16(data)),
            (option_kind::WINDOW_SCALE, 1) => TcpOption::WindowScale(data[0]),
            (option_kind::SACK_PERMITTED, 0) => TcpOption::SackPermitted,
            (option_kind::SACK, n) if n > 0 && n <= 32 && n % 8 == 0 => TcpOption::SackBlocks(data),
            (option_kind::TIMESTAMPS, 8) => TcpOption::Timestamps {
                value: read_u32(&data[0..4]),
                echo: read_u32(&data[4..8]),
            },
            (
                option_kind::MSS
                | option_kind::WINDOW_SCALE
                | option_kind::SACK_PERMITTED
                | option_kind::SACK
                | option_kind::TIMESTAMPS,
                _,
            ) => {
                self.rest = &[];
                return Some(Err(WireError::Malformed));
            }
            (kind, _) => TcpOption::Unknown { kind, data },
        };
        Some(Ok(option))
    }
}

/// What the state engine wants from a segment's options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpOptions {
    /// Maximum segment size.
    pub mss: Option<u16>,
    /// Window scale shift count, as sent.
    pub wscale: Option<u8>,
    /// SACK permitted.
    pub sack_permitted: bool,
    /// Timestamps (TSval, TSecr).
    pub timestamp: Option<(u32, u32)>,
}

impl TcpOptions {
    /// Collects the options in `bytes`; the first malformed option is an error.
    pub fn parse(bytes: &[u8]) -> Result<TcpOptions, WireError> {
        let mut summary = TcpOptions::default();
        for option in OptionsIter::new(bytes) {
            match option? {
                TcpOption::MaxSegmentSize(mss) => summary.mss = Some(mss),
                TcpOption::WindowScale(shift) => summary.wscale = Some(shift),
                TcpOption::SackPermitted => summary.sack_permitted = true,
                TcpOption::Timestamps { value, echo } => summary.timestamp = Some((value, echo)),
                _ => {}
            }
        }
        Ok(summary)
    }

    /// Bytes [`TcpOptions::emit`] writes: a multiple of 4.
    pub fn encoded_len(&self) -> usize {
        let raw: usize = self.mss.map_or(0, |_| 4)
            + self.wscale.map_or(0, |_| 3)
            + if self.sack_permitted { 2 } else { 0 }
            + self.timestamp.map_or(0, |_| 10);
        raw.div_ceil(4) * 4
    }

    /// Writes the options in the order Linux sends them on a SYN — MSS, SACK-permitted,
    /// timestamps, window scale — NOP-aligned, EOL-padded to a multiple of 4. Returns the number
    /// of bytes written, or `None` if `out` is shorter than [`TcpOptions::encoded_len`].
    pub fn emit(&self, out: &mut [u8]) -> Option<usize> {
        let total = self.encoded_len();
        let out = out.get_mut(..total)?;
        let mut at = 0;
        let mut put = |bytes: &[u8]| {
            out[at..at + bytes.len()].copy_from_slice(bytes);
            at += bytes.len();
        };
        if let Some(mss) = self.mss {
            let m = mss.to_be_bytes();
            put(&[option_kind::MSS, 4, m[0], m[1]]);
        }
        if self.sack_permitted {
            put(&[option_kind::SACK_PERMITTED, 2]);
        }
        if let Some((value, echo)) = self.timestamp {
            put(&[option_kind::TIMESTAMPS, 10]);
            put(&value.to_be_bytes());
            put(&echo.to_be_bytes());
        }
        if let Some(shift) = self.wscale {
            put(&[option_kind::NOP, option_kind::WINDOW_SCALE, 3, shift]);
        }
        // With window scale the unpadded length (3 + 4a + 2b + 10c) is never a multiple of 4, so
        // rounding up always leaves room for the NOP that aligns it; EOL-pad whatever is left.
        let written = at;
        out[written..].fill(option_kind::EOL);
        Some(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn segment(options: &[u8], payload: &[u8]) -> Vec<u8> {
        let header_len = MIN_HEADER_LEN + options.len();
        let mut bytes = vec![0u8; header_len];
        let mut tcp = Packet::new_unchecked(&mut bytes[..]);
        tcp.set_src_port(40000);
        tcp.set_dst_port(443);
        tcp.set_seq_number(0x0102_0304);
        tcp.set_ack_number(0xa0b0_c0d0);
        tcp.set_header_len(header_len);
        tcp.set_flags(TcpFlags::SYN | TcpFlags::ACK);
        tcp.set_window_len(64240);
        tcp.set_urgent_ptr(7);
        tcp.options_mut().copy_from_slice(options);
        bytes.extend_from_slice(payload);
        bytes
    }

    #[test]
    fn fields_and_checksum() {
        let src = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        let dst = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
        let mut bytes = segment(&[1, 1, 1, 0], b"hello");
        let mut tcp = Packet::new_checked(&mut bytes[..]).unwrap();
        tcp.fill_checksum(&src, &dst);
        assert!(tcp.verify_checksum(&src, &dst));
        assert!(!tcp.verify_checksum(&dst, &IpAddr::V4(Ipv4Addr::new(10, 0, 0, 3))));
        assert_eq!(tcp.src_port(), 40000);
        assert_eq!(tcp.dst_port(), 443);
        assert_eq!(tcp.seq_number(), 0x0102_0304);
        assert_eq!(tcp.ack_number(), 0xa0b0_c0d0);
        assert_eq!(tcp.header_len(), 24);
        assert_eq!(tcp.flags(), TcpFlags(0x12));
        assert_eq!(format!("{:?}", tcp.flags()), "SA");
        assert_eq!(tcp.window_len(), 64240);
        assert_eq!(tcp.urgent_ptr(), 7);
        assert_eq!(tcp.payload(), b"hello");
        assert_eq!(tcp.segment_len(), 6);

        // NAT-style rewrites keep the checksum valid without a recomputation.
        tcp.replace_src_port(1024);
        assert!(tcp.verify_checksum(&src, &dst));
        let new_src = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7));
        tcp.update_checksum_for_address(&[10, 0, 0, 1], &[203, 0, 113, 7]);
        assert!(tcp.verify_checksum(&new_src, &dst));
    }

    #[test]
    fn header_checks() {
        let bytes = segment(&[1, 1, 1, 1], &[]);
        for len in 0..MIN_HEADER_LEN {
            assert_eq!(
                Packet::new_checked(&bytes[..len]),
                Err(WireError::Truncated)
            );
        }
        for len in MIN_HEADER_LEN..bytes.len() {
            assert_eq!(
                Packet::new_checked(&bytes[..len]),
                Err(WireError::BadHeaderLength)
            );
        }
        let mut low = bytes.clone();
        low[12] = 0x40; // data offset 4
        assert_eq!(
            Packet::new_checked(&low[..]),
            Err(WireError::BadHeaderLength)
        );
    }

    #[test]
    fn flag_helpers() {
        let syn = TcpFlags::SYN;
        assert!(syn.matches(TcpFlags::SYN, TcpFlags::SYN | TcpFlags::ACK));
        assert!(!(syn | TcpFlags::ACK).matches(TcpFlags::SYN, TcpFlags::SYN | TcpFlags::ACK));
        assert!((syn | TcpFlags::RST).is_invalid_combination());
        assert!((syn | TcpFlags::FIN).is_invalid_combination());
        assert!(!(syn | TcpFlags::ACK | TcpFlags::ECE | TcpFlags::CWR).is_invalid_combination());
        assert!(!(TcpFlags::FIN | TcpFlags::ACK).is_invalid_combination());
        assert_eq!(format!("{:?}", TcpFlags(0xff)), "FSRPAUEW");
    }

    #[test]
    fn options_roundtrip_linux_syn() {
        let wanted = TcpOptions {
            mss: Some(1460),
            wscale: Some(7),
            sack_permitted: true,
            timestamp: Some((0xdead_beef, 0)),
        };
        let mut buf = [0u8; 40];
        let len = wanted.emit(&mut buf).unwrap();
        assert_eq!(len, 20);
        assert_eq!(
            &buf[..20],
            &[2, 4, 5, 180, 4, 2, 8, 10, 0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 0, 1, 3, 3, 7]
        );
        assert_eq!(TcpOptions::parse(&buf[..len]), Ok(wanted));
        assert_eq!(wanted.emit(&mut buf[..19]), None);

        for summary in [
            TcpOptions::default(),
            TcpOptions {
                mss: Some(536),
                ..Default::default()
            },
            TcpOptions {
                wscale: Some(14),
                ..Default::default()
            },
            TcpOptions {
                sack_permitted: true,
                wscale: Some(0),
                ..Default::default()
            },
        ] {
            let len = summary.emit(&mut buf).unwrap();
            assert_eq!(len % 4, 0);
            assert_eq!(TcpOptions::parse(&buf[..len]), Ok(summary));
        }
    }

    #[test]
    fn options_iterator_items() {
        let bytes = [
            1, // NOP
            5, 18, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4, // SACK, two blocks
            30, 4, 0xab, 0xcd, // unknown kind 30 (MPTCP), skipped by length
            0, 9, 9, // EOL, then garbage that must not be read
        ];
        let items: Vec<_> = OptionsIter::new(&bytes).collect();
        assert_eq!(items.len(), 4);
        assert_eq!(items[0], Ok(TcpOption::NoOperation));
        match items[1] {
            Ok(TcpOption::SackBlocks(data)) => {
                let blocks: Vec<_> = sack_blocks(data).collect();
                assert_eq!(blocks, vec![(1, 2), (3, 4)]);
            }
            ref other => panic!("expected SACK, got {other:?}"),
        }
        assert_eq!(
            items[2],
            Ok(TcpOption::Unknown {
                kind: 30,
                data: &[0xab, 0xcd]
            })
        );
        assert_eq!(items[3], Ok(TcpOption::EndOfList));
    }

    #[test]
    fn malformed_options() {
        let cases: &[&[u8]] = &[
            &[2],                      // kind without length
            &[2, 0],                   // zero length
            &[2, 1],                   // length 1
            &[2, 4, 5],                // runs past the end
            &[2, 3, 5],                // MSS with the wrong length
            &[3, 4, 7, 0],             // window scale with the wrong length
            &[4, 3, 0],                // SACK-permitted with data
            &[5, 2],                   // SACK with no blocks
            &[5, 6, 0, 0, 0, 0],       // SACK with a partial block
            &[8, 8, 0, 0, 0, 0, 0, 0], // short timestamps
            &[30, 40, 0, 0],           // unknown option running past the end
            &[1, 1, 30, 0],            // zero-length unknown after padding
        ];
        for &case in cases {
            let mut iter = OptionsIter::new(case);
            let results: Vec<_> = iter.by_ref().collect();
            assert_eq!(
                results.last(),
                Some(&Err(WireError::Malformed)),
                "case {case:?}"
            );
            assert!(iter.next().is_none(), "fused after an error");
            assert_eq!(TcpOptions::parse(case), Err(WireError::Malformed));
        }
    }

    #[test]
    fn option_parsing_never_panics() {
        let mut rng = crate::wire::testutil::XorShift::new(0x7c9);
        let mut buf = [0u8; 40];
        for _ in 0..50_000 {
            rng.fill(&mut buf);
            // small kinds and lengths make the interesting paths likely
            for byte in buf.iter_mut() {
                if *byte & 0x80 != 0 {
                    *byte &= 0x0f;
                }
            }
            let len = rng.below(41);
            let mut consumed = 0;
            for item in OptionsIter::new(&buf[..len]) {
                consumed += 1;
                if item.is_err() {
                    break;
                }
            }
            assert!(consumed <= len);
            let _ = TcpOptions::parse(&buf[..len]);
        }
    }
}
