//! The `POST {provider}/attest/AzureGuest?api-version=2020-10-01` request of the vTPM flow
//! (PROTOCOLS.md §5.3, §4.8 "Collect" step 6): the `AttestationInfo` JSON and the outer body
//! `{"AttestationInfo": "<unpadded base64url of that JSON>"}`.
//!
//! Shape (Microsoft's C++ guest attestation library, which real MAA accepts; members sorted by
//! name as its jsoncpp writer and the REST example do):
//!
//! | member | value |
//! |---|---|
//! | `AttestationProtocolVersion` | `"2.0"` |
//! | `ClientPayload` | every caller key → standard base64 of the value |
//! | `IsolationInfo` | `{"Type": "SevSnp", "Evidence": {"Proof", "RunTimeData"}}` |
//! | `OSBuild`, `OSDistro`, `OSType` | standard base64 of `"NotApplication"`, os-release `NAME`, `"Linux"` |
//! | `OSVersionMajor`, `OSVersionMinor` | integers from os-release `VERSION_ID` (default 1.0) |
//! | `TcgLogs` | standard base64 of the event log (empty when absent) |
//! | `TpmInfo` | `AikCert`, `AikPub`, `EncKeyCertifyInfo`, `EncKeyCertifyInfoSignature`, `EncKeyPub`, `PCRs` (`[{"Digest", "Index"}]`), `PcrQuote`, `PcrSet`, `PcrSignature` (blobs in padded standard base64) |
//!
//! `Proof` is standard base64 of `{"SnpReport": <unpadded base64url of the 1184-byte report>,
//! "VcekCertChain": <standard base64 of the VCEK+ASK+ARK PEM>}`; `RunTimeData` is standard base64
//! of the HCL variable data exactly as stored. The AK certificate NV index may carry padding
//! after the DER object: only the DER object is sent (§4.1).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{json, Map, Value};

use super::MaaFormatError;
use crate::format::hcl::HclReport;
use crate::format::jose::b64;

/// Default api-version of AzureGuest calls (PROTOCOLS.md §5.1 table).
pub const API_VERSION: &str = "2020-10-01";
/// Path of the endpoint under the provider URL.
pub const PATH: &str = "/attest/AzureGuest";
/// `AttestationProtocolVersion`.
pub const PROTOCOL_VERSION: &str = "2.0";
/// `OSBuild` on Linux (decoded; the claim `x-ms-azurevm-osbuild` of real Linux tokens).
pub const OS_BUILD_LINUX: &str = "NotApplication";

/// The operating-system fields of the request, from `/etc/os-release`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OsInfo {
    /// `NAME` (default "Linux", as os-release(5) specifies).
    pub distro: String,
    /// Major number of `VERSION_ID` (default 1).
    pub major: u64,
    /// Minor number of `VERSION_ID` (default 0).
    pub minor: u64,
}

impl Default for OsInfo {
    fn default() -> Self {
        Self {
            distro: "Linux".to_string(),
            major: 1,
            minor: 0,
        }
    }
}

impl OsInfo {
    /// Parses os-release(5) text: `KEY=value` lines, values optionally in single or double
    /// quotes, `#` comments. Missing or unparsable fields keep the defaults.
    pub fn parse_os_release(text: &str) -> Self {
        let mut info = Self::default();
        for line in text.lines() {
            let line = line.trim();
            if line.starts_with('#') {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let value = unquote(value.trim());
            match key.trim() {
                "NAME" if !value.is_empty() => info.distro = value.to_string(),
                "VERSION_ID" => {
                    let mut parts = value.split('.');
                    if let Some(major) = parts.next().and_then(|p| p.parse().ok()) {
                        info.major = major;
                        info.minor = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
                    }
                }
                _ => {}
            }
        }
        info
    }
}

fn unquote(v: &str) -> &str {
    for q in ['"', '\''] {
        if let Some(inner) = v.strip_prefix(q).and_then(|s| s.strip_suffix(q)) {
            return inner;
        }
    }
    v
}

/// The evidence of one AzureGuest request (all raw bytes as read from the vTPM).
#[derive(Debug, Clone, Copy)]
pub struct AzureGuestInput<'a> {
    /// NV 0x01400001 as read (HCL report, padding allowed).
    pub hcl_report: &'a [u8],
    /// VCEK + ASK + ARK PEM text (from THIM).
    pub vcek_chain_pem: &'a [u8],
    /// NV 0x01C101D0 as read (one DER certificate, maybe followed by padding).
    pub ak_cert: &'a [u8],
    /// Marshalled TPM2B_PUBLIC of the AK.
    pub ak_pub: &'a [u8],
    /// TPMS_ATTEST of the PCR quote.
    pub pcr_quote: &'a [u8],
    /// Raw RSASSA signature of the quote.
    pub pcr_signature: &'a [u8],
    /// Quoted PCR indices, in selection order.
    pub pcr_indices: &'a [u8],
    /// Their SHA-256 values, same order.
    pub pcr_values: &'a [[u8; 32]],
    /// Marshalled TPM2B_PUBLIC of the ephemeral key.
    pub enc_key_pub: &'a [u8],
    /// TPMS_ATTEST of TPM2_Certify over the ephemeral key.
    pub enc_key_certify_info: &'a [u8],
    /// Raw RSASSA signature of the certify info.
    pub enc_key_certify_signature: &'a [u8],
    /// The TCG event log (empty when unavailable).
    pub tcg_log: &'a [u8],
    /// The OS fields.
    pub os: &'a OsInfo,
    /// `ClientPayload` (values are base64-encoded here, as the C++ client does).
    pub client_payload: &'a [(&'a str, &'a str)],
}

fn std64(bytes: &[u8]) -> Value {
    Value::String(STANDARD.encode(bytes))
}

/// Length of the single DER object at the start of `bytes` (tag, length, contents).
pub fn der_object_len(bytes: &[u8]) -> Result<usize, MaaFormatError> {
    let bad = |reason| MaaFormatError::AkCertInvalid { reason };
    match bytes.first() {
        Some(0x30) => {}
        Some(_) => return Err(bad("it does not start with a DER SEQUENCE (0x30)")),
        None => return Err(bad("the index is empty")),
    }
    let first = *bytes.get(1).ok_or(bad("it is truncated in the length"))?;
    let (header, len) = if first < 0x80 {
        (2usize, usize::from(first))
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 3 {
            return Err(bad("its length is indefinite or larger than 16 MiB"));
        }
        let digits = bytes
            .get(2..2 + n)
            .ok_or(bad("it is truncated in the length"))?;
        let len = digits
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (2 + n, len)
    };
    let total = header.checked_add(len).ok_or(bad("its length overflows"))?;
    if total > bytes.len() {
        return Err(bad("it is shorter than its DER length says"));
    }
    Ok(total)
}

impl AzureGuestInput<'_> {
    /// The `AttestationInfo` JSON value.
    pub fn attestation_info(&self) -> Result<Value, MaaFormatError> {
        let hcl = HclReport::parse(self.hcl_report)?;
        let ak_cert_len = der_object_len(self.ak_cert)?;
        let ak_cert = self.ak_cert.get(..ak_cert_len).unwrap_or(self.ak_cert);
        let proof = json!({
            "SnpReport": b64::encode_url(hcl.snp_report_bytes()),
            "VcekCertChain": STANDARD.encode(self.vcek_chain_pem),
        })
        .to_string();
        let pcrs: Vec<Value> = self
            .pcr_indices
            .iter()
            .zip(self.pcr_values)
            .map(|(i, v)| json!({"Digest": std64(v), "Index": i}))
            .collect();
        let payload: Map<String, Value> = self
            .client_payload
            .iter()
            .map(|(k, v)| ((*k).to_string(), std64(v.as_bytes())))
            .collect();
        Ok(json!({
            "AttestationProtocolVersion": PROTOCOL_VERSION,
            "ClientPayload": payload,
            "IsolationInfo": {
                "Type": "SevSnp",
                "Evidence": {
                    "Proof": std64(proof.as_bytes()),
                    "RunTimeData": std64(hcl.runtime_data_bytes()),
                },
            },
            "OSBuild": std64(OS_BUILD_LINUX.as_bytes()),
            "OSDistro": std64(self.os.distro.as_bytes()),
            "OSType": std64(b"Linux"),
            "OSVersionMajor": self.os.major,
            "OSVersionMinor": self.os.minor,
            "TcgLogs": std64(self.tcg_log),
            "TpmInfo": {
                "AikCert": std64(ak_cert),
                "AikPub": std64(self.ak_pub),
                "EncKeyCertifyInfo": std64(self.enc_key_certify_info),
                "EncKeyCertifyInfoSignature": std64(self.enc_key_certify_signature),
                "EncKeyPub": std64(self.enc_key_pub),
                "PCRs": pcrs,
                "PcrQuote": std64(self.pcr_quote),
                "PcrSet": self.pcr_indices,
                "PcrSignature": std64(self.pcr_signature),
            },
        }))
    }

    /// The request body `{"AttestationInfo": "<unpadded base64url(AttestationInfo JSON)>"}`.
    pub fn body(&self) -> Result<Vec<u8>, MaaFormatError> {
        let info = self.attestation_info()?.to_string();
        Ok(json!({"AttestationInfo": b64::encode_url(info.as_bytes())})
            .to_string()
            .into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HCL: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/real/kinvolk-azure-cvm-tooling/hcl-report-snp.bin"
    ));
    // A real DER certificate (MAA signing certificate; any DER certificate will do).
    const DER: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/real/maa-tokens/jwks/maa-sharedeus2-signing-cert-J0pAPdf.der"
    ));
    /// The first 1,316 characters of `attestationInfo` in the REST example
    /// Azure/azure-rest-api-specs `specification/attestation/data-plane/Attestation/stable/
    /// 2025-06-01/examples/AttestAzureGuestVm.json` @ 4f486174 (a Windows Trusted Launch VM):
    /// decoded, it shows the member names, their order and the JSON types of the OS fields.
    const REST_EXAMPLE_PREFIX: &str = "ewoJIkF0dGVzdGF0aW9uUHJvdG9jb2xWZXJzaW9uIiA6ICIyLjAiLAoJIkNsaWVudFBheWxvYWQiIDogCgl7CgkJIkFybUlEIiA6ICJMM04xWW5OamNtbHdkR2x2Ym5Ndk1UTXdNRFk0WVdFdFpHTm1PQzAwTm1VNExXRXlZMk10TWpBMVlXSTBZVE15WWpNd0wzSmxjMjkxY21ObFIzSnZkWEJ6TDJKaFlpMWxlSFEwT0MxMFpYTjBMM0J5YjNacFpHVnljeTlOYVdOeWIzTnZablF1UTI5dGNIVjBaUzkyYVhKMGRXRnNUV0ZqYUdsdVpYTXZZbUZpTFhkcGJuTmxjblpsY2pJd01Uaz0iCgl9LAoJIklzb2xhdGlvbkluZm8iIDogCgl7CgkJIlR5cGUiIDogIlRydXN0ZWRMYXVuY2giCgl9LAoJIk9TQnVpbGQiIDogIlRtOTBRWEJ3YkdsallXSnNaUT09IiwKCSJPU0Rpc3RybyIgOiAiVFdsamNtOXpiMlowIiwKCSJPU1R5cGUiIDogIlYybHVaRzkzY3c9PSIsCgkiT1NWZXJzaW9uTWFqb3IiIDogMTAsCgkiT1NWZXJzaW9uTWlub3IiIDogMCwKCSJUY2dMb2dzIiA6ICJB";

    fn input<'a>(ak_cert: &'a [u8], os: &'a OsInfo) -> AzureGuestInput<'a> {
        AzureGuestInput {
            hcl_report: HCL,
            vcek_chain_pem: b"-----BEGIN CERTIFICATE-----\n...\n",
            ak_cert,
            ak_pub: &[0x01, 0x18, 0xfb, 0xff],
            pcr_quote: b"quote",
            pcr_signature: b"sig",
            pcr_indices: &[0, 1, 2, 3, 4, 5, 6, 7],
            pcr_values: &[[0xAA; 32]; 8],
            enc_key_pub: b"enc",
            enc_key_certify_info: b"certify",
            enc_key_certify_signature: b"certsig",
            tcg_log: b"",
            os,
            client_payload: &[("nonce", "ADE0101")],
        }
    }

    fn std(v: &Value) -> Vec<u8> {
        STANDARD.decode(v.as_str().unwrap()).unwrap()
    }

    #[test]
    fn member_names_and_types_follow_the_real_example() {
        let cut = REST_EXAMPLE_PREFIX.len() / 4 * 4;
        let decoded = STANDARD.decode(&REST_EXAMPLE_PREFIX[..cut]).unwrap();
        let text = String::from_utf8_lossy(&decoded);
        let os = OsInfo::default();
        let info = input(DER, &os).attestation_info().unwrap();
        // Every top-level member name of the example appears in ours with the same JSON type.
        for name in [
            "AttestationProtocolVersion",
            "ClientPayload",
            "IsolationInfo",
            "OSBuild",
            "OSDistro",
            "OSType",
            "OSVersionMajor",
            "OSVersionMinor",
            "TcgLogs",
        ] {
            assert!(text.contains(&format!("\"{name}\" : ")), "{name}");
            assert!(info.get(name).is_some(), "{name}");
        }
        assert!(text.contains("\"OSVersionMajor\" : 10,"));
        assert!(info["OSVersionMajor"].is_u64() && info["OSVersionMinor"].is_u64());
        // The example's OSType is standard base64 of "Windows" with padding; ours of "Linux".
        assert!(text.contains("\"OSType\" : \"V2luZG93cw==\""));
        assert_eq!(info["OSType"], "TGludXg=");
        assert_eq!(info["AttestationProtocolVersion"], "2.0");
        // Serialised member order is by name, like the example's.
        let s = info.to_string();
        let pos = |k: &str| s.find(&format!("\"{k}\"")).unwrap();
        assert!(pos("AttestationProtocolVersion") < pos("ClientPayload"));
        assert!(pos("OSVersionMinor") < pos("TcgLogs"));
        assert_eq!(std(&info["ClientPayload"]["nonce"]), b"ADE0101");
    }

    #[test]
    fn evidence_is_the_real_hcl_report_split_at_the_spec_offsets() {
        let os = OsInfo::default();
        let info = input(DER, &os).attestation_info().unwrap();
        let ev = &info["IsolationInfo"]["Evidence"];
        assert_eq!(info["IsolationInfo"]["Type"], "SevSnp");
        // PROTOCOLS.md §4.2: VariableDataSize is the u32 LE at 0x4D0, the data follows at 0x4D4.
        let n = u32::from_le_bytes(HCL[0x4D0..0x4D4].try_into().unwrap()) as usize;
        assert_eq!(std(&ev["RunTimeData"]), &HCL[0x4D4..0x4D4 + n]);
        assert!(n > 100);
        let proof: Value = serde_json::from_slice(&std(&ev["Proof"])).unwrap();
        let snp = b64::decode_url("t", proof["SnpReport"].as_str().unwrap()).unwrap();
        // PROTOCOLS.md §4.2: the SNP report is bytes [0x20, 0x4C0) of the HCL report.
        assert_eq!(snp, &HCL[0x20..0x4C0]);
        assert!(!proof["SnpReport"].as_str().unwrap().contains('='));
        let tpm = &info["TpmInfo"];
        assert_eq!(tpm["PcrSet"], json!([0, 1, 2, 3, 4, 5, 6, 7]));
        assert_eq!(tpm["PCRs"][7]["Index"], 7);
        assert_eq!(std(&tpm["PCRs"][7]["Digest"]), [0xAA; 32]);
        assert_eq!(std(&tpm["AikPub"]), [0x01, 0x18, 0xfb, 0xff]);
        // Padded standard base64 ("+/" alphabet): 0xfb 0xff → "+/8=" in "ARj7/w==".
        assert_eq!(tpm["AikPub"], "ARj7/w==");
    }

    #[test]
    fn ak_cert_padding_is_cut_and_garbage_refused() {
        let mut padded = DER.to_vec();
        padded.extend_from_slice(&[0xff; 300]);
        assert_eq!(der_object_len(&padded).unwrap(), DER.len());
        let os = OsInfo::default();
        let info = input(&padded, &os).attestation_info().unwrap();
        assert_eq!(std(&info["TpmInfo"]["AikCert"]), DER);
        for bad in [
            &[][..],
            &[0x31, 0x00],
            &[0x30],
            &[0x30, 0x85, 1, 1, 1, 1, 1],
            &DER[..100],
        ] {
            assert!(matches!(
                der_object_len(bad),
                Err(MaaFormatError::AkCertInvalid { .. })
            ));
        }
    }

    #[test]
    fn os_release_parsing() {
        // Ubuntu 24.04's /etc/os-release (as shipped).
        let ubuntu = "PRETTY_NAME=\"Ubuntu 24.04.1 LTS\"\nNAME=\"Ubuntu\"\nVERSION_ID=\"24.04\"\nVERSION=\"24.04.1 LTS (Noble Numbat)\"\nID=ubuntu\n";
        assert_eq!(
            OsInfo::parse_os_release(ubuntu),
            OsInfo {
                distro: "Ubuntu".into(),
                major: 24,
                minor: 4
            }
        );
        let debian = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\n";
        assert_eq!(
            OsInfo::parse_os_release(debian),
            OsInfo {
                distro: "Debian GNU/Linux".into(),
                major: 12,
                minor: 0
            }
        );
        assert_eq!(
            OsInfo::parse_os_release("# nothing\nVERSION_ID=rolling"),
            OsInfo::default()
        );
    }

    #[test]
    fn outer_body_is_unpadded_base64url_of_the_info() {
        let os = OsInfo::default();
        let inp = input(DER, &os);
        let body: Value = serde_json::from_slice(&inp.body().unwrap()).unwrap();
        let blob = body["AttestationInfo"].as_str().unwrap();
        assert!(!blob.contains(['=', '+', '/']));
        let info: Value = serde_json::from_slice(&b64::decode_url("t", blob).unwrap()).unwrap();
        assert_eq!(info, inp.attestation_info().unwrap());
        let mut bad = inp;
        bad.hcl_report = &HCL[..100];
        assert!(matches!(bad.body(), Err(MaaFormatError::HclReport(_))));
    }
}
