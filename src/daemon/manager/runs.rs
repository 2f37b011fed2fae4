//! The runs of [`Manager`] (attest, then release each key: one at a time, the TPM has one
//! owner), how callers share them ([`Manager::ensure_keys`]), and the maintenance loop that
//! renews the attestation and retries missing keys with back-off ([`Manager::maintain`]).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{keys_needed, lock, now_unix, open_source, Manager, Try};
use crate::attest::report::RunReport;
use crate::error::{ErrorCode, Problem};
use crate::format::state::{AttestationState, LastError};
use crate::net::Deadline;
use crate::release::{attest_for, release_key, roots::load_roots, KeyRequest};

use super::super::error::DaemonError;

impl Manager {
    /// One run (attest, then release `names`; none: attestation only), after the runs before
    /// it (one at a time: the TPM has one owner).
    pub async fn run_keys(&self, names: &[String]) -> Result<(), DaemonError> {
        let _one = self.runs.lock().await;
        self.run_locked(names).await
    }

    /// Makes sure every key of `names` is cached: returns at once when they are; otherwise
    /// waits for the run lock, looks again (a run that finished meanwhile may have released
    /// them), and runs only for what is still missing. Callers that arrive together therefore
    /// share one attestation and one release per key; when a run that finished after they
    /// arrived tried their key and failed, they get its error instead of starting a run each
    /// (the next caller, or the retry timer, tries again).
    pub async fn ensure_keys(&self, names: &[String]) -> Result<(), DaemonError> {
        if self.missing(names).is_empty() {
            return Ok(());
        }
        let ticket = self.runs_finished.load(Ordering::SeqCst);
        let _one = self.runs.lock().await;
        let missing = self.missing(names);
        if missing.is_empty() {
            return Ok(());
        }
        {
            let tries = lock(&self.last_try);
            for n in &missing {
                if let Some(Try {
                    run,
                    error: Some(e),
                    ..
                }) = tries.get(n)
                {
                    if *run > ticket {
                        return Err(e.clone());
                    }
                }
            }
        }
        self.run_locked(&missing).await
    }

    /// The names of `names` that are not cached.
    pub(super) fn missing(&self, names: &[String]) -> Vec<String> {
        let cache = lock(&self.cache);
        names
            .iter()
            .filter(|n| !cache.contains_key(*n))
            .cloned()
            .collect()
    }

    /// A run; the caller holds the run lock. The attestation first; then every key of
    /// `names` is released side by side, each with its own outcome: a key that fails leaves
    /// the others cached, and its error is recorded on the key (the attestation's on the
    /// attestation). Returns the attestation's error, else the first key's error in order.
    pub(super) async fn run_locked(&self, names: &[String]) -> Result<(), DaemonError> {
        let run = self.runs_started.fetch_add(1, Ordering::SeqCst) + 1;
        let result = self.run_numbered(run, names).await;
        // Runs are serial (the caller holds the lock): they finish in the order they start.
        self.runs_finished.store(run, Ordering::SeqCst);
        result
    }

    pub(super) async fn run_numbered(&self, run: u64, names: &[String]) -> Result<(), DaemonError> {
        let s = self.settings();
        let requests: Vec<KeyRequest> = names
            .iter()
            .filter_map(|n| s.keys.get(n).map(|k| KeyRequest::from_settings(n, k)))
            .collect();
        let provider = s
            .attestation
            .as_ref()
            .map_or_else(String::new, |a| a.provider.to_string());
        self.notifier.status("attesting");
        tracing::info!(stage = "attesting", keys = ?names, "attesting");
        let t = Instant::now();
        let attested = async {
            let local = |p: Problem| (false, p);
            let source = open_source(&s).map_err(local)?;
            let source_name = source.name();
            self.update(|st| {
                let a = st.attestation.get_or_insert_with(|| AttestationState {
                    provider: provider.clone(),
                    source: source_name.to_string(),
                    last_success: None,
                    token_expiry: None,
                    maa_request_id: None,
                    last_error: None,
                });
                a.provider = provider.clone();
                a.source = source_name.to_string();
            });
            let services = crate::attest::services::Services::from_settings(&s)
                .map_err(|e| local(e.problem()))?;
            let roots = if requests.is_empty() {
                Vec::new()
            } else {
                load_roots(&services.ca_files).map_err(|e| local(e.problem()))?
            };
            let deadline = Deadline::after(s.boot.deadline.max(Duration::from_secs(1)));
            let mut report = RunReport::start(source_name);
            let att = attest_for(&services, source, &requests, &deadline, &mut report)
                .await
                .map_err(|e| (e.is_refusal(), e.problem()))?;
            Ok::<_, (bool, Problem)>((services, roots, deadline, att, source_name))
        }
        .await;
        let now = now_unix();
        let (services, roots, deadline, att, source_name) = match attested {
            Ok(v) => v,
            Err((refused, p)) => {
                tracing::warn!(stage = "attesting", error_code = %p.code, keys = ?names, "{}", p.message);
                self.update(|st| {
                    let last = LastError::from(p.clone());
                    if let Some(a) = &mut st.attestation {
                        a.last_error = Some(last);
                    } else {
                        st.attestation = Some(AttestationState {
                            provider: if provider.is_empty() {
                                "none".into()
                            } else {
                                provider.clone()
                            },
                            source: s.evidence.source.as_str().to_string(),
                            last_success: None,
                            token_expiry: None,
                            maa_request_id: None,
                            last_error: Some(last),
                        });
                    }
                });
                self.notifier.status(&format!("failed: {}", p.code));
                let e = DaemonError::AttestFailed {
                    code: p.code,
                    message: p.message,
                };
                let mut tries = lock(&self.last_try);
                for n in names {
                    let t = Try {
                        run,
                        error: Some(e.clone()),
                        refused,
                        maa_request_id: None,
                    };
                    tries.insert(n.clone(), t);
                }
                return Err(e);
            }
        };
        let expiry = u64::try_from(att.expires_at).ok();
        let maa_request_id = att.request_id.clone();
        tracing::info!(
            stage = "attested",
            maa_request_id = maa_request_id.as_deref().unwrap_or(""),
            token_expiry = expiry.unwrap_or(0),
            "attested"
        );
        self.update(|st| {
            if let Some(a) = &mut st.attestation {
                a.last_success = Some(now);
                a.token_expiry = expiry;
                a.maa_request_id = maa_request_id.clone();
                a.last_error = None;
            }
        });
        let outcomes = futures_util::future::join_all(requests.iter().map(|k| {
            let (services, att, roots, deadline) = (&services, &att, &roots, &deadline);
            async move {
                let mut branch = RunReport::start(source_name);
                release_key(services, att, k, roots, deadline, &mut branch)
                    .await
                    .map_err(|e| (e.is_refusal(), e.problem()))
            }
        }))
        .await;
        let ms = u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX);
        let now = now_unix();
        let mut first_error = None;
        let mut released = Vec::new();
        let mut failed = Vec::new();
        {
            let mut cache = lock(&self.cache);
            let mut tries = lock(&self.last_try);
            for (req, outcome) in requests.iter().zip(outcomes) {
                match outcome {
                    Ok(k) => {
                        let version = k.version().unwrap_or_default().to_string();
                        let id = k.request_id.clone();
                        cache.insert(req.name.clone(), Arc::new(k));
                        let t = Try {
                            run,
                            error: None,
                            refused: false,
                            maa_request_id: maa_request_id.clone(),
                        };
                        tries.insert(req.name.clone(), t);
                        released.push((req.name.clone(), version, id));
                    }
                    Err((refused, p)) => {
                        let e = DaemonError::ReleaseFailed {
                            key: req.name.clone(),
                            code: p.code.clone(),
                            message: p.message.clone(),
                        };
                        let t = Try {
                            run,
                            error: Some(e.clone()),
                            refused,
                            maa_request_id: maa_request_id.clone(),
                        };
                        tries.insert(req.name.clone(), t);
                        first_error.get_or_insert(e);
                        failed.push((req.name.clone(), refused, p));
                    }
                }
            }
        }
        for (name, _, id) in &released {
            tracing::info!(
                key = %name,
                stage = "released",
                elapsed_ms = ms,
                maa_request_id = maa_request_id.as_deref().unwrap_or(""),
                akv_request_id = id.as_deref().unwrap_or(""),
                "key released and cached"
            );
        }
        for (name, _, p) in &failed {
            tracing::warn!(key = %name, stage = "releasing", error_code = %p.code, "{}", p.message);
        }
        self.update(|st| {
            for (name, version, id) in &released {
                if let Some(url) = s.keys.get(name).map(|k| k.url.to_string()) {
                    let k = st.key_mut(name, &url);
                    k.cached = true;
                    k.version = (!version.is_empty()).then(|| version.clone());
                    k.released_at = Some(now);
                    k.akv_request_id = id.clone();
                    k.last_error = None;
                }
            }
            let names: Vec<&str> = released.iter().map(|(n, _, _)| n.as_str()).collect();
            Self::volumes_follow_released(st, &s, &names, now);
            for (name, _, p) in &failed {
                if let Some(url) = s.keys.get(name).map(|k| k.url.to_string()) {
                    st.key_mut(name, &url).last_error = Some(LastError::from(p.clone()));
                }
            }
        });
        match first_error {
            None => {
                self.notifier.status("attested; keys cached");
                Ok(())
            }
            Some(e) => {
                self.notifier.status(&format!("failed: {}", e.code()));
                Err(e)
            }
        }
    }

    /// The keys this configuration needs ([`keys_needed`]) that are not cached.
    pub fn missing_needed(&self) -> Vec<String> {
        self.missing(&keys_needed(&self.settings()))
    }

    /// Asks the maintenance loop ([`Manager::maintain`]) to run now (after a reload that
    /// added keys to release).
    pub fn kick(&self) {
        self.kick.notify_one();
    }

    /// The maintenance loop, after the initial work, until `stop`: renews the attestation
    /// before its token expires ([`refresh_after`]) and releases the needed keys that are not
    /// cached (a failed first release, keys added by a reload), each run with the missing ones;
    /// after a failed run it tries again with back-off ([`retry_after`]: 5 s doubling to
    /// 5 min, +-10 % jitter). The daemon's volumes follow their key's outcome.
    pub async fn maintain(&self, mut stop: tokio::sync::watch::Receiver<bool>) {
        // Keys the initial work could not release: their first retry comes after back-off.
        let mut failures = u32::from(!self.missing_needed().is_empty());
        loop {
            let s = self.settings();
            let delay = if s.attestation.is_none() {
                Duration::from_secs(3600)
            } else if failures > 0 {
                retry_after(failures, jitter())
            } else if !self.missing_needed().is_empty() {
                Duration::ZERO
            } else {
                self.next_refresh()
            };
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                () = self.kick.notified() => {}
                () = tokio::time::sleep(delay) => {}
            }
            if self.settings().attestation.is_none() {
                continue;
            }
            let missing = self.missing_needed();
            let result = if missing.is_empty() {
                self.reattest().await
            } else {
                self.ensure_keys(&missing).await
            };
            let daemon_volumes: Vec<String> = self
                .settings()
                .volumes
                .iter()
                .filter(|(_, v)| !v.options.initrd)
                .map(|(n, _)| n.clone())
                .collect();
            self.settle_volumes(&daemon_volumes, false);
            match result {
                Ok(()) => failures = 0,
                Err(e) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(
                        error_code = e.code(),
                        retry_in_s = retry_after(failures, 1.0).as_secs(),
                        "{}: {e}",
                        if missing.is_empty() {
                            "attestation refresh failed"
                        } else {
                            "releasing the keys still needed failed"
                        }
                    );
                }
            }
        }
    }

    /// When the current attestation should be renewed: at 80 % of its remaining lifetime
    /// (at least 5 s from now, at most an hour). The managed-identity tokens are fetched anew
    /// by every run, so they never outlive the attestation they serve.
    pub fn next_refresh(&self) -> Duration {
        let expiry = lock(&self.state)
            .attestation
            .as_ref()
            .and_then(|a| a.token_expiry);
        refresh_after(expiry, now_unix())
    }
}

/// How long to wait before the next try after `failures` failed runs in a row: 5 s, doubling,
/// at most 5 min, times `jitter` (0.9 ..= 1.1, so VMs that failed together do not retry
/// together).
pub fn retry_after(failures: u32, jitter: f64) -> Duration {
    let base = 5u64.saturating_mul(1u64 << failures.saturating_sub(1).min(16));
    Duration::from_secs(base.min(300)).mul_f64(jitter.clamp(0.9, 1.1))
}

/// A factor in 0.9 ..= 1.1 from the OS's random source.
pub(super) fn jitter() -> f64 {
    use rand_core::RngCore;
    0.9 + f64::from(rand_core::OsRng.next_u32() % 2001) / 10_000.0
}

/// See [`Manager::next_refresh`]: 80 % of what is left of the token's lifetime at `now`,
/// within 5 s .. 1 h (1 h without a token).
pub fn refresh_after(expiry: Option<u64>, now: u64) -> Duration {
    let millis = expiry.map_or(3_600_000, |e| e.saturating_sub(now).saturating_mul(800));
    Duration::from_millis(millis.clamp(5_000, 3_600_000))
}
