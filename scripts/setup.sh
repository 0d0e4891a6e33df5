#!/usr/bin/env bash
# Installs what building and testing rampart needs on a fresh Debian 12 machine, if missing.
# Idempotent: it only calls apt-get when a package is absent. Sourced by the demo, the test
# runner and .ci/run.
set -euo pipefail

# Building: a C compiler, DPDK 22.11's development files (found with pkg-config) and libclang
# for bindgen; dpdk for its tools (dpdk-hugepages.py, dpdk-devbind.py) and its drivers;
# dpdk-dev for dpdk-testpmd, the yardstick of bench/forwarding.sh (Debian 12 ships testpmd
# there, not in dpdk).
# The network-namespace lab (tests/lab/lab.sh) and its tests: iproute2 (ip, ss), ethtool (veth
# offloads), ping, iperf3, netcat, jq for `rampart ctl --json`, tshark to decode captures.
# The HA lab (tests/lab/ha.sh, tests/ha.rs): ucarp as a CARP peer, python3 for tests/lab/carp.py.
RAMPART_PACKAGES=(
    pkg-config gcc libdpdk-dev dpdk dpdk-dev libclang-dev
    iproute2 ethtool iputils-ping iperf3 netcat-openbsd jq tshark
    ucarp python3
)
# DPDK runs on 2 MiB hugepages: keep at least this many free (the lab's rampart takes ~20,
# the DPDK tests and benchmarks more).
RAMPART_HUGEPAGES=${RAMPART_HUGEPAGES:-256}

# Reserves hugepages at run time when fewer than RAMPART_HUGEPAGES are free. Never fatal: a
# machine that cannot (a container without /proc/sys write access) gets a warning, and the
# DPDK tests then say why they skip.
rampart_hugepages() {
    local free total want sudo=""
    free=$(awk '/^HugePages_Free:/ {print $2}' /proc/meminfo 2>/dev/null)
    total=$(awk '/^HugePages_Total:/ {print $2}' /proc/meminfo 2>/dev/null)
    [[ -n $free && -n $total ]] || return 0
    ((free < RAMPART_HUGEPAGES)) || return 0
    want=$((total - free + RAMPART_HUGEPAGES))
    [[ $(id -u) -eq 0 ]] || sudo="sudo"
    echo "setup: $free hugepages free; reserving $want in all (vm.nr_hugepages)" >&2
    if ! echo "$want" | $sudo tee /proc/sys/vm/nr_hugepages >/dev/null 2>&1; then
        echo "setup: warning: cannot write /proc/sys/vm/nr_hugepages; DPDK needs hugepages" >&2
        return 0
    fi
    free=$(awk '/^HugePages_Free:/ {print $2}' /proc/meminfo)
    ((free >= RAMPART_HUGEPAGES)) ||
        echo "setup: warning: only $free hugepages free after reserving (memory is fragmented?)" >&2
}

rampart_setup() {
    local missing=()
    for p in "${RAMPART_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if ((${#missing[@]})); then
        echo "setup: installing ${missing[*]}" >&2
        local sudo=""
        [[ $(id -u) -eq 0 ]] || sudo="sudo"
        $sudo apt-get update -qq
        # Through env: sudo's env_reset would drop a plain assignment.
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    command -v cargo >/dev/null || { echo "setup: cargo (Rust) is required: https://rustup.rs" >&2; exit 1; }
    rampart_hugepages
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    rampart_setup
fi
