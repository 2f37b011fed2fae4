//! Processor generation (Milan, Genoa, Turin) of an SNP report or AMD certificate
//! (PROTOCOLS.md §3.2 "Generation detection", §3.6 names).
//!
//! The generation decides the TCB_VERSION byte layout (§3.4), the KDS product name and which
//! AMD root must sign the chain.

use serde::Serialize;

use super::tcb::TcbLayout;

/// An AMD EPYC generation with SEV-SNP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Generation {
    /// EPYC 7003 (Zen 3): family 0x19, models 0x00-0x0F.
    Milan,
    /// EPYC 9004 (Zen 4): family 0x19, models 0x10-0x1F and 0xA0-0xAF.
    Genoa,
    /// EPYC 9005 (Zen 5): family 0x1A, models 0x00-0x11.
    Turin,
}

impl Generation {
    /// All generations skrd knows, in release order.
    pub const ALL: [Generation; 3] = [Generation::Milan, Generation::Genoa, Generation::Turin];

    /// The KDS product name (`Milan`, `Genoa`, `Turin`).
    pub fn name(self) -> &'static str {
        match self {
            Generation::Milan => "Milan",
            Generation::Genoa => "Genoa",
            Generation::Turin => "Turin",
        }
    }

    /// Parses a product name; a stepping suffix (`Milan-B0`) is ignored (PROTOCOLS.md §9.1 #8).
    pub fn from_product_name(name: &str) -> Option<Generation> {
        let base = name.split('-').next().unwrap_or(name);
        Generation::ALL.into_iter().find(|g| g.name() == base)
    }

    /// The TCB_VERSION byte layout of this generation (§3.4).
    pub fn tcb_layout(self) -> TcbLayout {
        match self {
            Generation::Milan | Generation::Genoa => TcbLayout::MilanGenoa,
            Generation::Turin => TcbLayout::Turin,
        }
    }

    /// Generation from the report's CPUID bytes (v3+): combined family and model (§3.2).
    pub fn from_cpuid(family: u8, model: u8) -> Option<Generation> {
        match (family, model) {
            (0x19, 0x00..=0x0F) => Some(Generation::Milan),
            (0x19, 0x10..=0x1F) | (0x19, 0xA0..=0xAF) => Some(Generation::Genoa),
            (0x1A, 0x00..=0x11) => Some(Generation::Turin),
            _ => None,
        }
    }
}

impl std::fmt::Display for Generation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What a v2 report's CHIP_ID says about its generation (v2 has no CPUID bytes, §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ChipIdShape {
    /// All 64 bytes zero (MASK_CHIP_ID or a VLEK-signed report): no information.
    Masked,
    /// 8 significant bytes then 56 zero bytes: Turin-style.
    TurinStyle,
    /// Significant bytes beyond the first 8: Milan or Genoa (same TCB layout).
    MilanGenoaStyle,
}

impl ChipIdShape {
    /// Classifies a 64-byte CHIP_ID.
    pub fn of(chip_id: &[u8; 64]) -> ChipIdShape {
        if chip_id.iter().all(|b| *b == 0) {
            ChipIdShape::Masked
        } else if chip_id[8..].iter().all(|b| *b == 0) {
            ChipIdShape::TurinStyle
        } else {
            ChipIdShape::MilanGenoaStyle
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpuid_ranges_follow_protocols_3_2() {
        assert_eq!(Generation::from_cpuid(0x19, 0x01), Some(Generation::Milan));
        assert_eq!(Generation::from_cpuid(0x19, 0x11), Some(Generation::Genoa));
        assert_eq!(Generation::from_cpuid(0x19, 0xA0), Some(Generation::Genoa));
        assert_eq!(Generation::from_cpuid(0x1A, 0x02), Some(Generation::Turin));
        assert_eq!(Generation::from_cpuid(0x1A, 0x50), None);
        assert_eq!(Generation::from_cpuid(0x17, 0x31), None);
    }

    #[test]
    fn product_names_with_and_without_stepping() {
        assert_eq!(
            Generation::from_product_name("Milan-B0"),
            Some(Generation::Milan)
        );
        assert_eq!(
            Generation::from_product_name("Genoa"),
            Some(Generation::Genoa)
        );
        assert_eq!(
            Generation::from_product_name("Turin"),
            Some(Generation::Turin)
        );
        assert_eq!(Generation::from_product_name("milan"), None);
        assert_eq!(Generation::from_product_name("Venice"), None);
    }

    #[test]
    fn chip_id_shapes() {
        let mut c = [0u8; 64];
        assert_eq!(ChipIdShape::of(&c), ChipIdShape::Masked);
        c[0] = 1;
        assert_eq!(ChipIdShape::of(&c), ChipIdShape::TurinStyle);
        c[63] = 1;
        assert_eq!(ChipIdShape::of(&c), ChipIdShape::MilanGenoaStyle);
    }
}
