//! The LUKS2 header is host-controlled (DESIGN.md "Volumes and the untrusted header"): a
//! header carrying a copy of our `azure-skr` token, or a volume given our UUID, is never
//! opened with a key from skrd. Checked with the `cryptsetup` CLI.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod volume_common;

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
    let (theirs, their_uuid) = luks2_image(t.path(), "evil", None);
    let mut copied = our_token.clone();
    copied["keyslots"] = serde_json::json!(["0"]);
    import_token(&theirs, &copied);
    let err = volume::unlock(&theirs, &spec, &key, None).unwrap_err();
    assert_eq!(err.code(), "volume-uuid-mismatch", "{err}");
    // Whatever skrd would derive, neither our passphrase nor one for their UUID opens it.
    assert!(!opens(&theirs, &our_pass, None));
    assert!(!opens(
        &theirs,
        &python_passphrase(&[0x42; 32], &their_uuid),
        None
    ));

    // 2. The host's volume formatted with OUR UUID (its own passphrase) and our token.
    let fake_dir = t.path().join("fake");
    std::fs::create_dir(&fake_dir).unwrap();
    let (fake, fake_uuid) = luks2_image(&fake_dir, "data", Some(&our_uuid));
    assert_eq!(fake_uuid, our_uuid);
    import_token(&fake, &copied);
    let err = volume::unlock(&fake, &spec, &key, None).unwrap_err();
    assert_eq!(err.code(), "volume-wrong-key", "{err}");
    assert!(!opens(&fake, &our_pass, None));
    // And skrd refuses to "enroll" over it: the token is there but our key does not open it.
    let err = enroll(&fake, &spec, &key, &backups, NOW).unwrap_err();
    assert_eq!(err.code(), "volume-wrong-key", "{err}");
}
