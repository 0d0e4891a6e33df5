//! The codec: TV4, sizes, a frame written by hand from the §3.4 tables, round trips, OpenBSD's
//! section rules, and arbitrary bytes.

use std::net::{IpAddr, Ipv4Addr};

use rampart_conf::MacAddr;
use rampart_dataplane::state::key::icmp_ports;
use rampart_dataplane::state::tcp::{tcps, Peer};
use rampart_dataplane::state::{
    State, StateKey, Timeout, COVER_IN, COVER_OUT, STATE_INITIATOR_IS_1, STATE_LOG, STATE_OUTBOUND,
};

use super::{hex, ms, table, tcp_state, udp_state, Rng, T0};
use crate::pfsync::convert::{Conversion, ImportError};
use crate::pfsync::wire::{
    self, action, parse, Bus, Clr, FrameBuilder, FrameError, IfName, KeyMsg, Message, PeerMsg,
    ScrubMsg, SectionError, StateId, StateMsg, Tdb, UpdC, AF_INET, AF_INET6, BUS_END, BUS_START,
    PF_IN, PF_OUT,
};
use crate::pfsync::Datagram;

/// protocols.md §6.1 TV4: the bulk request, payload and IPv4 header.
const TV4_PAYLOAD: &str = "06 00 00 24 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 \
                           05 03 00 01 00 00 00 00 00 00 00 00 00 00 00 00";
const TV4_IP: &str = "45 10 00 38 ab cd 40 00 ff f0 e4 06 0a 00 00 01 e0 00 00 f0";

#[test]
fn tv4_bulk_request_is_byte_exact() {
    let payload = wire::bulk_request();
    assert_eq!(payload, hex(TV4_PAYLOAD));
    let datagram = Datagram {
        dst: Ipv4Addr::new(224, 0, 0, 240),
        payload,
    };
    let mut packet = hex(TV4_IP);
    packet.extend_from_slice(&hex(TV4_PAYLOAD));
    assert_eq!(
        datagram.ip_packet(Ipv4Addr::new(10, 0, 0, 1), 0xabcd),
        packet
    );
    assert_eq!(
        datagram.group_mac(),
        Some(MacAddr([0x01, 0x00, 0x5e, 0x00, 0x00, 0xf0]))
    );
    let frame = datagram.ethernet_frame(
        Ipv4Addr::new(10, 0, 0, 1),
        MacAddr([2, 0, 0, 0, 0, 1]),
        datagram.group_mac().unwrap(),
        0xabcd,
    );
    assert_eq!(&frame[14..], &packet[..]);
    assert_eq!(&frame[12..14], &[0x08, 0x00]);

    // And it decodes to one UPD_REQ(0, 0).
    let parsed = parse(&datagram.payload).unwrap();
    let sections: Vec<_> = parsed.sections().map(Result::unwrap).collect();
    assert_eq!(sections.len(), 1);
    assert_eq!(sections[0].action(), action::UPD_REQ);
    let messages: Vec<_> = sections[0].messages().collect();
    assert_eq!(messages, vec![Message::UpdReq(StateId::BULK_REQUEST)]);
}

#[test]
fn message_sizes_match_openbsd() {
    assert_eq!(StateMsg::LEN, 264);
    assert_eq!(PeerMsg::LEN, 32);
    assert_eq!(KeyMsg::LEN, 40);
    assert_eq!(UpdC::LEN, 84);
    assert_eq!(Tdb::LEN, 52);
    assert_eq!(Clr::LEN, 20);
    assert_eq!(Bus::LEN, 12);
    assert_eq!(StateId::LEN, 12);
    assert_eq!(ScrubMsg::LEN, 8);
    assert_eq!(StateMsg::default().to_bytes().len(), 264);
    assert_eq!(UpdC::default().to_bytes().len(), 84);
    assert_eq!(Tdb::default().to_bytes().len(), 52);
    // Header 20, subheader 4.
    assert_eq!(wire::encode(&[]).len(), 20);
    assert_eq!(
        wire::encode(&[Message::DelC(StateId::new(1, 2))]).len(),
        20 + 4 + 12
    );
    // Subheader lengths are in 32-bit words.
    for (a, words) in [
        (action::CLR, 5),
        (action::INS_ACK, 3),
        (action::UPD_C, 21),
        (action::UPD_REQ, 3),
        (action::DEL, 66),
        (action::DEL_C, 3),
        (action::BUS, 3),
        (action::INS, 66),
        (action::UPD, 66),
        (action::TDB, 13),
    ] {
        assert_eq!(
            action::message_len(a),
            Some(words * 4),
            "{}",
            action::name(a)
        );
    }
    for deprecated in [
        action::OINS,
        action::OUPD,
        action::INS_F,
        action::DEL_F,
        action::OTDB,
        action::EOF,
        16,
        255,
    ] {
        assert_eq!(action::message_len(deprecated), None);
    }
}

/// Writes `bytes` at `at` in `buf`.
fn put(buf: &mut [u8], at: usize, bytes: &[u8]) {
    buf[at..at + bytes.len()].copy_from_slice(bytes);
}

/// A `pfsync_state` written field by field from the §3.4 table, without the encoder.
fn hand_built_state() -> Vec<u8> {
    let mut s = vec![0u8; 264];
    put(&mut s, 0, &[1, 2, 3, 4, 5, 6, 7, 8]); // id
    put(&mut s, 8, b"em0"); // ifname
    for key in [24, 64] {
        put(&mut s, key, &[192, 0, 2, 1]); // addr[0]
        put(&mut s, key + 16, &[198, 51, 100, 7]); // addr[1]
        put(&mut s, key + 32, &[0x9c, 0x40]); // port[0] 40000
        put(&mut s, key + 34, &[0x00, 0x50]); // port[1] 80
        put(&mut s, key + 36, &[0, 0]); // rdomain
        s[key + 38] = 2; // af
    }
    // src peer @104: scrub, seqlo, seqhi, seqdiff, max_win, mss, state, wscale.
    put(&mut s, 104, &[0x00, 0x01, 64, 0x01, 0x11, 0x22, 0x33, 0x44]);
    put(&mut s, 112, &[0x10, 0, 0, 0]);
    put(&mut s, 116, &[0x10, 0x01, 0, 0]);
    put(&mut s, 124, &[0xff, 0xff]);
    put(&mut s, 126, &[0x05, 0xb4]);
    s[128] = 4;
    s[129] = 0x87;
    // dst peer @136.
    put(&mut s, 144, &[0x20, 0, 0, 0]);
    put(&mut s, 148, &[0x20, 0x02, 0, 0]);
    put(&mut s, 156, &[0x01, 0x00]);
    s[160] = 4;
    s[161] = 0x82;
    put(&mut s, 184, &[0, 0, 0, 3]); // rule
    put(&mut s, 188, &[0xff; 4]); // anchor
    put(&mut s, 192, &[0xff; 4]); // nat_rule
    put(&mut s, 196, &[0, 0, 0, 60]); // creation: 60 s old
    put(&mut s, 200, &[0, 1, 0x51, 0x80]); // expire: 86400 s left
    put(&mut s, 204, &[0, 0, 0, 0, 0, 0, 0, 10]); // packets[0]
    put(&mut s, 212, &[0, 0, 0, 1, 0, 0, 0, 2]); // packets[1]: hi 1, lo 2
    put(&mut s, 220, &[0, 0, 0, 0, 0, 0, 0x03, 0xe8]); // bytes[0]
    put(&mut s, 228, &[0, 0, 0, 0, 0, 0, 0x07, 0xd0]); // bytes[1]
    put(&mut s, 236, &[0xde, 0xad, 0xbe, 0xef]); // creatorid
    put(&mut s, 240, &[0xff; 4]); // rtableid[0] = -1
    put(&mut s, 244, &[0, 0, 0, 0]); // rtableid[1] = 0
    s[250] = 2; // af
    s[251] = 6; // proto
    s[252] = 1; // direction: in
    s[253] = 1; // log
    s[255] = 2; // timeout: tcp.established
    put(&mut s, 260, &[0x00, 0x10]); // state_flags: ACK
    s
}

#[test]
fn hand_built_frame_decodes_field_by_field() {
    let state = hand_built_state();
    let mut frame = Vec::new();
    frame.extend_from_slice(&[6, 0, 0, 0]);
    frame.extend_from_slice(&[0; 16]);
    // INS, 66 words, one message.
    frame.extend_from_slice(&[13, 66, 0, 1]);
    frame.extend_from_slice(&state);
    // UPD_C (21 words), one: id, src peer, dst peer, creatorid, expire, timeout, flags.
    frame.extend_from_slice(&[4, 21, 0, 1]);
    let mut upd = vec![0u8; 84];
    put(&mut upd, 0, &[0, 0, 0, 0, 0, 0, 0x12, 0x34]);
    put(&mut upd, 8 + 8, &[0, 0, 0x27, 0x10]); // src.seqlo 10000
    upd[8 + 24] = 4;
    put(&mut upd, 40 + 8, &[0, 0, 0x4e, 0x20]); // dst.seqlo 20000
    upd[40 + 24] = 9;
    put(&mut upd, 72, &[0, 0, 0, 0x0b]); // creatorid 11
    upd[80] = 4; // tcp.finwait
    frame.extend_from_slice(&upd);
    // DEL_C (3 words), two.
    frame.extend_from_slice(&[7, 3, 0, 2]);
    frame.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0x0a]);
    frame.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0x0a]);
    // BUS (3 words): creatorid, endtime, status END.
    frame.extend_from_slice(&[10, 3, 0, 1, 0, 0, 0, 0x0a, 0, 0, 0, 0, 2, 0, 0, 0]);
    // CLR (5 words): ifname "" and creatorid 10.
    frame.extend_from_slice(&[0, 5, 0, 1]);
    frame.extend_from_slice(&[0; 16]);
    frame.extend_from_slice(&[0, 0, 0, 0x0a]);
    let len = frame.len() as u16;
    put(&mut frame, 2, &len.to_be_bytes());

    let parsed = parse(&frame).unwrap();
    assert_eq!(parsed.len(), frame.len());
    let messages: Vec<Message> = parsed
        .sections()
        .map(Result::unwrap)
        .flat_map(|s| s.messages().collect::<Vec<_>>())
        .collect();
    assert_eq!(messages.len(), 6);

    let Message::Ins(ins) = &messages[0] else {
        panic!("{:?}", messages[0]);
    };
    assert_eq!(ins.id, 0x0102_0304_0506_0708);
    assert_eq!(ins.ifname.as_str(), Some("em0"));
    for key in &ins.key {
        assert_eq!(&key.addr[0][..4], &[192, 0, 2, 1]);
        assert_eq!(key.addr[0][4..], [0; 12]);
        assert_eq!(&key.addr[1][..4], &[198, 51, 100, 7]);
        assert_eq!(key.port, [40000, 80]);
        assert_eq!((key.rdomain, key.af), (0, AF_INET));
    }
    assert_eq!(
        ins.src,
        PeerMsg {
            scrub: ScrubMsg {
                flags: 1,
                ttl: 64,
                scrub_flag: 1,
                ts_mod: 0x1122_3344
            },
            seqlo: 0x1000_0000,
            seqhi: 0x1001_0000,
            seqdiff: 0,
            max_win: 0xffff,
            mss: 1460,
            state: 4,
            wscale: 0x87,
        }
    );
    assert_eq!(
        (
            ins.dst.seqlo,
            ins.dst.seqhi,
            ins.dst.max_win,
            ins.dst.state,
            ins.dst.wscale
        ),
        (0x2000_0000, 0x2002_0000, 256, 4, 0x82)
    );
    assert_eq!(
        (ins.rule, ins.anchor, ins.nat_rule),
        (3, u32::MAX, u32::MAX)
    );
    assert_eq!((ins.creation, ins.expire), (60, 86400));
    assert_eq!(ins.packets, [10, 0x1_0000_0002]);
    assert_eq!(ins.bytes, [1000, 2000]);
    assert_eq!(ins.creatorid, 0xdead_beef);
    assert_eq!(ins.rtableid, [-1, 0]);
    assert_eq!(
        (ins.af, ins.proto, ins.direction, ins.log, ins.timeout),
        (AF_INET, 6, PF_IN, 1, 2)
    );
    assert_eq!(ins.state_flags, wire::state_flags::ACK);
    // Encoding the decoded message gives back the very bytes.
    assert_eq!(&ins.to_bytes()[..], &state[..]);

    assert_eq!(
        messages[1],
        Message::UpdC(UpdC {
            id: 0x1234,
            src: PeerMsg {
                seqlo: 10000,
                state: 4,
                ..PeerMsg::default()
            },
            dst: PeerMsg {
                seqlo: 20000,
                state: 9,
                ..PeerMsg::default()
            },
            creatorid: 11,
            expire: 0,
            timeout: 4,
            state_flags: 0,
        })
    );
    assert_eq!(messages[2], Message::DelC(StateId::new(1, 10)));
    assert_eq!(messages[3], Message::DelC(StateId::new(2, 10)));
    assert_eq!(
        messages[4],
        Message::Bus(Bus {
            creatorid: 10,
            endtime: 0,
            status: BUS_END
        })
    );
    assert_eq!(
        messages[5],
        Message::Clr(Clr {
            ifname: IfName::EMPTY,
            creatorid: 10
        })
    );
    // The whole frame re-encodes byte for byte.
    assert_eq!(wire::encode(&messages), frame);

    // As a rampart state: inbound, initiator 192.0.2.1:40000 in slot 0.
    let timeouts = *table(1, 1000).timeouts();
    let cx = Conversion {
        now_ms: ms(T0),
        timeouts: &timeouts,
        state_count: 0,
        interfaces: &["lan".to_string(), "em0".to_string()],
        default_iface: 0,
    };
    let state = ins.to_state(&cx).unwrap();
    let client: IpAddr = "192.0.2.1".parse().unwrap();
    let server: IpAddr = "198.51.100.7".parse().unwrap();
    let (key, client_first) = StateKey::new(6, client, 40000, server, 80);
    assert_eq!(state.key, key);
    assert_eq!(state.initiator(), u8::from(!client_first));
    assert_eq!(state.flags & STATE_OUTBOUND, 0);
    assert_ne!(state.flags & STATE_LOG, 0);
    assert_eq!(state.covers, COVER_IN);
    assert_eq!(state.peers[0].seqlo, 0x1000_0000);
    assert_eq!(state.peers[1].state, tcps::ESTABLISHED);
    assert_eq!(
        (state.id, state.creator),
        (0x0102_0304_0506_0708, 0xdead_beef)
    );
    assert_eq!(state.timeout, Timeout::TcpEstablished);
    assert_eq!(state.created_s, 1000 - 60);
    assert_eq!(state.last_ms, ms(T0), "86400 s left of 86400: active now");
    assert_eq!(state.iface, 1, "em0 is a local interface here");
    assert_eq!(state.rule, 3);
}

#[test]
fn every_message_round_trips() {
    let mut rng = Rng::new(7);
    for _ in 0..200 {
        let mut peer = || PeerMsg {
            scrub: ScrubMsg {
                flags: rng.next_u64() as u16,
                ttl: rng.byte(),
                scrub_flag: rng.byte(),
                ts_mod: rng.next_u64() as u32,
            },
            seqlo: rng.next_u64() as u32,
            seqhi: rng.next_u64() as u32,
            seqdiff: rng.next_u64() as u32,
            max_win: rng.next_u64() as u16,
            mss: rng.next_u64() as u16,
            state: rng.byte(),
            wscale: rng.byte(),
        };
        let (src, dst) = (peer(), peer());
        let mut key = || KeyMsg {
            addr: [rng.bytes(), rng.bytes()],
            port: [rng.next_u64() as u16, rng.next_u64() as u16],
            rdomain: rng.next_u64() as u16,
            af: rng.byte(),
        };
        let keys = [key(), key()];
        let state = StateMsg {
            id: rng.next_u64(),
            ifname: IfName(rng.bytes()),
            key: keys,
            src,
            dst,
            rt_addr: rng.bytes(),
            rule: rng.next_u64() as u32,
            anchor: rng.next_u64() as u32,
            nat_rule: rng.next_u64() as u32,
            creation: rng.next_u64() as u32,
            expire: rng.next_u64() as u32,
            packets: [rng.next_u64(), rng.next_u64()],
            bytes: [rng.next_u64(), rng.next_u64()],
            creatorid: rng.next_u64() as u32,
            rtableid: [rng.next_u64() as i32, rng.next_u64() as i32],
            max_mss: rng.next_u64() as u16,
            af: rng.byte(),
            proto: rng.byte(),
            direction: rng.byte(),
            log: rng.byte(),
            rt: rng.byte(),
            timeout: rng.byte(),
            sync_flags: rng.byte(),
            updates: rng.byte(),
            min_ttl: rng.byte(),
            set_tos: rng.byte(),
            state_flags: rng.next_u64() as u16,
            set_prio: [rng.byte(), rng.byte()],
        };
        let id = StateId::new(rng.next_u64(), rng.next_u64() as u32);
        let messages = vec![
            Message::Clr(Clr {
                ifname: IfName(rng.bytes()),
                creatorid: rng.next_u64() as u32,
            }),
            Message::InsAck(id),
            Message::UpdC(UpdC {
                id: rng.next_u64(),
                src,
                dst,
                creatorid: rng.next_u64() as u32,
                expire: rng.next_u64() as u32,
                timeout: rng.byte(),
                state_flags: rng.byte(),
            }),
            Message::UpdReq(id),
            Message::Del(Box::new(state)),
            Message::DelC(id),
            Message::Bus(Bus {
                creatorid: rng.next_u64() as u32,
                endtime: rng.next_u64() as u32,
                status: rng.byte(),
            }),
            Message::Tdb(Tdb {
                spi: rng.next_u64() as u32,
                dst: rng.bytes(),
                rpl: rng.next_u64(),
                cur_bytes: rng.next_u64(),
                sproto: rng.byte(),
                updates: rng.byte(),
                rdomain: rng.next_u64() as u16,
            }),
            Message::Ins(Box::new(state)),
            Message::Upd(Box::new(state)),
        ];
        // Each alone, and all in one frame (one section per action).
        for message in &messages {
            let frame = wire::encode(std::slice::from_ref(message));
            let back: Vec<Message> = parse(&frame)
                .unwrap()
                .sections()
                .flat_map(|s| s.unwrap().messages().collect::<Vec<_>>())
                .collect();
            assert_eq!(back, vec![message.clone()]);
            let mut bytes = Vec::new();
            message.write(&mut bytes);
            assert_eq!(bytes.len(), message.encoded_len());
            assert_eq!(
                Message::decode(message.action(), &bytes).as_ref(),
                Some(message)
            );
        }
        let frame = wire::encode(&messages);
        let back: Vec<Message> = parse(&frame)
            .unwrap()
            .sections()
            .flat_map(|s| s.unwrap().messages().collect::<Vec<_>>())
            .collect();
        assert_eq!(back, messages);
    }
}

#[test]
fn arbitrary_bytes_reencode_exactly_except_padding() {
    let mut rng = Rng::new(11);
    for _ in 0..500 {
        let mut bytes: [u8; 264] = rng.bytes();
        // Padding OpenBSD leaves zero: each key's last byte, each peer's last six bytes.
        for at in [63, 103] {
            bytes[at] = 0;
        }
        for peer in [104, 136] {
            bytes[peer + 26..peer + 32].fill(0);
        }
        let state = StateMsg::from_bytes(&bytes).unwrap();
        assert_eq!(state.to_bytes(), bytes);

        let mut upd: [u8; 84] = rng.bytes();
        for peer in [8, 40] {
            upd[peer + 26..peer + 32].fill(0);
        }
        upd[82..84].fill(0);
        assert_eq!(UpdC::from_bytes(&upd).unwrap().to_bytes(), upd);

        let mut bus: [u8; 12] = rng.bytes();
        bus[9..].fill(0);
        assert_eq!(Bus::from_bytes(&bus).unwrap().to_bytes(), bus);
        for n in [12, 20, 52] {
            let raw: Vec<u8> = (0..n).map(|_| rng.byte()).collect();
            let back = match n {
                12 => StateId::from_bytes(&raw).unwrap().to_bytes().to_vec(),
                20 => Clr::from_bytes(&raw).unwrap().to_bytes().to_vec(),
                _ => Tdb::from_bytes(&raw).unwrap().to_bytes().to_vec(),
            };
            assert_eq!(back, raw);
        }
    }
    // Too short: refused, not read past the end.
    assert_eq!(StateMsg::from_bytes(&[0; 263]), None);
    assert_eq!(UpdC::from_bytes(&[0; 83]), None);
    assert_eq!(StateId::from_bytes(&[0; 11]), None);
}

/// A frame from raw sections.
fn frame_of(sections: &[&[u8]]) -> Vec<u8> {
    let mut frame = vec![6, 0, 0, 0];
    frame.extend_from_slice(&[0; 16]);
    for s in sections {
        frame.extend_from_slice(s);
    }
    let len = frame.len() as u16;
    put(&mut frame, 2, &len.to_be_bytes());
    frame
}

fn del_c(id: u8) -> Vec<u8> {
    let mut s = vec![7, 3, 0, 1];
    s.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, id, 0, 0, 0, 1]);
    s
}

#[test]
fn sections_follow_openbsd_rules() {
    type Outcome = Vec<Result<(u8, bool, Vec<Message>), SectionError>>;
    let outcome = |frame: &[u8]| -> Outcome {
        parse(frame)
            .unwrap()
            .sections()
            .map(|s| s.map(|s| (s.action(), s.is_handled(), s.messages().collect())))
            .collect()
    };
    // An unknown action with a length and count is skipped by its stride.
    let unknown = [200u8, 2, 0, 1, 9, 9, 9, 9, 9, 9, 9, 9];
    assert_eq!(
        outcome(&frame_of(&[&unknown, &del_c(5)])),
        vec![
            Ok((200, false, vec![])),
            Ok((action::DEL_C, true, vec![Message::DelC(StateId::new(5, 1))]))
        ]
    );
    // …but not without a count or a length: the rest of the frame is abandoned.
    for bad in [[200u8, 2, 0, 0], [200u8, 0, 0, 1]] {
        assert_eq!(
            outcome(&frame_of(&[&bad, &del_c(5)])),
            vec![Err(SectionError::BadAction { action: 200 })]
        );
    }
    // A known action whose stride is shorter than its message is skipped likewise.
    let short_upd_c = [4u8, 3, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    assert_eq!(
        outcome(&frame_of(&[&short_upd_c, &del_c(6)]))[0],
        Ok((action::UPD_C, false, vec![]))
    );
    assert_eq!(
        outcome(&frame_of(&[&[4u8, 3, 0, 0], &del_c(6)])),
        vec![Err(SectionError::BadAction {
            action: action::UPD_C
        })]
    );
    // Deprecated actions are skipped even when empty (old frames end with EOF).
    assert_eq!(
        outcome(&frame_of(&[&del_c(7), &[action::EOF, 0, 0, 0]])),
        vec![
            Ok((action::DEL_C, true, vec![Message::DelC(StateId::new(7, 1))])),
            Ok((action::EOF, false, vec![]))
        ]
    );
    // A newer peer's longer messages: the stride is honoured, the extra bytes ignored.
    let mut long = vec![7u8, 4, 0, 2];
    long.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0xee, 0xee, 0xee, 0xee]);
    long.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 1, 0xee, 0xee, 0xee, 0xee]);
    assert_eq!(
        outcome(&frame_of(&[&long])),
        vec![Ok((
            action::DEL_C,
            true,
            vec![
                Message::DelC(StateId::new(1, 1)),
                Message::DelC(StateId::new(2, 1))
            ]
        ))]
    );
    // A count running past the frame.
    let mut overrun = del_c(1);
    overrun[3] = 2;
    assert_eq!(
        outcome(&frame_of(&[&overrun])),
        vec![Err(SectionError::BadLength {
            action: action::DEL_C
        })]
    );
    // Fewer than 4 trailing bytes are ignored.
    assert_eq!(outcome(&frame_of(&[&del_c(1), &[1, 2, 3]])).len(), 1);

    // Frame-level checks, in OpenBSD's order.
    let good = frame_of(&[&del_c(1)]);
    assert_eq!(parse(&good[..19]).unwrap_err(), FrameError::Short);
    let mut v5 = good.clone();
    v5[0] = 5;
    assert_eq!(parse(&v5).unwrap_err(), FrameError::BadVersion(5));
    assert_eq!(
        parse(&good[..good.len() - 1]).unwrap_err(),
        FrameError::BadLength
    );
    let mut trailing = good.clone();
    trailing.extend_from_slice(&[0xff; 7]);
    assert_eq!(parse(&trailing).unwrap().sections().count(), 1);
}

#[test]
fn frame_builder_respects_the_mtu_and_merges_sections() {
    let state = Message::Upd(Box::default());
    let mut builder = FrameBuilder::new(1500);
    let mut n = 0;
    while builder.push(&state) {
        n += 1;
    }
    // 20 (IP) + 20 + 4 + 5 × 264 = 1364; a sixth would make 1628.
    assert_eq!(n, 5);
    assert!(builder.push(&Message::DelC(StateId::new(1, 1))));
    let frame = builder.finish();
    assert_eq!(frame.len(), 20 + 4 + 5 * 264 + 4 + 12);
    let sections: Vec<_> = parse(&frame)
        .unwrap()
        .sections()
        .map(Result::unwrap)
        .collect();
    assert_eq!(sections.len(), 2);
    assert_eq!(
        (sections[0].action(), sections[0].count()),
        (action::UPD, 5)
    );
    // An empty frame takes a message even past a tiny MTU.
    let mut tiny = FrameBuilder::new(50);
    assert!(tiny.push(&state));
    assert!(!tiny.push(&state));
}

fn conversion(timeouts: &rampart_dataplane::state::TimeoutTable) -> Conversion<'_> {
    Conversion {
        now_ms: ms(T0),
        timeouts,
        state_count: 10,
        interfaces: &[],
        default_iface: 3,
    }
}

#[test]
fn states_convert_both_ways() {
    let t = table(1, 1000);
    let timeouts = *t.timeouts();
    let cx = conversion(&timeouts);
    let mut icmp = {
        let a: IpAddr = "192.0.2.9".parse().unwrap();
        let b: IpAddr = "192.0.2.1".parse().unwrap();
        let (key, first) = StateKey::new(1, a, 0x4242, b, 0x4242);
        State {
            key,
            peers: [Peer::default(); 2],
            timeout: Timeout::IcmpFirst,
            covers: COVER_IN,
            flags: if first { 0 } else { STATE_INITIATOR_IS_1 },
            ..tcp_state(0, T0)
        }
    };
    icmp.last_ms = ms(T0) - 3000;
    let mut cases = vec![
        tcp_state(1, T0),
        tcp_state(0xffff, T0),
        udp_state(3, T0),
        icmp,
    ];
    // Active 5 s ago, a whole number of seconds, so `expire` is exact.
    cases[1].last_ms = ms(T0) - 5000;
    cases[1].flags |= STATE_OUTBOUND | STATE_LOG;
    cases[1].covers = COVER_OUT;
    for (n, mut state) in cases.into_iter().enumerate() {
        state.id = 0x1000 + n as u64;
        state.creator = 0xc0ffee;
        state.iface = 3;
        let msg = StateMsg::from_state(&state, &cx);
        // pf's layout: the initiator in slot sidx, direction, rtableid, "all".
        let outbound = state.flags & STATE_OUTBOUND != 0;
        assert_eq!(msg.direction, if outbound { PF_OUT } else { PF_IN });
        assert_eq!(msg.key[0], msg.key[1]);
        assert_eq!(msg.ifname, IfName::ALL);
        assert_eq!(msg.rtableid, if outbound { [0, -1] } else { [-1, 0] });
        assert_eq!((msg.anchor, msg.nat_rule), (u32::MAX, u32::MAX));
        assert_eq!(
            msg.af,
            if state.key.is_ipv4() {
                AF_INET
            } else {
                AF_INET6
            }
        );
        let init = if state.initiator() == 0 {
            state.key.endpoints().0
        } else {
            state.key.endpoints().1
        };
        assert_eq!(msg.key[0].port[usize::from(outbound)], init.1);
        assert_eq!(msg.creation, 1000 - state.created_s);
        let back = msg.to_state(&cx).unwrap();
        assert_eq!(back, state, "case {n}");
        // And through the bytes.
        let bytes = msg.to_bytes();
        assert_eq!(
            StateMsg::from_bytes(&bytes).unwrap().to_state(&cx),
            Ok(state)
        );
    }
    // ICMP: the identifier on the request's side, the echo type on the other, as pf keys
    // echo states; and what comes back is the key a worker builds for that echo.
    let client: IpAddr = "192.0.2.9".parse().unwrap();
    let server: IpAddr = "192.0.2.1".parse().unwrap();
    let (sport, dport) = icmp_ports(false, 8, Some(7));
    let (echo_key, client_first) = StateKey::new(1, client, sport, server, dport);
    let echo = State {
        key: echo_key,
        peers: [Peer::default(); 2],
        timeout: Timeout::IcmpFirst,
        id: 0x2000,
        creator: 0xc0ffee,
        flags: if client_first {
            0
        } else {
            STATE_INITIATOR_IS_1
        },
        ..tcp_state(0, T0)
    };
    let icmp_msg = StateMsg::from_state(&echo, &cx);
    assert_eq!(icmp_msg.direction, PF_IN);
    assert_eq!(
        icmp_msg.key[0].port,
        [7, 8],
        "id at sidx, ICMP_ECHO at didx"
    );
    let back = icmp_msg.to_state(&cx).unwrap();
    let (reply_sport, reply_dport) = icmp_ports(false, 0, Some(7));
    assert_eq!(
        back.key,
        StateKey::new(1, server, reply_sport, client, reply_dport).0,
        "the reply finds the imported state"
    );
}

#[test]
fn states_rampart_cannot_represent_are_refused() {
    let t = table(1, 1000);
    let timeouts = *t.timeouts();
    let cx = conversion(&timeouts);
    let mut state = tcp_state(1, T0);
    state.id = 9;
    state.creator = 9;
    let good = StateMsg::from_state(&state, &cx);
    assert!(good.to_state(&cx).is_ok());
    type Mutation = Box<dyn Fn(&mut StateMsg)>;
    let cases: Vec<(Mutation, ImportError)> = vec![
        (Box::new(|m| m.creatorid = 0), ImportError::ZeroCreator),
        (Box::new(|m| m.id = 0), ImportError::ZeroId),
        (Box::new(|m| m.af = 0), ImportError::NoAddressFamily),
        (
            Box::new(|m| m.af = 10),
            ImportError::BadValue("address family"),
        ),
        (
            Box::new(|m| m.timeout = 20),
            ImportError::BadValue("timeout"),
        ),
        (Box::new(|m| m.timeout = 14), ImportError::Timeout(14)),
        (
            Box::new(|m| m.direction = 3),
            ImportError::BadValue("direction"),
        ),
        (
            Box::new(|m| m.direction = 0),
            ImportError::BadValue("direction"),
        ),
        (
            Box::new(|m| m.src.state = 13),
            ImportError::BadValue("peer state"),
        ),
        (Box::new(|m| m.src.state = 11), ImportError::Synproxy),
        (Box::new(|m| m.dst.seqdiff = 5), ImportError::Modulated),
        (Box::new(|m| m.key[1].port[0] ^= 1), ImportError::Translated),
        (
            Box::new(|m| m.key[1].af = AF_INET6),
            ImportError::Translated,
        ),
        (
            Box::new(|m| {
                m.key[0].rdomain = 3;
                m.key[1].rdomain = 3;
            }),
            ImportError::Rdomain(3),
        ),
    ];
    for (mutate, expected) in cases {
        let mut m = good;
        mutate(&mut m);
        assert_eq!(m.to_state(&cx), Err(expected));
    }
    // A UDP peer beyond MULTIPLE.
    let mut udp = udp_state(1, T0);
    udp.id = 1;
    udp.creator = 1;
    let mut m = StateMsg::from_state(&udp, &cx);
    m.dst.state = 5;
    assert_eq!(m.to_state(&cx), Err(ImportError::PeerState(5)));
}

/// Random frames and mutations of real ones: the decoder, the conversion and the engine
/// must never panic.
#[test]
fn arbitrary_bytes_never_panic() {
    let t = table(1, 1000);
    let timeouts = *t.timeouts();
    let cx = conversion(&timeouts);
    let mut engine = crate::pfsync::PfsyncEngine::new(crate::pfsync::PfsyncConfig::new(1));
    let mut rng = Rng::new(42);

    // Seeds: frames of every kind.
    let mut state = tcp_state(1, T0);
    state.id = 5;
    state.creator = 7;
    let msg = StateMsg::from_state(&state, &cx);
    let seeds = [
        wire::encode(&[
            Message::Ins(Box::new(msg)),
            Message::Upd(Box::new(msg)),
            Message::Del(Box::new(msg)),
        ]),
        wire::encode(&[
            Message::UpdC(UpdC {
                id: 5,
                creatorid: 7,
                timeout: 2,
                ..UpdC::default()
            }),
            Message::DelC(StateId::new(5, 7)),
            Message::InsAck(StateId::new(5, 7)),
            Message::UpdReq(StateId::new(5, 7)),
        ]),
        wire::encode(&[
            Message::Bus(Bus {
                creatorid: 7,
                endtime: 0,
                status: BUS_START,
            }),
            Message::Clr(Clr::default()),
            Message::Tdb(Tdb::default()),
        ]),
        wire::bulk_request(),
    ];
    let mut inputs: Vec<Vec<u8>> = Vec::new();
    for _ in 0..4000 {
        let seed = &seeds[rng.below(seeds.len() as u64) as usize];
        let mut frame = seed.clone();
        match rng.below(4) {
            0 => {
                // Flip a few bytes.
                for _ in 0..=rng.below(8) {
                    let at = rng.below(frame.len() as u64) as usize;
                    frame[at] = rng.byte();
                }
            }
            1 => frame.truncate(rng.below(frame.len() as u64 + 1) as usize),
            2 => {
                // Random bytes behind a plausible header.
                let n = rng.below(700) as usize;
                frame = (0..n).map(|_| rng.byte()).collect();
                if frame.len() >= 4 {
                    frame[0] = 6;
                    let len = (frame.len() as u16).to_be_bytes();
                    frame[2] = len[0];
                    frame[3] = len[1];
                }
            }
            _ => {
                // A subheader field rewritten.
                if frame.len() > 23 {
                    frame[20 + rng.below(4) as usize] = rng.byte();
                }
            }
        }
        inputs.push(frame);
    }
    for _ in 0..1000 {
        let n = rng.below(400) as usize;
        inputs.push((0..n).map(|_| rng.byte()).collect());
    }

    let mut now = T0;
    for input in &inputs {
        if let Ok(frame) = parse(input) {
            for section in frame.sections().flatten() {
                for raw in section.raw_messages() {
                    let _ = Message::decode(section.action(), raw);
                }
                for message in section.messages() {
                    if let Message::Ins(s) | Message::Upd(s) | Message::Del(s) = &message {
                        if let Ok(state) = s.to_state(&cx) {
                            let _ = StateMsg::from_state(&state, &cx);
                        }
                    }
                    let mut out = Vec::new();
                    message.write(&mut out);
                }
            }
        }
        now += std::time::Duration::from_millis(7);
        let actions = engine.handle_payload(Ipv4Addr::new(10, 9, 9, 9), input, now, &t);
        for action in actions {
            if let crate::pfsync::Action::Apply(change) = action {
                let _ = crate::pfsync::apply_change(&t, &change, ms(now));
            }
        }
        let _ = engine.poll(now, &t);
        let _ = engine.bulk_next(now, 4, &t);
    }
    assert!(engine.counters().packets_received >= inputs.len() as u64);
}
