//! Key unwrap and derivation (`skrd::crypto`, PROTOCOLS.md §1.1, §6.3-§6.5, §9.1 traps 17/20,
//! §10 items 8-10; DESIGN.md "Volumes and the untrusted header") against independent
//! expectations, with negative cases.
//!
//! Expected values come from `tests/fixtures/independent/crypto_expected.json`, made by
//! `crypto_expected.py` with python3 `cryptography` (which itself asserts the RFC 5649 §6 and
//! RFC 7638 §3.1 published values and the published Key Vault vector of
//! microsoft/confidential-sidecar-containers `pkg/skr/skr_test.go` @ fa8df58a). The other
//! direction, skrd's wraps and runtime data read by python, runs `crypto_expected.py --check`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::process::Command;
use std::sync::OnceLock;

use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use rsa::traits::PublicKeyParts;
use rsa::RsaPrivateKey;
use serde_json::{json, Value};
use skrd::crypto::rsa_aes_wrap::{self, decrypt_kek, split, unwrap_with_kek};
use skrd::crypto::transfer_key::{rsa_thumbprint, runtime_data_jwks};
use skrd::crypto::{aes_kwp, derive, fuzz_unwrap, key_material, CryptoError, KeyKind, TransferKey};
use skrd::error::ErrorCode;
use skrd::format::jose::b64;
use skrd::format::jose::release::WrapAlgorithm;
use skrd::secret::Secret;

const MODES: [WrapAlgorithm; 3] = [
    WrapAlgorithm::CkmRsaAesKeyWrap,
    WrapAlgorithm::RsaAesKeyWrap256,
    WrapAlgorithm::RsaAesKeyWrap384,
];

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/independent/crypto_expected.py"
);

fn expected() -> &'static Value {
    static V: OnceLock<Value> = OnceLock::new();
    V.get_or_init(|| {
        serde_json::from_slice(include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/independent/crypto_expected.json"
        )))
        .unwrap()
    })
}

fn hx(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().unwrap()).unwrap()
}

fn enc(v: &Value) -> WrapAlgorithm {
    WrapAlgorithm::from_name(v.as_str().unwrap()).unwrap()
}

fn transfer_keys() -> &'static HashMap<String, RsaPrivateKey> {
    static K: OnceLock<HashMap<String, RsaPrivateKey>> = OnceLock::new();
    K.get_or_init(|| {
        expected()["transfer_keys"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(name, t)| {
                (
                    name.clone(),
                    RsaPrivateKey::from_pkcs8_pem(t["pem"].as_str().unwrap()).unwrap(),
                )
            })
            .collect()
    })
}

fn published_key() -> RsaPrivateKey {
    let p = &expected()["published"];
    RsaPrivateKey::from_pkcs1_pem(p["private_key_pkcs1_pem"].as_str().unwrap()).unwrap()
}

fn released(name: &str) -> &'static Value {
    expected()["released_keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .unwrap()
}

fn code<T: std::fmt::Debug>(r: Result<T, CryptoError>) -> &'static str {
    r.unwrap_err().code()
}

#[test]
fn rfc5649_section6_vectors() {
    let v = expected()["rfc5649"].as_array().unwrap();
    assert_eq!(v.len(), 2);
    for t in v {
        let (kek, key, wrapped) = (hx(&t["kek"]), hx(&t["key"]), hx(&t["wrapped"]));
        assert_eq!(aes_kwp::wrap(&kek, &key).unwrap(), wrapped);
        assert_eq!(aes_kwp::unwrap(&kek, &wrapped).unwrap().expose(), &key[..]);
    }
}

#[test]
fn kwp_agrees_with_python_for_every_kek_size() {
    let v = expected()["kwp"].as_array().unwrap();
    assert_eq!(v.len(), 36);
    for t in v {
        let (kek, plain, wrapped) = (hx(&t["kek"]), hx(&t["plaintext"]), hx(&t["wrapped"]));
        // RFC 5649 is deterministic: our wrap must give python's bytes.
        assert_eq!(aes_kwp::wrap(&kek, &plain).unwrap(), wrapped);
        assert_eq!(
            aes_kwp::unwrap(&kek, &wrapped).unwrap().expose(),
            &plain[..]
        );
        // Last byte altered, last semiblock dropped.
        let mut bad = wrapped.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert_eq!(code(aes_kwp::unwrap(&kek, &bad)), "kwp-integrity-failed");
        if wrapped.len() > 16 {
            let short = &wrapped[..wrapped.len() - 8];
            assert_eq!(code(aes_kwp::unwrap(&kek, short)), "kwp-integrity-failed");
        }
    }
}

#[test]
fn published_key_vault_vector() {
    let p = &expected()["published"];
    let key = published_key();
    let ct = b64::decode_url("ciphertext", p["ciphertext_b64url"].as_str().unwrap()).unwrap();
    assert_eq!(ct.len(), 296);
    let plain = rsa_aes_wrap::unwrap(&key, enc(&p["enc"]), &ct).unwrap();
    assert_eq!(plain.expose(), &hx(&p["key"])[..]);
    // Split path (vTPM flow shape): KEK is 32 bytes, AES part gives the key.
    let (rsa_block, kwp) = split(&ct, key.size()).unwrap();
    assert_eq!((rsa_block.len(), kwp.len()), (256, 40));
    let kek = decrypt_kek(&key, WrapAlgorithm::CkmRsaAesKeyWrap, rsa_block).unwrap();
    assert_eq!(kek.len(), 32);
    assert_eq!(
        unwrap_with_kek(&kek, kwp).unwrap().expose(),
        &hx(&p["key"])[..]
    );
    // The source's RSAKeyUnwrap_DifferentEnc case: OAEP-SHA-256 must fail (python checked it);
    // skrd names the mode that does decrypt.
    assert_eq!(p["oaep_sha256_fails"], true);
    let err = rsa_aes_wrap::unwrap(&key, WrapAlgorithm::RsaAesKeyWrap256, &ct).unwrap_err();
    assert_eq!(err.code(), "unwrap-enc-mismatch");
    assert_eq!(
        err,
        CryptoError::EncMismatch {
            expected: "RSA_AES_KEY_WRAP_256",
            found: "CKM_RSA_AES_KEY_WRAP"
        }
    );
    // RSAKeyUnwrap_DifferentKey: another RSA-2048 key.
    let other = &transfer_keys()["rsa2048"];
    assert_eq!(
        code(rsa_aes_wrap::unwrap(
            other,
            WrapAlgorithm::CkmRsaAesKeyWrap,
            &ct
        )),
        "unwrap-oaep-failed"
    );
    // The same file's Test_SKR: the runtime-data JWK Set of this key, byte for byte.
    let tk = TransferKey::from_private_key(key).unwrap();
    assert_eq!(
        tk.runtime_data(),
        p["runtime_data"].as_str().unwrap().as_bytes()
    );
    assert_eq!(tk.kid(), "Nvhfuq2cCIOAB8XR4Xi9Pr0NP_9CeMzWQGtW_HALz_w");
    assert_eq!(tk.modulus_len(), 256);
}

#[test]
fn rfc7638_section3_1_thumbprint() {
    let t = &expected()["rfc7638"];
    // Published value of RFC 7638 §3.1 (asserted by the python script too).
    assert_eq!(
        t["thumbprint"],
        "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    );
    assert_eq!(rsa_thumbprint(&hx(&t["n"]), &hx(&t["e"])), t["thumbprint"]);
    // Leading zero octets are not part of a JWK integer.
    let mut n0 = vec![0u8];
    n0.extend(hx(&t["n"]));
    assert_eq!(rsa_thumbprint(&n0, &hx(&t["e"])), t["thumbprint"]);
}

#[test]
fn python_wrapped_keys_unwrap_and_decode_for_every_mode() {
    let v = expected()["wrapped"].as_array().unwrap();
    assert_eq!(v.len(), 36);
    let mut seen = std::collections::HashSet::new();
    for w in v {
        let key = &transfer_keys()[w["transfer"].as_str().unwrap()];
        let mode = enc(&w["enc"]);
        let r = released(w["released"].as_str().unwrap());
        let ct = hx(&w["ciphertext"]);
        let plain = rsa_aes_wrap::unwrap(key, mode, &ct).unwrap();
        assert_eq!(
            plain.expose(),
            &hx(&r["plaintext"])[..],
            "{}",
            w["released"]
        );
        // The KEK python chose comes back from the split + OAEP step.
        let (rsa_block, kwp) = split(&ct, key.size()).unwrap();
        assert_eq!(rsa_block.len(), key.size());
        let kek = decrypt_kek(key, mode, rsa_block).unwrap();
        assert_eq!(kek.expose(), &hx(&w["kek"])[..]);
        assert_eq!(unwrap_with_kek(&kek, kwp).unwrap().expose(), plain.expose());
        // Decode to IKM.
        let kind = KeyKind::from_kty(r["kty"].as_str().unwrap()).unwrap();
        let m = key_material::decode(kind, &plain).unwrap();
        assert_eq!(m.ikm().expose(), &hx(&r["ikm"])[..], "{}", w["released"]);
        assert_eq!(m.description(), r["description"]);
        seen.insert((w["transfer"].as_str().unwrap(), mode.name()));
    }
    assert_eq!(seen.len(), 6, "every mode with both transfer key sizes");
}

#[test]
fn luks_passphrases_match_python_hkdf() {
    let mut n = 0;
    for r in expected()["released_keys"].as_array().unwrap() {
        let kind = KeyKind::from_kty(r["kty"].as_str().unwrap()).unwrap();
        let m = key_material::decode(kind, &Secret::new(hx(&r["plaintext"]))).unwrap();
        for (uuid, pass) in r["passphrases"].as_object().unwrap() {
            let p = derive::luks_passphrase_for(m.ikm(), uuid).unwrap();
            assert_eq!(p.expose(), pass.as_str().unwrap().as_bytes());
            assert_eq!(p.len(), derive::LUKS_PASSPHRASE_LEN);
            n += 1;
        }
    }
    for h in expected()["hkdf"].as_array().unwrap() {
        let ikm = Secret::new(hx(&h["ikm"]));
        let uuid = h["uuid"].as_str().unwrap();
        let p = derive::luks_passphrase_for(&ikm, uuid).unwrap();
        assert_eq!(p.expose(), h["passphrase"].as_str().unwrap().as_bytes());
        // Upper-case text is the same UUID, so the same salt.
        let p2 = derive::luks_passphrase_for(&ikm, &uuid.to_uppercase()).unwrap();
        assert_eq!(p.expose(), p2.expose());
        n += 1;
    }
    assert_eq!(n, 11 * 2 + 6);
}

#[test]
fn negatives_give_specific_codes() {
    let w = expected()["wrapped"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["transfer"] == "rsa2048" && w["released"] == "oct-256")
        .unwrap();
    let key = &transfer_keys()["rsa2048"];
    let mode = enc(&w["enc"]);
    let ct = hx(&w["ciphertext"]);

    // Wrong transfer key (same size).
    assert_eq!(
        code(rsa_aes_wrap::unwrap(&published_key(), mode, &ct)),
        "unwrap-oaep-failed"
    );
    // Wrong transfer key of another size: the split no longer fits.
    assert_eq!(
        code(rsa_aes_wrap::unwrap(&transfer_keys()["rsa3072"], mode, &ct)),
        "unwrap-ciphertext-length"
    );
    // Truncated: into the RSA block, to a KWP part under 16 bytes, to a non-multiple of 8,
    // and by one whole semiblock (still well-formed lengths: integrity check).
    for cut in [ct.len() - 100, 256 + 8, ct.len() - 1] {
        assert_eq!(
            code(rsa_aes_wrap::unwrap(key, mode, &ct[..cut])),
            "unwrap-ciphertext-length",
            "{cut}"
        );
    }
    assert_eq!(
        code(rsa_aes_wrap::unwrap(key, mode, &ct[..ct.len() - 8])),
        "kwp-integrity-failed"
    );
    // Altered RSA block (first, middle and last byte).
    for i in [0usize, 128, 255] {
        let mut bad = ct.clone();
        bad[i] ^= 0x01;
        assert_eq!(
            code(rsa_aes_wrap::unwrap(key, mode, &bad)),
            "unwrap-oaep-failed",
            "{i}"
        );
    }
    // Altered KWP block (every byte).
    for i in 256..ct.len() {
        let mut bad = ct.clone();
        bad[i] ^= 0x40;
        assert_eq!(
            code(rsa_aes_wrap::unwrap(key, mode, &bad)),
            "kwp-integrity-failed",
            "{i}"
        );
    }
    // Wrong mode, every pair: the block decrypts only with its own hash.
    for w in expected()["wrapped"].as_array().unwrap() {
        if w["transfer"] != "rsa2048" || w["released"] != "oct-256" {
            continue;
        }
        let right = enc(&w["enc"]);
        let ct = hx(&w["ciphertext"]);
        for wrong in MODES.into_iter().filter(|m| *m != right) {
            assert_eq!(
                rsa_aes_wrap::unwrap(key, wrong, &ct).unwrap_err(),
                CryptoError::EncMismatch {
                    expected: wrong.name(),
                    found: right.name()
                }
            );
        }
    }
    // A KEK of the wrong size from a TPM.
    let (_, kwp) = split(&ct, 256).unwrap();
    assert_eq!(
        code(unwrap_with_kek(&Secret::new(vec![0; 31]), kwp)),
        "kwp-kek-length"
    );
    assert_eq!(
        code(unwrap_with_kek(&Secret::new(vec![0; 32]), kwp)),
        "kwp-integrity-failed"
    );
}

#[test]
fn key_material_negatives() {
    let ec = Secret::new(hx(&released("ec-P-256-pkcs8")["plaintext"]));
    let rsa = Secret::new(hx(&released("rsa-2048-pkcs8")["plaintext"]));
    let rsa1 = Secret::new(hx(&released("rsa-2048-pkcs1")["plaintext"]));
    let sec1 = Secret::new(hx(&released("ec-P-384-sec1")["plaintext"]));
    assert_eq!(
        code(key_material::decode(KeyKind::Rsa, &ec)),
        "key-material-algorithm"
    );
    assert_eq!(
        code(key_material::decode(KeyKind::Ec, &rsa)),
        "key-material-algorithm"
    );
    assert_eq!(
        code(key_material::decode(KeyKind::Ec, &rsa1)),
        "key-material-encoding"
    );
    assert_eq!(
        code(key_material::decode(KeyKind::Rsa, &sec1)),
        "key-material-encoding"
    );
    let oct = Secret::new(vec![5; 32]);
    assert_eq!(
        code(key_material::decode(KeyKind::Rsa, &oct)),
        "key-material-encoding"
    );
    assert_eq!(
        code(key_material::decode(KeyKind::Ec, &oct)),
        "key-material-encoding"
    );
    for n in [0usize, 8, 15, 65] {
        assert_eq!(
            code(key_material::decode(KeyKind::Oct, &Secret::new(vec![1; n]))),
            "key-material-oct-length"
        );
    }
    // A truncated PKCS#8.
    let cut = Secret::new(rsa.expose()[..rsa.len() - 10].to_vec());
    assert_eq!(
        code(key_material::decode(KeyKind::Rsa, &cut)),
        "key-material-encoding"
    );
    assert_eq!(code(KeyKind::from_kty("oct-hsm")), "key-type-unknown");
    for (kty, kind) in [
        ("oct", KeyKind::Oct),
        ("oct-HSM", KeyKind::Oct),
        ("RSA", KeyKind::Rsa),
        ("RSA-HSM", KeyKind::Rsa),
        ("EC", KeyKind::Ec),
        ("EC-HSM", KeyKind::Ec),
    ] {
        assert_eq!(KeyKind::from_kty(kty).unwrap(), kind);
    }
}

/// Runs `crypto_expected.py --check` on a document and returns its answer.
fn python_check(doc: &Value) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("check.json");
    std::fs::write(&path, serde_json::to_vec(doc).unwrap()).unwrap();
    let out = Command::new("python3")
        .arg(SCRIPT)
        .arg("--check")
        .arg(&path)
        .output()
        .expect("python3 must be installed (with the cryptography module)");
    assert!(
        out.status.success(),
        "python3 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn skrd_wraps_unwrap_in_python_and_in_skrd() {
    // A fresh transfer key made by skrd, and python's RSA-3072 key.
    let fresh = TransferKey::generate(2048).unwrap();
    assert_eq!(fresh.modulus_len(), 256);
    let targets: Vec<(String, &RsaPrivateKey)> = vec![
        (
            fresh
                .private_key()
                .to_pkcs8_pem(Default::default())
                .unwrap()
                .to_string(),
            fresh.private_key(),
        ),
        (
            expected()["transfer_keys"]["rsa3072"]["pem"]
                .as_str()
                .unwrap()
                .to_string(),
            &transfer_keys()["rsa3072"],
        ),
    ];
    let names = [
        "oct-128",
        "oct-256",
        "oct-512",
        "rsa-2048-pkcs8",
        "ec-P-256-pkcs8",
        "ec-P-521-pkcs8",
    ];
    let mut items = Vec::new();
    let mut plains = Vec::new();
    for (pem, key) in &targets {
        for mode in MODES {
            for name in names {
                let plain = hx(&released(name)["plaintext"]);
                let ct = rsa_aes_wrap::wrap(&key.to_public_key(), mode, &plain).unwrap();
                // §6.4 layout: RSA block of the modulus length + 8·ceil(len/8) + 8.
                assert_eq!(ct.len(), key.size() + aes_kwp::wrapped_len(plain.len()));
                let back = rsa_aes_wrap::unwrap(key, mode, &ct).unwrap();
                assert_eq!(back.expose(), &plain[..]);
                items.push(json!({"private_key_pem": pem, "enc": mode.name(),
                                  "ciphertext": hex::encode(&ct)}));
                plains.push(hex::encode(&plain));
            }
        }
    }
    let answer = python_check(&json!({
        "unwrap": items,
        "jwks": String::from_utf8(fresh.runtime_data().to_vec()).unwrap(),
    }));
    let got: Vec<String> = answer["unwrap"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(got, plains);
    // python's RFC 7638 thumbprint of our JWKS is our kid.
    assert_eq!(answer["jwks"][0]["kid"], fresh.kid());
    assert_eq!(answer["jwks"][0]["thumbprint"], fresh.kid());

    // And a wrong-mode control: python must refuse a SHA-256 wrap read as SHA-1.
    let ct = rsa_aes_wrap::wrap(
        &fresh.public_key(),
        WrapAlgorithm::RsaAesKeyWrap256,
        &[9; 32],
    )
    .unwrap();
    let answer = python_check(&json!({"unwrap": [{"private_key_pem": targets[0].0,
        "enc": "CKM_RSA_AES_KEY_WRAP", "ciphertext": hex::encode(&ct)}]}));
    assert_eq!(answer["unwrap"][0], "error: ValueError");
}

#[test]
fn transfer_key_runtime_data_shape_and_redaction() {
    let tk = TransferKey::generate(2048).unwrap();
    let text = std::str::from_utf8(tk.runtime_data()).unwrap();
    let v: Value = serde_json::from_str(text).unwrap();
    let k = &v["keys"][0];
    // Exact member order and no whitespace (§1.1 step 1).
    let expected = format!(
        r#"{{"keys":[{{"e":"AQAB","key_ops":["encrypt"],"kid":"{}","kty":"RSA","n":"{}"}}]}}"#,
        tk.kid(),
        k["n"].as_str().unwrap()
    );
    assert_eq!(text, expected);
    let n = b64::decode_url("n", k["n"].as_str().unwrap()).unwrap();
    assert_eq!(n, tk.public_key().n().to_bytes_be());
    assert_eq!(n.len(), 256);
    assert_eq!(
        runtime_data_jwks(&n, &[1, 0, 1]),
        tk.runtime_data().to_vec()
    );
    // Debug shows neither modulus nor private exponent.
    let dbg = format!("{tk:?}");
    assert!(dbg.contains(tk.kid()) && dbg.contains("2048"), "{dbg}");
    assert!(dbg.len() < 200, "{dbg}");
    let d_dec = format!("{:?}", rsa::traits::PrivateKeyParts::d(tk.private_key()));
    assert!(!dbg.contains(&d_dec[..20.min(d_dec.len())]));
    // Unsupported sizes.
    assert_eq!(code(TransferKey::generate(1024)), "transfer-key-size");
    // Every secret returned prints redacted.
    let ct = rsa_aes_wrap::wrap(
        &tk.public_key(),
        WrapAlgorithm::RsaAesKeyWrap384,
        &[0x41; 32],
    )
    .unwrap();
    let plain = tk.unwrap(WrapAlgorithm::RsaAesKeyWrap384, &ct).unwrap();
    assert_eq!(format!("{plain:?}"), "[redacted 32 bytes]");
    let m = key_material::decode(KeyKind::Oct, &plain).unwrap();
    assert!(!format!("{m:?}").contains("65, 65"));
    let pass =
        derive::luks_passphrase_for(m.ikm(), "7b1f3a3e-2c1d-4e8f-9a0b-1c2d3e4f5a6b").unwrap();
    assert_eq!(format!("{pass:?}"), "[redacted 44 bytes]");
}

#[test]
fn fuzz_entry_point_survives_vectors_and_garbage() {
    for w in expected()["wrapped"].as_array().unwrap() {
        let ct = hx(&w["ciphertext"]);
        fuzz_unwrap(&ct);
        fuzz_unwrap(&ct[..ct.len() / 2]);
    }
    for r in expected()["released_keys"].as_array().unwrap() {
        fuzz_unwrap(&hx(&r["plaintext"]));
    }
    let mut x: u32 = 0x1234_5678;
    for len in 0..400usize {
        let data: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        fuzz_unwrap(&data);
    }
    fuzz_unwrap(&[0xa6, 0x59, 0x59, 0xa6, 0, 0, 0, 0]);
    fuzz_unwrap(b"7b1f3a3e-2c1d-4e8f-9a0b-1c2d3e4f5a6b");
}

#[test]
fn key_hsm_documents_unwrap_through_the_jose_types() {
    use skrd::format::jose::release::KeyHsm;
    let tk = TransferKey::from_private_key(transfer_keys()["rsa2048"].clone()).unwrap();
    let mut n = 0;
    for w in expected()["wrapped"].as_array().unwrap() {
        if w["transfer"] != "rsa2048" {
            continue;
        }
        // §6.3 key_hsm shape, ciphertext unpadded base64url.
        let doc = json!({"schema_version": "1.0",
            "header": {"kid": tk.kid(), "alg": "dir", "enc": w["enc"]},
            "ciphertext": b64::encode_url(&hx(&w["ciphertext"]))});
        let k = KeyHsm::parse(&serde_json::to_vec(&doc).unwrap()).unwrap();
        let plain = tk.unwrap_key_hsm(&k).unwrap();
        assert_eq!(
            plain.expose(),
            &hx(&released(w["released"].as_str().unwrap())["plaintext"])[..]
        );
        n += 1;
    }
    assert_eq!(n, 33);
    // A key_hsm wrapped to the RSA-3072 key: 384 + 40 bytes still split for RSA-2048 (168
    // bytes after the first 256 are a valid KWP length), so OAEP is what refuses it.
    let w = expected()["wrapped"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["transfer"] == "rsa3072")
        .unwrap();
    let doc = json!({"schema_version": "1.0",
        "header": {"kid": "x", "alg": "dir", "enc": w["enc"]},
        "ciphertext": b64::encode_url(&hx(&w["ciphertext"]))});
    let k = KeyHsm::parse(&serde_json::to_vec(&doc).unwrap()).unwrap();
    assert_eq!(code(tk.unwrap_key_hsm(&k)), "unwrap-oaep-failed");
    let short = KeyHsm {
        ciphertext: k.ciphertext[..200].to_vec(),
        ..k
    };
    assert_eq!(code(tk.unwrap_key_hsm(&short)), "unwrap-ciphertext-length");
}

/// Trap 17: RSA blocks that begin or end with 0x00 survive base64url and the split unchanged.
#[test]
fn rsa_blocks_with_zero_bytes_at_either_end() {
    let key = &transfer_keys()["rsa2048"];
    let public = key.to_public_key();
    let (mut lead, mut trail) = (false, false);
    for _ in 0..5000 {
        let ct = rsa_aes_wrap::wrap(&public, WrapAlgorithm::RsaAesKeyWrap256, &[3; 32]).unwrap();
        let (l, t) = (ct[0] == 0, ct[255] == 0);
        if (l && !lead) || (t && !trail) {
            let text = b64::encode_url(&ct);
            let back = b64::decode_url("ciphertext", &text).unwrap();
            assert_eq!(back.len(), 296);
            let plain = rsa_aes_wrap::unwrap(key, WrapAlgorithm::RsaAesKeyWrap256, &back).unwrap();
            assert_eq!(plain.expose(), &[3; 32]);
            lead |= l;
            trail |= t;
        }
        if lead && trail {
            return;
        }
    }
    panic!(
        "no RSA block with a zero first and last byte in 5000 wraps (lead {lead}, trail {trail})"
    );
}
