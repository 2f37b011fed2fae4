#!/usr/bin/env bash
# make demo: an Azure confidential VM boot, end to end on this machine (tests/e2e/run.sh,
# scenario "unlock"): the Debian kernel and an initramfs built with dracut/90skrd boot in QEMU
# with a swtpm provisioned like an Azure CVM vTPM; skrd attests to skr-emulator (reachable only
# through QEMU's restricted user networking), releases the keys and answers systemd-cryptsetup.
# data1, data2, data3 open at boot; "manual" is opened afterwards by `skrctl unlock`; two volumes
# are refused as designed: "locked" (its key's release policy wants a TDX VM) falls back to the
# passphrase prompt, "tampered" (its LUKS2 header was switched to cipher_null by the "host") is
# never opened. Prints what skrd said on the console, the checks, the state file, the guest's
# `skrctl volumes`, and ends with its `skrctl status` and a summary. Nothing leaves loopback.
# SKRD_DEMO_KEEP=1 keeps the state directory.
set -euo pipefail
cd "$(dirname "$0")/.."
args=(--scenarios unlock)
[ "${SKRD_DEMO_KEEP:-0}" = 1 ] && args+=(--keep)
out=$(mktemp)
trap 'rm -f "$out"' EXIT
echo "make demo: building the initramfs and booting the VM under QEMU (about a minute)..."
if ! tests/e2e/run.sh "${args[@]}" 2>"$out"; then
    cat "$out" >&2
    exit 1
fi
echo "== guest console: skrd in the initramfs"
grep -E '^\[unlock\] skrd' "$out" | sed 's/^\[unlock\] //' || true
echo
echo "== guest: the checks"
grep -a -o -E 'E2E: (OK|FAIL) .*' "$out" | sed 's/^E2E: //' | cut -c1-200
echo
echo "== guest: /run/skrd/state.json (what the running system is told; never a secret)"
grep -a -o 'E2E-STATE: .*' "$out" | head -n 1 | sed 's/^E2E-STATE: //' | python3 -m json.tool || true
echo
echo "== guest: skrctl volumes"
grep -E '^\[unlock\] E2E:   ' "$out" | sed 's/^\[unlock\] E2E:   //'
echo
echo "== guest: skrctl status (no daemon in the initramfs: it reads the state file)"
grep -E '^\[unlock\] E2E(-STATUS:|: skrctl status)' "$out" | sed -E 's/^\[unlock\] E2E(-STATUS|): ?//'
echo
opened=$(grep -a -o -E 'E2E: OK [a-z0-9]+ (open|opened by skrctl unlock)' "$out" | awk '{print $3}' | tr '\n' ' ')
prompt=$(grep -a -o -E 'E2E: OK [a-z0-9]+ not open, passphrase prompt' "$out" | awk '{print $3}' | tr '\n' ' ')
refused=$(grep -a -o -E 'E2E: OK [a-z0-9]+ not opened, header refused' "$out" | awk '{print $3}' | tr '\n' ' ')
echo "demo: unlocked: ${opened% }; at the passphrase prompt (release policy not met): ${prompt% }; never opened (tampered header): ${refused% }"
