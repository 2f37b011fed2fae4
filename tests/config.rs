//! Configuration: the real `skrctl config check | show` and `skrd --config` on files in
//! tempdirs (errors with exact lines, drop-in order, --config, JSON schema), the reference
//! `config/skrd.toml` against the parser, and a no-panic property over mutated inputs.
//!
//! Expected line numbers come from the fixtures as written (`grep -n` on
//! tests/fixtures/config/errors.toml), never from skrctl's own output.

// Tests may unwrap and panic (Cargo.toml [lints]: the deny is for non-test code).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::Value;
use skrd::config::{self, fragments, schema, validate};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const SKRCTL: &str = env!("CARGO_BIN_EXE_skrctl");
const SKRD: &str = env!("CARGO_BIN_EXE_skrd");
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/config");
const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config/skrd.toml");

fn fixture(name: &str) -> String {
    std::fs::read_to_string(Path::new(FIXTURES).join(name)).unwrap()
}

fn skrctl(config: &Path, args: &[&str]) -> Output {
    Command::new(SKRCTL)
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .unwrap()
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON object ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// A tempdir holding `skrd.toml` (and optionally drop-ins in `skrd.toml.d/`).
struct Dir {
    dir: tempfile::TempDir,
}

impl Dir {
    fn new(main: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("skrd.toml"), main).unwrap();
        Self { dir }
    }
    fn main(&self) -> PathBuf {
        self.dir.path().join("skrd.toml")
    }
    fn dropin(&self, name: &str, text: &str) -> PathBuf {
        let d = self.dir.path().join("skrd.toml.d");
        std::fs::create_dir_all(&d).unwrap();
        let p = d.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

fn errors(v: &Value) -> Vec<(String, String, u64, u64)> {
    v["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["code"].as_str().unwrap().to_string(),
                e["key"].as_str().unwrap_or("").to_string(),
                e["line"].as_u64().unwrap_or(0),
                e["column"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

#[test]
fn every_error_in_the_fixture_is_reported_at_its_line() {
    let d = Dir::new(&fixture("errors.toml"));
    let out = skrctl(&d.main(), &["config", "check", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let v = json_of(&out);
    assert_eq!(v["valid"], Value::Bool(false));
    let e =
        |code: &str, key: &str, line: u64, col: u64| (code.to_string(), key.to_string(), line, col);
    // Lines and columns: `grep -n` of tests/fixtures/config/errors.toml; columns counted by hand
    // ("options = { " is 12 characters, so `headless` starts at 13 and `timeout` at 31).
    assert_eq!(
        errors(&v),
        vec![
            e("config-unknown-key", "evidence.sorce", 5, 1),
            e("config-wrong-type", "evidence.tcti", 6, 1),
            e("config-relative-path", "evidence.event_log", 7, 1),
            e("config-invalid-guid", "identity.object_id", 11, 1),
            e("config-identity-conflict", "identity.object_id", 11, 1),
            e("config-invalid-url", "attestation.provider", 14, 1),
            e("config-invalid-url", "keys.disk.url", 17, 1),
            e("config-invalid-choice", "keys.disk.enc", 18, 1),
            e("config-invalid-unit", "keys.disk.allow_units", 19, 1),
            e("config-undefined-key", "volumes.data.key", 26, 1),
            e("config-duplicate-uuid", "volumes.logs.uuid", 29, 1),
            e("config-wrong-type", "volumes.logs.options.headless", 31, 13),
            e(
                "config-invalid-duration",
                "volumes.logs.options.timeout",
                31,
                31
            ),
            e("config-out-of-range", "network.retries", 34, 1),
            e("config-invalid-choice", "log.level", 37, 1),
        ]
    );
    let messages: Vec<&str> = v["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert!(
        messages[0].contains("did you mean \"source\""),
        "{}",
        messages[0]
    );
    assert!(messages[4].contains("identity.client_id"));
    assert!(
        messages[4].contains(":10:1"),
        "names the other selector's line: {}",
        messages[4]
    );
    assert!(messages[9].contains("did you mean \"disk\""));
    // The duplicate names both volumes and the first one's place (line 25).
    assert!(messages[10].contains("\"data\"") && messages[10].contains("\"logs\""));
    assert!(messages[10].contains("skrd.toml:25:1"), "{}", messages[10]);
    assert!(messages[5].contains("https"));
    assert!(messages[6].contains("/keys/NAME"));
}

#[test]
fn json_schema_is_exactly_valid_files_errors() {
    let d = Dir::new(&fixture("errors.toml"));
    let v = json_of(&skrctl(&d.main(), &["config", "check", "--json"]));
    let mut top: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    top.sort_unstable();
    assert_eq!(top, ["errors", "files", "valid"]);
    assert_eq!(
        v["files"],
        serde_json::json!([d.main().display().to_string()])
    );
    for e in v["errors"].as_array().unwrap() {
        let mut keys: Vec<&str> = e.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["code", "column", "file", "key", "line", "message"]);
        assert_eq!(e["file"], Value::String(d.main().display().to_string()));
    }

    let ok = Dir::new(&fixture("valid.toml"));
    let out = skrctl(&ok.main(), &["config", "check", "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let v = json_of(&out);
    assert_eq!(v["valid"], Value::Bool(true));
    assert_eq!(v["errors"], serde_json::json!([]));
}

#[test]
fn human_check_names_file_line_key_and_summarises() {
    let d = Dir::new(&fixture("errors.toml"));
    let out = skrctl(&d.main(), &["config", "check"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let expected = format!("{}:26:1: volumes.data.key: ", d.main().display());
    assert!(err.contains(&expected), "{err}");
    assert!(err.contains("15 problems found"), "{err}");

    let ok = Dir::new(&fixture("valid.toml"));
    let out = skrctl(&ok.main(), &["config", "check"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("configuration is valid"));
    assert!(text.contains("keys (2): backup, disk"), "{text}");
    assert!(text.contains("volumes (1): data"), "{text}");
}

#[test]
fn dropins_merge_in_lexical_order_later_wins_per_key() {
    let d = Dir::new(&fixture("valid.toml"));
    // Lexical order: "10-" < "9-" (bytes '1' < '9'), so 9-late.toml is read last.
    d.dropin(
        "9-late.toml",
        "[keys.disk]\nenc = \"CKM_RSA_AES_KEY_WRAP\"\n",
    );
    d.dropin(
        "10-early.toml",
        "[keys.disk]\nenc = \"RSA_AES_KEY_WRAP_256\"\n[volumes.data.options]\nheadless = true\n",
    );
    // Ignored: not *.toml, hidden.
    d.dropin("20-x.toml.rpmsave", "this is not toml");
    d.dropin(".30-hidden.toml", "this is not toml either");
    let out = skrctl(&d.main(), &["config", "show", "--json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json_of(&out);
    let dir = d.dir.path().join("skrd.toml.d");
    assert_eq!(
        v["files"],
        serde_json::json!([
            d.main().display().to_string(),
            dir.join("10-early.toml").display().to_string(),
            dir.join("9-late.toml").display().to_string(),
        ])
    );
    let s = &v["settings"];
    assert_eq!(s["keys.disk.enc"]["value"], "CKM_RSA_AES_KEY_WRAP");
    assert_eq!(
        s["keys.disk.enc"]["file"],
        dir.join("9-late.toml").display().to_string()
    );
    assert_eq!(s["keys.disk.enc"]["line"], 2);
    // Other keys of the same named table still come from the main file (line 14).
    assert_eq!(s["keys.disk.url"]["file"], d.main().display().to_string());
    assert_eq!(s["keys.disk.url"]["line"], 14);
    assert_eq!(s["volumes.data.options.headless"]["value"], true);
    assert_eq!(s["volumes.data.options.initrd"]["value"], true);
    assert_eq!(s["volumes.data.options.initrd"]["file"], Value::Null);
    // Defaults are marked as such; values as written in the fixture.
    assert_eq!(s["log.level"]["value"], "info");
    assert_eq!(s["log.level"]["file"], Value::Null);
    assert_eq!(s["boot.deadline"]["value"], "2m");
    assert_eq!(
        s["identity.client_id"]["value"],
        "6f1c7a2e-0b5d-4c8a-9e3f-2a1b0c9d8e7f"
    );
    assert_eq!(
        s["keys.disk.allow_uids"]["value"],
        serde_json::json!([0, "backup"])
    );

    let human = skrctl(&d.main(), &["config", "show"]);
    let text = String::from_utf8_lossy(&human.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("keys.disk.enc = "))
        .unwrap();
    assert!(line.contains("\"CKM_RSA_AES_KEY_WRAP\""), "{line}");
    assert!(line.ends_with("9-late.toml:2:1"), "{line}");
}

#[test]
fn config_flag_reads_file_d_next_to_it_and_nothing_else() {
    let d = Dir::new("[log]\nlevel = \"warn\"\n");
    d.dropin("50-debug.toml", "[log]\nlevel = \"debug\"\n");
    let v = json_of(&skrctl(&d.main(), &["config", "show", "--json"]));
    assert_eq!(v["settings"]["log.level"]["value"], "debug");
    // Only the given file and its FILE.d: /etc/skrd is never consulted with --config.
    for f in v["files"].as_array().unwrap() {
        assert!(f
            .as_str()
            .unwrap()
            .starts_with(&d.dir.path().display().to_string()));
    }
    // A file with another name gets its own drop-in directory.
    let other = d.dir.path().join("other.toml");
    std::fs::write(&other, "[log]\nlevel = \"error\"\n").unwrap();
    let v = json_of(&skrctl(&other, &["config", "show", "--json"]));
    assert_eq!(v["settings"]["log.level"]["value"], "error");
    assert_eq!(v["files"].as_array().unwrap().len(), 1);
}

#[test]
fn missing_unreadable_and_broken_files() {
    let d = tempfile::tempdir().unwrap();
    let missing = d.path().join("nope.toml");
    let out = skrctl(&missing, &["config", "check", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(errors(&json_of(&out))[0].0, "config-file-missing");

    // A directory where a file should be (tests run as root, so chmod 000 would not stop reads).
    let out = skrctl(d.path(), &["config", "check", "--json"]);
    assert_eq!(errors(&json_of(&out))[0].0, "config-not-a-file");

    let t = Dir::new("[evidence]\nsource = \"vtpm\"\n[boot\ndeadline = \"1m\"\n");
    std::fs::create_dir_all(t.dir.path().join("skrd.toml.d/5-dir.toml")).unwrap();
    std::fs::write(
        t.dir.path().join("skrd.toml.d/6-bin.toml"),
        b"[log]\nlevel = \"\xff\"\n",
    )
    .unwrap();
    let v = json_of(&skrctl(&t.main(), &["config", "check", "--json"]));
    let got: Vec<(String, u64)> = errors(&v).into_iter().map(|(c, _, l, _)| (c, l)).collect();
    assert_eq!(
        got,
        vec![
            ("config-syntax".to_string(), 3),
            ("config-not-a-file".to_string(), 0),
            ("config-not-utf8".to_string(), 2),
        ]
    );
}

#[test]
fn a_broken_file_does_not_produce_ghost_errors_in_the_others() {
    // The main file (which defines the keys) has a syntax error; the drop-in's volume refers to
    // one of its keys. Only the syntax error, and the drop-in's own unknown key, are reported.
    let d = Dir::new(&fixture("valid.toml").replace("[boot]", "[boot"));
    d.dropin("10-v.toml", "[volumes.more]\nuuid = \"1b4b3e1c-6f1e-4c2a-9d55-2f1f9a7f0c11\"\nkey = \"disk\"\nheadles = true\n");
    let v = json_of(&skrctl(&d.main(), &["config", "check", "--json"]));
    let got: Vec<(String, String, u64)> = errors(&v)
        .into_iter()
        .map(|(c, k, l, _)| (c, k, l))
        .collect();
    assert_eq!(
        got,
        vec![
            ("config-syntax".into(), String::new(), 28),
            (
                "config-unknown-key".into(),
                "volumes.more.headles".into(),
                4
            ),
        ]
    );
}

#[test]
fn duplicate_uuid_across_files_names_both_places() {
    let d = Dir::new(&fixture("valid.toml"));
    let drop = d.dropin(
        "10-more.toml",
        "[volumes.more]\nuuid = \"0b4b3e1c-6f1e-4c2a-9d55-2f1f9a7f0c11\"\nkey = \"backup\"\n",
    );
    let out = skrctl(&d.main(), &["config", "check", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let v = json_of(&out);
    let e = &v["errors"][0];
    assert_eq!(e["code"], "config-duplicate-uuid");
    assert_eq!(e["file"], drop.display().to_string());
    assert_eq!(e["line"], 2);
    // valid.toml line 22 holds volumes.data.uuid.
    let msg = e["message"].as_str().unwrap();
    assert!(
        msg.contains(&format!("{}:22:1", d.main().display())),
        "{msg}"
    );
}

#[test]
fn trust_files_must_be_readable_pem() {
    let d = tempfile::tempdir().unwrap();
    let pem = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/real/amd-certs/go-sev-guest/ask_ark_milan.pem");
    let junk = d.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate").unwrap();
    let main = d.path().join("skrd.toml");
    std::fs::write(
        &main,
        format!(
            "[trust]\nca_files = [{:?}, {:?}]\namd_test_roots = [{:?}]\n",
            pem.display().to_string(),
            junk.display().to_string(),
            d.path().join("absent.pem").display().to_string()
        ),
    )
    .unwrap();
    let v = json_of(&skrctl(&main, &["config", "check", "--json"]));
    let got: Vec<(String, String)> = errors(&v).into_iter().map(|(c, k, _, _)| (c, k)).collect();
    assert_eq!(
        got,
        vec![
            ("config-invalid-trust-file".into(), "trust.ca_files".into()),
            (
                "config-invalid-trust-file".into(),
                "trust.amd_test_roots".into()
            ),
        ]
    );
    assert!(v["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("junk.pem"));
}

#[test]
fn usage_errors_exit_2() {
    let out = Command::new(SKRCTL)
        .args(["config", "check", "--frobnicate"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn skrd_refuses_to_start_on_a_bad_configuration() {
    let d = Dir::new(&fixture("errors.toml"));
    let out = Command::new(SKRD)
        .arg("--config")
        .arg(d.main())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("15 problems"), "{err}");
    assert!(err.contains(":26:1: volumes.data.key"), "{err}");

    // A valid configuration gets past loading (this release then stops: no daemon yet).
    let ok = Dir::new(&fixture("valid.toml"));
    let out = Command::new(SKRD)
        .arg("--config")
        .arg(ok.main())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("problem"), "{err}");
}

/// The reference file with every "#key = value" / "#[table]" line uncommented.
fn example_uncommented() -> String {
    std::fs::read_to_string(EXAMPLE)
        .unwrap()
        .lines()
        .map(|l| match l.strip_prefix('#') {
            Some(rest) if rest.starts_with(|c: char| c.is_ascii_lowercase() || c == '[') => rest,
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn reference_config_is_valid_as_shipped() {
    let out = skrctl(Path::new(EXAMPLE), &["config", "check", "--json"]);
    let v = json_of(&out);
    assert_eq!(v["valid"], Value::Bool(true), "{v}");
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn reference_config_documents_every_key_and_only_known_keys() {
    let text = example_uncommented();
    let (frag, problems) = fragments::parse_str(Path::new("skrd.toml"), &text);
    assert!(
        problems.is_empty(),
        "unknown or mistyped keys in config/skrd.toml: {problems:#?}"
    );
    let mut mentioned: Vec<String> = frag
        .entries
        .keys()
        .map(|path| {
            let mut p = path.clone();
            if matches!(p[0].as_str(), "keys" | "volumes") {
                p[1] = "*".into();
            }
            p.join(".")
        })
        .collect();
    mentioned.sort();
    let mut all = schema::leaf_paths();
    all.sort();
    assert_eq!(
        mentioned, all,
        "config/skrd.toml must show every key exactly"
    );

    // The example values are valid too; the only conflict is the three identity selectors
    // being shown together.
    let problems = validate::validate(&validate::merge([frag])).unwrap_err();
    let codes: Vec<(&str, Option<&str>)> = problems
        .iter()
        .map(|p| (p.code(), p.key.as_deref()))
        .collect();
    assert_eq!(
        codes,
        vec![
            ("config-identity-conflict", Some("identity.object_id")),
            ("config-identity-conflict", Some("identity.resource_id")),
        ]
    );
}

#[test]
fn reference_defaults_match_the_code() {
    // Every "#key = value" in config/skrd.toml that is not marked "# Example" shows the default:
    // it must equal what the loader produces when the key is not set. The base configuration
    // below sets only the required keys of one key table and one volume table.
    let base = "[attestation]\nprovider = \"https://a.eus.attest.azure.net\"\n\
                [keys.disk]\nurl = \"https://v.vault.azure.net/keys/disk\"\n\
                [volumes.data]\nuuid = \"0b4b3e1c-6f1e-4c2a-9d55-2f1f9a7f0c11\"\nkey = \"disk\"\n";
    let settings = config::fuzz_config_parse(base.as_bytes()).unwrap();
    let defaults: std::collections::BTreeMap<String, Value> = settings
        .effective()
        .into_iter()
        .filter(|e| e.origin.is_none())
        .map(|e| (e.key, e.value))
        .collect();
    let text = std::fs::read_to_string(EXAMPLE).unwrap();
    let mut section = String::new();
    let mut example = false;
    let mut checked = Vec::new();
    for line in text.lines() {
        let bare = line.strip_prefix('#').unwrap_or(line);
        if let Some(h) = bare.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = h.to_string();
            continue;
        }
        if line.starts_with("# Example") {
            example = true;
        }
        let Some(rest) = line.strip_prefix('#') else {
            continue;
        };
        if !rest.starts_with(|c: char| c.is_ascii_lowercase()) {
            continue;
        }
        let (k, v) = rest.split_once(" = ").unwrap();
        let key = format!("{section}.{k}");
        if std::mem::replace(&mut example, false) {
            // An example value; its default is stated in the prose above it.
            checked.push(key);
            continue;
        }
        let value = toml_value_to_json(v);
        // An inline table ("options = {...}") shows the defaults of its keys; keys without a
        // default (options.timeout) have no effective value and are skipped.
        let pairs: Vec<(String, Value)> = match value {
            Value::Object(map) => map
                .into_iter()
                .map(|(k2, v2)| (format!("{key}.{k2}"), v2))
                .collect(),
            v => vec![(key, v)],
        };
        for (key, value) in pairs {
            let Some(default) = defaults.get(&key) else {
                assert!(
                    key.ends_with("options.timeout"),
                    "{key} is shown as a default but has none; mark it \"# Example\""
                );
                continue;
            };
            let default = match (&key[..], default) {
                // The URL parser writes the root path of a bare host.
                ("identity.imds_url", Value::String(s)) => {
                    Value::String(s.trim_end_matches('/').to_string())
                }
                _ => default.clone(),
            };
            assert_eq!(default, value, "default of {key} in config/skrd.toml");
            checked.push(key);
        }
    }
    // Every default the loader has is shown (or, for example lines, stated in prose).
    let mut missing: Vec<&String> = defaults.keys().filter(|k| !checked.contains(k)).collect();
    missing.sort();
    assert!(
        missing.is_empty(),
        "defaults not shown in config/skrd.toml: {missing:?}"
    );
}

#[test]
fn man_page_and_error_list_cover_every_key_and_code() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let man = std::fs::read_to_string(root.join("docs/man/skrd.toml.5")).unwrap();
    for path in schema::leaf_paths() {
        let leaf = path.rsplit('.').next().unwrap();
        // roff escapes nothing in key names; each key appears as a bold word.
        assert!(
            man.contains(leaf),
            "docs/man/skrd.toml.5 does not mention {path}"
        );
    }
    let codes_src = std::fs::read_to_string(root.join("src/config/error.rs")).unwrap();
    let doc = std::fs::read_to_string(root.join("docs/errors-config.md")).unwrap();
    let codes: Vec<&str> = codes_src
        .split('"')
        .filter(|s| s.starts_with("config-") && !s.contains(' '))
        .collect();
    assert!(codes.len() >= 20, "{codes:?}");
    for code in codes {
        assert!(
            doc.contains(&format!("`{code}`")),
            "docs/errors-config.md lacks {code}"
        );
    }
}

fn toml_value_to_json(v: &str) -> Value {
    let doc: toml::Table = toml::from_str(&format!("v = {v}")).unwrap();
    serde_json::to_value(&doc["v"]).unwrap()
}

/// xorshift64*: a fixed-seed generator, so a failure is reproducible.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

#[test]
fn no_input_makes_the_loader_panic() {
    let base = example_uncommented().into_bytes();
    let valid = fixture("valid.toml").into_bytes();
    let errors = fixture("errors.toml").into_bytes();
    let mut inputs: Vec<Vec<u8>> = Vec::new();
    // Every truncation of the example and of both fixtures.
    for src in [&base, &valid, &errors] {
        for n in 0..=src.len() {
            inputs.push(src[..n].to_vec());
        }
    }
    let mut rng = Rng(0x5EED_C0DE_0000_0001);
    // Byte flips, insertions of TOML punctuation, line deletions and duplications.
    const PUNCT: &[u8] = b"[]{}=\"'.,#\n\\ 0-:\xff\x00";
    for _ in 0..3000 {
        let src = [&base, &valid, &errors][rng.below(3)];
        let mut m = src.clone();
        for _ in 0..1 + rng.below(4) {
            match rng.below(4) {
                0 if !m.is_empty() => {
                    let i = rng.below(m.len());
                    m[i] = rng.next() as u8;
                }
                1 => {
                    let i = rng.below(m.len() + 1);
                    m.insert(i, PUNCT[rng.below(PUNCT.len())]);
                }
                2 => {
                    let lines: Vec<&[u8]> = m.split(|b| *b == b'\n').collect();
                    let skip = rng.below(lines.len());
                    m = lines
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| *i != skip)
                        .map(|(_, l)| l.to_vec())
                        .collect::<Vec<_>>()
                        .join(&b'\n');
                }
                _ => {
                    let lines: Vec<&[u8]> = m.split(|b| *b == b'\n').collect();
                    let dup = lines[rng.below(lines.len())].to_vec();
                    m.extend_from_slice(b"\n");
                    m.extend_from_slice(&dup);
                }
            }
        }
        inputs.push(m);
    }
    // Random bytes and pathological shapes.
    for len in [1usize, 7, 64, 512, 4096] {
        inputs.push((0..len).map(|_| rng.next() as u8).collect());
    }
    inputs.push("[a]\n".repeat(5000).into_bytes());
    inputs.push(format!("x = {}1{}", "[".repeat(200), "]".repeat(200)).into_bytes());
    inputs.push(format!("keys = {}", "{a = ".repeat(300)).into_bytes());
    inputs.push(b"[volumes.\"\"]\nuuid = \"\"\nkey = \"\"\noptions = { timeout = \"99999999999999999999h\" }".to_vec());
    inputs.push(
        b"[network]\nretries = 9223372036854775807\nconnect_timeout = \"18446744073709551615ms\""
            .to_vec(),
    );

    let mut ok = 0;
    for input in &inputs {
        if config::fuzz_config_parse(input).is_ok() {
            ok += 1;
        }
    }
    // Both outcomes occur (the generator is not trivially producing only garbage).
    assert!(
        ok > 0 && ok < inputs.len(),
        "{ok} of {} accepted",
        inputs.len()
    );
}
