//! Errors of the volume layer (`skrd::volume`): every refusal of enroll, unenroll, reenroll,
//! unlock and status, with a stable code (listed in `docs/errors-volume.md`).

use std::path::PathBuf;

use crate::crypto::CryptoError;
use crate::error::ErrorCode;
use crate::format::luks_token::LuksTokenError;

/// A volume operation that failed or was refused.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// The device path does not exist.
    #[error("device {device} does not exist; check the path, or that the disk is attached (ls -l /dev/disk/by-uuid/)")]
    DeviceMissing {
        /// The path given.
        device: PathBuf,
    },
    /// The device exists but carries no LUKS header libcryptsetup can read.
    #[error("device {device} has no readable LUKS header ({reason}); it is not LUKS, or its header is damaged: restore it with `cryptsetup luksHeaderRestore` from a backup")]
    NotLuks {
        /// The device.
        device: PathBuf,
        /// libcryptsetup's answer.
        reason: String,
    },
    /// A LUKS device of another version.
    #[error("device {device} is {found}, expected LUKS2; convert it with `cryptsetup convert --type luks2` (after a backup) or use a LUKS2 volume")]
    NotLuks2 {
        /// The device.
        device: PathBuf,
        /// The type found (`LUKS1`, ...).
        found: String,
    },
    /// A volume name that is not in the configuration.
    #[error("volume {volume:?} is not configured; add [volumes.{volume}] with its LUKS UUID to /etc/skrd/skrd.toml (configured: {configured})")]
    UnknownVolume {
        /// The name asked for.
        volume: String,
        /// The configured names, comma-separated.
        configured: String,
    },
    /// A device whose LUKS UUID is not in the configuration.
    #[error("device {device} has LUKS UUID {found}, which no [volumes.NAME] in the configuration has; skrd only touches configured volumes: add it to the configuration first")]
    UuidNotConfigured {
        /// The device.
        device: PathBuf,
        /// Its UUID.
        found: String,
    },
    /// The device's LUKS UUID is not the configured one.
    #[error("device {device} has LUKS UUID {found}, but volume {volume:?} is configured with {expected}; this is another disk (or a copied header): check the device path and the configuration")]
    UuidMismatch {
        /// The volume.
        volume: String,
        /// The device.
        device: PathBuf,
        /// Configured UUID.
        expected: String,
        /// UUID in the header.
        found: String,
    },
    /// An `azure-skr` token that does not parse.
    #[error("LUKS2 token {token} of {device} is an invalid azure-skr token: {source}")]
    TokenInvalid {
        /// The device.
        device: PathBuf,
        /// The token number.
        token: u32,
        /// Why.
        source: LuksTokenError,
    },
    /// More than one `azure-skr` token.
    #[error("device {device} has {found} azure-skr tokens, expected at most 1; remove the extra ones with `cryptsetup token remove --token-id N` after checking `cryptsetup luksDump`")]
    TokenMultiple {
        /// The device.
        device: PathBuf,
        /// How many.
        found: usize,
    },
    /// The header's token disagrees with the configuration.
    #[error("the azure-skr token of volume {volume:?} records {field} {found:?}, but the configuration says {expected:?}; rotate with `skrctl reenroll`, or fix the configuration")]
    TokenMismatch {
        /// The volume.
        volume: String,
        /// Which member disagrees (`key_url`, `key_version`).
        field: &'static str,
        /// Configured value.
        expected: String,
        /// Value in the token.
        found: String,
    },
    /// The token names a keyslot that is not active.
    #[error("the azure-skr token of volume {volume:?} is bound to keyslot {keyslot}, which is not an active keyslot; re-enroll with `skrctl unenroll` then `skrctl enroll`")]
    TokenSlotInactive {
        /// The volume.
        volume: String,
        /// The slot.
        keyslot: u32,
    },
    /// The token's keyslot was destroyed (libcryptsetup emptied its `keyslots`).
    #[error("the azure-skr token of volume {volume:?} is bound to no keyslot (its keyslot was destroyed); enroll again with `skrctl enroll`, which rebinds it")]
    TokenUnbound {
        /// The volume.
        volume: String,
    },
    /// The volume has no skrd keyslot.
    #[error("volume {volume:?} is not enrolled (no azure-skr token); enroll it with `skrctl enroll --volume {volume}`")]
    NotEnrolled {
        /// The volume.
        volume: String,
    },
    /// The authorizing (recovery) passphrase opens no keyslot.
    #[error("the recovery passphrase given for {device} opens no keyslot; nothing was changed: give the passphrase of an existing keyslot")]
    AuthRefused {
        /// The device.
        device: PathBuf,
    },
    /// The derived passphrase does not open skrd's keyslot.
    #[error("the key material given does not open keyslot {keyslot} of volume {volume:?}: wrong key, wrong key version, or a header that was not enrolled by this key; nothing was changed")]
    WrongKey {
        /// The volume.
        volume: String,
        /// skrd's keyslot.
        keyslot: u32,
    },
    /// Removing skrd's slot would leave no keyslot that is not skrd's.
    #[error("volume {volume:?} has no recovery keyslot besides skrd's keyslot {keyslot}; refusing to remove the last way in: add a recovery passphrase first (`cryptsetup luksAddKey`)")]
    LastRecoverySlot {
        /// The volume.
        volume: String,
        /// skrd's slot.
        keyslot: u32,
    },
    /// The header-backup directory cannot be used.
    #[error("cannot use the header-backup directory {dir}: {reason}; create it (mode 0700) or pass --backup-dir")]
    BackupDir {
        /// The directory.
        dir: PathBuf,
        /// Why.
        reason: String,
    },
    /// Not enough space for the header backup.
    #[error("no space for the LUKS header backup in {dir}: {needed} bytes needed, {available} available; nothing was changed: free space or pass --backup-dir")]
    BackupNoSpace {
        /// The directory.
        dir: PathBuf,
        /// Header size.
        needed: u64,
        /// Free bytes.
        available: u64,
    },
    /// libcryptsetup could not write the backup.
    #[error("cannot back up the LUKS header of {device} to {path}: {reason}; nothing was changed")]
    BackupFailed {
        /// The device.
        device: PathBuf,
        /// The backup file.
        path: PathBuf,
        /// libcryptsetup's answer.
        reason: String,
    },
    /// A libcryptsetup call failed.
    #[error("libcryptsetup {operation} failed on {device}: {reason}")]
    Cryptsetup {
        /// What was being done.
        operation: &'static str,
        /// The device.
        device: PathBuf,
        /// libcryptsetup's answer.
        reason: String,
    },
    /// The new keyslot did not open right after being written.
    #[error("the new keyslot {keyslot} of {device} does not open with the derived passphrase right after it was written; the header was restored from the backup")]
    VerifyFailed {
        /// The device.
        device: PathBuf,
        /// The slot.
        keyslot: u32,
    },
    /// A header write failed and the restore from the backup failed too.
    #[error("{cause}; restoring the header from {} ALSO failed ({restore_error}): restore it by hand with `cryptsetup luksHeaderRestore DEVICE --header-backup-file {}`", backup.display(), backup.display())]
    HeaderRestoreFailed {
        /// The first failure.
        cause: Box<VolumeError>,
        /// Why the restore failed.
        restore_error: String,
        /// The backup file (kept).
        backup: PathBuf,
    },
    /// Activating the dm-crypt device failed.
    #[error("cannot activate volume {volume:?} as /dev/mapper/{name}: {reason}")]
    Activate {
        /// The volume.
        volume: String,
        /// The dm name.
        name: String,
        /// libcryptsetup's answer.
        reason: String,
    },
    /// The header cannot be read from the device.
    #[error("cannot read the LUKS2 header of {device}: {reason}; check that the disk is attached and readable")]
    HeaderRead {
        /// The device.
        device: PathBuf,
        /// The I/O error.
        reason: String,
    },
    /// The header was refused (untrusted-header checks, `format::luks2`).
    #[error("{device}: {error}")]
    Header {
        /// The device (or detached header file).
        device: PathBuf,
        /// Which check failed.
        error: crate::format::luks2::HeaderError,
    },
    /// The detached header file cannot be written.
    #[error(
        "cannot write the detached header {path}: {reason}; check that /run is a writable tmpfs"
    )]
    HeaderWrite {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        reason: String,
    },
    /// Deriving the passphrase failed (empty key material).
    #[error(transparent)]
    Derive(#[from] CryptoError),
}

impl ErrorCode for VolumeError {
    fn code(&self) -> &'static str {
        match self {
            Self::DeviceMissing { .. } => "volume-device-missing",
            Self::NotLuks { .. } => "volume-not-luks",
            Self::NotLuks2 { .. } => "volume-not-luks2",
            Self::UnknownVolume { .. } => "volume-not-configured",
            Self::UuidNotConfigured { .. } => "volume-uuid-not-configured",
            Self::UuidMismatch { .. } => "volume-uuid-mismatch",
            Self::TokenInvalid { .. } => "volume-token-invalid",
            Self::TokenMultiple { .. } => "volume-token-multiple",
            Self::TokenMismatch { .. } => "volume-token-mismatch",
            Self::TokenSlotInactive { .. } => "volume-token-slot-inactive",
            Self::TokenUnbound { .. } => "volume-token-unbound",
            Self::NotEnrolled { .. } => "volume-not-enrolled",
            Self::AuthRefused { .. } => "volume-auth-refused",
            Self::WrongKey { .. } => "volume-wrong-key",
            Self::LastRecoverySlot { .. } => "volume-last-recovery-slot",
            Self::BackupDir { .. } => "volume-backup-dir",
            Self::BackupNoSpace { .. } => "volume-backup-no-space",
            Self::BackupFailed { .. } => "volume-backup-failed",
            Self::Cryptsetup { .. } => "volume-cryptsetup-failed",
            Self::VerifyFailed { .. } => "volume-verify-failed",
            Self::HeaderRestoreFailed { .. } => "volume-header-restore-failed",
            Self::Activate { .. } => "volume-activate-failed",
            Self::HeaderRead { .. } => "volume-header-unreadable",
            Self::Header { error, .. } => error.code(),
            Self::HeaderWrite { .. } => "volume-header-write-failed",
            Self::Derive(e) => e.code(),
        }
    }
}
