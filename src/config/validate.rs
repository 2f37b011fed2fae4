//! Step 2 and 3 of 3: merge fragments (later file wins per key, tables merged deeply) and turn
//! the merged values into [`Settings`], collecting every problem. Pure.

use super::error::{ConfigError, ConfigProblem, Origin};
use super::fragments::{display_path, Entry, Fragment, KeyPath, RawId, RawValue};
use super::settings::{
    defaults, AttestationSettings, BootSettings, EvidenceSettings, EvidenceSource, Identity,
    IdentitySettings, KeyAcl, KeySettings, KeyWrap, LogLevel, LogSettings, NetworkSettings,
    Settings, Sources, TrustSettings, VolumeOptions, VolumeSettings,
};
use super::values::{self, format_duration, Principal};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;
use url::Url;
use uuid::Uuid;

/// All fragments merged: for every key, the value from the last file that set it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Merged {
    /// Files merged, in order.
    pub files: Vec<PathBuf>,
    /// Effective leaf values.
    pub entries: BTreeMap<KeyPath, Entry>,
    /// Named tables (`keys.NAME`, `volumes.NAME`) and where each was first declared.
    pub named: BTreeMap<KeyPath, Origin>,
}

/// Merges fragments in the given order: later wins per key; arrays are replaced, not appended;
/// named tables are merged key by key.
pub fn merge(fragments: impl IntoIterator<Item = Fragment>) -> Merged {
    let mut merged = Merged::default();
    for fragment in fragments {
        merged.files.push(fragment.file);
        merged.entries.extend(fragment.entries);
        for (path, origin) in fragment.named {
            merged.named.entry(path).or_insert(origin);
        }
    }
    merged
}

fn p(parts: &[&str]) -> KeyPath {
    parts.iter().map(|s| s.to_string()).collect()
}

/// Validates merged values into [`Settings`], or returns every problem found.
pub fn validate(merged: &Merged) -> Result<Settings, Vec<ConfigProblem>> {
    let mut v = Validator {
        m: merged,
        problems: Vec::new(),
    };
    let settings = v.settings();
    match settings {
        Some(s) if v.problems.is_empty() => Ok(s),
        _ => Err(v.problems),
    }
}

struct Validator<'a> {
    m: &'a Merged,
    problems: Vec<ConfigProblem>,
}

impl Validator<'_> {
    fn err(&mut self, error: ConfigError, path: &KeyPath, origin: Option<&Origin>) {
        let key = display_path(path);
        self.problems.push(match origin {
            Some(o) => ConfigProblem::at(error, o, key),
            None => ConfigProblem::for_key(error, key),
        });
    }

    fn entry(&self, path: &KeyPath) -> Option<&Entry> {
        self.m.entries.get(path)
    }

    fn string(&self, path: &KeyPath) -> Option<(String, Origin)> {
        match self.entry(path) {
            Some(Entry {
                value: RawValue::Str(s),
                origin,
            }) => Some((s.clone(), origin.clone())),
            _ => None,
        }
    }

    fn bool(&self, path: &KeyPath, default: bool) -> bool {
        match self.entry(path) {
            Some(Entry {
                value: RawValue::Bool(b),
                ..
            }) => *b,
            _ => default,
        }
    }

    /// A string parsed by `parse`; on failure records `make_err(value)`; absent → `default`.
    fn parsed<T>(
        &mut self,
        path: &KeyPath,
        default: Option<T>,
        parse: impl FnOnce(&str) -> Result<T, ConfigError>,
    ) -> Option<T> {
        match self.string(path) {
            None => default,
            Some((s, origin)) => match parse(&s) {
                Ok(v) => Some(v),
                Err(e) => {
                    self.err(e, path, Some(&origin));
                    None
                }
            },
        }
    }

    /// A duration within `min..=max`; absent → `default`; invalid → recorded, `default`.
    fn duration(
        &mut self,
        path: &KeyPath,
        default: Duration,
        min: Duration,
        max: Duration,
    ) -> Duration {
        let Some((s, origin)) = self.string(path) else {
            return default;
        };
        match values::parse_duration(&s) {
            Err(problem) => {
                let error = ConfigError::BadDuration { found: s, problem };
                self.err(error, path, Some(&origin));
                default
            }
            Ok(d) if d < min || d > max => {
                let error = ConfigError::OutOfRange {
                    found: format_duration(d),
                    min: format_duration(min),
                    max: format_duration(max),
                };
                self.err(error, path, Some(&origin));
                default
            }
            Ok(d) => d,
        }
    }

    fn settings(&mut self) -> Option<Settings> {
        let evidence = self.evidence();
        let identity = self.identity();
        let keys = self.keys();
        let attestation = self.attestation(!keys.is_empty());
        let volumes = self.volumes(&keys);
        let network = self.network();
        let boot = BootSettings {
            deadline: self.duration(
                &p(&["boot", "deadline"]),
                Duration::from_secs(defaults::BOOT_DEADLINE_S),
                Duration::from_secs(1),
                Duration::from_secs(24 * 3600),
            ),
        };
        let trust = TrustSettings {
            ca_files: self.paths(&p(&["trust", "ca_files"])),
            amd_test_roots: self.paths(&p(&["trust", "amd_test_roots"])),
        };
        let level = self.parsed(&p(&["log", "level"]), Some(LogLevel::Info), |s| {
            LogLevel::from_name(s).ok_or(ConfigError::NotOneOf {
                found: s.to_string(),
                allowed: LogLevel::NAMES,
            })
        });
        let sources = Sources {
            files: self.m.files.clone(),
            origins: self
                .m
                .entries
                .iter()
                .map(|(k, e)| (display_path(k), e.origin.clone()))
                .collect(),
        };
        Some(Settings {
            evidence: evidence?,
            identity: identity?,
            attestation,
            keys,
            volumes,
            network,
            boot,
            trust,
            log: LogSettings {
                level: level.unwrap_or(LogLevel::Info),
            },
            sources,
        })
    }

    fn evidence(&mut self) -> Option<EvidenceSettings> {
        const SOURCES: &[&str] = &["auto", "vtpm", "sev-guest"];
        let source = self.parsed(
            &p(&["evidence", "source"]),
            Some(EvidenceSource::Auto),
            |s| match s {
                "auto" => Ok(EvidenceSource::Auto),
                "vtpm" => Ok(EvidenceSource::Vtpm),
                "sev-guest" => Ok(EvidenceSource::SevGuest),
                _ => Err(ConfigError::NotOneOf {
                    found: s.to_string(),
                    allowed: SOURCES,
                }),
            },
        );
        let tcti = self.parsed(
            &p(&["evidence", "tcti"]),
            Some(defaults::TCTI.to_string()),
            |s| {
                if values::is_valid_tcti(s) {
                    Ok(s.to_string())
                } else {
                    Err(ConfigError::BadTcti {
                        found: s.to_string(),
                    })
                }
            },
        );
        let event_log = self.parsed(
            &p(&["evidence", "event_log"]),
            Some(PathBuf::from(defaults::EVENT_LOG)),
            absolute_path,
        );
        Some(EvidenceSettings {
            source: source?,
            tcti: tcti?,
            event_log: event_log?,
        })
    }

    fn identity(&mut self) -> Option<IdentitySettings> {
        let mut chosen: Option<(&'static str, Origin, Option<Identity>)> = None;
        for selector in ["client_id", "object_id", "resource_id"] {
            let path = p(&["identity", selector]);
            let Some((s, origin)) = self.string(&path) else {
                continue;
            };
            let parsed = match selector {
                "client_id" | "object_id" => match values::parse_guid(&s) {
                    Some(g) if selector == "client_id" => Some(Identity::ClientId(g)),
                    Some(g) => Some(Identity::ObjectId(g)),
                    None => {
                        self.err(ConfigError::BadGuid { found: s }, &path, Some(&origin));
                        None
                    }
                },
                _ => match values::parse_identity_resource_id(&s) {
                    Some(r) => Some(Identity::ResourceId(r)),
                    None => {
                        self.err(
                            ConfigError::BadResourceId { found: s },
                            &path,
                            Some(&origin),
                        );
                        None
                    }
                },
            };
            match &chosen {
                Some((other, other_origin, _)) => {
                    let error = ConfigError::ConflictingIdentity {
                        other,
                        other_origin: other_origin.clone(),
                    };
                    self.err(error, &path, Some(&origin));
                }
                None => chosen = Some((selector, origin, parsed)),
            }
        }
        let identity = match chosen {
            None => Some(Identity::SystemAssigned),
            Some((_, _, parsed)) => parsed,
        };
        let imds_url = self.parsed(
            &p(&["identity", "imds_url"]),
            Url::parse(defaults::IMDS_URL).ok(),
            |s| {
                values::parse_imds_url(s).map_err(|problem| ConfigError::BadUrl {
                    found: s.to_string(),
                    problem,
                })
            },
        );
        Some(IdentitySettings {
            identity: identity?,
            imds_url: imds_url?,
        })
    }

    fn attestation(&mut self, required: bool) -> Option<AttestationSettings> {
        let provider_path = p(&["attestation", "provider"]);
        let provider = self.parsed(&provider_path, None, |s| {
            values::parse_provider_url(s).map_err(|problem| ConfigError::BadUrl {
                found: s.to_string(),
                problem,
            })
        });
        let api_version = self.api_version(
            &p(&["attestation", "api_version"]),
            defaults::MAA_API_VERSION,
        );
        if required && self.string(&provider_path).is_none() {
            self.err(
                ConfigError::MissingKey {
                    why: "keys are configured, and releasing a key needs an attestation token; \
                          set provider to your Microsoft Azure Attestation provider, e.g. \
                          \"https://sharedeus2.eus2.attest.azure.net\"",
                },
                &provider_path,
                None,
            );
        }
        Some(AttestationSettings {
            provider: provider?,
            api_version: api_version?,
        })
    }

    fn api_version(&mut self, path: &KeyPath, default: &str) -> Option<String> {
        self.parsed(path, Some(default.to_string()), |s| {
            if values::is_valid_api_version(s) {
                Ok(s.to_string())
            } else {
                Err(ConfigError::BadApiVersion {
                    found: s.to_string(),
                })
            }
        })
    }

    fn named(&self, section: &str) -> Vec<(String, Origin)> {
        self.m
            .named
            .iter()
            .filter_map(|(path, origin)| match path.as_slice() {
                [s, name] if s == section => Some((name.clone(), origin.clone())),
                _ => None,
            })
            .collect()
    }

    fn keys(&mut self) -> BTreeMap<String, KeySettings> {
        let mut out = BTreeMap::new();
        for (name, origin) in self.named("keys") {
            let base = p(&["keys", &name]);
            if !values::is_valid_key_name(&name) {
                let error = ConfigError::BadName {
                    what: "key",
                    found: name.clone(),
                    rule: values::KEY_NAME_RULE,
                };
                self.err(error, &base, Some(&origin));
            }
            let leaf = |l: &str| p(&["keys", &name, l]);
            let url_path = leaf("url");
            let url = self.parsed(&url_path, None, |s| {
                values::parse_key_url(s).map_err(|problem| ConfigError::BadUrl {
                    found: s.to_string(),
                    problem,
                })
            });
            if self.string(&url_path).is_none() {
                let error = ConfigError::MissingKey {
                    why: "every key needs the Key Vault or Managed HSM key identifier, e.g. \
                          url = \"https://VAULT.vault.azure.net/keys/NAME\"",
                };
                self.err(error, &url_path, Some(&origin));
            }
            let enc = self.parsed(&leaf("enc"), Some(KeyWrap::RsaAesKeyWrap256), |s| {
                KeyWrap::from_name(s).ok_or(ConfigError::NotOneOf {
                    found: s.to_string(),
                    allowed: KeyWrap::NAMES,
                })
            });
            let api_version = self.api_version(&leaf("api_version"), defaults::AKV_API_VERSION);
            let uids = self.principals(&leaf("allow_uids"));
            let gids = self.principals(&leaf("allow_gids"));
            let units = self.units(&leaf("allow_units"));
            if let (Some(url), Some(enc), Some(api_version), true) =
                (url, enc, api_version, values::is_valid_key_name(&name))
            {
                out.insert(
                    name,
                    KeySettings {
                        url,
                        enc,
                        api_version,
                        acl: KeyAcl { uids, gids, units },
                    },
                );
            }
        }
        out
    }

    fn principals(&mut self, path: &KeyPath) -> Vec<Principal> {
        let Some(Entry {
            value: RawValue::IdList(ids),
            origin,
        }) = self.entry(path).cloned()
        else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for id in ids {
            let (parsed, written) = match &id {
                RawId::Num(n) => (values::parse_principal_id(*n), n.to_string()),
                RawId::Name(s) => (values::parse_principal_name(s), format!("{s:?}")),
            };
            match parsed {
                Some(p) => out.push(p),
                None => self.err(
                    ConfigError::BadPrincipal { found: written },
                    path,
                    Some(&origin),
                ),
            }
        }
        out
    }

    fn units(&mut self, path: &KeyPath) -> Vec<String> {
        let Some(Entry {
            value: RawValue::StrList(units),
            origin,
        }) = self.entry(path).cloned()
        else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for unit in units {
            if values::is_valid_unit(&unit) {
                out.push(unit);
            } else {
                self.err(ConfigError::BadUnit { found: unit }, path, Some(&origin));
            }
        }
        out
    }

    fn volumes(
        &mut self,
        keys: &BTreeMap<String, KeySettings>,
    ) -> BTreeMap<String, VolumeSettings> {
        let defined: Vec<String> = self.named("keys").into_iter().map(|(n, _)| n).collect();
        let mut out = BTreeMap::new();
        let mut seen: BTreeMap<Uuid, (String, Origin)> = BTreeMap::new();
        for (name, origin) in self.named("volumes") {
            let base = p(&["volumes", &name]);
            let name_ok = values::is_valid_volume_name(&name);
            if !name_ok {
                let error = ConfigError::BadName {
                    what: "volume",
                    found: name.clone(),
                    rule: values::VOLUME_NAME_RULE,
                };
                self.err(error, &base, Some(&origin));
            }
            let leaf = |l: &[&str]| {
                let mut v = p(&["volumes", &name]);
                v.extend(l.iter().map(|s| s.to_string()));
                v
            };
            let uuid_path = leaf(&["uuid"]);
            let uuid = match self.string(&uuid_path) {
                None => {
                    let error = ConfigError::MissingKey {
                        why: "every volume needs the UUID of its LUKS2 header; copy it from \
                              `cryptsetup luksUUID DEVICE`",
                    };
                    self.err(error, &uuid_path, Some(&origin));
                    None
                }
                Some((s, uuid_origin)) => match values::parse_guid(&s) {
                    None => {
                        self.err(
                            ConfigError::BadLuksUuid { found: s },
                            &uuid_path,
                            Some(&uuid_origin),
                        );
                        None
                    }
                    Some(u) => {
                        if let Some((other_volume, other_origin)) = seen.get(&u) {
                            let error = ConfigError::DuplicateUuid {
                                uuid: u.to_string(),
                                volume: name.clone(),
                                other_volume: other_volume.clone(),
                                other_origin: other_origin.clone(),
                            };
                            self.err(error, &uuid_path, Some(&uuid_origin));
                        } else {
                            seen.insert(u, (name.clone(), uuid_origin));
                        }
                        Some(u)
                    }
                },
            };
            let key_path = leaf(&["key"]);
            let key = match self.string(&key_path) {
                None => {
                    let error = ConfigError::MissingKey {
                        why: "every volume needs key = \"NAME\" naming one of the [keys.NAME] \
                              tables",
                    };
                    self.err(error, &key_path, Some(&origin));
                    None
                }
                Some((k, key_origin)) => {
                    if defined.contains(&k) {
                        Some(k)
                    } else {
                        let suggestion =
                            super::schema::suggest(&k, defined.iter().map(String::as_str))
                                .map(str::to_string);
                        let error = ConfigError::UndefinedKey {
                            name: k,
                            suggestion,
                            defined: defined.clone(),
                        };
                        self.err(error, &key_path, Some(&key_origin));
                        None
                    }
                }
            };
            let initrd = self.bool(&leaf(&["options", "initrd"]), true);
            let headless = self.bool(&leaf(&["options", "headless"]), false);
            let timeout_path = leaf(&["options", "timeout"]);
            let timeout = self.entry(&timeout_path).is_some().then(|| {
                self.duration(
                    &timeout_path,
                    Duration::from_secs(defaults::BOOT_DEADLINE_S),
                    Duration::from_secs(1),
                    Duration::from_secs(24 * 3600),
                )
            });
            // A key that failed its own validation is reported there; the volume is dropped.
            if let (Some(uuid), Some(key), true) = (uuid, key, name_ok) {
                if keys.contains_key(&key) {
                    let options = VolumeOptions {
                        initrd,
                        headless,
                        timeout,
                    };
                    out.insert(name, VolumeSettings { uuid, key, options });
                }
            }
        }
        out
    }

    fn network(&mut self) -> NetworkSettings {
        let np = |l: &str| p(&["network", l]);
        let connect_timeout = self.duration(
            &np("connect_timeout"),
            Duration::from_secs(defaults::CONNECT_TIMEOUT_S),
            Duration::from_millis(100),
            Duration::from_secs(300),
        );
        let request_timeout = self.duration(
            &np("request_timeout"),
            Duration::from_secs(defaults::REQUEST_TIMEOUT_S),
            Duration::from_secs(1),
            Duration::from_secs(1800),
        );
        if connect_timeout > request_timeout {
            let origin = self.entry(&np("connect_timeout")).map(|e| e.origin.clone());
            let error = ConfigError::Inconsistent {
                found: format_duration(connect_timeout),
                other_key: "network.request_timeout",
                other_value: format_duration(request_timeout),
                fix: "the connect timeout is part of the request timeout; lower connect_timeout \
                      or raise request_timeout",
            };
            self.err(error, &np("connect_timeout"), origin.as_ref());
        }
        let retries = match self.entry(&np("retries")).cloned() {
            Some(Entry {
                value: RawValue::Int(n),
                origin,
            }) => match u32::try_from(n).ok().filter(|n| *n <= 100) {
                Some(n) => n,
                None => {
                    let error = ConfigError::OutOfRange {
                        found: n.to_string(),
                        min: "0".into(),
                        max: "100".into(),
                    };
                    self.err(error, &np("retries"), Some(&origin));
                    defaults::RETRIES
                }
            },
            _ => defaults::RETRIES,
        };
        let backoff_initial = self.duration(
            &np("backoff_initial"),
            Duration::from_millis(defaults::BACKOFF_INITIAL_MS),
            Duration::from_millis(10),
            Duration::from_secs(600),
        );
        let backoff_max = self.duration(
            &np("backoff_max"),
            Duration::from_secs(defaults::BACKOFF_MAX_S),
            Duration::from_millis(10),
            Duration::from_secs(3600),
        );
        if backoff_initial > backoff_max {
            let origin = self.entry(&np("backoff_initial")).map(|e| e.origin.clone());
            let error = ConfigError::Inconsistent {
                found: format_duration(backoff_initial),
                other_key: "network.backoff_max",
                other_value: format_duration(backoff_max),
                fix: "the first delay cannot exceed the largest one; lower backoff_initial or \
                      raise backoff_max",
            };
            self.err(error, &np("backoff_initial"), origin.as_ref());
        }
        NetworkSettings {
            connect_timeout,
            request_timeout,
            retries,
            backoff_initial,
            backoff_max,
        }
    }

    fn paths(&mut self, path: &KeyPath) -> Vec<PathBuf> {
        let Some(Entry {
            value: RawValue::StrList(list),
            origin,
        }) = self.entry(path).cloned()
        else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for s in list {
            match absolute_path(&s) {
                Ok(p) => out.push(p),
                Err(e) => self.err(e, path, Some(&origin)),
            }
        }
        out
    }
}

fn absolute_path(s: &str) -> Result<PathBuf, ConfigError> {
    if s.starts_with('/') {
        Ok(PathBuf::from(s))
    } else {
        Err(ConfigError::RelativePath {
            found: s.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::fragments::parse_str;
    use super::*;
    use std::path::Path;

    const KEY_URL: &str = "https://contoso.vault.azure.net/keys/disk";
    const UUID_A: &str = "0b4b3e1c-6f1e-4c2a-9d55-2f1f9a7f0c11";

    fn load(files: &[(&str, &str)]) -> Result<Settings, Vec<ConfigProblem>> {
        let frags = files.iter().map(|(name, text)| {
            let (f, problems) = parse_str(Path::new(name), text);
            assert!(problems.is_empty(), "{problems:?}");
            f
        });
        validate(&merge(frags.collect::<Vec<_>>()))
    }

    fn codes(r: Result<Settings, Vec<ConfigProblem>>) -> Vec<(&'static str, String)> {
        r.err()
            .unwrap_or_default()
            .into_iter()
            .map(|p| (p.code(), p.key.unwrap_or_default()))
            .collect()
    }

    #[test]
    fn empty_configuration_gives_documented_defaults() {
        let s = load(&[]).unwrap();
        assert_eq!(s.evidence.source, EvidenceSource::Auto);
        assert_eq!(s.evidence.tcti, "device:/dev/tpmrm0");
        assert_eq!(
            s.evidence.event_log,
            PathBuf::from("/sys/kernel/security/tpm0/binary_bios_measurements")
        );
        assert_eq!(s.identity.identity, Identity::SystemAssigned);
        assert_eq!(s.identity.imds_url.as_str(), "http://169.254.169.254/");
        assert_eq!(s.attestation, None);
        assert_eq!(s.boot.deadline, Duration::from_secs(300));
        assert_eq!(s.network.connect_timeout, Duration::from_secs(5));
        assert_eq!(s.log.level, LogLevel::Info);
        assert!(s.keys.is_empty() && s.volumes.is_empty());
    }

    #[test]
    fn later_fragment_wins_per_key_inside_named_tables() {
        let main = format!(
            "[attestation]\nprovider = \"https://a.eus.attest.azure.net\"\n\
             [keys.disk]\nurl = \"{KEY_URL}\"\nenc = \"RSA_AES_KEY_WRAP_384\"\n\
             [volumes.data]\nuuid = \"{UUID_A}\"\nkey = \"disk\"\n"
        );
        let dropin = "[keys.disk]\nenc = \"CKM_RSA_AES_KEY_WRAP\"\n[volumes.data.options]\nheadless = true\n";
        let s = load(&[("/main.toml", &main), ("/d/10.toml", dropin)]).unwrap();
        let k = &s.keys["disk"];
        assert_eq!(k.enc, KeyWrap::CkmRsaAesKeyWrap);
        assert_eq!(k.url.name, "disk");
        assert_eq!(
            s.sources.origin("keys.disk.enc").unwrap().file,
            Path::new("/d/10.toml")
        );
        assert_eq!(
            s.sources.origin("keys.disk.url").unwrap().file,
            Path::new("/main.toml")
        );
        assert!(s.volumes["data"].options.headless);
        assert!(s.volumes["data"].options.initrd);
    }

    #[test]
    fn identity_selectors_conflict_and_guids_are_checked() {
        let r = load(&[(
            "/m",
            "[identity]\nclient_id = \"6f1c7a2e-0b5d-4c8a-9e3f-2a1b0c9d8e7f\"\nobject_id = \"nope\"\n",
        )]);
        assert_eq!(
            codes(r),
            vec![
                ("config-invalid-guid", "identity.object_id".into()),
                ("config-identity-conflict", "identity.object_id".into()),
            ]
        );
        let s = load(&[(
            "/m",
            "[identity]\nobject_id = \"6F1C7A2E-0B5D-4C8A-9E3F-2A1B0C9D8E7F\"\n",
        )])
        .unwrap();
        assert_eq!(
            s.identity.identity,
            Identity::ObjectId(Uuid::from_u128(0x6f1c7a2e_0b5d_4c8a_9e3f_2a1b0c9d8e7f))
        );
    }

    #[test]
    fn keys_need_a_provider_and_volumes_need_defined_keys() {
        let text = format!(
            "[keys.disk]\nurl = \"{KEY_URL}\"\n[volumes.data]\nuuid = \"{UUID_A}\"\nkey = \"dsik\"\n"
        );
        let problems = load(&[("/m", &text)]).unwrap_err();
        let c: Vec<_> = problems.iter().map(|p| p.code()).collect();
        assert_eq!(c, vec!["config-missing-key", "config-undefined-key"]);
        assert!(matches!(
            &problems[1].error,
            ConfigError::UndefinedKey { suggestion: Some(s), .. } if s == "disk"
        ));
        assert_eq!(problems[1].line, Some(5));
    }

    #[test]
    fn duplicate_uuids_name_both_volumes() {
        let text = format!(
            "[attestation]\nprovider = \"https://a.eus.attest.azure.net\"\n[keys.k]\nurl = \"{KEY_URL}\"\n\
             [volumes.a]\nuuid = \"{UUID_A}\"\nkey = \"k\"\n\
             [volumes.b]\nuuid = \"{}\"\nkey = \"k\"\n",
            UUID_A.to_uppercase()
        );
        let problems = load(&[("/m", &text)]).unwrap_err();
        assert_eq!(problems.len(), 1);
        match &problems[0].error {
            ConfigError::DuplicateUuid {
                volume,
                other_volume,
                other_origin,
                ..
            } => {
                assert_eq!((volume.as_str(), other_volume.as_str()), ("b", "a"));
                assert_eq!(other_origin.line, 6);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(problems[0].line, Some(9));
    }

    #[test]
    fn ranges_and_consistency() {
        let r = load(&[(
            "/m",
            "[network]\nconnect_timeout = \"1m\"\nrequest_timeout = \"10s\"\nretries = 101\n\
             backoff_initial = \"2m\"\nbackoff_max = \"1m\"\n[boot]\ndeadline = \"0s\"\n",
        )]);
        assert_eq!(
            codes(r),
            vec![
                ("config-inconsistent", "network.connect_timeout".into()),
                ("config-out-of-range", "network.retries".into()),
                ("config-inconsistent", "network.backoff_initial".into()),
                ("config-out-of-range", "boot.deadline".into()),
            ]
        );
    }

    #[test]
    fn acl_entries_are_checked_one_by_one() {
        let text = format!(
            "[attestation]\nprovider = \"https://a.eus.attest.azure.net\"\n[keys.k]\nurl = \"{KEY_URL}\"\n\
             allow_uids = [0, \"backup\", -1]\nallow_gids = [\"1000\"]\nallow_units = [\"backup.service\", \"x@.service\"]\n"
        );
        assert_eq!(
            codes(load(&[("/m", &text)])),
            vec![
                ("config-invalid-principal", "keys.k.allow_uids".into()),
                ("config-invalid-principal", "keys.k.allow_gids".into()),
                ("config-invalid-unit", "keys.k.allow_units".into()),
            ]
        );
        let ok = text
            .replace(", -1]", "]")
            .replace("[\"1000\"]", "[1000]")
            .replace(", \"x@.service\"", "");
        let s = load(&[("/m", &ok)]).unwrap();
        let acl = &s.keys["k"].acl;
        assert_eq!(
            acl.uids,
            vec![Principal::Id(0), Principal::Name("backup".into())]
        );
        assert_eq!(acl.gids, vec![Principal::Id(1000)]);
        assert!(!acl.denies_everyone());
    }

    #[test]
    fn defaults_for_keys_and_relative_paths() {
        let text = format!(
            "[attestation]\nprovider = \"http://127.0.0.1:8443\"\n[keys.k]\nurl = \"{KEY_URL}\"\n\
             [trust]\nca_files = [\"ca.pem\"]\n"
        );
        assert_eq!(
            codes(load(&[("/m", &text)])),
            vec![("config-relative-path", "trust.ca_files".into())]
        );
        let s = load(&[("/m", &text.replace("ca.pem", "/etc/skrd/ca.pem"))]).unwrap();
        assert_eq!(s.keys["k"].enc, KeyWrap::RsaAesKeyWrap256);
        assert_eq!(s.keys["k"].api_version, "7.4");
        assert!(s.keys["k"].acl.denies_everyone());
        assert_eq!(s.attestation.unwrap().api_version, "2020-10-01");
    }

    #[test]
    fn remaining_codes_each_have_a_trigger() {
        let text = format!(
            "[evidence]\ntcti = \":nope\"\n\
             [identity]\nresource_id = \"/subscriptions/x\"\n\
             [attestation]\nprovider = \"https://a.eus.attest.azure.net\"\napi_version = \"latest\"\n\
             [keys.\"bad name\"]\nurl = \"{KEY_URL}\"\n\
             [keys.k]\nurl = \"{KEY_URL}\"\n\
             [volumes.v1]\nuuid = \"0b4b3e1c6f1e4c2a9d552f1f9a7f0c11\"\nkey = \"k\"\n\
             [volumes.v2]\nkey = \"k\"\n\
             [volumes.v3]\nuuid = \"{UUID_A}\"\n"
        );
        assert_eq!(
            codes(load(&[("/m", &text)])),
            vec![
                ("config-invalid-tcti", "evidence.tcti".into()),
                ("config-invalid-resource-id", "identity.resource_id".into()),
                ("config-invalid-name", "keys.\"bad name\"".into()),
                (
                    "config-invalid-api-version",
                    "attestation.api_version".into()
                ),
                ("config-invalid-luks-uuid", "volumes.v1.uuid".into()),
                ("config-missing-key", "volumes.v2.uuid".into()),
                ("config-missing-key", "volumes.v3.key".into()),
            ]
        );
    }
}
