#!/bin/sh
# tests/e2e: the emulator's URLs name 127.0.0.1:PORT; forward each such port inside the guest
# to its slirp guestfwd address (169.254.0.x:443), which QEMU connects to the host's loopback.
while read -r port addr; do
    [ -n "$port" ] || continue
    socat TCP-LISTEN:"$port",bind=127.0.0.1,fork,reuseaddr TCP:"$addr":443 &
done < /etc/skrd-e2e/forward.conf
exit 0
