//! The volumes of [`Manager`]: the passphrases of volumes left to the daemon (asked for on the
//! key socket by systemd-cryptsetup), their stages after each run, whether they are open
//! (sysfs, [`super::super::activation`]), and what the initramfs's document tells about the
//! others.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::{clip_escaped, lock, now_unix, Manager, Try};
use crate::config::Settings;
use crate::error::{ErrorCode, Problem};
use crate::format::state::{LastError, Stage, State, VolumeState};
use crate::secret::Secret;
use crate::volume::VolumeSpec;

use super::super::error::DaemonError;

impl Manager {
    /// Puts each daemon volume of `volumes` where its key's last outcome leaves it: `pending`
    /// (systemd-cryptsetup asks on the key socket) when the key is cached, else `refused` or
    /// `failed` with the key's error (`count`: as one more attempt).
    pub(super) fn settle_volumes(&self, volumes: &[String], count: bool) {
        let s = self.settings();
        let cache: Vec<String> = lock(&self.cache).keys().cloned().collect();
        let tries = lock(&self.last_try).clone();
        let now = now_unix();
        self.update(|st| {
            for v in &mut st.volumes {
                let Some(key) = volumes
                    .contains(&v.name)
                    .then(|| s.volumes.get(&v.name).map(|c| &c.key))
                    .flatten()
                else {
                    continue;
                };
                if cache.contains(key) {
                    make_pending(v, now);
                } else if let Some(Try {
                    error: Some(e),
                    refused,
                    ..
                }) = tries.get(key)
                {
                    v.stage = if *refused {
                        Stage::Refused
                    } else {
                        Stage::Failed
                    };
                    if count {
                        v.attempts = v.attempts.saturating_add(1);
                    }
                    v.last_error = Some(LastError::from(e.problem()));
                    v.updated_at = now;
                }
            }
        });
    }

    /// In the same state write that records keys `released` as cached: the daemon volumes
    /// of those keys become `pending`, so no reader sees a cached key beside a volume still
    /// `failed` by its previous release.
    pub(super) fn volumes_follow_released(
        st: &mut State,
        s: &Settings,
        released: &[&str],
        now: u64,
    ) {
        for v in &mut st.volumes {
            let key = s
                .volumes
                .get(&v.name)
                .filter(|c| !c.options.initrd)
                .map(|c| c.key.as_str());
            if key.is_some_and(|k| released.contains(&k)) {
                make_pending(v, now);
            }
        }
    }

    /// The passphrase of daemon volume `volume` for systemd-cryptsetup (key socket): waits for
    /// the initial work; when the volume's key is not cached (its release failed, or the
    /// volume came with a reload), releases it now through [`Manager::ensure_keys`] (one run
    /// for every asker); then derives the passphrase. `None` refuses (logged, recorded as a
    /// failed attempt with the reason).
    pub async fn volume_passphrase(&self, volume: &str) -> Option<Secret> {
        let s = self.settings();
        let vs = s.volumes.get(volume).filter(|v| !v.options.initrd);
        let Some(vs) = vs else {
            tracing::warn!(
                volume = %clip_escaped(volume, 64),
                stage = "refused",
                "key socket request for a volume the daemon does not unlock"
            );
            return None;
        };
        let ready = self
            .unless_stopping(async { Ok(self.wait_ready(Duration::from_secs(300)).await) })
            .await;
        if ready.is_err() {
            tracing::info!(
                volume,
                "stopping: key socket request closed without an answer"
            );
            return None;
        }
        let now = now_unix();
        let mut refused = false;
        let mut key = lock(&self.cache).get(&vs.key).cloned();
        if key.is_none() {
            tracing::info!(volume, key = %vs.key, stage = "releasing", "key not cached: releasing it for the key socket request");
            self.update(|st| {
                if let Some(v) = st.volumes.iter_mut().find(|v| v.name == volume) {
                    v.stage = Stage::Releasing;
                    v.updated_at = now;
                }
            });
            let released = self
                .unless_stopping(self.ensure_keys(std::slice::from_ref(&vs.key)))
                .await;
            if released == Err(DaemonError::Stopping) {
                tracing::info!(
                    volume,
                    "stopping: key socket request closed without an answer"
                );
                return None;
            }
            if let Err(e) = released {
                refused = lock(&self.last_try).get(&vs.key).is_some_and(|t| t.refused);
                tracing::debug!(volume, key = %vs.key, error_code = e.code(), "release for the key socket failed");
            }
            key = lock(&self.cache).get(&vs.key).cloned();
        }
        // The request ids of the run behind this answer (or refusal).
        let ids = (
            lock(&self.last_try)
                .get(&vs.key)
                .and_then(|t| t.maa_request_id.clone()),
            key.as_ref().and_then(|k| k.request_id.clone()),
        );
        let result = match (key, VolumeSpec::from_settings(&s, volume)) {
            (Some(k), Ok(spec)) => spec.passphrase(k.material.ikm()).map_err(|e| e.problem()),
            (None, _) => Err(lock(&self.last_try)
                .get(&vs.key)
                .and_then(|t| t.error.as_ref().map(ErrorCode::problem))
                .unwrap_or_else(|| {
                    Problem::new(
                        "daemon-release-failed",
                        format!("key {:?} is not released; see the key's last error", vs.key),
                    )
                })),
            (_, Err(e)) => Err(e.problem()),
        };
        let now = now_unix();
        match result {
            Ok(p) => {
                tracing::info!(volume, key = %vs.key, stage = "unlocking", "passphrase handed to systemd-cryptsetup");
                lock(&self.answered).insert(volume.to_string(), Instant::now());
                self.update(|st| {
                    if let Some(v) = st.volumes.iter_mut().find(|v| v.name == volume) {
                        v.stage = Stage::Unlocking;
                        v.attempts = v.attempts.saturating_add(1);
                        v.last_error = None;
                        v.updated_at = now;
                        (v.maa_request_id, v.akv_request_id) = ids.clone();
                    }
                });
                Some(p)
            }
            Err(p) => {
                let stage = if refused {
                    Stage::Refused
                } else {
                    Stage::Failed
                };
                tracing::warn!(volume, key = %vs.key, stage = stage.as_str(), error_code = %p.code, "{}", p.message);
                self.update(|st| {
                    if let Some(v) = st.volumes.iter_mut().find(|v| v.name == volume) {
                        v.stage = stage;
                        v.attempts = v.attempts.saturating_add(1);
                        v.last_error = Some(p.into());
                        v.updated_at = now;
                        (v.maa_request_id, v.akv_request_id) = ids.clone();
                    }
                });
                None
            }
        }
    }

    /// Marks every configured volume that is open (a LUKS2 mapping with its UUID and name,
    /// seen in sysfs: [`super::activation`]) as `unlocked`; returns the volumes it marked.
    /// A volume is never marked back: closing one later is the operator's business.
    pub fn refresh_volumes(&self) -> Vec<String> {
        let s = self.settings();
        let active = super::super::activation::active_luks2(&self.sysfs_root);
        let open: Vec<String> = s
            .volumes
            .iter()
            .filter(|(n, v)| super::super::activation::is_open(&active, &v.uuid, n))
            .map(|(n, _)| n.clone())
            .collect();
        let newly: Vec<String> = lock(&self.state)
            .volumes
            .iter()
            .filter(|v| open.contains(&v.name) && v.stage != Stage::Unlocked)
            .map(|v| v.name.clone())
            .collect();
        if !newly.is_empty() {
            let now = now_unix();
            let answered = lock(&self.answered).clone();
            self.update(|st| {
                for v in &mut st.volumes {
                    if newly.contains(&v.name) {
                        v.stage = Stage::Unlocked;
                        v.last_error = None;
                        v.updated_at = now;
                        if let Some(t) = answered.get(&v.name) {
                            let ms = u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX);
                            v.timings_ms.insert("unlock".into(), ms);
                        }
                    }
                }
            });
            for v in &newly {
                tracing::info!(volume = %v, stage = "unlocked", "volume is open");
            }
        }
        newly
    }

    /// After `volume`'s passphrase went to systemd-cryptsetup: looks for its mapping every
    /// 100 ms for at most 2 minutes, so the status says `unlocked` as soon as it is (the
    /// periodic check in [`super::run`] covers slower opens).
    pub async fn watch_activation(&self, volume: &str) {
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(120) {
            if self.refresh_volumes().iter().any(|v| v == volume)
                || self
                    .state()
                    .volume(volume)
                    .is_some_and(|v| v.stage == Stage::Unlocked)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tracing::debug!(volume, "no mapping seen within 2 minutes of the answer");
    }
}

/// Taking over the initramfs's document: each volume it decided (any stage but `pending`)
/// keeps the request ids of the initramfs's run (its attestation's, its key's release) in its
/// own members, so the daemon's later attestations and releases do not lose them.
pub fn adopt_initrd_request_ids(st: &mut State, s: &Settings) {
    let maa = st
        .attestation
        .as_ref()
        .and_then(|a| a.maa_request_id.clone());
    let akv: BTreeMap<String, Option<String>> = st
        .keys
        .iter()
        .map(|k| (k.name.clone(), k.akv_request_id.clone()))
        .collect();
    for v in &mut st.volumes {
        if v.stage == Stage::Pending {
            continue;
        }
        if v.maa_request_id.is_none() {
            v.maa_request_id.clone_from(&maa);
        }
        if v.akv_request_id.is_none() {
            v.akv_request_id = s
                .volumes
                .get(&v.name)
                .and_then(|c| akv.get(&c.key).cloned().flatten());
        }
    }
}

/// A daemon volume whose key is cached waits for systemd-cryptsetup's request (`pending`),
/// unless it is already past that.
fn make_pending(v: &mut VolumeState, now: u64) {
    if !matches!(v.stage, Stage::Unlocking | Stage::Unlocked) {
        v.stage = Stage::Pending;
        v.last_error = None;
        v.updated_at = now;
    }
}
