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

    fn select(&self, req: &Request) -> Result<&Identity, Response> {
        let ids = &self.state.identities.identities;
        let mut selectors: Vec<(&str, &str)> = Vec::new();
        for name in ["client_id", "object_id", "msi_res_id", "mi_res_id"] {
            for v in req.query_all(name) {
                selectors.push((name, v));
            }
        }
        let bad = |d: &str| Err(error(400, "invalid_request", d));
        match selectors.as_slice() {
            [] => match self.state.identities.system() {
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
            [(name, value)] => {
                let found = ids.iter().find(|i| match *name {
                    "client_id" => i.client_id.eq_ignore_ascii_case(value),
                    "object_id" => i.object_id.eq_ignore_ascii_case(value),
                    _ => i.resource_id.eq_ignore_ascii_case(value),
                });
                found.map_or_else(|| bad("Identity not found"), Ok)
            }
            _ => bad("Only one of client_id, object_id or msi_res_id may be specified"),
        }
    }

    fn token(&self, req: &Request) -> Response {
        if let Some(refusal) = Self::refuse_unless_get_with_metadata(req) {
            return refusal;
        }
        match req.query_all("api-version").as_slice() {
            [] => {
                return error(
                    400,
                    "invalid_request",
                    "Required query variable 'api-version' is missing",
                )
            }
            [v] if valid_api_version(v) => {}
            _ => return error(400, "invalid_request", "Invalid api-version"),
        }
        let resource = match req.query_all("resource").as_slice() {
            [] | [""] => {
                return error(
                    400,
                    "invalid_request",
                    "Required query variable 'resource' is missing",
                )
            }
            [r] => (*r).to_string(),
            _ => {
                return error(
                    400,
                    "invalid_request",
                    "Query variable 'resource' is repeated",
                )
            }
        };
        let tenant = &self.state.identities.tenant_id;
        if !valid_resource(&resource) {
            let d = format!(
                "AADSTS500011: The resource principal named {resource} was not found in the tenant named {tenant}."
            );
            return error(400, "invalid_resource", &d);
        }
        let id = match self.select(req) {
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
        if let Some(refusal) = Self::refuse_unless_get_with_metadata(req) {
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
