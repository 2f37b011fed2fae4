//! The `POST {provider}/attest/SevSnpVm?api-version=…` request body of the raw SNP flow
//! (PROTOCOLS.md §5.2, §1.1 step 5), in the confidential sidecar's shape:
//!
//! ```json
//! {"report": "<b64url(JSON {\"SnpReport\": b64url(report), \"VcekCertChain\": b64url(PEM)})>",
//!  "runtimeData": {"data": "<b64url(runtime data bytes)>", "dataType": "JSON"},
//!  "nonce": "<string>"}
//! ```
//!
//! Every blob is unpadded base64url (MAA accepts every flavour; this is the Microsoft tool's
//! choice). `dataType` is `"JSON"`, not `"Binary"`: only JSON runtime data becomes the token's
//! `x-ms-runtime` claim, and Key Vault wraps the released key to `x-ms-runtime.keys` (§6.2);
//! the sidecar says the same ("Binary not allowed, must be JSON"). The nonce is sent as a JSON
//! string (the REST spec's type; MAA echoes it as a string either way, trap 15).

use serde_json::json;

use crate::format::jose::b64;

/// Default api-version of SevSnpVm calls (PROTOCOLS.md §5.1 table).
pub const API_VERSION: &str = "2022-08-01";
/// Path of the endpoint under the provider URL.
pub const PATH: &str = "/attest/SevSnpVm";

/// What goes into a SevSnpVm request.
#[derive(Debug, Clone, Copy)]
pub struct SevSnpVmRequest<'a> {
    /// The 1184-byte SNP report.
    pub report: &'a [u8],
    /// VCEK + ASK + ARK, concatenated PEM text.
    pub vcek_chain_pem: &'a [u8],
    /// The runtime data bytes (the transfer key JWKS), exactly as hashed into REPORT_DATA.
    pub runtime_data: &'a [u8],
    /// Echoed as the token's `nonce` claim.
    pub nonce: Option<&'a str>,
}

impl SevSnpVmRequest<'_> {
    /// The inner `report` JSON text (before its base64url layer).
    pub fn report_json(&self) -> String {
        json!({
            "SnpReport": b64::encode_url(self.report),
            "VcekCertChain": b64::encode_url(self.vcek_chain_pem),
        })
        .to_string()
    }

    /// The request body (UTF-8 JSON).
    pub fn body(&self) -> Vec<u8> {
        let mut body = json!({
            "report": b64::encode_url(self.report_json().as_bytes()),
            "runtimeData": {"data": b64::encode_url(self.runtime_data), "dataType": "JSON"},
        });
        if let Some(nonce) = self.nonce {
            body["nonce"] = json!(nonce);
        }
        body.to_string().into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    const REPORT: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/real/confidential-sidecar-containers/snp_report.bin"
    ));
    const CHAIN: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/real/confidential-sidecar-containers/uvm_host_amd_certificate.pem"
    ));

    fn unb64(v: &Value) -> Vec<u8> {
        b64::decode_url("t", v.as_str().unwrap()).unwrap()
    }

    #[test]
    fn body_has_the_sidecar_shape_and_round_trips_the_real_evidence() {
        let runtime =
            br#"{"keys":[{"e":"AQAB","key_ops":["encrypt"],"kid":"k","kty":"RSA","n":"AQ"}]}"#;
        let req = SevSnpVmRequest {
            report: REPORT,
            vcek_chain_pem: CHAIN,
            runtime_data: runtime,
            nonce: Some("7394904505194784658"),
        };
        let body: Value = serde_json::from_slice(&req.body()).unwrap();
        let obj = body.as_object().unwrap();
        let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["nonce", "report", "runtimeData"]);
        // §5.2: the nonce travels as a string.
        assert_eq!(body["nonce"], "7394904505194784658");
        assert_eq!(body["runtimeData"]["dataType"], "JSON");
        assert_eq!(unb64(&body["runtimeData"]["data"]), runtime);
        let inner: Value = serde_json::from_slice(&unb64(&body["report"])).unwrap();
        assert_eq!(unb64(&inner["SnpReport"]), REPORT);
        assert_eq!(REPORT.len(), 1184);
        assert_eq!(unb64(&inner["VcekCertChain"]), CHAIN);
        // Unpadded base64url everywhere: no '=', '+' or '/'.
        let text = String::from_utf8(req.body()).unwrap();
        let blob = body["report"].as_str().unwrap();
        assert!(!blob.contains(['=', '+', '/']), "{text:.80}");
    }

    #[test]
    fn nonce_is_optional() {
        let req = SevSnpVmRequest {
            report: REPORT,
            vcek_chain_pem: CHAIN,
            runtime_data: b"{}",
            nonce: None,
        };
        let body: Value = serde_json::from_slice(&req.body()).unwrap();
        assert!(body.get("nonce").is_none());
    }
}
