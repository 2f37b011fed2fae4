//! Errors of the initramfs boot unlock (`skrd::boot`), listed in `docs/errors-boot.md`.

use std::path::PathBuf;

use crate::error::ErrorCode;
use crate::evidence::EvidenceError;
use crate::keysocket::KeySocketError;

/// Why the boot unlock could not run (or a volume was not answered).
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// The configuration names no volume to unlock in the initramfs.
    #[error("no volume with options.initrd = true in the configuration; nothing to unlock in the initramfs: add a [volumes.NAME] table or drop skrd from the initramfs")]
    NoInitrdVolumes,
    /// `LISTEN_FDS`/`LISTEN_PID` from systemd are present but unusable.
    #[error("socket activation: LISTEN_PID={pid} LISTEN_FDS={fds}, expected LISTEN_PID = our pid ({ours}) and LISTEN_FDS = 1; check skrd-initrd.socket (one ListenStream=, Accept=no)")]
    ListenFds {
        /// LISTEN_PID as found.
        pid: String,
        /// LISTEN_FDS as found.
        fds: String,
        /// Our pid.
        ours: u32,
    },
    /// The key socket could not be bound or taken over.
    #[error(transparent)]
    Socket(#[from] KeySocketError),
    /// No evidence source could be opened (vTPM or /dev/sev-guest).
    #[error(transparent)]
    Evidence(#[from] EvidenceError),
    /// The async runtime could not start.
    #[error(
        "cannot start the async runtime: {source}; check the process limits of skrd-initrd.service"
    )]
    Runtime {
        /// Why.
        source: std::io::Error,
    },
    /// The state file could not be written.
    #[error("cannot write the state file {path}: {source}; check that its directory (/run/skrd) is writable")]
    StateWrite {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A volume's key was not ready before its deadline.
    #[error("volume {volume}: no key within {seconds} s (boot.deadline or the volume's timeout); the connection was closed without data so systemd asks for the passphrase: check the network and the attestation/vault endpoints, or raise the deadline")]
    Deadline {
        /// The volume.
        volume: String,
        /// The deadline in seconds.
        seconds: u64,
    },
    /// A volume's key was refused (policy, attestation) or failed for good.
    #[error("volume {volume}: key {key} was not released ({cause}); the connection was closed without data so systemd asks for the passphrase")]
    KeyFailed {
        /// The volume.
        volume: String,
        /// The key name.
        key: String,
        /// The release's error code.
        cause: String,
    },
}

impl ErrorCode for BootError {
    fn code(&self) -> &'static str {
        match self {
            Self::NoInitrdVolumes => "boot-no-initrd-volumes",
            Self::ListenFds { .. } => "boot-listen-fds-invalid",
            Self::Socket(e) => e.code(),
            Self::Evidence(e) => e.code(),
            Self::Runtime { .. } => "boot-runtime-failed",
            Self::StateWrite { .. } => "boot-state-unwritable",
            Self::Deadline { .. } => "boot-volume-deadline",
            Self::KeyFailed { .. } => "boot-key-not-released",
        }
    }
}
