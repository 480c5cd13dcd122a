//! An exporter plugin as an integration runs it: the version serving now (hot-reloaded), the
//! temporality it asked for, and the calls that turn host data into its requests.

use std::sync::{Arc, Mutex, PoisonError};

use super::transport::Request;
use crate::metrics::{DeltaTrackers, Registries};
use crate::model::Signal;
use crate::model::log::Record;
use crate::plugins::batch::{keep_points, point_count};
use crate::plugins::bindings::encoder::{Outcome, Response, Signals};
use crate::plugins::bindings::types::{MetricBatch, Temporality};
use crate::plugins::convert::{self, Collected, metric_batch};
use crate::plugins::reload::{Reloadable, Source, Versioned, next_version};
use crate::plugins::{ExporterPlugin, Health, Loader, Transforms};

/// The exporter plugin of one integration.
pub struct PluginSlot {
    plugin: String,
    integration: String,
    overrides: toml::Table,
    current: Versioned<ExporterPlugin>,
    delta: Mutex<Option<DeltaTrackers>>,
}

impl PluginSlot {
    /// Integration `integration` running `plugin` (whose component has SHA-256 `digest`),
    /// loaded with the integration's settings `overrides`.
    pub fn new(
        integration: &str,
        plugin: ExporterPlugin,
        digest: String,
        overrides: toml::Table,
    ) -> Self {
        let delta = delta_for(&plugin);
        Self {
            plugin: plugin.name().to_owned(),
            integration: integration.to_owned(),
            overrides,
            current: Versioned::new(plugin, digest),
            delta: Mutex::new(delta),
        }
    }

    /// Integration `integration`, whose plugin `plugin` could not be loaded for `reason`: it
    /// sends nothing and shows the reason until a version of the plugin's file loads.
    pub fn failed(integration: &str, plugin: &str, overrides: toml::Table, reason: String) -> Self {
        Self {
            plugin: plugin.to_owned(),
            integration: integration.to_owned(),
            overrides,
            current: Versioned::failed(reason),
            delta: Mutex::new(None),
        }
    }

    /// Why the plugin could not be loaded, while no version serves.
    pub fn failure(&self) -> Option<String> {
        self.current.failure()
    }

    /// The integration's name.
    pub fn integration(&self) -> &str {
        &self.integration
    }

    /// The plugin version serving now; `None` once unloaded.
    pub fn current(&self) -> Option<Arc<ExporterPlugin>> {
        self.current.get()
    }

    /// Whether the plugin serving now exports `signal`.
    pub fn exports(&self, signal: Signal) -> bool {
        let flag = match signal {
            Signal::Metrics => Signals::METRICS,
            Signal::Logs => Signals::LOGS,
        };
        self.current
            .peek(|p| p.is_some_and(|p| p.info().signals.contains(flag)))
    }

    /// The plugin's health, or `Failed` when it could not be loaded.
    pub fn health(&self) -> Option<Health> {
        self.current.health(ExporterPlugin::health)
    }

    /// Collects every producer into metric batches in the plugin's temporality, after the
    /// transforms; `None` when the plugin exports no metrics or nothing is left.
    pub fn collect(
        &self,
        registries: &Registries,
        transforms: &Transforms,
    ) -> Option<Vec<Collected>> {
        if !self.exports(Signal::Metrics) {
            return None;
        }
        let mut delta = self.delta.lock().unwrap_or_else(PoisonError::into_inner);
        collect_transformed(registries, transforms, delta.as_mut())
    }

    /// Encodes metric batches into the plugin's requests.
    pub fn encode_metrics(&self, collections: &[Collected]) -> Result<Vec<Request>, String> {
        let plugin = self.current().ok_or("the plugin was unloaded")?;
        let mut out = Vec::new();
        for c in collections {
            let encoded = plugin.encode_metrics(&c.batch).map_err(|e| e.to_string())?;
            out.extend(encoded.into_iter().map(Request::from));
        }
        Ok(out)
    }

    /// Encodes log records, after the transforms, into the plugin's requests.
    pub fn encode_logs(
        &self,
        records: &[Record],
        transforms: &Transforms,
    ) -> Result<Vec<Request>, String> {
        let plugin = self.current().ok_or("the plugin was unloaded")?;
        let mut out = Vec::new();
        for (origin, records) in crate::model::log::runs(records) {
            let batch = convert::otlp::log_batch(&records, &origin);
            if let Some(batch) = transforms.logs(batch) {
                let encoded = plugin.encode_logs(&batch).map_err(|e| e.to_string())?;
                out.extend(encoded.into_iter().map(Request::from));
            }
        }
        Ok(out)
    }

    /// Asks the plugin how to treat a response; without a plugin, the status code decides.
    pub fn classify(&self, response: &Response) -> Outcome {
        match self.current() {
            Some(plugin) => plugin.classify(response),
            None => Outcome::Reject(format!(
                "HTTP {} (the plugin was unloaded)",
                response.status
            )),
        }
    }

    /// Swaps in a new version, resetting the delta state if it asks for another temporality;
    /// calls in flight finish on the old one.
    fn install(&self, plugin: Option<(ExporterPlugin, String)>) {
        let mut delta = self.delta.lock().unwrap_or_else(PoisonError::into_inner);
        self.current.replace(plugin, |before, next| {
            if let Some(next) = next
                && before.map(|b| b.info().temporality) != Some(next.info().temporality)
            {
                *delta = delta_for(next);
            }
        });
    }
}

/// Delta trackers for exporters that asked for delta temporality.
fn delta_for(plugin: &ExporterPlugin) -> Option<DeltaTrackers> {
    (plugin.info().temporality == Temporality::Delta)
        .then(|| DeltaTrackers::new(crate::config::TemporalityPreference::Delta))
}

impl Reloadable for PluginSlot {
    fn plugin(&self) -> &str {
        &self.plugin
    }

    fn serving(&self) -> Option<String> {
        self.current.digest()
    }

    fn reload(&self, loader: &Loader, source: Source<'_>) -> Result<(), String> {
        let next = next_version(loader, &self.plugin, source, |component| {
            loader.exporter(&self.plugin, component, &self.overrides)
        })?;
        self.install(next);
        Ok(())
    }
}

/// Every producer's metrics through the transforms, in the temporality `delta` tracks (else
/// cumulative), one collection each; a received resource without points is left out, and
/// `None` is returned when nothing is left.
pub fn collect_transformed(
    registries: &Registries,
    transforms: &Transforms,
    mut delta: Option<&mut DeltaTrackers>,
) -> Option<Vec<Collected>> {
    let mut out = Vec::new();
    for (i, producer) in registries.all().iter().enumerate() {
        let (res, registry) = producer.pair();
        let collected = metric_batch(registry, res, delta.as_deref_mut().map(|d| d.get(i)));
        if i > 0 && collected.batch.metrics.is_empty() {
            continue;
        }
        out.extend(collected.transformed(|b| transforms.metrics(b)));
    }
    (!out.is_empty()).then_some(out)
}

/// Splits metric collections in two: the list halved, or the one batch's points halved (its
/// scopes, and so their schema URLs, in both halves).
pub fn split_batches(batches: &[Collected]) -> Option<(Vec<Collected>, Vec<Collected>)> {
    match batches {
        [] => None,
        [one] => split_batch(&one.batch).map(|(a, b)| {
            let half = |batch| Collected {
                batch,
                schema_urls: one.schema_urls.clone(),
            };
            (vec![half(a)], vec![half(b)])
        }),
        many => {
            let (a, b) = many.split_at(many.len() / 2);
            Some((a.to_vec(), b.to_vec()))
        }
    }
}

/// One batch as two, each with about half of its points; `None` for a single point.
fn split_batch(batch: &MetricBatch) -> Option<(MetricBatch, MetricBatch)> {
    let total: usize = batch.metrics.iter().map(|m| point_count(&m.points)).sum();
    if total < 2 {
        return None;
    }
    let (mut first, mut second) = (batch.clone(), batch.clone());
    first.metrics.clear();
    second.metrics.clear();
    let mut taken = 0;
    for metric in &batch.metrics {
        let n = point_count(&metric.points);
        let room = (total / 2).saturating_sub(taken);
        taken += n;
        if room >= n {
            first.metrics.push(metric.clone());
        } else if room == 0 {
            second.metrics.push(metric.clone());
        } else {
            let head: Vec<bool> = (0..n).map(|i| i < room).collect();
            let tail: Vec<bool> = head.iter().map(|k| !k).collect();
            let (mut a, mut b) = (metric.clone(), metric.clone());
            keep_points(&mut a, &head);
            keep_points(&mut b, &tail);
            first.metrics.push(a);
            second.metrics.push(b);
        }
    }
    Some((first, second))
}
