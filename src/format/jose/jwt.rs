//! JWT validation of MAA attestation tokens and typed access to the claims skrd relies on
//! (PROTOCOLS.md §5.4, §5.5; §9.1 traps 18, 19, 21, 23).
//!
//! Order of checks: JWS structure → `alg` → key by `kid` → signature → claims are a JSON
//! object → `iss` equals the expected issuer (one trailing '/' removed on both sides) →
//! `jku`, when present, is `<issuer>/certs` → `exp`/`nbf`/`iat` against the injected `now`
//! with a skew allowance → `x-ms-ver`. Nothing in the claims is looked at before the signature
//! verifies. Time is a parameter (Unix seconds): this module never reads a clock.

use serde_json::{Map, Value};

use super::error::JoseError;
use super::jwk::{parse_jwk, Jwk, KeySet};
use super::jws::{CompactJws, JwsHeader};
use crate::format::json::{parse_strict, type_name};

/// The one clock-skew allowance for `exp`, `nbf` and `iat` of attestation tokens: 5 minutes,
/// used by the attestation flow (`attest::trust`, the initramfs and the daemon) and as the
/// default of `skrctl token verify --skew`, so the operator's offline check gives the verdict
/// the flow gives.
///
/// Why 5 minutes (PROTOCOLS.md §9 "Clock skew"): MAA sets `nbf == iat` = the moment of issue, so
/// a guest whose clock is behind the provider's sees a fresh token as "not yet valid". That
/// happens where skrd matters most, in the initramfs before time synchronisation has run; a
/// smaller allowance turns a few minutes of drift into a failed boot unlock. On the `exp` side
/// the allowance buys nothing an attacker can use: a token lives 8 hours, the flow uses it within
/// seconds of its issue, and Key Vault checks `exp` itself with its own clock. 5 minutes is also
/// the default of Microsoft's token validation libraries (`TokenValidationParameters.ClockSkew`).
pub const TOKEN_SKEW_S: i64 = 300;
/// The `x-ms-ver` of every MAA token seen (§5.4).
pub const MAA_TOKEN_VERSION: &str = "1.0";

/// What a token must satisfy besides its signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validation {
    /// The expected issuer (MAA base URL, e.g. `https://sharedeus2.eus2.attest.azure.net`).
    pub issuer: String,
    /// The time to validate at, Unix seconds.
    pub now: i64,
    /// Allowed clock skew in seconds for `exp`, `nbf` and `iat`.
    pub skew_s: i64,
    /// The `x-ms-ver` required, if any.
    pub ms_ver: Option<String>,
    /// Require a present `jku` to equal `<issuer>/certs`.
    pub check_jku: bool,
}

impl Validation {
    /// The checks for an MAA token: this issuer, at `now`, [`TOKEN_SKEW_S`], `x-ms-ver` "1.0",
    /// `jku` (if any) = `<issuer>/certs`.
    pub fn maa(issuer: &str, now: i64) -> Self {
        Self {
            issuer: issuer.to_string(),
            now,
            skew_s: TOKEN_SKEW_S,
            ms_ver: Some(MAA_TOKEN_VERSION.to_string()),
            check_jku: true,
        }
    }
}

/// Removes one trailing '/' (PROTOCOLS.md §9.1 trap 21).
pub fn normalise_issuer(issuer: &str) -> &str {
    issuer.strip_suffix('/').unwrap_or(issuer)
}

/// A token whose signature, issuer and lifetime were checked.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedToken {
    /// The JWS header.
    pub header: JwsHeader,
    /// All claims (a JSON object).
    pub claims: Value,
    /// `iss`, as in the token.
    pub issuer: String,
    /// The `kid` of the header.
    pub kid: Option<String>,
    /// `exp`, Unix seconds.
    pub expires_at: i64,
    /// `nbf`, Unix seconds, if present.
    pub not_before: Option<i64>,
    /// `iat`, Unix seconds, if present.
    pub issued_at: Option<i64>,
}

fn numeric_date(claims: &Map<String, Value>, name: &'static str) -> Result<Option<i64>, JoseError> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => v
            .as_i64()
            .or_else(|| {
                v.as_f64()
                    .filter(|f| f.is_finite() && f.abs() < 1e15)
                    .map(|f| f.floor() as i64)
            })
            .map(Some)
            .ok_or_else(|| JoseError::ClaimType {
                claim: name.to_string(),
                expected: "number (NumericDate)",
                found: type_name(v),
            }),
    }
}

/// Decodes a JWT's claims without verifying anything (for display of a refused token).
pub fn decode_unverified(token: &[u8]) -> Result<(JwsHeader, Value), JoseError> {
    let jws = CompactJws::parse(token)?;
    let claims = claims_object(&jws.payload)?;
    Ok((jws.header, claims))
}

fn claims_object(payload: &[u8]) -> Result<Value, JoseError> {
    let claims = parse_strict(payload).map_err(|reason| JoseError::ClaimsInvalid { reason })?;
    if !claims.is_object() {
        return Err(JoseError::ClaimsInvalid {
            reason: format!("the payload is a JSON {}", type_name(&claims)),
        });
    }
    Ok(claims)
}

/// Verifies a compact JWT against `keys` and `validation` (see the module docs for the order).
pub fn verify_jwt(
    token: &[u8],
    keys: &KeySet,
    validation: &Validation,
) -> Result<VerifiedToken, JoseError> {
    let jws = CompactJws::parse(token)?;
    jws.header.check_typ_jwt()?;
    jws.verify(keys)?;
    let claims = claims_object(&jws.payload)?;
    let obj = claims.as_object().ok_or(JoseError::ClaimsInvalid {
        reason: "not an object".to_string(),
    })?;

    let issuer = match obj.get("iss") {
        Some(Value::String(s)) => s.clone(),
        Some(v) => {
            return Err(JoseError::ClaimType {
                claim: "iss".to_string(),
                expected: "string",
                found: type_name(v),
            })
        }
        None => {
            return Err(JoseError::ClaimMissing {
                claim: "iss".to_string(),
            })
        }
    };
    let expected = normalise_issuer(&validation.issuer);
    if normalise_issuer(&issuer) != expected {
        return Err(JoseError::IssuerMismatch {
            expected: expected.to_string(),
            found: issuer,
        });
    }
    if validation.check_jku {
        if let Some(jku) = &jws.header.jku {
            let want = format!("{expected}/certs");
            if jku != &want {
                return Err(JoseError::JkuMismatch {
                    expected: want,
                    found: jku.clone(),
                });
            }
        }
    }

    let exp = numeric_date(obj, "exp")?.ok_or(JoseError::ClaimMissing {
        claim: "exp".to_string(),
    })?;
    let nbf = numeric_date(obj, "nbf")?;
    let iat = numeric_date(obj, "iat")?;
    let (now, skew_s) = (validation.now, validation.skew_s.max(0));
    for (claim, value) in [("nbf", nbf), ("iat", iat)] {
        if let Some(value) = value {
            if value > exp {
                return Err(JoseError::LifetimeInvalid { claim, value, exp });
            }
        }
    }
    if now.saturating_sub(skew_s) >= exp {
        return Err(JoseError::Expired { exp, now, skew_s });
    }
    if let Some(nbf) = nbf {
        if now.saturating_add(skew_s) < nbf {
            return Err(JoseError::NotYetValid { nbf, now, skew_s });
        }
    }
    if let Some(iat) = iat {
        if now.saturating_add(skew_s) < iat {
            return Err(JoseError::IssuedInFuture { iat, now, skew_s });
        }
    }
    if let Some(want) = &validation.ms_ver {
        match obj.get("x-ms-ver") {
            Some(Value::String(found)) if found == want => {}
            Some(Value::String(found)) => {
                return Err(JoseError::MsVerUnexpected {
                    expected: want.clone(),
                    found: found.clone(),
                })
            }
            Some(v) => {
                return Err(JoseError::ClaimType {
                    claim: "x-ms-ver".to_string(),
                    expected: "string",
                    found: type_name(v),
                })
            }
            None => {
                return Err(JoseError::ClaimMissing {
                    claim: "x-ms-ver".to_string(),
                })
            }
        }
    }
    let kid = jws.header.kid.clone();
    Ok(VerifiedToken {
        header: jws.header,
        claims,
        issuer,
        kid,
        expires_at: exp,
        not_before: nbf,
        issued_at: iat,
    })
}

/// The SEV-SNP facts of an MAA token (PROTOCOLS.md §5.4), wherever the endpoint put them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SevSnpClaims {
    /// `x-ms-attestation-type` of the TEE ("sevsnpvm").
    pub attestation_type: String,
    /// `x-ms-compliance-status` ("azure-compliant-cvm", "azure-compliant-uvm", ...).
    pub compliance_status: String,
    /// `x-ms-sevsnpvm-launchmeasurement` (96 hex).
    pub launch_measurement: String,
    /// `x-ms-sevsnpvm-hostdata` (64 hex).
    pub host_data: String,
    /// `x-ms-sevsnpvm-reportdata` (128 hex).
    pub report_data: String,
    /// `x-ms-sevsnpvm-reportid` (64 hex).
    pub report_id: String,
    /// `x-ms-sevsnpvm-idkeydigest` (96 hex).
    pub id_key_digest: String,
    /// `x-ms-sevsnpvm-authorkeydigest` (96 hex).
    pub author_key_digest: String,
    /// `x-ms-sevsnpvm-familyId` (32 hex).
    pub family_id: String,
    /// `x-ms-sevsnpvm-imageId` (32 hex).
    pub image_id: String,
    /// `x-ms-sevsnpvm-bootloader-svn`.
    pub bootloader_svn: u64,
    /// `x-ms-sevsnpvm-tee-svn`.
    pub tee_svn: u64,
    /// `x-ms-sevsnpvm-snpfw-svn`.
    pub snpfw_svn: u64,
    /// `x-ms-sevsnpvm-microcode-svn`.
    pub microcode_svn: u64,
    /// `x-ms-sevsnpvm-guestsvn`.
    pub guest_svn: u64,
    /// `x-ms-sevsnpvm-vmpl`.
    pub vmpl: u64,
    /// `x-ms-sevsnpvm-is-debuggable`.
    pub is_debuggable: bool,
    /// `x-ms-sevsnpvm-migration-allowed`.
    pub migration_allowed: bool,
    /// `x-ms-sevsnpvm-smt-allowed`.
    pub smt_allowed: bool,
}

/// The claim names of an MAA token that tell where the TEE facts are.
const ISOLATION_TEE: &str = "x-ms-isolation-tee";

/// Typed access to the claims skrd relies on.
impl VerifiedToken {
    fn obj(&self) -> &Map<String, Value> {
        // `verify_jwt` only builds a VerifiedToken from an object; an empty map is unreachable.
        static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
        self.claims
            .as_object()
            .unwrap_or_else(|| EMPTY.get_or_init(Map::new))
    }

    /// A top-level claim.
    pub fn claim(&self, name: &str) -> Option<&Value> {
        self.obj().get(name)
    }

    /// Top-level `x-ms-attestation-type` ("azurevm" for AzureGuest, "sevsnpvm" for SevSnpVm).
    pub fn attestation_type(&self) -> Result<&str, JoseError> {
        get_str(self.obj(), "", "x-ms-attestation-type")
    }

    /// `true` for an AzureGuest (CVM) token: top-level type "azurevm".
    pub fn is_azure_guest(&self) -> bool {
        self.attestation_type().ok() == Some("azurevm")
    }

    /// `x-ms-isolation-tee` (AzureGuest tokens of hardware-isolated VMs).
    pub fn isolation_tee(&self) -> Result<&Map<String, Value>, JoseError> {
        get_obj(self.obj(), "", ISOLATION_TEE)
    }

    /// Where the TEE claims live and the path prefix for messages: `x-ms-isolation-tee` for
    /// AzureGuest tokens, the top level otherwise (PROTOCOLS.md §9.1 trap 18).
    fn tee(&self) -> Result<(&Map<String, Value>, &'static str), JoseError> {
        if self.is_azure_guest() {
            Ok((self.isolation_tee()?, "x-ms-isolation-tee."))
        } else {
            Ok((self.obj(), ""))
        }
    }

    /// `x-ms-compliance-status` of the TEE (under `x-ms-isolation-tee` for AzureGuest).
    pub fn compliance_status(&self) -> Result<&str, JoseError> {
        let (tee, prefix) = self.tee()?;
        get_str(tee, prefix, "x-ms-compliance-status")
    }

    /// Top-level `x-ms-runtime` (the only one AKV looks at, trap 19).
    pub fn runtime(&self) -> Result<&Map<String, Value>, JoseError> {
        get_obj(self.obj(), "", "x-ms-runtime")
    }

    /// Top-level `x-ms-runtime.keys` as JWKs (AKV wraps to the first suitable one, §6.2).
    pub fn runtime_keys(&self) -> Result<Vec<Jwk>, JoseError> {
        let runtime = self.runtime()?;
        let keys = match runtime.get("keys") {
            Some(Value::Array(keys)) => keys,
            Some(v) => {
                return Err(JoseError::ClaimType {
                    claim: "x-ms-runtime.keys".to_string(),
                    expected: "array",
                    found: type_name(v),
                })
            }
            None => {
                return Err(JoseError::ClaimMissing {
                    claim: "x-ms-runtime.keys".to_string(),
                })
            }
        };
        keys.iter()
            .enumerate()
            .map(|(i, k)| parse_jwk(i, k))
            .collect()
    }

    /// `nonce` (SevSnpVm tokens; always a string, trap 15).
    pub fn nonce(&self) -> Option<&str> {
        self.obj().get("nonce").and_then(Value::as_str)
    }

    /// The `x-ms-sevsnpvm-*` claims, from `x-ms-isolation-tee` (AzureGuest) or the top level
    /// (SevSnpVm); a missing or mistyped claim is named with its full path.
    pub fn sevsnp(&self) -> Result<SevSnpClaims, JoseError> {
        let (t, p) = self.tee()?;
        let s = |name| get_str(t, p, name).map(str::to_string);
        let u = |name| get_u64(t, p, name);
        let b = |name| get_bool(t, p, name);
        Ok(SevSnpClaims {
            attestation_type: s("x-ms-attestation-type")?,
            compliance_status: s("x-ms-compliance-status")?,
            launch_measurement: s("x-ms-sevsnpvm-launchmeasurement")?,
            host_data: s("x-ms-sevsnpvm-hostdata")?,
            report_data: s("x-ms-sevsnpvm-reportdata")?,
            report_id: s("x-ms-sevsnpvm-reportid")?,
            id_key_digest: s("x-ms-sevsnpvm-idkeydigest")?,
            author_key_digest: s("x-ms-sevsnpvm-authorkeydigest")?,
            family_id: s("x-ms-sevsnpvm-familyId")?,
            image_id: s("x-ms-sevsnpvm-imageId")?,
            bootloader_svn: u("x-ms-sevsnpvm-bootloader-svn")?,
            tee_svn: u("x-ms-sevsnpvm-tee-svn")?,
            snpfw_svn: u("x-ms-sevsnpvm-snpfw-svn")?,
            microcode_svn: u("x-ms-sevsnpvm-microcode-svn")?,
            guest_svn: u("x-ms-sevsnpvm-guestsvn")?,
            vmpl: u("x-ms-sevsnpvm-vmpl")?,
            is_debuggable: b("x-ms-sevsnpvm-is-debuggable")?,
            migration_allowed: b("x-ms-sevsnpvm-migration-allowed")?,
            smt_allowed: b("x-ms-sevsnpvm-smt-allowed")?,
        })
    }
}

fn get<'a>(obj: &'a Map<String, Value>, prefix: &str, name: &str) -> Result<&'a Value, JoseError> {
    obj.get(name).ok_or_else(|| JoseError::ClaimMissing {
        claim: format!("{prefix}{name}"),
    })
}

fn wrong(prefix: &str, name: &str, expected: &'static str, v: &Value) -> JoseError {
    JoseError::ClaimType {
        claim: format!("{prefix}{name}"),
        expected,
        found: type_name(v),
    }
}

fn get_str<'a>(
    obj: &'a Map<String, Value>,
    prefix: &str,
    name: &str,
) -> Result<&'a str, JoseError> {
    let v = get(obj, prefix, name)?;
    v.as_str().ok_or_else(|| wrong(prefix, name, "string", v))
}

fn get_u64(obj: &Map<String, Value>, prefix: &str, name: &str) -> Result<u64, JoseError> {
    let v = get(obj, prefix, name)?;
    v.as_u64()
        .ok_or_else(|| wrong(prefix, name, "non-negative integer", v))
}

fn get_bool(obj: &Map<String, Value>, prefix: &str, name: &str) -> Result<bool, JoseError> {
    let v = get(obj, prefix, name)?;
    v.as_bool().ok_or_else(|| wrong(prefix, name, "boolean", v))
}

fn get_obj<'a>(
    obj: &'a Map<String, Value>,
    prefix: &str,
    name: &str,
) -> Result<&'a Map<String, Value>, JoseError> {
    let v = get(obj, prefix, name)?;
    v.as_object()
        .ok_or_else(|| wrong(prefix, name, "object", v))
}
