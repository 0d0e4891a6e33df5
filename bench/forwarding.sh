#!/usr/bin/env bash
# rampart beside dpdk-testpmd on the same DPDK vdevs, in one run (docs/performance.md,
# "DPDK forwarding: rampart beside testpmd").
#
#   bench/forwarding.sh [--seconds N] [--runs N] [--states "10000 1000000"] [--out DIR]
#
# Measures, interleaved (so a noisy spell hits every measurement alike):
#   testpmd-ring-null   testpmd io forwarding, ONE forwarding core, on the same vdevs as
#                       rampart: net_null0 (RX on) -> net_ring0 -> ring loops TX q0 to RX
#                       q0 -> net_null0 TX. The figure is net_null0's TX rate: the frames
#                       forwarded from ring0 into null0, as for rampart. That one core also
#                       generates (null RX, ring enqueue), which rampart leaves to lcore 0.
#   testpmd-null-null   testpmd io on net_null0 <-> net_null1, one core: the machine's pure
#                       I/O ceiling (TX rate per port, two streams on the one core).
#   io-forwarder        rampart-bench forward --forwarder io: rampart's harness (generator on
#                       lcore 0, frames crossing cores through net_ring0, net_null0 out) with
#                       a plain rx->tx loop on lcore 1 instead of the worker: the ceiling of
#                       this exact setup, and proof that the generator is not the limit.
#   rampart-<states>    rampart-bench forward --states <states>: generator on lcore 0, the
#                       worker (poll = busy) on lcore 1; net_null0's opackets over the window.
# and prints the medians as a table (also written to DIR/table.md; raw runs in
# DIR/results.jsonl, logs beside them).
#
# A run is valid when its poller(s) had their CPU for >= MIN_CPU of the window (read from
# /proc/.../schedstat): the machine is shared, and a run that lost its CPU to another process
# measures the machine, not the forwarder. A rampart run must also have kept its worker busy
# (the ring found empty < 5 % of the time), or the generator set the rate. Measurements are
# repeated, in rounds, until each has RUNS valid runs (at most MAX_ATTEMPTS attempts each);
# medians are of the valid runs. Before each attempt the script waits (up to QUIET_WAIT s)
# for the machine to be quiet, and each run records the cache-line round trip between CPU 0
# and CPU 1 (rampart-bench cross-core): the VM's two vCPUs are sometimes placed near each
# other, sometimes far apart, and whatever crosses cores follows.
#
# Environment: SECS, RUNS, STATES (as the options), MIN_CPU (0.97), MAX_ATTEMPTS (4 x RUNS),
# QUIET_WAIT (300), OUT, BIN (a built rampart-bench; else it is built with cargo into
# CARGO_TARGET_DIR, default /tmp/target-bench).
#
# Needs root, DPDK 22.11 with dpdk-testpmd (Debian: apt-get install -y dpdk-dev), python3,
# and cargo unless BIN points at a built rampart-bench. Reserves 512 hugepages if fewer are
# free. Every process it starts has a deadline and is stopped by its own PID.
set -euo pipefail

SECS=${SECS:-10}
RUNS=${RUNS:-3}
STATES=${STATES:-"10000 1000000"}
WARMUP=1
MIN_CPU=${MIN_CPU:-0.97}
MAX_ATTEMPTS=${MAX_ATTEMPTS:-$((RUNS * 4))}
QUIET_WAIT=${QUIET_WAIT:-300}
OUT=${OUT:-}
BIN=${BIN:-}

while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) SECS=$2; shift 2 ;;
        --runs) RUNS=$2; shift 2 ;;
        --states) STATES=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "forwarding.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

log() { echo "forwarding.sh: $*" >&2; }
die() { log "$*"; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (DPDK with hugepages)"
command -v dpdk-testpmd >/dev/null || die "dpdk-testpmd not found (Debian: apt-get install -y dpdk-dev)"
command -v python3 >/dev/null || die "python3 not found"
command -v stdbuf >/dev/null || die "stdbuf (coreutils) not found"

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
if [ -z "$BIN" ]; then
    export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/tmp/target-bench}
    log "building rampart-bench (release) in $CARGO_TARGET_DIR"
    (cd "$repo" && timeout 1800 cargo build --release -q -p rampart-bench) || die "build failed"
    BIN=$CARGO_TARGET_DIR/release/rampart-bench
fi
[ -x "$BIN" ] || die "no rampart-bench binary at $BIN"

free_hp=$(awk '/^HugePages_Free:/ {print $2}' /proc/meminfo)
if [ "${free_hp:-0}" -lt 512 ]; then
    total_hp=$(awk '/^HugePages_Total:/ {print $2}' /proc/meminfo)
    log "reserving hugepages: $total_hp total, $free_hp free -> $((total_hp + 512 - free_hp))"
    echo $((total_hp + 512 - free_hp)) > /proc/sys/vm/nr_hugepages
fi

[ -n "$OUT" ] || OUT=$(mktemp -d /tmp/rampart-forwarding.XXXXXX)
mkdir -p "$OUT"
RESULTS=$OUT/results.jsonl
: > "$RESULTS"
log "results in $OUT"

EAL_COMMON=(--no-pci --in-memory --no-telemetry)
# Same pool size and per-lcore cache as rampart-bench ([dpdk] mbufs and mbuf_cache).
TESTPMD_APP=(--forward-mode=io --stats-period 1 --total-num-mbufs=16383 --mbcache=256)

# Busy and total jiffies of all CPUs.
cpu_jiffies() { awk '/^cpu / {b=$2+$3+$4+$7+$8+$9; print b, b+$5+$6}' /proc/stat; }

# Waits until the other processes on the machine use less than 10 % of one CPU (over 2 s).
wait_quiet() {
    local deadline=$((SECONDS + QUIET_WAIT)) ncpu b0 t0 b1 t1 load
    ncpu=$(nproc)
    while :; do
        read -r b0 t0 < <(cpu_jiffies); sleep 2; read -r b1 t1 < <(cpu_jiffies)
        load=$(awk -v b=$((b1 - b0)) -v t=$((t1 - t0)) -v n="$ncpu" 'BEGIN {printf "%.2f", t ? b / t * n : 0}')
        if awk -v l="$load" 'BEGIN {exit !(l < 0.10)}'; then return 0; fi
        if [ $SECONDS -ge $deadline ]; then
            log "machine still busy ($load CPUs used by others) after ${QUIET_WAIT}s; measuring anyway"
            return 0
        fi
        log "machine busy ($load CPUs used by others); waiting"
        sleep 5
    done
}

# "run_ns wait_ns" of the thread named $2 in process $1 (empty if none).
thread_sched() {
    local t
    for t in /proc/"$1"/task/*; do
        if [ "$(cat "$t/comm" 2>/dev/null)" = "$2" ]; then
            awk '{print $1, $2}' "$t/schedstat"
            return 0
        fi
    done
}

# Stops process $1 (started by this script) with SIGINT; SIGKILL after 15 s.
stop_pid() {
    local pid=$1
    kill -INT "$pid" 2>/dev/null || true
    for _ in $(seq 150); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "PID $pid ignored SIGINT for 15 s; killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

# The process this script is waiting for: stopped if the script is interrupted, so nothing
# it started keeps polling a CPU.
CHILD=
cleanup() {
    if [ -n "$CHILD" ]; then
        stop_pid "$CHILD"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Prefixes each line with CLOCK_MONOTONIC seconds: testpmd's stats blocks then carry the time
# they were printed, so a rate is (TX-packets at the last block - at the first) / (the time
# between them), whatever testpmd's stats period turns out to be (asked for 1 s, it prints
# every 2 s here: its loop sleeps 1 s between checks of a 1 s timer).
TIMESTAMP_LINES='import sys, time
for line in sys.stdin:
    sys.stdout.write("%.3f %s" % (time.monotonic(), line))
    sys.stdout.flush()'

# Waits (up to 60 s) for a stats block printed at or after monotonic time $2 in log $1 and
# prints its time.
block_at_or_after() {
    local t
    for _ in $(seq 1200); do
        t=$(awk -v t="$2" '/Port statistics/ && $1 + 0 >= t + 0 {print $1; exit}' "$1" 2>/dev/null)
        if [ -n "$t" ]; then echo "$t"; return 0; fi
        sleep 0.05
    done
    return 1
}

# One testpmd run. $1 label, $2 attempt, $3 lcore arguments, $4 forwarding cores, $5 the
# port whose TX rate is the figure ("all": the mean over the ports), rest: vdevs.
testpmd_run() {
    local label=$1 n=$2 lcores=$3 cores=$4 port=$5
    shift 5
    local vdevs=() v
    for v in "$@"; do vdevs+=("--vdev=$v"); done
    local logf="$OUT/$label.$n.log"
    # Which placement of the two vCPUs this run had (rampart-bench forward records its own).
    local cross
    cross=$(timeout 60 "$BIN" cross-core --json 2>/dev/null | grep '^{"' | python3 -c 'import json, sys; print(json.loads(sys.stdin.read())["round_trip_ns"])') || cross=
    local lcore_args
    read -ra lcore_args <<< "$lcores"
    local cmd=(dpdk-testpmd "${lcore_args[@]}" "${EAL_COMMON[@]}" "${vdevs[@]}" -- --nb-cores="$cores" "${TESTPMD_APP[@]}")
    echo "${cmd[*]}" > "$logf.cmd"
    # Line-buffered, so each stats block reaches the timestamper when it is printed.
    stdbuf -oL "${cmd[@]}" < /dev/null > >(python3 -u -c "$TIMESTAMP_LINES" > "$logf") 2>&1 &
    CHILD=$!
    local pid=$CHILD t0 t_start t_end s0 s1 g0 g1
    # The first block comes when forwarding starts.
    if ! t0=$(block_at_or_after "$logf" 0); then
        stop_pid "$pid"
        die "testpmd did not start forwarding within 60 s: see $logf"
    fi
    # The window runs from the first block after the warm-up to the first block SECS later;
    # the forwarding threads' CPU time is read at its edges (rte-worker-2 exists only with a
    # second forwarding lcore).
    t_start=$(block_at_or_after "$logf" "$(awk -v a="$t0" -v b="$WARMUP" 'BEGIN {print a + b - 0.1}')") || die "no stats from testpmd: $logf"
    s0=$(thread_sched "$pid" rte-worker-1); g0=$(thread_sched "$pid" rte-worker-2)
    t_end=$(block_at_or_after "$logf" "$(awk -v a="$t_start" -v b="$SECS" 'BEGIN {print a + b - 0.1}')") || die "no stats from testpmd: $logf"
    s1=$(thread_sched "$pid" rte-worker-1); g1=$(thread_sched "$pid" rte-worker-2)
    stop_pid "$pid"
    CHILD=
    python3 - "$logf" "$label" "$n" "$port" "$t_start" "$t_end" "$MIN_CPU" "$s0" "$s1" "$g0" "$g1" "$cross" "${cmd[*]}" >> "$RESULTS" <<'EOF'
import json, re, sys
logf, label, n, port, t_start, t_end, min_cpu, s0, s1, g0, g1, cross, cmd = sys.argv[1:]
t_start, t_end, min_cpu = float(t_start), float(t_end), float(min_cpu)
# Cumulative TX-packets of every port, per stats block, keyed by the block's time.
blocks, current, p = {}, None, None
text = open(logf, errors="replace").read()
for line in text.splitlines():
    stamp, _, rest = line.partition(" ")
    if "Port statistics" in rest:
        current = blocks.setdefault(float(stamp), {})
    m = re.search(r"NIC statistics for port (\d+)", rest)
    if m:
        p = int(m.group(1))
    m = re.search(r"TX-packets:\s+(\d+)\s+TX-errors", rest)
    if m and current is not None and p is not None:
        current[p] = int(m.group(1))
first, last = blocks[t_start], blocks[t_end]
seconds = t_end - t_start
per_port = {q: (last[q] - first[q]) / seconds / 1e6 for q in sorted(first) if q in last}
mpps = sum(per_port.values()) / len(per_port) if port == "all" else per_port[int(port)]
def share(a, b):
    if not (a and b):
        return None, None
    (r0, w0), (r1, w1) = map(int, a.split()), map(int, b.split())
    return (r1 - r0) / (seconds * 1e9), (w1 - w0) / (seconds * 1e9)
on_cpu, waited = share(s0, s1)
generator_on_cpu, _ = share(g0, g1)
streams = re.findall(r"Logical Core (\d+) .*?\n((?:[\d.]+\s+RX P=.*\n)+)", text)
print(json.dumps({
    "label": label, "attempt": int(n), "mpps": mpps,
    "per_port_mpps": per_port, "seconds": seconds,
    "on_cpu": on_cpu, "waited": waited, "generator_on_cpu": generator_on_cpu,
    "cross_core_ns": float(cross) if cross else None,
    "valid": on_cpu is not None and on_cpu >= min_cpu
             and (generator_on_cpu is None or generator_on_cpu >= min_cpu),
    "streams": {c: [l.split(None, 1)[1].strip() for l in s.strip().split("\n")] for c, s in streams},
    "cmd": cmd,
}))
EOF
}

# One rampart-bench run. $1 label, $2 attempt, $3 forwarder (rampart or io), $4 states.
rampart_run() {
    local label=$1 n=$2 forwarder=$3 states=$4
    local outf="$OUT/$label.$n"
    local cmd=("$BIN" forward --forwarder "$forwarder" --states "$states" --seconds "$SECS" --warmup "$WARMUP" --json)
    echo "${cmd[*]}" > "$outf.cmd"
    # Filling 10 M states takes about a minute; a run never needs more than that plus 2 min.
    timeout -k 5 $((SECS + WARMUP + 180)) "${cmd[@]}" > "$outf.out" 2> "$outf.err" &
    CHILD=$!
    if ! wait "$CHILD"; then
        CHILD=
        die "rampart-bench failed: see $outf.err"
    fi
    CHILD=
    # EAL logs to stdout too: the result is the line of JSON.
    grep '^{"' "$outf.out" | tail -1 | python3 -c '
import json, sys
label, n, min_cpu, cmd = sys.argv[1:]
r = json.loads(sys.stdin.read())
w, g = r.get("worker_cpu") or {}, r.get("generator_cpu") or {}
# The worker must also have been busy: had it found the ring empty for more than 5 % of
# the window, the generator, not rampart, would have set the rate. (The I/O forwarder is
# meant to outrun the generator: its idle time is what the generator could not fill.)
busy = r["forwarder"] == "io" or r["idle_time"] < 0.05
r.update({"label": label, "attempt": int(n), "cmd": cmd,
          "on_cpu": w.get("on_cpu"), "waited": w.get("waited"),
          "generator_on_cpu": g.get("on_cpu"),
          "cross_core_ns": r.get("cross_core_round_trip_ns"),
          "valid": busy and min(w.get("on_cpu", 0), g.get("on_cpu", 0)) >= float(min_cpu)})
print(json.dumps(r))' "$label" "$n" "$MIN_CPU" "${cmd[*]}" >> "$RESULTS"
}

# One attempt at measurement $1 (number $2).
attempt() {
    case "$1" in
        testpmd-ring-null) testpmd_run "$1" "$2" "-l 0,1" 1 1 net_ring0 net_null0 ;;
        testpmd-null-null) testpmd_run "$1" "$2" "-l 0,1" 1 all net_null0 net_null1 ;;
        io-forwarder) rampart_run "$1" "$2" io 1000000 ;;
        rampart-*) rampart_run "$1" "$2" rampart "${1#rampart-}" ;;
    esac
}

measurements=(testpmd-ring-null testpmd-null-null io-forwarder)
for s in $STATES; do measurements+=("rampart-$s"); done
declare -A valid attempts
# Rounds over every measurement that still lacks RUNS valid runs (and has attempts left),
# so the measurements stay interleaved however many attempts the noise costs.
while :; do
    pending=0
    for m in "${measurements[@]}"; do
        if [ "${valid[$m]:-0}" -ge "$RUNS" ] || [ "${attempts[$m]:-0}" -ge "$MAX_ATTEMPTS" ]; then
            continue
        fi
        pending=1
        wait_quiet
        attempts[$m]=$((${attempts[$m]:-0} + 1))
        attempt "$m" "${attempts[$m]}"
        last=$(tail -1 "$RESULTS")
        log "$(python3 -c '
import json, sys
r = json.loads(sys.argv[1])
cpu = "-" if r.get("on_cpu") is None else "%.3f" % r["on_cpu"]
gen = "" if r.get("generator_on_cpu") is None else ", generator %.3f" % r["generator_on_cpu"]
extra = "" if "drops" not in r else "; worker drops %d, idle %.2f %%" % (r["drops"], 100 * r["idle_time"])
cross = "" if r.get("cross_core_ns") is None else "; cross-core round trip %.0f ns" % r["cross_core_ns"]
print("%s attempt %d: %.2f Mpps (on CPU: poller %s%s%s%s)%s" % (r["label"], r["attempt"], r["mpps"], cpu, gen, extra, cross, "" if r["valid"] else " REJECTED"))' "$last")"
        if python3 -c 'import json, sys; sys.exit(0 if json.loads(sys.argv[1])["valid"] else 1)' "$last"; then
            valid[$m]=$((${valid[$m]:-0} + 1))
        fi
    done
    [ "$pending" = 1 ] || break
done

python3 - "$RESULTS" "$STATES" "$SECS" "$RUNS" "$MIN_CPU" > "$OUT/table.md" <<'EOF'
import json, statistics, sys
results_file, states, secs, runs = sys.argv[1], sys.argv[2].split(), sys.argv[3], int(sys.argv[4])
min_cpu = float(sys.argv[5])
rows = [json.loads(l) for l in open(results_file) if l.strip()]
def kept(label):
    # The valid runs; if there is none, every attempt (and the table says so).
    mine = [r for r in rows if r["label"] == label]
    return [r for r in mine if r["valid"]] or mine
def med(label):
    vals = [r["mpps"] for r in kept(label)]
    return statistics.median(vals) if vals else float("nan")
def mark(label):
    return "" if any(r["valid"] for r in rows if r["label"] == label) else " (no valid run)"
same, io, ceiling = med("testpmd-ring-null"), med("io-forwarder"), med("testpmd-null-null")
print("Medians of the valid runs (up to %d each) of %s s; Mpps of 60-byte frames (64 on the wire)." % (runs, secs))
print()
print("| states | rampart Mpps | ns/packet | testpmd io, same vdevs, 1 core | rampart / testpmd | rampart-bench io forwarder, same harness | rampart / io forwarder | testpmd io null<->null, per port | worker drops |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for s in states:
    label = "rampart-%s" % s
    m = med(label)
    drops = sum(r["drops"] for r in kept(label))
    print("| %s%s | %.2f | %.1f | %.1f%s | %.1f %% | %.1f%s | %.1f %% | %.1f%s | %d |" % (
        format(int(s), ",").replace(",", " "), mark(label), m, 1e3 / m if m else float("nan"),
        same, mark("testpmd-ring-null"), 100 * m / same, io, mark("io-forwarder"),
        100 * m / io, ceiling, mark("testpmd-null-null"), drops))
print()
print("Valid runs (Mpps; share of the window each poller had its CPU):")
for label in ["testpmd-ring-null", "testpmd-null-null", "io-forwarder"] + ["rampart-%s" % s for s in states]:
    mine = [r for r in rows if r["label"] == label]
    k = kept(label)
    def cpus(r):
        g = r.get("generator_on_cpu")
        return "%.3f" % r["on_cpu"] + ("" if g is None else "+%.3f" % g)
    extra = "; cross-core round trip %s ns" % " / ".join(
        "-" if r.get("cross_core_ns") is None else "%.0f" % r["cross_core_ns"] for r in k)
    if label.startswith("rampart") or label == "io-forwarder":
        extra += "; forwarder idle %s %%" % " / ".join("%.2f" % (100 * r["idle_time"]) for r in k)
    print("- %s: %s (%s%s); %d of %d attempts valid" % (
        label, " / ".join("%.2f" % r["mpps"] for r in k), " / ".join(cpus(r) for r in k),
        extra, sum(r["valid"] for r in mine), len(mine)))
print("- an attempt is valid when every poller had its CPU for at least %g %% of the window, and (rampart) the worker found the ring empty less than 5 %% of the time" % (100 * min_cpu))
print()
print("Commands:")
seen = set()
for r in rows:
    if r["label"] not in seen:
        seen.add(r["label"])
        print("- %s: `%s`" % (r["label"], r["cmd"]))
EOF
cat "$OUT/table.md"
