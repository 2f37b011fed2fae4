//! Whether a LUKS2 volume is open, seen from sysfs: skrd.service runs with `PrivateDevices=yes`,
//! so `/dev/mapper` shows nothing, but `/sys/class/block/dm-N/dm/uuid` stays readable. For a
//! mapping made by libcryptsetup (systemd-cryptsetup, `cryptsetup open`) that file holds
//! `CRYPT-LUKS2-<LUKS UUID without dashes>-<mapping name>` (libcryptsetup's `dm_prepare_uuid`).
//! A configured volume is open when a mapping carries both its LUKS UUID and its name (the
//! crypttab name, which is the volume's name in the configuration).
//!
//! [`parse_dm_uuid`] is pure; [`active_luks2`] reads a sysfs tree whose root is passed in
//! (`/sys` in production, a directory of files in tests).

use std::path::Path;

use uuid::Uuid;

/// The LUKS UUID and mapping name of a device-mapper UUID written by libcryptsetup for a
/// LUKS2 mapping (`CRYPT-LUKS2-<32 hex digits>-<name>`, trailing newline allowed); `None` for
/// anything else (other targets, LUKS1, plain dm-crypt, dm-integrity sub-devices).
pub fn parse_dm_uuid(text: &str) -> Option<(Uuid, &str)> {
    let rest = text
        .trim_end_matches(['\n', '\0'])
        .strip_prefix("CRYPT-LUKS2-")?;
    let hex = rest.get(..32)?;
    let name = rest.get(32..)?.strip_prefix('-')?;
    if name.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let uuid = Uuid::try_parse(hex).ok()?;
    Some((uuid, name))
}

/// Every open LUKS2 mapping under `sysfs` (`<sysfs>/class/block/*/dm/uuid`): (LUKS UUID,
/// mapping name). Unreadable entries are skipped: this only feeds the status.
pub fn active_luks2(sysfs: &Path) -> Vec<(Uuid, String)> {
    let Ok(dir) = std::fs::read_dir(sysfs.join("class/block")) else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| {
            // Only the first 256 bytes: a dm uuid is at most 128.
            let text = read_small(&e.path().join("dm/uuid"))?;
            parse_dm_uuid(&text).map(|(u, n)| (u, n.to_string()))
        })
        .collect()
}

fn read_small(path: &Path) -> Option<String> {
    use std::io::Read;
    let mut buf = Vec::new();
    std::fs::File::open(path)
        .ok()?
        .take(256)
        .read_to_end(&mut buf)
        .ok()?;
    String::from_utf8(buf).ok()
}

/// Whether `(uuid, name)` is among `active`.
pub fn is_open(active: &[(Uuid, String)], uuid: &Uuid, name: &str) -> bool {
    active.iter().any(|(u, n)| u == uuid && n == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    const UUID: &str = "3f1e2d4c-5b6a-4798-8a1b-2c3d4e5f6a7b";

    #[test]
    fn parses_what_libcryptsetup_writes() {
        let u = Uuid::parse_str(UUID).unwrap();
        assert_eq!(
            parse_dm_uuid("CRYPT-LUKS2-3f1e2d4c5b6a47988a1b2c3d4e5f6a7b-data\n"),
            Some((u, "data"))
        );
        // Names may hold dashes; the hex part has a fixed length.
        assert_eq!(
            parse_dm_uuid("CRYPT-LUKS2-3F1E2D4C5B6A47988A1B2C3D4E5F6A7B-luks-data-1"),
            Some((u, "luks-data-1"))
        );
        for other in [
            "CRYPT-LUKS1-3f1e2d4c5b6a47988a1b2c3d4e5f6a7b-data",
            "CRYPT-PLAIN-data",
            "CRYPT-LUKS2-3f1e2d4c5b6a47988a1b2c3d4e5f6a7b-",
            "CRYPT-LUKS2-3f1e2d4c5b6a47988a1b2c3d4e5f6a7bdata",
            "CRYPT-LUKS2-3f1e2d4c5b6a47988a1b2c3d4e5f6a7-data",
            "CRYPT-LUKS2-zz1e2d4c5b6a47988a1b2c3d4e5f6a7b-data",
            "LVM-abcdef",
            "",
        ] {
            assert_eq!(parse_dm_uuid(other), None, "{other}");
        }
    }

    fn dm(root: &Path, dev: &str, uuid: &str) {
        let d = root.join("class/block").join(dev).join("dm");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("uuid"), uuid).unwrap();
    }

    #[test]
    fn reads_a_sysfs_tree() {
        let root = tempfile::tempdir().unwrap();
        assert!(active_luks2(root.path()).is_empty());
        dm(
            root.path(),
            "dm-0",
            "CRYPT-LUKS2-3f1e2d4c5b6a47988a1b2c3d4e5f6a7b-data\n",
        );
        dm(root.path(), "dm-1", "LVM-Xy12\n");
        // A whole disk without dm/ (sda), and a dm device without a uuid file.
        std::fs::create_dir_all(root.path().join("class/block/sda")).unwrap();
        std::fs::create_dir_all(root.path().join("class/block/dm-2/dm")).unwrap();
        let active = active_luks2(root.path());
        let u = Uuid::parse_str(UUID).unwrap();
        assert_eq!(active, vec![(u, "data".to_string())]);
        assert!(is_open(&active, &u, "data"));
        // The same LUKS UUID under another name, or another UUID under this name: not open.
        assert!(!is_open(&active, &u, "logs"));
        assert!(!is_open(&active, &Uuid::nil(), "data"));
    }
}
