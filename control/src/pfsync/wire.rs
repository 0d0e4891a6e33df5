//! pfsync version 6 on the wire: every message OpenBSD's `if_pfsync.h` 1.65 defines, decoded
//! from and encoded to exactly OpenBSD's bytes (protocols.md §3.2–§3.4, §6.1 TV4).
//!
//! # Frames
//!
//! A frame (the IP payload) is the 20-byte header (version 6, length, a zero `pfcksum`)
//! followed by sections, each a 4-byte subheader (action, length of *one* message in 32-bit
//! words, count) and `count` messages. [`parse`] checks the header the way `pfsync_input`
//! does and [`Frame::sections`] walks the sections with OpenBSD's rules (§3.2):
//!
//! - messages are walked with the subheader's stride, so a newer peer may append fields;
//! - a section whose action is unknown (or deprecated, or whose stride is shorter than the
//!   message) is skipped by its stride when count and stride are non-zero, and ends the frame
//!   as [`SectionError::BadAction`] otherwise;
//! - `stride × count` must fit in what is left ([`SectionError::BadLength`]).
//!
//! Decoding never panics, whatever the bytes (the tests feed it random and mutated frames).
//! [`FrameBuilder`] writes frames no larger than the sync interface's MTU allows.
//!
//! # Byte order
//!
//! OpenBSD converts every multi-byte integer to network order, except `id` and `creatorid`,
//! which it copies as opaque values (§3.4). pf generates both in network order
//! (`id = htobe64(stateid++)`, the creator id is the host id as `pfctl` stores it with
//! `htonl`), so decoding them big-endian gives the numbers `pfctl -vvss` prints and rampart
//! keeps in [`State::id`](rampart_dataplane::state::State) and `creator`, and encoding them
//! big-endian gives back the same bytes. Addresses (`pf_addr`, 16 bytes; IPv4 in the first
//! four) are kept as raw bytes; ports are numbers (they are in network order on the wire).

use std::fmt;
use std::net::Ipv4Addr;

use rampart_conf::MacAddr;
use rampart_dataplane::wire::build::{IpFrame, Link};
use rampart_dataplane::wire::pfsync::{
    self as view, Header, SubHeader, HEADER_LEN, SUBHEADER_LEN, VERSION,
};
use rampart_dataplane::wire::MacAddrExt;

/// `PFSYNC_ACT_*` (§3.3, `if_pfsync.h` 1.65).
pub mod action {
    /// Clear the states of one creator (`pfsync_clr`).
    pub const CLR: u8 = 0;
    /// Deprecated insert; skipped.
    pub const OINS: u8 = 1;
    /// Insert acknowledgement, releases a deferred packet (`pfsync_ins_ack`).
    pub const INS_ACK: u8 = 2;
    /// Deprecated update; skipped.
    pub const OUPD: u8 = 3;
    /// Compressed update (`pfsync_upd_c`), the normal update.
    pub const UPD_C: u8 = 4;
    /// Request a full update of one state, or (0, 0) a bulk update (`pfsync_upd_req`).
    pub const UPD_REQ: u8 = 5;
    /// Delete with the full state (`pfsync_state`); received, never sent by OpenBSD.
    pub const DEL: u8 = 6;
    /// Compressed delete (`pfsync_del_c`).
    pub const DEL_C: u8 = 7;
    /// Deprecated; skipped.
    pub const INS_F: u8 = 8;
    /// Deprecated; skipped.
    pub const DEL_F: u8 = 9;
    /// Bulk update status (`pfsync_bus`).
    pub const BUS: u8 = 10;
    /// The old TDB message (32-bit replay counter); skipped.
    pub const OTDB: u8 = 11;
    /// The old end-of-frame marker; skipped.
    pub const EOF: u8 = 12;
    /// Insert (`pfsync_state`).
    pub const INS: u8 = 13;
    /// Full update (`pfsync_state`): UPD_REQ answers and the bulk.
    pub const UPD: u8 = 14;
    /// IPsec SA replay counters (`pfsync_tdb`).
    pub const TDB: u8 = 15;
    /// `PFSYNC_ACT_MAX`: actions from here on are unknown.
    pub const MAX: u8 = 16;

    /// The action's name as `if_pfsync.h` spells it (without `PFSYNC_ACT_`).
    pub fn name(action: u8) -> &'static str {
        const NAMES: [&str; MAX as usize] = [
            "CLR", "OINS", "INS_ACK", "OUPD", "UPD_C", "UPD_REQ", "DEL", "DEL_C", "INS_F", "DEL_F",
            "BUS", "OTDB", "EOF", "INS", "UPD", "TDB",
        ];
        NAMES.get(action as usize).copied().unwrap_or("unknown")
    }

    /// The length of the message version 6 decodes for `action` (`pfsync_acts[].len`), or
    /// `None` for the actions it skips: deprecated and unknown ones.
    pub fn message_len(action: u8) -> Option<usize> {
        use super::*;
        Some(match action {
            CLR => Clr::LEN,
            INS_ACK | UPD_REQ | DEL_C => StateId::LEN,
            UPD_C => UpdC::LEN,
            DEL | INS | UPD => StateMsg::LEN,
            BUS => Bus::LEN,
            TDB => Tdb::LEN,
            _ => return None,
        })
    }
}

/// The IPv4 header in front of every frame (pfsync is IPv4-only, without options).
pub const IP_HEADER_LEN: usize = 20;
/// `PFSYNC_MINPKT`: the IP and pfsync headers, the bytes every packet spends before sections.
pub const MIN_PACKET: usize = IP_HEADER_LEN + HEADER_LEN;
/// The IPv4 TOS of pfsync packets (`IPTOS_LOWDELAY`).
pub const TOS: u8 = 0x10;

/// OpenBSD's address families (`sa_family_t`).
pub const AF_INET: u8 = 2;
/// OpenBSD's `AF_INET6` (24; Linux uses 10). **(inference, protocols.md §7.5)**
pub const AF_INET6: u8 = 24;

/// `PF_IN`: the state was created by an inbound pass.
pub const PF_IN: u8 = 1;
/// `PF_OUT`: the state was created by an outbound pass.
pub const PF_OUT: u8 = 2;

/// `PFTM_MAX`: timeouts at or above this are invalid in a message.
pub const PFTM_MAX: u8 = 20;
/// `PF_TCPS_PROXY_SRC` (= `TCP_NSTATES`): synproxy, talking to the client.
pub const TCPS_PROXY_SRC: u8 = 11;
/// `PF_TCPS_PROXY_DST`: synproxy, talking to the server. Peer states above it are invalid.
pub const TCPS_PROXY_DST: u8 = 12;

/// `pfsync_state.state_flags` bits (`PFSTATE_*`) that pfsync itself interprets.
pub mod state_flags {
    /// `PFSTATE_SLOPPY`: no sequence-number checks.
    pub const SLOPPY: u16 = 0x0002;
    /// `PFSTATE_NOSYNC`: never synchronised.
    pub const NOSYNC: u16 = 0x0008;
    /// `PFSTATE_ACK`: "I am deferring a packet for this state, send an INS_ACK" (§3.6).
    pub const ACK: u16 = 0x0010;
    /// `PFSTATE_SCRUB_TCP`: TCP normalisation (timestamp modulation) on this state.
    pub const SCRUB_TCP: u16 = 0x0100;
}

/// `pfsync_state.sync_flags` bits.
pub mod sync_flags {
    /// `PFSYNC_FLAG_SRCNODE`: the state had source-tracking nodes.
    pub const SRCNODE: u8 = 0x04;
    /// rampart's extension: the state covers pf's inbound filter point (`COVER_IN`).
    /// OpenBSD's `pf_state_import` never reads `sync_flags`, so it ignores this bit.
    pub const RAMPART_COVER_IN: u8 = 0x40;
    /// rampart's extension: the state covers pf's outbound filter point (`COVER_OUT`).
    pub const RAMPART_COVER_OUT: u8 = 0x80;
}

/// `pfsync_bus.status`: a bulk update starts.
pub const BUS_START: u8 = 1;
/// `pfsync_bus.status`: a bulk update ended.
pub const BUS_END: u8 = 2;
/// `pfsync_state_scrub.scrub_flag`: the scrub fields are valid.
pub const SCRUB_FLAG_VALID: u8 = 0x01;

// Fixed-offset readers and writers. Callers pass arrays or slices whose length has been
// checked against the message size, and offsets are constants inside it.
fn rd16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}
fn rd32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn rd64(b: &[u8], at: usize) -> u64 {
    (u64::from(rd32(b, at)) << 32) | u64::from(rd32(b, at + 4))
}
fn rd_array<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&b[at..at + N]);
    out
}
fn wr16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}
fn wr32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}
fn wr64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_be_bytes());
}

/// The first `N` bytes of `bytes`, if it has them.
fn prefix<const N: usize>(bytes: &[u8]) -> Option<[u8; N]> {
    bytes.get(..N)?.try_into().ok()
}

/// An interface name as pf carries it: 16 bytes, NUL-terminated (`IFNAMSIZ`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct IfName(pub [u8; 16]);

impl IfName {
    /// The empty name (CLR: every interface).
    pub const EMPTY: IfName = IfName([0; 16]);
    /// `pfi_all`'s name, which floating states export.
    pub const ALL: IfName = IfName(*b"all\0\0\0\0\0\0\0\0\0\0\0\0\0");

    /// `name` if it fits with its terminating NUL (at most 15 bytes).
    pub fn new(name: &str) -> Option<IfName> {
        let bytes = name.as_bytes();
        if bytes.len() >= 16 || bytes.contains(&0) {
            return None;
        }
        let mut out = [0u8; 16];
        out[..bytes.len()].copy_from_slice(bytes);
        Some(IfName(out))
    }

    /// The bytes up to the first NUL (all 16 if there is none, as `strlcpy` would cut).
    pub fn as_bytes(&self) -> &[u8] {
        let end = self.0.iter().position(|&b| b == 0).unwrap_or(16);
        &self.0[..end]
    }

    /// The name as text, if it is UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(self.as_bytes()).ok()
    }

    pub fn is_empty(&self) -> bool {
        self.0[0] == 0
    }
}

impl fmt::Debug for IfName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IfName({:?})", String::from_utf8_lossy(self.as_bytes()))
    }
}

/// A state's global identity (§3.9), and the whole of `pfsync_ins_ack`, `pfsync_upd_req` and
/// `pfsync_del_c` (12 bytes: id @0, creatorid @8).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct StateId {
    pub id: u64,
    pub creator: u32,
}

impl StateId {
    pub const LEN: usize = 12;
    /// UPD_REQ(0, 0): the request for a bulk update.
    pub const BULK_REQUEST: StateId = StateId { id: 0, creator: 0 };

    pub fn new(id: u64, creator: u32) -> StateId {
        StateId { id, creator }
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<StateId> {
        let b: [u8; Self::LEN] = prefix(bytes)?;
        Some(StateId {
            id: rd64(&b, 0),
            creator: rd32(&b, 8),
        })
    }

    pub fn to_bytes(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        wr64(&mut b, 0, self.id);
        wr32(&mut b, 8, self.creator);
        b
    }
}

impl fmt::Display for StateId {
    /// As `pfctl -vvss` prints it: `id: 16 hex digits creatorid: 8 hex digits`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}/{:08x}", self.id, self.creator)
    }
}

/// `pfsync_state_scrub` (8 bytes): TCP timestamp modulation state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScrubMsg {
    /// `pfss_flags` (only `PFSS_TIMESTAMP` 0x0001 is exported).
    pub flags: u16,
    pub ttl: u8,
    /// [`SCRUB_FLAG_VALID`] when the fields mean something.
    pub scrub_flag: u8,
    pub ts_mod: u32,
}

impl ScrubMsg {
    pub const LEN: usize = 8;

    fn read(b: &[u8], at: usize) -> ScrubMsg {
        ScrubMsg {
            flags: rd16(b, at),
            ttl: b[at + 2],
            scrub_flag: b[at + 3],
            ts_mod: rd32(b, at + 4),
        }
    }

    fn write(&self, b: &mut [u8], at: usize) {
        wr16(b, at, self.flags);
        b[at + 2] = self.ttl;
        b[at + 3] = self.scrub_flag;
        wr32(b, at + 4, self.ts_mod);
    }
}

/// `pfsync_state_peer` (32 bytes): one end's TCP window tracking, or its UDP/other level.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerMsg {
    pub scrub: ScrubMsg,
    /// Highest sequence number sent.
    pub seqlo: u32,
    /// Highest sequence number the other end will accept.
    pub seqhi: u32,
    /// `modulate state`'s sequence offset.
    pub seqdiff: u32,
    /// Largest unscaled window advertised.
    pub max_win: u16,
    pub mss: u16,
    /// TCP: a `tcp_fsm.h` state or a synproxy state; UDP/other: 0, 1 or 2.
    pub state: u8,
    /// `0x80` (option seen) | shift.
    pub wscale: u8,
}

impl PeerMsg {
    pub const LEN: usize = 32;

    fn read(b: &[u8], at: usize) -> PeerMsg {
        PeerMsg {
            scrub: ScrubMsg::read(b, at),
            seqlo: rd32(b, at + 8),
            seqhi: rd32(b, at + 12),
            seqdiff: rd32(b, at + 16),
            max_win: rd16(b, at + 20),
            mss: rd16(b, at + 22),
            state: b[at + 24],
            wscale: b[at + 25],
        }
    }

    fn write(&self, b: &mut [u8], at: usize) {
        self.scrub.write(b, at);
        wr32(b, at + 8, self.seqlo);
        wr32(b, at + 12, self.seqhi);
        wr32(b, at + 16, self.seqdiff);
        wr16(b, at + 20, self.max_win);
        wr16(b, at + 22, self.mss);
        b[at + 24] = self.state;
        b[at + 25] = self.wscale;
        // 26..32: pad, left zero.
    }
}

/// `pfsync_state_key` (40 bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeyMsg {
    /// `pf_addr`s: IPv4 in the first 4 bytes, the rest zero.
    pub addr: [[u8; 16]; 2],
    pub port: [u16; 2],
    pub rdomain: u16,
    /// 0 means "the state's `af`".
    pub af: u8,
}

impl KeyMsg {
    pub const LEN: usize = 40;

    fn read(b: &[u8], at: usize) -> KeyMsg {
        KeyMsg {
            addr: [rd_array(b, at), rd_array(b, at + 16)],
            port: [rd16(b, at + 32), rd16(b, at + 34)],
            rdomain: rd16(b, at + 36),
            af: b[at + 38],
        }
    }

    fn write(&self, b: &mut [u8], at: usize) {
        b[at..at + 16].copy_from_slice(&self.addr[0]);
        b[at + 16..at + 32].copy_from_slice(&self.addr[1]);
        wr16(b, at + 32, self.port[0]);
        wr16(b, at + 34, self.port[1]);
        wr16(b, at + 36, self.rdomain);
        b[at + 38] = self.af;
        // 39: pad.
    }
}

/// `pfsync_state` (264 bytes): the full state, in INS, UPD and DEL (§3.4 table).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StateMsg {
    pub id: u64,
    /// "all" for floating states.
    pub ifname: IfName,
    /// `[PF_SK_WIRE, PF_SK_STACK]`.
    pub key: [KeyMsg; 2],
    /// The initiator's side (pf's `src`) and the responder's (`dst`).
    pub src: PeerMsg,
    pub dst: PeerMsg,
    pub rt_addr: [u8; 16],
    /// Rule number, or `u32::MAX` (-1).
    pub rule: u32,
    pub anchor: u32,
    /// Always `u32::MAX` ("left for compat").
    pub nat_rule: u32,
    /// Age in seconds.
    pub creation: u32,
    /// Seconds until expiry (0 if expired), adaptively scaled by the sender.
    pub expire: u32,
    /// Packets and bytes from the initiator (`[0]`) and the responder (`[1]`).
    pub packets: [u64; 2],
    pub bytes: [u64; 2],
    pub creatorid: u32,
    /// Routing tables `[wire, stack]` (-1 = unchanged).
    pub rtableid: [i32; 2],
    pub max_mss: u16,
    pub af: u8,
    pub proto: u8,
    /// [`PF_IN`] or [`PF_OUT`].
    pub direction: u8,
    pub log: u8,
    /// Route-to type.
    pub rt: u8,
    /// `PFTM_*`.
    pub timeout: u8,
    pub sync_flags: u8,
    pub updates: u8,
    pub min_ttl: u8,
    pub set_tos: u8,
    pub state_flags: u16,
    pub set_prio: [u8; 2],
}

impl StateMsg {
    pub const LEN: usize = 264;

    /// The state's identity.
    pub fn state_id(&self) -> StateId {
        StateId::new(self.id, self.creatorid)
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<StateMsg> {
        let b: [u8; Self::LEN] = prefix(bytes)?;
        Some(StateMsg {
            id: rd64(&b, 0),
            ifname: IfName(rd_array(&b, 8)),
            key: [KeyMsg::read(&b, 24), KeyMsg::read(&b, 64)],
            src: PeerMsg::read(&b, 104),
            dst: PeerMsg::read(&b, 136),
            rt_addr: rd_array(&b, 168),
            rule: rd32(&b, 184),
            anchor: rd32(&b, 188),
            nat_rule: rd32(&b, 192),
            creation: rd32(&b, 196),
            expire: rd32(&b, 200),
            packets: [rd64(&b, 204), rd64(&b, 212)],
            bytes: [rd64(&b, 220), rd64(&b, 228)],
            creatorid: rd32(&b, 236),
            rtableid: [rd32(&b, 240) as i32, rd32(&b, 244) as i32],
            max_mss: rd16(&b, 248),
            af: b[250],
            proto: b[251],
            direction: b[252],
            log: b[253],
            rt: b[254],
            timeout: b[255],
            sync_flags: b[256],
            updates: b[257],
            min_ttl: b[258],
            set_tos: b[259],
            state_flags: rd16(&b, 260),
            set_prio: [b[262], b[263]],
        })
    }

    pub fn to_bytes(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        wr64(&mut b, 0, self.id);
        b[8..24].copy_from_slice(&self.ifname.0);
        self.key[0].write(&mut b, 24);
        self.key[1].write(&mut b, 64);
        self.src.write(&mut b, 104);
        self.dst.write(&mut b, 136);
        b[168..184].copy_from_slice(&self.rt_addr);
        wr32(&mut b, 184, self.rule);
        wr32(&mut b, 188, self.anchor);
        wr32(&mut b, 192, self.nat_rule);
        wr32(&mut b, 196, self.creation);
        wr32(&mut b, 200, self.expire);
        // pf_state_counter_hton: each u64 as hi32 then lo32, both big-endian, which is the
        // u64 in big-endian.
        wr64(&mut b, 204, self.packets[0]);
        wr64(&mut b, 212, self.packets[1]);
        wr64(&mut b, 220, self.bytes[0]);
        wr64(&mut b, 228, self.bytes[1]);
        wr32(&mut b, 236, self.creatorid);
        wr32(&mut b, 240, self.rtableid[0] as u32);
        wr32(&mut b, 244, self.rtableid[1] as u32);
        wr16(&mut b, 248, self.max_mss);
        b[250] = self.af;
        b[251] = self.proto;
        b[252] = self.direction;
        b[253] = self.log;
        b[254] = self.rt;
        b[255] = self.timeout;
        b[256] = self.sync_flags;
        b[257] = self.updates;
        b[258] = self.min_ttl;
        b[259] = self.set_tos;
        wr16(&mut b, 260, self.state_flags);
        b[262] = self.set_prio[0];
        b[263] = self.set_prio[1];
        b
    }
}

/// `pfsync_upd_c` (84 bytes): the compressed update.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UpdC {
    pub id: u64,
    pub src: PeerMsg,
    pub dst: PeerMsg,
    pub creatorid: u32,
    /// Sent as 0 by OpenBSD and ignored on receipt (§3.4).
    pub expire: u32,
    pub timeout: u8,
    /// Sent as 0 and ignored.
    pub state_flags: u8,
}

impl UpdC {
    pub const LEN: usize = 84;

    pub fn state_id(&self) -> StateId {
        StateId::new(self.id, self.creatorid)
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<UpdC> {
        let b: [u8; Self::LEN] = prefix(bytes)?;
        Some(UpdC {
            id: rd64(&b, 0),
            src: PeerMsg::read(&b, 8),
            dst: PeerMsg::read(&b, 40),
            creatorid: rd32(&b, 72),
            expire: rd32(&b, 76),
            timeout: b[80],
            state_flags: b[81],
        })
    }

    pub fn to_bytes(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        wr64(&mut b, 0, self.id);
        self.src.write(&mut b, 8);
        self.dst.write(&mut b, 40);
        wr32(&mut b, 72, self.creatorid);
        wr32(&mut b, 76, self.expire);
        b[80] = self.timeout;
        b[81] = self.state_flags;
        b
    }
}

/// `pfsync_clr` (20 bytes): remove every state of `creatorid` (on `ifname` only, unless empty).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Clr {
    pub ifname: IfName,
    pub creatorid: u32,
}

impl Clr {
    pub const LEN: usize = 20;

    pub fn from_bytes(bytes: &[u8]) -> Option<Clr> {
        let b: [u8; Self::LEN] = prefix(bytes)?;
        Some(Clr {
            ifname: IfName(rd_array(&b, 0)),
            creatorid: rd32(&b, 16),
        })
    }

    pub fn to_bytes(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[..16].copy_from_slice(&self.ifname.0);
        wr32(&mut b, 16, self.creatorid);
        b
    }
}

/// `pfsync_bus` (12 bytes): a bulk update starts or ends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bus {
    /// The sender's host id (receivers ignore it).
    pub creatorid: u32,
    /// Always 0 from current OpenBSD (receivers ignore it).
    pub endtime: u32,
    /// [`BUS_START`] or [`BUS_END`].
    pub status: u8,
}

impl Bus {
    pub const LEN: usize = 12;

    pub fn from_bytes(bytes: &[u8]) -> Option<Bus> {
        let b: [u8; Self::LEN] = prefix(bytes)?;
        Some(Bus {
            creatorid: rd32(&b, 0),
            endtime: rd32(&b, 4),
            status: b[8],
        })
    }

    pub fn to_bytes(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        wr32(&mut b, 0, self.creatorid);
        wr32(&mut b, 4, self.endtime);
        b[8] = self.status;
        b
    }
}

/// `pfsync_tdb` (52 bytes): an IPsec SA's replay counter. rampart has no IPsec: decoded,
/// counted and ignored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tdb {
    pub spi: u32,
    /// OpenBSD's `sockaddr_union`, kept raw.
    pub dst: [u8; 28],
    pub rpl: u64,
    pub cur_bytes: u64,
    pub sproto: u8,
    pub updates: u8,
    pub rdomain: u16,
}

impl Tdb {
    pub const LEN: usize = 52;

    pub fn from_bytes(bytes: &[u8]) -> Option<Tdb> {
        let b: [u8; Self::LEN] = prefix(bytes)?;
        Some(Tdb {
            spi: rd32(&b, 0),
            dst: rd_array(&b, 4),
            rpl: rd64(&b, 32),
            cur_bytes: rd64(&b, 40),
            sproto: b[48],
            updates: b[49],
            rdomain: rd16(&b, 50),
        })
    }

    pub fn to_bytes(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        wr32(&mut b, 0, self.spi);
        b[4..32].copy_from_slice(&self.dst);
        wr64(&mut b, 32, self.rpl);
        wr64(&mut b, 40, self.cur_bytes);
        b[48] = self.sproto;
        b[49] = self.updates;
        wr16(&mut b, 50, self.rdomain);
        b
    }
}

/// One decoded message. The full-state variants are boxed (264 bytes on the wire).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    Clr(Clr),
    InsAck(StateId),
    UpdC(UpdC),
    UpdReq(StateId),
    Del(Box<StateMsg>),
    DelC(StateId),
    Bus(Bus),
    Tdb(Tdb),
    Ins(Box<StateMsg>),
    Upd(Box<StateMsg>),
}

impl Message {
    /// Decodes one message of `action` from the first bytes of `bytes`; `None` for an action
    /// version 6 skips or for too few bytes.
    pub fn decode(action: u8, bytes: &[u8]) -> Option<Message> {
        Some(match action {
            action::CLR => Message::Clr(Clr::from_bytes(bytes)?),
            action::INS_ACK => Message::InsAck(StateId::from_bytes(bytes)?),
            action::UPD_C => Message::UpdC(UpdC::from_bytes(bytes)?),
            action::UPD_REQ => Message::UpdReq(StateId::from_bytes(bytes)?),
            action::DEL => Message::Del(Box::new(StateMsg::from_bytes(bytes)?)),
            action::DEL_C => Message::DelC(StateId::from_bytes(bytes)?),
            action::BUS => Message::Bus(Bus::from_bytes(bytes)?),
            action::TDB => Message::Tdb(Tdb::from_bytes(bytes)?),
            action::INS => Message::Ins(Box::new(StateMsg::from_bytes(bytes)?)),
            action::UPD => Message::Upd(Box::new(StateMsg::from_bytes(bytes)?)),
            _ => return None,
        })
    }

    /// The `PFSYNC_ACT_*` this message is sent under.
    pub fn action(&self) -> u8 {
        match self {
            Message::Clr(_) => action::CLR,
            Message::InsAck(_) => action::INS_ACK,
            Message::UpdC(_) => action::UPD_C,
            Message::UpdReq(_) => action::UPD_REQ,
            Message::Del(_) => action::DEL,
            Message::DelC(_) => action::DEL_C,
            Message::Bus(_) => action::BUS,
            Message::Tdb(_) => action::TDB,
            Message::Ins(_) => action::INS,
            Message::Upd(_) => action::UPD,
        }
    }

    /// Bytes the message occupies (a multiple of 4).
    pub fn encoded_len(&self) -> usize {
        match self {
            Message::Clr(_) => Clr::LEN,
            Message::InsAck(_) | Message::UpdReq(_) | Message::DelC(_) => StateId::LEN,
            Message::UpdC(_) => UpdC::LEN,
            Message::Del(_) | Message::Ins(_) | Message::Upd(_) => StateMsg::LEN,
            Message::Bus(_) => Bus::LEN,
            Message::Tdb(_) => Tdb::LEN,
        }
    }

    /// Appends the message's bytes.
    pub fn write(&self, out: &mut Vec<u8>) {
        match self {
            Message::Clr(m) => out.extend_from_slice(&m.to_bytes()),
            Message::InsAck(m) | Message::UpdReq(m) | Message::DelC(m) => {
                out.extend_from_slice(&m.to_bytes())
            }
            Message::UpdC(m) => out.extend_from_slice(&m.to_bytes()),
            Message::Del(m) | Message::Ins(m) | Message::Upd(m) => {
                out.extend_from_slice(&m.to_bytes())
            }
            Message::Bus(m) => out.extend_from_slice(&m.to_bytes()),
            Message::Tdb(m) => out.extend_from_slice(&m.to_bytes()),
        }
    }
}

/// Why a frame was refused as a whole (OpenBSD's `pfsyncstats` names in brackets).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FrameError {
    /// Shorter than the 20-byte header (`hdrops`).
    Short,
    /// Version other than 6 (`badver`).
    BadVersion(u8),
    /// The header's length exceeds the payload, or is shorter than the header (`badlen`).
    BadLength,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Short => f.write_str("shorter than the pfsync header"),
            FrameError::BadVersion(v) => write!(f, "pfsync version {v}, not {VERSION}"),
            FrameError::BadLength => f.write_str("pfsync length field does not match the packet"),
        }
    }
}

impl std::error::Error for FrameError {}

/// Why the walk over a frame's sections stopped early; the sections before it stand.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SectionError {
    /// An action this version cannot skip: unknown (or a too-short stride) with a zero count
    /// or stride (`badact`).
    BadAction { action: u8 },
    /// `stride × count` runs past the frame (`badlen`).
    BadLength { action: u8 },
}

impl fmt::Display for SectionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SectionError::BadAction { action } => {
                write!(f, "section with action {action} cannot be skipped")
            }
            SectionError::BadLength { action } => {
                write!(f, "section with action {action} runs past the frame")
            }
        }
    }
}

impl std::error::Error for SectionError {}

/// A checked frame: the header, and the sections its length covers.
#[derive(Clone, Copy, Debug)]
pub struct Frame<'a> {
    header: Header<&'a [u8]>,
}

/// Checks a frame (the IP payload) as `pfsync_input` does: the header is there, the version is
/// 6, and the length field covers at least the header and at most the payload (bytes beyond it
/// are ignored).
pub fn parse(payload: &[u8]) -> Result<Frame<'_>, FrameError> {
    if payload.len() < HEADER_LEN {
        return Err(FrameError::Short);
    }
    let version = Header::new_unchecked(payload).version();
    if version != VERSION {
        return Err(FrameError::BadVersion(version));
    }
    let header = Header::new_checked(payload).map_err(|_| FrameError::BadLength)?;
    Ok(Frame { header })
}

impl<'a> Frame<'a> {
    /// The length field: header plus sections.
    pub fn len(&self) -> usize {
        self.header.len() as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == HEADER_LEN
    }

    /// `pfcksum`: zero from current senders, ignored.
    pub fn pfcksum(&self) -> [u8; 16] {
        self.header.pfcksum()
    }

    /// The sections, in order.
    pub fn sections(&self) -> Sections<'a> {
        let data: &'a [u8] = self.header.into_inner();
        let end = (self.header.len() as usize).min(data.len());
        Sections {
            rest: data.get(HEADER_LEN..end).unwrap_or(&[]),
        }
    }
}

/// The sections of a frame: `Ok` for each section (handled or skipped), then at most one
/// `Err` that ends the walk. Fewer than 4 trailing bytes end it silently.
#[derive(Clone, Debug)]
pub struct Sections<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Sections<'a> {
    type Item = Result<Section<'a>, SectionError>;

    fn next(&mut self) -> Option<Self::Item> {
        let sub = SubHeader::new_checked(self.rest).ok()?;
        let action = sub.action();
        let stride = sub.message_len();
        let count = sub.count();
        let known = action::message_len(action);
        let handled = matches!(known, Some(len) if stride >= len);
        // OpenBSD's table has an entry (possibly a "skip") for every action below MAX; only
        // unknown actions and too-short strides need a non-zero count and stride to be skipped.
        let skippable_any_way = action < action::MAX && known.is_none();
        if !handled && !skippable_any_way && (count == 0 || stride == 0) {
            self.rest = &[];
            return Some(Err(SectionError::BadAction { action }));
        }
        let body_len = stride * count as usize;
        let Some(body) = self.rest.get(SUBHEADER_LEN..SUBHEADER_LEN + body_len) else {
            self.rest = &[];
            return Some(Err(SectionError::BadLength { action }));
        };
        self.rest = self.rest.get(SUBHEADER_LEN + body_len..).unwrap_or(&[]);
        Some(Ok(Section {
            action,
            stride,
            count,
            handled,
            body,
        }))
    }
}

/// One section: a subheader and its messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Section<'a> {
    action: u8,
    stride: usize,
    count: u16,
    handled: bool,
    body: &'a [u8],
}

impl<'a> Section<'a> {
    pub fn action(&self) -> u8 {
        self.action
    }

    /// The subheader's per-message length in bytes (the stride).
    pub fn stride(&self) -> usize {
        self.stride
    }

    pub fn count(&self) -> u16 {
        self.count
    }

    /// Whether version 6 processes this section; `false`: it is skipped (unknown, deprecated,
    /// or a stride shorter than the message).
    pub fn is_handled(&self) -> bool {
        self.handled
    }

    /// Each message's bytes (a full stride each, which may exceed the message).
    pub fn raw_messages(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        let stride = self.stride.max(1);
        let body = if self.stride == 0 { &[][..] } else { self.body };
        body.chunks_exact(stride)
    }

    /// The decoded messages; none for a skipped section.
    pub fn messages(&self) -> impl Iterator<Item = Message> + 'a {
        let action = self.action;
        let handled = self.handled;
        self.raw_messages()
            .filter(move |_| handled)
            .filter_map(move |bytes| Message::decode(action, bytes))
    }
}

/// Writes frames of at most `mtu` bytes of IP packet: consecutive messages of one action share
/// a section, as OpenBSD writes them.
#[derive(Clone, Debug)]
pub struct FrameBuilder {
    buf: Vec<u8>,
    /// Largest frame (IP payload) allowed.
    max_len: usize,
    /// The open section: its action, the offset of its subheader and its count.
    open: Option<(u8, usize, u16)>,
}

impl FrameBuilder {
    /// A builder for a sync interface of `mtu` bytes (the IP header included, as pf counts
    /// it). A message always goes into an empty frame, even past the limit, so a tiny MTU
    /// cannot stall the sender.
    pub fn new(mtu: usize) -> FrameBuilder {
        let max_len = mtu
            .saturating_sub(IP_HEADER_LEN)
            .clamp(HEADER_LEN, u16::MAX as usize);
        let mut buf = Vec::with_capacity(max_len.min(9000));
        buf.resize(HEADER_LEN, 0);
        Header::new_unchecked(&mut buf[..]).set_version(VERSION);
        FrameBuilder {
            buf,
            max_len,
            open: None,
        }
    }

    /// Whether a message of `action` and `len` bytes fits in this frame (always, in an empty
    /// one).
    pub fn has_room(&self, action: u8, len: usize) -> bool {
        let cost = match self.open {
            Some((open, _, count)) if open == action && count < u16::MAX => len,
            _ => SUBHEADER_LEN + len,
        };
        self.is_empty() || self.buf.len() + cost <= self.max_len
    }

    /// Whether `message` fits in this frame.
    pub fn fits(&self, message: &Message) -> bool {
        self.has_room(message.action(), message.encoded_len())
    }

    /// Adds `message` if it fits; `false` (and nothing written) if it does not.
    pub fn push(&mut self, message: &Message) -> bool {
        if !self.fits(message) {
            return false;
        }
        let action = message.action();
        let len = message.encoded_len();
        match &mut self.open {
            Some((open, at, count)) if *open == action && *count < u16::MAX => {
                *count += 1;
                let (at, count) = (*at, *count);
                SubHeader::new_unchecked(&mut self.buf[at..at + SUBHEADER_LEN]).set_count(count);
            }
            _ => {
                let at = self.buf.len();
                self.buf.extend_from_slice(&[0; SUBHEADER_LEN]);
                let mut sub = SubHeader::new_unchecked(&mut self.buf[at..]);
                sub.set_action(action);
                sub.set_len_words((len / 4) as u8);
                sub.set_count(1);
                self.open = Some((action, at, 1));
            }
        }
        message.write(&mut self.buf);
        true
    }

    /// Whether no message has been added.
    pub fn is_empty(&self) -> bool {
        self.buf.len() == HEADER_LEN
    }

    /// Bytes written so far (the frame's length field once finished).
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// The frame, with its length field set.
    pub fn finish(mut self) -> Vec<u8> {
        let len = self.buf.len().min(u16::MAX as usize) as u16;
        Header::new_unchecked(&mut self.buf[..]).set_len(len);
        self.buf
    }
}

/// One frame holding `messages` (no MTU limit): for tests and one-off messages.
pub fn encode(messages: &[Message]) -> Vec<u8> {
    let mut builder = FrameBuilder::new(usize::MAX);
    for message in messages {
        builder.push(message);
    }
    builder.finish()
}

/// The bulk update request: one UPD_REQ(0, 0) (§3.8, §6.1 TV4).
pub fn bulk_request() -> Vec<u8> {
    encode(&[Message::UpdReq(StateId::BULK_REQUEST)])
}

/// A frame to send: the pfsync payload and its IPv4 destination (224.0.0.240 or the unicast
/// `syncpeer`). Send it as IP protocol 240 with TTL 255, TOS 0x10 and DF from the sync
/// interface (§3.1): [`Datagram::ip_packet`] and [`Datagram::ethernet_frame`] build that.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Datagram {
    pub dst: Ipv4Addr,
    pub payload: Vec<u8>,
}

impl Datagram {
    /// The IPv4 packet from `src` with identification `ident` (OpenBSD draws it at random).
    pub fn ip_packet(&self, src: Ipv4Addr, ident: u16) -> Vec<u8> {
        self.ip_frame(src, ident, Link::default()).ip_packet()
    }

    /// The whole Ethernet frame. `dst_mac` is [`Datagram::group_mac`] for the group; for a
    /// unicast peer the caller looks it up in the neighbour table.
    pub fn ethernet_frame(
        &self,
        src: Ipv4Addr,
        src_mac: MacAddr,
        dst_mac: MacAddr,
        ident: u16,
    ) -> Vec<u8> {
        let link = Link {
            src_mac,
            dst_mac,
            vlan: None,
            outer_vlan: None,
        };
        self.ip_frame(src, ident, link).to_bytes()
    }

    /// The multicast MAC of a group destination (01:00:5e:00:00:f0 for 224.0.0.240), `None`
    /// for a unicast peer.
    pub fn group_mac(&self) -> Option<MacAddr> {
        self.dst
            .is_multicast()
            .then(|| MacAddr::ipv4_multicast(self.dst))
    }

    fn ip_frame(&self, src: Ipv4Addr, ident: u16, link: Link) -> IpFrame {
        IpFrame {
            link,
            src: src.into(),
            dst: self.dst.into(),
            ttl: view::TTL,
            tos: TOS,
            ident,
            dont_fragment: true,
            protocol: view::PROTOCOL,
            payload: self.payload.clone(),
            ..IpFrame::default()
        }
    }
}
