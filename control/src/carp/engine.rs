//! The CARP state machine: [`CarpEngine`] and its groups. See the [module
//! documentation](super) for the design; section numbers refer to reference/protocols.md.

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use rampart_conf::{AddressFamily, Carp, Config};
use rampart_dataplane::iface::InterfaceTable;
use rampart_dataplane::wire::carp::{self, Destination};
use rampart_dataplane::wire::parse::{parse_frame, Fragment};

use super::demotion::{Demotion, DemotionReason, LINK_DOWN_DEMOTION, PFSYNC_BULK_DEMOTION};
use super::hmac::{CarpAuthenticator, COUNTER_LEN, KEY_LEN, MD_LEN};
use super::packet::{self, AdvertFields, BOW_OUT};

const MICROS_PER_SECOND: u64 = 1_000_000;

/// The shortest interval OpenBSD uses (advbase = advskew = 0): 1/256 s, truncated to µs.
const MIN_INTERVAL_US: u64 = MICROS_PER_SECOND / 256;

/// How many advertisements after a takeover the announcement is repeated (OpenBSD's
/// `sc_delayed_arp = 2`, "to deal with some L3 switches": §2.5).
const DELAYED_ANNOUNCEMENT_ADVERTS: u8 = 2;

/// The shortest time between two warnings of one kind for one group (§5.3).
pub const WARNING_INTERVAL: Duration = Duration::from_secs(10);

/// `advbase` s + `advskew`/256 s as OpenBSD's `timeval` holds it, in µs (the 1/256 s part is
/// truncated to whole µs, as the kernel's `advskew * 1000000 / 256`). Comparisons in the
/// reception rules use this, so it is not clamped.
fn timeval_us(seconds: u64, advskew: u8) -> u64 {
    seconds * MICROS_PER_SECOND + u64::from(advskew) * MICROS_PER_SECOND / 256
}

/// Consecutive advertisement send failures that demote the node, and the successes after
/// them that release it (OpenBSD's `CARP_SENDAD_MAX_ERRORS` / `CARP_SENDAD_MIN_SUCCESS`:
/// 3 × the vhosts of the carp interface, one per group here).
const SENDAD_MAX_ERRORS: u32 = 3;
const SENDAD_MIN_SUCCESS: u32 = 3;

/// The advertisement interval (§2.2): advbase + advskew/256 s, and 1/256 s if both are 0.
pub fn advert_interval(advbase: u8, advskew: u8) -> Duration {
    Duration::from_micros(timeval_us(u64::from(advbase), advskew).max(MIN_INTERVAL_US))
}

/// How long a BACKUP waits for the master (§2.2): 3 × [`advert_interval`].
pub fn master_down_interval(advbase: u8, advskew: u8) -> Duration {
    3 * advert_interval(advbase, advskew)
}

/// A CARP group: its index in `config.carp`, the same numbering as the dataplane's
/// [`VipTable`](rampart_dataplane::vip::VipTable).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupId(pub u16);

impl GroupId {
    /// The index as a `usize`.
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "carp group {}", self.0)
    }
}

/// A group's CARP state (§2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Not running: link down, shut down, or not started yet. Ignores advertisements.
    Init,
    /// Listening for the master; takes over when it falls silent or is less preferred.
    Backup,
    /// Owns the VIPs and advertises every interval.
    Master,
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            State::Init => "INIT",
            State::Backup => "BACKUP",
            State::Master => "MASTER",
        })
    }
}

/// Why a group changed state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransitionReason {
    /// The group was created and has not run yet.
    Configured,
    /// INIT → BACKUP: the group runs (§2.2: a node never starts as MASTER).
    Started,
    /// BACKUP → MASTER: no advertisement on `family` for 3 intervals.
    MasterDown { family: AddressFamily },
    /// BACKUP → MASTER: `preempt` and the master advertises less often (§2.3 rule 1).
    Preempted { from: IpAddr },
    /// BACKUP → MASTER: the master advertises a higher demotion than ours (§2.3 rule 2).
    MasterDemoted { from: IpAddr, demote: u8 },
    /// BACKUP → MASTER: the master's interval exceeds 3 × our advbase, as in a bow-out
    /// (§2.3 rule 3).
    MasterTooSlow { from: IpAddr },
    /// MASTER → BACKUP: a master at least as preferred advertises (§2.3).
    PreferredMasterHeard { from: IpAddr },
    /// → INIT: the interface's link went down (and the node is demoted by 1).
    LinkDown,
    /// INIT → BACKUP: the interface's link came back.
    LinkUp,
    /// → INIT: shut down or disabled (a MASTER bows out first, §2.5).
    Shutdown,
}

impl fmt::Display for TransitionReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransitionReason::Configured => f.write_str("configured"),
            TransitionReason::Started => f.write_str("started"),
            TransitionReason::MasterDown { family } => {
                let family = match family {
                    AddressFamily::Inet => "IPv4",
                    AddressFamily::Inet6 => "IPv6",
                };
                write!(f, "master down (no {family} advertisement for 3 intervals)")
            }
            TransitionReason::Preempted { from } => write!(f, "preempting slower master {from}"),
            TransitionReason::MasterDemoted { from, demote } => {
                write!(f, "master {from} is demoted ({demote})")
            }
            TransitionReason::MasterTooSlow { from } => {
                write!(f, "master {from} advertises too slowly (bow-out)")
            }
            TransitionReason::PreferredMasterHeard { from } => {
                write!(f, "more preferred master {from}")
            }
            TransitionReason::LinkDown => f.write_str("link down"),
            TransitionReason::LinkUp => f.write_str("link up"),
            TransitionReason::Shutdown => f.write_str("shut down"),
        }
    }
}

/// Why the VIPs are announced (gratuitous ARP / unsolicited NA).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AnnounceReason {
    /// The group just became MASTER.
    BecameMaster,
    /// The repeat two advertisement intervals after a takeover (§2.5).
    DelayedRepeat,
    /// While MASTER, a less preferred master was heard: a healed split brain whose hosts may
    /// still point at the other node (§5.15).
    LowerPriorityMaster { from: IpAddr },
}

/// Something the operator should hear about, already rate-limited to one per
/// [`WARNING_INTERVAL`] per kind and group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Warning {
    /// An advertisement for this group's vhid failed the HMAC: a different passphrase or VIP
    /// set on the peer, or a VRRP router or another CARP cluster using the vhid (§5.3, §5.4).
    BadHmac { from: IpAddr, suppressed: u64 },
    /// Our own advertisement came back (a reflecting switch or hypervisor, §5.2). It is
    /// dropped and never steps the group down.
    LoopDetected { from: IpAddr, suppressed: u64 },
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::BadHmac { from, suppressed } => write!(
                f,
                "advertisement from {from} failed authentication: check vhid, passphrase and \
                 virtual addresses on both nodes ({suppressed} more since the last warning)"
            ),
            Warning::LoopDetected { from, suppressed } => write!(
                f,
                "own advertisement looped back (source {from}): a switch or hypervisor \
                 reflects multicast ({suppressed} more since the last warning)"
            ),
        }
    }
}

/// What the caller must do. See the [module documentation](super) for how to wire each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Transmit `frame` (a complete Ethernet frame) on `iface`.
    SendAdvert {
        group: GroupId,
        iface: u16,
        family: AddressFamily,
        frame: Vec<u8>,
        /// `Some(peer)` for a unicast advertisement (OpenBSD's `carppeer`): the frame's
        /// destination MAC (bytes 0..6) is zero and the caller writes the peer's MAC there.
        unicast_peer: Option<Ipv4Addr>,
        /// A bow-out advertisement (advbase = advskew = 255).
        bow_out: bool,
    },
    /// Transmit these gratuitous ARPs / unsolicited NAs on `iface`.
    SendGratuitous {
        group: GroupId,
        iface: u16,
        frames: Vec<Vec<u8>>,
        reason: AnnounceReason,
    },
    /// The group is MASTER: claim its VIPs and virtual MAC (`VipTable::set_master(id, true)`)
    /// *before* sending the advertisement and announcements that follow.
    BecomeMaster {
        group: GroupId,
        reason: TransitionReason,
    },
    /// The group is BACKUP: stop answering for its VIPs.
    BecomeBackup {
        group: GroupId,
        reason: TransitionReason,
    },
    /// The group is INIT (link down, shut down): stop answering for its VIPs.
    BecomeInit {
        group: GroupId,
        reason: TransitionReason,
    },
    /// Log this.
    Warn { group: GroupId, warning: Warning },
}

/// One group's settings, as the engine takes them (see [`GroupConfig::from_carp`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupConfig {
    pub vhid: u8,
    /// The interface index (position in `config.interfaces`) and its name (for display).
    pub iface: u16,
    pub iface_name: String,
    /// The VIPs; both nodes must list the same set (the HMAC covers it, §1.4).
    pub addresses: Vec<IpAddr>,
    /// Seconds, 0..=254 (0 gives sub-second intervals, as OpenBSD allows).
    pub advbase: u8,
    /// 1/256 s, 0..=254.
    pub advskew: u8,
    pub key: [u8; KEY_LEN],
    pub preempt: bool,
    /// A unicast IPv4 peer instead of 224.0.0.18.
    pub peer: Option<Ipv4Addr>,
    /// Source of IPv4 advertisements: the interface's first IPv4 address. `None` falls back to
    /// the first IPv4 VIP, as OpenBSD falls back to an address of the carp interface.
    pub source_v4: Option<Ipv4Addr>,
    /// Source of IPv6 advertisements and NAs: the interface's link-local address. `None` falls
    /// back to the first IPv6 VIP.
    pub source_v6: Option<Ipv6Addr>,
    /// OpenBSD's per-vhid random "replay counter", drawn once (§1.6). It marks our own
    /// advertisements, so it must differ from the peer's: draw it from a good random source.
    pub replay_cookie: u64,
}

impl GroupConfig {
    /// Settings from a validated `[[carp]]`, on interface index `iface`.
    pub fn from_carp(
        carp: &Carp,
        iface: u16,
        source_v4: Option<Ipv4Addr>,
        source_v6: Option<Ipv6Addr>,
        replay_cookie: u64,
    ) -> Result<GroupConfig, ConfigError> {
        let peer = match carp.peer {
            None => None,
            Some(IpAddr::V4(peer)) => Some(peer),
            Some(IpAddr::V6(_)) => return Err(ConfigError::PeerNotIpv4 { vhid: carp.vhid }),
        };
        Ok(GroupConfig {
            vhid: carp.vhid,
            iface,
            iface_name: carp.interface.clone(),
            addresses: carp.addresses.clone(),
            advbase: carp.advbase,
            advskew: carp.advskew,
            key: carp.key,
            preempt: carp.preempt,
            peer,
            source_v4,
            source_v6,
            replay_cookie,
        })
    }
}

/// Settings the engine refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// vhid 0 never runs in OpenBSD.
    ZeroVhid { group: usize },
    /// A group without VIPs never runs in OpenBSD.
    NoAddresses { vhid: u8 },
    /// 255 is reserved for the bow-out advertisement.
    BowOutTiming { vhid: u8 },
    /// Two groups with one vhid on one interface.
    DuplicateVhid { iface: u16, vhid: u8 },
    /// OpenBSD's `carppeer` is IPv4 only.
    PeerNotIpv4 { vhid: u8 },
    /// The group names an interface the interface table does not have.
    UnknownInterface { vhid: u8, name: String },
    /// More groups than a `u16` index can name.
    TooManyGroups,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::ZeroVhid { group } => write!(f, "CARP group {group} has vhid 0"),
            ConfigError::NoAddresses { vhid } => write!(f, "CARP vhid {vhid} has no address"),
            ConfigError::BowOutTiming { vhid } => write!(
                f,
                "CARP vhid {vhid}: advbase and advskew must be at most 254 (255 is the bow-out)"
            ),
            ConfigError::DuplicateVhid { iface, vhid } => {
                write!(f, "CARP vhid {vhid} appears twice on interface {iface}")
            }
            ConfigError::PeerNotIpv4 { vhid } => {
                write!(f, "CARP vhid {vhid}: the peer must be an IPv4 address")
            }
            ConfigError::UnknownInterface { vhid, name } => {
                write!(f, "CARP vhid {vhid}: unknown interface {name}")
            }
            ConfigError::TooManyGroups => f.write_str("too many CARP groups"),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Receive and send counters (OpenBSD's `carpstats`, by reason, in check order: §1.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CarpCounters {
    /// Every advertisement handed to the engine.
    pub received: u64,
    /// [`CarpEngine::handle_frame`] got a frame that is not an unfragmented IP packet of
    /// protocol 112.
    pub malformed: u64,
    /// On an interface without CARP groups, to a destination CARP does not use, or with
    /// source and destination of different families (OpenBSD `badif`).
    pub bad_interface: u64,
    /// TTL / hop limit not 255 (`badttl`).
    pub bad_ttl: u64,
    /// Fewer than 36 bytes of CARP header (`badlen`).
    pub short: u64,
    /// Header checksum wrong (`badsum`).
    pub bad_checksum: u64,
    /// No running group with this vhid and addressing on the interface (`badvhid`).
    pub unknown_vhid: u64,
    /// Version not 2 (`badver`).
    pub bad_version: u64,
    /// HMAC wrong in both contexts (`badauth`).
    pub bad_hmac: u64,
    /// Our own advertisement, recognised by its cookie.
    pub own_loop: u64,
    /// Passed every check and reached the state machine.
    pub accepted: u64,
    /// Advertisement frames sent (`opackets` + `opackets6`).
    pub sent: u64,
}

/// Per-group counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupCounters {
    pub bad_version: u64,
    pub bad_hmac: u64,
    pub own_loop: u64,
    pub accepted: u64,
    /// Advertisement frames sent.
    pub sent: u64,
    /// BACKUP → MASTER transitions (`carps_preempt`).
    pub became_master: u64,
}

/// The last advertisement a group accepted (§5.1: show what was heard, and when).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeardAdvert {
    pub at: Duration,
    pub from: IpAddr,
    pub advbase: u8,
    pub advskew: u8,
    pub demote: u8,
    /// The sender's counter (its cookie, for an OpenBSD or rampart sender).
    pub counter: u64,
}

/// What a group is doing, for `rampart ctl` and the logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupStatus {
    pub vhid: u8,
    pub iface: u16,
    pub iface_name: String,
    pub state: State,
    /// When the group last changed state (`None`: never).
    pub since: Option<Duration>,
    /// Why it did.
    pub reason: TransitionReason,
    pub last_heard: Option<HeardAdvert>,
    pub counters: GroupCounters,
}

/// One warning kind's rate limit.
#[derive(Debug, Clone, Copy, Default)]
struct RateLimit {
    last: Option<Duration>,
    suppressed: u64,
}

impl RateLimit {
    /// `Some(suppressed since the last one)` if a warning may go out now.
    fn allow(&mut self, now: Duration) -> Option<u64> {
        if self.last.is_some_and(|last| now < last + WARNING_INTERVAL) {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// One vhid's state and timers (OpenBSD's `carp_vhost_entry` with its `carp_softc` settings).
#[derive(Debug)]
struct Group {
    id: GroupId,
    vhid: u8,
    iface: u16,
    addresses: Vec<IpAddr>,
    advbase: u8,
    advskew: u8,
    preempt: bool,
    peer: Option<Ipv4Addr>,
    /// IPv4 advertisement source, when the group has IPv4 VIPs.
    source_v4: Option<Ipv4Addr>,
    /// IPv6 advertisement and NA source, when the group has IPv6 VIPs.
    source_v6: Option<Ipv6Addr>,
    cookie: [u8; COUNTER_LEN],
    auth: CarpAuthenticator,
    /// The digest of every advertisement we send: it covers only constant inputs.
    md: [u8; MD_LEN],
    /// Administratively up (not shut down).
    enabled: bool,
    state: State,
    /// MASTER: when the next advertisement is due.
    advert_due: Option<Duration>,
    /// BACKUP: when the master is declared down, per family (OpenBSD's `md_tmo`, `md6_tmo`).
    master_down_v4: Option<Duration>,
    master_down_v6: Option<Duration>,
    /// Advertisements left before the announcement is repeated.
    delayed_announcement: Option<u8>,
    last_reannounce: Option<Duration>,
    /// xorshift state for the IPv4 identification ("random IP id").
    ident_state: u64,
    hmac_warnings: RateLimit,
    loop_warnings: RateLimit,
    /// Consecutive advertisements that failed to leave (OpenBSD's `sc_sendad_errors`), and
    /// the successes counted since the demotion they caused (`sc_sendad_success`).
    send_errors: u32,
    send_successes: u32,
    status: GroupStatus,
}

impl Group {
    fn new(id: GroupId, config: GroupConfig) -> Group {
        let first_v4 = config.addresses.iter().find_map(|a| match a {
            IpAddr::V4(a) => Some(*a),
            IpAddr::V6(_) => None,
        });
        let first_v6 = config.addresses.iter().find_map(|a| match a {
            IpAddr::V6(a) => Some(*a),
            IpAddr::V4(_) => None,
        });
        let auth = CarpAuthenticator::new(&config.key, config.vhid, &config.addresses);
        let cookie = config.replay_cookie.to_be_bytes();
        let md = auth.sign(&cookie);
        Group {
            id,
            vhid: config.vhid,
            iface: config.iface,
            advbase: config.advbase,
            advskew: config.advskew,
            preempt: config.preempt,
            peer: config.peer,
            source_v4: first_v4.map(|vip| config.source_v4.unwrap_or(vip)),
            source_v6: first_v6.map(|vip| config.source_v6.unwrap_or(vip)),
            cookie,
            auth,
            md,
            enabled: true,
            state: State::Init,
            advert_due: None,
            master_down_v4: None,
            master_down_v6: None,
            delayed_announcement: None,
            last_reannounce: None,
            // Any odd constant keeps a zero cookie from giving a zero (stuck) xorshift state.
            ident_state: config.replay_cookie ^ 0x9e37_79b9_7f4a_7c15,
            hmac_warnings: RateLimit::default(),
            loop_warnings: RateLimit::default(),
            send_errors: 0,
            send_successes: 0,
            status: GroupStatus {
                vhid: config.vhid,
                iface: config.iface,
                iface_name: config.iface_name,
                state: State::Init,
                since: None,
                reason: TransitionReason::Configured,
                last_heard: None,
                counters: GroupCounters::default(),
            },
            addresses: config.addresses,
        }
    }

    fn interval(&self) -> Duration {
        advert_interval(self.advbase, self.advskew)
    }

    fn master_down_interval(&self) -> Duration {
        master_down_interval(self.advbase, self.advskew)
    }

    /// The earliest timer, or `Duration::ZERO` ("now") for a group ready to start.
    fn next_deadline(&self, link_up: bool) -> Option<Duration> {
        match self.state {
            State::Init if self.enabled && link_up => Some(Duration::ZERO),
            State::Init => None,
            State::Backup => match (self.master_down_v4, self.master_down_v6) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
            State::Master => self.advert_due,
        }
    }

    fn transition(&mut self, now: Duration, state: State, reason: TransitionReason) {
        self.state = state;
        self.status.state = state;
        self.status.since = Some(now);
        self.status.reason = reason;
    }

    /// OpenBSD `carp_setrun` in BACKUP with `af` = 0: stop advertising, arm both master-down
    /// timers (for the families the group has).
    fn enter_backup(&mut self, now: Duration, reason: TransitionReason, out: &mut Vec<Action>) {
        let deadline = now + self.master_down_interval();
        self.advert_due = None;
        self.delayed_announcement = None;
        self.master_down_v4 = self.source_v4.map(|_| deadline);
        self.master_down_v6 = self.source_v6.map(|_| deadline);
        self.transition(now, State::Backup, reason);
        out.push(Action::BecomeBackup {
            group: self.id,
            reason,
        });
    }

    /// OpenBSD `carp_master_down` (§2.5): MASTER, one advertisement at once, the announcement,
    /// and its repeat after two more advertisements.
    fn enter_master(
        &mut self,
        now: Duration,
        reason: TransitionReason,
        demote: u8,
        out: &mut Vec<Action>,
    ) {
        self.master_down_v4 = None;
        self.master_down_v6 = None;
        self.delayed_announcement = None;
        self.transition(now, State::Master, reason);
        self.status.counters.became_master += 1;
        out.push(Action::BecomeMaster {
            group: self.id,
            reason,
        });
        self.send_advert(now, demote, false, out);
        self.announce(AnnounceReason::BecameMaster, out);
        self.delayed_announcement = Some(DELAYED_ANNOUNCEMENT_ADVERTS);
    }

    fn enter_init(&mut self, now: Duration, reason: TransitionReason, out: &mut Vec<Action>) {
        self.advert_due = None;
        self.master_down_v4 = None;
        self.master_down_v6 = None;
        self.delayed_announcement = None;
        if self.state != State::Init {
            self.transition(now, State::Init, reason);
            out.push(Action::BecomeInit {
                group: self.id,
                reason,
            });
        }
    }

    /// The IPv4 identification of the next advertisement (OpenBSD: `ip_randomid()`).
    fn next_ident(&mut self) -> u16 {
        let mut x = self.ident_state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.ident_state = x;
        (x >> 48) as u16
    }

    /// OpenBSD `carp_send_ad`: one advertisement per family the group has, then (unless it is
    /// the bow-out) the timer re-armed for one interval and the delayed announcement counted.
    fn send_advert(&mut self, now: Duration, demote: u8, bow_out: bool, out: &mut Vec<Action>) {
        let (advbase, advskew) = if bow_out {
            (BOW_OUT, BOW_OUT)
        } else {
            (self.advbase, self.advskew)
        };
        let fields = AdvertFields {
            vhid: self.vhid,
            advbase,
            advskew,
            demote,
            counter: self.cookie,
            md: self.md,
        };
        if let Some(src) = self.source_v4 {
            let dst = IpAddr::V4(self.peer.unwrap_or(carp::GROUP_V4));
            let ident = self.next_ident();
            let frame =
                packet::advert_frame(&fields, src.into(), dst, packet::advert_dst_mac(dst), ident);
            self.status.counters.sent += 1;
            out.push(Action::SendAdvert {
                group: self.id,
                iface: self.iface,
                family: AddressFamily::Inet,
                frame,
                unicast_peer: self.peer,
                bow_out,
            });
        }
        if let Some(src) = self.source_v6 {
            let dst = IpAddr::V6(carp::GROUP_V6);
            let frame =
                packet::advert_frame(&fields, src.into(), dst, packet::advert_dst_mac(dst), 0);
            self.status.counters.sent += 1;
            out.push(Action::SendAdvert {
                group: self.id,
                iface: self.iface,
                family: AddressFamily::Inet6,
                frame,
                unicast_peer: None,
                bow_out,
            });
        }
        if bow_out {
            return;
        }
        self.advert_due = Some(now + self.interval());
        match self.delayed_announcement {
            Some(left) if left <= 1 => {
                self.delayed_announcement = None;
                self.announce(AnnounceReason::DelayedRepeat, out);
            }
            Some(left) => self.delayed_announcement = Some(left - 1),
            None => {}
        }
    }

    fn announce(&self, reason: AnnounceReason, out: &mut Vec<Action>) {
        let na_source = self.source_v6.unwrap_or(Ipv6Addr::UNSPECIFIED);
        out.push(Action::SendGratuitous {
            group: self.id,
            iface: self.iface,
            frames: packet::announcement_frames(self.vhid, &self.addresses, na_source),
            reason,
        });
    }

    /// §2.3 and §5.15: an authenticated advertisement from another node, arrived over `family`.
    fn on_advert(
        &mut self,
        now: Duration,
        family: AddressFamily,
        from: IpAddr,
        them: &carp::Header<&[u8]>,
        demote_us: u8,
        out: &mut Vec<Action>,
    ) {
        let t_us = timeval_us(u64::from(self.advbase), self.advskew);
        let t_them = timeval_us(u64::from(them.advbase()), them.advskew());
        let d_them = them.demote();
        match self.state {
            State::Init => {}
            State::Master => {
                let yields = (t_us >= t_them && d_them <= demote_us) || d_them < demote_us;
                // OpenBSD has no tie-break: on an exact tie the master that hears the other
                // yields, and two masters that hear each other both yield and race again. We
                // keep the more random cookie instead (the counter is HMAC-covered); an
                // OpenBSD peer still yields to us, so the pair converges either way.
                let exact_tie = t_us == t_them && d_them == demote_us;
                let keep_on_tie = exact_tie && u64::from_be_bytes(self.cookie) > them.counter();
                if yields && !keep_on_tie {
                    self.enter_backup(now, TransitionReason::PreferredMasterHeard { from }, out);
                } else if self
                    .last_reannounce
                    .is_none_or(|last| now >= last + self.interval())
                {
                    // A less preferred master: a split brain is healing. Advertise now so it
                    // yields at once, and re-announce the VIPs (§5.15).
                    self.last_reannounce = Some(now);
                    self.send_advert(now, demote_us, false, out);
                    self.announce(AnnounceReason::LowerPriorityMaster { from }, out);
                }
            }
            State::Backup => {
                let reason = if self.preempt && t_us < t_them && d_them >= demote_us {
                    Some(TransitionReason::Preempted { from })
                } else if d_them > demote_us {
                    Some(TransitionReason::MasterDemoted {
                        from,
                        demote: d_them,
                    })
                } else if self.advbase != 0
                    // OpenBSD overwrites only tv_sec with 3 × advbase and keeps our skew.
                    && timeval_us(3 * u64::from(self.advbase), self.advskew) < t_them
                {
                    Some(TransitionReason::MasterTooSlow { from })
                } else {
                    None
                };
                match reason {
                    Some(reason) => self.enter_master(now, reason, demote_us, out),
                    None => {
                        // Re-arm the master-down timer of the family this came on (a family the
                        // group does not advertise in has no timer to re-arm).
                        let deadline = Some(now + self.master_down_interval());
                        match family {
                            AddressFamily::Inet if self.source_v4.is_some() => {
                                self.master_down_v4 = deadline;
                            }
                            AddressFamily::Inet6 if self.source_v6.is_some() => {
                                self.master_down_v6 = deadline;
                            }
                            _ => {}
                        }
                    }
                }
            }
        }
    }
}

/// Every CARP group of the node and the node-wide demotion. See the [module
/// documentation](super).
#[derive(Debug)]
pub struct CarpEngine {
    groups: Vec<Group>,
    /// Interfaces whose link is down (all are up until told otherwise).
    links_down: BTreeSet<u16>,
    demotion: Demotion,
    counters: CarpCounters,
}

impl CarpEngine {
    /// An engine for `groups`, numbered in order ([`GroupId`] `i` is `groups[i]`). Every group
    /// starts in INIT and every link is taken as up: the first [`poll`](Self::poll) (or any
    /// other input) moves the groups to BACKUP.
    pub fn new(groups: Vec<GroupConfig>) -> Result<CarpEngine, ConfigError> {
        if groups.len() > usize::from(u16::MAX) {
            return Err(ConfigError::TooManyGroups);
        }
        let mut seen = BTreeSet::new();
        for (index, group) in groups.iter().enumerate() {
            if group.vhid == 0 {
                return Err(ConfigError::ZeroVhid { group: index });
            }
            if group.addresses.is_empty() {
                return Err(ConfigError::NoAddresses { vhid: group.vhid });
            }
            if group.advbase == BOW_OUT || group.advskew == BOW_OUT {
                return Err(ConfigError::BowOutTiming { vhid: group.vhid });
            }
            if !seen.insert((group.iface, group.vhid)) {
                return Err(ConfigError::DuplicateVhid {
                    iface: group.iface,
                    vhid: group.vhid,
                });
            }
        }
        Ok(CarpEngine {
            groups: groups
                .into_iter()
                .enumerate()
                .map(|(index, config)| Group::new(GroupId(index as u16), config))
                .collect(),
            links_down: BTreeSet::new(),
            demotion: Demotion::default(),
            counters: CarpCounters::default(),
        })
    }

    /// The engine for `config.carp`: IPv4 adverts from each interface's first IPv4 address,
    /// IPv6 adverts and NAs from its link-local address, one cookie per group from
    /// `replay_cookie` (give it a random source).
    pub fn from_config(
        config: &Config,
        interfaces: &InterfaceTable,
        mut replay_cookie: impl FnMut() -> u64,
    ) -> Result<CarpEngine, ConfigError> {
        let groups = config
            .carp
            .iter()
            .map(|carp| {
                let unknown = || ConfigError::UnknownInterface {
                    vhid: carp.vhid,
                    name: carp.interface.clone(),
                };
                let iface = interfaces.index_of(&carp.interface).ok_or_else(unknown)?;
                let info = interfaces.get(iface).ok_or_else(unknown)?;
                let source_v4 = match interfaces.addr_on(iface, AddressFamily::Inet) {
                    Some(IpAddr::V4(a)) => Some(a),
                    _ => None,
                };
                let source_v6 = Some(info.ipv6_link_local());
                GroupConfig::from_carp(carp, iface, source_v4, source_v6, replay_cookie())
            })
            .collect::<Result<Vec<_>, _>>()?;
        CarpEngine::new(groups)
    }

    /// An advertisement received on `iface`: `carp` is the IP payload (the CARP header and
    /// anything after it), `ttl` the TTL or hop limit. Runs OpenBSD's receive checks in order
    /// (§1.1), counting each rejection, then the reception rules (§2.3).
    pub fn handle_advert(
        &mut self,
        iface: u16,
        src: IpAddr,
        dst: IpAddr,
        ttl: u8,
        carp: &[u8],
        now: Duration,
    ) -> Vec<Action> {
        let mut out = Vec::new();
        self.start_ready(now, TransitionReason::Started, &mut out);
        self.receive(iface, src, dst, ttl, carp, now, &mut out);
        self.finish(out)
    }

    /// A whole Ethernet frame received on `iface` (what a worker hands over as
    /// `ToControl::Frame`): parsed, then given to [`handle_advert`](Self::handle_advert).
    /// Anything but an unfragmented IPv4/IPv6 packet of protocol 112 counts as `malformed`.
    pub fn handle_frame(&mut self, iface: u16, frame: &[u8], now: Duration) -> Vec<Action> {
        match parse_frame(frame) {
            Ok(parsed)
                if parsed.ip_version().is_some()
                    && parsed.protocol == carp::PROTOCOL
                    && parsed.fragment == Fragment::Whole =>
            {
                let payload = parsed.l4_bytes(frame);
                self.handle_advert(iface, parsed.src, parsed.dst, parsed.ttl, payload, now)
            }
            _ => {
                let mut out = Vec::new();
                self.start_ready(now, TransitionReason::Started, &mut out);
                self.counters.received += 1;
                self.counters.malformed += 1;
                self.finish(out)
            }
        }
    }

    /// Runs the timers due at `now`: starts groups, declares silent masters down, sends the
    /// periodic advertisements. Call it at [`next_timeout`](Self::next_timeout) (or sooner).
    pub fn poll(&mut self, now: Duration) -> Vec<Action> {
        let mut out = Vec::new();
        self.start_ready(now, TransitionReason::Started, &mut out);
        let demote = self.demotion.advertised();
        for group in &mut self.groups {
            match group.state {
                State::Init => {}
                State::Backup => {
                    let fired = [
                        (AddressFamily::Inet, group.master_down_v4),
                        (AddressFamily::Inet6, group.master_down_v6),
                    ]
                    .into_iter()
                    .find(|(_, deadline)| deadline.is_some_and(|d| d <= now));
                    if let Some((family, _)) = fired {
                        group.enter_master(
                            now,
                            TransitionReason::MasterDown { family },
                            demote,
                            &mut out,
                        );
                    }
                }
                State::Master => {
                    if group.advert_due.is_some_and(|due| due <= now) {
                        group.send_advert(now, demote, false, &mut out);
                    }
                }
            }
        }
        self.finish(out)
    }

    /// When [`poll`](Self::poll) next has work: the earliest timer of any group, on the
    /// caller's clock; `Duration::ZERO` if a group is ready to start; `None` if nothing runs.
    pub fn next_timeout(&self) -> Option<Duration> {
        self.groups
            .iter()
            .filter_map(|g| g.next_deadline(self.link_up(g.iface)))
            .min()
    }

    /// The link of `iface` went up or down (OpenBSD `carp_carpdev_state`). Down: its groups go
    /// to INIT and the node is demoted by 1 while it stays down, so MASTERs elsewhere
    /// advertise the demotion at once and every VIP fails over together. Up: the demotion is
    /// released and the groups restart in BACKUP. Repeating the current state does nothing.
    /// Interfaces without CARP groups do not demote (as in OpenBSD).
    pub fn link_state(&mut self, iface: u16, up: bool, now: Duration) -> Vec<Action> {
        let mut out = Vec::new();
        let carries_carp = self.groups.iter().any(|g| g.iface == iface);
        if up == self.link_up(iface) {
            self.start_ready(now, TransitionReason::Started, &mut out);
            return self.finish(out);
        }
        if up {
            self.links_down.remove(&iface);
            self.change_demotion(now, &mut out, |d| {
                d.set(DemotionReason::LinkDown(iface), 0);
            });
            for group in self.groups.iter_mut().filter(|g| g.iface == iface) {
                if group.state == State::Init && group.enabled {
                    group.enter_backup(now, TransitionReason::LinkUp, &mut out);
                }
            }
            self.start_ready(now, TransitionReason::Started, &mut out);
        } else {
            self.links_down.insert(iface);
            for group in self.groups.iter_mut().filter(|g| g.iface == iface) {
                group.enter_init(now, TransitionReason::LinkDown, &mut out);
            }
            self.start_ready(now, TransitionReason::Started, &mut out);
            if carries_carp {
                self.change_demotion(now, &mut out, |d| {
                    d.set(DemotionReason::LinkDown(iface), LINK_DOWN_DEMOTION);
                });
            }
        }
        self.finish(out)
    }

    /// Shuts every group down (OpenBSD `ifconfig carpN down`, as `/etc/rc shutdown` does): each
    /// MASTER sends one bow-out advertisement (advbase = advskew = 255) so its peer takes over
    /// at once, then every group goes to INIT and stays there.
    pub fn shutdown(&mut self, now: Duration) -> Vec<Action> {
        let mut out = Vec::new();
        for index in 0..self.groups.len() {
            self.disable(index, now, &mut out);
        }
        self.finish(out)
    }

    /// Shuts one group down (with a bow-out if MASTER) or brings it back (INIT → BACKUP).
    /// An unknown group does nothing.
    pub fn set_group_enabled(
        &mut self,
        group: GroupId,
        enabled: bool,
        now: Duration,
    ) -> Vec<Action> {
        let mut out = Vec::new();
        if group.index() < self.groups.len() {
            if enabled {
                self.groups[group.index()].enabled = true;
                self.start_ready(now, TransitionReason::Started, &mut out);
            } else {
                self.disable(group.index(), now, &mut out);
            }
        }
        self.finish(out)
    }

    /// Moves the demotion booked under `reason` by `delta` (flooring at 0), as OpenBSD's
    /// `carp_group_demote_adj`. Release exactly what you added, or use
    /// [`set_demotion`](Self::set_demotion).
    pub fn demote(&mut self, reason: DemotionReason, delta: i64, now: Duration) -> Vec<Action> {
        let mut out = Vec::new();
        self.change_demotion(now, &mut out, |d| d.adjust(reason, delta));
        self.finish(out)
    }

    /// Books exactly `value` under `reason` (idempotent; 0 releases). When the advertised
    /// demotion changes, every MASTER advertises at once (§2.4, §5.8).
    pub fn set_demotion(
        &mut self,
        reason: DemotionReason,
        value: u32,
        now: Duration,
    ) -> Vec<Action> {
        let mut out = Vec::new();
        self.change_demotion(now, &mut out, |d| d.set(reason, value));
        self.finish(out)
    }

    /// Releases everything booked under `reason`.
    pub fn release(&mut self, reason: DemotionReason, now: Duration) -> Vec<Action> {
        self.set_demotion(reason, 0, now)
    }

    /// The operator's demotion (`ifconfig -g carp carpdemote n`): the preferred way to move
    /// MASTER away for maintenance (§5.8). 0 releases it.
    pub fn set_operator_demotion(&mut self, demotion: u32, now: Duration) -> Vec<Action> {
        self.set_demotion(DemotionReason::Operator, demotion, now)
    }

    /// pfsync started or finished (ended, failed, timed out) its bulk update: +32 while it
    /// runs. Idempotent, so a restarted bulk cannot stack demotions (§5.5).
    pub fn set_pfsync_bulk_in_progress(&mut self, in_progress: bool, now: Duration) -> Vec<Action> {
        let value = if in_progress { PFSYNC_BULK_DEMOTION } else { 0 };
        self.set_demotion(DemotionReason::PfsyncBulk, value, now)
    }

    /// Whether an advertisement of the group with `vhid` on `iface` left (the caller's
    /// transmit succeeded). As OpenBSD's carp_send_ad: 3 failures in a row (3 × the vhosts
    /// of a carp interface; one here) demote the node by 1, and as many successes after
    /// that release it, so a node whose adverts cannot leave stops being preferred.
    pub fn advert_sent(&mut self, iface: u16, vhid: u8, ok: bool, now: Duration) -> Vec<Action> {
        let Some(id) = self.group_id(iface, vhid) else {
            return Vec::new();
        };
        let group = &mut self.groups[id.index()];
        let mut change = None;
        if !ok {
            group.send_errors = group.send_errors.saturating_add(1);
            group.send_successes = 0;
            if group.send_errors == SENDAD_MAX_ERRORS {
                change = Some(1);
            }
        } else if group.send_errors >= SENDAD_MAX_ERRORS {
            group.send_successes += 1;
            if group.send_successes >= SENDAD_MIN_SUCCESS {
                group.send_errors = 0;
                group.send_successes = 0;
                change = Some(0);
            }
        } else {
            group.send_errors = 0;
        }
        match change {
            Some(value) => self.set_demotion(DemotionReason::SendErrors(id.0), value, now),
            None => Vec::new(),
        }
    }

    /// The node's total demotion.
    pub fn demotion(&self) -> u32 {
        self.demotion.total()
    }

    /// What the advertisements carry: `min(demotion, 255)`.
    pub fn advertised_demotion(&self) -> u8 {
        self.demotion.advertised()
    }

    /// The demotion ledger, by reason.
    pub fn demotion_reasons(&self) -> impl Iterator<Item = (DemotionReason, u32)> + '_ {
        self.demotion.iter()
    }

    /// The counters.
    pub fn counters(&self) -> &CarpCounters {
        &self.counters
    }

    /// The group with `vhid` on `iface`.
    pub fn group_id(&self, iface: u16, vhid: u8) -> Option<GroupId> {
        self.groups
            .iter()
            .find(|g| g.iface == iface && g.vhid == vhid)
            .map(|g| g.id)
    }

    /// One group's status.
    pub fn status(&self, group: GroupId) -> Option<&GroupStatus> {
        self.groups.get(group.index()).map(|g| &g.status)
    }

    /// One group's state.
    pub fn state(&self, group: GroupId) -> Option<State> {
        self.groups.get(group.index()).map(|g| g.state)
    }

    /// Every group's status, in order.
    pub fn statuses(&self) -> impl Iterator<Item = (GroupId, &GroupStatus)> + '_ {
        self.groups.iter().map(|g| (g.id, &g.status))
    }

    fn link_up(&self, iface: u16) -> bool {
        !self.links_down.contains(&iface)
    }

    /// OpenBSD `carp_setrun` in INIT: every enabled group whose link is up goes to BACKUP.
    fn start_ready(&mut self, now: Duration, reason: TransitionReason, out: &mut Vec<Action>) {
        for group in &mut self.groups {
            if group.state == State::Init
                && group.enabled
                && !self.links_down.contains(&group.iface)
            {
                group.enter_backup(now, reason, out);
            }
        }
    }

    fn disable(&mut self, index: usize, now: Duration, out: &mut Vec<Action>) {
        let demote = self.demotion.advertised();
        let group = &mut self.groups[index];
        if group.state == State::Master {
            group.send_advert(now, demote, true, out);
        }
        group.enabled = false;
        group.enter_init(now, TransitionReason::Shutdown, out);
    }

    /// Applies `change` to the ledger; if the advertised value moved, every MASTER
    /// advertises it at once.
    fn change_demotion(
        &mut self,
        now: Duration,
        out: &mut Vec<Action>,
        change: impl FnOnce(&mut Demotion),
    ) {
        let before = self.demotion.advertised();
        change(&mut self.demotion);
        let after = self.demotion.advertised();
        if before == after {
            return;
        }
        for group in &mut self.groups {
            if group.state == State::Master {
                group.send_advert(now, after, false, out);
            }
        }
    }

    /// The receive checks of §1.1, in OpenBSD's order.
    #[allow(clippy::too_many_arguments)]
    fn receive(
        &mut self,
        iface: u16,
        src: IpAddr,
        dst: IpAddr,
        ttl: u8,
        bytes: &[u8],
        now: Duration,
        out: &mut Vec<Action>,
    ) {
        let counters = &mut self.counters;
        counters.received += 1;

        // badif: an interface with CARP groups, a CARP destination, one family.
        let destination = (src.is_ipv4() == dst.is_ipv4())
            .then(|| carp::classify_destination(dst))
            .flatten();
        let Some(destination) =
            destination.filter(|_| self.groups.iter().any(|g| g.iface == iface))
        else {
            counters.bad_interface += 1;
            return;
        };
        if ttl != carp::TTL {
            counters.bad_ttl += 1;
            return;
        }
        let Ok(header) = carp::Header::new_checked(bytes) else {
            counters.short += 1;
            return;
        };
        if !header.verify_checksum() {
            counters.bad_checksum += 1;
            return;
        }

        // badvhid: the group with this vhid on this interface whose addressing matches (over
        // IPv4, multicast to a group without a peer, unicast to one with a peer), running.
        let family = AddressFamily::of(&dst);
        let multicast = destination == Destination::Group;
        let Some(group) = self.groups.iter_mut().find(|g| {
            g.iface == iface
                && g.vhid == header.vhid()
                && (family == AddressFamily::Inet6 || multicast == g.peer.is_none())
        }) else {
            counters.unknown_vhid += 1;
            return;
        };
        if group.state == State::Init {
            counters.unknown_vhid += 1;
            return;
        }

        if header.version() != carp::VERSION {
            counters.bad_version += 1;
            group.status.counters.bad_version += 1;
            return;
        }
        let counter = header.counter_bytes();
        if group.auth.verify(&counter, &header.md()).is_none() {
            counters.bad_hmac += 1;
            group.status.counters.bad_hmac += 1;
            if let Some(suppressed) = group.hmac_warnings.allow(now) {
                out.push(Action::Warn {
                    group: group.id,
                    warning: Warning::BadHmac {
                        from: src,
                        suppressed,
                    },
                });
            }
            return;
        }
        if counter == group.cookie {
            counters.own_loop += 1;
            group.status.counters.own_loop += 1;
            if let Some(suppressed) = group.loop_warnings.allow(now) {
                out.push(Action::Warn {
                    group: group.id,
                    warning: Warning::LoopDetected {
                        from: src,
                        suppressed,
                    },
                });
            }
            return;
        }

        counters.accepted += 1;
        group.status.counters.accepted += 1;
        group.status.last_heard = Some(HeardAdvert {
            at: now,
            from: src,
            advbase: header.advbase(),
            advskew: header.advskew(),
            demote: header.demote(),
            counter: header.counter(),
        });
        let demote_us = self.demotion.advertised();
        group.on_advert(now, family, src, &header, demote_us, out);
    }

    /// Counts the advertisement frames in `out`.
    fn finish(&mut self, out: Vec<Action>) -> Vec<Action> {
        self.counters.sent += out
            .iter()
            .filter(|a| matches!(a, Action::SendAdvert { .. }))
            .count() as u64;
        out
    }
}
