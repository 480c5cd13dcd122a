//! Transform plugins and the chain that applies them to batches, failing open by default; each link reloads on its own.

use std::sync::Arc;

use wasmtime::component::Component;

use super::batch;
use super::bindings::transformer;
use super::bindings::types::{LogBatch, MetricBatch};
use super::budget;
use super::loader::Loader;
use super::reload::{Reloadable, Source, Versioned, next_version};
use super::runtime::{Limits, Runtime};
use super::stats;
use super::supervisor::{CallError, Health, LoadError, Shared, Supervised};
use crate::config::OnFailure;

/// A loaded transform plugin.
pub struct TransformPlugin {
    name: Arc<str>,
    on_failure: OnFailure,
    instance: Shared<transformer::Guest>,
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
            instance: instance.into(),
        })
    }

    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The plugin's health.
    pub fn health(&self) -> Health {
        self.instance.health()
    }

    /// The error of edits that name something the batch does not hold.
    fn invalid(&self, problem: String) -> CallError {
        CallError::Plugin(self.name.clone(), format!("invalid edits: {problem}"))
    }

    /// Rewrites a metric batch (`None`: the plugin changed nothing); a result past the plugin's
    /// budgets is refused.
    pub fn metrics(&self, batch: &MetricBatch) -> Result<Option<MetricBatch>, CallError> {
        let edits = self.instance.call("transform-metrics", |g, store| {
            g.call_transform_metrics(store, batch)
        })?;
        let b = self.instance.budgets();
        let before = budget::metric_size(batch);
        budget::edits(&self.name, edits.len(), before.0, &b)?;
        let out = batch::apply_metric_edits(batch, &edits).map_err(|e| self.invalid(e))?;
        let after = out.as_ref().map_or(before, budget::metric_size);
        stats::items(self.instance.scope(), &self.name, "in", before.0);
        stats::items(self.instance.scope(), &self.name, "out", after.0);
        budget::growth(&self.name, before, after, &b)?;
        Ok(out)
    }

    /// Rewrites a log batch (`None`: the plugin changed nothing); a result past the plugin's
    /// budgets is refused.
    pub fn logs(&self, batch: &LogBatch) -> Result<Option<LogBatch>, CallError> {
        let edits = self.instance.call("transform-logs", |g, store| {
            g.call_transform_logs(store, batch)
        })?;
        let b = self.instance.budgets();
        let before = budget::log_size(batch);
        budget::edits(&self.name, edits.len(), before.0, &b)?;
        let out = batch::apply_log_edits(batch, &edits).map_err(|e| self.invalid(e))?;
        let after = out.as_ref().map_or(before, budget::log_size);
        stats::items(self.instance.scope(), &self.name, "in", before.0);
        stats::items(self.instance.scope(), &self.name, "out", after.0);
        budget::growth(&self.name, before, after, &b)?;
        Ok(out)
    }
}

/// One configured transform: the version serving now, swapped atomically on reload.
pub struct ChainLink {
    name: String,
    overrides: toml::Table,
    on_failure: OnFailure,
    current: Versioned<TransformPlugin>,
}

impl ChainLink {
    /// A link serving `plugin`, whose component has SHA-256 `digest`.
    pub fn new(plugin: TransformPlugin, digest: String, overrides: toml::Table) -> Self {
        Self {
            name: plugin.name().to_owned(),
            on_failure: plugin.on_failure,
            overrides,
            current: Versioned::new(plugin, digest),
        }
    }

    /// A link whose plugin could not be loaded for `reason`: every batch meets it as a failure
    /// (passed through or dropped, as `on_failure` says) until a version of its file loads.
    pub fn failed(
        name: &str,
        overrides: toml::Table,
        on_failure: OnFailure,
        reason: String,
    ) -> Self {
        Self {
            name: name.to_owned(),
            on_failure,
            overrides,
            current: Versioned::failed(reason),
        }
    }

    /// Applies the serving version with `f`; a link that failed to load fails the call.
    fn apply<B>(
        &self,
        batch: B,
        f: impl FnOnce(&TransformPlugin, &B) -> Result<Option<B>, CallError>,
    ) -> Option<B> {
        let result = match (self.current.get(), self.current.failure()) {
            (Some(t), _) => f(&t, &batch),
            (None, Some(reason)) => {
                Err(CallError::CrashLoop(Arc::from(self.name.as_str()), reason))
            }
            (None, None) => Ok(None), // unloaded: its file was removed
        };
        match result {
            Ok(out) => Some(out.unwrap_or(batch)),
            Err(e) => match self.on_failure {
                OnFailure::Open => {
                    tracing::warn!(plugin = %self.name, "{e}; the batch passes through unchanged");
                    Some(batch)
                }
                OnFailure::Closed => {
                    tracing::warn!(plugin = %self.name, "{e}; the batch is dropped");
                    None
                }
            },
        }
    }
}

impl Reloadable for ChainLink {
    fn plugin(&self) -> &str {
        &self.name
    }

    fn serving(&self) -> Option<String> {
        self.current.digest()
    }

    fn reload(&self, loader: &Loader, source: Source<'_>) -> Result<(), String> {
        let next = next_version(loader, &self.name, source, |component| {
            loader.transform(&self.name, component, &self.overrides, self.on_failure)
        })?;
        self.current.set(next);
        Ok(())
    }
}

/// The transforms of the pipeline, applied in configuration order.
#[derive(Clone, Default)]
pub struct Transforms(Arc<Vec<Arc<ChainLink>>>);

impl Transforms {
    /// A chain of transforms.
    pub fn new(links: Vec<Arc<ChainLink>>) -> Self {
        Self(Arc::new(links))
    }

    /// Whether there is nothing to apply.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The links, for the reload watcher.
    pub fn links(&self) -> impl Iterator<Item = &Arc<ChainLink>> {
        self.0.iter()
    }

    /// Each transform's name and health (a failed load included), in chain order.
    pub fn health(&self) -> Vec<(String, Health)> {
        self.0
            .iter()
            .filter_map(|l| Some((l.name.clone(), l.current.health(TransformPlugin::health)?)))
            .collect()
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
