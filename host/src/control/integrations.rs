//! The integrations the host delivers to, as operators see and manage them: configured ones
//! (read-only) and stored ones (created, changed, enabled, disabled and deleted at run time),
//! their state, test connection and resume.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::task::JoinHandle;

use super::spec::{OTLP, PROMETHEUS, Spec, SpecError, signal_url};
use super::store::{Store, StoreError, Stored};
use crate::config::{ExporterConfig, OtlpConfig, PluginsConfig};
use crate::export::delivery::status::Snapshot;
use crate::export::delivery::{Drain, OTLP_EXPORTER, Report, State, Status};
use crate::export::otlp::client::OtlpClient;
use crate::export::otlp::exporter::OtlpExporter;
use crate::export::plugin::PluginExporter;
use crate::export::probe::Diagnosis;
use crate::metrics::Registries;
use crate::model::Signal;
use crate::pipeline::{EventSink, Pipeline};
use crate::plugins::reload::Reloadable as _;
use crate::plugins::{Loader, Transforms};
use crate::telemetry::SelfTelemetry;

/// How long a test connection waits for an answer.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// One integration as the API shows it: never a credential value, only which headers are set.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Integration {
    /// Its id (`otlp` or the plugin's name when configured; a UUID when stored).
    pub id: String,
    /// A name people recognise it by.
    pub name: String,
    /// `otlp`, or the exporter plugin's name.
    #[serde(rename = "type")]
    pub kind: String,
    /// Where it was defined: `config` or `store`.
    pub source: &'static str,
    /// Configured integrations cannot be changed through the API.
    pub read_only: bool,
    /// Whether it runs.
    pub enabled: bool,
    /// The preset it was created with, if any.
    pub preset: Option<String>,
    /// Each signal's endpoint.
    pub endpoints: Vec<(&'static str, String)>,
    /// The names of the headers sent with its requests.
    pub headers_set: Vec<String>,
    /// Each signal's delivery status.
    pub signals: Vec<Report>,
}

/// One signal's test connection result.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TestResult {
    /// `metrics` or `logs`.
    pub signal: &'static str,
    /// What the probe found.
    #[serde(flatten)]
    pub diagnosis: Diagnosis,
    /// The diagnosis in words.
    pub message: String,
}

/// The native OTLP integration, with its endpoints and the names of its headers.
#[derive(Clone)]
struct Otlp {
    exporter: Arc<OtlpExporter>,
    endpoints: Vec<(&'static str, String)>,
    headers: Vec<String>,
}

/// Why an integration could not be managed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// There is no integration with this id.
    #[error("no integration `{0}`")]
    NotFound(String),
    /// The integration comes from the config file.
    #[error("integration `{0}` comes from the config file and is read-only; change it there")]
    ReadOnly(String),
    /// A field of the request is invalid.
    #[error("invalid integration: {0}")]
    Invalid(#[from] SpecError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The integration could not be started.
    #[error("integration `{0}` cannot start: {1}")]
    Start(String, String),
}

/// What running stored integrations takes from the host.
pub struct Runtime {
    /// The store.
    pub store: Store,
    /// What metrics exporters read.
    pub registries: Arc<Registries>,
    /// Self-telemetry.
    pub telemetry: SelfTelemetry,
    /// The transform chain.
    pub transforms: Transforms,
    /// Where log exporters are plugged in.
    pub pipeline: Arc<Pipeline>,
    /// The shutdown signal the delivery tasks follow.
    pub drain: Drain,
    /// The `[otlp]` settings stored integrations share (interval, queues, retry, timeout).
    pub template: OtlpConfig,
    /// Where exporter plugins are loaded from.
    pub plugins: PluginsConfig,
    /// Where compiled plugins are cached.
    pub cache: Option<std::path::PathBuf>,
    /// The plugin loader: the host's, or one made when a stored integration first needs it.
    pub loader: Mutex<Option<Arc<Loader>>>,
}

impl Runtime {
    fn loader(&self) -> Result<Arc<Loader>, String> {
        let mut loader = self.loader.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(l) = loader.as_ref() {
            return Ok(l.clone());
        }
        let made =
            Arc::new(Loader::new(&self.plugins, self.cache.clone()).map_err(|e| e.to_string())?);
        *loader = Some(made.clone());
        Ok(made)
    }
}

/// A stored integration's exporter: native OTLP or a plugin.
#[derive(Clone)]
enum Exporter {
    Otlp(Arc<OtlpExporter>),
    Plugin(Arc<PluginExporter>),
}

impl Exporter {
    fn reports(&self) -> Vec<Report> {
        match self {
            Exporter::Otlp(e) => e.reports(),
            Exporter::Plugin(e) => e.reports(),
        }
    }

    fn resume(&self) -> bool {
        match self {
            Exporter::Otlp(e) => e.resume(),
            Exporter::Plugin(e) => e.resume(),
        }
    }

    async fn collect(&self) {
        match self {
            Exporter::Otlp(e) => e.collect().await,
            Exporter::Plugin(e) => {
                e.export_metrics().await;
                e.export_logs().await;
            }
        }
    }
}

/// A stored integration's running exporter.
struct Running {
    exporter: Exporter,
    sink: Arc<dyn EventSink>,
    tasks: Vec<JoinHandle<()>>,
}

/// A stored integration, and its exporter while enabled.
struct Live {
    stored: Stored,
    running: Option<Running>,
}

/// The stored integrations and what runs them.
struct Stores {
    runtime: Runtime,
    live: Mutex<Vec<Live>>,
}

/// Every integration of a running host.
#[derive(Clone, Default)]
pub struct Integrations {
    otlp: Option<Otlp>,
    plugins: Vec<Arc<PluginExporter>>,
    stored: Option<Arc<Stores>>,
}

impl Integrations {
    /// The configured OTLP exporter (with its configuration, for endpoints and header names) and plugin exporters.
    pub fn new(
        otlp: Option<Arc<OtlpExporter>>,
        config: &OtlpConfig,
        plugins: Vec<Arc<PluginExporter>>,
    ) -> Self {
        let endpoints = [
            ("metrics", config.metrics_url()),
            ("logs", config.logs_url()),
        ]
        .into_iter()
        .filter_map(|(s, url)| Some((s, url?)))
        .collect();
        let headers = config.headers.keys().cloned().collect();
        Self {
            otlp: otlp.map(|exporter| Otlp {
                exporter,
                endpoints,
                headers,
            }),
            plugins,
            stored: None,
        }
    }

    /// The same integrations plus those in `runtime`'s store, the enabled ones started.
    pub fn with_store(mut self, runtime: Runtime) -> Result<Self, StoreError> {
        let mut live = Vec::new();
        for stored in runtime.store.list()? {
            let running = launch(&runtime, &stored).unwrap_or_else(|e| {
                tracing::warn!(integration = %stored.id, "stored integration not started: {e}");
                None
            });
            live.push(Live { stored, running });
        }
        self.stored = Some(Arc::new(Stores {
            runtime,
            live: Mutex::new(live),
        }));
        Ok(self)
    }

    fn stores(&self) -> Option<std::sync::MutexGuard<'_, Vec<Live>>> {
        self.stored
            .as_ref()
            .map(|s| s.live.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn is_configured(&self, id: &str) -> bool {
        (id == OTLP_EXPORTER && self.otlp.is_some())
            || self.plugins.iter().any(|p| p.plugin() == id)
    }

    /// Creates, stores and (unless disabled) starts an integration.
    pub fn create(&self, spec: Spec) -> Result<Integration, ControlError> {
        let stores = self.stored.as_ref().ok_or_else(|| {
            ControlError::Start("new".into(), "the integrations store is not open".into())
        })?;
        let stored = spec.create(uuid::Uuid::new_v4().to_string())?;
        let running = launch(&stores.runtime, &stored)
            .map_err(|e| ControlError::Start(stored.id.clone(), e))?;
        if let Err(e) = stores.runtime.store.put(&stored) {
            if let Some(r) = running {
                stop(&stores.runtime, r);
            }
            return Err(e.into());
        }
        let live = Live { stored, running };
        let view = stored_view(&live);
        if let Some(mut all) = self.stores() {
            all.push(live);
        }
        Ok(view)
    }

    /// The stores and the position of stored integration `id`, locked for a change.
    fn locate(
        &self,
        id: &str,
    ) -> Result<(&Stores, std::sync::MutexGuard<'_, Vec<Live>>, usize), ControlError> {
        if self.is_configured(id) {
            return Err(ControlError::ReadOnly(id.to_owned()));
        }
        let missing = || ControlError::NotFound(id.to_owned());
        let stores = self.stored.as_deref().ok_or_else(missing)?;
        let all = stores.live.lock().unwrap_or_else(PoisonError::into_inner);
        let at = all
            .iter()
            .position(|l| l.stored.id == id)
            .ok_or_else(missing)?;
        Ok((stores, all, at))
    }

    /// Applies `spec` to stored integration `id`, restarting it as needed.
    pub fn update(&self, id: &str, spec: Spec) -> Result<Integration, ControlError> {
        let (stores, mut all, at) = self.locate(id)?;
        let live = &mut all[at];
        let mut next = live.stored.clone();
        spec.update(&mut next)?;
        stores.runtime.store.put(&next)?;
        if let Some(r) = live.running.take() {
            stop(&stores.runtime, r);
        }
        live.stored = next;
        live.running = launch(&stores.runtime, &live.stored)
            .map_err(|e| ControlError::Start(id.to_owned(), e))?;
        Ok(stored_view(live))
    }

    /// Stops and deletes stored integration `id`.
    pub fn delete(&self, id: &str) -> Result<(), ControlError> {
        let (stores, mut all, at) = self.locate(id)?;
        stores.runtime.store.delete(id)?;
        if let Some(r) = all.remove(at).running {
            stop(&stores.runtime, r);
        }
        Ok(())
    }

    /// The metric name prefix of enabled stored Prometheus integration `id`.
    pub fn prometheus_prefix(&self, id: &str) -> Option<String> {
        let all = self.stores()?;
        let live = all.iter().find(|l| l.stored.id == id)?;
        let s = &live.stored;
        (s.enabled && s.kind_type == PROMETHEUS)
            .then(|| s.config.get("prefix")?.as_str().map(str::to_owned))
            .flatten()
    }

    /// Collects every running stored metrics integration now.
    pub async fn collect_stored(&self) {
        let exporters: Vec<Exporter> = self
            .stores()
            .map(|all| {
                all.iter()
                    .filter_map(|l| l.running.as_ref().map(|r| r.exporter.clone()))
                    .collect()
            })
            .unwrap_or_default();
        for exporter in exporters {
            exporter.collect().await;
        }
    }

    /// The delivery tasks of running stored integrations, for shutdown to wait on.
    pub fn take_tasks(&self) -> Vec<JoinHandle<()>> {
        self.stores()
            .map(|mut all| {
                all.iter_mut()
                    .filter_map(|l| l.running.as_mut())
                    .flat_map(|r| std::mem::take(&mut r.tasks))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every integration.
    pub fn list(&self) -> Vec<Integration> {
        let otlp = self.otlp.iter().map(|o| Integration {
            id: OTLP_EXPORTER.to_owned(),
            name: OTLP_EXPORTER.to_owned(),
            kind: OTLP_EXPORTER.to_owned(),
            source: "config",
            read_only: true,
            enabled: true,
            preset: None,
            endpoints: o.endpoints.clone(),
            headers_set: o.headers.clone(),
            signals: o.exporter.reports(),
        });
        let plugins = self.plugins.iter().map(|p| Integration {
            id: p.plugin().to_owned(),
            name: p.plugin().to_owned(),
            kind: p.plugin().to_owned(),
            source: "config",
            read_only: true,
            enabled: true,
            preset: None,
            endpoints: p
                .endpoints()
                .into_iter()
                .map(|(s, e)| (s.as_str(), e))
                .collect(),
            headers_set: p.credential_headers(),
            signals: p.reports(),
        });
        let stored: Vec<Integration> = self
            .stores()
            .map(|all| all.iter().map(stored_view).collect())
            .unwrap_or_default();
        otlp.chain(plugins).chain(stored).collect()
    }

    /// The integration `id`.
    pub fn get(&self, id: &str) -> Option<Integration> {
        self.list().into_iter().find(|i| i.id == id)
    }

    /// Every signal's delivery report.
    pub fn reports(&self) -> Vec<Report> {
        self.list().into_iter().flat_map(|i| i.signals).collect()
    }

    /// Resumes integration `id`: whether it was paused, or `None` if there is no such integration.
    pub fn resume(&self, id: &str) -> Option<bool> {
        if id == OTLP_EXPORTER {
            return self.otlp.as_ref().map(|o| o.exporter.resume());
        }
        if let Some(all) = self.stores()
            && let Some(live) = all.iter().find(|l| l.stored.id == id)
        {
            return Some(live.running.as_ref().is_some_and(|r| r.exporter.resume()));
        }
        let matching: Vec<_> = self.plugins.iter().filter(|p| p.plugin() == id).collect();
        if matching.is_empty() {
            return None;
        }
        Some(matching.iter().fold(false, |any, p| p.resume() | any))
    }

    /// Tests integration `id`'s endpoints, or `None` if there is no such integration.
    pub async fn test(&self, id: &str) -> Option<Vec<TestResult>> {
        let found = self.stores().and_then(|all| {
            let live = all.iter().find(|l| l.stored.id == id)?;
            Some((
                live.stored.clone(),
                live.running.as_ref().map(|r| r.exporter.clone()),
            ))
        });
        let results: Vec<(Signal, Diagnosis)> = match found {
            Some((stored, running)) => test_stored(&stored, running).await,
            None if id == OTLP_EXPORTER => self.otlp.as_ref()?.exporter.test(PROBE_TIMEOUT).await,
            None => {
                let plugin = self.plugins.iter().find(|p| p.plugin() == id)?;
                plugin.test(PROBE_TIMEOUT).await
            }
        };
        Some(
            results
                .into_iter()
                .map(|(signal, diagnosis)| TestResult {
                    signal: signal.as_str(),
                    message: diagnosis.message(),
                    diagnosis,
                })
                .collect(),
        )
    }
}

/// Tests a stored integration: OTLP with a client built from its settings (enabled or not), a
/// plugin through its running exporter.
async fn test_stored(stored: &Stored, running: Option<Exporter>) -> Vec<(Signal, Diagnosis)> {
    let signal = stored.kind;
    if stored.kind_type != OTLP {
        return match running {
            Some(Exporter::Plugin(p)) => p.test(PROBE_TIMEOUT).await,
            _ => vec![(
                signal,
                Diagnosis::Settings {
                    reason: "the integration is disabled; enable it to test it".into(),
                },
            )],
        };
    }
    let client = OtlpClient::new(
        signal_url(stored),
        signal.as_str(),
        &stored.headers,
        PROBE_TIMEOUT,
    );
    let diagnosis = match client {
        Ok(client) => client.probe(PROBE_TIMEOUT).await,
        Err(e) => Diagnosis::Settings {
            reason: e.to_string(),
        },
    };
    vec![(signal, diagnosis)]
}

/// Starts what an enabled stored integration runs: nothing for a Prometheus scrape path (the
/// Prometheus listener serves it), else its exporter.
fn launch(runtime: &Runtime, stored: &Stored) -> Result<Option<Running>, String> {
    if !stored.enabled || stored.kind_type == PROMETHEUS {
        return Ok(None);
    }
    start(runtime, stored).map(Some)
}

/// Starts a stored integration: an OTLP exporter for its one signal, plugged into the pipeline.
fn start(runtime: &Runtime, stored: &Stored) -> Result<Running, String> {
    if stored.kind_type != OTLP {
        return start_plugin(runtime, stored);
    }
    let url = signal_url(stored);
    let config = OtlpConfig {
        endpoint: None,
        metrics_endpoint: (stored.kind == Signal::Metrics).then(|| url.clone()),
        logs_endpoint: (stored.kind == Signal::Logs).then_some(url),
        logs: stored.kind == Signal::Logs,
        headers: stored.headers.clone(),
        ..runtime.template.clone()
    };
    let exporter = OtlpExporter::new(
        &config,
        runtime.registries.clone(),
        runtime.telemetry.clone(),
        runtime.transforms.clone(),
    )
    .map_err(|e| e.to_string())?
    .ok_or("no endpoint")?
    .named(&stored.id);
    let exporter = Arc::new(exporter);
    let tasks = exporter.spawn(runtime.drain.clone());
    let sink: Arc<dyn EventSink> = exporter.clone();
    runtime.pipeline.add_sink(sink.clone());
    Ok(Running {
        exporter: Exporter::Otlp(exporter),
        sink,
        tasks,
    })
}

/// Starts a stored plugin integration: the plugin loaded (and compiled: a blocking call) and
/// bound to the stored endpoint, preset and headers.
fn start_plugin(runtime: &Runtime, stored: &Stored) -> Result<Running, String> {
    let mut settings = stored.config.clone();
    let site = settings
        .remove("site")
        .and_then(|v| v.as_str().map(str::to_owned));
    let config: toml::Table = settings
        .into_iter()
        .filter_map(|(k, v)| {
            let value = match v {
                serde_json::Value::String(s) => toml::Value::String(s),
                serde_json::Value::Bool(b) => toml::Value::Boolean(b),
                serde_json::Value::Number(n) => n
                    .as_i64()
                    .map(toml::Value::Integer)
                    .or_else(|| n.as_f64().map(toml::Value::Float))?,
                other => toml::Value::String(other.to_string()),
            };
            Some((k, value))
        })
        .collect();
    let entry = ExporterConfig {
        plugin: stored.kind_type.clone(),
        endpoint: (!stored.endpoint.is_empty()).then(|| stored.endpoint.clone()),
        metrics_endpoint: None,
        logs_endpoint: None,
        preset: stored.preset.clone(),
        site,
        api_key: None,
        interval: None,
        headers: stored.headers.clone(),
        queue: None,
        config,
    };
    let loader = runtime.loader()?;
    let (plugin, digest, _) = loader.load_exporter(&entry.plugin, &entry.config)?;
    let exporter = PluginExporter::new(
        plugin,
        digest,
        &entry,
        runtime.registries.clone(),
        runtime.telemetry.clone(),
        runtime.transforms.clone(),
    )?;
    let exporter = Arc::new(exporter);
    let tasks = vec![exporter.spawn(runtime.drain.clone())];
    let sink: Arc<dyn EventSink> = exporter.clone();
    runtime.pipeline.add_sink(sink.clone());
    Ok(Running {
        exporter: Exporter::Plugin(exporter),
        sink,
        tasks,
    })
}

/// Stops a stored integration's exporter; what it had queued is dropped.
fn stop(runtime: &Runtime, running: Running) {
    runtime.pipeline.remove_sink(&running.sink);
    running.tasks.iter().for_each(JoinHandle::abort);
}

/// How the API shows a stored integration.
fn stored_view(live: &Live) -> Integration {
    let s = &live.stored;
    let signals = match &live.running {
        Some(r) => r.exporter.reports(),
        None => {
            let mut status: Snapshot = Status::default().snapshot();
            if !s.enabled {
                status.state = State::Disabled;
            }
            vec![Report {
                exporter: s.id.clone(),
                signal: s.kind.as_str(),
                status,
                queued: 0,
                dropped: 0,
            }]
        }
    };
    Integration {
        id: s.id.clone(),
        name: s.name.clone(),
        kind: s.kind_type.clone(),
        source: "store",
        read_only: false,
        enabled: s.enabled,
        preset: s.preset.clone(),
        endpoints: match live.running.as_ref().map(|r| &r.exporter) {
            Some(Exporter::Plugin(p)) => p
                .endpoints()
                .into_iter()
                .map(|(signal, e)| (signal.as_str(), e))
                .collect(),
            _ if s.kind_type == PROMETHEUS => vec![(s.kind.as_str(), format!("/metrics/{}", s.id))],
            _ if s.kind_type != OTLP => vec![(s.kind.as_str(), s.endpoint.clone())],
            _ => vec![(s.kind.as_str(), signal_url(s))],
        },
        headers_set: s.headers.keys().cloned().collect(),
        signals,
    }
}
