//! Inspection without a running host: which world a component implements, and whether its `init` accepts a configuration.

use std::sync::Arc;

use super::bindings::{encoder, transformer, viewer};
use super::runtime::{Limits, Runtime, arm, failure};

/// What a valid plugin is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum World {
    /// An exporter, with the signals and temporality it asked for.
    Exporter {
        /// `metrics`, `logs` or both.
        signals: String,
        /// `cumulative` or `delta`.
        temporality: String,
    },
    /// A transform.
    Transform,
    /// A view.
    View,
}

impl std::fmt::Display for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            World::Exporter {
                signals,
                temporality,
            } => write!(
                f,
                "exporter (signals: {signals}; temporality: {temporality})"
            ),
            World::Transform => f.write_str("transform"),
            World::View => f.write_str("view"),
        }
    }
}

/// Why a component would not load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The world it implements, when that much is valid and only `init` refused.
    pub world: Option<&'static str>,
    /// What went wrong.
    pub reason: String,
}

impl From<String> for Rejection {
    fn from(reason: String) -> Self {
        Self {
            world: None,
            reason,
        }
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.world {
            Some(world) => write!(
                f,
                "{world} whose init refused the configuration: {}",
                self.reason
            ),
            None => f.write_str(&self.reason),
        }
    }
}

fn refused(world: &'static str) -> impl FnOnce(String) -> Rejection {
    move |reason| Rejection {
        world: Some(world),
        reason,
    }
}

/// Compiles `bytes`, finds its world, and runs its `init` with `config` in a sandbox with `limits`.
pub fn check(
    runtime: &Arc<Runtime>,
    name: &str,
    bytes: &[u8],
    settings: &[(String, String)],
    limits: Limits,
) -> Result<World, Rejection> {
    let config = settings.to_vec();
    let config = &config;
    let component = runtime.compile(bytes).map_err(|e| e.to_string())?;
    let pre = runtime.prepare(&component).map_err(|e| e.to_string())?;
    let mut store = runtime.store(&Arc::from(name), limits);
    arm(&mut store);
    let instance = pre
        .instantiate(&mut store)
        .map_err(|e| failure(&store, &e).to_string())?;
    let trapped = |store: &wasmtime::Store<_>, e: wasmtime::Error| failure(store, &e).to_string();
    if let Ok(indices) = encoder::GuestIndices::new(&pre) {
        let guest = indices
            .load(&mut store, &instance)
            .map_err(|e| e.to_string())?;
        let info = guest
            .call_init(&mut store, config)
            .map_err(|e| trapped(&store, e))?
            .map_err(refused("exporter"))?;
        let mut signals = Vec::new();
        if info.signals.contains(encoder::Signals::METRICS) {
            signals.push("metrics");
        }
        if info.signals.contains(encoder::Signals::LOGS) {
            signals.push("logs");
        }
        let temporality = match info.temporality {
            super::bindings::types::Temporality::Cumulative => "cumulative",
            super::bindings::types::Temporality::Delta => "delta",
        }
        .to_owned();
        return Ok(World::Exporter {
            signals: signals.join(", "),
            temporality,
        });
    }
    // Transforms and views have the same `init`; only their interface differs.
    macro_rules! init_as {
        ($interface:ident, $world:expr, $kind:literal) => {
            if let Ok(indices) = $interface::GuestIndices::new(&pre) {
                let guest = indices
                    .load(&mut store, &instance)
                    .map_err(|e| e.to_string())?;
                guest
                    .call_init(&mut store, config)
                    .map_err(|e| trapped(&store, e))?
                    .map_err(refused($kind))?;
                return Ok($world);
            }
        };
    }
    init_as!(transformer, World::Transform, "transform");
    init_as!(viewer, World::View, "view");
    Err(String::from(
        "wrong world: it exports none of wasmtel:plugin/encoder, transformer or viewer",
    )
    .into())
}

/// One plugin a host would load.
#[derive(Debug, Clone)]
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
                .map_err(|e| Rejection::from(e.to_string()))
                .and_then(|settings| {
                    check(runtime, &name, &bytes, &settings, Limits::of(config, &name))
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
