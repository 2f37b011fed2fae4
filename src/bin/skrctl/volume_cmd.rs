//! `skrctl volumes | enroll | unenroll | reenroll | unlock` (owner: volume): argument parsing
//! and output only; the work is `skrd::volume`.
//!
//! Key material is released now (attestation + Key Vault release of the volume's configured key,
//! as at boot) unless `--key-fd N` gives it: the bytes `skrctl release --out-fd N` writes (oct
//! bytes, or an RSA/EC key as PKCS#8 DER), reduced to the same IKM as at boot (DESIGN.md). The
//! recovery passphrase comes from `--recovery-fd N`
//! (exact bytes, like a cryptsetup key file), else a no-echo prompt on a terminal, else the
//! first line of stdin. Exit status: 0 done or unchanged, 1 refused, 2 unusable input.

use std::io::Read;
use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::{json, Value};
use skrd::config::Settings;
use skrd::crypto::key_material::{self, KeyKind};
use skrd::error::{ErrorCode, Problem};
use skrd::keysocket::DEFAULT_SOCKET_PATH;
use skrd::release::KeyRequest;
use skrd::secret::Secret;
use skrd::volume::{
    self, detached, Authorization, Change, CrypttabOptions, VolumeError, VolumeSpec,
};

use crate::output::{print_json, print_text, unusable, Status};

/// Largest key material or passphrase read from a descriptor.
const MAX_SECRET_INPUT: u64 = 1 << 20;

/// `skrctl volumes`.
#[derive(Args)]
pub struct VolumesArgs {
    /// Inspect this device for volume NAME instead of /dev/disk/by-uuid/UUID (repeatable).
    #[arg(long = "device", value_name = "NAME=PATH")]
    devices: Vec<String>,
    /// Print one JSON object: {"volumes": [{"volume", "uuid", "device", "present", "luks2",
    /// "enrolled_keyslot", "key_version", "token_matches", "recovery_keyslots", "active",
    /// "header_ok", "problem"}]}.
    #[arg(long)]
    json: bool,
}

/// Which volume: by configured name and/or by device.
#[derive(Args)]
pub struct Target {
    /// The configured volume ([volumes.NAME]).
    #[arg(long, value_name = "NAME", required_unless_present = "device")]
    volume: Option<String>,
    /// The LUKS2 device (default: /dev/disk/by-uuid/UUID of the volume); alone, the volume is
    /// found by the header's LUKS UUID.
    #[arg(long, value_name = "DEV")]
    device: Option<PathBuf>,
    /// Directory for the header backup taken before any header write.
    #[arg(long, value_name = "DIR", default_value = volume::header::DEFAULT_BACKUP_DIR)]
    backup_dir: PathBuf,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

/// `skrctl enroll`.
#[derive(Args)]
pub struct EnrollArgs {
    #[command(flatten)]
    target: Target,
    /// Read the key material from this file descriptor (as `skrctl release --out-fd` writes it)
    /// instead of releasing the volume's key now.
    #[arg(long, value_name = "N")]
    key_fd: Option<i32>,
    /// Read the recovery passphrase from this file descriptor (exact bytes).
    #[arg(long, value_name = "N")]
    recovery_fd: Option<i32>,
    /// The key version the material belongs to (default: the configured one).
    #[arg(long, value_name = "VERSION")]
    key_version: Option<String>,
}

/// `skrctl unenroll`.
#[derive(Args)]
pub struct UnenrollArgs {
    #[command(flatten)]
    target: Target,
}

/// `skrctl reenroll`.
#[derive(Args)]
pub struct ReenrollArgs {
    #[command(flatten)]
    target: Target,
    /// Key material of the currently enrolled version, from this file descriptor.
    #[arg(long, value_name = "N")]
    old_key_fd: i32,
    /// Key material of the new version, from this file descriptor (default: release the
    /// configured key now).
    #[arg(long, value_name = "N")]
    key_fd: Option<i32>,
    /// The new key version (recorded in the token; default: the configured one).
    #[arg(long, value_name = "VERSION")]
    key_version: Option<String>,
}

/// `skrctl unlock`.
#[derive(Args)]
pub struct UnlockArgs {
    /// The configured volume.
    volume: String,
    /// The LUKS2 device (default: /dev/disk/by-uuid/UUID).
    #[arg(long, value_name = "DEV")]
    device: Option<PathBuf>,
    /// Key material, from this file descriptor (default: release the volume's key now).
    #[arg(long, value_name = "N")]
    key_fd: Option<i32>,
    /// Only check that the key opens skrd's keyslot; activate nothing.
    #[arg(long)]
    test: bool,
    /// Where the checked detached header used for the activation goes.
    #[arg(long, value_name = "DIR", default_value = detached::HEADER_DIR)]
    header_dir: PathBuf,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

/// The IKM of a released key given as `skrctl release --out-fd` writes it: an RSA or EC key
/// (PKCS#8 DER, or PKCS#1 / SEC1) gives its private value, anything else is oct key bytes.
fn ikm_of_released(plaintext: &Secret) -> Result<Secret, Problem> {
    let mut last = None;
    for kind in [KeyKind::Rsa, KeyKind::Ec, KeyKind::Oct] {
        match key_material::decode(kind, plaintext) {
            Ok(m) => return Ok(m.into_ikm()),
            Err(e) => last = Some(e),
        }
    }
    Err(Problem::new(
        "secret-input-unreadable",
        format!(
            "the key material on the descriptor is neither an RSA or EC private key nor oct key \
             bytes ({}); give what `skrctl release --out-fd` writes",
            last.map(|e| e.to_string()).unwrap_or_default()
        ),
    ))
}

/// The volume's IKM: from `--key-fd`, else released now with the volume's configured key
/// (the same attestation and release as at boot). On a refusal the status says so.
fn volume_ikm(
    settings: &Settings,
    volume: &str,
    key_fd: Option<i32>,
    json: bool,
) -> Result<Secret, Status> {
    if let Some(fd) = key_fd {
        return read_fd(fd, "key")
            .and_then(|k| ikm_of_released(&k))
            .map_err(|p| unusable(&p, json));
    }
    let key_name = settings
        .volumes
        .get(volume)
        .map(|v| v.key.clone())
        .ok_or_else(|| {
            let p = Problem::new(
                "invalid-argument",
                format!("volume {volume:?} is not configured; give --key-fd or configure it"),
            );
            unusable(&p, json)
        })?;
    let key = settings.keys.get(&key_name).ok_or_else(|| {
        let p = Problem::new(
            "invalid-argument",
            format!("volume {volume:?} uses key {key_name:?}, which is not configured"),
        );
        unusable(&p, json)
    })?;
    let request = KeyRequest::from_settings(&key_name, key);
    let source = crate::attest_cmd::open_source(None, settings).map_err(|p| unusable(&p, json))?;
    match crate::attest_cmd::run_flow(settings, source, std::slice::from_ref(&request)) {
        Err(p) => Err(unusable(&p, json)),
        Ok(Err(e)) => Err(crate::attest_cmd::flow_failed(
            &e,
            json,
            json!({"volume": volume, "key_url": request.url.to_string()}),
        )),
        Ok(Ok(mut outcome)) => outcome
            .keys
            .pop()
            .map(|k| k.material.into_ikm())
            .ok_or_else(|| {
                let p = Problem::new(
                    "internal-task-failed",
                    "the run released no key; this is a bug",
                );
                unusable(&p, json)
            }),
    }
}

fn load(config: Option<&Path>) -> Result<Settings, Problem> {
    skrd::config::load(config).map_err(|e| e.problem())
}

fn read_fd(fd: i32, what: &str) -> Result<Secret, Problem> {
    let bad = |msg: String| Problem::new("secret-input-unreadable", msg);
    if fd < 0 {
        return Err(bad(format!("--{what}-fd {fd} is not a file descriptor")));
    }
    let file = std::fs::File::open(format!("/dev/fd/{fd}")).map_err(|e| {
        bad(format!(
            "cannot read the {what} from file descriptor {fd}: {e}"
        ))
    })?;
    let mut bytes = Vec::new();
    let read = file.take(MAX_SECRET_INPUT + 1).read_to_end(&mut bytes);
    let secret = Secret::new(bytes);
    read.map_err(|e| {
        bad(format!(
            "cannot read the {what} from file descriptor {fd}: {e}"
        ))
    })?;
    if secret.is_empty() || secret.len() as u64 > MAX_SECRET_INPUT {
        return Err(bad(format!(
            "the {what} on file descriptor {fd} is {} bytes; expected 1 to {MAX_SECRET_INPUT}",
            secret.len()
        )));
    }
    Ok(secret)
}

/// The recovery passphrase: `--recovery-fd`, else a no-echo prompt, else stdin's first line.
fn recovery(fd: Option<i32>) -> Result<Secret, Problem> {
    if let Some(fd) = fd {
        return read_fd(fd, "recovery passphrase");
    }
    use std::io::IsTerminal;
    let tty = std::io::stdin().is_terminal();
    if tty {
        eprint!("Enter an existing (recovery) passphrase of the volume: ");
    }
    let mut line = String::new();
    let read = with_echo_off(tty, || std::io::stdin().read_line(&mut line));
    if tty {
        eprintln!();
    }
    let mut bytes = std::mem::take(&mut line).into_bytes();
    let _ = read.map_err(|e| {
        Problem::new(
            "secret-input-unreadable",
            format!("cannot read the recovery passphrase: {e}"),
        )
    })?;
    while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        bytes.pop();
    }
    let secret = Secret::new(bytes);
    if secret.is_empty() {
        return Err(Problem::new(
            "secret-input-unreadable",
            "no recovery passphrase given (use --recovery-fd N, a terminal, or stdin)",
        ));
    }
    Ok(secret)
}

fn with_echo_off<T>(tty: bool, f: impl FnOnce() -> T) -> T {
    if !tty {
        return f();
    }
    // SAFETY: termios is plain data; tcgetattr fills it for fd 0, which is a terminal.
    let mut old: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: fd 0 and a valid out-pointer.
    if unsafe { libc::tcgetattr(0, &mut old) } != 0 {
        return f();
    }
    let mut quiet = old;
    quiet.c_lflag &= !libc::ECHO;
    // SAFETY: fd 0 and a termios obtained from tcgetattr.
    unsafe { libc::tcsetattr(0, libc::TCSANOW, &quiet) };
    let out = f();
    // SAFETY: as above; restores the saved settings.
    unsafe { libc::tcsetattr(0, libc::TCSANOW, &old) };
    out
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Exit status for a volume error: unusable input (2) or refused (1).
fn status_of(e: &VolumeError) -> Status {
    match e {
        VolumeError::DeviceMissing { .. }
        | VolumeError::UnknownVolume { .. }
        | VolumeError::BackupDir { .. } => Status::Unusable,
        _ => Status::Refused,
    }
}

fn fail(e: &VolumeError, json: bool) -> Status {
    let status = status_of(e);
    let problem = e.problem();
    if json {
        print_json(&json!({ "error": problem }));
    } else {
        eprintln!("error: {}\n  code: {}", problem.message, problem.code);
    }
    status
}

/// Prints what an operation did (and the crypttab line), or its error.
fn report(
    verb: &str,
    spec: &VolumeSpec,
    device: &Path,
    result: Result<Change, VolumeError>,
    json: bool,
    crypttab: CrypttabOptions,
) -> Status {
    let change = match result {
        Ok(c) => c,
        Err(e) => return fail(&e, json),
    };
    let change = &change;
    let changed = matches!(change, Change::Changed { .. });
    let slot = change.keyslot();
    let crypttab = slot.map(|_| {
        spec.crypttab_line(
            DEFAULT_SOCKET_PATH,
            Path::new(detached::HEADER_DIR),
            crypttab,
        )
    });
    if json {
        print_json(&json!({
            "volume": spec.name,
            "device": device.display().to_string(),
            "result": if changed { verb } else { "unchanged" },
            "keyslot": slot,
            "crypttab": crypttab,
        }));
    } else {
        let what = if changed {
            format!("{verb} volume {}", spec.name)
        } else {
            format!("volume {} unchanged (already {verb})", spec.name)
        };
        let mut text = match slot {
            Some(s) => format!("{what}: skrd keyslot {s} on {}\n", device.display()),
            None => format!("{what} on {}\n", device.display()),
        };
        if let Some(line) = crypttab {
            text.push_str(&format!("/etc/crypttab line:\n{line}\n"));
        }
        print_text(&text);
    }
    Status::Ok
}

fn crypttab_options(settings: &Settings, volume: &str) -> CrypttabOptions {
    CrypttabOptions::from_settings(settings, volume)
}

/// Loads the configuration and resolves the target volume, or reports why not.
fn prepare(config: Option<&Path>, t: &Target) -> Result<(Settings, VolumeSpec, PathBuf), Status> {
    let settings = load(config).map_err(|p| unusable(&p, t.json))?;
    let (spec, device) = VolumeSpec::resolve(&settings, t.volume.as_deref(), t.device.as_deref())
        .map_err(|e| fail(&e, t.json))?;
    Ok((settings, spec, device))
}

/// `skrctl volumes`.
pub fn run_volumes(args: VolumesArgs, config: Option<&Path>) -> Status {
    let settings = match load(config) {
        Ok(s) => s,
        Err(p) => return unusable(&p, args.json),
    };
    let mut overrides = std::collections::BTreeMap::new();
    for d in &args.devices {
        let Some((name, path)) = d.split_once('=') else {
            let p = Problem::new(
                "invalid-argument",
                format!("--device {d:?} is not NAME=PATH"),
            );
            return unusable(&p, args.json);
        };
        overrides.insert(name.to_string(), PathBuf::from(path));
    }
    let states: Vec<_> = VolumeSpec::all(&settings)
        .iter()
        .map(|spec| volume::status(spec, overrides.get(&spec.name).map(PathBuf::as_path)))
        .collect();
    if args.json {
        print_json(&json!({ "volumes": states }));
    } else if states.is_empty() {
        print_text("no volumes configured ([volumes.NAME] in /etc/skrd/skrd.toml)\n");
    } else {
        let mut text = String::new();
        for s in &states {
            let enrolled = match (s.enrolled_keyslot, &s.key_version) {
                (Some(k), Some(v)) => format!("enrolled (keyslot {k}, key version {v})"),
                (Some(k), None) => format!("enrolled (keyslot {k})"),
                (None, _) => "not enrolled".to_string(),
            };
            let state = if !s.present {
                "device absent".to_string()
            } else if !s.luks2 {
                "not a usable LUKS2 volume".to_string()
            } else {
                let header = match s.header_ok {
                    Some(true) => ", header checked",
                    Some(false) => ", HEADER REFUSED",
                    None => "",
                };
                format!(
                    "{enrolled}, recovery keyslots {:?}{header}, {}",
                    s.recovery_keyslots,
                    if s.active { "open" } else { "closed" }
                )
            };
            text.push_str(&format!(
                "{}  UUID={}  {}  {}\n",
                s.volume,
                s.uuid,
                s.device.display(),
                state
            ));
            if let Some(p) = &s.problem {
                text.push_str(&format!("  problem: {} ({})\n", p.message, p.code));
            }
        }
        print_text(&text);
    }
    // Listing is a report, not a verdict: problems are per volume in the output.
    Status::Ok
}

/// `skrctl enroll`.
pub fn run_enroll(args: EnrollArgs, config: Option<&Path>) -> Status {
    let json = args.target.json;
    let (settings, spec, device) = match prepare(config, &args.target) {
        Ok(t) => t,
        Err(status) => return status,
    };
    // Release first: a refusal should not cost the operator a passphrase prompt.
    let ikm = match volume_ikm(&settings, &spec.name, args.key_fd, json) {
        Ok(k) => k,
        Err(status) => return status,
    };
    let auth = match recovery(args.recovery_fd) {
        Ok(k) => k,
        Err(p) => return unusable(&p, json),
    };
    let result = volume::enroll(
        &device,
        &spec,
        &ikm,
        Authorization::Passphrase(&auth),
        args.key_version.as_deref(),
        &args.target.backup_dir,
        now(),
    );
    report(
        "enrolled",
        &spec,
        &device,
        result,
        json,
        crypttab_options(&settings, &spec.name),
    )
}

/// `skrctl unenroll`.
pub fn run_unenroll(args: UnenrollArgs, config: Option<&Path>) -> Status {
    let json = args.target.json;
    let (_, spec, device) = match prepare(config, &args.target) {
        Ok(t) => t,
        Err(status) => return status,
    };
    let result = volume::unenroll(&device, &spec, &args.target.backup_dir);
    report(
        "unenrolled",
        &spec,
        &device,
        result,
        json,
        CrypttabOptions::default(),
    )
}

/// `skrctl reenroll`.
pub fn run_reenroll(args: ReenrollArgs, config: Option<&Path>) -> Status {
    let json = args.target.json;
    let (settings, spec, device) = match prepare(config, &args.target) {
        Ok(t) => t,
        Err(status) => return status,
    };
    let old = match read_fd(args.old_key_fd, "old key").and_then(|k| ikm_of_released(&k)) {
        Ok(k) => k,
        Err(p) => return unusable(&p, json),
    };
    let new = match volume_ikm(&settings, &spec.name, args.key_fd, json) {
        Ok(k) => k,
        Err(status) => return status,
    };
    let version = args.key_version.or_else(|| spec.key_version.clone());
    let result = volume::reenroll(
        &device,
        &spec,
        &old,
        &new,
        version.as_deref(),
        &args.target.backup_dir,
        now(),
    );
    report(
        "reenrolled",
        &spec,
        &device,
        result,
        json,
        crypttab_options(&settings, &spec.name),
    )
}

/// `skrctl unlock`.
pub fn run_unlock(args: UnlockArgs, config: Option<&Path>) -> Status {
    let json = args.json;
    let settings = match load(config) {
        Ok(s) => s,
        Err(p) => return unusable(&p, json),
    };
    let (spec, device) =
        match VolumeSpec::resolve(&settings, Some(&args.volume), args.device.as_deref()) {
            Ok(t) => t,
            Err(e) => return fail(&e, json),
        };
    let ikm = match volume_ikm(&settings, &spec.name, args.key_fd, json) {
        Ok(k) => k,
        Err(status) => return status,
    };
    let activate = (!args.test).then_some((spec.name.as_str(), args.header_dir.as_path()));
    match volume::unlock(&device, &spec, &ikm, activate) {
        Ok(slot) => {
            let result = if args.test { "key-opens" } else { "unlocked" };
            if json {
                let v: Value = json!({
                    "volume": spec.name,
                    "device": device.display().to_string(),
                    "result": result,
                    "keyslot": slot,
                });
                print_json(&v);
            } else if args.test {
                print_text(&format!(
                    "the key opens skrd keyslot {slot} of volume {} ({})\n",
                    spec.name,
                    device.display()
                ));
            } else {
                print_text(&format!(
                    "volume {} unlocked as /dev/mapper/{} (keyslot {slot})\n",
                    spec.name, spec.name
                ));
            }
            Status::Ok
        }
        Err(e) => fail(&e, json),
    }
}
