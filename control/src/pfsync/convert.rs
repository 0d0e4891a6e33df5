//! rampart's [`State`] ↔ pf's `pfsync_state` (protocols.md §3.4, §3.7, §4.3).
//!
//! # Mapping
//!
//! | `pfsync_state` | rampart |
//! |---|---|
//! | `key[WIRE]`, `key[STACK]` | the one [`StateKey`]: both keys are equal, rampart has no NAT. A message whose keys differ (NAT, rdomain, af-to on the peer) cannot be represented and is refused ([`ImportError::Translated`]) |
//! | key slot order | pf puts the packet's source in slot `sidx` (0 for `PF_IN`, 1 for `PF_OUT`, §4.3): the initiator sits in slot 0 of an inbound state and slot 1 of an outbound one. rampart's key is canonical and [`STATE_INITIATOR_IS_1`] says which endpoint initiated |
//! | `direction` | [`STATE_OUTBOUND`] → `PF_OUT`, else `PF_IN` |
//! | `src`, `dst` peers | `peers[0]` (initiator), `peers[1]` (responder): seqlo, seqhi, max_win, wscale, state. `seqdiff` and `mss` are 0; a message with `seqdiff` ≠ 0 (`modulate state`) is refused |
//! | `ifname` | `"all"`: rampart's states are floating (found on any interface); on import a name that is a local interface gives its index, anything else [`Conversion::default_iface`] |
//! | `creation`, `expire` | age and seconds left, from `created_s`, `last_ms` and the table's (adaptive) timeouts. Import follows `pf_state_import`: `last = now − (timeout − expire)`, and `expire` = 0 means "now" |
//! | `timeout` | [`Timeout`] (pf's numbering); `frag` … `tcp.tsdiff` (14–19) are refused |
//! | `packets`, `bytes` | kept both ways (OpenBSD itself does not import them) |
//! | `rule` | the rule number both ways when `anchor` is -1, else -1 (an HA pair shares one policy, so numbers agree; OpenBSD attaches imports to its default rule anyway) |
//! | `log` | [`STATE_LOG`] |
//! | `sync_flags` 0x40 / 0x80 | rampart's extension carrying [`COVER_IN`] / [`COVER_OUT`] (see below) |
//! | `rtableid` | `[-1, 0]` for `PF_IN`, `[0, -1]` for `PF_OUT`, what pf gives a state created in rdomain 0 (`rtableid[sidx] = -1`, `[didx] = rdomain`); ignored on import |
//! | rest | 0: no route-to, scrub, max-mss, min-ttl, set-tos, set-prio (pf applies the last three only with their state flags) |
//!
//! # Coverage
//!
//! One rampart state stands for pf's inbound *and* outbound states of a forwarded connection
//! (see `rampart_dataplane::state`). pf's message has room for one direction only, so the
//! coverage bits travel in two `sync_flags` bits OpenBSD ignores; a message without them
//! (from OpenBSD) covers the filter point its `direction` names.
//!
//! ICMP query states: pf keys them with the query id on the request's source side and the
//! "virtual type" (the request type: 8 for echo, 128 for ICMPv6 echo) on the other (§4.3,
//! `pf_icmp_mapping`); rampart's keys are built the same way
//! (`rampart_dataplane::state::key::icmp_ports`), so the ports go across as they are.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rampart_conf::proto;
use rampart_dataplane::state::tcp::{single, tcps, Peer};
use rampart_dataplane::state::{
    State, StateKey, Timeout, TimeoutTable, COVER_IN, COVER_OUT, STATE_IF_BOUND,
    STATE_INITIATOR_IS_1, STATE_LOG, STATE_OUTBOUND,
};

use super::wire::{
    sync_flags, IfName, KeyMsg, PeerMsg, StateMsg, AF_INET, AF_INET6, PFTM_MAX, PF_IN, PF_OUT,
    TCPS_PROXY_DST,
};

/// `rule` / `anchor` "none" (-1).
const NO_RULE: u32 = u32::MAX;

/// What a conversion needs besides the state: the clock and timeouts that `creation` and
/// `expire` are measured with, and the local interface names.
#[derive(Clone, Copy, Debug)]
pub struct Conversion<'a> {
    /// Now, on the clock of `State::last_ms` (ms) and `created_s` (s).
    pub now_ms: u64,
    /// The local table's timeouts.
    pub timeouts: &'a TimeoutTable,
    /// States in the local table now (the adaptive scaling of the exported `expire`).
    pub state_count: u64,
    /// Local interface names by index (`config.interfaces` order).
    pub interfaces: &'a [String],
    /// The interface recorded on imported states whose `ifname` is not a local interface
    /// ("all" from a floating state, always the case between rampart nodes).
    pub default_iface: u8,
}

/// Why a `pfsync_state` cannot become a rampart state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ImportError {
    /// pf's `badval`: timeout ≥ `PFTM_MAX`, a peer state above `PROXY_DST`, a direction above
    /// `PF_OUT` (or 0), an address family other than INET/INET6.
    BadValue(&'static str),
    /// `creatorid` 0 (pf refuses it).
    ZeroCreator,
    /// `id` 0: rampart's table would give the state a fresh local identity.
    ZeroId,
    /// `af` 0: pf skips such states silently.
    NoAddressFamily,
    /// The wire and stack keys differ: NAT, rdomain or af-to on the peer.
    Translated,
    /// A routing domain other than 0.
    Rdomain(u16),
    /// A timeout class rampart does not track (`frag` … `tcp.tsdiff`).
    Timeout(u8),
    /// A synproxy peer state (`PROXY_SRC`, `PROXY_DST`).
    Synproxy,
    /// A UDP/other peer state above MULTIPLE.
    PeerState(u8),
    /// `modulate state` (a sequence offset rampart does not apply).
    Modulated,
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImportError::BadValue(what) => write!(f, "invalid {what}"),
            ImportError::ZeroCreator => f.write_str("creator id 0"),
            ImportError::ZeroId => f.write_str("state id 0"),
            ImportError::NoAddressFamily => f.write_str("no address family"),
            ImportError::Translated => f.write_str("translated state (wire and stack keys differ)"),
            ImportError::Rdomain(r) => write!(f, "routing domain {r}"),
            ImportError::Timeout(t) => write!(f, "timeout class {t} not tracked"),
            ImportError::Synproxy => f.write_str("synproxy state"),
            ImportError::PeerState(s) => write!(f, "peer state {s}"),
            ImportError::Modulated => f.write_str("modulated state"),
        }
    }
}

impl std::error::Error for ImportError {}

/// The checks `pfsync_in_upd` / `pfsync_in_upd_c` make before merging (`badval`).
pub fn check_update(timeout: u8, src: &PeerMsg, dst: &PeerMsg) -> Result<(), ImportError> {
    if timeout >= PFTM_MAX {
        return Err(ImportError::BadValue("timeout"));
    }
    if src.state > TCPS_PROXY_DST || dst.state > TCPS_PROXY_DST {
        return Err(ImportError::BadValue("peer state"));
    }
    Ok(())
}

/// The rampart peer of a message's peer, for a state of protocol `proto`.
pub fn import_peer(proto: u8, peer: &PeerMsg) -> Result<Peer, ImportError> {
    if peer.seqdiff != 0 {
        return Err(ImportError::Modulated);
    }
    if proto == proto::TCP {
        if peer.state > tcps::TIME_WAIT {
            return Err(ImportError::Synproxy);
        }
    } else if peer.state > single::MULTIPLE {
        return Err(ImportError::PeerState(peer.state));
    }
    Ok(Peer {
        seqlo: peer.seqlo,
        seqhi: peer.seqhi,
        max_win: peer.max_win,
        wscale: peer.wscale,
        state: peer.state,
    })
}

/// The message form of a rampart peer.
pub fn export_peer(peer: &Peer) -> PeerMsg {
    PeerMsg {
        seqlo: peer.seqlo,
        seqhi: peer.seqhi,
        max_win: peer.max_win,
        wscale: peer.wscale,
        state: peer.state,
        ..PeerMsg::default()
    }
}

/// A rampart timeout class from pf's `PFTM_*`.
pub fn import_timeout(timeout: u8) -> Result<Timeout, ImportError> {
    if timeout >= PFTM_MAX {
        return Err(ImportError::BadValue("timeout"));
    }
    Timeout::from_u8(timeout).ok_or(ImportError::Timeout(timeout))
}

fn pf_addr(addr: IpAddr) -> [u8; 16] {
    let mut out = [0u8; 16];
    match addr {
        IpAddr::V4(a) => out[..4].copy_from_slice(&a.octets()),
        IpAddr::V6(a) => out = a.octets(),
    }
    out
}

fn ip_addr(af: u8, bytes: &[u8; 16]) -> IpAddr {
    if af == AF_INET {
        IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))
    } else {
        IpAddr::V6(Ipv6Addr::from(*bytes))
    }
}

impl StateMsg {
    /// The message for `state` (see the [module docs](self) for the mapping).
    pub fn from_state(state: &State, cx: &Conversion<'_>) -> StateMsg {
        let outbound = state.flags & STATE_OUTBOUND != 0;
        let (a, b) = state.key.endpoints();
        let (initiator, responder) = if state.initiator() == 0 {
            (a, b)
        } else {
            (b, a)
        };
        let proto = state.key.proto();
        let ipv4 = state.key.is_ipv4();
        let af = if ipv4 { AF_INET } else { AF_INET6 };
        // The initiator's slot is pf's sidx: 0 for an inbound state, 1 for an outbound one.
        let init_slot = usize::from(outbound);
        let mut key = KeyMsg {
            af,
            ..KeyMsg::default()
        };
        key.addr[init_slot] = pf_addr(initiator.0);
        key.addr[1 - init_slot] = pf_addr(responder.0);
        key.port[init_slot] = initiator.1;
        key.port[1 - init_slot] = responder.1;
        let mut rtableid = [0i32; 2];
        rtableid[init_slot] = -1;

        let now_s = cx.now_ms / 1000;
        let timeout_ms = cx.timeouts.timeout_ms(state.timeout, cx.state_count);
        let expires_at = state.last_ms.saturating_add(timeout_ms);
        let expire = expires_at.saturating_sub(cx.now_ms).div_ceil(1000);
        let mut sync = 0;
        if state.covers & COVER_IN != 0 {
            sync |= sync_flags::RAMPART_COVER_IN;
        }
        if state.covers & COVER_OUT != 0 {
            sync |= sync_flags::RAMPART_COVER_OUT;
        }
        StateMsg {
            id: state.id,
            ifname: if state.flags & STATE_IF_BOUND != 0 {
                cx.interfaces
                    .get(usize::from(state.iface))
                    .and_then(|name| IfName::new(name))
                    .unwrap_or(IfName::ALL)
            } else {
                IfName::ALL
            },
            key: [key, key],
            src: export_peer(&state.peers[0]),
            dst: export_peer(&state.peers[1]),
            rt_addr: [0; 16],
            rule: state.rule,
            anchor: NO_RULE,
            nat_rule: NO_RULE,
            creation: now_s
                .saturating_sub(u64::from(state.created_s))
                .min(u32::MAX as u64) as u32,
            expire: expire.min(u32::MAX as u64) as u32,
            packets: state.packets,
            bytes: state.bytes,
            creatorid: state.creator,
            rtableid,
            max_mss: 0,
            af,
            proto,
            direction: if outbound { PF_OUT } else { PF_IN },
            log: u8::from(state.flags & STATE_LOG != 0),
            rt: 0,
            timeout: state.timeout as u8,
            sync_flags: sync,
            updates: 0,
            min_ttl: 0,
            set_tos: 0,
            state_flags: 0,
            set_prio: [0; 2],
        }
    }

    /// The checks `pfsync_in_ins` makes (`badval`) and `pf_state_import`'s refusals.
    pub fn check_import(&self) -> Result<(), ImportError> {
        check_update(self.timeout, &self.src, &self.dst)?;
        if self.direction > PF_OUT {
            return Err(ImportError::BadValue("direction"));
        }
        let family = |af: u8| af == AF_INET || af == AF_INET6;
        let (af1, af2) = (self.key[0].af, self.key[1].af);
        if ((af1 != 0 || af2 != 0) && (!family(af1) || !family(af2)))
            || (self.af != 0 && !family(self.af))
        {
            return Err(ImportError::BadValue("address family"));
        }
        if self.creatorid == 0 {
            return Err(ImportError::ZeroCreator);
        }
        if self.af == 0 {
            return Err(ImportError::NoAddressFamily);
        }
        Ok(())
    }

    /// The rampart state this message describes (see the [module docs](self)).
    pub fn to_state(&self, cx: &Conversion<'_>) -> Result<State, ImportError> {
        self.check_import()?;
        if self.id == 0 {
            return Err(ImportError::ZeroId);
        }
        let direction = match self.direction {
            PF_IN => PF_IN,
            PF_OUT => PF_OUT,
            _ => return Err(ImportError::BadValue("direction")),
        };
        let key_af = |k: &KeyMsg| if k.af == 0 { self.af } else { k.af };
        let (wire, stack) = (&self.key[0], &self.key[1]);
        if key_af(wire) != key_af(stack)
            || key_af(wire) != self.af
            || wire.addr != stack.addr
            || wire.port != stack.port
            || wire.rdomain != stack.rdomain
        {
            return Err(ImportError::Translated);
        }
        if wire.rdomain != 0 {
            return Err(ImportError::Rdomain(wire.rdomain));
        }
        let timeout = import_timeout(self.timeout)?;
        let peers = [
            import_peer(self.proto, &self.src)?,
            import_peer(self.proto, &self.dst)?,
        ];

        let outbound = direction == PF_OUT;
        let init_slot = usize::from(outbound);
        let init_addr = ip_addr(self.af, &wire.addr[init_slot]);
        let resp_addr = ip_addr(self.af, &wire.addr[1 - init_slot]);
        let init_port = wire.port[init_slot];
        let resp_port = wire.port[1 - init_slot];
        let (key, init_first) =
            StateKey::new(self.proto, init_addr, init_port, resp_addr, resp_port);

        let mut flags = 0;
        if !init_first {
            flags |= STATE_INITIATOR_IS_1;
        }
        if outbound {
            flags |= STATE_OUTBOUND;
        }
        if self.log != 0 {
            flags |= STATE_LOG;
        }
        let mut covers = 0;
        if self.sync_flags & sync_flags::RAMPART_COVER_IN != 0 {
            covers |= COVER_IN;
        }
        if self.sync_flags & sync_flags::RAMPART_COVER_OUT != 0 {
            covers |= COVER_OUT;
        }
        if covers == 0 {
            covers = if outbound { COVER_OUT } else { COVER_IN };
        }

        // pf_state_import: expire = now, minus (timeout − remaining) when remaining > 0.
        let last_ms = if self.expire == 0 {
            cx.now_ms
        } else {
            let base = cx.timeouts.ms[timeout as usize];
            (cx.now_ms + u64::from(self.expire) * 1000).saturating_sub(base)
        };
        let bound = self
            .ifname
            .as_str()
            .and_then(|name| cx.interfaces.iter().position(|i| i == name))
            .and_then(|i| u8::try_from(i).ok());
        if bound.is_some() {
            flags |= STATE_IF_BOUND;
        }
        let iface = bound.unwrap_or(cx.default_iface);
        Ok(State {
            key,
            peers,
            last_ms,
            packets: self.packets,
            bytes: self.bytes,
            id: self.id,
            created_s: (cx.now_ms / 1000)
                .saturating_sub(u64::from(self.creation))
                .min(u32::MAX as u64) as u32,
            creator: self.creatorid,
            rule: if self.anchor == NO_RULE {
                self.rule
            } else {
                NO_RULE
            },
            iface,
            timeout,
            covers,
            flags,
        })
    }
}
