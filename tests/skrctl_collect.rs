//! `skrctl evidence collect` against a real swtpm provisioned like an Azure CVM vTPM.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::swtpm::Swtpm;
use serde_json::Value;
use sha2::{Digest, Sha256};
use skrd::emulator::provision;
use std::path::Path;
use std::process::Command;

fn skrctl(config: &Path, args: &[&str]) -> (i32, Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_skrctl"))
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .unwrap();
    let doc = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code().unwrap(), doc, stderr)
}

fn config_for(dir: &Path, tcti: &str) -> std::path::PathBuf {
    let path = dir.join("skrd.toml");
    std::fs::write(&path, format!("[evidence]\ntcti = \"{tcti}\"\n")).unwrap();
    path
}

#[test]
fn collect_writes_what_the_vtpm_holds() {
    let tpm = Swtpm::start();
    let state = common::fresh_state_dir();
    provision::provision_tpm(&tpm.tcti(), state.path(), None).unwrap();
    let work = tempfile::tempdir().unwrap();
    let config = config_for(work.path(), &tpm.tcti());
    let out = work.path().join("evidence");

    let (code, doc, stderr) = skrctl(
        &config,
        &[
            "evidence",
            "collect",
            "--out",
            out.to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(code, 0, "{doc} {stderr}");
    assert_eq!(doc["source"], "vtpm", "auto picks the vTPM: {doc}");
    let names: Vec<&str> = doc["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    for expected in [
        "hcl-report.bin",
        "ak-cert.der",
        "pcr-quote.attest",
        "enc-key-pub.tpm2b",
    ] {
        assert!(names.contains(&expected), "{expected} missing: {names:?}");
    }
    // The file holds exactly NV 0x01400001 as tpm2-tools reads it.
    let written = std::fs::read(out.join("hcl-report.bin")).unwrap();
    let by_tools = tpm.tpm2_tool("tpm2_nvread", &["-C", "o", "0x01400001"]);
    assert_eq!(written, by_tools);
    let listed = doc["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "hcl-report.bin")
        .unwrap();
    assert_eq!(listed["sha256"], hex::encode(Sha256::digest(&written)));
    assert_eq!(listed["bytes"], written.len());
}

#[test]
fn collect_from_an_unreachable_tpm_is_a_clear_error() {
    // A port nothing listens on (bound, then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let work = tempfile::tempdir().unwrap();
    let config = config_for(work.path(), &format!("swtpm:host=127.0.0.1,port={port}"));
    let out = work.path().join("evidence");
    let (code, doc, _) = skrctl(
        &config,
        &[
            "evidence",
            "collect",
            "--source",
            "vtpm",
            "--out",
            out.to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(code, 2, "{doc}");
    assert_eq!(doc["error"]["code"], "tpm-unreachable", "{doc}");
    assert!(!out.exists(), "nothing is written when collection fails");
}

#[test]
fn collect_from_sev_guest_without_the_device_says_so() {
    if Path::new("/dev/sev-guest").exists() {
        return; // An SNP guest: the absent-device error cannot be provoked here.
    }
    let work = tempfile::tempdir().unwrap();
    let config = config_for(work.path(), "device:/dev/tpmrm0");
    let out = work.path().join("evidence");
    let (code, doc, _) = skrctl(
        &config,
        &[
            "evidence",
            "collect",
            "--source",
            "sev-guest",
            "--out",
            out.to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(code, 2, "{doc}");
    assert_eq!(doc["error"]["code"], "sev-guest-absent", "{doc}");
}
