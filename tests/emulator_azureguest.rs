//! `POST {attestation}/attest/AzureGuest` of `skr-emulator serve` end to end (PROTOCOLS.md §5.3,
//! §4.8 "Verify", §5.4 AzureGuest claims): a real swtpm provisioned by `skr-emulator
//! provision-tpm`, evidence collected with skrd's `evidence::VtpmSource`, the AttestationInfo
//! built here (a small test-side builder in the C++ library's shape, §5.3), the response
//! decrypted with the ephemeral key inside the swtpm (RSAES) + AES-256-GCM, the token verified
//! against `/certs`, compared claim by claim with a real AzureGuest token, and used for a Key
//! Vault release wrapped to the TpmEphemeralEncryptionKey.
//!
//! Expected values come from PROTOCOLS.md (claim names, types, envelope fields), from the
//! evidence collected here (the ephemeral key's modulus, the quoted PCRs) and from the real
//! token fixture, never from the emulator's own output.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::time::Duration;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use common::emulator::{json_type, now, provision_tpm, Emu};
use common::swtpm::Swtpm;
use skrd::emulator::ak_ca::AkCa;
use skrd::emulator::amd_chain::TestAmdChain;
use skrd::evidence::{
    CollectRequest, DecryptScheme, Evidence, EvidenceSource, OaepHash, SourceConfig, VtpmEvidence,
    VtpmSource,
};
use skrd::format::hcl::HclReport;
use skrd::format::jose::jwk::KeySet;
use skrd::format::jose::jwt::{verify_jwt, Validation};

/// A provisioned swtpm, its evidence, and the emulator serving the same state directory.
struct Setup {
    _tpm: Swtpm,
    state: tempfile::TempDir,
    source: VtpmSource,
    evidence: VtpmEvidence,
    emu: Emu,
    http: reqwest::blocking::Client,
}

fn setup() -> Setup {
    let tpm = Swtpm::start();
    let state = common::fresh_state_dir();
    provision_tpm(&tpm.tcti(), state.path());
    let config = SourceConfig {
        tcti: tpm.tcti(),
        event_log: state.path().join("no-event-log"),
    };
    let mut source = VtpmSource::open(&config).unwrap();
    let request = CollectRequest {
        quote_nonce: Vec::new(),
        ephemeral_key: true,
        runtime_data: Vec::new(),
        report_data: [0; 64],
        vmpl: 0,
        extended: false,
    };
    let Evidence::Vtpm(evidence) = source.collect(&request).unwrap() else {
        panic!("not vTPM evidence");
    };
    let emu = Emu::start(state.path(), &[]);
    let http = emu.client(Duration::from_secs(60));
    Setup {
        _tpm: tpm,
        state,
        source,
        evidence,
        emu,
        http,
    }
}

fn chain_pem(dir: &Path) -> Vec<u8> {
    let mut pem = std::fs::read(dir.join("vcek.pem")).unwrap();
    pem.extend(std::fs::read(dir.join("cert-chain.pem")).unwrap());
    pem
}

/// The AttestationInfo of the C++ library (PROTOCOLS.md §5.3): standard base64 blobs, `Proof`
/// = base64 of `{"SnpReport": b64url, "VcekCertChain": b64}`, OS strings base64, numbers.
fn attestation_info(ev: &VtpmEvidence, chain: &[u8]) -> Value {
    let hcl = HclReport::parse(&ev.hcl_report).unwrap();
    let proof = json!({
        "SnpReport": URL_SAFE_NO_PAD.encode(hcl.snp_report_bytes()),
        "VcekCertChain": STANDARD.encode(chain),
    });
    let key = ev.ephemeral_key.as_ref().unwrap();
    let pcrs: Vec<Value> = ev
        .quote
        .pcr_values
        .iter()
        .enumerate()
        .map(|(i, v)| json!({"Index": i, "Digest": STANDARD.encode(v)}))
        .collect();
    json!({
        "AttestationProtocolVersion": "2.0",
        "OSType": STANDARD.encode("Linux"),
        "OSDistro": STANDARD.encode("Ubuntu"),
        "OSVersionMajor": 24,
        "OSVersionMinor": 4,
        "OSBuild": STANDARD.encode("NotApplication"),
        "TcgLogs": "",
        "ClientPayload": {"nonce": "QURFMDEwMQ=="},
        "TpmInfo": {
            "AikCert": STANDARD.encode(&ev.ak_cert),
            "AikPub": STANDARD.encode(&ev.ak_public.tpm2b_public),
            "PcrQuote": STANDARD.encode(&ev.quote.attest),
            "PcrSignature": STANDARD.encode(&ev.quote.signature),
            "EncKeyPub": STANDARD.encode(&key.tpm2b_public),
            "EncKeyCertifyInfo": STANDARD.encode(&key.certify_info),
            "EncKeyCertifyInfoSignature": STANDARD.encode(&key.certify_signature),
            "PcrSet": [0, 1, 2, 3, 4, 5, 6, 7],
            "PCRs": pcrs,
        },
        "IsolationInfo": {
            "Type": "SevSnp",
            "Evidence": {
                "Proof": STANDARD.encode(proof.to_string()),
                "RunTimeData": STANDARD.encode(hcl.runtime_data_bytes()),
            },
        },
    })
}

fn body(info: &Value) -> Value {
    json!({"AttestationInfo": URL_SAFE_NO_PAD.encode(info.to_string())})
}

fn post(s: &Setup, body: &Value) -> (u16, Option<String>, Value) {
    let url = format!(
        "{}/attest/AzureGuest?api-version=2020-10-01",
        s.emu.url("attestation")
    );
    common::emulator::post_json(&s.http, &url, body)
}

/// Opens the encrypted response of §5.3 with the ephemeral key inside the swtpm.
fn decrypt_token(s: &Setup, resp: &Value) -> String {
    let outer = resp["token"].as_str().unwrap();
    let env: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(outer).unwrap()).unwrap();
    let p = &env["EncryptionParams"];
    assert_eq!(p["BlockMode"], "ChainingModeGCM");
    assert_eq!(p["BlockPadding"], "PKCS7");
    assert_eq!(p["Cipher"], "AES");
    assert_eq!(p["KeySizeInBits"], 256);
    let iv = STANDARD.decode(p["Iv"].as_str().unwrap()).unwrap();
    let tag = STANDARD
        .decode(env["AuthenticationData"].as_str().unwrap())
        .unwrap();
    let inner = STANDARD
        .decode(env["EncryptedInnerKey"].as_str().unwrap())
        .unwrap();
    let mut ct = STANDARD.decode(env["Jwt"].as_str().unwrap()).unwrap();
    assert_eq!((iv.len(), tag.len(), inner.len()), (12, 16, 256));
    let key = s
        .source
        .vtpm()
        .ephemeral_decrypt(&inner, DecryptScheme::RsaEs)
        .unwrap();
    assert_eq!(key.len(), 32);
    // Independently: python `cryptography` AESGCM opens the same envelope with the TPM's key.
    let by_python = common::python(AESGCM_PY, &[outer, &hex::encode(&key[..])]);
    ct.extend_from_slice(&tag);
    let plain = Aes256Gcm::new_from_slice(&key)
        .unwrap()
        .decrypt(
            &Nonce::from(<[u8; 12]>::try_from(iv.as_slice()).unwrap()),
            Payload {
                msg: &ct,
                aad: b"Transport Key",
            },
        )
        .expect("AES-GCM with AAD \"Transport Key\"");
    let jwt = String::from_utf8(plain).unwrap();
    assert_eq!(by_python, jwt);
    jwt
}

/// argv[1] = the outer token, argv[2] = the AES key (hex); prints the JWT.
const AESGCM_PY: &str = r#"
import sys, json, base64
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
t = sys.argv[1]
env = json.loads(base64.urlsafe_b64decode(t + "=" * (-len(t) % 4)))
b = lambda k: base64.b64decode(k)
ct = b(env["Jwt"]) + b(env["AuthenticationData"])
iv = b(env["EncryptionParams"]["Iv"])
sys.stdout.write(AESGCM(bytes.fromhex(sys.argv[2])).decrypt(iv, ct, b"Transport Key").decode())
"#;

/// Claim names and JSON types of `real`, recursively for the objects named in `nested`.
fn assert_same_shape(ours: &Value, real: &Value, path: &str) {
    let (o, r) = (ours.as_object().unwrap(), real.as_object().unwrap());
    let names = |m: &serde_json::Map<String, Value>| m.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(o), names(r), "claim names at {path}");
    for (k, rv) in r {
        assert_eq!(json_type(&o[k]), json_type(rv), "type of {path}.{k}");
    }
}

const REAL_TOKEN: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/real/maa-tokens/ms-cvm-guest-attestation-clientlib/ClientLibTests-L138-sharedweu-iat1680173374.jwt"
));

/// The newest real AzureGuest token (sharedeus2, 2025-01): its HCL var data has the current
/// shape (PROTOCOLS.md §4.3: HCLAkPub `sign` + HCLEkPub, `user-data`, no `current-time`).
const REAL_TOKEN_2025: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/real/maa-tokens/jesserc-sevsnp-tee/token-iat1736697400.jwt"
));

/// The `kid`s of a JWKS-like `keys` array, in order.
fn kids(keys: &Value) -> Vec<&str> {
    keys.as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect()
}

fn payload(jwt: &str) -> Value {
    let seg = jwt.trim().split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(seg).unwrap()).unwrap()
}

#[test]
fn azureguest_token_is_encrypted_to_the_tpm_key_and_releases_a_key() {
    let s = setup();
    let chain = chain_pem(s.state.path());
    let info = attestation_info(&s.evidence, &chain);
    let (status, _, resp) = post(&s, &body(&info));
    assert_eq!(status, 200, "{resp}");
    let jwt = decrypt_token(&s, &resp);

    let issuer = s.emu.url("attestation");
    let jwks: Value = s
        .http
        .get(format!("{issuer}/certs"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let keys = KeySet::from_json(&jwks).unwrap();
    let vt = verify_jwt(jwt.as_bytes(), &keys, &Validation::maa(&issuer, now())).unwrap();
    let c = &vt.claims;

    // Claim names, nesting and types of a real AzureGuest token (§5.4).
    let real = payload(REAL_TOKEN);
    assert_same_shape(c, &real, "");
    assert_same_shape(&c["x-ms-isolation-tee"], &real["x-ms-isolation-tee"], "tee");
    assert_same_shape(&c["x-ms-runtime"], &real["x-ms-runtime"], "x-ms-runtime");
    assert_same_shape(
        &c["x-ms-runtime"]["keys"][0],
        &real["x-ms-runtime"]["keys"][0],
        "x-ms-runtime.keys[0]",
    );

    // Against the newest real token too, and down into the nested
    // x-ms-isolation-tee.x-ms-runtime (the HCL var data, §5.4): the same members, nesting and
    // types, HCLAkPub with key_ops ["sign"] and 128 hex digits of user-data. The one difference
    // on purpose: no HCLEkPub. swtpm's NV maximum (2048 bytes) cannot hold a var data with a
    // second RSA-2048 key next to the SNP report; real CVMs have a 2600-byte index.
    let new = payload(REAL_TOKEN_2025);
    assert_same_shape(c, &new, "");
    assert_same_shape(&c["x-ms-isolation-tee"], &new["x-ms-isolation-tee"], "tee");
    let (ours_rt, real_rt) = (
        &c["x-ms-isolation-tee"]["x-ms-runtime"],
        &new["x-ms-isolation-tee"]["x-ms-runtime"],
    );
    assert_same_shape(ours_rt, real_rt, "tee.x-ms-runtime");
    assert_same_shape(
        &ours_rt["vm-configuration"],
        &real_rt["vm-configuration"],
        "tee.x-ms-runtime.vm-configuration",
    );
    assert_eq!(kids(&real_rt["keys"]), ["HCLAkPub", "HCLEkPub"]);
    assert_eq!(kids(&ours_rt["keys"]), ["HCLAkPub"]);
    assert_same_shape(
        &ours_rt["keys"][0],
        &real_rt["keys"][0],
        "tee.x-ms-runtime.keys[HCLAkPub]",
    );
    assert_eq!(ours_rt["keys"][0]["key_ops"], real_rt["keys"][0]["key_ops"]);
    assert_eq!(ours_rt["keys"][0]["kty"], real_rt["keys"][0]["kty"]);
    for rt in [ours_rt, real_rt] {
        let ud = rt["user-data"].as_str().unwrap();
        assert!(
            ud.len() == 128 && ud.bytes().all(|b| b.is_ascii_hexdigit()),
            "{ud}"
        );
        let id = rt["vm-configuration"]["vmUniqueId"].as_str().unwrap();
        assert!(
            uuid::Uuid::parse_str(id).is_ok() && id == id.to_ascii_uppercase(),
            "{id}"
        );
    }

    // Values from the evidence and the request.
    let key = s.evidence.ephemeral_key.as_ref().unwrap();
    let k0 = &c["x-ms-runtime"]["keys"][0];
    assert_eq!(k0["kid"], "TpmEphemeralEncryptionKey");
    assert_eq!(k0["kty"], "RSA");
    assert_eq!(k0["key_ops"], json!(["encrypt"]));
    assert_eq!(k0["e"], "AQAB");
    assert_eq!(k0["n"], URL_SAFE_NO_PAD.encode(&key.modulus));
    assert_eq!(
        c["x-ms-runtime"]["client-payload"],
        json!({"nonce": "QURFMDEwMQ=="})
    );
    assert_eq!(c["x-ms-attestation-type"], "azurevm");
    assert_eq!(
        c["x-ms-azurevm-attested-pcrs"],
        json!([0, 1, 2, 3, 4, 5, 6, 7])
    );
    assert_eq!(c["x-ms-azurevm-ostype"], "Linux");
    assert_eq!(c["x-ms-azurevm-osdistro"], "Ubuntu");
    assert_eq!(c["x-ms-azurevm-osbuild"], "NotApplication");
    assert_eq!(c["x-ms-azurevm-osversion-major"], 24);
    assert_eq!(c["x-ms-azurevm-osversion-minor"], 4);
    assert_eq!(
        c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(),
        28_800
    );
    let hcl = HclReport::parse(&s.evidence.hcl_report).unwrap();
    let tee = &c["x-ms-isolation-tee"];
    assert_eq!(tee["x-ms-attestation-type"], "sevsnpvm");
    assert_eq!(tee["x-ms-compliance-status"], "azure-compliant-cvm");
    let runtime: Value = serde_json::from_slice(hcl.runtime_data_bytes()).unwrap();
    assert_eq!(tee["x-ms-runtime"], runtime);
    assert_eq!(
        c["x-ms-azurevm-vmid"],
        runtime["vm-configuration"]["vmUniqueId"]
    );
    let mut rd = Sha256::digest(hcl.runtime_data_bytes()).to_vec();
    rd.resize(64, 0);
    assert_eq!(tee["x-ms-sevsnpvm-reportdata"], hex::encode(rd));

    // The TPM name of the AK as format::tpm computes it equals tpm2_readpublic's.
    let name_file = s.state.path().join("ak.name");
    let out = std::process::Command::new("tpm2_readpublic")
        .args(["-c", "0x81000003", "-n"])
        .arg(&name_file)
        .env("TPM2TOOLS_TCTI", s.source.vtpm().tcti())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ak = skrd::format::tpm::Public::parse_tpm2b(&s.evidence.ak_public.tpm2b_public).unwrap();
    assert_eq!(ak.name().unwrap(), std::fs::read(&name_file).unwrap());

    // Microsoft's Python tool's shape: url-safe unpadded blobs, OS version strings, the
    // lower-case field name, ClientPayload verbatim.
    let mut py = info.clone();
    let recode = |v: &mut Value| {
        let b = STANDARD.decode(v.as_str().unwrap()).unwrap();
        *v = json!(URL_SAFE_NO_PAD.encode(b));
    };
    for f in [
        "AikCert",
        "AikPub",
        "PcrQuote",
        "PcrSignature",
        "EncKeyPub",
        "EncKeyCertifyInfo",
        "EncKeyCertifyInfoSignature",
    ] {
        recode(&mut py["TpmInfo"][f]);
    }
    recode(&mut py["IsolationInfo"]["Evidence"]["RunTimeData"]);
    py["OSVersionMajor"] = json!("24");
    py["OSVersionMinor"] = json!("4");
    py["ClientPayload"] = json!({"user": {"claims": [1, 2]}});
    let (status, _, resp) = post(
        &s,
        &json!({"attestationInfo": URL_SAFE_NO_PAD.encode(py.to_string())}),
    );
    assert_eq!(status, 200, "{resp}");
    let c2 = payload(&decrypt_token(&s, &resp));
    assert_eq!(c2["x-ms-runtime"]["client-payload"], py["ClientPayload"]);
    assert_eq!(c2["x-ms-azurevm-osversion-minor"], 4);

    // Key Vault releases to the TpmEphemeralEncryptionKey; the TPM unwraps it (§6.2, §6.4).
    release_with_token(&s, &jwt);
}

fn release_with_token(s: &Setup, jwt: &str) {
    use skrd::crypto::rsa_aes_wrap::{split, unwrap_with_kek};
    // oct-HSM keys live in a Managed HSM (§6.8).
    let vault = s.emu.url("managed_hsm");
    let bearer = s.emu.imds_token("https%3A%2F%2Fmanagedhsm.azure.net%2F");
    let authority = s.emu.url("attestation");
    let policy = json!({"version": "1.0.0", "anyOf": [{"authority": authority, "allOf": [
        {"claim": "x-ms-attestation-type", "equals": "azurevm"},
        {"claim": "x-ms-isolation-tee.x-ms-attestation-type", "equals": "sevsnpvm"},
        {"claim": "x-ms-isolation-tee.x-ms-compliance-status", "equals": "azure-compliant-cvm"}]}]});
    let material = [0x5Au8; 32];
    let import = json!({
        "key": {"kty": "oct-HSM", "k": URL_SAFE_NO_PAD.encode(material)},
        "hsm": true,
        "attributes": {"exportable": true},
        "release_policy": {"contentType": "application/json; charset=utf-8",
                           "data": URL_SAFE_NO_PAD.encode(policy.to_string())},
    });
    let r = s
        .http
        .put(format!("{vault}/keys/guestkey?api-version=7.4"))
        .bearer_auth(&bearer)
        .json(&import)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", r.text().unwrap());
    for (enc, hash) in [
        ("CKM_RSA_AES_KEY_WRAP", OaepHash::Sha1),
        ("RSA_AES_KEY_WRAP_256", OaepHash::Sha256),
        ("RSA_AES_KEY_WRAP_384", OaepHash::Sha384),
    ] {
        let r = s
            .http
            .post(format!("{vault}/keys/guestkey/release?api-version=7.4"))
            .bearer_auth(&bearer)
            .json(&json!({"target": jwt, "enc": enc}))
            .send()
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().unwrap();
        assert_eq!(status, 200, "{enc}: {text}");
        let v = s
            .emu
            .verify_release(&text, 256, "TpmEphemeralEncryptionKey");
        let (rsa_block, kwp) = split(&v.payload.key_hsm.ciphertext, 256).unwrap();
        let kek = s
            .source
            .vtpm()
            .ephemeral_decrypt(rsa_block, DecryptScheme::Oaep(hash))
            .unwrap();
        let kek = skrd::secret::Secret::new(kek.to_vec());
        let plain = unwrap_with_kek(&kek, kwp).unwrap();
        assert_eq!(plain.expose(), &material[..], "{enc}");
    }
}

/// Asserts a 400 with `InvalidParameter` and the skrd `code` at the message start.
fn assert_refused(got: (u16, Option<String>, Value), code: &str) {
    let (status, header, body) = got;
    assert_eq!(status, 400, "{code}: {body}");
    assert_eq!(header.as_deref(), Some("InvalidParameter"), "{body}");
    assert_eq!(body["error"]["code"], "InvalidParameter", "{body}");
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(msg.starts_with(&format!("{code}: ")), "want {code}: {msg}");
}

fn blob(v: &Value) -> Vec<u8> {
    STANDARD.decode(v.as_str().unwrap()).unwrap()
}

fn set_blob(v: &mut Value, bytes: &[u8]) {
    *v = json!(STANDARD.encode(bytes));
}

fn flip(v: &mut Value, at: usize) {
    let mut b = blob(v);
    b[at] ^= 0x01;
    set_blob(v, &b);
}

#[test]
fn azureguest_refusals_name_the_failed_check() {
    let s = setup();
    let dir = s.state.path();
    let good = attestation_info(&s.evidence, &chain_pem(dir));
    let refuse = |edit: &dyn Fn(&mut Value), code: &str| {
        let mut info = good.clone();
        edit(&mut info);
        assert_refused(post(&s, &body(&info)), code);
    };

    // Another emulator instance's test chain (a second state directory: same names, other
    // keys). Its ARK is neither a pinned AMD root nor this instance's test ARK: refused with
    // `ark-not-trusted` naming that ARK's SHA-256 (docs/errors-snp.md), whether only the chain
    // is foreign or the SNP report was signed by that chain's VCEK too.
    let other = common::emulator::fresh_state_dir_with_other_chain();
    let other_chain = TestAmdChain::load(other.path()).unwrap();
    let other_ark_sha256 = hex::encode(Sha256::digest(&other_chain.ark_der));
    let mut other_pem = std::fs::read(other_chain.path("vcek.pem")).unwrap();
    other_pem.extend(std::fs::read(other_chain.path("cert-chain.pem")).unwrap());
    let hcl = HclReport::parse(&s.evidence.hcl_report).unwrap();
    let report_data: [u8; 64] = hcl.snp_report_bytes()[0x50..0x90].try_into().unwrap();
    let foreign_report =
        skrd::emulator::firmware::TestFirmware::new(TestAmdChain::load(other.path()).unwrap())
            .sign_report(&report_data, 0)
            .unwrap();
    let foreign_proof = json!(STANDARD.encode(
        json!({"SnpReport": URL_SAFE_NO_PAD.encode(foreign_report),
               "VcekCertChain": STANDARD.encode(&other_pem)})
        .to_string()
    ));
    let mut foreign_signed = good.clone();
    foreign_signed["IsolationInfo"]["Evidence"]["Proof"] = foreign_proof;
    for info in [attestation_info(&s.evidence, &other_pem), foreign_signed] {
        let got = post(&s, &body(&info));
        let msg = got.2["error"]["message"].as_str().unwrap().to_string();
        assert!(msg.contains(&other_ark_sha256), "{msg}");
        assert_refused(got, "ark-not-trusted");
    }

    // Bad report signature: one MEASUREMENT bit flipped (offset 0x90, PROTOCOLS.md §3.2).
    let mut report = hcl.snp_report_bytes().to_vec();
    report[0x90] ^= 1;
    let proof = |r: &[u8]| {
        json!(STANDARD.encode(
            json!({"SnpReport": URL_SAFE_NO_PAD.encode(r),
                   "VcekCertChain": STANDARD.encode(chain_pem(dir))})
            .to_string()
        ))
    };
    let forged = proof(&report);
    refuse(
        &|i| i["IsolationInfo"]["Evidence"]["Proof"] = forged.clone(),
        "report-signature-invalid",
    );

    // Broken var-data binding: one byte of the runtime data changed (a space appended).
    refuse(
        &|i| {
            let mut rt = blob(&i["IsolationInfo"]["Evidence"]["RunTimeData"]);
            rt.push(b' ');
            set_blob(&mut i["IsolationInfo"]["Evidence"]["RunTimeData"], &rt);
        },
        "report-data-mismatch",
    );

    // AikPub mismatch: the last modulus byte of the TPM2B_PUBLIC flipped.
    let ak_len = s.evidence.ak_public.tpm2b_public.len();
    refuse(
        &|i| flip(&mut i["TpmInfo"]["AikPub"], ak_len - 1),
        "maa-aikpub-mismatch",
    );

    // AK certificate from another AK CA (same CA name, other key).
    let other_ca = AkCa::load_or_create(other.path()).unwrap();
    let ak = &s.evidence.ak_public;
    let foreign = other_ca
        .issue_ak_cert(&ak.modulus, ak.exponent, "foreign AK")
        .unwrap();
    refuse(
        &|i| set_blob(&mut i["TpmInfo"]["AikCert"], &foreign),
        "maa-aikcert-untrusted",
    );
    // AK certificate from the right CA for another key.
    let ca = AkCa::load_or_create(dir).unwrap();
    let mut other_modulus = ak.modulus.clone();
    other_modulus[255] ^= 2;
    let wrong_key = ca
        .issue_ak_cert(&other_modulus, ak.exponent, "other AK")
        .unwrap();
    refuse(
        &|i| set_blob(&mut i["TpmInfo"]["AikCert"], &wrong_key),
        "maa-aikcert-key-mismatch",
    );

    // Forged quote: one byte of the clock info changed (offset 50 is inside clockInfo for an
    // empty extraData: 4+2+2+34+2 = 44, clock at 44..52, resetCount 52..56, ...).
    refuse(
        &|i| flip(&mut i["TpmInfo"]["PcrQuote"], 50),
        "maa-quote-signature-invalid",
    );
    // Wrong PCR value: the digest over the sent PCRs no longer matches pcrDigest.
    refuse(
        &|i| flip(&mut i["TpmInfo"]["PCRs"][3]["Digest"], 0),
        "maa-pcr-digest-mismatch",
    );
    refuse(
        &|i| i["TpmInfo"]["PcrSet"] = json!([0, 1, 2, 3, 4, 5, 6]),
        "maa-pcr-selection-mismatch",
    );
    // Certify over another key: the AK's public area sent as EncKeyPub.
    let ak_pub = ak.tpm2b_public.clone();
    refuse(
        &|i| set_blob(&mut i["TpmInfo"]["EncKeyPub"], &ak_pub),
        "maa-certify-name-mismatch",
    );
    refuse(
        &|i| flip(&mut i["TpmInfo"]["EncKeyCertifyInfo"], 50),
        "maa-certify-signature-invalid",
    );
    // A key certified by the AK but able to sign: not an ephemeral encryption key.
    let (pub_bytes, info, sig) = certified_signing_key(&s);
    refuse(
        &|i| {
            set_blob(&mut i["TpmInfo"]["EncKeyPub"], &pub_bytes);
            set_blob(&mut i["TpmInfo"]["EncKeyCertifyInfo"], &info);
            set_blob(&mut i["TpmInfo"]["EncKeyCertifyInfoSignature"], &sig);
        },
        "maa-enckey-attributes-invalid",
    );
    // Bad base64, missing field, wrong isolation type.
    refuse(
        &|i| i["TpmInfo"]["AikPub"] = json!("!!not base64!!"),
        "maa-field-base64-invalid",
    );
    refuse(
        &|i| {
            i["TpmInfo"].as_object_mut().unwrap().remove("PcrQuote");
        },
        "maa-field-missing",
    );
    refuse(
        &|i| i["IsolationInfo"]["Type"] = json!("TrustedLaunch"),
        "maa-isolation-type-unsupported",
    );
    refuse(
        &|i| i["OSVersionMajor"] = json!("twenty"),
        "maa-field-invalid",
    );
    assert_refused(post(&s, &json!({"Other": "x"})), "maa-field-missing");
    assert_refused(
        post(&s, &json!({"AttestationInfo": "%%"})),
        "maa-field-base64-invalid",
    );
    // The unmodified request still passes (the refusals came from the edits).
    assert_eq!(post(&s, &body(&good)).0, 200);
}

/// A key certified by the AK that is a restricted signing key (the AK template of
/// provisioning, created again under the NULL hierarchy), made in the swtpm through the test's
/// TPM handle: (TPM2B_PUBLIC, TPMS_ATTEST, raw RSASSA signature).
fn certified_signing_key(s: &Setup) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    use skrd::evidence::VtpmError;
    use tss_esapi::handles::ObjectHandle;
    use tss_esapi::interface_types::resource_handles::Hierarchy;
    use tss_esapi::interface_types::session_handles::AuthSession;
    use tss_esapi::structures::{Data, Signature, SignatureScheme};
    use tss_esapi::traits::Marshall;
    let cmd = |operation| move |source| VtpmError::Command { operation, source };
    s.source
        .vtpm()
        .run(move |sess| {
            let ak = sess.ak_handle()?;
            let template = skrd::emulator::provision::ak_template()?;
            let ctx = sess.context();
            let created = ctx
                .execute_with_session(Some(AuthSession::Password), |ctx| {
                    ctx.create_primary(Hierarchy::Null, template, None, None, None, None)
                })
                .map_err(cmd("CreatePrimary"))?;
            let certified = ctx
                .execute_with_sessions(
                    (
                        Some(AuthSession::Password),
                        Some(AuthSession::Password),
                        None,
                    ),
                    |ctx| {
                        ctx.certify(
                            ObjectHandle::from(created.key_handle),
                            ak,
                            Data::default(),
                            SignatureScheme::Null,
                        )
                    },
                )
                .map_err(cmd("Certify"));
            let _ = ctx.flush_context(ObjectHandle::from(created.key_handle));
            let (attest, signature) = certified?;
            let tpmt = created
                .out_public
                .marshall()
                .map_err(cmd("marshall public"))?;
            let mut tpm2b = u16::try_from(tpmt.len()).unwrap().to_be_bytes().to_vec();
            tpm2b.extend_from_slice(&tpmt);
            let Signature::RsaSsa(sig) = signature else {
                panic!("the AK signs RSASSA");
            };
            Ok((
                tpm2b,
                attest.marshall().map_err(cmd("marshall attest"))?,
                sig.signature().value().to_vec(),
            ))
        })
        .unwrap()
}
