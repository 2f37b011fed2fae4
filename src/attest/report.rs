//! [`RunReport`]: what one attestation + release run did and how long each step took — the
//! evidence collection, every TPM operation, every HTTP call (step, status, attempts, elapsed
//! time, offset from the start) — and the derived figures the bench prints. It holds no
//! secret (no token, no key byte) so the daemon's state file and `skrctl --json` can show it.
//!
//! `critical_local` accumulates the local work on the serial path (evidence collection until
//! the attest request can go out, token decryption and verification, unwrap); what remains of
//! the total is time spent waiting for the network ([`RunReport::network_ms`]).

use std::time::{Duration, Instant};

use serde::Serialize;

/// One TPM operation (one or more TPM commands; see `docs/errors-attest.md` "TPM operations").
#[derive(Debug, Clone, Serialize)]
pub struct TpmOp {
    /// Operation name (`read_hcl_report`, `quote_pcrs`, `ephemeral_decrypt`, ...).
    pub op: &'static str,
    /// Duration, milliseconds.
    pub ms: f64,
}

/// One HTTP call, retries included.
#[derive(Debug, Clone, Serialize)]
pub struct HttpCall {
    /// The step (`imds-token`, `thim`, `attest`, `key-release`, ...).
    pub step: String,
    /// Attempts made.
    pub attempts: u32,
    /// Duration, milliseconds.
    pub ms: f64,
}

/// Timings of one run.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// `vtpm` or `sev-guest`.
    pub source: &'static str,
    /// Whole run, milliseconds.
    pub total_ms: f64,
    /// Evidence collection (TPM or firmware, transfer key generation), milliseconds.
    pub evidence_ms: f64,
    /// TPM operations, in order.
    pub tpm: Vec<TpmOp>,
    /// HTTP calls, in completion order.
    pub http: Vec<HttpCall>,
    /// Local work on the serial path, milliseconds.
    pub critical_local_ms: f64,
    /// Keys released in this run.
    pub keys_released: usize,
    #[serde(skip)]
    started: Option<Instant>,
}

/// Milliseconds of a duration, as a float.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl RunReport {
    /// A report for a run starting now.
    pub fn start(source: &'static str) -> Self {
        Self {
            source,
            total_ms: 0.0,
            evidence_ms: 0.0,
            tpm: Vec::new(),
            http: Vec::new(),
            critical_local_ms: 0.0,
            keys_released: 0,
            started: Some(Instant::now()),
        }
    }

    /// Milliseconds since the start.
    pub fn now_ms(&self) -> f64 {
        self.started.map_or(0.0, |s| ms(s.elapsed()))
    }

    /// Records an HTTP call (retries included) that took `elapsed`.
    pub fn http(&mut self, step: &str, attempts: u32, elapsed: Duration) {
        self.http.push(HttpCall {
            step: step.to_string(),
            attempts,
            ms: ms(elapsed),
        });
    }

    /// Records a TPM operation.
    pub fn tpm(&mut self, op: &'static str, elapsed: Duration) {
        self.tpm.push(TpmOp {
            op,
            ms: ms(elapsed),
        });
    }

    /// Adds local work on the serial path.
    pub fn local(&mut self, elapsed: Duration) {
        self.critical_local_ms += ms(elapsed);
    }

    /// Adds the work of branches that ran side by side (concurrent releases): their TPM
    /// operations and keys; on the serial path only the longest branch's local work.
    pub fn join_parallel(&mut self, branches: &[RunReport]) {
        for b in branches {
            self.tpm.extend(b.tpm.iter().cloned());
            self.keys_released += b.keys_released;
        }
        self.critical_local_ms += branches
            .iter()
            .map(|b| b.critical_local_ms)
            .fold(0.0, f64::max);
    }

    /// Closes the report (sets the total).
    pub fn finish(&mut self) {
        self.total_ms = self.now_ms();
    }

    /// Time of the run not spent on local work of the serial path: waiting for the network.
    pub fn network_ms(&self) -> f64 {
        (self.total_ms - self.critical_local_ms).max(0.0)
    }

    /// TPM operations per released key (all operations / keys; 0 keys → all operations).
    pub fn tpm_ops_per_release(&self) -> f64 {
        let n = self.tpm.len() as f64;
        if self.keys_released == 0 {
            n
        } else {
            n / self.keys_released as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_figures() {
        let mut r = RunReport::start("vtpm");
        r.local(Duration::from_millis(30));
        r.tpm("quote_pcrs", Duration::from_millis(3));
        r.tpm("ephemeral_decrypt", Duration::from_millis(3));
        r.http("attest", 1, Duration::from_millis(5));
        r.keys_released = 2;
        r.total_ms = 130.0;
        assert!((r.network_ms() - 100.0).abs() < 1e-9);
        assert!((r.tpm_ops_per_release() - 1.0).abs() < 1e-9);
        let j = serde_json::to_value(&r).unwrap();
        assert_eq!(j["http"][0]["step"], "attest");
        assert!(j.get("started").is_none());
    }
}
