//! `skrctl evidence verify` run as a process on real fixtures: exit codes, `--json` schema, error
//! codes, human output.
//!
//! Which certificate verifies which report was established independently with python3
//! `cryptography` (ECDSA P-384 over report[0..0x2A0] with R/S little-endian, PROTOCOLS.md §3.5):
//! - trustee/az-snp-vtpm/hcl-report.bin is signed by the VCEK in trustee/az-snp-vtpm/vcek.pem
//!   (valid 2023-05-02 .. 2030-05-02; chain VCEK, ASK Milan, ARK Milan);
//! - trustee/historical/az-hcl-data.bin by trustee/historical/az-vcek.pem (2023-01-24 .. 2030-01-24);
//! - kinvolk hcl-report-snp.bin by none of the fixtures: its CHIP_ID starts 3a5d5b1d059d193e
//!   while the VCEK in kinvolk certs.pem has hwID da8a5695b5aeafdb (python: extension
//!   1.3.6.1.4.1.3704.1.4), so that published pair must be rejected.

// Tests panic on failure by design.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn real(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/real")
        .join(path)
}

/// Runs skrctl with these arguments; returns (exit code, stdout, stderr).
fn skrctl(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_skrctl"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// Runs `skrctl evidence verify ... --json`; returns (exit code, the one JSON object).
fn verify_json(args: &[&str]) -> (i32, Value) {
    let mut all = vec!["evidence", "verify"];
    all.extend_from_slice(args);
    all.push("--json");
    let (code, stdout, stderr) = skrctl(&all);
    let doc: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!("stdout is not one JSON object ({e}): {stdout}\nstderr: {stderr}")
    });
    assert!(doc.is_object(), "{doc}");
    (code, doc)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn temp_file(bytes: &[u8]) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    std::io::Write::write_all(&mut f, bytes).unwrap();
    f
}

/// `{"error": {"code": <code>, "message": str}}` and nothing else that claims a verdict.
fn assert_unusable(code: i32, doc: &Value, expected_code: &str) {
    assert_eq!(code, 2, "{doc}");
    assert_eq!(doc["error"]["code"], expected_code, "{doc}");
    assert!(
        doc["error"]["message"].as_str().unwrap().len() > 20,
        "{doc}"
    );
    assert!(doc.get("verified").is_none(), "{doc}");
}

#[test]
fn garbage_file_is_unrecognised() {
    let f = temp_file(b"this is not evidence at all\n");
    let (code, doc) = verify_json(&[
        s(f.path()),
        "--cert",
        s(&real("trustee/az-snp-vtpm/vcek.pem")),
    ]);
    assert_unusable(code, &doc, "unrecognised-evidence");
    // 1184 bytes but VERSION 0x11223344: not a report either (detection by content, not size).
    let f = temp_file(&[0x44, 0x33, 0x22, 0x11].repeat(296));
    let (code, doc) = verify_json(&[
        s(f.path()),
        "--cert",
        s(&real("trustee/az-snp-vtpm/vcek.pem")),
    ]);
    assert_unusable(code, &doc, "unrecognised-evidence");
    // A certificate is not evidence, whatever its name.
    let (code, doc) = verify_json(&[
        s(&real("trustee/az-snp-vtpm/vcek.pem")),
        "--cert",
        s(&real("trustee/az-snp-vtpm/vcek.pem")),
    ]);
    assert_unusable(code, &doc, "unrecognised-evidence");
}

#[test]
fn missing_file_is_unusable() {
    let (code, doc) = verify_json(&[
        "/nonexistent/evidence.bin",
        "--cert",
        "/nonexistent/vcek.pem",
    ]);
    assert_unusable(code, &doc, "file-unreadable");
    assert!(doc["error"]["message"]
        .as_str()
        .unwrap()
        .contains("/nonexistent/evidence.bin"));
    // Missing certificate file, readable evidence.
    let (code, doc) = verify_json(&[
        s(&real("trustee/az-snp-vtpm/hcl-report.bin")),
        "--cert",
        "/nonexistent/vcek.pem",
    ]);
    assert_unusable(code, &doc, "file-unreadable");
}

#[test]
fn truncated_hcl_is_unusable() {
    let bytes = std::fs::read(real("trustee/az-snp-vtpm/hcl-report.bin")).unwrap();
    for (len, expected) in [
        (0x10, "hcl-truncated"),
        (0x300, "hcl-truncated"),
        (0x4D0, "hcl-truncated"),
        (0x600, "hcl-variable-data-too-large"),
    ] {
        let f = temp_file(&bytes[..len]);
        let (code, doc) = verify_json(&[
            s(f.path()),
            "--cert",
            s(&real("trustee/az-snp-vtpm/vcek.pem")),
        ]);
        assert_unusable(code, &doc, expected);
    }
}

#[test]
fn tdx_hcl_report_is_refused_with_its_own_code() {
    for path in [
        "kinvolk-azure-cvm-tooling/hcl-report-tdx.bin",
        "constellation/azure-tdx/hclreport.bin",
    ] {
        let (code, doc) = verify_json(&[
            s(&real(path)),
            "--cert",
            s(&real("trustee/az-snp-vtpm/vcek.pem")),
        ]);
        assert_unusable(code, &doc, "hcl-tdx-unsupported");
        assert!(doc["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("TDX confidential VMs are not supported yet"));
    }
}

#[test]
fn no_vcek_says_where_to_get_it() {
    let (code, doc) = verify_json(&[s(&real("trustee/az-snp-vtpm/hcl-report.bin"))]);
    assert_unusable(code, &doc, "vcek-missing");
    let msg = doc["error"]["message"].as_str().unwrap();
    assert!(msg.contains("--cert"), "{msg}");
    assert!(
        msg.contains("http://169.254.169.254/metadata/THIM/amd/certification"),
        "{msg}"
    );
    // Human form goes to stderr with the code.
    let (code, stdout, stderr) = skrctl(&[
        "evidence",
        "verify",
        s(&real("trustee/az-snp-vtpm/hcl-report.bin")),
    ]);
    assert_eq!(code, 2);
    assert!(stdout.is_empty());
    assert!(stderr.contains("vcek-missing"), "{stderr}");
}

#[test]
fn bad_at_is_a_usage_error() {
    let (code, doc) = verify_json(&[
        s(&real("trustee/az-snp-vtpm/hcl-report.bin")),
        "--cert",
        s(&real("trustee/az-snp-vtpm/vcek.pem")),
        "--at",
        "yesterday",
    ]);
    assert_unusable(code, &doc, "invalid-argument");
    // clap usage errors exit 2 as well.
    let (code, _, _) = skrctl(&["evidence", "verify"]);
    assert_eq!(code, 2);
}

/// A time at which every real VCEK used below is valid (they were issued 2023-01 .. 2025-01 and
/// are valid 7 years: `openssl x509 -noout -dates`).
const AT_VALID: &str = "2025-06-01T00:00:00Z";

fn is_hex(v: &Value, len: usize) -> bool {
    v.as_str()
        .is_some_and(|s| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The `snp` object: types of the fields the man page and the human output rely on.
fn assert_snp_schema(snp: &Value) {
    assert!(snp["version"].is_u64(), "{snp}");
    assert!(snp["product"].is_string() || snp["product"].is_null());
    assert!(snp["signing_key"].is_string());
    assert!(is_hex(&snp["chip_id"], 128));
    assert!(is_hex(&snp["measurement"], 96));
    assert!(is_hex(&snp["report_data"], 128));
    assert!(is_hex(&snp["host_data"], 64));
    assert!(snp["vmpl"].is_u64());
    assert!(snp["guest_svn"].is_u64());
    assert!(snp["policy"]["debug_allowed"].is_boolean());
    assert!(snp["policy"]["smt_allowed"].is_boolean());
    assert!(snp["policy"]["raw"].is_string());
    assert!(snp["reported_tcb"]["raw"].is_string());
    assert!(snp["platform_info"].is_object());
    assert!(snp["key_info"].is_object());
    assert!(
        snp.get("chain").is_some(),
        "chain must be present (object or null)"
    );
}

/// The `hcl` object, per `hcl_json`.
fn assert_hcl_schema(hcl: &Value) {
    assert!(hcl["version"].is_u64(), "{hcl}");
    assert!(hcl["request_type"].is_u64());
    assert_eq!(hcl["report_type"], "snp");
    assert_eq!(hcl["report_data_hash_type"], "sha256");
    assert!(hcl["runtime_data_bound"].is_boolean());
    assert!(hcl["vm_unique_id"].is_string() || hcl["vm_unique_id"].is_null());
    for k in hcl["keys"].as_array().unwrap() {
        assert!(k["kid"].is_string());
        assert!(k["kty"].is_string());
        assert!(k["key_ops"]
            .as_array()
            .unwrap()
            .iter()
            .all(Value::is_string));
    }
    let cfg = &hcl["vm_configuration"];
    assert!(cfg.is_object() || cfg.is_null());
    assert!(hcl["user_data"].is_null() || is_hex(&hcl["user_data"], 128));
    assert!(is_hex(&hcl["runtime_data_sha256"], 64));
}

fn hcl_expected(path: &str) -> Value {
    let doc: Value = serde_json::from_str(include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/independent/hcl_expected.json"
    )))
    .unwrap();
    doc["reports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["path"] == path)
        .unwrap()
        .clone()
}

#[test]
fn hcl_report_verifies_with_its_vcek() {
    // PEM bundle (VCEK, ASK, ARK) and HCL v1 with a Milan v2 report.
    let (code, doc) = verify_json(&[
        s(&real("trustee/az-snp-vtpm/hcl-report.bin")),
        "--cert",
        s(&real("trustee/az-snp-vtpm/vcek.pem")),
        "--at",
        AT_VALID,
    ]);
    assert_eq!(code, 0, "{doc}");
    assert_eq!(doc["format"], "hcl-report");
    assert_eq!(doc["verified"], true);
    assert!(doc["error"].is_null());
    assert_snp_schema(&doc["snp"]);
    assert_hcl_schema(&doc["hcl"]);
    assert_eq!(doc["snp"]["product"], "Milan");
    assert_eq!(doc["snp"]["chain"]["ark_trust"], "builtin-pinned");
    assert_eq!(doc["hcl"]["runtime_data_bound"], true);
    let exp = hcl_expected("trustee/az-snp-vtpm/hcl-report.bin");
    assert_eq!(
        doc["hcl"]["runtime_data_sha256"],
        exp["variable_data_sha256"]
    );
    assert_eq!(
        doc["hcl"]["vm_unique_id"],
        exp["vm_configuration"]["vm_unique_id"]
    );
    // The embedded report's REPORT_DATA as the python script read it.
    assert_eq!(doc["snp"]["report_data"], exp["report_data"]);
    assert_eq!(doc["hcl"]["keys"][1]["kid"], "HCLEkPub");

    // Every other trustee HCL report with its own VCEK: DER files, HCL v2, Genoa v3 inside.
    for (report, cert, product) in [
        (
            "extracted/evidence-genoa.hcl-report.bin",
            "extracted/evidence-genoa.vcek.pem",
            "Genoa",
        ),
        (
            "extracted/evidence-v0.hcl-report.bin",
            "extracted/evidence-v0.vcek.pem",
            "Milan",
        ),
        (
            "extracted/evidence-v1.hcl-report.bin",
            "extracted/evidence-v1.vcek.der",
            "Milan",
        ),
        (
            "extracted/evidence-v2.hcl-report.bin",
            "extracted/evidence-v2.vcek.der",
            "Milan",
        ),
    ] {
        let (code, doc) = verify_json(&[
            s(&real(&format!("trustee/az-snp-vtpm/{report}"))),
            "--cert",
            s(&real(&format!("trustee/az-snp-vtpm/{cert}"))),
            "--at",
            AT_VALID,
        ]);
        assert_eq!(code, 0, "{report}: {doc}");
        assert_eq!(doc["snp"]["product"], product, "{report}");
        assert_hcl_schema(&doc["hcl"]);
    }
}

#[test]
fn raw_snp_report_verifies_and_has_no_hcl() {
    let (code, doc) = verify_json(&[
        s(&real("virtee-sev/report_milan.bin")),
        "--cert",
        s(&real("virtee-sev/vcek_milan.der")),
        "--at",
        AT_VALID,
    ]);
    assert_eq!(code, 0, "{doc}");
    assert_eq!(doc["format"], "snp-report");
    assert_eq!(doc["verified"], true);
    assert!(doc["error"].is_null());
    assert!(doc.get("hcl").is_none(), "{doc}");
    assert_snp_schema(&doc["snp"]);
    assert_eq!(doc["snp"]["chain"]["leaf"]["subject"], "SEV-VCEK");
}

#[test]
fn kinvolk_hcl_report_is_rejected_with_its_published_certs() {
    // The VCEK in kinvolk certs.pem belongs to another chip (see the file comment).
    let (code, doc) = verify_json(&[
        s(&real("kinvolk-azure-cvm-tooling/hcl-report-snp.bin")),
        "--cert",
        s(&real("kinvolk-azure-cvm-tooling/certs.pem")),
        "--at",
        AT_VALID,
    ]);
    assert_eq!(code, 1, "{doc}");
    assert_eq!(doc["format"], "hcl-report");
    assert_eq!(doc["verified"], false);
    assert_eq!(doc["error"]["code"], "chip-id-mismatch");
    assert!(doc["error"]["message"]
        .as_str()
        .unwrap()
        .contains("3a5d5b1d059d193e"));
    assert!(doc["snp"]["chain"].is_null());
    assert_snp_schema(&doc["snp"]);
    // Its runtime data is bound (hcl_expected.json "binding": "ok"): only the SNP part fails.
    assert_hcl_schema(&doc["hcl"]);
    assert_eq!(doc["hcl"]["runtime_data_bound"], true);
}

#[test]
fn tampered_runtime_data_is_rejected_even_with_a_valid_signature() {
    let mut bytes = std::fs::read(real("trustee/az-snp-vtpm/hcl-report.bin")).unwrap();
    let pos = bytes.windows(8).position(|w| w == b"911B0EF8").unwrap();
    bytes[pos] = b'8';
    let f = temp_file(&bytes);
    let (code, doc) = verify_json(&[
        s(f.path()),
        "--cert",
        s(&real("trustee/az-snp-vtpm/vcek.pem")),
        "--at",
        AT_VALID,
    ]);
    assert_eq!(code, 1, "{doc}");
    assert_eq!(doc["verified"], false);
    assert_eq!(doc["error"]["code"], "hcl-runtime-data-not-bound");
    assert_eq!(doc["hcl"]["runtime_data_bound"], false);
    assert_eq!(
        doc["hcl"]["vm_unique_id"],
        "811B0EF8-9DBA-48B0-B275-4E4DF2D39252"
    );
    // The SNP part alone is fine.
    assert_eq!(doc["snp"]["chain"]["leaf"]["subject"], "SEV-VCEK");
}

#[test]
fn clientlib_hcl_report_embeds_an_unsupported_v1_report() {
    // Its embedded SNP report has VERSION 1 (hcl_expected.json hw_report_version) and its
    // binding is broken; the SNP parser refuses it first.
    let path = "maa-tokens/ms-cvm-guest-attestation-clientlib/ClientLibTests-L685-hcl_report.bin";
    assert_eq!(hcl_expected(path)["hw_report_version"], 1);
    let (code, doc) = verify_json(&[
        s(&real(path)),
        "--cert",
        s(&real("trustee/az-snp-vtpm/vcek.pem")),
    ]);
    assert_unusable(code, &doc, "report-version-unsupported");
}

#[test]
fn at_makes_an_expired_chain_fail_and_pass() {
    // trustee/az-snp-vtpm/vcek.pem: VCEK notBefore 2023-05-02, notAfter 2030-05-02
    // (openssl x509 -noout -dates on its first certificate).
    let args = |at: &'static str| {
        verify_json(&[
            s(&real("trustee/az-snp-vtpm/hcl-report.bin")),
            "--cert",
            s(&real("trustee/az-snp-vtpm/vcek.pem")),
            "--at",
            at,
        ])
    };
    let (code, doc) = args("2031-01-01T00:00:00Z");
    assert_eq!(code, 1, "{doc}");
    assert_eq!(doc["error"]["code"], "cert-expired");
    let (code, doc) = args("2022-01-01T00:00:00Z");
    assert_eq!(code, 1, "{doc}");
    assert_eq!(doc["error"]["code"], "cert-not-yet-valid");
    let (code, doc) = args("2024-01-01T00:00:00+02:00");
    assert_eq!(code, 0, "{doc}");

    // A real VLEK valid one year (notBefore 2024-12-10, notAfter 2025-12-10 per openssl): expired
    // by the system clock today, valid inside its year.
    let vlek = |extra: &[&str]| {
        let mut a = vec![
            s(&real("trustee/snp/test-vlek-report.bin")).to_string(),
            "--cert".into(),
            s(&real("trustee/snp/test-vlek.der")).to_string(),
        ];
        a.extend(extra.iter().map(|x| x.to_string()));
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        verify_json(&refs)
    };
    let (code, doc) = vlek(&[]);
    assert_eq!(code, 1, "{doc}");
    assert_eq!(doc["error"]["code"], "cert-expired");
    assert_eq!(doc["format"], "snp-report");
    let (code, doc) = vlek(&["--at", "2025-06-01T00:00:00Z"]);
    assert_eq!(code, 0, "{doc}");
    assert_eq!(doc["snp"]["signing_key"], "vlek");
}

#[test]
fn trust_root_is_needed_for_a_test_chain_and_is_labelled() {
    // tests/fixtures/independent/testchain: an ARK-Genoa made by make_test_chain.py (python
    // cryptography), not AMD's; its expected.json gives the evaluation time 1706659200.
    let t = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/independent/testchain");
    let report = t.join("report.bin");
    let vcek = t.join("vcek.pem");
    let ask = t.join("ask.pem");
    let ark = t.join("ark.pem");
    let at = "2024-01-31T00:00:00Z"; // = 1706659200
    let (code, doc) = verify_json(&[
        s(&report),
        "--cert",
        s(&vcek),
        "--cert",
        s(&ask),
        "--at",
        at,
    ]);
    assert_eq!(code, 1, "{doc}");
    assert_eq!(doc["verified"], false);
    let (code, doc) = verify_json(&[
        s(&report),
        "--cert",
        s(&vcek),
        "--cert",
        s(&ask),
        "--trust-root",
        s(&ark),
        "--at",
        at,
    ]);
    assert_eq!(code, 0, "{doc}");
    assert_eq!(doc["snp"]["chain"]["ark_trust"], "explicitly-trusted");
    let (code, stdout, stderr) = skrctl(&[
        "evidence",
        "verify",
        s(&report),
        "--cert",
        s(&vcek),
        "--cert",
        s(&ask),
        "--trust-root",
        s(&ark),
        "--at",
        at,
    ]);
    assert_eq!(code, 0);
    assert!(stdout.contains("VERIFIED against a TEST root"), "{stdout}");
    assert!(stderr.contains("test chains only"), "{stderr}");
    // A VCEK is not a root.
    let (code, doc) = verify_json(&[s(&report), "--cert", s(&vcek), "--trust-root", s(&vcek)]);
    assert_unusable(code, &doc, "invalid-argument");
}

#[test]
fn human_output_summarises_and_ends_with_the_verdict() {
    let (code, stdout, stderr) = skrctl(&[
        "evidence",
        "verify",
        s(&real(
            "trustee/az-snp-vtpm/extracted/evidence-genoa.hcl-report.bin",
        )),
        "--cert",
        s(&real("trustee/az-snp-vtpm/vcek-genoa.pem")),
        "--at",
        AT_VALID,
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    for needle in [
        "hcl-report",
        "Genoa",
        "vcek",
        "HCLAkPub (RSA sign)",
        "HCLEkPub (RSA encrypt)",
        "390CBCF5-6C67-4D9B-98EF-C3F1699CC8FC",
        "runtime data bound",
    ] {
        assert!(stdout.contains(needle), "missing {needle:?} in:\n{stdout}");
    }
    assert_eq!(stdout.lines().last(), Some("VERIFIED"));

    let (code, stdout, _) = skrctl(&[
        "evidence",
        "verify",
        s(&real("kinvolk-azure-cvm-tooling/hcl-report-snp.bin")),
        "--cert",
        s(&real("kinvolk-azure-cvm-tooling/certs.pem")),
        "--at",
        AT_VALID,
    ]);
    assert_eq!(code, 1);
    assert!(stdout.contains("REJECTED: "), "{stdout}");
    assert_eq!(stdout.lines().last(), Some("  code: chip-id-mismatch"));
}

#[test]
fn only_ca_certificates_is_vcek_missing() {
    let (code, doc) = verify_json(&[
        s(&real("trustee/az-snp-vtpm/hcl-report.bin")),
        "--cert",
        s(&real("amd-certs/virtee-sev/milan-ask.pem")),
    ]);
    assert_unusable(code, &doc, "vcek-missing");
}

#[test]
fn thim_document_is_accepted_as_cert() {
    // The THIM document of confidential-sidecar-containers: its vcekCert verifies snp_report.bin
    // (python cryptography ECDSA P-384 over report[0..0x2A0]; VCEK valid 2022-11-29..2029-11-29).
    let (code, doc) = verify_json(&[
        s(&real("confidential-sidecar-containers/snp_report.bin")),
        "--cert",
        s(&real(
            "confidential-sidecar-containers/uvm_host_amd_certificate.json",
        )),
        "--at",
        AT_VALID,
    ]);
    assert_eq!(code, 0, "{doc}");
    assert_eq!(doc["snp"]["chain"]["ark"]["subject"], "ARK-Milan");
    // A broken JSON document is unusable input with the THIM error code.
    let f = temp_file(br#"{"vcekCert": 1}"#);
    let (code, doc) = verify_json(&[
        s(&real("confidential-sidecar-containers/snp_report.bin")),
        "--cert",
        s(f.path()),
    ]);
    assert_eq!(code, 2, "{doc}");
    assert!(doc["error"]["message"]
        .as_str()
        .unwrap()
        .contains(s(f.path())));
    // Garbage as a certificate: the certificate parser's error, naming the file.
    let f = temp_file(b"garbage");
    let (code, doc) = verify_json(&[
        s(&real("confidential-sidecar-containers/snp_report.bin")),
        "--cert",
        s(f.path()),
    ]);
    assert_eq!(code, 2, "{doc}");
    assert!(doc["error"]["message"]
        .as_str()
        .unwrap()
        .contains(s(f.path())));
}

#[test]
fn configured_test_roots_are_trusted_like_trust_root() {
    // The same python-made test chain as above, trusted through `trust.amd_test_roots` in a
    // configuration file given with --config instead of --trust-root.
    let t = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/independent/testchain");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("skrd.toml");
    let args = |config: &Path| {
        let mut a: Vec<String> = vec!["--config".into(), s(config).into()];
        a.extend(
            [
                "evidence",
                "verify",
                "--json",
                "--at",
                "2024-01-31T00:00:00Z",
                "--cert",
            ]
            .map(String::from),
        );
        a.push(s(&t.join("vcek.pem")).into());
        a.push("--cert".into());
        a.push(s(&t.join("ask.pem")).into());
        a.push(s(&t.join("report.bin")).into());
        a
    };
    let run = |config: &Path| {
        let out = Command::new(env!("CARGO_BIN_EXE_skrctl"))
            .args(args(config))
            .output()
            .unwrap();
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
        (out.status.code().unwrap(), doc)
    };
    std::fs::write(&config, "[evidence]\nsource = \"vtpm\"\n").unwrap();
    let (code, doc) = run(&config);
    assert_eq!(code, 1, "an untrusted test chain must be refused: {doc}");
    std::fs::write(
        &config,
        format!(
            "[trust]\namd_test_roots = [\"{}\"]\n",
            t.join("ark.pem").display()
        ),
    )
    .unwrap();
    let (code, doc) = run(&config);
    assert_eq!(code, 0, "{doc}");
    assert_eq!(doc["snp"]["chain"]["ark_trust"], "explicitly-trusted");
    // A configuration that does not parse makes the input unusable (exit 2), never a verdict.
    std::fs::write(&config, "[trust]\namd_test_roots = 3\n").unwrap();
    let (code, doc) = run(&config);
    assert_eq!(code, 2, "{doc}");
    assert!(
        doc["error"]["code"]
            .as_str()
            .unwrap()
            .starts_with("config-"),
        "{doc}"
    );
}

#[test]
fn a_huge_file_is_refused_before_it_is_read_whole() {
    // A sparse 17 MiB file (e.g. a disk image given by mistake): above the 16 MiB input limit.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("disk.img");
    std::fs::File::create(&path)
        .unwrap()
        .set_len(17 << 20)
        .unwrap();
    let (code, doc) = verify_json(&[s(&path), "--cert", s(&path)]);
    assert_unusable(code, &doc, "file-too-large");
}
