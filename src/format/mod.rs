//! PURE wire formats: bytes or JSON in, typed values or a specific error out.
//!
//! Nothing under `format` performs I/O, reads a clock, or uses async; `make check-boundaries`
//! enforces that. Every parser here takes untrusted input and must never panic.

pub mod akv;
pub mod hcl;
pub mod jose;
pub mod json;
pub mod keysocket_peer;
pub mod luks2;
pub mod luks_token;
pub mod maa;
pub mod snp;
pub mod state;
pub mod tpm;
