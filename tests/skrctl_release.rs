//! `skrctl release KEY_NAME | --key-url URL` against skr-emulator and a provisioned swtpm:
//! metadata only on stdout (never key bytes), the key material on `--out-fd`, equal to what was
//! imported; policy denial exits 1 with the unmet condition; usage errors exit 2.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "flow_common.rs"]
mod flow_common;

use flow_common::*;
use rsa::pkcs8::DecodePrivateKey;
use rsa::traits::PrivateKeyParts;
use serde_json::Value;

#[test]
fn release_by_name_and_by_url_hands_the_key_to_the_fd_only() {
    let (env, _tpm) = env_with_swtpm();
    let p = policy(
        &env.authority(),
        "x-ms-isolation-tee.x-ms-attestation-type",
        "sevsnpvm",
    );
    let (oct_url, oct) = env.import("disk", KeyType::Oct256, &p);
    let (rsa_url, rsa_d) = env.import("rsa", KeyType::Rsa(3072), &p);
    env.append_config(&format!(
        "\n[keys.disk]\nurl = \"{oct_url}\"\nenc = \"RSA_AES_KEY_WRAP_384\"\n"
    ));

    let (code, out, err, fd3) = skrctl(&env, &["release", "disk", "--json", "--out-fd", "3"]);
    assert_eq!(code, 0, "{out}{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["released"], true);
    assert_eq!(v["key"]["name"], "disk");
    assert_eq!(v["key"]["kty"], "oct-HSM");
    assert_eq!(v["key"]["enc"], "RSA_AES_KEY_WRAP_384");
    assert_eq!(v["key"]["length"], 32);
    assert_eq!(v["written_to_fd"], 3);
    assert_eq!(v["attestation"]["wrapped_to"], "TpmEphemeralEncryptionKey");
    // The key reaches the descriptor, and only the descriptor.
    assert_eq!(fd3, oct);
    for shown in [hex::encode(&oct), b64url(&oct)] {
        assert!(!out.contains(&shown) && !err.contains(&shown));
    }

    // By URL, another enc mode; RSA material is PKCS#8 DER whose d is the imported key's.
    let (code, out, err, fd3) = skrctl(
        &env,
        &[
            "release",
            "--key-url",
            &rsa_url,
            "--enc",
            "CKM_RSA_AES_KEY_WRAP",
            "--out-fd",
            "3",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("released "), "{out}");
    assert!(out.contains("CKM_RSA_AES_KEY_WRAP"), "{out}");
    let k = rsa::RsaPrivateKey::from_pkcs8_der(&fd3).unwrap();
    assert_eq!(k.d().to_bytes_be(), rsa_d);
    // openssl reads the handed-over bytes as a PKCS#8 private key too.
    let dir = tempfile::tempdir().unwrap();
    let der = dir.path().join("k.der");
    std::fs::write(&der, &fd3).unwrap();
    let (ok, text) = flow_common::common::openssl(&[
        "pkey",
        "-inform",
        "DER",
        "-in",
        der.to_str().unwrap(),
        "-noout",
        "-text",
    ]);
    assert!(ok && text.contains("3072 bit"), "{text}");
}

#[test]
fn policy_denial_exits_1_with_the_unmet_condition() {
    let (env, _tpm) = env_with_swtpm();
    let p = policy(
        &env.authority(),
        "x-ms-azurevm-vmid",
        "00000000-0000-0000-0000-000000000000",
    );
    let (url, _) = env.import("denied", KeyType::Oct256, &p);
    let (code, out, _, fd3) = skrctl(
        &env,
        &["release", "--key-url", &url, "--json", "--out-fd", "3"],
    );
    assert_eq!(code, 1, "{out}");
    assert!(fd3.is_empty());
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["released"], false);
    assert_eq!(v["error"]["code"], "release-forbidden");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("unmet conditions") && msg.contains("x-ms-azurevm-vmid"),
        "{msg}"
    );
}

#[test]
fn usage_errors_exit_2() {
    let env = Env::start("vtpm", Some("swtpm:host=127.0.0.1,port=1"), "");
    let (code, out, _, _) = skrctl(&env, &["release", "nokey", "--json"]);
    assert_eq!(code, 2);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["error"]["code"], "invalid-argument");
    assert!(v["error"]["message"].as_str().unwrap().contains("nokey"));
    let (code, out, _, _) = skrctl(
        &env,
        &[
            "release",
            "--key-url",
            "https://v.vault.azure.net/keys/k",
            "--enc",
            "AES",
            "--json",
        ],
    );
    assert_eq!(code, 2, "{out}");
    let (code, _, _, _) = skrctl(&env, &["release"]);
    assert_eq!(code, 2);
}
