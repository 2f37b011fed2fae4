//! Bench of the D-Bus key service (issue 7 "Bench"): skrd (`SKRD_BIN`, default the dev build)
//! against skr-emulator + a provisioned swtpm on a private dbus-daemon; zbus clients call
//! ReleaseKey of a cached key (the memfd is read each time). Printed, each with its baseline of
//! the same run as a ratio (a Peer.Ping round trip to the daemon, same bus, same load):
//! - closed loop: p50/p99 latency and requests/s with 1, 2, 4 and 8 callers, each calling again
//!   as soon as it has its answer;
//! - open loop: requests scheduled at a fixed rate (`BENCH_RATE`, default 5,000/s) for
//!   `BENCH_SECS` (default 3 s) over 8 connections, whatever the answers do; each latency is
//!   measured from the request's scheduled send time, not from when it could be sent, so a stall
//!   counts for every request it delays (no coordinated omission); p50, p99, p99.9, max, and the
//!   rate achieved; and the CPU time skrd and dbus-daemon spent per call (from /proc/PID/stat);
//! - skrd's idle RSS (baseline: the bus's dbus-daemon), logging to stderr and, in a second
//!   instance, to a real journald (native protocol, as under systemd);
//! - the stripped binary size (baseline: dbus-daemon's).
//!
//! Figures only; nothing is asserted (`make bench-daemon`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/daemon_common/mod.rs"]
mod daemon_common;
#[path = "../tests/flow_common.rs"]
mod flow_common;

use daemon_common::*;
use std::time::{Duration, Instant};

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

/// p50, p99 (microseconds) and requests per second of one measured loop.
#[derive(Clone, Copy)]
struct Figures {
    p50: f64,
    p99: f64,
    rps: f64,
}

fn figures(mut lat: Vec<Duration>, wall: Duration) -> Figures {
    lat.sort();
    Figures {
        p50: percentile(&lat, 0.5),
        p99: percentile(&lat, 0.99),
        rps: lat.len() as f64 / wall.as_secs_f64(),
    }
}

fn print_pair(what: &str, base: Figures, f: Figures) {
    println!(
        "{what:<30} p50 {:>7.1} us ({:.2}x)  p99 {:>7.1} us ({:.2}x)  {:>7.0} req/s ({:.2}x)",
        f.p50,
        f.p50 / base.p50,
        f.p99,
        f.p99 / base.p99,
        f.rps,
        f.rps / base.rps
    );
    println!(
        "{:<30} p50 {:>7.1} us          p99 {:>7.1} us          {:>7.0} req/s",
        "  baseline Peer.Ping", base.p50, base.p99, base.rps
    );
}

/// Bytes of `path` once stripped of every symbol (strip(1) on a copy), else as is.
fn stripped_size(path: &std::path::Path, dir: &std::path::Path) -> u64 {
    let copy = dir.join(format!(
        "stripped-{}",
        path.file_name().unwrap().to_string_lossy()
    ));
    let ok = std::process::Command::new("strip")
        .arg("--strip-all")
        .arg("-o")
        .arg(&copy)
        .arg(path)
        .status()
        .is_ok_and(|s| s.success());
    std::fs::metadata(if ok { &copy } else { path })
        .unwrap()
        .len()
}

/// CPU time (user + system) of process `pid` so far, in microseconds (/proc/PID/stat, clock
/// ticks of 1/100 s: meaningful over thousands of calls).
fn cpu_us(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the ")" that ends the command name: state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    // SAFETY: sysconf with a constant argument.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks / hz * 1e6
}

fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS").unwrap_or(0)
}

/// The resident KiB of each file mapped into `pid` (/proc/PID/smaps, summed per path), largest
/// first: where file-backed RSS goes.
fn resident_files(pid: u32) -> Vec<(String, u64)> {
    let mut by_path: std::collections::BTreeMap<String, u64> = Default::default();
    for (header, fields) in smaps(pid) {
        let Some(path) = skrd::footprint::parse_mapping(&header)
            .and_then(|m| m.path)
            .filter(|p| p.starts_with('/'))
        else {
            continue;
        };
        let kib: u64 = fields
            .iter()
            .find_map(|f| {
                f.strip_prefix("Rss:")?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()
            })
            .unwrap_or(0);
        *by_path.entry(path.to_string()).or_default() += kib;
    }
    let mut v: Vec<(String, u64)> = by_path.into_iter().collect();
    v.sort_by_key(|e| std::cmp::Reverse(e.1));
    v
}

/// One call: ReleaseKey("bench") (checking the 32 key bytes), or Peer.Ping.
async fn one_call(c: &zbus::Connection, release_key: bool) {
    if release_key {
        let bytes = release(c, "bench").await.unwrap();
        assert_eq!(bytes.len(), 32);
    } else {
        c.call_method(
            Some("org.skrd.KeyRelease1"),
            "/org/skrd/KeyRelease1",
            Some("org.freedesktop.DBus.Peer"),
            "Ping",
            &(),
        )
        .await
        .unwrap();
    }
}

/// `n` calls of `method` (Peer.Ping or ReleaseKey) spread over `callers` connections.
async fn run(address: &str, callers: usize, n: usize, release_key: bool) -> Figures {
    let t0 = Instant::now();
    let tasks: Vec<_> = (0..callers)
        .map(|_| {
            let address = address.to_string();
            tokio::spawn(async move {
                let c = connect(&address).await;
                let mut lat = Vec::with_capacity(n / callers);
                for _ in 0..n / callers {
                    let t = Instant::now();
                    one_call(&c, release_key).await;
                    lat.push(t.elapsed());
                }
                lat
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    figures(all, t0.elapsed())
}

/// Latency percentiles (microseconds) of an open-loop run.
struct OpenFigures {
    p50: f64,
    p99: f64,
    p999: f64,
    max: f64,
    /// Answers per second over the run (from the first scheduled send to the last answer).
    achieved: f64,
}

/// Open loop: `rate` requests per second for `secs`, spread over `conns` connections. A pacer
/// thread wakes at each scheduled time (std::thread::sleep, tens of microseconds late at
/// most) and hands the scheduled instant to the runtime, which sends the call at once on the
/// next connection (calls are pipelined on a connection); the latency is the answer time
/// minus the scheduled time.
async fn open_loop(
    address: &str,
    rate: f64,
    secs: f64,
    conns: usize,
    release_key: bool,
) -> OpenFigures {
    let mut pool = Vec::with_capacity(conns);
    for _ in 0..conns {
        pool.push(connect(address).await);
    }
    let total = (rate * secs) as usize;
    let period = Duration::from_secs_f64(1.0 / rate);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let t0 = Instant::now() + Duration::from_millis(20);
    std::thread::spawn(move || {
        for i in 0..total {
            let at = t0 + period.mul_f64(i as f64);
            let now = Instant::now();
            if at > now {
                std::thread::sleep(at - now);
            }
            if tx.send(at).is_err() {
                return;
            }
        }
    });
    let mut tasks = Vec::with_capacity(total);
    let mut i = 0usize;
    while let Some(at) = rx.recv().await {
        let c = pool[i % conns].clone();
        i += 1;
        tasks.push(tokio::spawn(async move {
            one_call(&c, release_key).await;
            (at.elapsed(), Instant::now())
        }));
    }
    let mut lat = Vec::with_capacity(total);
    let mut last = t0;
    for t in tasks {
        let (l, done) = t.await.unwrap();
        lat.push(l);
        last = last.max(done);
    }
    lat.sort();
    OpenFigures {
        p50: percentile(&lat, 0.5),
        p99: percentile(&lat, 0.99),
        p999: percentile(&lat, 0.999),
        max: lat.last().unwrap().as_secs_f64() * 1e6,
        achieved: lat.len() as f64 / (last - t0).as_secs_f64(),
    }
}

fn print_open(rate: f64, base: &OpenFigures, f: &OpenFigures) {
    println!(
        "{:<30} p50 {:>7.1} us ({:.2}x)  p99 {:>7.1} us ({:.2}x)  p99.9 {:>7.1} us  max {:>8.1} us  {:>6.0} req/s achieved",
        format!("ReleaseKey open loop {rate:.0}/s"),
        f.p50,
        f.p50 / base.p50,
        f.p99,
        f.p99 / base.p99,
        f.p999,
        f.max,
        f.achieved
    );
    println!(
        "{:<30} p50 {:>7.1} us          p99 {:>7.1} us          p99.9 {:>7.1} us  max {:>8.1} us  {:>6.0} req/s achieved",
        "  baseline Peer.Ping", base.p50, base.p99, base.p999, base.max, base.achieved
    );
}

fn main() {
    let n: usize = std::env::var("BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        // `cargo test --all-targets` runs this without --bench: a short smoke run then.
        .unwrap_or(if std::env::args().any(|a| a == "--bench") {
            4000
        } else {
            80
        });
    let (env, _tpm, mut keys) = env_with_keys(&["bench"]);
    let (url, key) = keys.remove(0);
    env.append_config(&format!(
        "\n[keys.bench]\nurl = \"{url}\"\nallow_uids = [0]\n"
    ));
    let bus = Bus::start();
    let work = tempfile::tempdir().unwrap();
    let skrd = Skrd::start(&env, &bus, work.path());
    skrd.wait_notify("READY=1");
    let bin = std::env::var_os("SKRD_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_skrd").into());
    println!("skrd binary: {}", bin.display());
    let rt = rt();
    // The first calls after start-up: the code they run is faulted back in (the start-up's
    // read-only pages are released after the initial work: src/footprint.rs).
    std::thread::sleep(Duration::from_millis(200));
    rt.block_on(async {
        let conn = connect(&bus.address).await;
        let mut first = Vec::new();
        for _ in 0..3 {
            let t = Instant::now();
            assert_eq!(release(&conn, "bench").await.unwrap(), key);
            first.push(format!("{:.0} us", t.elapsed().as_secs_f64() * 1e6));
        }
        println!(
            "first 3 ReleaseKey calls after start-up: {}",
            first.join(", ")
        );
    });
    // Idle: after the initial work and the releases, nothing happening.
    std::thread::sleep(Duration::from_millis(1000));
    let idle = rss_kib(skrd.child.id());
    let (anon, file) = (
        status_kib(skrd.child.id(), "RssAnon").unwrap_or(0),
        status_kib(skrd.child.id(), "RssFile").unwrap_or(0),
    );
    let bus_rss = rss_kib(bus.child.id());
    rt.block_on(async {
        // Warm-up (connections, caches), not counted.
        run(&bus.address, 1, n / 10, true).await;
        for callers in [1, 2, 4, 8] {
            let base = run(&bus.address, callers, n, false).await;
            let f = run(&bus.address, callers, n, true).await;
            print_pair(
                &format!(
                    "ReleaseKey (cached), {callers} caller{}",
                    if callers > 1 { "s" } else { "" }
                ),
                base,
                f,
            );
        }
    });
    let rate: f64 = std::env::var("BENCH_RATE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000.0);
    let secs: f64 = std::env::var("BENCH_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if n >= 1000 { 3.0 } else { 0.2 });
    rt.block_on(async {
        // Warm-up at the rate, not counted.
        open_loop(&bus.address, rate, secs.min(1.0), 8, true).await;
        let (skrd_pid, bus_pid) = (skrd.child.id(), bus.child.id());
        let before = (cpu_us(skrd_pid), cpu_us(bus_pid));
        let base = open_loop(&bus.address, rate, secs, 8, false).await;
        let mid = (cpu_us(skrd_pid), cpu_us(bus_pid));
        let f = open_loop(&bus.address, rate, secs, 8, true).await;
        let after = (cpu_us(skrd_pid), cpu_us(bus_pid));
        print_open(rate, &base, &f);
        let calls = rate * secs;
        println!(
            "CPU per call (utime+stime over the open loop): skrd {:.1} us ReleaseKey vs {:.1} us Peer.Ping ({:.2}x); dbus-daemon {:.1} vs {:.1} us",
            (after.0 - mid.0) / calls,
            (mid.0 - before.0) / calls,
            (after.0 - mid.0) / (mid.0 - before.0).max(1.0),
            (after.1 - mid.1) / calls,
            (mid.1 - before.1) / calls,
        );
    });
    println!("goal: ReleaseKey p99 < 1000 us and >= 5000 req/s on 2 cores");
    println!(
        "skrd idle RSS {} KiB ({:.2} MiB: {} KiB anonymous, {} KiB file-backed; {:.2}x the bus's dbus-daemon, {} KiB); goal < 15 MiB",
        idle,
        idle as f64 / 1024.0,
        anon,
        file,
        idle as f64 / bus_rss as f64,
        bus_rss
    );
    println!("skrd RSS after the run {} KiB", rss_kib(skrd.child.id()));
    let files = resident_files(skrd.child.id());
    let shown: Vec<String> = files
        .iter()
        .take(6)
        .map(|(p, k)| format!("{} {k} KiB", p.rsplit('/').next().unwrap_or(p)))
        .collect();
    println!("  largest file-backed: {}", shown.join(", "));
    // The same daemon logging to a real journald (native protocol, as under systemd), idle.
    let jbus = Bus::start();
    let jwork = tempfile::tempdir().unwrap();
    let journal = Journal::new(jwork.path());
    let jskrd = Skrd::start_with(&env, &jbus, jwork.path(), Some(&journal));
    jskrd.wait_notify("READY=1");
    rt.block_on(async {
        let conn = connect(&jbus.address).await;
        assert_eq!(release(&conn, "bench").await.unwrap(), key);
    });
    std::thread::sleep(Duration::from_millis(1000));
    let jidle = rss_kib(jskrd.child.id());
    println!(
        "skrd idle RSS logging to journald {} KiB ({:.2} MiB); goal < 15 MiB",
        jidle,
        jidle as f64 / 1024.0
    );
    assert_eq!(jskrd.stop(), 0);
    let size = stripped_size(&bin, work.path());
    let dbus_bin = std::path::Path::new("/usr/bin/dbus-daemon");
    let dbus_size = stripped_size(dbus_bin, work.path());
    println!(
        "skrd stripped size {} bytes ({:.2} MiB; {:.1}x dbus-daemon, {} bytes); goal < 10 MiB",
        size,
        size as f64 / 1048576.0,
        size as f64 / dbus_size as f64,
        dbus_size
    );
    assert_eq!(skrd.stop(), 0);
}
