//! Harness for the volume tests: LUKS2 image files made and inspected with the independent
//! `cryptsetup` CLI (never with skrd's own code), and the per-volume passphrase computed
//! independently with python3's `cryptography` HKDF.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;
use skrd::secret::Secret;
use skrd::volume::VolumeSpec;

/// The recovery passphrase of every test image.
pub const RECOVERY: &str = "correct horse battery staple";
/// Key URL (without version) of the test specs.
pub const KEY_URL: &str = "https://contoso.vault.azure.net/keys/disk";

/// Runs a command with `stdin`, returning (success, stdout, stderr).
pub fn run(cmd: &str, args: &[&str], stdin: &[u8]) -> (bool, String, String) {
    let mut child = Command::new(cmd)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e}; `make deps` installs cryptsetup-bin"));
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A fresh 32 MiB LUKS2 image (PBKDF2-1000 recovery slot 0 for speed) with UUID `uuid`
/// (random when `None`); returns its path and UUID.
pub fn luks2_image(dir: &Path, name: &str, uuid: Option<&str>) -> (PathBuf, String) {
    luks_image(dir, name, uuid, "luks2")
}

/// Like [`luks2_image`] with another `--type` (luks1).
pub fn luks_image(dir: &Path, name: &str, uuid: Option<&str>, ty: &str) -> (PathBuf, String) {
    let img = dir.join(format!("{name}.img"));
    let f = std::fs::File::create(&img).unwrap();
    f.set_len(32 << 20).unwrap();
    drop(f);
    let img_s = img.to_str().unwrap();
    let mut args = vec![
        "luksFormat",
        "--batch-mode",
        "--type",
        ty,
        "--pbkdf",
        "pbkdf2",
        "--pbkdf-force-iterations",
        "1000",
        "--key-file",
        "-",
    ];
    let uuid_arg;
    if let Some(u) = uuid {
        uuid_arg = format!("--uuid={u}");
        args.push(&uuid_arg);
    }
    args.push(img_s);
    let (ok, _, err) = run("cryptsetup", &args, RECOVERY.as_bytes());
    assert!(ok, "luksFormat failed: {err}");
    let (ok, out, err) = run("cryptsetup", &["luksUUID", img_s], b"");
    assert!(ok, "luksUUID failed: {err}");
    (img, out.trim().to_string())
}

/// `cryptsetup luksDump --dump-json-metadata`.
pub fn dump(img: &Path) -> Value {
    let (ok, out, err) = run(
        "cryptsetup",
        &["luksDump", "--dump-json-metadata", img.to_str().unwrap()],
        b"",
    );
    assert!(ok, "luksDump failed: {err}");
    serde_json::from_str(&out).unwrap()
}

/// Keyslot numbers in the header, sorted.
pub fn keyslots(img: &Path) -> Vec<u32> {
    let d = dump(img);
    let mut v: Vec<u32> = d["keyslots"]
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.parse().unwrap())
        .collect();
    v.sort_unstable();
    v
}

/// The tokens object of the header.
pub fn tokens(img: &Path) -> serde_json::Map<String, Value> {
    dump(img)["tokens"].as_object().unwrap().clone()
}

/// Whether `pass` opens the image (keyslot `slot`, or any) per `cryptsetup open --test-passphrase`.
pub fn opens(img: &Path, pass: &[u8], slot: Option<u32>) -> bool {
    let slot_s;
    let mut args = vec!["open", "--test-passphrase", "--key-file", "-"];
    if let Some(s) = slot {
        slot_s = s.to_string();
        args.push("--key-slot");
        args.push(&slot_s);
    }
    args.push(img.to_str().unwrap());
    run("cryptsetup", &args, pass).0
}

/// The per-volume passphrase computed independently: python3 `cryptography` HKDF-SHA256
/// (salt = UUID bytes, info = "skrd luks2 v1", 32 bytes), standard padded base64 (DESIGN.md).
pub fn python_passphrase(ikm: &[u8], uuid: &str) -> Vec<u8> {
    let script = "import sys,uuid,base64\n\
from cryptography.hazmat.primitives.kdf.hkdf import HKDF\n\
from cryptography.hazmat.primitives import hashes\n\
k=HKDF(algorithm=hashes.SHA256(),length=32,salt=uuid.UUID(sys.argv[2]).bytes,info=b'skrd luks2 v1').derive(bytes.fromhex(sys.argv[1]))\n\
sys.stdout.write(base64.b64encode(k).decode())";
    let (ok, out, err) = run("python3", &["-c", script, &hex::encode(ikm), uuid], b"");
    assert!(ok, "python3 HKDF failed: {err}");
    out.into_bytes()
}

/// A test IKM (oct key bytes).
pub fn ikm(fill: u8) -> Secret {
    Secret::new(vec![fill; 32])
}

/// The spec of a test volume.
pub fn spec(name: &str, uuid: &str, version: Option<&str>) -> VolumeSpec {
    VolumeSpec {
        name: name.to_string(),
        uuid: uuid.parse().unwrap(),
        key_url: KEY_URL.to_string(),
        key_version: version.map(str::to_string),
    }
}

/// The image's bytes in `range` (to prove data or header areas unchanged).
pub fn bytes(img: &Path, range: std::ops::Range<usize>) -> Vec<u8> {
    std::fs::read(img).unwrap()[range].to_vec()
}

/// Offset of the data segment (16 MiB for these images; from luksDump, not skrd).
pub fn data_offset(img: &Path) -> usize {
    dump(img)["segments"]["0"]["offset"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// `cryptsetup luksKillSlot IMG SLOT`, authorized by `pass`; asserts success.
pub fn kill_slot(img: &Path, slot: u32, pass: &[u8]) {
    let slot = slot.to_string();
    let (ok, _, err) = run(
        "cryptsetup",
        &[
            "luksKillSlot",
            "--batch-mode",
            "--key-file",
            "-",
            img.to_str().unwrap(),
            &slot,
        ],
        pass,
    );
    assert!(ok, "luksKillSlot failed: {err}");
}

/// `skrd::volume::enroll` authorized by the recovery passphrase, at time `now`.
pub fn enroll(
    img: &Path,
    spec: &VolumeSpec,
    key: &Secret,
    backups: &Path,
    now: u64,
) -> Result<skrd::volume::Change, skrd::volume::VolumeError> {
    skrd::volume::enroll(
        img,
        spec,
        key,
        skrd::volume::Authorization::Passphrase(&Secret::new(RECOVERY.as_bytes().to_vec())),
        None,
        backups,
        now,
    )
}

/// `cryptsetup luksAddKey` of `new_pass` with skrd's keyslot PBKDF (PBKDF2-SHA512, 1000
/// iterations: what an interrupted skrd run leaves), authorized by the recovery passphrase;
/// returns the new keyslot (the one luksDump lists that was not there before).
pub fn add_key(img: &Path, new_pass: &[u8]) -> u32 {
    let before = keyslots(img);
    let file = img.with_extension("newkey");
    std::fs::write(&file, new_pass).unwrap();
    let (ok, _, err) = run(
        "cryptsetup",
        &[
            "luksAddKey",
            "--batch-mode",
            "--pbkdf",
            "pbkdf2",
            "--hash",
            "sha512",
            "--pbkdf-force-iterations",
            "1000",
            "--key-file",
            "-",
            img.to_str().unwrap(),
            file.to_str().unwrap(),
        ],
        RECOVERY.as_bytes(),
    );
    std::fs::remove_file(&file).unwrap();
    assert!(ok, "luksAddKey failed: {err}");
    *keyslots(img).iter().find(|k| !before.contains(k)).unwrap()
}
