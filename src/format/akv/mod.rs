//! Azure Key Vault / Managed HSM formats (PROTOCOLS.md §6 and §7).
//!
//! PURE: JSON in, typed values or a specific error out; no I/O, no clock.
//! - [`policy`]: secure key release policies (grammar §7.1, evaluation §7.2, envelopes §6.3).

pub mod policy;
