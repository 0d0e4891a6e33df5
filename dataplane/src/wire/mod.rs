//! Zero-copy views over packet bytes, and the per-packet parser the workers call.
//!
//! The style follows smoltcp's `wire` module: each header is a view
//! `Xxx<T: AsRef<[u8]>> { buffer: T }` over borrowed (or owned) bytes, with
//!
//! - `new_unchecked(buffer)`: wraps without looking, for bytes the caller has already validated;
//! - `new_checked(buffer) -> Result<Self, WireError>`: **one** length check that covers every fixed
//!   field the accessors read, plus validation of the header-length fields (IPv4 IHL, TCP data
//!   offset, UDP length, …) against the buffer;
//! - `#[inline]` accessors reading big-endian fields at offsets named in each module's `field`
//!   module, and setters (for `T: AsMut<[u8]>`) for what the dataplane rewrites: TTL/hop limit,
//!   checksums, MAC addresses, IP addresses and ports.
//!
//! # The panic-freedom contract
//!
//! - Nothing in this module allocates on the parsing path (only [`build`], which tests, benchmarks
//!   and fuzz seeds use, allocates).
//! - Every function that takes untrusted bytes — `new_checked`, [`parse::parse_frame`], the
//!   option iterators, the IPv6 extension-header walker — returns an error on malformed or truncated
//!   input and never panics, whatever the input.
//! - On a view built by `new_checked`, **no accessor or setter panics**: fixed fields are covered
//!   by the length check, and slices whose bounds come from the packet (payloads, options, quoted
//!   packets) are clamped to the buffer.
//! - A view built by `new_unchecked` over a buffer shorter than the header *may* panic on access
//!   (an index out of bounds, never undefined behaviour). Only use it on bytes already checked.
//!
//! The fuzz target `fuzz/fuzz_targets/wire_parse.rs` exercises this contract.
//!
//! # Modules
//!
//! | module | what |
//! |---|---|
//! | [`checksum`] | RFC 1071 Internet checksum, pseudo-headers, RFC 1624 incremental updates |
//! | [`ethernet`] | Ethernet II, 802.1Q / 802.1ad tags, [`MacAddrExt`] helpers for [`MacAddr`] |
//! | [`arp`] | Ethernet/IPv4 ARP, in-place request → reply |
//! | [`ipv4`], [`ipv6`] | IP headers; IPv6 extension-header walker |
//! | [`tcp`], [`udp`], [`icmp`], [`icmpv6`] | upper-layer headers; TCP options; ND messages |
//! | [`carp`], [`pfsync`] | outer IP checks and header views for CARP (112) and pfsync (240) |
//! | [`parse`] | [`parse_frame`]: Ethernet → … → L4 in one pass, into a `Copy` summary |
//! | [`build`] | frame builders for tests, benchmarks and fuzz seeds (allocates) |

pub mod arp;
pub mod build;
pub mod carp;
pub mod checksum;
pub mod ethernet;
pub mod icmp;
pub mod icmpv6;
pub mod ipv4;
pub mod ipv6;
pub mod parse;
pub mod pfsync;
pub mod tcp;
pub mod udp;

use core::fmt;

pub use arp::Packet as ArpPacket;
pub use carp::Header as CarpHeader;
pub use ethernet::{Frame as EthernetFrame, MacAddr, MacAddrExt};
pub use icmp::Packet as IcmpPacket;
pub use icmpv6::{NdiscPacket, Packet as Icmpv6Packet};
pub use ipv4::Packet as Ipv4Packet;
pub use ipv6::Packet as Ipv6Packet;
pub use parse::{parse_frame, ParseError, ParsedFrame};
pub use pfsync::Header as PfsyncHeader;
pub use tcp::{Packet as TcpPacket, TcpFlags, TcpOptions};
pub use udp::Packet as UdpPacket;

/// Why a view refused its buffer (or why an option or extension-header walk stopped).
///
/// [`parse::ParseError`] groups these into pf's drop-reason counters; see
/// [`parse::ParseError::from_wire`] for the mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WireError {
    /// The buffer ends before a fixed header field, or a datagram-length field (IPv4 total
    /// length, IPv6 payload length, UDP length, pfsync length) claims more bytes than it holds.
    Truncated,
    /// A header-length field is impossible: IPv4 IHL < 5, TCP data offset < 5 or past the end of
    /// the segment, an IPv6 extension header running past the payload.
    BadHeaderLength,
    /// A datagram-length field is inconsistent with its own header: IPv4 total length smaller
    /// than the header, UDP length below 8, pfsync length below its header.
    BadLength,
    /// The IP version nibble is not the one the view parses.
    BadVersion,
    /// Well-formed but not something this view handles (ARP for other than Ethernet/IPv4).
    Unsupported,
    /// A TLV-encoded option (TCP option, ND option) has an impossible length, or a known option
    /// has the wrong length for its kind.
    Malformed,
    /// Malformed IPv4 options: a length below 2 or running past the header.
    BadIpOptions,
    /// An IPv6 extension-header chain pf refuses: too many headers, hop-by-hop not first, more
    /// than one routing header, a type 0 routing header (RFC 5095), malformed hop-by-hop options.
    BadExtensionChain,
    /// A fragment that is not safely filterable: two IPv6 fragment headers, a first fragment that
    /// does not hold the whole header chain and upper-layer header (RFC 7112, RFC 1858), or an
    /// IPv4 TCP fragment at offset 8 (RFC 1858 §4).
    BadFragment,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            WireError::Truncated => "truncated",
            WireError::BadHeaderLength => "bad header length",
            WireError::BadLength => "bad datagram length",
            WireError::BadVersion => "bad IP version",
            WireError::Unsupported => "unsupported",
            WireError::Malformed => "malformed option",
            WireError::BadIpOptions => "malformed IPv4 options",
            WireError::BadExtensionChain => "bad IPv6 extension-header chain",
            WireError::BadFragment => "bad fragment",
        };
        f.write_str(text)
    }
}

impl std::error::Error for WireError {}

/// IP protocol numbers (IANA "Assigned Internet Protocol Numbers") that the dataplane names.
pub mod ip_protocol {
    /// IPv6 hop-by-hop options (an extension header).
    pub const HOPOPT: u8 = 0;
    /// ICMP for IPv4.
    pub const ICMP: u8 = 1;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// IPv6 routing header.
    pub const IPV6_ROUTE: u8 = 43;
    /// IPv6 fragment header.
    pub const IPV6_FRAG: u8 = 44;
    /// IPsec Encapsulating Security Payload: opaque, ends any header walk.
    pub const ESP: u8 = 50;
    /// IPsec Authentication Header (length in 4-byte units, minus 2).
    pub const AH: u8 = 51;
    /// ICMP for IPv6.
    pub const ICMPV6: u8 = 58;
    /// IPv6 "no next header".
    pub const IPV6_NONXT: u8 = 59;
    /// IPv6 destination options.
    pub const IPV6_OPTS: u8 = 60;
    /// CARP (shares the number with VRRP).
    pub const CARP: u8 = 112;
    /// pfsync.
    pub const PFSYNC: u8 = 240;
}

/// A range of bytes inside a header: the `field` modules name offsets with these.
pub(crate) type Field = core::ops::Range<usize>;

/// Reads a big-endian u16 from the first two bytes of `bytes`.
///
/// Callers pass a `Field`-sized slice of a length-checked buffer.
#[inline]
pub(crate) fn read_u16(bytes: &[u8]) -> u16 {
    u16::from_be_bytes([bytes[0], bytes[1]])
}

/// Reads a big-endian u32 from the first four bytes of `bytes`.
#[inline]
pub(crate) fn read_u32(bytes: &[u8]) -> u32 {
    u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

/// Writes `value` big-endian into the first two bytes of `bytes`.
#[inline]
pub(crate) fn write_u16(bytes: &mut [u8], value: u16) {
    bytes[..2].copy_from_slice(&value.to_be_bytes());
}

/// Writes `value` big-endian into the first four bytes of `bytes`.
#[inline]
pub(crate) fn write_u32(bytes: &mut [u8], value: u32) {
    bytes[..4].copy_from_slice(&value.to_be_bytes());
}

/// Copies `N` bytes starting at `at` into an array (the caller has checked the bounds).
#[inline]
pub(crate) fn read_array<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[at..at + N]);
    out
}

/// `bytes[start..end]` with both bounds clamped to the slice, so bounds read from a packet can
/// never panic; an inverted range yields an empty slice.
#[inline]
pub(crate) fn clamped(bytes: &[u8], start: usize, end: usize) -> &[u8] {
    let end = end.min(bytes.len());
    let start = start.min(end);
    &bytes[start..end]
}

/// Mutable twin of [`clamped`].
#[inline]
pub(crate) fn clamped_mut(bytes: &mut [u8], start: usize, end: usize) -> &mut [u8] {
    let end = end.min(bytes.len());
    let start = start.min(end);
    &mut bytes[start..end]
}

#[cfg(test)]
pub(crate) mod testutil {
    /// A fixed-seed xorshift64* generator: deterministic "random" inputs without a dependency.
    pub struct XorShift(u64);

    impl XorShift {
        pub fn new(seed: u64) -> Self {
            XorShift(seed.max(1))
        }

        pub fn next_u64(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            self.0 = x;
            x.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        pub fn next_u32(&mut self) -> u32 {
            (self.next_u64() >> 32) as u32
        }

        pub fn next_u16(&mut self) -> u16 {
            (self.next_u64() >> 48) as u16
        }

        pub fn next_u8(&mut self) -> u8 {
            (self.next_u64() >> 56) as u8
        }

        pub fn below(&mut self, bound: usize) -> usize {
            (self.next_u64() % bound as u64) as usize
        }

        pub fn fill(&mut self, bytes: &mut [u8]) {
            for byte in bytes {
                *byte = self.next_u8();
            }
        }
    }

    /// Parses a whitespace-separated hex string ("45 00 00 73") into bytes.
    pub fn hex(text: &str) -> Vec<u8> {
        text.split_whitespace()
            .map(|pair| u8::from_str_radix(pair, 16).expect("test vector is hex"))
            .collect()
    }
}
