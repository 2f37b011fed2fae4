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
