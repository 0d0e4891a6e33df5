#!/usr/bin/env python3
"""Many concurrent TCP connections through the HA lab, each checked end to end.

  conns.py server --port P [--seconds S]
      An echo server: every line received is sent back. Stops after S seconds (bounded).

  conns.py client --dst IP --port P --count N --seconds S [--interval I] [--timeout T]
                  [--ready FILE] [--json]
      Opens N connections (all before the first probe), then every I seconds sends one line
      on each and waits for its echo. A connection is `reset` if the peer or a firewall reset
      it (ECONNRESET, EPIPE, or an RST seen as EOF), `stalled` if an echo took longer than T
      seconds at the end of the run. When every connection is open, FILE is written. At the end
      (S seconds after the last connection opened) prints one line, or JSON with --json:
        opened, failed_to_open, alive, reset, stalled, longest_wait_ms, probes, answered

Both ends bound every wait; nothing loops forever. Used by tests/lab/ha.sh `survive`.
"""
import argparse
import errno
import json
import selectors
import socket
import sys
import time


def server(args):
    sel = selectors.DefaultSelector()
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("0.0.0.0", args.port))
    lsock.listen(1024)
    lsock.setblocking(False)
    sel.register(lsock, selectors.EVENT_READ, None)
    deadline = time.monotonic() + args.seconds
    while time.monotonic() < deadline:
        for key, _ in sel.select(timeout=0.2):
            if key.data is None:
                try:
                    conn, _ = lsock.accept()
                except OSError:
                    continue
                conn.setblocking(False)
                sel.register(conn, selectors.EVENT_READ, b"")
                continue
            conn = key.fileobj
            try:
                data = conn.recv(4096)
            except OSError:
                data = b""
            if not data:
                sel.unregister(conn)
                conn.close()
                continue
            try:
                conn.sendall(data)
            except OSError:
                sel.unregister(conn)
                conn.close()
    return 0


class Conn:
    def __init__(self, sock):
        self.sock = sock
        self.pending_since = None  # when the unanswered probe was sent
        self.buf = b""
        self.state = "alive"
        self.longest = 0.0


def client(args):
    conns = []
    failed = 0
    open_deadline = time.monotonic() + max(10.0, args.count / 50)
    for i in range(args.count):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(max(0.5, open_deadline - time.monotonic()))
        try:
            s.connect((args.dst, args.port))
        except OSError:
            failed += 1
            s.close()
            continue
        s.setblocking(False)
        conns.append(Conn(s))
    if args.ready:
        with open(args.ready, "w") as f:
            f.write(f"{len(conns)}\n")
    sel = selectors.DefaultSelector()
    for c in conns:
        sel.register(c.sock, selectors.EVENT_READ, c)
    probes = answered = 0
    end = time.monotonic() + args.seconds
    next_round = time.monotonic()
    while True:
        now = time.monotonic()
        if now >= next_round and now < end:
            next_round = now + args.interval
            for c in conns:
                if c.state != "alive" or c.pending_since is not None:
                    continue
                try:
                    c.sock.send(b"probe\n")
                    c.pending_since = now
                    probes += 1
                except OSError as e:
                    c.state = "reset" if e.errno in (errno.ECONNRESET, errno.EPIPE) else "error"
        pending = [c for c in conns if c.state == "alive" and c.pending_since is not None]
        if now >= end and (not pending or now >= end + args.timeout):
            break
        for key, _ in sel.select(timeout=0.05):
            c = key.data
            if c.state != "alive":
                continue
            try:
                data = c.sock.recv(4096)
            except OSError as e:
                c.state = "reset" if e.errno in (errno.ECONNRESET, errno.EPIPE) else "error"
                continue
            if not data:
                c.state = "reset"
                continue
            c.buf += data
            while b"\n" in c.buf:
                _, c.buf = c.buf.split(b"\n", 1)
                if c.pending_since is not None:
                    c.longest = max(c.longest, time.monotonic() - c.pending_since)
                    c.pending_since = None
                    answered += 1
    now = time.monotonic()
    for c in conns:
        if c.state == "alive" and c.pending_since is not None:
            c.longest = max(c.longest, now - c.pending_since)
            if now - c.pending_since >= args.timeout:
                c.state = "stalled"
    result = {
        "opened": len(conns),
        "failed_to_open": failed,
        "alive": sum(c.state == "alive" for c in conns),
        "reset": sum(c.state == "reset" for c in conns),
        "stalled": sum(c.state == "stalled" for c in conns),
        "errors": sum(c.state == "error" for c in conns),
        "longest_wait_ms": round(max((c.longest for c in conns), default=0.0) * 1000),
        "probes": probes,
        "answered": answered,
    }
    for c in conns:
        c.sock.close()
    if args.json:
        print(json.dumps(result))
    else:
        print(" ".join(f"{k}={v}" for k, v in result.items()))
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="mode", required=True)
    s = sub.add_parser("server")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--seconds", type=float, default=120)
    c = sub.add_parser("client")
    c.add_argument("--dst", required=True)
    c.add_argument("--port", type=int, required=True)
    c.add_argument("--count", type=int, default=300)
    c.add_argument("--seconds", type=float, default=15)
    c.add_argument("--interval", type=float, default=0.2)
    c.add_argument("--timeout", type=float, default=5.0)
    c.add_argument("--ready")
    c.add_argument("--json", action="store_true")
    args = p.parse_args()
    if args.mode == "server":
        return server(args)
    return client(args)


if __name__ == "__main__":
    sys.exit(main())
