//! systemd socket activation (sd_listen_fds(3)): `skrd-initrd.socket` hands the bound key
//! socket to the service as fd 3 when `LISTEN_PID` is our pid and `LISTEN_FDS=1`. Without
//! those variables skrd binds the socket path itself.

use std::os::fd::FromRawFd;

use super::error::BootError;

/// The first passed descriptor (SD_LISTEN_FDS_START).
const LISTEN_FDS_START: i32 = 3;

/// The listener systemd passed, `Ok(None)` when not socket-activated. The variables are
/// checked against our pid so a listener meant for another process is never taken.
pub fn listener_from_env() -> Result<Option<std::os::unix::net::UnixListener>, BootError> {
    let (Ok(pid), Ok(fds)) = (std::env::var("LISTEN_PID"), std::env::var("LISTEN_FDS")) else {
        return Ok(None);
    };
    let ours = std::process::id();
    if pid.trim().parse::<u32>().ok() != Some(ours) || fds.trim() != "1" {
        return Err(BootError::ListenFds { pid, fds, ours });
    }
    // Children must not inherit them.
    std::env::remove_var("LISTEN_PID");
    std::env::remove_var("LISTEN_FDS");
    std::env::remove_var("LISTEN_FDNAMES");
    // SAFETY: fcntl only queries/sets flags of fd 3; systemd passed it to us (checked above).
    let ok = unsafe { libc::fcntl(LISTEN_FDS_START, libc::F_SETFD, libc::FD_CLOEXEC) == 0 };
    if !ok {
        return Err(BootError::ListenFds { pid, fds, ours });
    }
    // SAFETY: fd 3 is open (fcntl succeeded), it is ours per LISTEN_PID, and nothing else in
    // this process owns it.
    Ok(Some(unsafe {
        std::os::unix::net::UnixListener::from_raw_fd(LISTEN_FDS_START)
    }))
}
