//! What differs between exporter, transform and view plugins: the interface their world
//! exports, how a fresh instance starts, what its `init` reports, and what the kind is called.

use wasmtime::Store;
use wasmtime::component::{Instance, InstancePre};

use super::runtime::PluginState;

/// What a call into a guest returns: a trap (the outer error), or the plugin's own result, its
/// error in its own words.
pub type GuestCall<R> = wasmtime::Result<Result<R, String>>;

/// A plugin's settings as its `init` takes them: dotted keys and their values, as text.
pub type Settings = Vec<(String, String)>;

/// One kind of plugin; [`super::plugin::Plugin`] runs any of them.
pub trait PluginKind: Send + Sync + 'static {
    /// The kind's name: `exporter`, `transform` or `view`.
    const NAME: &'static str;
    /// The exported interface's bindings, as `bindgen!` generates them.
    type Guest: Send + Sync + 'static;
    /// Where that interface is in a linked component.
    type Indices: Send + Sync + 'static;
    /// What `init` says about the plugin: an exporter's signals and temporality, nothing else
    /// for the other kinds.
    type Info: Clone + Send + Sync + 'static;

    /// Finds the interface in a linked component; an error means the component is of another world.
    fn indices(pre: &InstancePre<PluginState>) -> wasmtime::Result<Self::Indices>;

    /// Loads the interface from a fresh instance and calls its `init` with `config`; the inner
    /// `Err` is the plugin's refusal, in its words.
    fn start(
        indices: &Self::Indices,
        store: &mut Store<PluginState>,
        instance: &Instance,
        config: &Settings,
    ) -> GuestCall<(Self::Guest, Self::Info)>;

    /// The world a plugin of this kind implements, as `plugins check` reports it.
    fn world(info: &Self::Info) -> World;
}

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
    /// A transform, with the signals it edits and what it reads of each.
    Transform {
        /// `metrics, logs`, with `traces` when it edits spans: the kinds of batch it is given.
        signals: String,
        /// The parts it reads of each (`metrics attributes, logs attributes+entries+payload`).
        reads: String,
    },
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
            World::Transform { signals, reads } => {
                write!(f, "transform (signals: {signals}; reads: {reads})")
            }
            World::View => f.write_str("view"),
        }
    }
}

/// A plugin's 0.2.0 interface, and its 0.2.1 span interface when its world has one (an
/// exporter's `span-encoder`, a transform's `span-transformer`).
pub struct WithSpans<G, S> {
    /// The 0.2.0 interface.
    pub(super) guest: G,
    /// The span interface, if the component exports it.
    pub(super) spans: Option<S>,
}

impl<G, S> std::fmt::Debug for WithSpans<G, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WithSpans")
            .field("spans", &self.spans.is_some())
            .finish_non_exhaustive()
    }
}
