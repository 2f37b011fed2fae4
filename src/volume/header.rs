//! Header backup around every header write (DESIGN.md "Header writes back the header up
//! first and restore it on any failure"; stratisd's `back_up_luks_header` /
//! `restore_luks_header`).
//!
//! [`with_backup`] checks the backup directory and its free space, writes the backup with
//! libcryptsetup, runs the change, and on any error restores the header from the backup. The
//! backup file is removed after success and kept when the restore itself failed (its path is
//! then in the error) or when the process dies mid-way (the operator restores it with
//! `cryptsetup luksHeaderRestore`).

use std::path::{Path, PathBuf};

use super::device::LuksDevice;
use super::error::VolumeError;

/// Default directory for header backups.
pub const DEFAULT_BACKUP_DIR: &str = "/var/lib/skrd/header-backup";

/// Free bytes available to unprivileged writers in `dir` (`statvfs` `f_bavail * f_frsize`).
fn available_bytes(dir: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: statvfs is plain old data; an all-zero value is valid and is fully written
    // by a successful call.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path and `st` a valid out-pointer.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

/// The backup file for `volume` (unique per process and time, never overwritten).
fn backup_path(dir: &Path, volume: &str, uuid: &uuid::Uuid) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    dir.join(format!(
        "{volume}-{uuid}-{nanos}-{}.luks2-header",
        std::process::id()
    ))
}

/// Backs the header of `dev` up into `dir`, runs `change`, and restores the header from the
/// backup if `change` fails.
pub fn with_backup<T>(
    dev: &mut LuksDevice,
    dir: &Path,
    volume: &str,
    change: impl FnOnce(&mut LuksDevice) -> Result<T, VolumeError>,
) -> Result<T, VolumeError> {
    let dir_err = |reason: String| VolumeError::BackupDir {
        dir: dir.to_path_buf(),
        reason,
    };
    if !dir.exists() {
        // Backups hold every keyslot (the recovery one too): owner-only, like the 0400 files
        // libcryptsetup writes into it.
        use std::os::unix::fs::DirBuilderExt;
        if let Err(e) = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
        {
            return Err(dir_err(e.to_string()));
        }
    }
    if !dir.is_dir() {
        return Err(dir_err("not a directory".to_string()));
    }
    let needed = dev.header_size();
    let available = available_bytes(dir).map_err(|e| dir_err(e.to_string()))?;
    if available < needed {
        return Err(VolumeError::BackupNoSpace {
            dir: dir.to_path_buf(),
            needed,
            available,
        });
    }
    let uuid = dev.uuid()?;
    let path = backup_path(dir, volume, &uuid);
    if let Err(e) = dev.backup_header(&path) {
        // A partial file would mislead a later restore.
        let _ = std::fs::remove_file(&path);
        let no_space = matches!(&e, libcryptsetup_rs::LibcryptErr::IOError(io)
            if io.raw_os_error() == Some(libc::ENOSPC));
        return Err(if no_space {
            VolumeError::BackupNoSpace {
                dir: dir.to_path_buf(),
                needed,
                available,
            }
        } else {
            VolumeError::BackupFailed {
                device: dev.path().to_path_buf(),
                path,
                reason: super::device::reason(&e),
            }
        });
    }
    let changed = super::failpoint::hit("after-backup", dev.path(), Some(&path))
        .and_then(|()| change(dev))
        .and_then(|v| super::failpoint::hit("after-change", dev.path(), Some(&path)).map(|()| v));
    match changed {
        Ok(v) => {
            let _ = std::fs::remove_file(&path);
            Ok(v)
        }
        Err(cause) => match dev.restore_header(&path) {
            Ok(()) => {
                let _ = std::fs::remove_file(&path);
                tracing::warn!(volume, "header change failed, header restored from backup");
                Err(cause)
            }
            Err(restore_error) => Err(VolumeError::HeaderRestoreFailed {
                cause: Box::new(cause),
                restore_error,
                backup: path,
            }),
        },
    }
}
