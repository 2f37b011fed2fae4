#!/usr/bin/env bash
# make demo-evidence: the vTPM evidence path of an Azure confidential VM, end to end on this machine.
#  1. start a real swtpm (TPM 2.0) in a temporary directory;
#  2. `skr-emulator provision-tpm` makes it look like an Azure CVM vTPM: AK at 0x81000003, AK
#     certificate at NV 0x01C101D0, an HCL report at NV 0x01400001 whose SNP report is signed by
#     a TEST AMD-style chain (ARK-Genoa -> SEV-Genoa -> SEV-VCEK) and binds the runtime data;
#  3. `skrctl evidence collect` reads it back through tss-esapi like skrd does on Azure;
#  4. `skrctl evidence verify` checks chain, signature, chip id, TCB and binding;
#  5. one flipped byte in the runtime data shows the same check refusing it.
# Nothing leaves loopback. Everything is removed at exit (SKRD_DEMO_KEEP=1 keeps it).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${CARGO_TARGET_DIR:-target}/debug
for b in skrctl skr-emulator; do
    [ -x "$bin/$b" ] || { echo "demo: $bin/$b missing: run 'make demo'" >&2; exit 2; }
done
command -v swtpm >/dev/null || { echo "demo: swtpm missing: run 'make demo' (it installs it)" >&2; exit 2; }

work=$(mktemp -d -t skrd-demo.XXXXXX)
swtpm_pid=""
cleanup() {
    if [ -n "$swtpm_pid" ]; then kill "$swtpm_pid" 2>/dev/null || true; wait "$swtpm_pid" 2>/dev/null || true; fi
    if [ "${SKRD_DEMO_KEEP:-0}" = 1 ]; then echo "demo: state kept in $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# swtpm needs two consecutive ports (server P, control P+1).
for _ in 1 2 3 4 5; do
    port=$(free_port)
    mkdir -p "$work/tpm"
    swtpm socket --tpm2 --tpmstate dir="$work/tpm" \
        --server type=tcp,port="$port",bindaddr=127.0.0.1 \
        --ctrl type=tcp,port=$((port + 1)),bindaddr=127.0.0.1 \
        --flags not-need-init,startup-clear --log file="$work/swtpm.log" &
    swtpm_pid=$!
    for _ in $(seq 1 100); do
        (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break
        kill -0 "$swtpm_pid" 2>/dev/null || break
        sleep 0.05
    done
    kill -0 "$swtpm_pid" 2>/dev/null && break
    swtpm_pid=""
done
[ -n "$swtpm_pid" ] || { echo "demo: swtpm did not start (see $work/swtpm.log)" >&2; exit 1; }
tcti="swtpm:host=127.0.0.1,port=$port"

step "1. swtpm running on 127.0.0.1:$port; provisioning it like an Azure confidential VM vTPM"
"$bin/skr-emulator" provision-tpm --tcti "$tcti" --state-dir "$work/emulator" >"$work/provisioned.json"
python3 -m json.tool "$work/provisioned.json"
field() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$work/provisioned.json" "$1"; }
ark=$(field ark_pem)
vcek=$(field vcek_pem)
chain=$(field cert_chain_pem)   # ASK then ARK, as THIM serves them

cat >"$work/skrd.toml" <<TOML
# Demo configuration: the swtpm above and the emulator's TEST AMD root (never in production).
[evidence]
source = "vtpm"
tcti = "$tcti"

[trust]
amd_test_roots = ["$ark"]
TOML

step "2. skrctl evidence collect --source vtpm (reads the vTPM through tss-esapi)"
"$bin/skrctl" --config "$work/skrd.toml" evidence collect --source vtpm --out "$work/evidence"
ls -l "$work/evidence"

step "3. skrctl evidence verify hcl-report.bin --cert vcek.pem --cert cert-chain.pem"
"$bin/skrctl" --config "$work/skrd.toml" evidence verify "$work/evidence/hcl-report.bin" \
    --cert "$vcek" --cert "$chain"

step "4. the same report with one byte of its runtime data changed must be refused"
cp "$work/evidence/hcl-report.bin" "$work/tampered.bin"
# Offset 0x4D4 + 2 is inside the runtime-data JSON, which REPORT_DATA binds.
printf 'X' | dd of="$work/tampered.bin" bs=1 seek=$((0x4D4 + 2)) conv=notrunc status=none
set +e
"$bin/skrctl" --config "$work/skrd.toml" evidence verify "$work/tampered.bin" --cert "$vcek" --cert "$chain"
status=$?
set -e
if [ "$status" -ne 1 ]; then echo "demo: FAILED: a tampered report was not refused (status $status)" >&2; exit 1; fi

step "demo complete: genuine evidence verified, tampered evidence refused (exit 1)"
