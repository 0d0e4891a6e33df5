//! pf tables as sorted, disjoint address intervals.
//!
//! A pf table is a set of prefixes, some negated, matched by longest prefix: the most
//! specific entry containing an address decides, and a negated entry decides "not in the
//! table". Prefixes are laminar (two prefixes are either nested or disjoint), so one sweep
//! over the prefixes sorted by (start, size descending) with a stack of open prefixes turns
//! the table into the disjoint intervals where the deciding entry is a positive one. After
//! that, membership is one binary search, and the policy compiler can use the intervals as
//! the boundaries of its elementary address intervals.

use std::net::IpAddr;

use ipnet::IpNet;
use rampart_conf::TableEntry;

/// An inclusive interval of addresses of one family. IPv4 addresses are stored in the low 32
/// bits, so one code path serves both families.
pub(crate) type Range = (u128, u128);

/// The inclusive address range a prefix covers (host bits of the written address ignored).
pub(crate) fn net_range(net: &IpNet) -> Range {
    match net {
        IpNet::V4(n) => (
            u32::from(n.network()) as u128,
            u32::from(n.broadcast()) as u128,
        ),
        IpNet::V6(n) => (u128::from(n.network()), u128::from(n.broadcast())),
    }
}

/// One pf table (or the `self` set): longest-prefix match with negated entries, both
/// families.
///
/// ```
/// use rampart_conf::TableEntry;
/// use rampart_dataplane::filter::PrefixSet;
/// let e = |s: &str, negated| TableEntry { negated, net: s.parse().unwrap() };
/// let set = PrefixSet::new(&[e("10.0.0.0/8", false), e("10.1.0.0/16", true)]);
/// assert!(set.contains("10.2.0.1".parse().unwrap()));
/// assert!(!set.contains("10.1.0.1".parse().unwrap()));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrefixSet {
    /// Member intervals, sorted, disjoint and non-adjacent.
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
    entries: usize,
}

impl PrefixSet {
    /// Builds the set. Of identical prefixes (after dropping host bits) the first listed is
    /// kept, as pf's `pfr_add_addrs` does with duplicates.
    pub fn new(entries: &[TableEntry]) -> PrefixSet {
        let family = |v4: bool| {
            lpm_intervals(
                entries
                    .iter()
                    .filter(|e| matches!(e.net, IpNet::V4(_)) == v4)
                    .map(|e| (net_range(&e.net), !e.negated)),
            )
        };
        let v4 = family(true)
            .into_iter()
            .map(|(lo, hi)| (lo as u32, hi as u32))
            .collect();
        PrefixSet {
            v4,
            v6: family(false),
            entries: entries.len(),
        }
    }

    /// Whether `addr` is in the table: the most specific containing entry is not negated.
    pub fn contains(&self, addr: IpAddr) -> bool {
        match addr {
            IpAddr::V4(a) => find(&self.v4, u32::from(a)),
            IpAddr::V6(a) => find(&self.v6, u128::from(a)),
        }
    }

    /// The number of entries the table was built from (as `pfctl -t NAME -T show` counts).
    pub fn len(&self) -> usize {
        self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// Approximate heap footprint in bytes.
    pub fn memory_bytes(&self) -> usize {
        self.v4.capacity() * std::mem::size_of::<(u32, u32)>()
            + self.v6.capacity() * std::mem::size_of::<(u128, u128)>()
    }

    /// The member intervals of one family (`v6 == false`: IPv4 in the low 32 bits).
    pub(crate) fn ranges(&self, v6: bool) -> Vec<Range> {
        if v6 {
            self.v6.clone()
        } else {
            self.v4
                .iter()
                .map(|&(lo, hi)| (lo as u128, hi as u128))
                .collect()
        }
    }
}

fn find<T: Ord + Copy>(ranges: &[(T, T)], a: T) -> bool {
    let i = ranges.partition_point(|&(lo, _)| lo <= a);
    i > 0 && a <= ranges[i - 1].1
}

/// Longest-prefix match over laminar ranges of one family → the sorted, disjoint,
/// non-adjacent intervals where the deciding range is a member.
///
/// Input: `(range, member)` in listed order; ranges must be prefixes (nested or disjoint).
fn lpm_intervals(entries: impl Iterator<Item = (Range, bool)>) -> Vec<Range> {
    let mut v: Vec<(Range, bool, usize)> =
        entries.enumerate().map(|(i, (r, m))| (r, m, i)).collect();
    // Parents before children; identical prefixes in listed order, so dedup keeps the first.
    v.sort_unstable_by(|a, b| {
        a.0 .0
            .cmp(&b.0 .0)
            .then(b.0 .1.cmp(&a.0 .1))
            .then(a.2.cmp(&b.2))
    });
    v.dedup_by(|later, first| later.0 == first.0);

    let mut out: Vec<Range> = Vec::new();
    let mut emit = |lo: u128, hi: u128, member: bool| {
        if !member {
            return;
        }
        match out.last_mut() {
            Some(last) if last.1.checked_add(1) == Some(lo) => last.1 = hi,
            _ => out.push((lo, hi)),
        }
    };
    // Open prefixes (end, member), innermost last; `pos` is the first address not yet
    // emitted inside the innermost open prefix (`None`: past the end of the address space).
    let mut stack: Vec<(u128, bool)> = Vec::new();
    let mut pos: Option<u128> = Some(0);
    for ((start, end), member, _) in v {
        while let Some(&(top_end, top_member)) = stack.last() {
            if top_end >= start {
                break;
            }
            if let Some(p) = pos {
                if p <= top_end {
                    emit(p, top_end, top_member);
                }
            }
            // top_end < start, so this cannot overflow.
            pos = Some(top_end + 1);
            stack.pop();
        }
        if let (Some(&(_, top_member)), Some(p)) = (stack.last(), pos) {
            if p < start {
                emit(p, start - 1, top_member);
            }
        }
        pos = Some(start);
        stack.push((end, member));
    }
    while let Some((end, member)) = stack.pop() {
        if let Some(p) = pos {
            if p <= end {
                emit(p, end, member);
            }
        }
        // Children end no later than their parent, so `pos` is now `end + 1`.
        pos = pos.and(end.checked_add(1));
    }
    out
}
