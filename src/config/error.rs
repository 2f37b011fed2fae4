//! Configuration errors: what went wrong ([`ConfigError`]), where ([`ConfigProblem`]) and the
//! whole list a load produced ([`ConfigErrors`]).
//!
//! Validation never stops at the first problem: an operator fixing `/etc/skrd` in a rescue shell
//! wants every mistake at once. Each problem names the file, line and column of the offending key,
//! its dotted key path (`volumes.data.key`) and a sentence saying how to fix it. Codes are listed in
//! `docs/errors-config.md`.

use crate::error::ErrorCode;
use std::fmt;
use std::path::PathBuf;

/// Where a value (or a problem) sits: a file and a 1-based line and column (in characters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The file the value was read from.
    pub file: PathBuf,
    /// 1-based line.
    pub line: u32,
    /// 1-based column, counted in characters.
    pub column: u32,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// Why a URL was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlProblem {
    /// Not a URL at all.
    Syntax(url::ParseError),
    /// A scheme other than https (http is accepted only for loopback hosts).
    Scheme {
        /// The scheme found.
        found: String,
        /// Whether plain http would be accepted for this key on a loopback host.
        loopback_http_ok: bool,
    },
    /// The URL carries a user name or password.
    Credentials,
    /// The URL carries a query string or fragment.
    QueryOrFragment,
    /// The URL has a path where only a host is expected.
    Path {
        /// The path found.
        found: String,
    },
    /// An explicit port on an Azure service host.
    PortOnAzureHost,
    /// Not a Key Vault / Managed HSM key path.
    KeyPath {
        /// The path found.
        found: String,
    },
    /// The key name in the URL is not a Key Vault key name.
    KeyName {
        /// The name found.
        found: String,
    },
    /// The version in the URL is not a Key Vault key version.
    KeyVersion {
        /// The version found.
        found: String,
    },
}

impl fmt::Display for UrlProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Syntax(e) => write!(f, "it is not a URL ({e})"),
            Self::Scheme {
                found,
                loopback_http_ok: true,
            } => write!(
                f,
                "its scheme is {found:?}; use https (plain http is accepted only for a loopback \
                 host such as 127.0.0.1, for tests against skr-emulator)"
            ),
            Self::Scheme { found, .. } => write!(f, "its scheme is {found:?}; use http or https"),
            Self::Credentials => write!(f, "it carries a user name or password; remove them"),
            Self::QueryOrFragment => {
                write!(f, "it carries a query (?...) or fragment (#...); remove it")
            }
            Self::Path { found } => write!(
                f,
                "it has the path {found:?}; give only the scheme and host, skrd adds the API path"
            ),
            Self::PortOnAzureHost => write!(
                f,
                "it names a port on an Azure service host; Azure serves only the default https port"
            ),
            Self::KeyPath { found } => write!(
                f,
                "its path is {found:?}, expected /keys/NAME or /keys/NAME/VERSION (copy the key \
                 identifier from `az keyvault key show --query key.kid`)"
            ),
            Self::KeyName { found } => write!(
                f,
                "the key name {found:?} is not a Key Vault key name (1-127 letters, digits and '-')"
            ),
            Self::KeyVersion { found } => write!(
                f,
                "the key version {found:?} is not a key version (letters and digits, Azure uses \
                 32 hex digits); omit the version to use the current one"
            ),
        }
    }
}

/// Why a duration string was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DurationProblem {
    /// Nothing but white space.
    Empty,
    /// A number without a unit.
    MissingUnit,
    /// A unit other than ms, s, m, h.
    UnknownUnit,
    /// A unit without a number, or a number that is not an integer.
    BadNumber,
    /// Larger than the largest supported duration.
    Overflow,
}

impl fmt::Display for DurationProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Empty => "it is empty",
            Self::MissingUnit => "a number has no unit",
            Self::UnknownUnit => "it uses a unit other than ms, s, m and h",
            Self::BadNumber => "a unit has no whole number before it",
            Self::Overflow => "it is too large",
        })
    }
}

/// One configuration problem, without its location (see [`ConfigProblem`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// `--config FILE` names a file that does not exist.
    #[error(
        "the configuration file does not exist; check the path given to --config \
         (without --config skrd reads /etc/skrd/skrd.toml)"
    )]
    Missing,
    /// A file or directory could not be read.
    #[error(
        "cannot read it: {reason}; check that it exists and that its permissions let root read it"
    )]
    Unreadable {
        /// The operating system's reason.
        reason: String,
    },
    /// A drop-in path that is not a regular file.
    #[error("it is not a regular file; drop-ins must be files named *.toml")]
    NotAFile,
    /// The file is not UTF-8.
    #[error("it is not UTF-8 text (byte {offset} is not valid UTF-8); TOML files must be UTF-8")]
    NotUtf8 {
        /// Byte offset of the first invalid byte.
        offset: usize,
    },
    /// TOML syntax error.
    #[error("TOML syntax error: {message}; fix the syntax at this position")]
    Syntax {
        /// The TOML parser's description.
        message: String,
    },
    /// A key the configuration does not know.
    #[error("unknown key {found:?}{}; known keys here: {}", suggestion_text(.suggestion), .known.join(", "))]
    UnknownKey {
        /// The key found.
        found: String,
        /// The closest known key, when one is close.
        suggestion: Option<&'static str>,
        /// Every key allowed at this place.
        known: Vec<&'static str>,
    },
    /// A value of the wrong TOML type.
    #[error("expected {expected}, found {found}")]
    WrongType {
        /// What the key takes, e.g. `a string`.
        expected: &'static str,
        /// The TOML type found, e.g. `an integer`.
        found: &'static str,
    },
    /// A value that is not one of a fixed set.
    #[error("{found:?} is not allowed; use one of: {}", .allowed.join(", "))]
    NotOneOf {
        /// The value found.
        found: String,
        /// The allowed values.
        allowed: &'static [&'static str],
    },
    /// A URL that cannot be used for this key.
    #[error("the URL {found:?} cannot be used: {problem}")]
    BadUrl {
        /// The value found.
        found: String,
        /// Why it is refused.
        problem: UrlProblem,
    },
    /// A GUID that does not parse.
    #[error(
        "{found:?} is not a GUID; write it as 8-4-4-4-12 hex digits, e.g. \
         \"00000000-0000-0000-0000-000000000000\" (`az identity show --query clientId`)"
    )]
    BadGuid {
        /// The value found.
        found: String,
    },
    /// An ARM resource id of a user-assigned identity that does not parse.
    #[error(
        "{found:?} is not the resource id of a user-assigned identity; expected \
         /subscriptions/GUID/resourceGroups/GROUP/providers/Microsoft.ManagedIdentity/\
         userAssignedIdentities/NAME (`az identity show --query id`)"
    )]
    BadResourceId {
        /// The value found.
        found: String,
    },
    /// More than one user-assigned identity selector.
    #[error(
        "conflicts with identity.{other} (at {other_origin}); name the user-assigned identity by \
         exactly one of client_id, object_id or resource_id, or by none for the system-assigned one"
    )]
    ConflictingIdentity {
        /// The other selector's key.
        other: &'static str,
        /// Where the other selector was set.
        other_origin: Origin,
    },
    /// A LUKS UUID that is not in canonical form.
    #[error(
        "{found:?} is not a LUKS UUID in canonical form (8-4-4-4-12 hex digits); copy it from \
         `cryptsetup luksUUID DEVICE`"
    )]
    BadLuksUuid {
        /// The value found.
        found: String,
    },
    /// Two volumes with the same LUKS UUID.
    #[error(
        "volume {volume:?} has the LUKS UUID {uuid} that volume {other_volume:?} already has (at \
         {other_origin}); each LUKS device may appear in one volume only, remove one of them"
    )]
    DuplicateUuid {
        /// The UUID.
        uuid: String,
        /// This volume.
        volume: String,
        /// The volume that has it too.
        other_volume: String,
        /// Where the other volume's uuid was set.
        other_origin: Origin,
    },
    /// A volume that names a key which is not defined.
    #[error(
        "names the key {name:?}, which is not defined{}; define [keys.{name}] or use one of: {}",
        suggestion_text(.suggestion), if .defined.is_empty() { "(none defined)".to_string() } else { .defined.join(", ") }
    )]
    UndefinedKey {
        /// The key name found.
        name: String,
        /// The closest defined key name.
        suggestion: Option<String>,
        /// The defined key names.
        defined: Vec<String>,
    },
    /// A required key is missing.
    #[error("is required here and missing: {why}")]
    MissingKey {
        /// Why the key is needed and how to set it.
        why: &'static str,
    },
    /// A duration that does not parse.
    #[error(
        "{found:?} is not a duration: {problem}; write a whole number and a unit (ms, s, m, h), \
         e.g. \"30s\", \"5m\" or \"1m30s\""
    )]
    BadDuration {
        /// The value found.
        found: String,
        /// Why it is refused.
        problem: DurationProblem,
    },
    /// A number or duration outside its allowed range.
    #[error("{found} is out of range; use a value from {min} to {max}")]
    OutOfRange {
        /// The value found, as written.
        found: String,
        /// Smallest allowed value, as it would be written.
        min: String,
        /// Largest allowed value, as it would be written.
        max: String,
    },
    /// Two settings contradict each other.
    #[error("{found} is larger than {other_key} ({other_value}); {fix}")]
    Inconsistent {
        /// This key's value, as written.
        found: String,
        /// The other key.
        other_key: &'static str,
        /// The other key's value, as written.
        other_value: String,
        /// How to fix it.
        fix: &'static str,
    },
    /// A name (of a key or a volume) that cannot be used.
    #[error("the {what} name {found:?} cannot be used; {rule}")]
    BadName {
        /// `key` or `volume`.
        what: &'static str,
        /// The name found.
        found: String,
        /// The rule it breaks.
        rule: &'static str,
    },
    /// A user or group that is neither an id nor a valid name.
    #[error(
        "{found:?} is not a user or group: use a numeric id from 0 to 4294967294 or a name \
         (lower-case letters, digits, '_', '-', starting with a letter or '_', at most 32 characters)"
    )]
    BadPrincipal {
        /// The value found, as written.
        found: String,
    },
    /// A systemd unit name that cannot be used.
    #[error(
        "{found:?} is not a systemd unit name that a process can run in; use a full name such \
         as \"backup.service\" or \"app@1.service\" (see `systemctl list-units`)"
    )]
    BadUnit {
        /// The value found.
        found: String,
    },
    /// A path that must be absolute.
    #[error("{found:?} is not an absolute path; give the full path starting with /")]
    RelativePath {
        /// The value found.
        found: String,
    },
    /// A TCTI string that is not `NAME` or `NAME:CONFIG`.
    #[error(
        "{found:?} is not a TCTI string; use NAME or NAME:CONFIG, e.g. \"device:/dev/tpmrm0\" or \
         \"swtpm:host=127.0.0.1,port=2321\""
    )]
    BadTcti {
        /// The value found.
        found: String,
    },
    /// An API version that is not a version string.
    #[error(
        "{found:?} is not an API version; use the form the service documents, e.g. \
         \"2020-10-01\" or \"7.4\", or remove the key to use the default"
    )]
    BadApiVersion {
        /// The value found.
        found: String,
    },
    /// A trust file that cannot be used.
    #[error("the trust file {path:?} cannot be used: {reason}; give a readable PEM file with at least one CERTIFICATE")]
    BadTrustFile {
        /// The path.
        path: String,
        /// Why it cannot be used.
        reason: String,
    },
}

fn suggestion_text<T: fmt::Debug>(s: &Option<T>) -> String {
    match s {
        Some(s) => format!(" (did you mean {s:?}?)"),
        None => String::new(),
    }
}

impl ErrorCode for ConfigError {
    fn code(&self) -> &'static str {
        match self {
            Self::Missing => "config-file-missing",
            Self::Unreadable { .. } => "config-file-unreadable",
            Self::NotAFile => "config-not-a-file",
            Self::NotUtf8 { .. } => "config-not-utf8",
            Self::Syntax { .. } => "config-syntax",
            Self::UnknownKey { .. } => "config-unknown-key",
            Self::WrongType { .. } => "config-wrong-type",
            Self::NotOneOf { .. } => "config-invalid-choice",
            Self::BadUrl { .. } => "config-invalid-url",
            Self::BadGuid { .. } => "config-invalid-guid",
            Self::BadResourceId { .. } => "config-invalid-resource-id",
            Self::ConflictingIdentity { .. } => "config-identity-conflict",
            Self::BadLuksUuid { .. } => "config-invalid-luks-uuid",
            Self::DuplicateUuid { .. } => "config-duplicate-uuid",
            Self::UndefinedKey { .. } => "config-undefined-key",
            Self::MissingKey { .. } => "config-missing-key",
            Self::BadDuration { .. } => "config-invalid-duration",
            Self::OutOfRange { .. } => "config-out-of-range",
            Self::Inconsistent { .. } => "config-inconsistent",
            Self::BadName { .. } => "config-invalid-name",
            Self::BadPrincipal { .. } => "config-invalid-principal",
            Self::BadUnit { .. } => "config-invalid-unit",
            Self::RelativePath { .. } => "config-relative-path",
            Self::BadTcti { .. } => "config-invalid-tcti",
            Self::BadApiVersion { .. } => "config-invalid-api-version",
            Self::BadTrustFile { .. } => "config-invalid-trust-file",
        }
    }
}

/// A [`ConfigError`] with its place: file, line, column and dotted key path, where known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// What is wrong.
    pub error: ConfigError,
    /// The file it is in (absent for problems of the merged result with no single place).
    pub file: Option<PathBuf>,
    /// 1-based line.
    pub line: Option<u32>,
    /// 1-based column.
    pub column: Option<u32>,
    /// Dotted key path, e.g. `volumes.data.key`.
    pub key: Option<String>,
}

impl ConfigProblem {
    /// A problem at a known origin and key.
    pub fn at(error: ConfigError, origin: &Origin, key: impl Into<String>) -> Self {
        Self {
            error,
            file: Some(origin.file.clone()),
            line: Some(origin.line),
            column: Some(origin.column),
            key: Some(key.into()),
        }
    }

    /// A problem with a whole file (unreadable, missing).
    pub fn in_file(error: ConfigError, file: impl Into<PathBuf>) -> Self {
        Self {
            error,
            file: Some(file.into()),
            line: None,
            column: None,
            key: None,
        }
    }

    /// A problem with a key that has no place (e.g. a required key nobody set).
    pub fn for_key(error: ConfigError, key: impl Into<String>) -> Self {
        Self {
            error,
            file: None,
            line: None,
            column: None,
            key: Some(key.into()),
        }
    }

    /// The stable code of the underlying error.
    pub fn code(&self) -> &'static str {
        self.error.code()
    }

    /// The JSON form used by `skrctl config check --json`:
    /// `{"code", "message", "file", "line", "column", "key"}` (absent parts are `null`).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "code": self.code(),
            "message": self.error.to_string(),
            "file": self.file.as_ref().map(|f| f.display().to_string()),
            "line": self.line,
            "column": self.column,
            "key": self.key,
        })
    }
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{}", file.display())?;
            if let Some(line) = self.line {
                write!(f, ":{line}")?;
                if let Some(column) = self.column {
                    write!(f, ":{column}")?;
                }
            }
            f.write_str(": ")?;
        }
        if let Some(key) = &self.key {
            write!(f, "{key}: ")?;
        }
        write!(f, "{} [{}]", self.error, self.code())
    }
}

/// Every problem one load found, in file order, then validation order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConfigErrors {
    /// The problems; never empty when returned as an error.
    pub problems: Vec<ConfigProblem>,
    /// The files that were read (or tried), in merge order.
    pub files: Vec<PathBuf>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "the configuration has {n} problem{}",
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            write!(f, "\n  {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl ErrorCode for ConfigErrors {
    /// The code of the first problem (all problems are in [`ConfigErrors::problems`]).
    fn code(&self) -> &'static str {
        self.problems
            .first()
            .map_or("config-invalid", |p| p.error.code())
    }
}
