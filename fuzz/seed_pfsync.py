#!/usr/bin/env python3
"""Seed corpus for the pfsync_frames target: one file per message kind, as a payload (first
byte 0) and as a whole Ethernet frame (first byte 1), built by the lab's independent decoder's
builders (tests/lab/pfsync_decode.py). Usage: seed_pfsync.py DIR"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "lab"))
from pfsync_decode import (BUS_END, BUS_START, CREATOR_A, LINKTYPE_ETHERNET, PFSYNC_BUS,  # noqa: E402
                           PFSYNC_CLR, PFSYNC_ID, PFSYNC_UPD_C, build_state, ipv4_packet,
                           link_frame, pfsync_frame, section, st_peer)


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    ident = lambda: PFSYNC_ID.pack(id=0x0000000100000001, creatorid=CREATOR_A)  # noqa: E731
    seeds = {
        "bus_start": section("BUS", [PFSYNC_BUS.pack(creatorid=CREATOR_A, status=BUS_START)]),
        "bus_end": section("BUS", [PFSYNC_BUS.pack(creatorid=CREATOR_A, status=BUS_END)]),
        "ins": section("INS", [build_state()]),
        "upd": section("UPD", [build_state()]),
        "upd_c": section("UPD_C", [PFSYNC_UPD_C.pack(
            id=0x0000000100000001, src=st_peer(4, 1100, 66100), dst=st_peer(4, 5100, 70100),
            creatorid=CREATOR_A, timeout=2)]),
        "del_c": section("DEL_C", [ident()]),
        "ins_ack": section("INS_ACK", [ident()]),
        "upd_req": section("UPD_REQ", [ident()]),
        "bulk_request": section("UPD_REQ", [PFSYNC_ID.pack(id=0, creatorid=0)]),
        "clr": section("CLR", [PFSYNC_CLR.pack(ifname=b"", creatorid=CREATOR_A)]),
    }
    for name, sec in seeds.items():
        payload = pfsync_frame(sec)
        with open(os.path.join(out, name), "wb") as f:
            f.write(b"\x00" + payload)
        with open(os.path.join(out, name + ".frame"), "wb") as f:
            f.write(b"\x01" + link_frame(LINKTYPE_ETHERNET, ipv4_packet(payload)))
    print(f"{2 * len(seeds)} seeds in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
