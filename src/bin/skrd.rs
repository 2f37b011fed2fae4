//! `skrd`: the daemon and initramfs unlocker.
//!
//! This release loads and validates its configuration, then stops with status 2: the boot unlock
//! and the long-running D-Bus service arrive in later releases (see README "Status").

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;

/// Secure Key Release daemon for Azure confidential VMs.
#[derive(Parser)]
#[command(name = "skrd", version)]
struct Cli {
    /// Configuration file (default: /etc/skrd/skrd.toml plus /etc/skrd/skrd.toml.d/*.toml).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Boot unlock in the initramfs (skrd-initrd.service): serve the crypttab key socket.
    #[arg(long)]
    initrd: bool,
    /// With --initrd: the key socket path when not socket-activated.
    #[arg(long, value_name = "PATH", requires = "initrd", default_value = skrd::keysocket::DEFAULT_SOCKET_PATH)]
    socket: PathBuf,
    /// With --initrd: the state file for the running system.
    #[arg(long, value_name = "PATH", requires = "initrd", default_value = skrd::boot::DEFAULT_STATE_PATH)]
    state_file: PathBuf,
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
    // Configuration first: a daemon that cannot read its configuration must not start.
    let settings = match skrd::config::load(cli.config.as_deref()) {
        Ok(settings) => settings,
        Err(errors) => {
            eprintln!("skrd: {errors}");
            return ExitCode::from(2);
        }
    };
    if !settings.trust.amd_test_roots.is_empty() {
        eprintln!(
            "skrd: warning: trust.amd_test_roots is set: SEV-SNP evidence signed by a test root \
             is trusted; never use this configuration in production"
        );
    }
    if cli.initrd {
        let options = skrd::boot::BootOptions {
            socket_path: cli.socket,
            state_path: Some(cli.state_file),
            ..Default::default()
        };
        return ExitCode::from(skrd::boot::main(settings, options));
    }
    eprintln!("skrd: the daemon is not implemented in this release; use skrctl");
    ExitCode::from(2)
}
