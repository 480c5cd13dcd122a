//! Delivery: the one engine every integration sends through, whatever its transport.
//!
//! Each signal of an integration has a bounded [`Queue`], a [`Delivery`] task draining it
//! through a [`Transport`] with up to `in_flight` batches at once (logs; metrics go one at a
//! time, in order), the OpenTelemetry specification's retries with backoff, one circuit breaker
//! shared by its requests, a pause after too many failed exports in a row, and a [`Status`]. A
//! batch taken from the queue is encoded into requests that are sent and acknowledged one by
//! one, so when a later request fails only what was not delivered is sent again; a request the
//! backend finds too large (HTTP 413) is split and its halves sent instead.

pub mod breaker;
pub mod journal;
pub mod queue;
pub mod retry;
pub mod status;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::transport::{Delivered, Request, SendError, Transport};
use crate::config::DeliveryConfig;
use crate::model::Signal;
use crate::telemetry::SelfTelemetry;
use breaker::Breaker;
use queue::{Queue, Taken, Weight};
pub use retry::RetryPolicy;
pub use status::{State, Status};

/// The drain signal: `Some(deadline)` once the host is shutting down.
pub type Drain = watch::Receiver<Option<Instant>>;

/// One integration's delivery settings, resolved from its own and the `[delivery]` ones.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// How often metrics are collected and exported.
    pub interval: Duration,
    /// How long one request may take.
    pub timeout: Duration,
    /// Metric batches held.
    pub metrics_queue: usize,
    /// How log records are queued and batched.
    pub logs: Records,
    /// How spans are queued and batched.
    pub traces: Records,
    /// Log or span exports in flight at once, each.
    pub max_in_flight: usize,
    /// The pace of UDP datagrams, in bytes per second.
    pub udp_bytes_per_second: u64,
    /// Bytes of UDP datagrams sent back to back before the pace applies.
    pub udp_burst_bytes: u64,
    /// The fraction of the interval a collection's UDP datagrams are spread over.
    pub udp_spread: f64,
    /// How failed requests are retried.
    pub retry: RetryPolicy,
    /// Where queued log records and spans are held.
    pub queue: crate::config::QueueKind,
    /// When a disk queue syncs.
    pub fsync: journal::Fsync,
    /// The most bytes a disk queue's journal takes.
    pub max_disk_bytes: u64,
}

impl Settings {
    /// An integration's `own` settings over the `defaults` of `[delivery]`, over the built-in ones.
    pub fn resolve(own: &DeliveryConfig, defaults: &DeliveryConfig) -> Self {
        let c = own.over(defaults);
        Self {
            interval: c.interval.unwrap_or(Duration::from_secs(60)),
            timeout: c.timeout.unwrap_or(Duration::from_secs(10)),
            metrics_queue: c.metrics_queue.unwrap_or(32).max(1),
            logs: Records::resolve(
                c.logs_queue,
                c.logs_queue_bytes,
                c.logs_batch,
                c.logs_batch_bytes,
            ),
            traces: Records::resolve(
                c.traces_queue,
                c.traces_queue_bytes,
                c.traces_batch,
                c.traces_batch_bytes,
            ),
            max_in_flight: c.max_in_flight.unwrap_or(4).max(1),
            udp_bytes_per_second: c
                .udp_bytes_per_second
                .unwrap_or(super::transport::udp::DEFAULT_BYTES_PER_SECOND),
            udp_burst_bytes: c
                .udp_burst_bytes
                .unwrap_or(super::transport::udp::DEFAULT_BURST_BYTES),
            udp_spread: c
                .udp_spread
                .unwrap_or(super::transport::udp::DEFAULT_SPREAD),
            retry: RetryPolicy::from(&c.retry),
            queue: c.queue.unwrap_or_default(),
            fsync: c.fsync.unwrap_or_default(),
            max_disk_bytes: c.max_disk_bytes.unwrap_or(1 << 30).max(1),
        }
    }
}

/// How one record signal (log records or spans) is queued and batched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Records {
    /// Records held.
    pub queue: usize,
    /// Bytes of encoded records held.
    pub queue_bytes: usize,
    /// Most records per export.
    pub batch: usize,
    /// Most bytes of records per export.
    pub batch_bytes: usize,
}

impl Records {
    /// The settings given, the built-in defaults for those not given.
    fn resolve(
        queue: Option<usize>,
        queue_bytes: Option<usize>,
        batch: Option<usize>,
        batch_bytes: Option<usize>,
    ) -> Self {
        Self {
            queue: queue.unwrap_or(65536).max(1),
            queue_bytes: queue_bytes.unwrap_or(64 << 20).max(1),
            batch: batch.unwrap_or(8192).max(1),
            batch_bytes: batch_bytes.unwrap_or(4 << 20).max(1),
        }
    }
}

impl Settings {
    /// How records of `signal` are queued and batched (log records for metrics, which are not
    /// records).
    pub fn records(&self, signal: Signal) -> Records {
        match signal {
            Signal::Traces => self.traces,
            Signal::Metrics | Signal::Logs => self.logs,
        }
    }
}

/// What the host reports of one integration's signal.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    /// The integration's id.
    pub id: String,
    /// The integration's name, as self-metrics label it.
    pub integration: String,
    /// `metrics` or `logs`.
    pub signal: &'static str,
    /// Its delivery status.
    #[serde(flatten)]
    pub status: status::Snapshot,
    /// Where every item (metric collection or log record) it was given is now:
    /// `accepted = delivered + refused + dropped + queued`, exactly.
    #[serde(flatten)]
    pub items: queue::Counts,
    /// When metrics are next collected and exported (Unix nanoseconds); logs go as they come.
    pub next_export_unix_nano: Option<u64>,
    /// A disk queue's state, for a signal queued on disk.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_queue: Option<DiskQueue>,
}

/// What a disk queue holds and what it read back at start.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct DiskQueue {
    /// Bytes its journal takes on disk now.
    pub bytes: u64,
    /// Records held only on disk now, beyond what memory holds.
    pub spilled: u64,
    /// What it read back when the integration started.
    pub replayed: journal::Replayed,
}

/// Why a batch could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// The plugin's call failed or was refused.
    #[error(transparent)]
    Plugin(#[from] crate::plugins::CallError),
    /// The plugin's file was removed and no version serves.
    #[error("the plugin was unloaded")]
    Unloaded,
    /// An item made for the native encoder reached a plugin.
    #[error("an OTLP request cannot go to a plugin")]
    Misrouted,
    /// A queued record is no longer the message intake checked.
    #[error("a queued record is damaged: {0}")]
    Damaged(#[from] crate::model::wire::WireError),
}

/// Turns queued items into requests; a blocking call (it may run plugins).
pub type Encode<T> = Arc<dyn Fn(&[T]) -> Result<Vec<Request>, EncodeError> + Send + Sync>;

/// Splits one item into two smaller ones, when it can be split.
pub type Split<T> = fn(&T) -> Option<(T, T)>;

/// One signal's queue drained through one transport.
pub struct Delivery<T> {
    /// The integration's name, for logs and self-telemetry.
    pub integration: Arc<str>,
    /// The signal, for logs and self-telemetry.
    pub signal: Signal,
    /// The queue to drain.
    pub queue: Arc<Queue<T>>,
    /// Where requests go.
    pub transport: Arc<dyn Transport>,
    /// Turns a batch of items into requests.
    pub encode: Encode<T>,
    /// Splits an item whose request was too large.
    pub split: Split<T>,
    /// Most items per batch.
    pub batch: usize,
    /// Most bytes per batch.
    pub batch_bytes: usize,
    /// Batches in flight at once.
    pub in_flight: usize,
    /// The signal's status, shared with whoever reports it.
    pub status: Arc<Status>,
    /// How failed requests are retried.
    pub policy: RetryPolicy,
    /// Self-telemetry.
    pub telemetry: SelfTelemetry,
    /// Whether requests are failing now: the first failure and the recovery are logged,
    /// the failures in between are not.
    pub failing: AtomicBool,
}

impl<T> std::fmt::Debug for Delivery<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("integration", &self.integration)
            .field("signal", &self.signal)
            .finish_non_exhaustive()
    }
}

/// Some items of a batch and the requests they were encoded into (`None` until encoded).
struct Segment<T> {
    items: Vec<T>,
    requests: Option<VecDeque<Request>>,
    delivered: usize,
    refused: bool,
}

impl<T> Segment<T> {
    fn new(items: Vec<T>) -> Self {
        Self {
            items,
            requests: None,
            delivered: 0,
            refused: false,
        }
    }
}

/// A batch being sent: its segments in order, and what happened to it so far.
struct Flight<T> {
    taken: Taken<T>,
    segments: VecDeque<Segment<T>>,
    /// Requests delivered.
    delivered: usize,
    /// Items of finished segments: delivered, refused.
    items: (usize, usize),
    rejected: u64,
    message: Option<String>,
    refused: Option<String>,
    /// Whether it was refused because it could not be encoded (its plugin failed), which
    /// the backend had no part in and which does not pause the integration.
    unencoded: bool,
}

impl<T> Flight<T> {
    fn new(mut taken: Taken<T>) -> Self {
        let items = std::mem::take(&mut taken.items);
        Self {
            taken,
            segments: VecDeque::from([Segment::new(items)]),
            delivered: 0,
            items: (0, 0),
            rejected: 0,
            message: None,
            refused: None,
            unencoded: false,
        }
    }

    /// Ends the front segment, counting its items as delivered or refused.
    fn segment_done(&mut self) {
        if let Some(done) = self.segments.pop_front() {
            if done.refused {
                self.items.1 += done.items.len();
            } else {
                self.items.0 += done.items.len();
            }
        }
    }
}

/// What one step of sending a batch came to.
enum Step {
    /// More to do.
    Continue,
    /// Every request was delivered or refused.
    Done,
    /// A request still fails after its retries; the export failed.
    Failed(String),
}

/// How a flight ended.
enum Landing {
    /// Delivered or refused, and accounted for.
    Done,
    /// Failed before anything was delivered: its items are queued again.
    Returned,
    /// Failed while the host shuts down.
    Abandoned,
}

impl<T: Clone + Weight + Send + Sync + 'static> Delivery<T> {
    /// Sends batches until drained: after the drain signal, it empties the queue (within the
    /// deadline) and returns.
    ///
    /// Up to `in_flight` batches go at once. A batch is out of the queue's waiting line (never
    /// dropped) while it is sent. A retryable failure is retried as [`RetryPolicy`] says; a
    /// request still failing makes the export fail: the batch goes back to the front of the
    /// queue, or, if some of its requests were delivered, is kept to be finished behind the
    /// circuit breaker. A refused request is counted and dropped, never retried.
    pub async fn run(self: Arc<Self>, mut drain: Drain) {
        let breaker = Arc::new(Mutex::new(Breaker::new(self.policy.breaker_cooldown)));
        let mut flights: JoinSet<Landing> = JoinSet::new();
        let mut stopping = false;
        loop {
            let paused = self.status.state() == State::Paused;
            while !paused && !stopping && flights.len() < self.in_flight {
                let Some(taken) = self.queue.take(self.batch, self.batch_bytes) else {
                    break;
                };
                let flight = self.clone().fly(taken, breaker.clone(), drain.clone());
                flights.spawn(flight);
            }
            let draining = drain.borrow().is_some();
            if flights.is_empty() {
                if draining && (paused || stopping || self.queue.is_idle()) {
                    return;
                }
                if paused {
                    tokio::select! {
                        _ = self.status.wait_resumed() => {}
                        _ = drain.changed() => {}
                    }
                } else {
                    tokio::select! {
                        _ = self.queue.pushed() => {}
                        _ = drain.changed() => {}
                    }
                }
                continue;
            }
            let room = !paused && !stopping && flights.len() < self.in_flight;
            tokio::select! {
                landed = flights.join_next() => {
                    let failed = !matches!(landed, Some(Ok(Landing::Done)));
                    stopping |= failed && drain.borrow().is_some();
                }
                _ = self.queue.pushed(), if room => {}
                _ = drain.changed(), if !draining => {}
            }
        }
    }

    /// Sends one batch to its end.
    async fn fly(
        self: Arc<Self>,
        taken: Taken<T>,
        breaker: Arc<Mutex<Breaker>>,
        mut drain: Drain,
    ) -> Landing {
        let mut f = Flight::new(taken);
        loop {
            match self.step(&mut f, &breaker, &mut drain).await {
                Step::Continue => {}
                Step::Done => {
                    self.finish(f);
                    return Landing::Done;
                }
                Step::Failed(reason) => {
                    self.failed(&reason, true);
                    if f.delivered == 0 {
                        let back = f.segments.into_iter().flat_map(|s| s.items).collect();
                        self.queue.finish(f.taken, f.items.0, f.items.1, back);
                        return Landing::Returned;
                    }
                    if drain.borrow().is_some() {
                        return Landing::Abandoned;
                    }
                    // Partly delivered: finish it here, behind the breaker (and any pause).
                    while self.status.state() == State::Paused {
                        tokio::select! {
                            _ = self.status.wait_resumed() => {}
                            _ = drain.changed() => return Landing::Abandoned,
                        }
                    }
                }
            }
        }
    }

    /// Encodes the next segment, or sends its next request.
    async fn step(&self, f: &mut Flight<T>, breaker: &Mutex<Breaker>, drain: &mut Drain) -> Step {
        let Some(segment) = f.segments.front_mut() else {
            return Step::Done;
        };
        let Some(requests) = segment.requests.as_mut() else {
            // Encoding may call plugins: on the export pool, off the async worker threads.
            let items = std::mem::take(&mut segment.items);
            let encode = self.encode.clone();
            let encoded = crate::pool::export()
                .run(move || {
                    let requests = encode(&items);
                    (items, requests)
                })
                .await;
            match encoded {
                Ok((items, Ok(requests))) => {
                    segment.items = items;
                    let requests = VecDeque::from(requests);
                    self.transport.batch(&requests);
                    segment.requests = Some(requests);
                }
                Ok((items, Err(reason))) => {
                    segment.items = items;
                    segment.refused = true;
                    f.unencoded = true;
                    f.refused = Some(format!("encoding failed: {reason}"));
                    f.segment_done();
                }
                Err(_) => {
                    segment.refused = true;
                    f.unencoded = true;
                    f.refused = Some("encoding failed: the encoder panicked".into());
                    f.segment_done();
                }
            }
            return Step::Continue;
        };
        let Some(request) = requests.front() else {
            f.segment_done();
            return Step::Continue;
        };
        match self.send(request, breaker, drain).await {
            Ok(delivered) => {
                self.status.request_sent(request.len());
                requests.pop_front();
                segment.delivered += 1;
                f.delivered += 1;
                f.rejected += delivered.rejected;
                if delivered.message.is_some() {
                    f.message = delivered.message;
                }
            }
            Err(SendError::TooLarge(reason)) => {
                let halves = (segment.delivered == 0)
                    .then(|| self.halves(&segment.items))
                    .flatten();
                match halves {
                    Some((a, b)) => {
                        tracing::info!(integration = %self.integration, signal = self.signal.as_str(),
                            "{reason}: the backend found a request too large; sending its data in two halves");
                        f.segments.pop_front();
                        f.segments.push_front(Segment::new(b));
                        f.segments.push_front(Segment::new(a));
                    }
                    None => {
                        requests.pop_front();
                        segment.refused = true;
                        f.refused = Some(format!(
                            "{reason}: the request is too large and cannot be split further"
                        ));
                    }
                }
            }
            Err(SendError::Rejected(reason)) => {
                requests.pop_front();
                segment.refused = true;
                f.refused = Some(reason);
            }
            Err(e @ SendError::Retryable { .. }) => return Step::Failed(e.to_string()),
        }
        if f.segments
            .front()
            .is_some_and(|s| s.requests.as_ref().is_some_and(VecDeque::is_empty))
        {
            f.segment_done();
        }
        if f.segments.is_empty() {
            Step::Done
        } else {
            Step::Continue
        }
    }

    /// The items of a segment in two halves: the list halved, or its one item split.
    fn halves(&self, items: &[T]) -> Option<(Vec<T>, Vec<T>)> {
        match items {
            [] => None,
            [one] => (self.split)(one).map(|(a, b)| (vec![a], vec![b])),
            many => {
                let (a, b) = many.split_at(many.len() / 2);
                Some((a.to_vec(), b.to_vec()))
            }
        }
    }

    /// Ends a batch whose every request was delivered or refused.
    fn finish(&self, f: Flight<T>) {
        self.queue.finish(f.taken, f.items.0, f.items.1, Vec::new());
        match f.refused {
            Some(reason) => {
                tracing::warn!(integration = %self.integration, signal = self.signal.as_str(),
                    "export refused: {}", crate::redact::clean(&reason, 1024));
                self.failed(&reason, !f.unencoded);
            }
            None => {
                if f.rejected > 0 {
                    let message = f.message.as_deref().unwrap_or("no reason given");
                    tracing::warn!(integration = %self.integration, signal = self.signal.as_str(),
                        "partial success: {} ({} items rejected)",
                        crate::redact::clean(message, 1024), f.rejected);
                }
                let acknowledged = self.transport.acknowledged();
                let state = self.status.delivered(acknowledged, f.rejected, f.message);
                self.telemetry
                    .export_batch(&self.integration, self.signal, true);
                self.telemetry
                    .export_state(&self.integration, self.signal, state.telemetry());
            }
        }
    }

    /// Counts a failed export; one the backend had a part in (`pauses`) counts towards pausing.
    fn failed(&self, error: &str, pauses: bool) {
        let state = self.status.failed(error, pauses);
        self.telemetry
            .export_batch(&self.integration, self.signal, false);
        self.telemetry
            .export_state(&self.integration, self.signal, state.telemetry());
        if state == State::Paused {
            tracing::warn!(integration = %self.integration, signal = self.signal.as_str(),
                endpoint = %self.transport.endpoint(),
                "export paused after {} failed exports in a row; resume it to send again",
                status::PAUSE_AFTER);
        }
    }

    /// Logs a change of the link to the backend: the first request that fails to get through,
    /// with why, and the first that gets through again.
    fn note(&self, outcome: &Result<Delivered, SendError>) {
        match outcome {
            Ok(_) if self.failing.swap(false, Ordering::Relaxed) => {
                tracing::info!(integration = %self.integration, signal = self.signal.as_str(),
                    endpoint = %self.transport.endpoint(), "export is delivering again");
            }
            Err(SendError::Retryable { reason, .. })
                if !self.failing.swap(true, Ordering::Relaxed) =>
            {
                tracing::warn!(integration = %self.integration, signal = self.signal.as_str(),
                    endpoint = %self.transport.endpoint(),
                    "export is failing: {}; further failures are not logged until it delivers again",
                    crate::redact::clean(reason, 1024));
            }
            _ => {}
        }
    }

    /// Sends one request, waiting for the breaker and retrying retryable failures.
    async fn send(
        &self,
        request: &Request,
        breaker: &Mutex<Breaker>,
        drain: &mut Drain,
    ) -> Result<Delivered, SendError> {
        let breaker = |f: &mut dyn FnMut(&mut Breaker) -> Duration| {
            f(&mut breaker.lock().unwrap_or_else(PoisonError::into_inner))
        };
        let mut retry = 0;
        loop {
            loop {
                let wait = breaker(&mut |b| b.wait(Instant::now()));
                if wait.is_zero() {
                    break;
                }
                if !sleep(wait, drain).await {
                    return Err(SendError::retryable(
                        "the backend is down and the host is shutting down",
                    ));
                }
            }
            let outcome = self.transport.send(request).await;
            self.note(&outcome);
            let error = match outcome {
                Ok(delivered) => {
                    breaker(&mut |b| {
                        b.success();
                        Duration::ZERO
                    });
                    return Ok(delivered);
                }
                Err(SendError::Retryable { reason, after }) => {
                    SendError::Retryable { reason, after }
                }
                Err(refused) => {
                    breaker(&mut |b| {
                        b.success();
                        Duration::ZERO
                    });
                    return Err(refused);
                }
            };
            breaker(&mut |b| {
                b.failure(Instant::now());
                Duration::ZERO
            });
            if retry >= self.policy.max_retries {
                return Err(error);
            }
            let SendError::Retryable { reason, after } = &error else {
                return Err(error);
            };
            let state = self.status.retrying(reason);
            self.telemetry
                .export_retry(&self.integration, self.signal, state.telemetry());
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
