//! The per-volume LUKS passphrase (DESIGN.md "Volumes and the untrusted header"):
//! `base64(HKDF-SHA256(IKM = released key material, salt = the 16 LUKS UUID bytes,
//! info = "skrd luks2 v1", L = 32))`.
//!
//! Binding the passphrase to the UUID means a header crafted by the host (who controls the
//! disk) with another UUID gets another passphrase, and no two volumes share one. The UUID is
//! parsed from its canonical 8-4-4-4-12 text (case-insensitive: the bytes, not the text, are
//! the salt). The passphrase is the padded standard base64 of the 32 output bytes: 44 ASCII
//! characters with no newline or NUL, which every cryptsetup interface (key file, socket,
//! `--key-file=-`) passes through unchanged. PURE; no I/O.

use base64::Engine as _;
use hkdf::Hkdf;
use sha2::Sha256;
use uuid::Uuid;
use zeroize::Zeroizing;

use super::error::CryptoError;
use crate::secret::Secret;

/// The HKDF `info` (version label: a new derivation gets a new label, never a changed meaning).
pub const LUKS_INFO: &[u8] = b"skrd luks2 v1";

/// HKDF output length in bytes. 32 = one SHA-256 block: HKDF-Expand then runs HMAC once and
/// the output carries the hash's full 256-bit strength. More bytes would add no security (the
/// IKM of an AES-256 / P-256 key holds at most ~256 bits, and the LUKS keyslot stretches the
/// passphrase with PBKDF2-SHA512 into its own key anyway); fewer would drop below the 256-bit
/// level of the released keys.
pub const LUKS_OKM_LEN: usize = 32;

/// Length of the passphrase text: padded base64 of [`LUKS_OKM_LEN`] bytes.
pub const LUKS_PASSPHRASE_LEN: usize = 44;

/// Parses a LUKS UUID in canonical 8-4-4-4-12 hex form (as `cryptsetup luksUUID` prints it;
/// upper or lower case). Braced, URN and undashed forms are refused.
pub fn parse_luks_uuid(text: &str) -> Result<Uuid, CryptoError> {
    let err = || CryptoError::LuksUuid {
        found: text.chars().take(64).collect(),
    };
    if text.len() != 36 {
        return Err(err());
    }
    Uuid::try_parse(text).map_err(|_| err())
}

/// The LUKS2 passphrase of volume `luks_uuid` for the key whose IKM is `ikm`.
pub fn luks_passphrase(ikm: &Secret, luks_uuid: &Uuid) -> Result<Secret, CryptoError> {
    if ikm.is_empty() {
        return Err(CryptoError::DeriveInput);
    }
    let hk = Hkdf::<Sha256>::new(Some(luks_uuid.as_bytes()), ikm.expose());
    let mut okm = Zeroizing::new([0u8; LUKS_OKM_LEN]);
    // 32 <= 255 * 32: expand cannot refuse this length.
    hk.expand(LUKS_INFO, okm.as_mut())
        .map_err(|_| CryptoError::DeriveInput)?;
    let mut text = Zeroizing::new(vec![0u8; LUKS_PASSPHRASE_LEN]);
    let written = base64::engine::general_purpose::STANDARD
        .encode_slice(okm.as_ref(), text.as_mut_slice())
        .map_err(|_| CryptoError::DeriveInput)?;
    text.truncate(written);
    Ok(Secret::new(std::mem::take(&mut *text)))
}

/// [`luks_passphrase`] for a UUID given as text (parsed with [`parse_luks_uuid`]).
pub fn luks_passphrase_for(ikm: &Secret, luks_uuid: &str) -> Result<Secret, CryptoError> {
    luks_passphrase(ikm, &parse_luks_uuid(luks_uuid)?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::error::ErrorCode;

    #[test]
    fn uuid_forms() {
        let u = parse_luks_uuid("0A1B2C3D-4E5F-6071-8293-A4B5C6D7E8F9").unwrap();
        assert_eq!(
            u.as_bytes(),
            &hex::decode("0a1b2c3d4e5f60718293a4b5c6d7e8f9").unwrap()[..]
        );
        for bad in [
            "",
            "0a1b2c3d4e5f60718293a4b5c6d7e8f9",
            "{0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9}",
            "urn:uuid:0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9",
            "0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8fg",
            "0a1b2c3d-4e5f-6071-8293a-4b5c6d7e8f9",
        ] {
            assert_eq!(
                parse_luks_uuid(bad).unwrap_err().code(),
                "luks-uuid-invalid"
            );
        }
    }

    #[test]
    fn passphrase_shape_and_binding() {
        let ikm = Secret::new(vec![7; 32]);
        let a = luks_passphrase_for(&ikm, "0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9").unwrap();
        let b = luks_passphrase_for(&ikm, "0A1B2C3D-4E5F-6071-8293-A4B5C6D7E8F9").unwrap();
        let c = luks_passphrase_for(&ikm, "0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8fa").unwrap();
        assert_eq!(a.len(), LUKS_PASSPHRASE_LEN);
        assert_eq!(a.expose(), b.expose());
        assert_ne!(a.expose(), c.expose());
        assert!(a.expose().ends_with(b"="));
        let empty = Secret::new(Vec::new());
        assert_eq!(
            luks_passphrase_for(&empty, "0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9")
                .unwrap_err()
                .code(),
            "derive-input-empty"
        );
    }
}
