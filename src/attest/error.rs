//! [`FlowError`]: every way an attestation + release run can fail, each mapped to a stable
//! code (`docs/errors-attest.md`, `docs/errors-release.md`). Lower layers' errors keep their
//! own codes (transparent variants); the variants defined here are the protocol-level refusals.

use crate::attest::binding::BindingError;
use crate::attest::collect::CollectError;
use crate::crypto::maa_token::MaaTokenError;
use crate::crypto::CryptoError;
use crate::error::ErrorCode;
use crate::evidence::VtpmError;
use crate::format::jose::release::ReleaseError;
use crate::format::maa::MaaFormatError;
use crate::net::NetError;

/// An Azure error answer: status, `error.code`, `error.message`, request id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AzureError {
    /// HTTP status.
    pub status: u16,
    /// `error.code` (or `x-ms-error-code`), "(none)" when absent.
    pub code: String,
    /// `error.message`, or the start of the body.
    pub message: String,
    /// `x-ms-request-id` (Key Vault) or `x-ms-maa-request-id`/`x-ms-request-id` (MAA).
    pub request_id: Option<String>,
}

impl AzureError {
    /// Reads an error answer (`{"error": {"code", "message"}}`, any other body tolerated).
    pub fn from_response(status: u16, headers: &[(String, String)], body: &[u8]) -> Self {
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        let json: Option<serde_json::Value> = serde_json::from_slice(body).ok();
        let err = json.as_ref().and_then(|j| j.get("error"));
        let code = err
            .and_then(|e| e.get("code"))
            .and_then(|c| c.as_str())
            .map(str::to_string)
            .or_else(|| header("x-ms-error-code"))
            .unwrap_or_else(|| "(none)".to_string());
        let message = err
            .and_then(|e| e.get("message"))
            .and_then(|m| m.as_str())
            .map(str::to_string)
            .unwrap_or_else(|| {
                let text = String::from_utf8_lossy(body);
                text.chars().take(200).collect()
            });
        Self {
            status,
            code,
            message,
            request_id: header("x-ms-request-id").or_else(|| header("x-ms-maa-request-id")),
        }
    }
}

impl std::fmt::Display for AzureError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP {} {}: {}", self.status, self.code, self.message)?;
        if let Some(id) = &self.request_id {
            write!(f, " (request id {id})")?;
        }
        Ok(())
    }
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    /// The configuration lacks what the flow needs.
    #[error("cannot attest: {what}; set it in the configuration (see skrd.toml(5))")]
    NotConfigured {
        /// What is missing.
        what: &'static str,
    },
    /// Evidence collection failed.
    #[error(transparent)]
    Collect(#[from] CollectError),
    /// A network call failed (after its retries).
    #[error(transparent)]
    Net(#[from] NetError),
    /// A request could not be built or a response could not be read.
    #[error(transparent)]
    Format(#[from] MaaFormatError),
    /// The attestation provider refused the evidence.
    #[error("the attestation provider refused the evidence: {azure}; check the VM's evidence with `skrctl evidence verify` and the provider's policy")]
    AttestRefused {
        /// The answer.
        azure: Box<AzureError>,
    },
    /// A TPM operation after collection failed (inner key or key decryption).
    #[error(transparent)]
    Tpm(#[from] VtpmError),
    /// The encrypted token does not decrypt.
    #[error(transparent)]
    TokenDecrypt(#[from] MaaTokenError),
    /// The token does not verify (signature, issuer, lifetime, required claims).
    #[error("the attestation token does not verify: {message}")]
    TokenInvalid {
        /// The verifier's code.
        code: &'static str,
        /// The verifier's message.
        message: String,
    },
    /// The provider's signing keys could not be obtained (outage, bad metadata).
    #[error("cannot get the attestation provider's signing keys: {message}")]
    ProviderKeys {
        /// The trust layer's code.
        code: &'static str,
        /// Its message.
        message: String,
    },
    /// The token is not about this attestation.
    #[error(transparent)]
    Binding(#[from] BindingError),
    /// The managed-identity token could not be obtained.
    #[error("cannot get a managed-identity token for {resource}: {message}")]
    Identity {
        /// The audience.
        resource: String,
        /// The identity layer's code.
        code: &'static str,
        /// The identity layer's message.
        message: String,
    },
    /// The VCEK chain could not be obtained from THIM.
    #[error("cannot get the VCEK certificate chain from IMDS THIM: {message}")]
    Thim {
        /// The identity layer's code.
        code: &'static str,
        /// Its message.
        message: String,
    },
    /// Key Vault / Managed HSM refused the release.
    #[error("{}", release_refused_message(.key, .azure, .unmet))]
    ReleaseRefused {
        /// The key URL.
        key: String,
        /// The answer.
        azure: Box<AzureError>,
        /// The release policy's unmet conditions, when known.
        unmet: Vec<String>,
    },
    /// The release response does not verify.
    #[error(transparent)]
    ReleaseResponse(#[from] ReleaseError),
    /// No trust root for the release response.
    #[error("no trust root for the key release response: {reason}; install the system CA bundle or set trust.ca_files")]
    RootsUnusable {
        /// Why.
        reason: String,
    },
    /// Unwrap or key-material decoding failed.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// A blocking task died.
    #[error("the {what} task stopped unexpectedly; this is a bug in skrd")]
    TaskFailed {
        /// Which task.
        what: &'static str,
    },
}

fn release_refused_message(key: &str, azure: &AzureError, unmet: &[String]) -> String {
    let advice = match azure.status {
        401 => "the managed-identity token was refused; check the identity and the key's audience",
        403 if !unmet.is_empty() => "the attestation does not satisfy the key's release policy",
        403 => "the identity lacks the keys/release permission, or the attestation does not satisfy the key's release policy; check it with `skrctl policy check --key-url`",
        404 => "the key (or version) does not exist; check the key URL",
        429 => "the vault kept throttling; retry later",
        _ => "see the vault's message",
    };
    let mut s = format!("Key Vault refused the release of {key}: {azure}; {advice}");
    // Listed once: when the vault's own message names them, they are not repeated.
    if !unmet.is_empty() && !azure.message.contains("unmet conditions: ") {
        s.push_str("; unmet conditions: ");
        s.push_str(&unmet.join("; "));
    }
    s
}

impl ErrorCode for FlowError {
    fn code(&self) -> &'static str {
        match self {
            Self::NotConfigured { .. } => "attest-not-configured",
            Self::Collect(CollectError::Evidence(e)) => e.code(),
            Self::Collect(CollectError::Crypto(e)) => e.code(),
            Self::Net(e) => e.code(),
            Self::Format(e) => e.code(),
            Self::AttestRefused { .. } => "attest-refused",
            Self::Tpm(e) => e.code(),
            Self::TokenDecrypt(e) => e.code(),
            Self::TokenInvalid { code, .. } => code,
            Self::ProviderKeys { code, .. } => code,
            Self::Binding(e) => e.code(),
            Self::Identity { code, .. } => code,
            Self::Thim { code, .. } => code,
            Self::ReleaseRefused { azure, .. } => match azure.status {
                401 => "release-unauthorized",
                403 => "release-forbidden",
                404 => "release-key-not-found",
                _ => "release-refused",
            },
            Self::ReleaseResponse(e) => e.code(),
            Self::RootsUnusable { .. } => "release-roots-unusable",
            Self::Crypto(e) => e.code(),
            Self::TaskFailed { .. } => "internal-task-failed",
        }
    }
}

impl FlowError {
    /// Whether the failure is a refusal by a service after a complete check (policy denial,
    /// refused evidence, token not ours) rather than an unusable setup or an outage: skrctl
    /// exits 1 for these, 2 otherwise.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            Self::AttestRefused { .. }
                | Self::ReleaseRefused { .. }
                | Self::Binding(_)
                | Self::TokenInvalid { .. }
                | Self::ReleaseResponse(_)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn azure_error_bodies() {
        // Key Vault's 401 body and headers (PROTOCOLS.md §6.7).
        let e = AzureError::from_response(
            401,
            &[("x-ms-request-id".into(), "abc".into())],
            br#"{"error":{"code":"Unauthorized","message":"AKV10000: Request is missing a Bearer or PoP token."}}"#,
        );
        assert_eq!(e.code, "Unauthorized");
        assert_eq!(e.request_id.as_deref(), Some("abc"));
        assert!(e.to_string().contains("AKV10000"));
        let e = AzureError::from_response(502, &[], b"<html>bad gateway</html>");
        assert_eq!(e.code, "(none)");
        assert_eq!(e.message, "<html>bad gateway</html>");
        let f = FlowError::ReleaseRefused {
            key: "https://v/keys/k".into(),
            azure: Box::new(AzureError::from_response(403, &[], b"{}")),
            unmet: vec!["x-ms-attestation-type".into()],
        };
        assert_eq!(f.code(), "release-forbidden");
        assert!(f
            .to_string()
            .contains("unmet conditions: x-ms-attestation-type"));
        assert!(f.is_refusal());
        // Conditions the vault's message already lists are not repeated.
        let listed = "policy not met; unmet conditions: x-ms-attestation-type at anyOf[0]";
        let f = FlowError::ReleaseRefused {
            key: "https://v/keys/k".into(),
            azure: Box::new(AzureError::from_response(
                403,
                &[],
                format!(r#"{{"error":{{"code":"Forbidden","message":"{listed}"}}}}"#).as_bytes(),
            )),
            unmet: vec!["x-ms-attestation-type at anyOf[0]".into()],
        };
        assert_eq!(
            f.to_string().matches("unmet conditions: ").count(),
            1,
            "{f}"
        );
    }
}
