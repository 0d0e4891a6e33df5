//! pfsync, wire-compatible with OpenBSD's version 6, as a sans-IO engine.
//!
//! Section numbers (§) refer to `reference/protocols.md`, which paraphrases OpenBSD's
//! `if_pfsync.c` 1.332 and `if_pfsync.h` 1.65; where this module departs from OpenBSD it says
//! so.
//!
//! - [`wire`]: every message, decoded and encoded byte-exact (§3.2–§3.4), with OpenBSD's
//!   section-walking rules; frames built to the sync interface's MTU.
//! - [`convert`]: rampart's `State` ↔ `pfsync_state` (keys, directions, peers, times).
//! - [`PfsyncEngine`]: queueing and compression (§3.5), the merge rules (§3.7) and the bulk
//!   protocol (§3.8), driven by events and time, returning [`Action`]s.
//!
//! # Design
//!
//! Like [`crate::carp`], the engine owns no socket, clock or thread. Time is a
//! [`Duration`](std::time::Duration) on the caller's monotonic clock — the clock the state
//! table's `last_ms` runs on. The state table is read through [`StateStore`] (implemented for
//! `StateTable`) and written by the caller: the engine returns [`StateChange`]s, and
//! [`apply_change`] makes them under the shard lock, where a [`Merge`] re-runs the per-peer
//! rule so that a worker's concurrent update is never rolled back.
//!
//! - **Identity.** pf finds states by `(id, creatorid)` (§3.9), rampart's table by key. The
//!   engine keeps the missing index, `(id, creator) → key`, fed by the events and by what it
//!   imports, and checks a slice of it against the table every 100 ms from
//!   [`poll`](PfsyncEngine::poll) (states that expire on a worker's lookup leave no event).
//! - **Sending** (§3.5). One pending message per state, in five queues written in OpenBSD's
//!   section order (INS_ACK, UPD_C, DEL_C, INS, UPD), then UPD_REQs. An update of a state
//!   queued for INS or UPD_C coalesces; a delete of a state queued for INS cancels both. The
//!   queues flush 1 s after the first message, at once when a packet would overflow the MTU,
//!   when a TCP state has coalesced `maxupd` updates, or when the peer updated the state less
//!   than 2 s ago. Messages carry what the table holds **when they are written**, as pf
//!   exports the state when it writes the packet; a state gone by then is skipped.
//! - **Receiving** (§3.7). INS imports (keeping the peer's creator id; an INS asking for an
//!   ack gets an INS_ACK at once); UPD merges or imports; UPD_C merges, or asks for the state
//!   with UPD_REQ; UPD_REQ(id) queues a full UPD, flushed at once; DEL/DEL_C delete; CLR
//!   deletes every state of that creator; BUS drives the bulk request; TDB is counted and
//!   ignored. Merges go per peer and never move a peer's TCP state or `seqlo` back (§5.9); a
//!   stale side is answered with our state at once.
//! - **One record, pf's two states** (§4.3). pf keeps a forwarded connection as two states,
//!   in on the ingress interface and out on the egress one, each with its own id; rampart
//!   keeps one record covering both filter points. From a pf peer, the second state to
//!   arrive adds its point to the first's record and is indexed as that record's *twin*;
//!   its updates merge into the record, and the record's updates and deletion go to it
//!   too. Towards a peer, a record goes out as one state carrying rampart's coverage bits
//!   (enough for a rampart peer), or, with [`PfsyncConfig::split_states`], as pf's two: the
//!   record under its own id and direction, and its twin under [`twin_id`] (bit 63 set)
//!   in the other direction, so an OpenBSD backup has a state at each point. Requests,
//!   updates and deletions of a twin find the record through the index.
//! - **Bulk** (§3.8). [`request_bulk`](PfsyncEngine::request_bulk) sends UPD_REQ(0, 0) and
//!   returns [`BulkEvent::Started`]; the answer ends with [`BulkEvent::Done`] or
//!   [`BulkEvent::TimedOut`]. Answering a request starts a walk over the table; the caller
//!   pulls packets with [`bulk_next`](PfsyncEngine::bulk_next), a slice per loop, and the
//!   walk reads [`BULK_SLICE`] states per shard lock (workers never wait for more).
//!
//! ## Departures from OpenBSD, and why
//!
//! - **Bulk timeout (§5.5).** OpenBSD's requester gives up 4 × (state limit / states per
//!   packet / 50) s after BUS START (~27 min at defaults) and keeps CARP demoted meanwhile.
//!   Here the timer is reset by every bulk packet (UPD or BUS):
//!   [`PfsyncConfig::bulk_progress_timeout`] (10 s) of silence re-sends the request, and
//!   after 12 requests the bulk is given up and the demotion released. OpenBSD's
//!   "resend and also mark done" path (§7.4) is not copied.
//! - **Bulk pacing.** OpenBSD sends one MTU-sized packet per 20 ms (250 states/s at MTU
//!   1500). Here the caller decides how many packets go per loop iteration: `rampart run`
//!   sends what the sync interface's TX path has room for, within `[pfsync] bulk_rate`
//!   states per second (750 000 by default: what a receiver installs comfortably), so 1M
//!   states take about 1.3 s instead of OpenBSD's 67 minutes.
//! - **BUS END without BUS START** (the peer's table is empty) completes a bulk request;
//!   OpenBSD ignores it and retries for 24 s.
//! - **A peer's bulk request releases our own demotion** when our request has gone
//!   unanswered for 100 ms or more ([`BulkEvent::PeerStarting`]): the peer is starting and
//!   demoted itself; OpenBSD keeps both demoted until each has its answer, and the node done
//!   first takes the VIPs for a moment.
//! - **Repeated requests are idempotent**: `request_bulk` during a running request does
//!   nothing, so reconfiguration cannot stack or restart demotions (§5.5).
//! - **Flushing is deferred to `poll`.** Where OpenBSD writes a packet inside the event that
//!   filled it, the engine marks the queues due and the next `poll` writes them (as many
//!   MTU-sized packets as needed). Replies to received frames also leave from `poll`, after
//!   the caller applied the changes, so they carry the merged state.
//! - **Deferral (§3.6)** is both answered (INS_ACK for an INS with `PFSTATE_ACK`) and
//!   requested: [`state_deferred`](PfsyncEngine::state_deferred) sends the INS with
//!   `PFSTATE_ACK` at once and the INS_ACK comes back as [`Action::Release`]. The held packet
//!   itself is the caller's (`runtime::pfsync`: at most 128, released after 20 ms
//!   without an ack, as OpenBSD does).
//! - **Authenticated mode** ([`PfsyncConfig::auth_key`], `[pfsync] key`): an HMAC-SHA1
//!   trailer after each message, outside the header's `len`, and packets without a valid one
//!   dropped (`bad_auth`). Off by default; OpenBSD has no such mode and ignores the trailer.
//! - **Own frames** (from one of [`PfsyncConfig::own_addresses`]) are ignored: pfsync has no
//!   loop protection of its own.
//! - **States rampart cannot represent** — translated (wire ≠ stack key), in an rdomain,
//!   synproxy or modulated, timeout classes 14–19 — are refused and counted as
//!   `unsupported`; see [`convert`] for the field mapping.
//!
//! # Wiring it into the control loop
//!
//! `runtime::pfsync` does this for `rampart run`; the steps, for another host of the engine:
//!
//! 1. Build it once: [`PfsyncConfig::from_config`] with the table's creator id, then
//!    [`PfsyncEngine::new`]. Call [`request_bulk`](PfsyncEngine::request_bulk) at start and
//!    feed [`BulkEvent`]s to `CarpEngine::set_pfsync_bulk_in_progress(event.in_progress())`.
//!    Feed the sync link's state to [`link_state`](PfsyncEngine::link_state) (and OpenBSD's
//!    +1 "pfsync link" demotion to `CarpEngine::set_demotion(PfsyncLink, …)`).
//! 2. State events from the workers (`rampart_dataplane::worker::StateEvent`, coalesced per
//!    state by the worker): [`state_event`](PfsyncEngine::state_event); the sweep's
//!    expirations are [`state_deleted`](PfsyncEngine::state_deleted); a packet held by
//!    `[pfsync] defer` is [`state_deferred`](PfsyncEngine::state_deferred). `pfctl -F
//!    states` is [`states_cleared`](PfsyncEngine::states_cleared). An event only names the
//!    state: what is sent is read from the table at send time.
//! 3. Frames of IP protocol 240 from the workers (`ToControl::Frame`):
//!    [`handle_frame`](PfsyncEngine::handle_frame).
//! 4. Carry out the actions in order: [`Action::Apply`] with [`apply_change`] (on failure,
//!    tell [`apply_failed`](PfsyncEngine::apply_failed)); [`Action::Send`]: build the frame
//!    with [`Datagram::ethernet_frame`] (the group MAC, or the unicast peer's from the
//!    neighbour table) and transmit it on the sync interface; [`Action::Bulk`]: CARP;
//!    [`Action::Release`]: transmit the packet held for that state.
//! 5. Every loop: [`poll`](PfsyncEngine::poll) (cheap when nothing is due; call it right
//!    after applying the changes of a received frame too), and while
//!    [`bulk_sending`](PfsyncEngine::bulk_sending), [`bulk_next`](PfsyncEngine::bulk_next)
//!    with a packet budget.
//! 6. Show [`counters`](PfsyncEngine::counters) and
//!    [`bulk_status`](PfsyncEngine::bulk_status) in `rampart ctl`.

pub mod convert;
mod engine;
pub mod wire;

#[cfg(test)]
mod tests;

pub use convert::{Conversion, ImportError};
pub use engine::twin_id;
pub use engine::{
    apply_change, Action, ActionCounts, ApplyError, BulkEvent, BulkPhase, BulkStatus, Merge,
    PfsyncConfig, PfsyncCounters, PfsyncEngine, StateChange, StateStore, AUTH_TRAILER_LEN,
    BULK_LINK_WAIT, BULK_MAX_TRIES, BULK_REQUEST_RETRY, BULK_SLICE, DEFAULT_BULK_PROGRESS_TIMEOUT,
    DEFAULT_INDEX_GC_BUDGET, DEFAULT_MTU, FLUSH_DELAY, INDEX_GC_INTERVAL, MIN_MTU, PEER_RECENT,
    TWIN_ID_BIT,
};
pub use wire::{Datagram, StateId, StateMsg};
