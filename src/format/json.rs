//! Shared strict JSON parsing for every JSON document skrd reads (release policies,
//! PROTOCOLS.md §7.1; JWS headers, JWT claims, release payloads and `key_hsm`, §5 and §6).
//!
//! `serde_json::Value` sorts (or reorders) object keys and silently keeps the last of two
//! duplicate keys. Two parsers that pick different duplicates are a classic way to make a
//! verifier and a consumer disagree about a signed document (RFC 7515 §4, RFC 8259 §4), and a
//! release policy with `"equals"` twice, or two `"authority"` keys, is ambiguous (which one
//! would Key Vault use?). So there is one parser here:
//!
//! - [`parse`] builds an order-preserving [`Node`] tree that keeps duplicate members, for the
//!   policy grammar walker, which names operators in the order the author wrote them and
//!   rejects duplicates itself with a precise error;
//! - [`parse_strict`] builds a `serde_json::Value` on top of [`Node`], refusing duplicate
//!   members at any depth (no real MAA or Key Vault document has duplicates).
//!
//! Limits: serde_json's recursion limit (128 nested arrays/objects) bounds nesting for both;
//! neither former parser had a size limit of its own (callers bound their inputs).

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::fmt;

/// A JSON value with object members kept in document order (duplicates kept too).
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// `null`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// Any JSON number.
    Number(serde_json::Number),
    /// A string.
    String(String),
    /// An array.
    Array(Vec<Node>),
    /// An object: members in document order.
    Object(Vec<(String, Node)>),
}

impl Node {
    /// The JSON type name used in error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Node::Null => "null",
            Node::Bool(_) => "boolean",
            Node::Number(_) => "number",
            Node::String(_) => "string",
            Node::Array(_) => "array",
            Node::Object(_) => "object",
        }
    }

    /// The member `key` of an object (first occurrence), if this is an object.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match self {
            Node::Object(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
        Ok(Node::Number(v.into()))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Node, E> {
        serde_json::Number::from_f64(v)
            .map(Node::Number)
            .ok_or_else(|| E::custom("number is not finite"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Node, E> {
        Ok(Node::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Node, E> {
        Ok(Node::String(v))
    }

    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(Node::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut members = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value::<Node>()?;
            members.push((key, value));
        }
        Ok(Node::Object(members))
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Node, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

/// Parses JSON text into a [`Node`] (members in document order, duplicates kept);
/// serde_json's recursion limit (128) bounds nesting.
pub fn parse(bytes: &[u8]) -> Result<Node, serde_json::Error> {
    // `from_slice` also rejects trailing non-whitespace after the value.
    serde_json::from_slice::<Node>(bytes)
}

/// Parses JSON into a `serde_json::Value`, refusing duplicate members at any depth. The error
/// is serde_json's message for malformed JSON, or `duplicate member "<key>"`.
pub fn parse_strict(bytes: &[u8]) -> Result<Value, String> {
    let node = parse(bytes).map_err(|e| e.to_string())?;
    into_value(node).map_err(|key| format!("duplicate member \"{key}\""))
}

/// Converts a [`Node`] into a `Value`; `Err(key)` names the first duplicate member found.
/// Recursion depth is that of the tree, which [`parse`] bounds at 128.
fn into_value(node: Node) -> Result<Value, String> {
    Ok(match node {
        Node::Null => Value::Null,
        Node::Bool(b) => Value::Bool(b),
        Node::Number(n) => Value::Number(n),
        Node::String(s) => Value::String(s),
        Node::Array(items) => Value::Array(
            items
                .into_iter()
                .map(into_value)
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Node::Object(members) => {
            let mut obj = Map::new();
            for (key, value) in members {
                if obj.contains_key(&key) {
                    return Err(key);
                }
                let value = into_value(value)?;
                obj.insert(key, value);
            }
            Value::Object(obj)
        }
    })
}

/// An optional array of strings (e.g. a JWK's `key_ops`): absent is empty; otherwise the reason
/// it is unusable ("is not an array", "has a non-string") for the caller's own error.
pub fn optional_string_array(value: Option<&Value>) -> Result<Vec<String>, &'static str> {
    match value {
        None => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_string).ok_or("has a non-string"))
            .collect(),
        Some(_) => Err("is not an array"),
    }
}

/// The JSON type name of a value (`"null"`, `"boolean"`, `"number"`, `"string"`, `"array"`,
/// `"object"`), for error messages; the same names as [`Node::type_name`].
pub fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_order_and_duplicates() {
        let n = parse(br#"{"b":1,"a":[true,null,"x"],"b":2.5}"#).unwrap();
        let Node::Object(m) = &n else { panic!() };
        let keys: Vec<&str> = m.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["b", "a", "b"]);
        assert_eq!(n.get("b"), Some(&Node::Number(1.into())));
        assert_eq!(
            n.get("a"),
            Some(&Node::Array(vec![
                Node::Bool(true),
                Node::Null,
                Node::String("x".into())
            ]))
        );
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse(b"{").is_err());
        assert!(parse(b"{} x").is_err());
        assert!(parse(&[0xff, 0xfe]).is_err());
    }

    #[test]
    fn duplicates_refused_at_any_depth() {
        assert!(parse_strict(br#"{"alg":"RS256","alg":"none"}"#)
            .unwrap_err()
            .contains("duplicate member \"alg\""));
        assert!(parse_strict(br#"{"a":[{"b":1,"b":2}]}"#).is_err());
        let v = parse_strict(br#"{"a":[1,2.5,-3,"x",null,true],"b":{"c":{}}}"#).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"a":[1,2.5,-3,"x",null,true],"b":{"c":{}}})
        );
        assert!(parse_strict(b"{} x").is_err());
    }

    #[test]
    fn nesting_bounded_for_both() {
        // serde_json's documented recursion limit is 128 nested arrays/objects.
        let ok = format!("{}{}", "[".repeat(100), "]".repeat(100));
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(parse(ok.as_bytes()).is_ok());
        assert!(parse_strict(ok.as_bytes()).is_ok());
        assert!(parse(deep.as_bytes()).is_err());
        assert!(parse_strict(deep.as_bytes())
            .unwrap_err()
            .contains("recursion limit"));
    }

    #[test]
    fn nested_duplicate_named() {
        assert_eq!(
            parse_strict(br#"{"a":[{"b":1,"b":2}]}"#).unwrap_err(),
            "duplicate member \"b\""
        );
        // The order-preserving tree keeps both; only `parse_strict` refuses them.
        assert!(parse(br#"{"a":[{"b":1,"b":2}]}"#).is_ok());
    }

    #[test]
    fn type_names_agree() {
        for text in ["null", "true", "1", "-2.5", "\"x\"", "[]", "{}"] {
            let node = parse(text.as_bytes()).unwrap();
            let value = parse_strict(text.as_bytes()).unwrap();
            assert_eq!(node.type_name(), type_name(&value), "{text}");
        }
        assert_eq!(type_name(&Value::Bool(false)), "boolean");
    }
}
