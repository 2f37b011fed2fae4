//! PURE: the Azure HCL attestation report (vTPM NV index 0x01400001) and its runtime data.
//!
//! Implements PROTOCOLS.md §4.2 (layout), §4.3 (runtime data JSON), §4.4 (REPORT_DATA binding)
//! and §9.1 traps 10-11. Bytes in, [`HclReport`] or a specific [`HclError`] out; no I/O.
//!
//! - [`report`]: the byte layout, size checks, [`HclReport::check_binding`], and [`encode`]
//!   (the emulator's test HCL reports).
//! - [`runtime_data`]: the JSON (keys by `kid`, `vm-configuration`, `user-data`).
//! - [`error`]: [`HclError`] and its stable codes (`docs/errors-hcl.md`).
//!
//! The embedded SEV-SNP report is handed out as raw bytes ([`HclReport::snp_report_bytes`]);
//! verifying it is `format::snp`'s job. The binding check slices REPORT_DATA itself so that this
//! module does not depend on the SNP parser. TDX (ReportType 4) and Trusted Launch (ReportType 3)
//! reports are recognised and refused with their own errors.

pub mod error;
pub mod report;
pub mod runtime_data;

pub use error::HclError;
pub use report::{encode, report_data_for, EncodeParams, HashType, HclReport, IgvmRequestHeader};
pub use runtime_data::{Jwk, RuntimeData, VmConfiguration};

use serde_json::{json, Value};

/// A JSON summary of an HCL report for `skrctl evidence verify --json`.
///
/// `binding` is the result of [`HclReport::check_binding`]; it fills `runtime_data_bound`.
/// Shape: `{"version", "request_type", "report_type", "report_data_hash_type",
/// "runtime_data_bound", "vm_unique_id", "keys": [{"kid","kty","key_ops"}], "vm_configuration",
/// "user_data", "runtime_data_sha256"}`. `report_type` is `"snp"` (the only type that parses),
/// `report_data_hash_type` is `"sha256"`, `"sha384"` or `"sha512"`, byte strings are lower-case hex,
/// absent values are `null`.
pub fn hcl_json(report: &HclReport, binding: &Result<(), HclError>) -> Value {
    let rd = report.runtime_data();
    let keys: Vec<Value> = rd
        .keys
        .iter()
        .map(|k| json!({ "kid": k.kid, "kty": k.kty, "key_ops": k.key_ops }))
        .collect();
    let vm_configuration = rd.vm_configuration.as_ref().map(|c| {
        json!({
            "console_enabled": c.console_enabled,
            "secure_boot": c.secure_boot,
            "tpm_enabled": c.tpm_enabled,
            "tpm_persisted": c.tpm_persisted,
            "vm_unique_id": c.vm_unique_id,
            "root_cert_thumbprint": c.root_cert_thumbprint,
            "current_time": c.current_time,
            "secure_boot_template_id": c.secure_boot_template_id,
        })
    });
    json!({
        "version": report.version(),
        "request_type": report.request_type(),
        "report_type": "snp",
        "report_data_hash_type": report.hash_type().json_name(),
        "runtime_data_bound": binding.is_ok(),
        "vm_unique_id": rd.vm_unique_id(),
        "keys": keys,
        "vm_configuration": vm_configuration,
        "user_data": rd.user_data.map(hex::encode),
        "runtime_data_sha256": hex::encode(report.runtime_data_sha256()),
    })
}
