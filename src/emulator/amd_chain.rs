//! The test AMD certificate chain of the emulator's SEV-SNP platform (PROTOCOLS.md §3.6).
//!
//! ARK (RSA-4096, self-signed) → ASK (RSA-4096) → VCEK (EC P-384), every signature RSASSA-PSS
//! SHA-384 / MGF1-SHA-384 / salt 48 with explicit parameters, with AMD's Genoa names, serials and
//! extensions — including the quirks of the real certificates: attribute order OU, C, L, ST, O,
//! CN with UTF8String values and a PrintableString country; an explicit PSS trailer field on the
//! ARK/ASK but not on the VCEK; VCEK serial 0; the VCEK extensions under 1.3.6.1.4.1.3704.1 in
//! AMD's order, SPLs as DER INTEGERs, hwID as 64 raw bytes = the chip id. The chain is trusted
//! only by the emulator; it is persisted as PEM in a state directory because RSA-4096 key
//! generation is slow.

use std::path::{Path, PathBuf};

use p384::ecdsa::SigningKey as P384SigningKey;
use p384::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey};
use rand_core::{OsRng, RngCore};
use rsa::pkcs8::LineEnding;
use rsa::RsaPrivateKey;
use sha2::{Digest as _, Sha256, Sha384};
use signature::{RandomizedSigner, SignatureEncoding};

use super::der::{self, tag};
use super::EmulatorError;

/// ARK certificate file in the state directory.
pub const ARK_PEM: &str = "test-ark.pem";
/// ASK certificate file.
pub const ASK_PEM: &str = "test-ask.pem";
/// VCEK certificate file.
pub const VCEK_PEM: &str = "vcek.pem";
/// ASK then ARK, like THIM's `certificateChain` and KDS `cert_chain`.
pub const CERT_CHAIN_PEM: &str = "cert-chain.pem";
const ARK_KEY: &str = "test-ark-key.pem";
const ASK_KEY: &str = "test-ask-key.pem";
const VCEK_KEY: &str = "vcek-key.pem";
const PLATFORM_JSON: &str = "test-platform.json";

/// AMD's arc for VCEK/VLEK extensions.
const AMD_ARC: &str = "1.3.6.1.4.1.3704.1";
const OID_RSASSA_PSS: &str = "1.2.840.113549.1.1.10";
const OID_SHA384: &str = "2.16.840.1.101.3.4.2.2";
const OID_MGF1: &str = "1.2.840.113549.1.1.8";

/// TCB of the test platform (Milan/Genoa layout, PROTOCOLS.md §3.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TestTcb {
    /// BOOT_LOADER SVN (byte 0).
    pub bootloader: u8,
    /// TEE SVN (byte 1).
    pub tee: u8,
    /// SNP firmware SVN (byte 6).
    pub snp: u8,
    /// Microcode SVN (byte 7).
    pub microcode: u8,
}

impl TestTcb {
    /// The 8 TCB_VERSION bytes, Milan/Genoa layout.
    pub fn to_bytes(self) -> [u8; 8] {
        [
            self.bootloader,
            self.tee,
            0,
            0,
            0,
            0,
            self.snp,
            self.microcode,
        ]
    }
}

impl Default for TestTcb {
    /// The TCB of a real Genoa report (PROTOCOLS.md §3.4 example: BL 10, TEE 0, SNP 25, µcode 84).
    fn default() -> Self {
        Self {
            bootloader: 10,
            tee: 0,
            snp: 25,
            microcode: 84,
        }
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct PlatformFile {
    chip_id: String,
    tcb: TestTcb,
}

/// The test chain and the VCEK signing key.
pub struct TestAmdChain {
    /// ARK certificate (DER).
    pub ark_der: Vec<u8>,
    /// ASK certificate (DER).
    pub ask_der: Vec<u8>,
    /// VCEK certificate (DER).
    pub vcek_der: Vec<u8>,
    /// The VCEK private key: signs reports.
    pub vcek_key: P384SigningKey,
    /// The chip id (= the VCEK hwID extension).
    pub chip_id: [u8; 64],
    /// The TCB the VCEK was issued for (= the SPL extensions).
    pub tcb: TestTcb,
    /// Where the chain is stored.
    pub dir: PathBuf,
}

impl std::fmt::Debug for TestAmdChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestAmdChain")
            .field("dir", &self.dir)
            .field("chip_id", &hex::encode(self.chip_id))
            .field("tcb", &self.tcb)
            .finish_non_exhaustive()
    }
}

fn read_text(dir: &Path, name: &str) -> Result<String, EmulatorError> {
    let path = dir.join(name);
    std::fs::read_to_string(&path).map_err(|source| EmulatorError::StateIo { path, source })
}

/// Writes `bytes` to `dir/name` atomically (temp file + rename), mode 0600 for keys.
pub(crate) fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf, EmulatorError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let io = |source| EmulatorError::StateIo {
        path: path.clone(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&tmp, &path).map_err(io)?;
    Ok(path)
}

/// PEM text of one certificate.
pub fn cert_pem(der_bytes: &[u8]) -> Result<String, EmulatorError> {
    der::pem_encode("CERTIFICATE", der_bytes)
}

/// DER of the first certificate in PEM text.
pub fn pem_to_der(pem: &str) -> Result<Vec<u8>, EmulatorError> {
    der::pem_decode(pem, "CERTIFICATE")
}

impl TestAmdChain {
    /// Loads the chain from `dir`, or generates it (two RSA-4096 keys: seconds) and stores it.
    pub fn load_or_create(dir: &Path) -> Result<Self, EmulatorError> {
        std::fs::create_dir_all(dir).map_err(|source| EmulatorError::StateIo {
            path: dir.to_path_buf(),
            source,
        })?;
        let complete = [ARK_PEM, ASK_PEM, VCEK_PEM, VCEK_KEY, PLATFORM_JSON]
            .iter()
            .all(|n| dir.join(n).is_file());
        if complete {
            return Self::load(dir);
        }
        let chain = Self::generate(dir, TestTcb::default())?;
        Ok(chain)
    }

    /// Loads a stored chain.
    pub fn load(dir: &Path) -> Result<Self, EmulatorError> {
        let platform: PlatformFile = serde_json::from_str(&read_text(dir, PLATFORM_JSON)?)
            .map_err(|source| EmulatorError::StateJson {
                path: dir.join(PLATFORM_JSON),
                source,
            })?;
        let chip_id = hex::decode(&platform.chip_id)
            .ok()
            .and_then(|b| <[u8; 64]>::try_from(b.as_slice()).ok())
            .ok_or_else(|| EmulatorError::StateCorrupt {
                path: dir.join(PLATFORM_JSON),
                what: "chip_id is not 128 hex digits",
            })?;
        let vcek_key =
            P384SigningKey::from_pkcs8_pem(&read_text(dir, VCEK_KEY)?).map_err(|_| {
                EmulatorError::StateCorrupt {
                    path: dir.join(VCEK_KEY),
                    what: "not a PKCS#8 P-384 private key",
                }
            })?;
        Ok(Self {
            ark_der: pem_to_der(&read_text(dir, ARK_PEM)?)?,
            ask_der: pem_to_der(&read_text(dir, ASK_PEM)?)?,
            vcek_der: pem_to_der(&read_text(dir, VCEK_PEM)?)?,
            vcek_key,
            chip_id,
            tcb: platform.tcb,
            dir: dir.to_path_buf(),
        })
    }

    /// Generates a new chain for `tcb` with a random chip id, and stores it in `dir`.
    pub fn generate(dir: &Path, tcb: TestTcb) -> Result<Self, EmulatorError> {
        let mut rng = OsRng;
        let ark_key = RsaPrivateKey::new(&mut rng, 4096).map_err(EmulatorError::KeyGen)?;
        let ask_key = RsaPrivateKey::new(&mut rng, 4096).map_err(EmulatorError::KeyGen)?;
        let vcek_key = P384SigningKey::random(&mut rng);
        let mut chip_id = [0u8; 64];
        rng.fill_bytes(&mut chip_id);

        let now = time::OffsetDateTime::now_utc();
        let not_before = now - time::Duration::days(1);
        let years = |n: i64| not_before + time::Duration::days(365 * n + n / 4);

        let ark_spki = rsa_spki(&ark_key)?;
        let ask_spki = rsa_spki(&ask_key)?;
        let vcek_spki = vcek_key
            .verifying_key()
            .to_public_key_der()
            .map_err(|_| EmulatorError::Encode { what: "VCEK SPKI" })?
            .as_bytes()
            .to_vec();
        let ark_name = amd_name("ARK-Genoa");
        let ask_name = amd_name("SEV-Genoa");
        let crl = "http://127.0.0.1/vcek/v1/Genoa/crl";

        let ark_ski = key_id(&ark_spki);
        let ask_ski = key_id(&ask_spki);
        let ark_ext = [
            extension("2.5.29.15", true, &der::tlv(tag::BIT_STRING, &[0x01, 0x06])),
            extension("2.5.29.14", false, &der::tlv(tag::OCTET_STRING, &ark_ski)),
            extension(
                "2.5.29.19",
                true,
                &der::seq(&[&der::tlv(tag::BOOLEAN, &[0xFF])]),
            ),
            extension("2.5.29.31", false, &crl_dp(crl)),
        ];
        let ark_der = sign_pss(
            &ark_key,
            &tbs(
                0x20000,
                &ark_name,
                &ark_name,
                not_before,
                years(25),
                &ark_spki,
                &ark_ext,
                true,
            ),
            true,
        )?;
        let ask_ext = [
            extension("2.5.29.14", false, &der::tlv(tag::OCTET_STRING, &ask_ski)),
            extension("2.5.29.35", false, &der::seq(&[&der::tlv(0x80, &ark_ski)])),
            extension(
                "2.5.29.19",
                true,
                &der::seq(&[&der::tlv(tag::BOOLEAN, &[0xFF]), &der::uint_u64(0)]),
            ),
            extension("2.5.29.15", true, &der::tlv(tag::BIT_STRING, &[0x02, 0x04])),
            extension("2.5.29.31", false, &crl_dp(crl)),
        ];
        let ask_der = sign_pss(
            &ark_key,
            &tbs(
                0x20002,
                &ark_name,
                &ask_name,
                not_before,
                years(25),
                &ask_spki,
                &ask_ext,
                true,
            ),
            true,
        )?;
        let vcek_ext = vcek_extensions(&chip_id, tcb);
        let vcek_der = sign_pss(
            &ask_key,
            &tbs(
                0,
                &ask_name,
                &amd_name("SEV-VCEK"),
                not_before,
                years(7),
                &vcek_spki,
                &vcek_ext,
                false,
            ),
            false,
        )?;

        let key_pem = |k: &RsaPrivateKey| {
            k.to_pkcs8_pem(LineEnding::LF)
                .map(|p| p.to_string())
                .map_err(|_| EmulatorError::Encode {
                    what: "RSA key PEM",
                })
        };
        write_atomic(dir, ARK_KEY, key_pem(&ark_key)?.as_bytes())?;
        write_atomic(dir, ASK_KEY, key_pem(&ask_key)?.as_bytes())?;
        let vcek_key_pem =
            vcek_key
                .to_pkcs8_pem(LineEnding::LF)
                .map_err(|_| EmulatorError::Encode {
                    what: "VCEK key PEM",
                })?;
        write_atomic(dir, VCEK_KEY, vcek_key_pem.as_bytes())?;
        write_atomic(dir, ARK_PEM, cert_pem(&ark_der)?.as_bytes())?;
        write_atomic(dir, ASK_PEM, cert_pem(&ask_der)?.as_bytes())?;
        let chain_pem = format!("{}{}", cert_pem(&ask_der)?, cert_pem(&ark_der)?);
        write_atomic(dir, CERT_CHAIN_PEM, chain_pem.as_bytes())?;
        let platform = serde_json::to_vec_pretty(&PlatformFile {
            chip_id: hex::encode(chip_id),
            tcb,
        })
        .map_err(|_| EmulatorError::Encode {
            what: "platform JSON",
        })?;
        write_atomic(dir, PLATFORM_JSON, &platform)?;
        // The VCEK last: its presence marks a complete state directory.
        write_atomic(dir, VCEK_PEM, cert_pem(&vcek_der)?.as_bytes())?;
        Ok(Self {
            ark_der,
            ask_der,
            vcek_der,
            vcek_key,
            chip_id,
            tcb,
            dir: dir.to_path_buf(),
        })
    }

    /// Path of a file of the stored chain ([`ARK_PEM`], [`ASK_PEM`], [`VCEK_PEM`], ...).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

fn rsa_spki(key: &RsaPrivateKey) -> Result<Vec<u8>, EmulatorError> {
    key.to_public_key()
        .to_public_key_der()
        .map(|d| d.as_bytes().to_vec())
        .map_err(|_| EmulatorError::Encode { what: "RSA SPKI" })
}

/// Subject key identifier: leftmost 160 bits of SHA-256 of the SPKI (RFC 7093 §2 method 1).
fn key_id(spki: &[u8]) -> Vec<u8> {
    Sha256::digest(spki)[..20].to_vec()
}

/// AMD's name: OU, C, L, ST, O, CN; UTF8String except the PrintableString country.
pub(crate) fn amd_name(cn: &str) -> Vec<u8> {
    let rdn = |oid: &str, t: u8, v: &str| {
        der::tlv(
            tag::SET,
            &der::seq(&[&der::oid(oid), &der::tlv(t, v.as_bytes())]),
        )
    };
    der::seq(&[
        &rdn("2.5.4.11", tag::UTF8_STRING, "Engineering"),
        &rdn("2.5.4.6", tag::PRINTABLE_STRING, "US"),
        &rdn("2.5.4.7", tag::UTF8_STRING, "Santa Clara"),
        &rdn("2.5.4.8", tag::UTF8_STRING, "CA"),
        &rdn("2.5.4.10", tag::UTF8_STRING, "Advanced Micro Devices"),
        &rdn("2.5.4.3", tag::UTF8_STRING, cn),
    ])
}

fn extension(oid: &str, critical: bool, value: &[u8]) -> Vec<u8> {
    let oid = der::oid(oid);
    let value = der::tlv(tag::OCTET_STRING, value);
    if critical {
        der::seq(&[&oid, &der::tlv(tag::BOOLEAN, &[0xFF]), &value])
    } else {
        der::seq(&[&oid, &value])
    }
}

fn crl_dp(uri: &str) -> Vec<u8> {
    // CRLDistributionPoints ::= SEQ { DistributionPoint { [0] fullName [0] { [6] URI } } }
    let uri = der::tlv(0x86, uri.as_bytes());
    der::seq(&[&der::seq(&[&der::explicit(0, &der::explicit(0, &uri))])])
}

/// VCEK extensions in the order of AMD's real Genoa VCEKs.
fn vcek_extensions(chip_id: &[u8; 64], tcb: TestTcb) -> Vec<Vec<u8>> {
    let ext =
        |suffix: &str, value: Vec<u8>| extension(&format!("{AMD_ARC}.{suffix}"), false, &value);
    let int = |v: u8| der::uint_u64(u64::from(v));
    vec![
        ext("1", int(0)),
        ext("2", der::tlv(tag::IA5_STRING, b"Genoa")),
        ext("3.1", int(tcb.bootloader)),
        ext("3.2", int(tcb.tee)),
        ext("3.4", int(0)),
        ext("3.5", int(0)),
        ext("3.6", int(0)),
        ext("3.7", int(0)),
        ext("3.3", int(tcb.snp)),
        ext("3.8", int(tcb.microcode)),
        ext("4", chip_id.to_vec()),
    ]
}

/// RSASSA-PSS AlgorithmIdentifier with SHA-384, MGF1-SHA-384, salt 48 (trailer 1 if explicit).
fn pss_algorithm(explicit_trailer: bool) -> Vec<u8> {
    let sha384 = der::seq(&[&der::oid(OID_SHA384), &der::tlv(tag::NULL, &[])]);
    let mgf1 = der::seq(&[&der::oid(OID_MGF1), &sha384]);
    let mut params = vec![
        der::explicit(0, &sha384),
        der::explicit(1, &mgf1),
        der::explicit(2, &der::uint_u64(48)),
    ];
    if explicit_trailer {
        params.push(der::explicit(3, &der::uint_u64(1)));
    }
    let params: Vec<&[u8]> = params.iter().map(Vec::as_slice).collect();
    der::seq(&[&der::oid(OID_RSASSA_PSS), &der::seq(&params)])
}

#[allow(clippy::too_many_arguments)]
fn tbs(
    serial: u64,
    issuer: &[u8],
    subject: &[u8],
    not_before: time::OffsetDateTime,
    not_after: time::OffsetDateTime,
    spki: &[u8],
    extensions: &[Vec<u8>],
    explicit_trailer: bool,
) -> Vec<u8> {
    let ext: Vec<&[u8]> = extensions.iter().map(Vec::as_slice).collect();
    der::seq(&[
        &der::explicit(0, &der::uint_u64(2)),
        &der::uint_u64(serial),
        &pss_algorithm(explicit_trailer),
        issuer,
        &der::seq(&[&der::time(not_before), &der::time(not_after)]),
        subject,
        spki,
        &der::explicit(3, &der::seq(&ext)),
    ])
}

/// Signs a TBS with RSASSA-PSS SHA-384 (salt 48) and assembles the certificate.
fn sign_pss(
    key: &RsaPrivateKey,
    tbs: &[u8],
    explicit_trailer: bool,
) -> Result<Vec<u8>, EmulatorError> {
    let signer = rsa::pss::SigningKey::<Sha384>::new(key.clone());
    let signature = signer
        .try_sign_with_rng(&mut OsRng, tbs)
        .map_err(|source| EmulatorError::Sign { source })?;
    Ok(der::seq(&[
        tbs,
        &pss_algorithm(explicit_trailer),
        &der::bit_string(&signature.to_vec()),
    ]))
}
