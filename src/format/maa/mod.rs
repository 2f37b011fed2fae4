//! PURE wire formats of Microsoft Azure Attestation as the skrd client speaks them
//! (PROTOCOLS.md §5.2, §5.3) and of the Key Vault release request (§6.1). Bytes in, bytes or
//! typed values out; no I/O, no clock, no randomness.
//!
//! - [`sevsnpvm`]: the `POST /attest/SevSnpVm` body of the raw SNP flow (sidecar shape).
//! - [`azure_guest`]: the `AttestationInfo` of `POST /attest/AzureGuest` and its outer body,
//!   plus the `/etc/os-release` fields it carries.
//! - [`envelope`]: the `{"token": ...}` response bodies: the plain JWT of SevSnpVm and the
//!   encrypted envelope of AzureGuest (`Jwt`, `EncryptedInnerKey`, `EncryptionParams`,
//!   `AuthenticationData`). Decrypting it is `crypto::maa_token` plus the TPM.
//! - [`release`]: the Key Vault / Managed HSM `POST {kid}/release` URL and body.
//!
//! Errors: [`MaaFormatError`], codes in `docs/errors-attest.md`.

pub mod azure_guest;
pub mod envelope;
pub mod release;
pub mod sevsnpvm;

use crate::error::ErrorCode;
use crate::format::hcl::HclError;

/// Why a request could not be built or a response could not be read.
#[derive(Debug, thiserror::Error)]
pub enum MaaFormatError {
    /// A response body is not the JSON object it must be.
    #[error("the {what} is not a JSON object: {reason}; the service answered something else than Azure Attestation (check attestation.provider)")]
    NotJson {
        /// Which document.
        what: &'static str,
        /// The parser's reason or the JSON type found.
        reason: String,
    },
    /// A required member is absent.
    #[error("the attestation response has no member {field}; expected the shape of PROTOCOLS.md §5.3 (check attestation.provider)")]
    FieldMissing {
        /// The member path.
        field: &'static str,
    },
    /// A member has the wrong JSON type.
    #[error("attestation response member {field}: expected {expected}, found {found}")]
    FieldType {
        /// The member path.
        field: &'static str,
        /// The type required.
        expected: &'static str,
        /// The JSON type found.
        found: &'static str,
    },
    /// A member is not valid base64.
    #[error("attestation response member {field} is not valid {flavour}: {reason}")]
    FieldBase64 {
        /// The member path.
        field: &'static str,
        /// The encoding expected.
        flavour: &'static str,
        /// The decoder's reason.
        reason: String,
    },
    /// A decoded member has the wrong length.
    #[error("attestation response member {field} decodes to {found} bytes, expected {expected}")]
    FieldLength {
        /// The member path.
        field: &'static str,
        /// What is accepted.
        expected: &'static str,
        /// The decoded length.
        found: usize,
    },
    /// The envelope announces an encryption skrd does not accept.
    #[error("attestation response {field} is {found}, only {expected} is accepted; the provider encrypted the token in a way skrd (and Microsoft's client) refuses")]
    EncryptionUnsupported {
        /// The parameter.
        field: &'static str,
        /// What is accepted.
        expected: &'static str,
        /// What was announced.
        found: String,
    },
    /// The (decrypted or plain) token is not a compact JWS.
    #[error("the attestation token is not a compact JWS (three base64url segments): {reason}")]
    TokenMalformed {
        /// What is wrong.
        reason: &'static str,
    },
    /// The HCL report read from the vTPM does not parse.
    #[error("cannot build the AzureGuest request from the vTPM's HCL report: {0}")]
    HclReport(#[from] HclError),
    /// The AK certificate read from NV is not DER.
    #[error("the AK certificate from NV 0x01C101D0 is not a DER certificate: {reason}; the vTPM is not provisioned like an Azure CVM")]
    AkCertInvalid {
        /// What is wrong.
        reason: &'static str,
    },
    /// The key URL cannot be turned into a release URL.
    #[error("key URL {url} cannot be released: {reason}; use https://VAULT.vault.azure.net/keys/NAME[/VERSION]")]
    KeyUrlInvalid {
        /// The URL.
        url: String,
        /// What is wrong.
        reason: &'static str,
    },
}

impl ErrorCode for MaaFormatError {
    fn code(&self) -> &'static str {
        match self {
            Self::NotJson { .. } => "attest-response-not-json",
            Self::FieldMissing { .. } => "attest-response-field-missing",
            Self::FieldType { .. } => "attest-response-field-type",
            Self::FieldBase64 { .. } => "attest-response-base64-invalid",
            Self::FieldLength { .. } => "attest-response-field-length",
            Self::EncryptionUnsupported { .. } => "attest-encryption-unsupported",
            Self::TokenMalformed { .. } => "attest-token-malformed",
            Self::HclReport(e) => e.code(),
            Self::AkCertInvalid { .. } => "attest-ak-cert-invalid",
            Self::KeyUrlInvalid { .. } => "release-key-url-invalid",
        }
    }
}
