//! Enroll, unenroll and re-enroll skrd's keyslot on a configured LUKS2 volume (DESIGN.md
//! "Volumes and the untrusted header").
//!
//! Every header write runs inside [`super::header::with_backup`]. Invariants:
//! - the device's LUKS UUID must be the configured one, and the passphrase is derived from the
//!   configured UUID;
//! - a keyslot not bound to an `azure-skr` token (the recovery passphrase) is never removed,
//!   and skrd's keyslot is never removed when it is the only other way in;
//! - re-enrollment adds and verifies the new keyslot before it removes the old one, so the
//!   volume always has a working skrd keyslot;
//! - repeating an operation that is already done changes nothing ([`Change::Unchanged`]);
//! - each operation is ordered so that a process killed between two header writes leaves a
//!   state the next run of the same operation completes: enroll adds the keyslot, then the
//!   token (a keyslot that opens with our passphrase but has no token is adopted); unenroll
//!   destroys the keyslot, then the token (libcryptsetup leaves the token unbound, which the
//!   next unenroll removes); reenroll adds the new keyslot, moves the token onto it in one
//!   write, then destroys the old keyslot (a leftover old keyslot is destroyed by the next
//!   reenroll). At every point the token's keyslot opens with the old or the new key.

use std::path::Path;

use super::device::{ActiveSlot, LuksDevice};
use super::error::VolumeError;
use super::failpoint;
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

/// The active keyslot a token is bound to.
pub(crate) fn bound_slot(
    spec: &VolumeSpec,
    token: &LuksToken,
    active: &[ActiveSlot],
) -> Result<u32, VolumeError> {
    let Some(slot) = token.keyslot else {
        return Err(VolumeError::TokenUnbound {
            volume: spec.name.clone(),
        });
    };
    if !active.iter().any(|s| s.slot == slot) {
        return Err(VolumeError::TokenSlotInactive {
            volume: spec.name.clone(),
            keyslot: slot,
        });
    }
    Ok(slot)
}

fn new_token(spec: &VolumeSpec, keyslot: u32, key_version: Option<&str>, now: u64) -> LuksToken {
    LuksToken {
        keyslot: Some(keyslot),
        key_url: spec.key_url.clone(),
        key_version: key_version.map(str::to_string),
        volume: spec.name.clone(),
        created_at: now,
    }
}

/// The keyslot holding `passphrase`: an existing one (left by an interrupted run, made
/// `prefer`), or a new one authorized by `auth`. Verified to open.
fn slot_for(dev: &mut LuksDevice, auth: &[u8], passphrase: &Secret) -> Result<u32, VolumeError> {
    let slot = match dev.find_unbound_skrd_slot(passphrase.expose())? {
        Some(existing) => {
            dev.prefer(existing)?;
            existing
        }
        None => dev.add_skrd_slot(auth, passphrase.expose())?,
    };
    if dev.test_passphrase(Some(slot), passphrase.expose())? != Some(slot) {
        return Err(VolumeError::VerifyFailed {
            device: dev.path().to_path_buf(),
            keyslot: slot,
        });
    }
    Ok(slot)
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
    let existing = dev.skrd_token()?;
    if let Some(found) = &existing {
        spec.check_token(&found.token)?;
        // A bound token: done already, or another key's. An unbound one is rebound below.
        if let Some(slot) = found.token.keyslot {
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
    }
    let replace = existing.map(|f| f.id);
    let version = key_version.or(spec.key_version.as_deref());
    let Authorization::Passphrase(auth) = auth;
    let adopted = dev.find_unbound_skrd_slot(passphrase.expose())?.is_some();
    if !adopted && dev.test_passphrase(None, auth.expose())?.is_none() {
        return Err(VolumeError::AuthRefused {
            device: device.to_path_buf(),
        });
    }
    let (slot, token) = with_backup(&mut dev, backup_dir, &spec.name, |dev| {
        let slot = slot_for(dev, auth.expose(), &passphrase)?;
        failpoint::hit("after-keyslot", dev.path(), None)?;
        let token = dev.set_token(replace, &new_token(spec, slot, version, now))?;
        failpoint::hit("after-token", dev.path(), None)?;
        Ok((slot, token))
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
    let slots = dev.active_slots()?;
    let slot = found
        .token
        .keyslot
        .filter(|k| slots.iter().any(|s| s.slot == *k));
    if let Some(slot) = slot {
        if !slots.iter().any(|s| !s.skrd && s.slot != slot) {
            return Err(VolumeError::LastRecoverySlot {
                volume: spec.name.clone(),
                keyslot: slot,
            });
        }
    }
    with_backup(&mut dev, backup_dir, &spec.name, |dev| {
        if let Some(slot) = slot {
            dev.destroy_slot(slot)?;
            failpoint::hit("after-destroy", dev.path(), None)?;
        }
        dev.remove_token(found.id)
    })?;
    Ok(Change::Changed {
        keyslot: None,
        token: None,
    })
}

/// Rotates volume `spec` from the key material `old_ikm` to `new_ikm` (a new key version
/// `new_version`): adds and verifies the new keyslot, moves the token onto it, then removes
/// the old keyslot, all inside one header backup. Already on `new_ikm`:
/// [`Change::Unchanged`] (after removing an old keyslot an interrupted run left behind).
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
    let old_slot = bound_slot(spec, &found.token, &dev.active_slots()?)?;
    let new_pass = spec.passphrase(new_ikm)?;
    let old_pass = spec.passphrase(old_ikm)?;
    if dev.test_passphrase(Some(old_slot), new_pass.expose())? == Some(old_slot) {
        // Rotated already; an interrupted run may have left the old keyslot.
        return match dev.find_unbound_skrd_slot(old_pass.expose())? {
            Some(leftover) => {
                with_backup(&mut dev, backup_dir, &spec.name, |dev| {
                    dev.destroy_slot(leftover)
                })?;
                Ok(Change::Changed {
                    keyslot: Some(old_slot),
                    token: Some(found.id),
                })
            }
            None => Ok(Change::Unchanged {
                keyslot: Some(old_slot),
            }),
        };
    }
    if dev.test_passphrase(Some(old_slot), old_pass.expose())? != Some(old_slot) {
        return Err(VolumeError::WrongKey {
            volume: spec.name.clone(),
            keyslot: old_slot,
        });
    }
    let (slot, token) = with_backup(&mut dev, backup_dir, &spec.name, |dev| {
        let slot = slot_for(dev, old_pass.expose(), &new_pass)?;
        failpoint::hit("after-keyslot", dev.path(), None)?;
        let token = dev.set_token(Some(found.id), &new_token(spec, slot, new_version, now))?;
        failpoint::hit("after-token", dev.path(), None)?;
        dev.destroy_slot(old_slot)?;
        Ok((slot, token))
    })?;
    Ok(Change::Changed {
        keyslot: Some(slot),
        token: Some(token),
    })
}
