//! Bench of the D-Bus key service (issue 7 "Bench"): skrd against skr-emulator + a provisioned
//! swtpm on a private dbus-daemon; a Rust zbus client loop calls ReleaseKey of a cached key
//! (the memfd is read each time). Printed: p50/p99 latency and requests/s, one caller and
//! N concurrent callers (2 cores), the baseline of the same run (a Peer.Ping round trip to the
//! daemon), and skrd's idle RSS. Figures only; nothing is asserted (`make bench-daemon`).
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

fn report(what: &str, mut lat: Vec<Duration>, wall: Duration) {
    lat.sort();
    println!(
        "{what:<28} n={:<6} p50={:>8.1} us  p99={:>8.1} us  {:>8.0} req/s",
        lat.len(),
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat.len() as f64 / wall.as_secs_f64()
    );
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let n: usize = std::env::var("BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        // `cargo test --all-targets` runs this without --bench: a short smoke run then.
        .unwrap_or(if std::env::args().any(|a| a == "--bench") {
            2000
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
    std::thread::sleep(Duration::from_millis(500));
    println!("skrd idle RSS: {} KiB", rss_kib(skrd.child.id()));
    let rt = rt();
    rt.block_on(async {
        let conn = connect(&bus.address).await;
        assert_eq!(release(&conn, "bench").await.unwrap(), key);
        // Baseline: Peer.Ping to the daemon (same bus, same connection).
        let t0 = Instant::now();
        let mut lat = Vec::with_capacity(n);
        for _ in 0..n {
            let t = Instant::now();
            conn.call_method(
                Some("org.skrd.KeyRelease1"),
                "/org/skrd/KeyRelease1",
                Some("org.freedesktop.DBus.Peer"),
                "Ping",
                &(),
            )
            .await
            .unwrap();
            lat.push(t.elapsed());
        }
        report("baseline Peer.Ping", lat, t0.elapsed());
        let t0 = Instant::now();
        let mut lat = Vec::with_capacity(n);
        for _ in 0..n {
            let t = Instant::now();
            let bytes = release(&conn, "bench").await.unwrap();
            lat.push(t.elapsed());
            assert_eq!(bytes.len(), key.len());
        }
        report("ReleaseKey (cached), 1 caller", lat, t0.elapsed());
        let callers = 8;
        let t0 = Instant::now();
        let tasks: Vec<_> = (0..callers)
            .map(|_| {
                let address = bus.address.clone();
                tokio::spawn(async move {
                    let c = connect(&address).await;
                    let mut lat = Vec::new();
                    for _ in 0..n / callers {
                        let t = Instant::now();
                        release(&c, "bench").await.unwrap();
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
        report("ReleaseKey (cached), 8 callers", all, t0.elapsed());
    });
    println!("skrd RSS after the run: {} KiB", rss_kib(skrd.child.id()));
    assert_eq!(skrd.stop(), 0);
}
