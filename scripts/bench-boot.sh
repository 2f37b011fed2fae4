#!/usr/bin/env bash
# Boot unlock bench (issue 8), figures from one run:
#  - 4 volumes unlocked by skrd in the QEMU boot of tests/e2e/run.sh (TCG, swtpm, skr-emulator
#    behind restricted user networking): from the first key request of systemd-cryptsetup to the
#    last passphrase written, and skrd's own start-to-done, from the guest's state file;
#  - KDF time and memory per volume (scripts/bench-kdf.sh: skrd's PBKDF2 keyslot);
#  - initramfs size added by dracut/90skrd (same dracut modules with and without skrd).
# NOT YET: the same 4 volumes with clevis + tang (goal: skrd <= 0.1 x clevis/tang).
# Usage: scripts/bench-boot.sh   (root; make deps; cargo build --bins first)
set -euo pipefail
cd "$(dirname "$0")/.."
fig=$(mktemp -d -t skrd-bench-boot.XXXXXX)
trap 'rm -rf "$fig"' EXIT
SKRD_E2E_FIGURES=$fig SKRD_E2E_VOLS="v1:disk v2:disk v3:other v4:other" \
    tests/e2e/run.sh --scenarios unlock >"$fig/run.log" 2>&1 || { tail -60 "$fig/run.log" >&2; exit 1; }
python3 - "$fig" <<'PY'
import json, os, sys
fig = sys.argv[1]
st = json.load(open(os.path.join(fig, "state-unlock.json")))
vols = {v["name"]: v for v in st["volumes"]}
asked = min(v["timings_ms"]["asked"] for v in vols.values() if "asked" in v["timings_ms"])
done = max(v["timings_ms"].get("answered", 0) for v in vols.values())
print(f"skrd, 4 volumes ({', '.join(sorted(vols))}): first key request -> all 4 answered: {done - asked} ms")
for name, v in sorted(vols.items()):
    t = v["timings_ms"]
    print(f"  volume {name}: asked at {t.get('asked')} ms, answered at {t.get('answered')} ms ({v['stage']})")
base, full = map(int, open(os.path.join(fig, "sizes")).read().split())
print(f"initramfs: {base} bytes without skrd, {full} with skrd + network + tpm2-tss + test payload: +{(full - base) / 2**20:.1f} MiB")
PY
grep -E '^E2E PASS' "$fig/run.log"
echo "(TCG emulation on a shared host: absolute times are much slower than on real hardware)"
echo
scripts/bench-kdf.sh
echo
echo "clevis + tang comparison: not implemented yet"
