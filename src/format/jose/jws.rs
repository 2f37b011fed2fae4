//! Compact JWS: parsing and signature verification (RFC 7515; PROTOCOLS.md §5.4, §5.5 steps 1
//! and 3, §6.3, §6.6 steps 1, 2 and 6; §9.1 traps 13 and 14).
//!
//! Structure is strict: exactly three non-empty '.'-separated segments of base64url text
//! (leading/trailing ASCII whitespace, e.g. a file's final newline, is ignored). Decoding is
//! lenient: `=` padding is accepted when correct. The signature is verified over the segments
//! exactly as received (`header_b64 "." payload_b64`), never over a re-encoding.
//!
//! Algorithms: RS256 only — MAA publishes `id_token_signing_alg_values_supported: ["RS256"]`
//! (§5.1) and Key Vault signs release responses with RS256 (§6.3, §6.6 step 2). `none` and
//! every other algorithm are refused, and the key must be an RSA key of at least 2048 bits
//! (no algorithm confusion: an EC or oct key is never used for RS256).

use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::traits::PublicKeyParts;
use serde_json::{Map, Value};
use sha2::Sha256;
use signature::Verifier;

use super::b64;
use super::error::JoseError;
use super::jwk::{Jwk, KeySet, PublicKey, MAX_X5C};
use crate::format::json::parse_strict;

/// Largest compact JWS accepted (real MAA tokens are ~6 KB, the AKV release JWS ~17 KB).
pub const MAX_COMPACT_LEN: usize = 256 * 1024;
/// The algorithms skrd verifies.
pub const SUPPORTED_ALGS: &[&str] = &["RS256"];
/// Smallest RSA modulus accepted for a signature, in bits.
pub const MIN_RSA_BITS: usize = 2048;

/// A signature algorithm skrd verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigAlg {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
}

impl SigAlg {
    /// Maps a header `alg` to a supported algorithm, refusing `none` and everything else.
    pub fn from_header(alg: &str) -> Result<Self, JoseError> {
        if alg.eq_ignore_ascii_case("none") {
            return Err(JoseError::AlgNone {
                found: alg.to_string(),
            });
        }
        match alg {
            "RS256" => Ok(Self::Rs256),
            _ => Err(JoseError::AlgUnsupported {
                found: alg.to_string(),
                supported: SUPPORTED_ALGS,
            }),
        }
    }

    /// The JOSE name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Rs256 => "RS256",
        }
    }
}

/// The protected header of a compact JWS.
#[derive(Debug, Clone, PartialEq)]
pub struct JwsHeader {
    /// `alg`, as found (checked when verifying).
    pub alg: String,
    /// `kid`, opaque.
    pub kid: Option<String>,
    /// `typ`.
    pub typ: Option<String>,
    /// `jku` (MAA: `https://<instance>/certs`).
    pub jku: Option<String>,
    /// `x5c`, decoded from standard base64 to DER, leaf first (AKV release responses).
    pub x5c: Vec<Vec<u8>>,
    /// `x5t` (base64url SHA-1 of `x5c[0]`).
    pub x5t: Option<String>,
    /// `x5t#S256` (base64url SHA-256 of `x5c[0]`).
    pub x5t_s256: Option<String>,
    /// The whole header object.
    pub raw: Map<String, Value>,
}

fn header_str(obj: &Map<String, Value>, field: &'static str) -> Result<Option<String>, JoseError> {
    match obj.get(field) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(JoseError::HeaderFieldInvalid {
            field,
            problem: "not a string",
            expected: "a JSON string",
        }),
    }
}

impl JwsHeader {
    /// Parses the decoded header JSON.
    pub fn from_json(bytes: &[u8]) -> Result<Self, JoseError> {
        let value = parse_strict(bytes).map_err(|reason| JoseError::JsonInvalid {
            field: "JWS header",
            reason,
        })?;
        let Value::Object(raw) = value else {
            return Err(JoseError::JsonInvalid {
                field: "JWS header",
                reason: "not an object".to_string(),
            });
        };
        let alg = header_str(&raw, "alg")?.ok_or(JoseError::HeaderFieldInvalid {
            field: "alg",
            problem: "missing",
            expected: "\"RS256\"",
        })?;
        if let Some(crit) = raw.get("crit") {
            let found = match crit {
                Value::Array(items) => items
                    .iter()
                    .map(|i| i.as_str().unwrap_or("(non-string)").to_string())
                    .collect(),
                other => vec![other.to_string()],
            };
            return Err(JoseError::CritUnsupported { found });
        }
        let x5c = match raw.get("x5c") {
            None => Vec::new(),
            Some(Value::Array(items)) => {
                if items.len() > MAX_X5C {
                    return Err(JoseError::InputTooLarge {
                        what: "JWS header x5c certificate count",
                        limit: MAX_X5C,
                        found: items.len(),
                    });
                }
                items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| match item {
                        Value::String(s) => b64::decode_std(&format!("JWS header x5c[{i}]"), s),
                        _ => Err(JoseError::HeaderFieldInvalid {
                            field: "x5c",
                            problem: "an array with a non-string entry",
                            expected: "an array of standard base64 DER certificates",
                        }),
                    })
                    .collect::<Result<Vec<_>, _>>()?
            }
            Some(_) => {
                return Err(JoseError::HeaderFieldInvalid {
                    field: "x5c",
                    problem: "not an array",
                    expected: "an array of standard base64 DER certificates",
                })
            }
        };
        Ok(Self {
            alg,
            kid: header_str(&raw, "kid")?,
            typ: header_str(&raw, "typ")?,
            jku: header_str(&raw, "jku")?,
            x5t: header_str(&raw, "x5t")?,
            x5t_s256: header_str(&raw, "x5t#S256")?,
            x5c,
            raw,
        })
    }

    /// Checks `typ`, when present, is "JWT" (case-insensitive, RFC 7519 §5.1).
    pub fn check_typ_jwt(&self) -> Result<(), JoseError> {
        match &self.typ {
            Some(t) if !t.eq_ignore_ascii_case("JWT") => {
                Err(JoseError::TypUnexpected { found: t.clone() })
            }
            _ => Ok(()),
        }
    }
}

/// A parsed (not yet verified) compact JWS.
#[derive(Debug, Clone, PartialEq)]
pub struct CompactJws {
    /// The protected header.
    pub header: JwsHeader,
    /// The decoded payload bytes.
    pub payload: Vec<u8>,
    /// The decoded signature bytes.
    pub signature: Vec<u8>,
    signing_input: String,
}

impl CompactJws {
    /// Parses `header.payload.signature` (bytes; surrounding ASCII whitespace ignored).
    pub fn parse(input: &[u8]) -> Result<Self, JoseError> {
        if input.len() > MAX_COMPACT_LEN {
            return Err(JoseError::InputTooLarge {
                what: "compact JWS",
                limit: MAX_COMPACT_LEN,
                found: input.len(),
            });
        }
        let start = input.len() - input.trim_ascii_start().len();
        let text = input.trim_ascii();
        if let Some(pos) = text
            .iter()
            .position(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'=')))
        {
            return Err(JoseError::JwsNotCompact {
                byte: text.get(pos).copied().unwrap_or(0),
                offset: start + pos,
            });
        }
        // Only ASCII remains, so this cannot fail; map the impossible error anyway.
        let text = std::str::from_utf8(text).map_err(|_| JoseError::JwsNotCompact {
            byte: 0,
            offset: start,
        })?;
        let parts: Vec<&str> = text.split('.').collect();
        let [h, p, s] = parts.as_slice() else {
            return Err(JoseError::JwsSegmentCount { found: parts.len() });
        };
        for (seg, name) in [(h, "header"), (p, "payload"), (s, "signature")] {
            if seg.is_empty() {
                return Err(JoseError::JwsSegmentEmpty { segment: name });
            }
        }
        let header_bytes = b64::decode_url("JWS header", h)?;
        let header = JwsHeader::from_json(&header_bytes)?;
        let payload = b64::decode_url("JWS payload", p)?;
        let signature = b64::decode_url("JWS signature", s)?;
        let signing_input = format!("{h}.{p}");
        Ok(Self {
            header,
            payload,
            signature,
            signing_input,
        })
    }

    /// The bytes the signature covers: `header_b64 "." payload_b64` exactly as received.
    pub fn signing_input(&self) -> &[u8] {
        self.signing_input.as_bytes()
    }

    /// Verifies the signature with one key: `alg` must be supported, the key must fit it
    /// (type, size, its own `alg`/`use` if any).
    pub fn verify_with(&self, key: &Jwk) -> Result<(), JoseError> {
        let alg = SigAlg::from_header(&self.header.alg)?;
        check_key_fits(alg, key)?;
        let PublicKey::Rsa(rsa_key) = &key.key else {
            return Err(JoseError::KeyTypeMismatch {
                alg: alg.name().to_string(),
                kid: key.kid_label(),
                kty: key.key.kty().to_string(),
            });
        };
        let bad = || JoseError::SignatureInvalid {
            alg: alg.name().to_string(),
            kid: key.kid_label(),
        };
        if self.signature.len() != rsa_key.size() {
            return Err(bad());
        }
        let sig = Signature::try_from(self.signature.as_slice()).map_err(|_| bad())?;
        VerifyingKey::<Sha256>::new(rsa_key.clone())
            .verify(self.signing_input(), &sig)
            .map_err(|_| bad())
    }

    /// Verifies the signature with the key the header's `kid` selects from `keys`
    /// ([`KeySet::select`]); returns the key that verified.
    pub fn verify<'k>(&self, keys: &'k KeySet) -> Result<&'k Jwk, JoseError> {
        SigAlg::from_header(&self.header.alg)?;
        let candidates = keys.select(self.header.kid.as_deref())?;
        let mut first_err = None;
        for key in &candidates {
            match self.verify_with(key) {
                Ok(()) => return Ok(key),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        Err(match (candidates.len(), first_err) {
            (1, Some(e)) => e,
            (_, _) => JoseError::SignatureInvalid {
                alg: self.header.alg.clone(),
                kid: candidates
                    .iter()
                    .map(|k| k.kid_label())
                    .collect::<Vec<_>>()
                    .join(", "),
            },
        })
    }
}

/// Refuses a key whose type, size, `alg` or `use` does not fit `alg`.
fn check_key_fits(alg: SigAlg, key: &Jwk) -> Result<(), JoseError> {
    if let Some(key_alg) = &key.alg {
        if key_alg != alg.name() {
            return Err(JoseError::KeyAlgMismatch {
                alg: alg.name().to_string(),
                kid: key.kid_label(),
                key_alg: key_alg.clone(),
            });
        }
    }
    if let Some(use_) = &key.use_ {
        if use_ != "sig" {
            return Err(JoseError::KeyUseNotSignature {
                kid: key.kid_label(),
                found: use_.clone(),
            });
        }
    }
    match (&key.key, alg) {
        (PublicKey::Rsa(k), SigAlg::Rs256) => {
            let bits = k.n().bits();
            if bits < MIN_RSA_BITS {
                return Err(JoseError::RsaKeyTooSmall {
                    kid: key.kid_label(),
                    bits,
                    min: MIN_RSA_BITS,
                });
            }
            Ok(())
        }
        (other, _) => Err(JoseError::KeyTypeMismatch {
            alg: alg.name().to_string(),
            kid: key.kid_label(),
            kty: other.kty().to_string(),
        }),
    }
}
