//! `skrctl status` from a state file alone (no daemon on the bus): a document written by the
//! initramfs (hand-written here per the schema in `src/format/state.rs`) with a refused volume
//! exits 1 and shows the volume's UUID, the error and, on its own line, the advice; a healthy
//! one exits 0 and shows the key's version; a damaged one exits 2 with its code. A document of
//! a daemon that did not stop but whose attestation token expired is unhealthy (exit 1); once
//! the daemon said it stopped, it is not.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

const DOC: &str = r#"{"schema_version": 1, "writer": "WRITER", "updated_at": 1732395600,STOPPED
 "volumes": [{"name": "data", "uuid": "0b5d1c2e-8d1f-4b7a-9d0e-5c1f2a3b4c5d", "stage": "STAGE",
   "attempts": 3, "timings_ms": {"attest": 412}, "last_error": ERROR, "updated_at": 1732395601}],
 "attestation": {"provider": "https://x.weu.attest.azure.net/", "source": "vtpm",
   "last_success": 1732395600, "token_expiry": 1732424400, "maa_request_id": null, "last_error": null},
 "keys": [{"name": "disk", "url": "https://contoso.vault.azure.net/keys/disk", "version": VERSION,
   "cached": false, "akv_request_id": null, "released_at": null, "last_error": null}]}"#;

/// DOC as the initramfs writes it, with the volume's `stage` and `last_error`.
fn initrd(stage: &str, error: &str) -> String {
    DOC.replace("WRITER", "initrd")
        .replace("STOPPED", "")
        .replace("VERSION", "null")
        .replace("STAGE", stage)
        .replace("ERROR", error)
}

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
    let doc = initrd(
        "refused",
        r#"{"code": "release-forbidden", "message": "the release policy was not met; check it with skrctl policy check"}"#,
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
        out.contains("\n    uuid 0b5d1c2e-8d1f-4b7a-9d0e-5c1f2a3b4c5d\n"),
        "{out}"
    );
    assert!(
        out.contains(
            "\n    error: the release policy was not met (release-forbidden)\n    advice: check it with skrctl policy check\n"
        ),
        "{out}"
    );
    assert!(out.contains("health: FAILED"), "{out}");
    let (code, out) = status(&doc, true);
    assert_eq!(code, 1, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["healthy"], false);
    assert_eq!(v["token_expired"], false);
    assert_eq!(v["problems"][0]["where"], "volume data");
    assert_eq!(v["problems"][0]["code"], "release-forbidden");
    assert_eq!(
        v["problems"][0]["advice"],
        "check it with skrctl policy check"
    );
}

#[test]
fn healthy_state_exits_0_and_damaged_exits_2() {
    let doc = initrd("unlocked", "null");
    let (code, out) = status(&doc, true);
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["source"], "state-file");
    assert_eq!(v["healthy"], true);
    assert_eq!(v["problems"], serde_json::json!([]));
    assert_eq!(v["state"]["volumes"][0]["stage"], "unlocked");
    let doc = initrd("unlocked", "null").replace(r#""version": null"#, r#""version": "0123abcd""#);
    let (code, out) = status(&doc, false);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("https://contoso.vault.azure.net/keys/disk  version 0123abcd"),
        "{out}"
    );
    let (code, out) = status(&initrd("done", "null"), true);
    assert_eq!(code, 2, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["error"]["code"], "state-schema");
}

#[test]
fn an_expired_token_the_daemon_did_not_renew_is_unhealthy() {
    // token_expiry 1732424400 is in the past.
    let doc = |stopped: &str| {
        DOC.replace("WRITER", "daemon")
            .replace("STOPPED", stopped)
            .replace("VERSION", "null")
            .replace("STAGE", "unlocked")
            .replace("ERROR", "null")
    };
    let (code, out) = status(&doc(""), false);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("error: the attestation token expired at 2024-11-24T05:00:00Z and the daemon did not renew it"),
        "{out}"
    );
    assert!(
        out.contains("health: FAILED (the attestation token expired and was not renewed)"),
        "{out}"
    );
    let (code, out) = status(&doc(""), true);
    assert_eq!(code, 1, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (&v["healthy"], &v["token_expired"]),
        (&false.into(), &true.into())
    );
    // The daemon stopped cleanly: nothing renews the token any more, and the file says why.
    let (code, out) = status(&doc(r#" "stopped_at": 1732395700,"#), false);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("the daemon stopped at"), "{out}");
}
