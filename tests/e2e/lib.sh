# Shared helpers of tests/e2e (sourced, not executed); from the recipe in shared/e2e.

die() { echo "e2e: ERROR: $*" >&2; exit 1; }
log() { echo "e2e: $*" >&2; }

# e2e_tmpdir PREFIX: makes the run's state directory $T and traps EXIT so that every pid in
# PIDS is stopped and $T is removed, unless the run failed or E2E_KEEP=1 (then it is kept).
e2e_tmpdir() {
    T=$(mktemp -d -t "$1.XXXXXX")
    PIDS=()
    trap e2e_cleanup EXIT
    trap 'exit 130' INT TERM
}
e2e_cleanup() {
    local rc=$? p
    for p in "${PIDS[@]}"; do e2e_stop_pid "$p"; done
    # Processes started by subshells record their pid in $T/*.pid.
    for p in "$T"/*.pid; do [ -f "$p" ] && e2e_stop_pid "$(cat "$p")"; done
    if [ "${E2E_KEEP:-0}" = 1 ] || [ $rc -ne 0 ]; then log "state kept in $T"; else rm -rf "$T"; fi
    exit $rc
}

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

# e2e_free_ports N: the first of N consecutive TCP ports on 127.0.0.1 that were all free a
# moment ago (swtpm takes port and port+1; the emulator five).
e2e_free_ports() {
    python3 - "$1" <<'PY'
import random, socket, sys
n = int(sys.argv[1])
for _ in range(200):
    base = random.randint(20000, 60000 - n)
    socks = []
    try:
        for i in range(n):
            s = socket.socket(); s.bind(("127.0.0.1", base + i)); socks.append(s)
    except OSError:
        continue
    finally:
        for s in socks: s.close()
    print(base); sys.exit(0)
sys.exit("no free port range")
PY
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

# This directory (tests/e2e), for the dracut modules and payloads next to it.
E2E_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# The QEMU boot's kernel command line: console on ttyS0, poweroff on failure. The test payload
# reports on ttyS1. No `ip=` / `rd.neednet`: the network in the initramfs is what dracut/90skrd
# itself sets up (rd.neednet=1 in /etc/cmdline.d, DHCP by its systemd-networkd .network file);
# the clevis comparison adds them (E2E_CMDLINE_EXTRA), as clevis-pin-tang needs.
E2E_CMDLINE="console=ttyS0,115200 panic=-1 loglevel=4 rd.shell=0 rd.emergency=poweroff systemd.show_status=auto ${E2E_CMDLINE_EXTRA-}"

# Restricted user networking (no route out, only the guestfwd addresses): the -netdev value.
# e2e_netdev FWD...: each FWD is GUESTADDR:GUESTPORT=HOSTPORT (host side 127.0.0.1:HOSTPORT).
e2e_netdev() {
    local net="user,id=n0,restrict=on,net=169.254.0.0/16,host=169.254.0.2,dhcpstart=169.254.0.15" f
    for f in "$@"; do
        net="$net,guestfwd=tcp:${f%=*}-cmd:socat STDIO TCP:127.0.0.1:${f##*=}"
    done
    echo "$net"
}

# e2e_luks_image IMG UUID KEYFILE: a 32 MiB LUKS2 image file whose keyslot 0 (PBKDF2, 1000
# iterations: fast under TCG) opens with KEYFILE.
e2e_luks_image() {
    truncate -s 32M "$1"
    cryptsetup luksFormat --batch-mode --type luks2 --uuid "$2" --pbkdf pbkdf2 \
        --pbkdf-force-iterations 1000 --key-file "$3" "$1"
}

# e2e_dracut_tree WORK MODULEDIR...: a private copy of the dracut base directory in WORK (the
# host's configuration is never read) with the given module directories added and the stock
# 90kernel-network-modules (every NIC driver, ~40 MB) replaced by the virtio-only copy.
# $E2E_DRACUT_BASE (default /usr/lib/dracut) and $E2E_DRACUT (default dracut) select another
# dracut, e.g. a dracut-ng installed under a prefix (docs/boot.md, "dracut-ng").
e2e_dracut_tree() {
    local work=$1 m knm
    shift
    rm -rf "$work"
    cp -a "${E2E_DRACUT_BASE:-/usr/lib/dracut}" "$work"
    for m in "$@"; do cp -aL "$m" "$work/modules.d/${m##*/}"; done
    # dracut 059 names it 90kernel-network-modules, dracut-ng 70kernel-network-modules.
    for knm in "$work"/modules.d/[0-9][0-9]kernel-network-modules; do
        rm -rf "$knm"
        cp -a "$E2E_LIB_DIR/dracut/90kernel-network-modules" "$knm"
    done
}

# e2e_dracut WORK KVER OUT "MODULES": an initramfs built from the tree WORK with exactly MODULES
# (and their dependencies), no host-only selection, zstd. The log is OUT.log.
e2e_dracut() {
    local work=$1 kver=$2 out=$3 modules=$4 tmp=$3.tmp
    mkdir -p "$tmp/conf"
    dracutbasedir="$work" "${E2E_DRACUT:-dracut}" --force --no-hostonly --no-hostonly-cmdline \
        --conf /dev/null --confdir "$tmp/conf" --kver "$kver" --modules "$modules" \
        --no-early-microcode --compress zstd --tmpdir "$tmp" "$out" >"$out.log" 2>&1 \
        || { tail -40 "$out.log" >&2; die "dracut failed ($out.log)"; }
    rm -rf "$tmp"
}

# e2e_initrd_with BASE OVERLAYDIR OUT: BASE with OVERLAYDIR appended as an uncompressed cpio.
# It must start on a 4-byte boundary or the kernel ignores it ("invalid magic").
e2e_initrd_with() {
    local base=$1 ov=$2 out=$3
    cp "$base" "$out"
    head -c $(( (4 - $(stat -c %s "$base") % 4) % 4 )) /dev/zero >> "$out"
    (cd "$ov" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --quiet --owner=0:0) >> "$out"
}

# e2e_qemu_boot INITRD CONSOLE REPORT TIMEOUT_S QEMU_ARGS...: boots the newest kernel with
# INITRD and $E2E_CMDLINE under TCG (console on CONSOLE, the payload's ttyS1 on REPORT) until
# REPORT has an "E2E-RESULT:" line, QEMU exits, or TIMEOUT_S passes; then stops QEMU. Sets
# E2E_RESULT (the result line or why there is none) and E2E_MS (wall time of the boot).
# QEMU's pid goes into the caller's PIDS array (its cleanup stops it on an early exit).
e2e_qemu_boot() {
    local initrd=$1 console=$2 report=$3 timeout_s=$4 q q0 end
    shift 4
    : > "$console"; : > "$report"
    q0=$(e2e_now_ms)
    qemu-system-x86_64 -accel tcg -machine q35 -cpu max -smp 2 -m 1024 \
        -nodefaults -no-user-config -display none -no-reboot \
        -serial "file:$console" -serial "file:$report" \
        -kernel "/boot/vmlinuz-$(e2e_latest_kver)" -initrd "$initrd" -append "$E2E_CMDLINE" \
        "$@" </dev/null >"$console.qemu" 2>&1 &
    q=$!; PIDS+=("$q")
    end=$(( q0 + timeout_s * 1000 ))
    E2E_RESULT=""
    while :; do
        if grep -aq 'E2E-RESULT:' "$report"; then
            E2E_RESULT=$(grep -a -m1 -o 'E2E-RESULT: [A-Z]*.*' "$report" | tr -d '\r'); break
        fi
        kill -0 "$q" 2>/dev/null || { E2E_RESULT="QEMU exited without a result"; break; }
        [ "$(e2e_now_ms)" -lt "$end" ] || { E2E_RESULT="TIMEOUT after ${timeout_s}s"; break; }
        sleep 0.2
    done
    E2E_MS=$(( $(e2e_now_ms) - q0 ))
    sleep 1
    e2e_stop_pid "$q"
}
