//! Delivery: the task that drains an export queue into a client, retrying with backoff.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;
use tokio::time::Instant;

use super::otlp::client::{OtlpClient, SendError};
use super::queue::DropOldestQueue;
use crate::telemetry::{SelfTelemetry, Signal};

/// The first retry delay; it doubles per failure up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// The longest retry delay.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The drain signal: `Some(deadline)` once the host is shutting down.
pub type Drain = watch::Receiver<Option<Instant>>;

/// One queue feeding one client.
pub struct Delivery<T> {
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
}

impl<T: Send + 'static> Delivery<T> {
    /// Sends batches until drained: after the drain signal, it empties the queue and returns.
    ///
    /// A retryable failure keeps the batch and retries with exponential
    /// backoff; while it waits, new data queues up (oldest dropped when
    /// full). A rejected batch is counted as failed and dropped.
    pub async fn run(self, mut drain: Drain) {
        loop {
            let items = self.queue.take(self.batch);
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
                self.telemetry.export_batch("otlp", self.signal, false);
                continue;
            };
            let ok = self.send_with_retries(body, &mut drain).await;
            self.telemetry.export_batch("otlp", self.signal, ok);
        }
    }

    async fn send_with_retries(&self, body: Bytes, drain: &mut Drain) -> bool {
        let mut backoff = FIRST_BACKOFF;
        loop {
            match self.client.send(body.clone()).await {
                Ok(()) => return true,
                Err(SendError::Rejected(_)) => return false,
                Err(SendError::Retryable(_)) => {
                    let deadline = *drain.borrow();
                    if deadline.is_some_and(|d| Instant::now() + backoff > d) {
                        return false;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = drain.changed() => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}
