#!/usr/bin/env bash
# rampart's network-namespace lab: real Linux hosts on both sides of a rampart firewall.
#
#   rl-client                         rl-fw                          rl-server
#   eth0 192.0.2.10/24     veth    fw-lan  [rampart]  fw-wan   veth   eth0 198.51.100.7/24
#        2001:db8:1::10/64 <-----> (DPDK vdev)    (DPDK vdev) <----->      2001:db8:2::7/64
#   default via 192.0.2.1                                         default via 198.51.100.1
#
# rampart runs inside rl-fw (`ip netns exec rl-fw rampart run -c ...`) and drives the two veth
# ends through DPDK virtual devices: net_af_xdp if it starts, else net_af_packet, else net_pcap
# (the lab prints which, and why the others did not start). Its addresses are 192.0.2.1/24,
# 2001:db8:1::1/64 (lan) and 198.51.100.1/24, 2001:db8:2::1/64 (wan); the kernel of rl-fw has
# no address on either veth, so everything the hosts see of the firewall is rampart.
#
# Usage: tests/lab/lab.sh COMMAND
#   up          build the topology and start rampart (the lab stays up until `down`)
#   down        stop rampart and every process the lab started, delete the namespaces
#               (idempotent: safe to run on a lab that is half up, or not up at all)
#   status      what is up: namespaces, addresses, rampart, its counters
#   run-demo    up, show the firewall at work, stop rampart, down (always tears down)
#   topo        only the topology (no rampart);  start | stop  rampart alone
#   ctl ARGS    rampart ctl -s <the lab's socket> ARGS   (e.g. `ctl states`)
#   exec HOST CMD...   run CMD in client, server or fw   (e.g. `exec client ping 198.51.100.7`)
#   prereqs     exit 0 if a lab can run here; else print why and exit 77
#
# Environment:
#   RL_PREFIX   name prefix (default rl): namespaces $RL_PREFIX-client, -server, -fw
#   RL_DIR      the lab's directory: config, log, socket, pid files
#               (default ${TMPDIR:-/tmp}/rampart-lab-$RL_PREFIX)
#   RAMPART     the rampart binary (default: target/release/rampart of this checkout)
#   RL_DRIVER   auto (default), af_xdp, af_packet or pcap
#   RL_TIMEOUT  seconds to wait for rampart to start or stop (default 20)
#
# Every wait is bounded; the lab kills only the processes it started (by the PIDs it recorded,
# checked against their start time so a recycled PID is never hit), never by name.
set -euo pipefail

LAB_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LAB_REPO=$(cd "$LAB_SRC/../.." && pwd)

RL_PREFIX=${RL_PREFIX:-rl}
if [[ ! $RL_PREFIX =~ ^[a-z][a-z0-9]{0,11}$ ]]; then
    echo "lab: RL_PREFIX must be 1-12 lower-case letters and digits, starting with a letter" >&2
    exit 2
fi
NS_CLIENT=$RL_PREFIX-client
NS_SERVER=$RL_PREFIX-server
NS_FW=$RL_PREFIX-fw
RL_DIR=${RL_DIR:-${TMPDIR:-/tmp}/rampart-lab-$RL_PREFIX}
RL_DRIVER=${RL_DRIVER:-auto}
RL_TIMEOUT=${RL_TIMEOUT:-20}

# The addresses: documentation ranges only (RFC 5737, RFC 3849).
CLIENT4=192.0.2.10 CLIENT6=2001:db8:1::10 LAN4=192.0.2.1 LAN6=2001:db8:1::1
SERVER4=198.51.100.7 SERVER6=2001:db8:2::7 WAN4=198.51.100.1 WAN6=2001:db8:2::1

lab_say() { echo "lab: $*" >&2; }
lab_die() {
    echo "lab: error: $*" >&2
    exit 1
}

lab_rampart() {
    if [[ -n ${RAMPART:-} ]]; then
        echo "$RAMPART"
    elif [[ -x ${CARGO_TARGET_DIR:-$LAB_REPO/target}/release/rampart ]]; then
        echo "${CARGO_TARGET_DIR:-$LAB_REPO/target}/release/rampart"
    elif command -v rampart >/dev/null; then
        command -v rampart
    else
        lab_die "no rampart binary: build it (cargo build --release) or set RAMPART"
    fi
}

lab_ns_exists() { ip netns list 2>/dev/null | awk '{print $1}' | grep -qx "$1"; }

# in HOST CMD...: run CMD in the client, server or fw namespace.
lab_in() {
    local host=$1
    shift
    case $host in
    client) ip netns exec "$NS_CLIENT" "$@" ;;
    server) ip netns exec "$NS_SERVER" "$@" ;;
    fw) ip netns exec "$NS_FW" "$@" ;;
    *) lab_die "unknown host $host (client, server or fw)" ;;
    esac
}

# ---------------------------------------------------------------------------------------------
# Processes: started detached, recorded as "PID STARTTIME", killed only if both still match.

proc_starttime() { awk '{print $22}' "/proc/$1/stat" 2>/dev/null || true; }

# The recorded process in pid file $1 if it is still the one the lab started (prints its PID).
lab_alive() {
    local pid start
    [[ -s $1 ]] || return 1
    read -r pid start <"$1" || return 1
    [[ -n $pid && -n $start && $(proc_starttime "$pid") == "$start" ]] || return 1
    echo "$pid"
}

# lab_kill PIDFILE: SIGTERM, then SIGKILL after 5 s; waits (bounded) until it is gone.
lab_kill() {
    local pid i
    pid=$(lab_alive "$1") || {
        rm -f "$1"
        return 0
    }
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        lab_alive "$1" >/dev/null || break
        sleep 0.1
    done
    if pid=$(lab_alive "$1"); then
        lab_say "process $pid ignored SIGTERM for 5 s: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            lab_alive "$1" >/dev/null || break
            sleep 0.1
        done
    fi
    rm -f "$1"
}

# lab_spawn NAME HOST CMD...: start CMD in HOST's namespace, detached from this shell (its own
# session, so a terminal's Ctrl-C or the end of this script does not reach it), output in
# $RL_DIR/NAME.log, PID in $RL_DIR/pids/NAME and its exit status in $RL_DIR/NAME.rc when it ends.
lab_spawn() {
    local name=$1 host=$2 ns
    shift 2
    case $host in
    client) ns=$NS_CLIENT ;; server) ns=$NS_SERVER ;; fw) ns=$NS_FW ;;
    *) lab_die "unknown host $host" ;;
    esac
    mkdir -p "$RL_DIR/pids"
    rm -f "$RL_DIR/$name.rc" "$RL_DIR/pids/$name"
    # `set -m` gives the command default SIGINT handling (a shell without job control starts
    # background commands with SIGINT ignored); `ip netns exec` execs it, so $! is its PID.
    # shellcheck disable=SC2016 # expanded by the inner bash
    setsid bash -c '
        set -m
        name=$1 dir=$2 ns=$3
        shift 3
        ip netns exec "$ns" "$@" </dev/null >"$dir/$name.log" 2>&1 &
        pid=$!
        echo "$pid $(awk "{print \$22}" /proc/$pid/stat)" >"$dir/pids/$name.tmp"
        mv "$dir/pids/$name.tmp" "$dir/pids/$name"
        wait "$pid"
        echo $? >"$dir/$name.rc.tmp"
        mv "$dir/$name.rc.tmp" "$dir/$name.rc"
    ' lab-"$name" "$name" "$RL_DIR" "$ns" "$@" >/dev/null 2>&1 </dev/null &
    local i
    for ((i = 0; i < 50; i++)); do
        [[ -s $RL_DIR/pids/$name ]] && return 0
        sleep 0.1
    done
    lab_die "could not start $name"
}

# ---------------------------------------------------------------------------------------------
# Prerequisites

lab_prereqs() {
    if [[ $(id -u) -ne 0 ]]; then
        echo "not running as root (the lab creates network namespaces)"
        return 77
    fi
    command -v ip >/dev/null || {
        echo "iproute2 (ip) is not installed"
        return 77
    }
    local probe=rlprobe$$
    if ! ip netns add "$probe" 2>/dev/null; then
        echo "cannot create a network namespace (ip netns add failed)"
        return 77
    fi
    if ! ip -n "$probe" link add probe0 type veth peer name probe1 2>/dev/null; then
        ip netns del "$probe" 2>/dev/null || true
        echo "cannot create a veth pair"
        return 77
    fi
    ip netns del "$probe"
    return 0
}

# ---------------------------------------------------------------------------------------------
# Topology

lab_topo() {
    local tool
    for tool in ip ethtool; do
        command -v $tool >/dev/null || lab_die "$tool is not installed (bash scripts/setup.sh installs it)"
    done
    if lab_ns_exists "$NS_CLIENT" || lab_ns_exists "$NS_SERVER" || lab_ns_exists "$NS_FW"; then
        lab_say "a lab named $RL_PREFIX is already up: taking it down first"
        lab_down
    fi
    mkdir -p "$RL_DIR"
    chmod 700 "$RL_DIR"
    ip netns add "$NS_CLIENT"
    ip netns add "$NS_SERVER"
    ip netns add "$NS_FW"
    # One queue on each side of each veth pair: the hosts transmit on queue 0, which lands on
    # rx queue 0 of fw-lan/fw-wan, where the one AF_XDP socket (or the pcap/AF_PACKET reader)
    # is bound. A second rx queue would receive frames that nobody reads.
    ip -n "$NS_FW" link add fw-lan numtxqueues 1 numrxqueues 1 type veth \
        peer name eth0 numtxqueues 1 numrxqueues 1 netns "$NS_CLIENT"
    ip -n "$NS_FW" link add fw-wan numtxqueues 1 numrxqueues 1 type veth \
        peer name eth0 numtxqueues 1 numrxqueues 1 netns "$NS_SERVER"

    local ns
    for ns in "$NS_CLIENT" "$NS_SERVER" "$NS_FW"; do
        ip -n "$ns" link set lo up
    done
    # rl-fw's kernel must stay out of the way: no addresses, no IPv6 (no link-local address,
    # no router solicitations, no DAD), no forwarding (a new namespace has it off). With
    # af_packet or pcap the kernel sees every frame too, and would otherwise answer some.
    lab_in fw sysctl -qw net.ipv6.conf.fw-lan.disable_ipv6=1 net.ipv6.conf.fw-wan.disable_ipv6=1
    lab_in fw sysctl -qw net.ipv4.ip_forward=0

    # The hosts: static addresses without duplicate address detection (an address in DAD is
    # "tentative" and cannot be used for a second or more), default routes via rampart.
    local host addr4 addr6 gw4 gw6
    for host in client server; do
        if [[ $host == client ]]; then
            addr4=$CLIENT4 addr6=$CLIENT6 gw4=$LAN4 gw6=$LAN6
        else
            addr4=$SERVER4 addr6=$SERVER6 gw4=$WAN4 gw6=$WAN6
        fi
        lab_in $host sysctl -qw net.ipv6.conf.eth0.accept_dad=0 net.ipv6.conf.eth0.accept_ra=0
        # Checksums: with TX checksum offload on (the veth default), the kernel hands the veth
        # CHECKSUM_PARTIAL frames whose TCP/UDP checksum holds only the pseudo-header sum,
        # to be completed "by the NIC". A veth never completes it, and AF_XDP, AF_PACKET and
        # pcap deliver the frame to rampart as it is: rampart would forward a wrong checksum
        # (its update is incremental) and the other host would drop the segment. So the
        # hosts compute checksums in software. This also turns off TSO/GSO on the veth (they
        # depend on TX checksumming), so no 64 KB super-frame reaches a 2 KB mbuf.
        lab_in $host ethtool -K eth0 tx off >/dev/null
        lab_in $host ip link set eth0 up
        lab_in $host ip addr add "$addr4/24" dev eth0
        lab_in $host ip -6 addr add "$addr6/64" dev eth0 nodad
        lab_in $host ip route add default via "$gw4"
        lab_in $host ip -6 route add default via "$gw6"
    done
    # GRO would merge frames on the firewall's veths into super-frames before the XDP hook or
    # the packet socket (it is off by default on veth; make sure). No XDP program is loaded
    # here: DPDK's af_xdp driver loads its own (libxdp may say it finds no bpffs at
    # /sys/fs/bpf and falls back to a single program: harmless), and veth's native XDP needs
    # nothing else (the peer's GSO is turned off by the kernel while XDP is attached).
    lab_in fw ethtool -K fw-lan gro off >/dev/null 2>&1 || true
    lab_in fw ethtool -K fw-wan gro off >/dev/null 2>&1 || true
    lab_in fw ip link set fw-lan up
    lab_in fw ip link set fw-wan up
    lab_say "topology up: $NS_CLIENT ($CLIENT4, $CLIENT6) -- [$NS_FW: fw-lan | fw-wan] -- $NS_SERVER ($SERVER4, $SERVER6)"
}

# ---------------------------------------------------------------------------------------------
# rampart

# The vdev strings for one driver. rampart opens each port with one RX queue per worker and
# one TX queue more (the control core's): one worker here, so 1 RX and 2 TX queues.
lab_devices() {
    case $1 in
    af_xdp)
        # The af_xdp driver offers as many queue pairs as the netdev has combined channels;
        # a veth reports none, so DPDK 22.11 gives one RX and one TX queue.
        echo "net_af_xdp0,iface=fw-lan,start_queue=0,queue_count=1"
        echo "net_af_xdp1,iface=fw-wan,start_queue=0,queue_count=1"
        ;;
    af_packet)
        # One queue pair. More would not help: af_packet puts every pair's socket in one
        # PACKET_FANOUT_HASH group, so flows hashed to a queue rampart does not poll are lost.
        echo "net_af_packet0,iface=fw-lan,qpairs=1"
        echo "net_af_packet1,iface=fw-wan,qpairs=1"
        ;;
    pcap)
        # pcap counts its queues from the interface arguments: one rx_iface_in (incoming frames
        # only, so rampart never reads back what it sent) and two tx_iface (worker, control).
        echo "net_pcap0,rx_iface_in=fw-lan,tx_iface=fw-lan,tx_iface=fw-lan"
        echo "net_pcap1,rx_iface_in=fw-wan,tx_iface=fw-wan,tx_iface=fw-wan"
        ;;
    *) lab_die "unknown driver $1 (af_xdp, af_packet or pcap)" ;;
    esac
}

lab_config() {
    local driver=$1 devs
    mapfile -t devs < <(lab_devices "$driver")
    cat >"$RL_DIR/fw.toml" <<EOF
# Generated by tests/lab/lab.sh for the lab "$RL_PREFIX" (driver $driver).
[appliance]
name = "lab-$RL_PREFIX"

[dpdk]
control_lcore = 0
worker_lcores = [1]
poll = "adaptive"            # the worker shares its vCPU with the lab's hosts
eal_args = ["--no-pci", "--in-memory", "--no-telemetry"]
mbufs = 8191                 # ~20 MB of hugepages: enough for 2 ports x 1 RX + 2 TX rings

[[interface]]
name = "lan"
device = "${devs[0]}"
addresses = ["$LAN4/24", "$LAN6/64"]

[[interface]]
name = "wan"
device = "${devs[1]}"
addresses = ["$WAN4/24", "$WAN6/64"]

[control]
socket = "$RL_DIR/rampart.sock"

[policy]
default = "block"            # so connections from the server side are blocked

[[rule]]                     # the client's network may go anywhere
action = "pass"
direction = "in"
on = "lan"
from = ["192.0.2.0/24", "2001:db8:1::/64"]
label = "lan-out"

[[rule]]                     # forwarded packets are filtered again on the way out
action = "pass"
direction = "out"
label = "out"

[[rule]]
action = "pass"
direction = "in"
af = "inet"
proto = "icmp"
to = "self"
label = "ping-me"

[[rule]]
action = "pass"
direction = "in"
af = "inet6"
proto = "icmp6"
to = "self"
label = "ping6-me"

[[rule]]                     # refuse telnet at once (a TCP RST) instead of a silent drop
action = "block"
return = true
direction = "in"
on = "lan"
proto = "tcp"
to_port = 23
label = "no-telnet"
EOF
}

# Starts rampart with one driver and waits until it answers on its socket and (the real test
# of a driver) ARP and ping from the client. Returns 1, with the reason in $RL_DIR/why, if not.
lab_try_driver() {
    local driver=$1 rampart i
    rampart=$(lab_rampart)
    lab_config "$driver"
    rm -f "$RL_DIR/rampart.sock" "$RL_DIR/why"
    lab_spawn rampart fw "$rampart" run -c "$RL_DIR/fw.toml"
    local deadline=$((SECONDS + RL_TIMEOUT)) ready=""
    while ((SECONDS < deadline)); do
        if [[ -e $RL_DIR/rampart.rc ]]; then
            {
                echo "rampart exited with status $(cat "$RL_DIR/rampart.rc") on $driver:"
                grep -E "rampart run:|error|rror|fail" "$RL_DIR/rampart.log" | tail -3 | sed 's/^/    /'
            } >"$RL_DIR/why"
            return 1
        fi
        if "$rampart" ctl -s "$RL_DIR/rampart.sock" info --json >/dev/null 2>&1; then
            ready=1
            break
        fi
        sleep 0.2
    done
    if [[ -z $ready ]]; then
        echo "rampart did not open its socket within ${RL_TIMEOUT}s on $driver" >"$RL_DIR/why"
        lab_stop >/dev/null 2>&1 || true
        return 1
    fi
    # The MACs rampart uses are its ports' (it reads them from the devices). pcap has no way
    # to learn the interface's MAC with separate rx/tx interfaces and makes one up; give the
    # veth that MAC so that, as with af_xdp and af_packet, "fw-lan's MAC" is rampart's.
    local ifc mac
    for ifc in lan wan; do
        mac=$(sed -n "s/^rampart: interface $ifc = .* mac \([0-9a-f:]*\)$/\1/p" "$RL_DIR/rampart.log" | head -1)
        [[ -n $mac ]] || mac=$(lab_in fw cat /sys/class/net/fw-$ifc/address)
        echo "$mac" >"$RL_DIR/$ifc.mac"
        [[ $(lab_in fw cat /sys/class/net/fw-$ifc/address) == "$mac" ]] || lab_in fw ip link set fw-$ifc address "$mac"
    done
    for ((i = 0; i < 10; i++)); do
        if lab_in client ping -n -c 1 -W 1 "$LAN4" >/dev/null 2>&1; then
            echo "$driver" >"$RL_DIR/driver"
            return 0
        fi
    done
    echo "rampart started on $driver but did not answer ping from the client within 10 s" >"$RL_DIR/why"
    lab_stop >/dev/null 2>&1 || true
    return 1
}

lab_start() {
    lab_ns_exists "$NS_FW" || lab_die "the topology is not up (lab.sh topo, or lab.sh up)"
    if lab_alive "$RL_DIR/pids/rampart" >/dev/null; then
        lab_say "rampart is already running (pid $(lab_alive "$RL_DIR/pids/rampart"))"
        return 0
    fi
    local rampart
    rampart=$(lab_rampart)
    [[ -x $rampart ]] || lab_die "$rampart is not an executable"
    local drivers=(af_xdp af_packet pcap) d
    [[ $RL_DRIVER == auto ]] || drivers=("$RL_DRIVER")
    local free
    free=$(awk '/^HugePages_Free:/ {print $2}' /proc/meminfo)
    ((free >= 16)) || lab_say "warning: only ${free:-0} free hugepages; rampart may not start (echo 256 > /proc/sys/vm/nr_hugepages)"
    for d in "${drivers[@]}"; do
        if lab_try_driver "$d"; then
            lab_say "rampart $(lab_alive "$RL_DIR/pids/rampart") runs on net_$d (lan $(cat "$RL_DIR/lan.mac"), wan $(cat "$RL_DIR/wan.mac")); socket $RL_DIR/rampart.sock, log $RL_DIR/rampart.log"
            return 0
        fi
        lab_say "net_$d did not work: $(cat "$RL_DIR/why")"
        cp "$RL_DIR/rampart.log" "$RL_DIR/rampart-$d-failed.log" 2>/dev/null || true
    done
    lab_die "rampart could not run on any driver (${drivers[*]}); logs in $RL_DIR"
}

# Stops rampart with SIGINT (as an operator would), waits for it (bounded), prints what it
# printed on the way out (its final counters) and returns its exit status.
lab_stop() {
    local pid i rc
    if ! pid=$(lab_alive "$RL_DIR/pids/rampart"); then
        lab_say "rampart is not running"
        return 0
    fi
    local lines
    lines=$(wc -l <"$RL_DIR/rampart.log")
    kill -INT "$pid"
    for ((i = 0; i < RL_TIMEOUT * 10; i++)); do
        [[ -e $RL_DIR/rampart.rc ]] && break
        sleep 0.1
    done
    if [[ ! -e $RL_DIR/rampart.rc ]]; then
        lab_say "rampart did not stop within ${RL_TIMEOUT}s of SIGINT: killing it"
        lab_kill "$RL_DIR/pids/rampart"
        return 1
    fi
    rm -f "$RL_DIR/pids/rampart"
    rc=$(cat "$RL_DIR/rampart.rc")
    tail -n +"$((lines + 1))" "$RL_DIR/rampart.log"
    lab_say "rampart stopped: exit status $rc"
    return "$rc"
}

# ---------------------------------------------------------------------------------------------
# Down

lab_down() {
    local f ns
    if [[ -d $RL_DIR/pids ]]; then
        if [[ -e $RL_DIR/pids/rampart ]]; then
            lab_stop >/dev/null 2>&1 || true
        fi
        for f in "$RL_DIR"/pids/*; do
            [[ -e $f ]] && lab_kill "$f"
        done
    fi
    for ns in "$NS_CLIENT" "$NS_SERVER" "$NS_FW"; do
        lab_ns_exists "$ns" || continue
        local left
        left=$(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ')
        if [[ -n $left ]]; then
            # Not ours to kill: the lab records every process it starts, and these are not
            # among them. The namespace disappears when they exit.
            lab_say "warning: processes the lab did not start are still in $ns: $left"
        fi
        ip netns del "$ns"
    done
    rm -rf "$RL_DIR"
}

# On a failure, before the lab's directory goes: what rampart said.
lab_dump_logs() {
    local f
    for f in "$RL_DIR"/*.log; do
        [[ -s $f ]] || continue
        echo "---- $f (last 25 lines)" >&2
        tail -n 25 "$f" >&2
    done
}

# The traps of commands that build a lab: on failure or a signal, say why and tear down.
lab_traps() {
    trap 'rc=$?; if ((rc)); then lab_dump_logs; fi; lab_down; exit $rc' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

lab_status() {
    local ns up=0
    for ns in "$NS_CLIENT" "$NS_SERVER" "$NS_FW"; do
        if lab_ns_exists "$ns"; then
            up=1
            echo "== namespace $ns"
            ip -n "$ns" -br addr show | grep -v '^lo ' || true
        fi
    done
    if ((!up)); then
        echo "lab $RL_PREFIX is down"
        return 0
    fi
    local pid
    if pid=$(lab_alive "$RL_DIR/pids/rampart"); then
        echo "== rampart: pid $pid on net_$(cat "$RL_DIR/driver" 2>/dev/null || echo '?'), config $RL_DIR/fw.toml"
        "$(lab_rampart)" ctl -s "$RL_DIR/rampart.sock" info || true
    else
        echo "== rampart: not running"
    fi
}

# ---------------------------------------------------------------------------------------------
# The demo

# step TITLE CMD...: show the command, run it, stop the demo if it fails.
demo_heading() { printf '\n\033[1;34m== %s\033[0m\n' "$*"; }
demo_step() {
    printf '\033[1m$ %s\033[0m\n' "$*"
    "$@" || {
        echo "demo: FAILED: $*" >&2
        return 1
    }
}
# demo_in HOST CMD...: the same, in a host's namespace.
demo_in() {
    local host=$1
    shift
    printf '\033[1m%s$ %s\033[0m\n' "$host" "$*"
    lab_in "$host" "$@" || {
        echo "demo: FAILED on $host: $*" >&2
        return 1
    }
}

lab_demo() {
    lab_traps
    local rampart sock
    rampart=$(lab_rampart)
    sock=$RL_DIR/rampart.sock

    demo_heading "The lab: client and server namespaces, rampart in between"
    lab_topo
    lab_start
    lab_status | sed -n '/^== namespace/,/^== rampart/p'

    demo_heading "Ping through the firewall (client -> server)"
    echo "(rampart drops a host's first packet while it resolves the next hop's MAC: the"
    echo " first ping may be lost, and is counted as no-neighbor)"
    demo_in client ping -n -c 3 -i 0.2 -W 2 "$SERVER4"
    demo_in client ping -n -6 -c 3 -i 0.2 -W 2 "$SERVER6"

    demo_heading "Ping the firewall itself, and the client's ARP entry for it"
    demo_in client ping -n -c 3 -i 0.2 -W 2 "$LAN4"
    demo_in client ping -n -6 -c 3 -i 0.2 -W 2 "$LAN6"
    demo_in client ip neigh show "$LAN4"
    echo "(rampart's lan MAC: $(cat "$RL_DIR/lan.mac"))"

    demo_heading "A TCP transfer through the firewall: iperf3, 3 seconds"
    lab_spawn iperf3-server server iperf3 -s -1 -B "$SERVER4"
    local i
    for ((i = 0; i < 50; i++)); do
        lab_in server ss -Htln 2>/dev/null | grep -q ":5201" && break
        sleep 0.1
    done
    printf '\033[1mclient$ %s\033[0m\n' "iperf3 -c $SERVER4 -t 3 -f m"
    lab_spawn iperf3-client client timeout 20 iperf3 -c "$SERVER4" -t 3 -f m
    sleep 1.5
    demo_heading "rampart ctl states, while iperf3 runs"
    demo_step "$rampart" ctl -s "$sock" states
    for ((i = 0; i < 250; i++)); do
        [[ -e $RL_DIR/iperf3-client.rc ]] && break
        sleep 0.1
    done
    cat "$RL_DIR/iperf3-client.log"
    [[ $(cat "$RL_DIR/iperf3-client.rc" 2>/dev/null) == 0 ]] || {
        echo "demo: FAILED: iperf3" >&2
        return 1
    }
    rm -f "$RL_DIR/pids/iperf3-client"
    lab_kill "$RL_DIR/pids/iperf3-server"

    demo_heading "Blocked: the server may not connect to the client (no rule passes it)"
    lab_spawn nc-listener client nc -l "$CLIENT4" 2222
    local before after
    before=$("$rampart" ctl -s "$sock" info --json | jq '.packets.blocked')
    printf '\033[1m$ %s\033[0m\n' "nc -zv -w 2 $CLIENT4 2222   (in $NS_SERVER)"
    if lab_in server nc -zv -w 2 "$CLIENT4" 2222; then
        echo "demo: FAILED: the server reached the client through the firewall" >&2
        return 1
    fi
    after=$("$rampart" ctl -s "$sock" info --json | jq '.packets.blocked')
    echo "rampart's \"blocked\" counter (packets a block rule or the default dropped): $before -> $after"
    ((after > before)) || {
        echo "demo: FAILED: the blocked counter did not grow" >&2
        return 1
    }
    lab_kill "$RL_DIR/pids/nc-listener"

    demo_heading "Refused: telnet from the client gets a TCP RST at once (block return)"
    printf '\033[1m$ %s\033[0m\n' "nc -zv -w 5 $SERVER4 23   (in $NS_CLIENT)"
    local t0=$SECONDS out
    if out=$(lab_in client nc -zv -w 5 "$SERVER4" 23 2>&1); then
        echo "$out"
        echo "demo: FAILED: port 23 was not refused" >&2
        return 1
    fi
    echo "$out"
    [[ $out == *refused* && $((SECONDS - t0)) -lt 3 ]] || {
        echo "demo: FAILED: port 23 was not refused at once" >&2
        return 1
    }

    demo_heading "rampart ctl info"
    demo_step "$rampart" ctl -s "$sock" info
    demo_heading "rampart ctl rules"
    demo_step "$rampart" ctl -s "$sock" rules

    demo_heading "Stop rampart with SIGINT: its final counters"
    printf '\033[1m$ kill -INT %s   (rampart)\033[0m\n' "$(lab_alive "$RL_DIR/pids/rampart")"
    lab_stop || {
        echo "demo: FAILED: rampart did not exit 0 after SIGINT" >&2
        return 1
    }

    demo_heading "Tear down"
    trap - EXIT
    lab_down
    local ns
    for ns in "$NS_CLIENT" "$NS_SERVER" "$NS_FW"; do
        ! lab_ns_exists "$ns" || {
            echo "demo: FAILED: $ns is still there" >&2
            return 1
        }
    done
    echo "lab $RL_PREFIX is down: no namespace, veth or process left"
}

# ---------------------------------------------------------------------------------------------

lab_main() {
    local cmd=${1:-}
    shift || true
    case $cmd in
    prereqs) lab_prereqs ;;
    up)
        local why
        why=$(lab_prereqs) || lab_die "the lab cannot run here: $why"
        # A half-built lab is torn down on any failure or signal; a built one stays up.
        lab_traps
        lab_topo
        lab_start
        trap - EXIT INT TERM
        lab_say "up. Try: $0 exec client ping $SERVER4 | $0 ctl states | $0 down"
        ;;
    topo)
        lab_traps
        lab_topo
        trap - EXIT INT TERM
        ;;
    start) lab_start ;;
    stop) lab_stop ;;
    down) lab_down ;;
    status) lab_status ;;
    run-demo)
        local why
        why=$(lab_prereqs) || lab_die "the lab cannot run here: $why"
        lab_demo
        ;;
    ctl) "$(lab_rampart)" ctl -s "$RL_DIR/rampart.sock" "$@" ;;
    exec)
        [[ $# -ge 2 ]] || lab_die "usage: $0 exec client|server|fw CMD..."
        lab_in "$@"
        ;;
    *)
        sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
        [[ -z $cmd || $cmd == help || $cmd == -h || $cmd == --help ]] || exit 2
        ;;
    esac
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    lab_main "$@"
fi
