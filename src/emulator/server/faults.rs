//! Scriptable faults and per-endpoint request counters of `skr-emulator serve` (PROTOCOLS.md §8:
//! "429 + back-off testing knobs").
//!
//! A fault table maps an endpoint name (`imds-token`, `thim`, `attestation-meta`, ..., or `*` for
//! every endpoint without its own entry) to a [`FaultSpec`]. It is loaded from `--faults FILE`
//! (JSON, or TOML when the name ends in `.toml`) and replaced at run time by `POST {admin}/faults`.
//! Every request, faulted or not, increments its endpoint's counter.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};

use super::http::Response;
use super::ServeError;

/// What to do to the requests of one endpoint. Every field is optional; they combine
/// (delay first, then `drop`, else `status`, then the body faults).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// Fixed delay before answering (ms); with `delay_max_ms`, the lower bound of a random delay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
    /// Upper bound of a uniformly random delay (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_max_ms: Option<u64>,
    /// Answer this status instead of the real answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Body sent with `status` (default: an empty JSON object).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Adds `Retry-After: <seconds>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
    /// Replace the body with random bytes (same length, at least 16).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub garbage: bool,
    /// Announce the full Content-Length, send half the body, close.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncate: bool,
    /// Close the connection without any response.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub drop: bool,
    /// Send the body at this many bytes per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slow_bytes_per_sec: Option<u64>,
    /// Apply to the next N requests only, then disappear (absent: every request).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub times: Option<u64>,
}

/// The fault table: endpoint name → fault.
pub type FaultTable = BTreeMap<String, FaultSpec>;

/// How the connection loop sends a (possibly faulted) response.
#[derive(Debug)]
pub enum Outcome {
    /// Send it normally.
    Send(Response),
    /// Close without answering.
    Drop,
    /// Send the head and half the body, then close.
    Truncate(Response),
    /// Send the body at this many bytes per second.
    Slow(Response, u64),
}

/// One answer sent, as the admin request log keeps it (`GET /requests`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RequestRecord {
    /// The endpoint name (as counted).
    pub endpoint: String,
    /// The status sent.
    pub status: u16,
    /// The `x-ms-request-id` sent (Azure services only).
    pub request_id: Option<String>,
    /// The delay a fault added before answering (ms; 0 without one); with `delay_max_ms`, the
    /// random value drawn for this request.
    pub delay_ms: u64,
}

/// How many answers the request log keeps (the oldest are forgotten first).
pub const REQUEST_LOG_LEN: usize = 4096;

/// Faults, counters and the request log shared by every listener.
#[derive(Debug, Default)]
pub struct Faults {
    table: Mutex<FaultTable>,
    counters: Mutex<HashMap<String, u64>>,
    requests: Mutex<std::collections::VecDeque<RequestRecord>>,
}

/// Parses a fault table (JSON, or TOML when `toml` is true).
pub fn parse_table(text: &str, toml: bool) -> Result<FaultTable, String> {
    let table: FaultTable = if toml {
        ::toml::from_str(text).map_err(|e| e.to_string())?
    } else {
        serde_json::from_str(text).map_err(|e| e.to_string())?
    };
    for (name, spec) in &table {
        if let (Some(lo), Some(hi)) = (spec.delay_ms, spec.delay_max_ms) {
            if hi < lo {
                return Err(format!("{name}: delay_max_ms {hi} is below delay_ms {lo}"));
            }
        }
        if let Some(status) = spec.status {
            if !(100..=599).contains(&status) {
                return Err(format!("{name}: status {status} is not an HTTP status"));
            }
        }
        if spec.slow_bytes_per_sec == Some(0) {
            return Err(format!("{name}: slow_bytes_per_sec must be at least 1"));
        }
    }
    Ok(table)
}

/// Reads a fault file.
pub fn load_file(path: &Path) -> Result<FaultTable, ServeError> {
    let text = std::fs::read_to_string(path).map_err(|source| ServeError::FaultsIo {
        path: path.to_path_buf(),
        source,
    })?;
    let is_toml = path.extension().is_some_and(|e| e == "toml");
    parse_table(&text, is_toml).map_err(|reason| ServeError::FaultsInvalid {
        path: path.to_path_buf(),
        reason,
    })
}

impl Faults {
    /// Faults from a table.
    pub fn new(table: FaultTable) -> Self {
        Self {
            table: Mutex::new(table),
            counters: Mutex::new(HashMap::new()),
            requests: Mutex::new(std::collections::VecDeque::new()),
        }
    }

    /// Adds an answer to the request log (admin answers are not logged).
    pub fn record(&self, endpoint: &str, status: u16, request_id: Option<String>, delay_ms: u64) {
        if endpoint == "admin" {
            return;
        }
        if let Ok(mut r) = self.requests.lock() {
            if r.len() >= REQUEST_LOG_LEN {
                r.pop_front();
            }
            r.push_back(RequestRecord {
                endpoint: endpoint.to_string(),
                status,
                request_id,
                delay_ms,
            });
        }
    }

    /// The request log, oldest first.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.requests
            .lock()
            .map(|r| r.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Replaces the table.
    pub fn replace(&self, table: FaultTable) {
        if let Ok(mut t) = self.table.lock() {
            *t = table;
        }
    }

    /// The current table.
    pub fn table(&self) -> FaultTable {
        self.table.lock().map(|t| t.clone()).unwrap_or_default()
    }

    /// Request counts per endpoint.
    pub fn counters(&self) -> BTreeMap<String, u64> {
        self.counters
            .lock()
            .map(|c| c.iter().map(|(k, v)| (k.clone(), *v)).collect())
            .unwrap_or_default()
    }

    /// Sets every counter to zero (by forgetting them).
    pub fn reset_counters(&self) {
        if let Ok(mut c) = self.counters.lock() {
            c.clear();
        }
        if let Ok(mut r) = self.requests.lock() {
            r.clear();
        }
    }

    /// Counts the request and takes the fault that applies to it (consuming one of `times`).
    fn take(&self, endpoint: &str) -> Option<FaultSpec> {
        if endpoint == "admin" {
            return None;
        }
        if let Ok(mut c) = self.counters.lock() {
            *c.entry(endpoint.to_string()).or_insert(0) += 1;
        }
        let mut table = self.table.lock().ok()?;
        let key = if table.contains_key(endpoint) {
            endpoint.to_string()
        } else if table.contains_key("*") {
            "*".to_string()
        } else {
            return None;
        };
        let spec = table.get_mut(&key)?;
        let taken = spec.clone();
        match spec.times {
            Some(0) => {
                table.remove(&key);
                return None;
            }
            Some(1) => {
                table.remove(&key);
            }
            Some(n) => spec.times = Some(n - 1),
            None => {}
        }
        Some(taken)
    }

    /// Counts the request and applies its endpoint's fault to the real response; also returns
    /// the delay added (ms).
    pub async fn apply(&self, endpoint: &str, resp: Response) -> (Outcome, u64) {
        let Some(spec) = self.take(endpoint) else {
            return (Outcome::Send(resp), 0);
        };
        let delay = match (spec.delay_ms, spec.delay_max_ms) {
            (lo, Some(hi)) => {
                // Uniform in [lo, hi] (the table check guarantees lo <= hi).
                let lo = lo.unwrap_or(0);
                match (hi - lo).checked_add(1) {
                    Some(span) => lo + OsRng.next_u64() % span,
                    None => OsRng.next_u64(),
                }
            }
            (Some(ms), None) => ms,
            (None, None) => 0,
        };
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        (Self::fault_response(&spec, resp), delay)
    }

    /// The response as `spec` changes it (after the delay).
    fn fault_response(spec: &FaultSpec, resp: Response) -> Outcome {
        if spec.drop {
            return Outcome::Drop;
        }
        let mut resp = match spec.status {
            Some(status) => Response {
                status,
                headers: vec![("Content-Type".to_string(), "application/json".to_string())],
                body: spec
                    .body
                    .clone()
                    .unwrap_or_else(|| "{}".to_string())
                    .into_bytes(),
            },
            None => resp,
        };
        if let Some(s) = spec.retry_after {
            resp.headers
                .push(("Retry-After".to_string(), s.to_string()));
        }
        if spec.garbage {
            let mut junk = vec![0u8; resp.body.len().max(16)];
            OsRng.fill_bytes(&mut junk);
            resp.body = junk;
        }
        if spec.truncate {
            return Outcome::Truncate(resp);
        }
        match spec.slow_bytes_per_sec {
            Some(rate) => Outcome::Slow(resp, rate),
            None => Outcome::Send(resp),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_consumes_the_fault() {
        let table = parse_table(r#"{"thim": {"status": 503, "times": 2}}"#, false).unwrap();
        let f = Faults::new(table);
        assert!(f.take("thim").is_some());
        assert!(f.take("thim").is_some());
        assert!(f.take("thim").is_none());
        assert_eq!(f.counters().get("thim"), Some(&3));
    }

    #[test]
    fn toml_and_validation() {
        let t = parse_table("[imds-token]\ndelay_ms = 5\nretry_after = 2\n", true).unwrap();
        assert_eq!(t["imds-token"].delay_ms, Some(5));
        assert!(parse_table(r#"{"x": {"delay_ms": 9, "delay_max_ms": 1}}"#, false).is_err());
        assert!(parse_table(r#"{"x": {"bogus": 1}}"#, false).is_err());
        assert!(parse_table(r#"{"x": {"status": 99}}"#, false).is_err());
    }
}
