//! `skrctl status` from a state file alone (no daemon on the bus): a document written by the
//! initramfs (hand-written here per the schema in `src/format/state.rs`) with a refused volume
//! exits 1 and shows the error; a healthy one exits 0; a damaged one exits 2 with its code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

const DOC: &str = r#"{"schema_version": 1, "writer": "initrd", "updated_at": 1732395600,
 "volumes": [{"name": "data", "uuid": "0b5d1c2e-8d1f-4b7a-9d0e-5c1f2a3b4c5d", "stage": "STAGE",
   "attempts": 3, "timings_ms": {"attest": 412}, "last_error": ERROR, "updated_at": 1732395601}],
 "attestation": {"provider": "https://x.weu.attest.azure.net/", "source": "vtpm",
   "last_success": 1732395600, "token_expiry": 1732424400, "maa_request_id": null, "last_error": null},
 "keys": [{"name": "disk", "url": "https://contoso.vault.azure.net/keys/disk", "version": null,
   "cached": false, "akv_request_id": null, "released_at": null, "last_error": null}]}"#;

fn status(doc: &str, json: bool) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    std::fs::write(&path, doc).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_skrctl"));
    cmd.args([
        "--config",
        "/nonexistent/skrd.toml",
        "status",
        "--bus-address",
    ])
    .arg(format!("unix:path={}/no-bus", dir.path().display()))
    .arg("--state-file")
    .arg(&path);
    if json {
        cmd.arg("--json");
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn refused_volume_exits_1_and_shows_the_error() {
    let doc = DOC.replace("STAGE", "refused").replace(
        "ERROR",
        r#"{"code": "release-forbidden", "message": "the release policy was not met"}"#,
    );
    let (code, out) = status(&doc, false);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("from state file"), "{out}");
    assert!(out.contains("written by the initramfs"), "{out}");
    assert!(
        out.contains("data") && out.contains("refused") && out.contains("attempts 3"),
        "{out}"
    );
    assert!(
        out.contains("the release policy was not met (release-forbidden)"),
        "{out}"
    );
    assert!(out.contains("health: FAILED"), "{out}");
}

#[test]
fn healthy_state_exits_0_and_damaged_exits_2() {
    let doc = DOC.replace("STAGE", "unlocked").replace("ERROR", "null");
    let (code, out) = status(&doc, true);
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["source"], "state-file");
    assert_eq!(v["healthy"], true);
    assert_eq!(v["state"]["volumes"][0]["stage"], "unlocked");
    let (code, out) = status(&DOC.replace("STAGE", "done").replace("ERROR", "null"), true);
    assert_eq!(code, 2, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["error"]["code"], "state-schema");
}
