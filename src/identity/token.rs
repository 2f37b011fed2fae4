//! PURE parsing of the IMDS managed-identity token endpoint's answers (PROTOCOLS.md §2.1): the
//! 200 body (every number is a JSON *string*) and the `{"error", "error_description"}` error
//! body. No I/O, no clock.

use serde_json::Value;

use super::error::IdentityError;
use crate::secret::Secret;

/// Largest token response accepted (real ones are 1.5-3 KiB).
pub const MAX_TOKEN_RESPONSE: usize = 64 * 1024;

/// A parsed token response. The access token is held in a [`Secret`].
#[derive(Debug)]
pub struct TokenResponse {
    /// The bearer token.
    pub access_token: Secret,
    /// `expires_on`: absolute expiry, Unix seconds.
    pub expires_on: i64,
    /// `not_before`, Unix seconds, when present.
    pub not_before: Option<i64>,
    /// `resource` as echoed (ACI echoes it with a trailing '/').
    pub resource: Option<String>,
}

fn invalid(reason: impl Into<String>) -> IdentityError {
    IdentityError::TokenResponseInvalid {
        reason: reason.into(),
    }
}

/// A Unix-seconds member given as a decimal string (the documented form) or a JSON number.
fn seconds(obj: &serde_json::Map<String, Value>, name: &str) -> Result<Option<i64>, IdentityError> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => s
            .trim()
            .parse::<i64>()
            .map(Some)
            .map_err(|_| invalid(format!("{name} is \"{s}\", expected decimal Unix seconds"))),
        Some(Value::Number(n)) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| invalid(format!("{name} is {n}, expected integer Unix seconds"))),
        Some(_) => Err(invalid(format!(
            "{name} is not a string of decimal seconds"
        ))),
    }
}

/// Parses a 200 answer of `/metadata/identity/oauth2/token`.
pub fn parse_token_response(body: &[u8]) -> Result<TokenResponse, IdentityError> {
    if body.len() > MAX_TOKEN_RESPONSE {
        return Err(invalid(format!(
            "{} bytes, more than the {MAX_TOKEN_RESPONSE}-byte limit",
            body.len()
        )));
    }
    let v: Value = serde_json::from_slice(body).map_err(|e| invalid(format!("not JSON ({e})")))?;
    let obj = v.as_object().ok_or_else(|| invalid("not a JSON object"))?;
    let token = match obj.get("access_token") {
        Some(Value::String(s)) if !s.is_empty() => s,
        Some(Value::String(_)) => return Err(invalid("access_token is empty")),
        Some(_) => return Err(invalid("access_token is not a string")),
        None => return Err(invalid("access_token is missing")),
    };
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid(
            "access_token contains spaces or control characters",
        ));
    }
    match obj.get("token_type") {
        None => {}
        Some(Value::String(t)) if t.eq_ignore_ascii_case("bearer") => {}
        Some(Value::String(t)) => {
            return Err(IdentityError::TokenTypeUnexpected { found: t.clone() })
        }
        Some(_) => return Err(invalid("token_type is not a string")),
    }
    let expires_on = seconds(obj, "expires_on")?.ok_or_else(|| invalid("expires_on is missing"))?;
    let not_before = seconds(obj, "not_before")?;
    let resource = match obj.get("resource") {
        Some(Value::String(s)) => Some(s.clone()),
        _ => None,
    };
    Ok(TokenResponse {
        access_token: Secret::new(token.as_bytes().to_vec()),
        expires_on,
        not_before,
        resource,
    })
}

/// Turns a non-200 answer of the token endpoint into the specific error (PROTOCOLS.md §2.1
/// "Errors": the `error` code is used, the description only shown).
pub fn parse_token_error(status: u16, body: &[u8]) -> IdentityError {
    let v: Option<Value> = serde_json::from_slice(
        body.get(..MAX_TOKEN_RESPONSE.min(body.len()))
            .unwrap_or_default(),
    )
    .ok();
    let field = |name: &str| {
        v.as_ref()
            .and_then(|v| v.get(name))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    IdentityError::ImdsRefused {
        status,
        error: field("error").unwrap_or_default(),
        description: field("error_description").unwrap_or_default(),
    }
}

/// Fuzz entry point: the token response and error parsers on arbitrary bytes. Never panics.
pub fn fuzz_token_response(data: &[u8]) {
    let _ = parse_token_response(data);
    let _ = parse_token_error(400, data);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    // The documented example shape (PROTOCOLS.md §2.1: every member a string).
    const DOC: &str = r#"{"access_token":"eyJ0eXAi.eyJhdWQi.c2ln","refresh_token":"",
        "expires_in":"3599","expires_on":"1506484173","not_before":"1506480273",
        "resource":"https://vault.azure.net/","token_type":"Bearer"}"#;

    #[test]
    fn documented_response() {
        let t = parse_token_response(DOC.as_bytes()).unwrap();
        assert_eq!(t.access_token.expose(), b"eyJ0eXAi.eyJhdWQi.c2ln");
        assert_eq!(t.expires_on, 1_506_484_173);
        assert_eq!(t.not_before, Some(1_506_480_273));
        assert_eq!(t.resource.as_deref(), Some("https://vault.azure.net/"));
    }

    #[test]
    fn numbers_as_numbers_are_tolerated_but_garbage_is_not() {
        let t =
            parse_token_response(br#"{"access_token":"a.b.c","expires_on":1700000000}"#).unwrap();
        assert_eq!(t.expires_on, 1_700_000_000);
        for (body, want) in [
            (
                &br#"{"access_token":"a.b.c","expires_on":"soon"}"#[..],
                "expires_on",
            ),
            (br#"{"access_token":"a.b.c"}"#, "expires_on is missing"),
            (br#"{"expires_on":"1"}"#, "access_token is missing"),
            (br#"{"access_token":"","expires_on":"1"}"#, "empty"),
            (br#"{"access_token":"a b","expires_on":"1"}"#, "spaces"),
            (br#"[1]"#, "object"),
            (b"\x00garbage", "not JSON"),
        ] {
            let e = parse_token_response(body).unwrap_err();
            assert_eq!(e.code(), "identity-token-response-invalid");
            assert!(e.to_string().contains(want), "{e}");
        }
    }

    #[test]
    fn token_type_must_be_bearer() {
        let e = parse_token_response(
            br#"{"access_token":"a.b.c","expires_on":"1","token_type":"pop"}"#,
        )
        .unwrap_err();
        assert_eq!(e.code(), "identity-token-type-unexpected");
    }

    #[test]
    fn error_bodies_map_to_specific_codes() {
        // Codes from PROTOCOLS.md §2.1 "Errors".
        for (status, error, code) in [
            (400, "invalid_resource", "identity-invalid-resource"),
            (400, "bad_request_102", "identity-metadata-header-missing"),
            (400, "unauthorized_client", "identity-none-assigned"),
            (400, "invalid_request", "identity-invalid-request"),
            (401, "unknown_source", "identity-unknown-source"),
            (403, "access_denied", "identity-access-denied"),
            (500, "unknown", "identity-imds-refused"),
        ] {
            let body = format!(r#"{{"error":"{error}","error_description":"d"}}"#);
            let e = parse_token_error(status, body.as_bytes());
            assert_eq!(e.code(), code, "{error}");
        }
        let e = parse_token_error(502, b"<html>");
        assert_eq!(e.code(), "identity-imds-refused");
        assert!(e.to_string().contains("502"));
    }
}
