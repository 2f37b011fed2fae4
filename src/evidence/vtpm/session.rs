//! The owner thread's TPM session: connection, NV indices, HCL report, user data, AK.

use tss_esapi::abstraction::nv;
use tss_esapi::attributes::NvIndexAttributesBuilder;
use tss_esapi::constants::{CapabilityType, StartupType};
use tss_esapi::handles::{
    KeyHandle, NvIndexHandle, NvIndexTpmHandle, ObjectHandle, PersistentTpmHandle, TpmHandle,
};
use tss_esapi::interface_types::algorithm::HashingAlgorithm;
use tss_esapi::interface_types::resource_handles::{NvAuth, Provision};
use tss_esapi::interface_types::session_handles::AuthSession;
use tss_esapi::structures::{
    Attest, CapabilityData, Digest, MaxNvBuffer, NvPublic, Public, Signature,
};
use tss_esapi::tcti_ldr::TctiNameConf;
use tss_esapi::traits::Marshall;
use tss_esapi::Context;

use super::*;

/// The TPM context and the operations on it; lives on the owner thread only.
pub struct VtpmSession {
    pub(super) context: Context,
    /// The ephemeral key kept loaded after its creation, with the PCR digest its policy binds,
    /// so each decryption of a run does not pay another CreatePrimary (an RSA key generation:
    /// tens of ms on swtpm, far more on hardware). Flushed when the session ends.
    pub(super) ephemeral: Option<(KeyHandle, Digest)>,
}

impl Drop for VtpmSession {
    /// Leaves no transient object behind (a TPM without a resource manager keeps it loaded).
    fn drop(&mut self) {
        if let Some((key, _)) = self.ephemeral.take() {
            let _ = self.context.flush_context(ObjectHandle::from(key));
        }
    }
}

impl std::fmt::Debug for VtpmSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VtpmSession")
    }
}

impl VtpmSession {
    pub(super) fn connect(tcti: &str, name_conf: TctiNameConf) -> Result<Self, VtpmError> {
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
        Ok(Self {
            context,
            ephemeral: None,
        })
    }

    /// The raw tss-esapi context (for the emulator's provisioning).
    pub fn context(&mut self) -> &mut Context {
        &mut self.context
    }

    /// Whether a handle (NV index or persistent object) is present.
    pub(super) fn handle_exists(&mut self, handle: u32) -> Result<bool, VtpmError> {
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

    pub(super) fn nv_tpm_handle(index: u32) -> Result<NvIndexTpmHandle, VtpmError> {
        NvIndexTpmHandle::new(index).map_err(cmd("NV index handle"))
    }

    /// An ESYS object for an NV index. Taken without a session: tpm2-tss 3.2 crashes in
    /// `Esys_TR_FromTPMPublic` when a password session is set.
    pub(super) fn nv_object(&mut self, index: u32) -> Result<ObjectHandle, VtpmError> {
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
}

pub(super) fn tpm2b_public(public: &Public) -> Result<Vec<u8>, VtpmError> {
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

pub(super) fn marshall_attest(attest: &Attest) -> Result<Vec<u8>, VtpmError> {
    attest.marshall().map_err(cmd("marshal TPMS_ATTEST"))
}

pub(super) fn rsa_parts(public: &Public, what: &'static str) -> Result<(Vec<u8>, u32), VtpmError> {
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

pub(super) fn public_kind(public: &Public) -> &'static str {
    match public {
        Public::Rsa { .. } => "RSA",
        Public::Ecc { .. } => "ECC",
        Public::KeyedHash { .. } => "keyed-hash",
        Public::SymCipher { .. } => "symmetric",
    }
}

pub(super) fn rsassa_bytes(signature: Signature, what: &'static str) -> Result<Vec<u8>, VtpmError> {
    match signature {
        Signature::RsaSsa(sig) => Ok(sig.signature().value().to_vec()),
        other => Err(VtpmError::UnexpectedObject {
            what,
            expected: "an RSASSA signature (AK scheme RSASSA-SHA256)",
            found: format!("{:?}", other.algorithm()),
        }),
    }
}
