//! Unit tests for the release-policy grammar, the documents that carry a policy and the claims
//! readers. Expected values follow from the grammar page and PROTOCOLS.md §7 as cited on each
//! test; evaluation is in `eval_tests.rs`; real fixtures are covered by `tests/policy_fixtures.rs`
//! against the independent python evaluator.

use super::*;
use crate::error::ErrorCode;
use serde_json::json;

const AUTH: &str = "https://sharedweu.weu.attest.azure.net";

fn policy_with(conditions: Value) -> ReleasePolicy {
    let doc = json!({"version": "1.0.0", "anyOf": [{"authority": AUTH, "allOf": conditions}]});
    parse_policy(doc.to_string().as_bytes()).unwrap()
}

fn err(text: &str) -> PolicyError {
    parse_policy(text.as_bytes()).unwrap_err()
}

fn err_code(text: &str) -> &'static str {
    err(text).code()
}

fn one(claim: &str, op: &str, value: Value) -> ReleasePolicy {
    let mut cond = serde_json::Map::new();
    cond.insert("claim".into(), json!(claim));
    cond.insert(op.into(), value);
    policy_with(json!([cond]))
}

// ------------------------------------------------------------------ grammar

#[test]
fn minimal_policy_parses() {
    let p = one("x-ms-attestation-type", "equals", json!("sevsnpvm"));
    assert_eq!(p.version, "1.0.0");
    assert_eq!(p.authorities.len(), 1);
    assert_eq!(p.authorities[0].group.combinator, Combinator::AllOf);
    let Condition::Claim(c) = &p.authorities[0].group.conditions[0] else {
        panic!()
    };
    assert_eq!(c.operator, Operator::Equals);
    assert_eq!(c.value, PolicyValue::String("sevsnpvm".into()));
}

#[test]
fn every_operator_parses() {
    for op in Operator::ALL {
        let value = if op == Operator::Exists {
            json!(true)
        } else {
            json!(1)
        };
        let p = one("c", op.name(), value);
        let Condition::Claim(c) = &p.authorities[0].group.conditions[0] else {
            panic!()
        };
        assert_eq!(c.operator, op);
    }
}

#[test]
fn version_rules() {
    // The grammar: policy = "{" "version: \"1.0.0\"", "anyOf:" ... ; no other version documented.
    assert_eq!(err_code(r#"{"anyOf":[]}"#), "policy-version-missing");
    assert_eq!(
        err(r#"{"version":"2.0.0","anyOf":[]}"#),
        PolicyError::VersionUnsupported {
            found: "2.0.0".into()
        }
    );
    assert_eq!(err_code(r#"{"version":1,"anyOf":[]}"#), "policy-wrong-type");
}

#[test]
fn top_level_rules() {
    assert_eq!(
        err_code(r#"{"version":"1.0.0","allOf":[]}"#),
        "policy-top-level-allof"
    );
    assert_eq!(err_code(r#"{"version":"1.0.0"}"#), "policy-missing-key");
    assert_eq!(
        err_code(r#"{"version":"1.0.0","anyOf":[]}"#),
        "policy-empty-array"
    );
    assert_eq!(
        err_code(r#"{"version":"1.0.0","anyOf":{}}"#),
        "policy-wrong-type"
    );
    assert_eq!(
        err(r#"{"version":"1.0.0","anyOf":[],"extra":1}"#),
        PolicyError::UnknownKey {
            path: "$".into(),
            key: "extra".into(),
            allowed: "version, anyOf"
        }
    );
    assert_eq!(err_code("[]"), "policy-wrong-type");
    assert_eq!(err_code("{"), "policy-not-json");
}

#[test]
fn authority_rules() {
    let both = r#"{"version":"1.0.0","anyOf":[{"authority":"a","allOf":[{"claim":"c","equals":1}],"anyOf":[{"claim":"c","equals":1}]}]}"#;
    assert_eq!(
        err(both),
        PolicyError::AuthorityCombinator {
            path: "anyOf[0]".into(),
            found: "both"
        }
    );
    let neither = r#"{"version":"1.0.0","anyOf":[{"authority":"a"}]}"#;
    assert_eq!(
        err(neither),
        PolicyError::AuthorityCombinator {
            path: "anyOf[0]".into(),
            found: "neither"
        }
    );
    let missing = r#"{"version":"1.0.0","anyOf":[{"allOf":[{"claim":"c","equals":1}]}]}"#;
    assert_eq!(err_code(missing), "policy-missing-key");
    let empty =
        r#"{"version":"1.0.0","anyOf":[{"authority":"","allOf":[{"claim":"c","equals":1}]}]}"#;
    assert_eq!(err_code(empty), "policy-empty-string");
    let number =
        r#"{"version":"1.0.0","anyOf":[{"authority":5,"allOf":[{"claim":"c","equals":1}]}]}"#;
    assert_eq!(
        err(number),
        PolicyError::WrongType {
            path: "anyOf[0].authority".into(),
            expected: "string",
            found: "number"
        }
    );
    let no_conditions = r#"{"version":"1.0.0","anyOf":[{"authority":"a","allOf":[]}]}"#;
    assert_eq!(
        err(no_conditions),
        PolicyError::EmptyArray {
            path: "anyOf[0].allOf".into(),
            what: "condition"
        }
    );
    let extra = r#"{"version":"1.0.0","anyOf":[{"authority":"a","allOf":[{"claim":"c","equals":1}],"x":1}]}"#;
    assert_eq!(err_code(extra), "policy-unknown-key");
}

fn wrap(cond: &str) -> String {
    format!(
        r#"{{"version":"1.0.0","anyOf":[{{"authority":"a","allOf":[{{"claim":"ok","equals":1}},{{"claim":"ok","equals":1}},{cond}]}}]}}"#
    )
}

#[test]
fn condition_rules_with_paths() {
    // The brief's example message, exactly.
    let e = err(&wrap(r#"{"claim":"c","equals":"x","greater":1}"#));
    assert_eq!(
        e.to_string(),
        "anyOf[0].allOf[2]: condition has 2 operators (equals, greater); use exactly one, or \
         combine conditions with allOf/anyOf"
    );
    assert_eq!(e.code(), "policy-two-operators");
    assert_eq!(
        err(&wrap(r#"{"claim":"c"}"#)),
        PolicyError::NoOperator {
            path: "anyOf[0].allOf[2]".into(),
            claim: "c".into()
        }
    );
    assert_eq!(
        err(&wrap(r#"{"claim":"c","equal":"x"}"#)),
        PolicyError::UnknownOperator {
            path: "anyOf[0].allOf[2]".into(),
            key: "equal".into()
        }
    );
    assert_eq!(err_code(&wrap(r#"{"equals":"x"}"#)), "policy-missing-key");
    assert_eq!(
        err_code(&wrap(r#"{"claim":"","equals":"x"}"#)),
        "policy-empty-string"
    );
    assert_eq!(
        err_code(&wrap(r#"{"claim":1,"equals":"x"}"#)),
        "policy-wrong-type"
    );
    assert_eq!(err_code(&wrap(r#"{}"#)), "policy-condition-shape");
    assert_eq!(err_code(&wrap(r#""c""#)), "policy-wrong-type");
    assert_eq!(
        err_code(&wrap(
            r#"{"claim":"c","equals":"x","anyOf":[{"claim":"c","equals":1}]}"#
        )),
        "policy-condition-shape"
    );
    assert_eq!(
        err_code(&wrap(
            r#"{"allOf":[{"claim":"c","equals":1}],"anyOf":[{"claim":"c","equals":1}]}"#
        )),
        "policy-condition-shape"
    );
    assert_eq!(
        err(&wrap(
            r#"{"anyOf":[{"claim":"c","equals":1},{"claim":"d"}]}"#
        )),
        PolicyError::NoOperator {
            path: "anyOf[0].allOf[2].anyOf[1]".into(),
            claim: "d".into()
        }
    );
    assert_eq!(err_code(&wrap(r#"{"anyOf":[]}"#)), "policy-empty-array");
}

#[test]
fn value_types() {
    // "value = string | number | true | false"; "objects aren't allowed as values".
    for bad in ["null", "{}", "[1]"] {
        assert_eq!(
            err_code(&wrap(&format!(r#"{{"claim":"c","equals":{bad}}}"#))),
            "policy-value-type",
            "{bad}"
        );
    }
    for good in [
        r#""s""#,
        "0",
        "-1.5",
        "true",
        "false",
        "18446744073709551615",
    ] {
        parse_policy(wrap(&format!(r#"{{"claim":"c","equals":{good}}}"#)).as_bytes())
            .unwrap_or_else(|e| panic!("{good}: {e}"));
    }
    assert_eq!(
        err_code(&wrap(r#"{"claim":"c","exists":"yes"}"#)),
        "policy-exists-value"
    );
    assert_eq!(
        err_code(&wrap(r#"{"claim":"c","exists":1}"#)),
        "policy-exists-value"
    );
    parse_policy(wrap(r#"{"claim":"c","exists":"false"}"#).as_bytes()).unwrap();
}

#[test]
fn duplicates_and_key_case() {
    assert_eq!(
        err(&wrap(r#"{"claim":"c","equals":"a","equals":"b"}"#)),
        PolicyError::DuplicateKey {
            path: "anyOf[0].allOf[2]".into(),
            key: "equals".into()
        }
    );
    assert_eq!(
        err_code(r#"{"version":"1.0.0","version":"1.0.0","anyOf":[]}"#),
        "policy-duplicate-key"
    );
    // The EBNF text writes "anyof:"; real policies use anyOf (PROTOCOLS.md §7.1).
    let lower =
        r#"{"version":"1.0.0","anyof":[{"authority":"a","allof":[{"claim":"c","Equals":1}]}]}"#;
    assert_eq!(
        err(lower),
        PolicyError::KeyCase {
            path: "$".into(),
            found: "anyof".into(),
            expected: "anyOf"
        }
    );
    let relaxed = ParseOptions {
        key_case_insensitive: true,
        ..ParseOptions::default()
    };
    let p = parse_policy_with(lower.as_bytes(), relaxed).unwrap();
    assert_eq!(p, parse_policy(br#"{"version":"1.0.0","anyOf":[{"authority":"a","allOf":[{"claim":"c","equals":1}]}]}"#).unwrap());
    // Case-folded duplicates are still duplicates.
    let dup = r#"{"version":"1.0.0","anyOf":[{"authority":"a","allOf":[{"claim":"c","equals":1,"EQUALS":2}]}]}"#;
    assert_eq!(
        parse_policy_with(dup.as_bytes(), relaxed)
            .unwrap_err()
            .code(),
        "policy-duplicate-key"
    );
}

#[test]
fn legacy_condition_shape() {
    // {"claim","condition":"equals","value"} appears in one REST-spec example (SPEC:kv-rp).
    let legacy = wrap(r#"{"claim":"c","condition":"equals","value":"v"}"#);
    assert_eq!(err_code(&legacy), "policy-legacy-condition");
    let options = ParseOptions {
        legacy_condition_shape: true,
        ..ParseOptions::default()
    };
    let p = parse_policy_with(legacy.as_bytes(), options).unwrap();
    assert_eq!(
        p,
        parse_policy(wrap(r#"{"claim":"c","equals":"v"}"#).as_bytes()).unwrap()
    );
    let bad = wrap(r#"{"claim":"c","condition":"like","value":"v"}"#);
    assert_eq!(
        parse_policy_with(bad.as_bytes(), options)
            .unwrap_err()
            .code(),
        "policy-unknown-operator"
    );
}

#[test]
fn nesting_limit() {
    let nested = |n: usize| {
        wrap(&format!(
            "{}{{\"claim\":\"c\",\"equals\":1}}{}",
            "{\"allOf\":[".repeat(n),
            "]}".repeat(n)
        ))
    };
    parse_policy(nested(MAX_DEPTH).as_bytes()).unwrap();
    assert_eq!(err_code(&nested(MAX_DEPTH + 1)), "policy-too-deep");
}

// ------------------------------------------------------------------ envelopes

#[test]
fn encoded_forms() {
    let p = one("c", "equals", json!("v"));
    let data = p.encode_data();
    assert!(!data.contains('='));
    let env =
        json!({"contentType": "application/json; charset=utf-8", "data": data, "immutable": true});
    let l = load_document(env.to_string().as_bytes()).unwrap();
    assert_eq!(l.policy, p);
    assert_eq!(l.source, PolicySource::Encoded);
    assert_eq!(l.immutable, Some(true));
    assert!(l.envelope_warnings.is_empty());
    // Padded standard base64 is accepted too (PROTOCOLS.md §9.1 trap 13).
    let std_b64 = base64::engine::general_purpose::STANDARD.encode(p.to_json().to_string());
    assert_eq!(load_document(std_b64.as_bytes()).unwrap().policy, p);
    // A key bundle (get key / import request).
    let bundle = json!({"key": {"kty": "RSA-HSM"}, "attributes": {"exportable": true},
                        "release_policy": {"data": data}});
    let l = load_document(bundle.to_string().as_bytes()).unwrap();
    assert_eq!(l.source, PolicySource::KeyBundle);
    // Azure CLI / SDK key output (releasePolicy.encodedPolicy: text or base64).
    for encoded in [p.to_json().to_string(), data.clone()] {
        let cli = json!({"key": {"kty": "RSA-HSM"},
                         "releasePolicy": {"contentType": "application/json; charset=utf-8",
                                           "encodedPolicy": encoded, "immutable": false}});
        let l = load_document(cli.to_string().as_bytes()).unwrap();
        assert_eq!(l.source, PolicySource::CliKeyOutput);
        assert_eq!(l.policy, p);
        assert_eq!(l.immutable, Some(false));
    }
    let odd = json!({"contentType": "text/plain", "data": data});
    let l = load_document(odd.to_string().as_bytes()).unwrap();
    assert_eq!(l.envelope_warnings[0].code, "content-type-unexpected");
    assert_eq!(
        load_document(br#"{"data":"!!!"}"#).unwrap_err().code(),
        "policy-base64"
    );
    assert_eq!(
        load_document(br#"{"foo":1}"#).unwrap_err().code(),
        "policy-unrecognised-document"
    );
    // A grammar error inside data is reported as such.
    let bad = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(r#"{"version":"1.0.0","allOf":[]}"#);
    assert_eq!(
        load_document(bad.as_bytes()).unwrap_err().code(),
        "policy-top-level-allof"
    );
}

#[test]
fn import_key_config_shape() {
    // confidential-sidecar-containers tools/importkey: authority = "https://" + endpoint,
    // one authority per claims[i] with allOf = claims[i].
    let cfg = json!({"key": {"kid": "k", "authority": {"endpoint": "sharedeus2.eus2.attest.azure.net"}},
                     "claims": [[{"claim": "x-ms-sevsnpvm-vmpl", "equals": "0"}],
                                [{"claim": "x-ms-sevsnpvm-is-debuggable", "equals": "false"}]]});
    let l = load_document(cfg.to_string().as_bytes()).unwrap();
    assert_eq!(l.source, PolicySource::ImportKeyConfig);
    assert_eq!(l.policy.authorities.len(), 2);
    assert_eq!(
        l.policy.authorities[1].authority,
        "https://sharedeus2.eus2.attest.azure.net"
    );
    let bad = json!({"key": {"authority": {}}, "claims": [[]]});
    assert_eq!(
        load_document(bad.to_string().as_bytes())
            .unwrap_err()
            .code(),
        "policy-missing-key"
    );
    let empty = json!({"key": {"authority": {"endpoint": "h"}}, "claims": [[]]});
    assert_eq!(
        load_document(empty.to_string().as_bytes()).unwrap_err(),
        PolicyError::EmptyArray {
            path: "anyOf[0].allOf".into(),
            what: "condition"
        }
    );
}

// ------------------------------------------------------------------ claims

#[test]
fn claims_readers() {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    let payload = B64.encode(r#"{"iss":"https://x","n":1}"#);
    let jwt = format!("eyJhbGciOiJSUzI1NiJ9.{payload}.c2ln\n");
    assert_eq!(claims_from_jwt(jwt.as_bytes()).unwrap()["n"], 1);
    assert_eq!(read_claims(jwt.as_bytes()).unwrap()["iss"], "https://x");
    let resp = json!({"token": jwt.trim()}).to_string();
    assert_eq!(read_claims(resp.as_bytes()).unwrap()["n"], 1);
    assert_eq!(read_claims(br#"{"iss":"a"}"#).unwrap()["iss"], "a");
    assert_eq!(
        claims_from_jwt(b"a.b").unwrap_err(),
        ClaimsError::TokenSegments { found: 2 }
    );
    assert_eq!(
        claims_from_jwt(b"a.!!.c").unwrap_err().code(),
        "claims-token-base64"
    );
    let not_json = format!("a.{}.c", B64.encode("nope"));
    assert_eq!(
        claims_from_jwt(not_json.as_bytes()).unwrap_err().code(),
        "claims-not-json"
    );
    let array = format!("a.{}.c", B64.encode("[1]"));
    assert_eq!(
        claims_from_jwt(array.as_bytes()).unwrap_err(),
        ClaimsError::NotObject { found: "array" }
    );
}

#[test]
fn fuzz_entry_accepts_garbage() {
    for data in [
        &b""[..],
        b"{",
        b"\xff\xfe",
        b"a.b.c",
        b"{\"data\":1}",
        b"null",
        b"[[[[[[[[",
    ] {
        fuzz_policy(data);
    }
}
