//! The integrations the host delivers to, as operators see and manage them: configured ones
//! (read-only) and stored ones (created, changed, enabled, disabled and deleted at run time).
//! Both are built from an [`ExporterSpec`] by [`Exporter::build`] and started the same way.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::task::JoinHandle;

use super::spec::{Change, spec_of};
use super::store::{Entry, Store, StoreError, Stored};
use crate::config::{Config, DeliveryConfig};
use crate::export::delivery::status::Snapshot;
use crate::export::delivery::{Drain, Report, State, Status};
use crate::export::exporter::{BuildContext, Exporter};
use crate::export::probe::Diagnosis;
use crate::export::spec::{BuildError, ExporterSpec, SpecError};
use crate::model::Signal;
use crate::pipeline::{Pipeline, RecordSink};
use crate::tenancy::{Principal, Tenancy};

/// How long a test connection waits for an answer.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// One integration as the API shows it: never a credential value, only which headers are set.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Integration {
    /// Its id (a configured one's name; a UUID when stored).
    pub id: String,
    /// A name people recognise it by; self-metrics carry it.
    pub name: String,
    /// `otlp`, `prometheus`, or the exporter plugin's name.
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
    /// The tenant that owns it, if a tenant does.
    pub tenant: Option<String>,
    /// What it receives (`{}`: everything).
    pub select: crate::model::select::Select,
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
    Start(String, BuildError),
    /// The change failed in the host.
    #[error("the change failed in the host: {0}")]
    Crashed(String),
}

/// Why the integrations could not start.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The credentials key could not be read or created.
    #[error(transparent)]
    Secret(#[from] super::secrets::SecretError),
    /// The store could not be opened or read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A configured integration's settings are wrong: its name (or `[[exporters]]`) and why.
    #[error("integration `{0}`: {1}")]
    Spec(String, SpecError),
    /// A configured integration could not be built: its name and why.
    #[error("integration `{0}`: {1}")]
    Build(String, BuildError),
    /// Starting the integrations failed in the host.
    #[error("integrations: {0}")]
    Internal(String),
}

/// What starting integrations takes from the host.
#[derive(Debug)]
pub struct Runtime {
    /// What building an exporter takes.
    pub build: BuildContext,
    /// Where log exporters are plugged in.
    pub pipeline: Arc<Pipeline>,
    /// The shutdown signal the delivery tasks follow.
    pub drain: Drain,
    /// `[delivery]`, the defaults of every integration.
    pub defaults: DeliveryConfig,
    /// The store.
    pub store: Store,
    /// Who may see and change what.
    pub tenancy: Arc<Tenancy>,
}

/// A stored integration, its exporter while it runs, and why it does not when it should.
struct Live {
    stored: Stored,
    running: Option<Arc<Exporter>>,
    failure: Option<String>,
}

struct Inner {
    runtime: Runtime,
    configured: Vec<Arc<Exporter>>,
    stored: Mutex<Vec<Live>>,
}

/// Every integration of a running host.
#[derive(Clone)]
pub struct Integrations(Arc<Inner>);

impl std::fmt::Debug for Integrations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Integrations")
            .field("configured", &self.0.configured.len())
            .finish_non_exhaustive()
    }
}

impl Integrations {
    /// Starts the configured integrations (any failure stops the host: the config is wrong)
    /// and the enabled stored ones (a failure is logged and the integration shown as failing).
    /// Blocking: plugins are compiled.
    pub fn start(runtime: Runtime, configured: &[ExporterSpec]) -> Result<Self, OpenError> {
        let mut exporters = Vec::new();
        for spec in configured {
            let exporter =
                launch(&runtime, spec).map_err(|e| OpenError::Build(spec.name.clone(), e))?;
            exporters.push(exporter);
        }
        let mut live = Vec::new();
        for mut stored in runtime.store.list()? {
            let pinned = pin(&runtime.tenancy, &mut stored);
            let started = match pinned.and_then(|()| spec_of(&stored, &runtime.defaults)) {
                Ok(Some(spec)) if stored.enabled => {
                    launch(&runtime, &spec).map(Some).map_err(|e| e.to_string())
                }
                Ok(_) => Ok(None),
                Err(e) => Err(e.to_string()),
            };
            let (running, failure) = match started {
                Ok(running) => (running, None),
                Err(e) => {
                    tracing::warn!(integration = %stored.name, id = %stored.id, "stored integration not started: {e}");
                    (None, Some(e))
                }
            };
            live.push(Live {
                stored,
                running,
                failure,
            });
        }
        Ok(Self(Arc::new(Inner {
            runtime,
            configured: exporters,
            stored: Mutex::new(live),
        })))
    }

    /// Opens the store in `config`'s data directory and starts the integrations of `config`
    /// (its `[otlp]` and `[[exporters]]`) and the stored ones, as [`Integrations::start`] does,
    /// on a blocking thread; their tasks follow `drain`.
    pub async fn open(
        config: &Config,
        build: BuildContext,
        pipeline: Arc<Pipeline>,
        tenancy: Arc<Tenancy>,
        drain: Drain,
    ) -> Result<Self, OpenError> {
        let data_dir = config.data_dir();
        let key = std::env::var(super::secrets::KEY_ENV).ok();
        let sealer = super::secrets::Sealer::load_or_create(key.as_deref(), &data_dir)?;
        let runtime = Runtime {
            build,
            pipeline,
            drain,
            defaults: config.delivery.clone(),
            store: Store::open(&data_dir, sealer)?,
            tenancy,
        };
        let specs = crate::export::spec::configured(config)
            .map_err(|(name, e)| OpenError::Spec(name, e))?;
        tokio::task::spawn_blocking(move || Self::start(runtime, &specs))
            .await
            .map_err(|e| OpenError::Internal(e.to_string()))?
    }

    fn stored(&self) -> MutexGuard<'_, Vec<Live>> {
        self.0.stored.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Configured integration `id`, which only the operator sees.
    fn configured(&self, who: &Principal, id: &str) -> Option<&Arc<Exporter>> {
        match who {
            Principal::Operator => self.0.configured.iter().find(|e| e.id() == id),
            Principal::Tenant(_) => None,
        }
    }

    /// The plugin set their plugins are loaded into.
    pub fn plugins(&self) -> &Arc<crate::plugins::PluginSet> {
        &self.0.runtime.build.plugins
    }

    /// The store the integrations (and the tenants) are kept in.
    pub fn store(&self) -> &Store {
        &self.0.runtime.store
    }

    /// Every running exporter: configured ones, then stored ones.
    pub fn exporters(&self) -> Vec<Arc<Exporter>> {
        let mut all = self.0.configured.clone();
        all.extend(self.stored().iter().filter_map(|l| l.running.clone()));
        all
    }

    /// Why `name` cannot name a new integration of `kind` of `owner`: another one of that
    /// signal and owner has it (tenants name theirs apart from everyone else's).
    fn name_taken(
        &self,
        name: &str,
        kind: Signal,
        except: Option<&str>,
        owner: Option<&str>,
    ) -> Option<SpecError> {
        let configured = self.0.configured.iter().any(|e| {
            owner.is_none()
                && e.name() == name
                && e.describe()
                    .endpoints
                    .iter()
                    .any(|(s, _)| *s == kind.as_str())
        });
        let stored = self.stored().iter().any(|l| {
            l.stored.name == name
                && l.stored.kind == kind
                && l.stored.tenant.as_deref() == owner
                && Some(l.stored.id.as_str()) != except
        });
        (configured || stored).then(|| {
            SpecError::new(
                "name",
                format!(
                    "another {} integration is named `{name}`; choose another name",
                    kind.as_str()
                ),
            )
        })
    }

    /// Creates, stores and (unless disabled) starts an integration; blocking (plugins compile).
    pub fn create(&self, who: &Principal, spec: Change) -> Result<Integration, ControlError> {
        let mut stored = spec.create(uuid::Uuid::new_v4().to_string())?;
        stored.tenant = who.tenant().map(str::to_owned);
        pin(&self.0.runtime.tenancy, &mut stored)?;
        let owner = stored.tenant.as_deref();
        if let Some(taken) = self.name_taken(&stored.name, stored.kind, None, owner) {
            return Err(taken.into());
        }
        let running = self.run(&stored)?;
        if let Err(e) = self.0.runtime.store.put(&stored) {
            if let Some(r) = running {
                self.halt(&r);
            }
            return Err(e.into());
        }
        let live = Live {
            stored,
            running,
            failure: None,
        };
        let view = view(&live, &self.0.runtime.defaults);
        self.stored().push(live);
        Ok(view)
    }

    /// Starts a stored integration if it is enabled and pushes (a Prometheus one is served by
    /// the Prometheus listener instead).
    fn run(&self, stored: &Stored) -> Result<Option<Arc<Exporter>>, ControlError> {
        match spec_of(stored, &self.0.runtime.defaults)? {
            Some(spec) if stored.enabled => launch(&self.0.runtime, &spec)
                .map(Some)
                .map_err(|e| ControlError::Start(stored.name.clone(), e)),
            _ => Ok(None),
        }
    }

    /// Stops a running exporter; what it had queued is dropped.
    fn halt(&self, exporter: &Arc<Exporter>) {
        let sink: Arc<dyn RecordSink> = exporter.clone();
        self.0.runtime.pipeline.remove_sink(&sink);
        exporter.stop();
    }

    /// Checks that `id` is a stored integration (not a configured one).
    fn position(&self, who: &Principal, all: &[Live], id: &str) -> Result<usize, ControlError> {
        if self.configured(who, id).is_some() {
            return Err(ControlError::ReadOnly(id.to_owned()));
        }
        all.iter()
            .position(|l| l.stored.id == id && visible(who, &l.stored))
            .ok_or_else(|| ControlError::NotFound(id.to_owned()))
    }

    /// Applies `spec` to stored integration `id`, restarting it; blocking (plugins compile).
    pub fn update(
        &self,
        who: &Principal,
        id: &str,
        spec: Change,
    ) -> Result<Integration, ControlError> {
        let mut next = {
            let all = self.stored();
            let at = self.position(who, &all, id)?;
            all[at].stored.clone()
        };
        spec.update(&mut next)?;
        pin(&self.0.runtime.tenancy, &mut next)?;
        let owner = next.tenant.as_deref();
        if let Some(taken) = self.name_taken(&next.name, next.kind, Some(id), owner) {
            return Err(taken.into());
        }
        let running = self.run(&next)?;
        if let Err(e) = self.0.runtime.store.put(&next) {
            if let Some(r) = running {
                self.halt(&r);
            }
            return Err(e.into());
        }
        let mut all = self.stored();
        let at = self.position(who, &all, id)?;
        if let Some(old) = all[at].running.take() {
            self.halt(&old);
        }
        all[at] = Live {
            stored: next,
            running,
            failure: None,
        };
        Ok(view(&all[at], &self.0.runtime.defaults))
    }

    /// Stops and deletes stored integration `id`.
    pub fn delete(&self, who: &Principal, id: &str) -> Result<(), ControlError> {
        let mut all = self.stored();
        let at = self.position(who, &all, id)?;
        self.0.runtime.store.delete(id)?;
        if let Some(r) = all.remove(at).running {
            self.halt(&r);
        }
        Ok(())
    }

    /// The metric name prefix of enabled stored Prometheus integration `id`.
    pub fn prometheus_prefix(&self, id: &str) -> Option<String> {
        let all = self.stored();
        let s = &all.iter().find(|l| l.stored.id == id)?.stored;
        match &s.entry {
            Entry::Prometheus { prefix } if s.enabled => Some(prefix.clone()),
            _ => None,
        }
    }

    /// Collects every running metrics integration now, as its interval would.
    pub async fn collect_now(&self) {
        for exporter in self.exporters() {
            exporter.collect().await;
        }
    }

    /// The delivery tasks of every running integration, for shutdown to wait on.
    pub fn take_tasks(&self) -> Vec<JoinHandle<()>> {
        self.exporters()
            .iter()
            .flat_map(|e| e.take_tasks())
            .collect()
    }

    /// Stops and forgets every integration of `tenant` (the store deletes their rows with it).
    pub fn drop_tenant(&self, tenant: &str) {
        let mut all = self.stored();
        all.retain(|l| {
            let theirs = l.stored.tenant.as_deref() == Some(tenant);
            if let (true, Some(r)) = (theirs, &l.running) {
                self.halt(r);
            }
            !theirs
        });
    }

    /// Every integration `who` sees: the operator all, a tenant its own.
    pub fn list(&self, who: &Principal) -> Vec<Integration> {
        let configured = self
            .0
            .configured
            .iter()
            .filter(|_| *who == Principal::Operator);
        let configured = configured.map(|e| {
            let d = e.describe();
            Integration {
                id: e.id().to_owned(),
                name: e.name().to_owned(),
                kind: e.kind().to_owned(),
                source: "config",
                read_only: true,
                enabled: true,
                preset: e.preset().map(str::to_owned),
                endpoints: d.endpoints,
                headers_set: d.headers_set,
                signals: d.signals,
                tenant: None,
                select: e.select().clone(),
            }
        });
        let defaults = &self.0.runtime.defaults;
        let stored: Vec<Integration> = self
            .stored()
            .iter()
            .filter(|l| visible(who, &l.stored))
            .map(|l| view(l, defaults))
            .collect();
        configured.chain(stored).collect()
    }

    /// The integration `id`, if `who` sees it.
    pub fn get(&self, who: &Principal, id: &str) -> Option<Integration> {
        self.list(who).into_iter().find(|i| i.id == id)
    }

    /// Every signal's delivery report of the integrations `who` sees.
    pub fn reports(&self, who: &Principal) -> Vec<Report> {
        self.list(who).into_iter().flat_map(|i| i.signals).collect()
    }

    /// Resumes integration `id`: whether it was paused, or `None` if `who` sees no such
    /// integration.
    pub fn resume(&self, who: &Principal, id: &str) -> Option<bool> {
        if let Some(e) = self.configured(who, id) {
            return Some(e.resume());
        }
        let all = self.stored();
        let live = all
            .iter()
            .find(|l| l.stored.id == id && visible(who, &l.stored))?;
        Some(live.running.as_ref().is_some_and(|r| r.resume()))
    }

    /// Tests integration `id`'s endpoints, or `None` if there is no such integration. A stored
    /// integration that is not running is built for the test (its plugin compiled) and dropped.
    pub async fn test(&self, who: &Principal, id: &str) -> Option<Vec<TestResult>> {
        let exporter = match self.configured(who, id) {
            Some(e) => Ok(e.clone()),
            None => {
                let (stored, running) = {
                    let all = self.stored();
                    let live = all
                        .iter()
                        .find(|l| l.stored.id == id && visible(who, &l.stored))?;
                    (live.stored.clone(), live.running.clone())
                };
                match running {
                    Some(r) => Ok(r),
                    None => self.build_for_test(stored).await,
                }
            }
        };
        let results = match exporter {
            Ok(e) => e.test(PROBE_TIMEOUT).await,
            Err((signal, reason)) => vec![(signal, Diagnosis::Settings { reason })],
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

    async fn build_for_test(&self, stored: Stored) -> Result<Arc<Exporter>, (Signal, String)> {
        let signal = stored.kind;
        let spec = match spec_of(&stored, &self.0.runtime.defaults) {
            Ok(Some(spec)) => spec,
            Ok(None) => {
                let reason = "a prometheus integration is scraped, not sent to";
                return Err((signal, reason.into()));
            }
            Err(e) => return Err((signal, e.to_string())),
        };
        let me = self.clone();
        tokio::task::spawn_blocking(move || Exporter::build(&spec, &me.0.runtime.build))
            .await
            .map_err(|e| e.to_string())
            .and_then(|built| built.map_err(|e| e.to_string()))
            .map_err(|reason| (signal, reason))
    }
}

/// Whether `who` sees stored integration `stored`: the operator every one, a tenant its own.
fn visible(who: &Principal, stored: &Stored) -> bool {
    match who {
        Principal::Operator => true,
        Principal::Tenant(t) => stored.tenant.as_deref() == Some(&**t),
    }
}

/// Makes a tenant's integration select the tenant's data only, whatever it asked for; `Err`
/// when it asked for another tenant's, or is a kind that cannot select.
fn pin(tenancy: &Tenancy, stored: &mut Stored) -> Result<(), SpecError> {
    let (Some(tenant), Some(key)) = (stored.tenant.as_deref(), tenancy.key()) else {
        return Ok(());
    };
    let select = stored.entry.select_mut().ok_or_else(|| {
        SpecError::new(
            "type",
            "a tenant reads its metrics at /metrics with its admin token; it has no prometheus integrations",
        )
    })?;
    select
        .pin(key, tenant)
        .map_err(|reason| SpecError::new("select", reason))
}

/// Builds an integration, plugs it into the pipeline and starts its tasks.
fn launch(runtime: &Runtime, spec: &ExporterSpec) -> Result<Arc<Exporter>, BuildError> {
    let exporter = Exporter::build(spec, &runtime.build)?;
    runtime
        .pipeline
        .add_sink(exporter.clone() as Arc<dyn RecordSink>);
    exporter.spawn(&runtime.drain);
    Ok(exporter)
}

/// How the API shows a stored integration.
fn view(live: &Live, defaults: &DeliveryConfig) -> Integration {
    let s = &live.stored;
    let spec = spec_of(s, defaults).ok().flatten();
    let (endpoints, headers_set, signals) = match &live.running {
        Some(r) => {
            let d = r.describe();
            (d.endpoints, d.headers_set, d.signals)
        }
        None => {
            let prometheus = matches!(s.entry, Entry::Prometheus { .. });
            let endpoint = match &spec {
                _ if prometheus => format!("/metrics/{}", s.id),
                Some(spec) => spec.endpoint(s.kind).unwrap_or_default().to_owned(),
                None => String::new(),
            };
            let mut status: Snapshot = Status::default().snapshot();
            status.state = match (s.enabled, prometheus) {
                (false, _) => State::Disabled,
                // A scrape path is served as soon as it exists.
                (true, true) => State::Connected,
                (true, false) => State::Degraded,
            };
            status.last_error.clone_from(&live.failure);
            let report = Report {
                id: s.id.clone(),
                integration: s.name.clone(),
                signal: s.kind.as_str(),
                status,
                items: Default::default(),
                next_export_unix_nano: None,
                disk_queue: None,
            };
            let headers_set = spec
                .as_ref()
                .map(|spec| spec.headers.keys().cloned().collect())
                .unwrap_or_default();
            (vec![(s.kind.as_str(), endpoint)], headers_set, vec![report])
        }
    };
    Integration {
        id: s.id.clone(),
        name: s.name.clone(),
        kind: s.entry.kind_type().to_owned(),
        source: "store",
        read_only: false,
        enabled: s.enabled,
        preset: spec
            .and_then(|spec| spec.preset)
            .or_else(|| s.entry.preset().map(str::to_owned)),
        endpoints,
        headers_set,
        signals,
        tenant: s.tenant.clone(),
        select: s.entry.select().cloned().unwrap_or_default(),
    }
}
