//! `POST {attestation}/attest/SevSnpVm` of the emulated Microsoft Azure Attestation
//! (PROTOCOLS.md §5.2 request, §3.8 verification, §5.4 token, §9.1 traps 13-16): parses the
//! request ([`parse_attest_request`], every base64 flavour, pretty-printed inner JSON), verifies
//! the SNP report against the built-in AMD roots plus the state directory's test ARK, checks the
//! runtime-data binding, `initTimeData` against HOST_DATA, no DEBUG, and the instance's
//! attestation policy (or the request's `draftPolicyForAttestation`;
//! [`crate::emulator::attestation_policy`]), then issues the RS256 token with the claim names, nesting and JSON types of real MAA tokens.
//!
//! Refusals are 400 with Azure's error body: `InvalidParameter` for a malformed request or
//! evidence that does not verify, `PolicyEvaluationError` for the policy; the message starts with
//! the skrd error code ([`AttestError`]) and says which check failed.
//!
//! Not done: `Endorsements` (ACI UVM reference info) are checked for shape only, their COSE
//! signature is not verified (no Microsoft UVM signing key here); a policy's issuance rules are
//! not evaluated (the token carries the built-in claim set).

use std::sync::Arc;

use rand_core::{OsRng, RngCore};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::http::{Request, Response};
use super::maa::azure_error;
use super::state::State;
use crate::error::ErrorCode;
use crate::format::jose::b64;
use crate::format::json::{parse_strict, type_name};
use crate::format::snp::{
    check_report_data_binding, parse_certs, verify_report, Report, SnpError, TrustStore,
};

/// api-versions accepted on the attest paths (PROTOCOLS.md §5.1 table).
pub const API_VERSIONS: [&str; 4] = [
    "2020-10-01",
    "2022-08-01",
    "2023-04-01-preview",
    "2025-06-01",
];
/// Token lifetime: `exp - iat` of every real MAA token (§5.4).
pub const TOKEN_LIFETIME_S: i64 = 28_800;
use crate::emulator::attestation_policy::AttestationPolicy;
pub use crate::emulator::attestation_policy::DEFAULT_POLICY;
/// GuestPolicy DEBUG bit (PROTOCOLS.md §3.3).
const POLICY_DEBUG_BIT: u64 = 1 << 19;

/// Why an attest request is refused.
#[derive(Debug, thiserror::Error)]
pub enum AttestError {
    /// The body is not a JSON object.
    #[error("the request body is not a JSON object: {reason}; send AttestSevSnpVmRequest JSON")]
    BodyInvalid {
        /// The parser's reason or the JSON type found.
        reason: String,
    },
    /// A required field is absent.
    #[error("required field {field} is missing from the request")]
    FieldMissing {
        /// The field path.
        field: String,
    },
    /// A field has the wrong JSON type or value.
    #[error("field {field}: expected {expected}, found {found}")]
    FieldInvalid {
        /// The field path.
        field: String,
        /// What is accepted.
        expected: &'static str,
        /// What was sent.
        found: String,
    },
    /// A field is not base64 of any flavour.
    #[error("field {field} is not base64 or base64url (padded or not): {reason}")]
    FieldBase64 {
        /// The field path.
        field: String,
        /// The decoder's reason.
        reason: String,
    },
    /// A decoded field is not the JSON it must be.
    #[error("field {field} does not decode to a JSON object: {reason}")]
    FieldJson {
        /// The field path.
        field: String,
        /// The parser's reason.
        reason: String,
    },
    /// The SNP report or the certificate chain cannot be parsed.
    #[error("field {field}: {source}")]
    Evidence {
        /// `report.SnpReport` or `report.VcekCertChain`.
        field: &'static str,
        /// The parser's error.
        source: Box<SnpError>,
    },
    /// The report does not verify against the chain and the trusted roots (§3.8 steps 1-6).
    #[error("SNP report verification failed: {source}")]
    Verify {
        /// The verifier's error.
        source: Box<SnpError>,
    },
    /// REPORT_DATA does not bind the runtime data (§3.8 step 7).
    #[error("runtimeData binding failed: {source}")]
    Binding {
        /// The verifier's error.
        source: Box<SnpError>,
    },
    /// SHA-256 of `initTimeData` differs from HOST_DATA.
    #[error("initTimeData binding failed: HOST_DATA is {found}, SHA-256(initTimeData.data) is {expected}; send the init-time data the VM was launched with")]
    InitTimeMismatch {
        /// SHA-256 of the decoded data, hex.
        expected: String,
        /// HOST_DATA, hex.
        found: String,
    },
    /// The default policy refuses debuggable guests.
    #[error("policy evaluation failed: the guest policy {policy:#x} allows DEBUG (bit 19); the default policy accepts only non-debuggable guests")]
    DebugAllowed {
        /// The report's POLICY.
        policy: u64,
    },
    /// The instance's attestation policy (or the request's draft policy) refuses the guest.
    #[error("policy evaluation failed: {refusal} of the {which} attestation policy; change the guest or the policy (skr-emulator serve --attestation-policy)")]
    PolicyDenied {
        /// Which rule decided.
        refusal: String,
        /// "configured" or "draft".
        which: &'static str,
    },
    /// `draftPolicyForAttestation` is not a valid policy text.
    #[error("draftPolicyForAttestation: {source}")]
    DraftPolicy {
        /// The parser's error.
        source: crate::emulator::attestation_policy::PolicyTextError,
    },
}

impl ErrorCode for AttestError {
    fn code(&self) -> &'static str {
        match self {
            Self::BodyInvalid { .. } => "maa-body-invalid",
            Self::FieldMissing { .. } => "maa-field-missing",
            Self::FieldInvalid { .. } => "maa-field-invalid",
            Self::FieldBase64 { .. } => "maa-field-base64-invalid",
            Self::FieldJson { .. } => "maa-field-json-invalid",
            Self::Evidence { source, .. } => source.code(),
            Self::Verify { source } => source.code(),
            Self::Binding { source } => source.code(),
            Self::InitTimeMismatch { .. } => "maa-inittime-mismatch",
            Self::DebugAllowed { .. } => "maa-policy-debug-allowed",
            Self::PolicyDenied { .. } => "maa-policy-denied",
            Self::DraftPolicy { source } => source.code(),
        }
    }
}

impl AttestError {
    /// The Azure error code of the response (`x-ms-error-code`).
    pub fn azure_code(&self) -> &'static str {
        match self {
            Self::DebugAllowed { .. } | Self::PolicyDenied { .. } => "PolicyEvaluationError",
            _ => "InvalidParameter",
        }
    }

    /// The 400 response: Azure's body, the message prefixed with the skrd code.
    pub fn response(&self) -> Response {
        azure_error(
            400,
            self.azure_code(),
            &format!("{}: {}", self.code(), self),
        )
    }
}

/// `runtimeData` / `initTimeData`.
#[derive(Debug, Clone, PartialEq)]
pub struct DataBlob {
    /// The decoded bytes.
    pub data: Vec<u8>,
    /// `dataType` was "JSON": the parsed data.
    pub json: Option<Value>,
}

/// A parsed `AttestSevSnpVmRequest`.
#[derive(Debug, Clone, PartialEq)]
pub struct AttestRequest {
    /// The 1184-byte report (decoded `SnpReport`; length checked by `Report::parse`).
    pub snp_report: Vec<u8>,
    /// The decoded `VcekCertChain` (PEM text).
    pub vcek_cert_chain: Vec<u8>,
    /// `Endorsements` present (shape checked).
    pub endorsements: bool,
    /// `runtimeData`.
    pub runtime_data: Option<DataBlob>,
    /// `initTimeData`.
    pub init_time_data: Option<DataBlob>,
    /// `nonce`, as a string (a JSON number is echoed as its decimal text, trap 15).
    pub nonce: Option<String>,
    /// `draftPolicyForAttestation`.
    pub draft_policy: Option<String>,
}

pub(super) fn b64_field(field: &str, v: &Value) -> Result<Vec<u8>, AttestError> {
    let text = v.as_str().ok_or_else(|| AttestError::FieldInvalid {
        field: field.to_string(),
        expected: "a base64 string",
        found: type_name(v).to_string(),
    })?;
    b64::decode_any(field, text.trim()).map_err(|e| AttestError::FieldBase64 {
        field: field.to_string(),
        reason: e.to_string(),
    })
}

pub(super) fn json_object(field: &str, bytes: &[u8]) -> Result<Map<String, Value>, AttestError> {
    match parse_strict(bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(v) => Err(AttestError::FieldJson {
            field: field.to_string(),
            reason: format!("it is a JSON {}", type_name(&v)),
        }),
        Err(reason) => Err(AttestError::FieldJson {
            field: field.to_string(),
            reason,
        }),
    }
}

pub(super) fn required<'a>(
    obj: &'a Map<String, Value>,
    prefix: &str,
    name: &str,
) -> Result<&'a Value, AttestError> {
    obj.get(name).ok_or_else(|| AttestError::FieldMissing {
        field: format!("{prefix}{name}"),
    })
}

fn data_blob(field: &str, v: &Value) -> Result<DataBlob, AttestError> {
    let obj = v.as_object().ok_or_else(|| AttestError::FieldInvalid {
        field: field.to_string(),
        expected: "an object {data, dataType}",
        found: type_name(v).to_string(),
    })?;
    let prefix = format!("{field}.");
    let data = b64_field(&format!("{field}.data"), required(obj, &prefix, "data")?)?;
    let json = match obj.get("dataType") {
        None | Some(Value::Null) => None,
        Some(Value::String(t)) if t.eq_ignore_ascii_case("binary") => None,
        Some(Value::String(t)) if t.eq_ignore_ascii_case("json") => {
            let parsed = parse_strict(&data).map_err(|reason| AttestError::FieldJson {
                field: format!("{field}.data"),
                reason,
            })?;
            Some(parsed)
        }
        Some(other) => {
            return Err(AttestError::FieldInvalid {
                field: format!("{field}.dataType"),
                expected: "\"JSON\" or \"Binary\"",
                found: other.to_string(),
            })
        }
    };
    Ok(DataBlob { data, json })
}

/// Parses an `AttestSevSnpVmRequest` body (PROTOCOLS.md §5.2); no verification.
pub fn parse_attest_request(body: &[u8]) -> Result<AttestRequest, AttestError> {
    let top = match parse_strict(body) {
        Ok(Value::Object(m)) => m,
        Ok(v) => {
            return Err(AttestError::BodyInvalid {
                reason: format!("it is a JSON {}", type_name(&v)),
            })
        }
        Err(reason) => return Err(AttestError::BodyInvalid { reason }),
    };
    let report_json = b64_field("report", required(&top, "", "report")?)?;
    let report = json_object("report", &report_json)?;
    let snp_report = b64_field(
        "report.SnpReport",
        required(&report, "report.", "SnpReport")?,
    )?;
    let vcek_cert_chain = b64_field(
        "report.VcekCertChain",
        required(&report, "report.", "VcekCertChain")?,
    )?;
    let endorsements = match report.get("Endorsements") {
        None | Some(Value::Null) => false,
        Some(v) => {
            let bytes = b64_field("report.Endorsements", v)?;
            let e = json_object("report.Endorsements", &bytes)?;
            match e.get("Uvm") {
                Some(Value::Array(items)) => {
                    for (i, item) in items.iter().enumerate() {
                        b64_field(&format!("report.Endorsements.Uvm[{i}]"), item)?;
                    }
                }
                Some(v) => {
                    return Err(AttestError::FieldInvalid {
                        field: "report.Endorsements.Uvm".to_string(),
                        expected: "an array of base64 strings",
                        found: type_name(v).to_string(),
                    })
                }
                None => {
                    return Err(AttestError::FieldMissing {
                        field: "report.Endorsements.Uvm".to_string(),
                    })
                }
            }
            true
        }
    };
    let runtime_data = match top.get("runtimeData") {
        None | Some(Value::Null) => None,
        Some(v) => Some(data_blob("runtimeData", v)?),
    };
    let init_time_data = match top.get("initTimeData") {
        None | Some(Value::Null) => None,
        Some(v) => Some(data_blob("initTimeData", v)?),
    };
    let nonce = match top.get("nonce") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) if n.is_u64() || n.is_i64() => Some(n.to_string()),
        Some(v) => {
            return Err(AttestError::FieldInvalid {
                field: "nonce".to_string(),
                expected: "a string or an integer",
                found: v.to_string(),
            })
        }
    };
    let draft_policy = match top.get("draftPolicyForAttestation") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(v) => {
            return Err(AttestError::FieldInvalid {
                field: "draftPolicyForAttestation".to_string(),
                expected: "a string",
                found: type_name(v).to_string(),
            })
        }
    };
    Ok(AttestRequest {
        snp_report,
        vcek_cert_chain,
        endorsements,
        runtime_data,
        init_time_data,
        nonce,
        draft_policy,
    })
}

/// Fuzz entry point: parses arbitrary bytes as an attest request (no verification). Never
/// panics; the result is ignored.
pub fn fuzz_attest_request(data: &[u8]) {
    if let Ok(req) = parse_attest_request(data) {
        if let Ok(report) = Report::parse(&req.snp_report) {
            let _ = report_claims(&report, 0, 0, 0, 0);
        }
        let _ = parse_certs(&req.vcek_cert_chain);
    }
}

/// `x-ms-policy-hash`: BASE64URL(SHA256(UTF8(BASE64URL(UTF8(policy))))) (§5.4).
pub fn policy_hash(policy: &str) -> String {
    let inner = b64::encode_url(policy.as_bytes());
    b64::encode_url(&Sha256::digest(inner.as_bytes()))
}

/// The `x-ms-sevsnpvm-*` claims of `report` with the SVNs given (decoded REPORTED_TCB).
pub(super) fn report_claims(
    report: &Report,
    bl: u8,
    tee: u8,
    snp: u8,
    ucode: u8,
) -> Map<String, Value> {
    let mut m = Map::new();
    let mut put = |k: &str, v: Value| {
        m.insert(format!("x-ms-sevsnpvm-{k}"), v);
    };
    put(
        "authorkeydigest",
        json!(hex::encode(report.author_key_digest)),
    );
    put("bootloader-svn", json!(bl));
    put("familyId", json!(hex::encode(report.family_id)));
    put("guestsvn", json!(report.guest_svn));
    put("hostdata", json!(hex::encode(report.host_data)));
    put("idkeydigest", json!(hex::encode(report.id_key_digest)));
    put("imageId", json!(hex::encode(report.image_id)));
    put("is-debuggable", json!(report.policy.debug_allowed));
    put("launchmeasurement", json!(hex::encode(report.measurement)));
    put("microcode-svn", json!(ucode));
    put("migration-allowed", json!(report.policy.migrate_ma_allowed));
    put("reportdata", json!(hex::encode(report.report_data)));
    put("reportid", json!(hex::encode(report.report_id)));
    put("smt-allowed", json!(report.policy.smt_allowed));
    put("snpfw-svn", json!(snp));
    put("tee-svn", json!(tee));
    put("vmpl", json!(report.vmpl));
    m
}

/// The SevSnpVm attestation of one instance: trust roots, issuer and signing key.
#[derive(Debug)]
pub struct SevSnpVm {
    trust: TrustStore,
    issuer: String,
    state: Arc<State>,
    policy: AttestationPolicy,
    token_lifetime: i64,
}

impl SevSnpVm {
    /// Issues tokens valid for `seconds` (`exp - iat`) instead of [`TOKEN_LIFETIME_S`]
    /// (`serve --token-lifetime`: tests of the client's refresh).
    pub fn set_token_lifetime(&mut self, seconds: i64) {
        self.token_lifetime = seconds;
    }

    /// `exp - iat` of the tokens issued.
    pub fn token_lifetime(&self) -> i64 {
        self.token_lifetime
    }

    /// The built-in AMD roots plus `test_ark` (the state directory's test ARK) explicitly trusted;
    /// `policy` is the instance's attestation policy.
    pub fn new(
        state: Arc<State>,
        issuer: String,
        test_ark: Option<&[u8]>,
        policy: AttestationPolicy,
    ) -> Result<Self, SnpError> {
        let mut trust = TrustStore::with_builtin_roots()?;
        if let Some(der) = test_ark {
            for ark in parse_certs(der)? {
                trust.trust_ark(ark)?;
            }
        }
        Ok(Self {
            trust,
            issuer,
            state,
            policy,
            token_lifetime: TOKEN_LIFETIME_S,
        })
    }

    /// Verifies an SNP report with its VCEK chain at `now` (§3.8 steps 1-6), the binding of
    /// `runtime_data` into REPORT_DATA (step 7) when given, and the default policy (no DEBUG);
    /// returns the report and its `x-ms-sevsnpvm-*` claims. Shared with `/attest/AzureGuest`.
    pub fn verify_evidence(
        &self,
        snp_report: &[u8],
        cert_chain: &[u8],
        runtime_data: Option<&[u8]>,
        now: i64,
    ) -> Result<(Report, Map<String, Value>), AttestError> {
        let report = Report::parse(snp_report).map_err(|source| AttestError::Evidence {
            field: "report.SnpReport",
            source: Box::new(source),
        })?;
        let certs = parse_certs(cert_chain).map_err(|source| AttestError::Evidence {
            field: "report.VcekCertChain",
            source: Box::new(source),
        })?;
        let verified = verify_report(&report, &certs, &self.trust, now).map_err(|source| {
            AttestError::Verify {
                source: Box::new(source),
            }
        })?;
        if let Some(rt) = runtime_data {
            check_report_data_binding(&report, rt).map_err(|source| AttestError::Binding {
                source: Box::new(source),
            })?;
        }
        if report.policy.raw & POLICY_DEBUG_BIT != 0 {
            return Err(AttestError::DebugAllowed {
                policy: report.policy.raw,
            });
        }
        let tcb = verified.reported_tcb;
        let claims = report_claims(&report, tcb.bootloader, tcb.tee, tcb.snp, tcb.microcode);
        Ok((report, claims))
    }

    /// The instance's attestation policy.
    pub fn policy(&self) -> &AttestationPolicy {
        &self.policy
    }

    /// The issuer (`iss`, and `{iss}/certs` as `jku`).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Signs `claims` as an MAA token (header `jku` = `{issuer}/certs`).
    pub fn sign(&self, claims: &Value) -> Result<String, crate::emulator::EmulatorError> {
        let jku = format!("{}/certs", self.issuer);
        self.state.maa.sign_jwt(claims, &[("jku", &jku)])
    }

    /// Verifies `body` at `now` (Unix seconds) and returns the token's claims.
    pub fn attest_claims(&self, body: &[u8], now: i64) -> Result<Value, AttestError> {
        let req = parse_attest_request(body)?;
        let runtime = req.runtime_data.as_ref().map(|r| r.data.as_slice());
        let (report, mut claims) =
            self.verify_evidence(&req.snp_report, &req.vcek_cert_chain, runtime, now)?;
        if let Some(init) = &req.init_time_data {
            let digest = Sha256::digest(&init.data);
            if digest[..] != report.host_data[..] {
                return Err(AttestError::InitTimeMismatch {
                    expected: hex::encode(digest),
                    found: hex::encode(report.host_data),
                });
            }
        }

        let draft = match req.draft_policy.as_deref() {
            Some(text) => Some(
                AttestationPolicy::parse(text)
                    .map_err(|source| AttestError::DraftPolicy { source })?,
            ),
            None => None,
        };
        let (policy, which) = match &draft {
            Some(p) => (p, "draft"),
            None => (&self.policy, "configured"),
        };
        // Real tokens: "azure-compliant-cvm" for CVM (HCL) evidence, "azure-compliant-uvm" for
        // ACI evidence, which always carries UVM endorsements (PROTOCOLS.md §5.4).
        let compliance = if req.endorsements {
            "azure-compliant-uvm"
        } else {
            "azure-compliant-cvm"
        };
        let mut put = |k: &str, v: Value| {
            claims.insert(k.to_string(), v);
        };
        put("exp", json!(now.saturating_add(self.token_lifetime)));
        put("iat", json!(now));
        put("nbf", json!(now));
        put("iss", json!(self.issuer));
        put("jti", json!(new_jti()));
        put("x-ms-attestation-type", json!("sevsnpvm"));
        put("x-ms-compliance-status", json!(compliance));
        put("x-ms-policy-hash", json!(policy_hash(policy.text())));
        put("x-ms-ver", json!("1.0"));
        if let Some(nonce) = req.nonce {
            put("nonce", json!(nonce));
        }
        if let Some(Some(rt)) = req.runtime_data.map(|r| r.json) {
            put("x-ms-runtime", rt);
        }
        if let Some(Some(it)) = req.init_time_data.map(|r| r.json) {
            put("x-ms-inittime", it);
        }
        policy
            .authorize(&claims)
            .map_err(|r| AttestError::PolicyDenied {
                refusal: r.to_string(),
                which,
            })?;
        Ok(Value::Object(claims))
    }

    /// Handles `POST /attest/SevSnpVm` (method and api-version already checked).
    pub fn handle(&self, req: &Request) -> Response {
        let claims = match self.attest_claims(&req.body, unix_now()) {
            Ok(c) => c,
            Err(e) => {
                tracing::info!(code = e.code(), error = %e, "SevSnpVm attestation refused");
                return e.response();
            }
        };
        match self.sign(&claims) {
            Ok(token) => Response::json(200, &json!({ "token": token })),
            Err(e) => azure_error(500, "InternalServerError", &format!("{}: {e}", e.code())),
        }
    }
}

/// The wall clock in Unix seconds (0 before 1970).
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A fresh `jti`: 32 random bytes as 64 lower-case hex characters (§5.4).
pub fn new_jti() -> String {
    let mut jti = [0u8; 32];
    OsRng.fill_bytes(&mut jti);
    hex::encode(jti)
}

/// Checks the `api-version` query of an attest call: `None` when acceptable, else the 400.
pub fn check_api_version(req: &Request) -> Option<Response> {
    match req.query_all("api-version").as_slice() {
        [] => Some(azure_error(
            400,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        )),
        [v] if API_VERSIONS.contains(v) => None,
        [v] => Some(azure_error(
            400,
            "UnsupportedApiVersionValue",
            &format!(
                "The api-version '{v}' is not supported; supported versions: {}",
                API_VERSIONS.join(", ")
            ),
        )),
        _ => Some(azure_error(
            400,
            "InvalidParameter",
            "The api-version query parameter must be given once.",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_hash_matches_the_formula() {
        // python3: i = base64.urlsafe_b64encode(b"x").rstrip(b"=")  -> b"eA";
        // base64.urlsafe_b64encode(hashlib.sha256(i).digest()).rstrip(b"=")
        let expected = "tu14E33USzgoR6LsqWvoz6XG1eoW2hCHXGU81diGeOE";
        assert_eq!(policy_hash("x"), expected);
    }

    #[test]
    fn malformed_bodies_name_the_field() {
        let cases: [(&[u8], &str, &str); 6] = [
            (b"[]", "maa-body-invalid", "JSON array"),
            (b"{}", "maa-field-missing", "report"),
            (br#"{"report": 5}"#, "maa-field-invalid", "report"),
            (br#"{"report": "!!"}"#, "maa-field-base64-invalid", "report"),
            (
                br#"{"report": "e30"}"#,
                "maa-field-missing",
                "report.SnpReport",
            ),
            (
                br#"{"report": "e30", "nonce": 1.5}"#,
                "maa-field-missing",
                "report.SnpReport",
            ),
        ];
        for (body, code, needle) in cases {
            let e = parse_attest_request(body).unwrap_err();
            assert_eq!(e.code(), code, "{}", String::from_utf8_lossy(body));
            assert!(e.to_string().contains(needle), "{e}");
            assert_eq!(e.azure_code(), "InvalidParameter");
        }
    }

    #[test]
    fn nonce_number_becomes_string() {
        // {"SnpReport":"AA","VcekCertChain":"AA"} in base64url: python3 base64.urlsafe_b64encode.
        let inner = b64::encode_url(br#"{"SnpReport":"AA","VcekCertChain":"AA"}"#);
        let body = format!(r#"{{"report":"{inner}","nonce":7394904505194784658}}"#);
        let r = parse_attest_request(body.as_bytes()).unwrap();
        assert_eq!(r.nonce.as_deref(), Some("7394904505194784658"));
        let body = format!(r#"{{"report":"{inner}","nonce":true}}"#);
        assert_eq!(
            parse_attest_request(body.as_bytes()).unwrap_err().code(),
            "maa-field-invalid"
        );
        let body =
            format!(r#"{{"report":"{inner}","runtimeData":{{"data":"e30","dataType":"XML"}}}}"#);
        let e = parse_attest_request(body.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("runtimeData.dataType"), "{e}");
        let body = format!(r#"{{"report":"{inner}","nonce":1.5}}"#);
        let e = parse_attest_request(body.as_bytes()).unwrap_err();
        assert_eq!(e.code(), "maa-field-invalid");
        assert!(e.to_string().contains("nonce"), "{e}");
    }

    #[test]
    fn fuzz_never_panics_on_mutated_bodies() {
        let report = include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/real/oak/genoa_oc_report.bin"
        ));
        let inner = json!({"SnpReport": b64::encode_url(report), "VcekCertChain": "AA"});
        let body = json!({
            "report": b64::encode_url(inner.to_string().as_bytes()),
            "runtimeData": {"data": "e30", "dataType": "JSON"},
            "nonce": 5,
        })
        .to_string()
        .into_bytes();
        // The unmutated body parses, and the report inside it is the real one.
        let parsed = parse_attest_request(&body).unwrap();
        assert_eq!(parsed.snp_report, report.to_vec());
        assert_eq!(parsed.runtime_data.unwrap().json, Some(json!({})));
        super::super::for_each_mutation(&body, 0x9E37_79B9_7F4A_7C15, fuzz_attest_request);
        for body in [&b""[..], b"{", b"{\"report\":\"\"}", &[0xff, 0xfe, 0x00]] {
            fuzz_attest_request(body);
        }
    }
}
