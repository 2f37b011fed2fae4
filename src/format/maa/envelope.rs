//! Attestation response bodies (PROTOCOLS.md §5.2 "Response", §5.3 "Response encryption").
//!
//! Both endpoints answer `200 {"token": T}`. For SevSnpVm, T is the compact JWT. For
//! AzureGuest, T is unpadded base64url of the encrypted envelope
//!
//! ```json
//! {"Jwt": "<std base64 ciphertext>", "EncryptedInnerKey": "<std base64, RSA block>",
//!  "EncryptionParams": {"BlockMode": "ChainingModeGCM", "BlockPadding": "PKCS7",
//!                       "Cipher": "AES", "KeySizeInBits": 256, "Iv": "<std base64, 12 bytes>"},
//!  "AuthenticationData": "<std base64, 16-byte GCM tag>"}
//! ```
//!
//! Only AES / ChainingModeGCM / 256-bit keys are accepted (Microsoft's client accepts exactly
//! that; `BlockPadding` is announced as "PKCS7" but GCM does not pad, so its value is not
//! checked). Every field error names the field.

use serde_json::{Map, Value};

use super::MaaFormatError;
use crate::format::jose::b64;
use crate::format::json::type_name;

/// Largest response body parsed (real envelopes are ~10 KiB).
pub const MAX_BODY: usize = 1 << 20;
/// GCM IV length MAA uses.
pub const IV_LEN: usize = 12;
/// GCM tag length.
pub const TAG_LEN: usize = 16;
/// Largest RSA block the ephemeral key (RSA-2048) decrypts.
pub const INNER_KEY_LEN: usize = 256;

/// The parsed AzureGuest envelope.
#[derive(Clone, PartialEq, Eq)]
pub struct EncryptedToken {
    /// AES-GCM ciphertext of the compact JWT (without the tag).
    pub ciphertext: Vec<u8>,
    /// The AES key, RSAES-PKCS1-v1_5-encrypted to the TPM ephemeral key.
    pub encrypted_inner_key: Vec<u8>,
    /// GCM IV.
    pub iv: [u8; IV_LEN],
    /// GCM tag.
    pub tag: [u8; TAG_LEN],
}

impl std::fmt::Debug for EncryptedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptedToken")
            .field("ciphertext_len", &self.ciphertext.len())
            .field("encrypted_inner_key_len", &self.encrypted_inner_key.len())
            .finish_non_exhaustive()
    }
}

fn object(what: &'static str, bytes: &[u8]) -> Result<Map<String, Value>, MaaFormatError> {
    if bytes.len() > MAX_BODY {
        return Err(MaaFormatError::NotJson {
            what,
            reason: format!(
                "{} bytes is more than the {MAX_BODY}-byte limit",
                bytes.len()
            ),
        });
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(o)) => Ok(o),
        Ok(other) => Err(MaaFormatError::NotJson {
            what,
            reason: format!("found a JSON {}", type_name(&other)),
        }),
        Err(e) => Err(MaaFormatError::NotJson {
            what,
            reason: e.to_string(),
        }),
    }
}

fn string<'a>(
    o: &'a Map<String, Value>,
    field: &'static str,
    name: &str,
) -> Result<&'a str, MaaFormatError> {
    match o.get(name) {
        None => Err(MaaFormatError::FieldMissing { field }),
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(MaaFormatError::FieldType {
            field,
            expected: "a string",
            found: type_name(other),
        }),
    }
}

fn std_b64(
    o: &Map<String, Value>,
    field: &'static str,
    name: &str,
) -> Result<Vec<u8>, MaaFormatError> {
    let text = string(o, field, name)?;
    b64::decode_any(field, text).map_err(|e| MaaFormatError::FieldBase64 {
        field,
        flavour: "base64",
        reason: e.to_string(),
    })
}

/// The `token` member of an attestation response body.
pub fn token_member(body: &[u8]) -> Result<String, MaaFormatError> {
    let o = object("attestation response body", body)?;
    Ok(string(&o, "token", "token")?.to_string())
}

/// Checks that `token` looks like a compact JWS (three base64url segments, first two non-empty).
pub fn check_compact(token: &str) -> Result<(), MaaFormatError> {
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 {
        return Err(MaaFormatError::TokenMalformed {
            reason: "it does not have exactly three segments",
        });
    }
    let url = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if parts.iter().take(2).any(|p| p.is_empty()) || !parts.iter().all(|p| url(p)) {
        return Err(MaaFormatError::TokenMalformed {
            reason: "a segment is empty or not base64url",
        });
    }
    Ok(())
}

/// SevSnpVm: the compact JWT of `{"token": JWT}`.
pub fn plain_token(body: &[u8]) -> Result<String, MaaFormatError> {
    let token = token_member(body)?;
    check_compact(&token)?;
    Ok(token)
}

impl EncryptedToken {
    /// Parses an AzureGuest response body `{"token": base64url(envelope JSON)}`.
    pub fn from_body(body: &[u8]) -> Result<Self, MaaFormatError> {
        let token = token_member(body)?;
        let envelope =
            b64::decode_any("token", &token).map_err(|e| MaaFormatError::FieldBase64 {
                field: "token",
                flavour: "base64url",
                reason: e.to_string(),
            })?;
        Self::parse(&envelope)
    }

    /// Parses the decoded envelope JSON.
    pub fn parse(envelope: &[u8]) -> Result<Self, MaaFormatError> {
        let o = object("decoded attestation token envelope", envelope)?;
        let params = match o.get("EncryptionParams") {
            None => {
                return Err(MaaFormatError::FieldMissing {
                    field: "EncryptionParams",
                })
            }
            Some(Value::Object(p)) => p,
            Some(other) => {
                return Err(MaaFormatError::FieldType {
                    field: "EncryptionParams",
                    expected: "an object",
                    found: type_name(other),
                })
            }
        };
        for (field, name, expected) in [
            ("EncryptionParams.Cipher", "Cipher", "AES"),
            ("EncryptionParams.BlockMode", "BlockMode", "ChainingModeGCM"),
        ] {
            let found = string(params, field, name)?;
            if found != expected {
                return Err(MaaFormatError::EncryptionUnsupported {
                    field,
                    expected,
                    found: found.to_string(),
                });
            }
        }
        match params.get("KeySizeInBits") {
            None => {
                return Err(MaaFormatError::FieldMissing {
                    field: "EncryptionParams.KeySizeInBits",
                })
            }
            Some(v) if v.as_u64() == Some(256) => {}
            Some(Value::Number(n)) => {
                return Err(MaaFormatError::EncryptionUnsupported {
                    field: "EncryptionParams.KeySizeInBits",
                    expected: "256",
                    found: n.to_string(),
                })
            }
            Some(other) => {
                return Err(MaaFormatError::FieldType {
                    field: "EncryptionParams.KeySizeInBits",
                    expected: "an integer",
                    found: type_name(other),
                })
            }
        }
        let iv = std_b64(params, "EncryptionParams.Iv", "Iv")?;
        let iv: [u8; IV_LEN] =
            iv.as_slice()
                .try_into()
                .map_err(|_| MaaFormatError::FieldLength {
                    field: "EncryptionParams.Iv",
                    expected: "12",
                    found: iv.len(),
                })?;
        let tag = std_b64(&o, "AuthenticationData", "AuthenticationData")?;
        let tag: [u8; TAG_LEN] =
            tag.as_slice()
                .try_into()
                .map_err(|_| MaaFormatError::FieldLength {
                    field: "AuthenticationData",
                    expected: "16",
                    found: tag.len(),
                })?;
        let encrypted_inner_key = std_b64(&o, "EncryptedInnerKey", "EncryptedInnerKey")?;
        if encrypted_inner_key.is_empty() || encrypted_inner_key.len() > INNER_KEY_LEN {
            return Err(MaaFormatError::FieldLength {
                field: "EncryptedInnerKey",
                expected: "1 to 256 (one RSA-2048 block)",
                found: encrypted_inner_key.len(),
            });
        }
        let ciphertext = std_b64(&o, "Jwt", "Jwt")?;
        if ciphertext.is_empty() {
            return Err(MaaFormatError::FieldLength {
                field: "Jwt",
                expected: "at least 1",
                found: 0,
            });
        }
        Ok(Self {
            ciphertext,
            encrypted_inner_key,
            iv,
            tag,
        })
    }
}

/// Fuzz entry point: every parser here that reads an untrusted attestation answer. Never
/// panics; results are ignored.
pub fn fuzz_envelope(data: &[u8]) {
    let _ = EncryptedToken::from_body(data);
    let _ = EncryptedToken::parse(data);
    let _ = plain_token(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = check_compact(text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The decoded envelope of the 200 response in the REST example Azure/azure-rest-api-specs
    /// `specification/attestation/data-plane/Attestation/stable/2025-06-01/examples/
    /// AttestAzureGuestVm.json` @ 4f486174, member order as in the example; only `Jwt` is cut to
    /// its first 60 characters (the example's is ~5 KB). Decoded with python3 `base64`.
    const REAL_ENVELOPE: &str = r#"{"Jwt":"76kOqre2QpeBHsHT/KfgV9m4Vz3/WEEQ4Gpx2zk2h07421Se0oTVXn4IlNOP","EncryptedInnerKey":"fJUiCFc4vO214/qAzvp2dYUrWcgtpIdUv2G3x5F9nQRsbYqXpWnEDQD/lejSGSZOOYgO66Eu6yYnmE6mRBJP/e1gInbz1iH5yw+4KRt/ndr8gpD0nAbCSBPta2MKTbMDc6jlpIrWZORRVkUh4OC992loL8abupXObCpp5zyXLDWkBtKKFJvcdNDMglgU7a41i2m2lCMsUZlom5uKvAqkbxHUcYZbEs2LL2NUAZO4lHudV0SOLVSqSxkR5iR833KPeyz+LIyqNVgPKgCdSV6HZyleElhq5FVWC8ESaK5AHWTb2nvV/N5eceWoe/i7oMh4pNHFxj8Mhr9eF8L7Kq2YXg==","EncryptionParams":{"BlockMode":"ChainingModeGCM","BlockPadding":"PKCS7","Cipher":"AES","KeySizeInBits":256,"Iv":"eSDcsXBhxCvL2xos"},"AuthenticationData":"qu6gmp2zM7A9bkayAjRAeQ=="}"#;

    #[test]
    fn parses_the_real_envelope() {
        let t = EncryptedToken::parse(REAL_ENVELOPE.as_bytes()).unwrap();
        // PROTOCOLS.md §5.3: 256-byte inner key, 12-byte IV, 16-byte tag on the real example.
        assert_eq!(t.encrypted_inner_key.len(), 256);
        assert_eq!(t.iv.len(), 12);
        // "eSDcsXBhxCvL2xos" → 79 20 dc b1 70 61 c4 2b cb db 1a 2c (python3 base64.b64decode).
        assert_eq!(hex::encode(t.iv), "7920dcb17061c42bcbdb1a2c");
        assert_eq!(hex::encode(t.tag), "aaeea09a9db333b03d6e46b202344079");
        assert_eq!(t.ciphertext.len(), 45);
        // The body wraps it in unpadded base64url.
        let body = json!({"token": b64::encode_url(REAL_ENVELOPE.as_bytes())}).to_string();
        assert_eq!(EncryptedToken::from_body(body.as_bytes()).unwrap(), t);
    }

    fn mutate(f: impl FnOnce(&mut Value)) -> Result<EncryptedToken, MaaFormatError> {
        let mut v: Value = serde_json::from_str(REAL_ENVELOPE).unwrap();
        f(&mut v);
        EncryptedToken::parse(v.to_string().as_bytes())
    }

    #[test]
    fn every_field_has_its_error() {
        let e = mutate(|v| v["EncryptionParams"]["Cipher"] = json!("DES")).unwrap_err();
        assert!(
            matches!(
                e,
                MaaFormatError::EncryptionUnsupported {
                    field: "EncryptionParams.Cipher",
                    ..
                }
            ),
            "{e}"
        );
        let e =
            mutate(|v| v["EncryptionParams"]["BlockMode"] = json!("ChainingModeCBC")).unwrap_err();
        assert!(
            matches!(
                e,
                MaaFormatError::EncryptionUnsupported {
                    field: "EncryptionParams.BlockMode",
                    ..
                }
            ),
            "{e}"
        );
        let e = mutate(|v| v["EncryptionParams"]["KeySizeInBits"] = json!(128)).unwrap_err();
        assert!(
            matches!(
                e,
                MaaFormatError::EncryptionUnsupported {
                    field: "EncryptionParams.KeySizeInBits",
                    ..
                }
            ),
            "{e}"
        );
        let e = mutate(|v| v["EncryptionParams"]["KeySizeInBits"] = json!("256")).unwrap_err();
        assert!(
            matches!(
                e,
                MaaFormatError::FieldType {
                    field: "EncryptionParams.KeySizeInBits",
                    ..
                }
            ),
            "{e}"
        );
        let e = mutate(|v| v["EncryptionParams"]["Iv"] = json!("AAAA")).unwrap_err();
        assert!(
            matches!(
                e,
                MaaFormatError::FieldLength {
                    field: "EncryptionParams.Iv",
                    found: 3,
                    ..
                }
            ),
            "{e}"
        );
        let e = mutate(|v| v["AuthenticationData"] = json!("!!")).unwrap_err();
        assert!(
            matches!(
                e,
                MaaFormatError::FieldBase64 {
                    field: "AuthenticationData",
                    ..
                }
            ),
            "{e}"
        );
        let e = mutate(|v| {
            v.as_object_mut().unwrap().remove("Jwt");
        })
        .unwrap_err();
        assert!(
            matches!(e, MaaFormatError::FieldMissing { field: "Jwt" }),
            "{e}"
        );
        let e = mutate(|v| v["EncryptedInnerKey"] = json!(5)).unwrap_err();
        assert!(
            matches!(
                e,
                MaaFormatError::FieldType {
                    field: "EncryptedInnerKey",
                    ..
                }
            ),
            "{e}"
        );
        let e = mutate(|v| v["EncryptionParams"] = json!([])).unwrap_err();
        assert!(
            matches!(
                e,
                MaaFormatError::FieldType {
                    field: "EncryptionParams",
                    ..
                }
            ),
            "{e}"
        );
        assert!(matches!(
            EncryptedToken::parse(b"[]"),
            Err(MaaFormatError::NotJson { .. })
        ));
        assert!(matches!(
            EncryptedToken::from_body(b"{\"token\":\"***\"}"),
            Err(MaaFormatError::FieldBase64 { field: "token", .. })
        ));
        assert!(matches!(
            EncryptedToken::from_body(b"<html>"),
            Err(MaaFormatError::NotJson { .. })
        ));
    }

    #[test]
    fn fuzz_entry_survives_truncations_and_flips() {
        let body = json!({"token": b64::encode_url(REAL_ENVELOPE.as_bytes())}).to_string();
        for input in [REAL_ENVELOPE.as_bytes(), body.as_bytes()] {
            for cut in 0..input.len() {
                fuzz_envelope(&input[..cut]);
            }
            for i in (0..input.len()).step_by(7) {
                let mut m = input.to_vec();
                m[i] ^= 0x55;
                fuzz_envelope(&m);
            }
        }
    }

    #[test]
    fn plain_tokens() {
        assert_eq!(
            plain_token(br#"{"token":"eyJh.eyJi.c2ln"}"#).unwrap(),
            "eyJh.eyJi.c2ln"
        );
        for bad in [
            &br#"{"token":"a.b"}"#[..],
            br#"{"token":"a..c"}"#,
            br#"{"token":"a.b.c+"}"#,
        ] {
            assert!(matches!(
                plain_token(bad),
                Err(MaaFormatError::TokenMalformed { .. })
            ));
        }
        assert!(matches!(
            plain_token(br#"{"tok":"a"}"#),
            Err(MaaFormatError::FieldMissing { field: "token" })
        ));
    }
}
