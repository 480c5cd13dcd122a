//! An exporter plugin as an integration runs it: the version serving now (hot-reloaded), the
//! temporality it asked for, and the calls that turn host data into its requests.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::delivery::EncodeError;
use super::transport::Request;
use crate::metrics::{DeltaTrackers, Producer};
use crate::model::Signal;
use crate::model::metric::TemporalityPreference;
use crate::model::record::{Record, runs_of};
use crate::plugins::batch::{Interner, compact, keep_points, point_count};
use crate::plugins::bindings::encoder::{Outbound, Outcome, Response};
use crate::plugins::bindings::types::{MetricBatch, Temporality};
use crate::plugins::convert::{self, Collected, metric_batch_where};
use crate::plugins::instance::FIRST_BACKOFF;
use crate::plugins::{
    CallError, Encoder, ExporterPlugin, Health, PluginSet, Reloadable, Slot, Transforms,
};

/// Points in one metric call at first: what Python and JavaScript runtimes encode well within
/// the default deadline (100 ms) and memory cap (64 MiB); each call's cost then tunes it.
pub const FIRST_CALL_POINTS: usize = 2_000;
/// Log records or spans in one call at first: a JavaScript exporter reading every attribute of
/// a span takes some 90 µs a span, so 200 fit a quarter of the default deadline.
pub const FIRST_CALL_RECORDS: usize = 200;
/// The most items one call is given.
const MOST_ITEMS: usize = 1 << 20;

/// The exporter plugin of one integration.
#[derive(Debug)]
pub struct PluginSlot {
    slot: Arc<Slot<Encoder>>,
    set: Arc<PluginSet>,
    /// Delta state, while the plugin serving asks for deltas.
    delta: Mutex<Option<DeltaTrackers>>,
    /// Items per call of each signal, learned from the plugin's calls.
    pace: [Pace; 3],
}

impl PluginSlot {
    /// An integration running the plugin in `slot` (loaded, or failed with its reason), a
    /// member of `set` until [`PluginSlot::leave`].
    pub fn new(slot: Arc<Slot<Encoder>>, set: Arc<PluginSet>) -> Self {
        Self {
            slot,
            set,
            delta: Mutex::new(None),
            pace: Signal::ALL.map(Pace::of),
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
        self.slot
            .peek(|p| p.is_some_and(|p| p.info().signal(signal)))
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
            .peek(|p| p.is_some_and(|p| p.info().info.temporality == Temporality::Delta));
        if wants_delta != delta.is_some() {
            *delta = wants_delta.then(|| DeltaTrackers::new(TemporalityPreference::Delta));
        }
        if let Some(delta) = delta.as_mut() {
            let ids: Vec<u64> = producers.iter().map(|p| p.id).collect();
            delta.keep_only(&ids);
        }
        collect_transformed(producers, transforms, delta.as_mut(), keep)
    }

    /// Encodes metric batches into the plugin's requests, each in calls of as many points as
    /// fit a quarter of the plugin's deadline and its memory cap, as its earlier calls measured.
    pub fn encode_metrics(&self, collections: &[Collected]) -> Result<Vec<Request>, EncodeError> {
        let plugin = self.current().ok_or(EncodeError::Unloaded)?;
        let mut out = Vec::new();
        for c in collections {
            out.extend(self.pace(Signal::Metrics).metrics(&plugin, &c.batch)?);
        }
        Ok(out.into_iter().map(Request::from).collect())
    }

    /// Encodes log records or spans (`signal`), after the transforms, into the plugin's
    /// requests: each run of one origin in parts of as many records as the plugin's calls
    /// showed fit, each part through the transforms and then one call.
    pub fn encode_records(
        &self,
        signal: Signal,
        records: &[Record],
        transforms: &Transforms,
    ) -> Result<Vec<Request>, EncodeError> {
        let plugin = self.current().ok_or(EncodeError::Unloaded)?;
        let mut out = Vec::new();
        for run in runs_of(records) {
            let origin = &run[0].origin;
            let encode = |part: &[Record]| -> Result<Vec<Outbound>, EncodeError> {
                match signal {
                    Signal::Traces => {
                        let spans: std::borrow::Cow<'_, [Record]> =
                            match transforms.rewrite(Signal::Traces) {
                                true => transforms.records(Signal::Traces, part).into(),
                                false => part.into(),
                            };
                        if spans.is_empty() {
                            return Ok(Vec::new());
                        }
                        let batch = convert::otlp::span_batch(&spans, origin, None)?;
                        Ok(plugin.encode_spans(&batch)?)
                    }
                    Signal::Logs | Signal::Metrics => {
                        let logs: Vec<_> = part.iter().map(Record::decode).collect();
                        let batch = transforms
                            .logs(convert::otlp::log_batch(&logs, origin), &mut Vec::new());
                        Ok(batch
                            .map(|b| plugin.encode_logs(&b))
                            .transpose()?
                            .unwrap_or_default())
                    }
                }
            };
            out.extend(self.pace(signal).records(&plugin, run, &encode)?);
        }
        Ok(out.into_iter().map(Request::from).collect())
    }

    /// The pace of `signal`'s calls.
    fn pace(&self, signal: Signal) -> &Pace {
        &self.pace[Signal::ALL.iter().position(|s| *s == signal).unwrap_or(0)]
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

/// How many items (metric points, log records or spans) one call of an exporter plugin is
/// given: at first a number its language's runtime handles well, then as many as its calls
/// show fit a quarter of its deadline, never growing while its instance holds over half its
/// memory cap, halved past three quarters and quartered after a failed call.
#[derive(Debug)]
pub struct Pace {
    items: AtomicUsize,
    fewest: usize,
}

impl Pace {
    /// The pace of a plugin's calls of `signal`, before any call.
    pub fn of(signal: Signal) -> Self {
        let (first, fewest) = match signal {
            Signal::Metrics => (FIRST_CALL_POINTS, 100),
            Signal::Logs | Signal::Traces => (FIRST_CALL_RECORDS, 1),
        };
        Self {
            items: AtomicUsize::new(first),
            fewest,
        }
    }

    /// Items per call now.
    pub fn items(&self) -> usize {
        self.items.load(Ordering::Relaxed)
    }

    /// Encodes a metric batch in parts of at most [`Pace::items`] points each.
    pub fn metrics(
        &self,
        plugin: &ExporterPlugin,
        batch: &MetricBatch,
    ) -> Result<Vec<Outbound>, EncodeError> {
        let encode = |b: &MetricBatch| Ok(plugin.encode_metrics(b)?);
        let mut out = Vec::new();
        let parts = chunks(batch, self.items());
        for part in parts.as_deref().unwrap_or(std::slice::from_ref(batch)) {
            out.extend(self.part(plugin, part, true, &encode)?);
        }
        Ok(out)
    }

    /// Encodes a run of records with `encode`, in order, in parts of [`Pace::items`] records
    /// as it stands when each part is taken.
    pub fn records<'a>(
        &self,
        plugin: &ExporterPlugin,
        run: &'a [Record],
        encode: &dyn Fn(&'a [Record]) -> Result<Vec<Outbound>, EncodeError>,
    ) -> Result<Vec<Outbound>, EncodeError> {
        let (mut out, mut rest) = (Vec::new(), run);
        while !rest.is_empty() {
            let (part, after) = rest.split_at(self.items().min(rest.len()));
            out.extend(self.part(plugin, &part, true, &|p: &&'a [Record]| encode(p))?);
            rest = after;
        }
        Ok(out)
    }

    /// Encodes one part; if the call fails (a deadline or the memory cap: a slow moment of a
    /// guest's collector, say) and `again`, it waits out the plugin's first backoff and sends
    /// the part once more, in two halves, so that a passing failure loses nothing.
    fn part<P: Part>(
        &self,
        plugin: &ExporterPlugin,
        part: &P,
        again: bool,
        encode: &dyn Fn(&P) -> Result<Vec<Outbound>, EncodeError>,
    ) -> Result<Vec<Outbound>, EncodeError> {
        let started = Instant::now();
        let encoded = encode(part);
        let failed = matches!(encoded, Err(EncodeError::Plugin(CallError::Failed(..))));
        self.learn(plugin, part.items(), started.elapsed(), failed);
        match encoded {
            Err(e) if failed && again => {
                let Some((first, second)) = part.halves() else {
                    return Err(e);
                };
                tracing::info!(plugin = %plugin.name(), "{e}; sending that part again in two halves");
                std::thread::sleep(FIRST_BACKOFF + Duration::from_millis(10));
                let mut out = self.part(plugin, &first, false, encode)?;
                out.extend(self.part(plugin, &second, false, encode)?);
                Ok(out)
            }
            encoded => encoded,
        }
    }

    /// Tunes the items per call from one call of `items` that took `took`.
    fn learn(&self, plugin: &ExporterPlugin, items: usize, took: Duration, failed: bool) {
        let now = self.items();
        let (used, cap) = plugin.memory();
        let next = if failed {
            now / 4
        } else if used > cap / 4 * 3 {
            now / 2
        } else if items < now / 2 {
            // A small part says little about the cost of a full call.
            now
        } else {
            let per_item = took.as_secs_f64() / items.max(1) as f64;
            let fits = (plugin.call_timeout().as_secs_f64() / 4.0 / per_item.max(1e-9)) as usize;
            let fits = if used > cap / 2 { fits.min(now) } else { fits };
            now / 2 + fits / 2
        };
        let next = next.clamp(self.fewest, MOST_ITEMS);
        if next != now {
            tracing::debug!(plugin = %plugin.name(), "calls now take up to {next} items");
            self.items.store(next, Ordering::Relaxed);
        }
    }
}

/// What one plugin call is given: so many items, and two halves of them when a call fails.
trait Part: Sized {
    /// The items it holds.
    fn items(&self) -> usize;
    /// It in two, each with about half of its items; `None` for a single item.
    fn halves(&self) -> Option<(Self, Self)>;
}

impl Part for MetricBatch {
    fn items(&self) -> usize {
        points(self)
    }

    fn halves(&self) -> Option<(Self, Self)> {
        split_batch(self)
    }
}

impl Part for &[Record] {
    fn items(&self) -> usize {
        self.len()
    }

    fn halves(&self) -> Option<(Self, Self)> {
        (self.len() > 1).then(|| self.split_at(self.len() / 2))
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

/// A batch in parts of at most `size` points each, in order, each part's table holding only
/// what it refers to; a batch within `size` stays whole (and is not copied: `None`).
fn chunks(batch: &MetricBatch, size: usize) -> Option<Vec<MetricBatch>> {
    if points(batch) <= size {
        return None;
    }
    let size = size.max(1);
    let empty = || MetricBatch {
        table: Interner::new().finish(),
        resource: batch.resource,
        scopes: batch.scopes.clone(),
        metrics: Vec::new(),
    };
    let (mut parts, mut part, mut room) = (Vec::new(), empty(), size);
    for metric in &batch.metrics {
        let n = point_count(&metric.points);
        if n <= room {
            part.metrics.push(metric.clone());
            room -= n;
        } else {
            let mut from = 0;
            while from < n {
                let take = (n - from).min(room);
                let keep: Vec<bool> = (0..n).map(|i| (from..from + take).contains(&i)).collect();
                let mut piece = metric.clone();
                keep_points(&mut piece, &keep);
                part.metrics.push(piece);
                from += take;
                room -= take;
                if room == 0 && from < n {
                    parts.push(std::mem::replace(&mut part, empty()));
                    room = size;
                }
            }
        }
        if room == 0 {
            parts.push(std::mem::replace(&mut part, empty()));
            room = size;
        }
    }
    if !part.metrics.is_empty() {
        parts.push(part);
    }
    for part in &mut parts {
        compact(part, &batch.table);
    }
    Some(parts)
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
    split_batch_at(batch, points(batch) / 2)
}

/// The points of a batch.
fn points(batch: &MetricBatch) -> usize {
    batch.metrics.iter().map(|m| point_count(&m.points)).sum()
}

/// One batch as two: its first `at` points and the rest; `None` unless both hold some.
fn split_batch_at(batch: &MetricBatch, at: usize) -> Option<(MetricBatch, MetricBatch)> {
    if at == 0 || points(batch) <= at {
        return None;
    }
    let (mut first, mut second) = (batch.clone(), batch.clone());
    first.metrics.clear();
    second.metrics.clear();
    let mut taken = 0;
    for metric in &batch.metrics {
        let n = point_count(&metric.points);
        let room = at.saturating_sub(taken);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{Descriptor, Registry};
    use crate::model::attributes::ValueRef;
    use crate::model::metric::InstrumentKind;
    use crate::plugins::bindings::types::{Points, Value};

    /// One point as read through its batch's table: metric name, attributes, value.
    type Read = (String, Vec<(String, String)>, f64);

    /// Every point of a batch, read through its table.
    fn read(batch: &MetricBatch) -> Vec<Read> {
        let t = &batch.table;
        let mut out = Vec::new();
        for m in &batch.metrics {
            if let Points::Sum(points) = &m.points {
                for p in points {
                    let attrs = t
                        .set(p.attributes)
                        .map(|(k, v)| match v {
                            Value::String(s) => (k.to_owned(), s.clone()),
                            other => (k.to_owned(), format!("{other:?}")),
                        })
                        .collect();
                    out.push((t.string(m.name).to_owned(), attrs, p.value));
                }
            }
        }
        out
    }

    #[test]
    fn a_batch_is_cut_into_parts_of_so_many_points_each_with_only_its_own_table() {
        let registry = Registry::new(100);
        for (name, n) in [("a", 3), ("b", 4)] {
            let d = Descriptor {
                name: name.into(),
                unit: String::new(),
                description: String::new(),
                kind: InstrumentKind::Counter,
                scope: "test".into(),
            };
            let counter = registry.instrument(d, &[]).expect("counter");
            for i in 0..n {
                let user = format!("{name}-user-{i}");
                counter.record(&[("user", ValueRef::Str(&user))], f64::from(i + 1));
            }
        }
        let resource = crate::sources::resource::detect(&Default::default());
        let batch = crate::plugins::convert::metric_batch(&registry, &resource, None).batch;
        assert!(
            chunks(&batch, 7).is_none(),
            "a batch within the size stays whole"
        );
        let parts = chunks(&batch, 3).expect("cut");
        let sizes: Vec<usize> = parts.iter().map(points).collect();
        assert_eq!(sizes, vec![3, 3, 1]);
        let mut whole = read(&batch);
        let mut joined: Vec<_> = parts.iter().flat_map(read).collect();
        whole.sort_by(|x, y| x.partial_cmp(y).expect("ordered"));
        joined.sort_by(|x, y| x.partial_cmp(y).expect("ordered"));
        assert_eq!(
            joined, whole,
            "every point once, with its name and attributes"
        );
        // The last part's table holds its one user, not the other six.
        let users = |b: &MetricBatch| {
            b.table
                .strings
                .iter()
                .filter(|s| s.contains("-user-"))
                .count()
        };
        assert_eq!(users(&batch), 0, "users are values, not strings");
        let values = |b: &MetricBatch| {
            b.table
                .values
                .iter()
                .filter(|v| matches!(v, Value::String(s) if s.contains("-user-")))
                .count()
        };
        assert_eq!(values(&batch), 7);
        assert_eq!(values(&parts[2]), 1);
        let resource_attrs = |b: &MetricBatch| b.table.set(b.resource.attributes).count();
        assert_eq!(resource_attrs(&parts[2]), resource_attrs(&batch));
    }
}
