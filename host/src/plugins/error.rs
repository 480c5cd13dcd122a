//! Why a plugin could not be loaded ([`PluginError`]) and why one of its calls did not return a
//! value ([`CallError`], [`Failure`]).

use std::sync::Arc;
use std::time::Duration;

use super::catalog::CatalogError;

/// Why a call into a plugin did not return a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// The call ran past its deadline and was interrupted.
    #[error("call exceeded its {0:?} deadline (plugins.call_timeout raises it)")]
    Deadline(Duration),
    /// The instance tried to grow its memory past the cap.
    #[error("memory limit of {0} bytes reached (plugins.memory_limit_bytes raises it)")]
    MemoryLimit(usize),
    /// The instance trapped (panic, unreachable, out-of-bounds access, …).
    #[error("trapped: {0}")]
    Trap(String),
}

impl Failure {
    /// The cause as self-telemetry names it.
    pub fn cause(&self) -> &'static str {
        match self {
            Failure::Deadline(_) => "deadline",
            Failure::MemoryLimit(_) => "memory_limit",
            Failure::Trap(_) => "trap",
        }
    }
}

/// Why a call did not happen or did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The instance failed during this call (or while being re-created for it).
    #[error("plugin `{0}` {1}")]
    Failed(Arc<str>, Failure),
    /// The plugin returned an error.
    #[error("plugin `{0}` returned an error: {1}")]
    Plugin(Arc<str>, String),
    /// The instance failed recently and waits before being re-created.
    #[error("plugin `{0}` is restarting after a failure")]
    BackingOff(Arc<str>),
    /// The plugin failed too often in a row and is no longer called.
    #[error("plugin `{0}` is marked failed: {1}")]
    CrashLoop(Arc<str>, String),
    /// The call's result was refused: it was larger than the plugin's budget allows.
    #[error("plugin `{0}` result refused: {1}")]
    OverBudget(Arc<str>, String),
    /// Another call held the instance for longer than a caller could wait.
    #[error("plugin `{0}` is busy")]
    Busy(Arc<str>),
    /// What it was to be given could not be read (a record damaged since intake checked it).
    #[error("plugin `{0}` was not called: a span could not be read ({1})")]
    Unreadable(Arc<str>, &'static str),
}

impl CallError {
    /// The call's outcome as self-telemetry names it.
    pub fn outcome(&self) -> &'static str {
        match self {
            CallError::Plugin(..) => "error",
            CallError::Failed(..) => "trap",
            CallError::BackingOff(_) => "backing_off",
            CallError::CrashLoop(..) => "failed",
            CallError::OverBudget(..) => "over_budget",
            CallError::Busy(_) => "busy",
            CallError::Unreadable(..) => "unreadable",
        }
    }
}

/// What wasmtime said, its causes joined on one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct WasmError(String);

impl WasmError {
    /// Wasmtime's error with its causes, whitespace collapsed.
    pub fn from_wasmtime(e: &wasmtime::Error) -> Self {
        Self(
            format!("{e:#}")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "),
        )
    }

    /// An error in the host's own words.
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }
}

/// A component that is not a plugin this host can run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    /// Built for a version of the contract this host cannot serve.
    #[error("built for wasmtel:plugin@{0}; {advice}", advice = contract_advice(.0))]
    Contract(String),
    /// It imports something the host does not grant.
    #[error("the component needs imports the host does not offer")]
    Imports(#[source] WasmError),
    /// It does not export the interface of the world it is loaded as.
    #[error("wrong world")]
    World(#[source] WasmError),
}

/// What to do about a component built for contract `version`: rebuild an older one, upgrade
/// the host for a newer one.
fn contract_advice(version: &str) -> &'static str {
    let newer = version
        .split('.')
        .map(|n| n.parse::<u32>().unwrap_or(0))
        .cmp([0, 2, 3])
        .is_gt();
    if newer {
        "this host serves up to 0.2.3: upgrade wasmtel"
    } else {
        "rebuild with wasmtel-guest 0.2"
    }
}

/// Why a plugin could not be loaded, each step with its cause.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The plugin runtime itself could not start.
    #[error("the plugin runtime cannot start")]
    Runtime(#[source] WasmError),
    /// Its component (or its settings file) could not be found or read.
    #[error(transparent)]
    Find(#[from] CatalogError),
    /// Its bytes are not a component this engine can compile, or the engine could not start.
    #[error("not a valid component")]
    Compile(#[source] WasmError),
    /// It compiled, but is not a plugin of the expected kind for this host.
    #[error(transparent)]
    Validate(#[from] Invalid),
    /// Its instance failed while starting (trap, deadline, memory cap).
    #[error(transparent)]
    Init(CallError),
    /// Its `init` refused the configuration.
    #[error("plugin `{plugin}` returned an error")]
    Refused {
        /// The plugin.
        plugin: Arc<str>,
        /// What it said.
        #[source]
        reason: Refusal,
    },
}

/// A configured plugin that could not be loaded where that stops the host (`[plugins] strict`).
#[derive(Debug, thiserror::Error)]
#[error("{kind} `{plugin}`: {}", .error.chain())]
pub struct Unloaded {
    /// `exporter`, `transform` or `view`.
    pub kind: &'static str,
    /// The plugin.
    pub plugin: String,
    /// Why it could not be loaded.
    pub error: PluginError,
}

/// What a plugin said when it refused its configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refusal(pub String);

impl From<CallError> for PluginError {
    /// A start that failed: a refusal by the plugin, or a failure of its instance.
    fn from(e: CallError) -> Self {
        match e {
            CallError::Plugin(plugin, reason) => PluginError::Refused {
                plugin,
                reason: Refusal(reason),
            },
            other => PluginError::Init(other),
        }
    }
}

impl PluginError {
    /// The error and its causes on one line (`wrong world: no exported instance named …`), as
    /// logs, the admin API and the command line show it.
    pub fn chain(&self) -> String {
        let mut text = self.to_string();
        let mut cause = std::error::Error::source(self);
        while let Some(e) = cause {
            text.push_str(": ");
            text.push_str(&e.to_string());
            cause = e.source();
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_step_names_itself_and_keeps_its_cause() {
        let compile = PluginError::Compile(WasmError::new("bad magic"));
        assert_eq!(compile.to_string(), "not a valid component");
        assert_eq!(compile.chain(), "not a valid component: bad magic");
        let world = PluginError::from(Invalid::World(WasmError::new("no encoder")));
        assert_eq!(world.chain(), "wrong world: no encoder");
        let refused = PluginError::from(CallError::Plugin(Arc::from("p"), "no `path`".into()));
        assert!(matches!(refused, PluginError::Refused { .. }));
        assert_eq!(refused.chain(), "plugin `p` returned an error: no `path`");
        let trapped =
            PluginError::from(CallError::Failed(Arc::from("p"), Failure::MemoryLimit(10)));
        assert_eq!(
            trapped.chain(),
            "plugin `p` memory limit of 10 bytes reached (plugins.memory_limit_bytes raises it)"
        );
        let old = PluginError::from(Invalid::Contract("0.1.0".into()));
        assert_eq!(
            old.chain(),
            "built for wasmtel:plugin@0.1.0; rebuild with wasmtel-guest 0.2"
        );
        let newer = PluginError::from(Invalid::Contract("0.2.7".into()));
        assert_eq!(
            newer.chain(),
            "built for wasmtel:plugin@0.2.7; this host serves up to 0.2.3: upgrade wasmtel"
        );
    }
}
