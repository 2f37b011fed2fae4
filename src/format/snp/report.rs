//! The 1184-byte SEV-SNP attestation report (PROTOCOLS.md §3.2).
//!
//! [`Report::parse`] checks the length and VERSION, decodes every field into a typed value and
//! keeps the raw bytes for the signature check (§3.5). It does not judge signing key, signature
//! algorithm or policy: that is [`super::verify`]'s job, so a report can be displayed even when
//! it would be refused.

use super::error::SnpError;
use super::generation::{ChipIdShape, Generation};
use super::policy::{GuestPolicy, KeyInfo, PlatformInfo};
use super::tcb::{RawTcb, TcbLayout, TcbVersion};

/// Size of a report.
pub const REPORT_LEN: usize = 0x4A0;
/// End of the signed range: the signature covers `report[0..SIGNED_LEN)`.
pub const SIGNED_LEN: usize = 0x2A0;
/// Report versions this parser accepts.
pub const SUPPORTED_VERSIONS: [u32; 4] = [2, 3, 4, 5];

/// CPUID bytes of a v3+ report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Cpuid {
    /// Combined family (ext family + base family): 0x19 Milan/Genoa, 0x1A Turin.
    pub family: u8,
    /// Combined model (ext model << 4 | base model).
    pub model: u8,
    /// Stepping.
    pub stepping: u8,
}

/// SNP firmware version (CURRENT_* / COMMITTED_* build, minor, major).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct FirmwareVersion {
    /// Major.
    pub major: u8,
    /// Minor.
    pub minor: u8,
    /// Build.
    pub build: u8,
}

impl std::fmt::Display for FirmwareVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.build)
    }
}

/// The ECDSA signature field: R and S, each a 72-byte little-endian integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportSignature {
    /// R, little-endian, 72 bytes (upper 24 zero for P-384).
    pub r: [u8; 72],
    /// S, little-endian, 72 bytes.
    pub s: [u8; 72],
}

/// A parsed SEV-SNP attestation report. Fields follow §3.2 in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// VERSION (2, 3, 4 or 5).
    pub version: u32,
    /// GUEST_SVN (full u32).
    pub guest_svn: u32,
    /// POLICY.
    pub policy: GuestPolicy,
    /// FAMILY_ID.
    pub family_id: [u8; 16],
    /// IMAGE_ID.
    pub image_id: [u8; 16],
    /// VMPL of the requester.
    pub vmpl: u32,
    /// SIGNATURE_ALGO (1 = ECDSA P-384 SHA-384).
    pub signature_algo: u32,
    /// CURRENT_TCB.
    pub current_tcb: RawTcb,
    /// PLATFORM_INFO.
    pub platform_info: PlatformInfo,
    /// KEY_INFO.
    pub key_info: KeyInfo,
    /// REPORT_DATA (guest-supplied).
    pub report_data: [u8; 64],
    /// MEASUREMENT (launch digest).
    pub measurement: [u8; 48],
    /// HOST_DATA.
    pub host_data: [u8; 32],
    /// ID_KEY_DIGEST.
    pub id_key_digest: [u8; 48],
    /// AUTHOR_KEY_DIGEST.
    pub author_key_digest: [u8; 48],
    /// REPORT_ID.
    pub report_id: [u8; 32],
    /// REPORT_ID_MA (all FF without a migration agent).
    pub report_id_ma: [u8; 32],
    /// REPORTED_TCB: the TCB the signing VCEK was derived for.
    pub reported_tcb: RawTcb,
    /// CPUID family/model/stepping (v3+ only).
    pub cpuid: Option<Cpuid>,
    /// CHIP_ID (Turin: 8 bytes + 56 zero bytes; all zero when masked).
    pub chip_id: [u8; 64],
    /// COMMITTED_TCB.
    pub committed_tcb: RawTcb,
    /// CURRENT_BUILD/MINOR/MAJOR.
    pub current_version: FirmwareVersion,
    /// COMMITTED_BUILD/MINOR/MAJOR.
    pub committed_version: FirmwareVersion,
    /// LAUNCH_TCB.
    pub launch_tcb: RawTcb,
    /// LAUNCH_MIT_VECTOR (v5 only).
    pub launch_mit_vector: Option<u64>,
    /// CURRENT_MIT_VECTOR (v5 only).
    pub current_mit_vector: Option<u64>,
    /// SIGNATURE (R, S).
    pub signature: ReportSignature,
    /// Generation as far as the report tells (§3.2); `None` when it cannot tell (v2 report
    /// with masked CHIP_ID, unknown CPUID): use the certificate's generation then.
    pub generation: Option<Generation>,
    raw: Vec<u8>,
}

fn arr<const N: usize>(b: &[u8; REPORT_LEN], off: usize) -> [u8; N] {
    let mut out = [0u8; N];
    if let Some(src) = b.get(off..off + N) {
        out.copy_from_slice(src);
    }
    out
}

fn u32_at(b: &[u8; REPORT_LEN], off: usize) -> u32 {
    u32::from_le_bytes(arr::<4>(b, off))
}

fn u64_at(b: &[u8; REPORT_LEN], off: usize) -> u64 {
    u64::from_le_bytes(arr::<8>(b, off))
}

impl Report {
    /// Parses exactly 1184 bytes.
    pub fn parse(bytes: &[u8]) -> Result<Report, SnpError> {
        if bytes.len() < REPORT_LEN {
            return Err(SnpError::ReportTruncated {
                expected: REPORT_LEN,
                found: bytes.len(),
            });
        }
        if bytes.len() > REPORT_LEN {
            return Err(SnpError::ReportOversized {
                expected: REPORT_LEN,
                found: bytes.len(),
            });
        }
        let b: &[u8; REPORT_LEN] = bytes.try_into().map_err(|_| SnpError::ReportTruncated {
            expected: REPORT_LEN,
            found: bytes.len(),
        })?;
        let version = u32_at(b, 0x000);
        if !SUPPORTED_VERSIONS.contains(&version) {
            return Err(SnpError::ReportVersionUnsupported { found: version });
        }
        let cpuid = (version >= 3).then(|| Cpuid {
            family: b[0x188],
            model: b[0x189],
            stepping: b[0x18A],
        });
        let chip_id = arr::<64>(b, 0x1A0);
        let generation = match cpuid {
            Some(c) => Generation::from_cpuid(c.family, c.model),
            None => match ChipIdShape::of(&chip_id) {
                ChipIdShape::TurinStyle => Some(Generation::Turin),
                // Milan and Genoa share the TCB layout; a v2 report cannot tell them apart
                // (PROTOCOLS.md §10 #15). Milan is the only one that shipped v2-only firmware,
                // but the chain decides: see `verify`.
                ChipIdShape::MilanGenoaStyle | ChipIdShape::Masked => None,
            },
        };
        let is_v5 = version >= 5;
        Ok(Report {
            version,
            guest_svn: u32_at(b, 0x004),
            policy: GuestPolicy::from_raw(u64_at(b, 0x008)),
            family_id: arr(b, 0x010),
            image_id: arr(b, 0x020),
            vmpl: u32_at(b, 0x030),
            signature_algo: u32_at(b, 0x034),
            current_tcb: RawTcb(arr(b, 0x038)),
            platform_info: PlatformInfo::from_raw(u64_at(b, 0x040)),
            key_info: KeyInfo::from_raw(u32_at(b, 0x048)),
            report_data: arr(b, 0x050),
            measurement: arr(b, 0x090),
            host_data: arr(b, 0x0C0),
            id_key_digest: arr(b, 0x0E0),
            author_key_digest: arr(b, 0x110),
            report_id: arr(b, 0x140),
            report_id_ma: arr(b, 0x160),
            reported_tcb: RawTcb(arr(b, 0x180)),
            cpuid,
            chip_id,
            committed_tcb: RawTcb(arr(b, 0x1E0)),
            current_version: FirmwareVersion {
                build: b[0x1E8],
                minor: b[0x1E9],
                major: b[0x1EA],
            },
            committed_version: FirmwareVersion {
                build: b[0x1EC],
                minor: b[0x1ED],
                major: b[0x1EE],
            },
            launch_tcb: RawTcb(arr(b, 0x1F0)),
            launch_mit_vector: is_v5.then(|| u64_at(b, 0x1F8)),
            current_mit_vector: is_v5.then(|| u64_at(b, 0x200)),
            signature: ReportSignature {
                r: arr(b, 0x2A0),
                s: arr(b, 0x2E8),
            },
            generation,
            raw: bytes.to_vec(),
        })
    }

    /// The 1184 bytes as given.
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }

    /// The signed bytes `report[0..0x2A0)`.
    pub fn signed_bytes(&self) -> &[u8] {
        self.raw.get(..SIGNED_LEN).unwrap_or(&self.raw)
    }

    /// The TCB layout of the report's TCB fields, when the report tells it: from its generation,
    /// or for a v2 report that is not Turin-style (64-byte or masked CHIP_ID), the Milan/Genoa
    /// layout (Milan and Genoa share it, and v2 reports predate Turin's v3+ firmware). `None`
    /// for a v3+ report with an unknown CPUID: take the certificate's generation then.
    pub fn tcb_layout(&self) -> Option<TcbLayout> {
        match self.generation {
            Some(g) => Some(g.tcb_layout()),
            None if self.version == 2 => Some(TcbLayout::MilanGenoa),
            None => None,
        }
    }

    /// REPORTED_TCB decoded with [`Report::tcb_layout`] (if known).
    pub fn reported_tcb_version(&self) -> Option<TcbVersion> {
        self.tcb_layout().map(|l| self.reported_tcb.decode(l))
    }

    /// Whether CHIP_ID is all zero (MASK_CHIP_ID).
    pub fn chip_id_masked(&self) -> bool {
        self.chip_id.iter().all(|b| *b == 0)
    }

    /// The CHIP_ID as KDS uses it: 64 bytes on Milan/Genoa, the first 8 on Turin.
    pub fn kds_hwid(&self, generation: Generation) -> &[u8] {
        match generation {
            Generation::Turin => &self.chip_id[..8],
            Generation::Milan | Generation::Genoa => &self.chip_id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_are_checked_exactly() {
        let r = fixture!("virtee-sev/report_milan.bin").to_vec();
        assert!(matches!(
            Report::parse(&r[..1183]),
            Err(SnpError::ReportTruncated {
                expected: 1184,
                found: 1183
            })
        ));
        assert!(matches!(
            Report::parse(&[]),
            Err(SnpError::ReportTruncated { found: 0, .. })
        ));
        let mut long = r.clone();
        long.push(0);
        assert!(matches!(
            Report::parse(&long),
            Err(SnpError::ReportOversized {
                expected: 1184,
                found: 1185
            })
        ));
        assert!(Report::parse(&r).is_ok());
    }

    #[test]
    fn versions_outside_2_to_5_are_refused() {
        // ClientLibTests-L723 is a real VERSION 1 report (first 4 bytes 01 00 00 00, checked
        // with `xxd -l 4`).
        let v1 = fixture!(
            "maa-tokens/ms-cvm-guest-attestation-clientlib/ClientLibTests-L723-snp_report.bin"
        );
        assert!(matches!(
            Report::parse(v1),
            Err(SnpError::ReportVersionUnsupported { found: 1 })
        ));
        let mut r = fixture!("virtee-sev/report_milan.bin").to_vec();
        for v in [0u32, 6, 0xffff_ffff] {
            r[..4].copy_from_slice(&v.to_le_bytes());
            assert!(matches!(
                Report::parse(&r),
                Err(SnpError::ReportVersionUnsupported { found }) if found == v
            ));
        }
        for v in [2u32, 3, 4, 5] {
            r[..4].copy_from_slice(&v.to_le_bytes());
            let p = Report::parse(&r).unwrap();
            assert_eq!(p.version, v);
            assert_eq!(p.cpuid.is_some(), v >= 3);
            assert_eq!(p.launch_mit_vector.is_some(), v >= 5);
        }
    }

    #[test]
    fn turin_v5_fields() {
        // Values from `xxd` of oak/turin_oc_report.bin at the §3.2 offsets: VERSION 5,
        // CPUID 1a 02 01, PLATFORM_INFO 0x67, REPORTED_TCB 00 01 00 02 00 00 00 47.
        let r = Report::parse(fixture!("oak/turin_oc_report.bin")).unwrap();
        assert_eq!(r.version, 5);
        assert_eq!(r.generation, Some(Generation::Turin));
        assert_eq!(r.platform_info.unknown_bits, 0x40);
        let t = r.reported_tcb_version().unwrap();
        assert_eq!(
            (t.fmc, t.bootloader, t.tee, t.snp, t.microcode),
            (Some(0), 1, 0, 2, 0x47)
        );
        assert!(r.chip_id[8..].iter().all(|b| *b == 0));
        assert_eq!(r.signed_bytes().len(), 0x2A0);
    }
}
