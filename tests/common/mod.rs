//! Test harness shared by the integration tests: swtpm ([`swtpm::Swtpm`]), the cached test AMD
//! chain, and independent checkers (python3 `cryptography`, openssl CLI).
// Test harness: failing loudly with a message is its job, so panics are allowed here.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod emulator;
pub mod swtpm;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use skrd::emulator::amd_chain::TestAmdChain;

/// A directory holding the test AMD chain, generated once per target dir (RSA-4096 twice is
/// slow) and reused by every test binary and run.
pub fn chain_cache_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("skr-emulator-test-chain-v1");
        TestAmdChain::load_or_create(&dir).expect("test AMD chain");
        dir
    })
}

/// A fresh emulator state directory for one test, pre-seeded with the cached chain.
pub fn fresh_state_dir() -> tempfile::TempDir {
    let src = chain_cache_dir();
    let dir = tempfile::Builder::new()
        .prefix("skr-emulator-state-")
        .tempdir()
        .expect("temp dir");
    for entry in std::fs::read_dir(src).expect("read chain cache") {
        let entry = entry.expect("dir entry");
        let name = entry.file_name();
        if entry.path().is_file() && !name.to_string_lossy().starts_with('.') {
            std::fs::copy(entry.path(), dir.path().join(&name)).expect("copy chain file");
        }
    }
    dir
}

/// Runs `python3 -c script args...`, asserting success; returns stdout.
pub fn python(script: &str, args: &[&str]) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run python3: {e}; `make test` installs it"));
    assert!(
        out.status.success(),
        "python3 check failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs openssl with `args`, returning (success, stdout + stderr).
pub fn openssl(args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run openssl: {e}; `make test` installs it"));
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// Independent SNP report check (PROTOCOLS.md §3.5, §3.7) in python `cryptography`: ECDSA P-384
/// SHA-384 over [0, 0x2A0) with r/s as 72-byte little-endian integers, CHIP_ID == the VCEK hwID
/// extension, REPORTED_TCB (Milan/Genoa layout) == the VCEK SPL extensions. Prints "ok".
pub const VERIFY_REPORT_PY: &str = r#"
import sys
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
report = open(sys.argv[1], 'rb').read()
cert = x509.load_pem_x509_certificate(open(sys.argv[2], 'rb').read())
assert len(report) == 1184, len(report)
r = int.from_bytes(report[0x2A0:0x2A0 + 72], 'little')
s = int.from_bytes(report[0x2E8:0x2E8 + 72], 'little')
cert.public_key().verify(encode_dss_signature(r, s), report[:0x2A0], ec.ECDSA(hashes.SHA384()))
def ext(suffix):
    oid = x509.ObjectIdentifier('1.3.6.1.4.1.3704.1.' + suffix)
    return cert.extensions.get_extension_for_oid(oid).value.value
assert ext('4') == report[0x1A0:0x1E0], 'hwID != CHIP_ID'
def der_int(b):
    assert b[0] == 2 and b[1] == len(b) - 2, b
    return int.from_bytes(b[2:], 'big')
tcb = report[0x180:0x188]
assert der_int(ext('3.1')) == tcb[0], 'blSPL'
assert der_int(ext('3.2')) == tcb[1], 'teeSPL'
assert der_int(ext('3.3')) == tcb[6], 'snpSPL'
assert der_int(ext('3.8')) == tcb[7], 'ucodeSPL'
print('ok')
"#;

/// Verifies `report` against the VCEK PEM at `vcek_pem` with [`VERIFY_REPORT_PY`].
pub fn verify_report_independently(report: &[u8], vcek_pem: &Path) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("report.bin");
    std::fs::write(&path, report).expect("write report");
    let out = python(
        VERIFY_REPORT_PY,
        &[
            path.to_str().expect("utf-8"),
            vcek_pem.to_str().expect("utf-8"),
        ],
    );
    assert_eq!(out.trim(), "ok");
}
