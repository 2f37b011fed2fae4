//! dracut/90skrd/module-setup.sh decides from the configuration what goes into the initramfs.
//! Sourced by bash with dracut's helper functions replaced by recorders (the QEMU boot in
//! tests/e2e builds real images; this checks the branches one boot does not take): the network
//! only when a volume is opened in the initramfs, the header-check drop-in and units always,
//! every trust file the configuration names, and the host-only `check`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;

/// Runs `module-setup.sh`'s check/depends/install with `config`; returns (check status,
/// depends output, the recorded install actions, files written under initdir).
fn run_module(config: &str, hostonly: bool) -> (i32, String, String, Vec<String>) {
    let (check, depends, actions, files, install) = run_module_status(config, hostonly);
    assert_eq!(install, 0, "{actions}");
    (check, depends, actions, files)
}

/// Like [`run_module`], with `install`'s status.
fn run_module_status(config: &str, hostonly: bool) -> (i32, String, String, Vec<String>, i32) {
    let t = tempfile::tempdir().unwrap();
    let cfg = t.path().join("skrd.toml");
    std::fs::write(&cfg, config.replace("@T@", &t.path().display().to_string())).unwrap();
    // Any real PEM certificate will do (the module only copies the file).
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/real/trustee/amd/milan_ask_ark_asvk.pem"
        ),
        t.path().join("ca.pem"),
    )
    .unwrap();
    let initdir = t.path().join("initdir");
    // As dracut's systemd-networkd module (01, installed before 90skrd) leaves it.
    let units = initdir.join("usr/lib/systemd/system");
    std::fs::create_dir_all(&units).unwrap();
    std::fs::write(units.join("systemd-networkd.service"), "[Unit]\n").unwrap();
    let bindir = Path::new(env!("CARGO_BIN_EXE_skrctl")).parent().unwrap();
    let moddir = concat!(env!("CARGO_MANIFEST_DIR"), "/dracut/90skrd");
    let script = r#"
        set -u
        rec() { echo "$*" >> "$T/actions"; }
        inst_binary() { rec inst_binary "$@"; }
        inst_simple() { rec inst_simple "$@"; }
        inst_multiple() { rec inst_multiple "$@"; }
        inst_libdir_file() { rec inst_libdir_file "$@"; }
        instmods() { rec instmods "$@"; }
        dinfo() { :; }
        derror() { rec derror "$@"; }
        find_binary() { command -v "$1"; }
        SYSTEMCTL="rec systemctl"
        systemdsystemunitdir=/usr/lib/systemd/system
        . "$moddir/module-setup.sh"
        check; echo "check=$?" >> "$T/result"
        echo "depends=$(depends)" >> "$T/result"
        install; echo "install=$?" >> "$T/result"
    "#;
    let out = Command::new("bash")
        .arg("-c")
        .arg(script)
        .env("T", t.path())
        .env("moddir", moddir)
        .env("initdir", &initdir)
        .env("hostonly", if hostonly { "yes" } else { "" })
        .env("dracutbasedir", t.path().join("no-dracut"))
        .env("SKRD_CONFIG", &cfg)
        .env("SKRD_BINDIR", bindir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result = std::fs::read_to_string(t.path().join("result")).unwrap();
    let check = result
        .lines()
        .find_map(|l| l.strip_prefix("check="))
        .unwrap()
        .parse()
        .unwrap();
    let depends = result
        .lines()
        .find_map(|l| l.strip_prefix("depends="))
        .unwrap()
        .to_string();
    let actions = std::fs::read_to_string(t.path().join("actions")).unwrap_or_default();
    let mut files: Vec<String> = walk(&initdir)
        .into_iter()
        .map(|p| p.strip_prefix(&initdir).unwrap().display().to_string())
        .collect();
    files.sort();
    let install = result
        .lines()
        .find_map(|l| l.strip_prefix("install="))
        .unwrap()
        .parse()
        .unwrap();
    (
        check,
        depends,
        actions.replace(&t.path().display().to_string(), "$T"),
        files,
        install,
    )
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn config(initrd: bool) -> String {
    format!(
        "[attestation]\nprovider = \"https://sharedeus2.eus2.attest.azure.net\"\n\n\
         [trust]\nca_files = [\"@T@/ca.pem\"]\n\n\
         [keys.disk]\nurl = \"https://contoso.vault.azure.net/keys/disk\"\n\n\
         [volumes.data]\nuuid = \"6f0e2d5a-1c3b-4a7e-9b1d-2f4c6e8a0b13\"\nkey = \"disk\"\n\
         options.initrd = {initrd}\n"
    )
}

#[test]
fn network_and_neednet_only_for_volumes_opened_in_the_initramfs() {
    for initrd in [true, false] {
        let (check, depends, actions, files) = run_module(&config(initrd), false);
        assert_eq!(check, 0);
        // Always: skrd, its units, the header-check drop-in, the configuration, the TCTI.
        assert!(actions.contains("inst_binary"), "{actions}");
        assert!(actions.contains("skrd-initrd.service"), "{actions}");
        assert!(
            actions.contains("systemd-cryptsetup@.service.d/skrd-header.conf"),
            "{actions}"
        );
        assert!(actions.contains("libtss2-tcti-device.so*"), "{actions}");
        // The CA file the configuration trusts ($T is the test's directory).
        assert!(actions.contains("inst_simple $T/ca.pem"), "{actions}");
        assert!(
            actions.contains("add-wants cryptsetup-pre.target skrd-initrd.service"),
            "{actions}"
        );
        let network = depends.split_whitespace().any(|d| d == "network");
        let neednet = files.iter().any(|f| f == "etc/cmdline.d/90skrd.conf");
        let dhcp = actions.contains("90-skrd-dhcp.network");
        // systemd-networkd starts with skrd, not when dracut's initqueue gets to it.
        let early_network =
            actions.contains("add-wants skrd-initrd.service systemd-networkd.service");
        assert_eq!(
            (network, neednet, dhcp, early_network),
            (initrd, initrd, initrd, initrd),
            "initrd = {initrd}: {depends} {files:?} {actions}"
        );
    }
}

#[test]
fn hostonly_images_get_the_module_only_with_an_initrd_volume() {
    let (check, _, _, _) = run_module(&config(true), true);
    assert_eq!(check, 0);
    let (check, _, _, _) = run_module(&config(false), true);
    assert_eq!(check, 255);
}

#[test]
fn an_invalid_configuration_fails_the_build_with_skrctl_s_explanation() {
    let broken = config(true).replace("key = \"disk\"", "key = \"nonexistent\"");
    let (_, _, actions, _, install) = run_module_status(&broken, false);
    assert_eq!(install, 1, "{actions}");
    assert!(actions.contains("derror skrd:"), "{actions}");
    assert!(actions.contains("nonexistent"), "{actions}");
    assert!(!actions.contains("inst_binary"), "{actions}");
}
