//! The report's bitfields: guest POLICY, PLATFORM_INFO and KEY_INFO (PROTOCOLS.md §3.2, §3.3).
//!
//! Decoding never fails: reserved or unknown bits are surfaced (`reserved_bits`,
//! `unknown_bits`) for policy code to judge, because real hardware sets bits the reference
//! libraries call reserved (PLATFORM_INFO bit 6 on Turin, §3.3).

use serde::Serialize;

/// Guest POLICY (u64 at 0x008).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct GuestPolicy {
    /// Raw value.
    pub raw: u64,
    /// Bits 7:0, minimum ABI minor version.
    pub abi_minor: u8,
    /// Bits 15:8, minimum ABI major version.
    pub abi_major: u8,
    /// Bit 16: SMT allowed.
    pub smt_allowed: bool,
    /// Bit 17: reserved, must be 1 (surfaced, not enforced here).
    pub reserved_bit17_set: bool,
    /// Bit 18: association with a migration agent allowed.
    pub migrate_ma_allowed: bool,
    /// Bit 19: debugging allowed (production policy must refuse it).
    pub debug_allowed: bool,
    /// Bit 20: single socket only.
    pub single_socket: bool,
    /// Bit 21: CXL may be populated with devices or memory.
    pub cxl_allowed: bool,
    /// Bit 22: AES-256-XTS required for memory encryption.
    pub mem_aes_256_xts: bool,
    /// Bit 23: running power limits (RAPL) must be disabled.
    pub rapl_disabled: bool,
    /// Bit 24: ciphertext hiding must be enabled.
    pub ciphertext_hiding: bool,
    /// Bit 25: page swap disabled.
    pub page_swap_disabled: bool,
    /// Bits 63:26 (must be zero), as they appear in `raw`.
    pub reserved_bits: u64,
}

impl GuestPolicy {
    /// Decodes a raw POLICY value.
    pub fn from_raw(raw: u64) -> GuestPolicy {
        let bit = |n: u32| raw & (1u64 << n) != 0;
        GuestPolicy {
            raw,
            abi_minor: (raw & 0xff) as u8,
            abi_major: ((raw >> 8) & 0xff) as u8,
            smt_allowed: bit(16),
            reserved_bit17_set: bit(17),
            migrate_ma_allowed: bit(18),
            debug_allowed: bit(19),
            single_socket: bit(20),
            cxl_allowed: bit(21),
            mem_aes_256_xts: bit(22),
            rapl_disabled: bit(23),
            ciphertext_hiding: bit(24),
            page_swap_disabled: bit(25),
            reserved_bits: raw & !((1u64 << 26) - 1),
        }
    }
}

/// PLATFORM_INFO (u64 at 0x040).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PlatformInfo {
    /// Raw value.
    pub raw: u64,
    /// Bit 0: SMT enabled on the platform.
    pub smt_enabled: bool,
    /// Bit 1: TSME enabled.
    pub tsme_enabled: bool,
    /// Bit 2: ECC memory in use.
    pub ecc_enabled: bool,
    /// Bit 3: RAPL disabled.
    pub rapl_disabled: bool,
    /// Bit 4: ciphertext hiding enabled.
    pub ciphertext_hiding_enabled: bool,
    /// Bit 5: alias check complete (v3+).
    pub alias_check_complete: bool,
    /// Bit 7: SEV-TIO enabled (v5).
    pub sev_tio_enabled: bool,
    /// Every bit not named above (bit 6 and 8..63), as they appear in `raw`.
    pub unknown_bits: u64,
}

impl PlatformInfo {
    /// Bits with a name in this struct.
    pub const KNOWN_BITS: u64 = 0b1011_1111;

    /// Decodes a raw PLATFORM_INFO value; unknown bits are kept in `unknown_bits`.
    pub fn from_raw(raw: u64) -> PlatformInfo {
        let bit = |n: u32| raw & (1u64 << n) != 0;
        PlatformInfo {
            raw,
            smt_enabled: bit(0),
            tsme_enabled: bit(1),
            ecc_enabled: bit(2),
            rapl_disabled: bit(3),
            ciphertext_hiding_enabled: bit(4),
            alias_check_complete: bit(5),
            sev_tio_enabled: bit(7),
            unknown_bits: raw & !Self::KNOWN_BITS,
        }
    }
}

/// Which key signed the report (KEY_INFO bits 4:2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum SigningKey {
    /// 0: Versioned Chip Endorsement Key.
    Vcek,
    /// 1: Versioned Loaded Endorsement Key.
    Vlek,
    /// 7: no key, the report is unsigned.
    None,
    /// 2..=6: reserved.
    Reserved(u8),
}

impl SigningKey {
    /// From the 3-bit field value.
    pub fn from_bits(v: u8) -> SigningKey {
        match v & 0x7 {
            0 => SigningKey::Vcek,
            1 => SigningKey::Vlek,
            7 => SigningKey::None,
            other => SigningKey::Reserved(other),
        }
    }

    /// The 3-bit field value.
    pub fn bits(self) -> u8 {
        match self {
            SigningKey::Vcek => 0,
            SigningKey::Vlek => 1,
            SigningKey::None => 7,
            SigningKey::Reserved(v) => v,
        }
    }

    /// `vcek`, `vlek`, `none` or `reserved-N` (JSON form).
    pub fn as_str(self) -> &'static str {
        match self {
            SigningKey::Vcek => "vcek",
            SigningKey::Vlek => "vlek",
            SigningKey::None => "none",
            SigningKey::Reserved(2) => "reserved-2",
            SigningKey::Reserved(3) => "reserved-3",
            SigningKey::Reserved(4) => "reserved-4",
            SigningKey::Reserved(5) => "reserved-5",
            SigningKey::Reserved(_) => "reserved-6",
        }
    }
}

/// KEY_INFO (u32 at 0x048).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct KeyInfo {
    /// Raw value.
    pub raw: u32,
    /// Bit 0: the author key digest is present (AUTHOR_KEY_EN).
    pub author_key_en: bool,
    /// Bit 1: MASK_CHIP_KEY (signature zeroed).
    pub mask_chip_key: bool,
    /// Bits 4:2: signing key.
    pub signing_key: SigningKey,
    /// Bits 31:5 (reserved), as they appear in `raw`.
    pub reserved_bits: u32,
}

impl KeyInfo {
    /// Decodes a raw KEY_INFO value.
    pub fn from_raw(raw: u32) -> KeyInfo {
        KeyInfo {
            raw,
            author_key_en: raw & 1 != 0,
            mask_chip_key: raw & 2 != 0,
            signing_key: SigningKey::from_bits(((raw >> 2) & 0x7) as u8),
            reserved_bits: raw & !0x1f,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_examples_from_protocols_3_3() {
        // §3.3: 0x3001f = ABI 0.31, SMT, bit 17; 0xb001f adds DEBUG (bit 19).
        let p = GuestPolicy::from_raw(0x3001f);
        assert_eq!((p.abi_major, p.abi_minor), (0, 31));
        assert!(p.smt_allowed && p.reserved_bit17_set && !p.debug_allowed);
        assert_eq!(p.reserved_bits, 0);
        let d = GuestPolicy::from_raw(0xb001f);
        assert!(d.debug_allowed);
        let r = GuestPolicy::from_raw(1 << 40 | 1 << 25);
        assert!(r.page_swap_disabled);
        assert_eq!(r.reserved_bits, 1 << 40);
        assert!(!r.reserved_bit17_set);
    }

    #[test]
    fn platform_info_bit6_is_surfaced_not_fatal() {
        // §3.3: real Turin PLATFORM_INFO 0x67 = bits 0,1,2,5,6.
        let p = PlatformInfo::from_raw(0x67);
        assert!(p.smt_enabled && p.tsme_enabled && p.ecc_enabled && p.alias_check_complete);
        assert!(!p.rapl_disabled && !p.sev_tio_enabled);
        assert_eq!(p.unknown_bits, 0x40);
    }

    #[test]
    fn key_info_values() {
        // §3.2 [verified]: VCEK-signed 0x0, VLEK-signed 0x4.
        assert_eq!(KeyInfo::from_raw(0).signing_key, SigningKey::Vcek);
        assert_eq!(KeyInfo::from_raw(4).signing_key, SigningKey::Vlek);
        assert_eq!(KeyInfo::from_raw(7 << 2).signing_key, SigningKey::None);
        assert_eq!(
            KeyInfo::from_raw(3 << 2).signing_key,
            SigningKey::Reserved(3)
        );
        let k = KeyInfo::from_raw(0x23);
        assert!(k.author_key_en && k.mask_chip_key);
        assert_eq!(k.reserved_bits, 0x20);
    }
}
