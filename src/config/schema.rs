//! The one list of every configuration key and the TOML type it takes.
//!
//! The fragment reader checks files against this table, `skrctl config check` suggests the
//! closest key from it, and the test that keeps `config/skrd.toml` honest walks it: a key exists
//! when, and only when, it is listed here. Meanings and defaults live in `settings.rs` and in the
//! commented example `config/skrd.toml`.

/// The TOML shape a key takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A string.
    Str,
    /// A boolean.
    Bool,
    /// An integer.
    Int,
    /// An array of strings.
    StrList,
    /// An array whose elements are integers (ids) or strings (names).
    IdList,
    /// A string holding a duration such as "30s".
    Duration,
    /// A table with fixed keys.
    Table(&'static [Field]),
    /// A table of tables: any name, each with the given fixed keys (`[keys.NAME]`).
    Named(&'static [Field]),
}

impl Kind {
    /// How an operator would describe a value of this kind (used in "expected ..." messages).
    pub fn expected(self) -> &'static str {
        match self {
            Self::Str => "a string",
            Self::Bool => "a boolean (true or false)",
            Self::Int => "an integer",
            Self::StrList => "an array of strings",
            Self::IdList => "an array of numeric ids and/or names",
            Self::Duration => "a duration string such as \"30s\" or \"5m\"",
            Self::Table(_) => "a table",
            Self::Named(_) => "named tables such as [keys.NAME] or [volumes.NAME]",
        }
    }
}

/// One key of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    /// The key.
    pub name: &'static str,
    /// What it takes.
    pub kind: Kind,
}

const fn f(name: &'static str, kind: Kind) -> Field {
    Field { name, kind }
}

/// `[evidence]`.
pub const EVIDENCE: &[Field] = &[
    f("source", Kind::Str),
    f("tcti", Kind::Str),
    f("event_log", Kind::Str),
];

/// `[identity]`.
pub const IDENTITY: &[Field] = &[
    f("client_id", Kind::Str),
    f("object_id", Kind::Str),
    f("resource_id", Kind::Str),
    f("imds_url", Kind::Str),
];

/// `[attestation]`.
pub const ATTESTATION: &[Field] = &[f("provider", Kind::Str), f("api_version", Kind::Str)];

/// `[keys.NAME]`.
pub const KEY: &[Field] = &[
    f("url", Kind::Str),
    f("enc", Kind::Str),
    f("api_version", Kind::Str),
    f("allow_uids", Kind::IdList),
    f("allow_gids", Kind::IdList),
    f("allow_units", Kind::StrList),
];

/// `[volumes.NAME.options]`.
pub const VOLUME_OPTIONS: &[Field] = &[
    f("initrd", Kind::Bool),
    f("headless", Kind::Bool),
    f("timeout", Kind::Duration),
];

/// `[volumes.NAME]`.
pub const VOLUME: &[Field] = &[
    f("uuid", Kind::Str),
    f("key", Kind::Str),
    f("options", Kind::Table(VOLUME_OPTIONS)),
];

/// `[network]`.
pub const NETWORK: &[Field] = &[
    f("connect_timeout", Kind::Duration),
    f("request_timeout", Kind::Duration),
    f("retries", Kind::Int),
    f("backoff_initial", Kind::Duration),
    f("backoff_max", Kind::Duration),
];

/// `[boot]`.
pub const BOOT: &[Field] = &[f("deadline", Kind::Duration)];

/// `[trust]`.
pub const TRUST: &[Field] = &[
    f("ca_files", Kind::StrList),
    f("amd_test_roots", Kind::StrList),
];

/// `[log]`.
pub const LOG: &[Field] = &[f("level", Kind::Str)];

/// The top level of a file.
pub const ROOT: &[Field] = &[
    f("evidence", Kind::Table(EVIDENCE)),
    f("identity", Kind::Table(IDENTITY)),
    f("attestation", Kind::Table(ATTESTATION)),
    f("keys", Kind::Named(KEY)),
    f("volumes", Kind::Named(VOLUME)),
    f("network", Kind::Table(NETWORK)),
    f("boot", Kind::Table(BOOT)),
    f("trust", Kind::Table(TRUST)),
    f("log", Kind::Table(LOG)),
];

/// Every leaf key as a dotted path, with `*` for the name of a named table
/// (`keys.*.url`, `volumes.*.options.initrd`).
pub fn leaf_paths() -> Vec<String> {
    let mut out = Vec::new();
    collect(ROOT, "", &mut out);
    out
}

fn collect(fields: &[Field], prefix: &str, out: &mut Vec<String>) {
    for field in fields {
        let path = format!("{prefix}{}", field.name);
        match field.kind {
            Kind::Table(sub) => collect(sub, &format!("{path}."), out),
            Kind::Named(sub) => collect(sub, &format!("{path}.*."), out),
            _ => out.push(path),
        }
    }
}

/// The known key closest to `found`, if it is close enough to be the intended one
/// (edit distance at most 1 for short keys, 2 for keys of 5+ characters, 3 for 9+, or one is a
/// prefix of the other).
pub fn suggest<'a>(found: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let found_l = found.to_ascii_lowercase();
    let mut best: Option<(usize, &'a str)> = None;
    for k in known {
        let d = edit_distance(&found_l, k);
        let limit = match k.len() {
            0..=4 => 1,
            5..=8 => 2,
            _ => 3,
        };
        let prefix = found_l.len() >= 3 && (k.starts_with(&found_l) || found_l.starts_with(k));
        if (d <= limit || prefix) && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, k));
        }
    }
    best.map(|(_, k)| k)
}

/// Edit distance counting insertions, deletions, substitutions and swaps of two adjacent
/// characters (optimal string alignment); `-` and `_` count as equal, so `event-log` is
/// obviously `event_log` and `tcit` is one swap from `tcti`.
fn edit_distance(a: &str, b: &str) -> usize {
    let norm = |c: char| if c == '-' { '_' } else { c };
    let a: Vec<char> = a.chars().map(norm).collect();
    let b: Vec<char> = b.chars().map(norm).collect();
    let width = b.len() + 1;
    // d[i * width + j] = distance between a[..i] and b[..j].
    let mut d = vec![0usize; (a.len() + 1) * width];
    for i in 0..=a.len() {
        for j in 0..=b.len() {
            let v = if i == 0 || j == 0 {
                i.max(j)
            } else {
                let cost = usize::from(a[i - 1] != b[j - 1]);
                let mut v = (d[(i - 1) * width + j] + 1)
                    .min(d[i * width + j - 1] + 1)
                    .min(d[(i - 1) * width + j - 1] + cost);
                if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                    v = v.min(d[(i - 2) * width + j - 2] + 1);
                }
                v
            };
            d[i * width + j] = v;
        }
    }
    d[a.len() * width + b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_find_typos_and_refuse_strangers() {
        let known = ["source", "tcti", "event_log"];
        assert_eq!(suggest("sorce", known), Some("source"));
        assert_eq!(suggest("tcit", known), Some("tcti"));
        assert_eq!(suggest("event-log", known), Some("event_log"));
        assert_eq!(suggest("evnet_log", known), Some("event_log"));
        assert_eq!(suggest("frobnicate", known), None);
        assert_eq!(suggest("", known), None);
    }

    #[test]
    fn edit_distance_matches_hand_counts() {
        // kitten -> sitting: the textbook example, distance 3.
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("abc", "abc"), 0);
        assert_eq!(edit_distance("dsik", "disk"), 1);
    }

    #[test]
    fn leaf_paths_cover_named_tables() {
        let paths = leaf_paths();
        assert!(paths.contains(&"keys.*.url".to_string()));
        assert!(paths.contains(&"volumes.*.options.timeout".to_string()));
        assert!(paths.contains(&"evidence.tcti".to_string()));
        assert!(!paths.iter().any(|p| p == "volumes.*.options"));
    }
}
