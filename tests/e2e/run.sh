#!/bin/bash
# skrd end-to-end boot test (issue 8): the Debian kernel and a dracut initramfs built with OUR
# module (dracut/90skrd) boot in QEMU (TCG) with a swtpm provisioned like an Azure CVM vTPM by
# `skr-emulator provision-tpm`, several LUKS2 data disks enrolled on the host with
# `skrctl enroll`, and skr-emulator reachable only through QEMU's restricted user networking:
# IMDS at 169.254.169.254:80, MAA / Key Vault / Managed HSM through guestfwd addresses
# 169.254.0.20-22:443, forwarded inside the guest from the 127.0.0.1:PORT URLs the emulator
# prints (its token issuer and key ids name those URLs).
#
#   tests/e2e/run.sh [--scenarios unlock,outage,forged] [--keep] [--timeout S]
#
# Scenarios (one boot each, same initramfs):
#   unlock  data1+data2 (key "disk") and data3 (key "other") open; "locked" (key "refused",
#           whose release policy wants a TDX VM) is refused: passphrase prompt instead;
#           "tampered" (key "disk", enrolled, then its header's data segment switched to
#           cipher_null by the "host", keyslots intact) is never opened: skrd --prepare-header
#           refuses its header, systemd-cryptsetup@tampered fails without a prompt. (In every
#           scenario.) "manual" (key "disk", options.initrd = false, crypttab noauto): the check
#           runs `skrctl unlock manual` in the guest: attestation + release + dm-crypt
#           activation from the checked detached header by skrctl itself.
#   outage  the emulator is down when the VM boots (connections refused) and comes back, from
#           the same state, after skrd's first failed attempt: the volumes still open before
#           the deadline.
#   forged  the vTPM is provisioned from another emulator state (untrusted AMD chain / AK CA):
#           nothing opens, every volume falls back to the prompt.
# Binaries: $SKRD_BIN_DIR (default target/debug; stripped copies go into the image).
# Success: exit 0 and a last line "E2E PASS ...". A failure keeps the state dir.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
. "$HERE/lib.sh"

scenarios=unlock,outage,forged
keep=0
timeout_s=400
while [ $# -gt 0 ]; do
    case $1 in
        --scenarios) scenarios=$2; shift 2 ;;
        --keep) keep=1; shift ;;
        --timeout) timeout_s=$2; shift 2 ;;
        -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
        *) die "unknown argument: $1" ;;
    esac
done
BIN=${SKRD_BIN_DIR:-$ROOT/target/debug}
for b in qemu-system-x86_64 dracut cpio python3 socat swtpm tpm2_shutdown cryptsetup curl strip; do
    command -v "$b" >/dev/null || die "$b not found (make deps)"
done
for b in skrd skrctl skr-emulator; do [ -x "$BIN/$b" ] || die "$BIN/$b missing (cargo build --bins)"; done

t_start=$(e2e_now_ms)
E2E_KEEP=$keep
e2e_tmpdir skrd-e2e
kver=$(e2e_latest_kver)

# --- binaries: stripped copies, first in PATH for dracut ------------------------
mkdir -p "$T/bin"
for b in skrd skrctl; do strip -o "$T/bin/$b" "$BIN/$b"; done
export PATH="$T/bin:$PATH"

# --- swtpm provisioned like an Azure CVM ----------------------------------------
# provision DIR EMU_STATE: a swtpm state in DIR provisioned from EMU_STATE's chain/AK CA.
provision() {
    local dir=$1 emu_state=$2 port cport pid try up
    mkdir -p "$dir"
    # Another process can take a port between the check and swtpm's bind: try a few ranges.
    for try in 1 2 3 4 5; do
        port=$(e2e_free_ports 2); cport=$((port + 1))
        swtpm socket --tpm2 --tpmstate dir="$dir" \
            --server type=tcp,port="$port",bindaddr=127.0.0.1 \
            --ctrl type=tcp,port="$cport",bindaddr=127.0.0.1 \
            --flags not-need-init,startup-clear --log file="$dir.log" &
        pid=$!; PIDS+=("$pid")
        up=""
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            TPM2TOOLS_TCTI="swtpm:host=127.0.0.1,port=$port" tpm2_getcap properties-fixed >/dev/null 2>&1 && { up=1; break; }
            sleep 0.1
        done
        [ -n "$up" ] && break
        e2e_stop_pid "$pid"
        log "swtpm did not start on ports $port/$cport (attempt $try): $(tail -n 1 "$dir.log" 2>/dev/null)"
    done
    [ -n "$up" ] || die "swtpm did not start"
    "$BIN/skr-emulator" provision-tpm --tcti "swtpm:host=127.0.0.1,port=$port" \
        --state-dir "$emu_state" >"$dir.provision.json" || die "provision-tpm failed"
    TPM2TOOLS_TCTI="swtpm:host=127.0.0.1,port=$port" tpm2_shutdown >/dev/null 2>&1 || true
    swtpm_ioctl --tcp "127.0.0.1:$cport" -s >/dev/null 2>&1 || true
    e2e_stop_pid "$pid"
}
provision "$T/tpm" "$T/emu"
provision "$T/tpm-forged" "$T/emu-other"
log "swtpm provisioned (genuine and forged)"

# --- skr-emulator on loopback --------------------------------------------------------
P=$(e2e_free_ports 5) || die "no 5 free consecutive ports"
# start_emulator: serves on the same ports from the same state (keys, CA, test chain) each time;
# its pid is in $T/emu.pid (the cleanup stops it).
start_emulator() {
    : > "$T/emu.json"
    "$BIN/skr-emulator" serve --state-dir "$T/emu" --listen "127.0.0.1:$P" >"$T/emu.json" 2>>"$T/emu.log" &
    echo $! > "$T/emu.pid"
    for _ in $(seq 1 100); do [ -s "$T/emu.json" ] && return 0; sleep 0.1; done
    cat "$T/emu.log" >&2; die "skr-emulator did not start"
}
stop_emulator() { e2e_stop_pid "$(cat "$T/emu.pid")"; }
start_emulator
ep() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$T/emu.json" "$1"; }
IMDS=$(ep imds); MAA=$(ep attestation); HSM=$(ep managed_hsm); CA=$(ep ca_pem); ADMIN=$(ep admin)
log "emulator: imds $IMDS attestation $MAA managed HSM $HSM"

# Keys: oct-HSM on the Managed HSM, known material (= the IKM skrd derives from).
token=$(curl -sf -H 'Metadata: true' \
    "$IMDS/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fmanagedhsm.azure.net" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
# import NAME TEE_TYPE -> prints the key id; material in $T/keys/NAME
mkdir -p "$T/keys"
import_key() {
    local name=$1 tee=$2
    head -c 32 /dev/urandom > "$T/keys/$name"
    python3 - "$MAA" "$tee" "$T/keys/$name" >"$T/keys/$name.json" <<'PY'
import base64, json, sys
b = lambda x: base64.urlsafe_b64encode(x).rstrip(b"=").decode()
p = {"version": "1.0.0", "anyOf": [{"authority": sys.argv[1], "allOf": [
    {"claim": "x-ms-isolation-tee.x-ms-attestation-type", "equals": sys.argv[2]}]}]}
print(json.dumps({"key": {"kty": "oct-HSM", "k": b(open(sys.argv[3], "rb").read())}, "hsm": True,
    "attributes": {"exportable": True},
    "release_policy": {"contentType": "application/json; charset=utf-8",
                       "data": b(json.dumps(p).encode()), "immutable": False}}))
PY
    curl -sf --cacert "$CA" -X PUT -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
        --data @"$T/keys/$name.json" "$HSM/keys/$name?api-version=7.4" \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"]["kid"])'
}
kid_disk=$(import_key disk sevsnpvm)
kid_other=$(import_key other sevsnpvm)
kid_refused=$(import_key refused tdxvm)

# --- configuration (host = guest: same URLs, same CA path) --------------------------------
# VOLUME:KEY pairs; a volume whose key is "refused" must fall back to the prompt.
VOLS=${SKRD_E2E_VOLS:-"data1:disk data2:disk data3:other locked:refused tampered:disk manual:disk"}
cfg=$T/skrd.toml
cat > "$cfg" <<EOT
[evidence]
source = "vtpm"
tcti = "device:/dev/tpmrm0"

[identity]
imds_url = "http://169.254.169.254"

[attestation]
provider = "$MAA"

[network]
connect_timeout = "3s"
request_timeout = "20s"
retries = 4
backoff_initial = "200ms"
backoff_max = "1s"

[boot]
deadline = "150s"

[trust]
ca_files = ["$CA"]

[keys.disk]
url = "$kid_disk"
[keys.other]
url = "$kid_other"
[keys.refused]
url = "$kid_refused"
EOT

# --- LUKS2 disks: recovery passphrase (pbkdf2, fast), then skrctl enroll ----------------
mkdir -p "$T/overlay/etc/skrd-e2e"
: > "$T/overlay/etc/crypttab"
qemu_disks=()
i=0
for spec in $VOLS; do
    vol=${spec%%:*}; key=${spec#*:}
    uuid=$(cat /proc/sys/kernel/random/uuid)
    printf '\n[volumes.%s]\nuuid = "%s"\nkey = "%s"\n' "$vol" "$uuid" "$key" >> "$cfg"
    case $vol in manual*) printf 'options.initrd = false\n' >> "$cfg" ;; esac
    head -c 24 /dev/urandom | base64 | tr -d '\n' > "$T/$vol.recovery"
    e2e_luks_image "$T/$vol.img" "$uuid" "$T/$vol.recovery"
    qemu_disks+=(-drive "file=$T/$vol.img,if=none,id=d$i,format=raw,cache=unsafe"
                 -device "virtio-blk-pci,drive=d$i,serial=skrd-$vol")
    i=$((i + 1))
done
# Enrolled with skrctl; the crypttab line is the one it prints (key socket, header= of the
# checked detached header, x-initrd.attach).
for spec in $VOLS; do
    vol=${spec%%:*}; key=${spec#*:}
    skrctl enroll --json --config "$cfg" --volume "$vol" --device "$T/$vol.img" --backup-dir "$T/backup" \
        --key-fd 3 --recovery-fd 4 3<"$T/keys/$key" 4<"$T/$vol.recovery" >"$T/enroll-$vol.json" 2>"$T/enroll-$vol.log" \
        || { cat "$T/enroll-$vol.json" "$T/enroll-$vol.log" >&2; die "skrctl enroll $vol failed"; }
    line=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["crypttab"])' "$T/enroll-$vol.json")
    # Opened by hand (skrctl unlock) in the check, not by systemd.
    case $vol in manual*) line="$line,noauto" ;; esac
    echo "$line" >> "$T/overlay/etc/crypttab"
    # The malicious host: the data segment of this header becomes cipher_null (checksums
    # recomputed, keyslots intact, so skrd's passphrase would still open it).
    case $vol in tampered*)
        python3 "$ROOT/tests/fixtures/independent/luks2_tamper.py" "$T/$vol.img" null-cipher ;;
    esac
done
log "crypttab: $(tr '\n' ';' < "$T/overlay/etc/crypttab")"
log "$(echo $VOLS | wc -w) volumes formatted and enrolled"

# --- initramfs with OUR module (private copy of the dracut base dir) ------------------
e2e_dracut_tree "$T/dracut" "$ROOT/dracut/90skrd" "$HERE/dracut/99skrde2e"
b0=$(e2e_now_ms)
SKRD_BINDIR=$T/bin SKRD_CONFIG=$cfg e2e_dracut "$T/dracut" "$kver" "$T/initrd.img" \
    "systemd systemd-initrd dracut-systemd crypt dm systemd-networkd skrd skrde2e"
build_ms=$(( $(e2e_now_ms) - b0 ))
log "initramfs built in ${build_ms}ms, $(stat -c %s "$T/initrd.img") bytes"

# In-guest forwarders 127.0.0.1:PORT -> guestfwd address (the emulator's URLs name loopback).
port_of() { echo "${1##*:}"; }
cat > "$T/overlay/etc/skrd-e2e/forward.conf" <<EOT
$(port_of "$MAA") 169.254.0.20
$(port_of "$HSM") 169.254.0.22
EOT

# --- boots ---------------------------------------------------------------------------------
net=$(e2e_netdev "169.254.169.254:80=$(port_of "$IMDS")" "169.254.0.20:443=$(port_of "$MAA")" \
    "169.254.0.22:443=$(port_of "$HSM")")

boot() {   # boot NAME TPMSTATE EXPECT...
    local name=$1 tpm=$2; shift 2
    local ov=$T/ov-$name console=$T/console-$name.log report=$T/report-$name.log sw result ms
    rm -rf "$ov"; cp -a "$T/overlay" "$ov"
    printf '%s\n' "$@" > "$ov/etc/skrd-e2e/expect"
    # For the bench's figures: the guest's whole journal goes to the report as well.
    [ -z "${SKRD_E2E_FIGURES-}" ] || : > "$ov/etc/skrd-e2e/full-journal"
    e2e_initrd_with "$T/initrd.img" "$ov" "$T/initrd-$name.img"
    rm -f "$T/swtpm.ctrl"
    swtpm socket --tpm2 --tpmstate dir="$tpm" --ctrl type=unixio,path="$T/swtpm.ctrl" \
        --log file="$T/swtpm-$name.log" &
    sw=$!; PIDS+=("$sw")
    for _ in $(seq 1 50); do [ -S "$T/swtpm.ctrl" ] && break; sleep 0.1; done
    e2e_qemu_boot "$T/initrd-$name.img" "$console" "$report" "$timeout_s" \
        -chardev "socket,id=chrtpm,path=$T/swtpm.ctrl" -tpmdev emulator,id=tpm0,chardev=chrtpm \
        -device tpm-tis,tpmdev=tpm0 -netdev "$net" -device virtio-net-pci,netdev=n0 "${qemu_disks[@]}"
    result=$E2E_RESULT; ms=$E2E_MS
    grep -a -o 'E2E-STATE: .*' "$report" | tr -d '\r' | sed 's/^E2E-STATE: //' > "$T/state-$name.json" || true
    [ -z "${SKRD_E2E_FIGURES-}" ] || cp "$T/state-$name.json" "$report" "$SKRD_E2E_FIGURES/"
    e2e_stop_pid "$sw"
    # -o: a console line may start with systemd's passphrase prompt.
    tr -d '\r' < "$console" | grep -a -o -E 'skrd\[[0-9]+\]:.*' | sed "s/^/[$name] /" >&2 || true
    tr -d '\r' < "$report" | grep -a -E '^E2E' | sed "s/^/[$name] /" >&2 || true
    log "boot $name: ${ms}ms: $result"
    [ "$result" = "E2E-RESULT: PASS" ] || { tail -n 60 "$console" | tr -d '\r' >&2; die "scenario $name failed: $result (console: $console, report: $report)"; }
    BOOT_MS="$BOOT_MS $name=$ms"
}
# counter NAME: the emulator's per-endpoint call count.
counter() { curl -sf "$ADMIN/counters" | python3 -c 'import json,sys; print(json.load(sys.stdin).get(sys.argv[1], 0))' "$1"; }
admin_faults() { curl -sf -X POST -H 'Content-Type: application/json' --data "$1" "$ADMIN/faults" >/dev/null; }

# The expectations: "open" unless the key is refused (or the evidence forged): "prompt";
# a tampered header: "refused" (no activation, no prompt) in every scenario.
expect() {
    local spec
    for spec in $VOLS; do
        case ${spec%%:*} in tampered*) echo "${spec%%:*} refused"; continue ;; esac
        case ${spec%%:*} in manual*)
            if [ "$1" = forged ]; then echo "${spec%%:*} unlock-refused"; else echo "${spec%%:*} unlock"; fi
            continue ;;
        esac
        if [ "$1" = forged ] || [ "${spec#*:}" = refused ]; then echo "${spec%%:*} prompt"
        else echo "${spec%%:*} open"; fi
    done
}
BOOT_MS=""
has() { case ",$scenarios," in *",$1,"*) return 0 ;; esac; return 1; }
if has unlock; then
    admin_faults '{}'
    mapfile -t e < <(expect unlock); boot unlock "$T/tpm" "${e[@]}"
fi
if has outage; then
    # The cloud is unreachable when the VM boots (the emulator is stopped: connections to it
    # are refused) and comes back, from the same state, once skrd has failed an attempt.
    stop_emulator
    (
        for _ in $(seq 1 $(( timeout_s * 5 ))); do
            grep -aq 'attestation attempt [0-9]* failed' "$T/console-outage.log" 2>/dev/null && break
            sleep 0.2
        done
        start_emulator
        log "emulator back after skrd's first failed attempt"
    ) &
    restarter=$!
    mapfile -t e < <(expect outage); boot outage "$T/tpm" "${e[@]}"
    wait "$restarter" || die "outage: the emulator did not come back"
    # The outage really happened: skrd failed while it was down, then attested after it.
    grep -aq 'attestation attempt [0-9]* failed: .*\(connect\|reachable\|refused\|closed\)' "$T/console-outage.log" \
        || die "outage: no failed attestation attempt while the emulator was down"
    [ "$(counter attestation-azureguest)" -ge 1 ] || die "outage: no attestation after the emulator came back"
fi
if has forged; then
    r0=$(counter managed-hsm-release)
    mapfile -t e < <(expect forged); boot forged "$T/tpm-forged" "${e[@]}"
    # Refused at attestation: no release was even asked for.
    [ "$(counter managed-hsm-release)" = "$r0" ] || die "forged: a key release was requested"
fi
echo "E2E PASS scenarios=$scenarios dracut_ms=$build_ms initrd_bytes=$(stat -c %s "$T/initrd.img") boot_ms=${BOOT_MS# } total_ms=$(( $(e2e_now_ms) - t_start ))"
