//! The daemon takes over the state file the initramfs left (DESIGN.md: state crosses
//! switch-root as `/run/skrd/state.json`). The file is hand-written here per the schema of
//! `src/format/state.rs`, shaped like `src/boot/state.rs` writes it (writer `initrd`, one volume
//! unlocked, one refused after 3 attempts with the key's refusal, timings, the attestation's
//! and the release's request ids). skrd then starts over it against skr-emulator and swtpm and
//! attests on its own: in GetStatus and in the file, the volumes keep their stage, attempts,
//! timings, error and (in their own members) the initramfs's request ids; the key released in
//! the initramfs keeps its version, release time and request id (not cached: material never
//! crosses switch-root); the attestation is the daemon's new one (its request id is the one the
//! emulator sent).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "daemon_common/mod.rs"]
mod daemon_common;
#[path = "flow_common.rs"]
mod flow_common;

use daemon_common::*;
use skrd::format::state::{Stage, State, Writer};

const ROOT_UUID: &str = "0b5d1c2e-8d1f-4b7a-9d0e-5c1f2a3b4c5d";
const HOME_UUID: &str = "3f1e2d4c-5b6a-4798-8a1b-2c3d4e5f6a7b";
const MAA_ID: &str = "6c8f9a34-1d2e-4f50-8a6b-7c8d9e0f1a2b";
const AKV_ID: &str = "9e0f1a2b-3c4d-4e5f-8a6b-7c8d9e0f1a2c";

fn initrd_document(disk_url: &str, other_url: &str) -> String {
    format!(
        r#"{{
  "schema_version": 1, "writer": "initrd", "updated_at": 1732395602, "finished_at": 1732395602,
  "volumes": [
    {{"name": "root", "uuid": "{ROOT_UUID}", "stage": "unlocked", "attempts": 1,
      "timings_ms": {{"asked": 120, "answered": 1410}}, "last_error": null,
      "updated_at": 1732395601}},
    {{"name": "home", "uuid": "{HOME_UUID}", "stage": "refused", "attempts": 3,
      "timings_ms": {{"asked": 130, "refused": 2050}},
      "last_error": {{"code": "release-forbidden", "message": "Key Vault refused the release of key other: the release policy was not met; check it with skrctl policy check"}},
      "updated_at": 1732395602}}
  ],
  "attestation": {{"provider": "https://initrd.example/", "source": "vtpm",
    "last_success": 1732395600, "token_expiry": 1732424400, "maa_request_id": "{MAA_ID}",
    "last_error": null}},
  "keys": [
    {{"name": "disk", "url": "{disk_url}", "version": "0123abcd", "cached": false,
      "akv_request_id": "{AKV_ID}", "released_at": 1732395601, "last_error": null}},
    {{"name": "other", "url": "{other_url}", "version": null, "cached": false,
      "akv_request_id": null, "released_at": null,
      "last_error": {{"code": "release-forbidden", "message": "the release policy was not met"}}}}
  ]
}}
"#
    )
}

fn check(st: &State, initrd: &State, daemon_maa: &str) {
    assert_eq!(st.writer, Writer::Daemon);
    assert!(st.finished_at.is_some());
    for name in ["root", "home"] {
        let (now, then) = (st.volume(name).unwrap(), initrd.volume(name).unwrap());
        assert_eq!(now.stage, then.stage, "{name}");
        assert_eq!(now.attempts, then.attempts, "{name}");
        assert_eq!(now.timings_ms, then.timings_ms, "{name}");
        assert_eq!(now.last_error, then.last_error, "{name}");
        assert_eq!(now.uuid, then.uuid, "{name}");
        assert_eq!(now.maa_request_id.as_deref(), Some(MAA_ID), "{name}");
    }
    assert_eq!(st.volume("root").unwrap().stage, Stage::Unlocked);
    assert_eq!(
        st.volume("root").unwrap().akv_request_id.as_deref(),
        Some(AKV_ID)
    );
    assert_eq!(st.volume("home").unwrap().akv_request_id, None);
    let disk = st.key("disk").unwrap();
    assert_eq!(disk.version.as_deref(), Some("0123abcd"));
    assert_eq!(disk.akv_request_id.as_deref(), Some(AKV_ID));
    assert_eq!(disk.released_at, Some(1_732_395_601));
    assert!(!disk.cached);
    assert_eq!(
        st.key("other").unwrap().last_error,
        initrd.key("other").unwrap().last_error
    );
    let a = st.attestation.as_ref().unwrap();
    assert_eq!(a.maa_request_id.as_deref(), Some(daemon_maa));
    assert!(a.last_success.unwrap() > 1_732_395_600);
    assert!(st.has_failure(), "home stays refused");
}

#[test]
fn the_daemon_keeps_what_the_initramfs_recorded() {
    let (env, _tpm, keys) = env_with_keys(&["disk", "other"]);
    let [(disk_url, _), (other_url, _)] = <[_; 2]>::try_from(keys).unwrap();
    env.append_config(&format!(
        "\n[keys.disk]\nurl = \"{disk_url}\"\n\n[keys.other]\nurl = \"{other_url}\"\n\n\
         [volumes.root]\nuuid = \"{ROOT_UUID}\"\nkey = \"disk\"\n\n\
         [volumes.home]\nuuid = \"{HOME_UUID}\"\nkey = \"other\"\n"
    ));
    let work = tempfile::tempdir().unwrap();
    let doc = initrd_document(&disk_url, &other_url);
    let initrd = skrd::format::state::parse(doc.as_bytes()).unwrap();
    std::fs::create_dir_all(work.path().join("run")).unwrap();
    std::fs::write(work.path().join("run/state.json"), &doc).unwrap();

    let bus = Bus::start();
    let skrd = Skrd::start(&env, &bus, work.path());
    skrd.wait_notify("READY=1");
    assert!(
        skrd.log().contains("took over the state file"),
        "{}",
        skrd.log()
    );
    // The daemon's own attestation: the id the emulator sent for it.
    let daemon_maa = env.request_ids("attestation-azureguest", 200);
    assert_eq!(daemon_maa.len(), 1, "{:?}", env.requests());

    let status: String = rt().block_on(async {
        let conn = connect(&bus.address).await;
        call(&conn, "GetStatus", &())
            .await
            .unwrap()
            .body()
            .deserialize()
            .unwrap()
    });
    check(
        &skrd::format::state::parse(status.as_bytes()).unwrap(),
        &initrd,
        &daemon_maa[0],
    );
    check(
        &skrd::format::state::parse(&std::fs::read(&skrd.state_file).unwrap()).unwrap(),
        &initrd,
        &daemon_maa[0],
    );
    assert_eq!(skrd.stop(), 0);
}
