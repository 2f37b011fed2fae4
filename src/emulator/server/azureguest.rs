//! `POST {attestation}/attest/AzureGuest` of the emulated Microsoft Azure Attestation
//! (PROTOCOLS.md §5.3 request and encrypted response, §4.8 "Verify", §5.4 AzureGuest claims).
//!
//! [`parse_guest_request`] reads `{"AttestationInfo": b64url(JSON)}` (also `attestationInfo`),
//! every blob in any base64 flavour, the OS version as a number or a numeric string and any JSON
//! object as `ClientPayload` (the C++ library's and Microsoft's Python tool's shapes).
//! [`AzureGuest::attest_claims`] then checks, each with its own error code:
//! 1. the SNP report, its VCEK chain and the runtime-data binding (shared with `SevSnpVm`,
//!    [`SevSnpVm::verify_evidence`]);
//! 2. `HCLAkPub` of the runtime data == `TpmInfo.AikPub`; `AikCert` chains to the emulator's AK
//!    CA (`ak-ca.pem` of the state directory) and carries the same key;
//! 3. `PcrQuote` is a TPM quote signed by the AK whose pcrDigest is SHA-256 of the sent `PCRs`
//!    in selection order (and the selection equals `PcrSet`);
//! 4. `EncKeyCertifyInfo` is a certify attestation signed by the AK naming `EncKeyPub`;
//! 5. `EncKeyPub` is a decryption-only key bound to this TPM (decrypt set, sign and restricted
//!    clear, fixedTPM and fixedParent set).
//!
//! The token (§5.4 AzureGuest claim set) carries `EncKeyPub` as `x-ms-runtime.keys[0]`
//! (`TpmEphemeralEncryptionKey`) and is returned encrypted to it ([`encrypt_response`]).
//!
//! Not done: the TCG log is not replayed (§4.8 step 6); the `x-ms-azurevm-*` boot claims that
//! real MAA derives from it are fixed values (secure boot from the runtime data's
//! `vm-configuration`, no debuggers, no test signing).

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use rand_core::{OsRng, RngCore};
use rsa::{Pkcs1v15Encrypt, RsaPublicKey};
use serde_json::{json, Map, Value};
use sha2::{Digest as _, Sha256};

use super::http::{Request, Response};
use super::maa::azure_error;
use super::sevsnpvm::{
    b64_field, json_object, new_jti, policy_hash, required, unix_now, AttestError, SevSnpVm,
};
use crate::error::ErrorCode;
use crate::format::hcl::{HclError, RuntimeData};
use crate::format::jose::b64;
use crate::format::jose::x5c::{verify_chain, ChainCert, ChainError};
use crate::format::json::type_name;
use crate::format::tpm::{
    verify_rsassa_sha256, Attest, Attested, ObjectAttributes, Public, TpmError, ALG_SHA256,
};

/// AAD of the AES-GCM response encryption (§5.3).
pub const TRANSPORT_KEY_AAD: &[u8] = b"Transport Key";
/// `kid` of the ephemeral key in the token's `x-ms-runtime.keys` (§5.4).
pub const EPHEMERAL_KID: &str = "TpmEphemeralEncryptionKey";

/// Why an AzureGuest request is refused.
#[derive(Debug, thiserror::Error)]
pub enum GuestError {
    /// A malformed request, or SNP evidence that does not verify (shared with SevSnpVm).
    #[error(transparent)]
    Request(#[from] AttestError),
    /// `IsolationInfo.Type` is not SevSnp.
    #[error("IsolationInfo.Type is {found:?}; this attestation service accepts only \"SevSnp\" confidential VMs")]
    IsolationUnsupported {
        /// The type sent.
        found: String,
    },
    /// A TPM structure does not parse.
    #[error("TpmInfo.{field}: {source}")]
    TpmStructure {
        /// The field.
        field: &'static str,
        /// The parser's error.
        source: TpmError,
    },
    /// The runtime data is not the HCL runtime-data JSON.
    #[error("IsolationInfo.Evidence.RunTimeData: {source}")]
    RuntimeData {
        /// The parser's error.
        source: HclError,
    },
    /// The runtime data has no HCLAkPub.
    #[error("the runtime data has no key with kid \"HCLAkPub\"; send the HCL report's variable data unchanged")]
    HclAkPubMissing,
    /// HCLAkPub differs from AikPub.
    #[error("TpmInfo.AikPub (modulus {found}...) is not the HCLAkPub of the runtime data (modulus {expected}...); send the AK at 0x81000003 of the TPM that produced the HCL report")]
    AikPubMismatch {
        /// First bytes of HCLAkPub's modulus, hex.
        expected: String,
        /// First bytes of AikPub's modulus, hex.
        found: String,
    },
    /// The AK certificate does not chain to the AK CA.
    #[error("TpmInfo.AikCert does not chain to the emulator's AK CA: {source}; provision the TPM with `skr-emulator provision-tpm` on this state directory")]
    AikCertUntrusted {
        /// The chain check's error.
        source: ChainError,
    },
    /// The AK certificate holds another key.
    #[error("TpmInfo.AikCert certifies another key than TpmInfo.AikPub (certificate modulus {found}..., AikPub {expected}...); re-provision the AK certificate")]
    AikCertKeyMismatch {
        /// AikPub's modulus prefix, hex.
        expected: String,
        /// The certificate's modulus prefix, hex.
        found: String,
    },
    /// The quote's signature fails.
    #[error("TpmInfo.PcrSignature: {source}")]
    QuoteSignature {
        /// The verifier's error.
        source: TpmError,
    },
    /// The quoted PCRs are not the ones sent.
    #[error("the quote selects PCRs {quoted:?} (SHA-256 bank) but PcrSet/PCRs list {sent:?}; send the values of exactly the quoted PCRs")]
    PcrSelectionMismatch {
        /// PCRs in the quote's selection.
        quoted: Vec<u32>,
        /// PCRs in the request.
        sent: Vec<u32>,
    },
    /// The pcrDigest does not match the sent PCR values.
    #[error("the quote's pcrDigest is {found} but SHA-256 of the sent PCR values is {expected}; send the PCR values read together with the quote")]
    PcrDigestMismatch {
        /// SHA-256 over the sent values, hex.
        expected: String,
        /// The quote's pcrDigest, hex.
        found: String,
    },
    /// The certify signature fails.
    #[error("TpmInfo.EncKeyCertifyInfoSignature: {source}")]
    CertifySignature {
        /// The verifier's error.
        source: TpmError,
    },
    /// The certify names another object.
    #[error("EncKeyCertifyInfo certifies the object named {found}, but the name of EncKeyPub is {expected}; certify the ephemeral key that is sent")]
    CertifyNameMismatch {
        /// Name of EncKeyPub, hex.
        expected: String,
        /// Name in the certify info, hex.
        found: String,
    },
    /// EncKeyPub is not a TPM-bound decryption-only key.
    #[error("TpmInfo.EncKeyPub has objectAttributes {attributes:#010x}; an ephemeral encryption key needs decrypt, fixedTPM and fixedParent set and sign and restricted clear (PROTOCOLS.md §4.6)")]
    EncKeyAttributes {
        /// The attributes found.
        attributes: u32,
    },
}

impl ErrorCode for GuestError {
    fn code(&self) -> &'static str {
        match self {
            Self::Request(e) => e.code(),
            Self::IsolationUnsupported { .. } => "maa-isolation-type-unsupported",
            Self::TpmStructure { source, .. } => source.code(),
            Self::RuntimeData { source } => source.code(),
            Self::HclAkPubMissing => "maa-hclakpub-missing",
            Self::AikPubMismatch { .. } => "maa-aikpub-mismatch",
            Self::AikCertUntrusted { .. } => "maa-aikcert-untrusted",
            Self::AikCertKeyMismatch { .. } => "maa-aikcert-key-mismatch",
            Self::QuoteSignature { .. } => "maa-quote-signature-invalid",
            Self::PcrSelectionMismatch { .. } => "maa-pcr-selection-mismatch",
            Self::PcrDigestMismatch { .. } => "maa-pcr-digest-mismatch",
            Self::CertifySignature { .. } => "maa-certify-signature-invalid",
            Self::CertifyNameMismatch { .. } => "maa-certify-name-mismatch",
            Self::EncKeyAttributes { .. } => "maa-enckey-attributes-invalid",
        }
    }
}

impl GuestError {
    /// The 400 response: Azure's body, the message prefixed with the skrd code.
    pub fn response(&self) -> Response {
        let azure_code = match self {
            Self::Request(e) => e.azure_code(),
            _ => "InvalidParameter",
        };
        azure_error(400, azure_code, &format!("{}: {}", self.code(), self))
    }
}

/// `TpmInfo` of the request, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct TpmInfo {
    /// `AikCert` (DER, maybe padded).
    pub aik_cert: Vec<u8>,
    /// `AikPub` (TPM2B_PUBLIC).
    pub aik_pub: Vec<u8>,
    /// `PcrQuote` (TPMS_ATTEST).
    pub pcr_quote: Vec<u8>,
    /// `PcrSignature` (raw RSASSA).
    pub pcr_signature: Vec<u8>,
    /// `EncKeyPub` (TPM2B_PUBLIC).
    pub enc_key_pub: Vec<u8>,
    /// `EncKeyCertifyInfo` (TPMS_ATTEST).
    pub enc_key_certify_info: Vec<u8>,
    /// `EncKeyCertifyInfoSignature` (raw RSASSA).
    pub enc_key_certify_signature: Vec<u8>,
    /// `PcrSet`.
    pub pcr_set: Vec<u32>,
    /// `PCRs`: (Index, Digest).
    pub pcrs: Vec<(u32, Vec<u8>)>,
}

/// A parsed AzureGuest `AttestationInfo` (no verification).
#[derive(Debug, Clone, PartialEq)]
pub struct GuestRequest {
    /// `AttestationProtocolVersion`.
    pub protocol_version: String,
    /// `OSType`, decoded ("Linux").
    pub os_type: String,
    /// `OSDistro`, decoded.
    pub os_distro: String,
    /// `OSBuild`, decoded.
    pub os_build: String,
    /// `OSVersionMajor`.
    pub os_version_major: u64,
    /// `OSVersionMinor`.
    pub os_version_minor: u64,
    /// `TcgLogs`, decoded (may be empty).
    pub tcg_logs: Vec<u8>,
    /// `ClientPayload`, verbatim.
    pub client_payload: Option<Map<String, Value>>,
    /// `TpmInfo`.
    pub tpm: TpmInfo,
    /// `IsolationInfo.Type`.
    pub isolation_type: String,
    /// `Proof.SnpReport`, decoded.
    pub snp_report: Vec<u8>,
    /// `Proof.VcekCertChain`, decoded (PEM).
    pub vcek_cert_chain: Vec<u8>,
    /// `RunTimeData`, decoded (HCL variable data bytes).
    pub runtime_data: Vec<u8>,
}

/// `obj[name]` through `get` (`Value::as_str`, `as_array`, `as_object`), or the error naming
/// `prefix + name` and what was `expected`.
fn typed<'a, T: ?Sized>(
    obj: &'a Map<String, Value>,
    prefix: &str,
    name: &str,
    expected: &'static str,
    get: impl Fn(&'a Value) -> Option<&'a T>,
) -> Result<&'a T, AttestError> {
    let v = required(obj, prefix, name)?;
    get(v).ok_or_else(|| AttestError::FieldInvalid {
        field: format!("{prefix}{name}"),
        expected,
        found: type_name(v).to_string(),
    })
}

fn string_field<'a>(
    obj: &'a Map<String, Value>,
    prefix: &str,
    name: &str,
) -> Result<&'a str, AttestError> {
    typed(obj, prefix, name, "a string", Value::as_str)
}

/// An OS string: base64 of UTF-8 text (C++ library) or the text itself (other clients).
fn os_text(obj: &Map<String, Value>, name: &str) -> Result<String, AttestError> {
    let text = string_field(obj, "", name)?;
    match b64::decode_any(name, text) {
        Ok(bytes) if !bytes.is_empty() => match String::from_utf8(bytes) {
            Ok(s) if s.chars().all(|c| !c.is_control()) => Ok(s),
            _ => Ok(text.to_string()),
        },
        _ => Ok(text.to_string()),
    }
}

/// A number or a numeric string (the Python tool sends strings).
fn os_number(obj: &Map<String, Value>, name: &str) -> Result<u64, AttestError> {
    let v = required(obj, "", name)?;
    let n = match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    n.ok_or_else(|| AttestError::FieldInvalid {
        field: name.to_string(),
        expected: "a non-negative integer or a numeric string",
        found: v.to_string(),
    })
}

fn index_of(v: &Value, field: &str) -> Result<u32, AttestError> {
    v.as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .filter(|n| *n < 24)
        .ok_or_else(|| AttestError::FieldInvalid {
            field: field.to_string(),
            expected: "a PCR index 0-23",
            found: v.to_string(),
        })
}

fn array<'a>(obj: &'a Map<String, Value>, name: &str) -> Result<&'a Vec<Value>, AttestError> {
    typed(obj, "TpmInfo.", name, "an array", Value::as_array)
}

fn object<'a>(
    obj: &'a Map<String, Value>,
    prefix: &str,
    name: &str,
) -> Result<&'a Map<String, Value>, AttestError> {
    typed(obj, prefix, name, "an object", Value::as_object)
}

fn parse_tpm_info(info: &Map<String, Value>) -> Result<TpmInfo, AttestError> {
    let blob = |name: &str| {
        b64_field(
            &format!("TpmInfo.{name}"),
            required(info, "TpmInfo.", name)?,
        )
    };
    let pcr_set = array(info, "PcrSet")?
        .iter()
        .enumerate()
        .map(|(i, v)| index_of(v, &format!("TpmInfo.PcrSet[{i}]")))
        .collect::<Result<Vec<_>, _>>()?;
    let mut pcrs = Vec::new();
    for (i, item) in array(info, "PCRs")?.iter().enumerate() {
        let prefix = format!("TpmInfo.PCRs[{i}].");
        let o = item.as_object().ok_or_else(|| AttestError::FieldInvalid {
            field: format!("TpmInfo.PCRs[{i}]"),
            expected: "an object {Index, Digest}",
            found: type_name(item).to_string(),
        })?;
        let index = index_of(required(o, &prefix, "Index")?, &format!("{prefix}Index"))?;
        let digest = b64_field(&format!("{prefix}Digest"), required(o, &prefix, "Digest")?)?;
        pcrs.push((index, digest));
    }
    Ok(TpmInfo {
        aik_cert: blob("AikCert")?,
        aik_pub: blob("AikPub")?,
        pcr_quote: blob("PcrQuote")?,
        pcr_signature: blob("PcrSignature")?,
        enc_key_pub: blob("EncKeyPub")?,
        enc_key_certify_info: blob("EncKeyCertifyInfo")?,
        enc_key_certify_signature: blob("EncKeyCertifyInfoSignature")?,
        pcr_set,
        pcrs,
    })
}

/// Parses an `AttestAzureGuestRequest` body (PROTOCOLS.md §5.3); no verification.
pub fn parse_guest_request(body: &[u8]) -> Result<GuestRequest, AttestError> {
    let top = json_object_body(body)?;
    let (name, v) = match (top.get("AttestationInfo"), top.get("attestationInfo")) {
        (Some(v), _) => ("AttestationInfo", v),
        (None, Some(v)) => ("attestationInfo", v),
        (None, None) => {
            return Err(AttestError::FieldMissing {
                field: "AttestationInfo".to_string(),
            })
        }
    };
    let info = json_object(name, &b64_field(name, v)?)?;
    let protocol_version = match required(&info, "", "AttestationProtocolVersion")? {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => {
            return Err(AttestError::FieldInvalid {
                field: "AttestationProtocolVersion".to_string(),
                expected: "a string such as \"2.0\"",
                found: type_name(other).to_string(),
            })
        }
    };
    let tcg_logs = match info.get("TcgLogs") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) if s.is_empty() => Vec::new(),
        Some(v) => b64_field("TcgLogs", v)?,
    };
    let client_payload = match info.get("ClientPayload") {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) => Some(m.clone()),
        Some(other) => {
            return Err(AttestError::FieldInvalid {
                field: "ClientPayload".to_string(),
                expected: "a JSON object",
                found: type_name(other).to_string(),
            })
        }
    };
    let tpm = parse_tpm_info(object(&info, "", "TpmInfo")?)?;
    let iso = object(&info, "", "IsolationInfo")?;
    let isolation_type = string_field(iso, "IsolationInfo.", "Type")?.to_string();
    let evidence = object(iso, "IsolationInfo.", "Evidence")?;
    let proof_bytes = b64_field(
        "IsolationInfo.Evidence.Proof",
        required(evidence, "IsolationInfo.Evidence.", "Proof")?,
    )?;
    let proof = json_object("IsolationInfo.Evidence.Proof", &proof_bytes)?;
    let p = "IsolationInfo.Evidence.Proof.";
    let snp_report = b64_field(
        "IsolationInfo.Evidence.Proof.SnpReport",
        required(&proof, p, "SnpReport")?,
    )?;
    let vcek_cert_chain = b64_field(
        "IsolationInfo.Evidence.Proof.VcekCertChain",
        required(&proof, p, "VcekCertChain")?,
    )?;
    let runtime_data = b64_field(
        "IsolationInfo.Evidence.RunTimeData",
        required(evidence, "IsolationInfo.Evidence.", "RunTimeData")?,
    )?;
    Ok(GuestRequest {
        protocol_version,
        os_type: os_text(&info, "OSType")?,
        os_distro: os_text(&info, "OSDistro")?,
        os_build: os_text(&info, "OSBuild")?,
        os_version_major: os_number(&info, "OSVersionMajor")?,
        os_version_minor: os_number(&info, "OSVersionMinor")?,
        tcg_logs,
        client_payload,
        tpm,
        isolation_type,
        snp_report,
        vcek_cert_chain,
        runtime_data,
    })
}

fn json_object_body(body: &[u8]) -> Result<Map<String, Value>, AttestError> {
    match crate::format::json::parse_strict(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(v) => Err(AttestError::BodyInvalid {
            reason: format!("it is a JSON {}", type_name(&v)),
        }),
        Err(reason) => Err(AttestError::BodyInvalid { reason }),
    }
}

/// Fuzz entry point: parses arbitrary bytes as an AzureGuest request and its TPM structures
/// (no signature checks). Never panics; the result is ignored.
pub fn fuzz_guest_request(data: &[u8]) {
    if let Ok(req) = parse_guest_request(data) {
        let _ = Public::parse_tpm2b(&req.tpm.aik_pub);
        let _ = Public::parse_tpm2b(&req.tpm.enc_key_pub).map(|p| p.name());
        let _ = Attest::parse(&req.tpm.pcr_quote);
        let _ = Attest::parse(&req.tpm.enc_key_certify_info);
        let _ = RuntimeData::parse(&req.runtime_data);
        let _ = first_der(&req.tpm.aik_cert).map(|c| ChainCert::from_der("AikCert", c));
    }
}

fn prefix_hex(bytes: &[u8]) -> String {
    hex::encode(bytes.get(..8).unwrap_or(bytes))
}

/// The first DER TLV of `bytes` (the AK certificate NV index may carry padding, §4.1).
fn first_der(bytes: &[u8]) -> Option<&[u8]> {
    use der::Reader as _;
    let mut reader = der::SliceReader::new(bytes).ok()?;
    reader.tlv_bytes().ok()
}

fn rsa_jwk(p: &Public) -> Value {
    json!({
        "e": b64::encode_url(&strip_zeros(&p.exponent().to_be_bytes())),
        "key_ops": ["encrypt"],
        "kid": EPHEMERAL_KID,
        "kty": "RSA",
        "n": b64::encode_url(&p.modulus),
    })
}

fn strip_zeros(b: &[u8]) -> Vec<u8> {
    let first = b.iter().position(|x| *x != 0).unwrap_or(b.len());
    b.get(first..).unwrap_or(&[]).to_vec()
}

/// What the checks established, for the claims.
struct Verified {
    snp_claims: Map<String, Value>,
    runtime: Value,
    secure_boot: bool,
    vm_id: Option<String>,
    quoted_pcrs: Vec<u32>,
    enc_key: Public,
}

/// The AzureGuest attestation of one instance.
#[derive(Debug)]
pub struct AzureGuest {
    ak_ca: ChainCert,
}

impl AzureGuest {
    /// Trusts AK certificates issued by `ak_ca_der` (the state directory's AK CA).
    pub fn new(ak_ca_der: &[u8]) -> Result<Self, ChainError> {
        Ok(Self {
            ak_ca: ChainCert::from_der("AK CA", ak_ca_der)?,
        })
    }

    fn verify(&self, snp: &SevSnpVm, req: &GuestRequest, now: i64) -> Result<Verified, GuestError> {
        if !req.isolation_type.eq_ignore_ascii_case("SevSnp") {
            return Err(GuestError::IsolationUnsupported {
                found: req.isolation_type.clone(),
            });
        }
        // 1. SNP report, chain, REPORT_DATA = H(runtime data).
        let (_, snp_claims) = snp.verify_evidence(
            &req.snp_report,
            &req.vcek_cert_chain,
            Some(&req.runtime_data),
            now,
        )?;
        let rd = RuntimeData::parse(&req.runtime_data)
            .map_err(|source| GuestError::RuntimeData { source })?;
        let runtime = crate::format::json::parse_strict(&req.runtime_data).map_err(|reason| {
            AttestError::FieldJson {
                field: "IsolationInfo.Evidence.RunTimeData".to_string(),
                reason,
            }
        })?;
        // 2. HCLAkPub == AikPub; AikCert chains to the AK CA and holds the same key.
        let tpm = &req.tpm;
        let structure = |field| move |source| GuestError::TpmStructure { field, source };
        let ak = Public::parse_tpm2b(&tpm.aik_pub).map_err(structure("AikPub"))?;
        let hcl_ak = rd.ak_pub().ok_or(GuestError::HclAkPubMissing)?;
        let hcl_n = hcl_ak
            .modulus()
            .map_err(|source| GuestError::RuntimeData { source })?
            .unwrap_or_default();
        let hcl_e = hcl_ak
            .exponent()
            .map_err(|source| GuestError::RuntimeData { source })?
            .unwrap_or_default();
        if strip_zeros(&hcl_n) != strip_zeros(&ak.modulus)
            || strip_zeros(&hcl_e) != strip_zeros(&ak.exponent().to_be_bytes())
        {
            return Err(GuestError::AikPubMismatch {
                expected: prefix_hex(&hcl_n),
                found: prefix_hex(&ak.modulus),
            });
        }
        let cert_der = first_der(&tpm.aik_cert).unwrap_or(&tpm.aik_cert);
        let cert = ChainCert::from_der("TpmInfo.AikCert", cert_der)
            .map_err(|source| GuestError::AikCertUntrusted { source })?;
        verify_chain(
            std::slice::from_ref(&cert),
            std::slice::from_ref(&self.ak_ca),
            now,
        )
        .map_err(|source| GuestError::AikCertUntrusted { source })?;
        let cert_n = cert_modulus(&cert).unwrap_or_default();
        if strip_zeros(&cert_n) != strip_zeros(&ak.modulus) {
            return Err(GuestError::AikCertKeyMismatch {
                expected: prefix_hex(&ak.modulus),
                found: prefix_hex(&cert_n),
            });
        }
        // 3. The quote: signed by the AK, selection == PcrSet, digest over the sent values.
        let ak_e = ak.exponent();
        verify_rsassa_sha256(
            &ak.modulus,
            ak_e,
            &tpm.pcr_quote,
            &tpm.pcr_signature,
            "PCR quote",
        )
        .map_err(|source| GuestError::QuoteSignature { source })?;
        let quote = Attest::parse_quote(&tpm.pcr_quote).map_err(structure("PcrQuote"))?;
        let Attested::Quote {
            selection,
            pcr_digest,
        } = &quote.attested
        else {
            return Err(GuestError::TpmStructure {
                field: "PcrQuote",
                source: TpmError::WrongAttestType {
                    expected: crate::format::tpm::ST_ATTEST_QUOTE,
                    name: "TPM_ST_ATTEST_QUOTE",
                    found: quote.attest_type,
                },
            });
        };
        let mut quoted = Vec::new();
        for s in selection {
            if s.hash != ALG_SHA256 && !s.pcrs().is_empty() {
                return Err(GuestError::TpmStructure {
                    field: "PcrQuote",
                    source: TpmError::UnsupportedAlgorithm {
                        field: "TPMS_QUOTE_INFO.pcrSelect.hash",
                        alg: s.hash,
                        supported: "SHA-256 (0x000b)",
                    },
                });
            }
            quoted.extend(s.pcrs());
        }
        let mut sent_set = tpm.pcr_set.clone();
        sent_set.sort_unstable();
        let mut digest = Sha256::new();
        let mut listed = Vec::new();
        for index in &quoted {
            match tpm.pcrs.iter().find(|(i, _)| i == index) {
                Some((i, value)) => {
                    listed.push(*i);
                    digest.update(value);
                }
                None => break,
            }
        }
        if listed != quoted || sent_set != quoted {
            return Err(GuestError::PcrSelectionMismatch {
                quoted,
                sent: sent_set,
            });
        }
        let expected = digest.finalize();
        if expected[..] != pcr_digest[..] {
            return Err(GuestError::PcrDigestMismatch {
                expected: hex::encode(expected),
                found: hex::encode(pcr_digest),
            });
        }
        // 4. The certify: signed by the AK, naming EncKeyPub.
        let enc_key = Public::parse_tpm2b(&tpm.enc_key_pub).map_err(structure("EncKeyPub"))?;
        verify_rsassa_sha256(
            &ak.modulus,
            ak_e,
            &tpm.enc_key_certify_info,
            &tpm.enc_key_certify_signature,
            "ephemeral key certify info",
        )
        .map_err(|source| GuestError::CertifySignature { source })?;
        let certify = Attest::parse_certify(&tpm.enc_key_certify_info)
            .map_err(structure("EncKeyCertifyInfo"))?;
        let name = enc_key.name().map_err(structure("EncKeyPub"))?;
        if let Attested::Certify {
            name: certified, ..
        } = &certify.attested
        {
            if *certified != name {
                return Err(GuestError::CertifyNameMismatch {
                    expected: hex::encode(&name),
                    found: hex::encode(certified),
                });
            }
        }
        // 5. A TPM-bound decryption-only key.
        let a = enc_key.attributes;
        if !a.has(
            ObjectAttributes::DECRYPT
                | ObjectAttributes::FIXED_TPM
                | ObjectAttributes::FIXED_PARENT,
        ) || a.0 & (ObjectAttributes::SIGN | ObjectAttributes::RESTRICTED) != 0
        {
            return Err(GuestError::EncKeyAttributes { attributes: a.0 });
        }
        let secure_boot = rd
            .vm_configuration
            .as_ref()
            .and_then(|c| c.secure_boot)
            .unwrap_or(false);
        Ok(Verified {
            snp_claims,
            runtime,
            secure_boot,
            vm_id: rd.vm_unique_id().map(str::to_string),
            quoted_pcrs: quoted,
            enc_key,
        })
    }

    /// Verifies `body` at `now` (Unix seconds); returns the token's claims and the key the
    /// response is encrypted to.
    pub fn attest_claims(
        &self,
        snp: &SevSnpVm,
        body: &[u8],
        now: i64,
    ) -> Result<(Value, RsaPublicKey), GuestError> {
        let req = parse_guest_request(body)?;
        let v = self.verify(snp, &req, now)?;
        let enc_key = v
            .enc_key
            .rsa_key()
            .map_err(|source| GuestError::TpmStructure {
                field: "EncKeyPub",
                source,
            })?;
        let mut tee = v.snp_claims;
        tee.insert("x-ms-attestation-type".into(), json!("sevsnpvm"));
        tee.insert(
            "x-ms-compliance-status".into(),
            json!("azure-compliant-cvm"),
        );
        tee.insert("x-ms-runtime".into(), v.runtime);
        let mut runtime = Map::new();
        if let Some(payload) = req.client_payload {
            runtime.insert("client-payload".into(), Value::Object(payload));
        }
        runtime.insert("keys".into(), json!([rsa_jwk(&v.enc_key)]));
        let sb = v.secure_boot;
        let mut c = Map::new();
        let mut put = |k: &str, val: Value| {
            c.insert(k.to_string(), val);
        };
        put("exp", json!(now.saturating_add(snp.token_lifetime())));
        put("iat", json!(now));
        put("nbf", json!(now));
        put("iss", json!(snp.issuer()));
        put("jti", json!(new_jti()));
        put("secureboot", json!(sb));
        put("x-ms-attestation-type", json!("azurevm"));
        put(
            "x-ms-azurevm-attestation-protocol-ver",
            json!(req.protocol_version),
        );
        put("x-ms-azurevm-attested-pcrs", json!(v.quoted_pcrs));
        // Boot claims real MAA derives from the TCG log (not replayed here, see module docs).
        for (k, val) in [
            ("bootdebug-enabled", false),
            ("dbvalidated", sb),
            ("dbxvalidated", sb),
            ("debuggersdisabled", true),
            ("default-securebootkeysvalidated", sb),
            ("elam-enabled", false),
            ("flightsigning-enabled", false),
            ("hypervisordebug-enabled", false),
            ("is-windows", req.os_type.eq_ignore_ascii_case("windows")),
            ("kerneldebug-enabled", false),
            ("signingdisabled", true),
            ("testsigning-enabled", false),
        ] {
            put(&format!("x-ms-azurevm-{k}"), json!(val));
        }
        put("x-ms-azurevm-hvci-policy", json!(0));
        put("x-ms-azurevm-osbuild", json!(req.os_build));
        put("x-ms-azurevm-osdistro", json!(req.os_distro));
        put("x-ms-azurevm-ostype", json!(req.os_type));
        put("x-ms-azurevm-osversion-major", json!(req.os_version_major));
        put("x-ms-azurevm-osversion-minor", json!(req.os_version_minor));
        if let Some(id) = v.vm_id {
            put("x-ms-azurevm-vmid", json!(id));
        }
        put("x-ms-isolation-tee", Value::Object(tee));
        put("x-ms-policy-hash", json!(policy_hash(snp.policy().text())));
        put("x-ms-runtime", Value::Object(runtime));
        put("x-ms-ver", json!("1.0"));
        // The policy sees the incoming claims: the VM's and its isolation TEE's, flattened.
        let mut incoming = c.clone();
        if let Some(Value::Object(tee)) = c.get("x-ms-isolation-tee") {
            for (k, v) in tee {
                incoming.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        snp.policy()
            .authorize(&incoming)
            .map_err(|r| AttestError::PolicyDenied {
                refusal: r.to_string(),
                which: "configured",
            })?;
        Ok((Value::Object(c), enc_key))
    }

    /// Handles `POST /attest/AzureGuest` (method and api-version already checked).
    pub fn handle(&self, snp: &SevSnpVm, req: &Request) -> Response {
        let (claims, key) = match self.attest_claims(snp, &req.body, unix_now()) {
            Ok(c) => c,
            Err(e) => {
                tracing::info!(code = e.code(), error = %e, "AzureGuest attestation refused");
                return e.response();
            }
        };
        let internal = |what: &str| azure_error(500, "InternalServerError", what);
        let jwt = match snp.sign(&claims) {
            Ok(t) => t,
            Err(e) => return internal(&format!("{}: {e}", e.code())),
        };
        match encrypt_response(&key, jwt.as_bytes()) {
            Some(token) => Response::json(200, &json!({ "token": token })),
            None => internal("the response could not be encrypted to EncKeyPub"),
        }
    }
}

fn cert_modulus(cert: &ChainCert) -> Option<Vec<u8>> {
    use rsa::pkcs1::DecodeRsaPublicKey as _;
    use rsa::traits::PublicKeyParts as _;
    let spki = &cert.cert.tbs_certificate.subject_public_key_info;
    let key = RsaPublicKey::from_pkcs1_der(spki.subject_public_key.as_bytes()?).ok()?;
    Some(key.n().to_bytes_be())
}

/// The encrypted AzureGuest response token (§5.3): a random AES-256 key RSAES-PKCS1-v1_5
/// encrypted to `key`, the JWT under AES-256-GCM (12-byte IV, AAD "Transport Key", 16-byte
/// tag), the four fields as JSON, base64url without padding. `None` if encryption fails.
pub fn encrypt_response(key: &RsaPublicKey, jwt: &[u8]) -> Option<String> {
    let mut aes_key = zeroize::Zeroizing::new([0u8; 32]);
    OsRng.fill_bytes(aes_key.as_mut());
    let mut iv = [0u8; 12];
    OsRng.fill_bytes(&mut iv);
    let inner = key
        .encrypt(&mut OsRng, Pkcs1v15Encrypt, aes_key.as_ref())
        .ok()?;
    let cipher = Aes256Gcm::new_from_slice(aes_key.as_ref()).ok()?;
    let sealed = cipher
        .encrypt(
            &Nonce::from(iv),
            Payload {
                msg: jwt,
                aad: TRANSPORT_KEY_AAD,
            },
        )
        .ok()?;
    let split = sealed.len().checked_sub(16)?;
    let (ct, tag) = sealed.split_at(split);
    let std = base64::engine::general_purpose::STANDARD;
    let envelope = json!({
        "AuthenticationData": std.encode(tag),
        "EncryptedInnerKey": std.encode(inner),
        "EncryptionParams": {
            "BlockMode": "ChainingModeGCM",
            "BlockPadding": "PKCS7",
            "Cipher": "AES",
            "Iv": std.encode(iv),
            "KeySizeInBits": 256,
        },
        "Jwt": std.encode(ct),
    });
    Some(b64::encode_url(envelope.to_string().as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

    /// The C++ library's shape (PROTOCOLS.md §5.3) with placeholder blobs.
    fn info() -> Value {
        let proof = json!({"SnpReport": URL_SAFE_NO_PAD.encode([1u8; 4]),
                           "VcekCertChain": STANDARD.encode("PEM")});
        json!({
            "AttestationProtocolVersion": "2.0",
            "OSType": STANDARD.encode("Linux"),
            "OSDistro": STANDARD.encode("Ubuntu"),
            "OSVersionMajor": 24,
            "OSVersionMinor": 4,
            "OSBuild": STANDARD.encode("NotApplication"),
            "TcgLogs": "",
            "ClientPayload": {"nonce": "QURFMDEwMQ=="},
            "TpmInfo": {
                "AikCert": STANDARD.encode([0x30, 0]), "AikPub": STANDARD.encode([0, 0]),
                "PcrQuote": STANDARD.encode([0xff, 0x54]), "PcrSignature": STANDARD.encode([1]),
                "EncKeyPub": STANDARD.encode([0, 0]), "EncKeyCertifyInfo": STANDARD.encode([2]),
                "EncKeyCertifyInfoSignature": STANDARD.encode([3]),
                "PcrSet": [0, 1],
                "PCRs": [{"Index": 0, "Digest": STANDARD.encode([0u8; 32])},
                         {"Index": 1, "Digest": STANDARD.encode([1u8; 32])}],
            },
            "IsolationInfo": {"Type": "SevSnp", "Evidence": {
                "Proof": STANDARD.encode(proof.to_string()),
                "RunTimeData": STANDARD.encode("{}")}},
        })
    }

    fn body(name: &str, info: &Value) -> Vec<u8> {
        json!({ name: URL_SAFE_NO_PAD.encode(info.to_string()) })
            .to_string()
            .into_bytes()
    }

    #[test]
    fn both_client_shapes_parse_to_the_same_request() {
        let cpp = parse_guest_request(&body("AttestationInfo", &info())).unwrap();
        assert_eq!(
            (
                cpp.os_type.as_str(),
                cpp.os_distro.as_str(),
                cpp.os_build.as_str()
            ),
            ("Linux", "Ubuntu", "NotApplication")
        );
        assert_eq!((cpp.os_version_major, cpp.os_version_minor), (24, 4));
        assert_eq!(cpp.snp_report, vec![1u8; 4]);
        assert_eq!(cpp.vcek_cert_chain, b"PEM");
        assert_eq!(cpp.runtime_data, b"{}");
        assert_eq!(cpp.tpm.pcr_set, vec![0, 1]);
        assert_eq!(cpp.tpm.pcrs[1], (1, vec![1u8; 32]));
        assert!(cpp.tcg_logs.is_empty());
        // Python tool: plain OS strings, numeric strings, url-safe unpadded blobs, lower-case
        // field name.
        let mut py = info();
        py["OSType"] = json!("Linux");
        py["OSDistro"] = json!("Ubuntu");
        py["OSBuild"] = json!("NotApplication");
        py["OSVersionMajor"] = json!("24");
        py["OSVersionMinor"] = json!(" 4 ");
        py["TpmInfo"]["PcrSignature"] = json!(URL_SAFE_NO_PAD.encode([1]));
        let parsed = parse_guest_request(&body("attestationInfo", &py)).unwrap();
        assert_eq!(parsed, cpp);
    }

    #[test]
    fn malformed_requests_name_the_field() {
        let cases: [(&str, Value, &str, &str); 6] = [
            (
                "/TpmInfo/AikPub",
                json!("!!"),
                "maa-field-base64-invalid",
                "TpmInfo.AikPub",
            ),
            (
                "/TpmInfo/PcrSet",
                json!([0, 24]),
                "maa-field-invalid",
                "TpmInfo.PcrSet[1]",
            ),
            (
                "/TpmInfo/PCRs",
                json!([5]),
                "maa-field-invalid",
                "TpmInfo.PCRs[0]",
            ),
            (
                "/OSVersionMinor",
                json!(-1),
                "maa-field-invalid",
                "OSVersionMinor",
            ),
            (
                "/ClientPayload",
                json!("x"),
                "maa-field-invalid",
                "ClientPayload",
            ),
            (
                "/IsolationInfo/Evidence",
                json!(1),
                "maa-field-invalid",
                "IsolationInfo.Evidence",
            ),
        ];
        for (pointer, value, code, needle) in cases {
            let mut i = info();
            *i.pointer_mut(pointer).unwrap() = value;
            let e = parse_guest_request(&body("AttestationInfo", &i)).unwrap_err();
            assert_eq!(e.code(), code, "{pointer}: {e}");
            assert!(e.to_string().contains(needle), "{e}");
        }
        let mut i = info();
        i["TpmInfo"].as_object_mut().unwrap().remove("EncKeyPub");
        let e = parse_guest_request(&body("AttestationInfo", &i)).unwrap_err();
        assert_eq!(e.code(), "maa-field-missing");
        assert!(e.to_string().contains("TpmInfo.EncKeyPub"), "{e}");
        for bad in [&b"[]"[..], b"{}", b"{\"AttestationInfo\": 5}"] {
            assert!(parse_guest_request(bad).is_err());
        }
    }

    #[test]
    fn fuzz_never_panics_on_mutated_bodies() {
        let body = body("AttestationInfo", &info());
        assert!(parse_guest_request(&body).is_ok());
        super::super::for_each_mutation(&body, 0x2545_F491_4F6C_DD1D, fuzz_guest_request);
    }
}
