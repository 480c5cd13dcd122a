//! Hot reload: the plugin directory watched through the operating system's file notifications
//! (debounced; polled only where notifications are unavailable), changed files compiled and
//! validated off the hot path, and each new version swapped in for every plugin that runs it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use notify::Watcher as _;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::cache::digest;
use super::loader::Loader;
use super::slot::{Reloadable, Source};

/// How long the directory must be quiet after a notification before it is read: a file being
/// written in several quick steps is read once, whole (one written slowly may be read part-way,
/// rejected with a log line, and read again when its last write lands).
pub const DEBOUNCE: Duration = Duration::from_millis(10);

/// How often the directory is read where notifications are unavailable (no directory yet, or
/// no notification instance left); each time, notifications are tried again.
pub const POLL: Duration = Duration::from_millis(250);

/// Lists what runs plugins now: integrations come and go while the host runs.
pub type Subscribers = Arc<dyn Fn() -> Vec<Arc<dyn Reloadable>> + Send + Sync>;

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

/// The watcher's memory of the directory.
struct Directory {
    loader: Arc<Loader>,
    subscribers: Subscribers,
    seen: HashMap<String, Seen>,
}

impl Directory {
    fn new(loader: Arc<Loader>, subscribers: Subscribers) -> Self {
        let mut directory = Self {
            loader,
            subscribers,
            seen: HashMap::new(),
        };
        let subscribers = (directory.subscribers)();
        // A file counts as seen only if it is what is serving; anything else
        // (replaced between the host's start and now) is picked up by the first read.
        for (stem, (path, modified, len)) in scan(directory.loader.dir()) {
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            let hash = digest(&bytes);
            let users: Vec<_> = subscribers.iter().filter(|s| s.plugin() == stem).collect();
            if users
                .iter()
                .all(|u| u.serving().as_deref() == Some(hash.as_str()))
            {
                directory.seen.insert(
                    stem,
                    Seen {
                        modified,
                        len,
                        digest: hash,
                    },
                );
            }
        }
        directory
    }

    /// One pass over the directory; blocking (file reads, compilation, instantiation).
    fn read(&mut self) {
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
                        tracing::warn!(plugin = %stem, "plugin file removed, and falling back failed: {}", e.chain())
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
                tracing::warn!(file = %path.display(), "rejected plugin file: {}; the previous version keeps serving", e.chain());
                return;
            }
        };
        for user in users {
            let source = Source::File {
                component: &component,
                digest: &hash,
            };
            match user.reload(&self.loader, source) {
                Ok(()) => {
                    tracing::info!(file = %path.display(), digest = &hash[..12], "plugin reloaded")
                }
                Err(e) => {
                    tracing::warn!(file = %path.display(), "rejected plugin file: {}; the previous version keeps serving", e.chain())
                }
            }
        }
    }
}

/// Notifications about `dir`, or `None` where the system cannot give them.
fn notifications(dir: &Path, tx: &mpsc::Sender<()>) -> Option<notify::RecommendedWatcher> {
    let tx = tx.clone();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok() {
            // A full channel already holds a wake-up: nothing is lost.
            let _ = tx.try_send(());
        }
    })
    .ok()?;
    watcher
        .watch(dir, notify::RecursiveMode::NonRecursive)
        .ok()?;
    Some(watcher)
}

/// Starts watching the plugin directory for whatever `subscribers` lists until `stop` turns true.
pub fn spawn(
    loader: Arc<Loader>,
    subscribers: Subscribers,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let dir = loader.dir().to_path_buf();
        let (tx, mut rx) = mpsc::channel(1);
        // Notifications first, so that nothing written while the directory is read is missed.
        let mut watcher = notifications(&dir, &tx);
        let directory = Arc::new(std::sync::Mutex::new(
            tokio::task::spawn_blocking(move || Directory::new(loader, subscribers))
                .await
                .ok(),
        ));
        let read = || {
            let directory = directory.clone();
            async move {
                let _ = tokio::task::spawn_blocking(move || {
                    if let Some(d) = directory
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .as_mut()
                    {
                        d.read();
                    }
                })
                .await;
            }
        };
        // What changed before notifications started.
        read().await;
        if watcher.is_none() {
            tracing::info!(dir = %dir.display(), "no file notifications for the plugin directory; reading it every {POLL:?}");
        }
        loop {
            let woken = async {
                if watcher.is_some() {
                    rx.recv().await;
                    // Debounce: wait for the directory to be quiet.
                    while let Ok(Some(())) = tokio::time::timeout(DEBOUNCE, rx.recv()).await {}
                } else {
                    tokio::time::sleep(POLL).await;
                }
            };
            tokio::select! {
                () = woken => {
                    if watcher.is_none() {
                        watcher = notifications(&dir, &tx);
                    }
                    read().await;
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
