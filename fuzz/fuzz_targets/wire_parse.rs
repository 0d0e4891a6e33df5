//! Fuzzes `parse_frame` and every wire view.
//!
//! The contract under test (see `rampart_dataplane::wire`): no input makes the parser or a
//! checked view panic, every offset an accepted frame reports lies inside it, and in-place
//! rewrites with incremental checksum updates keep a valid checksum valid.

#![no_main]

use std::hint::black_box;
use std::net::IpAddr;

use libfuzzer_sys::fuzz_target;
use rampart_dataplane::wire::parse::{parse_quoted, Fragment, L3, L4};
use rampart_dataplane::wire::{
    arp, carp, checksum, ethernet, icmp, icmpv6, ip_protocol, ipv4, ipv6, parse_frame, pfsync, tcp,
    udp,
};

fuzz_target!(|data: &[u8]| {
    exercise_parser(data);
    exercise_views_directly(data);
});

/// Parses the frame and re-reads everything it accepted through the views.
fn exercise_parser(frame: &[u8]) {
    let Ok(parsed) = parse_frame(frame) else {
        return;
    };
    let l3_end = (parsed.l3_offset + parsed.l3_len) as usize;
    assert!(l3_end <= frame.len());
    assert!(parsed.l4_offset as usize <= l3_end);
    assert!(parsed.l4_offset <= parsed.payload_offset);
    assert!((parsed.payload_offset + parsed.payload_len) as usize <= l3_end);

    let ether = ethernet::Frame::new_checked(frame).expect("parse_frame checked it");
    black_box((ether.dst_addr(), ether.src_addr(), ether.ethertype()));

    let l3 = parsed.l3_bytes(frame);
    let l4 = parsed.l4_bytes(frame);
    match parsed.l3 {
        L3::Arp { .. } => {
            let packet = arp::Packet::new_checked(l3).expect("parse_frame checked it");
            black_box((
                packet.operation(),
                packet.sender_hw_addr(),
                packet.sender_proto_addr(),
                packet.target_hw_addr(),
                packet.target_proto_addr(),
                packet.is_gratuitous(),
            ));
            let mut copy = l3.to_vec();
            arp::Packet::new_checked(&mut copy[..])
                .expect("same bytes")
                .make_reply(carp::virtual_mac(1));
        }
        L3::Ipv4 => {
            let packet = ipv4::Packet::new_checked(l3).expect("parse_frame checked it");
            black_box((
                packet.tos(),
                packet.ident(),
                packet.dont_fragment(),
                packet.more_fragments(),
                packet.fragment_offset(),
                packet.is_first_fragment(),
                packet.checksum(),
                packet.options().len(),
                packet.payload().len(),
            ));
            assert_eq!(packet.is_fragment(), parsed.fragment != Fragment::Whole);
            // A router's rewrites must keep a valid header checksum valid.
            if packet.verify_checksum() {
                let mut copy = l3.to_vec();
                let mut writable = ipv4::Packet::new_checked(&mut copy[..]).expect("same bytes");
                writable.decrement_ttl();
                assert!(
                    writable.verify_checksum(),
                    "TTL decrement broke the checksum"
                );
                writable.replace_src_addr(std::net::Ipv4Addr::new(192, 0, 2, 1));
                writable.replace_dst_addr(std::net::Ipv4Addr::new(198, 51, 100, 77));
                assert!(
                    writable.verify_checksum(),
                    "address rewrite broke the checksum"
                );
            }
        }
        L3::Ipv6 => {
            let packet = ipv6::Packet::new_checked(l3).expect("parse_frame checked it");
            black_box((
                packet.traffic_class(),
                packet.flow_label(),
                packet.payload().len(),
            ));
            let chain = packet.extension_headers().expect("parse_frame walked it");
            assert_eq!(chain.next_header, parsed.protocol);
            let mut copy = l3.to_vec();
            ipv6::Packet::new_checked(&mut copy[..])
                .expect("same bytes")
                .decrement_hop_limit();
        }
    }

    match parsed.l4 {
        L4::Tcp(summary) => {
            let segment = tcp::Packet::new_checked(l4).expect("parse_frame checked it");
            assert_eq!(segment.src_port(), summary.src_port);
            black_box((
                segment.urgent_ptr(),
                segment.payload().len(),
                segment.segment_len(),
            ));
            for option in segment.options_iter() {
                black_box(&option);
            }
            let _ = tcp::TcpOptions::parse(segment.options());
            if parsed.fragment == Fragment::Whole
                && segment.verify_checksum(&parsed.src, &parsed.dst)
            {
                // NAT-style rewrites with incremental updates keep the checksum valid.
                let mut copy = l4.to_vec();
                let mut writable = tcp::Packet::new_checked(&mut copy[..]).expect("same bytes");
                writable.replace_src_port(summary.src_port.wrapping_add(1));
                writable.replace_dst_port(1);
                let new_src = rewrite_address(&parsed.src, &mut writable);
                assert!(
                    writable.verify_checksum(&new_src, &parsed.dst),
                    "incremental TCP update broke the checksum"
                );
            }
        }
        L4::Udp(_) => {
            let datagram = udp::Packet::new_checked_header(l4).expect("parse_frame checked it");
            black_box((
                datagram.len(),
                datagram.checksum(),
                datagram.payload().len(),
            ));
            if parsed.fragment == Fragment::Whole {
                let valid = datagram.verify_checksum(&parsed.src, &parsed.dst);
                let mut copy = l4.to_vec();
                let mut writable = udp::Packet::new_checked(&mut copy[..]).expect("checked");
                writable.replace_src_port(7);
                if valid {
                    assert!(writable.verify_checksum(&parsed.src, &parsed.dst));
                }
            }
        }
        L4::Icmp(summary) => {
            let message = icmp::Packet::new_checked(l4).expect("parse_frame checked it");
            black_box((
                message.rest_of_header(),
                message.echo_seq_no(),
                message.next_hop_mtu(),
                message.param_problem_pointer(),
                message.quoted_ip_header().map(<[u8]>::len),
                message.verify_checksum(),
            ));
            if summary.is_error {
                let _ = black_box(parse_quoted(parsed.payload(frame), false));
            }
        }
        L4::Icmpv6(summary) => {
            let message = icmpv6::Packet::new_checked(l4).expect("parse_frame checked it");
            black_box((message.mtu(), message.param_problem_pointer()));
            if let (IpAddr::V6(src), IpAddr::V6(dst)) = (parsed.src, parsed.dst) {
                black_box(message.verify_checksum(&src, &dst));
            }
            if let Ok(nd) = icmpv6::NdiscPacket::new_checked(l4) {
                let _ = black_box((
                    nd.target_addr(),
                    nd.router_flag(),
                    nd.solicited_flag(),
                    nd.override_flag(),
                    nd.source_link_addr(),
                    nd.target_link_addr(),
                ));
            }
            if summary.is_error {
                let _ = black_box(parse_quoted(parsed.payload(frame), true));
            }
        }
        L4::None => match parsed.protocol {
            ip_protocol::CARP => {
                let _ = black_box(carp::check_outer(parsed.ttl, parsed.dst));
                if let Ok(header) = carp::Header::new_checked(l4) {
                    black_box((
                        header.version(),
                        header.msg_type(),
                        header.vhid(),
                        header.advskew(),
                        header.authlen(),
                        header.demote(),
                        header.advbase(),
                        header.counter(),
                        header.md(),
                        header.verify_checksum(),
                    ));
                }
            }
            ip_protocol::PFSYNC => {
                let _ = black_box(pfsync::check_outer(parsed.ttl, parsed.dst));
                if let Ok(header) = pfsync::Header::new_checked(l4) {
                    black_box((header.version(), header.pfcksum()));
                    if let Ok(sub) = pfsync::SubHeader::new_checked(header.sections()) {
                        black_box((sub.action(), sub.count(), sub.messages_len()));
                    }
                }
            }
            _ => {}
        },
    }
}

/// Rewrites the pseudo-header source address in the TCP checksum as NAT would; returns it.
fn rewrite_address(old: &IpAddr, segment: &mut tcp::Packet<&mut [u8]>) -> IpAddr {
    match old {
        IpAddr::V4(a) => {
            let new = std::net::Ipv4Addr::new(203, 0, 113, 9);
            segment.update_checksum_for_address(&a.octets(), &new.octets());
            new.into()
        }
        IpAddr::V6(a) => {
            let new: std::net::Ipv6Addr = "2001:db8:ffff::9".parse().expect("literal");
            segment.update_checksum_for_address(&a.octets(), &new.octets());
            new.into()
        }
    }
}

/// Runs every checked view and walker over the raw bytes, whatever they are.
fn exercise_views_directly(data: &[u8]) {
    black_box(checksum::sum(data));
    black_box(checksum::verify(data));
    if let Ok(frame) = ethernet::Frame::new_checked(data) {
        let _ = black_box(frame.l2_header());
        black_box(frame.payload().len());
    }
    if let Ok(p) = ipv4::Packet::new_checked_header(data) {
        black_box((p.payload().len(), p.options().len(), p.verify_checksum()));
        let _ = black_box(ipv4::validate_options(p.options()));
    }
    if let Ok(p) = ipv6::Packet::new_checked_header(data) {
        let _ = black_box(p.extension_headers());
    }
    if let Some((&first, rest)) = data.split_first() {
        let _ = black_box(ipv6::walk_extension_headers(first, rest));
    }
    if let Ok(p) = tcp::Packet::new_checked(data) {
        for option in p.options_iter() {
            black_box(&option);
        }
        black_box(p.payload().len());
    }
    let _ = black_box(tcp::TcpOptions::parse(data));
    if let Ok(p) = udp::Packet::new_checked(data) {
        black_box(p.payload().len());
    }
    if let Ok(p) = icmp::Packet::new_checked(data) {
        black_box((p.quoted_packet().map(<[u8]>::len), p.quoted_ip_header()));
    }
    for option in icmpv6::NdOptionsIter::new(data) {
        black_box(&option);
    }
    if let Ok(p) = arp::Packet::new_checked(data) {
        black_box(p.target_proto_addr());
    }
    if let Ok(p) = carp::Header::new_checked(data) {
        black_box(p.verify_checksum());
    }
    if let Ok(p) = pfsync::Header::new_checked(data) {
        black_box(p.sections().len());
    }
    let _ = black_box(parse_quoted(data, false));
    let _ = black_box(parse_quoted(data, true));
}
