//! What the boot unlock writes to `/run/skrd/state.json` for the running system (DESIGN.md
//! "The long-running daemon": state crosses switch-root as this file; per volume: stage,
//! attempts, timings, last error; never a secret).
//!
//! Interim shape until the daemon's `format::state` lands (then this module only fills it):
//! `{"version": 1, "phase": "initrd", "started_at", "updated_ms", "finished",
//! "attestation": {...}, "keys": {NAME: {...}}, "volumes": {NAME: {...}}}`. Written atomically
//! (temporary file + rename), mode 0644.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;

use super::error::BootError;
use crate::error::Problem;

/// Where one stage (the attestation, one key's release) stands.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StageState {
    /// `pending`, `running`, `done`, `failed`.
    pub state: &'static str,
    /// Attempts started.
    pub attempts: u32,
    /// Milliseconds since skrd started when it finished.
    pub done_ms: Option<u64>,
    /// The last error.
    pub error: Option<Problem>,
}

/// One volume.
#[derive(Debug, Clone, Serialize)]
pub struct VolumeState {
    /// The key it uses.
    pub key: String,
    /// `waiting` (nobody asked yet), `asked`, `answered`, `refused`, `deadline`.
    pub state: &'static str,
    /// Milliseconds since skrd started when systemd-cryptsetup asked.
    pub asked_ms: Option<u64>,
    /// Milliseconds since skrd started when it was answered / refused.
    pub done_ms: Option<u64>,
    /// Why it was refused.
    pub error: Option<Problem>,
}

/// The whole file.
#[derive(Debug, Clone, Serialize)]
pub struct BootState {
    /// Format version.
    pub version: u32,
    /// Always `initrd` here.
    pub phase: &'static str,
    /// Unix seconds when skrd started.
    pub started_at: i64,
    /// Milliseconds since start of the last update.
    pub updated_ms: u64,
    /// All volumes have an outcome or the deadline passed.
    pub finished: bool,
    /// The attestation.
    pub attestation: StageState,
    /// Key releases by key name.
    pub keys: BTreeMap<String, StageState>,
    /// Volumes by name.
    pub volumes: BTreeMap<String, VolumeState>,
}

/// The state, shared by the release driver and the key socket, written on every change.
pub struct StateHandle {
    path: Option<PathBuf>,
    start: Instant,
    inner: Mutex<BootState>,
}

impl StateHandle {
    /// A fresh state for `volumes` (name → key name); `path` = where to write (None: nowhere).
    pub fn new(path: Option<PathBuf>, volumes: &[(String, String)], started_at: i64) -> Self {
        let pending = || StageState {
            state: "pending",
            ..StageState::default()
        };
        let keys = volumes
            .iter()
            .map(|(_, k)| (k.clone(), pending()))
            .collect();
        let volumes = volumes
            .iter()
            .map(|(v, k)| {
                (
                    v.clone(),
                    VolumeState {
                        key: k.clone(),
                        state: "waiting",
                        asked_ms: None,
                        done_ms: None,
                        error: None,
                    },
                )
            })
            .collect();
        Self {
            path,
            start: Instant::now(),
            inner: Mutex::new(BootState {
                version: 1,
                phase: "initrd",
                started_at,
                updated_ms: 0,
                finished: false,
                attestation: pending(),
                keys,
                volumes,
            }),
        }
    }

    /// Milliseconds since start.
    pub fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Applies `f` and writes the file; a write failure is logged, never fatal.
    pub fn update(&self, f: impl FnOnce(&mut BootState, u64)) {
        let now = self.now_ms();
        // The file is written under the lock: concurrent updates share one temporary file.
        let Ok(mut s) = self.inner.lock() else {
            return;
        };
        f(&mut s, now);
        s.updated_ms = now;
        if let Some(path) = &self.path {
            if let Err(e) = write_atomic(path, &s) {
                tracing::warn!(code = "boot-state-unwritable", "{e}");
            }
        }
    }

    /// A copy of the current state.
    pub fn snapshot(&self) -> Option<BootState> {
        self.inner.lock().ok().map(|s| s.clone())
    }
}

/// Writes `state` to `path` through a temporary file in the same directory.
pub fn write_atomic(path: &Path, state: &BootState) -> Result<(), BootError> {
    let err = |source| BootError::StateWrite {
        path: path.to_path_buf(),
        source,
    };
    let text = serde_json::to_vec_pretty(state).map_err(|e| err(std::io::Error::other(e)))?;
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
    }
    let tmp = path.with_extension("json.tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(&tmp)
        .map_err(err)?;
    f.write_all(&text)
        .and_then(|()| f.sync_all())
        .map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}
