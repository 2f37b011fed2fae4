//! The crypttab key socket (DESIGN.md "Boot integration"): systemd-cryptsetup reads the key
//! file `/run/skrd/luks.sock` by connecting to it, and skrd answers with the volume's
//! passphrase.
//!
//! Protocol, as systemd (252) speaks it: the client binds its socket to the abstract name
//! `"\0<hex>/cryptsetup/<volume>"` (parsed by [`crate::format::keysocket_peer`]), connects,
//! immediately shuts down its write side, and reads until EOF; everything it reads is the key
//! file, byte for byte (no newline is stripped). So the server:
//! 1. takes the volume from the peer's address and checks the peer's uid (root by default);
//! 2. reads the connection until EOF (bounded size) while it asks the caller's `answer`
//!    function for that volume's passphrase — one release serves all volumes and each is
//!    answered as soon as its key is ready;
//! 3. writes the passphrase and closes, or, on refusal (`None`), a bad peer or the deadline,
//!    closes WITHOUT data with an orderly shutdown (never a reset, having read to EOF), so
//!    systemd falls back to the passphrase prompt or, with `headless`, fails fast.
//!
//! Connections are served concurrently; nothing here talks to the cloud. [`KeyBoard`] is the
//! usual `answer`: the release driver publishes each key once and every volume using it is
//! answered with its own passphrase (derived from its configured UUID).

pub mod board;
pub mod error;

use std::future::Future;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc::UnboundedSender;

pub use board::{KeyBoard, KeyState};
pub use error::KeySocketError;

use crate::error::{ErrorCode, Problem};
use crate::format::keysocket_peer::volume_from_abstract_name;
use crate::secret::Secret;

/// Default socket path (the crypttab key file).
pub const DEFAULT_SOCKET_PATH: &str = "/run/skrd/luks.sock";
/// Most bytes read from a client before its EOF (systemd-cryptsetup sends none).
pub const MAX_REQUEST_BYTES: usize = 4096;

/// How connections are served.
#[derive(Debug, Clone, Copy)]
pub struct ServeOptions {
    /// Longest time one connection waits for its passphrase before it is closed without data.
    pub deadline: Duration,
    /// The only uid answered (`None`: any). systemd-cryptsetup runs as root.
    pub allowed_uid: Option<u32>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            deadline: Duration::from_secs(300),
            allowed_uid: Some(0),
        }
    }
}

/// What happened to one connection (never carries a secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The passphrase of `volume` was written.
    Answered {
        /// The volume asked for.
        volume: String,
    },
    /// The answer function refused `volume`: closed without data.
    Refused {
        /// The volume asked for.
        volume: String,
    },
    /// No answer within the deadline: closed without data.
    DeadlineExpired {
        /// The volume asked for.
        volume: String,
    },
    /// The peer was refused before any answer was asked for: closed without data.
    PeerRefused {
        /// Why.
        problem: Problem,
    },
    /// The connection failed (the client went away, or a write failed).
    Failed {
        /// The volume, when known.
        volume: Option<String>,
        /// Why.
        problem: Problem,
    },
}

/// The key socket: an `AF_UNIX` stream listener.
pub struct KeySocket {
    listener: UnixListener,
    path: PathBuf,
}

impl KeySocket {
    /// Binds `path` (mode 0600; the parent directory is created with mode 0700 if missing; a
    /// stale socket file left by an earlier run is replaced). Call inside a tokio runtime.
    pub fn bind(path: &Path) -> Result<Self, KeySocketError> {
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() && !dir.exists() {
                std::fs::create_dir_all(dir)
                    .and_then(|()| {
                        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                    })
                    .map_err(|source| KeySocketError::Directory {
                        dir: dir.to_path_buf(),
                        source,
                    })?;
            }
        }
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_socket() => {
                std::fs::remove_file(path).map_err(|source| KeySocketError::Bind {
                    path: path.to_path_buf(),
                    source,
                })?;
            }
            Ok(_) => {
                return Err(KeySocketError::NotASocket {
                    path: path.to_path_buf(),
                })
            }
            Err(_) => {}
        }
        let bind_err = |source| KeySocketError::Bind {
            path: path.to_path_buf(),
            source,
        };
        let listener = UnixListener::bind(path).map_err(bind_err)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(bind_err)?;
        Ok(Self {
            listener,
            path: path.to_path_buf(),
        })
    }

    /// A listener passed in by systemd socket activation (`LISTEN_FDS`).
    pub fn from_std(
        listener: std::os::unix::net::UnixListener,
        path: PathBuf,
    ) -> Result<Self, KeySocketError> {
        let bind_err = |source| KeySocketError::Bind {
            path: path.clone(),
            source,
        };
        listener.set_nonblocking(true).map_err(bind_err)?;
        let listener = UnixListener::from_std(listener).map_err(bind_err)?;
        Ok(Self { listener, path })
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Serves connections until `shutdown` completes. `answer(volume)` resolves to the
    /// passphrase of `volume`, or `None` to refuse it; it is called once per connection and
    /// may wait (for the network, the release). Each outcome is sent to `outcomes`, if given.
    pub async fn serve<F, Fut>(
        self,
        answer: F,
        options: ServeOptions,
        outcomes: Option<UnboundedSender<Outcome>>,
        shutdown: impl Future<Output = ()>,
    ) where
        F: Fn(String) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Option<Secret>> + Send + 'static,
    {
        let answer = Arc::new(answer);
        tokio::pin!(shutdown);
        loop {
            let stream = tokio::select! {
                () = &mut shutdown => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        tracing::warn!(error = %e, "key socket accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let answer = Arc::clone(&answer);
            let outcomes = outcomes.clone();
            tokio::spawn(async move {
                let outcome = handle(stream, |v| answer(v), options).await;
                log_outcome(&outcome);
                if let Some(tx) = outcomes {
                    let _ = tx.send(outcome);
                }
            });
        }
    }
}

fn log_outcome(outcome: &Outcome) {
    match outcome {
        Outcome::Answered { volume } => {
            tracing::info!(volume, "passphrase sent to systemd-cryptsetup")
        }
        Outcome::Refused { volume } => tracing::warn!(
            volume,
            "key request refused; systemd falls back to its passphrase prompt"
        ),
        Outcome::DeadlineExpired { volume } => tracing::warn!(
            volume,
            "no key before the deadline; connection closed without data"
        ),
        Outcome::PeerRefused { problem } => {
            tracing::warn!(code = problem.code, "{}", problem.message)
        }
        Outcome::Failed { volume, problem } => tracing::warn!(
            volume = volume.as_deref().unwrap_or("?"),
            code = problem.code,
            "{}",
            problem.message
        ),
    }
}

/// Reads until EOF (at most [`MAX_REQUEST_BYTES`]).
async fn read_to_eof(stream: &mut UnixStream) -> Result<(), KeySocketError> {
    let mut buf = [0u8; 512];
    let mut total = 0usize;
    loop {
        let n = stream
            .read(&mut buf)
            .await
            .map_err(|source| KeySocketError::Io { source })?;
        if n == 0 {
            return Ok(());
        }
        total = total.saturating_add(n);
        if total > MAX_REQUEST_BYTES {
            return Err(KeySocketError::RequestTooLarge {
                max: MAX_REQUEST_BYTES,
            });
        }
    }
}

/// Closes without data: orderly shutdown of our side, then drain what the client still sends
/// (briefly) so the close is never turned into a reset by unread data.
async fn close_without_data(mut stream: UnixStream) {
    let _ = stream.shutdown().await;
    let _ = tokio::time::timeout(Duration::from_millis(200), async {
        let mut buf = [0u8; 512];
        while let Ok(n) = stream.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

fn peer_volume(stream: &UnixStream, options: ServeOptions) -> Result<String, KeySocketError> {
    if let Some(uid) = options.allowed_uid {
        let cred = stream
            .peer_cred()
            .map_err(|source| KeySocketError::Io { source })?;
        if cred.uid() != uid {
            return Err(KeySocketError::PeerUid {
                found: cred.uid(),
                allowed: uid,
            });
        }
    }
    let addr = stream
        .peer_addr()
        .map_err(|source| KeySocketError::Io { source })?;
    let name = addr
        .as_abstract_name()
        .ok_or(KeySocketError::PeerNotAbstract)?;
    Ok(volume_from_abstract_name(name)?.to_string())
}

/// Serves one connection: see the module docs. `answer` gets the volume name.
pub async fn handle<F, Fut>(mut stream: UnixStream, answer: F, options: ServeOptions) -> Outcome
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = Option<Secret>>,
{
    let volume = match peer_volume(&stream, options) {
        Ok(v) => v,
        Err(e) => {
            close_without_data(stream).await;
            return Outcome::PeerRefused {
                problem: e.problem(),
            };
        }
    };
    let work = async {
        let (read, key) = tokio::join!(read_to_eof(&mut stream), answer(volume.clone()));
        (read, key)
    };
    let (read, key) = match tokio::time::timeout(options.deadline, work).await {
        Ok(done) => done,
        Err(_) => {
            close_without_data(stream).await;
            return Outcome::DeadlineExpired { volume };
        }
    };
    if let Err(e) = read {
        close_without_data(stream).await;
        return Outcome::Failed {
            volume: Some(volume),
            problem: e.problem(),
        };
    }
    let Some(key) = key else {
        close_without_data(stream).await;
        return Outcome::Refused { volume };
    };
    let written = async {
        stream.write_all(key.expose()).await?;
        stream.flush().await?;
        stream.shutdown().await
    }
    .await;
    drop(key);
    match written {
        Ok(()) => Outcome::Answered { volume },
        Err(source) => Outcome::Failed {
            volume: Some(volume),
            problem: KeySocketError::Io { source }.problem(),
        },
    }
}
