//! The policy, compiled for fast evaluation with pf's semantics.
//!
//! # Semantics (what [`CompiledPolicy::evaluate`] computes)
//!
//! Rules are taken in order. A rule matches a packet when every criterion it has holds:
//! interface, direction, address family, protocol, source and destination address lists
//! (OR over the items; `!` per item; an address item has a fixed family and never matches a
//! packet of the other family, negated or not; tables use longest-prefix match with negated
//! entries; `self` is the appliance's own addresses), source and destination ports (only
//! TCP/UDP packets have ports, so a rule with ports never matches anything else), and TCP
//! flags (checked on TCP packets only). The packet's family is that of its source address.
//!
//! **The first matching `quick` rule decides; otherwise the last matching rule does; if
//! none matches, the policy default does** (no rule, no state). The rules "matched on the
//! way" ([`Trace::matched`]) are the matching rules up to and including the deciding one.
//!
//! # Algorithm: a bit-vector classifier with home-dimension candidate filtering
//!
//! The base is Lakshman & Stiliadis' bit-parallel classifier ("High-speed policy-based
//! packet forwarding using efficient multi-dimensional range matching", SIGCOMM 1998). The
//! policy is cut into six *dimensions*, each a function from one packet field to the
//! bitset (one bit per rule) of the rules that accept that value in that dimension:
//!
//! | dimension | key | lookup |
//! |---|---|---|
//! | meta | (interface, direction, family) | direct index |
//! | protocol | protocol, or `256 + flags` for TCP | direct index (512 entries) |
//! | src port, dst port | port | elementary intervals (see `search.rs`) |
//! | src, dst address | address | elementary intervals, per family |
//!
//! Cross-field rules are folded into the small dimensions so that the dimensions are
//! independent: "a rule with ports never matches a non-TCP/UDP packet" and "flags apply to
//! TCP only" live in the protocol dimension; the rule's `af` lives in the meta dimension;
//! an address item's fixed family lives in the address dimension of each family.
//!
//! *Elementary intervals* come from a sweep over every boundary of every prefix, table
//! interval (a table is first reduced to disjoint member intervals by longest-prefix match,
//! see [`PrefixSet`]), `self` address and port range: between two consecutive boundaries
//! every rule's answer is constant. The sweep keeps, per rule, the number of its items that
//! hold, and flips the rule's bit when that count crosses zero (negated items start out
//! holding and stop inside their set). Adjacent intervals with equal bitsets are merged,
//! and every distinct bitset (*class*) is stored once. A dimension that accepts every rule
//! for every value is not evaluated at all.
//!
//! A packet matches the AND of its classes, one per live dimension. ANDing every word is
//! `D · ceil(N / 64)` operations, and plain bit vectors cannot skip much: the rules that
//! do not constrain a dimension (its *wildcards*, e.g. the port rules in the destination
//! address dimension) are set in every class of that dimension, so every class is dense
//! and the aggregated bit vectors of Baboescu & Varghese ("Scalable packet
//! classification", SIGCOMM 2001) find almost every word non-zero. The AND itself is sparse,
//! and this is what the implementation exploits:
//!
//! - Each rule gets a **home**: one live dimension in which it is not a wildcard, chosen
//!   as the one where it accepts the smallest share of values (a /32 destination beats
//!   `port 443`, which beats `proto tcp`). A matching rule must be in its home dimension's
//!   class for the packet. Rules with no home (wildcards in every live dimension, such as
//!   `block all`) match every packet.
//! - Each class record carries, besides its bitset, a *home summary* (one bit per word:
//!   does the word hold a rule that is at home in this dimension and accepted here?) and a
//!   *non-zero summary* (one bit per word: is the word non-zero?).
//! - Candidate words = (OR of the classes' home summaries, OR the home-less rules) AND (AND
//!   of the non-zero summaries). Only those words are ANDed, in ascending order: the
//!   first word with a bit also in the `quick` mask decides (its lowest such bit);
//!   otherwise the highest set bit of the last non-zero word does. Nothing is allocated,
//!   and no scratch buffer is used.
//!
//! Why this never misses a match: a matching rule is accepted by every dimension, its home
//! included, so its word is in the home summary of the packet's class there (or, without a
//! home, in the always-summary), and a word holding a matching rule is non-zero in every
//! dimension. Candidate words are then ANDed exactly, so extra candidates cost time, never
//! correctness; the home choice is a heuristic for speed only.
//!
//! Measured on the benchmark's 10 000-rule policy (docs/performance.md has the command
//! and all figures): ANDing every word, with chunk-level aggregated bit vectors, took
//! 215 ns; home summaries, 60 ns; with the indexed interval lookup (`search.rs`), about
//! 40 ns. Two variants of the word loop were measured and dropped: ANDing runs of
//! consecutive candidate words four at a time (vectorized) took the all-rules-match worst
//! case from about 245 ns to 205 ns but cost 3 to 6 ns on every realistic policy, in line
//! or out of line.
//!
//! ## Cost and worst cases
//!
//! With `N` rules, `W = ceil(N / 64)` words, `S = ceil(W / 64)` summary words, `D ≤ 6`
//! live dimensions and `I` elementary intervals in a dimension:
//!
//! - **Evaluation**: at most four interval lookups (`O(log I)`; IPv4 and ports usually
//!   one bucket of a direct index), `2 · D · S` summary words, then `D` words per candidate
//!   word. Worst case (every word a candidate, no quick rule matching early): `D · W` word
//!   ANDs, as a plain bit-vector classifier (10 000 rules: 157 words, ≈ 950 ANDs;
//!   measured with 4 live dimensions, ≈ 260 ns). It
//!   happens when many rules are at home in a coarse dimension the packet hits (say 5 000
//!   rules that only say `proto tcp` or only `on lan`). pf's skip steps, by comparison,
//!   visit every rule when consecutive rules differ in every criterion.
//! - **Memory**: one record per distinct class per dimension, `8 · (W + 2S)` bytes each.
//!   A dimension has at most `2k + 1` elementary intervals for `k` prefixes/ranges, so the
//!   worst case is `O(k · N / 8)` bytes per dimension, quadratic in the rule count: 10 000
//!   rules each with its own destination host make 10 000 destination classes, ≈ 13 MB;
//!   with their own source and destination hosts and ports, 20 001 records (records are
//!   shared between dimensions when equal), ≈ 26 MB (measured). Tables cost intervals,
//!   not classes: a 100 000-prefix table used by a few rules is a few hundred thousand
//!   interval starts and a handful of classes. IPv4 maps with ≥ 1 024 intervals add a
//!   256 KiB bucket index. [`CompiledPolicy::memory_bytes`] reports the real figure.
//! - **Compile**: sorting the boundaries (`O(k log k)`), the sweep (each boundary updates
//!   every rule item that references it: a table shared by `R` rules costs `R` updates per
//!   boundary) and one hash of a `W`-word bitset per boundary where a bit changed:
//!   `O(k · W)`. Then one pass over each dimension's classes for wildcards and summaries.

mod compile;
mod prefix;
mod search;
#[cfg(test)]
mod tests;

use std::net::IpAddr;

use rampart_conf::{proto, Action, AddressFamily, Config, Direction};

use compile::{DPORT, DST, META, PROTO, SPORT, SRC};
pub use prefix::PrefixSet;
use search::IntervalMap;

/// Number of dimensions.
const DIMS: usize = 6;

/// The fields of a packet that rules look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketMeta {
    /// Index into `config.interfaces`; an index no rule names matches only rules without `on`.
    pub iface: u16,
    pub dir: Direction,
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IP protocol number.
    pub proto: u8,
    /// Ports: meaningful for TCP and UDP only (ignored otherwise).
    pub sport: u16,
    pub dport: u16,
    /// TCP flags as on the wire (ignored for other protocols).
    pub tcp_flags: u8,
}

/// What to do with a packet that matched no state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub action: Action,
    /// The deciding rule (0-based); `None` for the policy default.
    pub rule: Option<u32>,
    pub quick: bool,
    /// Create a state (pass rules with `keep state` only; never for the default).
    pub keep_state: bool,
    pub log: bool,
    /// Block with a TCP RST / ICMP unreachable rather than silently.
    pub return_: bool,
}

impl Verdict {
    pub fn is_pass(&self) -> bool {
        self.action == Action::Pass
    }
}

/// A verdict with the rules that matched on the way to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trace {
    pub verdict: Verdict,
    /// Every matching rule with index ≤ the deciding rule, ascending (0-based).
    pub matched: Vec<u32>,
}

/// Sizes of the compiled form, for `rampart ctl` and the documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PolicyStats {
    pub rules: usize,
    /// 64-bit words per class.
    pub words: usize,
    /// Class records stored (distinct bitsets, per dimension where their summaries differ).
    pub classes: usize,
    /// Dimensions evaluated per packet (the others accept every rule).
    pub live_dimensions: usize,
    /// Elementary intervals: source ports, destination ports, IPv4 and IPv6 sources,
    /// IPv4 and IPv6 destinations.
    pub intervals: [usize; 6],
}

/// An address dimension: one interval map per family.
#[derive(Debug)]
struct AddrMap {
    v4: IntervalMap<u32>,
    v6: IntervalMap<u128>,
}

impl AddrMap {
    #[inline]
    fn get(&self, a: IpAddr) -> u32 {
        match a {
            IpAddr::V4(a) => self.v4.get(u32::from(a)),
            IpAddr::V6(a) => self.v6.get(u128::from(a)),
        }
    }
}

/// The compiled policy. Immutable once built; share it between workers behind an `Arc`.
#[derive(Debug)]
pub struct CompiledPolicy {
    rules: usize,
    /// Words per rule bitset: `ceil(rules / 64)`, at least 1.
    words: usize,
    /// Words per summary: `ceil(words / 64)`.
    sum_words: usize,
    /// Every class record, `2 * sum_words + words` words each: the home summary (bit `w`:
    /// word `w` holds a rule that is at home in this record's dimension and accepted here),
    /// the non-zero summary (bit `w`: word `w` is not zero), then the rule bitset.
    arena: Vec<u64>,
    /// Bits of the `quick` rules, `words` words.
    quick: Vec<u64>,
    /// Summary (`sum_words` words) of the rules that are specific in no live dimension and
    /// so match every packet.
    always: Vec<u64>,
    /// Which dimensions are evaluated: bit `1 << d`.
    live: u8,
    /// The decision when no dimension is live (every rule matches every packet).
    unconditional: Option<u32>,
    iface_slots: usize,
    meta: Vec<u32>,
    proto: Vec<u32>,
    sport: IntervalMap<u16>,
    dport: IntervalMap<u16>,
    src: AddrMap,
    dst: AddrMap,
    /// The verdict of each rule, should it decide.
    verdicts: Vec<Verdict>,
    default: Verdict,
}

impl CompiledPolicy {
    /// Compiles `config.rules` with `config.tables`, `self` = `config.own_addresses()` and
    /// `config.policy`.
    pub fn compile(config: &Config) -> CompiledPolicy {
        compile::build(config)
    }

    /// The verdict for a packet that matched no state. Hot path: no allocation, no locks.
    #[inline]
    pub fn evaluate(&self, pkt: &PacketMeta) -> Verdict {
        match self.decide(pkt) {
            Some(r) => self.verdicts[r as usize],
            None => self.default,
        }
    }

    /// The verdict and every rule matched on the way to it (for `rampart trace`).
    pub fn trace(&self, pkt: &PacketMeta) -> Trace {
        let (ids, n) = self.class_ids(pkt);
        let data = 2 * self.sum_words;
        let mut matched = Vec::new();
        for w in 0..self.words {
            let word = if n == 0 {
                // No live dimension: every rule matches.
                u64::MAX
            } else {
                ids[..n]
                    .iter()
                    .fold(u64::MAX, |acc, &id| acc & self.record(id)[data + w])
            };
            let mut bits = word;
            while bits != 0 {
                let r = (w * 64) as u32 + bits.trailing_zeros();
                if r as usize >= self.rules {
                    break;
                }
                matched.push(r);
                bits &= bits - 1;
            }
        }
        let decision = matched
            .iter()
            .copied()
            .find(|&r| self.verdicts[r as usize].quick)
            .or(matched.last().copied());
        let verdict = match decision {
            Some(r) => {
                matched.retain(|&m| m <= r);
                self.verdicts[r as usize]
            }
            None => self.default,
        };
        Trace { verdict, matched }
    }

    pub fn rule_count(&self) -> usize {
        self.rules
    }

    /// Approximate heap footprint in bytes of the compiled form.
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + (self.arena.capacity() + self.quick.capacity() + self.always.capacity()) * 8
            + (self.meta.capacity() + self.proto.capacity()) * 4
            + self.sport.memory_bytes()
            + self.dport.memory_bytes()
            + self.src.v4.memory_bytes()
            + self.src.v6.memory_bytes()
            + self.dst.v4.memory_bytes()
            + self.dst.v6.memory_bytes()
            + self.verdicts.capacity() * std::mem::size_of::<Verdict>()
    }

    pub fn stats(&self) -> PolicyStats {
        PolicyStats {
            rules: self.rules,
            words: self.words,
            classes: self.arena.len() / (2 * self.sum_words + self.words),
            live_dimensions: self.live.count_ones() as usize,
            intervals: [
                self.sport.len(),
                self.dport.len(),
                self.src.v4.len(),
                self.src.v6.len(),
                self.dst.v4.len(),
                self.dst.v6.len(),
            ],
        }
    }

    #[inline]
    fn record(&self, id: u32) -> &[u64] {
        let stride = 2 * self.sum_words + self.words;
        let base = id as usize * stride;
        &self.arena[base..base + stride]
    }

    /// The class records of the live dimensions for `pkt`, and how many there are.
    #[inline]
    fn class_ids(&self, pkt: &PacketMeta) -> ([u32; DIMS], usize) {
        let mut ids = [0u32; DIMS];
        let mut n = 0;
        let live = |d: usize| self.live & (1 << d) != 0;
        if live(META) {
            let slot = (pkt.iface as usize).min(self.iface_slots);
            let dir = (pkt.dir == Direction::Out) as usize;
            let af = (AddressFamily::of(&pkt.src) == AddressFamily::Inet6) as usize;
            ids[n] = self.meta[(slot * 2 + dir) * 2 + af];
            n += 1;
        }
        if live(PROTO) {
            let idx = if pkt.proto == proto::TCP {
                256 + pkt.tcp_flags as usize
            } else {
                pkt.proto as usize
            };
            ids[n] = self.proto[idx];
            n += 1;
        }
        if live(DST) {
            ids[n] = self.dst.get(pkt.dst);
            n += 1;
        }
        if live(SRC) {
            ids[n] = self.src.get(pkt.src);
            n += 1;
        }
        if live(DPORT) {
            ids[n] = self.dport.get(pkt.dport);
            n += 1;
        }
        if live(SPORT) {
            ids[n] = self.sport.get(pkt.sport);
            n += 1;
        }
        (ids, n)
    }

    /// The deciding rule: the first matching quick rule, else the last matching rule.
    #[inline]
    fn decide(&self, pkt: &PacketMeta) -> Option<u32> {
        let (ids, n) = self.class_ids(pkt);
        if n == 0 {
            return self.unconditional;
        }
        let recs = ids.map(|id| self.record(id));
        let recs = &recs[..n];
        let s = self.sum_words;
        let data = 2 * s;
        let mut last = None;
        for sw in 0..s {
            // Candidate words: those holding a rule accepted by its home dimension (or
            // matching everything), and non-zero in every dimension.
            let mut homed = self.always[sw];
            let mut nonzero = u64::MAX;
            for r in recs {
                homed |= r[sw];
                nonzero &= r[s + sw];
            }
            let mut candidates = homed & nonzero;
            while candidates != 0 {
                let w = sw * 64 + candidates.trailing_zeros() as usize;
                candidates &= candidates - 1;
                let acc = recs.iter().fold(u64::MAX, |acc, r| acc & r[data + w]);
                if acc == 0 {
                    continue;
                }
                let q = acc & self.quick[w];
                if q != 0 {
                    return Some((w * 64) as u32 + q.trailing_zeros());
                }
                last = Some((w * 64) as u32 + 63 - acc.leading_zeros());
            }
        }
        last
    }
}
