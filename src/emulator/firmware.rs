//! The test SEV-SNP firmware: signs byte-exact 1184-byte attestation reports with the test
//! VCEK (PROTOCOLS.md §3.2 layout, §3.5 signature, §2.4 certificate table).
//!
//! Reports are version 3 with Genoa CPUID bytes (family 0x19, model 0x11), POLICY 0x30000,
//! SIGNATURE_ALGO 1, KEY_INFO 0 (VCEK), CHIP_ID = the VCEK hwID, every TCB field = the VCEK's
//! SPLs (Milan/Genoa layout), a random REPORT_ID and an all-FF REPORT_ID_MA. The signature is
//! ECDSA P-384 / SHA-384 over bytes `[0, 0x2A0)`, r and s stored as 72-byte little-endian
//! integers at 0x2A0 and 0x2E8. The serialisation is written here, independently of
//! `format::snp`, so the two can be cross-checked.

use p384::ecdsa::signature::Signer as _;
use rand_core::{OsRng, RngCore};
use sha2::{Digest as _, Sha384};

use super::amd_chain::TestAmdChain;
use crate::evidence::sev_guest::{self, SevGuestError, SevGuestFirmware};

/// Report version produced.
pub const REPORT_VERSION: u32 = 3;
/// Guest policy: SMT allowed + reserved bit 17 (as real Azure reports).
pub const POLICY: u64 = 0x30000;
/// PLATFORM_INFO: SMT enabled.
pub const PLATFORM_INFO: u64 = 0x1;
/// Bytes covered by the signature.
pub const SIGNED_LEN: usize = 0x2A0;

/// Field offsets (PROTOCOLS.md §3.2).
mod off {
    pub const VERSION: usize = 0x000;
    pub const GUEST_SVN: usize = 0x004;
    pub const POLICY: usize = 0x008;
    pub const VMPL: usize = 0x030;
    pub const SIGNATURE_ALGO: usize = 0x034;
    pub const CURRENT_TCB: usize = 0x038;
    pub const PLATFORM_INFO: usize = 0x040;
    pub const KEY_INFO: usize = 0x048;
    pub const REPORT_DATA: usize = 0x050;
    pub const MEASUREMENT: usize = 0x090;
    pub const HOST_DATA: usize = 0x0C0;
    pub const REPORT_ID: usize = 0x140;
    pub const REPORT_ID_MA: usize = 0x160;
    pub const REPORTED_TCB: usize = 0x180;
    pub const CPUID_FAM: usize = 0x188;
    pub const CPUID_MOD: usize = 0x189;
    pub const CPUID_STEP: usize = 0x18A;
    pub const CHIP_ID: usize = 0x1A0;
    pub const COMMITTED_TCB: usize = 0x1E0;
    pub const CURRENT_VERSION: usize = 0x1E8;
    pub const COMMITTED_VERSION: usize = 0x1EC;
    pub const LAUNCH_TCB: usize = 0x1F0;
    pub const SIG_R: usize = 0x2A0;
    pub const SIG_S: usize = 0x2E8;
}

/// The test firmware: the VCEK key, the platform identity, and the guest's launch values.
pub struct TestFirmware {
    chain: TestAmdChain,
    /// MEASUREMENT reported (default: SHA-384 of "skr-emulator test guest").
    pub measurement: [u8; 48],
    /// HOST_DATA reported (default zero).
    pub host_data: [u8; 32],
    /// GUEST_SVN reported.
    pub guest_svn: u32,
    /// Firmware version bytes (build, minor, major) at 0x1E8 / 0x1EC.
    pub firmware_version: [u8; 3],
}

impl std::fmt::Debug for TestFirmware {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestFirmware")
            .field("chain", &self.chain)
            .field("measurement", &hex::encode(self.measurement))
            .finish_non_exhaustive()
    }
}

impl TestFirmware {
    /// A firmware signing with `chain`'s VCEK.
    pub fn new(chain: TestAmdChain) -> Self {
        let mut measurement = [0u8; 48];
        measurement.copy_from_slice(&Sha384::digest(b"skr-emulator test guest"));
        Self {
            chain,
            measurement,
            host_data: [0; 32],
            guest_svn: 0,
            firmware_version: [4, 55, 1],
        }
    }

    /// The chain behind this firmware.
    pub fn chain(&self) -> &TestAmdChain {
        &self.chain
    }

    /// A signed report for `report_data` at `vmpl`.
    pub fn sign_report(
        &self,
        report_data: &[u8; 64],
        vmpl: u32,
    ) -> Result<[u8; sev_guest::REPORT_SIZE], SevGuestError> {
        if vmpl > sev_guest::MAX_VMPL {
            return Err(SevGuestError::VmplOutOfRange {
                found: vmpl,
                max: sev_guest::MAX_VMPL,
            });
        }
        let mut r = [0u8; sev_guest::REPORT_SIZE];
        let put = |r: &mut [u8; sev_guest::REPORT_SIZE], at: usize, bytes: &[u8]| {
            r[at..at + bytes.len()].copy_from_slice(bytes);
        };
        let tcb = self.chain.tcb.to_bytes();
        put(&mut r, off::VERSION, &REPORT_VERSION.to_le_bytes());
        put(&mut r, off::GUEST_SVN, &self.guest_svn.to_le_bytes());
        put(&mut r, off::POLICY, &POLICY.to_le_bytes());
        put(&mut r, off::VMPL, &vmpl.to_le_bytes());
        put(&mut r, off::SIGNATURE_ALGO, &1u32.to_le_bytes());
        put(&mut r, off::CURRENT_TCB, &tcb);
        put(&mut r, off::PLATFORM_INFO, &PLATFORM_INFO.to_le_bytes());
        put(&mut r, off::KEY_INFO, &0u32.to_le_bytes());
        put(&mut r, off::REPORT_DATA, report_data);
        put(&mut r, off::MEASUREMENT, &self.measurement);
        put(&mut r, off::HOST_DATA, &self.host_data);
        let mut report_id = [0u8; 32];
        OsRng.fill_bytes(&mut report_id);
        put(&mut r, off::REPORT_ID, &report_id);
        put(&mut r, off::REPORT_ID_MA, &[0xFF; 32]);
        put(&mut r, off::REPORTED_TCB, &tcb);
        put(&mut r, off::CPUID_FAM, &[0x19]);
        put(&mut r, off::CPUID_MOD, &[0x11]);
        put(&mut r, off::CPUID_STEP, &[0x01]);
        put(&mut r, off::CHIP_ID, &self.chain.chip_id);
        put(&mut r, off::COMMITTED_TCB, &tcb);
        put(&mut r, off::CURRENT_VERSION, &self.firmware_version);
        put(&mut r, off::COMMITTED_VERSION, &self.firmware_version);
        put(&mut r, off::LAUNCH_TCB, &tcb);

        let signature: p384::ecdsa::Signature = self
            .chain
            .vcek_key
            .try_sign(&r[..SIGNED_LEN])
            .map_err(|source| SevGuestError::TestSigner { source })?;
        let (sig_r, sig_s) = signature.split_bytes();
        put(&mut r, off::SIG_R, &little_endian_72(&sig_r));
        put(&mut r, off::SIG_S, &little_endian_72(&sig_s));
        Ok(r)
    }

    /// The certificate table of an extended report: VCEK, ASK, ARK (PROTOCOLS.md §2.4).
    pub fn cert_table(&self) -> Vec<u8> {
        let entry =
            |g: &str, der: &[u8]| (sev_guest::guid_bytes(g).unwrap_or([0; 16]), der.to_vec());
        sev_guest::encode_cert_table(&[
            entry(sev_guest::guid::VCEK, &self.chain.vcek_der),
            entry(sev_guest::guid::ASK, &self.chain.ask_der),
            entry(sev_guest::guid::ARK, &self.chain.ark_der),
        ])
    }
}

/// A 48-byte big-endian scalar as a 72-byte little-endian integer.
fn little_endian_72(be: &[u8]) -> [u8; 72] {
    let mut out = [0u8; 72];
    for (i, b) in be.iter().rev().enumerate().take(72) {
        out[i] = *b;
    }
    out
}

impl SevGuestFirmware for TestFirmware {
    fn get_report(&mut self, report_data: [u8; 64], vmpl: u32) -> Result<Vec<u8>, SevGuestError> {
        Ok(self.sign_report(&report_data, vmpl)?.to_vec())
    }

    fn get_ext_report(
        &mut self,
        report_data: [u8; 64],
        vmpl: u32,
    ) -> Result<(Vec<u8>, Option<Vec<u8>>), SevGuestError> {
        let report = self.sign_report(&report_data, vmpl)?.to_vec();
        Ok((report, Some(self.cert_table())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_are_stored_little_endian() {
        let mut be = [0u8; 48];
        be[0] = 0xAB; // most significant
        be[47] = 0x01; // least significant
        let le = little_endian_72(&be);
        assert_eq!(le[0], 0x01);
        assert_eq!(le[47], 0xAB);
        assert_eq!(le[48..], [0u8; 24]);
    }
}
