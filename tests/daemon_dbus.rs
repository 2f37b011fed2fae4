//! `skrd` as a service against a real private `dbus-daemon` (configured with the shipped bus
//! policy), skr-emulator and a provisioned swtpm: READY=1 over NOTIFY_SOCKET, ReleaseKey hands
//! a sealed memfd whose bytes equal the imported key, the ACL (root allowed, uid 65534 denied
//! with org.skrd.KeyRelease1.Error.AccessDenied), unknown keys, 50 concurrent callers, the
//! introspection equal to dbus/org.skrd.KeyRelease1.xml, SIGHUP reload (invalid config kept
//! out), SIGTERM exit 0, `skrctl status` from the daemon and from the state file, and no
//! trace of the key in logs, environ, cmdline, the state file or a dbus-monitor capture.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "daemon_common/mod.rs"]
mod daemon_common;
#[path = "flow_common.rs"]
mod flow_common;

use daemon_common::*;
use flow_common::*;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

/// `busctl call` of a Manager method (`method_and_args`: the method, then busctl's signature
/// and arguments) as uid 65534: the exit status and everything printed.
fn call_manager_as_nobody(address: &str, method_and_args: &[&str]) -> (i32, String) {
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "busctl"])
        .arg(format!("--address={address}"))
        .args([
            "call",
            "org.skrd.KeyRelease1",
            "/org/skrd/KeyRelease1",
            "org.skrd.KeyRelease1.Manager",
        ])
        .args(method_and_args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// The first line of `log` holding `what`.
fn log_line(log: &str, what: &str) -> String {
    log.lines()
        .find(|l| l.contains(what))
        .unwrap_or_else(|| panic!("no {what:?} in the log:\n{log}"))
        .to_string()
}

/// The `<interface name="org.skrd.KeyRelease1.Manager">` element with the whitespace between
/// tags and comments removed.
fn manager_interface(xml: &str) -> String {
    let start = xml
        .find("<interface name=\"org.skrd.KeyRelease1.Manager\">")
        .unwrap_or_else(|| panic!("no Manager interface in {xml}"));
    let end = start + xml[start..].find("</interface>").unwrap() + "</interface>".len();
    let mut s = xml[start..end].to_string();
    while let Some(a) = s.find("<!--") {
        let b = a + s[a..].find("-->").unwrap() + 3;
        s.replace_range(a..b, "");
    }
    s.split('\n').map(str::trim).collect::<Vec<_>>().join("")
}

#[test]
fn daemon_serves_keys_by_acl_over_dbus() {
    let (env, _tpm, keys) = env_with_keys(&["disk", "other"]);
    let [(disk_url, disk), (other_url, other)] = <[_; 2]>::try_from(keys).unwrap();
    let base_config = std::fs::read_to_string(env.config_path()).unwrap();
    env.append_config(&format!(
        "\n[keys.disk]\nurl = \"{disk_url}\"\nallow_uids = [0]\n\n[keys.other]\nurl = \"{other_url}\"\n"
    ));
    let bus = Bus::start();
    let work = tempfile::tempdir().unwrap();
    let monitor_out = work.path().join("monitor.txt");
    // Unbuffered: the monitor is killed at the end, and nothing may stay in its stdio buffer.
    let mut monitor = Command::new("stdbuf")
        .args(["-o0", "dbus-monitor", "--address", &bus.address])
        .stdout(std::fs::File::create(&monitor_out).unwrap())
        .stderr(std::fs::File::create(work.path().join("monitor.err")).unwrap())
        .spawn()
        .unwrap();
    let skrd = Skrd::start(&env, &bus, work.path());
    let seen = skrd.wait_notify("READY=1");
    assert!(
        seen.iter().any(|m| m.starts_with("STATUS=attesting")),
        "{seen:?}"
    );
    // WATCHDOG_USEC=2 s: a keep-alive every second.
    skrd.wait_notify("WATCHDOG=1");

    let rt = rt();
    rt.block_on(async {
        let conn = connect(&bus.address).await;
        // The authorized caller (root, in allow_uids) gets the imported key's bytes, in a
        // memfd sealed against every change (F_SEAL_WRITE, _GROW, _SHRINK, and _SEAL so no
        // seal can be removed).
        let fd = release_fd(&conn, "disk").await.unwrap();
        let (seals, link) = seals_and_link(&fd);
        assert!(link.starts_with("/memfd:skrd-key-disk"), "{link}");
        let all = libc::F_SEAL_WRITE | libc::F_SEAL_GROW | libc::F_SEAL_SHRINK | libc::F_SEAL_SEAL;
        assert_eq!(seals & all, all, "seals {seals:#x} of {link}");
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::fs::File::from(fd), &mut bytes).unwrap();
        assert_eq!(bytes, disk);
        // Not in any ACL (default deny), even for root.
        let (name, msg) = release(&conn, "other").await.unwrap_err();
        assert_eq!(name, "org.skrd.KeyRelease1.Error.AccessDenied", "{msg}");
        assert!(
            msg.contains("daemon-access-denied") && msg.contains("uid 0"),
            "{msg}"
        );
        let (name, msg) = release(&conn, "nope").await.unwrap_err();
        assert_eq!(name, "org.skrd.KeyRelease1.Error.UnknownKey", "{msg}");
        assert!(msg.contains("disk, other"), "{msg}");

        // 50 concurrent callers, each on its own connection.
        let calls = (0..50).map(|_| {
            let address = bus.address.clone();
            tokio::spawn(async move {
                let c = connect(&address).await;
                release(&c, "disk").await
            })
        });
        for r in futures_join(calls).await {
            assert_eq!(r.unwrap().unwrap(), disk);
        }

        // ListKeys and GetStatus.
        let keys: Vec<(String, String, bool)> = call(&conn, "ListKeys", &())
            .await
            .unwrap()
            .body()
            .deserialize()
            .unwrap();
        assert_eq!(
            keys,
            vec![
                ("disk".to_string(), disk_url.clone(), true),
                ("other".to_string(), other_url.clone(), false)
            ]
        );
        let status: String = call(&conn, "GetStatus", &())
            .await
            .unwrap()
            .body()
            .deserialize()
            .unwrap();
        let st = skrd::format::state::parse(status.as_bytes()).unwrap();
        assert_eq!(st.writer, skrd::format::state::Writer::Daemon);
        assert!(st.attestation.as_ref().unwrap().last_success.is_some());
        assert!(st.key("disk").unwrap().cached);

        // The introspection equals the shipped XML.
        let xml: String = conn
            .call_method(
                Some("org.skrd.KeyRelease1"),
                "/org/skrd/KeyRelease1",
                Some("org.freedesktop.DBus.Introspectable"),
                "Introspect",
                &(),
            )
            .await
            .unwrap()
            .body()
            .deserialize()
            .unwrap();
        let shipped =
            std::fs::read_to_string(format!("{REPO}/dbus/org.skrd.KeyRelease1.xml")).unwrap();
        assert_eq!(manager_interface(&xml), manager_interface(&shipped));
    });

    // Another uid (65534) through busctl: the clear D-Bus error, no descriptor.
    let (code, out) = call_manager_as_nobody(&bus.address, &["ReleaseKey", "s", "disk"]);
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains("access to key \"disk\" denied for uid 65534"),
        "{out}"
    );
    // Status is readable by everyone.
    let (code, out) = call_manager_as_nobody(&bus.address, &["GetStatus"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("schema_version"), "{out}");

    // Reattest is root only: uid 65534 is refused, and the decision is logged with the caller.
    let (code, out) = call_manager_as_nobody(&bus.address, &["Reattest"]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("only root may call Reattest"), "{out}");
    let line = log_line(&skrd.log(), "Reattest denied");
    assert!(
        line.contains("caller_uid=65534") && line.contains("decision=\"deny\""),
        "{line}"
    );
    // An unknown key's name comes from the caller: logged clipped to 64 characters and escaped.
    let hostile = format!("a\u{1b}[31m{}", "x".repeat(500));
    rt.block_on(async {
        let conn = connect(&bus.address).await;
        let (name, _) = release(&conn, &hostile).await.unwrap_err();
        assert_eq!(name, "org.skrd.KeyRelease1.Error.UnknownKey");
    });
    let log = skrd.log();
    assert!(!log.contains('\u{1b}'), "raw escape in the log");
    assert!(
        !log.contains(&"x".repeat(65)),
        "unbounded caller text in the log"
    );
    let line = log_line(&log, "ReleaseKey of an unknown key key=a");
    assert!(
        line.contains(&format!("key=a\\u{{1b}}[31m{}...", "x".repeat(58)))
            && line.contains("caller_uid=0"),
        "{line}"
    );
    // A caller gone before skrd could ask the bus for its credentials (busctl sends without
    // waiting for the reply and exits): the refusal is logged with its bus name.
    let t = std::time::Instant::now();
    while !skrd.log().contains("cannot obtain the credentials") {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "no credentials failure logged: {}",
            skrd.log()
        );
        let st = Command::new("busctl")
            .arg(format!("--address={}", bus.address))
            .args([
                "--expect-reply=no",
                "call",
                "org.skrd.KeyRelease1",
                "/org/skrd/KeyRelease1",
                "org.skrd.KeyRelease1.Manager",
                "ReleaseKey",
                "s",
                "disk",
            ])
            .status()
            .unwrap();
        assert!(st.success());
        std::thread::sleep(Duration::from_millis(100));
    }
    let line = log_line(&skrd.log(), "cannot obtain the credentials");
    assert!(
        line.contains("caller_bus_name=:1.") && line.contains("method=\"ReleaseKey\""),
        "{line}"
    );

    // skrctl status asks the daemon.
    let (code, out, err, _) = skrctl(
        &env,
        &[
            "status",
            "--bus-address",
            &bus.address,
            "--state-file",
            skrd.state_file.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("from daemon") && out.contains("health: ok"),
        "{out}"
    );
    assert!(out.contains("may request: uid 0"), "{out}");

    // SIGHUP with an invalid configuration: refused, the old one stays in force.
    let good = std::fs::read_to_string(env.config_path()).unwrap();
    std::fs::write(env.config_path(), format!("{good}\n[keys.broken]\n")).unwrap();
    skrd.signal(libc::SIGHUP);
    skrd.wait_notify("READY=1");
    assert!(
        skrd.log().contains("configuration reload refused"),
        "{}",
        skrd.log()
    );
    // SIGHUP with "other" now allowed to root: released on demand.
    std::fs::write(
        env.config_path(),
        format!(
            "{base_config}\n[keys.disk]\nurl = \"{disk_url}\"\nallow_uids = [0]\n\n[keys.other]\nurl = \"{other_url}\"\nallow_uids = [\"root\"]\n"
        ),
    )
    .unwrap();
    skrd.signal(libc::SIGHUP);
    skrd.wait_notify("READY=1");
    rt.block_on(async {
        let conn = connect(&bus.address).await;
        assert_eq!(release(&conn, "other").await.unwrap(), other);
        assert_eq!(release(&conn, "disk").await.unwrap(), disk);
    });

    // Secrets: not in the log, the environment, the command line, the state file, or on the bus.
    let pid = skrd.child.id();
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    // The harness's own variables: the read above saw the real environment, not nothing.
    assert!(
        String::from_utf8_lossy(&environ).contains("NOTIFY_SOCKET="),
        "environ read"
    );
    let state = std::fs::read(&skrd.state_file).unwrap();
    let log = skrd.log();
    let mode = std::fs::metadata(&skrd.state_file)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o644);
    let state_path = skrd.state_file.clone();
    // A canary as long as a key, not all printable, sent through the bus as a byte array: the
    // search below must find it in the capture, or it would prove nothing about the keys.
    let canary: Vec<u8> = (0..32u8).map(|i| i.wrapping_mul(37) ^ 0x80).collect();
    rt.block_on(async {
        let conn = connect(&bus.address).await;
        let r = conn
            .call_method(
                Some("org.freedesktop.DBus"),
                "/org/freedesktop/DBus",
                Some("org.freedesktop.DBus"),
                "SkrdTestCanary",
                &(canary.clone(),),
            )
            .await;
        assert!(r.is_err(), "the bus has no such method");
    });
    assert_eq!(skrd.stop(), 0);
    // The keys went with the process: the state file no longer says they are cached, and it
    // says when the daemon stopped.
    let after = skrd::format::state::parse(&std::fs::read(&state_path).unwrap()).unwrap();
    assert!(after.stopped_at.is_some(), "{after:?}");
    assert!(after.keys.iter().all(|k| !k.cached), "{after:?}");
    std::thread::sleep(Duration::from_millis(300));
    let _ = monitor.kill();
    let _ = monitor.wait();
    let capture = std::fs::read(&monitor_out).unwrap();
    assert!(
        String::from_utf8_lossy(&capture).contains("ReleaseKey"),
        "the monitor saw no call: {}{}",
        String::from_utf8_lossy(&capture),
        std::fs::read_to_string(work.path().join("monitor.err")).unwrap()
    );
    assert!(
        find_secret(&capture, &canary).is_some(),
        "the canary byte array was not found in the dbus-monitor capture: the search is blind"
    );
    // StateChanged went out (dbus-monitor prints "signal ... member=StateChanged").
    assert!(
        String::from_utf8_lossy(&capture).contains("member=StateChanged"),
        "no StateChanged signal seen"
    );
    assert!(
        log.contains("ReleaseKey allowed") && log.contains("ReleaseKey denied"),
        "{log}"
    );
    for key in [&disk, &other] {
        assert_no_secret("skrd's stderr", log.as_bytes(), key);
        assert_no_secret("/proc/PID/environ", &environ, key);
        assert_no_secret("/proc/PID/cmdline", &cmdline, key);
        assert_no_secret("the state file", &state, key);
        assert_no_secret("the dbus-monitor capture", &capture, key);
    }

    // The daemon is gone: skrctl status falls back to the state file and says so.
    let (code, out, err, _) = skrctl(
        &env,
        &[
            "status",
            "--json",
            "--bus-address",
            &bus.address,
            "--state-file",
            state_path.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["source"], "state-file");
    assert_eq!(v["healthy"], true);
    assert_eq!(v["state"]["keys"][0]["name"], "disk");
    assert_eq!(v["state"]["keys"][0]["cached"], false);
    let (code, out, err, _) = skrctl(
        &env,
        &[
            "status",
            "--bus-address",
            &bus.address,
            "--state-file",
            state_path.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("the daemon stopped at") && out.contains("no key is cached"),
        "{out}"
    );
    // Neither daemon nor state file: unusable (2).
    let (code, out, _, _) = skrctl(
        &env,
        &[
            "status",
            "--json",
            "--bus-address",
            &bus.address,
            "--state-file",
            "/nonexistent/state.json",
        ],
    );
    assert_eq!(code, 2, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["error"]["code"], "status-unavailable");
}

async fn futures_join<T: Send + 'static>(
    handles: impl Iterator<Item = tokio::task::JoinHandle<T>>,
) -> Vec<Result<T, tokio::task::JoinError>> {
    let mut out = Vec::new();
    for h in handles.collect::<Vec<_>>() {
        out.push(h.await);
    }
    out
}

/// The pid owning org.skrd.KeyRelease1.
async fn owner_pid(conn: &zbus::Connection) -> u32 {
    let proxy = zbus::fdo::DBusProxy::new(conn).await.unwrap();
    let name = zbus::names::BusName::try_from("org.skrd.KeyRelease1").unwrap();
    proxy.get_connection_unix_process_id(name).await.unwrap()
}

/// A ReleaseKey call running on the test's runtime: the key, or the D-Bus error.
type Caller = tokio::task::JoinHandle<Result<Vec<u8>, (String, String)>>;

/// D-Bus activation and restarts with calls in flight. The bus starts skrd itself on the first
/// call (as in production): 10 callers waiting for the activated daemon's initial attestation
/// all get the key. Then the emulator delays every attestation by 3 s, skrd is stopped
/// (SIGTERM), and 10 callers activate a second skrd; once it has accepted all 10 calls (they
/// wait for its initial attestation), it gets SIGTERM too: every caller ends with either the key
/// or skrd's clear `org.skrd.KeyRelease1.Error.Stopping` (never a call left unanswered, a
/// `NoReply` or a dropped connection), and none hangs. Without the delay, 10 more callers
/// activate a third skrd and all get the key; it took over the state file the second one
/// left, marked stopped.
#[test]
fn clients_with_calls_in_flight_through_activation_and_restarts() {
    let (env, _tpm, mut keys) = env_with_keys(&["disk"]);
    let (url, key) = keys.remove(0);
    env.append_config(&format!(
        "\n[keys.disk]\nurl = \"{url}\"\nallow_uids = [0]\n"
    ));
    let work = tempfile::tempdir().unwrap();
    let log = work.path().join("skrd.log");
    let exec = format!(
        "/bin/sh -c \"exec {} --config {} --bus-address $DBUS_STARTER_ADDRESS --state-file {}/state.json --key-socket {}/luks.sock --sysfs-root {}/sys 2>>{}\"",
        env!("CARGO_BIN_EXE_skrd"),
        env.config_path().display(),
        work.path().display(),
        work.path().display(),
        work.path().display(),
        log.display()
    );
    let bus = Bus::start_with_activation(Some(&exec));
    let rt = rt();
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let burst = |n: usize| {
        let tasks: Vec<_> = (0..n)
            .map(|_| {
                let address = bus.address.clone();
                rt.spawn(async move {
                    let c = connect(&address).await;
                    release(&c, "disk").await
                })
            })
            .collect();
        tasks
    };
    let results = |tasks: Vec<Caller>| {
        rt.block_on(async {
            let mut out = Vec::new();
            for t in tasks {
                out.push(
                    tokio::time::timeout(Duration::from_secs(120), t)
                        .await
                        .expect("a caller got no answer")
                        .unwrap(),
                );
            }
            out
        })
    };
    let owner = || rt.block_on(async { owner_pid(&connect(&bus.address).await).await });
    let stop = |pid: u32| {
        // SAFETY: kill(2) on a daemon the bus started for this test.
        assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGTERM) }, 0);
        let t = std::time::Instant::now();
        while std::path::Path::new(&format!("/proc/{pid}")).exists() {
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "skrd ignored SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };

    // Nobody owns the name: 10 callers wait for the activated daemon's initial attestation.
    for r in results(burst(10)) {
        assert_eq!(r.unwrap_or_else(|e| panic!("{e:?}\n{}", read_log())), key);
    }
    let first = owner();
    stop(first);

    // Restart with calls in flight.
    env.faults(&serde_json::json!({"attestation-azureguest": {"delay_ms": 3000}}));
    let allowed_before = read_log().matches("ReleaseKey allowed").count();
    let tasks = burst(10);
    let t = std::time::Instant::now();
    while read_log().matches("ReleaseKey allowed").count() < allowed_before + 10 {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the second skrd did not accept the calls: {}",
            read_log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let second = owner();
    assert_ne!(first, second, "a new daemon answered");
    stop(second);
    let outcomes = results(tasks);
    for r in &outcomes {
        match r {
            Ok(bytes) => assert_eq!(bytes, &key),
            Err((name, msg)) => {
                assert_eq!(name, "org.skrd.KeyRelease1.Error.Stopping", "{msg}");
                assert!(
                    msg.contains("call again") && msg.contains("(daemon-stopping)"),
                    "{msg}"
                );
            }
        }
    }
    assert!(
        outcomes.iter().any(Result::is_err),
        "SIGTERM came during the 3 s attestation: some call must have been stopped"
    );
    let st = skrd::format::state::parse(&std::fs::read(work.path().join("state.json")).unwrap())
        .unwrap();
    assert!(
        st.stopped_at.is_some() && st.keys.iter().all(|k| !k.cached),
        "{st:?}"
    );

    // And back: a third daemon, activated by the next callers, serves them all.
    env.faults(&serde_json::json!({}));
    for r in results(burst(10)) {
        assert_eq!(r.unwrap(), key);
    }
    let third = owner();
    assert!(third != first && third != second);
    let text = read_log();
    assert_eq!(
        text.matches("took over the state file").count(),
        2,
        "{text}"
    );
    stop(third);
}

/// The owner of `/proc/PID/<file>`.
fn proc_owner(pid: u32, file: &str) -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(format!("/proc/{pid}/{file}"))
        .unwrap()
        .uid()
}

/// skrd makes itself non-dumpable (PR_SET_DUMPABLE 0: no core file, no ptrace or
/// /proc/PID/mem, environ, fd access by processes of its own uid). The kernel shows it: the
/// /proc/PID files of a non-dumpable process belong to root (proc(5), "/proc/pid"), whatever
/// its uid. So skrd runs here as uid 65534 (the test bus lets that uid own the name; nothing
/// to attest, an empty configuration) and its files must show uid 0, while a dumpable process
/// of the same uid owns its own files.
#[test]
fn daemon_process_is_not_dumpable() {
    let work = tempfile::tempdir().unwrap();
    std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let config = work.path().join("skrd.toml");
    std::fs::write(&config, "").unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let bus = Bus::start_with_policy(
        r#"<policy user="nobody"><allow own="org.skrd.KeyRelease1"/></policy>"#,
    );
    let notify_path = work.path().join("notify");
    let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).unwrap();
    std::fs::set_permissions(&notify_path, std::fs::Permissions::from_mode(0o777)).unwrap();
    let stderr = work.path().join("skrd.log");
    let child = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_skrd"))
        .arg("--config")
        .arg(&config)
        .args(["--bus-address", &bus.address])
        .arg("--state-file")
        .arg(work.path().join("run/state.json"))
        .arg("--key-socket")
        .arg(work.path().join("luks.sock"))
        .env("NOTIFY_SOCKET", &notify_path)
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let skrd = Skrd {
        child,
        stderr,
        notes: Notes::read(notify),
        state_file: work.path().join("run/state.json"),
    };
    skrd.wait_notify("READY=1");
    // setpriv execs skrd: the child's pid is skrd's.
    let pid = skrd.child.id();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(
        status.lines().any(|l| l.starts_with("Uid:\t65534\t65534")),
        "{status}"
    );
    for file in ["environ", "status", "mem", "cmdline"] {
        assert_eq!(proc_owner(pid, file), 0, "/proc/{pid}/{file} of skrd");
    }
    // The control: the same uid, dumpable, owns its /proc files (once `sleep` runs: setpriv
    // itself is non-dumpable between its setresuid and the exec).
    let mut sleeper = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "sleep",
            "60",
        ])
        .spawn()
        .unwrap();
    let t = std::time::Instant::now();
    while std::fs::read_to_string(format!("/proc/{}/comm", sleeper.id())).unwrap() != "sleep\n" {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "setpriv did not exec"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let control = proc_owner(sleeper.id(), "environ");
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    assert_eq!(control, 65534, "a dumpable process of uid 65534");
    assert_eq!(skrd.stop(), 0);
}

/// `StateChanged` is sent once per change of the state document, in order: the daemon's
/// manager (the library's, served by `skrd::daemon::dbus::serve` on the private bus with the
/// shipped policy) changes the document 200 times in a row, as fast as it can; a client
/// subscribed to the signal receives 200 documents, attempts 1..=200 in order (a "latest value"
/// channel would merge most of them).
#[test]
fn every_state_change_is_one_state_changed_signal() {
    use futures_util::StreamExt;
    let bus = Bus::start();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("skrd.toml");
    std::fs::write(&config, "").unwrap();
    let settings = skrd::config::load_from(&config, None).unwrap();
    let uuid = "0b5d1c2e-8d1f-4b7a-9d0e-5c1f2a3b4c5d";
    const N: u32 = 200;
    rt().block_on(async {
        let conn = skrd::daemon::dbus::connect(Some(&bus.address))
            .await
            .unwrap();
        let manager = skrd::daemon::Manager::new(
            Some(config.clone()),
            dir.path().join("state.json"),
            dir.path().join("sys"),
            settings,
            skrd::daemon::notify::Notifier::from_env(),
        );
        skrd::daemon::dbus::serve(&conn, manager.clone(), Some(&bus.address))
            .await
            .unwrap();
        let client = connect(&bus.address).await;
        let rule = zbus::MatchRule::builder()
            .msg_type(zbus::message::Type::Signal)
            .interface("org.skrd.KeyRelease1.Manager")
            .unwrap()
            .member("StateChanged")
            .unwrap()
            .build();
        let mut signals = zbus::MessageStream::for_match_rule(rule, &client, None)
            .await
            .unwrap();
        for i in 1..=N {
            manager.update(|st| st.volume_mut("data", uuid, 0).attempts = i);
        }
        let mut seen = Vec::new();
        while seen.last() != Some(&N) {
            let msg = tokio::time::timeout(Duration::from_secs(60), signals.next())
                .await
                .unwrap_or_else(|_| panic!("only {} signals: {seen:?}", seen.len()))
                .unwrap()
                .unwrap();
            let json: String = msg.body().deserialize().unwrap();
            let st = skrd::format::state::parse(json.as_bytes()).unwrap();
            seen.push(st.volume("data").unwrap().attempts);
        }
        assert_eq!(seen, (1..=N).collect::<Vec<_>>());
    });
}

/// A cgroup named like a systemd unit, removed on drop: processes moved into it show the unit
/// in /proc/PID/cgroup as systemd's own units do. On cgroup v2 (`/sys/fs/cgroup` itself) or a
/// hybrid layout (`/sys/fs/cgroup/unified`, the `0::` line) it goes there; on cgroup v1 only,
/// under the `name=systemd` hierarchy.
struct UnitCgroup {
    dir: std::path::PathBuf,
}

impl UnitCgroup {
    fn new(unit: &str) -> Self {
        let root = std::path::Path::new("/sys/fs/cgroup");
        let base = if root.join("cgroup.controllers").exists() {
            root.to_path_buf()
        } else if root.join("unified/cgroup.procs").exists() {
            root.join("unified")
        } else {
            root.join("systemd")
        };
        let dir = base.join(unit);
        std::fs::create_dir(&dir)
            .unwrap_or_else(|e| panic!("cannot create the cgroup {}: {e}", dir.display()));
        Self { dir }
    }
}

impl Drop for UnitCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// busctl ReleaseKey(key) as uid 65534 with `groups` (setpriv), in `cgroup` when given.
fn busctl_release_as_nobody(
    address: &str,
    key: &str,
    groups: &str,
    cgroup: Option<&UnitCgroup>,
) -> (i32, String) {
    let setpriv = format!(
        "exec setpriv --reuid=65534 --regid=65534 {groups} busctl --address={address} call \
         org.skrd.KeyRelease1 /org/skrd/KeyRelease1 org.skrd.KeyRelease1.Manager ReleaseKey s {key}"
    );
    let script = match cgroup {
        Some(cg) => format!("echo $$ > {}/cgroup.procs && {setpriv}", cg.dir.display()),
        None => setpriv,
    };
    let out = Command::new("sh").args(["-c", &script]).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// Grants by group and by systemd unit, over the bus: busctl runs as uid 65534 (in no
/// allow_uids). With supplementary group 4242 it receives the key allowed to gid 4242 (a
/// descriptor: busctl prints `h N`), without it it is denied; run inside a cgroup named
/// `skrd-acl-test-PID.service` (what the caller's /proc/PID/cgroup then shows, as for a
/// process of that unit) it receives the key allowed to that unit, outside it is denied. skrd
/// logs the matching rule with the caller.
#[test]
fn acl_grants_by_group_and_by_unit_over_the_bus() {
    let (env, _tpm, keys) = env_with_keys(&["grp", "svc"]);
    let [(grp_url, _), (svc_url, _)] = <[_; 2]>::try_from(keys).unwrap();
    let unit = format!("skrd-acl-test-{}.service", std::process::id());
    env.append_config(&format!(
        "\n[keys.grp]\nurl = \"{grp_url}\"\nallow_gids = [4242]\n\n\
         [keys.svc]\nurl = \"{svc_url}\"\nallow_units = [\"{unit}\"]\n"
    ));
    let bus = Bus::start();
    let work = tempfile::tempdir().unwrap();
    let skrd = Skrd::start(&env, &bus, work.path());
    skrd.wait_notify("READY=1");

    let (code, out) = busctl_release_as_nobody(&bus.address, "grp", "--groups=4242", None);
    assert_eq!(code, 0, "{out}\n{}", skrd.log());
    assert!(out.starts_with("h "), "{out}");
    let line = log_line(&skrd.log(), "ReleaseKey allowed key=\"grp\"");
    assert!(
        line.contains("caller_uid=65534") && line.contains("rule=group 4242"),
        "{line}"
    );
    let (code, out) = busctl_release_as_nobody(&bus.address, "grp", "--clear-groups", None);
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains("access to key \"grp\" denied for uid 65534"),
        "{out}"
    );

    let cgroup = UnitCgroup::new(&unit);
    let (code, out) =
        busctl_release_as_nobody(&bus.address, "svc", "--clear-groups", Some(&cgroup));
    assert_eq!(code, 0, "{out}\n{}", skrd.log());
    assert!(out.starts_with("h "), "{out}");
    let line = log_line(&skrd.log(), "ReleaseKey allowed key=\"svc\"");
    assert!(
        line.contains(&format!("caller_unit={unit}"))
            && line.contains(&format!("rule=unit {unit}")),
        "{line}"
    );
    let (code, out) = busctl_release_as_nobody(&bus.address, "svc", "--clear-groups", None);
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains("access to key \"svc\" denied for uid 65534"),
        "{out}"
    );
    drop(cgroup);
    assert_eq!(skrd.stop(), 0);
}
