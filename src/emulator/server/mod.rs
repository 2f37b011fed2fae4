//! `skr-emulator serve`: a local Azure (PROTOCOLS.md §8, DESIGN.md "The emulator") in one
//! process, one loopback port per service:
//! - IMDS, plain HTTP ([`imds`]: §2.1 tokens, §2.3 THIM);
//! - attestation, Key Vault and Managed HSM, HTTPS with the emulator's own CA ([`tls`], [`maa`],
//!   [`vault`]);
//! - admin, plain HTTP ([`admin`]: faults and counters of [`faults`]).
//!
//! Start-up contract: once every listener accepts, exactly one JSON line is printed on stdout,
//! `{"imds", "attestation", "vault", "managed_hsm", "ca_pem", "admin"}`; logs go to stderr;
//! SIGTERM or SIGINT stops accepting, lets in-flight requests finish (bounded by
//! [`SHUTDOWN_GRACE`]) and returns `Ok`. State lives in the state directory ([`state`]).

pub mod admin;
pub mod azureguest;
pub mod faults;
pub mod http;
pub mod imds;
pub mod maa;
pub mod sevsnpvm;
pub mod state;
pub mod throttle;
pub mod tls;
pub mod vault;

/// Feeds `f` 3000 deterministic mutations of `body` (four random bytes overwritten) and a random
/// prefix of each: the request parsers' no-panic unit tests share it.
#[cfg(test)]
pub(crate) fn for_each_mutation(body: &[u8], mut seed: u64, mut f: impl FnMut(&[u8])) {
    for _ in 0..3000 {
        let mut b = body.to_vec();
        for _ in 0..4 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let at = usize::try_from(seed >> 33).unwrap() % b.len();
            b[at] = (seed >> 13) as u8;
        }
        let cut = usize::try_from(seed >> 40).unwrap() % (b.len() + 1);
        f(&b);
        f(&b[..cut]);
    }
}

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::emulator::amd_chain::TestAmdChain;
use crate::emulator::EmulatorError;
use crate::error::ErrorCode;
use faults::Faults;
use http::Service;

/// How long in-flight requests may run after SIGTERM.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors of `skr-emulator serve`.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A state file could not be read or written.
    #[error("emulator state file {path}: {source}; check the --state-dir permissions")]
    StateIo {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The test platform state failed.
    #[error(transparent)]
    Emulator(#[from] EmulatorError),
    /// A certificate or the TLS configuration could not be made.
    #[error("could not make the {what}: {reason}; delete the state directory's ca*.pem to regenerate the CA")]
    Certificate {
        /// What was being made.
        what: &'static str,
        /// The library's reason.
        reason: String,
    },
    /// A given TLS certificate or key file is unusable.
    #[error("TLS file {path}: {reason}; give a PEM certificate chain (--tls-cert) and its PEM private key (--tls-key)")]
    TlsFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The fault file could not be read.
    #[error("fault file {path}: {source}")]
    FaultsIo {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The fault file is not a valid fault table.
    #[error("fault file {path} is not a valid fault table: {reason}; see skr-emulator(1) FAULTS")]
    FaultsInvalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}; choose another --listen address or port")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The attestation policy file is unreadable or not a valid policy.
    #[error("attestation policy {path}: {reason}")]
    AttestationPolicy {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The async runtime or the signal handlers could not start.
    #[error("cannot start the server runtime: {source}")]
    Runtime {
        /// The OS error.
        source: std::io::Error,
    },
}

impl ErrorCode for ServeError {
    fn code(&self) -> &'static str {
        match self {
            Self::StateIo { .. } => "emulator-state-io",
            Self::Emulator(e) => e.code(),
            Self::Certificate { .. } => "emulator-serve-certificate",
            Self::TlsFile { .. } => "emulator-tls-file-invalid",
            Self::FaultsIo { .. } => "emulator-faults-unreadable",
            Self::FaultsInvalid { .. } => "emulator-faults-invalid",
            Self::Listen { .. } => "emulator-listen-failed",
            Self::Runtime { .. } => "emulator-runtime-failed",
            Self::AttestationPolicy { .. } => "emulator-attestation-policy-invalid",
        }
    }
}

/// Options of `skr-emulator serve`.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The state directory (created if absent).
    pub state_dir: PathBuf,
    /// Address of the first listener; port 0 = an ephemeral port for each service, otherwise
    /// IMDS, attestation, vault, managed_hsm, admin take PORT..PORT+4.
    pub listen: SocketAddr,
    /// Per-service addresses that replace the one `listen` gives (e.g. IMDS on
    /// 169.254.169.254:80, the attestation service on 127.0.0.2:443).
    pub listen_at: ServiceAddrs,
    /// Announce the attestation, vault and managed HSM services by their host names,
    /// `https://NAME` (`:PORT` unless 443), instead of their addresses: in the start-up line, the
    /// token issuer, `jku`, the OpenID metadata and the key ids. The names must resolve to the
    /// listeners (e.g. /etc/hosts).
    pub public_names: bool,
    /// Host name of the attestation provider (signing certificate CN, server certificate SAN).
    pub attestation_host: String,
    /// Host name of the Key Vault (server certificate SAN).
    pub vault_host: String,
    /// Host name of the Managed HSM (server certificate SAN).
    pub managed_hsm_host: String,
    /// More names for the server certificate.
    pub extra_hostnames: Vec<String>,
    /// Initial fault table.
    pub faults: Option<PathBuf>,
    /// Serve these certificates instead of issuing them.
    pub tls: Option<GivenTls>,
    /// Key Vault / Managed HSM throttling limit: RSA-2048-equivalent operations per 10 s.
    pub vault_ops_limit: u32,
    /// The attestation policy file (kept in the state directory; default: the one kept there,
    /// else Azure's default permit-all).
    pub attestation_policy: Option<PathBuf>,
    /// Lifetime (`exp - iat`, seconds) of the attestation and managed-identity tokens issued
    /// (default: Azure's, 8 hours and 24 hours); short ones test the client's refresh.
    pub token_lifetime: Option<i64>,
}

/// Per-service listener addresses (`serve --listen-imds` ...); `None` = from `listen`.
#[derive(Debug, Clone, Default)]
pub struct ServiceAddrs {
    /// IMDS.
    pub imds: Option<SocketAddr>,
    /// Attestation.
    pub attestation: Option<SocketAddr>,
    /// Key Vault.
    pub vault: Option<SocketAddr>,
    /// Managed HSM.
    pub managed_hsm: Option<SocketAddr>,
    /// Admin.
    pub admin: Option<SocketAddr>,
}

impl ServiceAddrs {
    /// The address given for service `i` (IMDS, attestation, vault, managed_hsm, admin).
    fn get(&self, i: usize) -> Option<SocketAddr> {
        [
            self.imds,
            self.attestation,
            self.vault,
            self.managed_hsm,
            self.admin,
        ]
        .get(i)
        .copied()
        .flatten()
    }
}

/// `scheme://host[:port]`, the port left out when it is the scheme's default (an IPv6 host in
/// brackets).
pub fn origin(scheme: &str, host: &str, port: u16) -> String {
    let default = matches!((scheme, port), ("http", 80) | ("https", 443));
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    if default {
        format!("{scheme}://{host}")
    } else {
        format!("{scheme}://{host}:{port}")
    }
}

/// TLS material given on the command line instead of the emulator's own CA.
#[derive(Debug, Clone)]
pub struct GivenTls {
    /// PEM chain, server certificate first.
    pub cert: PathBuf,
    /// PEM private key of the server certificate.
    pub key: PathBuf,
    /// The PEM file clients should trust (printed as `ca_pem`); default: `cert`.
    pub ca: Option<PathBuf>,
}

/// The start-up line.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Endpoints {
    /// IMDS base URL (plain HTTP).
    pub imds: String,
    /// Attestation base URL (HTTPS) = the MAA issuer.
    pub attestation: String,
    /// Key Vault base URL (HTTPS).
    pub vault: String,
    /// Managed HSM base URL (HTTPS).
    pub managed_hsm: String,
    /// The CA certificate (PEM file) that verifies the HTTPS listeners.
    pub ca_pem: PathBuf,
    /// Admin base URL (plain HTTP).
    pub admin: String,
}

/// Runs the server until SIGTERM/SIGINT; `on_ready` receives the endpoints once all listen.
pub fn run(opts: ServeOptions, on_ready: impl FnOnce(&Endpoints)) -> Result<(), ServeError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|source| ServeError::Runtime { source })?;
    rt.block_on(serve(opts, on_ready))
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Listen { addr, source })
}

fn local(listener: &TcpListener, fallback: SocketAddr) -> SocketAddr {
    listener.local_addr().unwrap_or(fallback)
}

/// Accepts connections until shutdown; each connection holds a clone of `done`.
fn spawn_listener(
    listener: TcpListener,
    service: Arc<dyn Service>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    faults: Arc<Faults>,
    mut shutdown: watch::Receiver<bool>,
    done: mpsc::Sender<()>,
) {
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = shutdown.changed() => return,
            };
            let Ok((tcp, peer)) = accepted else { continue };
            // Small responses must not wait for delayed ACKs (Nagle): 40 ms per new connection.
            let _ = tcp.set_nodelay(true);
            let (service, faults, shutdown, done, tls) = (
                service.clone(),
                faults.clone(),
                shutdown.clone(),
                done.clone(),
                tls.clone(),
            );
            tokio::spawn(async move {
                let _done = done;
                tracing::debug!(%peer, "connection");
                match tls {
                    None => http::serve_connection(tcp, service, faults, shutdown).await,
                    Some(acceptor) => {
                        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                            Ok(Ok(stream)) => {
                                http::serve_connection(stream, service, faults, shutdown).await
                            }
                            Ok(Err(e)) => tracing::info!(%peer, error = %e, "TLS handshake failed"),
                            Err(_) => tracing::info!(%peer, "TLS handshake timed out"),
                        }
                    }
                }
            });
        }
    });
}

async fn serve(opts: ServeOptions, on_ready: impl FnOnce(&Endpoints)) -> Result<(), ServeError> {
    let dir = &opts.state_dir;
    std::fs::create_dir_all(dir).map_err(|source| ServeError::StateIo {
        path: dir.clone(),
        source,
    })?;
    let dir = std::fs::canonicalize(dir).map_err(|source| ServeError::StateIo {
        path: dir.clone(),
        source,
    })?;
    let table = match &opts.faults {
        Some(path) => faults::load_file(path)?,
        None => Default::default(),
    };
    let faults = Arc::new(Faults::new(table));
    let st = Arc::new(state::State::load_or_create(&dir)?);
    let chain = TestAmdChain::load_or_create(&dir)?;
    let ca = tls::Ca::load_or_create(&dir)?;
    let mut names = vec![
        opts.attestation_host.clone(),
        opts.vault_host.clone(),
        opts.managed_hsm_host.clone(),
    ];
    names.extend(opts.extra_hostnames.iter().cloned());
    let listen_ips: Vec<std::net::IpAddr> = (0..5)
        .filter_map(|i| opts.listen_at.get(i))
        .chain([opts.listen])
        .map(|a| a.ip())
        .filter(|ip| !ip.is_unspecified())
        .collect();
    let (acceptor, ca_pem) = match &opts.tls {
        None => {
            let (cert, key) = ca.issue_server(&names, &listen_ips)?;
            (tls::acceptor(cert, key)?, ca.pem_path.clone())
        }
        Some(given) => {
            let trust = given.ca.as_ref().unwrap_or(&given.cert);
            let trust = std::fs::canonicalize(trust).map_err(|source| ServeError::StateIo {
                path: trust.clone(),
                source,
            })?;
            (tls::acceptor_from_files(&given.cert, &given.key)?, trust)
        }
    };

    let base = opts.listen;
    let addr_at = |i: usize| {
        opts.listen_at.get(i).unwrap_or_else(|| {
            let mut a = base;
            if base.port() != 0 {
                a.set_port(base.port().saturating_add(u16::try_from(i).unwrap_or(0)));
            }
            a
        })
    };
    let mut listeners = Vec::new();
    for i in 0..5 {
        listeners.push(bind(addr_at(i)).await?);
    }
    let addrs: Vec<SocketAddr> = listeners
        .iter()
        .enumerate()
        .map(|(i, l)| local(l, addr_at(i)))
        .collect();
    let url = |scheme: &str, i: usize, name: Option<&str>| {
        let a = addrs.get(i).copied().unwrap_or(base);
        match name {
            Some(host) if opts.public_names => origin(scheme, host, a.port()),
            // Without public names only the scheme's default port is left out, so the URL of a
            // listener on an ephemeral or offset port is unchanged.
            _ => origin(scheme, &a.ip().to_string(), a.port()),
        }
    };
    let endpoints = Endpoints {
        imds: url("http", 0, None),
        attestation: url("https", 1, Some(&opts.attestation_host)),
        vault: url("https", 2, Some(&opts.vault_host)),
        managed_hsm: url("https", 3, Some(&opts.managed_hsm_host)),
        ca_pem,
        admin: url("http", 4, None),
    };

    let imds: Arc<dyn Service> =
        Arc::new(imds::Imds::new(st.clone(), &chain)?.with_token_lifetime(opts.token_lifetime));
    let policy = maa::load_policy(&st.dir, opts.attestation_policy.as_deref())?;
    let maa: Arc<dyn Service> = Arc::new(
        maa::Attestation::new(
            st.clone(),
            endpoints.attestation.clone(),
            &opts.attestation_host,
            policy,
        )?
        .with_token_lifetime(opts.token_lifetime),
    );
    let vault_setup = |flavour: &'static str, base_url: &str| vault::VaultSetup {
        flavour,
        base_url: base_url.to_string(),
        attestation: endpoints.attestation.clone(),
        cert_names: if flavour == "vault" {
            vec![opts.vault_host.clone(), opts.managed_hsm_host.clone()]
        } else {
            vec![opts.managed_hsm_host.clone(), opts.vault_host.clone()]
        },
        ops_limit: opts.vault_ops_limit,
        ca: &ca,
    };
    let vault = vault::Vault::new(st.clone(), vault_setup("vault", &endpoints.vault))?;
    let mhsm = vault::Vault::new(
        st.clone(),
        vault_setup("managed-hsm", &endpoints.managed_hsm),
    )?;
    let admin: Arc<dyn Service> = Arc::new(admin::Admin {
        faults: faults.clone(),
        throttles: vec![
            ("vault", vault.throttle()),
            ("managed_hsm", mhsm.throttle()),
        ],
    });
    let vault: Arc<dyn Service> = Arc::new(vault);
    let mhsm: Arc<dyn Service> = Arc::new(mhsm);

    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|source| ServeError::Runtime { source })?;
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(|source| ServeError::Runtime { source })?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
    let services = [
        (imds, None),
        (maa, Some(acceptor.clone())),
        (vault, Some(acceptor.clone())),
        (mhsm, Some(acceptor)),
        (admin, None),
    ];
    for (listener, (service, tls)) in listeners.into_iter().zip(services) {
        spawn_listener(
            listener,
            service,
            tls,
            faults.clone(),
            stop_rx.clone(),
            done_tx.clone(),
        );
    }
    drop(done_tx);
    tracing::info!(?endpoints, "skr-emulator serving");
    on_ready(&endpoints);

    let signal = tokio::select! {
        _ = sigterm.recv() => "SIGTERM",
        _ = sigint.recv() => "SIGINT",
    };
    tracing::info!(
        signal,
        "stopping: no new connections, finishing in-flight requests"
    );
    let _ = stop_tx.send(true);
    if tokio::time::timeout(SHUTDOWN_GRACE, done_rx.recv())
        .await
        .is_err()
    {
        tracing::warn!("in-flight requests still running after the grace period; exiting");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::origin;

    #[test]
    fn origins_leave_out_default_ports() {
        assert_eq!(
            origin("https", "a.vault.azure.net", 443),
            "https://a.vault.azure.net"
        );
        assert_eq!(
            origin("https", "a.vault.azure.net", 8443),
            "https://a.vault.azure.net:8443"
        );
        assert_eq!(
            origin("http", "169.254.169.254", 80),
            "http://169.254.169.254"
        );
        assert_eq!(origin("http", "127.0.0.1", 443), "http://127.0.0.1:443");
        assert_eq!(origin("https", "::1", 4430), "https://[::1]:4430");
    }
}
