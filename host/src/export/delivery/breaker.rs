//! The circuit breaker: stops retry storms while a backend is down, then probes it with a
//! single request before normal traffic resumes.

use std::time::Duration;

use tokio::time::Instant;

/// Consecutive failed requests that open the breaker.
pub const THRESHOLD: u32 = 5;
/// How long the breaker first stays open by default; each failed probe doubles it up to [`MAX_COOLDOWN`].
pub const FIRST_COOLDOWN: Duration = Duration::from_secs(1);
/// The longest time the breaker stays open before probing.
pub const MAX_COOLDOWN: Duration = Duration::from_secs(60);
/// How often a request waiting behind another's probe looks again.
const PROBE_POLL: Duration = Duration::from_millis(50);

/// Where the breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Requests flow.
    Closed,
    /// No request goes until then.
    Open {
        /// When the next request, a probe, may go.
        until: Instant,
    },
    /// The next request is a probe; its outcome closes or reopens the breaker.
    HalfOpen,
}

/// A circuit breaker for one signal of an integration, shared by its requests in flight: a
/// half-open breaker lets exactly one probe through while the others wait for its outcome.
#[derive(Debug)]
pub struct Breaker {
    state: BreakerState,
    failures: u32,
    first_cooldown: Duration,
    cooldown: Duration,
    probing: bool,
}

impl Default for Breaker {
    fn default() -> Self {
        Self::new(FIRST_COOLDOWN)
    }
}

impl Breaker {
    /// A closed breaker that first stays open for `cooldown`.
    pub fn new(cooldown: Duration) -> Self {
        Self {
            state: BreakerState::Closed,
            failures: 0,
            first_cooldown: cooldown,
            cooldown,
            probing: false,
        }
    }

    /// The current state.
    pub fn state(&self) -> BreakerState {
        self.state
    }

    /// How long to wait before the next request may go; an open breaker whose cooldown has
    /// passed turns half-open and lets this one request go at once, as the probe.
    pub fn wait(&mut self, now: Instant) -> Duration {
        match self.state {
            BreakerState::Open { until } if now < until => until - now,
            BreakerState::Open { .. } => {
                self.state = BreakerState::HalfOpen;
                self.probing = true;
                Duration::ZERO
            }
            BreakerState::HalfOpen if self.probing => PROBE_POLL,
            _ => Duration::ZERO,
        }
    }

    /// A request reached the backend and was answered (even if refused): close.
    pub fn success(&mut self) {
        *self = Self::new(self.first_cooldown);
    }

    /// A request failed in a way that says the backend is down.
    pub fn failure(&mut self, now: Instant) {
        match self.state {
            BreakerState::HalfOpen => {
                self.probing = false;
                self.cooldown = (self.cooldown * 2).min(MAX_COOLDOWN.max(self.first_cooldown));
                self.state = BreakerState::Open {
                    until: now + self.cooldown,
                };
            }
            BreakerState::Closed => {
                self.failures += 1;
                if self.failures >= THRESHOLD {
                    self.state = BreakerState::Open {
                        until: now + self.cooldown,
                    };
                }
            }
            BreakerState::Open { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_the_threshold_probes_once_and_backs_off() {
        let mut b = Breaker::default();
        let t0 = Instant::now();
        for _ in 1..THRESHOLD {
            b.failure(t0);
            assert_eq!(b.wait(t0), Duration::ZERO, "still closed");
        }
        b.failure(t0);
        assert_eq!(
            b.state(),
            BreakerState::Open {
                until: t0 + FIRST_COOLDOWN
            }
        );
        assert_eq!(b.wait(t0), FIRST_COOLDOWN, "no request while open");
        let later = t0 + FIRST_COOLDOWN;
        assert_eq!(b.wait(later), Duration::ZERO, "one probe");
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert_eq!(b.wait(later), PROBE_POLL, "the others wait for the probe");
        b.failure(later);
        assert_eq!(
            b.wait(later),
            FIRST_COOLDOWN * 2,
            "a failed probe doubles the cooldown"
        );
        let much_later = later + MAX_COOLDOWN * 4;
        assert_eq!(b.wait(much_later), Duration::ZERO);
        b.success();
        assert_eq!(b.state(), BreakerState::Closed);
        b.failure(much_later);
        assert_eq!(b.wait(much_later), Duration::ZERO, "the count starts again");
    }
}
