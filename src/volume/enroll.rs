//! Enroll, unenroll and re-enroll skrd's keyslot on a configured LUKS2 volume (DESIGN.md
//! "Volumes and the untrusted header").
//!
//! Every header write runs inside [`with_backup`](super::header::with_backup). Invariants:
//! - the device's LUKS UUID must be the configured one, and the passphrase is derived from the
//!   configured UUID;
//! - a keyslot not bound to an `azure-skr` token (the recovery passphrase) is never removed,
//!   and skrd's keyslot is never removed when it is the only other way in;
//! - re-enrollment adds and verifies the new keyslot before it removes the old one, so the
//!   volume always has a working skrd keyslot;
//! - repeating an operation that is already done changes nothing ([`Change::Unchanged`]).

use std::path::Path;

use super::device::LuksDevice;
use super::error::VolumeError;
use super::header::with_backup;
use super::VolumeSpec;
use crate::format::luks_token::LuksToken;
use crate::secret::Secret;

/// What an operation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The header was written: skrd's keyslot and token are now these (`None` after unenroll).
    Changed {
        /// skrd's keyslot, if enrolled.
        keyslot: Option<u32>,
        /// The `azure-skr` token number, if enrolled.
        token: Option<u32>,
    },
    /// Nothing to do: the volume was already in the requested state.
    Unchanged {
        /// skrd's keyslot, if enrolled.
        keyslot: Option<u32>,
    },
}

impl Change {
    /// skrd's keyslot after the operation.
    pub fn keyslot(&self) -> Option<u32> {
        match self {
            Self::Changed { keyslot, .. } | Self::Unchanged { keyslot } => *keyslot,
        }
    }
}

/// What authorizes adding skrd's keyslot on first enrollment.
pub enum Authorization<'a> {
    /// The passphrase of an existing (recovery) keyslot.
    Passphrase(&'a Secret),
}

/// Opens `device` and checks it is the configured volume.
pub(crate) fn open_checked(device: &Path, spec: &VolumeSpec) -> Result<LuksDevice, VolumeError> {
    let mut dev = LuksDevice::open(device)?;
    let found = dev.uuid()?;
    if found != spec.uuid {
        return Err(VolumeError::UuidMismatch {
            volume: spec.name.clone(),
            device: device.to_path_buf(),
            expected: spec.uuid.to_string(),
            found: found.to_string(),
        });
    }
    Ok(dev)
}

fn new_token(spec: &VolumeSpec, keyslot: u32, key_version: Option<&str>, now: u64) -> LuksToken {
    LuksToken {
        keyslot,
        key_url: spec.key_url.clone(),
        key_version: key_version.map(str::to_string),
        volume: spec.name.clone(),
        created_at: now,
    }
}

/// Adds a verified skrd keyslot + token, authorized by `auth`; runs inside a backup.
fn add_slot_and_token(
    dev: &mut LuksDevice,
    spec: &VolumeSpec,
    auth: &[u8],
    passphrase: &Secret,
    key_version: Option<&str>,
    now: u64,
) -> Result<(u32, u32), VolumeError> {
    let slot = dev.add_skrd_slot(auth, passphrase.expose())?;
    let token = dev.add_token(&new_token(spec, slot, key_version, now))?;
    if dev.test_passphrase(Some(slot), passphrase.expose())? != Some(slot) {
        return Err(VolumeError::VerifyFailed {
            device: dev.path().to_path_buf(),
            keyslot: slot,
        });
    }
    Ok((slot, token))
}

/// Enrolls volume `spec` on `device`: adds a keyslot holding the passphrase derived from `ikm`
/// (PBKDF2-SHA512, 1000 iterations) and an `azure-skr` token bound to it. `key_version` is the
/// version of the released key (recorded in the token; defaults to the configured one);
/// `now` is Unix seconds. Already enrolled with this key: [`Change::Unchanged`].
pub fn enroll(
    device: &Path,
    spec: &VolumeSpec,
    ikm: &Secret,
    auth: Authorization<'_>,
    key_version: Option<&str>,
    backup_dir: &Path,
    now: u64,
) -> Result<Change, VolumeError> {
    let mut dev = open_checked(device, spec)?;
    let passphrase = spec.passphrase(ikm)?;
    if let Some(found) = dev.skrd_token()? {
        spec.check_token(&found.token)?;
        let slot = found.token.keyslot;
        if dev.test_passphrase(Some(slot), passphrase.expose())? == Some(slot) {
            return Ok(Change::Unchanged {
                keyslot: Some(slot),
            });
        }
        return Err(VolumeError::WrongKey {
            volume: spec.name.clone(),
            keyslot: slot,
        });
    }
    let version = key_version.or(spec.key_version.as_deref());
    // A keyslot that already opens with our passphrase but has no token: an enrollment that
    // was interrupted between the two writes. Bind a token to it instead of adding another.
    if let Some(slot) = dev.test_passphrase(None, passphrase.expose())? {
        let token = with_backup(&mut dev, backup_dir, &spec.name, |dev| {
            dev.prefer(slot)?;
            dev.add_token(&new_token(spec, slot, version, now))
        })?;
        return Ok(Change::Changed {
            keyslot: Some(slot),
            token: Some(token),
        });
    }
    let Authorization::Passphrase(auth) = auth;
    if dev.test_passphrase(None, auth.expose())?.is_none() {
        return Err(VolumeError::AuthRefused {
            device: device.to_path_buf(),
        });
    }
    let (slot, token) = with_backup(&mut dev, backup_dir, &spec.name, |dev| {
        add_slot_and_token(dev, spec, auth.expose(), &passphrase, version, now)
    })?;
    Ok(Change::Changed {
        keyslot: Some(slot),
        token: Some(token),
    })
}

/// Removes skrd's keyslot and token from volume `spec`. Refused when no other keyslot would
/// remain. Not enrolled: [`Change::Unchanged`].
pub fn unenroll(
    device: &Path,
    spec: &VolumeSpec,
    backup_dir: &Path,
) -> Result<Change, VolumeError> {
    let mut dev = open_checked(device, spec)?;
    let Some(found) = dev.skrd_token()? else {
        return Ok(Change::Unchanged { keyslot: None });
    };
    let slot = found.token.keyslot;
    let slots = dev.active_slots()?;
    if !slots.iter().any(|s| s.slot == slot) {
        // A token without its keyslot: removing the token alone is safe.
        with_backup(&mut dev, backup_dir, &spec.name, |dev| {
            dev.remove_token(found.id)
        })?;
        return Ok(Change::Changed {
            keyslot: None,
            token: None,
        });
    }
    if !slots.iter().any(|s| !s.skrd && s.slot != slot) {
        return Err(VolumeError::LastRecoverySlot {
            volume: spec.name.clone(),
            keyslot: slot,
        });
    }
    with_backup(&mut dev, backup_dir, &spec.name, |dev| {
        dev.remove_token(found.id)?;
        dev.destroy_slot(slot)
    })?;
    Ok(Change::Changed {
        keyslot: None,
        token: None,
    })
}

/// Rotates volume `spec` from the key material `old_ikm` to `new_ikm` (a new key version
/// `new_version`): adds and verifies the new keyslot + token, then removes the old ones, all
/// inside one header backup. Already on `new_ikm`: [`Change::Unchanged`].
pub fn reenroll(
    device: &Path,
    spec: &VolumeSpec,
    old_ikm: &Secret,
    new_ikm: &Secret,
    new_version: Option<&str>,
    backup_dir: &Path,
    now: u64,
) -> Result<Change, VolumeError> {
    let mut dev = open_checked(device, spec)?;
    let Some(found) = dev.skrd_token()? else {
        return Err(VolumeError::NotEnrolled {
            volume: spec.name.clone(),
        });
    };
    // The version is expected to differ (that is the rotation); the key itself must not.
    if found.token.key_url != spec.key_url {
        return Err(VolumeError::TokenMismatch {
            volume: spec.name.clone(),
            field: "key_url",
            expected: spec.key_url.clone(),
            found: found.token.key_url.clone(),
        });
    }
    let old_slot = found.token.keyslot;
    let new_pass = spec.passphrase(new_ikm)?;
    if dev.test_passphrase(Some(old_slot), new_pass.expose())? == Some(old_slot)
        && found.token.key_version.as_deref() == new_version
    {
        return Ok(Change::Unchanged {
            keyslot: Some(old_slot),
        });
    }
    let old_pass = spec.passphrase(old_ikm)?;
    if dev.test_passphrase(Some(old_slot), old_pass.expose())? != Some(old_slot) {
        return Err(VolumeError::WrongKey {
            volume: spec.name.clone(),
            keyslot: old_slot,
        });
    }
    let (slot, token) = with_backup(&mut dev, backup_dir, &spec.name, |dev| {
        let added = add_slot_and_token(dev, spec, old_pass.expose(), &new_pass, new_version, now)?;
        dev.remove_token(found.id)?;
        dev.destroy_slot(old_slot)?;
        Ok(added)
    })?;
    Ok(Change::Changed {
        keyslot: Some(slot),
        token: Some(token),
    })
}
