//! Evaluating a release policy against token claims, with an explanation of every unmet
//! condition (PROTOCOLS.md §7.2; trap 16, 18 and 21 of §9.1).
//!
//! Semantics (the documented ones cite the grammar page, D:grammar; the rest is §7.2's inference
//! from production policies, or our decision where nothing is documented):
//! - Authorities are tried in order; the first whose `authority` equals the token's `iss` and
//!   whose conditions hold allows the release. Comparison: scheme and host lower-cased, exactly
//!   one trailing `/` removed on each side (§7.2, trap 21: real policies carry both forms while
//!   MAA's `iss` never has the slash).
//! - Claim paths are split on `.` and walked through nested objects (D:grammar "dot notation");
//!   names with dashes are ordinary keys. A missing claim (or a path through a non-object) makes
//!   the condition false (D:grammar: "If a specified claim isn't present, its condition is
//!   considered to haven't been met"), except `exists: false`, which then holds.
//! - `equals` (§7.2 `typed_equal`, trap 16): same JSON type → equal values (strings
//!   case-sensitive; numbers numerically); boolean claim vs string → "true"/"false" (lower case)
//!   equals the string; integer claim vs string → its decimal form equals the string ("0", not
//!   "00" or "0.0"); every other pairing (string claim vs number or bool value, float claim vs
//!   string, arrays, objects, null) is unequal.
//! - `notEquals`: the claim is present and not `equals` (our decision: a missing claim fails every
//!   operator but `exists`, so `notEquals` cannot be met by deleting a claim).
//! - `less`/`lessOrEquals`/`greater`/`greaterOrEquals` (undocumented beyond the EBNF; our
//!   decision, conservative): the claim must be a JSON number and the value a number or a string
//!   holding a decimal integer; anything else is not comparable, so the condition fails.
//! - `exists: true` holds when the claim is present (any value, even null), `exists: false` when
//!   it is absent.

use super::{Authority, ClaimCondition, Combinator, Condition, Group, Operator, ReleasePolicy};
use serde::Serialize;
use serde_json::Value;
use std::cmp::Ordering;

/// Longest JSON text shown for a found object or array; larger ones are summarised.
const MAX_FOUND_CHARS: usize = 200;

/// The decision and, for a refusal, why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evaluation {
    /// Whether Key Vault would release the key to this token (signature and expiry aside).
    pub allowed: bool,
    /// The authority that allowed it; for a refusal the first authority matching `iss` whose
    /// conditions failed, or `None` when no authority matched the issuer.
    pub authority: Option<String>,
    /// For a refusal, each condition that was not met (empty when allowed).
    pub unmet: Vec<Unmet>,
}

/// One condition that was not met.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Unmet {
    /// JSON path of the condition in the policy (`anyOf[0].allOf[1]`); `anyOf` for the issuer.
    pub path: String,
    /// The claim path (`iss` for the issuer check).
    pub claim: String,
    /// The operator (`equals` for the issuer check).
    pub operator: &'static str,
    /// The policy's value (for the issuer: the array of authorities).
    pub expected: Value,
    /// The token's value; `None` (JSON null) when the claim is missing.
    pub found: Option<Value>,
    /// Why it fails, and a hint when the cause is a known trap.
    pub reason: String,
}

impl std::fmt::Display for Unmet {
    /// `CLAIM at PATH: OPERATOR EXPECTED expected, found VALUE|(absent): REASON`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let found = self
            .found
            .as_ref()
            .map_or_else(|| "(absent)".to_string(), Value::to_string);
        write!(
            f,
            "{} at {}: {} {} expected, found {}: {}",
            self.claim, self.path, self.operator, self.expected, found, self.reason
        )
    }
}

/// Lower-cases scheme and host and removes exactly one trailing `/` (PROTOCOLS.md §7.2).
pub fn normalize_authority(url: &str) -> String {
    let mut out = match url.find("://") {
        Some(i) => {
            let (scheme, rest) = url.split_at(i);
            let rest = rest.get(3..).unwrap_or("");
            let host_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            let (host, tail) = rest.split_at(host_end);
            format!(
                "{}://{}{}",
                scheme.to_ascii_lowercase(),
                host.to_ascii_lowercase(),
                tail
            )
        }
        None => url.to_string(),
    };
    if out.ends_with('/') {
        out.pop();
    }
    out
}

/// Whether a policy authority matches a token issuer.
pub fn authority_matches(authority: &str, iss: &str) -> bool {
    normalize_authority(authority) == normalize_authority(iss)
}

/// The value at a dotted claim path, `None` when any step is missing or not an object.
pub fn lookup<'a>(claims: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.')
        .try_fold(claims, |node, segment| node.as_object()?.get(segment))
}

pub(crate) fn evaluate(policy: &ReleasePolicy, claims: &Value) -> Evaluation {
    let iss = claims.get("iss");
    let mut first_failed: Option<String> = None;
    let mut unmet = Vec::new();
    for (i, authority) in policy.authorities.iter().enumerate() {
        let Some(Value::String(iss)) = iss else { break };
        if !authority_matches(&authority.authority, iss) {
            continue;
        }
        let mut mine = Vec::new();
        if authority_holds(authority, i, claims, &mut mine) {
            return Evaluation {
                allowed: true,
                authority: Some(authority.authority.clone()),
                unmet: Vec::new(),
            };
        }
        first_failed.get_or_insert_with(|| authority.authority.clone());
        unmet.append(&mut mine);
    }
    if first_failed.is_none() {
        unmet.push(issuer_unmet(policy, iss));
    }
    Evaluation {
        allowed: false,
        authority: first_failed,
        unmet,
    }
}

fn issuer_unmet(policy: &ReleasePolicy, iss: Option<&Value>) -> Unmet {
    let n = policy.authorities.len();
    let reason = match iss {
        None => "the token has no iss claim, so it matches no authority".to_string(),
        Some(Value::String(s)) => format!(
            "the token's issuer {s} matches none of the policy's {n} authorit{} (compared \
             ignoring one trailing slash and the case of scheme and host); attest with the \
             provider the policy names, or add this one",
            if n == 1 { "y" } else { "ies" }
        ),
        Some(_) => "the token's iss claim is not a string, so it matches no authority".to_string(),
    };
    Unmet {
        path: "anyOf".to_string(),
        claim: "iss".to_string(),
        operator: Operator::Equals.name(),
        expected: Value::Array(
            policy
                .authorities
                .iter()
                .map(|a| Value::String(a.authority.clone()))
                .collect(),
        ),
        found: iss.cloned(),
        reason,
    }
}

fn authority_holds(
    authority: &Authority,
    index: usize,
    claims: &Value,
    out: &mut Vec<Unmet>,
) -> bool {
    group_holds(&authority.group, &format!("anyOf[{index}]"), claims, out)
}

fn group_holds(group: &Group, parent: &str, claims: &Value, out: &mut Vec<Unmet>) -> bool {
    let base = format!("{parent}.{}", group.combinator.name());
    let mut failed = Vec::new();
    let mut any = false;
    let mut all = true;
    for (i, condition) in group.conditions.iter().enumerate() {
        let path = format!("{base}[{i}]");
        let holds = match condition {
            Condition::Claim(c) => {
                let found = lookup(claims, &c.claim);
                let holds = claim_holds(c, found);
                if !holds {
                    failed.push(explain(c, found, claims, &path));
                }
                holds
            }
            Condition::Group(g) => group_holds(g, &path, claims, &mut failed),
        };
        any |= holds;
        all &= holds;
    }
    let holds = match group.combinator {
        Combinator::AllOf => all,
        Combinator::AnyOf => any,
    };
    if !holds {
        if group.combinator == Combinator::AnyOf && group.conditions.len() > 1 {
            for u in &mut failed {
                u.reason
                    .push_str(&format!("; any one condition of {base} would suffice"));
            }
        }
        out.append(&mut failed);
    }
    holds
}

/// Whether one claim condition holds for the value found (None = claim missing).
pub fn claim_holds(condition: &ClaimCondition, found: Option<&Value>) -> bool {
    let expected = &condition.value;
    if condition.operator == Operator::Exists {
        return expected.as_exists() == Some(found.is_some());
    }
    let Some(found) = found else { return false };
    match condition.operator {
        Operator::Equals => typed_equal(found, expected),
        Operator::NotEquals => !typed_equal(found, expected),
        Operator::Less => compare(found, expected) == Some(Ordering::Less),
        Operator::LessOrEquals => matches!(
            compare(found, expected),
            Some(Ordering::Less | Ordering::Equal)
        ),
        Operator::Greater => compare(found, expected) == Some(Ordering::Greater),
        Operator::GreaterOrEquals => matches!(
            compare(found, expected),
            Some(Ordering::Greater | Ordering::Equal)
        ),
        Operator::Exists => false,
    }
}

/// `equals` with Key Vault's inferred coercions (module docs; PROTOCOLS.md §7.2 `typed_equal`).
pub fn typed_equal(claim: &Value, expected: &super::PolicyValue) -> bool {
    use super::PolicyValue as P;
    match (claim, expected) {
        (Value::String(a), P::String(b)) => a == b,
        (Value::Bool(a), P::Bool(b)) => a == b,
        (Value::Number(a), P::Number(b)) => number_cmp(a, b) == Some(Ordering::Equal),
        // Production policies write booleans as "true"/"false" (CSC:ikc, D:skrex, trap 16).
        (Value::Bool(a), P::String(b)) => (if *a { "true" } else { "false" }) == b,
        // ... and integers as decimal strings ("x-ms-sevsnpvm-vmpl" equals "0").
        (Value::Number(a), P::String(b)) => integer(a).is_some_and(|n| n.to_string() == *b),
        _ => false,
    }
}

fn integer(n: &serde_json::Number) -> Option<i128> {
    n.as_i64()
        .map(i128::from)
        .or_else(|| n.as_u64().map(i128::from))
}

fn number_cmp(a: &serde_json::Number, b: &serde_json::Number) -> Option<Ordering> {
    match (integer(a), integer(b)) {
        (Some(x), Some(y)) => Some(x.cmp(&y)),
        _ => a.as_f64()?.partial_cmp(&b.as_f64()?),
    }
}

/// A string holding a decimal integer: optional `-`, no leading zeros, no `+`, no spaces.
fn decimal_integer(s: &str) -> Option<serde_json::Number> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    let canonical = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'))
        && s != "-0";
    if !canonical {
        return None;
    }
    s.parse::<i64>()
        .map(serde_json::Number::from)
        .ok()
        .or_else(|| s.parse::<u64>().ok().map(serde_json::Number::from))
}

fn compare(claim: &Value, expected: &super::PolicyValue) -> Option<Ordering> {
    use super::PolicyValue as P;
    let Value::Number(a) = claim else { return None };
    let b = match expected {
        P::Number(b) => b.clone(),
        P::String(s) => decimal_integer(s)?,
        P::Bool(_) => return None,
    };
    number_cmp(a, &b)
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn shown(v: &Value) -> Value {
    match v {
        Value::Array(a) if v.to_string().len() > MAX_FOUND_CHARS => {
            Value::String(format!("<array of {} items>", a.len()))
        }
        Value::Object(o) if v.to_string().len() > MAX_FOUND_CHARS => {
            Value::String(format!("<object with {} members>", o.len()))
        }
        _ => v.clone(),
    }
}

fn explain(c: &ClaimCondition, found: Option<&Value>, claims: &Value, path: &str) -> Unmet {
    let expected = c.value.to_json();
    let op = c.operator.name();
    let mut reason = match (c.operator, found) {
        (Operator::Exists, Some(_)) => format!(
            "claim {} is present but the policy requires it to be absent",
            c.claim
        ),
        (Operator::Exists, None) => format!("claim {} is not in the token", c.claim),
        (_, None) => format!(
            "claim {} is not in the token (a missing claim fails every operator but exists)",
            c.claim
        ),
        (Operator::Equals, Some(v)) => {
            let mut r = format!("{} is {v}, the policy requires {expected}", c.claim);
            if let Some(note) = type_note(v, &c.value) {
                r.push_str(&format!(" ({note})"));
            }
            r
        }
        (Operator::NotEquals, Some(v)) => {
            format!("{} is {v}, which the policy forbids", c.claim)
        }
        (_, Some(v)) => match compare(v, &c.value) {
            None => format!(
                "{} is {} and the policy value {expected} is not a number or decimal-integer \
                 string; ordering operators compare numbers only",
                c.claim,
                json_type(v)
            ),
            Some(_) => format!("{} is {v}, the policy requires it {op} {expected}", c.claim),
        },
    };
    if let Some(hint) = trap_hint(c, found, claims) {
        reason.push_str("; ");
        reason.push_str(&hint);
    }
    Unmet {
        path: path.to_string(),
        claim: c.claim.clone(),
        operator: op,
        expected,
        found: found.map(shown),
        reason,
    }
}

/// Explains a type mismatch that `equals` does not coerce.
fn type_note(found: &Value, expected: &super::PolicyValue) -> Option<&'static str> {
    use super::PolicyValue as P;
    match (found, expected) {
        (Value::String(_), P::String(_))
        | (Value::Bool(_), P::Bool(_))
        | (Value::Number(_), P::Number(_)) => None,
        (Value::Bool(_), P::String(_)) => {
            Some("a boolean claim equals only the lower-case string \"true\" or \"false\"")
        }
        (Value::Number(n), P::String(_)) if integer(n).is_some() => {
            Some("an integer claim equals only its plain decimal string")
        }
        (Value::String(_), _) => Some("the claim is a string; write the policy value as a string"),
        _ => Some("the claim's JSON type is not comparable with the policy value"),
    }
}

/// Hints for the AzureGuest vs SevSnpVm claim-location trap (PROTOCOLS.md §5.4, trap 18).
fn trap_hint(c: &ClaimCondition, found: Option<&Value>, claims: &Value) -> Option<String> {
    const TEE: &str = "x-ms-isolation-tee";
    let top_type = claims.get("x-ms-attestation-type").and_then(Value::as_str);
    if c.claim == "x-ms-attestation-type" && top_type == Some("azurevm") {
        return Some(format!(
            "this is an AzureGuest (vTPM) token, whose top-level type is azurevm; the SNP type \
             is {TEE}.x-ms-attestation-type"
        ));
    }
    if found.is_some() {
        return None;
    }
    if let Some(leaf) = c.claim.strip_prefix("x-ms-isolation-tee.") {
        if claims.get(TEE).is_none() {
            if top_type == Some("azurevm") {
                return Some(format!(
                    "the token has no {TEE} object: the VM was attested without hardware \
                     isolation (e.g. Trusted Launch, not a confidential VM)"
                ));
            }
            if lookup(claims, leaf).is_some() {
                return Some(format!(
                    "the token has {leaf} at the top level (a SevSnpVm token); a policy for \
                     these tokens names {leaf} without the {TEE}. prefix"
                ));
            }
        }
        return None;
    }
    let in_tee = claims.get(TEE).and_then(|t| lookup(t, &c.claim));
    in_tee.map(|_| {
        format!(
            "this is an AzureGuest (vTPM) token: the claim is under {TEE}; write \
             \"{TEE}.{}\" in the policy",
            c.claim
        )
    })
}
