//! Errors of the HCL report parser and of the REPORT_DATA binding check (PROTOCOLS.md §4.2-4.4).
//!
//! Every variant carries the values it compared (expected vs found) and maps to a stable
//! kebab-case code through [`ErrorCode`]; the codes are listed in `docs/errors-hcl.md`.

use crate::error::ErrorCode;

/// Everything that can be wrong with an Azure HCL report or its runtime data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HclError {
    /// The buffer ends before a structure that must be present.
    #[error(
        "HCL report is truncated: the {part} needs {needed} bytes but only {found} were given; \
         read the whole NV index 0x01400001 (2048 or 2600 bytes on Azure)"
    )]
    Truncated {
        /// Which structure was cut off.
        part: &'static str,
        /// Bytes the buffer must have for it.
        needed: usize,
        /// Bytes the buffer has.
        found: usize,
    },

    /// The first four bytes are not "HCLA".
    #[error(
        "not an HCL report: expected the magic \"HCLA\" (48434c41) at offset 0, found {}; \
         pass the contents of TPM NV index 0x01400001",
        hex::encode(found)
    )]
    BadMagic {
        /// The four bytes found.
        found: [u8; 4],
    },

    /// The attestation header version is not 1 or 2.
    #[error(
        "HCL report version {found} is not supported (supported: 1, 2); this paravisor is newer \
         than skrd, update skrd"
    )]
    UnsupportedVersion {
        /// Version read at offset 4.
        found: u32,
    },

    /// The IGVM request data header version is not 1.
    #[error("HCL IGVM request data version {found} is not supported (supported: 1); update skrd")]
    UnsupportedIgvmVersion {
        /// Version read at offset 0x4C4.
        found: u32,
    },

    /// ReportType 4: the hardware report is a TDX TDREPORT.
    #[error(
        "TDX confidential VMs are not supported yet: the HCL report carries a TDX TDREPORT \
         (ReportType 4), skrd verifies AMD SEV-SNP evidence only; run skrd on an SEV-SNP VM \
         (e.g. DCasv5/ECasv5 or later)"
    )]
    TdxUnsupported,

    /// ReportType 3: Trusted Launch (TVM), no hardware report.
    #[error(
        "the HCL report is from a Trusted Launch VM (ReportType 3): it carries no hardware \
         attestation report, so there is nothing to verify; Secure Key Release needs an \
         SEV-SNP confidential VM"
    )]
    TvmUnsupported,

    /// ReportType other than 2 (SNP), 3 (TVM) or 4 (TDX).
    #[error(
        "HCL report type {found} is not known (expected 2 = SEV-SNP); the report is corrupt or \
         from a newer paravisor, update skrd"
    )]
    UnknownReportType {
        /// ReportType read at offset 0x4C8.
        found: u32,
    },

    /// ReportDataHashType other than 1, 2 or 3.
    #[error(
        "HCL report-data hash type {found} is not known (expected 1 = SHA-256, 2 = SHA-384 or \
         3 = SHA-512); the report is corrupt or from a newer paravisor"
    )]
    UnknownHashType {
        /// ReportDataHashType read at offset 0x4CC.
        found: u32,
    },

    /// IGVM DataSize is not 20 + VariableDataSize.
    #[error(
        "HCL report sizes disagree: IGVM DataSize is {data_size} but 20 + VariableDataSize = \
         {expected}; the report is corrupt"
    )]
    DataSizeMismatch {
        /// DataSize at offset 0x4C0.
        data_size: u32,
        /// 20 + VariableDataSize.
        expected: u64,
    },

    /// Header ReportSize is not 0x4C0 + IGVM DataSize.
    #[error(
        "HCL report sizes disagree: header ReportSize is {report_size} but 0x4C0 + IGVM DataSize \
         = {expected}; the report is corrupt"
    )]
    ReportSizeMismatch {
        /// ReportSize at offset 8.
        report_size: u32,
        /// 0x4C0 + DataSize.
        expected: u64,
    },

    /// VariableDataSize runs past the end of the buffer.
    #[error(
        "HCL runtime data does not fit: VariableDataSize says {variable_data_size} bytes but only \
         {available} bytes follow offset 0x4D4; the report is truncated or corrupt, re-read NV \
         index 0x01400001 completely"
    )]
    VariableDataTooLarge {
        /// VariableDataSize at offset 0x4D0.
        variable_data_size: u32,
        /// Bytes present after offset 0x4D4.
        available: usize,
    },

    /// The runtime data is not valid JSON.
    #[error(
        "HCL runtime data is not valid JSON ({detail} at line {line} column {column}); the report \
         is corrupt"
    )]
    RuntimeDataJson {
        /// serde_json's description of the problem.
        detail: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
    },

    /// A known runtime-data field has the wrong JSON type.
    #[error(
        "HCL runtime data field \"{field}\" has the wrong type: expected {expected}, found \
         {found}; the report is corrupt or from a newer paravisor"
    )]
    RuntimeDataField {
        /// JSON path of the field, e.g. `vm-configuration.secure-boot`.
        field: String,
        /// Expected JSON type.
        expected: &'static str,
        /// JSON type found.
        found: &'static str,
    },

    /// `user-data` is not 128 hex characters.
    #[error(
        "HCL runtime data \"user-data\" must be 128 hex characters (the 64 bytes of NV index \
         0x01400002), found {length} characters{hint}"
    )]
    UserDataInvalid {
        /// Length of the string found.
        length: usize,
        /// Empty, or ` with non-hex characters` when the length was right.
        hint: &'static str,
    },

    /// A JWK member (`n`, `e`) is not base64url.
    #[error(
        "HCL runtime data key \"{kid}\" member \"{member}\" is not base64url; the report is corrupt"
    )]
    KeyEncoding {
        /// kid of the key.
        kid: String,
        /// JWK member name.
        member: &'static str,
    },

    /// REPORT_DATA does not start with the hash of the runtime data.
    #[error(
        "HCL runtime data is not bound to the hardware report: REPORT_DATA[0..{len}] is {} \
         but {hash}(runtime data) is {}; the runtime data was changed or belongs to \
         another report, do not trust it",
        hex::encode(found),
        hex::encode(expected)
    )]
    BindingMismatch {
        /// Hash algorithm name (`SHA-256`, ...).
        hash: &'static str,
        /// Digest length in bytes.
        len: usize,
        /// Digest of the runtime data as stored.
        expected: Vec<u8>,
        /// The REPORT_DATA prefix.
        found: Vec<u8>,
    },

    /// REPORT_DATA bytes after the digest are not zero.
    #[error(
        "HCL REPORT_DATA[{offset}..64] must be zero after the {hash} digest, found {}; the \
         report was not produced by the HCL for this runtime data, do not trust it",
        hex::encode(found)
    )]
    BindingTailNotZero {
        /// Hash algorithm name.
        hash: &'static str,
        /// First byte that must be zero.
        offset: usize,
        /// The non-zero tail.
        found: Vec<u8>,
    },
}

impl ErrorCode for HclError {
    fn code(&self) -> &'static str {
        match self {
            Self::Truncated { .. } => "hcl-truncated",
            Self::BadMagic { .. } => "hcl-bad-magic",
            Self::UnsupportedVersion { .. } => "hcl-version-unsupported",
            Self::UnsupportedIgvmVersion { .. } => "hcl-igvm-version-unsupported",
            Self::TdxUnsupported => "hcl-tdx-unsupported",
            Self::TvmUnsupported => "hcl-tvm-unsupported",
            Self::UnknownReportType { .. } => "hcl-report-type-unknown",
            Self::UnknownHashType { .. } => "hcl-hash-type-unknown",
            Self::DataSizeMismatch { .. } => "hcl-data-size-mismatch",
            Self::ReportSizeMismatch { .. } => "hcl-report-size-mismatch",
            Self::VariableDataTooLarge { .. } => "hcl-variable-data-too-large",
            Self::RuntimeDataJson { .. } => "hcl-runtime-data-json",
            Self::RuntimeDataField { .. } => "hcl-runtime-data-field",
            Self::UserDataInvalid { .. } => "hcl-user-data-invalid",
            Self::KeyEncoding { .. } => "hcl-key-encoding",
            Self::BindingMismatch { .. } => "hcl-runtime-data-not-bound",
            Self::BindingTailNotZero { .. } => "hcl-report-data-tail-nonzero",
        }
    }
}
