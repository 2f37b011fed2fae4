//! Checks against a real header made by cryptsetup 2.6.1 (tests/fixtures/luks2/PROVENANCE.md:
//! expected values from `cryptsetup luksDump`) and tampered variants of it, one per attack a
//! malicious host can mount on unauthenticated LUKS2 metadata.

use serde_json::{json, Value};

use super::*;

const REAL: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/luks2/aes-xts-512.hdr"
));
const UUID: &str = "6f0e2d5a-1c3b-4a7e-9b1d-2f4c6e8a0b13";
const HDR: u64 = 16384;

fn doc() -> Value {
    serde_json::from_slice(binary::json_text(&REAL[..HDR as usize])).unwrap()
}

/// Both copies rewritten with the metadata `edit` makes of the real one (checksums valid, as a
/// host recomputes them).
fn tampered(edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut d = doc();
    edit(&mut d);
    let json = serde_json::to_vec(&d).unwrap();
    let mut out = binary::with_json(&REAL[..HDR as usize], &json, Copy::Primary).unwrap();
    out.extend(binary::with_json(&REAL[HDR as usize..], &json, Copy::Secondary).unwrap());
    out
}

fn refusal(headers: &[u8]) -> String {
    match check(headers, HDR, UUID) {
        Err(HeaderError::Refused { what, .. }) => what,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn the_real_header_passes_with_luksdump_s_values() {
    assert_eq!(binary::primary_hdr_size(REAL).unwrap(), HDR);
    let c = check(REAL, HDR, UUID).unwrap();
    assert_eq!(c.binary.uuid, UUID);
    assert_eq!(c.metadata.cipher, "aes-xts-plain64");
    assert_eq!(c.metadata.key_bits, 512);
    assert_eq!(c.metadata.sector_size, 4096);
    assert_eq!(c.metadata.data_offset, 16_777_216);
    assert_eq!(c.metadata.keyslots_size, 16_744_448);
    assert_eq!(c.detached_len(), 2 * 16384 + 16_744_448);
    assert_eq!(c.metadata.keyslot_areas.len(), 1);
    // Upper-case UUID in the configuration is the same UUID.
    assert!(check(REAL, HDR, &UUID.to_uppercase()).is_ok());
}

#[test]
fn the_detached_pair_checks_the_same_and_keeps_the_real_checksum_rule() {
    let c = check(REAL, HDR, UUID).unwrap();
    let pair = c.header_pair().unwrap();
    assert_eq!(pair.len(), 2 * HDR as usize);
    let again = check(&pair, HDR, UUID).unwrap();
    assert_eq!(again.metadata, c.metadata);
    assert_eq!(again.binary.seqid, c.binary.seqid);
    assert_eq!(&pair[..6], binary::MAGIC_PRIMARY);
    assert_eq!(
        &pair[HDR as usize..HDR as usize + 6],
        binary::MAGIC_SECONDARY
    );
}

#[test]
fn a_uuid_other_than_the_configured_one_is_refused() {
    let e = check(REAL, HDR, "00000000-0000-4000-8000-000000000000").unwrap_err();
    assert_eq!(e.code(), "luks-header-uuid-mismatch");
}

#[test]
fn a_null_or_weak_data_cipher_is_refused() {
    for cipher in [
        "cipher_null-ecb",
        "aes-ecb",
        "aes-cbc-plain",
        "aes-xts-plain",
    ] {
        let h = tampered(|d| d["segments"]["0"]["encryption"] = json!(cipher));
        assert_eq!(refusal(&h), "cipher", "{cipher}");
    }
    // The real cipher with a 128-bit key pair (--key-size 256) is fine; 128 bits total is not.
    let h = tampered(|d| d["keyslots"]["0"]["key_size"] = json!(32));
    assert!(check(&h, HDR, UUID).is_ok());
    let h = tampered(|d| d["keyslots"]["0"]["key_size"] = json!(16));
    assert_eq!(refusal(&h), "cipher");
}

#[test]
fn reencryption_states_are_refused() {
    // A plaintext segment next to the encrypted one (online reencryption, CVE-2021-4122).
    let h = tampered(|d| {
        d["segments"]["1"] = json!({"type": "linear", "offset": "16777216", "size": "dynamic"});
    });
    assert_eq!(refusal(&h), "segments");
    let h = tampered(|d| d["segments"]["0"]["type"] = json!("linear"));
    assert_eq!(refusal(&h), "segment");
    let h = tampered(|d| {
        d["config"]["requirements"] = json!({"mandatory": ["online-reencrypt-v2"]});
    });
    assert_eq!(refusal(&h), "requirements");
    let h = tampered(|d| d["segments"]["0"]["flags"] = json!(["backup-previous"]));
    assert_eq!(refusal(&h), "segment");
    let h = tampered(|d| d["keyslots"]["0"]["type"] = json!("reencrypt"));
    assert_eq!(refusal(&h), "keyslot");
}

#[test]
fn integrity_discards_tweaks_and_layout_tricks_are_refused() {
    let h = tampered(|d| {
        d["segments"]["0"]["integrity"] = json!({"type": "hmac(sha256)", "journal_encryption": "none", "journal_integrity": "none"});
    });
    assert_eq!(refusal(&h), "segment");
    let h = tampered(|d| d["config"]["flags"] = json!(["allow-discards"]));
    assert_eq!(refusal(&h), "flags");
    let h = tampered(|d| d["config"]["flags"] = json!(["no-read-workqueue"]));
    assert!(check(&h, HDR, UUID).is_ok());
    let h = tampered(|d| d["segments"]["0"]["iv_tweak"] = json!("8"));
    assert_eq!(refusal(&h), "segment");
    // Data over the header and keyslots.
    let h = tampered(|d| d["segments"]["0"]["offset"] = json!("32768"));
    assert_eq!(refusal(&h), "layout");
    let h = tampered(|d| d["keyslots"]["0"]["area"]["offset"] = json!("4096"));
    assert_eq!(refusal(&h), "layout");
}

#[test]
fn a_null_keyslot_and_digest_tricks_are_refused() {
    let h = tampered(|d| d["keyslots"]["0"]["area"]["encryption"] = json!("cipher_null-ecb"));
    assert_eq!(refusal(&h), "keyslot");
    let h = tampered(|d| d["digests"]["0"]["segments"] = json!([]));
    assert_eq!(refusal(&h), "digests");
    let h = tampered(|d| d["digests"]["0"]["keyslots"] = json!([]));
    assert_eq!(refusal(&h), "digests");
    let h = tampered(|d| {
        let copy = d["digests"]["0"].clone();
        d["digests"]["1"] = copy;
    });
    assert_eq!(refusal(&h), "digests");
}

#[test]
fn duplicate_members_are_refused_and_the_detached_copy_is_skrd_s_serialisation() {
    // A host can write a member twice; json-c and serde_json might each pick another one.
    let mut d = doc();
    d["segments"]["0"]["encryption"] = json!("DUPLICATE");
    let text = serde_json::to_string(&d).unwrap().replace(
        "\"encryption\":\"DUPLICATE\"",
        "\"encryption\":\"cipher_null-ecb\",\"encryption\":\"aes-xts-plain64\"",
    );
    let mut h = binary::with_json(&REAL[..HDR as usize], text.as_bytes(), Copy::Primary).unwrap();
    h.extend(binary::with_json(&REAL[HDR as usize..], text.as_bytes(), Copy::Secondary).unwrap());
    let e = check(&h, HDR, UUID).unwrap_err();
    assert_eq!(e.code(), "luks-header-damaged", "{e}");
    // Bytes after the JSON's terminating NUL never reach the detached copy.
    let mut tail = REAL.to_vec();
    let end = binary::BINARY_LEN + binary::json_text(&REAL[..HDR as usize]).len();
    tail[end + 1..end + 9].copy_from_slice(b"GARBAGE!");
    let sum = binary::checksum(&tail[..HDR as usize]);
    tail[448..512].copy_from_slice(&sum);
    let c = check(&tail, HDR, UUID).unwrap();
    assert_eq!(c.binary.copy, Copy::Primary);
    let pair = c.header_pair().unwrap();
    assert!(!pair.windows(8).any(|w| w == b"GARBAGE!"));
}

#[test]
fn copies_checksums_and_structure() {
    // A damaged primary: the valid secondary is used.
    let mut h = REAL.to_vec();
    h[5000] ^= 1;
    let c = check(&h, HDR, UUID).unwrap();
    assert_eq!(c.binary.copy, Copy::Secondary);
    // Both damaged: refused as damaged.
    h[HDR as usize + 5000] ^= 1;
    assert_eq!(
        check(&h, HDR, UUID).unwrap_err().code(),
        "luks-header-damaged"
    );
    // Two valid copies, same sequence number, different metadata.
    let good = tampered(|_| {});
    let bad = tampered(|d| d["segments"]["0"]["encryption"] = json!("cipher_null-ecb"));
    let mut mixed = good[..HDR as usize].to_vec();
    mixed.extend_from_slice(&bad[HDR as usize..]);
    assert_eq!(
        check(&mixed, HDR, UUID).unwrap_err().code(),
        "luks-header-copies-disagree"
    );
    // Not LUKS2 / truncated / wrong sizes.
    assert_eq!(
        binary::primary_hdr_size(&[0u8; 4096]).unwrap_err().code(),
        "luks-header-not-luks2"
    );
    let mut v1 = REAL.to_vec();
    v1[7] = 1;
    assert_eq!(
        binary::primary_hdr_size(&v1).unwrap_err().code(),
        "luks-header-not-luks2"
    );
    let mut odd = REAL.to_vec();
    odd[8..16].copy_from_slice(&12345u64.to_be_bytes());
    assert_eq!(
        binary::primary_hdr_size(&odd).unwrap_err().code(),
        "luks-header-damaged"
    );
    assert_eq!(
        check(&REAL[..20000], HDR, UUID).unwrap_err().code(),
        "luks-header-damaged"
    );
    let h = tampered(|d| d["config"]["json_size"] = json!("4096"));
    assert_eq!(
        check(&h, HDR, UUID).unwrap_err().code(),
        "luks-header-damaged"
    );
}

#[test]
fn arbitrary_bytes_never_panic() {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for n in 0..300 {
        let mut h = REAL.to_vec();
        for _ in 0..(1 + n % 8) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let i = (seed as usize) % h.len();
            h[i] = (seed >> 32) as u8;
        }
        let _ = check(&h, HDR, UUID);
        let _ = binary::primary_hdr_size(&h);
    }
}
