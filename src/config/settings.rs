//! Step 3 of 3, the result: validated [`Settings`] whose types cannot hold an invalid value,
//! plus [`Sources`] (which file set which key) and the flattened view `skrctl config show`
//! prints. Pure; built by [`super::validate`].

use super::error::Origin;
use super::values::{format_duration, IdentityResourceId, KeyUrl, Principal};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;
use url::Url;
use uuid::Uuid;

/// Built-in defaults (also stated in `config/skrd.toml` and `docs/man/skrd.toml.5`).
pub mod defaults {
    /// `evidence.tcti`: the kernel's TPM resource manager.
    pub const TCTI: &str = "device:/dev/tpmrm0";
    /// `evidence.event_log`: the TCG boot event log the kernel exposes (sent to MAA).
    pub const EVENT_LOG: &str = "/sys/kernel/security/tpm0/binary_bios_measurements";
    /// `identity.imds_url`: Azure's instance metadata service (plain http, link-local).
    pub const IMDS_URL: &str = "http://169.254.169.254";
    /// `attestation.api_version`: what Microsoft's clients send to `/attest/AzureGuest` and
    /// `/attest/SevSnpVm` (PROTOCOLS.md §5).
    pub const MAA_API_VERSION: &str = "2020-10-01";
    /// `keys.NAME.api_version`: the Key Vault release API version the sidecar uses (§6.1).
    pub const AKV_API_VERSION: &str = "7.4";
    /// `network.connect_timeout`, seconds.
    pub const CONNECT_TIMEOUT_S: u64 = 5;
    /// `network.request_timeout`, seconds.
    pub const REQUEST_TIMEOUT_S: u64 = 30;
    /// `network.retries`.
    pub const RETRIES: u32 = 8;
    /// `network.backoff_initial`, milliseconds.
    pub const BACKOFF_INITIAL_MS: u64 = 500;
    /// `network.backoff_max`, seconds.
    pub const BACKOFF_MAX_S: u64 = 30;
    /// `boot.deadline`, seconds (5 minutes, DESIGN.md).
    pub const BOOT_DEADLINE_S: u64 = 300;
}

/// Where SEV-SNP evidence comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvidenceSource {
    /// The vTPM when `/dev/tpmrm0` holds an HCL report, else `/dev/sev-guest`.
    Auto,
    /// The vTPM's HCL report (Azure confidential VMs).
    Vtpm,
    /// Raw `/dev/sev-guest` reports (confidential containers, bare SNP guests).
    SevGuest,
}

impl EvidenceSource {
    /// The spelling used in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Vtpm => "vtpm",
            Self::SevGuest => "sev-guest",
        }
    }
}

/// `[evidence]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvidenceSettings {
    /// Which evidence source to use.
    pub source: EvidenceSource,
    /// tpm2-tss TCTI string (validated syntax: `NAME` or `NAME:CONFIG`).
    pub tcti: String,
    /// The TCG boot event log (absolute path); a missing file means an empty log.
    pub event_log: PathBuf,
}

/// Which managed identity requests tokens from IMDS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// The VM's system-assigned identity (no selector sent).
    SystemAssigned,
    /// A user-assigned identity by client (application) id: IMDS `client_id=`.
    ClientId(Uuid),
    /// A user-assigned identity by object (principal) id: IMDS `object_id=`.
    ObjectId(Uuid),
    /// A user-assigned identity by ARM resource id: IMDS `msi_res_id=`.
    ResourceId(IdentityResourceId),
}

/// `[identity]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentitySettings {
    /// The identity to use.
    pub identity: Identity,
    /// IMDS base URL (scheme and host, no path).
    pub imds_url: Url,
}

/// `[attestation]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestationSettings {
    /// MAA provider base URL: https, or http to a loopback host; no path.
    pub provider: Url,
    /// The api-version query parameter of attest calls.
    pub api_version: String,
}

/// How Key Vault wraps the released key to our transfer key (PROTOCOLS.md §6.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyWrap {
    /// RSA-OAEP with SHA-1, then AES key wrap with padding (Key Vault's default).
    CkmRsaAesKeyWrap,
    /// RSA-OAEP with SHA-256, then AES key wrap with padding (skrd's default).
    RsaAesKeyWrap256,
    /// RSA-OAEP with SHA-384, then AES key wrap with padding.
    RsaAesKeyWrap384,
}

impl KeyWrap {
    /// The spellings accepted in the configuration, which are Key Vault's `enc` values.
    pub const NAMES: &'static [&'static str] = &[
        "CKM_RSA_AES_KEY_WRAP",
        "RSA_AES_KEY_WRAP_256",
        "RSA_AES_KEY_WRAP_384",
    ];

    /// Key Vault's name for it (the `enc` request field).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CkmRsaAesKeyWrap => "CKM_RSA_AES_KEY_WRAP",
            Self::RsaAesKeyWrap256 => "RSA_AES_KEY_WRAP_256",
            Self::RsaAesKeyWrap384 => "RSA_AES_KEY_WRAP_384",
        }
    }

    /// Parses Key Vault's name.
    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "CKM_RSA_AES_KEY_WRAP" => Some(Self::CkmRsaAesKeyWrap),
            "RSA_AES_KEY_WRAP_256" => Some(Self::RsaAesKeyWrap256),
            "RSA_AES_KEY_WRAP_384" => Some(Self::RsaAesKeyWrap384),
            _ => None,
        }
    }
}

/// Local callers allowed to receive a key from the running daemon. Empty = nobody (default deny).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyAcl {
    /// Allowed user ids or names.
    pub uids: Vec<Principal>,
    /// Allowed group ids or names (primary or supplementary group of the caller).
    pub gids: Vec<Principal>,
    /// Allowed systemd units (the caller's unit, from its cgroup).
    pub units: Vec<String>,
}

impl KeyAcl {
    /// Whether no local caller may receive this key.
    pub fn denies_everyone(&self) -> bool {
        self.uids.is_empty() && self.gids.is_empty() && self.units.is_empty()
    }
}

/// `[keys.NAME]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySettings {
    /// The key in Key Vault or Managed HSM.
    pub url: KeyUrl,
    /// The wrapping algorithm to request.
    pub enc: KeyWrap,
    /// The api-version query parameter of release calls.
    pub api_version: String,
    /// Who may receive the key over D-Bus (volume unlocking needs no ACL entry).
    pub acl: KeyAcl,
}

/// `[volumes.NAME.options]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VolumeOptions {
    /// Unlocked in the initramfs (true) or by the daemon after switch-root (false).
    pub initrd: bool,
    /// On failure, fail without falling back to systemd's passphrase prompt.
    pub headless: bool,
    /// This volume's own deadline, replacing `boot.deadline`.
    pub timeout: Option<Duration>,
}

/// `[volumes.NAME]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeSettings {
    /// The LUKS2 header's UUID (`cryptsetup luksUUID`).
    pub uuid: Uuid,
    /// The name of the `[keys.NAME]` entry that unlocks it (guaranteed to exist).
    pub key: String,
    /// Options.
    pub options: VolumeOptions,
}

/// `[network]`: every Azure call is bounded by these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetworkSettings {
    /// TCP + TLS connect timeout (non-zero, at most `request_timeout`).
    pub connect_timeout: Duration,
    /// Whole-request timeout (non-zero).
    pub request_timeout: Duration,
    /// Retries after the first attempt of a retryable call.
    pub retries: u32,
    /// First backoff delay (non-zero, at most `backoff_max`); doubles per retry, with jitter.
    pub backoff_initial: Duration,
    /// Largest backoff delay.
    pub backoff_max: Duration,
}

/// `[boot]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootSettings {
    /// How long the initramfs tries before giving up on a volume (non-zero).
    pub deadline: Duration,
}

/// `[trust]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TrustSettings {
    /// Extra TLS roots (PEM), added to the system's.
    pub ca_files: Vec<PathBuf>,
    /// Extra AMD root keys (ARK, PEM) trusted for SNP evidence. Tests only.
    pub amd_test_roots: Vec<PathBuf>,
}

/// Log verbosity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// Only errors.
    Error,
    /// Errors and warnings.
    Warn,
    /// A handful of lines per boot.
    Info,
    /// HTTP statuses, timings.
    Debug,
    /// Wire bodies with secrets removed.
    Trace,
}

impl LogLevel {
    /// The spellings accepted in the configuration.
    pub const NAMES: &'static [&'static str] = &["error", "warn", "info", "debug", "trace"];

    /// The configuration spelling (also a valid `tracing` filter directive).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Warn => "warn",
            Self::Info => "info",
            Self::Debug => "debug",
            Self::Trace => "trace",
        }
    }

    /// Parses the configuration spelling.
    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "error" => Some(Self::Error),
            "warn" => Some(Self::Warn),
            "info" => Some(Self::Info),
            "debug" => Some(Self::Debug),
            "trace" => Some(Self::Trace),
            _ => None,
        }
    }
}

/// `[log]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogSettings {
    /// Verbosity (the `SKRD_LOG` environment variable, when set, wins).
    pub level: LogLevel,
}

/// Which files were read and which file set each key.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Sources {
    /// Files read, in merge order (main file first, then drop-ins lexically).
    pub files: Vec<PathBuf>,
    /// Dotted key path (`volumes.data.key`) → where its effective value was written.
    pub origins: BTreeMap<String, Origin>,
}

impl Sources {
    /// Where the effective value of `key` was written; `None` means the built-in default.
    pub fn origin(&self, key: &str) -> Option<&Origin> {
        self.origins.get(key)
    }
}

/// The whole validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `[evidence]`.
    pub evidence: EvidenceSettings,
    /// `[identity]`.
    pub identity: IdentitySettings,
    /// `[attestation]`; `None` only when no key is configured.
    pub attestation: Option<AttestationSettings>,
    /// `[keys.NAME]`, by name.
    pub keys: BTreeMap<String, KeySettings>,
    /// `[volumes.NAME]`, by name; every `key` names an entry of `keys`, no two share a UUID.
    pub volumes: BTreeMap<String, VolumeSettings>,
    /// `[network]`.
    pub network: NetworkSettings,
    /// `[boot]`.
    pub boot: BootSettings,
    /// `[trust]`.
    pub trust: TrustSettings,
    /// `[log]`.
    pub log: LogSettings,
    /// Provenance.
    pub sources: Sources,
}

/// One effective setting, as `skrctl config show` prints it.
#[derive(Debug, Clone, PartialEq)]
pub struct Effective {
    /// Dotted key path.
    pub key: String,
    /// The value, in TOML-like JSON (durations as strings such as "30s").
    pub value: serde_json::Value,
    /// Where it was set; `None` = built-in default.
    pub origin: Option<Origin>,
}

impl Settings {
    /// The volume whose LUKS UUID is `uuid`, if configured.
    pub fn volume_by_uuid(&self, uuid: &Uuid) -> Option<(&str, &VolumeSettings)> {
        self.volumes
            .iter()
            .find(|(_, v)| &v.uuid == uuid)
            .map(|(n, v)| (n.as_str(), v))
    }

    /// Every effective setting, in a stable order, with the file that set it.
    pub fn effective(&self) -> Vec<Effective> {
        use serde_json::{json, Value};
        let dur = |d: Duration| json!(format_duration(d));
        let paths = |v: &[PathBuf]| {
            json!(v
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>())
        };
        let principals = |v: &[Principal]| {
            Value::Array(
                v.iter()
                    .map(|p| match p {
                        Principal::Id(id) => json!(id),
                        Principal::Name(n) => json!(n),
                    })
                    .collect(),
            )
        };
        let mut out: Vec<(String, Value)> = vec![
            (
                "evidence.source".into(),
                json!(self.evidence.source.as_str()),
            ),
            ("evidence.tcti".into(), json!(self.evidence.tcti)),
            (
                "evidence.event_log".into(),
                json!(self.evidence.event_log.display().to_string()),
            ),
        ];
        match &self.identity.identity {
            Identity::SystemAssigned => {}
            Identity::ClientId(g) => out.push(("identity.client_id".into(), json!(g.to_string()))),
            Identity::ObjectId(g) => out.push(("identity.object_id".into(), json!(g.to_string()))),
            Identity::ResourceId(r) => {
                out.push(("identity.resource_id".into(), json!(r.raw)));
            }
        }
        out.push((
            "identity.imds_url".into(),
            json!(self.identity.imds_url.as_str()),
        ));
        if let Some(a) = &self.attestation {
            out.push(("attestation.provider".into(), json!(a.provider.as_str())));
            out.push(("attestation.api_version".into(), json!(a.api_version)));
        }
        for (name, k) in &self.keys {
            let p = |leaf: &str| super::fragments::display_path(&["keys", name, leaf]);
            out.push((p("url"), json!(k.url.url.as_str())));
            out.push((p("enc"), json!(k.enc.as_str())));
            out.push((p("api_version"), json!(k.api_version)));
            out.push((p("allow_uids"), principals(&k.acl.uids)));
            out.push((p("allow_gids"), principals(&k.acl.gids)));
            out.push((p("allow_units"), json!(k.acl.units)));
        }
        for (name, v) in &self.volumes {
            let p = |leaf: &str| {
                let mut path = vec!["volumes", name.as_str()];
                path.extend(leaf.split('.'));
                super::fragments::display_path(&path)
            };
            out.push((p("uuid"), json!(v.uuid.to_string())));
            out.push((p("key"), json!(v.key)));
            out.push((p("options.initrd"), json!(v.options.initrd)));
            out.push((p("options.headless"), json!(v.options.headless)));
            if let Some(t) = v.options.timeout {
                out.push((p("options.timeout"), dur(t)));
            }
        }
        let n = &self.network;
        out.extend([
            ("network.connect_timeout".into(), dur(n.connect_timeout)),
            ("network.request_timeout".into(), dur(n.request_timeout)),
            ("network.retries".into(), json!(n.retries)),
            ("network.backoff_initial".into(), dur(n.backoff_initial)),
            ("network.backoff_max".into(), dur(n.backoff_max)),
            ("boot.deadline".into(), dur(self.boot.deadline)),
            ("trust.ca_files".into(), paths(&self.trust.ca_files)),
            (
                "trust.amd_test_roots".into(),
                paths(&self.trust.amd_test_roots),
            ),
            ("log.level".into(), json!(self.log.level.as_str())),
        ]);
        out.into_iter()
            .map(|(key, value)| Effective {
                origin: self.sources.origin(&key).cloned(),
                key,
                value,
            })
            .collect()
    }
}
