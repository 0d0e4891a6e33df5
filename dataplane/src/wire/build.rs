//! Frame builders for tests, benchmarks and fuzz seeds.
//!
//! These allocate (`Vec<u8>`) and are **never** used on the worker's per-packet path. Every
//! builder fills lengths and checksums correctly, so its output parses; tests then break one
//! field at a time. Structs have `Default`s (documentation addresses, locally administered MACs)
//! so a test names only what it cares about:
//!
//! ```
//! use rampart_dataplane::wire::build::TcpFrame;
//! use rampart_dataplane::wire::TcpFlags;
//! let frame = TcpFrame { dport: 22, flags: TcpFlags::SYN, ..Default::default() }.to_bytes();
//! assert!(rampart_dataplane::wire::parse_frame(&frame).is_ok());
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::ethernet::{ethertype, MacAddr, MacAddrExt};
use super::tcp::{TcpFlags, TcpOptions};
use super::{arp, carp, checksum, icmp, icmpv6, ip_protocol, ipv4, ipv6, tcp, udp};

/// Default source MAC: locally administered.
pub const DEFAULT_SRC_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);
/// Default destination MAC.
pub const DEFAULT_DST_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x02]);
/// Default IPv4 source (TEST-NET-2).
pub const DEFAULT_SRC_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
/// Default IPv4 destination (TEST-NET-3).
pub const DEFAULT_DST_V4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 20);
/// Minimum Ethernet frame length without the FCS: shorter frames are padded on the wire.
pub const MIN_FRAME_LEN: usize = 60;

/// The Ethernet part of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    /// Source MAC.
    pub src_mac: MacAddr,
    /// Destination MAC.
    pub dst_mac: MacAddr,
    /// 802.1Q VLAN ID (the inner tag when `outer_vlan` is set).
    pub vlan: Option<u16>,
    /// 802.1ad service VLAN ID (QinQ outer tag).
    pub outer_vlan: Option<u16>,
}

impl Default for Link {
    fn default() -> Self {
        Link {
            src_mac: DEFAULT_SRC_MAC,
            dst_mac: DEFAULT_DST_MAC,
            vlan: None,
            outer_vlan: None,
        }
    }
}

impl Link {
    /// The Ethernet header and tags, then `payload`.
    pub fn frame(&self, ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(22 + payload.len());
        out.extend_from_slice(&self.dst_mac.0);
        out.extend_from_slice(&self.src_mac.0);
        if let Some(id) = self.outer_vlan {
            out.extend_from_slice(&ethertype::QINQ.to_be_bytes());
            out.extend_from_slice(&(id & 0x0fff).to_be_bytes());
        }
        if let Some(id) = self.vlan {
            out.extend_from_slice(&ethertype::VLAN.to_be_bytes());
            out.extend_from_slice(&(id & 0x0fff).to_be_bytes());
        }
        out.extend_from_slice(&ethertype.to_be_bytes());
        out.extend_from_slice(payload);
        out
    }
}

/// Pads `frame` with zeros to the 60-byte Ethernet minimum, as a NIC does.
pub fn pad_to_minimum(frame: &mut Vec<u8>) {
    if frame.len() < MIN_FRAME_LEN {
        frame.resize(MIN_FRAME_LEN, 0);
    }
}

/// An IPv6 extension header: its type and the bytes after the next-header and length bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtHeader {
    /// Header type: 0, 43, 44, 51 or 60.
    pub kind: u8,
    /// Body after the first two bytes; padded to the header's unit when built.
    pub body: Vec<u8>,
}

impl ExtHeader {
    /// A hop-by-hop header holding one PadN option (8 bytes).
    pub fn hop_by_hop() -> Self {
        ExtHeader {
            kind: ip_protocol::HOPOPT,
            body: vec![1, 4, 0, 0, 0, 0],
        }
    }

    /// A destination-options header holding one PadN option (8 bytes).
    pub fn destination_options() -> Self {
        ExtHeader {
            kind: ip_protocol::IPV6_OPTS,
            body: vec![1, 4, 0, 0, 0, 0],
        }
    }

    /// A routing header of `routing_type` with no segments left (8 bytes).
    pub fn routing(routing_type: u8) -> Self {
        ExtHeader {
            kind: ip_protocol::IPV6_ROUTE,
            body: vec![routing_type, 0, 0, 0, 0, 0],
        }
    }

    /// A fragment header: `offset` in bytes (a multiple of 8), M flag, identification.
    pub fn fragment(offset: u16, more: bool, ident: u32) -> Self {
        let word = (offset & 0xfff8) | more as u16;
        // The reserved byte after the next-header byte is the "length" byte `encode` writes.
        let mut body = word.to_be_bytes().to_vec();
        body.extend_from_slice(&ident.to_be_bytes());
        ExtHeader {
            kind: ip_protocol::IPV6_FRAG,
            body,
        }
    }

    /// An authentication header with `spi`, sequence 1 and a 12-byte ICV (24 bytes).
    pub fn authentication(spi: u32) -> Self {
        let mut body = vec![0, 0];
        body.extend_from_slice(&spi.to_be_bytes());
        body.extend_from_slice(&1u32.to_be_bytes());
        body.extend_from_slice(&[0xa5; 12]);
        ExtHeader {
            kind: ip_protocol::AH,
            body,
        }
    }

    /// The encoded header pointing at `next`.
    fn encode(&self, next: u8) -> Vec<u8> {
        let mut out = vec![next, 0];
        out.extend_from_slice(&self.body);
        // Every IPv6 extension header is a multiple of 8 bytes, AH included (RFC 4302 §2.2).
        out.resize(out.len().div_ceil(8).max(1) * 8, 0);
        out[1] = match self.kind {
            ip_protocol::IPV6_FRAG => 0,
            ip_protocol::AH => (out.len() / 4 - 2) as u8,
            _ => (out.len() / 8 - 1) as u8,
        };
        out
    }
}

/// An IP packet in a frame, with any protocol number and payload: the base of the other builders
/// and the way to build fragments, options and extension chains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpFrame {
    /// Ethernet part.
    pub link: Link,
    /// Source address; its family picks IPv4 or IPv6.
    pub src: IpAddr,
    /// Destination address (same family as `src`).
    pub dst: IpAddr,
    /// TTL / hop limit.
    pub ttl: u8,
    /// IPv4 TOS / IPv6 traffic class.
    pub tos: u8,
    /// IPv4 identification.
    pub ident: u16,
    /// IPv4 DF.
    pub dont_fragment: bool,
    /// IPv4 fragmentation: (offset in bytes, MF).
    pub ipv4_fragment: Option<(u16, bool)>,
    /// IPv4 option bytes (EOL-padded to a multiple of 4).
    pub ipv4_options: Vec<u8>,
    /// IPv6 extension headers, in order.
    pub ipv6_ext: Vec<ExtHeader>,
    /// Upper-layer protocol (after the extension headers).
    pub protocol: u8,
    /// Upper-layer bytes.
    pub payload: Vec<u8>,
}

impl Default for IpFrame {
    fn default() -> Self {
        IpFrame {
            link: Link::default(),
            src: DEFAULT_SRC_V4.into(),
            dst: DEFAULT_DST_V4.into(),
            ttl: 64,
            tos: 0,
            ident: 0x1234,
            dont_fragment: true,
            ipv4_fragment: None,
            ipv4_options: Vec::new(),
            ipv6_ext: Vec::new(),
            protocol: ip_protocol::UDP,
            payload: Vec::new(),
        }
    }
}

impl IpFrame {
    /// The IP packet alone (no Ethernet header).
    pub fn ip_packet(&self) -> Vec<u8> {
        match (self.src, self.dst) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => self.ipv4_packet(src, dst),
            (IpAddr::V6(src), IpAddr::V6(dst)) => self.ipv6_packet(&src, &dst),
            // Mixed families are a test bug; build IPv6 with a mapped address rather than panic.
            (src, dst) => self.ipv6_packet(&to_v6(src), &to_v6(dst)),
        }
    }

    /// The whole frame.
    pub fn to_bytes(&self) -> Vec<u8> {
        let ethertype = if self.src.is_ipv4() && self.dst.is_ipv4() {
            ethertype::IPV4
        } else {
            ethertype::IPV6
        };
        self.link.frame(ethertype, &self.ip_packet())
    }

    fn ipv4_packet(&self, src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
        let mut options = self.ipv4_options.clone();
        options.truncate(ipv4::MAX_HEADER_LEN - ipv4::MIN_HEADER_LEN);
        options.resize(options.len().div_ceil(4) * 4, ipv4::option::EOL);
        let header_len = ipv4::MIN_HEADER_LEN + options.len();
        let mut out = vec![0u8; header_len];
        out.extend_from_slice(&self.payload);
        let mut ip = ipv4::Packet::new_unchecked(&mut out[..]);
        ip.set_header_len(header_len);
        ip.set_tos(self.tos);
        ip.set_total_len((header_len + self.payload.len()) as u16);
        ip.set_ident(self.ident);
        let (offset, more) = self.ipv4_fragment.unwrap_or((0, false));
        ip.set_flags_and_offset(self.dont_fragment, more, offset);
        ip.set_ttl(self.ttl);
        ip.set_protocol(self.protocol);
        ip.set_src_addr(src);
        ip.set_dst_addr(dst);
        ip.options_mut().copy_from_slice(&options);
        ip.fill_checksum();
        out
    }

    fn ipv6_packet(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> Vec<u8> {
        let mut chain = Vec::new();
        for (i, ext) in self.ipv6_ext.iter().enumerate() {
            let next = self
                .ipv6_ext
                .get(i + 1)
                .map_or(self.protocol, |following| following.kind);
            chain.extend_from_slice(&ext.encode(next));
        }
        let first = self.ipv6_ext.first().map_or(self.protocol, |e| e.kind);
        let mut out = vec![0u8; ipv6::HEADER_LEN];
        out.extend_from_slice(&chain);
        out.extend_from_slice(&self.payload);
        let mut ip = ipv6::Packet::new_unchecked(&mut out[..]);
        ip.set_version_tc_flow(self.tos, 0);
        ip.set_payload_len((chain.len() + self.payload.len()) as u16);
        ip.set_next_header(first);
        ip.set_hop_limit(self.ttl);
        ip.set_src_addr(src);
        ip.set_dst_addr(dst);
        out
    }
}

fn to_v6(addr: IpAddr) -> Ipv6Addr {
    match addr {
        IpAddr::V4(a) => a.to_ipv6_mapped(),
        IpAddr::V6(a) => a,
    }
}

/// A TCP segment in a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpFrame {
    /// Source MAC.
    pub src_mac: MacAddr,
    /// Destination MAC.
    pub dst_mac: MacAddr,
    /// 802.1Q VLAN ID.
    pub vlan: Option<u16>,
    /// Source address (IPv4 or IPv6).
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// TTL / hop limit.
    pub ttl: u8,
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number.
    pub ack: u32,
    /// Flags.
    pub flags: TcpFlags,
    /// Window.
    pub window: u16,
    /// Options from the summary (MSS, SACK-permitted, timestamps, window scale).
    pub options: TcpOptions,
    /// Raw option bytes appended after `options` (SACK blocks, malformed options…), then padded.
    pub raw_options: Vec<u8>,
    /// Segment data.
    pub payload: Vec<u8>,
}

impl Default for TcpFrame {
    fn default() -> Self {
        TcpFrame {
            src_mac: DEFAULT_SRC_MAC,
            dst_mac: DEFAULT_DST_MAC,
            vlan: None,
            src: DEFAULT_SRC_V4.into(),
            dst: DEFAULT_DST_V4.into(),
            ttl: 64,
            sport: 49152,
            dport: 80,
            seq: 1000,
            ack: 0,
            flags: TcpFlags::SYN,
            window: 65535,
            options: TcpOptions::default(),
            raw_options: Vec::new(),
            payload: Vec::new(),
        }
    }
}

impl TcpFrame {
    /// The checksummed segment (TCP header, options, data).
    pub fn segment(&self) -> Vec<u8> {
        let mut options = vec![0u8; self.options.encoded_len()];
        let written = self.options.emit(&mut options).unwrap_or(0);
        options.truncate(written);
        options.extend_from_slice(&self.raw_options);
        // Options are at most 40 bytes; longer raw options are cut, as no header can hold them.
        options.resize(options.len().div_ceil(4).min(10) * 4, tcp::option_kind::EOL);
        let header_len = tcp::MIN_HEADER_LEN + options.len();
        let mut out = vec![0u8; header_len];
        out.extend_from_slice(&self.payload);
        let mut segment = tcp::Packet::new_unchecked(&mut out[..]);
        segment.set_src_port(self.sport);
        segment.set_dst_port(self.dport);
        segment.set_seq_number(self.seq);
        segment.set_ack_number(self.ack);
        segment.set_header_len(header_len);
        segment.set_flags(self.flags);
        segment.set_window_len(self.window);
        segment.options_mut().copy_from_slice(&options);
        segment.fill_checksum(&self.src, &self.dst);
        out
    }

    /// The IP packet carrying the segment, for further tweaking.
    pub fn ip_frame(&self) -> IpFrame {
        IpFrame {
            link: Link {
                src_mac: self.src_mac,
                dst_mac: self.dst_mac,
                vlan: self.vlan,
                outer_vlan: None,
            },
            src: self.src,
            dst: self.dst,
            ttl: self.ttl,
            protocol: ip_protocol::TCP,
            payload: self.segment(),
            ..Default::default()
        }
    }

    /// The whole frame.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.ip_frame().to_bytes()
    }
}

/// A UDP datagram in a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpFrame {
    /// Source MAC.
    pub src_mac: MacAddr,
    /// Destination MAC.
    pub dst_mac: MacAddr,
    /// 802.1Q VLAN ID.
    pub vlan: Option<u16>,
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// TTL / hop limit.
    pub ttl: u8,
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// Compute the checksum (over IPv6 it is always computed).
    pub checksum: bool,
    /// Payload.
    pub payload: Vec<u8>,
}

impl Default for UdpFrame {
    fn default() -> Self {
        UdpFrame {
            src_mac: DEFAULT_SRC_MAC,
            dst_mac: DEFAULT_DST_MAC,
            vlan: None,
            src: DEFAULT_SRC_V4.into(),
            dst: DEFAULT_DST_V4.into(),
            ttl: 64,
            sport: 40000,
            dport: 53,
            checksum: true,
            payload: Vec::new(),
        }
    }
}

impl UdpFrame {
    /// The datagram (header and payload).
    pub fn datagram(&self) -> Vec<u8> {
        let mut out = vec![0u8; udp::HEADER_LEN];
        out.extend_from_slice(&self.payload);
        let len = out.len() as u16;
        let mut datagram = udp::Packet::new_unchecked(&mut out[..]);
        datagram.set_src_port(self.sport);
        datagram.set_dst_port(self.dport);
        datagram.set_len(len);
        if self.checksum || self.src.is_ipv6() {
            datagram.fill_checksum(&self.src, &self.dst);
        }
        out
    }

    /// The IP packet carrying the datagram.
    pub fn ip_frame(&self) -> IpFrame {
        IpFrame {
            link: Link {
                src_mac: self.src_mac,
                dst_mac: self.dst_mac,
                vlan: self.vlan,
                outer_vlan: None,
            },
            src: self.src,
            dst: self.dst,
            ttl: self.ttl,
            protocol: ip_protocol::UDP,
            payload: self.datagram(),
            ..Default::default()
        }
    }

    /// The whole frame.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.ip_frame().to_bytes()
    }
}

/// An ICMP echo (IPv4 addresses) or ICMPv6 echo (IPv6 addresses) in a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EchoFrame {
    /// Source MAC.
    pub src_mac: MacAddr,
    /// Destination MAC.
    pub dst_mac: MacAddr,
    /// 802.1Q VLAN ID.
    pub vlan: Option<u16>,
    /// Source address; its family picks ICMP or ICMPv6.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// TTL / hop limit.
    pub ttl: u8,
    /// A reply rather than a request.
    pub reply: bool,
    /// Identifier.
    pub ident: u16,
    /// Sequence number.
    pub seq_no: u16,
    /// Payload.
    pub payload: Vec<u8>,
}

impl Default for EchoFrame {
    fn default() -> Self {
        EchoFrame {
            src_mac: DEFAULT_SRC_MAC,
            dst_mac: DEFAULT_DST_MAC,
            vlan: None,
            src: DEFAULT_SRC_V4.into(),
            dst: DEFAULT_DST_V4.into(),
            ttl: 64,
            reply: false,
            ident: 0x4242,
            seq_no: 1,
            payload: b"rampart echo".to_vec(),
        }
    }
}

impl EchoFrame {
    /// The ICMP or ICMPv6 message.
    pub fn message(&self) -> Vec<u8> {
        let mut out = vec![0u8; icmp::HEADER_LEN];
        out.extend_from_slice(&self.payload);
        match (self.src, self.dst) {
            (IpAddr::V6(src), IpAddr::V6(dst)) => {
                let mut m = icmpv6::Packet::new_unchecked(&mut out[..]);
                m.set_msg_type(if self.reply {
                    icmpv6::message::ECHO_REPLY
                } else {
                    icmpv6::message::ECHO_REQUEST
                });
                m.set_echo_ident(self.ident);
                m.set_echo_seq_no(self.seq_no);
                m.fill_checksum(&src, &dst);
            }
            _ => {
                let mut m = icmp::Packet::new_unchecked(&mut out[..]);
                m.set_msg_type(if self.reply {
                    icmp::message::ECHO_REPLY
                } else {
                    icmp::message::ECHO_REQUEST
                });
                m.set_echo_ident(self.ident);
                m.set_echo_seq_no(self.seq_no);
                m.fill_checksum();
            }
        }
        out
    }

    /// The IP packet carrying the message.
    pub fn ip_frame(&self) -> IpFrame {
        IpFrame {
            link: Link {
                src_mac: self.src_mac,
                dst_mac: self.dst_mac,
                vlan: self.vlan,
                outer_vlan: None,
            },
            src: self.src,
            dst: self.dst,
            ttl: self.ttl,
            protocol: if self.src.is_ipv6() {
                ip_protocol::ICMPV6
            } else {
                ip_protocol::ICMP
            },
            payload: self.message(),
            ..Default::default()
        }
    }

    /// The whole frame.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.ip_frame().to_bytes()
    }
}

/// An ICMP (IPv4) error quoting `quoted` (an IP packet, cut to its header + 8 bytes).
pub fn icmp_error(
    link: Link,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    msg_type: u8,
    code: u8,
    quoted: &[u8],
) -> Vec<u8> {
    let header_len = quoted
        .first()
        .map_or(0, |b| ((b & 0x0f) as usize) * 4)
        .min(quoted.len());
    let keep = (header_len + 8).min(quoted.len());
    let mut message = vec![0u8; icmp::HEADER_LEN];
    message.extend_from_slice(&quoted[..keep]);
    let mut m = icmp::Packet::new_unchecked(&mut message[..]);
    m.set_msg_type(msg_type);
    m.set_code(code);
    m.fill_checksum();
    IpFrame {
        link,
        src: src.into(),
        dst: dst.into(),
        protocol: ip_protocol::ICMP,
        payload: message,
        ..Default::default()
    }
    .to_bytes()
}

/// A neighbour solicitation or advertisement in a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeighborFrame {
    /// Ethernet part.
    pub link: Link,
    /// Source address.
    pub src: Ipv6Addr,
    /// Destination address.
    pub dst: Ipv6Addr,
    /// Hop limit (255, or ND receivers drop it).
    pub hop_limit: u8,
    /// An advertisement rather than a solicitation.
    pub advertisement: bool,
    /// Target address.
    pub target: Ipv6Addr,
    /// NA R flag.
    pub router: bool,
    /// NA S flag.
    pub solicited: bool,
    /// NA O flag.
    pub override_: bool,
    /// Link-layer address option: source (NS) or target (NA).
    pub link_addr: Option<MacAddr>,
}

impl Default for NeighborFrame {
    fn default() -> Self {
        NeighborFrame::solicitation(
            DEFAULT_SRC_MAC,
            Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1),
            Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1),
        )
    }
}

impl NeighborFrame {
    /// A multicast solicitation for `target` from `src`, to the solicited-node group.
    pub fn solicitation(src_mac: MacAddr, src: Ipv6Addr, target: Ipv6Addr) -> Self {
        let t = target.octets();
        let group = Ipv6Addr::new(
            0xff02,
            0,
            0,
            0,
            0,
            1,
            0xff00 | t[13] as u16,
            u16::from_be_bytes([t[14], t[15]]),
        );
        NeighborFrame {
            link: Link {
                src_mac,
                dst_mac: MacAddr::ipv6_multicast(&group),
                ..Link::default()
            },
            src,
            dst: group,
            hop_limit: 255,
            advertisement: false,
            target,
            router: false,
            solicited: false,
            override_: false,
            link_addr: Some(src_mac),
        }
    }

    /// An unsolicited advertisement of `target` at `mac` to all nodes (as on a CARP takeover).
    pub fn unsolicited_advertisement(mac: MacAddr, src: Ipv6Addr, target: Ipv6Addr) -> Self {
        let all_nodes = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
        NeighborFrame {
            link: Link {
                src_mac: mac,
                dst_mac: MacAddr::ipv6_multicast(&all_nodes),
                ..Link::default()
            },
            src,
            dst: all_nodes,
            hop_limit: 255,
            advertisement: true,
            target,
            router: false,
            solicited: false,
            override_: true,
            link_addr: Some(mac),
        }
    }

    /// The ND message.
    pub fn message(&self) -> Vec<u8> {
        let mut out = vec![0u8; icmpv6::NDISC_LEN];
        if let Some(mac) = self.link_addr {
            let kind = if self.advertisement {
                icmpv6::nd_option::TARGET_LINK_ADDR
            } else {
                icmpv6::nd_option::SOURCE_LINK_ADDR
            };
            out.extend_from_slice(&[kind, 1]);
            out.extend_from_slice(&mac.0);
        }
        out[0] = if self.advertisement {
            icmpv6::message::NEIGHBOR_ADVERT
        } else {
            icmpv6::message::NEIGHBOR_SOLICIT
        };
        let mut nd = icmpv6::NdiscPacket::new_unchecked(&mut out[..]);
        nd.set_target_addr(&self.target);
        if self.advertisement {
            nd.set_flags(self.router, self.solicited, self.override_);
        }
        nd.fill_checksum(&self.src, &self.dst);
        out
    }

    /// The whole frame.
    pub fn to_bytes(&self) -> Vec<u8> {
        IpFrame {
            link: self.link,
            src: self.src.into(),
            dst: self.dst.into(),
            ttl: self.hop_limit,
            protocol: ip_protocol::ICMPV6,
            payload: self.message(),
            ..Default::default()
        }
        .to_bytes()
    }
}

/// An Ethernet/IPv4 ARP packet in a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpFrame {
    /// Ethernet part.
    pub link: Link,
    /// [`arp::operation`] code.
    pub operation: u16,
    /// Sender hardware address.
    pub sender_mac: MacAddr,
    /// Sender protocol address.
    pub sender_ip: Ipv4Addr,
    /// Target hardware address.
    pub target_mac: MacAddr,
    /// Target protocol address.
    pub target_ip: Ipv4Addr,
}

impl Default for ArpFrame {
    fn default() -> Self {
        ArpFrame::request(DEFAULT_SRC_MAC, DEFAULT_SRC_V4, DEFAULT_DST_V4)
    }
}

impl ArpFrame {
    /// A broadcast "who has `target_ip`? tell `sender_ip`".
    pub fn request(sender_mac: MacAddr, sender_ip: Ipv4Addr, target_ip: Ipv4Addr) -> Self {
        ArpFrame {
            link: Link {
                src_mac: sender_mac,
                dst_mac: MacAddr::BROADCAST,
                ..Link::default()
            },
            operation: arp::operation::REQUEST,
            sender_mac,
            sender_ip,
            target_mac: MacAddr::ZERO,
            target_ip,
        }
    }

    /// A unicast "`sender_ip` is at `sender_mac`" to the requester.
    pub fn reply(
        sender_mac: MacAddr,
        sender_ip: Ipv4Addr,
        target_mac: MacAddr,
        target_ip: Ipv4Addr,
    ) -> Self {
        ArpFrame {
            link: Link {
                src_mac: sender_mac,
                dst_mac: target_mac,
                ..Link::default()
            },
            operation: arp::operation::REPLY,
            sender_mac,
            sender_ip,
            target_mac,
            target_ip,
        }
    }

    /// A gratuitous ARP announcing `ip` at `mac` (as on a CARP takeover).
    pub fn gratuitous(mac: MacAddr, ip: Ipv4Addr) -> Self {
        ArpFrame::request(mac, ip, ip)
    }

    /// The whole (unpadded, 42-byte) frame.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut packet = vec![0u8; arp::PACKET_LEN];
        let mut a = arp::Packet::new_unchecked(&mut packet[..]);
        a.set_ethernet_ipv4();
        a.set_operation(self.operation);
        a.set_sender_hw_addr(self.sender_mac);
        a.set_sender_proto_addr(self.sender_ip);
        a.set_target_hw_addr(self.target_mac);
        a.set_target_proto_addr(self.target_ip);
        self.link.frame(ethertype::ARP, &packet)
    }
}

/// A CARP advertisement as OpenBSD sends it over IPv4 (TOS 0x10, DF, TTL 255, to 224.0.0.18 from
/// the virtual MAC), with the given header fields and a correct header checksum. The HMAC is the
/// caller's (`md`): computing it is the control plane's job.
#[allow(clippy::too_many_arguments)]
pub fn carp_advertisement_v4(
    vhid: u8,
    advbase: u8,
    advskew: u8,
    demote: u8,
    counter: [u8; 8],
    md: [u8; carp::MD_LEN],
    src: Ipv4Addr,
    ident: u16,
) -> Vec<u8> {
    let mut header = vec![0u8; carp::HEADER_LEN];
    let mut c = carp::Header::new_unchecked(&mut header[..]);
    c.set_version_and_type(carp::VERSION, carp::TYPE_ADVERTISEMENT);
    c.set_vhid(vhid);
    c.set_advskew(advskew);
    c.set_authlen(carp::AUTHLEN);
    c.set_demote(demote);
    c.set_advbase(advbase);
    c.set_counter_bytes(counter);
    c.set_md(&md);
    c.fill_checksum();
    IpFrame {
        link: Link {
            src_mac: carp::virtual_mac(vhid),
            dst_mac: MacAddr::ipv4_multicast(carp::GROUP_V4),
            ..Link::default()
        },
        src: src.into(),
        dst: carp::GROUP_V4.into(),
        ttl: carp::TTL,
        tos: 0x10,
        ident,
        dont_fragment: true,
        protocol: carp::PROTOCOL,
        payload: header,
        ..Default::default()
    }
    .to_bytes()
}

/// Checks an IPv4 header + L4 checksum pair the way a receiver would (test helper for builders).
pub fn l4_checksum_ok(src: &IpAddr, dst: &IpAddr, protocol: u8, l4: &[u8]) -> bool {
    let pseudo = checksum::pseudo_header(src, dst, protocol, l4.len() as u32);
    checksum::combine(&[pseudo, checksum::sum(l4)]) == 0xffff
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testutil::hex;

    #[test]
    fn carp_builder_reproduces_tv1() {
        let md: [u8; 20] = hex("17 b1 ef db f0 4c 5b 67 a2 d4 c6 de ec 56 e5 e4 73 ed 7a e2")
            .try_into()
            .unwrap();
        let frame = carp_advertisement_v4(
            1,
            1,
            0,
            0,
            [1, 2, 3, 4, 5, 6, 7, 8],
            md,
            Ipv4Addr::new(192, 168, 1, 2),
            0x1234,
        );
        let mut expected = hex("01 00 5e 00 00 12 00 00 5e 00 01 01 08 00");
        expected.extend_from_slice(&hex(
            "45 10 00 38 12 34 40 00 ff 70 c7 54 c0 a8 01 02 e0 00 00 12",
        ));
        expected.extend_from_slice(&hex("21 01 00 07 00 01 50 e2 01 02 03 04 05 06 07 08"));
        expected.extend_from_slice(&md);
        assert_eq!(frame, expected);
    }

    #[test]
    fn extension_headers_encode_to_their_units() {
        for ext in [
            ExtHeader::hop_by_hop(),
            ExtHeader::destination_options(),
            ExtHeader::routing(2),
            ExtHeader::fragment(8, true, 7),
            ExtHeader::authentication(0x100),
        ] {
            let bytes = ext.encode(ip_protocol::TCP);
            assert_eq!(bytes.len() % 8, 0);
            assert_eq!(bytes[0], ip_protocol::TCP);
            let declared = match ext.kind {
                ip_protocol::IPV6_FRAG => 8,
                ip_protocol::AH => (bytes[1] as usize + 2) * 4,
                _ => (bytes[1] as usize + 1) * 8,
            };
            assert_eq!(declared, bytes.len(), "{ext:?}");
        }
    }

    #[test]
    fn l4_checksums_are_correct() {
        let v6src: IpAddr = "2001:db8::10".parse().unwrap();
        let v6dst: IpAddr = "2001:db8::20".parse().unwrap();
        let tcp = TcpFrame {
            payload: b"data".to_vec(),
            ..Default::default()
        };
        assert!(l4_checksum_ok(&tcp.src, &tcp.dst, 6, &tcp.segment()));
        let udp = UdpFrame {
            src: v6src,
            dst: v6dst,
            checksum: false, // ignored over IPv6
            ..Default::default()
        };
        assert!(l4_checksum_ok(&v6src, &v6dst, 17, &udp.datagram()));
        let echo = EchoFrame {
            src: v6src,
            dst: v6dst,
            ..Default::default()
        };
        assert!(l4_checksum_ok(&v6src, &v6dst, 58, &echo.message()));
    }
}
