//! `skr-emulator`: a local stand-in for Azure (IMDS, Attestation, Key Vault, Managed HSM) and a
//! test SEV-SNP platform. This issue ships the test platform pieces (`provision-tpm`); the HTTP
//! services arrive with the emulator issue.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Local Azure stand-in and test SEV-SNP platform for skrd.
#[derive(Parser)]
#[command(name = "skr-emulator", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {}

fn main() -> ExitCode {
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
    match cli.command {}
}
