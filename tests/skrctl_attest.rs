//! `skrctl attest` against skr-emulator and a provisioned swtpm: exit statuses, the one JSON
//! object of `--json`, the human summary, and clear errors without an evidence source.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "flow_common.rs"]
mod flow_common;

use flow_common::*;
use serde_json::{json, Value};

#[test]
fn attest_json_and_human() {
    let (env, _tpm) = env_with_swtpm();
    let (code, out, err, _) = skrctl(&env, &["attest", "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["verified"], true);
    assert_eq!(v["error"], Value::Null);
    assert_eq!(v["source"], "vtpm");
    assert_eq!(v["issuer"], env.authority());
    assert_eq!(v["transfer_key"], "TpmEphemeralEncryptionKey");
    assert_eq!(
        v["claims"]["x-ms-isolation-tee"]["x-ms-attestation-type"],
        "sevsnpvm"
    );
    assert_eq!(
        v["claims"]["x-ms-runtime"]["keys"][0]["kid"],
        "TpmEphemeralEncryptionKey"
    );
    assert!(v["timings"]["total_ms"].as_f64().unwrap() > 0.0);
    assert!(v["timings"]["tpm"].as_array().unwrap().len() >= 6);

    let (code, out, err, _) = skrctl(&env, &["attest"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("attested (vtpm) and verified"), "{out}");
    assert!(out.contains("x-ms-isolation-tee: sevsnpvm"), "{out}");
}

#[test]
fn refused_evidence_exits_1() {
    let (env, _tpm) = env_with_swtpm();
    env.faults(&json!({"attestation-azureguest": {"status": 400,
        "body": "{\"error\":{\"code\":\"InvalidParameter\",\"message\":\"quote does not verify\"}}"}}));
    let (code, out, _, _) = skrctl(&env, &["attest", "--json"]);
    assert_eq!(code, 1, "{out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["verified"], false);
    assert_eq!(v["error"]["code"], "attest-refused");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("quote does not verify"));
}

#[test]
fn unusable_setups_exit_2_with_a_clear_error() {
    let env = Env::start("vtpm", Some("swtpm:host=127.0.0.1,port=1"), "");
    // No TPM behind the TCTI.
    let (code, out, _, _) = skrctl(&env, &["attest", "--json"]);
    assert_eq!(code, 2, "{out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["error"]["code"], "tpm-unreachable", "{v}");
    // No /dev/sev-guest on this machine (skip where there is one).
    if !std::path::Path::new("/dev/sev-guest").exists() {
        let (code, out, _, _) = skrctl(&env, &["attest", "--source", "sev-guest", "--json"]);
        assert_eq!(code, 2, "{out}");
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["error"]["code"], "sev-guest-absent", "{v}");
        assert!(v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("/dev/sev-guest"));
    }
}
