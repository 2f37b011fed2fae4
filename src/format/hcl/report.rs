//! The Azure HCL attestation report read from vTPM NV index 0x01400001 (PROTOCOLS.md §4.2, §4.4).
//!
//! Owns the byte layout (attestation header, 1184-byte hardware report slot, IGVM request data,
//! variable data) and the REPORT_DATA binding check. It keeps the embedded SNP report as raw
//! bytes: parsing and verifying it is the job of `format::snp`, which this module does not use.
//!
//! Layout (all integers little-endian):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0x000 | 4 | Signature "HCLA" |
//! | 0x004 | 4 | Version (1 or 2) |
//! | 0x008 | 4 | ReportSize (= 0x4C0 + DataSize) |
//! | 0x00C | 4 | RequestType |
//! | 0x010 | 4 | Status |
//! | 0x014 | 12 | reserved |
//! | 0x020 | 1184 | hardware report (SEV-SNP attestation report) |
//! | 0x4C0 | 4 | IGVM DataSize (= 20 + VariableDataSize) |
//! | 0x4C4 | 4 | IGVM Version (1) |
//! | 0x4C8 | 4 | ReportType (2 SNP, 3 TVM, 4 TDX) |
//! | 0x4CC | 4 | ReportDataHashType (1 SHA-256, 2 SHA-384, 3 SHA-512) |
//! | 0x4D0 | 4 | VariableDataSize |
//! | 0x4D4 | n | variable (runtime) data, JSON |
//!
//! Bytes after the variable data (zero padding to the NV index size) are ignored.

use super::error::HclError;
use super::runtime_data::RuntimeData;
use sha2::{Digest, Sha256, Sha384, Sha512};

/// Offset of the hardware report inside the HCL report.
pub const HW_REPORT_OFFSET: usize = 0x20;
/// Size of the hardware report slot (one SEV-SNP attestation report).
pub const HW_REPORT_SIZE: usize = 1184;
/// Offset of the IGVM request data header.
pub const IGVM_OFFSET: usize = HW_REPORT_OFFSET + HW_REPORT_SIZE;
/// Size of the IGVM request data header (five u32).
pub const IGVM_HEADER_SIZE: usize = 20;
/// Offset of the variable (runtime) data.
pub const VARIABLE_DATA_OFFSET: usize = IGVM_OFFSET + IGVM_HEADER_SIZE;
/// Offset of REPORT_DATA inside an SEV-SNP report (PROTOCOLS.md §3.2).
pub const SNP_REPORT_DATA_OFFSET: usize = 0x50;
/// Size of REPORT_DATA.
pub const REPORT_DATA_SIZE: usize = 64;

/// The magic at offset 0: ASCII "HCLA".
pub const MAGIC: [u8; 4] = *b"HCLA";
/// Attestation header size (magic, version, size, request type, status, 12 reserved bytes).
const HEADER_SIZE: usize = HW_REPORT_OFFSET;

/// ReportType of an SEV-SNP hardware report.
pub const REPORT_TYPE_SNP: u32 = 2;
/// ReportType of a Trusted Launch VM (no hardware report).
pub const REPORT_TYPE_TVM: u32 = 3;
/// ReportType of a TDX TDREPORT.
pub const REPORT_TYPE_TDX: u32 = 4;

/// How the HCL hashes the variable data into REPORT_DATA (`ReportDataHashType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashType {
    /// 1: SHA-256, digest in REPORT_DATA[0..32]. The only value seen on real reports.
    Sha256,
    /// 2: SHA-384, digest in REPORT_DATA[0..48]. Never seen on a real report.
    Sha384,
    /// 3: SHA-512, digest in REPORT_DATA[0..64]. Never seen on a real report.
    Sha512,
}

impl HashType {
    /// Decodes the `ReportDataHashType` header field.
    pub fn from_u32(value: u32) -> Result<Self, HclError> {
        match value {
            1 => Ok(Self::Sha256),
            2 => Ok(Self::Sha384),
            3 => Ok(Self::Sha512),
            found => Err(HclError::UnknownHashType { found }),
        }
    }

    /// The header value (1, 2 or 3).
    pub fn as_u32(self) -> u32 {
        match self {
            Self::Sha256 => 1,
            Self::Sha384 => 2,
            Self::Sha512 => 3,
        }
    }

    /// Lower-case name used in JSON output: `sha256`, `sha384`, `sha512`.
    pub fn json_name(self) -> &'static str {
        match self {
            Self::Sha256 => "sha256",
            Self::Sha384 => "sha384",
            Self::Sha512 => "sha512",
        }
    }

    /// Display name used in messages: `SHA-256`, ...
    pub fn display_name(self) -> &'static str {
        match self {
            Self::Sha256 => "SHA-256",
            Self::Sha384 => "SHA-384",
            Self::Sha512 => "SHA-512",
        }
    }

    /// Digest length in bytes (32, 48, 64).
    pub fn digest_len(self) -> usize {
        match self {
            Self::Sha256 => 32,
            Self::Sha384 => 48,
            Self::Sha512 => 64,
        }
    }

    /// Hashes `data` with this algorithm.
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha256 => Sha256::digest(data).to_vec(),
            // SHA-384 and SHA-512 are implemented from the header definition (PROTOCOLS.md §4.4)
            // but were never seen on a real HCL report: every known report uses SHA-256.
            Self::Sha384 => Sha384::digest(data).to_vec(),
            Self::Sha512 => Sha512::digest(data).to_vec(),
        }
    }
}

/// The IGVM request data header at offset 0x4C0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IgvmRequestHeader {
    /// DataSize: 20 + VariableDataSize.
    pub data_size: u32,
    /// Version (1).
    pub version: u32,
    /// ReportType (always [`REPORT_TYPE_SNP`] after a successful parse).
    pub report_type: u32,
    /// ReportDataHashType.
    pub hash_type: HashType,
    /// VariableDataSize: length of the runtime data.
    pub variable_data_size: u32,
}

/// A parsed Azure HCL report carrying an SEV-SNP hardware report.
#[derive(Debug, Clone)]
pub struct HclReport {
    version: u32,
    report_size: u32,
    request_type: u32,
    status: u32,
    igvm: IgvmRequestHeader,
    hw_report: Vec<u8>,
    variable_data: Vec<u8>,
    runtime_data: RuntimeData,
}

/// Reads a little-endian u32 at `offset`, or reports which part is truncated.
fn read_u32(buf: &[u8], offset: usize, part: &'static str) -> Result<u32, HclError> {
    let end = offset.saturating_add(4);
    match buf.get(offset..end) {
        Some(&[a, b, c, d]) => Ok(u32::from_le_bytes([a, b, c, d])),
        _ => Err(HclError::Truncated {
            part,
            needed: end,
            found: buf.len(),
        }),
    }
}

/// Returns `buf[start..start + len]`, or reports which part is truncated.
fn slice<'a>(
    buf: &'a [u8],
    start: usize,
    len: usize,
    part: &'static str,
) -> Result<&'a [u8], HclError> {
    let end = start.saturating_add(len);
    buf.get(start..end).ok_or(HclError::Truncated {
        part,
        needed: end,
        found: buf.len(),
    })
}

impl HclReport {
    /// Parses the contents of NV index 0x01400001.
    ///
    /// Checks, in order: the attestation header is present, the magic is "HCLA", the version is
    /// 1 or 2, the hardware report slot and the IGVM header are present, the IGVM version is 1,
    /// the report type is SEV-SNP (TDX and Trusted Launch get their own errors), the hash type is
    /// known, DataSize == 20 + VariableDataSize, ReportSize == 0x4C0 + DataSize, the variable
    /// data fits in the buffer, and the variable data is runtime-data JSON (§4.3). It does NOT
    /// check the binding: call [`HclReport::check_binding`].
    pub fn parse(buf: &[u8]) -> Result<Self, HclError> {
        // Judge the magic first (when there are 4 bytes), so garbage is called garbage.
        let magic = slice(buf, 0, 4, "attestation header")?;
        if magic != MAGIC {
            let mut found = [0u8; 4];
            found.copy_from_slice(magic);
            return Err(HclError::BadMagic { found });
        }
        slice(buf, 0, HEADER_SIZE, "attestation header")?;
        let version = read_u32(buf, 4, "attestation header")?;
        if !(1..=2).contains(&version) {
            return Err(HclError::UnsupportedVersion { found: version });
        }
        let report_size = read_u32(buf, 8, "attestation header")?;
        let request_type = read_u32(buf, 12, "attestation header")?;
        let status = read_u32(buf, 16, "attestation header")?;

        let hw_report = slice(buf, HW_REPORT_OFFSET, HW_REPORT_SIZE, "hardware report")?;
        slice(
            buf,
            IGVM_OFFSET,
            IGVM_HEADER_SIZE,
            "IGVM request data header",
        )?;
        let data_size = read_u32(buf, IGVM_OFFSET, "IGVM request data header")?;
        let igvm_version = read_u32(buf, IGVM_OFFSET + 4, "IGVM request data header")?;
        let report_type = read_u32(buf, IGVM_OFFSET + 8, "IGVM request data header")?;
        let hash_type = read_u32(buf, IGVM_OFFSET + 12, "IGVM request data header")?;
        let variable_data_size = read_u32(buf, IGVM_OFFSET + 16, "IGVM request data header")?;

        // The report type decides what the rest means: reject TDX and TVM before judging sizes.
        match report_type {
            REPORT_TYPE_SNP => {}
            REPORT_TYPE_TDX => return Err(HclError::TdxUnsupported),
            REPORT_TYPE_TVM => return Err(HclError::TvmUnsupported),
            found => return Err(HclError::UnknownReportType { found }),
        }
        if igvm_version != 1 {
            return Err(HclError::UnsupportedIgvmVersion {
                found: igvm_version,
            });
        }
        let hash_type = HashType::from_u32(hash_type)?;

        let expected_data_size = IGVM_HEADER_SIZE as u64 + u64::from(variable_data_size);
        if u64::from(data_size) != expected_data_size {
            return Err(HclError::DataSizeMismatch {
                data_size,
                expected: expected_data_size,
            });
        }
        let expected_report_size = IGVM_OFFSET as u64 + u64::from(data_size);
        if u64::from(report_size) != expected_report_size {
            return Err(HclError::ReportSizeMismatch {
                report_size,
                expected: expected_report_size,
            });
        }
        let available = buf.len().saturating_sub(VARIABLE_DATA_OFFSET);
        let variable_data = usize::try_from(variable_data_size)
            .ok()
            .and_then(|n| buf.get(VARIABLE_DATA_OFFSET..VARIABLE_DATA_OFFSET.checked_add(n)?))
            .ok_or(HclError::VariableDataTooLarge {
                variable_data_size,
                available,
            })?;
        let runtime_data = RuntimeData::parse(variable_data)?;

        Ok(Self {
            version,
            report_size,
            request_type,
            status,
            igvm: IgvmRequestHeader {
                data_size,
                version: igvm_version,
                report_type,
                hash_type,
                variable_data_size,
            },
            hw_report: hw_report.to_vec(),
            variable_data: variable_data.to_vec(),
            runtime_data,
        })
    }

    /// Attestation header version (1 or 2).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Header ReportSize (0x4C0 + IGVM DataSize).
    pub fn report_size(&self) -> u32 {
        self.report_size
    }

    /// Header RequestType (0 invalid, 1 key release, 2 AK certificate; 2 on every real report).
    pub fn request_type(&self) -> u32 {
        self.request_type
    }

    /// Header Status (0 on every real report).
    pub fn status(&self) -> u32 {
        self.status
    }

    /// The IGVM request data header.
    pub fn igvm(&self) -> &IgvmRequestHeader {
        &self.igvm
    }

    /// ReportType (always 2, SEV-SNP, for a parsed report).
    pub fn report_type(&self) -> u32 {
        self.igvm.report_type
    }

    /// How REPORT_DATA binds the runtime data.
    pub fn hash_type(&self) -> HashType {
        self.igvm.hash_type
    }

    /// The 1184-byte SEV-SNP attestation report, untouched, for `format::snp`.
    pub fn snp_report_bytes(&self) -> &[u8] {
        &self.hw_report
    }

    /// The variable (runtime) data exactly as stored: the bytes that are hashed.
    pub fn runtime_data_bytes(&self) -> &[u8] {
        &self.variable_data
    }

    /// The runtime data JSON, parsed leniently.
    pub fn runtime_data(&self) -> &RuntimeData {
        &self.runtime_data
    }

    /// REPORT_DATA of the embedded SNP report (64 bytes at HCL offset 0x70).
    pub fn report_data(&self) -> &[u8] {
        self.hw_report
            .get(SNP_REPORT_DATA_OFFSET..SNP_REPORT_DATA_OFFSET + REPORT_DATA_SIZE)
            .unwrap_or_default()
    }

    /// SHA-256 of the runtime data bytes (for display, whatever the hash type).
    pub fn runtime_data_sha256(&self) -> [u8; 32] {
        Sha256::digest(&self.variable_data).into()
    }

    /// Checks that REPORT_DATA = H(runtime data bytes as stored) followed by zero bytes, H per
    /// ReportDataHashType (PROTOCOLS.md §4.4). Published test vectors are not always
    /// self-consistent, so this must run on every report before its runtime data is trusted.
    pub fn check_binding(&self) -> Result<(), HclError> {
        let hash = self.igvm.hash_type;
        let expected = hash.digest(&self.variable_data);
        let report_data = self.report_data();
        let len = hash.digest_len();
        let (prefix, tail) = report_data.split_at(len.min(report_data.len()));
        if prefix != expected.as_slice() {
            return Err(HclError::BindingMismatch {
                hash: hash.display_name(),
                len,
                expected,
                found: prefix.to_vec(),
            });
        }
        if tail.iter().any(|&b| b != 0) {
            return Err(HclError::BindingTailNotZero {
                hash: hash.display_name(),
                offset: len,
                found: tail.to_vec(),
            });
        }
        Ok(())
    }
}

/// REPORT_DATA that binds `variable_data` with `hash`: the digest followed by zeros (§4.4).
/// What the HCL asks the firmware to put in the SNP report; used by the emulator's test HCL.
pub fn report_data_for(hash: HashType, variable_data: &[u8]) -> [u8; REPORT_DATA_SIZE] {
    let mut out = [0u8; REPORT_DATA_SIZE];
    for (o, d) in out.iter_mut().zip(hash.digest(variable_data)) {
        *o = d;
    }
    out
}

/// The fields [`encode`] writes into an HCL report.
#[derive(Debug, Clone, Copy)]
pub struct EncodeParams<'a> {
    /// Attestation header version (1 or 2).
    pub version: u32,
    /// RequestType (2 on every real report).
    pub request_type: u32,
    /// The 1184-byte SEV-SNP report, its REPORT_DATA already set with [`report_data_for`].
    pub hw_report: &'a [u8],
    /// ReportDataHashType.
    pub hash_type: HashType,
    /// The runtime data JSON bytes.
    pub variable_data: &'a [u8],
    /// Zero-pad the result to this many bytes (2048 or 2600 on Azure; swtpm's NV maximum is
    /// 2048); a smaller value means no padding.
    pub pad_to: usize,
}

/// Serialises an SEV-SNP HCL report (ReportType 2, IGVM version 1, Status 0) in the layout that
/// [`HclReport::parse`] reads. Refuses a hardware report that is not 1184 bytes or variable data
/// whose size does not fit the u32 size fields.
pub fn encode(p: &EncodeParams<'_>) -> Result<Vec<u8>, HclError> {
    if p.hw_report.len() != HW_REPORT_SIZE {
        return Err(HclError::Truncated {
            part: "hardware report",
            needed: HW_REPORT_SIZE,
            found: p.hw_report.len(),
        });
    }
    let too_large = HclError::VariableDataTooLarge {
        variable_data_size: u32::MAX,
        available: p.variable_data.len(),
    };
    let var_size = u32::try_from(p.variable_data.len()).map_err(|_| too_large.clone())?;
    let data_size = var_size
        .checked_add(IGVM_HEADER_SIZE as u32)
        .ok_or(too_large.clone())?;
    let report_size = data_size.checked_add(IGVM_OFFSET as u32).ok_or(too_large)?;
    let mut out = Vec::with_capacity(p.pad_to.max(VARIABLE_DATA_OFFSET + p.variable_data.len()));
    out.extend_from_slice(&MAGIC);
    for v in [p.version, report_size, p.request_type, 0] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.resize(HW_REPORT_OFFSET, 0);
    out.extend_from_slice(p.hw_report);
    for v in [
        data_size,
        1,
        REPORT_TYPE_SNP,
        p.hash_type.as_u32(),
        var_size,
    ] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(p.variable_data);
    if out.len() < p.pad_to {
        out.resize(p.pad_to, 0);
    }
    Ok(out)
}
