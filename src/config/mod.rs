//! Configuration: `/etc/skrd/skrd.toml` and its drop-ins → validated [`Settings`].
//!
//! Three steps, after zincati's `src/config/` (STYLE.md §3):
//! 1. [`fragments`]: each file's TOML → a fragment of optional, type-checked values, each with
//!    its file, line and column; unknown keys are errors (with a suggestion).
//! 2. [`validate::merge`]: fragments in order (main file, then drop-ins lexically), later wins
//!    per key; tables merge deeply, `[keys.NAME]` and `[volumes.NAME]` key by key.
//! 3. [`validate::validate`]: merged values → [`Settings`] whose types cannot hold an invalid
//!    value (`Url`, enums, `Uuid`, `Duration`, parsed key URLs), or every problem found.
//!
//! [`mod@load`] is the I/O edge (reads files, checks trust files); everything else is pure.
//! Environment variables never change key or policy settings: only `--config` selects files.
//! The key list is [`schema`]; the commented reference is `config/skrd.toml`; error codes are in
//! `docs/errors-config.md`. No PROTOCOLS.md section: this module implements no wire format, but
//! its defaults (api-versions, `enc`) follow PROTOCOLS.md §5 and §6.

pub mod error;
pub mod fragments;
pub mod load;
pub mod schema;
pub mod settings;
pub mod validate;
pub mod values;

pub use error::{ConfigError, ConfigErrors, ConfigProblem, Origin};
pub use load::{dropin_dir_for, load, load_from, DEFAULT_PATH};
pub use settings::*;
pub use values::{IdentityResourceId, KeyUrl, Principal, VaultKind};

use std::path::Path;

/// Pure entry point for fuzzing: parses `data` as one configuration file and validates it.
/// Must return, never panic, for any input (the cargo-fuzz target calls exactly this).
pub fn fuzz_config_parse(data: &[u8]) -> Result<Settings, ConfigErrors> {
    let file = Path::new("fuzz.toml");
    let (fragment, mut problems) = fragments::parse_bytes(file, data);
    let merged = validate::merge([fragment]);
    match validate::validate(&merged) {
        Ok(settings) if problems.is_empty() => Ok(settings),
        Ok(_) => Err(ConfigErrors {
            problems,
            files: merged.files,
        }),
        Err(mut p) => {
            problems.append(&mut p);
            Err(ConfigErrors {
                problems,
                files: merged.files,
            })
        }
    }
}
