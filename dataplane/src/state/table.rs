//! The lock-sharded state table.
//!
//! `shard = hash & (shards − 1)`; each shard is a spinning mutex (`lock.rs`) around an
//! open-addressing index (linear probing, 8-byte slots holding a 32-bit hash tag and a
//! 32-bit slab index) and a slab of 128-byte [`State`]s. The hash is computed once per
//! packet (ahash over the five key words) and picks the shard, the home slot and the tag.
//!
//! A lookup in a table of millions of states is two cache misses: the index slot and the
//! state. Workers hide them across a burst: [`prefetch_index`](StateTable::prefetch_index)
//! for all 32 packets, then [`prefetch_state`](StateTable::prefetch_state) (which reads the
//! home slot without the lock and prefetches the state it names), then the real, locked
//! lookups. That is why the index is sized once, from the limit, and never moves: a slot
//! may be read without the lock at any time. Its memory is allocated zeroed (lazily by the
//! OS), so a large limit costs address space, not RAM, until states arrive. Deletion uses
//! backward shifting, so there are no tombstones and lookups never slow down with churn.
//! The slab keeps states at stable indices and reuses freed entries.
//!
//! Expiry never walks the table on a worker: a worker only checks the one state it found
//! (an expired state is removed and the packet treated as new), and the control core
//! [`sweep`](StateTable::sweep)s a bounded number of entries per call, as pf's purge
//! thread visits states/interval entries per second.
//!
//! A full table refuses new states (pf's "memory" drop) and never evicts live ones.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use super::lock::{ShardMutex, ShardMutexGuard};
use crossbeam::utils::CachePadded;

use super::arena::{Arena, Slab, Slots};
use super::{State, StateKey, Timeout, TimeoutTable};
use crate::prefetch;

/// An empty index slot (the index is allocated zeroed).
const EMPTY: u64 = 0;

/// Index slots a state prefetch looks at, from the home slot on.
const PREFETCH_PROBES: usize = 4;
/// Each shard's index is sized so that its share of the limit fills at most this fraction
/// (numerator / denominator) of its slots; a shard fuller than its index allows refuses new
/// states (counted as "memory"), which a random hash makes practically impossible.
const MAX_LOAD_NUM: usize = 3;
const MAX_LOAD_DEN: usize = 4;

/// How to size and run a state table.
#[derive(Clone, Debug)]
pub struct StateTableConfig {
    /// `[limits] states`.
    pub limit: usize,
    /// Shards (rounded up to a power of two).
    pub shards: usize,
    pub timeouts: TimeoutTable,
    /// This node's pfsync creator id.
    pub creator: u32,
    /// The first state id (pf seeds it from the boot time, so ids don't repeat across
    /// restarts).
    pub first_id: u64,
}

impl StateTableConfig {
    /// A table sized by `[limits] states` with `[timeouts]`, for `creator`'s states.
    pub fn from_config(
        config: &rampart_conf::Config,
        shards: usize,
        creator: u32,
        first_id: u64,
    ) -> StateTableConfig {
        StateTableConfig {
            limit: config.limits.states as usize,
            shards,
            timeouts: TimeoutTable::new(&config.timeouts, config.limits.states),
            creator,
            first_id,
        }
    }
}

/// Why a state could not be inserted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InsertError {
    /// `[limits] states` reached: pf's "memory" drop.
    Full,
}

/// Totals for `pfctl -s info`-style views.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StateTableStats {
    pub current: u64,
    pub inserts: u64,
    pub removals: u64,
    /// Inserts refused because the table was full.
    pub refused: u64,
}

struct Shard {
    /// The index: `(tag << 32) | (slab index + 1)`, 0 when empty. Written only under the
    /// lock; read without it only by prefetching.
    slots: Slots,
    mask: usize,
    /// Most states this shard may hold (its index's load limit, and its slab's size).
    max_states: usize,
    states: Slab,
    /// Whether each slab entry holds a live state.
    live: Vec<bool>,
    free: Vec<u32>,
    count: usize,
    inserts: u64,
    removals: u64,
}

/// The parts of a shard a prefetch reads without its lock. They are kept in an array of
/// their own, apart from the locks (a cache line each): 24 bytes a shard, so the whole
/// array stays in the L1 cache where every packet's two prefetches read it.
struct ShardWindows {
    /// Neither the index nor the slab ever moves (both are windows of the table's arenas).
    slots_ptr: *const AtomicU64,
    slots_mask: usize,
    states_ptr: *const State,
}

// SAFETY: `slots_ptr` and `states_ptr` point into the table's arenas, which live (unmoved)
// as long as the table; the index is only ever read through atomics, and a state only by
// prefetch hints without the lock.
unsafe impl Send for ShardWindows {}
unsafe impl Sync for ShardWindows {}

/// The lock-sharded state table. Shared by all workers (`Arc<StateTable>`) and the control core.
pub struct StateTable {
    /// Dropped before the arenas their windows point into.
    shards: Box<[CachePadded<ShardMutex<Shard>>]>,
    /// `shards[i]`'s windows, for prefetching without its lock.
    windows: Box<[ShardWindows]>,
    shard_mask: u64,
    hasher: ahash::RandomState,
    count: CachePadded<AtomicUsize>,
    refused: AtomicU64,
    next_id: AtomicU64,
    limit: usize,
    creator: u32,
    timeouts: TimeoutTable,
    /// Every shard's slab, and every shard's index (see `arena`).
    _slabs: Arena,
    _index: Arena,
}

/// Tag and home slot from the hash's upper half (the lower bits pick the shard).
#[inline]
fn tag_of(hash: u64) -> u32 {
    (hash >> 32) as u32
}

impl Shard {
    /// A shard over its windows of the index (`slots.len()` a power of two) and the slab
    /// (`states`' capacity: the most states it holds).
    fn new(slots: Slots, states: Slab) -> Shard {
        let len = slots.as_slice().len();
        debug_assert!(len.is_power_of_two());
        Shard {
            mask: len - 1,
            max_states: states.capacity().min(len * MAX_LOAD_NUM / MAX_LOAD_DEN),
            slots,
            states,
            live: Vec::new(),
            free: Vec::new(),
            count: 0,
            inserts: 0,
            removals: 0,
        }
    }

    #[inline]
    fn home(&self, tag: u32) -> usize {
        tag as usize & self.mask
    }

    #[inline]
    fn slot(&self, i: usize) -> u64 {
        self.slots.as_slice()[i].load(Ordering::Relaxed)
    }

    #[inline]
    fn set_slot(&self, i: usize, v: u64) {
        self.slots.as_slice()[i].store(v, Ordering::Relaxed);
    }

    #[inline]
    fn find(&self, key: &StateKey, hash: u64) -> Option<u32> {
        let tag = tag_of(hash);
        let mut i = self.home(tag);
        loop {
            let slot = self.slot(i);
            if slot == EMPTY {
                return None;
            }
            if (slot >> 32) as u32 == tag {
                let idx = (slot as u32).wrapping_sub(1);
                if self.states[idx as usize].key == *key {
                    return Some(idx);
                }
            }
            i = (i + 1) & self.mask;
        }
    }

    fn place(&self, tag: u32, idx: u32) {
        let mut i = self.home(tag);
        while self.slot(i) != EMPTY {
            i = (i + 1) & self.mask;
        }
        self.set_slot(i, (tag as u64) << 32 | (idx as u64 + 1));
    }

    fn insert(&mut self, hash: u64, state: State) -> Option<u32> {
        if self.count >= self.max_states {
            return None;
        }
        let idx = match self.free.pop() {
            Some(idx) => {
                self.states[idx as usize] = state;
                self.live[idx as usize] = true;
                idx
            }
            None => {
                let idx = self.states.push(state)?;
                self.live.push(true);
                idx as u32
            }
        };
        self.place(tag_of(hash), idx);
        self.count += 1;
        self.inserts += 1;
        Some(idx)
    }

    /// Removes slab entry `idx` whose key hashes to `hash` (backward-shift deletion).
    fn remove(&mut self, idx: u32, hash: u64) {
        let tag = tag_of(hash);
        let want = (tag as u64) << 32 | (idx as u64 + 1);
        let mut i = self.home(tag);
        loop {
            let slot = self.slot(i);
            if slot == want {
                break;
            }
            debug_assert_ne!(slot, EMPTY, "removing a state that is not indexed");
            if slot == EMPTY {
                return;
            }
            i = (i + 1) & self.mask;
        }
        // Shift later members of the probe run back into the hole.
        let mut hole = i;
        let mut j = i;
        loop {
            j = (j + 1) & self.mask;
            let slot = self.slot(j);
            if slot == EMPTY {
                break;
            }
            let home = self.home((slot >> 32) as u32);
            // Move `j` into the hole unless its home lies cyclically in (hole, j].
            let in_between = if hole <= j {
                hole < home && home <= j
            } else {
                hole < home || home <= j
            };
            if !in_between {
                self.set_slot(hole, slot);
                hole = j;
            }
        }
        self.set_slot(hole, EMPTY);
        self.live[idx as usize] = false;
        self.free.push(idx);
        self.count -= 1;
        self.removals += 1;
    }
}

impl StateTable {
    pub fn new(config: StateTableConfig) -> StateTable {
        let shards = config.shards.max(1).next_power_of_two();
        // Each shard's share of the limit, with room for the imbalance of a random hash,
        // and an index that stays under its load limit with that many.
        let share = config.limit.div_ceil(shards);
        let per_shard = share + share / 4 + 64;
        let slots = (per_shard * MAX_LOAD_DEN / MAX_LOAD_NUM + 1)
            .next_power_of_two()
            .max(16);
        let slab_bytes = per_shard * std::mem::size_of::<State>();
        let index_bytes = slots * std::mem::size_of::<AtomicU64>();
        let slabs = Arena::new(shards * slab_bytes);
        let index = Arena::new(shards * index_bytes);
        let shards: Box<[CachePadded<ShardMutex<Shard>>]> = (0..shards)
            .map(|i| {
                CachePadded::new(ShardMutex::new(Shard::new(
                    Slots::new(&index, i * index_bytes, slots),
                    Slab::new(&slabs, i * slab_bytes, per_shard),
                )))
            })
            .collect();
        let windows = shards
            .iter()
            .map(|shard| {
                // Uncontended: nothing else can see the table yet.
                let shard = shard.lock();
                ShardWindows {
                    slots_ptr: shard.slots.as_slice().as_ptr(),
                    slots_mask: shard.mask,
                    states_ptr: shard.states.as_ptr(),
                }
            })
            .collect();
        StateTable {
            windows,
            shard_mask: shards.len() as u64 - 1,
            shards,
            hasher: ahash::RandomState::new(),
            count: CachePadded::new(AtomicUsize::new(0)),
            refused: AtomicU64::new(0),
            next_id: AtomicU64::new(config.first_id.max(1)),
            limit: config.limit,
            creator: config.creator,
            timeouts: config.timeouts,
            _slabs: slabs,
            _index: index,
        }
    }

    /// The hash of a key: computed once per packet.
    #[inline]
    pub fn hash(&self, key: &StateKey) -> u64 {
        self.hasher.hash_one(key.words())
    }

    #[inline]
    fn shard_windows(&self, hash: u64) -> &ShardWindows {
        &self.windows[(hash & self.shard_mask) as usize]
    }

    /// Hints the CPU to fetch the index line a lookup of `hash` will read.
    #[inline]
    pub fn prefetch_index(&self, hash: u64) {
        let s = self.shard_windows(hash);
        prefetch(
            s.slots_ptr
                .wrapping_add(tag_of(hash) as usize & s.slots_mask) as *const u8,
        );
    }

    /// Reads the home slot of `hash` without the lock and, if its tag matches, prefetches
    /// the state it names (both cache lines). Call after [`prefetch_index`](Self::prefetch_index)
    /// had time to land; a stale read only costs a useless prefetch.
    #[inline]
    pub fn prefetch_state(&self, hash: u64) {
        let s = self.shard_windows(hash);
        let tag = tag_of(hash);
        let home = tag as usize & s.slots_mask;
        // Linear probing leaves a third of the keys past their home slot at the loads a
        // table runs at: look a few slots on (mostly in the same line) for the tag.
        for probe in 0..PREFETCH_PROBES {
            let i = (home + probe) & s.slots_mask;
            // SAFETY: `i` is within the index (masked), which never moves or shrinks.
            let slot = unsafe { (*s.slots_ptr.add(i)).load(Ordering::Relaxed) };
            if slot == EMPTY {
                return;
            }
            if (slot >> 32) as u32 == tag {
                let idx = (slot as u32).wrapping_sub(1) as usize;
                let state = s.states_ptr.wrapping_add(idx) as *const u8;
                prefetch(state);
                prefetch(state.wrapping_add(64));
                return;
            }
        }
    }

    /// Hints the CPU to take ownership of the lock line of `hash`'s shard, so that a lock
    /// last taken by another worker is on its way while the burst is prepared, rather than
    /// a stall at the lock.
    #[inline]
    pub fn prefetch_lock(&self, hash: u64) {
        crate::prefetch_write(&*self.shards[(hash & self.shard_mask) as usize]);
    }

    /// Locks the shard that holds `hash`'s key. A worker holds it while it filters one
    /// packet, so checking for a state and creating it are one atomic step.
    #[inline]
    pub fn lock(&self, hash: u64) -> ShardGuard<'_> {
        ShardGuard {
            guard: self.shards[(hash & self.shard_mask) as usize].lock(),
            table: self,
        }
    }

    /// States in the table now.
    #[inline]
    pub fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    pub fn creator(&self) -> u32 {
        self.creator
    }

    pub fn timeouts(&self) -> &TimeoutTable {
        &self.timeouts
    }

    /// When a state expires, given the table's fill (pf's `pf_state_expires`).
    #[inline]
    pub fn expires_at(&self, state: &State) -> u64 {
        state.last_ms + self.timeouts.timeout_ms(state.timeout, self.len() as u64)
    }

    pub fn stats(&self) -> StateTableStats {
        let mut s = StateTableStats {
            refused: self.refused.load(Ordering::Relaxed),
            ..Default::default()
        };
        for shard in self.shards.iter() {
            let g = shard.lock();
            s.current += g.count as u64;
            s.inserts += g.inserts;
            s.removals += g.removals;
        }
        s
    }

    /// Bytes held by the table: index slots, slab (at capacity) and free lists.
    pub fn memory_bytes(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                let g = s.lock();
                // The index is counted whole (it is touched all over as states arrive);
                // the slab by what is in use.
                g.slots.as_slice().len() * 8
                    + g.states.len() * std::mem::size_of::<State>()
                    + g.live.len()
                    + g.free.len() * 4
            })
            .sum::<usize>()
            + self.shards.len()
                * (std::mem::size_of::<CachePadded<ShardMutex<Shard>>>()
                    + std::mem::size_of::<ShardWindows>())
    }

    /// Calls `f` with every live state, shard by shard (for tools; takes each lock in turn).
    pub fn for_each(&self, mut f: impl FnMut(&State)) {
        for shard in self.shards.iter() {
            let g = shard.lock();
            for (s, live) in g.states.as_slice().iter().zip(&g.live) {
                if *live {
                    f(s);
                }
            }
        }
    }

    /// Calls `f` with up to `max` live states from `cursor` on, shard by shard, taking each
    /// shard's lock once per call: a slice of a walk over the whole table that never holds
    /// a worker up for more than a slice (pfsync's bulk update). States inserted or removed
    /// meanwhile may or may not be seen. Returns `true` once the walk has passed the last
    /// shard.
    pub fn walk(&self, cursor: &mut WalkCursor, max: usize, mut f: impl FnMut(&State)) -> bool {
        let mut seen = 0;
        while cursor.shard < self.shards.len() {
            let g = self.shards[cursor.shard].lock();
            while cursor.index < g.states.len() {
                if seen == max {
                    return false;
                }
                let idx = cursor.index;
                cursor.index += 1;
                if g.live[idx] {
                    f(&g.states[idx]);
                    seen += 1;
                }
            }
            drop(g);
            cursor.shard += 1;
            cursor.index = 0;
        }
        true
    }

    /// Visits up to `budget` slab entries from `cursor` on, removing the expired states
    /// (each passed to `on_expire` first). Returns the number removed. The control core
    /// calls this periodically so that every state is visited about once per `interval`.
    pub fn sweep(
        &self,
        now_ms: u64,
        cursor: &mut SweepCursor,
        budget: usize,
        mut on_expire: impl FnMut(&State),
    ) -> usize {
        let mut visited = 0;
        let mut removed = 0;
        let shards = self.shards.len();
        let mut shards_seen = 0;
        while visited < budget && shards_seen <= shards {
            let slot = &self.shards[cursor.shard % shards];
            let mut g = slot.lock();
            while cursor.index < g.states.len() && visited < budget {
                let idx = cursor.index;
                cursor.index += 1;
                visited += 1;
                if !g.live[idx] {
                    continue;
                }
                let state = &g.states[idx];
                let expires =
                    state.last_ms + self.timeouts.timeout_ms(state.timeout, self.len() as u64);
                if now_ms >= expires {
                    on_expire(state);
                    let hash = self.hash(&state.key);
                    g.remove(idx as u32, hash);
                    self.count.fetch_sub(1, Ordering::Relaxed);
                    removed += 1;
                }
            }
            if cursor.index >= g.states.len() {
                cursor.shard = (cursor.shard + 1) % shards;
                cursor.index = 0;
                shards_seen += 1;
            }
        }
        removed
    }

    /// Removes every state (pfctl -F states).
    pub fn flush(&self) -> usize {
        let mut n = 0;
        for slot in self.shards.iter() {
            let mut g = slot.lock();
            let c = g.count;
            g.removals += c as u64;
            for slot in g.slots.as_slice().iter() {
                slot.store(EMPTY, Ordering::Relaxed);
            }
            g.states.clear();
            g.live.clear();
            g.free.clear();
            g.count = 0;
            self.count.fetch_sub(c, Ordering::Relaxed);
            n += c;
        }
        n
    }

    fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }
}

/// Where a [`StateTable::walk`] resumes (the default starts at the beginning).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WalkCursor {
    shard: usize,
    index: usize,
}

/// Where an incremental [`StateTable::sweep`] resumes.
#[derive(Clone, Copy, Debug, Default)]
pub struct SweepCursor {
    shard: usize,
    index: usize,
}

/// A locked shard: find, create, update and remove states while filtering one packet.
pub struct ShardGuard<'a> {
    guard: ShardMutexGuard<'a, Shard>,
    table: &'a StateTable,
}

impl ShardGuard<'_> {
    /// Finds the live state for `key`. A state found expired is removed on the spot and
    /// reported as absent, so expiry is exact to the millisecond without a table walk.
    #[inline]
    pub fn find(&mut self, key: &StateKey, hash: u64, now_ms: u64) -> Option<u32> {
        let idx = self.guard.find(key, hash)?;
        let state = &self.guard.states[idx as usize];
        if now_ms >= self.table.expires_at(state) {
            self.remove(idx, hash);
            return None;
        }
        Some(idx)
    }

    #[inline]
    pub fn get(&self, idx: u32) -> &State {
        &self.guard.states[idx as usize]
    }

    #[inline]
    pub fn get_mut(&mut self, idx: u32) -> &mut State {
        &mut self.guard.states[idx as usize]
    }

    /// Inserts a new state (the caller has checked `find` first, under this same lock).
    /// Its `id` and `creator` are assigned here unless already set (synced states keep
    /// their peer's identity).
    #[inline]
    pub fn insert(&mut self, hash: u64, mut state: State) -> Result<u32, InsertError> {
        let t = self.table;
        if t.count.load(Ordering::Relaxed) >= t.limit {
            t.refused.fetch_add(1, Ordering::Relaxed);
            return Err(InsertError::Full);
        }
        if state.id == 0 {
            state.id = t.next_id();
            state.creator = t.creator;
        }
        let Some(idx) = self.guard.insert(hash, state) else {
            t.refused.fetch_add(1, Ordering::Relaxed);
            return Err(InsertError::Full);
        };
        t.count.fetch_add(1, Ordering::Relaxed);
        Ok(idx)
    }

    #[inline]
    pub fn remove(&mut self, idx: u32, hash: u64) {
        self.guard.remove(idx, hash);
        self.table.count.fetch_sub(1, Ordering::Relaxed);
    }

    /// The timeout a state would get now (adaptive scaling included).
    pub fn timeout_ms(&self, class: Timeout) -> u64 {
        self.table
            .timeouts
            .timeout_ms(class, self.table.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{tcp::Peer, COVER_IN};
    use super::*;
    use rampart_conf::Timeouts;
    use std::net::IpAddr;

    fn table(limit: usize, shards: usize) -> StateTable {
        StateTable::new(StateTableConfig {
            limit,
            shards,
            timeouts: TimeoutTable::new(&Timeouts::default(), limit as u32),
            creator: 0xabcd,
            first_id: 100,
        })
    }

    fn state(key: StateKey, now: u64, timeout: Timeout) -> State {
        State {
            key,
            id: 0,
            created_s: (now / 1000) as u32,
            last_ms: now,
            packets: [0; 2],
            bytes: [0; 2],
            peers: [Peer::default(); 2],
            creator: 0,
            rule: 0,
            iface: 0,
            timeout,
            covers: COVER_IN,
            flags: 0,
        }
    }

    fn key(i: u32) -> StateKey {
        let a = IpAddr::from(std::net::Ipv4Addr::from(0xc6120000 + i));
        let b: IpAddr = "203.0.113.1".parse().unwrap();
        StateKey::new(17, a, 1000 + (i % 5000) as u16, b, 53).0
    }

    #[test]
    fn insert_find_remove_many_with_churn() {
        let t = table(1_000_000, 4);
        let mut idxs = Vec::new();
        for i in 0..20_000 {
            let k = key(i);
            let h = t.hash(&k);
            let mut g = t.lock(h);
            assert!(g.find(&k, h, 0).is_none());
            idxs.push(g.insert(h, state(k, 0, Timeout::UdpSingle)).unwrap());
        }
        assert_eq!(t.len(), 20_000);
        // Remove every third, then check every key's presence.
        for i in (0..20_000).step_by(3) {
            let k = key(i);
            let h = t.hash(&k);
            let mut g = t.lock(h);
            let idx = g.find(&k, h, 0).unwrap();
            g.remove(idx, h);
        }
        for i in 0..20_000 {
            let k = key(i);
            let h = t.hash(&k);
            let mut g = t.lock(h);
            assert_eq!(g.find(&k, h, 0).is_some(), i % 3 != 0, "key {i}");
            if let Some(idx) = g.find(&k, h, 0) {
                assert_eq!(g.get(idx).key, k);
                assert_eq!(g.get(idx).creator, 0xabcd);
            }
        }
        let s = t.stats();
        assert_eq!(s.current, t.len() as u64);
        assert_eq!(s.inserts - s.removals, s.current);
        // Freed slab entries are reused.
        let k = key(3);
        let h = t.hash(&k);
        let mut g = t.lock(h);
        g.insert(h, state(k, 0, Timeout::UdpSingle)).unwrap();
        assert!(g.find(&k, h, 0).is_some());
    }

    #[test]
    fn ids_are_unique_and_increase() {
        let t = table(100, 2);
        let mut ids = Vec::new();
        for i in 0..10 {
            let k = key(i);
            let h = t.hash(&k);
            let mut g = t.lock(h);
            let idx = g.insert(h, state(k, 0, Timeout::UdpSingle)).unwrap();
            ids.push(g.get(idx).id);
        }
        assert_eq!(ids, (100..110).collect::<Vec<_>>());
    }

    #[test]
    fn a_full_table_refuses_and_keeps_what_it_has() {
        let t = table(10, 2);
        for i in 0..10 {
            let k = key(i);
            let h = t.hash(&k);
            t.lock(h)
                .insert(h, state(k, 0, Timeout::TcpEstablished))
                .unwrap();
        }
        let k = key(99);
        let h = t.hash(&k);
        assert_eq!(
            t.lock(h).insert(h, state(k, 0, Timeout::UdpSingle)),
            Err(InsertError::Full)
        );
        assert_eq!(t.stats().refused, 1);
        assert_eq!(t.len(), 10);
    }

    #[test]
    fn expired_states_vanish_on_lookup() {
        let t = table(1000, 1);
        let k = key(1);
        let h = t.hash(&k);
        t.lock(h)
            .insert(h, state(k, 1_000, Timeout::UdpSingle))
            .unwrap();
        // udp.single is 30 s.
        assert!(t.lock(h).find(&k, h, 30_999).is_some());
        assert!(t.lock(h).find(&k, h, 31_000).is_none());
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn a_walk_in_slices_sees_every_state_once() {
        let t = table(10_000, 16);
        for i in 0..5000u32 {
            let k = key(i);
            let h = t.hash(&k);
            t.lock(h)
                .insert(h, state(k, 0, Timeout::UdpSingle))
                .unwrap();
        }
        let mut cursor = WalkCursor::default();
        let mut seen = std::collections::HashSet::new();
        let mut calls = 0;
        loop {
            calls += 1;
            let mut n = 0;
            let done = t.walk(&mut cursor, 64, |s| {
                n += 1;
                assert!(seen.insert(s.id), "state {} seen twice", s.id);
            });
            assert!(n <= 64);
            if done {
                break;
            }
            assert!(calls < 1000);
        }
        assert_eq!(seen.len(), 5000);
        assert!(calls >= 5000 / 64);
        // A finished walk stays finished.
        assert!(t.walk(&mut cursor, 64, |_| panic!("walked past the end")));
    }

    #[test]
    fn sweep_removes_only_expired_within_budget() {
        let t = table(10_000, 4);
        for i in 0..1000 {
            let k = key(i);
            let h = t.hash(&k);
            let class = if i % 2 == 0 {
                Timeout::UdpSingle
            } else {
                Timeout::TcpEstablished
            };
            t.lock(h).insert(h, state(k, 0, class)).unwrap();
        }
        let mut cursor = SweepCursor::default();
        let mut expired = 0;
        let mut removed = 0;
        // Small budgets: several calls to get around the table.
        for _ in 0..20 {
            removed += t.sweep(60_000, &mut cursor, 100, |s| {
                assert_eq!(s.timeout, Timeout::UdpSingle);
                expired += 1;
            });
        }
        assert_eq!(removed, 500);
        assert_eq!(expired, 500);
        assert_eq!(t.len(), 500);
    }

    #[test]
    fn flush_empties() {
        let t = table(1000, 4);
        for i in 0..100 {
            let k = key(i);
            let h = t.hash(&k);
            t.lock(h)
                .insert(h, state(k, 0, Timeout::UdpSingle))
                .unwrap();
        }
        assert_eq!(t.flush(), 100);
        assert_eq!(t.len(), 0);
        let k = key(5);
        let h = t.hash(&k);
        assert!(t.lock(h).find(&k, h, 0).is_none());
    }

    #[test]
    fn many_states_in_many_shards() {
        let t = StateTable::new(StateTableConfig {
            limit: 100_000,
            shards: 64,
            timeouts: TimeoutTable::new(&Timeouts::default(), 100_000),
            creator: 1,
            first_id: 1,
        });
        for i in 0..50_000 {
            let k = key(i);
            let h = t.hash(&k);
            t.prefetch_index(h);
            t.prefetch_state(h);
            t.lock(h)
                .insert(h, state(k, 0, Timeout::UdpSingle))
                .unwrap();
        }
        for i in 0..50_000 {
            let k = key(i);
            let h = t.hash(&k);
            assert!(t.lock(h).find(&k, h, 0).is_some());
        }
        assert!(t.memory_bytes() > 50_000 * std::mem::size_of::<State>());
    }
}
