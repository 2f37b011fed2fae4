//! Fault injection on a whole run (raw SNP and vTPM flows, skr-emulator's fault table): every
//! outage ends in a successful retry or a clear error, and never runs past the deadline. The
//! retry counts come from the emulator's per-endpoint counters, not from timing. Tokens injected
//! in place of the provider's answer (expired, forged) are refused with their specific codes
//! before any key is asked for.
//!
//! "Never past the deadline" is checked tightly: a run that ends on its deadline returns within
//! [`DEADLINE_SLACK`] of it. The in-flight HTTP attempt is cancelled at the deadline itself (its
//! timeout is min(request timeout, time left), src/net/client.rs); the slack covers dropping
//! that attempt, returning the error through the run, and scheduling on a loaded 2-core runner.
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

/// How far past its deadline a run may return (see the module docs).
const DEADLINE_SLACK: Duration = Duration::from_millis(1500);

/// Asserts that a run that failed on its deadline returned at (not before) the deadline and
/// within [`DEADLINE_SLACK`] after it.
fn ended_on_the_deadline(deadline: &Deadline, returned: Instant) {
    let past = returned.saturating_duration_since(deadline.instant());
    eprintln!("returned {past:?} after the deadline");
    assert!(
        returned >= deadline.instant(),
        "gave up {:?} before the deadline",
        deadline.instant() - returned
    );
    assert!(
        past <= DEADLINE_SLACK,
        "returned {past:?} after the deadline (slack {DEADLINE_SLACK:?})"
    );
}

fn setup() -> (Env, String, Vec<u8>) {
    let env = Env::start("sev-guest", None, "");
    let p = policy(&env.authority(), "x-ms-attestation-type", "sevsnpvm");
    let (url, material) = env.import("k", KeyType::Rsa(2048), &p);
    (env, url, material)
}

fn run(env: &Env, url: &str, deadline: Duration) -> Result<RunOutcome, FlowError> {
    run_until(env, url, &Deadline::after(deadline))
}

/// One run with the test firmware releasing the key at `url`, under `deadline`.
fn run_until(env: &Env, url: &str, deadline: &Deadline) -> Result<RunOutcome, FlowError> {
    let services = env.services();
    block_on(skrd::release::run(
        &services,
        test_firmware_source(env),
        &[key_request(url, WrapAlgorithm::RsaAesKeyWrap256)],
        &roots(env),
        deadline,
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
fn a_vault_outage_is_reported_as_the_release_s_not_the_identity_s() {
    let (env, url, _) = setup();
    env.faults(&json!({"vault-release": {"status": 503}}));
    let err = run(&env, &url, Duration::from_secs(30)).unwrap_err();
    assert_eq!(err.code(), "net-retries-exhausted", "{err}");
    let message = err.to_string();
    assert!(message.contains("key-release"), "{message}");
    // The identity token was fine: the message must not send the operator to the identity.
    assert!(!message.contains("managed-identity"), "{message}");
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
    let deadline = Deadline::after(Duration::from_secs(3));
    let err = run_until(&env, &url, &deadline).unwrap_err();
    let returned = Instant::now();
    assert_eq!(err.code(), "net-deadline-reached", "{err}");
    assert!(err.to_string().contains("attest"), "{err}");
    ended_on_the_deadline(&deadline, returned);
}

#[test]
fn retry_after_beyond_the_deadline_fails_at_once() {
    // Key Vault asks for 30 s with 10 s left: waiting could only end past the deadline, so the
    // run says so right away instead of sleeping into it.
    let (env, url, _) = setup();
    env.faults(&json!({"vault-release": {"status": 429, "retry_after": 30}}));
    let deadline = Deadline::after(Duration::from_secs(10));
    let err = run_until(&env, &url, &deadline).unwrap_err();
    assert_eq!(err.code(), "net-retry-after-beyond-deadline", "{err}");
    assert!(!deadline.expired(), "waited into the deadline");
    assert_eq!(env.counters()["vault-release"], 1);
}

// ---- tokens injected in place of the provider's answer (raw SNP flow) --------------------

/// The claims of a genuine token of this emulator (one attestation-only run).
fn genuine_claims(env: &Env) -> serde_json::Value {
    let first = block_on(skrd::release::run(
        &env.services(),
        test_firmware_source(env),
        &[],
        &[],
        &Deadline::after(Duration::from_secs(60)),
    ))
    .unwrap();
    let (_, claims) =
        skrd::format::jose::jwt::decode_unverified(first.attestation.token().as_bytes()).unwrap();
    claims
}

/// The provider answers `token` (SevSnpVm's `{"token": JWT}` body) to every attestation.
fn inject(env: &Env, token: &str) {
    let body = json!({ "token": token }).to_string();
    env.faults(&json!({"attestation-sevsnpvm": {"status": 200, "body": body}}));
    env.reset_counters();
}

#[test]
fn an_expired_token_is_refused_before_any_release() {
    use skrd::emulator::server::state::{load_or_create_rsa, maa_kid, MAA_KEY};
    let (env, url, _) = setup();
    let mut claims = genuine_claims(&env);
    // Signed by the provider's own key, issued 9 h ago, expired 1 h ago (MAA tokens live 8 h),
    // far beyond the 300 s allowance.
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    claims["iat"] = json!(now - 9 * 3600);
    claims["nbf"] = json!(now - 9 * 3600);
    claims["exp"] = json!(now - 3600);
    let signer = load_or_create_rsa(env.state.path(), MAA_KEY, maa_kid).unwrap();
    inject(&env, &signer.sign_jwt(&claims, &[]).unwrap());
    let err = run(&env, &url, Duration::from_secs(30)).unwrap_err();
    assert_eq!(err.code(), "jwt-expired", "{err}");
    assert!(err.is_refusal());
    let c = env.counters();
    assert_eq!(c["attestation-sevsnpvm"], 1, "{c}");
    assert!(c.get("vault-release").is_none_or(|n| n == 0), "{c}");
}

#[test]
fn a_forged_token_is_refused_before_any_release() {
    use skrd::emulator::server::state::{load_or_create_rsa, maa_kid, MAA_KEY};
    let (env, url, _) = setup();
    let claims = genuine_claims(&env);
    let provider = load_or_create_rsa(env.state.path(), MAA_KEY, maa_kid).unwrap();
    // A key the provider does not publish (python3 `cryptography` makes it, not skrd).
    let forger_dir = tempfile::tempdir().unwrap();
    common::python(
        r#"
import sys
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives import serialization
k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
open(sys.argv[1], "wb").write(k.private_bytes(serialization.Encoding.PEM,
    serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
"#,
        &[forger_dir.path().join("forger.pem").to_str().unwrap()],
    );
    let mut forger = load_or_create_rsa(forger_dir.path(), "forger.pem", maa_kid).unwrap();
    assert_ne!(forger.kid, provider.kid);

    // The provider's kid on a forged signature: refused without refetching the keys.
    forger.kid = provider.kid.clone();
    inject(&env, &forger.sign_jwt(&claims, &[]).unwrap());
    let err = run(&env, &url, Duration::from_secs(30)).unwrap_err();
    assert_eq!(err.code(), "jws-signature-invalid", "{err}");
    assert!(err.is_refusal());
    let c = env.counters();
    assert!(c.get("vault-release").is_none_or(|n| n == 0), "{c}");

    // Its own kid: one refetch of the provider's keys (a rotation would be found), then refused.
    forger.kid = "forged-kid".to_string();
    inject(&env, &forger.sign_jwt(&claims, &[]).unwrap());
    let err = run(&env, &url, Duration::from_secs(30)).unwrap_err();
    assert_eq!(err.code(), "jwt-unknown-kid", "{err}");
    assert!(err.is_refusal());
    let c = env.counters();
    // The run's own fetch, then the one refetch for the unknown kid.
    assert_eq!(c["attestation-certs"], 2, "{c}");
    assert!(c.get("vault-release").is_none_or(|n| n == 0), "{c}");
}

// ---- the vTPM flow under faults --------------------------------------------------------

fn vtpm_setup() -> (Env, Swtpm, String, Vec<u8>) {
    let (env, tpm) = env_with_swtpm();
    let p = policy(
        &env.authority(),
        "x-ms-isolation-tee.x-ms-attestation-type",
        "sevsnpvm",
    );
    let (url, material) = env.import("k", KeyType::Rsa(2048), &p);
    env.reset_counters();
    (env, tpm, url, material)
}

fn vtpm_run(
    env: &Env,
    tpm: &Swtpm,
    url: &str,
    deadline: &Deadline,
) -> Result<RunOutcome, FlowError> {
    block_on(skrd::release::run(
        &env.services(),
        vtpm_source(tpm, env.cfg_dir.path()),
        &[key_request(url, WrapAlgorithm::RsaAesKeyWrap256)],
        &roots(env),
        deadline,
    ))
}

fn attempts(out: &RunOutcome, step: &str) -> u32 {
    out.report
        .http
        .iter()
        .filter(|h| h.step == step)
        .map(|h| h.attempts)
        .sum()
}

#[test]
fn vtpm_flow_retries_server_errors_then_succeeds() {
    let (env, tpm, url, material) = vtpm_setup();
    env.faults(&json!({
        "attestation-azureguest": {"status": 503, "times": 2},
        "vault-release": {"status": 503, "times": 1},
        "imds-token": {"status": 500, "times": 1},
    }));
    let out = vtpm_run(&env, &tpm, &url, &Deadline::after(Duration::from_secs(60))).unwrap();
    assert_eq!(out.keys[0].material.ikm().expose(), material.as_slice());
    let c = env.counters();
    assert_eq!(c["attestation-azureguest"], 3, "{c}");
    assert_eq!(c["vault-release"], 2, "{c}");
    assert_eq!(c["imds-token"], 2, "{c}");
    assert_eq!(attempts(&out, "attest"), 3);
    assert_eq!(attempts(&out, "key-release"), 2);
}

#[test]
fn vtpm_flow_honours_retry_after() {
    let (env, tpm, url, material) = vtpm_setup();
    env.faults(&json!({
        "attestation-azureguest": {"status": 429, "retry_after": 1, "times": 1},
        "vault-release": {"status": 429, "retry_after": 2, "times": 1},
    }));
    let out = vtpm_run(&env, &tpm, &url, &Deadline::after(Duration::from_secs(60))).unwrap();
    assert_eq!(out.keys[0].material.ikm().expose(), material.as_slice());
    let c = env.counters();
    assert_eq!(c["attestation-azureguest"], 2, "{c}");
    assert_eq!(c["vault-release"], 2, "{c}");
    // Each step waited at least what the server asked for before its second attempt.
    for (step, wait_s) in [("attest", 1.0), ("key-release", 2.0)] {
        let h = out.report.http.iter().find(|h| h.step == step).unwrap();
        assert_eq!(h.attempts, 2, "{step}");
        assert!(h.ms >= wait_s * 1000.0, "{step}: {} ms", h.ms);
    }
}

#[test]
fn vtpm_flow_survives_dropped_connections() {
    let (env, tpm, url, material) = vtpm_setup();
    env.faults(&json!({
        "attestation-azureguest": {"drop": true, "times": 1},
        "attestation-meta": {"drop": true, "times": 1},
        "vault-release": {"drop": true, "times": 1},
        "imds-token": {"drop": true, "times": 1},
    }));
    let out = vtpm_run(&env, &tpm, &url, &Deadline::after(Duration::from_secs(60))).unwrap();
    assert_eq!(out.keys[0].material.ikm().expose(), material.as_slice());
    let c = env.counters();
    for e in [
        "attestation-azureguest",
        "attestation-meta",
        "vault-release",
        "imds-token",
    ] {
        assert_eq!(c[e], 2, "{e}: {c}");
    }
}

#[test]
fn vtpm_flow_stops_at_the_deadline() {
    let (env, tpm, url, _) = vtpm_setup();
    env.faults(&json!({"vault-release": {"delay_ms": 20000}}));
    let deadline = Deadline::after(Duration::from_secs(4));
    let err = vtpm_run(&env, &tpm, &url, &deadline).unwrap_err();
    let returned = Instant::now();
    assert_eq!(err.code(), "net-deadline-reached", "{err}");
    assert!(err.to_string().contains("release"), "{err}");
    ended_on_the_deadline(&deadline, returned);
    // The attestation itself went through: only the release ran into the deadline.
    assert_eq!(env.counters()["attestation-azureguest"], 1);
}
