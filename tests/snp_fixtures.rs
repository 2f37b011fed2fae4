//! SNP report / AMD certificate parsing and verification against every applicable real fixture
//! (PROTOCOLS.md §3), with expected values from an independent implementation.
//!
//! Expected values: `tests/fixtures/independent/snp_expected.json`, produced by
//! `python3 tests/fixtures/independent/snp_expected.py > tests/fixtures/independent/snp_expected.json`
//! (python `struct` + `cryptography`, no skrd code). Test chain: `tests/fixtures/independent/
//! testchain/`, produced by `make_test_chain.py` (python `cryptography`).

// Test helpers outside #[test] functions may panic on broken fixtures.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::Value;
use skrd::error::ErrorCode;
use skrd::format::snp::{
    build_chain, check_chip_id, check_intermediate_kind, check_report_data_binding, parse_certs,
    parse_thim_document, report_json, verify_report, AmdCert, ArkTrust, CertRole, Generation,
    RawTcb, Report, SnpError, TrustStore,
};

const EXPECTED: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/independent/snp_expected.json"
));

fn expected() -> Value {
    serde_json::from_str(EXPECTED).unwrap()
}

fn real(path: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/real/{path}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn indep(path: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/independent/{path}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn report_bytes(exp: &Value, name: &str) -> Vec<u8> {
    let r = &exp["reports"][name];
    let b = real(r["file"].as_str().unwrap());
    match r["offset"].as_u64() {
        Some(o) => b[o as usize..o as usize + 1184].to_vec(),
        None => b,
    }
}

fn certs_of(files: &[&str]) -> Vec<AmdCert> {
    files
        .iter()
        .flat_map(|f| {
            if f.ends_with("uvm_host_amd_certificate.json")
                || f.ends_with("host_amd_certificate_env")
            {
                parse_thim_document(&real(f)).unwrap().all_certs()
            } else {
                parse_certs(&real(f)).unwrap()
            }
        })
        .collect()
}

fn store() -> TrustStore {
    TrustStore::with_builtin_roots().unwrap()
}

fn code(r: Result<impl std::fmt::Debug, SnpError>) -> String {
    match r {
        Ok(_) => "ok".to_string(),
        Err(e) => e.code().to_string(),
    }
}

#[test]
fn every_report_matches_the_independent_parse() {
    let exp = expected();
    let reports = exp["reports"].as_object().unwrap();
    assert!(reports.len() >= 24);
    for (name, e) in reports {
        let r = Report::parse(&report_bytes(&exp, name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let ctx = name.as_str();
        assert_eq!(
            u64::from(r.version),
            e["version"].as_u64().unwrap(),
            "{ctx}"
        );
        assert_eq!(
            u64::from(r.guest_svn),
            e["guest_svn"].as_u64().unwrap(),
            "{ctx}"
        );
        assert_eq!(r.policy.raw, e["policy"].as_u64().unwrap(), "{ctx}");
        assert_eq!(u64::from(r.vmpl), e["vmpl"].as_u64().unwrap(), "{ctx}");
        assert_eq!(
            u64::from(r.signature_algo),
            e["signature_algo"].as_u64().unwrap()
        );
        assert_eq!(
            r.platform_info.raw,
            e["platform_info"].as_u64().unwrap(),
            "{ctx}"
        );
        assert_eq!(
            u64::from(r.key_info.raw),
            e["key_info"].as_u64().unwrap(),
            "{ctx}"
        );
        assert_eq!(hex::encode(r.report_data), e["report_data"], "{ctx}");
        assert_eq!(hex::encode(r.measurement), e["measurement"], "{ctx}");
        assert_eq!(hex::encode(r.host_data), e["host_data"], "{ctx}");
        assert_eq!(hex::encode(r.chip_id), e["chip_id"], "{ctx}");
        assert_eq!(
            hex::encode(r.reported_tcb.0),
            e["reported_tcb_raw"],
            "{ctx}"
        );
        assert_eq!(hex::encode(r.current_tcb.0), e["current_tcb_raw"], "{ctx}");
        assert_eq!(
            hex::encode(r.committed_tcb.0),
            e["committed_tcb_raw"],
            "{ctx}"
        );
        assert_eq!(hex::encode(r.launch_tcb.0), e["launch_tcb_raw"], "{ctx}");
        assert_eq!(r.current_version.to_string(), e["current_version"], "{ctx}");
        assert_eq!(
            r.committed_version.to_string(),
            e["committed_version"],
            "{ctx}"
        );
        assert_eq!(
            r.launch_mit_vector,
            e["launch_mit_vector"].as_u64(),
            "{ctx}"
        );
        assert_eq!(
            r.current_mit_vector,
            e["current_mit_vector"].as_u64(),
            "{ctx}"
        );
        match e["cpuid"].as_array() {
            Some(c) => {
                let cp = r.cpuid.unwrap();
                assert_eq!(
                    [cp.family, cp.model, cp.stepping].map(u64::from).to_vec(),
                    c.iter().map(|v| v.as_u64().unwrap()).collect::<Vec<_>>(),
                    "{ctx}"
                );
            }
            None => assert!(r.cpuid.is_none(), "{ctx}"),
        }
        assert_eq!(
            r.generation.map(|g| g.name()),
            e["generation"].as_str(),
            "{ctx}"
        );
        match r.reported_tcb_version() {
            Some(t) => {
                let et = &e["reported_tcb"];
                assert_eq!(
                    u64::from(t.bootloader),
                    et["bootloader"].as_u64().unwrap(),
                    "{ctx}"
                );
                assert_eq!(u64::from(t.tee), et["tee"].as_u64().unwrap(), "{ctx}");
                assert_eq!(u64::from(t.snp), et["snp"].as_u64().unwrap(), "{ctx}");
                assert_eq!(
                    u64::from(t.microcode),
                    et["microcode"].as_u64().unwrap(),
                    "{ctx}"
                );
                assert_eq!(t.fmc.map(u64::from), et["fmc"].as_u64(), "{ctx}");
            }
            None => assert!(e["reported_tcb"].is_null(), "{ctx}"),
        }
        // The JSON view carries the same values.
        let j = report_json(&r);
        assert_eq!(j["version"], e["version"], "{ctx}");
        assert_eq!(j["chip_id"], e["chip_id"], "{ctx}");
        assert_eq!(j["measurement"], e["measurement"], "{ctx}");
        assert_eq!(j["product"], e["generation"], "{ctx}");
        assert_eq!(
            j["reported_tcb"]["raw"],
            RawTcb(r.reported_tcb.0).to_tcbm(),
            "{ctx}"
        );
        for k in ["bootloader", "tee", "snp", "microcode", "fmc"] {
            assert_eq!(j["reported_tcb"][k], e["reported_tcb"][k], "{ctx} {k}");
        }
        assert_eq!(
            j["policy"]["raw"],
            format!("0x{:x}", e["policy"].as_u64().unwrap()),
            "{ctx}"
        );
    }
}

#[test]
fn reports_refused_at_parse_time() {
    for e in expected()["parse_refusals"].as_array().unwrap() {
        let b = real(e["file"].as_str().unwrap());
        assert_eq!(code(Report::parse(&b)), e["expected"], "{}", e["file"]);
    }
    // constellation/snp/attestation.bin is a report followed by 20 more bytes: its first 1184
    // bytes are a report (the independent script parses them as `constellation-attestation`).
    let b = real("constellation/snp/attestation.bin");
    assert!(Report::parse(&b[..1184]).is_ok());
    assert!(matches!(
        Report::parse(&b[..1000]),
        Err(SnpError::ReportTruncated { found: 1000, .. })
    ));
}

#[test]
fn every_certificate_matches_the_independent_parse() {
    let exp = expected();
    let files = exp["certs"].as_object().unwrap();
    assert!(files.len() >= 50);
    for (file, list) in files {
        let certs = parse_certs(&real(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        let list = list.as_array().unwrap();
        assert_eq!(certs.len(), list.len(), "{file}");
        for (c, e) in certs.iter().zip(list) {
            let ctx = format!("{file} {}", c.subject_cn);
            assert_eq!(c.role.as_str(), e["role"], "{ctx}");
            assert_eq!(c.subject_cn, e["subject_cn"], "{ctx}");
            assert_eq!(c.issuer_cn, e["issuer_cn"], "{ctx}");
            assert_eq!(c.product.map(|g| g.name()), e["product"].as_str(), "{ctx}");
            assert_eq!(c.fingerprint(), e["sha256"], "{ctx}");
            assert_eq!(c.not_before, e["not_before"].as_i64().unwrap(), "{ctx}");
            assert_eq!(c.not_after, e["not_after"].as_i64().unwrap(), "{ctx}");
            let serial = c.serial.iter().fold(0u64, |a, b| a << 8 | u64::from(*b));
            assert_eq!(serial, e["serial"].as_u64().unwrap(), "{ctx}");
            let a = &e["amd"];
            let x = &c.extensions;
            let spl = |v: Option<u8>| v.map(u64::from);
            assert_eq!(x.struct_version, a["struct_version"].as_u64(), "{ctx}");
            assert_eq!(
                x.product_name.as_deref(),
                a["product_name"].as_str(),
                "{ctx}"
            );
            assert_eq!(spl(x.bl_spl), a["bl_spl"].as_u64(), "{ctx}");
            assert_eq!(spl(x.tee_spl), a["tee_spl"].as_u64(), "{ctx}");
            assert_eq!(spl(x.snp_spl), a["snp_spl"].as_u64(), "{ctx}");
            assert_eq!(spl(x.ucode_spl), a["ucode_spl"].as_u64(), "{ctx}");
            assert_eq!(spl(x.fmc_spl), a["fmc_spl"].as_u64(), "{ctx}");
            assert_eq!(
                x.hw_id.as_ref().map(hex::encode).as_deref(),
                a["hw_id"].as_str(),
                "{ctx}"
            );
            assert_eq!(x.csp_id.as_deref(), a["csp_id"].as_str(), "{ctx}");
        }
    }
}

#[test]
fn every_pair_gets_the_independent_verdict() {
    let exp = expected();
    let trust = store();
    let mut ok = 0;
    for p in exp["pairs"].as_array().unwrap() {
        let name = p["name"].as_str().unwrap();
        let report = Report::parse(&report_bytes(&exp, p["report"].as_str().unwrap())).unwrap();
        let files: Vec<&str> = p["certs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let certs = certs_of(&files);
        // `now` is one day after the latest notBefore of the chain (independent script); checks
        // failing before the chain is known do not depend on it.
        let now = p["now"].as_i64().unwrap_or(1_700_000_000);
        let got = verify_report(&report, &certs, &trust, now);
        assert_eq!(code(got.clone()), p["expected"], "{name}: {got:?}");
        if let Ok(v) = got {
            ok += 1;
            assert_eq!(v.leaf.fingerprint, p["leaf_sha256"], "{name}");
            assert_eq!(v.ark.fingerprint, p["ark_sha256"], "{name}");
            assert_eq!(
                v.intermediate.fingerprint, p["intermediate_sha256"],
                "{name}"
            );
            assert_eq!(v.product.name(), p["product"], "{name}");
            assert_eq!(v.ark_trust, ArkTrust::BuiltinPinned);
        }
        if let Some(c) = p["tcb_component"].as_str() {
            let e = verify_report(&report, &certs, &trust, now).unwrap_err();
            assert!(matches!(e, SnpError::TcbMismatch { component, .. } if component == c));
        }
    }
    assert!(ok >= 20, "only {ok} pairs verified");
}

/// Real pairs that verify, for the mutation tests: (report, leaf file, now).
fn good_pairs() -> Vec<(String, Vec<u8>, Vec<AmdCert>, i64)> {
    let exp = expected();
    [
        "virtee-milan",
        "oak-genoa",
        "oak-turin",
        "trustee-vlek",
        "aws-valid-2023-06",
    ]
    .iter()
    .map(|n| {
        let p = exp["pairs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == *n)
            .unwrap()
            .clone();
        assert_eq!(p["expected"], "ok");
        let files: Vec<&str> = p["certs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        (
            n.to_string(),
            report_bytes(&exp, p["report"].as_str().unwrap()),
            certs_of(&files),
            p["now"].as_i64().unwrap(),
        )
    })
    .collect()
}

#[test]
fn flipped_bits_in_the_signed_report_or_signature_are_caught() {
    let trust = store();
    for (name, bytes, certs, now) in good_pairs() {
        // REPORT_DATA, MEASUREMENT, HOST_DATA, REPORT_ID, the last signed byte, R, S, the high
        // (must-be-zero) half of R.
        for off in [
            0x50,
            0x9f,
            0xC0,
            0x140,
            0x29f,
            0x2A0,
            0x2E8 + 47,
            0x2A0 + 60,
        ] {
            let mut b = bytes.clone();
            b[off] ^= 0x01;
            let r = Report::parse(&b).unwrap();
            assert!(
                matches!(
                    verify_report(&r, &certs, &trust, now),
                    Err(SnpError::ReportSignatureInvalid { .. })
                ),
                "{name} offset {off:#x}"
            );
        }
        // Outside the signed range and the signature (reserved tail) nothing changes.
        let mut b = bytes.clone();
        b[0x49f] ^= 0x01;
        assert!(verify_report(&Report::parse(&b).unwrap(), &certs, &trust, now).is_ok());
    }
}

fn flip_last(der: &[u8], needle: &[u8]) -> Vec<u8> {
    let pos = der
        .windows(needle.len())
        .rposition(|w| w == needle)
        .unwrap();
    let mut d = der.to_vec();
    d[pos] ^= 0x20; // "Santa Clara" -> "santa Clara": still a valid name, different TBS
    d
}

#[test]
fn flipped_bits_in_each_certificate_are_caught() {
    let exp = expected();
    let report = Report::parse(&report_bytes(&exp, "virtee-milan")).unwrap();
    let now = 1_680_636_223;
    let bundle = certs_of(&["virtee-sev/cert_chain_milan"]);
    let ask = bundle.iter().find(|c| c.role == CertRole::Ask).unwrap();
    let ark = bundle.iter().find(|c| c.role == CertRole::Ark).unwrap();
    let vcek = &certs_of(&["virtee-sev/vcek_milan.der"])[0];

    // Leaf TBS: a flipped hwID byte still parses, but the ASK's signature no longer matches.
    let chip8 = &report.chip_id[..8];
    let bad_leaf = AmdCert::from_der(&flip_last(vcek.der(), chip8)).unwrap();
    let e = verify_report(&report, &[bad_leaf], &store(), now).unwrap_err();
    assert!(
        matches!(e, SnpError::CertSignatureInvalid { ref subject, .. } if subject == "SEV-VCEK"),
        "{e}"
    );

    // ASK TBS, with only the ARK trusted (no built-in ASK to fall back to).
    let mut only_ark = TrustStore::empty();
    only_ark.trust_ark(ark.clone()).unwrap();
    let bad_ask = AmdCert::from_der(&flip_last(ask.der(), b"Santa Clara")).unwrap();
    let e = verify_report(&report, &[vcek.clone(), bad_ask], &only_ark, now).unwrap_err();
    assert!(
        matches!(e, SnpError::CertSignatureInvalid { ref subject, .. } if subject == "SEV-Milan"),
        "{e}"
    );
    // ... and the untouched one works with the same store.
    verify_report(&report, &[vcek.clone(), ask.clone()], &only_ark, now).unwrap();

    // ARK TBS: no longer the pinned ARK.
    let bad_ark = AmdCert::from_der(&flip_last(ark.der(), b"Santa Clara")).unwrap();
    let e = verify_report(
        &report,
        &[vcek.clone(), ask.clone(), bad_ark.clone()],
        &TrustStore::empty(),
        now,
    )
    .unwrap_err();
    assert!(matches!(e, SnpError::ArkNotTrusted { .. }), "{e}");
    // Even when trusted explicitly its self-signature fails.
    let mut t = TrustStore::empty();
    t.trust_ark(bad_ark.clone()).unwrap();
    let e = verify_report(&report, &[vcek.clone(), ask.clone(), bad_ark], &t, now).unwrap_err();
    assert!(
        matches!(e, SnpError::CertSignatureInvalid { ref subject, ref issuer } if subject == "ARK-Milan" && issuer == "ARK-Milan"),
        "{e}"
    );

    // Flipped signature bytes of the leaf.
    let mut d = vcek.der().to_vec();
    let n = d.len();
    d[n - 10] ^= 0x01;
    let e = verify_report(&report, &[AmdCert::from_der(&d).unwrap()], &store(), now).unwrap_err();
    assert!(matches!(e, SnpError::CertSignatureInvalid { .. }), "{e}");
}

#[test]
fn validity_uses_the_injected_clock() {
    for (name, bytes, certs, now) in good_pairs() {
        let r = Report::parse(&bytes).unwrap();
        let leaf = certs.iter().find(|c| c.role.is_leaf()).unwrap();
        let e = verify_report(&r, &certs, &store(), leaf.not_after + 1).unwrap_err();
        assert!(matches!(e, SnpError::CertExpired { .. }), "{name}: {e}");
        assert_eq!(e.code(), "cert-expired");
        let e = verify_report(&r, &certs, &store(), leaf.not_before - 1).unwrap_err();
        assert!(matches!(e, SnpError::CertNotYetValid { .. }), "{name}: {e}");
        assert!(
            verify_report(&r, &certs, &store(), leaf.not_before).is_ok(),
            "{name}"
        );
        assert!(verify_report(&r, &certs, &store(), now).is_ok(), "{name}");
    }
}

#[test]
fn wrong_generation_and_wrong_intermediate_kind() {
    let exp = expected();
    let milan = Report::parse(&report_bytes(&exp, "virtee-milan")).unwrap();
    let vcek = certs_of(&["virtee-sev/vcek_milan.der"]);
    // Only the Turin ARK/ASK available: the Milan VCEK cannot chain.
    let turin = certs_of(&["virtee-sev/cert_chain_turin"]);
    let mut t = TrustStore::empty();
    for c in &turin {
        if c.role == CertRole::Ark {
            t.trust_ark(c.clone()).unwrap();
        }
    }
    let mut supplied = vcek.clone();
    supplied.extend(turin.clone());
    let e = verify_report(&milan, &supplied, &t, 1_680_636_223).unwrap_err();
    assert!(matches!(e, SnpError::CertChainIncomplete { .. }), "{e}");
    // A VCEK checked against an ASVK, and a VLEK against an ASK.
    let asvk = certs_of(&["trustee/amd/milan_ask_ark_asvk.pem"])
        .into_iter()
        .find(|c| c.role == CertRole::Asvk)
        .unwrap();
    let ask = turin.iter().find(|c| c.role == CertRole::Ask).unwrap();
    let e = check_intermediate_kind(&vcek[0], &asvk).unwrap_err();
    assert_eq!(e.code(), "intermediate-kind-mismatch");
    let vlek = &certs_of(&["trustee/snp/test-vlek.der"])[0];
    assert_eq!(
        check_intermediate_kind(vlek, ask).unwrap_err().code(),
        "intermediate-kind-mismatch"
    );
    // A Turin VCEK with the Milan (v2, 64-byte CHIP_ID) report: chain-generation-mismatch (also
    // in the pair table).
    let tv = certs_of(&["oak/turin_oc_vcek.der"]);
    let e = verify_report(&milan, &tv, &store(), 1_752_858_286).unwrap_err();
    assert!(
        matches!(e, SnpError::ChainGenerationMismatch { ref expected, ref found, .. } if expected == "Milan/Genoa" && found == "Turin"),
        "{e}"
    );
}

#[test]
fn turin_chip_id_needs_a_zero_tail() {
    let exp = expected();
    let mut b = report_bytes(&exp, "oak-turin");
    b[0x1A0 + 40] = 1;
    let r = Report::parse(&b).unwrap();
    let leaf = &certs_of(&["oak/turin_oc_vcek.der"])[0];
    assert!(matches!(
        check_chip_id(&r, leaf, Generation::Turin),
        Err(SnpError::ChipIdMismatch { .. })
    ));
    // A masked CHIP_ID cannot bind a VCEK.
    let mut b = report_bytes(&exp, "virtee-milan");
    b[0x1A0..0x1E0].fill(0);
    let r = Report::parse(&b).unwrap();
    let vcek = &certs_of(&["virtee-sev/vcek_milan.der"])[0];
    assert!(matches!(
        check_chip_id(&r, vcek, Generation::Milan),
        Err(SnpError::ChipIdMasked)
    ));
}

#[test]
fn header_checks_come_first() {
    let exp = expected();
    let base = report_bytes(&exp, "virtee-milan");
    let certs = certs_of(&["virtee-sev/vcek_milan.der"]);
    let cases: [(usize, u32, &str); 4] = [
        (0x34, 2, "report-signature-algo-unsupported"),
        (0x48, 7 << 2, "report-unsigned"),
        (0x48, 3 << 2, "report-signing-key-unsupported"),
        (0x48, 2, "report-chip-key-masked"),
    ];
    for (off, v, want) in cases {
        let mut b = base.clone();
        b[off..off + 4].copy_from_slice(&v.to_le_bytes());
        let r = Report::parse(&b).unwrap();
        assert_eq!(
            code(verify_report(&r, &certs, &store(), 1_680_636_223)),
            want
        );
    }
    // No leaf at all.
    let r = Report::parse(&base).unwrap();
    assert_eq!(
        code(verify_report(&r, &[], &store(), 1_680_636_223)),
        "cert-chain-incomplete"
    );
}

#[test]
fn test_chain_needs_explicit_trust() {
    let e: Value = serde_json::from_slice(&indep("testchain/expected.json")).unwrap();
    let now = e["now"].as_i64().unwrap();
    let report = Report::parse(&indep("testchain/report.bin")).unwrap();
    let mut certs = parse_certs(&indep("testchain/vcek.pem")).unwrap();
    certs.extend(parse_certs(&indep("testchain/ask.pem")).unwrap());
    let ark = parse_certs(&indep("testchain/ark.pem")).unwrap().remove(0);
    // Supplied but not trusted: refused with its fingerprint in the message.
    let mut with_ark = certs.clone();
    with_ark.push(ark.clone());
    let err = verify_report(&report, &with_ark, &store(), now).unwrap_err();
    assert_eq!(err.code(), "ark-not-trusted");
    assert!(
        err.to_string().contains(e["ark_sha256"].as_str().unwrap()),
        "{err}"
    );
    assert!(err.to_string().contains("trust"), "{err}");
    // Not supplied at all: the real ARK-Genoa did not sign the test ASK.
    let err = verify_report(&report, &certs, &store(), now).unwrap_err();
    assert_eq!(err.code(), "cert-signature-invalid", "{err}");
    // Trusted explicitly: verifies, and says so.
    let mut t = store();
    t.trust_ark(ark).unwrap();
    let v = verify_report(&report, &certs, &t, now).unwrap();
    assert_eq!(v.ark_trust, ArkTrust::ExplicitlyTrusted);
    assert_eq!(v.ark.fingerprint, e["ark_sha256"]);
    assert_eq!(v.leaf.fingerprint, e["vcek_sha256"]);
    assert_eq!(v.product, Generation::Genoa);
    assert_eq!(
        u64::from(v.reported_tcb.microcode),
        e["reported_tcb"]["microcode"].as_u64().unwrap()
    );
    // REPORT_DATA binding (§3.8 step 7).
    let rd = indep("testchain/runtime_data.json");
    check_report_data_binding(&report, &rd).unwrap();
    let mut other = rd.clone();
    other.push(b' ');
    assert_eq!(
        check_report_data_binding(&report, &other)
            .unwrap_err()
            .code(),
        "report-data-mismatch"
    );
    // A VCEK signed with salt 32 instead of 48.
    let mut bad = parse_certs(&indep("testchain/vcek-salt32.pem")).unwrap();
    bad.extend(parse_certs(&indep("testchain/ask.pem")).unwrap());
    let err = verify_report(&report, &bad, &t, now).unwrap_err();
    assert_eq!(err.code(), "cert-algorithm-unexpected", "{err}");
    // build_chain alone gives the same verdicts.
    let chain = build_chain(&certs[0], &certs, &t, now).unwrap();
    assert_eq!(chain.product, Generation::Genoa);
}

#[test]
fn cert_table_with_a_bad_offset_is_refused() {
    let mut t = real("constellation/aws-snp-history/certs_valid-2023-06.bin");
    t[16..20].copy_from_slice(&5000u32.to_le_bytes());
    assert_eq!(code(parse_certs(&t)), "cert-table-malformed");
}

#[test]
fn garbage_is_not_mistaken_for_a_cert_table() {
    // Neither PEM, nor DER (first byte 0x30), nor a table starting with an AMD GUID.
    let garbage = b"this is not a certificate at all, just some text in a file".to_vec();
    assert_eq!(code(parse_certs(&garbage)), "cert-parse-failed");
}

#[test]
fn sev_crate_agrees_where_it_parses() {
    use sev::firmware::guest::AttestationReport;
    use sev::parser::ByteParser;
    let exp = expected();
    let mut compared = 0;
    for name in exp["reports"].as_object().unwrap().keys() {
        let bytes = report_bytes(&exp, name);
        let ours = Report::parse(&bytes).unwrap();
        let Ok(theirs) = AttestationReport::from_bytes(&bytes) else {
            continue;
        };
        compared += 1;
        assert_eq!(theirs.version, ours.version, "{name}");
        assert_eq!(theirs.guest_svn, ours.guest_svn, "{name}");
        assert_eq!(u64::from(theirs.policy), ours.policy.raw, "{name}");
        assert_eq!(theirs.family_id, ours.family_id, "{name}");
        assert_eq!(theirs.image_id, ours.image_id, "{name}");
        assert_eq!(theirs.vmpl, ours.vmpl, "{name}");
        assert_eq!(theirs.sig_algo, ours.signature_algo, "{name}");
        assert_eq!(
            u64::from(theirs.plat_info),
            ours.platform_info.raw,
            "{name}"
        );
        assert_eq!(u32::from(theirs.key_info), ours.key_info.raw, "{name}");
        assert_eq!(theirs.report_data, ours.report_data, "{name}");
        assert_eq!(theirs.measurement, ours.measurement, "{name}");
        assert_eq!(theirs.host_data, ours.host_data, "{name}");
        assert_eq!(theirs.id_key_digest, ours.id_key_digest, "{name}");
        assert_eq!(theirs.author_key_digest, ours.author_key_digest, "{name}");
        assert_eq!(theirs.report_id, ours.report_id, "{name}");
        assert_eq!(theirs.report_id_ma, ours.report_id_ma, "{name}");
        assert_eq!(theirs.chip_id, ours.chip_id, "{name}");
        assert_eq!(theirs.cpuid_fam_id, ours.cpuid.map(|c| c.family), "{name}");
        assert_eq!(theirs.cpuid_mod_id, ours.cpuid.map(|c| c.model), "{name}");
        assert_eq!(theirs.cpuid_step, ours.cpuid.map(|c| c.stepping), "{name}");
        assert_eq!(theirs.launch_mit_vector, ours.launch_mit_vector, "{name}");
        assert_eq!(theirs.current_mit_vector, ours.current_mit_vector, "{name}");
        assert_eq!(
            (
                theirs.current.major,
                theirs.current.minor,
                theirs.current.build
            ),
            (
                ours.current_version.major,
                ours.current_version.minor,
                ours.current_version.build
            ),
            "{name}"
        );
        // sev treats a v2 non-Turin report as Genoa: same TCB layout as Milan.
        let layout = ours.generation.unwrap_or(Generation::Genoa).tcb_layout();
        let t = ours.reported_tcb.decode(layout);
        let s = theirs.reported_tcb;
        assert_eq!(
            (s.fmc, s.bootloader, s.tee, s.snp, s.microcode),
            (t.fmc, t.bootloader, t.tee, t.snp, t.microcode),
            "{name}"
        );
    }
    assert!(compared >= 10, "sev parsed only {compared} reports");
}

#[test]
fn sev_crate_signature_verdicts_agree_where_it_parses() {
    use sev::certs::snp::{Chain, Verifiable};
    use sev::firmware::guest::AttestationReport;
    use sev::parser::ByteParser;
    let exp = expected();
    let trust = store();
    let mut compared = 0;
    for p in exp["pairs"].as_array().unwrap() {
        let name = p["name"].as_str().unwrap();
        let want = p["expected"].as_str().unwrap();
        if !["ok", "report-signature-invalid", "cert-signature-invalid"].contains(&want) {
            continue; // checks sev does not make (hwID, TCB, kind, generation)
        }
        let bytes = report_bytes(&exp, p["report"].as_str().unwrap());
        let Ok(theirs) = AttestationReport::from_bytes(&bytes) else {
            continue;
        };
        let report = Report::parse(&bytes).unwrap();
        let files: Vec<&str> = p["certs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let certs = certs_of(&files);
        let leaf = skrd::format::snp::select_leaf(&report, &certs).unwrap();
        // The ASK/ASVK and ARK of the leaf's name, from the built-ins.
        let inter = trust
            .intermediates()
            .find(|c| c.subject_cn == leaf.issuer_cn)
            .unwrap();
        let ark = trust
            .arks()
            .map(|(a, _)| a)
            .find(|a| a.subject_cn == inter.issuer_cn)
            .unwrap();
        let chain = Chain::from_der(ark.der(), inter.der(), leaf.der()).unwrap();
        let verdict = (&chain, &theirs).verify();
        assert_eq!(
            verdict.is_ok(),
            want == "ok",
            "{name}: sev says {verdict:?}, we say {want}"
        );
        compared += 1;
    }
    assert!(compared >= 10, "compared only {compared}");
}

#[test]
fn real_report_data_and_host_data_bindings() {
    // python hashlib: SHA-256(constellation/snp/runtimedata.bin) = 0ccc0895...cfd38b = the
    // first 32 bytes of REPORT_DATA of constellation/snp/attestation.bin, 32 zero bytes follow.
    let b = real("constellation/snp/attestation.bin");
    let r = Report::parse(&b[..1184]).unwrap();
    let rd = real("constellation/snp/runtimedata.bin");
    check_report_data_binding(&r, &rd).unwrap();
    let e = check_report_data_binding(&r, &rd[1..]).unwrap_err();
    assert!(matches!(e, SnpError::ReportDataMismatch { .. }));
    assert!(e.to_string().contains("0ccc0895ef2f2c3b"), "{e}");
    // PROTOCOLS.md §2.5: ACI HOST_DATA = SHA-256(base64-decoded CCE policy); python hashlib
    // gives cadd74f7...9b031c for uvm_security_policy.base64.
    let r = Report::parse(&real("confidential-sidecar-containers/snp_report.bin")).unwrap();
    assert_eq!(
        hex::encode(r.host_data),
        "cadd74f71ebb8fbf9782baab649612520f3c416bc5ce9ac768808ddc8d9b031c"
    );
}

#[test]
fn no_panics_on_truncated_or_mutated_inputs() {
    // Every prefix of a real DER certificate, PEM bundle and certificate table, and pseudo-random
    // byte flips of each, must give a value or an error, never a panic.
    let inputs = [
        real("virtee-sev/vcek_turin.der"),
        real("trustee/amd/genoa_ask_ark_asvk.pem"),
        real("constellation/aws-snp-history/certs_valid-2023-06.bin"),
        real("confidential-sidecar-containers/uvm_host_amd_certificate.json"),
    ];
    for input in &inputs {
        for n in (0..input.len()).step_by(7) {
            let _ = parse_certs(&input[..n]);
            let _ = parse_thim_document(&input[..n]);
        }
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..150 {
            let mut m = input.clone();
            for _ in 0..4 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let i = (seed % m.len() as u64) as usize;
                m[i] ^= (seed >> 32) as u8 | 1;
            }
            let _ = parse_certs(&m);
        }
    }
    // Reports: any 1184 bytes parse or give a version error; verification never panics.
    let base = real("oak/turin_oc_report.bin");
    let certs = certs_of(&["oak/turin_oc_vcek.der"]);
    let trust = store();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..60 {
        let mut m = base.clone();
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let i = (seed % 0x2A0) as usize;
        m[i] ^= (seed >> 40) as u8 | 1;
        if let Ok(r) = Report::parse(&m) {
            let _ = report_json(&r);
            assert!(
                verify_report(&r, &certs, &trust, 1_752_858_286).is_err(),
                "flip at {i:#x}"
            );
        }
    }
}
