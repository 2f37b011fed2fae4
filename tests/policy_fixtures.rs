//! Release policies and MAA token claims from `tests/fixtures/real/` against the independent
//! expectations in `tests/fixtures/independent/policy_expected.json`.
//!
//! That JSON is produced by `tests/fixtures/independent/policy_expected.py`, a python evaluator
//! written from the Key Vault grammar page and PROTOCOLS.md §7 (not from skrd's code):
//! `python3 tests/fixtures/independent/policy_expected.py > tests/fixtures/independent/policy_expected.json`.
//! Every policy's validity (and error code), the document shape, the authorities, and for every
//! (policy, claims) pair the decision, the authority and each unmet condition must agree.

// Tests may unwrap and panic (Cargo.toml [lints]: the deny is for non-test code).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::Value;
use skrd::error::ErrorCode;
use skrd::format::akv::policy::{
    fuzz_policy, load_document, read_claims, Evaluation, PolicySource,
};
use std::path::Path;

const REAL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/real");
const EXPECTED: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/independent/policy_expected.json"
));

fn read(rel: &str) -> Vec<u8> {
    std::fs::read(Path::new(REAL).join(rel)).unwrap()
}

fn expected() -> Value {
    serde_json::from_str(EXPECTED).unwrap()
}

#[test]
fn every_real_policy_is_covered() {
    // Guards against fixtures added later without an expectation.
    let exp = expected();
    let covered = exp["policies"].as_object().unwrap();
    let mut found = Vec::new();
    for dir in std::fs::read_dir(Path::new(REAL).join("policies")).unwrap() {
        for f in std::fs::read_dir(dir.unwrap().path()).unwrap() {
            let p = f.unwrap().path();
            found.push(p.strip_prefix(REAL).unwrap().to_string_lossy().into_owned());
        }
    }
    assert_eq!(found.len(), 16);
    for rel in found {
        assert!(covered.contains_key(&rel), "{rel} has no expectation");
    }
}

#[test]
fn real_policies_parse_as_expected() {
    let exp = expected();
    let mut valid = 0;
    for (rel, want) in exp["policies"].as_object().unwrap() {
        let got = load_document(&read(rel));
        match got {
            Ok(loaded) => {
                assert_eq!(want["valid"], true, "{rel}: skrd accepted it");
                valid += 1;
                assert_eq!(want["source"], loaded.source.as_str(), "{rel}: source");
                let auths: Vec<&str> = loaded
                    .policy
                    .authorities
                    .iter()
                    .map(|a| a.authority.as_str())
                    .collect();
                assert_eq!(want["authorities"], serde_json::json!(auths), "{rel}");
                // The canonical re-encoding parses back to the same policy.
                let again = load_document(loaded.policy.encode_data().as_bytes()).unwrap();
                assert_eq!(again.policy, loaded.policy, "{rel}: round trip");
            }
            Err(e) => {
                assert_eq!(want["valid"], false, "{rel}: skrd refused it: {e}");
                assert_eq!(want["error"], e.code(), "{rel}: {e}");
            }
        }
    }
    assert_eq!(valid, 17);
}

#[test]
fn inconsistent_doc_example_is_refused_with_its_cause() {
    // PROVENANCE.md: some published policies break the grammar. This one (skr-policy-examples,
    // "cvm-example2") has a top-level allOf, which the grammar forbids ("A policy is an anyOf
    // selector of authorities").
    let err = load_document(&read(
        "policies/ms-docs/skr-policy-examples__cvm-example2.json",
    ))
    .unwrap_err();
    assert_eq!(err.code(), "policy-top-level-allof");
    assert!(err.to_string().contains("rename it to \"anyOf\""), "{err}");
}

fn compare(eval: &Evaluation, want: &Value, label: &str) {
    assert_eq!(want["allowed"], eval.allowed, "{label}: allowed");
    assert_eq!(
        want["authority"],
        serde_json::json!(eval.authority),
        "{label}: authority"
    );
    let want_unmet = want["unmet"].as_array().unwrap();
    assert_eq!(
        want_unmet.len(),
        eval.unmet.len(),
        "{label}: {:#?}",
        eval.unmet
    );
    for (w, g) in want_unmet.iter().zip(&eval.unmet) {
        assert_eq!(w["path"], g.path, "{label}");
        assert_eq!(w["claim"], g.claim, "{label}");
        assert_eq!(w["operator"], g.operator, "{label}");
        assert_eq!(w["expected"], g.expected, "{label}");
        assert_eq!(w["found"], serde_json::json!(g.found), "{label}");
        assert!(!g.reason.is_empty());
    }
}

#[test]
fn real_policies_against_real_tokens() {
    let exp = expected();
    let evaluations = exp["evaluations"].as_array().unwrap();
    assert_eq!(evaluations.len(), 17 * 9);
    let mut allowed = 0;
    for want in evaluations {
        let prel = want["policy"].as_str().unwrap();
        let crel = want["claims"].as_str().unwrap();
        let policy = load_document(&read(prel)).unwrap().policy;
        let claims = read_claims(&read(crel)).unwrap();
        assert_eq!(
            exp["claims"][crel]["iss"], claims["iss"],
            "{crel}: decoded payload"
        );
        let eval = policy.evaluate(&claims);
        compare(&eval, want, &format!("{prel} × {crel}"));
        allowed += usize::from(eval.allowed);
    }
    // Counted in policy_expected.json (python: sum of "allowed").
    assert_eq!(allowed, 25);
}

#[test]
fn trailing_slash_authority_allows_real_token() {
    // public_SKR_policy-datadisk.json lists "https://sharedeus2.eus2.attest.azure.net/" (with
    // slash); the real token's iss has none (PROTOCOLS.md §9.1 trap 21).
    let policy = load_document(&read(
        "policies/cvm-guest-attestation/public_SKR_policy-datadisk.json",
    ))
    .unwrap()
    .policy;
    let claims = read_claims(&read(
        "maa-tokens/jesserc-sevsnp-tee/token-iat1736697400.jwt",
    ))
    .unwrap();
    assert_eq!(claims["iss"], "https://sharedeus2.eus2.attest.azure.net");
    let eval = policy.evaluate(&claims);
    assert!(eval.allowed);
    assert_eq!(
        eval.authority.as_deref(),
        Some("https://sharedeus2.eus2.attest.azure.net/")
    );
}

#[test]
fn explanations_name_the_trap() {
    // A policy written for SevSnpVm tokens (top-level claims) against an AzureGuest token.
    let policy = load_document(&read(
        "policies/ms-docs/skr-policy-examples__cvm-example1.json",
    ))
    .unwrap()
    .policy;
    let claims = read_claims(&read(
        "thomvanl-skr-sample/sample-responses/1-attestation/attestation-response.b64",
    ))
    .unwrap();
    let eval = policy.evaluate(&claims);
    assert!(!eval.allowed);
    assert!(eval.unmet[0]
        .reason
        .contains("x-ms-isolation-tee.x-ms-attestation-type"));
    assert!(eval.unmet[1]
        .reason
        .contains("\"x-ms-isolation-tee.x-ms-compliance-status\""));
    // A Trusted Launch token (no x-ms-isolation-tee) against the CVM data-disk policy.
    let policy = load_document(&read(
        "policies/cvm-guest-attestation/public_SKR_policy-datadisk.json",
    ))
    .unwrap()
    .policy;
    let claims = read_claims(&read(
        "maa-tokens/ms-cvm-guest-attestation-clientlib/ClientLibTests-L643-sharedeus2-iat1649979780.jwt",
    ))
    .unwrap();
    let eval = policy.evaluate(&claims);
    assert!(!eval.allowed);
    assert!(eval
        .unmet
        .iter()
        .all(|u| u.reason.contains("no x-ms-isolation-tee")));
    assert!(eval.unmet[0]
        .reason
        .contains("any one condition of anyOf[1].allOf[0].anyOf"));
}

#[test]
fn release_response_and_bare_data_agree() {
    // The decoded release response's release_policy (no contentType: trap 22) and the policy
    // data published in the docs decode to the same policy as the JSON in the same article.
    let a = load_document(&read(
        "thomvanl-skr-sample/sample-responses/3-keyvault-release-key-decoded/keyvault-release-key-decoded-body.json",
    ))
    .unwrap();
    assert_eq!(a.source, PolicySource::ReleaseResponse);
    assert_eq!(a.immutable, Some(false));
    assert_eq!(a.content_type, None);
    let b = load_document(&read(
        "policies/ms-docs/skr-flow-confidential-vm-sev-snp__akv-release-response-release_policy.data.b64",
    ))
    .unwrap();
    let c = load_document(&read(
        "policies/ms-docs/skr-flow-confidential-vm-sev-snp__cvm-release-policy.json",
    ))
    .unwrap();
    assert_eq!(a.policy, c.policy);
    assert_eq!(b.policy, c.policy);
}

#[test]
fn release_response_jws_body_is_read() {
    // {"value": "<JWS>"}: the payload is the decoded body above (signature not verified here).
    let loaded = load_document(&read(
        "thomvanl-skr-sample/sample-responses/2-keyvault-release-key/keyvault-release-key-reponse-body.json",
    ))
    .unwrap();
    assert_eq!(loaded.source, PolicySource::ReleaseJws);
    assert!(loaded
        .envelope_warnings
        .iter()
        .any(|w| w.code == "release-jws-unverified"));
    assert_eq!(
        loaded.policy.authorities[0].authority,
        "https://sharedweu.weu.attest.azure.net"
    );
}

#[test]
fn import_key_configs_warn_about_placeholders() {
    let loaded = load_document(&read(
        "policies/confidential-sidecar-containers/examples-skr-aci-importkeyconfig.json",
    ))
    .unwrap();
    assert_eq!(loaded.source, PolicySource::ImportKeyConfig);
    let codes: Vec<&str> = loaded.policy.warnings().iter().map(|w| w.code).collect();
    assert!(codes.contains(&"authority-placeholder"), "{codes:?}");
    assert!(codes.contains(&"value-placeholder"), "{codes:?}");
    // sgx-example3 uses "greater", which the grammar page's prose does not allow yet.
    let sgx = load_document(&read(
        "policies/ms-docs/skr-policy-examples__sgx-example3.json",
    ))
    .unwrap();
    let w = sgx.policy.warnings();
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].code, "operator-not-equals");
    assert_eq!(w[0].path, "anyOf[0].allOf[2]");
}

/// Deterministic byte mutations (xorshift), no external crate.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn mutated_real_policies_never_panic() {
    let exp = expected();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let tokens = [
        ":", ",", "{", "}", "[", "]", "\"", "null", "true", "1e999", "-0", "\\u0000", "anyof",
        "allOf", "equals", "exists",
    ];
    for rel in exp["policies"].as_object().unwrap().keys() {
        let original = read(rel);
        for _ in 0..300 {
            let mut data = original.clone();
            for _ in 0..(1 + rng.next() % 4) {
                let len = data.len().max(1) as u64;
                let at = (rng.next() % len) as usize;
                match rng.next() % 4 {
                    0 if !data.is_empty() => {
                        let i = at.min(data.len() - 1);
                        data[i] ^= 1 << (rng.next() % 8);
                    }
                    1 => data.truncate(at),
                    2 if !data.is_empty() => {
                        data.remove(at.min(data.len() - 1));
                    }
                    _ => {
                        let t = tokens[(rng.next() % tokens.len() as u64) as usize];
                        let at = at.min(data.len());
                        data.splice(at..at, t.bytes());
                    }
                }
            }
            fuzz_policy(&data);
        }
    }
    // Deep nesting is refused, not a stack overflow.
    let deep = format!(
        "{{\"version\":\"1.0.0\",\"anyOf\":[{{\"authority\":\"https://a\",\"allOf\":[{}{{\"claim\":\"c\",\"equals\":1}}{}]}}]}}",
        "{\"anyOf\":[".repeat(40),
        "]}".repeat(40)
    );
    assert_eq!(
        load_document(deep.as_bytes()).unwrap_err().code(),
        "policy-too-deep"
    );
    fuzz_policy(deep.as_bytes());
}

#[test]
fn committed_expectations_match_the_python_evaluator() {
    // python3 is a documented test dependency (STYLE.md / brief: python3 + cryptography).
    let out = std::process::Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/independent/policy_expected.py"
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fresh: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(fresh, expected(), "regenerate policy_expected.json");
}
