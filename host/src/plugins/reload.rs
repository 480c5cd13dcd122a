//! Hot reload: watch the plugin directory, compile and validate changed files off the
//! hot path, and swap the new version in for every integration that uses it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio::task::JoinHandle;
use wasmtime::component::Component;

use super::cache::digest;
use super::loader::Loader;
use super::supervisor::Health;

/// How often the plugin directory is scanned.
pub const POLL: Duration = Duration::from_millis(20);

/// What became of a plugin file.
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

/// Something that runs a plugin and can take a new version of it.
pub trait Reloadable: Send + Sync {
    /// The plugin name (the file stem) it runs.
    fn plugin(&self) -> &str;

    /// The SHA-256 of the component it runs now, if any.
    fn serving(&self) -> Option<String>;

    /// Validates and installs the new version; on `Err`, the current version keeps running.
    fn reload(&self, loader: &Loader, source: Source<'_>) -> Result<(), String>;
}

/// The version of a plugin serving now, with the SHA-256 of its component; swapped whole on
/// reload. A plugin that could not be loaded serves nothing and keeps the reason, until a
/// version of its file loads.
pub struct Versioned<P>(
    std::sync::RwLock<Option<(Arc<P>, String)>>,
    std::sync::Mutex<Option<String>>,
);

impl<P> Versioned<P> {
    /// Serving `plugin`, whose component has SHA-256 `digest`.
    pub fn new(plugin: P, digest: String) -> Self {
        Self(
            std::sync::RwLock::new(Some((Arc::new(plugin), digest))),
            std::sync::Mutex::new(None),
        )
    }

    /// Serving nothing, because the plugin could not be loaded for `reason`.
    pub fn failed(reason: String) -> Self {
        Self(
            std::sync::RwLock::new(None),
            std::sync::Mutex::new(Some(reason)),
        )
    }

    /// Why no version serves, when loading failed.
    pub fn failure(&self) -> Option<String> {
        self.1
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The health of the version serving now (by `of`), or `Failed` with the load failure.
    pub fn health(&self, of: impl FnOnce(&P) -> Health) -> Option<Health> {
        match self.get() {
            Some(p) => Some(of(&p)),
            None => self.failure().map(Health::Failed),
        }
    }

    /// The version serving now; `None` once unloaded.
    pub fn get(&self) -> Option<Arc<P>> {
        self.read().as_ref().map(|(p, _)| p.clone())
    }

    /// Runs `f` on the version serving now under the read lock, without taking a reference to it.
    pub fn peek<R>(&self, f: impl FnOnce(Option<&P>) -> R) -> R {
        f(self.read().as_ref().map(|(p, _)| &**p))
    }

    /// Installs `next` (or unloads) as [`Versioned::set`] does, calling `swap` with the old and
    /// new versions while no call can see either.
    pub fn replace(&self, next: Option<(P, String)>, swap: impl FnOnce(Option<&P>, Option<&P>)) {
        let mut slot = self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let next = next.map(|(p, d)| (Arc::new(p), d));
        if next.is_some() {
            *self
                .1
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
        }
        swap(
            slot.as_ref().map(|(p, _)| &**p),
            next.as_ref().map(|(p, _)| &**p),
        );
        *slot = next;
    }

    /// The SHA-256 of the version serving now.
    pub fn digest(&self) -> Option<String> {
        self.read().as_ref().map(|(_, d)| d.clone())
    }

    /// Installs `next` (or unloads); calls holding the old version finish on it.
    pub fn set(&self, next: Option<(P, String)>) {
        self.replace(next, |_, _| {});
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Option<(Arc<P>, String)>> {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The version to install for `source`: the new file's, or after a removal the embedded plugin's (if any).
pub fn next_version<P>(
    loader: &Loader,
    name: &str,
    source: Source<'_>,
    build: impl FnOnce(&Component) -> Result<P, String>,
) -> Result<Option<(P, String)>, String> {
    match source {
        Source::File { component, digest } => Ok(Some((build(component)?, digest.to_owned()))),
        Source::Removed => match super::embedded::find(name) {
            Some(bytes) => {
                let component = loader.compile(bytes).map_err(|e| e.to_string())?;
                Ok(Some((build(&component)?, digest(bytes))))
            }
            None => Ok(None),
        },
    }
}

/// A file as last seen.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    modified: SystemTime,
    len: u64,
    digest: String,
}

/// The `.wasm` files in `dir` by stem, with their modification time and size.
fn scan(dir: &Path) -> HashMap<String, (PathBuf, SystemTime, u64)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return HashMap::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let path = e.path();
            let stem = path.file_stem()?.to_str()?.to_owned();
            if path.extension()? != "wasm" {
                return None;
            }
            let meta = e.metadata().ok()?;
            Some((stem, (path, meta.modified().ok()?, meta.len())))
        })
        .collect()
}

/// Lists what runs plugins now: integrations come and go while the host runs.
pub type Subscribers = Arc<dyn Fn() -> Vec<Arc<dyn Reloadable>> + Send + Sync>;

/// The watcher's memory of the directory.
struct Watcher {
    loader: Arc<Loader>,
    subscribers: Subscribers,
    seen: HashMap<String, Seen>,
}

impl Watcher {
    fn new(loader: Arc<Loader>, subscribers: Subscribers) -> Self {
        let mut watcher = Self {
            loader,
            subscribers,
            seen: HashMap::new(),
        };
        let subscribers = (watcher.subscribers)();
        // A file counts as seen only if it is what is serving; anything else
        // (replaced between the host's start and now) is picked up by the first poll.
        for (stem, (path, modified, len)) in scan(watcher.loader.dir()) {
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            let hash = digest(&bytes);
            let users: Vec<_> = subscribers.iter().filter(|s| s.plugin() == stem).collect();
            if users
                .iter()
                .all(|u| u.serving().as_deref() == Some(hash.as_str()))
            {
                watcher.seen.insert(
                    stem,
                    Seen {
                        modified,
                        len,
                        digest: hash,
                    },
                );
            }
        }
        watcher
    }

    /// One pass over the directory; blocking (file reads, compilation, instantiation).
    fn poll(&mut self) {
        let now = scan(self.loader.dir());
        for (stem, (path, modified, len)) in &now {
            let unchanged = self
                .seen
                .get(stem)
                .is_some_and(|s| s.modified == *modified && s.len == *len);
            if !unchanged {
                self.changed(stem, path, *modified, *len);
            }
        }
        let removed: Vec<String> = self
            .seen
            .keys()
            .filter(|k| !now.contains_key(*k))
            .cloned()
            .collect();
        for stem in removed {
            self.seen.remove(&stem);
            for s in (self.subscribers)().iter().filter(|s| s.plugin() == stem) {
                match s.reload(&self.loader, Source::Removed) {
                    Ok(()) => {
                        tracing::info!(plugin = %stem, "plugin file removed; unloaded (the embedded version serves if there is one)")
                    }
                    Err(e) => {
                        tracing::warn!(plugin = %stem, "plugin file removed, and falling back failed: {e}")
                    }
                }
            }
        }
    }

    fn changed(&mut self, stem: &str, path: &Path, modified: SystemTime, len: u64) {
        let Ok(bytes) = std::fs::read(path) else {
            return;
        };
        let hash = digest(&bytes);
        let same = self.seen.get(stem).is_some_and(|s| s.digest == hash);
        self.seen.insert(
            stem.to_owned(),
            Seen {
                modified,
                len,
                digest: hash.clone(),
            },
        );
        if same {
            return;
        }
        let users: Vec<_> = (self.subscribers)()
            .into_iter()
            .filter(|s| s.plugin() == stem && s.serving().as_deref() != Some(hash.as_str()))
            .collect();
        if users.is_empty() {
            return;
        }
        let component = match self.loader.compile(&bytes) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(file = %path.display(), "rejected plugin file: {e}; the previous version keeps serving");
                return;
            }
        };
        for user in users {
            match user.reload(
                &self.loader,
                Source::File {
                    component: &component,
                    digest: &hash,
                },
            ) {
                Ok(()) => {
                    tracing::info!(file = %path.display(), digest = &hash[..12], "plugin reloaded")
                }
                Err(e) => {
                    tracing::warn!(file = %path.display(), "rejected plugin file: {e}; the previous version keeps serving")
                }
            }
        }
    }
}

/// Starts watching the plugin directory for whatever `subscribers` lists until `stop` turns true.
pub fn spawn(
    loader: Arc<Loader>,
    subscribers: Subscribers,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let watcher = Arc::new(std::sync::Mutex::new(
            tokio::task::spawn_blocking(move || Watcher::new(loader, subscribers))
                .await
                .ok(),
        ));
        let mut ticker = tokio::time::interval(POLL);
        loop {
            tokio::select! {
                _ = ticker.tick() => {
                    let w = watcher.clone();
                    let _ = tokio::task::spawn_blocking(move || {
                        if let Some(w) = w.lock().unwrap_or_else(std::sync::PoisonError::into_inner).as_mut() {
                            w.poll();
                        }
                    })
                    .await;
                }
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() {
                        return;
                    }
                }
            }
        }
    })
}
