//! The raw SEV-SNP flow end to end against skr-emulator, through the library API with the
//! emulator's test firmware (the production binaries only ever open /dev/sev-guest): an
//! in-memory transfer key, REPORT_DATA binding, VCEK chain from THIM, `SevSnpVm`, token
//! verification with the provider's keys, release of every key type with every `enc` mode from
//! Key Vault and Managed HSM, unwrap in memory; refusals; forged evidence.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "flow_common.rs"]
mod flow_common;

use flow_common::*;
use skrd::attest::error::FlowError;
use skrd::emulator::amd_chain::{TestAmdChain, TestTcb};
use skrd::emulator::firmware::TestFirmware;
use skrd::error::ErrorCode;
use skrd::format::jose::release::WrapAlgorithm;
use skrd::net::Deadline;
use std::time::Duration;

#[test]
fn one_attestation_releases_every_key_type_and_enc_mode() {
    let env = Env::start("sev-guest", None, "");
    let p = policy(&env.authority(), "x-ms-attestation-type", "sevsnpvm");
    let wanted = import_all(
        &env,
        &p,
        &[
            (
                "rsa3072",
                KeyType::Rsa(3072),
                WrapAlgorithm::RsaAesKeyWrap384,
                "RSA-HSM",
            ),
            (
                "rsa4096",
                KeyType::Rsa(4096),
                WrapAlgorithm::CkmRsaAesKeyWrap,
                "RSA-HSM",
            ),
            (
                "ec256",
                KeyType::Ec("P-256"),
                WrapAlgorithm::RsaAesKeyWrap256,
                "EC-HSM",
            ),
            (
                "ec384",
                KeyType::Ec("P-384"),
                WrapAlgorithm::CkmRsaAesKeyWrap,
                "EC-HSM",
            ),
            (
                "ec521",
                KeyType::Ec("P-521"),
                WrapAlgorithm::RsaAesKeyWrap384,
                "EC-HSM",
            ),
            (
                "oct256",
                KeyType::Oct256,
                WrapAlgorithm::RsaAesKeyWrap384,
                "oct-HSM",
            ),
            // RSA and EC keys on the Managed HSM too, not only oct.
            (
                "mhsm-rsa",
                KeyType::MhsmRsa(2048),
                WrapAlgorithm::CkmRsaAesKeyWrap,
                "RSA-HSM",
            ),
            (
                "mhsm-ec",
                KeyType::MhsmEc("P-521"),
                WrapAlgorithm::RsaAesKeyWrap256,
                "EC-HSM",
            ),
        ],
    );
    // The set-up's own calls (identity tokens for the imports) are not the run's.
    env.reset_counters();
    let services = env.services();
    let requests: Vec<_> = wanted.iter().map(|(r, _, _)| r.clone()).collect();
    let deadline = Deadline::after(Duration::from_secs(120));
    let out = block_on(skrd::release::run(
        &services,
        test_firmware_source(&env),
        &requests,
        &roots(&env),
        &deadline,
    ))
    .unwrap();
    assert_eq!(out.attestation.claims["x-ms-attestation-type"], "sevsnpvm");
    check_released(&out.keys, &wanted);
    // One attestation for all eleven keys; the run reports every step.
    let c = env.counters();
    assert_eq!(c["attestation-sevsnpvm"], 1, "{c}");
    assert_eq!(c["thim"], 1, "{c}");
    // One identity token per audience for the whole run: Key Vault's and the Managed HSM's
    // (the emulator checks `aud`, so each audience needed at least its own).
    assert_eq!(c["imds-token"], 2, "{c}");
    assert_eq!(c["vault-release"], 8, "{c}");
    // Each Managed HSM key released once. (The emulator's HSM is a loopback host, not
    // *.managedhsm.azure.net: its first call carries the Key Vault token and is answered by a
    // 401 challenge naming the HSM's resource, src/identity/vault.rs; Azure hosts never are.)
    assert_eq!(env.answered("managed-hsm-release", 200), 3, "{c}");
    assert_eq!(out.report.keys_released, wanted.len());
    let steps: Vec<&str> = out.report.http.iter().map(|h| h.step.as_str()).collect();
    for s in ["thim", "attest", "imds-token", "key-release", "jwks"] {
        assert!(steps.contains(&s), "{steps:?}");
    }
    assert!(out.report.tpm.is_empty());
}

#[test]
fn policy_denial_names_the_unmet_condition() {
    let env = Env::start("sev-guest", None, "");
    let p = policy(&env.authority(), "x-ms-sevsnpvm-is-debuggable", "true");
    let (url, _) = env.import("denied", KeyType::Rsa(2048), &p);
    let services = env.services();
    let err = block_on(skrd::release::run(
        &services,
        test_firmware_source(&env),
        &[key_request(&url, WrapAlgorithm::RsaAesKeyWrap256)],
        &roots(&env),
        &Deadline::after(Duration::from_secs(60)),
    ))
    .unwrap_err();
    assert_eq!(err.code(), "release-forbidden", "{err}");
    assert!(err.is_refusal());
    match &err {
        FlowError::ReleaseRefused { azure, unmet, .. } => {
            assert_eq!(azure.status, 403);
            assert_eq!(unmet.len(), 1, "{unmet:?}");
            assert!(
                unmet[0].contains("x-ms-sevsnpvm-is-debuggable"),
                "{unmet:?}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn forged_evidence_is_refused_by_the_provider() {
    let env = Env::start("sev-guest", None, "");
    // A chain the emulator does not trust (another ARK): the report verifies against its own
    // VCEK, but that VCEK does not chain to a trusted root.
    let other = tempfile::tempdir().unwrap();
    let forged = TestAmdChain::generate(other.path(), TestTcb::default()).unwrap();
    let source = skrd::attest::collect::Source::SevGuest(skrd::attest::collect::SevGuestSource {
        firmware: Box::new(TestFirmware::new(forged)),
        vcek_chain_pem: Some(std::fs::read(other.path().join("cert-chain.pem")).unwrap()),
        transfer_key_bits: 2048,
    });
    let services = env.services();
    let err = block_on(skrd::release::run(
        &services,
        source,
        &[],
        &[],
        &Deadline::after(Duration::from_secs(60)),
    ))
    .unwrap_err();
    assert_eq!(err.code(), "attest-refused", "{err}");
    assert!(err.is_refusal());
    // The provider says why: the chain does not end at a trusted ARK.
    let text = err.to_string();
    assert!(text.contains("InvalidParameter"), "{text}");
    assert!(text.to_lowercase().contains("ark"), "{text}");
}

#[test]
fn a_bare_403_is_explained_from_the_keys_policy() {
    // Real Key Vault does not say which condition failed: skrd reads the key's release policy
    // (GET key) and evaluates it against the token itself.
    let env = Env::start("sev-guest", None, "");
    let p = policy(&env.authority(), "x-ms-sevsnpvm-is-debuggable", "true");
    let (url, _) = env.import("denied", KeyType::Rsa(2048), &p);
    env.faults(&serde_json::json!({"vault-release": {"status": 403,
        "body": "{\"error\":{\"code\":\"Forbidden\",\"message\":\"Access denied\"}}"}}));
    let services = env.services();
    let err = block_on(skrd::release::run(
        &services,
        test_firmware_source(&env),
        &[key_request(&url, WrapAlgorithm::RsaAesKeyWrap256)],
        &roots(&env),
        &Deadline::after(Duration::from_secs(60)),
    ))
    .unwrap_err();
    match &err {
        FlowError::ReleaseRefused { azure, unmet, .. } => {
            assert_eq!(azure.message, "Access denied");
            assert_eq!(unmet.len(), 1, "{unmet:?}");
            assert!(
                unmet[0].starts_with("x-ms-sevsnpvm-is-debuggable"),
                "{unmet:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(env.counters()["vault-get"], 1);
}

#[test]
fn a_replayed_token_is_refused_by_the_binding_checks() {
    // A genuine token of an earlier attestation, served again by a man in the middle (the
    // emulator's fault table stands in for it): signature, issuer and lifetime verify, but the
    // nonce and the transfer key are not this run's.
    let env = Env::start("sev-guest", None, "");
    let services = env.services();
    let first = block_on(skrd::release::run(
        &services,
        test_firmware_source(&env),
        &[],
        &[],
        &Deadline::after(Duration::from_secs(60)),
    ))
    .unwrap();
    let body = serde_json::json!({"token": first.attestation.token()}).to_string();
    env.faults(&serde_json::json!({"attestation-sevsnpvm": {"status": 200, "body": body}}));
    let err = block_on(skrd::release::run(
        &env.services(),
        test_firmware_source(&env),
        &[],
        &[],
        &Deadline::after(Duration::from_secs(60)),
    ))
    .unwrap_err();
    assert_eq!(err.code(), "attest-nonce-mismatch", "{err}");
    assert!(err.is_refusal());
}
