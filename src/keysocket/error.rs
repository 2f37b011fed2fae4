//! Errors of the key socket server (`skrd::keysocket`), listed in `docs/errors-keysocket.md`.

use std::path::PathBuf;

use crate::error::ErrorCode;
use crate::format::keysocket_peer::PeerNameError;

/// A key socket failure (binding it, or one connection).
#[derive(Debug, thiserror::Error)]
pub enum KeySocketError {
    /// The socket's directory cannot be created.
    #[error("cannot create the key socket directory {dir}: {source}; check that /run is writable")]
    Directory {
        /// The directory.
        dir: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Something that is not a socket is at the socket path.
    #[error("{path} exists and is not a socket; refusing to replace it: remove it or configure another key socket path")]
    NotASocket {
        /// The path.
        path: PathBuf,
    },
    /// bind/listen failed.
    #[error("cannot listen on the key socket {path}: {source}")]
    Bind {
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The peer runs as another user than allowed.
    #[error(
        "key socket peer runs as uid {found}, only uid {allowed} (systemd-cryptsetup) is answered"
    )]
    PeerUid {
        /// The peer's uid.
        found: u32,
        /// The allowed uid.
        allowed: u32,
    },
    /// The peer's socket has no abstract name.
    #[error("key socket peer has no abstract socket name; only systemd-cryptsetup (crypttab key file = the socket) is answered")]
    PeerNotAbstract,
    /// The peer's abstract name does not name a volume.
    #[error(transparent)]
    PeerName(#[from] PeerNameError),
    /// The client sent more than a key request can be.
    #[error(
        "key socket client sent more than {max} bytes before EOF; systemd-cryptsetup sends none"
    )]
    RequestTooLarge {
        /// The limit.
        max: usize,
    },
    /// Reading or writing the connection failed.
    #[error("key socket connection failed: {source}")]
    Io {
        /// Why.
        source: std::io::Error,
    },
}

impl ErrorCode for KeySocketError {
    fn code(&self) -> &'static str {
        match self {
            Self::Directory { .. } => "keysocket-directory",
            Self::NotASocket { .. } => "keysocket-not-a-socket",
            Self::Bind { .. } => "keysocket-bind-failed",
            Self::PeerUid { .. } => "keysocket-peer-uid",
            Self::PeerNotAbstract => "keysocket-peer-not-abstract",
            Self::PeerName(e) => e.code(),
            Self::RequestTooLarge { .. } => "keysocket-request-too-large",
            Self::Io { .. } => "keysocket-io",
        }
    }
}
