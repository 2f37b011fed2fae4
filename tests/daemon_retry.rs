//! The daemon when its initial work fails (skr-emulator's fault injection: the attestation
//! endpoint answers 503 until the test clears the fault): READY=1 comes with a STATUS= line
//! that names the failure and its code, never a plain "ready".
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "daemon_common/mod.rs"]
mod daemon_common;
#[path = "flow_common.rs"]
mod flow_common;

use daemon_common::*;
use serde_json::json;

#[test]
fn a_failed_initial_attestation_is_reported_in_the_ready_status() {
    let (env, _tpm, keys) = env_with_keys(&["disk"]);
    let [(disk_url, _disk)] = <[_; 1]>::try_from(keys).unwrap();
    env.append_config(&format!(
        "\n[keys.disk]\nurl = \"{disk_url}\"\nallow_uids = [0]\n"
    ));
    env.faults(&json!({"attestation-azureguest": {"status": 503}}));
    let bus = Bus::start();
    let work = tempfile::tempdir().unwrap();
    let skrd = Skrd::start(&env, &bus, work.path());
    let seen = skrd.wait_notify("READY=1");
    let ready = seen
        .iter()
        .find(|m| m.lines().any(|l| l == "READY=1"))
        .unwrap();
    let status = ready
        .lines()
        .find_map(|l| l.strip_prefix("STATUS="))
        .unwrap_or_else(|| panic!("no STATUS with READY=1: {ready:?}"));
    assert!(
        status.starts_with("ready with failures: attestation failed (net-retries-exhausted)"),
        "{status}; log: {}",
        skrd.log()
    );
    assert_eq!(skrd.stop(), 0);
}
