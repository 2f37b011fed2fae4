//! Errors of the daemon (`skrd` as a service) and of its D-Bus methods. The D-Bus error names
//! are `org.skrd.KeyRelease1.Error.<Variant>` (see `dbus.rs`); the codes are in
//! `docs/errors-daemon.md`.

use crate::error::ErrorCode;

/// Why a daemon operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DaemonError {
    /// The caller is not in the key's ACL.
    #[error("access to key {key:?} denied for uid {uid} (pid {pid}, unit {unit}): the caller is not in keys.{key}.allow_uids, allow_gids or allow_units; add it to the configuration and reload skrd (systemctl reload skrd)")]
    AccessDenied {
        /// The key.
        key: String,
        /// The caller's uid (or `unknown`).
        uid: String,
        /// The caller's pid (or `unknown`).
        pid: String,
        /// The caller's unit (or `none`).
        unit: String,
    },
    /// No such key in the configuration.
    #[error("no key named {key:?} is configured (configured: {configured}); add [keys.{key}] to the configuration or use one of those names")]
    UnknownKey {
        /// The requested name (first 64 characters).
        key: String,
        /// The configured names.
        configured: String,
    },
    /// Initial work still running.
    #[error("skrd has not finished its initial attestation yet (stage: {stage}); retry in a few seconds")]
    NotReady {
        /// What it is doing.
        stage: String,
    },
    /// The release (or its attestation) failed.
    #[error("releasing key {key:?} failed: {message} ({code})")]
    ReleaseFailed {
        /// The key.
        key: String,
        /// The underlying error code.
        code: String,
        /// The underlying message.
        message: String,
    },
    /// The attestation failed.
    #[error("attestation failed: {message} ({code})")]
    AttestFailed {
        /// The underlying error code.
        code: String,
        /// The underlying message.
        message: String,
    },
    /// The memfd could not be made.
    #[error("cannot hand key {key:?} over: creating the sealed memfd failed ({reason}); check RLIMIT_MEMLOCK and the memfd_create syscall filter")]
    Memfd {
        /// The key.
        key: String,
        /// The OS error.
        reason: String,
    },
    /// Connecting to or owning the bus name failed.
    #[error("cannot serve org.skrd.KeyRelease1 on the bus {bus}: {reason}; check that dbus is running and that the policy file org.skrd.KeyRelease1.conf is installed")]
    Bus {
        /// The bus address or `system`.
        bus: String,
        /// zbus's explanation.
        reason: String,
    },
    /// The caller's credentials could not be obtained.
    #[error("cannot obtain the credentials of the caller {sender}: {reason}")]
    Credentials {
        /// The unique name.
        sender: String,
        /// Why.
        reason: String,
    },
    /// The daemon is stopping (SIGTERM/SIGINT).
    #[error("skrd is stopping and did not finish this call; call again: the bus starts skrd anew (D-Bus activation) or systemd restarts it")]
    Stopping,
    /// A method that only root may call.
    #[error("only root may call {method} (caller uid {uid})")]
    RootOnly {
        /// The method.
        method: &'static str,
        /// The caller's uid.
        uid: String,
    },
}

impl ErrorCode for DaemonError {
    fn code(&self) -> &'static str {
        match self {
            Self::AccessDenied { .. } => "daemon-access-denied",
            Self::UnknownKey { .. } => "daemon-unknown-key",
            Self::NotReady { .. } => "daemon-not-ready",
            Self::ReleaseFailed { .. } => "daemon-release-failed",
            Self::AttestFailed { .. } => "daemon-attest-failed",
            Self::Memfd { .. } => "daemon-memfd-failed",
            Self::Bus { .. } => "dbus-unavailable",
            Self::Credentials { .. } => "dbus-credentials-unavailable",
            Self::RootOnly { .. } => "daemon-root-only",
            Self::Stopping => "daemon-stopping",
        }
    }
}
