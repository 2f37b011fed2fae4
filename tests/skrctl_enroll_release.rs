//! `skrctl enroll` and `skrctl unlock` without `--key-fd`: the volume's configured key is released
//! through the real flow (swtpm as the vTPM, skr-emulator as MAA and Key Vault / Managed HSM),
//! and the keyslot it adds opens with the passphrase derived independently (python3
//! `cryptography` HKDF over the key material that was imported, checked by the `cryptsetup` CLI).
//! `--key-fd` accepts what `skrctl release --out-fd` writes. A refused release changes nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "flow_common.rs"]
mod flow_common;
mod volume_common;

use std::io::Write;
use std::process::{Command, Stdio};

use flow_common::*;
use serde_json::Value;
use volume_common::{keyslots, luks2_image, opens, python_passphrase, RECOVERY};

/// Runs skrctl with the recovery passphrase on stdin; returns (status, stdout + stderr, JSON).
fn skrctl_with_recovery(env: &Env, args: &[&str]) -> (i32, String, Value) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_skrctl"))
        .arg("--config")
        .arg(env.config_path())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{RECOVERY}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let text = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let json = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (out.status.code().unwrap_or(-1), text, json)
}

#[test]
fn enroll_releases_the_configured_key_and_its_slot_opens() {
    let (env, _tpm) = env_with_swtpm();
    let allow = policy(
        &env.authority(),
        "x-ms-isolation-tee.x-ms-attestation-type",
        "sevsnpvm",
    );
    let deny = policy(
        &env.authority(),
        "x-ms-isolation-tee.x-ms-attestation-type",
        "tdxvm",
    );
    let (oct_url, oct) = env.import("disk", KeyType::Oct256, &allow);
    let (rsa_url, rsa_d) = env.import("rsa", KeyType::Rsa(2048), &allow);
    let (deny_url, _) = env.import("denied", KeyType::Oct256, &deny);
    let images = tempfile::tempdir().unwrap();
    let (data, data_uuid) = luks2_image(images.path(), "data", None);
    let (logs, logs_uuid) = luks2_image(images.path(), "logs", None);
    let (refused, refused_uuid) = luks2_image(images.path(), "refused", None);
    env.append_config(&format!(
        "\n[keys.disk]\nurl = \"{oct_url}\"\n[keys.rsa]\nurl = \"{rsa_url}\"\n\
         [keys.denied]\nurl = \"{deny_url}\"\n\
         [volumes.data]\nuuid = \"{data_uuid}\"\nkey = \"disk\"\n\
         [volumes.logs]\nuuid = \"{logs_uuid}\"\nkey = \"rsa\"\n\
         [volumes.refused]\nuuid = \"{refused_uuid}\"\nkey = \"denied\"\n"
    ));
    let backups = images.path().join("backups");
    let backups = backups.to_str().unwrap();

    // oct key: IKM = the key bytes; RSA key: IKM = d (DESIGN.md "Volumes and the untrusted header").
    for (vol, img, uuid, ikm) in [
        ("data", &data, &data_uuid, &oct),
        ("logs", &logs, &logs_uuid, &rsa_d),
    ] {
        let (code, out, v) = skrctl_with_recovery(
            &env,
            &[
                "enroll",
                "--volume",
                vol,
                "--device",
                img.to_str().unwrap(),
                "--backup-dir",
                backups,
                "--json",
            ],
        );
        assert_eq!(code, 0, "{out}");
        assert_eq!(v["result"], "enrolled", "{out}");
        let slot = u32::try_from(v["keyslot"].as_u64().unwrap()).unwrap();
        assert!(
            opens(img, &python_passphrase(ikm, uuid), Some(slot)),
            "{vol}"
        );
        assert!(opens(img, RECOVERY.as_bytes(), Some(0)), "{vol}");
        // And a fresh release opens it again, as the boot will.
        let (code, out, v) = skrctl_with_recovery(
            &env,
            &[
                "unlock",
                vol,
                "--device",
                img.to_str().unwrap(),
                "--test",
                "--json",
            ],
        );
        assert_eq!(
            (code, v["result"].as_str()),
            (0, Some("key-opens")),
            "{out}"
        );
    }

    // --key-fd takes what `release --out-fd` writes: RSA as PKCS#8, reduced to the same d.
    let (code, out, _, pkcs8) = skrctl(&env, &["release", "rsa", "--out-fd", "3"]);
    assert_eq!(code, 0, "{out}");
    let key_file = images.path().join("rsa.pkcs8");
    std::fs::write(&key_file, &pkcs8).unwrap();
    let out = Command::new("sh")
        .arg("-c")
        .arg("exec \"$0\" --config \"$1\" unlock logs --device \"$2\" --test --key-fd 3 3<\"$3\"")
        .arg(env!("CARGO_BIN_EXE_skrctl"))
        .arg(env.config_path())
        .arg(&logs)
        .arg(&key_file)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A release the policy refuses: exit 1 with the unmet condition; the header is untouched.
    let before = keyslots(&refused);
    let (code, out, v) = skrctl_with_recovery(
        &env,
        &[
            "enroll",
            "--volume",
            "refused",
            "--device",
            refused.to_str().unwrap(),
            "--backup-dir",
            backups,
            "--json",
        ],
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        v["error"]["code"].as_str().unwrap().starts_with("release-"),
        "{out}"
    );
    assert!(out.contains("tdxvm"), "{out}");
    assert_eq!(keyslots(&refused), before);
}
