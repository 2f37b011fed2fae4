//! Key Vault / Managed HSM key release response: `{"value": <compact JWS>}` verified and
//! decoded down to the wrapped key (PROTOCOLS.md §6.3, §6.4, §6.6; §9.1 traps 13, 17, 20, 22).
//!
//! [`verify_release_response`] follows §6.6 steps 1-7: body → JWS → `alg` RS256 → `x5c`
//! (standard base64 DER) → `x5t`/`x5t#S256`/`kid` consistency with `x5c[0]` → path to a
//! caller-provided root at the injected time → optional leaf host name → RSASSA-PKCS1-v1_5
//! SHA-256 by the leaf → payload. [`decode_release_payload`] and [`KeyHsm::parse`] decode the
//! payload without any check of the signature (parse only; used by the fuzz targets too).
//! The ciphertext is split per §6.4 (RSA-OAEP block of the transfer key's modulus length, then
//! the AES-KWP part) but never unwrapped here. Decoded bytes are never trimmed (trap 17).

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::b64;
use super::error::JoseError;
use super::jwk::{Jwk, KeyOrigin, PublicKey};
use super::jws::{CompactJws, JwsHeader, SigAlg};
use super::x5c::{check_leaf_host, verify_chain, ChainCert, ChainError};
use crate::error::ErrorCode;
use crate::format::json::parse_strict;

/// Largest response body accepted (the real one is 17 KB).
pub const MAX_BODY_LEN: usize = 1024 * 1024;
/// The only `key_hsm` schema version seen (§6.3).
pub const KEY_HSM_SCHEMA: &str = "1.0";
/// Smallest AES-KWP output: one 64-bit block of data plus the 64-bit integrity block.
pub const MIN_KWP_LEN: usize = 16;

/// The wrapping algorithm named by `enc` (PROTOCOLS.md §6.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WrapAlgorithm {
    /// `CKM_RSA_AES_KEY_WRAP`: RSA-OAEP SHA-1 + AES-KWP (the default).
    CkmRsaAesKeyWrap,
    /// `RSA_AES_KEY_WRAP_256`: RSA-OAEP SHA-256 + AES-KWP.
    RsaAesKeyWrap256,
    /// `RSA_AES_KEY_WRAP_384`: RSA-OAEP SHA-384 + AES-KWP.
    RsaAesKeyWrap384,
}

impl WrapAlgorithm {
    /// The wire names.
    pub const NAMES: &'static [&'static str] = &[
        "CKM_RSA_AES_KEY_WRAP",
        "RSA_AES_KEY_WRAP_256",
        "RSA_AES_KEY_WRAP_384",
    ];

    /// Parses a wire name.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "CKM_RSA_AES_KEY_WRAP" => Some(Self::CkmRsaAesKeyWrap),
            "RSA_AES_KEY_WRAP_256" => Some(Self::RsaAesKeyWrap256),
            "RSA_AES_KEY_WRAP_384" => Some(Self::RsaAesKeyWrap384),
            _ => None,
        }
    }

    /// The wire name.
    pub fn name(self) -> &'static str {
        match self {
            Self::CkmRsaAesKeyWrap => "CKM_RSA_AES_KEY_WRAP",
            Self::RsaAesKeyWrap256 => "RSA_AES_KEY_WRAP_256",
            Self::RsaAesKeyWrap384 => "RSA_AES_KEY_WRAP_384",
        }
    }
}

/// A release-response error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReleaseError {
    /// The JWS itself (structure, alg, signature).
    #[error(transparent)]
    Jws(#[from] JoseError),

    /// The x5c chain.
    #[error(transparent)]
    Chain(#[from] ChainError),

    /// The body is not `{"value": "<compact JWS>"}`.
    #[error(
        "release response body is not {{\"value\": \"<JWS>\"}}: {reason}; was the request \
         answered by Key Vault (check for an error body)?"
    )]
    BodyInvalid {
        /// What was wrong.
        reason: String,
    },

    /// The JWS header has no `x5c`.
    #[error("release JWS header has no x5c certificate chain; cannot tell who signed it")]
    X5cMissing,

    /// `x5t`, `x5t#S256` or `kid` does not match `x5c[0]`.
    #[error("release JWS header {field} is \"{found}\" but x5c[0] gives \"{expected}\"; refusing an inconsistent header")]
    ThumbprintMismatch {
        /// "x5t", "x5t#S256" or "kid".
        field: &'static str,
        /// Computed from `x5c[0]`.
        expected: String,
        /// As in the header.
        found: String,
    },

    /// A payload member is missing or has the wrong type.
    #[error("release payload {field} is {problem}")]
    PayloadInvalid {
        /// Dotted path.
        field: String,
        /// What is wrong.
        problem: String,
    },

    /// `key_hsm` is malformed.
    #[error("key_hsm {field} is {problem}")]
    KeyHsmInvalid {
        /// Member.
        field: &'static str,
        /// What is wrong.
        problem: String,
    },

    /// `key_hsm.schema_version` is not "1.0".
    #[error(
        "key_hsm schema_version is \"{found}\", expected \"1.0\"; update skrd to read this format"
    )]
    KeyHsmSchema {
        /// Found version.
        found: String,
    },

    /// `enc` is not a known wrapping algorithm.
    #[error("wrapping algorithm \"{found}\" is unknown (known: {known:?})")]
    EncUnknown {
        /// Found name.
        found: String,
        /// Known names.
        known: &'static [&'static str],
    },

    /// `request.enc` and `key_hsm.header.enc` differ.
    #[error("request.enc \"{request}\" differs from key_hsm header enc \"{key_hsm}\"; refusing an inconsistent response")]
    EncMismatch {
        /// request.enc.
        request: String,
        /// key_hsm.header.enc.
        key_hsm: String,
    },

    /// `request.kid` is not the key that was asked for.
    #[error(
        "release response is for key \"{found}\" but \"{expected}\" was requested; refusing a \
         response for another key"
    )]
    KeyMismatch {
        /// The key URL requested.
        expected: String,
        /// `request.kid` in the payload.
        found: String,
    },

    /// `key_hsm.header.kid` is not the transfer key put in the token.
    #[error(
        "key was wrapped to transfer key \"{found}\", expected \"{expected}\" (the first \
         encryption key of the token's top-level x-ms-runtime.keys)"
    )]
    TransferKidMismatch {
        /// The transfer key's kid.
        expected: String,
        /// `key_hsm.header.kid`.
        found: String,
    },

    /// The ciphertext cannot be an RSA block of the transfer key's size plus an AES-KWP part.
    #[error(
        "ciphertext of {found} bytes cannot be an RSA-OAEP block of {rsa_block_len} bytes plus \
         an AES-KWP part (a multiple of 8, at least 16 bytes); was the key wrapped to another \
         transfer key?"
    )]
    CiphertextLength {
        /// Ciphertext length.
        found: usize,
        /// Transfer key modulus length.
        rsa_block_len: usize,
    },
}

impl ReleaseError {
    /// `true` when the body cannot be read as `{"value": "<compact JWS>"}` at all (an error
    /// body, truncated JSON, a JWS that is not three base64url segments): unusable input
    /// (skrctl exit 2), as opposed to a response that was read and failed a check (exit 1).
    pub fn is_malformed(&self) -> bool {
        match self {
            Self::BodyInvalid { .. } => true,
            Self::Jws(e) => e.is_malformed(),
            _ => false,
        }
    }
}

impl ErrorCode for ReleaseError {
    fn code(&self) -> &'static str {
        match self {
            Self::Jws(e) => e.code(),
            Self::Chain(e) => e.code(),
            Self::BodyInvalid { .. } => "release-body-invalid",
            Self::X5cMissing => "release-x5c-missing",
            Self::ThumbprintMismatch { .. } => "release-thumbprint-mismatch",
            Self::PayloadInvalid { .. } => "release-payload-invalid",
            Self::KeyHsmInvalid { .. } => "release-key-hsm-invalid",
            Self::KeyHsmSchema { .. } => "release-key-hsm-schema",
            Self::EncUnknown { .. } => "release-enc-unknown",
            Self::EncMismatch { .. } => "release-enc-mismatch",
            Self::CiphertextLength { .. } => "release-ciphertext-length",
            Self::KeyMismatch { .. } => "release-key-mismatch",
            Self::TransferKidMismatch { .. } => "release-transfer-kid-mismatch",
        }
    }
}

/// The decoded `key_hsm` blob (§6.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyHsm {
    /// `schema_version` ("1.0").
    pub schema_version: String,
    /// `header.kid`: the transfer key AKV wrapped to (e.g. `TpmEphemeralEncryptionKey`).
    pub kid: String,
    /// `header.alg` ("dir").
    pub alg: String,
    /// `header.enc`.
    pub enc: WrapAlgorithm,
    /// `ciphertext`, decoded (RSA block || AES-KWP), never trimmed.
    pub ciphertext: Vec<u8>,
}

fn hsm_err(field: &'static str, problem: impl Into<String>) -> ReleaseError {
    ReleaseError::KeyHsmInvalid {
        field,
        problem: problem.into(),
    }
}

fn hsm_str<'a>(obj: &'a Map<String, Value>, field: &'static str) -> Result<&'a str, ReleaseError> {
    match obj.get(field) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(hsm_err(field, "not a string")),
        None => Err(hsm_err(field, "missing")),
    }
}

impl KeyHsm {
    /// Parses the JSON of a decoded `key_hsm`.
    pub fn parse(json: &[u8]) -> Result<Self, ReleaseError> {
        let value = parse_strict(json).map_err(|e| hsm_err("(document)", e))?;
        let obj = value
            .as_object()
            .ok_or_else(|| hsm_err("(document)", "not a JSON object"))?;
        let schema_version = hsm_str(obj, "schema_version")?.to_string();
        if schema_version != KEY_HSM_SCHEMA {
            return Err(ReleaseError::KeyHsmSchema {
                found: schema_version,
            });
        }
        let header = match obj.get("header") {
            Some(Value::Object(h)) => h,
            Some(_) => return Err(hsm_err("header", "not an object")),
            None => return Err(hsm_err("header", "missing")),
        };
        let kid = hsm_str(header, "kid")?.to_string();
        let alg = hsm_str(header, "alg")?.to_string();
        if alg != "dir" {
            return Err(hsm_err(
                "header.alg",
                format!("\"{alg}\", expected \"dir\""),
            ));
        }
        let enc_name = hsm_str(header, "enc")?;
        let enc = WrapAlgorithm::from_name(enc_name).ok_or_else(|| ReleaseError::EncUnknown {
            found: enc_name.to_string(),
            known: WrapAlgorithm::NAMES,
        })?;
        let ciphertext = b64::decode_any("key_hsm ciphertext", hsm_str(obj, "ciphertext")?)?;
        if ciphertext.is_empty() {
            return Err(hsm_err("ciphertext", "empty"));
        }
        Ok(Self {
            schema_version,
            kid,
            alg,
            enc,
            ciphertext,
        })
    }

    /// Splits the ciphertext into the RSA-OAEP block (`rsa_block_len` = the transfer key's
    /// modulus length in bytes) and the AES-KWP part (§6.4).
    pub fn split(&self, rsa_block_len: usize) -> Result<(&[u8], &[u8]), ReleaseError> {
        let err = || ReleaseError::CiphertextLength {
            found: self.ciphertext.len(),
            rsa_block_len,
        };
        if rsa_block_len == 0 {
            return Err(err());
        }
        let (rsa_part, kwp) = self
            .ciphertext
            .split_at_checked(rsa_block_len)
            .ok_or_else(err)?;
        if kwp.len() < MIN_KWP_LEN || kwp.len() % 8 != 0 {
            return Err(err());
        }
        Ok((rsa_part, kwp))
    }
}

/// The `request` object AKV echoes.
#[derive(Debug, Clone, PartialEq)]
pub struct ReleaseRequestEcho {
    /// `api-version`.
    pub api_version: Option<String>,
    /// `enc` (the algorithm actually used, §6.1).
    pub enc: WrapAlgorithm,
    /// `kid`: the key URL as requested.
    pub kid: String,
    /// `nonce`, if echoed (unverified whether AKV does, §10).
    pub nonce: Option<String>,
    /// The whole object.
    pub raw: Value,
}

/// The released key's public description (`response.key.key`).
#[derive(Debug, Clone, PartialEq)]
pub struct ReleasedKeyInfo {
    /// `kid`: key URL with version.
    pub kid: String,
    /// `kty` ("RSA-HSM", "EC-HSM", "oct-HSM", ...).
    pub kty: String,
    /// RSA: modulus bits (from `n`); oct: `key_size` if given.
    pub key_size: Option<usize>,
    /// EC: `crv`.
    pub crv: Option<String>,
    /// `key_ops`.
    pub key_ops: Vec<String>,
}

/// A decoded release payload.
#[derive(Debug, Clone, PartialEq)]
pub struct ReleasePayload {
    /// `request`.
    pub request: ReleaseRequestEcho,
    /// `response.key.key` without `key_hsm`.
    pub key: ReleasedKeyInfo,
    /// `response.key.key.key_hsm`, decoded.
    pub key_hsm: KeyHsm,
    /// `response.key.attributes` (object, or null if absent).
    pub attributes: Value,
    /// `response.key.release_policy.data`, decoded JSON (AKV's compact re-serialisation,
    /// no `contentType`, trap 22).
    pub release_policy: Value,
    /// `response.key.release_policy.immutable`.
    pub release_policy_immutable: Option<bool>,
}

fn pay_err(field: &str, problem: impl Into<String>) -> ReleaseError {
    ReleaseError::PayloadInvalid {
        field: field.to_string(),
        problem: problem.into(),
    }
}

fn member<'a>(
    obj: &'a Map<String, Value>,
    path: &str,
    name: &str,
) -> Result<&'a Value, ReleaseError> {
    obj.get(name)
        .ok_or_else(|| pay_err(&format!("{path}{name}"), "missing"))
}

fn member_obj<'a>(
    obj: &'a Map<String, Value>,
    path: &str,
    name: &str,
) -> Result<&'a Map<String, Value>, ReleaseError> {
    member(obj, path, name)?
        .as_object()
        .ok_or_else(|| pay_err(&format!("{path}{name}"), "not an object"))
}

fn member_str<'a>(
    obj: &'a Map<String, Value>,
    path: &str,
    name: &str,
) -> Result<&'a str, ReleaseError> {
    member(obj, path, name)?
        .as_str()
        .ok_or_else(|| pay_err(&format!("{path}{name}"), "not a string"))
}

/// Decodes a release JWS payload (no signature check) and checks its internal consistency:
/// `request.enc` = `key_hsm.header.enc`, `response.key.key.kid` has a version below the
/// requested key URL, the ciphertext splits for an RSA block of `rsa_block_len` bytes.
pub fn decode_release_payload(
    payload: &[u8],
    rsa_block_len: usize,
) -> Result<ReleasePayload, ReleaseError> {
    let value = parse_strict(payload).map_err(|e| pay_err("(document)", e))?;
    let top = value
        .as_object()
        .ok_or_else(|| pay_err("(document)", "not a JSON object"))?;

    let request_obj = member_obj(top, "", "request")?;
    let enc_name = member_str(request_obj, "request.", "enc")?;
    let enc = WrapAlgorithm::from_name(enc_name).ok_or_else(|| ReleaseError::EncUnknown {
        found: enc_name.to_string(),
        known: WrapAlgorithm::NAMES,
    })?;
    let request = ReleaseRequestEcho {
        api_version: request_obj
            .get("api-version")
            .and_then(Value::as_str)
            .map(str::to_string),
        enc,
        kid: member_str(request_obj, "request.", "kid")?.to_string(),
        nonce: request_obj
            .get("nonce")
            .and_then(Value::as_str)
            .map(str::to_string),
        raw: Value::Object(request_obj.clone()),
    };

    let response = member_obj(top, "", "response")?;
    let key_wrapper = member_obj(response, "response.", "key")?;
    let key_obj = member_obj(key_wrapper, "response.key.", "key")?;
    let p = "response.key.key.";
    let kid = member_str(key_obj, p, "kid")?.to_string();
    let kty = member_str(key_obj, p, "kty")?.to_string();
    let key_ops = crate::format::json::optional_string_array(key_obj.get("key_ops"))
        .map_err(|reason| pay_err("response.key.key.key_ops", reason))?;
    let (key_size, crv) = if kty.starts_with("RSA") {
        let n = b64::decode_any("response.key.key.n", member_str(key_obj, p, "n")?)?;
        let significant = n.iter().skip_while(|b| **b == 0).count();
        (Some(significant * 8), None)
    } else if kty.starts_with("EC") {
        (None, Some(member_str(key_obj, p, "crv")?.to_string()))
    } else {
        (
            key_obj
                .get("key_size")
                .and_then(Value::as_u64)
                .and_then(|s| usize::try_from(s).ok()),
            None,
        )
    };
    let requested = request.kid.trim_end_matches('/');
    let version_ok = kid
        .strip_prefix(requested)
        .and_then(|rest| rest.strip_prefix('/'))
        .is_some_and(|v| !v.is_empty() && !v.contains('/'));
    // A versioned request must name exactly that version.
    if !version_ok && kid != requested {
        return Err(pay_err(
            "response.key.key.kid",
            format!(
                "\"{kid}\" is not a version of the requested key \"{}\"",
                request.kid
            ),
        ));
    }

    let key_hsm_text = member_str(key_obj, p, "key_hsm")?;
    let key_hsm_json = b64::decode_any("response.key.key.key_hsm", key_hsm_text)?;
    let key_hsm = KeyHsm::parse(&key_hsm_json)?;
    if key_hsm.enc != request.enc {
        return Err(ReleaseError::EncMismatch {
            request: request.enc.name().to_string(),
            key_hsm: key_hsm.enc.name().to_string(),
        });
    }
    key_hsm.split(rsa_block_len)?;

    let (release_policy, release_policy_immutable) = match key_wrapper.get("release_policy") {
        None => (Value::Null, None),
        Some(Value::Object(rp)) => {
            let data = member_str(rp, "response.key.release_policy.", "data")?;
            let bytes = b64::decode_any("response.key.release_policy.data", data)?;
            let policy =
                parse_strict(&bytes).map_err(|e| pay_err("response.key.release_policy.data", e))?;
            (policy, rp.get("immutable").and_then(Value::as_bool))
        }
        Some(_) => return Err(pay_err("response.key.release_policy", "not an object")),
    };

    Ok(ReleasePayload {
        request,
        key: ReleasedKeyInfo {
            kid,
            kty,
            key_size,
            crv,
            key_ops,
        },
        key_hsm,
        attributes: key_wrapper
            .get("attributes")
            .cloned()
            .unwrap_or(Value::Null),
        release_policy,
        release_policy_immutable,
    })
}

/// Extracts the compact JWS from a response body `{"value": "<JWS>"}`.
pub fn release_body_jws(body: &[u8]) -> Result<String, ReleaseError> {
    if body.len() > MAX_BODY_LEN {
        return Err(JoseError::InputTooLarge {
            what: "release response body",
            limit: MAX_BODY_LEN,
            found: body.len(),
        }
        .into());
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| ReleaseError::BodyInvalid {
        reason: e.to_string(),
    })?;
    match value.get("value") {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(ReleaseError::BodyInvalid {
            reason: "\"value\" is not a string".to_string(),
        }),
        None => Err(ReleaseError::BodyInvalid {
            reason: "no \"value\" member".to_string(),
        }),
    }
}

/// What a release response is checked against.
#[derive(Debug, Clone)]
pub struct ReleaseVerification<'a> {
    /// Trust anchors (production: the system roots; the emulator: its CA).
    pub roots: &'a [ChainCert],
    /// Validation time, Unix seconds.
    pub now: i64,
    /// The vault host called; the leaf's SAN must cover it. `None` skips the check.
    pub expected_host: Option<&'a str>,
    /// Modulus length in bytes of the transfer key the key was wrapped to (256 for RSA-2048).
    pub rsa_block_len: usize,
    /// The key URL requested; `request.kid` must name it (one trailing '/' and ASCII case
    /// ignored). `None` skips the check.
    pub expected_key: Option<&'a str>,
    /// The kid of the transfer key put in the token; `key_hsm.header.kid` must equal it.
    /// `None` skips the check.
    pub expected_transfer_kid: Option<&'a str>,
}

/// A verified release response.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedRelease {
    /// The JWS header.
    pub header: JwsHeader,
    /// Subjects of the certificate path, leaf first, root last.
    pub chain: Vec<String>,
    /// The decoded payload.
    pub payload: ReleasePayload,
}

fn sha1_of(data: &[u8]) -> Vec<u8> {
    sha1::Sha1::digest(data).to_vec()
}

/// Verifies a release response body (§6.6 steps 1-7) and decodes its payload.
pub fn verify_release_response(
    body: &[u8],
    v: &ReleaseVerification<'_>,
) -> Result<VerifiedRelease, ReleaseError> {
    let compact = release_body_jws(body)?;
    let jws = CompactJws::parse(compact.as_bytes())?;
    SigAlg::from_header(&jws.header.alg)?;
    jws.header.check_typ_jwt()?;
    let leaf_der = jws.header.x5c.first().ok_or(ReleaseError::X5cMissing)?;

    // Step 3: header thumbprints must describe x5c[0].
    let s1 = sha1_of(leaf_der);
    let checks = [
        ("x5t", jws.header.x5t.as_deref(), b64::encode_url(&s1)),
        (
            "x5t#S256",
            jws.header.x5t_s256.as_deref(),
            b64::encode_url(&Sha256::digest(leaf_der)),
        ),
        // Key Vault's kid is the upper-case hex SHA-1 of x5c[0] (§6.3); a kid of another
        // shape (Managed HSM is unverified) is opaque and not compared.
        (
            "kid",
            jws.header
                .kid
                .as_deref()
                .filter(|k| k.len() == 40 && k.bytes().all(|b| b.is_ascii_hexdigit())),
            hex::encode_upper(&s1),
        ),
    ];
    for (field, found, expected) in checks {
        if let Some(found) = found {
            let same = if field == "kid" {
                found.eq_ignore_ascii_case(&expected)
            } else {
                found == expected
            };
            if !same {
                return Err(ReleaseError::ThumbprintMismatch {
                    field,
                    expected,
                    found: found.to_string(),
                });
            }
        }
    }

    // Step 4: path to a configured root at `now`.
    let x5c = jws
        .header
        .x5c
        .iter()
        .enumerate()
        .map(|(i, der)| ChainCert::from_der(&format!("x5c[{i}]"), der))
        .collect::<Result<Vec<_>, _>>()?;
    let path = verify_chain(&x5c, v.roots, v.now)?;
    let leaf = x5c.first().ok_or(ReleaseError::X5cMissing)?;
    // Step 5: the leaf names the vault called.
    if let Some(host) = v.expected_host {
        check_leaf_host(leaf, host)?;
    }
    // Step 6: the leaf signed the JWS.
    let key = super::jwk::spki_key(&leaf.cert).map_err(|reason| ChainError::CertInvalid {
        what: "x5c[0]".to_string(),
        reason,
    })?;
    if !matches!(key, PublicKey::Rsa(_)) {
        return Err(JoseError::KeyTypeMismatch {
            alg: jws.header.alg.clone(),
            kid: leaf.subject.clone(),
            kty: key.kty().to_string(),
        }
        .into());
    }
    let jwk = Jwk {
        kid: Some(leaf.subject.clone()),
        alg: None,
        use_: None,
        key_ops: Vec::new(),
        key,
        x5c: vec![leaf.der.clone()],
        origin: KeyOrigin::Certificate,
    };
    jws.verify_with(&jwk)?;
    // Step 7: the payload.
    let payload = decode_release_payload(&jws.payload, v.rsa_block_len)?;
    if let Some(expected) = v.expected_key {
        let found = &payload.request.kid;
        if !found
            .trim_end_matches('/')
            .eq_ignore_ascii_case(expected.trim_end_matches('/'))
        {
            return Err(ReleaseError::KeyMismatch {
                expected: expected.to_string(),
                found: found.clone(),
            });
        }
    }
    if let Some(expected) = v.expected_transfer_kid {
        if payload.key_hsm.kid != expected {
            return Err(ReleaseError::TransferKidMismatch {
                expected: expected.to_string(),
                found: payload.key_hsm.kid.clone(),
            });
        }
    }
    Ok(VerifiedRelease {
        header: jws.header,
        chain: path.iter().map(|c| c.subject.clone()).collect(),
        payload,
    })
}
