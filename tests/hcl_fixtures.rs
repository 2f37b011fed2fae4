//! The HCL report parser (`skrd::format::hcl`, PROTOCOLS.md §4.2-4.4) against every real HCL
//! report in `tests/fixtures/real/`.
//!
//! Expected values come from `tests/fixtures/independent/hcl_expected.py` (Python standard
//! library only: struct + hashlib + json, written from PROTOCOLS.md, sharing no code with skrd);
//! its output is committed as `hcl_expected.json` and read here. Negative cases mutate real
//! reports at the offsets of PROTOCOLS.md §4.2.

// Tests panic on failure by design.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::Value;
use sha2::{Digest, Sha256};
use skrd::error::ErrorCode;
use skrd::format::hcl::{hcl_json, HclError, HclReport};

macro_rules! real {
    ($path:literal) => {
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/real/",
            $path
        ))
    };
}

const EXPECTED: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/independent/hcl_expected.json"
));

const KINVOLK_SNP: &[u8] = real!("kinvolk-azure-cvm-tooling/hcl-report-snp.bin");
const KINVOLK_TDX: &[u8] = real!("kinvolk-azure-cvm-tooling/hcl-report-tdx.bin");
const KINVOLK_VAR_DATA: &[u8] = real!("kinvolk-azure-cvm-tooling/var-data.bin");
const CONSTELLATION_TDX: &[u8] = real!("constellation/azure-tdx/hclreport.bin");
const CLIENTLIB_HCL: &[u8] =
    real!("maa-tokens/ms-cvm-guest-attestation-clientlib/ClientLibTests-L685-hcl_report.bin");
const CLIENTLIB_VAR: &[u8] =
    real!("maa-tokens/ms-cvm-guest-attestation-clientlib/ClientLibTests-L714-variable_data.bin");
const CLIENTLIB_SNP: &[u8] =
    real!("maa-tokens/ms-cvm-guest-attestation-clientlib/ClientLibTests-L723-snp_report.bin");
const TRUSTEE: &[u8] = real!("trustee/az-snp-vtpm/hcl-report.bin");
const TRUSTEE_GENOA: &[u8] = real!("trustee/az-snp-vtpm/extracted/evidence-genoa.hcl-report.bin");
const TRUSTEE_V0: &[u8] = real!("trustee/az-snp-vtpm/extracted/evidence-v0.hcl-report.bin");
const TRUSTEE_V1: &[u8] = real!("trustee/az-snp-vtpm/extracted/evidence-v1.hcl-report.bin");
const TRUSTEE_V2: &[u8] = real!("trustee/az-snp-vtpm/extracted/evidence-v2.hcl-report.bin");
const TRUSTEE_HISTORICAL: &[u8] = real!("trustee/historical/az-hcl-data.bin");

/// Every HCL report in the fixtures, by its path in `hcl_expected.json`.
fn fixture(path: &str) -> &'static [u8] {
    match path {
        "kinvolk-azure-cvm-tooling/hcl-report-snp.bin" => KINVOLK_SNP,
        "kinvolk-azure-cvm-tooling/hcl-report-tdx.bin" => KINVOLK_TDX,
        "constellation/azure-tdx/hclreport.bin" => CONSTELLATION_TDX,
        "maa-tokens/ms-cvm-guest-attestation-clientlib/ClientLibTests-L685-hcl_report.bin" => {
            CLIENTLIB_HCL
        }
        "trustee/az-snp-vtpm/hcl-report.bin" => TRUSTEE,
        "trustee/az-snp-vtpm/extracted/evidence-genoa.hcl-report.bin" => TRUSTEE_GENOA,
        "trustee/az-snp-vtpm/extracted/evidence-v0.hcl-report.bin" => TRUSTEE_V0,
        "trustee/az-snp-vtpm/extracted/evidence-v1.hcl-report.bin" => TRUSTEE_V1,
        "trustee/az-snp-vtpm/extracted/evidence-v2.hcl-report.bin" => TRUSTEE_V2,
        "trustee/historical/az-hcl-data.bin" => TRUSTEE_HISTORICAL,
        other => panic!("hcl_expected.json names {other}, which this test does not load"),
    }
}

fn expected() -> Vec<Value> {
    let doc: Value = serde_json::from_str(EXPECTED).unwrap();
    doc["reports"].as_array().unwrap().clone()
}

fn expected_for(path: &str) -> Value {
    expected()
        .into_iter()
        .find(|r| r["path"] == path)
        .unwrap_or_else(|| panic!("{path} not in hcl_expected.json"))
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn u32_at(buf: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(buf[off..off + 4].try_into().unwrap())
}

fn set_u32(buf: &mut [u8], off: usize, value: u32) {
    buf[off..off + 4].copy_from_slice(&value.to_le_bytes());
}

#[test]
fn expected_json_covers_ten_reports() {
    // The python script lists every HCL report PROVENANCE.md names; a fixture added later must be
    // added there too.
    let all = expected();
    assert_eq!(all.len(), 10);
    for r in &all {
        assert!(!fixture(r["path"].as_str().unwrap()).is_empty());
    }
}

#[test]
fn every_real_report_matches_the_independent_parse() {
    for exp in expected() {
        let path = exp["path"].as_str().unwrap();
        let bytes = fixture(path);
        assert_eq!(
            bytes.len() as u64,
            exp["length"].as_u64().unwrap(),
            "{path}"
        );
        let parsed = HclReport::parse(bytes);
        match exp["parse"].as_str().unwrap() {
            "tdx" => {
                let err = parsed.unwrap_err();
                assert_eq!(err, HclError::TdxUnsupported, "{path}");
                continue;
            }
            "ok" => {}
            other => panic!("{path}: unexpected verdict {other}"),
        }
        let report = parsed.unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(
            u64::from(report.version()),
            exp["version"].as_u64().unwrap(),
            "{path}"
        );
        assert_eq!(
            u64::from(report.report_size()),
            exp["report_size"].as_u64().unwrap()
        );
        assert_eq!(
            u64::from(report.request_type()),
            exp["request_type"].as_u64().unwrap()
        );
        assert_eq!(u64::from(report.status()), exp["status"].as_u64().unwrap());
        let igvm = report.igvm();
        assert_eq!(
            u64::from(igvm.data_size),
            exp["igvm_data_size"].as_u64().unwrap()
        );
        assert_eq!(
            u64::from(igvm.version),
            exp["igvm_version"].as_u64().unwrap()
        );
        assert_eq!(
            u64::from(igvm.report_type),
            exp["report_type"].as_u64().unwrap()
        );
        assert_eq!(
            u64::from(igvm.hash_type.as_u32()),
            exp["report_data_hash_type"].as_u64().unwrap()
        );
        assert_eq!(
            u64::from(igvm.variable_data_size),
            exp["variable_data_size"].as_u64().unwrap()
        );
        assert_eq!(report.snp_report_bytes().len(), 1184);
        assert_eq!(
            sha256_hex(report.snp_report_bytes()),
            exp["hw_report_sha256"],
            "{path}"
        );
        assert_eq!(
            u64::from(u32_at(report.snp_report_bytes(), 0)),
            exp["hw_report_version"].as_u64().unwrap()
        );
        assert_eq!(
            sha256_hex(report.runtime_data_bytes()),
            exp["variable_data_sha256"]
        );
        assert_eq!(
            hex::encode(report.report_data()),
            exp["report_data"],
            "{path}"
        );

        // Runtime data: keys by kid, vm-configuration, user-data.
        let rd = report.runtime_data();
        let exp_keys = exp["keys"].as_array().unwrap();
        assert_eq!(rd.keys.len(), exp_keys.len(), "{path}");
        for ek in exp_keys {
            let kid = ek["kid"].as_str().unwrap();
            let key = rd
                .key(kid)
                .unwrap_or_else(|| panic!("{path}: no key {kid}"));
            assert_eq!(key.kty.as_deref(), ek["kty"].as_str());
            let ops: Vec<&str> = ek["key_ops"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
            assert_eq!(key.key_ops, ops, "{path} {kid}");
            assert_eq!(sha256_hex(&key.modulus().unwrap().unwrap()), ek["n_sha256"]);
            assert_eq!(hex::encode(key.exponent().unwrap().unwrap()), ek["e_hex"]);
        }
        assert!(
            rd.ak_pub().is_some(),
            "{path}: every real report has HCLAkPub"
        );
        let ecfg = &exp["vm_configuration"];
        let cfg = rd.vm_configuration.as_ref().unwrap();
        assert_eq!(cfg.console_enabled, ecfg["console_enabled"].as_bool());
        assert_eq!(cfg.secure_boot, ecfg["secure_boot"].as_bool());
        assert_eq!(cfg.tpm_enabled, ecfg["tpm_enabled"].as_bool());
        assert_eq!(cfg.tpm_persisted, ecfg["tpm_persisted"].as_bool());
        assert_eq!(cfg.vm_unique_id.as_deref(), ecfg["vm_unique_id"].as_str());
        assert_eq!(rd.vm_unique_id(), ecfg["vm_unique_id"].as_str());
        assert_eq!(
            cfg.root_cert_thumbprint.as_deref(),
            ecfg["root_cert_thumbprint"].as_str()
        );
        assert_eq!(cfg.current_time, ecfg["current_time"].as_i64());
        assert_eq!(
            rd.user_data.map(hex::encode).as_deref(),
            exp["user_data"].as_str()
        );

        // Binding, as established by the script.
        let binding = report.check_binding();
        match exp["binding"].as_str().unwrap() {
            "ok" => assert_eq!(binding, Ok(()), "{path}"),
            "mismatch" => match &binding {
                Err(HclError::BindingMismatch {
                    hash,
                    len,
                    expected,
                    found,
                }) => {
                    assert_eq!(*hash, "SHA-256");
                    assert_eq!(*len, 32);
                    assert_eq!(hex::encode(expected), exp["variable_data_sha256"]);
                    assert_eq!(
                        hex::encode(found),
                        exp["report_data"].as_str().unwrap()[..64]
                    );
                }
                other => panic!("{path}: expected a binding mismatch, got {other:?}"),
            },
            other => panic!("{path}: unexpected binding verdict {other}"),
        }

        // The CLI summary carries the same facts.
        let j = hcl_json(&report, &binding);
        assert_eq!(j["runtime_data_bound"], exp["binding"] == "ok");
        assert_eq!(j["runtime_data_sha256"], exp["variable_data_sha256"]);
        assert_eq!(j["vm_unique_id"], ecfg["vm_unique_id"]);
    }
}

#[test]
fn old_and_new_runtime_data_shapes() {
    // Old HCL (2022-2023): HCLAkPub with key_ops encrypt, current-time, no user-data.
    // (hcl_expected.json: kinvolk hcl-report-snp.bin, current_time 1678652405.)
    let old = HclReport::parse(KINVOLK_SNP).unwrap();
    let rd = old.runtime_data();
    assert_eq!(rd.ak_pub().unwrap().key_ops, ["encrypt"]);
    assert!(rd.ek_pub().is_none());
    assert!(rd.user_data.is_none());
    assert_eq!(
        rd.vm_configuration.as_ref().unwrap().current_time,
        Some(1_678_652_405)
    );
    // New HCL (genoa, 2024+): HCLAkPub sign + HCLEkPub encrypt, user-data, root-cert-thumbprint.
    let new = HclReport::parse(TRUSTEE_GENOA).unwrap();
    let rd = new.runtime_data();
    assert_eq!(rd.ak_pub().unwrap().key_ops, ["sign"]);
    assert_eq!(rd.ek_pub().unwrap().key_ops, ["encrypt"]);
    assert_eq!(rd.user_data, Some([0u8; 64]));
    let cfg = rd.vm_configuration.as_ref().unwrap();
    assert!(cfg.current_time.is_none());
    assert_eq!(cfg.tpm_persisted, Some(true));
    assert_eq!(new.version(), 2);
    // The SNP report inside has its own VERSION (3 here; hcl_expected.json hw_report_version).
    assert_eq!(u32_at(new.snp_report_bytes(), 0), 3);
}

#[test]
fn tdx_reports_get_their_own_error() {
    for bytes in [KINVOLK_TDX, CONSTELLATION_TDX] {
        let err = HclReport::parse(bytes).unwrap_err();
        assert_eq!(err, HclError::TdxUnsupported);
        assert_eq!(err.code(), "hcl-tdx-unsupported");
        assert!(err
            .to_string()
            .starts_with("TDX confidential VMs are not supported yet"));
    }
}

#[test]
fn trusted_launch_report_type_gets_its_own_error() {
    let mut buf = TRUSTEE.to_vec();
    set_u32(&mut buf, 0x4C8, 3);
    let err = HclReport::parse(&buf).unwrap_err();
    assert_eq!(err, HclError::TvmUnsupported);
    assert_eq!(err.code(), "hcl-tvm-unsupported");
}

#[test]
fn clientlib_companions_equal_the_slices_but_the_binding_is_broken() {
    // Microsoft's client-library test data publishes the HCL report (L685), its variable data
    // (L714) and its SNP report (L723). The slices match the companions byte for byte, yet
    // REPORT_DATA is not SHA-256 (nor SHA-384/512, per hcl_expected.py) of the variable data: a
    // published test vector that is not self-consistent (PROTOCOLS.md §4.4). It must be refused.
    let exp = expected_for(
        "maa-tokens/ms-cvm-guest-attestation-clientlib/ClientLibTests-L685-hcl_report.bin",
    );
    assert_eq!(exp["companions"]["var_data"]["equals_slice"], true);
    assert_eq!(exp["companions"]["snp_report"]["equals_slice"], true);
    assert_eq!(exp["binding"], "mismatch");
    let report = HclReport::parse(CLIENTLIB_HCL).unwrap();
    assert_eq!(report.runtime_data_bytes(), CLIENTLIB_VAR);
    assert_eq!(report.snp_report_bytes(), CLIENTLIB_SNP);
    let err = report.check_binding().unwrap_err();
    assert_eq!(err.code(), "hcl-runtime-data-not-bound");
    let msg = err.to_string();
    // The message names both hashes (python: REPORT_DATA prefix 36a3cc02..., sha256 718c2d8f...).
    assert!(
        msg.contains(&exp["variable_data_sha256"].as_str().unwrap()[..16]),
        "{msg}"
    );
    assert!(
        msg.contains(&exp["report_data"].as_str().unwrap()[..16]),
        "{msg}"
    );
    assert!(msg.contains("36a3cc02b1c81ee7"));
    assert!(msg.contains("718c2d8f96924be7"));
}

#[test]
fn kinvolk_var_data_belongs_to_another_vm() {
    // kinvolk publishes var-data.bin beside hcl-report-snp.bin, but it is not that report's
    // variable data: 1110 bytes vs VariableDataSize 583, another vmUniqueId, and its SHA-256 is
    // not the report's REPORT_DATA (hcl_expected.py "companions"). The report itself binds to its
    // own embedded data.
    let exp = expected_for("kinvolk-azure-cvm-tooling/hcl-report-snp.bin");
    let comp = &exp["companions"]["var_data"];
    assert_eq!(comp["equals_slice"], false);
    assert_eq!(comp["matches_report_data"], false);
    let report = HclReport::parse(KINVOLK_SNP).unwrap();
    assert_ne!(report.runtime_data_bytes(), KINVOLK_VAR_DATA);
    assert_eq!(
        KINVOLK_VAR_DATA.len() as u64,
        comp["length"].as_u64().unwrap()
    );
    assert_ne!(
        report.runtime_data().vm_unique_id(),
        comp["vm_unique_id"].as_str()
    );
    assert_eq!(report.check_binding(), Ok(()));
    // Splicing the companion in (with consistent sizes) breaks the binding.
    let spliced = splice_var_data(KINVOLK_SNP, KINVOLK_VAR_DATA, 2048);
    let report = HclReport::parse(&spliced).unwrap();
    assert_eq!(report.runtime_data_bytes(), KINVOLK_VAR_DATA);
    assert!(matches!(
        report.check_binding(),
        Err(HclError::BindingMismatch { .. })
    ));
}

/// Replaces the variable data of `base` with `var`, fixing all three size fields, padded with
/// zeros to `total` bytes.
fn splice_var_data(base: &[u8], var: &[u8], total: usize) -> Vec<u8> {
    let mut buf = base[..0x4D4].to_vec();
    buf.extend_from_slice(var);
    buf.resize(total.max(buf.len()), 0);
    let n = var.len() as u32;
    set_u32(&mut buf, 0x4D0, n);
    set_u32(&mut buf, 0x4C0, 20 + n);
    set_u32(&mut buf, 8, 0x4C0 + 20 + n);
    buf
}

#[test]
fn truncated_at_each_header_boundary() {
    let var_size = u32_at(TRUSTEE, 0x4D0) as usize; // 1110 per hcl_expected.json
    let end = 0x4D4 + var_size;
    let cases: &[(usize, &str)] = &[
        (0, "attestation header"),
        (3, "attestation header"),
        (4, "attestation header"),
        (8, "attestation header"),
        (0x1F, "attestation header"),
        (0x20, "hardware report"),
        (0x4BF, "hardware report"),
        (0x4C0, "IGVM request data header"),
        (0x4D3, "IGVM request data header"),
    ];
    for &(len, part) in cases {
        let err = HclReport::parse(&TRUSTEE[..len]).unwrap_err();
        match &err {
            HclError::Truncated {
                part: p,
                found,
                needed,
            } => {
                assert_eq!(*p, part, "len {len}");
                assert_eq!(*found, len);
                assert!(*needed > len);
            }
            other => panic!("len {len}: expected Truncated, got {other:?}"),
        }
        assert_eq!(err.code(), "hcl-truncated");
    }
    // Inside the variable data: VariableDataSize no longer fits.
    for len in [0x4D4, 0x4D5, end - 1] {
        let err = HclReport::parse(&TRUSTEE[..len]).unwrap_err();
        assert_eq!(
            err,
            HclError::VariableDataTooLarge {
                variable_data_size: var_size as u32,
                available: len - 0x4D4
            }
        );
        assert_eq!(err.code(), "hcl-variable-data-too-large");
    }
    // Exactly the variable data, no zero padding: fine (the padding is not part of the report).
    let report = HclReport::parse(&TRUSTEE[..end]).unwrap();
    assert_eq!(report.check_binding(), Ok(()));
    // Bytes after the variable data are ignored, whatever they hold.
    let mut buf = TRUSTEE.to_vec();
    buf[end..].fill(0xA5);
    buf.extend_from_slice(b"trailing");
    let report = HclReport::parse(&buf).unwrap();
    assert_eq!(report.runtime_data_bytes(), &TRUSTEE[0x4D4..end]);
    assert_eq!(report.check_binding(), Ok(()));
}

#[test]
fn variable_data_size_too_large() {
    for n in [2600 - 0x4D4 + 1, 100_000, u32::MAX as usize - 0x4D4] {
        let mut buf = TRUSTEE.to_vec();
        let n = n as u32;
        set_u32(&mut buf, 0x4D0, n);
        set_u32(&mut buf, 0x4C0, n.wrapping_add(20));
        set_u32(&mut buf, 8, n.wrapping_add(20 + 0x4C0));
        let err = HclReport::parse(&buf).unwrap_err();
        assert_eq!(
            err,
            HclError::VariableDataTooLarge {
                variable_data_size: n,
                available: 2600 - 0x4D4
            },
            "n {n}"
        );
    }
    // u32::MAX: DataSize cannot hold 20 + n, so the size fields disagree first.
    let mut buf = TRUSTEE.to_vec();
    set_u32(&mut buf, 0x4D0, u32::MAX);
    assert!(matches!(
        HclReport::parse(&buf).unwrap_err(),
        HclError::DataSizeMismatch { .. }
    ));
}

#[test]
fn inconsistent_size_fields() {
    let mut buf = TRUSTEE.to_vec();
    let data_size = u32_at(&buf, 0x4C0);
    set_u32(&mut buf, 0x4C0, data_size + 1);
    assert_eq!(
        HclReport::parse(&buf).unwrap_err(),
        HclError::DataSizeMismatch {
            data_size: data_size + 1,
            expected: u64::from(data_size)
        }
    );
    let mut buf = TRUSTEE.to_vec();
    let report_size = u32_at(&buf, 8);
    set_u32(&mut buf, 8, 2600);
    let err = HclReport::parse(&buf).unwrap_err();
    assert_eq!(
        err,
        HclError::ReportSizeMismatch {
            report_size: 2600,
            expected: u64::from(report_size)
        }
    );
    assert_eq!(err.code(), "hcl-report-size-mismatch");
}

#[test]
fn bad_magic_and_unsupported_versions() {
    let mut buf = TRUSTEE.to_vec();
    buf[0] = b'X';
    let err = HclReport::parse(&buf).unwrap_err();
    assert_eq!(err, HclError::BadMagic { found: *b"XCLA" });
    assert!(err.to_string().contains("58434c41"));
    // A raw SNP report is not an HCL report.
    assert!(matches!(
        HclReport::parse(CLIENTLIB_SNP).unwrap_err(),
        HclError::BadMagic { .. }
    ));
    for v in [0u32, 3, 0xFFFF_FFFF] {
        let mut buf = TRUSTEE.to_vec();
        set_u32(&mut buf, 4, v);
        assert_eq!(
            HclReport::parse(&buf).unwrap_err(),
            HclError::UnsupportedVersion { found: v }
        );
    }
    let mut buf = TRUSTEE.to_vec();
    set_u32(&mut buf, 0x4C4, 2);
    assert_eq!(
        HclReport::parse(&buf).unwrap_err(),
        HclError::UnsupportedIgvmVersion { found: 2 }
    );
    for t in [0u32, 1, 5] {
        let mut buf = TRUSTEE.to_vec();
        set_u32(&mut buf, 0x4C8, t);
        assert_eq!(
            HclReport::parse(&buf).unwrap_err(),
            HclError::UnknownReportType { found: t }
        );
    }
    for h in [0u32, 4] {
        let mut buf = TRUSTEE.to_vec();
        set_u32(&mut buf, 0x4CC, h);
        assert_eq!(
            HclReport::parse(&buf).unwrap_err(),
            HclError::UnknownHashType { found: h }
        );
    }
}

#[test]
fn flipped_bit_in_variable_data_breaks_the_binding() {
    // Flip one bit inside the vmUniqueId string ('9' 0x39 -> '8' 0x38): still valid JSON.
    let mut buf = TRUSTEE.to_vec();
    let var_size = u32_at(&buf, 0x4D0) as usize;
    let var = &buf[0x4D4..0x4D4 + var_size];
    let pos = 0x4D4 + find(var, b"911B0EF8").unwrap();
    buf[pos] ^= 0x01;
    let report = HclReport::parse(&buf).unwrap();
    assert_eq!(
        report.runtime_data().vm_unique_id(),
        Some("811B0EF8-9DBA-48B0-B275-4E4DF2D39252")
    );
    let err = report.check_binding().unwrap_err();
    assert!(matches!(err, HclError::BindingMismatch { .. }), "{err:?}");
    assert_eq!(err.code(), "hcl-runtime-data-not-bound");
}

#[test]
fn flipped_bit_in_report_data_breaks_the_binding() {
    // REPORT_DATA is at HCL offset 0x20 + 0x50.
    let mut buf = TRUSTEE.to_vec();
    buf[0x70] ^= 0x80;
    let err = HclReport::parse(&buf).unwrap().check_binding().unwrap_err();
    assert!(matches!(err, HclError::BindingMismatch { .. }));
    // A bit in the second half (must be zero for SHA-256).
    let mut buf = TRUSTEE.to_vec();
    buf[0x70 + 40] ^= 0x01;
    let err = HclReport::parse(&buf).unwrap().check_binding().unwrap_err();
    assert!(
        matches!(err, HclError::BindingTailNotZero { offset: 32, ref found, .. } if found[8] == 1),
        "{err:?}"
    );
    assert_eq!(err.code(), "hcl-report-data-tail-nonzero");
}

#[test]
fn sha384_and_sha512_hash_types() {
    // Never seen on a real report; implemented from the header definition. The digests come from
    // hcl_expected.py (hashlib.sha384 / sha512 of the variable data).
    let exp = expected_for("trustee/az-snp-vtpm/hcl-report.bin");
    for (ty, field, len) in [
        (2u32, "variable_data_sha384", 48usize),
        (3, "variable_data_sha512", 64),
    ] {
        let digest = hex::decode(exp[field].as_str().unwrap()).unwrap();
        let mut buf = TRUSTEE.to_vec();
        set_u32(&mut buf, 0x4CC, ty);
        // Still SHA-256 in REPORT_DATA: refused.
        let err = HclReport::parse(&buf).unwrap().check_binding().unwrap_err();
        assert!(matches!(err, HclError::BindingMismatch { len: l, .. } if l == len));
        buf[0x70..0xB0].fill(0);
        buf[0x70..0x70 + len].copy_from_slice(&digest);
        let report = HclReport::parse(&buf).unwrap();
        assert_eq!(report.hash_type().as_u32(), ty);
        assert_eq!(report.check_binding(), Ok(()));
        if len == 48 {
            buf[0x70 + 50] = 1;
            let err = HclReport::parse(&buf).unwrap().check_binding().unwrap_err();
            assert!(matches!(
                err,
                HclError::BindingTailNotZero { offset: 48, .. }
            ));
        }
    }
}

#[test]
fn invalid_runtime_data_json_and_user_data() {
    let var_size = u32_at(TRUSTEE, 0x4D0) as usize;
    // Replace the closing brace: the JSON ends early.
    let mut buf = TRUSTEE.to_vec();
    buf[0x4D4 + var_size - 1] = b' ';
    let err = HclReport::parse(&buf).unwrap_err();
    assert!(
        matches!(err, HclError::RuntimeDataJson { line: 1, .. }),
        "{err:?}"
    );
    assert_eq!(err.code(), "hcl-runtime-data-json");
    // user-data with a non-hex character (the trustee report's user-data is 128 zeros).
    let mut buf = TRUSTEE.to_vec();
    let var = &buf[0x4D4..0x4D4 + var_size];
    let pos = 0x4D4 + find(var, b"\"user-data\":\"").unwrap() + 13;
    buf[pos] = b'z';
    let err = HclReport::parse(&buf).unwrap_err();
    assert_eq!(err.code(), "hcl-user-data-invalid");
    // user-data one character short (a zero replaced by a quote, a space after it keeps JSON).
    let mut buf = TRUSTEE.to_vec();
    buf[pos + 127] = b'"';
    buf[pos + 128] = b' ';
    let err = HclReport::parse(&buf).unwrap_err();
    assert_eq!(
        err,
        HclError::UserDataInvalid {
            length: 127,
            hint: ""
        }
    );
}

#[test]
fn hcl_json_shape() {
    let report = HclReport::parse(TRUSTEE_GENOA).unwrap();
    let binding = report.check_binding();
    let j = hcl_json(&report, &binding);
    assert_eq!(j["version"], 2);
    assert_eq!(j["request_type"], 2);
    assert_eq!(j["report_type"], "snp");
    assert_eq!(j["report_data_hash_type"], "sha256");
    assert_eq!(j["runtime_data_bound"], true);
    assert_eq!(j["vm_unique_id"], "390CBCF5-6C67-4D9B-98EF-C3F1699CC8FC");
    assert_eq!(j["keys"][0]["kid"], "HCLAkPub");
    assert_eq!(j["keys"][0]["kty"], "RSA");
    assert_eq!(j["keys"][0]["key_ops"][0], "sign");
    assert_eq!(j["keys"][1]["kid"], "HCLEkPub");
    assert_eq!(j["vm_configuration"]["secure_boot"], true);
    assert_eq!(j["vm_configuration"]["current_time"], Value::Null);
    assert_eq!(j["user_data"], "0".repeat(128));
    assert!(j["runtime_data_sha256"].as_str().unwrap().len() == 64);
    // Old shape: no user-data.
    let old = HclReport::parse(TRUSTEE_HISTORICAL).unwrap();
    let j = hcl_json(&old, &Err(HclError::TdxUnsupported));
    assert_eq!(j["user_data"], Value::Null);
    assert_eq!(j["runtime_data_bound"], false);
    assert_eq!(j["vm_configuration"]["current_time"], 1_682_516_330);
}

#[test]
fn never_panics_on_truncations_and_mutations() {
    for exp in expected() {
        let bytes = fixture(exp["path"].as_str().unwrap());
        for len in 0..bytes.len().min(0x4D4 + 64) {
            let _ = HclReport::parse(&bytes[..len]);
        }
        // Deterministic pseudo-random byte mutations over the header and the variable data.
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..2000 {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let mut buf = bytes.to_vec();
            let region = if state & 1 == 0 { 0x20 } else { buf.len() };
            let pos = (state >> 16) as usize % region;
            let pos = if region == 0x20 { pos } else { pos.max(0x4C0) };
            buf[pos] = (state >> 40) as u8;
            if let Ok(r) = HclReport::parse(&buf) {
                let b = r.check_binding();
                let _ = hcl_json(&r, &b);
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[test]
fn encode_reproduces_real_reports_byte_for_byte() {
    use skrd::format::hcl::{encode, report_data_for, EncodeParams, HashType};
    // Re-encoding the parsed pieces of every real SNP HCL report gives back the exact bytes
    // (header, sizes, zero padding to 2048/2600), so encode() writes the layout Azure writes.
    for exp in expected() {
        if exp["parse"] != "ok" {
            continue;
        }
        let bytes = fixture(exp["path"].as_str().unwrap());
        let r = HclReport::parse(bytes).unwrap();
        let out = encode(&EncodeParams {
            version: r.version(),
            request_type: r.request_type(),
            hw_report: r.snp_report_bytes(),
            hash_type: r.hash_type(),
            variable_data: r.runtime_data_bytes(),
            pad_to: bytes.len(),
        })
        .unwrap();
        assert_eq!(out, bytes, "{}", exp["path"]);
        if exp["binding"] == "ok" {
            // report_data_for gives the REPORT_DATA the python script found.
            let rd = report_data_for(HashType::Sha256, r.runtime_data_bytes());
            assert_eq!(hex::encode(rd), exp["report_data"]);
        }
    }
    // A hardware report of the wrong size is refused.
    assert!(matches!(
        encode(&EncodeParams {
            version: 1,
            request_type: 2,
            hw_report: &[0u8; 100],
            hash_type: HashType::Sha256,
            variable_data: b"{}",
            pad_to: 0,
        }),
        Err(HclError::Truncated {
            needed: 1184,
            found: 100,
            ..
        })
    ));
}
