//! I/O edge for `/run/skrd/state.json` (the document is `crate::format::state`): read it, and
//! write it atomically so a reader (skrctl, the daemon after switch-root) never sees half a file:
//! write a temporary file in the same directory, fsync it, rename it over the old one, fsync the
//! directory. The directory is created mode 0755 and the file is mode 0644 (it holds no secret;
//! `skrctl status` reads it unprivileged).

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::ErrorCode;
use crate::format::state::{self, State, StateDocError};

/// The state directory.
pub const STATE_DIR: &str = "/run/skrd";
/// The state file.
pub const STATE_FILE: &str = "/run/skrd/state.json";

/// Why the state file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateFileError {
    /// Reading failed (other than "absent").
    #[error("cannot read the state file {path}: {source}; check its permissions")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The contents were refused.
    #[error("the state file {path} is unusable: {source}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Why.
        source: StateDocError,
    },
    /// Creating the directory, writing, syncing or renaming failed.
    #[error("cannot write the state file {path} ({step}): {source}; check that /run is writable (skrd.service RuntimeDirectory=skrd)")]
    Write {
        /// The file.
        path: PathBuf,
        /// `create directory`, `create temporary file`, `write`, `fsync`, `rename`.
        step: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// The document itself was refused before writing.
    #[error("refusing to write an invalid state document to {path}: {source}")]
    Encode {
        /// The file.
        path: PathBuf,
        /// Why.
        source: StateDocError,
    },
}

impl ErrorCode for StateFileError {
    fn code(&self) -> &'static str {
        match self {
            Self::Read { .. } => "state-file-unreadable",
            Self::Invalid { source, .. } | Self::Encode { source, .. } => source.code(),
            Self::Write { .. } => "state-file-write-failed",
        }
    }
}

/// Reads and parses the state file; `Ok(None)` when it does not exist.
pub fn read(path: &Path) -> Result<Option<State>, StateFileError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(StateFileError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    state::parse(&bytes)
        .map(Some)
        .map_err(|source| StateFileError::Invalid {
            path: path.to_path_buf(),
            source,
        })
}

/// Writes `doc` to `path` atomically (temp + fsync + rename + directory fsync), creating the
/// parent directory with mode 0755 when absent. The file ends up mode 0644.
pub fn write(path: &Path, doc: &State) -> Result<(), StateFileError> {
    let bytes = state::encode(doc).map_err(|source| StateFileError::Encode {
        path: path.to_path_buf(),
        source,
    })?;
    let werr = |step: &'static str| {
        let path = path.to_path_buf();
        move |source| StateFileError::Write { path, step, source }
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&dir)
            .map_err(werr("create directory"))?;
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "state.json".into());
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let result = (|| {
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)
            .map_err(werr("create temporary file"))?;
        // The umask may have cleared bits; the file is world-readable by design.
        f.set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(werr("chmod"))?;
        f.write_all(&bytes).map_err(werr("write"))?;
        f.sync_all().map_err(werr("fsync"))?;
        std::fs::rename(&tmp, path).map_err(werr("rename"))?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result?;
    // The rename is durable once the directory is synced (best effort: tmpfs ignores it).
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::state::{Stage, Writer};

    #[test]
    fn writes_atomically_with_modes_and_reads_back() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("run/skrd/state.json");
        assert!(read(&path).unwrap().is_none());
        let mut doc = State::new(Writer::Initrd, 10);
        doc.volume_mut("data", "0b5d1c2e-8d1f-4b7a-9d0e-5c1f2a3b4c5d", 10)
            .stage = Stage::Unlocked;
        write(&path, &doc).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o644);
        let dmeta = std::fs::metadata(path.parent().unwrap()).unwrap();
        assert_eq!(dmeta.permissions().mode() & 0o7777 & !0o022, 0o755 & !0o022);
        assert_eq!(read(&path).unwrap().unwrap(), doc);
        // Overwrite; no temporary file is left behind.
        doc.writer = Writer::Daemon;
        write(&path, &doc).unwrap();
        assert_eq!(read(&path).unwrap().unwrap().writer, Writer::Daemon);
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("state.json")]);
    }

    #[test]
    fn invalid_contents_are_reported_with_the_doc_code() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("state.json");
        std::fs::write(&path, b"{\"schema_version\": 9}").unwrap();
        let e = read(&path).unwrap_err();
        assert_eq!(e.code(), "state-version");
        let mut doc = State::new(Writer::Daemon, 1);
        doc.volume_mut("x", "not-a-uuid", 1);
        assert_eq!(write(&path, &doc).unwrap_err().code(), "state-uuid-invalid");
    }
}
