//! vTPM evidence against a real swtpm provisioned like an Azure CVM (PROTOCOLS.md §4.1-§4.8).
//!
//! Expected values come from the TPM 2.0 specification (TPMS_ATTEST layout, PolicyPCR digest,
//! object names) and from independent tools (tpm2-tools reading the same NV indices and objects,
//! openssl and python `cryptography`), never from skrd's own readers.

// Test crate: helpers outside #[test] functions fail loudly too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Instant;

use base64::Engine as _;
use common::swtpm::Swtpm;
use rsa::pkcs1v15::{Signature as RsaSignature, VerifyingKey};
use rsa::signature::Verifier;
use rsa::traits::PublicKeyParts;
use rsa::{BigUint, Oaep, Pkcs1v15Encrypt, RsaPublicKey};
use sha2::{Digest, Sha256};
use skrd::emulator::provision;
use skrd::error::ErrorCode;
use skrd::evidence::vtpm::{self, DecryptScheme, OaepHash, Vtpm, VtpmError};
use skrd::evidence::{
    open_source, CollectRequest, Evidence, EvidenceError, EvidenceSource, SourceConfig,
    SourceSelection, VtpmSource,
};

/// A provisioned swtpm and its emulator state directory.
struct Provisioned {
    tpm: Swtpm,
    state: tempfile::TempDir,
}

fn provisioned() -> Provisioned {
    let tpm = Swtpm::start();
    let state = common::fresh_state_dir();
    provision::provision_tpm(&tpm.tcti(), state.path(), None).expect("provision swtpm");
    Provisioned { tpm, state }
}

/// Minimal TPMS_ATTEST reader written from TPM 2.0 Part 2 §10.12.12 (not skrd's parser).
struct Attest<'a> {
    kind: u16,
    extra_data: &'a [u8],
    attested: &'a [u8],
}

fn take<'a>(b: &mut &'a [u8], n: usize) -> &'a [u8] {
    let (head, tail) = b.split_at(n);
    *b = tail;
    head
}

fn u16_be(b: &mut &[u8]) -> u16 {
    u16::from_be_bytes(take(b, 2).try_into().unwrap())
}

fn tpm2b<'a>(b: &mut &'a [u8]) -> &'a [u8] {
    let n = u16_be(b) as usize;
    take(b, n)
}

fn parse_attest(bytes: &[u8]) -> Attest<'_> {
    let mut b = bytes;
    assert_eq!(
        take(&mut b, 4),
        [0xFF, 0x54, 0x43, 0x47],
        "TPM_GENERATED_VALUE"
    );
    let kind = u16_be(&mut b);
    let _qualified_signer = tpm2b(&mut b);
    let extra_data = tpm2b(&mut b);
    let _clock_info = take(&mut b, 17);
    let _firmware = take(&mut b, 8);
    Attest {
        kind,
        extra_data,
        attested: b,
    }
}

/// TPML_PCR_SELECTION for SHA-256 PCR0-7: count 1, TPM_ALG_SHA256, sizeofSelect 3, FF 00 00.
const PCR0_7_SELECTION: [u8; 10] = [0, 0, 0, 1, 0x00, 0x0B, 3, 0xFF, 0, 0];

fn ak_key(ak: &vtpm::AkPublic) -> RsaPublicKey {
    RsaPublicKey::new(
        BigUint::from_bytes_be(&ak.modulus),
        BigUint::from(ak.exponent),
    )
    .unwrap()
}

fn verify_rsassa(key: &RsaPublicKey, message: &[u8], signature: &[u8]) {
    VerifyingKey::<Sha256>::new(key.clone())
        .verify(message, &RsaSignature::try_from(signature).unwrap())
        .expect("RSASSA-SHA256 signature by the AK verifies");
}

fn var_data(hcl: &[u8]) -> &[u8] {
    // PROTOCOLS.md §4.2: VariableDataSize at 0x4D0, data at 0x4D4.
    let n = u32::from_le_bytes(hcl[0x4D0..0x4D4].try_into().unwrap()) as usize;
    &hcl[0x4D4..0x4D4 + n]
}

#[test]
fn hcl_report_and_ak_read_back_as_written() {
    let p = provisioned();
    // Independent reader first (swtpm serves one connection at a time).
    let nvread = p.tpm.tpm2_tool("tpm2_nvread", &["-C", "o", "0x01400001"]);
    let dir = tempfile::tempdir().unwrap();
    let ak_tss = dir.path().join("ak.pub");
    p.tpm.tpm2_tool(
        "tpm2_readpublic",
        &["-c", "0x81000003", "-o", ak_tss.to_str().unwrap()],
    );
    let cert_tool = p.tpm.tpm2_tool("tpm2_nvread", &["-C", "o", "0x01C101D0"]);

    let tpm = Vtpm::open(&p.tpm.tcti()).unwrap();
    let hcl = tpm.read_hcl_report().unwrap();
    assert_eq!(hcl, nvread, "read_full == tpm2_nvread");
    assert_eq!(hcl.len(), 2048);
    assert_eq!(&hcl[..4], b"HCLA");

    // REPORT_DATA of the inner SNP report binds the variable data (PROTOCOLS.md §4.4).
    let var = var_data(&hcl);
    let report = &hcl[0x20..0x4C0];
    assert_eq!(report[0x50..0x70], Sha256::digest(var)[..]);
    assert_eq!(report[0x70..0x90], [0u8; 32]);
    common::verify_report_independently(report, &p.state.path().join("vcek.pem"));

    // HCLAkPub == ReadPublic(0x81000003); ReadPublic bytes == tpm2_readpublic's TPM2B_PUBLIC.
    let ak = tpm.read_ak_public().unwrap();
    assert_eq!(ak.tpm2b_public, std::fs::read(&ak_tss).unwrap());
    let json: serde_json::Value = serde_json::from_slice(var).unwrap();
    let key = json["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == "HCLAkPub")
        .unwrap();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    assert_eq!(b64.decode(key["n"].as_str().unwrap()).unwrap(), ak.modulus);
    assert_eq!(key["e"], "AQAB");
    assert_eq!(ak.exponent, 65537);
    assert_eq!(ak.modulus.len(), 256);

    // AK certificate: same bytes as tpm2_nvread, its key == the AK, chains to the AK CA (openssl).
    let cert = tpm.read_ak_cert().unwrap();
    assert_eq!(cert, cert_tool);
    let cert_path = dir.path().join("ak.der");
    std::fs::write(&cert_path, &cert).unwrap();
    let (ok, text) = common::openssl(&[
        "x509",
        "-inform",
        "der",
        "-in",
        cert_path.to_str().unwrap(),
        "-noout",
        "-modulus",
    ]);
    assert!(ok, "{text}");
    assert_eq!(
        text.trim().strip_prefix("Modulus=").unwrap(),
        hex::encode_upper(&ak.modulus)
    );
    let pem_path = dir.path().join("ak.pem");
    let (ok, text) = common::openssl(&[
        "x509",
        "-inform",
        "der",
        "-in",
        cert_path.to_str().unwrap(),
        "-out",
        pem_path.to_str().unwrap(),
    ]);
    assert!(ok, "{text}");
    let ca = p.state.path().join("ak-ca.pem");
    let (ok, text) = common::openssl(&[
        "verify",
        "-CAfile",
        ca.to_str().unwrap(),
        pem_path.to_str().unwrap(),
    ]);
    assert!(ok, "AK cert chains to the AK CA: {text}");
}

#[test]
fn quote_is_signed_by_the_ak_over_the_pcrs_and_nonce() {
    let p = provisioned();
    // Make PCR7 non-zero with an independent tool so the digest is not trivially all zeros.
    p.tpm.tpm2_tool(
        "tpm2_pcrextend",
        &["7:sha256=00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"],
    );
    let tpm = Vtpm::open(&p.tpm.tcti()).unwrap();
    let ak = tpm.read_ak_public().unwrap();
    let nonce = b"skrd quote nonce 0123456789";
    let quote = tpm.quote_pcrs(nonce).unwrap();
    assert_eq!(quote.pcr_values.len(), 8);
    assert_ne!(quote.pcr_values[7], [0u8; 32]);
    assert_eq!(quote.pcr_values[0], [0u8; 32]);

    verify_rsassa(&ak_key(&ak), &quote.attest, &quote.signature);
    let attest = parse_attest(&quote.attest);
    assert_eq!(attest.kind, 0x8018, "TPM_ST_ATTEST_QUOTE");
    assert_eq!(attest.extra_data, nonce);
    let mut q = attest.attested;
    assert_eq!(take(&mut q, 10), PCR0_7_SELECTION);
    let concat: Vec<u8> = quote.pcr_values.concat();
    assert_eq!(tpm2b(&mut q), &Sha256::digest(&concat)[..]);

    let too_long = tpm.quote_pcrs(&[0u8; 65]).unwrap_err();
    assert_eq!(too_long.code(), "tpm-nonce-too-long");
}

#[test]
fn ephemeral_key_is_certified_and_decrypts_in_the_tpm() {
    let p = provisioned();
    let tpm = Vtpm::open(&p.tpm.tcti()).unwrap();
    let ak = tpm.read_ak_public().unwrap();
    let pcrs = tpm.quote_pcrs(&[]).unwrap().pcr_values;
    let key = tpm.create_ephemeral_key().unwrap();

    // TPMT_PUBLIC of PROTOCOLS.md §4.6 (TPM 2.0 Part 2 §12.2.4), field by field.
    let tpmt = &key.tpm2b_public[2..];
    assert_eq!(
        u16::from_be_bytes(key.tpm2b_public[..2].try_into().unwrap()) as usize,
        tpmt.len()
    );
    let mut t = tpmt;
    assert_eq!(u16_be(&mut t), 0x0001, "TPM_ALG_RSA");
    assert_eq!(u16_be(&mut t), 0x000B, "nameAlg SHA-256");
    // decrypt(17) | fixedTPM(1) | fixedParent(4) | sensitiveDataOrigin(5) | noDA(10).
    assert_eq!(
        u32::from_be_bytes(take(&mut t, 4).try_into().unwrap()),
        (1 << 17) | (1 << 1) | (1 << 4) | (1 << 5) | (1 << 10)
    );
    // authPolicy = PolicyPCR from the zero digest: H(0^32 || TPM_CC_PolicyPCR || pcrs || H(values)).
    let mut policy = Sha256::new();
    policy.update([0u8; 32]);
    policy.update(0x0000_017Fu32.to_be_bytes());
    policy.update(PCR0_7_SELECTION);
    policy.update(Sha256::digest(pcrs.concat()));
    assert_eq!(tpm2b(&mut t), &policy.finalize()[..]);
    assert_eq!(u16_be(&mut t), 0x0010, "symmetric NULL");
    assert_eq!(u16_be(&mut t), 0x0010, "scheme NULL");
    assert_eq!(u16_be(&mut t), 2048, "keyBits");
    assert_eq!(take(&mut t, 4), [0, 0, 0, 0], "exponent 0 = 65537");
    assert_eq!(tpm2b(&mut t), &key.modulus[..]);
    assert!(t.is_empty());

    // Certify: signed by the AK, names the key (nameAlg || SHA-256(TPMT_PUBLIC)).
    verify_rsassa(&ak_key(&ak), &key.certify_info, &key.certify_signature);
    let attest = parse_attest(&key.certify_info);
    assert_eq!(attest.kind, 0x8017, "TPM_ST_ATTEST_CERTIFY");
    let mut c = attest.attested;
    let mut name = vec![0x00, 0x0B];
    name.extend_from_slice(&Sha256::digest(tpmt));
    assert_eq!(tpm2b(&mut c), &name[..]);

    // Software encryption to the public key, decryption inside the TPM.
    let public = RsaPublicKey::new(
        BigUint::from_bytes_be(&key.modulus),
        BigUint::from(key.exponent),
    )
    .unwrap();
    let secret = b"transfer key material 0123456789";
    let mut rng = rand_core::OsRng;
    let ct = public
        .encrypt(&mut rng, Oaep::new::<Sha256>(), secret)
        .unwrap();
    let pt = tpm
        .ephemeral_decrypt(&ct, DecryptScheme::Oaep(OaepHash::Sha256))
        .unwrap();
    assert_eq!(&pt[..], secret);
    let ct = public.encrypt(&mut rng, Pkcs1v15Encrypt, secret).unwrap();
    let pt = tpm.ephemeral_decrypt(&ct, DecryptScheme::RsaEs).unwrap();
    assert_eq!(&pt[..], secret);

    // OAEP-SHA-1 and SHA-384 ciphertexts made by openssl.
    let dir = tempfile::tempdir().unwrap();
    let pub_pem = dir.path().join("enc.pem");
    let msg = dir.path().join("msg");
    std::fs::write(&msg, secret).unwrap();
    use rsa::pkcs8::EncodePublicKey;
    std::fs::write(
        &pub_pem,
        public
            .to_public_key_pem(rsa::pkcs8::LineEnding::LF)
            .unwrap(),
    )
    .unwrap();
    for (md, hash) in [("sha1", OaepHash::Sha1), ("sha384", OaepHash::Sha384)] {
        let out = dir.path().join(format!("ct-{md}"));
        let (ok, text) = common::openssl(&[
            "pkeyutl",
            "-encrypt",
            "-pubin",
            "-inkey",
            pub_pem.to_str().unwrap(),
            "-pkeyopt",
            "rsa_padding_mode:oaep",
            "-pkeyopt",
            &format!("rsa_oaep_md:{md}"),
            "-pkeyopt",
            &format!("rsa_mgf1_md:{md}"),
            "-in",
            msg.to_str().unwrap(),
            "-out",
            out.to_str().unwrap(),
        ]);
        assert!(ok, "{text}");
        let ct = std::fs::read(&out).unwrap();
        let pt = tpm
            .ephemeral_decrypt(&ct, DecryptScheme::Oaep(hash))
            .unwrap();
        assert_eq!(&pt[..], secret, "OAEP-{md}");
    }

    // Wrong padding is refused by the TPM, too long is refused before it.
    let ct = public
        .encrypt(&mut rng, Oaep::new::<Sha256>(), secret)
        .unwrap();
    assert!(tpm.ephemeral_decrypt(&ct, DecryptScheme::RsaEs).is_err());
    assert_eq!(
        tpm.ephemeral_decrypt(&[1u8; 257], DecryptScheme::RsaEs)
            .unwrap_err()
            .code(),
        "tpm-ciphertext-too-long"
    );

    // Every key and session was flushed (tpm2_getcap lists nothing left behind).
    drop(tpm);
    for what in [
        "handles-transient",
        "handles-loaded-session",
        "handles-saved-session",
    ] {
        let left = p.tpm.tpm2_tool("tpm2_getcap", &[what]);
        assert!(
            String::from_utf8_lossy(&left).trim().is_empty(),
            "{what}: {}",
            String::from_utf8_lossy(&left)
        );
    }
}

#[test]
fn ephemeral_key_is_bound_to_the_pcrs() {
    let p = provisioned();
    let (public, ct) = {
        let tpm = Vtpm::open(&p.tpm.tcti()).unwrap();
        let key = tpm.create_ephemeral_key().unwrap();
        let public = RsaPublicKey::new(
            BigUint::from_bytes_be(&key.modulus),
            BigUint::from(key.exponent),
        )
        .unwrap();
        let ct = public
            .encrypt(&mut rand_core::OsRng, Oaep::new::<Sha256>(), b"x")
            .unwrap();
        (public, ct)
    };
    p.tpm.tpm2_tool(
        "tpm2_pcrextend",
        &["0:sha256=0000000000000000000000000000000000000000000000000000000000000001"],
    );
    let tpm = Vtpm::open(&p.tpm.tcti()).unwrap();
    // After a PCR change the re-created key is another key: the old ciphertext does not decrypt.
    let again = tpm.create_ephemeral_key().unwrap();
    assert_ne!(again.modulus, public.n().to_bytes_be());
    assert!(tpm
        .ephemeral_decrypt(&ct, DecryptScheme::Oaep(OaepHash::Sha256))
        .is_err());
}

#[test]
fn user_data_write_then_refresh_shows_in_the_hcl_report() {
    let p = provisioned();
    let tpm = Vtpm::open(&p.tpm.tcti()).unwrap();
    let before = tpm.read_hcl_report().unwrap();
    let before_json: serde_json::Value = serde_json::from_slice(var_data(&before)).unwrap();
    assert_eq!(before_json["user-data"], "0".repeat(128));

    let mut data = [0u8; 64];
    for (i, b) in data.iter_mut().enumerate() {
        *b = i as u8 ^ 0xA5;
    }
    tpm.write_user_data(&data).unwrap();
    assert_eq!(tpm.read_user_data().unwrap(), Some(data));
    provision::refresh_hcl_report(&tpm, p.state.path(), None).unwrap();
    let after = tpm.read_hcl_report().unwrap();
    let var = var_data(&after);
    let json: serde_json::Value = serde_json::from_slice(var).unwrap();
    assert_eq!(
        json["user-data"].as_str().unwrap().to_ascii_lowercase(),
        hex::encode(data)
    );
    assert_eq!(after[0x20 + 0x50..0x20 + 0x70], Sha256::digest(var)[..]);
    // Writing again (index exists with the right size) works too.
    tpm.write_user_data(&[7u8; 64]).unwrap();
    assert_eq!(tpm.read_user_data().unwrap(), Some([7u8; 64]));
    drop(tpm);
    let raw = p.tpm.tpm2_tool("tpm2_nvread", &["-C", "o", "0x01400002"]);
    assert_eq!(raw, [7u8; 64]);
}

#[test]
fn provision_binary_is_idempotent_and_prints_json() {
    let tpm = Swtpm::start();
    let state = common::fresh_state_dir();
    let run = |extra: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_skr-emulator"))
            .args(["provision-tpm", "--tcti", &tpm.tcti(), "--state-dir"])
            .arg(state.path())
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = String::from_utf8(out.stdout).unwrap();
        assert_eq!(line.lines().count(), 1);
        serde_json::from_str::<serde_json::Value>(&line).unwrap()
    };
    let first = run(&[]);
    assert_eq!(first["ak_created"], true);
    assert_eq!(first["hcl_report_nv_index"], "0x01400001");
    assert!(std::path::Path::new(first["ark_pem"].as_str().unwrap()).is_file());
    assert!(std::path::Path::new(first["ak_ca_pem"].as_str().unwrap()).is_file());
    let ud = "ab".repeat(64);
    let second = run(&["--user-data", &ud]);
    assert_eq!(second["ak_created"], false, "the AK is kept");
    assert_eq!(second["hcl"]["user_data"], ud);
    let hcl = tpm.tpm2_tool("tpm2_nvread", &["-C", "o", "0x01400001"]);
    let json: serde_json::Value = serde_json::from_slice(var_data(&hcl)).unwrap();
    assert_eq!(json["user-data"], ud.to_uppercase());
}

#[test]
fn collect_through_the_evidence_source_and_time_it() {
    let p = provisioned();
    let log_dir = tempfile::tempdir().unwrap();
    let config = SourceConfig {
        event_log: log_dir.path().join("binary_bios_measurements"),
        ..SourceConfig::with_tcti(&p.tpm.tcti())
    };
    std::fs::write(&config.event_log, b"event log bytes").unwrap();
    let mut source = VtpmSource::open(&config).unwrap();
    let request = CollectRequest {
        quote_nonce: b"nonce".to_vec(),
        ..CollectRequest::for_runtime_data(b"")
    };
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..5 {
        let start = Instant::now();
        last = Some(source.collect(&request).unwrap());
        times.push(start.elapsed());
    }
    times.sort();
    eprintln!(
        "full vTPM collection (HCL read + AK + AK cert + quote + ephemeral key), 5 runs: \
         min {:?}, median {:?}, max {:?}",
        times[0], times[2], times[4]
    );
    let Some(Evidence::Vtpm(e)) = last else {
        panic!("expected vTPM evidence")
    };
    assert_eq!(e.hcl_report.len(), 2048);
    assert!(e.ephemeral_key.is_some());
    let files = Evidence::Vtpm(e).files();
    assert!(files.iter().any(|(n, _)| *n == "hcl-report.bin"));
    drop(source);

    // Per-operation medians (printed for the performance notes; not asserted).
    let tpm = Vtpm::open(&p.tpm.tcti()).unwrap();
    let median = |f: &dyn Fn()| {
        let mut t: Vec<_> = (0..7)
            .map(|_| {
                let start = Instant::now();
                f();
                start.elapsed()
            })
            .collect();
        t.sort();
        t[3]
    };
    eprintln!(
        "medians: HCL read {:?}, AK ReadPublic {:?}, AK cert read {:?}, PCR0-7 quote {:?}, \
         ephemeral key create+certify {:?}",
        median(&|| drop(tpm.read_hcl_report().unwrap())),
        median(&|| drop(tpm.read_ak_public().unwrap())),
        median(&|| drop(tpm.read_ak_cert().unwrap())),
        median(&|| drop(tpm.quote_pcrs(&[]).unwrap())),
        median(&|| drop(tpm.create_ephemeral_key().unwrap())),
    );
    drop(tpm);

    // Auto selection picks the vTPM when the HCL index exists.
    let auto = open_source(SourceSelection::Auto, &config).unwrap();
    assert_eq!(auto.kind(), skrd::evidence::EvidenceKind::Vtpm);
}

#[test]
fn closed_port_gives_tpm_unreachable() {
    // Bind then drop: the port is closed (nobody listens).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let tcti = format!("swtpm:host=127.0.0.1,port={port}");
    let err = Vtpm::open(&tcti).unwrap_err();
    assert!(matches!(err, VtpmError::Unreachable { .. }), "{err:?}");
    assert_eq!(err.code(), "tpm-unreachable");
    let msg = err.to_string();
    assert!(
        msg.contains(&tcti) && msg.contains("swtpm is running"),
        "{msg}"
    );

    let bad = Vtpm::open("nonsense:whatever").unwrap_err();
    assert_eq!(bad.code(), "tpm-tcti-invalid");
}

#[test]
fn unprovisioned_tpm_gives_specific_errors() {
    let tpm_proc = Swtpm::start();
    let tpm = Vtpm::open(&tpm_proc.tcti()).unwrap();
    let err = tpm.read_hcl_report().unwrap_err();
    assert!(matches!(
        err,
        VtpmError::HclReportAbsent { index: 0x0140_0001 }
    ));
    assert_eq!(err.code(), "hcl-report-absent");
    assert!(err.to_string().contains("not an Azure confidential VM"));
    assert_eq!(tpm.read_ak_public().unwrap_err().code(), "ak-absent");
    assert_eq!(tpm.read_ak_cert().unwrap_err().code(), "ak-cert-absent");
    assert_eq!(tpm.quote_pcrs(&[]).unwrap_err().code(), "ak-absent");
    assert_eq!(tpm.read_user_data().unwrap(), None);
    drop(tpm);

    // Auto selection: no HCL report and (on this machine) no /dev/sev-guest.
    assert!(
        !std::path::Path::new("/dev/sev-guest").exists(),
        "this test expects a machine without /dev/sev-guest"
    );
    let config = SourceConfig::with_tcti(&tpm_proc.tcti());
    let err = open_source(SourceSelection::Auto, &config).unwrap_err();
    assert!(matches!(err, EvidenceError::NoSource { .. }), "{err:?}");
    assert_eq!(err.code(), "no-evidence-source");
    let msg = err.to_string();
    assert!(
        msg.contains("0x01400001") && msg.contains("/dev/sev-guest"),
        "{msg}"
    );
}
