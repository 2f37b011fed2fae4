#!/usr/bin/env bash
# The clevis + tang side of the boot unlock bench (issue 8): the QEMU boot of tests/e2e (same
# kernel, TCG, restricted user networking, 4 LUKS2 image files formatted the same way), but the
# initramfs has Debian's clevis dracut modules (clevis, clevis-pin-tang) instead of skrd. tang
# runs on the host on loopback only (tangd behind socat), reached from the guest at
# http://169.254.0.30 through a guestfwd. Each image gets `clevis luks bind` to that tang (with
# the advertisement fetched on the host: -y, no network from the binding). In the guest,
# systemd-cryptsetup asks for each passphrase (crypttab key file "none") and clevis-luks-askpass
# answers it; tests/e2e's check waits for the 4 /dev/mapper devices and prints the units' times.
#
#   scripts/bench-clevis.sh [--keep]    (root; apt-get install clevis clevis-luks clevis-dracut
#                                        clevis-systemd tang, or `make bench-boot`)
# With $SKRD_E2E_FIGURES set, the guest report goes there as report-clevis.log.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# clevis-pin-tang needs the network asked for on the kernel command line (docs/boot.md).
E2E_CMDLINE_EXTRA="ip=dhcp rd.neednet=1"
. "$ROOT/tests/e2e/lib.sh"
E2E_KEEP=0
[ "${1-}" != --keep ] || E2E_KEEP=1
for b in qemu-system-x86_64 dracut cpio socat cryptsetup curl clevis jose /usr/libexec/tangd \
    /usr/libexec/tangd-keygen /usr/lib/dracut/modules.d/60clevis-pin-tang/module-setup.sh; do
    command -v "$b" >/dev/null || [ -e "$b" ] || die "$b not found (apt-get install clevis clevis-luks clevis-dracut clevis-systemd tang)"
done
e2e_tmpdir skrd-bench-clevis
kver=$(e2e_latest_kver)

# --- tang on loopback ---------------------------------------------------------------------
mkdir -p "$T/tang"
/usr/libexec/tangd-keygen "$T/tang"
TANG=$(e2e_free_port)
socat TCP-LISTEN:"$TANG",bind=127.0.0.1,fork,reuseaddr EXEC:"/usr/libexec/tangd $T/tang" 2>"$T/tang.log" &
PIDS+=("$!")
for _ in $(seq 1 50); do curl -sf "http://127.0.0.1:$TANG/adv" -o "$T/adv.jws" && break; sleep 0.1; done
[ -s "$T/adv.jws" ] || die "tangd did not answer on 127.0.0.1:$TANG"

# --- 4 LUKS2 images bound to tang -----------------------------------------------------------
mkdir -p "$T/overlay/etc/skrd-e2e"
: > "$T/overlay/etc/crypttab"; : > "$T/overlay/etc/skrd-e2e/expect"
[ -z "${SKRD_E2E_FIGURES-}" ] || : > "$T/overlay/etc/skrd-e2e/full-journal"
qemu_disks=()
i=0
for vol in v1 v2 v3 v4; do
    uuid=$(cat /proc/sys/kernel/random/uuid)
    head -c 24 /dev/urandom | base64 | tr -d '\n' > "$T/$vol.recovery"
    e2e_luks_image "$T/$vol.img" "$uuid" "$T/$vol.recovery"
    clevis luks bind -y -k "$T/$vol.recovery" -d "$T/$vol.img" tang \
        "{\"url\":\"http://169.254.0.30\",\"adv\":\"$T/adv.jws\"}" >"$T/bind-$vol.log" 2>&1 \
        || { cat "$T/bind-$vol.log" >&2; die "clevis luks bind $vol failed"; }
    echo "$vol UUID=$uuid none luks,x-initrd.attach" >> "$T/overlay/etc/crypttab"
    echo "$vol open" >> "$T/overlay/etc/skrd-e2e/expect"
    qemu_disks+=(-drive "file=$T/$vol.img,if=none,id=d$i,format=raw,cache=unsafe"
                 -device "virtio-blk-pci,drive=d$i,serial=clevis-$vol")
    i=$((i + 1))
done
log "4 volumes formatted and bound to tang at 127.0.0.1:$TANG"

# --- initramfs: clevis instead of skrd ------------------------------------------------------
e2e_dracut_tree "$T/dracut" "$ROOT/tests/e2e/dracut/99skrde2e" "$ROOT/tests/e2e/dracut/99clevise2e"
e2e_dracut "$T/dracut" "$kver" "$T/initrd.img" \
    "systemd systemd-initrd dracut-systemd crypt dm systemd-networkd clevis clevis-pin-tang clevise2e"
e2e_initrd_with "$T/initrd.img" "$T/overlay" "$T/initrd-clevis.img"
log "initramfs built: $(stat -c %s "$T/initrd.img") bytes"

e2e_qemu_boot "$T/initrd-clevis.img" "$T/console-clevis.log" "$T/report-clevis.log" 900 \
    -netdev "$(e2e_netdev "169.254.0.30:80=$TANG")" -device virtio-net-pci,netdev=n0 "${qemu_disks[@]}"
[ -z "${SKRD_E2E_FIGURES-}" ] || cp "$T/report-clevis.log" "$SKRD_E2E_FIGURES/"
tr -d '\r' < "$T/report-clevis.log" | grep -a -E '^E2E' | sed 's/^/[clevis] /' >&2 || true
log "boot clevis: ${E2E_MS}ms: $E2E_RESULT"
[ "$E2E_RESULT" = "E2E-RESULT: PASS" ] || { tail -n 60 "$T/console-clevis.log" | tr -d '\r' >&2; die "clevis boot failed: $E2E_RESULT"; }
echo "CLEVIS PASS boot_ms=$E2E_MS"
