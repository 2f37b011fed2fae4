# Shared helpers of tests/e2e (sourced, not executed); from the recipe in shared/e2e.

die() { echo "e2e: ERROR: $*" >&2; exit 1; }
log() { echo "e2e: $*" >&2; }

# Newest installed kernel under /boot, as a version string (e.g. 6.1.0-56-amd64).
e2e_latest_kver() {
    local k
    k=$(ls -1 /boot/vmlinuz-* 2>/dev/null | sort -V | tail -n 1)
    [ -n "$k" ] || die "no /boot/vmlinuz-* found (apt-get install linux-image-amd64)"
    echo "${k#/boot/vmlinuz-}"
}

# A TCP port that was free a moment ago on 127.0.0.1.
e2e_free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# Milliseconds since the epoch.
e2e_now_ms() { date +%s%3N; }

# Stop a process we started: SIGTERM, wait up to 5 s, then SIGKILL.
e2e_stop_pid() {
    local pid=$1 i
    [ -n "$pid" ] || return 0
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
