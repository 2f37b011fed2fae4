//! One release serves every volume (DESIGN.md "What happens on a boot", step 6-7): the
//! release driver publishes each key's material (IKM) once on a [`KeyBoard`]; the key socket
//! asks the board for a volume's passphrase, which waits until that volume's key is published
//! (or failed), then derives the passphrase from the CONFIGURED LUKS UUID.
//!
//! A volume name that is not configured is refused at once; a key that failed (policy refused,
//! deadline) refuses every volume that uses it, so systemd falls back to its prompt.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::watch;

use crate::config::Settings;
use crate::secret::Secret;
use crate::volume::VolumeSpec;

/// Where a key's release stands.
#[derive(Debug, Clone)]
pub enum KeyState {
    /// Not released yet.
    Pending,
    /// Released: the key material (IKM).
    Ready(Arc<Secret>),
    /// Release failed for good; volumes using it are refused.
    Failed,
}

/// Released key material by key name, and the configured volumes that use each key.
pub struct KeyBoard {
    volumes: BTreeMap<String, (VolumeSpec, String)>,
    keys: BTreeMap<String, watch::Sender<KeyState>>,
}

impl KeyBoard {
    /// A board for the configured volumes (all pending). With `initrd_only`, volumes with
    /// `options.initrd = false` are left out (the daemon unlocks them after switch-root).
    pub fn new(settings: &Settings, initrd_only: bool) -> Self {
        let mut volumes = BTreeMap::new();
        let mut keys = BTreeMap::new();
        for (name, vol) in &settings.volumes {
            if initrd_only && !vol.options.initrd {
                continue;
            }
            let Ok(spec) = VolumeSpec::from_settings(settings, name) else {
                continue;
            };
            keys.entry(vol.key.clone())
                .or_insert_with(|| watch::channel(KeyState::Pending).0);
            volumes.insert(name.clone(), (spec, vol.key.clone()));
        }
        Self { volumes, keys }
    }

    /// The keys that must be released for the volumes on this board, each once.
    pub fn keys_needed(&self) -> Vec<String> {
        self.keys.keys().cloned().collect()
    }

    /// The volumes on this board.
    pub fn volumes(&self) -> Vec<String> {
        self.volumes.keys().cloned().collect()
    }

    /// Publishes the released material of `key`; every volume waiting for it is answered.
    pub fn publish(&self, key: &str, ikm: Secret) {
        if let Some(tx) = self.keys.get(key) {
            tx.send_replace(KeyState::Ready(Arc::new(ikm)));
        }
    }

    /// Marks `key` as failed: volumes using it are refused (closed without data).
    pub fn fail(&self, key: &str) {
        if let Some(tx) = self.keys.get(key) {
            tx.send_replace(KeyState::Failed);
        }
    }

    /// The passphrase of `volume`, once its key is published; `None` when the volume is not
    /// on this board, its key failed, or derivation failed.
    pub async fn passphrase(&self, volume: &str) -> Option<Secret> {
        let (spec, key) = self.volumes.get(volume)?;
        let mut rx = self.keys.get(key)?.subscribe();
        let state = rx
            .wait_for(|s| !matches!(s, KeyState::Pending))
            .await
            .ok()?
            .clone();
        match state {
            KeyState::Ready(ikm) => spec.passphrase(&ikm).ok(),
            KeyState::Pending | KeyState::Failed => None,
        }
    }
}
