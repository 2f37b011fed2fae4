//! The documents that carry a release policy (PROTOCOLS.md §6.3, §7.1 "Encoding", §9.1 trap 22).
//!
//! [`load_document`] accepts, and [`PolicySource`] names:
//! - the bare policy `{"version", "anyOf"}`;
//! - Key Vault's encoding `{"contentType": "application/json; charset=utf-8", "data":
//!   BASE64URL(policy)}` (also without `contentType`, as a release response returns it, and with
//!   `immutable`), or the base64url text alone;
//! - Azure CLI / SDK output: `releasePolicy` with `encodedPolicy` (the policy JSON text, or its
//!   base64; this shape is read from SDK model docs, not from a captured CLI output);
//! - a key bundle or import request with `release_policy`, a decoded release response
//!   `{"request", "response": {"key": {..., "release_policy"}}}`, or the release response body
//!   `{"value": "<JWS>"}` (its payload read WITHOUT verifying the signature);
//! - the confidential-sidecar-containers key import config `{"key": {"authority": {"endpoint"}},
//!   "claims": [[cond, ...], ...]}`, turned into a policy exactly as that repo's `importkey` tool
//!   does: version "1.0.0", one authority `https://<endpoint>` with `allOf: claims[i]` for each
//!   `claims[i]` (so `anyOf[i]` in messages is `claims[i]` in the file).

use super::error::PolicyError;
use super::{parse, ParseOptions, PolicyWarning, ReleasePolicy};
use crate::format::json::{self, Node};
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;

/// Wrappers nested deeper than this are not followed.
const MAX_WRAPPING: usize = 8;

/// Which document shape the policy was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicySource {
    /// A bare policy object.
    Policy,
    /// `{"contentType"?, "data", "immutable"?}`.
    Encoded,
    /// The base64url `data` text alone.
    Base64Text,
    /// An object with a `release_policy` member (key bundle, import request).
    KeyBundle,
    /// Azure CLI / SDK key output: `releasePolicy.encodedPolicy`.
    CliKeyOutput,
    /// A decoded release response `{"request", "response"}`.
    ReleaseResponse,
    /// A release response body `{"value": "<JWS>"}` (signature not verified).
    ReleaseJws,
    /// A confidential-sidecar-containers key import config.
    ImportKeyConfig,
}

impl PolicySource {
    /// A short kebab-case name for output.
    pub fn as_str(self) -> &'static str {
        match self {
            PolicySource::Policy => "policy",
            PolicySource::Encoded => "encoded-policy",
            PolicySource::Base64Text => "base64url-policy",
            PolicySource::KeyBundle => "key-bundle",
            PolicySource::CliKeyOutput => "cli-key-output",
            PolicySource::ReleaseResponse => "release-response",
            PolicySource::ReleaseJws => "release-response-jws",
            PolicySource::ImportKeyConfig => "import-key-config",
        }
    }
}

/// A policy and what the document around it said.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedPolicy {
    /// The validated policy.
    pub policy: ReleasePolicy,
    /// The outermost document shape recognised.
    pub source: PolicySource,
    /// `contentType` of the encoded form, when present.
    pub content_type: Option<String>,
    /// `immutable` of the encoded form, when present.
    pub immutable: Option<bool>,
    /// Remarks about the wrapper (unusual content type, unverified JWS, ...).
    pub envelope_warnings: Vec<PolicyWarning>,
}

/// Base64 decoder for every flavour Azure uses (url-safe or standard, padded or not; §9.1 trap 13).
pub(crate) fn b64_decode(text: &str) -> Option<Vec<u8>> {
    let config =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    GeneralPurpose::new(&alphabet::URL_SAFE, config)
        .decode(text)
        .or_else(|_| GeneralPurpose::new(&alphabet::STANDARD, config).decode(text))
        .ok()
}

/// Loads a policy from any supported document with the strict grammar.
pub fn load_document(bytes: &[u8]) -> Result<LoadedPolicy, PolicyError> {
    load_document_with(bytes, ParseOptions::default())
}

/// Loads a policy from any supported document with the given grammar relaxations.
pub fn load_document_with(
    bytes: &[u8],
    options: ParseOptions,
) -> Result<LoadedPolicy, PolicyError> {
    let text = bytes.trim_ascii();
    if text.first() == Some(&b'{') {
        let node = json::parse(text).map_err(|e| PolicyError::not_json(&e))?;
        return from_node(&node, "$", 0, options);
    }
    let as_str = std::str::from_utf8(text).unwrap_or("");
    let is_b64 = !as_str.is_empty()
        && as_str.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'+' | b'/' | b'=' | b'.')
        });
    if !is_b64 {
        let err = match json::parse(text) {
            Err(e) => PolicyError::not_json(&e),
            Ok(node) => PolicyError::WrongType {
                path: "$".to_string(),
                expected: "object",
                found: node.type_name(),
            },
        };
        return Err(err);
    }
    if as_str.split('.').count() == 3 {
        let mut loaded = from_jws(as_str, "$", 0, options)?;
        loaded.source = PolicySource::ReleaseJws;
        return Ok(loaded);
    }
    let mut loaded = decode_data(as_str, "$", options)?;
    loaded.source = PolicySource::Base64Text;
    Ok(loaded)
}

fn keys(node: &Node) -> String {
    match node {
        Node::Object(m) => m
            .iter()
            .map(|(k, _)| k.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        other => other.type_name().to_string(),
    }
}

fn has_key_ci(node: &Node, key: &str) -> bool {
    matches!(node, Node::Object(m) if m.iter().any(|(k, _)| k.eq_ignore_ascii_case(key)))
}

fn sub(path: &str, key: &str) -> String {
    if path == "$" {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn from_node(
    node: &Node,
    path: &str,
    depth: usize,
    options: ParseOptions,
) -> Result<LoadedPolicy, PolicyError> {
    if !matches!(node, Node::Object(_)) {
        return Err(PolicyError::WrongType {
            path: path.to_string(),
            expected: "object",
            found: node.type_name(),
        });
    }
    if depth > MAX_WRAPPING {
        return Err(PolicyError::UnrecognisedDocument {
            path: path.to_string(),
            found: keys(node),
        });
    }
    // A policy (or an attempt at one, so its grammar errors are reported as such).
    if ["version", "anyOf", "allOf"]
        .iter()
        .any(|k| has_key_ci(node, k))
    {
        return Ok(LoadedPolicy {
            policy: parse::policy(node, options)?,
            source: PolicySource::Policy,
            content_type: None,
            immutable: None,
            envelope_warnings: Vec::new(),
        });
    }
    if let Some(data) = node.get("data") {
        return encoded(node, "data", data, path, options);
    }
    if let Some(data) = node.get("encodedPolicy") {
        let mut loaded = encoded(node, "encodedPolicy", data, path, options)?;
        loaded.source = PolicySource::CliKeyOutput;
        return Ok(loaded);
    }
    if let Some(inner) = node.get("releasePolicy") {
        let mut loaded = from_node(inner, &sub(path, "releasePolicy"), depth + 1, options)?;
        loaded.source = PolicySource::CliKeyOutput;
        return Ok(loaded);
    }
    if let Some(inner) = node.get("release_policy") {
        let mut loaded = from_node(inner, &sub(path, "release_policy"), depth + 1, options)?;
        loaded.source = PolicySource::KeyBundle;
        return Ok(loaded);
    }
    if let (Some(_), Some(response)) = (node.get("request"), node.get("response")) {
        let mut loaded = from_node(response, &sub(path, "response"), depth + 1, options)?;
        loaded.source = PolicySource::ReleaseResponse;
        return Ok(loaded);
    }
    if let (Some(key), Some(claims)) = (node.get("key"), node.get("claims")) {
        return import_key_config(key, claims, options);
    }
    if let Some(key @ Node::Object(_)) = node.get("key") {
        if key.get("release_policy").is_some() {
            let mut loaded = from_node(key, &sub(path, "key"), depth + 1, options)?;
            loaded.source = PolicySource::KeyBundle;
            return Ok(loaded);
        }
    }
    if let Some(Node::String(jws)) = node.get("value") {
        let mut loaded = from_jws(jws, &sub(path, "value"), depth + 1, options)?;
        loaded.source = PolicySource::ReleaseJws;
        return Ok(loaded);
    }
    Err(PolicyError::UnrecognisedDocument {
        path: path.to_string(),
        found: keys(node),
    })
}

fn encoded(
    node: &Node,
    member: &str,
    data: &Node,
    path: &str,
    options: ParseOptions,
) -> Result<LoadedPolicy, PolicyError> {
    let data_path = sub(path, member);
    let Node::String(text) = data else {
        return Err(PolicyError::WrongType {
            path: data_path,
            expected: "string (base64url of the policy JSON)",
            found: data.type_name(),
        });
    };
    let mut loaded = if text.trim_start().starts_with('{') {
        // SDK output may carry the decoded policy text itself.
        let node = json::parse(text.as_bytes()).map_err(|e| PolicyError::not_json(&e))?;
        LoadedPolicy {
            policy: parse::policy(&node, options)?,
            source: PolicySource::Encoded,
            content_type: None,
            immutable: None,
            envelope_warnings: Vec::new(),
        }
    } else {
        decode_data(text, &data_path, options)?
    };
    loaded.source = PolicySource::Encoded;
    match node.get("contentType") {
        None => {}
        Some(Node::String(ct)) => {
            if !ct.to_ascii_lowercase().starts_with("application/json") {
                loaded.envelope_warnings.push(PolicyWarning {
                    path: sub(path, "contentType"),
                    code: "content-type-unexpected",
                    message: format!(
                        "contentType \"{ct}\" is not application/json; Key Vault documents \
                         \"application/json; charset=utf-8\""
                    ),
                });
            }
            loaded.content_type = Some(ct.clone());
        }
        Some(other) => {
            return Err(PolicyError::WrongType {
                path: sub(path, "contentType"),
                expected: "string",
                found: other.type_name(),
            })
        }
    }
    match node.get("immutable") {
        None => {}
        Some(Node::Bool(b)) => loaded.immutable = Some(*b),
        Some(other) => {
            return Err(PolicyError::WrongType {
                path: sub(path, "immutable"),
                expected: "boolean",
                found: other.type_name(),
            })
        }
    }
    Ok(loaded)
}

/// `data`: base64url of the policy JSON; the decoded text must be a bare policy.
fn decode_data(text: &str, path: &str, options: ParseOptions) -> Result<LoadedPolicy, PolicyError> {
    let bytes = b64_decode(text.trim()).ok_or(PolicyError::Base64 {
        path: path.to_string(),
        found_len: text.len(),
    })?;
    let node = json::parse(&bytes).map_err(|e| PolicyError::not_json(&e))?;
    Ok(LoadedPolicy {
        policy: parse::policy(&node, options)?,
        source: PolicySource::Encoded,
        content_type: None,
        immutable: None,
        envelope_warnings: Vec::new(),
    })
}

/// `{"value": "<JWS>"}`: the payload is read without verifying the signature.
fn from_jws(
    jws: &str,
    path: &str,
    depth: usize,
    options: ParseOptions,
) -> Result<LoadedPolicy, PolicyError> {
    let segments: Vec<&str> = jws.trim().split('.').collect();
    let payload = match segments.as_slice() {
        [_, payload, _] => *payload,
        _ => {
            return Err(PolicyError::UnrecognisedDocument {
                path: path.to_string(),
                found: format!("a string with {} dot-separated segments", segments.len()),
            })
        }
    };
    let bytes = b64_decode(payload).ok_or(PolicyError::Base64 {
        path: path.to_string(),
        found_len: payload.len(),
    })?;
    let node = json::parse(&bytes).map_err(|e| PolicyError::not_json(&e))?;
    let mut loaded = from_node(&node, path, depth + 1, options)?;
    loaded.envelope_warnings.push(PolicyWarning {
        path: path.to_string(),
        code: "release-jws-unverified",
        message: "the release response JWS was decoded without verifying its signature".to_string(),
    });
    Ok(loaded)
}

fn import_key_config(
    key: &Node,
    claims: &Node,
    options: ParseOptions,
) -> Result<LoadedPolicy, PolicyError> {
    let endpoint = match key.get("authority").map(|a| (a, a.get("endpoint"))) {
        Some((_, Some(Node::String(e)))) if !e.is_empty() => e.as_str(),
        Some((_, Some(Node::String(_)))) => {
            return Err(PolicyError::EmptyString {
                path: "key.authority".to_string(),
                key: "endpoint",
            })
        }
        Some((_, Some(other))) => {
            return Err(PolicyError::WrongType {
                path: "key.authority.endpoint".to_string(),
                expected: "string",
                found: other.type_name(),
            })
        }
        Some((_, None)) => {
            return Err(PolicyError::MissingKey {
                path: "key.authority".to_string(),
                key: "endpoint",
                hint: " (the MAA host the key's policy trusts)",
            })
        }
        None => {
            return Err(PolicyError::MissingKey {
                path: "key".to_string(),
                key: "authority",
                hint: " ({\"endpoint\": \"<MAA host>\"})",
            })
        }
    };
    let mut envelope_warnings = Vec::new();
    let authority = if endpoint.contains("://") {
        envelope_warnings.push(PolicyWarning {
            path: "key.authority.endpoint".to_string(),
            code: "import-endpoint-has-scheme",
            message: format!(
                "endpoint \"{endpoint}\" already has a scheme; the importkey tool prepends \
                 https:// to it, which would give an authority no token matches; write the \
                 host only"
            ),
        });
        endpoint.to_string()
    } else {
        format!("https://{endpoint}")
    };
    let Node::Array(lists) = claims else {
        return Err(PolicyError::WrongType {
            path: "claims".to_string(),
            expected: "array of arrays of conditions",
            found: claims.type_name(),
        });
    };
    let authorities = lists
        .iter()
        .map(|list| {
            Node::Object(vec![
                ("authority".to_string(), Node::String(authority.clone())),
                ("allOf".to_string(), list.clone()),
            ])
        })
        .collect();
    let policy_node = Node::Object(vec![
        (
            "version".to_string(),
            Node::String(super::SUPPORTED_VERSION.to_string()),
        ),
        ("anyOf".to_string(), Node::Array(authorities)),
    ]);
    Ok(LoadedPolicy {
        policy: parse::policy(&policy_node, options)?,
        source: PolicySource::ImportKeyConfig,
        content_type: None,
        immutable: None,
        envelope_warnings,
    })
}
