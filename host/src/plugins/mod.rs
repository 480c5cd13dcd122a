//! WebAssembly plugins: the contract's bindings, the sandbox, supervision, the three plugin kinds
//! behind one [`PluginKind`] trait, and the per-host [`PluginSet`] that loads, reloads and counts
//! them.
//!
//! Inside, lowest first: `error`, `limits`, `stats` → `runtime` (engine, store, host
//! interface) → `budget`, `cache`, `kind` → `instance` (supervision) → `plugin` (one loaded
//! version) → `lean` (a batch lowered with only what a transform reads) → the kinds `exporter`, `transform`, `view` → `loader` → `slot` (hot-reloadable
//! holder) → `watch` (the directory watcher) → `set`; `inspect` checks a file without a host.

pub mod batch;
pub mod bindings;
pub mod budget;
pub mod cache;
pub mod catalog;
pub mod convert;
pub mod embedded;
pub mod error;
pub mod exporter;
mod host;
pub mod inspect;
pub mod instance;
pub mod kind;
pub(crate) mod lean;
pub mod limits;
pub mod loader;
pub mod plugin;
pub mod runtime;
pub mod set;
pub mod slot;
pub mod stats;
pub mod transform;
pub mod view;
pub mod watch;

pub use error::{CallError, Failure, PluginError};
pub use exporter::{Encoder, ExporterPlugin};
pub use instance::Health;
pub use kind::{PluginKind, World};
pub use limits::Limits;
pub use loader::Loader;
pub use plugin::Plugin;
pub use runtime::Runtime;
pub use set::{PluginSet, UploadError};
pub use slot::{Reloadable, Slot};
pub use stats::Stats;
pub use transform::{Link, TransformPlugin, Transformer, Transforms};
pub use view::{PluginView, ViewPlugin, Viewer};
