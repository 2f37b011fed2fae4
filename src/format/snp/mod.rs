//! AMD SEV-SNP attestation reports and the AMD certificate chain: parsing and verification
//! (PROTOCOLS.md §3.2-§3.9, certificate table §2.4). Pure: bytes in, typed values or a
//! specific [`SnpError`] out; time is a parameter.
//!
//! - [`report`]: the 1184-byte report ([`Report::parse`]), versions 2-5.
//! - [`policy`], [`tcb`], [`generation`]: bitfields, TCB layouts + THIM `tcbm`, Milan/Genoa/Turin.
//! - [`cert`], [`cert_table`]: AMD certificates from PEM, DER or the extended-report table.
//! - [`chain`]: RSA-PSS certificate signatures, validity, the report's ECDSA signature.
//! - [`roots`]: built-in pinned AMD roots and the [`TrustStore`].
//! - [`verify`]: §3.8 steps 1-7 ([`verify_report`], [`check_report_data_binding`]).
//! - [`thim`]: the THIM certification document (IMDS / ACI), [`parse_thim_document`].
//! - [`json`]: the `--json` view ([`report_json`]).

/// Embeds a file of `tests/fixtures/real/` (tests only).
#[cfg(test)]
macro_rules! fixture {
    ($name:expr) => {
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/real/",
            $name
        ))
    };
}

pub mod cert;
pub mod cert_table;
pub mod chain;
pub mod error;
pub mod generation;
pub mod json;
pub mod policy;
pub mod report;
pub mod roots;
pub mod tcb;
pub mod thim;
pub mod verify;

pub use cert::{parse_certs, AmdCert, AmdExtensions, CertRole};
pub use cert_table::{parse_cert_table, CertTableEntry, CertTableKind};
pub use error::SnpError;
pub use generation::{ChipIdShape, Generation};
pub use json::{report_json, report_json_with_product, verified_json};
pub use policy::{GuestPolicy, KeyInfo, PlatformInfo, SigningKey};
pub use report::{Cpuid, FirmwareVersion, Report, ReportSignature, REPORT_LEN, SIGNED_LEN};
pub use roots::{ArkTrust, TrustStore, ARK_PINS};
pub use tcb::{RawTcb, TcbLayout, TcbVersion};
pub use thim::{parse_thim_document, ThimCerts};
pub use verify::{
    build_chain, check_chip_id, check_generation, check_intermediate_kind, check_leaf_kind,
    check_product_name, check_report_data_binding, check_report_header, check_tcb, select_leaf,
    verify_report, CertSummary, ValidatedChain, VerifiedReport,
};
