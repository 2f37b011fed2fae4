//! [`SnpError`]: every way an SNP report or AMD certificate can be refused (PROTOCOLS.md §3).
//!
//! Each variant carries the facts (expected vs found) and maps to a stable kebab-case code
//! through [`ErrorCode`]; the message says which check failed and what the operator should do.
//! The codes are listed in `docs/errors-snp.md`.

use crate::error::ErrorCode;

/// An SNP report, AMD certificate or certificate-table error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SnpError {
    /// The report buffer is shorter than 1184 bytes.
    #[error(
        "SNP attestation report is truncated: expected {expected} bytes, found {found}; \
         pass the whole report (the firmware response starts it at offset 32)"
    )]
    ReportTruncated {
        /// Required length (1184).
        expected: usize,
        /// Length given.
        found: usize,
    },

    /// The report buffer is longer than 1184 bytes.
    #[error(
        "SNP attestation report is oversized: expected exactly {expected} bytes, found {found}; \
         strip any surrounding container (firmware response header, HCL header) first"
    )]
    ReportOversized {
        /// Required length (1184).
        expected: usize,
        /// Length given.
        found: usize,
    },

    /// VERSION is not one of 2, 3, 4, 5.
    #[error(
        "SNP attestation report version {found} is not supported (supported: 2, 3, 4, 5); \
         update skrd or the platform firmware"
    )]
    ReportVersionUnsupported {
        /// VERSION field found.
        found: u32,
    },

    /// SIGNATURE_ALGO is not 1 (ECDSA P-384 with SHA-384).
    #[error(
        "SNP report signature algorithm {found} is not supported (expected 1 = ECDSA P-384 \
         with SHA-384)"
    )]
    ReportSignatureAlgoUnsupported {
        /// SIGNATURE_ALGO found.
        found: u32,
    },

    /// KEY_INFO.SIGNING_KEY is 7: the firmware did not sign the report.
    #[error(
        "SNP report is unsigned (KEY_INFO 0x{key_info:08x}, signing key 7 = none); \
         request a report signed with the VCEK or VLEK"
    )]
    ReportUnsigned {
        /// Raw KEY_INFO.
        key_info: u32,
    },

    /// KEY_INFO.SIGNING_KEY is a reserved value (2..=6).
    #[error(
        "SNP report signing key {found} is reserved (expected 0 = VCEK or 1 = VLEK; \
         KEY_INFO 0x{key_info:08x})"
    )]
    ReportSigningKeyUnsupported {
        /// SIGNING_KEY value found.
        found: u8,
        /// Raw KEY_INFO.
        key_info: u32,
    },

    /// KEY_INFO.MASK_CHIP_KEY is set: the signature is zeroed.
    #[error(
        "SNP report has MASK_CHIP_KEY set (KEY_INFO 0x{key_info:08x}): the firmware zeroed \
         the signature; launch the guest without MASK_CHIP_KEY to attest"
    )]
    ReportChipKeyMasked {
        /// Raw KEY_INFO.
        key_info: u32,
    },

    /// The ECDSA P-384 signature over report[0..0x2A0) does not verify with the leaf key.
    #[error(
        "SNP report signature does not verify with the {leaf_subject} key (fingerprint \
         {leaf_fingerprint}): the report was altered or the certificate belongs to another \
         chip/TCB; fetch the matching VCEK/VLEK and retry"
    )]
    ReportSignatureInvalid {
        /// Subject CN of the leaf used.
        leaf_subject: String,
        /// SHA-256 of the leaf DER, lower-case hex.
        leaf_fingerprint: String,
    },

    /// The report generation cannot be determined and no certificate tells it.
    #[error(
        "cannot tell the processor generation of the SNP report ({detail}); supply the \
         VCEK/VLEK chain so that its generation can be used"
    )]
    GenerationUnknown {
        /// Why (e.g. unknown CPUID family/model).
        detail: String,
    },

    /// A THIM `tcbm` string is not 16 hex digits.
    #[error(
        "THIM tcbm {found:?} is invalid: expected 16 hex digits (an 8-byte little-endian TCB)"
    )]
    TcbmInvalid {
        /// The string given.
        found: String,
    },

    /// A certificate could not be decoded (PEM, DER or X.509 structure).
    #[error(
        "AMD certificate #{index} cannot be parsed: {detail}; supply PEM or DER certificates \
         as served by AMD KDS / THIM"
    )]
    CertParseFailed {
        /// Position in the input (0-based).
        index: usize,
        /// Decoder error.
        detail: String,
    },

    /// A certificate's subject/issuer CN is none of ARK-*, SEV-*, SEV-VLEK-*, SEV-VCEK, SEV-VLEK.
    #[error(
        "certificate {subject:?} (issuer {issuer:?}) is not an AMD SEV-SNP certificate \
         (expected ARK-<product>, SEV-<product>, SEV-VLEK-<product>, SEV-VCEK or SEV-VLEK)"
    )]
    CertRoleUnknown {
        /// Subject CN (empty when absent).
        subject: String,
        /// Issuer CN (empty when absent).
        issuer: String,
    },

    /// An AMD extension (1.3.6.1.4.1.3704.1.*) is malformed.
    #[error("certificate {subject:?}: AMD extension {oid} is malformed: {detail}")]
    CertExtensionInvalid {
        /// Subject CN.
        subject: String,
        /// Dotted OID.
        oid: String,
        /// What is wrong.
        detail: String,
    },

    /// A VCEK/VLEK lacks an extension the checks need (hwID, an SPL, productName).
    #[error(
        "certificate {subject:?} lacks the AMD extension {name} ({oid}); it is not a usable \
         VCEK/VLEK, fetch it again from AMD KDS or THIM"
    )]
    CertExtensionMissing {
        /// Subject CN.
        subject: String,
        /// Extension name, e.g. `hwID`.
        name: &'static str,
        /// Dotted OID.
        oid: &'static str,
    },

    /// A certificate needed to build the chain was not supplied and is not built in.
    #[error(
        "AMD certificate chain is incomplete: no {missing} found{context}; supply it \
         (VCEK/VLEK from THIM or KDS; ASK/ASVK and ARK from KDS cert_chain)"
    )]
    CertChainIncomplete {
        /// What is missing, e.g. `VCEK` or `issuer "SEV-Milan"`.
        missing: String,
        /// Extra context (starts with `; ` or is empty).
        context: String,
    },

    /// The root ARK is neither a pinned AMD root nor explicitly trusted by the caller.
    #[error(
        "root certificate {subject:?} is not trusted: its SHA-256 fingerprint {fingerprint} is \
         not one of the pinned AMD roots; if this is a test root (e.g. skr-emulator's), trust it \
         explicitly with TrustStore::trust_ark / the configuration's extra AMD root"
    )]
    ArkNotTrusted {
        /// Subject CN of the ARK.
        subject: String,
        /// SHA-256 of its DER, lower-case hex.
        fingerprint: String,
    },

    /// An RSA-PSS certificate signature does not verify under its issuer's key.
    #[error(
        "signature of certificate {subject:?} does not verify with issuer {issuer:?}'s key: \
         the certificate was altered or issued by another CA"
    )]
    CertSignatureInvalid {
        /// Subject CN of the signed certificate.
        subject: String,
        /// Subject CN of the issuer whose key was used.
        issuer: String,
    },

    /// A certificate is not signed with RSASSA-PSS SHA-384 / MGF1-SHA-384 / salt 48 / trailer 1,
    /// or its key is not the expected type.
    #[error(
        "certificate {subject:?} uses an unexpected algorithm: expected {expected}, found \
         {found}; AMD certificates use RSASSA-PSS (SHA-384, MGF1-SHA-384, salt 48)"
    )]
    CertAlgorithmUnexpected {
        /// Subject CN.
        subject: String,
        /// What was required.
        expected: &'static str,
        /// What was found.
        found: String,
    },

    /// `now` is before a certificate's notBefore.
    #[error(
        "certificate {subject:?} is not valid yet: notBefore {not_before} (Unix s), now {now}; \
         check the system clock"
    )]
    CertNotYetValid {
        /// Subject CN.
        subject: String,
        /// notBefore in Unix seconds.
        not_before: i64,
        /// The time the check used.
        now: i64,
    },

    /// `now` is after a certificate's notAfter.
    #[error(
        "certificate {subject:?} expired: notAfter {not_after} (Unix s), now {now}; fetch a \
         current certificate from THIM/KDS"
    )]
    CertExpired {
        /// Subject CN.
        subject: String,
        /// notAfter in Unix seconds.
        not_after: i64,
        /// The time the check used.
        now: i64,
    },

    /// Report and chain (or parts of the chain) belong to different processor generations.
    #[error(
        "generation mismatch: {what} is {found}, expected {expected}; use the AMD chain of the \
         report's product ({expected})"
    )]
    ChainGenerationMismatch {
        /// Which element disagrees, e.g. `certificate chain` or `issuer of SEV-VCEK`.
        what: String,
        /// The generation required.
        expected: String,
        /// The generation found.
        found: String,
    },

    /// A VCEK is issued by an ASVK or a VLEK by an ASK.
    #[error(
        "{leaf} certificate must be issued by an {expected_issuer}, but its issuer {issuer:?} is \
         an {found_issuer}"
    )]
    IntermediateKindMismatch {
        /// Leaf role (VCEK or VLEK).
        leaf: String,
        /// Issuer CN.
        issuer: String,
        /// Role required (ASK for VCEK, ASVK for VLEK).
        expected_issuer: String,
        /// Role found.
        found_issuer: String,
    },

    /// The leaf type disagrees with KEY_INFO.SIGNING_KEY.
    #[error(
        "report says it is signed by the {report_key} but the supplied leaf certificate is a \
         {leaf}; supply the {report_key} certificate"
    )]
    LeafKindMismatch {
        /// What KEY_INFO says (VCEK/VLEK).
        report_key: String,
        /// The leaf's role.
        leaf: String,
    },

    /// VCEK hwID differs from the report's CHIP_ID.
    #[error(
        "VCEK hwID {leaf_hwid} does not match the report CHIP_ID {report_chip_id}: the VCEK \
         belongs to another chip; fetch the VCEK for chip {report_chip_id} from THIM/KDS"
    )]
    ChipIdMismatch {
        /// CHIP_ID (hex; Turin: all 64 bytes so a non-zero tail shows).
        report_chip_id: String,
        /// hwID extension (hex).
        leaf_hwid: String,
    },

    /// CHIP_ID is all zero (MASK_CHIP_ID), so a VCEK cannot be bound to it.
    #[error(
        "report CHIP_ID is masked (all zero) but the report is VCEK-signed: the VCEK cannot be \
         bound to the chip; launch without MASK_CHIP_ID or use VLEK attestation"
    )]
    ChipIdMasked,

    /// A leaf SPL differs from REPORTED_TCB.
    #[error(
        "TCB mismatch: report REPORTED_TCB {component} = {report_value} but {leaf_subject} \
         {component} SPL = {cert_value} (report tcbm {tcbm}, {product}); fetch the VCEK for \
         chip {chip_id} at TCB {tcbm} from THIM/KDS"
    )]
    TcbMismatch {
        /// Component name (bootloader, tee, snp, microcode, fmc).
        component: &'static str,
        /// Value in the report.
        report_value: u8,
        /// Value in the certificate.
        cert_value: u8,
        /// Leaf subject CN.
        leaf_subject: String,
        /// REPORTED_TCB as a THIM tcbm string.
        tcbm: String,
        /// Product name.
        product: String,
        /// CHIP_ID hex (Turin: first 8 bytes).
        chip_id: String,
    },

    /// The leaf's productName does not match the chain generation.
    #[error(
        "{leaf_subject} productName {found:?} does not match product {expected}; use the \
         certificate issued for {expected}"
    )]
    ProductMismatch {
        /// Leaf subject CN.
        leaf_subject: String,
        /// Expected product.
        expected: String,
        /// productName found.
        found: String,
    },

    /// REPORT_DATA does not bind the runtime data.
    #[error(
        "REPORT_DATA does not bind the runtime data: expected {expected}, found {found}; the \
         report was requested for other data"
    )]
    ReportDataMismatch {
        /// Expected 64 bytes (SHA-256 || 32 zero bytes), hex.
        expected: String,
        /// REPORT_DATA found, hex.
        found: String,
    },

    /// A THIM certification document (JSON, or base64 of it) is malformed.
    #[error(
        "THIM certification document is invalid: {detail}; expected JSON with vcekCert, tcbm, \
         certificateChain (as served by IMDS /metadata/THIM/amd/certification)"
    )]
    ThimDocumentInvalid {
        /// What is wrong.
        detail: String,
    },

    /// The extended-report certificate table is malformed.
    #[error("SNP certificate table is malformed at entry {entry}: {detail}")]
    CertTableMalformed {
        /// Entry index (0-based).
        entry: usize,
        /// What is wrong.
        detail: String,
    },
}

impl ErrorCode for SnpError {
    fn code(&self) -> &'static str {
        match self {
            Self::ReportTruncated { .. } => "report-truncated",
            Self::ReportOversized { .. } => "report-oversized",
            Self::ReportVersionUnsupported { .. } => "report-version-unsupported",
            Self::ReportSignatureAlgoUnsupported { .. } => "report-signature-algo-unsupported",
            Self::ReportUnsigned { .. } => "report-unsigned",
            Self::ReportSigningKeyUnsupported { .. } => "report-signing-key-unsupported",
            Self::ReportChipKeyMasked { .. } => "report-chip-key-masked",
            Self::ReportSignatureInvalid { .. } => "report-signature-invalid",
            Self::GenerationUnknown { .. } => "generation-unknown",
            Self::TcbmInvalid { .. } => "tcbm-invalid",
            Self::CertParseFailed { .. } => "cert-parse-failed",
            Self::CertRoleUnknown { .. } => "cert-role-unknown",
            Self::CertExtensionInvalid { .. } => "cert-extension-invalid",
            Self::CertExtensionMissing { .. } => "cert-extension-missing",
            Self::CertChainIncomplete { .. } => "cert-chain-incomplete",
            Self::ArkNotTrusted { .. } => "ark-not-trusted",
            Self::CertSignatureInvalid { .. } => "cert-signature-invalid",
            Self::CertAlgorithmUnexpected { .. } => "cert-algorithm-unexpected",
            Self::CertNotYetValid { .. } => "cert-not-yet-valid",
            Self::CertExpired { .. } => "cert-expired",
            Self::ChainGenerationMismatch { .. } => "chain-generation-mismatch",
            Self::IntermediateKindMismatch { .. } => "intermediate-kind-mismatch",
            Self::LeafKindMismatch { .. } => "leaf-kind-mismatch",
            Self::ChipIdMismatch { .. } => "chip-id-mismatch",
            Self::ChipIdMasked => "chip-id-masked",
            Self::TcbMismatch { .. } => "tcb-mismatch",
            Self::ProductMismatch { .. } => "product-mismatch",
            Self::ReportDataMismatch { .. } => "report-data-mismatch",
            Self::CertTableMalformed { .. } => "cert-table-malformed",
            Self::ThimDocumentInvalid { .. } => "thim-document-invalid",
        }
    }
}
