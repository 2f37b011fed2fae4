//! PURE: the TPM 2.0 structures of Azure vTPM evidence (PROTOCOLS.md §4.5, §4.6, §4.8 "Verify"
//! steps 3-5): `TPMS_ATTEST` of a quote or a certify ([`Attest`]), `TPM2B_PUBLIC` of an RSA key
//! ([`Public`], with its TPM name), and RSASSA-PKCS1-v1_5 SHA-256 signature verification by such
//! a key ([`verify_rsassa_sha256`]).
//!
//! Layouts follow TPM 2.0 Library Part 2 (big-endian integers, `TPM2B_*` = u16 size + bytes).
//! Bytes in, typed value or a specific [`TpmError`] out; no I/O. Only the structures Azure's guest
//! attestation uses are parsed: RSA keys (ECC public areas are refused with
//! [`TpmError::UnsupportedAlgorithm`]), quote and certify attestations (other attestation types
//! keep their `attested` bytes unparsed).

pub mod attest;
pub mod error;
pub mod public;

pub use attest::{Attest, Attested, ClockInfo, PcrSelection, TPM_GENERATED_VALUE};
pub use error::TpmError;
pub use public::{verify_rsassa_sha256, ObjectAttributes, Public, RsaScheme};

/// TPM_ST_ATTEST_CERTIFY.
pub const ST_ATTEST_CERTIFY: u16 = 0x8017;
/// TPM_ST_ATTEST_QUOTE.
pub const ST_ATTEST_QUOTE: u16 = 0x8018;
/// TPM_ALG_RSA.
pub const ALG_RSA: u16 = 0x0001;
/// TPM_ALG_SHA1.
pub const ALG_SHA1: u16 = 0x0004;
/// TPM_ALG_SHA256.
pub const ALG_SHA256: u16 = 0x000B;
/// TPM_ALG_SHA384.
pub const ALG_SHA384: u16 = 0x000C;
/// TPM_ALG_NULL.
pub const ALG_NULL: u16 = 0x0010;

/// A big-endian reader over untrusted bytes: every read checks the length first.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8], what: &'static str) -> Self {
        Self { buf, at: 0, what }
    }

    pub(crate) fn offset(&self) -> usize {
        self.at
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.at)
    }

    pub(crate) fn bytes(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], TpmError> {
        let end = self.at.checked_add(n);
        match end.and_then(|end| self.buf.get(self.at..end)) {
            Some(s) => {
                self.at += n;
                Ok(s)
            }
            None => Err(TpmError::Truncated {
                structure: self.what,
                field,
                offset: self.at,
                needed: n,
                found: self.remaining(),
            }),
        }
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, TpmError> {
        Ok(self.bytes(1, field)?.first().copied().unwrap_or(0))
    }

    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16, TpmError> {
        let b = self.bytes(2, field)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, TpmError> {
        let mut a = [0u8; 4];
        a.copy_from_slice(self.bytes(4, field)?);
        Ok(u32::from_be_bytes(a))
    }

    pub(crate) fn u64(&mut self, field: &'static str) -> Result<u64, TpmError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.bytes(8, field)?);
        Ok(u64::from_be_bytes(a))
    }

    /// A `TPM2B_*`: u16 size, then that many bytes.
    pub(crate) fn tpm2b(&mut self, field: &'static str) -> Result<&'a [u8], TpmError> {
        let n = self.u16(field)?;
        self.bytes(usize::from(n), field)
    }

    /// Fails when bytes are left over.
    pub(crate) fn finish(&self) -> Result<(), TpmError> {
        match self.remaining() {
            0 => Ok(()),
            extra => Err(TpmError::TrailingBytes {
                structure: self.what,
                extra,
            }),
        }
    }
}
