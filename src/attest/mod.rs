//! Attestation: the provider's signing keys and token verification ([`trust`]); the flows
//! (evidence → attestation → token) are added beside it.

pub mod trust;
