//! Token claims for policy evaluation (PROTOCOLS.md §5.4): the payload of a compact JWT, or a
//! claims JSON object. The signature is NOT verified here: this is for explaining a policy
//! decision, never for trusting a token (the JOSE module verifies MAA tokens).

use super::document::b64_decode;
use super::error::ClaimsError;
use crate::format::json::type_name;
use serde_json::Value;

/// Decodes the payload (second segment, base64url) of a compact JWT, without verifying it.
pub fn claims_from_jwt(token: &[u8]) -> Result<Value, ClaimsError> {
    let token = token.trim_ascii();
    let segments: Vec<&[u8]> = token.split(|b| *b == b'.').collect();
    let payload = match segments.as_slice() {
        [_, payload, _] => *payload,
        _ => {
            return Err(ClaimsError::TokenSegments {
                found: segments.len(),
            })
        }
    };
    let text = std::str::from_utf8(payload).map_err(|_| ClaimsError::TokenBase64 {
        found_len: payload.len(),
    })?;
    let bytes = b64_decode(text).ok_or(ClaimsError::TokenBase64 {
        found_len: payload.len(),
    })?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|e| ClaimsError::not_json(&e))?;
    object(value)
}

/// Reads a claims JSON object; an MAA attest response `{"token": "<JWT>"}` is unwrapped.
pub fn claims_from_json(bytes: &[u8]) -> Result<Value, ClaimsError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| ClaimsError::not_json(&e))?;
    if let Some(Value::String(token)) = value.get("token") {
        if value.as_object().is_some_and(|o| o.len() == 1) {
            return claims_from_jwt(token.as_bytes());
        }
    }
    object(value)
}

/// Either form: JSON when the text starts with `{`, a compact JWT otherwise.
pub fn read_claims(bytes: &[u8]) -> Result<Value, ClaimsError> {
    let text = bytes.trim_ascii();
    if text.first() == Some(&b'{') {
        claims_from_json(text)
    } else {
        claims_from_jwt(text)
    }
}

fn object(value: Value) -> Result<Value, ClaimsError> {
    if value.is_object() {
        Ok(value)
    } else {
        Err(ClaimsError::NotObject {
            found: type_name(&value),
        })
    }
}
