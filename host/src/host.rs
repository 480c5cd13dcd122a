//! The running host: each subsystem started from its own module and wired together, then an
//! orderly shutdown.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::control::history::Histories;
use crate::control::integrations::{Integrations, TestResult};
use crate::control::status::serving;
use crate::control::tenants::Tenants;
use crate::derive::span::SpanMetrics;
use crate::derive::{Deriver, RuleError};
use crate::export::delivery::{Drain, Report};
use crate::export::exporter::BuildContext;
use crate::export::prometheus::routes::Prefixes;
use crate::metrics::{ConflictError, Registries, Registry};
use crate::model::record::Origin;
use crate::pipeline::Pipeline;
use crate::plugins::error::Unloaded;
use crate::plugins::set::Row;
use crate::plugins::{PluginError, PluginSet, Transforms};
use crate::server::{Addresses, BindError, Listeners, Protocol};
use crate::telemetry::SelfTelemetry;
use crate::tenancy::{Principal, Tenancy};

/// The file in the data directory that keeps the host's `service.instance.id`.
pub const INSTANCE_FILE: &str = "instance.id";

/// Why the host could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener could not bind.
    #[error(transparent)]
    Bind(#[from] BindError),
    /// A derivation rule is invalid.
    #[error("invalid derivation rule: {0}")]
    Rule(#[from] RuleError),
    /// A `[[metrics.views]]` entry is invalid.
    #[error("invalid [[metrics.views]] entry: {0}")]
    View(#[from] crate::model::stream::StreamViewError),
    /// Two instruments share a name with different shapes.
    #[error(transparent)]
    Conflict(#[from] ConflictError),
    /// The tokens could not be read or created.
    #[error(transparent)]
    Tenants(#[from] crate::control::tenants::TenantError),
    /// A file of the data directory could not be read or created.
    #[error(transparent)]
    File(#[from] crate::control::files::FileError),
    /// The integrations could not start.
    #[error(transparent)]
    Integrations(#[from] crate::control::integrations::OpenError),
    /// The plugin runtime could not start.
    #[error("{}", .0.chain())]
    Plugins(PluginError),
    /// A configured plugin could not be loaded under `[plugins] strict`.
    #[error(transparent)]
    Plugin(#[from] Unloaded),
    /// A `[[scrape]]` target could not start.
    #[error("a [[scrape]] target could not start: {0}")]
    Scrape(String),
}

/// A started host. Dropping it without [`Host::shutdown`] aborts its tasks.
#[derive(Debug)]
pub struct Host {
    addresses: Addresses,
    integrations: Integrations,
    registry: Arc<Registry>,
    plugins: Arc<PluginSet>,
    stop: watch::Sender<bool>,
    servers: Vec<JoinHandle<()>>,
    drain: watch::Sender<Option<tokio::time::Instant>>,
    shutdown_timeout: std::time::Duration,
}

/// What every subsystem is built on: the metric registries, self-telemetry, the plugin set
/// with the transform chain, and the pipeline events go through.
struct Core {
    registry: Arc<Registry>,
    registries: Arc<Registries>,
    telemetry: SelfTelemetry,
    plugins: Arc<PluginSet>,
    transforms: Transforms,
    pipeline: Arc<Pipeline>,
    tenancy: Arc<Tenancy>,
}

impl Core {
    /// Builds the core `config` describes; blocking work (plugins) runs off the async threads.
    async fn new(config: &Config) -> Result<Self, StartError> {
        let m = &config.metrics;
        let registry = Registry::new(m.cardinality_limit)
            .with_attribute_bytes_limit(m.attribute_bytes_limit())
            .with_histogram_aggregation(m.default_histogram_aggregation.unwrap_or_default())
            .with_exemplar_filter(m.exemplar_filter.unwrap_or_default())
            .with_detail(&crate::control::history::DETAILED)
            .with_stream_views(m.views.clone())?;
        let registry = Arc::new(registry);
        let telemetry = SelfTelemetry::register(&registry)?;
        let plugins =
            PluginSet::new(&config.plugins, config.plugin_cache()).map_err(StartError::Plugins)?;
        plugins.register(&registry)?;
        plugins.keep_uploads_in(config.data_dir().join("tenants"));
        let tenancy = Arc::new(Tenancy::configured(&config.tenancy));
        tenancy.register(&registry)?;
        // One `service.instance.id` across restarts (kept in the data directory), so that a
        // restart does not begin new series downstream; a configured one wins.
        let mut resource_config = config.resource.clone();
        let instance =
            crate::control::files::read_or_create(&config.data_dir().join(INSTANCE_FILE), || {
                uuid::Uuid::new_v4().to_string()
            })?;
        resource_config
            .attributes
            .entry("service.instance.id".to_owned())
            .or_insert(instance);
        // The host's own data is the operator's: it names no tenant.
        let detected = crate::sources::resource::detect(&resource_config);
        let resource = crate::model::resource::Resource::from_attributes(
            tenancy.stamped(&crate::tenancy::Principal::Operator, detected.attributes()),
        );
        let registries = Arc::new(Registries::new(registry.clone(), resource));
        telemetry.cover(&registries);
        let deriver = Deriver::new(&config.derive, &registry)?;
        let (transforms, views) = plugins.open_configured(config, &registry).await?;
        let events = Arc::new(Origin::events(&registries.own().resource, None));
        let spans = SpanMetrics::new(&config.derive, registries.clone(), tenancy.clone())?;
        let mut pipeline = Pipeline::new(deriver, Vec::new(), telemetry.clone(), events)
            .with_tenants(tenancy.clone(), config.derive.clone(), registries.clone())
            .with_span_metrics(spans);
        if !views.is_empty() {
            pipeline = pipeline.calling_views(config.plugins.call_timeout());
        }
        Ok(Self {
            registry,
            registries,
            telemetry,
            plugins,
            transforms,
            pipeline: Arc::new(pipeline),
            tenancy,
        })
    }

    /// Starts the configured and the stored integrations, their tasks following `drain`, and
    /// makes every token known: the operator's and each tenant's.
    async fn tenants(&self, config: &Config, drain: Drain) -> Result<Tenants, StartError> {
        let build = BuildContext {
            registries: self.registries.clone(),
            telemetry: self.telemetry.clone(),
            transforms: self.transforms.clone(),
            plugins: self.plugins.clone(),
            on_full: config.intake.on_full,
            data_dir: config.data_dir(),
            tenancy: self.tenancy.clone(),
        };
        let tenancy = self.tenancy.clone();
        let integrations =
            Integrations::open(config, build, self.pipeline.clone(), tenancy.clone(), drain)
                .await?;
        let (interval, window) = config.admin.history();
        let histories = Arc::new(Histories::new(interval, window, tenancy.clone()));
        let token = config.admin.token.as_deref();
        let dir = config.data_dir();
        Ok(Tenants::open(
            tenancy,
            integrations,
            histories,
            token,
            &dir,
        )?)
    }
}

impl Host {
    /// Binds the listeners and starts serving; ports of 0 pick free ones.
    pub async fn start(config: &Config) -> Result<Self, StartError> {
        let core = Core::new(config).await?;
        let Core {
            registry,
            registries,
            plugins,
            ..
        } = &core;
        let (stop, stopped) = watch::channel(false);
        let count = [
            true,
            config.intake.grpc_listen.is_some(),
            config.prometheus.enabled,
            config.admin.enabled,
        ];
        let mut listeners = Listeners::new(
            &config.connections,
            count.iter().filter(|on| **on).count(),
            stopped.clone(),
        );
        // Tokens are known before the first request arrives.
        let (drain, drained) = watch::channel(None);
        let tenants = core.tenants(config, drained).await?;
        let integrations = tenants.integrations().clone();
        let (pipeline, r, t) = (
            core.pipeline.clone(),
            registries.clone(),
            core.tenancy.clone(),
        );
        let redact = Box::new(core.plugins.content_redaction(&config.intake.genai_content));
        let (intake, grpc) =
            crate::intake::serve(&config.intake, pipeline, r, t, redact, &mut listeners).await?;
        let mut at = Addresses {
            intake,
            grpc,
            prometheus: None,
            admin: None,
        };
        if config.prometheus.enabled {
            let i = integrations.clone();
            let prefixes: Prefixes = Arc::new(move |id: &str| i.prometheus_prefix(id));
            // With tenancy on, `/metrics` takes admin tokens unless it is public.
            let guard =
                (core.tenancy.is_on() && !config.prometheus.public).then(|| core.tenancy.clone());
            let app =
                crate::export::prometheus::routes::router(registries.clone(), prefixes, guard);
            at.prometheus = Some(
                listeners
                    .serve("prometheus", config.prometheus.listen, app, Protocol::Http1)
                    .await?,
            );
        }
        let board = crate::sources::scrape::scraper::Board::default();
        if config.admin.enabled {
            let p = plugins.clone();
            let admin = crate::control::admin::serve(
                config,
                &mut listeners,
                at,
                tenants,
                (p, board.clone()),
                registries,
            );
            at.admin = Some(admin.await?);
        }
        let mut servers = listeners.tasks;
        servers.extend(crate::sources::start(config, registry, &stopped)?);
        // Scraped metrics take the path of pushed ones: views, limits, tenancy, every exporter.
        let receiver = crate::intake::otlp::metrics::MetricsReceiver::new(registries.clone())
            .with_tenancy(core.tenancy.clone());
        let series = crate::derive::series::SeriesRules::new(&config.derive)?;
        let sink: crate::sources::scrape::scraper::Sink = Arc::new(move |mut request| {
            series.apply(&mut request);
            let tally = receiver.receive(&request);
            if let Some(why) = tally.message {
                tracing::debug!(refused = tally.rejected, "scraped points refused: {why}");
            }
        });
        let scrapes =
            crate::sources::scrape::scraper::start(&config.scrape, &sink, &board, &stopped)
                .map_err(StartError::Scrape)?;
        servers.extend(scrapes);
        let pods = &config.kubernetes.pods;
        if !pods.url.is_empty() {
            let discovery = crate::sources::scrape::discovery::Discovery::new(
                pods.clone(),
                sink,
                board,
                stopped.clone(),
            )
            .map_err(StartError::Scrape)?;
            let discovery = Arc::new(tokio::sync::Mutex::new(discovery));
            servers.push(crate::ticker::every(
                pods.refresh(),
                stopped.clone(),
                move || {
                    let discovery = discovery.clone();
                    async move { discovery.lock().await.refresh().await }
                },
            ));
        }
        let own = config.metrics.idle_series_expiry;
        let received = config.metrics.received_expiry();
        servers.extend(
            registries
                .clone()
                .expire_every(own, received, stopped.clone()),
        );
        servers.push(plugins.watch(stopped));
        let names: Vec<String> = integrations
            .exporters()
            .iter()
            .map(|e| e.name().to_owned())
            .collect();
        let rows = plugins.rows();
        let failed = rows
            .iter()
            .filter(|r| matches!(r.health, crate::plugins::Health::Failed(_)))
            .count();
        let counts = (rows.len() - failed, failed);
        tracing::info!("{}", serving(config, &at.listed(), counts, &names));
        Ok(Self {
            addresses: at,
            integrations,
            registry: core.registry,
            plugins: core.plugins,
            stop,
            servers,
            drain,
            shutdown_timeout: config.shutdown_timeout(),
        })
    }

    /// The address the intake listens on.
    pub fn intake_addr(&self) -> SocketAddr {
        self.addresses.intake
    }

    /// The address OTLP/gRPC is served on, if enabled.
    pub fn grpc_addr(&self) -> Option<SocketAddr> {
        self.addresses.grpc
    }

    /// The address `/metrics` is served on, if enabled.
    pub fn prometheus_addr(&self) -> Option<SocketAddr> {
        self.addresses.prometheus
    }

    /// The address the admin API is served on, if enabled.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.addresses.admin
    }

    /// The metric registry.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The plugin each plugin integration, transform and view runs now, with its content digest.
    pub fn plugin_versions(&self) -> Vec<(String, Option<String>)> {
        self.plugins.versions()
    }

    /// Every loaded plugin with its kind (`exporter`, `transform`, `view`), its integration
    /// (for exporters), health and statistics.
    pub fn plugin_health(&self) -> Vec<Row> {
        self.plugins.rows()
    }

    /// The delivery report of every exporter and signal.
    pub fn integrations(&self) -> Vec<Report> {
        self.integrations.reports(&Principal::Operator)
    }

    /// Tests the connection of integration `id`'s endpoints (`None`: no such integration).
    pub async fn test(&self, id: &str) -> Option<Vec<TestResult>> {
        self.integrations.test(&Principal::Operator, id).await
    }

    /// Resumes the paused integration `id`; returns whether it was paused.
    pub fn resume(&self, id: &str) -> bool {
        self.integrations
            .resume(&Principal::Operator, id)
            .unwrap_or(false)
    }

    /// Collects metrics now, as the interval timers would: every integration queues a batch.
    pub async fn collect_now(&self) {
        self.integrations.collect_now().await;
    }

    /// Stops intake, exports what is pending within the shutdown timeout, and stops.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        for server in std::mem::take(&mut self.servers) {
            let _ = server.await;
        }
        let deadline = tokio::time::Instant::now() + self.shutdown_timeout;
        if tokio::time::timeout_at(deadline, self.integrations.collect_now())
            .await
            .is_err()
        {
            tracing::warn!("the final metrics collection did not finish in time");
        }
        let _ = self.drain.send(Some(deadline));
        for task in self.integrations.take_tasks() {
            let abort = task.abort_handle();
            if tokio::time::timeout_at(deadline, task).await.is_err() {
                abort.abort();
                tracing::warn!(
                    "export did not finish within the shutdown timeout; pending data was dropped"
                );
            }
        }
        tracing::info!("wasmtel stopped");
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.servers.iter().for_each(JoinHandle::abort);
        for exporter in self.integrations.exporters() {
            exporter.stop();
        }
    }
}
