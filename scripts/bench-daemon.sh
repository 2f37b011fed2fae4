#!/usr/bin/env bash
# Bench of skrd's D-Bus key service (make bench-daemon): the release build of skrd (the
# [profile.release] that ships) against a private dbus-daemon, pinned with the bench client,
# the bus and the emulator to 2 cores; ReleaseKey of a cached key, p50/p99 and req/s with 1, 2, 4 and
# 8 callers (closed loop), and at a fixed rate (open loop, BENCH_RATE=5000 req/s for BENCH_SECS=3,
# latency from each request's scheduled send time), each against the Peer.Ping baseline of the
# same run; idle RSS (stderr and journald logging); stripped size. Figures only.
set -euo pipefail
cd "$(dirname "$0")/.."
${CARGO:-cargo} build --locked --release --bin skrd
SKRD_BIN="$PWD/target/release/skrd" taskset -c 0,1 ${CARGO:-cargo} bench --locked --profile dev --bench daemon
