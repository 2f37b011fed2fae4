//! Shared harness of the daemon tests and the daemon bench: a private `dbus-daemon` configured
//! with the shipped bus policy, a running `skrd` (stderr in a file, NOTIFY_SOCKET bound here),
//! and zbus client helpers. Include with `#[path]` next to `flow_common`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use crate::flow_common::{env_with_swtpm_args, policy, Env, KeyType, Swtpm};
use std::io::{BufRead, Read};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// A private bus whose policy is the shipped one plus a default-deny base like system.conf.
pub struct Bus {
    pub child: Child,
    pub address: String,
    _dir: tempfile::TempDir,
}

impl Bus {
    pub fn start() -> Self {
        Self::start_with_activation(None)
    }

    /// Like [`Bus::start`], with `extra` (`<policy>` elements) after the shipped policy.
    pub fn start_with_policy(extra: &str) -> Self {
        Self::start_full(None, extra)
    }

    /// With `exec`, org.skrd.KeyRelease1 is D-Bus activatable: the bus runs `exec` (a
    /// service file `Exec=` line) when a call arrives while nobody owns the name.
    pub fn start_with_activation(exec: Option<&str>) -> Self {
        Self::start_full(exec, "")
    }

    fn start_full(exec: Option<&str>, extra: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let servicedir = match exec {
            Some(exec) => {
                let sd = dir.path().join("services");
                std::fs::create_dir(&sd).unwrap();
                std::fs::write(
                    sd.join("org.skrd.KeyRelease1.service"),
                    format!("[D-BUS Service]\nName=org.skrd.KeyRelease1\nExec={exec}\nUser=root\n"),
                )
                .unwrap();
                format!("<servicedir>{}</servicedir>", sd.display())
            }
            None => String::new(),
        };
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let socket = dir.path().join("bus");
        let conf = dir.path().join("bus.conf");
        std::fs::write(
            &conf,
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Monitoring"/>
  </policy>
  <include>{REPO}/dbus/org.skrd.KeyRelease1.conf</include>
  {extra}
  {servicedir}
</busconfig>
"#,
                socket.display()
            ),
        )
        .unwrap();
        let mut child = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", conf.display()))
            .args(["--nofork", "--print-address=1"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.starts_with("unix:"), "{line}");
        Self {
            child,
            address: line.trim().to_string(),
            _dir: dir,
        }
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running skrd with its stderr in a file and its NOTIFY_SOCKET bound by the test.
pub struct Skrd {
    pub child: Child,
    pub stderr: PathBuf,
    pub notes: Notes,
    pub state_file: PathBuf,
}

/// The datagrams skrd sends to its NOTIFY_SOCKET, read as they come by a thread (like systemd
/// does: a reader that stops reading fills the kernel's queue of 10 datagrams, and then the
/// sender blocks or drops), kept until [`Skrd::wait_notify`] takes them.
pub struct Notes {
    queue: std::sync::Arc<(
        std::sync::Mutex<std::collections::VecDeque<String>>,
        std::sync::Condvar,
    )>,
}

impl Notes {
    pub fn read(sock: UnixDatagram) -> Self {
        let queue = std::sync::Arc::new((
            std::sync::Mutex::new(std::collections::VecDeque::new()),
            std::sync::Condvar::new(),
        ));
        let q = queue.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // Ends with the test process (the socket stays bound until then).
            while let Ok(n) = sock.recv(&mut buf) {
                let (m, cv) = &*q;
                m.lock()
                    .unwrap()
                    .push_back(String::from_utf8_lossy(&buf[..n]).into_owned());
                cv.notify_all();
            }
        });
        Self { queue }
    }

    /// The next datagram, waiting at most `limit`.
    fn next(&self, limit: Duration) -> Option<String> {
        let (m, cv) = &*self.queue;
        let mut q = m.lock().unwrap();
        let t = Instant::now();
        loop {
            if let Some(msg) = q.pop_front() {
                return Some(msg);
            }
            let left = limit.checked_sub(t.elapsed())?;
            q = cv.wait_timeout(q, left).unwrap().0;
        }
    }
}

/// Runs `"$@"` in a private mount namespace next to a real `systemd-journald`: a tmpfs over
/// /run, `$1/log` bind-mounted as /run/log/journal (so the journal files stay readable from
/// outside), journald's pid in `$1/journald.pid`, then the command with its stdout and stderr
/// on journald's stream socket (systemd-cat) and JOURNAL_STREAM naming that socket, as
/// systemd sets it for a service with StandardError=journal. journald must not see the test's
/// NOTIFY_SOCKET (its own READY=1 would look like skrd's) and does not read the kernel log.
const JOURNAL_WRAPPER: &str = r#"set -e
ctl="$1"; shift
mount -t tmpfs -o mode=0755 tmpfs /run
mkdir -p /run/systemd/journal /run/log/journal "$ctl/log"
mount --bind "$ctl/log" /run/log/journal
mkdir -p /run/systemd/journald.conf.d
printf '[Journal]\nReadKMSG=no\nStorage=volatile\n' > /run/systemd/journald.conf.d/test.conf
env -u NOTIFY_SOCKET -u WATCHDOG_USEC /lib/systemd/systemd-journald </dev/null &
echo $! > "$ctl/journald.pid"
i=0
while [ ! -S /run/systemd/journal/stdout ] || [ ! -S /run/systemd/journal/socket ]; do
  i=$((i+1)); [ "$i" -gt 200 ] && { echo "journald did not start" >&2; exit 97; }
  sleep 0.05
done
exec systemd-cat -t skrd sh -c 'export JOURNAL_STREAM="$(stat -L -c %d:%i /proc/self/fd/2)"; exec "$@"' sh "$@"
"#;

/// A real systemd-journald (see [`JOURNAL_WRAPPER`]) whose files the test reads.
pub struct Journal {
    pub ctl: PathBuf,
}

impl Journal {
    pub fn new(dir: &Path) -> Self {
        let ctl = dir.join("journal");
        std::fs::create_dir_all(ctl.join("log")).unwrap();
        Self { ctl }
    }

    /// The journal so far, one message per line (`journalctl -D DIR -o cat`), for failures.
    pub fn text(&self) -> String {
        let out = Command::new("journalctl")
            .arg("-D")
            .arg(self.ctl.join("log"))
            .args(["-o", "cat", "--no-pager"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Stops journald (SIGTERM: it flushes and closes its files) and returns the whole journal
    /// in export format (`journalctl -D DIR -o export`).
    pub fn stop_and_export(&self) -> Vec<u8> {
        self.stop();
        let out = Command::new("journalctl")
            .arg("-D")
            .arg(self.ctl.join("log"))
            .args(["-o", "export", "--no-pager"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "journalctl: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    fn stop(&self) {
        if let Ok(pid) = std::fs::read_to_string(self.ctl.join("journald.pid")) {
            let pid: i32 = pid.trim().parse().unwrap();
            // SAFETY: kill(2) on the journald our wrapper started.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            let t = Instant::now();
            while Path::new(&format!("/proc/{pid}")).exists()
                && t.elapsed() < Duration::from_secs(10)
            {
                // It is our grandchild's orphan: reap nothing, just wait for it to go.
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                if stat.contains(") Z ") {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Parses the journal export format: entries separated by an empty line; each field is
/// `NAME=text\n` or `NAME\n` + 64-bit little-endian length + bytes + `\n`.
pub fn parse_export(mut b: &[u8]) -> Vec<std::collections::BTreeMap<String, Vec<u8>>> {
    let mut entries = Vec::new();
    let mut cur = std::collections::BTreeMap::new();
    while !b.is_empty() {
        if b[0] == b'\n' {
            if !cur.is_empty() {
                entries.push(std::mem::take(&mut cur));
            }
            b = &b[1..];
            continue;
        }
        let nl = b.iter().position(|c| *c == b'\n').unwrap();
        let line = &b[..nl];
        if let Some(eq) = line.iter().position(|c| *c == b'=') {
            cur.insert(
                String::from_utf8_lossy(&line[..eq]).into_owned(),
                line[eq + 1..].to_vec(),
            );
            b = &b[nl + 1..];
        } else {
            let name = String::from_utf8_lossy(line).into_owned();
            let len = u64::from_le_bytes(b[nl + 1..nl + 9].try_into().unwrap()) as usize;
            cur.insert(name, b[nl + 9..nl + 9 + len].to_vec());
            b = &b[nl + 9 + len + 1..];
        }
    }
    if !cur.is_empty() {
        entries.push(cur);
    }
    entries
}

/// The encodings a key could leak in: hex (both cases), base64 (padded, unpadded, url-safe).
pub fn secret_forms(key: &[u8]) -> Vec<String> {
    use base64::Engine;
    vec![
        hex::encode(key),
        hex::encode_upper(key),
        base64::engine::general_purpose::STANDARD.encode(key),
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(key),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key),
    ]
}

/// Where `key` occurs in `haystack`, if anywhere: raw, or in one of [`secret_forms`] either as
/// written or once every whitespace character is removed from the haystack. The second search
/// finds the way `dbus-monitor` prints a byte array that is not all printable: lower-case hex
/// pairs separated by spaces, 24 to a line (`array of bytes [\n      01 02 ... 18\n ...]`),
/// and hex or base64 wrapped over lines anywhere else.
pub fn find_secret(haystack: &[u8], key: &[u8]) -> Option<String> {
    if haystack.windows(key.len()).any(|w| w == key) {
        return Some("raw bytes".into());
    }
    let text = String::from_utf8_lossy(haystack);
    let squeezed: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    secret_forms(key)
        .into_iter()
        .find(|form| text.contains(form.as_str()) || squeezed.contains(form.as_str()))
}

/// Fails when `haystack` holds `key` (see [`find_secret`]).
pub fn assert_no_secret(what: &str, haystack: &[u8], key: &[u8]) {
    if let Some(form) = find_secret(haystack, key) {
        panic!("key found in {what} ({form})");
    }
}

impl Skrd {
    pub fn start(env: &Env, bus: &Bus, dir: &Path) -> Self {
        Self::start_with(env, bus, dir, None)
    }

    /// Like [`Skrd::start`]; with `journal`, skrd logs to a real journald (see
    /// [`JOURNAL_WRAPPER`]; the child's pid is still skrd's: every step execs).
    pub fn start_with(env: &Env, bus: &Bus, dir: &Path, journal: Option<&Journal>) -> Self {
        let prefix = journal.map(|j| {
            let mut c = Command::new("unshare");
            c.args([
                "-m",
                "--propagation",
                "private",
                "sh",
                "-c",
                JOURNAL_WRAPPER,
                "sh",
            ])
            .arg(&j.ctl);
            c
        });
        Self::start_through(prefix, env, bus, dir)
    }

    /// Like [`Skrd::start`], run through `prefix` (a command that execs skrd, given as its
    /// last argument, so the child's pid is still skrd's) when there is one.
    pub fn start_through(prefix: Option<Command>, env: &Env, bus: &Bus, dir: &Path) -> Self {
        let notify_path = dir.join(format!("notify-{}", rand_suffix()));
        let notify = UnixDatagram::bind(&notify_path).unwrap();
        let stderr = dir.join(format!("skrd-{}.log", rand_suffix()));
        let state_file = dir.join("run/state.json");
        // SKRD_BIN: another skrd build (the bench runs the release binary with a dev client).
        let bin = std::env::var_os("SKRD_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_skrd")));
        let mut cmd = match prefix {
            None => Command::new(&bin),
            Some(mut p) => {
                p.arg(&bin);
                p
            }
        };
        let child = cmd
            .arg("--config")
            .arg(env.config_path())
            .args(["--bus-address", &bus.address])
            .arg("--state-file")
            .arg(&state_file)
            .arg("--key-socket")
            .arg(dir.join("luks.sock"))
            // A sysfs of the test's own (see [`Skrd::open_mapping`]), never the host's.
            .arg("--sysfs-root")
            .arg(dir.join("sys"))
            .stdout(Stdio::null())
            .env("NOTIFY_SOCKET", &notify_path)
            .env("WATCHDOG_USEC", "2000000")
            .env_remove("WATCHDOG_PID")
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        Self {
            child,
            stderr,
            notes: Notes::read(notify),
            state_file,
        }
    }

    /// Waits for a datagram containing the line `want`; returns every datagram seen (taken:
    /// the next call sees only later ones).
    pub fn wait_notify(&self, want: &str) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            let msg = self
                .notes
                .next(Duration::from_secs(120))
                .unwrap_or_else(|| panic!("no {want} in 120 s; got {seen:?}; log: {}", self.log()));
            let done = msg.lines().any(|l| l == want);
            seen.push(msg);
            if done {
                return seen;
            }
        }
    }

    /// Waits for the datagram with the line `want` and returns that datagram.
    pub fn wait_notify_message(&self, want: &str) -> String {
        self.wait_notify(want).pop().unwrap()
    }

    /// Makes volume `name` (LUKS UUID `uuid`) look open to skrd: `dm/uuid` of a new dm
    /// device in the test's sysfs (`<dir>/sys`, `dir` as given to [`Skrd::start`]), written as
    /// libcryptsetup names a LUKS2 mapping.
    pub fn open_mapping(dir: &Path, dev: &str, uuid: &str, name: &str) {
        let d = dir.join("sys/class/block").join(dev).join("dm");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join("uuid"),
            format!("CRYPT-LUKS2-{}-{name}\n", uuid.replace('-', "")),
        )
        .unwrap();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, sig) }, 0);
    }

    pub fn stop(mut self) -> i32 {
        self.signal(libc::SIGTERM);
        let t = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st.code().unwrap_or(-1);
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "skrd ignored SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Skrd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn rand_suffix() -> usize {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

pub async fn connect(address: &str) -> zbus::Connection {
    zbus::connection::Builder::address(address)
        .unwrap()
        .build()
        .await
        .unwrap()
}

pub async fn call<B>(conn: &zbus::Connection, method: &str, body: &B) -> zbus::Result<zbus::Message>
where
    B: serde::Serialize + zbus::zvariant::DynamicType,
{
    conn.call_method(
        Some("org.skrd.KeyRelease1"),
        "/org/skrd/KeyRelease1",
        Some("org.skrd.KeyRelease1.Manager"),
        method,
        body,
    )
    .await
}

/// ReleaseKey(name) → the descriptor returned, or the D-Bus error (name, message).
pub async fn release_fd(
    conn: &zbus::Connection,
    name: &str,
) -> Result<std::os::fd::OwnedFd, (String, String)> {
    match call(conn, "ReleaseKey", &(name,)).await {
        Ok(reply) => {
            let fd: zbus::zvariant::OwnedFd = reply.body().deserialize().unwrap();
            Ok(fd.into())
        }
        Err(zbus::Error::MethodError(name, msg, _)) => {
            Err((name.to_string(), msg.unwrap_or_default()))
        }
        Err(e) => panic!("unexpected error {e}"),
    }
}

/// ReleaseKey(name) → the bytes read from the returned descriptor, or the D-Bus error
/// (name, message).
pub async fn release(conn: &zbus::Connection, name: &str) -> Result<Vec<u8>, (String, String)> {
    let fd = release_fd(conn, name).await?;
    let mut bytes = Vec::new();
    std::fs::File::from(fd).read_to_end(&mut bytes).unwrap();
    Ok(bytes)
}

/// The seals of `fd` (`fcntl(F_GET_SEALS)`; -1 when it cannot be sealed) and what
/// `/proc/self/fd/N` links to (`/memfd:NAME (deleted)` for a memfd).
pub fn seals_and_link(fd: &std::os::fd::OwnedFd) -> (i32, String) {
    use std::os::fd::AsRawFd;
    // SAFETY: fcntl on a descriptor we own.
    let seals = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
    let link = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap();
    (seals, link.display().to_string())
}

/// An emulator + provisioned swtpm with one AES-256 key per name imported under a release
/// policy the swtpm's attestation meets; returns (url, imported bytes) per name.
pub fn env_with_keys(names: &[&str]) -> (Env, Swtpm, Vec<(String, Vec<u8>)>) {
    env_with_keys_args(names, &[])
}

/// Like [`env_with_keys`], with extra `skr-emulator serve` arguments.
pub fn env_with_keys_args(
    names: &[&str],
    emulator_args: &[&str],
) -> (Env, Swtpm, Vec<(String, Vec<u8>)>) {
    let (env, tpm) = env_with_swtpm_args(emulator_args);
    let p = policy(
        &env.authority(),
        "x-ms-isolation-tee.x-ms-attestation-type",
        "sevsnpvm",
    );
    let keys = names
        .iter()
        .map(|n| env.import(n, KeyType::Oct256, &p))
        .collect();
    (env, tpm, keys)
}

/// Asks like systemd-cryptsetup: a stream socket bound to the abstract name `peer` (none:
/// unbound), connected to `path`, write side shut down, everything read until EOF.
pub fn ask(path: &Path, peer: Option<&str>) -> Vec<u8> {
    // SAFETY: plain socket calls on a descriptor owned right away; sockaddr_un filled within
    // its bounds.
    unsafe {
        let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0);
        let owned = <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd);
        let addr = |bytes: &[u8]| {
            let mut sa: libc::sockaddr_un = std::mem::zeroed();
            sa.sun_family = libc::AF_UNIX as libc::sa_family_t;
            assert!(bytes.len() < sa.sun_path.len());
            for (i, b) in bytes.iter().enumerate() {
                sa.sun_path[i] = *b as libc::c_char;
            }
            let len = std::mem::size_of::<libc::sa_family_t>() + bytes.len();
            (sa, len as libc::socklen_t)
        };
        if let Some(name) = peer {
            let mut b = vec![0u8];
            b.extend_from_slice(name.as_bytes());
            let (sa, len) = addr(&b);
            assert_eq!(libc::bind(fd, std::ptr::addr_of!(sa).cast(), len), 0);
        }
        let p = path.as_os_str().as_encoded_bytes();
        let mut b = p.to_vec();
        b.push(0);
        let (sa, len) = addr(&b);
        assert_eq!(
            libc::connect(fd, std::ptr::addr_of!(sa).cast(), len),
            0,
            "connect {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        );
        assert_eq!(libc::shutdown(fd, libc::SHUT_WR), 0);
        let mut f = std::fs::File::from(owned);
        let mut out = Vec::new();
        // A refusal may end in a reset rather than EOF: no data either way.
        let _ = f.read_to_end(&mut out);
        out
    }
}

/// A `kB` field of /proc/PID/status (`VmLck`, `VmRSS`, `RssAnon`, ...).
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines().find_map(|l| {
        l.strip_prefix(field)?
            .strip_prefix(':')?
            .trim()
            .strip_suffix(" kB")?
            .parse()
            .ok()
    })
}

/// /proc/PID/smaps as (header line of each mapping, its field lines: `Rss:`, `VmFlags:`, ...);
/// the header parses with `skrd::footprint::parse_mapping`.
pub fn smaps(pid: u32) -> Vec<(String, Vec<String>)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap();
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for line in text.lines() {
        if skrd::footprint::parse_mapping(line).is_some() {
            out.push((line.to_string(), Vec::new()));
        } else if let Some((_, fields)) = out.last_mut() {
            fields.push(line.to_string());
        }
    }
    out
}
