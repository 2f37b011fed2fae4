//! `skrctl status [--json]`: the daemon's view (D-Bus `GetStatus` on org.skrd.KeyRelease1),
//! or, when the daemon is not running, the state file `/run/skrd/state.json` (the output says
//! which). Human form: one line per volume, the attestation, and the keys with who may request
//! them (from the configuration's ACLs); every error with its advice on a line of its own.
//! Exit status: 0 healthy, 1 something failed or was refused or the attestation token expired
//! while a daemon should have renewed it, 2 unusable (neither the daemon nor a usable state
//! file).

use std::path::PathBuf;

use serde_json::json;
use skrd::error::{ErrorCode, Problem};
use skrd::format::state::{self, State, Writer};

use crate::output::{print_json, print_text, unusable, Status};

/// `skrctl status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Print one JSON object: {"source", "healthy", "token_expired", "problems", "state", "acl"}
    /// (or {"error"}).
    #[arg(long)]
    json: bool,
    /// D-Bus address of the daemon's bus (default: the system bus).
    #[arg(long, value_name = "ADDRESS")]
    bus_address: Option<String>,
    /// State file read when the daemon does not answer.
    #[arg(long, value_name = "FILE", default_value = skrd::state_file::STATE_FILE)]
    state_file: PathBuf,
}

async fn ask_daemon(address: Option<&str>) -> Result<String, String> {
    let conn = match address {
        Some(a) => zbus::connection::Builder::address(a),
        None => zbus::connection::Builder::system(),
    }
    .map_err(|e| e.to_string())?
    .build()
    .await
    .map_err(|e| e.to_string())?;
    let reply = conn
        .call_method(
            Some(skrd::daemon::dbus::BUS_NAME),
            skrd::daemon::dbus::OBJECT_PATH,
            Some(skrd::daemon::dbus::INTERFACE),
            "GetStatus",
            &(),
        )
        .await
        .map_err(|e| e.to_string())?;
    reply
        .body()
        .deserialize::<String>()
        .map_err(|e| e.to_string())
}

fn daemon_state(address: Option<&str>) -> Result<State, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let json = rt.block_on(async {
        tokio::time::timeout(std::time::Duration::from_secs(5), ask_daemon(address))
            .await
            .map_err(|_| "no answer within 5 s".to_string())?
    })?;
    state::parse(json.as_bytes()).map_err(|e| e.to_string())
}

fn acl_text(s: &skrd::config::Settings, key: &str) -> String {
    let Some(k) = s.keys.get(key) else {
        return "not configured".into();
    };
    if k.acl.denies_everyone() {
        return "nobody (volume unlock only)".into();
    }
    let mut parts = Vec::new();
    parts.extend(k.acl.uids.iter().map(|u| format!("uid {u}")));
    parts.extend(k.acl.gids.iter().map(|g| format!("group {g}")));
    parts.extend(k.acl.units.iter().map(|u| format!("unit {u}")));
    parts.join(", ")
}

fn when(secs: Option<u64>) -> String {
    secs.and_then(|s| i64::try_from(s).ok())
        .and_then(|s| crate::output::rfc3339(s).as_str().map(str::to_string))
        .unwrap_or_else(|| "never".into())
}

/// The error and, on its own line, what to do about it (see `LastError::advice`).
fn error_lines(out: &mut String, e: &state::LastError) {
    let (what, advice) = e.advice();
    out.push_str(&format!("    error: {what} ({})\n", e.code));
    out.push_str(&format!(
        "    advice: {}\n",
        advice.map_or_else(
            || format!("look up {} in docs/errors.md (man skrd, skrctl)", e.code),
            str::to_string
        )
    ));
}

/// Every error of the document: (where, error), for `--json`'s `problems`.
fn problems(st: &State) -> Vec<(String, &state::LastError)> {
    let mut out = Vec::new();
    for v in &st.volumes {
        if let Some(e) = &v.last_error {
            out.push((format!("volume {}", v.name), e));
        }
    }
    if let Some(e) = st.attestation.as_ref().and_then(|a| a.last_error.as_ref()) {
        out.push(("attestation".to_string(), e));
    }
    for k in &st.keys {
        if let Some(e) = &k.last_error {
            out.push((format!("key {}", k.name), e));
        }
    }
    out
}

fn human(st: &State, source: &str, settings: Option<&skrd::config::Settings>, now: u64) -> String {
    let writer = match st.writer {
        Writer::Initrd => "the initramfs",
        Writer::Daemon => "the daemon",
    };
    let progress = match (st.stopped_at, st.finished_at) {
        (Some(t), _) => format!("the daemon stopped at {}; no key is cached", when(Some(t))),
        (None, Some(_)) => "its work finished".into(),
        (None, None) => "still at work".into(),
    };
    let mut out = format!(
        "skrd status (from {source}; written by {writer} at {}, {progress})\n",
        when(Some(st.updated_at))
    );
    out.push_str("volumes:\n");
    if st.volumes.is_empty() {
        out.push_str("  (none configured)\n");
    }
    for v in &st.volumes {
        // In the order they happened.
        let mut steps: Vec<(&String, &u64)> = v.timings_ms.iter().collect();
        steps.sort_by_key(|(_, ms)| **ms);
        let timings: Vec<String> = steps.iter().map(|(k, ms)| format!("{k} {ms} ms")).collect();
        out.push_str(&format!(
            "  {:<16} {:<16} attempts {}{}\n",
            v.name,
            v.stage.as_str(),
            v.attempts,
            if timings.is_empty() {
                String::new()
            } else {
                format!("  ({})", timings.join(", "))
            }
        ));
        let mut ids = Vec::new();
        if let Some(id) = &v.maa_request_id {
            ids.push(format!("attestation {id}"));
        }
        if let Some(id) = &v.akv_request_id {
            ids.push(format!("release {id}"));
        }
        out.push_str(&format!(
            "    uuid {}{}\n",
            v.uuid,
            if ids.is_empty() {
                String::new()
            } else {
                format!("; request ids: {}", ids.join(", "))
            }
        ));
        if let Some(e) = &v.last_error {
            error_lines(&mut out, e);
        }
    }
    let expired = st.unrenewed_token(now);
    match &st.attestation {
        None => out.push_str("attestation: not attempted\n"),
        Some(a) => {
            out.push_str(&format!(
                "attestation: {} via {}; last success {}; token expires {}\n",
                a.source,
                a.provider,
                when(a.last_success),
                a.token_expiry
                    .map_or_else(|| "unknown (no token kept)".into(), |t| when(Some(t)))
            ));
            if let Some(t) = expired {
                out.push_str(&format!(
                    "    error: the attestation token expired at {} and the daemon did not renew it\n    advice: check that skrd runs (systemctl status skrd) and its log (journalctl -u skrd)\n",
                    when(Some(t))
                ));
            }
            if let Some(e) = &a.last_error {
                error_lines(&mut out, e);
            }
        }
    }
    out.push_str("keys:\n");
    for k in &st.keys {
        out.push_str(&format!(
            "  {:<16} {} {}{}\n    may request: {}\n",
            k.name,
            if k.cached { "cached    " } else { "not cached" },
            k.url,
            k.version
                .as_ref()
                .map_or_else(String::new, |v| format!("  version {v}")),
            settings.map_or_else(
                || "(configuration unreadable)".into(),
                |s| acl_text(s, &k.name)
            )
        ));
        if let Some(e) = &k.last_error {
            error_lines(&mut out, e);
        }
    }
    out.push_str(if st.has_failure() {
        "health: FAILED (see the errors above)\n"
    } else if expired.is_some() {
        "health: FAILED (the attestation token expired and was not renewed)\n"
    } else {
        "health: ok\n"
    });
    out
}

/// Runs `skrctl status`.
pub fn run(args: StatusArgs, config: Option<&std::path::Path>) -> Status {
    let (st, source) = match daemon_state(args.bus_address.as_deref()) {
        Ok(st) => (st, "daemon".to_string()),
        Err(daemon_problem) => match skrd::state_file::read(&args.state_file) {
            Ok(Some(st)) => (st, format!("state file {}", args.state_file.display())),
            Ok(None) => {
                let p = Problem::new(
                    "status-unavailable",
                    format!(
                        "the daemon does not answer ({daemon_problem}) and there is no state file \
                         {}; start skrd (systemctl start skrd) or check the boot log",
                        args.state_file.display()
                    ),
                );
                return unusable(&p, args.json);
            }
            Err(e) => {
                let mut p = e.problem();
                p.message = format!(
                    "the daemon does not answer ({daemon_problem}); {}",
                    p.message
                );
                return unusable(&p, args.json);
            }
        },
    };
    let settings = skrd::config::load(config).ok();
    let now = skrd::daemon::manager::now_unix();
    let healthy = st.is_healthy(now);
    if args.json {
        let acl: serde_json::Map<String, serde_json::Value> = st
            .keys
            .iter()
            .map(|k| {
                (
                    k.name.clone(),
                    settings
                        .as_ref()
                        .map_or(serde_json::Value::Null, |s| json!(acl_text(s, &k.name))),
                )
            })
            .collect();
        let problems: Vec<serde_json::Value> = problems(&st)
            .into_iter()
            .map(|(at, e)| {
                json!({"where": at, "code": e.code, "message": e.message, "advice": e.advice().1})
            })
            .collect();
        print_json(&json!({
            "source": if source == "daemon" { "daemon" } else { "state-file" },
            "healthy": healthy,
            "token_expired": st.unrenewed_token(now).is_some(),
            "problems": problems,
            "state": st,
            "acl": acl,
        }));
    } else {
        print_text(&human(&st, &source, settings.as_ref(), now));
    }
    if healthy {
        Status::Ok
    } else {
        Status::Refused
    }
}
