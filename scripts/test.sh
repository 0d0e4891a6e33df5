#!/usr/bin/env bash
# Runs every rampart test: formatting, lints, unit and integration tests of the workspace.
# Works on a fresh machine: it installs what the tests need first.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
rampart_setup

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "== cargo test"
# The lab tests run on their own, below.
cargo test --workspace -- --skip netns_lab:: 2>&1 | tee /tmp/rampart-test.log
echo "== lab tests: rampart between Linux hosts in network namespaces (tests/lab.rs, tests/lab/lab.sh)"
# Root and hugepages (reserved by rampart_setup) needed; without root they skip with a WARNING.
cargo test --test lab 2>&1 | tee -a /tmp/rampart-test.log
echo "== benchmarks compile (run them with: cargo bench -p rampart-dataplane)"
cargo bench --workspace --no-run --quiet

# Tests skip only where a facility cannot exist on this machine (no root, no namespaces, no
# hugepages, no DPDK); each says so with a WARNING line. Repeat them here, where they are seen.
skipped=$(grep -c "WARNING: skipping" /tmp/rampart-test.log || true)
if [ "${skipped:-0}" -gt 0 ]; then
    echo "== WARNING: $skipped test(s) skipped for want of a facility on this machine:"
    grep "WARNING: skipping" /tmp/rampart-test.log | sort | uniq -c
else
    echo "== every test ran (none skipped)"
fi
