//! The emulated Microsoft Azure Attestation listener (HTTPS), PROTOCOLS.md §5.1: OpenID discovery
//! (`/.well-known/openid-configuration`), the signing keys (`/certs`, JWKS with `x5c`) and
//! `POST /attest/SevSnpVm` (§5.2, [`super::sevsnpvm`]) and `POST /attest/AzureGuest` (§5.3,
//! [`super::azureguest`]); every other path gets MAA's error body
//! `{"error": {"code", "message"}}` with the `x-ms-error-code` header.

use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;

use crate::emulator::ak_ca::AkCa;
use crate::emulator::amd_chain::TestAmdChain;
use crate::emulator::attestation_policy::AttestationPolicy;

use super::azureguest::AzureGuest;
use super::http::{Malformed, Request, Response, Service};
use super::sevsnpvm::{check_api_version, SevSnpVm};
use super::state::State;
use super::tls::maa_certificate;
use super::ServeError;

/// Claims announced in the discovery document (those the emulator issues; the real list is
/// longer).
const CLAIMS: &[&str] = &[
    "x-ms-ver",
    "x-ms-attestation-type",
    "x-ms-policy-hash",
    "x-ms-runtime",
    "x-ms-inittime",
    "x-ms-compliance-status",
    "x-ms-isolation-tee",
    "x-ms-azurevm-vmid",
    "x-ms-azurevm-attested-pcrs",
    "secureboot",
    "x-ms-sevsnpvm-authorkeydigest",
    "x-ms-sevsnpvm-bootloader-svn",
    "x-ms-sevsnpvm-familyId",
    "x-ms-sevsnpvm-guestsvn",
    "x-ms-sevsnpvm-hostdata",
    "x-ms-sevsnpvm-idkeydigest",
    "x-ms-sevsnpvm-imageId",
    "x-ms-sevsnpvm-is-debuggable",
    "x-ms-sevsnpvm-launchmeasurement",
    "x-ms-sevsnpvm-microcode-svn",
    "x-ms-sevsnpvm-migration-allowed",
    "x-ms-sevsnpvm-reportdata",
    "x-ms-sevsnpvm-reportid",
    "x-ms-sevsnpvm-smt-allowed",
    "x-ms-sevsnpvm-snpfw-svn",
    "x-ms-sevsnpvm-tee-svn",
    "x-ms-sevsnpvm-vmpl",
    "nonce",
];

/// An Azure-style error (`{"error": {"code", "message"}}` + `x-ms-error-code`), shared by the
/// attestation, Key Vault and Managed HSM listeners.
pub fn azure_error(status: u16, code: &str, message: &str) -> Response {
    Response::json(
        status,
        &serde_json::json!({"error": {"code": code, "message": message}}),
    )
    .with_header("x-ms-error-code", code)
}

/// The file in the state directory that keeps the instance's attestation policy.
pub const POLICY_FILE: &str = "attestation-policy.txt";

/// The instance's attestation policy: `given` (validated, then kept in the state directory so a
/// restart keeps it), else the one kept there, else the default.
pub fn load_policy(dir: &Path, given: Option<&Path>) -> Result<AttestationPolicy, ServeError> {
    let kept = dir.join(POLICY_FILE);
    let path = match given {
        Some(p) => p.to_path_buf(),
        None if kept.is_file() => kept.clone(),
        None => return Ok(AttestationPolicy::default_policy()),
    };
    let invalid = |reason: String| ServeError::AttestationPolicy {
        path: path.clone(),
        reason,
    };
    let text = std::fs::read_to_string(&path).map_err(|e| invalid(e.to_string()))?;
    let policy = AttestationPolicy::parse(&text).map_err(|e| invalid(e.to_string()))?;
    if given.is_some() {
        std::fs::write(&kept, policy.text()).map_err(|source| ServeError::StateIo {
            path: kept.clone(),
            source,
        })?;
    }
    Ok(policy)
}

/// The attestation service.
#[derive(Debug)]
pub struct Attestation {
    /// The issuer (the URL clients use, e.g. `https://127.0.0.1:PORT`).
    pub issuer: String,
    jwks: serde_json::Value,
    sevsnpvm: SevSnpVm,
    azureguest: AzureGuest,
}

impl Attestation {
    /// Issues tokens valid for `seconds` instead of the real 8 hours (`serve --token-lifetime`).
    pub fn with_token_lifetime(mut self, seconds: Option<i64>) -> Self {
        if let Some(s) = seconds {
            self.sevsnpvm.set_token_lifetime(s);
        }
        self
    }

    /// The service: `issuer` is the printed URL; `host` names the signing certificate.
    pub fn new(
        state: Arc<State>,
        issuer: String,
        host: &str,
        policy: AttestationPolicy,
    ) -> Result<Self, ServeError> {
        let cert = maa_certificate(&state.maa, host)?;
        let mut jwk = state.maa.public_jwk();
        jwk["x5c"] = serde_json::json!([base64::engine::general_purpose::STANDARD.encode(cert)]);
        // The test ARK of the state directory is trusted explicitly, next to the pinned AMD roots.
        let ark = TestAmdChain::load_or_create(&state.dir)?.ark_der;
        // AK certificates must chain to the AK CA that `provision-tpm` used on this directory.
        let ak_ca = AkCa::load_or_create(&state.dir)?;
        let azureguest = AzureGuest::new(&ak_ca.cert_der).map_err(|e| ServeError::Certificate {
            what: "AK CA trust anchor",
            reason: e.to_string(),
        })?;
        let sevsnpvm = SevSnpVm::new(state, issuer.clone(), Some(&ark), policy).map_err(|e| {
            ServeError::Certificate {
                what: "AMD trust store",
                reason: e.to_string(),
            }
        })?;
        Ok(Self {
            issuer,
            jwks: serde_json::json!({"keys": [jwk]}),
            sevsnpvm,
            azureguest,
        })
    }

    fn metadata(&self) -> serde_json::Value {
        serde_json::json!({
            "issuer": self.issuer,
            "jwks_uri": format!("{}/certs", self.issuer),
            "revocation_endpoint": format!("{}/revocations", self.issuer),
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["token", "none"],
            "claims_supported": CLAIMS,
        })
    }
}

fn route(path: &str) -> &'static str {
    let lower = path.to_ascii_lowercase();
    match lower.trim_end_matches('/') {
        "/.well-known/openid-configuration" => "attestation-meta",
        "/certs" => "attestation-certs",
        "/attest/sevsnpvm" => "attestation-sevsnpvm",
        "/attest/azureguest" => "attestation-azureguest",
        _ => "attestation-other",
    }
}

impl Service for Attestation {
    fn endpoint(&self, req: &Request) -> &'static str {
        route(&req.path)
    }

    fn handle(&self, req: &Request) -> Response {
        let endpoint = route(&req.path);
        if endpoint == "attestation-other" {
            return azure_error(404, "NotFound", "The requested resource was not found");
        }
        if endpoint == "attestation-sevsnpvm" || endpoint == "attestation-azureguest" {
            if req.method != "POST" {
                return azure_error(
                    405,
                    "MethodNotAllowed",
                    "Only POST is supported on this path",
                );
            }
            if let Some(refusal) = check_api_version(req) {
                return refusal;
            }
            if endpoint == "attestation-azureguest" {
                return self.azureguest.handle(&self.sevsnpvm, req);
            }
            return self.sevsnpvm.handle(req);
        }
        if req.method != "GET" {
            return azure_error(
                405,
                "MethodNotAllowed",
                "Only GET is supported on this path",
            );
        }
        if endpoint == "attestation-meta" {
            Response::json(200, &self.metadata())
        } else {
            Response::json(200, &self.jwks)
        }
    }

    fn malformed(&self, why: Malformed) -> Response {
        azure_error(why.status(), "InvalidParameter", why.describe())
    }

    fn malformed_endpoint(&self) -> &'static str {
        "attestation-malformed"
    }

    fn request_ids(&self) -> bool {
        true
    }
}
