//! Pure parsers for single configuration values: durations, GUIDs, LUKS UUIDs, ARM resource
//! ids, service and Key Vault key URLs, systemd unit names, users and groups, names.
//!
//! Each takes the string as written and returns a typed value or the specific reason it was
//! refused; none reads files or the environment. The URL rules (https required, plain http only
//! for loopback hosts) are explained in `config/skrd.toml`.

use super::error::{DurationProblem, UrlProblem};
use std::fmt;
use std::time::Duration;
use url::{Host, Url};
use uuid::Uuid;

/// Parses a duration: one or more `<whole number><unit>` with units `ms`, `s`, `m`, `h`,
/// optionally separated by spaces ("500ms", "30s", "1m30s", "2h").
pub fn parse_duration(s: &str) -> Result<Duration, DurationProblem> {
    let s = s.trim();
    if s.is_empty() {
        return Err(DurationProblem::Empty);
    }
    let mut total: u128 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(DurationProblem::BadNumber);
        }
        let (num, tail) = rest.split_at(digits);
        let n: u128 = num.parse().map_err(|_| DurationProblem::Overflow)?;
        if tail.starts_with(['.', ',']) {
            return Err(DurationProblem::BadNumber);
        }
        let unit_len = tail.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (unit, tail) = tail.split_at(unit_len);
        let millis_per = match unit {
            "" => return Err(DurationProblem::MissingUnit),
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            _ => return Err(DurationProblem::UnknownUnit),
        };
        total = n
            .checked_mul(millis_per)
            .and_then(|v| total.checked_add(v))
            .ok_or(DurationProblem::Overflow)?;
        rest = tail.trim_start();
    }
    let millis = u64::try_from(total).map_err(|_| DurationProblem::Overflow)?;
    Ok(Duration::from_millis(millis))
}

/// Writes a duration the way [`parse_duration`] reads it ("1m30s", "500ms", "0s").
pub fn format_duration(d: Duration) -> String {
    let mut ms = d.as_millis();
    if ms == 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    for (unit, size) in [("h", 3_600_000u128), ("m", 60_000), ("s", 1_000), ("ms", 1)] {
        if ms >= size {
            out.push_str(&format!("{}{unit}", ms / size));
            ms %= size;
        }
    }
    out
}

/// Parses a GUID/UUID written as 36 characters, 8-4-4-4-12 hex digits (either case).
pub fn parse_guid(s: &str) -> Option<Uuid> {
    let bytes = s.as_bytes();
    if bytes.len() != 36 {
        return None;
    }
    for (i, b) in bytes.iter().enumerate() {
        let ok = if matches!(i, 8 | 13 | 18 | 23) {
            *b == b'-'
        } else {
            b.is_ascii_hexdigit()
        };
        if !ok {
            return None;
        }
    }
    Uuid::try_parse(s).ok()
}

/// The ARM resource id of a user-assigned managed identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityResourceId {
    /// The subscription.
    pub subscription: Uuid,
    /// The resource group.
    pub resource_group: String,
    /// The identity's name.
    pub name: String,
    /// The id as written (ARM ids are case-insensitive; IMDS receives it unchanged).
    pub raw: String,
}

impl fmt::Display for IdentityResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

/// Parses `/subscriptions/GUID/resourceGroups/RG/providers/Microsoft.ManagedIdentity/`
/// `userAssignedIdentities/NAME` (fixed segments compared case-insensitively, as ARM does).
pub fn parse_identity_resource_id(s: &str) -> Option<IdentityResourceId> {
    let parts: Vec<&str> = s.strip_prefix('/')?.split('/').collect();
    let [subs, sub, rgs, rg, providers, ns, kind, name] = parts.as_slice() else {
        return None;
    };
    let fixed = [
        (subs, "subscriptions"),
        (rgs, "resourceGroups"),
        (providers, "providers"),
        (ns, "Microsoft.ManagedIdentity"),
        (kind, "userAssignedIdentities"),
    ];
    if !fixed.iter().all(|(a, b)| a.eq_ignore_ascii_case(b)) {
        return None;
    }
    let subscription = parse_guid(sub)?;
    // Resource group: 1-90 of letters, digits, '_', '-', '.', '(', ')', not ending in '.'.
    let rg_ok = (1..=90).contains(&rg.len())
        && rg
            .chars()
            .all(|c| c.is_alphanumeric() || "_-.()".contains(c))
        && !rg.ends_with('.');
    // Identity name: 3-128, letters, digits, '-', '_', starting with a letter or digit.
    let name_ok = (3..=128).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric());
    if !rg_ok || !name_ok {
        return None;
    }
    Some(IdentityResourceId {
        subscription,
        resource_group: rg.to_string(),
        name: name.to_string(),
        raw: s.to_string(),
    })
}

/// Whether a URL's host is a loopback address or `localhost`.
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// The scheme rule of every Azure endpoint: https, or http to a loopback host (tests).
fn check_scheme(url: &Url) -> Result<(), UrlProblem> {
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(url) => Ok(()),
        other => Err(UrlProblem::Scheme {
            found: other.to_string(),
            loopback_http_ok: true,
        }),
    }
}

fn check_common(url: &Url) -> Result<(), UrlProblem> {
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UrlProblem::Credentials);
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(UrlProblem::QueryOrFragment);
    }
    Ok(())
}

fn check_no_path(url: &Url) -> Result<(), UrlProblem> {
    if url.path() != "/" && !url.path().is_empty() {
        return Err(UrlProblem::Path {
            found: url.path().to_string(),
        });
    }
    Ok(())
}

/// Parses the attestation provider's base URL: https (http only for loopback), no path.
pub fn parse_provider_url(s: &str) -> Result<Url, UrlProblem> {
    let url = Url::parse(s).map_err(UrlProblem::Syntax)?;
    check_scheme(&url)?;
    check_common(&url)?;
    check_no_path(&url)?;
    if url.port().is_some() && azure_host(&url, ".attest.azure.net") {
        return Err(UrlProblem::PortOnAzureHost);
    }
    Ok(url)
}

/// Parses the IMDS base URL: http or https to any host (the real IMDS is plain http on the
/// link-local address), no path.
pub fn parse_imds_url(s: &str) -> Result<Url, UrlProblem> {
    let url = Url::parse(s).map_err(UrlProblem::Syntax)?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(UrlProblem::Scheme {
            found: url.scheme().to_string(),
            loopback_http_ok: false,
        });
    }
    check_common(&url)?;
    check_no_path(&url)?;
    Ok(url)
}

fn azure_host(url: &Url, suffix: &str) -> bool {
    url.host_str()
        .is_some_and(|h| h.to_ascii_lowercase().ends_with(suffix))
}

/// Which service holds a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VaultKind {
    /// Azure Key Vault (`*.vault.azure.net` and its sovereign-cloud twins).
    KeyVault,
    /// Azure Managed HSM (`*.managedhsm.azure.net`).
    ManagedHsm,
    /// Any other host (skr-emulator, private test endpoints); treated as Key Vault.
    Custom,
}

impl VaultKind {
    /// The name used in `skrctl config show`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::KeyVault => "key-vault",
            Self::ManagedHsm => "managed-hsm",
            Self::Custom => "custom",
        }
    }
}

/// Host suffix → (kind, managed-identity token resource).
const VAULT_HOSTS: &[(&str, VaultKind, &str)] = &[
    (
        ".vault.azure.net",
        VaultKind::KeyVault,
        "https://vault.azure.net",
    ),
    (
        ".managedhsm.azure.net",
        VaultKind::ManagedHsm,
        "https://managedhsm.azure.net",
    ),
    (
        ".vault.azure.cn",
        VaultKind::KeyVault,
        "https://vault.azure.cn",
    ),
    (
        ".vault.usgovcloudapi.net",
        VaultKind::KeyVault,
        "https://vault.usgovcloudapi.net",
    ),
];

/// A parsed Key Vault / Managed HSM key identifier: `BASE/keys/NAME[/VERSION]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyUrl {
    /// The URL as given (normalised by the URL parser).
    pub url: Url,
    /// Which service the host belongs to.
    pub kind: VaultKind,
    /// `scheme://host[:port]/`, the vault or HSM itself.
    pub base: Url,
    /// The key's name in the vault.
    pub name: String,
    /// The key version, or `None` for "the current version".
    pub version: Option<String>,
    /// The audience of the managed-identity token for this vault
    /// (`https://vault.azure.net`, `https://managedhsm.azure.net`, ...).
    pub token_resource: &'static str,
}

impl fmt::Display for KeyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.url.as_str())
    }
}

/// Parses a key identifier as shown by `az keyvault key show --query key.kid`.
pub fn parse_key_url(s: &str) -> Result<KeyUrl, UrlProblem> {
    let url = Url::parse(s).map_err(UrlProblem::Syntax)?;
    check_scheme(&url)?;
    check_common(&url)?;
    let (kind, token_resource) = VAULT_HOSTS
        .iter()
        .find(|(suffix, _, _)| azure_host(&url, suffix))
        .map_or(
            (VaultKind::Custom, "https://vault.azure.net"),
            |(_, k, r)| (*k, *r),
        );
    if kind != VaultKind::Custom && url.port().is_some() {
        return Err(UrlProblem::PortOnAzureHost);
    }
    let path = url.path().to_string();
    let trimmed = path.strip_suffix('/').unwrap_or(&path);
    let segments: Vec<&str> = trimmed.split('/').skip(1).collect();
    let (name, version) = match segments.as_slice() {
        ["keys", name] => (*name, None),
        ["keys", name, version] => (*name, Some(*version)),
        _ => return Err(UrlProblem::KeyPath { found: path }),
    };
    let name_ok = (1..=127).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if !name_ok {
        return Err(UrlProblem::KeyName {
            found: name.to_string(),
        });
    }
    if let Some(v) = version {
        if !(1..=64).contains(&v.len()) || !v.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(UrlProblem::KeyVersion {
                found: v.to_string(),
            });
        }
    }
    let name = name.to_string();
    let version = version.map(str::to_string);
    let mut base = url.clone();
    base.set_path("/");
    Ok(KeyUrl {
        url,
        kind,
        base,
        name,
        version,
        token_resource,
    })
}

/// Whether `s` is a systemd unit a process can run in: `NAME.service` or `NAME.scope`, where a
/// template must carry an instance (`app@1.service`, not `app@.service`). Rules follow systemd's
/// `unit_name_is_valid()`: at most 255 characters of `[A-Za-z0-9:_.\-]` plus one `@`.
pub fn is_valid_unit(s: &str) -> bool {
    if s.len() > 255 {
        return false;
    }
    let Some((prefix, suffix)) = s.rsplit_once('.') else {
        return false;
    };
    if !matches!(suffix, "service" | "scope") || prefix.is_empty() {
        return false;
    }
    let ok_char = |c: char| c.is_ascii_alphanumeric() || ":_.-\\".contains(c);
    match prefix.split_once('@') {
        None => prefix.chars().all(ok_char),
        Some((name, instance)) => {
            !name.is_empty()
                && !instance.is_empty()
                && name.chars().all(ok_char)
                && instance.chars().all(ok_char)
        }
    }
}

/// A caller allowed to receive a key: a numeric id or a user/group name resolved at runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A numeric uid or gid.
    Id(u32),
    /// A user or group name, resolved when a caller asks.
    Name(String),
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Id(id) => write!(f, "{id}"),
            Self::Name(n) => f.write_str(n),
        }
    }
}

/// Validates an id (0 to 2^32-2; 2^32-1 is "no id") or a name in systemd's strict user-name
/// rules: `[A-Za-z_][A-Za-z0-9_-]*` with an optional trailing `$`, at most 31 characters.
pub fn parse_principal_id(n: i64) -> Option<Principal> {
    u32::try_from(n)
        .ok()
        .filter(|id| *id != u32::MAX)
        .map(Principal::Id)
}

/// See [`parse_principal_id`].
pub fn parse_principal_name(s: &str) -> Option<Principal> {
    let body = s.strip_suffix('$').unwrap_or(s);
    let ok = (1..=31).contains(&s.len())
        && body.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && body
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    ok.then(|| Principal::Name(s.to_string()))
}

/// Rule for `[keys.NAME]` names (they appear in D-Bus calls and logs).
pub const KEY_NAME_RULE: &str =
    "use 1-64 letters, digits, '_' and '-' (the name is used in D-Bus calls and logs)";

/// Whether `s` is a usable `[keys.NAME]` name.
pub fn is_valid_key_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Rule for `[volumes.NAME]` names (the crypttab volume name, also the device-mapper name).
pub const VOLUME_NAME_RULE: &str = "use the crypttab volume name: 1-64 letters, digits, '_', '.', \
     '+' and '-', not starting with '.' or '-'";

/// Whether `s` is a usable `[volumes.NAME]` name.
pub fn is_valid_volume_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && !s.starts_with(['.', '-'])
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.+-".contains(c))
}

/// Whether `s` is a TCTI string: `NAME` or `NAME:CONFIG` (tpm2-tss's TCTI loader syntax).
pub fn is_valid_tcti(s: &str) -> bool {
    let (name, conf) = s.split_once(':').unwrap_or((s, ""));
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._/+-".contains(c))
        && !conf.chars().any(|c| c.is_control() || c.is_whitespace())
}

/// Whether `s` looks like an Azure REST api-version ("2020-10-01", "7.4", "2023-04-01-preview").
pub fn is_valid_api_version(s: &str) -> bool {
    (1..=32).contains(&s.len())
        && s.starts_with(|c: char| c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(
            parse_duration(" 1h 2m 3s 4ms "),
            Ok(Duration::from_millis(3_723_004))
        );
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration(""), Err(DurationProblem::Empty));
        assert_eq!(parse_duration("30"), Err(DurationProblem::MissingUnit));
        assert_eq!(parse_duration("3d"), Err(DurationProblem::UnknownUnit));
        assert_eq!(parse_duration("1.5s"), Err(DurationProblem::BadNumber));
        assert_eq!(parse_duration("s"), Err(DurationProblem::BadNumber));
        assert_eq!(parse_duration("-1s"), Err(DurationProblem::BadNumber));
        assert_eq!(
            parse_duration("99999999999999999999999999999999999999999h"),
            Err(DurationProblem::Overflow)
        );
        assert_eq!(
            parse_duration("9999999999999999h"),
            Err(DurationProblem::Overflow)
        );
    }

    #[test]
    fn durations_round_trip_through_format() {
        for s in ["5s", "1m30s", "500ms", "2h", "1h1ms", "0s"] {
            let d = parse_duration(s).unwrap();
            assert_eq!(format_duration(d), s);
        }
    }

    #[test]
    fn guids() {
        let g = parse_guid("6F1C7A2E-0B5D-4C8A-9E3F-2A1B0C9D8E7F").unwrap();
        assert_eq!(g.to_string(), "6f1c7a2e-0b5d-4c8a-9e3f-2a1b0c9d8e7f");
        assert!(parse_guid("6f1c7a2e0b5d4c8a9e3f2a1b0c9d8e7f").is_none());
        assert!(parse_guid("{6f1c7a2e-0b5d-4c8a-9e3f-2a1b0c9d8e7f}").is_none());
        assert!(parse_guid("6f1c7a2e-0b5d-4c8a-9e3f-2a1b0c9d8e7g").is_none());
        assert!(parse_guid("6f1c7a2e-0b5d-4c8a-9e3f+2a1b0c9d8e7f").is_none());
    }

    #[test]
    fn identity_resource_ids() {
        let id = "/subscriptions/6f1c7a2e-0b5d-4c8a-9e3f-2a1b0c9d8e7f/resourceGroups/rg-cvm/\
                  providers/Microsoft.ManagedIdentity/userAssignedIdentities/skr-id";
        let parsed = parse_identity_resource_id(id).unwrap();
        assert_eq!(parsed.resource_group, "rg-cvm");
        assert_eq!(parsed.name, "skr-id");
        // ARM ids are case-insensitive in their fixed segments.
        assert!(parse_identity_resource_id(&id.to_lowercase()).is_some());
        assert!(parse_identity_resource_id(
            &id.replace("Microsoft.ManagedIdentity", "Microsoft.Compute")
        )
        .is_none());
        assert!(parse_identity_resource_id(&format!("{id}/extra")).is_none());
        assert!(parse_identity_resource_id(id.trim_start_matches('/')).is_none());
        assert!(parse_identity_resource_id("").is_none());
    }

    #[test]
    fn provider_urls() {
        assert!(parse_provider_url("https://sharedeus2.eus2.attest.azure.net").is_ok());
        assert!(parse_provider_url("https://sharedeus2.eus2.attest.azure.net/").is_ok());
        assert!(parse_provider_url("http://127.0.0.1:8443").is_ok());
        assert!(parse_provider_url("http://[::1]:8443").is_ok());
        assert!(parse_provider_url("http://localhost:8443").is_ok());
        assert!(matches!(
            parse_provider_url("http://sharedeus2.eus2.attest.azure.net"),
            Err(UrlProblem::Scheme { .. })
        ));
        assert!(matches!(
            parse_provider_url("http://127.0.0.1.example.com"),
            Err(UrlProblem::Scheme { .. })
        ));
        assert!(matches!(
            parse_provider_url("https://x.eus.attest.azure.net/attest/AzureGuest"),
            Err(UrlProblem::Path { .. })
        ));
        assert!(matches!(
            parse_provider_url("https://x.eus.attest.azure.net:8443"),
            Err(UrlProblem::PortOnAzureHost)
        ));
        assert!(matches!(
            parse_provider_url("https://u:p@x.eus.attest.azure.net"),
            Err(UrlProblem::Credentials)
        ));
        assert!(matches!(
            parse_provider_url("https://x.eus.attest.azure.net?a=b"),
            Err(UrlProblem::QueryOrFragment)
        ));
        assert!(matches!(
            parse_provider_url("not a url"),
            Err(UrlProblem::Syntax(_))
        ));
    }

    #[test]
    fn key_urls() {
        let k = parse_key_url(
            "https://contoso.vault.azure.net/keys/disk-key/0123456789abcdef0123456789abcdef",
        )
        .unwrap();
        assert_eq!(k.kind, VaultKind::KeyVault);
        assert_eq!(k.base.as_str(), "https://contoso.vault.azure.net/");
        assert_eq!(k.name, "disk-key");
        assert_eq!(
            k.version.as_deref(),
            Some("0123456789abcdef0123456789abcdef")
        );
        assert_eq!(k.token_resource, "https://vault.azure.net");

        let h = parse_key_url("https://contoso.managedhsm.azure.net/keys/k1").unwrap();
        assert_eq!(h.kind, VaultKind::ManagedHsm);
        assert_eq!(h.version, None);
        assert_eq!(h.token_resource, "https://managedhsm.azure.net");

        let e = parse_key_url("https://127.0.0.1:9443/keys/k1/").unwrap();
        assert_eq!(e.kind, VaultKind::Custom);
        assert_eq!(e.base.as_str(), "https://127.0.0.1:9443/");

        for (bad, what) in [
            ("http://contoso.vault.azure.net/keys/k", "scheme"),
            ("https://contoso.vault.azure.net/secrets/k", "path"),
            ("https://contoso.vault.azure.net/keys", "path"),
            ("https://contoso.vault.azure.net/keys/k/v/x", "path"),
            ("https://contoso.vault.azure.net/keys/k_1", "name"),
            ("https://contoso.vault.azure.net/keys/k/v-1", "version"),
            ("https://contoso.vault.azure.net:444/keys/k", "port"),
        ] {
            let r = parse_key_url(bad);
            let ok = matches!(
                (what, &r),
                ("scheme", Err(UrlProblem::Scheme { .. }))
                    | ("path", Err(UrlProblem::KeyPath { .. }))
                    | ("name", Err(UrlProblem::KeyName { .. }))
                    | ("version", Err(UrlProblem::KeyVersion { .. }))
                    | ("port", Err(UrlProblem::PortOnAzureHost))
            );
            assert!(ok, "{bad}: {r:?}");
        }
    }

    #[test]
    fn units() {
        for good in [
            "backup.service",
            "app@1.service",
            "session-3.scope",
            "a:b\\x2d.service",
        ] {
            assert!(is_valid_unit(good), "{good}");
        }
        for bad in [
            "backup",
            "app@.service",
            "@x.service",
            "x.timer",
            ".service",
            "a b.service",
            "",
        ] {
            assert!(!is_valid_unit(bad), "{bad}");
        }
        assert!(!is_valid_unit(&format!("{}.service", "a".repeat(250))));
    }

    #[test]
    fn principals() {
        assert_eq!(parse_principal_id(0), Some(Principal::Id(0)));
        assert_eq!(
            parse_principal_id(4_294_967_294),
            Some(Principal::Id(4_294_967_294))
        );
        assert_eq!(parse_principal_id(4_294_967_295), None);
        assert_eq!(parse_principal_id(-1), None);
        assert!(parse_principal_name("backup").is_some());
        assert!(parse_principal_name("_svc-1").is_some());
        assert!(parse_principal_name("host$").is_some());
        assert!(parse_principal_name("1000").is_none());
        assert!(parse_principal_name("a b").is_none());
        assert!(parse_principal_name("").is_none());
        assert!(parse_principal_name(&"a".repeat(32)).is_none());
    }

    #[test]
    fn names_tcti_api_versions() {
        assert!(is_valid_key_name("disk-key_1"));
        assert!(!is_valid_key_name("disk key"));
        assert!(!is_valid_key_name(""));
        assert!(is_valid_volume_name("data"));
        assert!(is_valid_volume_name("luks-root.1"));
        assert!(!is_valid_volume_name("-x"));
        assert!(!is_valid_volume_name("a/b"));
        assert!(is_valid_tcti("device:/dev/tpmrm0"));
        assert!(is_valid_tcti("swtpm:host=127.0.0.1,port=2321"));
        assert!(is_valid_tcti("tabrmd"));
        assert!(!is_valid_tcti(":x"));
        assert!(!is_valid_tcti("device:/dev/tpm rm0"));
        assert!(is_valid_api_version("2020-10-01"));
        assert!(is_valid_api_version("7.4"));
        assert!(is_valid_api_version("2023-04-01-preview"));
        assert!(!is_valid_api_version("latest"));
        assert!(!is_valid_api_version("7.4&x=1"));
    }
}
