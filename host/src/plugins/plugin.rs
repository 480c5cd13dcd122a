//! A loaded plugin of any kind: one version of a component, validated as its kind's world,
//! started with its configuration, and running supervised.

use std::sync::Arc;

use wasmtime::component::Component;

use super::error::PluginError;
use super::instance::{Health, Shared, Supervised};
use super::kind::PluginKind;
use super::limits::Limits;
use super::runtime::Runtime;
use super::stats::Stats;

/// One loaded version of a plugin of kind `K`.
#[derive(Debug)]
pub struct Plugin<K: PluginKind> {
    name: Arc<str>,
    info: K::Info,
    instance: Shared<K>,
}

impl<K: PluginKind> Plugin<K> {
    /// Validates `component` as a plugin of kind `K` (right contract, imports the host grants,
    /// `K`'s world) and starts it: its `init` must accept `config`. Its calls are bounded by
    /// `limits` and counted in `stats`.
    pub fn load(
        runtime: &Arc<Runtime>,
        name: &str,
        component: &Component,
        config: Vec<(String, String)>,
        limits: Limits,
        stats: &Stats,
    ) -> Result<Self, PluginError> {
        let name: Arc<str> = Arc::from(name);
        let pre = runtime.prepare(component)?;
        let (supervised, info) = Supervised::<K>::start(
            name.clone(),
            runtime.clone(),
            pre,
            config,
            limits,
            stats.clone(),
        )?;
        Ok(Self {
            name,
            info,
            instance: supervised.into(),
        })
    }

    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The plugin's name, shared.
    pub(super) fn shared_name(&self) -> &Arc<str> {
        &self.name
    }

    /// What its `init` reported.
    pub fn info(&self) -> &K::Info {
        &self.info
    }

    /// The plugin's health.
    pub fn health(&self) -> Health {
        self.instance.health()
    }

    /// Its deadline per call.
    pub fn call_timeout(&self) -> std::time::Duration {
        self.instance.call_timeout()
    }

    /// The bytes its instance held after its last call, and its memory cap.
    pub fn memory(&self) -> (usize, usize) {
        self.instance.memory()
    }

    /// Its supervised instance, for the kind's calls.
    pub(super) fn instance(&self) -> &Shared<K> {
        &self.instance
    }
}
