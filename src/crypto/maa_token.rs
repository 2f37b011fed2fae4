//! Decryption of the AzureGuest attestation token (PROTOCOLS.md §5.3 "Response encryption"):
//! AES-256-GCM with the inner key (decrypted beforehand inside the TPM, RSAES-PKCS1-v1_5),
//! the envelope's 12-byte IV, additional authenticated data = ASCII `Transport Key`, and the
//! 16-byte tag from `AuthenticationData`. PURE: no I/O.
//!
//! The inner key is a [`Secret`]; the AES round keys are wiped on drop (aes-gcm `zeroize`).

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};

use crate::error::ErrorCode;
use crate::format::maa::envelope::EncryptedToken;
use crate::secret::Secret;

/// The additional authenticated data MAA uses.
pub const AAD: &[u8] = b"Transport Key";
/// AES-256 key length.
pub const KEY_LEN: usize = 32;

/// Why the token could not be decrypted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MaaTokenError {
    /// The inner key decrypted by the TPM has the wrong length.
    #[error("the attestation token's inner key is {found} bytes, expected {KEY_LEN} (AES-256); the response was not encrypted to this VM's TPM ephemeral key")]
    KeyLength {
        /// The length found.
        found: usize,
    },
    /// GCM authentication failed.
    #[error("the attestation token does not decrypt: the AES-GCM tag does not verify (wrong inner key, or the response was altered); attest again")]
    Authentication,
    /// The plaintext is not UTF-8.
    #[error("the decrypted attestation token is not UTF-8 text; the provider sent something else than a JWT")]
    NotText,
}

impl ErrorCode for MaaTokenError {
    fn code(&self) -> &'static str {
        match self {
            Self::KeyLength { .. } => "attest-inner-key-length",
            Self::Authentication => "attest-token-decrypt-failed",
            Self::NotText => "attest-token-not-text",
        }
    }
}

/// Decrypts the envelope with `inner_key`; returns the compact JWT.
pub fn decrypt(inner_key: &Secret, token: &EncryptedToken) -> Result<String, MaaTokenError> {
    if inner_key.len() != KEY_LEN {
        return Err(MaaTokenError::KeyLength {
            found: inner_key.len(),
        });
    }
    let cipher =
        Aes256Gcm::new_from_slice(inner_key.expose()).map_err(|_| MaaTokenError::KeyLength {
            found: inner_key.len(),
        })?;
    let mut sealed = Vec::with_capacity(token.ciphertext.len() + token.tag.len());
    sealed.extend_from_slice(&token.ciphertext);
    sealed.extend_from_slice(&token.tag);
    let plain = cipher
        .decrypt(
            &Nonce::from(token.iv),
            Payload {
                msg: &sealed,
                aad: AAD,
            },
        )
        .map_err(|_| MaaTokenError::Authentication)?;
    String::from_utf8(plain).map_err(|_| MaaTokenError::NotText)
}

/// Encrypts `jwt` the way MAA does (for tests and the emulator): returns ciphertext and tag.
pub fn encrypt(
    key: &Secret,
    iv: &[u8; 12],
    jwt: &str,
) -> Result<(Vec<u8>, [u8; 16]), MaaTokenError> {
    let cipher = Aes256Gcm::new_from_slice(key.expose())
        .map_err(|_| MaaTokenError::KeyLength { found: key.len() })?;
    let mut sealed = cipher
        .encrypt(
            &Nonce::from(*iv),
            Payload {
                msg: jwt.as_bytes(),
                aad: AAD,
            },
        )
        .map_err(|_| MaaTokenError::Authentication)?;
    let split = sealed.len().saturating_sub(16);
    let tag: [u8; 16] = sealed
        .get(split..)
        .and_then(|t| t.try_into().ok())
        .ok_or(MaaTokenError::Authentication)?;
    sealed.truncate(split);
    Ok((sealed, tag))
}

#[cfg(test)]
mod tests {
    use super::*;

    const JWT: &str = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJodHRwczovL2EifQ.c2ln";

    /// Vector from python3 `cryptography`:
    /// `AESGCM(bytes(range(32))).encrypt(bytes(range(100, 112)), JWT, b"Transport Key")`,
    /// split into ciphertext and the last 16 bytes (tag).
    fn vector() -> (Secret, EncryptedToken) {
        let token = EncryptedToken {
            ciphertext: hex::decode("2d62940e1bae35f7710b15bb8f1f23cc0cab4c33a5098a38d7b29f0592eccc02fb8d08923b71e16b8bbf4a7a94249be17869f489").unwrap(),
            encrypted_inner_key: vec![0; 256],
            iv: core::array::from_fn(|i| 100 + i as u8),
            tag: hex::decode("693b72153444b3bbd3c46615fa3c4c08").unwrap().try_into().unwrap(),
        };
        (Secret::new((0u8..32).collect()), token)
    }

    #[test]
    fn decrypts_the_python_vector() {
        let (key, token) = vector();
        assert_eq!(decrypt(&key, &token).unwrap(), JWT);
        let (ct, tag) = encrypt(&key, &token.iv, JWT).unwrap();
        assert_eq!((ct, tag), (token.ciphertext.clone(), token.tag));
    }

    #[test]
    fn refuses_tampering_and_wrong_keys() {
        let (key, token) = vector();
        let mut t = token.clone();
        t.ciphertext[0] ^= 1;
        assert_eq!(decrypt(&key, &t), Err(MaaTokenError::Authentication));
        let mut t = token.clone();
        t.tag[15] ^= 1;
        assert_eq!(decrypt(&key, &t), Err(MaaTokenError::Authentication));
        let other = Secret::new(vec![7; 32]);
        assert_eq!(decrypt(&other, &token), Err(MaaTokenError::Authentication));
        assert_eq!(
            decrypt(&Secret::new(vec![0; 16]), &token),
            Err(MaaTokenError::KeyLength { found: 16 })
        );
    }
}
