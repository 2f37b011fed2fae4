//! Provisions a running swtpm like an Azure CVM's vTPM (PROTOCOLS.md §4.1-§4.4):
//! - AK: RSA-2048 restricted signing key (RSASSA-SHA256), a primary of the owner hierarchy,
//!   persisted at 0x81000003 (kept when already there);
//! - AK certificate (X.509 DER by the "skr-emulator AK CA") at NV 0x01C101D0;
//! - HCL report (2048 bytes, swtpm's NV maximum) at NV 0x01400001: the test firmware's SNP report
//!   whose REPORT_DATA = SHA-256(variable data) || 0, the variable data carrying the AK public
//!   key, the VM configuration and the user data of NV 0x01400002.
//!
//! Idempotent: indices are defined when absent (or re-defined at a new size), the HCL report is
//! re-signed on every run. [`refresh_hcl_report`] re-signs after user data was written.

use std::path::{Path, PathBuf};

use rand_core::{OsRng, RngCore};
use tss_esapi::attributes::ObjectAttributesBuilder;
use tss_esapi::handles::{ObjectHandle, PersistentTpmHandle};
use tss_esapi::interface_types::algorithm::{HashingAlgorithm, PublicAlgorithm};
use tss_esapi::interface_types::dynamic_handles::Persistent;
use tss_esapi::interface_types::key_bits::RsaKeyBits;
use tss_esapi::interface_types::resource_handles::{Hierarchy, Provision};
use tss_esapi::interface_types::session_handles::AuthSession;
use tss_esapi::structures::{
    HashScheme, Public, PublicBuilder, PublicKeyRsa, PublicRsaParametersBuilder, RsaExponent,
    RsaScheme, SymmetricDefinitionObject,
};

use super::ak_ca::{AkCa, AK_CA_PEM};
use super::amd_chain::{self, write_atomic, TestAmdChain};
use super::firmware::TestFirmware;
use super::hcl::{self, VarDataInputs, HCL_NV_SIZE};
use super::EmulatorError;
use crate::evidence::vtpm::{
    Vtpm, VtpmError, VtpmSession, AK_CERT_NV_INDEX, AK_HANDLE, HCL_REPORT_NV_INDEX,
    USER_DATA_NV_INDEX,
};
use crate::format::hcl::{report_data_for, HashType};

const VM_ID_FILE: &str = "vm-unique-id";

/// What provisioning wrote (printed by `skr-emulator provision-tpm` as one JSON line).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Provisioned {
    /// The TCTI provisioned.
    pub tcti: String,
    /// The state directory.
    pub state_dir: PathBuf,
    /// Test ARK certificate (PEM).
    pub ark_pem: PathBuf,
    /// Test ASK certificate (PEM).
    pub ask_pem: PathBuf,
    /// Test VCEK certificate (PEM).
    pub vcek_pem: PathBuf,
    /// ASK then ARK (PEM), like THIM's `certificateChain`.
    pub cert_chain_pem: PathBuf,
    /// The AK CA certificate (PEM).
    pub ak_ca_pem: PathBuf,
    /// Persistent handle of the AK.
    pub ak_handle: String,
    /// Whether the AK was created by this run (false: it was already persisted).
    pub ak_created: bool,
    /// NV index of the AK certificate.
    pub ak_cert_nv_index: String,
    /// NV index of the HCL report.
    pub hcl_report_nv_index: String,
    /// NV index of the user data.
    pub user_data_nv_index: String,
    /// The HCL report details.
    pub hcl: HclRefresh,
}

/// What a (re)signed HCL report contains.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HclRefresh {
    /// Size of the NV index (bytes).
    pub hcl_report_size: usize,
    /// Length of the variable data.
    pub var_data_len: usize,
    /// REPORT_DATA of the inner SNP report (hex).
    pub report_data: String,
    /// User data bound into the variable data (hex).
    pub user_data: String,
    /// `vmUniqueId`.
    pub vm_unique_id: String,
}

fn hex_handle(h: u32) -> String {
    format!("0x{h:08X}")
}

/// Connects to `tcti` and provisions it (see the module docs).
pub fn provision_tpm(
    tcti: &str,
    state_dir: &Path,
    user_data: Option<[u8; 64]>,
) -> Result<Provisioned, EmulatorError> {
    let vtpm = Vtpm::open(tcti)?;
    provision_vtpm(&vtpm, state_dir, user_data)
}

/// Provisions an open TPM (see the module docs).
pub fn provision_vtpm(
    vtpm: &Vtpm,
    state_dir: &Path,
    user_data: Option<[u8; 64]>,
) -> Result<Provisioned, EmulatorError> {
    let chain = TestAmdChain::load_or_create(state_dir)?;
    let ak_ca = AkCa::load_or_create(state_dir)?;
    let ak_created = vtpm.run(ensure_ak)?;
    let ak = vtpm.read_ak_public()?;
    let vm_id = vm_unique_id(state_dir)?;
    let ak_cert = ak_ca.issue_ak_cert(&ak.modulus, ak.exponent, &format!("{vm_id} AK"))?;
    vtpm.run(move |s| {
        s.ensure_nv_index(AK_CERT_NV_INDEX, ak_cert.len())?;
        s.write_nv(AK_CERT_NV_INDEX, &ak_cert)
    })?;
    if let Some(data) = user_data {
        vtpm.write_user_data(&data)?;
    }
    let paths = Provisioned {
        tcti: vtpm.tcti().to_string(),
        state_dir: state_dir.to_path_buf(),
        ark_pem: chain.path(amd_chain::ARK_PEM),
        ask_pem: chain.path(amd_chain::ASK_PEM),
        vcek_pem: chain.path(amd_chain::VCEK_PEM),
        cert_chain_pem: chain.path(amd_chain::CERT_CHAIN_PEM),
        ak_ca_pem: state_dir.join(AK_CA_PEM),
        ak_handle: hex_handle(AK_HANDLE),
        ak_created,
        ak_cert_nv_index: hex_handle(AK_CERT_NV_INDEX),
        hcl_report_nv_index: hex_handle(HCL_REPORT_NV_INDEX),
        user_data_nv_index: hex_handle(USER_DATA_NV_INDEX),
        hcl: HclRefresh {
            hcl_report_size: 0,
            var_data_len: 0,
            report_data: String::new(),
            user_data: String::new(),
            vm_unique_id: String::new(),
        },
    };
    let hcl = write_hcl_report(vtpm, state_dir)?;
    Ok(Provisioned { hcl, ..paths })
}

/// Re-signs the HCL report at NV 0x01400001 with the current AK and the user data of NV
/// 0x01400002 (after writing `user_data` there when given), as the paravisor does.
pub fn refresh_hcl_report(
    vtpm: &Vtpm,
    state_dir: &Path,
    user_data: Option<[u8; 64]>,
) -> Result<HclRefresh, EmulatorError> {
    if let Some(data) = user_data {
        vtpm.write_user_data(&data)?;
    }
    write_hcl_report(vtpm, state_dir)
}

fn write_hcl_report(vtpm: &Vtpm, state_dir: &Path) -> Result<HclRefresh, EmulatorError> {
    let ak = vtpm.read_ak_public()?;
    let user_data = vtpm.read_user_data()?.unwrap_or([0u8; 64]);
    let (hcl_report, refresh) = signed_hcl_report(state_dir, ak.modulus, ak.exponent, user_data)?;
    vtpm.run(move |s| {
        s.ensure_nv_index(HCL_REPORT_NV_INDEX, HCL_NV_SIZE)?;
        s.write_nv(HCL_REPORT_NV_INDEX, &hcl_report)
    })?;
    Ok(refresh)
}

/// A fresh HCL report (PROTOCOLS.md §4.2-§4.4) for the AK (`ak_modulus` big-endian,
/// `ak_exponent`) and `user_data`, signed by the state directory's test firmware, padded to
/// [`HCL_NV_SIZE`]; shared by provisioning and `skr-emulator tpm-proxy`.
pub fn signed_hcl_report(
    state_dir: &Path,
    ak_modulus: Vec<u8>,
    ak_exponent: u32,
    user_data: [u8; 64],
) -> Result<(Vec<u8>, HclRefresh), EmulatorError> {
    let firmware = TestFirmware::new(TestAmdChain::load_or_create(state_dir)?);
    let vm_id = vm_unique_id(state_dir)?;
    let var_data = hcl::var_data_json(&VarDataInputs {
        ak_modulus,
        ak_exponent,
        vm_unique_id: vm_id.clone(),
        user_data,
    });
    let report_data = report_data_for(HashType::Sha256, &var_data);
    let report = firmware.sign_report(&report_data, 0)?;
    let hcl_report = hcl::build_hcl_report(&report, &var_data, HCL_NV_SIZE)?;
    let refresh = HclRefresh {
        hcl_report_size: HCL_NV_SIZE,
        var_data_len: var_data.len(),
        report_data: hex::encode(report_data),
        user_data: hex::encode(user_data),
        vm_unique_id: vm_id,
    };
    Ok((hcl_report, refresh))
}

fn vm_unique_id(state_dir: &Path) -> Result<String, EmulatorError> {
    let path = state_dir.join(VM_ID_FILE);
    if let Ok(text) = std::fs::read_to_string(&path) {
        let id = text.trim().to_string();
        if id.len() == 36 {
            return Ok(id);
        }
    }
    let mut b = [0u8; 16];
    OsRng.fill_bytes(&mut b);
    b[6] = (b[6] & 0x0F) | 0x40; // version 4
    b[8] = (b[8] & 0x3F) | 0x80; // RFC 4122 variant
    let id = format!("{:X}", uuid::Uuid::from_bytes(b).hyphenated());
    write_atomic(state_dir, VM_ID_FILE, id.as_bytes())?;
    Ok(id)
}

/// The AK template: RSA-2048 restricted signing key, RSASSA-SHA256, userWithAuth.
pub fn ak_template() -> Result<Public, VtpmError> {
    let cmd = |operation| move |source| VtpmError::Command { operation, source };
    let attributes = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_sensitive_data_origin(true)
        .with_user_with_auth(true)
        .with_restricted(true)
        .with_sign_encrypt(true)
        .with_no_da(true)
        .build()
        .map_err(cmd("AK attributes"))?;
    let parameters = PublicRsaParametersBuilder::new()
        .with_symmetric(SymmetricDefinitionObject::Null)
        .with_scheme(RsaScheme::RsaSsa(HashScheme::new(HashingAlgorithm::Sha256)))
        .with_key_bits(RsaKeyBits::Rsa2048)
        .with_exponent(RsaExponent::default())
        .with_is_signing_key(true)
        .with_is_decryption_key(false)
        .with_restricted(true)
        .build()
        .map_err(cmd("AK parameters"))?;
    PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::Rsa)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attributes)
        .with_rsa_parameters(parameters)
        .with_rsa_unique_identifier(PublicKeyRsa::default())
        .build()
        .map_err(cmd("AK template"))
}

/// Creates and persists the AK unless one is at 0x81000003; returns whether it created one.
fn ensure_ak(s: &mut VtpmSession) -> Result<bool, VtpmError> {
    if s.persistent_exists(AK_HANDLE)? {
        return Ok(false);
    }
    let cmd = |operation| move |source| VtpmError::Command { operation, source };
    let template = ak_template()?;
    let persistent = PersistentTpmHandle::new(AK_HANDLE).map_err(cmd("AK handle"))?;
    let ctx = s.context();
    let created = ctx
        .execute_with_session(Some(AuthSession::Password), |ctx| {
            ctx.create_primary(Hierarchy::Owner, template, None, None, None, None)
        })
        .map_err(cmd("CreatePrimary(owner, AK)"))?;
    let persisted = ctx.execute_with_session(Some(AuthSession::Password), |ctx| {
        ctx.evict_control(
            Provision::Owner,
            ObjectHandle::from(created.key_handle),
            Persistent::Persistent(persistent),
        )
    });
    let _ = ctx.flush_context(ObjectHandle::from(created.key_handle));
    persisted.map_err(cmd("EvictControl(AK -> 0x81000003)"))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_unique_id_is_an_upper_case_v4_guid_kept_across_calls() {
        let dir = tempfile::tempdir().unwrap();
        let id = vm_unique_id(dir.path()).unwrap();
        // RFC 4122 text form: 8-4-4-4-12 hex digits; version nibble 4, variant 8/9/A/B.
        let groups: Vec<&str> = id.split('-').collect();
        let lens: Vec<usize> = groups.iter().map(|g| g.len()).collect();
        assert_eq!(lens, [8, 4, 4, 4, 12], "{id}");
        assert!(id
            .chars()
            .all(|c| c == '-' || c.is_ascii_digit() || ('A'..='F').contains(&c)));
        assert!(groups[2].starts_with('4'), "{id}");
        assert!("89AB".contains(&groups[3][..1]), "{id}");
        assert_eq!(vm_unique_id(dir.path()).unwrap(), id);
    }
}
