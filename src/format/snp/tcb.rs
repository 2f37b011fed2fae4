//! TCB_VERSION (8 bytes) and the THIM `tcbm` string (PROTOCOLS.md §3.4, §2.3).
//!
//! The same 8 bytes decode differently per generation: Milan/Genoa put BL, TEE at bytes 0-1 and
//! SNP at byte 6; Turin puts FMC, BL, TEE, SNP at bytes 0-3. Microcode is byte 7 in both.
//! A `tcbm` is those 8 bytes read as a little-endian u64 and printed as 16 hex digits.

use serde::Serialize;

use super::error::SnpError;

/// Byte layout of a TCB_VERSION.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum TcbLayout {
    /// Milan and Genoa: BL 0, TEE 1, SNP 6, microcode 7.
    MilanGenoa,
    /// Turin and later: FMC 0, BL 1, TEE 2, SNP 3, microcode 7.
    Turin,
}

/// The raw 8 bytes of a TCB_VERSION field as stored in the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct RawTcb(pub [u8; 8]);

impl RawTcb {
    /// The bytes as a little-endian u64 (the THIM `tcbm` value).
    pub fn as_u64(self) -> u64 {
        u64::from_le_bytes(self.0)
    }

    /// The THIM `tcbm` string: 16 lower-case hex digits of [`RawTcb::as_u64`].
    pub fn to_tcbm(self) -> String {
        format!("{:016x}", self.as_u64())
    }

    /// Parses a THIM `tcbm` (16 hex digits, case-insensitive).
    pub fn from_tcbm(tcbm: &str) -> Result<RawTcb, SnpError> {
        let invalid = || SnpError::TcbmInvalid {
            found: tcbm.to_string(),
        };
        if tcbm.len() != 16 || !tcbm.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid());
        }
        let v = u64::from_str_radix(tcbm, 16).map_err(|_| invalid())?;
        Ok(RawTcb(v.to_le_bytes()))
    }

    /// Decodes the components with the given layout.
    pub fn decode(self, layout: TcbLayout) -> TcbVersion {
        let b = self.0;
        match layout {
            TcbLayout::MilanGenoa => TcbVersion {
                bootloader: b[0],
                tee: b[1],
                snp: b[6],
                microcode: b[7],
                fmc: None,
            },
            TcbLayout::Turin => TcbVersion {
                fmc: Some(b[0]),
                bootloader: b[1],
                tee: b[2],
                snp: b[3],
                microcode: b[7],
            },
        }
    }
}

/// Decoded security patch levels of a TCB_VERSION.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct TcbVersion {
    /// BOOT_LOADER SPL.
    pub bootloader: u8,
    /// TEE SPL.
    pub tee: u8,
    /// SNP firmware SPL.
    pub snp: u8,
    /// Microcode SPL.
    pub microcode: u8,
    /// FMC SPL (Turin and later only).
    pub fmc: Option<u8>,
}

impl TcbVersion {
    /// Encodes back to the 8 bytes of the given layout (reserved bytes zero). A Turin encoding
    /// of a value without FMC uses FMC 0.
    pub fn encode(&self, layout: TcbLayout) -> RawTcb {
        let mut b = [0u8; 8];
        match layout {
            TcbLayout::MilanGenoa => {
                b[0] = self.bootloader;
                b[1] = self.tee;
                b[6] = self.snp;
            }
            TcbLayout::Turin => {
                b[0] = self.fmc.unwrap_or(0);
                b[1] = self.bootloader;
                b[2] = self.tee;
                b[3] = self.snp;
            }
        }
        b[7] = self.microcode;
        RawTcb(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thim_example_from_protocols_2_3() {
        // PROTOCOLS.md §2.3 [verified]: "7308000000000003" <-> bytes 03 00 00 00 00 00 08 73
        // <-> BL 3, TEE 0, SNP 8, microcode 0x73.
        let t = RawTcb::from_tcbm("7308000000000003").unwrap();
        assert_eq!(t.0, [0x03, 0, 0, 0, 0, 0, 0x08, 0x73]);
        let v = t.decode(TcbLayout::MilanGenoa);
        assert_eq!(
            v,
            TcbVersion {
                bootloader: 3,
                tee: 0,
                snp: 8,
                microcode: 0x73,
                fmc: None
            }
        );
        assert_eq!(t.to_tcbm(), "7308000000000003");
        assert_eq!(v.encode(TcbLayout::MilanGenoa), t);
        assert_eq!(RawTcb::from_tcbm("DB18000000000004").unwrap().0[7], 0xDB);
    }

    #[test]
    fn turin_and_genoa_examples_from_protocols_3_4() {
        // §3.4: Turin bytes 00 01 00 02 00 00 00 47 = FMC 0, BL 1, TEE 0, SNP 2, ucode 0x47.
        let turin = RawTcb([0x00, 0x01, 0x00, 0x02, 0, 0, 0, 0x47]);
        let v = turin.decode(TcbLayout::Turin);
        assert_eq!(
            (v.fmc, v.bootloader, v.tee, v.snp, v.microcode),
            (Some(0), 1, 0, 2, 0x47)
        );
        assert_eq!(v.encode(TcbLayout::Turin), turin);
        // Decoding it with the Milan layout gives BL 0, SNP 0 (the trap).
        let wrong = turin.decode(TcbLayout::MilanGenoa);
        assert_eq!((wrong.bootloader, wrong.snp), (0, 0));
        // §3.4: Genoa 0a 00 00 00 00 00 19 54 = BL 10, TEE 0, SNP 25, ucode 84.
        let g = RawTcb([0x0a, 0, 0, 0, 0, 0, 0x19, 0x54]).decode(TcbLayout::MilanGenoa);
        assert_eq!((g.bootloader, g.tee, g.snp, g.microcode), (10, 0, 25, 84));
    }

    #[test]
    fn bad_tcbm_strings_are_refused() {
        for s in [
            "",
            "730800000000003",
            "73080000000000030",
            "730800000000000g",
            "+308000000000003",
        ] {
            assert!(
                matches!(RawTcb::from_tcbm(s), Err(SnpError::TcbmInvalid { .. })),
                "{s}"
            );
        }
    }
}
