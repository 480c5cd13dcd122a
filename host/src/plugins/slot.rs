//! The hot-reloadable holder of a configured plugin, of any kind: the version serving now,
//! swapped whole when its file changes, or the reason no version could be loaded.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard};

use wasmtime::component::Component;

use super::cache::digest;
use super::error::PluginError;
use super::instance::Health;
use super::kind::PluginKind;
use super::loader::Loader;
use super::plugin::Plugin;

/// What became of a plugin file.
#[derive(Debug, Clone, Copy)]
pub enum Source<'a> {
    /// A new or changed file, compiled.
    File {
        /// The compiled component.
        component: &'a Component,
        /// The SHA-256 of its bytes.
        digest: &'a str,
    },
    /// The file was deleted.
    Removed,
}

/// A plugin that follows its file in the plugin directory, whatever its kind.
pub trait Reloadable: Send + Sync {
    /// The plugin name (the file stem) it runs.
    fn plugin(&self) -> &str;

    /// `exporter`, `transform` or `view`.
    fn kind(&self) -> &'static str;

    /// The SHA-256 of the component it runs now, if any.
    fn serving(&self) -> Option<String>;

    /// The health of the version serving now, `Failed` when none could be loaded, `None` when
    /// its file was removed and nothing replaced it.
    fn health(&self) -> Option<Health>;

    /// Validates and installs the version `source` gives (after a removal, the embedded plugin
    /// of that name, if any); on `Err`, the current version keeps running.
    fn reload(&self, loader: &Loader, source: Source<'_>) -> Result<(), PluginError>;
}

/// The version serving now, with the SHA-256 of its component.
type Version<K> = Option<(Arc<Plugin<K>>, String)>;

/// One configured plugin of kind `K`: its name and settings, the version serving now, and why
/// none serves when loading failed.
pub struct Slot<K: PluginKind> {
    name: String,
    overrides: toml::Table,
    current: RwLock<Version<K>>,
    failure: Mutex<Option<String>>,
    generation: AtomicU64,
}

impl<K: PluginKind> std::fmt::Debug for Slot<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot")
            .field("name", &self.name)
            .field("failure", &self.failure())
            .field("generation", &self.generation())
            .finish_non_exhaustive()
    }
}

impl<K: PluginKind> Slot<K> {
    /// Plugin `name` with settings `overrides`, serving `loaded` (a plugin and the SHA-256 of
    /// its component), or nothing with the reason it could not be loaded.
    pub fn new(
        name: &str,
        overrides: toml::Table,
        loaded: Result<(Plugin<K>, String), PluginError>,
    ) -> Self {
        let (current, failure) = match loaded {
            Ok((plugin, digest)) => (Some((Arc::new(plugin), digest)), None),
            Err(e) => (None, Some(e.chain())),
        };
        Self {
            name: name.to_owned(),
            overrides,
            current: RwLock::new(current),
            failure: Mutex::new(failure),
            generation: AtomicU64::new(0),
        }
    }

    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Why no version serves, when loading failed.
    pub fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The version serving now; `None` when none loaded or its file was removed.
    pub fn get(&self) -> Option<Arc<Plugin<K>>> {
        self.read().as_ref().map(|(p, _)| p.clone())
    }

    /// Runs `f` on the version serving now under the read lock, without taking a reference to it.
    pub fn peek<R>(&self, f: impl FnOnce(Option<&Plugin<K>>) -> R) -> R {
        f(self.read().as_ref().map(|(p, _)| &**p))
    }

    /// How many times a version was installed since the first: answers of an older version no
    /// longer hold once it changes.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Installs `next` (or unloads); calls holding the old version finish on it.
    pub fn set(&self, next: Version<K>) {
        let mut slot = self.current.write().unwrap_or_else(PoisonError::into_inner);
        if next.is_some() {
            *self.failure.lock().unwrap_or_else(PoisonError::into_inner) = None;
        }
        *slot = next;
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    fn read(&self) -> RwLockReadGuard<'_, Version<K>> {
        self.current.read().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<K: PluginKind> Reloadable for Slot<K> {
    fn plugin(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        K::NAME
    }

    fn serving(&self) -> Option<String> {
        self.read().as_ref().map(|(_, d)| d.clone())
    }

    fn health(&self) -> Option<Health> {
        match self.get() {
            Some(p) => Some(p.health()),
            None => self.failure().map(Health::Failed),
        }
    }

    fn reload(&self, loader: &Loader, source: Source<'_>) -> Result<(), PluginError> {
        let next = match source {
            Source::File { component, digest } => Some((
                Arc::new(loader.load(&self.name, component, &self.overrides)?),
                digest.to_owned(),
            )),
            Source::Removed => match super::embedded::find(&self.name) {
                Some(bytes) => {
                    let component = loader.compile(bytes)?;
                    let plugin = loader.load(&self.name, &component, &self.overrides)?;
                    Some((Arc::new(plugin), digest(bytes)))
                }
                None => None,
            },
        };
        self.set(next);
        Ok(())
    }
}
