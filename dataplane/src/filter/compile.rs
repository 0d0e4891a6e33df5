//! Policy → bit-vector classifier: the construction side. See the module documentation of
//! [`super`] for the algorithm.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use ipnet::IpNet;
use rampart_conf::{
    proto, AddrItem, AddrSpec, AddressFamily, BlockPolicy, Config, Direction, PortRange, Rule,
    TableEntry,
};

use super::prefix::{net_range, PrefixSet, Range};
use super::{Action, AddrMap, CompiledPolicy, IntervalMap, Verdict, DIMS};

/// A bitset over rule indices, used while building.
#[derive(Clone, PartialEq, Eq)]
struct Bits(Vec<u64>);

impl Bits {
    fn zeros(words: usize) -> Bits {
        Bits(vec![0; words])
    }

    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }

    fn toggle(&mut self, i: usize) {
        self.0[i / 64] ^= 1 << (i % 64);
    }

    fn get(&self, i: usize) -> bool {
        self.0[i / 64] & (1 << (i % 64)) != 0
    }

    /// One bit per word: bit `w` of the result says whether word `w` is non-zero.
    fn summary(words: &[u64]) -> Vec<u64> {
        let mut s = vec![0u64; words.len().div_ceil(64)];
        for (w, &x) in words.iter().enumerate() {
            if x != 0 {
                s[w / 64] |= 1 << (w % 64);
            }
        }
        s
    }
}

/// A deduplicating store of fixed-size records of words: record `id` is
/// `arena[id * stride .. (id + 1) * stride]`.
struct Store {
    stride: usize,
    arena: Vec<u64>,
    /// hash → most recent record with that hash; collisions chain through `next`.
    index: HashMap<u64, u32, BuildHasherDefault<IdHasher>>,
    next: Vec<u32>,
}

impl Store {
    fn new(stride: usize) -> Store {
        Store {
            stride,
            arena: Vec::new(),
            index: HashMap::default(),
            next: Vec::new(),
        }
    }

    fn get(&self, id: u32) -> &[u64] {
        let base = id as usize * self.stride;
        &self.arena[base..base + self.stride]
    }

    fn intern(&mut self, rec: &[u64]) -> u32 {
        debug_assert_eq!(rec.len(), self.stride);
        let h = hash_words(rec);
        let mut cur = self.index.get(&h).copied().unwrap_or(u32::MAX);
        while cur != u32::MAX {
            if self.get(cur) == rec {
                return cur;
            }
            cur = self.next[cur as usize];
        }
        let id = u32::try_from(self.next.len()).expect("fewer than 2^32 classes");
        self.arena.extend_from_slice(rec);
        self.next.push(self.index.insert(h, id).unwrap_or(u32::MAX));
        id
    }
}

/// FxHash-style mixing over whole words: a class is hashed once per elementary interval,
/// so SipHash would dominate compile time for large rulesets.
fn hash_words(words: &[u64]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut h = words.len() as u64;
    for &w in words {
        h = (h.rotate_left(5) ^ w).wrapping_mul(K);
    }
    h
}

/// The keys of `Store::index` are already hashes.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | b as u64;
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// A set of intervals over one dimension's values, shared by every rule item that names it,
/// with the items (rule, negated) that refer to it.
struct Atom {
    ranges: Vec<Range>,
    refs: Vec<(u32, bool)>,
}

/// Elementary intervals of one field, with each rule's coverage (the fraction of the
/// field's values it accepts).
struct Swept {
    starts: Vec<u128>,
    classes: Vec<u32>,
    coverage: Vec<f64>,
}

/// The elementary-interval sweep shared by the port and address dimensions.
///
/// `count[r]` is the number of rule `r`'s items that hold at the current point; the sweep
/// starts with every atom "outside" (so `count` holds the constant items plus the negated
/// atom items), walks the atoms' boundaries in order and adjusts counts; a rule's bit is
/// `count > 0`. Each run of points with the same bitset becomes one elementary interval.
/// Cost: O(Σ atom boundaries × references) count updates, plus one hash of the current
/// bitset per boundary point where some bit changed.
fn sweep(mut count: Vec<i32>, atoms: &[Atom], max: u128, store: &mut Store) -> Swept {
    let n = count.len();
    let mut cur = Bits::zeros(store.stride);
    // Where each rule's current run of "set" began, to measure coverage.
    let mut since = vec![0u128; n];
    let mut covered = vec![0f64; n];
    for (r, &c) in count.iter().enumerate() {
        if c > 0 {
            cur.set(r);
        }
    }
    // (point, atom, entering)
    let mut events: Vec<(u128, u32, bool)> = Vec::new();
    for (a, atom) in atoms.iter().enumerate() {
        if atom.refs.is_empty() {
            continue;
        }
        for &(lo, hi) in &atom.ranges {
            events.push((lo, a as u32, true));
            if hi < max {
                events.push((hi + 1, a as u32, false));
            }
        }
    }
    events.sort_unstable_by_key(|e| e.0);

    let mut starts: Vec<u128> = Vec::new();
    let mut classes: Vec<u32> = Vec::new();
    let push = |starts: &mut Vec<u128>, classes: &mut Vec<u32>, start: u128, class: u32| {
        if classes.last() != Some(&class) {
            starts.push(start);
            classes.push(class);
        }
    };
    if events.first().is_none_or(|e| e.0 > 0) {
        push(&mut starts, &mut classes, 0, store.intern(&cur.0));
    }
    let mut i = 0;
    while i < events.len() {
        let point = events[i].0;
        let mut changed = false;
        while i < events.len() && events[i].0 == point {
            let (_, a, entering) = events[i];
            for &(r, negated) in &atoms[a as usize].refs {
                // Entering a positive item's set or leaving a negated one's makes it hold.
                let delta = if entering != negated { 1 } else { -1 };
                let r = r as usize;
                let was = count[r] > 0;
                count[r] += delta;
                if was != (count[r] > 0) {
                    cur.toggle(r);
                    changed = true;
                    if was {
                        covered[r] += (point - since[r]) as f64;
                    } else {
                        since[r] = point;
                    }
                }
            }
            i += 1;
        }
        if changed || classes.is_empty() {
            push(&mut starts, &mut classes, point, store.intern(&cur.0));
        }
    }
    let size = max as f64 + 1.0;
    let coverage = (0..n)
        .map(|r| {
            let tail = if count[r] > 0 {
                (max - since[r]) as f64 + 1.0
            } else {
                0.0
            };
            (covered[r] + tail) / size
        })
        .collect();
    Swept {
        starts,
        classes,
        coverage,
    }
}

/// Which address/port side of a rule a dimension looks at.
#[derive(Clone, Copy)]
enum Side {
    Src,
    Dst,
}

impl Side {
    fn addrs(self, r: &Rule) -> &[AddrSpec] {
        match self {
            Side::Src => &r.from,
            Side::Dst => &r.to,
        }
    }

    fn ports(self, r: &Rule) -> &[PortRange] {
        match self {
            Side::Src => &r.from_port,
            Side::Dst => &r.to_port,
        }
    }
}

fn port_dim(rules: &[Rule], side: Side, store: &mut Store) -> Swept {
    let mut count = vec![0i32; rules.len()];
    let mut atoms: Vec<Atom> = Vec::new();
    let mut by_range: HashMap<(u16, u16), usize> = HashMap::new();
    for (r, rule) in rules.iter().enumerate() {
        let ports = side.ports(rule);
        if ports.is_empty() {
            count[r] = 1;
            continue;
        }
        for p in ports {
            let a = *by_range.entry((p.lo, p.hi)).or_insert_with(|| {
                // An inverted range (lo > hi) contains nothing.
                let ranges = if p.lo <= p.hi {
                    vec![(p.lo as u128, p.hi as u128)]
                } else {
                    vec![]
                };
                atoms.push(Atom {
                    ranges,
                    refs: Vec::new(),
                });
                atoms.len() - 1
            });
            atoms[a].refs.push((r as u32, false));
        }
    }
    sweep(count, &atoms, u16::MAX as u128, store)
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum AtomKey {
    Net(u128, u128),
    Table(usize),
    Own,
}

/// Elementary address intervals of one family (`v6 == false`: IPv4 values).
fn addr_dim(
    rules: &[Rule],
    side: Side,
    v6: bool,
    tables: &[PrefixSet],
    own: &PrefixSet,
    store: &mut Store,
) -> Swept {
    let mut count = vec![0i32; rules.len()];
    let mut atoms: Vec<Atom> = Vec::new();
    let mut by_key: HashMap<AtomKey, usize> = HashMap::new();
    let empty = PrefixSet::default();
    for (r, rule) in rules.iter().enumerate() {
        let specs = side.addrs(rule);
        if specs.is_empty() {
            count[r] = 1;
            continue;
        }
        for spec in specs {
            let key = match &spec.item {
                AddrItem::Any => {
                    // `any` holds everywhere; `!any` nowhere.
                    if !spec.negated {
                        count[r] += 1;
                    }
                    continue;
                }
                // An address has a fixed family: in the other family the item never holds,
                // negated or not (pfctl gives such a rule that family).
                AddrItem::Net(net) if matches!(net, IpNet::V6(_)) != v6 => continue,
                AddrItem::Net(net) => {
                    let (lo, hi) = net_range(net);
                    AtomKey::Net(lo, hi)
                }
                AddrItem::Table(t) => AtomKey::Table(*t),
                AddrItem::SelfAddrs => AtomKey::Own,
            };
            let a = *by_key.entry(key).or_insert_with(|| {
                let ranges = match key {
                    AtomKey::Net(lo, hi) => vec![(lo, hi)],
                    // A dangling table index (impossible in a validated config) is empty.
                    AtomKey::Table(t) => tables.get(t).unwrap_or(&empty).ranges(v6),
                    AtomKey::Own => own.ranges(v6),
                };
                atoms.push(Atom {
                    ranges,
                    refs: Vec::new(),
                });
                atoms.len() - 1
            });
            atoms[a].refs.push((r as u32, spec.negated));
            // The sweep starts outside every atom, where a negated item holds.
            if spec.negated {
                count[r] += 1;
            }
        }
    }
    let max = if v6 { u128::MAX } else { u32::MAX as u128 };
    sweep(count, &atoms, max, store)
}

/// Rough share of traffic per protocol, used only to pick each rule's home dimension
/// (which affects speed, never results).
fn proto_weight(idx: usize) -> f64 {
    match idx {
        i if i >= 256 => 0.6 / 256.0, // TCP, per flags value
        i if i == proto::UDP as usize => 0.3,
        i if i == proto::ICMP as usize || i == proto::ICMP6 as usize => 0.03,
        _ => 0.04 / 252.0,
    }
}

/// The protocol (+ TCP flags) dimension: index `p` for protocol `p != TCP`, `256 + flags`
/// for TCP. Port presence and flags are folded in here: a rule with ports never matches a
/// protocol other than TCP/UDP, and `flags` only constrains TCP.
fn proto_dim(rules: &[Rule], store: &mut Store) -> (Vec<u32>, Vec<f64>) {
    let mut ids = Vec::with_capacity(512);
    let mut coverage = vec![0f64; rules.len()];
    for idx in 0..512usize {
        let (p, flags) = if idx < 256 {
            (idx as u8, None)
        } else {
            (proto::TCP, Some((idx - 256) as u8))
        };
        let mut bits = Bits::zeros(store.stride);
        // Index TCP itself is never looked up (TCP uses 256 + flags); it stays empty.
        if idx != proto::TCP as usize {
            for (r, rule) in rules.iter().enumerate() {
                let proto_ok = rule.proto.is_empty() || rule.proto.contains(&p);
                let ports_ok = p == proto::TCP
                    || p == proto::UDP
                    || (rule.from_port.is_empty() && rule.to_port.is_empty());
                let flags_ok = match (flags, rule.flags) {
                    (Some(f), Some(m)) => m.matches(f),
                    _ => true,
                };
                if proto_ok && ports_ok && flags_ok {
                    bits.set(r);
                    coverage[r] += proto_weight(idx);
                }
            }
        }
        ids.push(store.intern(&bits.0));
    }
    (ids, coverage)
}

/// Interface slots: configured interfaces (and any index a rule names beyond them); slot
/// `slots` stands for "an interface no rule names".
fn iface_slots(config: &Config) -> usize {
    config
        .rules
        .iter()
        .filter_map(|r| r.on.map(|i| i + 1))
        .max()
        .unwrap_or(0)
        .max(config.interfaces.len())
}

/// The (interface, direction, family) dimension, indexed `(slot * 2 + dir) * 2 + af`.
fn meta_dim(config: &Config, slots: usize, store: &mut Store) -> (Vec<u32>, Vec<f64>) {
    let n = config.rules.len();
    let mut ids = Vec::with_capacity((slots + 1) * 4);
    let mut coverage = vec![0f64; n];
    let share = 1.0 / ((slots + 1) * 4) as f64;
    for slot in 0..=slots {
        for dir in [Direction::In, Direction::Out] {
            for af in [AddressFamily::Inet, AddressFamily::Inet6] {
                let mut bits = Bits::zeros(store.stride);
                for (r, rule) in config.rules.iter().enumerate() {
                    if rule.on.is_none_or(|i| i == slot)
                        && rule.direction.is_none_or(|d| d == dir)
                        && rule.af.is_none_or(|a| a == af)
                    {
                        bits.set(r);
                        coverage[r] += share;
                    }
                }
                ids.push(store.intern(&bits.0));
            }
        }
    }
    (ids, coverage)
}

/// Dimension indices (bit `1 << d` in `CompiledPolicy::live`).
pub(super) const META: usize = 0;
pub(super) const PROTO: usize = 1;
pub(super) const SPORT: usize = 2;
pub(super) const DPORT: usize = 3;
pub(super) const SRC: usize = 4;
pub(super) const DST: usize = 5;

/// Compiles a configuration. Two phases: build every dimension's classes (deduplicated
/// bitsets), then decide each rule's home dimension and lay the final records out.
pub(super) fn build(config: &Config) -> CompiledPolicy {
    let rules = &config.rules;
    let n = rules.len();
    let words = n.div_ceil(64).max(1);
    let sum_words = words.div_ceil(64);
    let mut store = Store::new(words);

    let tables: Vec<PrefixSet> = config
        .tables
        .iter()
        .map(|t| PrefixSet::new(&t.entries))
        .collect();
    let own_entries: Vec<TableEntry> = config
        .own_addresses()
        .into_iter()
        .map(|a| TableEntry {
            negated: false,
            net: a.into(),
        })
        .collect();
    let own = PrefixSet::new(&own_entries);

    let mut all = Bits::zeros(words);
    let mut quick = Bits::zeros(words);
    for (r, rule) in rules.iter().enumerate() {
        all.set(r);
        if rule.quick {
            quick.set(r);
        }
    }

    // Phase 1: every dimension's classes.
    let iface_slots = iface_slots(config);
    let (mut meta, meta_cov) = meta_dim(config, iface_slots, &mut store);
    let (mut protos, proto_cov) = proto_dim(rules, &mut store);
    let mut sport = port_dim(rules, Side::Src, &mut store);
    let mut dport = port_dim(rules, Side::Dst, &mut store);
    let mut src4 = addr_dim(rules, Side::Src, false, &tables, &own, &mut store);
    let mut src6 = addr_dim(rules, Side::Src, true, &tables, &own, &mut store);
    let mut dst4 = addr_dim(rules, Side::Dst, false, &tables, &own, &mut store);
    let mut dst6 = addr_dim(rules, Side::Dst, true, &tables, &own, &mut store);
    // An address rule's coverage: the larger of its two families'.
    // Per rule, per dimension; an address rule's coverage is the larger of its families'.
    let coverage: Vec<[f64; DIMS]> = (0..n)
        .map(|r| {
            let mut c = [0.0; DIMS];
            c[META] = meta_cov[r];
            c[PROTO] = proto_cov[r];
            c[SPORT] = sport.coverage[r];
            c[DPORT] = dport.coverage[r];
            c[SRC] = src4.coverage[r].max(src6.coverage[r]);
            c[DST] = dst4.coverage[r].max(dst6.coverage[r]);
            c
        })
        .collect();
    let mut dim_classes: [Vec<u32>; DIMS] = [
        meta.clone(),
        // Index TCP is never looked up.
        protos
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != proto::TCP as usize)
            .map(|(_, &c)| c)
            .collect(),
        sport.classes.clone(),
        dport.classes.clone(),
        src4.classes.iter().chain(&src6.classes).copied().collect(),
        dst4.classes.iter().chain(&dst6.classes).copied().collect(),
    ];

    // The wildcard set of each dimension: the rules every class of it accepts. A dimension
    // whose wildcard set is every rule cannot change a result and is not evaluated.
    let mut wild: Vec<Bits> = Vec::with_capacity(DIMS);
    let mut live = 0u8;
    for (d, classes) in dim_classes.iter_mut().enumerate() {
        classes.sort_unstable();
        classes.dedup();
        let mut w = all.clone();
        for &c in classes.iter() {
            for (x, y) in w.0.iter_mut().zip(store.get(c)) {
                *x &= y;
            }
        }
        if w != all {
            live |= 1 << d;
        }
        wild.push(w);
    }

    // Each rule's home: the live dimension where it is specific (not wildcard) and accepts
    // the smallest share of values. A rule specific nowhere matches every packet.
    let mut home: Vec<Bits> = vec![Bits::zeros(words); DIMS];
    let mut always = Bits::zeros(words);
    // Tie-break order: addresses, then ports, then the coarse dimensions.
    let preference = [DST, SRC, DPORT, SPORT, PROTO, META];
    for (r, cov) in coverage.iter().enumerate() {
        // `min_by` keeps the first of equal minima, so ties follow `preference`.
        let best = preference
            .into_iter()
            .filter(|&d| live & (1 << d) != 0 && !wild[d].get(r))
            .min_by(|&a, &b| cov[a].total_cmp(&cov[b]));
        match best {
            Some(d) => home[d].set(r),
            None => always.set(r),
        }
    }

    // Phase 2: final records [home summary | non-zero summary | bits], per dimension.
    let mut records = Store::new(2 * sum_words + words);
    let mut remapped: HashMap<(usize, u32), u32> = HashMap::new();
    let mut rec = Vec::with_capacity(records.stride);
    let mut remap = |d: usize, ids: &mut [u32]| {
        if live & (1 << d) == 0 {
            // Never looked up.
            ids.fill(0);
            return;
        }
        for id in ids.iter_mut() {
            *id = *remapped.entry((d, *id)).or_insert_with(|| {
                let bits = store.get(*id);
                let homed: Vec<u64> = bits.iter().zip(&home[d].0).map(|(b, h)| b & h).collect();
                rec.clear();
                rec.extend(Bits::summary(&homed));
                rec.extend(Bits::summary(bits));
                rec.extend_from_slice(bits);
                records.intern(&rec)
            });
        }
    };
    remap(META, &mut meta);
    remap(PROTO, &mut protos);
    remap(SPORT, &mut sport.classes);
    remap(DPORT, &mut dport.classes);
    remap(SRC, &mut src4.classes);
    remap(SRC, &mut src6.classes);
    remap(DST, &mut dst4.classes);
    remap(DST, &mut dst6.classes);
    drop(store);

    // A dimension that is not live keeps a one-interval map (never consulted).
    let port_map = |s: Swept, d: usize| {
        if live & (1 << d) == 0 {
            return IntervalMap::new(vec![0], vec![0]);
        }
        IntervalMap::new(s.starts.into_iter().map(|x| x as u16).collect(), s.classes)
    };
    let addr_map = |s4: Swept, s6: Swept, d: usize| {
        if live & (1 << d) == 0 {
            return AddrMap {
                v4: IntervalMap::new(vec![0], vec![0]),
                v6: IntervalMap::new(vec![0], vec![0]),
            };
        }
        AddrMap {
            v4: IntervalMap::new(
                s4.starts.into_iter().map(|x| x as u32).collect(),
                s4.classes,
            ),
            v6: IntervalMap::new(s6.starts, s6.classes),
        }
    };

    let block_return = config.policy.block_policy == BlockPolicy::Return;
    let verdicts = rules
        .iter()
        .enumerate()
        .map(|(r, rule)| Verdict {
            action: rule.action,
            rule: Some(r as u32),
            quick: rule.quick,
            keep_state: rule.action == Action::Pass && rule.keep_state,
            log: rule.log,
            // `rule.return_` is already resolved against the block policy by the loader
            // (an explicit `return = false` is pf's `block drop`).
            return_: rule.action == Action::Block && rule.return_,
        })
        .collect();
    let default = Verdict {
        action: config.policy.default,
        rule: None,
        quick: false,
        keep_state: false,
        log: false,
        return_: config.policy.default == Action::Block && block_return,
    };
    // With no live dimension every rule matches every packet.
    let unconditional = rules
        .iter()
        .position(|r| r.quick)
        .or(n.checked_sub(1))
        .map(|r| r as u32);

    let mut arena = records.arena;
    arena.shrink_to_fit();
    CompiledPolicy {
        rules: n,
        words,
        sum_words,
        arena,
        quick: quick.0,
        always: Bits::summary(&always.0),
        live,
        unconditional,
        iface_slots,
        meta,
        proto: protos,
        sport: port_map(sport, SPORT),
        dport: port_map(dport, DPORT),
        src: addr_map(src4, src6, SRC),
        dst: addr_map(dst4, dst6, DST),
        verdicts,
        default,
    }
}
