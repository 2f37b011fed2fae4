//! A running `skr-emulator serve` for integration tests: spawned on a state directory, its one
//! start-up JSON line read (PROTOCOLS.md §8 start-up contract), killed in `Drop`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The emulator process and the endpoints it printed.
pub struct Emu {
    pub child: Child,
    /// The start-up line: `{"imds", "attestation", "vault", "managed_hsm", "ca_pem", "admin"}`.
    pub ep: Value,
}

impl Emu {
    /// Starts `skr-emulator serve --state-dir DIR EXTRA...` and waits for its start-up line.
    pub fn start(dir: &Path, extra: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_skr-emulator"))
            .arg("serve")
            .arg("--state-dir")
            .arg(dir)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn skr-emulator");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let first = lines.next().map(|l| l.unwrap_or_default());
            let _ = tx.send(first);
            // Drained so the child never blocks on a full pipe. The one-line rule itself is
            // checked where a failure reaches the test: emulator_serve's
            // startup_contract_one_json_line_logs_on_stderr_sigterm_exit_0.
            for _ in lines {}
        });
        let first = match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(v) => v,
            Err(_) => {
                let _ = child.kill();
                panic!("no start-up line within 120 s");
            }
        };
        let line = first.expect("a start-up line");
        let ep: Value = serde_json::from_str(&line).expect("start-up line is JSON");
        Self { child, ep }
    }

    /// The printed URL of `service`.
    pub fn url(&self, service: &str) -> String {
        self.ep[service].as_str().unwrap().to_string()
    }

    /// `host:port` of `service`.
    pub fn addr(&self, service: &str) -> String {
        self.url(service).split("://").nth(1).unwrap().to_string()
    }

    /// Sends SIGTERM and waits (at most 10 s) for the exit.
    pub fn sigterm(&mut self) -> ExitStatus {
        let pid = i32::try_from(self.child.id()).unwrap();
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "no exit within 10 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// An HTTPS client trusting the emulator's CA.
    pub fn client(&self, timeout: Duration) -> reqwest::blocking::Client {
        client(Path::new(self.ep["ca_pem"].as_str().unwrap()), timeout)
    }
}

impl Drop for Emu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTPS client trusting `ca_pem`, without proxies, with a total timeout.
pub fn client(ca_pem: &Path, timeout: Duration) -> reqwest::blocking::Client {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(ca_pem).unwrap()).unwrap();
    reqwest::blocking::Client::builder()
        .add_root_certificate(ca)
        .no_proxy()
        .timeout(timeout)
        .build()
        .unwrap()
}

impl Emu {
    /// A managed-identity access token for `resource` (URL-encoded) from the emulated IMDS.
    pub fn imds_token(&self, resource: &str) -> String {
        let url = format!(
            "{}/metadata/identity/oauth2/token?api-version=2018-02-01&resource={resource}",
            self.url("imds")
        );
        let body: Value = reqwest::blocking::Client::new()
            .get(url)
            .header("Metadata", "true")
            .send()
            .unwrap()
            .json()
            .unwrap();
        body["access_token"].as_str().unwrap().to_string()
    }
}

/// POSTs `body` as JSON; returns the status, the `x-ms-error-code` header and the JSON body.
pub fn post_json(
    c: &reqwest::blocking::Client,
    url: &str,
    body: &Value,
) -> (u16, Option<String>, Value) {
    let resp = c.post(url).json(body).send().unwrap();
    let status = resp.status().as_u16();
    let code = resp
        .headers()
        .get("x-ms-error-code")
        .map(|v| v.to_str().unwrap().to_string());
    let text = resp.bytes().unwrap();
    let json = serde_json::from_slice(&text)
        .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&text)));
    (status, code, json)
}

/// The wall clock in Unix seconds.
pub fn now() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

/// The JSON type name of `v`, with integers told apart from floats (claim-type comparisons).
pub fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_u64() || n.is_i64() => "integer",
        Value::Number(_) => "float",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Runs `skr-emulator provision-tpm --tcti TCTI --state-dir DIR`; panics with its stderr on
/// failure.
pub fn provision_tpm(tcti: &str, dir: &Path) {
    let out = Command::new(env!("CARGO_BIN_EXE_skr-emulator"))
        .args(["provision-tpm", "--tcti", tcti, "--state-dir"])
        .arg(dir)
        .output()
        .expect("run skr-emulator provision-tpm");
    assert!(
        out.status.success(),
        "provision-tpm failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Emu {
    /// Verifies a release response body with skrd's client code against the emulator's CA
    /// (`ca_pem`) now, for a transfer key of `rsa_block_len` bytes named `transfer_kid`.
    pub fn verify_release(
        &self,
        body: &str,
        rsa_block_len: usize,
        transfer_kid: &str,
    ) -> skrd::format::jose::release::VerifiedRelease {
        use base64::Engine as _;
        use skrd::format::jose::release::{verify_release_response, ReleaseVerification};
        use skrd::format::jose::x5c::ChainCert;
        let pem = std::fs::read_to_string(self.ep["ca_pem"].as_str().unwrap()).unwrap();
        let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        let roots = [ChainCert::from_der("emulator CA", &der).unwrap()];
        verify_release_response(
            body.as_bytes(),
            &ReleaseVerification {
                roots: &roots,
                now: now(),
                expected_host: None,
                rsa_block_len,
                expected_key: None,
                expected_transfer_kid: Some(transfer_kid),
            },
        )
        .unwrap_or_else(|e| panic!("release response does not verify: {e}"))
    }
}

/// A second test AMD chain, independent of [`super::chain_cache_dir`]'s (same names, other
/// keys): the chain of "another emulator instance". Generated once per target dir.
pub fn other_chain_dir() -> &'static Path {
    static DIR: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join("skr-emulator-test-chain-b-v1");
        skrd::emulator::amd_chain::TestAmdChain::load_or_create(&dir)
            .expect("second test AMD chain");
        dir
    })
}

/// A fresh state directory seeded with [`other_chain_dir`]'s chain (a second emulator
/// instance).
pub fn fresh_state_dir_with_other_chain() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("skr-emulator-state-b-")
        .tempdir()
        .expect("temp dir");
    for entry in std::fs::read_dir(other_chain_dir()).expect("read chain cache") {
        let entry = entry.expect("dir entry");
        let name = entry.file_name();
        if entry.path().is_file() && !name.to_string_lossy().starts_with('.') {
            std::fs::copy(entry.path(), dir.path().join(&name)).expect("copy chain file");
        }
    }
    dir
}
