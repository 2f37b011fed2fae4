//! Step 1 of 3: one file's text → a [`Fragment`] (every key optional, each value with its
//! file, line and column), checked against the key list in [`super::schema`].
//!
//! Pure: text (or bytes) in, fragment and problems out; no file system access.
//!
//! Why not `serde` with `deny_unknown_fields`: serde stops at the first problem, and an operator
//! repairing `/etc/skrd` from a rescue shell wants every problem at once, each with its line. So
//! the fragment is read by a small walker over `toml_edit`'s spanned tree, driven by the one
//! schema table that also feeds key suggestions and the documentation test.

use super::error::{ConfigError, ConfigProblem, Origin};
use super::schema::{self, Field, Kind};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use toml_edit::{Item, TableLike};

/// A dotted key path, one element per level: `["volumes", "data", "key"]`.
pub type KeyPath = Vec<String>;

/// A user or group as written: a number or a name (resolved later by the daemon).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawId {
    /// A TOML integer.
    Num(i64),
    /// A TOML string.
    Name(String),
}

/// A leaf value, type-checked against the schema but not yet validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawValue {
    /// A string (also durations, URLs, GUIDs...).
    Str(String),
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// An array of strings.
    StrList(Vec<String>),
    /// An array of ids and names.
    IdList(Vec<RawId>),
}

/// A value and where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The value.
    pub value: RawValue,
    /// Where its key is.
    pub origin: Origin,
}

/// Everything one file sets. Absent keys are simply not in the maps.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Fragment {
    /// The file this fragment was read from.
    pub file: PathBuf,
    /// Leaf values by key path.
    pub entries: BTreeMap<KeyPath, Entry>,
    /// Named tables (`keys.NAME`, `volumes.NAME`) this file mentions, with where.
    pub named: BTreeMap<KeyPath, Origin>,
}

/// Renders a key path as an operator writes it: `volumes.data.key`, quoting odd names
/// (`volumes."my disk".key`).
pub fn display_path<S: AsRef<str>>(path: &[S]) -> String {
    let mut out = String::new();
    for (i, part) in path.iter().enumerate() {
        let part = part.as_ref();
        if i > 0 {
            out.push('.');
        }
        let bare = !part.is_empty()
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if bare {
            out.push_str(part);
        } else {
            out.push_str(&format!("{part:?}"));
        }
    }
    out
}

/// Parses one file's bytes (must be UTF-8 TOML). Never panics; problems are returned, and the
/// fragment holds every value that could be read despite them.
pub fn parse_bytes(file: &Path, bytes: &[u8]) -> (Fragment, Vec<ConfigProblem>) {
    match std::str::from_utf8(bytes) {
        Ok(text) => parse_str(file, text),
        Err(e) => {
            let offset = e.valid_up_to();
            let index = LineIndex::new(bytes.get(..offset).unwrap_or_default());
            let origin = index.origin(file, offset);
            let problem = ConfigProblem {
                error: ConfigError::NotUtf8 { offset },
                file: Some(file.to_path_buf()),
                line: Some(origin.line),
                column: Some(origin.column),
                key: None,
            };
            (empty(file), vec![problem])
        }
    }
}

/// Parses one file's text.
pub fn parse_str(file: &Path, text: &str) -> (Fragment, Vec<ConfigProblem>) {
    let index = LineIndex::new(text.as_bytes());
    let doc = match toml_edit::ImDocument::parse(text) {
        Ok(doc) => doc,
        Err(e) => {
            let at = e.span().map_or(0, |s| s.start);
            let origin = index.origin(file, at);
            let problem = ConfigProblem {
                error: ConfigError::Syntax {
                    message: e.message().trim().to_string(),
                },
                file: Some(file.to_path_buf()),
                line: Some(origin.line),
                column: Some(origin.column),
                key: None,
            };
            return (empty(file), vec![problem]);
        }
    };
    let mut walker = Walker {
        file,
        index: &index,
        fragment: empty(file),
        problems: Vec::new(),
    };
    let root = doc.as_table();
    walker.table(root, schema::ROOT, &mut Vec::new(), None);
    (walker.fragment, walker.problems)
}

fn empty(file: &Path) -> Fragment {
    Fragment {
        file: file.to_path_buf(),
        ..Fragment::default()
    }
}

struct Walker<'a> {
    file: &'a Path,
    index: &'a LineIndex,
    fragment: Fragment,
    problems: Vec<ConfigProblem>,
}

impl Walker<'_> {
    fn origin_of(&self, table: &dyn TableLike, key: &str, fallback: Option<&Origin>) -> Origin {
        let span = table
            .get_key_value(key)
            .and_then(|(k, item)| k.span().or_else(|| item.span()));
        match (span, fallback) {
            (Some(span), _) => self.index.origin(self.file, span.start),
            (None, Some(o)) => o.clone(),
            (None, None) => self.index.origin(self.file, 0),
        }
    }

    fn table(
        &mut self,
        table: &dyn TableLike,
        fields: &'static [Field],
        path: &mut KeyPath,
        parent: Option<&Origin>,
    ) {
        for (key, item) in table.iter() {
            let origin = self.origin_of(table, key, parent);
            path.push(key.to_string());
            match fields.iter().find(|f| f.name == key) {
                None => {
                    let known: Vec<&'static str> = fields.iter().map(|f| f.name).collect();
                    let error = ConfigError::UnknownKey {
                        found: key.to_string(),
                        suggestion: schema::suggest(key, known.iter().copied()),
                        known,
                    };
                    self.problems
                        .push(ConfigProblem::at(error, &origin, display_path(path)));
                }
                Some(field) => self.item(item, field.kind, path, &origin),
            }
            path.pop();
        }
    }

    fn item(&mut self, item: &Item, kind: Kind, path: &mut KeyPath, origin: &Origin) {
        match kind {
            Kind::Table(sub) => match item.as_table_like() {
                Some(t) => self.table(t, sub, path, Some(origin)),
                None => self.wrong_type(kind, item, path, origin),
            },
            Kind::Named(sub) => match item.as_table_like() {
                Some(t) => {
                    for (name, named_item) in t.iter() {
                        let named_origin = self.origin_of(t, name, Some(origin));
                        path.push(name.to_string());
                        match named_item.as_table_like() {
                            Some(inner) => {
                                self.fragment
                                    .named
                                    .entry(path.clone())
                                    .or_insert_with(|| named_origin.clone());
                                self.table(inner, sub, path, Some(&named_origin));
                            }
                            // `[keys] url = ...`: the NAME level was forgotten.
                            None => self.wrong_type(kind, named_item, path, &named_origin),
                        }
                        path.pop();
                    }
                }
                None => self.wrong_type(kind, item, path, origin),
            },
            leaf => match leaf_value(item, leaf) {
                Some(value) => {
                    self.fragment.entries.insert(
                        path.clone(),
                        Entry {
                            value,
                            origin: origin.clone(),
                        },
                    );
                }
                None => self.wrong_type(leaf, item, path, origin),
            },
        }
    }

    fn wrong_type(&mut self, kind: Kind, item: &Item, path: &KeyPath, origin: &Origin) {
        let error = ConfigError::WrongType {
            expected: kind.expected(),
            found: type_name(item),
        };
        self.problems
            .push(ConfigProblem::at(error, origin, display_path(path)));
    }
}

fn leaf_value(item: &Item, kind: Kind) -> Option<RawValue> {
    let value = item.as_value()?;
    match kind {
        Kind::Str | Kind::Duration => value.as_str().map(|s| RawValue::Str(s.to_string())),
        Kind::Bool => value.as_bool().map(RawValue::Bool),
        Kind::Int => value.as_integer().map(RawValue::Int),
        Kind::StrList => value
            .as_array()?
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .map(RawValue::StrList),
        Kind::IdList => value
            .as_array()?
            .iter()
            .map(|v| match v {
                toml_edit::Value::Integer(i) => Some(RawId::Num(*i.value())),
                toml_edit::Value::String(s) => Some(RawId::Name(s.value().clone())),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()
            .map(RawValue::IdList),
        Kind::Table(_) | Kind::Named(_) => None,
    }
}

fn type_name(item: &Item) -> &'static str {
    use toml_edit::Value as V;
    match item {
        Item::None => "nothing",
        Item::Table(_) => "a table",
        Item::ArrayOfTables(_) => "an array of tables",
        Item::Value(v) => match v {
            V::String(_) => "a string",
            V::Integer(_) => "an integer",
            V::Float(_) => "a float",
            V::Boolean(_) => "a boolean",
            V::Datetime(_) => "a date-time",
            V::InlineTable(_) => "a table",
            V::Array(a) if a.iter().all(|e| e.is_str()) => "an array of strings",
            V::Array(_) => "an array with elements of another type",
        },
    }
}

/// Byte offset → 1-based line and column (column in characters).
struct LineIndex {
    /// Byte offset of the start of each line.
    starts: Vec<usize>,
    text: Vec<u8>,
}

impl LineIndex {
    fn new(text: &[u8]) -> Self {
        let mut starts = vec![0];
        starts.extend(
            text.iter()
                .enumerate()
                .filter(|(_, b)| **b == b'\n')
                .map(|(i, _)| i + 1),
        );
        Self {
            starts,
            text: text.to_vec(),
        }
    }

    fn origin(&self, file: &Path, offset: usize) -> Origin {
        let line_idx = match self.starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i.saturating_sub(1),
        };
        let start = self.starts.get(line_idx).copied().unwrap_or(0);
        let prefix = self.text.get(start..offset.max(start)).unwrap_or_default();
        // Count characters, not bytes: UTF-8 continuation bytes are 0b10xx_xxxx.
        let column = prefix.iter().filter(|b| (**b & 0xC0) != 0x80).count() + 1;
        Origin {
            file: file.to_path_buf(),
            line: u32::try_from(line_idx + 1).unwrap_or(u32::MAX),
            column: u32::try_from(column).unwrap_or(u32::MAX),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (Fragment, Vec<ConfigProblem>) {
        parse_str(Path::new("/t.toml"), text)
    }

    fn path(p: &str) -> KeyPath {
        p.split('.').map(str::to_string).collect()
    }

    #[test]
    fn values_carry_line_and_column_of_their_key() {
        let (frag, problems) =
            parse("# comment\n[evidence]\n  tcti = \"device:/dev/tpmrm0\"\n\n[volumes.data]\nkey = \"k\"\n");
        assert!(problems.is_empty(), "{problems:?}");
        let tcti = &frag.entries[&path("evidence.tcti")];
        assert_eq!((tcti.origin.line, tcti.origin.column), (3, 3));
        let key = &frag.entries[&path("volumes.data.key")];
        assert_eq!((key.origin.line, key.origin.column), (6, 1));
        let vol = &frag.named[&path("volumes.data")];
        assert_eq!(vol.line, 5);
    }

    #[test]
    fn inline_and_dotted_forms_are_the_same_keys() {
        let (a, pa) = parse("volumes.data.options = { initrd = false }\n");
        let (b, pb) = parse("[volumes.data.options]\ninitrd = false\n");
        assert!(pa.is_empty() && pb.is_empty());
        let k = path("volumes.data.options.initrd");
        assert_eq!(a.entries[&k].value, RawValue::Bool(false));
        assert_eq!(b.entries[&k].value, RawValue::Bool(false));
    }

    #[test]
    fn every_unknown_key_and_wrong_type_is_reported() {
        let (_, problems) = parse(
            "[evidence]\nsorce = \"vtpm\"\ntcti = 3\n[network]\nretries = \"many\"\n[nope]\n",
        );
        let codes: Vec<_> = problems.iter().map(|p| (p.code(), p.line)).collect();
        assert_eq!(
            codes,
            vec![
                ("config-unknown-key", Some(2)),
                ("config-wrong-type", Some(3)),
                ("config-wrong-type", Some(5)),
                ("config-unknown-key", Some(6)),
            ]
        );
        assert!(matches!(
            &problems[0].error,
            ConfigError::UnknownKey {
                suggestion: Some("source"),
                ..
            }
        ));
    }

    #[test]
    fn a_forgotten_table_name_is_explained() {
        let (_, problems) = parse("[keys]\nurl = \"https://v.vault.azure.net/keys/k\"\n");
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].key.as_deref(), Some("keys.url"));
        assert!(problems[0].error.to_string().contains("[keys.NAME]"));
    }

    #[test]
    fn syntax_errors_point_at_the_line() {
        let (_, problems) = parse("[evidence]\nsource = \n");
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].code(), "config-syntax");
        assert_eq!(problems[0].line, Some(2));
    }

    #[test]
    fn non_utf8_is_refused_with_its_offset() {
        let (_, problems) = parse_bytes(Path::new("/t"), b"a = 1\n\xff");
        assert_eq!(problems[0].error, ConfigError::NotUtf8 { offset: 6 });
        assert_eq!(problems[0].line, Some(2));
    }

    #[test]
    fn columns_count_characters() {
        let (_, problems) = parse("[keys.\"ключ\"]\nбад = 1\n");
        assert_eq!(problems[0].line, Some(2));
        assert_eq!(problems[0].column, Some(1));
        let (_, problems) = parse("x = 1 # é\n  [log]\n  lvl = 1");
        assert_eq!((problems[1].line, problems[1].column), (Some(3), Some(3)));
    }

    #[test]
    fn paths_are_displayed_as_written() {
        assert_eq!(display_path(&path("volumes.data.key")), "volumes.data.key");
        assert_eq!(
            display_path(&["volumes", "my disk", "key"]),
            "volumes.\"my disk\".key"
        );
    }
}
