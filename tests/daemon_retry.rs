//! The daemon's runs under failures and contention, with skr-emulator's fault injection and its
//! per-endpoint request counters as the witness:
//! - the initial work fails (the attestation endpoint answers 503): READY=1 comes with a
//!   STATUS= line that names the failure and its code, never a plain "ready";
//! - 20 concurrent ReleaseKey callers of a key that is not cached share one attestation and
//!   one release; when that release is refused (403), they all get the refusal from that one
//!   run.
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

fn reset_counters(env: &flow_common::Env) {
    let r = reqwest::blocking::Client::new()
        .post(format!("{}/counters/reset", env.emu.url("admin")))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
}

fn count(env: &flow_common::Env, endpoint: &str) -> u64 {
    env.counters()[endpoint].as_u64().unwrap_or(0)
}

/// How many answers with `status` the emulator sent for `endpoint` (its request log).
fn answers(env: &flow_common::Env, endpoint: &str, status: u64) -> usize {
    let log: Vec<serde_json::Value> = reqwest::blocking::Client::new()
        .get(format!("{}/requests", env.emu.url("admin")))
        .send()
        .unwrap()
        .json()
        .unwrap();
    log.iter()
        .filter(|r| r["endpoint"] == endpoint && r["status"] == status)
        .count()
}

/// `n` concurrent ReleaseKey(name) calls, each on its own connection.
fn burst(address: &str, name: &str, n: usize) -> Vec<Result<Vec<u8>, (String, String)>> {
    rt().block_on(async {
        let tasks: Vec<_> = (0..n)
            .map(|_| {
                let (address, name) = (address.to_string(), name.to_string());
                tokio::spawn(async move {
                    let c = connect(&address).await;
                    release(&c, &name).await
                })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    })
}

#[test]
fn concurrent_callers_of_an_uncached_key_share_one_run() {
    let (env, _tpm, keys) = env_with_keys(&["disk", "late", "third"]);
    let [(disk_url, _), (late_url, late), (third_url, _)] = <[_; 3]>::try_from(keys).unwrap();
    let base = std::fs::read_to_string(env.config_path()).unwrap();
    let config = |allowed: bool| {
        let acl = if allowed { "allow_uids = [0]\n" } else { "" };
        format!(
            "{base}\n[keys.disk]\nurl = \"{disk_url}\"\nallow_uids = [0]\n\n\
             [keys.late]\nurl = \"{late_url}\"\n{acl}\n[keys.third]\nurl = \"{third_url}\"\n{acl}"
        )
    };
    std::fs::write(env.config_path(), config(false)).unwrap();
    let bus = Bus::start();
    let work = tempfile::tempdir().unwrap();
    let skrd = Skrd::start(&env, &bus, work.path());
    skrd.wait_notify("READY=1");
    // late and third become requestable, uncached.
    std::fs::write(env.config_path(), config(true)).unwrap();
    skrd.signal(libc::SIGHUP);
    skrd.wait_notify("READY=1");

    reset_counters(&env);
    for r in burst(&bus.address, "late", 20) {
        assert_eq!(r.unwrap(), late);
    }
    // One attestation, one successful release (the emulator's vault is not an Azure host
    // name, so each release first meets a 401 challenge naming the token resource).
    assert_eq!(
        (
            count(&env, "attestation-azureguest"),
            answers(&env, "managed-hsm-release", 200)
        ),
        (1, 1),
        "{}; log: {}",
        env.counters(),
        skrd.log()
    );

    // Refused: the one run's refusal is every caller's answer. What one run costs the
    // emulator under this fault is measured with one caller first.
    env.faults(&json!({"managed-hsm-release": {"status": 403}}));
    let refused = |r: Result<Vec<u8>, (String, String)>| {
        let (name, msg) = r.unwrap_err();
        assert_eq!(name, "org.skrd.KeyRelease1.Error.ReleaseFailed", "{msg}");
        assert!(msg.contains("releasing key \"third\" failed"), "{msg}");
    };
    reset_counters(&env);
    burst(&bus.address, "third", 1)
        .into_iter()
        .for_each(refused);
    let one_run = (
        count(&env, "attestation-azureguest"),
        count(&env, "managed-hsm-release"),
    );
    assert_eq!(one_run.0, 1, "{}", env.counters());
    reset_counters(&env);
    burst(&bus.address, "third", 20)
        .into_iter()
        .for_each(refused);
    assert_eq!(
        (
            count(&env, "attestation-azureguest"),
            count(&env, "managed-hsm-release")
        ),
        one_run,
        "{}; log: {}",
        env.counters(),
        skrd.log()
    );
    assert_eq!(skrd.stop(), 0);
}
