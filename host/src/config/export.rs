//! `[delivery]`, `[otlp]` and `[[exporters]]`: where telemetry goes, and how it is delivered.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{duration, show_duration};
use crate::model::metric::TemporalityPreference;
use crate::model::select::Select;

/// Retries per request before its export counts as failed, by default.
pub const DEFAULT_MAX_RETRIES: u32 = 3;

/// How an integration delivers: `[delivery]` holds the defaults of every integration, and an
/// integration's own `delivery` table (or a stored integration's `delivery` object) overrides
/// any of them.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// How often metrics are collected and exported (`OTEL_METRIC_EXPORT_INTERVAL`, default 60 s).
    #[serde(deserialize_with = "duration", serialize_with = "show_duration")]
    pub interval: Option<Duration>,
    /// How long one request may take (default 10 s; `OTEL_EXPORTER_OTLP_TIMEOUT` for `[otlp]`).
    #[serde(deserialize_with = "duration", serialize_with = "show_duration")]
    pub timeout: Option<Duration>,
    /// Metric batches (collections) held while the backend is slow or down (default 32).
    pub metrics_queue: Option<usize>,
    /// Log records held while the backend is slow or down (default 65536).
    pub logs_queue: Option<usize>,
    /// Bytes of encoded log records held (default 64 MiB).
    pub logs_queue_bytes: Option<usize>,
    /// Most log records per export (default 8192, the Collector's batch size).
    pub logs_batch: Option<usize>,
    /// Most bytes of encoded log records per export (default 4 MiB).
    pub logs_batch_bytes: Option<usize>,
    /// Spans held while the backend is slow or down (default 65536).
    pub traces_queue: Option<usize>,
    /// Bytes of encoded spans held (default 64 MiB).
    pub traces_queue_bytes: Option<usize>,
    /// Most spans per export (default 8192, the Collector's batch size).
    pub traces_batch: Option<usize>,
    /// Most bytes of encoded spans per export (default 4 MiB).
    pub traces_batch_bytes: Option<usize>,
    /// Log and span exports in flight at once, each (default 4; metrics go one at a time, in
    /// order).
    pub max_in_flight: Option<usize>,
    /// The pace of UDP datagrams, in bytes per second (default 4 MiB/s).
    pub udp_bytes_per_second: Option<u64>,
    /// Bytes of UDP datagrams sent at once before the pace applies (default 4 KiB).
    pub udp_burst_bytes: Option<u64>,
    /// The fraction (0 to 1] of the interval over which a collection's UDP datagrams are
    /// spread (default 0.5), so a receiver that reads slowly keeps up.
    #[serde(deserialize_with = "super::fraction")]
    pub udp_spread: Option<f64>,
    /// Where queued log records and spans are held: `memory` (default) or `disk`, a journal under
    /// `data_dir` that survives a crash.
    pub queue: Option<QueueKind>,
    /// When a disk queue syncs what it wrote: `always` (default: before the data is
    /// acknowledged), `never` (the kernel decides; safe against a crash of the process, not
    /// of the machine), or a period such as `"1s"`.
    pub fsync: Option<Fsync>,
    /// The most bytes a disk queue's journal takes (default 1 GiB): records past what memory
    /// holds wait there; past it the `on_full` rule applies.
    pub max_disk_bytes: Option<u64>,
    /// How failed requests are retried.
    pub retry: RetryConfig,
}

/// Where a queue holds what waits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueKind {
    /// In memory: lost with the process.
    #[default]
    Memory,
    /// In memory and in a journal on disk, replayed at start.
    Disk,
}

/// When a disk queue syncs its writes to the device.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Fsync {
    /// After every write, before the data is acknowledged.
    #[default]
    Always,
    /// Never explicitly.
    Never,
    /// At most once per period.
    Every(Duration),
}

impl<'de> Deserialize<'de> for Fsync {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        match text.as_str() {
            "always" => Ok(Fsync::Always),
            "never" => Ok(Fsync::Never),
            period => humantime::parse_duration(period)
                .map(Fsync::Every)
                .map_err(|_| {
                    serde::de::Error::custom(format_args!(
                        "`{text}` is not `always`, `never` or a period like \"1s\""
                    ))
                }),
        }
    }
}

impl Serialize for Fsync {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Fsync::Always => s.serialize_str("always"),
            Fsync::Never => s.serialize_str("never"),
            Fsync::Every(d) => s.serialize_str(&humantime::format_duration(*d).to_string()),
        }
    }
}

impl DeliveryConfig {
    /// These settings, with `defaults` filling in what they leave unset.
    pub fn over(&self, defaults: &DeliveryConfig) -> DeliveryConfig {
        DeliveryConfig {
            interval: self.interval.or(defaults.interval),
            timeout: self.timeout.or(defaults.timeout),
            metrics_queue: self.metrics_queue.or(defaults.metrics_queue),
            logs_queue: self.logs_queue.or(defaults.logs_queue),
            logs_queue_bytes: self.logs_queue_bytes.or(defaults.logs_queue_bytes),
            logs_batch: self.logs_batch.or(defaults.logs_batch),
            logs_batch_bytes: self.logs_batch_bytes.or(defaults.logs_batch_bytes),
            traces_queue: self.traces_queue.or(defaults.traces_queue),
            traces_queue_bytes: self.traces_queue_bytes.or(defaults.traces_queue_bytes),
            traces_batch: self.traces_batch.or(defaults.traces_batch),
            traces_batch_bytes: self.traces_batch_bytes.or(defaults.traces_batch_bytes),
            max_in_flight: self.max_in_flight.or(defaults.max_in_flight),
            udp_bytes_per_second: self.udp_bytes_per_second.or(defaults.udp_bytes_per_second),
            udp_burst_bytes: self.udp_burst_bytes.or(defaults.udp_burst_bytes),
            udp_spread: self.udp_spread.or(defaults.udp_spread),
            queue: self.queue.or(defaults.queue),
            fsync: self.fsync.or(defaults.fsync),
            max_disk_bytes: self.max_disk_bytes.or(defaults.max_disk_bytes),
            retry: RetryConfig {
                max_retries: self.retry.max_retries.or(defaults.retry.max_retries),
                initial_backoff: self
                    .retry
                    .initial_backoff
                    .or(defaults.retry.initial_backoff),
                max_backoff: self.retry.max_backoff.or(defaults.retry.max_backoff),
                breaker_cooldown: self
                    .retry
                    .breaker_cooldown
                    .or(defaults.retry.breaker_cooldown),
            },
        }
    }
}

/// `[delivery.retry]`: retries, backoff and the circuit breaker's first cooldown.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryConfig {
    /// Retries per request (default 3).
    pub max_retries: Option<u32>,
    /// The first backoff, doubled per retry (default 250 ms).
    #[serde(deserialize_with = "duration", serialize_with = "show_duration")]
    pub initial_backoff: Option<Duration>,
    /// The longest backoff (default 30 s).
    #[serde(deserialize_with = "duration", serialize_with = "show_duration")]
    pub max_backoff: Option<Duration>,
    /// How long the circuit breaker first stays open (default 1 s; doubles per failed probe, up to 60 s).
    #[serde(deserialize_with = "duration", serialize_with = "show_duration")]
    pub breaker_cooldown: Option<Duration>,
}

/// One `[[exporters]]` entry: an integration whose wire format an exporter plugin owns.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExporterConfig {
    /// The integration's name and id (default: the plugin's name, `-2`, `-3` … when repeated).
    #[serde(default)]
    pub name: Option<String>,
    /// The plugin (`statsd`, or a `.wasm` in the plugin directory, by file stem).
    pub plugin: String,
    /// Where the host sends every signal: `udp://host:port` or an `http(s)://` base URL.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Where metrics go, over `endpoint` and the preset.
    #[serde(default)]
    pub metrics_endpoint: Option<String>,
    /// Where logs go, over `endpoint` and the preset.
    #[serde(default)]
    pub logs_endpoint: Option<String>,
    /// Where spans go, over `endpoint`.
    #[serde(default)]
    pub traces_endpoint: Option<String>,
    /// A backend preset that fills in endpoints and the credential header (`datadog`);
    /// defaults to the plugin's name when a preset of that name exists.
    #[serde(default)]
    pub preset: Option<String>,
    /// The preset's site (Datadog: `datadoghq.com`, `datadoghq.eu`, …; else `DD_SITE`).
    #[serde(default)]
    pub site: Option<String>,
    /// The credential the host sends in the preset's header (Datadog: `DD-API-KEY`; else `DD_API_KEY`).
    #[serde(default)]
    pub api_key: Option<String>,
    /// Credential headers the host adds to every HTTP request; the plugin never sees them.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// This integration's delivery settings, over `[delivery]`.
    #[serde(default)]
    pub delivery: DeliveryConfig,
    /// Plugin settings, over the plugin's own `<name>.toml` and `[plugins.config.<name>]`.
    #[serde(default)]
    pub config: toml::Table,
    /// What it receives (default: everything).
    #[serde(default, skip_serializing_if = "Select::is_all")]
    pub select: Select,
    /// Transform plugins applied, after the `[[transforms]]` chain, to its data only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transforms: Vec<String>,
}

/// The `[otlp]` section; push is on when an endpoint is set here or in the environment.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtlpConfig {
    /// Base URL; `/v1/metrics`, `/v1/logs` and `/v1/traces` are appended
    /// (`OTEL_EXPORTER_OTLP_ENDPOINT`).
    pub endpoint: Option<String>,
    /// Full metrics URL, used as is (`OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`).
    pub metrics_endpoint: Option<String>,
    /// Full logs URL, used as is (`OTEL_EXPORTER_OTLP_LOGS_ENDPOINT`).
    pub logs_endpoint: Option<String>,
    /// Full traces URL, used as is (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`).
    pub traces_endpoint: Option<String>,
    /// Headers sent with every request (`OTEL_EXPORTER_OTLP_HEADERS`).
    pub headers: BTreeMap<String, String>,
    /// A backend preset (`honeycomb`, `new-relic`, `grafana-cloud`, …) that fills in the
    /// endpoint and the header `api_key` goes in.
    pub preset: Option<String>,
    /// The credential the host sends in the preset's header.
    pub api_key: Option<String>,
    /// Whether raw events are forwarded as log records (default true).
    pub logs: bool,
    /// `cumulative` (default), `delta` or `lowmemory`, as the OpenTelemetry SDKs define them.
    pub temporality_preference: Option<TemporalityPreference>,
    /// This integration's delivery settings, over `[delivery]`.
    pub delivery: DeliveryConfig,
    /// `gzip` (the default) or `none` (`OTEL_EXPORTER_OTLP_COMPRESSION`).
    pub compression: Option<Compression>,
    /// `http/protobuf` (the default), `http/json` or `grpc` (`OTEL_EXPORTER_OTLP_PROTOCOL`).
    pub protocol: Option<Protocol>,
    /// The protocol of metrics, over `protocol` (`OTEL_EXPORTER_OTLP_METRICS_PROTOCOL`).
    pub metrics_protocol: Option<Protocol>,
    /// The protocol of logs, over `protocol` (`OTEL_EXPORTER_OTLP_LOGS_PROTOCOL`).
    pub logs_protocol: Option<Protocol>,
    /// The protocol of traces, over `protocol` (`OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`).
    pub traces_protocol: Option<Protocol>,
    /// What it receives (default: everything).
    #[serde(skip_serializing_if = "Select::is_all")]
    pub select: Select,
    /// Transform plugins applied, after the `[[transforms]]` chain, to its data only.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub transforms: Vec<String>,
}

/// How OTLP requests travel, as `OTEL_EXPORTER_OTLP_PROTOCOL` names them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
pub enum Protocol {
    /// Protobuf over HTTP: a POST to `<endpoint>/v1/<signal>` (the default).
    #[default]
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
    /// OTLP/JSON over HTTP.
    #[serde(rename = "http/json")]
    HttpJson,
    /// gRPC: the `Export` method of the signal's service on the endpoint as given.
    #[serde(rename = "grpc")]
    Grpc,
}

/// How OTLP/HTTP request bodies are compressed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    /// `Content-Encoding: gzip` (the default).
    #[default]
    Gzip,
    /// Sent as they are.
    None,
}

impl Default for OtlpConfig {
    fn default() -> Self {
        Self {
            endpoint: None,
            metrics_endpoint: None,
            logs_endpoint: None,
            traces_endpoint: None,
            headers: BTreeMap::new(),
            preset: None,
            api_key: None,
            logs: true,
            temporality_preference: None,
            delivery: DeliveryConfig::default(),
            compression: None,
            protocol: None,
            metrics_protocol: None,
            logs_protocol: None,
            traces_protocol: None,
            select: Select::default(),
            transforms: Vec::new(),
        }
    }
}

impl OtlpConfig {
    /// The protocol `signal` travels in.
    pub fn protocol(&self, signal: crate::model::Signal) -> Protocol {
        let own = match signal {
            crate::model::Signal::Metrics => self.metrics_protocol,
            crate::model::Signal::Logs => self.logs_protocol,
            crate::model::Signal::Traces => self.traces_protocol,
        };
        own.or(self.protocol).unwrap_or_default()
    }

    /// Where a signal goes from the base endpoint: `<base>/v1/<signal>` over HTTP, the base
    /// itself over gRPC (the method's path is gRPC's).
    fn url_from_base(&self, signal: crate::model::Signal) -> Option<String> {
        let base = self.endpoint.as_deref()?;
        Some(match self.protocol(signal) {
            Protocol::Grpc => base.trim_end_matches('/').to_owned(),
            _ => signal_url(base, signal.as_str()),
        })
    }

    /// The metrics URL, if push is configured.
    pub fn metrics_url(&self) -> Option<String> {
        self.metrics_endpoint
            .clone()
            .or_else(|| self.url_from_base(crate::model::Signal::Metrics))
    }

    /// The logs URL, if push is configured and log forwarding is on.
    pub fn logs_url(&self) -> Option<String> {
        if !self.logs {
            return None;
        }
        self.logs_endpoint
            .clone()
            .or_else(|| self.url_from_base(crate::model::Signal::Logs))
    }

    /// The traces URL, if push is configured.
    pub fn traces_url(&self) -> Option<String> {
        self.traces_endpoint
            .clone()
            .or_else(|| self.url_from_base(crate::model::Signal::Traces))
    }
}

/// The URL an OTLP/HTTP signal goes to from a base URL: `<base>/v1/<signal>`; a base that
/// already ends in a signal's path (`…/v1/metrics`) has it replaced, so one base serves all.
pub fn signal_url(base: &str, signal: &str) -> String {
    let mut base = base.trim_end_matches('/');
    for path in ["/v1/metrics", "/v1/logs", "/v1/traces"] {
        base = base.strip_suffix(path).unwrap_or(base);
    }
    format!("{base}/v1/{signal}")
}
