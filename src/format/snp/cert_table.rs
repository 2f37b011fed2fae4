//! The SNP extended-report certificate table (PROTOCOLS.md §2.4): `SNP_GET_EXT_REPORT` data and
//! configfs-tsm `auxblob`.
//!
//! A sequence of 24-byte entries `{GUID[16], u32 offset, u32 length}` (little-endian, offsets
//! from the table start) ended by an all-zero entry. GUID bytes are in RFC 4122 text order.
//! Every offset and length is bounds-checked; overlapping the entry area is refused.

use super::cert::{AmdCert, CertRole};
use super::error::SnpError;

/// Kind of a table entry, from its GUID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum CertTableKind {
    /// `63da758d-e664-4564-adc5-f4b93be8accd`.
    Vcek,
    /// `a8074bc2-a25a-483e-aae6-39c045a0b8a1`.
    Vlek,
    /// `4ab7b379-bbac-4fe4-a02f-05aef327c782` (ASK, also used for the ASVK).
    Ask,
    /// `c0b406a4-a803-4952-9743-3fb6014cd0ae`.
    Ark,
    /// Any other GUID (kept, not interpreted).
    Other,
}

/// GUID of the VCEK entry, RFC 4122 text byte order.
pub const GUID_VCEK: [u8; 16] = guid(
    0x63da758d,
    0xe664,
    0x4564,
    [0xad, 0xc5, 0xf4, 0xb9, 0x3b, 0xe8, 0xac, 0xcd],
);
/// GUID of the VLEK entry.
pub const GUID_VLEK: [u8; 16] = guid(
    0xa8074bc2,
    0xa25a,
    0x483e,
    [0xaa, 0xe6, 0x39, 0xc0, 0x45, 0xa0, 0xb8, 0xa1],
);
/// GUID of the ASK (or ASVK) entry.
pub const GUID_ASK: [u8; 16] = guid(
    0x4ab7b379,
    0xbbac,
    0x4fe4,
    [0xa0, 0x2f, 0x05, 0xae, 0xf3, 0x27, 0xc7, 0x82],
);
/// GUID of the ARK entry.
pub const GUID_ARK: [u8; 16] = guid(
    0xc0b406a4,
    0xa803,
    0x4952,
    [0x97, 0x43, 0x3f, 0xb6, 0x01, 0x4c, 0xd0, 0xae],
);

const fn guid(a: u32, b: u16, c: u16, d: [u8; 8]) -> [u8; 16] {
    let a = a.to_be_bytes();
    let b = b.to_be_bytes();
    let c = c.to_be_bytes();
    [
        a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d[0], d[1], d[2], d[3], d[4], d[5], d[6],
        d[7],
    ]
}

/// One entry of the table with its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertTableEntry {
    /// GUID bytes as stored.
    pub guid: [u8; 16],
    /// Kind from the GUID.
    pub kind: CertTableKind,
    /// Offset from the table start.
    pub offset: u32,
    /// Length of the data.
    pub length: u32,
    /// The data (a DER certificate for the known kinds).
    pub data: Vec<u8>,
}

impl CertTableEntry {
    /// GUID in text form: lower-case hyphenated, bytes in table order (big-endian fields).
    pub fn guid_string(&self) -> String {
        uuid::Uuid::from_bytes(self.guid).hyphenated().to_string()
    }
}

const ENTRY_LEN: usize = 24;

/// Parses the table: entries until the all-zero terminator, each bounds-checked.
pub fn parse_cert_table(bytes: &[u8]) -> Result<Vec<CertTableEntry>, SnpError> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    loop {
        let entry_index = out.len();
        let bad = |detail: String| SnpError::CertTableMalformed {
            entry: entry_index,
            detail,
        };
        let Some(e) = bytes.get(pos..pos + ENTRY_LEN) else {
            return Err(bad(format!(
                "table of {} bytes ends before the all-zero terminator entry",
                bytes.len()
            )));
        };
        if e.iter().all(|b| *b == 0) {
            break;
        }
        let mut g = [0u8; 16];
        g.copy_from_slice(&e[..16]);
        let offset = u32::from_le_bytes([e[16], e[17], e[18], e[19]]);
        let length = u32::from_le_bytes([e[20], e[21], e[22], e[23]]);
        out.push((g, offset, length));
        pos += ENTRY_LEN;
    }
    let header_end = pos + ENTRY_LEN;
    let mut entries = Vec::with_capacity(out.len());
    for (i, (g, offset, length)) in out.into_iter().enumerate() {
        let bad = |detail: String| SnpError::CertTableMalformed { entry: i, detail };
        let start = offset as usize;
        let end = start
            .checked_add(length as usize)
            .ok_or_else(|| bad(format!("offset {offset} + length {length} overflows")))?;
        if start < header_end {
            return Err(bad(format!(
                "offset {offset} points into the entry list (which ends at {header_end})"
            )));
        }
        if length == 0 {
            return Err(bad("length is 0".to_string()));
        }
        let data = bytes.get(start..end).ok_or_else(|| {
            bad(format!(
                "offset {offset} + length {length} exceeds the table size {}",
                bytes.len()
            ))
        })?;
        let kind = match g {
            GUID_VCEK => CertTableKind::Vcek,
            GUID_VLEK => CertTableKind::Vlek,
            GUID_ASK => CertTableKind::Ask,
            GUID_ARK => CertTableKind::Ark,
            _ => CertTableKind::Other,
        };
        entries.push(CertTableEntry {
            guid: g,
            kind,
            offset,
            length,
            data: data.to_vec(),
        });
    }
    Ok(entries)
}

/// Parses the table and the certificates of its known entries. The certificate's own names
/// decide its role; a GUID that disagrees with them is refused.
pub fn certs_from_table(bytes: &[u8]) -> Result<Vec<AmdCert>, SnpError> {
    let entries = parse_cert_table(bytes)?;
    let mut out = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let allowed: &[CertRole] = match e.kind {
            CertTableKind::Vcek => &[CertRole::Vcek],
            CertTableKind::Vlek => &[CertRole::Vlek],
            CertTableKind::Ask => &[CertRole::Ask, CertRole::Asvk],
            CertTableKind::Ark => &[CertRole::Ark],
            CertTableKind::Other => continue,
        };
        let cert = AmdCert::from_der_indexed(&e.data, i)?;
        if !allowed.contains(&cert.role) {
            return Err(SnpError::CertTableMalformed {
                entry: i,
                detail: format!(
                    "GUID {} ({:?}) holds certificate {:?}, a {}",
                    e.guid_string(),
                    e.kind,
                    cert.subject_cn,
                    cert.role
                ),
            });
        }
        out.push(cert);
    }
    if out.is_empty() {
        return Err(SnpError::CertTableMalformed {
            entry: entries.len(),
            detail: "no VCEK, VLEK, ASK or ARK entry".to_string(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &[u8] = fixture!("constellation/aws-snp-history/certs_valid-2023-06.bin");

    #[test]
    fn real_aws_table() {
        // xxd of the file: one entry, GUID a8074bc2-a25a-483e-aae6-39c045a0b8a1 (VLEK),
        // offset 0x30, length 0x52b, then a zero entry; the data is byte-identical to
        // certtable-a8074bc2a25a483eaae639c045a0b8a1.der (python: table.find(der) == 48).
        let entries = parse_cert_table(TABLE).unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].kind, CertTableKind::Vlek);
        assert_eq!(
            entries[0].guid_string(),
            "a8074bc2-a25a-483e-aae6-39c045a0b8a1"
        );
        assert_eq!((entries[0].offset, entries[0].length), (0x30, 0x52b));
        let der = fixture!(
            "constellation/aws-snp-history/certtable-a8074bc2a25a483eaae639c045a0b8a1.der"
        );
        assert_eq!(entries[0].data, der);
        let certs = certs_from_table(TABLE).unwrap();
        assert_eq!(certs[0].role, CertRole::Vlek);
        // parse_certs detects the table form.
        assert_eq!(
            super::super::cert::parse_certs(TABLE).unwrap()[0].der(),
            der
        );
    }

    #[test]
    fn bad_offsets_and_missing_terminator() {
        let mut t = TABLE.to_vec();
        t[16..20].copy_from_slice(&0xffff_fff0u32.to_le_bytes());
        assert!(matches!(
            parse_cert_table(&t),
            Err(SnpError::CertTableMalformed { entry: 0, .. })
        ));
        let mut t = TABLE.to_vec();
        t[16..20].copy_from_slice(&8u32.to_le_bytes());
        assert!(matches!(
            parse_cert_table(&t),
            Err(SnpError::CertTableMalformed { entry: 0, .. })
        ));
        let mut t = TABLE.to_vec();
        t[20..24].copy_from_slice(&4096u32.to_le_bytes());
        assert!(matches!(
            parse_cert_table(&t),
            Err(SnpError::CertTableMalformed { .. })
        ));
        assert!(matches!(
            parse_cert_table(&TABLE[..30]),
            Err(SnpError::CertTableMalformed { .. })
        ));
        assert!(parse_cert_table(&[]).is_err());
        // An entry whose GUID disagrees with the certificate's names.
        let mut t = TABLE.to_vec();
        t[..16].copy_from_slice(&GUID_ARK);
        assert!(matches!(
            certs_from_table(&t),
            Err(SnpError::CertTableMalformed { .. })
        ));
    }
}
