//! LUKS2 header checks (DESIGN.md "Volumes and the untrusted header"): in a confidential VM the
//! host controls the disk, so the LUKS2 header is attacker-controlled input. Before skrd hands
//! out a volume's passphrase, the header it will be opened with is read once, checked here,
//! and written as a detached header the activation uses (src/volume/detached.rs), so what was
//! checked is what is used.
//!
//! - [`binary`]: the two binary headers (magic, size, checksum, UUID, seqid);
//! - [`metadata`]: the JSON metadata judged by skrd's rules (one `crypt` segment with an
//!   allowed cipher, no reencryption, no integrity or discard flags, sane layout, no
//!   `cipher_null` keyslot).
//!
//! PURE: bytes in, a verdict out.

pub mod binary;
pub mod metadata;

use crate::error::ErrorCode;

pub use binary::{BinaryHeader, Copy};
pub use metadata::CheckedMetadata;

/// Why a header is not used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// Not a LUKS2 header at all.
    #[error("not a LUKS2 header ({reason})")]
    NotLuks2 {
        /// What was found.
        reason: String,
    },
    /// Structurally broken (checksums, sizes, missing members).
    #[error("damaged LUKS2 header: {reason}; restore the header from a backup (`cryptsetup luksHeaderRestore`) in a trusted environment")]
    Damaged {
        /// What is wrong.
        reason: String,
    },
    /// The two valid copies say different things at the same sequence number.
    #[error("the primary and secondary LUKS2 headers disagree at sequence {seqid}; the header was modified outside cryptsetup: do not open this volume, restore the header from a backup in a trusted environment")]
    Disagree {
        /// The shared sequence id.
        seqid: u64,
    },
    /// The header's UUID is not the configured one.
    #[error("the LUKS2 header has UUID {found}, the configuration expects {expected}; this disk is not the configured volume")]
    UuidMismatch {
        /// Configured.
        expected: String,
        /// In the header.
        found: String,
    },
    /// Well-formed, but something skrd will not open a volume with.
    #[error("LUKS2 header refused ({what}): {reason}; a header changed outside skrd can make the volume store data the host can read: do not open it with the recovery passphrase either; restore the header from a backup in a trusted environment, or re-create the volume")]
    Refused {
        /// Which rule (`cipher`, `segment`, `segments`, `requirements`, `flags`, `layout`,
        /// `keyslot`, `digests`).
        what: String,
        /// Expected vs found.
        reason: String,
    },
}

impl ErrorCode for HeaderError {
    fn code(&self) -> &'static str {
        match self {
            Self::NotLuks2 { .. } => "luks-header-not-luks2",
            Self::Damaged { .. } => "luks-header-damaged",
            Self::Disagree { .. } => "luks-header-copies-disagree",
            Self::UuidMismatch { .. } => "luks-header-uuid-mismatch",
            Self::Refused { .. } => "luks-header-refused",
        }
    }
}

/// A header that passed every check: the copy to use and what it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedHeader {
    /// The chosen copy's area (`hdr_size` bytes: binary header + JSON), as read.
    pub area: Vec<u8>,
    /// Its binary header.
    pub binary: BinaryHeader,
    /// Its metadata.
    pub metadata: CheckedMetadata,
    /// The metadata as skrd parsed it, serialised again (what the detached header carries).
    pub json: Vec<u8>,
}

impl CheckedHeader {
    /// The header size (one copy).
    pub fn hdr_size(&self) -> u64 {
        self.binary.hdr_size
    }

    /// Length of a detached header file holding both copies and the keyslots area.
    pub fn detached_len(&self) -> u64 {
        2 * self.binary.hdr_size + self.metadata.keyslots_size
    }

    /// The checked copy written as primary and as secondary (each with its own magic, offset
    /// and checksum, and skrd's serialisation of the checked metadata): the first
    /// `2 * hdr_size` bytes of the detached header.
    pub fn header_pair(&self) -> Result<Vec<u8>, HeaderError> {
        let mut out = binary::with_json(&self.area, &self.json, Copy::Primary)?;
        out.extend(binary::with_json(&self.area, &self.json, Copy::Secondary)?);
        Ok(out)
    }
}

/// Checks the first `2 * hdr_size` bytes of a device (`headers`; `hdr_size` from
/// [`binary::primary_hdr_size`]) for the volume with LUKS UUID `expected_uuid`: the valid copy
/// with the higher sequence number is used (libcryptsetup's rule), two valid copies at the same
/// sequence must agree, and the metadata must pass [`metadata::check`].
pub fn check(
    headers: &[u8],
    hdr_size: u64,
    expected_uuid: &str,
) -> Result<CheckedHeader, HeaderError> {
    let size = usize::try_from(hdr_size).map_err(|_| HeaderError::Damaged {
        reason: format!("header size {hdr_size}"),
    })?;
    if headers.len() < 2 * size {
        return Err(HeaderError::Damaged {
            reason: format!(
                "{} bytes read, {} needed for both header copies",
                headers.len(),
                2 * size
            ),
        });
    }
    let (first, second) = (&headers[..size], &headers[size..2 * size]);
    let primary = binary::parse(first, Copy::Primary, hdr_size);
    let secondary = binary::parse(second, Copy::Secondary, hdr_size);
    let (area, bin) = match (primary, secondary) {
        (Ok(p), Ok(s)) => {
            if p.seqid == s.seqid && binary::json_text(first) != binary::json_text(second) {
                return Err(HeaderError::Disagree { seqid: p.seqid });
            }
            if s.seqid > p.seqid {
                (second, s)
            } else {
                (first, p)
            }
        }
        (Ok(p), Err(_)) => (first, p),
        (Err(_), Ok(s)) => (second, s),
        (Err(e), Err(_)) => return Err(e),
    };
    if !bin.uuid.eq_ignore_ascii_case(expected_uuid) {
        return Err(HeaderError::UuidMismatch {
            expected: expected_uuid.to_string(),
            found: bin.uuid.clone(),
        });
    }
    let (metadata, json) = metadata::check(binary::json_text(area), hdr_size)?;
    Ok(CheckedHeader {
        area: area.to_vec(),
        binary: bin,
        metadata,
        json,
    })
}

#[cfg(test)]
mod tests;
