//! The configuration file (TOML) and its OpenTelemetry environment-variable fallbacks.
//!
//! Precedence: a value set in the file wins; an `OTEL_*` variable fills in
//! what the file leaves unset; built-in defaults fill in the rest.

mod derive;
mod export;
mod metrics;
mod plugins;
mod renamed;
mod scrape;
mod tenancy;

pub use derive::{
    DeriveConfig, RuleConfig, RuleSet, SeriesRuleConfig, ServerRuleSet, Sources, SpanKindName,
    SpanRuleConfig, SpanRuleSet, When,
};
pub use export::{
    Compression, DEFAULT_MAX_RETRIES, DeliveryConfig, ExporterConfig, Fsync, OtlpConfig, Protocol,
    QueueKind, RetryConfig, signal_url,
};
pub use metrics::{DEFAULT_CARDINALITY_LIMIT, DEFAULT_RECEIVED_SERIES_EXPIRY, MetricsConfig};
pub use plugins::{
    Budgets, OnFailure, PluginsConfig, TransformConfig, ViewConfig, flatten, plugin_name_error,
};
pub use renamed::Renamed;
pub use scrape::{PodDiscoveryConfig, ScrapeConfig, without_userinfo};
pub use tenancy::{DEFAULT_MAX_PLUGIN_BYTES, TenancyConfig, TenantLimits};

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

/// The largest accepted request body after decompression, by default.
pub const DEFAULT_MAX_BODY: usize = 8 * 1024 * 1024;

/// The NVML library loaded by default.
pub const NVML_LIBRARY: &str = "libnvidia-ml.so.1";

/// A configuration that cannot be loaded, naming the file or variable at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid configuration.
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// What is wrong, with line and column.
        message: String,
    },
    /// An environment variable holds an invalid value.
    #[error("invalid {name}{}: {reason}", shown(.value))]
    Env {
        /// The variable.
        name: &'static str,
        /// Its value, unless it may hold a credential.
        value: Option<String>,
        /// What is wrong.
        reason: String,
    },
}

/// `=<value>` for an error message, or nothing for a value that may be a credential.
fn shown(value: &Option<String>) -> String {
    value
        .as_ref()
        .map_or_else(String::new, |v| format!("={v:?}"))
}

/// The whole configuration.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `[intake]`: the HTTP event intake.
    pub intake: IntakeConfig,
    /// `[connections]`: bounds on every listener's connections.
    pub connections: ConnectionsConfig,
    /// `[prometheus]`: the pull endpoint.
    pub prometheus: PrometheusConfig,
    /// `[otlp]`: OTLP/HTTP push.
    pub otlp: OtlpConfig,
    /// `[delivery]`: how every integration delivers, unless its own `delivery` says otherwise.
    pub delivery: DeliveryConfig,
    /// How long shutdown may spend flushing what integrations hold (default 5 s).
    #[serde(deserialize_with = "duration", serialize_with = "show_duration")]
    pub shutdown_timeout: Option<Duration>,
    /// `[metrics]`: the aggregation engine.
    pub metrics: MetricsConfig,
    /// `[derive]`: event → metric rules.
    pub derive: DeriveConfig,
    /// `[resource]`: who this host says it is.
    pub resource: ResourceConfig,
    /// `[plugins]`: the plugin directory and sandbox limits.
    pub plugins: PluginsConfig,
    /// `[gpu]`: the NVIDIA GPU poller.
    pub gpu: GpuConfig,
    /// `[kubernetes]`: GPU → pod attribution.
    pub kubernetes: KubernetesConfig,
    /// `[system]`: the CPU and memory poller.
    pub system: SystemConfig,
    /// `[[exporters]]`: integrations served by exporter plugins.
    pub exporters: Vec<ExporterConfig>,
    /// `[[transforms]]`: transform plugins applied to every batch before export, in order.
    pub transforms: Vec<TransformConfig>,
    /// `[[views]]`: view plugins that map the attribute sets of matching instruments; the first match wins.
    pub views: Vec<ViewConfig>,
    /// `[admin]`: the admin API and status page.
    pub admin: AdminConfig,
    /// Where the host keeps its files (the admin token; default `./data`).
    pub data_dir: Option<PathBuf>,
    /// `[tenancy]`: tenants, their tokens and what they may see.
    pub tenancy: TenancyConfig,
    /// `[[scrape]]`: Prometheus endpoints scraped on an interval.
    pub scrape: Vec<ScrapeConfig>,
}

/// `[admin]`: the admin API, bearer-token protected.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Whether the admin API is served.
    pub enabled: bool,
    /// Listen address (default `127.0.0.1:8686`).
    pub listen: SocketAddr,
    /// The bearer token (`WASMTEL_ADMIN_TOKEN`); without one it is generated into
    /// `<data_dir>/admin.token` (mode 0600) on first start.
    pub token: Option<String>,
    /// How often the status page's history takes a point (default 10 s).
    #[serde(deserialize_with = "duration", serialize_with = "show_duration")]
    pub history_interval: Option<Duration>,
    /// How far back the history reaches (default 1 h).
    #[serde(deserialize_with = "duration", serialize_with = "show_duration")]
    pub history_window: Option<Duration>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 8686)),
            token: None,
            history_interval: None,
            history_window: None,
        }
    }
}

impl AdminConfig {
    /// The history's interval (at least 100 ms) and window.
    pub fn history(&self) -> (Duration, Duration) {
        let interval = self.history_interval.unwrap_or(Duration::from_secs(10));
        let window = self.history_window.unwrap_or(Duration::from_secs(3600));
        (interval.max(Duration::from_millis(100)), window)
    }
}

/// The `[gpu]` section.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct GpuConfig {
    /// How often the GPUs are read (default 5 s; `"0s"` turns the poller off).
    #[serde(deserialize_with = "duration", serialize_with = "show_duration")]
    pub poll_interval: Option<Duration>,
    /// The NVML library to load (default `libnvidia-ml.so.1`).
    pub library: String,
}

impl Default for GpuConfig {
    fn default() -> Self {
        Self {
            poll_interval: None,
            library: NVML_LIBRARY.into(),
        }
    }
}

impl GpuConfig {
    /// The poll interval, or `None` when the poller is off.
    pub fn interval(&self) -> Option<Duration> {
        Some(self.poll_interval.unwrap_or(Duration::from_secs(5))).filter(|d| !d.is_zero())
    }
}

/// The `[kubernetes]` section: which pod each GPU and GPU process belongs to.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct KubernetesConfig {
    /// The kubelet's PodResources socket (default
    /// `/var/lib/kubelet/pod-resources/kubelet.sock`; `""` turns attribution off).
    pub pod_resources_socket: String,
    /// How often the devices' owners are listed again (default 30 s).
    #[serde(deserialize_with = "duration", serialize_with = "show_duration")]
    pub refresh_interval: Option<Duration>,
    /// Where the host's processes are seen, for their cgroups (default `/proc`; in a pod, the
    /// host's `/proc` mounted elsewhere).
    pub proc_root: PathBuf,
    /// `[kubernetes.pods]`: the node's pods discovered and scraped.
    pub pods: PodDiscoveryConfig,
}

impl Default for KubernetesConfig {
    fn default() -> Self {
        Self {
            pod_resources_socket: "/var/lib/kubelet/pod-resources/kubelet.sock".into(),
            refresh_interval: None,
            proc_root: PathBuf::from("/proc"),
            pods: PodDiscoveryConfig::default(),
        }
    }
}

impl KubernetesConfig {
    /// The refresh interval.
    pub fn interval(&self) -> Duration {
        self.refresh_interval.unwrap_or(Duration::from_secs(30))
    }
}

/// The `[system]` section.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SystemConfig {
    /// How often `/proc` is read (default 10 s; `"0s"` turns the poller off).
    #[serde(deserialize_with = "duration", serialize_with = "show_duration")]
    pub poll_interval: Option<Duration>,
}

impl SystemConfig {
    /// The poll interval, or `None` when the poller is off.
    pub fn interval(&self) -> Option<Duration> {
        Some(self.poll_interval.unwrap_or(Duration::from_secs(10))).filter(|d| !d.is_zero())
    }
}

/// `[connections]`: bounds on the connections of every listener (intake, Prometheus, admin).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectionsConfig {
    /// Open connections per listener (default 1,024, lowered to fit the open-file limit); at
    /// the limit the longest-idle connection is closed for a newcomer, and a newcomer finding
    /// every connection in a request gets 503.
    pub max_connections: usize,
    /// How long a client may take to send a request's headers (default 10 s).
    #[serde(deserialize_with = "duration", serialize_with = "show_duration")]
    pub header_timeout: Option<Duration>,
    /// How long a body may take beyond what `min_body_rate` earns it (default 10 s).
    #[serde(deserialize_with = "duration", serialize_with = "show_duration")]
    pub body_timeout: Option<Duration>,
    /// Bytes per second a body must keep up past `body_timeout` (default 64 KiB/s).
    pub min_body_rate: u64,
    /// How long a body may send nothing, whatever it sent before (default 5 s).
    #[serde(deserialize_with = "duration", serialize_with = "show_duration")]
    pub stall_timeout: Option<Duration>,
    /// How long a connection may stay open with no request (default 60 s).
    #[serde(deserialize_with = "duration", serialize_with = "show_duration")]
    pub idle_timeout: Option<Duration>,
    /// Bytes of request bodies being received at once, all listeners together, beyond the
    /// first 64 KiB of each (default 256 MiB); past it a body waits up to 1 s for room, then
    /// is refused with 503 and `Retry-After`.
    pub max_body_memory: usize,
}

impl Default for ConnectionsConfig {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            header_timeout: None,
            body_timeout: None,
            min_body_rate: 64 * 1024,
            stall_timeout: None,
            idle_timeout: None,
            max_body_memory: 256 << 20,
        }
    }
}

impl ConnectionsConfig {
    /// The header timeout.
    pub fn header_timeout(&self) -> Duration {
        self.header_timeout.unwrap_or(Duration::from_secs(10))
    }

    /// How long a body may send nothing.
    pub fn stall_timeout(&self) -> Duration {
        self.stall_timeout.unwrap_or(Duration::from_secs(5))
    }

    /// The body grace period.
    pub fn body_timeout(&self) -> Duration {
        self.body_timeout.unwrap_or(Duration::from_secs(10))
    }

    /// The idle timeout.
    pub fn idle_timeout(&self) -> Duration {
        self.idle_timeout.unwrap_or(Duration::from_secs(60))
    }
}

/// The `[intake]` section.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct IntakeConfig {
    /// Listen address (default `127.0.0.1:4318`).
    pub listen: SocketAddr,
    /// OTLP/gRPC listen address (default `127.0.0.1:4317`; `""` turns it off).
    #[serde(deserialize_with = "optional_addr", serialize_with = "show_addr")]
    pub grpc_listen: Option<SocketAddr>,
    /// Largest accepted body after decompression, in bytes (default 8 MiB).
    pub max_body_bytes: usize,
    /// What intake does when an integration's log queue is full (default `reject`).
    pub on_full: OnFull,
    /// `[intake.limits]`: what one OTLP request may hold.
    pub limits: RequestLimits,
    /// `[intake.genai_content]`: prompt and completion content in received logs and spans.
    pub genai_content: GenaiContentConfig,
}

/// `[intake.genai_content]`: GenAI prompt and completion content in received log records and
/// spans, removed as they are accepted (by the `redact` plugin), unless kept.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct GenaiContentConfig {
    /// Whether content is removed at intake (default `true`); `false` keeps it.
    pub redact: bool,
    /// Attribute keys of content, `*` ending a prefix (default [`crate::model::content::KEYS`]).
    pub keys: Vec<String>,
    /// Event names whose log body is content (default [`crate::model::content::EVENTS`]).
    pub events: Vec<String>,
}

impl Default for GenaiContentConfig {
    fn default() -> Self {
        let owned = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect();
        Self {
            redact: true,
            keys: owned(crate::model::content::KEYS),
            events: owned(crate::model::content::EVENTS),
        }
    }
}

impl GenaiContentConfig {
    /// What marks a record as carrying content; nothing when content is kept.
    pub fn content(&self) -> crate::model::content::Content {
        match self.redact {
            true => crate::model::content::Content::new(&self.keys, &self.events),
            false => crate::model::content::Content::none(),
        }
    }
}

/// `[intake.limits]`: what one OTLP request may hold; a request over any of them is refused
/// whole (400) with the limit and the value found, before it is decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RequestLimits {
    /// Resources per request (default 1,000).
    pub resources: usize,
    /// Scopes per request, over all resources (default 10,000).
    pub scopes: usize,
    /// Metrics per request (default 100,000).
    pub metrics: usize,
    /// Data points per request (default 200,000).
    pub points: usize,
    /// Log records per request (default 200,000).
    pub log_records: usize,
    /// Spans per request (default 200,000).
    pub spans: usize,
    /// Events on one span (default 128, the SDKs' default span limit).
    pub span_events: usize,
    /// Links on one span (default 128, the SDKs' default span limit).
    pub span_links: usize,
    /// Attributes on one resource, scope, point, exemplar, log record, span, span event or
    /// link (default 128).
    pub attributes: usize,
    /// Bytes in one attribute key (default 1,024).
    pub key_length: usize,
    /// Bytes in one string or bytes value, and in one metric name (default 65,536).
    pub value_length: usize,
    /// Bounds on one histogram point (default 256).
    pub histogram_bounds: usize,
    /// Buckets in one side (positive or negative) of an exponential histogram point (default 2,048).
    pub exponential_buckets: usize,
    /// Levels of arrays and maps nested in one value (default 16).
    pub depth: usize,
    /// Bytes a metrics request may take once decoded, estimated from its shape before it is
    /// decoded (default 64 MiB).
    pub decoded_bytes: usize,
}

impl Default for RequestLimits {
    fn default() -> Self {
        Self {
            resources: 1_000,
            scopes: 10_000,
            metrics: 100_000,
            points: 200_000,
            log_records: 200_000,
            spans: 200_000,
            span_events: 128,
            span_links: 128,
            attributes: 128,
            key_length: 1_024,
            value_length: 65_536,
            histogram_bounds: 256,
            exponential_buckets: 2_048,
            depth: 16,
            decoded_bytes: 64 << 20,
        }
    }
}

impl Default for IntakeConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 4318)),
            grpc_listen: Some(SocketAddr::from(([127, 0, 0, 1], 4317))),
            max_body_bytes: DEFAULT_MAX_BODY,
            on_full: OnFull::default(),
            limits: RequestLimits::default(),
            genai_content: GenaiContentConfig::default(),
        }
    }
}

/// What happens to data arriving for a full export queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFull {
    /// Intake answers 503 with `Retry-After` (what OTLP senders retry on): nothing accepted is
    /// lost.
    #[default]
    Reject,
    /// The oldest queued data is dropped (and counted) to make room.
    DropOldest,
}

/// The `[prometheus]` section.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrometheusConfig {
    /// Whether `/metrics` is served.
    pub enabled: bool,
    /// Listen address (default `127.0.0.1:9464`).
    pub listen: SocketAddr,
    /// With tenancy on, serve `/metrics` without a token (a single-operator node); by default
    /// it then needs an admin token, and a tenant's sees only its own series.
    pub public: bool,
}

impl Default for PrometheusConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
            public: false,
        }
    }
}

/// The `[resource]` section.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResourceConfig {
    /// `service.name` (`OTEL_SERVICE_NAME`, default `wasmtel`).
    pub service_name: Option<String>,
    /// `device.id`, replacing the hash of host name and MAC address.
    pub device_id: Option<String>,
    /// Extra resource attributes (`OTEL_RESOURCE_ATTRIBUTES`).
    pub attributes: BTreeMap<String, String>,
}

pub(crate) fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let Some(text) = Option::<String>::deserialize(d)? else {
        return Ok(None);
    };
    humantime::parse_duration(&text).map(Some).map_err(|e| {
        serde::de::Error::custom(format_args!(
            "`{text}` is not a duration like \"10s\" ({e})"
        ))
    })
}

/// A listen address, or `""` for none.
/// A fraction in (0, 1], such as a share of an interval.
pub(crate) fn fraction<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    let Some(value) = Option::<f64>::deserialize(d)? else {
        return Ok(None);
    };
    if value.is_finite() && value > 0.0 && value <= 1.0 {
        Ok(Some(value))
    } else {
        Err(serde::de::Error::custom(format_args!(
            "{value} is not a fraction in (0, 1]"
        )))
    }
}

fn optional_addr<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    let text = String::deserialize(d)?;
    if text.is_empty() {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|e| {
        serde::de::Error::custom(format_args!(
            "`{text}` is not an address like \"127.0.0.1:4317\" ({e})"
        ))
    })
}

fn show_addr<S: serde::Serializer>(a: &Option<SocketAddr>, s: S) -> Result<S::Ok, S::Error> {
    match a {
        Some(a) => s.serialize_str(&a.to_string()),
        None => s.serialize_str(""),
    }
}

pub(crate) fn show_duration<S: serde::Serializer>(
    d: &Option<Duration>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_str(&humantime::format_duration(*d).to_string()),
        None => s.serialize_none(),
    }
}

impl Config {
    /// Loads `path` (or defaults when `None`) and fills gaps from the process environment.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let mut config = match path {
            Some(path) => Self::from_file(path)?,
            None => Self::default(),
        };
        config.apply_env(|name| std::env::var(name).ok())?;
        Ok(config)
    }

    /// Parses a configuration file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        let (config, renamed) = Self::parse(&text).map_err(|message| ConfigError::Parse {
            path: shown.clone(),
            message,
        })?;
        for r in renamed {
            tracing::warn!(file = %shown, "{r}");
        }
        Ok(config)
    }

    /// Parses configuration text, warning once about each key spelled as before a rename; the
    /// error names the line, column and key, and never shows the value of a header, API key or
    /// token.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        let (config, renamed) = Self::parse(text)?;
        for r in renamed {
            tracing::warn!("{r}");
        }
        Ok(config)
    }

    /// Parses configuration text, reading renamed keys under their new spelling, and lists them.
    pub fn parse(text: &str) -> Result<(Self, Vec<Renamed>), String> {
        let describe = |e: &toml::de::Error, key: Option<String>| {
            let at = e
                .span()
                .map(|span| {
                    let before = &text[..span.start.min(text.len())];
                    let line = before.matches('\n').count() + 1;
                    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
                    format!("line {line}, column {column}: ")
                })
                .unwrap_or_default();
            match key.filter(|k| !k.is_empty() && k != ".") {
                Some(key) if is_secret_key(&key) => {
                    format!("{at}`{key}`: {}", without_quoted(e.message()))
                }
                Some(key) => format!("{at}`{key}`: {}", e.message()),
                None => format!("{at}{}", e.message()),
            }
        };
        let mut root = toml::de::DeTable::parse(text).map_err(|e| describe(&e, None))?;
        let renamed = renamed::migrate(root.get_mut(), text)?;
        let config =
            serde_path_to_error::deserialize(toml::Deserializer::from(root)).map_err(|e| {
                let key = e.path().to_string();
                describe(e.inner(), Some(key))
            })?;
        let config: Self = config;
        config
            .tenancy
            .limits
            .check()
            .map_err(|e| format!("`tenancy.limits`: {e}"))?;
        for (i, target) in config.scrape.iter().enumerate() {
            target.check().map_err(|e| format!("`scrape[{i}]`: {e}"))?;
        }
        if let Some((key, error)) = config
            .plugin_names()
            .find_map(|(key, name)| plugin_name_error(name).map(|e| (key, e)))
        {
            return Err(format!("`{key}`: {error}"));
        }
        Ok((config, renamed))
    }

    /// Every plugin name the file gives, with the key that gives it.
    fn plugin_names(&self) -> impl Iterator<Item = (String, &str)> {
        let exporters = self.exporters.iter().enumerate().flat_map(|(i, e)| {
            std::iter::once((format!("exporters[{i}].plugin"), e.plugin.as_str())).chain(
                e.transforms
                    .iter()
                    .enumerate()
                    .map(move |(j, t)| (format!("exporters[{i}].transforms[{j}]"), t.as_str())),
            )
        });
        let otlp = self
            .otlp
            .transforms
            .iter()
            .enumerate()
            .map(|(j, t)| (format!("otlp.transforms[{j}]"), t.as_str()));
        let transforms = self
            .transforms
            .iter()
            .enumerate()
            .map(|(i, t)| (format!("transforms[{i}].plugin"), t.plugin.as_str()));
        let views = self
            .views
            .iter()
            .enumerate()
            .map(|(i, v)| (format!("views[{i}].plugin"), v.plugin.as_str()));
        exporters.chain(otlp).chain(transforms).chain(views)
    }

    /// The data directory, defaulted.
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("./data"))
    }

    /// The shutdown flush budget, defaulted.
    pub fn shutdown_timeout(&self) -> Duration {
        self.shutdown_timeout.unwrap_or(Duration::from_secs(5))
    }

    /// Where compiled plugins are cached: `[plugins] cache_dir`, else `<data_dir>/plugin-cache`;
    /// `None` when set empty.
    pub fn plugin_cache(&self) -> Option<PathBuf> {
        match &self.plugins.cache_dir {
            Some(dir) if dir.as_os_str().is_empty() => None,
            Some(dir) => Some(dir.clone()),
            None => Some(self.data_dir().join("plugin-cache")),
        }
    }

    /// Fills unset values from `OTEL_*` variables (and `WASMTEL_ADMIN_TOKEN`) read through `var`.
    pub fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        fill(&mut self.admin.token, var("WASMTEL_ADMIN_TOKEN"));
        let otlp = &mut self.otlp;
        fill(&mut otlp.endpoint, var("OTEL_EXPORTER_OTLP_ENDPOINT"));
        fill(
            &mut otlp.metrics_endpoint,
            var("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"),
        );
        fill(
            &mut otlp.logs_endpoint,
            var("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"),
        );
        fill(
            &mut otlp.traces_endpoint,
            var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
        );
        if let Some(raw) = var("OTEL_EXPORTER_OTLP_HEADERS") {
            for (k, v) in parse_key_values("OTEL_EXPORTER_OTLP_HEADERS", &raw, true)? {
                otlp.headers.entry(k).or_insert(v);
            }
        }
        if otlp.compression.is_none() {
            otlp.compression = enum_var(
                "OTEL_EXPORTER_OTLP_COMPRESSION",
                var("OTEL_EXPORTER_OTLP_COMPRESSION"),
                "expected gzip or none",
            )?;
        }
        for (slot, name) in [
            (&mut otlp.protocol, "OTEL_EXPORTER_OTLP_PROTOCOL"),
            (
                &mut otlp.metrics_protocol,
                "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
            ),
            (&mut otlp.logs_protocol, "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL"),
            (
                &mut otlp.traces_protocol,
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            ),
        ] {
            if slot.is_none() {
                *slot = enum_var(name, var(name), "expected grpc, http/protobuf or http/json")?;
            }
        }
        if otlp.delivery.timeout.is_none() {
            otlp.delivery.timeout = millis_var(
                "OTEL_EXPORTER_OTLP_TIMEOUT",
                var("OTEL_EXPORTER_OTLP_TIMEOUT"),
            )?;
        }
        if self.delivery.interval.is_none() {
            self.delivery.interval = millis_var(
                "OTEL_METRIC_EXPORT_INTERVAL",
                var("OTEL_METRIC_EXPORT_INTERVAL"),
            )?;
        }
        if self.metrics.default_histogram_aggregation.is_none() {
            self.metrics.default_histogram_aggregation = enum_var(
                "OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION",
                var("OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION"),
                "expected explicit_bucket_histogram or base2_exponential_bucket_histogram",
            )?;
        }
        if self.metrics.exemplar_filter.is_none() {
            self.metrics.exemplar_filter = enum_var(
                "OTEL_METRICS_EXEMPLAR_FILTER",
                var("OTEL_METRICS_EXEMPLAR_FILTER"),
                "expected trace_based, always_on or always_off",
            )?;
        }
        if self.otlp.temporality_preference.is_none() {
            self.otlp.temporality_preference = enum_var(
                "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE",
                var("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE")
                    .map(|v| v.to_ascii_lowercase()),
                "expected cumulative, delta or lowmemory",
            )?;
        }
        let resource = &mut self.resource;
        fill(&mut resource.service_name, var("OTEL_SERVICE_NAME"));
        if let Some(raw) = var("OTEL_RESOURCE_ATTRIBUTES") {
            for (k, v) in parse_key_values("OTEL_RESOURCE_ATTRIBUTES", &raw, false)? {
                resource.attributes.entry(k).or_insert(v);
            }
        }
        Ok(())
    }
}

/// Whether a config key holds credentials: a header value, an API key, a token, a password or
/// a secret.
pub fn is_secret_key(key: &str) -> bool {
    key.split('.').any(|part| {
        matches!(
            part.to_ascii_lowercase().as_str(),
            "headers" | "api_key" | "apikey" | "token" | "password" | "secret"
        )
    })
}

/// An error message with every quoted value (`` `42` `` or `"text"`, as TOML and serde write
/// them) cut out, for keys whose values are secrets.
pub(crate) fn without_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut quote = None;
    for c in message.chars() {
        match quote {
            Some(q) if c == q => {
                out.push_str("(value not shown)");
                quote = None;
            }
            Some(_) => {}
            None if c == '`' || c == '"' => quote = Some(c),
            None => out.push(c),
        }
    }
    out
}

/// An enumerated setting from an environment variable (unset or blank: `None`).
fn enum_var<T: serde::de::DeserializeOwned>(
    name: &'static str,
    value: Option<String>,
    expected: &str,
) -> Result<Option<T>, ConfigError> {
    let Some(value) = value.filter(|v| !v.trim().is_empty()) else {
        return Ok(None);
    };
    let parsed = T::deserialize(
        serde::de::value::StrDeserializer::<serde::de::value::Error>::new(value.trim()),
    );
    parsed.map(Some).map_err(|_| ConfigError::Env {
        name,
        value: Some(value),
        reason: expected.into(),
    })
}

fn fill(slot: &mut Option<String>, value: Option<String>) {
    if slot.is_none() {
        *slot = value.filter(|v| !v.trim().is_empty());
    }
}

fn millis_var(name: &'static str, value: Option<String>) -> Result<Option<Duration>, ConfigError> {
    let Some(value) = value.filter(|v| !v.trim().is_empty()) else {
        return Ok(None);
    };
    match value.trim().parse::<u64>() {
        Ok(ms) if ms > 0 => Ok(Some(Duration::from_millis(ms))),
        _ => Err(ConfigError::Env {
            name,
            value: Some(value),
            reason: "expected a positive number of milliseconds".into(),
        }),
    }
}

/// Parses the W3C-baggage-like `key=value,key2=value2` list the OpenTelemetry variables use.
///
/// With `secret` (headers carry credentials) an error names the entry by position and key and
/// never shows the variable's text.
pub fn parse_key_values(
    name: &'static str,
    raw: &str,
    secret: bool,
) -> Result<Vec<(String, String)>, ConfigError> {
    let bad = |reason: String| ConfigError::Env {
        name,
        value: (!secret).then(|| raw.to_owned()),
        reason,
    };
    let mut out = Vec::new();
    for (n, item) in raw.split(',').map(str::trim).enumerate() {
        if item.is_empty() {
            continue;
        }
        let entry = n + 1;
        let Some((k, v)) = item.split_once('=') else {
            return Err(bad(format!("entry {entry} is not key=value")));
        };
        let key =
            percent_decode(k.trim()).map_err(|why| bad(format!("entry {entry}: the key {why}")))?;
        if key.is_empty() {
            return Err(bad(format!("entry {entry} has an empty key")));
        }
        let value = percent_decode(v.trim())
            .map_err(|why| bad(format!("entry {entry} (`{key}`): the value {why}")))?;
        out.push((key, value));
    }
    Ok(out)
}

/// Decodes %-escapes; the error says what is wrong without quoting the text.
fn percent_decode(s: &str) -> Result<String, &'static str> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or("ends in a bare %")?;
            let mut b = [0u8];
            const_hex::decode_to_slice(hex, &mut b).map_err(|_| "has a bad %-escape")?;
            out.push(b[0]);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "decodes to invalid UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::metric::{ExemplarFilter, HistogramAggregation, TemporalityPreference};

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn defaults_match_the_documented_ones() {
        let c = Config::from_toml("").expect("empty is valid");
        assert_eq!(c.intake.listen.to_string(), "127.0.0.1:4318");
        assert_eq!(c.intake.max_body_bytes, 8 * 1024 * 1024);
        assert_eq!(c.prometheus.listen.to_string(), "127.0.0.1:9464");
        assert_eq!(c.metrics.cardinality_limit, 2000);
        assert_eq!(c.otlp.metrics_url(), None);
        assert_eq!(
            c.delivery,
            DeliveryConfig::default(),
            "built-in defaults apply"
        );
        assert_eq!(c.shutdown_timeout(), Duration::from_secs(5));
    }

    #[test]
    fn the_example_config_is_valid_with_its_plugin_sections_uncommented() {
        let text = include_str!("../../../examples/wasmtel.toml");
        Config::from_toml(text).expect("example parses");
        // Uncomment what looks like TOML (tables and `key = value`) in the plugin sections.
        let c = Config::from_toml(&uncommented(text)).expect("uncommented plugin sections parse");
        assert_eq!(c.exporters.len(), 2);
        assert_eq!(c.transforms.len(), 1);
        assert_eq!(c.views[0].instruments, ["gen_ai.*"]);
    }

    /// The plugin sections of an example config with what looks like TOML uncommented.
    fn uncommented(text: &str) -> String {
        let plugins = &text[text.find("[plugins]").expect("plugins section")..];
        plugins
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(rest) if rest.starts_with('[') || rest.contains(" = ") => rest,
                _ => l,
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn keys_renamed_since_0_1_are_read_under_their_new_spelling_with_one_warning_each() {
        let text = include_str!("../../../tests/fixtures/config/wasmtel-0.1.toml");
        let (c, renamed) = Config::parse(text).expect("the 0.1 example still loads");
        let spellings: Vec<(&str, &str)> = renamed
            .iter()
            .map(|r| (r.old.as_str(), r.new.as_str()))
            .collect();
        assert_eq!(
            spellings,
            [
                ("otlp.interval", "otlp.delivery.interval"),
                ("otlp.timeout", "otlp.delivery.timeout"),
                ("otlp.metrics_queue", "otlp.delivery.metrics_queue"),
                ("otlp.logs_queue", "otlp.delivery.logs_queue"),
                ("otlp.logs_batch", "otlp.delivery.logs_batch"),
                ("otlp.shutdown_timeout", "shutdown_timeout"),
            ]
        );
        assert_eq!(
            renamed[0].to_string(),
            "line 16: `otlp.interval` is now spelled `otlp.delivery.interval`; it is read as such until wasmtel 0.3, rename it"
        );
        let d = &c.otlp.delivery;
        assert_eq!(
            (d.interval, d.timeout, c.shutdown_timeout),
            (
                Some(Duration::from_secs(60)),
                Some(Duration::from_secs(10)),
                Some(Duration::from_secs(5))
            )
        );
        assert_eq!(
            (d.metrics_queue, d.logs_queue, d.logs_batch),
            (Some(32), Some(65536), Some(512))
        );
        // Its exporter examples, uncommented: `interval` on an `[[exporters]]` entry too.
        let (c, renamed) = Config::parse(&uncommented(text)).expect("exporters load");
        assert_eq!(
            renamed.iter().map(|r| r.old.as_str()).collect::<Vec<_>>(),
            ["exporters[0].interval"]
        );
        assert_eq!(
            c.exporters[0].delivery.interval,
            Some(Duration::from_secs(10))
        );
        let old = "[otlp]\nqueue_note = 1\n[[exporters]]\nplugin = \"a\"\n[[exporters]]\nplugin = \"b\"\nqueue = 9\n[otlp.retry]\nmax_retries = 7\n";
        let err = Config::parse(old).expect_err("an unknown key stays unknown");
        assert!(err.contains("unknown field `queue_note`"), "{err}");
        let (c, renamed) = Config::parse(&old.replace("queue_note = 1\n", "")).expect("valid");
        assert_eq!(c.exporters[1].delivery.logs_queue, Some(9));
        assert_eq!(c.otlp.delivery.retry.max_retries, Some(7));
        assert_eq!(renamed.len(), 2);
        assert_eq!(
            (renamed[0].line, renamed[0].old.as_str()),
            (6, "exporters[1].queue")
        );
        let both = "[otlp]\ninterval = \"1s\"\n[otlp.delivery]\ninterval = \"2s\"\n";
        assert_eq!(
            Config::parse(both).expect_err("both spellings"),
            "line 2: `otlp.interval` and `otlp.delivery.interval` are both set; keep `otlp.delivery.interval` only"
        );
        let bad = "[otlp]\ninterval = \"often\"\n";
        let err = Config::parse(bad).expect_err("a bad value under the old spelling");
        assert!(
            err.starts_with(
                "line 2, column 12: `otlp.delivery.interval`: `often` is not a duration"
            ),
            "{err}"
        );
    }

    #[test]
    fn every_toml_snippet_of_the_readmes_loads_without_a_renamed_key() {
        for (readme, text) in [
            ("README.md", include_str!("../../../README.md")),
            (
                "sdk-guest/README.md",
                include_str!("../../../sdk-guest/README.md"),
            ),
        ] {
            let mut snippets = text
                .split("```toml\n")
                .skip(1)
                .map(|s| &s[..s.find("```").unwrap_or(s.len())]);
            for snippet in &mut snippets {
                // Cargo manifests in the READMEs are not host configs.
                if snippet.contains("[dependencies]")
                    || snippet.contains("[lib]")
                    || snippet.contains("[package]")
                {
                    continue;
                }
                let (_, renamed) = Config::parse(snippet).unwrap_or_else(|e| {
                    panic!("{readme}: a snippet does not load: {e}\n{snippet}")
                });
                assert!(
                    renamed.is_empty(),
                    "{readme}: old spellings {renamed:?} in\n{snippet}"
                );
            }
        }
    }

    #[test]
    fn limits_connections_and_disk_queue_settings_read_as_documented() {
        let example = Config::from_toml(include_str!("../../../examples/wasmtel.toml"))
            .expect("example parses");
        let defaults = Config::default();
        assert_eq!(example.intake.limits, defaults.intake.limits);
        let (e, d) = (&example.connections, &defaults.connections);
        assert_eq!(
            (e.max_connections, e.min_body_rate),
            (d.max_connections, d.min_body_rate)
        );
        assert_eq!(
            (e.header_timeout(), e.body_timeout(), e.idle_timeout()),
            (d.header_timeout(), d.body_timeout(), d.idle_timeout())
        );
        assert_eq!(example.delivery.queue, Some(QueueKind::Memory));
        assert_eq!(
            example.admin.history(),
            defaults.admin.history(),
            "the example's history is the default: 10 s for 1 h"
        );
        assert_eq!(
            defaults.admin.history(),
            (Duration::from_secs(10), Duration::from_secs(3600))
        );
        let fast =
            Config::from_toml("[admin]\nhistory_interval = \"1ms\"\nhistory_window = \"1m\"\n")
                .expect("valid");
        assert_eq!(
            fast.admin.history(),
            (Duration::from_millis(100), Duration::from_secs(60)),
            "no faster than 100 ms"
        );
        assert_eq!(example.delivery.fsync, Some(Fsync::Always));
        let c =
            Config::from_toml("[delivery]\nqueue = \"disk\"\nfsync = \"250ms\"\n").expect("valid");
        assert_eq!(c.delivery.queue, Some(QueueKind::Disk));
        assert_eq!(
            c.delivery.fsync,
            Some(Fsync::Every(Duration::from_millis(250)))
        );
        let error =
            Config::from_toml("[delivery]\nfsync = \"sometimes\"\n").expect_err("not a policy");
        assert!(
            error.contains("`sometimes` is not `always`, `never` or a period like \"1s\""),
            "{error}"
        );
        let error = Config::from_toml("[intake.limits]\nresources = -1\n").expect_err("negative");
        assert!(error.contains("resources"), "{error}");
    }

    #[test]
    fn env_fills_gaps_and_file_wins() {
        let mut c = Config::from_toml(
            "[delivery]\ninterval = \"2s\"\n[otlp.headers]\nx-team = \"file\"\n[resource]\nservice_name = \"from-file\"\n",
        )
        .expect("valid");
        c.apply_env(env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-team=env, api-key=s%3Dcret"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "500"),
            ("OTEL_SERVICE_NAME", "from-env"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment=prod,k8s.node.name=n%201",
            ),
        ]))
        .expect("valid env");
        assert_eq!(
            c.otlp.metrics_url().as_deref(),
            Some("http://collector:4318/v1/metrics")
        );
        assert_eq!(
            c.otlp.logs_url().as_deref(),
            Some("http://collector:4318/v1/logs")
        );
        assert_eq!(
            c.otlp.traces_url().as_deref(),
            Some("http://collector:4318/v1/traces")
        );
        let mut t = Config::default();
        t.apply_env(env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://tempo:4318/v1/traces",
            ),
        ]))
        .expect("valid");
        assert_eq!(
            t.otlp.traces_url().as_deref(),
            Some("http://tempo:4318/v1/traces"),
            "the traces URL is used as is"
        );
        assert_eq!(c.otlp.headers["x-team"], "file");
        assert_eq!(c.otlp.headers["api-key"], "s=cret");
        assert_eq!(c.delivery.interval, Some(Duration::from_secs(2)));
        assert_eq!(c.resource.service_name.as_deref(), Some("from-file"));
        assert_eq!(c.resource.attributes["k8s.node.name"], "n 1");

        let mut d = Config::default();
        d.apply_env(env(&[("OTEL_METRIC_EXPORT_INTERVAL", "1500")]))
            .expect("valid");
        assert_eq!(d.delivery.interval, Some(Duration::from_millis(1500)));
        assert_eq!(d.otlp.compression, None, "gzip unless told otherwise");
        assert_eq!(d.intake.on_full, OnFull::Reject);

        let mut e = Config::from_toml("[intake]\non_full = \"drop_oldest\"\n").expect("valid");
        e.apply_env(env(&[("OTEL_EXPORTER_OTLP_COMPRESSION", "none")]))
            .expect("valid");
        assert_eq!(e.otlp.compression, Some(Compression::None));
        assert_eq!(e.intake.on_full, OnFull::DropOldest);
        let err = Config::default()
            .apply_env(env(&[("OTEL_EXPORTER_OTLP_COMPRESSION", "zip")]))
            .expect_err("bad");
        assert_eq!(
            err.to_string(),
            "invalid OTEL_EXPORTER_OTLP_COMPRESSION=\"zip\": expected gzip or none"
        );
    }

    #[test]
    fn the_otlp_protocol_comes_from_file_then_env_per_signal_and_shapes_the_urls() {
        let mut c = Config::default();
        c.apply_env(env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317/"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", "http/json"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf"),
        ]))
        .expect("valid");
        use crate::model::Signal;
        assert_eq!(c.otlp.protocol(Signal::Metrics), Protocol::Grpc);
        assert_eq!(c.otlp.protocol(Signal::Logs), Protocol::HttpJson);
        assert_eq!(c.otlp.protocol(Signal::Traces), Protocol::HttpProtobuf);
        assert_eq!(
            c.otlp.traces_url().as_deref(),
            Some("http://collector:4317/v1/traces")
        );
        assert_eq!(
            c.otlp.metrics_url().as_deref(),
            Some("http://collector:4317")
        );
        assert_eq!(
            c.otlp.logs_url().as_deref(),
            Some("http://collector:4317/v1/logs")
        );
        let mut file = Config::from_toml(
            "[otlp]
protocol = \"http/protobuf\"\n",
        )
        .expect("valid");
        file.apply_env(env(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]))
            .expect("valid");
        assert_eq!(
            file.otlp.protocol(Signal::Metrics),
            Protocol::HttpProtobuf,
            "the file wins"
        );
        let err = Config::default()
            .apply_env(env(&[("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "thrift")]))
            .expect_err("bad");
        assert_eq!(
            err.to_string(),
            "invalid OTEL_EXPORTER_OTLP_METRICS_PROTOCOL=\"thrift\": expected grpc, http/protobuf or http/json"
        );
        assert!(Config::from_toml("[otlp]\nprotocol = \"grpc-web\"\n").is_err());
    }

    #[test]
    fn the_default_histogram_aggregation_comes_from_file_then_env() {
        const VAR: &str = "OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION";
        let mut c = Config::default();
        c.apply_env(env(&[(VAR, "base2_exponential_bucket_histogram")]))
            .expect("valid");
        assert_eq!(
            c.metrics.default_histogram_aggregation,
            Some(HistogramAggregation::Base2ExponentialBucketHistogram)
        );
        let mut file = Config::from_toml(
            "[metrics]\ndefault_histogram_aggregation = \"explicit_bucket_histogram\"\n",
        )
        .expect("valid");
        file.apply_env(env(&[(VAR, "base2_exponential_bucket_histogram")]))
            .expect("valid");
        assert_eq!(
            file.metrics.default_histogram_aggregation,
            Some(HistogramAggregation::ExplicitBucketHistogram)
        );
        let err = Config::default()
            .apply_env(env(&[(VAR, "exponential")]))
            .expect_err("bad");
        assert_eq!(
            err.to_string(),
            "invalid OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION=\"exponential\": expected explicit_bucket_histogram or base2_exponential_bucket_histogram"
        );
    }

    #[test]
    fn the_gpu_poller_runs_every_five_seconds_unless_turned_off() {
        assert_eq!(
            Config::default().gpu.interval(),
            Some(Duration::from_secs(5))
        );
        let off = Config::from_toml("[gpu]\npoll_interval = \"0s\"\n").expect("valid");
        assert_eq!(off.gpu.interval(), None);
        let fast =
            Config::from_toml("[gpu]\npoll_interval = \"500ms\"\nlibrary = \"/opt/nvml.so\"\n")
                .expect("valid");
        assert_eq!(
            (fast.gpu.interval(), fast.gpu.library.as_str()),
            (Some(Duration::from_millis(500)), "/opt/nvml.so")
        );
        assert_eq!(
            Config::default().system.interval(),
            Some(Duration::from_secs(10))
        );
        let off = Config::from_toml("[system]\npoll_interval = \"0s\"\n").expect("valid");
        assert_eq!(off.system.interval(), None);
    }

    #[test]
    fn the_exemplar_filter_comes_from_file_then_env() {
        const VAR: &str = "OTEL_METRICS_EXEMPLAR_FILTER";
        let mut c = Config::default();
        c.apply_env(env(&[])).expect("valid");
        assert_eq!(
            c.metrics.exemplar_filter, None,
            "unset: the engine's trace_based"
        );
        c.apply_env(env(&[(VAR, "always_on")])).expect("valid");
        assert_eq!(c.metrics.exemplar_filter, Some(ExemplarFilter::AlwaysOn));
        let mut file =
            Config::from_toml("[metrics]\nexemplar_filter = \"always_off\"\n").expect("valid");
        file.apply_env(env(&[(VAR, "always_on")])).expect("valid");
        assert_eq!(
            file.metrics.exemplar_filter,
            Some(ExemplarFilter::AlwaysOff)
        );
        let err = Config::default()
            .apply_env(env(&[(VAR, "sometimes")]))
            .expect_err("bad");
        assert_eq!(
            err.to_string(),
            "invalid OTEL_METRICS_EXEMPLAR_FILTER=\"sometimes\": expected trace_based, always_on or always_off"
        );
    }

    #[test]
    fn the_temporality_preference_is_read_as_the_sdks_read_it() {
        const VAR: &str = "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE";
        for (text, want) in [
            ("Delta", TemporalityPreference::Delta),
            ("LOWMEMORY", TemporalityPreference::LowMemory),
            ("cumulative", TemporalityPreference::Cumulative),
        ] {
            let mut c = Config::default();
            c.apply_env(env(&[(VAR, text)])).expect("valid");
            assert_eq!(c.otlp.temporality_preference, Some(want), "{text}");
        }
        let err = Config::default()
            .apply_env(env(&[(VAR, "sometimes")]))
            .expect_err("bad");
        assert_eq!(
            err.to_string(),
            "invalid OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE=\"sometimes\": expected cumulative, delta or lowmemory"
        );
    }

    #[test]
    fn a_plugin_name_is_a_file_stem_never_a_path() {
        for (toml, key) in [
            (
                "[[exporters]]\nplugin = \"../evil\"\nendpoint = \"udp://127.0.0.1:1\"\n",
                "exporters[0].plugin",
            ),
            (
                "[[transforms]]\nplugin = \"/etc/passwd\"\n",
                "transforms[0].plugin",
            ),
            ("[[views]]\nplugin = \".hidden\"\n", "views[0].plugin"),
            (
                "[otlp]\ntransforms = [\"redact\", \"a/b\"]\n",
                "otlp.transforms[1]",
            ),
        ] {
            let error = Config::from_toml(toml).expect_err(toml);
            assert!(
                error.starts_with(&format!("`{key}`: `")) && error.contains("is not a plugin name"),
                "{error}"
            );
        }
        let ok = "[[exporters]]\nplugin = \"My_Exporter-2.1\"\nendpoint = \"udp://127.0.0.1:1\"\n";
        assert!(Config::from_toml(ok).is_ok());
    }

    #[test]
    fn errors_about_headers_and_keys_never_show_their_values() {
        const CANARY: &str = "sk-live-CANARY-4242";
        for raw in [
            format!("api-key={CANARY},{CANARY}"),
            format!("x=1, api-key=%zz{CANARY}"),
            format!("x=1,=%{CANARY}"),
        ] {
            let err = Config::default()
                .apply_env(env(&[("OTEL_EXPORTER_OTLP_HEADERS", &raw)]))
                .expect_err("malformed")
                .to_string();
            assert!(!err.contains("CANARY"), "{err}");
            assert!(
                err.starts_with("invalid OTEL_EXPORTER_OTLP_HEADERS: entry "),
                "{err}"
            );
        }
        let err = Config::default()
            .apply_env(env(&[(
                "OTEL_EXPORTER_OTLP_HEADERS",
                "a=1, api-key=%zzsecret",
            )]))
            .expect_err("bad escape")
            .to_string();
        assert_eq!(
            err,
            "invalid OTEL_EXPORTER_OTLP_HEADERS: entry 2 (`api-key`): the value has a bad %-escape"
        );
        // Resource attributes are not secret: the whole value is shown.
        let err = Config::default()
            .apply_env(env(&[("OTEL_RESOURCE_ATTRIBUTES", "team")]))
            .expect_err("bad")
            .to_string();
        assert_eq!(
            err,
            "invalid OTEL_RESOURCE_ATTRIBUTES=\"team\": entry 1 is not key=value"
        );
        for toml in [
            format!("[otlp.headers]\nauthorization = [\"{CANARY}\"]\n"),
            format!("[[exporters]]\nplugin = \"datadog\"\napi_key = [\"{CANARY}\"]\n"),
            format!("[admin]\ntoken = {{ x = \"{CANARY}\" }}\n"),
        ] {
            let err = Config::from_toml(&toml).expect_err("wrong type");
            assert!(!err.contains("CANARY"), "{err}");
            assert!(err.starts_with("line "), "{err}");
        }
        let err = Config::from_toml("[otlp.headers]\nauthorization = 42\n").expect_err("type");
        assert_eq!(
            err,
            "line 2, column 17: `otlp.headers.authorization`: invalid type: integer (value not shown), expected a string"
        );
    }

    #[test]
    fn bad_values_name_their_source() {
        let err = Config::default()
            .apply_env(env(&[("OTEL_METRIC_EXPORT_INTERVAL", "soon")]))
            .expect_err("bad");
        assert_eq!(
            err.to_string(),
            "invalid OTEL_METRIC_EXPORT_INTERVAL=\"soon\": expected a positive number of milliseconds"
        );
        let err = Config::default()
            .apply_env(env(&[("OTEL_EXPORTER_OTLP_HEADERS", "novalue")]))
            .expect_err("bad");
        assert_eq!(
            err.to_string(),
            "invalid OTEL_EXPORTER_OTLP_HEADERS: entry 1 is not key=value"
        );
        let err = Config::from_toml("[intake]\nlisten = \"nowhere\"\n").expect_err("bad");
        assert!(err.starts_with("line 2, column 10: "), "{err}");
        let err = Config::from_toml("[intake]\nlisen = \"127.0.0.1:1\"\n").expect_err("typo");
        assert!(err.contains("unknown field `lisen`"), "{err}");
        let err = Config::from_toml("[delivery]\ninterval = \"often\"\n").expect_err("bad");
        assert!(err.contains("`often` is not a duration"), "{err}");
        let err = Config::from_toml("[delivery]\nudp_spread = 2\n").expect_err("bad");
        assert!(
            err.contains("udp_spread") && err.contains("2 is not a fraction in (0, 1]"),
            "{err}"
        );
        let (c, _) = Config::parse("[delivery]\nudp_spread = 0.25\n").expect("a fraction");
        assert_eq!(c.delivery.udp_spread, Some(0.25));
    }
}
