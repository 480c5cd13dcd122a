//! The running host: listeners, export tasks, and an orderly shutdown.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::Path;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::control::admin::{About, PluginList, PluginRow};
use crate::control::history::History;
use crate::control::integrations::{Integrations, Runtime, TestResult};
use crate::control::secrets::Sealer;
use crate::control::store::Store;
use crate::derive::{Deriver, RuleError};
use crate::export::delivery::Report;
use crate::export::exporter::{self, BuildContext};
use crate::export::prometheus;
use crate::export::spec::{ExporterSpec, exporter_names};
use crate::intake::otlp::metrics::MetricsReceiver;
use crate::metrics::{ConflictError, Descriptor, Pattern, Producer, Registries, Registry};
use crate::pipeline::Pipeline;
use crate::plugins::reload::{self, Reloadable, Subscribers};
use crate::plugins::transform::ChainLink;
use crate::plugins::{Health, Loader, PluginView, Transforms};
use crate::sources::gpu::{self, GpuPoller};
use crate::sources::system::SystemPoller;
use crate::telemetry::{SELF_SCOPE, SelfTelemetry};

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
    View(#[from] crate::config::StreamViewError),
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
    /// A plugin or an integration could not be loaded or configured.
    #[error("{kind} `{plugin}`: {reason}")]
    Plugin {
        /// What the plugin is: exporter, transform, view (or the plugin runtime itself).
        kind: &'static str,
        /// The plugin or integration name.
        plugin: String,
        /// What went wrong.
        reason: String,
    },
}

/// A started host. Dropping it without [`Host::shutdown`] aborts its tasks.
pub struct Host {
    intake_addr: SocketAddr,
    grpc_addr: Option<SocketAddr>,
    prometheus_addr: Option<SocketAddr>,
    admin_addr: Option<SocketAddr>,
    integrations: Integrations,
    registry: Arc<Registry>,
    stop: watch::Sender<bool>,
    servers: Vec<JoinHandle<()>>,
    drain: watch::Sender<Option<tokio::time::Instant>>,
    transforms: Transforms,
    views: Vec<Arc<PluginView>>,
    shutdown_timeout: std::time::Duration,
    /// The scope its plugins' calls are counted in.
    plugin_scope: u64,
}

/// Serves OTLP/gRPC on `listener` until `stopped`: HTTP/2 with at most `max` concurrent streams
/// per connection, each call bounded to 30 s, idle connections pinged every minute.
fn serve_grpc(
    listener: TcpListener,
    service: crate::intake::grpc::Service,
    max: usize,
    mut stopped: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        let shutdown = async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        let served = tonic::transport::Server::builder()
            .timeout(std::time::Duration::from_secs(30))
            .max_concurrent_streams(u32::try_from(max).ok())
            .http2_keepalive_interval(Some(std::time::Duration::from_secs(60)))
            .serve_with_incoming_shutdown(service, incoming, shutdown)
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "the OTLP/gRPC server stopped");
        }
    })
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { what, addr, source })
}

impl Host {
    /// Binds the listeners and starts serving; ports of 0 pick free ones.
    pub async fn start(config: &Config) -> Result<Self, StartError> {
        let registry = Arc::new(
            Registry::new(config.metrics.cardinality_limit)
                .with_histogram_aggregation(
                    config
                        .metrics
                        .default_histogram_aggregation
                        .unwrap_or_default(),
                )
                .with_exemplar_filter(config.metrics.exemplar_filter.unwrap_or_default())
                .with_stream_views(config.metrics.views.clone())?,
        );
        let telemetry = SelfTelemetry::register(&registry)?;
        crate::telemetry::plugin_refusals(&registry, crate::plugins::budget::refusals)?;
        // This host's plugins are counted apart from any other host's in the process.
        let scope = crate::plugins::stats::new_scope();
        crate::telemetry::plugin_stats(
            &registry,
            crate::telemetry::PluginStats {
                scope,
                calls: crate::plugins::stats::calls,
                bounds: &crate::plugins::stats::DURATION_BOUNDS,
                traps: crate::plugins::stats::traps,
                items: crate::plugins::stats::item_counts,
                memory: crate::plugins::stats::memories,
            },
        )?;
        let resource = crate::sources::resource::detect(&config.resource);
        let deriver = Deriver::new(&config.derive, &registry)?;
        let registries = Arc::new(Registries::new(registry.clone(), resource));
        let Plugins {
            loader,
            transforms,
            views,
        } = load_plugins(config, &registries, scope).await?;
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
        let fds = crate::server::raise_fd_limit();
        let max = crate::server::connections_per_listener(
            config.connections.max_connections,
            fds,
            listeners,
        );
        let serve = |listener, app, stopped| {
            crate::server::serve(listener, app, config.connections.clone(), max, stopped)
        };
        let intake = bind("intake", config.intake.listen).await?;
        let intake_addr = intake.local_addr().map_err(|source| StartError::Bind {
            what: "intake",
            addr: config.intake.listen,
            source,
        })?;
        let intake_state = crate::intake::Intake::new(
            pipeline.clone(),
            Arc::new(MetricsReceiver::new(registries.clone())),
            &config.intake,
        );
        let mut servers = vec![serve(
            intake,
            crate::intake::router(intake_state.clone()),
            stopped.clone(),
        )];
        let mut grpc_addr = None;
        if let Some(addr) = config.intake.grpc_listen {
            let listener = bind("OTLP/gRPC", addr).await?;
            grpc_addr = listener.local_addr().ok();
            let service = crate::intake::grpc::Service::new(intake_state);
            servers.push(serve_grpc(listener, service, max, stopped.clone()));
        }
        let (drain, drained) = watch::channel(None);
        let data_dir = config.data_dir();
        let key = std::env::var(crate::control::secrets::KEY_ENV).ok();
        let sealer = Sealer::load_or_create(key.as_deref(), &data_dir)?;
        let specs = configured_integrations(config)?;
        let runtime = Runtime {
            build: BuildContext {
                registries: registries.clone(),
                telemetry: telemetry.clone(),
                transforms: transforms.clone(),
                loader: loader.clone(),
                strict: config.plugins.strict,
                on_full: config.intake.on_full,
                data_dir: data_dir.clone(),
            },
            pipeline: pipeline.clone(),
            drain: drained.clone(),
            defaults: config.delivery.clone(),
            store: Store::open(&data_dir, sealer)?,
        };
        // Plugin integrations compile their plugin: not on the async worker threads.
        let integrations =
            tokio::task::spawn_blocking(move || Integrations::start(runtime, &specs))
                .await
                .map_err(|e| StartError::Plugin {
                    kind: "integration",
                    plugin: "*".into(),
                    reason: e.to_string(),
                })?
                .map_err(|(plugin, reason)| StartError::Plugin {
                    kind: "integration",
                    plugin,
                    reason,
                })?;
        let mut prometheus_addr = None;
        if config.prometheus.enabled {
            let listener = bind("prometheus", config.prometheus.listen).await?;
            prometheus_addr = listener.local_addr().ok();
            let app = scrape_routes(registries.clone(), integrations.clone());
            servers.push(serve(listener, app, stopped.clone()));
        }
        let mut admin_addr = None;
        if config.admin.enabled {
            let token = crate::control::token::load_or_create(
                config.admin.token.as_deref(),
                &config.data_dir(),
            )?;
            let listener = bind("admin", config.admin.listen).await?;
            admin_addr = listener.local_addr().ok();
            let (i, t, v) = (integrations.clone(), transforms.clone(), views.clone());
            let plugins: PluginList = Arc::new(move || plugin_health(&i, &t, &v, scope));
            let (interval, window) = config.admin.history();
            let history = Arc::new(History::new(interval, window));
            let addresses = [
                ("intake", Some(intake_addr)),
                ("otlp_grpc", grpc_addr),
                ("prometheus", prometheus_addr),
                ("admin", admin_addr),
            ];
            let sources = crate::control::admin::Sources {
                integrations: integrations.clone(),
                plugins,
                registry: registry.clone(),
                history: history.clone(),
                about: About {
                    host_name: registries
                        .own()
                        .resource
                        .get("host.name")
                        .unwrap_or_default(),
                    version: env!("CARGO_PKG_VERSION"),
                    started_unix_ms: crate::clock::unix_nanos() / 1_000_000,
                    data_dir: data_dir.display().to_string(),
                    addresses: addresses
                        .into_iter()
                        .filter_map(|(what, a)| Some((what, a?.to_string())))
                        .collect(),
                },
            };
            let app = crate::control::admin::router(sources, token);
            servers.push(serve(listener, app, stop.subscribe()));
            let registries = registries.clone();
            servers.push(every(interval, stop.subscribe(), move || {
                let producers = registries.all();
                let all: Vec<&Registry> = producers.iter().map(|p| &*p.registry).collect();
                history.sample(&all);
                std::future::ready(())
            }));
        }
        if let Some(interval) = config.gpu.interval() {
            let library = config.gpu.library.clone();
            let connect = Box::new(move || gpu::nvml::connect(&library));
            let mut poller = GpuPoller::new(&registry, connect)?;
            if !config.kubernetes.pod_resources_socket.is_empty() {
                let attribution = crate::sources::kubernetes::Attribution::new(
                    config.kubernetes.pod_resources_socket.clone().into(),
                    config.kubernetes.proc_root.clone(),
                );
                servers.push(refresh_every(
                    config.kubernetes.interval(),
                    stop.subscribe(),
                    attribution.clone(),
                ));
                poller = poller.with_attribution(attribution);
            }
            let poll = move || {
                poller.poll();
            };
            servers.push(poll_every(interval, stop.subscribe(), poll));
        }
        if let Some(interval) = config.system.interval() {
            let mut poller = SystemPoller::new(&registry, "/proc")?;
            let mut failing = false;
            let poll = move || match poller.poll() {
                Ok(()) => failing = false,
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!(error = %e, "reading /proc failed; system metrics wait for it");
                }
                Err(_) => {}
            };
            servers.push(poll_every(interval, stop.subscribe(), poll));
        }
        if let Some(expiry) = config.metrics.idle_series_expiry {
            servers.push(expire_idle_series(
                registries.clone(),
                expiry,
                stop.subscribe(),
            ));
        }
        servers.push(watch_health(
            integrations.clone(),
            transforms.clone(),
            views.clone(),
            telemetry,
            stop.subscribe(),
        ));
        let (i, t, v) = (integrations.clone(), transforms.clone(), views.clone());
        let subscribers: Subscribers = Arc::new(move || reloadables(&i, &t, &v));
        servers.push(reload::spawn(loader, subscribers, stop.subscribe()));
        let names: Vec<String> = integrations
            .exporters()
            .iter()
            .map(|e| e.name().to_owned())
            .collect();
        let plugins = reloadables(&integrations, &transforms, &views).len();
        tracing::info!(
            "{}",
            serving(
                config,
                intake_addr,
                grpc_addr,
                prometheus_addr,
                admin_addr,
                plugins,
                &names
            )
        );
        Ok(Self {
            intake_addr,
            grpc_addr,
            prometheus_addr,
            admin_addr,
            integrations,
            registry,
            stop,
            servers,
            drain,
            transforms,
            views,
            shutdown_timeout: config.shutdown_timeout(),
            plugin_scope: scope,
        })
    }

    /// The address the intake listens on.
    pub fn intake_addr(&self) -> SocketAddr {
        self.intake_addr
    }

    /// The address OTLP/gRPC is served on, if enabled.
    pub fn grpc_addr(&self) -> Option<SocketAddr> {
        self.grpc_addr
    }

    /// The address `/metrics` is served on, if enabled.
    pub fn prometheus_addr(&self) -> Option<SocketAddr> {
        self.prometheus_addr
    }

    /// The metric registry.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The plugin each plugin integration, view and transform runs now, with its content digest.
    pub fn plugin_versions(&self) -> Vec<(String, Option<String>)> {
        reloadables(&self.integrations, &self.transforms, &self.views)
            .iter()
            .map(|r| (r.plugin().to_owned(), r.serving()))
            .collect()
    }

    /// Every loaded plugin with its kind (`exporter`, `transform`, `view`), its integration
    /// (for exporters) and health.
    pub fn plugin_health(&self) -> Vec<PluginRow> {
        plugin_health(
            &self.integrations,
            &self.transforms,
            &self.views,
            self.plugin_scope,
        )
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

    /// The address the admin API is served on, if enabled.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
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

/// Every loaded plugin that follows its file in the plugin directory.
fn reloadables(
    integrations: &Integrations,
    transforms: &Transforms,
    views: &[Arc<PluginView>],
) -> Vec<Arc<dyn Reloadable>> {
    exporter::reloadables(&integrations.exporters())
        .into_iter()
        .chain(transforms.links().map(|l| l.clone() as Arc<dyn Reloadable>))
        .chain(views.iter().map(|v| v.clone() as Arc<dyn Reloadable>))
        .collect()
}

fn plugin_health(
    integrations: &Integrations,
    transforms: &Transforms,
    views: &[Arc<PluginView>],
    scope: u64,
) -> Vec<PluginRow> {
    let stats = |plugin: &str| crate::plugins::stats::summary(scope, plugin);
    let exporters = integrations.exporters().into_iter().filter_map(|e| {
        let (plugin, health) = e.plugin_health()?;
        Some(PluginRow {
            stats: stats(&plugin),
            plugin,
            kind: "exporter",
            integration: Some(e.name().to_owned()),
            health,
        })
    });
    let transforms = transforms
        .health()
        .into_iter()
        .map(|(plugin, health)| PluginRow {
            stats: stats(&plugin),
            plugin,
            kind: "transform",
            integration: None,
            health,
        });
    let views = views.iter().filter_map(|v| {
        Some(PluginRow {
            plugin: v.plugin().to_owned(),
            kind: "view",
            integration: None,
            health: v.health()?,
            stats: stats(v.plugin()),
        })
    });
    exporters.chain(transforms).chain(views).collect()
}

/// Sweeps per idle-series expiry period: a series goes between 1 and 1¼ periods after its last measurement.
const EXPIRY_SWEEPS: u32 = 4;

/// Removes series idle for longer than `expiry`, sweeping [`EXPIRY_SWEEPS`] times per period.
fn expire_idle_series(
    registries: Arc<Registries>,
    expiry: std::time::Duration,
    mut stopped: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let period = (expiry / EXPIRY_SWEEPS).max(std::time::Duration::from_millis(1));
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        loop {
            tokio::select! {
                _ = ticker.tick() => {
                    let gone = registries.expire_idle(u64::from(EXPIRY_SWEEPS));
                    if gone > 0 {
                        tracing::debug!(series = gone, "idle series expired");
                    }
                }
                _ = stopped.wait_for(|s| *s) => return,
            }
        }
    })
}

/// The start-up line, in plain words: where everything is and what runs.
fn serving(
    config: &Config,
    intake: SocketAddr,
    grpc: Option<SocketAddr>,
    prometheus: Option<SocketAddr>,
    admin: Option<SocketAddr>,
    plugins: usize,
    integrations: &[String],
) -> String {
    let or_off = |a: Option<SocketAddr>| a.map_or_else(|| "off".to_owned(), |a| a.to_string());
    let token = match &config.admin.token {
        Some(_) => "token from WASMTEL_ADMIN_TOKEN".to_owned(),
        None => format!(
            "token in {}",
            config.data_dir().join("admin.token").display()
        ),
    };
    let admin = match admin {
        Some(a) => format!("admin API on {a} ({token})"),
        None => "admin API off".to_owned(),
    };
    let prometheus = match prometheus {
        Some(a) => format!("http://{a}/metrics"),
        None => "off".to_owned(),
    };
    let integrations = match integrations {
        [] => "no integration active".to_owned(),
        names => format!(
            "{} integration{} active: {}",
            names.len(),
            if names.len() == 1 { "" } else { "s" },
            names.join(", ")
        ),
    };
    format!(
        "wasmtel is serving: events and OTLP/HTTP on {intake}, OTLP/gRPC on {}, Prometheus {prometheus}, {admin}; data in {}; {plugins} plugin{} loaded; {integrations}",
        or_off(grpc),
        config.data_dir().display(),
        if plugins == 1 { "" } else { "s" },
    )
}

/// Runs `tick` now and every `interval` (a late tick waits, none is doubled) until `stopped`.
fn every<F, Fut>(
    interval: std::time::Duration,
    mut stopped: watch::Receiver<bool>,
    mut tick: F,
) -> JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = stopped.wait_for(|s| *s) => return,
            }
            tick().await;
        }
    })
}

/// Lists the kubelet's device allocations now and every `interval` until `stopped`.
fn refresh_every(
    interval: std::time::Duration,
    stopped: watch::Receiver<bool>,
    attribution: Arc<crate::sources::kubernetes::Attribution>,
) -> JoinHandle<()> {
    every(interval, stopped, move || {
        let attribution = attribution.clone();
        async move { attribution.refresh().await }
    })
}

/// Runs a source's `poll` every `interval` on a blocking thread (NVML calls and file reads
/// block) until the host stops.
fn poll_every(
    interval: std::time::Duration,
    stopped: watch::Receiver<bool>,
    poll: impl FnMut() + Send + 'static,
) -> JoinHandle<()> {
    let poll = Arc::new(std::sync::Mutex::new(poll));
    every(interval, stopped, move || {
        let poll = poll.clone();
        async move {
            let _ = tokio::task::spawn_blocking(move || {
                (poll
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner))();
            })
            .await;
        }
    })
}

/// How often plugin health is recorded as `wasmtel.plugin.up`.
const HEALTH_PERIOD: std::time::Duration = std::time::Duration::from_secs(1);

/// Records every plugin's health now and then each [`HEALTH_PERIOD`] until the host stops.
fn watch_health(
    integrations: Integrations,
    transforms: Transforms,
    views: Vec<Arc<PluginView>>,
    telemetry: SelfTelemetry,
    mut stopped: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let record = move || {
        // Health only: no stats (scope 0).
        for row in plugin_health(&integrations, &transforms, &views, 0) {
            let up = row.health == Health::Running;
            telemetry.plugin_health(&row.plugin, row.kind, row.integration.as_deref(), up);
        }
    };
    record();
    tokio::spawn(async move {
        let mut ticker =
            tokio::time::interval_at(tokio::time::Instant::now() + HEALTH_PERIOD, HEALTH_PERIOD);
        loop {
            tokio::select! {
                _ = ticker.tick() => record(),
                _ = stopped.wait_for(|s| *s) => return,
            }
        }
    })
}

/// What the host loads from plugins.
struct Plugins {
    /// The loader, for transforms, views, exporter plugins and hot reload.
    loader: Arc<Loader>,
    /// The transform chain.
    transforms: Transforms,
    /// The views, already bound to the registry.
    views: Vec<Arc<PluginView>>,
}

/// Loads every configured transform and view on a blocking thread: plugin calls must not run
/// on async worker threads.
async fn load_plugins(
    config: &Config,
    registries: &Arc<Registries>,
    scope: u64,
) -> Result<Plugins, StartError> {
    let (config, registries) = (config.clone(), registries.clone());
    tokio::task::spawn_blocking(move || {
        let loader = Loader::new(&config.plugins, config.plugin_cache(), scope).map_err(|e| {
            StartError::Plugin {
                kind: "plugin runtime",
                plugin: "*".into(),
                reason: e.to_string(),
            }
        })?;
        let transforms = transforms(&config, &loader)?;
        let views = views(&config, &loader, &registries.own().registry)?;
        Ok(Plugins {
            loader: Arc::new(loader),
            transforms,
            views,
        })
    })
    .await
    .map_err(|e| StartError::Plugin {
        kind: "plugin runtime",
        plugin: "*".into(),
        reason: e.to_string(),
    })?
}

/// The integrations of the config file: `[otlp]` when it has an endpoint, then every
/// `[[exporters]]` entry under its name.
fn configured_integrations(config: &Config) -> Result<Vec<ExporterSpec>, StartError> {
    let mut specs: Vec<ExporterSpec> = ExporterSpec::otlp(&config.otlp, &config.delivery)
        .into_iter()
        .collect();
    let taken: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
    let names = exporter_names(&config.exporters, &taken).map_err(|reason| StartError::Plugin {
        kind: "integration",
        plugin: "[[exporters]]".into(),
        reason,
    })?;
    let env = |k: &str| std::env::var(k).ok();
    for (entry, name) in config.exporters.iter().zip(names) {
        let spec = ExporterSpec::exporter(entry, name.clone(), &config.delivery, &env).map_err(
            |reason| StartError::Plugin {
                kind: "integration",
                plugin: name,
                reason,
            },
        )?;
        specs.push(spec);
    }
    Ok(specs)
}

/// What to do about `kind` plugin `plugin` failing to load for `reason`: stop the start under
/// `strict`, else log it and keep the reason for the plugin's `failed` health.
fn unloaded(
    config: &Config,
    kind: &'static str,
    plugin: &str,
    reason: String,
) -> Result<String, StartError> {
    if config.plugins.strict {
        return Err(StartError::Plugin {
            kind,
            plugin: plugin.to_owned(),
            reason,
        });
    }
    tracing::error!(%kind, %plugin, %reason, "plugin could not be loaded; it is failed until a working version is dropped in");
    Ok(reason)
}

/// Loads the `[[transforms]]` chain.
fn transforms(config: &Config, loader: &Loader) -> Result<Transforms, StartError> {
    let mut chain = Vec::new();
    for entry in &config.transforms {
        let link = match loader.load_transform(&entry.plugin, &entry.config, entry.on_failure) {
            Ok(link) => {
                tracing::info!(plugin = %entry.plugin, "transform plugin loaded");
                link
            }
            Err(reason) => {
                let reason = unloaded(config, "transform", &entry.plugin, reason)?;
                ChainLink::failed(
                    &entry.plugin,
                    entry.config.clone(),
                    entry.on_failure,
                    reason,
                )
            }
        };
        chain.push(Arc::new(link));
    }
    Ok(Transforms::new(chain))
}

/// Loads the `[[views]]` and binds each to the instruments it names (never the host's own).
fn views(
    config: &Config,
    loader: &Loader,
    registry: &Registry,
) -> Result<Vec<Arc<PluginView>>, StartError> {
    let mut views = Vec::new();
    for entry in &config.views {
        let view = match loader.load_view(&entry.plugin, &entry.config) {
            Ok(view) => view,
            Err(reason) => {
                let reason = unloaded(config, "view", &entry.plugin, reason)?;
                PluginView::failed(&entry.plugin, entry.config.clone(), reason)
            }
        };
        let view = Arc::new(view);
        let patterns: Vec<Pattern> = entry.instruments.iter().map(|p| Pattern::new(p)).collect();
        registry.add_view(
            Arc::new(move |d: &Descriptor| {
                *d.scope.name != *SELF_SCOPE && patterns.iter().any(|p| p.matches(&d.name))
            }),
            view.clone(),
        );
        tracing::info!(plugin = %entry.plugin, instruments = ?entry.instruments, "view plugin loaded");
        views.push(view);
    }
    Ok(views)
}

/// The Prometheus routes: `/metrics`, and `/metrics/{id}` for each stored Prometheus
/// integration, its metric names prefixed.
fn scrape_routes(registries: Arc<Registries>, integrations: Integrations) -> Router {
    // Renders (with `prefix` on every name, if given) and compresses as the request's `Accept`
    // and `Accept-Encoding` ask, on a blocking thread: a large scrape is CPU work.
    let scrape = move |headers: axum::http::HeaderMap, prefix: Option<String>| {
        let registries = registries.clone();
        async move {
            let header = |name| headers.get(name).and_then(|v| v.to_str().ok());
            let format = prometheus::Format::negotiate(header(axum::http::header::ACCEPT));
            let compression =
                prometheus::Compression::negotiate(header(axum::http::header::ACCEPT_ENCODING));
            let body = tokio::task::spawn_blocking(move || {
                let producers = registries.all();
                let pairs: Vec<_> = producers.iter().map(Producer::pair).collect();
                let text = prometheus::render_all(format, &pairs);
                let text = match prefix {
                    Some(prefix) => prometheus::prefixed(&text, &prefix),
                    None => text,
                };
                compression.apply(text)
            })
            .await
            .unwrap_or_default();
            let mut response = ([(CONTENT_TYPE, format.content_type())], body).into_response();
            let headers = response.headers_mut();
            headers.insert(
                axum::http::header::VARY,
                axum::http::HeaderValue::from_static("Accept, Accept-Encoding"),
            );
            if let Some(coding) = compression.header() {
                headers.insert(
                    axum::http::header::CONTENT_ENCODING,
                    axum::http::HeaderValue::from_static(coding),
                );
            }
            response
        }
    };
    let all = scrape.clone();
    Router::new()
        .route(
            "/metrics",
            get(move |headers: axum::http::HeaderMap| all(headers, None)),
        )
        .route(
            "/metrics/{id}",
            get(
                move |Path(id): Path<String>, headers: axum::http::HeaderMap| async move {
                    let Some(prefix) = integrations.prometheus_prefix(&id) else {
                        let message = format!("no enabled prometheus integration `{id}`");
                        return (axum::http::StatusCode::NOT_FOUND, message).into_response();
                    };
                    scrape(headers, Some(prefix)).await
                },
            ),
        )
}
