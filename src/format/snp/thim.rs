//! The THIM certification document (IMDS `/metadata/THIM/amd/certification`, ACI
//! `host-amd-cert-base64`), PROTOCOLS.md §2.3 and §2.5.
//!
//! `{"vcekCert": PEM, "tcbm": 16 hex, "certificateChain": PEM (ASK then ARK), "cacheControl":
//! decimal seconds}`. Accepted as JSON or as base64 of that JSON (the ACI file/env form). Roles
//! of the certificates come from their names, not from the field they sit in.

use base64::Engine;
use serde::Deserialize;

use super::cert::{parse_certs, AmdCert, CertRole};
use super::error::SnpError;
use super::tcb::RawTcb;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Doc {
    vcek_cert: String,
    tcbm: String,
    certificate_chain: String,
    #[serde(default)]
    cache_control: Option<String>,
}

/// A parsed THIM document.
#[derive(Debug, Clone)]
pub struct ThimCerts {
    /// The VCEK (from `vcekCert`).
    pub vcek: AmdCert,
    /// `certificateChain` (ASK, ARK in the real documents; any order accepted).
    pub chain: Vec<AmdCert>,
    /// `tcbm`: the TCB the VCEK was issued for.
    pub tcbm: RawTcb,
    /// `cacheControl` in seconds, when present and numeric.
    pub cache_control: Option<u64>,
}

impl ThimCerts {
    /// VCEK followed by the chain, ready for [`super::verify::verify_report`].
    pub fn all_certs(&self) -> Vec<AmdCert> {
        let mut v = vec![self.vcek.clone()];
        v.extend(self.chain.iter().cloned());
        v
    }
}

fn invalid(detail: impl std::fmt::Display) -> SnpError {
    SnpError::ThimDocumentInvalid {
        detail: detail.to_string(),
    }
}

/// Parses a THIM document given as JSON or as base64 of the JSON.
pub fn parse_thim_document(bytes: &[u8]) -> Result<ThimCerts, SnpError> {
    let trimmed = bytes.trim_ascii();
    let json: Vec<u8> = if trimmed.first() == Some(&b'{') {
        trimmed.to_vec()
    } else {
        base64::engine::general_purpose::STANDARD
            .decode(trimmed)
            .map_err(|e| invalid(format!("neither JSON nor base64 of JSON: {e}")))?
    };
    let doc: Doc = serde_json::from_slice(&json).map_err(invalid)?;
    let tcbm = RawTcb::from_tcbm(&doc.tcbm)?;
    let vceks = parse_certs(doc.vcek_cert.as_bytes())?;
    let [vcek] = <[AmdCert; 1]>::try_from(vceks).map_err(|v| {
        invalid(format!(
            "vcekCert holds {} certificates, expected 1",
            v.len()
        ))
    })?;
    if vcek.role != CertRole::Vcek {
        return Err(invalid(format!(
            "vcekCert holds {:?}, a {}",
            vcek.subject_cn, vcek.role
        )));
    }
    let chain = parse_certs(doc.certificate_chain.as_bytes())?;
    Ok(ThimCerts {
        vcek,
        chain,
        tcbm,
        cache_control: doc.cache_control.and_then(|c| c.trim().parse().ok()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_thim_documents_json_and_base64() {
        // python json/base64 + cryptography on both files: tcbm "7308000000000003",
        // cacheControl "86400", chain = SEV-Milan, ARK-Milan; VCEK hwID starts b12164b45a2a2742
        // (JSON) and 4cdba88939c44251 (the older base64 env document: another host).
        for (doc, hwid) in [
            (
                &fixture!("confidential-sidecar-containers/uvm_host_amd_certificate.json")[..],
                "b12164b45a2a2742",
            ),
            (
                &fixture!("confidential-sidecar-containers/host_amd_certificate_env")[..],
                "4cdba88939c44251",
            ),
        ] {
            let t = parse_thim_document(doc).unwrap();
            assert_eq!(t.tcbm.to_tcbm(), "7308000000000003");
            assert_eq!(t.cache_control, Some(86400));
            assert!(t
                .vcek
                .extensions
                .hw_id
                .as_ref()
                .unwrap()
                .starts_with(&hex::decode(hwid).unwrap()));
            let roles: Vec<_> = t.chain.iter().map(|c| c.role).collect();
            assert_eq!(roles, vec![CertRole::Ask, CertRole::Ark]);
            assert_eq!(t.all_certs().len(), 3);
        }
        assert!(matches!(
            parse_thim_document(b"{}"),
            Err(SnpError::ThimDocumentInvalid { .. })
        ));
        assert!(matches!(
            parse_thim_document(b"%%%"),
            Err(SnpError::ThimDocumentInvalid { .. })
        ));
    }
}
