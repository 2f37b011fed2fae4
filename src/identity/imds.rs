//! Managed-identity access tokens from IMDS (PROTOCOLS.md §2.1) and their cache: one token per
//! resource, reused until five minutes before `expires_on` (injectable clock). I/O edge: the
//! response parsing is in [`super::token`].
//!
//! IMDS's own retry guidance adds 404 and 410 ("updating") to the statuses the network layer
//! retries; those are retried here with the same back-off, within the same deadline.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rand_core::{OsRng, RngCore};
use url::Url;

use super::error::IdentityError;
use super::token::{parse_token_error, parse_token_response};
use crate::config::settings::{Identity, IdentitySettings};
use crate::net::retry::{backoff_ceiling, full_jitter};
use crate::net::{Deadline, HttpClient, HttpRequest, NetError, Step};
use crate::secret::Secret;

/// The token endpoint path.
pub const TOKEN_PATH: &str = "/metadata/identity/oauth2/token";
/// The api-version sent (the one both reference clients use).
pub const TOKEN_API_VERSION: &str = "2018-02-01";
/// A cached token is renewed this long before it expires.
pub const RENEW_BEFORE_S: i64 = 300;

/// A managed-identity access token for one resource.
#[derive(Debug)]
pub struct AccessToken {
    /// The resource (audience) it was requested for, without a trailing '/'.
    pub resource: String,
    /// Expiry, Unix seconds (`expires_on`).
    pub expires_on: i64,
    /// `not_before`, Unix seconds, when given.
    pub not_before: Option<i64>,
    token: Secret,
}

impl AccessToken {
    /// The token bytes (never log them).
    pub fn secret(&self) -> &Secret {
        &self.token
    }

    /// A fresh locked copy for [`HttpRequest::bearer`].
    pub fn bearer(&self) -> Secret {
        Secret::new(self.token.expose().to_vec())
    }
}

/// A clock returning Unix seconds.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
    })
}

/// The token URL for `resource` and the configured identity (§2.1): `api-version`, `resource`
/// and at most one of `client_id`, `object_id`, `msi_res_id`.
pub fn token_url(imds_url: &Url, identity: &Identity, resource: &str) -> Url {
    let mut url = imds_url.clone();
    url.set_path(TOKEN_PATH);
    url.set_query(None);
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("api-version", TOKEN_API_VERSION);
        q.append_pair("resource", resource);
        match identity {
            Identity::SystemAssigned => {}
            Identity::ClientId(id) => {
                q.append_pair("client_id", &id.to_string());
            }
            Identity::ObjectId(id) => {
                q.append_pair("object_id", &id.to_string());
            }
            Identity::ResourceId(id) => {
                q.append_pair("msi_res_id", &id.raw);
            }
        }
    }
    url
}

/// Managed-identity tokens, cached per resource. Concurrent callers asking for the same
/// resource share one IMDS call.
pub struct TokenCache {
    http: HttpClient,
    imds_url: Url,
    identity: Identity,
    clock: Clock,
    tokens: tokio::sync::Mutex<HashMap<String, Arc<AccessToken>>>,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("imds_url", &self.imds_url.as_str())
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

impl TokenCache {
    /// A cache using `http` and the `[identity]` settings, with the system clock.
    pub fn new(http: HttpClient, settings: &IdentitySettings) -> Self {
        Self {
            http,
            imds_url: settings.imds_url.clone(),
            identity: settings.identity.clone(),
            clock: system_clock(),
            tokens: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Replaces the clock (tests).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The token for `resource` (e.g. `https://vault.azure.net`; a trailing '/' is ignored):
    /// the cached one while it is valid for more than [`RENEW_BEFORE_S`], else a new one.
    pub async fn token(
        &self,
        resource: &str,
        deadline: &Deadline,
    ) -> Result<Arc<AccessToken>, IdentityError> {
        let resource = resource.strip_suffix('/').unwrap_or(resource);
        let mut tokens = self.tokens.lock().await;
        let now = (self.clock)();
        if let Some(t) = tokens.get(resource) {
            if now < t.expires_on.saturating_sub(RENEW_BEFORE_S) {
                return Ok(t.clone());
            }
        }
        let fresh = Arc::new(self.fetch(resource, deadline).await?);
        tracing::debug!(
            resource,
            expires_on = fresh.expires_on,
            "managed-identity token obtained"
        );
        tokens.insert(resource.to_string(), fresh.clone());
        Ok(fresh)
    }

    /// Forgets the cached token of `resource` (after the service refused it).
    pub async fn invalidate(&self, resource: &str) {
        let resource = resource.strip_suffix('/').unwrap_or(resource);
        self.tokens.lock().await.remove(resource);
    }

    async fn fetch(
        &self,
        resource: &str,
        deadline: &Deadline,
    ) -> Result<AccessToken, IdentityError> {
        let url = token_url(&self.imds_url, &self.identity, resource);
        let settings = self.http.settings().clone();
        let start = std::time::Instant::now();
        let mut calls: u32 = 0;
        loop {
            calls = calls.saturating_add(1);
            let req = HttpRequest::get(Step::ImdsToken, url.clone()).header("Metadata", "true");
            let resp = self.http.send(req, deadline).await?;
            match resp.status {
                200 => {
                    let t = parse_token_response(&resp.body)?;
                    return Ok(AccessToken {
                        resource: resource.to_string(),
                        expires_on: t.expires_on,
                        not_before: t.not_before,
                        token: t.access_token,
                    });
                }
                404 | 410 if calls <= settings.retries => {
                    let wait = full_jitter(
                        backoff_ceiling(settings.backoff_initial, settings.backoff_max, calls),
                        OsRng.next_u64(),
                    )
                    .max(Duration::from_millis(1));
                    if wait >= deadline.remaining() {
                        return Err(IdentityError::Net(NetError::DeadlineReached {
                            step: Step::ImdsToken,
                            host: url.host_str().unwrap_or_default().to_string(),
                            attempts: calls,
                            elapsed_ms: u64::try_from(start.elapsed().as_millis())
                                .unwrap_or(u64::MAX),
                            last: Some(crate::net::Failure::Status(resp.status)),
                        }));
                    }
                    tokio::time::sleep(wait).await;
                }
                404 | 410 => {
                    return Err(IdentityError::ImdsUnavailable {
                        status: resp.status,
                        attempts: calls,
                    })
                }
                status => return Err(parse_token_error(status, &resp.body)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_urls_per_identity() {
        let imds = Url::parse("http://169.254.169.254").unwrap();
        let r = "https://vault.azure.net";
        assert_eq!(
            token_url(&imds, &Identity::SystemAssigned, r).as_str(),
            "http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01\
             &resource=https%3A%2F%2Fvault.azure.net"
        );
        let id = uuid::Uuid::parse_str("a1b2c3d4-0000-4000-8000-000000000001").unwrap();
        assert!(token_url(&imds, &Identity::ClientId(id), r)
            .as_str()
            .ends_with("&client_id=a1b2c3d4-0000-4000-8000-000000000001"));
        assert!(token_url(&imds, &Identity::ObjectId(id), r)
            .as_str()
            .ends_with("&object_id=a1b2c3d4-0000-4000-8000-000000000001"));
        let rid = crate::config::values::parse_identity_resource_id(
            "/subscriptions/a1b2c3d4-0000-4000-8000-000000000001/resourceGroups/rg/providers/\
             Microsoft.ManagedIdentity/userAssignedIdentities/skr-id",
        )
        .unwrap();
        let u = token_url(&imds, &Identity::ResourceId(rid), r);
        let sel: Vec<_> = u.query_pairs().filter(|(k, _)| k == "msi_res_id").collect();
        assert_eq!(sel.len(), 1);
        assert!(sel[0].1.ends_with("/userAssignedIdentities/skr-id"));
    }
}
