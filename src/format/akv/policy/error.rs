//! [`PolicyError`] (a release policy that cannot be used) and [`ClaimsError`] (token claims that
//! cannot be read), PROTOCOLS.md §7.1 and §5.4.
//!
//! Every grammar variant carries the JSON path of the problem (`anyOf[0].allOf[2]`) so the
//! operator can find it in the document. Codes are listed in `docs/errors-policy.md`.

use crate::error::ErrorCode;

/// The operators of the grammar, for messages.
pub(crate) const OPERATOR_LIST: &str =
    "equals, notEquals, less, lessOrEquals, greater, greaterOrEquals, exists";

/// A release policy (or the document carrying it) that breaks the grammar or cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The text is not JSON (nor base64url of JSON).
    #[error(
        "release policy is not JSON: {category} error at line {line}, column {column}; pass the \
         policy JSON, the key's release_policy object, or its base64url data"
    )]
    NotJson {
        /// serde_json's error category (`syntax`, `eof`, `data`, `io`).
        category: &'static str,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
    },

    /// A `data` member (or a bare base64 file) is not base64/base64url.
    #[error(
        "{path}: expected base64url of the policy JSON (Key Vault's release_policy.data), found \
         {found_len} characters that do not decode; copy the value unchanged"
    )]
    Base64 {
        /// Where the encoded text was found (`data`, `release_policy.data`, `<file>`).
        path: String,
        /// Length of the text.
        found_len: usize,
    },

    /// A JSON object that is neither a policy nor a known wrapper of one.
    #[error(
        "{path}: not a release policy or a known wrapper (found keys: {found}); expected \
         {{\"version\",\"anyOf\"}}, {{\"contentType\",\"data\"}}, a key bundle with \
         release_policy, Azure CLI key output with releasePolicy, a release response, or a key \
         import config with claims"
    )]
    UnrecognisedDocument {
        /// Path of the object (`$` for the document root).
        path: String,
        /// Its keys, comma-separated.
        found: String,
    },

    /// A member has the wrong JSON type.
    #[error("{path}: expected {expected}, found {found}")]
    WrongType {
        /// Path of the member.
        path: String,
        /// Expected JSON type(s).
        expected: &'static str,
        /// JSON type found.
        found: &'static str,
    },

    /// A required member is absent.
    #[error("{path}: missing \"{key}\"{hint}")]
    MissingKey {
        /// Path of the object.
        path: String,
        /// The member that is required.
        key: &'static str,
        /// Extra advice (may be empty).
        hint: &'static str,
    },

    /// A member the grammar does not allow here.
    #[error("{path}: unknown member \"{key}\" (allowed here: {allowed})")]
    UnknownKey {
        /// Path of the object.
        path: String,
        /// The member found.
        key: String,
        /// The members allowed at this place.
        allowed: &'static str,
    },

    /// A grammar keyword spelled with other letter case (`anyof`, `AllOf`, `Equals`).
    #[error(
        "{path}: \"{found}\" must be spelled \"{expected}\"; the grammar page writes some \
         keywords in lower case but every real policy uses camelCase, and whether Key Vault \
         ignores case is not documented"
    )]
    KeyCase {
        /// Path of the object.
        path: String,
        /// The spelling found.
        found: String,
        /// The canonical spelling.
        expected: &'static str,
    },

    /// The same member twice in one object.
    #[error(
        "{path}: member \"{key}\" appears twice; which one Key Vault would use is undefined, \
         keep one"
    )]
    DuplicateKey {
        /// Path of the object.
        path: String,
        /// The repeated member.
        key: String,
    },

    /// The top-level `version` is absent.
    #[error("release policy has no \"version\"; add \"version\": \"1.0.0\" (the only documented version)")]
    VersionMissing,

    /// The top-level `version` is not "1.0.0".
    #[error(
        "release policy version \"{found}\" is not supported: the grammar defines only \"1.0.0\" \
         and no other version is documented"
    )]
    VersionUnsupported {
        /// The version found.
        found: String,
    },

    /// `allOf` at the top level (the policy must be an `anyOf` over authorities).
    #[error(
        "release policy has a top-level \"allOf\": the top level must be \"anyOf\" over \
         authorities (PROTOCOLS.md §7.1); rename it to \"anyOf\""
    )]
    TopLevelAllOf,

    /// An array that must hold at least one element is empty.
    #[error("{path}: empty array; the grammar requires at least one {what}")]
    EmptyArray {
        /// Path of the array.
        path: String,
        /// What it must contain (`authority`, `condition`).
        what: &'static str,
    },

    /// An authority with both or neither of `allOf` / `anyOf`.
    #[error("{path}: an authority needs exactly one of \"allOf\" or \"anyOf\", found {found}")]
    AuthorityCombinator {
        /// Path of the authority object.
        path: String,
        /// What was found (`both`, `neither`).
        found: &'static str,
    },

    /// An empty `authority` or `claim` string.
    #[error("{path}: \"{key}\" is an empty string")]
    EmptyString {
        /// Path of the object.
        path: String,
        /// The member (`authority`, `claim`).
        key: &'static str,
    },

    /// A claim condition without an operator.
    #[error("{path}: condition on claim \"{claim}\" has no operator (one of: {ops})", ops = OPERATOR_LIST)]
    NoOperator {
        /// Path of the condition.
        path: String,
        /// The claim it names.
        claim: String,
    },

    /// A claim condition with two or more operators.
    #[error("{path}: condition has {count} operators ({operators}); use exactly one, or combine conditions with allOf/anyOf", count = operators.len(), operators = operators.join(", "))]
    TwoOperators {
        /// Path of the condition.
        path: String,
        /// The operators, in document order.
        operators: Vec<String>,
    },

    /// A claim condition with a member that is not an operator.
    #[error("{path}: \"{key}\" is not an operator (operators: {ops})", ops = OPERATOR_LIST)]
    UnknownOperator {
        /// Path of the condition.
        path: String,
        /// The member found.
        key: String,
    },

    /// An operator value that is null, an object or an array.
    #[error(
        "{path}: the value of \"{operator}\" is {found}; the grammar allows only a string, a \
         number, true or false"
    )]
    ValueType {
        /// Path of the condition.
        path: String,
        /// The operator.
        operator: &'static str,
        /// JSON type found.
        found: &'static str,
    },

    /// `exists` with a value other than true/false.
    #[error("{path}: \"exists\" takes true or false (or \"true\"/\"false\"), found {found}")]
    ExistsValue {
        /// Path of the condition.
        path: String,
        /// The value found, as JSON.
        found: String,
    },

    /// An object that is neither a claim condition nor one `allOf`/`anyOf` group.
    #[error(
        "{path}: a condition is either {{\"claim\", <operator>}} or one of {{\"allOf\": [...]}} / \
         {{\"anyOf\": [...]}}, found members: {found}"
    )]
    ConditionShape {
        /// Path of the condition.
        path: String,
        /// Its members, comma-separated.
        found: String,
    },

    /// The legacy `{"claim", "condition", "value"}` shape (REST spec example), not enabled.
    #[error(
        "{path}: legacy condition shape {{\"claim\", \"condition\", \"value\"}}; write \
         {{\"claim\": ..., \"<operator>\": <value>}} instead"
    )]
    LegacyCondition {
        /// Path of the condition.
        path: String,
    },

    /// `allOf`/`anyOf` groups nested deeper than the limit.
    #[error("{path}: conditions nested deeper than {limit} levels")]
    TooDeep {
        /// Path where the limit was reached.
        path: String,
        /// The nesting limit.
        limit: usize,
    },
}

impl ErrorCode for PolicyError {
    fn code(&self) -> &'static str {
        match self {
            Self::NotJson { .. } => "policy-not-json",
            Self::Base64 { .. } => "policy-base64",
            Self::UnrecognisedDocument { .. } => "policy-unrecognised-document",
            Self::WrongType { .. } => "policy-wrong-type",
            Self::MissingKey { .. } => "policy-missing-key",
            Self::UnknownKey { .. } => "policy-unknown-key",
            Self::KeyCase { .. } => "policy-key-case",
            Self::DuplicateKey { .. } => "policy-duplicate-key",
            Self::VersionMissing => "policy-version-missing",
            Self::VersionUnsupported { .. } => "policy-version-unsupported",
            Self::TopLevelAllOf => "policy-top-level-allof",
            Self::EmptyArray { .. } => "policy-empty-array",
            Self::AuthorityCombinator { .. } => "policy-authority-combinator",
            Self::EmptyString { .. } => "policy-empty-string",
            Self::NoOperator { .. } => "policy-no-operator",
            Self::TwoOperators { .. } => "policy-two-operators",
            Self::UnknownOperator { .. } => "policy-unknown-operator",
            Self::ValueType { .. } => "policy-value-type",
            Self::ExistsValue { .. } => "policy-exists-value",
            Self::ConditionShape { .. } => "policy-condition-shape",
            Self::LegacyCondition { .. } => "policy-legacy-condition",
            Self::TooDeep { .. } => "policy-too-deep",
        }
    }
}

/// serde_json's error category as a word for messages.
fn json_category(e: &serde_json::Error) -> &'static str {
    use serde_json::error::Category;
    match e.classify() {
        Category::Io => "io",
        Category::Syntax => "syntax",
        Category::Data => "data",
        Category::Eof => "eof",
    }
}

impl PolicyError {
    pub(crate) fn not_json(e: &serde_json::Error) -> Self {
        Self::NotJson {
            category: json_category(e),
            line: e.line(),
            column: e.column(),
        }
    }
}

/// Token claims (a JWT or a claims JSON file) that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClaimsError {
    /// A compact JWT must have exactly three dot-separated segments.
    #[error(
        "token is not a compact JWS: expected 3 dot-separated segments, found {found}; pass the \
         MAA token (the \"token\" value of the attest response)"
    )]
    TokenSegments {
        /// Segments found.
        found: usize,
    },

    /// The payload segment is not base64url.
    #[error("token payload (segment 2) is not base64url ({found_len} characters)")]
    TokenBase64 {
        /// Length of the segment.
        found_len: usize,
    },

    /// The payload or the claims file is not JSON.
    #[error("token claims are not JSON: {category} error at line {line}, column {column}")]
    NotJson {
        /// serde_json's error category.
        category: &'static str,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
    },

    /// The claims are JSON but not an object.
    #[error("token claims must be a JSON object, found {found}")]
    NotObject {
        /// JSON type found.
        found: &'static str,
    },
}

impl ErrorCode for ClaimsError {
    fn code(&self) -> &'static str {
        match self {
            Self::TokenSegments { .. } => "claims-token-segments",
            Self::TokenBase64 { .. } => "claims-token-base64",
            Self::NotJson { .. } => "claims-not-json",
            Self::NotObject { .. } => "claims-not-object",
        }
    }
}

impl ClaimsError {
    pub(crate) fn not_json(e: &serde_json::Error) -> Self {
        Self::NotJson {
            category: json_category(e),
            line: e.line(),
            column: e.column(),
        }
    }
}
