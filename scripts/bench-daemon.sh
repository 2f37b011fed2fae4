#!/usr/bin/env bash
# Bench of skrd's D-Bus key service (make bench-daemon): ReleaseKey of a cached key over a
# private dbus-daemon, p50/p99 and req/s (1 and 8 callers, 2 tokio workers in skrd), baseline
# Peer.Ping, idle RSS; then the stripped release binary's size. Figures only.
set -euo pipefail
cd "$(dirname "$0")/.."
taskset -c 0,1 ${CARGO:-cargo} bench --locked --profile dev --bench daemon
${CARGO:-cargo} build --locked --release --bin skrd
size=$(stat -c %s target/release/skrd)
echo "skrd release binary (strip = symbols): $size bytes ($((size / 1024)) KiB)"
