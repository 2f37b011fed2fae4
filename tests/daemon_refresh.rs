//! The daemon renews its attestation before the token expires, unasked: skr-emulator issues
//! 12-second attestation and managed-identity tokens (`serve --token-lifetime 12`); the
//! emulator's own request log shows a second (and third) successful attestation with no D-Bus
//! call in between, the state file follows the newest one (its `maa_request_id` is the id the
//! emulator sent for it, its `token_expiry` moves on), and ReleaseKey still works once the first
//! token has expired — for the cached key and for a key released only then.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "daemon_common/mod.rs"]
mod daemon_common;
#[path = "flow_common.rs"]
mod flow_common;

use daemon_common::*;
use flow_common::*;
use std::time::{Duration, Instant};

const LIFETIME_S: u64 = 12;

fn attest_ids(env: &Env) -> Vec<String> {
    env.request_ids("attestation-azureguest", 200)
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn daemon_reattests_before_the_token_expires() {
    let lifetime = LIFETIME_S.to_string();
    let (env, _tpm, keys) = env_with_keys_args(&["disk", "late"], &["--token-lifetime", &lifetime]);
    let [(disk_url, disk), (late_url, late)] = <[_; 2]>::try_from(keys).unwrap();
    let base = std::fs::read_to_string(env.config_path()).unwrap();
    env.append_config(&format!(
        "\n[keys.disk]\nurl = \"{disk_url}\"\nallow_uids = [0]\n\n[keys.late]\nurl = \"{late_url}\"\n"
    ));
    let bus = Bus::start();
    let work = tempfile::tempdir().unwrap();
    let skrd = Skrd::start(&env, &bus, work.path());
    skrd.wait_notify("READY=1");
    let first_attested = now();
    let rt = rt();
    rt.block_on(async {
        let conn = connect(&bus.address).await;
        assert_eq!(release(&conn, "disk").await.unwrap(), disk);
    });
    let first = attest_ids(&env);
    assert_eq!(first.len(), 1, "one attestation at start");
    let st = skrd::format::state::parse(&std::fs::read(&skrd.state_file).unwrap()).unwrap();
    let a = st.attestation.unwrap();
    let first_expiry = a.token_expiry.unwrap();
    assert!(
        first_expiry.abs_diff(first_attested + LIFETIME_S) <= 2,
        "token_expiry {first_expiry} vs attested at {first_attested} + {LIFETIME_S}"
    );
    assert_eq!(a.maa_request_id.as_deref(), Some(first[0].as_str()));

    // Nobody calls: a second attestation must come before the first token expires.
    let t = Instant::now();
    let second = loop {
        let ids = attest_ids(&env);
        if ids.len() >= 2 {
            break ids;
        }
        assert!(
            t.elapsed() < Duration::from_secs(3 * LIFETIME_S),
            "no refresh within {} s; log: {}",
            3 * LIFETIME_S,
            skrd.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        now() <= first_expiry,
        "the refresh came after the first token expired ({} > {first_expiry})",
        now()
    );
    assert!(skrd.log().contains("attested"), "{}", skrd.log());

    // Past the first token's expiry: the key service still works, also for a release that
    // needs a fresh attestation (late was not cached; allowed now through SIGHUP).
    while now() <= first_expiry + 1 {
        std::thread::sleep(Duration::from_millis(200));
    }
    std::fs::write(
        env.config_path(),
        format!(
            "{base}\n[keys.disk]\nurl = \"{disk_url}\"\nallow_uids = [0]\n\n[keys.late]\nurl = \"{late_url}\"\nallow_uids = [0]\n"
        ),
    )
    .unwrap();
    skrd.signal(libc::SIGHUP);
    skrd.wait_notify("READY=1");
    rt.block_on(async {
        let conn = connect(&bus.address).await;
        assert_eq!(release(&conn, "disk").await.unwrap(), disk);
        assert_eq!(release(&conn, "late").await.unwrap(), late);
    });
    // State first, then the emulator's log: a refresh in between only adds to the log.
    let st = skrd::format::state::parse(&std::fs::read(&skrd.state_file).unwrap()).unwrap();
    let ids = attest_ids(&env);
    assert!(ids.len() >= 3, "{ids:?}");
    let a = st.attestation.unwrap();
    assert!(a.token_expiry.unwrap() > first_expiry);
    let id = a.maa_request_id.unwrap();
    assert!(ids.contains(&id) && id != first[0], "{id} vs {ids:?}");
    assert_ne!(second[1], first[0]);
    assert_eq!(skrd.stop(), 0);
}
