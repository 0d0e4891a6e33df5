//! pfsync on the control core: the [`PfsyncEngine`] between the workers' state events, the
//! state table, the sync interface and CARP.
//!
//! - Workers report what they do to states on their own [`SyncQueue`]s; each loop drains
//!   them (bounded) into the engine.
//! - Frames of IP protocol 240 arrive as `ToControl::Frame`; the engine's changes are made
//!   under the shard locks ([`apply_change`]) and its replies leave with the next `poll`.
//! - Datagrams become Ethernet frames here: from the sync interface's first IPv4 address and
//!   MAC, to 01:00:5e:00:00:f0 or to the unicast peer's MAC from the neighbour table.
//! - The bulk this node sends goes a slice per loop, as many packets as the sync interface's
//!   TX path has room for ([`SyncPlane::bulk`]): paced by the link, and the workers never
//!   wait (each state is read under its shard lock, one at a time).

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use crossbeam::queue::ArrayQueue;
use rampart_conf::{Config, MacAddr};
use rampart_dataplane::state::StateKey;
use rampart_dataplane::worker::{Shared, SyncQueue};
use serde_json::{json, Value};

use crate::neighbor::NeighborResolver;
use crate::pfsync::wire::action;
use crate::pfsync::{apply_change, Action, BulkEvent, BulkPhase, PfsyncConfig, PfsyncEngine};
use crate::pfsync::{StateId, StateMsg};

/// Each worker's queue of state events: room for a few milliseconds of new connections at
/// full rate, so a busy second on the control core loses none.
const SYNC_QUEUE_LEN: usize = 1 << 16;

/// The bulk's pacing bucket holds this many packets' worth of states.
const BULK_BURST_PACKETS: f64 = 32.0;

/// What a bulk packet holds besides its states: the IP and pfsync headers, one subheader.
const BULK_PACKET_OVERHEAD: usize = 20 + 20 + 4;

/// Events taken from the workers' queues per loop (the rest wait for the next loop).
const EVENTS_PER_LOOP: usize = 1 << 16;

/// What the control core counts about pfsync beyond the engine's own counters.
#[derive(Debug, Default, Clone, Copy)]
pub struct SyncCounters {
    /// Worker events fed to the engine.
    pub events: u64,
    /// Changes from the peer made in the table, and those the table refused.
    pub applied: u64,
    pub apply_failed: u64,
    /// Datagrams not sent: the unicast peer's MAC is not known yet (it is being resolved).
    pub unresolved_peer: u64,
}

/// pfsync's share of the control core.
pub struct SyncPlane {
    engine: PfsyncEngine,
    shared: Shared,
    queues: Vec<Arc<SyncQueue>>,
    src: Ipv4Addr,
    src_mac: MacAddr,
    ident: u16,
    defer: bool,
    pub counters: SyncCounters,
    /// When the current bulk request started, for the log's duration.
    bulk_started: Option<Duration>,
    /// The bulk's pacing: `[pfsync] bulk_rate` states per second (0: none), and the states
    /// it may send now (a bucket a few dozen packets deep).
    bulk_rate: u32,
    bulk_tokens: f64,
    bulk_last: Option<Duration>,
    /// Packets held for the peer's INS_ACK, oldest first.
    held: VecDeque<Held>,
    pub defer_counters: DeferCounters,
}

/// What a pfsync step asks of the rest of the control core.
#[derive(Debug, Default)]
pub struct SyncOutput {
    /// Frames to transmit on the sync interface.
    pub frames: Vec<Vec<u8>>,
    /// Bulk-request events, for CARP's demotion, each with how long the request had run.
    pub bulk: Vec<(BulkEvent, Duration)>,
    /// Held packets released (acknowledged or timed out): (interface, frame).
    pub released: Vec<(u16, Vec<u8>)>,
}

/// How long a packet is held for the peer's INS_ACK (OpenBSD's 20 ms).
pub const DEFER_TIMEOUT: Duration = Duration::from_millis(20);

/// Packets held at most; beyond, the oldest goes at once (OpenBSD's limit of 128).
pub const DEFER_LIMIT: usize = 128;

/// A packet held for its state's INS_ACK.
#[derive(Debug)]
struct Held {
    id: StateId,
    iface: u16,
    frame: Vec<u8>,
    deadline: Duration,
}

/// `[pfsync] defer`'s counters.
#[derive(Debug, Default, Clone, Copy)]
pub struct DeferCounters {
    pub held: u64,
    pub acked: u64,
    pub timed_out: u64,
    /// Released early because [`DEFER_LIMIT`] packets were held.
    pub overflow: u64,
}

impl SyncPlane {
    /// pfsync as `[pfsync]` configures it; `None` without that table.
    pub fn from_config(config: &Config, shared: &Shared) -> Result<Option<SyncPlane>, String> {
        let Some(pf_config) = PfsyncConfig::from_config(config, shared.states.creator()) else {
            return Ok(None);
        };
        let iface = pf_config.sync_iface;
        let info = shared
            .interfaces
            .get(iface)
            .ok_or_else(|| format!("pfsync: no interface {iface}"))?;
        let src = info
            .addresses()
            .iter()
            .find_map(|net| match net.addr() {
                IpAddr::V4(a) => Some(a),
                IpAddr::V6(_) => None,
            })
            .ok_or_else(|| {
                format!(
                    "pfsync: interface {} needs an IPv4 address to send from",
                    info.name()
                )
            })?;
        let src_mac = info.mac();
        Ok(Some(SyncPlane {
            engine: PfsyncEngine::new(pf_config),
            shared: shared.clone(),
            queues: Vec::new(),
            src,
            src_mac,
            ident: 0,
            defer: config.pfsync.as_ref().is_some_and(|p| p.defer),
            counters: SyncCounters::default(),
            bulk_started: None,
            bulk_rate: config.pfsync.as_ref().map_or(0, |p| p.bulk_rate),
            bulk_tokens: 0.0,
            bulk_last: None,
            held: VecDeque::new(),
            defer_counters: DeferCounters::default(),
        }))
    }

    pub fn engine(&self) -> &PfsyncEngine {
        &self.engine
    }

    /// The sync interface.
    pub fn iface(&self) -> u16 {
        self.engine.config().sync_iface
    }

    /// A new worker's queue for its state events.
    pub fn new_queue(&mut self) -> Arc<SyncQueue> {
        let q = Arc::new(ArrayQueue::new(SYNC_QUEUE_LEN));
        self.queues.push(q.clone());
        q
    }

    /// pfsync coming up: ask the peer for its states (CARP stays demoted until they are in).
    pub fn start(&mut self, now: Duration, res: &mut NeighborResolver, out: &mut SyncOutput) {
        let actions = self.engine.request_bulk(now);
        self.carry_out(actions, now, res, out);
    }

    /// A frame of IP protocol 240 that arrived on `iface`.
    pub fn frame(
        &mut self,
        iface: u16,
        frame: &[u8],
        now: Duration,
        res: &mut NeighborResolver,
        out: &mut SyncOutput,
    ) {
        let actions = self
            .engine
            .handle_frame(iface, frame, now, &*self.shared.states);
        self.carry_out(actions, now, res, out);
        // Replies (acks, stale-side answers, requested states) leave now, carrying the
        // table as the changes left it.
        let actions = self.engine.poll(now, &*self.shared.states);
        self.carry_out(actions, now, res, out);
    }

    /// Whether workers hold the first packet of new states (`[pfsync] defer`).
    pub fn defer(&self) -> bool {
        self.defer
    }

    /// A worker holds the first packet of a new state: keep it until the peer acknowledges
    /// the state, at most [`DEFER_TIMEOUT`].
    #[allow(clippy::too_many_arguments)]
    pub fn deferred(
        &mut self,
        iface: u16,
        frame: Vec<u8>,
        key: StateKey,
        id: StateId,
        now: Duration,
        res: &mut NeighborResolver,
        out: &mut SyncOutput,
    ) {
        if self.held.len() >= DEFER_LIMIT {
            if let Some(oldest) = self.held.pop_front() {
                self.defer_counters.overflow += 1;
                out.released.push((oldest.iface, oldest.frame));
            }
        }
        // The worker reported the insert before it handed the packet over: take that event
        // first, so the state is queued once (as an INS asking for an ack).
        self.drain_events(now);
        self.defer_counters.held += 1;
        self.held.push_back(Held {
            id,
            iface,
            frame,
            deadline: now + DEFER_TIMEOUT,
        });
        self.engine.state_deferred(key, id, now);
        let actions = self.engine.poll(now, &*self.shared.states);
        self.carry_out(actions, now, res, out);
    }

    /// The workers' state events, up to [`EVENTS_PER_LOOP`].
    fn drain_events(&mut self, now: Duration) {
        let mut budget = EVENTS_PER_LOOP;
        for q in &self.queues {
            while budget > 0 {
                let Some(event) = q.pop() else { break };
                self.engine.state_event(&event, now);
                self.counters.events += 1;
                budget -= 1;
            }
        }
    }

    /// Held packets whose time is up go without their ack.
    fn release_expired(&mut self, now: Duration, out: &mut SyncOutput) {
        while self.held.front().is_some_and(|h| h.deadline <= now) {
            if let Some(h) = self.held.pop_front() {
                self.defer_counters.timed_out += 1;
                out.released.push((h.iface, h.frame));
            }
        }
    }

    /// The workers' events, expirations found by the sweep, and the engine's timers.
    pub fn tick(
        &mut self,
        now: Duration,
        expired: &[(u64, u32)],
        res: &mut NeighborResolver,
        out: &mut SyncOutput,
    ) {
        self.drain_events(now);
        for &(id, creator) in expired {
            self.engine.state_deleted(StateId::new(id, creator), now);
        }
        let actions = self.engine.poll(now, &*self.shared.states);
        self.carry_out(actions, now, res, out);
        self.release_expired(now, out);
    }

    /// Whether a bulk is being sent (the control loop should not nap meanwhile).
    pub fn bulk_sending(&self) -> bool {
        self.engine.bulk_sending()
    }

    /// Up to `room` packets of the bulk being sent, within `[pfsync] bulk_rate`: the link
    /// and the peer's rate of installing states pace it, never a timer per packet.
    pub fn bulk(
        &mut self,
        now: Duration,
        room: usize,
        res: &mut NeighborResolver,
        out: &mut SyncOutput,
    ) {
        if !self.engine.bulk_sending() {
            self.bulk_last = None;
            return;
        }
        let mut packets = room;
        if self.bulk_rate > 0 {
            let per_packet = self.states_per_packet() as f64;
            let burst = BULK_BURST_PACKETS * per_packet;
            // A bulk starts with a full bucket; then it fills at `bulk_rate`.
            self.bulk_tokens = match self.bulk_last {
                None => burst,
                Some(t) => (self.bulk_tokens
                    + now.saturating_sub(t).as_secs_f64() * f64::from(self.bulk_rate))
                .min(burst),
            };
            self.bulk_last = Some(now);
            packets = packets.min((self.bulk_tokens / per_packet) as usize);
        }
        if packets == 0 {
            return;
        }
        let before = self.engine.counters().bulk_states_sent;
        let actions = self.engine.bulk_next(now, packets, &*self.shared.states);
        self.bulk_tokens -= (self.engine.counters().bulk_states_sent - before) as f64;
        self.carry_out(actions, now, res, out);
    }

    /// Full states in one bulk packet at the sync interface's MTU.
    fn states_per_packet(&self) -> usize {
        let room = self
            .engine
            .config()
            .mtu
            .saturating_sub(BULK_PACKET_OVERHEAD);
        (room / StateMsg::LEN).max(1)
    }

    /// The sync interface's link went up or down.
    pub fn link_state(
        &mut self,
        up: bool,
        now: Duration,
        res: &mut NeighborResolver,
        out: &mut SyncOutput,
    ) {
        let actions = self.engine.link_state(up, now);
        self.carry_out(actions, now, res, out);
    }

    pub fn next_timeout(&self) -> Option<Duration> {
        let held = self.held.front().map(|h| h.deadline);
        self.engine.next_timeout().into_iter().chain(held).min()
    }

    fn carry_out(
        &mut self,
        actions: Vec<Action>,
        now: Duration,
        res: &mut NeighborResolver,
        out: &mut SyncOutput,
    ) {
        let now_ms = now.as_millis() as u64;
        for action in actions {
            match action {
                Action::Apply(change) => match apply_change(&self.shared.states, &change, now_ms) {
                    Ok(()) => self.counters.applied += 1,
                    Err(e) => {
                        self.counters.apply_failed += 1;
                        self.engine.apply_failed(&change, e);
                    }
                },
                Action::Send(datagram) => {
                    let dst_mac = match datagram.group_mac() {
                        Some(mac) => mac,
                        None => {
                            let peer = IpAddr::V4(datagram.dst);
                            let iface = self.iface();
                            match self.shared.neighbors.load().lookup(iface, peer) {
                                Some(mac) => mac,
                                None => {
                                    // Resolve the peer; this datagram is lost, as an IP
                                    // stack's would be, and the engine's retries cover it.
                                    self.counters.unresolved_peer += 1;
                                    if let Some(f) =
                                        res.resolve(&self.shared.interfaces, iface, peer, now_ms)
                                    {
                                        out.frames.push(f);
                                    }
                                    continue;
                                }
                            }
                        }
                    };
                    self.ident = self.ident.wrapping_add(1);
                    out.frames.push(datagram.ethernet_frame(
                        self.src,
                        self.src_mac,
                        dst_mac,
                        self.ident,
                    ));
                }
                Action::Release(id) => {
                    if let Some(i) = self.held.iter().position(|h| h.id == id) {
                        if let Some(h) = self.held.remove(i) {
                            self.defer_counters.acked += 1;
                            out.released.push((h.iface, h.frame));
                        }
                    }
                }
                Action::Bulk(event) => {
                    let started = match event {
                        BulkEvent::Started => *self.bulk_started.insert(now),
                        _ => self.bulk_started.take().unwrap_or(now),
                    };
                    out.bulk.push((event, now.saturating_sub(started)));
                }
            }
        }
    }

    /// `rampart ctl pfsync --json`.
    pub fn status(&self, now: Duration) -> Value {
        let e = &self.engine;
        let c = e.counters();
        let pc = e.config();
        let bulk = e.bulk_status();
        let states_of = |counts: &crate::pfsync::ActionCounts| {
            counts.get(action::INS) + counts.get(action::UPD)
        };
        let actions = |counts: &crate::pfsync::ActionCounts| -> Value {
            counts
                .nonzero()
                .map(|(name, n)| (name.to_string(), json!(n)))
                .collect::<serde_json::Map<_, _>>()
                .into()
        };
        json!({
            "interface": self.shared.interfaces.get(pc.sync_iface).map(|i| i.name()),
            "peer": pc.peer.map_or_else(|| "224.0.0.240".to_string(), |p| p.to_string()),
            "source": self.src.to_string(),
            "creator": format!("{:08x}", pc.host_id),
            "maxupd": pc.maxupd,
            "bulk_rate": self.bulk_rate,
            "mtu": pc.mtu,
            "defer": self.defer,
            "authenticated": pc.auth_key.is_some(),
            "deferred": {
                "held_now": self.held.len(),
                "held": self.defer_counters.held,
                "acked": self.defer_counters.acked,
                "timed_out": self.defer_counters.timed_out,
                "overflow": self.defer_counters.overflow,
            },
            "bulk": {
                "status": bulk.phase.to_string(),
                "in_progress": matches!(bulk.phase, BulkPhase::WaitingForLink | BulkPhase::Requested | BulkPhase::Receiving),
                "tries": bulk.tries,
                "last_progress_ago_s": bulk.last_progress.map(|t| now.saturating_sub(t).as_secs_f64()),
                "sending": bulk.sending.map(|(sent, total)| json!({ "sent": sent, "total": total })),
                "received": c.bulks_received,
                "sent": c.bulks_sent,
                "states_sent": c.bulk_states_sent,
                "timeouts": c.bulk_timeouts,
            },
            "known_states": e.known_states(),
            "queued": e.queued(),
            "packets_sent": c.packets_sent,
            "bytes_sent": c.bytes_sent,
            "packets_received": c.packets_received,
            "states_sent": states_of(&c.sent),
            "states_received": states_of(&c.received),
            "sent": actions(&c.sent),
            "received": actions(&c.received),
            "events": self.counters.events,
            "applied": self.counters.applied,
            // A pf peer's second states of forwarded connections, folded into the first's
            // record (not an error).
            "merged_states": c.merged_states,
            // Full states from a peer that does not mark rampart's coverage (OpenBSD).
            "pf_states_received": c.pf_states_received,
            "split_states": pc.split_states,
            "errors": {
                "bad_auth": c.bad_auth,
                "malformed": c.malformed,
                "bad_interface": c.bad_interface,
                "bad_ttl": c.bad_ttl,
                "own_loop": c.own_loop,
                "short": c.short,
                "bad_version": c.bad_version,
                "bad_length": c.bad_length,
                "bad_action": c.bad_action,
                "bad_value": c.bad_value,
                "skipped_sections": c.skipped_sections,
                "unsupported": c.unsupported,
                "unknown_state": c.unknown_state,
                "duplicate_inserts": c.duplicate_inserts,
                "host_id_conflicts": c.host_id_conflicts,
                "insert_failures": c.insert_failures,
                "stale": c.stale,
                "vanished": c.vanished,
                "tdb_ignored": c.tdb_ignored,
                "bulk_requests_absorbed": c.bulk_requests_absorbed,
                "apply_failed": self.counters.apply_failed,
                "unresolved_peer": self.counters.unresolved_peer,
            },
        })
    }
}
