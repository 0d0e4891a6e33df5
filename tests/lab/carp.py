#!/usr/bin/env python3
"""CARP helpers for the HA lab (tests/lab/ha.sh, tests/ha.rs), written from OpenBSD's formulas
in reference/protocols.md §1 and independent of rampart's code (standard library only).

  carp.py hmac --pass P --vhid N --vip A [--vip B ...] --counter HEX
      Prints OpenBSD's CARP HMAC-SHA1 (20 bytes, hex) for these inputs: key = the passphrase's
      first 19 bytes, zero-padded to 20 (ifconfig's strlcpy, not a hash); message = 0x02 0x01,
      vhid, the IPv4 VIPs sorted as unsigned 32-bit numbers (each once), the IPv6 VIPs sorted
      bytewise (link-local excluded, as OpenBSD sends), the 8 counter bytes.

  carp.py check --pass P --vip A [...] < FIELDS
      Reads tshark's `-T fields -E separator=,` lines
        version,type,vhid,advskew,authlen,demotion,adver_int,counter,hmac,checksum.status,ttl,eth.src,ip.src
      and prints each with "hmac-ok" or "hmac-BAD expected=..." appended. Exit 1 if any is bad.

  carp.py forge --iface IF --src A [--pass P] [--vhid N] [--vip A ...] [--ttl T]
                [--advbase B] [--advskew S] [--demote D] [--counter HEX] [--count N]
                [--interval SEC] [--src-mac MAC]
      Sends hand-built CARP advertisements (Ethernet + IPv4 + CARP, checksums right) on IF
      through an AF_PACKET socket: 224.0.0.18, dst MAC 01:00:5e:00:00:12. The HMAC is computed
      with --pass (give a wrong one to forge a bad HMAC). Only documentation addresses belong
      here: the script refuses any source outside 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24.

  carp.py probe --dst A [--interval SEC] [--duration SEC] [--out FILE]
      An ICMP echo prober for failover measurements (ping -i 0.01 really sends every ~16 ms
      here): one echo request every --interval (default 10 ms) for at most --duration seconds
      (default 60) or until SIGINT/SIGTERM. For each reply it writes
      "reply SEQ SENT RECEIVED" (wall-clock seconds, µs), and "sent N" at the end.

  carp.py selftest
      Checks the HMAC code against reference/protocols.md's derived vectors TV1 and TV2.
"""

import argparse
import hashlib
import hmac
import ipaddress
import os
import select
import signal
import socket
import struct
import sys
import time

KEY_LEN = 20
GROUP_V4 = "224.0.0.18"
GROUP_MAC = bytes.fromhex("01005e000012")
DOC_NETS = [ipaddress.ip_network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")]


def carp_key(passphrase: str) -> bytes:
    raw = passphrase.encode()
    return raw[: KEY_LEN - 1].ljust(KEY_LEN, b"\0")


def carp_hmac(passphrase: str, vhid: int, vips, counter: bytes) -> bytes:
    v4 = sorted({int(ipaddress.IPv4Address(a)) for a in vips if ipaddress.ip_address(a).version == 4})
    v6 = sorted(
        {
            ipaddress.IPv6Address(a).packed
            for a in vips
            if ipaddress.ip_address(a).version == 6 and not ipaddress.IPv6Address(a).is_link_local
        }
    )
    msg = bytes([0x02, 0x01, vhid])
    msg += b"".join(struct.pack("!I", a) for a in v4)
    msg += b"".join(v6)
    msg += counter
    return hmac.new(carp_key(passphrase), msg, hashlib.sha1).digest()


def inet_checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def carp_header(vhid, advskew, demote, advbase, counter, md) -> bytes:
    hdr = bytearray(struct.pack("!BBBBBBH", 0x21, vhid, advskew, 7, demote, advbase, 0) + counter + md)
    struct.pack_into("!H", hdr, 6, inet_checksum(bytes(hdr)))
    return bytes(hdr)


def ipv4_header(src: str, dst: str, ttl: int, payload_len: int, ident: int) -> bytes:
    hdr = bytearray(
        struct.pack(
            "!BBHHHBBH4s4s",
            0x45,
            0x10,  # IPTOS_LOWDELAY, as OpenBSD sends
            20 + payload_len,
            ident,
            0x4000,  # DF
            ttl,
            112,
            0,
            ipaddress.IPv4Address(src).packed,
            ipaddress.IPv4Address(dst).packed,
        )
    )
    struct.pack_into("!H", hdr, 10, inet_checksum(bytes(hdr)))
    return bytes(hdr)


def cmd_hmac(a) -> int:
    print(carp_hmac(a.passphrase, a.vhid, a.vip, bytes.fromhex(a.counter)).hex())
    return 0


def counter_bytes(field: str) -> bytes:
    """tshark prints carp.counter as a decimal 64-bit number; 0x-prefixed hex is taken too."""
    field = field.strip()
    if field.lower().startswith("0x"):
        return int(field, 16).to_bytes(8, "big")
    return int(field).to_bytes(8, "big")


def cmd_check(a) -> int:
    bad = 0
    for line in sys.stdin:
        line = line.rstrip("\n")
        if not line:
            continue
        f = line.split(",")
        if len(f) < 9:
            print(f"{line} unparsable")
            bad += 1
            continue
        vhid, counter, md = int(f[2]), counter_bytes(f[7]), f[8].replace(":", "").lower()
        want = carp_hmac(a.passphrase, vhid, a.vip, counter).hex()
        if md == want:
            print(f"{line},hmac-ok")
        else:
            print(f"{line},hmac-BAD expected={want}")
            bad += 1
    return 1 if bad else 0


def cmd_forge(a) -> int:
    src = ipaddress.IPv4Address(a.src)
    if not any(src in n for n in DOC_NETS):
        print(f"carp.py: refusing source {src}: documentation ranges only", file=sys.stderr)
        return 2
    counter = bytes.fromhex(a.counter)
    md = carp_hmac(a.passphrase, a.vhid, a.vip or [], counter)
    carp = carp_header(a.vhid, a.advskew, a.demote, a.advbase, counter, md)
    src_mac = bytes.fromhex(a.src_mac.replace(":", ""))
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((a.iface, 0))
    try:
        for i in range(a.count):
            ip = ipv4_header(a.src, GROUP_V4, a.ttl, len(carp), (0x4000 + i) & 0xFFFF)
            frame = GROUP_MAC + src_mac + b"\x08\x00" + ip + carp
            s.send(frame.ljust(60, b"\0"))
            if i + 1 < a.count:
                time.sleep(a.interval)
    finally:
        s.close()
    print(
        f"sent {a.count} advert(s) on {a.iface}: vhid {a.vhid} ttl {a.ttl} advbase {a.advbase} "
        f"advskew {a.advskew} demote {a.demote} hmac {md.hex()}"
    )
    return 0


def cmd_probe(a) -> int:
    dst = ipaddress.IPv4Address(a.dst)
    if not any(dst in n for n in DOC_NETS):
        print(f"carp.py: refusing to probe {dst}: documentation ranges only", file=sys.stderr)
        return 2
    stop = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.append(1))
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    s.setblocking(False)
    ident = os.getpid() & 0xFFFF
    out = open(a.out, "w", buffering=1) if a.out else sys.stdout
    sent_at = {}
    seq = 0
    start = time.time()
    due = start
    while not stop and time.time() < start + a.duration:
        now = time.time()
        if now >= due:
            seq += 1
            body = struct.pack("!BBHHH", 8, 0, 0, ident, seq & 0xFFFF) + b"rampart-ha-probe"
            body = body[:2] + struct.pack("!H", inet_checksum(body)) + body[4:]
            sent_at[seq & 0xFFFF] = time.time()
            try:
                s.sendto(body, (str(dst), 0))
            except OSError:
                pass  # no route / neighbour failed during the outage: a lost probe
            due += a.interval
            if due < now:  # fell behind (a stall): do not burst to catch up
                due = now + a.interval
        try:
            ready, _, _ = select.select([s], [], [], max(0.0, due - time.time()))
        except InterruptedError:
            continue
        while ready:
            try:
                pkt = s.recv(2048)
            except BlockingIOError:
                break
            received = time.time()
            ihl = (pkt[0] & 0x0F) * 4
            if len(pkt) < ihl + 8:
                continue
            typ, _code, _ck, pid, pseq = struct.unpack("!BBHHH", pkt[ihl : ihl + 8])
            if typ == 0 and pid == ident and pseq in sent_at:
                out.write(f"reply {pseq} {sent_at[pseq]:.6f} {received:.6f}\n")
    out.write(f"sent {seq}\n")
    return 0


def cmd_selftest(_a) -> int:
    counter = bytes.fromhex("0102030405060708")
    tv1 = carp_hmac("mekmitasdigoat", 1, ["192.168.1.10"], counter).hex()
    assert tv1 == "17b1efdbf04c5b67a2d4c6deec56e5e473ed7ae2", tv1
    hdr = carp_header(1, 0, 0, 1, counter, bytes.fromhex(tv1))
    assert hdr[:8].hex() == "21010007000150e2", hdr[:8].hex()
    tv2 = carp_hmac("secret", 42, ["10.0.0.2", "10.0.0.1"], counter).hex()
    assert tv2 == "0cad2019758aa5b0f39ee54765f6e7e5fb187ef0", tv2
    assert carp_key("abcdefghijklmnopqrstuvwxy") == b"abcdefghijklmnopqrs\0"
    print("carp.py selftest: TV1, TV2, TV3 ok")
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    h = sub.add_parser("hmac")
    h.add_argument("--pass", dest="passphrase", required=True)
    h.add_argument("--vhid", type=int, required=True)
    h.add_argument("--vip", action="append", required=True)
    h.add_argument("--counter", required=True, help="8 bytes, hex")
    h.set_defaults(func=cmd_hmac)
    c = sub.add_parser("check")
    c.add_argument("--pass", dest="passphrase", required=True)
    c.add_argument("--vip", action="append", required=True)
    c.set_defaults(func=cmd_check)
    f = sub.add_parser("forge")
    f.add_argument("--iface", required=True)
    f.add_argument("--src", required=True)
    f.add_argument("--src-mac", default="02:00:00:00:00:66")
    f.add_argument("--pass", dest="passphrase", default="forged")
    f.add_argument("--vhid", type=int, default=1)
    f.add_argument("--vip", action="append")
    f.add_argument("--ttl", type=int, default=255)
    f.add_argument("--advbase", type=int, default=0)
    f.add_argument("--advskew", type=int, default=1)
    f.add_argument("--demote", type=int, default=0)
    f.add_argument("--counter", default="f0f1f2f3f4f5f6f7")
    f.add_argument("--count", type=int, default=1)
    f.add_argument("--interval", type=float, default=0.01)
    f.set_defaults(func=cmd_forge)
    r = sub.add_parser("probe")
    r.add_argument("--dst", required=True)
    r.add_argument("--interval", type=float, default=0.01)
    r.add_argument("--duration", type=float, default=60)
    r.add_argument("--out")
    r.set_defaults(func=cmd_probe)
    t = sub.add_parser("selftest")
    t.set_defaults(func=cmd_selftest)
    a = p.parse_args()
    if a.cmd == "forge" and not 1 <= a.count <= 10000:
        p.error("--count must be 1..10000")
    return a.func(a)


if __name__ == "__main__":
    sys.exit(main())
