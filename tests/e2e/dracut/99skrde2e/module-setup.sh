#!/bin/bash
# dracut module "skrde2e": the test payload of tests/e2e/run.sh (never in a real image; only
# when named with --modules). skrctl for the guest's `skrctl volumes`, a checker that waits for
# skrd's verdict and prints E2E lines on the console, then powers off. The per-run settings
# (crypttab, skrd.toml, /etc/hosts, expected results) come in a second cpio appended by run.sh.
check() { return 255; }
depends() { echo skrd; return 0; }
installkernel() { hostonly='' instmods virtio_pci virtio_blk virtio_net dm_crypt; }
install() {
    inst_binary "${SKRD_BINDIR:-/usr/bin}/skrctl" /usr/bin/skrctl
    inst_multiple socat cryptsetup cat grep sed awk tr sleep ls dd head cut seq
    inst_script "$moddir/e2e-check.sh" /usr/libexec/skrd-e2e/e2e-check.sh
    inst_simple "$moddir/skrd-e2e-check.service" "$systemdsystemunitdir/skrd-e2e-check.service"
    inst_script "$moddir/forward.sh" /usr/libexec/skrd-e2e/forward.sh
    inst_simple "$moddir/skrd-e2e-forward.service" "$systemdsystemunitdir/skrd-e2e-forward.service"
    $SYSTEMCTL -q --root "$initdir" add-wants sysinit.target skrd-e2e-check.service
    $SYSTEMCTL -q --root "$initdir" add-wants sysinit.target skrd-e2e-forward.service
}
