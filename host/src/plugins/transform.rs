//! Transform plugins and the chain that applies them to batches, failing open by default.

use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};
use wasmtime::component::Component;

use super::bindings::transformer;
use super::bindings::types::{LogBatch, MetricBatch};
use super::runtime::{Limits, Runtime};
use super::supervisor::{CallError, Health, LoadError, Supervised};

/// What happens to a batch when a transform fails.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// The batch passes through unchanged (the default).
    #[default]
    Open,
    /// The batch is dropped.
    Closed,
}

/// A loaded transform plugin.
pub struct TransformPlugin {
    name: Arc<str>,
    on_failure: OnFailure,
    instance: Mutex<Supervised<transformer::Guest>>,
}

impl TransformPlugin {
    /// Validates `component` as a transform (right world, `init` accepts `config`) and starts it.
    pub fn load(
        runtime: &Arc<Runtime>,
        name: &str,
        component: &Component,
        config: Vec<(String, String)>,
        limits: Limits,
        on_failure: OnFailure,
    ) -> Result<Self, LoadError> {
        let name: Arc<str> = Arc::from(name);
        let instance = Supervised::load(
            runtime,
            &name,
            component,
            limits,
            transformer::GuestIndices::new,
            move |indices, store, instance| {
                let guest = indices.load(&mut *store, instance)?;
                Ok(guest.call_init(&mut *store, &config)?.map(|()| guest))
            },
        )?;
        Ok(Self {
            name,
            on_failure,
            instance: Mutex::new(instance),
        })
    }

    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The plugin's health.
    pub fn health(&self) -> Health {
        self.lock().health()
    }

    /// Rewrites a metric batch.
    pub fn metrics(&self, batch: &MetricBatch) -> Result<MetricBatch, CallError> {
        self.lock()
            .call(|g, store| g.call_transform_metrics(store, batch))
    }

    /// Rewrites a log batch.
    pub fn logs(&self, batch: &LogBatch) -> Result<LogBatch, CallError> {
        self.lock()
            .call(|g, store| g.call_transform_logs(store, batch))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Supervised<transformer::Guest>> {
        self.instance.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The transforms of the pipeline, applied in configuration order.
#[derive(Clone, Default)]
pub struct Transforms(Arc<Vec<TransformPlugin>>);

impl Transforms {
    /// A chain of transforms.
    pub fn new(plugins: Vec<TransformPlugin>) -> Self {
        Self(Arc::new(plugins))
    }

    /// Whether there is nothing to apply.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Each transform's name and health, in chain order.
    pub fn health(&self) -> Vec<(String, Health)> {
        self.0
            .iter()
            .map(|t| (t.name().to_owned(), t.health()))
            .collect()
    }

    /// Applies every transform to a metric batch; `None` when a fail-closed transform failed.
    pub fn metrics(&self, batch: MetricBatch) -> Option<MetricBatch> {
        self.0
            .iter()
            .try_fold(batch, |batch, t| apply(t, batch, TransformPlugin::metrics))
    }

    /// Applies every transform to a log batch; `None` when a fail-closed transform failed.
    pub fn logs(&self, batch: LogBatch) -> Option<LogBatch> {
        self.0
            .iter()
            .try_fold(batch, |batch, t| apply(t, batch, TransformPlugin::logs))
    }
}

fn apply<B>(
    t: &TransformPlugin,
    batch: B,
    f: impl FnOnce(&TransformPlugin, &B) -> Result<B, CallError>,
) -> Option<B> {
    match f(t, &batch) {
        Ok(out) => Some(out),
        Err(e) => match t.on_failure {
            OnFailure::Open => {
                tracing::warn!(plugin = t.name(), "{e}; the batch passes through unchanged");
                Some(batch)
            }
            OnFailure::Closed => {
                tracing::warn!(plugin = t.name(), "{e}; the batch is dropped");
                None
            }
        },
    }
}
