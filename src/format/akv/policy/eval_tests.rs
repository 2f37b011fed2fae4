//! Unit tests for release-policy evaluation (PROTOCOLS.md §7.2): each operator, type coercion,
//! authority matching, nested groups, missing claims and the explanations. Expected values
//! follow from the grammar page and §7.2 as cited on each test.

use super::*;
use serde_json::json;

const AUTH: &str = "https://sharedweu.weu.attest.azure.net";

fn policy_with(conditions: Value) -> ReleasePolicy {
    let doc = json!({"version": "1.0.0", "anyOf": [{"authority": AUTH, "allOf": conditions}]});
    parse_policy(doc.to_string().as_bytes()).unwrap()
}

fn one(claim: &str, op: &str, value: Value) -> ReleasePolicy {
    let mut cond = serde_json::Map::new();
    cond.insert("claim".into(), json!(claim));
    cond.insert(op.into(), value);
    policy_with(json!([cond]))
}

fn allows(p: &ReleasePolicy, claims: Value) -> bool {
    let mut claims = claims;
    claims["iss"] = json!(AUTH);
    p.evaluate(&claims).allowed
}

#[test]
fn equals_type_coercion() {
    // PROTOCOLS.md §7.2 typed_equal and trap 16: production policies compare booleans and
    // integers with strings ("false", "0"); JSON booleans also work (AKV SDK tests).
    let debuggable = |v: Value| one("x-ms-sevsnpvm-is-debuggable", "equals", v);
    assert!(allows(
        &debuggable(json!("false")),
        json!({"x-ms-sevsnpvm-is-debuggable": false})
    ));
    assert!(allows(
        &debuggable(json!(false)),
        json!({"x-ms-sevsnpvm-is-debuggable": false})
    ));
    assert!(allows(
        &debuggable(json!("true")),
        json!({"x-ms-sevsnpvm-is-debuggable": true})
    ));
    assert!(!allows(
        &debuggable(json!("false")),
        json!({"x-ms-sevsnpvm-is-debuggable": true})
    ));
    assert!(!allows(
        &debuggable(json!("False")),
        json!({"x-ms-sevsnpvm-is-debuggable": false})
    ));
    assert!(!allows(
        &debuggable(json!(0)),
        json!({"x-ms-sevsnpvm-is-debuggable": false})
    ));
    // A string claim is not coerced to the policy's boolean (only the documented direction).
    assert!(!allows(
        &debuggable(json!(false)),
        json!({"x-ms-sevsnpvm-is-debuggable": "false"})
    ));
    let vmpl = |v: Value| one("x-ms-sevsnpvm-vmpl", "equals", v);
    assert!(allows(&vmpl(json!("0")), json!({"x-ms-sevsnpvm-vmpl": 0})));
    assert!(allows(&vmpl(json!(0)), json!({"x-ms-sevsnpvm-vmpl": 0})));
    assert!(allows(&vmpl(json!(0.0)), json!({"x-ms-sevsnpvm-vmpl": 0})));
    assert!(!allows(
        &vmpl(json!("00")),
        json!({"x-ms-sevsnpvm-vmpl": 0})
    ));
    assert!(!allows(
        &vmpl(json!("0.0")),
        json!({"x-ms-sevsnpvm-vmpl": 0})
    ));
    assert!(!allows(&vmpl(json!(0)), json!({"x-ms-sevsnpvm-vmpl": "0"})));
    assert!(!allows(
        &vmpl(json!("0.5")),
        json!({"x-ms-sevsnpvm-vmpl": 0.5})
    ));
    // Strings are compared case-sensitively (§7.2, unverified; all real values are lower case).
    let t = one("x-ms-attestation-type", "equals", json!("sevsnpvm"));
    assert!(!allows(&t, json!({"x-ms-attestation-type": "SEVSNPVM"})));
    // Arrays and objects never equal a scalar ("Array specifications aren't presently supported").
    let pcrs = one("x-ms-azurevm-attested-pcrs", "equals", json!("0"));
    assert!(!allows(&pcrs, json!({"x-ms-azurevm-attested-pcrs": [0]})));
}

#[test]
fn other_operators() {
    let claims = json!({"svn": 7, "name": "abc", "flag": false, "big": 18446744073709551615u64});
    let case = |claim: &str, op: &str, v: Value| allows(&one(claim, op, v), claims.clone());
    assert!(case("svn", "notEquals", json!(8)));
    assert!(!case("svn", "notEquals", json!("7")));
    assert!(
        !case("missing", "notEquals", json!(8)),
        "a missing claim fails notEquals"
    );
    assert!(case("svn", "less", json!(8)));
    assert!(!case("svn", "less", json!(7)));
    assert!(case("svn", "lessOrEquals", json!(7)));
    assert!(case("svn", "greater", json!("6")));
    assert!(
        !case("svn", "greater", json!("06")),
        "non-canonical decimal is not a number"
    );
    assert!(case("svn", "greaterOrEquals", json!(7)));
    assert!(case("svn", "greaterOrEquals", json!(6.5)));
    assert!(case("big", "greater", json!(9223372036854775807i64)));
    assert!(
        !case("name", "greater", json!("abb")),
        "strings are not ordered"
    );
    assert!(!case("flag", "less", json!(true)));
    assert!(!case("missing", "greater", json!(0)));
    assert!(case("svn", "exists", json!(true)));
    assert!(case("missing", "exists", json!(false)));
    assert!(case("missing", "exists", json!("false")));
    assert!(!case("svn", "exists", json!(false)));
    assert!(!case("missing", "exists", json!(true)));
}

#[test]
fn dotted_paths_and_missing_claims() {
    let p = one(
        "x-ms-isolation-tee.x-ms-compliance-status",
        "equals",
        json!("azure-compliant-cvm"),
    );
    let good = json!({"x-ms-isolation-tee": {"x-ms-compliance-status": "azure-compliant-cvm"}});
    assert!(allows(&p, good));
    assert!(!allows(
        &p,
        json!({"x-ms-isolation-tee": "azure-compliant-cvm"})
    ));
    assert!(!allows(
        &p,
        json!({"x-ms-compliance-status": "azure-compliant-cvm"})
    ));
    let mut claims = json!({"x-ms-isolation-tee": {}});
    claims["iss"] = json!(AUTH);
    let eval = p.evaluate(&claims);
    assert_eq!(eval.unmet.len(), 1);
    assert_eq!(eval.unmet[0].found, None);
    assert_eq!(eval.unmet[0].path, "anyOf[0].allOf[0]");
    let three = one("a.b-c.d", "equals", json!(1));
    assert!(allows(&three, json!({"a": {"b-c": {"d": 1}}})));
    assert!(
        !allows(&three, json!({"a.b-c.d": 1})),
        "dots always navigate"
    );
}

#[test]
fn authority_matching() {
    // PROTOCOLS.md §7.2 / trap 21: one trailing slash ignored, scheme and host case-insensitive.
    let p = |auth: &str| {
        parse_policy(
            json!({"version": "1.0.0", "anyOf": [{"authority": auth, "allOf": [{"claim": "c", "equals": 1}]}]})
                .to_string()
                .as_bytes(),
        )
        .unwrap()
    };
    let claims = |iss: &str| json!({"iss": iss, "c": 1});
    let host = "https://sharedeus2.eus2.attest.azure.net";
    assert!(p(host).evaluate(&claims(host)).allowed);
    assert!(p(&format!("{host}/")).evaluate(&claims(host)).allowed);
    assert!(p(host).evaluate(&claims(&format!("{host}/"))).allowed);
    assert!(
        p("HTTPS://SharedEus2.eus2.attest.azure.net/")
            .evaluate(&claims(host))
            .allowed
    );
    assert!(
        !p(&format!("{host}//")).evaluate(&claims(host)).allowed,
        "only one slash"
    );
    assert!(
        !p("sharedeus2.eus2.attest.azure.net")
            .evaluate(&claims(host))
            .allowed
    );
    assert!(
        !p("https://sharedeus.eus.attest.azure.net")
            .evaluate(&claims(host))
            .allowed
    );
    let eval = p(host).evaluate(&json!({"c": 1}));
    assert_eq!(eval.authority, None);
    assert_eq!(eval.unmet[0].claim, "iss");
    assert_eq!(eval.unmet[0].found, None);
    assert_eq!(eval.unmet[0].expected, json!([host]));
}

#[test]
fn first_matching_authority_wins_and_nested_groups() {
    let doc = json!({"version": "1.0.0", "anyOf": [
        {"authority": AUTH, "allOf": [{"claim": "a", "equals": 1}]},
        {"authority": format!("{AUTH}/"), "anyOf": [
            {"claim": "a", "equals": 2},
            {"allOf": [{"claim": "b", "equals": true}, {"claim": "c", "exists": true}]}]}]});
    let p = parse_policy(doc.to_string().as_bytes()).unwrap();
    let eval = p.evaluate(&json!({"iss": AUTH, "a": 1}));
    assert_eq!(eval.authority.as_deref(), Some(AUTH));
    let eval = p.evaluate(&json!({"iss": AUTH, "a": 0, "b": true, "c": null}));
    assert!(eval.allowed);
    assert_eq!(eval.authority, Some(format!("{AUTH}/")));
    let eval = p.evaluate(&json!({"iss": AUTH, "a": 0, "b": false}));
    assert!(!eval.allowed);
    assert_eq!(eval.authority.as_deref(), Some(AUTH));
    let paths: Vec<&str> = eval.unmet.iter().map(|u| u.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "anyOf[0].allOf[0]",
            "anyOf[1].anyOf[0]",
            "anyOf[1].anyOf[1].allOf[0]",
            "anyOf[1].anyOf[1].allOf[1]"
        ]
    );
    // A failed anyOf says any one of its conditions would do.
    assert!(eval.unmet[1]
        .reason
        .ends_with("any one condition of anyOf[1].anyOf would suffice"));
    // A satisfied branch inside a failed allOf is not listed.
    let p = policy_with(
        json!([{"claim": "a", "equals": 1}, {"anyOf": [{"claim": "b", "equals": 1}, {"claim": "c", "equals": 1}]}]),
    );
    let eval = p.evaluate(&json!({"iss": AUTH, "a": 2, "c": 1}));
    assert_eq!(eval.unmet.len(), 1);
    assert_eq!(eval.unmet[0].path, "anyOf[0].allOf[0]");
    assert_eq!(eval.unmet[0].found, Some(json!(2)));
}

#[test]
fn explanation_of_type_mismatch() {
    let p = one("x-ms-sevsnpvm-is-debuggable", "equals", json!("False"));
    let eval = p.evaluate(&json!({"iss": AUTH, "x-ms-sevsnpvm-is-debuggable": false}));
    assert!(
        eval.unmet[0].reason.contains("lower-case string"),
        "{}",
        eval.unmet[0].reason
    );
    let p = one("x-ms-isolation-tee", "equals", json!("x"));
    let big: serde_json::Map<String, Value> = (0..50)
        .map(|i| (format!("member-{i}"), json!("value")))
        .collect();
    let eval = p.evaluate(&json!({"iss": AUTH, "x-ms-isolation-tee": big}));
    assert_eq!(eval.unmet[0].found, Some(json!("<object with 50 members>")));
}

#[test]
fn warnings() {
    let doc = json!({"version": "1.0.0", "anyOf": [
        {"authority": "<authority-url-name>", "allOf": [{"claim": "a..b", "equals": "<hash>"}]},
        {"authority": "my.attestation.com", "allOf": [{"claim": "svn", "greater": 1}]}]});
    let p = parse_policy(doc.to_string().as_bytes()).unwrap();
    let codes: Vec<(&str, String)> = p.warnings().into_iter().map(|w| (w.code, w.path)).collect();
    assert_eq!(
        codes,
        [
            ("authority-placeholder", "anyOf[0]".to_string()),
            ("claim-path-empty-segment", "anyOf[0].allOf[0]".to_string()),
            ("value-placeholder", "anyOf[0].allOf[0]".to_string()),
            ("authority-not-https", "anyOf[1]".to_string()),
            ("operator-not-equals", "anyOf[1].allOf[0]".to_string()),
        ]
    );
}
