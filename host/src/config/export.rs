//! `[otlp]` and `[[exporters]]`: where telemetry goes, and how it is delivered.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::TemporalityPreference;
use super::{duration, show_duration};

/// Retries per batch before it counts as a failed export, by default.
pub const DEFAULT_MAX_RETRIES: u32 = 3;

/// One `[[exporters]]` entry: an integration whose wire format an exporter plugin owns.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExporterConfig {
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
    /// How often metrics are exported (default 10 s).
    #[serde(
        default,
        deserialize_with = "duration",
        serialize_with = "show_duration"
    )]
    pub interval: Option<Duration>,
    /// Credential headers the host adds to every HTTP request; the plugin never sees them.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Log records held while the backend is slow or down (default 65536; the oldest go first).
    #[serde(default)]
    pub queue: Option<usize>,
    /// Plugin settings, over the plugin's own `<name>.toml` and `[plugins.config.<name>]`.
    #[serde(default)]
    pub config: toml::Table,
}

/// The `[otlp]` section; push is on when an endpoint is set here or in the environment.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtlpConfig {
    /// Base URL; `/v1/metrics` and `/v1/logs` are appended (`OTEL_EXPORTER_OTLP_ENDPOINT`).
    pub endpoint: Option<String>,
    /// Full metrics URL, used as is (`OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`).
    pub metrics_endpoint: Option<String>,
    /// Full logs URL, used as is (`OTEL_EXPORTER_OTLP_LOGS_ENDPOINT`).
    pub logs_endpoint: Option<String>,
    /// Headers sent with every request (`OTEL_EXPORTER_OTLP_HEADERS`).
    pub headers: BTreeMap<String, String>,
    /// Metric export interval (`OTEL_METRIC_EXPORT_INTERVAL`, default 60 s).
    #[serde(deserialize_with = "duration", serialize_with = "show_duration")]
    pub interval: Option<Duration>,
    /// Per-request timeout (`OTEL_EXPORTER_OTLP_TIMEOUT`, default 10 s).
    #[serde(deserialize_with = "duration", serialize_with = "show_duration")]
    pub timeout: Option<Duration>,
    /// Whether raw events are forwarded as log records (default true).
    pub logs: bool,
    /// Metric batches held while the collector is slow or down (default 32).
    pub metrics_queue: usize,
    /// Log records held while the collector is slow or down (default 65536).
    pub logs_queue: usize,
    /// Most log records per request (default 512).
    pub logs_batch: usize,
    /// How long shutdown may spend flushing (default 5 s).
    #[serde(deserialize_with = "duration", serialize_with = "show_duration")]
    pub shutdown_timeout: Option<Duration>,
    /// `cumulative` (default), `delta` or `lowmemory`, as the OpenTelemetry SDKs define them.
    pub temporality_preference: Option<TemporalityPreference>,
    /// How failed requests are retried.
    pub retry: RetryConfig,
}

/// `[otlp.retry]`: retries, backoff and the circuit breaker's first cooldown.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryConfig {
    /// Retries per batch (default 3).
    pub max_retries: u32,
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

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_retries: DEFAULT_MAX_RETRIES,
            initial_backoff: None,
            max_backoff: None,
            breaker_cooldown: None,
        }
    }
}

impl Default for OtlpConfig {
    fn default() -> Self {
        Self {
            endpoint: None,
            metrics_endpoint: None,
            logs_endpoint: None,
            headers: BTreeMap::new(),
            interval: None,
            timeout: None,
            logs: true,
            metrics_queue: 32,
            logs_queue: 65536,
            logs_batch: 512,
            shutdown_timeout: None,
            temporality_preference: None,
            retry: RetryConfig::default(),
        }
    }
}

impl OtlpConfig {
    /// The metrics URL, if push is configured.
    pub fn metrics_url(&self) -> Option<String> {
        self.metrics_endpoint
            .clone()
            .or_else(|| self.signal_url("metrics"))
    }

    /// The logs URL, if push is configured and log forwarding is on.
    pub fn logs_url(&self) -> Option<String> {
        if !self.logs {
            return None;
        }
        self.logs_endpoint
            .clone()
            .or_else(|| self.signal_url("logs"))
    }

    fn signal_url(&self, signal: &str) -> Option<String> {
        let base = self.endpoint.as_deref()?;
        Some(format!("{}/v1/{signal}", base.trim_end_matches('/')))
    }

    /// The export interval, defaulted.
    pub fn interval(&self) -> Duration {
        self.interval.unwrap_or(Duration::from_secs(60))
    }

    /// The request timeout, defaulted.
    pub fn timeout(&self) -> Duration {
        self.timeout.unwrap_or(Duration::from_secs(10))
    }

    /// The shutdown flush budget, defaulted.
    pub fn shutdown_timeout(&self) -> Duration {
        self.shutdown_timeout.unwrap_or(Duration::from_secs(5))
    }
}
