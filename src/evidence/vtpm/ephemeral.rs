//! The TpmEphemeralEncryptionKey (PROTOCOLS.md §4.6): PolicyPCR digest, template, creation,
//! AK certification, and RSA decryption inside the TPM.

use tss_esapi::attributes::ObjectAttributesBuilder;
use tss_esapi::constants::SessionType;
use tss_esapi::handles::{KeyHandle, ObjectHandle};
use tss_esapi::interface_types::algorithm::{HashingAlgorithm, PublicAlgorithm};
use tss_esapi::interface_types::key_bits::RsaKeyBits;
use tss_esapi::interface_types::resource_handles::Hierarchy;
use tss_esapi::interface_types::session_handles::{AuthSession, PolicySession};
use tss_esapi::structures::{
    Data, Digest, HashScheme, Public, PublicBuilder, PublicKeyRsa, PublicRsaParametersBuilder,
    RsaDecryptionScheme, RsaExponent, RsaScheme, SignatureScheme, SymmetricDefinition,
    SymmetricDefinitionObject,
};

use super::*;

impl VtpmSession {
    /// PolicyPCR digest over PCR0-7 with their current values, from a trial session.
    pub(super) fn pcr_policy_digest(&mut self) -> Result<(Digest, Digest), VtpmError> {
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

    pub(super) fn start_session(&mut self, kind: SessionType) -> Result<AuthSession, VtpmError> {
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

    pub(super) fn flush_session(&mut self, session: AuthSession) {
        let handle = tss_esapi::handles::SessionHandle::from(session);
        let _ = self.context.flush_context(ObjectHandle::from(handle));
    }

    pub(super) fn flush_key(&mut self, key: KeyHandle) {
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
    pub(super) fn create_ephemeral_primary(
        &mut self,
    ) -> Result<(KeyHandle, Public, Digest), VtpmError> {
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

    /// Flushes the ephemeral key kept loaded, if any.
    fn drop_loaded_ephemeral(&mut self) {
        if let Some((key, _)) = self.ephemeral.take() {
            self.flush_key(key);
        }
    }

    /// The loaded ephemeral key and its PCR digest, created now if none is loaded.
    fn loaded_ephemeral(&mut self) -> Result<(KeyHandle, Digest), VtpmError> {
        if let Some((key, digest)) = &self.ephemeral {
            return Ok((*key, digest.clone()));
        }
        let (key, _, digest) = self.create_ephemeral_primary()?;
        self.ephemeral = Some((key, digest.clone()));
        Ok((key, digest))
    }

    /// See [`Vtpm::create_ephemeral_key`]. The key stays loaded for the decryptions that follow.
    pub fn create_ephemeral_key(&mut self) -> Result<EphemeralKey, VtpmError> {
        let ak = self.ak_handle()?;
        self.drop_loaded_ephemeral();
        let (key, public, pcr_digest) = self.create_ephemeral_primary()?;
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
        match certified {
            Ok(_) => self.ephemeral = Some((key, pcr_digest)),
            Err(_) => self.flush_key(key),
        }
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
        let (key, pcr_digest) = self.loaded_ephemeral()?;
        let session = self.start_session(SessionType::Policy)?;
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
        // After any refusal (wrong padding, PCRs changed, a handle the TPM lost) the next call
        // starts from a freshly created key instead of trusting the loaded one.
        if result.is_err() {
            self.drop_loaded_ephemeral();
        }
        Ok(zeroize::Zeroizing::new(result?.value().to_vec()))
    }
}
