//! Documentation cannot drift from the code: every stable error code the source can produce is
//! listed in docs/errors*.md, and every skrctl subcommand has a section in the man page.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// A kebab-case code: lower-case words joined by single dashes, at least two words.
fn is_code(s: &str) -> bool {
    s.contains('-')
        && s.split('-').all(|w| {
            !w.is_empty()
                && w.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        })
}

/// String literals inside `fn code(&self)` bodies and first arguments of `Problem::new(`.
fn codes_in(source: &str) -> BTreeSet<String> {
    let mut codes = BTreeSet::new();
    let lines: Vec<&str> = source.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if line.trim_start().starts_with("fn code(&self)")
            || line.trim_start().starts_with("pub fn code(&self)")
        {
            let indent = line.len() - line.trim_start().len();
            let close = format!("{}}}", " ".repeat(indent));
            i += 1;
            while i < lines.len() && lines[i] != close {
                codes.extend(literals(lines[i]));
                i += 1;
            }
        }
        i += 1;
    }
    let mut rest = source;
    while let Some(at) = rest.find("Problem::new(") {
        rest = &rest[at + "Problem::new(".len()..];
        if let Some(lit) = literals(rest.trim_start()).into_iter().next() {
            if rest.trim_start().starts_with('"') {
                codes.insert(lit);
            }
        }
    }
    codes
}

fn literals(text: &str) -> Vec<String> {
    text.split('"')
        .skip(1)
        .step_by(2)
        .filter(|s| is_code(s))
        .map(str::to_string)
        .collect()
}

#[test]
fn every_error_code_is_documented() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    let mut codes = BTreeSet::new();
    for f in &files {
        codes.extend(codes_in(&std::fs::read_to_string(f).unwrap()));
    }
    assert!(codes.len() > 150, "the scan found too few codes: {codes:?}");
    let mut docs = String::new();
    for entry in std::fs::read_dir(root.join("docs")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("errors") && name.ends_with(".md") {
            docs.push_str(&std::fs::read_to_string(&path).unwrap());
        }
    }
    let missing: Vec<&String> = codes
        .iter()
        .filter(|c| !docs.contains(&format!("`{c}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "codes missing from docs/errors*.md: {missing:?}"
    );
}

#[test]
fn the_scan_sees_a_known_code_of_each_kind() {
    // Guards the scanner itself: one code from a `fn code` body, one from `Problem::new`.
    let src = "impl X {\n    fn code(&self) -> &'static str {\n        match self {\n            Self::A => \"report-truncated\",\n        }\n    }\n}\nfn f() { Problem::new(\"vcek-missing\", \"x\"); }\n";
    let codes = codes_in(src);
    assert!(
        codes.contains("report-truncated") && codes.contains("vcek-missing"),
        "{codes:?}"
    );
}

#[test]
fn every_skrctl_subcommand_has_a_man_page_section() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let man = std::fs::read_to_string(root.join("docs/man/skrctl.1")).unwrap();
    for sub in [
        "evidence verify",
        "evidence collect",
        "config check",
        "config show",
        "policy check",
        "token verify",
        "release verify",
        "volumes",
        "enroll",
        "unenroll",
        "reenroll",
        "unlock",
        "attest",
        "release",
    ] {
        assert!(
            man.contains(&format!(".SS \"{sub}")),
            "docs/man/skrctl.1 lacks `{sub}`"
        );
    }
    // And every command skrctl itself lists, so a new one cannot ship without its section.
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_skrctl"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    let commands: Vec<&str> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert!(commands.len() >= 10, "skrctl --help lists {commands:?}");
    for sub in commands {
        assert!(
            man.contains(&format!(".SS \"{sub}")),
            "docs/man/skrctl.1 lacks a section for `skrctl {sub}`"
        );
    }
}

/// `skr-emulator --help` (or `skr-emulator SUB --help`): the names listed under `Commands:` and
/// the long options listed under `Options:`.
fn emulator_help(args: &[&str]) -> (Vec<String>, Vec<String>) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_skr-emulator"))
        .args(args)
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success(), "skr-emulator {args:?} --help failed");
    let help = String::from_utf8(out.stdout).unwrap();
    let section = |title: &str| -> Vec<String> {
        help.lines()
            .skip_while(|l| !l.starts_with(title))
            .skip(1)
            .take_while(|l| l.is_empty() || l.starts_with(' '))
            .map(str::to_string)
            .collect()
    };
    // Entries start at column 2 (commands) or with a dash (options); long help puts the
    // descriptions on indented lines of their own.
    let commands = section("Commands:")
        .iter()
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|c| c != "help")
        .collect();
    let options = section("Options:")
        .iter()
        .filter(|l| l.trim_start().starts_with('-'))
        .filter_map(|l| {
            l.split_whitespace()
                .find(|w| w.starts_with("--"))
                .map(|w| w.trim_end_matches(',').to_string())
        })
        .filter(|o| o != "--help" && o != "--version")
        .collect();
    (commands, options)
}

#[test]
fn every_skr_emulator_command_and_option_is_in_its_man_page() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // troff escapes dashes; compare on the text as printed.
    let man = std::fs::read_to_string(root.join("docs/man/skr-emulator.1"))
        .unwrap()
        .replace("\\-", "-");
    let (commands, _) = emulator_help(&[]);
    assert!(
        commands.len() >= 4 && commands.iter().any(|c| c == "serve"),
        "skr-emulator --help lists {commands:?}"
    );
    for sub in &commands {
        assert!(
            man.contains(&format!(".B skr-emulator {sub}\n")),
            "the SYNOPSIS of docs/man/skr-emulator.1 lacks `skr-emulator {sub}`"
        );
        assert!(
            man.contains(&format!(".TP\n.B {sub}\n")),
            "COMMANDS in docs/man/skr-emulator.1 lacks `{sub}`"
        );
        let (_, options) = emulator_help(&[sub]);
        assert!(
            !options.is_empty(),
            "skr-emulator {sub} --help lists no options"
        );
        for opt in options {
            assert!(
                man.contains(&opt),
                "docs/man/skr-emulator.1 does not document `skr-emulator {sub} {opt}`"
            );
        }
    }
    // Every serve option is in the SYNOPSIS too.
    let synopsis = man
        .split(".SH SYNOPSIS")
        .nth(1)
        .and_then(|t| t.split(".B skr-emulator provision-tpm").next())
        .unwrap();
    let serve_options = emulator_help(&["serve"]).1;
    assert!(
        serve_options.len() >= 12,
        "serve --help lists {serve_options:?}"
    );
    for opt in serve_options {
        assert!(
            synopsis.contains(&opt),
            "the serve SYNOPSIS of docs/man/skr-emulator.1 lacks `{opt}`"
        );
    }
}
