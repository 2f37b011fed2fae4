//! X.509 path validation for the `x5c` chain of a Key Vault release JWS (PROTOCOLS.md §6.3,
//! §6.6 steps 3-5; §9.1 trap 23).
//!
//! The path is built from `x5c[0]` (the leaf) upward, taking issuers from `x5c[1..]`, and must
//! end at a certificate of the caller's root set: the last element of `x5c` is never trusted
//! because it is present. Each link: issuer name equals subject name, the issuer is a CA
//! (basicConstraints), and the signature verifies. Every certificate on the path (root
//! included) must be valid at the injected time.
//!
//! Signature algorithms: sha256/384/512WithRSAEncryption (PKCS#1 v1.5) — the real sample's
//! leaf and intermediate are sha384WithRSAEncryption, its DigiCert Global Root G2 is
//! sha256WithRSAEncryption (checked with `openssl x509 -text`) — and ecdsa-with-SHA384 on P-384
//! (DigiCert's ECC roots). Anything else is refused with a specific error.

use der::asn1::ObjectIdentifier;
use der::{Decode, Encode, Reader, SliceReader};
use rsa::pkcs1v15::{Signature as RsaSignature, VerifyingKey as RsaVerifyingKey};
use sha2::{Sha256, Sha384, Sha512};
use signature::Verifier;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{BasicConstraints, KeyUsage, KeyUsages, SubjectAltName};
use x509_cert::Certificate;

use super::jwk::{spki_key, PublicKey};
use crate::error::ErrorCode;

/// Longest path accepted (leaf + intermediates + root).
pub const MAX_PATH_LEN: usize = 6;

const OID_SHA256_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
const OID_SHA384_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.12");
const OID_SHA512_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.13");
const OID_ECDSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
/// ecdsa-with-SHA256 (RFC 5758), used by the emulator CA (P-256).
const OID_ECDSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");

/// A certificate-chain error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChainError {
    /// A certificate does not decode.
    #[error("certificate {what} cannot be decoded: {reason}")]
    CertInvalid {
        /// "`x5c[1]`", "root 3", ...
        what: String,
        /// Decoder message.
        reason: String,
    },

    /// No issuer for a certificate in x5c or the root set.
    #[error(
        "no trusted root issued \"{subject}\" (issuer \"{issuer}\"); the chain does not end at \
         a configured root: pass the right root (--root) or check the trust store"
    )]
    RootUntrusted {
        /// The last certificate of the path built.
        subject: String,
        /// Its issuer name.
        issuer: String,
    },

    /// An issuer candidate has the right name but its signature does not verify.
    #[error(
        "signature on \"{subject}\" does not verify with the key of \"{issuer}\"; \
         the certificate was altered or the issuer is not the one that signed it"
    )]
    SignatureInvalid {
        /// Certificate whose signature failed.
        subject: String,
        /// The issuer tried.
        issuer: String,
    },

    /// A signature algorithm skrd does not verify.
    #[error(
        "certificate \"{subject}\" is signed with {oid}, which skrd does not verify \
         (supported: sha256/384/512WithRSAEncryption, ecdsa-with-SHA384 on P-384, ecdsa-with-SHA256 on P-256)"
    )]
    AlgorithmUnsupported {
        /// Certificate subject.
        subject: String,
        /// Signature algorithm OID.
        oid: String,
    },

    /// An issuing certificate is not a CA.
    #[error(
        "\"{subject}\" issued a certificate but is not a CA (basicConstraints cA is not true)"
    )]
    NotCa {
        /// The issuing certificate.
        subject: String,
    },

    /// A certificate is expired at the validation time.
    #[error(
        "certificate \"{subject}\" expired at {not_after} (Unix seconds), validation time is \
         {now}; Key Vault's signing certificate is renewed yearly: fetch a new response, or \
         check the clock"
    )]
    Expired {
        /// Subject.
        subject: String,
        /// notAfter.
        not_after: i64,
        /// Validation time.
        now: i64,
    },

    /// A certificate is not yet valid at the validation time.
    #[error(
        "certificate \"{subject}\" is not valid before {not_before} (Unix seconds), \
         validation time is {now}; check the system clock"
    )]
    NotYetValid {
        /// Subject.
        subject: String,
        /// notBefore.
        not_before: i64,
        /// Validation time.
        now: i64,
    },

    /// The leaf's key usage does not allow signatures.
    #[error("leaf certificate \"{subject}\" does not allow digitalSignature (keyUsage)")]
    LeafKeyUsage {
        /// Leaf subject.
        subject: String,
    },

    /// The path is longer than [`MAX_PATH_LEN`].
    #[error("certificate path is longer than {limit} certificates")]
    PathTooLong {
        /// The limit.
        limit: usize,
    },

    /// The leaf's DNS names do not cover the expected host.
    #[error(
        "leaf certificate names {found:?} do not cover host \"{expected}\"; the response was \
         not signed for the vault that was called"
    )]
    NameMismatch {
        /// The host called.
        expected: String,
        /// SAN DNS names (or, for an IP address, `IP:` SAN addresses) of the leaf.
        found: Vec<String>,
    },
}

impl ErrorCode for ChainError {
    fn code(&self) -> &'static str {
        match self {
            Self::CertInvalid { .. } => "chain-cert-invalid",
            Self::RootUntrusted { .. } => "chain-root-untrusted",
            Self::SignatureInvalid { .. } => "chain-signature-invalid",
            Self::AlgorithmUnsupported { .. } => "chain-algorithm-unsupported",
            Self::NotCa { .. } => "chain-issuer-not-ca",
            Self::Expired { .. } => "chain-cert-expired",
            Self::NotYetValid { .. } => "chain-cert-not-yet-valid",
            Self::LeafKeyUsage { .. } => "chain-leaf-key-usage",
            Self::PathTooLong { .. } => "chain-path-too-long",
            Self::NameMismatch { .. } => "chain-name-mismatch",
        }
    }
}

/// A decoded certificate with the exact bytes its signature covers.
#[derive(Debug, Clone)]
pub struct ChainCert {
    /// The parsed certificate.
    pub cert: Certificate,
    /// The DER as given.
    pub der: Vec<u8>,
    /// Subject, RFC 4514 string.
    pub subject: String,
    /// Issuer, RFC 4514 string.
    pub issuer: String,
    /// notBefore, Unix seconds.
    pub not_before: i64,
    /// notAfter, Unix seconds.
    pub not_after: i64,
    tbs: (usize, usize),
}

impl ChainCert {
    /// Decodes one DER certificate; `what` names it in errors.
    pub fn from_der(what: &str, der: &[u8]) -> Result<Self, ChainError> {
        let invalid = |reason: String| ChainError::CertInvalid {
            what: what.to_string(),
            reason,
        };
        let cert = Certificate::from_der(der).map_err(|e| invalid(e.to_string()))?;
        let tbs = tbs_range(der).map_err(|e| invalid(e.to_string()))?;
        let secs = |t: x509_cert::time::Time| {
            i64::try_from(t.to_unix_duration().as_secs()).unwrap_or(i64::MAX)
        };
        let v = &cert.tbs_certificate.validity;
        Ok(Self {
            subject: cert.tbs_certificate.subject.to_string(),
            issuer: cert.tbs_certificate.issuer.to_string(),
            not_before: secs(v.not_before),
            not_after: secs(v.not_after),
            der: der.to_vec(),
            tbs,
            cert,
        })
    }

    /// Parses PEM (one or more certificates) or a single DER certificate.
    pub fn load_many(data: &[u8]) -> Result<Vec<Self>, ChainError> {
        if data.trim_ascii_start().starts_with(b"-----BEGIN") {
            let certs = Certificate::load_pem_chain(data).map_err(|e| ChainError::CertInvalid {
                what: "PEM".to_string(),
                reason: e.to_string(),
            })?;
            certs
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let der = c.to_der().map_err(|e| ChainError::CertInvalid {
                        what: format!("PEM certificate {i}"),
                        reason: e.to_string(),
                    })?;
                    Self::from_der(&format!("PEM certificate {i}"), &der)
                })
                .collect()
        } else {
            Ok(vec![Self::from_der("DER", data)?])
        }
    }

    /// Parses a PEM trust bundle (e.g. `/etc/ssl/certs/ca-certificates.crt`) block by block,
    /// skipping blocks that are not certificates or do not decode; returns the certificates
    /// and how many blocks were skipped.
    pub fn load_pem_bundle(data: &[u8]) -> (Vec<Self>, usize) {
        const BEGIN: &[u8] = b"-----BEGIN CERTIFICATE-----";
        const END: &[u8] = b"-----END CERTIFICATE-----";
        let mut certs = Vec::new();
        let mut skipped = 0;
        let mut rest = data;
        while let Some(start) = find(rest, BEGIN) {
            let Some(tail) = rest.get(start..) else { break };
            let Some(end) = find(tail, END) else {
                skipped += 1;
                break;
            };
            let block_end = end + END.len();
            let block = tail.get(..block_end).unwrap_or_default();
            match Certificate::load_pem_chain(block)
                .ok()
                .and_then(|mut v| v.pop())
                .and_then(|c| c.to_der().ok())
                .and_then(|der| Self::from_der("trust bundle", &der).ok())
            {
                Some(c) => certs.push(c),
                None => skipped += 1,
            }
            rest = tail.get(block_end..).unwrap_or_default();
        }
        (certs, skipped)
    }

    fn tbs_der(&self) -> &[u8] {
        self.der.get(self.tbs.0..self.tbs.1).unwrap_or_default()
    }

    fn subject_der(&self) -> Vec<u8> {
        self.cert
            .tbs_certificate
            .subject
            .to_der()
            .unwrap_or_default()
    }

    fn issuer_der(&self) -> Vec<u8> {
        self.cert
            .tbs_certificate
            .issuer
            .to_der()
            .unwrap_or_default()
    }

    fn is_ca(&self) -> bool {
        self.cert
            .tbs_certificate
            .get::<BasicConstraints>()
            .ok()
            .flatten()
            .is_some_and(|(_, bc)| bc.ca)
    }

    /// SAN IP addresses (4- or 16-byte `iPAddress` entries; others are ignored).
    pub fn ip_addresses(&self) -> Vec<core::net::IpAddr> {
        match self.cert.tbs_certificate.get::<SubjectAltName>() {
            Ok(Some((_, san))) => san
                .0
                .iter()
                .filter_map(|n| match n {
                    GeneralName::IpAddress(octets) => ip_from_octets(octets.as_bytes()),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    /// SAN DNS names.
    pub fn dns_names(&self) -> Vec<String> {
        match self.cert.tbs_certificate.get::<SubjectAltName>() {
            Ok(Some((_, san))) => san
                .0
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DnsName(d) => Some(d.to_string()),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    fn check_time(&self, now: i64) -> Result<(), ChainError> {
        if now < self.not_before {
            return Err(ChainError::NotYetValid {
                subject: self.subject.clone(),
                not_before: self.not_before,
                now,
            });
        }
        if now > self.not_after {
            return Err(ChainError::Expired {
                subject: self.subject.clone(),
                not_after: self.not_after,
                now,
            });
        }
        Ok(())
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Byte range of the TBSCertificate TLV inside the certificate DER.
fn tbs_range(der: &[u8]) -> der::Result<(usize, usize)> {
    let mut reader = SliceReader::new(der)?;
    let _outer = der::Header::decode(&mut reader)?;
    let start = usize::try_from(reader.position())?;
    let tbs = reader.tlv_bytes()?;
    Ok((start, start + tbs.len()))
}

/// Verifies `subject`'s signature with `issuer`'s key.
fn verify_signed_by(subject: &ChainCert, issuer: &ChainCert) -> Result<(), ChainError> {
    let alg = &subject.cert.signature_algorithm;
    let sig = subject
        .cert
        .signature
        .as_bytes()
        .ok_or_else(|| ChainError::SignatureInvalid {
            subject: subject.subject.clone(),
            issuer: issuer.subject.clone(),
        })?;
    let bad = || ChainError::SignatureInvalid {
        subject: subject.subject.clone(),
        issuer: issuer.subject.clone(),
    };
    let unsupported = || ChainError::AlgorithmUnsupported {
        subject: subject.subject.clone(),
        oid: alg.oid.to_string(),
    };
    if alg != &subject.cert.tbs_certificate.signature {
        return Err(unsupported());
    }
    let key = spki_key(&issuer.cert).map_err(|reason| ChainError::CertInvalid {
        what: issuer.subject.clone(),
        reason,
    })?;
    let msg = subject.tbs_der();
    match key {
        PublicKey::Rsa(k) => {
            let s = RsaSignature::try_from(sig).map_err(|_| bad())?;
            let ok = if alg.oid == OID_SHA256_RSA {
                RsaVerifyingKey::<Sha256>::new(k).verify(msg, &s).is_ok()
            } else if alg.oid == OID_SHA384_RSA {
                RsaVerifyingKey::<Sha384>::new(k).verify(msg, &s).is_ok()
            } else if alg.oid == OID_SHA512_RSA {
                RsaVerifyingKey::<Sha512>::new(k).verify(msg, &s).is_ok()
            } else {
                return Err(unsupported());
            };
            if ok {
                Ok(())
            } else {
                Err(bad())
            }
        }
        PublicKey::Ec { crv, x, y } if crv == "P-384" && alg.oid == OID_ECDSA_SHA384 => {
            let mut sec1 = Vec::with_capacity(97);
            sec1.push(4);
            sec1.extend_from_slice(&x);
            sec1.extend_from_slice(&y);
            let vk = p384::ecdsa::VerifyingKey::from_sec1_bytes(&sec1).map_err(|_| bad())?;
            let s = p384::ecdsa::Signature::from_der(sig).map_err(|_| bad())?;
            vk.verify(msg, &s).map_err(|_| bad())
        }
        PublicKey::Ec { crv, x, y } if crv == "P-256" && alg.oid == OID_ECDSA_SHA256 => {
            let mut sec1 = Vec::with_capacity(65);
            sec1.push(4);
            sec1.extend_from_slice(&x);
            sec1.extend_from_slice(&y);
            ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_ASN1, sec1)
                .verify(msg, sig)
                .map_err(|_| bad())
        }
        _ => Err(unsupported()),
    }
}

/// Builds and checks the path from `x5c[0]` to one of `roots` at time `now`; returns the
/// path, leaf first, root last.
pub fn verify_chain(
    x5c: &[ChainCert],
    roots: &[ChainCert],
    now: i64,
) -> Result<Vec<ChainCert>, ChainError> {
    let Some(leaf) = x5c.first() else {
        return Err(ChainError::CertInvalid {
            what: "x5c".to_string(),
            reason: "empty".to_string(),
        });
    };
    if let Some(ku) = leaf.cert.tbs_certificate.get::<KeyUsage>().ok().flatten() {
        if !ku.1 .0.contains(KeyUsages::DigitalSignature) {
            return Err(ChainError::LeafKeyUsage {
                subject: leaf.subject.clone(),
            });
        }
    }
    let mut path = vec![leaf.clone()];
    let mut used = vec![false; x5c.len()];
    if let Some(u) = used.first_mut() {
        *u = true;
    }
    loop {
        let current = path
            .last()
            .cloned()
            .ok_or(ChainError::PathTooLong { limit: 0 })?;
        current.check_time(now)?;
        // A root that is the current certificate itself (pinned) ends the path.
        if roots.iter().any(|r| r.der == current.der) {
            return Ok(path);
        }
        if path.len() >= MAX_PATH_LEN {
            return Err(ChainError::PathTooLong {
                limit: MAX_PATH_LEN,
            });
        }
        let issuer_name = current.issuer_der();
        let mut first_err = None;
        // 1. A configured root that signed it.
        // Trust anchors are trusted as configured (as OpenSSL does): no CA-flag requirement.
        for root in roots.iter().filter(|r| r.subject_der() == issuer_name) {
            match verify_signed_by(&current, root) {
                Ok(()) => {
                    root.check_time(now)?;
                    path.push(root.clone());
                    return Ok(path);
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        // 2. An unused x5c certificate that signed it.
        let mut next = None;
        for (i, cand) in x5c.iter().enumerate() {
            if used.get(i).copied().unwrap_or(true) || cand.subject_der() != issuer_name {
                continue;
            }
            match verify_signed_by(&current, cand).and_then(|()| {
                if cand.is_ca() {
                    Ok(())
                } else {
                    Err(ChainError::NotCa {
                        subject: cand.subject.clone(),
                    })
                }
            }) {
                Ok(()) => {
                    next = Some(i);
                    break;
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        match next {
            Some(i) => {
                if let Some(u) = used.get_mut(i) {
                    *u = true;
                }
                if let Some(c) = x5c.get(i) {
                    path.push(c.clone());
                }
            }
            None => {
                return Err(first_err.unwrap_or(ChainError::RootUntrusted {
                    subject: current.subject.clone(),
                    issuer: current.issuer.clone(),
                }))
            }
        }
    }
}

fn ip_from_octets(octets: &[u8]) -> Option<core::net::IpAddr> {
    if let Ok(v4) = <[u8; 4]>::try_from(octets) {
        return Some(core::net::IpAddr::from(v4));
    }
    <[u8; 16]>::try_from(octets)
        .ok()
        .map(core::net::IpAddr::from)
}

/// Checks that the leaf names `host`: a DNS name must be covered by a SAN DNS name (a `*.`
/// wildcard covers one label); an IP address (e.g. a vault reached at `https://127.0.0.1:PORT`)
/// must equal a SAN IP address, as RFC 6125 §6.2.1 says — never a DNS name that looks like it.
pub fn check_leaf_host(leaf: &ChainCert, host: &str) -> Result<(), ChainError> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<core::net::IpAddr>() {
        let ips = leaf.ip_addresses();
        return if ips.contains(&ip) {
            Ok(())
        } else {
            Err(ChainError::NameMismatch {
                expected: ip.to_string(),
                found: ips.iter().map(|a| format!("IP:{a}")).collect(),
            })
        };
    }
    let names = leaf.dns_names();
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let covered = names.iter().any(|n| {
        let n = n.to_ascii_lowercase();
        match n.strip_prefix("*.") {
            Some(suffix) => host
                .split_once('.')
                .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
            None => n == host,
        }
    });
    if covered {
        Ok(())
    } else {
        Err(ChainError::NameMismatch {
            expected: host,
            found: names,
        })
    }
}
