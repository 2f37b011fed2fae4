//! Raw SEV-SNP evidence from `/dev/sev-guest` (PROTOCOLS.md §3.1; certificate table §2.4).
//!
//! [`SevGuestFirmware`] is the narrow trait over the guest device: `SNP_GET_REPORT` and
//! `SNP_GET_EXT_REPORT`. [`DevSevGuest`] is the real implementation on the `sev` crate's ioctls;
//! the emulator's test firmware implements the same trait for tests. Nothing here verifies a
//! report: the bytes go to `format::snp`.

use std::path::{Path, PathBuf};

use crate::error::ErrorCode;

/// The upstream guest device (kernel ≥ 5.19). The `sev` crate opens this fixed path.
pub const SEV_GUEST_DEVICE: &str = "/dev/sev-guest";
/// Size of an SNP attestation report (PROTOCOLS.md §3.2).
pub const REPORT_SIZE: usize = 1184;
/// Highest VMPL a report can be requested for.
pub const MAX_VMPL: u32 = 3;

/// Errors of the SEV-SNP guest device edge.
#[derive(Debug, thiserror::Error)]
pub enum SevGuestError {
    /// The device node does not exist.
    #[error(
        "{path} does not exist: this is not an SEV-SNP guest, or the kernel lacks the sev-guest \
         driver (modprobe sev-guest; needs Linux >= 5.19)"
    )]
    DeviceAbsent {
        /// The device path.
        path: PathBuf,
    },
    /// The device exists but may not be opened by this user.
    #[error("{path} exists but this process may not open it ({source}); run skrd as root")]
    DeviceAccessDenied {
        /// The device path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Opening the device failed for another reason.
    #[error("cannot open {path}: {source}")]
    DeviceOpen {
        /// The device path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The VMM or the AMD secure processor refused the request.
    #[error(
        "the SEV-SNP firmware refused {request} ({source}); check the VMPL requested and the \
         kernel log (dmesg | grep -i sev)"
    )]
    FirmwareRefused {
        /// Which request.
        request: &'static str,
        /// The `sev` crate's error (VMM or firmware status).
        source: sev::error::UserApiError,
    },
    /// The requested VMPL is out of range.
    #[error("VMPL {found} is out of range: a report can be requested for VMPL 0..={max}")]
    VmplOutOfRange {
        /// VMPL requested.
        found: u32,
        /// Largest VMPL.
        max: u32,
    },
    /// The firmware answered with a report of the wrong size.
    #[error("the SEV-SNP firmware returned a {found}-byte report; expected {expected} bytes")]
    ReportSize {
        /// Expected length.
        expected: usize,
        /// Length returned.
        found: usize,
    },
    /// A certificate-table entry carried a GUID the table format cannot hold.
    #[error("certificate table entry GUID {guid:?} is not a 16-byte RFC 4122 GUID")]
    CertTableGuid {
        /// The GUID text.
        guid: String,
    },
    /// The test firmware could not sign a report.
    #[error("the test SEV-SNP firmware could not sign the report: {source}")]
    TestSigner {
        /// The signer's error.
        source: signature::Error,
    },
}

impl ErrorCode for SevGuestError {
    fn code(&self) -> &'static str {
        match self {
            Self::DeviceAbsent { .. } => "sev-guest-absent",
            Self::DeviceAccessDenied { .. } => "sev-guest-access-denied",
            Self::DeviceOpen { .. } => "sev-guest-open-failed",
            Self::FirmwareRefused { .. } => "sev-guest-firmware-refused",
            Self::VmplOutOfRange { .. } => "sev-guest-vmpl-out-of-range",
            Self::ReportSize { .. } => "sev-guest-report-size",
            Self::CertTableGuid { .. } => "sev-guest-cert-table-guid",
            Self::TestSigner { .. } => "sev-guest-test-signer-failed",
        }
    }
}

/// The SEV-SNP guest firmware: attestation reports for caller-chosen REPORT_DATA.
pub trait SevGuestFirmware {
    /// `SNP_GET_REPORT`: the 1184-byte report with `report_data` at 0x50, for `vmpl`.
    fn get_report(&mut self, report_data: [u8; 64], vmpl: u32) -> Result<Vec<u8>, SevGuestError>;

    /// `SNP_GET_EXT_REPORT`: the report and, when the host provides them, the certificate table
    /// bytes (24-byte `{GUID, offset, length}` entries ending in a zero entry, then the DER
    /// certificates; PROTOCOLS.md §2.4).
    fn get_ext_report(
        &mut self,
        report_data: [u8; 64],
        vmpl: u32,
    ) -> Result<(Vec<u8>, Option<Vec<u8>>), SevGuestError>;
}

/// The real `/dev/sev-guest`, through the `sev` crate's ioctls (message version 1).
#[derive(Debug)]
pub struct DevSevGuest {
    firmware: sev::firmware::guest::Firmware,
}

impl DevSevGuest {
    /// Opens `/dev/sev-guest`, telling "absent" from "access denied" from other failures.
    pub fn open() -> Result<Self, SevGuestError> {
        Self::check_device(Path::new(SEV_GUEST_DEVICE))?;
        let path = PathBuf::from(SEV_GUEST_DEVICE);
        let firmware = sev::firmware::guest::Firmware::open().map_err(|e| open_error(&path, e))?;
        Ok(Self { firmware })
    }

    /// Whether `path` exists and may be opened (read, as the `sev` crate opens it); maps the OS
    /// error to a specific error.
    pub fn check_device(path: &Path) -> Result<(), SevGuestError> {
        std::fs::OpenOptions::new()
            .read(true)
            .open(path)
            .map(|_| ())
            .map_err(|e| open_error(path, e))
    }
}

fn open_error(path: &Path, e: std::io::Error) -> SevGuestError {
    let path = path.to_path_buf();
    match e.kind() {
        std::io::ErrorKind::NotFound => SevGuestError::DeviceAbsent { path },
        std::io::ErrorKind::PermissionDenied => {
            SevGuestError::DeviceAccessDenied { path, source: e }
        }
        _ => SevGuestError::DeviceOpen { path, source: e },
    }
}

fn check_vmpl(vmpl: u32) -> Result<(), SevGuestError> {
    if vmpl > MAX_VMPL {
        return Err(SevGuestError::VmplOutOfRange {
            found: vmpl,
            max: MAX_VMPL,
        });
    }
    Ok(())
}

fn check_size(report: Vec<u8>) -> Result<Vec<u8>, SevGuestError> {
    if report.len() != REPORT_SIZE {
        return Err(SevGuestError::ReportSize {
            expected: REPORT_SIZE,
            found: report.len(),
        });
    }
    Ok(report)
}

impl SevGuestFirmware for DevSevGuest {
    fn get_report(&mut self, report_data: [u8; 64], vmpl: u32) -> Result<Vec<u8>, SevGuestError> {
        check_vmpl(vmpl)?;
        let report = self
            .firmware
            .get_report(Some(1), Some(report_data), Some(vmpl))
            .map_err(|source| SevGuestError::FirmwareRefused {
                request: "SNP_GET_REPORT",
                source,
            })?;
        check_size(report)
    }

    fn get_ext_report(
        &mut self,
        report_data: [u8; 64],
        vmpl: u32,
    ) -> Result<(Vec<u8>, Option<Vec<u8>>), SevGuestError> {
        check_vmpl(vmpl)?;
        let (report, entries) = self
            .firmware
            .get_ext_report(Some(1), Some(report_data), Some(vmpl))
            .map_err(|source| SevGuestError::FirmwareRefused {
                request: "SNP_GET_EXT_REPORT",
                source,
            })?;
        let table = match entries {
            None => None,
            Some(entries) => {
                let mut parts = Vec::with_capacity(entries.len());
                for entry in entries {
                    let guid_text = entry.cert_type.to_string();
                    let guid = guid_bytes(&guid_text)
                        .ok_or(SevGuestError::CertTableGuid { guid: guid_text })?;
                    parts.push((guid, entry.data));
                }
                Some(encode_cert_table(&parts))
            }
        };
        Ok((check_size(report)?, table))
    }
}

/// Certificate-table GUIDs (PROTOCOLS.md §2.4), text form.
pub mod guid {
    /// VCEK.
    pub const VCEK: &str = "63da758d-e664-4564-adc5-f4b93be8accd";
    /// VLEK.
    pub const VLEK: &str = "a8074bc2-a25a-483e-aae6-39c045a0b8a1";
    /// ASK (also ASVK).
    pub const ASK: &str = "4ab7b379-bbac-4fe4-a02f-05aef327c782";
    /// ARK.
    pub const ARK: &str = "c0b406a4-a803-4952-9743-3fb6014cd0ae";
}

/// A GUID's 16 bytes in RFC 4122 text order (PROTOCOLS.md §9.1 trap 12).
pub fn guid_bytes(text: &str) -> Option<[u8; 16]> {
    let hex_digits: String = text.chars().filter(|c| *c != '-').collect();
    let bytes = hex::decode(hex_digits).ok()?;
    <[u8; 16]>::try_from(bytes.as_slice()).ok()
}

/// Serialises a certificate table: entries `{GUID, u32 LE offset, u32 LE length}` with offsets
/// from the start of the table, a zero terminator entry, then the certificates in order.
pub fn encode_cert_table(entries: &[([u8; 16], Vec<u8>)]) -> Vec<u8> {
    const ENTRY: usize = 24;
    let header = ENTRY * (entries.len() + 1);
    let mut table = Vec::with_capacity(header + entries.iter().map(|e| e.1.len()).sum::<usize>());
    let mut offset = header;
    for (guid, data) in entries {
        table.extend_from_slice(guid);
        table.extend_from_slice(&(offset as u32).to_le_bytes());
        table.extend_from_slice(&(data.len() as u32).to_le_bytes());
        offset += data.len();
    }
    table.extend_from_slice(&[0u8; ENTRY]);
    for (_, data) in entries {
        table.extend_from_slice(data);
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guid_bytes_are_in_text_order() {
        // PROTOCOLS.md §2.4: stored in RFC 4122 text order, e.g. VCEK starts 63 da 75 8d.
        let g = guid_bytes(guid::VCEK).unwrap();
        assert_eq!(g[..4], [0x63, 0xda, 0x75, 0x8d]);
        assert_eq!(g[15], 0xcd);
        assert!(guid_bytes("not-a-guid").is_none());
    }

    #[test]
    fn cert_table_offsets_count_from_table_start() {
        let t = encode_cert_table(&[([1; 16], vec![0xAA; 3]), ([2; 16], vec![0xBB; 5])]);
        // 3 entries of 24 bytes (two + terminator), then 3 + 5 data bytes.
        assert_eq!(t.len(), 72 + 8);
        assert_eq!(u32::from_le_bytes(t[16..20].try_into().unwrap()), 72);
        assert_eq!(u32::from_le_bytes(t[20..24].try_into().unwrap()), 3);
        assert_eq!(u32::from_le_bytes(t[40..44].try_into().unwrap()), 75);
        assert_eq!(t[48..72], [0u8; 24]);
        assert_eq!(t[72..75], [0xAA; 3]);
    }
}
