//! An order-preserving JSON tree for the policy parser (PROTOCOLS.md §7.1).
//!
//! `serde_json::Value` sorts object keys and silently keeps the last of two duplicate keys. A
//! release policy with `"equals"` twice, or two `"authority"` keys, is ambiguous (which one would
//! Key Vault use?), so the grammar walker needs the keys as written, in document order, to reject
//! duplicates and to name operators in the order the author wrote them.

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use std::fmt;

/// A JSON value with object members kept in document order (duplicates kept too).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
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
    pub(crate) fn type_name(&self) -> &'static str {
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
    pub(crate) fn get(&self, key: &str) -> Option<&Node> {
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

/// Parses JSON text into a [`Node`]; serde_json's recursion limit (128) bounds nesting.
pub(crate) fn parse(bytes: &[u8]) -> Result<Node, serde_json::Error> {
    // `from_slice` also rejects trailing non-whitespace after the value.
    serde_json::from_slice::<Node>(bytes)
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
}
