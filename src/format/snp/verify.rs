//! The whole SNP report verification of PROTOCOLS.md §3.8 steps 1-6 with the report/certificate
//! comparisons of §3.7, plus the REPORT_DATA binding helper (step 7).
//!
//! [`verify_report`] runs the checks in this order and returns the first failure:
//! 1. report header: SIGNATURE_ALGO 1, SIGNING_KEY 0/1, MASK_CHIP_KEY clear ([`check_report_header`]);
//! 2. leaf selection: a supplied VCEK/VLEK of the kind KEY_INFO names ([`select_leaf`]);
//! 3. chain: leaf ← ASK (VCEK) or ASVK (VLEK) ← ARK, RSA-PSS signatures, ARK self-signature,
//!    validity at `now`, ARK pinned or explicitly trusted ([`build_chain`]);
//! 4. generation of report == generation of chain ([`check_generation`]);
//! 5. productName prefix == chain generation ([`check_product_name`]);
//! 6. VCEK hwID == CHIP_ID ([`check_chip_id`]);
//! 7. leaf SPLs == REPORTED_TCB in the generation's layout ([`check_tcb`]);
//! 8. ECDSA signature over `report[0..0x2A0)` ([`super::chain::verify_report_signature`]).
//!
//! Each step is public so callers can report which one failed. Policy (§3.8 step 8) is not here.

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::cert::{oid_str, AmdCert, CertRole};
use super::chain::{check_validity, verify_cert_signature, verify_report_signature};
use super::error::SnpError;
use super::generation::{ChipIdShape, Generation};
use super::policy::SigningKey;
use super::report::Report;
use super::roots::{ArkTrust, TrustStore};
use super::tcb::TcbVersion;

/// A certificate used by a successful verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertSummary {
    /// Role.
    pub role: CertRole,
    /// Subject CN.
    pub subject: String,
    /// SHA-256 of the DER, lower-case hex.
    pub fingerprint: String,
    /// notBefore (Unix seconds).
    pub not_before: i64,
    /// notAfter (Unix seconds).
    pub not_after: i64,
}

impl CertSummary {
    fn of(c: &AmdCert) -> CertSummary {
        CertSummary {
            role: c.role,
            subject: c.subject_cn.clone(),
            fingerprint: c.fingerprint(),
            not_before: c.not_before,
            not_after: c.not_after,
        }
    }
}

/// What a successful [`verify_report`] used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifiedReport {
    /// Processor generation of report and chain.
    pub product: Generation,
    /// Signing key kind (VCEK or VLEK).
    pub signing_key: SigningKey,
    /// REPORTED_TCB decoded with the generation's layout (equal to the leaf's SPLs).
    pub reported_tcb: TcbVersion,
    /// The VCEK/VLEK.
    pub leaf: CertSummary,
    /// The ASK/ASVK.
    pub intermediate: CertSummary,
    /// The ARK.
    pub ark: CertSummary,
    /// How the ARK is trusted.
    pub ark_trust: ArkTrust,
    /// VLEK cspID, if any.
    pub csp_id: Option<String>,
}

/// A validated ARK → ASK/ASVK → VCEK/VLEK chain.
#[derive(Debug, Clone)]
pub struct ValidatedChain {
    /// VCEK/VLEK.
    pub leaf: AmdCert,
    /// ASK/ASVK.
    pub intermediate: AmdCert,
    /// ARK.
    pub ark: AmdCert,
    /// How the ARK is trusted.
    pub ark_trust: ArkTrust,
    /// Generation of the chain (from the names).
    pub product: Generation,
}

/// §3.8 step 1: the report is signed with a supported algorithm by a VCEK or VLEK.
pub fn check_report_header(report: &Report) -> Result<SigningKey, SnpError> {
    if report.signature_algo != 1 {
        return Err(SnpError::ReportSignatureAlgoUnsupported {
            found: report.signature_algo,
        });
    }
    let ki = report.key_info;
    match ki.signing_key {
        SigningKey::None => return Err(SnpError::ReportUnsigned { key_info: ki.raw }),
        SigningKey::Reserved(v) => {
            return Err(SnpError::ReportSigningKeyUnsupported {
                found: v,
                key_info: ki.raw,
            })
        }
        SigningKey::Vcek | SigningKey::Vlek => {}
    }
    if ki.mask_chip_key {
        return Err(SnpError::ReportChipKeyMasked { key_info: ki.raw });
    }
    Ok(ki.signing_key)
}

fn wanted_role(key: SigningKey) -> CertRole {
    match key {
        SigningKey::Vlek => CertRole::Vlek,
        _ => CertRole::Vcek,
    }
}

/// Picks the supplied leaf of the kind KEY_INFO names (preferring a VCEK whose hwID matches).
pub fn select_leaf<'a>(report: &Report, supplied: &'a [AmdCert]) -> Result<&'a AmdCert, SnpError> {
    let key = check_report_header(report)?;
    let role = wanted_role(key);
    let matching: Vec<&AmdCert> = supplied.iter().filter(|c| c.role == role).collect();
    if matching.is_empty() {
        if let Some(other) = supplied.iter().find(|c| c.role.is_leaf()) {
            return Err(SnpError::LeafKindMismatch {
                report_key: role.as_str().to_string(),
                leaf: other.role.as_str().to_string(),
            });
        }
        return Err(SnpError::CertChainIncomplete {
            missing: role.as_str().to_string(),
            context: format!(
                "; the report is {}-signed (chip {}, reported TCB {})",
                role,
                hex::encode(&report.chip_id[..8]),
                report.reported_tcb.to_tcbm()
            ),
        });
    }
    let by_hwid = matching.iter().find(|c| {
        c.extensions
            .hw_id
            .as_deref()
            .is_some_and(|h| !h.is_empty() && report.chip_id.starts_with(h))
    });
    by_hwid
        .or(matching.first())
        .copied()
        .ok_or(SnpError::CertChainIncomplete {
            missing: role.as_str().to_string(),
            context: String::new(),
        })
}

/// A VCEK must be issued by an ASK (`SEV-<product>`), a VLEK by an ASVK (`SEV-VLEK-<product>`).
pub fn check_intermediate_kind(leaf: &AmdCert, intermediate: &AmdCert) -> Result<(), SnpError> {
    let expected = match leaf.role {
        CertRole::Vcek => CertRole::Ask,
        CertRole::Vlek => CertRole::Asvk,
        other => {
            return Err(SnpError::CertRoleUnknown {
                subject: format!("{} (a {other}, not a VCEK/VLEK)", leaf.subject_cn),
                issuer: leaf.issuer_cn.clone(),
            })
        }
    };
    if intermediate.role != expected {
        return Err(SnpError::IntermediateKindMismatch {
            leaf: leaf.role.as_str().to_string(),
            issuer: intermediate.subject_cn.clone(),
            expected_issuer: expected.as_str().to_string(),
            found_issuer: intermediate.role.as_str().to_string(),
        });
    }
    Ok(())
}

fn issuer_role_from_name(issuer_cn: &str) -> Option<CertRole> {
    if issuer_cn.starts_with("SEV-VLEK-") {
        Some(CertRole::Asvk)
    } else if issuer_cn.starts_with("ARK-") {
        Some(CertRole::Ark)
    } else if issuer_cn.starts_with("SEV-") {
        Some(CertRole::Ask)
    } else {
        None
    }
}

fn pick_signer<'a>(
    subject: &AmdCert,
    candidates: impl Iterator<Item = &'a AmdCert>,
) -> Result<&'a AmdCert, Option<SnpError>> {
    let mut first_err = None;
    for c in candidates {
        match verify_cert_signature(subject, c) {
            Ok(()) => return Ok(c),
            Err(e) => {
                if first_err.is_none() {
                    first_err = Some(e);
                }
            }
        }
    }
    Err(first_err)
}

/// §3.8 steps 3-4: builds and checks leaf ← ASK/ASVK ← ARK from the supplied certificates and
/// the store (supplied ones are tried first), at time `now_unix`.
pub fn build_chain(
    leaf: &AmdCert,
    supplied: &[AmdCert],
    trust: &TrustStore,
    now_unix: i64,
) -> Result<ValidatedChain, SnpError> {
    // The issuer named by the leaf must be of the right kind (ASK for VCEK, ASVK for VLEK).
    let expected_issuer = match leaf.role {
        CertRole::Vcek => CertRole::Ask,
        CertRole::Vlek => CertRole::Asvk,
        _ => {
            return Err(SnpError::CertChainIncomplete {
                missing: "VCEK or VLEK".into(),
                context: format!("; {:?} is a {}", leaf.subject_cn, leaf.role),
            })
        }
    };
    if let Some(found) = issuer_role_from_name(&leaf.issuer_cn) {
        if found != expected_issuer {
            return Err(SnpError::IntermediateKindMismatch {
                leaf: leaf.role.as_str().to_string(),
                issuer: leaf.issuer_cn.clone(),
                expected_issuer: expected_issuer.as_str().to_string(),
                found_issuer: found.as_str().to_string(),
            });
        }
    }
    let Some(product) = leaf.product else {
        return Err(SnpError::GenerationUnknown {
            detail: format!("leaf issuer {:?} names no known product", leaf.issuer_cn),
        });
    };
    // Intermediate: by name, supplied first, then built-in; the one whose key verifies the leaf.
    let inter_candidates = supplied
        .iter()
        .filter(|c| !c.role.is_leaf() && c.role != CertRole::Ark)
        .chain(trust.intermediates())
        .filter(|c| c.subject_cn == leaf.issuer_cn);
    let intermediate = match pick_signer(leaf, inter_candidates) {
        Ok(c) => c,
        Err(Some(e)) => return Err(e),
        Err(None) => {
            return Err(SnpError::CertChainIncomplete {
                missing: format!("issuer {:?}", leaf.issuer_cn),
                context: format!("; needed to check {:?}", leaf.subject_cn),
            })
        }
    };
    check_intermediate_kind(leaf, intermediate)?;
    // ARK: by name, supplied first, then the store's trusted ARKs.
    let ark_candidates = supplied
        .iter()
        .filter(|c| c.role == CertRole::Ark)
        .chain(trust.arks().map(|(c, _)| c))
        .filter(|c| c.subject_cn == intermediate.issuer_cn);
    let ark = match pick_signer(intermediate, ark_candidates) {
        Ok(c) => c,
        Err(Some(e)) => return Err(e),
        Err(None) => {
            return Err(SnpError::CertChainIncomplete {
                missing: format!("root {:?}", intermediate.issuer_cn),
                context: format!("; needed to check {:?}", intermediate.subject_cn),
            })
        }
    };
    let Some(ark_trust) = trust.ark_trust(ark) else {
        return Err(SnpError::ArkNotTrusted {
            subject: ark.subject_cn.clone(),
            fingerprint: ark.fingerprint(),
        });
    };
    verify_cert_signature(ark, ark)?;
    for c in [ark, intermediate, leaf] {
        check_validity(c, now_unix)?;
    }
    for (what, g) in [
        (
            format!("issuer {:?}", intermediate.subject_cn),
            intermediate.product,
        ),
        (format!("root {:?}", ark.subject_cn), ark.product),
    ] {
        if g != Some(product) {
            return Err(SnpError::ChainGenerationMismatch {
                what,
                expected: product.name().to_string(),
                found: g.map_or("unknown".to_string(), |g| g.name().to_string()),
            });
        }
    }
    Ok(ValidatedChain {
        leaf: leaf.clone(),
        intermediate: intermediate.clone(),
        ark: ark.clone(),
        ark_trust,
        product,
    })
}

/// §3.7 #3: the report's generation (when it tells one) equals the chain's.
pub fn check_generation(
    report: &Report,
    chain_product: Generation,
) -> Result<Generation, SnpError> {
    let mismatch = |expected: String| SnpError::ChainGenerationMismatch {
        what: "certificate chain".to_string(),
        expected,
        found: chain_product.name().to_string(),
    };
    match report.generation {
        Some(g) if g != chain_product => Err(mismatch(g.name().to_string())),
        Some(g) => Ok(g),
        None => {
            if let Some(c) = report.cpuid {
                return Err(SnpError::GenerationUnknown {
                    detail: format!(
                        "CPUID family 0x{:02x} model 0x{:02x} is not Milan, Genoa or Turin",
                        c.family, c.model
                    ),
                });
            }
            match ChipIdShape::of(&report.chip_id) {
                ChipIdShape::MilanGenoaStyle if chain_product == Generation::Turin => {
                    Err(mismatch("Milan/Genoa".to_string()))
                }
                _ => Ok(chain_product),
            }
        }
    }
}

/// §3.7 #4: KEY_INFO.SIGNING_KEY agrees with the leaf type.
pub fn check_leaf_kind(report: &Report, leaf: &AmdCert) -> Result<(), SnpError> {
    let role = wanted_role(check_report_header(report)?);
    if leaf.role != role {
        return Err(SnpError::LeafKindMismatch {
            report_key: role.as_str().to_string(),
            leaf: leaf.role.as_str().to_string(),
        });
    }
    Ok(())
}

/// productName (prefix before `-`) names the chain generation.
pub fn check_product_name(leaf: &AmdCert, product: Generation) -> Result<(), SnpError> {
    let Some(name) = leaf.extensions.product_name.as_deref() else {
        return Err(SnpError::CertExtensionMissing {
            subject: leaf.subject_cn.clone(),
            name: "productName",
            oid: oid_str::PRODUCT_NAME,
        });
    };
    if Generation::from_product_name(name) != Some(product) {
        return Err(SnpError::ProductMismatch {
            leaf_subject: leaf.subject_cn.clone(),
            expected: product.name().to_string(),
            found: name.to_string(),
        });
    }
    Ok(())
}

/// §3.7 #1: a VCEK's hwID equals CHIP_ID (Turin: 8 bytes and a zero tail). VLEKs have no chip
/// binding and pass.
pub fn check_chip_id(report: &Report, leaf: &AmdCert, product: Generation) -> Result<(), SnpError> {
    if leaf.role != CertRole::Vcek {
        return Ok(());
    }
    if report.chip_id_masked() {
        return Err(SnpError::ChipIdMasked);
    }
    let Some(hw) = leaf.extensions.hw_id.as_deref() else {
        return Err(SnpError::CertExtensionMissing {
            subject: leaf.subject_cn.clone(),
            name: "hwID",
            oid: oid_str::HW_ID,
        });
    };
    let ok = match product {
        Generation::Turin => {
            hw.len() == 8
                && report.chip_id[..8] == *hw
                && report.chip_id[8..].iter().all(|b| *b == 0)
        }
        Generation::Milan | Generation::Genoa => hw == report.chip_id,
    };
    if !ok {
        return Err(SnpError::ChipIdMismatch {
            report_chip_id: hex::encode(report.chip_id),
            leaf_hwid: hex::encode(hw),
        });
    }
    Ok(())
}

/// §3.7 #2: leaf SPLs equal REPORTED_TCB decoded with `product`'s layout (Turin incl. FMC).
pub fn check_tcb(
    report: &Report,
    leaf: &AmdCert,
    product: Generation,
) -> Result<TcbVersion, SnpError> {
    let tcb = report.reported_tcb.decode(product.tcb_layout());
    let e = &leaf.extensions;
    let mut comps: Vec<(&'static str, &'static str, u8, Option<u8>)> = Vec::new();
    if product == Generation::Turin {
        comps.push(("fmc", oid_str::FMC_SPL, tcb.fmc.unwrap_or(0), e.fmc_spl));
    }
    comps.extend([
        ("bootloader", oid_str::BL_SPL, tcb.bootloader, e.bl_spl),
        ("tee", oid_str::TEE_SPL, tcb.tee, e.tee_spl),
        ("snp", oid_str::SNP_SPL, tcb.snp, e.snp_spl),
        ("microcode", oid_str::UCODE_SPL, tcb.microcode, e.ucode_spl),
    ]);
    for (component, oid, report_value, cert_value) in comps {
        let Some(cert_value) = cert_value else {
            return Err(SnpError::CertExtensionMissing {
                subject: leaf.subject_cn.clone(),
                name: match component {
                    "fmc" => "fmcSPL",
                    "bootloader" => "blSPL",
                    "tee" => "teeSPL",
                    "snp" => "snpSPL",
                    _ => "ucodeSPL",
                },
                oid,
            });
        };
        if cert_value != report_value {
            return Err(SnpError::TcbMismatch {
                component,
                report_value,
                cert_value,
                leaf_subject: leaf.subject_cn.clone(),
                tcbm: report.reported_tcb.to_tcbm(),
                product: product.name().to_string(),
                chip_id: hex::encode(report.kds_hwid(product)),
            });
        }
    }
    Ok(tcb)
}

/// §3.8 steps 1-6: verifies `report` against the supplied VCEK/VLEK (and optionally ASK/ASVK and
/// ARK; missing ones come from `trust`) at time `now_unix` (Unix seconds).
pub fn verify_report(
    report: &Report,
    supplied: &[AmdCert],
    trust: &TrustStore,
    now_unix: i64,
) -> Result<VerifiedReport, SnpError> {
    let signing_key = check_report_header(report)?;
    let leaf = select_leaf(report, supplied)?;
    check_leaf_kind(report, leaf)?;
    let chain = build_chain(leaf, supplied, trust, now_unix)?;
    let product = check_generation(report, chain.product)?;
    check_product_name(&chain.leaf, product)?;
    check_chip_id(report, &chain.leaf, product)?;
    let reported_tcb = check_tcb(report, &chain.leaf, product)?;
    verify_report_signature(report, &chain.leaf)?;
    Ok(VerifiedReport {
        product,
        signing_key,
        reported_tcb,
        leaf: CertSummary::of(&chain.leaf),
        intermediate: CertSummary::of(&chain.intermediate),
        ark: CertSummary::of(&chain.ark),
        ark_trust: chain.ark_trust,
        csp_id: chain.leaf.extensions.csp_id.clone(),
    })
}

/// §3.8 step 7: `REPORT_DATA == SHA-256(runtime_data) || 32 zero bytes`.
pub fn check_report_data_binding(report: &Report, runtime_data: &[u8]) -> Result<(), SnpError> {
    let mut expected = [0u8; 64];
    expected[..32].copy_from_slice(&Sha256::digest(runtime_data));
    if report.report_data != expected {
        return Err(SnpError::ReportDataMismatch {
            expected: hex::encode(expected),
            found: hex::encode(report.report_data),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;
    use crate::format::snp::cert::parse_certs;

    fn genoa() -> (Vec<u8>, AmdCert) {
        (
            fixture!("oak/genoa_oc_report.bin").to_vec(),
            parse_certs(fixture!("oak/genoa_oc_vcek.der"))
                .unwrap()
                .remove(0),
        )
    }

    #[test]
    fn tcb_mismatch_names_component_and_what_to_fetch() {
        // Genoa REPORTED_TCB 0a 00 00 00 00 00 19 54 (PROTOCOLS.md §3.4); raise SNP to 0x1a.
        let (mut b, vcek) = genoa();
        check_tcb(&Report::parse(&b).unwrap(), &vcek, Generation::Genoa).unwrap();
        b[0x186] = 0x1a;
        let r = Report::parse(&b).unwrap();
        let e = check_tcb(&r, &vcek, Generation::Genoa).unwrap_err();
        assert!(matches!(
            e,
            SnpError::TcbMismatch {
                component: "snp",
                report_value: 0x1a,
                cert_value: 0x19,
                ..
            }
        ));
        let msg = e.to_string();
        assert!(
            msg.contains("541a00000000000a") && msg.contains("THIM/KDS"),
            "{msg}"
        );
        assert_eq!(e.code(), "tcb-mismatch");
    }

    #[test]
    fn generation_checks() {
        let (mut b, _) = genoa();
        let r = Report::parse(&b).unwrap();
        assert_eq!(
            check_generation(&r, Generation::Genoa).unwrap(),
            Generation::Genoa
        );
        assert!(matches!(
            check_generation(&r, Generation::Milan),
            Err(SnpError::ChainGenerationMismatch { .. })
        ));
        // An unknown CPUID (future "Venice", family 0x1A model 0x50) cannot be matched.
        b[0x188] = 0x1A;
        b[0x189] = 0x50;
        let r = Report::parse(&b).unwrap();
        assert_eq!(r.generation, None);
        assert_eq!(
            check_generation(&r, Generation::Turin).unwrap_err().code(),
            "generation-unknown"
        );
    }

    #[test]
    fn product_name_prefix() {
        let (_, vcek) = genoa();
        check_product_name(&vcek, Generation::Genoa).unwrap();
        assert_eq!(
            check_product_name(&vcek, Generation::Milan)
                .unwrap_err()
                .code(),
            "product-mismatch"
        );
        // "Milan-B0" is Milan (virtee-sev/vcek_milan.der, openssl asn1parse of 1.3.6.1.4.1.3704.1.2).
        let m = parse_certs(fixture!("virtee-sev/vcek_milan.der"))
            .unwrap()
            .remove(0);
        assert_eq!(m.extensions.product_name.as_deref(), Some("Milan-B0"));
        check_product_name(&m, Generation::Milan).unwrap();
    }

    #[test]
    fn leaf_kind_both_ways() {
        let (b, vcek) = genoa();
        let r = Report::parse(&b).unwrap();
        check_leaf_kind(&r, &vcek).unwrap();
        let vlek = parse_certs(fixture!("trustee/snp/test-vlek.der"))
            .unwrap()
            .remove(0);
        assert_eq!(
            check_leaf_kind(&r, &vlek).unwrap_err().code(),
            "leaf-kind-mismatch"
        );
        let vr = Report::parse(fixture!("trustee/snp/test-vlek-report.bin")).unwrap();
        check_leaf_kind(&vr, &vlek).unwrap();
        assert_eq!(
            check_leaf_kind(&vr, &vcek).unwrap_err().code(),
            "leaf-kind-mismatch"
        );
        // A VLEK has no chip binding: check_chip_id passes it (KEY_INFO decides its kind).
        check_chip_id(&vr, &vlek, Generation::Milan).unwrap();
    }
}
