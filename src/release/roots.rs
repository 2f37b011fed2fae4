//! Trust anchors of the release response's x5c chain (PROTOCOLS.md §6.6 step 4): the system CA
//! bundle (the first of [`SYSTEM_BUNDLES`] that exists, as Microsoft's client probes) plus
//! every PEM file of `trust.ca_files` (the emulator's CA in tests). Never the last x5c entry.

use std::path::{Path, PathBuf};

use crate::attest::error::FlowError;
use crate::format::jose::x5c::ChainCert;

/// CA bundle paths probed, in order (Debian/Ubuntu, Fedora/RHEL, SUSE, Alpine/others).
pub const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// The first existing system bundle, if any.
pub fn system_bundle() -> Option<&'static Path> {
    SYSTEM_BUNDLES.iter().map(Path::new).find(|p| p.exists())
}

/// Loads the system bundle (when present) and `extra` PEM/DER files.
///
/// Errors: an `extra` file unreadable or without certificate; no certificate at all.
pub fn load_roots(extra: &[PathBuf]) -> Result<Vec<ChainCert>, FlowError> {
    let mut roots = Vec::new();
    if let Some(bundle) = system_bundle() {
        if let Ok(data) = std::fs::read(bundle) {
            roots.extend(ChainCert::load_pem_bundle(&data).0);
        }
    }
    for path in extra {
        let data = std::fs::read(path).map_err(|e| FlowError::RootsUnusable {
            reason: format!("{}: {e}", path.display()),
        })?;
        let certs = ChainCert::load_many(&data).map_err(|e| FlowError::RootsUnusable {
            reason: format!("{}: {e}", path.display()),
        })?;
        roots.extend(certs);
    }
    if roots.is_empty() {
        return Err(FlowError::RootsUnusable {
            reason: format!("no system CA bundle (tried {SYSTEM_BUNDLES:?}) and no trust.ca_files"),
        });
    }
    Ok(roots)
}
