//! The evidence skrd collects (vTPM through swtpm, raw SNP through the sev-guest trait) passes
//! skrd's own verifiers end to end, and fails them when one byte changes.
//!
//! The producer side is the emulator's test SEV-SNP platform (`skrd::emulator`), the consumer side
//! the pure verifiers (`skrd::format::snp`, `skrd::format::hcl`), written independently of each
//! other; both were checked separately against real AMD/Azure artifacts and independent tools
//! (tests/snp_fixtures.rs, tests/hcl_fixtures.rs, tests/vtpm.rs, tests/sev_guest.rs). This file
//! proves they agree with each other, which is what the emulator issue builds on.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use base64::Engine as _;
use common::swtpm::Swtpm;
use rsa::traits::PublicKeyParts;
use skrd::emulator::amd_chain::TestAmdChain;
use skrd::emulator::firmware::TestFirmware;
use skrd::emulator::provision;
use skrd::error::ErrorCode;
use skrd::evidence::{
    collect, CollectRequest, Evidence, EvidenceSource, SevGuestSource, SourceConfig,
    SourceSelection,
};
use skrd::format::hcl::HclReport;
use skrd::format::snp::{self, AmdCert, Report, TrustStore};

/// A moment inside the test chain's validity.
fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Built-in AMD roots plus the emulator's test ARK, trusted explicitly.
fn trust_with_test_ark(chain: &TestAmdChain) -> TrustStore {
    let mut trust = TrustStore::with_builtin_roots().unwrap();
    trust
        .trust_ark(AmdCert::from_der(&chain.ark_der).unwrap())
        .unwrap();
    trust
}

fn supplied(chain: &TestAmdChain) -> Vec<AmdCert> {
    [&chain.vcek_der, &chain.ask_der]
        .iter()
        .map(|der| AmdCert::from_der(der).unwrap())
        .collect()
}

#[test]
fn vtpm_evidence_from_swtpm_verifies_and_binds_the_ak() {
    let tpm = Swtpm::start();
    let state = common::fresh_state_dir();
    provision::provision_tpm(&tpm.tcti(), state.path(), None).unwrap();
    let chain = TestAmdChain::load(state.path()).unwrap();

    let request = CollectRequest::for_runtime_data(b"");
    let evidence = collect(
        SourceSelection::Auto,
        &SourceConfig::with_tcti(&tpm.tcti()),
        &request,
    )
    .unwrap();
    let Evidence::Vtpm(e) = evidence else {
        panic!("auto must pick the vTPM when the HCL report index exists");
    };

    let hcl = HclReport::parse(&e.hcl_report).unwrap();
    hcl.check_binding().unwrap();
    let report = Report::parse(hcl.snp_report_bytes()).unwrap();
    let verified = snp::verify_report(
        &report,
        &supplied(&chain),
        &trust_with_test_ark(&chain),
        now(),
    )
    .unwrap();
    assert_eq!(verified.product, snp::Generation::Genoa);

    // HCLAkPub in the runtime data is the AK the TPM holds at 0x81000003.
    let ak = hcl.runtime_data().ak_pub().expect("HCLAkPub");
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    assert_eq!(
        b64.decode(ak.n.as_deref().unwrap()).unwrap(),
        e.ak_public.modulus
    );

    // Without the explicit test root the same evidence is not trusted.
    let err = snp::verify_report(
        &report,
        &supplied(&chain),
        &TrustStore::with_builtin_roots().unwrap(),
        now(),
    )
    .unwrap_err();
    assert!(
        ["ark-not-trusted", "cert-signature-invalid"].contains(&err.code()),
        "{err}"
    );
    // The exponent in the runtime data is the AK's too (65537 = AQAB).
    let e_bytes = b64.decode(ak.e.as_deref().unwrap()).unwrap();
    let key = rsa::RsaPublicKey::new(
        rsa::BigUint::from_bytes_be(&e.ak_public.modulus),
        rsa::BigUint::from_bytes_be(&e_bytes),
    )
    .unwrap();
    assert_eq!(key.e(), &rsa::BigUint::from(e.ak_public.exponent));
    assert_eq!(key.size(), 256);
}

#[test]
fn raw_snp_evidence_binds_runtime_data_and_carries_its_chain() {
    let dir = common::fresh_state_dir();
    let chain = TestAmdChain::load(dir.path()).unwrap();
    let trust = trust_with_test_ark(&chain);
    let mut source =
        SevGuestSource::new(TestFirmware::new(TestAmdChain::load(dir.path()).unwrap()));
    let runtime_data = br#"{"keys":[{"kid":"transfer","kty":"RSA"}]}"#;
    let mut request = CollectRequest::for_runtime_data(runtime_data);
    request.extended = true;
    let Evidence::SevGuest(e) = source.collect(&request).unwrap() else {
        panic!("a sev-guest source yields SNP evidence");
    };

    let report = Report::parse(&e.report).unwrap();
    snp::check_report_data_binding(&report, runtime_data).unwrap();
    // The certificates come only from the extended report's table.
    let table = e
        .cert_table
        .expect("extended report carries a certificate table");
    let certs = snp::parse_certs(&table).unwrap();
    snp::verify_report(&report, &certs, &trust, now()).unwrap();

    // Other runtime data is not bound.
    let err = snp::check_report_data_binding(&report, b"{}").unwrap_err();
    assert_eq!(err.code(), "report-data-mismatch");
    // One flipped bit in the signed body breaks the signature.
    let mut tampered = e.report.clone();
    tampered[0x90] ^= 1; // MEASUREMENT
    let err =
        snp::verify_report(&Report::parse(&tampered).unwrap(), &certs, &trust, now()).unwrap_err();
    assert_eq!(err.code(), "report-signature-invalid");
}
