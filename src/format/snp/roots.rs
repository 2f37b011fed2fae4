//! Built-in AMD roots and the [`TrustStore`] (PROTOCOLS.md §3.6, §3.8 step 3).
//!
//! The real ARK, ASK and ASVK of Milan, Genoa and Turin are embedded from `roots/*.pem`
//! (split from `tests/fixtures/real/trustee/amd/<gen>_ask_ark_asvk.pem`; ARK and ASK are
//! byte-identical to virtee/sev's built-ins in `tests/fixtures/real/amd-certs/virtee-sev/`).
//! Each ARK is pinned by the SHA-256 of its DER. The pins equal PROTOCOLS.md §3.6 and were
//! re-checked with `openssl x509 -in roots/<gen>_ark.pem -outform der | sha256sum`.
//!
//! An ARK is trusted only if its fingerprint is pinned here or the caller trusts it explicitly
//! ([`TrustStore::trust_ark`], e.g. skr-emulator's test chain, which reuses AMD's names).

use super::cert::{parse_certs, AmdCert, CertRole};
use super::error::SnpError;
use super::generation::Generation;

/// SHA-256 of the DER of each real AMD ARK (PROTOCOLS.md §3.6; verified with openssl).
pub const ARK_PINS: [(Generation, &str); 3] = [
    (
        Generation::Milan,
        "69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd",
    ),
    (
        Generation::Genoa,
        "4c6598d19c18719c5dfd4a7d335f674e5bfe1d8f800cea2cf270c10d103db2f1",
    ),
    (
        Generation::Turin,
        "1f084161a44bb6d93778a904877d4819cafa5d05ef4193b2ded9dd9c73dd3f6a",
    ),
];

const BUILTIN_PEMS: [&[u8]; 9] = [
    include_bytes!("roots/milan_ark.pem"),
    include_bytes!("roots/milan_ask.pem"),
    include_bytes!("roots/milan_asvk.pem"),
    include_bytes!("roots/genoa_ark.pem"),
    include_bytes!("roots/genoa_ask.pem"),
    include_bytes!("roots/genoa_asvk.pem"),
    include_bytes!("roots/turin_ark.pem"),
    include_bytes!("roots/turin_ask.pem"),
    include_bytes!("roots/turin_asvk.pem"),
];

/// How an ARK came to be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ArkTrust {
    /// A real AMD root, pinned by SHA-256 in skrd.
    BuiltinPinned,
    /// Trusted because the caller passed it (a test root).
    ExplicitlyTrusted,
}

/// Roots and intermediates available to [`super::verify::verify_report`].
#[derive(Debug, Clone, Default)]
pub struct TrustStore {
    arks: Vec<(AmdCert, ArkTrust)>,
    intermediates: Vec<AmdCert>,
}

impl TrustStore {
    /// The built-in AMD ARKs (pinned) plus their ASKs and ASVKs.
    pub fn with_builtin_roots() -> Result<TrustStore, SnpError> {
        let mut store = TrustStore::default();
        for pem in BUILTIN_PEMS {
            for cert in parse_certs(pem)? {
                match cert.role {
                    CertRole::Ark => {
                        if pinned_generation(&cert).is_none() {
                            return Err(SnpError::ArkNotTrusted {
                                subject: cert.subject_cn.clone(),
                                fingerprint: cert.fingerprint(),
                            });
                        }
                        store.arks.push((cert, ArkTrust::BuiltinPinned));
                    }
                    _ => store.intermediates.push(cert),
                }
            }
        }
        Ok(store)
    }

    /// A store with nothing in it (every ARK must then be trusted explicitly).
    pub fn empty() -> TrustStore {
        TrustStore::default()
    }

    /// Trusts `ark` explicitly (a test root such as skr-emulator's). It must be a self-issued
    /// ARK-* certificate; its self-signature is checked when a chain uses it.
    pub fn trust_ark(&mut self, ark: AmdCert) -> Result<(), SnpError> {
        if ark.role != CertRole::Ark {
            return Err(SnpError::CertRoleUnknown {
                subject: ark.subject_cn.clone(),
                issuer: ark.issuer_cn.clone(),
            });
        }
        let trust = if pinned_generation(&ark).is_some() {
            ArkTrust::BuiltinPinned
        } else {
            ArkTrust::ExplicitlyTrusted
        };
        if !self.arks.iter().any(|(a, _)| a.der() == ark.der()) {
            self.arks.push((ark, trust));
        }
        Ok(())
    }

    /// Adds an ASK/ASVK that chains may use when the caller does not supply one.
    pub fn add_intermediate(&mut self, cert: AmdCert) {
        if !self.intermediates.iter().any(|c| c.der() == cert.der()) {
            self.intermediates.push(cert);
        }
    }

    /// Trusted ARKs with how they are trusted.
    pub fn arks(&self) -> impl Iterator<Item = (&AmdCert, ArkTrust)> {
        self.arks.iter().map(|(c, t)| (c, *t))
    }

    /// Known ASKs/ASVKs.
    pub fn intermediates(&self) -> impl Iterator<Item = &AmdCert> {
        self.intermediates.iter()
    }

    /// How `ark` is trusted by this store, if at all (pinned fingerprint or explicit trust).
    pub fn ark_trust(&self, ark: &AmdCert) -> Option<ArkTrust> {
        if pinned_generation(ark).is_some() {
            return Some(ArkTrust::BuiltinPinned);
        }
        self.arks
            .iter()
            .find(|(a, _)| a.der() == ark.der())
            .map(|(_, t)| *t)
    }
}

/// The generation whose pin `ark`'s DER matches, if any.
pub fn pinned_generation(ark: &AmdCert) -> Option<Generation> {
    let fp = ark.fingerprint();
    ARK_PINS
        .iter()
        .find(|(g, pin)| *pin == fp && ark.product == Some(*g))
        .map(|(g, _)| *g)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::snp::chain::verify_cert_signature;

    #[test]
    fn builtins_are_pinned_and_self_consistent() {
        let store = TrustStore::with_builtin_roots().unwrap();
        let arks: Vec<_> = store.arks().collect();
        assert_eq!(arks.len(), 3);
        for (ark, trust) in &arks {
            assert_eq!(*trust, ArkTrust::BuiltinPinned);
            verify_cert_signature(ark, ark).unwrap();
        }
        let inter: Vec<_> = store.intermediates().collect();
        assert_eq!(inter.len(), 6);
        for i in inter {
            let (ark, _) = arks.iter().find(|(a, _)| a.product == i.product).unwrap();
            verify_cert_signature(i, ark).unwrap();
        }
    }

    #[test]
    fn builtin_ask_matches_virtee_copies() {
        // The virtee/sev built-ins (independent copy) are byte-identical (checked with cmp on
        // the DER output of openssl x509).
        let store = TrustStore::with_builtin_roots().unwrap();
        for f in [
            &parse_certs(fixture!("amd-certs/virtee-sev/milan-ask.pem")).unwrap()[0],
            &parse_certs(fixture!("amd-certs/virtee-sev/genoa-ark.pem")).unwrap()[0],
            &parse_certs(fixture!("amd-certs/virtee-sev/turin-ark.pem")).unwrap()[0],
        ] {
            assert!(
                store.arks().any(|(a, _)| a.der() == f.der())
                    || store.intermediates().any(|a| a.der() == f.der())
            );
        }
    }
}
