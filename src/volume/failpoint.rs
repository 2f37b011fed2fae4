//! Named points between the header writes of enroll / unenroll / reenroll, for the
//! interruption and failure tests (stratisd tests its rollback the same way, by making a step
//! fail). `SKRD_TEST_FAILPOINT=POINT:ACTION` (unset in production):
//!
//! - `stop`: the process stops itself (SIGSTOP) at POINT, so a test can SIGKILL it exactly
//!   there: a power loss between two writes, without timing guesses;
//! - `fail`: the step at POINT fails as a libcryptsetup error would, so the header restore
//!   runs (`volume-cryptsetup-failed`);
//! - `fail-lose-backup`: like `fail`, after removing the backup file, so the restore fails too
//!   (`volume-header-restore-failed`).
//!
//! Points: `after-backup` (inside every header change, before the first write),
//! `after-keyslot` (enroll/reenroll: the new keyslot is written and verified),
//! `after-token` (enroll/reenroll: the token is written or moved),
//! `after-destroy` (unenroll: the keyslot is destroyed, the token not yet removed),
//! `after-change` (every change: all writes done, the backup not yet removed).

use std::path::Path;

use super::error::VolumeError;

/// The environment variable naming the failpoint.
pub const ENV: &str = "SKRD_TEST_FAILPOINT";

/// Runs the failpoint `point` of a change on `device` whose backup is `backup`.
pub fn hit(point: &str, device: &Path, backup: Option<&Path>) -> Result<(), VolumeError> {
    let Ok(spec) = std::env::var(ENV) else {
        return Ok(());
    };
    let Some((at, action)) = spec.split_once(':') else {
        return Ok(());
    };
    if at != point {
        return Ok(());
    }
    let injected = || VolumeError::Cryptsetup {
        operation: "header change",
        device: device.to_path_buf(),
        reason: format!("failure injected at {point} by {ENV}"),
    };
    match action {
        "stop" => {
            // SAFETY: raise() with a valid signal number; SIGSTOP cannot be caught.
            unsafe {
                libc::raise(libc::SIGSTOP);
            }
            Ok(())
        }
        "fail" => Err(injected()),
        "fail-lose-backup" => {
            if let Some(b) = backup {
                let _ = std::fs::remove_file(b);
            }
            Err(injected())
        }
        _ => Ok(()),
    }
}
