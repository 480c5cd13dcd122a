//! Transform plugins and the chain that applies them to batches, failing open by default; each
//! link reloads on its own.

use std::sync::Arc;

use super::batch;
use super::bindings::transformer;
use super::bindings::types::{LogBatch, MetricBatch};
use super::budget;
use super::error::CallError;
use super::kind::{World, plain_kind};
use super::plugin::Plugin;
use super::slot::Slot;
use crate::config::OnFailure;

/// The transform kind.
#[derive(Debug, Clone, Copy)]
pub struct Transformer;

plain_kind!(Transformer, transformer, "transform", World::Transform);

/// A loaded transform plugin.
pub type TransformPlugin = Plugin<Transformer>;

impl Plugin<Transformer> {
    /// The error of edits that name something the batch does not hold.
    fn invalid(&self, problem: &str) -> CallError {
        CallError::Plugin(
            self.shared_name().clone(),
            format!("invalid edits: {problem}"),
        )
    }

    /// Checks a transform's edits against the budgets, applies them and counts the items.
    fn edited<B>(
        &self,
        batch: &B,
        edits: usize,
        size: fn(&B) -> (usize, usize),
        apply: impl FnOnce() -> Result<Option<B>, batch::EditError>,
    ) -> Result<Option<B>, CallError> {
        let instance = self.instance();
        let (stats, b, name) = (instance.stats(), instance.budgets(), self.shared_name());
        let before = size(batch);
        budget::edits(stats, name, edits, before.0, &b)?;
        let out = apply().map_err(|e| self.invalid(&e.to_string()))?;
        let after = out.as_ref().map_or(before, size);
        stats.items(name, "in", before.0);
        stats.items(name, "out", after.0);
        budget::growth(stats, name, before, after, &b)?;
        Ok(out)
    }

    /// Rewrites a metric batch (`None`: the plugin changed nothing); a result past the plugin's
    /// budgets is refused.
    pub fn metrics(&self, batch: &MetricBatch) -> Result<Option<MetricBatch>, CallError> {
        let edits = self.instance().call("transform-metrics", |g, store| {
            g.call_transform_metrics(store, batch)
        })?;
        self.edited(batch, edits.len(), budget::metric_size, || {
            batch::apply_metric_edits(batch, &edits)
        })
    }

    /// Rewrites a log batch (`None`: the plugin changed nothing); a result past the plugin's
    /// budgets is refused.
    pub fn logs(&self, batch: &LogBatch) -> Result<Option<LogBatch>, CallError> {
        let edits = self.instance().call("transform-logs", |g, store| {
            g.call_transform_logs(store, batch)
        })?;
        self.edited(batch, edits.len(), budget::log_size, || {
            batch::apply_log_edits(batch, &edits)
        })
    }
}

/// One configured transform: its plugin (reloaded on its own) and what a failure does.
#[derive(Debug, Clone)]
pub struct Link {
    slot: Arc<Slot<Transformer>>,
    on_failure: OnFailure,
}

impl Link {
    /// A link of the chain running `slot`.
    pub fn new(slot: Arc<Slot<Transformer>>, on_failure: OnFailure) -> Self {
        Self { slot, on_failure }
    }

    /// Applies the serving version with `f`; a link whose plugin failed to load fails the call.
    fn apply<B>(
        &self,
        batch: B,
        f: impl FnOnce(&TransformPlugin, &B) -> Result<Option<B>, CallError>,
    ) -> Option<B> {
        let name = self.slot.name();
        let result = match (self.slot.get(), self.slot.failure()) {
            (Some(t), _) => f(&t, &batch),
            (None, Some(reason)) => Err(CallError::CrashLoop(Arc::from(name), reason)),
            (None, None) => Ok(None), // unloaded: its file was removed
        };
        match result {
            Ok(out) => Some(out.unwrap_or(batch)),
            Err(e) => match self.on_failure {
                OnFailure::Open => {
                    tracing::warn!(plugin = %name, "{e}; the batch passes through unchanged");
                    Some(batch)
                }
                OnFailure::Closed => {
                    tracing::warn!(plugin = %name, "{e}; the batch is dropped");
                    None
                }
            },
        }
    }
}

/// The transforms of the pipeline, applied in configuration order.
#[derive(Debug, Clone, Default)]
pub struct Transforms(Arc<Vec<Link>>);

impl Transforms {
    /// A chain of transforms.
    pub fn new(links: Vec<Link>) -> Self {
        Self(Arc::new(links))
    }

    /// This chain followed by `links`.
    pub fn then(&self, links: impl IntoIterator<Item = Link>) -> Self {
        Self::new(self.0.iter().cloned().chain(links).collect())
    }

    /// Whether there is nothing to apply.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The first fail-closed transform of the chain, by name: the plugin contract carries no
    /// spans yet, so no transform can read them, and spans it guards are withheld.
    pub fn closed(&self) -> Option<String> {
        self.0
            .iter()
            .find(|l| l.on_failure == OnFailure::Closed)
            .map(|l| l.slot.name().to_owned())
    }

    /// Applies every transform to a metric batch; `None` when a fail-closed transform failed.
    pub fn metrics(&self, batch: MetricBatch) -> Option<MetricBatch> {
        self.0
            .iter()
            .try_fold(batch, |batch, l| l.apply(batch, TransformPlugin::metrics))
    }

    /// Applies every transform to a log batch; `None` when a fail-closed transform failed.
    pub fn logs(&self, batch: LogBatch) -> Option<LogBatch> {
        self.0
            .iter()
            .try_fold(batch, |batch, l| l.apply(batch, TransformPlugin::logs))
    }
}
