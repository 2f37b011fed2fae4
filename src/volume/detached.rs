//! The validated detached header (DESIGN.md "Volumes and the untrusted header"; the mitigation
//! Trail of Bits recommends for LUKS2 in confidential VMs): the header of a configured volume
//! is read from the host-controlled disk ONCE, checked ([`crate::format::luks2`] plus the
//! `azure-skr` token against the configuration), and written to guest memory
//! (`/run/skrd/headers/NAME`, tmpfs). crypttab names that file with `header=`, so
//! systemd-cryptsetup activates the volume from exactly the bytes that were checked: a host
//! that serves a different header on a second read gains nothing.
//!
//! `skrd --prepare-header NAME` runs this as `ExecStartPre=` of `systemd-cryptsetup@NAME`
//! (systemd/systemd-cryptsetup@.service.d/skrd-header.conf). Blocking I/O.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::config::Settings;
use crate::error::{ErrorCode, Problem};
use crate::format::luks2::{self, CheckedHeader, CheckedMetadata, HeaderError};
use crate::format::luks_token::{LuksToken, TOKEN_TYPE};

use super::device::LuksDevice;
use super::{VolumeError, VolumeSpec};

/// Where the detached headers are written (tmpfs in the initramfs and on the running system).
pub const HEADER_DIR: &str = "/run/skrd/headers";

/// The detached header path of volume `name` under `dir`.
pub fn header_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedHeader {
    /// The detached header file.
    pub path: PathBuf,
    /// What the checked header says.
    pub metadata: CheckedMetadata,
    /// The keyslot skrd's token is bound to.
    pub keyslot: u32,
}

fn read_at(file: &File, device: &Path, offset: u64, len: u64) -> Result<Vec<u8>, VolumeError> {
    let n = usize::try_from(len).map_err(|_| {
        header_error(
            device,
            HeaderError::Damaged {
                reason: format!("an area of {len} bytes"),
            },
        )
    })?;
    let mut buf = vec![0u8; n];
    file.read_exact_at(&mut buf, offset)
        .map_err(|e| VolumeError::HeaderRead {
            device: device.to_path_buf(),
            reason: e.to_string(),
        })?;
    Ok(buf)
}

fn header_error(device: &Path, error: HeaderError) -> VolumeError {
    VolumeError::Header {
        device: device.to_path_buf(),
        error,
    }
}

/// A header read once from the device and checked.
#[derive(Debug)]
pub struct ReadHeader {
    /// The checked header.
    pub checked: CheckedHeader,
    /// skrd's keyslot (the `azure-skr` token's).
    pub keyslot: u32,
    /// Every keyslot area as read: (offset, bytes).
    pub areas: Vec<(u64, Vec<u8>)>,
}

/// Reads and checks the header of `device` for `spec` (one read of each byte used).
pub fn read_checked(spec: &VolumeSpec, device: &Path) -> Result<ReadHeader, VolumeError> {
    let file = File::open(device).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => VolumeError::DeviceMissing {
            device: device.to_path_buf(),
        },
        _ => VolumeError::HeaderRead {
            device: device.to_path_buf(),
            reason: e.to_string(),
        },
    })?;
    let first = read_at(&file, device, 0, luks2::binary::BINARY_LEN as u64)?;
    let hdr_size = luks2::binary::primary_hdr_size(&first).map_err(|e| header_error(device, e))?;
    let headers = read_at(&file, device, 0, 2 * hdr_size)?;
    let checked = luks2::check(&headers, hdr_size, &spec.uuid.to_string())
        .map_err(|e| header_error(device, e))?;
    let keyslot = token_keyslot(spec, device, &checked.json)?;
    let mut areas = Vec::new();
    for &(offset, size) in &checked.metadata.keyslot_areas {
        areas.push((offset, read_at(&file, device, offset, size)?));
    }
    Ok(ReadHeader {
        checked,
        keyslot,
        areas,
    })
}

/// The keyslot of the header's `azure-skr` token, after checking the token against `spec`.
fn token_keyslot(spec: &VolumeSpec, device: &Path, json: &[u8]) -> Result<u32, VolumeError> {
    let doc: serde_json::Value = serde_json::from_slice(json).map_err(|e| {
        header_error(
            device,
            HeaderError::Damaged {
                reason: e.to_string(),
            },
        )
    })?;
    let mut ours = Vec::new();
    if let Some(tokens) = doc.get("tokens").and_then(|t| t.as_object()) {
        for (id, t) in tokens {
            if t.get("type").and_then(|v| v.as_str()) == Some(TOKEN_TYPE) {
                let token = LuksToken::parse(t.to_string().as_bytes()).map_err(|e| {
                    VolumeError::TokenInvalid {
                        device: device.to_path_buf(),
                        token: id.parse().unwrap_or(0),
                        source: e,
                    }
                })?;
                ours.push(token);
            }
        }
    }
    let token = match ours.len() {
        0 => {
            return Err(VolumeError::NotEnrolled {
                volume: spec.name.clone(),
            })
        }
        1 => ours.remove(0),
        n => {
            return Err(VolumeError::TokenMultiple {
                device: device.to_path_buf(),
                found: n,
            })
        }
    };
    spec.check_token(&token)?;
    let keyslot = token.keyslot.ok_or_else(|| VolumeError::TokenUnbound {
        volume: spec.name.clone(),
    })?;
    let bound_to_digest = doc
        .get("digests")
        .and_then(|d| d.as_object())
        .and_then(|d| d.values().next())
        .and_then(|d| d.get("keyslots"))
        .and_then(|k| k.as_array())
        .is_some_and(|k| k.iter().any(|s| s.as_str() == Some(&keyslot.to_string())));
    if !bound_to_digest {
        return Err(VolumeError::TokenSlotInactive {
            volume: spec.name.clone(),
            keyslot,
        });
    }
    Ok(keyslot)
}

/// Reads the header of `device` once, checks it for `spec`, writes it as a detached header to
/// `out` (mode 0600, replaced atomically) and cross-checks what libcryptsetup reads back from
/// that file against what was checked. On any failure `out` is removed: a header checked
/// earlier must not be used once the disk's header is refused.
pub fn prepare(
    spec: &VolumeSpec,
    device: &Path,
    out: &Path,
) -> Result<PreparedHeader, VolumeError> {
    let result = prepare_once(spec, device, out);
    if result.is_err() {
        let _ = std::fs::remove_file(out);
    }
    result
}

fn prepare_once(
    spec: &VolumeSpec,
    device: &Path,
    out: &Path,
) -> Result<PreparedHeader, VolumeError> {
    let ReadHeader {
        checked,
        keyslot,
        areas,
    } = read_checked(spec, device)?;
    let write_err = |e: std::io::Error| VolumeError::HeaderWrite {
        path: out.to_path_buf(),
        reason: e.to_string(),
    };
    let dir = out.parent().unwrap_or(Path::new("/"));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(write_err)?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        out.file_name()
            .map_or_else(|| "header".into(), |n| n.to_string_lossy()),
        std::process::id()
    ));
    let _ = std::fs::remove_file(&tmp);
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(write_err)?;
    let written = (|| {
        file.set_len(checked.detached_len())?;
        let pair = checked
            .header_pair()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
        file.write_all_at(&pair, 0)?;
        for (offset, bytes) in &areas {
            file.write_all_at(bytes, *offset)?;
        }
        (&file).flush()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(write_err(e));
    }
    drop(file);
    if let Err(e) = cross_check(&tmp, &checked) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, out).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        write_err(e)
    })?;
    Ok(PreparedHeader {
        path: out.to_path_buf(),
        metadata: checked.metadata,
        keyslot,
    })
}

/// libcryptsetup's reading of the written file must be what skrd checked.
fn cross_check(path: &Path, checked: &CheckedHeader) -> Result<(), VolumeError> {
    let mut dev = LuksDevice::open(path)?;
    let (cipher, key_bytes, data_offset) = dev.cipher_summary()?;
    let m = &checked.metadata;
    let ours = (m.cipher.clone(), m.key_bits / 8, m.data_offset);
    let theirs = (cipher, key_bytes, data_offset);
    if ours != theirs {
        return Err(header_error(
            path,
            HeaderError::Refused {
                what: "libcryptsetup".into(),
                reason: format!(
                    "libcryptsetup reads (cipher, key bytes, data offset) {theirs:?} where skrd checked {ours:?}"
                ),
            },
        ));
    }
    Ok(())
}

/// The note `skrd --prepare-header` leaves when it refused volume `name`: the boot unlock
/// (`skrd --initrd`) reads it and reports the volume as refused instead of waiting for a key
/// request that will never come.
pub fn refusal_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.refused"))
}

/// Writes the refusal note of `name` (mode 0600, atomically).
pub fn record_refusal(dir: &Path, name: &str, problem: &Problem) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let path = refusal_path(dir, name);
    let tmp = dir.join(format!(".{name}.refused.tmp-{}", std::process::id()));
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(&serde_json::to_vec(problem).map_err(std::io::Error::other)?)?;
    drop(f);
    std::fs::rename(&tmp, path)
}

/// The refusal note of `name`, if there is a readable one.
pub fn read_refusal(dir: &Path, name: &str) -> Option<Problem> {
    let bytes = std::fs::read(refusal_path(dir, name)).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    Some(Problem::new(
        v.get("code")?.as_str()?,
        v.get("message")?.as_str()?,
    ))
}

/// `skrd --prepare-header NAME`: `Ok(None)` when `name` is not a configured volume (another
/// crypttab entry; nothing to do), else the prepared header. `device` defaults to
/// `/dev/disk/by-uuid/UUID`. A refusal also leaves its note for the boot unlock, and removes
/// any earlier detached header of that volume.
pub fn prepare_configured(
    settings: &Settings,
    name: &str,
    device: Option<&Path>,
    dir: &Path,
) -> Result<Option<PreparedHeader>, VolumeError> {
    if !settings.volumes.contains_key(name) {
        return Ok(None);
    }
    let spec = VolumeSpec::from_settings(settings, name)?;
    let device = device.map_or_else(|| spec.default_device(), Path::to_path_buf);
    let out = header_path(dir, name);
    let _ = std::fs::remove_file(refusal_path(dir, name));
    match prepare(&spec, &device, &out) {
        Ok(p) => Ok(Some(p)),
        Err(e) => {
            let _ = record_refusal(dir, name, &e.problem());
            Err(e)
        }
    }
}
