//! The retry policy of [`super::HttpClient::send`], as pure functions: which outcomes are
//! retried, exponential back-off with full jitter, and `Retry-After` (RFC 9110 §10.2.3:
//! delay-seconds or an IMF-fixdate HTTP-date).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Statuses that are retried: throttling and transient server errors.
pub fn retryable_status(status: u16) -> bool {
    matches!(status, 429 | 500 | 502 | 503 | 504)
}

/// The back-off ceiling before retry number `retry` (1 = the first retry):
/// `initial · 2^(retry-1)`, capped at `max`.
pub fn backoff_ceiling(initial: Duration, max: Duration, retry: u32) -> Duration {
    let shift = retry.saturating_sub(1).min(31);
    initial
        .checked_mul(1u32 << shift)
        .map_or(max, |d| d.min(max))
}

/// Full jitter: a uniformly random duration in `[0, ceiling]`, from a random `u64`.
pub fn full_jitter(ceiling: Duration, random: u64) -> Duration {
    let ceiling_us = u64::try_from(ceiling.as_micros()).unwrap_or(u64::MAX);
    if ceiling_us == 0 {
        return Duration::ZERO;
    }
    Duration::from_micros(random % ceiling_us.saturating_add(1))
}

/// Parses a `Retry-After` value into a delay from `now`: delay-seconds (`"120"`) or an
/// IMF-fixdate (`"Sun, 06 Nov 1994 08:49:37 GMT"`; a date in the past means "now").
/// `None` when the value is neither.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        return v.parse::<u64>().ok().map(Duration::from_secs);
    }
    let at = parse_http_date(v)?;
    let now_s = now.duration_since(UNIX_EPOCH).ok()?.as_secs();
    let at_s = u64::try_from(at).unwrap_or(0);
    Some(Duration::from_secs(at_s.saturating_sub(now_s)))
}

/// Parses an IMF-fixdate into Unix seconds.
fn parse_http_date(v: &str) -> Option<i64> {
    let fmt = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let dt = time::PrimitiveDateTime::parse(v, fmt).ok()?;
    Some(dt.assume_utc().unix_timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        for s in [429, 500, 502, 503, 504] {
            assert!(retryable_status(s), "{s}");
        }
        for s in [200, 201, 400, 401, 403, 404, 409, 501, 505] {
            assert!(!retryable_status(s), "{s}");
        }
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let i = Duration::from_millis(500);
        let m = Duration::from_secs(30);
        assert_eq!(backoff_ceiling(i, m, 1), Duration::from_millis(500));
        assert_eq!(backoff_ceiling(i, m, 2), Duration::from_secs(1));
        assert_eq!(backoff_ceiling(i, m, 3), Duration::from_secs(2));
        assert_eq!(backoff_ceiling(i, m, 7), Duration::from_secs(30)); // 32 s capped
        assert_eq!(backoff_ceiling(i, m, 1000), Duration::from_secs(30));
    }

    #[test]
    fn jitter_stays_within_ceiling() {
        let c = Duration::from_millis(100);
        assert_eq!(full_jitter(c, 0), Duration::ZERO);
        assert_eq!(full_jitter(c, 100_000), c);
        assert!(full_jitter(c, u64::MAX) <= c);
        assert_eq!(full_jitter(Duration::ZERO, 12345), Duration::ZERO);
    }

    #[test]
    fn retry_after_forms() {
        // 1994-11-06T08:49:37Z = 784111777 (RFC 9110's own example date; `date -u -d
        // "Sun, 06 Nov 1994 08:49:37 GMT" +%s`).
        let now = UNIX_EPOCH + Duration::from_secs(784_111_777 - 10);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now),
            Some(Duration::from_secs(10))
        );
        let later = UNIX_EPOCH + Duration::from_secs(784_111_777 + 50);
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", later),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("-5", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("", now), None);
        assert_eq!(
            parse_retry_after("Sunday, 06-Nov-94 08:49:37 GMT", now),
            None
        );
    }
}
