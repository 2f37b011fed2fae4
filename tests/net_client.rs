//! `skrd::net::HttpClient` against a real `skr-emulator serve`: trust of the emulator CA through
//! `trust.ca_files`, retries of 5xx / 429 + Retry-After / garbage / truncated / dropped answers,
//! timeouts and the overall deadline. Retry counts are read from the emulator's per-endpoint
//! request counters (its own record of what arrived), not from the client's output.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[path = "net_fixture/mod.rs"]
mod net_fixture;

use std::time::Duration;

use net_fixture::{rt, Fixture};
use serde_json::{json, Value};
use skrd::error::ErrorCode;
use skrd::net::{Deadline, HttpClient, HttpRequest, NetError, NetSettings, Step};

trait Requests {
    fn thim(&self) -> HttpRequest;
    fn openid(&self) -> HttpRequest;
    fn send_thim(&self, settings: &NetSettings) -> Result<skrd::net::HttpResponse, NetError>;
}

impl Requests for Fixture {
    fn thim(&self) -> HttpRequest {
        let url = format!("{}/metadata/THIM/amd/certification", self.emu.url("imds"));
        HttpRequest::get(Step::Thim, url.parse().unwrap()).header("Metadata", "true")
    }

    fn openid(&self) -> HttpRequest {
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.emu.url("attestation")
        );
        HttpRequest::get(Step::OpenIdConfig, url.parse().unwrap())
    }

    /// One THIM GET with a client built from `settings`, under a 60 s deadline.
    fn send_thim(&self, settings: &NetSettings) -> Result<skrd::net::HttpResponse, NetError> {
        let client = HttpClient::new(settings).unwrap();
        let deadline = Deadline::after(Duration::from_secs(60));
        rt().block_on(client.send(self.thim(), &deadline))
    }
}

#[test]
fn https_with_emulator_ca_and_plain_http_imds() {
    let f = Fixture::start();
    let client = HttpClient::new(&f.settings()).unwrap();
    let deadline = Deadline::after(Duration::from_secs(60));
    let rt = rt();
    let r = rt.block_on(client.send(f.openid(), &deadline)).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.attempts, 1);
    let doc: Value = serde_json::from_slice(&r.body).unwrap();
    assert!(doc["jwks_uri"].is_string());
    let r = rt.block_on(client.send(f.thim(), &deadline)).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(f.counter("thim"), 1);
    assert_eq!(f.counter("attestation-meta"), 1);
    let timings = client.timings();
    assert_eq!(timings.len(), 2);
    assert_eq!(timings[0].step, Step::OpenIdConfig);
}

#[test]
fn untrusted_server_certificate_is_not_retried() {
    let f = Fixture::start();
    let mut s = f.settings();
    s.ca_files.clear();
    let client = HttpClient::new(&s).unwrap();
    let deadline = Deadline::after(Duration::from_secs(60));
    let err = rt()
        .block_on(client.send(f.openid(), &deadline))
        .unwrap_err();
    assert_eq!(err.code(), "net-tls-failed", "{err}");
    // The handshake fails before any request reaches the service.
    assert_eq!(f.counter("attestation-meta"), 0);
}

#[test]
fn server_errors_then_success() {
    let f = Fixture::start();
    f.faults(json!({"thim": {"status": 503, "times": 2}}));
    let r = f.send_thim(&f.settings()).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.attempts, 3);
    assert_eq!(f.counter("thim"), 3);
}

#[test]
fn other_statuses_are_returned_not_retried() {
    let f = Fixture::start();
    f.faults(json!({"thim": {"status": 404, "body": "{\"error\":\"nope\"}"}}));
    let r = f.send_thim(&f.settings()).unwrap();
    assert_eq!(r.status, 404);
    assert_eq!(r.attempts, 1);
    assert_eq!(f.counter("thim"), 1);
}

#[test]
fn retries_exhausted_names_step_host_attempts_and_last_failure() {
    let f = Fixture::start();
    f.faults(json!({"thim": {"status": 500}}));
    let err = f.send_thim(&f.settings()).unwrap_err();
    assert_eq!(err.code(), "net-retries-exhausted");
    match &err {
        NetError::RetriesExhausted {
            step,
            host,
            attempts,
            ..
        } => {
            assert_eq!(*step, Step::Thim);
            assert_eq!(host, "127.0.0.1");
            assert_eq!(*attempts, 5);
        }
        other => panic!("{other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("thim") && msg.contains("HTTP status 500"),
        "{msg}"
    );
    // retries = 4 → 5 attempts arrived at the emulator.
    assert_eq!(f.counter("thim"), 5);
}

#[test]
fn retry_after_is_honoured_not_earlier() {
    let f = Fixture::start();
    f.faults(json!({"thim": {"status": 429, "retry_after": 2, "times": 1}}));
    let client = HttpClient::new(&f.settings()).unwrap();
    let req = f.thim();
    let worker = std::thread::spawn(move || {
        let deadline = Deadline::after(Duration::from_secs(60));
        rt().block_on(client.send(req, &deadline))
    });
    // Wait for the first (throttled) request to reach the emulator...
    let mut waited = 0;
    while f.counter("thim") == 0 {
        std::thread::sleep(Duration::from_millis(20));
        waited += 1;
        assert!(waited < 3000, "the first request never arrived");
    }
    // ...then, one second later (half the Retry-After), the retry must not have arrived yet.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(f.counter("thim"), 1, "retried before Retry-After elapsed");
    let r = worker.join().unwrap().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.attempts, 2);
    assert_eq!(f.counter("thim"), 2);
}

#[test]
fn retry_after_beyond_the_deadline_fails_at_once() {
    let f = Fixture::start();
    f.faults(json!({"thim": {"status": 503, "retry_after": 600}}));
    let client = HttpClient::new(&f.settings()).unwrap();
    let deadline = Deadline::after(Duration::from_secs(30));
    let err = rt().block_on(client.send(f.thim(), &deadline)).unwrap_err();
    assert_eq!(err.code(), "net-retry-after-beyond-deadline", "{err}");
    assert!(
        !deadline.expired(),
        "waited for the deadline instead of failing"
    );
    assert_eq!(f.counter("thim"), 1);
}

#[test]
fn garbage_truncated_and_dropped_answers_are_retried() {
    let f = Fixture::start();
    let client = HttpClient::new(&f.settings()).unwrap();
    let rt = rt();
    for (fault, name) in [
        (json!({"garbage": true, "times": 1}), "garbage"),
        (json!({"truncate": true, "times": 1}), "truncate"),
        (json!({"drop": true, "times": 1}), "drop"),
        (json!({"garbage": true, "times": 2}), "garbage twice"),
    ] {
        f.faults(json!({ "attestation-meta": fault.clone() }));
        let before = f.counter("attestation-meta");
        let deadline = Deadline::after(Duration::from_secs(60));
        let r = rt
            .block_on(client.send(f.openid(), &deadline))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let times = fault["times"].as_u64().unwrap();
        assert_eq!(r.status, 200, "{name}");
        assert_eq!(u64::from(r.attempts), times + 1, "{name}");
        serde_json::from_slice::<Value>(&r.body).unwrap();
        assert_eq!(f.counter("attestation-meta") - before, times + 1, "{name}");
    }
}

#[test]
fn garbage_every_time_ends_in_a_clear_error() {
    let f = Fixture::start();
    f.faults(json!({"thim": {"garbage": true}}));
    let err = f.send_thim(&f.settings()).unwrap_err();
    assert_eq!(err.code(), "net-retries-exhausted");
    assert!(err.to_string().contains("not JSON"), "{err}");
    assert_eq!(f.counter("thim"), 5);
}

#[test]
fn per_attempt_timeout_then_success() {
    let f = Fixture::start();
    f.faults(json!({"thim": {"delay_ms": 4000, "times": 1}}));
    let mut s = f.settings();
    s.request_timeout = Duration::from_millis(500);
    let r = f.send_thim(&s).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.attempts, 2);
    assert_eq!(f.counter("thim"), 2);
}

#[test]
fn deadline_reached_is_a_clear_error_and_not_overrun() {
    let f = Fixture::start();
    // Every answer takes 20 s; the request timeout (10 s) would allow it, the deadline not.
    f.faults(json!({"thim": {"delay_ms": 20000}}));
    let client = HttpClient::new(&f.settings()).unwrap();
    let deadline = Deadline::after(Duration::from_millis(1500));
    let err = rt().block_on(client.send(f.thim(), &deadline)).unwrap_err();
    assert_eq!(err.code(), "net-deadline-reached", "{err}");
    match &err {
        NetError::DeadlineReached { step, attempts, .. } => {
            assert_eq!(*step, Step::Thim);
            assert_eq!(*attempts, 1);
        }
        other => panic!("{other:?}"),
    }
    // It returned at the deadline, long before the 20 s answer (generous margin: loaded CI).
    assert!(
        std::time::Instant::now() < deadline.instant() + Duration::from_secs(8),
        "ran past the deadline"
    );
    assert_eq!(f.counter("thim"), 1);
}

#[test]
fn expired_deadline_sends_nothing() {
    let f = Fixture::start();
    let client = HttpClient::new(&f.settings()).unwrap();
    let deadline = Deadline::after(Duration::ZERO);
    let err = rt().block_on(client.send(f.thim(), &deadline)).unwrap_err();
    assert_eq!(err.code(), "net-deadline-reached");
    assert_eq!(f.counter("thim"), 0);
}

#[test]
fn unreachable_host_is_retried_then_reported() {
    // A loopback port nobody listens on: bind, note the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let s = NetSettings {
        retries: 2,
        backoff_initial: Duration::from_millis(10),
        backoff_max: Duration::from_millis(20),
        ..NetSettings::default()
    };
    let client = HttpClient::new(&s).unwrap();
    let url = format!("http://127.0.0.1:{port}/metadata/THIM/amd/certification");
    let deadline = Deadline::after(Duration::from_secs(60));
    let err = rt()
        .block_on(client.send(
            HttpRequest::get(Step::Thim, url.parse().unwrap()),
            &deadline,
        ))
        .unwrap_err();
    assert_eq!(err.code(), "net-retries-exhausted");
    let msg = err.to_string();
    assert!(
        msg.contains("3 attempt(s)") && msg.contains("connection failed"),
        "{msg}"
    );
}

#[test]
fn ca_file_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    let s = NetSettings {
        ca_files: vec![missing.clone()],
        ..NetSettings::default()
    };
    let e = HttpClient::new(&s).unwrap_err();
    assert_eq!(e.code(), "net-ca-file-unreadable");
    assert!(e.to_string().contains("missing.pem"));
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    let s = NetSettings {
        ca_files: vec![junk],
        ..NetSettings::default()
    };
    assert_eq!(
        HttpClient::new(&s).unwrap_err().code(),
        "net-ca-file-invalid"
    );
}

#[test]
fn bearer_is_sent_but_never_logged_in_errors() {
    let f = Fixture::start();
    // The vault's GET endpoint fails every time: the error of the failed call (Display and
    // Debug) never contains the bearer token.
    f.faults(json!({"vault-get": {"status": 500}}));
    let client = HttpClient::new(&f.settings()).unwrap();
    let url = format!("{}/keys/k?api-version=7.4", f.emu.url("vault"));
    let req = HttpRequest::get(Step::KeyGet, url.parse().unwrap())
        .with_bearer(skrd::secret::Secret::new(b"SECRET-TOKEN-BYTES".to_vec()));
    let deadline = Deadline::after(Duration::from_secs(60));
    let err = rt().block_on(client.send(req, &deadline)).unwrap_err();
    assert!(!format!("{err} {err:?}").contains("SECRET-TOKEN-BYTES"));
    assert_eq!(f.counter("vault-get"), 5);
}

#[test]
fn slow_body_counts_against_the_attempt_timeout() {
    let f = Fixture::start();
    // The THIM document (~5 KiB) at 200 bytes/s takes far longer than the 1 s attempt limit.
    f.faults(json!({"thim": {"slow_bytes_per_sec": 200, "times": 1}}));
    let mut s = f.settings();
    s.request_timeout = Duration::from_secs(1);
    let r = f.send_thim(&s).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.attempts, 2);
    assert_eq!(f.counter("thim"), 2);
}
