//! The boot unlock in the initramfs (DESIGN.md "Boot integration", "What happens on a boot"):
//! entry point `skrd --initrd`, started by `skrd-initrd.service` (socket-activated by
//! `skrd-initrd.socket`, and pulled in by `cryptsetup-pre.target` so it starts before anyone
//! asks).
//!
//! One run:
//! 1. takes the key socket from systemd (`LISTEN_FDS`, [`activation`]) or binds
//!    `/run/skrd/luks.sock` itself;
//! 2. at once (not waiting for the first peer) attests ONCE and releases each distinct key of
//!    the initrd volumes once ([`drive`]); an outage is retried (the HTTP layer's retries, then
//!    whole attempts with back-off) until the deadline, a refusal (evidence refused, release
//!    policy not met) fails the keys concerned at once;
//! 3. answers every systemd-cryptsetup peer `\0<hex>/cryptsetup/<volume>` as soon as that
//!    volume's key is ready, with the passphrase derived from the released key and the
//!    CONFIGURED LUKS UUID ([`crate::keysocket::KeyBoard`]); a volume not in the configuration,
//!    a refused key or the deadline (`boot.deadline`, or the volume's `timeout`) gets the
//!    connection closed without data, so systemd falls back to its passphrase prompt (or fails
//!    with `headless`);
//! 4. prints progress lines on stderr (the unit sends them to the journal and the console)
//!    while it waits for the network or the cloud;
//! 5. keeps `/run/skrd/state.json` up to date ([`state`], never a secret), and exits when every
//!    configured initrd volume has its outcome or the deadline passed: status 0 when all were
//!    answered, 1 otherwise, 2 when it could not run at all.

pub mod activation;
pub mod error;
pub mod route;
pub mod source;
pub mod state;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, watch};

use crate::attest::collect::Source;
use crate::attest::error::FlowError;
use crate::attest::flow::{prepare, Attestation, Evidence, Prepared};
use crate::attest::report::RunReport;
use crate::attest::services::Services;
use crate::config::Settings;
use crate::error::{ErrorCode, Problem};
use crate::keysocket::{KeyBoard, KeySocket, Outcome, ServeOptions, DEFAULT_SOCKET_PATH};
use crate::net::Deadline;
use crate::release::{release_key, roots::load_roots, KeyRequest};
use crate::secret::Secret;

pub use error::BootError;
use state::StateHandle;

/// Default state file.
pub const DEFAULT_STATE_PATH: &str = "/run/skrd/state.json";
/// When the first progress line is printed if something is still pending.
pub const PROGRESS_FIRST: Duration = Duration::from_secs(2);
/// Seconds between two progress lines while something is still pending.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// Where the boot unlock listens and writes.
#[derive(Debug, Clone)]
pub struct BootOptions {
    /// The key socket path (bound when not socket-activated).
    pub socket_path: PathBuf,
    /// The state file (`None`: not written).
    pub state_path: Option<PathBuf>,
    /// The only peer uid answered (`None`: any; systemd-cryptsetup runs as root).
    pub allowed_uid: Option<u32>,
}

impl Default for BootOptions {
    fn default() -> Self {
        Self {
            socket_path: PathBuf::from(DEFAULT_SOCKET_PATH),
            state_path: Some(PathBuf::from(DEFAULT_STATE_PATH)),
            allowed_uid: Some(0),
        }
    }
}

/// How the run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootSummary {
    /// Volumes whose passphrase was written to systemd-cryptsetup.
    pub answered: Vec<String>,
    /// Volumes refused or past their deadline (with why).
    pub failed: Vec<(String, Problem)>,
    /// Configured initrd volumes nobody asked for before the deadline.
    pub not_asked: Vec<String>,
}

impl BootSummary {
    /// The process exit status: 0 all answered, 1 otherwise.
    pub fn exit_status(&self) -> u8 {
        u8::from(!(self.failed.is_empty() && self.not_asked.is_empty()))
    }
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A progress line on stderr (→ journal → console through the unit's StandardError=).
fn say(line: &str) {
    eprintln!("skrd: {line}");
}

fn init_logging(settings: &Settings) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SKRD_LOG").unwrap_or_else(|_| {
        // tss-esapi logs every context close at info: keep the console for skrd's lines.
        tracing_subscriber::EnvFilter::new(format!(
            "{},tss_esapi=warn",
            settings.log.level.as_str()
        ))
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(false)
        .without_time()
        .try_init();
}

/// `skrd --initrd`: the whole boot unlock with the configured evidence source; returns the
/// process exit status (0 all answered, 1 some not, 2 could not run).
pub fn main(settings: Settings, options: BootOptions) -> u8 {
    init_logging(&settings);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(source) => {
            say(&BootError::Runtime { source }.to_string());
            return 2;
        }
    };
    let socket = rt.block_on(async {
        match activation::listener_from_env()? {
            Some(l) => Ok(KeySocket::from_std(l, options.socket_path.clone())?),
            None => Ok::<_, BootError>(KeySocket::bind(&options.socket_path)?),
        }
    });
    let socket = match socket {
        Ok(s) => s,
        Err(e) => {
            say(&format!("{e} [{}]", e.code()));
            return 2;
        }
    };
    let s = settings.clone();
    match rt.block_on(run(
        settings,
        socket,
        &options,
        Arc::new(move || source::open_source(&s)),
    )) {
        Ok(summary) => summary.exit_status(),
        Err(e) => {
            say(&format!("{e} [{}]", e.code()));
            2
        }
    }
}

/// Opens a fresh evidence source for each attestation attempt.
pub type SourceFn = Arc<dyn Fn() -> Result<Source, BootError> + Send + Sync>;

/// The boot unlock on `socket` (see the module docs). Runs until every initrd volume has its
/// outcome or the deadline passed.
pub async fn run(
    settings: Settings,
    socket: KeySocket,
    options: &BootOptions,
    open_source: SourceFn,
) -> Result<BootSummary, BootError> {
    let board = Arc::new(KeyBoard::new(&settings, true));
    let volumes = board.volumes();
    if volumes.is_empty() {
        return Err(BootError::NoInitrdVolumes);
    }
    let vol_keys: Vec<(String, String)> = volumes
        .iter()
        .filter_map(|v| settings.volumes.get(v).map(|s| (v.clone(), s.key.clone())))
        .collect();
    let state = Arc::new(StateHandle::new(
        options.state_path.clone(),
        &settings,
        &vol_keys,
        now_unix(),
    ));
    state.update(|_, _| {});
    let start = Instant::now();
    let boot_deadline = settings.boot.deadline.max(Duration::from_secs(1));
    let vol_deadline = |v: &str| {
        settings
            .volumes
            .get(v)
            .and_then(|s| s.options.timeout)
            .unwrap_or(boot_deadline)
    };
    let overall = volumes
        .iter()
        .map(|v| vol_deadline(v))
        .max()
        .unwrap_or(boot_deadline)
        .max(boot_deadline);
    say(&format!(
        "boot unlock: {} volume(s) [{}], {} key(s), deadline {} s, socket {}",
        volumes.len(),
        volumes.join(", "),
        board.keys_needed().len(),
        overall.as_secs(),
        socket.path().display()
    ));

    // The releases start now, not at the first peer.
    let (stage_tx, stage_rx) = watch::channel(String::from("starting"));
    let driver = {
        let board = Arc::clone(&board);
        let state = Arc::clone(&state);
        let settings = settings.clone();
        let deadline = Deadline::after(overall);
        tokio::spawn(async move {
            drive(&settings, &board, &state, &deadline, &stage_tx, open_source).await;
        })
    };

    // The key socket: each peer waits for its volume's key, bounded by its own deadline.
    let (out_tx, mut out_rx) = mpsc::unbounded_channel();
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let answer = {
        let board = Arc::clone(&board);
        let state = Arc::clone(&state);
        let limits: std::collections::BTreeMap<String, Duration> = volumes
            .iter()
            .map(|v| (v.clone(), vol_deadline(v)))
            .collect();
        move |volume: String| {
            let board = Arc::clone(&board);
            let state = Arc::clone(&state);
            let limit = limits.get(&volume).copied();
            async move { answer_volume(&board, &state, &volume, limit, start).await }
        }
    };
    let server = tokio::spawn(socket.serve(
        answer,
        ServeOptions {
            deadline: overall,
            allowed_uid: options.allowed_uid,
        },
        Some(out_tx),
        async move {
            let _ = stop_rx.changed().await;
        },
    ));

    // Wait for every volume's outcome, printing progress, until the deadline.
    let mut summary = BootSummary {
        answered: Vec::new(),
        failed: Vec::new(),
        not_asked: Vec::new(),
    };
    let mut pending: std::collections::BTreeSet<String> = volumes.iter().cloned().collect();
    let end = tokio::time::Instant::from_std(start + overall);
    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::from_std(start + PROGRESS_FIRST),
        PROGRESS_EVERY,
    );
    while !pending.is_empty() {
        tokio::select! {
            () = tokio::time::sleep_until(end) => break,
            _ = tick.tick() => {
                let stage = stage_rx.borrow().clone();
                say(&format!(
                    "waiting: {stage}; {} volume(s) pending [{}], {} s elapsed, {} s left",
                    pending.len(),
                    pending.iter().cloned().collect::<Vec<_>>().join(", "),
                    start.elapsed().as_secs(),
                    overall.saturating_sub(start.elapsed()).as_secs()
                ));
            }
            out = out_rx.recv() => {
                let Some(out) = out else { break };
                record(&out, &state, &mut pending, &mut summary, start);
            }
        }
    }
    let _ = stop_tx.send(true);
    let _ = server.await;
    driver.abort();
    summary.not_asked = pending.into_iter().collect();
    for v in &summary.not_asked {
        say(&format!(
            "volume {v}: systemd-cryptsetup did not ask for it within {} s",
            overall.as_secs()
        ));
    }
    state.update(|s, now| {
        s.finished = true;
        for v in &summary.not_asked {
            if let Some(vs) = s.volumes.get_mut(v) {
                if vs.state == "waiting" || vs.state == "asked" {
                    vs.state = "deadline";
                    vs.done_ms = Some(now);
                }
            }
        }
    });
    say(&format!(
        "boot unlock done in {} ms: {} answered, {} failed, {} not asked",
        start.elapsed().as_millis(),
        summary.answered.len(),
        summary.failed.len(),
        summary.not_asked.len()
    ));
    Ok(summary)
}

/// One outcome of the key socket: progress line, state, summary.
fn record(
    out: &Outcome,
    state: &StateHandle,
    pending: &mut std::collections::BTreeSet<String>,
    summary: &mut BootSummary,
    start: Instant,
) {
    let ms = start.elapsed().as_millis();
    match out {
        Outcome::Answered { volume } => {
            say(&format!(
                "volume {volume}: key sent to systemd-cryptsetup ({ms} ms)"
            ));
            state.update(|s, now| {
                if let Some(v) = s.volumes.get_mut(volume) {
                    v.state = "answered";
                    v.done_ms = Some(now);
                }
            });
            if pending.remove(volume) {
                summary.answered.push(volume.clone());
            }
        }
        Outcome::Refused { volume } | Outcome::DeadlineExpired { volume } => {
            let problem = state
                .snapshot()
                .and_then(|s| s.volumes.get(volume).and_then(|v| v.error.clone()))
                .unwrap_or_else(|| {
                    BootError::Deadline {
                        volume: volume.clone(),
                        seconds: start.elapsed().as_secs(),
                    }
                    .problem()
                });
            if pending.remove(volume) {
                say(&format!(
                    "volume {volume}: no key, closed without data; systemd falls back to the passphrase: {} [{}]",
                    problem.message, problem.code
                ));
                summary.failed.push((volume.clone(), problem));
            } else {
                say(&format!(
                    "key request for {volume:?} refused: not an initrd volume of the configuration"
                ));
            }
        }
        Outcome::PeerRefused { problem } => {
            say(&format!(
                "key request refused: {} [{}]",
                problem.message, problem.code
            ));
        }
        Outcome::Failed { volume, problem } => {
            say(&format!(
                "volume {}: connection failed: {} [{}]",
                volume.as_deref().unwrap_or("?"),
                problem.message,
                problem.code
            ));
        }
    }
}

/// The passphrase of `volume` when its key is ready within its `limit` (from `start`);
/// records in the state why not.
async fn answer_volume(
    board: &KeyBoard,
    state: &StateHandle,
    volume: &str,
    limit: Option<Duration>,
    start: Instant,
) -> Option<Secret> {
    let limit = limit?;
    state.update(|s, now| {
        if let Some(v) = s.volumes.get_mut(volume) {
            v.state = "asked";
            v.asked_ms = Some(now);
        }
    });
    let end = tokio::time::Instant::from_std(start + limit);
    match tokio::time::timeout_at(end, board.passphrase(volume)).await {
        Ok(Some(p)) => Some(p),
        Ok(None) => {
            state.update(|s, now| {
                let key = s
                    .volumes
                    .get(volume)
                    .map(|v| v.key.clone())
                    .unwrap_or_default();
                let cause = s
                    .keys
                    .get(&key)
                    .and_then(|k| k.error.as_ref().map(|e| e.code.clone()))
                    .unwrap_or_else(|| "passphrase-derivation".to_string());
                let problem = BootError::KeyFailed {
                    volume: volume.to_string(),
                    key,
                    cause,
                }
                .problem();
                if let Some(v) = s.volumes.get_mut(volume) {
                    v.state = "refused";
                    v.done_ms = Some(now);
                    v.error = Some(problem);
                }
            });
            None
        }
        Err(_) => {
            state.update(|s, now| {
                if let Some(v) = s.volumes.get_mut(volume) {
                    v.state = "deadline";
                    v.done_ms = Some(now);
                    v.error = Some(
                        BootError::Deadline {
                            volume: volume.to_string(),
                            seconds: limit.as_secs(),
                        }
                        .problem(),
                    );
                }
            });
            None
        }
    }
}

/// Back-off before attempt `n + 1` (1, 2, 4, 8 s, then 10 s), never past the deadline.
fn backoff(n: u32, deadline: &Deadline) -> Duration {
    let d = Duration::from_secs(1u64 << n.min(3)).min(Duration::from_secs(10));
    d.min(deadline.remaining())
}

/// Attests once and releases each key of the board once, publishing each as it is ready.
/// Outages are retried until `deadline`; refusals fail the keys concerned at once.
pub async fn drive(
    settings: &Settings,
    board: &KeyBoard,
    state: &StateHandle,
    deadline: &Deadline,
    stage: &watch::Sender<String>,
    open_source: SourceFn,
) {
    let keys: Vec<KeyRequest> = board
        .keys_needed()
        .iter()
        .filter_map(|k| {
            settings
                .keys
                .get(k)
                .map(|s| KeyRequest::from_settings(k, s))
        })
        .collect();
    // The cause goes into the state first: a volume woken by `board.fail` reads it from there.
    let fail_all = |problem: &Problem| {
        state.update(|s, now| {
            for k in s.keys.values_mut() {
                if k.state != "done" {
                    k.state = "failed";
                    k.done_ms = Some(now);
                    k.error = Some(problem.clone());
                }
            }
        });
        for k in board.keys_needed() {
            board.fail(&k);
        }
    };
    let services = match Services::from_settings(settings) {
        Ok(s) => s,
        Err(e) => {
            say(&format!("cannot attest: {e} [{}]", e.code()));
            fail_all(&e.problem());
            return;
        }
    };
    // The release responses' trust roots (the system bundle: slow to parse on a small VM) load
    // while the attestation runs.
    let files = services.ca_files.clone();
    let roots = tokio::task::spawn_blocking(move || load_roots(&files));
    // The evidence is local (TPM or firmware, no server nonce): the first attempt's is
    // collected while the network comes up, so the TPM work is off the serial path.
    let (first, ()) = tokio::join!(prepare_evidence(&open_source), async {
        wait_for_network(settings, deadline, stage).await
    });
    // The identity tokens the releases need are fetched during the attestation (their
    // failures are the releases' to report and retry).
    let resources: std::collections::BTreeSet<&'static str> =
        keys.iter().map(|k| k.url.token_resource).collect();
    let warm_identity = async {
        for r in resources {
            let _ = services.identity_token(r, deadline).await;
        }
    };
    let (att, ()) = tokio::join!(
        attest_until(
            &services,
            state,
            deadline,
            stage,
            &open_source,
            first,
            &fail_all
        ),
        warm_identity
    );
    let Some(att) = att else {
        return;
    };
    let roots = match roots.await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            say(&format!("cannot verify key releases: {e} [{}]", e.code()));
            fail_all(&e.problem());
            return;
        }
        Err(_) => {
            let problem = FlowError::TaskFailed {
                what: "loading the release trust roots",
            }
            .problem();
            say(&format!("{} [{}]", problem.message, problem.code));
            fail_all(&problem);
            return;
        }
    };
    // One attestation serves every key: the releases run side by side.
    futures_util::future::join_all(
        keys.iter()
            .map(|key| release_until(&services, &att, key, &roots, board, state, deadline, stage)),
    )
    .await;
    stage.send_replace("all keys released".to_string());
}

/// No attempt before the kernel has a route to IMDS (DHCP not done yet): an attempt then
/// fails at once and its back-off would delay the first real one by seconds.
async fn wait_for_network(settings: &Settings, deadline: &Deadline, stage: &watch::Sender<String>) {
    let Some(imds) = route::route_target(&settings.identity.imds_url) else {
        return;
    };
    if route::has_route(imds) {
        return;
    }
    stage.send_replace(format!(
        "waiting for the network (no route to {})",
        imds.ip()
    ));
    let waited = route::wait_for_route(|| route::has_route(imds), deadline).await;
    say(&format!(
        "network: route to {} after {} ms",
        imds.ip(),
        waited.as_millis()
    ));
}

/// The evidence of the first attestation attempt, collected at once; `Err((refusal, why))`
/// when the source cannot be opened or read.
async fn prepare_evidence(open_source: &SourceFn) -> Result<Prepared, (bool, Problem)> {
    let source = open_source().map_err(|e| (false, e.problem()))?;
    prepare(source)
        .await
        .map_err(|e| (e.is_refusal(), e.problem()))
}

/// Attestation attempts until one succeeds, is refused, or the deadline passes.
async fn attest_until(
    services: &Services,
    state: &StateHandle,
    deadline: &Deadline,
    stage: &watch::Sender<String>,
    open_source: &SourceFn,
    first: Result<Prepared, (bool, Problem)>,
    fail_all: &impl Fn(&Problem),
) -> Option<Attestation> {
    let mut attempt = 0u32;
    let mut first = Some(first);
    loop {
        attempt += 1;
        stage.send_replace(format!("attestation (attempt {attempt})"));
        state.update(|s, _| {
            s.attestation.state = "running";
            s.attestation.attempts = attempt;
        });
        // The first attempt uses the evidence collected during the network wait; later ones
        // collect afresh.
        let evidence = match first.take() {
            Some(prepared) => prepared.map(Evidence::from),
            None => open_source()
                .map(Evidence::from)
                .map_err(|e| (false, e.problem())),
        };
        let result = match evidence {
            Ok(evidence) => {
                // Attestation only: the keys are released side by side afterwards.
                let mut report = RunReport::start(evidence.name());
                crate::release::attest_for(services, evidence, &[], deadline, &mut report)
                    .await
                    .map(|attestation| {
                        report.finish();
                        (attestation, report)
                    })
                    .map_err(|e| (e.is_refusal(), e.problem()))
            }
            Err(e) => Err(e),
        };
        match result {
            Ok((attestation, report)) => {
                state.update(|s, now| {
                    s.attestation.state = "done";
                    s.attestation.done_ms = Some(now);
                    s.attestation.error = None;
                    s.attestation.request_id = attestation.request_id.clone();
                    s.attestation.expires_at = u64::try_from(attestation.expires_at).ok();
                });
                say(&format!(
                    "attested ({}, attempt {attempt}, {:.0} ms)",
                    attestation.issuer, report.total_ms
                ));
                return Some(attestation);
            }
            Err((refusal, problem)) => {
                let last = refusal || deadline.expired();
                say(&format!(
                    "attestation attempt {attempt} failed: {} [{}]{}",
                    problem.message,
                    problem.code,
                    if last { "" } else { "; retrying" }
                ));
                state.update(|s, now| {
                    s.attestation.error = Some(problem.clone());
                    if last {
                        s.attestation.state = "failed";
                        s.attestation.done_ms = Some(now);
                    }
                });
                if last {
                    fail_all(&problem);
                    return None;
                }
                tokio::time::sleep(backoff(attempt, deadline)).await;
                if deadline.expired() {
                    fail_all(&problem);
                    return None;
                }
            }
        }
    }
}

/// Release attempts of one key until it is released, refused, or the deadline passes.
#[allow(clippy::too_many_arguments)]
async fn release_until(
    services: &Services,
    att: &Attestation,
    key: &KeyRequest,
    roots: &[crate::format::jose::x5c::ChainCert],
    board: &KeyBoard,
    state: &StateHandle,
    deadline: &Deadline,
    stage: &watch::Sender<String>,
) {
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        stage.send_replace(format!("release of key {} (attempt {attempt})", key.name));
        state.update(|s, _| {
            if let Some(k) = s.keys.get_mut(&key.name) {
                k.state = "running";
                k.attempts = attempt;
            }
        });
        let mut report = RunReport::start("release");
        let result: Result<_, FlowError> =
            release_key(services, att, key, roots, deadline, &mut report).await;
        match result {
            Ok(released) => {
                board.publish(
                    &key.name,
                    Secret::new(released.material.ikm().expose().to_vec()),
                );
                state.update(|s, now| {
                    if let Some(k) = s.keys.get_mut(&key.name) {
                        k.state = "done";
                        k.done_ms = Some(now);
                        k.error = None;
                        k.request_id = released.request_id.clone();
                        k.version = released.version().map(str::to_string);
                    }
                });
                say(&format!("key {} released (attempt {attempt})", key.name));
                return;
            }
            Err(e) => {
                let problem = e.problem();
                let last = e.is_refusal() || deadline.expired();
                say(&format!(
                    "release of key {} failed: {} [{}]{}",
                    key.name,
                    problem.message,
                    problem.code,
                    if last { "" } else { "; retrying" }
                ));
                state.update(|s, now| {
                    if let Some(k) = s.keys.get_mut(&key.name) {
                        k.error = Some(problem.clone());
                        if last {
                            k.state = "failed";
                            k.done_ms = Some(now);
                        }
                    }
                });
                if last {
                    board.fail(&key.name);
                    return;
                }
                tokio::time::sleep(backoff(attempt, deadline)).await;
                if deadline.expired() {
                    board.fail(&key.name);
                    return;
                }
            }
        }
    }
}
