//! JWK, JWKS and X.509 certificates as sources of token-signing keys (PROTOCOLS.md §5.1, §5.5
//! step 3, §9.1 trap 14).
//!
//! A key file is a JWKS (`{"keys":[...]}`, the issuer's `/certs` document), a single JWK, or one
//! or more X.509 certificates (PEM or DER) — the signing certificate pinned by the operator.
//! JWKs carry RSA `n`/`e`, EC `crv`/`x`/`y`, and/or `x5c` (standard base64 DER; the key of
//! `x5c[0]` is used when `n`/`e` are absent and must equal them when present).
//!
//! `kid` is opaque: it is matched by exact string equality and never decoded or derived
//! (`"ZOub…yks"` and `"ZOub…yks="` are different kids). Keys without a kid (a certificate
//! key file, or a JWK that has none) stand for "the operator pinned this key": they are tried
//! for any token kid that the set does not name.

use der::asn1::ObjectIdentifier;
use der::{Decode, Encode};
use rsa::traits::PublicKeyParts;
use rsa::{BigUint, RsaPublicKey};
use serde_json::{Map, Value};
use x509_cert::Certificate;

use super::b64;
use super::error::JoseError;

/// Largest key file accepted (a JWKS of a few dozen keys with certificates fits easily).
pub const MAX_KEY_FILE_LEN: usize = 1024 * 1024;
/// Largest number of keys in one set.
pub const MAX_KEYS: usize = 256;
/// Largest number of certificates in one `x5c`.
pub const MAX_X5C: usize = 10;
/// Largest RSA modulus accepted, in bits.
pub const MAX_RSA_BITS: usize = 8192;

const OID_RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const OID_P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const OID_P521: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.35");

/// The public key material of a JWK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicKey {
    /// `kty` "RSA" (or "RSA-HSM"): modulus and exponent.
    Rsa(RsaPublicKey),
    /// `kty` "EC": curve name and affine coordinates (big-endian, as in the JWK).
    Ec {
        /// "P-256", "P-384" or "P-521".
        crv: String,
        /// x coordinate.
        x: Vec<u8>,
        /// y coordinate.
        y: Vec<u8>,
    },
    /// Any other `kty` (kept so that selecting it gives a precise error).
    Other {
        /// The `kty` member.
        kty: String,
    },
}

impl PublicKey {
    /// The JWK `kty` family: "RSA", "EC" or the other type's name.
    pub fn kty(&self) -> &str {
        match self {
            Self::Rsa(_) => "RSA",
            Self::Ec { .. } => "EC",
            Self::Other { kty } => kty,
        }
    }

    /// Size in bits: RSA modulus length, EC field size; `None` for other types.
    pub fn bits(&self) -> Option<usize> {
        match self {
            Self::Rsa(k) => Some(k.n().bits()),
            Self::Ec { crv, .. } => match crv.as_str() {
                "P-256" => Some(256),
                "P-384" => Some(384),
                "P-521" => Some(521),
                _ => None,
            },
            Self::Other { .. } => None,
        }
    }
}

/// Where a key came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOrigin {
    /// A JWK (alone or in a JWKS).
    Jwk,
    /// An X.509 certificate given as the key file (pinned signing certificate).
    Certificate,
}

/// One verification key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jwk {
    /// `kid`, compared by exact string equality; `None` for a certificate.
    pub kid: Option<String>,
    /// `alg` restriction, if the JWK has one.
    pub alg: Option<String>,
    /// `use` ("sig", "enc"), if present.
    pub use_: Option<String>,
    /// `key_ops`, if present (empty otherwise).
    pub key_ops: Vec<String>,
    /// The key material.
    pub key: PublicKey,
    /// `x5c` certificates (DER), leaf first; empty if none.
    pub x5c: Vec<Vec<u8>>,
    /// Where the key came from.
    pub origin: KeyOrigin,
}

impl Jwk {
    /// The kid for messages: the kid, or "(no kid)".
    pub fn kid_label(&self) -> String {
        self.kid.clone().unwrap_or_else(|| "(no kid)".to_string())
    }
}

/// A set of verification keys (JWKS, JWK or certificates).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySet {
    /// The keys, in file order.
    pub keys: Vec<Jwk>,
}

impl KeySet {
    /// Reads a key file: a JWKS, a single JWK, PEM certificate(s) or one DER certificate.
    pub fn from_bytes(data: &[u8]) -> Result<Self, JoseError> {
        if data.len() > MAX_KEY_FILE_LEN {
            return Err(JoseError::InputTooLarge {
                what: "key file",
                limit: MAX_KEY_FILE_LEN,
                found: data.len(),
            });
        }
        let trimmed = data.trim_ascii_start();
        let set = if trimmed.starts_with(b"{") {
            let value: Value =
                serde_json::from_slice(data).map_err(|e| JoseError::KeySourceUnrecognised {
                    reason: format!("starts like JSON but does not parse: {e}"),
                })?;
            Self::from_json(&value)?
        } else if trimmed.starts_with(b"-----BEGIN") {
            let certs = Certificate::load_pem_chain(data).map_err(|e| JoseError::CertInvalid {
                index: 0,
                reason: format!("PEM: {e}"),
            })?;
            let keys = certs
                .iter()
                .enumerate()
                .map(|(i, c)| key_from_certificate(i, c))
                .collect::<Result<Vec<_>, _>>()?;
            Self { keys }
        } else if trimmed.first() == Some(&0x30) {
            let cert = Certificate::from_der(data).map_err(|e| JoseError::CertInvalid {
                index: 0,
                reason: format!("DER: {e}"),
            })?;
            Self {
                keys: vec![key_from_certificate(0, &cert)?],
            }
        } else {
            return Err(JoseError::KeySourceUnrecognised {
                reason: "neither '{' (JSON), '-----BEGIN' (PEM) nor a DER SEQUENCE".to_string(),
            });
        };
        if set.keys.is_empty() {
            return Err(JoseError::KeySetEmpty);
        }
        Ok(set)
    }

    /// A JWKS object (`{"keys": [...]}`) or a single JWK object.
    pub fn from_json(value: &Value) -> Result<Self, JoseError> {
        let Some(obj) = value.as_object() else {
            return Err(JoseError::KeySourceUnrecognised {
                reason: "JSON but not an object".to_string(),
            });
        };
        let keys = match obj.get("keys") {
            Some(Value::Array(list)) => {
                if list.len() > MAX_KEYS {
                    return Err(JoseError::InputTooLarge {
                        what: "JWKS key count",
                        limit: MAX_KEYS,
                        found: list.len(),
                    });
                }
                list.iter()
                    .enumerate()
                    .map(|(i, v)| parse_jwk(i, v))
                    .collect::<Result<Vec<_>, _>>()?
            }
            Some(_) => {
                return Err(JoseError::KeySourceUnrecognised {
                    reason: "\"keys\" is not an array".to_string(),
                })
            }
            None if obj.contains_key("kty") => vec![parse_jwk(0, value)?],
            None => {
                return Err(JoseError::KeySourceUnrecognised {
                    reason: "JSON object with neither \"keys\" nor \"kty\"".to_string(),
                })
            }
        };
        if keys.is_empty() {
            return Err(JoseError::KeySetEmpty);
        }
        Ok(Self { keys })
    }

    /// The kids in the set (keys without a kid are left out).
    pub fn kids(&self) -> Vec<String> {
        self.keys.iter().filter_map(|k| k.kid.clone()).collect()
    }

    /// The keys that may have signed a JWS with header `kid`:
    /// the one key with exactly that kid; else every kid-less (certificate) key; else
    /// [`JoseError::UnknownKid`]. Without a kid, the set must hold exactly one key.
    pub fn select(&self, kid: Option<&str>) -> Result<Vec<&Jwk>, JoseError> {
        let Some(kid) = kid else {
            return match self.keys.as_slice() {
                [only] => Ok(vec![only]),
                keys => Err(JoseError::KidMissing { keys: keys.len() }),
            };
        };
        let exact: Vec<&Jwk> = self
            .keys
            .iter()
            .filter(|k| k.kid.as_deref() == Some(kid))
            .collect();
        match exact.len() {
            1 => return Ok(exact),
            0 => {}
            count => {
                return Err(JoseError::DuplicateKid {
                    kid: kid.to_string(),
                    count,
                })
            }
        }
        let pinned: Vec<&Jwk> = self.keys.iter().filter(|k| k.kid.is_none()).collect();
        if pinned.is_empty() {
            return Err(JoseError::UnknownKid {
                kid: kid.to_string(),
                known: self.keys.len(),
                known_kids: self.kids(),
            });
        }
        Ok(pinned)
    }
}

fn jwk_err(index: usize, kid: &Option<String>, field: &'static str, problem: String) -> JoseError {
    JoseError::JwkInvalid {
        index,
        kid: kid.clone(),
        field,
        problem,
    }
}

fn opt_str(
    obj: &Map<String, Value>,
    index: usize,
    kid: &Option<String>,
    field: &'static str,
) -> Result<Option<String>, JoseError> {
    match obj.get(field) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(jwk_err(index, kid, field, "is not a string".to_string())),
    }
}

fn b64_member(
    obj: &Map<String, Value>,
    index: usize,
    kid: &Option<String>,
    field: &'static str,
) -> Result<Option<Vec<u8>>, JoseError> {
    match opt_str(obj, index, kid, field)? {
        None => Ok(None),
        Some(s) => b64::decode_url(&format!("JWK {index} {field}"), &s).map(Some),
    }
}

/// Parses one JWK object; `index` is its position (for messages).
pub fn parse_jwk(index: usize, value: &Value) -> Result<Jwk, JoseError> {
    let no_kid = None;
    let Some(obj) = value.as_object() else {
        return Err(jwk_err(
            index,
            &no_kid,
            "(key)",
            "is not a JSON object".to_string(),
        ));
    };
    let kid = match obj.get("kid") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            return Err(jwk_err(
                index,
                &no_kid,
                "kid",
                "is not a string".to_string(),
            ))
        }
    };
    let kty = opt_str(obj, index, &kid, "kty")?
        .ok_or_else(|| jwk_err(index, &kid, "kty", "is missing".to_string()))?;
    let alg = opt_str(obj, index, &kid, "alg")?;
    let use_ = opt_str(obj, index, &kid, "use")?;
    let key_ops = crate::format::json::optional_string_array(obj.get("key_ops"))
        .map_err(|reason| jwk_err(index, &kid, "key_ops", reason.to_string()))?;
    let x5c = match obj.get("x5c") {
        None => Vec::new(),
        Some(Value::Array(certs)) => {
            if certs.len() > MAX_X5C {
                return Err(jwk_err(
                    index,
                    &kid,
                    "x5c",
                    format!("has {} certificates, limit {MAX_X5C}", certs.len()),
                ));
            }
            certs
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let s = c.as_str().ok_or_else(|| {
                        jwk_err(index, &kid, "x5c", format!("entry {i} is not a string"))
                    })?;
                    b64::decode_std(&format!("JWK {index} x5c[{i}]"), s)
                })
                .collect::<Result<Vec<_>, _>>()?
        }
        Some(_) => return Err(jwk_err(index, &kid, "x5c", "is not an array".to_string())),
    };
    let from_x5c = match x5c.first() {
        None => None,
        Some(der) => {
            let cert = Certificate::from_der(der)
                .map_err(|e| jwk_err(index, &kid, "x5c", format!("x5c[0] does not decode: {e}")))?;
            Some(spki_key(&cert).map_err(|p| jwk_err(index, &kid, "x5c", p))?)
        }
    };
    let key = match kty.as_str() {
        "RSA" | "RSA-HSM" => {
            let n = b64_member(obj, index, &kid, "n")?;
            let e = b64_member(obj, index, &kid, "e")?;
            match (n, e, from_x5c) {
                (Some(n), Some(e), cert_key) => {
                    let key = rsa_key(&n, &e).map_err(|p| jwk_err(index, &kid, "n", p))?;
                    if let Some(ck) = cert_key {
                        if ck != PublicKey::Rsa(key.clone()) {
                            return Err(jwk_err(
                                index,
                                &kid,
                                "x5c",
                                "x5c[0]'s key differs from n/e".to_string(),
                            ));
                        }
                    }
                    PublicKey::Rsa(key)
                }
                (None, None, Some(k @ PublicKey::Rsa(_))) => k,
                (None, None, Some(k)) => {
                    return Err(jwk_err(
                        index,
                        &kid,
                        "x5c",
                        format!("x5c[0] holds a {} key but kty is RSA", k.kty()),
                    ))
                }
                _ => {
                    return Err(jwk_err(
                        index,
                        &kid,
                        "n",
                        "and e are required for an RSA key without x5c".to_string(),
                    ))
                }
            }
        }
        "EC" | "EC-HSM" => {
            let crv = opt_str(obj, index, &kid, "crv")?
                .ok_or_else(|| jwk_err(index, &kid, "crv", "is missing".to_string()))?;
            let x = b64_member(obj, index, &kid, "x")?
                .ok_or_else(|| jwk_err(index, &kid, "x", "is missing".to_string()))?;
            let y = b64_member(obj, index, &kid, "y")?
                .ok_or_else(|| jwk_err(index, &kid, "y", "is missing".to_string()))?;
            let len = match crv.as_str() {
                "P-256" => 32,
                "P-384" => 48,
                "P-521" => 66,
                _ => {
                    return Err(jwk_err(
                        index,
                        &kid,
                        "crv",
                        format!("\"{crv}\" is not supported"),
                    ))
                }
            };
            if x.len() != len || y.len() != len {
                return Err(jwk_err(
                    index,
                    &kid,
                    "x",
                    format!(
                        "and y must be {len} bytes for {crv}, found {} and {}",
                        x.len(),
                        y.len()
                    ),
                ));
            }
            PublicKey::Ec { crv, x, y }
        }
        other => PublicKey::Other {
            kty: other.to_string(),
        },
    };
    Ok(Jwk {
        kid,
        alg,
        use_,
        key_ops,
        key,
        x5c,
        origin: KeyOrigin::Jwk,
    })
}

/// An RSA public key from big-endian modulus and exponent bytes.
pub fn rsa_key(n: &[u8], e: &[u8]) -> Result<RsaPublicKey, String> {
    RsaPublicKey::new_with_max_size(
        BigUint::from_bytes_be(n),
        BigUint::from_bytes_be(e),
        MAX_RSA_BITS,
    )
    .map_err(|err| format!("is not a usable RSA key: {err}"))
}

/// The public key in a certificate's SubjectPublicKeyInfo (RSA or EC P-256/384/521).
pub fn spki_key(cert: &Certificate) -> Result<PublicKey, String> {
    let spki = &cert.tbs_certificate.subject_public_key_info;
    let bits = spki
        .subject_public_key
        .as_bytes()
        .ok_or_else(|| "public key BIT STRING has unused bits".to_string())?;
    if spki.algorithm.oid == OID_RSA_ENCRYPTION {
        let pkcs1 = rsa::pkcs1::RsaPublicKey::from_der(bits)
            .map_err(|e| format!("RSA public key does not decode: {e}"))?;
        let key = rsa_key(pkcs1.modulus.as_bytes(), pkcs1.public_exponent.as_bytes())?;
        Ok(PublicKey::Rsa(key))
    } else if spki.algorithm.oid == OID_EC_PUBLIC_KEY {
        let curve: ObjectIdentifier = spki
            .algorithm
            .parameters
            .as_ref()
            .ok_or_else(|| "EC key without curve parameter".to_string())?
            .decode_as()
            .map_err(|e| format!("EC curve parameter does not decode: {e}"))?;
        let (crv, len) = if curve == OID_P256 {
            ("P-256", 32)
        } else if curve == OID_P384 {
            ("P-384", 48)
        } else if curve == OID_P521 {
            ("P-521", 66)
        } else {
            return Err(format!("EC curve {curve} is not supported"));
        };
        match bits.split_first() {
            Some((4, xy)) if xy.len() == 2 * len => {
                let (x, y) = xy.split_at(len);
                Ok(PublicKey::Ec {
                    crv: crv.to_string(),
                    x: x.to_vec(),
                    y: y.to_vec(),
                })
            }
            _ => Err("EC point is not an uncompressed point of the curve's size".to_string()),
        }
    } else {
        Ok(PublicKey::Other {
            kty: spki.algorithm.oid.to_string(),
        })
    }
}

/// A kid-less key from a certificate given as the key file.
fn key_from_certificate(index: usize, cert: &Certificate) -> Result<Jwk, JoseError> {
    let key = spki_key(cert).map_err(|reason| JoseError::CertInvalid { index, reason })?;
    let der = cert.to_der().map_err(|e| JoseError::CertInvalid {
        index,
        reason: e.to_string(),
    })?;
    Ok(Jwk {
        kid: None,
        alg: None,
        use_: None,
        key_ops: Vec::new(),
        key,
        x5c: vec![der],
        origin: KeyOrigin::Certificate,
    })
}
