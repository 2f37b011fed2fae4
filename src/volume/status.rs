//! The state of each configured volume (`skrctl volumes`), and unlocking one (dm-crypt
//! activation with the derived passphrase).
//!
//! Status never needs the cloud: it reads the header (UUID, keyslots, the `azure-skr` token)
//! and whether `/dev/mapper/NAME` exists. Problems are reported per volume, never as a whole.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::device::LuksDevice;
use super::enroll::{bound_slot, open_checked};
use super::error::VolumeError;
use super::VolumeSpec;
use crate::error::{ErrorCode, Problem};
use crate::secret::Secret;

/// One volume's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VolumeState {
    /// The crypttab name.
    pub volume: String,
    /// The configured LUKS UUID.
    pub uuid: String,
    /// The device inspected.
    pub device: PathBuf,
    /// Whether the device exists.
    pub present: bool,
    /// Whether it is a LUKS2 volume with the configured UUID.
    pub luks2: bool,
    /// skrd's keyslot (from a token that matches the configuration), if enrolled.
    pub enrolled_keyslot: Option<u32>,
    /// Key version recorded in the token.
    pub key_version: Option<String>,
    /// Whether the token agrees with the configuration (`None`: no token).
    pub token_matches: Option<bool>,
    /// Keyslots not bound to skrd (recovery passphrases).
    pub recovery_keyslots: Vec<u32>,
    /// Whether `/dev/mapper/NAME` exists.
    pub active: bool,
    /// Whether the header passes skrd's untrusted-header checks (`None`: not checked, e.g.
    /// not enrolled or not readable); a refusal is the volume's `problem`.
    pub header_ok: Option<bool>,
    /// The first problem found, if any.
    pub problem: Option<Problem>,
}

/// The state of volume `spec` on `device` (default: `/dev/disk/by-uuid/UUID`).
pub fn status(spec: &VolumeSpec, device: Option<&Path>) -> VolumeState {
    let device = device.map_or_else(|| spec.default_device(), Path::to_path_buf);
    let mut st = VolumeState {
        volume: spec.name.clone(),
        uuid: spec.uuid.to_string(),
        device: device.clone(),
        present: device.exists(),
        luks2: false,
        enrolled_keyslot: None,
        key_version: None,
        token_matches: None,
        recovery_keyslots: Vec::new(),
        active: Path::new("/dev/mapper").join(&spec.name).exists(),
        header_ok: None,
        problem: None,
    };
    if let Err(e) = fill(spec, &device, &mut st) {
        st.problem = Some(e.problem());
    }
    st
}

fn fill(spec: &VolumeSpec, device: &Path, st: &mut VolumeState) -> Result<(), VolumeError> {
    let mut dev = open_checked(device, spec)?;
    st.luks2 = true;
    let slots = dev.active_slots()?;
    st.recovery_keyslots = slots.iter().filter(|s| !s.skrd).map(|s| s.slot).collect();
    let Some(found) = dev.skrd_token()? else {
        return Ok(());
    };
    st.key_version = found.token.key_version.clone();
    let check = spec.check_token(&found.token);
    st.token_matches = Some(check.is_ok());
    check?;
    let slot = bound_slot(spec, &found.token, &slots)?;
    st.enrolled_keyslot = Some(slot);
    // What `skrd --prepare-header` would say before the volume is opened at boot.
    let checked = super::detached::read_checked(spec, device);
    st.header_ok = Some(checked.is_ok());
    checked.map(|_| ())
}

/// Checks that the passphrase derived from `ikm` opens skrd's keyslot of `spec` on `device`
/// (and no other check: the token only says which slot); returns the slot. With
/// `Some((dm_name, header_dir))`, also activates `/dev/mapper/DM_NAME` — from the header
/// checked and written detached to `header_dir` ([`super::detached::prepare`]), never from a
/// second read of the host's header.
pub fn unlock(
    device: &Path,
    spec: &VolumeSpec,
    ikm: &Secret,
    activate: Option<(&str, &Path)>,
) -> Result<u32, VolumeError> {
    let mut dev = open_checked(device, spec)?;
    let Some(found) = dev.skrd_token()? else {
        return Err(VolumeError::NotEnrolled {
            volume: spec.name.clone(),
        });
    };
    spec.check_token(&found.token)?;
    let slot = bound_slot(spec, &found.token, &dev.active_slots()?)?;
    let passphrase = spec.passphrase(ikm)?;
    if dev.test_passphrase(Some(slot), passphrase.expose())? != Some(slot) {
        return Err(VolumeError::WrongKey {
            volume: spec.name.clone(),
            keyslot: slot,
        });
    }
    if let Some((name, header_dir)) = activate {
        let checked = super::detached::prepare(
            spec,
            device,
            &super::detached::header_path(header_dir, &spec.name),
        )?;
        let mut detached = LuksDevice::open_detached(&checked.path, device)?;
        detached
            .activate(name, checked.keyslot, passphrase.expose())
            .map_err(|e| VolumeError::Activate {
                volume: spec.name.clone(),
                name: name.to_string(),
                reason: super::device::reason(&e),
            })?;
    }
    Ok(slot)
}
