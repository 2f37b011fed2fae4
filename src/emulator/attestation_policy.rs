//! The emulated attestation provider's policy: the authorization rules of Azure Attestation's
//! policy language, version 1.0 ("How to author an attestation policy", "Claim and claim rules"
//! on learn.microsoft.com), the subset an operator needs to say which guests may get a token.
//!
//! ```text
//! version=1.0;
//! authorizationrules
//! {
//!     c:[type=="x-ms-sevsnpvm-is-debuggable", value==false] => permit();
//!     [type=="x-ms-sevsnpvm-vmpl", value==0] && [type=="x-ms-attestation-type", value=="sevsnpvm"] => permit();
//!     => deny();
//! };
//! issuancerules { ... };        (accepted, not evaluated: tokens carry the built-in claim set)
//! ```
//!
//! A condition `[type=="T", value==V]` (optional `id:` label, optional
//! `issuer=="AttestationService"`, `value!=V` too) holds when the incoming claim `T` exists and
//! its value equals (differs from) `V` (a string, integer or boolean, compared with its JSON
//! type); `[type=="T"]` alone holds when `T` exists. The rules apply in the order written: the
//! first whose conditions all hold decides (`permit()` or `deny()`); when none holds the guest
//! is refused, as Azure's policy engine does. Pure code: text in, a verdict out.

use serde_json::{Map, Value};

use crate::error::ErrorCode;

/// The default policy (Azure's default for a new instance: permit every guest whose evidence
/// verifies; the emulator's built-in checks still refuse debuggable guests).
pub const DEFAULT_POLICY: &str = "version= 1.0;\nauthorizationrules\n{\n    => permit();\n};\n";

/// A parsed policy and its text (the text is what `x-ms-policy-hash` covers).
#[derive(Debug, Clone)]
pub struct AttestationPolicy {
    text: String,
    rules: Vec<Rule>,
}

#[derive(Debug, Clone)]
struct Rule {
    conditions: Vec<Condition>,
    permit: bool,
}

#[derive(Debug, Clone)]
struct Condition {
    claim: String,
    value: Option<(bool, Value)>,
}

/// Why a policy text is not accepted.
#[derive(Debug, thiserror::Error)]
pub enum PolicyTextError {
    /// The text does not follow the grammar.
    #[error(
        "attestation policy: {what} at character {at}; write `version=1.0; authorizationrules \
         {{ [type==\"CLAIM\", value==VALUE] => permit(); }};`"
    )]
    Syntax {
        /// What was expected.
        what: &'static str,
        /// Character offset.
        at: usize,
    },
    /// A version other than 1.0.
    #[error("attestation policy: version {found:?} is not supported; write version=1.0")]
    Version {
        /// The version written.
        found: String,
    },
}

impl ErrorCode for PolicyTextError {
    fn code(&self) -> &'static str {
        match self {
            Self::Syntax { .. } => "maa-policy-syntax",
            Self::Version { .. } => "maa-policy-version",
        }
    }
}

/// Why the policy refused a guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The 1-based rule that denied, or `None` when no rule permitted.
    pub rule: Option<usize>,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.rule {
            Some(n) => write!(f, "authorization rule {n} denies this guest"),
            None => f.write_str("no authorization rule permits this guest"),
        }
    }
}

impl AttestationPolicy {
    /// Parses `text`.
    pub fn parse(text: &str) -> Result<Self, PolicyTextError> {
        let mut p = Parser { s: text, at: 0 };
        p.keyword("version")?;
        p.expect("=")?;
        let version = p.take_while(|c| c.is_ascii_digit() || c == '.');
        if version != "1.0" {
            return Err(PolicyTextError::Version {
                found: version.to_string(),
            });
        }
        p.expect(";")?;
        let mut rules = None;
        while !p.at_end() {
            let section = p.take_while(|c| c.is_ascii_alphabetic()).to_string();
            p.expect("{")?;
            match section.as_str() {
                "authorizationrules" => rules = Some(p.rules()?),
                "issuancerules" | "configurationrules" => p.skip_block()?,
                _ => return Err(p.err("a section: authorizationrules or issuancerules")),
            }
            p.expect("}")?;
            p.expect(";")?;
        }
        let rules = rules.ok_or(PolicyTextError::Syntax {
            what: "an authorizationrules section",
            at: text.len(),
        })?;
        Ok(Self {
            text: text.to_string(),
            rules,
        })
    }

    /// The default policy.
    pub fn default_policy() -> Self {
        Self {
            text: DEFAULT_POLICY.to_string(),
            rules: vec![Rule {
                conditions: Vec::new(),
                permit: true,
            }],
        }
    }

    /// The policy text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Applies the authorization rules to the incoming `claims`.
    pub fn authorize(&self, claims: &Map<String, Value>) -> Result<(), Refusal> {
        for (i, rule) in self.rules.iter().enumerate() {
            if rule.conditions.iter().all(|c| c.holds(claims)) {
                return if rule.permit {
                    Ok(())
                } else {
                    Err(Refusal { rule: Some(i + 1) })
                };
            }
        }
        Err(Refusal { rule: None })
    }
}

impl Condition {
    fn holds(&self, claims: &Map<String, Value>) -> bool {
        let Some(found) = claims.get(&self.claim) else {
            return false;
        };
        match &self.value {
            None => true,
            Some((equal, want)) => (found == want) == *equal,
        }
    }
}

struct Parser<'a> {
    s: &'a str,
    at: usize,
}

impl<'a> Parser<'a> {
    fn rest(&self) -> &'a str {
        self.s.get(self.at..).unwrap_or("")
    }

    fn skip_ws(&mut self) {
        let rest = self.rest();
        self.at += rest.len() - rest.trim_start().len();
    }

    fn at_end(&mut self) -> bool {
        self.skip_ws();
        self.rest().is_empty()
    }

    fn err(&self, what: &'static str) -> PolicyTextError {
        PolicyTextError::Syntax { what, at: self.at }
    }

    fn eat(&mut self, token: &str) -> bool {
        self.skip_ws();
        if self.rest().starts_with(token) {
            self.at += token.len();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, token: &'static str) -> Result<(), PolicyTextError> {
        if self.eat(token) {
            Ok(())
        } else {
            Err(self.err(token))
        }
    }

    fn keyword(&mut self, word: &'static str) -> Result<(), PolicyTextError> {
        self.skip_ws();
        let got = self.take_while(|c| c.is_ascii_alphabetic());
        if got == word {
            Ok(())
        } else {
            Err(self.err(word))
        }
    }

    fn take_while(&mut self, f: impl Fn(char) -> bool) -> &'a str {
        self.skip_ws();
        let rest = self.rest();
        let len = rest.find(|c: char| !f(c)).unwrap_or(rest.len());
        self.at += len;
        rest.get(..len).unwrap_or("")
    }

    /// Skips a `{ ... }` body up to (not including) its closing brace.
    fn skip_block(&mut self) -> Result<(), PolicyTextError> {
        let mut depth = 0usize;
        for (i, c) in self.rest().char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => {
                    self.at += i;
                    return Ok(());
                }
                '}' => depth -= 1,
                _ => {}
            }
        }
        Err(self.err("}"))
    }

    fn rules(&mut self) -> Result<Vec<Rule>, PolicyTextError> {
        let mut rules = Vec::new();
        loop {
            self.skip_ws();
            if self.rest().starts_with('}') {
                return Ok(rules);
            }
            let mut conditions = Vec::new();
            if !self.eat("=>") {
                loop {
                    conditions.push(self.condition()?);
                    if self.eat("=>") {
                        break;
                    }
                    self.expect("&&")?;
                }
            }
            let permit = if self.eat("permit") {
                true
            } else if self.eat("deny") {
                false
            } else {
                return Err(self.err("permit() or deny()"));
            };
            self.expect("(")?;
            self.expect(")")?;
            let _ = self.eat(";");
            rules.push(Rule { conditions, permit });
        }
    }

    fn condition(&mut self) -> Result<Condition, PolicyTextError> {
        self.skip_ws();
        // Optional identifier label `c:`.
        let save = self.at;
        let label = self.take_while(|c| c.is_ascii_alphanumeric() || c == '_');
        if label.is_empty() || !self.eat(":") {
            self.at = save;
        }
        self.expect("[")?;
        let mut claim = None;
        let mut value = None;
        loop {
            let property = self.take_while(|c| c.is_ascii_alphabetic()).to_string();
            let equal = if self.eat("==") {
                true
            } else if self.eat("!=") {
                false
            } else {
                return Err(self.err("== or !="));
            };
            let literal = self.literal()?;
            match (property.as_str(), equal) {
                ("type", true) => match literal {
                    Value::String(s) => claim = Some(s),
                    _ => return Err(self.err("a quoted claim type")),
                },
                ("value", _) => value = Some((equal, literal)),
                ("issuer", true) if literal == "AttestationService" => {}
                _ => return Err(self.err("type==, value== or issuer==\"AttestationService\"")),
            }
            if self.eat("]") {
                break;
            }
            self.expect(",")?;
        }
        let claim = claim.ok_or(self.err("type==\"CLAIM\" in the condition"))?;
        Ok(Condition { claim, value })
    }

    fn literal(&mut self) -> Result<Value, PolicyTextError> {
        self.skip_ws();
        if self.eat("\"") {
            let rest = self.rest();
            let end = rest.find('"').ok_or(self.err("a closing quote"))?;
            let s = rest.get(..end).unwrap_or("").to_string();
            self.at += end + 1;
            return Ok(Value::String(s));
        }
        let word = self.take_while(|c| c.is_ascii_alphanumeric() || c == '-');
        match word {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => word
                .parse::<i64>()
                .map(Value::from)
                .map_err(|_| self.err("a string, integer or boolean")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn the_documented_example_parses_and_the_default_permits() {
        // "How to author an attestation policy" (learn.microsoft.com), with its issuance rules.
        let doc = "version=1.0;\nauthorizationrules\n{\nc:[type==\"secureBootEnabled\", issuer==\"AttestationService\"]=> permit()\n};\nissuancerules\n{\nc:[type==\"secureBootEnabled\", issuer==\"AttestationService\"]=> issue(claim=c)\n};\n";
        let p = AttestationPolicy::parse(doc).unwrap();
        assert!(p
            .authorize(&claims(json!({"secureBootEnabled": true})))
            .is_ok());
        assert_eq!(p.authorize(&claims(json!({}))), Err(Refusal { rule: None }));
        let d = AttestationPolicy::parse(DEFAULT_POLICY).unwrap();
        assert!(d.authorize(&Map::new()).is_ok());
        assert_eq!(d.text(), AttestationPolicy::default_policy().text());
    }

    #[test]
    fn rules_apply_in_order_with_typed_values() {
        let p = AttestationPolicy::parse(
            "version=1.0; authorizationrules {\n\
             [type==\"x-ms-sevsnpvm-vmpl\", value!=0] => deny();\n\
             c:[type==\"x-ms-sevsnpvm-is-debuggable\", value==false] && \
             [type==\"x-ms-attestation-type\", value==\"sevsnpvm\"] => permit();\n\
             };",
        )
        .unwrap();
        let ok = json!({"x-ms-sevsnpvm-vmpl": 0, "x-ms-sevsnpvm-is-debuggable": false,
                        "x-ms-attestation-type": "sevsnpvm"});
        assert!(p.authorize(&claims(ok.clone())).is_ok());
        let mut vmpl1 = ok.clone();
        vmpl1["x-ms-sevsnpvm-vmpl"] = json!(1);
        assert_eq!(p.authorize(&claims(vmpl1)), Err(Refusal { rule: Some(1) }));
        // A string "false" is not the boolean false.
        let mut stringly = ok;
        stringly["x-ms-sevsnpvm-is-debuggable"] = json!("false");
        assert_eq!(p.authorize(&claims(stringly)), Err(Refusal { rule: None }));
    }

    #[test]
    fn bad_texts_name_what_was_expected() {
        for (text, code) in [
            ("", "maa-policy-syntax"),
            ("version=2.0;", "maa-policy-version"),
            ("version=1.0;", "maa-policy-syntax"),
            (
                "version=1.0; authorizationrules { => allow(); };",
                "maa-policy-syntax",
            ),
            (
                "version=1.0; authorizationrules { [value==1] => permit(); };",
                "maa-policy-syntax",
            ),
            (
                "version=1.0; authorizationrules { [type==\"a\", value==] => permit(); };",
                "maa-policy-syntax",
            ),
            (
                "version=1.0; authorizationrules { [type==\"a\" => permit(); };",
                "maa-policy-syntax",
            ),
            (
                "version=1.0; authorizationrules { => permit();",
                "maa-policy-syntax",
            ),
            (
                "version=1.0; authorizationrules { [type==\"a\", value==\"x] => permit(); };",
                "maa-policy-syntax",
            ),
        ] {
            let e = AttestationPolicy::parse(text).unwrap_err();
            assert_eq!(e.code(), code, "{text}: {e}");
        }
    }
}
