//! The one error type of [`crate::crypto`] and its stable codes (`docs/errors-crypto.md`).
//!
//! Messages never contain key bytes; they name the check, expected vs found, and what to do.

use crate::error::ErrorCode;

/// An error of the key unwrap / derivation layer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// The AES key-encryption key is not 16, 24 or 32 bytes.
    #[error(
        "AES key-encryption key is {found} bytes, expected 16, 24 or 32 (AES-128/192/256); \
         the RSA-OAEP block did not hold an AES key"
    )]
    KwpKekLength {
        /// Length found.
        found: usize,
    },

    /// The AES-KWP input cannot be RFC 5649 output (not a multiple of 8, or under 16 bytes).
    #[error(
        "AES-KWP wrapped key is {found} bytes, expected a multiple of 8 and at least 16 \
         (RFC 5649); the ciphertext was truncated or is not a key wrap"
    )]
    KwpInputLength {
        /// Length found.
        found: usize,
    },

    /// RFC 5649 integrity check failed (AIV, message length indicator or padding).
    #[error(
        "AES-KWP integrity check failed on {wrapped_len} wrapped bytes (RFC 5649 §3: AIV \
         A65959A6, length indicator, zero padding): wrong key-encryption key or altered \
         ciphertext; release the key again"
    )]
    KwpIntegrity {
        /// Length of the wrapped input.
        wrapped_len: usize,
    },

    /// The plaintext to wrap is empty or longer than RFC 5649 allows.
    #[error("cannot AES-KWP-wrap {found} bytes: expected 1 to {max} bytes")]
    KwpPlaintextLength {
        /// Length given.
        found: usize,
        /// Largest accepted length.
        max: usize,
    },

    /// The ciphertext is too short for an RSA block of the transfer key's size + an AES-KWP part.
    #[error(
        "wrapped key of {found} bytes cannot be an RSA-OAEP block of {rsa_block_len} bytes \
         (the transfer key's modulus length) plus an AES-KWP part (a multiple of 8, at least \
         16 bytes); was the key wrapped to another transfer key, or truncated?"
    )]
    CiphertextLength {
        /// Ciphertext length.
        found: usize,
        /// RSA block length (modulus bytes) used for the split.
        rsa_block_len: usize,
    },

    /// RSA-OAEP decryption failed with the expected hash and with every other `enc` hash.
    #[error(
        "RSA-OAEP decryption of the {rsa_block_len}-byte block failed for {enc} (OAEP and \
         MGF1 with {hash}, empty label) and for the other enc modes: the key was wrapped to \
         another transfer key or the RSA block was altered; attest and release again"
    )]
    OaepDecrypt {
        /// The `enc` named by the response.
        enc: &'static str,
        /// The OAEP hash of that mode.
        hash: &'static str,
        /// Length of the RSA block.
        rsa_block_len: usize,
    },

    /// RSA-OAEP decryption worked only with the hash of another `enc` mode.
    #[error(
        "the RSA-OAEP block decrypts as {found} but the response names {expected}; refusing \
         an inconsistent release response (take enc from request.enc, PROTOCOLS.md §6.4)"
    )]
    EncMismatch {
        /// The `enc` named by the response.
        expected: &'static str,
        /// The mode whose OAEP hash does decrypt the block.
        found: &'static str,
    },

    /// The RSA transfer key is smaller or larger than supported.
    #[error("RSA transfer key of {found} bits is not supported, expected one of {supported:?}")]
    TransferKeySize {
        /// Modulus bits.
        found: usize,
        /// Supported sizes.
        supported: &'static [usize],
    },

    /// RSA key generation or RSA-OAEP encryption failed in the `rsa` crate.
    #[error("RSA {operation} failed: {reason}")]
    Rsa {
        /// "key generation" or "OAEP encryption".
        operation: &'static str,
        /// The `rsa` crate's error text (never key bytes).
        reason: String,
    },

    /// The operating system's random number generator failed.
    #[error("the operating system's random number generator failed: {reason}")]
    Random {
        /// The error text.
        reason: String,
    },

    /// A `kty` this layer does not know.
    #[error(
        "released key type \"{found}\" is unknown, expected oct, RSA or EC (with or without -HSM)"
    )]
    KeyTypeUnknown {
        /// The `kty` found.
        found: String,
    },

    /// An oct key of a length outside 16..=64 bytes.
    #[error(
        "released oct key is {found} bytes, expected {min} to {max} (AES-128 to the 512-bit \
         Key Vault import limit); use a 256-bit key"
    )]
    OctLength {
        /// Length found.
        found: usize,
        /// Smallest accepted.
        min: usize,
        /// Largest accepted.
        max: usize,
    },

    /// The plaintext is neither PKCS#8 nor the fallback encoding of the expected key type.
    #[error(
        "released {kind} key is not a {kind} private key in PKCS#8 DER ({pkcs8}) nor in the \
         {fallback} fallback ({fallback_error}); check the key's kty in Key Vault"
    )]
    KeyEncoding {
        /// "RSA" or "EC".
        kind: &'static str,
        /// Why PKCS#8 parsing failed.
        pkcs8: String,
        /// "PKCS#1" or "SEC1".
        fallback: &'static str,
        /// Why the fallback failed.
        fallback_error: String,
    },

    /// The PKCS#8 algorithm is not the one of the key type named by the response.
    #[error(
        "released key is a PKCS#8 key of algorithm {found} but the response says kty {kind} \
         (expected algorithm {expected}); refusing an inconsistent release"
    )]
    KeyAlgorithm {
        /// The expected key kind.
        kind: &'static str,
        /// Expected algorithm OID.
        expected: &'static str,
        /// Algorithm OID found.
        found: String,
    },

    /// An EC key on a curve this layer does not know.
    #[error(
        "released EC key is on curve {found}, expected P-256, P-256K, P-384 or P-521 \
         (the Key Vault curves)"
    )]
    EcCurve {
        /// Curve OID found (or "absent").
        found: String,
    },

    /// An EC private scalar longer than the curve's order.
    #[error("released EC private key is {found} bytes, expected at most {expected} for {curve}")]
    EcScalarLength {
        /// Curve name.
        curve: &'static str,
        /// Expected length.
        expected: usize,
        /// Length found.
        found: usize,
    },

    /// A LUKS UUID that is not in canonical 8-4-4-4-12 form.
    #[error(
        "LUKS UUID \"{found}\" is not in canonical 8-4-4-4-12 hex form (as `cryptsetup \
         luksUUID` prints it)"
    )]
    LuksUuid {
        /// The text given (a UUID is not secret).
        found: String,
    },

    /// Key derivation input that cannot be used (empty IKM).
    #[error("cannot derive a LUKS passphrase from empty key material")]
    DeriveInput,
}

impl ErrorCode for CryptoError {
    fn code(&self) -> &'static str {
        match self {
            Self::KwpKekLength { .. } => "kwp-kek-length",
            Self::KwpInputLength { .. } => "kwp-input-length",
            Self::KwpIntegrity { .. } => "kwp-integrity-failed",
            Self::KwpPlaintextLength { .. } => "kwp-plaintext-length",
            Self::CiphertextLength { .. } => "unwrap-ciphertext-length",
            Self::OaepDecrypt { .. } => "unwrap-oaep-failed",
            Self::EncMismatch { .. } => "unwrap-enc-mismatch",
            Self::TransferKeySize { .. } => "transfer-key-size",
            Self::Rsa { .. } => "rsa-operation-failed",
            Self::Random { .. } => "random-failed",
            Self::KeyTypeUnknown { .. } => "key-type-unknown",
            Self::OctLength { .. } => "key-material-oct-length",
            Self::KeyEncoding { .. } => "key-material-encoding",
            Self::KeyAlgorithm { .. } => "key-material-algorithm",
            Self::EcCurve { .. } => "key-material-ec-curve",
            Self::EcScalarLength { .. } => "key-material-ec-scalar-length",
            Self::LuksUuid { .. } => "luks-uuid-invalid",
            Self::DeriveInput => "derive-input-empty",
        }
    }
}
