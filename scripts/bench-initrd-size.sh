#!/usr/bin/env bash
# Initramfs size added by dracut/90skrd (issue 8: goal < 12 MiB). Builds the initramfs from
# the same private dracut tree as tests/e2e (virtio-only network drivers, zstd, no host-only
# selection) with the same modules, without and with `skrd` (no test payload), with the RELEASE
# binaries stripped (target/release, `cargo build --release --bins`) and a configured volume with
# options.initrd = true as in a real image, so skrd's network dependency comes in: the base is
# measured without and with systemd-networkd. Prints the sizes, the differences and the biggest
# files the module adds.
#   scripts/bench-initrd-size.sh    (root for dracut; needs lsinitrd)
set -euo pipefail
export LC_ALL=C   # sort and join must agree on the order
ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/tests/e2e/lib.sh"
BIN=${SKRD_BIN_DIR:-$ROOT/target/release}
for b in skrd skrctl; do [ -x "$BIN/$b" ] || die "$BIN/$b missing (cargo build --release --bins)"; done
e2e_tmpdir skrd-bench-initrd
kver=$(e2e_latest_kver)
mkdir -p "$T/bin"
for b in skrd skrctl; do strip -o "$T/bin/$b" "$BIN/$b"; done
cat > "$T/skrd.toml" <<EOT
[attestation]
provider = "https://sharedeus2.eus2.attest.azure.net"
[keys.disk]
url = "https://example.vault.azure.net/keys/disk"
[volumes.data]
uuid = "0b4b3e1c-6f1e-4c2a-9d55-2f1f9a7f0c11"
key = "disk"
EOT
"$T/bin/skrctl" config check --config "$T/skrd.toml" >/dev/null || die "bench configuration invalid"
e2e_dracut_tree "$T/dracut" "$ROOT/dracut/90skrd"
base="systemd systemd-initrd dracut-systemd crypt dm"
export SKRD_BINDIR=$T/bin SKRD_CONFIG=$T/skrd.toml
e2e_dracut "$T/dracut" "$kver" "$T/base.img" "$base"
e2e_dracut "$T/dracut" "$kver" "$T/deps.img" "$base systemd-networkd"
e2e_dracut "$T/dracut" "$kver" "$T/skrd.img" "$base systemd-networkd skrd"
size() { stat -c %s "$1"; }
mib() { python3 -c 'import sys; print(f"{int(sys.argv[1]) / 2**20:.2f}")' "$1"; }
b=$(size "$T/base.img"); d=$(size "$T/deps.img"); s=$(size "$T/skrd.img")
echo "initramfs (zstd, dracut $(dracut --version 2>/dev/null | awk '{print $2}'), kernel $kver):"
echo "  base ($base): $b bytes"
echo "  base + systemd-networkd: $d bytes"
echo "  base + systemd-networkd + skrd (+ its dependencies): $s bytes"
echo "  added by skrd with the network it needs: $(mib $((s - b))) MiB (goal < 12 MiB)"
echo "  added by skrd's own files (vs. base + systemd-networkd): $(mib $((s - d))) MiB"
# The files only the skrd image has (uncompressed sizes), biggest first.
lsinitrd "$T/deps.img" 2>/dev/null | awk '$1 ~ /^-/ {print $NF}' | sort > "$T/deps.list"
lsinitrd "$T/skrd.img" 2>/dev/null | awk '$1 ~ /^-/ {print $5, $NF}' | sort -k2 > "$T/skrd.list"
echo "  biggest files skrd adds (uncompressed bytes):"
join -1 2 -2 1 -v 1 "$T/skrd.list" "$T/deps.list" | sort -k2 -n -r | head -n 12 \
    | awk '{printf "    %10d  %s\n", $2, $1}'
echo "  skrd binary (release, stripped): $(size "$T/bin/skrd") bytes"
