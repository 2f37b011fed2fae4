//! `Swtpm::start()`: a private swtpm (TPM 2.0, TCP) for one test, killed on drop.
//!
//! Free ports are picked by binding port 0; readiness is a successful TCP connect to both the
//! server and the control port (never a fixed sleep). `SKRD_TEST_KEEP=1` keeps the TPM state
//! directory (its path is printed). A missing swtpm is a test failure, not a skip.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running swtpm.
pub struct Swtpm {
    child: Child,
    port: u16,
    state: Option<tempfile::TempDir>,
    state_path: PathBuf,
}

fn free_port_pair() -> u16 {
    for _ in 0..50 {
        let a = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = a.local_addr().expect("local addr").port();
        if port == u16::MAX {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
    panic!("no two consecutive free TCP ports on 127.0.0.1");
}

fn accepts(port: u16) -> bool {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

impl Swtpm {
    /// Starts a fresh swtpm (empty NV, started with TPM2_Startup(CLEAR)).
    pub fn start() -> Self {
        for _ in 0..5 {
            if let Some(tpm) = Self::try_start() {
                return tpm;
            }
        }
        panic!("swtpm did not start after 5 attempts (see its stderr above)");
    }

    fn try_start() -> Option<Self> {
        let state = tempfile::Builder::new()
            .prefix("skrd-swtpm-")
            .tempdir()
            .expect("temp dir");
        let state_path = state.path().to_path_buf();
        let port = free_port_pair();
        let spawned = Command::new("swtpm")
            .arg("socket")
            .arg("--tpm2")
            .arg("--server")
            .arg(format!("type=tcp,port={port},bindaddr=127.0.0.1"))
            .arg("--ctrl")
            .arg(format!("type=tcp,port={},bindaddr=127.0.0.1", port + 1))
            .arg("--flags")
            .arg("not-need-init,startup-clear")
            .arg("--tpmstate")
            .arg(format!("dir={}", state_path.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                "swtpm is not installed: `make test` installs it (Debian: apt-get install swtpm \
                 swtpm-tools tpm2-tools libtss2-tcti-swtpm0)"
            ),
            Err(e) => panic!("cannot run swtpm: {e}"),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                eprintln!("swtpm exited early with {status} (port clash?), retrying");
                return None;
            }
            if accepts(port + 1) && accepts(port) {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let keep = std::env::var_os("SKRD_TEST_KEEP").is_some_and(|v| v == "1");
        let state = if keep {
            let path = state.keep();
            eprintln!("SKRD_TEST_KEEP=1: swtpm state kept in {}", path.display());
            None
        } else {
            Some(state)
        };
        Some(Self {
            child,
            port,
            state,
            state_path,
        })
    }

    /// The TCTI string for tss-esapi / tpm2-tools.
    pub fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }

    /// The TPM state directory.
    #[allow(dead_code)]
    pub fn state_dir(&self) -> &Path {
        &self.state_path
    }

    /// Runs a tpm2-tools command against this TPM (the independent reader in tests).
    #[allow(dead_code)]
    pub fn tpm2_tool(&self, tool: &str, args: &[&str]) -> Vec<u8> {
        let out = Command::new(tool)
            .args(args)
            .env("TPM2TOOLS_TCTI", self.tcti())
            .env("TSS2_LOG", "all+none")
            .output()
            .unwrap_or_else(|e| panic!("cannot run {tool}: {e}; `make test` installs tpm2-tools"));
        assert!(
            out.status.success(),
            "{tool} {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        drop(self.state.take());
    }
}
