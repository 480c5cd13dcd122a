//! The OTLP exporter: periodic metric collection, event forwarding as logs, and their delivery.

use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use prost::Message;
use tokio::task::JoinHandle;

use super::client::{HeaderError, OtlpClient};
use super::logs::LogQueue;
use super::{logs, metrics};
use crate::config::OtlpConfig;
use crate::config::TemporalityPreference;
use crate::export::delivery::{Delivery, Drain, OTLP_EXPORTER, Report, RetryPolicy, Status};
use crate::export::probe::Diagnosis;
use crate::export::queue::DropOldestQueue;
use crate::metrics::{DeltaTrackers, Producer, Registries};
use crate::model::Signal;
use crate::model::event::Event;
use crate::model::log::{Entry, Origin};
use crate::pipeline::EventSink;
use crate::plugins::{Transforms, convert};
use crate::telemetry::SelfTelemetry;

/// A run of log records of one origin.
type Run = (Arc<Origin>, Vec<LogRecord>);

struct Channel<T> {
    queue: Arc<DropOldestQueue<T>>,
    client: Arc<OtlpClient>,
    status: Arc<Status>,
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
            status: Arc::default(),
        }))
    }
}

/// Pushes metrics every interval and every raw event as a log record to an OTLP/HTTP endpoint.
pub struct OtlpExporter {
    name: Arc<str>,
    registries: Arc<Registries>,
    telemetry: SelfTelemetry,
    transforms: Transforms,
    interval: std::time::Duration,
    logs_batch: usize,
    metrics: Option<Channel<Bytes>>,
    logs: Option<Channel<Entry>>,
    log_queue: Option<LogQueue>,
    policy: RetryPolicy,
    delta: Mutex<Option<DeltaTrackers>>,
}

impl OtlpExporter {
    /// Builds the exporter, or `None` when no OTLP endpoint is configured.
    pub fn new(
        config: &OtlpConfig,
        registries: Arc<Registries>,
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
        let log_queue = logs.as_ref().map(|ch| {
            LogQueue::new(
                ch.queue.clone(),
                &registries.own().resource,
                telemetry.clone(),
            )
        });
        Ok(Some(Self {
            name: Arc::from(OTLP_EXPORTER),
            log_queue,
            policy: RetryPolicy::from(&config.retry),
            registries,
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
                    .map(DeltaTrackers::new),
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
        let producers = self.registries.all();
        let pairs: Vec<_> = producers.iter().map(Producer::pair).collect();
        let body = if self.transforms.is_empty() {
            metrics::encode_all(&pairs, delta.as_mut())
        } else {
            let mut request = ExportMetricsServiceRequest::default();
            for (i, (res, registry)) in pairs.iter().enumerate() {
                let batch = convert::metric_batch(registry, res, delta.as_mut().map(|d| d.get(i)));
                if i > 0 && batch.scopes.is_empty() {
                    continue;
                }
                if let Some(batch) = self.transforms.metrics(batch) {
                    let encoded = convert::otlp::metric_request(&batch);
                    request.resource_metrics.extend(encoded.resource_metrics);
                }
            }
            if request.resource_metrics.is_empty() {
                return;
            }
            request.encode_to_vec()
        };
        let dropped = ch.queue.push([Bytes::from(body)]);
        if dropped > 0 {
            self.telemetry.export_dropped(Signal::Metrics, dropped);
        }
    }

    /// The same exporter, reporting under `name` (a stored integration's id) instead of `otlp`.
    pub fn named(mut self, name: &str) -> Self {
        self.name = Arc::from(name);
        self
    }

    /// The delivery report of each signal this exporter sends.
    pub fn reports(&self) -> Vec<Report> {
        let report = |signal: Signal, queued: usize, dropped: u64, status: &Status| Report {
            exporter: self.name.to_string(),
            signal: signal.as_str(),
            status: status.snapshot(),
            queued,
            dropped,
        };
        let metrics = self
            .metrics
            .as_ref()
            .map(|c| report(Signal::Metrics, c.queue.len(), c.queue.dropped(), &c.status));
        let logs = self
            .logs
            .as_ref()
            .map(|c| report(Signal::Logs, c.queue.len(), c.queue.dropped(), &c.status));
        metrics.into_iter().chain(logs).collect()
    }

    /// Tests the connection of each signal's endpoint, waiting at most `timeout` for each.
    pub async fn test(&self, timeout: std::time::Duration) -> Vec<(Signal, Diagnosis)> {
        let mut out = Vec::new();
        for (signal, client) in [
            (Signal::Metrics, self.metrics.as_ref().map(|c| &c.client)),
            (Signal::Logs, self.logs.as_ref().map(|c| &c.client)),
        ] {
            if let Some(client) = client {
                out.push((signal, client.probe(timeout).await));
            }
        }
        out
    }

    /// Resumes every paused signal; returns whether any was paused.
    pub fn resume(&self) -> bool {
        let metrics = self.metrics.as_ref().is_some_and(|c| c.status.resume());
        let logs = self.logs.as_ref().is_some_and(|c| c.status.resume());
        metrics || logs
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
                    exporter: self.name.clone(),
                    queue: ch.queue.clone(),
                    client: ch.client.clone(),
                    batch: 1,
                    encode: Arc::new(|mut bodies: Vec<Bytes>| bodies.pop().unwrap_or_default()),
                    telemetry: self.telemetry.clone(),
                    signal: Signal::Metrics,
                    status: ch.status.clone(),
                    policy: self.policy,
                }
                .run(drain.clone()),
            ));
        }
        if let Some(ch) = &self.logs {
            let transforms = self.transforms.clone();
            tasks.push(tokio::spawn(
                Delivery {
                    exporter: self.name.clone(),
                    queue: ch.queue.clone(),
                    client: ch.client.clone(),
                    batch: self.logs_batch,
                    encode: Arc::new(move |entries| {
                        let runs = transformed(&transforms, crate::model::log::runs(entries));
                        Bytes::from(logs::request(runs).encode_to_vec())
                    }),
                    telemetry: self.telemetry.clone(),
                    signal: Signal::Logs,
                    status: ch.status.clone(),
                    policy: self.policy,
                }
                .run(drain),
            ));
        }
        tasks
    }
}

/// Runs of log records after the transforms; a run is dropped if a fail-closed transform failed on it.
fn transformed(transforms: &Transforms, runs: Vec<Run>) -> Vec<Run> {
    if transforms.is_empty() {
        return runs;
    }
    runs.into_iter()
        .filter_map(|(origin, records)| {
            let batch = convert::otlp::log_batch(&records, &origin);
            let records = convert::otlp::log_records(&transforms.logs(batch)?);
            Some((origin, records))
        })
        .filter(|(_, records)| !records.is_empty())
        .collect()
}

impl EventSink for OtlpExporter {
    fn accept(&self, events: &[Event<'_>]) {
        if let Some(q) = &self.log_queue {
            q.push_events(events);
        }
    }

    fn accept_logs(&self, entries: &[Entry]) {
        if let Some(q) = &self.log_queue {
            q.push_entries(entries);
        }
    }
}
