//! `skr-emulator serve` under realistic host names (issue 5: "host names configurable, so skrd
//! configs carry realistic URLs mapped to loopback"): each service on its own address
//! (`--listen-imds`, `--listen-attestation`, `--listen-vault`, `--listen-managed-hsm`) and
//! announced by its Azure-shaped name (`--public-names` with `--attestation-host`,
//! `--vault-host`, `--managed-hsm-host`).
//!
//! `public_names_reach_urls_issuer_jku_and_key_ids` runs unprivileged: the client maps the names
//! to the listeners itself. `skrctl_attests_and_releases_with_real_shaped_urls_only` runs skrd's
//! own client (skrctl) in a private network and mount namespace where the names resolve through
//! a bind-mounted /etc/hosts, IMDS listens on 169.254.169.254:80 and the Azure services on
//! port 443 of 127.0.0.2-4, with a configuration that names only real-shaped URLs.
//!
//! Expected values come from the options given (names, addresses) and PROTOCOLS.md §5.1/§5.4
//! (`iss` = `https://<host>`, `jku` = `<iss>/certs`) and §6.3 (kid = `<vault>/keys/<name>/<ver>`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use common::emulator::{now, Emu};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use skrd::crypto::transfer_key::TransferKey;
use skrd::emulator::amd_chain::{cert_pem, TestAmdChain};
use skrd::emulator::firmware::TestFirmware;

const MAA_HOST: &str = "skrdtest.eus2.attest.azure.net";
const VAULT_HOST: &str = "skrdtest.vault.azure.net";
const MHSM_HOST: &str = "skrdtest.managedhsm.azure.net";

fn b64url(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

/// `host:port` of a URL with an explicit port.
fn port_of(url: &str) -> u16 {
    url.rsplit(':').next().unwrap().parse().unwrap()
}

/// JWS segment `i` (0 header, 1 payload) of a compact token, as JSON.
fn segment(jws: &str, i: usize) -> Value {
    serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(jws.split('.').nth(i).unwrap())
            .unwrap(),
    )
    .unwrap()
}

/// A SevSnpVm request body (§5.2) for a report of the state directory's test firmware over
/// `runtime` (REPORT_DATA = SHA-256(runtime) || 0).
fn sevsnpvm_body(dir: &Path, runtime: &[u8]) -> Value {
    let chain = TestAmdChain::load(dir).unwrap();
    let pem: String = [&chain.vcek_der, &chain.ask_der, &chain.ark_der]
        .iter()
        .map(|d| cert_pem(d).unwrap())
        .collect();
    let mut rd = [0u8; 64];
    rd[..32].copy_from_slice(&Sha256::digest(runtime));
    let report = TestFirmware::new(chain).sign_report(&rd, 0).unwrap();
    let inner = json!({"SnpReport": b64url(&report), "VcekCertChain": b64url(pem.as_bytes())});
    json!({
        "report": b64url(inner.to_string().as_bytes()),
        "runtimeData": {"data": b64url(runtime), "dataType": "JSON"},
    })
}

/// A release policy for keys this emulator's attestation authority may release.
fn policy(authority: &str) -> Value {
    let p = json!({"version": "1.0.0", "anyOf": [{"authority": authority, "allOf": [
        {"claim": "x-ms-attestation-type", "equals": "sevsnpvm"}]}]});
    json!({"contentType": "application/json; charset=utf-8", "data": b64url(p.to_string().as_bytes())})
}

#[test]
fn public_names_reach_urls_issuer_jku_and_key_ids() {
    let dir = common::fresh_state_dir();
    let emu = Emu::start(
        dir.path(),
        &[
            "--listen-imds",
            "127.0.0.5:0",
            "--listen-attestation",
            "127.0.0.2:0",
            "--listen-vault",
            "127.0.0.3:0",
            "--listen-managed-hsm",
            "127.0.0.4:0",
            "--public-names",
            "--attestation-host",
            MAA_HOST,
            "--vault-host",
            VAULT_HOST,
            "--managed-hsm-host",
            MHSM_HOST,
        ],
    );
    // The start-up line names the services by host name, with the ports they got.
    let maa = emu.url("attestation");
    let vault = emu.url("vault");
    let mhsm = emu.url("managed_hsm");
    for (url, host) in [(&maa, MAA_HOST), (&vault, VAULT_HOST), (&mhsm, MHSM_HOST)] {
        assert_eq!(*url, format!("https://{host}:{}", port_of(url)));
        assert_ne!(port_of(url), 0);
    }
    assert!(
        emu.url("imds").starts_with("http://127.0.0.5:"),
        "{}",
        emu.url("imds")
    );
    assert!(
        emu.url("admin").starts_with("http://127.0.0.1:"),
        "{}",
        emu.url("admin")
    );
    // Each listener is on its own address, and only there.
    for (url, ip) in [
        (&maa, [127, 0, 0, 2]),
        (&vault, [127, 0, 0, 3]),
        (&mhsm, [127, 0, 0, 4]),
    ] {
        let port = port_of(url);
        TcpStream::connect(SocketAddr::from((ip, port))).unwrap();
        assert!(TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port))).is_err());
    }

    // A client that maps the names to the listeners, as /etc/hosts would.
    let ca = std::fs::read(emu.ep["ca_pem"].as_str().unwrap()).unwrap();
    let c = reqwest::blocking::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .no_proxy()
        .resolve(MAA_HOST, SocketAddr::from(([127, 0, 0, 2], 0)))
        .resolve(VAULT_HOST, SocketAddr::from(([127, 0, 0, 3], 0)))
        .resolve(MHSM_HOST, SocketAddr::from(([127, 0, 0, 4], 0)))
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();

    // OpenID metadata and the signing certificate name the public issuer (§5.1).
    let meta: Value = c
        .get(format!("{maa}/.well-known/openid-configuration"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(meta["issuer"], maa.as_str());
    assert_eq!(meta["jwks_uri"], format!("{maa}/certs"));
    let certs: Value = c
        .get(format!("{maa}/certs"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let x5c = base64::engine::general_purpose::STANDARD
        .decode(certs["keys"][0]["x5c"][0].as_str().unwrap())
        .unwrap();
    let der = dir.path().join("maa-signing.der");
    std::fs::write(&der, x5c).unwrap();
    let (ok, subject) = common::openssl(&[
        "x509",
        "-inform",
        "DER",
        "-in",
        der.to_str().unwrap(),
        "-noout",
        "-subject",
    ]);
    assert!(
        ok && subject.contains(&format!("CN = https://{MAA_HOST}")),
        "{subject}"
    );

    // The server certificate names the hosts and the listeners' addresses (read by openssl).
    let (ok, text) = common::openssl(&[
        "s_client",
        "-connect",
        &format!("127.0.0.3:{}", port_of(&vault)),
        "-servername",
        VAULT_HOST,
        "-verify_hostname",
        VAULT_HOST,
        "-CAfile",
        emu.ep["ca_pem"].as_str().unwrap(),
        "-verify_return_error",
    ]);
    assert!(ok && text.contains("Verify return code: 0 (ok)"), "{text}");

    // The attestation token: iss = the public URL, jku = <iss>/certs (§5.4).
    let tk = TransferKey::generate(2048).unwrap();
    let resp = c
        .post(format!("{maa}/attest/SevSnpVm?api-version=2022-08-01"))
        .json(&sevsnpvm_body(dir.path(), tk.runtime_data()))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let token = resp.json::<Value>().unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(segment(&token, 1)["iss"], maa.as_str());
    assert_eq!(segment(&token, 0)["jku"], format!("{maa}/certs"));
    assert!(segment(&token, 1)["exp"].as_i64().unwrap() > now());

    // Key ids under the vault's public URL; a release to the token above (§6.3).
    let bearer = emu.imds_token("https%3A%2F%2Fvault.azure.net");
    let created: Value = c
        .post(format!("{vault}/keys/disk/create?api-version=7.4"))
        .bearer_auth(&bearer)
        .json(
            &json!({"kty": "RSA-HSM", "attributes": {"exportable": true},
                      "release_policy": policy(&maa)}),
        )
        .send()
        .unwrap()
        .json()
        .unwrap();
    let kid = created["key"]["kid"].as_str().unwrap();
    assert!(kid.starts_with(&format!("{vault}/keys/disk/")), "{kid}");
    let resp = c
        .post(format!("{kid}/release?api-version=7.4"))
        .bearer_auth(&bearer)
        .json(&json!({"target": token}))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let jws = resp.json::<Value>().unwrap()["value"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(segment(&jws, 1)["response"]["key"]["key"]["kid"], kid);
    let verified = emu.verify_release(&format!("{{\"value\":\"{jws}\"}}"), 256, tk.kid());
    assert!(verified.payload.key.kid.starts_with(&vault));
}

/// Runs `program args` and panics with its output unless it succeeds.
fn run(program: &str, args: &[&str]) {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Set when this test binary runs itself inside the namespaces.
const IN_NAMESPACE: &str = "SKRD_TEST_IN_NETNS";

#[test]
fn skrctl_attests_and_releases_with_real_shaped_urls_only() {
    if std::env::var_os(IN_NAMESPACE).is_none() {
        // Re-run only this test in a new network and mount namespace (mounts stay private).
        let out = Command::new("unshare")
            .args(["--net", "--mount", "--propagation", "private", "--"])
            .arg(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "skrctl_attests_and_releases_with_real_shaped_urls_only",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(IN_NAMESPACE, "1")
            .output()
            .unwrap_or_else(|e| panic!("cannot run unshare: {e}"));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "the test in the namespace failed ({:?}):\n{text}",
            out.status
        );
        assert!(text.contains("1 passed"), "{text}");
        return;
    }
    in_namespace();
}

/// The body of the namespace test: loopback with the IMDS address, names in /etc/hosts, swtpm
/// provisioned as an Azure CVM vTPM, the emulator on the real ports, skrctl with a configuration
/// of real-shaped URLs only.
fn in_namespace() {
    run("ip", &["link", "set", "lo", "up"]);
    run("ip", &["addr", "add", "169.254.169.254/32", "dev", "lo"]);
    let etc = tempfile::tempdir().unwrap();
    let names = format!(
        "127.0.0.1 localhost\n127.0.0.2 {MAA_HOST}\n127.0.0.3 {VAULT_HOST}\n127.0.0.4 {MHSM_HOST}\n"
    );
    if Path::new("/etc/hosts").exists() {
        let hosts = etc.path().join("hosts");
        std::fs::write(&hosts, names).unwrap();
        run("mount", &["--bind", hosts.to_str().unwrap(), "/etc/hosts"]);
    } else {
        // No /etc/hosts to mount over (a minimal chroot): a copy of /etc with one, over /etc
        // (this mount namespace only).
        let copy = etc.path().join("etc");
        run("cp", &["-a", "/etc", copy.to_str().unwrap()]);
        std::fs::write(copy.join("hosts"), names).unwrap();
        run("mount", &["--bind", copy.to_str().unwrap(), "/etc"]);
    }

    let tpm = common::swtpm::Swtpm::start();
    let state = common::fresh_state_dir();
    common::emulator::provision_tpm(&tpm.tcti(), state.path());
    let emu = Emu::start(
        state.path(),
        &[
            "--listen-imds",
            "169.254.169.254:80",
            "--listen-attestation",
            "127.0.0.2:443",
            "--listen-vault",
            "127.0.0.3:443",
            "--listen-managed-hsm",
            "127.0.0.4:443",
            "--public-names",
            "--attestation-host",
            MAA_HOST,
            "--vault-host",
            VAULT_HOST,
            "--managed-hsm-host",
            MHSM_HOST,
        ],
    );
    let maa = format!("https://{MAA_HOST}");
    let vault = format!("https://{VAULT_HOST}");
    assert_eq!(emu.url("imds"), "http://169.254.169.254");
    assert_eq!(emu.url("attestation"), maa);
    assert_eq!(emu.url("vault"), vault);
    assert_eq!(emu.url("managed_hsm"), format!("https://{MHSM_HOST}"));

    // An RSA-HSM key whose policy wants this attestation authority and an SEV-SNP CVM.
    let http = emu.client(Duration::from_secs(60));
    let bearer = emu.imds_token("https%3A%2F%2Fvault.azure.net");
    let p = json!({"version": "1.0.0", "anyOf": [{"authority": maa, "allOf": [
        {"claim": "x-ms-isolation-tee.x-ms-attestation-type", "equals": "sevsnpvm"}]}]});
    let created: Value = http
        .post(format!("{vault}/keys/disk/create?api-version=7.4"))
        .bearer_auth(&bearer)
        .json(
            &json!({"kty": "RSA-HSM", "attributes": {"exportable": true},
                      "release_policy": {"data": b64url(p.to_string().as_bytes())}}),
        )
        .send()
        .unwrap()
        .json()
        .unwrap();
    let kid = created["key"]["kid"].as_str().unwrap().to_string();
    assert!(kid.starts_with(&format!("{vault}/keys/disk/")), "{created}");

    // skrd's configuration: real-shaped URLs only, no ports; IMDS at its default address.
    let cfg_dir = tempfile::tempdir().unwrap();
    let cfg = cfg_dir.path().join("skrd.toml");
    std::fs::write(
        &cfg,
        format!(
            "[evidence]\nsource = \"vtpm\"\ntcti = \"{}\"\nevent_log = \"{}/no-event-log\"\n\n\
             [attestation]\nprovider = \"{maa}\"\n\n\
             [trust]\nca_files = [\"{}\"]\n\n\
             [keys.disk]\nurl = \"{vault}/keys/disk\"\n",
            tpm.tcti(),
            cfg_dir.path().display(),
            emu.ep["ca_pem"].as_str().unwrap(),
        ),
    )
    .unwrap();
    let skrctl = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_skrctl"))
            .arg("--config")
            .arg(&cfg)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = skrctl(&["config", "check"]);
    assert_eq!(code, Some(0), "{out}{err}");

    let (code, out, err) = skrctl(&["attest", "--json"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["verified"], true, "{v}");
    assert_eq!(v["issuer"], maa.as_str(), "{v}");
    assert_eq!(v["claims"]["iss"], maa.as_str(), "{v}");
    assert_eq!(
        v["claims"]["x-ms-isolation-tee"]["x-ms-attestation-type"], "sevsnpvm",
        "{v}"
    );
    assert_eq!(v["transfer_key"], "TpmEphemeralEncryptionKey", "{v}");

    let (code, out, err) = skrctl(&["release", "disk", "--json"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["released"], true, "{v}");
    assert_eq!(v["key"]["name"], "disk", "{v}");
    assert_eq!(v["key"]["kty"], "RSA-HSM", "{v}");
    assert!(v.to_string().contains(&kid), "{v}");

    // Every request reached the emulator under those names (its request log).
    let log: Vec<Value> = reqwest::blocking::Client::new()
        .get(format!("{}/requests", emu.url("admin")))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let endpoints: Vec<&str> = log
        .iter()
        .map(|r| r["endpoint"].as_str().unwrap())
        .collect();
    for e in ["imds-token", "attestation-azureguest", "vault-release"] {
        assert!(endpoints.contains(&e), "{endpoints:?}");
    }
}
