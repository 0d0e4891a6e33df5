//! CARP, wire-compatible with OpenBSD, as a sans-IO engine.
//!
//! Section numbers (§) refer to `reference/protocols.md`, which paraphrases OpenBSD's
//! `ip_carp.c` 1.370; where this module departs from OpenBSD it says so.
//!
//! # Design
//!
//! Like quinn-proto, the engine owns no socket, clock or thread: the caller hands it time and
//! bytes, and it hands back [`Action`]s. Time is a [`Duration`](std::time::Duration) since any
//! fixed epoch of the caller's monotonic clock, at µs precision or better (intervals are whole
//! µs, truncated as OpenBSD's `advskew * 1000000 / 256`). Tests drive it on a virtual clock.
//!
//! - [`CarpEngine`] holds every group plus the node-wide demotion ([`Demotion`]): OpenBSD puts
//!   every carp interface in the interface group `carp`, whose demotion counter every vhid
//!   advertises (§2.4), so one failure moves all VIPs together.
//! - A group ([`GroupConfig`], one `[[carp]]`) is one vhid on one interface with its VIPs,
//!   `advbase`, `advskew`, key, `preempt` and optional unicast `peer`, and a 64-bit replay
//!   cookie drawn once (§1.6), passed in so that tests are deterministic. [`GroupId`] `i` is
//!   `config.carp[i]`, the numbering the dataplane's `VipTable` uses.
//! - [`hmac`]: the OpenBSD HMAC-SHA1 (§1.4); [`packet`]: the frames, built with the dataplane's
//!   `wire::carp` view and `wire::build` builders; [`demotion`]: the demotion ledger.
//!
//! ## States and timers (§2.2, §2.3)
//!
//! Groups start in INIT and go to BACKUP as soon as they run (link up, not shut down); a node
//! never starts as MASTER. BACKUP arms a master-down timer of 3 × interval (interval =
//! advbase + advskew/256 s, 1/256 s if both are 0; advbase 0 is allowed) per address family,
//! and takes over when one fires. MASTER advertises every interval with
//! `min(demotion, 255)` in byte 4. On a valid advertisement from another node:
//!
//! - MASTER steps down if `(T_us ≥ T_them and D_them ≤ D_us) or D_them < D_us`;
//! - BACKUP takes over (1) with `preempt` from a strictly slower master that is not less
//!   demoted, (2) from a more demoted master regardless of `preempt`, (3) from a master whose
//!   interval exceeds 3 × our advbase (the bow-out); otherwise it re-arms the master-down
//!   timer of the family the advertisement came on.
//!
//! Becoming MASTER sends one advertisement at once, then a gratuitous ARP for each IPv4 VIP
//! and an unsolicited NA for each IPv6 VIP, repeated with the second advertisement after that
//! (§2.5). A change of the advertised demotion makes every MASTER advertise at once (§2.4,
//! §5.8). [`CarpEngine::shutdown`] sends the bow-out (advbase = advskew = 255) from every
//! MASTER (§2.5). A link going down puts its groups in INIT and demotes the node by 1.
//!
//! ## Departures from OpenBSD, and why
//!
//! - **Simultaneous start / exact ties.** OpenBSD has no tie-break (§2.3): with equal
//!   intervals and demotion, a MASTER that hears another MASTER yields. Two nodes that start
//!   together both time out after 3 intervals, both become MASTER, hear each other and *both*
//!   yield; real timer jitter eventually separates them, but nothing guarantees it. Here a
//!   MASTER that hears an exact tie keeps MASTER if its cookie is numerically larger than the
//!   sender's counter (the counter is covered by the HMAC, unlike advbase/advskew/demote, so
//!   it cannot be forged without the key). So two rampart nodes that start together are both
//!   MASTER for one link delay, then exactly one remains, after 3 intervals plus one link
//!   delay. An OpenBSD peer always yields on a tie, so mixed pairs converge too.
//! - **Split-brain recovery (§5.15).** A MASTER that hears a less preferred master advertises
//!   at once (so that master yields without waiting an interval) and re-announces its VIPs
//!   (gratuitous ARP / NA), at most once per interval. OpenBSD stays silent.
//! - **Loops (§5.2).** Our own advertisement (counter equal to our cookie) is counted as
//!   `own_loop`, never steps the group down, and is warned about at a limited rate.
//! - **Warnings (§5.3).** HMAC failures for one of our vhids produce [`Warning::BadHmac`] at
//!   most once per [`WARNING_INTERVAL`] per group, with the number suppressed.
//! - **Demotion.** Reasons are booked separately ([`DemotionReason`]), so each source releases
//!   only what it added (§5.5, §5.7). A down link demotes by 1 per *interface* carrying CARP
//!   groups; OpenBSD adds 1 per carp *interface* (so per vhid here).
//! - **Announcement repeat.** The repeat after two advertisements also carries the NAs
//!   (OpenBSD repeats only the ARPs, and sends its NAs on the carp interface's link change).
//! - **No custom lladdr, no balancing.** Every group uses the standard virtual MAC
//!   00:00:5e:00:01:vhid, so the HMAC never includes an lladdr, and `carpnodes` / balancing
//!   modes are not supported.
//!
//! # Wiring it into the control loop
//!
//! 1. Build it once: [`CarpEngine::from_config`] with a random cookie source, then
//!    [`CarpEngine::link_state`] for any link that is down.
//! 2. Feed every CARP frame a worker hands over (`ToControl::Frame { iface, buf }`, IP protocol
//!    112) to [`CarpEngine::handle_frame`], or an already-parsed packet to
//!    [`CarpEngine::handle_advert`]. Feed link changes to `link_state`, pfsync's bulk state to
//!    [`CarpEngine::set_pfsync_bulk_in_progress`], `carpdemote` to
//!    [`CarpEngine::set_operator_demotion`], and call [`CarpEngine::shutdown`] before exiting.
//! 3. Sleep until [`CarpEngine::next_timeout`] (or until a frame or event arrives), then call
//!    [`CarpEngine::poll`].
//! 4. Carry out the returned actions **in order**:
//!    - [`Action::BecomeMaster`]: `VipTable::set_master(group, true)` so workers answer ARP/ND
//!      for the VIPs and accept their traffic — before transmitting what follows.
//!    - [`Action::BecomeBackup`] / [`Action::BecomeInit`]: `set_master(group, false)`.
//!    - [`Action::SendAdvert`]: transmit `frame` on `iface` from the control core's TX queue.
//!      If `unicast_peer` is set, first write the peer's MAC (from the neighbour table; resolve
//!      it if unknown) into bytes 0..6.
//!    - [`Action::SendGratuitous`]: transmit every frame on `iface`.
//!    - [`Action::Warn`]: log it.
//! 5. Show [`CarpEngine::statuses`], [`CarpEngine::counters`] and
//!    [`CarpEngine::demotion_reasons`] in `rampart ctl`.

pub mod demotion;
mod engine;
pub mod hmac;
pub mod packet;

#[cfg(test)]
mod tests;

pub use demotion::{Demotion, DemotionReason};
pub use engine::{
    advert_interval, master_down_interval, Action, AnnounceReason, CarpCounters, CarpEngine,
    ConfigError, GroupConfig, GroupCounters, GroupId, GroupStatus, HeardAdvert, State,
    TransitionReason, Warning, WARNING_INTERVAL,
};
