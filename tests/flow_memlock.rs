//! Key material in locked memory (src/secret.rs): `lock_process_memory` locks the whole
//! process (`mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT)`) in `skrd` and in the `skrctl`
//! commands that hold keys, checked from the kernel's side (`/proc/PID/status` `VmLck`, smaps
//! `VmFlags`); the daemon runs and releases keys within the `LimitMEMLOCK=` of
//! systemd/skrd.service without CAP_IPC_LOCK, as the unit runs it; without any allowance the
//! programs say so once, with `memory-lock-failed`, and still work.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "flow_common.rs"]
mod flow_common;

#[path = "daemon_common/mod.rs"]
mod daemon_common;

use daemon_common::{connect, env_with_keys, release, rt, smaps, status_kib, Bus, Skrd};
use flow_common::*;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// `LimitMEMLOCK=` of systemd/skrd.service in bytes (systemd's K/M/G are powers of 1024).
fn unit_memlock_limit() -> u64 {
    let unit =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/skrd.service"))
            .unwrap();
    let value = unit
        .lines()
        .find_map(|l| l.strip_prefix("LimitMEMLOCK="))
        .expect("skrd.service sets LimitMEMLOCK=");
    let (num, unit) = value.split_at(
        value
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(value.len()),
    );
    let n: u64 = num.parse().unwrap();
    n * match unit {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        other => panic!("unit {other:?}"),
    }
}

/// The command prefix that runs a program as skrd.service does with respect to memory locking:
/// `RLIMIT_MEMLOCK` = `limit` (soft and hard) and no CAP_IPC_LOCK (the unit grants no
/// capability), which makes the kernel enforce the limit even for root.
fn limited(limit: u64) -> Command {
    let mut c = Command::new("prlimit");
    c.arg(format!("--memlock={limit}:{limit}")).args([
        "--",
        "setpriv",
        "--bounding-set=-ipc_lock",
        "--inh-caps=-ipc_lock",
        "--",
    ]);
    c
}

/// Walks /proc/PID/smaps: each mapping that `skrd::footprint` does not count as a read-only
/// file mapping must be locked (`lo` in VmFlags), except the kernel's special mappings; each
/// one it counts must not be. Returns the bytes of address space of each kind.
fn check_locked_mappings(pid: u32) -> (usize, usize) {
    let (mut locked, mut read_only) = (0, 0);
    for (header, fields) in smaps(pid) {
        let m = skrd::footprint::parse_mapping(&header).unwrap();
        let flags = fields
            .iter()
            .find_map(|f| f.strip_prefix("VmFlags:"))
            .unwrap_or_else(|| panic!("no VmFlags for {header}"));
        let is_locked = flags.split_whitespace().any(|f| f == "lo");
        if m.is_read_only_file() {
            assert!(
                !is_locked,
                "a read-only file mapping is still locked: {header}"
            );
            read_only += m.size();
        } else if ["[vvar]", "[vdso]", "[vsyscall]", "[vvar_vclock]"]
            .iter()
            .any(|s| m.path == Some(s))
        {
            continue;
        } else {
            assert!(
                is_locked,
                "a mapping that can hold a secret is not locked: {header}"
            );
            locked += m.size();
        }
    }
    (locked, read_only)
}

#[test]
fn the_daemon_runs_locked_within_its_units_limit() {
    // The unit's limit is checked against the kernel's own accounting: with MCL_FUTURE, every
    // mapping counts in full towards RLIMIT_MEMLOCK (`locked_vm` = VmLck), and each new
    // mapping is refused once VmLck + its size would pass the limit. VmPeak, the largest the
    // address space has been, bounds VmLck over the daemon's life. (The test process may not
    // raise RLIMIT_MEMLOCK to the unit's value, which needs CAP_SYS_RESOURCE; it keeps
    // CAP_IPC_LOCK instead, which changes the enforcement, not the accounting.)
    let limit_kib = unit_memlock_limit() / 1024;
    let (env, _tpm, keys) = env_with_keys(&["disk", "other"]);
    let [(url, key), (other_url, other)] = <[_; 2]>::try_from(keys).unwrap();
    env.append_config(&format!(
        "\n[keys.disk]\nurl = \"{url}\"\nallow_uids = [0]\n\n[keys.other]\nurl = \"{other_url}\"\nallow_uids = [0]\n"
    ));
    let bus = Bus::start();
    let work = tempfile::tempdir().unwrap();
    let skrd = Skrd::start_through(None, &env, &bus, work.path());
    skrd.wait_notify("READY=1");
    let pid = skrd.child.id();
    let field = |f: &str| status_kib(pid, f).unwrap();
    let idle = (field("VmLck"), field("VmRSS"));
    // Keys released and handed out: attestation, TPM decrypt, unwrap, 20 concurrent callers.
    rt().block_on(async {
        let calls = (0..20).map(|i| {
            let address = bus.address.clone();
            let name = if i % 2 == 0 { "disk" } else { "other" };
            tokio::spawn(async move { release(&connect(&address).await, name).await })
        });
        for (i, c) in calls.enumerate() {
            let got = c.await.unwrap().unwrap();
            assert_eq!(&got, if i % 2 == 0 { &key } else { &other });
        }
    });
    let (lck, size, peak, rss, hwm) = (
        field("VmLck"),
        field("VmSize"),
        field("VmPeak"),
        field("VmRSS"),
        field("VmHWM"),
    );
    eprintln!(
        "skrd: idle VmLck {} KiB, VmRSS {} KiB; after 20 releases VmLck {lck} KiB, \
         VmSize {size} KiB, VmPeak {peak} KiB, VmRSS {rss} KiB, VmHWM {hwm} KiB; \
         LimitMEMLOCK={limit_kib} KiB",
        idle.0, idle.1
    );
    let log = skrd.log();
    assert!(!log.contains("memory-lock-failed"), "{log}");
    // Locked: every mapping that can hold a secret (anonymous or writable: heap, stacks,
    // .data/.bss, shared memory), checked mapping by mapping in /proc/PID/smaps; the read-only
    // private file mappings (code, read-only data) were unlocked after the initial work
    // (src/footprint.rs), so VmLck is VmSize less exactly those.
    assert!(idle.0 > 0, "VmLck is 0: the daemon's memory is not locked");
    let (locked, read_only) = check_locked_mappings(pid);
    assert!(locked > 0 && read_only > 0, "{locked} {read_only}");
    let read_only_kib = u64::try_from(read_only / 1024).unwrap();
    assert!(
        lck + read_only_kib + 1024 >= size,
        "VmLck {lck} KiB + read-only file mappings {read_only_kib} KiB of VmSize {size} KiB"
    );
    // The unit's limit leaves at least half of itself free at the peak: room for more keys,
    // callers and the blocking pool's threads before a mapping could be refused.
    assert!(
        peak * 2 <= limit_kib,
        "VmPeak {peak} KiB: LimitMEMLOCK={limit_kib} KiB leaves no margin"
    );
    assert_eq!(skrd.stop(), 0);

    // The same daemon unlocked (no allowance at all: it warns and goes on): MCL_ONFAULT keeps
    // the locked daemon's idle resident size where the unlocked one's is.
    let work = tempfile::tempdir().unwrap();
    let unlocked = Skrd::start_through(Some(limited(0)), &env, &bus, work.path());
    unlocked.wait_notify("READY=1");
    let pid = unlocked.child.id();
    assert_eq!(status_kib(pid, "VmLck"), Some(0));
    let rss_unlocked = status_kib(pid, "VmRSS").unwrap();
    eprintln!(
        "skrd idle VmRSS: {} KiB locked, {rss_unlocked} KiB unlocked",
        idle.1
    );
    assert!(
        idle.1 <= rss_unlocked + 2048,
        "locking raised the idle RSS from {rss_unlocked} to {} KiB",
        idle.1
    );
    assert!(unlocked.log().contains("(code memory-lock-failed)"));
    assert_eq!(unlocked.stop(), 0);
}

/// `skrctl` locks itself for the commands that hold keys: seen from outside while `skrctl
/// release` waits for the (delayed) attestation, and not for `token verify`.
#[test]
fn skrctl_holds_keys_in_locked_memory() {
    let (env, _tpm) = env_with_swtpm();
    let p = policy(
        &env.authority(),
        "x-ms-isolation-tee.x-ms-attestation-type",
        "sevsnpvm",
    );
    let (url, key) = env.import("k", KeyType::Oct256, &p);
    env.faults(&serde_json::json!({"attestation-azureguest": {"delay_ms": 1500}}));
    let out_path = env.cfg_dir.path().join("key.bin");
    let mut child = Command::new(env!("CARGO_BIN_EXE_skrctl"))
        .arg("--config")
        .arg(env.config_path())
        .args(["release", "--key-url", &url, "--json", "--out-fd", "3"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn_with_fd3(&out_path);
    let pid = child.id();
    let mut most = 0;
    while child.try_wait().unwrap().is_none() {
        if let Some(v) = status_kib(pid, "VmLck") {
            most = most.max(v);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(std::fs::read(&out_path).unwrap(), key);
    assert!(most > 0, "skrctl release ran with VmLck 0");
    assert!(!stderr.contains("memory-lock-failed"), "{stderr}");
    eprintln!("skrctl release: VmLck up to {most} KiB");
}

trait SpawnWithFd3 {
    fn spawn_with_fd3(&mut self, path: &Path) -> std::process::Child;
}

impl SpawnWithFd3 for Command {
    /// Spawns with `path` (created) open as descriptor 3.
    fn spawn_with_fd3(&mut self, path: &Path) -> std::process::Child {
        use std::os::fd::IntoRawFd;
        use std::os::unix::process::CommandExt;
        let fd = std::fs::File::create(path).unwrap().into_raw_fd();
        // SAFETY: only async-signal-safe dup2 between fork and exec.
        unsafe {
            self.pre_exec(move || {
                if libc::dup2(fd, 3) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = self.spawn().unwrap();
        // SAFETY: our descriptor; the child has its own copy.
        unsafe { libc::close(fd) };
        child
    }
}

/// Without the allowance (RLIMIT_MEMLOCK at the 8 MiB default, no CAP_IPC_LOCK: an operator's
/// shell), the programs say so once with `memory-lock-failed`, naming the limit and the fix,
/// and still do their work (the secret buffers are then locked page by page).
#[test]
fn without_the_allowance_one_clear_warning_and_the_work_is_done() {
    let (env, _tpm) = env_with_swtpm();
    let mut cmd = limited(8 << 20);
    let out = cmd
        .arg(env!("CARGO_BIN_EXE_skrctl"))
        .arg("--config")
        .arg(env.config_path())
        .args(["attest", "--json"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["verified"], true);
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains("warning:")).collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    let w = warnings[0];
    assert!(
        w.starts_with("skrctl: warning: cannot lock the process memory"),
        "{w}"
    );
    assert!(w.contains("(code memory-lock-failed)"), "{w}");
    assert!(w.contains("8192 KiB") && w.contains("LimitMEMLOCK="), "{w}");
    // A command that holds no key does not try (no warning).
    let out = limited(8 << 20)
        .arg(env!("CARGO_BIN_EXE_skrctl"))
        .args([
            "--config",
            "/nonexistent.toml",
            "token",
            "verify",
            "/nonexistent.jwt",
        ])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&out.stderr).contains("warning:"));
}

/// In this process: `lock_process_memory` locks it (VmLck > 0, the heap's pages flagged `lo`)
/// without faulting everything in (MCL_ONFAULT: the resident size grows by far less than the
/// address space); a Secret then neither locks nor unlocks pages itself, so dropping one leaves
/// its page locked. (The unit-test process of src/secret.rs, which never locks itself, checks
/// the page reference counts.)
#[test]
fn the_process_lock_in_this_process() {
    use skrd::secret::{lock_process_memory, page_is_locked, process_memory_locked, Secret};
    let me = std::process::id();
    let (rss0, size0) = (
        status_kib(me, "VmRSS").unwrap(),
        status_kib(me, "VmSize").unwrap(),
    );
    assert_eq!(status_kib(me, "VmLck"), Some(0));
    // `make test` runs as root (CAP_IPC_LOCK); without it the limit must be >= 256 MiB.
    lock_process_memory().unwrap();
    assert!(process_memory_locked());
    let (lck, rss1) = (
        status_kib(me, "VmLck").unwrap(),
        status_kib(me, "VmRSS").unwrap(),
    );
    eprintln!("this process: VmSize {size0} KiB, VmRSS {rss0} -> {rss1} KiB, VmLck {lck} KiB");
    assert!(lck > 0);
    assert!(
        rss1.saturating_sub(rss0) < size0.saturating_sub(rss0) / 2,
        "RSS grew from {rss0} to {rss1} KiB of {size0}: pages were faulted in"
    );
    // Idempotent: the second call neither re-locks nor warns.
    lock_process_memory().unwrap();
    let a = Secret::new(vec![1; 32]);
    let b = Secret::new(vec![2; 32]);
    assert!(a.is_locked() && b.is_locked());
    let addr = a.expose().as_ptr() as usize;
    assert_eq!(page_is_locked(addr), Some(true));
    drop(a);
    // The heap page stays mapped (b and the allocator are on it) and stays locked.
    assert_eq!(page_is_locked(addr), Some(true));
    assert_eq!(page_is_locked(b.expose().as_ptr() as usize), Some(true));
    // Memory allocated after the call is locked too (MCL_FUTURE).
    let later = vec![3u8; 4 << 20];
    assert_eq!(
        page_is_locked(later.as_ptr() as usize + (2 << 20)),
        Some(true)
    );
}
