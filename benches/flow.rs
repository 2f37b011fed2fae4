//! Bench of one complete vTPM release (issue 6 "Bench"; DESIGN.md "What happens on a boot"):
//! skr-emulator + a swtpm provisioned like an Azure CVM, a latency L injected on every emulator
//! endpoint (`"*"` of the fault table), and complete runs with cold caches (new identity-token
//! cache, new provider-key cache, new HTTP connections): evidence, THIM, provider keys, identity
//! token, AzureGuest, token decryption in the TPM, release, unwrap in the TPM.
//!
//! Every figure printed for an L comes from ONE run: of `BENCH_RUNS` runs (default 5), the one
//! with the median total. Printed: the total, the per-step breakdown (evidence, each TPM
//! operation, each HTTP call with its attempts), the local work on the serial path, the network
//! part (total − that local work; a provider-key refetch counts as network), and its ratio to
//! 2 L against the goal — ≤ 1.10 at L = 50 ms: only attest → release is serial, the identity
//! token, THIM and the provider keys overlap the evidence collection — and the TPM commands of
//! the run. The ratio is taken on the network *latency*: the network part less the time the
//! emulator spent answering the two serial calls (each call's time beyond L, measured in the
//! same run). That processing (evidence verification, token signing, key wrapping: tens of ms
//! in the unoptimised dev-profile emulator, more on a loaded machine) is neither latency nor the
//! client's work, and counting it would make the goal a statement about the emulator's CPU; the
//! ratio with it included is printed too, and so is the latency exposure against the L = 0 run
//! of the same invocation ((network at L − network at 0) / L: the round trips that wait for L).
//!
//! TPM commands are counted where they are faithful: on the wire. The bench puts a small
//! counting proxy between the TSS and swtpm (the tcti-swtpm command port carries raw TPM 2.0
//! command frames, the control port PORT+1 is copied through), so every command the TSS sends
//! is counted — sessions, context loads and flushes included — not the library's high-level
//! operations. Figures only; nothing is asserted (`make bench-flow`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/flow_common.rs"]
mod flow_common;

use flow_common::*;
use serde_json::json;
use skrd::attest::collect::{Source, VtpmSource};
use skrd::attest::report::RunReport;
use skrd::format::jose::release::WrapAlgorithm;
use skrd::net::Deadline;
use skrd::release::run::{attest_for, release_all};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Counts the TPM 2.0 commands sent to a swtpm, by command code, on the wire.
struct TpmWire {
    /// The TCTI of the proxy (to open the vTPM with).
    tcti: String,
    /// Command codes in the order sent.
    commands: Arc<Mutex<Vec<u32>>>,
}

impl TpmWire {
    /// Starts the proxy in front of the swtpm at `upstream_port` (command) and +1 (control).
    fn start(upstream_port: u16) -> Self {
        let (cmd, ctrl) = loop {
            let a = TcpListener::bind(("127.0.0.1", 0)).unwrap();
            let p = a.local_addr().unwrap().port();
            if p < u16::MAX {
                if let Ok(b) = TcpListener::bind(("127.0.0.1", p + 1)) {
                    break (a, b);
                }
            }
        };
        let port = cmd.local_addr().unwrap().port();
        let commands = Arc::new(Mutex::new(Vec::new()));
        let seen = commands.clone();
        std::thread::spawn(move || {
            for client in cmd.incoming().flatten() {
                let up = TcpStream::connect(("127.0.0.1", upstream_port)).unwrap();
                let seen = seen.clone();
                std::thread::spawn(move || relay_frames(client, up, &seen));
            }
        });
        std::thread::spawn(move || {
            for client in ctrl.incoming().flatten() {
                let up = TcpStream::connect(("127.0.0.1", upstream_port + 1)).unwrap();
                copy_both_ways(client, up);
            }
        });
        Self {
            tcti: format!("swtpm:host=127.0.0.1,port={port}"),
            commands,
        }
    }

    fn take(&self) -> Vec<u32> {
        std::mem::take(&mut *self.commands.lock().unwrap())
    }
}

/// Reads one TPM frame (10-byte header: tag, size, code) whole; None at a clean end.
fn read_frame(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut head = [0u8; 10];
    s.read_exact(&mut head).ok()?;
    let size = u32::from_be_bytes(head[2..6].try_into().unwrap()) as usize;
    assert!((10..1 << 16).contains(&size), "TPM frame size {size}");
    let mut frame = head.to_vec();
    frame.resize(size, 0);
    s.read_exact(&mut frame[10..]).ok()?;
    Some(frame)
}

/// Lock-step command → response relay (the TPM protocol has one command in flight).
fn relay_frames(mut client: TcpStream, mut up: TcpStream, seen: &Mutex<Vec<u32>>) {
    while let Some(command) = read_frame(&mut client) {
        seen.lock()
            .unwrap()
            .push(u32::from_be_bytes(command[6..10].try_into().unwrap()));
        up.write_all(&command).unwrap();
        let Some(response) = read_frame(&mut up) else {
            return;
        };
        if client.write_all(&response).is_err() {
            return;
        }
    }
}

fn copy_both_ways(client: TcpStream, up: TcpStream) {
    let (mut c1, mut u1) = (client.try_clone().unwrap(), up.try_clone().unwrap());
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut c1, &mut u1);
        let _ = u1.shutdown(std::net::Shutdown::Write);
    });
    let (mut c2, mut u2) = (client, up);
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut u2, &mut c2);
        let _ = c2.shutdown(std::net::Shutdown::Write);
    });
}

/// TPM 2.0 Part 2, table 12 (the commands a run can send).
fn command_name(code: u32) -> String {
    match code {
        0x120 => "EvictControl",
        0x131 => "CreatePrimary",
        0x137 => "NV_Write",
        0x144 => "Startup",
        0x148 => "Certify",
        0x14E => "NV_Read",
        0x153 => "Create",
        0x157 => "Load",
        0x158 => "Quote",
        0x159 => "RSA_Decrypt",
        0x161 => "ContextLoad",
        0x162 => "ContextSave",
        0x165 => "FlushContext",
        0x169 => "NV_ReadPublic",
        0x16B => "PolicyAuthValue",
        0x171 => "PolicyOR",
        0x173 => "ReadPublic",
        0x176 => "StartAuthSession",
        0x17A => "GetCapability",
        0x17B => "GetRandom",
        0x17E => "PCR_Read",
        0x17F => "PolicyPCR",
        0x180 => "PolicyRestart",
        0x189 => "PolicyGetDigest",
        0x191 => "CreateLoaded",
        other => return format!("{other:#06x}"),
    }
    .to_string()
}

fn histogram(codes: &[u32]) -> String {
    let mut by: BTreeMap<String, usize> = BTreeMap::new();
    for c in codes {
        *by.entry(command_name(*c)).or_default() += 1;
    }
    by.iter()
        .map(|(n, c)| format!("{n} {c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn source(wire: &TpmWire, env: &Env) -> Source {
    Source::Vtpm(VtpmSource {
        vtpm: Arc::new(skrd::evidence::Vtpm::open(&wire.tcti).unwrap()),
        event_log: env.cfg_dir.path().join("no-event-log"),
        os_release: PathBuf::from("/etc/os-release"),
    })
}

/// One complete run: its report and the TPM commands it sent.
struct Run {
    report: RunReport,
    /// Opening the TPM (before the run).
    open_commands: Vec<u32>,
    /// Evidence, attestation, token decryption.
    attest_commands: Vec<u32>,
    /// The release and its unwrap.
    release_commands: Vec<u32>,
}

fn main() {
    let latencies: Vec<u64> = std::env::var("BENCH_LATENCY_MS")
        .ok()
        .map(|v| v.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![0, 50]);
    let (env, tpm) = env_with_swtpm();
    let port: u16 = tpm
        .tcti()
        .rsplit_once("port=")
        .and_then(|(_, p)| p.parse().ok())
        .expect("swtpm:host=…,port=N");
    let wire = TpmWire::start(port);
    let p = policy(
        &env.authority(),
        "x-ms-isolation-tee.x-ms-attestation-type",
        "sevsnpvm",
    );
    let (url, material) = env.import("bench", KeyType::Rsa(2048), &p);
    let request = key_request(&url, WrapAlgorithm::RsaAesKeyWrap256);
    let roots = roots(&env);
    // One run, as skrd::release::run does it (attest_for, then release_all, then the HTTP
    // timings), with the TPM commands taken between the two phases.
    let run_once = || {
        let services = env.services();
        let source = source(&wire, &env);
        let open_commands = wire.take();
        let deadline = Deadline::after(Duration::from_secs(120));
        let keys = std::slice::from_ref(&request);
        let (report, released, attest_commands) = block_on(async {
            let mut report = RunReport::start("vtpm");
            let before = services.http.timings().len();
            let att = attest_for(&services, source, keys, &deadline, &mut report)
                .await
                .unwrap();
            let attest_commands = wire.take();
            let released = release_all(&services, &att, keys, &roots, &deadline, &mut report)
                .await
                .unwrap();
            for t in services.http.timings().iter().skip(before) {
                report.http(t.step.as_str(), t.attempts, t.elapsed);
            }
            report.finish();
            (report, released, attest_commands)
        });
        assert_eq!(released[0].material.ikm().expose(), material.as_slice());
        Run {
            report,
            open_commands,
            attest_commands,
            release_commands: wire.take(),
        }
    };
    // Warm-up (first TLS handshakes of the process, lazy statics), not reported.
    env.faults(&json!({}));
    let _ = run_once();

    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
        .max(1);
    println!(
        "bench-flow: one complete vTPM release (AzureGuest + Key Vault RSA_AES_KEY_WRAP_256, \
         RSA-2048 key), cold caches; for each L, {runs} runs and every figure from the one with \
         the median total"
    );
    // (L, network ms of the median run): the latency exposure below compares them.
    let mut networks: Vec<(u64, f64)> = Vec::new();
    for l in latencies {
        env.faults(&json!({"*": {"delay_ms": l}}));
        let mut all: Vec<Run> = (0..runs).map(|_| run_once()).collect();
        all.sort_by(|a, b| a.report.total_ms.total_cmp(&b.report.total_ms));
        let run = all.swap_remove(runs / 2);
        let r = &run.report;
        let network = r.network_ms();
        networks.push((l, network));
        println!("\nL = {l} ms per call (median run of {runs} by total)");
        println!("  total            {:8.1} ms", r.total_ms);
        println!(
            "  evidence         {:8.1} ms (concurrent with THIM, identity token, provider keys)",
            r.evidence_ms
        );
        for op in &r.tpm {
            println!("    tpm {:<22} {:6.1} ms", op.op, op.ms);
        }
        for h in &r.http {
            println!(
                "    http {:<21} {:6.1} ms ({} attempt{})",
                h.step,
                h.ms,
                h.attempts,
                if h.attempts == 1 { "" } else { "s" }
            );
        }
        println!("  local (serial)   {:8.1} ms", r.critical_local_ms);
        println!("  network          {:8.1} ms (total - local)", network);
        // The serial calls' time beyond L: the emulator working on them (verifying evidence,
        // signing and wrapping) and the transfer, measured in this run. Server processing is
        // neither local work nor latency, and Azure's is larger; the claim under test is about
        // latency: only attest -> release is serial, so the latency part should be 2 L.
        let serving: f64 = r
            .http
            .iter()
            .filter(|h| h.step == "attest" || h.step == "key-release")
            .map(|h| (h.ms - l as f64 * f64::from(h.attempts)).max(0.0))
            .sum();
        println!(
            "    of which {serving:6.1} ms the provider and the vault took to answer the serial \
             calls (attest, key-release: their time beyond L)"
        );
        println!(
            "  network latency  {:8.1} ms (network - that)",
            network - serving
        );
        if l > 0 {
            let ratio = (network - serving) / (2.0 * l as f64);
            println!(
                "  network latency / (2 L)  {ratio:5.2}    goal <= 1.10 at L = 50 ms: {}",
                if ratio <= 1.10 { "met" } else { "NOT met" }
            );
            println!(
                "  network / (2 L)          {:5.2}    (the servers' processing included)",
                network / (2.0 * l as f64)
            );
        }
        let all_commands = run.attest_commands.len() + run.release_commands.len();
        println!(
            "  TPM commands     {all_commands:8}    ({} per release, {} to collect the evidence \
             and open the token; {} more to open the TPM)",
            run.release_commands.len(),
            run.attest_commands.len(),
            run.open_commands.len()
        );
        println!("    release: {}", histogram(&run.release_commands));
        println!("    attestation: {}", histogram(&run.attest_commands));
        println!(
            "  TPM operations   {:8}    ({:.1} TPM commands each on average)",
            r.tpm.len(),
            all_commands as f64 / r.tpm.len().max(1) as f64
        );
    }
    // How much of L the run is exposed to, against the L = 0 run of this invocation as the
    // baseline (it holds the same processing and client work): ideally 2 round trips.
    if let Some(&(_, base)) = networks.iter().find(|(l, _)| *l == 0) {
        for &(l, network) in networks.iter().filter(|(l, _)| *l > 0) {
            println!(
                "latency exposure at L = {l} ms: (network - network at L = 0) / L = {:.2} round trips ({:.1} - {:.1} ms; only attest -> release serial: 2)",
                (network - base) / l as f64,
                network,
                base
            );
        }
    }
    env.faults(&json!({}));
}
