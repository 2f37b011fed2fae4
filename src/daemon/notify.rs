//! `sd_notify(3)` without libsystemd: one datagram per message to `$NOTIFY_SOCKET` (a path,
//! or an abstract name written `@name`). Without `NOTIFY_SOCKET` every call is a no-op.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// The notification socket of the service manager, if any.
///
/// Datagrams are sent by a thread of their own: `sendto` on a full AF_UNIX datagram queue
/// blocks (the kernel keeps `net.unix.max_dgram_qlen` datagrams, 10 by default, for a reader
/// that is slow or stopped), and that must never stall the daemon's single-threaded runtime
/// (the watchdog would then kill it). Up to [`PENDING`] messages wait in memory; beyond that
/// new ones are dropped (counted in a debug log line), since the reader is not reading.
#[derive(Debug)]
pub struct Notifier {
    tx: Option<std::sync::mpsc::SyncSender<String>>,
}

/// Messages waiting for the sending thread at most.
pub const PENDING: usize = 64;

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
        Self::to(target)
    }

    fn to(target: Option<SocketAddr>) -> Self {
        let tx = target.and_then(|addr| {
            let sock = UnixDatagram::unbound().ok()?;
            let (tx, rx) = std::sync::mpsc::sync_channel::<String>(PENDING);
            std::thread::Builder::new()
                .name("skrd-notify".into())
                .spawn(move || {
                    for msg in rx {
                        let _ = sock.send_to_addr(msg.as_bytes(), &addr);
                    }
                })
                .ok()?;
            Some(tx)
        });
        Self { tx }
    }

    /// Sends `state` (e.g. `READY=1\nSTATUS=...`); errors are ignored like sd_notify's callers do.
    pub fn notify(&self, state: &str) {
        if let Some(tx) = &self.tx {
            if tx.try_send(state.to_string()).is_err() {
                tracing::debug!("service manager notification dropped: {PENDING} still unsent");
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
        let n = Notifier::to(Some(SocketAddr::from_pathname(&path).unwrap()));
        n.notify("READY=1");
        n.status("attesting\nnow");
        let mut buf = [0u8; 64];
        let len = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1");
        let len = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"STATUS=attesting now");
        // No socket: silently nothing.
        Notifier::to(None).notify("READY=1");
    }

    #[test]
    fn a_reader_that_does_not_read_never_blocks_the_caller() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let server = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::to(Some(SocketAddr::from_pathname(&path).unwrap()));
        // Far more than the kernel queue (10) and the pending messages (64) together: every
        // call returns at once (a blocking send would hang this test).
        for i in 0..1000 {
            n.notify(&format!("STATUS={i}"));
        }
        // The first ones arrive in order once the reader reads.
        let mut buf = [0u8; 64];
        let len = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"STATUS=0");
    }
}
