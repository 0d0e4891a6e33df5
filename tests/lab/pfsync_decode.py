#!/usr/bin/env python3
"""Independent decoder and checker for OpenBSD pfsync (PFSYNC_VERSION 6) frames in a pcap.

Written only from reference/protocols.md §3 (3.1 transport, 3.2 frame, 3.3 actions, 3.4
message layouts) and §6.1 (TV4). It deliberately shares no code with rampart's own pfsync
codec, so that a test can catch a bug both sides would otherwise agree on. Standard library
only.

  pfsync_decode.py FILE.pcap [--json] [-v]
      Reads a classic libpcap file (magic a1b2c3d4 / d4c3b2a1, or the nanosecond variant
      a1b23c4d / 4d3cb2a1; link types 1 Ethernet, 113 Linux SLL, 276 Linux SLL2 and 101 raw
      IP; pcapng is not supported). Every IPv4 packet with protocol 240 is a "pfsync frame" and
      is checked:
        - outer IPv4 (§3.1): header checksum, TTL 255, destination 224.0.0.240 or unicast,
          not a fragment. TOS 0x10 and DF are what OpenBSD sends; their absence is a warning.
        - pfsync header (§3.2): version 6, `len` = the whole pfsync frame (header included,
          IP header excluded) = the IP payload length.
        - every section: known action, len×4 not smaller than the message struct, and
          len×4×count inside the frame. The sections must consume the frame exactly.
        - every message: decoded with the §3.4 struct tables and sanity-checked (af 2 or 24,
          proto non-zero, key af consistent, timeout < PFTM_MAX, peer states in range,
          creatorid non-zero, BUS status 1/2, ...).
      Output: a summary (or one JSON object with --json):
        {"frames", "frames_ok", "errors", "warnings", "actions", "states", "bulk_requests",
         "creators", "pcap_frames"}
      "frames" counts pfsync frames, "pcap_frames" all records in the file. "actions" counts
      messages per action; BUS is split into BUS_START / BUS_END. "states" = full state
      messages in INS + UPD sections. "bulk_requests" = UPD_REQ messages with id 0 and
      creatorid 0. "creators" = sorted distinct creatorids of the messages that carry state
      data (INS, UPD, DEL, UPD_C, DEL_C), read as big-endian 32-bit numbers.
      Messages are counted as soon as they are inside the frame, even if a sanity check on
      them failed (the failure is in "errors" anyway).
      -v prints one line per message (on stderr when --json is given).
      Exit status: 0 if every pfsync frame decoded cleanly (also when there are none: check
      "frames" yourself), 1 if any error, 2 on usage or file errors.

  pfsync_decode.py --self-test
      Builds frames by hand from the §3.4 tables (BUS start/end, an INS with one IPv4 TCP
      state, UPD_C, DEL_C, a multi-section frame), wraps them in in-memory pcaps (every
      supported link type and magic), decodes TV4 from §6.1, and checks that a series of
      malformed frames is rejected. Exit 0 if all checks pass, 1 otherwise.

Warnings never change the exit status; they flag things a v6 receiver tolerates but a
current OpenBSD sender would not produce (for example a message stride larger than the
struct, which §3.2 allows so that newer peers can append fields).
"""

import argparse
import ipaddress
import json
import struct
import sys

# --------------------------------------------------------------------------------------------
# Constants (protocols.md §3.1 - §3.4)
# --------------------------------------------------------------------------------------------

PFSYNC_VERSION = 6
IPPROTO_PFSYNC = 240
PFSYNC_GROUP = bytes([224, 0, 0, 240])  # INADDR_PFSYNC_GROUP
PFSYNC_TTL = 255
PFSYNC_TOS = 0x10  # IPTOS_LOWDELAY (sent, not checked by the receiver)

AF_INET = 2
AF_INET6 = 24  # OpenBSD's value; protocols.md marks it as an inference (§3.4, §7 item 5)
AF_NAMES = {AF_INET: "inet", AF_INET6: "inet6"}

PF_IN, PF_OUT = 1, 2
PFTM_MAX = 20  # a state's timeout index must be below this (§3.4, §3.7)
PF_TCPS_PROXY_DST = 12  # highest peer state the receiver accepts (§3.7)
PFOTHERS_MULTIPLE = 2  # highest peer state for UDP / other protocols (§3.4)
PFSTATE_ACK = 0x0010  # "please INS_ACK, I am deferring a packet"
BUS_START, BUS_END = 1, 2

IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMPV6 = 1, 6, 17, 58
PROTO_NAMES = {IPPROTO_ICMP: "icmp", IPPROTO_TCP: "tcp", IPPROTO_UDP: "udp", IPPROTO_ICMPV6: "icmp6"}

# PFTM_* indexes valid for each protocol (§3.4 timeout list). Only used for a warning.
TIMEOUTS_TCP = range(0, 6)  # tcp.first .. tcp.closed
TIMEOUTS_UDP = range(6, 9)  # udp.first .. udp.multiple
TIMEOUTS_ICMP = range(9, 11)  # icmp.first, icmp.error
TIMEOUTS_OTHER = range(11, 14)  # other.first .. other.multiple


# --------------------------------------------------------------------------------------------
# Struct layouts, transcribed row by row from the tables in §3.2 / §3.4
# --------------------------------------------------------------------------------------------


class Layout:
    """A packed C struct given as (offset, struct code, field name) rows in network byte order.

    The rows are copied from protocols.md. The constructor checks that each documented offset
    equals the sum of the sizes before it and that the total is the documented size, so a typo
    in a row cannot silently shift every later field.
    """

    def __init__(self, name, size, rows):
        fmt, pos = "!", 0
        for off, code, field in rows:
            if off != pos:
                raise AssertionError(f"{name}.{field}: documented offset {off}, computed {pos}")
            pos += struct.calcsize("!" + code)
            fmt += code
        if pos != size:
            raise AssertionError(f"{name}: documented size {size}, computed {pos}")
        self.name = name
        self.size = size
        self.fields = [field for _, _, field in rows]
        self.struct = struct.Struct(fmt)

    def unpack(self, buf, off=0):
        return dict(zip(self.fields, self.struct.unpack_from(buf, off)))

    def pack(self, **values):
        """Builds the struct (used by the self-test); missing fields are zero."""
        unknown = set(values) - set(self.fields)
        if unknown:
            raise KeyError(f"{self.name}: no field {sorted(unknown)}")
        defaults = {f: (b"" if c.endswith("s") else 0) for f, c in zip(self.fields, self._codes())}
        defaults.update(values)
        return self.struct.pack(*(defaults[f] for f in self.fields))

    def _codes(self):
        # Split the struct format back into one code per field (a count prefix only occurs on 's').
        codes, num = [], ""
        for ch in self.struct.format.lstrip("!"):
            if ch.isdigit():
                num += ch
            else:
                codes.append(num + ch)
                num = ""
        return codes


# §3.2 struct pfsync_header (20 B). `len` covers this header and every section after it.
PFSYNC_HEADER = Layout("pfsync_header", 20, [
    (0, "B", "version"),
    (1, "B", "pad"),
    (2, "H", "len"),
    (4, "16s", "pfcksum"),  # zero from current senders, ignored by receivers
])

# §3.2 struct pfsync_subheader (4 B). `len` is the size of ONE message in 32-bit words.
PFSYNC_SUBHEADER = Layout("pfsync_subheader", 4, [
    (0, "B", "action"),
    (1, "B", "len"),
    (2, "H", "count"),
])

# §3.4 pfsync_state_scrub (8 B) + pfsync_state_peer (32 B), flattened into one table.
PFSYNC_STATE_PEER = Layout("pfsync_state_peer", 32, [
    (0, "H", "pfss_flags"),  # scrub.pfss_flags (only PFSS_TIMESTAMP 0x0001 exported)
    (2, "B", "pfss_ttl"),  # scrub.pfss_ttl
    (3, "B", "scrub_flag"),  # scrub.scrub_flag (0x01 VALID)
    (4, "I", "pfss_ts_mod"),  # scrub.pfss_ts_mod
    (8, "I", "seqlo"),
    (12, "I", "seqhi"),
    (16, "I", "seqdiff"),
    (20, "H", "max_win"),
    (22, "H", "mss"),
    (24, "B", "state"),
    (25, "B", "wscale"),
    (26, "6s", "pad"),
])

# §3.4 pfsync_state_key (40 B). The ports are read big-endian like every other integer.
PFSYNC_STATE_KEY = Layout("pfsync_state_key", 40, [
    (0, "16s", "addr0"),
    (16, "16s", "addr1"),
    (32, "H", "port0"),
    (34, "H", "port1"),
    (36, "H", "rdomain"),
    (38, "B", "af"),
    (39, "B", "pad"),
])

# §3.4 pfsync_state (264 B), used by INS, UPD and DEL. `id` and `creatorid` are opaque bytes
# on the wire; they are read here as big-endian numbers (id = htobe64(counter) on OpenBSD).
PFSYNC_STATE = Layout("pfsync_state", 264, [
    (0, "Q", "id"),
    (8, "16s", "ifname"),
    (24, "40s", "key_wire"),  # key[PF_SK_WIRE]
    (64, "40s", "key_stack"),  # key[PF_SK_STACK]
    (104, "32s", "src"),
    (136, "32s", "dst"),
    (168, "16s", "rt_addr"),
    (184, "I", "rule"),
    (188, "I", "anchor"),
    (192, "I", "nat_rule"),  # always 0xffffffff
    (196, "I", "creation"),  # age in seconds
    (200, "I", "expire"),  # seconds remaining
    (204, "I", "packets0_hi"),  # packets[0] as hi32, lo32
    (208, "I", "packets0_lo"),
    (212, "I", "packets1_hi"),
    (216, "I", "packets1_lo"),
    (220, "I", "bytes0_hi"),
    (224, "I", "bytes0_lo"),
    (228, "I", "bytes1_hi"),
    (232, "I", "bytes1_lo"),
    (236, "I", "creatorid"),
    (240, "i", "rtableid_wire"),
    (244, "i", "rtableid_stack"),
    (248, "H", "max_mss"),
    (250, "B", "af"),  # wire af
    (251, "B", "proto"),
    (252, "B", "direction"),
    (253, "B", "log"),
    (254, "B", "rt"),
    (255, "B", "timeout"),
    (256, "B", "sync_flags"),
    (257, "B", "updates"),
    (258, "B", "min_ttl"),
    (259, "B", "set_tos"),
    (260, "H", "state_flags"),
    (262, "B", "set_prio0"),
    (263, "B", "set_prio1"),
])

# §3.4 pfsync_upd_c (84 B): the compressed update.
PFSYNC_UPD_C = Layout("pfsync_upd_c", 84, [
    (0, "Q", "id"),
    (8, "32s", "src"),
    (40, "32s", "dst"),
    (72, "I", "creatorid"),
    (76, "I", "expire"),  # 0 from current OpenBSD, ignored by the receiver
    (80, "B", "timeout"),
    (81, "B", "state_flags"),  # 0 from current OpenBSD, ignored by the receiver
    (82, "2s", "pad"),
])

# §3.4 pfsync_ins_ack / pfsync_upd_req / pfsync_del_c (12 B each).
PFSYNC_ID = Layout("pfsync_ins_ack/upd_req/del_c", 12, [
    (0, "Q", "id"),
    (8, "I", "creatorid"),
])

# §3.4 pfsync_clr (20 B).
PFSYNC_CLR = Layout("pfsync_clr", 20, [
    (0, "16s", "ifname"),  # empty = all interfaces
    (16, "I", "creatorid"),
])

# §3.4 pfsync_bus (12 B).
PFSYNC_BUS = Layout("pfsync_bus", 12, [
    (0, "I", "creatorid"),
    (4, "I", "endtime"),  # always 0 from current OpenBSD
    (8, "B", "status"),  # 1 START, 2 END
    (9, "3s", "pad"),
])

# §3.4 pfsync_tdb (52 B), IPsec SA replay counters.
PFSYNC_TDB = Layout("pfsync_tdb", 52, [
    (0, "I", "spi"),
    (4, "28s", "dst"),  # OpenBSD sockaddr_union
    (32, "Q", "rpl"),
    (40, "Q", "cur_bytes"),
    (48, "B", "sproto"),
    (49, "B", "updates"),
    (50, "H", "rdomain"),
])

# EOF carries no message (§3.3 "—"): a zero-size layout.
PFSYNC_EOF = Layout("eof", 0, [])

# §3.3 action table (OpenBSD if_pfsync.h 1.65): number -> (name, message layout or None).
# None marks the deprecated actions that have no documented layout and are never sent.
ACTIONS = {
    0: ("CLR", PFSYNC_CLR),
    1: ("OINS", None),
    2: ("INS_ACK", PFSYNC_ID),
    3: ("OUPD", None),
    4: ("UPD_C", PFSYNC_UPD_C),
    5: ("UPD_REQ", PFSYNC_ID),
    6: ("DEL", PFSYNC_STATE),
    7: ("DEL_C", PFSYNC_ID),
    8: ("INS_F", None),
    9: ("DEL_F", None),
    10: ("BUS", PFSYNC_BUS),
    11: ("OTDB", None),
    12: ("EOF", PFSYNC_EOF),
    13: ("INS", PFSYNC_STATE),
    14: ("UPD", PFSYNC_STATE),
    15: ("TDB", PFSYNC_TDB),
}
ACTION_NUMBERS = {name: num for num, (name, _) in ACTIONS.items()}

# The keys always present in the "actions" summary (BUS is split by status).
COUNTED_ACTIONS = ["CLR", "INS_ACK", "UPD_C", "UPD_REQ", "DEL", "DEL_C", "BUS_START", "BUS_END",
                   "EOF", "INS", "UPD", "TDB"]
FULL_STATE_ACTIONS = ("INS", "UPD")  # counted in "states"
CREATOR_ACTIONS = ("INS", "UPD", "DEL", "UPD_C", "DEL_C")  # contribute to "creators"


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def inet_checksum(data: bytes) -> int:
    """RFC 1071 Internet checksum (the value to put in the checksum field)."""
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def c_string(raw: bytes):
    """Decodes a fixed-size NUL-terminated C char array. Returns (text, problem or None)."""
    if b"\0" not in raw:
        return raw.decode("latin-1"), "is not NUL-terminated"
    text = raw.split(b"\0", 1)[0]
    if any(c < 0x21 or c > 0x7E for c in text):
        return text.decode("latin-1"), "has non-printable characters"
    return text.decode("ascii"), None


def fmt_addr(raw16: bytes, af: int) -> str:
    if af == AF_INET:
        return str(ipaddress.IPv4Address(raw16[:4]))
    if af == AF_INET6:
        return str(ipaddress.IPv6Address(raw16))
    return "af%d:%s" % (af, raw16.hex())


def u64(hi: int, lo: int) -> int:
    return (hi << 32) | lo


# --------------------------------------------------------------------------------------------
# Message decoders. Each takes (buf, offset) and returns (message dict, errors, warnings).
# --------------------------------------------------------------------------------------------


def check_peer(peer, side, tcp, errs, warns):
    """Peer state range checks (§3.4 state values, §3.7 receiver validation)."""
    if peer["state"] > PF_TCPS_PROXY_DST:
        errs.append(f"{side}.state {peer['state']} > PF_TCPS_PROXY_DST ({PF_TCPS_PROXY_DST}); "
                    "the receiver rejects it")
    elif tcp is False and peer["state"] > PFOTHERS_MULTIPLE:
        warns.append(f"{side}.state {peer['state']} is not a UDP/other state (0..2)")


def decode_key(raw: bytes, which: str, errs, warns):
    key = PFSYNC_STATE_KEY.unpack(raw)
    if key["af"] not in AF_NAMES:
        errs.append(f"{which}.af {key['af']} is neither AF_INET (2) nor AF_INET6 (24)")
    elif key["af"] == AF_INET and (any(key["addr0"][4:]) or any(key["addr1"][4:])):
        # protocols.md §3.4 (inference): IPv4 sits in bytes 0..3 and the rest is zero.
        warns.append(f"{which}: IPv4 address with non-zero bytes 4..15")
    return key


def decode_state(buf, off):
    """pfsync_state (INS / UPD / DEL)."""
    errs, warns = [], []
    st = PFSYNC_STATE.unpack(buf, off)
    st["ifname"], problem = c_string(st["ifname"])
    if problem:
        errs.append(f"ifname {st['ifname']!r} {problem}")
    elif not st["ifname"]:
        warns.append('empty ifname (floating states export "all")')
    st["key_wire"] = decode_key(st["key_wire"], "key[wire]", errs, warns)
    st["key_stack"] = decode_key(st["key_stack"], "key[stack]", errs, warns)
    st["src"] = PFSYNC_STATE_PEER.unpack(st["src"])
    st["dst"] = PFSYNC_STATE_PEER.unpack(st["dst"])
    st["packets"] = [u64(st.pop("packets0_hi"), st.pop("packets0_lo")),
                     u64(st.pop("packets1_hi"), st.pop("packets1_lo"))]
    st["bytes"] = [u64(st.pop("bytes0_hi"), st.pop("bytes0_lo")),
                   u64(st.pop("bytes1_hi"), st.pop("bytes1_lo"))]

    if st["creatorid"] == 0:
        errs.append("creatorid 0 (the receiver rejects it)")
    if st["af"] not in AF_NAMES:
        errs.append(f"af {st['af']} is neither AF_INET (2) nor AF_INET6 (24)")
    elif st["key_wire"]["af"] != st["af"]:
        errs.append(f"af {st['af']} differs from key[wire].af {st['key_wire']['af']} "
                    "(af is the wire af)")
    if st["proto"] == 0:
        errs.append("proto 0")
    if st["direction"] not in (PF_IN, PF_OUT):
        errs.append(f"direction {st['direction']} is neither PF_IN (1) nor PF_OUT (2)")
    if st["timeout"] >= PFTM_MAX:
        errs.append(f"timeout {st['timeout']} >= PFTM_MAX ({PFTM_MAX}); the receiver rejects it")
    else:
        expected = {IPPROTO_TCP: TIMEOUTS_TCP, IPPROTO_UDP: TIMEOUTS_UDP,
                    IPPROTO_ICMP: TIMEOUTS_ICMP, IPPROTO_ICMPV6: TIMEOUTS_ICMP}.get(
                        st["proto"], TIMEOUTS_OTHER)
        if st["timeout"] not in expected:
            warns.append(f"timeout {st['timeout']} is not a "
                         f"{PROTO_NAMES.get(st['proto'], 'other')} timeout")
    tcp = st["proto"] == IPPROTO_TCP
    check_peer(st["src"], "src", tcp, errs, warns)
    check_peer(st["dst"], "dst", tcp, errs, warns)
    if st["nat_rule"] != 0xFFFFFFFF:
        warns.append(f"nat_rule 0x{st['nat_rule']:08x} (OpenBSD always sends 0xffffffff)")
    return st, errs, warns


def decode_upd_c(buf, off):
    errs, warns = [], []
    m = PFSYNC_UPD_C.unpack(buf, off)
    m["src"] = PFSYNC_STATE_PEER.unpack(m["src"])
    m["dst"] = PFSYNC_STATE_PEER.unpack(m["dst"])
    if m["creatorid"] == 0:
        errs.append("creatorid 0")
    if m["timeout"] >= PFTM_MAX:
        errs.append(f"timeout {m['timeout']} >= PFTM_MAX ({PFTM_MAX}); the receiver rejects it")
    # The protocol is not in an UPD_C, so only the common range is checked.
    check_peer(m["src"], "src", None, errs, warns)
    check_peer(m["dst"], "dst", None, errs, warns)
    return m, errs, warns


def decode_id_msg(buf, off, action):
    """INS_ACK, UPD_REQ, DEL_C: (id, creatorid). UPD_REQ 0/0 is the bulk request."""
    errs = []
    m = PFSYNC_ID.unpack(buf, off)
    m["bulk"] = action == "UPD_REQ" and m["id"] == 0 and m["creatorid"] == 0
    if m["creatorid"] == 0 and not m["bulk"]:
        errs.append("creatorid 0 (only the bulk request UPD_REQ id 0 / creatorid 0 may have it)")
    return m, errs, []


def decode_clr(buf, off):
    errs = []
    m = PFSYNC_CLR.unpack(buf, off)
    m["ifname"], problem = c_string(m["ifname"])
    if problem:
        errs.append(f"ifname {m['ifname']!r} {problem}")
    if m["creatorid"] == 0:
        errs.append("creatorid 0")
    return m, errs, []


def decode_bus(buf, off):
    errs = []
    m = PFSYNC_BUS.unpack(buf, off)
    if m["status"] not in (BUS_START, BUS_END):
        errs.append(f"status {m['status']} is neither START (1) nor END (2)")
    return m, errs, []


def decode_tdb(buf, off):
    return PFSYNC_TDB.unpack(buf, off), [], []


def decode_message(action, buf, off):
    if action in ("INS", "UPD", "DEL"):
        return decode_state(buf, off)
    if action == "UPD_C":
        return decode_upd_c(buf, off)
    if action in ("INS_ACK", "UPD_REQ", "DEL_C"):
        return decode_id_msg(buf, off, action)
    if action == "CLR":
        return decode_clr(buf, off)
    if action == "BUS":
        return decode_bus(buf, off)
    if action == "TDB":
        return decode_tdb(buf, off)
    raise AssertionError(action)


def describe(action, m) -> str:
    """One human-readable line per message (for -v)."""
    if action in ("INS", "UPD", "DEL"):
        k = m["key_wire"]
        af = k["af"]
        return (f"{action} id={m['id']:016x} creator={m['creatorid']:08x} if={m['ifname']} "
                f"{PROTO_NAMES.get(m['proto'], 'proto%d' % m['proto'])} "
                f"{fmt_addr(k['addr0'], af)}:{k['port0']} <> {fmt_addr(k['addr1'], af)}:{k['port1']} "
                f"dir={m['direction']} states={m['src']['state']}:{m['dst']['state']} "
                f"timeout={m['timeout']} expire={m['expire']}s age={m['creation']}s "
                f"flags=0x{m['state_flags']:04x}")
    if action == "UPD_C":
        return (f"UPD_C id={m['id']:016x} creator={m['creatorid']:08x} "
                f"states={m['src']['state']}:{m['dst']['state']} timeout={m['timeout']}")
    if action in ("INS_ACK", "UPD_REQ", "DEL_C"):
        extra = " (bulk request)" if m.get("bulk") else ""
        return f"{action} id={m['id']:016x} creator={m['creatorid']:08x}{extra}"
    if action == "CLR":
        return f"CLR creator={m['creatorid']:08x} if={m['ifname'] or '(all)'}"
    if action == "BUS":
        status = {BUS_START: "START", BUS_END: "END"}.get(m["status"], str(m["status"]))
        return f"BUS {status} creator={m['creatorid']:08x} endtime={m['endtime']}"
    if action == "TDB":
        return f"TDB spi=0x{m['spi']:08x} rpl={m['rpl']} bytes={m['cur_bytes']} sproto={m['sproto']}"
    return action


# --------------------------------------------------------------------------------------------
# Frame decoding
# --------------------------------------------------------------------------------------------


class Frame:
    """Everything learned about one pfsync frame."""

    def __init__(self, number):
        self.number = number
        self.errors = []
        self.warnings = []
        self.ip = {}  # outer IPv4 fields
        self.header = None  # pfsync_header fields
        self.sections = []  # (subheader dict, action name)
        self.messages = []  # (action name, message dict)


def decode_pfsync(payload: bytes, fr: Frame):
    """Walks a pfsync frame (the IP payload) per §3.2. Appends to fr.errors / fr.messages."""
    err, warn = fr.errors.append, fr.warnings.append
    if len(payload) < PFSYNC_HEADER.size:
        err(f"IP payload of {len(payload)} B is shorter than the 20-byte pfsync header")
        return
    hdr = PFSYNC_HEADER.unpack(payload)
    fr.header = hdr
    if hdr["version"] != PFSYNC_VERSION:
        err(f"pfsync version {hdr['version']}, expected {PFSYNC_VERSION} (the receiver drops it)")
        return
    if hdr["pad"]:
        warn(f"header pad byte is 0x{hdr['pad']:02x}, not 0")
    if any(hdr["pfcksum"]):
        warn("header pfcksum is not zero (current senders leave it zero; receivers ignore it)")

    # §3.2: len = bytes from the start of the pfsync header to the end of the frame.
    end = hdr["len"]
    if end < PFSYNC_HEADER.size:
        err(f"header len {end} is smaller than the header itself")
        return
    if end > len(payload):
        err(f"header len {end} > IP payload length {len(payload)} (the receiver drops the frame)")
        return
    if end < len(payload):
        err(f"header len {end} < IP payload length {len(payload)}: {len(payload) - end} "
            "trailing bytes (the receiver trims them, but a sender must not add them)")

    off, index = PFSYNC_HEADER.size, 0
    while off < end:
        index += 1
        where = f"section {index} @{off}"
        if end - off < PFSYNC_SUBHEADER.size:
            err(f"{where}: {end - off} bytes left, too few for a 4-byte subheader")
            return
        sub = PFSYNC_SUBHEADER.unpack(payload, off)
        num, words, count = sub["action"], sub["len"], sub["count"]
        stride = words * 4
        name, layout = ACTIONS.get(num, (f"action{num}", None))
        fr.sections.append((sub, name))
        where = f"section {index} ({name}) @{off}"
        body = off + PFSYNC_SUBHEADER.size
        total = stride * count
        if body + total > end:
            err(f"{where}: len {words} words x 4 x count {count} = {total} B overruns the frame "
                f"({end - body} B left)")
            return

        # §3.2: unknown actions and too-short messages are skipped if len and count are both
        # non-zero; otherwise the receiver abandons the rest of the packet.
        problem = None
        if num not in ACTIONS:
            problem = f"unknown action {num}"
        elif layout is None:
            problem = f"deprecated action {num} ({name}), not sent by PFSYNC_VERSION 6"
        elif stride < layout.size:
            problem = (f"message len {words} words = {stride} B is smaller than {layout.name} "
                       f"({layout.size} B = {layout.size // 4} words)")
        if problem:
            if words and count:
                err(f"{where}: {problem}; the receiver skips this section")
                off = body + total
                continue
            err(f"{where}: {problem}; with len {words} and count {count} the receiver abandons "
                "the rest of the packet")
            return

        if name == "EOF":
            warn(f"{where}: deprecated EOF section (old pfsync ended frames with it; "
                 "current receivers skip it)")
            fr.messages.append(("EOF", {}))
            off = body + total
            continue
        if stride > layout.size:
            warn(f"{where}: message len {stride} B > {layout.name} {layout.size} B "
                 "(allowed for newer peers; OpenBSD v6 sends the exact size)")
        if count == 0:
            warn(f"{where}: empty section (count 0)")

        for i in range(count):
            m, m_errs, m_warns = decode_message(name, payload, body + i * stride)
            fr.messages.append((name, m))
            for e in m_errs:
                err(f"{where} message {i + 1}: {e}")
            for w in m_warns:
                warn(f"{where} message {i + 1}: {w}")
        off = body + total


def decode_ipv4(ip: bytes, fr: Frame):
    """Checks the outer IPv4 header per §3.1 and hands the payload to decode_pfsync."""
    err, warn = fr.errors.append, fr.warnings.append
    ihl = (ip[0] & 0x0F) * 4
    if ihl < 20:
        err(f"IPv4 header length {ihl} < 20")
        return
    if len(ip) < ihl:
        err(f"IPv4 header truncated ({len(ip)} of {ihl} bytes captured)")
        return
    tos, total, ident, frag, ttl, proto, cksum = struct.unpack_from("!xBHHHBBH", ip, 0)
    src, dst = ip[12:16], ip[16:20]
    fr.ip = {"src": str(ipaddress.IPv4Address(src)), "dst": str(ipaddress.IPv4Address(dst)),
             "tos": tos, "total_length": total, "id": ident, "frag": frag, "ttl": ttl,
             "proto": proto, "checksum": cksum, "ihl": ihl}
    if total < ihl:
        err(f"IPv4 total length {total} < header length {ihl}")
        return
    if len(ip) < total:
        err(f"IPv4 total length {total} but only {len(ip)} bytes captured (snaplen too small?)")
        return
    # The checksum over the header (options included) must fold to zero.
    if inet_checksum(ip[:ihl]) != 0:
        good = inet_checksum(ip[:10] + b"\0\0" + ip[12:ihl])
        err(f"IPv4 header checksum 0x{cksum:04x} is wrong (expected 0x{good:04x})")
    if ttl != PFSYNC_TTL:
        err(f"TTL {ttl}, must be 255 (the receiver drops anything else)")
    d = ipaddress.IPv4Address(dst)
    if dst != PFSYNC_GROUP:
        if d.is_multicast:
            err(f"destination {d} is multicast but not the pfsync group 224.0.0.240")
        elif d.is_unspecified or int(d) >= 0xF0000000:
            err(f"destination {d} is neither 224.0.0.240 nor unicast")
    if frag & 0x2000 or frag & 0x1FFF:
        err(f"IPv4 fragment (MF={frag >> 13 & 1}, offset={(frag & 0x1FFF) * 8}); "
            "pfsync packets must not be fragmented")
        return
    if frag & 0x8000:
        warn("IPv4 reserved flag bit set")
    if not frag & 0x4000:
        warn("DF not set (OpenBSD sends pfsync with DF)")
    if tos != PFSYNC_TOS:
        warn(f"TOS 0x{tos:02x} (OpenBSD sends 0x10)")
    decode_pfsync(ip[ihl:total], fr)


# --------------------------------------------------------------------------------------------
# pcap reading
# --------------------------------------------------------------------------------------------

LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LINUX_SLL = 113
LINKTYPE_LINUX_SLL2 = 276
ETHERTYPE_IPV4 = 0x0800
VLAN_ETHERTYPES = (0x8100, 0x88A8, 0x9100)  # 802.1Q, 802.1ad, old QinQ

PCAP_MAGICS = {
    b"\xa1\xb2\xc3\xd4": ">",  # microseconds, big-endian writer
    b"\xd4\xc3\xb2\xa1": "<",  # microseconds, little-endian writer
    b"\xa1\xb2\x3c\x4d": ">",  # nanoseconds
    b"\x4d\x3c\xb2\xa1": "<",
}
PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"


class PcapError(Exception):
    """A usage or file-level problem (exit status 2)."""


def read_pcap(data: bytes):
    """Returns (linktype, [(frame number, bytes)], problem or None). Timestamps are unused."""
    if len(data) < 24:
        if data[:4] == PCAPNG_MAGIC:
            raise PcapError("this is a pcapng file; only classic pcap is supported "
                            "(tcpdump -w writes pcap; or convert: editcap -F pcap in.pcapng out.pcap)")
        raise PcapError(f"file too short for a pcap header ({len(data)} bytes)")
    magic = data[:4]
    if magic == PCAPNG_MAGIC:
        raise PcapError("this is a pcapng file; only classic pcap is supported "
                        "(tcpdump -w writes pcap; or convert: editcap -F pcap in.pcapng out.pcap)")
    if magic not in PCAP_MAGICS:
        raise PcapError(f"not a pcap file (magic {magic.hex()})")
    order = PCAP_MAGICS[magic]
    _major, _minor, _zone, _sigfigs, _snaplen, network = struct.unpack_from(order + "HHiIII", data, 4)
    linktype = network & 0xFFFF  # the upper bits may carry FCS information
    if linktype not in (LINKTYPE_ETHERNET, LINKTYPE_RAW, LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2):
        raise PcapError(f"unsupported link type {linktype} (supported: 1 Ethernet, 101 raw IP, "
                        "113 Linux SLL, 276 Linux SLL2)")
    records, off, number = [], 24, 0
    while off < len(data):
        if len(data) - off < 16:
            return linktype, records, f"truncated record header after frame {number}"
        _sec, _frac, incl, _orig = struct.unpack_from(order + "IIII", data, off)
        off += 16
        if off + incl > len(data):
            return linktype, records, f"frame {number + 1} truncated ({incl} bytes announced)"
        number += 1
        records.append((number, data[off:off + incl]))
        off += incl
    return linktype, records, None


def ipv4_of(linktype: int, frame: bytes):
    """The IPv4 packet inside a link-layer frame, or None if it is not IPv4."""
    if linktype == LINKTYPE_RAW:
        return frame if frame[:1] and frame[0] >> 4 == 4 else None
    if linktype == LINKTYPE_ETHERNET:
        type_off = 12  # dst MAC, src MAC, ethertype
    elif linktype == LINKTYPE_LINUX_SLL:
        type_off = 14  # pkttype, hatype, halen, addr[8], protocol
    else:  # LINKTYPE_LINUX_SLL2
        type_off = 0  # protocol, reserved, ifindex, hatype, pkttype, halen, addr[8]
    header = {LINKTYPE_ETHERNET: 14, LINKTYPE_LINUX_SLL: 16, LINKTYPE_LINUX_SLL2: 20}[linktype]
    if len(frame) < header:
        return None
    ethertype = struct.unpack_from("!H", frame, type_off)[0]
    off = header
    while ethertype in VLAN_ETHERTYPES:  # skip VLAN tags: TCI (2 B) then the inner type
        if len(frame) < off + 4:
            return None
        ethertype = struct.unpack_from("!H", frame, off + 2)[0]
        off += 4
    return frame[off:] if ethertype == ETHERTYPE_IPV4 else None


# --------------------------------------------------------------------------------------------
# Whole-capture decoding and summary
# --------------------------------------------------------------------------------------------


class Summary:
    def __init__(self):
        self.linktype = None
        self.pcap_frames = 0
        self.frames = 0
        self.frames_ok = 0
        self.errors = []
        self.warnings = []
        self.actions = {name: 0 for name in COUNTED_ACTIONS}
        self.states = 0
        self.bulk_requests = 0
        self.creators = set()
        self.decoded = []  # Frame objects, only when keep_frames is set

    def add(self, fr: Frame):
        self.frames += 1
        if not fr.errors:
            self.frames_ok += 1
        self.errors += [f"frame {fr.number}: {e}" for e in fr.errors]
        self.warnings += [f"frame {fr.number}: {w}" for w in fr.warnings]
        for action, m in fr.messages:
            key = action
            if action == "BUS":
                key = {BUS_START: "BUS_START", BUS_END: "BUS_END"}.get(m["status"], "BUS_BAD")
            self.actions[key] = self.actions.get(key, 0) + 1
            if action in FULL_STATE_ACTIONS:
                self.states += 1
            if action == "UPD_REQ" and m["bulk"]:
                self.bulk_requests += 1
            if action in CREATOR_ACTIONS:
                self.creators.add(m["creatorid"])

    def as_json(self):
        return {
            "frames": self.frames,
            "frames_ok": self.frames_ok,
            "errors": self.errors,
            "warnings": self.warnings,
            "actions": self.actions,
            "states": self.states,
            "bulk_requests": self.bulk_requests,
            "creators": sorted(self.creators),
            "pcap_frames": self.pcap_frames,
        }

    def text(self, name):
        lines = [f"{name}: {self.pcap_frames} frames (link type {self.linktype}), "
                 f"{self.frames} pfsync, {self.frames_ok} clean"]
        counted = ", ".join(f"{k} {v}" for k, v in self.actions.items() if v)
        lines.append(f"  messages: {counted or 'none'}")
        lines.append(f"  full states (INS + UPD): {self.states}")
        lines.append(f"  bulk requests (UPD_REQ id 0 creatorid 0): {self.bulk_requests}")
        lines.append("  creatorids: " + (", ".join(f"0x{c:08x}" for c in sorted(self.creators))
                                         or "none"))
        if not self.frames:
            lines.append("  note: no pfsync frames (IPv4 protocol 240) in this capture")
        if self.warnings:
            lines.append(f"warnings ({len(self.warnings)}):")
            lines += [f"  {w}" for w in self.warnings]
        lines.append(f"errors ({len(self.errors)}):" if self.errors else "no errors")
        lines += [f"  {e}" for e in self.errors]
        return "\n".join(lines)


def decode_capture(data: bytes, keep_frames=False, verbose=None) -> Summary:
    """Decodes every pfsync frame of a pcap held in memory. Raises PcapError on file errors."""
    linktype, records, problem = read_pcap(data)
    s = Summary()
    s.linktype = linktype
    s.pcap_frames = len(records)
    for number, frame in records:
        ip = ipv4_of(linktype, frame)
        if ip is None or len(ip) < 10 or ip[0] >> 4 != 4 or ip[9] != IPPROTO_PFSYNC:
            continue
        fr = Frame(number)
        decode_ipv4(ip, fr)
        s.add(fr)
        if keep_frames:
            s.decoded.append(fr)
        if verbose:
            for action, m in fr.messages:
                print(f"frame {number}: {describe(action, m)}", file=verbose)
    if problem:
        s.errors.append(f"pcap: {problem}")
    return s


# --------------------------------------------------------------------------------------------
# Self-test: frames built by hand from the §3.4 tables
# --------------------------------------------------------------------------------------------

CREATOR_A = 0x1A2B3C4D
CREATOR_B = 0x00C0FFEE


def st_key(a0, a1, p0, p1, af=AF_INET, rdomain=0):
    def addr(a):
        return ipaddress.ip_address(a).packed.ljust(16, b"\0")
    return PFSYNC_STATE_KEY.pack(addr0=addr(a0), addr1=addr(a1), port0=p0, port1=p1,
                                 rdomain=rdomain, af=af)


def st_peer(state, seqlo=0, seqhi=0, max_win=0, wscale=0):
    return PFSYNC_STATE_PEER.pack(state=state, seqlo=seqlo, seqhi=seqhi, max_win=max_win,
                                  wscale=wscale)


def build_state(**over):
    """A sane established IPv4 TCP state (192.0.2.10:40000 -> 198.51.100.20:443, inbound)."""
    key = st_key("192.0.2.10", "198.51.100.20", 40000, 443)
    fields = dict(
        id=0x0000000100000001, ifname=b"all", key_wire=key, key_stack=key,
        src=st_peer(4, seqlo=1000, seqhi=66000, max_win=65535, wscale=0x87),
        dst=st_peer(4, seqlo=5000, seqhi=70000, max_win=65535, wscale=0x87),
        rule=0xFFFFFFFF, anchor=0xFFFFFFFF, nat_rule=0xFFFFFFFF, creation=12, expire=86388,
        packets0_lo=10, packets1_lo=9, bytes0_lo=1500, bytes1_lo=9000, creatorid=CREATOR_A,
        af=AF_INET, proto=IPPROTO_TCP, direction=PF_IN, timeout=2)  # 2 = tcp.established
    fields.update(over)
    return PFSYNC_STATE.pack(**fields)


def section(action, messages, words=None, count=None):
    """A subheader plus its messages; words/count override the computed values."""
    size = len(messages[0]) if messages else ACTIONS[ACTION_NUMBERS[action]][1].size
    words = size // 4 if words is None else words
    count = len(messages) if count is None else count
    return PFSYNC_SUBHEADER.pack(action=ACTION_NUMBERS[action], len=words, count=count) + b"".join(messages)


def pfsync_frame(*sections, length=None, version=PFSYNC_VERSION, trailer=b""):
    body = b"".join(sections)
    length = PFSYNC_HEADER.size + len(body) if length is None else length
    return PFSYNC_HEADER.pack(version=version, len=length) + body + trailer


def ipv4_packet(payload, src="192.0.2.1", dst="224.0.0.240", ttl=255, tos=0x10, frag=0x4000,
                ident=1, bad_checksum=False):
    hdr = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, tos, 20 + len(payload), ident, frag, ttl,
                                IPPROTO_PFSYNC, 0, ipaddress.IPv4Address(src).packed,
                                ipaddress.IPv4Address(dst).packed))
    struct.pack_into("!H", hdr, 10, inet_checksum(bytes(hdr)) ^ (0x0101 if bad_checksum else 0))
    return bytes(hdr) + payload


def link_frame(linktype, ip, vlan=None):
    if linktype == LINKTYPE_ETHERNET:
        tag = struct.pack("!HH", 0x8100, vlan) if vlan is not None else b""
        frame = bytes.fromhex("01005e0000f0") + bytes.fromhex("020000000001") + tag + b"\x08\x00" + ip
        return frame.ljust(60, b"\0")  # minimum Ethernet size: padding after the IP packet
    if linktype == LINKTYPE_LINUX_SLL:
        return struct.pack("!HHH8sH", 4, 1, 6, b"\x02\0\0\0\0\x01", ETHERTYPE_IPV4) + ip
    if linktype == LINKTYPE_LINUX_SLL2:
        return struct.pack("!HHIHBB8s", ETHERTYPE_IPV4, 0, 3, 1, 4, 6, b"\x02\0\0\0\0\x01") + ip
    return ip  # LINKTYPE_RAW


def pcap_file(frames, linktype=LINKTYPE_ETHERNET, order="<", nano=False):
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    out = struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, 262144, linktype)
    for i, f in enumerate(frames):
        out += struct.pack(order + "IIII", 1700000000 + i, 0, len(f), len(f)) + f
    return out


def capture(*payloads, linktype=LINKTYPE_ETHERNET, **ip_kw):
    return pcap_file([link_frame(linktype, ipv4_packet(p, **ip_kw)) for p in payloads], linktype)


def self_test() -> int:
    failures = []

    def check(name, cond, detail=""):
        print(("ok    " if cond else "FAIL  ") + name + (f"  [{detail}]" if detail and not cond else ""))
        if not cond:
            failures.append(name)

    # -- the structure sizes of §6.1 (the Layout constructor already checked every offset)
    sizes = {PFSYNC_STATE: 264, PFSYNC_STATE_PEER: 32, PFSYNC_STATE_KEY: 40, PFSYNC_UPD_C: 84,
             PFSYNC_TDB: 52, PFSYNC_HEADER: 20, PFSYNC_SUBHEADER: 4, PFSYNC_ID: 12,
             PFSYNC_CLR: 20, PFSYNC_BUS: 12}
    check("struct sizes match §6.1 / §3.3", all(l.struct.size == n for l, n in sizes.items()))

    # -- good frames, one per capture
    bus_start = pfsync_frame(section("BUS", [PFSYNC_BUS.pack(creatorid=CREATOR_A, status=BUS_START)]))
    bus_end = pfsync_frame(section("BUS", [PFSYNC_BUS.pack(creatorid=CREATOR_A, status=BUS_END)]))
    ins = pfsync_frame(section("INS", [build_state()]))
    upd_c = pfsync_frame(section("UPD_C", [PFSYNC_UPD_C.pack(
        id=0x0000000100000001, src=st_peer(4, 1100, 66100), dst=st_peer(4, 5100, 70100),
        creatorid=CREATOR_A, timeout=2)]))
    del_c = pfsync_frame(section("DEL_C", [PFSYNC_ID.pack(id=0x0000000100000001, creatorid=CREATOR_A)]))
    good = {"BUS start": bus_start, "INS IPv4 TCP": ins, "UPD_C": upd_c, "DEL_C": del_c,
            "BUS end": bus_end}
    for name, payload in good.items():
        s = decode_capture(capture(payload))
        check(f"good frame accepted: {name}", s.frames == 1 and s.frames_ok == 1 and not s.errors,
              "; ".join(s.errors))

    # -- the INS fields survive the round trip
    s = decode_capture(capture(ins), keep_frames=True)
    action, st = s.decoded[0].messages[0]
    k = st["key_wire"]
    check("INS fields decode", action == "INS" and st["af"] == AF_INET and st["proto"] == 6
          and st["creatorid"] == CREATOR_A and st["ifname"] == "all" and k["port0"] == 40000
          and k["port1"] == 443 and fmt_addr(k["addr0"], k["af"]) == "192.0.2.10"
          and fmt_addr(k["addr1"], k["af"]) == "198.51.100.20" and st["src"]["state"] == 4
          and st["src"]["wscale"] == 0x87 and st["packets"] == [10, 9]
          and st["bytes"] == [1500, 9000] and st["timeout"] == 2 and not s.warnings,
          describe(action, st))

    # -- all good frames in one capture, with every supported link type and pcap flavour
    payloads = list(good.values())
    expected_actions = {"BUS_START": 1, "BUS_END": 1, "INS": 1, "UPD_C": 1, "DEL_C": 1}
    variants = {
        "Ethernet, little-endian us": pcap_file([link_frame(1, ipv4_packet(p)) for p in payloads]),
        "Ethernet + VLAN, big-endian ns": pcap_file(
            [link_frame(1, ipv4_packet(p), vlan=42) for p in payloads], order=">", nano=True),
        "Linux SLL": pcap_file([link_frame(113, ipv4_packet(p)) for p in payloads], 113),
        "Linux SLL2": pcap_file([link_frame(276, ipv4_packet(p)) for p in payloads], 276),
        "raw IP, unicast syncpeer": pcap_file(
            [ipv4_packet(p, dst="198.51.100.2") for p in payloads], LINKTYPE_RAW),
    }
    for name, data in variants.items():
        s = decode_capture(data)
        counts = {a: n for a, n in s.actions.items() if n}
        check(f"capture summary: {name}", s.frames == 5 and s.frames_ok == 5 and not s.errors
              and counts == expected_actions and s.states == 1 and s.creators == {CREATOR_A},
              f"{s.as_json()}")

    # -- one frame with several sections, in OpenBSD's order (IACK, UPD_C, DEL_C, INS, UPD)
    multi = pfsync_frame(
        section("INS_ACK", [PFSYNC_ID.pack(id=7, creatorid=CREATOR_B)]),
        section("UPD_C", [PFSYNC_UPD_C.pack(id=1, creatorid=CREATOR_A, timeout=2)] * 2),
        section("DEL_C", [PFSYNC_ID.pack(id=2, creatorid=CREATOR_A)]),
        section("INS", [build_state(id=3), build_state(id=4, creatorid=CREATOR_B)]),
        section("UPD", [build_state(id=5, proto=IPPROTO_UDP, timeout=8,
                                    src=st_peer(2), dst=st_peer(2))]),
        section("CLR", [PFSYNC_CLR.pack(ifname=b"", creatorid=CREATOR_B)]),
        section("UPD_REQ", [PFSYNC_ID.pack(id=0, creatorid=0)]))
    s = decode_capture(capture(multi))
    check("multi-section frame", s.frames_ok == 1 and s.states == 3 and s.bulk_requests == 1
          and s.actions["UPD_C"] == 2 and s.actions["INS_ACK"] == 1 and s.actions["CLR"] == 1
          and s.creators == {CREATOR_A, CREATOR_B} and not s.errors, f"{s.as_json()}")

    # -- IPv6 state with AF_INET6 = 24
    key6 = st_key("2001:db8::1", "2001:db8::2", 1000, 53, af=AF_INET6)
    s = decode_capture(capture(pfsync_frame(section("INS", [build_state(
        af=AF_INET6, key_wire=key6, key_stack=key6, proto=IPPROTO_UDP, timeout=7,
        src=st_peer(1), dst=st_peer(0))]))))
    check("IPv6 UDP state accepted", s.frames_ok == 1 and not s.errors, "; ".join(s.errors))

    # -- TV4 (§6.1): a bulk request, IPv4 bytes given verbatim
    tv4_payload = bytes.fromhex("06000024" + "00" * 16 + "05030001" + "00" * 12)
    tv4_ip = bytes.fromhex("45100038abcd4000fff0e4060a000001e00000f0") + tv4_payload
    check("TV4 IPv4 header checksum folds to 0", inet_checksum(tv4_ip[:20]) == 0)
    check("TV4 header rebuilt from the tables matches",
          pfsync_frame(section("UPD_REQ", [PFSYNC_ID.pack(id=0, creatorid=0)])) == tv4_payload)
    s = decode_capture(pcap_file([link_frame(1, tv4_ip)]), keep_frames=True)
    fr = s.decoded[0] if s.decoded else Frame(0)
    sub = fr.sections[0][0] if fr.sections else {}
    msg = fr.messages[0][1] if fr.messages else {}
    check("TV4 decodes cleanly", s.frames == 1 and s.frames_ok == 1 and not s.errors
          and not s.warnings, "; ".join(s.errors + s.warnings))
    check("TV4 fields", fr.ip.get("src") == "10.0.0.1" and fr.ip.get("dst") == "224.0.0.240"
          and fr.ip.get("id") == 0xABCD and fr.ip.get("ttl") == 255 and fr.ip.get("tos") == 0x10
          and fr.ip.get("frag") == 0x4000 and fr.ip.get("total_length") == 56
          and fr.header["version"] == 6 and fr.header["len"] == 36
          and sub == {"action": 5, "len": 3, "count": 1}
          and msg.get("id") == 0 and msg.get("creatorid") == 0 and msg.get("bulk") is True
          and s.bulk_requests == 1 and s.actions["UPD_REQ"] == 1, f"{fr.ip} {fr.header} {sub} {msg}")

    # -- malformed frames: each must produce an error containing the given text
    good_bus = section("BUS", [PFSYNC_BUS.pack(creatorid=CREATOR_A, status=BUS_START)])
    one_del_c = PFSYNC_ID.pack(id=9, creatorid=CREATOR_A)
    bad = [
        ("bad count (2 announced, 1 present)",
         capture(pfsync_frame(section("DEL_C", [one_del_c], count=2))), "overruns the frame"),
        ("count too small leaves garbage",
         # the second message is then read as subheader 2: 00 00 00 00 = CLR, len 0, count 0
         capture(pfsync_frame(section("DEL_C", [one_del_c, one_del_c], count=1))),
         "section 2 (CLR)"),
        ("IPv4 checksum", capture(bus_start, bad_checksum=True), "checksum"),
        ("TTL 64", capture(bus_start, ttl=64), "TTL 64"),
        ("other multicast group", capture(bus_start, dst="224.0.0.1"), "multicast"),
        ("broadcast destination", capture(bus_start, dst="255.255.255.255"), "neither"),
        ("fragment", capture(bus_start, frag=0x2000), "fragment"),
        ("version 5", capture(pfsync_frame(good_bus, version=5)), "version 5"),
        ("len covers IP header too", capture(pfsync_frame(good_bus, length=20 + 16 + 20)), "> IP payload"),
        ("len excludes the pfsync header", capture(pfsync_frame(good_bus, length=16)), "smaller than the header"),
        ("trailing bytes after len", capture(pfsync_frame(good_bus, trailer=b"\0" * 4)), "trailing"),
        ("trailing bytes inside len",
         capture(pfsync_frame(good_bus, trailer=b"\0" * 2, length=38)), "too few"),
        ("unknown action 42",
         capture(PFSYNC_HEADER.pack(version=6, len=40) + bytes([42, 4, 0, 1]) + b"\0" * 16),
         "unknown action 42"),
        ("deprecated OINS", capture(pfsync_frame(section("OINS", [b"\0" * 8]))), "deprecated"),
        ("UPD_C with too short len",
         capture(pfsync_frame(section("UPD_C", [b"\0" * 80]))), "smaller than pfsync_upd_c"),
        ("len 0 count 0 section", capture(pfsync_frame(section("INS", [], words=0, count=0))),
         "abandons"),
        ("state af 3", capture(pfsync_frame(section("INS", [build_state(af=3)]))), "af 3"),
        ("key af mismatch", capture(pfsync_frame(section("INS", [build_state(af=AF_INET6)]))),
         "differs from key[wire]"),
        ("proto 0", capture(pfsync_frame(section("INS", [build_state(proto=0)]))), "proto 0"),
        ("timeout 22 (PFTM_UNLINKED)",
         capture(pfsync_frame(section("UPD", [build_state(timeout=22)]))), "PFTM_MAX"),
        ("creatorid 0 in a state",
         capture(pfsync_frame(section("INS", [build_state(creatorid=0)]))), "creatorid 0"),
        ("peer state 13", capture(pfsync_frame(section("UPD_C", [PFSYNC_UPD_C.pack(
            id=1, creatorid=CREATOR_A, src=st_peer(13), timeout=2)]))), "PF_TCPS_PROXY_DST"),
        ("BUS status 3", capture(pfsync_frame(section("BUS", [PFSYNC_BUS.pack(
            creatorid=CREATOR_A, status=3)]))), "status 3"),
        ("DEL_C creatorid 0",
         capture(pfsync_frame(section("DEL_C", [PFSYNC_ID.pack(id=5, creatorid=0)]))), "creatorid 0"),
        ("CLR ifname without NUL", capture(pfsync_frame(section("CLR", [PFSYNC_CLR.pack(
            ifname=b"x" * 16, creatorid=CREATOR_A)]))), "NUL"),
        ("truncated capture (snaplen)",
         pcap_file([link_frame(1, ipv4_packet(ins))[:100]]), "captured"),
    ]
    for name, data, needle in bad:
        s = decode_capture(data)
        hit = s.frames == 1 and s.frames_ok == 0 and any(needle in e for e in s.errors)
        check(f"bad frame rejected: {name}", hit, "; ".join(s.errors) or "no error")

    # -- a good frame next to a bad one: only the bad frame is reported, with its number
    s = decode_capture(pcap_file([link_frame(1, ipv4_packet(bus_start)),
                                  link_frame(1, ipv4_packet(bus_start, ttl=1))]))
    check("errors name the frame", s.frames == 2 and s.frames_ok == 1
          and len(s.errors) == 1 and s.errors[0].startswith("frame 2:"), "; ".join(s.errors))

    # -- a stride larger than the struct is accepted with a warning (§3.2 "newer peer")
    s = decode_capture(capture(pfsync_frame(section("DEL_C", [one_del_c + b"\0" * 4]))))
    check("longer message stride: warning, not error",
          s.frames_ok == 1 and not s.errors and any("newer peers" in w for w in s.warnings))

    # -- file-level errors
    for name, data, needle in [
        ("pcapng rejected clearly", PCAPNG_MAGIC + b"\0" * 60, "pcapng"),
        ("garbage rejected", b"hello world, not a pcap at all", "not a pcap"),
        ("unsupported link type", pcap_file([], linktype=105), "link type 105"),
    ]:
        try:
            decode_capture(data)
            check(name, False, "no PcapError")
        except PcapError as e:
            check(name, needle in str(e), str(e))
    s = decode_capture(pcap_file([link_frame(1, ipv4_packet(bus_start))])[:-10])
    check("truncated last record reported", any("truncated" in e for e in s.errors), str(s.errors))

    print(f"\nself-test: {'PASS' if not failures else 'FAIL'} "
          f"({len(failures)} failure(s))" + (": " + ", ".join(failures) if failures else ""))
    return 0 if not failures else 1


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description="Decode and check OpenBSD pfsync v6 frames in a classic pcap "
                    "(independent of rampart's codec; see reference/protocols.md §3).")
    p.add_argument("pcap", nargs="?", help="classic libpcap file (not pcapng)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("-v", "--verbose", action="store_true", help="print one line per message")
    p.add_argument("--self-test", action="store_true", help="run the built-in checks")
    try:
        a = p.parse_args(argv)
    except SystemExit as e:
        return 0 if e.code == 0 else 2
    if a.self_test:
        return self_test()
    if not a.pcap:
        p.print_usage(sys.stderr)
        print("pfsync_decode.py: error: a pcap file is required (or --self-test)", file=sys.stderr)
        return 2
    try:
        with open(a.pcap, "rb") as f:
            data = f.read()
        verbose = (sys.stderr if a.json else sys.stdout) if a.verbose else None
        s = decode_capture(data, verbose=verbose)
    except OSError as e:
        print(f"pfsync_decode.py: {a.pcap}: {e.strerror or e}", file=sys.stderr)
        return 2
    except PcapError as e:
        print(f"pfsync_decode.py: {a.pcap}: {e}", file=sys.stderr)
        return 2
    if a.json:
        print(json.dumps(s.as_json(), sort_keys=False))
    else:
        print(s.text(a.pcap))
    return 1 if s.errors else 0


if __name__ == "__main__":
    sys.exit(main())
