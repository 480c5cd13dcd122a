//! The plugins of one host: every loaded plugin registers here — transforms and views for the
//! host's life, an integration's exporter until the integration stops — and the set owns what
//! they share: the loader, the reload watcher, their health and their call statistics.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::catalog;
use super::error::{PluginError, Unloaded};
use super::exporter::Encoder;
use super::instance::Health;
use super::kind::PluginKind;
use super::loader::Loader;
use super::slot::{Reloadable, Slot, Source};
use super::stats::{Stats, Summary};
use super::transform::{Link, Transformer, Transforms};
use super::view::{PluginView, Viewer};
use crate::config::{Config, GenaiContentConfig, OnFailure, PluginsConfig};
use crate::metrics::{ConflictError, Registry};
use crate::model::attributes::ValueRef;
use crate::model::metric::InstrumentKind;

/// One loaded plugin, as the admin API and self-telemetry show it.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The plugin's name.
    pub plugin: String,
    /// `exporter`, `transform` or `view`.
    pub kind: &'static str,
    /// The integration an exporter plugin serves.
    pub integration: Option<String>,
    /// The tenant that owns that integration.
    pub tenant: Option<String>,
    /// Its health.
    pub health: Health,
    /// What its calls did.
    pub stats: Summary,
}

/// Plugin `plugin` of kind `K` could not be loaded for `error`.
fn unloaded<K: PluginKind>(plugin: &str, error: PluginError) -> Unloaded {
    Unloaded {
        kind: K::NAME,
        plugin: plugin.to_owned(),
        error,
    }
}

/// Where plugins of `kind` are listed: exporters, then transforms, then views.
fn order(kind: &str) -> u8 {
    match kind {
        "exporter" => 0,
        "transform" => 1,
        _ => 2,
    }
}

/// A registered plugin still held: the integration it serves and its tenant, and its slot.
type Live = (Option<String>, Option<String>, Arc<dyn Reloadable>);

/// A registered plugin: the integration it serves, if any, its tenant, whether it runs that
/// tenant's own upload, and its slot while someone holds it.
struct Member {
    integration: Option<String>,
    tenant: Option<String>,
    uploaded: bool,
    slot: Weak<dyn Reloadable>,
}

/// Why a tenant's plugin upload was refused; the version serving before keeps serving.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// The name cannot name a plugin.
    #[error("{0}")]
    Name(String),
    /// The component is larger than the limit.
    #[error("the component is {size} bytes; tenants upload at most {limit}")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The component would not load (what `plugins check` says).
    #[error("the component would not load: {0}")]
    Invalid(String),
    /// An integration runs the plugin as another kind.
    #[error("integration `{integration}` runs `{plugin}` as a {kind}; this component is a {world}")]
    Kind {
        /// The integration.
        integration: String,
        /// The plugin.
        plugin: String,
        /// The kind it runs it as.
        kind: &'static str,
        /// What the upload is.
        world: String,
    },
    /// The file could not be written.
    #[error("the plugin could not be stored: {0}")]
    Io(#[from] std::io::Error),
}

/// The plugins of one host.
pub struct PluginSet {
    loader: Arc<Loader>,
    strict: bool,
    members: Mutex<Vec<Member>>,
    /// Where tenants' uploads live: `<dir>/<tenant>/plugins/<name>.wasm`.
    tenants: std::sync::OnceLock<PathBuf>,
}

impl std::fmt::Debug for PluginSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginSet")
            .field("strict", &self.strict)
            .field("members", &self.members().len())
            .finish_non_exhaustive()
    }
}

impl PluginSet {
    /// An empty set loading plugins as `[plugins]` says, compiled plugins cached in `cache`.
    pub fn new(config: &PluginsConfig, cache: Option<PathBuf>) -> Result<Arc<Self>, PluginError> {
        Ok(Arc::new(Self {
            loader: Arc::new(Loader::new(config, cache, Stats::default())?),
            strict: config.strict,
            members: Mutex::default(),
            tenants: std::sync::OnceLock::new(),
        }))
    }

    /// Keeps tenants' uploads under `dir` (`<dir>/<tenant>/plugins/<name>.wasm`).
    pub fn keep_uploads_in(&self, dir: PathBuf) {
        let _ = self.tenants.set(dir);
    }

    /// Deletes every upload of `tenant` (it was deleted; its integrations are gone).
    pub fn forget_uploads(&self, tenant: &str) {
        if let Some(dir) = self.tenants.get() {
            let _ = std::fs::remove_dir_all(dir.join(tenant));
        }
    }

    /// The file of `tenant`'s upload `name`.
    fn upload_path(&self, tenant: &str, name: &str) -> Option<PathBuf> {
        let dir = self.tenants.get()?;
        Some(
            dir.join(tenant)
                .join("plugins")
                .join(format!("{name}.wasm")),
        )
    }

    /// The loader, for `plugins` commands that load without a host.
    pub fn loader(&self) -> &Arc<Loader> {
        &self.loader
    }

    /// The statistics every plugin of the set counts its calls in.
    pub fn stats(&self) -> &Stats {
        self.loader.stats()
    }

    /// Loads plugin `name` as kind `K` with settings `overrides` and registers it (serving
    /// `integration`, of `tenant` if a tenant owns it, for an integration's plugin). A plugin that cannot be loaded is an error under
    /// `[plugins] strict`; otherwise it is logged and registered as failed, with its reason,
    /// until a working version of its file is dropped in.
    pub fn open<K: PluginKind>(
        &self,
        name: &str,
        overrides: &toml::Table,
        integration: Option<&str>,
        tenant: Option<&str>,
    ) -> Result<Arc<Slot<K>>, PluginError> {
        let kind = K::NAME;
        // A tenant's own upload of that name, else the plugin directory's or the embedded one.
        let upload = tenant
            .and_then(|t| self.upload_path(t, name))
            .and_then(|path| std::fs::read(&path).ok().map(|bytes| (path, bytes)));
        let uploaded = upload.is_some();
        let opened = match upload {
            Some((path, bytes)) => self
                .loader
                .open_bytes::<K>(name, &bytes, overrides)
                .map(|(plugin, digest)| (plugin, digest, catalog::Origin::File(path))),
            None => self.loader.open::<K>(name, overrides),
        };
        let loaded = match opened {
            Ok((plugin, digest, origin)) => {
                tracing::info!(kind, plugin = %name, integration, ?origin, "{kind} plugin loaded");
                Ok((plugin, digest))
            }
            Err(e) if self.strict => return Err(e),
            Err(e) => {
                tracing::error!(kind, plugin = %name, integration,
                    "{kind} plugin could not be loaded: {}; it is failed until a working version of its file is dropped in", e.chain());
                Err(e)
            }
        };
        let slot = Arc::new(Slot::new(name, overrides.clone(), loaded));
        let member: Arc<dyn Reloadable> = slot.clone();
        self.members().push(Member {
            integration: integration.map(str::to_owned),
            tenant: tenant.map(str::to_owned),
            uploaded,
            slot: Arc::downgrade(&member),
        });
        Ok(slot)
    }

    /// Removes a plugin from the set (its integration stopped or was deleted).
    pub fn leave(&self, slot: &Arc<dyn Reloadable>) {
        let gone = Arc::downgrade(slot);
        self.members().retain(|m| !Weak::ptr_eq(&m.slot, &gone));
    }

    fn members(&self) -> std::sync::MutexGuard<'_, Vec<Member>> {
        self.members.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every registered plugin still held, with its integration; forgets the others.
    fn live(&self) -> Vec<Live> {
        let mut members = self.members();
        members.retain(|m| m.slot.strong_count() > 0);
        members
            .iter()
            .filter_map(|m| Some((m.integration.clone(), m.tenant.clone(), m.slot.upgrade()?)))
            .collect()
    }

    /// Every plugin that follows its file in the plugin directory (a tenant's upload follows
    /// its uploads instead).
    pub fn reloadables(&self) -> Vec<Arc<dyn Reloadable>> {
        let mut members = self.members();
        members.retain(|m| m.slot.strong_count() > 0);
        members
            .iter()
            .filter(|m| !m.uploaded)
            .filter_map(|m| m.slot.upgrade())
            .collect()
    }

    /// Checks `bytes` as `plugins check` does and stores it as `tenant`'s plugin `name`
    /// (at most `limit` bytes); every integration of that tenant running a plugin of that name
    /// switches to it at once. Refused, nothing changes. What the component is.
    pub fn upload(
        &self,
        tenant: &str,
        name: &str,
        bytes: &[u8],
        limit: usize,
    ) -> Result<super::kind::World, UploadError> {
        if let Some(reason) = crate::config::plugin_name_error(name) {
            return Err(UploadError::Name(reason));
        }
        if bytes.len() > limit {
            return Err(UploadError::TooLarge {
                size: bytes.len(),
                limit,
            });
        }
        let path = self
            .upload_path(tenant, name)
            .ok_or_else(|| UploadError::Invalid("this host keeps no uploads".into()))?;
        let (settings, limits) = self
            .loader
            .configured(name)
            .map_err(|e| UploadError::Invalid(e.chain()))?;
        // Compiled once (through the cache), for the check and every slot it then serves.
        let component = self
            .loader
            .compile(bytes)
            .map_err(|e| UploadError::Invalid(e.chain()))?;
        let runtime = self.loader.runtime();
        let world = super::inspect::check(runtime, name, &component, &settings, limits)
            .map_err(|r| UploadError::Invalid(r.to_string()))?;
        let kind = match world {
            super::kind::World::Exporter { .. } => Encoder::NAME,
            super::kind::World::Transform { .. } => Transformer::NAME,
            super::kind::World::View => Viewer::NAME,
        };
        let users: Vec<(Option<String>, Arc<dyn Reloadable>)> = {
            let members = self.members();
            members
                .iter()
                .filter(|m| m.tenant.as_deref() == Some(tenant))
                .filter_map(|m| Some((m.integration.clone(), m.slot.upgrade()?)))
                .filter(|(_, slot)| slot.plugin() == name)
                .collect()
        };
        if let Some((integration, slot)) = users.iter().find(|(_, s)| s.kind() != kind) {
            return Err(UploadError::Kind {
                integration: integration.clone().unwrap_or_default(),
                plugin: name.to_owned(),
                kind: slot.kind(),
                world: world.to_string(),
            });
        }
        let digest = super::cache::digest(bytes);
        for (_, slot) in &users {
            let source = Source::File {
                component: &component,
                digest: &digest,
            };
            slot.reload(&self.loader, source)
                .map_err(|e| UploadError::Invalid(e.chain()))?;
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let partial = path.with_extension("wasm.partial");
        std::fs::write(&partial, bytes)?;
        std::fs::rename(&partial, &path)?;
        let gone: Vec<Weak<dyn Reloadable>> =
            users.iter().map(|(_, s)| Arc::downgrade(s)).collect();
        for m in self.members().iter_mut() {
            if gone.iter().any(|g| Weak::ptr_eq(g, &m.slot)) {
                m.uploaded = true;
            }
        }
        tracing::info!(tenant, plugin = %name, digest = &digest[..12], "tenant plugin uploaded");
        Ok(world)
    }

    /// The plugin each exporter, transform and view runs now (in that order), with the
    /// SHA-256 of its component.
    pub fn versions(&self) -> Vec<(String, Option<String>)> {
        let mut versions: Vec<_> = self.live().into_iter().map(|(_, _, slot)| slot).collect();
        versions.sort_by_key(|slot| order(slot.kind()));
        versions
            .iter()
            .map(|slot| (slot.plugin().to_owned(), slot.serving()))
            .collect()
    }

    /// Every plugin with a version or a load failure to show, exporters first, then transforms
    /// and views, each kind in the order it was loaded.
    pub fn rows(&self) -> Vec<Row> {
        let mut rows: Vec<Row> = self
            .live()
            .into_iter()
            .filter_map(|(integration, tenant, slot)| {
                Some(Row {
                    health: slot.health()?,
                    stats: self.stats().summary(slot.plugin()),
                    plugin: slot.plugin().to_owned(),
                    kind: slot.kind(),
                    integration,
                    tenant,
                })
            })
            .collect();
        rows.sort_by_key(|r| order(r.kind));
        rows
    }

    /// Loads the `[[transforms]]` chain and the `[[views]]` of `config` (views bound to the
    /// instruments of `registry` they name) on a blocking thread: plugins compile and start.
    pub async fn open_configured(
        self: &Arc<Self>,
        config: &Config,
        registry: &Arc<Registry>,
    ) -> Result<(Transforms, Vec<Arc<PluginView>>), Unloaded> {
        let (set, registry) = (self.clone(), registry.clone());
        let (transforms, views) = (config.transforms.clone(), config.views.clone());
        let opened = tokio::task::spawn_blocking(move || {
            let mut links = Vec::with_capacity(transforms.len());
            for entry in &transforms {
                let slot = set
                    .open::<Transformer>(&entry.plugin, &entry.config, None, None)
                    .map_err(|error| unloaded::<Transformer>(&entry.plugin, error))?;
                links.push(Link::new(slot, entry.on_failure));
            }
            let mut bound = Vec::with_capacity(views.len());
            for entry in &views {
                let view = set
                    .open::<Viewer>(&entry.plugin, &entry.config, None, None)
                    .map_err(|error| unloaded::<Viewer>(&entry.plugin, error))?;
                super::view::bind(&view, &entry.instruments, &registry);
                bound.push(view);
            }
            Ok((Transforms::new(links), bound))
        })
        .await;
        opened.unwrap_or_else(|e| {
            Err(Unloaded {
                kind: "plugin",
                plugin: "*".into(),
                error: PluginError::Runtime(super::error::WasmError::new(e.to_string())),
            })
        })
    }

    /// What opens the intake's GenAI content redaction when it is first needed (a node that
    /// never receives content runs no plugin for it): the `redact` plugin, fail-closed, with
    /// `content`'s patterns and its `drop` and `hash` cleared.
    pub fn content_redaction(
        self: &Arc<Self>,
        content: &GenaiContentConfig,
    ) -> impl Fn() -> Transforms + Send + Sync + 'static {
        let set = self.clone();
        let mut settings = toml::Table::new();
        let joined = |list: &[String]| toml::Value::String(list.join(","));
        settings.insert("content".into(), joined(&content.keys));
        settings.insert("content_events".into(), joined(&content.events));
        for cleared in ["drop", "hash"] {
            settings.insert(cleared.into(), toml::Value::String(String::new()));
        }
        move || {
            let slot = set
                .open::<Transformer>("redact", &settings, Some("intake"), None)
                // Strict loading refused it: a link that failed to load fails closed.
                .unwrap_or_else(|e| Arc::new(Slot::new("redact", settings.clone(), Err(e))));
            Transforms::new(vec![Link::new(slot, OnFailure::Closed)])
        }
    }

    /// Starts the reload watcher over the set's plugins until `stop` turns true.
    pub fn watch(self: &Arc<Self>, stop: watch::Receiver<bool>) -> JoinHandle<()> {
        let set = Arc::downgrade(self);
        let subscribers: super::watch::Subscribers = Arc::new(move || {
            set.upgrade()
                .map(|set| set.reloadables())
                .unwrap_or_default()
        });
        super::watch::spawn(self.loader.clone(), subscribers, stop)
    }

    /// Registers the plugins' self-metrics in `registry`: their call statistics and
    /// `wasmtel.plugin.up`, 1 while a plugin serves and 0 while it restarts or is failed.
    pub fn register(self: &Arc<Self>, registry: &Registry) -> Result<(), ConflictError> {
        self.stats().register(registry)?;
        let up = crate::telemetry::instrument(
            registry,
            InstrumentKind::ObservableGauge,
            "wasmtel.plugin.up",
            "",
            "1 while a loaded plugin is serving, 0 while it restarts after a failure or is marked failed.",
        )?;
        let set = Arc::downgrade(self);
        // Observable by construction, so the registration cannot be refused.
        let _ = registry.register_callback(
            up,
            Box::new(move |o| {
                let Some(set) = set.upgrade() else { return };
                for (integration, _, slot) in set.live() {
                    let Some(health) = slot.health() else {
                        continue;
                    };
                    let value = f64::from(u8::from(health == Health::Running));
                    let (kind, plugin) = (ValueRef::Str(slot.kind()), ValueRef::Str(slot.plugin()));
                    match &integration {
                        Some(name) => o.observe(
                            &[
                                ("integration", ValueRef::Str(name)),
                                ("kind", kind),
                                ("plugin", plugin),
                            ],
                            value,
                        ),
                        None => o.observe(&[("kind", kind), ("plugin", plugin)], value),
                    }
                }
            }),
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::exporter::Encoder;

    #[test]
    fn a_plugin_leaves_the_set_when_its_integration_stops_or_drops_it() {
        let set = PluginSet::new(&PluginsConfig::default(), None).expect("plugins");
        let kept = set
            .open::<Encoder>("statsd", &toml::Table::new(), Some("kept"), None)
            .expect("embedded");
        let stopped = set
            .open::<Encoder>("statsd", &toml::Table::new(), Some("stopped"), None)
            .expect("embedded");
        let dropped = set
            .open::<Encoder>("statsd", &toml::Table::new(), Some("dropped"), None)
            .expect("embedded");
        let integrations = |set: &PluginSet| -> Vec<Option<String>> {
            set.rows().into_iter().map(|r| r.integration).collect()
        };
        assert_eq!(integrations(&set).len(), 3);
        let member: Arc<dyn Reloadable> = stopped;
        set.leave(&member);
        drop(dropped);
        assert_eq!(integrations(&set), [Some("kept".to_owned())]);
        assert_eq!(set.versions().len(), 1);
        drop(kept);
        assert!(set.rows().is_empty());
    }
}
