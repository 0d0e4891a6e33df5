//! Tests for `parse_frame`: round trips through the builders, every error reason, fragments,
//! truncation at every length and random corruption.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::*;
use crate::wire::build::{
    self, ArpFrame, EchoFrame, ExtHeader, IpFrame, Link, NeighborFrame, TcpFrame, UdpFrame,
};
use crate::wire::ethernet::MacAddr;
use crate::wire::testutil::{hex, XorShift};
use crate::wire::{carp, pfsync, TcpOptions};

fn v6(text: &str) -> IpAddr {
    text.parse::<Ipv6Addr>().unwrap().into()
}

fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    Ipv4Addr::new(a, b, c, d).into()
}

fn syn_options() -> TcpOptions {
    TcpOptions {
        mss: Some(1460),
        wscale: Some(7),
        sack_permitted: true,
        timestamp: Some((12345, 0)),
    }
}

/// One frame of every kind the builders make: the corpus for the generic tests.
fn corpus() -> Vec<Vec<u8>> {
    vec![
        TcpFrame {
            options: syn_options(),
            ..Default::default()
        }
        .to_bytes(),
        TcpFrame {
            src: v6("2001:db8::1"),
            dst: v6("2001:db8::2"),
            vlan: Some(42),
            flags: TcpFlags::ACK | TcpFlags::PSH,
            payload: b"GET / HTTP/1.1\r\n".to_vec(),
            ..Default::default()
        }
        .to_bytes(),
        UdpFrame {
            payload: b"dns".to_vec(),
            ..Default::default()
        }
        .to_bytes(),
        UdpFrame {
            src: v6("fe80::1"),
            dst: v6("ff02::fb"),
            ..Default::default()
        }
        .to_bytes(),
        EchoFrame::default().to_bytes(),
        EchoFrame {
            src: v6("2001:db8::1"),
            dst: v6("2001:db8::2"),
            ..Default::default()
        }
        .to_bytes(),
        NeighborFrame::default().to_bytes(),
        NeighborFrame::unsolicited_advertisement(
            carp::virtual_mac(3),
            "fe80::3".parse().unwrap(),
            "2001:db8::1".parse().unwrap(),
        )
        .to_bytes(),
        ArpFrame::default().to_bytes(),
        IpFrame {
            link: Link {
                vlan: Some(20),
                outer_vlan: Some(10),
                ..Link::default()
            },
            src: v6("2001:db8::1"),
            dst: v6("2001:db8::2"),
            ipv6_ext: vec![
                ExtHeader::hop_by_hop(),
                ExtHeader::destination_options(),
                ExtHeader::routing(2),
                ExtHeader::authentication(1),
            ],
            protocol: ip_protocol::UDP,
            payload: UdpFrame {
                src: v6("2001:db8::1"),
                dst: v6("2001:db8::2"),
                ..Default::default()
            }
            .datagram(),
            ..Default::default()
        }
        .to_bytes(),
    ]
}

#[test]
fn tcp_v4_syn_round_trip() {
    let frame = TcpFrame {
        sport: 40001,
        dport: 443,
        seq: 0xdead_beef,
        ack: 0,
        window: 29200,
        ttl: 61,
        options: syn_options(),
        payload: b"tfo".to_vec(),
        ..Default::default()
    }
    .to_bytes();
    let p = parse_frame(&frame).unwrap();
    assert_eq!(p.vlan, None);
    assert_eq!(p.ethertype, ethertype::IPV4);
    assert_eq!(p.l3, L3::Ipv4);
    assert_eq!(p.ip_version(), Some(4));
    assert_eq!(p.l3_offset, 14);
    assert_eq!(p.l3_len, 20 + 40 + 3);
    assert_eq!(p.l4_offset, 34);
    assert_eq!(p.payload_offset, 34 + 40);
    assert_eq!(p.payload_len, 3);
    assert_eq!(p.src, IpAddr::from(build::DEFAULT_SRC_V4));
    assert_eq!(p.dst, IpAddr::from(build::DEFAULT_DST_V4));
    assert_eq!(p.protocol, ip_protocol::TCP);
    assert_eq!(p.ttl, 61);
    assert_eq!(p.fragment, Fragment::Whole);
    assert!(!p.ip_options);
    let tcp = *p.tcp().unwrap();
    assert_eq!(
        tcp,
        TcpSummary {
            src_port: 40001,
            dst_port: 443,
            seq: 0xdead_beef,
            ack: 0,
            flags: TcpFlags::SYN,
            window: 29200,
            header_len: 40,
        }
    );
    assert_eq!(p.ports(), Some((40001, 443)));
    assert_eq!(p.payload(&frame), b"tfo");
    assert_eq!(
        TcpOptions::parse(p.tcp_options(&frame).unwrap()),
        Ok(syn_options())
    );
    // The views agree with the summary and the checksums verify.
    let ip = crate::wire::Ipv4Packet::new_checked(p.l3_bytes(&frame)).unwrap();
    assert!(ip.verify_checksum());
    let segment = crate::wire::TcpPacket::new_checked(p.l4_bytes(&frame)).unwrap();
    assert!(segment.verify_checksum(&p.src, &p.dst));
}

#[test]
fn tcp_v6_with_vlan() {
    let frame = corpus()[1].clone();
    let p = parse_frame(&frame).unwrap();
    assert_eq!(p.vlan, Some(42));
    assert_eq!(p.l3_offset, 18);
    assert_eq!(p.l3, L3::Ipv6);
    assert_eq!(p.l4_offset, 18 + 40);
    assert_eq!(p.src, v6("2001:db8::1"));
    assert_eq!(p.tcp().unwrap().flags, TcpFlags::ACK | TcpFlags::PSH);
    assert_eq!(p.payload(&frame), b"GET / HTTP/1.1\r\n");
    let segment = crate::wire::TcpPacket::new_checked(p.l4_bytes(&frame)).unwrap();
    assert!(segment.verify_checksum(&p.src, &p.dst));
}

#[test]
fn ipv6_extension_chain_in_qinq() {
    let frame = corpus()[9].clone();
    let p = parse_frame(&frame).unwrap();
    assert_eq!((p.vlan, p.inner_vlan), (Some(10), Some(20)));
    assert_eq!(p.l3_offset, 22);
    assert_eq!(p.protocol, ip_protocol::UDP);
    assert!(p.ip_options);
    assert_eq!(p.l4_offset, 22 + 40 + 8 + 8 + 8 + 24);
    assert!(matches!(p.l4, L4::Udp(_)));
    assert_eq!(p.fragment, Fragment::Whole);
}

#[test]
fn udp_icmp_and_neighbor_discovery() {
    let c = corpus();
    let udp4 = parse_frame(&c[2]).unwrap();
    assert_eq!(
        udp4.l4,
        L4::Udp(UdpSummary {
            src_port: 40000,
            dst_port: 53
        })
    );
    assert_eq!(udp4.payload(&c[2]), b"dns");

    let udp6 = parse_frame(&c[3]).unwrap();
    assert_eq!(udp6.ports(), Some((40000, 53)));
    assert_eq!(udp6.payload_len, 0);

    let echo4 = parse_frame(&c[4]).unwrap();
    assert_eq!(
        echo4.l4,
        L4::Icmp(IcmpSummary {
            msg_type: icmp::message::ECHO_REQUEST,
            code: 0,
            ident: Some(0x4242),
            is_error: false
        })
    );
    assert_eq!(echo4.payload(&c[4]), b"rampart echo");

    let echo6 = parse_frame(&c[5]).unwrap();
    assert!(matches!(
        echo6.l4,
        L4::Icmpv6(IcmpSummary {
            msg_type: icmpv6::message::ECHO_REQUEST,
            ident: Some(0x4242),
            ..
        })
    ));

    let ns = parse_frame(&c[6]).unwrap();
    assert_eq!(ns.ttl, 255);
    assert_eq!(ns.dst, v6("ff02::1:ff00:1"));
    let ns_view = icmpv6::NdiscPacket::new_checked(ns.l4_bytes(&c[6])).unwrap();
    assert_eq!(ns_view.source_link_addr(), Ok(Some(build::DEFAULT_SRC_MAC)));

    let na = parse_frame(&c[7]).unwrap();
    let na_view = icmpv6::NdiscPacket::new_checked(na.l4_bytes(&c[7])).unwrap();
    assert!(na_view.is_advertisement() && na_view.override_flag());
    assert_eq!(na_view.target_link_addr(), Ok(Some(carp::virtual_mac(3))));
    let (src, dst) = match (na.src, na.dst) {
        (IpAddr::V6(s), IpAddr::V6(d)) => (s, d),
        _ => unreachable!(),
    };
    assert!(na_view.verify_checksum(&src, &dst));
}

#[test]
fn neighbor_discovery_needs_hop_limit_255() {
    let ns = NeighborFrame {
        hop_limit: 64,
        ..Default::default()
    };
    assert_eq!(parse_frame(&ns.to_bytes()), Err(ParseError::Normalize));
    // A zero-length ND option invalidates the message.
    let mut frame = NeighborFrame::default().to_bytes();
    let len = frame.len();
    frame[len - 7] = 0;
    assert_eq!(parse_frame(&frame), Err(ParseError::Normalize));
}

#[test]
fn arp_frames() {
    let request = ArpFrame::request(
        MacAddr([2, 0, 0, 0, 0, 0x0a]),
        Ipv4Addr::new(192, 0, 2, 10),
        Ipv4Addr::new(192, 0, 2, 1),
    )
    .to_bytes();
    let p = parse_frame(&request).unwrap();
    assert_eq!(
        p.l3,
        L3::Arp {
            operation: arp::operation::REQUEST
        }
    );
    assert_eq!(p.ip_version(), None);
    assert_eq!(p.src, v4(192, 0, 2, 10));
    assert_eq!(p.dst, v4(192, 0, 2, 1));
    assert_eq!(p.l3_len, 28);
    assert_eq!(p.l4, L4::None);

    // Answering in place, as the worker does for a VIP it is MASTER for.
    let mut reply = request.clone();
    let vmac = carp::virtual_mac(1);
    crate::wire::EthernetFrame::new_checked(&mut reply[..])
        .unwrap()
        .reply_from(vmac);
    crate::wire::ArpPacket::new_checked(&mut reply[p.l3_offset as usize..])
        .unwrap()
        .make_reply(vmac);
    let expected = ArpFrame::reply(
        vmac,
        Ipv4Addr::new(192, 0, 2, 1),
        MacAddr([2, 0, 0, 0, 0, 0x0a]),
        Ipv4Addr::new(192, 0, 2, 10),
    )
    .to_bytes();
    assert_eq!(reply, expected);

    let mut other_hw = request.clone();
    other_hw[15] = 6; // IEEE 802 hardware type
    assert_eq!(
        parse_frame(&other_hw),
        Err(ParseError::Unsupported {
            ethertype: ethertype::ARP
        })
    );
}

#[test]
fn unsupported_ethertypes() {
    let lldp = Link::default().frame(0x88cc, &[0; 32]);
    assert_eq!(
        parse_frame(&lldp),
        Err(ParseError::Unsupported { ethertype: 0x88cc })
    );
    let llc = Link::default().frame(0x0030, &[0; 48]);
    assert_eq!(
        parse_frame(&llc),
        Err(ParseError::Unsupported { ethertype: 0x0030 })
    );
    // A third stacked tag is not looked through.
    let triple = Link {
        vlan: Some(2),
        outer_vlan: Some(1),
        ..Link::default()
    }
    .frame(ethertype::VLAN, &[0, 3, 8, 0]);
    assert_eq!(
        parse_frame(&triple),
        Err(ParseError::Unsupported {
            ethertype: ethertype::VLAN
        })
    );
    assert_eq!(
        ParseError::Unsupported { ethertype: 0x88cc }.to_string(),
        "unsupported (ethertype 0x88cc)"
    );
}

#[test]
fn every_prefix_is_short() {
    for frame in corpus() {
        assert!(parse_frame(&frame).is_ok());
        for len in 0..frame.len() {
            assert_eq!(
                parse_frame(&frame[..len]),
                Err(ParseError::Short),
                "prefix {len} of {frame:02x?}"
            );
        }
    }
}

#[test]
fn ethernet_padding_is_not_payload() {
    let mut frame = TcpFrame {
        flags: TcpFlags::ACK,
        ..Default::default()
    }
    .to_bytes();
    assert_eq!(frame.len(), 54);
    build::pad_to_minimum(&mut frame);
    assert_eq!(frame.len(), 60);
    let p = parse_frame(&frame).unwrap();
    assert_eq!(p.l3_len, 40);
    assert_eq!(p.payload_len, 0);
    assert!(p.payload(&frame).is_empty());

    let mut arp = ArpFrame::default().to_bytes();
    build::pad_to_minimum(&mut arp);
    assert!(parse_frame(&arp).is_ok());
}

fn ipv4_fragment(protocol: u8, payload: Vec<u8>, offset: u16, more: bool) -> Vec<u8> {
    IpFrame {
        dont_fragment: false,
        ipv4_fragment: Some((offset, more)),
        protocol,
        payload,
        ..Default::default()
    }
    .to_bytes()
}

#[test]
fn ipv4_fragments() {
    let segment = TcpFrame {
        flags: TcpFlags::ACK,
        payload: vec![0x55; 64],
        ..Default::default()
    }
    .segment();

    let first = parse_frame(&ipv4_fragment(6, segment[..24].to_vec(), 0, true)).unwrap();
    assert_eq!(first.fragment, Fragment::First);
    assert!(first.is_fragment());
    assert_eq!(first.tcp().unwrap().dst_port, 80);
    assert_eq!(first.payload_len, 4);

    let later = parse_frame(&ipv4_fragment(6, segment[24..].to_vec(), 24, false)).unwrap();
    assert_eq!(later.fragment, Fragment::Later);
    assert_eq!(later.protocol, ip_protocol::TCP);
    assert_eq!(later.l4, L4::None);
    assert_eq!(later.payload_len, 60);
    assert_eq!(later.payload_offset, later.l4_offset);

    // RFC 1858: a first fragment without the whole TCP header, and a fragment at offset 8.
    assert_eq!(
        parse_frame(&ipv4_fragment(6, segment[..8].to_vec(), 0, true)),
        Err(ParseError::Fragment)
    );
    assert_eq!(
        parse_frame(&ipv4_fragment(6, segment[8..16].to_vec(), 8, true)),
        Err(ParseError::Fragment)
    );
    let with_options = TcpFrame {
        options: syn_options(),
        ..Default::default()
    }
    .segment();
    assert_eq!(
        parse_frame(&ipv4_fragment(6, with_options[..32].to_vec(), 0, true)),
        Err(ParseError::Fragment)
    );

    // UDP: the length field describes the whole datagram, longer than the first fragment.
    let datagram = UdpFrame {
        payload: vec![1; 100],
        ..Default::default()
    }
    .datagram();
    let first = parse_frame(&ipv4_fragment(17, datagram[..48].to_vec(), 0, true)).unwrap();
    assert_eq!(first.fragment, Fragment::First);
    assert_eq!(first.ports(), Some((40000, 53)));
    assert_eq!(first.payload_len, 40);
    // …while unfragmented, the same mismatch is a short datagram.
    let mut whole = datagram.clone();
    whole.truncate(48);
    let frame = IpFrame {
        payload: whole,
        ..Default::default()
    }
    .to_bytes();
    assert_eq!(parse_frame(&frame), Err(ParseError::Short));
    // An UDP first fragment too small for the header.
    assert_eq!(
        parse_frame(&ipv4_fragment(17, datagram[..0].to_vec(), 0, true)),
        Err(ParseError::Fragment)
    );
}

fn ipv6_frame(ext: Vec<ExtHeader>, protocol: u8, payload: Vec<u8>) -> Vec<u8> {
    IpFrame {
        src: v6("2001:db8::1"),
        dst: v6("2001:db8::2"),
        ipv6_ext: ext,
        protocol,
        payload,
        ..Default::default()
    }
    .to_bytes()
}

#[test]
fn ipv6_fragments() {
    let datagram = UdpFrame {
        src: v6("2001:db8::1"),
        dst: v6("2001:db8::2"),
        payload: vec![7; 64],
        ..Default::default()
    }
    .datagram();
    let first = parse_frame(&ipv6_frame(
        vec![ExtHeader::fragment(0, true, 9)],
        17,
        datagram[..32].to_vec(),
    ))
    .unwrap();
    assert_eq!(first.fragment, Fragment::First);
    assert_eq!(first.ports(), Some((40000, 53)));
    assert!(!first.ip_options);

    let later = parse_frame(&ipv6_frame(
        vec![ExtHeader::fragment(32, false, 9)],
        17,
        datagram[32..].to_vec(),
    ))
    .unwrap();
    assert_eq!(later.fragment, Fragment::Later);
    assert_eq!(later.protocol, ip_protocol::UDP);
    assert_eq!(later.l4, L4::None);
    assert_eq!(later.l4_offset, 14 + 40 + 8);

    // An atomic fragment is a whole packet (RFC 6946).
    let atomic = parse_frame(&ipv6_frame(
        vec![ExtHeader::fragment(0, false, 9)],
        17,
        datagram.clone(),
    ))
    .unwrap();
    assert_eq!(atomic.fragment, Fragment::Whole);
    assert!(matches!(atomic.l4, L4::Udp(_)));

    // Two fragment headers; a first fragment without its UDP header (RFC 7112).
    assert_eq!(
        parse_frame(&ipv6_frame(
            vec![
                ExtHeader::fragment(0, true, 9),
                ExtHeader::fragment(0, true, 9)
            ],
            17,
            datagram[..16].to_vec(),
        )),
        Err(ParseError::Fragment)
    );
    assert_eq!(
        parse_frame(&ipv6_frame(
            vec![ExtHeader::fragment(0, true, 9)],
            17,
            datagram[..4].to_vec(),
        )),
        Err(ParseError::Fragment)
    );
    assert_eq!(
        parse_frame(&ipv6_frame(
            vec![
                ExtHeader::fragment(0, true, 9),
                ExtHeader::destination_options()
            ],
            17,
            Vec::new(),
        )),
        Err(ParseError::Fragment)
    );
}

/// Applies `edit` to the L3 bytes of `frame` (which starts at 14) and parses.
fn parse_edited(
    mut frame: Vec<u8>,
    edit: impl FnOnce(&mut [u8]),
) -> Result<ParsedFrame, ParseError> {
    edit(&mut frame[14..]);
    parse_frame(&frame)
}

#[test]
fn header_errors_map_to_pf_reasons() {
    let tcp4 = TcpFrame::default().to_bytes();
    // IHL 4
    assert_eq!(
        parse_edited(tcp4.clone(), |ip| ip[0] = 0x44),
        Err(ParseError::BadOffset)
    );
    // IPv6 version under the IPv4 EtherType
    assert_eq!(
        parse_edited(tcp4.clone(), |ip| ip[0] = 0x65),
        Err(ParseError::Normalize)
    );
    // total length below the header length
    assert_eq!(
        parse_edited(tcp4.clone(), |ip| ip[3] = 19),
        Err(ParseError::Normalize)
    );
    // total length beyond the frame
    assert_eq!(
        parse_edited(tcp4.clone(), |ip| ip[3] = 41),
        Err(ParseError::Short)
    );
    // TCP data offset 4, and past the segment
    assert_eq!(
        parse_edited(tcp4.clone(), |ip| ip[20 + 12] = 0x40),
        Err(ParseError::BadOffset)
    );
    assert_eq!(
        parse_edited(tcp4.clone(), |ip| ip[20 + 12] = 0x60),
        Err(ParseError::BadOffset)
    );
    // a TCP header cut by the IP total length
    let short_tcp = IpFrame {
        protocol: ip_protocol::TCP,
        payload: vec![0; 12],
        ..Default::default()
    }
    .to_bytes();
    assert_eq!(parse_frame(&short_tcp), Err(ParseError::Short));

    for flags in [
        TcpFlags::SYN | TcpFlags::RST,
        TcpFlags::SYN | TcpFlags::FIN,
        TcpFlags::SYN | TcpFlags::FIN | TcpFlags::ACK,
    ] {
        let frame = TcpFrame {
            flags,
            ..Default::default()
        }
        .to_bytes();
        assert_eq!(parse_frame(&frame), Err(ParseError::Normalize), "{flags:?}");
    }
    let port0 = TcpFrame {
        dport: 0,
        ..Default::default()
    }
    .to_bytes();
    assert_eq!(parse_frame(&port0), Err(ParseError::Normalize));
    let udp_port0 = UdpFrame {
        dport: 0,
        ..Default::default()
    }
    .to_bytes();
    assert_eq!(parse_frame(&udp_port0), Err(ParseError::Normalize));

    let udp4 = UdpFrame::default().to_bytes();
    assert_eq!(
        parse_edited(udp4.clone(), |ip| ip[20 + 5] = 7),
        Err(ParseError::Normalize)
    );
    assert_eq!(
        parse_edited(udp4.clone(), |ip| ip[20 + 5] = 9),
        Err(ParseError::Short)
    );
}

#[test]
fn ip_options_and_ah() {
    let with_ra = IpFrame {
        ipv4_options: vec![148, 4, 0, 0],
        protocol: ip_protocol::UDP,
        payload: UdpFrame::default().datagram(),
        ..Default::default()
    }
    .to_bytes();
    let p = parse_frame(&with_ra).unwrap();
    assert!(p.ip_options);
    assert_eq!(p.l4_offset, 14 + 24);
    assert_eq!(p.ports(), Some((40000, 53)));

    let bad_options = IpFrame {
        ipv4_options: vec![7, 9, 0, 0],
        ..Default::default()
    }
    .to_bytes();
    assert_eq!(parse_frame(&bad_options), Err(ParseError::IpOption));

    // IPv4 AH (24 bytes) in front of TCP is walked, as pf does.
    let mut ah = vec![ip_protocol::TCP, 4, 0, 0];
    ah.extend_from_slice(&[0; 20]);
    let mut payload = ah.clone();
    payload.extend_from_slice(&TcpFrame::default().segment());
    let frame = IpFrame {
        protocol: ip_protocol::AH,
        payload,
        ..Default::default()
    }
    .to_bytes();
    let p = parse_frame(&frame).unwrap();
    assert_eq!(p.protocol, ip_protocol::TCP);
    assert_eq!(p.l4_offset, 14 + 20 + 24);
    assert!(p.tcp().is_some());
    // …and an AH longer than the datagram is a bad offset.
    let frame = IpFrame {
        protocol: ip_protocol::AH,
        payload: ah[..16].to_vec(),
        ..Default::default()
    }
    .to_bytes();
    assert_eq!(parse_frame(&frame), Err(ParseError::BadOffset));
}

#[test]
fn ipv6_chain_errors() {
    let udp = |len: usize| vec![0x9c, 0x40, 0, 53, 0, len as u8, 0, 0];
    let too_many =
        vec![ExtHeader::destination_options(); crate::wire::ipv6::MAX_EXTENSION_HEADERS + 1];
    assert_eq!(
        parse_frame(&ipv6_frame(too_many, 17, udp(8))),
        Err(ParseError::IpOption)
    );
    assert_eq!(
        parse_frame(&ipv6_frame(vec![ExtHeader::routing(0)], 17, udp(8))),
        Err(ParseError::IpOption)
    );
    assert_eq!(
        parse_frame(&ipv6_frame(
            vec![ExtHeader::destination_options(), ExtHeader::hop_by_hop()],
            17,
            udp(8)
        )),
        Err(ParseError::IpOption)
    );
    // An extension header announced with no room for it.
    assert_eq!(
        parse_frame(&ipv6_frame(Vec::new(), ip_protocol::IPV6_OPTS, Vec::new())),
        Err(ParseError::BadOffset)
    );
    // A jumbo payload option (RFC 2675), which pf drops.
    let jumbo = ExtHeader {
        kind: ip_protocol::HOPOPT,
        body: vec![0xc2, 4, 0, 1, 0, 0],
    };
    assert_eq!(
        parse_frame(&ipv6_frame(vec![jumbo], 17, udp(8))),
        Err(ParseError::Normalize)
    );
    // ESP ends the walk: no L4 to parse, not an error.
    let esp = parse_frame(&ipv6_frame(
        vec![ExtHeader::destination_options()],
        ip_protocol::ESP,
        vec![0; 16],
    ))
    .unwrap();
    assert_eq!(esp.protocol, ip_protocol::ESP);
    assert_eq!(esp.l4, L4::None);
    assert_eq!(esp.payload_len, 16);
}

#[test]
fn carp_tv1_frame() {
    let md: [u8; 20] = hex("17 b1 ef db f0 4c 5b 67 a2 d4 c6 de ec 56 e5 e4 73 ed 7a e2")
        .try_into()
        .unwrap();
    let frame = build::carp_advertisement_v4(
        1,
        1,
        0,
        0,
        [1, 2, 3, 4, 5, 6, 7, 8],
        md,
        Ipv4Addr::new(192, 168, 1, 2),
        0x1234,
    );
    let p = parse_frame(&frame).unwrap();
    assert_eq!(p.protocol, carp::PROTOCOL);
    assert_eq!(p.ttl, carp::TTL);
    assert_eq!(p.l4, L4::None);
    assert_eq!(
        carp::check_outer(p.ttl, p.dst),
        Ok(carp::Destination::Group)
    );
    let header = carp::Header::new_checked(p.l4_bytes(&frame)).unwrap();
    assert!(header.verify_checksum());
    assert_eq!(header.vhid(), 1);
}

#[test]
fn pfsync_tv4_frame() {
    let mut payload = hex("06 00 00 24");
    payload.extend_from_slice(&[0; 16]);
    payload.extend_from_slice(&hex("05 03 00 01"));
    payload.extend_from_slice(&[0; 12]);
    let frame = IpFrame {
        src: v4(10, 0, 0, 1),
        dst: pfsync::GROUP_V4.into(),
        ttl: 255,
        tos: 0x10,
        ident: 0xabcd,
        protocol: pfsync::PROTOCOL,
        payload,
        ..Default::default()
    }
    .to_bytes();
    assert_eq!(
        &frame[14..34],
        &hex("45 10 00 38 ab cd 40 00 ff f0 e4 06 0a 00 00 01 e0 00 00 f0")[..]
    );
    let p = parse_frame(&frame).unwrap();
    assert_eq!(p.protocol, pfsync::PROTOCOL);
    assert_eq!(
        pfsync::check_outer(p.ttl, p.dst),
        Ok(pfsync::Destination::Group)
    );
    let header = pfsync::Header::new_checked(p.l4_bytes(&frame)).unwrap();
    assert_eq!(header.len(), 36);
}

#[test]
fn icmp_errors_and_their_quotes() {
    let original = TcpFrame {
        src: v4(10, 0, 0, 1),
        dst: v4(192, 0, 2, 80),
        sport: 51000,
        dport: 443,
        seq: 77,
        payload: vec![0; 100],
        ..Default::default()
    }
    .ip_frame()
    .ip_packet();
    let error = build::icmp_error(
        Link::default(),
        Ipv4Addr::new(198, 51, 100, 1),
        Ipv4Addr::new(10, 0, 0, 1),
        icmp::message::TIME_EXCEEDED,
        0,
        &original,
    );
    let p = parse_frame(&error).unwrap();
    let summary = match p.l4 {
        L4::Icmp(s) => s,
        other => panic!("not ICMP: {other:?}"),
    };
    assert!(summary.is_error);
    assert_eq!(summary.ident, None);
    assert_eq!(p.payload_len, 28);
    let quoted = parse_quoted(p.payload(&error), false).unwrap();
    assert_eq!(quoted.src, v4(10, 0, 0, 1));
    assert_eq!(quoted.dst, v4(192, 0, 2, 80));
    assert_eq!(quoted.protocol, ip_protocol::TCP);
    assert_eq!(
        quoted.l4,
        QuotedL4::Tcp {
            src_port: 51000,
            dst_port: 443,
            seq: 77
        }
    );
    // Cut inside the 8 quoted L4 bytes: short. Wrong family: normalize. Garbage: no panic.
    assert_eq!(
        parse_quoted(&p.payload(&error)[..24], false),
        Err(ParseError::Short)
    );
    assert_eq!(
        parse_quoted(p.payload(&error), true),
        Err(ParseError::Short)
    );

    // An ICMPv6 error quoting an IPv6 echo request.
    let echo = EchoFrame {
        src: v6("2001:db8::1"),
        dst: v6("2001:db8::2"),
        ..Default::default()
    }
    .ip_frame()
    .ip_packet();
    let quoted = parse_quoted(&echo[..48], true).unwrap();
    assert_eq!(
        quoted.l4,
        QuotedL4::Icmp {
            msg_type: icmpv6::message::ECHO_REQUEST,
            code: 0,
            ident: Some(0x4242)
        }
    );
    let mut mismatched = echo.clone();
    mismatched[6] = ip_protocol::ICMP;
    assert_eq!(
        parse_quoted(&mismatched[..48], true),
        Err(ParseError::Normalize)
    );
}

#[test]
fn reasons_and_indices_agree() {
    let all = [
        ParseError::Short,
        ParseError::BadOffset,
        ParseError::Normalize,
        ParseError::IpOption,
        ParseError::Fragment,
        ParseError::Unsupported { ethertype: 0 },
    ];
    for error in all {
        assert_eq!(ParseError::REASONS[error.index()], error.reason());
    }
}

#[test]
fn parsed_frame_is_small() {
    // The worker keeps a burst of these on its stack.
    assert!(
        core::mem::size_of::<ParsedFrame>() <= 96,
        "{}",
        core::mem::size_of::<ParsedFrame>()
    );
}

/// Corrupts corpus frames at random and checks that parsing never panics and that whatever it
/// accepts has offsets inside the frame.
#[test]
fn random_corruption_never_panics() {
    let corpus = corpus();
    let mut rng = XorShift::new(0xf22);
    for _ in 0..60_000 {
        let mut frame = corpus[rng.below(corpus.len())].clone();
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(frame.len());
            frame[at] = match rng.below(4) {
                0 => 0,
                1 => 0xff,
                2 => frame[at] ^ (1 << rng.below(8)),
                _ => rng.next_u8(),
            };
        }
        let len = if rng.below(4) == 0 {
            rng.below(frame.len() + 1)
        } else {
            frame.len()
        };
        let frame = &frame[..len];
        if let Ok(p) = parse_frame(frame) {
            let l3_end = (p.l3_offset + p.l3_len) as usize;
            assert!(l3_end <= frame.len());
            assert!(p.l4_offset as usize <= l3_end);
            assert!(p.payload_offset >= p.l4_offset);
            assert!((p.payload_offset + p.payload_len) as usize <= l3_end);
            if let L4::Icmp(IcmpSummary { is_error: true, .. }) = p.l4 {
                let _ = parse_quoted(p.payload(frame), false);
            }
            if let Some(options) = p.tcp_options(frame) {
                let _ = TcpOptions::parse(options);
            }
        }
    }
}
