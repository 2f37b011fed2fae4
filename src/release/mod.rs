//! Key release (PROTOCOLS.md §6): `POST {kid}/release` with the managed-identity bearer and the
//! verified attestation token as `target`, verification of the JWS answer (x5c chain to the
//! system roots or `trust.ca_files`, signature, payload consistency; `format::jose::release`),
//! and the unwrap per `enc`: the RSA-OAEP step inside the vTPM (vTPM flow) or with the
//! in-memory transfer key (raw SNP flow), then AES-KWP, then the key material decoded
//! (`crypto::key_material`). Every key byte lives in a [`Secret`].
//!
//! [`run()`] is the whole run: evidence + THIM + provider keys + identity token concurrently,
//! then the serial attest → release (one attestation and one identity token per audience serve
//! every key of the run).

pub mod roots;
pub mod run;

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::attest::error::{AzureError, FlowError};
use crate::attest::flow::{Attestation, TransferKeyHolder};
use crate::attest::report::RunReport;
use crate::attest::services::Services;
use crate::config::values::KeyUrl;
use crate::config::KeySettings;
use crate::crypto::{key_material, rsa_aes_wrap, KeyKind, KeyMaterial};
use crate::evidence::{DecryptScheme, OaepHash};
use crate::format::jose::release::{verify_release_response, ReleaseVerification, WrapAlgorithm};
use crate::format::jose::x5c::ChainCert;
use crate::format::maa::release::{release_body, release_url};
use crate::net::{Deadline, HttpRequest, Step};
use crate::secret::Secret;

pub use run::{attest_for, release_all, run, RunOutcome};

/// One key to release.
#[derive(Debug, Clone)]
pub struct KeyRequest {
    /// The configuration name (`[keys.NAME]`), or the URL for ad-hoc releases.
    pub name: String,
    /// The key URL.
    pub url: KeyUrl,
    /// Requested wrapping.
    pub enc: WrapAlgorithm,
    /// api-version of the release call.
    pub api_version: String,
}

impl KeyRequest {
    /// From a `[keys.NAME]` table.
    pub fn from_settings(name: &str, k: &KeySettings) -> Self {
        Self {
            name: name.to_string(),
            url: k.url.clone(),
            enc: WrapAlgorithm::from_name(k.enc.as_str())
                .unwrap_or(WrapAlgorithm::RsaAesKeyWrap256),
            api_version: k.api_version.clone(),
        }
    }
}

/// A released, unwrapped key.
#[derive(Debug)]
pub struct ReleasedKey {
    /// The request's name.
    pub name: String,
    /// `response.key.key.kid` (with version).
    pub kid: String,
    /// `kty`.
    pub kty: String,
    /// RSA modulus bits / oct key size.
    pub key_size: Option<usize>,
    /// EC curve.
    pub crv: Option<String>,
    /// `key_ops`.
    pub key_ops: Vec<String>,
    /// The wrapping actually used (`request.enc` of the answer).
    pub enc: WrapAlgorithm,
    /// The released plaintext exactly as unwrapped: oct → the key bytes; RSA/EC → PKCS#8 DER.
    pub plaintext: Secret,
    /// The decoded material (kind, description, IKM).
    pub material: KeyMaterial,
    /// Key Vault's / Managed HSM's `x-ms-request-id` of the release call (not a secret).
    pub request_id: Option<String>,
}

impl ReleasedKey {
    /// The key version released: the last path segment of [`Self::kid`]
    /// (`https://v.vault.azure.net/keys/NAME/VERSION`); `None` when the kid has none.
    pub fn version(&self) -> Option<&str> {
        self.kid
            .trim_end_matches('/')
            .rsplit_once('/')
            .map(|(_, v)| v)
            .filter(|v| !v.is_empty())
    }
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn oaep_hash(enc: WrapAlgorithm) -> OaepHash {
    match enc {
        WrapAlgorithm::CkmRsaAesKeyWrap => OaepHash::Sha1,
        WrapAlgorithm::RsaAesKeyWrap256 => OaepHash::Sha256,
        WrapAlgorithm::RsaAesKeyWrap384 => OaepHash::Sha384,
    }
}

/// Unmet conditions from a Key Vault 403 message, when it lists them (skr-emulator does;
/// real Key Vault's wording is unknown, PROTOCOLS.md §10).
fn unmet_from_message(message: &str) -> Vec<String> {
    message
        .split_once("unmet conditions: ")
        .map(|(_, rest)| rest.split("; ").map(str::to_string).collect())
        .unwrap_or_default()
}

/// Releases one key to `att` (with the managed identity's bearer) and unwraps it.
pub async fn release_key(
    services: &Services,
    att: &Attestation,
    key: &KeyRequest,
    roots: &[ChainCert],
    deadline: &Deadline,
    report: &mut RunReport,
) -> Result<ReleasedKey, FlowError> {
    let url = release_url(
        &key.url.base,
        &key.url.name,
        key.url.version.as_deref(),
        &key.api_version,
    )?;
    let body = release_body(att.token(), key.enc, None);
    let make = || HttpRequest::post_json(Step::KeyRelease, url.clone(), body.clone());
    let resp = services.send_to_vault(&key.url, make, deadline).await?;
    if resp.status != 200 {
        let azure = AzureError::from_response(resp.status, &resp.headers, &resp.body);
        let mut unmet = Vec::new();
        if resp.status == 403 {
            unmet = unmet_from_message(&azure.message);
            if unmet.is_empty() {
                // Key Vault does not say which condition failed: read the key's policy and
                // evaluate it against the token (as `skrctl policy check --key-url` would).
                unmet = services
                    .explain_refusal(&key.url, &key.api_version, &att.claims, deadline)
                    .await
                    .unwrap_or_default();
            }
        }
        return Err(FlowError::ReleaseRefused {
            key: key.url.to_string(),
            azure: Box::new(azure),
            unmet,
        });
    }
    let request_id = crate::attest::flow::request_id(&resp);
    let t = Instant::now();
    // The signing leaf must name the vault host (§6.6 step 5): a DNS name by a SAN DNS name, an
    // IP literal (skr-emulator on loopback) by a SAN IP address.
    let host = key.url.base.host().map(|h| match h {
        url::Host::Domain(d) => d.to_string(),
        url::Host::Ipv4(a) => a.to_string(),
        url::Host::Ipv6(a) => a.to_string(),
    });
    let key_url = key.url.to_string();
    let verified = verify_release_response(
        &resp.body,
        &ReleaseVerification {
            roots,
            now: now_unix(),
            expected_host: host.as_deref(),
            rsa_block_len: att.holder.modulus_len(),
            expected_key: Some(&key_url),
            expected_transfer_kid: Some(att.holder.kid()),
        },
    )?;
    let payload = verified.payload;
    let enc = payload.request.enc;
    let ciphertext = payload.key_hsm.ciphertext;
    report.local(t.elapsed());
    let plaintext = match &att.holder {
        TransferKeyHolder::Memory(k) => {
            let t = Instant::now();
            let p = k.unwrap(enc, &ciphertext)?;
            report.local(t.elapsed());
            p
        }
        TransferKeyHolder::Tpm { vtpm, modulus_len } => {
            let (rsa_part, kwp) = rsa_aes_wrap::split(&ciphertext, *modulus_len)?;
            let rsa_part = rsa_part.to_vec();
            let kwp = kwp.to_vec();
            let v = vtpm.clone();
            let t = Instant::now();
            let kek = tokio::task::spawn_blocking(move || {
                v.ephemeral_decrypt(&rsa_part, DecryptScheme::Oaep(oaep_hash(enc)))
            })
            .await
            .map_err(|_| FlowError::TaskFailed {
                what: "TPM decrypt",
            })??;
            report.tpm("ephemeral_decrypt", t.elapsed());
            report.local(t.elapsed());
            let kek = Secret::new(kek.to_vec());
            let t = Instant::now();
            let p = rsa_aes_wrap::unwrap_with_kek(&kek, &kwp)?;
            report.local(t.elapsed());
            p
        }
    };
    let kind = KeyKind::from_kty(&payload.key.kty)?;
    let material = key_material::decode(kind, &plaintext)?;
    report.keys_released += 1;
    Ok(ReleasedKey {
        name: key.name.clone(),
        kid: payload.key.kid,
        kty: payload.key.kty,
        key_size: payload.key.key_size,
        crv: payload.key.crv,
        key_ops: payload.key.key_ops,
        enc,
        plaintext,
        material,
        request_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_is_the_kid_s_last_segment() {
        let key = |kid: &str| ReleasedKey {
            name: "k".into(),
            kid: kid.into(),
            kty: "oct-HSM".into(),
            key_size: None,
            crv: None,
            key_ops: vec![],
            enc: WrapAlgorithm::CkmRsaAesKeyWrap,
            plaintext: Secret::new(vec![1]),
            material: key_material::decode(KeyKind::Oct, &Secret::new(vec![1; 32])).unwrap(),
            request_id: None,
        };
        let k = key("https://v.vault.azure.net/keys/disk/0123abcd");
        assert_eq!(k.version(), Some("0123abcd"));
        assert_eq!(
            key("https://v.vault.azure.net/keys/disk/0123abcd/").version(),
            Some("0123abcd")
        );
        assert_eq!(key("nokid").version(), None);
    }

    #[test]
    fn unmet_conditions_are_split() {
        let m = "Target environment attestation statement does not satisfy the key release policy; unmet conditions: a at anyOf[0].allOf[0]: equals x expected; b at y";
        assert_eq!(
            unmet_from_message(m),
            ["a at anyOf[0].allOf[0]: equals x expected", "b at y"]
        );
        assert!(unmet_from_message("Forbidden").is_empty());
    }
}
