//! The `azure-skr` LUKS2 token (DESIGN.md "Volumes and the untrusted header"): metadata only,
//! never a secret.
//!
//! skrd writes one such token per enrolled volume into the LUKS2 header's `tokens` object,
//! bound to skrd's keyslot. The header is host-controlled, so the token is only a cross-check
//! against the configuration (which key, which version, which keyslot) and a label for
//! `skrctl volumes`; the passphrase never depends on it (it is derived from the configured
//! UUID). Shape (every member required, no other member allowed):
//!
//! ```json
//! {"type": "azure-skr", "keyslots": ["1"], "skrd_token_version": 1,
//!  "key_url": "https://contoso.vault.azure.net/keys/disk", "key_version": "0123abcd" | null,
//!  "kdf": "skrd luks2 v1", "volume": "data", "created_at": 1732395600}
//! ```
//!
//! `type` and `keyslots` are what LUKS2 itself requires of every token (an array of keyslot
//! numbers as decimal strings); skrd binds exactly one keyslot. An empty `keyslots` is
//! accepted too: libcryptsetup leaves the token that way when the keyslot is destroyed, and
//! skrd must still be able to recognise (and remove or rebind) such an orphaned token. `key_url` is the key without
//! its version; `key_version` is the version whose material was derived, or null when the
//! configuration asked for "the current version" and none was known. `created_at` is Unix
//! seconds, passed in by the caller (no clock here). PURE; no I/O.

use serde_json::{Map, Value};

use crate::error::ErrorCode;

/// The LUKS2 token `type` skrd owns.
pub const TOKEN_TYPE: &str = "azure-skr";
/// The KDF label recorded in the token; the HKDF `info` of `crypto::derive`.
pub const KDF_LABEL: &str = "skrd luks2 v1";
/// The token format version written by this skrd.
pub const TOKEN_FORMAT_VERSION: u64 = 1;
/// Largest token JSON accepted (LUKS2 metadata areas are at most 4 MiB; ours is ~300 bytes).
pub const MAX_TOKEN_LEN: usize = 16 * 1024;
/// LUKS2 has at most 32 keyslots (numbers 0..=31).
pub const MAX_KEYSLOT: u32 = 31;

const FIELDS: [&str; 8] = [
    "type",
    "keyslots",
    "skrd_token_version",
    "key_url",
    "key_version",
    "kdf",
    "volume",
    "created_at",
];

/// A parsed `azure-skr` token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LuksToken {
    /// The one keyslot the token is bound to; `None` when libcryptsetup unbound it because the
    /// keyslot was destroyed (`cryptsetup luksKillSlot` empties `keyslots`).
    pub keyslot: Option<u32>,
    /// Key URL without version: `https://VAULT/keys/NAME`.
    pub key_url: String,
    /// The key version whose material the keyslot's passphrase was derived from.
    pub key_version: Option<String>,
    /// The volume name (crypttab name) it was enrolled as.
    pub volume: String,
    /// Enrollment time, Unix seconds.
    pub created_at: u64,
}

/// Why a token JSON document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LuksTokenError {
    /// Not JSON, or JSON with duplicate members.
    #[error("the LUKS2 token is not valid JSON ({reason}); the header may be damaged: check it with `cryptsetup luksDump --dump-json-metadata DEVICE`")]
    Json {
        /// The parser's explanation.
        reason: String,
    },
    /// Larger than [`MAX_TOKEN_LEN`].
    #[error("the LUKS2 token is {found} bytes, more than the {max} an azure-skr token can be; the header was not written by skrd")]
    TooLarge {
        /// Size found.
        found: usize,
        /// The limit.
        max: usize,
    },
    /// The top level is not an object.
    #[error(
        "the LUKS2 token is a JSON {found}, expected an object; the header was not written by skrd"
    )]
    NotObject {
        /// JSON type found.
        found: &'static str,
    },
    /// A required member is absent.
    #[error(
        "the azure-skr token has no {field:?} member; re-enroll the volume with `skrctl reenroll`"
    )]
    MissingField {
        /// The member.
        field: &'static str,
    },
    /// A member skrd does not know.
    #[error("the azure-skr token has an unknown member {field:?}; it was written by another tool or a newer skrd: check the header with `cryptsetup luksDump`")]
    UnknownField {
        /// The member (first 64 characters).
        field: String,
    },
    /// A member of the wrong JSON type.
    #[error("the azure-skr token member {field:?} is a JSON {found}, expected {expected}")]
    FieldType {
        /// The member.
        field: &'static str,
        /// What it must be.
        expected: &'static str,
        /// JSON type found.
        found: &'static str,
    },
    /// `type` is not `azure-skr`.
    #[error("the LUKS2 token type is {found:?}, expected {expected:?}")]
    TokenType {
        /// Expected type.
        expected: &'static str,
        /// Found type (first 64 characters).
        found: String,
    },
    /// Not exactly one keyslot.
    #[error(
        "the azure-skr token lists {found} keyslots, expected exactly 1; re-enroll the volume"
    )]
    KeyslotCount {
        /// Number listed.
        found: usize,
    },
    /// A keyslot that is not a decimal number 0..=31.
    #[error("the azure-skr token keyslot {found:?} is not a LUKS2 keyslot number (0 to {max})")]
    Keyslot {
        /// Text found (first 16 characters).
        found: String,
        /// Largest keyslot number.
        max: u32,
    },
    /// Unsupported `skrd_token_version`.
    #[error("the azure-skr token has format version {found}, this skrd reads version {supported}; upgrade skrd or re-enroll")]
    FormatVersion {
        /// Version found.
        found: u64,
        /// The version supported.
        supported: u64,
    },
    /// `kdf` is not the label this skrd derives with.
    #[error("the azure-skr token names KDF {found:?}, this skrd derives with {expected:?}; re-enroll the volume")]
    KdfLabel {
        /// Expected label.
        expected: &'static str,
        /// Found label (first 64 characters).
        found: String,
    },
    /// A string member that is empty, too long or holds control characters.
    #[error("the azure-skr token member {field:?} is not acceptable text ({rule})")]
    BadText {
        /// The member.
        field: &'static str,
        /// The rule it breaks.
        rule: &'static str,
    },
}

impl ErrorCode for LuksTokenError {
    fn code(&self) -> &'static str {
        match self {
            Self::Json { .. } => "luks-token-json",
            Self::TooLarge { .. } => "luks-token-too-large",
            Self::NotObject { .. } => "luks-token-not-object",
            Self::MissingField { .. } => "luks-token-missing-field",
            Self::UnknownField { .. } => "luks-token-unknown-field",
            Self::FieldType { .. } => "luks-token-field-type",
            Self::TokenType { .. } => "luks-token-type",
            Self::KeyslotCount { .. } => "luks-token-keyslot-count",
            Self::Keyslot { .. } => "luks-token-keyslot-invalid",
            Self::FormatVersion { .. } => "luks-token-version",
            Self::KdfLabel { .. } => "luks-token-kdf",
            Self::BadText { .. } => "luks-token-text",
        }
    }
}

fn clip(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

fn type_name(v: &Value) -> &'static str {
    crate::format::json::type_name(v)
}

fn string_field<'a>(
    obj: &'a Map<String, Value>,
    field: &'static str,
) -> Result<&'a str, LuksTokenError> {
    match obj.get(field) {
        None => Err(LuksTokenError::MissingField { field }),
        Some(Value::String(s)) => Ok(s),
        Some(v) => Err(LuksTokenError::FieldType {
            field,
            expected: "a string",
            found: type_name(v),
        }),
    }
}

fn check_text(field: &'static str, s: &str, max: usize) -> Result<(), LuksTokenError> {
    if s.is_empty() || s.len() > max {
        return Err(LuksTokenError::BadText {
            field,
            rule: "1 to 512 bytes",
        });
    }
    if s.chars().any(char::is_control) {
        return Err(LuksTokenError::BadText {
            field,
            rule: "no control characters",
        });
    }
    Ok(())
}

fn parse_keyslot(text: &str) -> Result<u32, LuksTokenError> {
    let bad = || LuksTokenError::Keyslot {
        found: clip(text, 16),
        max: MAX_KEYSLOT,
    };
    // LUKS2 writes keyslot numbers as plain decimal: no sign, no leading zeros.
    if text.is_empty()
        || text.len() > 2
        || !text.bytes().all(|b| b.is_ascii_digit())
        || (text.len() > 1 && text.starts_with('0'))
    {
        return Err(bad());
    }
    let n: u32 = text.parse().map_err(|_| bad())?;
    if n > MAX_KEYSLOT {
        return Err(bad());
    }
    Ok(n)
}

impl LuksToken {
    /// Parses a token from its JSON text, refusing duplicate members.
    pub fn parse(bytes: &[u8]) -> Result<Self, LuksTokenError> {
        if bytes.len() > MAX_TOKEN_LEN {
            return Err(LuksTokenError::TooLarge {
                found: bytes.len(),
                max: MAX_TOKEN_LEN,
            });
        }
        let value = crate::format::json::parse_strict(bytes)
            .map_err(|reason| LuksTokenError::Json { reason })?;
        Self::from_value(&value)
    }

    /// Parses a token already decoded as JSON (libcryptsetup hands tokens out as JSON text;
    /// its binding decodes them).
    pub fn from_value(value: &Value) -> Result<Self, LuksTokenError> {
        let Value::Object(obj) = value else {
            return Err(LuksTokenError::NotObject {
                found: type_name(value),
            });
        };
        let ty = string_field(obj, "type")?;
        if ty != TOKEN_TYPE {
            return Err(LuksTokenError::TokenType {
                expected: TOKEN_TYPE,
                found: clip(ty, 64),
            });
        }
        if let Some(unknown) = obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
            return Err(LuksTokenError::UnknownField {
                field: clip(unknown, 64),
            });
        }
        let version = match obj.get("skrd_token_version") {
            None => {
                return Err(LuksTokenError::MissingField {
                    field: "skrd_token_version",
                })
            }
            Some(Value::Number(n)) => n.as_u64().ok_or(LuksTokenError::FieldType {
                field: "skrd_token_version",
                expected: "a non-negative integer",
                found: "number",
            })?,
            Some(v) => {
                return Err(LuksTokenError::FieldType {
                    field: "skrd_token_version",
                    expected: "a non-negative integer",
                    found: type_name(v),
                })
            }
        };
        if version != TOKEN_FORMAT_VERSION {
            return Err(LuksTokenError::FormatVersion {
                found: version,
                supported: TOKEN_FORMAT_VERSION,
            });
        }
        let keyslots = match obj.get("keyslots") {
            None => return Err(LuksTokenError::MissingField { field: "keyslots" }),
            Some(Value::Array(a)) => a,
            Some(v) => {
                return Err(LuksTokenError::FieldType {
                    field: "keyslots",
                    expected: "an array of strings",
                    found: type_name(v),
                })
            }
        };
        let keyslot = match keyslots.as_slice() {
            [] => None,
            [Value::String(s)] => Some(parse_keyslot(s)?),
            [v] => {
                return Err(LuksTokenError::FieldType {
                    field: "keyslots",
                    expected: "an array of strings",
                    found: type_name(v),
                })
            }
            other => return Err(LuksTokenError::KeyslotCount { found: other.len() }),
        };
        let kdf = string_field(obj, "kdf")?;
        if kdf != KDF_LABEL {
            return Err(LuksTokenError::KdfLabel {
                expected: KDF_LABEL,
                found: clip(kdf, 64),
            });
        }
        let key_url = string_field(obj, "key_url")?;
        check_text("key_url", key_url, 512)?;
        let key_version = match obj.get("key_version") {
            None => {
                return Err(LuksTokenError::MissingField {
                    field: "key_version",
                })
            }
            Some(Value::Null) => None,
            Some(Value::String(s)) => {
                check_text("key_version", s, 64)?;
                Some(s.clone())
            }
            Some(v) => {
                return Err(LuksTokenError::FieldType {
                    field: "key_version",
                    expected: "a string or null",
                    found: type_name(v),
                })
            }
        };
        let volume = string_field(obj, "volume")?;
        check_text("volume", volume, 64)?;
        let created_at = match obj.get("created_at") {
            None => {
                return Err(LuksTokenError::MissingField {
                    field: "created_at",
                })
            }
            Some(Value::Number(n)) => n.as_u64().ok_or(LuksTokenError::FieldType {
                field: "created_at",
                expected: "a non-negative integer (Unix seconds)",
                found: "number",
            })?,
            Some(v) => {
                return Err(LuksTokenError::FieldType {
                    field: "created_at",
                    expected: "a non-negative integer (Unix seconds)",
                    found: type_name(v),
                })
            }
        };
        Ok(Self {
            keyslot,
            key_url: key_url.to_string(),
            key_version,
            volume: volume.to_string(),
            created_at,
        })
    }

    /// The token as the JSON object written into the LUKS2 header.
    pub fn to_value(&self) -> Value {
        serde_json::json!({
            "type": TOKEN_TYPE,
            "keyslots": self.keyslot.map(|k| k.to_string()).into_iter().collect::<Vec<_>>(),
            "skrd_token_version": TOKEN_FORMAT_VERSION,
            "key_url": self.key_url,
            "key_version": self.key_version,
            "kdf": KDF_LABEL,
            "volume": self.volume,
            "created_at": self.created_at,
        })
    }

    /// The token's JSON text.
    pub fn encode(&self) -> String {
        self.to_value().to_string()
    }
}

/// Fuzzing entry point: parse, and when accepted, check that encoding round-trips.
#[doc(hidden)]
pub fn fuzz_token(data: &[u8]) {
    if let Ok(t) = LuksToken::parse(data) {
        let again = LuksToken::parse(t.encode().as_bytes());
        debug_assert_eq!(again.as_ref().ok(), Some(&t));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    // Written by hand from the shape in the module docs (not by `encode`).
    const GOOD: &str = r#"{"type":"azure-skr","keyslots":["1"],"skrd_token_version":1,
        "key_url":"https://contoso.vault.azure.net/keys/disk","key_version":"0123abcd",
        "kdf":"skrd luks2 v1","volume":"data","created_at":1732395600}"#;

    fn with(edit: impl FnOnce(&mut Map<String, Value>)) -> Vec<u8> {
        let mut v: Value = serde_json::from_str(GOOD).unwrap();
        edit(v.as_object_mut().unwrap());
        serde_json::to_vec(&v).unwrap()
    }

    fn code(bytes: &[u8]) -> &'static str {
        LuksToken::parse(bytes).unwrap_err().code()
    }

    #[test]
    fn parses_the_documented_shape() {
        let t = LuksToken::parse(GOOD.as_bytes()).unwrap();
        assert_eq!(t.keyslot, Some(1));
        assert_eq!(t.key_url, "https://contoso.vault.azure.net/keys/disk");
        assert_eq!(t.key_version.as_deref(), Some("0123abcd"));
        assert_eq!(t.volume, "data");
        assert_eq!(t.created_at, 1_732_395_600);
        assert_eq!(LuksToken::parse(t.encode().as_bytes()).unwrap(), t);
        let null_version = with(|o| {
            o.insert("key_version".into(), Value::Null);
        });
        assert_eq!(LuksToken::parse(&null_version).unwrap().key_version, None);
        // What libcryptsetup leaves after `luksKillSlot` of the bound keyslot.
        let unbound = with(|o| {
            o.insert("keyslots".into(), serde_json::json!([]));
        });
        let t = LuksToken::parse(&unbound).unwrap();
        assert_eq!(t.keyslot, None);
        assert_eq!(LuksToken::parse(t.encode().as_bytes()).unwrap(), t);
    }

    #[test]
    fn refuses_every_deviation() {
        assert_eq!(code(b"not json"), "luks-token-json");
        assert_eq!(
            code(br#"{"type":"azure-skr","type":"azure-skr"}"#),
            "luks-token-json"
        );
        assert_eq!(code(b"[]"), "luks-token-not-object");
        assert_eq!(code(&vec![b' '; MAX_TOKEN_LEN + 1]), "luks-token-too-large");
        for field in FIELDS {
            let b = with(|o| {
                o.remove(field);
            });
            assert_eq!(code(&b), "luks-token-missing-field", "{field}");
        }
        let b = with(|o| {
            o.insert("passphrase".into(), Value::String("x".into()));
        });
        assert_eq!(code(&b), "luks-token-unknown-field");
        let b = with(|o| {
            o.insert("type".into(), Value::String("systemd-tpm2".into()));
        });
        assert_eq!(code(&b), "luks-token-type");
        let b = with(|o| {
            o.insert("type".into(), serde_json::json!(1));
        });
        assert_eq!(code(&b), "luks-token-field-type");
        for (slots, want) in [
            (serde_json::json!(["1", "2"]), "luks-token-keyslot-count"),
            (serde_json::json!([1]), "luks-token-field-type"),
            (serde_json::json!("1"), "luks-token-field-type"),
            (serde_json::json!(["32"]), "luks-token-keyslot-invalid"),
            (serde_json::json!(["01"]), "luks-token-keyslot-invalid"),
            (serde_json::json!(["-1"]), "luks-token-keyslot-invalid"),
            (serde_json::json!([""]), "luks-token-keyslot-invalid"),
        ] {
            let b = with(|o| {
                o.insert("keyslots".into(), slots.clone());
            });
            assert_eq!(code(&b), want, "{slots}");
        }
        let b = with(|o| {
            o.insert("skrd_token_version".into(), serde_json::json!(2));
        });
        assert_eq!(code(&b), "luks-token-version");
        let b = with(|o| {
            o.insert("skrd_token_version".into(), serde_json::json!("1"));
        });
        assert_eq!(code(&b), "luks-token-field-type");
        let b = with(|o| {
            o.insert("kdf".into(), serde_json::json!("skrd luks2 v2"));
        });
        assert_eq!(code(&b), "luks-token-kdf");
        let b = with(|o| {
            o.insert("created_at".into(), serde_json::json!(-5));
        });
        assert_eq!(code(&b), "luks-token-field-type");
        let b = with(|o| {
            o.insert("key_version".into(), serde_json::json!(3));
        });
        assert_eq!(code(&b), "luks-token-field-type");
        let b = with(|o| {
            o.insert("volume".into(), serde_json::json!(""));
        });
        assert_eq!(code(&b), "luks-token-text");
        let b = with(|o| {
            o.insert("key_url".into(), serde_json::json!("a\nb"));
        });
        assert_eq!(code(&b), "luks-token-text");
    }

    #[test]
    fn fuzz_entry_never_panics_on_samples() {
        for s in [&b""[..], b"{}", b"null", GOOD.as_bytes(), &[0xff, 0xfe]] {
            fuzz_token(s);
        }
    }
}
