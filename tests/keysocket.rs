//! The crypttab key socket against real `AF_UNIX` clients that behave like systemd-cryptsetup
//! (python3: bind to the abstract name `\0<hex>/cryptsetup/<volume>`, connect, shut down the
//! write side, read until EOF).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod volume_common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use skrd::keysocket::{KeyBoard, KeySocket, Outcome, ServeOptions};
use skrd::secret::Secret;
use tokio::sync::{mpsc, watch};

/// A systemd-cryptsetup-like client. argv: socket path, abstract name ("-" = unbound),
/// seconds to wait before shutting down the write side. Prints {"data", "reset", "early"}:
/// the bytes read (hex), whether the read ended in a reset instead of EOF, and whether any
/// byte arrived before the client's own shutdown.
const CLIENT: &str = r#"
import json, socket, sys, time
path, name, delay = sys.argv[1], sys.argv[2], float(sys.argv[3])
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
if name != "-":
    s.bind("\0" + name)
s.connect(path)
early = False
if delay > 0:
    time.sleep(delay)
    s.setblocking(False)
    try:
        early = len(s.recv(1, socket.MSG_PEEK)) > 0
    except BlockingIOError:
        early = False
    s.setblocking(True)
s.shutdown(socket.SHUT_WR)
data, reset = b"", False
s.settimeout(20)
try:
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
except ConnectionResetError:
    reset = True
print(json.dumps({"data": data.hex(), "reset": reset, "early": early}))
"#;

async fn client(path: &Path, name: &str, delay: f64) -> Value {
    let (path, name) = (path.to_path_buf(), name.to_string());
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .arg("-c")
            .arg(CLIENT)
            .arg(path)
            .arg(name)
            .arg(delay.to_string())
            .output()
    })
    .await
    .unwrap()
    .unwrap();
    assert!(
        out.status.success(),
        "client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn passphrase(volume: &str) -> Vec<u8> {
    // A 44-byte base64-like value per volume, as crypto::derive produces.
    format!("{volume:=<44}").into_bytes()
}

struct Server {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    outcomes: mpsc::UnboundedReceiver<Outcome>,
    stop: watch::Sender<bool>,
    calls: Arc<AtomicUsize>,
}

/// Serves with `answer(volume)`: `Some(delay)` → the volume's passphrase after `delay`,
/// `None` → refused, a missing volume → never answered.
fn start(plan: HashMap<&'static str, Option<Duration>>, options: ServeOptions) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run/skrd/luks.sock");
    let socket = KeySocket::bind(&path).unwrap();
    let (tx, outcomes) = mpsc::unbounded_channel();
    let (stop, mut stopped) = watch::channel(false);
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let plan = Arc::new(plan);
    tokio::spawn(socket.serve(
        move |volume: String| {
            counter.fetch_add(1, Ordering::SeqCst);
            let plan = Arc::clone(&plan);
            async move {
                match plan.get(volume.as_str()) {
                    Some(Some(delay)) => {
                        tokio::time::sleep(*delay).await;
                        Some(Secret::new(passphrase(&volume)))
                    }
                    Some(None) => None,
                    None => std::future::pending().await,
                }
            }
        },
        options,
        Some(tx),
        async move {
            let _ = stopped.changed().await;
        },
    ));
    Server {
        _dir: dir,
        path,
        outcomes,
        stop,
        calls,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_volume_is_answered_as_soon_as_its_key_is_ready() {
    let plan = HashMap::from([
        ("data", Some(Duration::from_millis(600))),
        ("logs", Some(Duration::from_millis(0))),
    ]);
    let mut srv = start(plan, ServeOptions::default());
    let mode = std::fs::metadata(&srv.path).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(mode.permissions().mode() & 0o777, 0o600);
    let (data, logs) = tokio::join!(
        client(&srv.path, "1a2b3c4d5e6f7081/cryptsetup/data", 0.0),
        client(&srv.path, "ff/cryptsetup/logs", 0.0)
    );
    assert_eq!(data["data"], hex::encode(passphrase("data")));
    assert_eq!(logs["data"], hex::encode(passphrase("logs")));
    assert_eq!(data["reset"], false);
    // logs (ready at once) is answered before data (ready after 600 ms).
    let first = srv.outcomes.recv().await.unwrap();
    let second = srv.outcomes.recv().await.unwrap();
    assert_eq!(
        (first, second),
        (
            Outcome::Answered {
                volume: "logs".into()
            },
            Outcome::Answered {
                volume: "data".into()
            }
        )
    );
    srv.stop.send(true).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_answer_waits_for_the_clients_eof() {
    let plan = HashMap::from([("data", Some(Duration::from_millis(0)))]);
    let mut srv = start(plan, ServeOptions::default());
    // The key is ready at once, but the client keeps its write side open for 400 ms:
    // nothing may arrive before its shutdown (systemd reads the key file only after EOF).
    let r = client(&srv.path, "abc/cryptsetup/data", 0.4).await;
    assert_eq!(r["early"], false);
    assert_eq!(r["data"], hex::encode(passphrase("data")));
    assert_eq!(
        srv.outcomes.recv().await.unwrap(),
        Outcome::Answered {
            volume: "data".into()
        }
    );
    srv.stop.send(true).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusal_deadline_and_bad_peers_close_without_data_and_without_reset() {
    let plan = HashMap::from([("refused", None)]);
    let options = ServeOptions {
        deadline: Duration::from_millis(300),
        ..ServeOptions::default()
    };
    let mut srv = start(plan, options);
    for (name, want) in [
        ("1/cryptsetup/refused", "refused"),
        ("2/cryptsetup/slow", "deadline"),
        ("-", "peer"),
        ("not-systemd", "peer"),
        ("3/cryptsetup/../etc", "peer"),
    ] {
        let r = client(&srv.path, name, 0.0).await;
        assert_eq!(r["data"], "", "{name}: no data expected");
        assert_eq!(r["reset"], false, "{name}: an orderly close expected");
        let outcome = srv.outcomes.recv().await.unwrap();
        let got = match &outcome {
            Outcome::Refused { .. } => "refused",
            Outcome::DeadlineExpired { .. } => "deadline",
            Outcome::PeerRefused { .. } => "peer",
            other => panic!("{name}: unexpected {other:?}"),
        };
        assert_eq!(got, want, "{name}: {outcome:?}");
    }
    // The answer function was asked only for the two well-formed requests.
    assert_eq!(srv.calls.load(Ordering::SeqCst), 2);
    srv.stop.send(true).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_allowed_uid_is_answered() {
    let plan = HashMap::from([("data", Some(Duration::from_millis(0)))]);
    let options = ServeOptions {
        allowed_uid: Some(4_000_000),
        ..ServeOptions::default()
    };
    let mut srv = start(plan, options);
    let r = client(&srv.path, "9/cryptsetup/data", 0.0).await;
    assert_eq!(r["data"], "");
    match srv.outcomes.recv().await.unwrap() {
        Outcome::PeerRefused { problem } => assert_eq!(problem.code, "keysocket-peer-uid"),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(srv.calls.load(Ordering::SeqCst), 0);
    srv.stop.send(true).unwrap();
}

#[tokio::test]
async fn bind_replaces_a_stale_socket_but_never_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("luks.sock");
    drop(KeySocket::bind(&path).unwrap());
    // The socket file of the dropped listener is still there: a stale socket.
    assert!(path.exists());
    drop(KeySocket::bind(&path).unwrap());
    let file = dir.path().join("plain");
    std::fs::write(&file, b"x").unwrap();
    let err = KeySocket::bind(&file).err().unwrap();
    use skrd::error::ErrorCode;
    assert_eq!(err.code(), "keysocket-not-a-socket");
    assert_eq!(std::fs::read(&file).unwrap(), b"x");
}

/// Serves `board` on a fresh socket; returns the socket path (in `dir`) and the outcomes.
fn serve_board(
    dir: &Path,
    board: Arc<KeyBoard>,
) -> (std::path::PathBuf, mpsc::UnboundedReceiver<Outcome>) {
    let path = dir.join("luks.sock");
    let socket = KeySocket::bind(&path).unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(socket.serve(
        move |volume: String| {
            let board = Arc::clone(&board);
            async move { board.passphrase(&volume).await }
        },
        ServeOptions::default(),
        Some(tx),
        std::future::pending(),
    ));
    (path, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_release_answers_every_volume_of_that_key() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("skrd.toml");
    let (u_data, u_logs, u_late) = (
        "0b4b3e1c-6f1e-4c2a-9d55-2f1f9a7f0c11",
        "1c5c4f2d-7a2f-4d3b-8e66-3a2a0b8a1d22",
        "2d6d5a3e-8b3a-4e4c-9f77-4b3b1c9b2e33",
    );
    std::fs::write(
        &conf,
        format!(
            "[attestation]\nprovider = \"https://a.eus.attest.azure.net\"\n\
             [keys.disk]\nurl = \"https://v.vault.azure.net/keys/disk/v1\"\n\
             [keys.other]\nurl = \"https://v.vault.azure.net/keys/other\"\n\
             [volumes.data]\nuuid = \"{u_data}\"\nkey = \"disk\"\n\
             [volumes.logs]\nuuid = \"{u_logs}\"\nkey = \"disk\"\n\
             [volumes.late]\nuuid = \"{u_late}\"\nkey = \"other\"\noptions = {{ initrd = false }}\n"
        ),
    )
    .unwrap();
    let settings = skrd::config::load(Some(&conf)).unwrap();
    let board = Arc::new(KeyBoard::new(&settings, true));
    assert_eq!(board.keys_needed(), vec!["disk".to_string()]);
    assert_eq!(
        board.volumes(),
        vec!["data".to_string(), "logs".to_string()]
    );
    let (path, mut outcomes) = serve_board(dir.path(), Arc::clone(&board));

    // "late" is not an initrd volume: refused at once, before any key is released.
    let late = client(&path, "5/cryptsetup/late", 0.0).await;
    assert_eq!(late["data"], "");
    assert_eq!(
        outcomes.recv().await.unwrap(),
        Outcome::Refused {
            volume: "late".into()
        }
    );
    // data and logs wait for the one release of "disk", then each gets its own passphrase
    // (expected values from python3's HKDF over each volume's configured UUID).
    let publisher = {
        let board = Arc::clone(&board);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            board.publish("disk", Secret::new(vec![0x77; 32]));
        })
    };
    let (data, logs) = tokio::join!(
        client(&path, "a1/cryptsetup/data", 0.0),
        client(&path, "b2/cryptsetup/logs", 0.0)
    );
    publisher.await.unwrap();
    assert_eq!(
        data["data"],
        hex::encode(volume_common::python_passphrase(&[0x77; 32], u_data))
    );
    assert_eq!(
        logs["data"],
        hex::encode(volume_common::python_passphrase(&[0x77; 32], u_logs))
    );
    assert_ne!(data["data"], logs["data"]);

    // A failed key refuses its volumes (a new board: keys are published once per boot).
    let board = Arc::new(KeyBoard::new(&settings, false));
    let dir2 = tempfile::tempdir().unwrap();
    let (path, mut outcomes) = serve_board(dir2.path(), Arc::clone(&board));
    board.fail("other");
    let late = client(&path, "6/cryptsetup/late", 0.0).await;
    assert_eq!(late["data"], "");
    assert_eq!(
        outcomes.recv().await.unwrap(),
        Outcome::Refused {
            volume: "late".into()
        }
    );
}
