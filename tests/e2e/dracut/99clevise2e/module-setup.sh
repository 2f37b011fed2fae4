#!/bin/bash
# dracut module "clevise2e": the guest payload of scripts/bench-clevis.sh (only when named with
# --modules): the same volume check as 99skrde2e (its e2e-check.sh, which skips skrd's state
# file in an image without skrd) next to Debian's clevis + clevis-pin-tang modules instead of
# skrd. The tree must hold 99skrde2e too (e2e_dracut_tree ... 99skrde2e 99clevise2e).
check() { return 255; }
depends() { echo clevis clevis-pin-tang; return 0; }
installkernel() { hostonly='' instmods virtio_pci virtio_blk virtio_net dm_crypt; }
install() {
    inst_multiple cryptsetup cat grep sed tr sleep ls dd cut seq journalctl
    inst_script "$moddir/../99skrde2e/e2e-check.sh" /usr/libexec/skrd-e2e/e2e-check.sh
    inst_simple "$moddir/../99skrde2e/skrd-e2e-check.service" "$systemdsystemunitdir/skrd-e2e-check.service"
    $SYSTEMCTL -q --root "$initdir" add-wants sysinit.target skrd-e2e-check.service
}
