//! The emulator's "skr-emulator AK CA": issues the X.509 certificate of the swtpm AK that
//! provisioning stores at NV 0x01C101D0 (PROTOCOLS.md §4.1; real Azure AK certificates come from
//! Microsoft's Trusted VM CAs, which the emulator's attestation service replaces with this one).
//!
//! RSA-2048 CA key, sha256WithRSAEncryption signatures, kept as PEM in the state directory.

use std::path::{Path, PathBuf};

use rand_core::{OsRng, RngCore};
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use rsa::{BigUint, RsaPrivateKey, RsaPublicKey};
use sha2::{Digest as _, Sha256};
use signature::{SignatureEncoding, Signer};

use super::amd_chain::{cert_pem, pem_to_der, write_atomic};
use super::der::{self, tag};
use super::EmulatorError;

/// AK CA certificate file in the state directory.
pub const AK_CA_PEM: &str = "ak-ca.pem";
const AK_CA_KEY: &str = "ak-ca-key.pem";
/// TCG key purpose for AK certificates (tcg-kp-AIKCertificate, 2.23.133.8.3).
pub const OID_TCG_KP_AIK_CERTIFICATE: &str = "2.23.133.8.3";

/// The AK CA.
pub struct AkCa {
    key: RsaPrivateKey,
    /// The CA certificate (DER).
    pub cert_der: Vec<u8>,
    /// Where `ak-ca.pem` is stored.
    pub cert_path: PathBuf,
}

impl std::fmt::Debug for AkCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AkCa")
            .field("cert_path", &self.cert_path)
            .finish_non_exhaustive()
    }
}

fn name(cn: &str) -> Vec<u8> {
    let rdn = |oid: &str, v: &str| {
        der::tlv(
            tag::SET,
            &der::seq(&[&der::oid(oid), &der::tlv(tag::UTF8_STRING, v.as_bytes())]),
        )
    };
    der::seq(&[&rdn("2.5.4.10", "skr-emulator"), &rdn("2.5.4.3", cn)])
}

fn sha256_with_rsa() -> Vec<u8> {
    der::seq(&[
        &der::oid("1.2.840.113549.1.1.11"),
        &der::tlv(tag::NULL, &[]),
    ])
}

fn extension(oid: &str, critical: bool, value: &[u8]) -> Vec<u8> {
    let value = der::tlv(tag::OCTET_STRING, value);
    if critical {
        der::seq(&[&der::oid(oid), &der::tlv(tag::BOOLEAN, &[0xFF]), &value])
    } else {
        der::seq(&[&der::oid(oid), &value])
    }
}

fn key_id(spki: &[u8]) -> Vec<u8> {
    Sha256::digest(spki)[..20].to_vec()
}

fn random_serial() -> Vec<u8> {
    let mut serial = [0u8; 16];
    OsRng.fill_bytes(&mut serial);
    serial[0] &= 0x7F;
    serial[0] |= 0x01;
    der::uint(&serial)
}

impl AkCa {
    /// Loads the CA from `dir`, or creates and stores it.
    pub fn load_or_create(dir: &Path) -> Result<Self, EmulatorError> {
        let cert_path = dir.join(AK_CA_PEM);
        let key_path = dir.join(AK_CA_KEY);
        if cert_path.is_file() && key_path.is_file() {
            let io = |path: &PathBuf| {
                let path = path.clone();
                move |source| EmulatorError::StateIo { path, source }
            };
            let key_pem = std::fs::read_to_string(&key_path).map_err(io(&key_path))?;
            let key = RsaPrivateKey::from_pkcs8_pem(&key_pem).map_err(|_| {
                EmulatorError::StateCorrupt {
                    path: key_path.clone(),
                    what: "not a PKCS#8 RSA private key",
                }
            })?;
            let cert_der =
                pem_to_der(&std::fs::read_to_string(&cert_path).map_err(io(&cert_path))?)?;
            return Ok(Self {
                key,
                cert_der,
                cert_path,
            });
        }
        let key = RsaPrivateKey::new(&mut OsRng, 2048).map_err(EmulatorError::KeyGen)?;
        let spki = spki_of(&key.to_public_key())?;
        let subject = name("skr-emulator AK CA");
        let now = time::OffsetDateTime::now_utc() - time::Duration::days(1);
        let tbs = der::seq(&[
            &der::explicit(0, &der::uint_u64(2)),
            &random_serial(),
            &sha256_with_rsa(),
            &subject,
            &der::seq(&[
                &der::time(now),
                &der::time(now + time::Duration::days(3650)),
            ]),
            &subject,
            &spki,
            &der::explicit(
                3,
                &der::seq(&[
                    &extension(
                        "2.5.29.19",
                        true,
                        &der::seq(&[&der::tlv(tag::BOOLEAN, &[0xFF])]),
                    ),
                    &extension("2.5.29.15", true, &der::tlv(tag::BIT_STRING, &[0x01, 0x06])),
                    &extension(
                        "2.5.29.14",
                        false,
                        &der::tlv(tag::OCTET_STRING, &key_id(&spki)),
                    ),
                ]),
            ),
        ]);
        let cert_der = sign(&key, &tbs)?;
        let key_pem = key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|_| EmulatorError::Encode { what: "AK CA key" })?;
        write_atomic(dir, AK_CA_KEY, key_pem.as_bytes())?;
        let cert_path = write_atomic(dir, AK_CA_PEM, cert_pem(&cert_der)?.as_bytes())?;
        Ok(Self {
            key,
            cert_der,
            cert_path,
        })
    }

    /// Issues the AK certificate for an RSA AK (`modulus` big-endian, `exponent`).
    pub fn issue_ak_cert(
        &self,
        modulus: &[u8],
        exponent: u32,
        subject_cn: &str,
    ) -> Result<Vec<u8>, EmulatorError> {
        let ak = RsaPublicKey::new(BigUint::from_bytes_be(modulus), BigUint::from(exponent))
            .map_err(EmulatorError::KeyGen)?;
        let spki = spki_of(&ak)?;
        let ca_spki = spki_of(&self.key.to_public_key())?;
        let now = time::OffsetDateTime::now_utc() - time::Duration::days(1);
        let tbs = der::seq(&[
            &der::explicit(0, &der::uint_u64(2)),
            &random_serial(),
            &sha256_with_rsa(),
            &name("skr-emulator AK CA"),
            &der::seq(&[&der::time(now), &der::time(now + time::Duration::days(365))]),
            &name(subject_cn),
            &spki,
            &der::explicit(
                3,
                &der::seq(&[
                    &extension("2.5.29.15", true, &der::tlv(tag::BIT_STRING, &[0x07, 0x80])),
                    &extension(
                        "2.5.29.37",
                        false,
                        &der::seq(&[&der::oid(OID_TCG_KP_AIK_CERTIFICATE)]),
                    ),
                    &extension("2.5.29.19", true, &der::seq(&[])),
                    &extension(
                        "2.5.29.35",
                        false,
                        &der::seq(&[&der::tlv(0x80, &key_id(&ca_spki))]),
                    ),
                ]),
            ),
        ]);
        sign(&self.key, &tbs)
    }
}

fn spki_of(key: &RsaPublicKey) -> Result<Vec<u8>, EmulatorError> {
    key.to_public_key_der()
        .map(|d| d.as_bytes().to_vec())
        .map_err(|_| EmulatorError::Encode { what: "RSA SPKI" })
}

fn sign(key: &RsaPrivateKey, tbs: &[u8]) -> Result<Vec<u8>, EmulatorError> {
    let signer = rsa::pkcs1v15::SigningKey::<Sha256>::new(key.clone());
    let signature = signer
        .try_sign(tbs)
        .map_err(|source| EmulatorError::Sign { source })?;
    Ok(der::seq(&[
        tbs,
        &sha256_with_rsa(),
        &der::bit_string(&signature.to_vec()),
    ]))
}
