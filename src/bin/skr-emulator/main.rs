//! `skr-emulator`: a local stand-in for Azure (IMDS, Attestation, Key Vault, Managed HSM) and a
//! test SEV-SNP platform: `serve` runs the HTTP services (skrd::emulator::server), `provision-tpm`
//! and `sign-report` drive the test platform.
//!
//! Each subcommand prints one JSON line on success (`serve`: once every listener accepts); on
//! failure `error: <message> (<code>)` on stderr and exit status 1.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use skrd::emulator::amd_chain::TestAmdChain;
use skrd::emulator::firmware::TestFirmware;
use skrd::emulator::provision;
use skrd::error::ErrorCode;

/// Local Azure stand-in and test SEV-SNP platform for skrd.
#[derive(Parser)]
#[command(name = "skr-emulator", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the local IMDS, attestation, Key Vault and Managed HSM services on loopback.
    ///
    /// Prints one JSON line {"imds", "attestation", "vault", "managed_hsm", "ca_pem", "admin"}
    /// once every listener accepts; logs go to stderr; SIGTERM/SIGINT stop it with status 0.
    Serve(Box<ServeArgs>),
    /// Provision a running swtpm like an Azure CVM vTPM (AK, AK certificate, HCL report).
    ProvisionTpm {
        /// TCTI of the TPM, e.g. "swtpm:host=127.0.0.1,port=2321".
        #[arg(long)]
        tcti: String,
        /// Directory for the test AMD chain, the AK CA and the VM id (created if absent).
        #[arg(long)]
        state_dir: PathBuf,
        /// 64 bytes (128 hex digits) to write to NV 0x01400002 before signing the HCL report.
        #[arg(long, value_parser = parse_64_hex)]
        user_data: Option<[u8; 64]>,
    },
    /// Front a swtpm like the Azure paravisor: a successful NV_Write to the user-data index
    /// 0x01400002 makes it sign a fresh HCL report binding that data into NV 0x01400001.
    ///
    /// Prints one JSON line {"tcti", "command", "control"} once both ports listen; clients use
    /// the printed TCTI. Runs until killed.
    TpmProxy {
        /// The swtpm command port HOST:PORT (its control port is PORT+1).
        #[arg(long)]
        swtpm: std::net::SocketAddr,
        /// The proxy's command port (control = PORT+1); port 0 picks a free pair.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: std::net::SocketAddr,
        /// The state directory `provision-tpm` used (test AMD chain, VM id).
        #[arg(long)]
        state_dir: PathBuf,
    },
    /// Sign a raw 1184-byte SNP report with the test VCEK (the raw /dev/sev-guest flow).
    SignReport {
        /// Directory of the test AMD chain (created if absent).
        #[arg(long)]
        state_dir: PathBuf,
        /// REPORT_DATA: 64 bytes as 128 hex digits.
        #[arg(long, value_parser = parse_64_hex)]
        report_data: [u8; 64],
        /// VMPL of the report.
        #[arg(long, default_value_t = 0)]
        vmpl: u32,
        /// Output file for the report.
        #[arg(long)]
        out: PathBuf,
        /// Also write the extended-report certificate table to this file.
        #[arg(long)]
        cert_table_out: Option<PathBuf>,
    },
}

/// Arguments of `skr-emulator serve`.
#[derive(clap::Args)]
struct ServeArgs {
    /// Directory of the emulator's state (CA, keys, identities, test AMD chain); created if absent.
    #[arg(long)]
    state_dir: PathBuf,
    /// Address of the listeners; port 0 gives each service an ephemeral port, port P gives
    /// IMDS, attestation, vault, managed_hsm, admin the ports P..P+4.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: std::net::SocketAddr,
    /// Address of the IMDS listener instead of the one --listen gives, e.g.
    /// 169.254.169.254:80.
    #[arg(long, value_name = "ADDR:PORT")]
    listen_imds: Option<std::net::SocketAddr>,
    /// Address of the attestation listener instead of the one --listen gives.
    #[arg(long, value_name = "ADDR:PORT")]
    listen_attestation: Option<std::net::SocketAddr>,
    /// Address of the Key Vault listener instead of the one --listen gives.
    #[arg(long, value_name = "ADDR:PORT")]
    listen_vault: Option<std::net::SocketAddr>,
    /// Address of the Managed HSM listener instead of the one --listen gives.
    #[arg(long, value_name = "ADDR:PORT")]
    listen_managed_hsm: Option<std::net::SocketAddr>,
    /// Address of the admin listener instead of the one --listen gives.
    #[arg(long, value_name = "ADDR:PORT")]
    listen_admin: Option<std::net::SocketAddr>,
    /// Announce the attestation, vault and managed HSM services by their host names
    /// (https://NAME, :PORT unless 443) instead of their addresses: start-up line, token
    /// issuer, jku, OpenID metadata, key ids. Make the names resolve to the listeners.
    #[arg(long)]
    public_names: bool,
    /// Host name of the attestation provider (signing certificate CN, server certificate SAN;
    /// with --public-names its URL).
    #[arg(long, default_value = "sharedemu.emu.attest.azure.net")]
    attestation_host: String,
    /// Host name of the Key Vault (server certificate SAN; with --public-names its URL).
    #[arg(long, default_value = "skr-emulator.vault.azure.net")]
    vault_host: String,
    /// Host name of the Managed HSM (server certificate SAN; with --public-names its URL).
    #[arg(long, default_value = "skr-emulator.managedhsm.azure.net")]
    managed_hsm_host: String,
    /// More host names for the server certificate (repeatable).
    #[arg(long = "hostname")]
    hostnames: Vec<String>,
    /// Fault table (JSON, or TOML if the name ends in .toml); replace at run time with
    /// POST {admin}/faults.
    #[arg(long)]
    faults: Option<PathBuf>,
    /// Serve this PEM certificate chain (server certificate first) instead of issuing one
    /// from the emulator's CA; needs --tls-key.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// PEM file clients should trust with --tls-cert (printed as ca_pem; default: --tls-cert).
    #[arg(long, requires = "tls_cert")]
    tls_ca: Option<PathBuf>,
    /// Key Vault / Managed HSM throttling: RSA-2048-equivalent operations (key GET and
    /// release; RSA-3072 weighs 4, RSA-4096 8, others 1) allowed per 10 s before 429 (Azure:
    /// 2000).
    #[arg(long, default_value_t = skrd::emulator::server::vault::DEFAULT_OPS_LIMIT)]
    vault_ops_limit: u32,
    /// Attestation policy (Azure's policy language 1.0, authorization rules) that every
    /// attestation must satisfy; kept in the state directory. Default: the kept one, else
    /// permit every guest whose evidence verifies (and that is not debuggable).
    #[arg(long, value_name = "FILE")]
    attestation_policy: Option<PathBuf>,
    /// Lifetime of the attestation and managed-identity tokens issued, seconds (default:
    /// Azure's, 8 h and 24 h); short lifetimes test the client's refresh.
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(i64).range(1..))]
    token_lifetime: Option<i64>,
}

fn parse_64_hex(s: &str) -> Result<[u8; 64], String> {
    let bytes = hex::decode(s.trim()).map_err(|e| format!("not hex: {e}"))?;
    <[u8; 64]>::try_from(bytes.as_slice()).map_err(|_| {
        format!(
            "expected 64 bytes (128 hex digits), found {} bytes",
            bytes.len()
        )
    })
}

/// Logs to stderr, filtered by RUST_LOG (default info).
fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .try_init();
}

/// Prints the one start-up JSON line on stdout and flushes it.
fn print_line<T: serde::Serialize>(value: &T) {
    use std::io::Write;
    if let Ok(line) = serde_json::to_string(value) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
}

fn fail(code: &str, message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message} ({code})");
    ExitCode::from(1)
}

fn main() -> ExitCode {
    skrd::evidence::vtpm::quiet_tss2_log();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match cli.command {
        Command::Serve(args) => {
            let ServeArgs {
                state_dir,
                listen,
                listen_imds,
                listen_attestation,
                listen_vault,
                listen_managed_hsm,
                listen_admin,
                public_names,
                attestation_host,
                vault_host,
                managed_hsm_host,
                hostnames,
                faults,
                tls_cert,
                tls_key,
                tls_ca,
                vault_ops_limit,
                attestation_policy,
                token_lifetime,
            } = *args;
            init_logging();
            let opts = skrd::emulator::server::ServeOptions {
                state_dir,
                listen,
                listen_at: skrd::emulator::server::ServiceAddrs {
                    imds: listen_imds,
                    attestation: listen_attestation,
                    vault: listen_vault,
                    managed_hsm: listen_managed_hsm,
                    admin: listen_admin,
                },
                public_names,
                attestation_host,
                vault_host,
                managed_hsm_host,
                extra_hostnames: hostnames,
                faults,
                vault_ops_limit,
                attestation_policy,
                token_lifetime,
                tls: tls_cert
                    .zip(tls_key)
                    .map(|(cert, key)| skrd::emulator::server::GivenTls {
                        cert,
                        key,
                        ca: tls_ca,
                    }),
            };
            match skrd::emulator::server::run(opts, print_line) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(e.code(), &e),
            }
        }
        Command::ProvisionTpm {
            tcti,
            state_dir,
            user_data,
        } => match provision::provision_tpm(&tcti, &state_dir, user_data) {
            Ok(done) => match serde_json::to_string(&done) {
                Ok(line) => {
                    println!("{line}");
                    ExitCode::SUCCESS
                }
                Err(e) => fail("emulator-output", e),
            },
            Err(e) => fail(e.code(), &e),
        },
        Command::TpmProxy {
            swtpm,
            listen,
            state_dir,
        } => {
            init_logging();
            let opts = skrd::emulator::tpm_proxy::ProxyOptions {
                swtpm,
                listen,
                state_dir,
            };
            match skrd::emulator::tpm_proxy::run(opts, print_line) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(e.code(), &e),
            }
        }
        Command::SignReport {
            state_dir,
            report_data,
            vmpl,
            out,
            cert_table_out,
        } => {
            let chain = match TestAmdChain::load_or_create(&state_dir) {
                Ok(chain) => chain,
                Err(e) => return fail(e.code(), &e),
            };
            let vcek_pem = chain.path(skrd::emulator::amd_chain::VCEK_PEM);
            let firmware = TestFirmware::new(chain);
            let report = match firmware.sign_report(&report_data, vmpl) {
                Ok(r) => r,
                Err(e) => return fail(e.code(), &e),
            };
            if let Err(e) = std::fs::write(&out, report) {
                return fail("emulator-output", format!("{}: {e}", out.display()));
            }
            if let Some(path) = &cert_table_out {
                if let Err(e) = std::fs::write(path, firmware.cert_table()) {
                    return fail("emulator-output", format!("{}: {e}", path.display()));
                }
            }
            let line = serde_json::json!({
                "report": out,
                "report_size": report.len(),
                "cert_table": cert_table_out,
                "vcek_pem": vcek_pem,
                "vmpl": vmpl,
            });
            println!("{line}");
            ExitCode::SUCCESS
        }
    }
}
