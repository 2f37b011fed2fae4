//! Shared set-up of the flow tests (`tests/flow_*.rs` include it with `#[path]`): an
//! skr-emulator on a fresh state directory, a configuration pointing skrd at it, keys imported
//! into its vault with known material, and the evidence sources (swtpm provisioned like an
//! Azure CVM, or the emulator's test SNP firmware handed in through the library API).
#![allow(
    dead_code,
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use rsa::traits::{PrivateKeyParts, PublicKeyParts};
use serde_json::{json, Value};
use skrd::attest::collect::{SevGuestSource, Source, VtpmSource};
use skrd::attest::services::Services;
use skrd::config::values::parse_key_url;
use skrd::config::Settings;
use skrd::emulator::amd_chain::TestAmdChain;
use skrd::emulator::firmware::TestFirmware;
use skrd::evidence::Vtpm;
use skrd::format::jose::release::WrapAlgorithm;
use skrd::release::KeyRequest;

#[path = "common/mod.rs"]
pub mod common;

pub use common::emulator::Emu;
pub use common::swtpm::Swtpm;

pub fn b64url(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// An emulator, its state directory and a configuration file pointing at it.
pub struct Env {
    pub state: tempfile::TempDir,
    pub emu: Emu,
    pub cfg_dir: tempfile::TempDir,
    pub http: reqwest::blocking::Client,
    pub vault_token: String,
    pub mhsm_token: String,
}

/// The release policy of the test keys: the emulator's attestation authority and a claim at
/// `claim` equal to `value`.
pub fn policy(authority: &str, claim: &str, value: &str) -> Value {
    let p = json!({"version": "1.0.0", "anyOf": [{"authority": authority, "allOf": [
        {"claim": claim, "equals": value}]}]});
    json!({"contentType": "application/json; charset=utf-8", "data": b64url(p.to_string().as_bytes()), "immutable": false})
}

/// Key types the emulator creates, with the listener that holds them: RSA and EC in Key Vault,
/// oct on the Managed HSM, and RSA and EC on the Managed HSM too (`Mhsm*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    Rsa(usize),
    Ec(&'static str),
    Oct256,
    MhsmRsa(usize),
    MhsmEc(&'static str),
}

impl Env {
    /// Starts the emulator; `extra_config` is appended to the generated configuration.
    pub fn start(source: &str, tcti: Option<&str>, extra_config: &str) -> Self {
        Self::start_with(source, tcti, extra_config, &[])
    }

    /// Like [`Env::start`], with extra `skr-emulator serve` arguments.
    pub fn start_with(
        source: &str,
        tcti: Option<&str>,
        extra_config: &str,
        emulator_args: &[&str],
    ) -> Self {
        let state = common::fresh_state_dir();
        let emu = Emu::start(state.path(), emulator_args);
        let ca = emu.ep["ca_pem"].as_str().unwrap().to_string();
        let http = emu.client(Duration::from_secs(60));
        let vault_token = emu.imds_token("https%3A%2F%2Fvault.azure.net");
        let mhsm_token = emu.imds_token("https%3A%2F%2Fmanagedhsm.azure.net");
        let cfg_dir = tempfile::tempdir().unwrap();
        let tcti_line = tcti
            .map(|t| format!("tcti = \"{t}\"\n"))
            .unwrap_or_default();
        let text = format!(
            "[evidence]\nsource = \"{source}\"\n{tcti_line}event_log = \"{}/no-event-log\"\n\n\
             [identity]\nimds_url = \"{}\"\n\n[attestation]\nprovider = \"{}\"\n\n\
             [network]\nconnect_timeout = \"2s\"\nrequest_timeout = \"10s\"\nretries = 4\n\
             backoff_initial = \"20ms\"\nbackoff_max = \"200ms\"\n\n[boot]\ndeadline = \"60s\"\n\n\
             [trust]\nca_files = [\"{ca}\"]\n{extra_config}",
            cfg_dir.path().display(),
            emu.url("imds"),
            emu.url("attestation"),
        );
        std::fs::write(cfg_dir.path().join("skrd.toml"), text).unwrap();
        Self {
            state,
            emu,
            cfg_dir,
            http,
            vault_token,
            mhsm_token,
        }
    }

    pub fn config_path(&self) -> PathBuf {
        self.cfg_dir.path().join("skrd.toml")
    }

    /// Rewrites the configuration with `extra` appended (e.g. `[keys.NAME]` tables).
    pub fn append_config(&self, extra: &str) {
        let mut text = std::fs::read_to_string(self.config_path()).unwrap();
        text.push_str(extra);
        std::fs::write(self.config_path(), text).unwrap();
    }

    pub fn settings(&self) -> Settings {
        skrd::config::load_from(&self.config_path(), None).unwrap()
    }

    pub fn services(&self) -> Services {
        Services::from_settings(&self.settings()).unwrap()
    }

    pub fn authority(&self) -> String {
        self.emu.url("attestation")
    }

    /// POST {admin}/faults with `table`.
    pub fn faults(&self, table: &Value) {
        let resp = reqwest::blocking::Client::new()
            .post(format!("{}/faults", self.emu.url("admin")))
            .json(table)
            .send()
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200, "{:?}", resp.text());
    }

    /// POST {admin}/counters/reset: zeroes the counters (e.g. after the set-up's own calls).
    pub fn reset_counters(&self) {
        let resp = reqwest::blocking::Client::new()
            .post(format!("{}/counters/reset", self.emu.url("admin")))
            .send()
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
    }

    /// GET {admin}/requests: the answers sent since the last reset, oldest first.
    pub fn requests(&self) -> Vec<Value> {
        reqwest::blocking::Client::new()
            .get(format!("{}/requests", self.emu.url("admin")))
            .send()
            .unwrap()
            .json()
            .unwrap()
    }

    /// The request ids of the answers `endpoint` sent with `status` since the last reset.
    pub fn request_ids(&self, endpoint: &str, status: u16) -> Vec<String> {
        ids_in(&self.requests(), endpoint, status)
    }

    /// How many answers `endpoint` sent with `status` since the last reset.
    pub fn answered(&self, endpoint: &str, status: u16) -> usize {
        answers_in(&self.requests(), endpoint, status).count()
    }

    pub fn counters(&self) -> Value {
        reqwest::blocking::Client::new()
            .get(format!("{}/counters", self.emu.url("admin")))
            .send()
            .unwrap()
            .json()
            .unwrap()
    }

    /// Imports a key of `ty` with known material under `name` and `policy`; returns the key
    /// URL and the material the release must give back (oct: the bytes; RSA: the private
    /// exponent d; EC: the private scalar d — the IKM skrd derives from).
    pub fn import(&self, name: &str, ty: KeyType, policy: &Value) -> (String, Vec<u8>) {
        let (service, token, jwk, expected) = match ty {
            KeyType::Rsa(bits) | KeyType::MhsmRsa(bits) => {
                let k = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, bits).unwrap();
                let p = k.primes();
                let jwk = json!({"kty": "RSA", "key_ops": ["encrypt", "decrypt"],
                    "n": b64url(&k.n().to_bytes_be()), "e": b64url(&k.e().to_bytes_be()),
                    "d": b64url(&k.d().to_bytes_be()), "p": b64url(&p[0].to_bytes_be()),
                    "q": b64url(&p[1].to_bytes_be())});
                ("vault", &self.vault_token, jwk, k.d().to_bytes_be())
            }
            KeyType::Ec(crv) | KeyType::MhsmEc(crv) => {
                // Key pair from python3 `cryptography` (independent of skrd).
                let out = common::python(
                    r#"
import sys, json, base64
from cryptography.hazmat.primitives.asymmetric import ec
curve = {"P-256": ec.SECP256R1(), "P-384": ec.SECP384R1(), "P-521": ec.SECP521R1()}[sys.argv[1]]
k = ec.generate_private_key(curve)
size = (curve.key_size + 7) // 8
b = lambda i: base64.urlsafe_b64encode(i.to_bytes(size, 'big')).rstrip(b'=').decode()
n = k.private_numbers()
print(json.dumps({"kty": "EC", "crv": sys.argv[1], "x": b(n.public_numbers.x), "y": b(n.public_numbers.y), "d": b(n.private_value)}))
"#,
                    &[crv],
                );
                let jwk: Value = serde_json::from_str(out.trim()).unwrap();
                let d = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(jwk["d"].as_str().unwrap())
                    .unwrap();
                ("vault", &self.vault_token, jwk, d)
            }
            KeyType::Oct256 => {
                let mut k = [0u8; 32];
                rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut k);
                let jwk = json!({"kty": "oct-HSM", "k": b64url(&k)});
                ("managed_hsm", &self.mhsm_token, jwk, k.to_vec())
            }
        };
        let (service, token) = match ty {
            KeyType::MhsmRsa(_) | KeyType::MhsmEc(_) => ("managed_hsm", &self.mhsm_token),
            _ => (service, token),
        };
        let base = self.emu.url(service);
        let resp = self
            .http
            .put(format!("{base}/keys/{name}?api-version=7.4"))
            .header("Authorization", format!("Bearer {token}"))
            .json(&json!({"key": jwk, "hsm": true, "attributes": {"exportable": true}, "release_policy": policy}))
            .send()
            .unwrap();
        let status = resp.status().as_u16();
        let body: Value = resp.json().unwrap();
        assert_eq!(status, 200, "{body}");
        let kid = body["key"]["kid"].as_str().unwrap().to_string();
        (kid, expected)
    }
}

/// A release request for `url` with `enc`.
pub fn key_request(url: &str, enc: WrapAlgorithm) -> KeyRequest {
    KeyRequest {
        name: url.to_string(),
        url: parse_key_url(url).unwrap(),
        enc,
        api_version: "7.4".to_string(),
    }
}

/// The emulator's test SEV-SNP firmware as a raw-flow evidence source (tests only; the
/// production binaries open /dev/sev-guest).
pub fn test_firmware_source(env: &Env) -> Source {
    let chain = TestAmdChain::load_or_create(env.state.path()).unwrap();
    Source::SevGuest(SevGuestSource {
        firmware: Box::new(TestFirmware::new(chain)),
        vcek_chain_pem: None,
        transfer_key_bits: 2048,
    })
}

/// swtpm provisioned like an Azure CVM from the emulator's state directory.
pub fn provisioned_swtpm(env: &Env) -> Swtpm {
    let tpm = Swtpm::start();
    skrd::emulator::provision::provision_tpm(&tpm.tcti(), env.state.path(), None).unwrap();
    tpm
}

/// The vTPM evidence source of `tpm`.
pub fn vtpm_source(tpm: &Swtpm, dir: &Path) -> Source {
    Source::Vtpm(VtpmSource {
        vtpm: Arc::new(Vtpm::open(&tpm.tcti()).unwrap()),
        event_log: dir.join("no-event-log"),
        os_release: PathBuf::from("/etc/os-release"),
    })
}

/// Runs a whole flow on a fresh current-thread runtime.
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

pub fn roots(env: &Env) -> Vec<skrd::format::jose::x5c::ChainCert> {
    skrd::release::roots::load_roots(&[PathBuf::from(env.emu.ep["ca_pem"].as_str().unwrap())])
        .unwrap()
}

pub const ALL_ENCS: [WrapAlgorithm; 3] = [
    WrapAlgorithm::CkmRsaAesKeyWrap,
    WrapAlgorithm::RsaAesKeyWrap256,
    WrapAlgorithm::RsaAesKeyWrap384,
];

/// An emulator and a provisioned swtpm, the configuration's `[evidence]` pointing at the swtpm.
pub fn env_with_swtpm() -> (Env, Swtpm) {
    env_with_swtpm_args(&[])
}

/// Like [`env_with_swtpm`], with extra `skr-emulator serve` arguments.
pub fn env_with_swtpm_args(emulator_args: &[&str]) -> (Env, Swtpm) {
    let tpm = Swtpm::start();
    let env = Env::start_with("vtpm", Some(&tpm.tcti()), "", emulator_args);
    skrd::emulator::provision::provision_tpm(&tpm.tcti(), env.state.path(), None).unwrap();
    (env, tpm)
}

/// Runs skrctl with `args` (after `--config`), an extra pipe as fd 3; returns (status, stdout,
/// stderr, bytes written to fd 3).
pub fn skrctl(env: &Env, args: &[&str]) -> (i32, String, String, Vec<u8>) {
    use std::io::Read;
    use std::os::fd::FromRawFd;
    use std::os::unix::process::CommandExt;
    let mut fds = [0i32; 2];
    // SAFETY: pipe(2) fills two descriptors we own.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    let (r, w) = (fds[0], fds[1]);
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_skrctl"));
    cmd.arg("--config").arg(env.config_path()).args(args);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(w, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::close(r);
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    // SAFETY: our own descriptors; the child has exited.
    unsafe { libc::close(w) };
    let mut fd3 = Vec::new();
    // SAFETY: `r` is the read end we own; File closes it.
    unsafe { std::fs::File::from_raw_fd(r) }
        .read_to_end(&mut fd3)
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        fd3,
    )
}

/// One key to import and release: name, type, enc, expected kty.
pub type KeyCase = (&'static str, KeyType, WrapAlgorithm, &'static str);

/// Imports RSA-2048 once per enc mode plus `others`; returns (request, expected IKM, kty).
pub fn import_all(
    env: &Env,
    policy: &Value,
    others: &[KeyCase],
) -> Vec<(KeyRequest, Vec<u8>, &'static str)> {
    let mut wanted = Vec::new();
    for (i, enc) in ALL_ENCS.iter().enumerate() {
        let (url, material) = env.import(&format!("rsa2048-{i}"), KeyType::Rsa(2048), policy);
        wanted.push((key_request(&url, *enc), material, "RSA-HSM"));
    }
    for (name, ty, enc, kty) in others {
        let (url, material) = env.import(name, *ty, policy);
        wanted.push((key_request(&url, *enc), material, *kty));
    }
    wanted
}

/// Every released key is the imported one, of the expected type, wrapped as requested.
pub fn check_released(
    keys: &[skrd::release::ReleasedKey],
    wanted: &[(KeyRequest, Vec<u8>, &'static str)],
) {
    assert_eq!(keys.len(), wanted.len());
    for (key, (req, material, kty)) in keys.iter().zip(wanted) {
        assert_eq!(key.kty, *kty, "{}", req.name);
        assert_eq!(key.enc, req.enc, "{}", req.name);
        assert!(
            key.kid.starts_with(&req.name),
            "{} vs {}",
            key.kid,
            req.name
        );
        // The released key is the imported key: oct bytes, RSA d, EC d (python-made for EC).
        assert_eq!(
            key.material.ikm().expose(),
            material.as_slice(),
            "{}",
            req.name
        );
        if *kty == "oct-HSM" {
            assert_eq!(key.plaintext.expose(), material.as_slice());
        }
    }
}

/// The request ids of the answers of `endpoint` with `status` in `log` (the emulator's
/// request log, [`Env::requests`]).
pub fn ids_in(log: &[Value], endpoint: &str, status: u16) -> Vec<String> {
    answers_in(log, endpoint, status)
        .map(|r| r["request_id"].as_str().unwrap().to_string())
        .collect()
}

/// The answers of `endpoint` with `status` in `log` (the emulator's request log).
pub fn answers_in<'a>(
    log: &'a [Value],
    endpoint: &'a str,
    status: u16,
) -> impl Iterator<Item = &'a Value> {
    log.iter()
        .filter(move |r| r["endpoint"] == endpoint && r["status"] == status)
}
