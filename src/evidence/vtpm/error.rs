//! Errors of the vTPM edge, each with a stable code and a hint on what to check.

use super::*;

/// Errors of the vTPM evidence edge.
#[derive(Debug, thiserror::Error)]
pub enum VtpmError {
    /// The TCTI string does not name a known TCTI or has bad parameters.
    #[error(
        "the TPM TCTI string {tcti:?} is not valid ({source}); use e.g. \"device:/dev/tpmrm0\" \
         or \"swtpm:host=127.0.0.1,port=2321\""
    )]
    TctiInvalid {
        /// The TCTI string as given.
        tcti: String,
        /// tss-esapi's parse error.
        source: tss_esapi::Error,
    },
    /// The TCTI could not connect to the TPM.
    #[error(
        "cannot reach the TPM through TCTI {tcti:?} ({source}); {}",
        tcti_hint(tcti)
    )]
    Unreachable {
        /// The TCTI string used.
        tcti: String,
        /// tss-esapi's error (a TCTI I/O or loader error).
        source: tss_esapi::Error,
    },
    /// The HCL report NV index is not defined.
    #[error(
        "the HCL report NV index 0x{index:08X} is not defined in the TPM: this is not an Azure \
         confidential VM, or the vTPM is not provisioned (for tests: `skr-emulator provision-tpm`)"
    )]
    HclReportAbsent {
        /// The NV index looked up (0x01400001).
        index: u32,
    },
    /// The attestation key is not persisted at its handle.
    #[error(
        "no attestation key at persistent handle 0x{handle:08X}: the vTPM is not provisioned like \
         an Azure confidential VM (for tests: `skr-emulator provision-tpm`)"
    )]
    AkAbsent {
        /// The persistent handle looked up (0x81000003).
        handle: u32,
    },
    /// The AK certificate NV index is not defined.
    #[error(
        "the AK certificate NV index 0x{index:08X} is not defined: the vTPM has no AK certificate \
         yet (on Azure it is provisioned by the platform; retry later or redeploy the VM)"
    )]
    AkCertAbsent {
        /// The NV index looked up (0x01C101D0).
        index: u32,
    },
    /// A TPM command failed.
    #[error("TPM command {operation} failed: {source}")]
    Command {
        /// The command or step that failed.
        operation: &'static str,
        /// tss-esapi's error (TPM response code or wrapper error).
        source: tss_esapi::Error,
    },
    /// An object in the TPM does not have the expected shape.
    #[error("{what} in the TPM is unexpected: expected {expected}, found {found}")]
    UnexpectedObject {
        /// Which object.
        what: &'static str,
        /// What was expected.
        expected: &'static str,
        /// What was found.
        found: String,
    },
    /// The PCR values kept changing while quoting.
    #[error(
        "PCR0-7 changed between reading them and quoting, {attempts} times in a row; something is \
         extending boot PCRs right now: retry once boot measurements are finished"
    )]
    PcrsChanging {
        /// Number of attempts made.
        attempts: u32,
    },
    /// The caller's nonce does not fit into TPM qualifying data.
    #[error("quote nonce is {len} bytes; the TPM accepts at most {max}: hash it first")]
    NonceTooLong {
        /// Length given.
        len: usize,
        /// Largest accepted.
        max: usize,
    },
    /// The ciphertext is longer than the key's modulus.
    #[error("ciphertext is {len} bytes; the ephemeral RSA-2048 key decrypts at most {max}")]
    CiphertextTooLong {
        /// Length given.
        len: usize,
        /// Largest accepted.
        max: usize,
    },
    /// Data to write does not fit the NV index.
    #[error("NV index 0x{index:08X}: {len} bytes do not fit its size of {size} bytes")]
    NvDataTooLarge {
        /// The NV index.
        index: u32,
        /// Bytes to write.
        len: usize,
        /// Defined size.
        size: usize,
    },
    /// The owner thread of the TPM context is gone (it panicked or could not start).
    #[error("the TPM owner thread stopped; reopen the TPM (this is a bug, please report it)")]
    OwnerThreadGone,
}

impl ErrorCode for VtpmError {
    fn code(&self) -> &'static str {
        match self {
            Self::TctiInvalid { .. } => "tpm-tcti-invalid",
            Self::Unreachable { .. } => "tpm-unreachable",
            Self::HclReportAbsent { .. } => "hcl-report-absent",
            Self::AkAbsent { .. } => "ak-absent",
            Self::AkCertAbsent { .. } => "ak-cert-absent",
            Self::Command { .. } => "tpm-command-failed",
            Self::UnexpectedObject { .. } => "tpm-unexpected-object",
            Self::PcrsChanging { .. } => "tpm-pcrs-changing",
            Self::NonceTooLong { .. } => "tpm-nonce-too-long",
            Self::CiphertextTooLong { .. } => "tpm-ciphertext-too-long",
            Self::NvDataTooLarge { .. } => "tpm-nv-data-too-large",
            Self::OwnerThreadGone => "tpm-owner-thread-gone",
        }
    }
}

/// What to check when a TCTI cannot connect.
pub(super) fn tcti_hint(tcti: &str) -> &'static str {
    if tcti.starts_with("device") {
        "check that the TPM device exists (ls -l /dev/tpmrm0), that this user may open it (group \
         tss), and that the TCTI library libtss2-tcti-device.so.0 is installed"
    } else if tcti.starts_with("swtpm") || tcti.starts_with("mssim") {
        "check that swtpm is running with `--server type=tcp` on that host and port (and its \
         control channel on port+1), and that libtss2-tcti-swtpm.so.0 is installed"
    } else if tcti.starts_with("tabrmd") {
        "check that tpm2-abrmd is running and reachable on the bus"
    } else {
        "check the TCTI string and that the TPM behind it is running"
    }
}

pub(super) fn cmd(operation: &'static str) -> impl FnOnce(tss_esapi::Error) -> VtpmError {
    move |source| VtpmError::Command { operation, source }
}
