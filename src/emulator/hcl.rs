//! Building HCL reports like an Azure CVM's paravisor (PROTOCOLS.md §4.2 layout, §4.3 current
//! variable-data shape, §4.4 REPORT_DATA binding).
//!
//! Written independently of `format::hcl` (the parser) so that each checks the other.

use base64::Engine as _;
use sha2::{Digest as _, Sha256};

use super::EmulatorError;
use crate::evidence::sev_guest::REPORT_SIZE;

/// NV index size the emulator provisions: swtpm's NV maximum (real CVMs: 2048 or 2600).
pub const HCL_NV_SIZE: usize = 2048;
/// Offset of the IGVM request data (after the 0x20 header and the 1184-byte report).
pub const IGVM_OFFSET: usize = 0x4C0;
/// Offset of the variable data.
pub const VAR_DATA_OFFSET: usize = 0x4D4;
/// HCL report header version written.
pub const HCL_VERSION: u32 = 2;
/// RequestType AkCertRequest (every real sample).
pub const REQUEST_TYPE_AK_CERT: u32 = 2;
/// ReportType SNP.
pub const REPORT_TYPE_SNP: u32 = 2;
/// ReportDataHashType SHA-256.
pub const HASH_TYPE_SHA256: u32 = 1;

/// What goes into the variable data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VarDataInputs {
    /// AK modulus, big-endian.
    pub ak_modulus: Vec<u8>,
    /// AK public exponent.
    pub ak_exponent: u32,
    /// `vmUniqueId`, an upper-case GUID.
    pub vm_unique_id: String,
    /// The 64 bytes of NV 0x01400002 (zeros if never written).
    pub user_data: [u8; 64],
}

/// The variable data JSON in the current HCL shape, keys in the real order; `user-data` in
/// upper-case hex as in real HCL reports.
pub fn var_data_json(inputs: &VarDataInputs) -> Vec<u8> {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let e = inputs.ak_exponent.to_be_bytes();
    let first = e.iter().position(|b| *b != 0).unwrap_or(3);
    format!(
        concat!(
            r#"{{"keys":[{{"kid":"HCLAkPub","key_ops":["sign"],"kty":"RSA","e":"{e}","n":"{n}"}}],"#,
            r#""vm-configuration":{{"console-enabled":true,"secure-boot":true,"tpm-enabled":true,"#,
            r#""vmUniqueId":"{vm}"}},"user-data":"{ud}"}}"#
        ),
        e = b64.encode(&e[first..]),
        n = b64.encode(&inputs.ak_modulus),
        vm = inputs.vm_unique_id,
        ud = hex::encode_upper(inputs.user_data),
    )
    .into_bytes()
}

/// REPORT_DATA = SHA-256(variable data) || 32 zero bytes.
pub fn report_data_for(var_data: &[u8]) -> [u8; 64] {
    let mut rd = [0u8; 64];
    rd[..32].copy_from_slice(&Sha256::digest(var_data));
    rd
}

/// An HCL report of `nv_size` bytes: header, SNP report at 0x20, IGVM request data at 0x4C0,
/// variable data at 0x4D4, zero padding.
pub fn build_hcl_report(
    snp_report: &[u8; REPORT_SIZE],
    var_data: &[u8],
    nv_size: usize,
) -> Result<Vec<u8>, EmulatorError> {
    let max = nv_size.saturating_sub(VAR_DATA_OFFSET);
    if var_data.len() > max {
        return Err(EmulatorError::VarDataTooLarge {
            len: var_data.len(),
            max,
        });
    }
    let var_len = var_data.len() as u32;
    let data_size = 20 + var_len;
    let mut out = vec![0u8; nv_size];
    out[0..4].copy_from_slice(b"HCLA");
    out[4..8].copy_from_slice(&HCL_VERSION.to_le_bytes());
    out[8..12].copy_from_slice(&(IGVM_OFFSET as u32 + data_size).to_le_bytes());
    out[12..16].copy_from_slice(&REQUEST_TYPE_AK_CERT.to_le_bytes());
    // 0x10 status 0, 0x14..0x20 reserved: already zero.
    out[0x20..IGVM_OFFSET].copy_from_slice(snp_report);
    out[0x4C0..0x4C4].copy_from_slice(&data_size.to_le_bytes());
    out[0x4C4..0x4C8].copy_from_slice(&1u32.to_le_bytes());
    out[0x4C8..0x4CC].copy_from_slice(&REPORT_TYPE_SNP.to_le_bytes());
    out[0x4CC..0x4D0].copy_from_slice(&HASH_TYPE_SHA256.to_le_bytes());
    out[0x4D0..0x4D4].copy_from_slice(&var_len.to_le_bytes());
    out[VAR_DATA_OFFSET..VAR_DATA_OFFSET + var_data.len()].copy_from_slice(var_data);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_protocols_4_2() {
        let report = [0x5Au8; REPORT_SIZE];
        let var = br#"{"keys":[]}"#;
        let hcl = build_hcl_report(&report, var, HCL_NV_SIZE).unwrap();
        assert_eq!(hcl.len(), 2048);
        assert_eq!(&hcl[..4], b"HCLA");
        // ReportSize = 0x4C0 + 20 + n (PROTOCOLS.md §4.2, verified on real reports there).
        assert_eq!(
            u32::from_le_bytes(hcl[8..12].try_into().unwrap()),
            0x4C0 + 20 + 11
        );
        assert_eq!(hcl[0x20..0x4C0], report[..]);
        assert_eq!(
            u32::from_le_bytes(hcl[0x4D0..0x4D4].try_into().unwrap()),
            11
        );
        assert_eq!(&hcl[0x4D4..0x4D4 + 11], var);
        assert!(hcl[0x4D4 + 11..].iter().all(|b| *b == 0));
        assert!(matches!(
            build_hcl_report(&report, &[b' '; 900], HCL_NV_SIZE),
            Err(EmulatorError::VarDataTooLarge { len: 900, max: 812 })
        ));
    }

    #[test]
    fn var_data_is_json_with_the_ak_and_user_data() {
        let json = var_data_json(&VarDataInputs {
            ak_modulus: vec![0xFF; 256],
            ak_exponent: 65537,
            vm_unique_id: "0A1B2C3D-0000-0000-0000-000000000000".into(),
            user_data: [0xAB; 64],
        });
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(v["keys"][0]["kid"], "HCLAkPub");
        // 65537 = 01 00 01 = "AQAB" in base64url (RFC 7518 §6.3.1.2 example).
        assert_eq!(v["keys"][0]["e"], "AQAB");
        assert_eq!(v["user-data"].as_str().unwrap().len(), 128);
        assert_eq!(v["vm-configuration"]["secure-boot"], true);
    }
}
