//! Errors of the TPM structure parsers and of the signature check (PROTOCOLS.md §4.5, §4.6);
//! codes are listed in `docs/errors-tpm.md`.

use crate::error::ErrorCode;

/// Everything that can be wrong with a TPM structure or its signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TpmError {
    /// The buffer ends inside a field.
    #[error(
        "{structure} is truncated: field {field} at offset {offset} needs {needed} bytes but only \
         {found} are left; send the whole marshalled structure"
    )]
    Truncated {
        /// The structure being parsed.
        structure: &'static str,
        /// The field cut off.
        field: &'static str,
        /// Its offset.
        offset: usize,
        /// Bytes it needs.
        needed: usize,
        /// Bytes left.
        found: usize,
    },
    /// Bytes follow the structure.
    #[error("{structure} has {extra} unexpected bytes after its end; send exactly one marshalled structure")]
    TrailingBytes {
        /// The structure.
        structure: &'static str,
        /// How many bytes follow it.
        extra: usize,
    },
    /// `TPMS_ATTEST.magic` is not TPM_GENERATED_VALUE.
    #[error("TPMS_ATTEST magic is {found:#010x}, expected 0xff544347 (TPM_GENERATED_VALUE); the blob was not produced by a TPM")]
    BadMagic {
        /// The magic found.
        found: u32,
    },
    /// `TPMS_ATTEST.type` is not the expected attestation type.
    #[error("TPMS_ATTEST type is {found:#06x}, expected {expected:#06x} ({name}); send the attestation of the right TPM command")]
    WrongAttestType {
        /// The expected TPMI_ST_ATTEST.
        expected: u16,
        /// Its name.
        name: &'static str,
        /// The type found.
        found: u16,
    },
    /// A size field disagrees with the data.
    #[error("{structure}: {field} says {declared} bytes but {actual} are present")]
    SizeMismatch {
        /// The structure.
        structure: &'static str,
        /// The size field.
        field: &'static str,
        /// The declared size.
        declared: usize,
        /// The real size.
        actual: usize,
    },
    /// An algorithm this parser does not handle.
    #[error("{field}: algorithm {alg:#06x} is not supported here (supported: {supported})")]
    UnsupportedAlgorithm {
        /// Where the algorithm was found.
        field: &'static str,
        /// The TPM_ALG_ID.
        alg: u16,
        /// What is supported.
        supported: &'static str,
    },
    /// The RSA public key is unusable.
    #[error("the RSA public key ({bits} bits, exponent {exponent}) is not usable: {reason}")]
    KeyInvalid {
        /// Modulus size in bits.
        bits: usize,
        /// The exponent.
        exponent: u32,
        /// The library's reason.
        reason: String,
    },
    /// The RSASSA-PKCS1-v1_5 SHA-256 signature does not verify.
    #[error("the RSASSA-SHA256 signature over the {what} ({len} bytes) does not verify with the given key; the blob or the signature was altered or signed by another key")]
    SignatureInvalid {
        /// What was signed.
        what: &'static str,
        /// Length of the signature.
        len: usize,
    },
}

impl ErrorCode for TpmError {
    fn code(&self) -> &'static str {
        match self {
            Self::Truncated { .. } => "tpm-structure-truncated",
            Self::TrailingBytes { .. } => "tpm-structure-trailing-bytes",
            Self::BadMagic { .. } => "tpm-attest-bad-magic",
            Self::WrongAttestType { .. } => "tpm-attest-wrong-type",
            Self::SizeMismatch { .. } => "tpm-structure-size-mismatch",
            Self::UnsupportedAlgorithm { .. } => "tpm-algorithm-unsupported",
            Self::KeyInvalid { .. } => "tpm-key-invalid",
            Self::SignatureInvalid { .. } => "tpm-signature-invalid",
        }
    }
}
