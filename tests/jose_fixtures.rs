//! JOSE layer against every real MAA token and the real Key Vault release response
//! (PROTOCOLS.md §5.4, §5.5, §6.3, §6.4, §6.6), plus negative cases.
//!
//! Expected verdicts and field values come from `tests/fixtures/independent/jose_expected.json`,
//! made by `jose_expected.py` with python3 `cryptography` (which tried every token against
//! every available key), and from the decoded files that ship beside the real release sample.
//! Synthetic tokens for the negative cases are signed here with a throw-away RSA key.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::OnceLock;

use rsa::pkcs1v15::SigningKey;
use rsa::traits::PublicKeyParts;
use rsa::RsaPrivateKey;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use signature::{SignatureEncoding, Signer};
use skrd::error::ErrorCode;
use skrd::format::jose::b64;
use skrd::format::jose::jwk::{KeySet, PublicKey};
use skrd::format::jose::jws::CompactJws;
use skrd::format::jose::jwt::{decode_unverified, verify_jwt, Validation, VerifiedToken};
use skrd::format::jose::release::{
    decode_release_payload, release_body_jws, verify_release_response, KeyHsm, ReleaseError,
    ReleaseVerification, WrapAlgorithm,
};
use skrd::format::jose::x5c::{ChainCert, ChainError};
use skrd::format::jose::{fuzz_jws, fuzz_jwt_verify, fuzz_key_hsm, JoseError};

macro_rules! real {
    ($p:literal) => {
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/real/",
            $p
        ))
        .as_slice()
    };
}

const EXPECTED: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/independent/jose_expected.json"
));
const JWKS: &[u8] = real!("maa-tokens/jwks/secretnetwork-known-maa-keys.jwks.json");
const MAA_CERT: &[u8] = real!("maa-tokens/jwks/maa-sharedeus2-signing-cert-J0pAPdf.der");
const RELEASE_BODY: &[u8] = real!(
    "thomvanl-skr-sample/sample-responses/2-keyvault-release-key/keyvault-release-key-reponse-body.json"
);
const DECODED_BODY: &[u8] = real!(
    "thomvanl-skr-sample/sample-responses/3-keyvault-release-key-decoded/keyvault-release-key-decoded-body.json"
);
const DECODED_HEADER: &[u8] = real!(
    "thomvanl-skr-sample/sample-responses/3-keyvault-release-key-decoded/keyvault-release-key-decoded-header.json"
);
const DECODED_KEY_HSM: &[u8] = real!(
    "thomvanl-skr-sample/sample-responses/3-keyvault-release-key-decoded/key_hsm-decoded.json"
);
const ARK_MILAN: &[u8] = real!("amd-certs/virtee-sev/milan-ark.pem");

/// (path relative to tests/fixtures/real, bytes) of every real token; the list must match
/// jose_expected.json's (checked in `every_real_token_is_covered`).
fn tokens() -> Vec<(&'static str, &'static [u8])> {
    vec![
        ("maa-tokens/jesserc-sevsnp-tee/token-iat1734719094.jwt", real!("maa-tokens/jesserc-sevsnp-tee/token-iat1734719094.jwt")),
        ("maa-tokens/jesserc-sevsnp-tee/token-iat1735598940.jwt", real!("maa-tokens/jesserc-sevsnp-tee/token-iat1735598940.jwt")),
        ("maa-tokens/jesserc-sevsnp-tee/token-iat1735604834.jwt", real!("maa-tokens/jesserc-sevsnp-tee/token-iat1735604834.jwt")),
        ("maa-tokens/jesserc-sevsnp-tee/token-iat1736697400.jwt", real!("maa-tokens/jesserc-sevsnp-tee/token-iat1736697400.jwt")),
        ("maa-tokens/ms-cvm-guest-attestation-clientlib/ClientLibTests-L138-sharedweu-iat1680173374.jwt", real!("maa-tokens/ms-cvm-guest-attestation-clientlib/ClientLibTests-L138-sharedweu-iat1680173374.jwt")),
        ("maa-tokens/ms-cvm-guest-attestation-clientlib/ClientLibTests-L643-sharedeus2-iat1649979780.jwt", real!("maa-tokens/ms-cvm-guest-attestation-clientlib/ClientLibTests-L643-sharedeus2-iat1649979780.jwt")),
        ("thomvanl-skr-sample/sample-responses/1-attestation/attestation-response.b64", real!("thomvanl-skr-sample/sample-responses/1-attestation/attestation-response.b64")),
    ]
}

fn expected() -> &'static Value {
    static E: OnceLock<Value> = OnceLock::new();
    E.get_or_init(|| serde_json::from_str(EXPECTED).unwrap())
}

fn expected_token(file: &str) -> &'static Value {
    expected()["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["file"] == file)
        .unwrap_or_else(|| panic!("{file} not in jose_expected.json"))
}

fn jwks() -> KeySet {
    KeySet::from_bytes(JWKS).unwrap()
}

/// A time inside the token's lifetime.
fn inside(t: &Value) -> i64 {
    t["iat"].as_i64().unwrap() + 60
}

fn maa(t: &Value) -> Validation {
    Validation::maa(t["iss"].as_str().unwrap(), inside(t))
}

#[test]
fn every_real_token_is_covered() {
    let listed: Vec<&str> = tokens().iter().map(|(f, _)| *f).collect();
    let in_json: Vec<&str> = expected()["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["file"].as_str().unwrap())
        .collect();
    assert_eq!(listed.len(), in_json.len());
    for f in in_json {
        assert!(listed.contains(&f), "{f} has no test");
    }
}

#[test]
fn real_tokens_against_the_known_jwks() {
    let keys = jwks();
    for (file, bytes) in tokens() {
        let t = expected_token(file);
        let by_jwks: Vec<&Value> = t["verifies_with"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| v["source"] == "jwks")
            .collect();
        match verify_jwt(bytes, &keys, &maa(t)) {
            Ok(v) => {
                assert_eq!(by_jwks.len(), 1, "{file}: python found no JWKS key");
                assert_eq!(v.kid.as_deref(), by_jwks[0]["kid"].as_str(), "{file}");
                check_token_fields(file, t, &v);
            }
            Err(e) => {
                // Python: no JWKS key verifies, and the kid is not in the JWKS.
                assert!(by_jwks.is_empty(), "{file}: {e}");
                assert!(!t["kid_in_jwks"].as_bool().unwrap());
                match &e {
                    JoseError::UnknownKid { kid, known, .. } => {
                        assert_eq!(kid, t["header"]["kid"].as_str().unwrap());
                        assert_eq!(*known, expected()["jwks_kids"].as_array().unwrap().len());
                    }
                    other => panic!("{file}: expected unknown kid, got {other:?}"),
                }
                assert_eq!(e.code(), "jwt-unknown-kid");
            }
        }
    }
}

fn check_token_fields(file: &str, t: &Value, v: &VerifiedToken) {
    assert_eq!(v.issuer, t["iss"].as_str().unwrap(), "{file}");
    assert_eq!(v.expires_at, t["exp"].as_i64().unwrap(), "{file}");
    assert_eq!(v.not_before, t["nbf"].as_i64(), "{file}");
    assert_eq!(v.issued_at, t["iat"].as_i64(), "{file}");
    assert_eq!(v.header.alg, "RS256");
    assert_eq!(v.header.jku.as_deref(), t["header"]["jku"].as_str());
    assert_eq!(
        v.attestation_type().unwrap(),
        t["attestation_type"].as_str().unwrap()
    );
    assert!(v.is_azure_guest(), "{file}: every real token is AzureGuest");
    let keys = v.runtime_keys().unwrap();
    let want = t["runtime_keys"].as_array().unwrap();
    assert_eq!(keys.len(), want.len(), "{file}");
    for (k, w) in keys.iter().zip(want) {
        assert_eq!(k.kid.as_deref(), w["kid"].as_str());
        assert_eq!(serde_json::to_value(&k.key_ops).unwrap(), w["key_ops"]);
        match &k.key {
            PublicKey::Rsa(r) => assert_eq!(r.size() as u64, w["n_len"].as_u64().unwrap()),
            other => panic!("{file}: runtime key {other:?}"),
        }
    }
    check_snp(file, t, v);
}

fn check_snp(file: &str, t: &Value, v: &VerifiedToken) {
    match t["snp"].as_object() {
        None => {
            let e = v.sevsnp().unwrap_err();
            assert_eq!(
                e,
                JoseError::ClaimMissing {
                    claim: "x-ms-isolation-tee".into()
                },
                "{file}"
            );
            assert_eq!(v.compliance_status().unwrap_err(), e);
        }
        Some(snp) => {
            let s = v.sevsnp().unwrap();
            let st = |k: &str| snp[k].as_str().unwrap().to_string();
            let n = |k: &str| snp[k].as_u64().unwrap();
            let b = |k: &str| snp[k].as_bool().unwrap();
            assert_eq!(s.attestation_type, st("x-ms-attestation-type"));
            assert_eq!(s.attestation_type, "sevsnpvm");
            assert_eq!(s.compliance_status, st("x-ms-compliance-status"));
            assert_eq!(v.compliance_status().unwrap(), s.compliance_status);
            assert_eq!(s.launch_measurement, st("x-ms-sevsnpvm-launchmeasurement"));
            assert_eq!(s.host_data, st("x-ms-sevsnpvm-hostdata"));
            assert_eq!(s.report_data, st("x-ms-sevsnpvm-reportdata"));
            assert_eq!(s.report_id, st("x-ms-sevsnpvm-reportid"));
            assert_eq!(s.id_key_digest, st("x-ms-sevsnpvm-idkeydigest"));
            assert_eq!(s.author_key_digest, st("x-ms-sevsnpvm-authorkeydigest"));
            assert_eq!(s.family_id, st("x-ms-sevsnpvm-familyId"));
            assert_eq!(s.image_id, st("x-ms-sevsnpvm-imageId"));
            assert_eq!(s.bootloader_svn, n("x-ms-sevsnpvm-bootloader-svn"));
            assert_eq!(s.tee_svn, n("x-ms-sevsnpvm-tee-svn"));
            assert_eq!(s.snpfw_svn, n("x-ms-sevsnpvm-snpfw-svn"));
            assert_eq!(s.microcode_svn, n("x-ms-sevsnpvm-microcode-svn"));
            assert_eq!(s.guest_svn, n("x-ms-sevsnpvm-guestsvn"));
            assert_eq!(s.vmpl, n("x-ms-sevsnpvm-vmpl"));
            assert_eq!(s.is_debuggable, b("x-ms-sevsnpvm-is-debuggable"));
            assert_eq!(s.migration_allowed, b("x-ms-sevsnpvm-migration-allowed"));
            assert_eq!(s.smt_allowed, b("x-ms-sevsnpvm-smt-allowed"));
        }
    }
}

/// The L643 token's kid is in no key file we have, so it cannot be verified; its claims
/// still exercise the accessors (AzureGuest without x-ms-isolation-tee: Trusted Launch).
#[test]
fn unverifiable_token_claims_via_unverified_decode() {
    let file = "maa-tokens/ms-cvm-guest-attestation-clientlib/ClientLibTests-L643-sharedeus2-iat1649979780.jwt";
    let t = expected_token(file);
    let (bytes,) = (tokens().into_iter().find(|(f, _)| *f == file).unwrap().1,);
    let (header, claims) = decode_unverified(bytes).unwrap();
    // Not a verified token: built by hand only to run the typed accessors on its claims.
    let v = VerifiedToken {
        kid: header.kid.clone(),
        header,
        issuer: claims["iss"].as_str().unwrap().to_string(),
        expires_at: claims["exp"].as_i64().unwrap(),
        not_before: claims["nbf"].as_i64(),
        issued_at: claims["iat"].as_i64(),
        claims,
    };
    assert!(!t["has_isolation_tee"].as_bool().unwrap());
    check_token_fields(file, t, &v);
}

#[test]
fn real_tokens_against_the_pinned_signing_certificate() {
    let keys = KeySet::from_bytes(MAA_CERT).unwrap();
    assert_eq!(keys.keys.len(), 1);
    assert_eq!(keys.keys[0].kid, None);
    for (file, bytes) in tokens() {
        let t = expected_token(file);
        let by_cert = t["verifies_with"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["source"] == "cert");
        let r = verify_jwt(bytes, &keys, &maa(t));
        if by_cert {
            assert!(r.is_ok(), "{file}: {r:?}");
        } else {
            // The cert is kid-less, so it is tried for any kid, and its key did not sign it.
            let e = r.unwrap_err();
            assert!(
                matches!(e, JoseError::SignatureInvalid { .. }),
                "{file}: {e:?}"
            );
            assert_eq!(e.code(), "jws-signature-invalid");
        }
    }
}

/// The MAA `/certs` shape: x5c only, no n/e (PROTOCOLS.md §5.1).
#[test]
fn jwk_with_x5c_only_and_pem_certificate() {
    use base64::Engine;
    let std_b64 = base64::engine::general_purpose::STANDARD.encode(MAA_CERT);
    let (file, bytes) = tokens()[0];
    let t = expected_token(file);
    let kid = t["header"]["kid"].as_str().unwrap();
    let jwks = json!({"keys": [{"alg": "RS256", "kid": kid, "kty": "RSA", "use": "sig", "x5c": [std_b64]}]});
    let keys = KeySet::from_bytes(jwks.to_string().as_bytes()).unwrap();
    verify_jwt(bytes, &keys, &maa(t)).unwrap();
    // A single JWK (not a set) works too.
    let keys = KeySet::from_bytes(jwks["keys"][0].to_string().as_bytes()).unwrap();
    verify_jwt(bytes, &keys, &maa(t)).unwrap();
    // PEM with CRLF line ends.
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\r\n");
    for chunk in std_b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(chunk).unwrap());
        pem.push_str("\r\n");
    }
    pem.push_str("-----END CERTIFICATE-----\r\n");
    let keys = KeySet::from_bytes(pem.as_bytes()).unwrap();
    verify_jwt(bytes, &keys, &maa(t)).unwrap();
    // x5c and n/e that disagree: refused.
    let other_n = json!(jwks_json()["keys"][3]["n"]);
    let bad = json!({"kty": "RSA", "kid": kid, "n": other_n, "e": "AQAB", "x5c": [std_b64]});
    let e = KeySet::from_bytes(bad.to_string().as_bytes()).unwrap_err();
    assert!(
        matches!(e, JoseError::JwkInvalid { field: "x5c", .. }),
        "{e:?}"
    );
}

fn jwks_json() -> Value {
    serde_json::from_slice(JWKS).unwrap()
}

#[test]
fn key_sources_refused() {
    let e = KeySet::from_bytes(b"hello").unwrap_err();
    assert_eq!(e.code(), "jose-key-source-unrecognised");
    assert_eq!(
        KeySet::from_bytes(br#"{"keys": []}"#).unwrap_err(),
        JoseError::KeySetEmpty
    );
    let e =
        KeySet::from_bytes(br#"{"keys": [{"kty": "RSA", "kid": "x", "n": "AQAB"}]}"#).unwrap_err();
    assert_eq!(e.code(), "jwk-invalid");
    let e =
        KeySet::from_bytes(br#"{"keys": [{"kty": "RSA", "kid": "x", "n": "A+B/", "e": "AQAB"}]}"#)
            .unwrap_err();
    assert_eq!(e.code(), "jose-base64-invalid");
    let e = KeySet::from_bytes(&MAA_CERT[..MAA_CERT.len() - 1]).unwrap_err();
    assert_eq!(e.code(), "jose-cert-invalid");
    let big = vec![b' '; 1024 * 1024 + 1];
    assert_eq!(
        KeySet::from_bytes(&big).unwrap_err().code(),
        "jose-input-too-large"
    );
}

/// kid is opaque: the JWKS holds "ZOub…yks=" and "ZOub…yks" (same n) as two keys; each
/// selects only itself, and the padded form of one never matches the other.
#[test]
fn kid_is_compared_exactly() {
    let keys = jwks();
    let a = keys.select(Some("ZOub53V4dZuruzP0dOOH0axfyks=")).unwrap();
    let b = keys.select(Some("ZOub53V4dZuruzP0dOOH0axfyks")).unwrap();
    assert_eq!(a.len(), 1);
    assert_eq!(b.len(), 1);
    assert_eq!(a[0].kid.as_deref(), Some("ZOub53V4dZuruzP0dOOH0axfyks="));
    assert_eq!(b[0].kid.as_deref(), Some("ZOub53V4dZuruzP0dOOH0axfyks"));
    let e = keys
        .select(Some("ZOub53V4dZuruzP0dOOH0axfyks=="))
        .unwrap_err();
    assert_eq!(e.code(), "jwt-unknown-kid");
    // base64url spelling of a std-base64 kid is a different kid.
    let e = keys
        .select(Some("J0pAPdfXXHqWWimgrH853wMIdh5_fLe1z6uSXYPXCa0="))
        .unwrap_err();
    assert_eq!(e.code(), "jwt-unknown-kid");
    assert_eq!(keys.select(None).unwrap_err().code(), "jwt-kid-missing");
}

fn jesserc() -> (&'static [u8], &'static Value) {
    let (file, bytes) = tokens()[0];
    (bytes, expected_token(file))
}

#[test]
fn issuer_checks() {
    let (bytes, t) = jesserc();
    let keys = jwks();
    let iss = t["iss"].as_str().unwrap();
    // One trailing slash on the expected issuer is normalised away (trap 21).
    let mut v = maa(t);
    v.issuer = format!("{iss}/");
    verify_jwt(bytes, &keys, &v).unwrap();
    v.issuer = "https://sharedweu.weu.attest.azure.net".into();
    let e = verify_jwt(bytes, &keys, &v).unwrap_err();
    assert_eq!(
        e,
        JoseError::IssuerMismatch {
            expected: "https://sharedweu.weu.attest.azure.net".into(),
            found: iss.into()
        }
    );
    assert_eq!(e.code(), "jwt-issuer-mismatch");
    v.issuer = format!("{iss}//");
    assert_eq!(
        verify_jwt(bytes, &keys, &v).unwrap_err().code(),
        "jwt-issuer-mismatch"
    );
}

#[test]
fn time_checks_on_a_real_token() {
    let (bytes, t) = jesserc();
    let keys = jwks();
    let (iat, nbf, exp) = (
        t["iat"].as_i64().unwrap(),
        t["nbf"].as_i64().unwrap(),
        t["exp"].as_i64().unwrap(),
    );
    let mut v = maa(t);
    // exp is exclusive (RFC 7519 §4.1.4), skew 300 s.
    v.now = exp + 299;
    verify_jwt(bytes, &keys, &v).unwrap();
    v.now = exp + 300;
    let e = verify_jwt(bytes, &keys, &v).unwrap_err();
    assert_eq!(
        e,
        JoseError::Expired {
            exp,
            now: exp + 300,
            skew_s: 300
        }
    );
    assert_eq!(e.code(), "jwt-expired");
    v.now = nbf - 300;
    verify_jwt(bytes, &keys, &v).unwrap();
    v.now = nbf - 301;
    let e = verify_jwt(bytes, &keys, &v).unwrap_err();
    assert_eq!(
        e,
        JoseError::NotYetValid {
            nbf,
            now: nbf - 301,
            skew_s: 300
        }
    );
    assert_eq!(e.code(), "jwt-not-yet-valid");
    assert_eq!(iat, nbf, "every real MAA token has nbf == iat");
    v.skew_s = 0;
    v.now = nbf - 1;
    assert_eq!(
        verify_jwt(bytes, &keys, &v).unwrap_err().code(),
        "jwt-not-yet-valid"
    );
}

/// Replaces one base64url character of `segment` (0 header, 1 payload, 2 signature) in the
/// middle of it with another valid character.
fn flip_char(token: &[u8], segment: usize) -> Vec<u8> {
    let text = std::str::from_utf8(token).unwrap().trim();
    let mut parts: Vec<String> = text.split('.').map(str::to_string).collect();
    let seg = &mut parts[segment];
    let mid = seg.len() / 2;
    let c = seg.as_bytes()[mid];
    let new = if c == b'A' { 'B' } else { 'A' };
    seg.replace_range(mid..mid + 1, &new.to_string());
    parts.join(".").into_bytes()
}

#[test]
fn tampered_real_token_is_refused() {
    let (bytes, t) = jesserc();
    let keys = jwks();
    for segment in [1, 2] {
        let e = verify_jwt(&flip_char(bytes, segment), &keys, &maa(t)).unwrap_err();
        assert!(
            matches!(e, JoseError::SignatureInvalid { .. }),
            "segment {segment}: {e:?}"
        );
    }
    // Flipping one payload byte after decoding, re-encoded: same verdict.
    let text = std::str::from_utf8(bytes).unwrap().trim();
    let parts: Vec<&str> = text.split('.').collect();
    let mut payload = b64::decode_url("p", parts[1]).unwrap();
    let i = payload.len() / 3;
    payload[i] ^= 0x01;
    let forged = format!("{}.{}.{}", parts[0], b64::encode_url(&payload), parts[2]);
    let e = verify_jwt(forged.as_bytes(), &keys, &maa(t)).unwrap_err();
    assert_eq!(e.code(), "jws-signature-invalid");
}

/// Builds `header.payload.signature` from a real token's parts with a new header.
fn with_header(token: &[u8], header: &Value) -> Vec<u8> {
    let text = std::str::from_utf8(token).unwrap().trim();
    let parts: Vec<&str> = text.split('.').collect();
    format!(
        "{}.{}.{}",
        b64::encode_url(header.to_string().as_bytes()),
        parts[1],
        parts[2]
    )
    .into_bytes()
}

#[test]
fn alg_none_and_unsupported_algs() {
    let (bytes, t) = jesserc();
    let keys = jwks();
    let kid = t["header"]["kid"].clone();
    for alg in ["none", "None", "NONE"] {
        let forged = with_header(bytes, &json!({"alg": alg, "kid": kid, "typ": "JWT"}));
        let e = verify_jwt(&forged, &keys, &maa(t)).unwrap_err();
        assert_eq!(e, JoseError::AlgNone { found: alg.into() });
        assert_eq!(e.code(), "jws-alg-none");
    }
    for alg in ["HS256", "RS384", "PS256", "ES256", "rs256"] {
        let forged = with_header(bytes, &json!({"alg": alg, "kid": kid, "typ": "JWT"}));
        let e = verify_jwt(&forged, &keys, &maa(t)).unwrap_err();
        assert!(
            matches!(&e, JoseError::AlgUnsupported { found, .. } if found == alg),
            "{e:?}"
        );
    }
    let forged = with_header(bytes, &json!({"kid": kid}));
    assert_eq!(
        verify_jwt(&forged, &keys, &maa(t)).unwrap_err().code(),
        "jws-header-invalid"
    );
    let forged = with_header(bytes, &json!({"alg": "RS256", "kid": kid, "crit": ["exp"]}));
    assert_eq!(
        verify_jwt(&forged, &keys, &maa(t)).unwrap_err().code(),
        "jws-crit-unsupported"
    );
    let forged = with_header(bytes, &json!({"alg": "RS256", "kid": kid, "typ": "JOSE"}));
    assert_eq!(
        verify_jwt(&forged, &keys, &maa(t)).unwrap_err().code(),
        "jws-typ-unexpected"
    );
    let forged = with_header(bytes, &json!({"alg": "RS256", "kid": 7}));
    assert_eq!(
        verify_jwt(&forged, &keys, &maa(t)).unwrap_err().code(),
        "jws-header-invalid"
    );
}

#[test]
fn alg_key_mismatch() {
    let (bytes, t) = jesserc();
    let kid = t["header"]["kid"].as_str().unwrap();
    let real_n = jwks_json()["keys"][0]["n"].clone();
    // An EC key under the token's kid: never used for RS256.
    let ec = json!({"keys": [{"kty": "EC", "kid": kid, "crv": "P-256",
        "x": b64::encode_url(&[1u8; 32]), "y": b64::encode_url(&[2u8; 32])}]});
    let e = verify_jwt(
        bytes,
        &KeySet::from_bytes(ec.to_string().as_bytes()).unwrap(),
        &maa(t),
    )
    .unwrap_err();
    assert!(
        matches!(&e, JoseError::KeyTypeMismatch { kty, .. } if kty == "EC"),
        "{e:?}"
    );
    assert_eq!(e.code(), "jws-key-type-mismatch");
    // A symmetric key under the token's kid (HS256 confusion).
    let oct = json!({"keys": [{"kty": "oct", "kid": kid, "k": "c2VjcmV0"}]});
    let e = verify_jwt(
        bytes,
        &KeySet::from_bytes(oct.to_string().as_bytes()).unwrap(),
        &maa(t),
    )
    .unwrap_err();
    assert_eq!(e.code(), "jws-key-type-mismatch");
    // The right RSA key, restricted to another alg or to encryption.
    let pinned =
        json!({"keys": [{"kty": "RSA", "kid": kid, "n": real_n, "e": "AQAB", "alg": "PS256"}]});
    let e = verify_jwt(
        bytes,
        &KeySet::from_bytes(pinned.to_string().as_bytes()).unwrap(),
        &maa(t),
    )
    .unwrap_err();
    assert_eq!(e.code(), "jws-key-alg-mismatch");
    let enc = json!({"keys": [{"kty": "RSA", "kid": kid, "n": real_n, "e": "AQAB", "use": "enc"}]});
    let e = verify_jwt(
        bytes,
        &KeySet::from_bytes(enc.to_string().as_bytes()).unwrap(),
        &maa(t),
    )
    .unwrap_err();
    assert_eq!(e.code(), "jwk-use-not-signature");
    // With use "sig" and alg "RS256" it verifies (the checks above are what refused).
    let ok = json!({"keys": [{"kty": "RSA", "kid": kid, "n": real_n, "e": "AQAB", "use": "sig", "alg": "RS256"}]});
    verify_jwt(
        bytes,
        &KeySet::from_bytes(ok.to_string().as_bytes()).unwrap(),
        &maa(t),
    )
    .unwrap();
}

/// The known-keys JWKS has 1024-bit keys (python: public_key_bits); a token naming one is
/// refused before any signature math.
#[test]
fn short_rsa_key_refused() {
    let (bytes, t) = jesserc();
    let forged = with_header(
        bytes,
        &json!({"alg": "RS256", "kid": "wiFDMG11GDLqd14z3T/DUYh/ZmGaVfY0s29siGgYOJs=", "typ": "JWT"}),
    );
    let e = verify_jwt(&forged, &jwks(), &maa(t)).unwrap_err();
    assert!(
        matches!(
            e,
            JoseError::RsaKeyTooSmall {
                bits: 1024,
                min: 2048,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn malformed_compact_forms() {
    let (bytes, t) = jesserc();
    let keys = jwks();
    let text = std::str::from_utf8(bytes).unwrap().trim();
    let parts: Vec<&str> = text.split('.').collect();
    let check = |input: String, code: &str| {
        let e = verify_jwt(input.as_bytes(), &keys, &maa(t)).unwrap_err();
        assert_eq!(e.code(), code, "{input:.40}…: {e}");
        e
    };
    let e = check(format!("{}.{}", parts[0], parts[1]), "jws-segment-count");
    assert_eq!(e, JoseError::JwsSegmentCount { found: 2 });
    let e = check(format!("{text}.{}", parts[2]), "jws-segment-count");
    assert_eq!(e, JoseError::JwsSegmentCount { found: 4 });
    check(format!("{text}...."), "jws-segment-count");
    check(format!("{}.{}.", parts[0], parts[1]), "jws-segment-empty");
    check(format!(".{}.{}", parts[1], parts[2]), "jws-segment-empty");
    // Standard-alphabet characters and stray bytes are not compact JWS.
    check(
        format!("{}.{}+.{}", parts[0], parts[1], parts[2]),
        "jws-not-compact",
    );
    check(format!("\"{text}\""), "jws-not-compact");
    check(
        format!("{}.{} .{}", parts[0], parts[1], parts[2]),
        "jws-not-compact",
    );
    // A segment whose length is 1 mod 4 cannot be base64.
    check(
        format!("{}.{}A.{}", parts[0], parts[1], parts[2]),
        "jose-base64-invalid",
    );
    // Wrong padding.
    check(
        format!("{}.{}.{}===", parts[0], parts[1], parts[2]),
        "jose-base64-invalid",
    );
    // Header that is not JSON.
    check(
        format!("{}.{}.{}", b64::encode_url(b"[1]"), parts[1], parts[2]),
        "jose-json-invalid",
    );
    check(
        format!("{}.{}.{}", b64::encode_url(b"{"), parts[1], parts[2]),
        "jose-json-invalid",
    );
    // Too large.
    let big = "A".repeat(256 * 1024 + 1);
    check(big, "jose-input-too-large");
    // Surrounding whitespace (a file's newline) is fine, and so is correct '=' padding.
    verify_jwt(format!("\n {text}\r\n").as_bytes(), &keys, &maa(t)).unwrap();
    let header_padded = b64::encode_url(&b64::decode_url("h", parts[0]).unwrap());
    assert_eq!(header_padded, parts[0]);
}

// ---- synthetic tokens signed with a throw-away key -------------------------------------------

const TEST_ISS: &str = "https://skrd-test.eus.attest.azure.net";
const NOW: i64 = 1_700_000_000;

fn test_key() -> &'static (RsaPrivateKey, KeySet) {
    static K: OnceLock<(RsaPrivateKey, KeySet)> = OnceLock::new();
    K.get_or_init(|| {
        let key = RsaPrivateKey::new(&mut rand_core::OsRng, 2048).unwrap();
        let jwks = json!({"keys": [{"kty": "RSA", "kid": "test-kid/+=",
            "n": b64::encode_url(&key.n().to_bytes_be()),
            "e": b64::encode_url(&key.e().to_bytes_be())}]});
        let set = KeySet::from_bytes(jwks.to_string().as_bytes()).unwrap();
        (key, set)
    })
}

fn sign(header: &Value, claims: &Value) -> Vec<u8> {
    let h = b64::encode_url(header.to_string().as_bytes());
    let p = b64::encode_url(claims.to_string().as_bytes());
    let input = format!("{h}.{p}");
    let sig = SigningKey::<Sha256>::new(test_key().0.clone()).sign(input.as_bytes());
    format!("{input}.{}", b64::encode_url(&sig.to_vec())).into_bytes()
}

fn header() -> Value {
    json!({"alg": "RS256", "jku": format!("{TEST_ISS}/certs"), "kid": "test-kid/+=", "typ": "JWT"})
}

fn claims() -> Value {
    json!({"iss": TEST_ISS, "iat": NOW - 100, "nbf": NOW - 100, "exp": NOW - 100 + 28800,
           "x-ms-ver": "1.0", "x-ms-attestation-type": "sevsnpvm",
           "x-ms-compliance-status": "azure-compliant-uvm", "nonce": "123",
           "x-ms-runtime": {"keys": [{"kty": "RSA", "kid": "transfer", "key_ops": ["encrypt"],
               "n": b64::encode_url(&[0xc5; 256]), "e": "AQAB"}]}})
}

fn verify_synthetic(claims: &Value) -> Result<VerifiedToken, JoseError> {
    verify_jwt(
        &sign(&header(), claims),
        &test_key().1,
        &Validation::maa(TEST_ISS, NOW),
    )
}

#[test]
fn synthetic_token_verifies_and_sevsnpvm_claims_are_top_level() {
    let v = verify_synthetic(&claims()).unwrap();
    assert!(!v.is_azure_guest());
    assert_eq!(v.attestation_type().unwrap(), "sevsnpvm");
    assert_eq!(v.compliance_status().unwrap(), "azure-compliant-uvm");
    assert_eq!(v.nonce(), Some("123"));
    assert_eq!(
        v.runtime_keys().unwrap()[0].kid.as_deref(),
        Some("transfer")
    );
    // SevSnpVm token: a missing SNP claim is named at the top level.
    assert_eq!(
        v.sevsnp().unwrap_err(),
        JoseError::ClaimMissing {
            claim: "x-ms-sevsnpvm-launchmeasurement".into()
        }
    );
    // AzureGuest token whose x-ms-isolation-tee lacks the compliance status.
    let mut c = claims();
    c["x-ms-attestation-type"] = json!("azurevm");
    c["x-ms-isolation-tee"] = json!({"x-ms-attestation-type": "sevsnpvm"});
    let v = verify_synthetic(&c).unwrap();
    assert_eq!(
        v.compliance_status().unwrap_err(),
        JoseError::ClaimMissing {
            claim: "x-ms-isolation-tee.x-ms-compliance-status".into()
        }
    );
    c["x-ms-isolation-tee"] = json!("sevsnpvm");
    let v = verify_synthetic(&c).unwrap();
    assert_eq!(v.sevsnp().unwrap_err().code(), "jwt-claim-type");
    c.as_object_mut().unwrap().remove("x-ms-runtime");
    let v = verify_synthetic(&c).unwrap();
    assert_eq!(
        v.runtime_keys().unwrap_err(),
        JoseError::ClaimMissing {
            claim: "x-ms-runtime".into()
        }
    );
}

#[test]
fn synthetic_claim_failures() {
    let code = |c: Value| verify_synthetic(&c).unwrap_err().code();
    let mut c = claims();
    c["nbf"] = json!(NOW + 301);
    assert_eq!(code(c), "jwt-not-yet-valid");
    let mut c = claims();
    c["nbf"] = json!(NOW + 299);
    c["iat"] = json!(NOW + 299);
    verify_synthetic(&c).unwrap(); // within the 5 min skew
    let mut c = claims();
    c["iat"] = json!(NOW + 301);
    c["nbf"] = json!(NOW - 100);
    assert_eq!(code(c), "jwt-issued-in-future");
    let mut c = claims();
    c["iat"] = json!(NOW + 40000);
    assert_eq!(code(c), "jwt-lifetime-invalid");
    let mut c = claims();
    c.as_object_mut().unwrap().remove("exp");
    assert_eq!(code(c), "jwt-claim-missing");
    let mut c = claims();
    c["exp"] = json!("soon");
    assert_eq!(code(c), "jwt-claim-type");
    let mut c = claims();
    c["iat"] = json!(NOW - 28801);
    c["nbf"] = json!(NOW - 28801);
    c["exp"] = json!(NOW - 300);
    assert_eq!(code(c.clone()), "jwt-expired");
    c["exp"] = json!(NOW - 299);
    verify_synthetic(&c).unwrap();
    let mut c = claims();
    c["x-ms-ver"] = json!("2.0");
    assert_eq!(code(c), "jwt-ms-ver-unexpected");
    let mut c = claims();
    c.as_object_mut().unwrap().remove("iss");
    assert_eq!(code(c), "jwt-claim-missing");
    assert_eq!(code(json!([1, 2])), "jwt-claims-invalid");
    // jku pointing elsewhere.
    let mut h = header();
    h["jku"] = json!("https://evil.example/certs");
    let e = verify_jwt(
        &sign(&h, &claims()),
        &test_key().1,
        &Validation::maa(TEST_ISS, NOW),
    )
    .unwrap_err();
    assert_eq!(e.code(), "jwt-jku-mismatch");
    // A kid that differs only by its '=' is unknown.
    let mut h = header();
    h["kid"] = json!("test-kid/+");
    let e = verify_jwt(
        &sign(&h, &claims()),
        &test_key().1,
        &Validation::maa(TEST_ISS, NOW),
    )
    .unwrap_err();
    assert_eq!(e.code(), "jwt-unknown-kid");
    // No kid, one key: selected.
    let mut h = header();
    h.as_object_mut().unwrap().remove("kid");
    verify_jwt(
        &sign(&h, &claims()),
        &test_key().1,
        &Validation::maa(TEST_ISS, NOW),
    )
    .unwrap();
    // Signed by our test key but presented with an MAA kid: refused.
    let mut h = header();
    h["kid"] = json!("J0pAPdfXXHqWWimgrH853wMIdh5/fLe1z6uSXYPXCa0=");
    h["jku"] = json!("https://sharedeus2.eus2.attest.azure.net/certs");
    let mut c = claims();
    c["iss"] = json!("https://sharedeus2.eus2.attest.azure.net");
    let e = verify_jwt(
        &sign(&h, &c),
        &jwks(),
        &Validation::maa("https://sharedeus2.eus2.attest.azure.net", NOW),
    )
    .unwrap_err();
    assert_eq!(e.code(), "jws-signature-invalid");
}

// ---- the real Key Vault release response ------------------------------------------------------

fn release_expected() -> &'static Value {
    &expected()["release"]
}

/// x5c[2] of the response, used as the caller's root. Its SHA-256 equals DigiCert Global Root
/// G2's published fingerprint (`openssl x509 -in /etc/ssl/certs/DigiCert_Global_Root_G2.pem
/// -noout -fingerprint -sha256` = CB:3C:CB:B7:…:CB:5F), so trusting it is what trusting the
/// system root would do.
fn digicert_g2() -> ChainCert {
    let body: Value = serde_json::from_slice(RELEASE_BODY).unwrap();
    let jws = CompactJws::parse(body["value"].as_str().unwrap().as_bytes()).unwrap();
    let der = jws.header.x5c[2].clone();
    assert_eq!(
        hex::encode(Sha256::digest(&der)),
        "cb3ccbb76031e5e0138f8dd39a23f9de47ffc35e43c1144cea27d46a5ab1cb5f"
    );
    ChainCert::from_der("root", &der).unwrap()
}

/// 2022-12-23T23:00:18Z: the thomvanl token's iat + 600 s, inside every x5c validity window
/// (python: leaf 1663949646..1695053646).
const RELEASE_NOW: i64 = 1_671_836_418 + 600;

fn verification(roots: &[ChainCert], now: i64) -> ReleaseVerification<'_> {
    ReleaseVerification {
        roots,
        now,
        expected_host: Some("skr-kvq6srllol2jntw.vault.azure.net"),
        rsa_block_len: 256,
        expected_key: Some("https://skr-kvq6srllol2jntw.vault.azure.net/keys/myskrkey"),
        expected_transfer_kid: Some("TpmEphemeralEncryptionKey"),
    }
}

#[test]
fn real_release_response_verifies_and_decodes() {
    let roots = [digicert_g2()];
    let r = verify_release_response(RELEASE_BODY, &verification(&roots, RELEASE_NOW)).unwrap();
    let x = release_expected();
    // Header: equal to the decoded header shipped with the sample.
    let decoded_header: Value = serde_json::from_slice(DECODED_HEADER).unwrap();
    assert_eq!(Value::Object(r.header.raw.clone()), decoded_header);
    // Same member set as python saw (serde_json's map is sorted, so compare sorted).
    let mut want: Vec<&str> = x["header_keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    want.sort_unstable();
    assert_eq!(
        r.header.raw.keys().map(String::as_str).collect::<Vec<_>>(),
        want
    );
    assert_eq!(r.header.kid.as_deref(), x["kid"].as_str());
    // Path: leaf, intermediate, root (subjects as python printed them, RFC 4514).
    let subjects: Vec<&str> = x["x5c"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["subject"].as_str().unwrap())
        .collect();
    assert_eq!(r.chain, subjects);
    // Payload: equal to the decoded body shipped with the sample.
    let decoded_body: Value = serde_json::from_slice(DECODED_BODY).unwrap();
    let p = &r.payload;
    assert_eq!(p.request.raw, decoded_body["request"]);
    assert_eq!(p.request.raw, x["request"]);
    assert_eq!(p.request.enc, WrapAlgorithm::CkmRsaAesKeyWrap);
    assert_eq!(p.request.api_version.as_deref(), Some("7.3"));
    assert_eq!(p.key.kid, x["key"]["kid"].as_str().unwrap());
    assert_eq!(p.key.kty, "RSA-HSM");
    assert_eq!(
        p.key.key_size,
        Some(x["key"]["n_bits"].as_u64().unwrap() as usize)
    );
    assert_eq!(p.key.crv, None);
    assert_eq!(
        serde_json::to_value(&p.key.key_ops).unwrap(),
        x["key"]["key_ops"]
    );
    assert_eq!(p.attributes, decoded_body["response"]["key"]["attributes"]);
    assert_eq!(p.release_policy, x["release_policy"]);
    assert_eq!(p.release_policy_immutable, Some(false));
    // key_hsm: equal to the decoded key_hsm shipped with the sample.
    let kh: Value = serde_json::from_slice(DECODED_KEY_HSM).unwrap();
    assert_eq!(
        p.key_hsm.schema_version,
        kh["schema_version"].as_str().unwrap()
    );
    assert_eq!(p.key_hsm.kid, kh["header"]["kid"].as_str().unwrap());
    assert_eq!(p.key_hsm.alg, "dir");
    assert_eq!(p.key_hsm.enc.name(), kh["header"]["enc"].as_str().unwrap());
    assert_eq!(
        p.key_hsm.ciphertext,
        b64::decode_url("ct", kh["ciphertext"].as_str().unwrap()).unwrap()
    );
    let xk = &x["key"]["key_hsm"];
    assert_eq!(
        p.key_hsm.ciphertext.len() as u64,
        xk["ciphertext_len"].as_u64().unwrap()
    );
    let (rsa_part, kwp) = p.key_hsm.split(256).unwrap();
    assert_eq!(rsa_part.len() as u64, xk["rsa_block_len"].as_u64().unwrap());
    assert_eq!(kwp.len() as u64, xk["aes_kwp_len"].as_u64().unwrap());
    // Without a host check, too.
    let mut v = verification(&roots, RELEASE_NOW);
    v.expected_host = None;
    verify_release_response(RELEASE_BODY, &v).unwrap();
}

fn release_err(body: &[u8], roots: &[ChainCert], now: i64) -> ReleaseError {
    verify_release_response(body, &verification(roots, now)).unwrap_err()
}

#[test]
fn release_time_window() {
    let roots = [digicert_g2()];
    let leaf = &release_expected()["x5c"][0];
    let (nb, na) = (
        leaf["not_before"].as_i64().unwrap(),
        leaf["not_after"].as_i64().unwrap(),
    );
    verify_release_response(RELEASE_BODY, &verification(&roots, nb)).unwrap();
    verify_release_response(RELEASE_BODY, &verification(&roots, na)).unwrap();
    let e = release_err(RELEASE_BODY, &roots, na + 1);
    assert!(
        matches!(&e, ReleaseError::Chain(ChainError::Expired { not_after, .. }) if *not_after == na),
        "{e:?}"
    );
    assert_eq!(e.code(), "chain-cert-expired");
    let e = release_err(RELEASE_BODY, &roots, nb - 1);
    assert_eq!(e.code(), "chain-cert-not-yet-valid");
    // Today (the sample expired 2023-09-18).
    assert_eq!(
        release_err(RELEASE_BODY, &roots, 1_763_000_000).code(),
        "chain-cert-expired"
    );
}

#[test]
fn release_wrong_roots() {
    // No root, an unrelated self-signed cert, an AMD root: never the x5c's own last element.
    let maa = ChainCert::from_der("maa", MAA_CERT).unwrap();
    let ark = ChainCert::load_many(ARK_MILAN).unwrap();
    for roots in [vec![], vec![maa], ark] {
        let e = release_err(RELEASE_BODY, &roots, RELEASE_NOW);
        match &e {
            ReleaseError::Chain(ChainError::RootUntrusted { subject, .. }) => {
                assert_eq!(
                    subject,
                    release_expected()["x5c"][2]["subject"].as_str().unwrap()
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(e.code(), "chain-root-untrusted");
    }
}

/// Re-serialises the response with one part of the compact JWS changed.
fn release_with(f: impl FnOnce(&mut Vec<String>)) -> Vec<u8> {
    let body: Value = serde_json::from_slice(RELEASE_BODY).unwrap();
    let mut parts: Vec<String> = body["value"]
        .as_str()
        .unwrap()
        .split('.')
        .map(str::to_string)
        .collect();
    f(&mut parts);
    json!({"value": parts.join(".")}).to_string().into_bytes()
}

#[test]
fn release_tampering() {
    let roots = [digicert_g2()];
    // A flipped payload byte.
    let body = release_with(|p| {
        let mut payload = b64::decode_url("p", &p[1]).unwrap();
        let i = payload.len() / 2;
        payload[i] ^= 0x20;
        p[1] = b64::encode_url(&payload);
    });
    let e = release_err(&body, &roots, RELEASE_NOW);
    assert_eq!(e.code(), "jws-signature-invalid", "{e}");
    // A flipped signature byte.
    let body = release_with(|p| {
        let mut sig = b64::decode_url("s", &p[2]).unwrap();
        sig[10] ^= 0x01;
        p[2] = b64::encode_url(&sig);
    });
    assert_eq!(
        release_err(&body, &roots, RELEASE_NOW).code(),
        "jws-signature-invalid"
    );
    // A header whose x5t no longer describes x5c[0].
    let body = release_with(|p| {
        let mut h: Value = serde_json::from_slice(&b64::decode_url("h", &p[0]).unwrap()).unwrap();
        h["x5t"] = json!("AAAAAAAAAAAAAAAAAAAAAAAAAAA");
        p[0] = b64::encode_url(h.to_string().as_bytes());
    });
    let e = release_err(&body, &roots, RELEASE_NOW);
    assert!(
        matches!(e, ReleaseError::ThumbprintMismatch { field: "x5t", .. }),
        "{e:?}"
    );
    // A kid of Key Vault's shape (40 hex) that is not x5c[0]'s SHA-1; any other kid is opaque.
    let body = release_with(|p| {
        let mut h: Value = serde_json::from_slice(&b64::decode_url("h", &p[0]).unwrap()).unwrap();
        h["kid"] = json!("0000000000000000000000000000000000000000");
        p[0] = b64::encode_url(h.to_string().as_bytes());
    });
    let e = release_err(&body, &roots, RELEASE_NOW);
    assert!(
        matches!(e, ReleaseError::ThumbprintMismatch { field: "kid", .. }),
        "{e:?}"
    );
    let body = release_with(|p| {
        let mut h: Value = serde_json::from_slice(&b64::decode_url("h", &p[0]).unwrap()).unwrap();
        h["kid"] = json!("https://myhsm.managedhsm.azure.net/some-signing-key");
        p[0] = b64::encode_url(h.to_string().as_bytes());
    });
    // Not a thumbprint error: it reaches the signature check (the header changed).
    assert_eq!(
        release_err(&body, &roots, RELEASE_NOW).code(),
        "jws-signature-invalid"
    );
    // x5c without the intermediate: the leaf's issuer is not a configured root.
    let body = release_with(|p| {
        let mut h: Value = serde_json::from_slice(&b64::decode_url("h", &p[0]).unwrap()).unwrap();
        let x5c = h["x5c"].as_array().unwrap().clone();
        h["x5c"] = json!([x5c[0], x5c[2]]);
        p[0] = b64::encode_url(h.to_string().as_bytes());
    });
    assert_eq!(
        release_err(&body, &roots, RELEASE_NOW).code(),
        "chain-root-untrusted"
    );
    // No x5c at all.
    let body = release_with(|p| {
        let mut h: Value = serde_json::from_slice(&b64::decode_url("h", &p[0]).unwrap()).unwrap();
        h.as_object_mut().unwrap().remove("x5c");
        p[0] = b64::encode_url(h.to_string().as_bytes());
    });
    assert_eq!(
        release_err(&body, &roots, RELEASE_NOW).code(),
        "release-x5c-missing"
    );
    // alg none.
    let body = release_with(|p| {
        let mut h: Value = serde_json::from_slice(&b64::decode_url("h", &p[0]).unwrap()).unwrap();
        h["alg"] = json!("none");
        p[0] = b64::encode_url(h.to_string().as_bytes());
    });
    assert_eq!(
        release_err(&body, &roots, RELEASE_NOW).code(),
        "jws-alg-none"
    );
    // Bodies that are not {"value": JWS}.
    for body in [
        &b"{\"error\":{\"code\":\"Forbidden\"}}"[..],
        b"[]",
        b"{\"value\": 3}",
        b"not json",
    ] {
        assert_eq!(
            release_err(body, &roots, RELEASE_NOW).code(),
            "release-body-invalid"
        );
    }
    assert!(release_body_jws(RELEASE_BODY)
        .unwrap()
        .starts_with("eyJhbGciOiJSUzI1NiIs"));
}

#[test]
fn release_expected_key_and_transfer_kid() {
    let roots = [digicert_g2()];
    let mut v = verification(&roots, RELEASE_NOW);
    v.expected_key = Some("https://SKR-KVQ6SRLLOL2JNTW.vault.azure.net/keys/myskrkey/");
    verify_release_response(RELEASE_BODY, &v).unwrap();
    v.expected_key = Some("https://skr-kvq6srllol2jntw.vault.azure.net/keys/otherkey");
    let e = verify_release_response(RELEASE_BODY, &v).unwrap_err();
    assert_eq!(e.code(), "release-key-mismatch");
    let mut v = verification(&roots, RELEASE_NOW);
    v.expected_transfer_kid = Some("transfer-key-of-another-boot");
    let e = verify_release_response(RELEASE_BODY, &v).unwrap_err();
    assert_eq!(
        e,
        ReleaseError::TransferKidMismatch {
            expected: "transfer-key-of-another-boot".into(),
            found: "TpmEphemeralEncryptionKey".into()
        }
    );
}

#[test]
fn duplicate_json_members_refused() {
    let (bytes, t) = jesserc();
    let text = std::str::from_utf8(bytes).unwrap().trim();
    let parts: Vec<&str> = text.split('.').collect();
    let real_header = String::from_utf8(b64::decode_url("h", parts[0]).unwrap()).unwrap();
    // {"alg":"RS256",...,"alg":"none"}: a parser keeping the last would see "none".
    let dup = format!("{},\"alg\":\"none\"}}", real_header.trim_end_matches('}'));
    let forged = format!(
        "{}.{}.{}",
        b64::encode_url(dup.as_bytes()),
        parts[1],
        parts[2]
    );
    let e = verify_jwt(forged.as_bytes(), &jwks(), &maa(t)).unwrap_err();
    assert_eq!(e.code(), "jose-json-invalid");
    // Duplicate claims in a correctly signed token.
    let claims = r#"{"iss":"https://skrd-test.eus.attest.azure.net","exp":1700028700,"exp":1}"#;
    let h = b64::encode_url(header().to_string().as_bytes());
    let input = format!("{h}.{}", b64::encode_url(claims.as_bytes()));
    let sig = SigningKey::<Sha256>::new(test_key().0.clone()).sign(input.as_bytes());
    let token = format!("{input}.{}", b64::encode_url(&sig.to_vec()));
    let e = verify_jwt(
        token.as_bytes(),
        &test_key().1,
        &Validation::maa(TEST_ISS, NOW),
    )
    .unwrap_err();
    assert_eq!(e.code(), "jwt-claims-invalid");
}

#[test]
fn release_host_name() {
    let roots = [digicert_g2()];
    for (host, ok) in [
        ("skr-kvq6srllol2jntw.vault.azure.net", true),
        ("vault.azure.net", true),
        ("SKR-KVQ6SRLLOL2JNTW.VAULT.AZURE.NET", true),
        ("x.vaultcore.azure.net", true),
        ("a.b.vault.azure.net", false),
        ("myhsm.managedhsm.azure.net", false),
        ("evil.example.com", false),
    ] {
        let mut v = verification(&roots, RELEASE_NOW);
        v.expected_host = Some(host);
        let r = verify_release_response(RELEASE_BODY, &v);
        assert_eq!(r.is_ok(), ok, "{host}: {r:?}");
        if let Err(e) = r {
            assert_eq!(e.code(), "chain-name-mismatch");
        }
    }
}

fn real_payload() -> Value {
    serde_json::from_slice(DECODED_BODY).unwrap()
}

fn key_hsm_of(payload: &Value) -> Value {
    let text = payload["response"]["key"]["key"]["key_hsm"]
        .as_str()
        .unwrap();
    serde_json::from_slice(&b64::decode_url("k", text).unwrap()).unwrap()
}

fn with_key_hsm(mut payload: Value, kh: &Value) -> Vec<u8> {
    payload["response"]["key"]["key"]["key_hsm"] =
        json!(b64::encode_url(kh.to_string().as_bytes()));
    payload.to_string().into_bytes()
}

#[test]
fn release_payload_consistency() {
    let p = real_payload();
    decode_release_payload(p.to_string().as_bytes(), 256).unwrap();
    let code = |bytes: &[u8], len: usize| decode_release_payload(bytes, len).unwrap_err().code();
    // §6.4: 2640 = 256 + 2384; 300 would leave 2340 (not a multiple of 8).
    assert_eq!(
        code(p.to_string().as_bytes(), 300),
        "release-ciphertext-length"
    );
    assert_eq!(
        code(p.to_string().as_bytes(), 2640),
        "release-ciphertext-length"
    );
    let mut kh = key_hsm_of(&p);
    kh["header"]["enc"] = json!("RSA_AES_KEY_WRAP_256");
    assert_eq!(
        code(&with_key_hsm(p.clone(), &kh), 256),
        "release-enc-mismatch"
    );
    let mut kh = key_hsm_of(&p);
    kh["header"]["enc"] = json!("RSA_AES_KEY_WRAP_512");
    assert_eq!(
        code(&with_key_hsm(p.clone(), &kh), 256),
        "release-enc-unknown"
    );
    let mut kh = key_hsm_of(&p);
    kh["schema_version"] = json!("1.0.0");
    assert_eq!(
        code(&with_key_hsm(p.clone(), &kh), 256),
        "release-key-hsm-schema"
    );
    let mut kh = key_hsm_of(&p);
    kh["header"]["alg"] = json!("RSA-OAEP");
    assert_eq!(
        code(&with_key_hsm(p.clone(), &kh), 256),
        "release-key-hsm-invalid"
    );
    let mut q = p.clone();
    q["response"]["key"]["key"]["kid"] =
        json!("https://other.vault.azure.net/keys/myskrkey/e473cd4c66224d16870bbe2eb4c58078");
    assert_eq!(
        code(q.to_string().as_bytes(), 256),
        "release-payload-invalid"
    );
    let mut q = p.clone();
    q["response"]["key"]["key"]
        .as_object_mut()
        .unwrap()
        .remove("key_hsm");
    assert_eq!(
        code(q.to_string().as_bytes(), 256),
        "release-payload-invalid"
    );
    // A versioned request names exactly that version.
    let mut q = p.clone();
    q["request"]["kid"] = q["response"]["key"]["key"]["kid"].clone();
    decode_release_payload(q.to_string().as_bytes(), 256).unwrap();
}

/// Trap 17: a ciphertext ending in zero bytes keeps them (256-byte RSA block + 40-byte KWP).
#[test]
fn key_hsm_keeps_trailing_zeros() {
    let mut ct = vec![0x5au8; 296];
    for b in ct.iter_mut().skip(250) {
        *b = 0;
    }
    let kh = json!({"schema_version": "1.0",
        "header": {"kid": "TpmEphemeralEncryptionKey", "alg": "dir", "enc": "RSA_AES_KEY_WRAP_256"},
        "ciphertext": b64::encode_url(&ct)});
    let k = KeyHsm::parse(kh.to_string().as_bytes()).unwrap();
    assert_eq!(k.ciphertext, ct);
    let (rsa_part, kwp) = k.split(256).unwrap();
    assert_eq!((rsa_part.len(), kwp.len()), (256, 40));
    assert_eq!(rsa_part.last(), Some(&0));
    assert_eq!(k.enc, WrapAlgorithm::RsaAesKeyWrap256);
}

#[test]
fn fuzz_entry_points_survive_truncations_and_flips() {
    let (token, _) = jesserc();
    for bytes in [token, RELEASE_BODY, DECODED_KEY_HSM] {
        for len in (0..bytes.len()).step_by(7) {
            fuzz_jws(&bytes[..len]);
            fuzz_key_hsm(&bytes[..len]);
        }
        let mut copy = bytes.to_vec();
        for i in (0..copy.len()).step_by(13) {
            copy[i] ^= 0xff;
            fuzz_jws(&copy);
            fuzz_key_hsm(&copy);
            copy[i] ^= 0xff;
        }
    }
    let compact = release_body_jws(RELEASE_BODY).unwrap();
    fuzz_jws(compact.as_bytes());
}

/// The verifying fuzz entry point (fuzz/fuzz_targets/fuzz_jws.rs, with the same fixed key set)
/// gets through signature verification and the claim checks for the real tokens that verify
/// with the JWKS (jose_expected.json `verifies_with`), and stops at the signature for a flipped
/// signature byte: the fuzzer reaches verification, not only the parser.
#[test]
fn the_verifying_fuzz_entry_point_reaches_signature_verification() {
    let mut keys = KeySet::from_bytes(JWKS).unwrap();
    keys.keys.extend(KeySet::from_bytes(MAA_CERT).unwrap().keys);
    let mut verified = 0;
    for (file, token) in tokens() {
        let t = expected_token(file);
        let ok = !t["verifies_with"].as_array().unwrap().is_empty();
        assert_eq!(fuzz_jwt_verify(token, &keys), ok, "{file}");
        if ok {
            verified += 1;
            let text = String::from_utf8(token.to_vec()).unwrap();
            let (head, sig) = text.trim().rsplit_once('.').unwrap();
            let mut sig = b64::decode_url("sig", sig).unwrap();
            sig[100] ^= 1;
            let flipped = format!("{head}.{}", b64::encode_url(&sig));
            assert!(!fuzz_jwt_verify(flipped.as_bytes(), &keys), "{file}");
        }
        for len in (0..token.len().saturating_sub(2)).step_by(97) {
            assert!(
                !fuzz_jwt_verify(&token[..len], &keys),
                "{file} cut at {len}"
            );
        }
    }
    assert!(verified >= 6, "{verified}");
}

// ---- path validation branches on a TEST PKI made by jose_expected.py ------------------------

fn test_chain_cert(name: &str) -> ChainCert {
    let pem = expected()["test_chain"]["pem"][name].as_str().unwrap();
    ChainCert::load_many(pem.as_bytes()).unwrap().remove(0)
}

#[test]
fn path_validation_on_the_test_pki() {
    use skrd::format::jose::x5c::verify_chain;
    let tc = &expected()["test_chain"];
    // Python: every link's signature verifies; inter_noca is not a CA.
    assert!(tc["links_verify"]
        .as_object()
        .unwrap()
        .values()
        .all(|v| v == true));
    assert_eq!(tc["ca"]["inter_noca"], false);
    let now = tc["not_before"].as_i64().unwrap() + 86400;
    let c = test_chain_cert;
    let subjects = |p: Vec<ChainCert>| p.into_iter().map(|c| c.subject).collect::<Vec<_>>();

    // ECDSA P-384 (ecdsa-with-SHA384) links: leaf <- inter <- root.
    let path = verify_chain(&[c("leaf"), c("inter")], &[c("root")], now).unwrap();
    assert_eq!(
        subjects(path),
        ["CN=leaf", "CN=skrd test inter", "CN=skrd test root"]
    );
    // A pinned intermediate or leaf ends the path early.
    assert_eq!(
        verify_chain(&[c("leaf"), c("inter")], &[c("inter")], now)
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        verify_chain(&[c("leaf")], &[c("leaf")], now).unwrap().len(),
        1
    );
    // An issuer with the right name and key but cA=false is refused, and skipped when a
    // proper CA with the same name follows it in x5c.
    let e = verify_chain(&[c("leaf"), c("inter_noca")], &[c("root")], now).unwrap_err();
    assert_eq!(
        e,
        ChainError::NotCa {
            subject: "CN=skrd test inter".into()
        }
    );
    assert_eq!(e.code(), "chain-issuer-not-ca");
    verify_chain(&[c("leaf"), c("inter_noca"), c("inter")], &[c("root")], now).unwrap();
    // ecdsa-with-SHA256 is outside the supported set (python: OID 1.2.840.10045.4.3.2).
    assert_eq!(
        tc["signature_algorithm_oid"]["leaf_sha256"],
        "1.2.840.10045.4.3.2"
    );
    let e = verify_chain(&[c("leaf_sha256"), c("inter")], &[c("root")], now).unwrap_err();
    assert_eq!(e.code(), "chain-algorithm-unsupported");
    // sha512WithRSAEncryption.
    assert_eq!(
        tc["signature_algorithm_oid"]["rsa_leaf"],
        "1.2.840.113549.1.1.13"
    );
    verify_chain(&[c("rsa_leaf")], &[c("rsa_root")], now).unwrap();
    // Wrong root, expired, flipped signature.
    let e = verify_chain(&[c("leaf"), c("inter")], &[c("rsa_root")], now).unwrap_err();
    assert_eq!(e.code(), "chain-root-untrusted");
    let after = tc["not_after"].as_i64().unwrap() + 1;
    let e = verify_chain(&[c("leaf"), c("inter")], &[c("root")], after).unwrap_err();
    assert_eq!(e.code(), "chain-cert-expired");
    let mut der = c("leaf").der;
    let last = der.len() - 1;
    der[last] ^= 0x01;
    let flipped = ChainCert::from_der("flipped", &der).unwrap();
    let e = verify_chain(&[flipped, c("inter")], &[c("root")], now).unwrap_err();
    assert_eq!(e.code(), "chain-signature-invalid");
    // Empty x5c.
    assert_eq!(
        verify_chain(&[], &[c("root")], now).unwrap_err().code(),
        "chain-cert-invalid"
    );
}

#[test]
fn pem_trust_bundle_loader() {
    let tc = &expected()["test_chain"]["pem"];
    let bundle = format!(
        "# comment\n{}junk\n-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n{}",
        tc["root"].as_str().unwrap(),
        tc["rsa_root"].as_str().unwrap()
    );
    let (certs, skipped) = ChainCert::load_pem_bundle(bundle.as_bytes());
    assert_eq!(certs.len(), 2);
    assert_eq!(skipped, 1);
    assert_eq!(certs[1].subject, "CN=skrd rsa root");
}

/// Microsoft's decoded sample claims (no signature, a Windows CVM on a test MAA instance): the
/// typed accessors find the SNP facts under x-ms-isolation-tee with the documented types.
#[test]
fn decoded_sample_claims_through_the_accessors() {
    let claims: Value = serde_json::from_slice(real!(
        "maa-tokens/decoded-claims-examples/cvm-guest-attestation-sampleAttestationToken.json"
    ))
    .unwrap();
    let tee = claims["x-ms-isolation-tee"].clone();
    // Not a verified token: built by hand only to run the accessors on these claims.
    let v = VerifiedToken {
        header: CompactJws::parse(jesserc().0).unwrap().header,
        issuer: claims["iss"].as_str().unwrap().into(),
        kid: None,
        expires_at: claims["exp"].as_i64().unwrap(),
        not_before: None,
        issued_at: None,
        claims,
    };
    assert!(v.is_azure_guest());
    let s = v.sevsnp().unwrap();
    assert_eq!(
        s.attestation_type,
        tee["x-ms-attestation-type"].as_str().unwrap()
    );
    assert_eq!(
        s.compliance_status,
        tee["x-ms-compliance-status"].as_str().unwrap()
    );
    assert_eq!(
        s.launch_measurement,
        tee["x-ms-sevsnpvm-launchmeasurement"].as_str().unwrap()
    );
    assert_eq!(s.launch_measurement.len(), 96);
    assert_eq!(s.report_data.len(), 128);
    assert_eq!(s.vmpl, tee["x-ms-sevsnpvm-vmpl"].as_u64().unwrap());
    assert_eq!(
        s.is_debuggable,
        tee["x-ms-sevsnpvm-is-debuggable"].as_bool().unwrap()
    );
    assert_eq!(
        v.runtime_keys().unwrap()[0].kid.as_deref(),
        Some("TpmEphemeralEncryptionKey")
    );
}

#[test]
fn key_hsm_split_edges() {
    let kh = |len: usize| {
        let j = json!({"schema_version": "1.0",
            "header": {"kid": "k", "alg": "dir", "enc": "CKM_RSA_AES_KEY_WRAP"},
            "ciphertext": b64::encode_url(&vec![7u8; len])});
        KeyHsm::parse(j.to_string().as_bytes()).unwrap()
    };
    assert!(kh(256 + 16).split(256).is_ok());
    for (len, block) in [(256 + 8, 256), (256 + 20, 256), (255, 256), (272, 0)] {
        assert_eq!(
            kh(len).split(block).unwrap_err().code(),
            "release-ciphertext-length",
            "{len}/{block}"
        );
    }
    let empty = json!({"schema_version": "1.0",
        "header": {"kid": "k", "alg": "dir", "enc": "CKM_RSA_AES_KEY_WRAP"}, "ciphertext": ""});
    assert_eq!(
        KeyHsm::parse(empty.to_string().as_bytes())
            .unwrap_err()
            .code(),
        "release-key-hsm-invalid"
    );
    // Std-base64 ciphertext is accepted too (lenient consumption, trap 13): 0xfb 0xff.
    let std = json!({"schema_version": "1.0",
        "header": {"kid": "k", "alg": "dir", "enc": "RSA_AES_KEY_WRAP_384"}, "ciphertext": "+/8="});
    assert_eq!(
        KeyHsm::parse(std.to_string().as_bytes())
            .unwrap()
            .ciphertext,
        vec![0xfb, 0xff]
    );
}

/// §6.6 step 5 for a vault reached by IP address: only a SAN `iPAddress` entry names it, never a
/// DNS SAN spelling the same digits (RFC 6125 §6.2.1; RFC 5280 §4.2.1.6: iPAddress is 4 or 16
/// octets). The certificate is made by rcgen with known SAN entries; the expected outcomes follow
/// from those RFCs, not from skrd.
#[test]
fn leaf_host_check_matches_ip_literals_only_against_ip_sans() {
    use skrd::format::jose::x5c::check_leaf_host;
    let key = rcgen::KeyPair::generate().unwrap();
    // rcgen turns IP-looking names into IP SANs: push the look-alike DNS name explicitly.
    let mut params = rcgen::CertificateParams::new(vec!["vault.example".into()]).unwrap();
    params
        .subject_alt_names
        .push(rcgen::SanType::DnsName("127.0.0.2".try_into().unwrap()));
    params
        .subject_alt_names
        .push(rcgen::SanType::IpAddress([127, 0, 0, 1].into()));
    params.subject_alt_names.push(rcgen::SanType::IpAddress(
        std::net::Ipv6Addr::LOCALHOST.into(),
    ));
    let cert = params.self_signed(&key).unwrap();
    let leaf = ChainCert::from_der("leaf", cert.der()).unwrap();

    check_leaf_host(&leaf, "vault.example").unwrap();
    check_leaf_host(&leaf, "127.0.0.1").unwrap();
    check_leaf_host(&leaf, "[::1]").unwrap();
    check_leaf_host(&leaf, "::1").unwrap();
    for host in ["127.0.0.2", "127.0.0.3", "other.example", "[::2]"] {
        let err = check_leaf_host(&leaf, host).unwrap_err();
        assert_eq!(err.code(), "chain-name-mismatch", "{host}");
    }
}

/// The committed `jose_expected.json` is what `jose_expected.py` produces today: every fact about
/// the real artifacts (tokens, keys, the release response) exactly, and of the random TEST PKI
/// (`test_chain`, new keys on every run) everything but the certificates themselves (algorithms,
/// CA flags, which links verify, validity). `generated_by` names the local cryptography version
/// and is not compared. As tests/policy_fixtures.rs does for the policies.
#[test]
fn committed_expectations_match_the_python_generator() {
    // python3 + cryptography are documented test dependencies (Makefile TEST_DEBS).
    let out = std::process::Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/independent/jose_expected.py"
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut fresh: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut committed = expected().clone();
    for doc in [&mut fresh, &mut committed] {
        let obj = doc.as_object_mut().unwrap();
        assert!(obj.remove("generated_by").is_some());
        let chain = obj["test_chain"].as_object_mut().unwrap();
        let pem = chain.remove("pem").unwrap();
        // The random certificates: only which ones exist.
        let names: Vec<&String> = pem.as_object().unwrap().keys().collect();
        chain.insert("pem_names".into(), json!(names));
    }
    let (f, c) = (fresh.as_object().unwrap(), committed.as_object().unwrap());
    assert_eq!(
        f.keys().collect::<Vec<_>>(),
        c.keys().collect::<Vec<_>>(),
        "regenerate jose_expected.json"
    );
    for (k, v) in f {
        assert_eq!(
            v, &c[k],
            "{k}: regenerate jose_expected.json (see its header)"
        );
    }
    // Guard against a vacuous comparison: the real facts are there.
    assert!(c["tokens"].as_array().unwrap().len() >= 7);
    assert!(c["release"]["x5c"].as_array().unwrap().len() >= 3);
}
