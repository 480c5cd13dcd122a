//! Delivery: the task that drains an export queue into a client, with the OTLP specification's
//! retries, a circuit breaker, and a pause after too many failed exports in a row.

pub mod breaker;
pub mod retry;
pub mod status;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;
use tokio::time::Instant;

use super::otlp::client::OtlpClient;
use super::queue::DropOldestQueue;
use crate::model::Signal;
use crate::telemetry::SelfTelemetry;
use breaker::Breaker;
pub use retry::RetryPolicy;
pub use status::{State, Status};

/// The drain signal: `Some(deadline)` once the host is shutting down.
pub type Drain = watch::Receiver<Option<Instant>>;

/// The exporter name the native OTLP exporter's self-metrics carry.
pub const OTLP_EXPORTER: &str = "otlp";

/// Why a batch was not delivered, for every exporter (native OTLP and plugins).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Worth another try: unreachable, timed out, 429, 502, 503 or 504.
    #[error("{reason}")]
    Retryable {
        /// What happened.
        reason: String,
        /// How long the server asked to wait (`Retry-After`).
        after: Option<Duration>,
    },
    /// Retrying would fail the same way (other 4xx/5xx).
    #[error("{0}")]
    Rejected(String),
}

impl SendError {
    /// A retryable failure without a server-given wait.
    pub fn retryable(reason: impl Into<String>) -> Self {
        SendError::Retryable {
            reason: reason.into(),
            after: None,
        }
    }
}

/// A delivered batch, and what of it the backend refused in a partial success.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delivered {
    /// Items refused (`rejected_data_points` / `rejected_log_records`).
    pub rejected: u64,
    /// The backend's message, when it sent a partial success.
    pub message: Option<String>,
}

/// What the host reports of one exporter's signal.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    /// The exporter (`otlp`, or a plugin's name).
    pub exporter: String,
    /// `metrics` or `logs`.
    pub signal: &'static str,
    /// Its delivery status.
    #[serde(flatten)]
    pub status: status::Snapshot,
    /// Items waiting in its queue.
    pub queued: usize,
    /// Items its full queue dropped.
    pub dropped: u64,
}

/// One queue feeding one client.
pub struct Delivery<T> {
    /// The exporter's name, for self-telemetry.
    pub exporter: Arc<str>,
    /// The queue to drain.
    pub queue: Arc<DropOldestQueue<T>>,
    /// Where batches go.
    pub client: Arc<OtlpClient>,
    /// Most items per request.
    pub batch: usize,
    /// Turns items into one request body.
    pub encode: Arc<dyn Fn(Vec<T>) -> Bytes + Send + Sync>,
    /// Self-telemetry.
    pub telemetry: SelfTelemetry,
    /// The signal, for self-telemetry.
    pub signal: Signal,
    /// The integration's status, shared with whoever reports it.
    pub status: Arc<Status>,
    /// How failed requests are retried.
    pub policy: RetryPolicy,
}

impl<T: Clone + Send + 'static> Delivery<T> {
    /// Sends batches until drained: after the drain signal, it empties the queue (within the
    /// deadline) and returns.
    ///
    /// A batch stays queued (and counts against the queue's capacity) until it is delivered or
    /// refused, so when the queue overflows exactly the oldest items are dropped. A retryable
    /// failure is retried as [`RetryPolicy`] says; a batch still failing counts as a failed
    /// export and is tried again later, behind the circuit breaker, until the integration
    /// pauses. A refused batch (other 4xx/5xx) is counted failed and dropped, never retried.
    pub async fn run(self, mut drain: Drain) {
        let mut breaker = Breaker::new(self.policy.breaker_cooldown);
        loop {
            if self.status.state() == State::Paused {
                if drain.borrow().is_some() {
                    return;
                }
                tokio::select! {
                    _ = self.status.wait_resumed() => {}
                    _ = drain.changed() => {}
                }
                continue;
            }
            let (items, last) = self.queue.peek(self.batch);
            if items.is_empty() {
                if drain.borrow().is_some() {
                    return;
                }
                tokio::select! {
                    _ = self.queue.pushed() => {}
                    _ = drain.changed() => {}
                }
                continue;
            }
            // Encoding may call transform plugins, which must not run on async worker threads.
            let encode = self.encode.clone();
            let Ok(body) = tokio::task::spawn_blocking(move || encode(items)).await else {
                self.queue.ack(last);
                self.failed("encoding the batch failed");
                continue;
            };
            match self.send(&body, &mut breaker, &mut drain).await {
                Ok(delivered) => {
                    self.queue.ack(last);
                    let state = self.status.delivered(delivered.rejected, delivered.message);
                    self.telemetry
                        .export_batch(&self.exporter, self.signal, true);
                    self.telemetry
                        .export_state(&self.exporter, self.signal, state);
                }
                Err(SendError::Rejected(reason)) => {
                    self.queue.ack(last);
                    self.failed(&reason);
                }
                Err(e) => {
                    self.failed(&e.to_string());
                    if drain.borrow().is_some() {
                        return;
                    }
                }
            }
        }
    }

    /// Counts a failed export.
    fn failed(&self, error: &str) {
        let state = self.status.failed(error);
        self.telemetry
            .export_batch(&self.exporter, self.signal, false);
        self.telemetry
            .export_state(&self.exporter, self.signal, state);
        if state == State::Paused {
            tracing::warn!(signal = self.signal.as_str(), url = %self.client.url(),
                "OTLP export paused after {} failed exports in a row; resume it to send again",
                status::PAUSE_AFTER);
        }
    }

    /// Sends one body, waiting for the breaker and retrying retryable failures.
    async fn send(
        &self,
        body: &Bytes,
        breaker: &mut Breaker,
        drain: &mut Drain,
    ) -> Result<Delivered, SendError> {
        let mut retry = 0;
        loop {
            let wait = breaker.wait(Instant::now());
            if !wait.is_zero() && !sleep(wait, drain).await {
                return Err(SendError::retryable(
                    "the backend is down and the host is shutting down",
                ));
            }
            let error = match self.client.send(body.clone()).await {
                Ok(delivered) => {
                    breaker.success();
                    return Ok(delivered);
                }
                Err(refused @ SendError::Rejected(_)) => {
                    breaker.success();
                    return Err(refused);
                }
                Err(error) => error,
            };
            breaker.failure(Instant::now());
            if retry >= self.policy.max_retries {
                return Err(error);
            }
            let SendError::Retryable { reason, after } = &error else {
                return Err(error);
            };
            let state = self.status.retrying(reason);
            self.telemetry
                .export_retry(&self.exporter, self.signal, state);
            let delay = self.policy.delay(retry, *after);
            retry += 1;
            if !sleep(delay, drain).await {
                return Err(error);
            }
        }
    }
}

/// Sleeps for `delay`, or less if the drain signal changes; `false` (at once) when the
/// shutdown deadline would pass first.
async fn sleep(delay: Duration, drain: &mut Drain) -> bool {
    let deadline = *drain.borrow();
    if deadline.is_some_and(|d| Instant::now() + delay > d) {
        return false;
    }
    tokio::select! {
        _ = tokio::time::sleep(delay) => {}
        _ = drain.changed() => {}
    }
    true
}
