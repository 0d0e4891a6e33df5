//! The pfsync engine: OpenBSD's queueing, merge rules and bulk protocol, sans-IO
//! (protocols.md §3.5, §3.7, §3.8). See the [module documentation](super) for the design.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::ops::Bound;
use std::sync::Arc;
use std::time::Duration;

use rampart_conf::{proto, Config};
use rampart_dataplane::state::tcp::Peer;
use rampart_dataplane::state::{
    State, StateKey, StateTable, Timeout, TimeoutTable, WalkCursor, COVER_IN, COVER_OUT,
    STATE_IF_BOUND, STATE_OUTBOUND,
};
use rampart_dataplane::wire::parse::{parse_frame, Fragment};
use rampart_dataplane::wire::pfsync as view;
use rampart_dataplane::worker::StateEvent;

use super::convert::{check_update, import_peer, import_timeout, Conversion, ImportError};
use super::wire::{
    self, action, state_flags, sync_flags, Bus, Datagram, FrameBuilder, FrameError, IfName,
    Message, PeerMsg, SectionError, StateId, StateMsg, UpdC, BUS_END, BUS_START, TCPS_PROXY_SRC,
};

/// Queued messages wait at most this long (`timeout_add_sec(&s->s_tmo, 1)`, §3.5).
pub const FLUSH_DELAY: Duration = Duration::from_secs(1);
/// A local update of a state the peer updated less than this long ago is sent at once (§3.5).
pub const PEER_RECENT: Duration = Duration::from_secs(2);
/// The bulk request is re-sent after this long without a BUS START (§3.8).
pub const BULK_REQUEST_RETRY: Duration = Duration::from_secs(2);
/// `PFSYNC_MAX_BULKTRIES`.
pub const BULK_MAX_TRIES: u32 = 12;
/// How long a bulk request waits for the sync link before giving up (§3.8).
pub const BULK_LINK_WAIT: Duration = Duration::from_secs(30);
/// Default of [`PfsyncConfig::bulk_progress_timeout`].
pub const DEFAULT_BULK_PROGRESS_TIMEOUT: Duration = Duration::from_secs(10);
/// Default of [`PfsyncConfig::index_gc_budget`]: with one slice per
/// [`INDEX_GC_INTERVAL`], 10 000 entries a second.
pub const DEFAULT_INDEX_GC_BUDGET: usize = 1024;
/// How often [`PfsyncEngine::poll`] checks a slice of the identity index against the table.
pub const INDEX_GC_INTERVAL: Duration = Duration::from_millis(100);
/// pfsync's default MTU (`ETHERMTU`).
pub const DEFAULT_MTU: usize = 1500;
/// The smallest MTU the engine works with: a bulk's first packet, BUS START and one full
/// state, must fit (OpenBSD panics on less).
pub const MIN_MTU: usize = wire::MIN_PACKET
    + 2 * view::SUBHEADER_LEN
    + Bus::LEN
    + StateMsg::LEN
    + view::SUBHEADER_LEN
    + Bus::LEN;

/// The state table as the engine reads it: at send time (pfsync sends what the table holds
/// then, as pf exports the state when it writes the packet), to merge updates, and for the
/// bulk's walk. Implemented for [`StateTable`].
pub trait StateStore {
    /// The state with `key`, whatever its identity.
    fn find(&self, key: &StateKey) -> Option<State>;

    /// The state with `key` if its identity is `id`.
    fn get(&self, key: &StateKey, id: StateId) -> Option<State> {
        self.find(key)
            .filter(|s| s.id == id.id && s.creator == id.creator)
    }

    /// Calls `f` with up to `max` states from `cursor` on (a slice of the bulk's walk);
    /// `true` once the whole table has been walked. See `StateTable::walk`.
    fn walk(&self, cursor: &mut WalkCursor, max: usize, f: &mut dyn FnMut(&State)) -> bool;

    /// States in the table now (exported `expire` is adaptively scaled, as pf's).
    fn state_count(&self) -> u64;

    /// The table's timeouts.
    fn timeouts(&self) -> &TimeoutTable;
}

impl StateStore for StateTable {
    fn find(&self, key: &StateKey) -> Option<State> {
        let hash = self.hash(key);
        let mut shard = self.lock(hash);
        // Looked up "at time 0": reading never expires a state (the workers and the sweep
        // do), so a queued message never removes what it reads.
        let idx = shard.find(key, hash, 0)?;
        Some(shard.get(idx).clone())
    }

    fn walk(&self, cursor: &mut WalkCursor, max: usize, f: &mut dyn FnMut(&State)) -> bool {
        StateTable::walk(self, cursor, max, f)
    }

    fn state_count(&self) -> u64 {
        self.len() as u64
    }

    fn timeouts(&self) -> &TimeoutTable {
        StateTable::timeouts(self)
    }
}

/// The engine's settings: OpenBSD's `ifconfig pfsync0 syncdev … syncpeer … maxupd … mtu …`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PfsyncConfig {
    /// This node's creator id (pf's host id), stamped on the states it creates.
    pub host_id: u32,
    /// The sync interface (index into `config.interfaces`).
    pub sync_iface: u16,
    /// The pfsync MTU: IP packets are at most this long (at least [`MIN_MTU`]).
    pub mtu: usize,
    /// TCP updates to one state before its queue is flushed at once (0 - 255, default 128).
    pub maxupd: u8,
    /// The unicast `syncpeer`; `None` sends to 224.0.0.240.
    pub peer: Option<Ipv4Addr>,
    /// Interface names by index: imported states on a known name get its index.
    pub interfaces: Arc<[String]>,
    /// The interface recorded on imported floating states (the sync interface).
    pub default_iface: u8,
    /// This node's own addresses: frames from them are our own, looped back, and ignored.
    pub own_addresses: Vec<Ipv4Addr>,
    /// A bulk update being received times out after this long **without a bulk packet**
    /// (§5.5); OpenBSD's timeout runs from the start and is about 27 min at defaults.
    pub bulk_progress_timeout: Duration,
    /// Identity-index entries checked against the table every [`INDEX_GC_INTERVAL`].
    pub index_gc_budget: usize,
    /// `[pfsync] key`: every packet carries an HMAC-SHA1 trailer ([`AUTH_TRAILER_LEN`]
    /// bytes after the pfsync message, outside its `len`) and packets without a valid one
    /// are dropped. `None`: plain pfsync v6.
    pub auth_key: Option<Arc<[u8]>>,
    /// `[pfsync] split_states`: a record that covers both filter points of a forwarded
    /// connection goes out as pf's two states, the second under [`twin_id`] (see "One
    /// record, pf's two states" in the [module documentation](super)).
    pub split_states: bool,
}

/// The bit that makes a state id the id of its record's twin: the second pf state of a
/// forwarded connection, sent with `[pfsync] split_states`. rampart's own ids keep it clear
/// (`rampart run` seeds them with the boot time's low 31 bits, shifted by 32).
pub const TWIN_ID_BIT: u64 = 1 << 63;

/// The id under which `record`'s second pf state goes out when the peer has not named one.
pub fn twin_id(record: StateId) -> StateId {
    StateId::new(record.id ^ TWIN_ID_BIT, record.creator)
}

/// The authenticated mode's trailer: HMAC-SHA1 of the pfsync message (header and sections,
/// the header's `len` bytes) with `[pfsync] key`.
pub const AUTH_TRAILER_LEN: usize = 20;

type HmacSha1 = hmac::Hmac<sha1::Sha1>;

fn auth_mac(key: &[u8]) -> HmacSha1 {
    <HmacSha1 as hmac::Mac>::new_from_slice(key).expect("HMAC takes keys of any length")
}

/// The trailer for `message` under `key`.
fn auth_tag(key: &[u8], message: &[u8]) -> [u8; AUTH_TRAILER_LEN] {
    use hmac::Mac;
    let mut mac = auth_mac(key);
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// The pfsync message of an authenticated packet, if its trailer is right (compared in
/// constant time). The message is the header's `len` bytes; the trailer follows it.
fn authenticated<'a>(key: &[u8], payload: &'a [u8]) -> Option<&'a [u8]> {
    use hmac::Mac;
    let len = usize::from(u16::from_be_bytes([*payload.get(2)?, *payload.get(3)?]));
    let message = payload.get(..len)?;
    let tag = payload.get(len..len + AUTH_TRAILER_LEN)?;
    let mut mac = auth_mac(key);
    mac.update(message);
    mac.verify_slice(tag).ok()?;
    Some(message)
}

impl PfsyncConfig {
    /// The settings of `config.pfsync` (`None` without a `[pfsync]` table), for a node whose
    /// creator id is `host_id` (`StateTable::creator`).
    pub fn from_config(config: &Config, host_id: u32) -> Option<PfsyncConfig> {
        let pfsync = config.pfsync.as_ref()?;
        let index = config.interface_index(&pfsync.interface)?;
        let iface = config.interfaces.get(index)?;
        let peer = match pfsync.peer {
            Some(IpAddr::V4(a)) => Some(a),
            _ => None,
        };
        // Interface addresses only: the VIPs are the peer's too.
        let own_addresses = config
            .interfaces
            .iter()
            .flat_map(|i| i.addresses.iter())
            .filter_map(|net| match net.addr() {
                IpAddr::V4(v4) => Some(v4),
                IpAddr::V6(_) => None,
            })
            .collect();
        Some(PfsyncConfig {
            host_id,
            sync_iface: index as u16,
            mtu: usize::from(iface.mtu),
            maxupd: pfsync.maxupd,
            peer,
            interfaces: config.interfaces.iter().map(|i| i.name.clone()).collect(),
            default_iface: u8::try_from(index).unwrap_or(0),
            own_addresses,
            bulk_progress_timeout: DEFAULT_BULK_PROGRESS_TIMEOUT,
            index_gc_budget: DEFAULT_INDEX_GC_BUDGET,
            auth_key: pfsync.key.as_deref().map(Arc::from),
            split_states: pfsync.split_states,
        })
    }

    /// Settings with OpenBSD's defaults for `host_id`, sync interface 0, multicast.
    pub fn new(host_id: u32) -> PfsyncConfig {
        PfsyncConfig {
            host_id,
            sync_iface: 0,
            mtu: DEFAULT_MTU,
            maxupd: 128,
            peer: None,
            interfaces: Arc::from(Vec::new()),
            default_iface: 0,
            own_addresses: Vec::new(),
            bulk_progress_timeout: DEFAULT_BULK_PROGRESS_TIMEOUT,
            index_gc_budget: DEFAULT_INDEX_GC_BUDGET,
            auth_key: None,
            split_states: false,
        }
    }
}

/// A change to the state table the caller makes (with [`apply_change`] for a [`StateTable`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StateChange {
    /// A state the peer announced (INS, or UPD of an unknown state). It keeps the peer's
    /// identity (`id`, `creator`).
    Insert(Box<State>),
    /// Merge the peer's view into the state (under the table's lock: [`Merge::apply`]).
    Update(Merge),
    /// The peer deleted the state (DEL, DEL_C, CLR). Do not report it back as a deletion.
    Delete { key: StateKey, id: StateId },
    /// The state `id` also covers these filter points (`COVER_IN` / `COVER_OUT`): the peer's
    /// state for another point of the same connection.
    Cover {
        key: StateKey,
        id: StateId,
        covers: u8,
    },
}

/// The peer's view of a known state, to merge per peer without ever rolling a peer's TCP
/// state or `seqlo` back (§3.7, §5.9).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Merge {
    pub key: StateKey,
    pub id: StateId,
    /// The peer's `src` (initiator) and `dst` (responder).
    pub peers: [Peer; 2],
    pub timeout: Timeout,
}

impl Merge {
    /// Merges into `state` as `pfsync_in_updates` does: each side is taken unless ours is
    /// further along; if fewer than both sides were stale, the state is refreshed (`last_ms =
    /// now_ms`) and takes the peer's timeout class. Returns how many sides were stale.
    pub fn apply(&self, state: &mut State, now_ms: u64) -> u8 {
        let tcp = state.key.proto() == proto::TCP;
        let mut stale = 0;
        for (side, theirs) in self.peers.iter().enumerate() {
            let ours = &mut state.peers[side];
            let keep_ours = if tcp {
                tcp_side_is_newer(ours, theirs, side == 0)
            } else {
                ours.state > theirs.state
            };
            if keep_ours {
                stale += 1;
            } else {
                *ours = *theirs;
            }
        }
        if stale < 2 {
            state.last_ms = now_ms;
            state.timeout = self.timeout;
        }
        stale
    }
}

/// `pfsync_upd_tcp`: whether our side is newer than theirs (so theirs is stale). The `src`
/// side may go back only into or out of synproxy; states equal, our `seqlo` must not be ahead.
fn tcp_side_is_newer(ours: &Peer, theirs: &Peer, src: bool) -> bool {
    let seq_ahead = (ours.seqlo.wrapping_sub(theirs.seqlo) as i32) > 0;
    let state_ahead = if src {
        ours.state > theirs.state && (ours.state < TCPS_PROXY_SRC || theirs.state >= TCPS_PROXY_SRC)
    } else {
        ours.state > theirs.state
    };
    state_ahead || (ours.state == theirs.state && seq_ahead)
}

/// Why [`apply_change`] could not make a change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApplyError {
    /// The table is full.
    Full,
    /// Another state (another identity) holds the key: both nodes created it (asymmetric
    /// routing), or a port was reused.
    KeyExists,
    /// No state with that key and identity.
    NotFound,
}

impl fmt::Display for ApplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ApplyError::Full => "state table full",
            ApplyError::KeyExists => "another state holds the key",
            ApplyError::NotFound => "no such state",
        })
    }
}

impl std::error::Error for ApplyError {}

/// Makes `change` in `table`, each under the shard lock, so a merge cannot race a worker's
/// update of the same state.
pub fn apply_change(
    table: &StateTable,
    change: &StateChange,
    now_ms: u64,
) -> Result<(), ApplyError> {
    let key = match change {
        StateChange::Insert(state) => &state.key,
        StateChange::Update(merge) => &merge.key,
        StateChange::Delete { key, .. } => key,
        StateChange::Cover { key, .. } => key,
    };
    let hash = table.hash(key);
    let mut shard = table.lock(hash);
    let found = shard.find(key, hash, now_ms);
    let same = |s: &State, id: StateId| s.id == id.id && s.creator == id.creator;
    match change {
        StateChange::Insert(state) => match found {
            Some(idx) if same(shard.get(idx), StateId::new(state.id, state.creator)) => Ok(()),
            Some(_) => Err(ApplyError::KeyExists),
            None => shard
                .insert(hash, (**state).clone())
                .map(|_| ())
                .map_err(|_| ApplyError::Full),
        },
        StateChange::Update(merge) => match found {
            Some(idx) if same(shard.get(idx), merge.id) => {
                merge.apply(shard.get_mut(idx), now_ms);
                Ok(())
            }
            _ => Err(ApplyError::NotFound),
        },
        StateChange::Delete { id, .. } => match found {
            Some(idx) if same(shard.get(idx), *id) => {
                shard.remove(idx, hash);
                Ok(())
            }
            _ => Err(ApplyError::NotFound),
        },
        StateChange::Cover { id, covers, .. } => match found {
            Some(idx) if same(shard.get(idx), *id) => {
                shard.get_mut(idx).covers |= covers;
                Ok(())
            }
            _ => Err(ApplyError::NotFound),
        },
    }
}

/// The bulk-update requester's events, to drive CARP's demotion
/// (`CarpEngine::set_pfsync_bulk_in_progress`): +32 from `Started` until `Done` or
/// `TimedOut`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BulkEvent {
    /// A bulk update was requested: demote.
    Started,
    /// BUS END arrived: every state is here; undemote.
    Done,
    /// No answer after every retry, no progress, or no link: undemote anyway (§5.5).
    TimedOut,
    /// The request was cancelled ([`PfsyncEngine::cancel_bulk_request`]): undemote.
    Cancelled,
    /// The peer asked us for a bulk while our own request, sent at least 100 ms earlier, was
    /// unanswered: the peer is the one starting, and stays demoted itself until it has our
    /// table, so ours goes now (the request runs on, and its answer is still taken).
    /// Holding it would let the peer, done first, take the VIPs from us for the moment our
    /// own answer takes.
    PeerStarting,
}

impl BulkEvent {
    /// Whether CARP should stay demoted after this event.
    pub fn in_progress(self) -> bool {
        self == BulkEvent::Started
    }
}

/// What the caller must do, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Transmit this frame from the sync interface (see [`Datagram`]).
    Send(Datagram),
    /// Apply this change to the state table, then call [`PfsyncEngine::poll`]: replies that
    /// depend on it (stale updates answered with the merged state) go out then.
    Apply(StateChange),
    /// The requester's bulk update moved on.
    Bulk(BulkEvent),
    /// The peer acknowledged the insert of a state whose first packet is held
    /// ([`state_deferred`](PfsyncEngine::state_deferred)): transmit that packet now. Sent on
    /// an INS_ACK and on any UPD / UPD_C for the state (nothing may be held for it).
    Release(StateId),
}

/// The requester's side of the bulk protocol (`pfsync_bulk_req_evt`, §3.8).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum BulkPhase {
    /// No bulk requested.
    #[default]
    Idle,
    /// Requested while the sync link is down: waiting for it (30 s).
    WaitingForLink,
    /// UPD_REQ(0, 0) sent, waiting for BUS START (re-sent every 2 s).
    Requested,
    /// BUS START received, states arriving.
    Receiving,
    /// Finished (BUS END, or given up).
    Done,
}

impl fmt::Display for BulkPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BulkPhase::Idle => "idle",
            BulkPhase::WaitingForLink => "waiting for link",
            BulkPhase::Requested => "requested",
            BulkPhase::Receiving => "receiving",
            BulkPhase::Done => "done",
        })
    }
}

/// Where the bulk updates stand, for `rampart ctl pfsync`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BulkStatus {
    pub phase: BulkPhase,
    /// Requests sent in the current attempt.
    pub tries: u32,
    /// The last bulk packet received (the progress the timeout runs from).
    pub last_progress: Option<Duration>,
    /// A bulk we are sending: states sent so far, and in the table when it started.
    pub sending: Option<(usize, usize)>,
}

/// Messages by `PFSYNC_ACT_*` (index = action number).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ActionCounts(pub [u64; action::MAX as usize]);

impl ActionCounts {
    pub fn get(&self, action: u8) -> u64 {
        self.0.get(action as usize).copied().unwrap_or(0)
    }

    fn add(&mut self, action: u8) {
        if let Some(c) = self.0.get_mut(action as usize) {
            *c += 1;
        }
    }

    /// (name, count) for every action counted at least once.
    pub fn nonzero(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        (0..action::MAX)
            .filter(|&a| self.get(a) > 0)
            .map(|a| (action::name(a), self.get(a)))
    }
}

/// Counters (`netstat -s -p pfsync`, per action both ways so asymmetry shows: §5.6).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PfsyncCounters {
    /// Frames handed to the engine (`ipackets`).
    pub packets_received: u64,
    /// With `[pfsync] key`: packets without a valid HMAC trailer, dropped.
    pub bad_auth: u64,
    /// Frames the engine produced (`opackets`), and their bytes.
    pub packets_sent: u64,
    pub bytes_sent: u64,
    /// Messages received / sent, by action.
    pub received: ActionCounts,
    pub sent: ActionCounts,
    /// Not an unfragmented IPv4 packet of protocol 240 ([`PfsyncEngine::handle_frame`]).
    pub malformed: u64,
    /// Not on the sync interface, or to a destination pfsync does not use (`badif`).
    pub bad_interface: u64,
    /// TTL other than 255 (`badttl`).
    pub bad_ttl: u64,
    /// From one of our own addresses: our frame looped back.
    pub own_loop: u64,
    /// Shorter than the pfsync header (`hdrops`).
    pub short: u64,
    /// Version other than 6 (`badver`).
    pub bad_version: u64,
    /// Length field or a section larger than the frame (`badlen`).
    pub bad_length: u64,
    /// A section that could not be skipped ended the frame (`badact`).
    pub bad_action: u64,
    /// Sections skipped: unknown or deprecated actions, short strides.
    pub skipped_sections: u64,
    /// Messages with invalid values (`badval`).
    pub bad_value: u64,
    /// Valid messages rampart cannot represent (NAT, rdomain, synproxy, modulate, …).
    pub unsupported: u64,
    /// Deletes, update requests and acks for unknown states (`badstate`).
    pub unknown_state: u64,
    /// Inserts of a state we already have (pf: EEXIST).
    pub duplicate_inserts: u64,
    /// INS messages from the peer carrying **our** creator id: both nodes use the same host
    /// id, and their states will collide (pfsync cannot tell them apart; §3.9).
    pub host_id_conflicts: u64,
    /// Inserts whose key another state holds, and inserts the table refused.
    pub insert_failures: u64,
    /// The peer's second state for a connection rampart holds as one record (pf keeps one
    /// per filter point): its filter point was added to the record (see `Known::record`).
    pub merged_states: u64,
    /// Full states (INS, UPD) from the peer without rampart's coverage bits: the peer is pf
    /// (OpenBSD), which keeps two states per forwarded connection and needs them from us
    /// too (`[pfsync] split_states`).
    pub pf_states_received: u64,
    /// Updates with a stale side, answered with our state (`stale`).
    pub stale: u64,
    /// States gone from the table when their queued message was written.
    pub vanished: u64,
    /// TDB messages (IPsec) ignored.
    pub tdb_ignored: u64,
    /// INS messages sent asking for an INS_ACK (a packet held for them, `[pfsync] defer`).
    pub deferred: u64,
    /// Bulk requests received while sending a bulk (absorbed, as OpenBSD does).
    pub bulk_requests_absorbed: u64,
    /// Bulks sent to completion, and states they carried.
    pub bulks_sent: u64,
    pub bulk_states_sent: u64,
    /// Bulks received to BUS END, and bulk requests that timed out.
    pub bulks_received: u64,
    pub bulk_timeouts: u64,
}

/// The queues a state can wait in, in the order sections are written (§3.3:
/// `pfsync_qs[]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Queue {
    InsAck = 0,
    UpdC = 1,
    DelC = 2,
    Ins = 3,
    Upd = 4,
}

impl Queue {
    const ALL: [Queue; 5] = [
        Queue::InsAck,
        Queue::UpdC,
        Queue::DelC,
        Queue::Ins,
        Queue::Upd,
    ];

    fn message_len(self) -> usize {
        match self {
            Queue::InsAck | Queue::DelC => StateId::LEN,
            Queue::UpdC => UpdC::LEN,
            Queue::Ins | Queue::Upd => StateMsg::LEN,
        }
    }
}

/// A state in the table, by identity: what messages that carry only `(id, creator)` need.
#[derive(Clone, Copy, Debug)]
struct Known {
    key: StateKey,
    /// When the peer last updated it (pf's `pfsync_time`).
    peer_touched: Option<Duration>,
    /// `Some(record)` for a peer's state that rampart keeps inside another record: pf keeps
    /// a forwarded connection as two states (in on the ingress interface, out on the
    /// egress), rampart as one record covering both points. The second state to arrive
    /// adds its filter point to the first's record, and its updates merge into it.
    record: Option<StateId>,
    /// On a record: the id of its other pf state, when the peer knows one (the peer's own
    /// second state, merged into the record, or the twin this node sent). Updates and the
    /// deletion of the record go to it too.
    twin: Option<StateId>,
}

/// A queued message for one state.
#[derive(Clone, Copy, Debug)]
struct Pending {
    queue: Queue,
    /// Position in its queue.
    seq: u64,
    key: StateKey,
    /// TCP updates coalesced into it (`sync_updates`).
    updates: u32,
    /// An INS for a state whose first packet is held: ask the peer for an INS_ACK.
    ack: bool,
}

/// A bulk we are sending: a walk over the table, a slice per shard lock, sent by
/// [`PfsyncEngine::bulk_next`].
#[derive(Clone, Debug)]
struct BulkSend {
    /// Where the walk over the table resumes, and the states it read but did not send yet.
    cursor: WalkCursor,
    slice: VecDeque<State>,
    /// The twin of the state sent last, when it did not fit in the same packet.
    carry: Option<Box<StateMsg>>,
    walked: bool,
    started: bool,
    /// States sent, and in the table when the bulk started.
    sent: usize,
    total: usize,
}

/// States the bulk reads from the table per shard lock.
pub const BULK_SLICE: usize = 64;

#[derive(Clone, Copy, Debug, Default)]
struct BulkRequest {
    phase: BulkPhase,
    deadline: Option<Duration>,
    tries: u32,
    demoted: bool,
    last_progress: Option<Duration>,
}

/// pfsync for one node. See the [module documentation](super).
#[derive(Debug)]
pub struct PfsyncEngine {
    config: PfsyncConfig,
    dst: Ipv4Addr,
    link_up: bool,
    /// Every state we know by identity (pf's id tree).
    index: BTreeMap<StateId, Known>,
    /// The states the frame being received inserted, not yet in the table (the caller
    /// applies a frame's changes after it): a pf peer's two states of one connection are
    /// created together and usually arrive in the same frame.
    frame_inserts: Vec<(StateKey, StateId, bool)>,
    /// Where the index check resumes, and when it last ran.
    gc_cursor: Option<StateId>,
    gc_last: Option<Duration>,
    pending: HashMap<StateId, Pending>,
    queues: [BTreeMap<u64, StateId>; 5],
    next_seq: u64,
    /// UPD_REQs to send (for UPD_Cs of states we do not have).
    requests: Vec<StateId>,
    requested: HashSet<StateId>,
    flush_at: Option<Duration>,
    bulk_send: Option<BulkSend>,
    bulk_request: BulkRequest,
    counters: PfsyncCounters,
}

impl PfsyncEngine {
    pub fn new(mut config: PfsyncConfig) -> PfsyncEngine {
        config.mtu = config.mtu.clamp(MIN_MTU, u16::MAX as usize);
        if config.auth_key.is_some() {
            // The trailer rides after the message, inside the same IP packet.
            config.mtu = config.mtu.max(MIN_MTU + AUTH_TRAILER_LEN) - AUTH_TRAILER_LEN;
        }
        let dst = config.peer.unwrap_or(view::GROUP_V4);
        PfsyncEngine {
            config,
            dst,
            link_up: true,
            index: BTreeMap::new(),
            frame_inserts: Vec::new(),
            gc_cursor: None,
            gc_last: None,
            pending: HashMap::new(),
            queues: Default::default(),
            next_seq: 0,
            requests: Vec::new(),
            requested: HashSet::new(),
            flush_at: None,
            bulk_send: None,
            bulk_request: BulkRequest::default(),
            counters: PfsyncCounters::default(),
        }
    }

    pub fn config(&self) -> &PfsyncConfig {
        &self.config
    }

    pub fn counters(&self) -> &PfsyncCounters {
        &self.counters
    }

    /// States known by identity.
    pub fn known_states(&self) -> usize {
        self.index.len()
    }

    /// Messages waiting to be sent.
    pub fn queued(&self) -> usize {
        self.pending.len() + self.requests.len()
    }

    pub fn bulk_status(&self) -> BulkStatus {
        BulkStatus {
            phase: self.bulk_request.phase,
            tries: self.bulk_request.tries,
            last_progress: self.bulk_request.last_progress,
            sending: self.bulk_send.as_ref().map(|b| (b.sent, b.total)),
        }
    }

    // ----- local events -------------------------------------------------------------------

    /// A worker created `state` (pf's `pfsync_insert_state`): queue an INS.
    pub fn state_inserted(&mut self, state: &State, now: Duration) {
        self.inserted(state.key, StateId::new(state.id, state.creator), now);
    }

    /// A worker created a state and holds its first packet (`[pfsync] defer`, pf's
    /// `pfsync_defer`): the INS asks the peer for an INS_ACK and goes at once; the ack comes
    /// back as [`Action::Release`]. The caller releases the packet after 20 ms without one.
    pub fn state_deferred(&mut self, key: StateKey, id: StateId, now: Duration) {
        self.inserted(key, id, now);
        if let Some(p) = self.pending.get_mut(&id) {
            if p.queue == Queue::Ins {
                p.ack = true;
                self.counters.deferred += 1;
            }
        }
        self.flush_now(now);
    }

    /// A worker's report of a change it made to the table (see `StateEvent`).
    pub fn state_event(&mut self, event: &StateEvent, now: Duration) {
        match *event {
            StateEvent::Inserted { key, id, creator } => {
                self.inserted(key, StateId::new(id, creator), now)
            }
            StateEvent::Updated {
                key,
                id,
                creator,
                updates,
            } => self.updated(key, StateId::new(id, creator), updates, now),
            StateEvent::Deleted { id, creator } => {
                self.state_deleted(StateId::new(id, creator), now)
            }
        }
    }

    fn inserted(&mut self, key: StateKey, id: StateId, now: Duration) {
        self.know(id, key);
        match self.pending.get(&id).map(|p| p.queue) {
            None | Some(Queue::UpdC) => {
                self.dequeue(id);
                self.enqueue(id, Queue::Ins, key, now);
            }
            Some(_) => {}
        }
    }

    /// A worker updated `state` (pf's `pfsync_update_state`): queue an UPD_C, or coalesce with
    /// the message already queued. TCP states flush at `maxupd` coalesced updates, and any
    /// state the peer updated in the last 2 s flushes at once.
    pub fn state_updated(&mut self, state: &State, now: Duration) {
        self.state_updated_n(state, 1, now);
    }

    /// `updates` updates of `state` reported at once (a worker that coalesces its events
    /// counts the packets in between): as many calls to
    /// [`state_updated`](Self::state_updated).
    pub fn state_updated_n(&mut self, state: &State, updates: u32, now: Duration) {
        self.updated(
            state.key,
            StateId::new(state.id, state.creator),
            updates,
            now,
        );
    }

    fn updated(&mut self, key: StateKey, id: StateId, updates: u32, now: Duration) {
        if updates == 0 {
            return;
        }
        if self
            .pending
            .get(&id)
            .is_some_and(|p| p.queue == Queue::DelC)
        {
            // A late event for a state already deleted.
            return;
        }
        let tcp = key.proto() == proto::TCP;
        let peer_touched = self.know(id, key).peer_touched;
        // The update that queues the UPD_C is not counted (`sync_updates = 0`), later ones are.
        let mut counted = updates;
        match self.pending.get(&id).map(|p| p.queue) {
            Some(Queue::UpdC | Queue::Upd) => {}
            Some(Queue::Ins | Queue::DelC) => counted = 0,
            _ => {
                // Nothing queued, or only an INS_ACK, which the UPD_C replaces.
                self.dequeue(id);
                self.enqueue(id, Queue::UpdC, key, now);
                counted -= 1;
            }
        }
        let mut sync = false;
        if let Some(p) = self.pending.get_mut(&id) {
            if tcp && counted > 0 {
                p.updates = p.updates.saturating_add(counted);
                sync = p.updates >= u32::from(self.config.maxupd);
            }
        }
        if sync || peer_touched.is_some_and(|t| now < t + PEER_RECENT) {
            self.flush_now(now);
        }
    }

    /// A state left the table (removed by a worker, expired by the sweep; pf's
    /// `pfsync_delete_state`): queue a DEL_C, or cancel a queued INS and send nothing. Not for
    /// the deletions the engine asked for ([`StateChange::Delete`]).
    pub fn state_deleted(&mut self, id: StateId, now: Duration) {
        let twin = self.index.remove(&id).and_then(|known| known.twin);
        if let Some(twin) = twin {
            // The peer knows the connection's other pf state too: it goes with the record.
            if self.index.remove(&twin).is_some() {
                self.dequeue(twin);
                self.enqueue(twin, Queue::DelC, StateKey::default(), now);
            }
        }
        match self.pending.get(&id).map(|p| p.queue) {
            Some(Queue::Ins) => {
                self.dequeue(id);
            }
            Some(Queue::DelC) => {}
            _ => {
                self.dequeue(id);
                self.enqueue(id, Queue::DelC, StateKey::default(), now);
            }
        }
    }

    /// The operator flushed this node's states (`pfctl -F states`): one CLR for our creator
    /// id, sent at once (`pfsync_clear_states`).
    pub fn states_cleared(&mut self) -> Vec<Action> {
        let own = self.config.host_id;
        self.index.retain(|id, _| id.creator != own);
        let clr = Message::Clr(wire::Clr {
            ifname: IfName::EMPTY,
            creatorid: own,
        });
        let mut out = Vec::new();
        self.send_one(clr, &mut out);
        out
    }

    /// The caller could not make a change the engine asked for: count it, and forget a state
    /// that is not in the table after all.
    pub fn apply_failed(&mut self, change: &StateChange, error: ApplyError) {
        let (id, key) = match change {
            StateChange::Insert(state) => (StateId::new(state.id, state.creator), state.key),
            StateChange::Update(merge) => (merge.id, merge.key),
            StateChange::Delete { key, id } => (*id, *key),
            StateChange::Cover { key, id, .. } => (*id, *key),
        };
        match error {
            ApplyError::Full | ApplyError::KeyExists => self.counters.insert_failures += 1,
            ApplyError::NotFound => self.counters.unknown_state += 1,
        }
        if self.index.get(&id).is_some_and(|k| k.key == key) {
            self.index.remove(&id);
        }
    }

    // ----- receiving ----------------------------------------------------------------------

    /// A whole Ethernet frame received on `iface` (what a worker hands over as
    /// `ToControl::Frame`): the outer checks (sync interface, IPv4 protocol 240, TTL 255, a
    /// pfsync destination), then [`handle_payload`](Self::handle_payload).
    pub fn handle_frame(
        &mut self,
        iface: u16,
        frame: &[u8],
        now: Duration,
        store: &impl StateStore,
    ) -> Vec<Action> {
        let parsed = match parse_frame(frame) {
            Ok(p)
                if p.protocol == view::PROTOCOL
                    && p.fragment == Fragment::Whole
                    && p.src.is_ipv4() =>
            {
                p
            }
            _ => {
                self.counters.packets_received += 1;
                self.counters.malformed += 1;
                return Vec::new();
            }
        };
        if iface != self.config.sync_iface || view::classify_destination(parsed.dst).is_none() {
            self.counters.packets_received += 1;
            self.counters.bad_interface += 1;
            return Vec::new();
        }
        if parsed.ttl != view::TTL {
            self.counters.packets_received += 1;
            self.counters.bad_ttl += 1;
            return Vec::new();
        }
        let IpAddr::V4(src) = parsed.src else {
            return Vec::new();
        };
        self.handle_payload(src, parsed.l4_bytes(frame), now, store)
    }

    /// A pfsync frame (the IP payload) from `src`, already past the outer checks. Returns the
    /// changes to make and the bulk events; replies are queued and leave with the next
    /// [`poll`](Self::poll), which the caller makes after applying the changes.
    pub fn handle_payload(
        &mut self,
        src: Ipv4Addr,
        payload: &[u8],
        now: Duration,
        store: &impl StateStore,
    ) -> Vec<Action> {
        self.counters.packets_received += 1;
        let mut out = Vec::new();
        if self.config.own_addresses.contains(&src) {
            self.counters.own_loop += 1;
            return out;
        }
        let payload = match &self.config.auth_key {
            None => payload,
            Some(key) => match authenticated(key, payload) {
                Some(message) => message,
                None => {
                    self.counters.bad_auth += 1;
                    return out;
                }
            },
        };
        let frame = match wire::parse(payload) {
            Ok(frame) => frame,
            Err(FrameError::Short) => {
                self.counters.short += 1;
                return out;
            }
            Err(FrameError::BadVersion(_)) => {
                self.counters.bad_version += 1;
                return out;
            }
            Err(FrameError::BadLength) => {
                self.counters.bad_length += 1;
                return out;
            }
        };
        let interfaces = Arc::clone(&self.config.interfaces);
        let cx = conversion(&interfaces, self.config.default_iface, now, store);
        let mut bulk_progress = false;
        self.frame_inserts.clear();
        for section in frame.sections() {
            let section = match section {
                Ok(section) => section,
                Err(SectionError::BadAction { .. }) => {
                    self.counters.bad_action += 1;
                    break;
                }
                Err(SectionError::BadLength { .. }) => {
                    self.counters.bad_length += 1;
                    break;
                }
            };
            if !section.is_handled() {
                self.counters.skipped_sections += 1;
                continue;
            }
            if matches!(section.action(), action::UPD | action::BUS) {
                bulk_progress = true;
            }
            for message in section.messages() {
                self.counters.received.add(message.action());
                self.receive(message, &cx, now, store, &mut out);
            }
        }
        if bulk_progress && self.bulk_request.phase == BulkPhase::Receiving {
            self.bulk_request.last_progress = Some(now);
            self.bulk_request.deadline = Some(now + self.config.bulk_progress_timeout);
        }
        out
    }

    fn receive(
        &mut self,
        message: Message,
        cx: &Conversion<'_>,
        now: Duration,
        store: &impl StateStore,
        out: &mut Vec<Action>,
    ) {
        match message {
            Message::Clr(clr) => self.receive_clear(&clr, cx, store, out),
            Message::InsAck(id) => out.push(Action::Release(id)),
            Message::UpdC(upd) => {
                if let Err(e) = check_update(upd.timeout, &upd.src, &upd.dst) {
                    self.count_import_error(e);
                    return;
                }
                let id = upd.state_id();
                match self.known_in(store, id) {
                    Some((key, local)) => {
                        self.merge(id, key, &local, [&upd.src, &upd.dst], upd.timeout, now, out)
                    }
                    None => self.request_update(id, now),
                }
            }
            Message::UpdReq(id) if id == StateId::BULK_REQUEST => {
                self.start_bulk_send(store);
                // The peer just came up, so our own unanswered request can go again now
                // rather than at its retry timer: two nodes starting together exchange
                // their tables within a round trip.
                // Not within 100 ms of our last request: two nodes that ask each other at
                // once would answer each other's repeat, again and again.
                let sent = self
                    .bulk_request
                    .deadline
                    .map(|d| d.saturating_sub(BULK_REQUEST_RETRY));
                if self.bulk_request.phase == BulkPhase::Requested
                    && self.bulk_request.tries < BULK_MAX_TRIES
                    && sent.is_some_and(|at| now >= at + Duration::from_millis(100))
                {
                    // We asked first and nobody answered: the peer was not there, it is
                    // the one starting (and demoted until it has our table). Our demotion
                    // goes now; kept until our own answer, it would let the peer, done
                    // first, take the VIPs from us for that moment.
                    if self.bulk_request.demoted {
                        self.bulk_request.demoted = false;
                        out.push(Action::Bulk(BulkEvent::PeerStarting));
                    }
                    self.send_bulk_request(now, out);
                }
            }
            Message::UpdReq(id) => self.update_requested(id, now),
            Message::Del(state) => self.receive_delete(state.state_id(), out),
            Message::DelC(id) => self.receive_delete(id, out),
            Message::Bus(bus) => match bus.status {
                BUS_START => self.bulk_started(now),
                BUS_END => self.bulk_ended(now, out),
                _ => {}
            },
            Message::Tdb(_) => self.counters.tdb_ignored += 1,
            Message::Ins(state) => {
                self.note_sender(&state);
                if let Err(e) = state.check_import() {
                    self.count_import_error(e);
                    return;
                }
                if state.creatorid == self.config.host_id {
                    self.counters.host_id_conflicts += 1;
                }
                if self.known_in(store, state.state_id()).is_some() {
                    self.counters.duplicate_inserts += 1;
                    return;
                }
                self.import(&state, cx, now, store, out);
            }
            Message::Upd(state) => {
                self.note_sender(&state);
                if let Err(e) = check_update(state.timeout, &state.src, &state.dst) {
                    self.count_import_error(e);
                    return;
                }
                let id = state.state_id();
                match self.known_in(store, id) {
                    Some((key, local)) => self.merge(
                        id,
                        key,
                        &local,
                        [&state.src, &state.dst],
                        state.timeout,
                        now,
                        out,
                    ),
                    None => {
                        if let Err(e) = state.check_import() {
                            self.count_import_error(e);
                            return;
                        }
                        self.import(&state, cx, now, store, out);
                    }
                }
            }
        }
    }

    /// Counts a full state that came without rampart's coverage bits: its sender is pf.
    fn note_sender(&mut self, state: &StateMsg) {
        let cover = sync_flags::RAMPART_COVER_IN | sync_flags::RAMPART_COVER_OUT;
        if state.sync_flags & cover == 0 {
            self.counters.pf_states_received += 1;
        }
    }

    fn count_import_error(&mut self, error: ImportError) {
        match error {
            ImportError::BadValue(_) | ImportError::ZeroCreator | ImportError::ZeroId => {
                self.counters.bad_value += 1
            }
            ImportError::NoAddressFamily => {}
            _ => self.counters.unsupported += 1,
        }
    }

    /// The key and current state of a state we know by identity; a stale index entry (the
    /// state left the table unreported) is dropped.
    fn known_in(&mut self, store: &impl StateStore, id: StateId) -> Option<(StateKey, State)> {
        let known = self.index.get(&id)?;
        let key = known.key;
        match store.get(&key, known.record.unwrap_or(id)) {
            Some(state) => Some((key, state)),
            None => {
                self.index.remove(&id);
                None
            }
        }
    }

    /// Imports a state the peer announced (INS, or UPD of an unknown state).
    fn import(
        &mut self,
        message: &StateMsg,
        cx: &Conversion<'_>,
        now: Duration,
        store: &impl StateStore,
        out: &mut Vec<Action>,
    ) {
        let state = match message.to_state(cx) {
            Ok(state) => state,
            Err(e) => {
                self.count_import_error(e);
                return;
            }
        };
        let id = message.state_id();
        let outbound = state.flags & STATE_OUTBOUND != 0;
        let existing = store
            .find(&state.key)
            .map(|e| (StateId::new(e.id, e.creator), e.flags & STATE_OUTBOUND != 0))
            .or_else(|| {
                self.frame_inserts
                    .iter()
                    .find(|(key, _, _)| *key == state.key)
                    .map(|&(_, record, outbound)| (record, outbound))
            });
        if let Some((record, record_outbound)) = existing {
            if record == id {
                // Already in the table, just not known by identity.
                self.index.insert(
                    id,
                    Known {
                        key: state.key,
                        peer_touched: Some(now),
                        record: None,
                        twin: None,
                    },
                );
                self.counters.duplicate_inserts += 1;
            } else if record.creator == id.creator
                && record.creator != self.config.host_id
                && record_outbound != outbound
            {
                // The peer's state for the connection's other filter point (pf's second
                // state of a forwarded connection, created in the other direction): one
                // record covers both here.
                self.index.insert(
                    id,
                    Known {
                        key: state.key,
                        peer_touched: Some(now),
                        record: Some(record),
                        twin: None,
                    },
                );
                if let Some(known) = self.index.get_mut(&record) {
                    known.twin = Some(id);
                }
                self.counters.merged_states += 1;
                out.push(Action::Apply(StateChange::Cover {
                    key: state.key,
                    id: record,
                    covers: state.covers,
                }));
            } else {
                self.counters.insert_failures += 1;
            }
            return;
        }
        self.index.insert(
            id,
            Known {
                key: state.key,
                peer_touched: Some(now),
                record: None,
                twin: None,
            },
        );
        let key = state.key;
        self.frame_inserts.push((key, id, outbound));
        out.push(Action::Apply(StateChange::Insert(Box::new(state))));
        if message.state_flags & state_flags::ACK != 0 {
            // The peer holds the state's first packet until we acknowledge (§3.6).
            self.dequeue(id);
            self.enqueue(id, Queue::InsAck, key, now);
            self.flush_now(now);
        }
    }

    /// `pfsync_in_updates` for a known state: merge per side; answer a stale side with our
    /// state at once.
    #[allow(clippy::too_many_arguments)]
    fn merge(
        &mut self,
        id: StateId,
        key: StateKey,
        local: &State,
        theirs: [&PeerMsg; 2],
        timeout: u8,
        now: Duration,
        out: &mut Vec<Action>,
    ) {
        let proto = key.proto();
        let merge = match (
            import_timeout(timeout),
            import_peer(proto, theirs[0]),
            import_peer(proto, theirs[1]),
        ) {
            (Ok(timeout), Ok(src), Ok(dst)) => Merge {
                key,
                id,
                peers: [src, dst],
                timeout,
            },
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
                self.count_import_error(e);
                return;
            }
        };
        let stale = merge.apply(&mut local.clone(), now.as_millis() as u64);
        // Into the record, which is `id` itself unless `id` is the peer's other state of
        // the connection (`Known::record`).
        let merge = Merge {
            id: StateId::new(local.id, local.creator),
            ..merge
        };
        out.push(Action::Apply(StateChange::Update(merge)));
        // Any update for the state tells us the peer has it: a packet held for its INS_ACK
        // goes now (pfsync_deferred from pfsync_in_upd / pfsync_in_upd_c, §3.6). The peer
        // sends a UPD_C instead of the ack when the state changed before its flush.
        out.push(Action::Release(id));
        if let Some(known) = self.index.get_mut(&id) {
            known.peer_touched = Some(now);
        }
        if stale > 0 {
            self.counters.stale += 1;
            // pfsync_update_state with pfsync_time = now: an UPD_C, flushed at once.
            self.state_updated(local, now);
        }
    }

    /// UPD_C for a state we do not have: ask for it (UPD_REQ), at once.
    fn request_update(&mut self, id: StateId, now: Duration) {
        if self.requested.insert(id) {
            self.requests.push(id);
        }
        self.flush_now(now);
    }

    /// `pfsync_update_state_req`: the peer asks for the full state.
    fn update_requested(&mut self, id: StateId, now: Duration) {
        let Some(known) = self.index.get(&id).copied() else {
            self.counters.unknown_state += 1;
            return;
        };
        match self.pending.get(&id).map(|p| p.queue) {
            Some(Queue::Ins | Queue::Upd | Queue::DelC) => {}
            _ => {
                self.dequeue(id);
                self.enqueue(id, Queue::Upd, known.key, now);
            }
        }
        self.flush_now(now);
    }

    fn receive_delete(&mut self, id: StateId, out: &mut Vec<Action>) {
        match self.index.remove(&id) {
            // The peer's other state of a connection: the record lives on with its own.
            Some(Known {
                record: Some(record),
                ..
            }) => {
                if let Some(known) = self.index.get_mut(&record) {
                    known.twin = None;
                }
            }
            Some(known) => {
                self.dequeue(id);
                out.push(Action::Apply(StateChange::Delete { key: known.key, id }));
            }
            None => self.counters.unknown_state += 1,
        }
    }

    /// CLR: every state of that creator goes, or, when it names an interface, only the
    /// states on it, as OpenBSD's pfsync_in_clr matches `st->kif`: "all" names the floating
    /// states, a local interface the peer's states bound to it, and any other name nothing.
    fn receive_clear(
        &mut self,
        clr: &wire::Clr,
        cx: &Conversion<'_>,
        store: &impl StateStore,
        out: &mut Vec<Action>,
    ) {
        // `None`: every state; `Some(None)`: floating ones; `Some(Some(i))`: bound to `i`.
        let scope: Option<Option<usize>> = if clr.ifname.is_empty() {
            None
        } else if clr.ifname == IfName::ALL {
            Some(None)
        } else {
            let Some(index) = clr
                .ifname
                .as_str()
                .and_then(|name| cx.interfaces.iter().position(|i| i == name))
            else {
                return;
            };
            Some(Some(index))
        };
        // Records only: the peer's other states of the same connections go with them.
        let victims: Vec<(StateId, StateKey)> = self
            .index
            .iter()
            .filter(|(id, known)| id.creator == clr.creatorid && known.record.is_none())
            .map(|(id, known)| (*id, known.key))
            .collect();
        for (id, key) in victims {
            if let Some(bound_to) = scope {
                let on_it = store.get(&key, id).is_some_and(|s| {
                    let bound = s.flags & STATE_IF_BOUND != 0;
                    match bound_to {
                        None => !bound,
                        Some(index) => bound && usize::from(s.iface) == index,
                    }
                });
                if !on_it {
                    continue;
                }
            }
            self.index.remove(&id);
            self.dequeue(id);
            out.push(Action::Apply(StateChange::Delete { key, id }));
        }
        let index = &self.index;
        let gone = |record: &StateId| !index.contains_key(record);
        let orphans: Vec<StateId> = index
            .iter()
            .filter(|(_, known)| known.record.as_ref().is_some_and(gone))
            .map(|(id, _)| *id)
            .collect();
        for id in orphans {
            self.index.remove(&id);
        }
    }

    // ----- queueing -----------------------------------------------------------------------

    /// The id of the connection's other pf state for `state`'s record: the one the peer
    /// knows, or, with `split_states`, [`twin_id`] for a floating record that covers both
    /// filter points.
    fn twin_of(&self, state: &State) -> Option<StateId> {
        let record = StateId::new(state.id, state.creator);
        if let Some(twin) = self.index.get(&record).and_then(|k| k.twin) {
            return Some(twin);
        }
        let both = COVER_IN | COVER_OUT;
        (self.config.split_states
            && state.covers & both == both
            && state.flags & STATE_IF_BOUND == 0)
            .then(|| twin_id(record))
    }

    /// The connection's other pf state to send beside `state` ([`twin_of`](Self::twin_of)),
    /// indexed as the record's, or `None`.
    fn twin_to_send(&mut self, state: &State) -> Option<State> {
        let twin = self.twin_of(state)?;
        self.note_twin(StateId::new(state.id, state.creator), state.key, twin);
        Some(twin_state(state, twin))
    }

    /// The peer is being sent `twin`, the other pf state of `record`: index it as one of
    /// the record's states, so that the peer's requests, updates and deletion of it find
    /// the record.
    fn note_twin(&mut self, record: StateId, key: StateKey, twin: StateId) {
        let mut known = self.know(record, key);
        known.twin = Some(twin);
        self.index.insert(record, known);
        self.index.entry(twin).or_insert(Known {
            key,
            peer_touched: None,
            record: Some(record),
            twin: None,
        });
    }

    /// Records `id` → `key`, keeping what is known about it.
    fn know(&mut self, id: StateId, key: StateKey) -> Known {
        let known = self.index.entry(id).or_insert(Known {
            key,
            peer_touched: None,
            record: None,
            twin: None,
        });
        known.key = key;
        *known
    }

    /// Bytes a packet carrying everything queued would take.
    fn queued_len(&self) -> usize {
        let sections: usize = Queue::ALL
            .iter()
            .map(|&q| {
                let n = self.queues[q as usize].len();
                if n == 0 {
                    0
                } else {
                    view::SUBHEADER_LEN + n * q.message_len()
                }
            })
            .sum();
        let requests = if self.requests.is_empty() {
            0
        } else {
            view::SUBHEADER_LEN + self.requests.len() * StateId::LEN
        };
        wire::MIN_PACKET + sections + requests
    }

    fn enqueue(&mut self, id: StateId, queue: Queue, key: StateKey, now: Duration) {
        let mut added = queue.message_len();
        if self.queues[queue as usize].is_empty() {
            added += view::SUBHEADER_LEN;
        }
        if self.queued_len() + added > self.config.mtu {
            // The packet would overflow: what is queued goes now (pfsync_q_ins).
            self.flush_now(now);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.queues[queue as usize].insert(seq, id);
        self.pending.insert(
            id,
            Pending {
                queue,
                seq,
                key,
                updates: 0,
                ack: false,
            },
        );
        if self.flush_at.is_none() {
            self.flush_at = Some(now + FLUSH_DELAY);
        }
    }

    fn dequeue(&mut self, id: StateId) -> Option<Pending> {
        let pending = self.pending.remove(&id)?;
        self.queues[pending.queue as usize].remove(&pending.seq);
        Some(pending)
    }

    fn flush_now(&mut self, now: Duration) {
        self.flush_at = Some(self.flush_at.map_or(now, |at| at.min(now)));
    }

    /// Writes every queued message into as few packets as the MTU allows.
    fn flush(&mut self, now: Duration, store: &impl StateStore, out: &mut Vec<Action>) {
        self.flush_at = None;
        let interfaces = Arc::clone(&self.config.interfaces);
        let cx = conversion(&interfaces, self.config.default_iface, now, store);
        let mut builder = FrameBuilder::new(self.config.mtu);
        for queue in Queue::ALL {
            let entries = std::mem::take(&mut self.queues[queue as usize]);
            for id in entries.into_values() {
                let Some(pending) = self.pending.remove(&id) else {
                    continue;
                };
                let message = match queue {
                    Queue::InsAck => Message::InsAck(id),
                    Queue::DelC => Message::DelC(id),
                    Queue::UpdC | Queue::Ins | Queue::Upd => {
                        // A twin's id (the peer asked for it by UPD_REQ) reads its record.
                        let record = self.index.get(&id).and_then(|k| k.record);
                        let Some(state) = store.get(&pending.key, record.unwrap_or(id)) else {
                            self.counters.vanished += 1;
                            continue;
                        };
                        if record.is_some() {
                            let twin = twin_state(&state, id);
                            let msg = StateMsg::from_state(&twin, &cx);
                            self.write(&mut builder, Message::Upd(Box::new(msg)), out);
                            continue;
                        }
                        // The connection's other pf state, when the peer knows or needs it
                        // (an UPD answers a request for one state only).
                        let twin = if queue == Queue::Upd {
                            None
                        } else {
                            self.twin_to_send(&state)
                        };
                        let message = match queue {
                            Queue::UpdC => Message::UpdC(upd_c(&state)),
                            Queue::Ins => {
                                let mut msg = StateMsg::from_state(&state, &cx);
                                if pending.ack {
                                    msg.state_flags |= state_flags::ACK;
                                }
                                Message::Ins(Box::new(msg))
                            }
                            _ => Message::Upd(Box::new(StateMsg::from_state(&state, &cx))),
                        };
                        self.write(&mut builder, message, out);
                        let Some(twin) = twin else {
                            continue;
                        };
                        match queue {
                            Queue::UpdC => Message::UpdC(upd_c(&twin)),
                            _ => Message::Ins(Box::new(StateMsg::from_state(&twin, &cx))),
                        }
                    }
                };
                self.write(&mut builder, message, out);
            }
        }
        for id in std::mem::take(&mut self.requests) {
            self.write(&mut builder, Message::UpdReq(id), out);
        }
        self.requested.clear();
        if !builder.is_empty() {
            self.send(builder.finish(), out);
        }
    }

    /// Adds `message` to the packet being built, sending it first if it is full.
    fn write(&mut self, builder: &mut FrameBuilder, message: Message, out: &mut Vec<Action>) {
        if !builder.push(&message) {
            let full = std::mem::replace(builder, FrameBuilder::new(self.config.mtu));
            self.send(full.finish(), out);
            builder.push(&message);
        }
        self.counters.sent.add(message.action());
    }

    /// One message in a packet of its own, now.
    fn send_one(&mut self, message: Message, out: &mut Vec<Action>) {
        self.counters.sent.add(message.action());
        self.send(wire::encode(&[message]), out);
    }

    fn send(&mut self, mut payload: Vec<u8>, out: &mut Vec<Action>) {
        if let Some(key) = &self.config.auth_key {
            let tag = auth_tag(key, &payload);
            payload.extend_from_slice(&tag);
        }
        self.counters.packets_sent += 1;
        self.counters.bytes_sent += (payload.len() + wire::IP_HEADER_LEN) as u64;
        out.push(Action::Send(Datagram {
            dst: self.dst,
            payload,
        }));
    }

    // ----- timers -------------------------------------------------------------------------

    /// Runs what is due at `now`: the queued messages (1 s after the first, or at once when
    /// a limit was hit), the bulk request's timers, and every [`INDEX_GC_INTERVAL`] a slice
    /// of the identity-index check.
    /// Call it at [`next_timeout`](Self::next_timeout), after applying changes, or every loop.
    pub fn poll(&mut self, now: Duration, store: &impl StateStore) -> Vec<Action> {
        let mut out = Vec::new();
        if self.flush_at.is_some_and(|at| at <= now) {
            self.flush(now, store, &mut out);
        }
        if self.bulk_request.deadline.is_some_and(|d| d <= now) {
            self.bulk_request_timeout(now, &mut out);
        }
        if self
            .gc_last
            .is_none_or(|last| now >= last + INDEX_GC_INTERVAL)
        {
            self.gc_last = Some(now);
            self.check_index(store);
        }
        out
    }

    /// When [`poll`](Self::poll) next has work (`None`: nothing queued, no bulk request
    /// running). A bulk being *sent* is paced by the caller through
    /// [`bulk_next`](Self::bulk_next) instead.
    pub fn next_timeout(&self) -> Option<Duration> {
        match (self.flush_at, self.bulk_request.deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Drops index entries whose state left the table without a deletion event (expired on
    /// lookup by a worker), a few per call, resuming where the last call stopped.
    fn check_index(&mut self, store: &impl StateStore) {
        let budget = self.config.index_gc_budget;
        if budget == 0 {
            return;
        }
        let start = match self.gc_cursor {
            Some(id) => Bound::Excluded(id),
            None => Bound::Unbounded,
        };
        let batch: Vec<(StateId, StateKey, StateId)> = self
            .index
            .range((start, Bound::Unbounded))
            .take(budget)
            .map(|(id, known)| (*id, known.key, known.record.unwrap_or(*id)))
            .collect();
        self.gc_cursor = if batch.len() < budget {
            None
        } else {
            batch.last().map(|(id, _, _)| *id)
        };
        for (id, key, record) in batch {
            if store.get(&key, record).is_none() && !self.pending.contains_key(&id) {
                self.index.remove(&id);
            }
        }
    }

    // ----- bulk: requester ----------------------------------------------------------------

    /// Asks the peer for every state (pfsync coming up, §3.8): demotes CARP by 32 until BUS
    /// END or a timeout. Does nothing while a request is already running (§5.5: idempotent).
    pub fn request_bulk(&mut self, now: Duration) -> Vec<Action> {
        let mut out = Vec::new();
        if matches!(
            self.bulk_request.phase,
            BulkPhase::WaitingForLink | BulkPhase::Requested | BulkPhase::Receiving
        ) {
            return out;
        }
        self.bulk_request = BulkRequest {
            demoted: true,
            ..BulkRequest::default()
        };
        out.push(Action::Bulk(BulkEvent::Started));
        if self.link_up {
            self.send_bulk_request(now, &mut out);
        } else {
            self.bulk_request.phase = BulkPhase::WaitingForLink;
            self.bulk_request.deadline = Some(now + BULK_LINK_WAIT);
        }
        out
    }

    /// Stops a running bulk request (pfsync going down) and releases its demotion.
    pub fn cancel_bulk_request(&mut self) -> Vec<Action> {
        let mut out = Vec::new();
        if self.bulk_request.demoted {
            out.push(Action::Bulk(BulkEvent::Cancelled));
        }
        self.bulk_request = BulkRequest::default();
        out
    }

    /// The sync link went up or down. Up: a bulk request waiting for it is sent.
    pub fn link_state(&mut self, up: bool, now: Duration) -> Vec<Action> {
        let mut out = Vec::new();
        self.link_up = up;
        if up && self.bulk_request.phase == BulkPhase::WaitingForLink {
            self.send_bulk_request(now, &mut out);
        }
        out
    }

    fn send_bulk_request(&mut self, now: Duration, out: &mut Vec<Action>) {
        self.bulk_request.tries += 1;
        self.bulk_request.phase = BulkPhase::Requested;
        self.bulk_request.deadline = Some(now + BULK_REQUEST_RETRY);
        self.send_one(Message::UpdReq(StateId::BULK_REQUEST), out);
    }

    fn bulk_request_timeout(&mut self, now: Duration, out: &mut Vec<Action>) {
        match self.bulk_request.phase {
            BulkPhase::Requested | BulkPhase::Receiving
                if self.bulk_request.tries < BULK_MAX_TRIES =>
            {
                self.send_bulk_request(now, out)
            }
            BulkPhase::WaitingForLink | BulkPhase::Requested | BulkPhase::Receiving => {
                self.counters.bulk_timeouts += 1;
                self.bulk_finished(BulkEvent::TimedOut, out);
            }
            BulkPhase::Idle | BulkPhase::Done => self.bulk_request.deadline = None,
        }
    }

    fn bulk_started(&mut self, now: Duration) {
        if matches!(
            self.bulk_request.phase,
            BulkPhase::WaitingForLink | BulkPhase::Requested | BulkPhase::Receiving
        ) {
            self.bulk_request.phase = BulkPhase::Receiving;
            self.bulk_request.last_progress = Some(now);
            self.bulk_request.deadline = Some(now + self.config.bulk_progress_timeout);
        }
    }

    fn bulk_ended(&mut self, now: Duration, out: &mut Vec<Action>) {
        // A BUS END without START answers a request to a peer with no states (OpenBSD's
        // requester ignores it and retries for 24 s).
        if matches!(
            self.bulk_request.phase,
            BulkPhase::Requested | BulkPhase::Receiving
        ) {
            self.bulk_request.last_progress = Some(now);
            self.counters.bulks_received += 1;
            self.bulk_finished(BulkEvent::Done, out);
        }
    }

    fn bulk_finished(&mut self, event: BulkEvent, out: &mut Vec<Action>) {
        self.bulk_request.phase = BulkPhase::Done;
        self.bulk_request.deadline = None;
        if self.bulk_request.demoted {
            self.bulk_request.demoted = false;
            out.push(Action::Bulk(event));
        }
    }

    // ----- bulk: sender -------------------------------------------------------------------

    /// UPD_REQ(0, 0): start a walk over the table; [`bulk_next`](Self::bulk_next) sends
    /// it. A request during a bulk is absorbed.
    fn start_bulk_send(&mut self, store: &impl StateStore) {
        if self.bulk_send.is_some() {
            self.counters.bulk_requests_absorbed += 1;
            return;
        }
        self.bulk_send = Some(BulkSend {
            cursor: WalkCursor::default(),
            slice: VecDeque::with_capacity(BULK_SLICE),
            carry: None,
            walked: false,
            started: false,
            sent: 0,
            total: store.state_count() as usize,
        });
    }

    /// Whether a bulk is being sent: call [`bulk_next`](Self::bulk_next) each loop until not.
    pub fn bulk_sending(&self) -> bool {
        self.bulk_send.is_some()
    }

    /// Up to `max_packets` packets of the bulk being sent (§3.8): BUS START and full UPDs in
    /// the first, UPDs filled to the MTU in the next ones, BUS END after the last state (in
    /// the same packet when it fits). Paced by the caller, one slice per loop, instead of
    /// OpenBSD's one packet per 20 ms. The table is read [`BULK_SLICE`] states per shard
    /// lock, so workers wait for at most a slice's copy; states created meanwhile reach the
    /// peer by live sync if the walk has passed them.
    pub fn bulk_next(
        &mut self,
        now: Duration,
        max_packets: usize,
        store: &impl StateStore,
    ) -> Vec<Action> {
        let mut out = Vec::new();
        let interfaces = Arc::clone(&self.config.interfaces);
        let cx = conversion(&interfaces, self.config.default_iface, now, store);
        let host_id = self.config.host_id;
        let bus = |status| {
            Message::Bus(Bus {
                creatorid: host_id,
                endtime: 0,
                status,
            })
        };
        for _ in 0..max_packets {
            let Some(mut bulk) = self.bulk_send.take() else {
                break;
            };
            let mut builder = FrameBuilder::new(self.config.mtu);
            if !bulk.started {
                bulk.started = true;
                if bulk.total > 0 {
                    builder.push(&bus(BUS_START));
                    self.counters.sent.add(action::BUS);
                }
            }
            while builder.has_room(action::UPD, StateMsg::LEN) {
                let message = match bulk.carry.take() {
                    Some(twin) => twin,
                    None => {
                        if bulk.slice.is_empty() && !bulk.walked {
                            let slice = &mut bulk.slice;
                            bulk.walked =
                                store.walk(&mut bulk.cursor, BULK_SLICE, &mut |s: &State| {
                                    slice.push_back(s.clone())
                                });
                        }
                        let Some(state) = bulk.slice.pop_front() else {
                            break;
                        };
                        bulk.sent += 1;
                        if let Some(twin) = self.twin_to_send(&state) {
                            bulk.carry = Some(Box::new(StateMsg::from_state(&twin, &cx)));
                        }
                        Box::new(StateMsg::from_state(&state, &cx))
                    }
                };
                builder.push(&Message::Upd(message));
                self.counters.sent.add(action::UPD);
                self.counters.bulk_states_sent += 1;
            }
            let mut done = false;
            if bulk.walked
                && bulk.slice.is_empty()
                && bulk.carry.is_none()
                && builder.fits(&bus(BUS_END))
            {
                builder.push(&bus(BUS_END));
                self.counters.sent.add(action::BUS);
                done = true;
            }
            if !builder.is_empty() {
                self.send(builder.finish(), &mut out);
            }
            if done {
                self.counters.bulks_sent += 1;
                break;
            }
            self.bulk_send = Some(bulk);
        }
        out
    }
}

/// The conversion context at `now` for `store`'s table.
fn conversion<'a>(
    interfaces: &'a [String],
    default_iface: u8,
    now: Duration,
    store: &'a impl StateStore,
) -> Conversion<'a> {
    Conversion {
        now_ms: now.as_millis() as u64,
        timeouts: store.timeouts(),
        state_count: store.state_count(),
        interfaces,
        default_iface,
    }
}

/// The connection's other pf state of `record`, as `twin` (see [`twin_id`]): the opposite
/// direction, so pf's key with the initiator in the other slot, covering the other filter
/// point, and no rule (pf attaches a state without one to its default rule).
fn twin_state(record: &State, twin: StateId) -> State {
    let mut state = record.clone();
    state.id = twin.id;
    state.creator = twin.creator;
    state.flags ^= STATE_OUTBOUND;
    state.covers = if state.flags & STATE_OUTBOUND != 0 {
        COVER_OUT
    } else {
        COVER_IN
    };
    state.rule = u32::MAX;
    state
}

/// The compressed update of `state` (`pfsync_out_upd_c`: expire and flags 0).
fn upd_c(state: &State) -> UpdC {
    UpdC {
        id: state.id,
        src: super::convert::export_peer(&state.peers[0]),
        dst: super::convert::export_peer(&state.peers[1]),
        creatorid: state.creator,
        expire: 0,
        timeout: state.timeout as u8,
        state_flags: 0,
    }
}
