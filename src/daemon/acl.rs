//! Who may receive a key over D-Bus (DESIGN.md "The long-running daemon": every key has an ACL
//! in the configuration, default deny). The caller's uid, groups and pid come from the bus
//! (`org.freedesktop.DBus.GetConnectionCredentials`); its systemd unit from `/proc/PID/cgroup`.
//! [`decide`] and [`unit_from_cgroup`] are pure; [`resolve_user`]/[`resolve_group`] and
//! [`unit_of_pid`] read the system databases.

use std::ffi::CString;

use crate::config::values::Principal;
use crate::config::KeyAcl;

/// The caller of a D-Bus method, as the bus reports it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Caller {
    /// Unique bus name (`:1.42`).
    pub bus_name: String,
    /// Unix uid.
    pub uid: Option<u32>,
    /// Primary and supplementary gids.
    pub gids: Vec<u32>,
    /// Process id.
    pub pid: Option<u32>,
    /// systemd unit (`foo.service`), from the process's cgroup.
    pub unit: Option<String>,
}

/// Why a caller was allowed (for the log line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Allowed: which ACL entry matched (`uid 0`, `group disk`, `unit foo.service`).
    Allow(String),
    /// Denied (no entry matched, or the caller's credentials were incomplete).
    Deny,
}

/// The systemd unit in a `/proc/PID/cgroup` text (cgroup v2 line `0::/PATH`, else the
/// `name=systemd` v1 line): the last path component that is a `.service` or `.scope`.
pub fn unit_from_cgroup(text: &str) -> Option<String> {
    let path = text
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .or_else(|| {
            text.lines()
                .find_map(|l| l.split_once(":name=systemd:").map(|(_, p)| p))
        })?;
    path.split('/')
        .rev()
        .find(|c| c.ends_with(".service") || c.ends_with(".scope"))
        .map(str::to_string)
}

/// The unit of process `pid` (None when it has gone or is in no unit).
pub fn unit_of_pid(pid: u32) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    unit_from_cgroup(&text)
}

fn resolve(name: &str, user: bool) -> Option<u32> {
    let c = CString::new(name).ok()?;
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    if user {
        // SAFETY: all pointers are valid for the call; getpwnam_r writes only into pw and buf.
        unsafe {
            let mut pw: libc::passwd = std::mem::zeroed();
            let mut out: *mut libc::passwd = std::ptr::null_mut();
            let rc = libc::getpwnam_r(c.as_ptr(), &mut pw, buf.as_mut_ptr(), buf.len(), &mut out);
            (rc == 0 && !out.is_null()).then_some(pw.pw_uid)
        }
    } else {
        // SAFETY: as above, for getgrnam_r.
        unsafe {
            let mut gr: libc::group = std::mem::zeroed();
            let mut out: *mut libc::group = std::ptr::null_mut();
            let rc = libc::getgrnam_r(c.as_ptr(), &mut gr, buf.as_mut_ptr(), buf.len(), &mut out);
            (rc == 0 && !out.is_null()).then_some(gr.gr_gid)
        }
    }
}

/// A user name's uid (`/etc/passwd`, NSS).
pub fn resolve_user(name: &str) -> Option<u32> {
    resolve(name, true)
}

/// A group name's gid (`/etc/group`, NSS).
pub fn resolve_group(name: &str) -> Option<u32> {
    resolve(name, false)
}

fn matches(p: &Principal, id: u32, lookup: &dyn Fn(&str) -> Option<u32>) -> bool {
    match p {
        Principal::Id(want) => *want == id,
        Principal::Name(n) => lookup(n) == Some(id),
    }
}

/// Whether `caller` may receive a key with `acl` (names resolved with `user`/`group`).
/// Default deny: an empty ACL, or a caller without a uid, is refused.
pub fn decide(
    acl: &KeyAcl,
    caller: &Caller,
    user: &dyn Fn(&str) -> Option<u32>,
    group: &dyn Fn(&str) -> Option<u32>,
) -> Decision {
    let Some(uid) = caller.uid else {
        return Decision::Deny;
    };
    if let Some(p) = acl.uids.iter().find(|p| matches(p, uid, user)) {
        return Decision::Allow(format!("uid {p}"));
    }
    for gid in &caller.gids {
        if let Some(p) = acl.gids.iter().find(|p| matches(p, *gid, group)) {
            return Decision::Allow(format!("group {p}"));
        }
    }
    if let Some(unit) = &caller.unit {
        if acl.units.iter().any(|u| u == unit) {
            return Decision::Allow(format!("unit {unit}"));
        }
    }
    Decision::Deny
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_from_cgroup_v2_and_v1() {
        // Shapes as systemd writes them (systemd.cgroup(5), cgroups(7) "/proc/[pid]/cgroup").
        assert_eq!(
            unit_from_cgroup("0::/system.slice/backup.service\n").as_deref(),
            Some("backup.service")
        );
        assert_eq!(
            unit_from_cgroup("0::/user.slice/user-1000.slice/session-2.scope\n").as_deref(),
            Some("session-2.scope")
        );
        assert_eq!(
            unit_from_cgroup("0::/system.slice/foo.service/payload\n").as_deref(),
            Some("foo.service")
        );
        assert_eq!(
            unit_from_cgroup("12:pids:/x\n1:name=systemd:/system.slice/cron.service\n").as_deref(),
            Some("cron.service")
        );
        assert_eq!(unit_from_cgroup("0::/\n"), None);
        assert_eq!(unit_from_cgroup(""), None);
    }

    #[test]
    fn decide_is_default_deny_and_names_the_match() {
        let none = |_: &str| None;
        let user = |n: &str| (n == "backup").then_some(990);
        let group = |n: &str| (n == "disk").then_some(6);
        let caller = Caller {
            uid: Some(990),
            gids: vec![100, 6],
            unit: Some("b.service".into()),
            ..Caller::default()
        };
        assert_eq!(
            decide(&KeyAcl::default(), &caller, &user, &group),
            Decision::Deny
        );
        let acl = KeyAcl {
            uids: vec![Principal::Name("backup".into())],
            ..KeyAcl::default()
        };
        assert_eq!(
            decide(&acl, &caller, &user, &group),
            Decision::Allow("uid backup".into())
        );
        assert_eq!(decide(&acl, &caller, &none, &none), Decision::Deny);
        let acl = KeyAcl {
            uids: vec![Principal::Id(0)],
            gids: vec![Principal::Name("disk".into())],
            ..KeyAcl::default()
        };
        assert_eq!(
            decide(&acl, &caller, &user, &group),
            Decision::Allow("group disk".into())
        );
        let acl = KeyAcl {
            units: vec!["b.service".into()],
            ..KeyAcl::default()
        };
        assert_eq!(
            decide(&acl, &caller, &user, &group),
            Decision::Allow("unit b.service".into())
        );
        let anonymous = Caller {
            uid: None,
            ..caller.clone()
        };
        assert_eq!(decide(&acl, &anonymous, &user, &group), Decision::Deny);
    }

    #[test]
    fn resolves_root() {
        // Every Debian system has root = 0 in /etc/passwd and /etc/group.
        assert_eq!(resolve_user("root"), Some(0));
        assert_eq!(resolve_group("root"), Some(0));
        assert_eq!(resolve_user("no-such-user-skrd"), None);
    }
}
