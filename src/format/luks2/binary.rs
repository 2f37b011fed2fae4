//! The LUKS2 binary header (LUKS2 on-disk format specification, §2 "Header", and
//! cryptsetup's `lib/luks2/luks2.h` `struct luks2_hdr_disk`): 4096 bytes, big-endian, at
//! offset 0 (primary, magic `LUKS\xba\xbe`) and at offset `hdr_size` (secondary, magic
//! `SKUL\xba\xbe`), each followed by its JSON metadata area; the checksum covers the whole
//! `hdr_size` bytes with the checksum field zeroed. PURE: bytes in, values out.

use sha2::{Digest, Sha256};

use super::HeaderError;

/// Length of the binary part of a header.
pub const BINARY_LEN: usize = 4096;
/// Primary header magic.
pub const MAGIC_PRIMARY: &[u8; 6] = b"LUKS\xba\xbe";
/// Secondary header magic.
pub const MAGIC_SECONDARY: &[u8; 6] = b"SKUL\xba\xbe";
/// The header sizes LUKS2 allows (binary + JSON area), 16 KiB to 4 MiB.
pub const VALID_HDR_SIZES: [u64; 9] = [
    0x4000, 0x8000, 0x10000, 0x20000, 0x40000, 0x80000, 0x100000, 0x200000, 0x400000,
];

const OFF_VERSION: usize = 6;
const OFF_HDR_SIZE: usize = 8;
const OFF_SEQID: usize = 16;
const OFF_CSUM_ALG: usize = 72;
const OFF_UUID: usize = 168;
const OFF_HDR_OFFSET: usize = 256;
const OFF_CSUM: usize = 448;
const CSUM_LEN: usize = 64;

/// Which of the two header copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Copy {
    /// At offset 0.
    Primary,
    /// At offset `hdr_size`.
    Secondary,
}

impl Copy {
    fn magic(self) -> &'static [u8; 6] {
        match self {
            Self::Primary => MAGIC_PRIMARY,
            Self::Secondary => MAGIC_SECONDARY,
        }
    }

    /// `primary` or `secondary`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Primary => "primary",
            Self::Secondary => "secondary",
        }
    }
}

fn be_u64(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_be_bytes(a)
}

fn c_string(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// The fields of a binary header skrd relies on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinaryHeader {
    /// Primary or secondary.
    pub copy: Copy,
    /// Binary header + JSON area length.
    pub hdr_size: u64,
    /// Sequence id (incremented on every metadata write).
    pub seqid: u64,
    /// The UUID text.
    pub uuid: String,
}

/// The `hdr_size` of the primary header at the start of `first` (at least 4096 bytes), checked
/// against the sizes LUKS2 allows; the caller then reads both header areas.
pub fn primary_hdr_size(first: &[u8]) -> Result<u64, HeaderError> {
    if first.len() < BINARY_LEN || &first[..6] != MAGIC_PRIMARY {
        return Err(HeaderError::NotLuks2 {
            reason: "no LUKS magic at offset 0".into(),
        });
    }
    let version = u16::from_be_bytes([first[OFF_VERSION], first[OFF_VERSION + 1]]);
    if version != 2 {
        return Err(HeaderError::NotLuks2 {
            reason: format!("LUKS version {version}"),
        });
    }
    let size = be_u64(first, OFF_HDR_SIZE);
    if !VALID_HDR_SIZES.contains(&size) {
        return Err(HeaderError::Damaged {
            reason: format!("header size {size} is not one LUKS2 allows"),
        });
    }
    Ok(size)
}

/// Parses and checksums one header area (`hdr_size` bytes: binary header + JSON).
pub fn parse(area: &[u8], copy: Copy, hdr_size: u64) -> Result<BinaryHeader, HeaderError> {
    let bad = |reason: String| HeaderError::Damaged {
        reason: format!("{} header: {reason}", copy.name()),
    };
    if u64::try_from(area.len()).ok() != Some(hdr_size) || area.len() < BINARY_LEN {
        return Err(bad(format!("{} bytes, expected {hdr_size}", area.len())));
    }
    if &area[..6] != copy.magic() {
        return Err(bad("wrong magic".into()));
    }
    if u16::from_be_bytes([area[OFF_VERSION], area[OFF_VERSION + 1]]) != 2 {
        return Err(bad("version is not 2".into()));
    }
    if be_u64(area, OFF_HDR_SIZE) != hdr_size {
        return Err(bad("its size differs from the primary's".into()));
    }
    let expected_offset = match copy {
        Copy::Primary => 0,
        Copy::Secondary => hdr_size,
    };
    if be_u64(area, OFF_HDR_OFFSET) != expected_offset {
        return Err(bad(format!("hdr_offset is not {expected_offset}")));
    }
    let alg = c_string(&area[OFF_CSUM_ALG..OFF_CSUM_ALG + 32]);
    if alg != "sha256" {
        return Err(bad(format!(
            "checksum algorithm {alg:?} (skrd checks sha256 only)"
        )));
    }
    if area[OFF_CSUM..OFF_CSUM + CSUM_LEN] != checksum(area)[..] {
        return Err(bad("checksum mismatch".into()));
    }
    Ok(BinaryHeader {
        copy,
        hdr_size,
        seqid: be_u64(area, OFF_SEQID),
        uuid: c_string(&area[OFF_UUID..OFF_UUID + 40]),
    })
}

/// The sha256 checksum field of `area`: SHA-256 over the area with the field zeroed, padded
/// with zeros to 64 bytes.
pub fn checksum(area: &[u8]) -> [u8; CSUM_LEN] {
    let mut h = Sha256::new();
    h.update(&area[..OFF_CSUM]);
    h.update([0u8; CSUM_LEN]);
    h.update(&area[OFF_CSUM + CSUM_LEN..]);
    let mut out = [0u8; CSUM_LEN];
    out[..32].copy_from_slice(&h.finalize());
    out
}

/// The JSON text of a header area (up to the first NUL).
pub fn json_text(area: &[u8]) -> &[u8] {
    let json = &area[BINARY_LEN..];
    let end = json.iter().position(|&c| c == 0).unwrap_or(json.len());
    &json[..end]
}

/// A header area for the given copy: `area`'s binary header (magic, `hdr_offset` and
/// checksum set for `copy`) followed by `json` and zeros up to `hdr_size`. The detached header
/// written after the checks holds skrd's own serialisation of the metadata it checked, so
/// libcryptsetup reads exactly what was judged (no parser differences over duplicate members or
/// bytes after the JSON).
pub fn with_json(area: &[u8], json: &[u8], copy: Copy) -> Result<Vec<u8>, HeaderError> {
    let hdr_size = area.len();
    if BINARY_LEN + json.len() >= hdr_size {
        return Err(HeaderError::Damaged {
            reason: format!(
                "the metadata ({} bytes) does not fit the {hdr_size}-byte header",
                json.len()
            ),
        });
    }
    let mut out = vec![0u8; hdr_size];
    out[..BINARY_LEN].copy_from_slice(&area[..BINARY_LEN]);
    out[BINARY_LEN..BINARY_LEN + json.len()].copy_from_slice(json);
    out[..6].copy_from_slice(copy.magic());
    let offset = match copy {
        Copy::Primary => 0,
        Copy::Secondary => hdr_size as u64,
    };
    out[OFF_HDR_OFFSET..OFF_HDR_OFFSET + 8].copy_from_slice(&offset.to_be_bytes());
    let sum = checksum(&out);
    out[OFF_CSUM..OFF_CSUM + CSUM_LEN].copy_from_slice(&sum);
    Ok(out)
}
