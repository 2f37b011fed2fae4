//! Pieces of `skr-emulator`'s test SEV-SNP platform (DESIGN.md "The emulator"):
//! - [`amd_chain`]: a test ARK → ASK → VCEK chain shaped like AMD's Genoa chain (PROTOCOLS.md §3.6);
//! - [`firmware`]: the test SNP firmware that signs 1184-byte reports with that VCEK (§3.2, §3.5)
//!   and implements [`crate::evidence::SevGuestFirmware`];
//! - [`hcl`]: HCL report building (§4.2-§4.4);
//! - [`ak_ca`]: the test CA of the vTPM AK certificate;
//! - [`provision`]: provisioning swtpm like an Azure CVM vTPM (§4.1);
//! - [`server`]: `skr-emulator serve`, the local IMDS / attestation / Key Vault services (§8);
//! - [`tpm_proxy`]: `skr-emulator tpm-proxy`, a swtpm front that refreshes the HCL report when
//!   user data is written (§4.1).
//!
//! Everything here serialises its own bytes, independently of `format::*`, so the verifiers can be
//! cross-checked against it (and both against the real fixtures).

pub mod ak_ca;
pub mod amd_chain;
pub mod attestation_policy;
pub(crate) mod der;
pub mod firmware;
pub mod hcl;
pub mod provision;
pub mod server;
pub mod tpm_proxy;

use std::path::PathBuf;

use crate::error::ErrorCode;
use crate::evidence::{SevGuestError, VtpmError};

/// Errors of the emulator's test platform.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    /// Reading or writing the state directory failed.
    #[error("emulator state file {path}: {source}; check the --state-dir permissions")]
    StateIo {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A state JSON file does not parse.
    #[error("emulator state file {path} is not valid JSON ({source}); delete the state directory to regenerate it")]
    StateJson {
        /// The file.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
    /// A state file has the wrong content.
    #[error("emulator state file {path} is corrupt: {what}; delete the state directory to regenerate it")]
    StateCorrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: &'static str,
    },
    /// A PEM file does not hold the expected block.
    #[error("expected one PEM block labelled {label}")]
    PemInvalid {
        /// The label expected.
        label: &'static str,
    },
    /// RSA key generation or construction failed.
    #[error("RSA key generation failed: {0}")]
    KeyGen(rsa::Error),
    /// Encoding a key or certificate failed.
    #[error("could not encode the {what}")]
    Encode {
        /// What was encoded.
        what: &'static str,
    },
    /// A signature could not be made.
    #[error("signing failed: {source}")]
    Sign {
        /// The signer's error.
        source: signature::Error,
    },
    /// The variable data does not fit the NV index.
    #[error("HCL variable data is {len} bytes; at most {max} fit the 2048-byte NV index")]
    VarDataTooLarge {
        /// Length.
        len: usize,
        /// Maximum.
        max: usize,
    },
    /// The TPM failed.
    #[error(transparent)]
    Vtpm(#[from] VtpmError),
    /// The test firmware failed.
    #[error(transparent)]
    Firmware(#[from] SevGuestError),
}

impl ErrorCode for EmulatorError {
    fn code(&self) -> &'static str {
        match self {
            Self::StateIo { .. } => "emulator-state-io",
            Self::StateJson { .. } | Self::StateCorrupt { .. } | Self::PemInvalid { .. } => {
                "emulator-state-corrupt"
            }
            Self::KeyGen(_) | Self::Encode { .. } | Self::Sign { .. } => "emulator-crypto-failed",
            Self::VarDataTooLarge { .. } => "emulator-var-data-too-large",
            Self::Vtpm(e) => e.code(),
            Self::Firmware(e) => e.code(),
        }
    }
}
