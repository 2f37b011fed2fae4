//! The HTTP client layer of the attestation and key-release client (issue 6, "Network
//! discipline"): every call to IMDS, THIM, the attestation provider and Key Vault / Managed HSM
//! goes through [`HttpClient::send`], which applies the connect and per-attempt timeouts,
//! exponential back-off with full jitter, `Retry-After`, one overall [`Deadline`] and a body-size
//! cap, and records per-step timings.
//!
//! - [`client`]: the reqwest/rustls client (system roots + `trust.ca_files`) and the retry loop;
//! - [`retry`]: pure retry policy (retryable statuses, back-off, `Retry-After` parsing);
//! - [`deadline`]: the overall deadline;
//! - [`error`]: [`NetError`] (codes in `docs/errors-net.md`).
//!
//! Protocol-level parsing (IMDS token JSON, OpenID metadata, ...) is not here: the callers in
//! `identity`, `attest` and the release flow interpret the returned [`HttpResponse`].

pub mod client;
pub mod deadline;
pub mod error;
pub mod retry;

use std::path::PathBuf;
use std::time::Duration;

use crate::secret::Secret;

pub use client::HttpClient;
pub use deadline::Deadline;
pub use error::{Failure, NetError};

/// Largest response body accepted (4 MiB): the largest real answers (THIM certificates, JWKS,
/// release responses) are a few KiB.
pub const MAX_BODY: usize = 4 * 1024 * 1024;

/// Network settings of the client: `[network]` and `trust.ca_files` of the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetSettings {
    /// TCP + TLS connect timeout of one attempt.
    pub connect_timeout: Duration,
    /// Total time of one attempt (connect, request, whole response body).
    pub request_timeout: Duration,
    /// Retries after the first attempt (so at most `retries + 1` attempts).
    pub retries: u32,
    /// Back-off ceiling before the first retry; doubles for each further retry.
    pub backoff_initial: Duration,
    /// Cap of the back-off ceiling.
    pub backoff_max: Duration,
    /// Extra PEM CA files trusted besides the system roots.
    pub ca_files: Vec<PathBuf>,
}

impl NetSettings {
    /// The settings of a validated configuration (`network.*` and `trust.ca_files`).
    pub fn from_config(s: &crate::config::Settings) -> Self {
        Self {
            connect_timeout: s.network.connect_timeout,
            request_timeout: s.network.request_timeout,
            retries: s.network.retries,
            backoff_initial: s.network.backoff_initial,
            backoff_max: s.network.backoff_max,
            ca_files: s.trust.ca_files.clone(),
        }
    }
}

impl Default for NetSettings {
    /// The documented defaults of `[network]` (see `config/skrd.toml`), no extra CA files.
    fn default() -> Self {
        use crate::config::settings::defaults as d;
        Self {
            connect_timeout: Duration::from_secs(d::CONNECT_TIMEOUT_S),
            request_timeout: Duration::from_secs(d::REQUEST_TIMEOUT_S),
            retries: d::RETRIES,
            backoff_initial: Duration::from_millis(d::BACKOFF_INITIAL_MS),
            backoff_max: Duration::from_secs(d::BACKOFF_MAX_S),
            ca_files: Vec::new(),
        }
    }
}

/// Which protocol step a request belongs to (for logs, errors and timings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Step {
    /// IMDS managed-identity token.
    ImdsToken,
    /// IMDS THIM VCEK certificates.
    Thim,
    /// Attestation provider OpenID metadata.
    OpenIdConfig,
    /// Attestation provider signing keys (JWKS).
    Jwks,
    /// Attestation request.
    Attest,
    /// Key Vault / Managed HSM GET key.
    KeyGet,
    /// Key Vault / Managed HSM release.
    KeyRelease,
}

impl Step {
    /// Stable kebab-case name (logs, state file, bench output).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ImdsToken => "imds-token",
            Self::Thim => "thim",
            Self::OpenIdConfig => "openid-config",
            Self::Jwks => "jwks",
            Self::Attest => "attest",
            Self::KeyGet => "key-get",
            Self::KeyRelease => "key-release",
        }
    }
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// HTTP method (only the two the protocols use).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// GET.
    Get,
    /// POST.
    Post,
}

/// One request, sent (and possibly re-sent) by [`HttpClient::send`].
#[derive(Debug)]
pub struct HttpRequest {
    /// The protocol step (logs, errors, timings).
    pub step: Step,
    /// GET or POST.
    pub method: Method,
    /// The full URL including the query.
    pub url: url::Url,
    /// Extra headers (e.g. `("Metadata", "true")`, `("Content-Type", "application/json")`).
    pub headers: Vec<(&'static str, String)>,
    /// `Authorization: Bearer …`, sent as a sensitive header and never logged.
    pub bearer: Option<Secret>,
    /// Request body (POST).
    pub body: Option<Vec<u8>>,
}

impl HttpRequest {
    /// A GET request without headers.
    pub fn get(step: Step, url: url::Url) -> Self {
        Self {
            step,
            method: Method::Get,
            url,
            headers: Vec::new(),
            bearer: None,
            body: None,
        }
    }

    /// A POST request with a JSON body (`Content-Type: application/json`).
    pub fn post_json(step: Step, url: url::Url, body: Vec<u8>) -> Self {
        Self {
            step,
            method: Method::Post,
            url,
            headers: vec![("Content-Type", "application/json".to_string())],
            bearer: None,
            body: Some(body),
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// Sets the bearer token.
    pub fn with_bearer(mut self, token: Secret) -> Self {
        self.bearer = Some(token);
        self
    }
}

/// A response with a final status (2xx, or a status the caller interprets, like 401/403/404).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// The HTTP status.
    pub status: u16,
    /// Response headers (names in lower case), in order.
    pub headers: Vec<(String, String)>,
    /// The whole body (at most [`MAX_BODY`] bytes).
    pub body: Vec<u8>,
    /// Attempts made, including this successful one.
    pub attempts: u32,
    /// Time from the first attempt to the end of this one, back-off sleeps included.
    pub elapsed: Duration,
}

impl HttpResponse {
    /// The first value of a header (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// True for 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// One step's timing, for the bench and the state file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepTiming {
    /// The step.
    pub step: Step,
    /// Attempts made.
    pub attempts: u32,
    /// Total time of the call.
    pub elapsed: Duration,
}

impl From<(Step, &HttpResponse)> for StepTiming {
    fn from((step, r): (Step, &HttpResponse)) -> Self {
        Self {
            step,
            attempts: r.attempts,
            elapsed: r.elapsed,
        }
    }
}
