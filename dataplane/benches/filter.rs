//! Policy evaluation throughput: `cargo bench -p rampart-dataplane --bench filter`.
//!
//! Generated rulesets of 10, 1 000 and 10 000 rules (a block-all first, per-host pass rules
//! with distinct /32 or /24 destinations, port rules, some quick blocks) and a ruleset with a
//! 100 000-prefix table, each evaluated against a rotating array of pre-generated packets
//! (some deciding early, some late, some matching only the block-all); plus the memory worst
//! case, 10 000 rules that each name their own hosts and ports, and the evaluation worst
//! case, 10 000 rules that all match. Compile time and memory are printed once per ruleset
//! from the setup.

use std::hint::black_box;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ipnet::IpNet;
use rampart_conf::{
    proto, tcp_flags, Action, AddrItem, AddrSpec, Config, Control, Direction, Dpdk, Interface,
    Limits, Origin, PolicyOptions, PortRange, Rule, Table, TableEntry, TcpFlagsMatch, Timeouts,
};
use rampart_dataplane::filter::{CompiledPolicy, PacketMeta};

/// xorshift64*: the same figures on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn ip4(a: u32) -> IpAddr {
    IpAddr::V4(a.into())
}

fn base_rule(action: Action) -> Rule {
    Rule {
        action,
        direction: None,
        quick: false,
        on: None,
        af: None,
        proto: vec![],
        from: vec![],
        from_port: vec![],
        to: vec![],
        to_port: vec![],
        flags: None,
        keep_state: false,
        log: false,
        label: None,
        return_: false,
        origin: Origin::default(),
    }
}

fn net(a: u32, len: u8) -> AddrSpec {
    AddrSpec {
        negated: false,
        item: AddrItem::Net(IpNet::new(ip4(a), len).unwrap().trunc()),
    }
}

fn config(tables: Vec<Table>, rules: Vec<Rule>) -> Config {
    let iface = |name: &str, addr: &str| Interface {
        name: name.into(),
        device: format!("net_null_{name}"),
        mac: None,
        addresses: vec![addr.parse().unwrap()],
        mtu: 1500,
        origin: Origin::default(),
    };
    Config {
        path: "bench.toml".into(),
        policy_path: None,
        appliance: Default::default(),
        dpdk: Dpdk::default(),
        interfaces: vec![
            iface("wan", "203.0.113.2/24"),
            iface("lan", "10.255.255.1/8"),
        ],
        routes: vec![],
        neighbors: vec![],
        carp: vec![],
        pfsync: None,
        control: Control::default(),
        limits: Limits::default(),
        timeouts: Timeouts::default(),
        tables,
        policy: PolicyOptions::default(),
        rules,
    }
}

/// The destination of per-host rule `i`: 10.x.y.z, distinct per rule.
fn host(i: u32) -> u32 {
    0x0a00_0000 | (i * 256 + 7)
}

/// What each generated rule is, so packets can be aimed at it.
#[derive(Clone, Copy)]
enum Kind {
    BlockAll,
    QuickBlockSrc(u32),
    PortRule(u16),
    Host { dst: u32, port: u16 },
    Net24 { dst: u32 },
}

/// A realistic mix: `block all` first, then ~5% `block quick from <a /24>`, ~15% port rules
/// (`pass in proto tcp to port P`), ~65% per-host rules (`pass in on lan proto tcp to
/// 10.x.y.z/32 port P`, stateful with `flags S/SA`), ~15% per-/24 rules (`pass proto
/// {tcp udp} to 10.x.y.0/24`).
fn ruleset(n: usize, rng: &mut Rng) -> (Vec<Rule>, Vec<Kind>) {
    let mut rules = vec![base_rule(Action::Block)];
    let mut kinds = vec![Kind::BlockAll];
    for i in 1..n as u32 {
        let roll = rng.below(100);
        let (mut r, kind) = if roll < 5 {
            let src = 0xc600_0000 + (i << 8); // 198.0.0.0 and up: a /24 per rule
            let mut r = base_rule(Action::Block);
            r.quick = true;
            r.from = vec![net(src, 24)];
            (r, Kind::QuickBlockSrc(src))
        } else if roll < 20 {
            let port = 1000 + i as u16;
            let mut r = base_rule(Action::Pass);
            r.direction = Some(Direction::In);
            r.proto = vec![proto::TCP];
            r.to_port = vec![PortRange { lo: port, hi: port }];
            (r, Kind::PortRule(port))
        } else if roll < 85 {
            let port = [22u16, 80, 443, 8080][rng.below(4) as usize];
            let mut r = base_rule(Action::Pass);
            r.direction = Some(Direction::In);
            r.on = Some(1);
            r.proto = vec![proto::TCP];
            r.to = vec![net(host(i), 32)];
            r.to_port = vec![PortRange { lo: port, hi: port }];
            (r, Kind::Host { dst: host(i), port })
        } else {
            let mut r = base_rule(Action::Pass);
            r.proto = vec![proto::TCP, proto::UDP];
            r.to = vec![net(host(i), 24)];
            (r, Kind::Net24 { dst: host(i) })
        };
        if r.action == Action::Pass {
            r.keep_state = true;
            r.flags = Some(TcpFlagsMatch::SYN_ONLY);
        }
        rules.push(r);
        kinds.push(kind);
    }
    (rules, kinds)
}

fn packet(src: u32, dst: u32, dport: u16) -> PacketMeta {
    PacketMeta {
        iface: 1,
        dir: Direction::In,
        src: ip4(src),
        dst: ip4(dst),
        proto: proto::TCP,
        sport: 40000,
        dport,
        tcp_flags: tcp_flags::SYN,
    }
}

/// 4096 packets: a quarter aimed at the first tenth of the rules, a quarter at the last
/// tenth, a quarter anywhere, a quarter at nothing but the block-all (random address, port).
fn packets(kinds: &[Kind], rng: &mut Rng) -> Vec<PacketMeta> {
    let n = kinds.len() as u64;
    (0..4096)
        .map(|k| {
            let client = 0xc000_0200 | rng.below(256) as u32; // 192.0.2.x
            let target = match k % 4 {
                0 => rng.below(n.div_ceil(10)),
                1 => n - 1 - rng.below(n.div_ceil(10)),
                2 => rng.below(n),
                _ => {
                    return packet(
                        client,
                        0xcb00_7100 | rng.below(256) as u32,
                        1 + rng.below(999) as u16,
                    )
                }
            } as usize;
            match kinds[target] {
                Kind::BlockAll => packet(client, 0xcb00_7101, 9),
                Kind::QuickBlockSrc(src) => packet(src | 9, host(1), 80),
                Kind::PortRule(p) => packet(client, 0xcb00_7100 | rng.below(256) as u32, p),
                Kind::Host { dst, port } => packet(client, dst, port),
                Kind::Net24 { dst } => packet(client, dst ^ 0x30, 5353),
            }
        })
        .collect()
}

/// Compiles (best of three, to tame a noisy VM) and reports the build figures once.
fn compile(name: &str, cfg: &Config) -> CompiledPolicy {
    let mut best = Duration::MAX;
    let mut policy = None;
    for _ in 0..3 {
        let start = Instant::now();
        let p = CompiledPolicy::compile(cfg);
        best = best.min(start.elapsed());
        policy = Some(p);
    }
    let policy = policy.unwrap();
    let s = policy.stats();
    eprintln!(
        "filter/{name}: compile {:.2} ms, memory_bytes {} ({:.2} MiB), {} classes of {} words, {} live dimensions, intervals {:?}",
        best.as_secs_f64() * 1e3,
        policy.memory_bytes(),
        policy.memory_bytes() as f64 / (1 << 20) as f64,
        s.classes,
        s.words,
        s.live_dimensions,
        s.intervals,
    );
    policy
}

fn bench_policy(c: &mut Criterion, name: &str, cfg: &Config, pkts: &[PacketMeta]) {
    let policy = compile(name, cfg);
    // Where the packets end: a sanity line for the reader of the figures.
    let (mut quick, mut default, mut rule0) = (0, 0, 0);
    for p in pkts {
        let v = policy.evaluate(p);
        quick += v.quick as usize;
        default += v.rule.is_none() as usize;
        rule0 += (v.rule == Some(0)) as usize;
    }
    eprintln!(
        "filter/{name}: of {} packets, {quick} decided by quick, {rule0} by rule 0, {default} by the default",
        pkts.len()
    );
    let mut group = c.benchmark_group("filter");
    group.throughput(Throughput::Elements(1));
    let mask = pkts.len() - 1;
    assert!(pkts.len().is_power_of_two());
    group.bench_function(name, |b| {
        let mut i = 0usize;
        b.iter(|| {
            i = (i + 1) & mask;
            black_box(policy.evaluate(black_box(&pkts[i])))
        })
    });
    group.finish();
}

fn rulesets(c: &mut Criterion) {
    for n in [10usize, 1_000, 10_000] {
        let mut rng = Rng(0x5eed + n as u64);
        let (rules, kinds) = ruleset(n, &mut rng);
        let pkts = packets(&kinds, &mut rng);
        let cfg = config(vec![], rules);
        bench_policy(c, &format!("rules_{n}"), &cfg, &pkts);
    }
}

/// The memory worst case: 10 000 rules, each with its own source host, source port,
/// destination host and destination port, so every address and port dimension has a
/// class per rule.
fn distinct(c: &mut Criterion) {
    let n = 10_000u32;
    let mut rules = vec![base_rule(Action::Block)];
    for i in 1..n {
        let mut r = base_rule(Action::Pass);
        r.proto = vec![proto::TCP];
        r.from = vec![net(0xc000_0000 + i, 32)];
        r.from_port = vec![PortRange {
            lo: 20_000 + i as u16,
            hi: 20_000 + i as u16,
        }];
        r.to = vec![net(host(i), 32)];
        r.to_port = vec![PortRange {
            lo: 1 + i as u16,
            hi: 1 + i as u16,
        }];
        rules.push(r);
    }
    let mut rng = Rng(0xd157);
    let pkts: Vec<PacketMeta> = (0..4096)
        .map(|k| {
            let i = 1 + rng.below(n as u64 - 1) as u32;
            let mut p = packet(0xc000_0000 + i, host(i), 1 + i as u16);
            p.sport = 20_000 + i as u16;
            if k % 4 == 3 {
                p.dport ^= 1; // near miss: only the block-all matches
            }
            p
        })
        .collect();
    bench_policy(c, "rules_10000_distinct", &config(vec![], rules), &pkts);
}

/// The evaluation worst case: 10 000 rules that all match the packets (no quick), so
/// every word is a candidate and every word of every live dimension is ANDed.
fn dense(c: &mut Criterion) {
    let rules: Vec<Rule> = (0..10_000)
        .map(|i| {
            let mut r = base_rule(if i % 2 == 0 {
                Action::Pass
            } else {
                Action::Block
            });
            r.proto = vec![proto::TCP];
            r.from = vec![net(0x0a00_0000, 8)];
            r.to = vec![net(0x0a00_0000, 8)];
            r.to_port = vec![PortRange { lo: 1, hi: 65535 }];
            r
        })
        .collect();
    let mut rng = Rng(0xde45e);
    let pkts: Vec<PacketMeta> = (0..4096)
        .map(|_| {
            let a = 0x0a00_0000 | rng.below(1 << 24) as u32;
            packet(a, a ^ 0x00ff_ff00, 1 + rng.below(65535) as u16)
        })
        .collect();
    bench_policy(c, "rules_10000_dense", &config(vec![], rules), &pkts);
}

/// `block all`, `block quick from <bogons>` (100 000 random prefixes, /16 to /32, 5% negated),
/// `pass in proto tcp to port 22`, `pass in on lan to 10.0.0.0/8 port 80`, `pass out`.
fn table(c: &mut Criterion) {
    let mut rng = Rng(0xb060);
    let entries: Vec<TableEntry> = (0..100_000)
        .map(|_| TableEntry {
            negated: rng.below(20) == 0,
            // A blocklist's shape: mostly /24s, some /16s, /20s and single hosts.
            net: IpNet::new(
                ip4(rng.next() as u32),
                [16, 20, 20, 24, 24, 24, 24, 24, 24, 32][rng.below(10) as usize],
            )
            .unwrap()
            .trunc(),
        })
        .collect();
    let bogons = Table {
        name: "bogons".into(),
        entries,
        origin: Origin::default(),
    };
    let mut quick = base_rule(Action::Block);
    quick.quick = true;
    quick.from = vec![AddrSpec {
        negated: false,
        item: AddrItem::Table(0),
    }];
    let mut ssh = base_rule(Action::Pass);
    ssh.direction = Some(Direction::In);
    ssh.proto = vec![proto::TCP];
    ssh.to_port = vec![PortRange { lo: 22, hi: 22 }];
    let mut web = base_rule(Action::Pass);
    web.direction = Some(Direction::In);
    web.on = Some(1);
    web.to = vec![net(0x0a00_0000, 8)];
    web.to_port = vec![PortRange { lo: 80, hi: 80 }];
    let mut out = base_rule(Action::Pass);
    out.direction = Some(Direction::Out);
    let cfg = config(
        vec![bogons],
        vec![base_rule(Action::Block), quick, ssh, web, out],
    );
    let pkts: Vec<PacketMeta> = (0..4096)
        .map(|_| {
            let dport = [22u16, 80, 443][rng.below(3) as usize];
            packet(
                rng.next() as u32,
                0x0a00_0000 | rng.below(1 << 24) as u32,
                dport,
            )
        })
        .collect();
    let start = Instant::now();
    let set = rampart_dataplane::filter::PrefixSet::new(&cfg.tables[0].entries);
    eprintln!(
        "filter/table_100k: PrefixSet::new {:.2} ms, {} bytes",
        start.elapsed().as_secs_f64() * 1e3,
        set.memory_bytes()
    );
    bench_policy(c, "table_100k", &cfg, &pkts);
}

criterion_group!(benches, rulesets, distinct, dense, table);
criterion_main!(benches);
