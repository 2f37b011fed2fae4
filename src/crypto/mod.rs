//! Key unwrapping and derivation (PROTOCOLS.md §1.1 step 1, §6.3-§6.5, §9.1 traps 17 and 20,
//! §10 items 8-10; DESIGN.md "Volumes and the untrusted header", "Secrets"). PURE apart from
//! the operating system's random generator (fresh KEKs, OAEP seeds, RSA blinding and key
//! generation): no files, sockets, TPM or clock. Used by the client (`skrd`) and by
//! `skr-emulator`; in the vTPM flow the RSA step happens in the TPM (`evidence::vtpm`) and only
//! [`rsa_aes_wrap::split`] + [`rsa_aes_wrap::unwrap_with_kek`] run here.
//!
//! - [`aes_kwp`]: RFC 5649 AES key wrap with padding (AES-128/192/256 KEKs).
//! - [`rsa_aes_wrap`]: the three `enc` modes: wrap, unwrap in memory, split for the TPM.
//! - [`key_material`]: released plaintext (oct raw, RSA/EC PKCS#8) → IKM.
//! - [`derive`](mod@derive): IKM + LUKS UUID → the per-volume LUKS2 passphrase.
//! - [`transfer_key`]: the in-memory RSA transfer key and its runtime-data JWKS.
//! - [`maa_token`]: AES-256-GCM decryption of the AzureGuest attestation token.
//!
//! Every key, KEK, IKM and passphrase returned is a [`crate::secret::Secret`]. Errors:
//! [`CryptoError`], codes in `docs/errors-crypto.md`.

pub mod aes_kwp;
pub mod derive;
pub mod error;
pub mod key_material;
pub mod maa_token;
pub mod rsa_aes_wrap;
pub mod transfer_key;

pub use error::CryptoError;
pub use key_material::{KeyKind, KeyMaterial};
pub use transfer_key::TransferKey;

use crate::secret::Secret;

/// Fuzz entry point for everything here that reads untrusted bytes without a private key:
/// the ciphertext split, AES-KWP unwrap under KEKs taken from the input, the key-material
/// decoders of every kind and the LUKS UUID parser. (RSA-OAEP decryption is the `rsa` crate's
/// and needs a private key; it is left to that crate.) Never panics; results are ignored.
pub fn fuzz_unwrap(data: &[u8]) {
    if let Ok((_, kwp)) = rsa_aes_wrap::split(data, 256) {
        let kek = Secret::new(data.iter().copied().take(32).collect());
        let _ = rsa_aes_wrap::unwrap_with_kek(&kek, kwp);
    }
    for kek_len in [16usize, 24, 32] {
        if let Some((kek, rest)) = data.split_at_checked(kek_len) {
            let _ = aes_kwp::unwrap(kek, rest);
            let _ = aes_kwp::wrap(kek, rest);
        }
    }
    let plain = Secret::new(data.to_vec());
    for kind in [KeyKind::Oct, KeyKind::Rsa, KeyKind::Ec] {
        if let Ok(m) = key_material::decode(kind, &plain) {
            let _ = derive::luks_passphrase(m.ikm(), &uuid::Uuid::nil());
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = derive::parse_luks_uuid(text);
        let _ = KeyKind::from_kty(text);
    }
}
