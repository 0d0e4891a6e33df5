//! The state table: pf's stateful semantics over a lock-sharded hash table.
//!
//! - [`key`]: one canonical key per connection, so both directions find the state.
//! - [`tcp`]: pf's TCP window tracking and the UDP/other single/multiple progression.
//! - [`table`]: the sharded table itself, with limits, adaptive timeouts and expiry.
//!
//! # One state per connection
//!
//! pf gives a forwarded connection two states: one created when the first packet passes
//! `in` on the ingress interface, one when it passes `out` on the egress interface; each
//! covers its filter point for both directions of the connection. rampart keeps a single
//! record per connection with two coverage bits that say exactly that: [`COVER_IN`]
//! (pf's inbound state: packets from the initiator going in, replies going out) and
//! [`COVER_OUT`] (pf's outbound state: the initiator's packets going out, replies coming
//! in). A packet passes a filter point by state only when the matching bit is set, and a
//! bit is set where a pass kept state, as pf creates a state there: a point that blocked
//! the first packet keeps blocking, and a point passed without state (`keep_state = false`)
//! is evaluated by its rules for every packet. With the usual rules (pass rules keep state)
//! the first packet sets both bits and the connection's later packets pass both points by
//! state. One record means one lookup, one TCP tracker and one pfsync identity per
//! connection.

mod arena;
pub mod key;
mod lock;
pub mod table;
pub mod tcp;

pub use key::StateKey;
pub use table::{
    InsertError, ShardGuard, StateTable, StateTableConfig, StateTableStats, WalkCursor,
};
pub use tcp::{Peer, Segment};

use rampart_conf::Timeouts;

/// The state covers pf's inbound filter point (see the module docs).
pub const COVER_IN: u8 = 1;
/// The state covers pf's outbound filter point.
pub const COVER_OUT: u8 = 2;

/// pf's timeout classes (`PFTM_*`), numbered as pf numbers them: pfsync carries them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Timeout {
    TcpFirst = 0,
    TcpOpening = 1,
    TcpEstablished = 2,
    TcpClosing = 3,
    TcpFinWait = 4,
    TcpClosed = 5,
    UdpFirst = 6,
    UdpSingle = 7,
    UdpMultiple = 8,
    IcmpFirst = 9,
    IcmpError = 10,
    OtherFirst = 11,
    OtherSingle = 12,
    OtherMultiple = 13,
}

impl Timeout {
    pub const COUNT: usize = 14;

    /// pf's name (`pfctl -st`).
    pub fn name(self) -> &'static str {
        [
            "tcp.first",
            "tcp.opening",
            "tcp.established",
            "tcp.closing",
            "tcp.finwait",
            "tcp.closed",
            "udp.first",
            "udp.single",
            "udp.multiple",
            "icmp.first",
            "icmp.error",
            "other.first",
            "other.single",
            "other.multiple",
        ][self as usize]
    }

    pub fn from_u8(v: u8) -> Option<Timeout> {
        use Timeout::*;
        Some(match v {
            0 => TcpFirst,
            1 => TcpOpening,
            2 => TcpEstablished,
            3 => TcpClosing,
            4 => TcpFinWait,
            5 => TcpClosed,
            6 => UdpFirst,
            7 => UdpSingle,
            8 => UdpMultiple,
            9 => IcmpFirst,
            10 => IcmpError,
            11 => OtherFirst,
            12 => OtherSingle,
            13 => OtherMultiple,
            _ => return None,
        })
    }
}

/// Timeouts in milliseconds per class, and the adaptive window, ready for the hot path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeoutTable {
    pub ms: [u64; Timeout::COUNT],
    pub adaptive_start: u64,
    pub adaptive_end: u64,
}

impl TimeoutTable {
    pub fn new(t: &Timeouts, state_limit: u32) -> TimeoutTable {
        let secs = [
            t.tcp_first,
            t.tcp_opening,
            t.tcp_established,
            t.tcp_closing,
            t.tcp_finwait,
            t.tcp_closed,
            t.udp_first,
            t.udp_single,
            t.udp_multiple,
            t.icmp_first,
            t.icmp_error,
            t.other_first,
            t.other_single,
            t.other_multiple,
        ];
        let (start, end) = t.adaptive(state_limit);
        TimeoutTable {
            ms: secs.map(|s| s as u64 * 1000),
            adaptive_start: start as u64,
            adaptive_end: end as u64,
        }
    }

    /// The timeout of `class` with `states` states in the table: pf scales it down
    /// linearly between adaptive.start and adaptive.end, and to zero beyond.
    #[inline]
    pub fn timeout_ms(&self, class: Timeout, states: u64) -> u64 {
        let base = self.ms[class as usize];
        if states <= self.adaptive_start || self.adaptive_end <= self.adaptive_start {
            base
        } else if states >= self.adaptive_end {
            0
        } else {
            let num = (self.adaptive_end - states) as u128;
            let den = (self.adaptive_end - self.adaptive_start) as u128;
            (base as u128 * num / den) as u64
        }
    }
}

/// The state of one connection: 128 bytes, two cache lines.
///
/// The first line holds what every packet reads (the key, to confirm the lookup, and both
/// peers' TCP windows); the second what every packet writes (expiry, counters) and the
/// state's identity. See `docs/performance.md` for the bytes per state with the index.
#[derive(Clone, Debug, PartialEq, Eq)]
#[repr(C, align(64))]
pub struct State {
    pub key: StateKey,
    /// Tracking of the initiator ([0], pf's `src`) and of the responder ([1], pf's `dst`).
    pub peers: [Peer; 2],
    /// Last activity that refreshed the expiry (pf's `expire`), in ms.
    pub last_ms: u64,
    /// Packets and bytes from the initiator ([0]) and from the responder ([1]).
    pub packets: [u64; 2],
    pub bytes: [u64; 2],
    /// pfsync's 64-bit state id.
    pub id: u64,
    /// Creation time, in seconds of the same clock.
    pub created_s: u32,
    /// pfsync's creator id: the host id of the node that created the state.
    pub creator: u32,
    /// The rule that created the state (0-based), or `u32::MAX` for none (synced states).
    pub rule: u32,
    /// The interface the state was created on (an appliance has at most 255).
    pub iface: u8,
    pub timeout: Timeout,
    /// `COVER_IN` / `COVER_OUT`.
    pub covers: u8,
    /// `STATE_LOG`, `STATE_INITIATOR_IS_1`, `STATE_OUTBOUND`, `STATE_IF_BOUND`.
    pub flags: u8,
}

/// Log every packet of the state (the creating rule said `log`).
pub const STATE_LOG: u8 = 1;
/// Key endpoint 1 (not 0) initiated the connection.
pub const STATE_INITIATOR_IS_1: u8 = 2;
/// The state was created by an outbound pass (pf's `st->direction == PF_OUT`).
pub const STATE_OUTBOUND: u8 = 4;
/// A peer's if-bound state, bound to `iface` (pf's kif other than "all"). rampart's own
/// states are floating; the flag only scopes a peer's interface-named CLR and names the
/// interface again when the state is synced on.
pub const STATE_IF_BOUND: u8 = 8;

impl State {
    /// Which endpoint of the key initiated the connection (0 or 1).
    #[inline]
    pub fn initiator(&self) -> u8 {
        u8::from(self.flags & STATE_INITIATOR_IS_1 != 0)
    }

    /// Index into `peers` of the sender of a packet whose source is key endpoint 0 iff
    /// `src_is_first`: 0 when the initiator sent it.
    #[inline]
    pub fn sender(&self, src_is_first: bool) -> usize {
        usize::from(src_is_first != (self.initiator() == 0))
    }

    /// Whether the state covers a packet at a filter point (see the module docs).
    #[inline]
    pub fn covers(&self, from_initiator: bool, inbound: bool) -> bool {
        let bit = if from_initiator == inbound {
            COVER_IN
        } else {
            COVER_OUT
        };
        self.covers & bit != 0
    }

    /// The coverage bit a pass at a filter point adds.
    #[inline]
    pub fn cover_bit(from_initiator: bool, inbound: bool) -> u8 {
        if from_initiator == inbound {
            COVER_IN
        } else {
            COVER_OUT
        }
    }

    /// pf's `SRC_STATE:DST_STATE` as `pfctl -ss` prints it.
    pub fn state_names(&self) -> (&'static str, &'static str) {
        let proto = self.key.proto();
        if proto == rampart_conf::proto::ICMP || proto == rampart_conf::proto::ICMP6 {
            // pfctl prints ICMP states as 0:0: they have no per-peer progression.
            return ("0", "0");
        }
        let name = |p: &Peer| -> &'static str {
            if proto == rampart_conf::proto::TCP {
                tcp::tcps::NAMES
                    .get(p.state as usize)
                    .copied()
                    .unwrap_or("?")
            } else {
                tcp::single::NAMES
                    .get(p.state as usize)
                    .copied()
                    .unwrap_or("?")
            }
        };
        (name(&self.peers[0]), name(&self.peers[1]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adaptive_timeouts_scale_linearly_then_expire_at_once() {
        let t = Timeouts {
            adaptive_start: Some(6000),
            adaptive_end: Some(12000),
            ..Default::default()
        };
        let tt = TimeoutTable::new(&t, 10_000);
        assert_eq!(tt.timeout_ms(Timeout::TcpEstablished, 100), 86_400_000);
        assert_eq!(tt.timeout_ms(Timeout::TcpEstablished, 6000), 86_400_000);
        assert_eq!(tt.timeout_ms(Timeout::TcpEstablished, 9000), 43_200_000);
        assert_eq!(tt.timeout_ms(Timeout::UdpSingle, 11_000), 5_000);
        assert_eq!(tt.timeout_ms(Timeout::UdpSingle, 12_000), 0);
        // pf's defaults: 60% and 120% of the limit.
        let d = TimeoutTable::new(&Timeouts::default(), 100_000);
        assert_eq!((d.adaptive_start, d.adaptive_end), (60_000, 120_000));
    }

    #[test]
    fn coverage_follows_pf_in_and_out_states() {
        assert_eq!(std::mem::size_of::<State>(), 128, "two cache lines");
        let mut s = State {
            key: StateKey::default(),
            peers: [Peer::default(); 2],
            last_ms: 0,
            packets: [0; 2],
            bytes: [0; 2],
            id: 1,
            created_s: 0,
            creator: 1,
            rule: 0,
            iface: 0,
            timeout: Timeout::TcpFirst,
            covers: COVER_IN,
            flags: 0,
        };
        // pf's inbound state: the initiator's packets in, replies out.
        assert!(s.covers(true, true));
        assert!(s.covers(false, false));
        assert!(!s.covers(true, false));
        assert!(!s.covers(false, true));
        s.covers |= State::cover_bit(true, false);
        assert!(s.covers(true, false) && s.covers(false, true));
        assert_eq!(s.sender(true), 0);
        assert_eq!(s.sender(false), 1);
        s.flags |= STATE_INITIATOR_IS_1;
        assert_eq!(s.sender(false), 0);
    }
}
