#!/bin/bash
# tests/e2e guest side. /etc/skrd-e2e/expect: lines "VOLUME open|prompt|refused". Waits until
# skrd's state file says finished (finished_at set; skipped in an image without skrd, e.g. the
# clevis comparison of scripts/bench-clevis.sh), then for each volume: "open" = /dev/mapper/VOLUME
# exists and reads; "prompt" = systemd-cryptsetup@VOLUME is waiting at the passphrase prompt (an
# ask-password request for it exists); "refused" = skrd refused its LUKS2 header
# (luks-header-refused in the journal), systemd-cryptsetup@VOLUME failed, no mapping, no prompt;
# "unlock" = `skrctl unlock VOLUME` (attest, release, activate from the checked header) opens
# /dev/mapper/VOLUME; "unlock-refused" = it exits 1 and opens nothing. Prints "E2E: ..." lines and "E2E-RESULT: PASS|FAIL"
# on the second serial port (ttyS1), which run.sh reads: never on the console, which
# systemd's password agent takes over once a volume asks for its passphrase (a check that
# wrote there after the prompt was seen to stall until the run timed out).
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
exec 3>/dev/ttyS1
say() { printf 'E2E: %s\n' "$*" >&3; }
failed=""
fail() { failed="$failed $1"; say "FAIL $1: $2"; }
say "check start uptime=$(cut -d' ' -f1 /proc/uptime)s"
state=/run/skrd/state.json
[ -x /usr/sbin/skrd ] || state=""
[ -z "$state" ] || for _ in $(seq 1 1200); do
    grep -q '"finished_at": [0-9]' "$state" 2>/dev/null && break
    sleep 0.25
done
[ -z "$state" ] || grep -q '"finished_at": [0-9]' "$state" 2>/dev/null || fail skrd "state file not finished (no finished_at)"
# Without skrd nothing says when the unlock is over: wait up to 300 s for each device instead
# of 30 s (clevis under TCG takes minutes for 4 volumes).
tries=300
if [ -n "$state" ]; then say "skrd finished uptime=$(cut -d' ' -f1 /proc/uptime)s"; else tries=3000; fi
while read -r vol want; do
    [ -n "$vol" ] || continue
    if [ "$want" = open ]; then
        for _ in $(seq 1 "$tries"); do [ -b "/dev/mapper/$vol" ] && break; sleep 0.1; done
        if [ -b "/dev/mapper/$vol" ] && dd if="/dev/mapper/$vol" of=/dev/null bs=4096 count=1 iflag=direct status=none; then
            say "OK $vol open ($(cryptsetup status "$vol" | awk '/type:/{print $2}'))"
        else
            fail "$vol" "not open"
        fi
    elif [ "$want" = unlock ] || [ "$want" = unlock-refused ]; then
        out=$(skrctl unlock "$vol" --json 2>&1); rc=$?
        echo "E2E-UNLOCK: $vol rc=$rc $out" | tr -d '\n' >&3; echo >&3
        if [ "$want" = unlock ] && [ $rc = 0 ] && [ -b "/dev/mapper/$vol" ] \
            && dd if="/dev/mapper/$vol" of=/dev/null bs=4096 count=1 iflag=direct status=none \
            && [ -s "/run/skrd/headers/$vol" ]; then
            say "OK $vol opened by skrctl unlock ($(cryptsetup status "$vol" | awk '/type:/{print $2}'), checked header /run/skrd/headers/$vol)"
        elif [ "$want" = unlock-refused ] && [ $rc = 1 ] && [ ! -b "/dev/mapper/$vol" ]; then
            say "OK $vol not opened by skrctl unlock: $(echo "$out" | grep -o '"code": *"[^"]*"' | head -n 1)"
        else
            fail "$vol" "skrctl unlock: exit $rc, mapper $([ -b /dev/mapper/$vol ] && echo present || echo absent): $out"
        fi
    elif [ "$want" = refused ]; then
        unit="systemd-cryptsetup@$vol.service"
        for _ in $(seq 1 300); do systemctl is-failed -q "$unit" && break; sleep 0.1; done
        why=$(journalctl -b --no-pager -o cat 2>/dev/null | grep -a "volume $vol: .*\[luks-header-" | head -n 1)
        if systemctl is-failed -q "$unit" && [ ! -b "/dev/mapper/$vol" ] && [ -n "$why" ] \
            && ! grep -ls "cryptsetup.*$vol\|$vol" /run/systemd/ask-password/ask.* >/dev/null 2>&1; then
            say "OK $vol not opened, header refused: ${why#skrd: }"
        else
            fail "$vol" "expected a refused header (unit $(systemctl is-active "$unit"), mapper $([ -b /dev/mapper/$vol ] && echo present || echo absent), skrd: ${why:-no refusal line})"
        fi
    else
        found=""
        for _ in $(seq 1 300); do
            if grep -ls "cryptsetup.*$vol\|$vol" /run/systemd/ask-password/ask.* >/dev/null 2>&1; then found=1; break; fi
            sleep 0.1
        done
        if [ -n "$found" ] && [ ! -b "/dev/mapper/$vol" ]; then
            say "OK $vol not open, passphrase prompt shown"
        else
            fail "$vol" "expected the passphrase prompt (mapper: $([ -b /dev/mapper/$vol ] && echo present || echo absent))"
        fi
    fi
done < /etc/skrd-e2e/expect
# Figures for the benchmarks (nothing asserted): each systemd-cryptsetup unit's start (leaving
# "inactive": before its ExecStartPre=, so skrd's header check counts) and activation
# (CLOCK_MONOTONIC, us; 0 = not reached), then the journal lines that show where
# the time went (DHCP lease, skrd, clevis), with their monotonic time stamps.
for u in $(systemctl list-units --all --plain --no-legend 'systemd-cryptsetup@*.service' | cut -d' ' -f1); do
    echo "E2E-TIMES: $u $(systemctl show -P InactiveExitTimestampMonotonic "$u") $(systemctl show -P ActiveEnterTimestampMonotonic "$u")" >&3
done
journalctl -b -o short-monotonic --no-pager 2>/dev/null \
    | grep -a -E 'DHCPv4 address|skrd\[|clevis|Unlocked|systemd-cryptsetup\[' | sed 's/^/E2E-JOURNAL: /' >&3
# The bench keeps the whole journal (kernel and every unit) for a closer look at the timeline.
[ ! -e /etc/skrd-e2e/full-journal ] \
    || journalctl -b -o short-monotonic --no-pager 2>/dev/null | sed 's/^/E2E-JOURNAL-ALL: /' >&3
if [ -n "$state" ]; then
    say "skrctl volumes:"
    skrctl volumes 2>&1 | sed 's/^/E2E:   /' >&3
    say "skrctl status (exit status $(skrctl status >/dev/null 2>&1; echo $?)):"
    skrctl status 2>&1 | sed 's/^/E2E-STATUS: /' >&3
    say "state:"
    tr -d '\n' < "$state" | sed 's/  */ /g; s/^/E2E-STATE: /' >&3; echo >&3
fi
if [ -z "$failed" ]; then echo "E2E-RESULT: PASS" >&3; else echo "E2E-RESULT: FAIL$failed" >&3; fi
sync
systemctl --no-block poweroff || echo o > /proc/sysrq-trigger
