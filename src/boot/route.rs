//! Waiting for the network before the first attestation attempt.
//!
//! In the initramfs skrd starts before DHCP has finished: every connection then fails at once
//! with "Network is unreachable", and each whole attempt (the HTTP layer's retries, then the
//! attempt back-off of 1, 2, 4 s) costs seconds after the network is in fact up. Instead, skrd
//! asks the kernel every [`POLL`] whether it has a route to the IMDS address: `connect()` of a
//! UDP socket only looks up the route (no packet is sent), and fails with `ENETUNREACH` while
//! there is none. The first attempt then starts within [`POLL`] of the lease.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Duration;

use url::Url;

use crate::net::Deadline;

/// How often the route is looked up while there is none.
pub const POLL: Duration = Duration::from_millis(50);

/// Whether the kernel has a route to `addr` now. Only "no route" errors (network or host
/// unreachable) count as no; any other error (e.g. no socket) counts as yes, so that the real
/// attempt reports it.
pub fn has_route(addr: SocketAddr) -> bool {
    let bind: SocketAddr = match addr {
        SocketAddr::V4(_) => (IpAddr::from([0u8; 4]), 0).into(),
        SocketAddr::V6(_) => (IpAddr::from([0u16; 8]), 0).into(),
    };
    let result = UdpSocket::bind(bind).and_then(|s| s.connect(addr));
    !matches!(
        result.as_ref().map_err(|e| e.raw_os_error()),
        Err(Some(libc::ENETUNREACH | libc::EHOSTUNREACH))
    )
}

/// The address of `url` when its host is an IP address (IMDS: 169.254.169.254); `None` for a
/// host name (nothing to wait for without DNS).
pub fn route_target(url: &Url) -> Option<SocketAddr> {
    let ip = match url.host()? {
        url::Host::Ipv4(a) => IpAddr::V4(a),
        url::Host::Ipv6(a) => IpAddr::V6(a),
        url::Host::Domain(_) => return None,
    };
    Some(SocketAddr::new(
        ip,
        url.port_or_known_default().unwrap_or(80),
    ))
}

/// Waits until `probe()` says there is a route or `deadline` passes; returns how long it
/// waited. `probe` is [`has_route`] of the IMDS address in the boot unlock.
pub async fn wait_for_route(probe: impl Fn() -> bool, deadline: &Deadline) -> Duration {
    let start = std::time::Instant::now();
    while !probe() && !deadline.expired() {
        tokio::time::sleep(POLL.min(deadline.remaining())).await;
    }
    start.elapsed()
}
