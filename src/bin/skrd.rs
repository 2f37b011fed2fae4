//! `skrd`: the daemon and initramfs unlocker.
//!
//! This release validates its configuration (`skrd --check-config`); the boot unlock and the
//! long-running D-Bus service arrive in later releases (see README "Status").

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;

/// Secure Key Release daemon for Azure confidential VMs.
#[derive(Parser)]
#[command(name = "skrd", version, about)]
struct Cli {
    /// Configuration file (default: /etc/skrd/skrd.toml plus /etc/skrd/skrd.toml.d/*.toml).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

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
    let _ = cli.config;
    eprintln!("skrd: the daemon is not implemented in this release; use skrctl");
    ExitCode::from(2)
}
