//! Evidence sources (PROTOCOLS.md §1, §3.1, §4.8 "Collect"): the I/O edge that gathers raw
//! attestation evidence, either from the Azure CVM vTPM ([`vtpm`]) or raw from `/dev/sev-guest`
//! ([`sev_guest`]).
//!
//! [`EvidenceSource`] is the trait over the two; [`open_source`] picks one ([`SourceSelection::Auto`]:
//! the vTPM when its HCL report NV index exists, else `/dev/sev-guest` when present, else an
//! error naming both). [`EvidenceSource::collect`] returns an [`Evidence`] value of raw bytes
//! (`skrctl evidence collect --out DIR` writes them out with [`Evidence::files`]). Parsing and
//! verification belong to `format::*`; nothing here interprets the bytes beyond their length.

pub mod sev_guest;
pub mod vtpm;

use std::path::PathBuf;

use sha2::{Digest as _, Sha256};

use crate::error::ErrorCode;
pub use sev_guest::{DevSevGuest, SevGuestError, SevGuestFirmware};
pub use vtpm::{AkPublic, DecryptScheme, EphemeralKey, OaepHash, PcrQuote, Vtpm, VtpmError};

/// Production TCTI: the kernel's TPM resource manager.
pub const DEFAULT_TCTI: &str = "device:/dev/tpmrm0";
/// The TCG boot event log (PROTOCOLS.md §4.1), sent to MAA as `TcgLogs`.
pub const DEFAULT_EVENT_LOG: &str = "/sys/kernel/security/tpm0/binary_bios_measurements";

/// Which kind of evidence a source yields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EvidenceKind {
    /// Azure CVM vTPM (HCL report + TPM quote + ephemeral key).
    Vtpm,
    /// Raw SNP report from `/dev/sev-guest`.
    SevGuest,
}

/// How to pick the evidence source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceSelection {
    /// vTPM when the HCL report index exists, else `/dev/sev-guest` when present.
    #[default]
    Auto,
    /// Only the vTPM.
    Vtpm,
    /// Only `/dev/sev-guest`.
    SevGuest,
}

/// Where the sources live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceConfig {
    /// TCTI of the vTPM, e.g. [`DEFAULT_TCTI`].
    pub tcti: String,
    /// The TCG event log file, e.g. [`DEFAULT_EVENT_LOG`].
    pub event_log: PathBuf,
}

impl SourceConfig {
    /// The production paths with another TCTI.
    pub fn with_tcti(tcti: &str) -> Self {
        Self {
            tcti: tcti.to_string(),
            ..Self::default()
        }
    }
}

impl Default for SourceConfig {
    fn default() -> Self {
        Self {
            tcti: DEFAULT_TCTI.to_string(),
            event_log: PathBuf::from(DEFAULT_EVENT_LOG),
        }
    }
}

/// What the caller wants bound into the evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectRequest {
    /// Qualifying data of the vTPM quote (≤ 64 bytes; MAA's guest flow uses none).
    pub quote_nonce: Vec<u8>,
    /// Whether to create and certify the vTPM ephemeral key.
    pub ephemeral_key: bool,
    /// Runtime data of the raw SNP flow (the transfer key's JWKS bytes); may be empty.
    pub runtime_data: Vec<u8>,
    /// REPORT_DATA of the raw SNP flow.
    pub report_data: [u8; 64],
    /// VMPL of the raw SNP report (0 for ACI and bare SNP guests, PROTOCOLS.md §3.1).
    pub vmpl: u32,
    /// Whether to ask for the extended report (host-provided certificate table).
    pub extended: bool,
}

impl CollectRequest {
    /// A request binding `runtime_data`: REPORT_DATA = SHA-256(runtime data) || 32 zero bytes
    /// (PROTOCOLS.md §1.1 step 2); quote without nonce; with the ephemeral key; VMPL 0.
    pub fn for_runtime_data(runtime_data: &[u8]) -> Self {
        let mut report_data = [0u8; 64];
        report_data[..32].copy_from_slice(&Sha256::digest(runtime_data));
        Self {
            quote_nonce: Vec::new(),
            ephemeral_key: true,
            runtime_data: runtime_data.to_vec(),
            report_data,
            vmpl: 0,
            extended: false,
        }
    }
}

/// Evidence from the vTPM (PROTOCOLS.md §4.8 "Collect" steps 1-4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VtpmEvidence {
    /// NV 0x01400001 as read (HCL report, zero padded to the index size).
    pub hcl_report: Vec<u8>,
    /// The AK public part.
    pub ak_public: AkPublic,
    /// NV 0x01C101D0 as read (DER, maybe with trailing padding).
    pub ak_cert: Vec<u8>,
    /// PCR0-7 quote.
    pub quote: PcrQuote,
    /// The certified ephemeral key, when requested.
    pub ephemeral_key: Option<EphemeralKey>,
    /// The TCG event log, `None` when the file does not exist (MAA accepts an empty log).
    pub event_log: Option<Vec<u8>>,
}

/// Evidence from `/dev/sev-guest` (PROTOCOLS.md §1.1 steps 2-3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnpEvidence {
    /// The 1184-byte report.
    pub report: Vec<u8>,
    /// The extended report's certificate table, when the host provided one.
    pub cert_table: Option<Vec<u8>>,
    /// The runtime data whose hash is in REPORT_DATA.
    pub runtime_data: Vec<u8>,
    /// REPORT_DATA as requested.
    pub report_data: [u8; 64],
}

/// Raw evidence from one source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Evidence {
    /// From the vTPM.
    Vtpm(VtpmEvidence),
    /// From `/dev/sev-guest`.
    SevGuest(SnpEvidence),
}

impl Evidence {
    /// The kind of source it came from.
    pub fn kind(&self) -> EvidenceKind {
        match self {
            Self::Vtpm(_) => EvidenceKind::Vtpm,
            Self::SevGuest(_) => EvidenceKind::SevGuest,
        }
    }

    /// The raw pieces as `(file name, bytes)`, for `skrctl evidence collect --out DIR`.
    pub fn files(&self) -> Vec<(&'static str, Vec<u8>)> {
        match self {
            Self::Vtpm(e) => {
                let mut files = vec![
                    ("hcl-report.bin", e.hcl_report.clone()),
                    ("ak-pub.tpm2b", e.ak_public.tpm2b_public.clone()),
                    ("ak-cert.der", e.ak_cert.clone()),
                    ("pcr-quote.attest", e.quote.attest.clone()),
                    ("pcr-quote.sig", e.quote.signature.clone()),
                    ("pcr-values.bin", e.quote.pcr_values.concat()),
                ];
                if let Some(log) = &e.event_log {
                    files.push(("tcg-event-log.bin", log.clone()));
                }
                if let Some(k) = &e.ephemeral_key {
                    files.push(("enc-key-pub.tpm2b", k.tpm2b_public.clone()));
                    files.push(("enc-key-certify-info.attest", k.certify_info.clone()));
                    files.push(("enc-key-certify-info.sig", k.certify_signature.clone()));
                }
                files
            }
            Self::SevGuest(e) => {
                let mut files = vec![
                    ("snp-report.bin", e.report.clone()),
                    ("runtime-data.bin", e.runtime_data.clone()),
                    ("report-data.bin", e.report_data.to_vec()),
                ];
                if let Some(t) = &e.cert_table {
                    files.push(("cert-table.bin", t.clone()));
                }
                files
            }
        }
    }
}

/// Errors of evidence collection.
#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    /// The vTPM failed.
    #[error(transparent)]
    Vtpm(#[from] VtpmError),
    /// `/dev/sev-guest` failed.
    #[error(transparent)]
    SevGuest(#[from] SevGuestError),
    /// The TCG event log exists but cannot be read.
    #[error("cannot read the TCG event log {path}: {source}; run skrd as root (securityfs is root-only)")]
    EventLog {
        /// The log file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Automatic selection found neither source.
    #[error(
        "no evidence source: the vTPM has no HCL report ({vtpm}) and {sev_guest_path} is not \
         usable ({sev_guest}); run skrd inside an Azure confidential VM or an SEV-SNP guest"
    )]
    NoSource {
        /// Why the vTPM was not used.
        vtpm: Box<VtpmError>,
        /// The guest device path checked.
        sev_guest_path: PathBuf,
        /// Why the guest device was not used.
        sev_guest: Box<SevGuestError>,
    },
}

impl ErrorCode for EvidenceError {
    fn code(&self) -> &'static str {
        match self {
            Self::Vtpm(e) => e.code(),
            Self::SevGuest(e) => e.code(),
            Self::EventLog { .. } => "tcg-log-unreadable",
            Self::NoSource { .. } => "no-evidence-source",
        }
    }
}

/// A source of raw evidence.
pub trait EvidenceSource: Send + std::fmt::Debug {
    /// The kind of evidence it yields.
    fn kind(&self) -> EvidenceKind;
    /// Gathers evidence for `request` (blocking: TPM commands or an ioctl).
    fn collect(&mut self, request: &CollectRequest) -> Result<Evidence, EvidenceError>;
}

/// The vTPM as an evidence source.
#[derive(Debug)]
pub struct VtpmSource {
    vtpm: Vtpm,
    event_log: PathBuf,
}

impl VtpmSource {
    /// Opens the vTPM of `config`.
    pub fn open(config: &SourceConfig) -> Result<Self, VtpmError> {
        Ok(Self::new(Vtpm::open(&config.tcti)?, config))
    }

    /// Wraps an open handle.
    pub fn new(vtpm: Vtpm, config: &SourceConfig) -> Self {
        Self {
            vtpm,
            event_log: config.event_log.clone(),
        }
    }

    /// The TPM handle (for decrypting with the ephemeral key later).
    pub fn vtpm(&self) -> &Vtpm {
        &self.vtpm
    }
}

impl EvidenceSource for VtpmSource {
    fn kind(&self) -> EvidenceKind {
        EvidenceKind::Vtpm
    }

    fn collect(&mut self, request: &CollectRequest) -> Result<Evidence, EvidenceError> {
        let event_log = match std::fs::read(&self.event_log) {
            Ok(bytes) => Some(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => {
                return Err(EvidenceError::EventLog {
                    path: self.event_log.clone(),
                    source,
                })
            }
        };
        let nonce = request.quote_nonce.clone();
        let want_key = request.ephemeral_key;
        // One job on the owner thread: no interleaving with other users of the handle.
        let evidence = self.vtpm.run(move |s| {
            let hcl_report = s.read_hcl_report()?;
            let ak_public = s.read_ak_public()?;
            let ak_cert = s.read_ak_cert()?;
            let quote = s.quote_pcrs(&nonce)?;
            let ephemeral_key = if want_key {
                Some(s.create_ephemeral_key()?)
            } else {
                None
            };
            Ok(VtpmEvidence {
                hcl_report,
                ak_public,
                ak_cert,
                quote,
                ephemeral_key,
                event_log,
            })
        })?;
        Ok(Evidence::Vtpm(evidence))
    }
}

/// A SEV-SNP guest firmware as an evidence source.
pub struct SevGuestSource<F: SevGuestFirmware + Send> {
    firmware: F,
}

impl<F: SevGuestFirmware + Send> std::fmt::Debug for SevGuestSource<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SevGuestSource")
    }
}

impl<F: SevGuestFirmware + Send> SevGuestSource<F> {
    /// Wraps a firmware (the real [`DevSevGuest`] or the emulator's test firmware).
    pub fn new(firmware: F) -> Self {
        Self { firmware }
    }
}

impl<F: SevGuestFirmware + Send> EvidenceSource for SevGuestSource<F> {
    fn kind(&self) -> EvidenceKind {
        EvidenceKind::SevGuest
    }

    fn collect(&mut self, request: &CollectRequest) -> Result<Evidence, EvidenceError> {
        let (report, cert_table) = if request.extended {
            self.firmware
                .get_ext_report(request.report_data, request.vmpl)?
        } else {
            (
                self.firmware
                    .get_report(request.report_data, request.vmpl)?,
                None,
            )
        };
        Ok(Evidence::SevGuest(SnpEvidence {
            report,
            cert_table,
            runtime_data: request.runtime_data.clone(),
            report_data: request.report_data,
        }))
    }
}

/// Opens the evidence source chosen by `selection` (see the module docs for `Auto`).
pub fn open_source(
    selection: SourceSelection,
    config: &SourceConfig,
) -> Result<Box<dyn EvidenceSource>, EvidenceError> {
    match selection {
        SourceSelection::Vtpm => Ok(Box::new(VtpmSource::open(config)?)),
        SourceSelection::SevGuest => Ok(Box::new(SevGuestSource::new(DevSevGuest::open()?))),
        SourceSelection::Auto => {
            let vtpm_problem = match Vtpm::open(&config.tcti) {
                Ok(vtpm) => match vtpm.nv_index_exists(vtpm::HCL_REPORT_NV_INDEX) {
                    Ok(true) => return Ok(Box::new(VtpmSource::new(vtpm, config))),
                    Ok(false) => VtpmError::HclReportAbsent {
                        index: vtpm::HCL_REPORT_NV_INDEX,
                    },
                    Err(e) => e,
                },
                Err(e) => e,
            };
            match DevSevGuest::open() {
                Ok(dev) => Ok(Box::new(SevGuestSource::new(dev))),
                Err(sev_problem) => Err(EvidenceError::NoSource {
                    vtpm: Box::new(vtpm_problem),
                    sev_guest_path: PathBuf::from(sev_guest::SEV_GUEST_DEVICE),
                    sev_guest: Box::new(sev_problem),
                }),
            }
        }
    }
}

/// Opens the source chosen by `selection` and collects once.
pub fn collect(
    selection: SourceSelection,
    config: &SourceConfig,
    request: &CollectRequest,
) -> Result<Evidence, EvidenceError> {
    open_source(selection, config)?.collect(request)
}
