//! `skrctl volumes | enroll | unenroll | reenroll | unlock`: exit statuses, `--json` shapes,
//! error codes, the crypttab line; effects checked with the `cryptsetup` CLI. Also: a power
//! loss (SIGKILL at a named point between two header writes) leaves the recovery slot and the
//! data unchanged and a state the next run completes; a failed change is restored.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod volume_common;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;
use volume_common::*;

struct Env {
    dir: tempfile::TempDir,
    conf: PathBuf,
    data: PathBuf,
    uuid: String,
}

const KEY: [u8; 32] = [0x5a; 32];
const NEW_KEY: [u8; 32] = [0xa5; 32];

fn setup() -> Env {
    let dir = tempfile::Builder::new()
        .prefix("skrctl-volumes-")
        .tempdir()
        .unwrap();
    let (data, uuid) = luks2_image(dir.path(), "data", None);
    let conf = dir.path().join("skrd.toml");
    std::fs::write(
        &conf,
        format!(
            "[attestation]\nprovider = \"https://a.eus.attest.azure.net\"\n\
             [keys.disk]\nurl = \"{KEY_URL}/v1\"\n\
             [volumes.data]\nuuid = \"{uuid}\"\nkey = \"disk\"\n\
             [volumes.logs]\nuuid = \"0b4b3e1c-6f1e-4c2a-9d55-2f1f9a7f0c11\"\nkey = \"disk\"\n"
        ),
    )
    .unwrap();
    std::fs::write(dir.path().join("key"), KEY).unwrap();
    std::fs::write(dir.path().join("wrong-key"), [1u8; 32]).unwrap();
    std::fs::write(dir.path().join("recovery"), RECOVERY).unwrap();
    Env {
        dir,
        conf,
        data,
        uuid,
    }
}

/// skrctl with `fds` (fd number → file) passed as open descriptors.
fn command(env: &Env, args: &[&str], fds: &[(i32, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_skrctl"));
    cmd.arg("--config").arg(&env.conf).args(args);
    cmd.stdin(Stdio::null());
    let files: Vec<(i32, std::fs::File)> = fds
        .iter()
        .map(|(n, name)| (*n, std::fs::File::open(env.dir.path().join(name)).unwrap()))
        .collect();
    // SAFETY: only async-signal-safe dup2 between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            use std::os::fd::AsRawFd;
            // First move every source above the targets (a source may sit on a target
            // number), then dup2 (which clears close-on-exec on the target).
            let mut high = Vec::new();
            for (n, f) in &files {
                let tmp = libc::fcntl(f.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 64);
                if tmp < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                high.push((*n, tmp));
            }
            for (n, tmp) in high {
                if libc::dup2(tmp, n) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    cmd
}

fn skrctl(env: &Env, args: &[&str], fds: &[(i32, &str)]) -> (i32, Value, String) {
    let out = command(env, args, fds).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let json = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (
        out.status.code().unwrap_or(-1),
        json,
        format!("{stdout}{}", String::from_utf8_lossy(&out.stderr)),
    )
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The descriptors of `enroll_args`: key on 3, recovery passphrase on 4.
const FDS: [(i32, &str); 2] = [(3, "key"), (4, "recovery")];

/// `enroll --volume data --device IMG --key-fd 3 --recovery-fd 4 --backup-dir DIR`.
fn enroll_args<'a>(env: &'a Env, backups: &'a Path) -> Vec<&'a str> {
    vec![
        "enroll",
        "--volume",
        "data",
        "--device",
        s(&env.data),
        "--key-fd",
        "3",
        "--recovery-fd",
        "4",
        "--backup-dir",
        s(backups),
    ]
}

#[test]
fn enroll_status_unlock_unenroll_through_skrctl() {
    let env = setup();
    let backups = env.dir.path().join("backups");
    let dev_override = format!("data={}", s(&env.data));
    let (code, v, out) = skrctl(&env, &["volumes", "--json", "--device", &dev_override], &[]);
    assert_eq!(code, 0, "{out}");
    let vols = v["volumes"].as_array().unwrap();
    assert_eq!(vols.len(), 2);
    assert_eq!(vols[0]["volume"], "data");
    assert_eq!(vols[0]["present"], true);
    assert_eq!(vols[0]["luks2"], true);
    assert_eq!(vols[0]["enrolled_keyslot"], Value::Null);
    assert_eq!(vols[0]["recovery_keyslots"], serde_json::json!([0]));
    assert_eq!(vols[1]["volume"], "logs");
    assert_eq!(vols[1]["present"], false);
    assert_eq!(vols[1]["problem"]["code"], "volume-device-missing");

    let mut enroll_args = enroll_args(&env, &backups);
    enroll_args.push("--json");
    let fds = FDS;
    let (code, v, out) = skrctl(&env, &enroll_args, &fds);
    assert_eq!(code, 0, "{out}");
    assert_eq!(v["result"], "enrolled");
    let slot = v["keyslot"].as_u64().unwrap() as u32;
    assert_eq!(
        v["crypttab"],
        format!(
            "data UUID={} /run/skrd/luks.sock luks,header=/run/skrd/headers/data,x-initrd.attach",
            env.uuid
        )
    );
    assert!(opens(
        &env.data,
        &python_passphrase(&KEY, &env.uuid),
        Some(slot)
    ));
    assert!(opens(&env.data, RECOVERY.as_bytes(), Some(0)));
    let (code, v, out) = skrctl(&env, &enroll_args, &fds);
    assert_eq!(
        (code, v["result"].as_str()),
        (0, Some("unchanged")),
        "{out}"
    );

    let (_, v, out) = skrctl(&env, &["volumes", "--json", "--device", &dev_override], &[]);
    assert_eq!(v["volumes"][0]["header_ok"], true, "{out}");
    // Human output of volumes names the volume and its slot.
    let (code, _, out) = skrctl(&env, &["volumes", "--device", &dev_override], &[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("enrolled (keyslot {slot}, key version v1)")),
        "{out}"
    );

    // unlock --test: right key opens, wrong key refused (1).
    let unlock = |key: &str| {
        skrctl(
            &env,
            &[
                "unlock",
                "data",
                "--device",
                s(&env.data),
                "--key-fd",
                "3",
                "--test",
                "--json",
            ],
            &[(3, key)],
        )
    };
    let (code, v, out) = unlock("key");
    assert_eq!(
        (code, v["result"].as_str()),
        (0, Some("key-opens")),
        "{out}"
    );
    let (code, v, out) = unlock("wrong-key");
    assert_eq!(code, 1, "{out}");
    assert_eq!(v["error"]["code"], "volume-wrong-key");

    // unenroll, twice.
    let un = [
        "unenroll",
        "--device",
        s(&env.data),
        "--backup-dir",
        s(&backups),
        "--json",
    ];
    let (code, v, out) = skrctl(&env, &un, &[]);
    assert_eq!(
        (code, v["result"].as_str()),
        (0, Some("unenrolled")),
        "{out}"
    );
    assert_eq!(keyslots(&env.data), vec![0]);
    let (code, v, out) = skrctl(&env, &un, &[]);
    assert_eq!(
        (code, v["result"].as_str()),
        (0, Some("unchanged")),
        "{out}"
    );
}

#[test]
fn refusals_have_codes_and_statuses() {
    let env = setup();
    let backups = env.dir.path().join("b");
    let fds = [(3, "key"), (4, "recovery")];
    let enroll = |extra: &[&str]| {
        let mut args = vec![
            "enroll",
            "--key-fd",
            "3",
            "--recovery-fd",
            "4",
            "--backup-dir",
            s(&backups),
            "--json",
        ];
        args.extend_from_slice(extra);
        skrctl(&env, &args, &fds)
    };
    // Every refusal below leaves both images byte for byte as they were.
    let data_before = std::fs::read(&env.data).unwrap();
    // A device whose UUID is not configured.
    let (other, _) = luks2_image(env.dir.path(), "other", None);
    let other_before = std::fs::read(&other).unwrap();
    let (code, v, out) = enroll(&["--device", s(&other)]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(v["error"]["code"], "volume-uuid-not-configured");
    // The configured name on another disk.
    let (code, v, out) = enroll(&["--volume", "data", "--device", s(&other)]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(v["error"]["code"], "volume-uuid-mismatch");
    // A name not in the configuration: unusable input.
    let (code, v, out) = enroll(&["--volume", "nope", "--device", s(&env.data)]);
    assert_eq!(code, 2, "{out}");
    assert_eq!(v["error"]["code"], "volume-not-configured");
    // LUKS1.
    let (l1, _) = luks_image(env.dir.path(), "l1", None, "luks1");
    let (code, v, out) = enroll(&["--volume", "data", "--device", s(&l1)]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(v["error"]["code"], "volume-not-luks2");
    // Wrong recovery passphrase (the key file given as recovery).
    let mut args = enroll_args(&env, &backups);
    args.push("--json");
    let (code, v, out) = skrctl(&env, &args, &[(3, "key"), (4, "key")]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(v["error"]["code"], "volume-auth-refused");
    assert_eq!(keyslots(&env.data), vec![0]);
    assert!(std::fs::read(&env.data).unwrap() == data_before);
    assert!(std::fs::read(&other).unwrap() == other_before);
    // Usage error: neither --volume nor --device.
    let (code, _, _) = skrctl(&env, &["enroll", "--key-fd", "3"], &[(3, "key")]);
    assert_eq!(code, 2);
}

/// Runs skrctl with `SKRD_TEST_FAILPOINT=POINT:stop` and SIGKILLs it once it has stopped
/// itself at POINT: a power loss exactly between two header writes (src/volume/failpoint.rs).
/// Panics if the process never reached POINT (exited first), so a renamed point cannot make
/// the test pass vacuously.
fn kill_at(env: &Env, args: &[&str], fds: &[(i32, &str)], point: &str) {
    let mut child = command(env, args, fds)
        .env("SKRD_TEST_FAILPOINT", format!("{point}:stop"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stat = format!("/proc/{}/stat", child.id());
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("skrctl {args:?} exited ({status}) before reaching {point}");
        }
        let state = std::fs::read_to_string(&stat).unwrap_or_default();
        // The state letter follows the ")" that closes the command name.
        if state
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('T'))
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap();
    let _ = child.wait();
}

/// The header and keyslots area (everything before the data).
fn header_bytes(env: &Env) -> Vec<u8> {
    bytes(&env.data, 0..data_offset(&env.data))
}

fn backups_in(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default()
}

fn unenroll_args<'a>(env: &'a Env, backups: &'a Path) -> [&'a str; 7] {
    [
        "unenroll",
        "--volume",
        "data",
        "--device",
        s(&env.data),
        "--backup-dir",
        s(backups),
    ]
}

/// Power loss at each point of enroll and unenroll: the recovery slot and the data are
/// unchanged, the header is either untouched or in a state the next run completes, and the
/// backup left behind restores the header as it was (`cryptsetup luksHeaderRestore`).
#[test]
fn power_loss_at_every_point_of_enroll_and_unenroll() {
    let env = setup();
    let backups = env.dir.path().join("b");
    let off = data_offset(&env.data);
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&env.data)
            .unwrap();
        f.seek(SeekFrom::Start(off as u64)).unwrap();
        f.write_all(&[0xC3; 1 << 20]).unwrap();
    }
    let data_before = bytes(&env.data, off..off + (1 << 20));
    let pass = python_passphrase(&KEY, &env.uuid);
    let args = enroll_args(&env, &backups);
    // (point, skrd keyslots written, token written) at the moment of the power loss.
    for (point, slot_written, token_written) in [
        ("after-backup", false, false),
        ("after-keyslot", true, false),
        ("after-token", true, true),
        ("after-change", true, true),
    ] {
        let before = header_bytes(&env);
        let _ = std::fs::remove_dir_all(&backups);
        kill_at(&env, &args, &FDS, point);
        assert!(opens(&env.data, RECOVERY.as_bytes(), Some(0)), "{point}");
        assert_eq!(
            bytes(&env.data, off..off + (1 << 20)),
            data_before,
            "{point}"
        );
        assert_eq!(
            keyslots(&env.data).len(),
            1 + usize::from(slot_written),
            "{point}"
        );
        assert_eq!(
            tokens(&env.data).len(),
            usize::from(token_written),
            "{point}"
        );
        if !slot_written {
            assert!(header_bytes(&env) == before, "{point}: header changed");
        } else {
            assert!(
                opens(&env.data, &pass, None),
                "{point}: the written keyslot does not open"
            );
        }
        // The backup the dead process left restores the header exactly as it was.
        let left = backups_in(&backups);
        assert_eq!(left.len(), 1, "{point}: {left:?}");
        let copy = env.dir.path().join("restored.img");
        std::fs::copy(&env.data, &copy).unwrap();
        let file = format!("--header-backup-file={}", left[0].display());
        let (ok, _, e) = run(
            "cryptsetup",
            &["luksHeaderRestore", "-q", &file, s(&copy)],
            b"",
        );
        assert!(ok, "{point}: {e}");
        assert!(
            bytes(&copy, 0..off) == before,
            "{point}: the backup does not restore the header"
        );
        // Running enroll again completes it: one skrd keyslot, one token (adopted, not doubled).
        let (code, _, out) = skrctl(&env, &args, &FDS);
        assert_eq!(code, 0, "enroll after power loss at {point}: {out}");
        assert_eq!(keyslots(&env.data).len(), 2, "{point}");
        assert_eq!(tokens(&env.data).len(), 1, "{point}");
        assert!(opens(&env.data, &pass, None), "{point}");

        // Unenroll, with a power loss at the matching point, completed by the next run.
        let unenroll = unenroll_args(&env, &backups);
        let upoint = match point {
            "after-keyslot" | "after-token" => "after-destroy",
            p => p,
        };
        kill_at(&env, &unenroll, &[], upoint);
        assert!(
            opens(&env.data, RECOVERY.as_bytes(), Some(0)),
            "unenroll {upoint}"
        );
        assert_eq!(bytes(&env.data, off..off + (1 << 20)), data_before);
        let (code, _, out) = skrctl(&env, &unenroll, &[]);
        assert_eq!(code, 0, "unenroll after power loss at {upoint}: {out}");
        assert_eq!(keyslots(&env.data), vec![0], "unenroll {upoint}");
        assert!(tokens(&env.data).is_empty(), "unenroll {upoint}");
    }
}

/// A failure at any point of a header change restores the header byte for byte and removes
/// the backup; a failure whose restore fails too names the backup to restore by hand.
#[test]
fn a_failed_header_change_is_restored_from_the_backup() {
    let env = setup();
    let backups = env.dir.path().join("b");
    let mut args = enroll_args(&env, &backups);
    args.push("--json");
    let before = header_bytes(&env);
    for point in [
        "after-backup",
        "after-keyslot",
        "after-token",
        "after-change",
    ] {
        let out = command(&env, &args, &FDS)
            .env("SKRD_TEST_FAILPOINT", format!("{point}:fail"))
            .output()
            .unwrap();
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(out.status.code(), Some(1), "{point}: {v}");
        assert_eq!(
            v["error"]["code"], "volume-cryptsetup-failed",
            "{point}: {v}"
        );
        assert!(
            header_bytes(&env) == before,
            "{point}: the header was not restored"
        );
        assert!(
            backups_in(&backups).is_empty(),
            "{point}: backup kept after a restore"
        );
        assert!(opens(&env.data, RECOVERY.as_bytes(), Some(0)), "{point}");
    }
    // The restore fails too (its backup is gone): both failures reported, nothing hidden.
    let out = command(&env, &args, &FDS)
        .env("SKRD_TEST_FAILPOINT", "after-change:fail-lose-backup")
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1), "{v}");
    assert_eq!(v["error"]["code"], "volume-header-restore-failed", "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("failure injected at after-change"),
        "{message}"
    );
    assert!(message.contains("luksHeaderRestore"), "{message}");
    assert!(opens(&env.data, RECOVERY.as_bytes(), Some(0)));
}

/// Power loss at each point of a key rotation: the token's keyslot always opens with the old
/// or the new key, the recovery slot too, and the next run completes the rotation.
#[test]
fn power_loss_at_every_point_of_reenroll_leaves_a_working_skrd_keyslot() {
    let env = setup();
    let backups = env.dir.path().join("b");
    std::fs::write(env.dir.path().join("new-key"), NEW_KEY).unwrap();
    let (code, _, out) = skrctl(&env, &enroll_args(&env, &backups), &FDS);
    assert_eq!(code, 0, "{out}");
    let passes = [
        python_passphrase(&KEY, &env.uuid),
        python_passphrase(&NEW_KEY, &env.uuid),
    ];
    // Rotate back and forth between the two keys, a power loss at each point first.
    let mut current = 0usize;
    for point in [
        "after-backup",
        "after-keyslot",
        "after-token",
        "after-change",
    ] {
        let (old_file, new_file) = if current == 0 {
            ("key", "new-key")
        } else {
            ("new-key", "key")
        };
        let version = if current == 0 { "v2" } else { "v1" };
        let args = [
            "reenroll",
            "--volume",
            "data",
            "--device",
            s(&env.data),
            "--old-key-fd",
            "3",
            "--key-fd",
            "4",
            "--key-version",
            version,
            "--backup-dir",
            s(&backups),
        ];
        let fds = [(3, old_file), (4, new_file)];
        kill_at(&env, &args, &fds, point);
        let toks = tokens(&env.data);
        assert_eq!(toks.len(), 1, "{point}");
        let slot: u32 = toks.values().next().unwrap()["keyslots"][0]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let on_new = opens(&env.data, &passes[1 - current], Some(slot));
        assert!(
            opens(&env.data, &passes[current], Some(slot)) || on_new,
            "{point}: no working skrd keyslot"
        );
        // The token moves to the new keyslot in one write: before it, the old one.
        assert_eq!(
            on_new,
            matches!(point, "after-token" | "after-change"),
            "{point}"
        );
        assert!(opens(&env.data, RECOVERY.as_bytes(), Some(0)), "{point}");
        let (code, _, out) = skrctl(&env, &args, &fds);
        assert_eq!(code, 0, "reenroll after power loss at {point}: {out}");
        current = 1 - current;
        assert_eq!(keyslots(&env.data).len(), 2, "{point}");
        assert!(opens(&env.data, &passes[current], None), "{point}");
        assert!(!opens(&env.data, &passes[1 - current], None), "{point}");
    }
}

#[test]
fn unlock_activates_or_explains_why_not() {
    let env = setup();
    let backups = env.dir.path().join("b");
    let (code, _, out) = skrctl(&env, &enroll_args(&env, &backups), &FDS);
    assert_eq!(code, 0, "{out}");
    let headers = env.dir.path().join("headers");
    let unlock_args = [
        "unlock",
        "data",
        "--device",
        s(&env.data),
        "--key-fd",
        "3",
        "--header-dir",
        s(&headers),
        "--json",
    ];
    let (code, v, out) = skrctl(&env, &unlock_args, &[(3, "key")]);
    // The activation uses the checked detached header, never a second read of the disk's.
    assert!(headers.join("data").exists(), "{out}");
    // The kernel lists its device-mapper misc device when dm_mod is loaded (libdevmapper may
    // create /dev/mapper/control even where the kernel has none).
    let dm = std::fs::read_to_string("/proc/misc").is_ok_and(|m| m.contains("device-mapper"));
    if dm {
        // device-mapper works here: the volume opens, then close it with cryptsetup.
        assert_eq!((code, v["result"].as_str()), (0, Some("unlocked")), "{out}");
        assert!(Path::new("/dev/mapper/data").exists());
        let (ok, _, err) = run("cryptsetup", &["close", "data"], b"");
        assert!(ok, "{err}");
    } else {
        // No device-mapper (containers): refused with libcryptsetup's own explanation.
        assert_eq!(code, 1, "{out}");
        assert_eq!(v["error"]["code"], "volume-activate-failed");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains("device-mapper"), "{msg}");
    }
    // A header the host switched to cipher_null: the key still opens skrd's keyslot, but
    // skrctl unlock refuses to activate it, and skrctl volumes says why.
    let (ok, _, e) = run(
        "python3",
        &[
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/independent/luks2_tamper.py"
            ),
            s(&env.data),
            "null-cipher",
        ],
        b"",
    );
    assert!(ok, "{e}");
    let (code, v, out) = skrctl(&env, &unlock_args, &[(3, "key")]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(v["error"]["code"], "luks-header-refused", "{out}");
    assert!(!headers.join("data").exists(), "{out}");
    let dev_override = format!("data={}", s(&env.data));
    let (_, v, out) = skrctl(&env, &["volumes", "--json", "--device", &dev_override], &[]);
    assert_eq!(v["volumes"][0]["header_ok"], false, "{out}");
    assert_eq!(
        v["volumes"][0]["problem"]["code"], "luks-header-refused",
        "{out}"
    );
}
