//! The daemon's runs under failures and contention, with skr-emulator's fault injection and its
//! per-endpoint request counters as the witness:
//! - the initial work fails (the attestation endpoint answers 503): READY=1 comes with a
//!   STATUS= line that names the failure and its code, never a plain "ready";
//! - 20 concurrent ReleaseKey callers of a key that is not cached share one attestation and
//!   one release; when that release is refused (403), they all get the refusal from that one
//!   run (the emulator's counters and request log are the witness);
//! - a daemon volume whose key failed at start (the managed HSM's release endpoint answers 503)
//!   gets its passphrase on the key socket once the fault is gone, without a restart: the key
//!   socket request itself releases the key;
//! - SIGHUP adding a daemon volume binds the key socket and serves it; its key, failing first,
//!   is released by the retry timer alone (no request), and the passphrase is the HKDF computed
//!   independently (python3 `cryptography`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "daemon_common/mod.rs"]
mod daemon_common;
#[path = "flow_common.rs"]
mod flow_common;
mod volume_common;

use daemon_common::*;
use serde_json::json;
use skrd::format::state::{Stage, State};
use std::time::{Duration, Instant};
use volume_common::python_passphrase;

const DATA_UUID: &str = "3f1e2d4c-5b6a-4798-8a1b-2c3d4e5f6a7b";
const LOGS_UUID: &str = "0b5d1c2e-8d1f-4b7a-9d0e-5c1f2a3b4c5d";

fn state(skrd: &Skrd) -> State {
    skrd::format::state::parse(&std::fs::read(&skrd.state_file).unwrap()).unwrap()
}

/// Polls the state file until `cond` holds (generous bound: this waits for back-off timers).
fn wait_state(skrd: &Skrd, what: &str, cond: impl Fn(&State) -> bool) -> State {
    let t = Instant::now();
    loop {
        let st = state(skrd);
        if cond(&st) {
            return st;
        }
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "{what}: {st:?}\nlog: {}",
            skrd.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What the retry timer logs when its run failed.
const TIMER_FAILED: &str = "releasing the keys still needed failed";

const ON_DEMAND: &str = "key not cached: releasing it for the key socket request";

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
    let ready = skrd.wait_notify_message("READY=1");
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
    // late and third become requestable, uncached. The reload makes the retry timer release
    // them at once; under a refusal that fails, and the timer backs off (5 s, then 10 s). Once
    // it failed twice, the next timer run is 9 s or more away: the counts below are the
    // callers' alone.
    env.faults(&json!({"managed-hsm-release": {"status": 403}}));
    std::fs::write(env.config_path(), config(true)).unwrap();
    skrd.signal(libc::SIGHUP);
    skrd.wait_notify("READY=1");
    let t = Instant::now();
    while skrd.log().matches(TIMER_FAILED).count() < 2 {
        assert!(t.elapsed() < Duration::from_secs(120), "{}", skrd.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    env.faults(&json!({}));

    reset_counters(&env);
    for r in burst(&bus.address, "late", 20) {
        assert_eq!(r.unwrap(), late);
    }
    // One attestation, one successful release (the emulator's vault is not an Azure host
    // name, so each release first meets a 401 challenge naming the token resource).
    assert_eq!(
        (
            count(&env, "attestation-azureguest"),
            env.answered("managed-hsm-release", 200)
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

#[test]
fn a_volume_whose_key_failed_at_start_is_served_later_without_a_restart() {
    let (env, _tpm, keys) = env_with_keys(&["disk"]);
    let [(disk_url, disk)] = <[_; 1]>::try_from(keys).unwrap();
    env.append_config(&format!(
        "\n[keys.disk]\nurl = \"{disk_url}\"\n\n\
         [volumes.data]\nuuid = \"{DATA_UUID}\"\nkey = \"disk\"\noptions = {{ initrd = false }}\n"
    ));
    env.faults(&json!({"managed-hsm-release": {"status": 503}}));
    let bus = Bus::start();
    let work = tempfile::tempdir().unwrap();
    let skrd = Skrd::start(&env, &bus, work.path());
    let ready = skrd.wait_notify_message("READY=1");
    assert!(
        ready.contains("STATUS=ready with failures: key disk not released ("),
        "{ready}"
    );
    let st = state(&skrd);
    let v = st.volume("data").unwrap();
    assert_eq!((v.stage, v.attempts), (Stage::Failed, 1), "{v:?}");
    // The release error is the key's, not the attestation's.
    assert!(st.key("disk").unwrap().last_error.is_some(), "{st:?}");
    assert!(
        st.attestation.as_ref().unwrap().last_error.is_none(),
        "{st:?}"
    );

    // Asked while the fault lasts: the request releases anew (the emulator sees it), still
    // no data.
    let sock = work.path().join("luks.sock");
    let before = env.counters()["managed-hsm-release"].as_u64().unwrap();
    assert!(ask(&sock, Some("aa/cryptsetup/data")).is_empty());
    assert!(env.counters()["managed-hsm-release"].as_u64().unwrap() > before);
    let v = state(&skrd).volume("data").unwrap().clone();
    assert_eq!((v.stage, v.attempts), (Stage::Failed, 2), "{v:?}");
    assert!(skrd.log().contains(ON_DEMAND), "{}", skrd.log());

    // The fault is gone: the next request gets the passphrase, same process.
    env.faults(&json!({}));
    let pass = ask(&sock, Some("ab/cryptsetup/data"));
    assert_eq!(pass, python_passphrase(&disk, DATA_UUID), "{}", skrd.log());
    let st = state(&skrd);
    let v = st.volume("data").unwrap();
    assert_eq!((v.stage, v.attempts), (Stage::Unlocking, 3), "{v:?}");
    assert!(v.last_error.is_none());
    assert!(st.key("disk").unwrap().cached);
    let mut skrd = skrd;
    assert!(skrd.child.try_wait().unwrap().is_none(), "skrd restarted");
    assert_eq!(skrd.stop(), 0);
}

#[test]
fn sighup_adding_a_daemon_volume_serves_it_and_the_retry_timer_releases_its_key() {
    let (env, _tpm, keys) = env_with_keys(&["disk", "other"]);
    let [(disk_url, _), (other_url, other)] = <[_; 2]>::try_from(keys).unwrap();
    let base = std::fs::read_to_string(env.config_path()).unwrap();
    env.append_config(&format!(
        "\n[keys.disk]\nurl = \"{disk_url}\"\nallow_uids = [0]\n"
    ));
    let bus = Bus::start();
    let work = tempfile::tempdir().unwrap();
    let skrd = Skrd::start(&env, &bus, work.path());
    skrd.wait_notify("READY=1");
    // No volume is the daemon's: no key socket.
    let sock = work.path().join("luks.sock");
    assert!(!sock.exists());

    env.faults(&json!({"managed-hsm-release": {"status": 503}}));
    std::fs::write(
        env.config_path(),
        format!(
            "{base}\n[keys.disk]\nurl = \"{disk_url}\"\nallow_uids = [0]\n\n\
             [keys.other]\nurl = \"{other_url}\"\n\n\
             [volumes.logs]\nuuid = \"{LOGS_UUID}\"\nkey = \"other\"\noptions = {{ initrd = false }}\n"
        ),
    )
    .unwrap();
    skrd.signal(libc::SIGHUP);
    skrd.wait_notify("READY=1");
    assert!(
        sock.exists(),
        "the reload bound no key socket: {}",
        skrd.log()
    );
    // The reload starts a release of the new volume's key at once; it fails under the fault.
    wait_state(&skrd, "the new key's release failed", |st| {
        st.key("other").is_some_and(|k| k.last_error.is_some())
    });
    env.faults(&json!({}));
    // Nobody asks: the retry timer releases it (first retry after about 5 s).
    let st = wait_state(&skrd, "the retry timer released the key", |st| {
        st.key("other").is_some_and(|k| k.cached)
    });
    assert_eq!(st.volume("logs").unwrap().stage, Stage::Pending, "{st:?}");
    assert!(st.key("other").unwrap().last_error.is_none());
    assert!(!skrd.log().contains(ON_DEMAND), "{}", skrd.log());
    let pass = ask(&sock, Some("ac/cryptsetup/logs"));
    assert_eq!(pass, python_passphrase(&other, LOGS_UUID), "{}", skrd.log());
    assert_eq!(state(&skrd).volume("logs").unwrap().stage, Stage::Unlocking);
    assert_eq!(skrd.stop(), 0);
}
