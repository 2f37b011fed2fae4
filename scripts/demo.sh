#!/usr/bin/env bash
# make demo: an Azure confidential VM boot, end to end on this machine (tests/e2e/run.sh,
# scenario "unlock"): the Debian kernel and an initramfs built with dracut/90skrd boot in QEMU
# with a swtpm provisioned like an Azure CVM vTPM; skrd attests to skr-emulator (reachable only
# through QEMU's restricted user networking), releases the keys and answers systemd-cryptsetup:
# data1, data2, data3 open; "locked" (its key's release policy wants a TDX VM) falls back to the
# passphrase prompt. Prints the guest's `skrctl volumes`, `skrctl status` and /run/skrd/state.json.
# Nothing leaves loopback. SKRD_DEMO_KEEP=1 keeps the state directory.
set -euo pipefail
cd "$(dirname "$0")/.."
args=(--scenarios unlock)
[ "${SKRD_DEMO_KEEP:-0}" = 1 ] && args+=(--keep)
out=$(mktemp)
trap 'rm -f "$out"' EXIT
if ! tests/e2e/run.sh "${args[@]}" 2>"$out"; then
    cat "$out" >&2
    exit 1
fi
grep -E '^\[unlock\] skrd' "$out" | sed 's/^\[unlock\] //' || true
echo
echo "== guest: skrctl volumes (in the initramfs, after skrd)"
grep -E '^\[unlock\] E2E:   ' "$out" | sed 's/^\[unlock\] E2E:   //'
echo
echo "== guest: skrctl status (no daemon in the initramfs: it reads the state file)"
grep -E '^\[unlock\] E2E(-STATUS:|: skrctl status)' "$out" | sed -E 's/^\[unlock\] E2E(-STATUS|): ?//'
echo
echo "== guest: /run/skrd/state.json"
grep -a -o 'E2E-STATE: .*' "$out" | head -n 1 | sed 's/^E2E-STATE: //' | python3 -m json.tool || true
echo
grep -a -o -E 'E2E: (OK|FAIL) .*' "$out" | sed 's/^E2E: //'
