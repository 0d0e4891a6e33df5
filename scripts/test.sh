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
cargo test --workspace 2>&1 | tee /tmp/rampart-test.log
echo "== benchmarks compile (run them with: cargo bench -p rampart-dataplane)"
cargo bench --workspace --no-run --quiet
