//! `skrctl config check | show` (owner: config): load the configuration exactly as skrd does
//! and report every problem, or print the merged result with the file each value came from.
//!
//! Exit status: 0 valid, 1 problems found (including a missing or unreadable file), 2 usage.

use crate::output::{print_json, Status};
use clap::Subcommand;
use serde_json::{json, Map, Value};
use skrd::config::{self, ConfigErrors, Settings};
use std::path::{Path, PathBuf};

/// Configuration subcommands.
#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Check the configuration and report every problem (file, line, key, how to fix it).
    Check {
        /// Print one JSON object: {"valid", "files", "errors": [{"code", "message", "file",
        /// "line", "column", "key"}]}.
        #[arg(long)]
        json: bool,
    },
    /// Print the merged, validated configuration and where each value came from.
    Show {
        /// Print one JSON object: {"files", "settings": {KEY: {"value", "file", "line", "column"}}}.
        #[arg(long)]
        json: bool,
    },
}

/// Runs a config subcommand.
pub fn run(cmd: ConfigCommand, config: Option<&Path>) -> Status {
    let loaded = config::load(config);
    match cmd {
        ConfigCommand::Check { json } => check(&loaded, json),
        ConfigCommand::Show { json } => show(&loaded, json),
    }
}

fn files_json(files: &[PathBuf]) -> Value {
    json!(files
        .iter()
        .map(|f| f.display().to_string())
        .collect::<Vec<_>>())
}

fn files_text(files: &[PathBuf]) -> String {
    if files.is_empty() {
        "none (no configuration: built-in defaults, nothing to unlock)".to_string()
    } else {
        files
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn report_problems(errors: &ConfigErrors, json: bool) -> Status {
    if json {
        print_json(&json!({
            "valid": false,
            "files": files_json(&errors.files),
            "errors": errors.problems.iter().map(|p| p.to_json()).collect::<Vec<_>>(),
        }));
    } else {
        for p in &errors.problems {
            eprintln!("error: {p}");
        }
        let n = errors.problems.len();
        eprintln!(
            "{n} problem{} found; files read: {}",
            if n == 1 { "" } else { "s" },
            files_text(&errors.files)
        );
    }
    Status::Refused
}

fn names<T>(map: &std::collections::BTreeMap<String, T>) -> String {
    if map.is_empty() {
        "none".to_string()
    } else {
        map.keys().cloned().collect::<Vec<_>>().join(", ")
    }
}

fn check(loaded: &Result<Settings, ConfigErrors>, json: bool) -> Status {
    match loaded {
        Err(errors) => report_problems(errors, json),
        Ok(settings) => {
            let files = &settings.sources.files;
            if json {
                print_json(&json!({
                    "valid": true,
                    "files": files_json(files),
                    "errors": [],
                }));
            } else {
                println!("configuration is valid");
                println!("  files read: {}", files_text(files));
                println!(
                    "  keys ({}): {}",
                    settings.keys.len(),
                    names(&settings.keys)
                );
                println!(
                    "  volumes ({}): {}",
                    settings.volumes.len(),
                    names(&settings.volumes)
                );
            }
            warn_test_roots(settings);
            Status::Ok
        }
    }
}

/// `trust.amd_test_roots` is valid but must never reach production: say so on every check.
fn warn_test_roots(settings: &Settings) {
    if !settings.trust.amd_test_roots.is_empty() {
        let at = settings
            .sources
            .origin("trust.amd_test_roots")
            .map_or_else(String::new, |o| format!(" (set at {o})"));
        eprintln!(
            "warning: trust.amd_test_roots{at} makes skrd trust non-AMD roots for SEV-SNP \
             evidence; this is for tests only, remove it on any real machine"
        );
    }
}

fn show(loaded: &Result<Settings, ConfigErrors>, json: bool) -> Status {
    let settings = match loaded {
        Err(errors) => return report_problems(errors, json),
        Ok(s) => s,
    };
    let effective = settings.effective();
    if json {
        let mut map = Map::new();
        for e in effective {
            let (file, line, column) = match &e.origin {
                Some(o) => (
                    json!(o.file.display().to_string()),
                    json!(o.line),
                    json!(o.column),
                ),
                None => (Value::Null, Value::Null, Value::Null),
            };
            map.insert(
                e.key,
                json!({ "value": e.value, "file": file, "line": line, "column": column }),
            );
        }
        print_json(&json!({
            "files": files_json(&settings.sources.files),
            "settings": map,
        }));
    } else {
        println!("# files read: {}", files_text(&settings.sources.files));
        let lines: Vec<(String, String)> = effective
            .iter()
            .map(|e| {
                let source = e
                    .origin
                    .as_ref()
                    .map_or_else(|| "default".to_string(), ToString::to_string);
                (format!("{} = {}", e.key, e.value), source)
            })
            .collect();
        let width = lines.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
        for (line, source) in lines {
            println!("{line:<width$}  # {source}");
        }
    }
    Status::Ok
}
