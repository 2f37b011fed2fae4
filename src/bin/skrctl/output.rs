//! Output conventions shared by every subcommand: exit statuses, `--json` errors, human errors.

use skrd::error::Problem;
use std::process::ExitCode;

/// Exit statuses of every skrctl command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Status {
    /// Verified, allowed or done.
    Ok = 0,
    /// Input was read and checked, and the check refused it.
    Refused = 1,
    /// Unusable input or usage.
    Unusable = 2,
}

/// Prints one JSON object on stdout.
pub fn print_json(value: &serde_json::Value) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => print_text(&format!("{text}\n")),
        Err(e) => eprintln!("error: cannot encode output: {e}"),
    }
}

/// Writes text to stdout. A closed pipe (`skrctl ... | head`) is not an error worth a panic,
/// which `print!` would raise; the exit status still reports the verdict.
pub fn print_text(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

/// Reports a problem that made the input unusable, as JSON or as text, and returns `Unusable`.
pub fn unusable(problem: &Problem, json: bool) -> Status {
    if json {
        print_json(&serde_json::json!({ "error": problem }));
    } else {
        eprintln!("error: {}\n  code: {}", problem.message, problem.code);
    }
    Status::Unusable
}

/// clap's usage errors: help and version go to stdout with status 0, the rest exit 2.
pub fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    let _ = e.print();
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => ExitCode::SUCCESS,
        _ => ExitCode::from(Status::Unusable as u8),
    }
}
