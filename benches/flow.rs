//! Bench of one complete vTPM release (issue 6 "Bench"; DESIGN.md "What happens on a boot"):
//! skr-emulator + a swtpm provisioned like an Azure CVM, a latency L injected on every emulator
//! endpoint (`"*"` of the fault table), and one full run per L with cold caches (new
//! identity-token cache, new provider-key cache, new HTTP connections): evidence, THIM,
//! provider keys, identity token, AzureGuest, token decryption in the TPM, release, unwrap in
//! the TPM. L = 0 is the baseline of the same run.
//!
//! Printed per L: the total, the per-step breakdown (evidence, each TPM operation, each HTTP
//! call with its attempts), the network time (total − local work on the serial path), the ratio
//! network / (2 L) — the goal is ≤ 1.1: only attest → release is serial, the identity token,
//! THIM and the provider keys overlap the evidence collection — and the TPM operations per
//! release. Figures only; nothing is asserted (`make bench-flow`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/flow_common.rs"]
mod flow_common;

use flow_common::*;
use serde_json::json;
use skrd::format::jose::release::WrapAlgorithm;
use skrd::net::Deadline;
use std::time::Duration;

fn main() {
    let latencies: Vec<u64> = std::env::var("BENCH_LATENCY_MS")
        .ok()
        .map(|v| v.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![0, 50]);
    let (env, tpm) = env_with_swtpm();
    let p = policy(
        &env.authority(),
        "x-ms-isolation-tee.x-ms-attestation-type",
        "sevsnpvm",
    );
    let (url, material) = env.import("bench", KeyType::Rsa(2048), &p);
    let request = key_request(&url, WrapAlgorithm::RsaAesKeyWrap256);
    let roots = roots(&env);
    // Warm-up (first TLS handshakes of the process, lazy statics), not reported.
    env.faults(&json!({}));
    let _ = block_on(skrd::release::run(
        &env.services(),
        vtpm_source(&tpm, env.cfg_dir.path()),
        std::slice::from_ref(&request),
        &roots,
        &Deadline::after(Duration::from_secs(120)),
    ))
    .unwrap();

    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
        .max(1);
    println!(
        "bench-flow: one complete vTPM release (AzureGuest + Key Vault RSA_AES_KEY_WRAP_256, \
         RSA-2048 key); {runs} runs per L, the median run (by total) is shown"
    );
    let mut baseline_network = None;
    for l in latencies {
        env.faults(&json!({"*": {"delay_ms": l}}));
        let mut reports = Vec::new();
        for _ in 0..runs {
            let services = env.services();
            let out = block_on(skrd::release::run(
                &services,
                vtpm_source(&tpm, env.cfg_dir.path()),
                std::slice::from_ref(&request),
                &roots,
                &Deadline::after(Duration::from_secs(120)),
            ))
            .unwrap();
            assert_eq!(out.keys[0].material.ikm().expose(), material.as_slice());
            reports.push(out.report);
        }
        reports.sort_by(|a, b| a.total_ms.total_cmp(&b.total_ms));
        let r = &reports[reports.len() / 2];
        let mut networks: Vec<f64> = reports.iter().map(|r| r.network_ms()).collect();
        networks.sort_by(f64::total_cmp);
        let network = networks[networks.len() / 2];
        println!("\nL = {l} ms per call");
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
        println!("  network          {:8.1} ms (median of {runs}; includes the emulator's own processing)", network);
        match baseline_network {
            None if l == 0 => baseline_network = Some(network),
            _ => {}
        }
        if l > 0 {
            println!(
                "  network / (2 L)  {:8.2}   (goal <= 1.10: only attest -> release is serial)",
                network / (2.0 * l as f64)
            );
            if let Some(base) = baseline_network {
                println!(
                    "  (network - network at L=0) / (2 L) {:5.2}   (the emulator's processing removed)",
                    (network - base) / (2.0 * l as f64)
                );
            }
        }
        println!(
            "  TPM operations per release: {:.0}",
            r.tpm_ops_per_release()
        );
    }
    env.faults(&json!({}));
}
