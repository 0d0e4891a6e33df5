//! Two workers on two threads over one state table, as an appliance with two worker cores
//! runs them: the lock-sharded table must let either worker find, create and update any
//! connection's state, whichever worker sees which direction.
//!
//! The directions are split the worst way: one worker receives everything the clients
//! send (lan), the other everything the servers send (wan), as a NIC without symmetric
//! RSS would spread them. With few shards, the two threads fight over the same locks and
//! update the very same states at the same time. A lost update shows up as a wrong packet
//! counter; a broken find-or-create as two states for one flow.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam::queue::ArrayQueue;
use rampart_conf::MacAddr;
use rampart_dataplane::io::mem::MemPort;
use rampart_dataplane::io::BURST;
use rampart_dataplane::state::tcp::single;
use rampart_dataplane::state::{StateTableConfig, Timeout};
use rampart_dataplane::wire::build::{TcpFrame, UdpFrame};
use rampart_dataplane::wire::TcpFlags;
use rampart_dataplane::worker::{Shared, Worker};

const LAN_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 1, 1]);
const WAN_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 2, 1]);
const CLIENT_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 1, 0x10]);
const SERVER_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 2, 0x07]);
const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const SERVER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);

const CONFIG: &str = r#"
[[interface]]
name = "lan"
device = "net_null0"
addresses = ["192.0.2.1/24"]
mac = "02:00:00:00:01:01"

[[interface]]
name = "wan"
device = "net_null1"
addresses = ["198.51.100.1/24"]
mac = "02:00:00:00:02:01"

[[neighbor]]
interface = "lan"
address = "192.0.2.10"
mac = "02:00:00:00:01:10"

[[neighbor]]
interface = "wan"
address = "198.51.100.7"
mac = "02:00:00:00:02:07"

[[rule]]
action = "block"

[[rule]]
action = "pass"
direction = "in"
on = "lan"
from = "192.0.2.0/24"

# The server's DNS answers may arrive first: either direction creates the flow's state.
[[rule]]
action = "pass"
direction = "in"
on = "wan"
proto = "udp"
from = "198.51.100.7"
from_port = 53

[[rule]]
action = "pass"
direction = "out"
"#;

/// TCP connections, each carrying `SEGMENTS` data segments both ways at once: few, so
/// that the two threads keep landing on the same states.
const CONNECTIONS: u16 = 8;
const SEGMENTS: u32 = 6000;
/// Bytes per segment: all of a side's data fits in the other side's first window.
const PAYLOAD: usize = 1;
/// UDP flows whose first packets arrive on both workers at once.
const RACED_FLOWS: u16 = 512;
const UDP_PER_SIDE: u32 = 3;

const CLIENT_ISN: u32 = 1_000_000;
const SERVER_ISN: u32 = 5_000_000;

fn client_port(conn: u16) -> u16 {
    40_000 + conn
}

fn tcp(from_client: bool, conn: u16, seq: u32, ack: u32, flags: u8, len: usize) -> Vec<u8> {
    let (src_mac, dst_mac, src, dst, sport, dport) = if from_client {
        (CLIENT_MAC, LAN_MAC, CLIENT, SERVER, client_port(conn), 443)
    } else {
        (SERVER_MAC, WAN_MAC, SERVER, CLIENT, 443, client_port(conn))
    };
    TcpFrame {
        src_mac,
        dst_mac,
        src: src.into(),
        dst: dst.into(),
        sport,
        dport,
        seq,
        ack,
        flags: TcpFlags(flags),
        window: 64_240,
        payload: vec![0x5a; len],
        ..TcpFrame::default()
    }
    .to_bytes()
}

fn udp(from_client: bool, flow: u16) -> Vec<u8> {
    let (src_mac, dst_mac, src, dst, sport, dport) = if from_client {
        (CLIENT_MAC, LAN_MAC, CLIENT, SERVER, 20_000 + flow, 53)
    } else {
        (SERVER_MAC, WAN_MAC, SERVER, CLIENT, 53, 20_000 + flow)
    };
    UdpFrame {
        src_mac,
        dst_mac,
        src: src.into(),
        dst: dst.into(),
        sport,
        dport,
        ..UdpFrame::default()
    }
    .to_bytes()
}

/// Two threads leave `wait` within a few hundred nanoseconds of each other (a std
/// `Barrier` wakes its waiter through the kernel, tens of microseconds after the other
/// has gone on: longer than a worker takes for a packet).
#[derive(Default)]
struct SpinBarrier {
    arrived: AtomicUsize,
    generation: AtomicUsize,
}

impl SpinBarrier {
    fn wait(&self, deadline: Instant) {
        let generation = self.generation.load(Ordering::Acquire);
        if self.arrived.fetch_add(1, Ordering::AcqRel) == 1 {
            self.arrived.store(0, Ordering::Relaxed);
            self.generation.fetch_add(1, Ordering::Release);
            return;
        }
        while self.generation.load(Ordering::Acquire) == generation {
            assert!(Instant::now() < deadline, "the other thread never arrived");
            std::hint::spin_loop();
        }
    }
}

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const PSH: u8 = 0x08;

/// Feeds `frames` to `worker` on `port` a burst at a time; returns the frames it sent out
/// of `out`. Panics past `deadline` (every loop in a test is bounded).
fn run(
    worker: &mut Worker<MemPort>,
    port: usize,
    out: usize,
    frames: &[Vec<u8>],
    deadline: Instant,
) -> usize {
    let mut sent = 0;
    for chunk in frames.chunks(BURST) {
        assert!(Instant::now() < deadline, "worker {port} ran out of time");
        for f in chunk {
            worker.ports_mut()[port].inject(f);
        }
        while worker.poll(0) > 0 {}
        sent += worker.ports_mut()[out].take_tx().len();
    }
    sent
}

#[test]
fn two_workers_share_every_state_whichever_direction_each_sees() {
    let config = rampart_conf::load_str(Path::new("t.toml"), CONFIG)
        .unwrap()
        .config;
    // Four shards for hundreds of flows: the two threads meet on the same locks.
    let shared = Shared::from_config(
        &config,
        &[LAN_MAC, WAN_MAC],
        StateTableConfig::from_config(&config, 4, 1, 1),
    );
    let worker = |id| {
        Worker::new(
            id,
            vec![MemPort::new(), MemPort::new()],
            &shared,
            Arc::new(ArrayQueue::new(1024)),
        )
    };
    // `lan_side` receives what the clients send, `wan_side` what the servers send.
    let (mut lan_side, mut wan_side) = (worker(0), worker(1));
    let (lan, wan) = (0, 1);
    let deadline = Instant::now() + Duration::from_secs(120);

    // The handshakes, each segment through the worker that sees its direction.
    let syns: Vec<_> = (0..CONNECTIONS)
        .map(|c| tcp(true, c, CLIENT_ISN, 0, SYN, 0))
        .collect();
    assert_eq!(run(&mut lan_side, lan, wan, &syns, deadline), syns.len());
    let syn_acks: Vec<_> = (0..CONNECTIONS)
        .map(|c| tcp(false, c, SERVER_ISN, CLIENT_ISN + 1, SYN | ACK, 0))
        .collect();
    assert_eq!(
        run(&mut wan_side, wan, lan, &syn_acks, deadline),
        syn_acks.len()
    );
    let acks: Vec<_> = (0..CONNECTIONS)
        .map(|c| tcp(true, c, CLIENT_ISN + 1, SERVER_ISN + 1, ACK, 0))
        .collect();
    assert_eq!(run(&mut lan_side, lan, wan, &acks, deadline), acks.len());
    assert_eq!(shared.states.len(), CONNECTIONS as usize);

    // Then, at the same time on two threads: every connection's data both ways
    // (connection after connection, so each state is hit from both sides at once); then
    // new UDP flows whose first packets the two workers receive in the same instant (so
    // both try to create the same state), and the flows' other packets.
    let data = |from_client: bool| -> Vec<Vec<u8>> {
        let (isn, peer_isn) = if from_client {
            (CLIENT_ISN, SERVER_ISN)
        } else {
            (SERVER_ISN, CLIENT_ISN)
        };
        let mut frames = Vec::new();
        for k in 0..SEGMENTS {
            for c in 0..CONNECTIONS {
                // Acknowledging only the handshake: both ends send within the other's
                // first window, as a bulk transfer both ways does before its ACKs return.
                let seq = isn + 1 + k * PAYLOAD as u32;
                frames.push(tcp(from_client, c, seq, peer_isn + 1, ACK | PSH, PAYLOAD));
            }
        }
        frames
    };
    let (from_clients, from_servers) = (data(true), data(false));
    let together = SpinBarrier::default();
    let side = |worker: &mut Worker<MemPort>, port, out, from_client: bool, data: &[Vec<u8>]| {
        together.wait(deadline);
        let mut sent = run(worker, port, out, data, deadline);
        let firsts: Vec<_> = (0..RACED_FLOWS).map(|f| udp(from_client, f)).collect();
        for first in &firsts {
            together.wait(deadline);
            sent += run(worker, port, out, std::slice::from_ref(first), deadline);
        }
        let rest: Vec<_> = (1..UDP_PER_SIDE)
            .flat_map(|_| (0..RACED_FLOWS).map(|f| udp(from_client, f)))
            .collect();
        sent + run(worker, port, out, &rest, deadline)
    };
    let (lan_sent, wan_sent) = std::thread::scope(|s| {
        let a = s.spawn(|| side(&mut lan_side, lan, wan, true, &from_clients));
        let b = s.spawn(|| side(&mut wan_side, wan, lan, false, &from_servers));
        (a.join().unwrap(), b.join().unwrap())
    });
    let udp_per_side = (RACED_FLOWS as u32 * UDP_PER_SIDE) as usize;
    assert_eq!(
        lan_sent,
        from_clients.len() + udp_per_side,
        "every client frame forwarded"
    );
    assert_eq!(
        wan_sent,
        from_servers.len() + udp_per_side,
        "every server frame forwarded"
    );
    for (name, w) in [("lan side", &lan_side), ("wan side", &wan_side)] {
        let stats = w.stats();
        assert_eq!(stats.total_drops(), 0, "{name} dropped frames");
    }

    // One state per flow, however the two first packets raced.
    let inserts = lan_side.stats().state_inserts.get() + wan_side.stats().state_inserts.get();
    let flows = CONNECTIONS as u64 + RACED_FLOWS as u64;
    assert_eq!(inserts, flows, "one insert per flow");
    assert_eq!(shared.states.len() as u64, flows);
    let stats = shared.states.stats();
    assert_eq!(
        (stats.current, stats.inserts, stats.removals),
        (flows, flows, 0)
    );

    // Every packet counted on its state: no update lost to the other thread.
    let mut tcp_seen = 0;
    let mut udp_seen = 0;
    let tcp_len = |payload: usize| (20 + 20 + payload) as u64;
    shared.states.for_each(|st| {
        match st.key.proto() {
            6 => {
                tcp_seen += 1;
                assert_eq!(st.initiator(), 0, "the client (first in the key) initiated");
                // SYN, ACK and the data from the client; SYN-ACK and the data back.
                assert_eq!(
                    st.packets,
                    [2 + SEGMENTS as u64, 1 + SEGMENTS as u64],
                    "{st:?}"
                );
                let data_bytes = SEGMENTS as u64 * tcp_len(PAYLOAD);
                assert_eq!(
                    st.bytes,
                    [2 * tcp_len(0) + data_bytes, tcp_len(0) + data_bytes],
                    "{st:?}"
                );
                assert_eq!(st.timeout, Timeout::TcpEstablished);
                // pf's seqlo: the highest sequence number each end has sent.
                let end = SEGMENTS * PAYLOAD as u32 + 1;
                assert_eq!(st.peers[0].seqlo, CLIENT_ISN + end, "{st:?}");
                assert_eq!(st.peers[1].seqlo, SERVER_ISN + end, "{st:?}");
            }
            17 => {
                udp_seen += 1;
                assert_eq!(
                    st.packets[0] + st.packets[1],
                    2 * UDP_PER_SIDE as u64,
                    "{st:?}"
                );
                // pf's progression: a sender goes to SINGLE, and the other end to
                // MULTIPLE once both have sent; whether both end MULTIPLE depends on how
                // the two sides' packets interleaved (one side's all first: one SINGLE).
                let [a, b] = st.peers.map(|p| p.state);
                assert!(a >= single::SINGLE && b >= single::SINGLE, "{st:?}");
                assert!(a == single::MULTIPLE || b == single::MULTIPLE, "{st:?}");
                let both = a == single::MULTIPLE && b == single::MULTIPLE;
                let class = if both {
                    Timeout::UdpMultiple
                } else {
                    Timeout::UdpSingle
                };
                assert_eq!(st.timeout, class, "{st:?}");
            }
            p => panic!("unexpected state for protocol {p}: {st:?}"),
        }
    });
    assert_eq!(tcp_seen, CONNECTIONS);
    assert_eq!(udp_seen, RACED_FLOWS);
    // Both endpoints of every flow are the ones the test used.
    shared.states.for_each(|st| {
        let (a, b) = st.key.endpoints();
        assert_eq!(a.0, IpAddr::V4(CLIENT), "{st:?}");
        assert_eq!(b.0, IpAddr::V4(SERVER), "{st:?}");
    });
}
