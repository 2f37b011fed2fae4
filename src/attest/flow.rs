//! The attestation half of a run (PROTOCOLS.md §1.1 steps 1-5, §1.2 steps 1-5): collect the
//! evidence (blocking, on a `spawn_blocking` thread) while the VCEK chain comes from THIM, build
//! the request, `POST` it to the provider, and — for AzureGuest — decrypt the token: the inner
//! AES key inside the TPM (RSAES), then AES-256-GCM in memory.
//!
//! The token is returned *unverified* ([`Unverified`]): the caller verifies it once the
//! provider's keys, fetched concurrently, are there ([`Unverified::verify`]), so the key
//! prefetch never sits on the serial path.

use std::sync::Arc;
use std::time::Instant;

use url::Url;

use super::binding;
use super::collect::{self, SnpEvidence, Source, VtpmEvidence};
use super::error::{AzureError, FlowError};
use super::report::RunReport;
use super::services::Services;
use crate::crypto::{maa_token, TransferKey};
use crate::evidence::{DecryptScheme, Vtpm};
use crate::format::maa::azure_guest::{self, AzureGuestInput};
use crate::format::maa::envelope::{self, EncryptedToken};
use crate::format::maa::sevsnpvm::{self, SevSnpVmRequest};
use crate::net::{Deadline, HttpRequest, Step};
use crate::secret::Secret;

/// Where the released key will be wrapped to, and how to unwrap it.
pub enum TransferKeyHolder {
    /// The TPM ephemeral key (vTPM flow): the RSA step runs in the TPM.
    Tpm {
        /// The TPM.
        vtpm: Arc<Vtpm>,
        /// Modulus length, bytes.
        modulus_len: usize,
    },
    /// The in-memory transfer key (raw SNP flow).
    Memory(Arc<TransferKey>),
}

impl std::fmt::Debug for TransferKeyHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Tpm { modulus_len, .. } => write!(f, "Tpm({} bytes)", modulus_len),
            Self::Memory(k) => write!(f, "Memory({k:?})"),
        }
    }
}

impl TransferKeyHolder {
    /// Modulus length in bytes (= RSA block length of the wrapped key).
    pub fn modulus_len(&self) -> usize {
        match self {
            Self::Tpm { modulus_len, .. } => *modulus_len,
            Self::Memory(k) => k.modulus_len(),
        }
    }

    /// The `kid` Key Vault names in `key_hsm.header.kid`.
    pub fn kid(&self) -> &str {
        match self {
            Self::Tpm { .. } => binding::EPHEMERAL_KID,
            Self::Memory(k) => k.kid(),
        }
    }
}

/// What the token must be checked against.
#[derive(Debug)]
enum Expect {
    AzureGuest {
        n: Vec<u8>,
        e: u32,
    },
    SevSnpVm {
        nonce: String,
        runtime_data: Vec<u8>,
        n: Vec<u8>,
        e: Vec<u8>,
    },
}

/// A token received but not yet verified (`Debug` omits the token).
pub struct Unverified {
    token: String,
    expect: Expect,
    holder: TransferKeyHolder,
    request_id: Option<String>,
}

/// A verified attestation: the token, its claims, and the transfer key it binds (`Debug`
/// omits the token: with an identity token it obtains keys).
pub struct Attestation {
    /// The compact JWT (sent to Key Vault as `target`; never logged): with an identity token
    /// it obtains keys, so it is held like one (zeroized, locked, redacted). [`Self::token`]
    /// reads it.
    pub token: Secret,
    /// All claims.
    pub claims: serde_json::Value,
    /// `iss`.
    pub issuer: String,
    /// `exp`, Unix seconds.
    pub expires_at: i64,
    /// How to unwrap keys released to this attestation.
    pub holder: TransferKeyHolder,
    /// The provider's `x-ms-request-id` of the successful attest call (support staff ask
    /// for it; not a secret).
    pub request_id: Option<String>,
}

impl std::fmt::Debug for Unverified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Unverified")
            .field("token_len", &self.token.len())
            .field("holder", &self.holder)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Attestation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attestation")
            .field("issuer", &self.issuer)
            .field("expires_at", &self.expires_at)
            .field("request_id", &self.request_id)
            .field("token_len", &self.token.len())
            .field("holder", &self.holder)
            .finish_non_exhaustive()
    }
}

impl Attestation {
    /// The compact JWT (ASCII by construction: it passed [`envelope::check_compact`] or the
    /// provider's plain-token parser).
    pub fn token(&self) -> &str {
        std::str::from_utf8(self.token.expose()).unwrap_or_default()
    }
}

impl Unverified {
    /// Verifies signature, issuer, lifetime (via the provider's keys) and the binding to this
    /// attestation.
    pub async fn verify(
        self,
        services: &Services,
        deadline: &Deadline,
    ) -> Result<Attestation, FlowError> {
        let v = services.verify_token(&self.token, deadline).await?;
        match &self.expect {
            Expect::AzureGuest { n, e } => binding::check_azure_guest(&v.claims, n, *e)?,
            Expect::SevSnpVm {
                nonce,
                runtime_data,
                n,
                e,
            } => binding::check_sevsnpvm(&v.claims, Some(nonce), runtime_data, n, e)?,
        }
        Ok(Attestation {
            // into_bytes moves the buffer: no copy of the token is left behind.
            token: Secret::new(self.token.into_bytes()),
            claims: v.claims,
            issuer: v.issuer,
            expires_at: v.expires_at,
            holder: self.holder,
            request_id: self.request_id,
        })
    }
}

/// The attest endpoint URL.
fn attest_url(provider: &Url, path: &str, api_version: &str) -> Url {
    let mut url = provider.clone();
    url.set_path(path);
    url.set_query(None);
    url.query_pairs_mut()
        .append_pair("api-version", api_version);
    url
}

async fn blocking<T: Send + 'static>(
    what: &'static str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, FlowError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| FlowError::TaskFailed { what })
}

/// Evidence collected, not yet sent: what [`prepare`] returns. The boot collects it while
/// the network is still coming up (the evidence needs no server nonce: PROTOCOLS.md §4.8, §5.2),
/// so the TPM work is off the serial path.
pub enum Prepared {
    /// vTPM evidence and the TPM that holds its ephemeral key.
    Vtpm {
        /// The TPM (the unwrap step decrypts with its ephemeral key).
        vtpm: Arc<Vtpm>,
        /// The evidence.
        evidence: VtpmEvidence,
        /// How long the collection took.
        took: std::time::Duration,
    },
    /// Raw SNP evidence.
    Snp {
        /// The evidence (with the in-memory transfer key).
        evidence: SnpEvidence,
        /// The VCEK chain when the source supplied it (else it comes from THIM).
        supplied_chain: Option<Vec<u8>>,
        /// How long the collection took.
        took: std::time::Duration,
    },
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Vtpm { took, .. } => write!(f, "Prepared::Vtpm({took:?})"),
            Self::Snp { took, .. } => write!(f, "Prepared::Snp({took:?})"),
        }
    }
}

/// Evidence to attest with: a source to collect from now, or evidence collected earlier.
#[derive(Debug)]
pub enum Evidence {
    /// Collected during the run, overlapping the VCEK chain fetch.
    Source(Source),
    /// Collected ahead of the run ([`prepare`]).
    Prepared(Box<Prepared>),
}

impl From<Source> for Evidence {
    fn from(s: Source) -> Self {
        Self::Source(s)
    }
}

impl From<Prepared> for Evidence {
    fn from(p: Prepared) -> Self {
        Self::Prepared(Box::new(p))
    }
}

/// Whether attesting with `source` needs the VCEK chain from THIM.
fn needs_thim(source: &Source) -> bool {
    match source {
        Source::Vtpm(_) => true,
        Source::SevGuest(src) => src.vcek_chain_pem.is_none(),
    }
}

/// Collects the evidence of `source` (the blocking part of an attestation, on a
/// `spawn_blocking` thread): no network.
pub async fn prepare(source: Source) -> Result<Prepared, FlowError> {
    match source {
        Source::Vtpm(src) => {
            let vtpm = src.vtpm.clone();
            let (evidence, took) = blocking("vTPM evidence", move || {
                let t = Instant::now();
                (collect::collect_vtpm(&src), t.elapsed())
            })
            .await?;
            Ok(Prepared::Vtpm {
                vtpm,
                evidence: evidence?,
                took,
            })
        }
        Source::SevGuest(mut src) => {
            let supplied_chain = src.vcek_chain_pem.take();
            let (evidence, took) = blocking("SEV-SNP evidence", move || {
                let t = Instant::now();
                (collect::collect_snp(&mut src), t.elapsed())
            })
            .await?;
            Ok(Prepared::Snp {
                evidence: evidence?,
                supplied_chain,
                took,
            })
        }
    }
}

/// Collects (unless already collected), attests and (AzureGuest) decrypts; the token is left
/// unverified. A collection done here overlaps the VCEK chain fetch.
pub async fn attest(
    services: &Services,
    evidence: Evidence,
    deadline: &Deadline,
    report: &mut RunReport,
) -> Result<Unverified, FlowError> {
    let (prepared, fetched) = match evidence {
        Evidence::Source(source) => {
            let thim = needs_thim(&source);
            let chain = async {
                if thim {
                    Some(services.vcek_chain_pem(deadline).await)
                } else {
                    None
                }
            };
            let (prepared, fetched) = tokio::join!(prepare(source), chain);
            let prepared = prepared?;
            // Collected during the run: its time is on the serial path.
            report.local(prepared.took());
            (prepared, fetched)
        }
        Evidence::Prepared(prepared) => {
            let prepared = *prepared;
            let fetched = match prepared.supplied_chain() {
                Some(_) => None,
                None => Some(services.vcek_chain_pem(deadline).await),
            };
            (prepared, fetched)
        }
    };
    let chain = match (fetched, prepared.supplied_chain()) {
        (Some(fetched), _) => fetched?,
        (None, Some(supplied)) => supplied.to_vec(),
        (None, None) => services.vcek_chain_pem(deadline).await?,
    };
    report.evidence_ms = super::report::ms(prepared.took());
    match prepared {
        Prepared::Vtpm { vtpm, evidence, .. } => {
            for (op, d) in &evidence.tpm_ops {
                report.tpm(op, *d);
            }
            attest_vtpm(services, vtpm, evidence, &chain, deadline, report).await
        }
        Prepared::Snp { evidence, .. } => {
            attest_snp(services, evidence, &chain, deadline, report).await
        }
    }
}

impl Evidence {
    /// `vtpm` or `sev-guest`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Source(s) => s.name(),
            Self::Prepared(p) => p.name(),
        }
    }
}

impl Prepared {
    /// `vtpm` or `sev-guest`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Vtpm { .. } => "vtpm",
            Self::Snp { .. } => "sev-guest",
        }
    }

    /// How long the collection took.
    pub fn took(&self) -> std::time::Duration {
        match self {
            Self::Vtpm { took, .. } | Self::Snp { took, .. } => *took,
        }
    }

    /// The VCEK chain the source supplied (raw SNP with a known chain).
    fn supplied_chain(&self) -> Option<&[u8]> {
        match self {
            Self::Vtpm { .. } => None,
            Self::Snp { supplied_chain, .. } => supplied_chain.as_deref(),
        }
    }
}

/// The request id of an Azure answer: `x-ms-request-id`, else MAA's `x-ms-maa-request-id`.
pub fn request_id(resp: &crate::net::HttpResponse) -> Option<String> {
    resp.header("x-ms-request-id")
        .or_else(|| resp.header("x-ms-maa-request-id"))
        .map(str::to_string)
}

/// POSTs an attest request: the answer's body and request id.
async fn post_attest(
    services: &Services,
    path: &str,
    body: Vec<u8>,
    deadline: &Deadline,
) -> Result<(Vec<u8>, Option<String>), FlowError> {
    let url = attest_url(&services.provider, path, &services.attest_api_version);
    let resp = services
        .http
        .send(HttpRequest::post_json(Step::Attest, url, body), deadline)
        .await?;
    if resp.status != 200 {
        return Err(FlowError::AttestRefused {
            azure: Box::new(AzureError::from_response(
                resp.status,
                &resp.headers,
                &resp.body,
            )),
        });
    }
    let id = request_id(&resp);
    Ok((resp.body, id))
}

async fn attest_vtpm(
    services: &Services,
    vtpm: Arc<Vtpm>,
    ev: VtpmEvidence,
    chain_pem: &[u8],
    deadline: &Deadline,
    report: &mut RunReport,
) -> Result<Unverified, FlowError> {
    let t = Instant::now();
    let input = AzureGuestInput {
        hcl_report: &ev.hcl_report,
        vcek_chain_pem: chain_pem,
        ak_cert: &ev.ak_cert,
        ak_pub: &ev.ak_public.tpm2b_public,
        pcr_quote: &ev.quote.attest,
        pcr_signature: &ev.quote.signature,
        pcr_indices: &crate::evidence::vtpm::QUOTED_PCRS,
        pcr_values: &ev.quote.pcr_values,
        enc_key_pub: &ev.ephemeral.tpm2b_public,
        enc_key_certify_info: &ev.ephemeral.certify_info,
        enc_key_certify_signature: &ev.ephemeral.certify_signature,
        tcg_log: &ev.event_log,
        os: &ev.os,
        client_payload: &[],
    };
    let body = input.body()?;
    report.local(t.elapsed());
    let (answer, request_id) = post_attest(services, azure_guest::PATH, body, deadline).await?;
    let t = Instant::now();
    let envelope = EncryptedToken::from_body(&answer)?;
    let inner_ct = envelope.encrypted_inner_key.clone();
    let v = vtpm.clone();
    let td = Instant::now();
    let inner = blocking("TPM decrypt", move || {
        v.ephemeral_decrypt(&inner_ct, DecryptScheme::RsaEs)
    })
    .await??;
    report.tpm("ephemeral_decrypt", td.elapsed());
    let inner = Secret::new(inner.to_vec());
    let token = maa_token::decrypt(&inner, &envelope)?;
    envelope::check_compact(&token)?;
    report.local(t.elapsed());
    let modulus_len = ev.ephemeral.modulus.len();
    Ok(Unverified {
        token,
        expect: Expect::AzureGuest {
            n: ev.ephemeral.modulus.clone(),
            e: ev.ephemeral.exponent,
        },
        holder: TransferKeyHolder::Tpm { vtpm, modulus_len },
        request_id,
    })
}

async fn attest_snp(
    services: &Services,
    ev: SnpEvidence,
    chain_pem: &[u8],
    deadline: &Deadline,
    report: &mut RunReport,
) -> Result<Unverified, FlowError> {
    use rsa::traits::PublicKeyParts;
    let t = Instant::now();
    let runtime_data = ev.transfer_key.runtime_data().to_vec();
    let body = SevSnpVmRequest {
        report: &ev.report,
        vcek_chain_pem: chain_pem,
        runtime_data: &runtime_data,
        nonce: Some(&ev.nonce),
    }
    .body();
    report.local(t.elapsed());
    let (answer, request_id) = post_attest(services, sevsnpvm::PATH, body, deadline).await?;
    let token = envelope::plain_token(&answer)?;
    let public = ev.transfer_key.public_key();
    Ok(Unverified {
        token,
        expect: Expect::SevSnpVm {
            nonce: ev.nonce,
            runtime_data,
            n: public.n().to_bytes_be(),
            e: public.e().to_bytes_be(),
        },
        holder: TransferKeyHolder::Memory(Arc::new(ev.transfer_key)),
        request_id,
    })
}
