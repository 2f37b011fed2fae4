//! vTPM evidence (PROTOCOLS.md §4.1, §4.5, §4.6, §4.8 "Collect"): the HCL report, the AK and its
//! certificate, a PCR0-7 quote, and the AK-certified `TpmEphemeralEncryptionKey` that decrypts
//! inside the TPM.
//!
//! This module owns the tss-esapi [`Context`]. The context is not `Send`, so [`Vtpm::open`] starts
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
use tss_esapi::abstraction::nv;
use tss_esapi::attributes::{NvIndexAttributesBuilder, ObjectAttributesBuilder};
use tss_esapi::constants::{CapabilityType, SessionType, StartupType};
use tss_esapi::handles::{
    KeyHandle, NvIndexHandle, NvIndexTpmHandle, ObjectHandle, PersistentTpmHandle, TpmHandle,
};
use tss_esapi::interface_types::algorithm::{HashingAlgorithm, PublicAlgorithm};
use tss_esapi::interface_types::key_bits::RsaKeyBits;
use tss_esapi::interface_types::resource_handles::{Hierarchy, NvAuth, Provision};
use tss_esapi::interface_types::session_handles::{AuthSession, PolicySession};
use tss_esapi::structures::{
    Attest, AttestInfo, CapabilityData, Data, Digest, HashScheme, MaxNvBuffer, NvPublic,
    PcrSelectionList, PcrSelectionListBuilder, PcrSlot, Public, PublicBuilder, PublicKeyRsa,
    PublicRsaParametersBuilder, RsaDecryptionScheme, RsaExponent, RsaScheme, Signature,
    SignatureScheme, SymmetricDefinition, SymmetricDefinitionObject,
};
use tss_esapi::tcti_ldr::TctiNameConf;
use tss_esapi::traits::Marshall;
use tss_esapi::Context;

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

/// Errors of the vTPM evidence edge.
#[derive(Debug, thiserror::Error)]
pub enum VtpmError {
    /// The TCTI string does not name a known TCTI or has bad parameters.
    #[error(
        "the TPM TCTI string {tcti:?} is not valid ({source}); use e.g. \"device:/dev/tpmrm0\" \
         or \"swtpm:host=127.0.0.1,port=2321\""
    )]
    TctiInvalid {
        /// The TCTI string as given.
        tcti: String,
        /// tss-esapi's parse error.
        source: tss_esapi::Error,
    },
    /// The TCTI could not connect to the TPM.
    #[error(
        "cannot reach the TPM through TCTI {tcti:?} ({source}); {}",
        tcti_hint(tcti)
    )]
    Unreachable {
        /// The TCTI string used.
        tcti: String,
        /// tss-esapi's error (a TCTI I/O or loader error).
        source: tss_esapi::Error,
    },
    /// The HCL report NV index is not defined.
    #[error(
        "the HCL report NV index 0x{index:08X} is not defined in the TPM: this is not an Azure \
         confidential VM, or the vTPM is not provisioned (for tests: `skr-emulator provision-tpm`)"
    )]
    HclReportAbsent {
        /// The NV index looked up (0x01400001).
        index: u32,
    },
    /// The attestation key is not persisted at its handle.
    #[error(
        "no attestation key at persistent handle 0x{handle:08X}: the vTPM is not provisioned like \
         an Azure confidential VM (for tests: `skr-emulator provision-tpm`)"
    )]
    AkAbsent {
        /// The persistent handle looked up (0x81000003).
        handle: u32,
    },
    /// The AK certificate NV index is not defined.
    #[error(
        "the AK certificate NV index 0x{index:08X} is not defined: the vTPM has no AK certificate \
         yet (on Azure it is provisioned by the platform; retry later or redeploy the VM)"
    )]
    AkCertAbsent {
        /// The NV index looked up (0x01C101D0).
        index: u32,
    },
    /// A TPM command failed.
    #[error("TPM command {operation} failed: {source}")]
    Command {
        /// The command or step that failed.
        operation: &'static str,
        /// tss-esapi's error (TPM response code or wrapper error).
        source: tss_esapi::Error,
    },
    /// An object in the TPM does not have the expected shape.
    #[error("{what} in the TPM is unexpected: expected {expected}, found {found}")]
    UnexpectedObject {
        /// Which object.
        what: &'static str,
        /// What was expected.
        expected: &'static str,
        /// What was found.
        found: String,
    },
    /// The PCR values kept changing while quoting.
    #[error(
        "PCR0-7 changed between reading them and quoting, {attempts} times in a row; something is \
         extending boot PCRs right now: retry once boot measurements are finished"
    )]
    PcrsChanging {
        /// Number of attempts made.
        attempts: u32,
    },
    /// The caller's nonce does not fit into TPM qualifying data.
    #[error("quote nonce is {len} bytes; the TPM accepts at most {max}: hash it first")]
    NonceTooLong {
        /// Length given.
        len: usize,
        /// Largest accepted.
        max: usize,
    },
    /// The ciphertext is longer than the key's modulus.
    #[error("ciphertext is {len} bytes; the ephemeral RSA-2048 key decrypts at most {max}")]
    CiphertextTooLong {
        /// Length given.
        len: usize,
        /// Largest accepted.
        max: usize,
    },
    /// Data to write does not fit the NV index.
    #[error("NV index 0x{index:08X}: {len} bytes do not fit its size of {size} bytes")]
    NvDataTooLarge {
        /// The NV index.
        index: u32,
        /// Bytes to write.
        len: usize,
        /// Defined size.
        size: usize,
    },
    /// The owner thread of the TPM context is gone (it panicked or could not start).
    #[error("the TPM owner thread stopped; reopen the TPM (this is a bug, please report it)")]
    OwnerThreadGone,
}

impl ErrorCode for VtpmError {
    fn code(&self) -> &'static str {
        match self {
            Self::TctiInvalid { .. } => "tpm-tcti-invalid",
            Self::Unreachable { .. } => "tpm-unreachable",
            Self::HclReportAbsent { .. } => "hcl-report-absent",
            Self::AkAbsent { .. } => "ak-absent",
            Self::AkCertAbsent { .. } => "ak-cert-absent",
            Self::Command { .. } => "tpm-command-failed",
            Self::UnexpectedObject { .. } => "tpm-unexpected-object",
            Self::PcrsChanging { .. } => "tpm-pcrs-changing",
            Self::NonceTooLong { .. } => "tpm-nonce-too-long",
            Self::CiphertextTooLong { .. } => "tpm-ciphertext-too-long",
            Self::NvDataTooLarge { .. } => "tpm-nv-data-too-large",
            Self::OwnerThreadGone => "tpm-owner-thread-gone",
        }
    }
}

/// What to check when a TCTI cannot connect.
fn tcti_hint(tcti: &str) -> &'static str {
    if tcti.starts_with("device") {
        "check that the TPM device exists (ls -l /dev/tpmrm0), that this user may open it (group \
         tss), and that the TCTI library libtss2-tcti-device.so.0 is installed"
    } else if tcti.starts_with("swtpm") || tcti.starts_with("mssim") {
        "check that swtpm is running with `--server type=tcp` on that host and port (and its \
         control channel on port+1), and that libtss2-tcti-swtpm.so.0 is installed"
    } else if tcti.starts_with("tabrmd") {
        "check that tpm2-abrmd is running and reachable on the bus"
    } else {
        "check the TCTI string and that the TPM behind it is running"
    }
}

fn cmd(operation: &'static str) -> impl FnOnce(tss_esapi::Error) -> VtpmError {
    move |source| VtpmError::Command { operation, source }
}

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
    /// certifies it with the AK; the key is flushed afterwards.
    pub fn create_ephemeral_key(&self) -> Result<EphemeralKey, VtpmError> {
        self.run(|s| s.create_ephemeral_key())
    }

    /// Re-creates the ephemeral key, satisfies its PolicyPCR and decrypts `ciphertext` inside the
    /// TPM. The result is key material: the caller moves it into a `Secret` at once.
    pub fn ephemeral_decrypt(
        &self,
        ciphertext: &[u8],
        scheme: DecryptScheme,
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, VtpmError> {
        let ciphertext = ciphertext.to_vec();
        self.run(move |s| s.ephemeral_decrypt(&ciphertext, scheme))
    }
}

/// The TPM context and the operations on it; lives on the owner thread only.
pub struct VtpmSession {
    context: Context,
}

impl std::fmt::Debug for VtpmSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VtpmSession")
    }
}

impl VtpmSession {
    fn connect(tcti: &str, name_conf: TctiNameConf) -> Result<Self, VtpmError> {
        let unreachable = |source| VtpmError::Unreachable {
            tcti: tcti.to_string(),
            source,
        };
        let mut context = Context::new(name_conf).map_err(unreachable)?;
        // Probe with a harmless command; a TPM that was never started answers TPM_RC_INITIALIZE.
        if context
            .get_tpm_property(tss_esapi::constants::PropertyTag::NvBufferMax)
            .is_err()
        {
            context.startup(StartupType::Clear).map_err(unreachable)?;
            context
                .get_tpm_property(tss_esapi::constants::PropertyTag::NvBufferMax)
                .map_err(unreachable)?;
        }
        Ok(Self { context })
    }

    /// The raw tss-esapi context (for the emulator's provisioning).
    pub fn context(&mut self) -> &mut Context {
        &mut self.context
    }

    /// Whether a handle (NV index or persistent object) is present.
    fn handle_exists(&mut self, handle: u32) -> Result<bool, VtpmError> {
        let (data, _) = self
            .context
            .execute_without_session(|ctx| ctx.get_capability(CapabilityType::Handles, handle, 1))
            .map_err(cmd("GetCapability(handles)"))?;
        match data {
            CapabilityData::Handles(list) => {
                Ok(list.as_ref().iter().any(|h| u32::from(*h) == handle))
            }
            _ => Ok(false),
        }
    }

    /// Whether an NV index is defined.
    pub fn nv_index_exists(&mut self, index: u32) -> Result<bool, VtpmError> {
        self.handle_exists(index)
    }

    /// Whether a persistent object exists at `handle`.
    pub fn persistent_exists(&mut self, handle: u32) -> Result<bool, VtpmError> {
        self.handle_exists(handle)
    }

    fn nv_tpm_handle(index: u32) -> Result<NvIndexTpmHandle, VtpmError> {
        NvIndexTpmHandle::new(index).map_err(cmd("NV index handle"))
    }

    /// An ESYS object for an NV index. Taken without a session: tpm2-tss 3.2 crashes in
    /// `Esys_TR_FromTPMPublic` when a password session is set.
    fn nv_object(&mut self, index: u32) -> Result<ObjectHandle, VtpmError> {
        let tpm_handle = TpmHandle::NvIndex(Self::nv_tpm_handle(index)?);
        self.context
            .execute_without_session(|ctx| ctx.tr_from_tpm_public(tpm_handle))
            .map_err(cmd("TR_FromTPMPublic(NV index)"))
    }

    /// Full chunked read of an NV index with owner authorization (empty password).
    pub fn read_nv(&mut self, index: u32) -> Result<Vec<u8>, VtpmError> {
        let handle = Self::nv_tpm_handle(index)?;
        self.context
            .execute_with_session(Some(AuthSession::Password), |ctx| {
                nv::read_full(ctx, NvAuth::Owner, handle)
            })
            .map_err(cmd("NV_Read"))
    }

    /// The defined size of an NV index, `None` when absent.
    pub fn nv_size(&mut self, index: u32) -> Result<Option<usize>, VtpmError> {
        if !self.nv_index_exists(index)? {
            return Ok(None);
        }
        let tpm_handle = TpmHandle::NvIndex(Self::nv_tpm_handle(index)?);
        let size = self
            .context
            .execute_without_session(|ctx| {
                let object = ctx.tr_from_tpm_public(tpm_handle)?;
                let result = ctx.nv_read_public(NvIndexHandle::from(object));
                let mut object = object;
                let _ = ctx.tr_close(&mut object);
                result
            })
            .map_err(cmd("NV_ReadPublic"))?
            .0
            .data_size();
        Ok(Some(size))
    }

    /// Defines `index` with `size` bytes (owner + auth read/write, SHA-256 name) unless it
    /// already exists with that size; an index of another size is undefined first.
    pub fn ensure_nv_index(&mut self, index: u32, size: usize) -> Result<(), VtpmError> {
        match self.nv_size(index)? {
            Some(existing) if existing == size => return Ok(()),
            Some(_) => self.undefine_nv(index)?,
            None => {}
        }
        let attributes = NvIndexAttributesBuilder::new()
            .with_owner_write(true)
            .with_owner_read(true)
            .with_auth_write(true)
            .with_auth_read(true)
            .build()
            .map_err(cmd("NV attributes"))?;
        let public = NvPublic::builder()
            .with_nv_index(Self::nv_tpm_handle(index)?)
            .with_index_name_algorithm(HashingAlgorithm::Sha256)
            .with_index_attributes(attributes)
            .with_data_area_size(size)
            .build()
            .map_err(cmd("NV public"))?;
        self.context
            .execute_with_session(Some(AuthSession::Password), |ctx| {
                ctx.nv_define_space(Provision::Owner, None, public)
                    .map(|_| ())
            })
            .map_err(cmd("NV_DefineSpace"))
    }

    /// Undefines an NV index (owner authorization).
    pub fn undefine_nv(&mut self, index: u32) -> Result<(), VtpmError> {
        let object = self.nv_object(index)?;
        self.context
            .execute_with_session(Some(AuthSession::Password), |ctx| {
                ctx.nv_undefine_space(Provision::Owner, NvIndexHandle::from(object))
            })
            .map_err(cmd("NV_UndefineSpace"))
    }

    /// Writes `data` at offset 0 of an existing NV index, in chunks (owner authorization).
    pub fn write_nv(&mut self, index: u32, data: &[u8]) -> Result<(), VtpmError> {
        let size = self.nv_size(index)?.unwrap_or(0);
        if data.len() > size {
            return Err(VtpmError::NvDataTooLarge {
                index,
                len: data.len(),
                size,
            });
        }
        let chunk = nv::max_nv_buffer_size(&mut self.context)
            .map_err(cmd("GetCapability(NV buffer max)"))?
            .max(1);
        let object = self.nv_object(index)?;
        let result = self
            .context
            .execute_with_session(Some(AuthSession::Password), |ctx| {
                let handle = NvIndexHandle::from(object);
                for (i, part) in data.chunks(chunk).enumerate() {
                    let buffer = MaxNvBuffer::try_from(part.to_vec())?;
                    let offset = u16::try_from(i * chunk).map_err(|_| {
                        tss_esapi::Error::WrapperError(tss_esapi::WrapperErrorKind::WrongParamSize)
                    })?;
                    ctx.nv_write(NvAuth::Owner, handle, buffer, offset)?;
                }
                Ok(())
            })
            .map_err(cmd("NV_Write"));
        let mut object = object;
        let _ = self.context.tr_close(&mut object);
        result
    }

    /// See [`Vtpm::read_hcl_report`].
    pub fn read_hcl_report(&mut self) -> Result<Vec<u8>, VtpmError> {
        if !self.nv_index_exists(HCL_REPORT_NV_INDEX)? {
            return Err(VtpmError::HclReportAbsent {
                index: HCL_REPORT_NV_INDEX,
            });
        }
        self.read_nv(HCL_REPORT_NV_INDEX)
    }

    /// See [`Vtpm::write_user_data`].
    pub fn write_user_data(&mut self, data: &[u8; USER_DATA_SIZE]) -> Result<(), VtpmError> {
        self.ensure_nv_index(USER_DATA_NV_INDEX, USER_DATA_SIZE)?;
        self.write_nv(USER_DATA_NV_INDEX, data)
    }

    /// See [`Vtpm::read_user_data`].
    pub fn read_user_data(&mut self) -> Result<Option<[u8; USER_DATA_SIZE]>, VtpmError> {
        if self.nv_size(USER_DATA_NV_INDEX)? != Some(USER_DATA_SIZE) {
            return Ok(None);
        }
        let bytes = self.read_nv(USER_DATA_NV_INDEX)?;
        Ok(<[u8; USER_DATA_SIZE]>::try_from(bytes.as_slice()).ok())
    }

    /// The AK as an ESYS key handle; errors with [`VtpmError::AkAbsent`] when not persisted.
    pub fn ak_handle(&mut self) -> Result<KeyHandle, VtpmError> {
        if !self.persistent_exists(AK_HANDLE)? {
            return Err(VtpmError::AkAbsent { handle: AK_HANDLE });
        }
        let persistent = PersistentTpmHandle::new(AK_HANDLE).map_err(cmd("AK handle"))?;
        self.context
            .execute_without_session(|ctx| {
                ctx.tr_from_tpm_public(TpmHandle::Persistent(persistent))
            })
            .map(KeyHandle::from)
            .map_err(cmd("TR_FromTPMPublic(AK)"))
    }

    /// See [`Vtpm::read_ak_public`].
    pub fn read_ak_public(&mut self) -> Result<AkPublic, VtpmError> {
        let ak = self.ak_handle()?;
        let (public, _, _) = self
            .context
            .execute_without_session(|ctx| ctx.read_public(ak))
            .map_err(cmd("ReadPublic(AK)"))?;
        let (modulus, exponent) = rsa_parts(&public, "the AK at 0x81000003")?;
        Ok(AkPublic {
            tpm2b_public: tpm2b_public(&public)?,
            modulus,
            exponent,
        })
    }

    /// See [`Vtpm::read_ak_cert`].
    pub fn read_ak_cert(&mut self) -> Result<Vec<u8>, VtpmError> {
        if !self.nv_index_exists(AK_CERT_NV_INDEX)? {
            return Err(VtpmError::AkCertAbsent {
                index: AK_CERT_NV_INDEX,
            });
        }
        self.read_nv(AK_CERT_NV_INDEX)
    }

    fn pcr_selection() -> Result<PcrSelectionList, VtpmError> {
        let slots = [
            PcrSlot::Slot0,
            PcrSlot::Slot1,
            PcrSlot::Slot2,
            PcrSlot::Slot3,
            PcrSlot::Slot4,
            PcrSlot::Slot5,
            PcrSlot::Slot6,
            PcrSlot::Slot7,
        ];
        PcrSelectionListBuilder::new()
            .with_selection(HashingAlgorithm::Sha256, &slots)
            .build()
            .map_err(cmd("PCR selection"))
    }

    /// SHA-256 bank values of PCR0..7.
    pub fn read_pcrs(&mut self) -> Result<Vec<[u8; 32]>, VtpmError> {
        let selection = Self::pcr_selection()?;
        let (_, _, digests) = self
            .context
            .execute_without_session(|ctx| ctx.pcr_read(selection))
            .map_err(cmd("PCR_Read"))?;
        let values: Vec<[u8; 32]> = digests
            .value()
            .iter()
            .filter_map(|d| <[u8; 32]>::try_from(d.value()).ok())
            .collect();
        if values.len() != QUOTED_PCRS.len() {
            return Err(VtpmError::UnexpectedObject {
                what: "the SHA-256 PCR bank",
                expected: "8 SHA-256 values for PCR0-7",
                found: format!("{} values", values.len()),
            });
        }
        Ok(values)
    }

    /// See [`Vtpm::quote_pcrs`].
    pub fn quote_pcrs(&mut self, nonce: &[u8]) -> Result<PcrQuote, VtpmError> {
        if nonce.len() > MAX_NONCE_LEN {
            return Err(VtpmError::NonceTooLong {
                len: nonce.len(),
                max: MAX_NONCE_LEN,
            });
        }
        let ak = self.ak_handle()?;
        for _ in 0..PCR_RACE_ATTEMPTS {
            let pcr_values = self.read_pcrs()?;
            let qualifying = Data::try_from(nonce.to_vec()).map_err(cmd("quote nonce"))?;
            let selection = Self::pcr_selection()?;
            let (attest, signature) = self
                .context
                .execute_with_session(Some(AuthSession::Password), |ctx| {
                    ctx.quote(ak, qualifying, SignatureScheme::Null, selection)
                })
                .map_err(cmd("Quote"))?;
            let expected = pcr_digest(&pcr_values);
            let quoted_digest = match attest.attested() {
                AttestInfo::Quote { info } => info.pcr_digest().value().to_vec(),
                _ => Vec::new(),
            };
            if quoted_digest != expected {
                continue;
            }
            return Ok(PcrQuote {
                attest: marshall_attest(&attest)?,
                signature: rsassa_bytes(signature, "the quote signature")?,
                pcr_values,
            });
        }
        Err(VtpmError::PcrsChanging {
            attempts: PCR_RACE_ATTEMPTS,
        })
    }

    /// PolicyPCR digest over PCR0-7 with their current values, from a trial session.
    fn pcr_policy_digest(&mut self) -> Result<(Digest, Digest), VtpmError> {
        let values = self.read_pcrs()?;
        let pcr_digest = Digest::try_from(pcr_digest(&values)).map_err(cmd("PCR digest"))?;
        let selection = Self::pcr_selection()?;
        let session = self.start_session(SessionType::Trial)?;
        let policy_session = PolicySession::try_from(session).map_err(cmd("trial session"))?;
        let result = self
            .context
            .execute_without_session(|ctx| {
                ctx.policy_pcr(policy_session, pcr_digest.clone(), selection)?;
                ctx.policy_get_digest(policy_session)
            })
            .map_err(cmd("PolicyPCR(trial)"));
        self.flush_session(session);
        Ok((result?, pcr_digest))
    }

    fn start_session(&mut self, kind: SessionType) -> Result<AuthSession, VtpmError> {
        self.context
            .execute_without_session(|ctx| {
                ctx.start_auth_session(
                    None,
                    None,
                    None,
                    kind,
                    SymmetricDefinition::Null,
                    HashingAlgorithm::Sha256,
                )
            })
            .map_err(cmd("StartAuthSession"))?
            .ok_or(VtpmError::UnexpectedObject {
                what: "StartAuthSession",
                expected: "a session handle",
                found: "none".to_string(),
            })
    }

    fn flush_session(&mut self, session: AuthSession) {
        let handle = tss_esapi::handles::SessionHandle::from(session);
        let _ = self.context.flush_context(ObjectHandle::from(handle));
    }

    fn flush_key(&mut self, key: KeyHandle) {
        let _ = self.context.flush_context(ObjectHandle::from(key));
    }

    /// The TpmEphemeralEncryptionKey template of PROTOCOLS.md §4.6.
    pub fn ephemeral_key_template(auth_policy: Digest) -> Result<Public, VtpmError> {
        let attributes = ObjectAttributesBuilder::new()
            .with_decrypt(true)
            .with_fixed_tpm(true)
            .with_fixed_parent(true)
            .with_sensitive_data_origin(true)
            .with_no_da(true)
            .build()
            .map_err(cmd("ephemeral key attributes"))?;
        let parameters = PublicRsaParametersBuilder::new()
            .with_symmetric(SymmetricDefinitionObject::Null)
            .with_scheme(RsaScheme::Null)
            .with_key_bits(RsaKeyBits::Rsa2048)
            .with_exponent(RsaExponent::default())
            .with_is_decryption_key(true)
            .with_is_signing_key(false)
            .with_restricted(false)
            .build()
            .map_err(cmd("ephemeral key parameters"))?;
        PublicBuilder::new()
            .with_public_algorithm(PublicAlgorithm::Rsa)
            .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
            .with_object_attributes(attributes)
            .with_auth_policy(auth_policy)
            .with_rsa_parameters(parameters)
            .with_rsa_unique_identifier(PublicKeyRsa::new_empty_with_size(RsaKeyBits::Rsa2048))
            .build()
            .map_err(cmd("ephemeral key template"))
    }

    /// Creates the ephemeral key in the NULL hierarchy; returns its handle, public, and the PCR
    /// digest its policy is bound to.
    fn create_ephemeral_primary(&mut self) -> Result<(KeyHandle, Public, Digest), VtpmError> {
        let (policy, pcr_digest) = self.pcr_policy_digest()?;
        let template = Self::ephemeral_key_template(policy)?;
        let created = self
            .context
            .execute_with_session(Some(AuthSession::Password), |ctx| {
                ctx.create_primary(Hierarchy::Null, template, None, None, None, None)
            })
            .map_err(cmd("CreatePrimary(NULL, ephemeral key)"))?;
        Ok((created.key_handle, created.out_public, pcr_digest))
    }

    /// See [`Vtpm::create_ephemeral_key`].
    pub fn create_ephemeral_key(&mut self) -> Result<EphemeralKey, VtpmError> {
        let ak = self.ak_handle()?;
        let (key, public, _) = self.create_ephemeral_primary()?;
        let certified = self
            .context
            .execute_with_sessions(
                (
                    Some(AuthSession::Password),
                    Some(AuthSession::Password),
                    None,
                ),
                |ctx| {
                    ctx.certify(
                        ObjectHandle::from(key),
                        ak,
                        Data::default(),
                        SignatureScheme::Null,
                    )
                },
            )
            .map_err(cmd("Certify(ephemeral key, AK)"));
        self.flush_key(key);
        let (attest, signature) = certified?;
        let (modulus, exponent) = rsa_parts(&public, "the ephemeral key")?;
        Ok(EphemeralKey {
            tpm2b_public: tpm2b_public(&public)?,
            modulus,
            exponent,
            certify_info: marshall_attest(&attest)?,
            certify_signature: rsassa_bytes(signature, "the certify signature")?,
        })
    }

    /// See [`Vtpm::ephemeral_decrypt`].
    pub fn ephemeral_decrypt(
        &mut self,
        ciphertext: &[u8],
        scheme: DecryptScheme,
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, VtpmError> {
        if ciphertext.len() > EPHEMERAL_KEY_BYTES {
            return Err(VtpmError::CiphertextTooLong {
                len: ciphertext.len(),
                max: EPHEMERAL_KEY_BYTES,
            });
        }
        let in_scheme = match scheme {
            DecryptScheme::RsaEs => RsaDecryptionScheme::RsaEs,
            DecryptScheme::Oaep(hash) => RsaDecryptionScheme::Oaep(HashScheme::new(match hash {
                OaepHash::Sha1 => HashingAlgorithm::Sha1,
                OaepHash::Sha256 => HashingAlgorithm::Sha256,
                OaepHash::Sha384 => HashingAlgorithm::Sha384,
            })),
        };
        let cipher = PublicKeyRsa::try_from(ciphertext.to_vec()).map_err(cmd("ciphertext"))?;
        let (key, _, pcr_digest) = self.create_ephemeral_primary()?;
        let session = match self.start_session(SessionType::Policy) {
            Ok(session) => session,
            Err(e) => {
                self.flush_key(key);
                return Err(e);
            }
        };
        let result = (|| {
            let policy_session = PolicySession::try_from(session).map_err(cmd("policy session"))?;
            let selection = Self::pcr_selection()?;
            self.context
                .execute_without_session(|ctx| {
                    ctx.policy_pcr(policy_session, pcr_digest, selection)
                })
                .map_err(cmd("PolicyPCR"))?;
            self.context
                .execute_with_sessions((Some(session), None, None), |ctx| {
                    ctx.rsa_decrypt(key, cipher, in_scheme, Data::default())
                })
                .map_err(cmd("RSA_Decrypt(ephemeral key)"))
        })();
        self.flush_session(session);
        self.flush_key(key);
        Ok(zeroize::Zeroizing::new(result?.value().to_vec()))
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

fn tpm2b_public(public: &Public) -> Result<Vec<u8>, VtpmError> {
    let tpmt = public.marshall().map_err(cmd("marshal TPMT_PUBLIC"))?;
    let size = u16::try_from(tpmt.len()).map_err(|_| VtpmError::UnexpectedObject {
        what: "a TPMT_PUBLIC",
        expected: "at most 65535 bytes",
        found: format!("{} bytes", tpmt.len()),
    })?;
    let mut out = Vec::with_capacity(tpmt.len() + 2);
    out.extend_from_slice(&size.to_be_bytes());
    out.extend_from_slice(&tpmt);
    Ok(out)
}

fn marshall_attest(attest: &Attest) -> Result<Vec<u8>, VtpmError> {
    attest.marshall().map_err(cmd("marshal TPMS_ATTEST"))
}

fn rsa_parts(public: &Public, what: &'static str) -> Result<(Vec<u8>, u32), VtpmError> {
    match public {
        Public::Rsa {
            parameters, unique, ..
        } => {
            let e = parameters.exponent().value();
            Ok((unique.value().to_vec(), if e == 0 { 65537 } else { e }))
        }
        other => Err(VtpmError::UnexpectedObject {
            what,
            expected: "an RSA key",
            found: format!("{:?} key", public_kind(other)),
        }),
    }
}

fn public_kind(public: &Public) -> &'static str {
    match public {
        Public::Rsa { .. } => "RSA",
        Public::Ecc { .. } => "ECC",
        Public::KeyedHash { .. } => "keyed-hash",
        Public::SymCipher { .. } => "symmetric",
    }
}

fn rsassa_bytes(signature: Signature, what: &'static str) -> Result<Vec<u8>, VtpmError> {
    match signature {
        Signature::RsaSsa(sig) => Ok(sig.signature().value().to_vec()),
        other => Err(VtpmError::UnexpectedObject {
            what,
            expected: "an RSASSA signature (AK scheme RSASSA-SHA256)",
            found: format!("{:?}", other.algorithm()),
        }),
    }
}
