//! The release-policy grammar walker (PROTOCOLS.md §7.1): [`Node`] tree → [`ReleasePolicy`].
//!
//! Rules (each refusal is a specific [`PolicyError`] with the JSON path):
//! - top level: exactly `version` ("1.0.0") and `anyOf` (a non-empty array of authorities);
//!   a top-level `allOf` is its own error; any other member is unknown.
//! - authority: `authority` (non-empty string) and exactly one of `allOf` / `anyOf`.
//! - condition: `{"claim": string, <one operator>: string | number | bool}` or exactly one
//!   `{"allOf": [...]}` / `{"anyOf": [...]}` group (non-empty, nesting up to [`MAX_DEPTH`]).
//! - keywords are matched exactly (camelCase); another letter case is [`PolicyError::KeyCase`]
//!   unless [`ParseOptions::key_case_insensitive`] is set. A member twice is refused.

use super::error::PolicyError;
use super::{
    Authority, ClaimCondition, Combinator, Condition, Group, Operator, ParseOptions, PolicyValue,
    ReleasePolicy, SUPPORTED_VERSION,
};
use crate::format::json::Node;

/// Deepest `allOf`/`anyOf` nesting accepted below an authority.
pub const MAX_DEPTH: usize = 32;

const TOP_KEYS: &[&str] = &["version", "anyOf", "allOf"];
const TOP_ALLOWED: &str = "version, anyOf";
const AUTHORITY_KEYS: &[&str] = &["authority", "allOf", "anyOf"];
const AUTHORITY_ALLOWED: &str = "authority, allOf, anyOf";
const CONDITION_KEYS: &[&str] = &[
    "claim",
    "allOf",
    "anyOf",
    "equals",
    "notEquals",
    "less",
    "lessOrEquals",
    "greater",
    "greaterOrEquals",
    "exists",
    "condition",
    "value",
];

/// Members of an object after the duplicate and spelling checks: (canonical or raw key, value).
struct Members<'a> {
    items: Vec<(Option<&'static str>, &'a str, &'a Node)>,
}

impl<'a> Members<'a> {
    fn get(&self, key: &str) -> Option<&'a Node> {
        self.items
            .iter()
            .find(|(c, _, _)| *c == Some(key))
            .map(|(_, _, v)| *v)
    }

    fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    fn raw_keys(&self) -> String {
        self.items
            .iter()
            .map(|(_, k, _)| *k)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Checks an object at `path`: no duplicate member, keywords spelled as the grammar spells
/// them. Unknown members are kept with `None` so each caller reports them in its own terms.
fn members<'a>(
    node: &'a Node,
    path: &str,
    known: &[&'static str],
    options: ParseOptions,
) -> Result<Members<'a>, PolicyError> {
    let Node::Object(raw) = node else {
        return Err(PolicyError::WrongType {
            path: path.to_string(),
            expected: "object",
            found: node.type_name(),
        });
    };
    let mut items: Vec<(Option<&'static str>, &'a str, &'a Node)> = Vec::new();
    for (key, value) in raw {
        let canonical = match known.iter().find(|k| **k == key.as_str()) {
            Some(k) => Some(*k),
            None => match known.iter().find(|k| k.eq_ignore_ascii_case(key)) {
                Some(k) if options.key_case_insensitive => Some(*k),
                Some(k) => {
                    return Err(PolicyError::KeyCase {
                        path: path.to_string(),
                        found: key.clone(),
                        expected: k,
                    })
                }
                None => None,
            },
        };
        let duplicate = items.iter().any(|(c, k, _)| match (c, canonical) {
            (Some(c), Some(n)) => *c == n,
            _ => *k == key.as_str(),
        });
        if duplicate {
            return Err(PolicyError::DuplicateKey {
                path: path.to_string(),
                key: key.clone(),
            });
        }
        items.push((canonical, key.as_str(), value));
    }
    Ok(Members { items })
}

fn string<'a>(node: &'a Node, path: &str, key: &'static str) -> Result<&'a str, PolicyError> {
    match node {
        Node::String(s) if s.is_empty() => Err(PolicyError::EmptyString {
            path: path.to_string(),
            key,
        }),
        Node::String(s) => Ok(s),
        other => Err(PolicyError::WrongType {
            path: join(path, key),
            expected: "string",
            found: other.type_name(),
        }),
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() || path == "$" {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Parses a bare policy object (`{"version", "anyOf"}`).
pub(crate) fn policy(node: &Node, options: ParseOptions) -> Result<ReleasePolicy, PolicyError> {
    let top = members(node, "$", TOP_KEYS, options)?;
    for (canonical, key, _) in &top.items {
        match canonical {
            Some("allOf") => return Err(PolicyError::TopLevelAllOf),
            Some(_) => {}
            None => {
                return Err(PolicyError::UnknownKey {
                    path: "$".to_string(),
                    key: key.to_string(),
                    allowed: TOP_ALLOWED,
                })
            }
        }
    }
    let version = match top.get("version") {
        None => return Err(PolicyError::VersionMissing),
        Some(Node::String(v)) if v == SUPPORTED_VERSION => v.clone(),
        Some(Node::String(v)) => return Err(PolicyError::VersionUnsupported { found: v.clone() }),
        Some(other) => {
            return Err(PolicyError::WrongType {
                path: "version".to_string(),
                expected: "string \"1.0.0\"",
                found: other.type_name(),
            })
        }
    };
    let list = top.get("anyOf").ok_or(PolicyError::MissingKey {
        path: "$".to_string(),
        key: "anyOf",
        hint: " (the array of authorities)",
    })?;
    let items = array(list, "anyOf", "authority")?;
    let mut authorities = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        authorities.push(authority(item, &format!("anyOf[{i}]"), options)?);
    }
    Ok(ReleasePolicy {
        version,
        authorities,
    })
}

fn array<'a>(node: &'a Node, path: &str, what: &'static str) -> Result<&'a [Node], PolicyError> {
    match node {
        Node::Array(items) if items.is_empty() => Err(PolicyError::EmptyArray {
            path: path.to_string(),
            what,
        }),
        Node::Array(items) => Ok(items),
        other => Err(PolicyError::WrongType {
            path: path.to_string(),
            expected: "array",
            found: other.type_name(),
        }),
    }
}

fn authority(node: &Node, path: &str, options: ParseOptions) -> Result<Authority, PolicyError> {
    let m = members(node, path, AUTHORITY_KEYS, options)?;
    if let Some((_, key, _)) = m.items.iter().find(|(c, _, _)| c.is_none()) {
        return Err(PolicyError::UnknownKey {
            path: path.to_string(),
            key: key.to_string(),
            allowed: AUTHORITY_ALLOWED,
        });
    }
    let name = match m.get("authority") {
        Some(n) => string(n, path, "authority")?.to_string(),
        None => {
            return Err(PolicyError::MissingKey {
                path: path.to_string(),
                key: "authority",
                hint: " (the attestation provider URL, matched against the token's iss)",
            })
        }
    };
    let group = match (m.get("allOf"), m.get("anyOf")) {
        (Some(_), Some(_)) => {
            return Err(PolicyError::AuthorityCombinator {
                path: path.to_string(),
                found: "both",
            })
        }
        (None, None) => {
            return Err(PolicyError::AuthorityCombinator {
                path: path.to_string(),
                found: "neither",
            })
        }
        (Some(list), None) => group(Combinator::AllOf, list, path, 0, options)?,
        (None, Some(list)) => group(Combinator::AnyOf, list, path, 0, options)?,
    };
    Ok(Authority {
        authority: name,
        group,
    })
}

fn group(
    combinator: Combinator,
    list: &Node,
    parent: &str,
    depth: usize,
    options: ParseOptions,
) -> Result<Group, PolicyError> {
    let path = join(parent, combinator.name());
    if depth > MAX_DEPTH {
        return Err(PolicyError::TooDeep {
            path,
            limit: MAX_DEPTH,
        });
    }
    let items = array(list, &path, "condition")?;
    let mut conditions = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        conditions.push(condition(item, &format!("{path}[{i}]"), depth, options)?);
    }
    Ok(Group {
        combinator,
        conditions,
    })
}

fn condition(
    node: &Node,
    path: &str,
    depth: usize,
    options: ParseOptions,
) -> Result<Condition, PolicyError> {
    let m = members(node, path, CONDITION_KEYS, options)?;
    let groups: Vec<Combinator> = [Combinator::AllOf, Combinator::AnyOf]
        .into_iter()
        .filter(|c| m.has(c.name()))
        .collect();
    if let [combinator] = groups.as_slice() {
        if m.items.len() != 1 {
            return Err(PolicyError::ConditionShape {
                path: path.to_string(),
                found: m.raw_keys(),
            });
        }
        let list = m.get(combinator.name()).unwrap_or(&Node::Null);
        return Ok(Condition::Group(group(
            *combinator,
            list,
            path,
            depth + 1,
            options,
        )?));
    }
    if !groups.is_empty() {
        return Err(PolicyError::ConditionShape {
            path: path.to_string(),
            found: m.raw_keys(),
        });
    }
    let Some(claim_node) = m.get("claim") else {
        let has_operator = m
            .items
            .iter()
            .any(|(c, _, _)| c.and_then(Operator::from_name).is_some());
        if has_operator {
            return Err(PolicyError::MissingKey {
                path: path.to_string(),
                key: "claim",
                hint: " (the dotted claim name the operator applies to)",
            });
        }
        return Err(PolicyError::ConditionShape {
            path: path.to_string(),
            found: m.raw_keys(),
        });
    };
    let claim = string(claim_node, path, "claim")?.to_string();
    if m.has("condition") || m.has("value") {
        return legacy(&m, path, claim, options);
    }
    let mut operators: Vec<(Operator, &str, &Node)> = Vec::new();
    for (canonical, key, value) in &m.items {
        match canonical {
            Some("claim") => {}
            Some(c) => match Operator::from_name(c) {
                Some(op) => operators.push((op, key, value)),
                None => {
                    return Err(PolicyError::UnknownOperator {
                        path: path.to_string(),
                        key: key.to_string(),
                    })
                }
            },
            None => {
                return Err(PolicyError::UnknownOperator {
                    path: path.to_string(),
                    key: key.to_string(),
                })
            }
        }
    }
    match operators.as_slice() {
        [] => Err(PolicyError::NoOperator {
            path: path.to_string(),
            claim,
        }),
        [(operator, _, value)] => Ok(Condition::Claim(ClaimCondition {
            claim,
            operator: *operator,
            value: value_of(*operator, value, path)?,
        })),
        many => Err(PolicyError::TwoOperators {
            path: path.to_string(),
            operators: many.iter().map(|(_, k, _)| k.to_string()).collect(),
        }),
    }
}

/// `{"claim", "condition": "<operator>", "value": v}` (one REST-spec example), only on request.
fn legacy(
    m: &Members<'_>,
    path: &str,
    claim: String,
    options: ParseOptions,
) -> Result<Condition, PolicyError> {
    if !options.legacy_condition_shape {
        return Err(PolicyError::LegacyCondition {
            path: path.to_string(),
        });
    }
    if let Some((_, key, _)) = m
        .items
        .iter()
        .find(|(c, _, _)| !matches!(c, Some("claim" | "condition" | "value")))
    {
        return Err(PolicyError::ConditionShape {
            path: path.to_string(),
            found: format!("{key} beside condition/value"),
        });
    }
    let name = match m.get("condition") {
        Some(Node::String(s)) => s.as_str(),
        Some(other) => {
            return Err(PolicyError::WrongType {
                path: join(path, "condition"),
                expected: "string naming an operator",
                found: other.type_name(),
            })
        }
        None => {
            return Err(PolicyError::MissingKey {
                path: path.to_string(),
                key: "condition",
                hint: "",
            })
        }
    };
    let operator = Operator::ALL
        .iter()
        .copied()
        .find(|o| {
            o.name() == name
                || (options.key_case_insensitive && o.name().eq_ignore_ascii_case(name))
        })
        .ok_or_else(|| PolicyError::UnknownOperator {
            path: path.to_string(),
            key: name.to_string(),
        })?;
    let value = m.get("value").ok_or(PolicyError::MissingKey {
        path: path.to_string(),
        key: "value",
        hint: "",
    })?;
    Ok(Condition::Claim(ClaimCondition {
        claim,
        operator,
        value: value_of(operator, value, path)?,
    }))
}

fn value_of(operator: Operator, node: &Node, path: &str) -> Result<PolicyValue, PolicyError> {
    let value = match node {
        Node::String(s) => PolicyValue::String(s.clone()),
        Node::Number(n) => PolicyValue::Number(n.clone()),
        Node::Bool(b) => PolicyValue::Bool(*b),
        other => {
            return Err(PolicyError::ValueType {
                path: path.to_string(),
                operator: operator.name(),
                found: other.type_name(),
            })
        }
    };
    if operator == Operator::Exists && value.as_exists().is_none() {
        return Err(PolicyError::ExistsValue {
            path: path.to_string(),
            found: value.to_json().to_string(),
        });
    }
    Ok(value)
}
