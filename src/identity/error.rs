//! [`IdentityError`]: managed-identity tokens from IMDS (PROTOCOLS.md §2.1), THIM (§2.3) and
//! Key Vault GET key (§6), including the network errors underneath. Codes in
//! `docs/errors-identity.md`.

use crate::error::ErrorCode;
use crate::format::snp::error::SnpError;
use crate::net::NetError;

/// What to do about an IMDS token error code (PROTOCOLS.md §2.1 "Errors").
fn advice(error: &str) -> &'static str {
    match error {
        "invalid_resource" => {
            "the resource (token audience) is unknown to Entra ID; check the key URL's host"
        }
        "bad_request_102" => "the Metadata: true header was not sent (a bug in skrd)",
        "unauthorized_client" => {
            "no managed identity is assigned to this VM: assign one (az vm identity assign) \
             and grant it 'get' and 'release' on the key"
        }
        "invalid_request" => {
            "check identity in the configuration (client_id / object_id / msi_res_id of an \
             identity assigned to this VM)"
        }
        "unknown_source" => "IMDS refused the caller; the request must not go through a proxy",
        "access_denied" => {
            "the identity is not allowed to get this token; check its role assignments"
        }
        _ => "IMDS could not issue the token; retry later, or check the VM's identity in Azure",
    }
}

/// A managed-identity, THIM or key-read error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The HTTP exchange failed (timeouts, retries, TLS, deadline).
    #[error(transparent)]
    Net(#[from] NetError),

    /// The call to the vault itself failed, after the identity token was obtained (kept apart
    /// from [`Self::Net`] so that a vault outage is not reported as an identity problem).
    #[error(transparent)]
    VaultCall(NetError),

    /// IMDS answered 200 with a body that is not a token response.
    #[error(
        "IMDS token response is unusable: {reason}; the endpoint at identity.imds_url is not \
         Azure IMDS or answered garbage"
    )]
    TokenResponseInvalid {
        /// What is wrong.
        reason: String,
    },

    /// `token_type` is not `Bearer`.
    #[error("IMDS token_type is \"{found}\", expected \"Bearer\"; skrd only sends bearer tokens")]
    TokenTypeUnexpected {
        /// The type found.
        found: String,
    },

    /// IMDS refused to issue a token.
    #[error(
        "IMDS refused the managed-identity token: HTTP {status}, error \"{error}\" \
         (\"{description}\"); {}",
        advice(error)
    )]
    ImdsRefused {
        /// HTTP status.
        status: u16,
        /// IMDS `error` member (empty if absent).
        error: String,
        /// IMDS `error_description` member (shown, never branched on).
        description: String,
    },

    /// IMDS kept answering 404/410 (identity subsystem updating) until retries ran out.
    #[error(
        "IMDS answered {status} (\"updating\") {attempts} time(s) for the managed-identity \
         token; IMDS is restarting, retry within a few minutes"
    )]
    ImdsUnavailable {
        /// The last status (404 or 410).
        status: u16,
        /// Calls made.
        attempts: u32,
    },

    /// THIM answered a status other than 200.
    #[error(
        "THIM (IMDS /metadata/THIM/amd/certification) answered HTTP {status}; THIM exists only \
         on Azure SEV-SNP VMs: supply the VCEK chain otherwise"
    )]
    ThimStatus {
        /// HTTP status.
        status: u16,
    },

    /// The THIM document is not usable.
    #[error(transparent)]
    Thim(#[from] SnpError),

    /// Key Vault / Managed HSM answered an error to GET key.
    #[error(
        "GET key {key_url} answered HTTP {status}: {code} ({message}); {}",
        vault_advice(*status)
    )]
    VaultRefused {
        /// The key URL.
        key_url: String,
        /// HTTP status.
        status: u16,
        /// Azure's `error.code` (empty if absent).
        code: String,
        /// Azure's `error.message` (empty if absent).
        message: String,
    },

    /// Key Vault answered 200 with a body that is not a key bundle.
    #[error("GET key {key_url}: the answer is not a key bundle ({reason}); check the key URL")]
    KeyBundleInvalid {
        /// The key URL.
        key_url: String,
        /// What is wrong.
        reason: String,
    },
}

fn vault_advice(status: u16) -> &'static str {
    match status {
        401 => "the identity token was refused: check identity and the vault's tenant",
        403 => "grant the VM's identity the 'get' permission on keys (access policy or RBAC role)",
        404 => "no such key or version: check the key URL",
        _ => "retry later or check the vault's health",
    }
}

impl ErrorCode for IdentityError {
    fn code(&self) -> &'static str {
        match self {
            Self::Net(e) | Self::VaultCall(e) => e.code(),
            Self::Thim(e) => e.code(),
            Self::TokenResponseInvalid { .. } => "identity-token-response-invalid",
            Self::TokenTypeUnexpected { .. } => "identity-token-type-unexpected",
            Self::ImdsRefused { error, .. } => match error.as_str() {
                "invalid_resource" => "identity-invalid-resource",
                "bad_request_102" => "identity-metadata-header-missing",
                "unauthorized_client" => "identity-none-assigned",
                "invalid_request" => "identity-invalid-request",
                "unknown_source" => "identity-unknown-source",
                "access_denied" => "identity-access-denied",
                _ => "identity-imds-refused",
            },
            Self::ImdsUnavailable { .. } => "identity-imds-unavailable",
            Self::ThimStatus { .. } => "thim-status-unexpected",
            Self::VaultRefused { status, .. } => match status {
                401 => "key-get-unauthorized",
                403 => "key-get-forbidden",
                404 => "key-get-not-found",
                _ => "key-get-refused",
            },
            Self::KeyBundleInvalid { .. } => "key-bundle-invalid",
        }
    }
}
