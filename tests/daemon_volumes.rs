//! Volumes left to the daemon (`options.initrd = false`): `skrd` as a service answers on its
//! key socket (`--key-socket`) the way systemd-cryptsetup asks — a client bound to the abstract
//! name `\0<random>/cryptsetup/<volume>` connects, shuts its write side down and reads to EOF.
//! The answer for each daemon volume is the passphrase of that volume's skrd keyslot: it equals
//! the HKDF computed independently (python3 `cryptography`) from the imported key, and
//! `cryptsetup open --test-passphrase` accepts it on that LUKS2 image (and refuses it on the
//! other volume's image). An initramfs volume, an unknown volume and a peer that is not
//! systemd-cryptsetup get no data. Once the answered volume's mapping appears in sysfs (a
//! directory of the test's given to `--sysfs-root`, shaped like libcryptsetup's dm uuid) it is
//! `unlocked`; a mapping with the right LUKS UUID under another name does not count. skrd logs to a real journald here: the entries carry VOLUME,
//! KEY and STAGE, and neither the keys nor the passphrases appear anywhere in the journal.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "daemon_common/mod.rs"]
mod daemon_common;
#[path = "flow_common.rs"]
mod flow_common;
mod volume_common;

use daemon_common::*;
use volume_common::{enroll, luks2_image, opens, python_passphrase};

#[test]
fn daemon_answers_its_volumes_on_the_key_socket() {
    let (env, _tpm, keys) = env_with_keys(&["disk", "other"]);
    let [(disk_url, disk), (other_url, other)] = <[_; 2]>::try_from(keys).unwrap();
    let work = tempfile::tempdir().unwrap();
    let (data_img, data_uuid) = luks2_image(work.path(), "data", None);
    let (logs_img, logs_uuid) = luks2_image(work.path(), "logs", None);
    let (_, boot_uuid) = luks2_image(work.path(), "boot", None);
    env.append_config(&format!(
        "\n[keys.disk]\nurl = \"{disk_url}\"\n\n[keys.other]\nurl = \"{other_url}\"\n\n\
         [volumes.data]\nuuid = \"{data_uuid}\"\nkey = \"disk\"\noptions = {{ initrd = false }}\n\n\
         [volumes.logs]\nuuid = \"{logs_uuid}\"\nkey = \"other\"\noptions = {{ initrd = false }}\n\n\
         [volumes.boot]\nuuid = \"{boot_uuid}\"\nkey = \"disk\"\n"
    ));
    // skrd's own enrollment (skrd keyslot + azure-skr token), authorized by the recovery
    // passphrase, with the imported key bytes.
    let settings = env.settings();
    let backups = work.path().join("backups");
    std::fs::create_dir_all(&backups).unwrap();
    for (img, name, key) in [(&data_img, "data", &disk), (&logs_img, "logs", &other)] {
        let spec = skrd::volume::VolumeSpec::from_settings(&settings, name).unwrap();
        enroll(
            img,
            &spec,
            &skrd::secret::Secret::new(key.clone()),
            &backups,
            1_700_000_000,
        )
        .unwrap();
    }

    let bus = Bus::start();
    let journal = Journal::new(work.path());
    let skrd = Skrd::start_with(&env, &bus, work.path(), Some(&journal));
    skrd.wait_notify("READY=1");
    let sock = work.path().join("luks.sock");

    let data_pass = ask(&sock, Some("1f2e3d4c5b6a7988/cryptsetup/data"));
    assert_eq!(
        data_pass,
        python_passphrase(&disk, &data_uuid),
        "journal: {}",
        journal.text()
    );
    assert!(opens(&data_img, &data_pass, None));
    assert!(!opens(&logs_img, &data_pass, None));
    let logs_pass = ask(&sock, Some("77/cryptsetup/logs"));
    assert_eq!(logs_pass, python_passphrase(&other, &logs_uuid));
    assert!(opens(&logs_img, &logs_pass, None));
    assert!(!opens(&data_img, &logs_pass, None));

    // No data: the initramfs's volume, an unknown one, a peer that is not systemd-cryptsetup.
    assert!(ask(&sock, Some("78/cryptsetup/boot")).is_empty());
    assert!(ask(&sock, Some("79/cryptsetup/ghost")).is_empty());
    assert!(ask(&sock, Some("80/something/data")).is_empty());
    assert!(ask(&sock, None).is_empty());

    let st = skrd::format::state::parse(&std::fs::read(&skrd.state_file).unwrap()).unwrap();
    let stage = |n: &str| st.volumes.iter().find(|v| v.name == n).unwrap().stage;
    assert_eq!(stage("data"), skrd::format::state::Stage::Unlocking);
    assert_eq!(stage("logs"), skrd::format::state::Stage::Unlocking);

    // systemd-cryptsetup opens "data" (its mapping appears in sysfs: skrd.service cannot see
    // /dev/mapper); "logs"'s LUKS UUID appears only under another mapping name. skrd looks
    // for the mapping right after answering: "data" becomes unlocked, with its unlock time.
    Skrd::open_mapping(work.path(), "dm-0", &logs_uuid, "not-logs");
    Skrd::open_mapping(work.path(), "dm-1", &data_uuid, "data");
    let t = std::time::Instant::now();
    let st = loop {
        let st = skrd::format::state::parse(&std::fs::read(&skrd.state_file).unwrap()).unwrap();
        if st.volume("data").unwrap().stage == skrd::format::state::Stage::Unlocked {
            break st;
        }
        assert!(
            t.elapsed() < std::time::Duration::from_secs(120),
            "data never unlocked: {st:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(
        st.volume("data").unwrap().timings_ms.contains_key("unlock"),
        "{st:?}"
    );
    assert_eq!(
        st.volume("logs").unwrap().stage,
        skrd::format::state::Stage::Unlocking
    );
    assert_eq!(skrd.stop(), 0);
    let export = journal.stop_and_export();
    let entries = parse_export(&export);
    let field = |e: &std::collections::BTreeMap<String, Vec<u8>>, n: &str| {
        e.get(n).map(|v| String::from_utf8_lossy(v).into_owned())
    };
    let with = |message: &str| {
        entries
            .iter()
            .filter(|e| field(e, "MESSAGE").is_some_and(|m| m.contains(message)))
            .map(|e| {
                (
                    field(e, "VOLUME").unwrap_or_default(),
                    field(e, "KEY").unwrap_or_default(),
                    field(e, "STAGE").unwrap_or_default(),
                )
            })
            .collect::<Vec<_>>()
    };
    let mut handed = with("passphrase handed to systemd-cryptsetup");
    handed.sort();
    assert_eq!(
        handed,
        [
            (
                "data".to_string(),
                "disk".to_string(),
                "unlocking".to_string()
            ),
            (
                "logs".to_string(),
                "other".to_string(),
                "unlocking".to_string()
            )
        ]
    );
    let mut refused = with("a volume the daemon does not unlock");
    refused.sort();
    assert_eq!(
        refused,
        [
            ("boot".to_string(), String::new(), "refused".to_string()),
            ("ghost".to_string(), String::new(), "refused".to_string())
        ]
    );
    for secret in [&disk, &other, &data_pass, &logs_pass] {
        assert_no_secret("the journal (export format)", &export, secret);
    }
}
