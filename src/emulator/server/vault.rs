//! The emulated Key Vault and Managed HSM listeners (HTTPS), PROTOCOLS.md §6 and §7:
//! - keys: `PUT|POST /keys/{name}/create` (RSA/RSA-HSM 2048/3072/4096, EC/EC-HSM P-256/P-384/P-521,
//!   oct-HSM 128/192/256 on Managed HSM), `PUT /keys/{name}` (import a JWK, §6.8),
//!   `GET /keys/{name}[/{version}]`; every version is a file
//!   `state-dir/vault/<flavour>/keys/<name>/<version>.json` (mode 0600: it holds the private key
//!   material), so a restart loses nothing;
//! - `POST /keys/{name}[/{version}]/release` (§6.1-§6.4): the MAA token is verified with the
//!   emulator's MAA key and issuer, the key's release policy evaluated (§7.2), the key material
//!   wrapped to the first suitable key of the token's top-level `x-ms-runtime.keys` (§6.2) and
//!   returned as a JWS signed by a certificate of the emulator CA, header and payload in the
//!   exact shape and member order of the real response (§6.3);
//! - the bearer check (`aud` = `https://vault.azure.net` or `https://managedhsm.azure.net`,
//!   signed by the emulator's Entra key) → 401 with `WWW-Authenticate` (§6.7);
//! - `api-version` 7.3, 7.4, 7.5, 7.6 or 2025-07-01, else 400 `BadParameter`;
//! - throttling (§6.7): RSA-2048-equivalent operations per 10 s over the configured limit → 429
//!   with `Retry-After`.
//!
//! Errors use Key Vault's body `{"error": {"code", "message"}}` with `x-ms-error-code`. The
//! statuses of a non-exportable key (400 `BadParameter`) and of a policy mismatch or an
//! unverifiable target token (403 `Forbidden`) follow PROTOCOLS.md §6.7; their exact real message
//! texts are unknown (§10).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use rand_core::{OsRng, RngCore};
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::EncodePrivateKey;
use rsa::signature::{SignatureEncoding, Signer};
use rsa::traits::PublicKeyParts;
use rsa::{BigUint, RsaPrivateKey};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::http::{Malformed, Request, Response, Service};
use super::maa::azure_error;
use super::state::{load_or_create_rsa, RsaSigner, State};
use super::throttle::{self, Throttle};
use super::tls::Ca;
use super::ServeError;
use crate::format::akv::policy::{load_document, parse_policy, ReleasePolicy};
use crate::format::jose::error::JoseError;
use crate::format::jose::jwk::{KeySet, PublicKey};
use crate::format::jose::jwt::{verify_jwt, Validation};
use crate::format::jose::release::WrapAlgorithm;

/// PKCS#8 PEM of the key signing release responses.
pub const VAULT_SIGNING_KEY: &str = "vault-signing-key.pem";
/// Accepted `api-version` values.
pub const API_VERSIONS: &[&str] = &["7.3", "7.4", "7.5", "7.6", "2025-07-01"];
/// Throttling defaults (kept here for `serve --vault-ops-limit`).
pub use super::throttle::{DEFAULT_OPS_LIMIT, THROTTLE_WINDOW};
/// Largest request body read as JSON.
const MAX_BODY: usize = 1 << 20;
/// Largest oct key accepted at import (§6.7 "maximum size is 64").
const MAX_OCT_LEN: usize = 64;

/// What a vault listener needs besides the state.
#[derive(Debug)]
pub struct VaultSetup<'a> {
    /// `"vault"` or `"managed-hsm"`.
    pub flavour: &'static str,
    /// The listener's base URL (prefix of every `kid`).
    pub base_url: String,
    /// The attestation base URL = the MAA issuer the target tokens must carry.
    pub attestation: String,
    /// Host names of the release-signing certificate (first = CN).
    pub cert_names: Vec<String>,
    /// Throttling limit per 10 s (RSA-2048-equivalent operations).
    pub ops_limit: u32,
    /// The emulator CA (issues the release-signing certificate).
    pub ca: &'a Ca,
}

/// A Key Vault or Managed HSM listener.
#[derive(Debug)]
pub struct Vault {
    /// `"vault"` or `"managed-hsm"` (prefix of the endpoint names).
    pub flavour: &'static str,
    base_url: String,
    attestation: String,
    tenant: String,
    keys_dir: PathBuf,
    entra_keys: KeySet,
    maa_keys: KeySet,
    signer: RsaSigner,
    /// x5c: [leaf, CA] DER.
    x5c: Vec<Vec<u8>>,
    throttle: Arc<Throttle>,
    write_lock: Mutex<()>,
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn b64url_decode(text: &str) -> Option<Vec<u8>> {
    let t = text.trim_end_matches('=');
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(t)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(t))
        .ok()
}

fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// A JSON string literal.
fn js(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

/// A JSON object with members in the given order (values already JSON text).
fn ordered(members: &[(&str, String)]) -> String {
    let inner: Vec<String> = members
        .iter()
        .map(|(k, v)| format!("{}:{v}", js(k)))
        .collect();
    format!("{{{}}}", inner.join(","))
}

fn bad(message: &str) -> Response {
    azure_error(400, "BadParameter", message)
}

/// Key Vault's 401 message for a bearer token that does not validate. Real texts where one is
/// known: AKV10032 (issuer), "[TokenExpired] ... 'S2S12086'" (expired, Azure SDK issue reports),
/// "Token not yet valid" and AKV10046 (unknown signing key); otherwise skrd's reason.
fn bearer_refusal(e: &JoseError, token: &str, issuer: &str) -> String {
    match e {
        JoseError::IssuerMismatch { found, .. } => {
            format!("AKV10032: Invalid issuer. Expected one of {issuer}, found {found}.")
        }
        JoseError::Expired { .. } => {
            "[TokenExpired] Error validating token: 'S2S12086'.".to_string()
        }
        JoseError::NotYetValid { .. } | JoseError::IssuedInFuture { .. } => {
            "Token not yet valid".to_string()
        }
        JoseError::UnknownKid { .. } | JoseError::KidMissing { .. } => format!(
            "AKV10046: Unable to resolve the key used for signature validation. \
             EncodedJwtHeader: '{}'.",
            token.split('.').next().unwrap_or_default()
        ),
        other => format!("Error validating token: {other}"),
    }
}

/// The 403 message for a target (MAA) token that does not verify. Azure's exact text is not
/// documented (PROTOCOLS.md §10); the emulator names the failed check.
fn target_refusal(e: &JoseError) -> String {
    let why = match e {
        JoseError::Expired { exp, .. } => format!("the token expired at {exp}"),
        JoseError::NotYetValid { nbf, .. } => format!("the token is not valid before {nbf}"),
        JoseError::IssuerMismatch { expected, found } => {
            format!("the token's issuer {found} is not the attestation authority {expected}")
        }
        JoseError::UnknownKid { .. } | JoseError::SignatureInvalid { .. } => {
            "the token is not signed by the attestation authority's key".to_string()
        }
        other => other.to_string(),
    };
    format!("Target environment attestation statement cannot be verified: {why}")
}

/// A release policy as Key Vault re-serialises it (PROTOCOLS.md §6.8, verified on a real
/// response): compact, `version` before `anyOf`, `authority` before its group, `claim` before
/// its operator (other members in name order).
fn policy_json(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let first = |k: &str| !matches!(k, "version" | "authority" | "claim");
            let mut names: Vec<&String> = m.keys().collect();
            names.sort_by_key(|k| (first(k), k.as_str()));
            let members: Vec<String> = names
                .iter()
                .map(|k| format!("{}:{}", js(k), policy_json(&m[k.as_str()])))
                .collect();
            format!("{{{}}}", members.join(","))
        }
        Value::Array(a) => {
            let items: Vec<String> = a.iter().map(policy_json).collect();
            format!("[{}]", items.join(","))
        }
        other => other.to_string(),
    }
}

fn internal(what: &str) -> Response {
    azure_error(500, "InternalError", what)
}

/// One stored key version (`<version>.json`, mode 0600).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredKey {
    name: String,
    version: String,
    kty: String,
    #[serde(default)]
    key_size: Option<u32>,
    #[serde(default)]
    crv: Option<String>,
    key_ops: Vec<String>,
    /// Public members (`n`, `e` or `x`, `y`), base64url.
    public: Map<String, Value>,
    /// The release plaintext: oct raw bytes, RSA/EC PKCS#8 DER (§6.4), base64url.
    material: String,
    exportable: bool,
    enabled: bool,
    /// `data` of the release policy: base64url of the compact policy JSON (§6.8).
    #[serde(default)]
    release_policy: Option<String>,
    #[serde(default)]
    policy_content_type: Option<String>,
    #[serde(default)]
    policy_immutable: bool,
    created: i64,
    updated: i64,
    created_ns: u64,
    /// `attributes.nbf` (not before), Unix seconds.
    #[serde(default)]
    nbf: Option<i64>,
    /// `attributes.exp` (expiry), Unix seconds.
    #[serde(default)]
    exp: Option<i64>,
    /// `tags` as given.
    #[serde(default)]
    tags: Map<String, Value>,
}

impl StoredKey {
    fn base_kty(&self) -> &str {
        self.kty.trim_end_matches("-HSM")
    }

    /// RSA-2048-equivalent cost of one operation on this key (§6.7 limits 2000/500/250).
    fn weight(&self) -> u32 {
        throttle::weight(self.base_kty(), self.key_size)
    }
}

/// The parsed body of `…/release` (§6.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseRequest {
    /// The attestation token.
    pub target: String,
    /// The wrapping algorithm (default CKM_RSA_AES_KEY_WRAP).
    pub enc: WrapAlgorithm,
    /// The client nonce, if any.
    pub nonce: Option<String>,
}

fn body_object(body: &[u8]) -> Result<Map<String, Value>, String> {
    if body.len() > MAX_BODY {
        return Err(format!(
            "The request body has {} bytes; at most {MAX_BODY} are accepted",
            body.len()
        ));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(o)) => Ok(o),
        Ok(_) => Err("The request body must be a JSON object".to_string()),
        Err(e) => Err(format!("The request body is not valid JSON: {e}")),
    }
}

fn opt_str<'a>(o: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, String> {
    match o.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("Property '{name}' must be a string")),
    }
}

/// Parses a release request body.
pub fn parse_release_request(body: &[u8]) -> Result<ReleaseRequest, String> {
    let o = body_object(body)?;
    let target = opt_str(&o, "target")?
        .ok_or_else(|| "Property 'target' is required".to_string())?
        .to_string();
    let enc = match opt_str(&o, "enc")? {
        None => WrapAlgorithm::CkmRsaAesKeyWrap,
        Some(name) => WrapAlgorithm::from_name(name).ok_or_else(|| {
            format!(
                "Property 'enc' has an invalid value \"{name}\"; use CKM_RSA_AES_KEY_WRAP, \
                 RSA_AES_KEY_WRAP_256 or RSA_AES_KEY_WRAP_384"
            )
        })?,
    };
    let nonce = opt_str(&o, "nonce")?.map(str::to_string);
    Ok(ReleaseRequest { target, enc, nonce })
}

/// What create and import share: attributes and release policy.
#[derive(Debug, Clone)]
struct Common {
    exportable: bool,
    enabled: bool,
    nbf: Option<i64>,
    exp: Option<i64>,
    tags: Map<String, Value>,
    policy: Option<(ReleasePolicy, Option<String>, bool)>,
    key_ops: Option<Vec<String>>,
}

fn parse_common(o: &Map<String, Value>) -> Result<Common, String> {
    let attrs = match o.get("attributes") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(a)) => a.clone(),
        Some(_) => return Err("Property 'attributes' must be an object".to_string()),
    };
    let flag = |name: &str, default: bool| match attrs.get(name) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(format!("Property 'attributes.{name}' must be a boolean")),
    };
    let exportable = flag("exportable", false)?;
    let enabled = flag("enabled", true)?;
    let time = |name: &str| match attrs.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_i64().map(Some).ok_or_else(|| {
            format!("Property 'attributes.{name}' must be an integer (Unix seconds)")
        }),
    };
    let (nbf, exp) = (time("nbf")?, time("exp")?);
    let tags = match o.get("tags") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(t)) if t.values().all(Value::is_string) => t.clone(),
        Some(_) => return Err("Property 'tags' must be an object of strings".to_string()),
    };
    let policy = match o.get("release_policy") {
        None | Some(Value::Null) => None,
        Some(v @ Value::Object(_)) => {
            let loaded = load_document(v.to_string().as_bytes())
                .map_err(|e| format!("Invalid release policy: {e}"))?;
            Some((
                loaded.policy,
                loaded.content_type,
                loaded.immutable.unwrap_or(false),
            ))
        }
        Some(_) => return Err("Property 'release_policy' must be an object".to_string()),
    };
    if exportable && policy.is_none() {
        return Err("Exportable keys must have release policy".to_string());
    }
    let key_ops = match o.get("key_ops") {
        None | Some(Value::Null) => None,
        Some(Value::Array(a)) => Some(
            a.iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| "Property 'key_ops' must be an array of strings".to_string())
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Some(_) => return Err("Property 'key_ops' must be an array of strings".to_string()),
    };
    Ok(Common {
        exportable,
        enabled,
        nbf,
        exp,
        tags,
        policy,
        key_ops,
    })
}

/// A create request (§6.8): `kty`, `key_size`, `crv` plus [`Common`].
#[derive(Debug, Clone)]
struct CreateRequest {
    kty: String,
    key_size: Option<u32>,
    crv: Option<String>,
    common: Common,
}

fn parse_create(body: &[u8]) -> Result<CreateRequest, String> {
    let o = body_object(body)?;
    let kty = opt_str(&o, "kty")?
        .ok_or_else(|| "Property 'kty' is required".to_string())?
        .to_string();
    let key_size = match o.get("key_size") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| "Property 'key_size' must be an integer".to_string())?,
        ),
    };
    let crv = opt_str(&o, "crv")?.map(str::to_string);
    Ok(CreateRequest {
        kty,
        key_size,
        crv,
        common: parse_common(&o)?,
    })
}

/// An import request (§6.8): the JWK plus [`Common`].
#[derive(Debug, Clone)]
struct ImportRequest {
    jwk: Map<String, Value>,
    hsm: bool,
    common: Common,
}

fn parse_import(body: &[u8]) -> Result<ImportRequest, String> {
    let o = body_object(body)?;
    let jwk = match o.get("key") {
        Some(Value::Object(k)) => k.clone(),
        _ => return Err("Property 'key' (a JSON Web Key) is required".to_string()),
    };
    let hsm = matches!(o.get("hsm"), Some(Value::Bool(true)));
    let mut common = parse_common(&o)?;
    if common.key_ops.is_none() {
        if let Some(Value::Array(a)) = jwk.get("key_ops") {
            common.key_ops = Some(
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect(),
            );
        }
    }
    Ok(ImportRequest { jwk, hsm, common })
}

/// Parses any vault request body (create, import, release) without acting on it: the fuzz
/// entry point. Never panics.
pub fn fuzz_vault_request(data: &[u8]) {
    let _ = parse_release_request(data);
    let _ = parse_create(data);
    if let Ok(req) = parse_import(data) {
        let _ = material_from_jwk(&req.jwk, req.hsm);
    }
}

/// Key material and public members of a new or imported key.
struct Material {
    kty_base: &'static str,
    key_size: Option<u32>,
    crv: Option<String>,
    public: Map<String, Value>,
    plaintext: Vec<u8>,
}

fn rsa_material(key: &RsaPrivateKey) -> Result<Material, String> {
    let der = key
        .to_pkcs8_der()
        .map_err(|_| "could not encode the RSA key as PKCS#8".to_string())?;
    let mut public = Map::new();
    public.insert("n".into(), Value::String(b64url(&key.n().to_bytes_be())));
    public.insert("e".into(), Value::String(b64url(&key.e().to_bytes_be())));
    Ok(Material {
        kty_base: "RSA",
        key_size: u32::try_from(key.size() * 8).ok(),
        crv: None,
        public,
        plaintext: der.as_bytes().to_vec(),
    })
}

fn ec_alg(crv: &str) -> Option<(&'static rcgen::SignatureAlgorithm, usize)> {
    match crv {
        "P-256" => Some((&rcgen::PKCS_ECDSA_P256_SHA256, 32)),
        "P-384" => Some((&rcgen::PKCS_ECDSA_P384_SHA384, 48)),
        _ => None,
    }
}

fn ec_public(crv: &str, point: &[u8], len: usize) -> Result<Map<String, Value>, String> {
    let (x, y) = match point.split_first() {
        Some((4, rest)) if rest.len() == 2 * len => rest.split_at(len),
        _ => return Err(format!("the {crv} public point is not uncompressed")),
    };
    let mut public = Map::new();
    public.insert("x".into(), Value::String(b64url(x)));
    public.insert("y".into(), Value::String(b64url(y)));
    Ok(public)
}

/// A P-521 key (RustCrypto `p521`; ring, under rcgen, has no P-521): public x/y and the PKCS#8
/// plaintext, in the same encoding as an imported P-521 JWK.
fn p521_material(key: &p521::SecretKey) -> Result<Material, String> {
    use p521::elliptic_curve::sec1::ToEncodedPoint as _;
    let point = key.public_key().to_encoded_point(false);
    let d = zeroize::Zeroizing::new(key.to_bytes());
    Ok(Material {
        kty_base: "EC",
        key_size: None,
        public: ec_public("P-521", point.as_bytes(), 66)?,
        crv: Some("P-521".to_string()),
        plaintext: ec_pkcs8("P-521", &d[..], point.as_bytes())?,
    })
}

fn generate(req: &CreateRequest, flavour: &str) -> Result<Material, String> {
    match req.kty.as_str() {
        "RSA" | "RSA-HSM" => {
            let bits = req.key_size.unwrap_or(2048);
            if ![2048, 3072, 4096].contains(&bits) {
                return Err(format!(
                    "Invalid key size {bits} for an RSA key; use 2048, 3072 or 4096"
                ));
            }
            let key = RsaPrivateKey::new(&mut OsRng, bits as usize)
                .map_err(|e| format!("RSA key generation failed: {e}"))?;
            rsa_material(&key)
        }
        "EC" | "EC-HSM" => {
            let crv = req.crv.clone().unwrap_or_else(|| "P-256".to_string());
            if crv == "P-521" {
                return p521_material(&p521::SecretKey::random(&mut OsRng));
            }
            let (alg, len) = ec_alg(&crv).ok_or_else(|| {
                format!("Invalid curve {crv}; this emulator creates P-256, P-384 and P-521 keys")
            })?;
            let pair = rcgen::KeyPair::generate_for(alg)
                .map_err(|e| format!("EC key generation failed: {e}"))?;
            Ok(Material {
                kty_base: "EC",
                key_size: None,
                public: ec_public(&crv, pair.public_key_raw(), len)?,
                crv: Some(crv),
                plaintext: pair.serialize_der(),
            })
        }
        "oct-HSM" | "oct" => {
            if flavour == "vault" {
                return Err(format!(
                    "Key type {} is not supported by Key Vault; symmetric keys need a Managed HSM",
                    req.kty
                ));
            }
            let bits = req.key_size.unwrap_or(256);
            if ![128, 192, 256].contains(&bits) {
                return Err(format!(
                    "Invalid key size {bits} for an oct key; use 128, 192 or 256"
                ));
            }
            let mut k = vec![0u8; bits as usize / 8];
            OsRng.fill_bytes(&mut k);
            Ok(Material {
                kty_base: "oct",
                key_size: Some(bits),
                crv: None,
                public: Map::new(),
                plaintext: k,
            })
        }
        other => Err(format!(
            "Invalid kty \"{other}\"; use RSA, RSA-HSM, EC, EC-HSM or oct-HSM"
        )),
    }
}

fn jwk_bytes(jwk: &Map<String, Value>, name: &str) -> Result<Vec<u8>, String> {
    jwk.get(name)
        .and_then(Value::as_str)
        .and_then(b64url_decode)
        .ok_or_else(|| format!("JSON Web Key: {name} property is missing or not base64url"))
}

/// PKCS#8 `PrivateKeyInfo` holding an RFC 5915 `ECPrivateKey` for `crv`.
fn ec_pkcs8(crv: &str, d: &[u8], point: &[u8]) -> Result<Vec<u8>, String> {
    use der::Encode as _;
    let curve = match crv {
        "P-256" => const_oid::db::rfc5912::SECP_256_R_1,
        "P-384" => const_oid::db::rfc5912::SECP_384_R_1,
        "P-521" => const_oid::db::rfc5912::SECP_521_R_1,
        _ => return Err(format!("JSON Web Key: unsupported curve {crv}")),
    };
    let ec = sec1::EcPrivateKey {
        private_key: d,
        parameters: Some(sec1::EcParameters::NamedCurve(curve)),
        public_key: Some(point),
    };
    let inner = ec
        .to_der()
        .map_err(|e| format!("could not encode the EC key: {e}"))?;
    let curve_any = der::asn1::AnyRef::from(&curve);
    let info = rsa::pkcs8::PrivateKeyInfo {
        algorithm: spki::AlgorithmIdentifierRef {
            oid: const_oid::db::rfc5912::ID_EC_PUBLIC_KEY,
            parameters: Some(curve_any),
        },
        private_key: &inner,
        public_key: None,
    };
    info.to_der()
        .map_err(|e| format!("could not encode the EC key: {e}"))
}

fn material_from_jwk(jwk: &Map<String, Value>, _hsm: bool) -> Result<Material, String> {
    let kty = jwk
        .get("kty")
        .and_then(Value::as_str)
        .ok_or_else(|| "JSON Web Key: kty property is required".to_string())?;
    match kty {
        "RSA" | "RSA-HSM" => {
            let n = BigUint::from_bytes_be(&jwk_bytes(jwk, "n")?);
            let e = BigUint::from_bytes_be(&jwk_bytes(jwk, "e")?);
            let d = BigUint::from_bytes_be(&jwk_bytes(jwk, "d")?);
            let p = BigUint::from_bytes_be(&jwk_bytes(jwk, "p")?);
            let q = BigUint::from_bytes_be(&jwk_bytes(jwk, "q")?);
            let key = RsaPrivateKey::from_components(n, e, d, vec![p, q])
                .map_err(|e| format!("JSON Web Key: not a valid RSA private key: {e}"))?;
            key.validate()
                .map_err(|e| format!("JSON Web Key: not a valid RSA private key: {e}"))?;
            rsa_material(&key)
        }
        "EC" | "EC-HSM" => {
            let crv = jwk
                .get("crv")
                .and_then(Value::as_str)
                .ok_or_else(|| "JSON Web Key: crv property is required".to_string())?;
            let len = match crv {
                "P-256" => 32,
                "P-384" => 48,
                "P-521" => 66,
                _ => return Err(format!("JSON Web Key: unsupported curve {crv}")),
            };
            let (d, x, y) = (
                jwk_bytes(jwk, "d")?,
                jwk_bytes(jwk, "x")?,
                jwk_bytes(jwk, "y")?,
            );
            if d.len() != len || x.len() != len || y.len() != len {
                return Err(format!(
                    "JSON Web Key: {crv} coordinates and d must be {len} bytes each"
                ));
            }
            let mut point = vec![4u8];
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            if crv == "P-521" {
                // d must be the private key of (x, y).
                let key = p521::SecretKey::from_slice(&d)
                    .map_err(|_| "JSON Web Key: d is not a valid P-521 private key".to_string())?;
                let material = p521_material(&key)?;
                if material.public != ec_public(crv, &point, len)? {
                    return Err("JSON Web Key: x and y are not the public key of d".to_string());
                }
                return Ok(material);
            }
            Ok(Material {
                kty_base: "EC",
                key_size: None,
                public: ec_public(crv, &point, len)?,
                crv: Some(crv.to_string()),
                plaintext: ec_pkcs8(crv, &d, &point)?,
            })
        }
        "oct" | "oct-HSM" => {
            let k = jwk_bytes(jwk, "k")?;
            if k.len() > MAX_OCT_LEN {
                return Err(format!(
                    "JSON Web Key: k property of oct key is too large, maximum size is {MAX_OCT_LEN}"
                ));
            }
            if k.is_empty() {
                return Err("JSON Web Key: k property of oct key is empty".to_string());
            }
            Ok(Material {
                kty_base: "oct",
                key_size: u32::try_from(k.len() * 8).ok(),
                crv: None,
                public: Map::new(),
                plaintext: k,
            })
        }
        other => Err(format!("JSON Web Key: unsupported kty \"{other}\"")),
    }
}

fn default_ops(kty_base: &str) -> Vec<String> {
    let ops: &[&str] = match kty_base {
        "RSA" => &[
            "encrypt",
            "decrypt",
            "sign",
            "verify",
            "wrapKey",
            "unwrapKey",
        ],
        "EC" => &["sign", "verify"],
        _ => &["encrypt", "decrypt", "wrapKey", "unwrapKey"],
    };
    ops.iter().map(|s| (*s).to_string()).collect()
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 127
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// The routes of a vault listener.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route<'a> {
    Create(&'a str),
    Import(&'a str),
    Get(&'a str, Option<&'a str>),
    Release(&'a str, Option<&'a str>),
}

fn route<'a>(method: &str, path: &'a str) -> Option<Route<'a>> {
    let segs: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    match (method, segs.as_slice()) {
        ("PUT" | "POST", ["keys", name, "create"]) => Some(Route::Create(name)),
        ("POST", ["keys", name, "release"]) => Some(Route::Release(name, None)),
        ("POST", ["keys", name, version, "release"]) => Some(Route::Release(name, Some(version))),
        ("PUT", ["keys", name]) => Some(Route::Import(name)),
        ("GET", ["keys", name]) => Some(Route::Get(name, None)),
        ("GET", ["keys", name, version]) => Some(Route::Get(name, Some(version))),
        _ => None,
    }
}

impl Vault {
    /// The listener: loads (or creates) the release-signing key and issues its certificate.
    pub fn new(state: Arc<State>, setup: VaultSetup<'_>) -> Result<Self, ServeError> {
        let signer = load_or_create_rsa(&state.dir, VAULT_SIGNING_KEY, |spki| {
            b64url(&Sha256::digest(spki))
        })?;
        let leaf = setup.ca.issue_rsa_leaf(&signer, &setup.cert_names)?;
        let ca_pem = std::fs::read(&setup.ca.pem_path).map_err(|source| ServeError::StateIo {
            path: setup.ca.pem_path.clone(),
            source,
        })?;
        let ca_der = {
            use tokio_rustls::rustls::pki_types::pem::PemObject;
            tokio_rustls::rustls::pki_types::CertificateDer::from_pem_slice(&ca_pem)
                .map_err(|e| ServeError::Certificate {
                    what: "CA certificate (ca.pem)",
                    reason: e.to_string(),
                })?
                .to_vec()
        };
        let keyset = |jwk: Value, what: &'static str| {
            KeySet::from_json(&json!({ "keys": [jwk] })).map_err(|e| ServeError::Certificate {
                what,
                reason: e.to_string(),
            })
        };
        let entra_keys = keyset(state.entra.public_jwk(), "Entra key set")?;
        let maa_keys = keyset(state.maa.public_jwk(), "MAA key set")?;
        Ok(Self {
            flavour: setup.flavour,
            base_url: setup.base_url.trim_end_matches('/').to_string(),
            attestation: setup.attestation,
            tenant: state.identities.tenant_id.clone(),
            keys_dir: state.dir.join("vault").join(setup.flavour).join("keys"),
            entra_keys,
            maa_keys,
            signer,
            x5c: vec![leaf, ca_der],
            throttle: Arc::new(Throttle::new(setup.ops_limit)),
            write_lock: Mutex::new(()),
        })
    }

    fn resource(&self) -> &'static str {
        if self.flavour == "vault" {
            "https://vault.azure.net"
        } else {
            "https://managedhsm.azure.net"
        }
    }

    fn unauthorized(&self, message: &str) -> Response {
        azure_error(401, "Unauthorized", message).with_header(
            "WWW-Authenticate",
            &format!(
                "Bearer authorization=\"https://login.windows.net/{}\", resource=\"{}\"",
                self.tenant,
                self.resource()
            ),
        )
    }

    /// The bearer check (§6.7): signature by the Entra key, `iss`, lifetime, `aud`; each
    /// refusal with the message Key Vault gives for it where a real one is known.
    fn check_bearer(&self, req: &Request) -> Result<(), Response> {
        let token = req
            .header("authorization")
            .and_then(|h| {
                let (scheme, rest) = h.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
            })
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                self.unauthorized("AKV10000: Request is missing a Bearer or PoP token.")
            })?;
        let issuer = format!("https://sts.windows.net/{}/", self.tenant);
        let validation = Validation {
            issuer: issuer.clone(),
            now: now_s(),
            skew_s: 300,
            ms_ver: None,
            check_jku: false,
        };
        let verified = verify_jwt(token.as_bytes(), &self.entra_keys, &validation)
            .map_err(|e| self.unauthorized(&bearer_refusal(&e, token, &issuer)))?;
        let want = self.resource();
        let matches = |v: &Value| {
            v.as_str()
                .is_some_and(|a| a.trim_end_matches('/').eq_ignore_ascii_case(want))
        };
        let ok = match verified.claims.get("aud") {
            Some(Value::Array(a)) => a.iter().any(matches),
            Some(v) => matches(v),
            None => false,
        };
        if !ok {
            let found = match verified.claims.get("aud") {
                Some(Value::String(s)) => s.clone(),
                Some(v) => v.to_string(),
                None => "(none)".to_string(),
            };
            return Err(self.unauthorized(&format!(
                "AKV10022: Invalid audience. Expected {want}, found: {found}."
            )));
        }
        Ok(())
    }

    /// The listener's throttle (shown by the admin listener).
    pub fn throttle(&self) -> Arc<Throttle> {
        self.throttle.clone()
    }

    /// Counts `weight` operations; 429 with `Retry-After` when over the limit (§6.7).
    fn admit(&self, weight: u32) -> Result<(), Response> {
        self.throttle.admit(weight).map_err(|wait| {
            let secs = throttle::retry_after_secs(wait);
            azure_error(
                429,
                "Throttled",
                &format!(
                    "Request was not processed because too many requests were received. \
                     Limit {} RSA-2048-equivalent operations per 10 s; retry after {secs} s",
                    self.throttle.limit()
                ),
            )
            .with_header("Retry-After", &secs.to_string())
        })
    }

    fn key_dir(&self, name: &str) -> PathBuf {
        self.keys_dir.join(name.to_ascii_lowercase())
    }

    fn load_key(&self, name: &str, version: Option<&str>) -> Result<StoredKey, Response> {
        let not_found = || {
            let what = match version {
                Some(v) => format!("{name}/{v}"),
                None => name.to_string(),
            };
            azure_error(
                404,
                "KeyNotFound",
                &format!("A key with (name/id) {what} was not found in this key vault."),
            )
        };
        if !valid_name(name) {
            return Err(not_found());
        }
        let dir = self.key_dir(name);
        let read = |path: &std::path::Path| -> Result<StoredKey, Response> {
            let bytes = std::fs::read(path).map_err(|_| not_found())?;
            serde_json::from_slice(&bytes).map_err(|_| internal("A stored key file is corrupt"))
        };
        match version {
            Some(v) => {
                if v.len() != 32 || !v.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(not_found());
                }
                read(&dir.join(format!("{}.json", v.to_ascii_lowercase())))
            }
            None => {
                let entries = std::fs::read_dir(&dir).map_err(|_| not_found())?;
                let mut best: Option<StoredKey> = None;
                for entry in entries.flatten() {
                    let path = entry.path();
                    if path.extension().is_some_and(|e| e == "json") {
                        let k = read(&path)?;
                        if best.as_ref().is_none_or(|b| k.created_ns > b.created_ns) {
                            best = Some(k);
                        }
                    }
                }
                best.ok_or_else(not_found)
            }
        }
    }

    fn store(&self, key: &StoredKey) -> Result<(), Response> {
        let _guard = self.write_lock.lock().unwrap_or_else(|e| e.into_inner());
        let dir = self.key_dir(&key.name);
        std::fs::create_dir_all(&dir)
            .map_err(|_| internal("Could not create the key directory"))?;
        let bytes =
            serde_json::to_vec_pretty(key).map_err(|_| internal("Could not encode the key"))?;
        crate::emulator::amd_chain::write_atomic(&dir, &format!("{}.json", key.version), &bytes)
            .map_err(|_| internal("Could not write the key file"))?;
        Ok(())
    }

    fn kid(&self, key: &StoredKey) -> String {
        format!("{}/keys/{}/{}", self.base_url, key.name, key.version)
    }

    fn bundle(&self, key: &StoredKey) -> Value {
        let mut k = Map::new();
        k.insert("kid".into(), Value::String(self.kid(key)));
        k.insert("kty".into(), Value::String(key.kty.clone()));
        k.insert("key_ops".into(), json!(key.key_ops));
        if let Some(crv) = &key.crv {
            k.insert("crv".into(), Value::String(crv.clone()));
        }
        for (n, v) in &key.public {
            k.insert(n.clone(), v.clone());
        }
        let mut out = json!({
            "key": k,
            "attributes": {
                "enabled": key.enabled,
                "created": key.created,
                "updated": key.updated,
                "recoveryLevel": "Recoverable+Purgeable",
                "recoverableDays": 90,
                "exportable": key.exportable,
            },
            "tags": key.tags,
        });
        if let Some(nbf) = key.nbf {
            out["attributes"]["nbf"] = json!(nbf);
        }
        if let Some(exp) = key.exp {
            out["attributes"]["exp"] = json!(exp);
        }
        if let Some(data) = &key.release_policy {
            let mut p = json!({"data": data, "immutable": key.policy_immutable});
            if let Some(ct) = &key.policy_content_type {
                p["contentType"] = Value::String(ct.clone());
            }
            out["release_policy"] = p;
        }
        out
    }

    fn new_key(
        &self,
        name: &str,
        requested_kty: &str,
        hsm: bool,
        m: Material,
        common: Common,
    ) -> Result<StoredKey, Response> {
        if !valid_name(name) {
            return Err(bad(
                "The key name must be 1-127 characters of 0-9, a-z, A-Z and '-'",
            ));
        }
        let is_hsm = hsm || requested_kty.ends_with("-HSM") || self.flavour != "vault";
        if common.exportable && !is_hsm {
            return Err(bad(
                "Exportable keys must be HSM-protected: use kty RSA-HSM, EC-HSM or oct-HSM",
            ));
        }
        let kty = if is_hsm {
            format!("{}-HSM", m.kty_base)
        } else {
            m.kty_base.to_string()
        };
        let mut version = [0u8; 16];
        OsRng.fill_bytes(&mut version);
        let now = now_s();
        let (release_policy, policy_content_type, policy_immutable) = match common.policy {
            Some((p, ct, imm)) => (Some(b64url(policy_json(&p.to_json()).as_bytes())), ct, imm),
            None => (None, None, false),
        };
        let key = StoredKey {
            name: name.to_string(),
            version: hex::encode(version),
            kty,
            key_size: m.key_size,
            crv: m.crv,
            key_ops: common.key_ops.unwrap_or_else(|| default_ops(m.kty_base)),
            public: m.public,
            material: b64url(&m.plaintext),
            exportable: common.exportable,
            enabled: common.enabled,
            release_policy,
            policy_content_type,
            policy_immutable,
            created: now,
            updated: now,
            created_ns: now_ns(),
            nbf: common.nbf,
            exp: common.exp,
            tags: common.tags,
        };
        self.store(&key)?;
        Ok(key)
    }

    fn create(&self, name: &str, body: &[u8]) -> Result<Response, Response> {
        // CREATE has its own Azure limit (10 per 10 s), not emulated: creates and imports do
        // not use the weighted window of the other operations.
        let req = parse_create(body).map_err(|m| bad(&m))?;
        let m = generate(&req, self.flavour).map_err(|m| bad(&m))?;
        let key = self.new_key(name, &req.kty, false, m, req.common)?;
        Ok(Response::json(200, &self.bundle(&key)))
    }

    fn import(&self, name: &str, body: &[u8]) -> Result<Response, Response> {
        let req = parse_import(body).map_err(|m| bad(&m))?;
        let m = material_from_jwk(&req.jwk, req.hsm).map_err(|m| bad(&m))?;
        if m.kty_base == "oct" && self.flavour == "vault" {
            return Err(bad(
                "Key type oct-HSM is not supported by Key Vault; symmetric keys need a Managed HSM",
            ));
        }
        let kty = req
            .jwk
            .get("kty")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let key = self.new_key(name, &kty, req.hsm, m, req.common)?;
        Ok(Response::json(200, &self.bundle(&key)))
    }

    fn release(
        &self,
        req: &Request,
        name: &str,
        version: Option<&str>,
    ) -> Result<Response, Response> {
        let body = parse_release_request(&req.body).map_err(|m| bad(&m))?;
        let key = self.load_key(name, version)?;
        self.admit(key.weight())?;
        if !key.enabled {
            return Err(azure_error(
                403,
                "Forbidden",
                &format!(
                    "Operation release is not allowed on a disabled key {}",
                    self.kid(&key)
                ),
            ));
        }
        let now = now_s();
        if key.nbf.is_some_and(|nbf| now < nbf) || key.exp.is_some_and(|exp| now >= exp) {
            return Err(azure_error(
                403,
                "Forbidden",
                &format!(
                    "Operation release is not allowed on key {}: it is not yet valid (nbf) or \
                     expired (exp)",
                    self.kid(&key)
                ),
            ));
        }
        let policy_data = match (&key.release_policy, key.exportable) {
            (Some(p), true) => p,
            _ => {
                return Err(bad(&format!(
                    "Key {} is not exportable: release needs a key created with \
                     attributes.exportable = true and a release policy",
                    self.kid(&key)
                )))
            }
        };
        let policy = b64url_decode(policy_data)
            .and_then(|p| parse_policy(&p).ok())
            .ok_or_else(|| internal("The stored release policy is corrupt"))?;
        let forbidden = |m: String| azure_error(403, "Forbidden", &m);
        let token = verify_jwt(
            body.target.as_bytes(),
            &self.maa_keys,
            &Validation::maa(&self.attestation, now),
        )
        .map_err(|e| forbidden(target_refusal(&e)))?;
        let eval = policy.evaluate(&token.claims);
        if !eval.allowed {
            let unmet: Vec<String> = eval.unmet.iter().map(ToString::to_string).collect();
            return Err(forbidden(format!(
                "Target environment attestation statement does not satisfy the key release \
                 policy; unmet conditions: {}",
                unmet.join("; ")
            )));
        }
        let keys = token.runtime_keys().map_err(|e| {
            bad(&format!(
                "The target token has no usable x-ms-runtime.keys: {e}"
            ))
        })?;
        let (transfer_kid, transfer) = keys
            .iter()
            .find_map(|k| {
                let PublicKey::Rsa(pk) = &k.key else {
                    return None;
                };
                let suitable = if k.key_ops.is_empty() {
                    k.use_.as_deref().is_none_or(|u| u == "enc")
                } else {
                    k.key_ops.iter().any(|o| o == "encrypt")
                };
                match (&k.kid, suitable) {
                    (Some(kid), true) => Some((kid.clone(), pk.clone())),
                    _ => None,
                }
            })
            .ok_or_else(|| {
                bad(
                    "The target token's top-level x-ms-runtime.keys holds no RSA key with a kid \
                     and key_ops containing \"encrypt\" (or use \"enc\")",
                )
            })?;
        let material = b64url_decode(&key.material)
            .ok_or_else(|| internal("The stored key material is corrupt"))?;
        let ciphertext = crate::crypto::rsa_aes_wrap::wrap(&transfer, body.enc, &material)
            .map_err(|e| internal(&format!("Wrapping failed: {e}")))?;
        let key_hsm = ordered(&[
            ("schema_version", js("1.0")),
            (
                "header",
                ordered(&[
                    ("kid", js(&transfer_kid)),
                    ("alg", js("dir")),
                    ("enc", js(body.enc.name())),
                ]),
            ),
            ("ciphertext", js(&b64url(&ciphertext))),
        ]);
        let api_version = req.query_all("api-version").first().copied().unwrap_or("");
        let requested_kid = format!(
            "{}{}",
            self.base_url,
            req.path.trim_end_matches('/').trim_end_matches("/release")
        );
        let mut inner_key = vec![
            ("kid", js(&self.kid(&key))),
            ("kty", js(&key.kty)),
            (
                "key_ops",
                serde_json::to_string(&key.key_ops).unwrap_or_else(|_| "[]".to_string()),
            ),
        ];
        if let Some(crv) = &key.crv {
            inner_key.push(("crv", js(crv)));
        }
        for name in ["n", "e", "x", "y"] {
            if let Some(v) = key.public.get(name) {
                inner_key.push((name, v.to_string()));
            }
        }
        inner_key.push(("key_hsm", js(&b64url(key_hsm.as_bytes()))));
        let mut attributes = vec![("enabled", key.enabled.to_string())];
        if let Some(nbf) = key.nbf {
            attributes.push(("nbf", nbf.to_string()));
        }
        if let Some(exp) = key.exp {
            attributes.push(("exp", exp.to_string()));
        }
        attributes.extend([
            ("created", key.created.to_string()),
            ("updated", key.updated.to_string()),
            ("recoveryLevel", js("Recoverable+Purgeable")),
            ("recoverableDays", "90".to_string()),
            ("exportable", key.exportable.to_string()),
        ]);
        let attributes = ordered(&attributes);
        let mut request_echo = vec![
            ("api-version", js(api_version)),
            ("enc", js(body.enc.name())),
            ("kid", js(&requested_kid)),
        ];
        if let Some(n) = &body.nonce {
            request_echo.push(("nonce", js(n)));
        }
        let payload = ordered(&[
            ("request", ordered(&request_echo)),
            (
                "response",
                ordered(&[(
                    "key",
                    ordered(&[
                        ("key", ordered(&inner_key)),
                        ("attributes", attributes),
                        ("tags", Value::Object(key.tags.clone()).to_string()),
                        (
                            "release_policy",
                            ordered(&[
                                ("data", js(policy_data)),
                                ("immutable", key.policy_immutable.to_string()),
                            ]),
                        ),
                    ]),
                )]),
            ),
        ]);
        let jws = self.sign(&payload)?;
        Ok(Response::json(200, &json!({ "value": jws })))
    }

    /// RS256 JWS with the header of §6.3 (`alg, kid, x5t, typ, x5t#S256, x5c`).
    fn sign(&self, payload: &str) -> Result<String, Response> {
        let leaf = self
            .x5c
            .first()
            .ok_or_else(|| internal("No signing certificate"))?;
        let sha1 = {
            use sha1::Digest as _;
            sha1::Sha1::digest(leaf).to_vec()
        };
        let x5c: Vec<Value> = self
            .x5c
            .iter()
            .map(|c| Value::String(base64::engine::general_purpose::STANDARD.encode(c)))
            .collect();
        let header = ordered(&[
            ("alg", js("RS256")),
            ("kid", js(&hex::encode_upper(&sha1))),
            ("x5t", js(&b64url(&sha1))),
            ("typ", js("JWT")),
            ("x5t#S256", js(&b64url(&Sha256::digest(leaf)))),
            ("x5c", Value::Array(x5c).to_string()),
        ]);
        let input = format!(
            "{}.{}",
            b64url(header.as_bytes()),
            b64url(payload.as_bytes())
        );
        let signer = SigningKey::<Sha256>::new(self.signer.key.clone());
        let sig = signer
            .try_sign(input.as_bytes())
            .map_err(|_| internal("Signing failed"))?;
        Ok(format!("{input}.{}", b64url(&sig.to_bytes())))
    }

    fn dispatch(&self, req: &Request) -> Result<Response, Response> {
        let route = route(&req.method, &req.path)
            .ok_or_else(|| azure_error(404, "NotFound", "The requested resource was not found"))?;
        match req.query_all("api-version").as_slice() {
            [v] if API_VERSIONS.contains(v) => {}
            [] => {
                return Err(bad(
                    "The 'api-version' query parameter is missing; supported: 7.3, 7.4, 7.5, 7.6, 2025-07-01",
                ))
            }
            [v, ..] => {
                return Err(bad(&format!(
                    "The specified version ({v}) is not recognized. Consider using the latest \
                     supported version (2025-07-01)."
                )))
            }
        }
        self.check_bearer(req)?;
        match route {
            Route::Create(name) => self.create(name, &req.body),
            Route::Import(name) => self.import(name, &req.body),
            Route::Get(name, version) => {
                let key = self.load_key(name, version)?;
                self.admit(key.weight())?;
                Ok(Response::json(200, &self.bundle(&key)))
            }
            Route::Release(name, version) => self.release(req, name, version),
        }
    }
}

impl Service for Vault {
    fn endpoint(&self, req: &Request) -> &'static str {
        let vault = self.flavour == "vault";
        match route(&req.method, &req.path) {
            Some(Route::Create(_)) if vault => "vault-create",
            Some(Route::Create(_)) => "managed-hsm-create",
            Some(Route::Import(_)) if vault => "vault-import",
            Some(Route::Import(_)) => "managed-hsm-import",
            Some(Route::Get(..)) if vault => "vault-get",
            Some(Route::Get(..)) => "managed-hsm-get",
            Some(Route::Release(..)) if vault => "vault-release",
            Some(Route::Release(..)) => "managed-hsm-release",
            None if vault => "vault-other",
            None => "managed-hsm-other",
        }
    }

    fn handle(&self, req: &Request) -> Response {
        // Key generation and RSA operations take milliseconds to seconds: keep the other
        // connections of the multi-threaded runtime moving meanwhile.
        let run = || match self.dispatch(req) {
            Ok(r) | Err(r) => r,
        };
        match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(run)
            }
            _ => run(),
        }
    }

    fn malformed(&self, why: Malformed) -> Response {
        azure_error(why.status(), "BadParameter", why.describe())
    }

    fn malformed_endpoint(&self) -> &'static str {
        if self.flavour == "vault" {
            "vault-malformed"
        } else {
            "managed-hsm-malformed"
        }
    }

    fn request_ids(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(route("POST", "/keys/k/create"), Some(Route::Create("k")));
        assert_eq!(route("PUT", "/keys/k"), Some(Route::Import("k")));
        assert_eq!(route("GET", "/keys/k/"), Some(Route::Get("k", None)));
        assert_eq!(
            route("POST", "/keys/k/0123/release"),
            Some(Route::Release("k", Some("0123")))
        );
        assert_eq!(route("DELETE", "/keys/k"), None);
        assert_eq!(route("GET", "/secrets/k"), None);
    }

    #[test]
    fn release_request_parsing() {
        let r = parse_release_request(br#"{"target":"a.b.c"}"#).unwrap();
        assert_eq!(r.enc, WrapAlgorithm::CkmRsaAesKeyWrap);
        let r =
            parse_release_request(br#"{"target":"t","enc":"RSA_AES_KEY_WRAP_384","nonce":"n"}"#)
                .unwrap();
        assert_eq!(r.enc, WrapAlgorithm::RsaAesKeyWrap384);
        assert_eq!(r.nonce.as_deref(), Some("n"));
        assert!(parse_release_request(br#"{"enc":"CKM_RSA_AES_KEY_WRAP"}"#).is_err());
        assert!(parse_release_request(br#"{"target":"t","enc":"AES"}"#).is_err());
        assert!(parse_release_request(b"[1]").is_err());
        fuzz_vault_request(b"\xff{");
    }

    #[test]
    fn fuzz_entry_survives_mutations() {
        let seeds: [&[u8]; 3] = [
            br#"{"target":"a.b.c","enc":"RSA_AES_KEY_WRAP_256","nonce":"n"}"#,
            br#"{"key":{"kty":"RSA","n":"AQAB","e":"AQAB","d":"AQ","p":"Aw","q":"BQ"},"hsm":true}"#,
            br#"{"key":{"kty":"EC","crv":"P-256","d":"AA","x":"AA","y":"AA"},"release_policy":{"data":"e30"}}"#,
        ];
        for seed in seeds {
            for i in 0..seed.len() {
                let mut m = seed.to_vec();
                m[i] ^= 0x20;
                fuzz_vault_request(&m);
                fuzz_vault_request(&seed[..i]);
            }
        }
    }

    #[test]
    fn exportable_needs_policy() {
        let e = parse_create(br#"{"kty":"RSA-HSM","attributes":{"exportable":true}}"#).unwrap_err();
        assert!(e.contains("release policy"), "{e}");
    }
}
