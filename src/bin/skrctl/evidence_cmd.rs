//! `skrctl evidence ...`: inspect and verify SEV-SNP evidence (raw reports and Azure HCL reports).
//!
//! This file owns the arguments and the output only; parsing and verification are the library's
//! (`skrd::format::snp`, `skrd::format::hcl`, `skrd::evidence`). One function per subcommand:
//! `verify` (pure checks of a file) and `collect` (reads the vTPM or `/dev/sev-guest`).
//!
//! The clock is read here, in the binary, and passed into the pure verifier as Unix seconds;
//! `--at` replaces it so that old real fixtures (and expired chains) can be evaluated.

use crate::output::{self, Status};
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use skrd::error::{ErrorCode, Problem};
use skrd::format::hcl::{hcl_json, HclReport};
use std::path::{Path, PathBuf};

/// Evidence subcommands.
#[derive(Subcommand)]
pub enum EvidenceCommand {
    /// Verify a raw SEV-SNP attestation report or an Azure HCL report (vTPM NV 0x01400001).
    ///
    /// The format is detected from the content. The report's signature is checked against the
    /// VCEK/VLEK given with --cert, which must chain to a built-in AMD root (or to a root given
    /// with --trust-root). For an HCL report, the runtime data must also be bound to the report's
    /// REPORT_DATA. Exit status: 0 verified, 1 rejected, 2 unusable input.
    Verify(VerifyArgs),
    /// Collect the evidence this machine produces into a directory (for support cases).
    ///
    /// vTPM: the HCL report, AK public and certificate, a PCR0-7 quote, the certified ephemeral
    /// key and the TCG event log. /dev/sev-guest: an extended report over fresh runtime data, the
    /// runtime data and the host's certificate table. Nothing secret is written.
    Collect(CollectArgs),
}

/// Arguments of `skrctl evidence collect`.
#[derive(Args)]
pub struct CollectArgs {
    /// Evidence source (default: `evidence.source` from the configuration, itself "auto").
    #[arg(long, value_enum, value_name = "SOURCE")]
    source: Option<SourceArg>,

    /// Directory to write the files into (created when absent; files in it are replaced).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,

    /// Print one JSON object on stdout instead of a summary.
    #[arg(long)]
    json: bool,
}

/// `--source` values.
#[derive(Clone, Copy, clap::ValueEnum)]
enum SourceArg {
    /// The vTPM's HCL report (Azure confidential VMs).
    Vtpm,
    /// Raw reports from /dev/sev-guest.
    SevGuest,
}

/// Arguments of `skrctl evidence verify`.
#[derive(Args)]
pub struct VerifyArgs {
    /// The evidence: a 1184-byte SEV-SNP report or an HCL report ("HCLA" magic).
    #[arg(value_name = "FILE")]
    file: PathBuf,

    /// A certificate file: PEM (one or more certificates), DER, or the THIM document saved from
    /// IMDS. Give the VCEK or VLEK; the ASK/ASVK and ARK default to the built-in AMD
    /// certificates. Repeatable.
    #[arg(long = "cert", value_name = "FILE")]
    certs: Vec<PathBuf>,

    /// TEST CHAINS ONLY: also trust this ARK (PEM or DER), e.g. the skr-emulator's test AMD
    /// chain. Never use it with production evidence: anyone can make a root that signs a
    /// "valid" report. Repeatable.
    #[arg(long = "trust-root", value_name = "FILE")]
    trust_roots: Vec<PathBuf>,

    /// Check certificate validity at this time (RFC 3339, e.g. 2024-01-01T00:00:00Z) instead of
    /// now.
    #[arg(long, value_name = "RFC3339")]
    at: Option<String>,

    /// Print one JSON object on stdout instead of a summary.
    #[arg(long)]
    json: bool,
}

/// Runs an evidence subcommand.
pub fn run(cmd: EvidenceCommand, config: Option<&Path>) -> Status {
    match cmd {
        EvidenceCommand::Verify(args) => verify(&args, config),
        EvidenceCommand::Collect(args) => collect(&args, config),
    }
}

/// The configuration (for `trust.amd_test_roots` and the evidence source), or the problem that
/// makes it unusable. Without `--config` and without /etc/skrd/skrd.toml the defaults apply.
fn settings(config: Option<&Path>) -> Result<skrd::config::Settings, Problem> {
    skrd::config::load(config).map_err(|e| e.problem())
}

/// What the evidence file contains, decided from its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// A raw 1184-byte SEV-SNP attestation report.
    SnpReport,
    /// An Azure HCL report.
    HclReport,
}

impl Format {
    fn name(self) -> &'static str {
        match self {
            Self::SnpReport => "snp-report",
            Self::HclReport => "hcl-report",
        }
    }
}

/// Size of an SEV-SNP attestation report (PROTOCOLS.md §3.2).
const SNP_REPORT_LEN: usize = 1184;

/// Detects the evidence format from the content (never from the file name).
fn detect(bytes: &[u8]) -> Option<Format> {
    if bytes.starts_with(&skrd::format::hcl::report::MAGIC) {
        return Some(Format::HclReport);
    }
    let version = bytes
        .get(0..4)
        .and_then(|v| <[u8; 4]>::try_from(v).ok())
        .map(u32::from_le_bytes);
    // VERSION 2..5 are defined (PROTOCOLS.md §3.2). Version 1 (early firmware) is recognised so
    // that the SNP parser can say that it is unsupported instead of "unrecognised".
    match version {
        Some(1..=5) if bytes.len() == SNP_REPORT_LEN => Some(Format::SnpReport),
        _ => None,
    }
}

/// The verdict and the facts printed by `verify`.
struct Outcome {
    format: Format,
    /// The first check that failed, if any.
    error: Option<Problem>,
    /// `report_json` of the SNP report (the embedded one for HCL reports).
    snp: Value,
    /// `hcl_json` of the HCL report.
    hcl: Option<Value>,
    /// The chain ends in a test ARK given with `--trust-root`.
    test_root: bool,
}

/// `skrctl evidence verify`.
fn verify(args: &VerifyArgs, config: Option<&Path>) -> Status {
    let json = args.json;
    let settings = match settings(config) {
        Ok(s) => s,
        Err(p) => return output::unusable(&p, json),
    };
    let now = match output::parse_at(args.at.as_deref()) {
        Ok(t) => t,
        Err(p) => return output::unusable(&p, json),
    };
    let bytes = match output::read_input(&args.file, "evidence") {
        Ok(b) => b,
        Err(p) => return output::unusable(&p, json),
    };
    let Some(format) = detect(&bytes) else {
        let problem = Problem::new(
            "unrecognised-evidence",
            format!(
                "{} is neither an SEV-SNP attestation report (1184 bytes, VERSION 2..5 at offset \
                 0) nor an Azure HCL report (magic \"HCLA\"); it has {} bytes starting with {}; \
                 pass the raw report or the contents of vTPM NV index 0x01400001",
                args.file.display(),
                bytes.len(),
                hex::encode(bytes.get(..8).unwrap_or(&bytes))
            ),
        );
        return output::unusable(&problem, json);
    };

    // An HCL report must parse before anything else is judged.
    let hcl = match format {
        Format::HclReport => match HclReport::parse(&bytes) {
            Ok(r) => Some(r),
            Err(e) => return output::unusable(&e.problem(), json),
        },
        Format::SnpReport => None,
    };
    let snp_bytes = hcl
        .as_ref()
        .map_or(bytes.as_slice(), |h| h.snp_report_bytes());

    let inputs = match load_inputs(args, &settings.trust.amd_test_roots) {
        Ok(i) => i,
        Err(p) => return output::unusable(&p, json),
    };
    let snp = match snp_check::verify(snp_bytes, &inputs, now) {
        Ok(s) => s,
        Err(p) => return output::unusable(&p, json),
    };

    if !inputs.trust_roots.is_empty() {
        eprintln!(
            "warning: --trust-root / trust.amd_test_roots add a root that is not AMD's: use it for test chains only; \
             a report verified against it proves nothing about real hardware"
        );
    }
    let mut error = snp.result.err();
    let hcl_value = hcl.as_ref().map(|h| {
        let binding = h.check_binding();
        if error.is_none() {
            if let Err(e) = &binding {
                error = Some(e.problem());
            }
        }
        hcl_json(h, &binding)
    });
    let outcome = Outcome {
        format,
        error,
        snp: snp.json,
        hcl: hcl_value,
        test_root: snp.test_root,
    };
    print_outcome(&outcome, json)
}

/// `skrctl evidence collect`.
fn collect(args: &CollectArgs, config: Option<&Path>) -> Status {
    use skrd::config::EvidenceSource as Configured;
    use skrd::evidence::{self, CollectRequest, SourceConfig, SourceSelection};
    let json = args.json;
    let settings = match settings(config) {
        Ok(s) => s,
        Err(p) => return output::unusable(&p, json),
    };
    let selection = match (args.source, settings.evidence.source) {
        (Some(SourceArg::Vtpm), _) | (None, Configured::Vtpm) => SourceSelection::Vtpm,
        (Some(SourceArg::SevGuest), _) | (None, Configured::SevGuest) => SourceSelection::SevGuest,
        (None, Configured::Auto) => SourceSelection::Auto,
    };
    let sources = SourceConfig {
        tcti: settings.evidence.tcti.clone(),
        event_log: settings.evidence.event_log.clone(),
    };
    // Fresh runtime data, so that a raw report shows the REPORT_DATA binding working; the vTPM
    // quote gets the same nonce as qualifying data.
    let nonce = fresh_nonce();
    let runtime_data = serde_json::to_vec(&json!({
        "purpose": "skrctl evidence collect",
        "nonce": hex::encode(nonce),
    }))
    .unwrap_or_default();
    let mut request = CollectRequest::for_runtime_data(&runtime_data);
    request.quote_nonce = nonce.to_vec();
    request.extended = true;
    let evidence = match evidence::collect(selection, &sources, &request) {
        Ok(e) => e,
        Err(e) => return output::unusable(&e.problem(), json),
    };
    let files = match write_evidence(&args.out, &evidence.files()) {
        Ok(f) => f,
        Err(p) => return output::unusable(&p, json),
    };
    let kind = serde_json::to_value(evidence.kind()).unwrap_or(Value::Null);
    if json {
        output::print_json(&json!({ "source": kind, "dir": args.out, "files": files }));
    } else {
        println!(
            "collected {} evidence into {}",
            kind.as_str().unwrap_or("?"),
            args.out.display()
        );
        for f in &files {
            println!(
                "  {:<30} {:>6} bytes  sha256 {}",
                f["name"].as_str().unwrap_or(""),
                f["bytes"],
                f["sha256"].as_str().unwrap_or("")
            );
        }
    }
    Status::Ok
}

/// 32 random bytes from the kernel.
fn fresh_nonce() -> [u8; 32] {
    use rand_core::RngCore;
    let mut nonce = [0u8; 32];
    rand_core::OsRng.fill_bytes(&mut nonce);
    nonce
}

/// Writes each (name, bytes) into `dir`; returns `{"name", "bytes", "sha256"}` for each.
fn write_evidence(dir: &Path, files: &[(&str, Vec<u8>)]) -> Result<Vec<Value>, Problem> {
    use sha2::{Digest, Sha256};
    let unwritable = |path: &Path, e: std::io::Error| {
        Problem::new(
            "output-unwritable",
            format!(
                "cannot write {}: {e}; choose a writable --out directory",
                path.display()
            ),
        )
    };
    std::fs::create_dir_all(dir).map_err(|e| unwritable(dir, e))?;
    files
        .iter()
        .map(|(name, bytes)| {
            let path = dir.join(name);
            std::fs::write(&path, bytes).map_err(|e| unwritable(&path, e))?;
            Ok(json!({
                "name": name,
                "bytes": bytes.len(),
                "sha256": hex::encode(Sha256::digest(bytes)),
            }))
        })
        .collect()
}

/// Certificates and extra roots read from the files given on the command line.
struct Inputs {
    /// (file, bytes) of each `--cert`.
    certs: Vec<(PathBuf, Vec<u8>)>,
    /// (file, bytes) of each `--trust-root`.
    trust_roots: Vec<(PathBuf, Vec<u8>)>,
}

/// The `vcek-missing` problem, saying where to get the VCEK.
fn vcek_missing(why: &str) -> Problem {
    Problem::new(
        "vcek-missing",
        format!(
            "{why}: pass the VCEK with --cert; on Azure fetch it from THIM: curl -H Metadata:true \
             http://169.254.169.254/metadata/THIM/amd/certification > thim.json, then \
             --cert thim.json; elsewhere from AMD KDS for the report's chip id and reported TCB"
        ),
    )
}

/// Reads the `--cert` files and the test roots (`--trust-root` plus `trust.amd_test_roots`).
fn load_inputs(args: &VerifyArgs, configured_roots: &[PathBuf]) -> Result<Inputs, Problem> {
    if args.certs.is_empty() {
        return Err(vcek_missing("no VCEK/VLEK given"));
    }
    let certs = args
        .certs
        .iter()
        .map(|p| output::read_input(p, "certificate").map(|b| (p.clone(), b)))
        .collect::<Result<Vec<_>, _>>()?;
    let trust_roots = args
        .trust_roots
        .iter()
        .chain(configured_roots)
        .map(|p| output::read_input(p, "trust root").map(|b| (p.clone(), b)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Inputs { certs, trust_roots })
}

/// Prints the outcome and returns the exit status (0 verified, 1 rejected).
fn print_outcome(outcome: &Outcome, json: bool) -> Status {
    let verified = outcome.error.is_none();
    if json {
        let mut doc = json!({
            "format": outcome.format.name(),
            "verified": verified,
            "error": outcome.error,
            "snp": outcome.snp,
        });
        if let (Some(hcl), Some(obj)) = (&outcome.hcl, doc.as_object_mut()) {
            obj.insert("hcl".to_string(), hcl.clone());
        }
        output::print_json(&doc);
    } else {
        output::print_text(&human_summary(outcome));
    }
    if verified {
        Status::Ok
    } else {
        Status::Refused
    }
}

/// A compact readable summary, built from the JSON forms so that it shows what `--json` shows.
fn human_summary(outcome: &Outcome) -> String {
    let mut out = String::new();
    let mut line = |label: &str, value: String| out.push_str(&format!("{label:<16}{value}\n"));
    let s = &outcome.snp;
    line("format", outcome.format.name().to_string());
    for (label, value) in snp_check::summary_lines(s) {
        line(label, value);
    }
    if let Some(h) = &outcome.hcl {
        line(
            "hcl",
            format!(
                "version {}, runtime data {} ({})",
                h["version"],
                if h["runtime_data_bound"] == true {
                    "bound"
                } else {
                    "NOT bound"
                },
                text(&h["report_data_hash_type"])
            ),
        );
        line("vm id", text(&h["vm_unique_id"]));
        let keys: Vec<String> = h["keys"]
            .as_array()
            .map(|ks| {
                ks.iter()
                    .map(|k| {
                        let ops: Vec<String> = k["key_ops"]
                            .as_array()
                            .map(|o| o.iter().map(text).collect())
                            .unwrap_or_default();
                        format!(
                            "{} ({} {})",
                            text(&k["kid"]),
                            text(&k["kty"]),
                            ops.join(",")
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        line(
            "runtime keys",
            if keys.is_empty() {
                "-".into()
            } else {
                keys.join(", ")
            },
        );
        if let Some(ud) = h["user_data"].as_str() {
            let zero = ud.bytes().all(|b| b == b'0');
            line(
                "user data",
                if zero { "zeros".into() } else { ud.to_string() },
            );
        }
    }
    match &outcome.error {
        None if outcome.test_root => out.push_str(
            "VERIFIED against a TEST root (--trust-root or trust.amd_test_roots; not real AMD hardware)\n",
        ),
        None => out.push_str("VERIFIED\n"),
        Some(p) => out.push_str(&format!("REJECTED: {}\n  code: {}\n", p.message, p.code)),
    }
    out
}

/// A JSON value as display text: strings without quotes, null as "-".
fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The seam to `skrd::format::snp`: verification and its JSON/summary.
mod snp_check {
    use super::{text, Inputs};
    use serde_json::Value;
    use skrd::error::{ErrorCode, Problem};
    use skrd::format::snp::{
        parse_certs, parse_thim_document, report_json, report_json_with_product, verified_json,
        verify_report, AmdCert, ArkTrust, CertRole, Report, TrustStore,
    };
    use std::path::Path;

    /// The SNP verdict: the report's JSON (always), and Ok or the refusal.
    pub struct SnpOutcome {
        /// `report_json` of the report, plus `chain` (what verified it, or null).
        pub json: Value,
        /// Ok, or the first check that refused the report.
        pub result: Result<(), Problem>,
        /// The ARK that verified the report is a test root given with `--trust-root`.
        pub test_root: bool,
    }

    /// Prefixes a library problem with the file it came from.
    fn in_file(path: &Path, problem: Problem) -> Problem {
        Problem {
            code: problem.code,
            message: format!("{}: {}", path.display(), problem.message),
        }
    }

    /// Certificates from PEM, DER or a certificate table, or from a THIM document (JSON, or
    /// base64 of it as ACI stores it) saved from IMDS.
    fn certs_of(path: &Path, bytes: &[u8]) -> Result<Vec<AmdCert>, Problem> {
        let looks_like_json = bytes.trim_ascii().first() == Some(&b'{');
        if looks_like_json {
            return parse_thim_document(bytes)
                .map(|t| t.all_certs())
                .map_err(|e| in_file(path, e.problem()));
        }
        parse_certs(bytes).or_else(|e| {
            // Not a certificate: maybe base64 of a THIM document; if not, report the first error.
            parse_thim_document(bytes)
                .map(|t| t.all_certs())
                .map_err(|_| in_file(path, e.problem()))
        })
    }

    /// The built-in AMD roots plus the `--trust-root` files (ARKs trusted, ASK/ASVKs usable).
    fn trust_store(inputs: &Inputs) -> Result<TrustStore, Problem> {
        let mut trust = TrustStore::with_builtin_roots().map_err(|e| e.problem())?;
        for (path, bytes) in &inputs.trust_roots {
            for cert in certs_of(path, bytes)? {
                match cert.role {
                    CertRole::Ark => trust.trust_ark(cert).map_err(|e| in_file(path, e.problem()))?,
                    role if role.is_leaf() => {
                        return Err(Problem::new(
                            "invalid-argument",
                            format!(
                                "{}: --trust-root takes an ARK (optionally with its ASK/ASVK),                                  not a {} certificate; pass the VCEK/VLEK with --cert",
                                path.display(),
                                role.as_str()
                            ),
                        ))
                    }
                    _ => trust.add_intermediate(cert),
                }
            }
        }
        Ok(trust)
    }

    /// Parses and verifies one SNP report. `Err` means the input is unusable (exit 2).
    pub fn verify(report: &[u8], inputs: &Inputs, now: i64) -> Result<SnpOutcome, Problem> {
        let report = Report::parse(report).map_err(|e| e.problem())?;
        let mut supplied = Vec::new();
        for (path, bytes) in &inputs.certs {
            supplied.extend(certs_of(path, bytes)?);
        }
        if !supplied.iter().any(|c| c.role.is_leaf()) {
            return Err(super::vcek_missing(
                "the --cert files hold no VCEK or VLEK (only CA certificates)",
            ));
        }
        let trust = trust_store(inputs)?;
        Ok(match verify_report(&report, &supplied, &trust, now) {
            Ok(v) => {
                let mut json = report_json_with_product(&report, Some(v.product));
                if let Some(obj) = json.as_object_mut() {
                    obj.insert("chain".into(), verified_json(&v));
                }
                SnpOutcome {
                    json,
                    result: Ok(()),
                    test_root: v.ark_trust == ArkTrust::ExplicitlyTrusted,
                }
            }
            Err(e) => {
                let mut json = report_json(&report);
                if let Some(obj) = json.as_object_mut() {
                    obj.insert("chain".into(), Value::Null);
                }
                SnpOutcome {
                    json,
                    result: Err(e.problem()),
                    test_root: false,
                }
            }
        })
    }

    fn tcb_text(t: &Value) -> String {
        if t.get("snp").is_none() {
            return format!("raw {}", text(&t["raw"]));
        }
        let mut s = String::new();
        if let Some(fmc) = t.get("fmc") {
            s.push_str(&format!("fmc {} ", text(fmc)));
        }
        s.push_str(&format!(
            "bl {} tee {} snp {} ucode {} (tcbm {})",
            text(&t["bootloader"]),
            text(&t["tee"]),
            text(&t["snp"]),
            text(&t["microcode"]),
            text(&t["raw"])
        ));
        s
    }

    /// Summary lines (label, value) for the human output.
    pub fn summary_lines(snp: &Value) -> Vec<(&'static str, String)> {
        let mut lines = Vec::new();
        if snp.is_null() {
            return lines;
        }
        lines.push(("report version", text(&snp["version"])));
        lines.push(("product", text(&snp["product"])));
        lines.push(("signing key", text(&snp["signing_key"])));
        let chip = snp["chip_id"].as_str().unwrap_or("");
        lines.push(("chip id", format!("{}...", chip.get(..16).unwrap_or(chip))));
        lines.push(("measurement", text(&snp["measurement"])));
        lines.push(("reported tcb", tcb_text(&snp["reported_tcb"])));
        let p = &snp["policy"];
        let flag = |name: &str, v: &Value| {
            format!(
                "{name}={}",
                if v == &Value::Bool(true) { "yes" } else { "no" }
            )
        };
        lines.push((
            "policy",
            format!(
                "{} abi {}.{} {} {} {}",
                text(&p["raw"]),
                text(&p["abi_major"]),
                text(&p["abi_minor"]),
                flag("debug", &p["debug_allowed"]),
                flag("smt", &p["smt_allowed"]),
                flag("migrate-ma", &p["migrate_ma_allowed"]),
            ),
        ));
        lines.push(("vmpl", text(&snp["vmpl"])));
        lines.push(("report data", text(&snp["report_data"])));
        let chain = &snp["chain"];
        if !chain.is_null() {
            lines.push((
                "chain",
                format!(
                    "{} <- {} <- {} ({})",
                    text(&chain["leaf"]["subject"]),
                    text(&chain["intermediate"]["subject"]),
                    text(&chain["ark"]["subject"]),
                    text(&chain["ark_trust"])
                ),
            ));
        }
        lines
    }
}
