#!/usr/bin/env bash
# rampart's HA lab: two rampart nodes running CARP between real Linux hosts, one machine.
#
#                       ha-sw (two Linux bridges, no addresses)
#   ha-client  eth0 --- c-lan ]                          [ s-wan --- eth0  ha-server
#   192.0.2.10/24         br-lan: lan-a lan-b    br-wan: wan-a wan-b        198.51.100.7/24
#   gw 192.0.2.1 (VIP 1)        |      |               |      |       gw 198.51.100.1 (VIP 2)
#                          lan [fw-a] wan         lan [fw-b] wan
#                ha-fwa: rampart, .2 on both   ha-fwb: rampart (or ucarp), .3 on both
#                    sync ---------- br-sync: sync-a sync-b ---------- sync
#                 198.18.0.2/24     (pfsync, IP protocol 240)     198.18.0.3/24
#
# fw-a and fw-b each run rampart in their own namespace, on AF_XDP vdevs bound to their two
# veths (`lan`, `wan`), with CARP vhid 1 (VIP 192.0.2.1 on lan) and vhid 2 (VIP 198.51.100.1 on
# wan), one passphrase, preempt, fw-a advskew 0 and fw-b advskew 100 by default. Each node has
# its own management socket. The kernels of ha-fwa/ha-fwb hold no address, so everything the
# hosts see of a firewall is rampart. With HA_PEER_B=ucarp, fw-b is Debian's ucarp on a kernel
# interface instead (192.0.2.3, vhid 1 only, the VIP added and removed by its up/down scripts).
# The nodes run pfsync on a third veth (`sync`, on its own bridge: the dedicated sync link
# docs/ha.md recommends) unless HA_PFSYNC=0.
#
# Usage: tests/lab/ha.sh COMMAND
#   up                 topology, both nodes, wait until fw-a is MASTER and fw-b BACKUP of
#                      every vhid, check that the client reaches the server through the VIPs
#   down               stop everything the lab started, delete its namespaces and directory
#                      (idempotent: safe on a lab that is half up, or not up at all)
#   status             namespaces, nodes, `rampart ctl carp` of each node
#   start NODE | stop NODE [INT|TERM|KILL]     one node (fw-a or fw-b); stop waits for it
#   state NODE VHID    MASTER, BACKUP or INIT (rampart: ctl carp; ucarp: its log)
#   wait NODE VHID STATE [SECONDS]             until NODE's vhid is in STATE (bounded)
#   converge [SECONDS] until fw-a is MASTER and fw-b BACKUP for every vhid
#   ctl NODE ARGS...   rampart ctl -s <NODE's socket> ARGS      (e.g. `ctl fw-a carp`)
#   exec HOST CMD...   CMD in client, server, sw, fw-a or fw-b
#   capture BRIDGE SECONDS FILE   CARP frames on br-lan or br-wan, pfsync frames on br-sync,
#                      into a pcap (dumpcap)
#   decode FILE        the captured adverts as tshark's CARP dissector sees them, one a line
#   forge ARGS...      tests/lab/carp.py forge from the client (--iface eth0 --src 192.0.2.10)
#   failover kill|term the MASTER of vhid 1 (fw-a) gets SIGKILL or SIGTERM while the client
#                      pings the VIP every 10 ms; prints the takeover and the answer times and
#                      an `ha-result` line. The node is left stopped.
#   failback           fw-a (stopped) starts while the client probes the VIP, and preempts
#                      fw-b: prints the outage the client saw and an `ha-result` line
#   switchover         `carp demote 1` on fw-a (MASTER) while the client probes the VIP, fw-b
#                      takes over; then `carp promote`, fw-a preempts back: both outages
#   measure kill|term N   N failovers, each followed by a failback, and the medians
#   sync cut|restore   br-sync stops (or resumes) forwarding: pfsync frames are lost, links stay up
#   survive [N] [SECS] the client opens N TCP connections (default 300) through the MASTER and an
#                      iperf3 stream, and probes each connection every 200 ms; fw-a gets SIGKILL;
#                      prints how many connections survived, the stream's longest stall and an
#                      `ha-result` line. fw-a is left stopped.
#   hold N SECS        the client opens N TCP connections and keeps them idle for SECS (background)
#   pfsync NODE        `rampart ctl pfsync --json` of NODE
#   pfsync-decode FILE the pfsync frames of a capture through tests/lab/pfsync_decode.py (JSON)
#   prereqs            exit 0 if a lab can run here; else print why and exit 77
#
# Environment (read at `up`, remembered in $HA_DIR/settings for the later commands):
#   HA_PREFIX   name prefix (default ha): namespaces $HA_PREFIX-sw, -client, -server, -fwa, -fwb
#   HA_DIR      config, logs, sockets, pid files (default ${TMPDIR:-/tmp}/rampart-ha-$HA_PREFIX)
#   RAMPART     the rampart binary (default: target/release/rampart of this checkout)
#   HA_ADVBASE  advbase of every vhid (default 1; 0 for sub-second intervals)
#   HA_SKEW_A, HA_SKEW_B   advskew of fw-a and fw-b (defaults 0 and 100)
#   HA_PASS     the CARP passphrase (default mekmitasdigoat)
#   HA_PEER_B   rampart (default) or ucarp
#   HA_UCARP_PASS  ucarp's passphrase (default HA_PASS; a different one for the bad-HMAC test)
#   HA_DRIVER   af_xdp (default) or af_packet
#   HA_PFSYNC   1 (default with two rampart nodes) runs pfsync on the sync link; 0 does not
#   HA_SPLIT_STATES  1 sets [pfsync] split_states on both nodes (pf's two states per
#               forwarded connection, as for an OpenBSD peer); default 0
#   HA_TIMEOUT  seconds to wait for a node to start or stop (default 20)
#
# Every wait is bounded; the lab kills only the processes it started (by the PIDs it recorded,
# checked against their start time so a recycled PID is never hit), never by name. Only
# documentation address ranges are used (RFC 5737).
set -euo pipefail

HA_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
HA_REPO=$(cd "$HA_SRC/../.." && pwd)

HA_PREFIX=${HA_PREFIX:-ha}
if [[ ! $HA_PREFIX =~ ^[a-z][a-z0-9]{0,11}$ ]]; then
    echo "ha: HA_PREFIX must be 1-12 lower-case letters and digits, starting with a letter" >&2
    exit 2
fi
HA_DIR=${HA_DIR:-${TMPDIR:-/tmp}/rampart-ha-$HA_PREFIX}
NS_SW=$HA_PREFIX-sw
NS_CLIENT=$HA_PREFIX-client
NS_SERVER=$HA_PREFIX-server
NS_FWA=$HA_PREFIX-fwa
NS_FWB=$HA_PREFIX-fwb
HA_SETTINGS=(HA_ADVBASE HA_SKEW_A HA_SKEW_B HA_PASS HA_PEER_B HA_UCARP_PASS HA_DRIVER HA_PFSYNC HA_SPLIT_STATES RAMPART)

# The settings of a lab that is up, for variables the caller did not set.
if [[ -f $HA_DIR/settings ]]; then
    while IFS='=' read -r k v; do
        [[ " ${HA_SETTINGS[*]} " == *" $k "* ]] || continue
        [[ -n ${!k+x} ]] || printf -v "$k" '%s' "$v"
    done <"$HA_DIR/settings"
fi
HA_ADVBASE=${HA_ADVBASE:-1}
HA_SKEW_A=${HA_SKEW_A:-0}
HA_SKEW_B=${HA_SKEW_B:-100}
HA_PASS=${HA_PASS:-mekmitasdigoat}
HA_PEER_B=${HA_PEER_B:-rampart}
HA_UCARP_PASS=${HA_UCARP_PASS:-$HA_PASS}
HA_DRIVER=${HA_DRIVER:-af_xdp}
if [[ $HA_PEER_B == ucarp ]]; then HA_PFSYNC=${HA_PFSYNC:-0}; else HA_PFSYNC=${HA_PFSYNC:-1}; fi
HA_SPLIT_STATES=${HA_SPLIT_STATES:-0}
HA_TIMEOUT=${HA_TIMEOUT:-20}

# Documentation ranges only (RFC 5737).
CLIENT4=192.0.2.10 SERVER4=198.51.100.7
VIP_LAN=192.0.2.1 VIP_WAN=198.51.100.1
A_LAN=192.0.2.2 A_WAN=198.51.100.2 B_LAN=192.0.2.3 B_WAN=198.51.100.3
A_SYNC=198.18.0.2 B_SYNC=198.18.0.3
VHIDS=(1 2)

ha_say() { echo "ha: $*" >&2; }
ha_die() {
    echo "ha: error: $*" >&2
    exit 1
}

ha_rampart() {
    if [[ -n ${RAMPART:-} ]]; then
        echo "$RAMPART"
    elif [[ -x ${CARGO_TARGET_DIR:-$HA_REPO/target}/release/rampart ]]; then
        echo "${CARGO_TARGET_DIR:-$HA_REPO/target}/release/rampart"
    elif command -v rampart >/dev/null; then
        command -v rampart
    else
        ha_die "no rampart binary: build it (cargo build --release) or set RAMPART"
    fi
}

ha_ns() {
    case $1 in
    client) echo "$NS_CLIENT" ;;
    server) echo "$NS_SERVER" ;;
    sw) echo "$NS_SW" ;;
    fw-a) echo "$NS_FWA" ;;
    fw-b) echo "$NS_FWB" ;;
    *) ha_die "unknown host $1 (client, server, sw, fw-a or fw-b)" ;;
    esac
}

ha_in() {
    local ns
    ns=$(ha_ns "$1")
    shift
    ip netns exec "$ns" "$@"
}

ha_ns_exists() { ip netns list 2>/dev/null | awk '{print $1}' | grep -qx "$1"; }

ha_node_kind() {
    if [[ $1 == fw-b && $HA_PEER_B == ucarp ]]; then echo ucarp; else echo rampart; fi
}

# ha_count PATTERN FILE: lines of FILE matching PATTERN (0 if there is no FILE).
ha_count() {
    local n
    n=$(grep -c -- "$1" "$2" 2>/dev/null) || true
    echo "${n:-0}"
}

# Seconds since the epoch with µs, without a fork (bash 5's EPOCHREALTIME).
ha_now() { echo "${EPOCHREALTIME/,/.}"; }

# ---------------------------------------------------------------------------------------------
# Processes: started detached, recorded as "PID STARTTIME", killed only if both still match.

proc_starttime() { awk '{print $22}' "/proc/$1/stat" 2>/dev/null || true; }

ha_alive() {
    local pid start
    [[ -s $1 ]] || return 1
    read -r pid start <"$1" || return 1
    [[ -n $pid && -n $start && $(proc_starttime "$pid") == "$start" ]] || return 1
    echo "$pid"
}

# ha_kill PIDFILE: SIGTERM, then SIGKILL after 5 s; waits (bounded) until it is gone.
ha_kill() {
    local pid i
    pid=$(ha_alive "$1") || {
        rm -f "$1"
        return 0
    }
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        ha_alive "$1" >/dev/null || break
        sleep 0.1
    done
    if pid=$(ha_alive "$1"); then
        ha_say "process $pid ignored SIGTERM for 5 s: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            ha_alive "$1" >/dev/null || break
            sleep 0.1
        done
    fi
    rm -f "$1"
}

# ha_spawn NAME HOST CMD...: CMD in HOST's namespace, detached (own session), output in
# $HA_DIR/NAME.log (the previous run's log is appended to NAME.old.log), PID in
# $HA_DIR/pids/NAME, exit status in $HA_DIR/NAME.rc when it ends.
ha_spawn() {
    local name=$1 ns
    ns=$(ha_ns "$2")
    shift 2
    mkdir -p "$HA_DIR/pids"
    if [[ -s $HA_DIR/$name.log ]]; then
        cat "$HA_DIR/$name.log" >>"$HA_DIR/$name.old.log"
    fi
    rm -f "$HA_DIR/$name.rc" "$HA_DIR/pids/$name" "$HA_DIR/$name.log"
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
    ' ha-"$name" "$name" "$HA_DIR" "$ns" "$@" >/dev/null 2>&1 </dev/null &
    local i
    for ((i = 0; i < 50; i++)); do
        [[ -s $HA_DIR/pids/$name ]] && return 0
        sleep 0.1
    done
    ha_die "could not start $name"
}

# ---------------------------------------------------------------------------------------------
# Prerequisites

ha_prereqs() {
    if [[ $(id -u) -ne 0 ]]; then
        echo "not running as root (the lab creates network namespaces)"
        return 77
    fi
    command -v ip >/dev/null || {
        echo "iproute2 (ip) is not installed"
        return 77
    }
    local probe=haprobe$$
    if ! ip netns add "$probe" 2>/dev/null; then
        echo "cannot create a network namespace (ip netns add failed)"
        return 77
    fi
    if ! ip -n "$probe" link add probe0 type veth peer name probe1 2>/dev/null ||
        ! ip -n "$probe" link add probebr type bridge 2>/dev/null; then
        ip netns del "$probe" 2>/dev/null || true
        echo "cannot create a veth pair or a bridge"
        return 77
    fi
    ip netns del "$probe"
    return 0
}

# ---------------------------------------------------------------------------------------------
# Topology

ha_save_settings() {
    local k
    for k in "${HA_SETTINGS[@]}"; do
        [[ $k == RAMPART ]] && continue
        echo "$k=${!k}"
    done >"$HA_DIR/settings"
    echo "RAMPART=$(ha_rampart)" >>"$HA_DIR/settings"
}

ha_topo() {
    local tool
    for tool in ip ethtool jq python3 ping; do
        command -v $tool >/dev/null || ha_die "$tool is not installed (bash scripts/setup.sh installs it)"
    done
    if [[ $HA_PEER_B == ucarp ]]; then
        command -v ucarp >/dev/null || ha_die "ucarp is not installed (bash scripts/setup.sh installs it)"
        ((HA_ADVBASE >= 1)) || ha_die "ucarp needs HA_ADVBASE >= 1"
    fi
    local ns
    for ns in "$NS_SW" "$NS_CLIENT" "$NS_SERVER" "$NS_FWA" "$NS_FWB"; do
        if ha_ns_exists "$ns"; then
            ha_say "a lab named $HA_PREFIX is already up: taking it down first"
            ha_down
            break
        fi
    done
    mkdir -p "$HA_DIR/pids"
    chmod 700 "$HA_DIR"
    ha_save_settings
    for ns in "$NS_SW" "$NS_CLIENT" "$NS_SERVER" "$NS_FWA" "$NS_FWB"; do
        ip netns add "$ns"
        ip -n "$ns" link set lo up
        # No IPv6 anywhere (the VIPs are IPv4): no router solicitations, MLD reports or DAD
        # in the captures, and the firewalls' kernels never answer in rampart's place.
        ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    done
    # The switch: two bridges without STP (ports forward at once) or IGMP snooping (no
    # querier here: CARP's 224.0.0.18 must simply be flooded, as on a dumb switch).
    local br
    for br in br-lan br-wan br-sync; do
        ip -n "$NS_SW" link add name $br type bridge stp_state 0 mcast_snooping 0
        ip -n "$NS_SW" link set $br up
    done
    # One queue on each side of each veth: everything lands on RX queue 0, where the AF_XDP
    # socket is bound (see lab.sh).
    ha_link() { # SW-PORT BRIDGE HOST-NS HOST-IFACE
        ip -n "$NS_SW" link add name "$1" numtxqueues 1 numrxqueues 1 type veth \
            peer name "$4" numtxqueues 1 numrxqueues 1 netns "$3"
        ip -n "$NS_SW" link set "$1" master "$2"
        ip -n "$NS_SW" link set "$1" up
    }
    ha_link c-lan br-lan "$NS_CLIENT" eth0
    ha_link s-wan br-wan "$NS_SERVER" eth0
    ha_link lan-a br-lan "$NS_FWA" lan
    ha_link wan-a br-wan "$NS_FWA" wan
    ha_link lan-b br-lan "$NS_FWB" lan
    ha_link wan-b br-wan "$NS_FWB" wan
    ha_link sync-a br-sync "$NS_FWA" sync
    ha_link sync-b br-sync "$NS_FWB" sync

    # The hosts: software checksums (see lab.sh: a veth never completes a partial checksum,
    # and rampart forwards what it gets), static addresses, default routes via the VIPs.
    local host addr gw
    for host in client server; do
        if [[ $host == client ]]; then addr=$CLIENT4 gw=$VIP_LAN; else addr=$SERVER4 gw=$VIP_WAN; fi
        ha_in $host ethtool -K eth0 tx off >/dev/null
        ha_in $host ip link set eth0 up
        ha_in $host ip addr add "$addr/24" dev eth0
        ha_in $host ip route add default via "$gw"
    done
    local node
    for node in fw-a fw-b; do
        ha_in $node sysctl -qw net.ipv4.ip_forward=0
        ha_in $node ethtool -K lan gro off >/dev/null 2>&1 || true
        ha_in $node ethtool -K wan gro off >/dev/null 2>&1 || true
        ha_in $node ethtool -K sync gro off >/dev/null 2>&1 || true
        ha_in $node ip link set lan up
        ha_in $node ip link set wan up
        ha_in $node ip link set sync up
    done
    if [[ $HA_PEER_B == ucarp ]]; then
        # ucarp is a host on the LAN with its own address; its scripts add and remove the VIP.
        ha_in fw-b ethtool -K lan tx off >/dev/null
        ha_in fw-b ip addr add "$B_LAN/24" dev lan
        cat >"$HA_DIR/vip-up.sh" <<'EOF'
#!/bin/sh
# ucarp upscript: $1 = interface, $2 = virtual address
exec ip addr add "$2/24" dev "$1"
EOF
        cat >"$HA_DIR/vip-down.sh" <<'EOF'
#!/bin/sh
# ucarp downscript: $1 = interface, $2 = virtual address (absent after a restart: fine)
ip addr del "$2/24" dev "$1" 2>/dev/null
exit 0
EOF
        chmod 755 "$HA_DIR/vip-up.sh" "$HA_DIR/vip-down.sh"
    fi
    ha_say "topology up: $NS_CLIENT ($CLIENT4) -- br-lan [$NS_SW] br-wan -- $NS_SERVER ($SERVER4); nodes $NS_FWA, $NS_FWB ($HA_PEER_B)"
}

# ---------------------------------------------------------------------------------------------
# The nodes

ha_devices() {
    case $HA_DRIVER in
    af_xdp)
        echo "net_af_xdp0,iface=lan,start_queue=0,queue_count=1"
        echo "net_af_xdp1,iface=wan,start_queue=0,queue_count=1"
        echo "net_af_xdp2,iface=sync,start_queue=0,queue_count=1"
        ;;
    af_packet)
        echo "net_af_packet0,iface=lan,qpairs=1"
        echo "net_af_packet1,iface=wan,qpairs=1"
        echo "net_af_packet2,iface=sync,qpairs=1"
        ;;
    *) ha_die "HA_DRIVER must be af_xdp or af_packet" ;;
    esac
}

# ha_config NODE: $HA_DIR/NODE.toml, like conf/examples/ha/fw-{a,b}.toml.
ha_config() {
    local node=$1 lan wan sync skew id devs pfsync=""
    mapfile -t devs < <(ha_devices)
    if [[ $node == fw-a ]]; then
        lan=$A_LAN wan=$A_WAN sync=$A_SYNC skew=$HA_SKEW_A id=0x0000000a
    else
        lan=$B_LAN wan=$B_WAN sync=$B_SYNC skew=$HA_SKEW_B id=0x0000000b
    fi
    if ((HA_PFSYNC)); then
        pfsync='
[pfsync]
interface = "sync"           # the dedicated sync link (pfsync has no authentication)'
        if ((HA_SPLIT_STATES)); then
            pfsync+='
split_states = true          # pf'"'"'s two states per forwarded connection'
        fi
    fi
    cat >"$HA_DIR/$node.toml" <<EOF
# Generated by tests/lab/ha.sh for the HA lab "$HA_PREFIX": node $node.
[appliance]
name = "$node"
host_id = $id

[dpdk]
control_lcore = 0
worker_lcores = [1]
poll = "adaptive"            # both nodes share the two vCPUs with the lab's hosts
eal_args = ["--no-pci", "--in-memory", "--no-telemetry"]
mbufs = 8191

[[interface]]
name = "lan"
device = "${devs[0]}"
addresses = ["$lan/24"]

[[interface]]
name = "wan"
device = "${devs[1]}"
addresses = ["$wan/24"]

[[interface]]
name = "sync"
device = "${devs[2]}"
addresses = ["$sync/24"]
$pfsync

[[carp]]
vhid = 1
interface = "lan"
addresses = ["$VIP_LAN"]     # the client's default gateway
advbase = $HA_ADVBASE
advskew = $skew
passphrase = "$HA_PASS"
preempt = true

[[carp]]
vhid = 2
interface = "wan"
addresses = ["$VIP_WAN"]     # the server's route back to the client's network
advbase = $HA_ADVBASE
advskew = $skew
passphrase = "$HA_PASS"
preempt = true

[control]
socket = "$HA_DIR/$node.sock"

[policy]
default = "block"

[[rule]]                     # CARP must pass, or the pair splits its brain
action = "pass"
quick = true
proto = "carp"
keep_state = false
label = "ha-control"

[[rule]]                     # pfsync, only on the sync link, and no state for it
action = "pass"
quick = true
on = "sync"
proto = "pfsync"
keep_state = false
label = "ha-sync"

[[rule]]
action = "pass"
direction = "in"
on = "lan"
from = "192.0.2.0/24"
label = "lan-out"

[[rule]]
action = "pass"
direction = "out"
label = "out"

[[rule]]
action = "pass"
direction = "in"
proto = "icmp"
to = "self"
label = "ping-me"
EOF
}

ha_sock() { echo "$HA_DIR/$1.sock"; }

ha_ctl() {
    local node=$1
    shift
    "$(ha_rampart)" ctl -s "$(ha_sock "$node")" "$@"
}

ha_start_rampart() {
    local node=$1 ns i
    ns=$(ha_ns "$node")
    [[ -f $HA_DIR/$node.toml ]] || ha_config "$node"
    # A rampart killed with SIGKILL leaves DPDK's XDP program attached to its veths (nothing
    # detaches it): take it off, or the next af_xdp start may fail to attach its own.
    ip -n "$ns" link set lan xdp off 2>/dev/null || true
    ip -n "$ns" link set wan xdp off 2>/dev/null || true
    ip -n "$ns" link set sync xdp off 2>/dev/null || true
    rm -f "$(ha_sock "$node")"
    ha_spawn "$node" "$node" "$(ha_rampart)" run -c "$HA_DIR/$node.toml"
    local deadline=$((SECONDS + HA_TIMEOUT))
    while ((SECONDS < deadline)); do
        if [[ -e $HA_DIR/$node.rc ]]; then
            tail -n 15 "$HA_DIR/$node.log" >&2
            ha_die "rampart on $node exited with status $(cat "$HA_DIR/$node.rc")"
        fi
        if ha_ctl "$node" info --json >/dev/null 2>&1; then
            ha_say "$node: rampart $(ha_alive "$HA_DIR/pids/$node") on net_$HA_DRIVER, socket $(ha_sock "$node"), log $HA_DIR/$node.log"
            return 0
        fi
        sleep 0.1
    done
    tail -n 15 "$HA_DIR/$node.log" >&2
    ha_die "rampart on $node did not open its socket within ${HA_TIMEOUT}s"
}

ha_start_ucarp() {
    ha_spawn fw-b fw-b ucarp -i lan -s "$B_LAN" -v 1 -p "$HA_UCARP_PASS" -a "$VIP_LAN" \
        -b "$HA_ADVBASE" -k "$HA_SKEW_B" -P -z \
        -u "$HA_DIR/vip-up.sh" -d "$HA_DIR/vip-down.sh"
    local i
    for ((i = 0; i < 50; i++)); do
        grep -q "Switching to state" "$HA_DIR/fw-b.log" 2>/dev/null && break
        [[ ! -e $HA_DIR/fw-b.rc ]] || {
            cat "$HA_DIR/fw-b.log" >&2
            ha_die "ucarp exited with status $(cat "$HA_DIR/fw-b.rc")"
        }
        sleep 0.1
    done
    ha_say "fw-b: ucarp $(ha_alive "$HA_DIR/pids/fw-b") (vhid 1, advbase $HA_ADVBASE, advskew $HA_SKEW_B), log $HA_DIR/fw-b.log"
}

ha_start() {
    local node=$1
    ha_ns_exists "$(ha_ns "$node")" || ha_die "the lab is not up"
    if ha_alive "$HA_DIR/pids/$node" >/dev/null; then
        ha_say "$node is already running"
        return 0
    fi
    if [[ $(ha_node_kind "$node") == ucarp ]]; then ha_start_ucarp; else ha_start_rampart "$node"; fi
}

# ha_stop NODE [INT|TERM|KILL]: signal the node and wait (bounded) until it has exited.
ha_stop() {
    local node=$1 sig=${2:-INT} pid i
    if ! pid=$(ha_alive "$HA_DIR/pids/$node"); then
        rm -f "$HA_DIR/pids/$node"
        return 0
    fi
    kill -"$sig" "$pid"
    for ((i = 0; i < HA_TIMEOUT * 10; i++)); do
        [[ -e $HA_DIR/$node.rc ]] && break
        sleep 0.1
    done
    if [[ ! -e $HA_DIR/$node.rc ]]; then
        ha_say "$node did not stop within ${HA_TIMEOUT}s of SIG$sig: killing it"
        ha_kill "$HA_DIR/pids/$node"
        return 1
    fi
    rm -f "$HA_DIR/pids/$node"
    ha_say "$node stopped (SIG$sig): exit status $(cat "$HA_DIR/$node.rc")"
}

# ha_state NODE VHID: the group's state, INIT if the node does not run.
ha_state() {
    local node=$1 vhid=$2
    if [[ $(ha_node_kind "$node") == ucarp ]]; then
        if ! ha_alive "$HA_DIR/pids/fw-b" >/dev/null; then
            echo INIT
            return 0
        fi
        [[ $vhid == 1 ]] || {
            echo INIT
            return 0
        }
        local s
        s=$(sed -n 's/.*Switching to state: \([A-Z]*\).*/\1/p' "$HA_DIR/fw-b.log" | tail -1)
        echo "${s:-INIT}"
        return 0
    fi
    if ! ha_alive "$HA_DIR/pids/$node" >/dev/null; then
        echo INIT
        return 0
    fi
    ha_ctl "$node" carp --json 2>/dev/null |
        jq -r --argjson v "$vhid" '[.groups[] | select(.vhid == $v) | .state][0] // "INIT"' 2>/dev/null ||
        echo INIT
}

ha_wait() {
    local node=$1 vhid=$2 want=$3 secs=${4:-10}
    local deadline=$(($(date +%s%N) / 1000000 + secs * 1000))
    while (($(date +%s%N) / 1000000 < deadline)); do
        [[ $(ha_state "$node" "$vhid") == "$want" ]] && return 0
        sleep 0.05
    done
    ha_say "$node vhid $vhid is $(ha_state "$node" "$vhid"), not $want, after ${secs}s"
    return 1
}

ha_vhids_of() {
    if [[ $(ha_node_kind "$1") == ucarp ]]; then echo 1; else echo "${VHIDS[@]}"; fi
}

ha_converge() {
    local secs=${1:-15} v
    for v in $(ha_vhids_of fw-a); do ha_wait fw-a "$v" MASTER "$secs" || return 1; done
    for v in $(ha_vhids_of fw-b); do ha_wait fw-b "$v" BACKUP "$secs" || return 1; done
    ha_say "converged: fw-a MASTER, fw-b BACKUP ($HA_PEER_B) of vhid $(ha_vhids_of fw-b | tr ' ' ,)"
}

# The client reaches the server through the pair (the first packet may be dropped while the
# MASTER resolves the server's MAC).
ha_check_path() {
    local i
    for ((i = 0; i < 5; i++)); do
        if ha_in client ping -n -c 1 -W 1 "$SERVER4" >/dev/null 2>&1; then
            ha_say "the client reaches the server ($SERVER4) through the VIPs"
            return 0
        fi
    done
    ha_die "the client does not reach the server through the VIPs"
}

# ---------------------------------------------------------------------------------------------
# Captures

ha_capture() {
    local br=$1 secs=$2 file=$3
    local proto=112
    case $br in
    br-lan | br-wan) ;;
    br-sync) proto=240 ;;
    *) ha_die "capture on br-lan, br-wan or br-sync" ;;
    esac
    command -v dumpcap >/dev/null || ha_die "dumpcap is not installed (package tshark)"
    : >"$file"
    # -P: classic pcap (what pfsync_decode.py reads).
    ha_in sw timeout $((secs + 10)) dumpcap -q -P -i "$br" -f "ip proto $proto" -a duration:"$secs" -w "$file" 2>"$HA_DIR/dumpcap.err" ||
        ha_die "dumpcap failed: $(cat "$HA_DIR/dumpcap.err")"
}

ha_decode() {
    tshark -r "$1" -d ip.proto==112,carp -Y carp -T fields -E separator=, \
        -e carp.version -e carp.type -e carp.vhid -e carp.advskew -e carp.authlen \
        -e carp.demotion -e carp.adver_int -e carp.counter -e carp.hmac \
        -e carp.checksum.status -e ip.ttl -e eth.src -e ip.src -e ip.dsfield -e ip.flags.df -e frame.time_epoch \
        2>/dev/null
}

# ---------------------------------------------------------------------------------------------
# Failover measurement

# med NUMBERS...: their median.
med() { printf '%s\n' "$@" | ha_median; }

# Median of the numbers on stdin.
ha_median() { sort -g | awk '{a[NR] = $1} END {if (NR == 0) print "nan"; else if (NR % 2) print a[(NR + 1) / 2]; else printf "%.1f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }

# The takeover on the wire: the first CARP advertisement a node sends after a signal, captured
# on its switch port and timestamped by the kernel (a BACKUP sends none, a new MASTER one at
# once). ha_wire_start NODE: start the capture (bounded to 60 s) and wait until it runs, which
# the current MASTER's advertisements, flooded to that port, show.
ha_wire_start() {
    local port=lan-${1#fw-} i size=0 header=0
    rm -f "$HA_DIR/wire.pcap"
    ha_spawn wire sw dumpcap -q -i "$port" -f "ip proto 112" -a duration:60 -w "$HA_DIR/wire.pcap"
    # dumpcap writes the file's header first, then (~250 ms later) packets, in blocks.
    for ((i = 0; i < 300; i++)); do
        size=$(stat -c %s "$HA_DIR/wire.pcap" 2>/dev/null || echo 0)
        if ((header == 0)); then
            header=$size
        elif ((size > header)); then
            return 0
        fi
        sleep 0.01
    done
    ha_die "dumpcap on $port captured nothing in 3 s: $(cat "$HA_DIR/wire.log" 2>/dev/null)"
}

# ha_wire_first_after T0 SRC: stops the capture; prints the time of the first advert from SRC
# after T0.
ha_wire_first_after() {
    local pid i
    if pid=$(ha_alive "$HA_DIR/pids/wire"); then
        kill -INT "$pid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            [[ -e $HA_DIR/wire.rc ]] && break
            sleep 0.1
        done
        ha_kill "$HA_DIR/pids/wire"
    fi
    tshark -r "$HA_DIR/wire.pcap" -T fields -e frame.time_epoch -e ip.src 2>/dev/null |
        awk -v t0="$1" -v src="$2" '$1 > t0 && $2 == src { print $1; exit }'
}

# The client's probe of the VIP: one echo request every 10 ms, "reply SEQ SENT RECEIVED" for
# each answer in $HA_DIR/probe.txt. ha_probe_start waits (bounded) until 30 came back.
HA_PROBE=$HA_DIR/probe.txt
ha_probe_start() {
    local i
    rm -f "$HA_PROBE"
    ha_spawn probe client python3 "$HA_SRC/carp.py" probe --dst "$VIP_LAN" --interval 0.01 \
        --duration 60 --out "$HA_PROBE"
    for ((i = 0; i < 100; i++)); do
        (($(ha_count "^reply" "$HA_PROBE") >= 30)) && return 0
        sleep 0.05
    done
    ha_kill "$HA_DIR/pids/probe"
    ha_die "the VIP does not answer the client's probes"
}

ha_probe_stop() { ha_kill "$HA_DIR/pids/probe"; }

# ha_probe_stats [FROM [TO]]: for the probes sent in [FROM, TO) (wall clock; default all):
# "ANSWERED LOST DUPLICATES LONGEST-GAP-MS", where a probe is lost if it was never answered
# though a later one was, a duplicate was answered twice (by both nodes), and the longest gap
# is between two consecutive answers, the later one to a probe of the window.
ha_probe_stats() {
    awk -v from="${1:-0}" -v to="${2:-1e18}" '
        $1 == "reply" {
            if ($3 >= from && $3 < to) {
                if (n && $4 - last > gap) gap = $4 - last
                if ($2 in ans) dups++; else uniq++
                ans[$2] = 1
                if ($2 > maxans) maxans = $2
                if (minans == "" || $2 < minans) minans = $2
            }
            last = $4; n++
        }
        END { printf "%d %d %d %.1f\n", uniq, (uniq ? maxans - minans + 1 - uniq : 0), dups, gap * 1000 }' "$HA_PROBE"
}

# ms T0 T: (T - T0) in ms, or nan if T is empty.
ha_ms() {
    if [[ -n ${2:-} ]]; then awk -v a="$2" -v t0="$1" 'BEGIN {printf "%.1f", (a - t0) * 1000}'; else echo nan; fi
}

# ha_interval SKEW: one advertisement interval, in s.
ha_interval() { awk -v b="$HA_ADVBASE" -v s="$1" 'BEGIN {i = b + s / 256; if (i == 0) i = 1 / 256; print i}'; }

# ha_failover kill|term: fw-a (MASTER of vhid 1) gets SIGKILL or SIGTERM while the client probes
# the VIP every 10 ms. Prints what it measured and one `ha-result key=value...` line. fw-a is
# left stopped (`ha.sh failback` brings it back).
ha_failover() {
    local mode=$1 victim=fw-a other=fw-b sig
    case $mode in kill) sig=KILL ;; term) sig=TERM ;; *) ha_die "failover kill|term" ;; esac
    [[ $(ha_state $victim 1) == MASTER ]] || ha_die "$victim is not MASTER of vhid 1"
    [[ $(ha_state $other 1) == BACKUP ]] || ha_die "$other is not BACKUP of vhid 1"
    local pid
    pid=$(ha_alive "$HA_DIR/pids/$victim") || ha_die "$victim does not run"
    ha_probe_start
    ha_wire_start $other
    local t0
    kill -"$sig" "$pid"
    t0=$(ha_now)
    # Wait (bounded) for an answer to a probe sent after the signal.
    local deadline=$((SECONDS + 15)) answered=""
    while ((SECONDS < deadline)); do
        answered=$(awk -v t0="$t0" '$1 == "reply" && $3 > t0 { print $4; exit }' "$HA_PROBE")
        [[ -n $answered ]] && break
        sleep 0.05
    done
    sleep 0.3
    ha_probe_stop
    ha_stop $victim "$sig" >/dev/null 2>&1 || true
    local victim_rc state_other took
    victim_rc=$(cat "$HA_DIR/$victim.rc" 2>/dev/null || echo "?")
    [[ -n $answered ]] || ha_die "no answer from the VIP within 15 s of SIG$sig to $victim"
    state_other=$(ha_state $other 1)
    took=$(ha_wire_first_after "$t0" "$B_LAN")
    local replies lost dups gap answer_ms takeover_ms
    read -r replies lost dups gap < <(ha_probe_stats)
    answer_ms=$(ha_ms "$t0" "$answered")
    takeover_ms=$(ha_ms "$t0" "$took")
    echo "failover ($mode, advbase $HA_ADVBASE, advskew fw-a/fw-b $HA_SKEW_A/$HA_SKEW_B, fw-b = $HA_PEER_B):"
    echo "  SIG$sig to fw-a -> fw-b's first advert:   $takeover_ms ms (its takeover, on the wire)"
    if [[ $mode == kill ]]; then
        echo "  SIG$sig to fw-a -> first answer from fw-b: $answer_ms ms (to a probe sent after the kill)"
    else
        # fw-a may still answer for the ~1 ms before its control loop sees the signal.
        echo "  SIG$sig to fw-a -> first answer:         $answer_ms ms (to a probe sent after the signal)"
    fi
    echo "  probes: $replies answered, $lost lost, $dups answered twice, longest gap between answers $gap ms; fw-a exit status $victim_rc; fw-b now $state_other"
    echo "ha-result mode=$mode advbase=$HA_ADVBASE skew_a=$HA_SKEW_A skew_b=$HA_SKEW_B peer=$HA_PEER_B takeover_ms=$takeover_ms answer_ms=$answer_ms lost=$lost dups=$dups gap_ms=$gap victim_rc=$victim_rc other=$state_other"
}

# ha_failback: fw-a is stopped and fw-b MASTER; fw-a starts while the client probes the VIP
# every 10 ms, and preempts. Prints the outage the client saw and an `ha-result` line.
ha_failback() {
    ha_alive "$HA_DIR/pids/fw-a" >/dev/null && ha_die "fw-a runs: stop it first"
    [[ $(ha_state fw-b 1) == MASTER ]] || ha_die "fw-b is not MASTER of vhid 1"
    ha_probe_start
    ha_wire_start fw-a
    local t0 took state_b
    t0=$(ha_now)
    ha_start fw-a 2>/dev/null
    ha_wait fw-a 1 MASTER 20 || {
        ha_probe_stop
        ha_die "fw-a did not become MASTER again"
    }
    # Long enough for two of fw-a's advertisements (a black hole ends with one at the latest).
    sleep "$(awk -v i="$(ha_interval "$HA_SKEW_A")" 'BEGIN {print 2 * i + 0.5}')"
    ha_probe_stop
    took=$(ha_wire_first_after "$t0" "$A_LAN")
    [[ -n $took ]] || ha_die "no advertisement from fw-a on the wire"
    state_b=$(ha_state fw-b 1)
    local replies lost dups gap start_ms
    read -r replies lost dups gap < <(ha_probe_stats)
    start_ms=$(ha_ms "$t0" "$took")
    echo "failback (advbase $HA_ADVBASE, advskew fw-a/fw-b $HA_SKEW_A/$HA_SKEW_B, fw-b = $HA_PEER_B):"
    echo "  fw-a started -> its first advert (MASTER by preempt): $start_ms ms; fw-b now $state_b"
    echo "  probes: $replies answered, $lost lost, $dups answered twice, longest gap between answers $gap ms"
    echo "ha-result mode=failback advbase=$HA_ADVBASE skew_a=$HA_SKEW_A skew_b=$HA_SKEW_B peer=$HA_PEER_B start_ms=$start_ms lost=$lost dups=$dups gap_ms=$gap other=$state_b"
}

# ha_switchover: the maintenance move. `rampart ctl carp demote 1` on fw-a (MASTER) while the
# client probes the VIP: fw-b takes over (the master is demoted); then `carp promote` on fw-a,
# which preempts back. Prints both outages and an `ha-result` line.
ha_switchover() {
    [[ $(ha_node_kind fw-b) == rampart ]] || ha_die "switchover needs rampart on fw-b"
    [[ $(ha_state fw-a 1) == MASTER && $(ha_state fw-b 1) == BACKUP ]] ||
        ha_die "fw-a must be MASTER and fw-b BACKUP"
    ha_probe_start
    ha_wire_start fw-b
    local t0 t1 took1 took2
    t0=$(ha_now)
    ha_ctl fw-a carp demote 1 >/dev/null
    ha_wait fw-b 1 MASTER 10 || {
        ha_probe_stop
        ha_die "fw-b did not take over from the demoted fw-a"
    }
    ha_wait fw-a 1 BACKUP 10 || true
    sleep "$(awk -v i="$(ha_interval "$HA_SKEW_B")" 'BEGIN {print 2 * i + 0.3}')"
    took1=$(ha_wire_first_after "$t0" "$B_LAN")
    ha_wire_start fw-a
    t1=$(ha_now)
    ha_ctl fw-a carp promote >/dev/null
    ha_wait fw-a 1 MASTER 10 || {
        ha_probe_stop
        ha_die "fw-a did not preempt back after carp promote"
    }
    sleep "$(awk -v i="$(ha_interval "$HA_SKEW_A")" 'BEGIN {print 2 * i + 0.3}')"
    ha_probe_stop
    took2=$(ha_wire_first_after "$t1" "$A_LAN")
    local r1 l1 d1 g1 r2 l2 d2 g2
    read -r r1 l1 d1 g1 < <(ha_probe_stats "$t0" "$t1")
    read -r r2 l2 d2 g2 < <(ha_probe_stats "$t1")
    local m1 m2
    m1=$(ha_ms "$t0" "$took1")
    m2=$(ha_ms "$t1" "$took2")
    echo "switchover (advbase $HA_ADVBASE, advskew fw-a/fw-b $HA_SKEW_A/$HA_SKEW_B):"
    echo "  carp demote 1 on fw-a -> fw-b's first advert: $m1 ms; probes: $r1 answered, $l1 lost, $d1 answered twice, longest gap $g1 ms"
    echo "  carp promote on fw-a -> fw-a's first advert: $m2 ms; probes: $r2 answered, $l2 lost, $d2 answered twice, longest gap $g2 ms"
    echo "ha-result mode=switchover advbase=$HA_ADVBASE skew_a=$HA_SKEW_A skew_b=$HA_SKEW_B demote_ms=$m1 demote_lost=$l1 demote_gap_ms=$g1 promote_ms=$m2 promote_lost=$l2 promote_gap_ms=$g2 fw_a=$(ha_state fw-a 1) fw_b=$(ha_state fw-b 1)"
}

# ---------------------------------------------------------------------------------------------
# pfsync: connections that survive a failover

# ha_sync cut|restore: br-sync stops or resumes forwarding. pfsync frames are lost while cut,
# and no link goes down (a link-state event would demote CARP on both nodes).
ha_sync() {
    case $1 in
    cut) ha_in sw ip link set br-sync down ;;
    restore) ha_in sw ip link set br-sync up ;;
    *) ha_die "sync cut|restore" ;;
    esac
    ha_say "sync link: $1"
}

ha_pfsync_json() { ha_ctl "$1" pfsync --json; }

# ha_states NODE: states in NODE's table (0 if it does not run).
ha_states() {
    ha_alive "$HA_DIR/pids/$1" >/dev/null || {
        echo 0
        return 0
    }
    ha_ctl "$1" info --json 2>/dev/null | jq -r '.state_table.current // 0' 2>/dev/null || echo 0
}

# ha_listening HOST PORT: waits (bounded, 5 s) until a TCP listener on PORT runs in HOST.
ha_listening() {
    local i
    for ((i = 0; i < 100; i++)); do
        ha_in "$1" ss -Hltn "sport = :$2" 2>/dev/null | grep -q . && return 0
        sleep 0.05
    done
    ha_die "nothing listens on $1 port $2"
}

# ha_conns NAME PORT N SECS INTERVAL TIMEOUT: tests/lab/conns.py's client in the client
# namespace (named NAME), N connections to the server's PORT probed every INTERVAL s for SECS;
# returns once all are open (bounded: 30 s).
ha_conns() {
    local name=$1 port=$2 n=$3 secs=$4 interval=$5 timeout=$6 i
    rm -f "$HA_DIR/$name.ready"
    ha_spawn "$name" client python3 "$HA_SRC/conns.py" client --dst "$SERVER4" --port "$port" \
        --count "$n" --seconds "$secs" --interval "$interval" --timeout "$timeout" \
        --ready "$HA_DIR/$name.ready" --json
    for ((i = 0; i < 600; i++)); do
        [[ -s $HA_DIR/$name.ready ]] && return 0
        [[ -e $HA_DIR/$name.rc ]] && ha_die "the $name client exited: $(cat "$HA_DIR/$name.log")"
        sleep 0.05
    done
    ha_die "the client did not open $n connections in 30 s"
}

# ha_hold N SECS: the client opens N TCP connections to the server through the pair and keeps
# them open and idle for SECS, in the background (name `hold`); returns once all are open.
ha_hold() {
    local n=${1:?hold N SECS} secs=${2:?hold N SECS}
    ha_spawn holdsrv server python3 "$HA_SRC/conns.py" server --port 7001 --seconds $((secs + 30))
    ha_listening server 7001
    ha_conns hold 7001 "$n" "$secs" 3600 1
    ha_say "the client holds $(cat "$HA_DIR/hold.ready") connections to $SERVER4:7001 for ${secs}s"
}

# ha_survive [N] [SECS]: N TCP connections (probed every 200 ms) and an iperf3 stream from the
# client through fw-a, then SIGKILL to fw-a. Prints what survived and an `ha-result` line.
ha_survive() {
    local n=${1:-300} secs=${2:-12} i
    command -v iperf3 >/dev/null || ha_die "iperf3 is not installed (bash scripts/setup.sh installs it)"
    [[ $(ha_state fw-a 1) == MASTER ]] || ha_die "fw-a is not MASTER of vhid 1"
    [[ $(ha_state fw-b 1) == BACKUP ]] || ha_die "fw-b is not BACKUP of vhid 1"
    local pid
    pid=$(ha_alive "$HA_DIR/pids/fw-a") || ha_die "fw-a does not run"
    rm -f "$HA_DIR/iperf.json"
    ha_spawn echosrv server python3 "$HA_SRC/conns.py" server --port 7000 --seconds $((secs + 60))
    ha_spawn iperfsrv server iperf3 -s -1 -p 5201 -i 0.1 --json
    ha_listening server 7000
    ha_listening server 5201
    # The connections first (all open before the clock starts), then the stream.
    ha_conns conns 7000 "$n" "$secs" 0.2 10
    # A moderate rate: both nodes, the hosts and this stream share two vCPUs.
    ha_spawn iperf client iperf3 -c "$SERVER4" -p 5201 -t $((secs - 2)) -b 50M -i 0.1 --json \
        --get-server-output --logfile "$HA_DIR/iperf.json"
    # Let the states reach fw-b (an insert is sent within 1 s), then kill the MASTER.
    sleep 3
    local states_a states_b t0 took
    states_a=$(ha_states fw-a)
    states_b=$(ha_states fw-b)
    kill -KILL "$pid"
    t0=$(ha_now)
    ha_wait fw-b 1 MASTER 15 >/dev/null || true
    took=$(ha_now)
    ha_stop fw-a KILL >/dev/null 2>&1 || true
    # Both clients end on their own; a stream whose path died may hang: wait, bounded.
    for ((i = 0; i < (secs + 15) * 10; i++)); do
        [[ -e $HA_DIR/conns.rc && -e $HA_DIR/iperf.rc ]] && break
        sleep 0.1
    done
    ha_kill "$HA_DIR/pids/conns"
    ha_kill "$HA_DIR/pids/iperf"
    ha_kill "$HA_DIR/pids/echosrv"
    ha_kill "$HA_DIR/pids/iperfsrv"
    local c
    c=$(tail -n 1 "$HA_DIR/conns.log")
    jq -e . >/dev/null 2>&1 <<<"$c" || ha_die "the connection client printed no result: $(cat "$HA_DIR/conns.log")"
    # The stream: its longest run of 100 ms intervals in which the server received nothing
    # (the client's own intervals count bytes written into its socket buffer, which go on
    # during an outage), and whether it ended without an error (a reset or a timeout).
    local stall iperf_ok
    stall=$(jq -r '[(.server_output_json.intervals // .intervals)[]?.sum | {b: .bytes, s: .seconds}] |
        reduce .[] as $i ({cur: 0, max: 0}; if $i.b == 0 then .cur += $i.s | .max = ([.max, .cur] | max) else .cur = 0 end) |
        .max * 1000 | floor' "$HA_DIR/iperf.json" 2>/dev/null || echo nan)
    if jq -e '.error == null and (.end.sum_received.bytes // 0) > 0' "$HA_DIR/iperf.json" >/dev/null 2>&1; then
        iperf_ok=1
    else
        iperf_ok=0
    fi
    local opened alive reset stalled longest sync
    opened=$(jq -r .opened <<<"$c")
    alive=$(jq -r .alive <<<"$c")
    reset=$(jq -r .reset <<<"$c")
    stalled=$(jq -r '.stalled + .errors' <<<"$c")
    longest=$(jq -r .longest_wait_ms <<<"$c")
    if ((HA_PFSYNC == 0)); then
        sync=off
    elif [[ $(ha_in sw cat /sys/class/net/br-sync/operstate 2>/dev/null) == down ]]; then
        sync=cut
    else
        sync=on
    fi
    echo "survive (pfsync $sync, advbase $HA_ADVBASE, advskew fw-a/fw-b $HA_SKEW_A/$HA_SKEW_B):"
    echo "  states before the kill: fw-a $states_a, fw-b $states_b"
    echo "  SIGKILL to fw-a -> fw-b MASTER: $(ha_ms "$t0" "$took") ms (ctl carp, polled)"
    echo "  $opened connections: $alive alive at the end, $reset reset, $stalled stalled; longest wait for an echo $longest ms"
    echo "  iperf3: $([[ $iperf_ok == 1 ]] && echo "completed" || echo "FAILED: $(jq -r '.error // "no result"' "$HA_DIR/iperf.json" 2>/dev/null)"), longest stall $stall ms"
    echo "ha-result mode=survive sync=$sync advbase=$HA_ADVBASE opened=$opened alive=$alive reset=$reset stalled=$stalled longest_wait_ms=$longest iperf_ok=$iperf_ok iperf_stall_ms=$stall states_a=$states_a states_b=$states_b takeover_ms=$(ha_ms "$t0" "$took")"
}

# ha_field KEY LINE: the value of KEY=value in an ha-result line.
ha_field() {
    [[ " $2 " =~ \ $1=([^ ]*)\  ]] && echo "${BASH_REMATCH[1]}"
}

# ha_measure kill|term N: N failovers, each followed by a failback (fw-a restarts and preempts),
# and the medians.
ha_measure() {
    local mode=$1 n=${2:-3} r out line
    local takeovers=() answers=() gaps=() backs=()
    for ((r = 1; r <= n; r++)); do
        ha_converge 20 >/dev/null 2>&1 || ha_die "round $r: the pair did not converge"
        sleep 1
        out=$(ha_failover "$mode")
        echo "round $r: ${out#*$'\n'}" | sed '$d'
        line=${out##*$'\n'}
        takeovers+=("$(ha_field takeover_ms "$line")")
        answers+=("$(ha_field answer_ms "$line")")
        gaps+=("$(ha_field gap_ms "$line")")
        out=$(ha_failback)
        echo "round $r: ${out#*$'\n'}" | sed '$d'
        backs+=("$(ha_field gap_ms "${out##*$'\n'}")")
    done
    echo "medians of $n ($mode, advbase $HA_ADVBASE, advskew $HA_SKEW_A/$HA_SKEW_B, fw-b = $HA_PEER_B):" \
        "takeover $(med "${takeovers[@]}") ms, first answer $(med "${answers[@]}") ms," \
        "longest gap $(med "${gaps[@]}") ms; failback longest gap $(med "${backs[@]}") ms"
    echo "  takeover: ${takeovers[*]}"
    echo "  first answer: ${answers[*]}"
    echo "  longest gap: ${gaps[*]}"
    echo "  failback longest gap: ${backs[*]}"
}

# ---------------------------------------------------------------------------------------------
# Up, down, status

ha_up() {
    ha_topo
    if [[ $HA_PEER_B == ucarp ]]; then
        ha_config fw-a
        ha_start fw-a
        for v in "${VHIDS[@]}"; do ha_wait fw-a "$v" MASTER 15 || ha_die "fw-a did not become MASTER"; done
        ha_start fw-b
    else
        ha_config fw-a
        ha_config fw-b
        ha_start fw-a
        ha_start fw-b
    fi
    ha_converge 20 || ha_die "the pair did not converge"
    ha_check_path
}

ha_down() {
    local f ns
    if [[ -d $HA_DIR/pids ]]; then
        for f in "$HA_DIR"/pids/probe "$HA_DIR"/pids/*; do
            [[ -e $f ]] || continue
            case ${f##*/} in
            fw-a | fw-b) ha_stop "${f##*/}" INT >/dev/null 2>&1 || true ;;
            esac
            [[ -e $f ]] && ha_kill "$f"
        done
    fi
    for ns in "$NS_CLIENT" "$NS_SERVER" "$NS_FWA" "$NS_FWB" "$NS_SW"; do
        ha_ns_exists "$ns" || continue
        local left
        left=$(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ')
        if [[ -n $left ]]; then
            ha_say "warning: processes the lab did not start are still in $ns: $left"
        fi
        ip netns del "$ns"
    done
    rm -rf "$HA_DIR"
}

ha_dump_logs() {
    local f
    for f in "$HA_DIR"/*.log; do
        [[ -s $f ]] || continue
        echo "---- $f (last 25 lines)" >&2
        tail -n 25 "$f" >&2
    done
}

ha_traps() {
    # shellcheck disable=SC2154 # rc is assigned inside the trap
    trap 'rc=$?; if ((rc)); then ha_dump_logs; fi; ha_down; exit $rc' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

ha_status() {
    local ns up=0 node
    for ns in "$NS_SW" "$NS_CLIENT" "$NS_SERVER" "$NS_FWA" "$NS_FWB"; do
        if ha_ns_exists "$ns"; then
            up=1
            echo "== namespace $ns"
            ip -n "$ns" -br addr show | grep -v '^lo ' || true
        fi
    done
    if ((!up)); then
        echo "HA lab $HA_PREFIX is down"
        return 0
    fi
    echo "== settings: advbase $HA_ADVBASE, advskew fw-a $HA_SKEW_A fw-b $HA_SKEW_B, fw-b = $HA_PEER_B"
    for node in fw-a fw-b; do
        if ! ha_alive "$HA_DIR/pids/$node" >/dev/null; then
            echo "== $node: not running"
        elif [[ $(ha_node_kind $node) == ucarp ]]; then
            echo "== $node: ucarp, vhid 1 $(ha_state $node 1)"
        else
            echo "== $node: rampart $(ha_alive "$HA_DIR/pids/$node")"
            ha_ctl $node carp || true
        fi
    done
}

ha_main() {
    local cmd=${1:-}
    shift || true
    case $cmd in
    prereqs) ha_prereqs ;;
    up)
        local why
        why=$(ha_prereqs) || ha_die "the lab cannot run here: $why"
        ha_traps
        ha_up
        trap - EXIT INT TERM
        ha_say "up. Try: $0 status | $0 failover kill | $0 down"
        ;;
    down) ha_down ;;
    status) ha_status ;;
    start) ha_start "${1:?start fw-a|fw-b}" ;;
    stop) ha_stop "${1:?stop fw-a|fw-b [INT|TERM|KILL]}" "${2:-INT}" ;;
    state) ha_state "${1:?state NODE VHID}" "${2:?state NODE VHID}" ;;
    wait) ha_wait "${1:?}" "${2:?}" "${3:?}" "${4:-10}" ;;
    converge) ha_converge "${1:-15}" ;;
    ctl)
        local node=${1:?ctl fw-a|fw-b ARGS}
        shift
        ha_ctl "$node" "$@"
        ;;
    exec)
        [[ $# -ge 2 ]] || ha_die "usage: $0 exec client|server|sw|fw-a|fw-b CMD..."
        ha_in "$@"
        ;;
    capture) ha_capture "${1:?capture br-lan|br-wan SECONDS FILE}" "${2:?}" "${3:?}" ;;
    decode) ha_decode "${1:?decode FILE}" ;;
    forge) ha_in client python3 "$HA_SRC/carp.py" forge --iface eth0 --src "$CLIENT4" "$@" ;;
    failover) ha_failover "${1:?failover kill|term}" ;;
    failback) ha_failback ;;
    switchover) ha_switchover ;;
    measure) ha_measure "${1:?measure kill|term N}" "${2:-3}" ;;
    sync) ha_sync "${1:?sync cut|restore}" ;;
    survive) ha_survive "${1:-300}" "${2:-12}" ;;
    hold) ha_hold "${1:?hold N SECS}" "${2:?hold N SECS}" ;;
    pfsync) ha_pfsync_json "${1:?pfsync fw-a|fw-b}" ;;
    pfsync-decode) python3 "$HA_SRC/pfsync_decode.py" "${1:?pfsync-decode FILE}" --json ;;
    *)
        sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
        [[ -z $cmd || $cmd == help || $cmd == -h || $cmd == --help ]] || exit 2
        ;;
    esac
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    ha_main "$@"
fi
