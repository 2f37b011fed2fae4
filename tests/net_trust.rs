//! `skrd::attest::trust::ProviderKeys` against a real `skr-emulator serve` (its attestation
//! provider's OpenID metadata and /certs) and against the real MAA tokens of
//! tests/fixtures/real/maa-tokens/ (PROTOCOLS.md §5.1, §5.5). Fetch counts come from the
//! emulator's per-endpoint counters. Tokens for the emulator are signed with its state
//! directory's MAA key, as emulator_vault.rs does; forged ones with another key.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[path = "net_fixture/mod.rs"]
mod net_fixture;

use net_fixture::{deadline, rt, Fixture};
use serde_json::{json, Value};
use skrd::attest::trust::ProviderKeys;
use skrd::emulator::server::state::{load_or_create_rsa, maa_kid, RsaSigner, MAA_KEY};
use skrd::error::ErrorCode;
use skrd::format::jose::jwk::KeySet;
use skrd::net::{HttpClient, NetSettings};

macro_rules! real {
    ($p:literal) => {
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/real/",
            $p
        ))
    };
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

trait TrustFixture {
    fn provider(&self) -> url::Url;
    fn keys(&self) -> ProviderKeys;
    fn signer(&self) -> RsaSigner;
    fn forger(&self, kid: Option<&str>) -> RsaSigner;
    fn claims(&self, iss: &str, exp_offset: i64) -> Value;
    fn token(&self, signer: &RsaSigner, claims: &Value) -> String;
}

impl TrustFixture for Fixture {
    fn provider(&self) -> url::Url {
        self.emu.url("attestation").parse().unwrap()
    }

    fn keys(&self) -> ProviderKeys {
        ProviderKeys::new(self.http(), self.provider())
    }

    fn signer(&self) -> RsaSigner {
        load_or_create_rsa(self.dir.path(), MAA_KEY, maa_kid).unwrap()
    }

    /// A key the provider never published, under `kid`.
    fn forger(&self, kid: Option<&str>) -> RsaSigner {
        let other = tempfile::tempdir().unwrap();
        let mut s = load_or_create_rsa(other.path(), "forged.pem", maa_kid).unwrap();
        if let Some(k) = kid {
            s.kid = k.to_string();
        }
        s
    }

    /// SevSnpVm-style claims (SEV-SNP facts at the top level, PROTOCOLS.md §5.4).
    fn claims(&self, iss: &str, exp_offset: i64) -> Value {
        let t = now();
        json!({
            "iss": iss, "iat": t - 10, "nbf": t - 10, "exp": t + exp_offset,
            "x-ms-ver": "1.0",
            "x-ms-attestation-type": "sevsnpvm",
            "x-ms-compliance-status": "azure-compliant-uvm",
            "x-ms-sevsnpvm-launchmeasurement": "00".repeat(48),
            "x-ms-sevsnpvm-hostdata": "00".repeat(32),
            "x-ms-sevsnpvm-reportdata": "00".repeat(64),
            "x-ms-sevsnpvm-reportid": "00".repeat(32),
            "x-ms-sevsnpvm-idkeydigest": "00".repeat(48),
            "x-ms-sevsnpvm-authorkeydigest": "00".repeat(48),
            "x-ms-sevsnpvm-familyId": "00".repeat(16),
            "x-ms-sevsnpvm-imageId": "00".repeat(16),
            "x-ms-sevsnpvm-bootloader-svn": 3, "x-ms-sevsnpvm-tee-svn": 0,
            "x-ms-sevsnpvm-snpfw-svn": 8, "x-ms-sevsnpvm-microcode-svn": 115,
            "x-ms-sevsnpvm-guestsvn": 1, "x-ms-sevsnpvm-vmpl": 0,
            "x-ms-sevsnpvm-is-debuggable": false,
            "x-ms-sevsnpvm-migration-allowed": false,
            "x-ms-sevsnpvm-smt-allowed": true,
        })
    }

    fn token(&self, signer: &RsaSigner, claims: &Value) -> String {
        signer.sign_jwt(claims, &[]).unwrap()
    }
}

#[test]
fn valid_token_verifies_and_keys_are_cached() {
    let f = Fixture::start();
    let keys = f.keys();
    let iss = f.emu.url("attestation");
    let jwt = f.token(&f.signer(), &f.claims(&iss, 3600));
    let rt = rt();
    let v = rt
        .block_on(keys.verify_token(&jwt, now(), &deadline()))
        .unwrap();
    assert_eq!(v.issuer, iss);
    assert_eq!(v.kid.as_deref(), Some(f.signer().kid.as_str()));
    assert_eq!(v.claims["x-ms-attestation-type"], "sevsnpvm");
    // A trailing '/' on the token's issuer is tolerated (§9.1 trap 21); keys come from cache.
    let jwt = f.token(&f.signer(), &f.claims(&format!("{iss}/"), 3600));
    rt.block_on(keys.verify_token(&jwt, now(), &deadline()))
        .unwrap();
    assert_eq!(f.counter("attestation-meta"), 1);
    assert_eq!(f.counter("attestation-certs"), 1);
}

#[test]
fn wrong_issuer_expired_and_not_yet_valid_are_refused() {
    let f = Fixture::start();
    let keys = f.keys();
    let rt = rt();
    let iss = f.emu.url("attestation");
    let jwt = f.token(
        &f.signer(),
        &f.claims("https://sharedeus2.eus2.attest.azure.net", 3600),
    );
    let e = rt
        .block_on(keys.verify_token(&jwt, now(), &deadline()))
        .unwrap_err();
    assert_eq!(e.code(), "jwt-issuer-mismatch", "{e}");

    // The flow's allowance is 300 s (TOKEN_SKEW_S, docs/errors-jose.md), the default of
    // `skrctl token verify` too: accepted up to exp + 299, expired at exp + 300
    // (now - skew >= exp).
    let claims = f.claims(&iss, 100);
    let (exp, nbf) = (
        claims["exp"].as_i64().unwrap(),
        claims["nbf"].as_i64().unwrap(),
    );
    let jwt = f.token(&f.signer(), &claims);
    rt.block_on(keys.verify_token(&jwt, exp + 299, &deadline()))
        .unwrap();
    let e = rt
        .block_on(keys.verify_token(&jwt, exp + 300, &deadline()))
        .unwrap_err();
    assert_eq!(e.code(), "jwt-expired", "{e}");
    // nbf = iat = now - 10: accepted from nbf - 300, refused at nbf - 301 (now + skew < nbf).
    rt.block_on(keys.verify_token(&jwt, nbf - 300, &deadline()))
        .unwrap();
    let e = rt
        .block_on(keys.verify_token(&jwt, nbf - 301, &deadline()))
        .unwrap_err();
    assert_eq!(e.code(), "jwt-not-yet-valid", "{e}");

    // SEV-SNP facts missing: refused even though signed and in time.
    let mut c = f.claims(&iss, 3600);
    c.as_object_mut().unwrap().remove("x-ms-sevsnpvm-vmpl");
    let e = rt
        .block_on(keys.verify_token(&f.token(&f.signer(), &c), now(), &deadline()))
        .unwrap_err();
    assert_eq!(e.code(), "jwt-claim-missing", "{e}");
    assert!(e.to_string().contains("x-ms-sevsnpvm-vmpl"), "{e}");
    // Keys were fetched once for all of this.
    assert_eq!(f.counter("attestation-certs"), 1);
}

#[test]
fn forged_token_with_a_known_kid_is_refused_without_refetch() {
    let f = Fixture::start();
    let keys = f.keys();
    let iss = f.emu.url("attestation");
    let kid = f.signer().kid;
    let jwt = f.token(&f.forger(Some(&kid)), &f.claims(&iss, 3600));
    let e = rt()
        .block_on(keys.verify_token(&jwt, now(), &deadline()))
        .unwrap_err();
    assert_eq!(e.code(), "jws-signature-invalid", "{e}");
    assert_eq!(f.counter("attestation-certs"), 1);
}

#[test]
fn unknown_kid_refetches_once_then_is_rate_limited() {
    let f = Fixture::start();
    let keys = f.keys();
    let rt = rt();
    let iss = f.emu.url("attestation");
    // Prime the cache.
    rt.block_on(keys.verify_token(
        &f.token(&f.signer(), &f.claims(&iss, 3600)),
        now(),
        &deadline(),
    ))
    .unwrap();
    assert_eq!(f.counter("attestation-certs"), 1);
    // A kid the provider does not publish: one refetch, then refused.
    let jwt = f.token(&f.forger(None), &f.claims(&iss, 3600));
    let e = rt
        .block_on(keys.verify_token(&jwt, now(), &deadline()))
        .unwrap_err();
    assert_eq!(e.code(), "jwt-unknown-kid", "{e}");
    assert_eq!(f.counter("attestation-certs"), 2);
    assert_eq!(f.counter("attestation-meta"), 2);
    // Again right away: no second refetch within 60 s.
    let e = rt
        .block_on(keys.verify_token(&jwt, now(), &deadline()))
        .unwrap_err();
    assert_eq!(e.code(), "jwt-unknown-kid", "{e}");
    assert_eq!(f.counter("attestation-certs"), 2);
}

#[test]
fn unknown_kid_finds_a_rotated_key_on_refetch() {
    let f = Fixture::start();
    // Start with other keys (the real MAA JWKS): the emulator's kid is unknown to them.
    let stale = KeySet::from_bytes(real!(
        "maa-tokens/jwks/secretnetwork-known-maa-keys.jwks.json"
    ))
    .unwrap();
    let keys = ProviderKeys::with_keys(f.http(), f.provider(), stale);
    let iss = f.emu.url("attestation");
    let jwt = f.token(&f.signer(), &f.claims(&iss, 3600));
    rt().block_on(keys.verify_token(&jwt, now(), &deadline()))
        .unwrap();
    assert_eq!(f.counter("attestation-certs"), 1);
}

#[test]
fn key_fetch_failures_are_clear() {
    let f = Fixture::start();
    let post = |table: Value| f.faults(table);
    let iss = f.emu.url("attestation");
    let jwt = f.token(&f.signer(), &f.claims(&iss, 3600));
    let rt = rt();
    post(json!({"attestation-certs": {"status": 404}}));
    let e = rt
        .block_on(f.keys().verify_token(&jwt, now(), &deadline()))
        .unwrap_err();
    assert_eq!(e.code(), "attest-keys-fetch-status", "{e}");
    post(
        json!({"attestation-meta": {"status": 200, "body": "{\"jwks_uri\": \"https://evil.example/certs\"}"}}),
    );
    let e = rt
        .block_on(f.keys().verify_token(&jwt, now(), &deadline()))
        .unwrap_err();
    assert_eq!(e.code(), "attest-jwks-uri-foreign", "{e}");
    post(json!({"attestation-certs": {"status": 503}}));
    let e = rt
        .block_on(f.keys().verify_token(&jwt, now(), &deadline()))
        .unwrap_err();
    assert_eq!(e.code(), "net-retries-exhausted", "{e}");
}

/// Real MAA tokens with the real JWKS given up front (no network): the ones whose kid is in
/// the JWKS verify at a time inside their lifetime, carry the SEV-SNP claims under
/// x-ms-isolation-tee, and are refused once expired. Which tokens verify with the JWKS was
/// established independently (tests/fixtures/independent/jose_expected.json, python).
#[test]
fn real_tokens_with_the_real_jwks() {
    let expected: Value = serde_json::from_str(include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/independent/jose_expected.json"
    )))
    .unwrap();
    let http = HttpClient::new(&NetSettings::default()).unwrap();
    let rt = rt();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/real/");
    let mut verified = 0;
    for t in expected["tokens"].as_array().unwrap() {
        let file = t["file"].as_str().unwrap();
        let jwt = std::fs::read_to_string(format!("{dir}{file}")).unwrap();
        let provider: url::Url = t["iss"].as_str().unwrap().parse().unwrap();
        let keys = ProviderKeys::with_keys(
            http.clone(),
            provider,
            KeySet::from_bytes(real!(
                "maa-tokens/jwks/secretnetwork-known-maa-keys.jwks.json"
            ))
            .unwrap(),
        );
        let by_jwks = t["verifies_with"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["source"] == "jwks");
        if !by_jwks {
            continue;
        }
        let inside = t["iat"].as_i64().unwrap() + 60;
        let v = rt
            .block_on(keys.verify_token(&jwt, inside, &deadline()))
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(v.issuer, t["iss"].as_str().unwrap());
        assert!(t["snp"].is_object(), "{file}");
        let exp = t["exp"].as_i64().unwrap();
        let e = rt
            .block_on(keys.verify_token(&jwt, exp + 300, &deadline()))
            .unwrap_err();
        assert_eq!(e.code(), "jwt-expired", "{file}");
        verified += 1;
    }
    assert!(verified >= 4, "only {verified} real tokens verified");
}
