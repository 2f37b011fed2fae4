//! Enroll / unenroll / reenroll / unlock on real LUKS2 image files, checked with the
//! independent `cryptsetup` CLI (`luksDump --dump-json-metadata`, `open --test-passphrase`)
//! and a python3 HKDF for the expected passphrase.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod volume_common;

use skrd::error::ErrorCode;
use skrd::secret::Secret;
use skrd::volume::{self, Authorization, Change};
use volume_common::*;

const NOW: u64 = 1_732_395_600;

fn tmp() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("skrd-volume-")
        .tempdir()
        .unwrap()
}

fn recovery() -> Secret {
    Secret::new(RECOVERY.as_bytes().to_vec())
}

#[test]
fn enroll_adds_exactly_one_slot_and_token() {
    let t = tmp();
    let (img, uuid) = luks2_image(t.path(), "data", None);
    let data_before = bytes(&img, data_offset(&img)..data_offset(&img) + 65536);
    let spec = spec("data", &uuid, Some("v1"));
    let key = ikm(7);
    let backups = t.path().join("backups");

    let change = enroll(&img, &spec, &key, &backups, NOW).unwrap();
    let Change::Changed {
        keyslot: Some(slot),
        ..
    } = change
    else {
        panic!("expected a change, got {change:?}");
    };
    assert_eq!(keyslots(&img), vec![0, slot]);
    let d = dump(&img);
    let ks = &d["keyslots"][slot.to_string()];
    assert_eq!(ks["kdf"]["type"], "pbkdf2");
    assert_eq!(ks["kdf"]["hash"], "sha512");
    assert_eq!(ks["kdf"]["iterations"], 1000);
    // LUKS2 on-disk format: keyslot "priority" 2 = prefer (absent = normal).
    assert_eq!(ks["priority"], 2);
    let toks = tokens(&img);
    assert_eq!(toks.len(), 1);
    let tok = toks.values().next().unwrap();
    assert_eq!(tok["type"], "azure-skr");
    assert_eq!(tok["keyslots"], serde_json::json!([slot.to_string()]));
    assert_eq!(tok["key_url"], KEY_URL);
    assert_eq!(tok["key_version"], "v1");
    assert_eq!(tok["kdf"], "skrd luks2 v1");
    assert_eq!(tok["volume"], "data");
    assert_eq!(tok["created_at"], NOW);
    // No secret in the token: nothing but the documented members.
    assert_eq!(tok.as_object().unwrap().len(), 8);

    // The independently derived passphrase opens skrd's slot; the recovery slot still opens.
    let pass = python_passphrase(&[7; 32], &uuid);
    assert_eq!(pass.len(), 44);
    assert!(opens(&img, &pass, Some(slot)));
    assert!(!opens(&img, &pass, Some(0)));
    assert!(opens(&img, RECOVERY.as_bytes(), Some(0)));
    // Data area untouched, backup removed after success.
    assert_eq!(
        bytes(&img, data_offset(&img)..data_offset(&img) + 65536),
        data_before
    );
    assert_eq!(std::fs::read_dir(&backups).unwrap().count(), 0);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&backups).unwrap().permissions().mode() & 0o777,
        0o700
    );

    // Idempotent: a second enroll changes nothing.
    let header = bytes(&img, 0..data_offset(&img));
    let again = enroll(&img, &spec, &key, &backups, NOW + 1).unwrap();
    assert_eq!(
        again,
        Change::Unchanged {
            keyslot: Some(slot)
        }
    );
    assert_eq!(bytes(&img, 0..data_offset(&img)), header);

    // Status reads it back.
    let st = volume::status(&spec, Some(&img));
    assert!(st.present && st.luks2, "{st:?}");
    assert_eq!(st.enrolled_keyslot, Some(slot));
    assert_eq!(st.token_matches, Some(true));
    assert_eq!(st.recovery_keyslots, vec![0]);
    assert_eq!(st.problem, None);
    assert_eq!(volume::unlock(&img, &spec, &key, None).unwrap(), slot);
}

#[test]
fn unenroll_removes_slot_and_token_and_keeps_recovery() {
    let t = tmp();
    let (img, uuid) = luks2_image(t.path(), "data", None);
    let spec = spec("data", &uuid, None);
    let key = ikm(1);
    let backups = t.path().join("b");
    enroll(&img, &spec, &key, &backups, NOW).unwrap();
    assert_eq!(keyslots(&img).len(), 2);
    let change = volume::unenroll(&img, &spec, &backups).unwrap();
    assert_eq!(
        change,
        Change::Changed {
            keyslot: None,
            token: None
        }
    );
    assert_eq!(keyslots(&img), vec![0]);
    assert!(tokens(&img).is_empty());
    assert!(opens(&img, RECOVERY.as_bytes(), Some(0)));
    assert!(!opens(&img, &python_passphrase(&[1; 32], &uuid), None));
    assert_eq!(
        volume::unenroll(&img, &spec, &backups).unwrap(),
        Change::Unchanged { keyslot: None }
    );
    let err = volume::unlock(&img, &spec, &key, None).unwrap_err();
    assert_eq!(err.code(), "volume-not-enrolled");
}

#[test]
fn unenroll_never_removes_the_last_way_in() {
    let t = tmp();
    let (img, uuid) = luks2_image(t.path(), "data", None);
    let spec = spec("data", &uuid, None);
    let backups = t.path().join("b");
    let change = enroll(&img, &spec, &ikm(2), &backups, NOW).unwrap();
    let slot = change.keyslot().unwrap();
    // The operator removes the recovery slot with cryptsetup itself (authorized by skrd's).
    let pass = python_passphrase(&[2; 32], &uuid);
    kill_slot(&img, 0, &pass);
    let header = bytes(&img, 0..data_offset(&img));
    let err = volume::unenroll(&img, &spec, &backups).unwrap_err();
    assert_eq!(err.code(), "volume-last-recovery-slot");
    assert!(err.to_string().contains("luksAddKey"), "{err}");
    assert_eq!(bytes(&img, 0..data_offset(&img)), header);
    assert!(opens(&img, &pass, Some(slot)));
}

#[test]
fn reenroll_rotates_without_a_gap() {
    let t = tmp();
    let (img, uuid) = luks2_image(t.path(), "data", None);
    let v1 = spec("data", &uuid, Some("v1"));
    let backups = t.path().join("b");
    let old = ikm(3);
    let new = ikm(4);
    let slot1 = enroll(&img, &v1, &old, &backups, NOW)
        .unwrap()
        .keyslot()
        .unwrap();
    let v2 = spec("data", &uuid, Some("v2"));
    // Wrong old key: refused, header unchanged.
    let header = bytes(&img, 0..data_offset(&img));
    let err = volume::reenroll(&img, &v2, &ikm(9), &new, Some("v2"), &backups, NOW).unwrap_err();
    assert_eq!(err.code(), "volume-wrong-key");
    assert_eq!(bytes(&img, 0..data_offset(&img)), header);

    let change = volume::reenroll(&img, &v2, &old, &new, Some("v2"), &backups, NOW + 5).unwrap();
    let slot2 = change.keyslot().unwrap();
    assert!(matches!(change, Change::Changed { .. }));
    assert_eq!(keyslots(&img), vec![0, slot2]);
    assert_ne!(
        slot1, slot2,
        "the new slot is added before the old one is removed"
    );
    let toks = tokens(&img);
    assert_eq!(toks.len(), 1);
    let tok = toks.values().next().unwrap();
    assert_eq!(tok["key_version"], "v2");
    assert_eq!(tok["keyslots"], serde_json::json!([slot2.to_string()]));
    assert!(opens(
        &img,
        &python_passphrase(&[4; 32], &uuid),
        Some(slot2)
    ));
    assert!(!opens(&img, &python_passphrase(&[3; 32], &uuid), None));
    assert!(opens(&img, RECOVERY.as_bytes(), Some(0)));
    // Repeating it is a no-op.
    assert_eq!(
        volume::reenroll(&img, &v2, &old, &new, Some("v2"), &backups, NOW + 6).unwrap(),
        Change::Unchanged {
            keyslot: Some(slot2)
        }
    );
    // The old configuration (v1) now disagrees with the header.
    let err = volume::unlock(&img, &v1, &new, None).unwrap_err();
    assert_eq!(err.code(), "volume-token-mismatch");
}

#[test]
fn refusals_leave_the_device_unchanged() {
    let t = tmp();
    let backups = t.path().join("b");
    let (img, uuid) = luks2_image(t.path(), "data", None);
    let s = spec("data", &uuid, None);
    let before = std::fs::read(&img).unwrap();
    let refused = |img: &std::path::Path, s: &skrd::volume::VolumeSpec, auth: &Secret| {
        volume::enroll(
            img,
            s,
            &ikm(5),
            Authorization::Passphrase(auth),
            None,
            &backups,
            NOW,
        )
        .unwrap_err()
        .code()
    };
    // Wrong recovery passphrase.
    assert_eq!(
        refused(&img, &s, &Secret::new(b"wrong".to_vec())),
        "volume-auth-refused"
    );
    // UUID not the configured one.
    let other = spec("data", "0b4b3e1c-6f1e-4c2a-9d55-2f1f9a7f0c11", None);
    assert_eq!(refused(&img, &other, &recovery()), "volume-uuid-mismatch");
    assert!(std::fs::read(&img).unwrap() == before);
    // Missing device.
    assert_eq!(
        refused(&t.path().join("absent.img"), &s, &recovery()),
        "volume-device-missing"
    );
    // Not LUKS at all.
    let zeros = t.path().join("zeros.img");
    std::fs::write(&zeros, vec![0u8; 1 << 20]).unwrap();
    assert_eq!(refused(&zeros, &s, &recovery()), "volume-not-luks");
    // LUKS1: refused, the image untouched.
    let (l1, l1_uuid) = luks_image(t.path(), "old", None, "luks1");
    let l1_before = std::fs::read(&l1).unwrap();
    assert_eq!(
        refused(&l1, &spec("old", &l1_uuid, None), &recovery()),
        "volume-not-luks2"
    );
    assert!(std::fs::read(&l1).unwrap() == l1_before);
    // One damaged header copy (the primary): libcryptsetup still reads the secondary, skrd
    // still enrolls, and the recovery passphrase still opens the volume.
    let (half, half_uuid) = luks2_image(t.path(), "half", None);
    let mut raw = std::fs::read(&half).unwrap();
    raw[..4096].fill(0xA5);
    std::fs::write(&half, &raw).unwrap();
    let half_spec = spec("half", &half_uuid, None);
    let slot = enroll(&half, &half_spec, &ikm(5), &backups, NOW)
        .unwrap()
        .keyslot()
        .unwrap();
    assert!(opens(&half, RECOVERY.as_bytes(), Some(0)));
    assert!(opens(
        &half,
        &python_passphrase(&[5; 32], &half_uuid),
        Some(slot)
    ));
    // Corrupt header: both LUKS2 binary headers (offsets 0 and 16 KiB, per the LUKS2 on-disk
    // format) overwritten; the whole image (header, keyslots, data) must stay as it was.
    let (bad, bad_uuid) = luks2_image(t.path(), "bad", None);
    let mut raw = std::fs::read(&bad).unwrap();
    raw[..4096].fill(0xA5);
    raw[16384..16384 + 4096].fill(0xA5);
    std::fs::write(&bad, &raw).unwrap();
    assert_eq!(
        refused(&bad, &spec("bad", &bad_uuid, None), &recovery()),
        "volume-not-luks"
    );
    assert!(std::fs::read(&bad).unwrap() == raw);
    // Backup directory that is a file.
    let file = t.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let err = enroll(&img, &s, &ikm(5), &file, NOW).unwrap_err();
    assert_eq!(err.code(), "volume-backup-dir");
    assert!(std::fs::read(&img).unwrap() == before);
}

#[test]
fn token_disagreeing_with_the_config_is_refused() {
    let t = tmp();
    let backups = t.path().join("b");
    let (img, uuid) = luks2_image(t.path(), "data", None);
    let s = spec("data", &uuid, Some("v1"));
    enroll(&img, &s, &ikm(6), &backups, NOW).unwrap();
    let mut other_key = s.clone();
    other_key.key_url = "https://fabrikam.vault.azure.net/keys/disk".to_string();
    let before = std::fs::read(&img).unwrap();
    for err in [
        enroll(&img, &other_key, &ikm(6), &backups, NOW).unwrap_err(),
        volume::unlock(&img, &other_key, &ikm(6), None).unwrap_err(),
        volume::reenroll(&img, &other_key, &ikm(6), &ikm(8), None, &backups, NOW).unwrap_err(),
    ] {
        assert_eq!(err.code(), "volume-token-mismatch", "{err}");
    }
    // Refused before any write: header, keyslots and data as they were.
    assert!(std::fs::read(&img).unwrap() == before);
    let st = volume::status(&other_key, Some(&img));
    assert_eq!(st.token_matches, Some(false));
    assert_eq!(st.problem.unwrap().code, "volume-token-mismatch");
    // A token edited by hand into something skrd did not write.
    let (ok, _, err) = run(
        "cryptsetup",
        &["token", "import", "--json-file", "-", img.to_str().unwrap()],
        br#"{"type":"azure-skr","keyslots":[],"key_url":"x"}"#,
    );
    assert!(ok, "{err}");
    let err = volume::unlock(&img, &s, &ikm(6), None).unwrap_err();
    assert_eq!(err.code(), "volume-token-invalid");
}

#[test]
fn no_space_for_the_header_backup_changes_nothing() {
    let t = tmp();
    let (img, uuid) = luks2_image(t.path(), "data", None);
    let s = spec("data", &uuid, None);
    let mnt = t.path().join("tiny");
    std::fs::create_dir(&mnt).unwrap();
    // A 1 MiB tmpfs cannot hold the 16 MiB LUKS2 header backup.
    let (ok, _, err) = run(
        "mount",
        &[
            "-t",
            "tmpfs",
            "-o",
            "size=1m",
            "tmpfs",
            mnt.to_str().unwrap(),
        ],
        b"",
    );
    // `make test` runs as root (it installs packages); a test that skipped itself here would
    // pass without checking anything.
    assert!(ok, "cannot mount a tmpfs ({err}): run the tests as root");
    let before = std::fs::read(&img).unwrap();
    let result = enroll(&img, &s, &ikm(5), &mnt, NOW);
    let leftovers = std::fs::read_dir(&mnt).unwrap().count();
    run("umount", &[mnt.to_str().unwrap()], b"");
    let err = result.unwrap_err();
    assert_eq!(err.code(), "volume-backup-no-space");
    assert!(err.to_string().contains("--backup-dir"), "{err}");
    assert_eq!(leftovers, 0);
    assert!(std::fs::read(&img).unwrap() == before);
}

#[test]
fn a_token_whose_keyslot_was_destroyed_is_rebound_or_removed() {
    let t = tmp();
    let backups = t.path().join("b");
    let (img, uuid) = luks2_image(t.path(), "data", None);
    let s = spec("data", &uuid, None);
    let slot = enroll(&img, &s, &ikm(7), &backups, NOW)
        .unwrap()
        .keyslot()
        .unwrap();
    // The operator destroys skrd's keyslot with cryptsetup: libcryptsetup empties the token's
    // keyslots (checked with luksDump, not with skrd).
    kill_slot(&img, slot, RECOVERY.as_bytes());
    let toks = tokens(&img);
    assert_eq!(
        toks.values().next().unwrap()["keyslots"],
        serde_json::json!([])
    );
    let st = volume::status(&s, Some(&img));
    assert_eq!(st.problem.unwrap().code, "volume-token-unbound");
    let err = volume::unlock(&img, &s, &ikm(7), None).unwrap_err();
    assert_eq!(err.code(), "volume-token-unbound");
    // enroll rebinds the same token (no second token) to a new keyslot.
    let slot2 = enroll(&img, &s, &ikm(7), &backups, NOW)
        .unwrap()
        .keyslot()
        .unwrap();
    assert_eq!(tokens(&img).len(), 1);
    assert!(opens(
        &img,
        &python_passphrase(&[7; 32], &uuid),
        Some(slot2)
    ));
    // And unenroll of an unbound token removes just the token.
    kill_slot(&img, slot2, RECOVERY.as_bytes());
    volume::unenroll(&img, &s, &backups).unwrap();
    assert!(tokens(&img).is_empty());
    assert_eq!(keyslots(&img), vec![0]);
}

#[test]
fn interrupted_runs_are_completed_not_doubled() {
    let t = tmp();
    let backups = t.path().join("b");
    let (img, uuid) = luks2_image(t.path(), "data", None);
    let s = spec("data", &uuid, Some("v1"));
    let old_pass = python_passphrase(&[3; 32], &uuid);
    let new_pass = python_passphrase(&[4; 32], &uuid);

    // enroll killed after its keyslot write, before the token: a keyslot holding our
    // passphrase and no token. The next enroll adopts it.
    let dangling = add_key(&img, &old_pass);
    let change = enroll(&img, &s, &ikm(3), &backups, NOW).unwrap();
    assert_eq!(change.keyslot(), Some(dangling));
    assert_eq!(keyslots(&img), vec![0, dangling]);
    assert_eq!(tokens(&img).len(), 1);
    assert_eq!(dump(&img)["keyslots"][dangling.to_string()]["priority"], 2);

    // reenroll killed after adding the new keyslot: the token still on the old one, plus a
    // keyslot with the new key. The next reenroll uses that keyslot.
    let s2 = spec("data", &uuid, Some("v2"));
    let new_slot = add_key(&img, &new_pass);
    let change = volume::reenroll(&img, &s2, &ikm(3), &ikm(4), Some("v2"), &backups, NOW).unwrap();
    assert_eq!(change.keyslot(), Some(new_slot));
    assert_eq!(keyslots(&img), vec![0, new_slot]);

    // reenroll killed after moving the token, before destroying the old keyslot: the next
    // reenroll removes the leftover.
    let leftover = add_key(&img, &old_pass);
    assert_eq!(
        keyslots(&img),
        vec![0, new_slot.min(leftover), new_slot.max(leftover)]
    );
    let change = volume::reenroll(&img, &s2, &ikm(3), &ikm(4), Some("v2"), &backups, NOW).unwrap();
    assert!(matches!(change, Change::Changed { .. }), "{change:?}");
    assert_eq!(keyslots(&img), vec![0, new_slot]);
    assert!(!opens(&img, &old_pass, None));
    assert!(opens(&img, &new_pass, Some(new_slot)));
    assert!(opens(&img, RECOVERY.as_bytes(), Some(0)));
}
