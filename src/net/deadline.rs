//! [`Deadline`]: one overall time limit shared by every network call of a run (issue 6, "one
//! overall deadline"). Per-attempt timeouts and back-off sleeps are clipped to it.

use std::time::{Duration, Instant};

/// A point in time after which no more network work is started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    at: Instant,
}

impl Deadline {
    /// The deadline `d` from now (saturating far in the future if `d` is absurdly large).
    pub fn after(d: Duration) -> Self {
        let now = Instant::now();
        let at = now
            .checked_add(d)
            .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 24 * 3600)))
            .unwrap_or(now);
        Self { at }
    }

    /// A deadline at a given instant.
    pub fn at(at: Instant) -> Self {
        Self { at }
    }

    /// The instant of the deadline.
    pub fn instant(&self) -> Instant {
        self.at
    }

    /// Time left; `Duration::ZERO` once the deadline has passed.
    pub fn remaining(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }

    /// True once the deadline has passed.
    pub fn expired(&self) -> bool {
        self.remaining().is_zero()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn past_deadline_has_zero_remaining() {
        let d = Deadline::at(Instant::now() - Duration::from_millis(1));
        assert!(d.expired());
        assert_eq!(d.remaining(), Duration::ZERO);
    }

    #[test]
    fn future_deadline_is_not_expired() {
        let d = Deadline::after(Duration::from_secs(60));
        assert!(!d.expired());
        assert!(d.remaining() > Duration::from_secs(50));
        assert!(d.remaining() <= Duration::from_secs(60));
    }

    #[test]
    fn huge_durations_do_not_overflow() {
        let d = Deadline::after(Duration::MAX);
        assert!(!d.expired());
    }
}
