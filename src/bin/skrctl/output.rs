//! Output conventions shared by every subcommand: exit statuses, `--json` errors, human errors.

use skrd::error::{ErrorCode, Problem};
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

/// A command line clap refused, with a stable `usage-*` code.
#[derive(Debug)]
pub struct UsageError(pub clap::Error);

impl std::fmt::Display for UsageError {
    /// clap's explanation on one line (its "error: " prefix removed), ending with what to do.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = self.0.to_string();
        let mut joined = String::new();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            if !joined.is_empty() {
                joined.push_str(if joined.ends_with(':') { " " } else { "; " });
            }
            joined.push_str(line);
        }
        f.write_str(joined.strip_prefix("error: ").unwrap_or(&joined))
    }
}

impl std::error::Error for UsageError {}

impl ErrorCode for UsageError {
    fn code(&self) -> &'static str {
        use clap::error::ErrorKind;
        match self.0.kind() {
            ErrorKind::UnknownArgument => "usage-unknown-argument",
            ErrorKind::InvalidSubcommand => "usage-unknown-subcommand",
            ErrorKind::MissingRequiredArgument => "usage-missing-argument",
            ErrorKind::MissingSubcommand | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                "usage-missing-subcommand"
            }
            ErrorKind::ArgumentConflict => "usage-argument-conflict",
            ErrorKind::TooManyValues | ErrorKind::TooFewValues | ErrorKind::WrongNumberOfValues => {
                "usage-value-count"
            }
            ErrorKind::InvalidValue
            | ErrorKind::ValueValidation
            | ErrorKind::NoEquals
            | ErrorKind::InvalidUtf8 => "usage-invalid-value",
            _ => "usage-invalid",
        }
    }
}

/// clap's usage errors: help and version go to stdout with status 0, the rest exit 2. With
/// `json` (`--json` anywhere on the command line, even where clap did not expect it), a usage
/// error prints exactly one JSON object `{"error": {"code": "usage-...", "message"}}` on stdout
/// and nothing on stderr.
pub fn usage_error(e: clap::Error, json: bool) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            ExitCode::SUCCESS
        }
        _ if json => {
            print_json(&serde_json::json!({ "error": UsageError(e).problem() }));
            ExitCode::from(Status::Unusable as u8)
        }
        _ => {
            let _ = e.print();
            ExitCode::from(Status::Unusable as u8)
        }
    }
}

/// Largest input file any command reads (evidence, certificates, tokens, policies, responses):
/// far above every real artifact, small enough that a wrong path (a disk image, /dev/zero)
/// fails fast instead of filling memory.
pub const MAX_INPUT_FILE: u64 = 16 << 20;

/// Reads an input file whole, or says which one could not be read and why (`file-unreadable`,
/// `file-too-large`). `what` names it for the operator ("evidence", "certificate", ...).
pub fn read_input(path: &std::path::Path, what: &str) -> Result<Vec<u8>, Problem> {
    use std::io::Read;
    let unreadable = |e: std::io::Error| {
        Problem::new(
            "file-unreadable",
            format!("cannot read the {what} file {}: {e}", path.display()),
        )
    };
    let file = std::fs::File::open(path).map_err(unreadable)?;
    let mut data = Vec::new();
    file.take(MAX_INPUT_FILE + 1)
        .read_to_end(&mut data)
        .map_err(unreadable)?;
    if data.len() as u64 > MAX_INPUT_FILE {
        return Err(Problem::new(
            "file-too-large",
            format!(
                "the {what} file {} is larger than {MAX_INPUT_FILE} bytes; check the path",
                path.display()
            ),
        ));
    }
    Ok(data)
}

/// The evaluation time: `--at` (RFC 3339) or the system clock, as Unix seconds. The clock is
/// read here, in the binary, and passed into the pure checks.
pub fn parse_at(at: Option<&str>) -> Result<i64, Problem> {
    use time::format_description::well_known::Rfc3339;
    match at {
        None => Ok(time::OffsetDateTime::now_utc().unix_timestamp()),
        Some(text) => time::OffsetDateTime::parse(text, &Rfc3339)
            .map(time::OffsetDateTime::unix_timestamp)
            .map_err(|e| {
                Problem::new(
                    "invalid-argument",
                    format!(
                        "--at {text:?} is not an RFC 3339 time ({e}); write e.g. \
                         2024-12-20T18:30:00Z"
                    ),
                )
            }),
    }
}

/// Unix seconds as an RFC 3339 JSON string (the number itself when out of range).
pub fn rfc3339(secs: i64) -> serde_json::Value {
    use time::format_description::well_known::Rfc3339;
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .map_or_else(|| serde_json::json!(secs), serde_json::Value::String)
}
