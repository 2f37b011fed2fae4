//! AMD SEV-SNP certificates: parsing, role by name, AMD extensions (PROTOCOLS.md §3.6, §2.4).
//!
//! Accepts PEM bundles (any number, any order), single DER certificates and the extended-report
//! certificate table (see [`super::cert_table`]). A certificate's role comes from its subject and
//! issuer CN (`ARK-*`, `SEV-*`, `SEV-VLEK-*`, `SEV-VCEK`, `SEV-VLEK`), never from its position.
//! VCEK/VLEK serial numbers are 0 (an RFC 5280 violation); `x509-cert`'s default profile
//! accepts that. Signatures are checked in [`super::chain`].

use der::asn1::{Ia5StringRef, ObjectIdentifier, PrintableStringRef, Utf8StringRef};
use der::{Decode, Encode, Reader, SliceReader};
use serde::Serialize;
use sha2::{Digest, Sha256};
use x509_cert::Certificate;

use super::cert_table;
use super::error::SnpError;
use super::generation::Generation;

/// What an AMD certificate is, from its names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum CertRole {
    /// AMD Root Key (`ARK-<product>`, self-signed).
    Ark,
    /// AMD SEV Key (`SEV-<product>`), issues VCEKs.
    Ask,
    /// AMD SEV VLEK key (`SEV-VLEK-<product>`), issues VLEKs.
    Asvk,
    /// Versioned Chip Endorsement Key (`SEV-VCEK`).
    Vcek,
    /// Versioned Loaded Endorsement Key (`SEV-VLEK`).
    Vlek,
}

impl CertRole {
    /// `ARK`, `ASK`, `ASVK`, `VCEK`, `VLEK`.
    pub fn as_str(self) -> &'static str {
        match self {
            CertRole::Ark => "ARK",
            CertRole::Ask => "ASK",
            CertRole::Asvk => "ASVK",
            CertRole::Vcek => "VCEK",
            CertRole::Vlek => "VLEK",
        }
    }

    /// Whether this is an endorsement key (VCEK or VLEK) that signs reports.
    pub fn is_leaf(self) -> bool {
        matches!(self, CertRole::Vcek | CertRole::Vlek)
    }
}

impl std::fmt::Display for CertRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// AMD arc for VCEK/VLEK extensions.
pub const AMD_EXT_ARC: &str = "1.3.6.1.4.1.3704.1";
/// AMD extension OID: structVersion.
pub const OID_STRUCT_VERSION: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.1");
/// AMD extension OID: productName.
pub const OID_PRODUCT_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.2");
/// AMD extension OID: blSPL.
pub const OID_BL_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.1");
/// AMD extension OID: teeSPL.
pub const OID_TEE_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.2");
/// AMD extension OID: snpSPL.
pub const OID_SNP_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.3");
/// AMD extension OID: ucodeSPL.
pub const OID_UCODE_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.8");
/// AMD extension OID: fmcSPL (Turin).
pub const OID_FMC_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.9");
/// AMD extension OID: hwID (VCEK).
pub const OID_HW_ID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.4");
/// AMD extension OID: cspID (VLEK).
pub const OID_CSP_ID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.5");
const OID_CN: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.3");

/// Dotted OIDs of the extensions the report checks use, for error messages.
pub(crate) mod oid_str {
    pub const PRODUCT_NAME: &str = "1.3.6.1.4.1.3704.1.2";
    pub const BL_SPL: &str = "1.3.6.1.4.1.3704.1.3.1";
    pub const TEE_SPL: &str = "1.3.6.1.4.1.3704.1.3.2";
    pub const SNP_SPL: &str = "1.3.6.1.4.1.3704.1.3.3";
    pub const UCODE_SPL: &str = "1.3.6.1.4.1.3704.1.3.8";
    pub const FMC_SPL: &str = "1.3.6.1.4.1.3704.1.3.9";
    pub const HW_ID: &str = "1.3.6.1.4.1.3704.1.4";
}

/// The AMD extensions of a VCEK/VLEK (1.3.6.1.4.1.3704.1.*); all `None` on ARK/ASK/ASVK.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AmdExtensions {
    /// .1 structVersion (0 Milan/Genoa, 1 Turin).
    pub struct_version: Option<u64>,
    /// .2 productName, e.g. `Milan-B0`, `Genoa`.
    pub product_name: Option<String>,
    /// .3.1 blSPL.
    pub bl_spl: Option<u8>,
    /// .3.2 teeSPL.
    pub tee_spl: Option<u8>,
    /// .3.3 snpSPL.
    pub snp_spl: Option<u8>,
    /// .3.8 ucodeSPL.
    pub ucode_spl: Option<u8>,
    /// .3.9 fmcSPL (Turin).
    pub fmc_spl: Option<u8>,
    /// .4 hwID raw bytes (64 Milan/Genoa, 8 Turin); VCEK only.
    pub hw_id: Option<Vec<u8>>,
    /// .5 cspID; VLEK only.
    pub csp_id: Option<String>,
}

/// A parsed AMD certificate with its role, product and AMD extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmdCert {
    /// Role from the names.
    pub role: CertRole,
    /// Product from the names (`ARK-Milan` → Milan; a leaf takes its issuer's), `None` if the
    /// name carries a product skrd does not know.
    pub product: Option<Generation>,
    /// Subject CN.
    pub subject_cn: String,
    /// Issuer CN.
    pub issuer_cn: String,
    /// Serial number bytes (big-endian, as encoded).
    pub serial: Vec<u8>,
    /// notBefore, Unix seconds.
    pub not_before: i64,
    /// notAfter, Unix seconds.
    pub not_after: i64,
    /// AMD extensions (leaves).
    pub extensions: AmdExtensions,
    der: Vec<u8>,
    tbs_range: (usize, usize),
    cert: Certificate,
}

fn parse_err(index: usize, e: impl std::fmt::Display) -> SnpError {
    SnpError::CertParseFailed {
        index,
        detail: e.to_string(),
    }
}

fn cn_of(name: &x509_cert::name::Name) -> String {
    for rdn in name.0.iter() {
        for atv in rdn.0.iter() {
            if atv.oid == OID_CN {
                if let Ok(s) = atv.value.decode_as::<Utf8StringRef<'_>>() {
                    return s.as_str().to_string();
                }
                if let Ok(s) = atv.value.decode_as::<PrintableStringRef<'_>>() {
                    return s.as_str().to_string();
                }
                if let Ok(s) = atv.value.decode_as::<Ia5StringRef<'_>>() {
                    return s.as_str().to_string();
                }
            }
        }
    }
    String::new()
}

/// Role and product from subject/issuer CNs.
fn role_of(subject: &str, issuer: &str) -> Result<(CertRole, Option<Generation>), SnpError> {
    let unknown = || SnpError::CertRoleUnknown {
        subject: subject.to_string(),
        issuer: issuer.to_string(),
    };
    let product_of_issuer = |issuer: &str| {
        issuer
            .strip_prefix("SEV-VLEK-")
            .or_else(|| issuer.strip_prefix("SEV-"))
            .and_then(Generation::from_product_name)
    };
    match subject {
        "SEV-VCEK" => Ok((CertRole::Vcek, product_of_issuer(issuer))),
        "SEV-VLEK" => Ok((CertRole::Vlek, product_of_issuer(issuer))),
        s => {
            if let Some(p) = s.strip_prefix("ARK-") {
                if issuer != subject {
                    return Err(unknown());
                }
                Ok((CertRole::Ark, Generation::from_product_name(p)))
            } else if let Some(p) = s.strip_prefix("SEV-VLEK-") {
                if !issuer.starts_with("ARK-") {
                    return Err(unknown());
                }
                Ok((CertRole::Asvk, Generation::from_product_name(p)))
            } else if let Some(p) = s.strip_prefix("SEV-") {
                if !issuer.starts_with("ARK-") {
                    return Err(unknown());
                }
                Ok((CertRole::Ask, Generation::from_product_name(p)))
            } else {
                Err(unknown())
            }
        }
    }
}

/// Byte range of the TBSCertificate TLV inside the certificate DER.
fn tbs_range(der: &[u8]) -> der::Result<(usize, usize)> {
    let mut reader = SliceReader::new(der)?;
    let header = der::Header::decode(&mut reader)?;
    let outer_hdr_len = usize::try_from(reader.position())?;
    let _ = header;
    let tbs = reader.tlv_bytes()?;
    Ok((outer_hdr_len, outer_hdr_len + tbs.len()))
}

fn ext_err(subject: &str, oid: &ObjectIdentifier, detail: impl std::fmt::Display) -> SnpError {
    SnpError::CertExtensionInvalid {
        subject: subject.to_string(),
        oid: oid.to_string(),
        detail: detail.to_string(),
    }
}

fn parse_extensions(cert: &Certificate, subject: &str) -> Result<AmdExtensions, SnpError> {
    let mut out = AmdExtensions::default();
    let Some(exts) = cert.tbs_certificate.extensions.as_ref() else {
        return Ok(out);
    };
    let spl = |oid: &ObjectIdentifier, v: &[u8]| -> Result<u8, SnpError> {
        // DER INTEGER; values >= 0x80 carry a 0x00 prefix (02 02 00 D9), §3.6.
        u8::from_der(v)
            .map_err(|e| ext_err(subject, oid, format!("not a DER INTEGER 0..=255: {e}")))
    };
    for ext in exts {
        let v = ext.extn_value.as_bytes();
        let oid = &ext.extn_id;
        match *oid {
            OID_STRUCT_VERSION => {
                out.struct_version = Some(
                    u64::from_der(v)
                        .map_err(|e| ext_err(subject, oid, format!("not a DER INTEGER: {e}")))?,
                )
            }
            OID_PRODUCT_NAME => {
                out.product_name = Some(
                    Ia5StringRef::from_der(v)
                        .map_err(|e| ext_err(subject, oid, format!("not a DER IA5String: {e}")))?
                        .as_str()
                        .to_string(),
                )
            }
            OID_BL_SPL => out.bl_spl = Some(spl(oid, v)?),
            OID_TEE_SPL => out.tee_spl = Some(spl(oid, v)?),
            OID_SNP_SPL => out.snp_spl = Some(spl(oid, v)?),
            OID_UCODE_SPL => out.ucode_spl = Some(spl(oid, v)?),
            OID_FMC_SPL => out.fmc_spl = Some(spl(oid, v)?),
            OID_HW_ID => out.hw_id = Some(v.to_vec()),
            OID_CSP_ID => {
                out.csp_id = Some(
                    Ia5StringRef::from_der(v)
                        .map_err(|e| ext_err(subject, oid, format!("not a DER IA5String: {e}")))?
                        .as_str()
                        .to_string(),
                )
            }
            _ => {}
        }
    }
    Ok(out)
}

impl AmdCert {
    /// Parses one DER certificate. `index` only labels errors.
    pub fn from_der_indexed(der: &[u8], index: usize) -> Result<AmdCert, SnpError> {
        let cert = Certificate::from_der(der).map_err(|e| parse_err(index, e))?;
        let range = tbs_range(der).map_err(|e| parse_err(index, e))?;
        let tbs = &cert.tbs_certificate;
        let subject_cn = cn_of(&tbs.subject);
        let issuer_cn = cn_of(&tbs.issuer);
        let (role, product) = role_of(&subject_cn, &issuer_cn)?;
        let extensions = parse_extensions(&cert, &subject_cn)?;
        let secs = |t: x509_cert::time::Time| {
            i64::try_from(t.to_unix_duration().as_secs()).unwrap_or(i64::MAX)
        };
        Ok(AmdCert {
            role,
            product,
            serial: tbs.serial_number.as_bytes().to_vec(),
            not_before: secs(tbs.validity.not_before),
            not_after: secs(tbs.validity.not_after),
            subject_cn,
            issuer_cn,
            extensions,
            der: der.to_vec(),
            tbs_range: range,
            cert,
        })
    }

    /// Parses one DER certificate.
    pub fn from_der(der: &[u8]) -> Result<AmdCert, SnpError> {
        Self::from_der_indexed(der, 0)
    }

    /// The DER bytes as given.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The signed TBSCertificate bytes exactly as encoded.
    pub fn tbs_der(&self) -> &[u8] {
        self.der
            .get(self.tbs_range.0..self.tbs_range.1)
            .unwrap_or(&[])
    }

    /// SHA-256 of the DER (the pin format of PROTOCOLS.md §3.6).
    pub fn sha256(&self) -> [u8; 32] {
        Sha256::digest(&self.der).into()
    }

    /// [`AmdCert::sha256`] as lower-case hex.
    pub fn fingerprint(&self) -> String {
        hex::encode(self.sha256())
    }

    /// The underlying `x509-cert` certificate.
    pub fn x509(&self) -> &Certificate {
        &self.cert
    }

    /// DER of the SubjectPublicKeyInfo.
    pub fn spki_der(&self) -> Result<Vec<u8>, SnpError> {
        self.cert
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .map_err(|e| parse_err(0, e))
    }

    /// The product a VCEK/VLEK's productName names (prefix before `-`).
    pub fn product_name_generation(&self) -> Option<Generation> {
        self.extensions
            .product_name
            .as_deref()
            .and_then(Generation::from_product_name)
    }
}

/// Parses AMD certificates from a PEM bundle (any number, any order), a single DER
/// certificate, or an SNP extended-report certificate table (§2.4), detected in that order.
pub fn parse_certs(bytes: &[u8]) -> Result<Vec<AmdCert>, SnpError> {
    const BEGIN: &[u8] = b"-----BEGIN CERTIFICATE-----";
    const END: &[u8] = b"-----END CERTIFICATE-----";
    if contains(bytes, b"-----BEGIN") {
        let mut out = Vec::new();
        let mut rest = bytes;
        let mut index = 0;
        while let Some(start) = find(rest, BEGIN) {
            let Some(tail) = rest.get(start..) else { break };
            let Some(end_rel) = find(tail, END) else {
                return Err(parse_err(index, "PEM block without END CERTIFICATE line"));
            };
            let block_end = end_rel + END.len();
            let block = tail.get(..block_end).unwrap_or(tail);
            let (label, der) = der::pem::decode_vec(block).map_err(|e| parse_err(index, e))?;
            if label != "CERTIFICATE" {
                return Err(parse_err(index, format!("PEM label {label:?}")));
            }
            out.push(AmdCert::from_der_indexed(&der, index)?);
            index += 1;
            rest = tail.get(block_end..).unwrap_or(&[]);
        }
        if out.is_empty() {
            return Err(parse_err(0, "no CERTIFICATE PEM block found"));
        }
        return Ok(out);
    }
    if bytes.first() == Some(&0x30) {
        if let Ok(c) = AmdCert::from_der_indexed(bytes, 0) {
            return Ok(vec![c]);
        }
        // A cert table whose first GUID byte is 0x30 falls through; otherwise report DER errors.
        if cert_table::parse_cert_table(bytes).is_err() {
            return AmdCert::from_der_indexed(bytes, 0).map(|c| vec![c]);
        }
    }
    if starts_like_cert_table(bytes) {
        return cert_table::certs_from_table(bytes);
    }
    Err(parse_err(
        0,
        "not a PEM bundle, a DER certificate or an SNP extended-report certificate table",
    ))
}

/// A certificate table starts with the GUID of one of AMD's certificate kinds (or is empty).
fn starts_like_cert_table(bytes: &[u8]) -> bool {
    use cert_table::{GUID_ARK, GUID_ASK, GUID_VCEK, GUID_VLEK};
    match bytes.get(..16) {
        Some(first) => {
            [GUID_VCEK, GUID_VLEK, GUID_ASK, GUID_ARK]
                .iter()
                .any(|g| g.as_slice() == first)
                || first.iter().all(|b| *b == 0)
        }
        None => false,
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    find(hay, needle).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_bundle_roles_by_name_not_position() {
        // trustee/amd/milan_ask_ark_asvk.pem holds SEV-Milan, ARK-Milan, SEV-VLEK-Milan in that
        // order (openssl x509 -noout -subject on each block).
        let certs = parse_certs(fixture!("trustee/amd/milan_ask_ark_asvk.pem")).unwrap();
        let roles: Vec<_> = certs.iter().map(|c| (c.role, c.product)).collect();
        assert_eq!(
            roles,
            vec![
                (CertRole::Ask, Some(Generation::Milan)),
                (CertRole::Ark, Some(Generation::Milan)),
                (CertRole::Asvk, Some(Generation::Milan)),
            ]
        );
    }

    #[test]
    fn vlek_spl_with_leading_zero_and_cspid() {
        // openssl asn1parse of trustee/snp/test-vlek.der: ucodeSPL = 02 02 00 D9 (217),
        // snpSPL 0x18, blSPL 4, cspID "CN=cc-us-east-2.amazonaws.com", no hwID.
        let c = &parse_certs(fixture!("trustee/snp/test-vlek.der")).unwrap()[0];
        assert_eq!(c.role, CertRole::Vlek);
        assert_eq!(c.serial, vec![0]);
        assert_eq!(c.extensions.ucode_spl, Some(217));
        assert_eq!(c.extensions.snp_spl, Some(24));
        assert_eq!(c.extensions.bl_spl, Some(4));
        assert_eq!(c.extensions.hw_id, None);
        assert_eq!(
            c.extensions.csp_id.as_deref(),
            Some("CN=cc-us-east-2.amazonaws.com")
        );
        assert_eq!(c.product_name_generation(), Some(Generation::Milan));
    }

    #[test]
    fn turin_vcek_has_8_byte_hwid_and_fmc() {
        // openssl x509 -text of virtee-sev/vcek_turin.der: structVersion 1, productName Turin,
        // hwID 1e550a8ee5cf9f4d (8 bytes), fmcSPL 0, ucodeSPL 9.
        let c = &parse_certs(fixture!("virtee-sev/vcek_turin.der")).unwrap()[0];
        assert_eq!(c.role, CertRole::Vcek);
        assert_eq!(c.product, Some(Generation::Turin));
        assert_eq!(c.extensions.struct_version, Some(1));
        assert_eq!(
            c.extensions.hw_id.as_deref(),
            Some(&hex::decode("1e550a8ee5cf9f4d").unwrap()[..])
        );
        assert_eq!(c.extensions.fmc_spl, Some(0));
        assert_eq!(c.extensions.ucode_spl, Some(9));
    }

    #[test]
    fn garbage_is_refused() {
        assert!(matches!(
            parse_certs(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
            Err(SnpError::CertParseFailed { .. })
        ));
        assert!(matches!(
            parse_certs(&[0x30, 0x03, 0x02, 0x01, 0x00]),
            Err(SnpError::CertParseFailed { .. })
        ));
        assert!(parse_certs(&[]).is_err());
    }

    #[test]
    fn crlf_pem_and_surrounding_text() {
        let pem = std::str::from_utf8(fixture!("virtee-sev/cert_chain_milan")).unwrap();
        let crlf = format!("chain follows\r\n{}\r\ntrailer", pem.replace('\n', "\r\n"));
        let certs = parse_certs(crlf.as_bytes()).unwrap();
        assert_eq!(certs.len(), 2);
        assert_eq!(certs[1].subject_cn, "ARK-Milan");
    }
}
