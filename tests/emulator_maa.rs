//! `POST {attestation}/attest/SevSnpVm` of `skr-emulator serve` end to end (PROTOCOLS.md §5.2,
//! §3.8, §5.4, §5.5, §9.1 traps 13-16): the real binary is spawned on a fresh state directory,
//! evidence is made by the test firmware of that directory, and the token is verified with
//! `skrd::format::jose` against the served `/certs` and compared claim by claim (names, nesting,
//! JSON types) with a real MAA token.
//!
//! Expected values come from PROTOCOLS.md (claim names and types of §5.4, error codes of §5.1)
//! and from the evidence the test builds itself (SHA-256 of the runtime data, the firmware's
//! MEASUREMENT and the chain's TCB), never from the emulator's own output.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::emulator::{json_type, now, post_json as post, Emu};

use std::time::Duration;

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;
use p384::ecdsa::signature::Signer as _;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use skrd::emulator::amd_chain::{cert_pem, TestAmdChain};
use skrd::emulator::firmware::TestFirmware;
use skrd::format::jose::jwk::KeySet;
use skrd::format::jose::jwt::{decode_unverified, verify_jwt, Validation};

/// The four base64 flavours of PROTOCOLS.md §5.2 / trap 13.
#[derive(Clone, Copy, Debug)]
enum B64 {
    Std,
    StdNoPad,
    Url,
    UrlNoPad,
}

fn enc(f: B64, bytes: &[u8]) -> String {
    match f {
        B64::Std => STANDARD.encode(bytes),
        B64::StdNoPad => STANDARD_NO_PAD.encode(bytes),
        B64::Url => URL_SAFE.encode(bytes),
        B64::UrlNoPad => URL_SAFE_NO_PAD.encode(bytes),
    }
}

/// Runtime data like the sidecar's: a JWKS with the transfer key.
const RUNTIME: &str = r#"{"keys":[{"e":"AQAB","key_ops":["encrypt"],"kid":"TpmEphemeralEncryptionKey","kty":"RSA","n":"wKq5DAAApeieiGeeLsW7VMdeXaPUuBCaZcGZyMCY7uN_qywEpJL7m2tReWd0DskTeRZ053747Sqffmgo5csdeoT1RkapSwh-jlvvzfhD0OaV1ATfFAxMPy1_xVCQ8i6pb-vOzykVre3oaRLiARaawwn0325K-VhfZJecMkR19F06V7hwy6E6P16rWNHqCj7eqlfZJfihFAYt17RHXzViFtF47rWtSJJXtC2_gFc79du5YqmffanVPdVdPpkP0mQxSt5AQH_LZE7ny3XKtCOQYSwLp44uVVOPVpc011HNlxuk0utDXbltiZwoISW9ran2IcdVZdrGe8DvOR7lfA5JXw"}]}"#;

fn report_data_for(runtime: &[u8]) -> [u8; 64] {
    let mut rd = [0u8; 64];
    rd[..32].copy_from_slice(&Sha256::digest(runtime));
    rd
}

fn chain_pem(chain: &TestAmdChain) -> String {
    [&chain.vcek_der, &chain.ask_der, &chain.ark_der]
        .iter()
        .map(|d| cert_pem(d).unwrap())
        .collect()
}

/// A request body; the inner report JSON is pretty-printed, as in the REST example.
fn body(f: B64, report: &[u8], chain: &str, runtime: &[u8], extra: Value) -> Value {
    let inner = serde_json::to_string_pretty(&json!({
        "SnpReport": enc(f, report),
        "VcekCertChain": enc(f, chain.as_bytes()),
    }))
    .unwrap();
    let mut b = json!({
        "report": enc(f, format!("\n{inner}").as_bytes()),
        "runtimeData": {"data": enc(f, runtime), "dataType": "JSON"},
    });
    for (k, v) in extra.as_object().unwrap() {
        b[k] = v.clone();
    }
    b
}

/// Asserts a 400 with Azure's body, `azure` as code, and the skrd `code` at the message start.
fn assert_refused(got: (u16, Option<String>, Value), azure: &str, code: &str) {
    let (status, header, body) = got;
    assert_eq!(status, 400, "{body}");
    assert_eq!(header.as_deref(), Some(azure), "{body}");
    assert_eq!(body["error"]["code"], azure, "{body}");
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(msg.starts_with(&format!("{code}: ")), "{msg}");
}

const REAL_TOKEN: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/real/maa-tokens/jesserc-sevsnp-tee/token-iat1735598940.jwt"
));

#[test]
fn sevsnpvm_token_verifies_and_matches_real_claims() {
    let dir = common::fresh_state_dir();
    let emu = Emu::start(dir.path(), &[]);
    let c = emu.client(Duration::from_secs(30));
    let issuer = emu.url("attestation");
    let chain = TestAmdChain::load(dir.path()).unwrap();
    let pem = chain_pem(&chain);
    let tcb = chain.tcb;
    let fw = TestFirmware::new(chain);
    let report = fw
        .sign_report(&report_data_for(RUNTIME.as_bytes()), 0)
        .unwrap();

    let (s, jwks) = {
        let r = c.get(format!("{issuer}/certs")).send().unwrap();
        (r.status().as_u16(), r.json::<Value>().unwrap())
    };
    assert_eq!(s, 200);
    let keys = KeySet::from_json(&jwks).unwrap();

    // All four flavours, both path spellings, each accepted api-version (§5.1), nonce as a
    // JSON number and as a string.
    let cases = [
        (
            B64::Std,
            "SevSnpVm",
            "2020-10-01",
            json!(7394904505194784658u64),
        ),
        (B64::StdNoPad, "SevSnpVM", "2022-08-01", json!("abc")),
        (B64::Url, "sevsnpvm", "2023-04-01-preview", json!(1)),
        (B64::UrlNoPad, "SevSnpVm", "2025-06-01", json!("n-4")),
    ];
    let mut last = None;
    for (f, path, v, nonce) in cases {
        let url = format!("{issuer}/attest/{path}?api-version={v}");
        let b = body(
            f,
            &report,
            &pem,
            RUNTIME.as_bytes(),
            json!({"nonce": nonce}),
        );
        let (status, _, resp) = post(&c, &url, &b);
        assert_eq!(status, 200, "{f:?} {path} {v}: {resp}");
        let token = resp["token"].as_str().unwrap().to_string();
        let vt = verify_jwt(token.as_bytes(), &keys, &Validation::maa(&issuer, now()))
            .unwrap_or_else(|e| panic!("{f:?}: {e}"));
        let want_nonce = match &nonce {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        assert_eq!(vt.nonce(), Some(want_nonce.as_str()), "trap 15");
        last = Some((token, vt));
    }
    let (token, vt) = last.unwrap();

    // Header: exactly the real key set (§5.4), jku = <issuer>/certs.
    let (real_header, real) = decode_unverified(REAL_TOKEN).unwrap();
    let header_json = |t: &str| -> Value {
        let seg = t.split('.').next().unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(seg).unwrap()).unwrap()
    };
    let ours_h = header_json(&token);
    let real_h = header_json(std::str::from_utf8(REAL_TOKEN).unwrap().trim());
    let names = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(&ours_h), names(&real_h));
    assert_eq!(ours_h["jku"], format!("{issuer}/certs"));
    assert_eq!(real_header.alg, "RS256");
    assert_eq!(ours_h["alg"], "RS256");
    assert_eq!(ours_h["typ"], "JWT");

    // Values established by the test: the binding hash, the firmware's MEASUREMENT, the
    // chain's TCB (Milan/Genoa layout), POLICY 0x30000 (SMT allowed, no DEBUG, no migration).
    let snp = vt.sevsnp().unwrap();
    assert_eq!(snp.attestation_type, "sevsnpvm");
    assert_eq!(snp.compliance_status, "azure-compliant-cvm");
    assert_eq!(
        snp.report_data,
        hex::encode(report_data_for(RUNTIME.as_bytes()))
    );
    assert_eq!(snp.launch_measurement, hex::encode(fw.measurement));
    assert_eq!(snp.host_data, hex::encode([0u8; 32]));
    assert_eq!(snp.report_id, hex::encode(&report[0x140..0x160]));
    assert_eq!(
        (
            snp.bootloader_svn,
            snp.tee_svn,
            snp.snpfw_svn,
            snp.microcode_svn
        ),
        (
            u64::from(tcb.bootloader),
            u64::from(tcb.tee),
            u64::from(tcb.snp),
            u64::from(tcb.microcode)
        )
    );
    assert_eq!((snp.vmpl, snp.guest_svn), (0, 0));
    assert!(!snp.is_debuggable && !snp.migration_allowed && snp.smt_allowed);
    let runtime: Value = serde_json::from_str(RUNTIME).unwrap();
    assert_eq!(vt.claims["x-ms-runtime"], runtime);
    assert_eq!(vt.expires_at - vt.issued_at.unwrap(), 28_800);
    assert_eq!(vt.not_before, vt.issued_at);
    let jti = vt.claims["jti"].as_str().unwrap();
    assert!(
        jti.len() == 64
            && jti
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    assert_eq!(vt.claims["iss"], issuer);

    // The SNP claims equal the report bytes read at the §3.2 offsets.
    for (k, v) in claims_from_bytes(&report, false).as_object().unwrap() {
        assert_eq!(&vt.claims[k], v, "{k}");
    }

    // Independent RS256 check against the served JWKS (python3 cryptography, x5c certificate's
    // key and the n/e members both).
    let jwks_path = dir.path().join("served-maa-jwks.json");
    std::fs::write(&jwks_path, jwks.to_string()).unwrap();
    let out = common::python(
        r#"
import sys, json, base64
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa, padding
from cryptography.hazmat.primitives import hashes
d = lambda s: base64.urlsafe_b64decode(s + '=' * (-len(s) % 4))
tok, jwks = sys.argv[1], json.load(open(sys.argv[2]))
h, p, s = tok.split('.')
k = [k for k in jwks['keys'] if k['kid'] == json.loads(d(h))['kid']][0]
pub = rsa.RSAPublicNumbers(int.from_bytes(d(k['e']), 'big'), int.from_bytes(d(k['n']), 'big')).public_key()
pub.verify(d(s), (h + '.' + p).encode(), padding.PKCS1v15(), hashes.SHA256())
cert = x509.load_der_x509_certificate(base64.b64decode(k['x5c'][0]))
cert.public_key().verify(d(s), (h + '.' + p).encode(), padding.PKCS1v15(), hashes.SHA256())
print('ok')
"#,
        &[&token, jwks_path.to_str().unwrap()],
    );
    assert_eq!(out.trim(), "ok");

    // Claim by claim against the real token. The real one is an AzureGuest token: its SNP facts
    // sit in `x-ms-isolation-tee`, which a SevSnpVm token has at the top level (§5.4, trap 18).
    // Differences on purpose: the real top level's `secureboot`, `x-ms-azurevm-*` and
    // `x-ms-isolation-tee` are AzureGuest-only (vTPM facts); its `x-ms-attestation-type` is
    // "azurevm" there; our `nonce` exists because this request sent one (SevSnpVm only).
    let ours = vt.claims.as_object().unwrap();
    let tee = real["x-ms-isolation-tee"].as_object().unwrap();
    let common_top = [
        "exp",
        "iat",
        "iss",
        "jti",
        "nbf",
        "x-ms-policy-hash",
        "x-ms-runtime",
        "x-ms-ver",
    ];
    let mut expected_names: Vec<&str> = tee.keys().map(String::as_str).collect();
    expected_names.extend(common_top);
    expected_names.push("nonce");
    expected_names.sort_unstable();
    expected_names.dedup();
    let mut our_names: Vec<&str> = ours.keys().map(String::as_str).collect();
    our_names.sort_unstable();
    assert_eq!(our_names, expected_names);
    let mut pairs: Vec<(String, Value)> = tee.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    pairs.extend(common_top.iter().map(|n| (n.to_string(), real[*n].clone())));
    for (name, real_value) in &pairs {
        let mine = &ours[name.as_str()];
        assert_eq!(json_type(mine), json_type(real_value), "type of {name}");
        if let (Value::String(a), Value::String(b)) = (mine, real_value) {
            if name.starts_with("x-ms-sevsnpvm-") || name == "jti" {
                assert_eq!(a.len(), b.len(), "hex length of {name}");
                assert!(
                    a.bytes()
                        .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)),
                    "{name} is lower-case hex: {a}"
                );
            }
        }
    }
    assert_eq!(ours["x-ms-ver"], real["x-ms-ver"]);
    assert_eq!(
        ours["x-ms-compliance-status"],
        tee["x-ms-compliance-status"]
    );
    assert_eq!(ours["x-ms-attestation-type"], tee["x-ms-attestation-type"]);
}

/// The report re-signed with the test VCEK after `edit` (a report the firmware cannot make).
fn resign(chain: &TestAmdChain, report: &[u8], edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut r = report.to_vec();
    edit(&mut r);
    let sig: p384::ecdsa::Signature = chain.vcek_key.sign(&r[..0x2A0]);
    let (sr, ss) = sig.split_bytes();
    // r and s: 72-byte little-endian at 0x2A0 and 0x2E8 (PROTOCOLS.md §3.5, trap 1).
    for (at, be) in [(0x2A0, sr), (0x2E8, ss)] {
        r[at..at + 72].fill(0);
        for (i, b) in be.iter().rev().enumerate() {
            r[at + i] = *b;
        }
    }
    r
}

#[test]
fn sevsnpvm_refusals_name_the_failed_check() {
    let dir = common::fresh_state_dir();
    let emu = Emu::start(dir.path(), &[]);
    let c = emu.client(Duration::from_secs(30));
    let issuer = emu.url("attestation");
    let url = format!("{issuer}/attest/SevSnpVm?api-version=2022-08-01");
    let chain = TestAmdChain::load(dir.path()).unwrap();
    let pem = chain_pem(&chain);
    let rt = RUNTIME.as_bytes();
    let mut fw = TestFirmware::new(TestAmdChain::load(dir.path()).unwrap());
    let report = fw.sign_report(&report_data_for(rt), 0).unwrap().to_vec();
    let none = json!({});

    // Control: the good request passes, so each refusal below is caused by its one change.
    let (s, _, resp) = post(&c, &url, &body(B64::Url, &report, &pem, rt, none.clone()));
    assert_eq!(s, 200, "{resp}");

    // Wrong chain: a real AMD Genoa VCEK of another chip (oak fixture) chains to the pinned
    // Genoa ARK but its hwID is not this report's CHIP_ID (§3.7).
    let other = cert_pem(include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/real/oak/genoa_oc_vcek.der"
    )))
    .unwrap();
    let got = post(&c, &url, &body(B64::Url, &report, &other, rt, none.clone()));
    assert_refused(got, "InvalidParameter", "chip-id-mismatch");

    // Flipped MEASUREMENT byte: the ECDSA signature no longer verifies (§3.5).
    let mut flipped = report.clone();
    flipped[0x90] ^= 1;
    let got = post(&c, &url, &body(B64::Url, &flipped, &pem, rt, none.clone()));
    assert_refused(got, "InvalidParameter", "report-signature-invalid");

    // Broken binding: other runtime data than REPORT_DATA commits to (§3.8 step 7).
    let got = post(
        &c,
        &url,
        &body(B64::Url, &report, &pem, b"{\"keys\":[]}", none.clone()),
    );
    let msg = got.2["error"]["message"].as_str().unwrap().to_string();
    assert!(msg.contains("runtimeData binding failed"), "{msg}");
    assert_refused(got, "InvalidParameter", "report-data-mismatch");

    // Debug policy: POLICY bit 19 set and the report re-signed by the test VCEK.
    let debug = resign(&chain, &report, |r| r[0x08 + 2] |= 0x08);
    let got = post(&c, &url, &body(B64::Url, &debug, &pem, rt, none.clone()));
    assert_refused(got, "PolicyEvaluationError", "maa-policy-debug-allowed");

    // initTimeData: must hash to HOST_DATA; refused against zero HOST_DATA, accepted when the
    // firmware launched the guest with that HOST_DATA.
    let init = b"{\"policy\":\"allow all\"}";
    let it = json!({"initTimeData": {"data": enc(B64::Std, init), "dataType": "Binary"}});
    let got = post(&c, &url, &body(B64::Url, &report, &pem, rt, it.clone()));
    assert_refused(got, "InvalidParameter", "maa-inittime-mismatch");
    fw.host_data.copy_from_slice(&Sha256::digest(init));
    let with_host = fw.sign_report(&report_data_for(rt), 0).unwrap();
    let (s, _, resp) = post(&c, &url, &body(B64::Url, &with_host, &pem, rt, it));
    assert_eq!(s, 200, "{resp}");

    // Malformed bodies: the message names the field.
    for (b, code, field) in [
        (json!({"report": 5}), "maa-field-invalid", "report"),
        (
            json!({"report": "%%%"}),
            "maa-field-base64-invalid",
            "report",
        ),
        (json!({"runtimeData": {}}), "maa-field-missing", "report"),
        (
            json!({"report": enc(B64::Url, b"{\"SnpReport\":\"AA\"}")}),
            "maa-field-missing",
            "report.VcekCertChain",
        ),
    ] {
        let got = post(&c, &url, &b);
        let msg = got.2["error"]["message"].as_str().unwrap().to_string();
        assert!(msg.contains(field), "{msg}");
        assert_refused(got, "InvalidParameter", code);
    }
    let mut short = body(B64::Url, &report[..1000], &pem, rt, none.clone());
    short["nonce"] = json!(1);
    let got = post(&c, &url, &short);
    assert!(got.2["error"]["message"]
        .as_str()
        .unwrap()
        .contains("report.SnpReport"));
    let resp = c.post(&url).body("not json").send().unwrap();
    assert_eq!(resp.status().as_u16(), 400);

    // Endorsements (ACI): shape {"Uvm": [base64]} required; well-formed ones make the token
    // "azure-compliant-uvm" as real ACI tokens are (§5.4); the COSE signature is not checked.
    let with_endorsements = |e: &[u8]| {
        let inner = json!({
            "SnpReport": enc(B64::Url, &report),
            "VcekCertChain": enc(B64::Url, pem.as_bytes()),
            "Endorsements": enc(B64::Url, e),
        });
        json!({
            "report": enc(B64::Url, inner.to_string().as_bytes()),
            "runtimeData": {"data": enc(B64::Url, rt), "dataType": "JSON"},
        })
    };
    let (s, _, resp) = post(&c, &url, &with_endorsements(br#"{"Uvm":["0oRZ"]}"#));
    assert_eq!(s, 200, "{resp}");
    let (_, claims) = decode_unverified(resp["token"].as_str().unwrap().as_bytes()).unwrap();
    assert_eq!(claims["x-ms-compliance-status"], "azure-compliant-uvm");
    let got = post(&c, &url, &with_endorsements(br#"{"Uvm":"0oRZ"}"#));
    assert_refused(got, "InvalidParameter", "maa-field-invalid");
    let got = post(&c, &url, &with_endorsements(b"[]"));
    assert_refused(got, "InvalidParameter", "maa-field-json-invalid");

    // Only POST on the attest path.
    let resp = c.get(&url).send().unwrap();
    assert_eq!(resp.status().as_u16(), 405);

    // api-version: missing and unknown (PROTOCOLS.md §5.1 lists the accepted ones).
    let good = body(B64::Url, &report, &pem, rt, none);
    let (s, h, b) = post(&c, &format!("{issuer}/attest/SevSnpVm"), &good);
    assert_eq!(
        (s, h.as_deref()),
        (400, Some("MissingApiVersionParameter")),
        "{b}"
    );
    let (s, h, b) = post(
        &c,
        &format!("{issuer}/attest/SevSnpVm?api-version=2019-01-01"),
        &good,
    );
    assert_eq!(
        (s, h.as_deref()),
        (400, Some("UnsupportedApiVersionValue")),
        "{b}"
    );
    assert_eq!(b["error"]["code"], "UnsupportedApiVersionValue");
}

/// The `x-ms-sevsnpvm-*` values read straight from the report bytes at the offsets of
/// PROTOCOLS.md §3.2-§3.4 (independent of `skrd::format::snp`); `turin` selects the TCB layout
/// (Turin: FMC, BL, TEE, SNP at bytes 0-3; Milan/Genoa: BL, TEE at 0-1, SNP at 6; µcode at 7).
fn claims_from_bytes(r: &[u8], turin: bool) -> Value {
    let u32le = |at: usize| u32::from_le_bytes(r[at..at + 4].try_into().unwrap());
    let policy = u64::from_le_bytes(r[0x08..0x10].try_into().unwrap());
    let tcb = &r[0x180..0x188];
    let (bl, tee, snp) = if turin {
        (tcb[1], tcb[2], tcb[3])
    } else {
        (tcb[0], tcb[1], tcb[6])
    };
    json!({
        "x-ms-sevsnpvm-authorkeydigest": hex::encode(&r[0x110..0x140]),
        "x-ms-sevsnpvm-bootloader-svn": bl,
        "x-ms-sevsnpvm-familyId": hex::encode(&r[0x10..0x20]),
        "x-ms-sevsnpvm-guestsvn": u32le(0x04),
        "x-ms-sevsnpvm-hostdata": hex::encode(&r[0xC0..0xE0]),
        "x-ms-sevsnpvm-idkeydigest": hex::encode(&r[0xE0..0x110]),
        "x-ms-sevsnpvm-imageId": hex::encode(&r[0x20..0x30]),
        "x-ms-sevsnpvm-is-debuggable": policy & (1 << 19) != 0,
        "x-ms-sevsnpvm-launchmeasurement": hex::encode(&r[0x90..0xC0]),
        "x-ms-sevsnpvm-microcode-svn": tcb[7],
        "x-ms-sevsnpvm-migration-allowed": policy & (1 << 18) != 0,
        "x-ms-sevsnpvm-reportdata": hex::encode(&r[0x50..0x90]),
        "x-ms-sevsnpvm-reportid": hex::encode(&r[0x140..0x160]),
        "x-ms-sevsnpvm-smt-allowed": policy & (1 << 16) != 0,
        "x-ms-sevsnpvm-snpfw-svn": snp,
        "x-ms-sevsnpvm-tee-svn": tee,
        "x-ms-sevsnpvm-vmpl": u32le(0x30),
    })
}

/// Real AMD evidence (oak fixtures: Milan, Genoa, Turin reports with their chips' VCEKs, no
/// ASK/ARK sent) verifies against the built-in pinned roots; without `runtimeData` there is no
/// binding to check and no `x-ms-runtime`.
#[test]
fn real_amd_reports_verify_against_the_pinned_roots() {
    let dir = common::fresh_state_dir();
    let emu = Emu::start(dir.path(), &[]);
    let c = emu.client(Duration::from_secs(30));
    let issuer = emu.url("attestation");
    let url = format!("{issuer}/attest/SevSnpVm?api-version=2022-08-01");
    let jwks: Value = c
        .get(format!("{issuer}/certs"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let keys = KeySet::from_json(&jwks).unwrap();
    macro_rules! real {
        ($p:expr) => {
            &include_bytes!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/real/",
                $p
            ))[..]
        };
    }
    for (name, report, vcek, turin) in [
        (
            "genoa",
            real!("oak/genoa_oc_report.bin"),
            real!("oak/genoa_oc_vcek.der"),
            false,
        ),
        (
            "milan",
            real!("oak/milan_oc_release_report.bin"),
            real!("oak/milan_oc_release_vcek.der"),
            false,
        ),
        (
            "turin",
            real!("oak/turin_oc_report.bin"),
            real!("oak/turin_oc_vcek.der"),
            true,
        ),
    ] {
        let inner = json!({
            "SnpReport": enc(B64::UrlNoPad, report),
            "VcekCertChain": enc(B64::Std, cert_pem(vcek).unwrap().as_bytes()),
        });
        let b = json!({"report": enc(B64::UrlNoPad, inner.to_string().as_bytes())});
        let (s, _, resp) = post(&c, &url, &b);
        assert_eq!(s, 200, "{name}: {resp}");
        let token = resp["token"].as_str().unwrap();
        let vt = verify_jwt(token.as_bytes(), &keys, &Validation::maa(&issuer, now())).unwrap();
        let expected = claims_from_bytes(report, turin);
        for (k, v) in expected.as_object().unwrap() {
            assert_eq!(&vt.claims[k], v, "{name}: {k}");
        }
        assert!(vt.claims.get("x-ms-runtime").is_none(), "{name}");
        assert!(vt.claims.get("nonce").is_none(), "{name}");
    }
}

/// `serve --attestation-policy FILE`: the authorization rules decide (PolicyEvaluationError
/// naming the rule), `x-ms-policy-hash` covers the configured text, the policy survives a restart
/// without the flag, a request's `draftPolicyForAttestation` is evaluated instead of it, and an
/// invalid policy file stops the start with its own code.
#[test]
fn configured_attestation_policy_decides_and_persists() {
    let dir = common::fresh_state_dir();
    let policy_file = dir.path().join("policy-in.txt");
    // Only VMPL 1 guests, and never a debuggable one (the documented language, rules in order).
    let text = "version=1.0;\nauthorizationrules\n{\n\
                c:[type==\"x-ms-sevsnpvm-is-debuggable\", value==true] => deny();\n\
                c:[type==\"x-ms-sevsnpvm-vmpl\", value==1] => permit();\n};\n";
    std::fs::write(&policy_file, text).unwrap();
    let mut emu = Emu::start(
        dir.path(),
        &["--attestation-policy", policy_file.to_str().unwrap()],
    );
    let c = emu.client(Duration::from_secs(30));
    let url = format!(
        "{}/attest/SevSnpVm?api-version=2022-08-01",
        emu.url("attestation")
    );
    let chain = TestAmdChain::load(dir.path()).unwrap();
    let pem = chain_pem(&chain);
    let rt = RUNTIME.as_bytes();
    let fw = TestFirmware::new(TestAmdChain::load(dir.path()).unwrap());
    let vmpl0 = fw.sign_report(&report_data_for(rt), 0).unwrap().to_vec();
    let vmpl1 = fw.sign_report(&report_data_for(rt), 1).unwrap().to_vec();
    let none = json!({});

    let got = post(&c, &url, &body(B64::Url, &vmpl0, &pem, rt, none.clone()));
    assert_refused(got.clone(), "PolicyEvaluationError", "maa-policy-denied");
    assert!(
        got.2["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no authorization rule permits"),
        "{}",
        got.2
    );
    let (s, _, resp) = post(&c, &url, &body(B64::Url, &vmpl1, &pem, rt, none.clone()));
    assert_eq!(s, 200, "{resp}");
    let (_, claims) = decode_unverified(resp["token"].as_str().unwrap().as_bytes()).unwrap();
    // x-ms-policy-hash = base64url(SHA-256(base64url(policy text))), the formula of
    // policy_hash's own test (established with python3 there), computed here from the text.
    let b64_text = URL_SAFE_NO_PAD.encode(text.as_bytes());
    assert_eq!(
        claims["x-ms-policy-hash"],
        URL_SAFE_NO_PAD.encode(Sha256::digest(b64_text.as_bytes()))
    );

    // A draft policy in the request is evaluated instead of the configured one.
    let draft = json!({"draftPolicyForAttestation":
        "version=1.0; authorizationrules { => permit(); };"});
    let (s, _, resp) = post(&c, &url, &body(B64::Url, &vmpl0, &pem, rt, draft));
    assert_eq!(s, 200, "{resp}");
    let bad_draft = json!({"draftPolicyForAttestation": "version=1.0; nonsense"});
    let got = post(&c, &url, &body(B64::Url, &vmpl0, &pem, rt, bad_draft));
    assert_refused(got, "InvalidParameter", "maa-policy-syntax");

    // Restart without the flag: the kept policy still decides.
    assert!(emu.sigterm().success());
    let emu = Emu::start(dir.path(), &[]);
    let c = emu.client(Duration::from_secs(30));
    let url = format!(
        "{}/attest/SevSnpVm?api-version=2022-08-01",
        emu.url("attestation")
    );
    let got = post(&c, &url, &body(B64::Url, &vmpl0, &pem, rt, none));
    assert_refused(got, "PolicyEvaluationError", "maa-policy-denied");
    drop(emu);

    // An invalid policy file: no start, exit 1 (skr-emulator's start failure), the code on stderr.
    std::fs::write(
        &policy_file,
        "version=1.0; authorizationrules { => allow(); };",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_skr-emulator"))
        .args(["serve", "--listen", "127.0.0.1:0", "--state-dir"])
        .arg(dir.path())
        .arg("--attestation-policy")
        .arg(&policy_file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("(emulator-attestation-policy-invalid)"),
        "{err}"
    );
}

/// "Trusts only this test chain and the real AMD roots": a report made by another emulator
/// instance's test firmware (a second state directory, its own ARK/ASK/VCEK) is refused with
/// `ark-not-trusted`, naming that ARK's SHA-256; the instance that owns the chain accepts the
/// same request, so the refusal is about trust alone.
#[test]
fn sevsnpvm_refuses_a_report_from_another_emulators_chain() {
    let dir = common::fresh_state_dir();
    let emu = Emu::start(dir.path(), &[]);
    let other_dir = common::emulator::fresh_state_dir_with_other_chain();
    let other = TestAmdChain::load(other_dir.path()).unwrap();
    let own = TestAmdChain::load(dir.path()).unwrap();
    assert_ne!(
        other.ark_der, own.ark_der,
        "the two instances share a chain"
    );
    let pem = chain_pem(&other);
    let other_ark_sha256 = hex::encode(Sha256::digest(&other.ark_der));
    let rt = RUNTIME.as_bytes();
    let report = TestFirmware::new(TestAmdChain::load(other_dir.path()).unwrap())
        .sign_report(&report_data_for(rt), 0)
        .unwrap()
        .to_vec();
    let request = body(B64::Url, &report, &pem, rt, json!({}));

    for api in ["2020-10-01", "2022-08-01"] {
        let c = emu.client(Duration::from_secs(30));
        let url = format!(
            "{}/attest/SevSnpVm?api-version={api}",
            emu.url("attestation")
        );
        let got = post(&c, &url, &request);
        let msg = got.2["error"]["message"].as_str().unwrap().to_string();
        assert!(msg.contains(&other_ark_sha256), "{msg}");
        assert_refused(got, "InvalidParameter", "ark-not-trusted");
    }

    // The owner of that chain accepts the very same request.
    let emu_b = Emu::start(other_dir.path(), &[]);
    let c = emu_b.client(Duration::from_secs(30));
    let url = format!(
        "{}/attest/SevSnpVm?api-version=2022-08-01",
        emu_b.url("attestation")
    );
    let (status, _, resp) = post(&c, &url, &request);
    assert_eq!(status, 200, "{resp}");
}
