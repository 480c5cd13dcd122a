//! WebAssembly plugins: the contract's bindings, the sandbox, supervision, and plugin kinds.

pub mod batch;
pub mod bindings;
pub mod budget;
pub mod cache;
pub mod catalog;
pub mod convert;
pub mod embedded;
pub mod exporter;
mod host;
pub mod inspect;
pub mod loader;
pub mod reload;
pub mod runtime;
pub mod stats;
pub mod supervisor;
pub mod transform;
pub mod view;

pub use exporter::ExporterPlugin;
pub use loader::Loader;
pub use runtime::{Failure, Limits, Runtime};
pub use supervisor::{CallError, Health, LoadError};
pub use transform::{TransformPlugin, Transforms};
pub use view::PluginView;
