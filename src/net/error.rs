//! [`NetError`]: every way an HTTP exchange of the attestation and key-release client can fail
//! (connect, TLS, timeouts, retries exhausted, deadline, oversized bodies).
//!
//! The retry policy itself is in [`super::retry`]; this module only describes outcomes. Codes are
//! listed in `docs/errors-net.md`.

use std::path::PathBuf;

use crate::error::ErrorCode;

use super::Step;

/// What went wrong in one attempt (the last one is carried by the final error).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Failure {
    /// The server answered with a retryable status (429, 500, 502, 503, 504).
    Status(u16),
    /// The TCP/TLS connection could not be made or was reset before a response.
    Connect(String),
    /// The attempt ran out of time (connect or total per-attempt timeout).
    Timeout {
        /// The per-attempt limit that was hit, in milliseconds.
        limit_ms: u64,
    },
    /// The response was cut off or otherwise broken at the transport level.
    Transport(String),
    /// A 2xx response announced JSON but its body is not JSON (garbage on the wire).
    Garbage {
        /// The body length in bytes.
        len: usize,
    },
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Status(s) => write!(f, "HTTP status {s}"),
            Self::Connect(r) => write!(f, "connection failed: {r}"),
            Self::Timeout { limit_ms } => write!(f, "no complete answer within {limit_ms} ms"),
            Self::Transport(r) => write!(f, "broken response: {r}"),
            Self::Garbage { len } => {
                write!(f, "a {len}-byte body announced as JSON that is not JSON")
            }
        }
    }
}

/// Formats the optional last failure of a deadline error.
fn last_failure(last: &Option<Failure>) -> String {
    match last {
        Some(f) => format!("; last failure: {f}"),
        None => String::new(),
    }
}

/// A network client error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// A file of `trust.ca_files` cannot be read.
    #[error(
        "trust.ca_files entry {path} cannot be read: {reason}; fix the path or its permissions"
    )]
    CaFileUnreadable {
        /// The file.
        path: PathBuf,
        /// The OS error.
        reason: String,
    },

    /// A file of `trust.ca_files` holds no usable PEM certificate.
    #[error(
        "trust.ca_files entry {path} holds no usable PEM certificate ({reason}); give a PEM \
         file with one or more '-----BEGIN CERTIFICATE-----' blocks"
    )]
    CaFileInvalid {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        reason: String,
    },

    /// The HTTP client could not be built (TLS back end initialisation).
    #[error("the HTTPS client cannot be initialised: {reason}; this is a bug or a broken build")]
    ClientInit {
        /// What failed.
        reason: String,
    },

    /// The URL cannot be used (scheme other than http/https, no host).
    #[error(
        "{step} URL {url} cannot be requested: expected an http(s) URL with a host; check the \
         configured URL"
    )]
    BadUrl {
        /// The step.
        step: Step,
        /// The URL.
        url: String,
    },

    /// The bearer token cannot be sent as a header value (control characters).
    #[error(
        "{step} to {host}: the bearer token contains bytes not allowed in an HTTP header; the \
         token source returned a corrupted token"
    )]
    BearerInvalid {
        /// The step.
        step: Step,
        /// The URL's host.
        host: String,
    },

    /// The request cannot be built (invalid header name or value).
    #[error("{step} to {host}: the request cannot be built: {reason}; this is a bug in skrd")]
    RequestInvalid {
        /// The step.
        step: Step,
        /// The URL's host.
        host: String,
        /// What reqwest said.
        reason: String,
    },

    /// The TLS handshake failed (untrusted or invalid server certificate): not retried.
    #[error(
        "{step} to {host}: TLS handshake failed: {reason}; the server certificate is not trusted \
         by the system roots or trust.ca_files (add the issuing CA to trust.ca_files, or check \
         for an intercepting proxy)"
    )]
    Tls {
        /// The step.
        step: Step,
        /// The URL's host.
        host: String,
        /// The TLS error.
        reason: String,
    },

    /// Every attempt failed.
    #[error(
        "{step} to {host} failed after {attempts} attempt(s): {last}; check that the service \
         is reachable from this VM, or raise network.retries"
    )]
    RetriesExhausted {
        /// The step.
        step: Step,
        /// The URL's host.
        host: String,
        /// Attempts made.
        attempts: u32,
        /// The last attempt's failure.
        last: Failure,
    },

    /// The overall deadline was reached (or would be, before the next attempt could start).
    #[error(
        "{step} to {host}: the deadline was reached after {attempts} attempt(s) and {elapsed_ms} \
         ms{}; raise boot.deadline or check the service's latency",
        last_failure(last)
    )]
    DeadlineReached {
        /// The step.
        step: Step,
        /// The URL's host.
        host: String,
        /// Attempts made.
        attempts: u32,
        /// Time spent in this call, in milliseconds.
        elapsed_ms: u64,
        /// The last attempt's failure, if an attempt was made.
        last: Option<Failure>,
    },

    /// The server asked to wait (Retry-After) longer than the deadline allows.
    #[error(
        "{step} to {host}: the server answered {status} and asked to retry after {retry_after_s} \
         s, but only {remaining_ms} ms remain before the deadline; the service is throttling \
         this VM, try again later"
    )]
    RetryAfterBeyondDeadline {
        /// The step.
        step: Step,
        /// The URL's host.
        host: String,
        /// The status (429 or 503 usually).
        status: u16,
        /// The server's Retry-After, in seconds.
        retry_after_s: u64,
        /// Remaining time, in milliseconds.
        remaining_ms: u64,
    },

    /// The response body exceeds the size limit.
    #[error(
        "{step} to {host}: the response body exceeds {limit} bytes (found at least {found}); \
         this is not an answer of the expected service (check the URL)"
    )]
    BodyTooLarge {
        /// The step.
        step: Step,
        /// The URL's host.
        host: String,
        /// The limit in bytes.
        limit: usize,
        /// Bytes seen (or announced).
        found: u64,
    },
}

impl ErrorCode for NetError {
    fn code(&self) -> &'static str {
        match self {
            Self::CaFileUnreadable { .. } => "net-ca-file-unreadable",
            Self::CaFileInvalid { .. } => "net-ca-file-invalid",
            Self::ClientInit { .. } => "net-client-init",
            Self::BadUrl { .. } => "net-bad-url",
            Self::BearerInvalid { .. } => "net-bearer-invalid",
            Self::RequestInvalid { .. } => "net-request-invalid",
            Self::Tls { .. } => "net-tls-failed",
            Self::RetriesExhausted { .. } => "net-retries-exhausted",
            Self::DeadlineReached { .. } => "net-deadline-reached",
            Self::RetryAfterBeyondDeadline { .. } => "net-retry-after-beyond-deadline",
            Self::BodyTooLarge { .. } => "net-body-too-large",
        }
    }
}
