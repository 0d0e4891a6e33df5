#!/usr/bin/env bash
# Installs what building and testing rampart needs on a fresh Debian 12 machine, if missing.
# Idempotent: it only calls apt-get when a package is absent. Sourced by the demo, the test
# runner and .ci/run.
set -euo pipefail

RAMPART_PACKAGES=(pkg-config gcc)

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
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    command -v cargo >/dev/null || { echo "setup: cargo (Rust) is required: https://rustup.rs" >&2; exit 1; }
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    rampart_setup
fi
