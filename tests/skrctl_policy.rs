//! `skrctl policy check`: exit statuses, the `--json` schema and the text output, on real
//! policies and real MAA tokens. Expected decisions are those of the independent python
//! evaluator (`tests/fixtures/independent/policy_expected.json`, see tests/policy_fixtures.rs).

// Tests may unwrap and panic (Cargo.toml [lints]: the deny is for non-test code).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::Value;
use std::process::{Command, Output};

const SKRCTL: &str = env!("CARGO_BIN_EXE_skrctl");
const REAL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/real/");

const DATADISK: &str = "policies/cvm-guest-attestation/public_SKR_policy-datadisk.json";
const CVM_EXAMPLE1: &str = "policies/ms-docs/skr-policy-examples__cvm-example1.json";
const CVM_EXAMPLE2: &str = "policies/ms-docs/skr-policy-examples__cvm-example2.json";
const JESSERC: &str = "maa-tokens/jesserc-sevsnp-tee/token-iat1734719094.jwt";
const TRUSTED_LAUNCH: &str =
    "maa-tokens/ms-cvm-guest-attestation-clientlib/ClientLibTests-L643-sharedeus2-iat1649979780.jwt";
const THOMVANL_CLAIMS: &str =
    "thomvanl-skr-sample/sample-responses/1-attestation/attestation-response-body.json";

fn skrctl(args: &[&str]) -> Output {
    Command::new(SKRCTL)
        .args(["--config", "/nonexistent/skrd.toml", "policy", "check"])
        .args(args)
        .output()
        .unwrap()
}

fn real(rel: &str) -> String {
    format!("{REAL}{rel}")
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

#[test]
fn allowed_exits_0() {
    // python evaluator: allowed by "https://sharedeus2.eus2.attest.azure.net/".
    let out = skrctl(&[&real(DATADISK), "--token", &real(JESSERC), "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let v = json_of(&out);
    assert_eq!(v["valid"], true);
    assert_eq!(v["allowed"], true);
    assert_eq!(v["authority"], "https://sharedeus2.eus2.attest.azure.net/");
    assert_eq!(v["unmet"], serde_json::json!([]));
    assert_eq!(v["signature_verified"], false);
    assert!(v["note"].as_str().unwrap().contains("skrctl token verify"));
}

#[test]
fn denied_exits_1_with_unmet_conditions() {
    let out = skrctl(&[&real(DATADISK), "--token", &real(TRUSTED_LAUNCH), "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let v = json_of(&out);
    assert_eq!(v["allowed"], false);
    let unmet = v["unmet"].as_array().unwrap();
    assert_eq!(unmet.len(), 3);
    assert_eq!(unmet[2]["path"], "anyOf[1].allOf[1]");
    assert_eq!(
        unmet[2]["claim"],
        "x-ms-isolation-tee.x-ms-compliance-status"
    );
    assert_eq!(unmet[2]["operator"], "equals");
    assert_eq!(unmet[2]["expected"], "azure-compliant-cvm");
    assert_eq!(unmet[2]["found"], Value::Null);
    for key in ["path", "claim", "operator", "expected", "found", "reason"] {
        assert!(unmet[0].get(key).is_some(), "unmet entry lacks {key}");
    }
}

#[test]
fn denied_text_output_explains() {
    let out = skrctl(&[&real(CVM_EXAMPLE1), "--claims", &real(THOMVANL_CLAIMS)]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("release: DENIED"), "{text}");
    assert!(
        text.contains(
            "anyOf[0].allOf[0]: x-ms-attestation-type equals \"sevsnpvm\" (found: \"azurevm\")"
        ),
        "{text}"
    );
    assert!(
        text.contains("x-ms-isolation-tee.x-ms-compliance-status"),
        "{text}"
    );
    assert!(text.contains("without verifying the signature"), "{text}");
}

#[test]
fn valid_without_token_exits_0() {
    let out = skrctl(&[&real(DATADISK), "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let v = json_of(&out);
    assert_eq!(v["valid"], true);
    assert_eq!(v["error"], Value::Null);
    assert_eq!(v["allowed"], Value::Null);
    assert_eq!(v["source"], "policy");
}

#[test]
fn invalid_policy_exits_2() {
    let out = skrctl(&[&real(CVM_EXAMPLE2), "--token", &real(JESSERC), "--json"]);
    assert_eq!(out.status.code(), Some(2));
    let v = json_of(&out);
    assert_eq!(v["valid"], false);
    assert_eq!(v["error"]["code"], "policy-top-level-allof");
    assert_eq!(v["allowed"], Value::Null);
    // Text mode: the error on stderr, nothing on stdout.
    let out = skrctl(&[&real(CVM_EXAMPLE2)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("policy-top-level-allof"));
}

#[test]
fn grammar_error_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("p.json");
    std::fs::write(
        &p,
        r#"{"version":"1.0.0","anyOf":[{"authority":"https://a","allOf":[
            {"claim":"x","equals":"1"},{"claim":"y","equals":"1"},
            {"claim":"z","equals":"a","greater":1}]}]}"#,
    )
    .unwrap();
    let out = skrctl(&[p.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(2));
    let v = json_of(&out);
    assert_eq!(v["error"]["code"], "policy-two-operators");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("anyOf[0].allOf[2]: condition has 2 operators (equals, greater)"));
}

#[test]
fn unusable_token_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("t.jwt");
    std::fs::write(&t, "not-a-token").unwrap();
    let out = skrctl(&[&real(DATADISK), "--token", t.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(json_of(&out)["error"]["code"], "claims-token-segments");
    let out = skrctl(&[&real(DATADISK), "--token", "/nonexistent/token.jwt"]);
    assert_eq!(out.status.code(), Some(2));
    let out = skrctl(&[
        &real(DATADISK),
        "--token",
        &real(JESSERC),
        "--claims",
        &real(THOMVANL_CLAIMS),
    ]);
    assert_eq!(out.status.code(), Some(2), "--token and --claims conflict");
}

#[test]
fn help_says_signature_is_not_verified() {
    let out = Command::new(SKRCTL)
        .args(["policy", "check", "--help"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("skrctl token verify"), "{text}");
}

// ---- --key-url: the policy of a live key (skr-emulator) -----------------------------------

mod common;
#[path = "net_fixture/mod.rs"]
mod net_fixture;

#[test]
fn key_url_reads_the_live_keys_policy() {
    use base64::Engine;
    use serde_json::json;
    let f = net_fixture::Fixture::start();
    let emu = &f.emu;
    let http = emu.client(std::time::Duration::from_secs(30));
    let token: Value = http
        .get(format!(
            "{}/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fvault.azure.net",
            emu.url("imds")
        ))
        .header("Metadata", "true")
        .send()
        .unwrap()
        .json()
        .unwrap();
    let authority = emu.url("attestation");
    let policy = json!({"version": "1.0.0", "anyOf": [{"authority": authority, "allOf": [
        {"claim": "x-ms-attestation-type", "equals": "sevsnpvm"}]}]});
    let body = json!({"kty": "RSA-HSM", "key_size": 2048, "attributes": {"exportable": true},
        "release_policy": {"contentType": "application/json; charset=utf-8",
            "data": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(policy.to_string())}});
    let r = http
        .post(format!(
            "{}/keys/live/create?api-version=7.4",
            emu.url("vault")
        ))
        .bearer_auth(token["access_token"].as_str().unwrap())
        .json(&body)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);

    let dir = tempfile::tempdir().unwrap();
    let conf = f.config_file(dir.path());
    let key_url = format!("{}/keys/live", emu.url("vault"));
    let claims = dir.path().join("claims.json");
    let run = |extra: &[&str]| {
        Command::new(SKRCTL)
            .args([
                "--config",
                conf.to_str().unwrap(),
                "policy",
                "check",
                "--key-url",
                &key_url,
            ])
            .args(extra)
            .output()
            .unwrap()
    };
    // Valid policy, no claims: exit 0.
    let out = run(&["--json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(json_of(&out)["valid"], true);
    // Claims that satisfy it, and claims that do not.
    let evaluate = |attestation_type: &str| {
        let c = json!({"iss": authority, "x-ms-attestation-type": attestation_type});
        std::fs::write(&claims, c.to_string()).unwrap();
        run(&["--claims", claims.to_str().unwrap(), "--json"])
    };
    let out = evaluate("sevsnpvm");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(json_of(&out)["allowed"], true);
    let out = evaluate("sgx");
    assert_eq!(out.status.code(), Some(1));
    let v = json_of(&out);
    assert_eq!(v["allowed"], false);
    assert_eq!(v["unmet"][0]["claim"], "x-ms-attestation-type");
    // A key that does not exist: unusable, with the vault's answer.
    let missing = format!("{}/keys/nope", emu.url("vault"));
    let out = Command::new(SKRCTL)
        .args([
            "--config",
            conf.to_str().unwrap(),
            "policy",
            "check",
            "--key-url",
            &missing,
            "--json",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(json_of(&out)["error"]["code"], "key-get-not-found");
    // Neither a file nor --key-url: usage error.
    let out = Command::new(SKRCTL)
        .args(["policy", "check"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
