//! Per-worker counters: plain integers written by one worker, summed on read.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::wire::ParseError;

/// A counter with a single writer (its worker) and any number of readers.
///
/// `add` is a relaxed load and store — a plain `mov` pair on x86 — rather than an atomic
/// read-modify-write: no locked instruction on the per-packet path. Readers see a value
/// that is at most a few packets old.
#[derive(Default, Debug)]
pub struct Counter(AtomicU64);

impl Counter {
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.store(
            self.0.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }

    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }

    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Why a worker dropped a packet. pf's reason names where pf has one (`pfctl -s info`
/// "Counters"), in pf's order (`PFRES_*`), then rampart's own for what a router/appliance
/// adds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DropReason {
    /// A block rule (or the default block) decided: pf's "match".
    Match,
    /// An impossible header length.
    BadOffset,
    /// A fragment: rampart does not reassemble yet, so fragments are dropped.
    Fragment,
    /// Truncated headers.
    Short,
    /// A header pf's normalisation refuses.
    Normalize,
    /// The state table is full: pf's "memory".
    Memory,
    /// IPv4 options / IPv6 extension headers pf refuses.
    IpOption,
    /// A packet of a known connection outside its TCP window: pf's "state-mismatch".
    StateMismatch,
    /// No route to the destination: pf's "no-route".
    NoRoute,
    /// The next hop's MAC is not known yet (resolution was requested).
    NoNeighbor,
    /// TTL / hop limit would reach zero.
    TtlExceeded,
    /// Larger than the egress interface's MTU.
    TooBig,
    /// Addressed to another host's MAC.
    NotForUs,
    /// Addressed to a CARP virtual MAC this node is BACKUP for: stay silent.
    CarpBackup,
    /// Addressed to the appliance itself, but nothing here serves it.
    Local,
    /// Not IPv4, IPv6 or ARP, or VLAN-tagged.
    Unsupported,
    /// The queue to the control core was full.
    QueueFull,
    /// The TX ring was full.
    TxFull,
}

impl DropReason {
    pub const COUNT: usize = 18;

    pub const ALL: [DropReason; DropReason::COUNT] = [
        DropReason::Match,
        DropReason::BadOffset,
        DropReason::Fragment,
        DropReason::Short,
        DropReason::Normalize,
        DropReason::Memory,
        DropReason::IpOption,
        DropReason::StateMismatch,
        DropReason::NoRoute,
        DropReason::NoNeighbor,
        DropReason::TtlExceeded,
        DropReason::TooBig,
        DropReason::NotForUs,
        DropReason::CarpBackup,
        DropReason::Local,
        DropReason::Unsupported,
        DropReason::QueueFull,
        DropReason::TxFull,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            DropReason::Match => "match",
            DropReason::Short => "short",
            DropReason::BadOffset => "bad-offset",
            DropReason::Fragment => "fragment",
            DropReason::Normalize => "normalize",
            DropReason::IpOption => "ip-option",
            DropReason::Memory => "memory",
            DropReason::StateMismatch => "state-mismatch",
            DropReason::NoRoute => "no-route",
            DropReason::NoNeighbor => "no-neighbor",
            DropReason::TtlExceeded => "ttl-exceeded",
            DropReason::TooBig => "too-big",
            DropReason::NotForUs => "not-for-us",
            DropReason::CarpBackup => "carp-backup",
            DropReason::Local => "local",
            DropReason::Unsupported => "unsupported",
            DropReason::QueueFull => "queue-full",
            DropReason::TxFull => "tx-full",
        }
    }

    pub fn from_parse(e: ParseError) -> DropReason {
        match e {
            ParseError::Short => DropReason::Short,
            ParseError::BadOffset => DropReason::BadOffset,
            ParseError::Normalize => DropReason::Normalize,
            ParseError::IpOption => DropReason::IpOption,
            ParseError::Fragment => DropReason::Fragment,
            ParseError::Unsupported { .. } => DropReason::Unsupported,
        }
    }
}

/// Per-port counters of one worker.
#[derive(Default, Debug)]
pub struct PortStats {
    pub rx_packets: Counter,
    pub rx_bytes: Counter,
    pub tx_packets: Counter,
    pub tx_bytes: Counter,
    /// Frames the TX ring refused.
    pub tx_dropped: Counter,
}

/// Per-rule counters of one worker (pfctl -vsr's Packets / Bytes / States).
#[derive(Default, Debug)]
pub struct RuleStats {
    /// Packets the rule decided, and packets of the states it created.
    pub packets: Counter,
    pub bytes: Counter,
    /// States the rule created.
    pub states: Counter,
}

/// Everything one worker counts.
#[derive(Debug)]
pub struct WorkerStats {
    pub ports: Vec<PortStats>,
    /// Indexed by rule (0-based), as the policy the worker started with.
    pub rules: Vec<RuleStats>,
    pub drops: [Counter; DropReason::COUNT],
    /// State lookups (pf's "searches").
    pub state_searches: Counter,
    /// States created by this worker (pf's "inserts").
    pub state_inserts: Counter,
    /// Packets passed by an existing state.
    pub state_hits: Counter,
    /// Policy evaluations (packets that reached the rules).
    pub rule_evaluations: Counter,
    /// Packets passed, by state or rule.
    pub passed: Counter,
    /// Packets forwarded to another host.
    pub forwarded: Counter,
    /// ARP / ND replies, echo replies, RSTs and ICMP errors the worker answered.
    pub replies: Counter,
    /// Frames and events handed to the control core.
    pub to_control: Counter,
    /// State events handed to pfsync (inserts, coalesced updates, deletions).
    pub sync_events: Counter,
    /// State events lost because pfsync's queue was full (the packets still passed).
    pub sync_events_lost: Counter,
    /// Passes over the worker's queues ([`Worker::poll`](super::Worker::poll) calls).
    pub polls: Counter,
    /// Polls that found work (frames received, or frames handed over to transmit).
    pub busy_polls: Counter,
    /// Frames those polls found (received on every port, and handed over to transmit):
    /// `frames / busy_polls` is VPP's "vectors/call", at most 32 per port per poll.
    pub polled_frames: Counter,
    /// Receive bursts that came back full (32 frames): the queue held more. A worker whose
    /// bursts mostly come back full is saturated.
    pub full_bursts: Counter,
    /// Sleeps of an adaptive poller after a run of empty polls, and their total length.
    pub naps: Counter,
    pub nap_us: Counter,
}

impl WorkerStats {
    pub fn new(ports: usize, rules: usize) -> WorkerStats {
        WorkerStats {
            ports: (0..ports).map(|_| PortStats::default()).collect(),
            rules: (0..rules).map(|_| RuleStats::default()).collect(),
            drops: Default::default(),
            state_searches: Counter::default(),
            state_inserts: Counter::default(),
            state_hits: Counter::default(),
            rule_evaluations: Counter::default(),
            passed: Counter::default(),
            forwarded: Counter::default(),
            replies: Counter::default(),
            to_control: Counter::default(),
            sync_events: Counter::default(),
            sync_events_lost: Counter::default(),
            polls: Counter::default(),
            busy_polls: Counter::default(),
            polled_frames: Counter::default(),
            full_bursts: Counter::default(),
            naps: Counter::default(),
            nap_us: Counter::default(),
        }
    }

    #[inline]
    pub fn count_drop(&self, reason: DropReason) {
        self.drops[reason as usize].inc();
    }

    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize].get()
    }

    /// Counts a packet against rule `rule` (0-based), if the worker knows that rule.
    #[inline]
    pub fn rule_packet(&self, rule: u32, bytes: u32) {
        if let Some(r) = self.rules.get(rule as usize) {
            r.packets.inc();
            r.bytes.add(u64::from(bytes));
        }
    }

    pub fn total_drops(&self) -> u64 {
        self.drops.iter().map(Counter::get).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_dense_and_named_once() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
        let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), DropReason::COUNT);
        let s = WorkerStats::new(2, 3);
        s.count_drop(DropReason::Match);
        s.count_drop(DropReason::Match);
        s.ports[1].rx_packets.add(5);
        assert_eq!(s.dropped(DropReason::Match), 2);
        assert_eq!(s.total_drops(), 2);
        assert_eq!(s.ports[1].rx_packets.get(), 5);
    }
}
