//! The daemon's domain core (no D-Bus here; `dbus.rs` is a thin adapter over it): the current
//! configuration, the state document (`/run/skrd/state.json`, written on every change), the
//! cache of released keys (each in a `Secret`), the runs (attest + release, one at a time:
//! the TPM has one owner), the passphrases of volumes left to the daemon (`options.initrd =
//! false`; systemd-cryptsetup reads them from the key socket, so skrd itself needs no
//! device-mapper privilege),
//! the ACL decisions, and the configuration reload. The runs and the maintenance loop are in
//! [`runs`](self::runs), the volumes in [`volumes`](self::volumes).

use std::collections::{BTreeMap, HashMap};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::attest::collect::Source;
use crate::config::Settings;
use crate::error::{ErrorCode, Problem};
use crate::format::state::{Stage, State, Writer};
use crate::release::ReleasedKey;

mod runs;
mod volumes;

pub use runs::{refresh_after, retry_after};
pub use volumes::adopt_initrd_request_ids;

use super::acl::{self, Caller, Decision};
use super::error::DaemonError;
use super::memfd::sealed_memfd;
use super::notify::Notifier;

/// Seconds since the Unix epoch.
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The keys the daemon releases at start: those of volumes it unlocks itself, and those some
/// local caller may request (non-empty ACL).
pub fn keys_needed(s: &Settings) -> Vec<String> {
    let mut names: Vec<String> = s
        .volumes
        .values()
        .filter(|v| !v.options.initrd)
        .map(|v| v.key.clone())
        .chain(
            s.keys
                .iter()
                .filter(|(_, k)| !k.acl.denies_everyone())
                .map(|(n, _)| n.clone()),
        )
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Opens the configured evidence source (auto: the vTPM when it holds an HCL report, else
/// `/dev/sev-guest`).
pub fn open_source(s: &Settings) -> Result<Source, Problem> {
    crate::attest::open::open_source(s, s.evidence.source).map_err(|e| e.problem())
}

/// See [`Manager::call_guard`].
#[derive(Debug)]
pub struct CallGuard<'a> {
    manager: &'a Manager,
}

impl Drop for CallGuard<'_> {
    fn drop(&mut self) {
        if self.manager.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.manager.idle.notify_waiters();
        }
    }
}

/// Most state documents waiting to be announced (`StateChanged`); see
/// [`Manager::next_changes`].
pub const MAX_PENDING_CHANGES: usize = 256;

/// Documents waiting for `StateChanged`.
#[derive(Debug, Default)]
struct Changes {
    queue: std::collections::VecDeque<String>,
    /// Dropped (the oldest) because the queue was full.
    dropped: u64,
}

/// The last run that tried a key.
#[derive(Debug, Clone)]
struct Try {
    /// Its number (1, 2, ...).
    run: u64,
    /// Why it failed (None: released).
    error: Option<DaemonError>,
    /// Whether a service refused (policy, evidence) rather than an outage or a local failure.
    refused: bool,
    /// The attestation's request id of that run, when it attested.
    maa_request_id: Option<String>,
}

/// The daemon's state and operations.
pub struct Manager {
    config_path: Option<PathBuf>,
    state_path: PathBuf,
    settings: RwLock<Arc<Settings>>,
    state: Mutex<State>,
    cache: Mutex<BTreeMap<String, Arc<ReleasedKey>>>,
    ready: tokio::sync::watch::Sender<bool>,
    /// The current document as JSON (`GetStatus`).
    current: Mutex<String>,
    /// Documents not yet announced (`StateChanged`), oldest first.
    changes: Mutex<Changes>,
    changes_ready: tokio::sync::Notify,
    runs: tokio::sync::Mutex<()>,
    /// Runs started so far (numbers them).
    runs_started: AtomicU64,
    /// Runs finished so far (see [`Manager::ensure_keys`]).
    runs_finished: AtomicU64,
    /// Wakes the maintenance loop.
    kick: tokio::sync::Notify,
    /// Set once SIGTERM/SIGINT came: calls still waiting end with `daemon-stopping`.
    stopping: tokio::sync::watch::Sender<bool>,
    /// D-Bus calls being answered (see [`Manager::call_guard`]).
    in_flight: std::sync::atomic::AtomicUsize,
    idle: tokio::sync::Notify,
    /// Where sysfs is (`/sys`; a directory in tests).
    sysfs_root: PathBuf,
    /// When each daemon volume's passphrase was last handed out (for its `unlock` timing).
    answered: Mutex<HashMap<String, Instant>>,
    /// Per key: the last run that tried it.
    last_try: Mutex<HashMap<String, Try>>,
    notifier: Notifier,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager")
            .field("state_path", &self.state_path)
            .field("cached_keys", &lock(&self.cache).len())
            .finish_non_exhaustive()
    }
}

impl Manager {
    /// A manager for `settings` (loaded from `config_path`), taking over the state document at
    /// `state_path` when the initramfs left one (an unusable one is logged and replaced).
    pub fn new(
        config_path: Option<PathBuf>,
        state_path: PathBuf,
        sysfs_root: PathBuf,
        settings: Settings,
        notifier: Notifier,
    ) -> Arc<Self> {
        let now = now_unix();
        let mut state = match crate::state_file::read(&state_path) {
            Ok(Some(s)) => {
                tracing::info!(path = %state_path.display(), writer = ?s.writer, "took over the state file");
                s
            }
            Ok(None) => State::new(Writer::Daemon, now),
            Err(e) => {
                tracing::warn!(error_code = e.code(), "{e}; starting a new state file");
                State::new(Writer::Daemon, now)
            }
        };
        if state.writer == Writer::Initrd {
            adopt_initrd_request_ids(&mut state, &settings);
        }
        state.writer = Writer::Daemon;
        // The daemon's own initial work starts now (the initramfs had finished its part).
        state.finished_at = None;
        // A document a stopped daemon left: this one runs.
        state.stopped_at = None;
        sync_state(&mut state, &settings, now);
        let (ready, _) = tokio::sync::watch::channel(false);
        let m = Arc::new(Self {
            config_path,
            state_path,
            settings: RwLock::new(Arc::new(settings)),
            state: Mutex::new(state),
            cache: Mutex::new(BTreeMap::new()),
            ready,
            current: Mutex::new(String::new()),
            changes: Mutex::new(Changes::default()),
            changes_ready: tokio::sync::Notify::new(),
            runs: tokio::sync::Mutex::new(()),
            runs_started: AtomicU64::new(0),
            runs_finished: AtomicU64::new(0),
            kick: tokio::sync::Notify::new(),
            stopping: tokio::sync::watch::channel(false).0,
            in_flight: std::sync::atomic::AtomicUsize::new(0),
            idle: tokio::sync::Notify::new(),
            sysfs_root,
            answered: Mutex::new(HashMap::new()),
            last_try: Mutex::new(HashMap::new()),
            notifier,
        });
        // The document as taken over, written once; not a change anybody could have heard of.
        m.update(|_| ());
        *lock(&m.changes) = Changes::default();
        m
    }

    /// The current configuration.
    pub fn settings(&self) -> Arc<Settings> {
        self.settings
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The service manager notifier.
    pub fn notifier(&self) -> &Notifier {
        &self.notifier
    }

    /// The state documents (JSON) written since the last call, oldest first, waiting until
    /// there is one: one per change, for the `StateChanged` signal. For one consumer. When it
    /// falls more than [`MAX_PENDING_CHANGES`] documents behind, the oldest are dropped (each
    /// document is complete, so the consumer still ends with the current one); the second
    /// value counts the documents dropped since the last call.
    pub async fn next_changes(&self) -> (Vec<String>, u64) {
        loop {
            {
                let mut c = lock(&self.changes);
                if !c.queue.is_empty() {
                    let dropped = std::mem::take(&mut c.dropped);
                    return (c.queue.drain(..).collect(), dropped);
                }
            }
            self.changes_ready.notified().await;
        }
    }

    /// Whether the initial work finished.
    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// Waits until the initial work finished, at most `limit`.
    pub async fn wait_ready(&self, limit: Duration) -> bool {
        let mut rx = self.ready.subscribe();
        tokio::time::timeout(limit, rx.wait_for(|r| *r))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Applies `f` to the state; when the document changed, writes the state file and queues
    /// the new document for `StateChanged` (see [`Manager::next_changes`]).
    pub fn update(&self, f: impl FnOnce(&mut State)) {
        let mut st = lock(&self.state);
        f(&mut st);
        st.updated_at = now_unix();
        st.writer = Writer::Daemon;
        let json = crate::format::state::encode(&st)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .unwrap_or_default();
        let mut current = lock(&self.current);
        if *current == json {
            return;
        }
        if let Err(e) = crate::state_file::write(&self.state_path, &st) {
            tracing::warn!(error_code = e.code(), "{e}");
        }
        drop(st);
        current.clone_from(&json);
        drop(current);
        {
            let mut c = lock(&self.changes);
            if c.queue.len() >= MAX_PENDING_CHANGES {
                c.queue.pop_front();
                c.dropped = c.dropped.saturating_add(1);
            }
            c.queue.push_back(json);
        }
        self.changes_ready.notify_one();
    }

    /// The state document as JSON (what `GetStatus` returns).
    pub fn status_json(&self) -> String {
        lock(&self.current).clone()
    }

    /// A copy of the state.
    pub fn state(&self) -> State {
        lock(&self.state).clone()
    }

    /// `(name, url, cached)` of every configured key.
    pub fn list_keys(&self) -> Vec<(String, String, bool)> {
        let s = self.settings();
        let cache = lock(&self.cache);
        s.keys
            .iter()
            .map(|(n, k)| (n.clone(), k.url.to_string(), cache.contains_key(n)))
            .collect()
    }

    fn set_stage(&self, volumes: &[String], stage: Stage) {
        let now = now_unix();
        self.update(|st| {
            for v in &mut st.volumes {
                if volumes.contains(&v.name) {
                    v.stage = stage;
                    v.updated_at = now;
                }
            }
        });
    }

    /// The initial work: release the keys needed, unlock the daemon's volumes, then READY=1.
    pub async fn initial_work(&self) {
        let s = self.settings();
        let names = keys_needed(&s);
        let daemon_volumes: Vec<String> = s
            .volumes
            .iter()
            .filter(|(_, v)| !v.options.initrd)
            .map(|(n, _)| n.clone())
            .collect();
        if s.attestation.is_some() {
            self.set_stage(&daemon_volumes, Stage::Attesting);
            // Every outcome is recorded per key; the volumes follow their key's.
            let _ = self.run_keys(&names).await;
            self.settle_volumes(&daemon_volumes, true);
        }
        self.update(|st| st.finished_at = Some(now_unix()));
        // The start-up's code need not stay pinned in RAM (crate::footprint).
        let bytes = crate::footprint::release_read_only_file_pages();
        tracing::debug!(
            bytes,
            "read-only file mappings unlocked after the initial work"
        );
        self.ready.send_replace(true);
        let status = ready_status(&self.state());
        self.notifier.notify(&format!("READY=1\nSTATUS={status}"));
        tracing::info!(stage = "ready", "initial work done: {status}");
    }

    /// SIGTERM/SIGINT came: from now on calls end with `daemon-stopping` instead of waiting
    /// (for the initial work, a run, the run lock); see [`Manager::unless_stopping`].
    pub fn begin_stop(&self) {
        self.stopping.send_replace(true);
    }

    /// Whether [`Manager::begin_stop`] was called.
    pub fn is_stopping(&self) -> bool {
        *self.stopping.borrow()
    }

    /// Runs `work`, unless or until the daemon is stopping: then `daemon-stopping` at once
    /// (the work is dropped; a run it waited for or made ends with it).
    pub async fn unless_stopping<T>(
        &self,
        work: impl std::future::Future<Output = Result<T, DaemonError>>,
    ) -> Result<T, DaemonError> {
        let mut rx = self.stopping.subscribe();
        tokio::select! {
            r = work => r,
            _ = rx.wait_for(|s| *s) => Err(DaemonError::Stopping),
        }
    }

    /// Counts a D-Bus call being answered until the guard is dropped (so the exit can wait
    /// until every caller has its answer); refuses with `daemon-stopping` once stopping.
    pub fn call_guard(&self) -> Result<CallGuard<'_>, DaemonError> {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let guard = CallGuard { manager: self };
        if self.is_stopping() {
            return Err(DaemonError::Stopping);
        }
        Ok(guard)
    }

    /// Waits until no D-Bus call is being answered.
    pub async fn wait_idle(&self) {
        loop {
            let idle = self.idle.notified();
            if self.in_flight.load(Ordering::SeqCst) == 0 {
                return;
            }
            idle.await;
        }
    }

    /// Clean exit (SIGTERM/SIGINT): every cached key is dropped (zeroized) and the state file
    /// says so (`cached: false` everywhere, `stopped_at`), so nobody reads a stale promise.
    pub fn shutdown(&self) {
        let dropped = {
            let mut cache = lock(&self.cache);
            let n = cache.len();
            cache.clear();
            n
        };
        let now = now_unix();
        self.update(|st| {
            for k in &mut st.keys {
                k.cached = false;
            }
            st.stopped_at = Some(now);
        });
        tracing::info!(
            stage = "stopped",
            "stopping: {dropped} cached key(s) dropped from memory"
        );
    }

    /// `Reattest()`: a fresh attestation (no release).
    pub async fn reattest(&self) -> Result<(), DaemonError> {
        self.run_keys(&[]).await
    }

    /// `Reattest()` over D-Bus: root only; the decision is logged with the caller.
    pub async fn reattest_by(&self, caller: &Caller) -> Result<(), DaemonError> {
        let who = CallerLog::of(caller);
        if caller.uid != Some(0) {
            tracing::warn!(
                method = "Reattest",
                caller_uid = %who.uid,
                caller_pid = %who.pid,
                caller_unit = %who.unit,
                caller_bus_name = %caller.bus_name,
                decision = "deny",
                "Reattest denied: root only"
            );
            return Err(DaemonError::RootOnly {
                method: "Reattest",
                uid: who.uid,
            });
        }
        tracing::info!(
            method = "Reattest",
            caller_uid = %who.uid,
            caller_pid = %who.pid,
            caller_unit = %who.unit,
            caller_bus_name = %caller.bus_name,
            decision = "allow",
            "Reattest allowed"
        );
        self.reattest().await
    }

    /// `ReleaseKey(name)`: the ACL decision (logged), then the key as a sealed memfd, released
    /// now if it is not cached yet.
    pub async fn release(&self, name: &str, caller: &Caller) -> Result<OwnedFd, DaemonError> {
        let s = self.settings();
        let who = CallerLog::of(caller);
        let (uid, pid, unit) = (&who.uid, &who.pid, &who.unit);
        let Some(k) = s.keys.get(name) else {
            // The name is the caller's: logged clipped and escaped (no control characters,
            // no unbounded text in the journal).
            let shown = clip_escaped(name, 64);
            tracing::warn!(key = %shown, caller_uid = %uid, caller_pid = %pid, caller_unit = %unit, caller_bus_name = %caller.bus_name, decision = "unknown-key", "ReleaseKey of an unknown key");
            return Err(DaemonError::UnknownKey {
                key: name.chars().take(64).collect(),
                configured: s.keys.keys().cloned().collect::<Vec<_>>().join(", "),
            });
        };
        match acl::decide(&k.acl, caller, &acl::resolve_user, &acl::resolve_group) {
            Decision::Allow(why) => {
                tracing::info!(key = name, caller_uid = %uid, caller_pid = %pid, caller_unit = %unit, caller_bus_name = %caller.bus_name, decision = "allow", rule = %why, "ReleaseKey allowed");
            }
            Decision::Deny => {
                tracing::warn!(key = name, caller_uid = %uid, caller_pid = %pid, caller_unit = %unit, caller_bus_name = %caller.bus_name, decision = "deny", "ReleaseKey denied");
                return Err(DaemonError::AccessDenied {
                    key: name.to_string(),
                    uid: who.uid,
                    pid: who.pid,
                    unit: who.unit,
                });
            }
        }
        if !self.is_ready() && !self.wait_ready(Duration::from_secs(20)).await {
            return Err(DaemonError::NotReady {
                stage: "initial attestation".into(),
            });
        }
        let cached = lock(&self.cache).get(name).cloned();
        let key = match cached {
            Some(k) => k,
            None => {
                self.ensure_keys(&[name.to_string()]).await?;
                lock(&self.cache)
                    .get(name)
                    .cloned()
                    .ok_or_else(|| DaemonError::ReleaseFailed {
                        key: name.to_string(),
                        code: "internal-task-failed".into(),
                        message: "the run finished without the key".into(),
                    })?
            }
        };
        sealed_memfd(&format!("skrd-key-{name}"), key.plaintext.expose()).map_err(|e| {
            DaemonError::Memfd {
                key: name.to_string(),
                reason: e.to_string(),
            }
        })
    }

    /// Reloads the configuration (SIGHUP). An invalid configuration is refused and the old one
    /// kept. Cached keys whose configuration disappeared or changed are dropped.
    pub fn reload(&self) -> Result<(), Problem> {
        let new = crate::config::load(self.config_path.as_deref()).map_err(|e| e.problem())?;
        {
            let mut cache = lock(&self.cache);
            cache.retain(|n, k| {
                new.keys
                    .get(n)
                    .is_some_and(|ks| k.name == *n && self.settings().keys.get(n) == Some(ks))
            });
        }
        let now = now_unix();
        let cached: Vec<String> = lock(&self.cache).keys().cloned().collect();
        self.update(|st| {
            sync_state(st, &new, now);
            for k in &mut st.keys {
                k.cached = cached.contains(&k.name);
            }
        });
        *self
            .settings
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(new);
        Ok(())
    }
}

/// A caller as its log fields show it (`unknown`/`none` for what the bus did not say).
struct CallerLog {
    uid: String,
    pid: String,
    unit: String,
}

impl CallerLog {
    fn of(c: &Caller) -> Self {
        Self {
            uid: c.uid.map_or_else(|| "unknown".into(), |u| u.to_string()),
            pid: c.pid.map_or_else(|| "unknown".into(), |p| p.to_string()),
            unit: c.unit.clone().unwrap_or_else(|| "none".into()),
        }
    }
}

/// At most `max` characters of `text`, control characters and quotes escaped (Rust's
/// `escape_debug`), with `...` when clipped: for logging caller-supplied names.
pub fn clip_escaped(text: &str, max: usize) -> String {
    let mut out: String = text
        .chars()
        .take(max)
        .flat_map(char::escape_debug)
        .collect();
    if text.chars().nth(max).is_some() {
        out.push_str("...");
    }
    out
}

/// The `STATUS=` text sent with `READY=1`: what the initial work achieved or, when something
/// failed, what failed (with its code) and that the daemon retries, so a failure is never
/// reported as a plain "ready".
pub fn ready_status(st: &State) -> String {
    let cached = st.keys.iter().filter(|k| k.cached).count();
    let mut failures: Vec<String> = Vec::new();
    if let Some(e) = st.attestation.as_ref().and_then(|a| a.last_error.as_ref()) {
        failures.push(format!("attestation failed ({})", e.code));
    }
    for k in &st.keys {
        if let Some(e) = &k.last_error {
            failures.push(format!("key {} not released ({})", k.name, e.code));
        }
    }
    if failures.is_empty() {
        format!(
            "ready: {cached} of {} key(s) cached, {} volume(s) configured",
            st.keys.len(),
            st.volumes.len()
        )
    } else {
        format!(
            "ready with failures: {}; retrying with back-off (skrctl status)",
            failures.join(", ")
        )
    }
}

/// Lists every configured volume and key in `st` (dropping entries no longer configured).
fn sync_state(st: &mut State, s: &Settings, now: u64) {
    st.volumes.retain(|v| s.volumes.contains_key(&v.name));
    for (name, v) in &s.volumes {
        st.volume_mut(name, &v.uuid.hyphenated().to_string(), now);
    }
    st.keys.retain(|k| s.keys.contains_key(&k.name));
    for (name, k) in &s.keys {
        let url = k.url.to_string();
        let entry = st.key_mut(name, &url);
        entry.url = url;
        // Material is never carried over from the initramfs.
        entry.cached = false;
    }
}

#[cfg(test)]
mod tests {
    use super::runs::jitter;
    use super::*;
    use crate::format::state::AttestationState;
    use crate::format::state::LastError;

    fn doc() -> State {
        let mut st = State::new(Writer::Daemon, 1);
        st.key_mut("disk", "https://v.example/keys/disk").cached = true;
        st.key_mut("logs", "https://v.example/keys/logs");
        st.volume_mut("data", "0b5d1c2e-8d1f-4b7a-9d0e-5c1f2a3b4c5d", 1);
        st
    }

    /// A manager over an empty configuration, its files in `dir`.
    fn bare_manager(dir: &std::path::Path) -> Arc<Manager> {
        let config = dir.join("skrd.toml");
        std::fs::write(&config, "").unwrap();
        let settings = crate::config::load_from(&config, None).unwrap();
        Manager::new(
            Some(config),
            dir.join("state.json"),
            dir.join("sys"),
            settings,
            Notifier::from_env(),
        )
    }

    fn attempts(json: &str) -> u32 {
        crate::format::state::parse(json.as_bytes())
            .unwrap()
            .volumes[0]
            .attempts
    }

    #[tokio::test]
    async fn one_change_one_document_and_the_oldest_go_first_under_overflow() {
        let dir = tempfile::tempdir().unwrap();
        let m = bare_manager(dir.path());
        let uuid = "0b5d1c2e-8d1f-4b7a-9d0e-5c1f2a3b4c5d";
        for i in 1..=10 {
            m.update(|st| st.volume_mut("data", uuid, 0).attempts = i);
        }
        // No change, no document.
        m.update(|_| ());
        let (docs, dropped) = m.next_changes().await;
        assert_eq!(dropped, 0);
        assert_eq!(
            docs.iter().map(|d| attempts(d)).collect::<Vec<_>>(),
            (1..=10).collect::<Vec<_>>()
        );
        let n = u32::try_from(MAX_PENDING_CHANGES).unwrap() + 44;
        for i in 11..=10 + n {
            m.update(|st| st.volume_mut("data", uuid, 0).attempts = i);
        }
        let (docs, dropped) = m.next_changes().await;
        assert_eq!(dropped, 44);
        assert_eq!(docs.len(), MAX_PENDING_CHANGES);
        assert_eq!(attempts(&docs[0]), 10 + 44 + 1);
        assert_eq!(attempts(docs.last().unwrap()), 10 + n);
        assert_eq!(*docs.last().unwrap(), m.status_json());
    }

    #[test]
    fn retries_back_off_from_5_s_to_5_min() {
        let secs = |n| retry_after(n, 1.0).as_secs();
        assert_eq!([secs(1), secs(2), secs(3), secs(4)], [5, 10, 20, 40]);
        assert_eq!(secs(7), 300);
        assert_eq!(secs(u32::MAX), 300);
        assert_eq!(retry_after(1, 0.9), Duration::from_millis(4500));
        assert_eq!(retry_after(1, 7.0), Duration::from_millis(5500));
        for _ in 0..100 {
            assert!((0.9..=1.1).contains(&jitter()));
        }
    }

    #[test]
    fn caller_supplied_names_are_clipped_and_escaped() {
        assert_eq!(clip_escaped("disk", 64), "disk");
        assert_eq!(clip_escaped("a\u{1b}[31mb\n", 64), "a\\u{1b}[31mb\\n");
        let long = "x".repeat(500);
        assert_eq!(clip_escaped(&long, 64), format!("{}...", "x".repeat(64)));
        assert!(!clip_escaped("\u{7}\r", 64).chars().any(char::is_control));
    }

    #[test]
    fn ready_status_names_every_failure() {
        let mut st = doc();
        assert_eq!(
            ready_status(&st),
            "ready: 1 of 2 key(s) cached, 1 volume(s) configured"
        );
        st.key_mut("logs", "").last_error = Some(LastError {
            code: "release-forbidden".into(),
            message: "policy not met".into(),
        });
        let text = ready_status(&st);
        assert!(text.starts_with("ready with failures: "), "{text}");
        assert!(
            text.contains("key logs not released (release-forbidden)"),
            "{text}"
        );
        st.attestation = Some(AttestationState {
            provider: "https://maa.example".into(),
            source: "vtpm".into(),
            last_success: None,
            token_expiry: None,
            maa_request_id: None,
            last_error: Some(LastError {
                code: "maa-rejected".into(),
                message: "no".into(),
            }),
        });
        assert!(ready_status(&st).contains("attestation failed (maa-rejected)"));
    }
}
