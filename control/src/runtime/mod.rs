//! The control core's duties, independent of the port backend: what to do with what the
//! workers hand over, when timers fire, and what an operator asks on the management socket.
//!
//! Sans-IO like the engines it drives: it returns the frames to transmit (per interface) and
//! the caller sends them from the control core's own TX queue. `rampart run` drives it with
//! the monotonic clock.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use rampart_conf::Config;
use rampart_dataplane::io::PacketBuf;
use rampart_dataplane::state::table::SweepCursor;
use rampart_dataplane::wire::ip_protocol;
use rampart_dataplane::wire::parse::parse_frame;
use rampart_dataplane::worker::{Shared, SyncQueue, ToControl};
use serde_json::{json, Value};

use crate::carp::{Action, CarpEngine, DemotionReason};
use crate::neighbor::NeighborResolver;
use crate::pfsync::BulkEvent;

pub mod pfsync;

use pfsync::{SyncOutput, SyncPlane};

/// Ethernet's minimum frame (without FCS): short frames are padded before they leave.
const MIN_FRAME: usize = 60;

/// Frames to transmit: (interface, frame).
pub type Outgoing = Vec<(u16, Vec<u8>)>;

/// What the control core counts about its own work.
#[derive(Debug, Default, Clone, Copy)]
pub struct ControlCounters {
    pub carp_frames: u64,
    pub pfsync_frames: u64,
    pub other_frames: u64,
    pub solicitations: u64,
    pub learned: u64,
}

/// The control core's state.
pub struct ControlPlane {
    shared: Shared,
    resolver: NeighborResolver,
    carp: CarpEngine,
    sweep: SweepCursor,
    last_tick: Duration,
    interval: Duration,
    pub counters: ControlCounters,
    /// Transitions and warnings, newest last (bounded), for `rampart ctl carp` and the log.
    pub events: Vec<String>,
    /// Per CARP group, as configured: (advbase, advskew, preempt).
    carp_settings: Vec<(u8, u8, bool)>,
    /// Whether CARP runs (a replay may leave VIP ownership to the operator instead).
    carp_enabled: bool,
    /// pfsync, when `[pfsync]` is configured.
    sync: Option<SyncPlane>,
    /// States the sweep expired in this tick, for pfsync: (id, creator).
    expired: Vec<(u64, u32)>,
}

const MAX_EVENTS: usize = 64;

impl ControlPlane {
    /// `cookie` draws each CARP group's random replay cookie.
    pub fn new(
        config: &Config,
        shared: Shared,
        cookie: impl FnMut() -> u64,
    ) -> Result<ControlPlane, String> {
        let carp = CarpEngine::from_config(config, &shared.interfaces, cookie)
            .map_err(|e| e.to_string())?;
        let sync = SyncPlane::from_config(config, &shared)?;
        Ok(ControlPlane {
            shared,
            resolver: NeighborResolver::new(),
            carp,
            sweep: SweepCursor::default(),
            last_tick: Duration::ZERO,
            interval: Duration::from_secs(u64::from(config.timeouts.interval.max(1))),
            counters: ControlCounters::default(),
            events: Vec::new(),
            carp_settings: config
                .carp
                .iter()
                .map(|c| (c.advbase, c.advskew, c.preempt))
                .collect(),
            carp_enabled: true,
            sync,
            expired: Vec::new(),
        })
    }

    /// pfsync, if configured.
    pub fn sync(&self) -> Option<&SyncPlane> {
        self.sync.as_ref()
    }

    /// The queue a worker reports its state changes on, when pfsync runs: give one to each
    /// worker (`Worker::set_sync_queue`) before [`start`](Self::start).
    pub fn sync_queue(&mut self) -> Option<Arc<SyncQueue>> {
        self.sync.as_mut().map(SyncPlane::new_queue)
    }

    /// Stops running pfsync (a replay has no peer): nothing is sent, frames are counted.
    pub fn disable_pfsync(&mut self) {
        self.sync = None;
    }

    /// What happens once, as the appliance starts: pfsync asks its peer for a bulk update
    /// (and CARP stays demoted until it is in).
    pub fn start(&mut self, now: Duration, out: &mut Outgoing) {
        if let Some(sync) = self.sync.as_mut() {
            let mut so = SyncOutput::default();
            sync.start(now, &mut self.resolver, &mut so);
            self.event(now, "pfsync: bulk update requested".to_string());
            self.sync_output(so, now, out);
        }
    }

    /// Sends what pfsync produced and drives CARP's bulk demotion.
    fn sync_output(&mut self, so: SyncOutput, now: Duration, out: &mut Outgoing) {
        let Some(iface) = self.sync.as_ref().map(SyncPlane::iface) else {
            return;
        };
        out.extend(so.frames.into_iter().map(|f| (iface, pad(f))));
        out.extend(so.released);
        for (event, took) in so.bulk {
            let took = took.as_secs_f64();
            let text = match event {
                BulkEvent::Started => "pfsync: bulk update started: CARP demoted".to_string(),
                BulkEvent::Done => {
                    format!("pfsync: bulk update done after {took:.3} s: demotion released")
                }
                BulkEvent::TimedOut => {
                    format!("pfsync: bulk update timed out after {took:.3} s: demotion released")
                }
                BulkEvent::Cancelled => "pfsync: bulk update cancelled".to_string(),
                BulkEvent::PeerStarting => format!(
                    "pfsync: the peer is starting too, after {took:.3} s: demotion released (bulk update goes on)"
                ),
            };
            self.event(now, text);
            if self.carp_enabled {
                let actions = self
                    .carp
                    .set_pfsync_bulk_in_progress(event.in_progress(), now);
                self.apply(actions, now, out);
            }
        }
    }

    /// Whether the control loop has work that should not wait for a nap (a bulk to send).
    pub fn busy(&self) -> bool {
        self.sync.as_ref().is_some_and(SyncPlane::bulk_sending)
    }

    /// Up to `room` packets of a bulk update this node is sending (the room the sync
    /// interface's TX path has now: the link paces the bulk).
    pub fn send_bulk(&mut self, now: Duration, room: usize, out: &mut Outgoing) {
        let mut so = SyncOutput::default();
        if let Some(sync) = self.sync.as_mut() {
            sync.bulk(now, room, &mut self.resolver, &mut so);
        }
        self.sync_output(so, now, out);
    }

    /// The sync interface, when pfsync runs.
    pub fn sync_iface(&self) -> Option<u16> {
        self.sync.as_ref().map(SyncPlane::iface)
    }

    pub fn carp(&self) -> &CarpEngine {
        &self.carp
    }

    /// Stops running CARP: VIP ownership stays as set by hand (`VipTable::set_master`), and
    /// advertisements received are only counted.
    pub fn disable_carp(&mut self) {
        self.carp_enabled = false;
    }

    fn event(&mut self, now: Duration, text: String) {
        eprintln!("rampart: [{:>10.3}] {text}", now.as_secs_f64());
        if self.events.len() == MAX_EVENTS {
            self.events.remove(0);
        }
        self.events.push(format!("{:.3} {text}", now.as_secs_f64()));
    }

    /// Handles one message from a worker.
    pub fn handle<B: PacketBuf>(&mut self, msg: ToControl<B>, now: Duration, out: &mut Outgoing) {
        let now_ms = now.as_millis() as u64;
        match msg {
            ToControl::Resolve { iface, ip } => {
                if let Some(f) = self
                    .resolver
                    .resolve(&self.shared.interfaces, iface, ip, now_ms)
                {
                    self.counters.solicitations += 1;
                    out.push((iface, f));
                }
            }
            ToControl::Deferred {
                iface,
                buf,
                key,
                id,
                creator,
            } => match self.sync.as_mut() {
                Some(sync) => {
                    let mut so = SyncOutput::default();
                    let id = crate::pfsync::StateId::new(id, creator);
                    sync.deferred(
                        iface,
                        buf.data().to_vec(),
                        key,
                        id,
                        now,
                        &mut self.resolver,
                        &mut so,
                    );
                    self.sync_output(so, now, out);
                }
                None => out.push((iface, buf.data().to_vec())),
            },
            ToControl::Learn { iface, ip, mac } => {
                self.counters.learned += 1;
                self.resolver
                    .learned(&self.shared.neighbors, iface, ip, mac, now_ms);
            }
            ToControl::Frame { iface, buf } => {
                let frame = buf.data();
                match ip_protocol(frame) {
                    Some(112) => {
                        self.counters.carp_frames += 1;
                        if self.carp_enabled {
                            let actions = self.carp.handle_frame(iface, frame, now);
                            self.apply(actions, now, out);
                        }
                    }
                    Some(240) => {
                        self.counters.pfsync_frames += 1;
                        if let Some(sync) = self.sync.as_mut() {
                            let mut so = SyncOutput::default();
                            sync.frame(iface, frame, now, &mut self.resolver, &mut so);
                            self.sync_output(so, now, out);
                        }
                    }
                    _ => self.counters.other_frames += 1,
                }
            }
        }
    }

    /// The caller transmitted `frame` (one of `out`'s) on `iface`, successfully or not. A
    /// CARP advertisement's fate feeds OpenBSD's send-error demotion (§2.4); other frames
    /// are not looked at beyond their headers.
    pub fn transmitted(
        &mut self,
        iface: u16,
        frame: &[u8],
        ok: bool,
        now: Duration,
        out: &mut Outgoing,
    ) {
        if !self.carp_enabled {
            return;
        }
        let Ok(f) = parse_frame(frame) else { return };
        if f.ip_version().is_none() || f.protocol != ip_protocol::CARP {
            return;
        }
        // Version 2, type 1 (an advertisement), then the vhid.
        let at = f.l4_offset as usize;
        let (Some(&0x21), Some(&vhid)) = (frame.get(at), frame.get(at + 1)) else {
            return;
        };
        let actions = self.carp.advert_sent(iface, vhid, ok, now);
        self.apply(actions, now, out);
    }

    /// Timers: CARP's, neighbour retries, and a slice of the state sweep.
    pub fn tick(&mut self, now: Duration, out: &mut Outgoing) {
        if self.carp_enabled {
            let actions = self.carp.poll(now);
            self.apply(actions, now, out);
        }
        if now >= self.last_tick + Duration::from_millis(100) {
            let now_ms = now.as_millis() as u64;
            for (iface, f) in
                self.resolver
                    .tick(&self.shared.interfaces, &self.shared.neighbors, now_ms)
            {
                self.counters.solicitations += 1;
                out.push((iface, f));
            }
            // Visit every state about once per `interval`, a slice every 100 ms.
            let slices = (self.interval.as_millis() / 100).max(1) as usize;
            let budget = (self.shared.states.len() / slices).max(1024);
            let sync = self.sync.is_some();
            let expired = &mut self.expired;
            self.shared
                .states
                .sweep(now_ms, &mut self.sweep, budget, |s| {
                    if sync {
                        expired.push((s.id, s.creator));
                    }
                });
            self.last_tick = now;
        }
        if let Some(sync) = self.sync.as_mut() {
            let mut so = SyncOutput::default();
            sync.tick(now, &self.expired, &mut self.resolver, &mut so);
            self.expired.clear();
            self.sync_output(so, now, out);
        }
    }

    /// When the control loop should run next at the latest.
    pub fn next_timeout(&self) -> Option<Duration> {
        let carp = self
            .carp_enabled
            .then(|| self.carp.next_timeout())
            .flatten();
        let sync = self.sync.as_ref().and_then(SyncPlane::next_timeout);
        carp.into_iter().chain(sync).min()
    }

    /// An interface's link went up or down: CARP demotes the node while a link carrying
    /// CARP groups is down (OpenBSD's link-state demotion).
    pub fn link_state(&mut self, iface: u16, up: bool, now: Duration, out: &mut Outgoing) {
        let name = self
            .shared
            .interfaces
            .get(iface)
            .map_or("?", |i| i.name())
            .to_string();
        self.event(
            now,
            format!("link {name}: {}", if up { "up" } else { "down" }),
        );
        if self.carp_enabled {
            let actions = self.carp.link_state(iface, up, now);
            self.apply(actions, now, out);
        }
        if self.sync_iface() == Some(iface) {
            // OpenBSD demotes CARP by 1 while the sync interface is down.
            if self.carp_enabled {
                let actions =
                    self.carp
                        .set_demotion(DemotionReason::PfsyncLink, u32::from(!up), now);
                self.apply(actions, now, out);
            }
            if let Some(sync) = self.sync.as_mut() {
                let mut so = SyncOutput::default();
                sync.link_state(up, now, &mut self.resolver, &mut so);
                self.sync_output(so, now, out);
            }
        }
    }

    /// A clean stop: CARP's bow-out adverts, so a backup takes over at once.
    pub fn shutdown(&mut self, now: Duration, out: &mut Outgoing) {
        if self.carp_enabled {
            let actions = self.carp.shutdown(now);
            self.apply(actions, now, out);
        }
    }

    fn apply(&mut self, actions: Vec<Action>, now: Duration, out: &mut Outgoing) {
        for action in actions {
            match action {
                Action::BecomeMaster { group, reason } => {
                    // Before the advert and announcements that follow: workers answer for
                    // the VIPs from their next burst on.
                    self.shared.vips.set_master(group.0, true);
                    let what = self.describe(group.0);
                    self.event(now, format!("carp {what}: -> MASTER ({reason})"));
                }
                Action::BecomeBackup { group, reason } => {
                    self.shared.vips.set_master(group.0, false);
                    let what = self.describe(group.0);
                    self.event(now, format!("carp {what}: -> BACKUP ({reason})"));
                }
                Action::BecomeInit { group, reason } => {
                    self.shared.vips.set_master(group.0, false);
                    let what = self.describe(group.0);
                    self.event(now, format!("carp {what}: -> INIT ({reason})"));
                }
                Action::SendAdvert {
                    iface,
                    mut frame,
                    unicast_peer,
                    ..
                } => {
                    if let Some(peer) = unicast_peer {
                        let ip = IpAddr::V4(peer);
                        match self.shared.neighbors.load().lookup(iface, ip) {
                            Some(mac) => frame[0..6].copy_from_slice(&mac.0),
                            None => {
                                // Resolve the peer; this advert is lost, the next one goes.
                                if let Some(f) = self.resolver.resolve(
                                    &self.shared.interfaces,
                                    iface,
                                    ip,
                                    now.as_millis() as u64,
                                ) {
                                    out.push((iface, f));
                                }
                                continue;
                            }
                        }
                    }
                    out.push((iface, pad(frame)));
                }
                Action::SendGratuitous { iface, frames, .. } => {
                    out.extend(frames.into_iter().map(|f| (iface, pad(f))));
                }
                Action::Warn { group, warning } => {
                    let what = self.describe(group.0);
                    self.event(now, format!("carp {what}: {warning}"));
                }
            }
        }
    }

    fn describe(&self, group: u16) -> String {
        match self.shared.vips.group(group) {
            Some(g) => {
                let name = self
                    .shared
                    .interfaces
                    .get(g.iface())
                    .map_or("?", |i| i.name());
                format!("vhid {} on {name}", g.vhid())
            }
            None => format!("group {group}"),
        }
    }

    /// Answers the management socket's CARP commands: `carp`, `carp demote N`,
    /// `carp promote`. `None` for other commands.
    pub fn command(&mut self, line: &str, now: Duration, out: &mut Outgoing) -> Option<Value> {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["pfsync"] => Some(match &self.sync {
                Some(sync) => sync.status(now),
                None => json!({ "error": "pfsync is not configured (no [pfsync] table)" }),
            }),
            ["carp"] => Some(self.carp_status(now)),
            ["carp", "demote", n] => match n.parse::<u32>() {
                Ok(n) => {
                    let actions = self.carp.set_operator_demotion(n, now);
                    self.apply(actions, now, out);
                    self.event(now, format!("carp: operator demotion set to {n}"));
                    Some(self.carp_status(now))
                }
                Err(_) => Some(json!({ "error": format!("carp demote {n}: expected a number") })),
            },
            ["carp", "promote"] => {
                let actions = self.carp.set_operator_demotion(0, now);
                self.apply(actions, now, out);
                self.event(now, "carp: operator demotion cleared".to_string());
                Some(self.carp_status(now))
            }
            _ => None,
        }
    }

    /// `rampart ctl carp --json`.
    pub fn carp_status(&self, now: Duration) -> Value {
        let groups: Vec<Value> = self
            .carp
            .statuses()
            .map(|(id, s)| {
                let g = self.shared.vips.group(id.0);
                let (advbase, advskew, preempt) = self.carp_settings.get(id.0 as usize).copied().unwrap_or_default();
                json!({
                    "vhid": s.vhid,
                    "carpdev": s.iface_name,
                    "advbase": advbase,
                    "advskew": advskew,
                    "preempt": preempt,
                    "state": s.state.to_string(),
                    "addresses": g.map(|g| g.addresses().iter().map(|a| a.to_string()).collect::<Vec<_>>()),
                    "mac": g.map(|g| g.mac().to_string()),
                    "since_s": s.since.map(|t| now.saturating_sub(t).as_secs_f64()),
                    "reason": s.reason.to_string(),
                    "last_heard": s.last_heard.map(|h| json!({
                        "ago_s": now.saturating_sub(h.at).as_secs_f64(),
                        "from": h.from.to_string(),
                        "advbase": h.advbase,
                        "advskew": h.advskew,
                        "demote": h.demote,
                    })),
                    "counters": {
                        "sent": s.counters.sent,
                        "accepted": s.counters.accepted,
                        "bad_hmac": s.counters.bad_hmac,
                        "bad_version": s.counters.bad_version,
                        "own_loop": s.counters.own_loop,
                        "became_master": s.counters.became_master,
                    },
                })
            })
            .collect();
        let c = self.carp.counters();
        let reasons: Vec<Value> = self
            .carp
            .demotion_reasons()
            .map(|(r, n)| json!({ "reason": format!("{r:?}"), "demotion": n }))
            .collect();
        json!({
            "demotion": self.carp.demotion(),
            "demotion_reasons": reasons,
            "groups": groups,
            "counters": {
                "received": c.received,
                "accepted": c.accepted,
                "sent": c.sent,
                "malformed": c.malformed,
                "bad_interface": c.bad_interface,
                "bad_ttl": c.bad_ttl,
                "short": c.short,
                "bad_checksum": c.bad_checksum,
                "unknown_vhid": c.unknown_vhid,
                "bad_version": c.bad_version,
                "bad_hmac": c.bad_hmac,
                "own_loop": c.own_loop,
            },
            "events": self.events,
        })
    }
}

fn pad(mut frame: Vec<u8>) -> Vec<u8> {
    if frame.len() < MIN_FRAME {
        frame.resize(MIN_FRAME, 0);
    }
    frame
}

/// The IP protocol of an untagged IPv4/IPv6 frame (IPv6: the first next header).
fn ip_protocol(frame: &[u8]) -> Option<u8> {
    match frame.get(12..14)? {
        [0x08, 0x00] => frame.get(14 + 9).copied(),
        [0x86, 0xdd] => frame.get(14 + 6).copied(),
        _ => None,
    }
}
