//! The engine on a virtual clock: two nodes over a simulated link.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use rampart_conf::MacAddr;
use rampart_dataplane::state::tcp::{tcps, Peer};
use rampart_dataplane::state::{State, Timeout, COVER_IN, COVER_OUT, STATE_OUTBOUND};

use super::{ms, synced_view, tcp_state, udp_state, Node, Pair, ADDR_A, ADDR_B, T0};
use crate::pfsync::wire::{
    self, action, parse, state_flags, Bus, Clr, IfName, Message, StateMsg, PF_IN, PF_OUT,
};
use crate::pfsync::{
    twin_id, Action, BulkEvent, BulkPhase, Datagram, StateChange, StateId, AUTH_TRAILER_LEN,
    BULK_MAX_TRIES, TWIN_ID_BIT,
};

const SEC: Duration = Duration::from_secs(1);

fn millis(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Every message of every frame, in order.
fn messages(frames: &[Datagram]) -> Vec<Message> {
    frames
        .iter()
        .flat_map(|d| {
            parse(&d.payload)
                .unwrap()
                .sections()
                .flat_map(|s| s.unwrap().messages().collect::<Vec<_>>())
                .collect::<Vec<_>>()
        })
        .collect()
}

fn actions_of(frames: &[Datagram]) -> Vec<u8> {
    messages(frames).iter().map(Message::action).collect()
}

/// Asserts both tables hold the same states (by identity, on the synced fields).
fn assert_tables_agree(pair: &Pair) {
    let a = pair.a.states();
    let b = pair.b.states();
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "the same identities"
    );
    for (id, state) in &a {
        assert_eq!(synced_view(state), synced_view(&b[id]), "state {id}");
        // A merge refreshes a state when it arrives, up to a flush delay after the sender's
        // packet; an import rebuilds it from whole seconds.
        assert!(
            state.last_ms.abs_diff(b[id].last_ms) <= 2000,
            "state {id}: last activity {} vs {}",
            state.last_ms,
            b[id].last_ms
        );
    }
}

#[test]
fn inserts_updates_and_deletes_reach_the_peer() {
    let mut pair = Pair::new();
    let mut now = T0;
    let mut keys = Vec::new();
    for i in 0..60 {
        let state = if i % 3 == 0 {
            udp_state(i, now)
        } else {
            tcp_state(i, now)
        };
        keys.push(pair.a.create(state, now).key);
    }
    now += SEC;
    pair.settle(now);
    assert_eq!(pair.b.table.len(), 60);
    assert_tables_agree(&pair);
    // Learned states keep A's creator id.
    assert!(pair.b.states().keys().all(|id| id.creator == 0xa));
    assert!(actions_of(&pair.a_sent).iter().all(|&a| a == action::INS));

    // Updates: advance the windows and close some connections.
    now += SEC;
    for (i, key) in keys.iter().enumerate().filter(|(i, _)| i % 3 != 0).take(20) {
        pair.a.update(key, now, |s| {
            s.peers[0].seqlo += 5000;
            s.peers[1].seqhi += 7000;
            s.last_ms = ms(now);
            if i % 2 == 0 {
                s.peers[0].state = tcps::FIN_WAIT_2;
                s.peers[1].state = tcps::FIN_WAIT_2;
                s.timeout = Timeout::TcpClosed;
            }
        });
    }
    let sent_before = pair.a_sent.len();
    now += SEC;
    pair.settle(now);
    let update_frames = &pair.a_sent[sent_before..];
    assert!(actions_of(update_frames)
        .iter()
        .all(|&a| a == action::UPD_C));
    assert_eq!(messages(update_frames).len(), 20);
    assert_tables_agree(&pair);

    // Deletes.
    now += SEC;
    for key in &keys[..10] {
        pair.a.delete(key, now);
    }
    now += SEC;
    pair.settle(now);
    assert_eq!(pair.b.table.len(), 50);
    assert_tables_agree(&pair);
    assert_eq!(pair.b.engine.counters().received.get(action::DEL_C), 10);
    assert_eq!(pair.b.engine.known_states(), 50);
}

#[test]
fn an_insert_and_its_updates_leave_as_one_ins() {
    let mut pair = Pair::new();
    let key = pair.a.create(tcp_state(1, T0), T0).key;
    for step in 1..=5u32 {
        pair.a
            .update(&key, T0 + millis(100 * u64::from(step)), |s| {
                s.peers[0].seqlo += 100
            });
    }
    pair.settle(T0 + millis(900));
    assert!(pair.a_sent.is_empty());
    pair.settle(T0 + SEC);
    assert_eq!(pair.a_sent.len(), 1);
    assert_eq!(actions_of(&pair.a_sent), vec![action::INS]);
    // It carries the state as it was when written: all five updates.
    assert_eq!(pair.b.get(&key).unwrap().peers[0].seqlo, 1_001 + 500);
}

#[test]
fn updates_coalesce_into_one_upd_c_per_second() {
    let mut pair = Pair::new();
    let key = pair.a.create(udp_state(1, T0), T0).key;
    pair.settle(T0 + SEC);
    let t = T0 + 10 * SEC;
    for step in 0..10u64 {
        pair.a
            .update(&key, t + millis(50 * step), |s| s.last_ms += 1);
    }
    let before = pair.a_sent.len();
    pair.settle(t + millis(999));
    assert_eq!(pair.a_sent.len(), before);
    pair.settle(t + SEC);
    assert_eq!(actions_of(&pair.a_sent[before..]), vec![action::UPD_C]);
}

#[test]
fn maxupd_flushes_a_busy_tcp_state_at_once() {
    let mut pair = Pair::with(|c| c.maxupd = 4);
    let tcp = pair.a.create(tcp_state(1, T0), T0).key;
    let udp = pair.a.create(udp_state(1, T0), T0).key;
    pair.settle(T0 + SEC);
    let t = T0 + 10 * SEC;
    // The first update queues an UPD_C; each further one counts; the 4th further one flushes.
    pair.a.update(&tcp, t, |s| s.peers[0].seqlo += 1);
    for n in 1..=4 {
        let before = pair.a_sent.len();
        pair.a.update(&tcp, t, |s| s.peers[0].seqlo += 1);
        pair.settle(t);
        let flushed = pair.a_sent.len() > before;
        assert_eq!(flushed, n == 4, "update {n}");
    }
    assert_eq!(pair.b.get(&tcp).unwrap().peers[0].seqlo, 1_001 + 5);
    // UDP states are not counted.
    for _ in 0..20 {
        pair.a.update(&udp, t + SEC, |s| s.last_ms += 1);
    }
    let before = pair.a_sent.len();
    pair.settle(t + SEC);
    assert_eq!(pair.a_sent.len(), before);
    assert_eq!(pair.a.engine.next_timeout(), Some(t + 2 * SEC));

    // A worker that coalesces its events reports several updates at once: the same rule.
    let t = t + 10 * SEC;
    pair.settle(t);
    let state = pair.a.get(&tcp).unwrap();
    pair.a.engine.state_updated_n(&state, 4, t);
    assert_eq!(
        pair.a.engine.next_timeout(),
        Some(t + SEC),
        "1 queues, 3 counted"
    );
    pair.a.engine.state_updated_n(&state, 1, t);
    assert_eq!(
        pair.a.engine.next_timeout(),
        Some(t),
        "the 4th counted flushes"
    );
}

#[test]
fn a_full_packet_goes_at_once_and_packets_fit_the_mtu() {
    let mut pair = Pair::new();
    for i in 0..5 {
        pair.a.create(tcp_state(i, T0), T0);
    }
    // Five INS fit in one packet at MTU 1500: the timer still rules.
    assert_eq!(pair.a.engine.next_timeout(), Some(T0 + SEC));
    pair.a.create(tcp_state(5, T0), T0);
    assert_eq!(pair.a.engine.next_timeout(), Some(T0));
    for i in 6..40 {
        pair.a.create(tcp_state(i, T0), T0);
    }
    pair.settle(T0);
    assert_eq!(pair.a_sent.len(), 8);
    for d in &pair.a_sent {
        assert!(d.payload.len() + wire::IP_HEADER_LEN <= 1500);
        assert_eq!(messages(std::slice::from_ref(d)).len(), 5);
    }
    assert_eq!(pair.b.table.len(), 40);
}

#[test]
fn a_state_the_peer_just_updated_is_sent_at_once() {
    let mut pair = Pair::new();
    let key = pair.a.create(tcp_state(1, T0), T0).key;
    pair.settle(T0 + SEC);
    // A updates; B merges it at t.
    let t = T0 + 10 * SEC;
    pair.a.update(&key, t, |s| {
        s.peers[0].seqlo += 10;
        s.last_ms = ms(t);
    });
    pair.settle(t + SEC);
    // B's own update within 2 s of that goes at once…
    let before = pair.b_sent.len();
    pair.b.update(&key, t + millis(1500), |s| {
        s.peers[1].seqlo += 10;
        s.last_ms = ms(t + millis(1500));
    });
    pair.settle(t + millis(1500));
    assert_eq!(pair.b_sent.len(), before + 1);
    // …later ones wait for the timer.
    let before = pair.b_sent.len();
    pair.b.update(&key, t + 10 * SEC, |s| {
        s.peers[1].seqlo += 10;
        s.last_ms = ms(t + 10 * SEC);
    });
    pair.settle(t + 10 * SEC);
    assert_eq!(pair.b_sent.len(), before);
    pair.settle(t + 11 * SEC);
    assert_eq!(pair.b_sent.len(), before + 1);
    assert_tables_agree(&pair);
}

#[test]
fn a_delete_cancels_a_queued_insert() {
    let mut pair = Pair::new();
    let short_lived = pair.a.create(tcp_state(1, T0), T0).key;
    pair.a.update(&short_lived, T0, |s| s.peers[0].seqlo += 1);
    pair.a.delete(&short_lived, T0 + millis(10));
    pair.settle(T0 + 2 * SEC);
    assert!(pair.a_sent.is_empty(), "INS then DEL: nothing at all");

    // An update then a delete: only the DEL_C.
    let key = pair.a.create(tcp_state(2, T0), T0 + 2 * SEC).key;
    pair.settle(T0 + 3 * SEC);
    pair.a.update(&key, T0 + 4 * SEC, |s| s.peers[0].seqlo += 1);
    pair.a.delete(&key, T0 + 4 * SEC);
    let before = pair.a_sent.len();
    pair.settle(T0 + 5 * SEC);
    assert_eq!(actions_of(&pair.a_sent[before..]), vec![action::DEL_C]);
    assert!(pair.b.table.is_empty());
}

#[test]
fn a_stale_update_never_rolls_a_peer_back() {
    let mut pair = Pair::new();
    let key = pair.a.create(tcp_state(1, T0), T0).key;
    pair.settle(T0 + SEC);
    let t = T0 + 10 * SEC;
    // B saw the initiator move on and close; A saw the responder move on.
    pair.b.update(&key, t, |s| {
        s.peers[0].seqlo += 2000;
        s.peers[0].state = tcps::FIN_WAIT_2;
    });
    pair.a.update(&key, t, |s| s.peers[1].seqlo += 3000);
    let a_before = pair.a.get(&key).unwrap();
    let b_before = pair.b.get(&key).unwrap();
    // A's update reaches B first (B's own queue is not flushed yet).
    let from_a = pair.a.poll(t + SEC);
    assert_eq!(actions_of(&from_a), vec![action::UPD_C]);
    let replies = pair.b.receive(ADDR_A, &from_a[0], t + SEC);
    let b_after = pair.b.get(&key).unwrap();
    assert_eq!(
        b_after.peers[0], b_before.peers[0],
        "the initiator side is not rolled back"
    );
    assert_eq!(
        b_after.peers[1], a_before.peers[1],
        "the responder side is taken"
    );
    assert_eq!(pair.b.engine.counters().stale, 1);
    // B answers at once with its merged view, and A converges without answering back.
    assert_eq!(actions_of(&replies), vec![action::UPD_C]);
    let a_replies = pair.a.receive(ADDR_B, &replies[0], t + SEC);
    assert!(a_replies.is_empty());
    assert_eq!(pair.a.get(&key).unwrap().peers, b_after.peers);
    assert_eq!(pair.a.engine.counters().stale, 0);
    pair.settle(t + 5 * SEC);
    assert_tables_agree(&pair);
    assert_eq!(pair.a.get(&key).unwrap().peers[0].state, tcps::FIN_WAIT_2);
}

#[test]
fn merges_follow_pfsync_upd_tcp() {
    use crate::pfsync::Merge;
    let mut state = tcp_state(1, T0);
    let ours = state.peers;
    let key = state.key;
    let merge = |peers: [Peer; 2]| Merge {
        key,
        id: StateId::new(1, 1),
        peers,
        timeout: Timeout::TcpClosing,
    };
    // Equal states, their seqlo behind on both sides: both stale, nothing refreshed.
    let mut behind = ours;
    behind[0].seqlo -= 1;
    behind[1].seqlo -= 1;
    assert_eq!(merge(behind).apply(&mut state, 5), 2);
    assert_eq!((state.peers, state.last_ms), (ours, ms(T0)));
    assert_eq!(state.timeout, Timeout::TcpEstablished);
    // Their responder ahead in state with a lower seqlo: taken (state decides first).
    let mut ahead = ours;
    ahead[1].state = tcps::CLOSING;
    ahead[1].seqlo -= 100;
    assert_eq!(merge(ahead).apply(&mut state, 5), 0);
    assert_eq!(state.peers[1], ahead[1]);
    assert_eq!((state.last_ms, state.timeout), (5, Timeout::TcpClosing));
    // A lower TCP state never wins, whatever its sequence numbers.
    let mut back = state.peers;
    back[1].state = tcps::ESTABLISHED;
    back[1].seqlo += 1_000_000;
    assert_eq!(merge(back).apply(&mut state, 6), 1);
    assert_eq!(state.peers[1].state, tcps::CLOSING);
    // Sequence numbers compare modulo 2^32.
    let mut wrapped = state.peers;
    wrapped[0].seqlo = state.peers[0].seqlo.wrapping_add(0x8000_0000 - 1);
    assert_eq!(merge(wrapped).apply(&mut state, 7), 0);
    // Non-TCP: only the level counts.
    let mut udp = udp_state(1, T0);
    let mut lower = udp.peers;
    lower[0].state = 1;
    lower[1].state = 2;
    let m = Merge {
        key: udp.key,
        ..merge(lower)
    };
    assert_eq!(m.apply(&mut udp, 9), 1);
    assert_eq!((udp.peers[0].state, udp.peers[1].state), (2, 2));
}

#[test]
fn an_update_for_an_unknown_state_asks_for_it() {
    let mut pair = Pair::new();
    let key = pair.a.create(tcp_state(1, T0), T0).key;
    // B misses the INS.
    let lost = pair.a.poll(T0 + SEC);
    assert_eq!(actions_of(&lost), vec![action::INS]);
    let t = T0 + 5 * SEC;
    pair.a.update(&key, t, |s| s.peers[0].seqlo += 1);
    let upd_c = pair.a.poll(t + SEC);
    let request = pair.b.receive(ADDR_A, &upd_c[0], t + SEC);
    let id = pair.a.states().into_keys().next().unwrap();
    assert_eq!(messages(&request), vec![Message::UpdReq(id)]);
    // A answers at once with the full state.
    let answer = pair.a.receive(ADDR_B, &request[0], t + SEC);
    assert_eq!(actions_of(&answer), vec![action::UPD]);
    pair.b.receive(ADDR_A, &answer[0], t + SEC);
    assert_tables_agree(&pair);
}

/// How a peer's states are turned into messages at T0, as another node would send them.
fn sender_conversion(
    timeouts: &rampart_dataplane::state::TimeoutTable,
) -> crate::pfsync::Conversion<'_> {
    crate::pfsync::Conversion {
        now_ms: ms(T0),
        timeouts,
        state_count: 0,
        interfaces: &[],
        default_iface: 0,
    }
}

#[test]
fn an_ins_asking_for_an_ack_gets_one_at_once() {
    let mut b = Node::new(0xb, ADDR_B, |_| {});
    let mut state = tcp_state(1, T0);
    state.id = 77;
    state.creator = 0xa;
    let timeouts = *b.table.timeouts();
    let cx = sender_conversion(&timeouts);
    let mut msg = StateMsg::from_state(&state, &cx);
    msg.state_flags |= wire::state_flags::ACK;
    let frame = Datagram {
        dst: Ipv4Addr::new(224, 0, 0, 240),
        payload: wire::encode(&[Message::Ins(Box::new(msg))]),
    };
    let replies = b.receive(ADDR_A, &frame, T0);
    assert_eq!(
        messages(&replies),
        vec![Message::InsAck(StateId::new(77, 0xa))]
    );
    assert!(b.get(&state.key).is_some());
    assert_eq!(b.engine.counters().host_id_conflicts, 0);

    // A peer inserting states under our own host id is a misconfiguration worth showing.
    let mut ours = tcp_state(2, T0);
    ours.id = 78;
    ours.creator = 0xb;
    let frame = Datagram {
        dst: frame.dst,
        payload: wire::encode(&[Message::Ins(Box::new(StateMsg::from_state(&ours, &cx)))]),
    };
    b.receive(ADDR_A, &frame, T0);
    assert_eq!(b.engine.counters().host_id_conflicts, 1);
}

#[test]
fn clr_removes_only_that_creators_states() {
    let mut pair = Pair::new();
    for i in 0..10 {
        pair.a.create(tcp_state(i, T0), T0);
    }
    for i in 100..105 {
        pair.b.create(tcp_state(i, T0), T0);
    }
    pair.settle(T0 + SEC);
    assert_eq!((pair.a.table.len(), pair.b.table.len()), (15, 15));
    // A CLR naming an interface B does not have clears nothing.
    let named = Datagram {
        dst: Ipv4Addr::new(224, 0, 0, 240),
        payload: wire::encode(&[Message::Clr(Clr {
            ifname: IfName::new("em9").unwrap(),
            creatorid: 0xa,
        })]),
    };
    pair.b.receive(ADDR_A, &named, T0 + 2 * SEC);
    assert_eq!(pair.b.table.len(), 15);
    // pfctl -F states on A: A's table empties, and its CLR empties A's states on B.
    pair.a.table.flush();
    let clr = pair.a.engine.states_cleared();
    let clr = pair.a.run(clr, T0 + 2 * SEC);
    assert_eq!(
        messages(&clr),
        vec![Message::Clr(Clr {
            ifname: IfName::EMPTY,
            creatorid: 0xa
        })]
    );
    pair.b.receive(ADDR_A, &clr[0], T0 + 2 * SEC);
    assert_eq!(pair.b.table.len(), 5);
    assert!(pair.b.states().keys().all(|id| id.creator == 0xb));
}

#[test]
fn clr_naming_an_interface_clears_only_the_states_on_it() {
    // An OpenBSD peer (creator 0xc) with floating states (ifname "all") and if-bound ones on
    // em0, a name this node has too. pfsync_in_clr matches st->kif: "all" is the floating
    // states, em0 the bound ones.
    let interfaces: Arc<[String]> = Arc::from(vec!["em0".to_string(), "sync".to_string()]);
    let mut b = Node::new(0xb, ADDR_B, |c| {
        c.interfaces = Arc::clone(&interfaces);
        c.default_iface = 1;
    });
    let timeouts = *b.table.timeouts();
    let cx = sender_conversion(&timeouts);
    let ins = |i: u32, ifname: &str| {
        let mut state = tcp_state(i, T0);
        state.id = 1000 + u64::from(i);
        state.creator = 0xc;
        let mut msg = StateMsg::from_state(&state, &cx);
        msg.ifname = IfName::new(ifname).unwrap();
        Message::Ins(Box::new(msg))
    };
    let mut messages_in = Vec::new();
    for i in 0..4 {
        messages_in.push(ins(i, "all"));
    }
    for i in 4..7 {
        messages_in.push(ins(i, "em0"));
    }
    let clr = |ifname: &str| Datagram {
        dst: Ipv4Addr::new(224, 0, 0, 240),
        payload: wire::encode(&[Message::Clr(Clr {
            ifname: IfName::new(ifname).unwrap(),
            creatorid: 0xc,
        })]),
    };
    let frame = Datagram {
        dst: Ipv4Addr::new(224, 0, 0, 240),
        payload: wire::encode(&messages_in),
    };
    b.receive(ADDR_A, &frame, T0);
    assert_eq!(b.table.len(), 7);
    // The sync interface's name is not where the floating states are.
    b.receive(ADDR_A, &clr("sync"), T0);
    assert_eq!(b.table.len(), 7);
    b.receive(ADDR_A, &clr("em0"), T0);
    assert_eq!(b.table.len(), 4, "the three states bound to em0 went");
    b.receive(ADDR_A, &clr("all"), T0);
    assert_eq!(b.table.len(), 0, "then the floating ones");
}

/// `conn` as an OpenBSD peer (creator 0xc) sends one of its two states of it: under `id`, in
/// the direction `outbound` says, and without rampart's coverage bits (the direction says
/// which filter point the state is for).
fn openbsd_state(
    conn: &State,
    id: u64,
    outbound: bool,
    cx: &crate::pfsync::Conversion<'_>,
) -> StateMsg {
    let mut st = conn.clone();
    st.id = id;
    st.creator = 0xc;
    st.covers = 0;
    if outbound {
        st.flags |= STATE_OUTBOUND;
    }
    let mut msg = StateMsg::from_state(&st, cx);
    msg.sync_flags = 0;
    msg
}

#[test]
fn an_openbsd_peers_two_states_of_a_connection_become_one_record() {
    // pf keeps a forwarded connection as two states: in on the ingress interface and out on
    // the egress one, each with its own id. rampart keeps one record covering both points,
    // so after a failover the connection passes both.
    let mut b = Node::new(0xb, ADDR_B, |_| {});
    let timeouts = *b.table.timeouts();
    let cx = sender_conversion(&timeouts);
    let conn = tcp_state(1, T0);
    let state_msg = |id: u64, outbound: bool| openbsd_state(&conn, id, outbound, &cx);
    let send = |b: &mut Node, messages: Vec<Message>| {
        let frame = Datagram {
            dst: Ipv4Addr::new(224, 0, 0, 240),
            payload: wire::encode(&messages),
        };
        b.receive(ADDR_A, &frame, T0);
    };
    send(
        &mut b,
        vec![
            Message::Ins(Box::new(state_msg(100, false))),
            Message::Ins(Box::new(state_msg(101, true))),
        ],
    );
    assert_eq!(b.table.len(), 1, "one record");
    let record = b.get(&conn.key).unwrap();
    assert_eq!(record.id, 100);
    assert_eq!(record.covers, COVER_IN | COVER_OUT, "both filter points");
    let c = b.engine.counters();
    assert_eq!((c.merged_states, c.insert_failures), (1, 0));
    // An update of the second state merges into the record.
    let mut upd = state_msg(101, true);
    upd.src.seqlo = conn.peers[0].seqlo + 5000;
    upd.src.seqhi = conn.peers[0].seqhi + 5000;
    send(&mut b, vec![Message::Upd(Box::new(upd))]);
    assert_eq!(
        b.get(&conn.key).unwrap().peers[0].seqlo,
        conn.peers[0].seqlo + 5000
    );
    assert_eq!(b.engine.counters().unknown_state, 0);
    // Another state for the same connection in the same direction is not pf's second state
    // (a reused tuple whose old state we still hold): refused, as before.
    send(&mut b, vec![Message::Ins(Box::new(state_msg(102, false)))]);
    let c = b.engine.counters();
    assert_eq!((c.merged_states, c.insert_failures), (1, 1));
    // Its deletion leaves the record to the first state, whose deletion removes it.
    send(&mut b, vec![Message::DelC(StateId::new(101, 0xc))]);
    assert_eq!(b.table.len(), 1);
    send(&mut b, vec![Message::DelC(StateId::new(100, 0xc))]);
    assert_eq!(b.table.len(), 0);
    assert_eq!(b.engine.counters().unknown_state, 0);
}

#[test]
fn unknown_actions_are_skipped_and_the_rest_processed() {
    let mut pair = Pair::new();
    let key = pair.a.create(tcp_state(1, T0), T0).key;
    pair.settle(T0 + SEC);
    let id = pair.a.states().into_keys().next().unwrap();
    let mut payload = vec![6, 0, 0, 0];
    payload.extend_from_slice(&[0; 16]);
    payload.extend_from_slice(&[200, 2, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8]);
    payload.extend_from_slice(&[action::DEL_C, 3, 0, 1]);
    payload.extend_from_slice(&id.to_bytes());
    let len = (payload.len() as u16).to_be_bytes();
    payload[2..4].copy_from_slice(&len);
    let frame = Datagram {
        dst: Ipv4Addr::new(224, 0, 0, 240),
        payload,
    };
    pair.b.receive(ADDR_A, &frame, T0 + 2 * SEC);
    assert!(pair.b.get(&key).is_none());
    let c = pair.b.engine.counters();
    assert_eq!((c.skipped_sections, c.received.get(action::DEL_C)), (1, 1));
    // TDB is counted and ignored; a bad version is dropped.
    let tdb = Datagram {
        dst: frame.dst,
        payload: wire::encode(&[Message::Tdb(wire::Tdb::default())]),
    };
    pair.b.receive(ADDR_A, &tdb, T0 + 2 * SEC);
    let mut v5 = tdb.clone();
    v5.payload[0] = 5;
    pair.b.receive(ADDR_A, &v5, T0 + 2 * SEC);
    let c = pair.b.engine.counters();
    assert_eq!((c.tdb_ignored, c.bad_version), (1, 1));
}

/// Runs a bulk from A to B: B requests, A answers `per_loop` packets per loop iteration, a
/// loop every `step`. Returns the bulk frames.
fn run_bulk(pair: &mut Pair, start: Duration, per_loop: usize, step: Duration) -> Vec<Datagram> {
    let mut now = start;
    let request = pair.b.engine.request_bulk(now);
    let request = pair.b.run(request, now);
    assert_eq!(pair.b.bulk_events, vec![BulkEvent::Started]);
    assert_eq!(request.len(), 1);
    assert_eq!(request[0].payload, wire::bulk_request());
    assert!(pair.a.receive(ADDR_B, &request[0], now).is_empty());
    assert!(pair.a.engine.bulk_sending());
    let mut frames = Vec::new();
    while pair.a.engine.bulk_sending() {
        let actions = pair.a.engine.bulk_next(now, per_loop, &pair.a.table);
        for d in pair.a.run(actions, now) {
            assert!(d.payload.len() + wire::IP_HEADER_LEN <= 1500);
            assert!(pair.b.receive(ADDR_A, &d, now).is_empty());
            frames.push(d);
        }
        now += step;
    }
    frames
}

#[test]
fn a_bulk_of_10000_states_completes() {
    let mut pair = Pair::new();
    for i in 0..10_000 {
        let state = if i % 4 == 0 {
            udp_state(i, T0)
        } else {
            tcp_state(i, T0)
        };
        let hash = pair.a.table.hash(&state.key);
        pair.a.table.lock(hash).insert(hash, state).unwrap();
    }
    let frames = run_bulk(&mut pair, T0, 16, millis(1));
    // 5 states per packet at MTU 1500, BUS START in the first, BUS END fits in the last.
    assert_eq!(frames.len(), 2000);
    let first = messages(&frames[..1]);
    assert_eq!(first[0].action(), action::BUS);
    assert!(matches!(
        first[0],
        Message::Bus(Bus {
            status: wire::BUS_START,
            creatorid: 0xa,
            ..
        })
    ));
    let last = messages(&frames[frames.len() - 1..]);
    assert!(matches!(
        last.last(),
        Some(Message::Bus(Bus {
            status: wire::BUS_END,
            ..
        }))
    ));
    assert_eq!(
        pair.b.bulk_events,
        vec![BulkEvent::Started, BulkEvent::Done]
    );
    assert_eq!(pair.b.engine.bulk_status().phase, BulkPhase::Done);
    assert_eq!(pair.b.table.len(), 10_000);
    assert_tables_agree(&pair);
    let c = pair.a.engine.counters();
    assert_eq!((c.bulks_sent, c.bulk_states_sent), (1, 10_000));
    assert_eq!(pair.b.engine.counters().bulks_received, 1);
}

#[test]
fn an_empty_table_answers_a_bulk_with_bus_end() {
    let mut pair = Pair::new();
    let frames = run_bulk(&mut pair, T0, 1, millis(1));
    assert_eq!(
        messages(&frames),
        vec![Message::Bus(Bus {
            creatorid: 0xa,
            endtime: 0,
            status: wire::BUS_END
        })]
    );
    assert_eq!(
        pair.b.bulk_events,
        vec![BulkEvent::Started, BulkEvent::Done]
    );
}

#[test]
fn the_bulk_timeout_runs_from_the_last_bulk_packet() {
    let mut pair = Pair::with(|c| c.bulk_progress_timeout = 10 * SEC);
    for i in 0..100 {
        let state = tcp_state(i, T0);
        let hash = pair.a.table.hash(&state.key);
        pair.a.table.lock(hash).insert(hash, state).unwrap();
    }
    // One packet every 8 s: 20 packets over 160 s, far beyond 10 s in total, never 10 s
    // without progress.
    let mut now = T0;
    let frames = {
        let request = pair.b.engine.request_bulk(now);
        let request = pair.b.run(request, now);
        pair.a.receive(ADDR_B, &request[0], now);
        let mut frames = Vec::new();
        while pair.a.engine.bulk_sending() {
            let actions = pair.a.engine.bulk_next(now, 1, &pair.a.table);
            for d in pair.a.run(actions, now) {
                pair.b.receive(ADDR_A, &d, now);
                frames.push(d);
            }
            now += 8 * SEC;
            assert!(
                pair.b.poll(now - SEC).is_empty(),
                "no retry while progressing"
            );
        }
        frames
    };
    assert_eq!(frames.len(), 20);
    assert_eq!(
        pair.b.bulk_events,
        vec![BulkEvent::Started, BulkEvent::Done]
    );

    // Now a bulk that stalls after three packets.
    let mut pair = Pair::with(|c| c.bulk_progress_timeout = 10 * SEC);
    for i in 0..100 {
        let state = tcp_state(i, T0);
        let hash = pair.a.table.hash(&state.key);
        pair.a.table.lock(hash).insert(hash, state).unwrap();
    }
    let now = T0;
    let request = pair.b.engine.request_bulk(now);
    let request = pair.b.run(request, now);
    pair.a.receive(ADDR_B, &request[0], now);
    let mut last = now;
    for n in 0..3u32 {
        last = now + n * 3 * SEC;
        let actions = pair.a.engine.bulk_next(last, 1, &pair.a.table);
        for d in pair.a.run(actions, last) {
            pair.b.receive(ADDR_A, &d, last);
        }
    }
    assert_eq!(pair.b.engine.bulk_status().phase, BulkPhase::Receiving);
    assert_eq!(pair.b.engine.bulk_status().last_progress, Some(last));
    assert!(pair.b.poll(last + 10 * SEC - millis(1)).is_empty());
    // Ten seconds of silence: the request goes again, CARP stays demoted.
    let retry = pair.b.poll(last + 10 * SEC);
    assert_eq!(
        messages(&retry),
        vec![Message::UpdReq(StateId::BULK_REQUEST)]
    );
    assert_eq!(pair.b.engine.bulk_status().phase, BulkPhase::Requested);
    assert_eq!(pair.b.bulk_events, vec![BulkEvent::Started]);
    // Nobody answers: a request every 2 s up to 12 in all, then the demotion is released.
    let mut t = last + 10 * SEC;
    let mut requests = 2;
    loop {
        t += 2 * SEC;
        let out = pair.b.poll(t);
        if pair.b.bulk_events.len() > 1 {
            assert!(out.is_empty());
            break;
        }
        assert_eq!(out.len(), 1);
        requests += 1;
    }
    assert_eq!(requests, BULK_MAX_TRIES);
    assert_eq!(
        pair.b.bulk_events,
        vec![BulkEvent::Started, BulkEvent::TimedOut]
    );
    assert_eq!(pair.b.engine.counters().bulk_timeouts, 1);
    assert_eq!(pair.b.engine.next_timeout(), None);
}

#[test]
fn bulk_requests_are_idempotent_and_wait_for_the_link() {
    let mut b = Node::new(0xb, ADDR_B, |_| {});
    b.engine.link_state(false, T0);
    let out = b.engine.request_bulk(T0);
    assert_eq!(b.run(out, T0).len(), 0, "no link, no request yet");
    assert_eq!(b.engine.bulk_status().phase, BulkPhase::WaitingForLink);
    // Asking again changes nothing (no second demotion).
    let again = b.engine.request_bulk(T0 + SEC);
    assert!(again.is_empty());
    let up = b.engine.link_state(true, T0 + 2 * SEC);
    let sent = b.run(up, T0 + 2 * SEC);
    assert_eq!(
        messages(&sent),
        vec![Message::UpdReq(StateId::BULK_REQUEST)]
    );
    assert_eq!(b.bulk_events, vec![BulkEvent::Started]);
    let cancel = b.engine.cancel_bulk_request();
    b.run(cancel, T0 + 3 * SEC);
    assert_eq!(
        b.bulk_events,
        vec![BulkEvent::Started, BulkEvent::Cancelled]
    );

    // A link that never comes up: given up after 30 s.
    let mut c = Node::new(0xc, ADDR_B, |_| {});
    c.engine.link_state(false, T0);
    let out = c.engine.request_bulk(T0);
    c.run(out, T0);
    assert!(c.poll(T0 + 29 * SEC).is_empty());
    c.poll(T0 + 30 * SEC);
    assert_eq!(c.bulk_events, vec![BulkEvent::Started, BulkEvent::TimedOut]);
}

#[test]
fn two_nodes_starting_together_exchange_tables_within_a_round_trip() {
    // Frames both ways, bulks included, until the link is quiet; what fw-a sent.
    fn exchange(pair: &mut Pair, mut to_a: Vec<Datagram>, now: Duration) -> Vec<Datagram> {
        let mut a_sent = Vec::new();
        for _ in 0..20 {
            let mut to_b = Vec::new();
            for d in to_a.drain(..) {
                to_b.extend(pair.a.receive(ADDR_B, &d, now));
            }
            let out = pair.a.engine.bulk_next(now, 8, &pair.a.table);
            to_b.extend(pair.a.run(out, now));
            a_sent.extend(to_b.iter().cloned());
            for d in to_b.drain(..) {
                to_a.extend(pair.b.receive(ADDR_A, &d, now));
            }
            let out = pair.b.engine.bulk_next(now, 8, &pair.b.table);
            to_a.extend(pair.b.run(out, now));
        }
        assert!(to_a.is_empty(), "the link never went quiet");
        a_sent
    }

    // fw-a started first: its request went unanswered, the retry is 2 s away.
    let mut pair = Pair::new();
    let out = pair.a.engine.request_bulk(T0);
    assert_eq!(pair.a.run(out, T0).len(), 1);
    let t = T0 + Duration::from_millis(300);
    // fw-b starts and asks: fw-a answers, and asks again at once (the peer is up).
    let out = pair.b.engine.request_bulk(t);
    let from_b = pair.b.run(out, t);
    let a_sent = exchange(&mut pair, from_b, t);
    assert!(
        messages(&a_sent).contains(&Message::UpdReq(StateId::BULK_REQUEST)),
        "fw-a did not ask again: {:?}",
        messages(&a_sent)
    );
    // fw-a's demotion went when fw-b asked, before fw-b had its table (so fw-b, done first,
    // never saw a demoted master to take over from); fw-a's own bulk still completed.
    assert_eq!(
        pair.a.bulk_events,
        vec![BulkEvent::Started, BulkEvent::PeerStarting]
    );
    assert_eq!(pair.a.engine.bulk_status().phase, BulkPhase::Done);
    assert_eq!(pair.a.engine.counters().bulks_received, 1);
    assert_eq!(
        pair.b.bulk_events,
        vec![BulkEvent::Started, BulkEvent::Done]
    );
    assert_eq!(pair.a.engine.bulk_status().tries, 2);
    assert_eq!(pair.a.engine.next_timeout(), None, "no retry left pending");
    // A node whose bulk is done does not ask again when the peer asks.
    let out = pair.b.engine.cancel_bulk_request();
    pair.b.run(out, t);
    let out = pair.b.engine.request_bulk(t + SEC);
    let from_b = pair.b.run(out, t + SEC);
    let a_sent = exchange(&mut pair, from_b, t + SEC);
    assert!(!messages(&a_sent).contains(&Message::UpdReq(StateId::BULK_REQUEST)));
    assert_eq!(
        pair.a.bulk_events,
        vec![BulkEvent::Started, BulkEvent::PeerStarting],
        "nothing more"
    );
}

#[test]
fn a_bulk_request_during_a_bulk_is_absorbed() {
    let mut a = Node::new(0xa, ADDR_A, |_| {});
    for i in 0..50 {
        a.create(tcp_state(i, T0), T0);
    }
    let request = Datagram {
        dst: Ipv4Addr::new(224, 0, 0, 240),
        payload: wire::bulk_request(),
    };
    a.receive(ADDR_B, &request, T0);
    let first = a.engine.bulk_next(T0, 2, &a.table);
    assert_eq!(a.run(first, T0).len(), 2);
    a.receive(ADDR_B, &request, T0);
    assert_eq!(a.engine.counters().bulk_requests_absorbed, 1);
    let mut rest = 0;
    while a.engine.bulk_sending() {
        let out = a.engine.bulk_next(T0, 100, &a.table);
        rest += a.run(out, T0).len();
    }
    assert_eq!(
        rest, 8,
        "50 states, 5 a packet; BUS END fits in the tenth packet"
    );
}

#[test]
fn handle_frame_checks_the_outer_packet() {
    let mut pair = Pair::with(|c| c.sync_iface = 2);
    let key = pair.a.create(tcp_state(1, T0), T0).key;
    let sent = pair.a.poll(T0 + SEC);
    let frame = sent[0].ethernet_frame(
        ADDR_A,
        MacAddr([2, 0, 0, 0, 0, 0xa]),
        sent[0].group_mac().unwrap(),
        7,
    );
    // Wrong interface, wrong TTL, not pfsync: counted and dropped.
    assert!(pair
        .b
        .engine
        .handle_frame(1, &frame, T0 + SEC, &pair.b.table)
        .is_empty());
    let mut ttl = frame.clone();
    ttl[14 + 8] = 64;
    assert!(pair
        .b
        .engine
        .handle_frame(2, &ttl, T0 + SEC, &pair.b.table)
        .is_empty());
    assert!(pair
        .b
        .engine
        .handle_frame(2, &frame[..20], T0 + SEC, &pair.b.table)
        .is_empty());
    let c = pair.b.engine.counters();
    assert_eq!((c.bad_interface, c.bad_ttl, c.malformed), (1, 1, 1));
    // The real thing.
    let actions = pair
        .b
        .engine
        .handle_frame(2, &frame, T0 + SEC, &pair.b.table);
    assert!(matches!(
        actions[..],
        [Action::Apply(StateChange::Insert(_))]
    ));
    pair.b.run(actions, T0 + SEC);
    assert!(pair.b.get(&key).is_some());
    // Our own frame, looped back, is ignored.
    let own = pair
        .a
        .engine
        .handle_payload(ADDR_A, &sent[0].payload, T0 + SEC, &pair.a.table);
    assert!(own.is_empty());
    assert_eq!(pair.a.engine.counters().own_loop, 1);
}

#[test]
fn unicast_peer_and_forgotten_states() {
    let peer = Ipv4Addr::new(198, 18, 0, 2);
    let mut a = Node::new(0xa, ADDR_A, |c| {
        c.peer = Some(peer);
        c.index_gc_budget = 10;
    });
    for i in 0..30 {
        a.create(tcp_state(i, T0), T0);
    }
    let sent = a.poll(T0 + SEC);
    assert!(sent
        .iter()
        .all(|d| d.dst == peer && d.group_mac().is_none()));
    assert_eq!(a.engine.known_states(), 30);
    // States that leave the table without an event (expired on a worker's lookup) are
    // forgotten by the index check, a slice per poll.
    a.table.flush();
    // One slice per 100 ms.
    a.poll(T0 + SEC + millis(50));
    assert_eq!(a.engine.known_states(), 30, "not yet");
    // The walk resumes where the last slice stopped and wraps around.
    for n in 1..=4 {
        a.poll(T0 + SEC + millis(100 * n));
    }
    assert_eq!(a.engine.known_states(), 0);
}

#[test]
fn an_insert_whose_key_is_taken_is_refused() {
    let mut pair = Pair::new();
    // Both nodes created the same connection (asymmetric routing): different identities.
    pair.b.create(tcp_state(1, T0), T0);
    let b_queued = pair.b.engine.queued();
    assert_eq!(b_queued, 1);
    pair.a.create(tcp_state(1, T0), T0);
    let sent = pair.a.poll(T0 + SEC);
    pair.b.receive(ADDR_A, &sent[0], T0 + SEC);
    assert_eq!(pair.b.engine.counters().insert_failures, 1);
    assert_eq!(pair.b.table.len(), 1);
    assert_eq!(pair.b.states().keys().next().unwrap().creator, 0xb);
}

#[test]
fn updates_for_a_deleted_state_are_not_sent() {
    let mut a = Node::new(0xa, ADDR_A, |_| {});
    let state: State = a.create(tcp_state(1, T0), T0);
    a.poll(T0 + SEC);
    a.update(&state.key, T0 + 2 * SEC, |s| s.peers[0].seqlo += 1);
    // The state leaves the table before the event does: the UPD_C has nothing to carry.
    let hash = a.table.hash(&state.key);
    {
        let mut shard = a.table.lock(hash);
        let idx = shard.find(&state.key, hash, 0).unwrap();
        shard.remove(idx, hash);
    }
    assert!(a.poll(T0 + 3 * SEC).is_empty());
    assert_eq!(a.engine.counters().vanished, 1);
}

#[test]
fn a_deferred_insert_asks_for_an_ack_at_once_and_the_ack_releases_it() {
    let mut pair = Pair::new();
    let state = tcp_state(7, T0);
    let hash = pair.a.table.hash(&state.key);
    let stored = {
        let mut shard = pair.a.table.lock(hash);
        let idx = shard.insert(hash, state).unwrap();
        shard.get(idx).clone()
    };
    let id = StateId::new(stored.id, stored.creator);
    pair.a.engine.state_deferred(stored.key, id, T0);
    // At once, not after the 1 s flush: an INS with PFSTATE_ACK.
    let sent = pair.a.poll(T0);
    assert_eq!(sent.len(), 1);
    let ins: Vec<_> = messages(&sent)
        .into_iter()
        .filter_map(|m| match m {
            Message::Ins(s) => Some(s),
            _ => None,
        })
        .collect();
    assert_eq!(ins.len(), 1);
    assert_ne!(ins[0].state_flags & state_flags::ACK, 0, "PFSTATE_ACK set");
    assert_eq!(pair.a.engine.counters().deferred, 1);
    // fw-b installs it and acks; the ack releases the packet on fw-a.
    let acks = pair.b.receive(ADDR_A, &sent[0], T0);
    assert_eq!(messages(&acks), vec![Message::InsAck(id)]);
    pair.a.receive(ADDR_B, &acks[0], T0);
    assert_eq!(pair.a.released, vec![id]);
    // An ordinary insert asks for nothing.
    let other = pair.a.create(tcp_state(8, T0), T0);
    let sent = pair.a.poll(T0 + SEC);
    for m in messages(&sent) {
        if let Message::Ins(s) = m {
            assert_eq!(s.id, other.id);
            assert_eq!(s.state_flags & state_flags::ACK, 0);
        }
    }
}

#[test]
fn an_update_from_the_peer_releases_a_deferred_packet_without_an_ack() {
    // OpenBSD's pfsync_in_upd_c releases a deferral too: the peer's UPD_C replaces the
    // INS_ACK it had queued when the state changes before its flush.
    let mut pair = Pair::new();
    let state = tcp_state(9, T0);
    let hash = pair.a.table.hash(&state.key);
    let stored = {
        let mut shard = pair.a.table.lock(hash);
        let idx = shard.insert(hash, state).unwrap();
        shard.get(idx).clone()
    };
    let id = StateId::new(stored.id, stored.creator);
    pair.a.engine.state_deferred(stored.key, id, T0);
    let sent = pair.a.poll(T0);
    // fw-b installs it; its INS_ACK is lost, and the state moves on fw-b.
    let acks = pair.b.receive(ADDR_A, &sent[0], T0);
    assert_eq!(messages(&acks), vec![Message::InsAck(id)]);
    pair.b.update(&stored.key, T0, |s| {
        s.peers[1].state = tcps::ESTABLISHED;
        s.peers[0].state = tcps::ESTABLISHED;
    });
    let updates = pair.b.poll(T0 + SEC);
    assert!(
        messages(&updates)
            .iter()
            .any(|m| matches!(m, Message::UpdC(u) if u.state_id() == id)),
        "{:?}",
        messages(&updates)
    );
    assert!(pair.a.released.is_empty());
    for d in &updates {
        pair.a.receive(ADDR_B, d, T0 + SEC);
    }
    assert_eq!(pair.a.released, vec![id], "the UPD_C released it");
}

#[test]
fn with_a_key_only_authenticated_packets_count() {
    let key: Arc<[u8]> = Arc::from(&b"a long random secret"[..]);
    let mut pair = Pair::with(|c| c.auth_key = Some(Arc::clone(&key)));
    let created = pair.a.create(tcp_state(1, T0), T0);
    pair.settle(T0 + SEC);
    assert!(
        pair.b.get(&created.key).is_some(),
        "the keyed peer imported the state"
    );
    // What went over the wire: the pfsync message, then 20 bytes of HMAC outside its `len`.
    let sent = pair.a_sent.last().expect("fw-a sent the INS").clone();
    let len = usize::from(u16::from_be_bytes([sent.payload[2], sent.payload[3]]));
    assert_eq!(sent.payload.len(), len + AUTH_TRAILER_LEN);
    assert!(parse(&sent.payload[..len]).is_ok());

    // A peer with another key is refused and counted; nothing is imported.
    let mut other = Node::new(0xc, ADDR_B, |c| c.auth_key = Some(Arc::from(&b"other"[..])));
    assert!(other.receive(ADDR_A, &sent, T0 + SEC).is_empty());
    assert_eq!(other.engine.counters().bad_auth, 1);
    assert!(other.get(&created.key).is_none());
    // An unsigned packet is refused by a keyed node.
    let unsigned = Datagram {
        dst: sent.dst,
        payload: sent.payload[..len].to_vec(),
    };
    pair.b.receive(ADDR_A, &unsigned, T0 + SEC);
    assert_eq!(pair.b.engine.counters().bad_auth, 1);
    // A plain node still reads a keyed packet (OpenBSD trims what follows `len`).
    let mut plain = Node::new(0xd, ADDR_B, |_| {});
    plain.receive(ADDR_A, &sent, T0 + SEC);
    assert!(plain.get(&created.key).is_some());
    // A flipped bit in the message or in the trailer: refused.
    for at in [30, sent.payload.len() - 1] {
        let mut forged = sent.clone();
        forged.payload[at] ^= 1;
        let before = pair.b.engine.counters().bad_auth;
        pair.b.receive(ADDR_A, &forged, T0 + SEC);
        assert_eq!(pair.b.engine.counters().bad_auth, before + 1, "byte {at}");
    }
}

/// The state messages (INS, UPD) among `messages`.
fn state_messages(messages: &[Message]) -> Vec<&StateMsg> {
    messages
        .iter()
        .filter_map(|m| match m {
            Message::Ins(s) | Message::Upd(s) => Some(&**s),
            _ => None,
        })
        .collect()
}

/// The ids of the UPD_C and DEL_C messages among `messages`, in order.
fn compressed_ids(messages: &[Message], action: u8) -> Vec<StateId> {
    messages
        .iter()
        .filter(|m| m.action() == action)
        .filter_map(|m| match m {
            Message::UpdC(u) => Some(u.state_id()),
            Message::DelC(id) => Some(*id),
            _ => None,
        })
        .collect()
}

/// pf's key slots of an IPv4 state message: (addr[0], port[0], addr[1], port[1]).
fn slots(msg: &StateMsg) -> ([u8; 4], u16, [u8; 4], u16) {
    let k = &msg.key[0];
    let v4 = |a: &[u8; 16]| [a[0], a[1], a[2], a[3]];
    (v4(&k.addr[0]), k.port[0], v4(&k.addr[1]), k.port[1])
}

#[test]
fn split_states_send_a_forwarded_connection_as_pfs_two_states() {
    let mut pair = Pair::with(|c| c.split_states = true);
    // A connection forwarded from 10.0.0.1:20001 to 198.51.100.7:443: one record, created
    // by the inbound pass, covering both filter points.
    let conn = pair.a.create(tcp_state(1, T0), T0);
    assert_eq!(conn.covers, COVER_IN | COVER_OUT);
    let record = StateId::new(conn.id, conn.creator);
    let twin = twin_id(record);
    assert_ne!(twin, record);
    assert_eq!(twin.creator, record.creator);

    let frames = pair.a.poll(T0 + SEC);
    let sent = messages(&frames);
    let ins = state_messages(&sent);
    assert_eq!(actions_of(&frames), vec![action::INS, action::INS]);
    let (inbound, outbound) = (ins[0], ins[1]);
    assert_eq!((inbound.state_id(), inbound.direction), (record, PF_IN));
    assert_eq!((outbound.state_id(), outbound.direction), (twin, PF_OUT));
    // pf's keys at each point: the packet's source in slot 0 inbound, in slot 1 outbound.
    let client = ([10, 0, 0, 1], 20001);
    let server = ([198, 51, 100, 7], 443);
    assert_eq!(slots(inbound), (client.0, client.1, server.0, server.1));
    assert_eq!(slots(outbound), (server.0, server.1, client.0, client.1));
    // The same connection, tracked alike; floating; the second has no rule of its own.
    assert_eq!((outbound.src, outbound.dst), (inbound.src, inbound.dst));
    assert_eq!(
        (inbound.ifname, outbound.ifname),
        (IfName::ALL, IfName::ALL)
    );
    assert_eq!((inbound.rule, outbound.rule), (conn.rule, u32::MAX));

    // A rampart peer folds the two back into one record.
    for d in &frames {
        pair.b.receive(ADDR_A, d, T0 + SEC);
    }
    assert_eq!(pair.b.table.len(), 1);
    assert_eq!(pair.b.get(&conn.key).unwrap().covers, COVER_IN | COVER_OUT);
    let c = pair.b.engine.counters();
    assert_eq!((c.merged_states, c.insert_failures), (1, 0));
    assert_eq!(c.pf_states_received, 0, "rampart's coverage bits on both");

    // An update goes out for both states.
    pair.a.update(&conn.key, T0 + 2 * SEC, |s| {
        s.peers[0].seqlo += 100;
        s.peers[0].seqhi += 100;
    });
    let frames = pair.a.poll(T0 + 3 * SEC);
    assert_eq!(
        compressed_ids(&messages(&frames), action::UPD_C),
        vec![record, twin]
    );
    for d in &frames {
        pair.b.receive(ADDR_A, d, T0 + 3 * SEC);
    }
    assert_eq!(
        pair.b.get(&conn.key).unwrap().peers[0].seqlo,
        conn.peers[0].seqlo + 100
    );

    // A peer that asks for the second state by id gets it.
    let request = Datagram {
        dst: Ipv4Addr::new(224, 0, 0, 240),
        payload: wire::encode(&[Message::UpdReq(twin)]),
    };
    let answer = pair.a.receive(ADDR_B, &request, T0 + 4 * SEC);
    let answered = messages(&answer);
    let upd = state_messages(&answered);
    assert_eq!(actions_of(&answer), vec![action::UPD]);
    assert_eq!((upd[0].state_id(), upd[0].direction), (twin, PF_OUT));
    assert_eq!(slots(upd[0]), slots(outbound));
    assert_eq!(pair.a.engine.counters().vanished, 0);

    // The connection's end deletes both.
    pair.a.delete(&conn.key, T0 + 5 * SEC);
    let frames = pair.a.poll(T0 + 6 * SEC);
    let mut deleted = compressed_ids(&messages(&frames), action::DEL_C);
    deleted.sort();
    let mut both = vec![record, twin];
    both.sort();
    assert_eq!(deleted, both);
    for d in &frames {
        pair.b.receive(ADDR_A, d, T0 + 6 * SEC);
    }
    assert_eq!(pair.b.table.len(), 0);
    assert_eq!(pair.b.engine.counters().unknown_state, 0);
}

#[test]
fn without_split_states_a_record_goes_as_one_state() {
    let mut pair = Pair::new();
    let conn = pair.a.create(tcp_state(1, T0), T0);
    let frames = pair.a.poll(T0 + SEC);
    let sent = messages(&frames);
    let ins = state_messages(&sent);
    assert_eq!(ins.len(), 1);
    assert_eq!(ins[0].state_id(), StateId::new(conn.id, conn.creator));
    // rampart's coverage bits carry both filter points to a rampart peer.
    for d in &frames {
        pair.b.receive(ADDR_A, d, T0 + SEC);
    }
    assert_eq!(pair.b.get(&conn.key).unwrap().covers, COVER_IN | COVER_OUT);
}

#[test]
fn a_split_bulk_sends_both_states_of_forwarded_connections_only() {
    let mut pair = Pair::with(|c| c.split_states = true);
    // 100 forwarded TCP connections (both points) and 50 UDP flows seen at one point.
    for i in 0..150 {
        let state = if i < 100 {
            tcp_state(i, T0)
        } else {
            udp_state(i, T0)
        };
        let hash = pair.a.table.hash(&state.key);
        pair.a.table.lock(hash).insert(hash, state).unwrap();
    }
    let frames = run_bulk(&mut pair, T0, 1, millis(1));
    let sent = messages(&frames);
    let states = state_messages(&sent);
    assert_eq!(states.len(), 250);
    let twins = states
        .iter()
        .filter(|m| m.id & TWIN_ID_BIT != 0)
        .collect::<Vec<_>>();
    assert_eq!(twins.len(), 100);
    assert!(twins.iter().all(|m| m.direction == PF_OUT && m.proto == 6));
    // Each twin follows its record (possibly in the next packet).
    for (i, m) in states.iter().enumerate() {
        if m.id & TWIN_ID_BIT != 0 {
            assert_eq!(states[i - 1].state_id(), {
                let mut record = m.state_id();
                record.id ^= TWIN_ID_BIT;
                record
            });
        }
    }
    assert_eq!(pair.b.table.len(), 150);
    assert_tables_agree(&pair);
    let c = pair.b.engine.counters();
    assert_eq!((c.merged_states, c.insert_failures), (100, 0));
    assert_eq!(pair.a.engine.counters().bulk_states_sent, 250);
    assert_eq!(
        pair.b.bulk_events,
        vec![BulkEvent::Started, BulkEvent::Done]
    );
}

#[test]
fn an_openbsd_peers_second_state_is_updated_and_deleted_with_its_record() {
    // After a failover from an OpenBSD master, this node updates and expires the connection
    // that OpenBSD keeps as two states: both of its states hear about it.
    let mut b = Node::new(0xb, ADDR_B, |_| {});
    let timeouts = *b.table.timeouts();
    let cx = sender_conversion(&timeouts);
    let conn = tcp_state(1, T0);
    let state_msg = |id: u64, outbound: bool| openbsd_state(&conn, id, outbound, &cx);
    let frame = Datagram {
        dst: Ipv4Addr::new(224, 0, 0, 240),
        payload: wire::encode(&[
            Message::Ins(Box::new(state_msg(100, false))),
            Message::Ins(Box::new(state_msg(101, true))),
        ]),
    };
    b.receive(ADDR_A, &frame, T0);
    assert_eq!(b.table.len(), 1);
    assert_eq!(
        b.engine.counters().pf_states_received,
        2,
        "told apart from a rampart peer"
    );
    let (first, second) = (StateId::new(100, 0xc), StateId::new(101, 0xc));

    b.update(&conn.key, T0 + 3 * SEC, |s| s.peers[1].seqlo += 10);
    let frames = b.poll(T0 + 4 * SEC);
    assert_eq!(
        compressed_ids(&messages(&frames), action::UPD_C),
        vec![first, second]
    );

    b.delete(&conn.key, T0 + 5 * SEC);
    let frames = b.poll(T0 + 6 * SEC);
    let mut deleted = compressed_ids(&messages(&frames), action::DEL_C);
    deleted.sort();
    assert_eq!(deleted, vec![first, second]);
    assert_eq!(b.engine.known_states(), 0);
}

#[test]
fn a_split_pair_agrees_under_random_traffic_and_keeps_no_stale_identities() {
    let mut pair = Pair::with(|c| c.split_states = true);
    let mut rng = super::Rng::new(0x5eed);
    let mut now = T0;
    let mut live = Vec::new();
    let mut touched_by_b = std::collections::HashMap::new();
    for i in 0..3000u32 {
        match rng.below(10) {
            // A new forwarded TCP connection (both filter points), or a UDP flow seen at one.
            0..=3 => {
                let state = if rng.below(3) == 0 {
                    udp_state(i, now)
                } else {
                    tcp_state(i, now)
                };
                live.push(pair.a.create(state, now).key);
            }
            4..=6 if !live.is_empty() => {
                let key = live[rng.below(live.len() as u64) as usize];
                pair.a.update(&key, now, |s| {
                    s.peers[0].seqlo = s.peers[0].seqlo.wrapping_add(10);
                    s.peers[0].seqhi = s.peers[0].seqhi.wrapping_add(10);
                    s.packets[0] += 1;
                    s.last_ms = ms(now);
                });
            }
            7..=8 if !live.is_empty() => {
                // Not a connection fw-b updated within its flush delay: its UPD_C would
                // cross our DEL_C, and each side would ask the other for a state it no
                // longer has (an UPD_REQ counted as unknown, as OpenBSD counts it).
                let at = rng.below(live.len() as u64) as usize;
                if touched_by_b
                    .get(&live[at])
                    .is_none_or(|&t| now > t + 2 * SEC)
                {
                    let key = live.swap_remove(at);
                    pair.a.delete(&key, now);
                }
            }
            // The backup's worker passes a packet of a connection it has (asymmetric
            // routing, or after a failover): its update goes back for both states.
            9 if !live.is_empty() => {
                let key = live[rng.below(live.len() as u64) as usize];
                if pair.b.get(&key).is_some() {
                    touched_by_b.insert(key, now);
                    pair.b.update(&key, now, |s| {
                        s.peers[1].seqlo = s.peers[1].seqlo.wrapping_add(7);
                        s.peers[1].seqhi = s.peers[1].seqhi.wrapping_add(7);
                        s.last_ms = ms(now);
                    });
                }
            }
            _ => {}
        }
        // 3000 steps in about 30 s: well within the UDP flows' 60 s timeout.
        now += millis(rng.below(20));
        pair.settle(now);
    }
    // The last queued messages leave a flush delay later.
    pair.settle(now + SEC);
    assert_eq!(pair.a.table.len(), live.len());
    assert_tables_agree(&pair);
    let (a, b) = (pair.a.engine.counters(), pair.b.engine.counters());
    assert_eq!((b.insert_failures, b.unknown_state, b.bad_value), (0, 0, 0));
    assert_eq!((a.unknown_state, a.vanished), (0, 0));
    assert!(b.merged_states > 0);
    // fw-b's updates reached fw-a for both states of its connections.
    assert!(a.received.get(action::UPD_C) > 0);
    // Each record is known with at most its twin: deletions took both identities along.
    let tcp = pair
        .a
        .states()
        .values()
        .filter(|s| s.covers == COVER_IN | COVER_OUT)
        .count();
    assert_eq!(pair.a.engine.known_states(), live.len() + tcp);
    assert_eq!(pair.b.engine.known_states(), live.len() + tcp);
}
