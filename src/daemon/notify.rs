//! `sd_notify(3)` without libsystemd: one datagram per message to `$NOTIFY_SOCKET` (a path,
//! or an abstract name written `@name`). Without `NOTIFY_SOCKET` every call is a no-op.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// The notification socket of the service manager, if any.
#[derive(Debug)]
pub struct Notifier {
    target: Option<SocketAddr>,
}

impl Notifier {
    /// From `$NOTIFY_SOCKET` (unset or unusable: a no-op notifier).
    pub fn from_env() -> Self {
        let target = std::env::var_os("NOTIFY_SOCKET").and_then(|s| {
            let bytes = std::os::unix::ffi::OsStrExt::as_bytes(s.as_os_str()).to_vec();
            match bytes.split_first() {
                Some((b'@', name)) => SocketAddr::from_abstract_name(name).ok(),
                Some((b'/', _)) => SocketAddr::from_pathname(std::path::Path::new(&s)).ok(),
                _ => None,
            }
        });
        Self { target }
    }

    /// Sends `state` (e.g. `READY=1\nSTATUS=...`); errors are ignored like sd_notify's callers do.
    pub fn notify(&self, state: &str) {
        if let Some(addr) = &self.target {
            if let Ok(sock) = UnixDatagram::unbound() {
                let _ = sock.send_to_addr(state.as_bytes(), addr);
            }
        }
    }

    /// `STATUS=` line (newlines replaced).
    pub fn status(&self, text: &str) {
        self.notify(&format!("STATUS={}", text.replace('\n', " ")));
    }
}

/// Half of `$WATCHDOG_USEC` when set for this process (`$WATCHDOG_PID` absent or ours).
pub fn watchdog_interval() -> Option<Duration> {
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.trim() != std::process::id().to_string() {
            return None;
        }
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.trim().parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_datagrams_to_a_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let server = UnixDatagram::bind(&path).unwrap();
        let n = Notifier {
            target: Some(SocketAddr::from_pathname(&path).unwrap()),
        };
        n.notify("READY=1");
        n.status("attesting\nnow");
        let mut buf = [0u8; 64];
        let len = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1");
        let len = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"STATUS=attesting now");
        // No socket: silently nothing.
        Notifier { target: None }.notify("READY=1");
    }
}
