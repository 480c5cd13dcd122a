//! When to retry a failed request: the OTLP specification's retryable outcomes, exponential
//! backoff with jitter, and `Retry-After` in both its forms.

use std::time::{Duration, SystemTime};

/// The first backoff; each retry doubles it up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// The longest backoff.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// The longest `Retry-After` honoured; a server asking for more gets this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// How an exporter retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries per batch.
    pub max_retries: u32,
    /// The first backoff.
    pub first_backoff: Duration,
    /// The longest backoff.
    pub max_backoff: Duration,
    /// How long the circuit breaker first stays open.
    pub breaker_cooldown: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: crate::config::DEFAULT_MAX_RETRIES,
            first_backoff: FIRST_BACKOFF,
            max_backoff: MAX_BACKOFF,
            breaker_cooldown: super::breaker::FIRST_COOLDOWN,
        }
    }
}

impl From<&crate::config::RetryConfig> for RetryPolicy {
    fn from(config: &crate::config::RetryConfig) -> Self {
        let defaults = RetryPolicy::default();
        RetryPolicy {
            max_retries: config.max_retries.unwrap_or(defaults.max_retries),
            first_backoff: config.initial_backoff.unwrap_or(defaults.first_backoff),
            max_backoff: config.max_backoff.unwrap_or(defaults.max_backoff),
            breaker_cooldown: config.breaker_cooldown.unwrap_or(defaults.breaker_cooldown),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `retry` (from 0): the server's `Retry-After` when it gave
    /// one, else a uniformly random share of the exponential backoff ("full jitter"), at least
    /// a tenth of it so retries never stampede at zero.
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(after) = retry_after {
            return after.min(MAX_RETRY_AFTER);
        }
        let ceiling = self
            .first_backoff
            .saturating_mul(1u32.checked_shl(retry).unwrap_or(u32::MAX))
            .min(self.max_backoff);
        let floor = ceiling / 10;
        floor + (ceiling - floor).mul_f64(fastrand::f64())
    }
}

/// Whether an HTTP status may be retried: 429, 502, 503 and 504, as OTLP/HTTP says.
pub fn retryable(status: u16) -> bool {
    matches!(status, 429 | 502 | 503 | 504)
}

/// A `Retry-After` value: delay-seconds, or an HTTP-date (a date in the past means now).
pub fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_in_both_forms() {
        let now = httpdate::parse_http_date("Sun, 22 Nov 2026 10:00:00 GMT").expect("date");
        assert_eq!(retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            retry_after("Sun, 22 Nov 2026 10:00:42 GMT", now),
            Some(Duration::from_secs(42))
        );
        assert_eq!(
            retry_after("Sun, 22 Nov 2026 09:00:00 GMT", now),
            Some(Duration::ZERO),
            "a past date means now"
        );
        assert_eq!(retry_after("soon", now), None);
        assert_eq!(retry_after("-3", now), None);
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap_and_retry_after_wins() {
        let policy = RetryPolicy::default();
        for retry in 0..12 {
            let ceiling = (FIRST_BACKOFF * 2u32.pow(retry)).min(MAX_BACKOFF);
            for _ in 0..50 {
                let d = policy.delay(retry, None);
                assert!(d >= ceiling / 10 && d <= ceiling, "retry {retry}: {d:?}");
            }
        }
        let spread: std::collections::BTreeSet<_> =
            (0..20).map(|_| policy.delay(3, None)).collect();
        assert!(spread.len() > 10, "jittered: {spread:?}");
        assert_eq!(
            policy.delay(0, Some(Duration::from_secs(9))),
            Duration::from_secs(9)
        );
        assert_eq!(
            policy.delay(0, Some(Duration::from_secs(9999))),
            MAX_RETRY_AFTER
        );
        assert!(policy.delay(u32::MAX, None) <= MAX_BACKOFF);
    }

    #[test]
    fn only_the_otlp_retryable_statuses() {
        let yes: Vec<u16> = (100..600).filter(|s| retryable(*s)).collect();
        assert_eq!(yes, [429, 502, 503, 504]);
    }
}
