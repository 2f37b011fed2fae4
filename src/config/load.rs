//! The I/O edge of the configuration: finds and reads the main file and its drop-ins, checks
//! that trust files named in `[trust]` are readable PEM certificates, and hands the text to the
//! pure steps (`fragments` → `validate`).
//!
//! File rules (also in `config/skrd.toml` and `skrd.toml(5)`):
//! - Main file `/etc/skrd/skrd.toml`, or `--config FILE`.
//! - Drop-ins: `<main>.d/*.toml` (so `/etc/skrd/skrd.toml.d/`, or `FILE.d/` next to `--config
//!   FILE`), in byte-wise lexical order of their names, after the main file; later wins per key.
//!   Names starting with `.` and names not ending in `.toml` (`x.toml.rpmsave`, `x.toml~`) are
//!   ignored. A missing drop-in directory is fine.
//! - Without `--config`, a missing main file is not an error: the drop-ins alone, or nothing, are
//!   the configuration ("no configuration" = built-in defaults and no keys or volumes, so skrd
//!   has nothing to unlock). With `--config`, a missing main file is an error.
//! - No environment variable selects or changes configuration files.

use super::error::{ConfigError, ConfigErrors, ConfigProblem};
use super::fragments::{self, Entry, RawValue};
use super::settings::Settings;
use super::validate::{self, Merged};
use std::io::Read;
use std::path::{Path, PathBuf};

/// The main configuration file when `--config` is not given.
pub const DEFAULT_PATH: &str = "/etc/skrd/skrd.toml";

/// Largest configuration or trust file read (a configuration is a few kilobytes).
const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// The drop-in directory that belongs to a main file: `FILE.d`.
pub fn dropin_dir_for(main: &Path) -> PathBuf {
    let mut s = main.as_os_str().to_os_string();
    s.push(".d");
    PathBuf::from(s)
}

/// Loads the configuration the way every binary does: `explicit` is the `--config` value.
///
/// Without it, `/etc/skrd/skrd.toml` (may be absent) and `/etc/skrd/skrd.toml.d/*.toml`; with it,
/// `FILE` (must exist) and `FILE.d/*.toml`.
pub fn load(explicit: Option<&Path>) -> Result<Settings, ConfigErrors> {
    match explicit {
        Some(main) => load_files(main, true, Some(&dropin_dir_for(main))),
        None => {
            let main = Path::new(DEFAULT_PATH);
            load_files(main, false, Some(&dropin_dir_for(main)))
        }
    }
}

/// Loads `main` (which must exist) and, when given, the `*.toml` files of `dropin_dir`.
pub fn load_from(main: &Path, dropin_dir: Option<&Path>) -> Result<Settings, ConfigErrors> {
    load_files(main, true, dropin_dir)
}

fn load_files(
    main: &Path,
    main_required: bool,
    dropin_dir: Option<&Path>,
) -> Result<Settings, ConfigErrors> {
    let mut problems = Vec::new();
    let mut files = Vec::new();
    let mut frags = Vec::new();

    let mut read_one =
        |path: &Path, required: bool, problems: &mut Vec<ConfigProblem>| match read_file(path) {
            Ok(bytes) => {
                files.push(path.to_path_buf());
                let (frag, mut p) = fragments::parse_bytes(path, &bytes);
                problems.append(&mut p);
                frags.push(frag);
            }
            Err(ReadError::NotFound) if !required => {}
            Err(ReadError::NotFound) => {
                files.push(path.to_path_buf());
                problems.push(ConfigProblem::in_file(ConfigError::Missing, path));
            }
            Err(ReadError::Other(error)) => {
                files.push(path.to_path_buf());
                problems.push(ConfigProblem::in_file(error, path));
            }
        };

    read_one(main, main_required, &mut problems);
    if let Some(dir) = dropin_dir {
        match list_dropins(dir) {
            Ok(paths) => {
                for path in paths {
                    read_one(&path, true, &mut problems);
                }
            }
            Err(error) => problems.push(ConfigProblem::in_file(error, dir)),
        }
    }

    let merged = validate::merge(frags);
    problems.extend(check_trust_files(&merged));
    // A file that could not be read or parsed at all contributes nothing, so checks across
    // files (undefined keys, required keys, duplicate UUIDs) would report ghosts: fix the file
    // first. Problems inside readable files are all reported regardless.
    let whole_file_lost = problems.iter().any(|p| {
        matches!(
            p.error,
            ConfigError::Missing
                | ConfigError::Unreadable { .. }
                | ConfigError::NotAFile
                | ConfigError::NotUtf8 { .. }
                | ConfigError::Syntax { .. }
        )
    });
    if whole_file_lost {
        return Err(sorted(problems, files));
    }
    match validate::validate(&merged) {
        Ok(settings) if problems.is_empty() => Ok(settings),
        Ok(_) => Err(sorted(problems, files)),
        Err(mut p) => {
            problems.append(&mut p);
            Err(sorted(problems, files))
        }
    }
}

/// Orders problems as an operator reads the files: by file (merge order), line, column;
/// problems without a file (a required key nobody set) last. The sort is stable.
fn sorted(mut problems: Vec<ConfigProblem>, files: Vec<PathBuf>) -> ConfigErrors {
    problems.sort_by_key(|p| {
        let file_index = p
            .file
            .as_ref()
            .and_then(|f| files.iter().position(|x| x == f))
            .unwrap_or(usize::MAX);
        (file_index, p.line.unwrap_or(0), p.column.unwrap_or(0))
    });
    ConfigErrors { problems, files }
}

enum ReadError {
    NotFound,
    Other(ConfigError),
}

fn unreadable(e: &std::io::Error) -> ConfigError {
    ConfigError::Unreadable {
        reason: e.to_string(),
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>, ReadError> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(ReadError::NotFound),
        Err(e) => return Err(ReadError::Other(unreadable(&e))),
    };
    if !meta.is_file() {
        return Err(ReadError::Other(ConfigError::NotAFile));
    }
    let file = std::fs::File::open(path).map_err(|e| ReadError::Other(unreadable(&e)))?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| ReadError::Other(unreadable(&e)))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(ReadError::Other(ConfigError::Unreadable {
            reason: "it is larger than 1 MiB".to_string(),
        }));
    }
    Ok(bytes)
}

/// The drop-ins of `dir`, sorted; a missing directory has none.
fn list_dropins(dir: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(unreadable(&e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| unreadable(&e))?;
        let name = entry.file_name();
        let bytes = name.as_encoded_bytes();
        if bytes.starts_with(b".") || !bytes.ends_with(b".toml") {
            continue;
        }
        names.push(name);
    }
    names.sort_by(|a, b| a.as_encoded_bytes().cmp(b.as_encoded_bytes()));
    Ok(names.into_iter().map(|n| dir.join(n)).collect())
}

/// Every `[trust]` file must be a readable file with at least one PEM certificate.
fn check_trust_files(merged: &Merged) -> Vec<ConfigProblem> {
    let mut problems = Vec::new();
    for leaf in ["ca_files", "amd_test_roots"] {
        let path = vec!["trust".to_string(), leaf.to_string()];
        let Some(Entry {
            value: RawValue::StrList(list),
            origin,
        }) = merged.entries.get(&path)
        else {
            continue;
        };
        for file in list.iter().filter(|f| f.starts_with('/')) {
            let reason = match read_file(Path::new(file)) {
                Err(ReadError::NotFound) => Some("it does not exist".to_string()),
                Err(ReadError::Other(e)) => Some(match e {
                    ConfigError::Unreadable { reason } => reason,
                    other => other.to_string(),
                }),
                Ok(bytes) if !contains(&bytes, b"-----BEGIN CERTIFICATE-----") => {
                    Some("it holds no PEM certificate".to_string())
                }
                Ok(_) => None,
            };
            if let Some(reason) = reason {
                let error = ConfigError::BadTrustFile {
                    path: file.clone(),
                    reason,
                };
                problems.push(ConfigProblem::at(
                    error,
                    origin,
                    fragments::display_path(&path),
                ));
            }
        }
    }
    problems
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
