//! [`Services`]: the network-facing collaborators of a run, built once from the configuration
//! and shared by every key of the run: the HTTP client (`net`), the managed-identity token cache
//! and the THIM fetch (`identity`), and the provider's signing keys with token verification
//! (`attest::trust`). This file only adapts their errors and types to the flow's
//! ([`FlowError`]); it implements no protocol itself.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use url::Url;

use super::error::FlowError;
use super::trust::{ProviderKeys, TrustError};
use crate::config::values::KeyUrl;
use crate::config::Settings;
use crate::error::ErrorCode;
use crate::format::snp::thim::ThimCerts;
use crate::identity::{fetch_vcek_chain, get_key, send_with_identity, TokenCache};
use crate::net::{Deadline, HttpClient, HttpRequest, HttpResponse, NetSettings};
use crate::secret::Secret;

/// A verified token's essentials.
#[derive(Debug, Clone)]
pub struct TokenInfo {
    /// All claims.
    pub claims: serde_json::Value,
    /// `iss`.
    pub issuer: String,
    /// `exp`.
    pub expires_at: i64,
}

/// The network collaborators of a run.
pub struct Services {
    /// The HTTP client (connection reuse across the run; per-step timings).
    pub http: HttpClient,
    /// The attestation provider base URL.
    pub provider: Url,
    /// api-version of the attest calls.
    pub attest_api_version: String,
    /// IMDS base URL.
    pub imds_url: Url,
    /// Extra trust roots (`trust.ca_files`), also for the release JWS.
    pub ca_files: Vec<PathBuf>,
    tokens: TokenCache,
    keys: ProviderKeys,
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services")
            .field("provider", &self.provider.as_str())
            .field("imds_url", &self.imds_url.as_str())
            .finish_non_exhaustive()
    }
}

/// A token that does not verify is a refusal; not reaching the keys is not.
fn trust_error(e: TrustError) -> FlowError {
    match e {
        TrustError::Token(_) => FlowError::TokenInvalid {
            code: e.code(),
            message: e.to_string(),
        },
        other => FlowError::ProviderKeys {
            code: other.code(),
            message: other.to_string(),
        },
    }
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// PEM text of the VCEK followed by its chain (the `VcekCertChain` MAA wants).
pub fn chain_pem(certs: &ThimCerts) -> Vec<u8> {
    let mut out = String::new();
    for c in certs.all_certs() {
        out.push_str(&pem_block(c.der()));
    }
    out.into_bytes()
}

fn pem_block(der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut s = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        s.push_str(&String::from_utf8_lossy(chunk));
        s.push('\n');
    }
    s.push_str("-----END CERTIFICATE-----\n");
    s
}

impl Services {
    /// Builds the collaborators from a validated configuration.
    ///
    /// Errors: no `[attestation] provider`; an unusable `trust.ca_files` entry.
    pub fn from_settings(settings: &Settings) -> Result<Self, FlowError> {
        let att = settings
            .attestation
            .as_ref()
            .ok_or(FlowError::NotConfigured {
                what: "no attestation provider ([attestation] provider)",
            })?;
        let http = HttpClient::new(&NetSettings::from_config(settings))?;
        Ok(Self {
            tokens: TokenCache::new(http.clone(), &settings.identity),
            keys: ProviderKeys::new(http.clone(), att.provider.clone()),
            http,
            provider: att.provider.clone(),
            attest_api_version: att.api_version.clone(),
            imds_url: settings.identity.imds_url.clone(),
            ca_files: settings.trust.ca_files.clone(),
        })
    }

    /// The managed-identity bearer for `resource` (cached per resource).
    pub async fn identity_token(
        &self,
        resource: &str,
        deadline: &Deadline,
    ) -> Result<Secret, FlowError> {
        let t = self
            .tokens
            .token(resource, deadline)
            .await
            .map_err(|e| FlowError::Identity {
                resource: resource.to_string(),
                code: e.code(),
                message: e.to_string(),
            })?;
        Ok(t.bearer())
    }

    /// Sends a vault request with the identity's bearer for `key` (the cached token; one
    /// challenge retry on hosts that are not Azure's, see `identity::vault`).
    pub async fn send_to_vault(
        &self,
        key: &KeyUrl,
        make: impl Fn() -> HttpRequest,
        deadline: &Deadline,
    ) -> Result<HttpResponse, FlowError> {
        send_with_identity(&self.http, &self.tokens, key, make, deadline)
            .await
            .map(|(resp, _)| resp)
            .map_err(|e| match e {
                // The vault call itself: a network problem of the release, not of the identity.
                crate::identity::IdentityError::VaultCall(net) => FlowError::Net(net),
                e => FlowError::Identity {
                    resource: key.token_resource.to_string(),
                    code: e.code(),
                    message: e.to_string(),
                },
            })
    }

    /// The unmet conditions of `key`'s release policy for `claims`, read from the vault (GET
    /// key) and evaluated locally; `None` when the policy cannot be read (best effort: this only
    /// explains a refusal).
    pub async fn explain_refusal(
        &self,
        key: &KeyUrl,
        api_version: &str,
        claims: &serde_json::Value,
        deadline: &Deadline,
    ) -> Option<Vec<String>> {
        let bundle = get_key(&self.http, &self.tokens, key, api_version, deadline)
            .await
            .ok()?;
        let loaded = crate::format::akv::policy::load_document(&bundle.body).ok()?;
        let eval = loaded.policy.evaluate(claims);
        Some(eval.unmet.iter().map(ToString::to_string).collect())
    }

    /// The VCEK chain from IMDS THIM, as PEM text.
    pub async fn vcek_chain_pem(&self, deadline: &Deadline) -> Result<Vec<u8>, FlowError> {
        let (certs, _) = fetch_vcek_chain(&self.http, &self.imds_url, deadline)
            .await
            .map_err(|e| FlowError::Thim {
                code: e.code(),
                message: e.to_string(),
            })?;
        Ok(chain_pem(&certs))
    }

    /// Fetches the provider's signing keys into the cache (so verification needs no call).
    pub async fn prefetch_provider_keys(&self, deadline: &Deadline) -> Result<(), FlowError> {
        self.keys
            .keys(deadline)
            .await
            .map(|_| ())
            .map_err(trust_error)
    }

    /// Verifies a token with the provider's keys (signature, issuer, lifetime, claims).
    pub async fn verify_token(
        &self,
        jwt: &str,
        deadline: &Deadline,
    ) -> Result<TokenInfo, FlowError> {
        let v = self
            .keys
            .verify_token(jwt, now_unix(), deadline)
            .await
            .map_err(trust_error)?;
        Ok(TokenInfo {
            claims: v.claims,
            issuer: v.issuer,
            expires_at: v.expires_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::snp::thim::parse_thim_document;

    /// A real THIM-shaped document (the confidential sidecar's host AMD certificate JSON).
    const THIM: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/real/confidential-sidecar-containers/uvm_host_amd_certificate.json"
    ));

    #[test]
    fn chain_pem_is_the_vcek_then_its_chain_as_pem() {
        let certs = parse_thim_document(THIM).unwrap();
        let pem = String::from_utf8(chain_pem(&certs)).unwrap();
        assert_eq!(
            pem.matches("-----BEGIN CERTIFICATE-----").count(),
            1 + certs.chain.len()
        );
        // Every block decodes back to a certificate.
        let (parsed, skipped) =
            crate::format::jose::x5c::ChainCert::load_pem_bundle(pem.as_bytes());
        assert_eq!(skipped, 0);
        assert_eq!(parsed.len(), 1 + certs.chain.len());
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----\n"));
        assert!(pem.lines().all(|l| l.len() <= 64));
    }
}
