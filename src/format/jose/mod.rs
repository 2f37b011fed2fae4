//! JOSE for MAA attestation tokens and Key Vault release responses (PROTOCOLS.md §5.1, §5.4,
//! §5.5, §6.3, §6.4, §6.6, §9, §9.1 traps 13-23). PURE: bytes in, typed values or a specific
//! error out; no I/O, no clock (the validation time is a parameter).
//!
//! - [`b64`]: the base64 flavours (lenient decoding, nothing trimmed).
//! - JSON parsing that refuses duplicate members: [`crate::format::json::parse_strict`].
//! - [`jws`]: compact JWS parsing and RS256 verification (no `none`, no algorithm confusion).
//! - [`jwk`]: JWK / JWKS / X.509 certificates as key sources; `kid` matched exactly.
//! - [`jwt`]: MAA token validation ([`jwt::verify_jwt`]) and typed claim access.
//! - [`x5c`]: X.509 path validation for the release JWS's `x5c`.
//! - [`release`]: the `{"value": JWS}` release response, `key_hsm` and the ciphertext layout.
//!
//! Errors: [`JoseError`] (JWS/JWK/JWT), [`x5c::ChainError`], [`release::ReleaseError`]; codes
//! in `docs/errors-jose.md`.

pub mod b64;
pub mod error;
pub mod jwk;
pub mod jws;
pub mod jwt;
pub mod release;
pub mod x5c;

pub use error::JoseError;

/// Fuzz entry point: parses arbitrary bytes as a compact JWS and, if that works, as JWT claims
/// and as a release payload. Never panics; the result is ignored.
pub fn fuzz_jws(data: &[u8]) {
    if let Ok(jws) = jws::CompactJws::parse(data) {
        let _ = jwt::decode_unverified(data);
        let _ = release::decode_release_payload(&jws.payload, 256);
    }
    let _ = jwk::KeySet::from_bytes(data);
    let _ = release::release_body_jws(data);
}

/// Fuzz entry point: verifies arbitrary bytes as an MAA token against `keys` (the fuzz target
/// passes a fixed set: the real published MAA keys and signing certificate), so the key
/// selection, RS256 signature verification and, for inputs that verify, every claim check and
/// claim accessor run, not only the parser. The expected issuer and the time come from the
/// token's own unverified `iss` and `iat` (+60 s), so a genuine token gets past those checks
/// into the claim accessors. Never panics; returns whether the token verified (for the tests
/// that prove the entry point reaches that far).
pub fn fuzz_jwt_verify(data: &[u8], keys: &jwk::KeySet) -> bool {
    let (issuer, now) = match jwt::decode_unverified(data) {
        Ok((_, claims)) => (
            claims
                .get("iss")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("https://sharedeus2.eus2.attest.azure.net")
                .to_string(),
            claims
                .get("iat")
                .and_then(serde_json::Value::as_i64)
                .map_or(1_734_719_154, |t| t.saturating_add(60)),
        ),
        Err(_) => (
            "https://sharedeus2.eus2.attest.azure.net".to_string(),
            1_734_719_154,
        ),
    };
    match jwt::verify_jwt(data, keys, &jwt::Validation::maa(&issuer, now)) {
        Ok(t) => {
            let _ = t.attestation_type();
            let _ = t.compliance_status();
            let _ = t.sevsnp();
            let _ = t.runtime_keys();
            let _ = t.nonce();
            true
        }
        Err(_) => false,
    }
}

/// Fuzz entry point: parses arbitrary bytes as a decoded `key_hsm` JSON document and splits
/// its ciphertext for an RSA-2048 transfer key. Never panics; the result is ignored.
pub fn fuzz_key_hsm(data: &[u8]) {
    if let Ok(k) = release::KeyHsm::parse(data) {
        let _ = k.split(256);
    }
}
