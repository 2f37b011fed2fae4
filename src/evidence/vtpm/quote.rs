//! PCR0-7 reads and the AK-signed quote (PROTOCOLS.md §4.5).

use tss_esapi::interface_types::algorithm::HashingAlgorithm;
use tss_esapi::interface_types::session_handles::AuthSession;
use tss_esapi::structures::{
    AttestInfo, Data, PcrSelectionList, PcrSelectionListBuilder, PcrSlot, SignatureScheme,
};

use super::*;

impl VtpmSession {
    pub(super) fn pcr_selection() -> Result<PcrSelectionList, VtpmError> {
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
}
