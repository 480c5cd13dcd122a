//! An exporter plugin as an integration runs it: the version serving now (hot-reloaded), the
//! temporality it asked for, and the calls that turn host data into its requests.

use std::sync::{Arc, Mutex, PoisonError};

use super::delivery::EncodeError;
use super::transport::Request;
use crate::metrics::{DeltaTrackers, Producer};
use crate::model::Signal;
use crate::model::log::Record;
use crate::model::metric::TemporalityPreference;
use crate::plugins::batch::{keep_points, point_count};
use crate::plugins::bindings::encoder::{Outcome, Response, Signals};
use crate::plugins::bindings::types::{MetricBatch, Temporality};
use crate::plugins::convert::{self, Collected, metric_batch_where};
use crate::plugins::{Encoder, ExporterPlugin, Health, PluginSet, Reloadable, Slot, Transforms};

/// The exporter plugin of one integration.
#[derive(Debug)]
pub struct PluginSlot {
    slot: Arc<Slot<Encoder>>,
    set: Arc<PluginSet>,
    /// Delta state, while the plugin serving asks for deltas.
    delta: Mutex<Option<DeltaTrackers>>,
}

impl PluginSlot {
    /// An integration running the plugin in `slot` (loaded, or failed with its reason), a
    /// member of `set` until [`PluginSlot::leave`].
    pub fn new(slot: Arc<Slot<Encoder>>, set: Arc<PluginSet>) -> Self {
        Self {
            slot,
            set,
            delta: Mutex::new(None),
        }
    }

    /// The plugin's name.
    pub fn plugin(&self) -> &str {
        self.slot.name()
    }

    /// Takes the plugin out of its set: the integration stopped.
    pub fn leave(&self) {
        let member: Arc<dyn Reloadable> = self.slot.clone();
        self.set.leave(&member);
    }

    /// Why the plugin could not be loaded, while no version serves.
    pub fn failure(&self) -> Option<String> {
        self.slot.failure()
    }

    /// The plugin version serving now; `None` once unloaded.
    pub fn current(&self) -> Option<Arc<ExporterPlugin>> {
        self.slot.get()
    }

    /// Whether the plugin serving now exports `signal`.
    pub fn exports(&self, signal: Signal) -> bool {
        let flag = match signal {
            Signal::Metrics => Signals::METRICS,
            Signal::Logs => Signals::LOGS,
        };
        self.slot
            .peek(|p| p.is_some_and(|p| p.info().signals.contains(flag)))
    }

    /// The plugin's health, or `Failed` when it could not be loaded.
    pub fn health(&self) -> Option<Health> {
        self.slot.health()
    }

    /// Collects every producer into metric batches in the plugin's temporality, after the
    /// transforms; `None` when the plugin exports no metrics or nothing is left. The delta state
    /// starts over when a new version asks for another temporality.
    pub fn collect(
        &self,
        producers: &[Producer],
        transforms: &Transforms,
        keep: &dyn Fn(&str) -> bool,
    ) -> Option<Vec<Collected>> {
        if !self.exports(Signal::Metrics) {
            return None;
        }
        let mut delta = self.delta.lock().unwrap_or_else(PoisonError::into_inner);
        let wants_delta = self
            .slot
            .peek(|p| p.is_some_and(|p| p.info().temporality == Temporality::Delta));
        if wants_delta != delta.is_some() {
            *delta = wants_delta.then(|| DeltaTrackers::new(TemporalityPreference::Delta));
        }
        if let Some(delta) = delta.as_mut() {
            let ids: Vec<u64> = producers.iter().map(|p| p.id).collect();
            delta.keep_only(&ids);
        }
        collect_transformed(producers, transforms, delta.as_mut(), keep)
    }

    /// Encodes metric batches into the plugin's requests.
    pub fn encode_metrics(&self, collections: &[Collected]) -> Result<Vec<Request>, EncodeError> {
        let plugin = self.current().ok_or(EncodeError::Unloaded)?;
        let mut out = Vec::new();
        for c in collections {
            let encoded = plugin.encode_metrics(&c.batch)?;
            out.extend(encoded.into_iter().map(Request::from));
        }
        Ok(out)
    }

    /// Encodes log records, after the transforms, into the plugin's requests.
    pub fn encode_logs(
        &self,
        records: &[Record],
        transforms: &Transforms,
    ) -> Result<Vec<Request>, EncodeError> {
        let plugin = self.current().ok_or(EncodeError::Unloaded)?;
        let mut out = Vec::new();
        for (origin, records) in crate::model::log::runs(records) {
            let batch = convert::otlp::log_batch(&records, &origin);
            if let Some(batch) = transforms.logs(batch) {
                let encoded = plugin.encode_logs(&batch)?;
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
}

/// The metrics of `producers` (the host's own has id 0),
/// of the instruments whose name `keep` takes, through the transforms, in the temporality
/// `delta` tracks (else cumulative), one collection each; a received resource without points
/// is left out, and `None` is returned when nothing is left.
pub fn collect_transformed(
    producers: &[Producer],
    transforms: &Transforms,
    mut delta: Option<&mut DeltaTrackers>,
    keep: &dyn Fn(&str) -> bool,
) -> Option<Vec<Collected>> {
    let mut out = Vec::new();
    for producer in producers {
        let (res, registry) = producer.pair();
        let tracker = delta.as_deref_mut().map(|d| d.get(producer.id));
        let collected = metric_batch_where(registry, res, tracker, keep);
        if producer.id > 0 && collected.batch.metrics.is_empty() {
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
