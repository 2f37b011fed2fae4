//! Authenticated calls to Key Vault / Managed HSM with the managed-identity token (PROTOCOLS.md
//! §2.1 resource choice, §6.7 bearer errors), and `GET {key}?api-version=…` (the key bundle,
//! whose `release_policy` `skrctl policy check --key-url` reads).
//!
//! The token resource comes from the key URL's host ([`crate::config::values::KeyUrl`]:
//! `*.vault.azure.net` → `https://vault.azure.net`, `*.managedhsm.azure.net` →
//! `https://managedhsm.azure.net`). Hosts that are neither (skr-emulator on loopback, private
//! clouds) start with `https://vault.azure.net`; if such a host answers 401 with a
//! `WWW-Authenticate: Bearer … resource="R"` challenge naming the *other* known resource, the call
//! is repeated once with a token for R. Azure hosts never switch resource on a challenge, so a
//! hostile server cannot obtain a token for another audience.

use serde_json::Value;

use super::error::IdentityError;
use super::imds::TokenCache;
use crate::config::values::{KeyUrl, VaultKind};
use crate::net::{Deadline, HttpClient, HttpRequest, HttpResponse, Step};

/// The resources a challenge may switch between.
const KNOWN_RESOURCES: &[&str] = &["https://vault.azure.net", "https://managedhsm.azure.net"];

/// The `resource="…"` of a `WWW-Authenticate: Bearer` challenge.
pub fn challenge_resource(www_authenticate: &str) -> Option<&str> {
    let (scheme, params) = www_authenticate.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    params.split(',').find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("resource")
            .then(|| v.trim().trim_matches('"'))
    })
}

/// Sends the request built by `make` with a bearer token for `key`'s vault (see the module docs
/// for the resource and the one challenge retry). Returns the final response and the resource
/// used.
pub async fn send_with_identity(
    http: &HttpClient,
    tokens: &TokenCache,
    key: &KeyUrl,
    make: impl Fn() -> HttpRequest,
    deadline: &Deadline,
) -> Result<(HttpResponse, String), IdentityError> {
    let mut resource = key.token_resource.to_string();
    let mut challenged = false;
    loop {
        let token = tokens.token(&resource, deadline).await?;
        let req = make().with_bearer(token.bearer());
        let resp = http
            .send(req, deadline)
            .await
            .map_err(IdentityError::VaultCall)?;
        if resp.status == 401 && key.kind == VaultKind::Custom && !challenged {
            challenged = true;
            let wanted = resp
                .header("www-authenticate")
                .and_then(challenge_resource)
                .map(|r| r.trim_end_matches('/'))
                .and_then(|r| KNOWN_RESOURCES.iter().find(|k| **k == r));
            if let Some(r) = wanted {
                if **r != resource {
                    tracing::debug!(from = %resource, to = r, "vault asked for another token resource");
                    resource = (*r).to_string();
                    continue;
                }
            }
        }
        return Ok((resp, resource));
    }
}

/// The `{"error": {"code", "message"}}` of an Azure error body.
pub fn azure_error(body: &[u8]) -> (String, String) {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let field = |n: &str| {
        v.get("error")
            .and_then(|e| e.get(n))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    (field("code"), field("message"))
}

/// A key bundle as returned by GET key.
#[derive(Debug, Clone)]
pub struct KeyBundle {
    /// The raw body (for `skrd::format::akv::policy::load_document`).
    pub body: Vec<u8>,
    /// The parsed body (`key`, `attributes`, `release_policy`, ...).
    pub bundle: Value,
    /// The HTTP response (timings).
    pub response: HttpResponse,
}

/// The GET key URL: the key URL with `api-version` as its only query parameter.
pub fn key_get_url(key: &KeyUrl, api_version: &str) -> url::Url {
    let mut url = key.url.clone();
    url.set_query(None);
    url.query_pairs_mut()
        .append_pair("api-version", api_version);
    url
}

/// `GET {key}?api-version=…` with the identity's bearer token.
pub async fn get_key(
    http: &HttpClient,
    tokens: &TokenCache,
    key: &KeyUrl,
    api_version: &str,
    deadline: &Deadline,
) -> Result<KeyBundle, IdentityError> {
    let url = key_get_url(key, api_version);
    let (resp, _) = send_with_identity(
        http,
        tokens,
        key,
        || HttpRequest::get(Step::KeyGet, url.clone()),
        deadline,
    )
    .await?;
    if resp.status != 200 {
        let (code, message) = azure_error(&resp.body);
        return Err(IdentityError::VaultRefused {
            key_url: key.url.to_string(),
            status: resp.status,
            code,
            message,
        });
    }
    let bundle: Value =
        serde_json::from_slice(&resp.body).map_err(|e| IdentityError::KeyBundleInvalid {
            key_url: key.url.to_string(),
            reason: format!("not JSON: {e}"),
        })?;
    if !bundle.get("key").is_some_and(Value::is_object) {
        return Err(IdentityError::KeyBundleInvalid {
            key_url: key.url.to_string(),
            reason: "no \"key\" object".to_string(),
        });
    }
    Ok(KeyBundle {
        body: resp.body.clone(),
        bundle,
        response: resp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_parsing() {
        // The form Key Vault sends (PROTOCOLS.md §6.7).
        let h = "Bearer authorization=\"https://login.microsoftonline.com/t\", \
                 resource=\"https://managedhsm.azure.net\"";
        assert_eq!(challenge_resource(h), Some("https://managedhsm.azure.net"));
        assert_eq!(challenge_resource("Basic realm=\"x\""), None);
        assert_eq!(challenge_resource("Bearer authorization=\"x\""), None);
        assert_eq!(challenge_resource(""), None);
    }

    #[test]
    fn get_url_has_only_the_api_version() {
        let k = crate::config::values::parse_key_url("https://v.vault.azure.net/keys/k/0123abcd")
            .unwrap();
        assert_eq!(
            key_get_url(&k, "7.4").as_str(),
            "https://v.vault.azure.net/keys/k/0123abcd?api-version=7.4"
        );
    }
}
