#!/bin/bash
# dracut module "skrd" (dracut 059 and dracut-ng): the skrd boot unlock in the initramfs.
# Installs /usr/sbin/skrd, skrd-initrd.socket + skrd-initrd.service, the
# systemd-cryptsetup@.service drop-in that checks each skrd volume's LUKS2 header before it is
# opened (`skrd --prepare-header`, crypttab header=/run/skrd/headers/NAME), the configuration
# (/etc/skrd/skrd.toml and skrd.toml.d/), the CA files it names (trust.ca_files,
# trust.amd_test_roots), the system CA bundle, and the one TPM TCTI library tpm2-tss loads with
# dlopen() (device). Not dracut's tpm2-tss module: skrd needs none of its tpm2 tools, FAPI,
# curl, json-c or other TCTIs (about 4 MiB of the image); the ESYS/MU/SYS/TCTI-loader libraries
# come in through skrd's own ELF dependencies. skrd runs as root: no tss user or udev rule. The network (dracut's network module, rd.neednet=1, DHCP) is requested only when a
# configured volume is unlocked in the initramfs (options.initrd = true, the default): every key
# comes from Key Vault over the network.
#
# $SKRD_BINDIR, when set, is where skrd and skrctl are taken from (dracut resets PATH; for
# test builds and packaging), else they are looked up in dracut's PATH.
#
# The configuration read at build time is $SKRD_CONFIG (default /etc/skrd/skrd.toml), read
# through `skrctl config show` so drop-ins and defaults count exactly as skrd sees them.

_skrd_config() { echo "${SKRD_CONFIG:-/etc/skrd/skrd.toml}"; }

# The path of skrd's binary NAME (skrd, skrctl).
_skrd_bin() {
    if [[ -n ${SKRD_BINDIR-} ]]; then
        echo "$SKRD_BINDIR/$1"
    else
        find_binary "$1"
    fi
}

# The merged configuration as "key = value" lines (empty when there is none or it is invalid).
_skrd_show() {
    local cfg
    cfg=$(_skrd_config)
    [[ -r $cfg ]] || return 0
    "$(_skrd_bin skrctl)" config show --config "$cfg" 2>/dev/null | sed 's/[[:space:]]*#.*$//'
}

# Names of the volumes unlocked in the initramfs, one per line.
_skrd_initrd_volumes() {
    _skrd_show | sed -n 's/^volumes\.\([^.]*\)\.options\.initrd = true$/\1/p'
}

# Every file named in trust.ca_files and trust.amd_test_roots.
_skrd_trust_files() {
    _skrd_show | sed -n 's/^trust\.\(ca_files\|amd_test_roots\) = \[\(.*\)\]$/\2/p' \
        | tr ',' '\n' | sed 's/^[[:space:]]*"//; s/"[[:space:]]*$//' | grep -v '^$'
}

check() {
    local b
    for b in skrd skrctl; do
        [[ -x $(_skrd_bin "$b") ]] || { dinfo "skrd: $b not found"; return 1; }
    done
    # hostonly: include only on a machine whose configuration unlocks something at boot.
    if [[ $hostonly ]]; then
        [[ -n $(_skrd_initrd_volumes) ]] && return 0
        return 255
    fi
    return 0
}

depends() {
    local deps="systemd systemd-initrd crypt"
    # dracut-ng (105+) moved systemd-cryptsetup out of "crypt" into a module of its own.
    local m
    for m in "${dracutbasedir:-/usr/lib/dracut}"/modules.d/[0-9][0-9]systemd-cryptsetup; do
        [[ -d $m ]] && deps="$deps systemd-cryptsetup"
    done
    [[ -n $(_skrd_initrd_volumes) ]] && deps="$deps network"
    echo "$deps"
    return 0
}

installkernel() {
    # The vTPM (TIS/CRB, built in on most distribution kernels; instmods skips built-ins),
    # /dev/sev-guest, and dm-crypt.
    hostonly='' instmods -o tpm_tis tpm_crb sev-guest dm_crypt
}

install() {
    local cfg f problems
    cfg=$(_skrd_config)
    # An invalid configuration would build an image that unlocks nothing: fail the build.
    if [[ -r $cfg ]] && ! problems=$("$(_skrd_bin skrctl)" config check --config "$cfg" 2>&1); then
        derror "skrd: $cfg is invalid, the initramfs would unlock nothing: $problems"
        return 1
    fi
    inst_binary "$(_skrd_bin skrd)" /usr/sbin/skrd
    inst_simple "$moddir/skrd-initrd.socket" "$systemdsystemunitdir/skrd-initrd.socket"
    inst_simple "$moddir/skrd-initrd.service" "$systemdsystemunitdir/skrd-initrd.service"
    # Every skrd volume is opened from its checked detached header (crypttab header=).
    inst_simple "$moddir/skrd-header.conf" \
        "$systemdsystemunitdir/systemd-cryptsetup@.service.d/skrd-header.conf"
    $SYSTEMCTL -q --root "$initdir" add-wants sockets.target skrd-initrd.socket
    $SYSTEMCTL -q --root "$initdir" add-wants cryptsetup-pre.target skrd-initrd.service
    # cryptsetup-pre.target is only started when something wants it.
    $SYSTEMCTL -q --root "$initdir" add-wants sysinit.target cryptsetup-pre.target

    if [[ -r $cfg ]]; then
        inst_simple "$cfg" /etc/skrd/skrd.toml
        for f in "${cfg%/*}"/skrd.toml.d/*.toml; do
            [[ -r $f ]] && inst_simple "$f" "/etc/skrd/skrd.toml.d/${f##*/}"
        done
    fi
    while IFS= read -r f; do
        [[ -r $f ]] && inst_simple "$f"
    done < <(_skrd_trust_files)
    # The system roots for MAA and Key Vault TLS and the release JWS chain.
    inst_multiple -o /etc/ssl/certs/ca-certificates.crt /etc/pki/tls/certs/ca-bundle.crt

    # tpm2-tss loads its TCTI with dlopen(): dracut's ldd scan cannot see it.
    inst_libdir_file "libtss2-tcti-device.so*"
    # libcryptsetup plugins are not needed: skrd only serves the key socket.

    if [[ -n $(_skrd_initrd_volumes) ]]; then
        # The keys come from Key Vault: network in the initramfs.
        mkdir -p "$initdir/etc/cmdline.d"
        echo "rd.neednet=1" > "$initdir/etc/cmdline.d/90skrd.conf"
        inst_simple "$moddir/90-skrd-dhcp.network" /etc/systemd/network/90-skrd-dhcp.network
        # systemd-networkd starts with skrd (not when dracut's initqueue gets to it, seconds
        # later): the lease comes while udev still settles the disks, so the attestation is
        # under way, or done, when systemd-cryptsetup first asks.
        if [[ -e $initdir$systemdsystemunitdir/systemd-networkd.service ]]; then
            $SYSTEMCTL -q --root "$initdir" add-wants skrd-initrd.service systemd-networkd.service
        fi
    fi
}
