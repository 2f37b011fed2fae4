//! `skrctl`: the operator's command line for skrd.
//!
//! This file only defines the command tree and dispatches; each subcommand lives in its own
//! module and calls the library. Exit status: 0 verified/done, 1 checked and refused,
//! 2 unusable input or usage (see `docs/man/skrctl.1`).

mod attest_cmd;
mod config_cmd;
mod evidence_cmd;
mod output;
mod policy_cmd;
mod release_cmd;
mod status_cmd;
mod token_cmd;
mod volume_cmd;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Administer skrd: verify evidence, tokens, release responses and policies; check the configuration;
/// enroll and inspect LUKS2 volumes.
#[derive(Parser)]
#[command(name = "skrctl", version, propagate_version = true)]
struct Cli {
    /// Configuration file (default: /etc/skrd/skrd.toml plus /etc/skrd/skrd.toml.d/*.toml).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Read, verify and collect SEV-SNP evidence.
    #[command(subcommand)]
    Evidence(evidence_cmd::EvidenceCommand),
    /// Check or show the configuration.
    #[command(subcommand)]
    Config(config_cmd::ConfigCommand),
    /// Check a Key Vault key release policy against token claims.
    #[command(subcommand)]
    Policy(policy_cmd::PolicyCommand),
    /// Verify MAA attestation tokens (JWT) offline.
    #[command(subcommand)]
    Token(token_cmd::TokenCommand),
    /// Attest to the configured provider and print the verified claims.
    Attest(attest_cmd::AttestArgs),
    /// Release a key and unwrap it (metadata only; --out-fd hands it over), or verify a saved
    /// release response offline (`release verify`).
    Release(release_cmd::ReleaseArgs),
    /// List the configured LUKS2 volumes and their state (no cloud needed).
    Volumes(volume_cmd::VolumesArgs),
    /// Add skrd's keyslot and azure-skr token to a configured LUKS2 volume.
    Enroll(volume_cmd::EnrollArgs),
    /// Remove skrd's keyslot and token (never the last recovery keyslot).
    Unenroll(volume_cmd::UnenrollArgs),
    /// Rotate skrd's keyslot to a new key version (new slot verified before the old goes).
    Reenroll(volume_cmd::ReenrollArgs),
    /// Unlock a configured volume by hand (or --test the key).
    Unlock(volume_cmd::UnlockArgs),
    /// Show the daemon's status (or the state file's when the daemon is not running).
    Status(status_cmd::StatusArgs),
}

impl Command {
    /// Commands that hold released keys, transfer keys or passphrases in memory.
    fn handles_keys(&self) -> bool {
        match self {
            Self::Attest(_) | Self::Enroll(_) | Self::Unlock(_) | Self::Reenroll(_) => true,
            // `release verify` only reads a saved response: nothing secret in it.
            Self::Release(args) => !args.is_verify(),
            Self::Evidence(_)
            | Self::Config(_)
            | Self::Policy(_)
            | Self::Token(_)
            | Self::Volumes(_)
            | Self::Unenroll(_)
            | Self::Status(_) => false,
        }
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let json = std::env::args_os()
                .take_while(|a| a != "--")
                .any(|a| a == "--json");
            return output::usage_error(e, json);
        }
    };
    if cli.command.handles_keys() {
        // Before any key exists: the whole process in locked memory (warns once on failure).
        let _ = skrd::secret::lock_process_memory();
    }
    let status = match cli.command {
        Command::Evidence(cmd) => evidence_cmd::run(cmd, cli.config.as_deref()),
        Command::Config(cmd) => config_cmd::run(cmd, cli.config.as_deref()),
        Command::Policy(cmd) => policy_cmd::run(cmd, cli.config.as_deref()),
        Command::Token(cmd) => token_cmd::run(cmd, cli.config.as_deref()),
        Command::Attest(args) => attest_cmd::run_attest(&args, cli.config.as_deref()),
        Command::Release(args) => release_cmd::run(args, cli.config.as_deref()),
        Command::Volumes(args) => volume_cmd::run_volumes(args, cli.config.as_deref()),
        Command::Enroll(args) => volume_cmd::run_enroll(args, cli.config.as_deref()),
        Command::Unenroll(args) => volume_cmd::run_unenroll(args, cli.config.as_deref()),
        Command::Reenroll(args) => volume_cmd::run_reenroll(args, cli.config.as_deref()),
        Command::Unlock(args) => volume_cmd::run_unlock(args, cli.config.as_deref()),
        Command::Status(args) => status_cmd::run(args, cli.config.as_deref()),
    };
    ExitCode::from(status as u8)
}
