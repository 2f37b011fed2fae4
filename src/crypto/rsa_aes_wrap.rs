//! The three Key Vault `enc` modes (PROTOCOLS.md §6.4, §6.5; §9.1 traps 17 and 20; §10 items
//! 8 and 9): `ciphertext = RSA-OAEP(transfer_pub, KEK) || AES-KWP(KEK, key_material)`.
//!
//! | `enc` | RSA-OAEP hash = MGF1 hash, empty label | KEK |
//! |---|---|---|
//! | `CKM_RSA_AES_KEY_WRAP` (default) | SHA-1 | AES-256 |
//! | `RSA_AES_KEY_WRAP_256` | SHA-256 | AES-256 |
//! | `RSA_AES_KEY_WRAP_384` | SHA-384 | AES-256 |
//!
//! - [`wrap`] (the emulator's side): a fresh random AES-256 KEK, OAEP to the transfer public key,
//!   RFC 5649 of the key material.
//! - [`unwrap`] (raw SNP flow): the transfer private key is in memory.
//! - [`split`] + [`unwrap_with_kek`] (vTPM flow): the RSA step runs inside the TPM
//!   (`TPM2_RSA_Decrypt`), only the AES step here.
//!
//! The RSA block is exactly the transfer key's modulus length (never a hard-coded 256, never
//! trimmed: trap 17). The mode always comes from the response's `request.enc` (trap 20); when
//! the block does not decrypt with that mode's hash but does with another mode's, the error is
//! [`CryptoError::EncMismatch`] rather than a bare decryption failure. Unwrapping accepts a
//! 16-, 24- or 32-byte KEK (AES-256 in every sample; §10 item 9 leaves the others open); the
//! wrap side always uses AES-256. PURE apart from the operating system's random generator
//! (KEK, OAEP seed, RSA blinding); no I/O.
//!
//! Side channels: the private-key operation uses the `rsa` crate's blinded decryption. That
//! crate's big-integer arithmetic is not constant-time (RUSTSEC-2023-0071, "Marvin"); the
//! exposure is small here because the transfer key is ephemeral, decrypts one or two
//! ciphertexts that arrive in a signature-checked release response, and lives inside the TEE.
//! Trying the other modes' hashes after a failure (for [`CryptoError::EncMismatch`]) reveals
//! nothing to anyone but the key holder, who gets only a code.

use rand_core::{CryptoRngCore, OsRng};
use rsa::{Oaep, RsaPrivateKey, RsaPublicKey};
use zeroize::Zeroizing;

use super::aes_kwp;
use super::error::CryptoError;
use crate::format::jose::release::{KeyHsm, WrapAlgorithm};
use crate::secret::Secret;

/// Size of the AES key-encryption key the wrap side generates (AES-256, §6.4).
pub const KEK_LEN: usize = 32;

/// Every mode, in the order tried when diagnosing a mismatch.
const ALL_MODES: [WrapAlgorithm; 3] = [
    WrapAlgorithm::CkmRsaAesKeyWrap,
    WrapAlgorithm::RsaAesKeyWrap256,
    WrapAlgorithm::RsaAesKeyWrap384,
];

/// The OAEP (and MGF1) hash of a mode, as named in messages.
pub fn oaep_hash_name(enc: WrapAlgorithm) -> &'static str {
    match enc {
        WrapAlgorithm::CkmRsaAesKeyWrap => "SHA-1",
        WrapAlgorithm::RsaAesKeyWrap256 => "SHA-256",
        WrapAlgorithm::RsaAesKeyWrap384 => "SHA-384",
    }
}

/// OAEP padding of a mode: hash = MGF1 hash, empty label (`Oaep::new` sets both).
fn oaep(enc: WrapAlgorithm) -> Oaep {
    match enc {
        WrapAlgorithm::CkmRsaAesKeyWrap => Oaep::new::<sha1::Sha1>(),
        WrapAlgorithm::RsaAesKeyWrap256 => Oaep::new::<sha2::Sha256>(),
        WrapAlgorithm::RsaAesKeyWrap384 => Oaep::new::<sha2::Sha384>(),
    }
}

/// Splits a decoded `key_hsm` ciphertext into the RSA-OAEP block (`modulus_len` bytes, the
/// transfer key's modulus length) and the AES-KWP block (a multiple of 8, at least 16 bytes).
/// Nothing is trimmed or copied.
pub fn split(ciphertext: &[u8], modulus_len: usize) -> Result<(&[u8], &[u8]), CryptoError> {
    let err = || CryptoError::CiphertextLength {
        found: ciphertext.len(),
        rsa_block_len: modulus_len,
    };
    if modulus_len == 0 {
        return Err(err());
    }
    let (rsa_block, kwp_block) = ciphertext.split_at_checked(modulus_len).ok_or_else(err)?;
    if kwp_block.len() < aes_kwp::MIN_WRAPPED_LEN || kwp_block.len() % 8 != 0 {
        return Err(err());
    }
    Ok((rsa_block, kwp_block))
}

/// The AES half of an unwrap: RFC 5649 unwrap of `kwp_block` with a KEK the caller obtained
/// (in the vTPM flow from `TPM2_RSA_Decrypt`). Returns the key material.
pub fn unwrap_with_kek(kek: &Secret, kwp_block: &[u8]) -> Result<Secret, CryptoError> {
    aes_kwp::unwrap(kek.expose(), kwp_block)
}

/// RSA-OAEP-decrypts the RSA block with the hash of `enc` and returns the KEK (16, 24 or 32
/// bytes). On failure, tries the other modes' hashes to tell a wrong mode
/// ([`CryptoError::EncMismatch`]) from a wrong key or altered block
/// ([`CryptoError::OaepDecrypt`]).
pub fn decrypt_kek(
    private: &RsaPrivateKey,
    enc: WrapAlgorithm,
    rsa_block: &[u8],
) -> Result<Secret, CryptoError> {
    let mut rng = OsRng;
    match private.decrypt_blinded(&mut rng, oaep(enc), rsa_block) {
        Ok(kek) => {
            let kek = Secret::new(kek);
            if !matches!(kek.len(), 16 | 24 | 32) {
                return Err(CryptoError::KwpKekLength { found: kek.len() });
            }
            Ok(kek)
        }
        Err(_) => {
            for other in ALL_MODES.into_iter().filter(|m| *m != enc) {
                if let Ok(plain) = private.decrypt_blinded(&mut rng, oaep(other), rsa_block) {
                    drop(Secret::new(plain));
                    return Err(CryptoError::EncMismatch {
                        expected: enc.name(),
                        found: other.name(),
                    });
                }
            }
            Err(CryptoError::OaepDecrypt {
                enc: enc.name(),
                hash: oaep_hash_name(enc),
                rsa_block_len: rsa_block.len(),
            })
        }
    }
}

/// Unwraps a decoded `key_hsm` ciphertext with the transfer private key in memory (raw SNP
/// flow, §6.5): split at the modulus length, OAEP-decrypt the KEK with `enc`'s hash, AES-KWP
/// unwrap. Returns the key material (decode it with [`super::key_material`]).
pub fn unwrap(
    private: &RsaPrivateKey,
    enc: WrapAlgorithm,
    ciphertext: &[u8],
) -> Result<Secret, CryptoError> {
    let (rsa_block, kwp_block) = split(ciphertext, rsa::traits::PublicKeyParts::size(private))?;
    let kek = decrypt_kek(private, enc, rsa_block)?;
    unwrap_with_kek(&kek, kwp_block)
}

/// [`unwrap`] for a parsed `key_hsm` (PROTOCOLS.md §6.3): its ciphertext split by
/// [`KeyHsm::split`] at the modulus length, its `enc` (which `decode_release_payload` has
/// checked equals the response's `request.enc`).
pub fn unwrap_key_hsm(private: &RsaPrivateKey, key_hsm: &KeyHsm) -> Result<Secret, CryptoError> {
    let modulus_len = rsa::traits::PublicKeyParts::size(private);
    let (rsa_block, kwp_block) =
        key_hsm
            .split(modulus_len)
            .map_err(|_| CryptoError::CiphertextLength {
                found: key_hsm.ciphertext.len(),
                rsa_block_len: modulus_len,
            })?;
    let kek = decrypt_kek(private, key_hsm.enc, rsa_block)?;
    unwrap_with_kek(&kek, kwp_block)
}

/// Wraps `key_material` to `transfer` the way Key Vault does for `enc` (the emulator's side),
/// with the operating system's random generator.
pub fn wrap(
    transfer: &RsaPublicKey,
    enc: WrapAlgorithm,
    key_material: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    wrap_with_rng(&mut OsRng, transfer, enc, key_material)
}

/// [`wrap`] with a caller-provided random generator (KEK and OAEP seed).
pub fn wrap_with_rng<R: CryptoRngCore>(
    rng: &mut R,
    transfer: &RsaPublicKey,
    enc: WrapAlgorithm,
    key_material: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let mut kek = Zeroizing::new([0u8; KEK_LEN]);
    rng.try_fill_bytes(kek.as_mut())
        .map_err(|e| CryptoError::Random {
            reason: e.to_string(),
        })?;
    let kwp_block = aes_kwp::wrap(kek.as_ref(), key_material)?;
    let mut out = transfer
        .encrypt(rng, oaep(enc), kek.as_ref())
        .map_err(|e| CryptoError::Rsa {
            operation: "OAEP encryption",
            reason: e.to_string(),
        })?;
    out.extend_from_slice(&kwp_block);
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::error::ErrorCode;

    #[test]
    fn split_checks_lengths() {
        let ct = vec![0u8; 256 + 40];
        let (r, k) = split(&ct, 256).unwrap();
        assert_eq!((r.len(), k.len()), (256, 40));
        for (len, m) in [
            (256 + 8, 256),
            (256 + 41, 256),
            (255, 256),
            (296, 0),
            (0, 256),
        ] {
            let ct = vec![0u8; len];
            assert_eq!(
                split(&ct, m).unwrap_err().code(),
                "unwrap-ciphertext-length",
                "{len} {m}"
            );
        }
    }

    #[test]
    fn split_agrees_with_key_hsm_split() {
        for len in 0..400usize {
            for m in [0usize, 1, 128, 256, 384] {
                let k = KeyHsm {
                    schema_version: "1.0".into(),
                    kid: "k".into(),
                    alg: "dir".into(),
                    enc: WrapAlgorithm::CkmRsaAesKeyWrap,
                    ciphertext: vec![0; len],
                };
                assert_eq!(split(&k.ciphertext, m).ok(), k.split(m).ok(), "{len} {m}");
            }
        }
    }
}
