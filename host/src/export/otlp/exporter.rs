//! The OTLP exporter: periodic metric collection, event forwarding as logs, and their delivery.

use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use prost::Message;
use tokio::task::JoinHandle;

use super::client::{HeaderError, OtlpClient};
use super::{logs, metrics};
use crate::clock::unix_nanos;
use crate::config::OtlpConfig;
use crate::event::Event;
use crate::export::delivery::{Delivery, Drain};
use crate::export::queue::DropOldestQueue;
use crate::metrics::{DeltaTracker, Registry, TemporalityPreference};
use crate::pipeline::EventSink;
use crate::plugins::{Transforms, convert};
use crate::resource::Resource;
use crate::telemetry::{SelfTelemetry, Signal};

struct Channel<T> {
    queue: Arc<DropOldestQueue<T>>,
    client: Arc<OtlpClient>,
}

impl<T> Channel<T> {
    /// A queue and client for `url`, or `None` when the signal has no endpoint.
    fn open(
        config: &OtlpConfig,
        url: Option<String>,
        signal: &'static str,
        capacity: usize,
    ) -> Result<Option<Self>, HeaderError> {
        let Some(url) = url else { return Ok(None) };
        Ok(Some(Self {
            queue: Arc::new(DropOldestQueue::new(capacity)),
            client: Arc::new(OtlpClient::new(
                url,
                signal,
                &config.headers,
                config.timeout(),
            )?),
        }))
    }
}

/// Pushes metrics every interval and every raw event as a log record to an OTLP/HTTP endpoint.
pub struct OtlpExporter {
    registry: Arc<Registry>,
    resource: Resource,
    telemetry: SelfTelemetry,
    transforms: Transforms,
    interval: std::time::Duration,
    logs_batch: usize,
    metrics: Option<Channel<Bytes>>,
    logs: Option<Channel<LogRecord>>,
    delta: Mutex<Option<DeltaTracker>>,
}

impl OtlpExporter {
    /// Builds the exporter, or `None` when no OTLP endpoint is configured.
    pub fn new(
        config: &OtlpConfig,
        registry: Arc<Registry>,
        resource: Resource,
        telemetry: SelfTelemetry,
        transforms: Transforms,
    ) -> Result<Option<Self>, HeaderError> {
        let metrics = Channel::open(
            config,
            config.metrics_url(),
            "metrics",
            config.metrics_queue,
        )?;
        let logs = Channel::open(config, config.logs_url(), "logs", config.logs_queue)?;
        if metrics.is_none() && logs.is_none() {
            return Ok(None);
        }
        Ok(Some(Self {
            registry,
            resource,
            telemetry,
            transforms,
            interval: config.interval(),
            logs_batch: config.logs_batch.max(1),
            metrics,
            logs,
            delta: Mutex::new(
                config
                    .temporality_preference
                    .filter(|p| *p != TemporalityPreference::Cumulative)
                    .map(DeltaTracker::new),
            ),
        }))
    }

    /// Collects the current metric state into one batch and queues it for delivery.
    pub async fn collect(self: &Arc<Self>) {
        // Transforms are plugin calls, which must not run on async worker threads.
        let me = self.clone();
        let _ = tokio::task::spawn_blocking(move || me.collect_blocking()).await;
    }

    fn collect_blocking(&self) {
        let Some(ch) = &self.metrics else { return };
        let mut delta = self.delta.lock().unwrap_or_else(PoisonError::into_inner);
        let body = if self.transforms.is_empty() {
            metrics::encode(&self.registry, &self.resource, delta.as_mut())
        } else {
            let batch = convert::metric_batch(&self.registry, &self.resource, delta.as_mut());
            match self.transforms.metrics(batch) {
                Some(batch) => convert::otlp::metric_request(&batch).encode_to_vec(),
                None => return,
            }
        };
        let dropped = ch.queue.push([Bytes::from(body)]);
        if dropped > 0 {
            self.telemetry.export_dropped(Signal::Metrics, dropped);
        }
    }

    /// Starts the collection ticker and the delivery tasks; they finish once drained.
    pub fn spawn(self: &Arc<Self>, drain: Drain) -> Vec<JoinHandle<()>> {
        let mut tasks = Vec::new();
        if let Some(ch) = &self.metrics {
            let me = self.clone();
            let mut stop = drain.clone();
            tasks.push(tokio::spawn(async move {
                let start = tokio::time::Instant::now() + me.interval;
                let mut ticker = tokio::time::interval_at(start, me.interval);
                loop {
                    tokio::select! {
                        _ = ticker.tick() => me.collect().await,
                        _ = stop.changed() => return,
                    }
                }
            }));
            tasks.push(tokio::spawn(
                Delivery {
                    queue: ch.queue.clone(),
                    client: ch.client.clone(),
                    batch: 1,
                    encode: Arc::new(|mut bodies: Vec<Bytes>| bodies.pop().unwrap_or_default()),
                    telemetry: self.telemetry.clone(),
                    signal: Signal::Metrics,
                }
                .run(drain.clone()),
            ));
        }
        if let Some(ch) = &self.logs {
            let (resource, transforms) = (self.resource.clone(), self.transforms.clone());
            tasks.push(tokio::spawn(
                Delivery {
                    queue: ch.queue.clone(),
                    client: ch.client.clone(),
                    batch: self.logs_batch,
                    encode: Arc::new(move |records| {
                        let records = transformed(&transforms, records, &resource);
                        Bytes::from(logs::request(records, &resource).encode_to_vec())
                    }),
                    telemetry: self.telemetry.clone(),
                    signal: Signal::Logs,
                }
                .run(drain),
            ));
        }
        tasks
    }
}

/// Log records after the transforms; all of them dropped if a fail-closed transform failed.
fn transformed(
    transforms: &Transforms,
    records: Vec<LogRecord>,
    resource: &Resource,
) -> Vec<LogRecord> {
    if transforms.is_empty() {
        return records;
    }
    let batch = convert::otlp::log_batch(&records, convert::resource(resource), logs::EVENTS_SCOPE);
    transforms
        .logs(batch)
        .map(|b| convert::otlp::log_records(&b))
        .unwrap_or_default()
}

impl EventSink for OtlpExporter {
    fn accept(&self, events: &[Event<'_>]) {
        let Some(ch) = &self.logs else { return };
        let observed = unix_nanos();
        let dropped = ch
            .queue
            .push(events.iter().map(|e| logs::record(e, observed)));
        if dropped > 0 {
            self.telemetry.export_dropped(Signal::Logs, dropped);
        }
    }
}
