//! Evidence for one attestation (PROTOCOLS.md §1.1 steps 1-3, §4.8 "Collect"): the blocking
//! part of a run, executed on a `spawn_blocking` thread while the network prefetches run.
//!
//! - vTPM: HCL report, AK public and certificate, PCR0-7 quote, the certified ephemeral key
//!   (each a timed TPM operation), the TCG event log and `/etc/os-release`.
//! - Raw SNP: a fresh in-memory RSA [`TransferKey`], REPORT_DATA = SHA-256(its runtime-data
//!   JWKS) || 32 zero bytes, the report from the [`SevGuestFirmware`] (production:
//!   `/dev/sev-guest`; tests: the emulator's test firmware, passed in by the caller only),
//!   and a random nonce.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand_core::{OsRng, RngCore};

use crate::crypto::{CryptoError, TransferKey};
use crate::evidence::{
    AkPublic, CollectRequest, EphemeralKey, EvidenceError, PcrQuote, SevGuestFirmware, Vtpm,
};
use crate::format::maa::azure_guest::OsInfo;

/// Where `/etc/os-release` lives (the AzureGuest OS fields).
pub const OS_RELEASE: &str = "/etc/os-release";

/// The vTPM of a confidential VM, with the files sent along with its evidence.
#[derive(Debug, Clone)]
pub struct VtpmSource {
    /// The TPM (one owner thread; shared with the unwrap step).
    pub vtpm: Arc<Vtpm>,
    /// The TCG event log file (missing → empty log).
    pub event_log: PathBuf,
    /// The os-release file (missing → defaults).
    pub os_release: PathBuf,
}

/// The firmware of a raw SEV-SNP guest.
pub struct SevGuestSource {
    /// `/dev/sev-guest` in production.
    pub firmware: Box<dyn SevGuestFirmware + Send>,
    /// VCEK + ASK + ARK PEM when known (ACI security context); else fetched from THIM.
    pub vcek_chain_pem: Option<Vec<u8>>,
    /// Transfer key size (2048 by default).
    pub transfer_key_bits: usize,
}

impl std::fmt::Debug for SevGuestSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SevGuestSource")
            .field("vcek_chain_supplied", &self.vcek_chain_pem.is_some())
            .field("transfer_key_bits", &self.transfer_key_bits)
            .finish_non_exhaustive()
    }
}

/// Where evidence comes from.
#[derive(Debug)]
pub enum Source {
    /// Azure CVM vTPM → `AzureGuest`.
    Vtpm(VtpmSource),
    /// Raw SNP → `SevSnpVm`.
    SevGuest(SevGuestSource),
}

impl Source {
    /// `vtpm` or `sev-guest`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Vtpm(_) => "vtpm",
            Self::SevGuest(_) => "sev-guest",
        }
    }
}

/// vTPM evidence.
#[derive(Debug, Clone)]
pub struct VtpmEvidence {
    /// NV 0x01400001.
    pub hcl_report: Vec<u8>,
    /// The AK.
    pub ak_public: AkPublic,
    /// NV 0x01C101D0.
    pub ak_cert: Vec<u8>,
    /// PCR0-7 quote.
    pub quote: PcrQuote,
    /// The certified ephemeral key.
    pub ephemeral: EphemeralKey,
    /// The TCG log (empty when absent).
    pub event_log: Vec<u8>,
    /// From os-release.
    pub os: OsInfo,
    /// Timed TPM operations.
    pub tpm_ops: Vec<(&'static str, Duration)>,
}

/// Raw SNP evidence.
#[derive(Debug)]
pub struct SnpEvidence {
    /// The 1184-byte report.
    pub report: Vec<u8>,
    /// The in-memory transfer key whose JWKS is the runtime data.
    pub transfer_key: TransferKey,
    /// The nonce sent to MAA (decimal u64 text).
    pub nonce: String,
}

/// Why evidence could not be collected.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    /// TPM or firmware.
    #[error(transparent)]
    Evidence(#[from] EvidenceError),
    /// Transfer key generation.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

fn timed<T, E>(
    ops: &mut Vec<(&'static str, Duration)>,
    op: &'static str,
    f: impl FnOnce() -> Result<T, E>,
) -> Result<T, E> {
    let t = Instant::now();
    let r = f();
    ops.push((op, t.elapsed()));
    r
}

fn read_optional(path: &PathBuf) -> Result<Option<Vec<u8>>, std::io::Error> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Collects vTPM evidence (blocking).
pub fn collect_vtpm(src: &VtpmSource) -> Result<VtpmEvidence, CollectError> {
    let event_log = read_optional(&src.event_log)
        .map_err(|source| EvidenceError::EventLog {
            path: src.event_log.clone(),
            source,
        })?
        .unwrap_or_default();
    // os-release is informational for MAA: unreadable means defaults, never a failure.
    let os = read_optional(&src.os_release)
        .ok()
        .flatten()
        .map(|b| OsInfo::parse_os_release(&String::from_utf8_lossy(&b)))
        .unwrap_or_default();
    let v = &src.vtpm;
    let mut ops = Vec::new();
    let map = |e| CollectError::Evidence(EvidenceError::Vtpm(e));
    let hcl_report = timed(&mut ops, "read_hcl_report", || v.read_hcl_report()).map_err(map)?;
    let ak_public = timed(&mut ops, "read_ak_public", || v.read_ak_public()).map_err(map)?;
    let ak_cert = timed(&mut ops, "read_ak_cert", || v.read_ak_cert()).map_err(map)?;
    let quote = timed(&mut ops, "quote_pcrs", || v.quote_pcrs(&[])).map_err(map)?;
    let ephemeral = timed(&mut ops, "create_ephemeral_key", || {
        v.create_ephemeral_key()
    })
    .map_err(map)?;
    Ok(VtpmEvidence {
        hcl_report,
        ak_public,
        ak_cert,
        quote,
        ephemeral,
        event_log,
        os,
        tpm_ops: ops,
    })
}

/// Collects raw SNP evidence (blocking): transfer key, report, nonce.
pub fn collect_snp(src: &mut SevGuestSource) -> Result<SnpEvidence, CollectError> {
    let transfer_key = TransferKey::generate(src.transfer_key_bits)?;
    let request = CollectRequest::for_runtime_data(transfer_key.runtime_data());
    let report = src
        .firmware
        .get_report(request.report_data, request.vmpl)
        .map_err(EvidenceError::from)?;
    Ok(SnpEvidence {
        report,
        transfer_key,
        nonce: OsRng.next_u64().to_string(),
    })
}
