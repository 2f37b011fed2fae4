//! The long-running daemon (`skrd.service`; DESIGN.md "The long-running daemon"):
//! [`manager`] is the domain core (configuration, state file, key cache, runs, volumes, ACL),
//! [`dbus`] the thin zbus adapter, [`acl`] the caller checks, [`notify`] sd_notify,
//! [`memfd`] the sealed memfds keys leave in. [`run`] is the service's main loop: take over the
//! state file, initial work, READY=1, watchdog, attestation refresh, SIGHUP reload, SIGTERM exit.

pub mod acl;
pub mod activation;
pub mod dbus;
pub mod error;
pub mod manager;
pub mod memfd;
pub mod notify;

use std::path::PathBuf;
use std::sync::Arc;

use crate::config::Settings;
use crate::error::ErrorCode;
pub use error::DaemonError;
pub use manager::Manager;

/// How the service was started.
#[derive(Debug, Clone)]
pub struct Options {
    /// `--config`.
    pub config: Option<PathBuf>,
    /// The state file (default `/run/skrd/state.json`).
    pub state_file: PathBuf,
    /// `--bus-address` (None: the system bus).
    pub bus_address: Option<String>,
    /// The crypttab key socket for volumes with `options.initrd = false`.
    pub key_socket: PathBuf,
    /// Where sysfs is mounted (`/sys`): open volumes are seen in `class/block/dm-*/dm/uuid`.
    pub sysfs_root: PathBuf,
}

/// Makes the process non-dumpable (no core files, no ptrace by the same uid).
pub fn harden_process() {
    // SAFETY: prctl with constant arguments.
    let rc = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    if rc != 0 {
        tracing::warn!(
            "PR_SET_DUMPABLE 0 failed: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// Runs the service until SIGTERM/SIGINT; returns the exit status (0 clean, 1 bus failure).
pub async fn run(opts: Options, settings: Settings) -> u8 {
    use tokio::signal::unix::{signal, SignalKind};
    let (mut term, mut int, mut hup) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) {
        (Ok(t), Ok(i), Ok(h)) => (t, i, h),
        _ => {
            tracing::error!("cannot install signal handlers");
            return 1;
        }
    };
    // The bus first, before anything is written: without a bus the daemon stops untouched.
    let conn = match dbus::connect(opts.bus_address.as_deref()).await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error_code = e.code(), "{e}");
            notify::Notifier::from_env().status(&e.to_string());
            return 1;
        }
    };
    let notifier = notify::Notifier::from_env();
    let manager = Manager::new(
        opts.config.clone(),
        opts.state_file.clone(),
        opts.sysfs_root.clone(),
        settings,
        notifier,
    );
    // Callers arriving during the initial work wait for it (NotReady after 20 s).
    if let Err(e) = dbus::serve(&conn, manager.clone(), opts.bus_address.as_deref()).await {
        tracing::error!(error_code = e.code(), "{e}");
        manager.notifier().status(&e.to_string());
        return 1;
    }
    tracing::info!(
        bus = opts.bus_address.as_deref().unwrap_or("system"),
        "serving {} on the bus",
        dbus::BUS_NAME
    );
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // The key socket, once some volume is left to the daemon (at start or after a reload).
    let mut key_socket_bound = false;
    let mut bind_key_socket = |manager: &Arc<Manager>| {
        if key_socket_bound
            || !manager
                .settings()
                .volumes
                .values()
                .any(|v| !v.options.initrd)
        {
            return;
        }
        match crate::keysocket::KeySocket::bind(&opts.key_socket) {
            Ok(sock) => {
                key_socket_bound = true;
                tracing::info!(path = %opts.key_socket.display(), "serving the key socket for the daemon's volumes");
                let m = manager.clone();
                let mut rx = stop_rx.clone();
                tokio::spawn(sock.serve(
                    move |volume: String| {
                        let m = m.clone();
                        async move {
                            let answer = m.volume_passphrase(&volume).await;
                            if answer.is_some() {
                                // systemd-cryptsetup opens it next: watch for the mapping.
                                tokio::spawn(async move { m.watch_activation(&volume).await });
                            }
                            answer
                        }
                    },
                    crate::keysocket::ServeOptions::default(),
                    None,
                    async move {
                        let _ = rx.wait_for(|s| *s).await;
                    },
                ));
            }
            Err(e) => tracing::warn!(
                error_code = e.code(),
                "{e}; volumes left to the daemon cannot be unlocked"
            ),
        }
    };
    bind_key_socket(&manager);
    let m = manager.clone();
    let mut initial = tokio::spawn(async move { m.initial_work().await });
    let mut initial_done = false;
    let watchdog = notify::watchdog_interval();
    let mut wd = tokio::time::interval(watchdog.unwrap_or(std::time::Duration::from_secs(3600)));
    // Volumes opened by others (or slowly): looked for every 30 s.
    let mut volumes_tick = tokio::time::interval(std::time::Duration::from_secs(30));
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => {
                manager.notifier().notify("RELOADING=1");
                match manager.reload() {
                    Ok(()) => {
                        tracing::info!("configuration reloaded");
                        bind_key_socket(&manager);
                        if initial_done && !manager.missing_needed().is_empty() {
                            manager.kick();
                        }
                    }
                    Err(p) => tracing::warn!(error_code = %p.code, "configuration reload refused, keeping the old configuration: {}", p.message),
                }
                manager.notifier().notify("READY=1");
            }
            _ = wd.tick(), if watchdog.is_some() => {
                manager.notifier().notify("WATCHDOG=1");
            }
            _ = volumes_tick.tick() => {
                manager.refresh_volumes();
            }
            r = &mut initial, if !initial_done => {
                initial_done = true;
                if r.is_err() {
                    tracing::error!("the initial work task failed");
                }
                // Renewals and retries from now on.
                let m = manager.clone();
                let rx = stop_rx.clone();
                tokio::spawn(async move { m.maintain(rx).await });
            }
        }
    }
    // Stop: calls still waiting get daemon-stopping at once, the exit waits (5 s at most)
    // until every caller has an answer, the keys are wiped and the state file says so, and
    // only then is the name released, so that a call arriving now activates the next skrd
    // (which takes over a finished state file).
    manager.begin_stop();
    manager.notifier().notify("STOPPING=1\nSTATUS=stopping");
    if tokio::time::timeout(std::time::Duration::from_secs(5), manager.wait_idle())
        .await
        .is_err()
    {
        tracing::warn!("stopping with D-Bus calls still unanswered after 5 s");
    }
    let _ = stop_tx.send(true);
    manager.shutdown();
    if let Err(e) = conn.release_name(dbus::BUS_NAME).await {
        tracing::debug!("releasing {}: {e}", dbus::BUS_NAME);
    }
    0
}
