//! `skr-emulator`: a local stand-in for Azure (IMDS, Attestation, Key Vault, Managed HSM) and a
//! test SEV-SNP platform. This issue ships the test platform pieces (`provision-tpm`,
//! `sign-report`); the HTTP services arrive with the emulator issue.
//!
//! Each subcommand prints one JSON line on success; on failure `error: <message> (<code>)` on
//! stderr and exit status 1.

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

fn parse_64_hex(s: &str) -> Result<[u8; 64], String> {
    let bytes = hex::decode(s.trim()).map_err(|e| format!("not hex: {e}"))?;
    <[u8; 64]>::try_from(bytes.as_slice()).map_err(|_| {
        format!(
            "expected 64 bytes (128 hex digits), found {} bytes",
            bytes.len()
        )
    })
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
