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

/// `[evidence] source = "auto"` (src/attest/open.rs): a vTPM holding an HCL report is chosen
/// (AzureGuest), through the binary.
#[test]
fn auto_picks_the_vtpm_when_it_holds_an_hcl_report() {
    let tpm = Swtpm::start();
    let env = Env::start("auto", Some(&tpm.tcti()), "");
    skrd::emulator::provision::provision_tpm(&tpm.tcti(), env.state.path(), None).unwrap();
    let (code, out, err, _) = skrctl(&env, &["attest", "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["source"], "vtpm");
    assert_eq!(v["claims"]["x-ms-attestation-type"], "azurevm");
    assert_eq!(env.counters()["attestation-azureguest"], 1);
}

/// `auto` with a TPM that holds no HCL report (not an Azure CVM), or no TPM at all, and no
/// /dev/sev-guest: one clear error naming both reasons (`no-evidence-source`, exit 2). Where
/// the machine has /dev/sev-guest, `auto` picks it instead (checked through the library, as the
/// emulator does not trust a real chip's reports).
#[test]
fn auto_without_a_source_is_a_clear_error() {
    use skrd::config::EvidenceSource;
    use skrd::error::ErrorCode;
    let has_sev_guest = std::path::Path::new("/dev/sev-guest").exists();
    let bare = Swtpm::start(); // manufactured, never provisioned: no NV 0x01400001
    for (tcti, vtpm_reason) in [
        (bare.tcti(), "0x01400001"),
        (
            "swtpm:host=127.0.0.1,port=1".to_string(),
            "swtpm:host=127.0.0.1,port=1",
        ),
    ] {
        let env = Env::start("auto", Some(&tcti), "");
        env.reset_counters();
        let opened = skrd::attest::open::open_source(&env.settings(), EvidenceSource::Auto);
        if has_sev_guest {
            assert_eq!(opened.unwrap().name(), "sev-guest");
            continue;
        }
        let e = opened.unwrap_err();
        assert_eq!(e.code(), "no-evidence-source", "{e}");
        let (code, out, _, _) = skrctl(&env, &["attest", "--json"]);
        assert_eq!(code, 2, "{out}");
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["error"]["code"], "no-evidence-source", "{v}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains(vtpm_reason), "{message}");
        assert!(message.contains("/dev/sev-guest"), "{message}");
        assert!(message.contains("confidential VM"), "{message}");
        // Nothing was sent anywhere.
        assert_eq!(
            env.counters().as_object().unwrap().len(),
            0,
            "{}",
            env.counters()
        );
    }
}
