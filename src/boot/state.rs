//! What the boot unlock writes to `/run/skrd/state.json` for the running system (DESIGN.md
//! "The long-running daemon": state crosses switch-root as this file; per volume: stage,
//! attempts, timings, last error; never a secret).
//!
//! The boot keeps its own progress model ([`BootState`]: stages in milliseconds since start) and
//! writes it as the shared document of [`crate::format::state`] (schema 1, writer `initrd`)
//! through [`crate::state_file::write`] (temporary file + fsync + rename, mode 0644), so the
//! daemon takes it over and `skrctl status` reads it after switch-root.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;

use super::error::BootError;
use crate::config::Settings;
use crate::error::Problem;
use crate::format::state::{self as doc, LastError, Stage};

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
    /// The Azure `x-ms-request-id` of the successful call (attest or release).
    pub request_id: Option<String>,
    /// The key version released (keys only).
    pub version: Option<String>,
    /// The attestation token's expiry, Unix seconds (attestation only).
    pub expires_at: Option<u64>,
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

/// What the document needs besides the progress: names the boot does not track itself.
#[derive(Debug, Clone, Default)]
struct DocMeta {
    provider: String,
    source: String,
    uuids: BTreeMap<String, String>,
    urls: BTreeMap<String, String>,
}

/// The state, shared by the release driver and the key socket, written on every change.
pub struct StateHandle {
    path: Option<PathBuf>,
    start: Instant,
    meta: DocMeta,
    inner: Mutex<BootState>,
}

impl StateHandle {
    /// A fresh state for `volumes` (name → key name) of `settings`; `path` = where to write
    /// (None: nowhere).
    pub fn new(
        path: Option<PathBuf>,
        settings: &Settings,
        volumes: &[(String, String)],
        started_at: i64,
    ) -> Self {
        let meta = DocMeta {
            provider: settings
                .attestation
                .as_ref()
                .map(|a| a.provider.to_string())
                .unwrap_or_default(),
            source: settings.evidence.source.as_str().to_string(),
            uuids: settings
                .volumes
                .iter()
                .map(|(n, v)| (n.clone(), v.uuid.to_string()))
                .collect(),
            urls: settings
                .keys
                .iter()
                .map(|(n, k)| (n.clone(), k.url.to_string()))
                .collect(),
        };
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
            meta,
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
            if let Err(e) = write_document(path, &document(&s, &self.meta)) {
                tracing::warn!(code = "boot-state-unwritable", "{e}");
            }
        }
    }

    /// A copy of the current state.
    pub fn snapshot(&self) -> Option<BootState> {
        self.inner.lock().ok().map(|s| s.clone())
    }
}

/// The shared state document of `s` (times in Unix seconds, stages mapped to [`Stage`]).
fn document(s: &BootState, meta: &DocMeta) -> doc::State {
    let started = u64::try_from(s.started_at).unwrap_or(0);
    let at = |ms: u64| started.saturating_add(ms / 1000);
    let error = |e: &Option<Problem>| e.clone().map(LastError::from);
    let mut d = doc::State::new(doc::Writer::Initrd, at(s.updated_ms));
    d.finished_at = s.finished.then(|| at(s.updated_ms));
    d.attestation = Some(doc::AttestationState {
        provider: meta.provider.clone(),
        source: meta.source.clone(),
        last_success: (s.attestation.state == "done")
            .then(|| s.attestation.done_ms.map(at))
            .flatten(),
        token_expiry: s.attestation.expires_at,
        maa_request_id: s.attestation.request_id.clone(),
        last_error: error(&s.attestation.error),
    });
    for (name, k) in &s.keys {
        let url = meta.urls.get(name).cloned().unwrap_or_default();
        let key = d.key_mut(name, &url);
        key.released_at = (k.state == "done").then(|| k.done_ms.map(at)).flatten();
        key.akv_request_id = k.request_id.clone();
        key.version = k.version.clone();
        key.last_error = error(&k.error);
    }
    for (name, v) in &s.volumes {
        let uuid = meta.uuids.get(name).cloned().unwrap_or_default();
        let key = s.keys.get(&v.key);
        let stage = match v.state {
            "answered" => Stage::Unlocked,
            "refused" => Stage::Refused,
            "deadline" => Stage::Failed,
            _ if s.attestation.state != "done" => Stage::Attesting,
            _ if key.is_some_and(|k| k.state == "done") => Stage::Unlocking,
            _ => Stage::Releasing,
        };
        let vol = d.volume_mut(name, &uuid, at(s.updated_ms));
        vol.stage = stage;
        vol.attempts = key.map_or(0, |k| k.attempts).max(s.attestation.attempts);
        if let Some(ms) = v.asked_ms {
            vol.timings_ms.insert("asked".to_string(), ms);
        }
        if let Some(ms) = v.done_ms {
            // "answered" (the key was sent), "refused" or "deadline" (closed without data).
            vol.timings_ms.insert(v.state.to_string(), ms);
        }
        vol.last_error = error(&v.error);
        // The requests that decided this volume: the attestation, and its key's release when
        // it was answered.
        vol.maa_request_id = s.attestation.request_id.clone();
        vol.akv_request_id = if v.state == "answered" {
            key.and_then(|k| k.request_id.clone())
        } else {
            None
        };
    }
    d
}

fn write_document(path: &Path, d: &doc::State) -> Result<(), BootError> {
    crate::state_file::write(path, d).map_err(|e| BootError::StateWrite {
        path: path.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    })
}
