//! The SEV-SNP guest firmware trait with the emulator's test firmware, the test AMD chain
//! compared with AMD's real Genoa certificates, and the real `/dev/sev-guest` error on this
//! machine (PROTOCOLS.md §2.4, §3.1, §3.2, §3.5, §3.6).
//!
//! Expected values come from PROTOCOLS.md, from AMD's real certificates in
//! tests/fixtures/real/amd-certs and oak/, and from independent tools (openssl, python
//! `cryptography`), never from skrd's own parsers.

// Test crate: helpers outside #[test] functions fail loudly too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use skrd::emulator::amd_chain::TestAmdChain;
use skrd::emulator::firmware::TestFirmware;
use skrd::error::ErrorCode;
use skrd::evidence::sev_guest::{guid, DevSevGuest, SevGuestError, SevGuestFirmware};
use skrd::evidence::{CollectRequest, Evidence, EvidenceSource, SevGuestSource};

const REAL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/real");

fn firmware() -> TestFirmware {
    TestFirmware::new(TestAmdChain::load(common::chain_cache_dir()).unwrap())
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

#[test]
fn test_firmware_reports_have_the_abi_layout_and_verify_independently() {
    let mut fw = firmware();
    let mut report_data = [0u8; 64];
    report_data[..5].copy_from_slice(b"hello");
    report_data[63] = 0x42;
    let report = fw.get_report(report_data, 2).unwrap();
    // Field values per PROTOCOLS.md §3.2 and the brief (Genoa, v3, VCEK-signed).
    assert_eq!(report.len(), 1184);
    assert_eq!(u32_at(&report, 0x000), 3, "VERSION");
    assert_eq!(
        u64::from_le_bytes(report[0x08..0x10].try_into().unwrap()),
        0x30000,
        "POLICY"
    );
    assert_eq!(u32_at(&report, 0x030), 2, "VMPL");
    assert_eq!(u32_at(&report, 0x034), 1, "SIGNATURE_ALGO");
    assert_eq!(u32_at(&report, 0x048), 0, "KEY_INFO: VCEK");
    assert_eq!(report[0x50..0x90], report_data);
    assert_eq!(report[0x160..0x180], [0xFF; 32], "REPORT_ID_MA");
    assert_eq!(
        report[0x188..0x18A],
        [0x19, 0x11],
        "Genoa CPUID family/model"
    );
    assert_eq!(
        report[0x180..0x188],
        report[0x038..0x040],
        "REPORTED == CURRENT TCB"
    );
    assert_eq!(
        report[0x330..0x4A0],
        [0u8; 368],
        "reserved tail of the signature"
    );
    // ECDSA P-384 over [0, 0x2A0), r/s little-endian, chip id and SPLs == VCEK (python).
    common::verify_report_independently(&report, &common::chain_cache_dir().join("vcek.pem"));

    // Randomised REPORT_ID; ECDSA is randomised too.
    let again = fw.get_report(report_data, 2).unwrap();
    assert_ne!(report[0x140..0x160], again[0x140..0x160]);
    assert_ne!(report[0x2A0..0x330], again[0x2A0..0x330]);

    // A flipped byte breaks the independent verification.
    let mut bad = report.clone();
    bad[0x90] ^= 1;
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.bin");
    std::fs::write(&p, &bad).unwrap();
    let out = std::process::Command::new("python3")
        .args(["-c", common::VERIFY_REPORT_PY, p.to_str().unwrap()])
        .arg(common::chain_cache_dir().join("vcek.pem"))
        .output()
        .unwrap();
    assert!(!out.status.success(), "a modified report must not verify");

    let err = fw.get_report(report_data, 4).unwrap_err();
    assert_eq!(err.code(), "sev-guest-vmpl-out-of-range");
}

#[test]
fn extended_report_carries_the_cert_table() {
    let mut fw = firmware();
    let (report, table) = fw.get_ext_report([7u8; 64], 0).unwrap();
    assert_eq!(report.len(), 1184);
    let table = table.expect("test firmware returns a certificate table");
    // PROTOCOLS.md §2.4: {GUID[16], u32 offset, u32 length} entries, zero entry last.
    let mut found = Vec::new();
    let mut at = 0;
    loop {
        let entry = &table[at..at + 24];
        if entry.iter().all(|b| *b == 0) {
            break;
        }
        let guid = hex::encode(&entry[..16]);
        let off = u32_at(entry, 16) as usize;
        let len = u32_at(entry, 20) as usize;
        found.push((guid, table[off..off + len].to_vec()));
        at += 24;
    }
    let dir = common::chain_cache_dir();
    let der_of = |name: &str| {
        let (ok, _) = common::openssl(&[
            "x509",
            "-in",
            dir.join(name).to_str().unwrap(),
            "-outform",
            "der",
            "-out",
            dir.join(format!("{name}.der")).to_str().unwrap(),
        ]);
        assert!(ok);
        std::fs::read(dir.join(format!("{name}.der"))).unwrap()
    };
    let expect = [
        (guid::VCEK.replace('-', ""), der_of("vcek.pem")),
        (guid::ASK.replace('-', ""), der_of("test-ask.pem")),
        (guid::ARK.replace('-', ""), der_of("test-ark.pem")),
    ];
    assert_eq!(found, expect);

    // Through the evidence source, too.
    let mut source = SevGuestSource::new(fw);
    let request = CollectRequest {
        extended: true,
        ..CollectRequest::for_runtime_data(br#"{"keys":[]}"#)
    };
    let Evidence::SevGuest(e) = source.collect(&request).unwrap() else {
        panic!("expected SNP evidence");
    };
    assert_eq!(e.report[0x50..0x90], request.report_data);
    // REPORT_DATA = SHA-256(runtime data) || 0 (PROTOCOLS.md §1.1 step 2), via openssl dgst.
    let rt = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(rt.path(), br#"{"keys":[]}"#).unwrap();
    let (_, dgst) = common::openssl(&["dgst", "-sha256", "-r", rt.path().to_str().unwrap()]);
    assert_eq!(
        hex::encode(&e.report[0x50..0x70]),
        dgst.split(' ').next().unwrap()
    );
    assert!(e.cert_table.is_some());
}

/// `openssl x509 -text` lines that describe structure (not key material or dates).
fn structure(pem_or_der: &Path, der: bool) -> Vec<String> {
    let mut args = vec![
        "x509",
        "-noout",
        "-text",
        "-in",
        pem_or_der.to_str().unwrap(),
    ];
    if der {
        args.extend(["-inform", "der"]);
    }
    let (ok, text) = common::openssl(&args);
    assert!(ok, "{text}");
    text.lines()
        .map(str::trim)
        .filter(|l| {
            l.starts_with("Serial Number")
                || l.starts_with("Signature Algorithm")
                || l.starts_with("Hash Algorithm")
                || l.starts_with("Mask Algorithm")
                || l.starts_with("Salt Length")
                || l.starts_with("Trailer Field")
                || l.starts_with("Issuer:")
                || l.starts_with("Subject:")
                || l.starts_with("Public Key Algorithm")
                || l.starts_with("Public-Key:")
                || l.starts_with("ASN1 OID")
                || l.starts_with("X509v3")
                || l.starts_with("1.3.6.1.4.1.3704")
                || l.starts_with("CA:")
                || l.starts_with("Certificate Sign")
        })
        .map(str::to_string)
        .collect()
}

#[test]
fn test_chain_has_the_structure_of_amds_genoa_chain() {
    let dir = common::chain_cache_dir();
    let real_ark = Path::new(REAL).join("amd-certs/virtee-sev/genoa-ark.pem");
    let real_ask = Path::new(REAL).join("amd-certs/virtee-sev/genoa-ask.pem");
    let real_vcek = Path::new(REAL).join("oak/genoa_oc_vcek.der");
    // Names, serials, PSS parameters (incl. explicit vs default trailer), key types, extension
    // lists and basic constraints are line-for-line those of AMD's certificates.
    assert_eq!(
        structure(&dir.join("test-ark.pem"), false),
        structure(&real_ark, false)
    );
    assert_eq!(
        structure(&dir.join("test-ask.pem"), false),
        structure(&real_ask, false)
    );
    assert_eq!(
        structure(&dir.join("vcek.pem"), false),
        structure(&real_vcek, true)
    );

    // openssl verifies the chain; with -x509_strict ours fails exactly like AMD's real chain
    // (the VCEK has no authority key identifier).
    let real_vcek_pem = tempfile::NamedTempFile::new().unwrap();
    let (ok, _) = common::openssl(&[
        "x509",
        "-inform",
        "der",
        "-in",
        real_vcek.to_str().unwrap(),
        "-out",
        real_vcek_pem.path().to_str().unwrap(),
    ]);
    assert!(ok);
    let verify = |ark: &Path, ask: &Path, vcek: &Path, strict: bool| {
        let mut args = vec!["verify"];
        if strict {
            args.push("-x509_strict");
        }
        args.extend([
            "-CAfile",
            ark.to_str().unwrap(),
            "-untrusted",
            ask.to_str().unwrap(),
            vcek.to_str().unwrap(),
        ]);
        let (ok, text) = common::openssl(&args);
        let error = text
            .lines()
            .find(|l| l.starts_with("error ") && l.contains(" at "))
            .map(|l| l.split(" at ").next().unwrap().to_string());
        (ok, error)
    };
    let ours = |strict| {
        verify(
            &dir.join("test-ark.pem"),
            &dir.join("test-ask.pem"),
            &dir.join("vcek.pem"),
            strict,
        )
    };
    let real = |strict| verify(&real_ark, &real_ask, real_vcek_pem.path(), strict);
    assert_eq!(ours(false), (true, None));
    assert_eq!(real(false), (true, None));
    assert_eq!(ours(true), real(true));

    // VCEK extension encodings (python `cryptography`, compared with the real Genoa VCEK):
    // same OID set; structVersion/SPLs DER INTEGERs; productName IA5String "Genoa"; hwID 64 raw
    // bytes equal to the chip id reported by the firmware.
    let script = r#"
import sys
from cryptography import x509
def load(p):
    b = open(p, 'rb').read()
    return x509.load_pem_x509_certificate(b) if b.startswith(b'-----') else x509.load_der_x509_certificate(b)
for p in sys.argv[1:3]:
    c = load(p)
    exts = {e.oid.dotted_string: e.value.value for e in c.extensions if e.oid.dotted_string.startswith('1.3.6.1.4.1.3704.1')}
    print(sorted(exts))
    print(exts['1.3.6.1.4.1.3704.1.2'][:2].hex(), exts['1.3.6.1.4.1.3704.1.2'][2:].decode())
    print([exts['1.3.6.1.4.1.3704.1.' + s][0] for s in ['1','3.1','3.2','3.3','3.4','3.5','3.6','3.7','3.8']])
    print(len(exts['1.3.6.1.4.1.3704.1.4']), c.serial_number, c.signature_algorithm_oid.dotted_string)
print(load(sys.argv[1]).extensions.get_extension_for_oid(x509.ObjectIdentifier('1.3.6.1.4.1.3704.1.4')).value.value.hex())
"#;
    let out = common::python(
        script,
        &[
            dir.join("vcek.pem").to_str().unwrap(),
            real_vcek.to_str().unwrap(),
        ],
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 9, "{out}");
    assert_eq!(lines[0], lines[4], "same VCEK extension OIDs");
    assert_eq!(lines[1], "1605 Genoa");
    assert_eq!(lines[1], lines[5]);
    assert_eq!(lines[2], lines[6], "DER INTEGER tags (2) everywhere");
    assert_eq!(lines[3], "64 0 1.2.840.113549.1.1.10");
    assert_eq!(lines[3], lines[7]);
    let chain = TestAmdChain::load(dir).unwrap();
    assert_eq!(lines[8], hex::encode(chain.chip_id));
    let oids: BTreeSet<&str> = lines[0]
        .split('\'')
        .filter(|s| s.starts_with('1'))
        .collect();
    assert_eq!(oids.len(), 11);
}

#[test]
fn sign_report_binary_writes_a_verifiable_report() {
    let state = common::fresh_state_dir();
    let out = state.path().join("report.bin");
    let table = state.path().join("certs.bin");
    let rd = "11".repeat(64);
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_skr-emulator"))
        .args(["sign-report", "--state-dir"])
        .arg(state.path())
        .args(["--report-data", &rd, "--out"])
        .arg(&out)
        .arg("--cert-table-out")
        .arg(&table)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let line: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(line["report_size"], 1184);
    let report = std::fs::read(&out).unwrap();
    assert_eq!(report[0x50..0x90], [0x11; 64]);
    common::verify_report_independently(&report, &state.path().join("vcek.pem"));
    assert!(std::fs::metadata(&table).unwrap().len() > 3 * 1000);

    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_skr-emulator"))
        .args(["sign-report", "--state-dir"])
        .arg(state.path())
        .args(["--report-data", "abcd", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("expected 64 bytes"));
}

#[test]
fn real_device_is_absent_on_this_machine() {
    assert!(
        !Path::new("/dev/sev-guest").exists(),
        "this test expects a machine without /dev/sev-guest"
    );
    let err = DevSevGuest::open().unwrap_err();
    assert!(matches!(err, SevGuestError::DeviceAbsent { .. }), "{err:?}");
    assert_eq!(err.code(), "sev-guest-absent");
    assert!(err.to_string().contains("/dev/sev-guest does not exist"));

    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("sev-guest");
    assert_eq!(
        DevSevGuest::check_device(&missing).unwrap_err().code(),
        "sev-guest-absent"
    );
}

#[test]
fn virtee_sev_accepts_the_test_platform() {
    // Third-party cross-check: the `sev` crate (virtee) parses our report, re-serialises it to
    // the same bytes, and verifies ARK -> ASK -> VCEK -> report with its own RustCrypto code.
    use sev::certs::snp::{ca, Certificate, Chain, Verifiable};
    use sev::firmware::guest::AttestationReport;
    use sev::parser::ByteParser;

    let dir = common::chain_cache_dir();
    let pem = |name: &str| std::fs::read(dir.join(name)).unwrap();
    let chain = Chain {
        ca: ca::Chain {
            ark: Certificate::from_pem(&pem("test-ark.pem")).unwrap(),
            ask: Certificate::from_pem(&pem("test-ask.pem")).unwrap(),
        },
        vek: Certificate::from_pem(&pem("vcek.pem")).unwrap(),
    };
    let bytes = firmware().get_report([0x5A; 64], 0).unwrap();
    let report = AttestationReport::from_bytes(&bytes).unwrap();
    assert_eq!(report.version, 3);
    assert_eq!(report.to_bytes().unwrap().as_ref(), &bytes[..]);
    (&chain, &report).verify().unwrap();

    let mut tampered = bytes.clone();
    tampered[0x50] ^= 0xFF;
    let tampered = AttestationReport::from_bytes(&tampered).unwrap();
    assert!((&chain, &tampered).verify().is_err());

    // AMD's real Genoa ARK does not sign our ASK.
    let real = Chain {
        ca: ca::Chain {
            ark: Certificate::from_pem(
                &std::fs::read(Path::new(REAL).join("amd-certs/virtee-sev/genoa-ark.pem")).unwrap(),
            )
            .unwrap(),
            ask: Certificate::from_pem(&pem("test-ask.pem")).unwrap(),
        },
        vek: Certificate::from_pem(&pem("vcek.pem")).unwrap(),
    };
    assert!((&real, &report).verify().is_err());
}
