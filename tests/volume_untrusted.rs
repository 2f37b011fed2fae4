//! The LUKS2 header is host-controlled (DESIGN.md "Volumes and the untrusted header"): a
//! header carrying a copy of our `azure-skr` token, or a volume given our UUID, is never
//! opened with a key from skrd. Checked with the `cryptsetup` CLI.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod volume_common;

use std::os::unix::fs::PermissionsExt;

use skrd::error::ErrorCode;
use skrd::volume;
use volume_common::*;

const NOW: u64 = 1_732_395_600;

/// Imports `token` (JSON) into `img` with `cryptsetup token import`.
fn import_token(img: &std::path::Path, token: &serde_json::Value) {
    let (ok, _, err) = run(
        "cryptsetup",
        &["token", "import", "--json-file", "-", img.to_str().unwrap()],
        token.to_string().as_bytes(),
    );
    assert!(ok, "token import failed: {err}");
}

#[test]
fn copied_token_or_borrowed_uuid_never_opens() {
    let t = tempfile::tempdir().unwrap();
    let backups = t.path().join("b");
    let key = ikm(0x42);
    // Our volume, enrolled.
    let (ours, our_uuid) = luks2_image(t.path(), "data", None);
    let spec = spec("data", &our_uuid, Some("v1"));
    let slot = enroll(&ours, &spec, &key, &backups, NOW)
        .unwrap()
        .keyslot()
        .unwrap();
    let our_token = tokens(&ours).values().next().unwrap().clone();
    let our_pass = python_passphrase(&[0x42; 32], &our_uuid);
    assert!(opens(&ours, &our_pass, Some(slot)));

    // 1. The host's volume with another UUID and a copy of our token (bound to its slot 0).
    let (theirs, _) = luks2_image(t.path(), "evil", None);
    let mut copied = our_token.clone();
    copied["keyslots"] = serde_json::json!(["0"]);
    import_token(&theirs, &copied);
    let err = volume::unlock(&theirs, &spec, &key, None).unwrap_err();
    assert_eq!(err.code(), "volume-uuid-mismatch", "{err}");

    // 2. The host's volume formatted with OUR UUID (its own passphrase) and our token.
    let fake_dir = t.path().join("fake");
    std::fs::create_dir(&fake_dir).unwrap();
    let (fake, fake_uuid) = luks2_image(&fake_dir, "data", Some(&our_uuid));
    assert_eq!(fake_uuid, our_uuid);
    import_token(&fake, &copied);
    let err = volume::unlock(&fake, &spec, &key, None).unwrap_err();
    assert_eq!(err.code(), "volume-wrong-key", "{err}");
    // And skrd refuses to "enroll" over it: the token is there but our key does not open it.
    let err = enroll(&fake, &spec, &key, &backups, NOW).unwrap_err();
    assert_eq!(err.code(), "volume-wrong-key", "{err}");
}

/// Runs `skrd --prepare-header NAME` for the volume `data` of a configuration naming `uuid`,
/// on `img`, writing to `dir`: (exit status, stderr).
fn prepare_header(
    t: &std::path::Path,
    uuid: &str,
    img: &std::path::Path,
    dir: &std::path::Path,
    name: &str,
) -> (i32, String) {
    let cfg = t.join("skrd.toml");
    std::fs::write(
        &cfg,
        format!(
            "[attestation]\nprovider = \"https://sharedeus2.eus2.attest.azure.net\"\n\n[keys.disk]\nurl = \"{KEY_URL}\"\n\n[volumes.data]\nuuid = \"{uuid}\"\nkey = \"disk\"\n"
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_skrd"))
        .args(["--config", cfg.to_str().unwrap(), "--prepare-header", name])
        .args([
            "--device",
            img.to_str().unwrap(),
            "--header-dir",
            dir.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The host keeps our genuine keyslot (so skrd's passphrase still opens the volume) and
/// changes how the data is encrypted: without the check, systemd-cryptsetup would map the
/// volume so that the VM writes data the host can read. `skrd --prepare-header` refuses every
/// such header, leaves no header= file (activation fails closed) and a note for the boot.
#[test]
fn a_tampered_header_is_refused_before_activation_and_a_genuine_one_is_used_detached() {
    let t = tempfile::tempdir().unwrap();
    let backups = t.path().join("b");
    let headers = t.path().join("headers");
    let key = ikm(0x42);
    let (img, uuid) = luks2_image(t.path(), "data", None);
    let slot = enroll(&img, &spec("data", &uuid, None), &key, &backups, NOW)
        .unwrap()
        .keyslot()
        .unwrap();
    let pass = python_passphrase(&[0x42; 32], &uuid);

    // Genuine: checked, written detached (0600), and it opens the volume with skrd's passphrase.
    let (code, err) = prepare_header(t.path(), &uuid, &img, &headers, "data");
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("LUKS2 header checked (aes-xts-plain64, 512-bit key"),
        "{err}"
    );
    let detached = headers.join("data");
    let mode = std::fs::metadata(&detached).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let header_arg = format!("--header={}", detached.display());
    let (ok, _, e) = run(
        "cryptsetup",
        &[
            "open",
            "--test-passphrase",
            &header_arg,
            "--key-slot",
            &slot.to_string(),
            "--key-file",
            "-",
            img.to_str().unwrap(),
        ],
        &pass,
    );
    assert!(
        ok,
        "the detached header does not open the volume with skrd's passphrase: {e}"
    );
    // Not an skrd volume: nothing done, exit 0 (other crypttab entries are left alone).
    let (code, err) = prepare_header(t.path(), &uuid, &img, &headers, "swap");
    assert_eq!((code, err.as_str()), (0, ""));
    assert!(!headers.join("swap").exists());

    // (attack, whether cryptsetup 2.6.1 itself accepts the tampered header: measured with
    // `cryptsetup open --test-passphrase`; the crafted reencryption and overlap shapes are
    // refused by its own validation, the cipher and flag changes are not).
    for (attack, cryptsetup_accepts) in [
        ("null-cipher", true),
        ("weak-cipher", true),
        ("discards", true),
        ("reencrypt", false),
        ("data-over-header", false),
    ] {
        let bad = t.path().join(format!("{attack}.img"));
        std::fs::copy(&img, &bad).unwrap();
        let (ok, _, e) = run(
            "python3",
            &[
                concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/tests/fixtures/independent/luks2_tamper.py"
                ),
                bad.to_str().unwrap(),
                attack,
            ],
            b"",
        );
        assert!(ok, "{attack}: {e}");
        // Where cryptsetup accepts the header, the attack is real: skrd's passphrase opens it.
        assert_eq!(
            opens(&bad, &pass, Some(slot)),
            cryptsetup_accepts,
            "{attack}"
        );
        // skrd refuses it and removes the earlier detached header of the volume.
        let (code, err) = prepare_header(t.path(), &uuid, &bad, &headers, "data");
        assert_eq!(code, 1, "{attack}: {err}");
        assert!(err.contains("[luks-header-refused]"), "{attack}: {err}");
        assert!(
            !headers.join("data").exists(),
            "{attack}: a header= file was left"
        );
        let note: serde_json::Value =
            serde_json::from_slice(&std::fs::read(headers.join("data.refused")).unwrap()).unwrap();
        assert_eq!(note["code"], "luks-header-refused", "{attack}");
        // A genuine header again: prepared, the note is gone.
        let (code, err) = prepare_header(t.path(), &uuid, &img, &headers, "data");
        assert_eq!(code, 0, "{err}");
        assert!(!headers.join("data.refused").exists());
    }

    // A disk with another UUID than the configured one.
    let (other, _) = luks2_image(t.path(), "other", None);
    let (code, err) = prepare_header(t.path(), &uuid, &other, &headers, "data");
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("[luks-header-uuid-mismatch]"), "{err}");
    // A volume that is not enrolled (no azure-skr token).
    let (plain, plain_uuid) = luks2_image(t.path(), "plain", None);
    let (code, err) = prepare_header(t.path(), &plain_uuid, &plain, &headers, "data");
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("[volume-not-enrolled]"), "{err}");
}
