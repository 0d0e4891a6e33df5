#!/usr/bin/env bash
# The main job, end to end: build rampart, validate the example appliances, and trace
# packets through the example policy the way an operator would before deploying it.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
rampart_setup

cargo build --release --quiet
rampart=target/release/rampart
ex=conf/examples

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

step $rampart check -c $ex/single-firewall.toml
step $rampart check -c $ex/ha/fw-a.toml
step $rampart check -c $ex/ha/fw-b.toml

# A LAN host opens a connection out: passed by "lan-out", state kept.
step $rampart trace -c $ex/single-firewall.toml --on lan --dir in tcp 192.0.2.10:51000 203.0.113.80:443
# An unsolicited SYN from outside: no rule passes it, the default blocks.
step $rampart trace -c $ex/single-firewall.toml --on wan --dir in tcp 203.0.113.80:443 192.0.2.10:51000
# A spoofed bogon source is dropped by the quick rule at once.
step $rampart trace -c $ex/single-firewall.toml --on wan --dir in udp 10.1.2.3:53 192.0.2.10:53
# The same as JSON, for scripts.
step $rampart trace -c $ex/single-firewall.toml --on lan --dir in tcp 192.0.2.50:40000 192.0.2.1:22 --json
# The HA pair's web rule, through a table with a negated entry.
step $rampart trace -c $ex/ha/fw-a.toml --on wan --dir in tcp 198.51.100.9:40000 203.0.113.254:443

# A broken configuration: every error, each at FILE:LINE:COL.
broken=$(mktemp -d)
trap 'rm -rf "$broken"' EXIT
cat > "$broken/broken.toml" <<'TOML'
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
printf '\n\033[1m$ %s\033[0m\n' "rampart check -c broken.toml"
if (cd "$broken" && "$OLDPWD/$rampart" check -c broken.toml); then
    echo "demo: the broken configuration was accepted" >&2
    exit 1
fi
echo
echo "demo: done"
