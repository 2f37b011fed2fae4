//! Signature and validity checks of the AMD chain and of the report (PROTOCOLS.md §3.5, §3.6).
//!
//! Certificates: RSASSA-PSS whose explicit parameters must be SHA-384 / MGF1-SHA-384 / salt 48 /
//! trailer 1, verified over the TBSCertificate bytes exactly as encoded. Report: ECDSA P-384 with
//! SHA-384 over `report[0..0x2A0)`, R and S stored as 72-byte little-endian integers.

use der::asn1::ObjectIdentifier;
use der::Encode;
use rsa::pkcs1::{DecodeRsaPublicKey, RsaPssParams, TrailerField};
use rsa::pss::{Signature as PssSignature, VerifyingKey as PssVerifyingKey};
use rsa::RsaPublicKey;
use sha2::Sha384;
use signature::Verifier;

use super::cert::AmdCert;
use super::error::SnpError;
use super::report::Report;

const OID_RSASSA_PSS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10");
const OID_RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const OID_MGF1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.8");
const OID_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2");
const PSS_EXPECTED: &str = "RSASSA-PSS with SHA-384, MGF1-SHA-384, salt 48, trailer 1";

/// Checks that `cert` is signed with RSASSA-PSS SHA-384 / MGF1-SHA-384 / salt 48 / trailer 1,
/// in both the outer and the TBS algorithm identifier.
pub fn check_pss_params(cert: &AmdCert) -> Result<(), SnpError> {
    let x = cert.x509();
    let unexpected = |found: String| SnpError::CertAlgorithmUnexpected {
        subject: cert.subject_cn.clone(),
        expected: PSS_EXPECTED,
        found,
    };
    let alg = &x.signature_algorithm;
    if alg != &x.tbs_certificate.signature {
        return Err(unexpected(format!(
            "outer algorithm {} differs from TBS algorithm {}",
            alg.oid, x.tbs_certificate.signature.oid
        )));
    }
    if alg.oid != OID_RSASSA_PSS {
        return Err(unexpected(format!("signature algorithm {}", alg.oid)));
    }
    let params = alg
        .parameters
        .as_ref()
        .ok_or_else(|| unexpected("RSASSA-PSS without parameters (defaults are SHA-1)".into()))?;
    let params: RsaPssParams<'_> = params
        .decode_as()
        .map_err(|e| unexpected(format!("undecodable RSASSA-PSS parameters: {e}")))?;
    if params.hash.oid != OID_SHA384 {
        return Err(unexpected(format!("hash {}", params.hash.oid)));
    }
    if params.mask_gen.oid != OID_MGF1 {
        return Err(unexpected(format!(
            "mask generation {}",
            params.mask_gen.oid
        )));
    }
    match params.mask_gen.parameters {
        Some(h) if h.oid == OID_SHA384 => {}
        Some(h) => return Err(unexpected(format!("MGF1 hash {}", h.oid))),
        None => return Err(unexpected("MGF1 without hash parameter".into())),
    }
    if params.salt_len != 48 {
        return Err(unexpected(format!("salt length {}", params.salt_len)));
    }
    if params.trailer_field != TrailerField::BC {
        return Err(unexpected("trailer field other than 1".into()));
    }
    Ok(())
}

/// The RSA public key of an ARK/ASK/ASVK.
pub fn rsa_public_key(cert: &AmdCert) -> Result<RsaPublicKey, SnpError> {
    let spki = &cert.x509().tbs_certificate.subject_public_key_info;
    let unexpected = |found: String| SnpError::CertAlgorithmUnexpected {
        subject: cert.subject_cn.clone(),
        expected: "an RSA public key",
        found,
    };
    if spki.algorithm.oid != OID_RSA_ENCRYPTION && spki.algorithm.oid != OID_RSASSA_PSS {
        return Err(unexpected(format!(
            "public key algorithm {}",
            spki.algorithm.oid
        )));
    }
    RsaPublicKey::from_pkcs1_der(spki.subject_public_key.raw_bytes())
        .map_err(|e| unexpected(format!("undecodable RSA key: {e}")))
}

/// Verifies `subject`'s signature with `issuer`'s RSA key (parameters checked first). Also
/// requires `subject`'s issuer CN to be `issuer`'s subject CN.
pub fn verify_cert_signature(subject: &AmdCert, issuer: &AmdCert) -> Result<(), SnpError> {
    check_pss_params(subject)?;
    let invalid = || SnpError::CertSignatureInvalid {
        subject: subject.subject_cn.clone(),
        issuer: issuer.subject_cn.clone(),
    };
    if subject.issuer_cn != issuer.subject_cn {
        return Err(invalid());
    }
    let key = rsa_public_key(issuer)?;
    let sig_bytes = subject.x509().signature.as_bytes().ok_or_else(invalid)?;
    let sig = PssSignature::try_from(sig_bytes).map_err(|_| invalid())?;
    PssVerifyingKey::<Sha384>::new_with_salt_len(key, 48)
        .verify(subject.tbs_der(), &sig)
        .map_err(|_| invalid())
}

/// Checks `not_before <= now <= not_after`.
pub fn check_validity(cert: &AmdCert, now_unix: i64) -> Result<(), SnpError> {
    if now_unix < cert.not_before {
        return Err(SnpError::CertNotYetValid {
            subject: cert.subject_cn.clone(),
            not_before: cert.not_before,
            now: now_unix,
        });
    }
    if now_unix > cert.not_after {
        return Err(SnpError::CertExpired {
            subject: cert.subject_cn.clone(),
            not_after: cert.not_after,
            now: now_unix,
        });
    }
    Ok(())
}

/// The P-384 key of a VCEK/VLEK.
pub fn leaf_verifying_key(leaf: &AmdCert) -> Result<p384::ecdsa::VerifyingKey, SnpError> {
    use p384::pkcs8::DecodePublicKey;
    let spki = leaf.spki_der()?;
    p384::ecdsa::VerifyingKey::from_public_key_der(&spki).map_err(|e| {
        SnpError::CertAlgorithmUnexpected {
            subject: leaf.subject_cn.clone(),
            expected: "an EC P-384 public key",
            found: format!(
                "{} ({e})",
                leaf.x509()
                    .tbs_certificate
                    .subject_public_key_info
                    .algorithm
                    .oid
            ),
        }
    })
}

/// Converts a 72-byte little-endian integer to a 48-byte big-endian P-384 scalar; `None` if
/// the upper 24 bytes are not zero.
fn le72_to_be48(le: &[u8; 72]) -> Option<[u8; 48]> {
    if le[48..].iter().any(|b| *b != 0) {
        return None;
    }
    let mut be = [0u8; 48];
    for (i, b) in le[..48].iter().rev().enumerate() {
        be[i] = *b;
    }
    Some(be)
}

/// Verifies the report's ECDSA P-384/SHA-384 signature over `report[0..0x2A0)` with the leaf.
pub fn verify_report_signature(report: &Report, leaf: &AmdCert) -> Result<(), SnpError> {
    let invalid = || SnpError::ReportSignatureInvalid {
        leaf_subject: leaf.subject_cn.clone(),
        leaf_fingerprint: leaf.fingerprint(),
    };
    let key = leaf_verifying_key(leaf)?;
    let r = le72_to_be48(&report.signature.r).ok_or_else(invalid)?;
    let s = le72_to_be48(&report.signature.s).ok_or_else(invalid)?;
    let sig = p384::ecdsa::Signature::from_scalars(r, s).map_err(|_| invalid())?;
    key.verify(report.signed_bytes(), &sig)
        .map_err(|_| invalid())
}

/// DER of a certificate's SubjectPublicKeyInfo (for SPKI pins).
pub fn spki_sha256(cert: &AmdCert) -> Result<[u8; 32], SnpError> {
    use sha2::Digest;
    let der = cert
        .x509()
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .map_err(|e| SnpError::CertParseFailed {
            index: 0,
            detail: e.to_string(),
        })?;
    Ok(sha2::Sha256::digest(der).into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::snp::cert::parse_certs;

    fn milan() -> (Report, AmdCert, Vec<AmdCert>) {
        let r = Report::parse(fixture!("virtee-sev/report_milan.bin")).unwrap();
        let vcek = parse_certs(fixture!("virtee-sev/vcek_milan.der"))
            .unwrap()
            .remove(0);
        let chain = parse_certs(fixture!("virtee-sev/cert_chain_milan")).unwrap();
        (r, vcek, chain)
    }

    #[test]
    fn real_milan_chain_and_signature() {
        // virtee/sev ships these as a verifying set; the independent python check agrees
        // (tests/fixtures/independent/snp_expected.json, pair "virtee-milan").
        let (r, vcek, chain) = milan();
        let ask = &chain[0];
        let ark = &chain[1];
        assert_eq!(
            (ask.subject_cn.as_str(), ark.subject_cn.as_str()),
            ("SEV-Milan", "ARK-Milan")
        );
        for c in [&vcek, ask, ark] {
            check_pss_params(c).unwrap();
        }
        verify_cert_signature(&vcek, ask).unwrap();
        verify_cert_signature(ask, ark).unwrap();
        verify_cert_signature(ark, ark).unwrap();
        verify_report_signature(&r, &vcek).unwrap();
        // Wrong issuer: the ARK did not sign the VCEK (and the names do not chain).
        assert!(matches!(
            verify_cert_signature(&vcek, ark),
            Err(SnpError::CertSignatureInvalid { .. })
        ));
        // An RSA key is not a report signing key.
        assert!(matches!(
            leaf_verifying_key(ask),
            Err(SnpError::CertAlgorithmUnexpected { .. })
        ));
    }

    #[test]
    fn signature_integers_are_little_endian_with_zero_high_half() {
        let (r, vcek, _) = milan();
        // Reading R big-endian instead (the classic mistake) must fail.
        let mut swapped = r.clone();
        swapped.signature.r[..48].reverse();
        assert!(verify_report_signature(&swapped, &vcek).is_err());
        let mut high = r.clone();
        high.signature.s[71] = 1;
        assert!(matches!(
            verify_report_signature(&high, &vcek),
            Err(SnpError::ReportSignatureInvalid { .. })
        ));
        let mut zero = r;
        zero.signature.r = [0; 72];
        assert!(matches!(
            verify_report_signature(&zero, &vcek),
            Err(SnpError::ReportSignatureInvalid { .. })
        ));
    }

    #[test]
    fn wrong_pss_salt_is_refused() {
        // make_test_chain.py signs this VCEK with salt 32 (openssl x509 -text: "Salt Length: 0x20").
        let c = parse_certs(include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/independent/testchain/vcek-salt32.pem"
        )))
        .unwrap()
        .remove(0);
        let e = check_pss_params(&c).unwrap_err();
        assert!(
            matches!(e, SnpError::CertAlgorithmUnexpected { ref found, .. } if found == "salt length 32"),
            "{e}"
        );
    }

    #[test]
    fn validity_bounds_are_inclusive() {
        let (_, vcek, _) = milan();
        check_validity(&vcek, vcek.not_before).unwrap();
        check_validity(&vcek, vcek.not_after).unwrap();
        assert!(matches!(
            check_validity(&vcek, vcek.not_after + 1),
            Err(SnpError::CertExpired { .. })
        ));
        assert!(matches!(
            check_validity(&vcek, vcek.not_before - 1),
            Err(SnpError::CertNotYetValid { .. })
        ));
    }
}
