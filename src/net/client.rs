//! [`HttpClient`]: the one HTTP(S) client of skrd's attestation and key-release path, and its
//! retry loop (issue 6, "Network discipline"; PROTOCOLS.md §2 for the endpoints it serves).
//!
//! TLS is rustls (ring) with the system roots (the distribution's PEM bundle) plus every PEM
//! certificate of `trust.ca_files`; nothing else is trusted. Redirects are not followed (a bearer
//! token must never be forwarded elsewhere) and proxies from the environment are ignored (IMDS is
//! link-local and must never be proxied).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rand_core::{OsRng, RngCore};
use zeroize::Zeroize;

use super::error::{Failure, NetError};
use super::retry::{backoff_ceiling, full_jitter, parse_retry_after, retryable_status};
use super::{Deadline, HttpRequest, HttpResponse, Method, NetSettings, StepTiming, MAX_BODY};

/// The distribution CA bundles, first existing one wins (Debian/Ubuntu, Fedora/RHEL, SUSE).
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
];

/// The HTTP client: cheap to clone (shared connection pool and timings).
#[derive(Debug, Clone)]
pub struct HttpClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    client: reqwest::Client,
    settings: NetSettings,
    timings: Mutex<Vec<StepTiming>>,
}

/// Why one attempt did not produce a usable response.
enum AttemptError {
    /// Worth another attempt.
    Retry(Failure),
    /// Not worth retrying (TLS trust, oversized body, invalid request).
    Fatal(NetError),
}

/// A response as read by one attempt.
struct Raw {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl HttpClient {
    /// A client trusting the system roots and `settings.ca_files`.
    pub fn new(settings: &NetSettings) -> Result<Self, NetError> {
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .connect_timeout(settings.connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(concat!("skrd/", env!("CARGO_PKG_VERSION")));
        for cert in system_roots() {
            builder = builder.add_root_certificate(cert);
        }
        for path in &settings.ca_files {
            for cert in load_ca_file(path)? {
                builder = builder.add_root_certificate(cert);
            }
        }
        let client = builder
            .build()
            .map_err(|e| NetError::ClientInit { reason: chain(&e) })?;
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                settings: settings.clone(),
                timings: Mutex::new(Vec::new()),
            }),
        })
    }

    /// The settings this client was built with.
    pub fn settings(&self) -> &NetSettings {
        &self.inner.settings
    }

    /// Every completed call so far (successful or not), in order: for the bench and state file.
    pub fn timings(&self) -> Vec<StepTiming> {
        self.inner
            .timings
            .lock()
            .map(|t| t.clone())
            .unwrap_or_default()
    }

    fn record(&self, t: StepTiming) {
        if let Ok(mut v) = self.inner.timings.lock() {
            v.push(t);
        }
    }

    /// Sends `req`, retrying connection errors, timeouts, 429/500/502/503/504 and broken or
    /// garbage bodies with exponential back-off and full jitter (or the server's `Retry-After`),
    /// never past `deadline`. Any other status is returned as `Ok` for the caller to interpret.
    pub async fn send(
        &self,
        req: HttpRequest,
        deadline: &Deadline,
    ) -> Result<HttpResponse, NetError> {
        let start = Instant::now();
        let step = req.step;
        let result = self.send_inner(&req, deadline, start).await;
        let attempts = match &result {
            Ok(r) => r.attempts,
            Err(
                NetError::RetriesExhausted { attempts, .. }
                | NetError::DeadlineReached { attempts, .. },
            ) => *attempts,
            Err(_) => 1,
        };
        self.record(StepTiming {
            step,
            attempts,
            elapsed: start.elapsed(),
        });
        result
    }

    async fn send_inner(
        &self,
        req: &HttpRequest,
        deadline: &Deadline,
        start: Instant,
    ) -> Result<HttpResponse, NetError> {
        let s = &self.inner.settings;
        let step = req.step;
        let host = match (req.url.scheme(), req.url.host_str()) {
            ("http" | "https", Some(h)) if !h.is_empty() => h.to_string(),
            _ => {
                return Err(NetError::BadUrl {
                    step,
                    url: req.url.to_string(),
                })
            }
        };
        let max_attempts = s.retries.saturating_add(1);
        let mut attempts: u32 = 0;
        let mut last: Option<Failure> = None;
        loop {
            let remaining = deadline.remaining();
            if remaining.is_zero() {
                return Err(deadline_error(req, &host, attempts, start, last));
            }
            attempts = attempts.saturating_add(1);
            let limit = s.request_timeout.min(remaining);
            let t0 = Instant::now();
            let outcome = tokio::time::timeout(limit, self.attempt(req, &host)).await;
            let ms = t0.elapsed().as_millis();
            let (failure, retry_after) = match outcome {
                Err(_) => (
                    Failure::Timeout {
                        limit_ms: u64::try_from(limit.as_millis()).unwrap_or(u64::MAX),
                    },
                    None,
                ),
                Ok(Err(AttemptError::Fatal(e))) => {
                    tracing::debug!(step = %step, host, attempt = attempts, ms, error = %e, "http attempt failed");
                    return Err(e);
                }
                Ok(Err(AttemptError::Retry(f))) => (f, None),
                Ok(Ok(raw)) => {
                    let resp = HttpResponse {
                        status: raw.status,
                        headers: raw.headers,
                        body: raw.body,
                        attempts,
                        elapsed: start.elapsed(),
                    };
                    if retryable_status(resp.status) {
                        let ra = resp
                            .header("retry-after")
                            .and_then(|v| parse_retry_after(v, SystemTime::now()));
                        (Failure::Status(resp.status), ra.map(|d| (resp.status, d)))
                    } else if is_garbage(&resp) {
                        (
                            Failure::Garbage {
                                len: resp.body.len(),
                            },
                            None,
                        )
                    } else {
                        tracing::debug!(step = %step, host, attempt = attempts, status = resp.status, ms, "http attempt");
                        return Ok(resp);
                    }
                }
            };
            // One line per attempt: answers were logged above unless they are to be retried.
            tracing::debug!(step = %step, host, attempt = attempts, ms, failure = %failure, "http attempt failed");
            last = Some(failure);
            if attempts >= max_attempts {
                return Err(NetError::RetriesExhausted {
                    step,
                    host,
                    attempts,
                    last: last.unwrap_or(Failure::Transport(String::new())),
                });
            }
            let remaining = deadline.remaining();
            let wait = match retry_after {
                Some((status, ra)) => {
                    if ra > remaining {
                        return Err(NetError::RetryAfterBeyondDeadline {
                            step,
                            host,
                            status,
                            retry_after_s: ra.as_secs(),
                            remaining_ms: millis(remaining),
                        });
                    }
                    ra
                }
                None => full_jitter(
                    backoff_ceiling(s.backoff_initial, s.backoff_max, attempts),
                    OsRng.next_u64(),
                ),
            };
            if wait >= remaining {
                return Err(deadline_error(req, &host, attempts, start, last));
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// One attempt: request, status, headers and the whole body (capped).
    async fn attempt(&self, req: &HttpRequest, host: &str) -> Result<Raw, AttemptError> {
        let method = match req.method {
            Method::Get => reqwest::Method::GET,
            Method::Post => reqwest::Method::POST,
        };
        let mut rb = self.inner.client.request(method, req.url.clone());
        for (name, value) in &req.headers {
            rb = rb.header(*name, value.as_str());
        }
        if let Some(token) = &req.bearer {
            let mut v = b"Bearer ".to_vec();
            v.extend_from_slice(token.expose());
            let hv = reqwest::header::HeaderValue::from_bytes(&v);
            v.zeroize();
            let mut hv = hv.map_err(|_| {
                AttemptError::Fatal(NetError::BearerInvalid {
                    step: req.step,
                    host: host.to_string(),
                })
            })?;
            hv.set_sensitive(true);
            rb = rb.header(reqwest::header::AUTHORIZATION, hv);
        }
        if let Some(body) = &req.body {
            rb = rb.body(body.clone());
        }
        let mut resp = rb.send().await.map_err(|e| self.classify(req, host, &e))?;
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let too_large = |found: u64| {
            AttemptError::Fatal(NetError::BodyTooLarge {
                step: req.step,
                host: host.to_string(),
                limit: MAX_BODY,
                found,
            })
        };
        if let Some(len) = resp.content_length() {
            if len > MAX_BODY as u64 {
                return Err(too_large(len));
            }
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| self.classify(req, host, &e))?
        {
            let total = body.len().saturating_add(chunk.len());
            if total > MAX_BODY {
                return Err(too_large(total as u64));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Raw {
            status,
            headers,
            body,
        })
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn deadline_error(
    req: &HttpRequest,
    host: &str,
    attempts: u32,
    start: Instant,
    last: Option<Failure>,
) -> NetError {
    NetError::DeadlineReached {
        step: req.step,
        host: host.to_string(),
        attempts,
        elapsed_ms: millis(start.elapsed()),
        last,
    }
}

/// A 2xx answer announced as JSON whose body is not JSON: garbage on the wire, retried.
fn is_garbage(resp: &HttpResponse) -> bool {
    let json = resp
        .header("content-type")
        .is_some_and(|ct| ct.to_ascii_lowercase().contains("json"));
    resp.is_success()
        && json
        && serde_json::from_slice::<serde::de::IgnoredAny>(&resp.body).is_err()
}

/// The error and its sources, joined with ": ".
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        let t = inner.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = inner.source();
    }
    s
}

/// True when a source of `e` is a TLS failure (rustls errors surface as `InvalidData` I/O errors).
fn is_tls(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(inner) = src {
        // hyper-rustls wraps tokio-rustls's InvalidData error in `io::Error::other`, whose
        // `source()` skips the wrapped error: look inside with `get_ref`.
        let mut io = inner.downcast_ref::<std::io::Error>();
        while let Some(e) = io {
            if e.kind() == std::io::ErrorKind::InvalidData {
                return true;
            }
            io = e.get_ref().and_then(|r| r.downcast_ref::<std::io::Error>());
        }
        src = inner.source();
    }
    false
}

impl HttpClient {
    /// Sorts a reqwest error into "retry" (connect, timeout, broken transport) or "fatal".
    fn classify(&self, req: &HttpRequest, host: &str, e: &reqwest::Error) -> AttemptError {
        let reason = chain(e);
        if e.is_builder() {
            return AttemptError::Fatal(NetError::RequestInvalid {
                step: req.step,
                host: host.to_string(),
                reason,
            });
        }
        if is_tls(e) {
            return AttemptError::Fatal(NetError::Tls {
                step: req.step,
                host: host.to_string(),
                reason,
            });
        }
        if e.is_timeout() {
            return AttemptError::Retry(Failure::Timeout {
                limit_ms: millis(self.inner.settings.connect_timeout),
            });
        }
        if e.is_connect() {
            return AttemptError::Retry(Failure::Connect(reason));
        }
        AttemptError::Retry(Failure::Transport(reason))
    }
}

/// The system CA bundle's certificates (none, with a warning, when no bundle is readable).
fn system_roots() -> Vec<reqwest::Certificate> {
    for path in SYSTEM_BUNDLES {
        let Ok(bytes) = std::fs::read(path) else {
            continue;
        };
        match pem_certificates(&bytes) {
            Ok(certs) if !certs.is_empty() => return certs,
            Ok(_) => tracing::warn!(path, "system CA bundle holds no certificate"),
            Err(reason) => tracing::warn!(path, reason, "system CA bundle unusable"),
        }
    }
    tracing::warn!("no system CA bundle found: only trust.ca_files are trusted");
    Vec::new()
}

/// Every certificate of a PEM file of `trust.ca_files` (at least one).
fn load_ca_file(path: &std::path::Path) -> Result<Vec<reqwest::Certificate>, NetError> {
    let bytes = std::fs::read(path).map_err(|e| NetError::CaFileUnreadable {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let invalid = |reason: String| NetError::CaFileInvalid {
        path: path.to_path_buf(),
        reason,
    };
    let certs = pem_certificates(&bytes).map_err(invalid)?;
    if certs.is_empty() {
        return Err(invalid("no CERTIFICATE block".to_string()));
    }
    Ok(certs)
}

/// Parses the CERTIFICATE blocks of a PEM bundle (each must be a valid X.509 certificate).
fn pem_certificates(bytes: &[u8]) -> Result<Vec<reqwest::Certificate>, String> {
    use der::Encode;
    let parsed = x509_cert::Certificate::load_pem_chain(bytes).map_err(|e| e.to_string())?;
    parsed
        .iter()
        .map(|c| {
            let der = c.to_der().map_err(|e| e.to_string())?;
            reqwest::Certificate::from_der(&der).map_err(|e| chain(&e))
        })
        .collect()
}
