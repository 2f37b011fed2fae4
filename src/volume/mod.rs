//! LUKS2 volumes (I/O edge over libcryptsetup; DESIGN.md "Volumes and the untrusted header").
//!
//! - [`device`]: one opened LUKS2 header (keyslots, the `azure-skr` token, backup/restore).
//! - [`detached`]: the header read once, checked and written to tmpfs for activation.
//! - [`header`]: back the header up before every write and restore it on failure.
//! - [`enroll`](mod@enroll): enroll / unenroll / reenroll skrd's keyslot.
//! - [`status`](mod@status): per-volume state for `skrctl volumes`, and unlock (dm-crypt activation).
//!
//! Trust: the configuration ([`VolumeSpec`], from `[volumes.NAME]`) is the authority. The
//! header is host-controlled input: its UUID must equal the configured one, the passphrase is
//! derived from the CONFIGURED UUID (so a header copied from another volume never opens), and
//! the `azure-skr` token is only cross-checked. Every function here blocks (libcryptsetup) and
//! keeps its device handle on the calling thread; async callers use `spawn_blocking`.

pub mod detached;
pub mod device;
pub mod enroll;
pub mod error;
pub mod failpoint;
pub mod header;
pub mod status;

use std::path::{Path, PathBuf};

use uuid::Uuid;

pub use enroll::{enroll, reenroll, unenroll, Authorization, Change};
pub use error::VolumeError;
pub use status::{status, unlock, VolumeState};

use crate::config::Settings;
use crate::crypto::derive::luks_passphrase;
use crate::format::luks_token::LuksToken;
use crate::secret::Secret;

/// The crypttab options of a volume that come from its `[volumes.NAME.options]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CrypttabOptions {
    /// `headless`: fail instead of prompting for the passphrase.
    pub headless: bool,
    /// Opened in the initramfs (`x-initrd.attach`).
    pub initrd: bool,
}

impl CrypttabOptions {
    /// The options of configured volume `name` (defaults when it is not configured).
    pub fn from_settings(settings: &Settings, name: &str) -> Self {
        settings
            .volumes
            .get(name)
            .map_or_else(Self::default, |v| Self {
                headless: v.options.headless,
                initrd: v.options.initrd,
            })
    }
}

/// What the configuration says about one volume (`[volumes.NAME]` and its key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeSpec {
    /// The crypttab volume name.
    pub name: String,
    /// The configured LUKS UUID (the HKDF salt).
    pub uuid: Uuid,
    /// The key URL without version: `https://VAULT/keys/NAME`.
    pub key_url: String,
    /// The configured key version, `None` for "the current version".
    pub key_version: Option<String>,
}

impl VolumeSpec {
    /// The spec of volume `name` in `settings`.
    pub fn from_settings(settings: &Settings, name: &str) -> Result<Self, VolumeError> {
        let unknown = || VolumeError::UnknownVolume {
            volume: name.to_string(),
            configured: if settings.volumes.is_empty() {
                "none".to_string()
            } else {
                settings
                    .volumes
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        };
        let vol = settings.volumes.get(name).ok_or_else(unknown)?;
        let key = settings.keys.get(&vol.key).ok_or_else(unknown)?;
        Ok(Self {
            name: name.to_string(),
            uuid: vol.uuid,
            key_url: format!("{}keys/{}", key.url.base, key.url.name),
            key_version: key.url.version.clone(),
        })
    }

    /// Every configured volume, by name.
    pub fn all(settings: &Settings) -> Vec<Self> {
        settings
            .volumes
            .keys()
            .filter_map(|n| Self::from_settings(settings, n).ok())
            .collect()
    }

    /// The device node udev gives this volume: `/dev/disk/by-uuid/UUID`.
    pub fn default_device(&self) -> PathBuf {
        PathBuf::from(format!("/dev/disk/by-uuid/{}", self.uuid))
    }

    /// The passphrase of this volume for key material `ikm`: derived from the configured
    /// UUID, never from anything in the header.
    pub fn passphrase(&self, ikm: &Secret) -> Result<Secret, VolumeError> {
        Ok(luks_passphrase(ikm, &self.uuid)?)
    }

    /// Checks a header's token against this spec (`key_url`, and `key_version` when both say
    /// one).
    pub fn check_token(&self, token: &LuksToken) -> Result<(), VolumeError> {
        if token.key_url != self.key_url {
            return Err(VolumeError::TokenMismatch {
                volume: self.name.clone(),
                field: "key_url",
                expected: self.key_url.clone(),
                found: token.key_url.clone(),
            });
        }
        if let (Some(want), Some(got)) = (&self.key_version, &token.key_version) {
            if want != got {
                return Err(VolumeError::TokenMismatch {
                    volume: self.name.clone(),
                    field: "key_version",
                    expected: want.clone(),
                    found: got.clone(),
                });
            }
        }
        Ok(())
    }

    /// The volume to work on, from a volume name and/or a device path: the name picks the
    /// configured volume (device default `/dev/disk/by-uuid/UUID`); a device alone is matched
    /// to the configured volume with its header's LUKS UUID.
    pub fn resolve(
        settings: &Settings,
        volume: Option<&str>,
        device: Option<&Path>,
    ) -> Result<(Self, PathBuf), VolumeError> {
        if let Some(name) = volume {
            let spec = Self::from_settings(settings, name)?;
            let dev = device.map_or_else(|| spec.default_device(), Path::to_path_buf);
            return Ok((spec, dev));
        }
        let Some(device) = device else {
            return Err(VolumeError::UnknownVolume {
                volume: String::new(),
                configured: settings
                    .volumes
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        };
        let uuid = device::LuksDevice::open(device)?.uuid()?;
        let (name, _) =
            settings
                .volume_by_uuid(&uuid)
                .ok_or_else(|| VolumeError::UuidNotConfigured {
                    device: device.to_path_buf(),
                    found: uuid.to_string(),
                })?;
        Ok((Self::from_settings(settings, name)?, device.to_path_buf()))
    }

    /// The `/etc/crypttab` line for this volume: skrd's key socket as key file, the checked
    /// detached header (`header=`, written by `skrd --prepare-header`) so activation never
    /// re-reads the host's header, `x-initrd.attach` only for volumes opened in the initramfs.
    /// No `key-slot=`: `skrctl reenroll` moves skrd's keyslot to a new number, and the slot's
    /// `priority=prefer` already makes it the one tried first. No `_netdev`: skrd waits for the
    /// network itself, the key file is a local socket.
    pub fn crypttab_line(&self, socket: &str, header_dir: &Path, opts: CrypttabOptions) -> String {
        let mut line = format!(
            "{} UUID={} {} luks,header={}",
            self.name,
            self.uuid,
            socket,
            detached::header_path(header_dir, &self.name).display()
        );
        if opts.headless {
            line.push_str(",headless");
        }
        if opts.initrd {
            line.push_str(",x-initrd.attach");
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crypttab_lines_follow_the_volume_options() {
        let spec = VolumeSpec {
            name: "data".into(),
            uuid: Uuid::parse_str("6f0e2d5a-1c3b-4a7e-9b1d-2f4c6e8a0b13").unwrap(),
            key_url: "https://v.vault.azure.net/keys/disk".into(),
            key_version: None,
        };
        let line = |headless, initrd| {
            spec.crypttab_line(
                "/run/skrd/luks.sock",
                Path::new("/run/skrd/headers"),
                CrypttabOptions { headless, initrd },
            )
        };
        let base = "data UUID=6f0e2d5a-1c3b-4a7e-9b1d-2f4c6e8a0b13 /run/skrd/luks.sock luks,header=/run/skrd/headers/data";
        assert_eq!(line(false, true), format!("{base},x-initrd.attach"));
        // A volume the daemon opens after switch-root is not attached in the initramfs.
        assert_eq!(line(false, false), base);
        assert_eq!(line(true, true), format!("{base},headless,x-initrd.attach"));
    }
}
