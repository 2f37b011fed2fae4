//! The flow-specific checks of a verified attestation token (PROTOCOLS.md §5.5 steps 5-6): the
//! token must be about *this* attestation, and Key Vault must wrap to *our* transfer key.
//! PURE (claims in, verdict out); signature, issuer and lifetime are checked before, by
//! [`super::trust`].
//!
//! - SevSnpVm: `nonce` equals the one sent; top-level `x-ms-runtime.keys` holds the transfer
//!   key (same `n`, `e`); `x-ms-sevsnpvm-reportdata` starts with hex(SHA-256(runtime data)).
//! - AzureGuest: top-level `x-ms-runtime.keys` holds the TPM ephemeral key (kid
//!   `TpmEphemeralEncryptionKey`, same `n`, `e`) as the first encryption key (Key Vault wraps to
//!   the first suitable key, §6.2); `x-ms-isolation-tee.x-ms-attestation-type` is `sevsnpvm`.

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::ErrorCode;
use crate::format::jose::b64;

/// `kid` of the TPM ephemeral key in AzureGuest tokens.
pub const EPHEMERAL_KID: &str = "TpmEphemeralEncryptionKey";

/// Why a verified token does not belong to this attestation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BindingError {
    /// `nonce` differs.
    #[error("the attestation token's nonce is {found:?}, expected {expected:?}: the token answers another request; attest again")]
    NonceMismatch {
        /// Sent.
        expected: String,
        /// In the token (`None`: absent).
        found: Option<String>,
    },
    /// The key Key Vault would wrap to is not ours.
    #[error("the attestation token's x-ms-runtime.keys does not carry {what} as its first encryption key (found {found}); Key Vault would wrap the released key to a key skrd cannot use")]
    TransferKeyAbsent {
        /// Which key was expected.
        what: &'static str,
        /// The first suitable key's kid, or "none".
        found: String,
    },
    /// REPORT_DATA in the token does not bind our runtime data.
    #[error("the attestation token's x-ms-sevsnpvm-reportdata is {found}, expected it to start with SHA-256 of the runtime data {expected}; the provider attested other evidence")]
    ReportDataMismatch {
        /// hex(SHA-256(runtime data)).
        expected: String,
        /// The claim (or "absent").
        found: String,
    },
    /// The attestation type claim is not the expected one.
    #[error("the attestation token's {claim} is {found}, expected {expected}; the provider did not attest an SEV-SNP confidential VM")]
    AttestationType {
        /// The claim path.
        claim: &'static str,
        /// What is required.
        expected: &'static str,
        /// What was found.
        found: String,
    },
}

impl ErrorCode for BindingError {
    fn code(&self) -> &'static str {
        match self {
            Self::NonceMismatch { .. } => "attest-nonce-mismatch",
            Self::TransferKeyAbsent { .. } => "attest-transfer-key-absent",
            Self::ReportDataMismatch { .. } => "attest-report-data-mismatch",
            Self::AttestationType { .. } => "attest-type-unexpected",
        }
    }
}

/// JWK integers are minimal big-endian.
fn minimal(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    bytes.get(first..).unwrap_or_default()
}

/// The first key of top-level `x-ms-runtime.keys` Key Vault would wrap to (§6.2: RSA with a
/// kid and `key_ops` containing "encrypt", or `use` "enc"), as (kid, n, e).
pub fn first_encryption_key(claims: &Value) -> Option<(String, Vec<u8>, Vec<u8>)> {
    let keys = claims.get("x-ms-runtime")?.get("keys")?.as_array()?;
    keys.iter().find_map(|k| {
        let kid = k.get("kid")?.as_str()?;
        if k.get("kty")?.as_str()? != "RSA" {
            return None;
        }
        let suitable = match k.get("key_ops").and_then(Value::as_array) {
            Some(ops) => ops.iter().any(|o| o == "encrypt"),
            None => k.get("use").is_none_or(|u| u == "enc"),
        };
        if !suitable {
            return None;
        }
        let n = b64::decode_url("n", k.get("n")?.as_str()?).ok()?;
        let e = b64::decode_url("e", k.get("e")?.as_str()?).ok()?;
        Some((kid.to_string(), n, e))
    })
}

fn check_key(
    claims: &Value,
    what: &'static str,
    kid: Option<&str>,
    n: &[u8],
    e: &[u8],
) -> Result<(), BindingError> {
    match first_encryption_key(claims) {
        Some((k, tn, te))
            if minimal(&tn) == minimal(n)
                && minimal(&te) == minimal(e)
                && kid.is_none_or(|want| want == k) =>
        {
            Ok(())
        }
        Some((k, ..)) => Err(BindingError::TransferKeyAbsent { what, found: k }),
        None => Err(BindingError::TransferKeyAbsent {
            what,
            found: "none".to_string(),
        }),
    }
}

/// The SevSnpVm checks (raw SNP flow).
pub fn check_sevsnpvm(
    claims: &Value,
    nonce: Option<&str>,
    runtime_data: &[u8],
    transfer_n: &[u8],
    transfer_e: &[u8],
) -> Result<(), BindingError> {
    let ty = claims.get("x-ms-attestation-type").and_then(Value::as_str);
    if ty != Some("sevsnpvm") {
        return Err(BindingError::AttestationType {
            claim: "x-ms-attestation-type",
            expected: "sevsnpvm",
            found: ty.unwrap_or("absent").to_string(),
        });
    }
    if let Some(expected) = nonce {
        let found = claims.get("nonce").and_then(Value::as_str);
        if found != Some(expected) {
            return Err(BindingError::NonceMismatch {
                expected: expected.to_string(),
                found: found.map(str::to_string),
            });
        }
    }
    let expected = hex::encode(Sha256::digest(runtime_data));
    let found = claims
        .get("x-ms-sevsnpvm-reportdata")
        .and_then(Value::as_str)
        .unwrap_or("absent");
    if !found.to_ascii_lowercase().starts_with(&expected) {
        return Err(BindingError::ReportDataMismatch {
            expected,
            found: found.to_string(),
        });
    }
    check_key(claims, "the transfer key", None, transfer_n, transfer_e)
}

/// The AzureGuest checks (vTPM flow).
pub fn check_azure_guest(
    claims: &Value,
    ephemeral_n: &[u8],
    ephemeral_e: u32,
) -> Result<(), BindingError> {
    let ty = claims
        .get("x-ms-isolation-tee")
        .and_then(|t| t.get("x-ms-attestation-type"))
        .and_then(Value::as_str);
    if ty != Some("sevsnpvm") {
        return Err(BindingError::AttestationType {
            claim: "x-ms-isolation-tee.x-ms-attestation-type",
            expected: "sevsnpvm",
            found: ty.unwrap_or("absent").to_string(),
        });
    }
    check_key(
        claims,
        "the TPM ephemeral key",
        Some(EPHEMERAL_KID),
        ephemeral_n,
        &ephemeral_e.to_be_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The decoded claims of a real AzureGuest token (Microsoft's client library sample).
    const REAL_CLAIMS: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/real/maa-tokens/decoded-claims-examples/cvm-guest-attestation-sampleAttestationToken.json"
    ));

    fn real() -> Value {
        serde_json::from_slice(REAL_CLAIMS).unwrap()
    }

    #[test]
    fn real_azure_guest_token_binds_its_own_ephemeral_key_only() {
        let claims = real();
        let (kid, n, e) = first_encryption_key(&claims).unwrap();
        assert_eq!(kid, EPHEMERAL_KID);
        // PROTOCOLS.md §5.4: an RSA-2048 TPM key with e = AQAB (65537).
        assert_eq!(n.len(), 256);
        assert_eq!(e, [1, 0, 1]);
        check_azure_guest(&claims, &n, 65537).unwrap();
        let mut other = n.clone();
        other[10] ^= 1;
        assert!(matches!(
            check_azure_guest(&claims, &other, 65537),
            Err(BindingError::TransferKeyAbsent { .. })
        ));
        let mut tl = claims.clone();
        tl.as_object_mut().unwrap().remove("x-ms-isolation-tee");
        assert!(matches!(
            check_azure_guest(&tl, &n, 65537),
            Err(BindingError::AttestationType { .. })
        ));
    }

    #[test]
    fn sevsnpvm_checks() {
        let runtime = br#"{"keys":[]}"#;
        // SHA-256 of the runtime bytes, by `printf '{"keys":[]}' | sha256sum`.
        let digest = hex::encode(Sha256::digest(runtime));
        let n = vec![0xC1; 256];
        let claims = json!({
            "x-ms-attestation-type": "sevsnpvm",
            "nonce": "42",
            "x-ms-sevsnpvm-reportdata": format!("{digest}{}", "0".repeat(64)),
            "x-ms-runtime": {"keys": [{"e": "AQAB", "key_ops": ["encrypt"], "kid": "t", "kty": "RSA", "n": b64::encode_url(&n)}]},
        });
        check_sevsnpvm(&claims, Some("42"), runtime, &n, &[1, 0, 1]).unwrap();
        assert!(matches!(
            check_sevsnpvm(&claims, Some("43"), runtime, &n, &[1, 0, 1]),
            Err(BindingError::NonceMismatch { .. })
        ));
        assert!(matches!(
            check_sevsnpvm(&claims, Some("42"), b"other", &n, &[1, 0, 1]),
            Err(BindingError::ReportDataMismatch { .. })
        ));
        assert!(matches!(
            check_sevsnpvm(&claims, Some("42"), runtime, &n, &[3]),
            Err(BindingError::TransferKeyAbsent { .. })
        ));
        // A leading zero octet in our modulus does not matter (JWK integers are minimal).
        let mut padded = vec![0];
        padded.extend_from_slice(&n);
        check_sevsnpvm(&claims, None, runtime, &padded, &[0, 1, 0, 1]).unwrap();
    }
}
