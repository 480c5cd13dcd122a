//! Inspection without a running host: which world a component implements, and whether its
//! `init` accepts a configuration.

use std::sync::Arc;

use super::error::{CallError, Invalid, PluginError, WasmError};
use super::exporter::Encoder;
use super::kind::{PluginKind, World};
use super::limits::Limits;
use super::plugin::Plugin;
use super::runtime::{Runtime, arm, failure};
use super::stats::Stats;
use super::transform::Transformer;
use super::view::Viewer;

/// Why a component would not load.
#[derive(Debug)]
pub struct Rejection {
    /// The world it implements, when that much is known.
    pub world: Option<&'static str>,
    /// What went wrong.
    pub error: PluginError,
}

impl From<PluginError> for Rejection {
    fn from(error: PluginError) -> Self {
        Self { world: None, error }
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.error, self.world) {
            (PluginError::Refused { reason, .. }, Some(world)) => {
                write!(f, "{world} whose init refused the configuration: {reason}")
            }
            (PluginError::Init(CallError::Failed(_, failure)), _) => write!(f, "{failure}"),
            (other, _) => f.write_str(&other.chain()),
        }
    }
}

/// Loads `component` as kind `K` to check it.
fn as_kind<K: PluginKind>(
    runtime: &Arc<Runtime>,
    name: &str,
    component: &wasmtime::component::Component,
    settings: &[(String, String)],
    limits: Limits,
) -> Result<World, Rejection> {
    Plugin::<K>::load(
        runtime,
        name,
        component,
        settings.to_vec(),
        limits,
        &Stats::default(),
    )
    .map(|plugin| K::world(plugin.info()))
    .map_err(|error| Rejection {
        world: Some(K::NAME),
        error,
    })
}

/// Finds a compiled component's world and runs its `init` with `settings` in a sandbox with
/// `limits` (the component is compiled once, by the caller, for a check and a load).
pub fn check(
    runtime: &Arc<Runtime>,
    name: &str,
    component: &wasmtime::component::Component,
    settings: &[(String, String)],
    limits: Limits,
) -> Result<World, Rejection> {
    let pre = runtime.prepare(component).map_err(PluginError::from)?;
    if Encoder::indices(&pre).is_ok() {
        return as_kind::<Encoder>(runtime, name, component, settings, limits);
    }
    if Transformer::indices(&pre).is_ok() {
        return as_kind::<Transformer>(runtime, name, component, settings, limits);
    }
    if Viewer::indices(&pre).is_ok() {
        return as_kind::<Viewer>(runtime, name, component, settings, limits);
    }
    // Of no plugin world; an instance that cannot even start says more.
    let mut store = runtime.store(&Arc::from(name), limits, &Stats::default());
    arm(&mut store);
    if let Err(e) = pre.instantiate(&mut store) {
        let failed = CallError::Failed(Arc::from(name), failure(&store, &e));
        return Err(PluginError::Init(failed).into());
    }
    Err(PluginError::from(Invalid::World(WasmError::new(
        "it exports none of wasmtel:plugin/encoder, transformer or viewer",
    )))
    .into())
}

/// One plugin a host would load.
#[derive(Debug)]
pub struct Entry {
    /// The plugin name.
    pub name: String,
    /// Where it comes from.
    pub origin: super::catalog::Origin,
    /// The SHA-256 of its component.
    pub digest: String,
    /// Its world, or why it would be rejected.
    pub world: Result<World, Rejection>,
}

/// Every plugin a host with `config` would see: the directory's `.wasm` files, and the embedded ones they do not override.
pub fn list(runtime: &Arc<Runtime>, config: &crate::config::PluginsConfig) -> Vec<Entry> {
    let mut names: Vec<String> = super::embedded::PLUGINS
        .iter()
        .map(|(n, _)| (*n).to_owned())
        .collect();
    if let Ok(entries) = std::fs::read_dir(&config.dir) {
        for e in entries.filter_map(Result::ok) {
            let path = e.path();
            if path.extension().is_some_and(|x| x == "wasm")
                && let Some(stem) = path.file_stem().and_then(|s| s.to_str())
            {
                names.push(stem.to_owned());
            }
        }
    }
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter_map(|name| {
            let (bytes, origin) = super::catalog::component(&config.dir, &name).ok()?;
            let world = super::catalog::config(config, &name, &toml::Table::new())
                .map_err(|e| Rejection::from(PluginError::from(e)))
                .and_then(|settings| {
                    let component = runtime.compile(&bytes)?;
                    check(
                        runtime,
                        &name,
                        &component,
                        &settings,
                        Limits::of(config, &name),
                    )
                });
            Some(Entry {
                digest: super::cache::digest(&bytes),
                name,
                origin,
                world,
            })
        })
        .collect()
}
