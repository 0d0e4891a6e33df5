//! Answers a worker writes in place, reusing the received buffer: ARP replies, neighbour
//! advertisements, echo replies, TCP resets and ICMP unreachables.
//!
//! Each function takes a frame already accepted by `parse_frame` (so its headers are whole)
//! and rewrites it into the answer; `false` means "could not answer" and the caller drops
//! the frame. No allocation: the answer fits the received buffer's room.

use std::net::{IpAddr, Ipv6Addr};

use crate::io::PacketBuf;
use crate::wire::checksum;
use crate::wire::parse::{ParsedFrame, L4};
use crate::wire::{ArpPacket, EthernetFrame, MacAddr};

/// The TTL / hop limit of packets the appliance originates.
pub const OWN_TTL: u8 = 64;

fn eth_reply<B: PacketBuf>(buf: &mut B, own: MacAddr) {
    EthernetFrame::new_unchecked(buf.data_mut()).reply_from(own);
}

/// Turns an ARP request into the reply for `own` (the interface's MAC, or a CARP virtual MAC).
pub fn arp_reply<B: PacketBuf>(buf: &mut B, p: &ParsedFrame, own: MacAddr) -> bool {
    let l3 = p.l3_offset as usize;
    let Some(arp_bytes) = buf.data_mut().get_mut(l3..) else {
        return false;
    };
    let Ok(mut arp) = ArpPacket::new_checked(arp_bytes) else {
        return false;
    };
    arp.make_reply(own);
    eth_reply(buf, own);
    true
}

/// Turns an ICMP / ICMPv6 echo request into the echo reply, from the address it was sent to.
pub fn echo_reply<B: PacketBuf>(buf: &mut B, p: &ParsedFrame, own: MacAddr) -> bool {
    let l3 = p.l3_offset as usize;
    let l4 = p.l4_offset as usize;
    let data = buf.data_mut();
    match (p.src, p.dst) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            // Swap addresses, fresh TTL, recompute the (20–60 byte) header checksum.
            data[l3 + 12..l3 + 16].copy_from_slice(&dst.octets());
            data[l3 + 16..l3 + 20].copy_from_slice(&src.octets());
            data[l3 + 8] = OWN_TTL;
            let ihl = (data[l3] & 0x0f) as usize * 4;
            data[l3 + 10..l3 + 12].copy_from_slice(&[0, 0]);
            let c = checksum::checksum(&data[l3..l3 + ihl]);
            data[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
            // Type 8 → 0: the checksum changes by that word only.
            let old = u16::from_be_bytes([data[l4], data[l4 + 1]]);
            data[l4] = 0;
            let new = u16::from_be_bytes([data[l4], data[l4 + 1]]);
            let ck = u16::from_be_bytes([data[l4 + 2], data[l4 + 3]]);
            data[l4 + 2..l4 + 4].copy_from_slice(&checksum::update_u16(ck, old, new).to_be_bytes());
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            data[l3 + 8..l3 + 24].copy_from_slice(&dst.octets());
            data[l3 + 24..l3 + 40].copy_from_slice(&src.octets());
            data[l3 + 7] = OWN_TTL;
            // 128 → 129; the pseudo-header's sum is the same with the addresses swapped.
            let old = u16::from_be_bytes([data[l4], data[l4 + 1]]);
            data[l4] = 129;
            let new = u16::from_be_bytes([data[l4], data[l4 + 1]]);
            let ck = u16::from_be_bytes([data[l4 + 2], data[l4 + 3]]);
            data[l4 + 2..l4 + 4].copy_from_slice(&checksum::update_u16(ck, old, new).to_be_bytes());
        }
        _ => return false,
    }
    eth_reply(buf, own);
    true
}

/// Turns a neighbour solicitation for `target` into the solicited advertisement from `own`
/// (RFC 4861 §7.2.4: solicited + override, with our link-layer address).
pub fn neighbor_advert<B: PacketBuf>(
    buf: &mut B,
    p: &ParsedFrame,
    target: Ipv6Addr,
    own: MacAddr,
    router: bool,
) -> bool {
    let IpAddr::V6(requester) = p.src else {
        return false;
    };
    if requester.is_unspecified() {
        // Duplicate address detection: answering would need an all-nodes advert; skip.
        return false;
    }
    let l3 = p.l3_offset as usize;
    let l4 = p.l4_offset as usize;
    // ICMPv6 NA: type, code, checksum, flags+reserved (4), target (16), TLLA option (8).
    let len = l4 + 32;
    if !buf.set_frame_len(len) {
        return false;
    }
    let data = buf.data_mut();
    data[l3 + 4..l3 + 6].copy_from_slice(&32u16.to_be_bytes());
    data[l3 + 6] = 58;
    data[l3 + 7] = 255;
    data[l3 + 8..l3 + 24].copy_from_slice(&target.octets());
    data[l3 + 24..l3 + 40].copy_from_slice(&requester.octets());
    let na = &mut data[l4..l4 + 32];
    na[0] = 136;
    na[1] = 0;
    na[2..4].copy_from_slice(&[0, 0]);
    na[4] = if router { 0x80 } else { 0 } | 0x40 | 0x20;
    na[5..8].copy_from_slice(&[0, 0, 0]);
    na[8..24].copy_from_slice(&target.octets());
    na[24] = 2;
    na[25] = 1;
    na[26..32].copy_from_slice(&own.0);
    let pseudo = checksum::pseudo_header_v6(&target, &requester, 58, 32);
    let c = checksum::finish(checksum::add(pseudo, checksum::sum(na)));
    na[2..4].copy_from_slice(&c.to_be_bytes());
    eth_reply(buf, own);
    true
}

/// Turns a TCP segment into the RST pf's `block return` sends back to its sender.
pub fn tcp_reset<B: PacketBuf>(buf: &mut B, p: &ParsedFrame, own: MacAddr) -> bool {
    let L4::Tcp(t) = p.l4 else { return false };
    let flags = t.flags.bits();
    if flags & 0x04 != 0 {
        return false; // never answer a RST
    }
    let (seq, ack, rflags) = if flags & 0x10 != 0 {
        (t.ack, 0, 0x04)
    } else {
        let mut ack = t.seq.wrapping_add(p.payload_len);
        if flags & 0x02 != 0 {
            ack = ack.wrapping_add(1);
        }
        if flags & 0x01 != 0 {
            ack = ack.wrapping_add(1);
        }
        (0, ack, 0x14)
    };
    tcp_answer(buf, p, own, seq, ack, rflags)
}

/// Turns a TCP segment into a bare segment (no payload, no options, window 0) back to its
/// sender, from its destination: pf's `pf_send_tcp(…, pd->dst, pd->src, th_dport, th_sport,
/// seq, ack, flags, …)`, as for `block return`, the challenge ACK and the handshake-mismatch RST.
pub fn tcp_answer<B: PacketBuf>(
    buf: &mut B,
    p: &ParsedFrame,
    own: MacAddr,
    seq: u32,
    ack: u32,
    rflags: u8,
) -> bool {
    let L4::Tcp(t) = p.l4 else { return false };
    let l3 = p.l3_offset as usize;
    let ip_len = if p.src.is_ipv4() { 20 } else { 40 };
    if !buf.set_frame_len(l3 + ip_len + 20) {
        return false;
    }
    let data = buf.data_mut();
    write_ip_header(&mut data[l3..l3 + ip_len], p.dst, p.src, 6, 20);
    let tcp = &mut data[l3 + ip_len..l3 + ip_len + 20];
    tcp[0..2].copy_from_slice(&t.dst_port.to_be_bytes());
    tcp[2..4].copy_from_slice(&t.src_port.to_be_bytes());
    tcp[4..8].copy_from_slice(&seq.to_be_bytes());
    tcp[8..12].copy_from_slice(&ack.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = rflags;
    tcp[14..20].copy_from_slice(&[0; 6]);
    let pseudo = checksum::pseudo_header(&p.dst, &p.src, 6, 20);
    let c = checksum::finish(checksum::add(pseudo, checksum::sum(tcp)));
    tcp[16..18].copy_from_slice(&c.to_be_bytes());
    eth_reply(buf, own);
    true
}

/// Turns a packet into the ICMP (v4 type 3 / v6 type 1) destination unreachable that
/// quotes it: "port unreachable" for UDP, "administratively prohibited" otherwise.
/// Never answers ICMP errors (RFC 1122 §3.2.2).
pub fn icmp_unreachable<B: PacketBuf>(buf: &mut B, p: &ParsedFrame, own: MacAddr) -> bool {
    match p.l4 {
        L4::Icmp(i) | L4::Icmpv6(i) if i.is_error => return false,
        _ => {}
    }
    let l3 = p.l3_offset as usize;
    let udp = p.protocol == 17;
    let (ip_len, icmp_proto, msg_type, code, quote_max) = if p.src.is_ipv4() {
        // The IP header and the first 8 bytes of its payload (RFC 792).
        let ihl = (p.l4_offset - p.l3_offset) as usize;
        (20, 1u8, 3u8, if udp { 3u8 } else { 13u8 }, ihl + 8)
    } else {
        // As much as fits in the minimum IPv6 MTU (RFC 4443 §2.4).
        (40, 58, 1, if udp { 4 } else { 1 }, 1280 - 48)
    };
    let quote_len = (p.l3_len as usize).min(quote_max);
    let new_len = l3 + ip_len + 8 + quote_len;
    if !buf.set_frame_len(new_len.max(buf.data().len())) {
        return false;
    }
    let data = buf.data_mut();
    data.copy_within(l3..l3 + quote_len, l3 + ip_len + 8);
    let icmp_len = 8 + quote_len;
    write_ip_header(
        &mut data[l3..l3 + ip_len],
        p.dst,
        p.src,
        icmp_proto,
        icmp_len as u16,
    );
    let icmp = &mut data[l3 + ip_len..l3 + ip_len + icmp_len];
    icmp[0] = msg_type;
    icmp[1] = code;
    icmp[2..8].copy_from_slice(&[0; 6]);
    let mut s = checksum::sum(icmp);
    if !p.src.is_ipv4() {
        s = checksum::add(
            s,
            checksum::pseudo_header(&p.dst, &p.src, 58, icmp_len as u32),
        );
    }
    icmp[2..4].copy_from_slice(&checksum::finish(s).to_be_bytes());
    buf.set_frame_len(new_len);
    eth_reply(buf, own);
    true
}

/// Writes a fresh IPv4 (20 bytes, DF) or IPv6 (40 bytes) header.
fn write_ip_header(h: &mut [u8], src: IpAddr, dst: IpAddr, proto: u8, payload_len: u16) {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            h[0] = 0x45;
            h[1] = 0;
            h[2..4].copy_from_slice(&(20 + payload_len).to_be_bytes());
            h[4..6].copy_from_slice(&[0, 0]);
            h[6..8].copy_from_slice(&[0x40, 0]);
            h[8] = OWN_TTL;
            h[9] = proto;
            h[10..12].copy_from_slice(&[0, 0]);
            h[12..16].copy_from_slice(&s.octets());
            h[16..20].copy_from_slice(&d.octets());
            let c = checksum::checksum(&h[..20]);
            h[10..12].copy_from_slice(&c.to_be_bytes());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            h[0..4].copy_from_slice(&[0x60, 0, 0, 0]);
            h[4..6].copy_from_slice(&payload_len.to_be_bytes());
            h[6] = proto;
            h[7] = OWN_TTL;
            h[8..24].copy_from_slice(&s.octets());
            h[24..40].copy_from_slice(&d.octets());
        }
        _ => {}
    }
}
