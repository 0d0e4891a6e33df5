//! The neighbour cache (ARP for IPv4, Neighbor Discovery for IPv6) and the control plane's
//! queue of pending resolutions.
//!
//! # Design
//!
//! [`NeighborTable`] is an immutable value: the control plane — the only writer — builds a
//! new version ([`NeighborTable::with_learned`], [`NeighborTable::expire_learned`]) and
//! publishes it through a [`Published<NeighborTable>`](crate::shared::Published). Workers
//! hold a [`Snapshot`](crate::shared::Snapshot), refreshed once per burst, so the
//! per-packet [`NeighborTable::lookup`] is one `ahash` probe with no lock and no atomic.
//! Copying the map per change costs O(entries) on the control core; an appliance's
//! neighbours number in the hundreds to low thousands and change at ARP timescales, so
//! that is cheap next to never stalling a worker. [`NeighborTable::with_learned_batch`]
//! folds many answers into one copy.
//!
//! Entries are keyed by (interface, address): the same address can be a different host on
//! different links (IPv6 link-local addresses always are). Static entries from
//! `[[neighbor]]` are never overridden or expired by what the network says.
//!
//! A worker that misses in the table drops the packet, counts it and tells the control core,
//! which asks [`ResolveQueue`] whether to send an ARP request / Neighbor Solicitation now.
//! The queue is sans-IO (it takes the time, returns what to send), so its retry and
//! give-up behaviour is unit-tested with explicit times.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ahash::AHashMap;
use rampart_conf::{Config, MacAddr};

/// How a neighbour entry came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NeighborKind {
    /// From `[[neighbor]]`: permanent, never replaced by what the network says.
    Static,
    /// From an ARP reply / Neighbor Advertisement (or a request naming its sender), last
    /// confirmed at `updated_ms` on the control plane's clock.
    Learned { updated_ms: u64 },
}

/// One neighbour: its link-layer address and where that came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Neighbor {
    pub mac: MacAddr,
    pub kind: NeighborKind,
}

/// An immutable version of the neighbour cache. See the [module documentation](self).
#[derive(Debug, Clone, Default)]
pub struct NeighborTable {
    entries: AHashMap<(u16, IpAddr), Neighbor>,
}

impl NeighborTable {
    /// The static entries of `[[neighbor]]`. Of duplicate (interface, address) entries the
    /// first is kept; entries naming an unknown interface are skipped (validation rejects
    /// both).
    pub fn from_config(config: &Config) -> NeighborTable {
        let mut entries = AHashMap::with_capacity(config.neighbors.len());
        for n in &config.neighbors {
            let Some(index) = config.interface_index(&n.interface) else {
                debug_assert!(false, "neighbor on unknown interface {}", n.interface);
                continue;
            };
            entries
                .entry((index as u16, n.address))
                .or_insert(Neighbor {
                    mac: n.mac,
                    kind: NeighborKind::Static,
                });
        }
        NeighborTable { entries }
    }

    /// The MAC of `ip` on interface `iface`, if known.
    #[inline]
    pub fn lookup(&self, iface: u16, ip: IpAddr) -> Option<MacAddr> {
        self.entries.get(&(iface, ip)).map(|n| n.mac)
    }

    /// The whole entry of `ip` on interface `iface`.
    pub fn get(&self, iface: u16, ip: IpAddr) -> Option<&Neighbor> {
        self.entries.get(&(iface, ip))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// A new version with `ip` on `iface` learned at `mac` at `now_ms`. A static entry for
    /// the same key is kept as it is; a learned one is replaced (a host may change its MAC)
    /// or, if the MAC is unchanged, just has its `updated_ms` refreshed.
    pub fn with_learned(&self, iface: u16, ip: IpAddr, mac: MacAddr, now_ms: u64) -> NeighborTable {
        self.with_learned_batch([(iface, ip, mac)], now_ms)
    }

    /// [`with_learned`](Self::with_learned) for many answers at once, with one copy of the
    /// table: for a control loop that drains all the ARP/ND replies of a tick together.
    /// When the batch names a key twice, the last one wins.
    pub fn with_learned_batch(
        &self,
        learned: impl IntoIterator<Item = (u16, IpAddr, MacAddr)>,
        now_ms: u64,
    ) -> NeighborTable {
        let mut entries = self.entries.clone();
        for (iface, ip, mac) in learned {
            let fresh = Neighbor {
                mac,
                kind: NeighborKind::Learned { updated_ms: now_ms },
            };
            entries
                .entry((iface, ip))
                .and_modify(|n| {
                    if n.kind != NeighborKind::Static {
                        *n = fresh;
                    }
                })
                .or_insert(fresh);
        }
        NeighborTable { entries }
    }

    /// A new version without the learned entries older than `max_age_ms` at `now_ms`
    /// (`now_ms - updated_ms > max_age_ms`), or `None` when none is, so the control plane
    /// publishes only when something changed. Static entries never expire.
    pub fn expire_learned(&self, now_ms: u64, max_age_ms: u64) -> Option<NeighborTable> {
        let expired = |n: &Neighbor| match n.kind {
            NeighborKind::Static => false,
            NeighborKind::Learned { updated_ms } => now_ms.saturating_sub(updated_ms) > max_age_ms,
        };
        if !self.entries.values().any(expired) {
            return None;
        }
        let entries = self
            .entries
            .iter()
            .filter(|(_, n)| !expired(n))
            .map(|(k, n)| (*k, *n))
            .collect();
        Some(NeighborTable { entries })
    }

    /// Every entry, for tools, ordered by interface then address.
    pub fn entries(&self) -> Vec<(u16, IpAddr, Neighbor)> {
        let mut out: Vec<_> = self
            .entries
            .iter()
            .map(|(&(iface, ip), &n)| (iface, ip, n))
            .collect();
        out.sort_by_key(|&(iface, ip, _)| (iface, ip));
        out
    }
}

/// One resolution in progress.
#[derive(Debug, Clone, Copy)]
struct Pending {
    /// Requests sent so far in this round (1..=max_tries).
    tries: u32,
    /// When the last request was sent.
    sent_ms: u64,
}

/// The control plane's pending ARP/ND resolutions: at most one request per target per
/// retry interval, however many packets miss, and a bounded number of tries.
///
/// Sans-IO: the caller passes the time and sends what it is told to. A target is dropped
/// from the queue when it is [`resolved`](Self::resolved), or when its last try's interval
/// runs out unanswered (it gave up; a later [`request`](Self::request) starts a new round,
/// still no sooner than one interval after the last request).
#[derive(Debug, Clone)]
pub struct ResolveQueue {
    retry_interval_ms: u64,
    max_tries: u32,
    max_pending: usize,
    /// Ordered, so [`due`](Self::due) answers in a deterministic order.
    pending: BTreeMap<(u16, IpAddr), Pending>,
}

impl Default for ResolveQueue {
    /// One request per second, three tries (Linux's `mcast_solicit` default), at most 1024
    /// targets at once.
    fn default() -> Self {
        ResolveQueue::new(1000, 3, 1024)
    }
}

impl ResolveQueue {
    /// A queue that sends a request at most every `retry_interval_ms` per target, gives up
    /// after `max_tries` (at least 1) unanswered requests, and tracks at most `max_pending`
    /// targets — so a scan of a large connected prefix cannot make the appliance flood the
    /// link with requests or grow the queue without bound.
    pub fn new(retry_interval_ms: u64, max_tries: u32, max_pending: usize) -> ResolveQueue {
        ResolveQueue {
            retry_interval_ms,
            max_tries: max_tries.max(1),
            max_pending,
            pending: BTreeMap::new(),
        }
    }

    /// A packet needs `ip` on `iface` resolved. Returns whether to send a request now: for
    /// a new target (if the queue has room), or for one whose earlier round gave up at least
    /// an interval ago. A target already being resolved is left to [`due`](Self::due).
    pub fn request(&mut self, iface: u16, ip: IpAddr, now_ms: u64) -> bool {
        let fresh = Pending {
            tries: 1,
            sent_ms: now_ms,
        };
        let (interval, max_tries) = (self.retry_interval_ms, self.max_tries);
        if let Some(p) = self.pending.get_mut(&(iface, ip)) {
            let gave_up = p.tries >= max_tries;
            if gave_up && now_ms.saturating_sub(p.sent_ms) >= interval {
                *p = fresh;
                return true;
            }
            return false;
        }
        if self.pending.len() >= self.max_pending {
            return false;
        }
        self.pending.insert((iface, ip), fresh);
        true
    }

    /// `ip` on `iface` answered (or was learned otherwise): stop asking.
    pub fn resolved(&mut self, iface: u16, ip: IpAddr) {
        self.pending.remove(&(iface, ip));
    }

    /// The targets to ask again now (each counted as a try), in (interface, address) order.
    /// Targets whose last try went unanswered for an interval are given up and dropped.
    pub fn due(&mut self, now_ms: u64) -> Vec<(u16, IpAddr)> {
        let mut resend = Vec::new();
        let (interval, max_tries) = (self.retry_interval_ms, self.max_tries);
        self.pending.retain(|&key, p| {
            if now_ms.saturating_sub(p.sent_ms) < interval {
                return true;
            }
            if p.tries >= max_tries {
                return false;
            }
            p.tries += 1;
            p.sent_ms = now_ms;
            resend.push(key);
            true
        });
        resend
    }

    /// Whether `ip` on `iface` is being resolved.
    pub fn is_pending(&self, iface: u16, ip: IpAddr) -> bool {
        self.pending.contains_key(&(iface, ip))
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::iface::fixtures::*;

    fn mac(last: u8) -> MacAddr {
        MacAddr([0x02, 0, 0, 0, 0, last])
    }

    /// Static entries: 10.0.0.1 on lan (1), fe80::1 on wan (0).
    fn table() -> NeighborTable {
        let mut config = three_interfaces();
        config.neighbors = vec![
            neighbor("lan", "10.0.0.1", "02:00:00:00:00:01"),
            neighbor("wan", "fe80::1", "02:00:00:00:00:02"),
        ];
        NeighborTable::from_config(&config)
    }

    #[test]
    fn static_entries_come_from_the_configuration() {
        let t = table();
        assert_eq!(t.len(), 2);
        assert_eq!(t.lookup(1, ip("10.0.0.1")), Some(mac(1)));
        assert_eq!(t.lookup(0, ip("fe80::1")), Some(mac(2)));
        assert_eq!(t.get(1, ip("10.0.0.1")).unwrap().kind, NeighborKind::Static);
    }

    #[test]
    fn entries_are_per_interface() {
        let t = table();
        assert_eq!(
            t.lookup(0, ip("10.0.0.1")),
            None,
            "same address, other link"
        );
        assert_eq!(t.lookup(2, ip("fe80::1")), None);
        let t = t.with_learned(2, ip("fe80::1"), mac(9), 5);
        assert_eq!(t.lookup(2, ip("fe80::1")), Some(mac(9)));
        assert_eq!(t.lookup(0, ip("fe80::1")), Some(mac(2)));
    }

    #[test]
    fn learning_adds_and_versions_are_independent() {
        let v1 = table();
        let v2 = v1.with_learned(1, ip("10.0.0.50"), mac(50), 1_000);
        assert_eq!(
            v1.lookup(1, ip("10.0.0.50")),
            None,
            "the old version is unchanged"
        );
        assert_eq!(v2.lookup(1, ip("10.0.0.50")), Some(mac(50)));
        assert_eq!(
            v2.get(1, ip("10.0.0.50")).unwrap().kind,
            NeighborKind::Learned { updated_ms: 1_000 }
        );
    }

    #[test]
    fn relearning_refreshes_or_replaces() {
        let t = table().with_learned(1, ip("10.0.0.50"), mac(50), 1_000);
        let same = t.with_learned(1, ip("10.0.0.50"), mac(50), 4_000);
        assert_eq!(
            *same.get(1, ip("10.0.0.50")).unwrap(),
            Neighbor {
                mac: mac(50),
                kind: NeighborKind::Learned { updated_ms: 4_000 }
            }
        );
        let moved = same.with_learned(1, ip("10.0.0.50"), mac(51), 5_000);
        assert_eq!(moved.lookup(1, ip("10.0.0.50")), Some(mac(51)));
        assert_eq!(moved.len(), 3);
    }

    #[test]
    fn learning_never_overrides_a_static_entry() {
        let t = table().with_learned(1, ip("10.0.0.1"), mac(66), 1_000);
        assert_eq!(
            *t.get(1, ip("10.0.0.1")).unwrap(),
            Neighbor {
                mac: mac(1),
                kind: NeighborKind::Static
            }
        );
    }

    #[test]
    fn batch_learning_is_one_version() {
        let t = table().with_learned_batch(
            [
                (1, ip("10.0.0.50"), mac(50)),
                (2, ip("fd00::5"), mac(5)),
                (1, ip("10.0.0.1"), mac(66)),
                (1, ip("10.0.0.50"), mac(51)),
            ],
            7,
        );
        assert_eq!(t.len(), 4);
        assert_eq!(
            t.lookup(1, ip("10.0.0.50")),
            Some(mac(51)),
            "last of the batch wins"
        );
        assert_eq!(t.lookup(2, ip("fd00::5")), Some(mac(5)));
        assert_eq!(t.lookup(1, ip("10.0.0.1")), Some(mac(1)), "static kept");
    }

    #[test]
    fn expiry_drops_only_old_learned_entries() {
        let t = table()
            .with_learned(1, ip("10.0.0.50"), mac(50), 1_000)
            .with_learned(1, ip("10.0.0.51"), mac(51), 20_000);
        assert!(
            t.expire_learned(20_000, 60_000).is_none(),
            "nothing old: nothing to publish"
        );
        assert!(
            t.expire_learned(61_000, 60_000).is_none(),
            "exactly max_age is still fresh"
        );
        let t2 = t.expire_learned(61_001, 60_000).expect("10.0.0.50 expired");
        assert_eq!(t2.lookup(1, ip("10.0.0.50")), None);
        assert_eq!(t2.lookup(1, ip("10.0.0.51")), Some(mac(51)));
        assert_eq!(
            t2.lookup(1, ip("10.0.0.1")),
            Some(mac(1)),
            "static entries never expire"
        );
        let t3 = t2.expire_learned(1_000_000_000, 60_000).unwrap();
        assert_eq!(t3.len(), 2);
        assert!(t3.expire_learned(u64::MAX, 0).is_none());
    }

    #[test]
    fn entries_are_listed_in_order() {
        let t = table()
            .with_learned(2, ip("172.16.0.9"), mac(9), 3)
            .with_learned(1, ip("10.0.0.2"), mac(3), 3);
        let keys: Vec<_> = t.entries().into_iter().map(|(i, a, _)| (i, a)).collect();
        assert_eq!(
            keys,
            vec![
                (0, ip("fe80::1")),
                (1, ip("10.0.0.1")),
                (1, ip("10.0.0.2")),
                (2, ip("172.16.0.9")),
            ]
        );
    }

    #[test]
    fn resolve_sends_once_per_target_and_retries_each_interval() {
        let mut q = ResolveQueue::new(1_000, 3, 16);
        let target = (1, ip("10.0.0.50"));
        assert!(q.request(target.0, target.1, 0), "first miss: send now");
        assert!(!q.request(target.0, target.1, 10), "dedup: already asked");
        assert!(
            q.request(2, ip("10.0.0.50"), 10),
            "same address on another link is its own"
        );
        assert!(q.due(999).is_empty(), "not before the interval");
        assert_eq!(q.due(1_000), vec![target], "second try");
        assert!(!q.request(target.0, target.1, 1_500));
        assert_eq!(q.due(1_500), vec![(2, ip("10.0.0.50"))]);
        assert_eq!(q.due(2_000), vec![target], "third and last try");
        assert!(q.is_pending(target.0, target.1));
        assert_eq!(
            q.due(2_500),
            vec![(2, ip("10.0.0.50"))],
            "the other's last try"
        );
        assert_eq!(q.due(2_999), vec![]);
        assert!(
            q.is_pending(target.0, target.1),
            "still waiting for an answer"
        );
        assert_eq!(q.due(3_000), vec![], "the first gave up");
        assert!(!q.is_pending(target.0, target.1));
        assert_eq!(q.len(), 1);
        assert_eq!(q.due(3_500), vec![], "the other gave up");
        assert!(q.is_empty());
    }

    #[test]
    fn resolved_targets_stop_being_asked() {
        let mut q = ResolveQueue::default();
        assert!(q.request(0, ip("2001:db8::1"), 0));
        q.resolved(0, ip("2001:db8::1"));
        assert!(q.is_empty());
        assert!(q.due(10_000).is_empty());
        assert!(
            q.request(0, ip("2001:db8::1"), 10_000),
            "a later miss asks afresh"
        );
    }

    #[test]
    fn a_target_that_gave_up_is_asked_again_no_sooner_than_an_interval() {
        let mut q = ResolveQueue::new(1_000, 2, 16);
        assert!(q.request(1, ip("10.0.0.9"), 0));
        assert_eq!(q.due(1_000), vec![(1, ip("10.0.0.9"))]);
        // Tries exhausted, but due() has not run since: still rate-limited.
        assert!(!q.request(1, ip("10.0.0.9"), 1_500));
        assert!(q.request(1, ip("10.0.0.9"), 2_000), "a new round");
        assert!(q.due(2_500).is_empty());
        assert_eq!(q.due(3_000), vec![(1, ip("10.0.0.9"))]);
    }

    #[test]
    fn the_queue_is_bounded() {
        let mut q = ResolveQueue::new(1_000, 3, 2);
        assert!(q.request(1, ip("10.0.0.1"), 0));
        assert!(q.request(1, ip("10.0.0.2"), 0));
        assert!(!q.request(1, ip("10.0.0.3"), 0), "full");
        assert_eq!(q.len(), 2);
        q.resolved(1, ip("10.0.0.1"));
        assert!(q.request(1, ip("10.0.0.3"), 1));
    }

    #[test]
    fn due_answers_in_a_stable_order() {
        let mut q = ResolveQueue::new(100, 5, 16);
        for (i, a) in [(2, "10.0.0.3"), (1, "10.0.0.9"), (1, "10.0.0.2")] {
            assert!(q.request(i, ip(a), 0));
        }
        assert_eq!(
            q.due(100),
            vec![
                (1, ip("10.0.0.2")),
                (1, ip("10.0.0.9")),
                (2, ip("10.0.0.3"))
            ]
        );
    }
}
