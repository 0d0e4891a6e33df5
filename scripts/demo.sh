#!/usr/bin/env bash
# The main job, end to end: build rampart, check a policy the way an operator would before
# deploying it, then run the firewall for real between two Linux hosts (network namespaces on
# this machine) and show it forwarding, tracking, blocking and refusing traffic.
#
#   1. rampart check / rampart trace on the example appliances (no privileges needed)
#   2. the lab (tests/lab/lab.sh run-demo; needs root, or sudo): ping through the firewall and
#      of the firewall, iperf3 with `rampart ctl states` during it, a blocked and a refused
#      connection, `rampart ctl info` and `rampart ctl rules`, SIGINT and the final counters,
#      and the teardown (always, even when a step fails).
#   3. high availability (tests/lab/ha.sh): two rampart nodes share the client's gateway by
#      CARP and their state tables by pfsync; traffic through the MASTER, the MASTER killed
#      (SIGKILL), the backup taking over with the failover time printed, the first node
#      returning (bulk update, then preempting); then 200 TCP connections and an iperf3 stream
#      opened through the MASTER survive its SIGKILL; teardown.
#
# Exits non-zero as soon as a step that should work does not.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
rampart_setup

heading() { printf '\n\033[1;34m== %s\033[0m\n' "$*"; }
step() {
    printf '\033[1m$ %s\033[0m\n' "$*"
    "$@"
}

heading "Build (cargo build --release)"
cargo build --release --quiet
target=${CARGO_TARGET_DIR:-target}
[[ $target == /* ]] || target=$(pwd)/$target
rampart=$target/release/rampart
ex=conf/examples

heading "1. Before deploying: validate the configurations, trace packets through the policy"
step "$rampart" check -c $ex/single-firewall.toml
step "$rampart" check -c $ex/ha/fw-a.toml
step "$rampart" check -c $ex/ha/fw-b.toml
# A LAN host opens a connection out: passed by "lan-out", state kept.
step "$rampart" trace -c $ex/single-firewall.toml --on lan --dir in tcp 192.0.2.10:51000 203.0.113.80:443
# An unsolicited SYN from outside: no rule passes it, the default blocks.
step "$rampart" trace -c $ex/single-firewall.toml --on wan --dir in tcp 203.0.113.80:443 192.0.2.10:51000

# A broken configuration: every error, each at FILE:LINE:COL.
broken=$(mktemp -d)
trap 'rm -rf "$broken"' EXIT
cat >"$broken/broken.toml" <<'TOML'
[[interface]]
name = "lan"
device = "net_null0"
addresses = ["192.0.2.1/24"]

[[rule]]
action = "pass"
on = "lna"
proto = "udp"
flags = "S/SA"
to_port = "2000:1000"
TOML
printf '\033[1m$ %s\033[0m\n' "rampart check -c broken.toml"
if (cd "$broken" && "$rampart" check -c broken.toml); then
    echo "demo: the broken configuration was accepted" >&2
    exit 1
fi

heading "2. The firewall at work: rampart between a client and a server (tests/lab/lab.sh)"
sudo=()
if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || {
        echo "demo: the lab needs root (network namespaces, DPDK): run as root or install sudo" >&2
        exit 1
    }
    sudo=(sudo)
fi
"${sudo[@]}" env RAMPART="$rampart" RL_PREFIX="${RL_PREFIX:-rl}" bash tests/lab/lab.sh run-demo

heading "3. High availability: two rampart nodes, one gateway address (tests/lab/ha.sh)"
ha() { "${sudo[@]}" env RAMPART="$rampart" HA_PREFIX="${HA_PREFIX:-ha}" bash tests/lab/ha.sh "$@"; }
trap 'ha down >/dev/null 2>&1 || true; rm -rf "$broken"' EXIT
step ha up
printf '\n'
step ha ctl fw-a carp
step ha ctl fw-b carp
# The client pings the VIP every 10 ms while fw-a is killed; the failover time is printed.
step ha failover kill
step ha ctl fw-b carp
# fw-a comes back, gets fw-b's states by bulk update and, with preempt and the lower advskew,
# takes the gateway back.
step ha failback
step ha ctl fw-a pfsync
# Connections opened through fw-a go on through fw-b when fw-a is killed: fw-b has their states.
step ha converge 20
step ha survive 200 10
step ha ctl fw-b pfsync
step ha down
trap 'rm -rf "$broken"' EXIT

echo
echo "demo: done"
