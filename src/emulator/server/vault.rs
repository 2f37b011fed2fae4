//! The emulated Key Vault and Managed HSM listeners (HTTPS), PROTOCOLS.md §6. Key release,
//! key import and the bearer check (§6.1-§6.8) come with the next emulator session; for now every
//! path gets Key Vault's error body `{"error": {"code", "message"}}` with `x-ms-error-code`.

use super::http::{Malformed, Request, Response, Service};
use super::maa::azure_error;

/// A Key Vault or Managed HSM listener: for now every path is a 404 in Key Vault's error shape.
#[derive(Debug)]
pub struct Vault {
    /// `"vault"` or `"managed-hsm"` (prefix of the endpoint names).
    pub flavour: &'static str,
}

impl Service for Vault {
    fn endpoint(&self, _req: &Request) -> &'static str {
        if self.flavour == "vault" {
            "vault-other"
        } else {
            "managed-hsm-other"
        }
    }

    fn handle(&self, _req: &Request) -> Response {
        azure_error(404, "NotFound", "The requested resource was not found")
    }

    fn malformed(&self, why: Malformed) -> Response {
        azure_error(why.status(), "BadParameter", why.describe())
    }

    fn malformed_endpoint(&self) -> &'static str {
        if self.flavour == "vault" {
            "vault-malformed"
        } else {
            "managed-hsm-malformed"
        }
    }
}
