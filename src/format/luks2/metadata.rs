//! The LUKS2 JSON metadata (LUKS2 on-disk format specification §3) judged against what skrd
//! will let a volume be opened with. The metadata is NOT authenticated (an unkeyed checksum the
//! host can recompute), so a malicious host can keep the genuine keyslot — our passphrase still
//! opens it — and change how data is encrypted: a `cipher_null` or weak data segment, an
//! "online reencryption" with a plaintext (`linear`) segment, a data offset over the header,
//! or persistent activation flags such as `allow-discards` (Trail of Bits, "Vulnerabilities in
//! LUKS2 disk encryption for confidential VMs", 2025; CVE-2025-59054, CVE-2021-4122). Every
//! such change is refused here, before a key is handed out. PURE: JSON in, verdict out.

use serde_json::{Map, Value};

use super::HeaderError;

/// Data-segment ciphers a volume may use: XTS with a 128- or 256-bit block cipher key pair
/// (`--key-size 256` or `512`, the LUKS2 default being aes-xts-plain64 with 512 bits).
pub const ALLOWED_CIPHERS: [&str; 3] = [
    "aes-xts-plain64",
    "serpent-xts-plain64",
    "twofish-xts-plain64",
];
/// Volume key sizes (bytes) allowed with those ciphers.
pub const ALLOWED_KEY_BYTES: [u64; 2] = [32, 64];
/// Persistent activation flags allowed (performance only); anything else is refused, in
/// particular `allow-discards`, which shows the host which blocks are in use.
pub const ALLOWED_FLAGS: [&str; 5] = [
    "no-read-workqueue",
    "no-write-workqueue",
    "same-cpu-crypt",
    "submit-from-crypt-cpus",
    "high-priority",
];

/// What a checked header says about the volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedMetadata {
    /// The data segment's cipher.
    pub cipher: String,
    /// The volume key size, bits.
    pub key_bits: u64,
    /// Data sector size, bytes.
    pub sector_size: u64,
    /// Data offset, bytes.
    pub data_offset: u64,
    /// Length of the keyslots area (after the two header copies).
    pub keyslots_size: u64,
    /// Every keyslot's area: (offset, size) in bytes from the start of the device.
    pub keyslot_areas: Vec<(u64, u64)>,
}

fn refused(what: &str, reason: impl Into<String>) -> HeaderError {
    HeaderError::Refused {
        what: what.to_string(),
        reason: reason.into(),
    }
}

fn object<'a>(v: &'a Value, name: &str) -> Result<&'a Map<String, Value>, HeaderError> {
    v.get(name)
        .and_then(Value::as_object)
        .ok_or_else(|| HeaderError::Damaged {
            reason: format!("the metadata has no `{name}` object"),
        })
}

/// A LUKS2 64-bit number: a decimal string (offsets and sizes) or a JSON number.
fn number(v: Option<&Value>, what: &str) -> Result<u64, HeaderError> {
    match v {
        Some(Value::String(s)) => s.parse().ok(),
        Some(Value::Number(n)) => n.as_u64(),
        _ => None,
    }
    .ok_or_else(|| HeaderError::Damaged {
        reason: format!("{what} is missing or not a number"),
    })
}

fn text<'a>(v: &'a Value, name: &str, what: &str) -> Result<&'a str, HeaderError> {
    v.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| HeaderError::Damaged {
            reason: format!("{what} has no `{name}`"),
        })
}

fn ids(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn is_null_cipher(cipher: &str) -> bool {
    cipher.starts_with("cipher_null") || cipher == "null"
}

/// Checks the metadata `json` of a header of `hdr_size` bytes; returns the verdict and the
/// metadata serialised again from what was parsed.
pub fn check(json: &[u8], hdr_size: u64) -> Result<(CheckedMetadata, Vec<u8>), HeaderError> {
    // Strict: a member written twice is refused (json-c and serde_json could each pick one).
    let doc: Value = crate::format::json::parse_strict(json).map_err(|e| HeaderError::Damaged {
        reason: format!("the metadata is not strict JSON: {e}"),
    })?;
    let config = object(&doc, "config")?;
    let keyslots_size = number(config.get("keyslots_size"), "config.keyslots_size")?;
    let json_size = number(config.get("json_size"), "config.json_size")?;
    if json_size != hdr_size - super::binary::BINARY_LEN as u64 {
        return Err(HeaderError::Damaged {
            reason: format!("config.json_size {json_size} does not fit a {hdr_size}-byte header"),
        });
    }
    if let Some(req) = config.get("requirements") {
        let mandatory = ids(req.get("mandatory"));
        if !mandatory.is_empty() {
            return Err(refused(
                "requirements",
                format!(
                    "the header requires {} (an interrupted or pending reencryption can leave data in plaintext)",
                    mandatory.join(", ")
                ),
            ));
        }
    }
    for flag in ids(config.get("flags")) {
        if !ALLOWED_FLAGS.contains(&flag.as_str()) {
            return Err(refused(
                "flags",
                format!(
                    "persistent activation flag {flag:?} is not allowed (allowed: {})",
                    ALLOWED_FLAGS.join(", ")
                ),
            ));
        }
    }
    let area_start = 2 * hdr_size;
    let area_end = area_start
        .checked_add(keyslots_size)
        .ok_or_else(|| HeaderError::Damaged {
            reason: "config.keyslots_size overflows".into(),
        })?;

    // Exactly one data segment: "0", type crypt, an allowed cipher, no integrity, no flags.
    let segments = object(&doc, "segments")?;
    if segments.len() != 1 || !segments.contains_key("0") {
        let names: Vec<&str> = segments.keys().map(String::as_str).collect();
        return Err(refused(
            "segments",
            format!("expected exactly one data segment \"0\", found [{}] (a reencryption in progress or a crafted header)", names.join(", ")),
        ));
    }
    let seg = &segments["0"];
    let seg_type = text(seg, "type", "segment 0")?;
    if seg_type != "crypt" {
        return Err(refused("segment", format!("segment 0 is of type {seg_type:?}, not \"crypt\" (its data would not be encrypted)")));
    }
    let cipher = text(seg, "encryption", "segment 0")?.to_string();
    if !ALLOWED_CIPHERS.contains(&cipher.as_str()) {
        return Err(refused(
            "cipher",
            format!(
                "segment 0 uses {cipher:?}; allowed: {}",
                ALLOWED_CIPHERS.join(", ")
            ),
        ));
    }
    if seg.get("integrity").is_some() {
        return Err(refused(
            "segment",
            "segment 0 carries an integrity section skrd does not check",
        ));
    }
    if !ids(seg.get("flags")).is_empty() {
        return Err(refused(
            "segment",
            "segment 0 carries flags (reencryption backup segments)",
        ));
    }
    if number(seg.get("iv_tweak"), "segment 0 iv_tweak")? != 0 {
        return Err(refused(
            "segment",
            "segment 0 has a non-zero iv_tweak (sector tweaks would repeat)",
        ));
    }
    let sector_size = number(seg.get("sector_size"), "segment 0 sector_size")?;
    if ![512, 1024, 2048, 4096].contains(&sector_size) {
        return Err(HeaderError::Damaged {
            reason: format!("segment 0 sector size {sector_size}"),
        });
    }
    let data_offset = number(seg.get("offset"), "segment 0 offset")?;
    if data_offset < area_end {
        return Err(refused(
            "layout",
            format!("the data starts at byte {data_offset}, inside the header and keyslots (which end at {area_end})"),
        ));
    }

    // One digest, covering segment 0; the key size of its keyslots is the volume key size.
    let digests = object(&doc, "digests")?;
    if digests.len() != 1 {
        return Err(refused(
            "digests",
            format!("expected one digest, found {}", digests.len()),
        ));
    }
    let (_, digest) = digests
        .iter()
        .next()
        .ok_or_else(|| refused("digests", "no digest"))?;
    if text(digest, "type", "the digest")? != "pbkdf2" {
        return Err(refused("digests", "the digest is not pbkdf2"));
    }
    if ids(digest.get("segments")) != ["0"] {
        return Err(refused(
            "digests",
            "the digest does not cover exactly segment 0",
        ));
    }
    let bound: Vec<String> = ids(digest.get("keyslots"));

    let keyslots = object(&doc, "keyslots")?;
    let mut keyslot_areas = Vec::new();
    let mut key_bytes = None;
    for (id, ks) in keyslots {
        let what = format!("keyslot {id}");
        let ks_type = text(ks, "type", &what)?;
        if ks_type != "luks2" {
            return Err(refused(
                "keyslot",
                format!("{what} is of type {ks_type:?} (reencryption keyslots are not accepted)"),
            ));
        }
        let area = ks.get("area").ok_or_else(|| HeaderError::Damaged {
            reason: format!("{what} has no area"),
        })?;
        if text(area, "type", &what)? != "raw" {
            return Err(refused("keyslot", format!("{what} area is not raw")));
        }
        let enc = text(area, "encryption", &what)?;
        if is_null_cipher(enc) {
            return Err(refused(
                "keyslot",
                format!("{what} is \"encrypted\" with {enc} (any passphrase would open it)"),
            ));
        }
        let offset = number(area.get("offset"), &format!("{what} area offset"))?;
        let size = number(area.get("size"), &format!("{what} area size"))?;
        if offset < area_start || offset.checked_add(size).is_none_or(|end| end > area_end) {
            return Err(refused(
                "layout",
                format!("{what} area [{offset}, +{size}) lies outside the keyslots area"),
            ));
        }
        keyslot_areas.push((offset, size));
        if bound.iter().any(|b| b == id) {
            let k = number(ks.get("key_size"), &format!("{what} key_size"))?;
            if key_bytes.is_some_and(|prev| prev != k) {
                return Err(refused(
                    "keyslot",
                    "keyslots of the digest disagree on the key size",
                ));
            }
            key_bytes = Some(k);
        }
    }
    let key_bytes = key_bytes
        .ok_or_else(|| refused("digests", "no keyslot is bound to the volume key digest"))?;
    if !ALLOWED_KEY_BYTES.contains(&key_bytes) {
        return Err(refused(
            "cipher",
            format!(
                "the volume key has {} bits; allowed: 256 or 512",
                key_bytes * 8
            ),
        ));
    }
    let canonical = serde_json::to_vec(&doc).map_err(|e| HeaderError::Damaged {
        reason: format!("the metadata cannot be serialised again: {e}"),
    })?;
    Ok((
        CheckedMetadata {
            cipher,
            key_bits: key_bytes * 8,
            sector_size,
            data_offset,
            keyslots_size,
            keyslot_areas,
        },
        canonical,
    ))
}
