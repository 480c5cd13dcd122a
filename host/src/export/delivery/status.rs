//! The delivery status of one integration and signal: its state, last success and error, and
//! its counters, shared between the delivery task, the host's API and self-telemetry.

use std::sync::{Mutex, PoisonError};

use tokio::sync::Notify;

use crate::clock::unix_nanos;

/// Consecutive failed exports after which an integration is paused until resumed.
pub const PAUSE_AFTER: u32 = 10;

/// The state of an integration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Nothing was exported yet.
    Pending,
    /// The last export was delivered and acknowledged.
    Connected,
    /// The last export left the host over UDP, which acknowledges nothing.
    Sending,
    /// Exports are failing or being retried.
    Degraded,
    /// Stopped after [`PAUSE_AFTER`] consecutive failed exports; nothing is sent until resumed.
    Paused,
    /// Turned off by configuration.
    Disabled,
}

impl State {
    /// The names of every state, in order.
    pub const NAMES: [&'static str; 6] = [
        "pending",
        "connected",
        "sending",
        "degraded",
        "paused",
        "disabled",
    ];

    /// The state for `wasmtel.export.state`.
    pub fn telemetry(self) -> crate::telemetry::IntegrationState {
        crate::telemetry::IntegrationState {
            now: self.as_str(),
            all: &Self::NAMES,
        }
    }

    /// The state's name.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Connected => "connected",
            State::Sending => "sending",
            State::Degraded => "degraded",
            State::Paused => "paused",
            State::Disabled => "disabled",
        }
    }
}

/// An error text from outside the host (a backend's answer, a plugin's reason) as the status
/// keeps it: credentials masked, control characters escaped, at most 1 KiB.
fn outside(text: &str) -> String {
    crate::redact::clean(text, 1024)
}

/// A consistent copy of an integration's status.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Snapshot {
    /// The state.
    pub state: State,
    /// Why it is paused, when it is.
    pub paused_reason: Option<String>,
    /// When an export was last delivered (Unix nanoseconds).
    pub last_success_unix_nano: Option<u64>,
    /// The last error, if any export failed.
    pub last_error: Option<String>,
    /// Exports delivered (for UDP: sent).
    pub sent: u64,
    /// Requests (or datagrams) sent successfully.
    pub requests: u64,
    /// Payload bytes of those requests.
    pub bytes: u64,
    /// Exports given up on.
    pub failed: u64,
    /// Retries made.
    pub retried: u64,
    /// Items the backend refused in partial successes.
    pub rejected: u64,
    /// Consecutive failed exports.
    pub consecutive_failures: u32,
}

/// The live status of one integration and signal.
#[derive(Debug)]
pub struct Status {
    inner: Mutex<Snapshot>,
    resumed: Notify,
}

impl Default for Status {
    fn default() -> Self {
        Self {
            inner: Mutex::new(Snapshot {
                state: State::Pending,
                paused_reason: None,
                last_success_unix_nano: None,
                last_error: None,
                sent: 0,
                requests: 0,
                bytes: 0,
                failed: 0,
                retried: 0,
                rejected: 0,
                consecutive_failures: 0,
            }),
            resumed: Notify::new(),
        }
    }
}

impl Status {
    fn update<R>(&self, f: impl FnOnce(&mut Snapshot) -> R) -> R {
        f(&mut self.inner.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// A copy of the status now.
    pub fn snapshot(&self) -> Snapshot {
        self.update(|s| s.clone())
    }

    /// The state now.
    pub fn state(&self) -> State {
        self.update(|s| s.state)
    }

    /// A request of `bytes` bytes was sent successfully.
    pub fn request_sent(&self, bytes: usize) {
        self.update(|s| {
            s.requests += 1;
            s.bytes += bytes as u64;
        });
    }

    /// An export was delivered (`acknowledged`) or, over UDP, sent; `rejected` items of it were
    /// refused in a partial success.
    pub fn delivered(&self, acknowledged: bool, rejected: u64, message: Option<String>) -> State {
        self.update(|s| {
            s.sent += 1;
            s.rejected += rejected;
            s.consecutive_failures = 0;
            s.last_success_unix_nano = Some(unix_nanos());
            if let Some(m) = message {
                s.last_error = Some(format!("partial success: {}", outside(&m)));
            }
            // A request that was in flight when the integration paused may still succeed; the
            // integration stays paused (its sender waits for a resume) until someone resumes it.
            if s.state != State::Paused {
                s.state = if acknowledged {
                    State::Connected
                } else {
                    State::Sending
                };
            }
            s.state
        })
    }

    /// A request failed and will be retried.
    pub fn retrying(&self, error: &str) -> State {
        self.update(|s| {
            s.retried += 1;
            s.last_error = Some(outside(error));
            if matches!(s.state, State::Pending | State::Connected | State::Sending) {
                s.state = State::Degraded;
            }
            s.state
        })
    }

    /// An export was given up on; the [`PAUSE_AFTER`]th in a row that `pauses` pauses the
    /// integration (one its plugin could not encode does not: the backend had no part in it).
    pub fn failed(&self, error: &str, pauses: bool) -> State {
        self.update(|s| {
            s.failed += 1;
            s.consecutive_failures += u32::from(pauses);
            let error = outside(error);
            s.last_error = Some(error.clone());
            if s.state == State::Paused {
                // Stays paused until resumed.
            } else if s.consecutive_failures >= PAUSE_AFTER {
                s.state = State::Paused;
                s.paused_reason = Some(format!(
                    "paused after {} consecutive failed exports; last error: {error}",
                    s.consecutive_failures
                ));
            } else {
                s.state = State::Degraded;
            }
            s.state
        })
    }

    /// Resumes a paused integration; returns whether it was paused.
    pub fn resume(&self) -> bool {
        let was = self.update(|s| {
            let paused = s.state == State::Paused;
            if paused {
                s.state = State::Degraded;
                s.paused_reason = None;
                s.consecutive_failures = 0;
            }
            paused
        });
        if was {
            self.resumed.notify_waiters();
        }
        was
    }

    /// Waits until the integration is resumed.
    pub async fn wait_resumed(&self) {
        let resumed = self.resumed.notified();
        tokio::pin!(resumed);
        resumed.as_mut().enable();
        if self.state() != State::Paused {
            return;
        }
        resumed.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_until_the_first_export_and_connected_only_after_a_success() {
        let s = Status::default();
        assert_eq!(s.state(), State::Pending);
        assert_eq!(s.retrying("HTTP 503"), State::Degraded);
        assert_eq!(s.delivered(true, 0, None), State::Connected);
        let udp = Status::default();
        assert_eq!(
            udp.delivered(false, 0, None),
            State::Sending,
            "UDP never claims delivery"
        );
        udp.request_sent(1432);
        udp.request_sent(100);
        let snap = udp.snapshot();
        assert_eq!((snap.sent, snap.requests, snap.bytes), (1, 2, 1532));
    }

    #[test]
    fn failures_the_backend_had_no_part_in_never_pause() {
        let s = Status::default();
        for _ in 0..PAUSE_AFTER * 3 {
            assert_eq!(
                s.failed("encoding failed: plugin `p` is marked failed", false),
                State::Degraded
            );
        }
        assert_eq!(s.snapshot().failed, u64::from(PAUSE_AFTER) * 3);
    }

    #[test]
    fn pauses_after_ten_failures_in_a_row_and_resumes() {
        let s = Status::default();
        for _ in 1..PAUSE_AFTER {
            assert_eq!(s.failed("HTTP 503", true), State::Degraded);
        }
        assert_eq!(
            s.delivered(true, 2, Some("bad point".into())),
            State::Connected
        );
        for _ in 1..PAUSE_AFTER {
            s.failed("HTTP 503", true);
        }
        assert_eq!(s.failed("HTTP 503", true), State::Paused);
        let snap = s.snapshot();
        assert_eq!(
            snap.paused_reason.as_deref(),
            Some("paused after 10 consecutive failed exports; last error: HTTP 503")
        );
        assert_eq!(
            (snap.sent, snap.failed, snap.rejected),
            (1, 2 * PAUSE_AFTER as u64 - 1, 2)
        );
        assert_eq!(
            s.delivered(true, 0, None),
            State::Paused,
            "a request in flight at the pause succeeds: still paused"
        );
        assert!(s.resume());
        assert!(!s.resume(), "only a paused integration resumes");
        assert_eq!(s.state(), State::Degraded);
    }
}
