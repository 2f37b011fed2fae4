//! The D-Bus adapter (zbus) over [`Manager`]: name `org.skrd.KeyRelease1`, object
//! `/org/skrd/KeyRelease1`, interface `org.skrd.KeyRelease1.Manager` (DESIGN.md "The
//! long-running daemon"; introspection in `dbus/org.skrd.KeyRelease1.xml`). Keys leave only as
//! sealed memfds (`h`), never as byte arrays. Errors are `org.skrd.KeyRelease1.Error.*`.

// zbus::interface generates an undocumented emitter trait method for the signal; every item
// written here is documented.
#![allow(missing_docs)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use zbus::message::Header;
use zbus::object_server::SignalEmitter;
use zbus::zvariant::OwnedFd;

use super::acl::{unit_of_pid, Caller};
use super::error::DaemonError;
use super::manager::Manager;
use crate::error::ErrorCode;

/// Well-known bus name.
pub const BUS_NAME: &str = "org.skrd.KeyRelease1";
/// Object path.
pub const OBJECT_PATH: &str = "/org/skrd/KeyRelease1";
/// Interface name.
pub const INTERFACE: &str = "org.skrd.KeyRelease1.Manager";

/// D-Bus errors (`org.skrd.KeyRelease1.Error.<Name>`); the message is the operator sentence
/// followed by the stable code in parentheses.
#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "org.skrd.KeyRelease1.Error")]
pub enum KeyReleaseError {
    /// A zbus error.
    #[zbus(error)]
    ZBus(zbus::Error),
    /// The caller is not in the key's ACL.
    AccessDenied(String),
    /// No such key.
    UnknownKey(String),
    /// Initial work not finished.
    NotReady(String),
    /// The release (or its attestation) failed.
    ReleaseFailed(String),
    /// The attestation failed.
    AttestFailed(String),
    /// The daemon is stopping; call again.
    Stopping(String),
    /// Anything else.
    Failed(String),
}

impl From<DaemonError> for KeyReleaseError {
    fn from(e: DaemonError) -> Self {
        let msg = format!("{e} ({})", e.code());
        match e {
            DaemonError::AccessDenied { .. } | DaemonError::RootOnly { .. } => {
                Self::AccessDenied(msg)
            }
            DaemonError::UnknownKey { .. } => Self::UnknownKey(msg),
            DaemonError::NotReady { .. } => Self::NotReady(msg),
            DaemonError::ReleaseFailed { .. } => Self::ReleaseFailed(msg),
            DaemonError::AttestFailed { .. } => Self::AttestFailed(msg),
            DaemonError::Stopping => Self::Stopping(msg),
            _ => Self::Failed(msg),
        }
    }
}

/// The served object.
#[derive(Debug)]
pub struct ManagerObject {
    manager: Arc<Manager>,
    callers: Arc<CallerCache>,
    bus: zbus::fdo::DBusProxy<'static>,
}

/// Most callers remembered; the cache starts over when it is full (a missed NameOwnerChanged
/// can then cost memory, never a wrong decision: unique names are never reused on a bus).
const MAX_CALLERS: usize = 4096;

/// The bus's credentials of each caller, by unique bus name. A connection's credentials are
/// fixed when it connects and a unique name is never given twice, so one
/// `GetConnectionCredentials` per connection suffices; an entry goes when its name does
/// (`NameOwnerChanged` with no new owner).
#[derive(Debug, Default)]
pub struct CallerCache {
    map: Mutex<HashMap<String, Caller>>,
}

impl CallerCache {
    fn get(&self, sender: &str) -> Option<Caller> {
        self.map.lock().ok()?.get(sender).cloned()
    }

    fn insert(&self, sender: String, caller: Caller) {
        if let Ok(mut m) = self.map.lock() {
            if m.len() >= MAX_CALLERS {
                m.clear();
            }
            m.insert(sender, caller);
        }
    }

    fn remove(&self, sender: &str) {
        if let Ok(mut m) = self.map.lock() {
            m.remove(sender);
        }
    }
}

async fn caller(
    conn: &zbus::Connection,
    bus: &zbus::fdo::DBusProxy<'static>,
    cache: &CallerCache,
    header: &Header<'_>,
) -> Result<Caller, DaemonError> {
    let sender = header.sender().ok_or_else(|| DaemonError::Credentials {
        sender: "(none)".into(),
        reason: "the message has no sender".into(),
    })?;
    if let Some(c) = cache.get(sender.as_str()) {
        return Ok(c);
    }
    let sender = sender.to_string();
    let c = match query_caller(conn, bus, &sender).await {
        Ok(c) => c,
        Err(e) => {
            // The decision (refusal) is logged with the only caller identity there is.
            tracing::warn!(
                caller_bus_name = %sender,
                method = header.member().map_or("(none)", |m| m.as_str()),
                decision = "deny",
                error_code = e.code(),
                "{e}"
            );
            return Err(e);
        }
    };
    cache.insert(sender, c.clone());
    Ok(c)
}

async fn query_caller(
    conn: &zbus::Connection,
    proxy: &zbus::fdo::DBusProxy<'static>,
    sender: &str,
) -> Result<Caller, DaemonError> {
    let cred_err = |e: zbus::Error| DaemonError::Credentials {
        sender: sender.to_string(),
        reason: e.to_string(),
    };
    let name = zbus::names::BusName::try_from(sender).map_err(|e| cred_err(e.into()))?;
    let creds = proxy
        .get_connection_credentials(name)
        .await
        .map_err(|e| cred_err(e.into()))?;
    let pid = creds.process_id();
    let unit = match pid {
        Some(p) => match unit_of_pid(p) {
            Some(u) => Some(u),
            None => systemd_unit_of_pid(conn, p).await,
        },
        None => None,
    };
    Ok(Caller {
        bus_name: sender.to_string(),
        uid: creds.unix_user_id(),
        gids: creds.unix_group_ids().cloned().unwrap_or_default(),
        pid,
        unit,
    })
}

/// The unit of `pid` from systemd itself (`GetUnitByPID`, then the unit's `Id`), for when
/// `/proc/PID` is hidden from skrd (`ProtectProc=invisible`). `None` without systemd.
async fn systemd_unit_of_pid(conn: &zbus::Connection, pid: u32) -> Option<String> {
    let reply = conn
        .call_method(
            Some("org.freedesktop.systemd1"),
            "/org/freedesktop/systemd1",
            Some("org.freedesktop.systemd1.Manager"),
            "GetUnitByPID",
            &(pid,),
        )
        .await
        .ok()?;
    let path: zbus::zvariant::OwnedObjectPath = reply.body().deserialize().ok()?;
    let reply = conn
        .call_method(
            Some("org.freedesktop.systemd1"),
            path.as_str(),
            Some("org.freedesktop.DBus.Properties"),
            "Get",
            &("org.freedesktop.systemd1.Unit", "Id"),
        )
        .await
        .ok()?;
    let value: zbus::zvariant::OwnedValue = reply.body().deserialize().ok()?;
    String::try_from(value).ok()
}

#[zbus::interface(name = "org.skrd.KeyRelease1.Manager")]
impl ManagerObject {
    /// The state document (`/run/skrd/state.json` schema) as JSON.
    async fn get_status(&self) -> String {
        self.manager.status_json()
    }

    /// Every configured key: (name, url, cached).
    async fn list_keys(&self) -> Vec<(String, String, bool)> {
        self.manager.list_keys()
    }

    /// The key `name` as a sealed memfd (read it from offset 0), if the caller is in its ACL.
    async fn release_key(
        &self,
        name: String,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<OwnedFd, KeyReleaseError> {
        let _call = self.manager.call_guard()?;
        let fd = self
            .manager
            .unless_stopping(async {
                let who = caller(conn, &self.bus, &self.callers, &header).await?;
                self.manager.release(&name, &who).await
            })
            .await?;
        Ok(OwnedFd::from(fd))
    }

    /// A fresh attestation now (root only).
    async fn reattest(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(), KeyReleaseError> {
        let _call = self.manager.call_guard()?;
        Ok(self
            .manager
            .unless_stopping(async {
                let who = caller(conn, &self.bus, &self.callers, &header).await?;
                self.manager.reattest_by(&who).await
            })
            .await?)
    }

    /// Sent with the new state document whenever it changes.
    #[zbus(signal)]
    async fn state_changed(emitter: &SignalEmitter<'_>, state: &str) -> zbus::Result<()>;
}

/// Connects to `address` (None: the system bus, honouring `DBUS_SYSTEM_BUS_ADDRESS`), without
/// owning the name yet (so a daemon without a bus stops before touching anything).
pub async fn connect(address: Option<&str>) -> Result<zbus::Connection, DaemonError> {
    let bus_err = |e: zbus::Error| DaemonError::Bus {
        bus: address.unwrap_or("system").to_string(),
        reason: e.to_string(),
    };
    match address {
        Some(a) => zbus::connection::Builder::address(a),
        None => zbus::connection::Builder::system(),
    }
    .map_err(bus_err)?
    .build()
    .await
    .map_err(bus_err)
}

/// Serves the object on `conn`, owns the name, and spawns the `StateChanged` forwarder.
pub async fn serve(
    conn: &zbus::Connection,
    manager: Arc<Manager>,
    address: Option<&str>,
) -> Result<(), DaemonError> {
    let bus_err = |e: zbus::Error| DaemonError::Bus {
        bus: address.unwrap_or("system").to_string(),
        reason: e.to_string(),
    };
    let bus = zbus::fdo::DBusProxy::new(conn).await.map_err(bus_err)?;
    let callers = Arc::new(CallerCache::default());
    // Subscribed before the name is owned: no caller can be cached before its departure is
    // watched.
    let mut gone = bus.receive_name_owner_changed().await.map_err(bus_err)?;
    let cache = callers.clone();
    tokio::spawn(async move {
        while let Some(signal) = gone.next().await {
            if let Ok(args) = signal.args() {
                if args.new_owner().is_none() {
                    cache.remove(args.name().as_str());
                }
            }
        }
    });
    conn.object_server()
        .at(
            OBJECT_PATH,
            ManagerObject {
                manager: manager.clone(),
                callers,
                bus,
            },
        )
        .await
        .map_err(bus_err)?;
    conn.request_name(BUS_NAME).await.map_err(bus_err)?;
    // One StateChanged per change, in order (see Manager::next_changes for the bound).
    let c = conn.clone();
    tokio::spawn(async move {
        loop {
            let (docs, dropped) = manager.next_changes().await;
            if dropped > 0 {
                tracing::warn!(
                    dropped,
                    "StateChanged: the oldest state documents were not announced (the bus was too slow); the newest were"
                );
            }
            if let Ok(emitter) = SignalEmitter::new(&c, OBJECT_PATH) {
                for json in docs {
                    let _ = ManagerObject::state_changed(&emitter, &json).await;
                }
            }
        }
    });
    Ok(())
}
