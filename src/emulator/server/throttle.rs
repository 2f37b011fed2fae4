//! Key Vault / Managed HSM throttling of `skr-emulator serve` (PROTOCOLS.md §6.7): a sliding
//! window of [`THROTTLE_WINDOW`] over RSA-2048-equivalent HSM operations per listener.
//!
//! Azure's documented per-vault limits for HSM-protected keys ("all other transactions", per
//! 10 s) are 2000 for RSA-2048, 500 for RSA-3072, 250 for RSA-4096 and 2000 for EC: an
//! operation therefore weighs 1 (RSA-2048, EC, oct), 4 (RSA-3072) or 8 (RSA-4096) of a limit of
//! 2000 ([`weight`]). An operation that would exceed the limit is refused (429 with
//! `Retry-After`) and, as in Azure, not counted. `Retry-After` is the time, rounded up to whole
//! seconds, until enough of the window's operations have aged out for this one to fit.
//!
//! Counted: key GET and release. Not emulated: Azure's separate CREATE limit (10 per 10 s; creates
//! and imports are not throttled), the software-key limits (twice the HSM ones; software RSA
//! weighs like HSM RSA here), Managed HSM's own limits (the same window applies to it, counted
//! apart from Key Vault's) and the subscription-wide limit (5 × the vault limit).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Default limit: RSA-2048-equivalent HSM operations per [`THROTTLE_WINDOW`] (§6.7).
pub const DEFAULT_OPS_LIMIT: u32 = 2000;
/// The throttling window.
pub const THROTTLE_WINDOW: Duration = Duration::from_secs(10);

/// RSA-2048-equivalent cost of one operation on a key of this base type (`RSA`, `EC`, `oct`)
/// and size: 2000 / (Azure's limit for that key type).
pub fn weight(kty_base: &str, key_size: Option<u32>) -> u32 {
    match (kty_base, key_size) {
        ("RSA", Some(3072)) => 4,
        ("RSA", Some(4096)) => 8,
        _ => 1,
    }
}

/// One listener's window and totals.
#[derive(Debug)]
pub struct Throttle {
    limit: u32,
    ops: Mutex<VecDeque<(Instant, u32)>>,
    admitted_weight: AtomicU64,
    refused: AtomicU64,
}

/// What `GET {admin}/throttle` shows of one listener.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ThrottleStatus {
    /// The limit per window.
    pub limit: u32,
    /// The weight admitted during the last window.
    pub in_window: u64,
    /// The weight admitted since start (never decreases).
    pub admitted_weight: u64,
    /// Operations refused with 429 since start.
    pub refused: u64,
}

/// The wait until an operation of `weight` fits: the time until the oldest operations whose
/// weights free enough room have left the window. `ops` holds (age, weight), oldest first, all
/// younger than the window.
pub fn wait_for_room(ops: &[(Duration, u32)], used: u64, weight: u32, limit: u32) -> Duration {
    let need = (used + u64::from(weight)).saturating_sub(u64::from(limit));
    let mut freed = 0u64;
    for (age, w) in ops {
        freed += u64::from(*w);
        if freed >= need {
            return THROTTLE_WINDOW.saturating_sub(*age);
        }
    }
    THROTTLE_WINDOW
}

/// Whole seconds of a `Retry-After` for `wait`: rounded up, at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    let ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
    ms.div_ceil(1000).max(1)
}

impl Throttle {
    /// A window with `limit` RSA-2048-equivalent operations.
    pub fn new(limit: u32) -> Self {
        Self {
            limit,
            ops: Mutex::new(VecDeque::new()),
            admitted_weight: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }

    /// The limit.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// Counts an operation of `weight` now, or refuses it with the wait until it would fit.
    pub fn admit(&self, weight: u32) -> Result<(), Duration> {
        let mut ops = self.ops.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        while ops
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) >= THROTTLE_WINDOW)
        {
            ops.pop_front();
        }
        let used: u64 = ops.iter().map(|(_, w)| u64::from(*w)).sum();
        if used + u64::from(weight) > u64::from(self.limit) {
            self.refused.fetch_add(1, Ordering::Relaxed);
            let aged: Vec<(Duration, u32)> = ops
                .iter()
                .map(|(t, w)| (now.duration_since(*t), *w))
                .collect();
            return Err(wait_for_room(&aged, used, weight, self.limit));
        }
        ops.push_back((now, weight));
        self.admitted_weight
            .fetch_add(u64::from(weight), Ordering::Relaxed);
        Ok(())
    }

    /// The limit, the window's use and the totals.
    pub fn status(&self) -> ThrottleStatus {
        let ops = self.ops.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let in_window = ops
            .iter()
            .filter(|(t, _)| now.duration_since(*t) < THROTTLE_WINDOW)
            .map(|(_, w)| u64::from(*w))
            .sum();
        ThrottleStatus {
            limit: self.limit,
            in_window,
            admitted_weight: self.admitted_weight.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_are_2000_over_azures_limits() {
        // §6.7: RSA-2048 2000, RSA-3072 500, RSA-4096 250, EC 2000 per 10 s.
        for (kty, size, azure_limit) in [
            ("RSA", Some(2048), 2000),
            ("RSA", Some(3072), 500),
            ("RSA", Some(4096), 250),
            ("EC", None, 2000),
        ] {
            assert_eq!(weight(kty, size), 2000 / azure_limit, "{kty} {size:?}");
        }
    }

    #[test]
    fn the_wait_frees_enough_room() {
        let s = Duration::from_secs;
        // Oldest weighs 1, then two of 8: a weight-8 operation at limit 16 must wait for the
        // second one (age 3 s), not the first (age 6 s).
        let ops = [(s(6), 1), (s(3), 8), (s(1), 8)];
        assert_eq!(wait_for_room(&ops, 17, 8, 16), s(7));
        assert_eq!(wait_for_room(&ops, 17, 1, 16), s(7));
        assert_eq!(wait_for_room(&[(s(6), 1), (s(3), 8)], 9, 8, 16), s(4));
        // Heavier than the limit: never fits; a whole window.
        assert_eq!(wait_for_room(&ops, 17, 40, 16), THROTTLE_WINDOW);
        assert_eq!(retry_after_secs(Duration::from_millis(9001)), 10);
        assert_eq!(retry_after_secs(s(9)), 9);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }

    #[test]
    fn refused_operations_do_not_count() {
        let t = Throttle::new(8);
        assert!(t.admit(8).is_ok());
        assert!(t.admit(1).is_err());
        assert!(t.admit(8).is_err());
        let st = t.status();
        assert_eq!((st.in_window, st.admitted_weight, st.refused), (8, 8, 2));
    }
}
