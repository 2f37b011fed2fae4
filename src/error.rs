//! Stable error codes.
//!
//! Every error a user can see maps to a kebab-case code that never changes once released
//! (documented in `docs/errors.md`) and a sentence that says which check failed and what to do.
//! Layers keep their own `thiserror` enums and implement [`ErrorCode`]; binaries turn any of
//! them into a [`Problem`] for `--json` output, D-Bus errors and the state file.

use serde::Serialize;

/// An error with a stable machine-readable code.
pub trait ErrorCode: std::error::Error {
    /// The stable kebab-case code, e.g. `report-signature-invalid`.
    fn code(&self) -> &'static str;

    /// The error as code + operator-facing message.
    fn problem(&self) -> Problem {
        Problem {
            code: self.code().to_string(),
            message: self.to_string(),
        }
    }
}

/// The user-facing form of an error: `{"code": ..., "message": ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// Stable kebab-case code.
    pub code: String,
    /// What failed (expected vs found) and what to do about it.
    pub message: String,
}

impl Problem {
    /// A problem from a code and a message.
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.to_string(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}
