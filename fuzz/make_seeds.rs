//! Writes a seed corpus for `wire_parse`: one well-formed frame of each kind the parser knows,
//! built with `rampart_dataplane::wire::build`, so the fuzzer starts deep in every branch.
//!
//! Usage: `cargo run --release --bin make_seeds -- corpus/wire_parse`

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use rampart_dataplane::wire::build::{
    self, ArpFrame, EchoFrame, ExtHeader, IpFrame, Link, NeighborFrame, TcpFrame, UdpFrame,
};
use rampart_dataplane::wire::{carp, icmp, ip_protocol, pfsync, MacAddr, TcpFlags, TcpOptions};

fn v6(text: &str) -> IpAddr {
    text.parse::<Ipv6Addr>().expect("literal").into()
}

fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let syn_options = TcpOptions {
        mss: Some(1460),
        wscale: Some(7),
        sack_permitted: true,
        timestamp: Some((1, 0)),
    };
    let tcp6 = TcpFrame {
        src: v6("2001:db8::1"),
        dst: v6("2001:db8::2"),
        options: syn_options,
        ..Default::default()
    };
    let udp6 = UdpFrame {
        src: v6("2001:db8::1"),
        dst: v6("2001:db8::2"),
        payload: vec![0x42; 40],
        ..Default::default()
    };
    let sack = vec![1, 1, 5, 10, 0, 0, 0, 1, 0, 0, 0, 2];
    vec![
        (
            "tcp4-syn",
            TcpFrame {
                options: syn_options,
                ..Default::default()
            }
            .to_bytes(),
        ),
        (
            "tcp4-ack-sack-vlan",
            TcpFrame {
                vlan: Some(100),
                flags: TcpFlags::ACK,
                raw_options: sack,
                payload: b"payload".to_vec(),
                ..Default::default()
            }
            .to_bytes(),
        ),
        ("tcp6-syn", tcp6.to_bytes()),
        (
            "udp4",
            UdpFrame {
                payload: b"query".to_vec(),
                ..Default::default()
            }
            .to_bytes(),
        ),
        ("udp6", udp6.to_bytes()),
        ("icmp4-echo", EchoFrame::default().to_bytes()),
        (
            "icmp6-echo",
            EchoFrame {
                src: v6("2001:db8::1"),
                dst: v6("2001:db8::2"),
                ..Default::default()
            }
            .to_bytes(),
        ),
        (
            "icmp4-error",
            build::icmp_error(
                Link::default(),
                Ipv4Addr::new(192, 0, 2, 1),
                build::DEFAULT_SRC_V4,
                icmp::message::DEST_UNREACHABLE,
                4,
                &TcpFrame::default().ip_frame().ip_packet(),
            ),
        ),
        ("nd-solicit", NeighborFrame::default().to_bytes()),
        (
            "nd-advert",
            NeighborFrame::unsolicited_advertisement(
                carp::virtual_mac(1),
                "fe80::1".parse().expect("literal"),
                "2001:db8::1".parse().expect("literal"),
            )
            .to_bytes(),
        ),
        ("arp-request", ArpFrame::default().to_bytes()),
        (
            "arp-gratuitous",
            ArpFrame::gratuitous(carp::virtual_mac(1), Ipv4Addr::new(192, 0, 2, 1)).to_bytes(),
        ),
        (
            "carp-tv1",
            build::carp_advertisement_v4(
                1,
                1,
                0,
                0,
                [1, 2, 3, 4, 5, 6, 7, 8],
                [0x17; 20],
                Ipv4Addr::new(192, 168, 1, 2),
                0x1234,
            ),
        ),
        (
            "pfsync-bulk-request",
            IpFrame {
                dst: pfsync::GROUP_V4.into(),
                ttl: 255,
                protocol: pfsync::PROTOCOL,
                payload: {
                    let mut p = vec![6, 0, 0, 36];
                    p.extend_from_slice(&[0; 16]);
                    p.extend_from_slice(&[5, 3, 0, 1]);
                    p.extend_from_slice(&[0; 12]);
                    p
                },
                ..Default::default()
            }
            .to_bytes(),
        ),
        (
            "ipv6-ext-chain-qinq",
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
                    ExtHeader::fragment(0, true, 7),
                    ExtHeader::authentication(1),
                ],
                protocol: ip_protocol::UDP,
                payload: udp6.datagram(),
                ..Default::default()
            }
            .to_bytes(),
        ),
        (
            "ipv6-later-fragment",
            IpFrame {
                src: v6("2001:db8::1"),
                dst: v6("2001:db8::2"),
                ipv6_ext: vec![ExtHeader::fragment(1448, false, 7)],
                protocol: ip_protocol::TCP,
                payload: vec![0; 32],
                ..Default::default()
            }
            .to_bytes(),
        ),
        (
            "ipv4-first-fragment-options",
            IpFrame {
                ipv4_options: vec![148, 4, 0, 0],
                dont_fragment: false,
                ipv4_fragment: Some((0, true)),
                protocol: ip_protocol::TCP,
                payload: TcpFrame::default().segment(),
                ..Default::default()
            }
            .to_bytes(),
        ),
        (
            "ipv4-ah-tcp",
            IpFrame {
                protocol: ip_protocol::AH,
                payload: {
                    let mut p = vec![ip_protocol::TCP, 4, 0, 0];
                    p.extend_from_slice(&[0; 20]);
                    p.extend_from_slice(&TcpFrame::default().segment());
                    p
                },
                ..Default::default()
            }
            .to_bytes(),
        ),
        ("ipv4-padded-ack", {
            let mut frame = TcpFrame {
                flags: TcpFlags::ACK,
                src_mac: MacAddr([2, 0, 0, 0, 0, 9]),
                ..Default::default()
            }
            .to_bytes();
            build::pad_to_minimum(&mut frame);
            frame
        }),
    ]
}

fn main() -> std::io::Result<()> {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "corpus/wire_parse".into()),
    );
    std::fs::create_dir_all(&dir)?;
    let seeds = seeds();
    for (i, (name, frame)) in seeds.iter().enumerate() {
        std::fs::write(dir.join(format!("{i:02}-{name}")), frame)?;
    }
    println!("wrote {} seeds to {}", seeds.len(), dir.display());
    Ok(())
}
