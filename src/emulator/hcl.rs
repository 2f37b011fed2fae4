//! The emulator's HCL report content (PROTOCOLS.md §4.3 current variable-data shape) and NV
//! sizing. The byte layout (§4.2) and the REPORT_DATA binding (§4.4) are
//! [`crate::format::hcl::encode`] and [`crate::format::hcl::report_data_for`]; the tests below
//! check the result against the offsets PROTOCOLS.md §4.2 gives, not against `format::hcl`.

use base64::Engine as _;

use super::EmulatorError;
use crate::evidence::sev_guest::REPORT_SIZE;
use crate::format::hcl::report::VARIABLE_DATA_OFFSET;
use crate::format::hcl::{encode, EncodeParams, HashType};

/// NV index size the emulator provisions: swtpm's NV maximum (real CVMs: 2048 or 2600).
pub const HCL_NV_SIZE: usize = 2048;
/// HCL report header version the emulator writes (current Azure paravisors).
const HCL_VERSION: u32 = 2;
/// RequestType AkCertRequest (every real sample).
const REQUEST_TYPE_AK_CERT: u32 = 2;

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

/// An HCL report of `nv_size` bytes (header version 2, AkCertRequest, SHA-256 binding, zero
/// padding) built by [`encode`]; refuses variable data that would not fit the NV index.
pub fn build_hcl_report(
    snp_report: &[u8; REPORT_SIZE],
    var_data: &[u8],
    nv_size: usize,
) -> Result<Vec<u8>, EmulatorError> {
    let max = nv_size.saturating_sub(VARIABLE_DATA_OFFSET);
    if var_data.len() > max {
        return Err(EmulatorError::VarDataTooLarge {
            len: var_data.len(),
            max,
        });
    }
    encode(&EncodeParams {
        version: HCL_VERSION,
        request_type: REQUEST_TYPE_AK_CERT,
        hw_report: snp_report,
        hash_type: HashType::Sha256,
        variable_data: var_data,
        pad_to: nv_size,
    })
    .map_err(|_| EmulatorError::Encode { what: "HCL report" })
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
