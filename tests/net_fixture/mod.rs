//! A running `skr-emulator serve` (tests/common/emulator.rs) with what the network-client tests
//! need around it: fault scripting and request counters through the admin API, network settings
//! trusting the emulator's CA, a runtime and a deadline. Used by tests/net_client.rs,
//! tests/net_trust.rs, tests/identity.rs, tests/skrctl_token.rs and tests/skrctl_policy.rs.

#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use skrd::net::{Deadline, HttpClient, NetSettings};

use crate::common;
use crate::common::emulator::Emu;

/// The emulator, its state directory and an admin client.
pub struct Fixture {
    /// The state directory (identities.json, the MAA key, ...).
    pub dir: tempfile::TempDir,
    /// The running emulator.
    pub emu: Emu,
    admin: reqwest::blocking::Client,
}

impl Fixture {
    /// Starts an emulator on a fresh state directory.
    pub fn start() -> Self {
        let dir = common::fresh_state_dir();
        let emu = Emu::start(dir.path(), &[]);
        let admin = emu.client(Duration::from_secs(10));
        Self { dir, emu, admin }
    }

    /// Replaces the fault table (`POST {admin}/faults`).
    pub fn faults(&self, table: Value) {
        let r = self
            .admin
            .post(format!("{}/faults", self.emu.url("admin")))
            .body(table.to_string())
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
    }

    /// Every per-endpoint request counter.
    pub fn counters(&self) -> Value {
        self.admin
            .get(format!("{}/counters", self.emu.url("admin")))
            .send()
            .unwrap()
            .json()
            .unwrap()
    }

    /// One endpoint's request counter (0 when it saw no request).
    pub fn counter(&self, endpoint: &str) -> u64 {
        self.counters()[endpoint].as_u64().unwrap_or(0)
    }

    /// Fast retries (4, 20-100 ms back-off), 10 s per attempt, trusting the emulator's CA.
    pub fn settings(&self) -> NetSettings {
        NetSettings {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            retries: 4,
            backoff_initial: Duration::from_millis(20),
            backoff_max: Duration::from_millis(100),
            ca_files: vec![PathBuf::from(self.emu.url("ca_pem"))],
        }
    }

    /// A client with [`Self::settings`].
    pub fn http(&self) -> HttpClient {
        HttpClient::new(&self.settings()).unwrap()
    }

    /// A skrd configuration file for this emulator (IMDS, provider, CA, fast retries).
    pub fn config_file(&self, dir: &std::path::Path) -> PathBuf {
        let conf = dir.join("skrd.toml");
        std::fs::write(
            &conf,
            format!(
                "[identity]\nimds_url = \"{}\"\n[attestation]\nprovider = \"{}\"\n\
                 [network]\nretries = 1\nbackoff_initial = \"10ms\"\nbackoff_max = \"20ms\"\n\
                 [trust]\nca_files = [\"{}\"]\n",
                self.emu.url("imds"),
                self.emu.url("attestation"),
                self.emu.url("ca_pem")
            ),
        )
        .unwrap();
        conf
    }
}

/// A single-threaded runtime for the async calls.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A deadline far enough away not to matter.
pub fn deadline() -> Deadline {
    Deadline::after(Duration::from_secs(120))
}
