//! The whole worker pipeline over in-memory ports.
//!
//! - `established/N`: TCP segments of random established connections, with N states in
//!   the table (100, whose states all stay in the core's caches; 10k; 1M; 10M): parse,
//!   state lookup and TCP window check, route, neighbour, TTL and MAC rewrite, transmit.
//!   Reported per packet.
//! - `new_states/R`: SYNs of connections never seen, with R rules before the one that
//!   passes them (10, 1000): parse, miss, rule evaluation in and out, state creation.
//!
//! Frames are copied from prepared templates into pooled buffers (what a NIC's DMA does)
//! before each burst, outside the timed region. Run:
//!   cargo bench -p rampart-dataplane --bench worker
//! Set RAMPART_BENCH_10M=0 to skip the 10M-state case (it needs ~3 GB and a minute to fill).

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use crossbeam::queue::ArrayQueue;
use rampart_dataplane::io::mem::MemPort;
use rampart_dataplane::io::BURST;
use rampart_dataplane::state::tcp::{tcps, Peer};
use rampart_dataplane::state::{
    State, StateKey, StateTable, StateTableConfig, Timeout, COVER_IN, COVER_OUT,
    STATE_INITIATOR_IS_1,
};
use rampart_dataplane::wire::build::TcpFrame;
use rampart_dataplane::wire::{MacAddr, TcpFlags};
use rampart_dataplane::worker::{Shared, Worker};

const LAN_MAC: &str = "02:00:00:00:01:01";
const WAN_MAC: &str = "02:00:00:00:02:01";

fn config_text(filler_rules: usize, limit: u32) -> String {
    let mut s = format!(
        r#"
[[interface]]
name = "lan"
device = "net_null0"
mac = "{LAN_MAC}"
addresses = ["198.18.0.1/15"]

[[interface]]
name = "wan"
device = "net_null1"
mac = "{WAN_MAC}"
addresses = ["203.0.113.1/24"]

[[neighbor]]
interface = "wan"
address = "203.0.113.7"
mac = "02:00:00:00:02:07"

[limits]
states = {limit}

# Adaptive timeouts off for the benchmark: beyond any fill reached here.
[timeouts]
adaptive.start = {start}
adaptive.end = {end}
"#,
        start = limit as u64 * 2,
        end = limit as u64 * 3,
    );
    // Rules that never match the benchmark's traffic, before the ones that pass it: per-host
    // blocks of other sources, and port rules for other services.
    for i in 0..filler_rules {
        if i % 2 == 0 {
            s.push_str(&format!(
                "[[rule]]\naction = \"block\"\nfrom = \"192.0.2.{}\"\n",
                i % 250
            ));
        } else {
            s.push_str(&format!(
                "[[rule]]\naction = \"block\"\nproto = \"tcp\"\nto_port = {}\n",
                1000 + i
            ));
        }
    }
    s.push_str("[[rule]]\naction = \"pass\"\ndirection = \"in\"\non = \"lan\"\n");
    s.push_str("[[rule]]\naction = \"pass\"\ndirection = \"out\"\non = \"wan\"\n");
    s
}

struct Bench {
    worker: Worker<MemPort>,
    states: Arc<StateTable>,
}

/// A worker with `filler_rules` rules before the passing ones and a table for `limit` states
/// (the limit sizes the state index, as `[limits] states` does on an appliance).
fn setup(filler_rules: usize, limit: u32) -> Bench {
    let config = rampart_conf::load_str(Path::new("bench.toml"), &config_text(filler_rules, limit))
        .expect("bench config")
        .config;
    let macs: Vec<MacAddr> = config.interfaces.iter().map(|i| i.mac.unwrap()).collect();
    let shared = Shared::from_config(
        &config,
        &macs,
        StateTableConfig::from_config(&config, 256, 1, 1),
    );
    let states = shared.states.clone();
    let control = Arc::new(ArrayQueue::new(1024));
    let worker = Worker::new(0, vec![MemPort::new(), MemPort::new()], &shared, control);
    Bench { worker, states }
}

/// Client `i`: a source address in 198.18.0.0/15 and a port, towards one server.
fn client(i: u32) -> (IpAddr, u16) {
    let addr = Ipv4Addr::from(0xc612_0000 + (i % 100_000) + 2);
    (IpAddr::V4(addr), 1024 + (i / 100_000) as u16)
}

const SERVER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);
const CLIENT_SEQ: u32 = 1_000_000;
const SERVER_SEQ: u32 = 5_000_000;

fn segment(i: u32, flags: u8) -> Vec<u8> {
    let (src, sport) = client(i);
    TcpFrame {
        src_mac: "02:00:00:00:01:10".parse().unwrap(),
        dst_mac: LAN_MAC.parse().unwrap(),
        src,
        dst: IpAddr::V4(SERVER),
        sport,
        dport: 443,
        seq: CLIENT_SEQ + 1,
        ack: SERVER_SEQ + 1,
        flags: TcpFlags(flags),
        window: 65535,
        payload: vec![0u8; 6],
        ..TcpFrame::default()
    }
    .to_bytes()
}

/// Inserts `n` established connections directly (setup cost is not what is measured).
fn fill(states: &StateTable, n: u32) {
    let peer = |seq: u32| Peer {
        seqlo: seq + 1,
        seqhi: seq + 1 + (1 << 24),
        max_win: 65535,
        wscale: 0,
        state: tcps::ESTABLISHED,
    };
    for i in 0..n {
        let (src, sport) = client(i);
        let (key, src_first) = StateKey::new(6, src, sport, IpAddr::V4(SERVER), 443);
        let st = State {
            key,
            id: 0,
            created_s: 0,
            last_ms: 0,
            packets: [0; 2],
            bytes: [0; 2],
            peers: [peer(CLIENT_SEQ), peer(SERVER_SEQ)],
            creator: 0,
            rule: 0,
            iface: 0,
            timeout: Timeout::TcpEstablished,
            covers: COVER_IN | COVER_OUT,
            flags: if src_first { 0 } else { STATE_INITIATOR_IS_1 },
        };
        let h = states.hash(&key);
        states.lock(h).insert(h, st).expect("room");
    }
}

/// Runs `iters` bursts of 32 frames taken round-robin from `frames`; returns the time.
fn run(b: &mut Bench, frames: &[Vec<u8>], cursor: &mut usize, iters: u64, now_ms: u64) -> Duration {
    let mut elapsed = Duration::ZERO;
    for _ in 0..iters {
        {
            let port = &mut b.worker.ports_mut()[0];
            for _ in 0..BURST {
                port.inject(&frames[*cursor]);
                *cursor = (*cursor + 1) % frames.len();
            }
        }
        let start = Instant::now();
        b.worker.poll(now_ms);
        elapsed += start.elapsed();
        // Return the transmitted buffers to the receiving port's pool, as a NIC's mempool
        // would: no allocation in steady state.
        let ports = b.worker.ports_mut();
        let sent = ports[1].take_tx();
        ports[0].pool.extend(sent);
    }
    elapsed
}

fn established(c: &mut Criterion) {
    let mut group = c.benchmark_group("worker/established");
    group.throughput(Throughput::Elements(BURST as u64));
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(5));
    let mut sizes = vec![100u32, 10_000, 1_000_000];
    if std::env::var("RAMPART_BENCH_10M").map_or(true, |v| v != "0") {
        sizes.push(10_000_000);
    }
    for n in sizes {
        let mut b = setup(10, n + n / 10);
        let t = Instant::now();
        fill(&b.states, n);
        let mem = b.states.memory_bytes();
        eprintln!(
            "worker/established/{n}: filled in {:.1} s; state table {:.1} MB = {:.0} bytes/state (State is {} bytes)",
            t.elapsed().as_secs_f64(),
            mem as f64 / 1e6,
            mem as f64 / n as f64,
            std::mem::size_of::<State>()
        );
        // 1M random flows among the N (or all N when smaller), visited in random order.
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let frames: Vec<Vec<u8>> = (0..n.min(1_000_000))
            .map(|_| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                segment((rng % n as u64) as u32, 0x18)
            })
            .collect();
        let mut cursor = 0;
        group.bench_function(BenchmarkId::from_parameter(n), |bench| {
            bench.iter_custom(|iters| run(&mut b, &frames, &mut cursor, iters, 1000));
        });
        let stats = b.worker.stats();
        assert_eq!(
            stats.total_drops(),
            0,
            "every benchmark packet must be forwarded"
        );
    }
    group.finish();
}

fn new_states(c: &mut Criterion) {
    let mut group = c.benchmark_group("worker/new_states");
    group.throughput(Throughput::Elements(BURST as u64));
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(5));
    for rules in [10usize, 1000] {
        let mut b = setup(rules, 10_000_000);
        let mut next = 0u32;
        let mut ran = false;
        group.bench_function(BenchmarkId::from_parameter(rules), |bench| {
            bench.iter_custom(|iters| {
                ran = true;
                let mut elapsed = Duration::ZERO;
                for _ in 0..iters {
                    if b.states.len() > 8_000_000 {
                        b.states.flush();
                    }
                    // Unique connections: the client index never repeats until a flush.
                    let frames: Vec<Vec<u8>> = (0..BURST as u32)
                        .map(|k| segment(next.wrapping_add(k), 0x02))
                        .collect();
                    next = next.wrapping_add(BURST as u32);
                    if next > 6_000_000 {
                        next = 0;
                        b.states.flush();
                    }
                    let mut cursor = 0;
                    elapsed += run(&mut b, &frames, &mut cursor, 1, 1000);
                }
                elapsed
            });
        });
        let stats = b.worker.stats();
        // (Nothing ran when a filter on the command line left this benchmark out.)
        if ran {
            assert_eq!(
                stats.total_drops(),
                0,
                "every SYN must pass and create a state"
            );
            assert!(stats.state_inserts.get() > 0);
        }
    }
    group.finish();
}

criterion_group!(benches, established, new_states);
criterion_main!(benches);
