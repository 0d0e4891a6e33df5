//! The per-packet parser: Ethernet (+VLAN) → ARP | IPv4 | IPv6 → TCP | UDP | ICMP | ICMPv6 |
//! other, in one pass, into a small `Copy` summary the worker keeps on its stack.
//!
//! [`parse_frame`] never allocates and never panics. It checks what pf's `pf_setup_pdesc` checks
//! before any rule or state is consulted, so a frame it accepts can be classified without further
//! bounds checks: every offset in [`ParsedFrame`] lies inside the frame.
//!
//! # Drop reasons
//!
//! Errors are grouped into pf's drop-reason counter names ([`ParseError::reason`]):
//!
//! | variant | reason | causes |
//! |---|---|---|
//! | `Short` | `short` | anything truncated: Ethernet header or VLAN tag, ARP, IP header, a total/payload length beyond the frame, an L4 header beyond the datagram, UDP length beyond the datagram, an ICMP error quote too short to hold ports |
//! | `BadOffset` | `bad-offset` | IPv4 IHL < 5, TCP data offset < 5 or past the segment end, an IPv6 extension header or IPv4 AH running past the datagram |
//! | `Normalize` | `normalize` | IP version ≠ the EtherType's, IPv4 total length < header, UDP length < 8, TCP SYN+RST or SYN+FIN, TCP/UDP destination port 0, ND messages with hop limit ≠ 255, IPv6 jumbograms, malformed NS/NA options |
//! | `IpOption` | `ip-option` | malformed IPv4 options; IPv6: more than [`super::ipv6::MAX_EXTENSION_HEADERS`] extension headers, hop-by-hop not first, two routing headers, routing type 0, malformed hop-by-hop options; IPv4: too many AHs |
//! | `Fragment` | `fragment` | two IPv6 fragment headers; a first fragment without the whole header chain and upper-layer header (RFC 7112, and the RFC 1858 tiny-fragment attack); an IPv4 TCP fragment at offset 8 (RFC 1858 §4) |
//! | `Unsupported` | `unsupported` | an EtherType other than IPv4, IPv6, ARP (and two VLAN tags); ARP for anything but Ethernet/IPv4. Not malformed, just not ours |
//!
//! Differences from OpenBSD, on purpose: pf counts bad IHL and data offsets as `short` (we say
//! `bad-offset`, which tells an operator more), counts port 0 as `short` (we say `normalize`),
//! accepts SYN+FIN and SYN+RST unless scrubbing (we refuse them always), and tolerates first
//! fragments too short for their upper-layer header (RFC 7112 and RFC 1858 say to drop them, and
//! we do not reassemble).
//!
//! Fragments are **not** errors: they parse with [`ParsedFrame::fragment`] set. A first fragment
//! carries its L4 summary; later fragments have `l4 == L4::None`, with `protocol` still naming the
//! upper layer (from the IPv4 header or the IPv6 fragment header).

use core::fmt;
use std::net::{IpAddr, Ipv4Addr};

use super::ethernet::{self, ethertype};
use super::ipv6::ExtensionChain;
use super::tcp::TcpFlags;
use super::{arp, icmp, icmpv6, ip_protocol, ipv4, ipv6, tcp, udp, WireError};

/// Why [`parse_frame`] refused a frame: one of pf's drop-reason counters (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ParseError {
    /// Truncated anything (`short`).
    Short,
    /// An impossible header-length field (`bad-offset`).
    BadOffset,
    /// A header pf's normalisation refuses (`normalize`).
    Normalize,
    /// Malformed IP options or an IPv6 extension chain pf refuses (`ip-option`).
    IpOption,
    /// A fragment that cannot be filtered safely (`fragment`).
    Fragment,
    /// Not IPv4, IPv6 or Ethernet/IPv4 ARP (`unsupported`): the EtherType seen.
    Unsupported {
        /// The EtherType after any VLAN tags.
        ethertype: u16,
    },
}

impl ParseError {
    /// How many distinct reasons there are: size per-worker counter arrays with it.
    pub const COUNT: usize = 6;

    /// pf's name for the drop reason.
    #[inline]
    pub const fn reason(&self) -> &'static str {
        match self {
            ParseError::Short => "short",
            ParseError::BadOffset => "bad-offset",
            ParseError::Normalize => "normalize",
            ParseError::IpOption => "ip-option",
            ParseError::Fragment => "fragment",
            ParseError::Unsupported { .. } => "unsupported",
        }
    }

    /// A dense index (0..[`ParseError::COUNT`]) for counter arrays.
    #[inline]
    pub const fn index(&self) -> usize {
        match self {
            ParseError::Short => 0,
            ParseError::BadOffset => 1,
            ParseError::Normalize => 2,
            ParseError::IpOption => 3,
            ParseError::Fragment => 4,
            ParseError::Unsupported { .. } => 5,
        }
    }

    /// The reason names in [`ParseError::index`] order.
    pub const REASONS: [&'static str; ParseError::COUNT] = [
        "short",
        "bad-offset",
        "normalize",
        "ip-option",
        "fragment",
        "unsupported",
    ];

    /// Maps a view's error to its drop reason.
    #[inline]
    pub const fn from_wire(error: WireError) -> ParseError {
        match error {
            WireError::Truncated => ParseError::Short,
            WireError::BadHeaderLength => ParseError::BadOffset,
            WireError::BadLength
            | WireError::BadVersion
            | WireError::Malformed
            | WireError::Unsupported => ParseError::Normalize,
            WireError::BadIpOptions | WireError::BadExtensionChain => ParseError::IpOption,
            WireError::BadFragment => ParseError::Fragment,
        }
    }
}

impl From<WireError> for ParseError {
    #[inline]
    fn from(error: WireError) -> Self {
        ParseError::from_wire(error)
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Unsupported { ethertype } => {
                write!(f, "unsupported (ethertype {ethertype:#06x})")
            }
            other => f.write_str(other.reason()),
        }
    }
}

impl std::error::Error for ParseError {}

/// The network layer of a parsed frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum L3 {
    /// Ethernet/IPv4 ARP; `src`/`dst` are the sender and target protocol addresses.
    Arp {
        /// [`arp::operation`] code.
        operation: u16,
    },
    /// IPv4.
    Ipv4,
    /// IPv6.
    Ipv6,
}

impl L3 {
    /// 4 or 6, or `None` for ARP.
    #[inline]
    pub const fn ip_version(&self) -> Option<u8> {
        match self {
            L3::Arp { .. } => None,
            L3::Ipv4 => Some(4),
            L3::Ipv6 => Some(6),
        }
    }
}

/// Where a packet sits in a fragmented datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Fragment {
    /// A whole datagram (including IPv6 atomic fragments, RFC 6946).
    #[default]
    Whole,
    /// The first fragment: carries the upper-layer header.
    First,
    /// A later fragment: upper-layer data only.
    Later,
}

/// The TCP fields the classifier and the state engine use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TcpSummary {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number.
    pub ack: u32,
    /// Flags.
    pub flags: TcpFlags,
    /// Window (unscaled).
    pub window: u16,
    /// Header length with options; the options are at `l4_offset + 20 .. payload_offset`.
    pub header_len: u8,
}

/// The UDP ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UdpSummary {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
}

/// The ICMP or ICMPv6 fields state matching uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IcmpSummary {
    /// Message type.
    pub msg_type: u8,
    /// Message code.
    pub code: u8,
    /// Identifier of a query/reply (echo and friends), which pf uses like a port.
    pub ident: Option<u16>,
    /// An error message quoting an invoking packet at `payload_offset`: see [`parse_quoted`].
    pub is_error: bool,
}

/// The transport layer of a parsed frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum L4 {
    /// Nothing parsed: ARP, a later fragment, ESP, or a protocol without a parser here.
    None,
    /// TCP.
    Tcp(TcpSummary),
    /// UDP.
    Udp(UdpSummary),
    /// ICMP (IPv4).
    Icmp(IcmpSummary),
    /// ICMPv6.
    Icmpv6(IcmpSummary),
}

/// Everything the worker needs from one frame. Offsets are from the start of the frame and lie
/// inside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ParsedFrame {
    /// VLAN ID of the outermost tag.
    pub vlan: Option<u16>,
    /// VLAN ID of the inner tag of a QinQ frame.
    pub inner_vlan: Option<u16>,
    /// EtherType after the tags.
    pub ethertype: u16,
    /// Network layer.
    pub l3: L3,
    /// Start of the ARP or IP header.
    pub l3_offset: u32,
    /// Length of the L3 packet by its own length fields (IPv4 total length, 40 + IPv6 payload
    /// length, 28 for ARP): the bytes pf counts. Ethernet padding beyond it is not included.
    pub l3_len: u32,
    /// Start of the upper-layer header (after IPv4 options, IPv6 extension headers and AH); for a
    /// later fragment, the start of its data.
    pub l4_offset: u32,
    /// Start of the L4 payload (after the TCP/UDP/ICMP header); `l4_offset` when `l4` is `None`.
    pub payload_offset: u32,
    /// Length of the L4 payload as its header says: TCP segment data, UDP length − 8, ICMP
    /// message − 8; for fragments, what this fragment holds.
    pub payload_len: u32,
    /// Source address (ARP: sender protocol address).
    pub src: IpAddr,
    /// Destination address (ARP: target protocol address).
    pub dst: IpAddr,
    /// Upper-layer protocol ([`ip_protocol`]), after extension headers; 0 for ARP.
    pub protocol: u8,
    /// TTL or hop limit; 0 for ARP.
    pub ttl: u8,
    /// Fragment status.
    pub fragment: Fragment,
    /// IPv4 options or IPv6 hop-by-hop / destination / routing headers are present: pf blocks
    /// these unless the matching rule says `allow-opts`.
    pub ip_options: bool,
    /// Transport layer.
    pub l4: L4,
}

impl ParsedFrame {
    /// 4 or 6, or `None` for ARP.
    #[inline]
    pub const fn ip_version(&self) -> Option<u8> {
        self.l3.ip_version()
    }

    /// Part of a fragmented datagram.
    #[inline]
    pub fn is_fragment(&self) -> bool {
        self.fragment != Fragment::Whole
    }

    /// Source and destination ports of TCP or UDP.
    #[inline]
    pub fn ports(&self) -> Option<(u16, u16)> {
        match self.l4 {
            L4::Tcp(t) => Some((t.src_port, t.dst_port)),
            L4::Udp(u) => Some((u.src_port, u.dst_port)),
            _ => None,
        }
    }

    /// The TCP summary, if this is TCP with its header.
    #[inline]
    pub fn tcp(&self) -> Option<&TcpSummary> {
        match &self.l4 {
            L4::Tcp(t) => Some(t),
            _ => None,
        }
    }

    /// The L3 packet within `frame` (the frame this was parsed from), without Ethernet padding.
    #[inline]
    pub fn l3_bytes<'a>(&self, frame: &'a [u8]) -> &'a [u8] {
        let start = self.l3_offset as usize;
        super::clamped(frame, start, start + self.l3_len as usize)
    }

    /// From the upper-layer header to the end of the L3 packet.
    #[inline]
    pub fn l4_bytes<'a>(&self, frame: &'a [u8]) -> &'a [u8] {
        let end = (self.l3_offset + self.l3_len) as usize;
        super::clamped(frame, self.l4_offset as usize, end)
    }

    /// The L4 payload.
    #[inline]
    pub fn payload<'a>(&self, frame: &'a [u8]) -> &'a [u8] {
        let start = self.payload_offset as usize;
        super::clamped(frame, start, start + self.payload_len as usize)
    }

    /// The TCP option bytes, if this is TCP.
    #[inline]
    pub fn tcp_options<'a>(&self, frame: &'a [u8]) -> Option<&'a [u8]> {
        let start = self.l4_offset as usize + tcp::MIN_HEADER_LEN;
        self.tcp()
            .map(|_| super::clamped(frame, start, self.payload_offset as usize))
    }
}

impl Default for ParsedFrame {
    /// An empty summary (an IPv4 frame of no length with unspecified addresses).
    fn default() -> ParsedFrame {
        ParsedFrame {
            vlan: None,
            inner_vlan: None,
            ethertype: 0,
            l3: L3::Ipv4,
            l3_offset: 0,
            l3_len: 0,
            l4_offset: 0,
            payload_offset: 0,
            payload_len: 0,
            src: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            dst: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            protocol: 0,
            ttl: 0,
            fragment: Fragment::Whole,
            ip_options: false,
            l4: L4::None,
        }
    }
}

/// Parses one Ethernet frame. See the module docs for what is checked and how errors map to pf's
/// drop reasons.
pub fn parse_frame(frame: &[u8]) -> Result<ParsedFrame, ParseError> {
    let mut parsed = ParsedFrame::default();
    parse_frame_into(frame, &mut parsed)?;
    Ok(parsed)
}

/// [`parse_frame`] into a caller's `ParsedFrame`, which a worker keeps per burst slot: the
/// summary is written where it will be read instead of being returned and copied (it is
/// about 100 bytes, and copying it was a tenth of a worker's time per packet). On error,
/// `parsed` holds whatever had been parsed and must not be used.
#[inline]
pub fn parse_frame_into(frame: &[u8], parsed: &mut ParsedFrame) -> Result<(), ParseError> {
    let l2 = ethernet::Frame::new_checked(frame)?.l2_header()?;
    // `l2_header` read every tag it reports, so the offset is inside the frame.
    let l3_bytes = frame.get(l2.l3_offset..).ok_or(ParseError::Short)?;
    *parsed = ParsedFrame {
        vlan: l2.vlan,
        inner_vlan: l2.inner_vlan,
        ethertype: l2.ethertype,
        l3_offset: l2.l3_offset as u32,
        ..ParsedFrame::default()
    };
    match l2.ethertype {
        ethertype::IPV4 => parse_ipv4(parsed, l3_bytes),
        ethertype::IPV6 => parse_ipv6(parsed, l3_bytes),
        ethertype::ARP => parse_arp(parsed, l3_bytes),
        other => Err(ParseError::Unsupported { ethertype: other }),
    }
}

fn parse_arp(parsed: &mut ParsedFrame, bytes: &[u8]) -> Result<(), ParseError> {
    let packet = arp::Packet::new_checked(bytes).map_err(|e| match e {
        WireError::Unsupported => ParseError::Unsupported {
            ethertype: ethertype::ARP,
        },
        other => other.into(),
    })?;
    parsed.l3 = L3::Arp {
        operation: packet.operation(),
    };
    parsed.l3_len = arp::PACKET_LEN as u32;
    parsed.l4_offset = parsed.l3_offset + arp::PACKET_LEN as u32;
    parsed.payload_offset = parsed.l4_offset;
    parsed.src = packet.sender_proto_addr().into();
    parsed.dst = packet.target_proto_addr().into();
    Ok(())
}

/// An AH in IPv4: the same header-length rule as in IPv6 (RFC 4302), and pf walks it too.
fn skip_ipv4_ah(
    bytes: &[u8],
    mut offset: usize,
    end: usize,
    first_fragment: bool,
) -> Result<(u8, usize), ParseError> {
    let mut protocol = ip_protocol::AH;
    let mut steps = 0;
    while protocol == ip_protocol::AH {
        if steps == ipv6::MAX_EXTENSION_HEADERS {
            return Err(ParseError::IpOption);
        }
        let too_short = if first_fragment {
            ParseError::Fragment
        } else {
            ParseError::BadOffset
        };
        let fixed = bytes.get(offset..offset + 2).ok_or(too_short)?;
        let len = (fixed[1] as usize + 2) * 4;
        if offset + len > end {
            return Err(too_short);
        }
        protocol = fixed[0];
        offset += len;
        steps += 1;
    }
    Ok((protocol, offset))
}

fn parse_ipv4(parsed: &mut ParsedFrame, bytes: &[u8]) -> Result<(), ParseError> {
    let packet = ipv4::Packet::new_checked(bytes)?;
    if packet.has_options() {
        ipv4::validate_options(packet.options())?;
    }
    let total = packet.total_len() as usize;
    let fragment = if !packet.is_fragment() {
        Fragment::Whole
    } else if packet.fragment_offset() == 0 {
        Fragment::First
    } else {
        Fragment::Later
    };

    let mut protocol = packet.protocol();
    let mut l4_start = packet.header_len();
    if protocol == ip_protocol::AH && fragment != Fragment::Later {
        (protocol, l4_start) = skip_ipv4_ah(bytes, l4_start, total, fragment == Fragment::First)?;
    }
    // RFC 1858 §4: a TCP fragment at offset 8 can overwrite the flags of the first fragment.
    if fragment == Fragment::Later && protocol == ip_protocol::TCP && packet.fragment_offset() == 8
    {
        return Err(ParseError::Fragment);
    }

    parsed.l3 = L3::Ipv4;
    parsed.l3_len = total as u32;
    parsed.src = packet.src_addr().into();
    parsed.dst = packet.dst_addr().into();
    parsed.protocol = protocol;
    parsed.ttl = packet.ttl();
    parsed.fragment = fragment;
    parsed.ip_options = packet.has_options();
    // `new_checked` put `total` inside the buffer and the AH walk kept `l4_start` ≤ `total`.
    let upper = super::clamped(bytes, l4_start, total);
    parse_l4(parsed, l4_start, upper, false)
}

fn parse_ipv6(parsed: &mut ParsedFrame, bytes: &[u8]) -> Result<(), ParseError> {
    let packet = ipv6::Packet::new_checked(bytes)?;
    let chain: ExtensionChain = packet.extension_headers()?;
    if chain.jumbo {
        return Err(ParseError::Normalize);
    }
    let end = ipv6::HEADER_LEN + packet.payload_len() as usize;
    parsed.l3 = L3::Ipv6;
    parsed.l3_len = end as u32;
    parsed.src = packet.src_addr().into();
    parsed.dst = packet.dst_addr().into();
    parsed.protocol = chain.next_header;
    parsed.ttl = packet.hop_limit();
    parsed.fragment = if chain.is_non_first_fragment() {
        Fragment::Later
    } else if chain.is_fragment() {
        Fragment::First
    } else {
        Fragment::Whole
    };
    parsed.ip_options = chain.has_options;
    let upper = super::clamped(bytes, chain.offset, end);
    parse_l4(parsed, chain.offset, upper, true)
}

/// Maps an L4 view error for a first fragment: whatever does not fit in it is a fragment problem
/// (RFC 1858 tiny fragments, RFC 7112), not a truncated packet.
fn l4_error(error: WireError, fragment: Fragment) -> ParseError {
    if fragment == Fragment::First && error == WireError::Truncated {
        ParseError::Fragment
    } else {
        error.into()
    }
}

/// Fills the L4 fields from `upper` (upper-layer header to the end of the datagram), which starts
/// `l4_start` bytes into the L3 packet.
fn parse_l4(
    parsed: &mut ParsedFrame,
    l4_start: usize,
    upper: &[u8],
    ipv6: bool,
) -> Result<(), ParseError> {
    let fragment = parsed.fragment;
    parsed.l4_offset = parsed.l3_offset + l4_start as u32;
    parsed.payload_offset = parsed.l4_offset;
    parsed.payload_len = upper.len() as u32;
    if fragment == Fragment::Later {
        return Ok(());
    }
    let (l4, header_len, payload_len) = match (parsed.protocol, ipv6) {
        (ip_protocol::TCP, _) => {
            // A first fragment must hold the whole TCP header, options included (RFC 1858).
            if fragment == Fragment::First
                && upper.len() >= tcp::MIN_HEADER_LEN
                && (upper[12] >> 4) as usize * 4 > upper.len()
            {
                return Err(ParseError::Fragment);
            }
            let segment = tcp::Packet::new_checked(upper).map_err(|e| l4_error(e, fragment))?;
            let flags = segment.flags();
            if segment.dst_port() == 0 || flags.is_invalid_combination() {
                return Err(ParseError::Normalize);
            }
            let summary = TcpSummary {
                src_port: segment.src_port(),
                dst_port: segment.dst_port(),
                seq: segment.seq_number(),
                ack: segment.ack_number(),
                flags,
                window: segment.window_len(),
                header_len: segment.header_len() as u8,
            };
            (
                L4::Tcp(summary),
                segment.header_len(),
                segment.payload_len(),
            )
        }
        (ip_protocol::UDP, _) => {
            let datagram = if fragment == Fragment::First {
                udp::Packet::new_checked_header(upper)
            } else {
                udp::Packet::new_checked(upper)
            }
            .map_err(|e| l4_error(e, fragment))?;
            if (datagram.len() as usize) < udp::HEADER_LEN || datagram.dst_port() == 0 {
                return Err(ParseError::Normalize);
            }
            let payload_len = if fragment == Fragment::First {
                upper.len() - udp::HEADER_LEN
            } else {
                datagram.len() as usize - udp::HEADER_LEN
            };
            let summary = UdpSummary {
                src_port: datagram.src_port(),
                dst_port: datagram.dst_port(),
            };
            (L4::Udp(summary), udp::HEADER_LEN, payload_len)
        }
        (ip_protocol::ICMP, false) => {
            let message = icmp::Packet::new_checked(upper).map_err(|e| l4_error(e, fragment))?;
            let summary = IcmpSummary {
                msg_type: message.msg_type(),
                code: message.code(),
                ident: message.query_ident(),
                is_error: message.is_error(),
            };
            (
                L4::Icmp(summary),
                icmp::HEADER_LEN,
                upper.len() - icmp::HEADER_LEN,
            )
        }
        (ip_protocol::ICMPV6, true) => {
            let message = icmpv6::Packet::new_checked(upper).map_err(|e| l4_error(e, fragment))?;
            let msg_type = message.msg_type();
            if icmpv6::is_neighbor_discovery(msg_type) {
                // RFC 4861: a hop limit below 255 means the message crossed a router.
                if parsed.ttl != 255 {
                    return Err(ParseError::Normalize);
                }
                if matches!(
                    msg_type,
                    icmpv6::message::NEIGHBOR_SOLICIT | icmpv6::message::NEIGHBOR_ADVERT
                ) {
                    let nd = icmpv6::NdiscPacket::new_checked(upper)
                        .map_err(|e| l4_error(e, fragment))?;
                    // RFC 4861 §7.1.1: any option with length zero invalidates the message.
                    if nd.options_iter().any(|o| o.is_err()) {
                        return Err(ParseError::Normalize);
                    }
                }
            }
            let summary = IcmpSummary {
                msg_type,
                code: message.code(),
                ident: message.query_ident(),
                is_error: message.is_error(),
            };
            (
                L4::Icmpv6(summary),
                icmpv6::HEADER_LEN,
                upper.len() - icmpv6::HEADER_LEN,
            )
        }
        _ => return Ok(()),
    };
    parsed.l4 = l4;
    parsed.payload_offset = parsed.l4_offset + header_len as u32;
    parsed.payload_len = payload_len as u32;
    Ok(())
}

/// The transport fields of a packet quoted in an ICMP error: enough to find the state it belongs
/// to (RFC 792 and RFC 4443 guarantee the first 8 bytes after the IP header).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuotedL4 {
    /// A later fragment, or a protocol without ports.
    None,
    /// TCP ports and sequence number.
    Tcp {
        /// Source port of the quoted (original) packet.
        src_port: u16,
        /// Destination port.
        dst_port: u16,
        /// Sequence number (pf checks it against the state's window).
        seq: u32,
    },
    /// UDP ports.
    Udp {
        /// Source port.
        src_port: u16,
        /// Destination port.
        dst_port: u16,
    },
    /// An ICMP or ICMPv6 message (a query, normally).
    Icmp {
        /// Type.
        msg_type: u8,
        /// Code.
        code: u8,
        /// Identifier of a query/reply.
        ident: Option<u16>,
    },
}

/// The packet quoted by an ICMP or ICMPv6 error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct QuotedPacket {
    /// Source address of the quoted packet (the original sender).
    pub src: IpAddr,
    /// Destination address of the quoted packet.
    pub dst: IpAddr,
    /// Its upper-layer protocol.
    pub protocol: u8,
    /// Its transport fields.
    pub l4: QuotedL4,
}

/// Parses the packet quoted by an ICMP error (`quote` = the error's payload, i.e.
/// `parsed.payload(frame)` for an [`IcmpSummary`] with `is_error`). The quote is usually
/// truncated, so only the headers themselves must be whole; its IP version must match the error's
/// (`ipv6`), as must an ICMP-in-ICMP quote's (`normalize` otherwise, as pf does).
pub fn parse_quoted(quote: &[u8], ipv6: bool) -> Result<QuotedPacket, ParseError> {
    // Slices are taken from `quote` itself (not through the views) so they outlive the views.
    let (src, dst, protocol, upper, later_fragment): (IpAddr, IpAddr, u8, &[u8], bool) = if ipv6 {
        let packet = ipv6::Packet::new_checked_header(quote)?;
        let end = ipv6::HEADER_LEN + packet.payload_len() as usize;
        let payload = super::clamped(quote, ipv6::HEADER_LEN, end);
        let chain = ipv6::walk_extension_headers(packet.next_header(), payload)?;
        (
            packet.src_addr().into(),
            packet.dst_addr().into(),
            chain.next_header,
            super::clamped(payload, chain.offset, usize::MAX),
            chain.is_non_first_fragment(),
        )
    } else {
        let packet = ipv4::Packet::new_checked_header(quote)?;
        (
            packet.src_addr().into(),
            packet.dst_addr().into(),
            packet.protocol(),
            super::clamped(quote, packet.header_len(), packet.total_len() as usize),
            packet.fragment_offset() != 0,
        )
    };
    let mut quoted = QuotedPacket {
        src,
        dst,
        protocol,
        l4: QuotedL4::None,
    };
    if later_fragment {
        return Ok(quoted);
    }
    let first8 = match protocol {
        ip_protocol::TCP | ip_protocol::UDP | ip_protocol::ICMP | ip_protocol::ICMPV6 => {
            upper.get(..8).ok_or(ParseError::Short)?
        }
        _ => return Ok(quoted),
    };
    let word = |at: usize| super::read_u16(&first8[at..at + 2]);
    quoted.l4 = match (protocol, ipv6) {
        (ip_protocol::TCP, _) => QuotedL4::Tcp {
            src_port: word(0),
            dst_port: word(2),
            seq: super::read_u32(&first8[4..8]),
        },
        (ip_protocol::UDP, _) => QuotedL4::Udp {
            src_port: word(0),
            dst_port: word(2),
        },
        (ip_protocol::ICMP, false) => QuotedL4::Icmp {
            msg_type: first8[0],
            code: first8[1],
            ident: icmp::has_identifier(first8[0]).then(|| word(4)),
        },
        (ip_protocol::ICMPV6, true) => QuotedL4::Icmp {
            msg_type: first8[0],
            code: first8[1],
            ident: matches!(
                first8[0],
                icmpv6::message::ECHO_REQUEST | icmpv6::message::ECHO_REPLY
            )
            .then(|| word(4)),
        },
        _ => return Err(ParseError::Normalize), // ICMP in IPv6, or ICMPv6 in IPv4
    };
    Ok(quoted)
}

#[cfg(test)]
mod tests;
