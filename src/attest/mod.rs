//! Attestation to Microsoft Azure Attestation (PROTOCOLS.md §1, §5): the I/O orchestration on
//! top of the pure formats (`format::maa`), the evidence sources (`evidence`) and the network
//! layer (`net`, `identity`).
//!
//! - [`trust`]: the provider's signing keys (OpenID metadata → JWKS) and token verification.
//! - [`collect`]: evidence of one attestation (vTPM or raw SNP), blocking.
//! - [`flow`]: collect + THIM → attest request → (AzureGuest) decrypt in the TPM + AES-GCM.
//! - [`binding`]: the token is about this attestation and binds our transfer key (pure).
//! - [`services`]: the network collaborators of a run, built from the configuration.
//! - [`report`]: [`report::RunReport`], per-step timings (no secrets).
//! - [`error`]: [`error::FlowError`], codes in `docs/errors-attest.md` / `docs/errors-release.md`.
//!
//! Key release and the whole run are in `crate::release`.

pub mod binding;
pub mod collect;
pub mod error;
pub mod flow;
pub mod open;
pub mod report;
pub mod services;
pub mod trust;
