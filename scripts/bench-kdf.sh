#!/usr/bin/env bash
# KDF time and memory per volume (issue 8: goal <= 5 ms and <= 16 MiB): skrd's PBKDF2 keyslot vs
# an Argon2id recovery keyslot on one LUKS2 image file. Prints figures from one run.
# Usage: scripts/bench-kdf.sh   (needs cryptsetup; no root, no device-mapper)
set -euo pipefail
cd "$(dirname "$0")/.."
echo "libcryptsetup: $(cryptsetup --version)"
echo "independent figure: cryptsetup benchmark of PBKDF2-sha512 (iterations per second):"
cryptsetup benchmark --pbkdf pbkdf2 --hash sha512 2>/dev/null | grep -i pbkdf2 || true
exec cargo run --quiet --example bench_kdf
