//! One LUKS2 device opened through libcryptsetup (I/O edge; DESIGN.md "Dependencies": the
//! Stratis binding `libcryptsetup-rs`).
//!
//! [`LuksDevice`] owns one `CryptDevice` and is used from one thread only (libcryptsetup
//! handles are not thread-safe; async callers go through `spawn_blocking`). It exposes just
//! what enrollment needs: header checks, keyslot states, the `azure-skr` token, passphrase
//! tests, keyslot add/destroy with skrd's PBKDF, and header backup/restore.

use std::path::{Path, PathBuf};

use libcryptsetup_rs::consts::flags::{CryptActivate, CryptPbkdf};
use libcryptsetup_rs::consts::vals::{CryptKdf, EncryptionFormat, KeyslotInfo, KeyslotPriority};
use libcryptsetup_rs::{
    CryptDevice, CryptInit, CryptPbkdfType, CryptTokenInfo, LibcryptErr, TokenInput,
};
use uuid::Uuid;

use super::error::VolumeError;
use crate::format::luks_token::{LuksToken, MAX_KEYSLOT, TOKEN_TYPE};

/// PBKDF2 iterations of skrd's keyslot: the passphrase is a 256-bit HKDF output, so stretching
/// adds nothing; 1000 is libcryptsetup's minimum for PBKDF2.
pub const SKRD_PBKDF2_ITERATIONS: u32 = 1000;
/// Hash of skrd's keyslot PBKDF2.
pub const SKRD_PBKDF2_HASH: &str = "sha512";
/// LUKS2 token numbers are 0..=31.
const MAX_TOKEN: u32 = 31;

/// A keyslot that holds a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActiveSlot {
    /// Keyslot number.
    pub slot: u32,
    /// Whether an `azure-skr` token is bound to it.
    pub skrd: bool,
}

/// The `azure-skr` token found in a header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundToken {
    /// Token number in the header.
    pub id: u32,
    /// Its content.
    pub token: LuksToken,
}

/// An opened LUKS2 device.
pub struct LuksDevice {
    path: PathBuf,
    dev: CryptDevice,
}

/// The error messages libcryptsetup logged since they were last taken (its explanation of the
/// errno it returns).
static LAST_ERROR: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
static LOG_INIT: std::sync::Once = std::sync::Once::new();

/// libcryptsetup's log callback: messages go to `tracing` (debug; errors also into
/// [`LAST_ERROR`]) instead of libcryptsetup's default of printing on stderr.
unsafe extern "C" fn log_callback(
    level: libc::c_int,
    msg: *const libc::c_char,
    _usrptr: *mut libc::c_void,
) {
    if msg.is_null() {
        return;
    }
    // SAFETY: libcryptsetup passes a NUL-terminated message valid for this call.
    let text = unsafe { std::ffi::CStr::from_ptr(msg) }
        .to_string_lossy()
        .trim()
        .to_string();
    tracing::debug!(level, "libcryptsetup: {text}");
    if level == libcryptsetup_rs_sys_error_level() {
        if let Ok(mut last) = LAST_ERROR.lock() {
            if last.len() < 8 {
                last.push(text);
            }
        }
    }
}

/// `CRYPT_LOG_ERROR`.
fn libcryptsetup_rs_sys_error_level() -> libc::c_int {
    libcryptsetup_rs::consts::vals::CryptLogLevel::Error as libc::c_int
}

fn init_logging() {
    LOG_INIT.call_once(|| {
        libcryptsetup_rs::set_log_callback::<()>(Some(log_callback), None);
    });
}

fn take_last_error() -> Option<String> {
    let msgs = LAST_ERROR
        .lock()
        .ok()
        .map(|mut l| std::mem::take(&mut *l))?;
    (!msgs.is_empty()).then(|| msgs.join(" "))
}

/// The error text, with libcryptsetup's own explanation when it logged one.
pub(crate) fn reason(e: &LibcryptErr) -> String {
    match take_last_error() {
        Some(msg) => format!("{e} ({msg})"),
        None => e.to_string(),
    }
}

/// Whether a libcryptsetup error is "the passphrase opens no (such) keyslot" (EPERM / ENOENT).
fn is_wrong_passphrase(e: &LibcryptErr) -> bool {
    matches!(e, LibcryptErr::IOError(io) if matches!(io.raw_os_error(), Some(libc::EPERM) | Some(libc::ENOENT)))
}

impl LuksDevice {
    /// Opens `path` and loads its header; refuses a missing device, a device without a LUKS
    /// header and LUKS1.
    pub fn open(path: &Path) -> Result<Self, VolumeError> {
        init_logging();
        let _ = take_last_error();
        if !path.exists() {
            return Err(VolumeError::DeviceMissing {
                device: path.to_path_buf(),
            });
        }
        let not_luks = |e: LibcryptErr| VolumeError::NotLuks {
            device: path.to_path_buf(),
            reason: reason(&e),
        };
        let mut dev = CryptInit::init(path).map_err(not_luks)?;
        dev.context_handle()
            .load::<()>(None, None)
            .map_err(not_luks)?;
        let ty = dev.format_handle().get_type().map_err(not_luks)?;
        if ty != EncryptionFormat::Luks2 {
            return Err(VolumeError::NotLuks2 {
                device: path.to_path_buf(),
                found: match ty {
                    EncryptionFormat::Luks1 => "LUKS1".to_string(),
                    other => format!("{other:?}"),
                },
            });
        }
        Ok(Self {
            path: path.to_path_buf(),
            dev,
        })
    }

    /// Opens the data device `data` with the detached header file `header` (a header
    /// checked by [`super::detached`]): activation then reads the metadata from that file only.
    pub fn open_detached(header: &Path, data: &Path) -> Result<Self, VolumeError> {
        init_logging();
        let _ = take_last_error();
        let failed = |e: LibcryptErr| VolumeError::Cryptsetup {
            operation: "load the checked header",
            device: header.to_path_buf(),
            reason: reason(&e),
        };
        let mut dev =
            CryptInit::init_with_data_device(libcryptsetup_rs::Either::Right((header, data)))
                .map_err(failed)?;
        dev.context_handle()
            .load::<()>(Some(EncryptionFormat::Luks2), None)
            .map_err(failed)?;
        Ok(Self {
            path: data.to_path_buf(),
            dev,
        })
    }

    /// The device path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn failed(&self, operation: &'static str, e: &LibcryptErr) -> VolumeError {
        VolumeError::Cryptsetup {
            operation,
            device: self.path.clone(),
            reason: reason(e),
        }
    }

    /// Re-reads the header from disk (after a restore or another writer).
    pub fn reload(&mut self) -> Result<(), VolumeError> {
        self.dev
            .context_handle()
            .load::<()>(Some(EncryptionFormat::Luks2), None)
            .map_err(|e| self.failed("load", &e))
    }

    /// The header's LUKS UUID.
    pub fn uuid(&mut self) -> Result<Uuid, VolumeError> {
        self.dev
            .status_handle()
            .get_uuid()
            .map_err(|e| self.failed("get UUID", &e))
    }

    /// Size of the header (metadata + keyslot areas) in bytes: what a backup file holds.
    pub fn header_size(&mut self) -> u64 {
        self.dev
            .status_handle()
            .get_data_offset()
            .saturating_mul(512)
    }

    /// What libcryptsetup reads as the data cipher (`cipher-mode`), the volume key size in
    /// bytes and the data offset in bytes (the untrusted-header cross-check).
    pub fn cipher_summary(&mut self) -> Result<(String, u64, u64), VolumeError> {
        let path = self.path.clone();
        let mut status = self.dev.status_handle();
        let cipher = status.get_cipher().map_err(|e| VolumeError::Cryptsetup {
            operation: "get cipher",
            device: path.clone(),
            reason: reason(&e),
        })?;
        let mode = status
            .get_cipher_mode()
            .map_err(|e| VolumeError::Cryptsetup {
                operation: "get cipher mode",
                device: path.clone(),
                reason: reason(&e),
            })?;
        let key = u64::try_from(status.get_volume_key_size()).unwrap_or(0);
        let offset = status.get_data_offset().saturating_mul(512);
        Ok((format!("{cipher}-{mode}"), key, offset))
    }

    /// The `azure-skr` tokens of the header, parsed (a token that does not parse is an error).
    pub fn skrd_tokens(&mut self) -> Result<Vec<FoundToken>, VolumeError> {
        let mut found = Vec::new();
        for id in 0..=MAX_TOKEN {
            let status = match self.dev.token_handle().status(id) {
                Ok(s) => s,
                Err(_) => continue,
            };
            let ours = match &status {
                CryptTokenInfo::External(t) | CryptTokenInfo::ExternalUnknown(t) => t == TOKEN_TYPE,
                _ => false,
            };
            if !ours {
                continue;
            }
            let json = self
                .dev
                .token_handle()
                .json_get(id)
                .map_err(|e| self.failed("read token", &e))?;
            let token =
                LuksToken::from_value(&json).map_err(|source| VolumeError::TokenInvalid {
                    device: self.path.clone(),
                    token: id,
                    source,
                })?;
            found.push(FoundToken { id, token });
        }
        Ok(found)
    }

    /// The one `azure-skr` token, if any (two or more is an error).
    pub fn skrd_token(&mut self) -> Result<Option<FoundToken>, VolumeError> {
        let mut tokens = self.skrd_tokens()?;
        match tokens.len() {
            0 | 1 => Ok(tokens.pop()),
            n => Err(VolumeError::TokenMultiple {
                device: self.path.clone(),
                found: n,
            }),
        }
    }

    /// Every keyslot holding a key, and whether an `azure-skr` token is bound to it.
    pub fn active_slots(&mut self) -> Result<Vec<ActiveSlot>, VolumeError> {
        let skrd: Vec<u32> = self
            .skrd_tokens()?
            .iter()
            .filter_map(|t| t.token.keyslot)
            .collect();
        let mut slots = Vec::new();
        for slot in 0..=MAX_KEYSLOT {
            let info = self.dev.keyslot_handle().status(slot);
            if matches!(info, Ok(KeyslotInfo::Active) | Ok(KeyslotInfo::ActiveLast)) {
                slots.push(ActiveSlot {
                    slot,
                    skrd: skrd.contains(&slot),
                });
            }
        }
        Ok(slots)
    }

    /// Whether `passphrase` opens keyslot `slot` (or any keyslot with `None`); returns the
    /// slot it opened. Activates nothing.
    pub fn test_passphrase(
        &mut self,
        slot: Option<u32>,
        passphrase: &[u8],
    ) -> Result<Option<u32>, VolumeError> {
        match self.dev.activate_handle().activate_by_passphrase(
            None,
            slot,
            passphrase,
            CryptActivate::empty(),
        ) {
            Ok(s) => Ok(Some(s)),
            Err(e) if is_wrong_passphrase(&e) => {
                // "No key available with this passphrase." is an answer here, not an error.
                let _ = take_last_error();
                Ok(None)
            }
            Err(e) => Err(self.failed("test passphrase", &e)),
        }
    }

    /// A keyslot with skrd's PBKDF (PBKDF2-SHA512, 1000 iterations) that no token is bound to
    /// and that `passphrase` opens: what an interrupted run leaves behind. Only such keyslots
    /// are tried, so a costly Argon2id recovery keyslot is never evaluated for this.
    pub fn find_unbound_skrd_slot(
        &mut self,
        passphrase: &[u8],
    ) -> Result<Option<u32>, VolumeError> {
        for slot in self.active_slots()? {
            if slot.skrd {
                continue;
            }
            let shaped = self
                .dev
                .keyslot_handle()
                .get_pbkdf(slot.slot)
                .is_ok_and(|p| {
                    matches!(p.type_, CryptKdf::Pbkdf2)
                        && p.hash.as_deref() == Some(SKRD_PBKDF2_HASH)
                        && p.iterations == SKRD_PBKDF2_ITERATIONS
                });
            if shaped && self.test_passphrase(Some(slot.slot), passphrase)? == Some(slot.slot) {
                return Ok(Some(slot.slot));
            }
        }
        Ok(None)
    }

    /// Adds a keyslot holding `new_passphrase` (PBKDF2-SHA512, 1000 iterations, no benchmark,
    /// priority `prefer`), authorized by `passphrase` of an existing keyslot.
    pub fn add_skrd_slot(
        &mut self,
        passphrase: &[u8],
        new_passphrase: &[u8],
    ) -> Result<u32, VolumeError> {
        let pbkdf = CryptPbkdfType {
            type_: CryptKdf::Pbkdf2,
            hash: Some(SKRD_PBKDF2_HASH.to_string()),
            time_ms: 0,
            iterations: SKRD_PBKDF2_ITERATIONS,
            max_memory_kb: 0,
            parallel_threads: 0,
            flags: CryptPbkdf::NO_BENCHMARK,
        };
        self.dev
            .settings_handle()
            .set_pbkdf_type(&pbkdf)
            .map_err(|e| self.failed("set PBKDF", &e))?;
        let slot = self
            .dev
            .keyslot_handle()
            .add_by_passphrase(None, passphrase, new_passphrase)
            .map_err(|e| self.failed("add keyslot", &e))?;
        self.prefer(slot)?;
        Ok(slot)
    }

    /// Sets keyslot `slot`'s priority to `prefer` (tried before normal keyslots).
    pub fn prefer(&mut self, slot: u32) -> Result<(), VolumeError> {
        self.dev
            .keyslot_handle()
            .set_priority(slot, KeyslotPriority::Prefer)
            .map_err(|e| self.failed("set keyslot priority", &e))
    }

    /// Writes `token` (bound to its keyslot) as a new LUKS2 token, or in place of token
    /// `replace` (one header write: the binding moves atomically); returns its number.
    pub fn set_token(
        &mut self,
        replace: Option<u32>,
        token: &LuksToken,
    ) -> Result<u32, VolumeError> {
        let json = token.to_value();
        let input = match replace {
            Some(id) => TokenInput::ReplaceToken(id, &json),
            None => TokenInput::AddToken(&json),
        };
        self.dev
            .token_handle()
            .json_set(input)
            .map_err(|e| self.failed("write token", &e))
    }

    /// Removes token `id`.
    pub fn remove_token(&mut self, id: u32) -> Result<(), VolumeError> {
        self.dev
            .token_handle()
            .json_set(TokenInput::RemoveToken(id))
            .map(|_| ())
            .map_err(|e| self.failed("remove token", &e))
    }

    /// Wipes keyslot `slot`.
    pub fn destroy_slot(&mut self, slot: u32) -> Result<(), VolumeError> {
        self.dev
            .keyslot_handle()
            .destroy(slot)
            .map_err(|e| self.failed("destroy keyslot", &e))
    }

    /// Writes the header and keyslot areas to the new file `path`.
    pub fn backup_header(&mut self, path: &Path) -> Result<(), LibcryptErr> {
        self.dev
            .backup_handle()
            .header_backup(Some(EncryptionFormat::Luks2), path)
    }

    /// Restores the header from `path` and re-reads it.
    pub fn restore_header(&mut self, path: &Path) -> Result<(), String> {
        self.dev
            .backup_handle()
            .header_restore(Some(EncryptionFormat::Luks2), path)
            .map_err(|e| reason(&e))?;
        self.reload().map_err(|e| e.to_string())
    }

    /// Activates the dm-crypt device `/dev/mapper/NAME` with `passphrase` on keyslot `slot`.
    pub fn activate(
        &mut self,
        name: &str,
        slot: u32,
        passphrase: &[u8],
    ) -> Result<(), LibcryptErr> {
        self.dev
            .activate_handle()
            .activate_by_passphrase(Some(name), Some(slot), passphrase, CryptActivate::empty())
            .map(|_| ())
    }
}
