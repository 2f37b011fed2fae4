//! `skrd`: the daemon (`skrd.service`): loads and validates its configuration, then runs the
//! long-running service of `skrd::daemon` (D-Bus key service, attestation refresh, volumes left
//! to the daemon). Args, logging, exit status; nothing else.
//!
//! Exit status: 0 after SIGTERM, 1 when the bus cannot be served, 2 unusable configuration.

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
    /// D-Bus address to serve on instead of the system bus (tests).
    #[arg(long, value_name = "ADDRESS")]
    bus_address: Option<String>,
    /// State file (default: /run/skrd/state.json): written for the running system by --initrd,
    /// taken over and kept by the service.
    #[arg(long, value_name = "FILE", default_value = skrd::state_file::STATE_FILE)]
    state_file: PathBuf,
    /// crypttab key socket: with --initrd, the socket to bind when not socket-activated; as a
    /// service, the socket for volumes with options.initrd = false.
    #[arg(long, alias = "socket", value_name = "PATH", default_value = skrd::keysocket::DEFAULT_SOCKET_PATH)]
    key_socket: PathBuf,
    /// Where sysfs is mounted: the service sees open volumes in
    /// SYSFS/class/block/dm-*/dm/uuid (/dev/mapper is hidden by PrivateDevices=yes).
    #[arg(long, value_name = "DIR", default_value = "/sys")]
    sysfs_root: PathBuf,
    /// Boot unlock in the initramfs (skrd-initrd.service): serve the crypttab key socket, then exit.
    #[arg(long)]
    initrd: bool,
    /// Read the LUKS2 header of configured volume NAME once, check it, and write it to
    /// HEADER_DIR/NAME for crypttab's header= (ExecStartPre= of systemd-cryptsetup@NAME); exit
    /// 0 without doing anything when NAME is not a configured volume, 1 when it is refused.
    #[arg(long, value_name = "NAME", conflicts_with = "initrd")]
    prepare_header: Option<String>,
    /// With --prepare-header: the device (default /dev/disk/by-uuid/UUID of the volume).
    #[arg(long, value_name = "PATH", requires = "prepare_header")]
    device: Option<PathBuf>,
    /// Where the checked detached headers go (and the boot unlock looks for refusals).
    #[arg(long, value_name = "DIR", default_value = skrd::volume::detached::HEADER_DIR)]
    header_dir: PathBuf,
}

/// `--prepare-header NAME`: one line on stderr (the journal and console), exit 0/1/2.
fn prepare_header(settings: &skrd::config::Settings, name: &str, cli: &Cli) -> ExitCode {
    use skrd::error::ErrorCode;
    match skrd::volume::detached::prepare_configured(
        settings,
        name,
        cli.device.as_deref(),
        &cli.header_dir,
    ) {
        Ok(None) => ExitCode::SUCCESS,
        Ok(Some(p)) => {
            eprintln!(
                "skrd: volume {name}: LUKS2 header checked ({}, {}-bit key, skrd keyslot {}), activation uses {}",
                p.metadata.cipher,
                p.metadata.key_bits,
                p.keyslot,
                p.path.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("skrd: volume {name}: {e} [{}]", e.code());
            ExitCode::from(1)
        }
    }
}

/// True when `$JOURNAL_STREAM` names our stderr (systemd connected it to the journal).
fn stderr_is_journal() -> bool {
    let Ok(v) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = v.split_once(':') else {
        return false;
    };
    // SAFETY: fstat on fd 2 into a zeroed stat buffer.
    let st = unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        if libc::fstat(2, &mut st) != 0 {
            return false;
        }
        st
    };
    dev.parse::<u64>().ok() == Some(st.st_dev) && ino.parse::<u64>().ok() == Some(st.st_ino)
}

fn init_logging(level: &str) {
    use tracing_subscriber::prelude::*;
    // zbus opens an info-level span for every message it reads or sends: enabled, each costs
    // the subscriber a span with formatted fields (a tenth of skrd's time per ReleaseKey in
    // bench-daemon's profile) and tells an operator nothing. Its warnings and errors stay;
    // SKRD_LOG (a full directive) can still ask for them.
    let filter = tracing_subscriber::EnvFilter::try_from_env("SKRD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("{level},zbus=warn")));
    if stderr_is_journal() {
        if let Ok(journald) = tracing_journald::layer() {
            tracing_subscriber::registry()
                .with(filter)
                .with(
                    journald
                        .with_field_prefix(None)
                        .with_syslog_identifier("skrd".into()),
                )
                .init();
            return;
        }
    }
    tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                // Colours only for a terminal: a file or a pipe gets plain `field=value` text.
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .with_target(false),
        )
        .init();
}

/// At most two glibc malloc arenas: the daemon allocates little, and one arena per thread
/// (the blocking pool's threads come and go) only leaves idle memory resident.
fn limit_malloc_arenas() {
    // SAFETY: mallopt with a documented parameter, before any other thread exists.
    let _ = unsafe { libc::mallopt(libc::M_ARENA_MAX, 2) };
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
    if let Some(name) = &cli.prepare_header {
        // Handles no key: not locked (locking every page it faults in doubles its start-up
        // time, paid once per volume before systemd-cryptsetup asks).
        return prepare_header(&settings, name, &cli);
    }
    // Both other modes handle keys (warns once on failure). Before any key or thread exists:
    // nothing read so far (arguments, configuration) is secret.
    let _ = skrd::secret::lock_process_memory();
    if cli.initrd {
        skrd::daemon::harden_process();
        let options = skrd::boot::BootOptions {
            socket_path: cli.key_socket,
            state_path: Some(cli.state_file),
            header_dir: cli.header_dir,
            ..Default::default()
        };
        return ExitCode::from(skrd::boot::main(settings, options));
    }
    init_logging(settings.log.level.as_str());
    skrd::daemon::harden_process();
    if !settings.trust.amd_test_roots.is_empty() {
        tracing::warn!(
            "trust.amd_test_roots is set: SEV-SNP evidence signed by a test root is trusted; \
             never use this configuration in production"
        );
    }
    limit_malloc_arenas();
    // One thread serves the bus, the key socket and the runs (all async; TPM work goes to the
    // blocking pool): on the 2 cores of a small VM the bus daemon has the other one, and there
    // are no cross-thread wake-ups on the ReleaseKey path (bench-daemon).
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("skrd: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let opts = skrd::daemon::Options {
        config: cli.config,
        state_file: cli.state_file,
        bus_address: cli.bus_address,
        key_socket: cli.key_socket,
        sysfs_root: cli.sysfs_root,
    };
    let status = rt.block_on(skrd::daemon::run(opts, settings));
    // A TPM call of an abandoned run may still be on a blocking thread: do not wait for it.
    rt.shutdown_timeout(std::time::Duration::from_secs(2));
    ExitCode::from(status)
}
