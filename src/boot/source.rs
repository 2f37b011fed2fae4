//! The evidence source of a boot run: `[evidence] source` through the shared
//! [`crate::attest::open::open_source`], opened again for every attestation attempt.

use crate::attest::collect::Source;
use crate::config::Settings;

use super::error::BootError;

/// Opens the configured evidence source.
pub fn open_source(s: &Settings) -> Result<Source, BootError> {
    crate::attest::open::open_source(s, s.evidence.source).map_err(BootError::Evidence)
}
