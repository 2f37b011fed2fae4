//! AES Key Wrap with Padding (RFC 5649; NIST SP 800-38F KWP) for AES-128/192/256 KEKs: the AES
//! half of every Key Vault `enc` mode (PROTOCOLS.md §6.4).
//!
//! The block-cipher work is RustCrypto's `aes-kw` crate; this file owns the length checks
//! before it (that crate's 0.2 line computes `8·(n−1)` with n = 0 for an 8-byte input whose
//! first word is the AIV, which would overflow), the mapping to [`CryptoError`], and keeping
//! every plaintext byte in a [`Secret`] or a buffer wiped on every path.

use aes_kw::{KekAes128, KekAes192, KekAes256};
use zeroize::Zeroizing;

use super::error::CryptoError;
use crate::secret::Secret;

/// RFC 5649 semiblock size.
const SEMIBLOCK: usize = 8;
/// Smallest wrapped input: one semiblock of (padded) key data plus the integrity semiblock.
pub const MIN_WRAPPED_LEN: usize = 16;
/// Largest plaintext we wrap or unwrap (1 MiB: far above any key, far below RFC 5649's 2^32).
pub const MAX_PLAINTEXT_LEN: usize = 1 << 20;

enum Kek {
    Aes128(KekAes128),
    Aes192(KekAes192),
    Aes256(KekAes256),
}

impl Kek {
    fn new(kek: &[u8]) -> Result<Self, CryptoError> {
        let err = || CryptoError::KwpKekLength { found: kek.len() };
        Ok(match kek.len() {
            16 => Self::Aes128(KekAes128::try_from(kek).map_err(|_| err())?),
            24 => Self::Aes192(KekAes192::try_from(kek).map_err(|_| err())?),
            32 => Self::Aes256(KekAes256::try_from(kek).map_err(|_| err())?),
            _ => return Err(err()),
        })
    }

    fn wrap(&self, data: &[u8], out: &mut [u8]) -> Result<(), aes_kw::Error> {
        match self {
            Self::Aes128(k) => k.wrap_with_padding(data, out),
            Self::Aes192(k) => k.wrap_with_padding(data, out),
            Self::Aes256(k) => k.wrap_with_padding(data, out),
        }
    }

    fn unwrap<'a>(&self, data: &[u8], out: &'a mut [u8]) -> Result<&'a [u8], aes_kw::Error> {
        match self {
            Self::Aes128(k) => k.unwrap_with_padding(data, out),
            Self::Aes192(k) => k.unwrap_with_padding(data, out),
            Self::Aes256(k) => k.unwrap_with_padding(data, out),
        }
    }
}

/// Length of the RFC 5649 output for a plaintext of `len` bytes: `8·ceil(len/8) + 8`.
pub fn wrapped_len(len: usize) -> usize {
    len.div_ceil(SEMIBLOCK) * SEMIBLOCK + SEMIBLOCK
}

/// Wraps `plaintext` (1 byte to [`MAX_PLAINTEXT_LEN`]) under `kek` (16, 24 or 32 bytes).
/// The output is ciphertext, not secret.
pub fn wrap(kek: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let kek = Kek::new(kek)?;
    if plaintext.is_empty() || plaintext.len() > MAX_PLAINTEXT_LEN {
        return Err(CryptoError::KwpPlaintextLength {
            found: plaintext.len(),
            max: MAX_PLAINTEXT_LEN,
        });
    }
    let mut out = vec![0u8; wrapped_len(plaintext.len())];
    match kek.wrap(plaintext, &mut out) {
        Ok(()) => Ok(out),
        // Only reachable if `wrapped_len` and the crate disagreed; the buffer may hold
        // plaintext, so wipe it.
        Err(_) => {
            zeroize::Zeroize::zeroize(&mut out);
            Err(CryptoError::KwpPlaintextLength {
                found: plaintext.len(),
                max: MAX_PLAINTEXT_LEN,
            })
        }
    }
}

/// Unwraps RFC 5649 output `wrapped` under `kek` (16, 24 or 32 bytes) and returns the key
/// material. Errors: [`CryptoError::KwpKekLength`], [`CryptoError::KwpInputLength`] (not a
/// multiple of 8, under 16 bytes, or above the size limit) and [`CryptoError::KwpIntegrity`]
/// (AIV, MLI or padding check failed: wrong KEK or altered data).
pub fn unwrap(kek: &[u8], wrapped: &[u8]) -> Result<Secret, CryptoError> {
    let kek = Kek::new(kek)?;
    if wrapped.len() < MIN_WRAPPED_LEN
        || wrapped.len() % SEMIBLOCK != 0
        || wrapped.len() > wrapped_len(MAX_PLAINTEXT_LEN)
    {
        return Err(CryptoError::KwpInputLength {
            found: wrapped.len(),
        });
    }
    // The intermediate buffer holds plaintext (even when the integrity check then fails):
    // wiped on drop on every path.
    let mut out = Zeroizing::new(vec![0u8; wrapped.len() - SEMIBLOCK]);
    let len = match kek.unwrap(wrapped, &mut out) {
        Ok(plain) => plain.len(),
        Err(aes_kw::Error::IntegrityCheckFailed) => {
            return Err(CryptoError::KwpIntegrity {
                wrapped_len: wrapped.len(),
            })
        }
        Err(_) => {
            return Err(CryptoError::KwpInputLength {
                found: wrapped.len(),
            })
        }
    };
    let plain = out.get(..len).unwrap_or_default().to_vec();
    Ok(Secret::new(plain))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::error::ErrorCode;

    // RFC 5649 §6 "Padded Key Wrap Examples", KEK 5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8
    // (192 bits); also recomputed by python3 `cryptography` `aes_key_wrap_with_padding` in
    // tests/fixtures/independent/crypto_expected.py (`rfc5649` in its JSON).
    const KEK: &str = "5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8";

    #[test]
    fn rfc5649_section6_20_octets() {
        let kek = hex::decode(KEK).unwrap();
        let key = hex::decode("c37b7e6492584340bed12207808941155068f738").unwrap();
        let wrap_expected =
            hex::decode("138bdeaa9b8fa7fc61f97742e72248ee5ae6ae5360d1ae6a5f54f373fa543b6a")
                .unwrap();
        assert_eq!(wrap(&kek, &key).unwrap(), wrap_expected);
        assert_eq!(unwrap(&kek, &wrap_expected).unwrap().expose(), &key[..]);
    }

    #[test]
    fn rfc5649_section6_7_octets() {
        let kek = hex::decode(KEK).unwrap();
        let key = hex::decode("466f7250617369").unwrap();
        let wrap_expected = hex::decode("afbeb0f07dfbf5419200f2ccb50bb24f").unwrap();
        assert_eq!(wrap(&kek, &key).unwrap(), wrap_expected);
        assert_eq!(unwrap(&kek, &wrap_expected).unwrap().expose(), &key[..]);
    }

    #[test]
    fn negatives_have_specific_codes() {
        let kek = hex::decode(KEK).unwrap();
        let good = hex::decode("138bdeaa9b8fa7fc61f97742e72248ee5ae6ae5360d1ae6a5f54f373fa543b6a")
            .unwrap();
        // Wrong KEK (same size, one bit flipped).
        let mut wrong = kek.clone();
        wrong[0] ^= 1;
        assert_eq!(
            unwrap(&wrong, &good).unwrap_err().code(),
            "kwp-integrity-failed"
        );
        // Every single-byte alteration is caught.
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x80;
            assert_eq!(
                unwrap(&kek, &bad).unwrap_err().code(),
                "kwp-integrity-failed"
            );
        }
        // Lengths: truncated, not a multiple of 8, one semiblock, empty.
        for n in [0usize, 7, 8, 15, 17, 31] {
            let data = good.iter().copied().cycle().take(n).collect::<Vec<_>>();
            assert_eq!(
                unwrap(&kek, &data).unwrap_err().code(),
                "kwp-input-length",
                "{n}"
            );
        }
        // An 8-byte input starting with the AIV (reaches n = 0 in aes-kw): error, no panic.
        let aiv = [0xa6, 0x59, 0x59, 0xa6, 0, 0, 0, 0];
        assert_eq!(unwrap(&kek, &aiv).unwrap_err().code(), "kwp-input-length");
        // KEK sizes.
        for n in [0usize, 8, 15, 17, 31, 33, 64] {
            assert_eq!(
                unwrap(&vec![1; n], &good).unwrap_err().code(),
                "kwp-kek-length"
            );
            assert_eq!(
                wrap(&vec![1; n], b"x").unwrap_err().code(),
                "kwp-kek-length"
            );
        }
        assert_eq!(wrap(&kek, b"").unwrap_err().code(), "kwp-plaintext-length");
    }

    #[test]
    fn round_trip_every_kek_size_and_length() {
        for kek_len in [16usize, 24, 32] {
            let kek: Vec<u8> = (0..kek_len as u8).collect();
            for len in 1..=70usize {
                let data: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
                let w = wrap(&kek, &data).unwrap();
                assert_eq!(w.len(), wrapped_len(len));
                assert_eq!(unwrap(&kek, &w).unwrap().expose(), &data[..]);
            }
        }
    }
}
