//! `skrd` as a service logging to a real `systemd-journald` (started by the test in a private
//! mount namespace, see `daemon_common::JOURNAL_WRAPPER`), against a private `dbus-daemon`,
//! skr-emulator and a provisioned swtpm:
//! - the Azure request ids: `attestation.maa_request_id` and `keys[].akv_request_id` of the state
//!   file equal the `x-ms-request-id`s the emulator sent for those calls (read from the
//!   emulator's admin request log, not from skrd);
//! - the structured journal fields (KEY, STAGE, ERROR_CODE, MAA_REQUEST_ID, AKV_REQUEST_ID,
//!   DECISION, CALLER_UID) on the right entries, sent over journald's native protocol;
//! - the released key appears nowhere in the whole journal (raw, hex, base64, base64url).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "daemon_common/mod.rs"]
mod daemon_common;
#[path = "flow_common.rs"]
mod flow_common;

use daemon_common::*;
use flow_common::*;
use serde_json::json;
use std::collections::BTreeMap;

type Entry = BTreeMap<String, Vec<u8>>;

fn field<'a>(e: &'a Entry, name: &str) -> Option<&'a str> {
    e.get(name).map(|v| std::str::from_utf8(v).unwrap())
}

fn find<'a>(entries: &'a [Entry], message: &str) -> Vec<&'a Entry> {
    entries
        .iter()
        .filter(|e| field(e, "MESSAGE").is_some_and(|m| m.contains(message)))
        .collect()
}

#[test]
fn daemon_logs_structured_fields_and_request_ids_to_a_real_journald() {
    let (env, _tpm, keys) = env_with_keys(&["disk"]);
    let [(disk_url, disk)] = <[_; 1]>::try_from(keys).unwrap();
    env.append_config(&format!(
        "\n[keys.disk]\nurl = \"{disk_url}\"\nallow_uids = [0]\n"
    ));
    let bus = Bus::start();
    let work = tempfile::tempdir().unwrap();
    let journal = Journal::new(work.path());
    let skrd = Skrd::start_with(&env, &bus, work.path(), Some(&journal));
    skrd.wait_notify("READY=1");

    let rt = rt();
    rt.block_on(async {
        let conn = connect(&bus.address).await;
        let got = release(&conn, "disk")
            .await
            .unwrap_or_else(|e| panic!("{e:?}; journal:\n{}", journal.text()));
        assert_eq!(got, disk);
    });
    // A refused attestation: logged with its error code.
    env.faults(
        &json!({"attestation-azureguest": {"status": 400, "times": 1,
        "body": "{\"error\":{\"code\":\"InvalidParameter\",\"message\":\"forced by the test\"}}"}}),
    );
    let reattest_error = rt.block_on(async {
        let conn = connect(&bus.address).await;
        match call(&conn, "Reattest", &()).await {
            Err(zbus::Error::MethodError(name, msg, _)) => format!("{name}: {msg:?}"),
            other => panic!("Reattest succeeded under a 400 fault: {other:?}"),
        }
    });

    // Request ids: what the emulator sent (its admin request log) is what the state file holds.
    let log = env.requests();
    let maa_ok = ids_in(&log, "attestation-azureguest", 200);
    let akv_ok = ids_in(&log, "managed-hsm-release", 200);
    assert_eq!(maa_ok.len(), 1, "{log:?}");
    assert_eq!(akv_ok.len(), 1, "{log:?}");
    assert_eq!(
        ids_in(&log, "attestation-azureguest", 400).len(),
        1,
        "{log:?}"
    );
    for id in maa_ok.iter().chain(&akv_ok) {
        assert!(uuid::Uuid::try_parse(id).is_ok(), "not a UUID: {id}");
    }
    assert_ne!(maa_ok[0], akv_ok[0]);
    let state = skrd::format::state::parse(&std::fs::read(&skrd.state_file).unwrap()).unwrap();
    let att = state.attestation.as_ref().unwrap();
    assert_eq!(att.maa_request_id.as_deref(), Some(maa_ok[0].as_str()));
    assert!(att.last_error.is_some(), "the failed Reattest is recorded");
    assert_eq!(
        state.key("disk").unwrap().akv_request_id.as_deref(),
        Some(akv_ok[0].as_str())
    );

    let pid = skrd.child.id();
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    assert!(
        String::from_utf8_lossy(&environ).contains("JOURNAL_STREAM="),
        "skrd was not started with JOURNAL_STREAM"
    );
    assert_eq!(skrd.stop(), 0);
    let export = journal.stop_and_export();
    let entries = parse_export(&export);
    let ours: Vec<Entry> = entries
        .iter()
        .filter(|e| field(e, "SYSLOG_IDENTIFIER") == Some("skrd"))
        .cloned()
        .collect();
    assert!(!ours.is_empty(), "no skrd entry in the journal");

    let released = find(&ours, "key released and cached");
    assert_eq!(released.len(), 1, "{ours:?}");
    let e = released[0];
    assert_eq!(
        field(e, "_TRANSPORT"),
        Some("journal"),
        "not the native protocol: {e:?}"
    );
    assert_eq!(field(e, "KEY"), Some("disk"));
    assert_eq!(field(e, "STAGE"), Some("released"));
    assert_eq!(field(e, "MAA_REQUEST_ID"), Some(maa_ok[0].as_str()));
    assert_eq!(field(e, "AKV_REQUEST_ID"), Some(akv_ok[0].as_str()));
    assert!(
        e.keys().all(|k| !k.starts_with("F_")),
        "prefixed fields: {e:?}"
    );

    let attested = find(&ours, "attested");
    assert!(
        attested
            .iter()
            .any(|e| field(e, "STAGE") == Some("attested")
                && field(e, "MAA_REQUEST_ID") == Some(maa_ok[0].as_str())),
        "{attested:?}"
    );

    let allowed = find(&ours, "ReleaseKey allowed");
    assert_eq!(allowed.len(), 1, "{ours:?}");
    assert_eq!(field(allowed[0], "KEY"), Some("disk"));
    assert_eq!(field(allowed[0], "DECISION"), Some("allow"));
    assert_eq!(field(allowed[0], "CALLER_UID"), Some("0"));

    // The refused re-attestation: a warning (PRIORITY 4) with its stable error code.
    let failed: Vec<&Entry> = ours
        .iter()
        .filter(|e| field(e, "ERROR_CODE").is_some() && field(e, "STAGE") == Some("attesting"))
        .collect();
    assert_eq!(failed.len(), 1, "{ours:?}");
    let code = field(failed[0], "ERROR_CODE").unwrap();
    assert!(
        reattest_error.contains(code),
        "journal code {code} vs D-Bus error {reattest_error}"
    );
    assert_eq!(field(failed[0], "PRIORITY"), Some("4"));

    // The key: nowhere in the whole journal (every entry, every field, journald's own too).
    assert_no_secret("the journal (export format)", &export, &disk);
}
