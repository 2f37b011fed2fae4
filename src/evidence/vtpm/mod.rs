//! vTPM evidence (PROTOCOLS.md §4.1, §4.5, §4.6, §4.8 "Collect"): the HCL report, the AK and its
//! certificate, a PCR0-7 quote, and the AK-certified `TpmEphemeralEncryptionKey` that decrypts
//! inside the TPM.
//!
//! This module owns the tss-esapi [`Context`](tss_esapi::Context). The context is not `Send`, so [`Vtpm::open`] starts
//! one owner thread that creates and keeps it; every operation is a job sent to that thread and
//! answered over a channel (callers in async code wrap the blocking calls in `spawn_blocking`).
//! The TCTI string comes from the caller: `device:/dev/tpmrm0` in production,
//! `swtpm:host=127.0.0.1,port=2321` against swtpm (not `mssim:`). libtss2 would print every
//! failing command on stderr, so `TSS2_LOG=all+none` is set before the first context is created
//! (unless the operator set `TSS2_LOG`) and errors are reported here, with a code, instead.
//!
//! What this module does not do: parse the HCL report or TPMS_ATTEST (that is `format::hcl` and
//! `format::tpm`), or verify anything. It reads and returns bytes.

use std::str::FromStr;
use std::sync::mpsc;
use std::sync::Once;
use std::thread;

use sha2::{Digest as _, Sha256};
use tss_esapi::tcti_ldr::TctiNameConf;

mod ephemeral;
mod error;
mod quote;
mod session;

use error::cmd;
pub use error::VtpmError;
pub use session::VtpmSession;
use session::{marshall_attest, rsa_parts, rsassa_bytes, tpm2b_public};

use crate::error::ErrorCode;

/// NV index of the HCL attestation report (PROTOCOLS.md §4.1).
pub const HCL_REPORT_NV_INDEX: u32 = 0x0140_0001;
/// NV index the guest writes 64 bytes of user data to (PROTOCOLS.md §4.1).
pub const USER_DATA_NV_INDEX: u32 = 0x0140_0002;
/// Persistent handle of the attestation key (PROTOCOLS.md §4.1).
pub const AK_HANDLE: u32 = 0x8100_0003;
/// NV index of the AK certificate (DER, may carry trailing padding) (PROTOCOLS.md §4.1).
pub const AK_CERT_NV_INDEX: u32 = 0x01C1_01D0;
/// Size of the user-data NV index.
pub const USER_DATA_SIZE: usize = 64;
/// Largest qualifying data a TPM accepts (sizeof(TPMU_HA) = 64).
pub const MAX_NONCE_LEN: usize = 64;
/// Largest ciphertext the 2048-bit ephemeral key can decrypt.
pub const EPHEMERAL_KEY_BYTES: usize = 256;
/// PCRs quoted and bound into the ephemeral key's policy (SHA-256 bank; PROTOCOLS.md §4.5, §4.6).
pub const QUOTED_PCRS: [u8; 8] = [0, 1, 2, 3, 4, 5, 6, 7];

/// How often a quote is retried when the PCRs change between reading them and quoting.
const PCR_RACE_ATTEMPTS: u32 = 3;

/// The AK's public part (PROTOCOLS.md §4.1; `HCLAkPub` in the HCL variable data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AkPublic {
    /// Marshalled TPM2B_PUBLIC (2-byte big-endian size, then TPMT_PUBLIC), as sent to MAA.
    pub tpm2b_public: Vec<u8>,
    /// RSA modulus, big-endian.
    pub modulus: Vec<u8>,
    /// RSA public exponent (65537 when the TPM stores 0).
    pub exponent: u32,
}

/// A PCR quote (PROTOCOLS.md §4.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcrQuote {
    /// TPMS_ATTEST bytes (TPM2B_ATTEST payload without the size prefix).
    pub attest: Vec<u8>,
    /// Raw RSASSA-PKCS1-v1_5 SHA-256 signature bytes (no TPMT_SIGNATURE header).
    pub signature: Vec<u8>,
    /// SHA-256 bank values of PCR0..7, in selection order.
    pub pcr_values: Vec<[u8; 32]>,
}

/// The AK-certified `TpmEphemeralEncryptionKey` (PROTOCOLS.md §4.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EphemeralKey {
    /// Marshalled TPM2B_PUBLIC (with the size prefix): MAA's `EncKeyPub`.
    pub tpm2b_public: Vec<u8>,
    /// RSA modulus of the key, big-endian.
    pub modulus: Vec<u8>,
    /// RSA public exponent.
    pub exponent: u32,
    /// TPMS_ATTEST of TPM2_Certify: `EncKeyCertifyInfo`.
    pub certify_info: Vec<u8>,
    /// Raw RSASSA signature over `certify_info` by the AK: `EncKeyCertifyInfoSignature`.
    pub certify_signature: Vec<u8>,
}

/// Padding for [`Vtpm::ephemeral_decrypt`] (`TPM2_RSA_Decrypt` scheme, empty label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecryptScheme {
    /// RSAES-OAEP with the given hash.
    Oaep(OaepHash),
    /// RSAES-PKCS1-v1_5 (MAA's inner key of an AzureGuest response).
    RsaEs,
}

/// Hash of an OAEP decryption.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OaepHash {
    /// SHA-1 (AKV `CKM_RSA_AES_KEY_WRAP`, the default `enc`).
    Sha1,
    /// SHA-256 (AKV `RSA_AES_KEY_WRAP_256`).
    Sha256,
    /// SHA-384 (AKV `RSA_AES_KEY_WRAP_384`).
    Sha384,
}

type Job = Box<dyn FnOnce(&mut VtpmSession) + Send>;

/// A handle to the TPM: `Send + Sync`; the context lives on one owner thread.
///
/// Dropping the last handle stops the owner thread (and closes the TCTI).
#[derive(Debug)]
pub struct Vtpm {
    jobs: Option<mpsc::Sender<Job>>,
    owner: Option<thread::JoinHandle<()>>,
    tcti: String,
}

impl Drop for Vtpm {
    /// Stops the owner thread and waits for it, so the TPM connection is closed on return
    /// (swtpm serves one connection at a time).
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(owner) = self.owner.take() {
            let _ = owner.join();
        }
    }
}

static TSS2_LOG_ONCE: Once = Once::new();

/// Silences libtss2's own stderr logging (`TSS2_LOG=all+none`) unless the operator set
/// `TSS2_LOG`. [`Vtpm::open`] calls it, but setting an environment variable races with other
/// threads reading the environment: binaries call this first thing in `main`, while they are
/// still single-threaded.
pub fn quiet_tss2_log() {
    TSS2_LOG_ONCE.call_once(|| {
        if std::env::var_os("TSS2_LOG").is_none() {
            std::env::set_var("TSS2_LOG", "all+none");
        }
    });
}

impl Vtpm {
    /// Connects to the TPM behind `tcti` and starts the owner thread.
    ///
    /// Errors: [`VtpmError::TctiInvalid`], [`VtpmError::Unreachable`].
    pub fn open(tcti: &str) -> Result<Self, VtpmError> {
        quiet_tss2_log();
        let name_conf = TctiNameConf::from_str(tcti).map_err(|source| VtpmError::TctiInvalid {
            tcti: tcti.to_string(),
            source,
        })?;
        let (jobs, inbox) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::sync_channel::<Result<(), VtpmError>>(1);
        let tcti_owned = tcti.to_string();
        let owner = thread::Builder::new()
            .name("skrd-tpm".to_string())
            .spawn(move || {
                let mut session = match VtpmSession::connect(&tcti_owned, name_conf) {
                    Ok(session) => {
                        let _ = ready_tx.send(Ok(()));
                        session
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                while let Ok(job) = inbox.recv() {
                    job(&mut session);
                }
            })
            .map_err(|_| VtpmError::OwnerThreadGone)?;
        let ready = ready_rx.recv().map_err(|_| VtpmError::OwnerThreadGone);
        if !matches!(ready, Ok(Ok(()))) {
            let _ = owner.join();
            ready??;
            return Err(VtpmError::OwnerThreadGone);
        }
        Ok(Self {
            jobs: Some(jobs),
            owner: Some(owner),
            tcti: tcti.to_string(),
        })
    }

    /// The TCTI string this handle was opened with.
    pub fn tcti(&self) -> &str {
        &self.tcti
    }

    /// Runs `f` on the owner thread with the session and waits for its result.
    ///
    /// This is the extension point for code that needs raw TPM commands (the emulator's
    /// provisioning); evidence collection uses the methods below.
    pub fn run<R, F>(&self, f: F) -> Result<R, VtpmError>
    where
        R: Send + 'static,
        F: FnOnce(&mut VtpmSession) -> Result<R, VtpmError> + Send + 'static,
    {
        let (tx, rx) = mpsc::sync_channel(1);
        self.jobs
            .as_ref()
            .ok_or(VtpmError::OwnerThreadGone)?
            .send(Box::new(move |session: &mut VtpmSession| {
                let _ = tx.send(f(session));
            }))
            .map_err(|_| VtpmError::OwnerThreadGone)?;
        rx.recv().map_err(|_| VtpmError::OwnerThreadGone)?
    }

    /// Whether an NV index is defined.
    pub fn nv_index_exists(&self, index: u32) -> Result<bool, VtpmError> {
        self.run(move |s| s.nv_index_exists(index))
    }

    /// Reads the HCL report from NV 0x01400001 (owner auth, chunked full read).
    ///
    /// Errors: [`VtpmError::HclReportAbsent`] when the index is not defined.
    pub fn read_hcl_report(&self) -> Result<Vec<u8>, VtpmError> {
        self.run(|s| s.read_hcl_report())
    }

    /// (Re)defines NV 0x01400002 as a 64-byte index if absent or of another size, and writes
    /// `data` to it (PROTOCOLS.md §4.1 "Refreshing with user data").
    pub fn write_user_data(&self, data: &[u8; USER_DATA_SIZE]) -> Result<(), VtpmError> {
        let data = *data;
        self.run(move |s| s.write_user_data(&data))
    }

    /// Reads the 64 bytes of NV 0x01400002, or `None` when the index is not defined.
    pub fn read_user_data(&self) -> Result<Option<[u8; USER_DATA_SIZE]>, VtpmError> {
        self.run(|s| s.read_user_data())
    }

    /// ReadPublic of the AK at 0x81000003.
    ///
    /// Errors: [`VtpmError::AkAbsent`], [`VtpmError::UnexpectedObject`] if it is not RSA.
    pub fn read_ak_public(&self) -> Result<AkPublic, VtpmError> {
        self.run(|s| s.read_ak_public())
    }

    /// Full read of the AK certificate NV index 0x01C101D0 (DER; may carry trailing padding).
    pub fn read_ak_cert(&self) -> Result<Vec<u8>, VtpmError> {
        self.run(|s| s.read_ak_cert())
    }

    /// PCR0-7 (SHA-256) values and `TPM2_Quote` by the AK with `nonce` as qualifying data.
    pub fn quote_pcrs(&self, nonce: &[u8]) -> Result<PcrQuote, VtpmError> {
        let nonce = nonce.to_vec();
        self.run(move |s| s.quote_pcrs(&nonce))
    }

    /// Creates the `TpmEphemeralEncryptionKey` (NULL hierarchy, PolicyPCR over PCR0-7) and
    /// certifies it with the AK; the key stays loaded for [`Vtpm::ephemeral_decrypt`] until the
    /// next creation, a refused decryption, or the last handle is dropped (then it is flushed).
    pub fn create_ephemeral_key(&self) -> Result<EphemeralKey, VtpmError> {
        self.run(|s| s.create_ephemeral_key())
    }

    /// Satisfies the ephemeral key's PolicyPCR and decrypts `ciphertext` inside the TPM, with the
    /// loaded key (created first if none is: NULL-hierarchy primaries are deterministic until the
    /// TPM resets, so it is the same key that was certified). The result is key material: the caller moves it into a `Secret` at once.
    pub fn ephemeral_decrypt(
        &self,
        ciphertext: &[u8],
        scheme: DecryptScheme,
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, VtpmError> {
        let ciphertext = ciphertext.to_vec();
        self.run(move |s| s.ephemeral_decrypt(&ciphertext, scheme))
    }
}

/// SHA-256 over the concatenated PCR values (the quote's pcrDigest, PROTOCOLS.md §4.5).
pub fn pcr_digest(values: &[[u8; 32]]) -> Vec<u8> {
    let mut h = Sha256::new();
    for v in values {
        h.update(v);
    }
    h.finalize().to_vec()
}
