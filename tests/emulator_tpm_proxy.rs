//! `skr-emulator tpm-proxy` (PROTOCOLS.md §4.1 "Refreshing with user data"): skrd's
//! `Vtpm::write_user_data` through the proxy makes the HCL report at NV 0x01400001 bind that
//! user data, as the Azure paravisor does; without the proxy the report stays as provisioned.
//!
//! Expected values: the user data is the test's own random bytes; the binding is checked with
//! SHA-256 of the report's variable data (PROTOCOLS.md §4.4) and the SNP report's signature by
//! python `cryptography` against the state directory's VCEK.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use rand_core::{OsRng, RngCore};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use common::swtpm::Swtpm;
use skrd::evidence::Vtpm;
use skrd::format::hcl::HclReport;

struct Proxy(std::process::Child);

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn user_data_written_through_the_proxy_is_bound_in_a_fresh_hcl_report() {
    let tpm = Swtpm::start();
    let state = common::fresh_state_dir();
    let out = Command::new(env!("CARGO_BIN_EXE_skr-emulator"))
        .args(["provision-tpm", "--tcti", &tpm.tcti(), "--state-dir"])
        .arg(state.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let port = tpm.tcti().rsplit("port=").next().unwrap().to_string();

    // Without the proxy, a user-data write leaves the report as provisioned (zero user data).
    let mut first = [0u8; 64];
    OsRng.fill_bytes(&mut first);
    {
        let direct = Vtpm::open(&tpm.tcti()).unwrap();
        direct.write_user_data(&first).unwrap();
        let hcl = HclReport::parse(&direct.read_hcl_report().unwrap()).unwrap();
        assert_eq!(hcl.runtime_data().user_data, Some([0u8; 64]));
    }

    let mut child = Command::new(env!("CARGO_BIN_EXE_skr-emulator"))
        .args([
            "tpm-proxy",
            "--swtpm",
            &format!("127.0.0.1:{port}"),
            "--state-dir",
        ])
        .arg(state.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _proxy = Proxy(child);
    let ep: Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("start-up line: {line}"));
    let tcti = ep["tcti"].as_str().unwrap().to_string();
    assert_ne!(tcti, tpm.tcti());

    let vtpm = Vtpm::open(&tcti).unwrap();
    for _ in 0..2 {
        let mut user_data = [0u8; 64];
        OsRng.fill_bytes(&mut user_data);
        vtpm.write_user_data(&user_data).unwrap();
        // Read right away (no sleep): the proxy refreshed before answering the NV_Write.
        let raw = vtpm.read_hcl_report().unwrap();
        let hcl = HclReport::parse(&raw).unwrap();
        assert_eq!(hcl.runtime_data().user_data, Some(user_data));
        let var = hcl.runtime_data_bytes();
        let want = hex::encode(user_data);
        assert!(var
            .windows(128)
            .any(|w| w.eq_ignore_ascii_case(want.as_bytes())));
        // REPORT_DATA = SHA-256(variable data) || 32 zero bytes (§4.4), computed here.
        let mut rd = Sha256::digest(var).to_vec();
        rd.resize(64, 0);
        assert_eq!(hcl.report_data(), &rd[..]);
        // The SNP report is signed by the state directory's test VCEK (python cryptography).
        let report = state.path().join("report.bin");
        std::fs::write(&report, hcl.snp_report_bytes()).unwrap();
        let ok = common::python(
            VERIFY_PY,
            &[
                report.to_str().unwrap(),
                state.path().join("vcek.pem").to_str().unwrap(),
            ],
        );
        assert_eq!(ok.trim(), "ok");
    }
}

/// ECDSA P-384 SHA-384 over report[0..0x2A0], r and s little-endian at 0x2A0 and 0x2E8
/// (PROTOCOLS.md §3.5), with the VCEK's public key.
const VERIFY_PY: &str = r#"
import sys
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
r = open(sys.argv[1], 'rb').read()
key = x509.load_pem_x509_certificate(open(sys.argv[2], 'rb').read()).public_key()
sr = int.from_bytes(r[0x2A0:0x2A0 + 72], 'little')
ss = int.from_bytes(r[0x2E8:0x2E8 + 72], 'little')
key.verify(encode_dss_signature(sr, ss), r[:0x2A0], ec.ECDSA(hashes.SHA384()))
print("ok")
"#;
