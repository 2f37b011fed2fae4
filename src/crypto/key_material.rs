//! Released key plaintext → the input keying material (IKM) of the LUKS passphrase
//! (PROTOCOLS.md §6.4 "Plaintext formats", §10 item 10; DESIGN.md "Volumes and the untrusted
//! header").
//!
//! | `kty` | plaintext (Key Vault) | IKM |
//! |---|---|---|
//! | `oct`, `oct-HSM` | raw key bytes (16 to 64) | the raw bytes |
//! | `RSA`, `RSA-HSM` | PKCS#8 `PrivateKeyInfo` (PKCS#1 `RSAPrivateKey` accepted) | private exponent D, big-endian, no leading zero bytes |
//! | `EC`, `EC-HSM` | PKCS#8 with an RFC 5915 `ECPrivateKey` (bare SEC1 accepted) | private scalar, big-endian, the curve's field length (32/48/66) |
//!
//! RSA D is taken as minimal big-endian bytes, the form the confidential-sidecar uses for its
//! HKDF (`D.Bytes()`, §6.5); the EC scalar keeps SEC1's fixed length (RFC 5915: `privateKey` is
//! ceiling(log2(n)/8) octets), left-padded with zeros if an encoder dropped leading zeros.
//! Only the oct format is confirmed by a real vector; PKCS#8 is tried first and the PKCS#1 /
//! SEC1 encodings only when the plaintext is not PKCS#8 at all (§6.4, inferred). A PKCS#8
//! key of the other algorithm is refused ([`CryptoError::KeyAlgorithm`]). PURE; no I/O.

use const_oid::ObjectIdentifier;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::PrivateKeyInfo;
use rsa::traits::{PrivateKeyParts, PublicKeyParts};
use rsa::RsaPrivateKey;
use sec1::EcPrivateKey;

use super::error::CryptoError;
use crate::secret::Secret;

/// rsaEncryption (RFC 8017 A.1).
const OID_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
/// id-ecPublicKey (RFC 5480 §2.1.1).
const OID_EC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");

/// The Key Vault curves: (`crv`, named-curve OID, scalar length in bytes).
const CURVES: [(&str, ObjectIdentifier, usize); 4] = [
    (
        "P-256",
        ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7"),
        32,
    ),
    ("P-256K", ObjectIdentifier::new_unwrap("1.3.132.0.10"), 32),
    ("P-384", ObjectIdentifier::new_unwrap("1.3.132.0.34"), 48),
    ("P-521", ObjectIdentifier::new_unwrap("1.3.132.0.35"), 66),
];

/// Smallest oct key accepted (AES-128).
pub const OCT_MIN_LEN: usize = 16;
/// Largest oct key accepted (Key Vault's import limit, §6.7 "maximum size is 64").
pub const OCT_MAX_LEN: usize = 64;

/// Which kind of released key (`kty` without the `-HSM` suffix, PROTOCOLS.md §6.3/§6.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// `oct` / `oct-HSM`: the plaintext is the raw key bytes.
    Oct,
    /// `RSA` / `RSA-HSM`: the plaintext is a PKCS#8 `PrivateKeyInfo` (PKCS#1 accepted).
    Rsa,
    /// `EC` / `EC-HSM`: the plaintext is a PKCS#8 `PrivateKeyInfo` holding an RFC 5915
    /// `ECPrivateKey` (bare SEC1 accepted).
    Ec,
}

impl KeyKind {
    /// Parses a JWK `kty` as Key Vault reports it (`RSA-HSM`, `EC`, `oct-HSM`, ...).
    pub fn from_kty(kty: &str) -> Result<Self, CryptoError> {
        match kty {
            "oct" | "oct-HSM" => Ok(Self::Oct),
            "RSA" | "RSA-HSM" => Ok(Self::Rsa),
            "EC" | "EC-HSM" => Ok(Self::Ec),
            _ => Err(CryptoError::KeyTypeUnknown {
                found: kty.to_string(),
            }),
        }
    }

    /// The name used in messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::Oct => "oct",
            Self::Rsa => "RSA",
            Self::Ec => "EC",
        }
    }
}

/// A decoded released key: its kind, a short description and the IKM.
#[derive(Debug)]
pub struct KeyMaterial {
    kind: KeyKind,
    /// "256-bit oct", "RSA-4096", "EC P-384".
    description: String,
    ikm: Secret,
}

impl KeyMaterial {
    /// The key kind.
    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    /// A non-secret description ("256-bit oct", "RSA-4096", "EC P-384") for logs.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// The IKM of DESIGN.md (oct raw bytes, RSA D, EC scalar).
    pub fn ikm(&self) -> &Secret {
        &self.ikm
    }

    /// Consumes the value, keeping only the IKM.
    pub fn into_ikm(self) -> Secret {
        self.ikm
    }
}

/// Decodes the unwrapped plaintext of a released key of `kind` and extracts its IKM.
pub fn decode(kind: KeyKind, plaintext: &Secret) -> Result<KeyMaterial, CryptoError> {
    let bytes = plaintext.expose();
    match kind {
        KeyKind::Oct => decode_oct(bytes),
        KeyKind::Rsa => decode_rsa(bytes),
        KeyKind::Ec => decode_ec(bytes),
    }
}

fn decode_oct(bytes: &[u8]) -> Result<KeyMaterial, CryptoError> {
    if !(OCT_MIN_LEN..=OCT_MAX_LEN).contains(&bytes.len()) {
        return Err(CryptoError::OctLength {
            found: bytes.len(),
            min: OCT_MIN_LEN,
            max: OCT_MAX_LEN,
        });
    }
    Ok(KeyMaterial {
        kind: KeyKind::Oct,
        description: format!("{}-bit oct", bytes.len() * 8),
        ikm: Secret::new(bytes.to_vec()),
    })
}

fn decode_rsa(bytes: &[u8]) -> Result<KeyMaterial, CryptoError> {
    let encoding = |pkcs8: String, fallback_error: String| CryptoError::KeyEncoding {
        kind: "RSA",
        pkcs8,
        fallback: "PKCS#1",
        fallback_error,
    };
    let key = match PrivateKeyInfo::try_from(bytes) {
        Ok(info) => {
            if info.algorithm.oid != OID_RSA {
                return Err(CryptoError::KeyAlgorithm {
                    kind: "RSA",
                    expected: "1.2.840.113549.1.1.1 (rsaEncryption)",
                    found: info.algorithm.oid.to_string(),
                });
            }
            RsaPrivateKey::from_pkcs1_der(info.private_key)
                .map_err(|e| encoding(format!("RSAPrivateKey inside: {e}"), "not tried".into()))?
        }
        Err(p8) => RsaPrivateKey::from_pkcs1_der(bytes)
            .map_err(|p1| encoding(p8.to_string(), p1.to_string()))?,
    };
    // `from_pkcs1_der` builds the key with `from_components`, which validates it; the D
    // bytes come out of a zeroizing key into a Secret. The key itself is in the rsa crate's
    // heap allocations, locked by the process-wide lock (crate::secret::lock_process_memory).
    Ok(KeyMaterial {
        kind: KeyKind::Rsa,
        description: format!("RSA-{}", key.n().bits()),
        ikm: Secret::new(key.d().to_bytes_be()),
    })
}

fn decode_ec(bytes: &[u8]) -> Result<KeyMaterial, CryptoError> {
    let encoding = |pkcs8: String, fallback_error: String| CryptoError::KeyEncoding {
        kind: "EC",
        pkcs8,
        fallback: "SEC1",
        fallback_error,
    };
    let (curve_oid, ec) = match PrivateKeyInfo::try_from(bytes) {
        Ok(info) => {
            if info.algorithm.oid != OID_EC {
                return Err(CryptoError::KeyAlgorithm {
                    kind: "EC",
                    expected: "1.2.840.10045.2.1 (id-ecPublicKey)",
                    found: info.algorithm.oid.to_string(),
                });
            }
            let ec = EcPrivateKey::try_from(info.private_key)
                .map_err(|e| encoding(format!("ECPrivateKey inside: {e}"), "not tried".into()))?;
            // The PKCS#8 AlgorithmIdentifier names the curve; RFC 5915 §3 lets the inner
            // parameters repeat it.
            let oid = info
                .algorithm
                .parameters_oid()
                .ok()
                .or_else(|| ec.parameters.and_then(|p| p.named_curve()));
            (oid, ec)
        }
        Err(p8) => {
            let ec = EcPrivateKey::try_from(bytes)
                .map_err(|e1| encoding(p8.to_string(), e1.to_string()))?;
            (ec.parameters.and_then(|p| p.named_curve()), ec)
        }
    };
    let (name, _, len) = curve_oid
        .and_then(|oid| CURVES.iter().find(|(_, o, _)| *o == oid))
        .copied()
        .ok_or_else(|| CryptoError::EcCurve {
            found: curve_oid.map_or_else(|| "absent".to_string(), |o| o.to_string()),
        })?;
    let scalar = ec.private_key;
    if scalar.is_empty() || scalar.len() > len {
        return Err(CryptoError::EcScalarLength {
            curve: name,
            expected: len,
            found: scalar.len(),
        });
    }
    let mut ikm = vec![0u8; len];
    if let Some(tail) = ikm.get_mut(len - scalar.len()..) {
        tail.copy_from_slice(scalar);
    }
    Ok(KeyMaterial {
        kind: KeyKind::Ec,
        description: format!("EC {name}"),
        ikm: Secret::new(ikm),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::error::ErrorCode;

    /// A bare RFC 5915 ECPrivateKey, DER built by hand: SEQUENCE { INTEGER 1,
    /// OCTET STRING scalar, [0] { OID curve } }.
    fn sec1(scalar: &[u8], curve_oid_der: &[u8]) -> Secret {
        let mut body = vec![0x02, 0x01, 0x01, 0x04, scalar.len() as u8];
        body.extend_from_slice(scalar);
        if !curve_oid_der.is_empty() {
            body.extend_from_slice(&[0xa0, curve_oid_der.len() as u8]);
            body.extend_from_slice(curve_oid_der);
        }
        let mut der = vec![0x30, body.len() as u8];
        der.extend(body);
        Secret::new(der)
    }

    const P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    /// secp224r1 (1.3.132.0.33): a curve Key Vault does not offer.
    const P224: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x21];

    #[test]
    fn short_scalar_is_left_padded_to_the_field_length() {
        let scalar: Vec<u8> = (1..=31).collect();
        let m = decode(KeyKind::Ec, &sec1(&scalar, P256)).unwrap();
        let mut want = vec![0u8];
        want.extend(&scalar);
        assert_eq!(m.ikm().expose(), &want[..]);
        assert_eq!(m.description(), "EC P-256");
    }

    #[test]
    fn ec_negatives() {
        let long: Vec<u8> = (1..=33).collect();
        assert_eq!(
            decode(KeyKind::Ec, &sec1(&long, P256)).unwrap_err().code(),
            "key-material-ec-scalar-length"
        );
        assert_eq!(
            decode(KeyKind::Ec, &sec1(&[], P256)).unwrap_err().code(),
            "key-material-ec-scalar-length"
        );
        assert_eq!(
            decode(KeyKind::Ec, &sec1(&[7; 28], P224)).unwrap_err(),
            CryptoError::EcCurve {
                found: "1.3.132.0.33".into()
            }
        );
        assert_eq!(
            decode(KeyKind::Ec, &sec1(&[7; 32], &[])).unwrap_err(),
            CryptoError::EcCurve {
                found: "absent".into()
            }
        );
    }

    #[test]
    fn kind_names() {
        assert_eq!(KeyKind::from_kty("EC-HSM").unwrap().name(), "EC");
        assert_eq!(KeyKind::from_kty("RSA").unwrap().name(), "RSA");
        assert_eq!(KeyKind::from_kty("oct-HSM").unwrap().name(), "oct");
        assert_eq!(
            KeyKind::from_kty("OKP").unwrap_err().code(),
            "key-type-unknown"
        );
    }
}
