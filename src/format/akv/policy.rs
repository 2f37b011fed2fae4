//! Secure key release policies of Azure Key Vault Premium and Managed HSM (PROTOCOLS.md §7):
//! grammar (§7.1), evaluation against MAA token claims (§7.2), the encodings Key Vault uses to
//! carry a policy (§6.3, §7.1 "Encoding key release policy") and the sidecar's key import config.
//!
//! PURE: bytes or JSON in, typed values or a specific error out. No I/O, no clock, and no token
//! signature check: [`ReleasePolicy::evaluate`] trusts the claims it is given (verify the token
//! with the JOSE module first).
//!
//! Decisions on the open questions (PROTOCOLS.md §10 items 1–2), also in `docs/errors-policy.md`:
//! - `version` must be present and exactly "1.0.0": the grammar fixes that literal and no
//!   source documents another version, so a policy Key Vault might read differently is refused.
//! - Keywords are matched in camelCase, as every real policy writes them; other letter case is a
//!   specific error ([`PolicyError::KeyCase`]) unless [`ParseOptions::key_case_insensitive`].
//! - All seven operators of the EBNF are parsed and evaluated; the grammar page's prose says only
//!   `equals` is allowed "in the first iteration", so the others produce a warning.
//! - `equals` coerces as §7.2 infers from working production policies (see [`eval`]).
//! - Grammar violations are errors; things the grammar allows but that can never match
//!   (placeholders, non-https authorities, empty claim path segments) are warnings.
//!
//! Layout: [`crate::format::json`] (order-preserving JSON, shared), `parse.rs` (grammar), `document.rs` (wrappers),
//! [`eval`] (evaluation and explanations), `claims.rs` (token payload), `error.rs`.

mod claims;
mod document;
mod error;
pub mod eval;
mod parse;

pub use claims::{claims_from_json, claims_from_jwt, read_claims};
pub use document::{load_document, load_document_with, LoadedPolicy, PolicySource};
pub use error::{ClaimsError, PolicyError};
pub use eval::{Evaluation, Unmet};
pub use parse::MAX_DEPTH;

use base64::Engine;
use serde::Serialize;
use serde_json::{json, Value};

/// The only release-policy version the grammar defines.
pub const SUPPORTED_VERSION: &str = "1.0.0";

/// A validated release policy: `anyOf` over authorities.
#[derive(Debug, Clone, PartialEq)]
pub struct ReleasePolicy {
    /// Always [`SUPPORTED_VERSION`].
    pub version: String,
    /// The authorities, in document order (`anyOf[i]`); at least one.
    pub authorities: Vec<Authority>,
}

/// One authority: an issuer and the conditions its tokens must meet.
#[derive(Debug, Clone, PartialEq)]
pub struct Authority {
    /// The issuer URL as written (compared with the token's `iss`, one trailing `/` ignored).
    pub authority: String,
    /// Its `allOf` or `anyOf` conditions.
    pub group: Group,
}

/// An `allOf` / `anyOf` list of conditions (never empty).
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    /// AND or OR.
    pub combinator: Combinator,
    /// The conditions, in document order.
    pub conditions: Vec<Condition>,
}

/// How a group combines its conditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Combinator {
    /// Every condition must hold.
    AllOf,
    /// At least one condition must hold.
    AnyOf,
}

impl Combinator {
    /// The JSON keyword: `allOf` or `anyOf`.
    pub fn name(self) -> &'static str {
        match self {
            Combinator::AllOf => "allOf",
            Combinator::AnyOf => "anyOf",
        }
    }
}

/// A condition: a claim comparison or a nested group.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// `{"claim": ..., <operator>: <value>}`.
    Claim(ClaimCondition),
    /// `{"allOf": [...]}` or `{"anyOf": [...]}`.
    Group(Group),
}

/// `{"claim": "<dotted path>", "<operator>": <value>}`.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimCondition {
    /// Dotted claim path (`x-ms-isolation-tee.x-ms-attestation-type`).
    pub claim: String,
    /// The comparison.
    pub operator: Operator,
    /// The value to compare with (for `exists`: true/false or "true"/"false").
    pub value: PolicyValue,
}

/// The seven operators of the grammar (PROTOCOLS.md §7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    /// `equals`.
    Equals,
    /// `notEquals`.
    NotEquals,
    /// `less`.
    Less,
    /// `lessOrEquals`.
    LessOrEquals,
    /// `greater`.
    Greater,
    /// `greaterOrEquals`.
    GreaterOrEquals,
    /// `exists`.
    Exists,
}

impl Operator {
    /// Every operator, in grammar order.
    pub const ALL: [Operator; 7] = [
        Operator::Equals,
        Operator::NotEquals,
        Operator::Less,
        Operator::LessOrEquals,
        Operator::Greater,
        Operator::GreaterOrEquals,
        Operator::Exists,
    ];

    /// The JSON keyword, e.g. `lessOrEquals`.
    pub fn name(self) -> &'static str {
        match self {
            Operator::Equals => "equals",
            Operator::NotEquals => "notEquals",
            Operator::Less => "less",
            Operator::LessOrEquals => "lessOrEquals",
            Operator::Greater => "greater",
            Operator::GreaterOrEquals => "greaterOrEquals",
            Operator::Exists => "exists",
        }
    }

    /// The operator spelled exactly `name`.
    pub fn from_name(name: &str) -> Option<Operator> {
        Operator::ALL.into_iter().find(|o| o.name() == name)
    }
}

/// A condition's value: the grammar allows a string, a number, true or false.
#[derive(Debug, Clone, PartialEq)]
pub enum PolicyValue {
    /// A JSON string.
    String(String),
    /// A JSON number.
    Number(serde_json::Number),
    /// `true` / `false`.
    Bool(bool),
}

impl PolicyValue {
    /// The value as JSON.
    pub fn to_json(&self) -> Value {
        match self {
            PolicyValue::String(s) => Value::String(s.clone()),
            PolicyValue::Number(n) => Value::Number(n.clone()),
            PolicyValue::Bool(b) => Value::Bool(*b),
        }
    }

    /// For `exists`: true/false, or the strings "true"/"false"; `None` for anything else.
    pub fn as_exists(&self) -> Option<bool> {
        match self {
            PolicyValue::Bool(b) => Some(*b),
            PolicyValue::String(s) if s == "true" => Some(true),
            PolicyValue::String(s) if s == "false" => Some(false),
            _ => None,
        }
    }
}

/// Relaxations of the grammar, all off by default (the emulator's compatibility switches).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ParseOptions {
    /// Accept keywords in any letter case (`anyof`, `AllOf`, `Equals`), as the EBNF text
    /// writes some of them; whether Key Vault does is unverified.
    pub key_case_insensitive: bool,
    /// Accept `{"claim", "condition": "<operator>", "value"}` (one REST-spec example).
    pub legacy_condition_shape: bool,
}

/// Something the grammar allows but that will probably not do what the author meant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyWarning {
    /// JSON path of the place (`anyOf[0].allOf[1]`).
    pub path: String,
    /// Stable kebab-case code (listed in `docs/errors-policy.md`).
    pub code: &'static str,
    /// What is odd and what to do.
    pub message: String,
}

/// Parses a bare policy (`{"version": "1.0.0", "anyOf": [...]}`) with the strict grammar.
pub fn parse_policy(bytes: &[u8]) -> Result<ReleasePolicy, PolicyError> {
    parse_policy_with(bytes, ParseOptions::default())
}

/// Parses a bare policy with the given relaxations.
pub fn parse_policy_with(
    bytes: &[u8],
    options: ParseOptions,
) -> Result<ReleasePolicy, PolicyError> {
    let node = crate::format::json::parse(bytes).map_err(|e| PolicyError::not_json(&e))?;
    parse::policy(&node, options)
}

impl ReleasePolicy {
    /// The policy as canonical JSON (camelCase keywords, document order of arrays).
    pub fn to_json(&self) -> Value {
        json!({
            "version": self.version,
            "anyOf": self.authorities.iter().map(|a| {
                let mut o = serde_json::Map::new();
                o.insert("authority".into(), Value::String(a.authority.clone()));
                o.insert(a.group.combinator.name().into(), group_json(&a.group));
                Value::Object(o)
            }).collect::<Vec<_>>(),
        })
    }

    /// The `data` member Key Vault carries: unpadded base64url of the compact policy JSON.
    pub fn encode_data(&self) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.to_json().to_string())
    }

    /// Evaluates the policy against token claims (see [`eval`]). The token's signature, expiry
    /// and `x-ms-runtime` keys are NOT checked here.
    pub fn evaluate(&self, claims: &Value) -> Evaluation {
        eval::evaluate(self, claims)
    }

    /// Legal but suspicious constructs (see [`PolicyWarning`]).
    pub fn warnings(&self) -> Vec<PolicyWarning> {
        let mut out = Vec::new();
        for (i, a) in self.authorities.iter().enumerate() {
            let path = format!("anyOf[{i}]");
            let auth = &a.authority;
            if auth.contains('<') || auth.contains('>') {
                out.push(PolicyWarning {
                    path: path.clone(),
                    code: "authority-placeholder",
                    message: format!(
                        "authority \"{auth}\" looks like a template placeholder; put the MAA \
                         provider URL (https://<name>.<region>.attest.azure.net) there"
                    ),
                });
            } else if !auth.to_ascii_lowercase().starts_with("https://") {
                out.push(PolicyWarning {
                    path: path.clone(),
                    code: "authority-not-https",
                    message: format!(
                        "authority \"{auth}\" is not an https URL; MAA tokens carry iss = \
                         https://<host>, so this authority matches no MAA token"
                    ),
                });
            }
            group_warnings(&a.group, &path, &mut out);
        }
        out
    }
}

fn group_json(group: &Group) -> Value {
    Value::Array(
        group
            .conditions
            .iter()
            .map(|c| match c {
                Condition::Claim(c) => {
                    let mut o = serde_json::Map::new();
                    o.insert("claim".into(), Value::String(c.claim.clone()));
                    o.insert(c.operator.name().into(), c.value.to_json());
                    Value::Object(o)
                }
                Condition::Group(g) => {
                    let mut o = serde_json::Map::new();
                    o.insert(g.combinator.name().into(), group_json(g));
                    Value::Object(o)
                }
            })
            .collect(),
    )
}

fn group_warnings(group: &Group, parent: &str, out: &mut Vec<PolicyWarning>) {
    let base = format!("{parent}.{}", group.combinator.name());
    for (i, c) in group.conditions.iter().enumerate() {
        let path = format!("{base}[{i}]");
        match c {
            Condition::Group(g) => group_warnings(g, &path, out),
            Condition::Claim(c) => {
                if c.operator != Operator::Equals {
                    out.push(PolicyWarning {
                        path: path.clone(),
                        code: "operator-not-equals",
                        message: format!(
                            "operator \"{}\": the grammar page says only \"equals\" is allowed \
                             in the first iteration; Key Vault may refuse or ignore it",
                            c.operator.name()
                        ),
                    });
                }
                if c.claim.split('.').any(str::is_empty) {
                    out.push(PolicyWarning {
                        path: path.clone(),
                        code: "claim-path-empty-segment",
                        message: format!(
                            "claim \"{}\" has an empty segment (leading, trailing or double \
                             dot); no token claim can match it",
                            c.claim
                        ),
                    });
                }
                if let PolicyValue::String(s) = &c.value {
                    if s.starts_with('<') && s.ends_with('>') {
                        out.push(PolicyWarning {
                            path,
                            code: "value-placeholder",
                            message: format!(
                                "value \"{s}\" looks like a template placeholder; no token \
                                 will carry it"
                            ),
                        });
                    }
                }
            }
        }
    }
}

/// Fuzzing entry point: parse any document shape, then evaluate against a fixed AzureGuest-like
/// claims object. Must never panic; the result is ignored.
pub fn fuzz_policy(data: &[u8]) {
    let claims = json!({
        "iss": "https://sharedweu.weu.attest.azure.net",
        "x-ms-attestation-type": "azurevm",
        "x-ms-azurevm-vmid": "B958DC88-E41D-47F1-8D20-E57B6B7E9825",
        "x-ms-azurevm-osversion-major": 24,
        "secureboot": true,
        "x-ms-isolation-tee": {
            "x-ms-attestation-type": "sevsnpvm",
            "x-ms-compliance-status": "azure-compliant-cvm",
            "x-ms-sevsnpvm-is-debuggable": false,
            "x-ms-sevsnpvm-vmpl": 0,
            "x-ms-sevsnpvm-guestsvn": 7,
        },
    });
    for options in [
        ParseOptions::default(),
        ParseOptions {
            key_case_insensitive: true,
            legacy_condition_shape: true,
        },
    ] {
        if let Ok(loaded) = load_document_with(data, options) {
            let _ = loaded.policy.evaluate(&claims);
            let _ = loaded.policy.warnings();
            let _ = loaded.policy.encode_data();
        }
    }
    let _ = read_claims(data);
}

#[cfg(test)]
mod eval_tests;
#[cfg(test)]
mod tests;
