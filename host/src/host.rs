//! The running host: each subsystem started from its own module and wired together, then an
//! orderly shutdown.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::control::admin::{About, Sources};
use crate::control::history::History;
use crate::control::integrations::{Integrations, Runtime, TestResult};
use crate::control::secrets::Sealer;
use crate::control::store::Store;
use crate::derive::{Deriver, RuleError};
use crate::export::delivery::Report;
use crate::export::exporter::BuildContext;
use crate::export::prometheus::routes::Prefixes;
use crate::export::spec::configured;
use crate::intake::otlp::metrics::MetricsReceiver;
use crate::metrics::{ConflictError, Registries, Registry};
use crate::pipeline::Pipeline;
use crate::plugins::error::Unloaded;
use crate::plugins::set::Row;
use crate::plugins::{PluginError, PluginSet, Transforms};
use crate::telemetry::SelfTelemetry;

/// Why the host could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener could not bind.
    #[error("cannot listen on {addr} for {what}: {source}")]
    Bind {
        /// Which listener.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A derivation rule is invalid.
    #[error("invalid derivation rule: {0}")]
    Rule(#[from] RuleError),
    /// A `[[metrics.views]]` entry is invalid.
    #[error("invalid [[metrics.views]] entry: {0}")]
    View(#[from] crate::model::stream::StreamViewError),
    /// Two instruments share a name with different shapes.
    #[error(transparent)]
    Conflict(#[from] ConflictError),
    /// The admin token could not be read or created.
    #[error(transparent)]
    Token(#[from] crate::control::files::FileError),
    /// The credentials key could not be read or created.
    #[error(transparent)]
    Secret(#[from] crate::control::secrets::SecretError),
    /// The integrations store could not be opened or read.
    #[error(transparent)]
    Store(#[from] crate::control::store::StoreError),
    /// The plugin runtime could not start.
    #[error("{}", .0.chain())]
    Plugins(PluginError),
    /// A configured plugin could not be loaded under `[plugins] strict`.
    #[error(transparent)]
    Plugin(#[from] Unloaded),
    /// A configured integration could not be built.
    #[error("integration `{name}`: {reason}")]
    Integration {
        /// The integration (or `[[exporters]]`, for the list as a whole).
        name: String,
        /// What is wrong.
        reason: String,
    },
}

/// A started host. Dropping it without [`Host::shutdown`] aborts its tasks.
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

/// Where each listener listens; `None` when it is off.
#[derive(Debug, Clone, Copy)]
struct Addresses {
    intake: SocketAddr,
    grpc: Option<SocketAddr>,
    prometheus: Option<SocketAddr>,
    admin: Option<SocketAddr>,
}

/// Binds `addr` for the listener `what`.
async fn bind(
    what: &'static str,
    addr: SocketAddr,
) -> Result<(TcpListener, SocketAddr), StartError> {
    let error = |source| StartError::Bind { what, addr, source };
    let listener = TcpListener::bind(addr).await.map_err(error)?;
    let local = listener.local_addr().map_err(error)?;
    Ok((listener, local))
}

/// The metric registry as `[metrics]` configures it.
fn registry(config: &Config) -> Result<Registry, StartError> {
    let m = &config.metrics;
    Ok(Registry::new(m.cardinality_limit)
        .with_histogram_aggregation(m.default_histogram_aggregation.unwrap_or_default())
        .with_exemplar_filter(m.exemplar_filter.unwrap_or_default())
        .with_stream_views(m.views.clone())?)
}

/// What the listeners are started with.
struct Listening<'a> {
    config: &'a Config,
    stopped: watch::Receiver<bool>,
    /// Connections per listener, within the open-file limit.
    max: usize,
    servers: Vec<JoinHandle<()>>,
}

impl Listening<'_> {
    /// Binds `addr` and serves `app` on it as `what`.
    async fn serve(
        &mut self,
        what: &'static str,
        addr: SocketAddr,
        app: axum::Router,
    ) -> Result<SocketAddr, StartError> {
        let (listener, local) = bind(what, addr).await?;
        let connections = self.config.connections.clone();
        let stopped = self.stopped.clone();
        self.servers.push(crate::server::serve(
            listener,
            app,
            connections,
            self.max,
            stopped,
        ));
        Ok(local)
    }
}

impl Host {
    /// Binds the listeners and starts serving; ports of 0 pick free ones.
    pub async fn start(config: &Config) -> Result<Self, StartError> {
        let registry = Arc::new(registry(config)?);
        let telemetry = SelfTelemetry::register(&registry)?;
        let plugins =
            PluginSet::new(&config.plugins, config.plugin_cache()).map_err(StartError::Plugins)?;
        plugins.register(&registry)?;
        let resource = crate::sources::resource::detect(&config.resource);
        let registries = Arc::new(Registries::new(registry.clone(), resource));
        let deriver = Deriver::new(&config.derive, &registry)?;
        // Plugins compile and start: not on the async worker threads.
        let (set, c, r) = (plugins.clone(), config.clone(), registry.clone());
        let (transforms, views) = tokio::task::spawn_blocking(move || {
            Ok::<_, Unloaded>((
                Transforms::open(&set, &c.transforms)?,
                crate::plugins::view::open(&set, &c.views, &r)?,
            ))
        })
        .await
        .map_err(|e| {
            StartError::Plugins(PluginError::Runtime(crate::plugins::error::WasmError::new(
                e.to_string(),
            )))
        })??;
        let events = Arc::new(crate::model::log::Origin::events(
            &registries.own().resource,
        ));
        let mut pipeline = Pipeline::new(deriver, Vec::new(), telemetry.clone(), events);
        if !views.is_empty() {
            pipeline = pipeline.calling_views(config.plugins.call_timeout());
        }
        let pipeline = Arc::new(pipeline);

        let (stop, stopped) = watch::channel(false);
        let listeners = 1
            + usize::from(config.intake.grpc_listen.is_some())
            + usize::from(config.prometheus.enabled)
            + usize::from(config.admin.enabled);
        let max = crate::server::connections_per_listener(
            config.connections.max_connections,
            crate::server::raise_fd_limit(),
            listeners,
        );
        let mut listening = Listening {
            config,
            stopped: stopped.clone(),
            max,
            servers: Vec::new(),
        };
        let receiver = Arc::new(MetricsReceiver::new(registries.clone()));
        let intake = crate::intake::Intake::new(pipeline.clone(), receiver, &config.intake);
        let mut addresses = Addresses {
            intake: listening
                .serve(
                    "intake",
                    config.intake.listen,
                    crate::intake::router(intake.clone()),
                )
                .await?,
            grpc: None,
            prometheus: None,
            admin: None,
        };
        if let Some(addr) = config.intake.grpc_listen {
            let (listener, local) = bind("OTLP/gRPC", addr).await?;
            let service = crate::intake::grpc::Service::new(intake);
            listening
                .servers
                .push(service.serve(listener, max, stopped.clone()));
            addresses.grpc = Some(local);
        }
        let (drain, drained) = watch::channel(None);
        let data_dir = config.data_dir();
        let key = std::env::var(crate::control::secrets::KEY_ENV).ok();
        let runtime = Runtime {
            build: BuildContext {
                registries: registries.clone(),
                telemetry,
                transforms,
                plugins: plugins.clone(),
                on_full: config.intake.on_full,
                data_dir: data_dir.clone(),
            },
            pipeline,
            drain: drained,
            defaults: config.delivery.clone(),
            store: Store::open(
                &data_dir,
                Sealer::load_or_create(key.as_deref(), &data_dir)?,
            )?,
        };
        let specs = configured(config)
            .map_err(|(name, reason)| StartError::Integration { name, reason })?;
        // Plugin integrations compile their plugin: not on the async worker threads.
        let integrations =
            tokio::task::spawn_blocking(move || Integrations::start(runtime, &specs))
                .await
                .map_err(|e| StartError::Integration {
                    name: "*".into(),
                    reason: e.to_string(),
                })?
                .map_err(|(name, reason)| StartError::Integration { name, reason })?;
        if config.prometheus.enabled {
            let i = integrations.clone();
            let prefixes: Prefixes = Arc::new(move |id: &str| i.prometheus_prefix(id));
            let app = crate::export::prometheus::routes::router(registries.clone(), prefixes);
            addresses.prometheus = Some(
                listening
                    .serve("prometheus", config.prometheus.listen, app)
                    .await?,
            );
        }
        if config.admin.enabled {
            let token =
                crate::control::token::load_or_create(config.admin.token.as_deref(), &data_dir)?;
            let (interval, window) = config.admin.history();
            let history = Arc::new(History::new(interval, window));
            let (listener, local) = bind("admin", config.admin.listen).await?;
            addresses.admin = Some(local);
            let sources = Sources {
                integrations: integrations.clone(),
                plugins: plugins.clone(),
                registry: registry.clone(),
                history: history.clone(),
                about: About::new(&registries, &data_dir, addresses.listed()),
            };
            let app = crate::control::admin::router(sources, token);
            listening.servers.push(crate::server::serve(
                listener,
                app,
                config.connections.clone(),
                max,
                stopped.clone(),
            ));
            listening
                .servers
                .push(history.sample_every(registries.clone(), stopped.clone()));
        }
        let mut servers = listening.servers;
        servers.extend(crate::sources::start(config, &registry, &stopped)?);
        if let Some(expiry) = config.metrics.idle_series_expiry {
            servers.push(registries.clone().expire_every(expiry, stopped.clone()));
        }
        servers.push(plugins.watch(stopped));
        tracing::info!("{}", serving(config, addresses, &plugins, &integrations));
        Ok(Self {
            addresses,
            integrations,
            registry,
            plugins,
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
        self.integrations.reports()
    }

    /// Tests the connection of integration `id`'s endpoints (`None`: no such integration).
    pub async fn test(&self, id: &str) -> Option<Vec<TestResult>> {
        self.integrations.test(id).await
    }

    /// Resumes the paused integration `id`; returns whether it was paused.
    pub fn resume(&self, id: &str) -> bool {
        self.integrations.resume(id).unwrap_or(false)
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

impl Addresses {
    /// Each listener that is on, by what it serves.
    fn listed(&self) -> std::collections::BTreeMap<&'static str, String> {
        [
            ("intake", Some(self.intake)),
            ("otlp_grpc", self.grpc),
            ("prometheus", self.prometheus),
            ("admin", self.admin),
        ]
        .into_iter()
        .filter_map(|(what, a)| Some((what, a?.to_string())))
        .collect()
    }
}

/// The start-up line, in plain words: where everything is and what runs.
fn serving(
    config: &Config,
    at: Addresses,
    plugins: &PluginSet,
    integrations: &Integrations,
) -> String {
    let or_off = |a: Option<SocketAddr>| a.map_or_else(|| "off".to_owned(), |a| a.to_string());
    let token = match &config.admin.token {
        Some(_) => "token from WASMTEL_ADMIN_TOKEN".to_owned(),
        None => format!(
            "token in {}",
            config.data_dir().join("admin.token").display()
        ),
    };
    let admin = match at.admin {
        Some(a) => format!("admin API on {a} ({token})"),
        None => "admin API off".to_owned(),
    };
    let prometheus = match at.prometheus {
        Some(a) => format!("http://{a}/metrics"),
        None => "off".to_owned(),
    };
    let names: Vec<String> = integrations
        .exporters()
        .iter()
        .map(|e| e.name().to_owned())
        .collect();
    let integrations = match names.as_slice() {
        [] => "no integration active".to_owned(),
        names => format!(
            "{} integration{} active: {}",
            names.len(),
            if names.len() == 1 { "" } else { "s" },
            names.join(", ")
        ),
    };
    let plugins = plugins.reloadables().len();
    format!(
        "wasmtel is serving: events and OTLP/HTTP on {}, OTLP/gRPC on {}, Prometheus {prometheus}, {admin}; data in {}; {plugins} plugin{} loaded; {integrations}",
        at.intake,
        or_off(at.grpc),
        config.data_dir().display(),
        if plugins == 1 { "" } else { "s" },
    )
}
