//! `TPMS_ATTEST` (TPM 2.0 Part 2 §10.12.12): the signed body of `TPM2_Quote` (`PcrQuote`,
//! PROTOCOLS.md §4.5) and of `TPM2_Certify` (`EncKeyCertifyInfo`, §4.6).

use super::{Reader, TpmError, ST_ATTEST_CERTIFY, ST_ATTEST_QUOTE};

/// `TPM_GENERATED_VALUE`: the magic of every TPM-produced attestation.
pub const TPM_GENERATED_VALUE: u32 = 0xFF54_4347;

/// `TPMS_CLOCK_INFO`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockInfo {
    /// Milliseconds the TPM has been powered.
    pub clock: u64,
    /// TPM resets since the clear.
    pub reset_count: u32,
    /// Restarts since the last reset.
    pub restart_count: u32,
    /// Whether the clock value is not older than an earlier reported one.
    pub safe: bool,
}

/// One `TPMS_PCR_SELECTION`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcrSelection {
    /// The PCR bank (TPM_ALG_ID, e.g. 0x000B SHA-256).
    pub hash: u16,
    /// The bitmap as sent (bit `i` of byte `j` selects PCR `8j + i`).
    pub bitmap: Vec<u8>,
}

impl PcrSelection {
    /// The selected PCR indices, ascending (the order the TPM hashes them in).
    pub fn pcrs(&self) -> Vec<u32> {
        let mut out = Vec::new();
        for (j, byte) in (0u32..).zip(self.bitmap.iter()) {
            for i in 0..8u32 {
                if byte & (1 << i) != 0 {
                    out.push(j * 8 + i);
                }
            }
        }
        out
    }
}

/// `TPMU_ATTEST`, parsed for the two types Azure guest attestation uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attested {
    /// `TPMS_QUOTE_INFO`.
    Quote {
        /// `pcrSelect`.
        selection: Vec<PcrSelection>,
        /// `pcrDigest`: hash of the concatenated selected PCR values.
        pcr_digest: Vec<u8>,
    },
    /// `TPMS_CERTIFY_INFO`.
    Certify {
        /// Name of the certified object (nameAlg || H(TPMT_PUBLIC)).
        name: Vec<u8>,
        /// Its qualified name.
        qualified_name: Vec<u8>,
    },
    /// Another attestation type; the union bytes are kept as they are.
    Other {
        /// The `TPMU_ATTEST` bytes.
        bytes: Vec<u8>,
    },
}

/// A parsed `TPMS_ATTEST`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attest {
    /// `type` (TPMI_ST_ATTEST).
    pub attest_type: u16,
    /// `qualifiedSigner` (TPM2B_NAME payload).
    pub qualified_signer: Vec<u8>,
    /// `extraData`: the caller's qualifying data (nonce).
    pub extra_data: Vec<u8>,
    /// `clockInfo`.
    pub clock_info: ClockInfo,
    /// `firmwareVersion`.
    pub firmware_version: u64,
    /// `attested`.
    pub attested: Attested,
}

impl Attest {
    /// Parses the bytes of a `TPMS_ATTEST` (the TPM2B_ATTEST payload, without its size prefix);
    /// trailing bytes are refused.
    pub fn parse(bytes: &[u8]) -> Result<Self, TpmError> {
        let mut r = Reader::new(bytes, "TPMS_ATTEST");
        let magic = r.u32("magic")?;
        if magic != TPM_GENERATED_VALUE {
            return Err(TpmError::BadMagic { found: magic });
        }
        let attest_type = r.u16("type")?;
        let qualified_signer = r.tpm2b("qualifiedSigner")?.to_vec();
        let extra_data = r.tpm2b("extraData")?.to_vec();
        let clock_info = ClockInfo {
            clock: r.u64("clockInfo.clock")?,
            reset_count: r.u32("clockInfo.resetCount")?,
            restart_count: r.u32("clockInfo.restartCount")?,
            safe: r.u8("clockInfo.safe")? != 0,
        };
        let firmware_version = r.u64("firmwareVersion")?;
        let attested = match attest_type {
            ST_ATTEST_QUOTE => {
                let count = r.u32("pcrSelect.count")?;
                let mut selection = Vec::new();
                for _ in 0..count {
                    // Each selection is at least 3 bytes: bounds the loop by the input length.
                    if r.remaining() < 3 {
                        return Err(TpmError::Truncated {
                            structure: "TPMS_ATTEST",
                            field: "pcrSelect.pcrSelections",
                            offset: r.offset(),
                            needed: 3,
                            found: r.remaining(),
                        });
                    }
                    let hash = r.u16("pcrSelections.hash")?;
                    let size = r.u8("pcrSelections.sizeofSelect")?;
                    let bitmap = r.bytes(usize::from(size), "pcrSelections.pcrSelect")?;
                    selection.push(PcrSelection {
                        hash,
                        bitmap: bitmap.to_vec(),
                    });
                }
                let pcr_digest = r.tpm2b("pcrDigest")?.to_vec();
                Attested::Quote {
                    selection,
                    pcr_digest,
                }
            }
            ST_ATTEST_CERTIFY => Attested::Certify {
                name: r.tpm2b("certifyInfo.name")?.to_vec(),
                qualified_name: r.tpm2b("certifyInfo.qualifiedName")?.to_vec(),
            },
            _ => {
                let rest = r.remaining();
                Attested::Other {
                    bytes: r.bytes(rest, "attested")?.to_vec(),
                }
            }
        };
        r.finish()?;
        Ok(Self {
            attest_type,
            qualified_signer,
            extra_data,
            clock_info,
            firmware_version,
            attested,
        })
    }

    /// Parses a quote (`type` must be TPM_ST_ATTEST_QUOTE).
    pub fn parse_quote(bytes: &[u8]) -> Result<Self, TpmError> {
        Self::parse_typed(bytes, ST_ATTEST_QUOTE, "TPM_ST_ATTEST_QUOTE")
    }

    /// Parses a certify attestation (`type` must be TPM_ST_ATTEST_CERTIFY).
    pub fn parse_certify(bytes: &[u8]) -> Result<Self, TpmError> {
        Self::parse_typed(bytes, ST_ATTEST_CERTIFY, "TPM_ST_ATTEST_CERTIFY")
    }

    fn parse_typed(bytes: &[u8], expected: u16, name: &'static str) -> Result<Self, TpmError> {
        let a = Self::parse(bytes)?;
        if a.attest_type != expected {
            return Err(TpmError::WrongAttestType {
                expected,
                name,
                found: a.attest_type,
            });
        }
        Ok(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn real_quote() -> &'static [u8] {
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/real/trustee/az-snp-vtpm/tpm-quote.msg"
        ))
    }

    #[test]
    fn real_azure_quote_parses() {
        let a = Attest::parse_quote(real_quote()).unwrap();
        // xxd tpm-quote.msg: bytes 0x2c..0x37 are 00 09 "challenge".
        assert_eq!(a.extra_data, b"challenge");
        // xxd: qualifiedSigner is 00 22 00 0b <32 bytes>: a SHA-256 name.
        assert_eq!(a.qualified_signer.len(), 34);
        assert_eq!(&a.qualified_signer[..2], &[0x00, 0x0b]);
        let Attested::Quote {
            selection,
            pcr_digest,
        } = &a.attested
        else {
            panic!("not a quote: {a:?}");
        };
        // python3: b=open('tpm-quote.msg','rb').read(); b[78:88].hex() ==
        // '00000001000b03ff4000': one SHA-256 selection of 3 bytes ff 40 00 = PCR0-7 and PCR14.
        assert_eq!(selection.len(), 1);
        assert_eq!(selection[0].hash, 0x000B);
        assert_eq!(selection[0].bitmap, vec![0xff, 0x40, 0x00]);
        assert_eq!(selection[0].pcrs(), vec![0, 1, 2, 3, 4, 5, 6, 7, 14]);
        assert_eq!(pcr_digest.len(), 32);
        // python3: b[-32:].hex()
        assert_eq!(&pcr_digest[..], &real_quote()[real_quote().len() - 32..]);
    }

    #[test]
    fn wrong_type_magic_truncation_and_trailing_bytes_are_refused() {
        let q = real_quote();
        assert_eq!(
            Attest::parse_certify(q).unwrap_err(),
            TpmError::WrongAttestType {
                expected: 0x8017,
                name: "TPM_ST_ATTEST_CERTIFY",
                found: 0x8018
            }
        );
        let mut bad = q.to_vec();
        bad[0] = 0;
        assert_eq!(
            Attest::parse(&bad).unwrap_err(),
            TpmError::BadMagic { found: 0x0054_4347 }
        );
        for cut in 0..q.len() {
            let e = Attest::parse(&q[..cut]).unwrap_err();
            assert!(matches!(e, TpmError::Truncated { .. }), "{cut}: {e:?}");
        }
        let mut long = q.to_vec();
        long.push(0);
        assert!(matches!(
            Attest::parse(&long).unwrap_err(),
            TpmError::TrailingBytes { extra: 1, .. }
        ));
    }

    #[test]
    fn huge_selection_count_does_not_allocate() {
        // The header up to firmwareVersion, then count = u32::MAX and nothing else.
        let head_len = 4 + 2 + 2 + 34 + 2 + 9 + 17 + 8;
        let mut b = real_quote()[..head_len].to_vec();
        b.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            Attest::parse(&b).unwrap_err(),
            TpmError::Truncated { .. }
        ));
    }
}
