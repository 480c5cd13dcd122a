//! The exporter: one integration running — native OTLP or an exporter plugin, from the config
//! file or the store alike — built from its [`ExporterSpec`] by [`Exporter::build`], delivering
//! each signal through the one delivery engine.

use std::borrow::Cow;
use std::net::ToSocketAddrs as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use tokio::task::JoinHandle;

use super::delivery::journal::Replayed;
use super::delivery::queue::{Durable, OnFull, Queue, Weight};
use super::delivery::{
    Delivery, DiskQueue, Drain, Encode, EncodeError, Report, Settings, Split, State, Status,
};
use super::otlp;
use super::plugin::{PluginSlot, collect_transformed, split_batches};
use super::probe::Diagnosis;
use super::selection::Selection;
use super::spec::{BuildError, ExporterSpec, Target};
use super::transport::otlp_grpc::OtlpGrpc;
use super::transport::otlp_http::{OtlpHttp, header_map};
use super::transport::plugin_http::PluginHttp;
use super::transport::udp::{Pacer, Udp};
use super::transport::{Request, Transport};
use crate::clock::unix_nanos;
use crate::config::{OnFailure, QueueKind};
use crate::metrics::{DeltaTrackers, Registries};
use crate::model::Signal;
use crate::model::record::{Origin, Record, same_origin};
use crate::model::select::Select;
use crate::pipeline::{RecordSink, SinkError};
use crate::plugins::convert::Collected;
use crate::plugins::{Encoder, Link, PluginSet, Reloadable, Slot, Transformer, Transforms};
use crate::telemetry::SelfTelemetry;
use crate::tenancy::Tenancy;

/// One collection of metrics, as queued for delivery.
#[derive(Debug, Clone)]
pub enum MetricItem {
    /// Already an encoded OTLP request (the native exporter without transforms).
    Encoded(Bytes),
    /// Metric batches in the plugin contract's types, one per producer, after the transforms.
    Batches(Vec<Collected>),
}

impl Weight for Record {
    /// The encoded record's bytes.
    fn bytes(&self) -> usize {
        self.bytes.len()
    }

    /// The tenant whose token sent it.
    fn tenant(&self) -> Option<&Arc<str>> {
        self.origin.tenant.as_ref()
    }
}

impl Durable for Record {
    /// Each record as `[u8: 1 if a new origin follows][origin: resource and scope, each as
    /// u32 LE length + bytes][u32 LE length + record bytes]`: an origin shared by the records
    /// after it is written once.
    fn write(items: &[Self], out: &mut Vec<u8>) {
        let put = |out: &mut Vec<u8>, bytes: &[u8]| {
            out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            out.extend_from_slice(bytes);
        };
        let mut last: Option<&Arc<Origin>> = None;
        for record in items {
            let new = last.is_none_or(|o| !same_origin(o, &record.origin));
            out.push(u8::from(new));
            if new {
                put(out, &record.origin.resource);
                put(out, &record.origin.scope);
            }
            put(out, &record.bytes);
            last = Some(&record.origin);
        }
    }

    fn read(entry: Bytes) -> Option<Vec<Self>> {
        let mut rest = entry;
        let mut take = |n: usize| (n <= rest.len()).then(|| rest.split_to(n));
        let mut records = Vec::new();
        let mut origin: Option<Arc<Origin>> = None;
        while let Some(flag) = take(1) {
            let mut sized = || {
                let len = take(4)?;
                take(u32::from_le_bytes(len.as_ref().try_into().ok()?) as usize)
            };
            if flag[0] == 1 {
                let (resource, scope) = (sized()?, sized()?);
                origin = Some(Arc::new(Origin::from_bytes(resource, scope)));
            }
            records.push(Record {
                origin: origin.clone()?,
                bytes: sized()?,
            });
        }
        Some(records)
    }
}

impl Weight for MetricItem {
    /// Collections are counted, not weighed: `metrics_queue` bounds them.
    fn bytes(&self) -> usize {
        0
    }
}

/// What building an exporter takes from the host.
#[derive(Debug, Clone)]
pub struct BuildContext {
    /// What metrics exporters read.
    pub registries: Arc<Registries>,
    /// Self-telemetry.
    pub telemetry: SelfTelemetry,
    /// The transform chain every exporter applies.
    pub transforms: Transforms,
    /// Where exporter plugins come from, and how a plugin that cannot be loaded is treated.
    pub plugins: Arc<PluginSet>,
    /// What a full log queue does: refuse more (intake answers 503) or drop its oldest.
    pub on_full: OnFull,
    /// Where disk queues live (under `queue/`).
    pub data_dir: std::path::PathBuf,
    /// Each tenant's share of a queue.
    pub tenancy: Arc<Tenancy>,
}

/// Who encodes: the native OTLP encoder (with its temporality state, gzipping bodies or not)
/// or a plugin.
enum Format {
    Otlp {
        delta: Mutex<Option<DeltaTrackers>>,
        metrics: otlp::Wire,
        logs: otlp::Wire,
        traces: otlp::Wire,
    },
    Plugin(Arc<PluginSlot>),
}

/// One signal's queue, status and transport.
struct Channel<T> {
    signal: Signal,
    queue: Arc<Queue<T>>,
    status: Arc<Status>,
    transport: Arc<dyn Transport>,
    /// What a disk queue read back at start.
    replayed: Option<Replayed>,
}

impl<T: Weight> Channel<T> {
    fn new(signal: Signal, queue: Queue<T>, transport: Arc<dyn Transport>) -> Self {
        Self {
            signal,
            queue: Arc::new(queue),
            status: Arc::default(),
            transport,
            replayed: None,
        }
    }
}

/// An integration's queue of log records or spans: in memory, or journaled under
/// `<data_dir>/queue/<integration id>/<signal>` and started with what the journal held.
fn records_queue(
    spec: &ExporterSpec,
    signal: Signal,
    settings: &Settings,
    ctx: &BuildContext,
) -> Result<(Queue<Record>, Option<Replayed>), BuildError> {
    let records = settings.records(signal);
    let (items, bytes) = (records.queue, records.queue_bytes);
    if settings.queue == QueueKind::Memory {
        return Ok((Queue::new(items, bytes, ctx.on_full), None));
    }
    let id: String = spec
        .id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let dir = ctx.data_dir.join("queue").join(id).join(signal.as_str());
    let disk = (settings.fsync, settings.max_disk_bytes);
    let (queue, replayed) =
        Queue::durable((items, bytes), ctx.on_full, &dir, disk).map_err(|source| {
            BuildError::DiskQueue {
                dir: dir.clone(),
                source,
            }
        })?;
    if replayed.items > 0 || replayed.skipped_bytes > 0 {
        tracing::info!(
            integration = %spec.name,
            "disk queue: {} {} records read back, {} bytes of torn or corrupt entries skipped",
            replayed.items,
            signal.as_str(),
            replayed.skipped_bytes
        );
    }
    Ok((queue, Some(replayed)))
}

/// How the API shows an integration's running parts: never a credential value.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Description {
    /// Each signal's endpoint.
    pub endpoints: Vec<(&'static str, String)>,
    /// The names of the headers sent with its requests.
    pub headers_set: Vec<String>,
    /// Each signal's delivery report.
    pub signals: Vec<Report>,
}

/// One running integration.
pub struct Exporter {
    id: String,
    name: Arc<str>,
    kind: String,
    preset: Option<String>,
    headers_set: Vec<String>,
    settings: Settings,
    format: Format,
    metrics: Option<Channel<MetricItem>>,
    /// A channel per record signal (logs, traces) that has somewhere to go.
    records: Vec<Channel<Record>>,
    registries: Arc<Registries>,
    telemetry: SelfTelemetry,
    transforms: Transforms,
    /// Its own transforms, which leave the plugin set when it stops.
    own_transforms: Vec<Arc<Slot<Transformer>>>,
    plugins: Arc<PluginSet>,
    tenancy: Arc<Tenancy>,
    tenant: Option<Arc<str>>,
    selection: Selection,
    next_collection: AtomicU64,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporter")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl Exporter {
    /// Builds the integration `spec` describes: loads (and compiles: a blocking call) its
    /// plugin, opens a transport per signal, and checks that every signal the plugin exports
    /// has somewhere to go. Nothing runs until [`Exporter::spawn`].
    pub fn build(spec: &ExporterSpec, ctx: &BuildContext) -> Result<Arc<Self>, BuildError> {
        let settings = spec.delivery;
        let credentials = header_map(&spec.headers)?;
        spec.headers
            .values()
            .for_each(|v| crate::redact::register(v));
        let format = match &spec.target {
            Target::Otlp {
                temporality,
                compression,
                metrics_protocol,
                logs_protocol,
                traces_protocol,
            } => {
                let gzip = *compression == crate::config::Compression::Gzip;
                Format::Otlp {
                    delta: Mutex::new(
                        (*temporality != crate::model::metric::TemporalityPreference::Cumulative)
                            .then(|| DeltaTrackers::new(*temporality)),
                    ),
                    metrics: otlp::Wire {
                        signal: Signal::Metrics,
                        protocol: *metrics_protocol,
                        gzip,
                    },
                    logs: otlp::Wire {
                        signal: Signal::Logs,
                        protocol: *logs_protocol,
                        gzip,
                    },
                    traces: otlp::Wire {
                        signal: Signal::Traces,
                        protocol: *traces_protocol,
                        gzip,
                    },
                }
            }
            Target::Plugin { plugin, settings } => {
                let slot = ctx
                    .plugins
                    .open::<Encoder>(plugin, settings, Some(&spec.name), spec.tenant.as_deref())
                    .map_err(BuildError::Plugin)?;
                Format::Plugin(Arc::new(PluginSlot::new(slot, ctx.plugins.clone())))
            }
        };
        if let Format::Plugin(slot) = &format {
            for signal in Signal::ALL {
                let wanted = spec.only.is_none_or(|only| only == signal);
                if spec.only == Some(signal) && !slot.exports(signal) {
                    return Err(BuildError::NoSignal {
                        plugin: spec.kind().to_owned(),
                        signal: signal.as_str(),
                    });
                }
                if wanted && slot.exports(signal) && spec.endpoint(signal).is_none() {
                    return Err(BuildError::NoEndpoint(signal.as_str()));
                }
            }
        }
        let transport = |signal: Signal| -> Result<Option<Arc<dyn Transport>>, BuildError> {
            if spec.only.is_some_and(|only| only != signal) {
                return Ok(None);
            }
            let Some(endpoint) = spec.endpoint(signal) else {
                return Ok(None);
            };
            let made: Arc<dyn Transport> = match &format {
                Format::Otlp {
                    metrics,
                    logs,
                    traces,
                    ..
                } => {
                    let wire = match signal {
                        Signal::Metrics => *metrics,
                        Signal::Logs => *logs,
                        Signal::Traces => *traces,
                    };
                    match wire.protocol {
                        crate::config::Protocol::Grpc => Arc::new(OtlpGrpc::new(
                            endpoint,
                            wire,
                            &spec.headers,
                            settings.timeout,
                        )?),
                        _ => Arc::new(OtlpHttp::new(
                            endpoint.to_owned(),
                            &spec.headers,
                            settings.timeout,
                            wire,
                        )?),
                    }
                }
                Format::Plugin(slot) => {
                    plugin_transport(endpoint, &credentials, slot, &settings, signal)?
                }
            };
            Ok(Some(made))
        };
        let metrics = transport(Signal::Metrics)?.map(|t| {
            let queue = Queue::new(settings.metrics_queue, usize::MAX, OnFull::DropOldest);
            Channel::new(Signal::Metrics, queue, t)
        });
        let mut records = Vec::new();
        for signal in Signal::RECORDS {
            if let Some(t) = transport(signal)? {
                let (queue, replayed) = records_queue(spec, signal, &settings, ctx)?;
                let mut channel = Channel::new(signal, queue, t);
                channel.replayed = replayed;
                records.push(channel);
            }
        }
        if let Format::Plugin(slot) = &format
            && let Some(reason) = slot.failure()
        {
            let error = format!("the plugin failed to load: {reason}");
            let records = records.iter().map(|c| &c.status);
            for status in metrics
                .as_ref()
                .map(|c| &c.status)
                .into_iter()
                .chain(records)
            {
                status.failed(&error, true);
            }
        }
        let own_transforms = spec
            .transforms
            .iter()
            .map(|plugin| {
                ctx.plugins
                    .open::<Transformer>(
                        plugin,
                        &toml::Table::new(),
                        Some(&spec.name),
                        spec.tenant.as_deref(),
                    )
                    .map_err(BuildError::Plugin)
            })
            .collect::<Result<Vec<_>, _>>()?;
        // An integration's own transform guards its data only: when it fails, the batch is
        // dropped rather than sent unchanged.
        let transforms = ctx.transforms.then(
            own_transforms
                .iter()
                .map(|slot| Link::new(slot.clone(), OnFailure::Closed)),
        );
        Ok(Arc::new(Self {
            id: spec.id.clone(),
            name: Arc::from(spec.name.as_str()),
            kind: spec.kind().to_owned(),
            preset: spec.preset.clone(),
            headers_set: spec.headers.keys().cloned().collect(),
            settings,
            format,
            metrics,
            records,
            registries: ctx.registries.clone(),
            telemetry: ctx.telemetry.clone(),
            transforms,
            own_transforms,
            plugins: ctx.plugins.clone(),
            tenancy: ctx.tenancy.clone(),
            tenant: spec.tenant.as_deref().map(Arc::from),
            selection: Selection::new(spec.select.clone()),
            next_collection: AtomicU64::new(0),
            tasks: Mutex::default(),
        }))
    }

    /// The integration's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The integration's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `otlp`, or the plugin's name.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// What it receives.
    pub fn select(&self) -> &Select {
        self.selection.select()
    }

    /// The preset that filled in its endpoints or credential header.
    pub fn preset(&self) -> Option<&str> {
        self.preset.as_deref()
    }

    /// The plugin it runs, for hot reload; `None` for native OTLP.
    pub fn plugin(&self) -> Option<Arc<PluginSlot>> {
        match &self.format {
            Format::Plugin(slot) => Some(slot.clone()),
            Format::Otlp { .. } => None,
        }
    }

    /// Whether the exporter sends `signal` now (a plugin may stop exporting one on reload).
    fn sends(&self, signal: Signal) -> bool {
        match &self.format {
            Format::Otlp { .. } => true,
            Format::Plugin(slot) => slot.exports(signal),
        }
    }

    /// Whether `signal` is reported: sent now, or waiting for a plugin that failed to load.
    fn shown(&self, signal: Signal) -> bool {
        self.sends(signal) || self.plugin().is_some_and(|slot| slot.failure().is_some())
    }

    /// Starts the collection ticker and one delivery task per signal; they finish once drained.
    pub fn spawn(self: &Arc<Self>, drain: &Drain) {
        let mut tasks = Vec::new();
        if let Some(ch) = &self.metrics {
            let me = self.clone();
            let mut stop = drain.clone();
            let period = self.settings.interval;
            self.next_collection
                .store(unix_nanos() + period.as_nanos() as u64, Ordering::Relaxed);
            tasks.push(tokio::spawn(async move {
                let start = tokio::time::Instant::now() + period;
                let mut ticker = tokio::time::interval_at(start, period);
                loop {
                    tokio::select! {
                        _ = ticker.tick() => {
                            me.next_collection
                                .store(unix_nanos() + period.as_nanos() as u64, Ordering::Relaxed);
                            me.collect().await;
                        }
                        _ = stop.changed() => return,
                    }
                }
            }));
            let me = self.clone();
            let encode: Encode<MetricItem> = Arc::new(move |items| me.encode_metrics(items));
            let delivery = self.delivery(ch, encode, split_metrics, (1, usize::MAX, 1));
            tasks.push(tokio::spawn(Arc::new(delivery).run(drain.clone())));
        }
        for ch in &self.records {
            let (me, signal) = (self.clone(), ch.signal);
            let encode: Encode<Record> =
                Arc::new(move |records| me.encode_records(signal, records));
            let records = self.settings.records(signal);
            let limits = (
                records.batch,
                records.batch_bytes,
                self.settings.max_in_flight,
            );
            let delivery = self.delivery(ch, encode, |_| None, limits);
            tasks.push(tokio::spawn(Arc::new(delivery).run(drain.clone())));
        }
        self.tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(tasks);
    }

    /// The delivery of `ch`, with `(items, bytes)` per batch and `in_flight` batches at once.
    fn delivery<T>(
        &self,
        ch: &Channel<T>,
        encode: Encode<T>,
        split: Split<T>,
        (batch, batch_bytes, in_flight): (usize, usize, usize),
    ) -> Delivery<T> {
        Delivery {
            integration: self.name.clone(),
            signal: ch.signal,
            queue: ch.queue.clone(),
            transport: ch.transport.clone(),
            encode,
            split,
            batch,
            batch_bytes,
            in_flight,
            status: ch.status.clone(),
            policy: self.settings.retry,
            telemetry: self.telemetry.clone(),
            failing: AtomicBool::new(false),
        }
    }

    /// The tasks it runs, for shutdown to wait on.
    pub fn take_tasks(&self) -> Vec<JoinHandle<()>> {
        std::mem::take(&mut *self.tasks.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Stops its tasks (what it had queued is dropped) and takes its plugin out of the host's
    /// plugin set.
    pub fn stop(&self) {
        self.take_tasks().iter().for_each(JoinHandle::abort);
        if let Some(slot) = self.plugin() {
            slot.leave();
        }
        for slot in &self.own_transforms {
            let member: Arc<dyn Reloadable> = slot.clone();
            self.plugins.leave(&member);
        }
    }

    /// Collects the current metric state into one batch and queues it for delivery.
    pub async fn collect(self: &Arc<Self>) {
        // Transforms and plugins run on the export pool, off the async worker threads.
        let me = self.clone();
        let _ = crate::pool::export()
            .run(move || me.collect_blocking())
            .await;
    }

    fn collect_blocking(&self) {
        let Some(ch) = &self.metrics else { return };
        let select = self.selection.select();
        if !select.signal(Signal::Metrics) {
            return;
        }
        let producers = self.selection.producers(&self.registries);
        let keep = |name: &str| select.metric(name);
        let item = match &self.format {
            Format::Otlp { delta, metrics, .. } => {
                let mut delta = delta.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(delta) = delta.as_mut() {
                    let ids: Vec<u64> = producers.iter().map(|p| p.id).collect();
                    delta.keep_only(&ids);
                }
                let pairs: Vec<_> = producers
                    .iter()
                    .map(|p| (p.id, &p.resource, &*p.registry))
                    .collect();
                // No transform reads metrics (or none is configured), or those that do read
                // only named keys' attributes and change nothing: straight from the engine.
                let direct = match self.transforms.rewrite(Signal::Metrics) {
                    false => Some(otlp::metrics::encode_all(&pairs, delta.as_mut(), &keep)),
                    true if delta.is_none() => {
                        otlp::metrics::encode_unchanged(&pairs, &self.transforms, &keep)
                    }
                    true => None,
                };
                match direct {
                    // Nothing selected has points: there is nothing to send.
                    Some(request) => {
                        (!request.is_empty()).then(|| MetricItem::Encoded(metrics.body(request)))
                    }
                    None => {
                        collect_transformed(&producers, &self.transforms, delta.as_mut(), &keep)
                            .map(MetricItem::Batches)
                    }
                }
            }
            Format::Plugin(slot) => slot
                .collect(&producers, &self.transforms, &keep)
                .map(MetricItem::Batches),
        };
        if let Some(item) = item {
            // Metric queues are in memory: nothing to write, nothing to fail.
            let dropped = ch.queue.push(vec![item]).unwrap_or_default();
            if dropped > 0 {
                self.telemetry
                    .export_dropped(&self.name, Signal::Metrics, dropped);
            }
        }
    }

    fn encode_metrics(&self, items: &[MetricItem]) -> Result<Vec<Request>, EncodeError> {
        match &self.format {
            Format::Otlp { metrics, .. } => Ok(items
                .iter()
                .map(|item| match item {
                    MetricItem::Encoded(body) => Request::Body(body.clone()),
                    MetricItem::Batches(batches) => {
                        Request::Body(metrics.body(otlp::metrics::from_batches(batches)))
                    }
                })
                .collect()),
            Format::Plugin(slot) => {
                let mut out = Vec::new();
                for item in items {
                    match item {
                        MetricItem::Batches(batches) => out.extend(slot.encode_metrics(batches)?),
                        MetricItem::Encoded(_) => {
                            return Err(EncodeError::Misrouted);
                        }
                    }
                }
                Ok(out)
            }
        }
    }

    fn encode_records(
        &self,
        signal: Signal,
        records: &[Record],
    ) -> Result<Vec<Request>, EncodeError> {
        match (&self.format, signal) {
            (Format::Otlp { logs, traces, .. }, _) => {
                let wire = if signal == Signal::Traces {
                    traces
                } else {
                    logs
                };
                Ok(otlp::records::encode(signal, records, &self.transforms)
                    .map(|request| Request::Body(wire.body(request)))
                    .into_iter()
                    .collect())
            }
            (Format::Plugin(_), Signal::Metrics) => Err(EncodeError::Misrouted),
            (Format::Plugin(slot), _) => slot.encode_records(signal, records, &self.transforms),
        }
    }

    /// Its channel of log records or spans of `signal`.
    fn records(&self, signal: Signal) -> Option<&Channel<Record>> {
        self.records.iter().find(|c| c.signal == signal)
    }

    /// The delivery report of each signal it sends now.
    pub fn reports(&self) -> Vec<Report> {
        let next = self.next_collection.load(Ordering::Relaxed);
        let report = |signal: Signal, status: &Status, items, disk_queue| Report {
            id: self.id.clone(),
            integration: self.name.to_string(),
            signal: signal.as_str(),
            status: status.snapshot(),
            items,
            next_export_unix_nano: (signal == Signal::Metrics && next > 0).then_some(next),
            disk_queue,
        };
        let metrics = self
            .metrics
            .as_ref()
            .filter(|_| self.shown(Signal::Metrics))
            .map(|c| report(c.signal, &c.status, c.queue.counts(), None));
        let records = self
            .records
            .iter()
            .filter(|c| self.shown(c.signal))
            .map(|c| {
                let disk = c.replayed.map(|replayed| DiskQueue {
                    bytes: c.queue.disk_bytes(),
                    spilled: c.queue.spilled(),
                    replayed,
                });
                report(c.signal, &c.status, c.queue.counts(), disk)
            });
        metrics.into_iter().chain(records).collect()
    }

    /// Its endpoints, header names and reports, for the API.
    pub fn describe(&self) -> Description {
        let metrics = self
            .metrics
            .as_ref()
            .map(|c| (c.signal.as_str(), c.transport.endpoint()));
        let records = self
            .records
            .iter()
            .map(|c| (c.signal.as_str(), c.transport.endpoint()));
        Description {
            endpoints: metrics.into_iter().chain(records).collect(),
            headers_set: self.headers_set.clone(),
            signals: self.reports(),
        }
    }

    /// Tests the connection of each signal's endpoint, waiting at most `timeout` for each.
    pub async fn test(&self, timeout: Duration) -> Vec<(Signal, Diagnosis)> {
        let mut out = Vec::new();
        if let Some(c) = &self.metrics {
            out.push((c.signal, c.transport.probe(timeout).await));
        }
        for c in &self.records {
            out.push((c.signal, c.transport.probe(timeout).await));
        }
        out
    }

    /// Resumes every paused signal; returns whether any was paused.
    pub fn resume(&self) -> bool {
        let metrics = self.metrics.as_ref().is_some_and(|c| c.status.resume());
        // Every channel is resumed, not only up to the first that was paused.
        let records = self.records.iter().filter(|c| c.status.resume()).count() > 0;
        metrics || records
    }
}

/// The transport for a plugin's endpoint: UDP datagrams, or HTTP(S) requests on a base URL.
fn plugin_transport(
    endpoint: &str,
    credentials: &reqwest::header::HeaderMap,
    slot: &Arc<PluginSlot>,
    settings: &Settings,
    signal: Signal,
) -> Result<Arc<dyn Transport>, BuildError> {
    let bad = |reason: String| BuildError::Endpoint {
        endpoint: endpoint.to_owned(),
        reason,
    };
    if let Some(addr) = endpoint.strip_prefix("udp://") {
        let resolved = addr
            .to_socket_addrs()
            .map_err(|e| bad(e.to_string()))?
            .next()
            .ok_or_else(|| bad("no address".into()))?;
        // A collection's datagrams are spread over part of the interval; log records go as
        // they come, at the pace.
        let window =
            (signal == Signal::Metrics).then(|| settings.interval.mul_f64(settings.udp_spread));
        let pacer = Pacer::new(
            settings.udp_bytes_per_second,
            settings.udp_burst_bytes,
            window,
        );
        return Ok(Arc::new(Udp::new(resolved, pacer)));
    }
    let url = reqwest::Url::parse(endpoint).map_err(|e| bad(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(bad("use udp://host:port or an http(s):// URL".into()));
    }
    Ok(Arc::new(PluginHttp::new(
        url,
        credentials.clone(),
        slot.clone(),
        settings.timeout,
    )?))
}

/// Splits a queued metric collection whose request was too large.
fn split_metrics(item: &MetricItem) -> Option<(MetricItem, MetricItem)> {
    match item {
        MetricItem::Encoded(body) => otlp::metrics::split_request(body)
            .map(|(a, b)| (MetricItem::Encoded(a), MetricItem::Encoded(b))),
        MetricItem::Batches(batches) => {
            split_batches(batches).map(|(a, b)| (MetricItem::Batches(a), MetricItem::Batches(b)))
        }
    }
}

impl Exporter {
    /// The records of `records` it selects, by the resource of their origin: borrowed when it
    /// takes them all, as it does without a resource selection.
    fn selected<'r>(&self, records: &'r [Record]) -> Cow<'r, [Record]> {
        let select = self.selection.select();
        if select.resource.is_empty() {
            return Cow::Borrowed(records);
        }
        // Mostly one request's records, of one origin: one match for them all.
        if let Some(first) = records.first()
            && records
                .iter()
                .all(|r| Arc::ptr_eq(&r.origin, &first.origin))
        {
            return match select.resource(&first.origin.attributes) {
                true => Cow::Borrowed(records),
                false => Cow::Borrowed(&[]),
            };
        }
        let mut last: Option<(&Arc<Origin>, bool)> = None;
        let kept: Vec<bool> = records
            .iter()
            .map(|record| match last {
                Some((origin, keep)) if Arc::ptr_eq(origin, &record.origin) => keep,
                _ => {
                    let keep = select.resource(&record.origin.attributes);
                    last = Some((&record.origin, keep));
                    keep
                }
            })
            .collect();
        if kept.iter().all(|k| *k) {
            return Cow::Borrowed(records);
        }
        let taken = records.iter().zip(&kept).filter(|(_, k)| **k);
        Cow::Owned(taken.map(|(r, _)| r.clone()).collect())
    }
}

impl RecordSink for Exporter {
    fn wants(&self, signal: Signal) -> bool {
        self.records(signal).is_some() && self.sends(signal) && self.select().signal(signal)
    }

    /// No room when its log queue refuses when full and is full, unless the signal is paused
    /// (waiting for someone to resume it, it must not stop intake).
    fn room(&self, signal: Signal, records: &[Record]) -> Result<(), SinkError> {
        let Some(ch) = self.records(signal).filter(|_| self.wants(signal)) else {
            return Ok(());
        };
        let records = self.selected(records);
        // A tenant fills at most its share of the queue, however the queue treats the rest.
        let mut counted: Vec<(&Arc<str>, usize)> = Vec::new();
        for tenant in records.iter().filter_map(|r| r.origin.tenant.as_ref()) {
            match counted.iter_mut().find(|(t, _)| *t == tenant) {
                Some((_, n)) => *n += 1,
                None => counted.push((tenant, 1)),
            }
        }
        for (tenant, n) in counted {
            if let Some(share) = self.tenancy.limits(tenant).queue_share
                && !ch.queue.within_share(tenant, n, share)
            {
                self.tenancy.count_refused(tenant, "queue_share", n);
                return Err(SinkError::Share {
                    tenant: tenant.clone(),
                    integration: self.name.to_string(),
                    signal: signal.as_str(),
                });
            }
        }
        if ch.queue.on_full() == OnFull::DropOldest || ch.status.state() == State::Paused {
            return Ok(());
        }
        let bytes = records.iter().map(|r| r.bytes.len()).sum();
        if records.is_empty() || ch.queue.room(records.len(), bytes) {
            return Ok(());
        }
        Err(SinkError::Full {
            integration: self.name.to_string(),
            signal: signal.as_str(),
        })
    }

    fn tenant(&self) -> Option<Arc<str>> {
        self.tenant.clone()
    }

    fn accept(&self, signal: Signal, records: &[Record]) -> Result<(), SinkError> {
        let Some(ch) = self.records(signal).filter(|_| self.wants(signal)) else {
            return Ok(());
        };
        let records = self.selected(records);
        if records.is_empty() {
            return Ok(());
        }
        // A paused signal does not hold intake back: its queue makes room by dropping.
        let pushed = if ch.status.state() == State::Paused {
            ch.queue.push_dropping_oldest(records.into_owned())
        } else {
            ch.queue.push(records.into_owned())
        };
        let dropped = pushed.map_err(|e| SinkError::Unqueued {
            integration: self.name.to_string(),
            error: Box::new(e),
        })?;
        if dropped > 0 {
            self.telemetry.export_dropped(&self.name, signal, dropped);
        }
        Ok(())
    }
}
