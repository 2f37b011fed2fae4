#!/usr/bin/env bash
# Boot unlock bench (issue 8), figures from one run (nothing asserted):
#  - 4 LUKS2 volumes unlocked at boot by skrd (tests/e2e/run.sh --scenarios unlock: QEMU TCG,
#    swtpm, skr-emulator behind restricted user networking) and the same 4 volumes by clevis +
#    tang (scripts/bench-clevis.sh: same kernel, QEMU, network and image layout, Debian's clevis
#    dracut modules, tangd on loopback). Both measured the same way, inside the guest: from the
#    earliest start of the systemd-cryptsetup@ units (InactiveExitTimestampMonotonic: before
#    ExecStartPre=, so skrd's header check is counted) to the
#    last of them active (ActiveEnterTimestampMonotonic); then where the time went (journal);
#  - initramfs size added by dracut/90skrd (scripts/bench-initrd-size.sh, release binaries);
#  - KDF time and memory per volume (scripts/bench-kdf.sh).
# Usage: scripts/bench-boot.sh   (root; `make bench-boot` installs the packages and builds)
# BENCH_BOOT_KEEP=DIR keeps the guest reports there (each with the guest's whole journal,
# short-monotonic, as E2E-JOURNAL-ALL lines) and the state files.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${BENCH_BOOT_KEEP-}" ]; then
    fig=$BENCH_BOOT_KEEP; mkdir -p "$fig"
else
    fig=$(mktemp -d -t skrd-bench-boot.XXXXXX)
    trap 'rm -rf "$fig"' EXIT
fi
echo "== boot unlock, 4 volumes (QEMU TCG, 2 vCPU; one boot each, one after the other)"
SKRD_E2E_FIGURES=$fig SKRD_E2E_VOLS="v1:disk v2:disk v3:other v4:other" \
    tests/e2e/run.sh --scenarios unlock >"$fig/skrd.log" 2>&1 || { tail -60 "$fig/skrd.log" >&2; exit 1; }
SKRD_E2E_FIGURES=$fig scripts/bench-clevis.sh >"$fig/clevis.log" 2>&1 || { tail -60 "$fig/clevis.log" >&2; exit 1; }
python3 - "$fig" <<'PY'
import json, os, re, sys
fig = sys.argv[1]

def report(name):
    times, journal = {}, []
    for line in open(os.path.join(fig, name), errors="replace"):
        line = line.rstrip("\r\n")
        if line.startswith("E2E-TIMES: "):
            unit, start, active = line.split()[1:4]
            times[unit] = (int(start) / 1e3, int(active) / 1e3)   # ms since boot
        m = re.match(r"E2E-JOURNAL: \[\s*([0-9.]+)\] \S+ ([^:]+): (.*)", line)
        if m:
            journal.append((float(m.group(1)) * 1e3, m.group(2), m.group(3)))
    return times, journal

def window(times):
    t0 = min(s for s, _ in times.values())
    t1 = max(a for _, a in times.values())
    return t0, t1

def at(journal, pattern, t0):
    return [(ms - t0, msg) for ms, _, msg in journal if re.search(pattern, msg)]

def active(times, t0):
    return [(a - t0, f"{u} active (/dev/mapper device open)") for u, (_, a) in times.items()]

s_times, s_j = report("report-unlock.log")
c_times, c_j = report("report-clevis.log")
assert len(s_times) == 4 and len(c_times) == 4, (s_times, c_times)
s0, s1 = window(s_times)
c0, c1 = window(c_times)
skrd_ms, clevis_ms = s1 - s0, c1 - c0
print(f"first systemd-cryptsetup start -> all 4 /dev/mapper devices open:")
print(f"  clevis + tang: {clevis_ms:8.0f} ms")
print(f"  skrd:          {skrd_ms:8.0f} ms")
print(f"  ratio skrd / clevis+tang: {skrd_ms / clevis_ms:.3f} (goal <= 0.1)")

def show(label, t0, rows):
    print(label)
    for ms, msg in rows:
        print(f"  {ms:+9.0f} ms  {msg[:150]}")

rows = at(s_j, r"DHCPv4 address", s0) + at(s_j, r"skrd: (network:|attested|key .* released|attestation attempt .* failed|volume .* key sent|boot unlock done)", s0)
show("skrd, where the time goes (relative to the first systemd-cryptsetup start):", s0, sorted(rows + active(s_times, s0)))
st = json.load(open(os.path.join(fig, "state-unlock.json")))
for v in sorted(st["volumes"], key=lambda v: v["name"]):
    t = v["timings_ms"]
    print(f"  volume {v['name']}: asked {t.get('asked')} ms, answered {t.get('answered')} ms after skrd's start ({v['stage']})")
rows = at(c_j, r"DHCPv4 address|Started clevis-luks-askpass.service|Unlocked|Passphrase incorrect", c0)
show("clevis + tang, where the time goes (relative to the first systemd-cryptsetup start):", c0, sorted(rows + active(c_times, c0)))
print(f"  ({len(at(c_j, 'Passphrase incorrect', c0))} failed tries: systemd-cryptsetup first tries the passphrase cached in the kernel keyring")
print("   for the previous volume, then asks again; clevis-luks-askpass answers one question at a time,")
print("   each a clevis-decrypt-tang shell pipeline: jose + curl to tang)")
PY
grep -hE '^(E2E|CLEVIS) PASS' "$fig/skrd.log" "$fig/clevis.log"
echo "(TCG emulation on a shared 2-core host: absolute times are much slower than on real hardware;"
echo " the ratio compares two boots measured the same way in the same run)"
echo
echo "== initramfs size"
scripts/bench-initrd-size.sh
echo
echo "== KDF"
scripts/bench-kdf.sh
