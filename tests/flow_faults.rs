//! Fault injection on a whole run (raw SNP flow, skr-emulator's fault table): every outage
//! ends in a successful retry or a clear error, and never runs past the deadline. The retry
//! counts come from the emulator's per-endpoint counters, not from timing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "flow_common.rs"]
mod flow_common;

use flow_common::*;
use serde_json::json;
use skrd::attest::error::FlowError;
use skrd::error::ErrorCode;
use skrd::format::jose::release::WrapAlgorithm;
use skrd::net::Deadline;
use skrd::release::RunOutcome;
use std::time::{Duration, Instant};

fn setup() -> (Env, String, Vec<u8>) {
    let env = Env::start("sev-guest", None, "");
    let p = policy(&env.authority(), "x-ms-attestation-type", "sevsnpvm");
    let (url, material) = env.import("k", KeyType::Rsa(2048), &p);
    (env, url, material)
}

fn run(env: &Env, url: &str, deadline: Duration) -> Result<RunOutcome, FlowError> {
    let services = env.services();
    block_on(skrd::release::run(
        &services,
        test_firmware_source(env),
        &[key_request(url, WrapAlgorithm::RsaAesKeyWrap256)],
        &roots(env),
        &Deadline::after(deadline),
    ))
}

#[test]
fn throttled_release_is_retried_after_retry_after() {
    let (env, url, material) = setup();
    env.faults(&json!({"vault-release": {"status": 429, "retry_after": 1, "times": 1}}));
    let out = run(&env, &url, Duration::from_secs(60)).unwrap();
    assert_eq!(out.keys[0].material.ikm().expose(), material.as_slice());
    let c = env.counters();
    // One refused (429) attempt, then the release; both on the emulator's counter.
    assert_eq!(c["vault-release"], 2, "{c}");
    let release = out
        .report
        .http
        .iter()
        .find(|h| h.step == "key-release")
        .unwrap();
    assert_eq!(release.attempts, 2);
}

#[test]
fn server_errors_and_dropped_connections_are_retried() {
    let (env, url, material) = setup();
    env.faults(&json!({
        "attestation-sevsnpvm": {"status": 503, "times": 2},
        "thim": {"drop": true, "times": 1},
        "imds-token": {"status": 500, "times": 1},
        "attestation-certs": {"truncate": true, "times": 1},
    }));
    let out = run(&env, &url, Duration::from_secs(60)).unwrap();
    assert_eq!(out.keys[0].material.ikm().expose(), material.as_slice());
    let c = env.counters();
    assert_eq!(c["attestation-sevsnpvm"], 3, "{c}");
    assert_eq!(c["thim"], 2, "{c}");
}

#[test]
fn garbage_answers_are_retried_then_reported() {
    let (env, url, material) = setup();
    // Once: the retry succeeds.
    env.faults(&json!({"attestation-sevsnpvm": {"garbage": true, "times": 1}}));
    let out = run(&env, &url, Duration::from_secs(30)).unwrap();
    assert_eq!(out.keys[0].material.ikm().expose(), material.as_slice());
    assert_eq!(env.counters()["attestation-sevsnpvm"], 2);
    // Always: after network.retries (4) the error names the step and the cause.
    env.faults(&json!({"attestation-sevsnpvm": {"garbage": true}}));
    let err = run(&env, &url, Duration::from_secs(30)).unwrap_err();
    assert_eq!(err.code(), "net-retries-exhausted", "{err}");
    assert!(err.to_string().contains("attest"), "{err}");
    assert!(err.to_string().contains("not JSON"), "{err}");
    assert_eq!(env.counters()["attestation-sevsnpvm"], 2 + 5);
}

#[test]
fn refused_evidence_is_not_retried() {
    let (env, url, _) = setup();
    env.faults(&json!({"attestation-sevsnpvm": {"status": 400, "body": "{\"error\":{\"code\":\"InvalidParameter\",\"message\":\"nope\"}}"}}));
    let err = run(&env, &url, Duration::from_secs(30)).unwrap_err();
    assert_eq!(err.code(), "attest-refused", "{err}");
    assert!(err.to_string().contains("InvalidParameter"), "{err}");
    assert_eq!(env.counters()["attestation-sevsnpvm"], 1);
}

#[test]
fn latency_beyond_the_deadline_stops_at_the_deadline() {
    let (env, url, _) = setup();
    env.faults(&json!({"attestation-sevsnpvm": {"delay_ms": 20000}}));
    let start = Instant::now();
    let err = run(&env, &url, Duration::from_secs(3)).unwrap_err();
    let took = start.elapsed();
    assert_eq!(err.code(), "net-deadline-reached", "{err}");
    assert!(err.to_string().contains("attest"), "{err}");
    // Behaviour, not performance: the run gave up near its 3 s deadline, long before the
    // 20 s the provider would have taken.
    assert!(took < Duration::from_secs(10), "{took:?}");
}
