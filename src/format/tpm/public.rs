//! `TPM2B_PUBLIC` / `TPMT_PUBLIC` of an RSA key (TPM 2.0 Part 2 §12.2.4-§12.2.5): the AK
//! (`AikPub`) and the `TpmEphemeralEncryptionKey` (`EncKeyPub`) of PROTOCOLS.md §4.1, §4.6; the
//! TPM name (`nameAlg || H(TPMT_PUBLIC)`), and RSASSA-PKCS1-v1_5 SHA-256 verification.

use rsa::{BigUint, RsaPublicKey};
use sha2::{Digest as _, Sha256, Sha384};
use signature::Verifier as _;

use super::{Reader, TpmError, ALG_NULL, ALG_RSA, ALG_SHA256, ALG_SHA384};

/// TPMA_OBJECT bits (TPM 2.0 Part 2 §8.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectAttributes(pub u32);

impl ObjectAttributes {
    /// fixedTPM.
    pub const FIXED_TPM: u32 = 1 << 1;
    /// fixedParent.
    pub const FIXED_PARENT: u32 = 1 << 4;
    /// sensitiveDataOrigin.
    pub const SENSITIVE_DATA_ORIGIN: u32 = 1 << 5;
    /// userWithAuth.
    pub const USER_WITH_AUTH: u32 = 1 << 6;
    /// noDA.
    pub const NO_DA: u32 = 1 << 10;
    /// restricted.
    pub const RESTRICTED: u32 = 1 << 16;
    /// decrypt.
    pub const DECRYPT: u32 = 1 << 17;
    /// sign / encrypt.
    pub const SIGN: u32 = 1 << 18;

    /// Whether every bit of `mask` is set.
    pub fn has(self, mask: u32) -> bool {
        self.0 & mask == mask
    }
}

/// `TPMT_RSA_SCHEME` of the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RsaScheme {
    /// TPM_ALG_NULL: chosen per command.
    Null,
    /// TPM_ALG_RSASSA with its hash.
    RsaSsa(u16),
    /// TPM_ALG_RSAPSS with its hash.
    RsaPss(u16),
    /// TPM_ALG_RSAES.
    RsaEs,
    /// TPM_ALG_OAEP with its hash.
    Oaep(u16),
}

/// A parsed RSA `TPMT_PUBLIC`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Public {
    /// The TPMT_PUBLIC bytes exactly as sent (what the name hashes).
    pub tpmt_bytes: Vec<u8>,
    /// `nameAlg`.
    pub name_alg: u16,
    /// `objectAttributes`.
    pub attributes: ObjectAttributes,
    /// `authPolicy`.
    pub auth_policy: Vec<u8>,
    /// `parameters.symmetric.algorithm` (TPM_ALG_NULL for non-storage keys).
    pub symmetric: u16,
    /// `parameters.scheme`.
    pub scheme: RsaScheme,
    /// `parameters.keyBits`.
    pub key_bits: u16,
    /// `parameters.exponent` as stored (0 means 65537).
    pub raw_exponent: u32,
    /// `unique.rsa`: the modulus, big-endian.
    pub modulus: Vec<u8>,
}

impl Public {
    /// Parses a marshalled `TPM2B_PUBLIC` (u16 size, then TPMT_PUBLIC); the size must cover
    /// the rest of the buffer exactly.
    pub fn parse_tpm2b(bytes: &[u8]) -> Result<Self, TpmError> {
        let mut r = Reader::new(bytes, "TPM2B_PUBLIC");
        let size = usize::from(r.u16("size")?);
        if size != r.remaining() {
            return Err(TpmError::SizeMismatch {
                structure: "TPM2B_PUBLIC",
                field: "size",
                declared: size,
                actual: r.remaining(),
            });
        }
        Self::parse_tpmt(r.bytes(size, "publicArea")?)
    }

    /// Parses a `TPMT_PUBLIC` of an RSA key; trailing bytes are refused.
    pub fn parse_tpmt(bytes: &[u8]) -> Result<Self, TpmError> {
        let mut r = Reader::new(bytes, "TPMT_PUBLIC");
        let alg = r.u16("type")?;
        if alg != ALG_RSA {
            return Err(TpmError::UnsupportedAlgorithm {
                field: "TPMT_PUBLIC.type",
                alg,
                supported: "RSA (0x0001)",
            });
        }
        let name_alg = r.u16("nameAlg")?;
        let attributes = ObjectAttributes(r.u32("objectAttributes")?);
        let auth_policy = r.tpm2b("authPolicy")?.to_vec();
        let symmetric = r.u16("parameters.symmetric.algorithm")?;
        if symmetric != ALG_NULL {
            // TPMT_SYM_DEF_OBJECT: keyBits and mode follow a non-NULL algorithm.
            r.u16("parameters.symmetric.keyBits")?;
            r.u16("parameters.symmetric.mode")?;
        }
        let scheme = match r.u16("parameters.scheme.scheme")? {
            ALG_NULL => RsaScheme::Null,
            0x0015 => RsaScheme::RsaEs,
            0x0014 => RsaScheme::RsaSsa(r.u16("parameters.scheme.hashAlg")?),
            0x0016 => RsaScheme::RsaPss(r.u16("parameters.scheme.hashAlg")?),
            0x0017 => RsaScheme::Oaep(r.u16("parameters.scheme.hashAlg")?),
            other => {
                return Err(TpmError::UnsupportedAlgorithm {
                    field: "TPMT_PUBLIC.parameters.scheme",
                    alg: other,
                    supported: "NULL, RSASSA, RSAES, RSAPSS, OAEP",
                })
            }
        };
        let key_bits = r.u16("parameters.keyBits")?;
        let raw_exponent = r.u32("parameters.exponent")?;
        let modulus = r.tpm2b("unique.rsa")?.to_vec();
        r.finish()?;
        if modulus.len() * 8 != usize::from(key_bits) {
            return Err(TpmError::SizeMismatch {
                structure: "TPMT_PUBLIC",
                field: "parameters.keyBits",
                declared: usize::from(key_bits),
                actual: modulus.len() * 8,
            });
        }
        Ok(Self {
            tpmt_bytes: bytes.to_vec(),
            name_alg,
            attributes,
            auth_policy,
            symmetric,
            scheme,
            key_bits,
            raw_exponent,
            modulus,
        })
    }

    /// The public exponent (65537 when stored as 0).
    pub fn exponent(&self) -> u32 {
        if self.raw_exponent == 0 {
            65_537
        } else {
            self.raw_exponent
        }
    }

    /// The TPM name: `nameAlg` (big-endian u16) followed by nameAlg's hash of the TPMT_PUBLIC.
    pub fn name(&self) -> Result<Vec<u8>, TpmError> {
        let digest = match self.name_alg {
            ALG_SHA256 => Sha256::digest(&self.tpmt_bytes).to_vec(),
            ALG_SHA384 => Sha384::digest(&self.tpmt_bytes).to_vec(),
            _ => {
                return Err(TpmError::UnsupportedAlgorithm {
                    field: "TPMT_PUBLIC.nameAlg",
                    alg: self.name_alg,
                    supported: "SHA-256 (0x000b), SHA-384 (0x000c)",
                })
            }
        };
        let mut name = self.name_alg.to_be_bytes().to_vec();
        name.extend_from_slice(&digest);
        Ok(name)
    }

    /// The key as an `rsa` public key.
    pub fn rsa_key(&self) -> Result<RsaPublicKey, TpmError> {
        rsa_key(&self.modulus, self.exponent())
    }
}

fn rsa_key(modulus: &[u8], exponent: u32) -> Result<RsaPublicKey, TpmError> {
    RsaPublicKey::new(BigUint::from_bytes_be(modulus), BigUint::from(exponent)).map_err(|e| {
        TpmError::KeyInvalid {
            bits: modulus.len() * 8,
            exponent,
            reason: e.to_string(),
        }
    })
}

/// Verifies a raw RSASSA-PKCS1-v1_5 SHA-256 signature (no TPMT_SIGNATURE header) over
/// `message` with the RSA key (`modulus` big-endian, `exponent`); `what` names the message in
/// the error.
pub fn verify_rsassa_sha256(
    modulus: &[u8],
    exponent: u32,
    message: &[u8],
    signature: &[u8],
    what: &'static str,
) -> Result<(), TpmError> {
    let key = rsa_key(modulus, exponent)?;
    let invalid = || TpmError::SignatureInvalid {
        what,
        len: signature.len(),
    };
    let sig = rsa::pkcs1v15::Signature::try_from(signature).map_err(|_| invalid())?;
    rsa::pkcs1v15::VerifyingKey::<Sha256>::new(key)
        .verify(message, &sig)
        .map_err(|_| invalid())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::hcl::HclReport;
    use crate::format::tpm::{Attest, Attested};
    use rsa::traits::PublicKeyParts as _;

    macro_rules! fixture {
        ($path:literal) => {
            include_bytes!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/real/",
                $path
            ))
            .to_vec()
        };
    }

    /// The real kinvolk AK (akpub.pem) in an AK-shaped TPMT_PUBLIC, spelled out field by field
    /// from TPM 2.0 Part 2 §12.2.4: RSA, nameAlg SHA-256, attributes fixedTPM|fixedParent|
    /// sensitiveDataOrigin|userWithAuth|noDA|restricted|sign = 0x00050472, empty authPolicy,
    /// symmetric NULL, scheme RSASSA/SHA-256, 2048 bits, exponent 0, unique = 256-byte modulus.
    fn ak_tpmt() -> (Vec<u8>, Vec<u8>) {
        use rsa::pkcs8::DecodePublicKey as _;
        let pem = String::from_utf8(fixture!("kinvolk-azure-cvm-tooling/akpub.pem")).unwrap();
        let key = RsaPublicKey::from_public_key_pem(&pem).unwrap();
        let n = key.n().to_bytes_be();
        let fields = [
            "0001", "000b", "00050472", "0000", "0010", "0014", "000b", "0800", "00000000", "0100",
        ];
        let mut t = hex::decode(fields.concat()).unwrap();
        t.extend_from_slice(&n);
        (t, n)
    }

    #[test]
    fn tpmt_public_parses_and_names_like_python() {
        let (t, n) = ak_tpmt();
        let mut b = u16::try_from(t.len()).unwrap().to_be_bytes().to_vec();
        b.extend_from_slice(&t);
        let p = Public::parse_tpm2b(&b).unwrap();
        assert_eq!(p.name_alg, 0x000B);
        assert_eq!(p.scheme, RsaScheme::RsaSsa(0x000B));
        assert!(p
            .attributes
            .has(ObjectAttributes::RESTRICTED | ObjectAttributes::SIGN));
        assert!(!p.attributes.has(ObjectAttributes::DECRYPT));
        assert_eq!(p.exponent(), 65_537);
        assert_eq!(p.modulus, n);
        // python3: '000b' + hashlib.sha256(tpmt).hexdigest() over the same 280 bytes.
        assert_eq!(
            hex::encode(p.name().unwrap()),
            "000b1ada06a2f70d64d4e2535dd1d28a64556a4333c3c5e5b99ee168e9154b4c9d02"
        );
        // Size prefix disagreeing with the data, truncation, trailing bytes, ECC.
        let mut long = b.clone();
        long.push(0);
        assert!(matches!(
            Public::parse_tpm2b(&long).unwrap_err(),
            TpmError::SizeMismatch { .. }
        ));
        for cut in 0..t.len() {
            assert!(Public::parse_tpmt(&t[..cut]).is_err(), "{cut}");
        }
        let mut ecc = t.clone();
        ecc[1] = 0x23;
        assert!(matches!(
            Public::parse_tpmt(&ecc).unwrap_err(),
            TpmError::UnsupportedAlgorithm { alg: 0x0023, .. }
        ));
    }

    fn hcl_ak(bytes: &[u8]) -> (Vec<u8>, u32) {
        let hcl = HclReport::parse(bytes).unwrap();
        let ak = hcl.runtime_data().ak_pub().unwrap().clone();
        let e = ak.exponent().unwrap().unwrap();
        let e = e.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b));
        (ak.modulus().unwrap().unwrap(), e)
    }

    /// Splits the bincode `Quote {signature, message, pcrs}` of the trustee/kinvolk fixtures
    /// (u64 LE length prefixes; layout read with python3 struct.unpack).
    fn bincode_quote(b: &[u8]) -> (Vec<u8>, Vec<u8>, Vec<[u8; 32]>) {
        let len = |at: usize| {
            usize::try_from(u64::from_le_bytes(b[at..at + 8].try_into().unwrap())).unwrap()
        };
        let sig_len = len(0);
        let sig = b[8..8 + sig_len].to_vec();
        let at = 8 + sig_len;
        let msg_len = len(at);
        let msg = b[at + 8..at + 8 + msg_len].to_vec();
        let at = at + 8 + msg_len;
        let pcrs = (0..len(at))
            .map(|i| b[at + 8 + 32 * i..at + 40 + 32 * i].try_into().unwrap())
            .collect();
        (sig, msg, pcrs)
    }

    #[test]
    fn real_quotes_verify_with_the_ak_of_their_hcl_report() {
        // python3 cryptography: key.verify(sig, msg, PKCS1v15(), SHA256()) succeeds for each
        // pair below and fails across pairs.
        let (n, e) = hcl_ak(&fixture!("trustee/historical/az-hcl-data.bin"));
        let msg = fixture!("trustee/historical/az-vtpm-quote-msg.bin");
        let sig = fixture!("trustee/historical/az-vtpm-quote-sig.bin");
        verify_rsassa_sha256(&n, e, &msg, &sig, "PCR quote").unwrap();
        // The same message under the same signature is tpm-quote.msg/.sig of az-snp-vtpm.
        assert_eq!(msg, fixture!("trustee/az-snp-vtpm/tpm-quote.msg"));
        let mut forged = msg.clone();
        forged[60] ^= 1;
        assert_eq!(
            verify_rsassa_sha256(&n, e, &forged, &sig, "PCR quote").unwrap_err(),
            TpmError::SignatureInvalid {
                what: "PCR quote",
                len: 256
            }
        );

        let (n, e) = hcl_ak(&fixture!("trustee/az-snp-vtpm/hcl-report.bin"));
        let (sig, msg, pcrs) = bincode_quote(&fixture!("trustee/az-snp-vtpm/quote.bin"));
        verify_rsassa_sha256(&n, e, &msg, &sig, "PCR quote").unwrap();
        let q = Attest::parse_quote(&msg).unwrap();
        let Attested::Quote {
            selection,
            pcr_digest,
        } = q.attested
        else {
            panic!("not a quote");
        };
        // python3: msg[78:88].hex() == '00000001000b03ffffff' (all 24 PCRs) and
        // sha256(b''.join(pcrs)).digest() == msg[-32:].
        assert_eq!(selection[0].pcrs(), (0..24).collect::<Vec<u32>>());
        assert_eq!(pcr_digest, Sha256::digest(pcrs.concat()).to_vec());
        // Another VM's AK does not verify it.
        let (other_n, other_e) = hcl_ak(&fixture!("kinvolk-azure-cvm-tooling/hcl-report-snp.bin"));
        assert!(verify_rsassa_sha256(&other_n, other_e, &msg, &sig, "PCR quote").is_err());

        // kinvolk: the quote verifies with akpub.pem (the kinvolk test's AK).
        let (sig, msg, pcrs) = bincode_quote(&fixture!("kinvolk-azure-cvm-tooling/quote.bin"));
        let (_, n) = ak_tpmt();
        verify_rsassa_sha256(&n, 65_537, &msg, &sig, "PCR quote").unwrap();
        let Attested::Quote { pcr_digest, .. } = Attest::parse_quote(&msg).unwrap().attested else {
            panic!("not a quote");
        };
        assert_eq!(pcr_digest, Sha256::digest(pcrs.concat()).to_vec());
    }
}
