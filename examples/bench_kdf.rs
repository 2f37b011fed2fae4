//! KDF time and memory per volume (issue 8 bench; goal <= 5 ms and <= 16 MiB per volume):
//! opening skrd's keyslot (HKDF + PBKDF2-SHA512 1000 iterations + AF merge + digest check)
//! against the recovery keyslot (Argon2id) of the same LUKS2 image. Prints figures from one
//! run; asserts nothing. Run by `scripts/bench-kdf.sh`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Command, Stdio};
use std::time::Instant;

use skrd::secret::Secret;
use skrd::volume::device::LuksDevice;
use skrd::volume::{self, Authorization, VolumeSpec};

const RECOVERY: &[u8] = b"bench recovery passphrase";

fn max_rss_kib() -> i64 {
    // SAFETY: getrusage fills a plain struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid out-pointer.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    ru.ru_maxrss
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() {
    // 1. As an operator formats: Argon2id recovery slot (bounded here: 64 MiB, 200 ms); the
    //    volume-key digest then gets benchmarked PBKDF2-SHA256 iterations.
    bench(
        "argon2id-formatted volume",
        &[
            "--pbkdf",
            "argon2id",
            "--pbkdf-memory",
            "65536",
            "--iter-time",
            "200",
        ],
    );
    // 2. Formatted with the minimal PBKDF: the volume-key digest has 1000 iterations too.
    bench(
        "pbkdf2-1000-formatted volume",
        &["--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"],
    );
}

fn digest_iterations(img: &std::path::Path) -> String {
    let out = Command::new("cryptsetup")
        .args(["luksDump", "--dump-json-metadata"])
        .arg(img)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v["digests"]["0"]["iterations"].to_string()
}

fn bench(label: &str, format: &[&str]) {
    println!("== {label}");
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("bench.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(32 << 20)
        .unwrap();
    let mut child = Command::new("cryptsetup")
        .args([
            "luksFormat",
            "--batch-mode",
            "--type",
            "luks2",
            "--key-file",
            "-",
        ])
        .args(format)
        .arg(&img)
        .stdin(Stdio::piped())
        .spawn()
        .expect("cryptsetup");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(RECOVERY).unwrap();
    assert!(child.wait().unwrap().success());
    let uuid = String::from_utf8(
        Command::new("cryptsetup")
            .arg("luksUUID")
            .arg(&img)
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let spec = VolumeSpec {
        name: "bench".into(),
        uuid: uuid.trim().parse().unwrap(),
        key_url: "https://bench.vault.azure.net/keys/disk".into(),
        key_version: Some("v1".into()),
    };
    println!(
        "volume-key digest: PBKDF2-SHA256, {} iterations (fixed at luksFormat; checked on every keyslot open)",
        digest_iterations(&img)
    );
    let ikm = Secret::new(vec![0x11; 32]);
    let t = Instant::now();
    let slot = volume::enroll(
        &img,
        &spec,
        &ikm,
        Authorization::Passphrase(&Secret::new(RECOVERY.to_vec())),
        None,
        &dir.path().join("backup"),
        0,
    )
    .unwrap()
    .keyslot()
    .unwrap();
    println!(
        "enroll (backup, add keyslot, token, verify): {:.1} ms",
        t.elapsed().as_secs_f64() * 1e3
    );

    let rss0 = max_rss_kib();
    let mut dev = LuksDevice::open(&img).unwrap();
    let runs = 50;
    let mut skrd_ms = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let pass = spec.passphrase(&ikm).unwrap();
        assert_eq!(
            dev.test_passphrase(Some(slot), pass.expose()).unwrap(),
            Some(slot)
        );
        skrd_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let rss_skrd = max_rss_kib();
    skrd_ms.sort_by(f64::total_cmp);
    let mut cold_ms = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        volume::unlock(&img, &spec, &ikm, None).unwrap();
        cold_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    cold_ms.sort_by(f64::total_cmp);
    let mut rec_ms = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        assert_eq!(dev.test_passphrase(Some(0), RECOVERY).unwrap(), Some(0));
        rec_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    rec_ms.sort_by(f64::total_cmp);
    let rss_rec = max_rss_kib();
    println!(
        "skrd keyslot (HKDF + PBKDF2-SHA512 x1000), {runs} runs: p50 {:.2} ms, p95 {:.2} ms, max {:.2} ms (goal <= 5 ms)",
        percentile(&skrd_ms, 0.5),
        percentile(&skrd_ms, 0.95),
        skrd_ms[skrd_ms.len() - 1]
    );
    println!(
        "skrd unlock check incl. header load + token cross-check, 10 runs: p50 {:.2} ms, max {:.2} ms",
        percentile(&cold_ms, 0.5),
        cold_ms[cold_ms.len() - 1]
    );
    println!(
        "max RSS growth while opening skrd's keyslot: {} KiB (goal <= 16 MiB); process max RSS {} KiB",
        rss_skrd - rss0,
        rss_skrd
    );
    println!(
        "recovery keyslot, 3 runs: p50 {:.1} ms; max RSS growth {} KiB",
        percentile(&rec_ms, 0.5),
        rss_rec - rss_skrd
    );
}
