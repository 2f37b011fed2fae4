//! `/run/skrd/state.json`: the progress document shared by the initramfs unlocker and the
//! daemon (DESIGN.md "The long-running daemon": no D-Bus in the initrd, state crosses
//! switch-root in this file). PURE: bytes in, [`State`] or a specific [`StateDocError`] out;
//! [`encode`] the other way. Writing it atomically is `crate::state_file`.
//!
//! It never holds a secret: no key byte, no passphrase, no bearer or attestation token; only
//! names, URLs, stages, counters, timings, error codes and the request ids Azure returns
//! (`x-ms-request-id`), which support staff ask for.
//!
//! Shape (schema version 1; every member listed is required, `null` where optional, and no
//! other member is accepted at any level, so a typo or a newer writer is reported, not ignored):
//!
//! ```json
//! {
//!   "schema_version": 1,
//!   "writer": "initrd",
//!   "updated_at": 1732395600,
//!   "finished_at": 1732395601,
//!   "volumes": [
//!     {"name": "data", "uuid": "5f0c...-...", "stage": "unlocked", "attempts": 1,
//!      "timings_ms": {"attest": 412, "release": 120, "unlock": 830, "total": 1410},
//!      "last_error": null, "updated_at": 1732395601}
//!   ],
//!   "attestation": {"provider": "https://x.weu.attest.azure.net/", "source": "vtpm",
//!     "last_success": 1732395600, "token_expiry": 1732424400,
//!     "maa_request_id": "c0ffee...", "last_error": null},
//!   "keys": [
//!     {"name": "disk", "url": "https://contoso.vault.azure.net/keys/disk",
//!      "version": "0123abcd", "cached": true, "akv_request_id": "1234...",
//!      "released_at": 1732395601, "last_error": null}
//!   ]
//! }
//! ```
//!
//! Times are Unix seconds passed in by the caller (no clock here). `writer` says who wrote the
//! document last (`initrd` or `daemon`). `finished_at` is `null` while the writer is still at
//! work, then when it finished it: the initramfs when every volume was answered, refused or out
//! of time; the daemon when its initial work was done. `attestation` is `null` until one was
//! attempted.
//!
//! Optional members (added later; absent means `null`, and they are left out when `null`, so
//! documents without them stay byte-identical): `stopped_at` at the top level, when the daemon
//! exited (its keys are gone from memory); `maa_request_id` and `akv_request_id` per volume,
//! the Azure request ids of the attestation and release that decided its last outcome (the
//! daemon fills them for the initramfs's volumes when it takes the document over, from the
//! initramfs's attestation and the volume's key, so a later attestation of the daemon does not
//! lose them).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::ErrorCode;

/// The schema version this skrd writes and reads.
pub const SCHEMA_VERSION: u64 = 1;
/// Largest document accepted (a few hundred bytes per volume and key).
pub const MAX_STATE_LEN: usize = 1024 * 1024;
/// Longest text member (URLs, error messages).
pub const MAX_TEXT_LEN: usize = 4096;

/// Who wrote the document last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Writer {
    /// The initramfs unlocker (`skrd --initrd` / the boot path).
    Initrd,
    /// The long-running daemon (`skrd.service`).
    Daemon,
}

/// Where a volume is in its unlock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    /// Known from the configuration; nothing started yet (or left for the daemon).
    Pending,
    /// Waiting for the network (IMDS not reachable yet).
    WaitingNetwork,
    /// Collecting evidence and attesting.
    Attesting,
    /// Releasing the key from Key Vault / Managed HSM.
    Releasing,
    /// Opening the LUKS2 volume.
    Unlocking,
    /// Open (done).
    Unlocked,
    /// A service refused (attestation rejected, release policy not met, forbidden): retrying
    /// will not help until something changes.
    Refused,
    /// A failure that may be transient (network, timeout) or local (device, header).
    Failed,
}

impl Stage {
    /// Every stage, in the order a volume goes through them.
    pub const ALL: [Stage; 8] = [
        Stage::Pending,
        Stage::WaitingNetwork,
        Stage::Attesting,
        Stage::Releasing,
        Stage::Unlocking,
        Stage::Unlocked,
        Stage::Refused,
        Stage::Failed,
    ];

    /// The kebab-case name used in the document.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Pending => "pending",
            Stage::WaitingNetwork => "waiting-network",
            Stage::Attesting => "attesting",
            Stage::Releasing => "releasing",
            Stage::Unlocking => "unlocking",
            Stage::Unlocked => "unlocked",
            Stage::Refused => "refused",
            Stage::Failed => "failed",
        }
    }

    /// True for `refused` and `failed`.
    pub fn is_failure(self) -> bool {
        matches!(self, Stage::Refused | Stage::Failed)
    }

    /// True when no more work is under way (`unlocked`, `refused`, `failed`).
    pub fn is_final(self) -> bool {
        matches!(self, Stage::Unlocked | Stage::Refused | Stage::Failed)
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The last error of a volume, the attestation or a key: the stable code and its message
/// (the same pair as `crate::error::Problem`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LastError {
    /// Stable kebab-case code (`docs/errors.md`).
    pub code: String,
    /// What failed and what to do.
    pub message: String,
}

impl LastError {
    /// The message split into what happened and what to do. Messages follow the project's
    /// convention "what happened ...; what to do" (`crate::error`): the advice is the part
    /// after the last "; " (without a trailing " (code)" that nested messages carry); `None`
    /// when the message has no such part.
    pub fn advice(&self) -> (&str, Option<&str>) {
        match self.message.rsplit_once("; ") {
            Some((what, advice)) if !advice.trim().is_empty() => {
                let advice = advice.trim_end();
                let advice = advice
                    .strip_suffix(')')
                    .and_then(|a| a.rsplit_once(" ("))
                    .filter(|(_, code)| is_kebab(code))
                    .map_or(advice, |(a, _)| a);
                (what, Some(advice))
            }
            _ => (self.message.as_str(), None),
        }
    }
}

impl From<crate::error::Problem> for LastError {
    fn from(p: crate::error::Problem) -> Self {
        Self {
            code: p.code,
            message: p.message,
        }
    }
}

/// One configured volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeState {
    /// The volume's name in the configuration (`volumes.NAME`, the crypttab name).
    pub name: String,
    /// The LUKS2 UUID from the configuration (hyphenated, lower case).
    pub uuid: String,
    /// Where it is.
    pub stage: Stage,
    /// Unlock attempts made so far (0 while pending).
    pub attempts: u32,
    /// Step durations in milliseconds, by step name (kebab-case: `attest`, `release`,
    /// `unlock`, `total`, ...).
    pub timings_ms: BTreeMap<String, u64>,
    /// The last error, if the last attempt failed.
    pub last_error: Option<LastError>,
    /// When this entry last changed, Unix seconds.
    pub updated_at: u64,
    /// The attestation provider's request id (`x-ms-request-id`) of the run that decided this
    /// volume's last outcome (optional member).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maa_request_id: Option<String>,
    /// Key Vault's / Managed HSM's request id of the release that served this volume's last
    /// answer (optional member).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub akv_request_id: Option<String>,
}

/// The attestation (one per run, shared by every key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttestationState {
    /// The attestation provider's base URL.
    pub provider: String,
    /// Evidence source: `vtpm` or `sev-guest`.
    pub source: String,
    /// Last successful attestation, Unix seconds.
    pub last_success: Option<u64>,
    /// Expiry (`exp`) of the current attestation token, Unix seconds.
    pub token_expiry: Option<u64>,
    /// The provider's request id of the last attest call (`x-ms-request-id`).
    pub maa_request_id: Option<String>,
    /// The last error, if the last attestation failed.
    pub last_error: Option<LastError>,
}

/// One configured key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyState {
    /// The key's name in the configuration (`keys.NAME`).
    pub name: String,
    /// The key URL (vault or managed HSM, without version).
    pub url: String,
    /// The key version released (from the release response's `kid`), if known.
    pub version: Option<String>,
    /// True when the daemon holds the released material in memory.
    pub cached: bool,
    /// Key Vault's request id of the last release call (`x-ms-request-id`).
    pub akv_request_id: Option<String>,
    /// Last successful release, Unix seconds.
    pub released_at: Option<u64>,
    /// The last error, if the last release failed.
    pub last_error: Option<LastError>,
}

/// The whole document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    /// Always [`SCHEMA_VERSION`] once parsed.
    pub schema_version: u64,
    /// Who wrote it last.
    pub writer: Writer,
    /// When it was last written, Unix seconds.
    pub updated_at: u64,
    /// When the writer finished its work (the initramfs: every volume answered, refused or
    /// out of time; the daemon: its initial work), Unix seconds; `None` while it works.
    pub finished_at: Option<u64>,
    /// Configured volumes, in configuration order (names unique).
    pub volumes: Vec<VolumeState>,
    /// The attestation, once one was attempted.
    pub attestation: Option<AttestationState>,
    /// Configured keys (names unique).
    pub keys: Vec<KeyState>,
    /// When the daemon stopped (SIGTERM/SIGINT), Unix seconds: from then on it holds no key
    /// (every `cached` is false) and renews nothing. Optional: absent while the daemon runs, in
    /// documents of the initramfs, and in documents written before this member existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_at: Option<u64>,
}

impl State {
    /// An empty document written by `writer` at `now` (Unix seconds).
    pub fn new(writer: Writer, now: u64) -> Self {
        Self {
            schema_version: SCHEMA_VERSION,
            writer,
            updated_at: now,
            finished_at: None,
            volumes: Vec::new(),
            attestation: None,
            keys: Vec::new(),
            stopped_at: None,
        }
    }

    /// The volume `name`, if listed.
    pub fn volume(&self, name: &str) -> Option<&VolumeState> {
        self.volumes.iter().find(|v| v.name == name)
    }

    /// The volume `name`, added as `pending` with `uuid` when not yet listed.
    pub fn volume_mut(&mut self, name: &str, uuid: &str, now: u64) -> &mut VolumeState {
        let pos = match self.volumes.iter().position(|v| v.name == name) {
            Some(pos) => pos,
            None => {
                self.volumes.push(VolumeState {
                    name: name.to_string(),
                    uuid: uuid.to_string(),
                    stage: Stage::Pending,
                    attempts: 0,
                    timings_ms: BTreeMap::new(),
                    last_error: None,
                    updated_at: now,
                    maa_request_id: None,
                    akv_request_id: None,
                });
                self.volumes.len() - 1
            }
        };
        &mut self.volumes[pos]
    }

    /// The key `name`, if listed.
    pub fn key(&self, name: &str) -> Option<&KeyState> {
        self.keys.iter().find(|k| k.name == name)
    }

    /// The key `name`, added (not cached, never released) with `url` when not yet listed.
    pub fn key_mut(&mut self, name: &str, url: &str) -> &mut KeyState {
        let pos = match self.keys.iter().position(|k| k.name == name) {
            Some(pos) => pos,
            None => {
                self.keys.push(KeyState {
                    name: name.to_string(),
                    url: url.to_string(),
                    version: None,
                    cached: false,
                    akv_request_id: None,
                    released_at: None,
                    last_error: None,
                });
                self.keys.len() - 1
            }
        };
        &mut self.keys[pos]
    }

    /// The attestation token's expiry when it has passed at `now` although a daemon should
    /// have renewed it: the document was written by the daemon and does not say it stopped
    /// (a daemon that hangs or was killed). The initramfs's token is used once and may expire.
    pub fn unrenewed_token(&self, now: u64) -> Option<u64> {
        if self.writer != Writer::Daemon || self.stopped_at.is_some() {
            return None;
        }
        self.attestation
            .as_ref()
            .and_then(|a| a.token_expiry)
            .filter(|exp| *exp < now)
    }

    /// No failure ([`State::has_failure`]) and no token left to expire
    /// ([`State::unrenewed_token`]) at `now`.
    pub fn is_healthy(&self, now: u64) -> bool {
        !self.has_failure() && self.unrenewed_token(now).is_none()
    }

    /// True when something failed or was refused (a volume, the attestation, or a key).
    pub fn has_failure(&self) -> bool {
        self.volumes.iter().any(|v| v.stage.is_failure())
            || self
                .attestation
                .as_ref()
                .is_some_and(|a| a.last_error.is_some())
            || self.keys.iter().any(|k| k.last_error.is_some())
    }
}

/// Why a state document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateDocError {
    /// Larger than [`MAX_STATE_LEN`].
    #[error("the state file is {found} bytes, more than the {max} skrd writes; it was not written by skrd: remove it (it is rebuilt at the next run)")]
    TooLarge {
        /// Size found.
        found: usize,
        /// The limit.
        max: usize,
    },
    /// Not JSON, or JSON with duplicate members.
    #[error("the state file is not valid JSON ({reason}); it is damaged or was cut short: remove it (it is rebuilt at the next run)")]
    Json {
        /// The parser's explanation.
        reason: String,
    },
    /// The top level is not an object.
    #[error("the state file holds a JSON {found}, expected an object; remove it (it is rebuilt at the next run)")]
    NotObject {
        /// JSON type found.
        found: &'static str,
    },
    /// `schema_version` absent or not an integer.
    #[error("the state file has no integer \"schema_version\" member; it was not written by skrd: remove it")]
    NoVersion,
    /// A schema version this skrd does not read.
    #[error("the state file has schema version {found}, this skrd reads version {supported}; the initramfs and the installed skrd differ: rebuild the initramfs (dracut -f)")]
    Version {
        /// Version found.
        found: u64,
        /// The version this skrd reads.
        supported: u64,
    },
    /// A member missing, unknown, or of the wrong type (serde's explanation names it).
    #[error("the state file does not match schema version 1: {reason}; remove it (it is rebuilt at the next run)")]
    Schema {
        /// Which member and what was wrong.
        reason: String,
    },
    /// A text member that is empty, too long or holds control characters.
    #[error("the state file member {field:?} is not acceptable text ({rule})")]
    BadText {
        /// The member (`volumes[].name`, ...).
        field: &'static str,
        /// The rule it breaks.
        rule: &'static str,
    },
    /// A volume UUID that is not a UUID.
    #[error("the state file lists volume {volume:?} with UUID {found:?}, which is not a UUID")]
    BadUuid {
        /// The volume.
        volume: String,
        /// Text found (first 64 characters).
        found: String,
    },
    /// Two entries with the same name.
    #[error(
        "the state file lists {what} {name:?} twice; remove it (it is rebuilt at the next run)"
    )]
    Duplicate {
        /// `volume` or `key`.
        what: &'static str,
        /// The repeated name (first 64 characters).
        name: String,
    },
    /// A timing step name that is not kebab-case.
    #[error("the state file lists a timing step {found:?} for volume {volume:?}; step names are lower-case kebab-case")]
    BadStep {
        /// The volume.
        volume: String,
        /// Name found (first 64 characters).
        found: String,
    },
    /// Serialising failed (cannot happen for a [`State`]; kept typed instead of a panic).
    #[error("encoding the state document failed ({reason}); report this as a bug")]
    Encode {
        /// serde_json's explanation.
        reason: String,
    },
}

impl ErrorCode for StateDocError {
    fn code(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "state-too-large",
            Self::Json { .. } => "state-json",
            Self::NotObject { .. } => "state-not-object",
            Self::NoVersion => "state-no-version",
            Self::Version { .. } => "state-version",
            Self::Schema { .. } => "state-schema",
            Self::BadText { .. } => "state-text",
            Self::BadUuid { .. } => "state-uuid-invalid",
            Self::Duplicate { .. } => "state-duplicate",
            Self::BadStep { .. } => "state-step-invalid",
            Self::Encode { .. } => "state-encode-failed",
        }
    }
}

fn clip(s: &str) -> String {
    s.chars().take(64).collect()
}

fn check_text(field: &'static str, s: &str) -> Result<(), StateDocError> {
    if s.is_empty() {
        return Err(StateDocError::BadText {
            field,
            rule: "must not be empty",
        });
    }
    if s.len() > MAX_TEXT_LEN {
        return Err(StateDocError::BadText {
            field,
            rule: "longer than 4096 bytes",
        });
    }
    // Messages may span lines; nothing else below U+0020 (no terminal escapes).
    if s.chars().any(|c| c.is_control() && c != '\n') {
        return Err(StateDocError::BadText {
            field,
            rule: "holds control characters",
        });
    }
    Ok(())
}

fn check_opt(field: &'static str, s: Option<&str>) -> Result<(), StateDocError> {
    s.map_or(Ok(()), |s| check_text(field, s))
}

fn check_error(field: &'static str, e: Option<&LastError>) -> Result<(), StateDocError> {
    if let Some(e) = e {
        check_text(field, &e.code)?;
        check_text(field, &e.message)?;
        if !is_kebab(&e.code) {
            return Err(StateDocError::BadText {
                field,
                rule: "error codes are lower-case kebab-case",
            });
        }
    }
    Ok(())
}

fn is_kebab(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && !s.starts_with('-')
        && !s.ends_with('-')
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Checks the rules serde cannot express (text, UUIDs, unique names, step names).
pub fn validate(state: &State) -> Result<(), StateDocError> {
    if state.schema_version != SCHEMA_VERSION {
        return Err(StateDocError::Version {
            found: state.schema_version,
            supported: SCHEMA_VERSION,
        });
    }
    let mut seen = std::collections::BTreeSet::new();
    for v in &state.volumes {
        check_text("volumes[].name", &v.name)?;
        if !seen.insert(v.name.as_str()) {
            return Err(StateDocError::Duplicate {
                what: "volume",
                name: clip(&v.name),
            });
        }
        if uuid::Uuid::try_parse(&v.uuid).is_err() {
            return Err(StateDocError::BadUuid {
                volume: clip(&v.name),
                found: clip(&v.uuid),
            });
        }
        if let Some(step) = v.timings_ms.keys().find(|k| !is_kebab(k)) {
            return Err(StateDocError::BadStep {
                volume: clip(&v.name),
                found: clip(step),
            });
        }
        check_error("volumes[].last_error", v.last_error.as_ref())?;
        check_opt("volumes[].maa_request_id", v.maa_request_id.as_deref())?;
        check_opt("volumes[].akv_request_id", v.akv_request_id.as_deref())?;
    }
    if let Some(a) = &state.attestation {
        check_text("attestation.provider", &a.provider)?;
        check_text("attestation.source", &a.source)?;
        check_opt("attestation.maa_request_id", a.maa_request_id.as_deref())?;
        check_error("attestation.last_error", a.last_error.as_ref())?;
    }
    let mut seen = std::collections::BTreeSet::new();
    for k in &state.keys {
        check_text("keys[].name", &k.name)?;
        if !seen.insert(k.name.as_str()) {
            return Err(StateDocError::Duplicate {
                what: "key",
                name: clip(&k.name),
            });
        }
        check_text("keys[].url", &k.url)?;
        check_opt("keys[].version", k.version.as_deref())?;
        check_opt("keys[].akv_request_id", k.akv_request_id.as_deref())?;
        check_error("keys[].last_error", k.last_error.as_ref())?;
    }
    Ok(())
}

/// Parses and validates a state document.
pub fn parse(bytes: &[u8]) -> Result<State, StateDocError> {
    if bytes.len() > MAX_STATE_LEN {
        return Err(StateDocError::TooLarge {
            found: bytes.len(),
            max: MAX_STATE_LEN,
        });
    }
    let value = crate::format::json::parse_strict(bytes)
        .map_err(|reason| StateDocError::Json { reason })?;
    let Value::Object(obj) = &value else {
        return Err(StateDocError::NotObject {
            found: crate::format::json::type_name(&value),
        });
    };
    // The version first: a document from another schema gets that error, not a member error.
    let version = obj
        .get("schema_version")
        .and_then(Value::as_u64)
        .ok_or(StateDocError::NoVersion)?;
    if version != SCHEMA_VERSION {
        return Err(StateDocError::Version {
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    let state: State = serde_json::from_value(value).map_err(|e| StateDocError::Schema {
        reason: e.to_string(),
    })?;
    validate(&state)?;
    Ok(state)
}

/// Encodes a document (pretty JSON, trailing newline) after checking it with [`validate`].
pub fn encode(state: &State) -> Result<Vec<u8>, StateDocError> {
    validate(state)?;
    let mut out = serde_json::to_vec_pretty(state).map_err(|e| StateDocError::Encode {
        reason: e.to_string(),
    })?;
    out.push(b'\n');
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Hand-written per the shape in the module docs (not produced by `encode`).
    const SAMPLE: &str = r#"{
      "schema_version": 1, "writer": "initrd", "updated_at": 1732395600, "finished_at": null,
      "volumes": [{"name": "data", "uuid": "0b5d1c2e-8d1f-4b7a-9d0e-5c1f2a3b4c5d",
        "stage": "waiting-network", "attempts": 2, "timings_ms": {"attest": 412, "total": 900},
        "last_error": {"code": "net-timeout", "message": "IMDS did not answer"},
        "updated_at": 1732395601}],
      "attestation": {"provider": "https://x.weu.attest.azure.net/", "source": "vtpm",
        "last_success": null, "token_expiry": null, "maa_request_id": null, "last_error": null},
      "keys": [{"name": "disk", "url": "https://contoso.vault.azure.net/keys/disk",
        "version": null, "cached": false, "akv_request_id": null, "released_at": null,
        "last_error": null}]
    }"#;

    #[test]
    fn parses_the_documented_shape() {
        let s = parse(SAMPLE.as_bytes()).unwrap();
        assert_eq!(s.writer, Writer::Initrd);
        assert_eq!(s.finished_at, None);
        assert_eq!(s.volumes[0].stage, Stage::WaitingNetwork);
        assert_eq!(s.volumes[0].attempts, 2);
        assert_eq!(s.volumes[0].timings_ms.get("attest"), Some(&412));
        assert_eq!(
            s.volumes[0].last_error.as_ref().unwrap().code,
            "net-timeout"
        );
        assert_eq!(s.keys[0].name, "disk");
        // A volume still waiting (even with a last error) is not a failure yet.
        assert!(!s.has_failure());
        assert!(!s.volumes[0].stage.is_final());
    }

    #[test]
    fn stopped_at_is_optional_and_left_out_when_null() {
        let s = parse(SAMPLE.as_bytes()).unwrap();
        assert_eq!(s.stopped_at, None);
        let text = String::from_utf8(encode(&s).unwrap()).unwrap();
        assert!(!text.contains("stopped_at"), "{text}");
        let stopped = parse(&with(|v| v["stopped_at"] = 1732399999.into())).unwrap();
        assert_eq!(stopped.stopped_at, Some(1_732_399_999));
        assert_eq!(parse(&encode(&stopped).unwrap()).unwrap(), stopped);
        assert_eq!(
            parse(&with(|v| v["stopped_at"] = "soon".into()))
                .unwrap_err()
                .code(),
            "state-schema"
        );
    }

    #[test]
    fn volume_request_ids_are_optional() {
        let s = parse(SAMPLE.as_bytes()).unwrap();
        assert_eq!(s.volumes[0].maa_request_id, None);
        let encoded: Value = serde_json::from_slice(&encode(&s).unwrap()).unwrap();
        let volume = encoded["volumes"][0].as_object().unwrap();
        assert!(!volume.contains_key("maa_request_id") && !volume.contains_key("akv_request_id"));
        let v = parse(&with(|v| {
            v["volumes"][0]["maa_request_id"] = "m-1".into();
            v["volumes"][0]["akv_request_id"] = "a-1".into();
        }))
        .unwrap();
        assert_eq!(v.volumes[0].maa_request_id.as_deref(), Some("m-1"));
        assert_eq!(v.volumes[0].akv_request_id.as_deref(), Some("a-1"));
        assert_eq!(parse(&encode(&v).unwrap()).unwrap(), v);
        assert_eq!(
            parse(&with(|v| v["volumes"][0]["akv_request_id"] = "".into()))
                .unwrap_err()
                .code(),
            "state-text"
        );
    }

    #[test]
    fn advice_is_the_part_after_the_last_semicolon() {
        let e = |m: &str| LastError {
            code: "x-y".into(),
            message: m.into(),
        };
        let m = e("key-release failed after 5 attempt(s): HTTP 503; check the network, or raise network.retries");
        assert_eq!(
            m.advice(),
            (
                "key-release failed after 5 attempt(s): HTTP 503",
                Some("check the network, or raise network.retries")
            )
        );
        // A daemon error wraps a message and its code.
        let m = e("releasing key \"a\" failed: HTTP 403; check the key's release policy (release-forbidden)");
        assert_eq!(m.advice().1, Some("check the key's release policy"));
        let m = e("the release policy was not met");
        assert_eq!(m.advice(), ("the release policy was not met", None));
        // A parenthesis that is not a code stays.
        let m = e("x; rebuild the initramfs (dracut -f)");
        assert_eq!(m.advice().1, Some("rebuild the initramfs (dracut -f)"));
    }

    #[test]
    fn an_expired_token_is_unhealthy_only_while_a_daemon_should_renew_it() {
        let mut s = parse(SAMPLE.as_bytes()).unwrap();
        s.attestation.as_mut().unwrap().token_expiry = Some(1000);
        // Written by the initramfs: its token may expire.
        assert_eq!(s.unrenewed_token(2000), None);
        assert!(s.is_healthy(2000));
        s.writer = Writer::Daemon;
        assert_eq!(s.unrenewed_token(999), None);
        assert_eq!(s.unrenewed_token(2000), Some(1000));
        assert!(!s.is_healthy(2000));
        // A daemon that said it stopped renews nothing, and says so.
        s.stopped_at = Some(1500);
        assert_eq!(s.unrenewed_token(2000), None);
    }

    #[test]
    fn round_trips() {
        let s = parse(SAMPLE.as_bytes()).unwrap();
        let bytes = encode(&s).unwrap();
        assert_eq!(bytes.last(), Some(&b'\n'));
        assert_eq!(parse(&bytes).unwrap(), s);
    }

    #[test]
    fn stage_names_match_serde() {
        for st in Stage::ALL {
            assert_eq!(
                serde_json::to_value(st).unwrap(),
                Value::String(st.as_str().into())
            );
        }
    }

    fn with(f: impl FnOnce(&mut Value)) -> Vec<u8> {
        let mut v: Value = serde_json::from_str(SAMPLE).unwrap();
        f(&mut v);
        serde_json::to_vec(&v).unwrap()
    }

    #[test]
    fn refuses_specifically() {
        let code = |b: &[u8]| parse(b).unwrap_err().code();
        assert_eq!(code(b"[1]"), "state-not-object");
        assert_eq!(code(b"{\"schema_version\":1,"), "state-json");
        assert_eq!(
            code(br#"{"schema_version":1,"schema_version":1}"#),
            "state-json"
        );
        assert_eq!(code(b"{}"), "state-no-version");
        assert_eq!(
            parse(&with(|v| v["schema_version"] = 2.into())).unwrap_err(),
            StateDocError::Version {
                found: 2,
                supported: 1
            }
        );
        let e = parse(&with(|v| v["volumes"][0]["extra"] = 1.into())).unwrap_err();
        assert_eq!(e.code(), "state-schema");
        assert!(e.to_string().contains("extra"), "{e}");
        let e = parse(&with(|v| v["volumes"][0]["stage"] = "done".into())).unwrap_err();
        assert!(e.to_string().contains("done"), "{e}");
        let e = parse(&with(|v| {
            v["keys"][0].as_object_mut().unwrap().remove("cached");
        }))
        .unwrap_err();
        assert!(e.to_string().contains("cached"), "{e}");
        assert_eq!(
            code(&with(|v| v["volumes"][0]["uuid"] = "nope".into())),
            "state-uuid-invalid"
        );
        assert_eq!(
            code(&with(|v| v["volumes"][0]["name"] = "a\u{1b}[31m".into())),
            "state-text"
        );
        assert_eq!(
            code(&with(
                |v| v["volumes"][0]["timings_ms"]["Bad Step"] = 1.into()
            )),
            "state-step-invalid"
        );
        assert_eq!(
            code(&with(|v| {
                let k = v["keys"][0].clone();
                v["keys"].as_array_mut().unwrap().push(k);
            })),
            "state-duplicate"
        );
        assert_eq!(code(&vec![b' '; MAX_STATE_LEN + 1]), "state-too-large");
    }

    #[test]
    fn helpers_add_and_find() {
        let mut s = State::new(Writer::Daemon, 5);
        s.volume_mut("data", "0b5d1c2e-8d1f-4b7a-9d0e-5c1f2a3b4c5d", 5)
            .stage = Stage::Failed;
        s.volume_mut("data", "ignored", 6).attempts = 3;
        assert_eq!(s.volumes.len(), 1);
        assert_eq!(s.volume("data").unwrap().attempts, 3);
        assert!(s.has_failure());
        s.key_mut("disk", "https://v/keys/disk").cached = true;
        assert!(s.key("disk").unwrap().cached);
        assert!(parse(&encode(&s).unwrap()).is_ok());
    }
}
