//! `skrctl attest [--source vtpm|sev-guest] [--json]`: collect evidence, attest to the
//! configured provider, verify the token and print its claims (PROTOCOLS.md §1, §5).
//! Also the helpers `skrctl release` shares: opening the evidence source, the runtime, and the
//! mapping of a [`FlowError`] to an exit status.
//!
//! Exit status: 0 attested and verified; 1 the provider refused the evidence or the token does
//! not verify / bind; 2 unusable setup (configuration, no evidence source, network outage).

use std::path::Path;
use std::time::Duration;

use clap::{Args, ValueEnum};
use serde_json::{json, Value};
use skrd::attest::collect::Source;
use skrd::attest::error::FlowError;
use skrd::attest::report::RunReport;
use skrd::attest::services::Services;
use skrd::config::{EvidenceSource, Settings};
use skrd::error::{ErrorCode, Problem};
use skrd::net::Deadline;
use skrd::release::{roots::load_roots, run, KeyRequest, RunOutcome};

use crate::output::{self, print_json, unusable, Status};

/// `--source`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SourceArg {
    /// The vTPM of an Azure confidential VM (AzureGuest).
    Vtpm,
    /// Raw SEV-SNP reports from /dev/sev-guest (SevSnpVm).
    SevGuest,
}

/// Arguments of `skrctl attest`.
#[derive(Debug, Args)]
pub struct AttestArgs {
    /// Evidence source (default: [evidence] source of the configuration, "auto").
    #[arg(long, value_enum)]
    pub source: Option<SourceArg>,
    /// Print one JSON object: {"verified", "error", "source", "issuer", "expires_at", "claims", "timings"}.
    #[arg(long)]
    pub json: bool,
}

/// The configuration or the problem that makes it unusable.
pub fn settings(config: Option<&Path>) -> Result<Settings, Problem> {
    skrd::config::load(config).map_err(|e| e.problem())
}

/// Opens the evidence source: `--source`, else `[evidence] source` (auto: the vTPM when it
/// holds an HCL report, else /dev/sev-guest).
pub fn open_source(arg: Option<SourceArg>, s: &Settings) -> Result<Source, Problem> {
    let choice = match arg {
        Some(SourceArg::Vtpm) => EvidenceSource::Vtpm,
        Some(SourceArg::SevGuest) => EvidenceSource::SevGuest,
        None => s.evidence.source,
    };
    skrd::attest::open::open_source(s, choice).map_err(|e| e.problem())
}

/// A current-thread runtime for one run (the blocking TPM work goes to its blocking pool).
pub fn block_on<F: std::future::Future>(f: F) -> Result<F::Output, Problem> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            Problem::new(
                "internal-task-failed",
                format!("cannot start the runtime: {e}"),
            )
        })?;
    Ok(rt.block_on(f))
}

/// The run's deadline: `[boot] deadline`.
pub fn deadline(s: &Settings) -> Deadline {
    Deadline::after(s.boot.deadline.max(Duration::from_secs(1)))
}

/// Runs attestation (and the releases of `keys`) with the configured services.
pub fn run_flow(
    s: &Settings,
    source: Source,
    keys: &[KeyRequest],
) -> Result<Result<RunOutcome, FlowError>, Problem> {
    let services = Services::from_settings(s).map_err(|e| e.problem())?;
    let roots = if keys.is_empty() {
        Vec::new()
    } else {
        load_roots(&services.ca_files).map_err(|e| e.problem())?
    };
    let deadline = deadline(s);
    block_on(run(&services, source, keys, &roots, &deadline))
}

/// Reports a failed run and returns its status (1 refusal, 2 otherwise).
pub fn flow_failed(e: &FlowError, json: bool, extra: Value) -> Status {
    let problem = e.problem();
    let status = if e.is_refusal() {
        Status::Refused
    } else {
        Status::Unusable
    };
    if json {
        let mut out = json!({"error": problem});
        if let (Some(o), Value::Object(extra)) = (out.as_object_mut(), extra) {
            o.extend(extra);
        }
        print_json(&out);
    } else {
        eprintln!("error: {}\n  code: {}", problem.message, problem.code);
    }
    status
}

/// The timings as JSON (no secrets).
pub fn timings_json(r: &RunReport) -> Value {
    let mut v = serde_json::to_value(r).unwrap_or(Value::Null);
    v["network_ms"] = json!(r.network_ms());
    v
}

fn claim<'a>(claims: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(claims, |v, k| v.get(*k))
}

/// Runs `skrctl attest`.
pub fn run_attest(args: &AttestArgs, config: Option<&Path>) -> Status {
    let s = match settings(config) {
        Ok(s) => s,
        Err(p) => return unusable(&p, args.json),
    };
    let source = match open_source(args.source, &s) {
        Ok(src) => src,
        Err(p) => return unusable(&p, args.json),
    };
    let source_name = source.name();
    let outcome = match run_flow(&s, source, &[]) {
        Err(p) => return unusable(&p, args.json),
        Ok(Err(e)) => {
            return flow_failed(
                &e,
                args.json,
                json!({"verified": false, "source": source_name}),
            )
        }
        Ok(Ok(o)) => o,
    };
    let a = &outcome.attestation;
    if args.json {
        print_json(&json!({
            "verified": true,
            "error": null,
            "source": source_name,
            "issuer": a.issuer,
            "expires_at": output::rfc3339(a.expires_at),
            "transfer_key": a.holder.kid(),
            "claims": a.claims,
            "timings": timings_json(&outcome.report),
        }));
    } else {
        let text = |path: &[&str]| {
            claim(&a.claims, path).map_or_else(
                || "(absent)".to_string(),
                |v| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                },
            )
        };
        let mut out = String::new();
        out.push_str(&format!("attested ({source_name}) and verified\n"));
        out.push_str(&format!("  issuer: {}\n", a.issuer));
        out.push_str(&format!(
            "  expires: {}\n",
            output::rfc3339(a.expires_at).as_str().unwrap_or("?")
        ));
        out.push_str(&format!(
            "  x-ms-attestation-type: {}\n",
            text(&["x-ms-attestation-type"])
        ));
        if a.claims.get("x-ms-isolation-tee").is_some() {
            out.push_str(&format!(
                "  x-ms-isolation-tee: {} ({})\n",
                text(&["x-ms-isolation-tee", "x-ms-attestation-type"]),
                text(&["x-ms-isolation-tee", "x-ms-compliance-status"])
            ));
            out.push_str(&format!("  vm id: {}\n", text(&["x-ms-azurevm-vmid"])));
        } else {
            out.push_str(&format!(
                "  x-ms-compliance-status: {}\n",
                text(&["x-ms-compliance-status"])
            ));
            out.push_str(&format!(
                "  launch measurement: {}\n",
                text(&["x-ms-sevsnpvm-launchmeasurement"])
            ));
        }
        out.push_str(&format!("  keys are wrapped to: {}\n", a.holder.kid()));
        out.push_str(&format!(
            "  time: {:.0} ms (evidence {:.0} ms, network {:.0} ms)\n",
            outcome.report.total_ms,
            outcome.report.evidence_ms,
            outcome.report.network_ms()
        ));
        output::print_text(&out);
    }
    Status::Ok
}
