//! The worker: one core's run-to-completion loop over its queue on every port.
//!
//! ```text
//! for each port: rx_burst(32)
//!     stage 1, whole burst: parse, build the state key, hash it, prefetch the state index
//!     stage 2, per packet:  L2 check → ARP/ND/local → state/rules (in) → route →
//!                           state/rules (out) → neighbour → TTL−1, L2 rewrite → TX buffer
//! for each port: tx_burst(what was buffered for it)
//! ```
//!
//! Nothing here allocates, makes a syscall, formats or takes a lock other than the state
//! shard's: read-mostly tables come through [`Snapshot`]s refreshed once per poll, and
//! frames for the control core go through a bounded lock-free queue that drops (and counts)
//! when full. The same loop runs over DPDK queues and over in-memory ports.

pub mod reply;
pub mod stats;

use std::net::IpAddr;
use std::sync::Arc;

use crossbeam::queue::ArrayQueue;
use rampart_conf::{Action, Direction};

use crate::filter::{CompiledPolicy, PacketMeta, Verdict};
use crate::iface::InterfaceTable;
use crate::io::{PacketBuf, Port, BURST};
use crate::neighbor::NeighborTable;
use crate::route::RouteTable;
use crate::shared::{Published, Snapshot};
use crate::state::key::icmp_ports;
use crate::state::tcp::{self, SynOnState, TcpVerdict};
use crate::state::{
    State, StateKey, StateTable, Timeout, STATE_INITIATOR_IS_1, STATE_LOG, STATE_OUTBOUND,
};
use crate::vip::VipTable;
use crate::wire::parse::{parse_frame_into, parse_quoted, Fragment, ParsedFrame, QuotedL4, L3, L4};
use crate::wire::{arp, checksum, ip_protocol, MacAddr, NdiscPacket, TcpOptions};

pub use stats::{Counter, DropReason, PortStats, RuleStats, WorkerStats};

/// What the control core must see, handed over by a worker.
pub enum ToControl<B> {
    /// A frame for the control plane (CARP, pfsync), with the interface it arrived on.
    Frame { iface: u16, buf: B },
    /// A neighbour's address and MAC, learned from ARP or ND.
    Learn {
        iface: u16,
        ip: IpAddr,
        mac: MacAddr,
    },
    /// A next hop whose MAC is unknown: resolve it (ARP request / neighbour solicitation).
    Resolve { iface: u16, ip: IpAddr },
    /// The first packet of a new state, ready to leave on `iface`, held until pfsync's peer
    /// acknowledges the state (`[pfsync] defer`).
    Deferred {
        iface: u16,
        buf: B,
        key: StateKey,
        id: u64,
        creator: u32,
    },
}

/// A change a worker made to the state table, for pfsync (sent only when pfsync is on).
/// An event names the state; what pfsync sends is read from the table when it is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateEvent {
    /// A state was created (pf's `pfsync_insert_state`).
    Inserted {
        key: StateKey,
        id: u64,
        creator: u32,
    },
    /// `updates` packets changed the state since the last event for it (coalesced by the
    /// worker: see [`SYNC_UPDATE_BATCH`]).
    Updated {
        key: StateKey,
        id: u64,
        creator: u32,
        updates: u32,
    },
    /// A worker removed the state (a SYN reusing a closed connection's ports).
    Deleted { id: u64, creator: u32 },
}

/// The queue of state events from one worker to pfsync on the control core.
pub type SyncQueue = ArrayQueue<StateEvent>;

/// A worker reports a state's updates every this many packets, or at once when the
/// packet moved a TCP peer's state or came after a quiet second. pf calls pfsync on every
/// packet and pfsync coalesces; reporting every packet would cost a queue push per packet,
/// and pfsync's `maxupd` (128 by default) counts in these batches.
pub const SYNC_UPDATE_BATCH: u64 = 32;

/// A state quiet for this long reports its next packet at once.
const SYNC_QUIET_MS: u64 = 1000;

/// Frames the control core hands a worker to transmit: (interface, frame).
pub type InjectionQueue<B> = ArrayQueue<(u16, B)>;

/// The tables a worker reads, shared with the control core (which writes them).
#[derive(Clone)]
pub struct Shared {
    pub interfaces: Arc<InterfaceTable>,
    pub policy: Arc<Published<CompiledPolicy>>,
    pub routes: Arc<Published<RouteTable>>,
    pub neighbors: Arc<Published<NeighborTable>>,
    pub vips: Arc<VipTable>,
    pub states: Arc<StateTable>,
}

impl Shared {
    /// Every table built from the configuration: interfaces (with each one's actual MAC),
    /// the compiled policy, routes, static neighbours, VIPs (none MASTER yet) and an empty
    /// state table.
    pub fn from_config(
        config: &rampart_conf::Config,
        macs: &[MacAddr],
        states: crate::state::StateTableConfig,
    ) -> Shared {
        Shared {
            interfaces: Arc::new(InterfaceTable::new(config, macs)),
            policy: Arc::new(Published::new(CompiledPolicy::compile(config))),
            routes: Arc::new(Published::new(RouteTable::from_config(config))),
            neighbors: Arc::new(Published::new(NeighborTable::from_config(config))),
            vips: Arc::new(VipTable::from_config(config)),
            states: Arc::new(StateTable::new(states)),
        }
    }
}

/// CARP's and pfsync's multicast groups.
const CARP_V4: [u8; 4] = [224, 0, 0, 18];
const PFSYNC_V4: [u8; 4] = [224, 0, 0, 240];
const CARP_V6: u128 = 0xff02_0000_0000_0000_0000_0000_0000_0012;

/// A next hop's MAC resolution asked of the control core recently (per worker, so the
/// queue is not flooded while the first request is answered).
#[derive(Clone, Copy)]
struct RecentResolve {
    iface: u16,
    ip: IpAddr,
    at_ms: u64,
}

const RESOLVE_SLOTS: usize = 64;

/// A worker's cache of forwarding decisions: destination → egress interface and next-hop
/// MAC, valid while neither the route nor the neighbour table changed. Direct-mapped: one
/// multiply and one compare instead of a route lookup and a neighbour lookup per packet.
#[derive(Clone, Copy)]
struct CachedHop {
    dst: IpAddr,
    iface: u16,
    mac: MacAddr,
    generation: u64,
}

const HOP_CACHE_SLOTS: usize = 1024;

/// A one-hash, 256-bit Bloom filter of the appliance's own addresses (interfaces, link-locals,
/// VIPs, directed broadcasts): most transit packets are told "not local" without a lookup.
#[derive(Clone, Copy, Default)]
struct LocalFilter([u64; 4]);

impl LocalFilter {
    #[inline]
    fn bit(addr: IpAddr) -> usize {
        (hash_ip(addr) & 255) as usize
    }

    fn insert(&mut self, addr: IpAddr) {
        let b = Self::bit(addr);
        self.0[b / 64] |= 1 << (b % 64);
    }

    #[inline]
    fn may_contain(&self, addr: IpAddr) -> bool {
        let b = Self::bit(addr);
        self.0[b / 64] & (1 << (b % 64)) != 0
    }
}
/// Ask again for the same next hop at most this often.
const RESOLVE_EVERY_MS: u64 = 1000;

/// Stage 1's result for one frame, written in place in the worker's per-burst array and
/// read by reference (it is about 150 bytes: copying it cost more than parsing).
#[derive(Clone, Copy)]
struct Prepared {
    /// `Err`: the frame is dropped for this reason, and the rest is not meaningful.
    parsed: Result<(), DropReason>,
    frame: ParsedFrame,
    key: StateKey,
    src_first: bool,
    hash: u64,
}

impl Default for Prepared {
    fn default() -> Prepared {
        Prepared {
            parsed: Err(DropReason::Short),
            frame: ParsedFrame::default(),
            key: StateKey::default(),
            src_first: false,
            hash: 0,
        }
    }
}

/// What to do with a processed frame.
enum Outcome {
    Transmit(u16),
    Drop(DropReason),
    /// Hand the frame to the control core.
    ToControl,
    /// Handled here with nothing to send (ARP / ND heard for learning, or for other
    /// hosts): freed, and not a drop.
    Consumed,
}

/// One worker's loop state. `P` is the port backend (DPDK queues or in-memory ports).
pub struct Worker<P: Port> {
    pub id: u16,
    ports: Vec<P>,
    interfaces: Arc<InterfaceTable>,
    vips: Arc<VipTable>,
    states: Arc<StateTable>,
    policy: Snapshot<CompiledPolicy>,
    routes: Snapshot<RouteTable>,
    neighbors: Snapshot<NeighborTable>,
    control: Arc<ArrayQueue<ToControl<P::Buf>>>,
    stats: Arc<WorkerStats>,
    rx: Vec<P::Buf>,
    tx: Vec<Vec<P::Buf>>,
    /// One entry per frame of the burst being processed (`BURST` long).
    prepared: Vec<Prepared>,
    resolves: [Option<RecentResolve>; RESOLVE_SLOTS],
    hops: Box<[Option<CachedHop>]>,
    local: LocalFilter,
    /// Frames the control core asks this worker to transmit, for ports where the control
    /// core has no TX queue of its own (devices with a single queue pair).
    injected: Option<Arc<InjectionQueue<P::Buf>>>,
    /// pfsync's state events, when pfsync runs.
    sync: Option<Arc<SyncQueue>>,
    /// `[pfsync] defer`: hand the first packet of each new state to the control core.
    defer: bool,
    /// The state the packet being processed created, when it is to be held.
    deferred: Option<(StateKey, u64, u32)>,
}

impl<P: Port> Worker<P> {
    /// A worker over `ports` (index = interface index), reading `shared` and handing frames
    /// to the control core through `control`.
    pub fn new(
        id: u16,
        ports: Vec<P>,
        shared: &Shared,
        control: Arc<ArrayQueue<ToControl<P::Buf>>>,
    ) -> Worker<P> {
        let n = ports.len();
        let mut local = LocalFilter::default();
        for info in shared.interfaces.iter() {
            local.insert(IpAddr::V6(info.ipv6_link_local()));
            for net in info.addresses() {
                local.insert(net.addr());
                if let ipnet::IpNet::V4(v4) = net {
                    local.insert(IpAddr::V4(v4.broadcast()));
                }
            }
        }
        for g in shared.vips.groups() {
            for a in g.addresses() {
                local.insert(*a);
            }
        }
        Worker {
            id,
            ports,
            interfaces: shared.interfaces.clone(),
            vips: shared.vips.clone(),
            states: shared.states.clone(),
            policy: Snapshot::new(shared.policy.clone()),
            routes: Snapshot::new(shared.routes.clone()),
            neighbors: Snapshot::new(shared.neighbors.clone()),
            control,
            stats: Arc::new(WorkerStats::new(n, shared.policy.load().rule_count())),
            rx: Vec::with_capacity(BURST),
            tx: (0..n)
                .map(|_| Vec::with_capacity(BURST * n.max(1)))
                .collect(),
            prepared: vec![Prepared::default(); BURST],
            resolves: [None; RESOLVE_SLOTS],
            hops: vec![None; HOP_CACHE_SLOTS].into_boxed_slice(),
            local,
            injected: None,
            sync: None,
            defer: false,
            deferred: None,
        }
    }

    pub fn stats(&self) -> Arc<WorkerStats> {
        self.stats.clone()
    }

    /// Makes this worker transmit, with its own bursts, the frames the control core puts
    /// in `queue` (interface, frame): the control core's TX path on ports that have no
    /// spare TX queue for it. At most one burst's worth is taken per poll.
    pub fn set_injection_queue(&mut self, queue: Arc<InjectionQueue<P::Buf>>) {
        self.injected = Some(queue);
    }

    /// Makes this worker report the states it creates, updates and removes to pfsync
    /// through `queue`. A full queue loses the event (counted), never the packet.
    pub fn set_sync_queue(&mut self, queue: Arc<SyncQueue>) {
        self.sync = Some(queue);
    }

    /// `[pfsync] defer`: a packet whose outbound pass creates a state (pf calls
    /// `pfsync_defer` only for `PF_OUT`) goes to the control core, which transmits it once
    /// the peer has the state (or after 20 ms). Needs a sync queue.
    pub fn set_defer(&mut self, defer: bool) {
        self.defer = defer && self.sync.is_some();
    }

    #[inline]
    fn sync_event(&self, event: StateEvent) {
        if let Some(q) = &self.sync {
            if q.push(event).is_ok() {
                self.stats.sync_events.inc();
            } else {
                self.stats.sync_events_lost.inc();
            }
        }
    }

    pub fn ports(&self) -> &[P] {
        &self.ports
    }

    pub fn ports_mut(&mut self) -> &mut [P] {
        &mut self.ports
    }

    /// One pass over every port: receive a burst from each, process it, transmit.
    /// `now_ms` is the clock for state timeouts (monotonic time, or a capture's timestamps
    /// in replay). Returns the number of frames received, and of frames the control core
    /// handed over to transmit.
    pub fn poll(&mut self, now_ms: u64) -> usize {
        self.policy.refresh();
        self.routes.refresh();
        self.neighbors.refresh();
        let mut received = 0;
        for port in 0..self.ports.len() {
            let mut rx = std::mem::take(&mut self.rx);
            let n = self.ports[port].rx_burst(&mut rx, BURST);
            received += n;
            if n == BURST {
                self.stats.full_bursts.inc();
            }
            if n > 0 {
                self.process_burst(port as u16, &mut rx, now_ms);
            }
            rx.clear();
            self.rx = rx;
        }
        if let Some(q) = &self.injected {
            for _ in 0..BURST {
                let Some((iface, buf)) = q.pop() else { break };
                // Work done: an adaptive poller must not nap while frames are handed over.
                received += 1;
                match self.tx.get_mut(iface as usize) {
                    Some(tx) => tx.push(buf),
                    None => drop(buf),
                }
            }
        }
        self.flush();
        self.stats.polls.inc();
        if received > 0 {
            self.stats.busy_polls.inc();
            self.stats.polled_frames.add(received as u64);
        }
        received
    }

    fn process_burst(&mut self, port: u16, rx: &mut Vec<P::Buf>, now_ms: u64) {
        let pstats = &self.stats.ports[port as usize];
        // Stage 1: parse everything, hash the state keys and prefetch their index lines,
        // so the lookups of stage 2 find them in cache.
        // rx_burst was asked for at most BURST frames, one per slot of `prepared`.
        debug_assert!(rx.len() <= BURST);
        let n = rx.len().min(BURST);
        let mut prepared = std::mem::take(&mut self.prepared);
        for (buf, p) in rx.iter().zip(prepared.iter_mut()) {
            let data = buf.data();
            pstats.rx_packets.inc();
            pstats.rx_bytes.add(data.len() as u64);
            p.parsed = parse_frame_into(data, &mut p.frame).map_err(DropReason::from_parse);
            if p.parsed.is_ok() {
                let frame = &p.frame;
                let (sport, dport) = state_ports(frame);
                (p.key, p.src_first) =
                    StateKey::new(frame.protocol, frame.src, sport, frame.dst, dport);
                p.hash = self.states.hash(&p.key);
                if frame.ip_version().is_some() {
                    self.states.prefetch_index(p.hash);
                }
            }
        }
        // By now the first index lines have landed: look at them and prefetch the states.
        for p in prepared[..n].iter().filter(|p| p.parsed.is_ok()) {
            self.states.prefetch_state(p.hash);
            self.states.prefetch_lock(p.hash);
        }
        // Stage 2: decide and act on each frame.
        for (mut buf, p) in rx.drain(..).zip(prepared.iter()) {
            self.deferred = None;
            let outcome = match p.parsed {
                Ok(()) => self.process(port, &mut buf, p, now_ms),
                Err(reason) => Outcome::Drop(reason),
            };
            match outcome {
                Outcome::Transmit(out) => match self.deferred.take() {
                    None => self.tx[out as usize].push(buf),
                    Some((key, id, creator)) => {
                        let held = ToControl::Deferred {
                            iface: out,
                            buf,
                            key,
                            id,
                            creator,
                        };
                        match self.control.push(held) {
                            Ok(()) => self.stats.to_control.inc(),
                            // No room to hold it: it leaves now, as without defer.
                            Err(ToControl::Deferred { buf, .. }) => self.tx[out as usize].push(buf),
                            Err(_) => {}
                        }
                    }
                },
                Outcome::Drop(reason) => self.stats.count_drop(reason),
                Outcome::Consumed => {}
                Outcome::ToControl => {
                    // The frame's buffer goes with it; a full queue drops it (never blocks).
                    if self
                        .control
                        .push(ToControl::Frame { iface: port, buf })
                        .is_ok()
                    {
                        self.stats.to_control.inc();
                    } else {
                        self.stats.count_drop(DropReason::QueueFull);
                    }
                }
            }
        }
        self.prepared = prepared;
    }

    fn flush(&mut self) {
        for port in 0..self.ports.len() {
            let pending = &mut self.tx[port];
            if pending.is_empty() {
                continue;
            }
            let bytes: u64 = pending.iter().map(|b| b.data().len() as u64).sum();
            let total = pending.len();
            let sent = self.ports[port].tx_burst(pending);
            let ps = &self.stats.ports[port];
            ps.tx_packets.add(sent as u64);
            if sent == total {
                ps.tx_bytes.add(bytes);
            } else {
                let unsent: u64 = pending.iter().map(|b| b.data().len() as u64).sum();
                ps.tx_bytes.add(bytes - unsent);
                ps.tx_dropped.add((total - sent) as u64);
                self.stats.drops[DropReason::TxFull as usize].add((total - sent) as u64);
                pending.clear();
            }
        }
    }

    fn notify(&self, msg: ToControl<P::Buf>) {
        if self.control.push(msg).is_ok() {
            self.stats.to_control.inc();
        } else {
            self.stats.count_drop(DropReason::QueueFull);
        }
    }

    fn process(&mut self, port: u16, buf: &mut P::Buf, p: &Prepared, now_ms: u64) -> Outcome {
        let f = &p.frame;
        if f.vlan.is_some() {
            return Outcome::Drop(DropReason::Unsupported);
        }
        let own_mac = self.interfaces.mac(port);
        // L2: ours, broadcast, multicast, or a virtual MAC we are MASTER for.
        let dst_mac = MacAddr(read6(buf.data(), 0));
        if dst_mac != own_mac && !dst_mac.is_multicast() {
            match self.vips.lookup_mac(port, dst_mac) {
                Some(group) if self.vips.is_master(group) => {}
                Some(_) => return Outcome::Drop(DropReason::CarpBackup),
                None => return Outcome::Drop(DropReason::NotForUs),
            }
        }
        match f.l3 {
            L3::Arp { operation } => self.arp(port, buf, f, operation, own_mac),
            L3::Ipv4 | L3::Ipv6 => {
                if f.fragment != Fragment::Whole {
                    return Outcome::Drop(DropReason::Fragment);
                }
                if let L4::Icmpv6(i) = f.l4 {
                    if i.msg_type == 135 || i.msg_type == 136 {
                        return self.neighbor_discovery(port, buf, f, i.msg_type, own_mac);
                    }
                }
                self.ip(port, buf, p, own_mac, now_ms)
            }
        }
    }

    fn arp(
        &mut self,
        port: u16,
        buf: &mut P::Buf,
        f: &ParsedFrame,
        op: u16,
        own_mac: MacAddr,
    ) -> Outcome {
        let (IpAddr::V4(sender), IpAddr::V4(target)) = (f.src, f.dst) else {
            return Outcome::Drop(DropReason::Unsupported);
        };
        let sender_mac = MacAddr(read6(buf.data(), f.l3_offset as usize + 8));
        // OpenBSD's in_arpinput: an ARP frame from one of our own MACs (the interface's, or
        // a CARP virtual MAC, e.g. the new MASTER's gratuitous ARP for a VIP we still hold)
        // is ignored: answering it would pull the virtual MAC back to this port.
        if sender_mac == own_mac || self.vips.lookup_mac(port, sender_mac).is_some() {
            return Outcome::Consumed;
        }
        let sender_ip = IpAddr::V4(sender);
        let sender_is_ours = self.interfaces.is_local(sender_ip).is_some()
            || self.vips.lookup_addr(sender_ip).is_some();
        // A gratuitous ARP (sender = target) announces; it is never answered.
        let gratuitous = sender == target;
        let on_link = self.interfaces.on_link(port, sender_ip);
        let ours = self.interfaces.is_local(IpAddr::V4(target)) == Some(port);
        let vip = self
            .vips
            .lookup_addr(IpAddr::V4(target))
            .filter(|v| v.iface == port && self.vips.is_master(v.group));
        if on_link
            && !sender.is_unspecified()
            && !sender_is_ours
            && (ours || vip.is_some() || gratuitous || op == arp::operation::REPLY)
        {
            self.notify(ToControl::Learn {
                iface: port,
                ip: sender_ip,
                mac: sender_mac,
            });
        }
        if op == arp::operation::REQUEST && !gratuitous && (ours || vip.is_some()) {
            let mac = vip.map_or(own_mac, |v| v.mac);
            if reply::arp_reply(buf, f, mac) {
                self.stats.replies.inc();
                return Outcome::Transmit(port);
            }
        }
        Outcome::Consumed
    }

    fn neighbor_discovery(
        &mut self,
        port: u16,
        buf: &mut P::Buf,
        f: &ParsedFrame,
        msg_type: u8,
        own_mac: MacAddr,
    ) -> Outcome {
        // RFC 4861: ND messages must arrive with hop limit 255 (they never cross a router).
        let IpAddr::V6(src) = f.src else {
            return Outcome::Drop(DropReason::Normalize);
        };
        if f.ttl != 255 {
            return Outcome::Drop(DropReason::Normalize);
        }
        let l4 = f.l4_offset as usize;
        let end = (f.l3_offset + f.l3_len) as usize;
        let Some(nd_bytes) = buf.data().get(l4..end) else {
            return Outcome::Drop(DropReason::Short);
        };
        let Ok(nd) = NdiscPacket::new_checked(nd_bytes) else {
            return Outcome::Drop(DropReason::Normalize);
        };
        let target = nd.target_addr();
        let link_addr = if msg_type == 135 {
            nd.source_link_addr()
        } else {
            nd.target_link_addr()
        };
        if let Ok(Some(mac)) = link_addr {
            let ip = if msg_type == 135 {
                IpAddr::V6(src)
            } else {
                IpAddr::V6(target)
            };
            if !src.is_unspecified() {
                self.notify(ToControl::Learn {
                    iface: port,
                    ip,
                    mac,
                });
            }
        }
        if msg_type == 135 {
            let t = IpAddr::V6(target);
            let ours = self.interfaces.is_local(t) == Some(port)
                || self.interfaces.ipv6_link_local(port) == target;
            let vip = self
                .vips
                .lookup_addr(t)
                .filter(|v| v.iface == port && self.vips.is_master(v.group));
            if ours || vip.is_some() {
                let mac = vip.map_or(own_mac, |v| v.mac);
                if reply::neighbor_advert(buf, f, target, mac, true) {
                    self.stats.replies.inc();
                    return Outcome::Transmit(port);
                }
            }
        }
        Outcome::Consumed
    }

    /// IPv4 / IPv6: to the appliance itself, or through it.
    fn ip(
        &mut self,
        port: u16,
        buf: &mut P::Buf,
        p: &Prepared,
        own_mac: MacAddr,
        now_ms: u64,
    ) -> Outcome {
        let f = &p.frame;
        let local = self.is_local_destination(port, f.dst);
        match local {
            LocalKind::NotLocal => {}
            LocalKind::BackupVip => return Outcome::Drop(DropReason::CarpBackup),
            LocalKind::OtherMulticast => return Outcome::Drop(DropReason::Local),
            LocalKind::Own | LocalKind::ControlGroup => {
                if let Err(reason) = self.filter(port, None, buf, p, now_ms, own_mac) {
                    return reason;
                }
                return self.local(port, buf, f, own_mac);
            }
        }
        // Transit.
        if f.ttl <= 1 {
            return Outcome::Drop(DropReason::TtlExceeded);
        }
        let generation = self.routes.generation() ^ self.neighbors.generation().rotate_left(32);
        let slot = (hash_ip(f.dst) as usize) % HOP_CACHE_SLOTS;
        let (out, next_mac) = match self.hops[slot] {
            Some(h) if h.dst == f.dst && h.generation == generation => (h.iface, Some(h.mac)),
            _ => {
                let Some(hop) = self.routes.get().lookup(f.dst) else {
                    // Filter inbound first, as pf does, so a blocked packet counts as blocked.
                    if let Err(o) = self.filter(port, None, buf, p, now_ms, own_mac) {
                        return o;
                    }
                    return Outcome::Drop(DropReason::NoRoute);
                };
                let mac = self.neighbors.get().lookup(hop.iface, hop.via);
                match mac {
                    Some(mac) => {
                        self.hops[slot] = Some(CachedHop {
                            dst: f.dst,
                            iface: hop.iface,
                            mac,
                            generation,
                        });
                        (hop.iface, Some(mac))
                    }
                    None => {
                        if let Err(o) = self.filter(port, Some(hop.iface), buf, p, now_ms, own_mac)
                        {
                            return o;
                        }
                        self.request_resolution(hop.iface, hop.via, now_ms);
                        return Outcome::Drop(DropReason::NoNeighbor);
                    }
                }
            }
        };
        if let Err(o) = self.filter(port, Some(out), buf, p, now_ms, own_mac) {
            return o;
        }
        if f.l3_len > u32::from(self.interfaces.mtu(out)) {
            return Outcome::Drop(DropReason::TooBig);
        }
        let Some(next_mac) = next_mac else {
            return Outcome::Drop(DropReason::NoNeighbor);
        };
        let data = buf.data_mut();
        decrement_ttl(data, f);
        data[0..6].copy_from_slice(&next_mac.0);
        data[6..12].copy_from_slice(&self.interfaces.mac(out).0);
        self.stats.forwarded.inc();
        Outcome::Transmit(out)
    }

    fn is_local_destination(&self, port: u16, dst: IpAddr) -> LocalKind {
        let maybe_local = self.local.may_contain(dst);
        match dst {
            IpAddr::V4(a) => {
                // Multicast (CARP's and pfsync's groups among them) and the limited
                // broadcast are all at 224.0.0.0 and above: one compare for the rest.
                let o = a.octets();
                if o[0] >= 224 {
                    if o == CARP_V4 || o == PFSYNC_V4 {
                        return LocalKind::ControlGroup;
                    }
                    if a.is_multicast() || a.is_broadcast() {
                        return LocalKind::OtherMulticast;
                    }
                }
                if !maybe_local {
                    return LocalKind::NotLocal;
                }
                if self.interfaces.is_local(dst).is_some() {
                    return LocalKind::Own;
                }
                // Directed broadcasts are in the Bloom filter: only a maybe-local
                // destination can be one.
                if self.interfaces.is_directed_broadcast(port, dst) {
                    return LocalKind::OtherMulticast;
                }
            }
            IpAddr::V6(a) => {
                if a.is_multicast() {
                    if u128::from(a) == CARP_V6 {
                        return LocalKind::ControlGroup;
                    }
                    return LocalKind::OtherMulticast;
                }
                if !maybe_local {
                    return LocalKind::NotLocal;
                }
                if self.interfaces.is_local(dst).is_some()
                    || a == self.interfaces.ipv6_link_local(port)
                {
                    return LocalKind::Own;
                }
            }
        }
        match self.vips.lookup_addr(dst) {
            Some(v) if self.vips.is_master(v.group) => LocalKind::Own,
            Some(_) => LocalKind::BackupVip,
            None => LocalKind::NotLocal,
        }
    }

    /// Packets to the appliance that passed the inbound rules.
    fn local(&mut self, port: u16, buf: &mut P::Buf, f: &ParsedFrame, own_mac: MacAddr) -> Outcome {
        match (f.protocol, f.l4) {
            (ip_protocol::CARP | ip_protocol::PFSYNC, _) => Outcome::ToControl,
            (_, L4::Icmp(i)) if i.msg_type == 8 => self.answer_echo(port, buf, f, own_mac),
            (_, L4::Icmpv6(i)) if i.msg_type == 128 => self.answer_echo(port, buf, f, own_mac),
            _ => Outcome::Drop(DropReason::Local),
        }
    }

    fn answer_echo(
        &mut self,
        port: u16,
        buf: &mut P::Buf,
        f: &ParsedFrame,
        own_mac: MacAddr,
    ) -> Outcome {
        // Answer from the MAC the request was sent to (ours, or a VIP's virtual MAC).
        let dst_mac = MacAddr(read6(buf.data(), 0));
        let mac = if dst_mac.is_multicast() {
            own_mac
        } else {
            dst_mac
        };
        if reply::echo_reply(buf, f, mac) {
            self.stats.replies.inc();
            Outcome::Transmit(port)
        } else {
            Outcome::Drop(DropReason::Local)
        }
    }

    fn request_resolution(&mut self, iface: u16, ip: IpAddr, now_ms: u64) {
        let slot = (hash_ip(ip) as usize ^ iface as usize) % RESOLVE_SLOTS;
        if let Some(r) = self.resolves[slot] {
            if r.iface == iface && r.ip == ip && now_ms < r.at_ms + RESOLVE_EVERY_MS {
                return;
            }
        }
        self.resolves[slot] = Some(RecentResolve {
            iface,
            ip,
            at_ms: now_ms,
        });
        self.notify(ToControl::Resolve { iface, ip });
    }

    /// pf's filtering of one packet: `in` on the interface it arrived on and, when it is
    /// forwarded, `out` on the interface it leaves by. State lookup comes first; rules are
    /// evaluated only at a filter point no state covers. `Err` carries the outcome of a
    /// packet that must not go on (dropped, or answered with a RST/ICMP error).
    fn filter(
        &mut self,
        in_port: u16,
        out_port: Option<u16>,
        buf: &mut P::Buf,
        p: &Prepared,
        now_ms: u64,
        own_mac: MacAddr,
    ) -> Result<(), Outcome> {
        let f = &p.frame;
        // ICMP errors belong to the connection they quote.
        let icmp_error = matches!(f.l4, L4::Icmp(i) | L4::Icmpv6(i) if i.is_error);
        if icmp_error {
            match self.related_to_state(buf.data(), f, now_ms) {
                Related::State => {
                    self.stats.state_hits.inc();
                    self.stats.passed.inc();
                    return Ok(());
                }
                // A state exists but never sent what is quoted: dropped, no rules (pf).
                Related::OutOfWindow => return Err(Outcome::Drop(DropReason::StateMismatch)),
                Related::None => {}
            }
        }
        let states = &*self.states;
        let mut shard = states.lock(p.hash);
        self.stats.state_searches.inc();
        let found = shard.find(&p.key, p.hash, now_ms);
        // A bare SYN on a closed state reuses the port: pf purges the old state and drops
        // the SYN; its retransmission creates a fresh state.
        if let (Some(idx), Some(t)) = (found, f.tcp()) {
            let st = shard.get(idx);
            let s = st.sender(p.src_first);
            match tcp::syn_on_state(t.flags.bits(), &st.peers[s], &st.peers[1 - s]) {
                SynOnState::Track => {}
                SynOnState::Reuse => {
                    self.sync_event(StateEvent::Deleted {
                        id: st.id,
                        creator: st.creator,
                    });
                    shard.remove(idx, p.hash);
                    return Err(Outcome::Drop(DropReason::StateMismatch));
                }
                SynOnState::ChallengeAck => {
                    // pf_send_challenge_ack: an ACK from the SYN's destination carrying
                    // the sequence numbers the connection is at, so a peer that rebooted
                    // and reuses the ports answers with a RST that clears the state.
                    let (seq, ack) = (st.peers[1 - s].seqlo, st.peers[s].seqlo);
                    drop(shard);
                    return Err(self.answer_tcp(in_port, buf, f, own_mac, seq, ack, TCP_ACK));
                }
            }
        }
        let from_initiator = found.map(|idx| shard.get(idx).sender(p.src_first) == 0);
        // The common case, an established connection's packet whose state covers every
        // filter point it crosses: pf's state match, no rules to look at.
        if let (Some(idx), Some(init)) = (found, from_initiator) {
            let out_bit = out_port.map_or(0, |_| State::cover_bit(init, false));
            let needed = State::cover_bit(init, true) | out_bit;
            if shard.get(idx).covers & needed == needed {
                self.track(shard.get_mut(idx), p, buf, in_port, own_mac, now_ms)?;
                self.stats.passed.inc();
                self.stats.state_hits.inc();
                return Ok(());
            }
        }
        let points: [(u16, bool); 2] = [(in_port, true), (out_port.unwrap_or(in_port), false)];
        let npoints = if out_port.is_some() { 2 } else { 1 };
        let mut tracked = false;
        // The first pass that keeps state, and whether it was the inbound one.
        let mut keep: Option<(Verdict, bool)> = None;
        // The filter points whose pass kept state: pf's states, one per such point.
        let init = from_initiator.unwrap_or(true);
        let mut kept: u8 = 0;
        let mut by_state = false;
        for &(iface, inbound) in &points[..npoints] {
            if let (Some(idx), Some(init)) = (found, from_initiator) {
                if shard.get(idx).covers(init, inbound) {
                    if !tracked {
                        self.track(shard.get_mut(idx), p, buf, in_port, own_mac, now_ms)?;
                        tracked = true;
                    }
                    by_state = true;
                    continue;
                }
            }
            let meta = packet_meta(
                f,
                iface,
                if inbound {
                    Direction::In
                } else {
                    Direction::Out
                },
            );
            self.stats.rule_evaluations.inc();
            let v = self.policy.get().evaluate(&meta);
            if let Some(r) = v.rule {
                self.stats.rule_packet(r, f.l3_len);
            }
            if v.action == Action::Block {
                drop(shard);
                return Err(self.blocked(in_port, buf, f, v, own_mac));
            }
            // An ICMP error never creates a state (pf's `!ctx.state_icmp`): it belongs to
            // the connection it quotes, or to none.
            if v.keep_state && !icmp_error {
                kept |= State::cover_bit(init, inbound);
                keep.get_or_insert((v, inbound));
            }
        }
        self.stats.passed.inc();
        if by_state {
            self.stats.state_hits.inc();
        }
        // A filter point is covered from now on where a pass kept state, as pf creates a
        // state there; a point passed without state is evaluated for every packet (see
        // `state`'s module docs).
        match (found, keep) {
            (Some(idx), _) if by_state || keep.is_some() => {
                if !tracked {
                    self.track(shard.get_mut(idx), p, buf, in_port, own_mac, now_ms)?;
                }
                shard.get_mut(idx).covers |= kept;
            }
            (None, Some((v, inbound))) => {
                let iface = if inbound {
                    in_port
                } else {
                    out_port.unwrap_or(in_port)
                };
                let mut st = new_state(p, buf.data(), iface, !inbound, v, now_ms);
                st.covers = kept;
                match shard.insert(p.hash, st) {
                    Ok(idx) => {
                        self.stats.state_inserts.inc();
                        if self.sync.is_some() {
                            let st = shard.get(idx);
                            self.sync_event(StateEvent::Inserted {
                                key: st.key,
                                id: st.id,
                                creator: st.creator,
                            });
                            // pf defers a packet whose outbound pass creates a state
                            // (pf_test_rule with PF_OUT; with pass rules that keep state
                            // both passes create one), never one whose only state is the
                            // inbound one, nor a broadcast or multicast one (protocols.md
                            // §3.6; transit broadcasts never get here).
                            let out_state =
                                out_port.is_some() && kept & State::cover_bit(true, false) != 0;
                            if self.defer && out_state && !f.dst.is_multicast() {
                                self.deferred = Some((st.key, st.id, st.creator));
                            }
                        }
                        if let Some(r) = v.rule.and_then(|r| self.stats.rules.get(r as usize)) {
                            r.states.inc();
                        }
                    }
                    Err(_) => return Err(Outcome::Drop(DropReason::Memory)),
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Updates a state with a packet that matched it (pf's `pf_test_state`). `Err`: the
    /// packet is dropped, or answered (a RST for a handshake mismatch).
    fn track(
        &self,
        st: &mut State,
        p: &Prepared,
        buf: &mut P::Buf,
        in_port: u16,
        own_mac: MacAddr,
        now_ms: u64,
    ) -> Result<(), Outcome> {
        let f = &p.frame;
        let frame = buf.data();
        let s = st.sender(p.src_first);
        let before = (st.last_ms, st.peers[0].state, st.peers[1].state);
        let (a, b) = st.peers.split_at_mut(1);
        let (src, dst) = if s == 0 {
            (&mut a[0], &mut b[0])
        } else {
            (&mut b[0], &mut a[0])
        };
        match f.l4 {
            L4::Tcp(t) => {
                let seg = tcp_segment(f, &t, frame);
                match tcp::tcp_track(src, dst, &seg) {
                    TcpVerdict::Pass(class) => {
                        st.last_ms = now_ms;
                        st.timeout = class;
                    }
                    TcpVerdict::PassLoose => {}
                    TcpVerdict::Mismatch => return Err(Outcome::Drop(DropReason::StateMismatch)),
                    // Both ends in SYN_SENT and the segment fits neither: pf resets the
                    // sender's side and answers a RST (unless it is one) at its ACK.
                    TcpVerdict::MismatchResetHandshake => {
                        if t.flags.bits() & TCP_RST != 0 {
                            return Err(Outcome::Drop(DropReason::StateMismatch));
                        }
                        return Err(self.answer_tcp(in_port, buf, f, own_mac, t.ack, 0, TCP_RST));
                    }
                }
            }
            L4::Udp(_) => {
                st.timeout = tcp::single_track(src, dst, true);
                st.last_ms = now_ms;
            }
            L4::Icmp(_) | L4::Icmpv6(_) => {
                // pf gives an ICMP query state matched again icmp.error's timeout.
                st.timeout = Timeout::IcmpError;
                st.last_ms = now_ms;
            }
            L4::None => {
                st.timeout = tcp::single_track(src, dst, false);
                st.last_ms = now_ms;
            }
        }
        st.packets[s] += 1;
        st.bytes[s] += u64::from(f.l3_len);
        self.stats.rule_packet(st.rule, f.l3_len);
        if self.sync.is_some() {
            let (last_ms, state0, state1) = before;
            let batch = (st.packets[0] + st.packets[1]) % SYNC_UPDATE_BATCH == 0;
            let moved = state0 != st.peers[0].state || state1 != st.peers[1].state;
            if batch || moved || now_ms >= last_ms + SYNC_QUIET_MS {
                self.sync_event(StateEvent::Updated {
                    key: st.key,
                    id: st.id,
                    creator: st.creator,
                    updates: if batch { SYNC_UPDATE_BATCH as u32 } else { 1 },
                });
            }
        }
        Ok(())
    }

    /// Whether an ICMP error quotes a packet of a connection in the state table, as
    /// pf_test_state_icmp decides it: the error must go back to the quoted packet's
    /// sender, and a quoted TCP sequence number must lie in that sender's window.
    fn related_to_state(&self, frame: &[u8], f: &ParsedFrame, now_ms: u64) -> Related {
        let Ok(q) = parse_quoted(f.payload(frame), f.src.is_ipv6()) else {
            return Related::None;
        };
        if q.src != f.dst {
            return Related::None;
        }
        let (sport, dport) = match q.l4 {
            QuotedL4::Tcp {
                src_port, dst_port, ..
            }
            | QuotedL4::Udp { src_port, dst_port } => (src_port, dst_port),
            QuotedL4::Icmp {
                msg_type, ident, ..
            } => icmp_ports(q.src.is_ipv6(), msg_type, ident),
            QuotedL4::None => (0, 0),
        };
        let (key, src_first) = StateKey::new(q.protocol, q.src, sport, q.dst, dport);
        let hash = self.states.hash(&key);
        let mut shard = self.states.lock(hash);
        let Some(idx) = shard.find(&key, hash, now_ms) else {
            return Related::None;
        };
        if let QuotedL4::Tcp { seq, .. } = q.l4 {
            let st = shard.get(idx);
            let s = st.sender(src_first);
            if !tcp::quoted_seq_in_window(&st.peers[s], &st.peers[1 - s], seq) {
                return Related::OutOfWindow;
            }
        }
        Related::State
    }

    /// Answers a TCP segment with a bare segment from its destination (pf_send_tcp) on the
    /// port it came in by; the segment itself is dropped (counted as state-mismatch).
    #[allow(clippy::too_many_arguments)]
    fn answer_tcp(
        &self,
        in_port: u16,
        buf: &mut P::Buf,
        f: &ParsedFrame,
        own_mac: MacAddr,
        seq: u32,
        ack: u32,
        flags: u8,
    ) -> Outcome {
        if reply::tcp_answer(buf, f, own_mac, seq, ack, flags) {
            self.stats.count_drop(DropReason::StateMismatch);
            self.stats.replies.inc();
            Outcome::Transmit(in_port)
        } else {
            Outcome::Drop(DropReason::StateMismatch)
        }
    }

    /// A blocked packet: dropped, or answered as the rule says (`return`).
    fn blocked(
        &self,
        in_port: u16,
        buf: &mut P::Buf,
        f: &ParsedFrame,
        v: Verdict,
        own_mac: MacAddr,
    ) -> Outcome {
        if v.return_
            && !f.dst.is_multicast()
            && !self.interfaces.is_directed_broadcast(in_port, f.dst)
        {
            let answered = match f.l4 {
                L4::Tcp(_) => reply::tcp_reset(buf, f, own_mac),
                _ => reply::icmp_unreachable(buf, f, own_mac),
            };
            if answered {
                self.stats.count_drop(DropReason::Match);
                self.stats.replies.inc();
                return Outcome::Transmit(in_port);
            }
        }
        Outcome::Drop(DropReason::Match)
    }
}

/// What an ICMP error's quoted packet finds in the state table.
enum Related {
    /// No state: the rules decide.
    None,
    /// The state of the connection it quotes: passed by that state.
    State,
    /// A TCP state whose sender never sent the quoted sequence number.
    OutOfWindow,
}

/// TCP flag bits for the segments pf sends itself.
const TCP_ACK: u8 = 0x10;
const TCP_RST: u8 = 0x04;

enum LocalKind {
    NotLocal,
    /// One of the appliance's addresses (or a VIP it is MASTER for).
    Own,
    /// CARP's or pfsync's multicast group.
    ControlGroup,
    /// A VIP this node is BACKUP for.
    BackupVip,
    /// Other multicast / broadcast: not forwarded, nothing serves it here.
    OtherMulticast,
}

/// The ports pf puts in a state key: TCP/UDP ports, an ICMP query's identifier and virtual
/// type ([`icmp_ports`]).
#[inline]
fn state_ports(f: &ParsedFrame) -> (u16, u16) {
    match f.l4 {
        L4::Tcp(t) => (t.src_port, t.dst_port),
        L4::Udp(u) => (u.src_port, u.dst_port),
        L4::Icmp(i) => icmp_ports(false, i.msg_type, i.ident),
        L4::Icmpv6(i) => icmp_ports(true, i.msg_type, i.ident),
        L4::None => (0, 0),
    }
}

#[inline]
fn packet_meta(f: &ParsedFrame, iface: u16, dir: Direction) -> PacketMeta {
    let (sport, dport) = f.ports().unwrap_or((0, 0));
    PacketMeta {
        iface,
        dir,
        src: f.src,
        dst: f.dst,
        proto: f.protocol,
        sport,
        dport,
        tcp_flags: f.tcp().map_or(0, |t| t.flags.bits()),
    }
}

fn tcp_segment(f: &ParsedFrame, t: &crate::wire::parse::TcpSummary, frame: &[u8]) -> tcp::Segment {
    // The window-scale option only matters on SYNs: parse options only there.
    let wscale = if t.flags.bits() & 0x02 != 0 {
        f.tcp_options(frame)
            .and_then(|o| TcpOptions::parse(o).ok())
            .and_then(|o| o.wscale)
    } else {
        None
    };
    tcp::Segment {
        seq: t.seq,
        ack: t.ack,
        window: t.window,
        flags: t.flags.bits(),
        payload_len: f.payload_len,
        wscale,
    }
}

/// A new state from the packet that created it (pf's `pf_create_state`).
fn new_state(
    p: &Prepared,
    frame: &[u8],
    iface: u16,
    outbound: bool,
    v: Verdict,
    now_ms: u64,
) -> State {
    let f = &p.frame;
    let (peers, timeout) = match f.l4 {
        L4::Tcp(t) => tcp::tcp_new(&tcp_segment(f, &t, frame)),
        L4::Udp(_) => (
            [
                tcp::Peer {
                    state: tcp::single::SINGLE,
                    ..Default::default()
                },
                tcp::Peer::default(),
            ],
            Timeout::UdpFirst,
        ),
        L4::Icmp(_) | L4::Icmpv6(_) => ([tcp::Peer::default(); 2], Timeout::IcmpFirst),
        L4::None => (
            [
                tcp::Peer {
                    state: tcp::single::SINGLE,
                    ..Default::default()
                },
                tcp::Peer::default(),
            ],
            Timeout::OtherFirst,
        ),
    };
    let mut flags = 0;
    if v.log {
        flags |= STATE_LOG;
    }
    if !p.src_first {
        flags |= STATE_INITIATOR_IS_1;
    }
    if outbound {
        flags |= STATE_OUTBOUND;
    }
    State {
        key: p.key,
        peers,
        last_ms: now_ms,
        packets: [1, 0],
        bytes: [u64::from(f.l3_len), 0],
        id: 0,
        created_s: (now_ms / 1000) as u32,
        creator: 0,
        rule: v.rule.unwrap_or(u32::MAX),
        iface: iface as u8,
        timeout,
        covers: 0,
        flags,
    }
}

/// TTL / hop limit − 1, with the IPv4 header checksum updated incrementally (RFC 1624).
#[inline]
fn decrement_ttl(data: &mut [u8], f: &ParsedFrame) {
    let l3 = f.l3_offset as usize;
    if f.src.is_ipv4() {
        // The parser saw a whole IPv4 header here; TTL is byte 8, the checksum bytes 10–11.
        let Some(h) = data.get_mut(l3 + 8..l3 + 12) else {
            return;
        };
        // TTL is the high byte of the 16-bit word at offset 8: it drops by 0x0100.
        let old = u16::from_be_bytes([h[0], h[1]]);
        h[0] = h[0].wrapping_sub(1);
        let ck = u16::from_be_bytes([h[2], h[3]]);
        let ck = checksum::update_u16(ck, old, old.wrapping_sub(0x0100));
        h[2..4].copy_from_slice(&ck.to_be_bytes());
    } else if let Some(hop_limit) = data.get_mut(l3 + 7) {
        *hop_limit = hop_limit.wrapping_sub(1);
    }
}

#[inline]
fn read6(data: &[u8], at: usize) -> [u8; 6] {
    let mut m = [0u8; 6];
    if let Some(s) = data.get(at..at + 6) {
        m.copy_from_slice(s);
    }
    m
}

fn hash_ip(ip: IpAddr) -> u64 {
    match ip {
        IpAddr::V4(a) => u32::from(a) as u64,
        IpAddr::V6(a) => {
            let v = u128::from(a);
            (v as u64) ^ ((v >> 64) as u64)
        }
    }
    .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        >> 32
}
