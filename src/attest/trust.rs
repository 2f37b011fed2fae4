//! The attestation provider's signing keys and the verification of its tokens (PROTOCOLS.md
//! §5.1 discovery, §5.5 validation).
//!
//! `{provider}/.well-known/openid-configuration` → `jwks_uri` (must be on the provider's own
//! origin) → JWKS, cached; a token whose `kid` is not in the cached set triggers one refetch, at
//! most once per [`REFETCH_INTERVAL`]. Verification itself is the library's offline check
//! ([`crate::format::jose::jwt::verify_jwt`]: RS256, `iss` = provider tolerant of a trailing '/',
//! `exp`/`nbf`/`iat` with [`TOKEN_SKEW_S`] at an injected time, `x-ms-ver`), followed by
//! [`check_required_claims`]: the claims skrd relies on. The pure parts
//! ([`parse_openid_config`], [`check_required_claims`]) do no I/O.

use std::time::{Duration, Instant};

use serde_json::Value;
use url::Url;

use crate::error::ErrorCode;
use crate::format::jose::jwk::KeySet;
use crate::format::jose::jwt::{decode_unverified, normalise_issuer, verify_jwt, Validation};
use crate::format::jose::JoseError;
use crate::net::{Deadline, HttpClient, HttpRequest, NetError, Step};

pub use crate::format::jose::jwt::VerifiedToken;

/// Clock-skew allowance for `exp`/`nbf`/`iat` of attestation tokens: the library's one
/// allowance (5 minutes; why: its documentation), the same as `skrctl token verify`'s default.
pub use crate::format::jose::jwt::TOKEN_SKEW_S;
/// Minimum time between two refetches of the JWKS caused by an unknown `kid`.
pub const REFETCH_INTERVAL: Duration = Duration::from_secs(60);
/// Largest OpenID metadata document accepted.
pub const MAX_OPENID_CONFIG: usize = 64 * 1024;

/// A provider-key or token-verification error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TrustError {
    /// The HTTP exchange failed.
    #[error(transparent)]
    Net(#[from] NetError),

    /// The OpenID metadata or JWKS request answered a status other than 200.
    #[error(
        "{step} {url} answered HTTP {status}; check attestation.provider (the attestation \
         provider's base URL)"
    )]
    FetchStatus {
        /// Which document.
        step: Step,
        /// Its URL.
        url: String,
        /// The status.
        status: u16,
    },

    /// The OpenID metadata is not usable.
    #[error(
        "the attestation provider's OpenID metadata is unusable: {reason}; check \
         attestation.provider"
    )]
    OpenIdInvalid {
        /// What is wrong.
        reason: String,
    },

    /// `jwks_uri` points outside the provider's origin.
    #[error(
        "the attestation provider's jwks_uri {found} is not on its own origin {expected}; \
         refusing keys from elsewhere"
    )]
    JwksUriForeign {
        /// The provider origin.
        expected: String,
        /// The jwks_uri.
        found: String,
    },

    /// The JWKS does not parse.
    #[error("the attestation provider's key set is unusable: {0}")]
    Jwks(JoseError),

    /// The token was refused (signature, issuer, lifetime, structure, required claims).
    #[error("{0}")]
    Token(JoseError),
}

impl ErrorCode for TrustError {
    fn code(&self) -> &'static str {
        match self {
            Self::Net(e) => e.code(),
            Self::FetchStatus { .. } => "attest-keys-fetch-status",
            Self::OpenIdInvalid { .. } => "attest-openid-config-invalid",
            Self::JwksUriForeign { .. } => "attest-jwks-uri-foreign",
            Self::Jwks(e) | Self::Token(e) => e.code(),
        }
    }
}

/// The OpenID metadata URL of a provider.
pub fn openid_config_url(provider: &Url) -> Url {
    let mut url = provider.clone();
    url.set_path("/.well-known/openid-configuration");
    url.set_query(None);
    url
}

/// PURE: the `jwks_uri` of an OpenID metadata document, checked to be on the provider's origin
/// (scheme, host, port); `issuer`, when present, must equal the provider (trailing '/' ignored).
pub fn parse_openid_config(body: &[u8], provider: &Url) -> Result<Url, TrustError> {
    let invalid = |reason: String| TrustError::OpenIdInvalid { reason };
    if body.len() > MAX_OPENID_CONFIG {
        return Err(invalid(format!(
            "{} bytes, more than {MAX_OPENID_CONFIG}",
            body.len()
        )));
    }
    let v: Value = serde_json::from_slice(body).map_err(|e| invalid(format!("not JSON ({e})")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| invalid("not a JSON object".to_string()))?;
    if let Some(issuer) = obj.get("issuer") {
        let issuer = issuer
            .as_str()
            .ok_or_else(|| invalid("issuer is not a string".to_string()))?;
        let want = normalise_issuer(provider.as_str());
        if normalise_issuer(issuer) != want {
            return Err(invalid(format!("issuer is {issuer}, expected {want}")));
        }
    }
    let uri = match obj.get("jwks_uri") {
        Some(Value::String(s)) => s,
        Some(_) => return Err(invalid("jwks_uri is not a string".to_string())),
        None => return Err(invalid("jwks_uri is missing".to_string())),
    };
    let url = Url::parse(uri).map_err(|e| invalid(format!("jwks_uri {uri:?}: {e}")))?;
    if url.origin() != provider.origin() {
        return Err(TrustError::JwksUriForeign {
            expected: provider.origin().ascii_serialization(),
            found: url.to_string(),
        });
    }
    Ok(url)
}

/// PURE: the claims skrd relies on, after the signature and lifetime checks: the attestation
/// type, and the SEV-SNP facts (under `x-ms-isolation-tee` for AzureGuest tokens, top-level for
/// SevSnpVm tokens) with their documented types. The transfer key (`x-ms-runtime`) is checked
/// where it is used ([`VerifiedToken::runtime_keys`]).
pub fn check_required_claims(token: &VerifiedToken) -> Result<(), JoseError> {
    token.attestation_type()?;
    token.sevsnp()?;
    Ok(())
}

struct Cached {
    keys: KeySet,
    fetched: Instant,
}

/// The provider's signing keys, cached, and token verification against them.
pub struct ProviderKeys {
    http: HttpClient,
    provider: Url,
    skew_s: i64,
    cache: tokio::sync::Mutex<Option<Cached>>,
    last_refetch: std::sync::Mutex<Option<Instant>>,
}

impl std::fmt::Debug for ProviderKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderKeys")
            .field("provider", &self.provider.as_str())
            .finish_non_exhaustive()
    }
}

impl ProviderKeys {
    /// Keys of `provider` (attestation.provider), fetched on first use.
    pub fn new(http: HttpClient, provider: Url) -> Self {
        Self {
            http,
            provider,
            skew_s: TOKEN_SKEW_S,
            cache: tokio::sync::Mutex::new(None),
            last_refetch: std::sync::Mutex::new(None),
        }
    }

    /// Keys given up front (tests, offline use): no fetch until a `kid` is unknown.
    pub fn with_keys(http: HttpClient, provider: Url, keys: KeySet) -> Self {
        let mut me = Self::new(http, provider);
        me.cache = tokio::sync::Mutex::new(Some(Cached {
            keys,
            fetched: Instant::now(),
        }));
        me
    }

    /// The provider URL.
    pub fn provider(&self) -> &Url {
        &self.provider
    }

    /// GET `url` for `step`; the body of a 200 answer.
    async fn get_document(
        &self,
        step: Step,
        url: Url,
        deadline: &Deadline,
    ) -> Result<Vec<u8>, TrustError> {
        let resp = self
            .http
            .send(HttpRequest::get(step, url.clone()), deadline)
            .await?;
        if resp.status != 200 {
            return Err(TrustError::FetchStatus {
                step,
                url: url.to_string(),
                status: resp.status,
            });
        }
        Ok(resp.body)
    }

    /// Fetches the OpenID metadata, then the JWKS it names.
    pub async fn fetch_keys(&self, deadline: &Deadline) -> Result<KeySet, TrustError> {
        let meta = self
            .get_document(
                Step::OpenIdConfig,
                openid_config_url(&self.provider),
                deadline,
            )
            .await?;
        let jwks_url = parse_openid_config(&meta, &self.provider)?;
        let jwks = self.get_document(Step::Jwks, jwks_url, deadline).await?;
        KeySet::from_bytes(&jwks).map_err(TrustError::Jwks)
    }

    /// Fetches the keys into `cache`.
    async fn fill(
        &self,
        cache: &mut Option<Cached>,
        deadline: &Deadline,
    ) -> Result<KeySet, TrustError> {
        let keys = self.fetch_keys(deadline).await?;
        *cache = Some(Cached {
            keys: keys.clone(),
            fetched: Instant::now(),
        });
        Ok(keys)
    }

    /// The cached keys, fetching them when there are none yet.
    pub async fn keys(&self, deadline: &Deadline) -> Result<KeySet, TrustError> {
        let mut cache = self.cache.lock().await;
        if let Some(c) = cache.as_ref() {
            return Ok(c.keys.clone());
        }
        self.fill(&mut cache, deadline).await
    }

    /// Refetches the keys because `kid` is unknown, unless a refetch happened less than
    /// [`REFETCH_INTERVAL`] ago. Returns the (possibly unchanged) keys.
    async fn refetch_for(&self, kid: &str, deadline: &Deadline) -> Result<KeySet, TrustError> {
        let mut cache = self.cache.lock().await;
        let allowed = {
            let mut last = self
                .last_refetch
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let ok = last.is_none_or(|t| t.elapsed() >= REFETCH_INTERVAL);
            if ok {
                *last = Some(Instant::now());
            }
            ok
        };
        if !allowed {
            tracing::debug!(
                kid,
                "unknown kid, but the provider keys were refetched recently"
            );
            return cache
                .as_ref()
                .map(|c| c.keys.clone())
                .ok_or(TrustError::Token(JoseError::KeySetEmpty));
        }
        tracing::debug!(kid, "unknown kid: refetching the provider keys");
        self.fill(&mut cache, deadline).await
    }

    /// When the cached keys were fetched (None before the first fetch).
    pub async fn fetched_at(&self) -> Option<Instant> {
        self.cache.lock().await.as_ref().map(|c| c.fetched)
    }

    /// Verifies an attestation token at `now` (Unix seconds): signature by a provider key
    /// (refetching once on an unknown `kid`), issuer = the provider, lifetime with
    /// [`TOKEN_SKEW_S`], `x-ms-ver`, and [`check_required_claims`].
    pub async fn verify_token(
        &self,
        jwt: &str,
        now: i64,
        deadline: &Deadline,
    ) -> Result<VerifiedToken, TrustError> {
        let token = jwt.trim().as_bytes();
        let (header, _) = decode_unverified(token).map_err(TrustError::Token)?;
        let mut keys = self.keys(deadline).await?;
        if let Some(kid) = header.kid.as_deref() {
            if let Err(JoseError::UnknownKid { .. }) = keys.select(Some(kid)) {
                keys = self.refetch_for(kid, deadline).await?;
            }
        }
        let mut validation = Validation::maa(self.provider.as_str(), now);
        validation.skew_s = self.skew_s;
        let verified = verify_jwt(token, &keys, &validation).map_err(TrustError::Token)?;
        check_required_claims(&verified).map_err(TrustError::Token)?;
        Ok(verified)
    }
}

/// Fuzz entry point: the OpenID metadata parser on arbitrary bytes. Never panics.
pub fn fuzz_openid_config(data: &[u8]) {
    if let Ok(provider) = Url::parse("https://sharedeus2.eus2.attest.azure.net") {
        let _ = parse_openid_config(data, &provider);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider() -> Url {
        Url::parse("https://sharedeus2.eus2.attest.azure.net").unwrap()
    }

    #[test]
    fn openid_config_real_shape() {
        // Member names and values as MAA publishes them (PROTOCOLS.md §5.1).
        let doc = br#"{"jwks_uri":"https://sharedeus2.eus2.attest.azure.net/certs",
            "issuer":"https://sharedeus2.eus2.attest.azure.net",
            "response_types_supported":["token","none"],
            "id_token_signing_alg_values_supported":["RS256"],
            "revocation_endpoint":"https://sharedeus2.eus2.attest.azure.net/revocations",
            "claims_supported":["not_before"]}"#;
        let url = parse_openid_config(doc, &provider()).unwrap();
        assert_eq!(
            url.as_str(),
            "https://sharedeus2.eus2.attest.azure.net/certs"
        );
        // Trailing slash on either side is tolerated.
        let doc = br#"{"jwks_uri":"https://sharedeus2.eus2.attest.azure.net/certs",
            "issuer":"https://sharedeus2.eus2.attest.azure.net/"}"#;
        assert!(parse_openid_config(doc, &provider()).is_ok());
    }

    #[test]
    fn openid_config_refusals() {
        for (doc, code) in [
            (&br#"{"jwks_uri":"https://evil.example/certs"}"#[..], "attest-jwks-uri-foreign"),
            (br#"{"jwks_uri":"http://sharedeus2.eus2.attest.azure.net/certs"}"#, "attest-jwks-uri-foreign"),
            (br#"{"jwks_uri":"https://sharedeus2.eus2.attest.azure.net:8443/certs"}"#, "attest-jwks-uri-foreign"),
            (br#"{"issuer":"https://other.attest.azure.net","jwks_uri":"https://sharedeus2.eus2.attest.azure.net/certs"}"#, "attest-openid-config-invalid"),
            (br#"{"issuer":"https://sharedeus2.eus2.attest.azure.net"}"#, "attest-openid-config-invalid"),
            (br#"{"jwks_uri":5}"#, "attest-openid-config-invalid"),
            (br#"{"jwks_uri":"not a url"}"#, "attest-openid-config-invalid"),
            (b"[]", "attest-openid-config-invalid"),
            (b"\xff\xfe", "attest-openid-config-invalid"),
        ] {
            let e = parse_openid_config(doc, &provider()).unwrap_err();
            assert_eq!(e.code(), code, "{}", String::from_utf8_lossy(doc));
        }
    }
}
