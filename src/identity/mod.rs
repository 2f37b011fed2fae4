//! Managed identity and IMDS (PROTOCOLS.md §2): access tokens for the vault or HSM resource,
//! cached per resource ([`imds::TokenCache`]); the THIM VCEK chain ([`thim`]); and authenticated
//! Key Vault / Managed HSM calls ([`vault`]: the token resource per key URL, GET key).
//!
//! Pure parsing of IMDS answers is in [`token`]; errors in [`error`] (codes in
//! `docs/errors-identity.md`).

pub mod error;
pub mod imds;
pub mod thim;
pub mod token;
pub mod vault;

pub use error::IdentityError;
pub use imds::{AccessToken, TokenCache};
pub use thim::fetch_vcek_chain;
pub use vault::{get_key, send_with_identity, KeyBundle};
