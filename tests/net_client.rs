//! `skrd::net::HttpClient` against a real `skr-emulator serve`: trust of the emulator CA through
//! `trust.ca_files`, retries of 5xx / 429 + Retry-After / garbage / truncated / dropped answers,
//! timeouts and the overall deadline. Retry counts are read from the emulator's per-endpoint
//! request counters (its own record of what arrived), not from the client's output.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::emulator::Emu;
use serde_json::{json, Value};
use skrd::error::ErrorCode;
use skrd::net::{Deadline, HttpClient, HttpRequest, NetError, NetSettings, Step};

struct Fixture {
    _dir: tempfile::TempDir,
    emu: Emu,
    admin: reqwest::blocking::Client,
}

impl Fixture {
    fn start() -> Self {
        let dir = common::fresh_state_dir();
        let emu = Emu::start(dir.path(), &[]);
        let admin = emu.client(Duration::from_secs(10));
        Self {
            _dir: dir,
            emu,
            admin,
        }
    }

    fn faults(&self, table: Value) {
        let r = self
            .admin
            .post(format!("{}/faults", self.emu.url("admin")))
            .body(table.to_string())
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
    }

    fn counter(&self, endpoint: &str) -> u64 {
        let v: Value = self
            .admin
            .get(format!("{}/counters", self.emu.url("admin")))
            .send()
            .unwrap()
            .json()
            .unwrap();
        v[endpoint].as_u64().unwrap_or(0)
    }

    fn settings(&self) -> NetSettings {
        NetSettings {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            retries: 4,
            backoff_initial: Duration::from_millis(20),
            backoff_max: Duration::from_millis(100),
            ca_files: vec![PathBuf::from(self.emu.url("ca_pem"))],
        }
    }

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
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
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
    let client = HttpClient::new(&f.settings()).unwrap();
    let deadline = Deadline::after(Duration::from_secs(60));
    let r = rt().block_on(client.send(f.thim(), &deadline)).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.attempts, 3);
    assert_eq!(f.counter("thim"), 3);
}

#[test]
fn other_statuses_are_returned_not_retried() {
    let f = Fixture::start();
    f.faults(json!({"thim": {"status": 404, "body": "{\"error\":\"nope\"}"}}));
    let client = HttpClient::new(&f.settings()).unwrap();
    let deadline = Deadline::after(Duration::from_secs(60));
    let r = rt().block_on(client.send(f.thim(), &deadline)).unwrap();
    assert_eq!(r.status, 404);
    assert_eq!(r.attempts, 1);
    assert_eq!(f.counter("thim"), 1);
}

#[test]
fn retries_exhausted_names_step_host_attempts_and_last_failure() {
    let f = Fixture::start();
    f.faults(json!({"thim": {"status": 500}}));
    let client = HttpClient::new(&f.settings()).unwrap();
    let deadline = Deadline::after(Duration::from_secs(60));
    let err = rt().block_on(client.send(f.thim(), &deadline)).unwrap_err();
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
