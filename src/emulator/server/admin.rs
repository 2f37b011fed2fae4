//! The admin listener of `skr-emulator serve` (plain HTTP on loopback): replace the fault table
//! at run time and read or reset the per-endpoint request counters (see [`super::faults`]).
//!
//! - `GET /faults` → the current table; `POST /faults` (JSON table) → replaces it;
//! - `GET /counters` → `{"<endpoint>": count, ...}`; `POST /counters/reset` → zeroes them and
//!   empties the request log;
//! - `GET /requests` → the answers sent, oldest first: `[{"endpoint", "status", "request_id", "delay_ms"}]`
//!   (`request_id` = the `x-ms-request-id` the attestation and vault listeners sent);
//! - `GET /throttle` → `{"window_s": 10, "vault": {"limit", "in_window", "admitted_weight",
//!   "refused"}, "managed_hsm": {...}}` (RSA-2048-equivalent operations, [`super::throttle`]).
//!
//! Admin requests are neither counted nor faulted.

use std::sync::Arc;

use super::faults::{parse_table, Faults};
use super::http::{Malformed, Request, Response, Service};
use super::throttle::{Throttle, THROTTLE_WINDOW};

/// The admin service.
#[derive(Debug)]
pub struct Admin {
    /// The shared faults and counters.
    pub faults: Arc<Faults>,
    /// The Key Vault and Managed HSM throttles, by start-up line key.
    pub throttles: Vec<(&'static str, Arc<Throttle>)>,
}

fn err(status: u16, code: &str, message: &str) -> Response {
    Response::json(
        status,
        &serde_json::json!({"error": {"code": code, "message": message}}),
    )
}

impl Service for Admin {
    fn endpoint(&self, _req: &Request) -> &'static str {
        "admin"
    }

    fn handle(&self, req: &Request) -> Response {
        match (req.method.as_str(), req.path.as_str()) {
            ("GET", "/counters") => Response::json(200, &serde_json::json!(self.faults.counters())),
            ("GET", "/requests") => Response::json(200, &serde_json::json!(self.faults.requests())),
            ("GET", "/throttle") => {
                let mut doc = serde_json::json!({"window_s": THROTTLE_WINDOW.as_secs()});
                for (name, t) in &self.throttles {
                    doc[*name] = serde_json::json!(t.status());
                }
                Response::json(200, &doc)
            }
            ("POST", "/counters/reset") => {
                self.faults.reset_counters();
                Response::json(200, &serde_json::json!({}))
            }
            ("GET", "/faults") => Response::json(200, &serde_json::json!(self.faults.table())),
            ("POST", "/faults") => {
                let text = match std::str::from_utf8(&req.body) {
                    Ok(t) => t,
                    Err(_) => return err(400, "InvalidFaults", "the body is not UTF-8"),
                };
                match parse_table(text, false) {
                    Ok(table) => {
                        self.faults.replace(table);
                        Response::json(200, &serde_json::json!(self.faults.table()))
                    }
                    Err(reason) => err(400, "InvalidFaults", &reason),
                }
            }
            (_, "/counters" | "/counters/reset" | "/faults" | "/requests" | "/throttle") => err(
                405,
                "MethodNotAllowed",
                "see skr-emulator(1) for the admin API",
            ),
            _ => err(
                404,
                "NotFound",
                "admin paths: /faults, /counters, /counters/reset, /requests, /throttle",
            ),
        }
    }

    fn malformed(&self, why: Malformed) -> Response {
        err(why.status(), "BadRequest", why.describe())
    }

    fn malformed_endpoint(&self) -> &'static str {
        "admin"
    }
}
