//! skrd: Secure Key Release for Azure confidential VMs.
//!
//! Module map (arrows in `STYLE.md`: binaries → I/O edges → pure formats):
//! - [`error`]: the stable, kebab-case error codes every layer maps its errors to.
//! - [`format`](mod@format): PURE wire formats (SNP report, AMD certificates, HCL report, TPM structures).
//!   Bytes in, typed values or a specific error out; no I/O, no clock (time is passed in).
//! - [`crypto`]: key unwrap (RSA-OAEP + AES-KWP), released-key IKM, LUKS passphrase, transfer key.
//! - [`attest`]: I/O EDGE: attestation flows (vTPM → AzureGuest, raw SNP → SevSnpVm), token trust.
//! - [`config`]: `/etc/skrd/skrd.toml` and its drop-ins: parse fragments, merge, validate.
//! - [`evidence`]: I/O edge that gathers evidence: the vTPM (tss-esapi) and `/dev/sev-guest`.
//! - [`emulator`]: the pieces of `skr-emulator` (test SNP firmware, swtpm provisioning).
//! - [`identity`]: I/O EDGE: IMDS managed-identity tokens (cached), THIM, authenticated vault calls.
//! - [`net`]: I/O EDGE: the HTTP(S) client: timeouts, retries with back-off, Retry-After, deadline.
//! - [`volume`]: I/O edge over libcryptsetup: enroll/unenroll/reenroll skrd's LUKS2 keyslot, status, unlock.
//! - [`keysocket`]: I/O edge: the AF_UNIX key socket systemd-cryptsetup reads crypttab key files from.
//! - [`boot`]: I/O: `skrd --initrd`, the initramfs unlock: one attestation + release per key, key socket answers, state file.
//! - [`release`](mod@release): I/O: key release from Key Vault / Managed HSM, unwrap; one whole run.
//! - [`state_file`]: I/O edge: `/run/skrd/state.json` read + atomic write (document: `format::state`).
//! - [`daemon`]: the long-running service: manager (domain core), D-Bus adapter (zbus), ACL, sd_notify.
//! - [`secret`]: buffers for key material: locked in memory, wiped on drop, never printed.

pub mod attest;
pub mod boot;
pub mod config;
pub mod crypto;
pub mod daemon;
pub mod emulator;
pub mod error;
pub mod evidence;
pub mod footprint;
pub mod format;
pub mod identity;
pub mod keysocket;
pub mod net;
pub mod release;
pub mod secret;
pub mod state_file;
pub mod volume;
