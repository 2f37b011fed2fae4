//! A minimal DER writer for the certificates the emulator issues (test AMD chain, AK certificate).
//!
//! The test chain must mirror AMD's real certificates byte-for-byte in shape (PROTOCOLS.md §3.6):
//! UTF8String names in AMD's attribute order, a PrintableString country, RSASSA-PSS parameters with
//! an explicit trailer field on the ARK/ASK but not on the VCEK, serial 0 on the VCEK. A generic
//! certificate builder normalises some of these, so the TBS is assembled here, TLV by TLV.

/// Tag numbers used by the emulator's certificates.
pub(crate) mod tag {
    pub const INTEGER: u8 = 0x02;
    pub const BIT_STRING: u8 = 0x03;
    pub const OCTET_STRING: u8 = 0x04;
    pub const NULL: u8 = 0x05;
    pub const OID: u8 = 0x06;
    pub const UTF8_STRING: u8 = 0x0C;
    pub const PRINTABLE_STRING: u8 = 0x13;
    pub const IA5_STRING: u8 = 0x16;
    pub const UTC_TIME: u8 = 0x17;
    pub const GENERALIZED_TIME: u8 = 0x18;
    pub const SEQUENCE: u8 = 0x30;
    pub const SET: u8 = 0x31;
    pub const BOOLEAN: u8 = 0x01;
}

/// One TLV: `tag || length || content` with a DER definite length.
pub(crate) fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    out.push(tag);
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let first = bytes
            .iter()
            .position(|b| *b != 0)
            .unwrap_or(bytes.len() - 1);
        let significant = &bytes[first..];
        out.push(0x80 | significant.len() as u8);
        out.extend_from_slice(significant);
    }
    out.extend_from_slice(content);
    out
}

/// A SEQUENCE of already-encoded elements.
pub(crate) fn seq(parts: &[&[u8]]) -> Vec<u8> {
    tlv(tag::SEQUENCE, &parts.concat())
}

/// A non-negative INTEGER from big-endian magnitude bytes (minimal encoding, sign byte added).
pub(crate) fn uint(be: &[u8]) -> Vec<u8> {
    let first = be.iter().position(|b| *b != 0).unwrap_or(be.len());
    let mut content = Vec::with_capacity(be.len() + 1);
    let trimmed = &be[first..];
    if trimmed.is_empty() {
        content.push(0);
    } else {
        if trimmed[0] & 0x80 != 0 {
            content.push(0);
        }
        content.extend_from_slice(trimmed);
    }
    tlv(tag::INTEGER, &content)
}

/// A small non-negative INTEGER.
pub(crate) fn uint_u64(v: u64) -> Vec<u8> {
    uint(&v.to_be_bytes())
}

/// An OBJECT IDENTIFIER from its dotted form (first two arcs ≤ 2 / < 40 as in every OID used here).
pub(crate) fn oid(dotted: &str) -> Vec<u8> {
    let arcs: Vec<u64> = dotted.split('.').filter_map(|a| a.parse().ok()).collect();
    let mut content = Vec::new();
    if arcs.len() >= 2 {
        push_base128(&mut content, arcs[0] * 40 + arcs[1]);
        for arc in &arcs[2..] {
            push_base128(&mut content, *arc);
        }
    }
    tlv(tag::OID, &content)
}

fn push_base128(out: &mut Vec<u8>, mut v: u64) {
    let mut tmp = vec![(v & 0x7f) as u8];
    v >>= 7;
    while v > 0 {
        tmp.push(0x80 | (v & 0x7f) as u8);
        v >>= 7;
    }
    tmp.reverse();
    out.extend_from_slice(&tmp);
}

/// A BIT STRING with no unused bits.
pub(crate) fn bit_string(bytes: &[u8]) -> Vec<u8> {
    let mut content = Vec::with_capacity(bytes.len() + 1);
    content.push(0);
    content.extend_from_slice(bytes);
    tlv(tag::BIT_STRING, &content)
}

/// A context-specific constructed tag `[n]` around already-encoded content.
pub(crate) fn explicit(n: u8, inner: &[u8]) -> Vec<u8> {
    tlv(0xA0 | n, inner)
}

/// X.509 `Time`: UTCTime before 2050, GeneralizedTime from 2050 on (RFC 5280 §4.1.2.5).
pub(crate) fn time(t: time::OffsetDateTime) -> Vec<u8> {
    let t = t.to_offset(time::UtcOffset::UTC);
    let (y, mo, d) = (t.year(), u8::from(t.month()), t.day());
    let (h, mi, s) = (t.hour(), t.minute(), t.second());
    if (1950..2050).contains(&y) {
        let text = format!("{:02}{mo:02}{d:02}{h:02}{mi:02}{s:02}Z", y % 100);
        tlv(tag::UTC_TIME, text.as_bytes())
    } else {
        let text = format!("{y:04}{mo:02}{d:02}{h:02}{mi:02}{s:02}Z");
        tlv(tag::GENERALIZED_TIME, text.as_bytes())
    }
}

/// PEM text (RFC 7468, LF line endings) of `bytes` under `label`.
pub(crate) fn pem_encode(label: &str, bytes: &[u8]) -> Result<String, super::EmulatorError> {
    ::der::pem::encode_string(label, ::der::pem::LineEnding::LF, bytes)
        .map_err(|_| super::EmulatorError::Encode { what: "PEM" })
}

/// The bytes of a single PEM block labelled `label`.
pub(crate) fn pem_decode(text: &str, label: &'static str) -> Result<Vec<u8>, super::EmulatorError> {
    match ::der::pem::decode_vec(text.trim().as_bytes()) {
        Ok((found, bytes)) if found == label => Ok(bytes),
        _ => Err(super::EmulatorError::PemInvalid { label }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_and_integers_follow_der() {
        // X.690 §8.1.3: long form uses the minimal number of length octets.
        assert_eq!(tlv(0x04, &[0u8; 3])[..2], [0x04, 0x03]);
        assert_eq!(tlv(0x04, &[0u8; 200])[..3], [0x04, 0x81, 200]);
        assert_eq!(tlv(0x04, &[0u8; 300])[..4], [0x04, 0x82, 0x01, 0x2C]);
        // ucodeSPL 217 is `02 02 00 D9` in a real VLEK (PROTOCOLS.md §3.6).
        assert_eq!(uint_u64(217), [0x02, 0x02, 0x00, 0xD9]);
        assert_eq!(uint_u64(0), [0x02, 0x01, 0x00]);
        // 1.3.6.1.4.1.3704.1.4 as printed by `openssl asn1parse` on a real VCEK.
        assert_eq!(
            hex::encode(oid("1.3.6.1.4.1.3704.1.4")),
            "06092b060104019c78010 4".replace(' ', "")
        );
    }
}
