//! `skrd --initrd` as a process against skr-emulator and a swtpm provisioned like an Azure CVM,
//! with python3 clients that behave like systemd-cryptsetup (bind `\0<hex>/cryptsetup/<vol>`,
//! connect, shut down the write side, read to EOF). Expected passphrases come from python3's
//! `cryptography` HKDF (DESIGN.md: HKDF-SHA256, salt = LUKS UUID bytes, info "skrd luks2 v1"),
//! the emulator's per-endpoint counters say how many attestations and releases happened.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "flow_common.rs"]
mod flow_common;

use flow_common::*;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TEE_TYPE: &str = "x-ms-isolation-tee.x-ms-attestation-type";

/// A systemd-cryptsetup-like client; prints {"data": hex, "reset": bool}.
const CLIENT: &str = r#"
import json, os, socket, sys
path, vol = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind("\0" + os.urandom(8).hex() + "/cryptsetup/" + vol)
s.connect(path)
s.shutdown(socket.SHUT_WR)
data, reset = b"", False
s.settimeout(120)
try:
    while True:
        c = s.recv(4096)
        if not c:
            break
        data += c
except ConnectionResetError:
    reset = True
print(json.dumps({"data": data.hex(), "reset": reset}))
"#;

/// The passphrase python3 derives from `ikm` for `uuid` (independent of skrd).
fn expected_passphrase(ikm: &[u8], uuid: &str) -> Vec<u8> {
    let script = "import sys,uuid,base64\n\
from cryptography.hazmat.primitives.kdf.hkdf import HKDF\n\
from cryptography.hazmat.primitives import hashes\n\
k=HKDF(algorithm=hashes.SHA256(),length=32,salt=uuid.UUID(sys.argv[2]).bytes,info=b'skrd luks2 v1').derive(bytes.fromhex(sys.argv[1]))\n\
sys.stdout.write(base64.b64encode(k).decode())";
    common::python(script, &[&hex::encode(ikm), uuid]).into_bytes()
}

struct Skrd {
    child: Child,
    socket: PathBuf,
    state: PathBuf,
    headers: PathBuf,
    lines: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

impl Skrd {
    fn start(env: &Env) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("run/skrd/luks.sock");
        let state = dir.path().join("run/skrd/state.json");
        let headers = dir.path().join("run/skrd/headers");
        let mut child = Command::new(env!("CARGO_BIN_EXE_skrd"))
            .arg("--config")
            .arg(env.config_path())
            .arg("--header-dir")
            .arg(&headers)
            .arg("--initrd")
            .arg("--socket")
            .arg(&socket)
            .arg("--state-file")
            .arg(&state)
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_PID")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(l);
            }
        });
        let t = Instant::now();
        while !socket.exists() {
            assert!(t.elapsed() < Duration::from_secs(20), "no socket");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            child,
            socket,
            state,
            headers,
            lines,
            _dir: dir,
        }
    }

    fn ask(&self, volume: &str) -> std::thread::JoinHandle<Value> {
        let (path, vol) = (self.socket.clone(), volume.to_string());
        std::thread::spawn(move || client(&path, &vol))
    }

    fn wait(&mut self) -> i32 {
        let t = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st.code().unwrap_or(-1);
            }
            assert!(t.elapsed() < Duration::from_secs(120), "skrd did not exit");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stderr(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// The state file, validated by the shared parser the daemon and `skrctl status` use, with
    /// `volumes` and `keys` indexed by name.
    fn state(&self) -> Value {
        state_view(&std::fs::read(&self.state).unwrap()).unwrap()
    }
}

/// See [`Skrd::state`]; `None` when the file does not parse (yet).
fn state_view(bytes: &[u8]) -> Option<Value> {
    skrd::format::state::parse(bytes).ok()?;
    let mut v: Value = serde_json::from_slice(bytes).ok()?;
    for list in ["volumes", "keys"] {
        let by_name: serde_json::Map<String, Value> = v[list]
            .as_array()?
            .iter()
            .map(|e| {
                (
                    e["name"].as_str().unwrap_or_default().to_string(),
                    e.clone(),
                )
            })
            .collect();
        v[list] = Value::Object(by_name);
    }
    Some(v)
}

impl Drop for Skrd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn client(path: &Path, volume: &str) -> Value {
    let out = Command::new("python3")
        .arg("-c")
        .arg(CLIENT)
        .arg(path)
        .arg(volume)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn data(v: &Value) -> Vec<u8> {
    hex::decode(v["data"].as_str().unwrap()).unwrap()
}

/// Volume name → (uuid, key name).
const VOLUMES: [(&str, &str, &str); 3] = [
    ("data1", "6f9f0a57-3c3e-4a55-9a53-0d9d1c1e0a01", "disk"),
    ("data2", "6f9f0a57-3c3e-4a55-9a53-0d9d1c1e0a02", "disk"),
    ("logs", "6f9f0a57-3c3e-4a55-9a53-0d9d1c1e0a03", "logs"),
];

/// An emulator + provisioned swtpm, keys `disk` and `logs` (policies given), three volumes.
/// Returns the env, the swtpm and the IKM of each key.
fn setup(
    logs_policy: Option<(&str, &str)>,
    volume_options: &str,
    forged: bool,
) -> (Env, Swtpm, Vec<u8>, Vec<u8>) {
    let tpm = Swtpm::start();
    let env = Env::start("vtpm", Some(&tpm.tcti()), "");
    // Forged evidence: the vTPM is provisioned from ANOTHER emulator state (another test AMD
    // chain and AK CA), which this emulator does not trust.
    let other = common::fresh_state_dir();
    let from = if forged {
        other.path()
    } else {
        env.state.path()
    };
    skrd::emulator::provision::provision_tpm(&tpm.tcti(), from, None).unwrap();
    let good = policy(&env.authority(), TEE_TYPE, "sevsnpvm");
    let logs_policy = logs_policy.map(|(claim, value)| policy(&env.authority(), claim, value));
    let (disk_url, disk) = env.import("disk", KeyType::Rsa(2048), &good);
    let (logs_url, logs) = env.import(
        "logs",
        KeyType::Oct256,
        logs_policy.as_ref().unwrap_or(&good),
    );
    let mut cfg =
        format!("\n[keys.disk]\nurl = \"{disk_url}\"\n\n[keys.logs]\nurl = \"{logs_url}\"\n");
    for (v, uuid, key) in VOLUMES {
        cfg.push_str(&format!(
            "\n[volumes.{v}]\nuuid = \"{uuid}\"\nkey = \"{key}\"\n{volume_options}\n"
        ));
    }
    env.append_config(&cfg);
    (env, tpm, disk, logs)
}

fn ikm_of<'a>(key: &str, disk: &'a [u8], logs: &'a [u8]) -> &'a [u8] {
    if key == "disk" {
        disk
    } else {
        logs
    }
}

#[test]
fn one_attestation_answers_every_volume_and_refuses_unknown_ones() {
    let (env, _tpm, disk, logs) = setup(None, "", false);
    let mut skrd = Skrd::start(&env);
    // The releases start before anyone asks: wait for both keys with no client connected.
    let t = Instant::now();
    let released = |c: &Value| {
        c["vault-release"].as_u64().unwrap_or(0) + c["managed-hsm-release"].as_u64().unwrap_or(0)
    };
    let both_done = |st: &Value| {
        st["keys"]["disk"]["released_at"].is_u64() && st["keys"]["logs"]["released_at"].is_u64()
    };
    while !std::fs::read(&skrd.state)
        .ok()
        .and_then(|b| state_view(&b))
        .is_some_and(|st| both_done(&st))
    {
        assert!(t.elapsed() < Duration::from_secs(60), "{}", skrd.stderr());
        std::thread::sleep(Duration::from_millis(50));
    }
    // Not configured: closed at once without data, never reset (asked first: skrd exits once
    // every configured volume is answered).
    let got = skrd.ask("swap").join().unwrap();
    assert_eq!(got, json!({"data": "", "reset": false}));
    let asks: Vec<_> = VOLUMES.iter().map(|(v, _, _)| skrd.ask(v)).collect();
    for ((v, uuid, key), h) in VOLUMES.iter().zip(asks) {
        let got = h.join().unwrap();
        assert_eq!(got["reset"], false);
        assert_eq!(
            data(&got),
            expected_passphrase(ikm_of(key, &disk, &logs), uuid),
            "volume {v}"
        );
    }
    assert_eq!(skrd.wait(), 0, "{}", skrd.stderr());
    let c = env.counters();
    assert_eq!(c["attestation-azureguest"], 1, "{c}");
    // One release per key: the Key Vault key once; the Managed HSM key's first call is the
    // bearer challenge skrd answers once for a non-Azure host (identity::vault), then the release.
    assert_eq!(c["vault-release"], 1, "{c}");
    assert_eq!(c["managed-hsm-release"], 2, "{c}");
    assert_eq!(released(&c), 3, "{c}");
    let st = skrd.state();
    assert_eq!(st["writer"], "initrd", "{st}");
    // Finished (what the e2e guest check and the daemon's take-over look for).
    assert!(st["finished_at"].is_u64(), "{st}");
    assert!(st["finished_at"].as_u64() >= st["attestation"]["last_success"].as_u64());
    for (v, uuid, _) in VOLUMES {
        assert_eq!(st["volumes"][v]["stage"], "unlocked", "{st}");
        assert_eq!(st["volumes"][v]["uuid"], *uuid, "{st}");
        assert_eq!(st["volumes"][v]["attempts"], 1, "{st}");
    }
    assert!(st["attestation"]["last_success"].is_u64(), "{st}");
    // The request ids are those the emulator sent (its admin request log): the attestation's,
    // and each key's successful release.
    let log = env.requests();
    let sent = |endpoint: &str| -> Vec<Value> {
        ids_in(&log, endpoint, 200)
            .into_iter()
            .map(Value::from)
            .collect()
    };
    assert_eq!(
        vec![st["attestation"]["maa_request_id"].clone()],
        sent("attestation-azureguest"),
        "{st}"
    );
    let mut in_state: Vec<Value> = st["keys"]
        .as_object()
        .unwrap()
        .values()
        .map(|k| k["akv_request_id"].clone())
        .collect();
    let mut in_log = [sent("vault-release"), sent("managed-hsm-release")].concat();
    in_state.sort_by_key(|v| v.to_string());
    in_log.sort_by_key(|v| v.to_string());
    assert_eq!(in_state, in_log, "{st}");
    // Each volume names the requests that decided it: the attestation and its key's release.
    for (v, _, key) in VOLUMES {
        let vol = &st["volumes"][v];
        assert_eq!(
            vol["maa_request_id"], st["attestation"]["maa_request_id"],
            "{v}: {st}"
        );
        assert_eq!(
            vol["akv_request_id"], st["keys"][key]["akv_request_id"],
            "{v}: {st}"
        );
        assert!(vol["akv_request_id"].is_string(), "{v}: {st}");
    }
    // The version released is the one the emulator's import named in the configured URL
    // (…/keys/NAME/VERSION).
    for k in ["disk", "logs"] {
        let url = st["keys"][k]["url"].as_str().unwrap();
        let imported = url.rsplit('/').next().unwrap();
        assert_eq!(imported.len(), 32, "{url}");
        assert_eq!(st["keys"][k]["version"], imported, "{st}");
    }
    // Never a secret in the state file.
    let text = std::fs::read_to_string(&skrd.state).unwrap();
    for (_, uuid, key) in VOLUMES {
        let ikm = ikm_of(key, &disk, &logs);
        assert!(!text.contains(&hex::encode(ikm)));
        let p = String::from_utf8(expected_passphrase(ikm, uuid)).unwrap();
        assert!(!text.contains(&p));
    }
    assert!(skrd.stderr().contains("key sent"), "{}", skrd.stderr());
}

/// Asks for every volume at once; returns the answers in VOLUMES order.
fn ask_all(skrd: &Skrd) -> Vec<Value> {
    let asks: Vec<_> = VOLUMES.iter().map(|(v, _, _)| skrd.ask(v)).collect();
    asks.into_iter().map(|h| h.join().unwrap()).collect()
}

#[test]
fn a_refused_release_policy_closes_only_its_volumes_without_data() {
    // The logs key wants a TDX VM: this SNP vTPM does not match.
    let (env, _tpm, disk, _) = setup(Some((TEE_TYPE, "tdxvm")), "", false);
    let mut skrd = Skrd::start(&env);
    let got = ask_all(&skrd);
    for ((v, uuid, key), got) in VOLUMES.iter().zip(&got) {
        assert_eq!(got["reset"], false, "{v}");
        if *key == "disk" {
            assert_eq!(data(got), expected_passphrase(&disk, uuid), "{v}");
        } else {
            assert!(data(got).is_empty(), "{v}: {got}");
        }
    }
    assert_eq!(skrd.wait(), 1, "{}", skrd.stderr());
    let st = skrd.state();
    assert_eq!(st["volumes"]["logs"]["stage"], "refused", "{st}");
    // When it was refused, not "answered": nothing was sent.
    let t = &st["volumes"]["logs"]["timings_ms"];
    assert!(t["refused"].is_u64() && t["answered"].is_null(), "{st}");
    assert!(t["refused"].as_u64() >= t["asked"].as_u64(), "{st}");
    assert_eq!(
        st["volumes"]["logs"]["last_error"]["code"],
        "boot-key-not-released"
    );
    assert!(st["keys"]["logs"]["released_at"].is_null(), "{st}");
    assert!(st["keys"]["logs"]["last_error"]["code"].is_string(), "{st}");
    assert_eq!(st["volumes"]["data1"]["stage"], "unlocked");
    // One attestation; the refused key is not retried.
    let c = env.counters();
    assert_eq!(c["attestation-azureguest"], 1, "{c}");
    assert!(
        skrd.stderr().contains("falls back to the passphrase"),
        "{}",
        skrd.stderr()
    );
}

/// `skrd --prepare-header` refused the header of `logs` (its note appears while skrd runs):
/// systemd-cryptsetup will never ask for it, so skrd reports it refused with the header's code
/// and finishes without waiting for the boot deadline.
#[test]
fn a_volume_whose_header_was_refused_is_reported_without_waiting_for_the_deadline() {
    let (env, _tpm, disk, _) = setup(None, "", false);
    let mut skrd = Skrd::start(&env);
    let problem = skrd::error::Problem::new(
        "luks-header-refused",
        "LUKS2 header refused (cipher): segment 0 uses \"cipher_null-ecb\"",
    );
    skrd::volume::detached::record_refusal(&skrd.headers, "logs", &problem).unwrap();
    let asked: Vec<_> = VOLUMES[..2].iter().map(|(v, _, _)| skrd.ask(v)).collect();
    for ((v, uuid, _), got) in VOLUMES[..2].iter().zip(asked) {
        assert_eq!(
            data(&got.join().unwrap()),
            expected_passphrase(&disk, uuid),
            "{v}"
        );
    }
    assert_eq!(skrd.wait(), 1, "{}", skrd.stderr());
    let st = skrd.state();
    let logs = &st["volumes"]["logs"];
    assert_eq!(logs["stage"], "refused", "{st}");
    assert_eq!(logs["last_error"]["code"], "luks-header-refused", "{st}");
    assert!(
        logs["last_error"]["message"]
            .as_str()
            .unwrap()
            .contains("cipher_null"),
        "{st}"
    );
    // Refused when the note appeared, not at the 60 s boot deadline.
    assert!(
        logs["timings_ms"]["refused"].as_u64().unwrap() < 60_000,
        "{st}"
    );
    assert!(
        skrd.stderr().contains("volume logs: LUKS2 header refused"),
        "{}",
        skrd.stderr()
    );
}

#[test]
fn an_outage_shorter_than_the_deadline_ends_unlocked() {
    let (env, _tpm, disk, logs) = setup(None, "", false);
    // network.retries = 4: the first attempt's 5 calls all fail, the second attempt's third
    // call gets through.
    env.faults(&json!({"attestation-azureguest": {"status": 503, "times": 7}}));
    let mut skrd = Skrd::start(&env);
    let got = ask_all(&skrd);
    for ((v, uuid, key), got) in VOLUMES.iter().zip(&got) {
        assert_eq!(
            data(got),
            expected_passphrase(ikm_of(key, &disk, &logs), uuid),
            "{v}"
        );
    }
    assert_eq!(skrd.wait(), 0, "{}", skrd.stderr());
    let c = env.counters();
    assert_eq!(c["attestation-azureguest"], 8, "{c}");
    // Two attestation attempts: the volumes' attempts say so.
    let st = skrd.state();
    for (v, _, _) in VOLUMES {
        assert_eq!(st["volumes"][v]["attempts"], 2, "{st}");
    }
    assert!(skrd.stderr().contains("retrying"), "{}", skrd.stderr());
}

#[test]
fn past_the_deadline_every_volume_is_closed_without_data() {
    let (env, _tpm, _, _) = setup(None, "options = { timeout = \"3s\" }", false);
    env.faults(&json!({"attestation-azureguest": {"drop": true}}));
    let mut skrd = Skrd::start(&env);
    let t = Instant::now();
    for got in ask_all(&skrd) {
        assert_eq!(got, json!({"data": "", "reset": false}));
    }
    assert_eq!(skrd.wait(), 1, "{}", skrd.stderr());
    // Not a wall-clock limit: only that the 3 s deadline, not the 60 s boot deadline, ended it.
    assert!(t.elapsed() < Duration::from_secs(50));
    let st = skrd.state();
    for (v, _, _) in VOLUMES {
        assert_eq!(st["volumes"][v]["stage"], "failed", "{st}");
        assert_eq!(
            st["volumes"][v]["last_error"]["code"],
            "boot-volume-deadline"
        );
    }
    assert!(
        skrd.stderr().contains("waiting: attestation"),
        "{}",
        skrd.stderr()
    );
}

#[test]
fn forged_evidence_unlocks_nothing() {
    let (env, _tpm, _, _) = setup(None, "", true);
    let mut skrd = Skrd::start(&env);
    for got in ask_all(&skrd) {
        assert_eq!(got, json!({"data": "", "reset": false}));
    }
    assert_eq!(skrd.wait(), 1, "{}", skrd.stderr());
    let st = skrd.state();
    assert!(st["attestation"]["last_success"].is_null(), "{st}");
    let cause = st["attestation"]["last_error"]["code"].as_str().unwrap();
    for (v, _, _) in VOLUMES {
        assert_eq!(st["volumes"][v]["stage"], "refused", "{st}");
        // Every volume names the attestation's refusal as its cause (it once read the state
        // before the cause was written and said "passphrase-derivation").
        let message = st["volumes"][v]["last_error"]["message"].as_str().unwrap();
        assert!(message.contains(&format!("({cause})")), "{v}: {message}");
        assert_eq!(
            st["volumes"][v]["attempts"], 1,
            "refusals are not retried: {st}"
        );
    }
    let c = env.counters();
    assert_eq!(c["vault-release"].as_u64().unwrap_or(0), 0, "{c}");
    assert_eq!(c["managed-hsm-release"].as_u64().unwrap_or(0), 0, "{c}");
}

/// Runs skrd like systemd socket activation does: the bound listener as fd 3, LISTEN_PID = the
/// process's own pid (`sh` execs skrd, so `$$` is skrd's pid), LISTEN_FDS=1.
fn spawn_activated(env: &Env, listener: &std::os::unix::net::UnixListener, pid: &str) -> Child {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let fd = listener.as_raw_fd();
    let dir = env.cfg_dir.path();
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!(
            "LISTEN_PID={pid} LISTEN_FDS=1 exec \"$0\" --config \"$1\" --initrd --socket \"$2\" --state-file \"$3\""
        ))
        .arg(env!("CARGO_BIN_EXE_skrd"))
        .arg(env.config_path())
        .arg(dir.join("never-bound.sock"))
        .arg(dir.join("state.json"))
        .stderr(Stdio::piped());
    // SAFETY: only dup2 (async-signal-safe) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn().unwrap()
}

#[test]
fn socket_activation_serves_the_listener_systemd_passed() {
    let (env, _tpm, disk, logs) = setup(None, "", false);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("luks.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let child = spawn_activated(&env, &listener, "$$");
    drop(listener);
    let asks: Vec<_> = VOLUMES
        .iter()
        .map(|(v, _, _)| {
            let (p, v) = (path.clone(), v.to_string());
            std::thread::spawn(move || client(&p, &v))
        })
        .collect();
    for ((v, uuid, key), h) in VOLUMES.iter().zip(asks) {
        let got = h.join().unwrap();
        assert_eq!(
            data(&got),
            expected_passphrase(ikm_of(key, &disk, &logs), uuid),
            "{v}"
        );
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // skrd never bound its own --socket path: it served the passed descriptor.
    assert!(!env.cfg_dir.path().join("never-bound.sock").exists());
}

#[test]
fn socket_activation_meant_for_another_process_is_refused() {
    let (env, _tpm, _, _) = setup(None, "", false);
    let dir = tempfile::tempdir().unwrap();
    let listener = std::os::unix::net::UnixListener::bind(dir.path().join("luks.sock")).unwrap();
    // LISTEN_PID of another process (pid 1): skrd must not take fd 3.
    let child = spawn_activated(&env, &listener, "1");
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("[boot-listen-fds-invalid]"), "{err}");
}

/// The wait for the network before the first attestation (src/boot/route.rs) against the
/// kernel's real routing: in a fresh network namespace (only a loopback that is down) there is
/// no route to the IMDS address; an address in 169.254.0.0/16 (the link route a DHCP lease
/// gives) added while skrd waits makes one, and the wait ends on it, not on its deadline.
#[test]
fn the_network_wait_ends_when_the_imds_route_appears() {
    use skrd::boot::route::{has_route, route_target, wait_for_route};
    let imds = route_target(&"http://169.254.169.254".parse().unwrap()).unwrap();
    assert_eq!(imds, "169.254.169.254:80".parse().unwrap());
    assert_eq!(
        route_target(&"https://example.vault.azure.net".parse().unwrap()),
        None
    );
    // The namespace is this thread's only (a new thread; the children it spawns inherit it).
    std::thread::spawn(move || {
        // SAFETY: unshare() of the calling thread's network namespace, no pointers.
        // `make test` runs as root; skipping here would pass without checking anything.
        let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(
            rc,
            0,
            "unshare(CLONE_NEWNET): {} (run the tests as root)",
            std::io::Error::last_os_error()
        );
        assert!(!has_route(imds), "a fresh namespace has no route to IMDS");
        let deadline = skrd::net::Deadline::after(Duration::from_secs(60));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let added = Arc::new(Mutex::new(false));
        let flag = added.clone();
        let route_when_done = rt.block_on(async {
            let lease = async {
                tokio::time::sleep(Duration::from_millis(300)).await;
                for args in [
                    &["link", "set", "lo", "up"][..],
                    &["addr", "add", "169.254.0.15/16", "dev", "lo"],
                ] {
                    let st = Command::new("ip").args(args).status().unwrap();
                    assert!(st.success(), "ip {args:?}");
                }
                *flag.lock().unwrap() = true;
            };
            let wait = async {
                let probe = || {
                    let r = has_route(imds);
                    // A route is seen exactly once the address exists.
                    assert_eq!(r, *added.lock().unwrap());
                    r
                };
                wait_for_route(probe, &deadline).await;
                // Whether the route existed at the moment the wait returned.
                let existed = *added.lock().unwrap();
                existed
            };
            tokio::join!(lease, wait).1
        });
        assert!(route_when_done, "the wait ended before the route existed");
        assert!(has_route(imds));
        assert!(!deadline.expired(), "the wait ended on its deadline");
    })
    .join()
    .unwrap();
}
