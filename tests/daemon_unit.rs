//! `systemd/skrd.service`: `systemd-analyze security --offline=yes` rates its exposure at most
//! 1.5 (DESIGN.md "The long-running daemon"), and the unit is Type=notify with a watchdog and
//! the D-Bus name; the D-Bus activation file names skrd.service. systemd-analyze is required
//! (`make deps` installs systemd): without it the exposure test fails, it never skips.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

const UNIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/skrd.service");

#[test]
fn unit_exposure_is_at_most_1_5() {
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager", UNIT])
        .output()
        .unwrap_or_else(|e| {
            panic!("systemd-analyze cannot run ({e}): install systemd (make deps)")
        });
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    // "→ Overall exposure level for skrd.service: 1.4 OK 🙂"
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level for skrd.service:"))
        .unwrap_or_else(|| panic!("no exposure line in:\n{text}"));
    let number: f64 = line
        .split(':')
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number in {line:?}"));
    assert!(number <= 1.5, "exposure {number} > 1.5:\n{text}");
}

#[test]
fn unit_and_activation_file_agree() {
    let unit = std::fs::read_to_string(UNIT).unwrap();
    for line in [
        "Type=notify",
        "BusName=org.skrd.KeyRelease1",
        "ExecStart=/usr/sbin/skrd",
        "RuntimeDirectory=skrd",
    ] {
        assert!(unit.lines().any(|l| l == line), "missing {line}");
    }
    assert!(unit.lines().any(|l| l.starts_with("WatchdogSec=")));
    let act = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/dbus/org.skrd.KeyRelease1.service"
    ))
    .unwrap();
    assert!(act.lines().any(|l| l == "Name=org.skrd.KeyRelease1"));
    assert!(act.lines().any(|l| l == "SystemdService=skrd.service"));
    assert!(act.lines().any(|l| l == "User=root"));
}

#[test]
fn refresh_comes_at_80_percent_of_the_remaining_token_lifetime() {
    use skrd::daemon::manager::refresh_after;
    use std::time::Duration;
    let now = 1_700_000_000;
    assert_eq!(refresh_after(Some(now + 100), now), Duration::from_secs(80));
    assert_eq!(refresh_after(Some(now + 10), now), Duration::from_secs(8));
    // Never sooner than 5 s (a failing provider is not hammered), never later than an hour.
    assert_eq!(refresh_after(Some(now + 2), now), Duration::from_secs(5));
    assert_eq!(refresh_after(Some(now - 50), now), Duration::from_secs(5));
    assert_eq!(
        refresh_after(Some(now + 28_800), now),
        Duration::from_secs(3600)
    );
    assert_eq!(refresh_after(None, now), Duration::from_secs(3600));
}
