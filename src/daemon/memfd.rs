//! Keys leave the daemon only as sealed memfds (DESIGN.md "The long-running daemon"): the
//! bytes are written into an anonymous memory file, which is then sealed (`F_SEAL_SEAL |
//! F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE`) so the receiver reads exactly what was
//! released and nobody can change it; its offset is 0 (written with pwrite).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::FileExt;

/// Creates a sealed memfd named `name` (shown in `/proc/PID/fd`) holding `bytes`.
pub fn sealed_memfd(name: &str, bytes: &[u8]) -> std::io::Result<OwnedFd> {
    let cname = std::ffi::CString::new(name)
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: cname is a valid NUL-terminated string; the flags are defined by memfd_create(2).
    let raw =
        unsafe { libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: raw is a fresh descriptor owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let file = std::fs::File::from(fd);
    // pwrite: the offset stays at 0 for the receiver, no lseek needed (one syscall less per
    // ReleaseKey).
    file.write_all_at(bytes, 0)?;
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    // SAFETY: plain fcntl on a descriptor we own.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, seals) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(OwnedFd::from(file))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn sealed_readable_from_start_and_not_writable() {
        let fd = sealed_memfd("skrd-test", b"0123456789").unwrap();
        // SAFETY: plain fcntl on a descriptor we own.
        let seals = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
        let want = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
        assert_eq!(seals & want, want);
        let mut f = std::fs::File::from(fd);
        let mut out = Vec::new();
        f.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"0123456789");
        assert!(f.write_all(b"x").is_err());
        assert!(f.set_len(0).is_err());
    }
}
