//! The emulated Azure Instance Metadata Service (plain HTTP): managed-identity access tokens
//! (PROTOCOLS.md §2.1) and the THIM certification endpoint (§2.3).
//!
//! Tokens are RS256 JWTs signed by the state directory's "Entra" key (public JWKS in
//! `entra-jwks.json`), `aud` = the requested resource, `iss` = `https://sts.windows.net/<tenant>/`,
//! with the identity's `oid`/`sub`, `appid` and `xms_mirid`. Errors use IMDS's
//! `{"error", "error_description"}` body.

use std::sync::Arc;

use super::http::{Malformed, Request, Response, Service};
use super::state::{Identity, State};
use super::ServeError;
use crate::emulator::amd_chain::{cert_pem, TestAmdChain};
use crate::format::snp::RawTcb;

/// Path of the token endpoint.
pub const TOKEN_PATH: &str = "/metadata/identity/oauth2/token";
/// Path of the THIM endpoint.
pub const THIM_PATH: &str = "/metadata/THIM/amd/certification";
/// Lifetime of an access token (s); real managed-identity tokens last about 24 h.
pub const TOKEN_LIFETIME_S: i64 = 86_399;
/// The oldest token api-version IMDS accepts.
const MIN_API_VERSION: &str = "2018-02-01";

/// The IMDS service.
#[derive(Debug)]
pub struct Imds {
    state: Arc<State>,
    thim_doc: Vec<u8>,
    token_lifetime: i64,
}

/// An IMDS error response.
pub fn error(status: u16, code: &str, description: &str) -> Response {
    Response::json(
        status,
        &serde_json::json!({"error": code, "error_description": description}),
    )
}

/// The THIM document of §2.3 for a test AMD chain (key order as in the real document).
pub fn thim_document(chain: &TestAmdChain) -> Result<Vec<u8>, ServeError> {
    let vcek = cert_pem(&chain.vcek_der)?;
    let ask = cert_pem(&chain.ask_der)?;
    let ark = cert_pem(&chain.ark_der)?;
    let tcbm = RawTcb(chain.tcb.to_bytes()).to_tcbm();
    // serde_json's map is sorted; write the real key order by hand.
    let enc = |s: &str| serde_json::Value::String(s.to_string()).to_string();
    let doc = format!(
        "{{\"vcekCert\":{},\"tcbm\":{},\"certificateChain\":{},\"cacheControl\":\"86400\"}}",
        enc(&vcek),
        enc(&tcbm),
        enc(&format!("{ask}{ark}")),
    );
    Ok(doc.into_bytes())
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
}

fn valid_api_version(v: &str) -> bool {
    let b = v.as_bytes();
    let date = b.get(..10).unwrap_or_default();
    let shape = date.len() == 10
        && date.iter().enumerate().all(|(i, c)| {
            if i == 4 || i == 7 {
                *c == b'-'
            } else {
                c.is_ascii_digit()
            }
        });
    let suffix_ok = b.len() == 10 || v.get(10..).is_some_and(|s| s == "-preview");
    shape && suffix_ok && v.get(..10).is_some_and(|d| d >= MIN_API_VERSION)
}

fn valid_resource(r: &str) -> bool {
    if uuid::Uuid::parse_str(r).is_ok() {
        return true;
    }
    match url::Url::parse(r) {
        Ok(u) => {
            matches!(u.scheme(), "https" | "api") && u.host_str().is_some_and(|h| !h.is_empty())
        }
        Err(_) => false,
    }
}

/// Which identity a token request names (§2.1): none (the system identity, or the only one),
/// or one of `client_id`, `object_id`, `msi_res_id`/`mi_res_id` with its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// No selector.
    Default,
    /// `(parameter, value)`.
    By(&'static str, String),
}

/// A token request's validated query: the resource and the identity selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenQuery {
    /// The `resource` parameter (percent-decoded; not yet checked as a URI).
    pub resource: String,
    /// The identity asked for.
    pub selector: Selector,
}

/// IMDS answers only GET requests carrying `Metadata: true` (SSRF protection, §2.1).
fn refuse_unless_get_with_metadata(req: &Request) -> Option<Response> {
    if req.method != "GET" {
        return Some(error(405, "invalid_request", "Only GET is supported"));
    }
    if req.header("metadata") != Some("true") {
        return Some(error(
            400,
            "bad_request_102",
            "Required metadata header not specified",
        ));
    }
    None
}

/// The checks of a token request that need no state (§2.1): method, `Metadata` header,
/// `api-version`, one non-empty `resource`, at most one identity selector; IMDS's error
/// answer otherwise.
pub fn token_query(req: &Request) -> Result<TokenQuery, Response> {
    if let Some(refusal) = refuse_unless_get_with_metadata(req) {
        return Err(refusal);
    }
    match req.query_all("api-version").as_slice() {
        [] => {
            return Err(error(
                400,
                "invalid_request",
                "Required query variable 'api-version' is missing",
            ))
        }
        [v] if valid_api_version(v) => {}
        _ => return Err(error(400, "invalid_request", "Invalid api-version")),
    }
    let resource = match req.query_all("resource").as_slice() {
        [] | [""] => {
            return Err(error(
                400,
                "invalid_request",
                "Required query variable 'resource' is missing",
            ))
        }
        [r] => (*r).to_string(),
        _ => {
            return Err(error(
                400,
                "invalid_request",
                "Query variable 'resource' is repeated",
            ))
        }
    };
    let mut selectors: Vec<(&'static str, &str)> = Vec::new();
    for name in ["client_id", "object_id", "msi_res_id", "mi_res_id"] {
        for v in req.query_all(name) {
            selectors.push((name, v));
        }
    }
    let selector = match selectors.as_slice() {
        [] => Selector::Default,
        [(name, value)] => Selector::By(name, (*value).to_string()),
        _ => {
            return Err(error(
                400,
                "invalid_request",
                "Only one of client_id, object_id or msi_res_id may be specified",
            ))
        }
    };
    Ok(TokenQuery { resource, selector })
}

/// Fuzz entry (`fuzz/fuzz_targets/fuzz_imds_request.rs`): a raw request (head, CRLFCRLF,
/// body) through the HTTP head parser, the IMDS routing and the stateless token-request checks;
/// never panics, and an accepted query names a non-empty resource.
pub fn fuzz_imds_request(data: &[u8]) {
    let head = data
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(data, |at| data.get(..at).unwrap_or_default());
    let Ok((req, _)) = super::http::parse_head(head) else {
        return;
    };
    match req.path.as_str() {
        TOKEN_PATH => {
            if let Ok(q) = token_query(&req) {
                assert!(!q.resource.is_empty());
                let _ = valid_resource(&q.resource);
            }
        }
        THIM_PATH => {
            let _ = refuse_unless_get_with_metadata(&req);
        }
        _ => {}
    }
}

impl Imds {
    /// The service for a state and the test AMD chain in the same directory.
    pub fn new(state: Arc<State>, chain: &TestAmdChain) -> Result<Self, ServeError> {
        Ok(Self {
            thim_doc: thim_document(chain)?,
            state,
            token_lifetime: TOKEN_LIFETIME_S,
        })
    }

    /// Issues managed-identity tokens valid for `seconds` instead of [`TOKEN_LIFETIME_S`]
    /// (`serve --token-lifetime`).
    pub fn with_token_lifetime(mut self, seconds: Option<i64>) -> Self {
        if let Some(s) = seconds {
            self.token_lifetime = s;
        }
        self
    }

    fn select(&self, selector: &Selector) -> Result<&Identity, Response> {
        let ids = &self.state.identities.identities;
        let bad = |d: &str| Err(error(400, "invalid_request", d));
        match selector {
            Selector::Default => match self.state.identities.system() {
                Some(id) => Ok(id),
                None => match ids.as_slice() {
                    [only] => Ok(only),
                    [] => Err(error(
                        400,
                        "unauthorized_client",
                        "No managed identity is assigned to this VM",
                    )),
                    _ => bad("Multiple user assigned identities exist, please specify the clientId / resourceId of the identity in the token request"),
                },
            },
            Selector::By(name, value) => {
                let found = ids.iter().find(|i| match *name {
                    "client_id" => i.client_id.eq_ignore_ascii_case(value),
                    "object_id" => i.object_id.eq_ignore_ascii_case(value),
                    _ => i.resource_id.eq_ignore_ascii_case(value),
                });
                found.map_or_else(|| bad("Identity not found"), Ok)
            }
        }
    }

    fn token(&self, req: &Request) -> Response {
        let query = match token_query(req) {
            Ok(q) => q,
            Err(refusal) => return refusal,
        };
        let resource = query.resource;
        let tenant = &self.state.identities.tenant_id;
        if !valid_resource(&resource) {
            let d = format!(
                "AADSTS500011: The resource principal named {resource} was not found in the tenant named {tenant}."
            );
            return error(400, "invalid_resource", &d);
        }
        let id = match self.select(&query.selector) {
            Ok(id) => id,
            Err(resp) => return resp,
        };
        let iat = now();
        let exp = iat + self.token_lifetime;
        let iss = format!("https://sts.windows.net/{tenant}/");
        let claims = serde_json::json!({
            "aud": resource,
            "iss": iss,
            "iat": iat,
            "nbf": iat,
            "exp": exp,
            "aio": "skr-emulator",
            "appid": id.client_id,
            "appidacr": "2",
            "idp": iss,
            "idtyp": "app",
            "oid": id.object_id,
            "sub": id.object_id,
            "tid": tenant,
            "ver": "1.0",
            "xms_mirid": id.resource_id,
        });
        let kid = self.state.entra.kid.clone();
        match self.state.entra.sign_jwt(&claims, &[("x5t", &kid)]) {
            Ok(token) => Response::json(
                200,
                &serde_json::json!({
                    "access_token": token,
                    "refresh_token": "",
                    "expires_in": self.token_lifetime.to_string(),
                    "expires_on": exp.to_string(),
                    "not_before": iat.to_string(),
                    "resource": resource,
                    "token_type": "Bearer",
                }),
            ),
            Err(_) => error(
                500,
                "unknown",
                "Failed to retrieve token from the Active directory",
            ),
        }
    }

    fn thim(&self, req: &Request) -> Response {
        if let Some(refusal) = refuse_unless_get_with_metadata(req) {
            return refusal;
        }
        Response {
            status: 200,
            headers: vec![("Content-Type".to_string(), "application/json".to_string())],
            body: self.thim_doc.clone(),
        }
    }
}

impl Service for Imds {
    fn endpoint(&self, req: &Request) -> &'static str {
        match req.path.as_str() {
            TOKEN_PATH => "imds-token",
            THIM_PATH => "thim",
            _ => "imds-other",
        }
    }

    fn handle(&self, req: &Request) -> Response {
        match req.path.as_str() {
            TOKEN_PATH => self.token(req),
            THIM_PATH => self.thim(req),
            _ => error(404, "not_found", "The requested path was not found"),
        }
    }

    fn malformed(&self, why: Malformed) -> Response {
        error(why.status(), "invalid_request", why.describe())
    }

    fn malformed_endpoint(&self) -> &'static str {
        "imds-malformed"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The request of PROTOCOLS.md §2.1 as curl sends it.
    const TOKEN_REQUEST: &[u8] = b"GET /metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fvault.azure.net&client_id=0a1b2c3d-0000-4000-8000-000000000001 HTTP/1.1\r\nHost: 169.254.169.254\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\nMetadata: true\r\n\r\n";

    fn parsed(raw: &[u8]) -> Request {
        let end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        super::super::http::parse_head(&raw[..end]).unwrap().0
    }

    fn refusal(req: &Request) -> (u16, String) {
        let r = token_query(req).unwrap_err();
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        (r.status, v["error"].as_str().unwrap().to_string())
    }

    #[test]
    fn token_query_checks_of_section_2_1() {
        let q = token_query(&parsed(TOKEN_REQUEST)).unwrap();
        assert_eq!(q.resource, "https://vault.azure.net");
        assert_eq!(
            q.selector,
            Selector::By("client_id", "0a1b2c3d-0000-4000-8000-000000000001".into())
        );
        let text = String::from_utf8(TOKEN_REQUEST.to_vec()).unwrap();
        let variant = |from: &str, to: &str| parsed(text.replace(from, to).as_bytes());
        // §2.1 / §8: 400 bad_request_102 without `Metadata: true`, 405 for other methods.
        assert_eq!(
            refusal(&variant("Metadata: true", "Metadata: false")),
            (400, "bad_request_102".into())
        );
        assert_eq!(refusal(&variant("GET ", "POST ")).0, 405);
        assert_eq!(
            refusal(&variant("api-version=2018-02-01", "api-version=2017-09-01")),
            (400, "invalid_request".into())
        );
        assert_eq!(
            refusal(&variant("&resource=https%3A%2F%2Fvault.azure.net", "")),
            (400, "invalid_request".into())
        );
        assert_eq!(
            refusal(&variant("&client_id=", "&object_id=x&client_id=")),
            (400, "invalid_request".into())
        );
        let q = token_query(&variant(
            "&client_id=0a1b2c3d-0000-4000-8000-000000000001",
            "",
        ))
        .unwrap();
        assert_eq!(q.selector, Selector::Default);
    }

    #[test]
    fn fuzz_entry_survives_mutations() {
        super::super::for_each_mutation(TOKEN_REQUEST, 0x1d5, fuzz_imds_request);
    }

    #[test]
    fn api_versions_and_resources() {
        assert!(valid_api_version("2018-02-01"));
        assert!(valid_api_version("2021-02-01"));
        assert!(!valid_api_version("2017-09-01"));
        assert!(!valid_api_version("latest"));
        assert!(valid_resource("https://vault.azure.net"));
        assert!(valid_resource("https://managedhsm.azure.net/"));
        assert!(!valid_resource("vault"));
        assert!(!valid_resource("http://"));
    }
}
