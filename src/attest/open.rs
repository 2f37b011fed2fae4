//! Opens the evidence source of an attestation run, as `[evidence] source` (or a caller's
//! override) says: the vTPM (Azure CVM, HCL report at NV 0x01400001) or `/dev/sev-guest`;
//! `auto` takes the vTPM when it holds an HCL report, else `/dev/sev-guest`, and when neither
//! works says why for both. Shared by `skrd --initrd`, the daemon and `skrctl`. An attempt
//! consumes its source: open it again for every attempt.

use std::path::PathBuf;
use std::sync::Arc;

use super::collect::{self, SevGuestSource, Source, VtpmSource};
use crate::config::{EvidenceSource, Settings};
use crate::evidence::vtpm::HCL_REPORT_NV_INDEX;
use crate::evidence::{sev_guest, DevSevGuest, EvidenceError, Vtpm, VtpmError};

fn vtpm_source(s: &Settings, vtpm: Vtpm) -> Source {
    Source::Vtpm(VtpmSource {
        vtpm: Arc::new(vtpm),
        event_log: s.evidence.event_log.clone(),
        os_release: PathBuf::from(collect::OS_RELEASE),
    })
}

fn sev_guest_source(dev: DevSevGuest) -> Source {
    Source::SevGuest(SevGuestSource {
        firmware: Box::new(dev),
        vcek_chain_pem: None,
        transfer_key_bits: crate::crypto::transfer_key::DEFAULT_BITS,
    })
}

/// Opens the evidence source `choice` with the settings' TCTI and event log.
pub fn open_source(s: &Settings, choice: EvidenceSource) -> Result<Source, EvidenceError> {
    let vtpm_err = EvidenceError::Vtpm;
    match choice {
        EvidenceSource::Vtpm => Ok(vtpm_source(
            s,
            Vtpm::open(&s.evidence.tcti).map_err(vtpm_err)?,
        )),
        EvidenceSource::SevGuest => Ok(sev_guest_source(
            DevSevGuest::open().map_err(EvidenceError::SevGuest)?,
        )),
        EvidenceSource::Auto => {
            let vtpm_problem = match Vtpm::open(&s.evidence.tcti) {
                Ok(v) => match v.nv_index_exists(HCL_REPORT_NV_INDEX) {
                    Ok(true) => return Ok(vtpm_source(s, v)),
                    Ok(false) => VtpmError::HclReportAbsent {
                        index: HCL_REPORT_NV_INDEX,
                    },
                    Err(e) => e,
                },
                Err(e) => e,
            };
            match DevSevGuest::open() {
                Ok(dev) => Ok(sev_guest_source(dev)),
                Err(sev) => Err(EvidenceError::NoSource {
                    vtpm: Box::new(vtpm_problem),
                    sev_guest_path: PathBuf::from(sev_guest::SEV_GUEST_DEVICE),
                    sev_guest: Box::new(sev),
                }),
            }
        }
    }
}
