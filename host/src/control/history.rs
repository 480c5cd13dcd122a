//! A short in-memory history of what the status page charts: every interval, per model and per
//! GPU, one point computed from the host's own instruments — the aggregates `/metrics` exposes —
//! kept in a ring of fixed length.
//!
//! Rates are counter increases over the interval. Quantiles are read from what the latency
//! histograms recorded over the interval at an exponential resolution ([`DETAILED`]: buckets
//! 9 % wide over five decades), whatever buckets they export; only where a model's series hold
//! nothing finer (received ones) from the increase of each bucket, interpolated inside it as
//! Prometheus' `histogram_quantile` does. GPU values are the latest gauge readings. Memory is
//! bounded: at most [`MAX_ROWS`] models and [`MAX_ROWS`] GPUs, each one `f64` per field per
//! point.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::{Value, json};

use crate::clock::unix_nanos;
use crate::metrics::aggregation::{
    ExponentialHistogram, ExponentialPoint, HistogramPoint, MAX_SIZE,
};
use crate::metrics::reader::{PointValue, Reader};
use crate::metrics::{Instrument, Registries, Registry};
use crate::model::attributes::AttributeSet;
use crate::tenancy::{Principal, Tenancy};

/// The most models and the most GPUs the history keeps rows for; more are counted, not kept.
pub const MAX_ROWS: usize = 32;

/// What each model's row holds per point.
const MODEL_FIELDS: [&str; 7] = [
    "requests_per_second",
    "error_ratio",
    "ttft_p50_seconds",
    "ttft_p95_seconds",
    "tpot_p50_seconds",
    "tpot_p95_seconds",
    "output_tokens_per_second",
];

/// Each GPU field and the gauge it is read from.
pub(super) const GPU_FIELDS: [(&str, &str); 10] = [
    ("utilization", "hw.gpu.utilization"),
    ("memory_used_bytes", "hw.gpu.memory.usage"),
    ("memory_limit_bytes", "hw.gpu.memory.limit"),
    ("power_watts", "hw.power"),
    ("power_limit_watts", "hw.gpu.power.limit"),
    ("temperature_celsius", "hw.temperature"),
    ("throttle_power", "gpu.throttle.power_active"),
    ("throttle_thermal", "gpu.throttle.thermal_active"),
    ("throttle_sw", "gpu.throttle.sw_active"),
    ("throttle_hw", "gpu.throttle.hw_active"),
];

const MODEL: &str = "gen_ai.request.model";

/// The latency histograms whose quantiles the history charts: the host records them also at an
/// exponential resolution ([`crate::metrics::Registry::with_detail`]).
pub const DETAILED: [&str; 2] = [
    "gen_ai.server.time_to_first_token",
    "gen_ai.server.time_per_output_token",
];

/// What names a row: a model's name, or a GPU's UUID, index and name.
type Label = serde_json::Map<String, Value>;

/// One sample's point per row key, with the row's label.
type Points<const N: usize> = BTreeMap<String, (Label, [f64; N])>;

/// Adds one histogram series (its attributes, buckets and bounds) to a model's totals.
type AddHistogram<'a> = dyn FnMut(&mut Totals, &AttributeSet, &HistogramPoint, &[f64]) + 'a;

/// Cumulative bucket counts of one histogram, summed over a model's series.
#[derive(Debug, Clone, Default, PartialEq)]
struct Buckets {
    bounds: Vec<f64>,
    counts: Vec<u64>,
}

impl Buckets {
    fn add(&mut self, bounds: &[f64], counts: &[u64]) {
        if self.counts.len() != counts.len() {
            self.bounds = bounds.to_vec();
            self.counts = vec![0; counts.len()];
        }
        for (total, n) in self.counts.iter_mut().zip(counts) {
            *total += n;
        }
    }

    /// The counts added since `before` (all of them after a reset).
    fn since(&self, before: Option<&Buckets>) -> Vec<u64> {
        match before {
            Some(b) if b.counts.len() == self.counts.len() => {
                let reset = self
                    .counts
                    .iter()
                    .zip(&b.counts)
                    .any(|(now, was)| now < was);
                self.counts
                    .iter()
                    .zip(&b.counts)
                    .map(|(now, was)| if reset { *now } else { now - was })
                    .collect()
            }
            _ => self.counts.clone(),
        }
    }
}

/// One latency's cumulative record for a model: the buckets of all its series and, where
/// they were kept, the same measurements at an exponential resolution.
#[derive(Debug, Clone, Default)]
struct Latency {
    buckets: Buckets,
    detail: Option<ExponentialPoint>,
}

impl Latency {
    /// Adds one series' detail.
    fn add_detail(&mut self, point: &ExponentialPoint) {
        let merged = ExponentialHistogram::new(MAX_SIZE);
        if let Some(total) = &self.detail {
            merged.merge(total);
        }
        merged.merge(point);
        self.detail = Some(merged.snapshot());
    }

    /// The p50 and p95 of what was recorded since `before`: from the detail when it covers
    /// every measurement, else interpolated inside the buckets.
    fn quantiles(&self, before: Option<&Latency>) -> [f64; 2] {
        let counted: u64 = self.buckets.counts.iter().sum();
        if let Some(detail) = self
            .detail
            .as_ref()
            .filter(|d| self.buckets.counts.is_empty() || d.count == counted)
        {
            let was = before.and_then(|b| b.detail.as_ref());
            let recent = was.and_then(|w| detail.since(w));
            let recent = recent.as_ref().unwrap_or(detail);
            return [recent.quantile(0.5), recent.quantile(0.95)];
        }
        let counts = self.buckets.since(before.map(|b| &b.buckets));
        let bounds = &self.buckets.bounds;
        [
            quantile(0.5, bounds, &counts),
            quantile(0.95, bounds, &counts),
        ]
    }
}

/// The `q` quantile of a histogram's bucket counts, interpolated linearly inside its bucket
/// (the first bucket starts at 0, the overflow bucket answers the highest bound); `NaN` when
/// the counts are all zero.
fn quantile(q: f64, bounds: &[f64], counts: &[u64]) -> f64 {
    let total: u64 = counts.iter().sum();
    if total == 0 || bounds.is_empty() {
        return f64::NAN;
    }
    let rank = q * total as f64;
    let mut below = 0.0;
    for (i, n) in counts.iter().enumerate() {
        let n = *n as f64;
        if n > 0.0 && below + n >= rank {
            let Some(upper) = bounds.get(i) else {
                return bounds[bounds.len() - 1];
            };
            let lower = if i == 0 { 0.0 } else { bounds[i - 1] };
            return lower + (upper - lower) * ((rank - below) / n);
        }
        below += n;
    }
    bounds[bounds.len() - 1]
}

/// One model's cumulative totals at one sample.
#[derive(Debug, Clone, Default)]
struct Totals {
    /// Requests, or `None` when the model reports no request durations.
    requests: Option<f64>,
    errors: f64,
    /// Output tokens, or `None` when the model reports no token usage.
    output_tokens: Option<f64>,
    ttft: Latency,
    tpot: Latency,
}

/// The cumulative state read at one sample.
#[derive(Debug, Default)]
struct Sample {
    at: u64,
    models: BTreeMap<String, Totals>,
}

/// A row of the chart data: a label and one point per kept time.
#[derive(Debug)]
struct Row<const N: usize> {
    label: Label,
    points: VecDeque<[f64; N]>,
}

/// Rows by key, every one as long as the time ring.
#[derive(Debug)]
struct Rows<const N: usize>(BTreeMap<String, Row<N>>);

impl<const N: usize> Rows<N> {
    /// Appends this sample's point to every row (`NaN` where a row has none), starting rows
    /// for new keys padded to `len`, at most [`MAX_ROWS`]; returns how many keys were left out.
    fn push(&mut self, len: usize, mut now: Points<N>) -> usize {
        let mut left_out = 0;
        for (key, row) in &mut self.0 {
            let point = now.remove(key).map_or([f64::NAN; N], |(_, p)| p);
            row.points.push_back(point);
        }
        for (key, (label, point)) in now {
            if self.0.len() >= MAX_ROWS {
                left_out += 1;
                continue;
            }
            let mut points: VecDeque<[f64; N]> = std::iter::repeat_n([f64::NAN; N], len).collect();
            points.push_back(point);
            self.0.insert(key, Row { label, points });
        }
        left_out
    }

    /// Drops the oldest point of every row, then rows left with no value at all.
    fn pop_front(&mut self) {
        for row in self.0.values_mut() {
            row.points.pop_front();
        }
        self.0
            .retain(|_, r| r.points.iter().flatten().any(|v| !v.is_nan()));
    }

    fn json(&self, names: &[&str], from: usize) -> Vec<Value> {
        self.0
            .values()
            .map(|row| {
                let mut out = row.label.clone();
                for (f, name) in names.iter().enumerate() {
                    let values: Vec<Value> =
                        row.points.iter().skip(from).map(|p| json!(p[f])).collect();
                    out.insert((*name).into(), Value::Array(values));
                }
                Value::Object(out)
            })
            .collect()
    }
}

struct Ring {
    times: VecDeque<u64>,
    models: Rows<7>,
    gpus: Rows<10>,
    previous: Option<Sample>,
    left_out: usize,
}

/// The history: a ring of points, one per [`History::sample`], shared with the admin API.
pub struct History {
    interval: Duration,
    capacity: usize,
    ring: Mutex<Ring>,
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("History")
            .field("interval", &self.interval)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl History {
    /// A history keeping `window` worth of points taken every `interval` (at least one point).
    pub fn new(interval: Duration, window: Duration) -> Self {
        let capacity = (window.as_nanos() / interval.as_nanos().max(1)).max(1) as usize;
        Self {
            interval,
            capacity,
            ring: Mutex::new(Ring {
                times: VecDeque::with_capacity(capacity),
                models: Rows(BTreeMap::new()),
                gpus: Rows(BTreeMap::new()),
                previous: None,
                left_out: 0,
            }),
        }
    }

    /// Reads `registries` (the host's and every received producer's) now and appends one
    /// point to every row.
    pub fn sample(&self, registries: &[&Registry]) {
        self.sample_at(registries, unix_nanos());
    }

    /// Reads `registries` as of `at` (Unix nanoseconds) and appends one point to every row.
    fn sample_at(&self, registries: &[&Registry], at: u64) {
        let instruments: Vec<Arc<Instrument>> =
            registries.iter().flat_map(|r| r.instruments()).collect();
        let sample = read_models(&instruments, at);
        let gpus = read_gpus(&instruments);
        let mut ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        let models = model_points(&sample, ring.previous.as_ref());
        if ring.times.len() == self.capacity {
            ring.times.pop_front();
            ring.models.pop_front();
            ring.gpus.pop_front();
        }
        let len = ring.times.len();
        let left_out = ring.models.push(len, models) + ring.gpus.push(len, gpus);
        ring.left_out = left_out;
        ring.times.push_back(sample.at);
        ring.previous = Some(sample);
    }

    /// The last `points` points (all kept ones when `None`) as JSON.
    pub fn json(&self, points: Option<usize>) -> Value {
        let ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        let from = ring
            .times
            .len()
            .saturating_sub(points.unwrap_or(usize::MAX));
        let times: Vec<u64> = ring
            .times
            .iter()
            .skip(from)
            .map(|t| t / 1_000_000)
            .collect();
        let gpu_fields: Vec<&str> = GPU_FIELDS.iter().map(|(f, _)| *f).collect();
        json!({
            "interval_seconds": self.interval.as_secs_f64(),
            "capacity": self.capacity,
            "times_unix_ms": times,
            "models": ring.models.json(&MODEL_FIELDS, from),
            "gpus": ring.gpus.json(&gpu_fields, from),
            "rows_left_out": ring.left_out,
        })
    }
}

/// Every series of a sum or gauge instrument with its value (its total, for a sum).
pub(super) fn series(instrument: &Instrument) -> Vec<(AttributeSet, f64)> {
    let mut out = Vec::new();
    Reader::new(None).read(instrument, |p| {
        if let PointValue::Number(v) = p.value {
            out.push((p.attributes.clone(), v));
        }
    });
    out
}

/// The instruments of `instruments` named `name` (one per scope that has it).
pub(super) fn named<'a>(
    instruments: &'a [Arc<Instrument>],
    name: &'a str,
) -> impl Iterator<Item = &'a Arc<Instrument>> + 'a {
    instruments
        .iter()
        .filter(move |i| i.descriptor().name == name)
}

/// Every model's cumulative totals now.
fn read_models(instruments: &[Arc<Instrument>], at: u64) -> Sample {
    let mut sample = Sample {
        at,
        models: BTreeMap::new(),
    };
    let model = |a: &AttributeSet| a.get(MODEL).map(|v| v.to_string());
    let mut histograms = |name: &str, add: &mut AddHistogram| {
        for instrument in named(instruments, name) {
            Reader::new(None).read(instrument, |p| {
                if let (PointValue::Histogram(h, bounds), Some(m)) = (&p.value, model(p.attributes))
                {
                    add(sample.models.entry(m).or_default(), p.attributes, h, bounds);
                }
            });
        }
    };
    // Requests as the semantic conventions count them: one duration per request, failed ones
    // with `error.type` — whether wasmtel derived them or a server sent them over OTLP.
    histograms("gen_ai.server.request.duration", &mut |t, a, h, _| {
        *t.requests.get_or_insert(0.0) += h.count as f64;
        if a.get("error.type").is_some() {
            t.errors += h.count as f64;
        }
    });
    histograms(DETAILED[0], &mut |t, _, h, b| {
        t.ttft.buckets.add(b, &h.bucket_counts);
    });
    histograms(DETAILED[1], &mut |t, _, h, b| {
        t.tpot.buckets.add(b, &h.bucket_counts);
    });
    histograms("gen_ai.client.token.usage", &mut |t, a, h, _| {
        if a.get("gen_ai.token.type")
            .is_some_and(|v| v.to_string() == "output")
        {
            *t.output_tokens.get_or_insert(0.0) += h.sum;
        }
    });
    for (ttft, name) in [(true, DETAILED[0]), (false, DETAILED[1])] {
        for instrument in named(instruments, name) {
            instrument.details(|attributes, point| {
                if let Some(m) = model(attributes) {
                    let totals = sample.models.entry(m).or_default();
                    let latency = if ttft {
                        &mut totals.ttft
                    } else {
                        &mut totals.tpot
                    };
                    latency.add_detail(&point);
                }
            });
        }
    }
    sample
}

/// Each model's point: rates and quantiles over the time since `previous`.
fn model_points(now: &Sample, previous: Option<&Sample>) -> Points<7> {
    let seconds = previous.map_or(0.0, |p| now.at.saturating_sub(p.at) as f64 / 1e9);
    now.models
        .iter()
        .map(|(model, t)| {
            let was = previous.and_then(|p| p.models.get(model));
            let increase = |now: f64, was: Option<f64>| match was {
                Some(w) if now >= w => now - w,
                _ => now,
            };
            // A rate over the interval; `NaN` for the first sample or a total never reported.
            let rate = |now: Option<f64>, was: Option<f64>| match now {
                Some(now) if previous.is_some() && seconds > 0.0 => increase(now, was) / seconds,
                _ => f64::NAN,
            };
            let requests = increase(t.requests.unwrap_or(0.0), was.and_then(|w| w.requests));
            let errors = increase(t.errors, was.map(|w| w.errors));
            let [ttft_p50, ttft_p95] = t.ttft.quantiles(was.map(|w| &w.ttft));
            let [tpot_p50, tpot_p95] = t.tpot.quantiles(was.map(|w| &w.tpot));
            let over_interval = |v: f64| if previous.is_some() { v } else { f64::NAN };
            let point = [
                rate(t.requests, was.and_then(|w| w.requests)),
                over_interval(if requests > 0.0 {
                    errors / requests
                } else {
                    f64::NAN
                }),
                over_interval(ttft_p50),
                over_interval(ttft_p95),
                over_interval(tpot_p50),
                over_interval(tpot_p95),
                rate(t.output_tokens, was.and_then(|w| w.output_tokens)),
            ];
            let mut label = Label::new();
            label.insert("model".into(), json!(model));
            (model.clone(), (label, point))
        })
        .collect()
}

/// Every GPU's latest readings (`NaN` where it has none), one per UUID in order of index, each
/// labelled with its UUID, index and name; the fields are [`GPU_FIELDS`]'.
pub(super) fn read_gpus(instruments: &[Arc<Instrument>]) -> Points<10> {
    let mut gpus: Points<10> = BTreeMap::new();
    for (f, (_, metric)) in GPU_FIELDS.iter().enumerate() {
        for (attrs, value) in named(instruments, metric).flat_map(|i| series(i)) {
            let Some(uuid) = attrs.get("gpu.uuid").map(|v| v.to_string()) else {
                continue;
            };
            let index = attrs
                .get("gpu.index")
                .and_then(|v| v.to_string().parse::<u64>().ok());
            // Keyed so that GPUs list by index.
            let key = format!(
                "{:>10}/{uuid}",
                index.map_or(String::new(), |i| i.to_string())
            );
            let (_, point) = gpus.entry(key).or_insert_with(|| {
                let mut label = Label::new();
                label.insert("uuid".into(), json!(uuid));
                if let Some(i) = index {
                    label.insert("index".into(), json!(i));
                }
                if let Some(name) = attrs.get("gpu.name") {
                    label.insert("name".into(), json!(name.to_string()));
                }
                (label, [f64::NAN; 10])
            });
            // A GPU's utilization has one series per task kind: the general one is the GPU's.
            if f == 0
                && attrs
                    .get("hw.gpu.task")
                    .is_some_and(|t| t.to_string() != "general")
            {
                continue;
            }
            point[f] = value;
        }
    }
    gpus
}

/// The operator's history, of every producer, and each tenant's, of the producers whose
/// resource names it.
#[derive(Debug)]
pub struct Histories {
    interval: Duration,
    window: Duration,
    operator: Arc<History>,
    tenants: Mutex<BTreeMap<String, Arc<History>>>,
    tenancy: Arc<Tenancy>,
}

impl Histories {
    /// Histories keeping `window` worth of points taken every `interval`, told apart by `tenancy`.
    pub fn new(interval: Duration, window: Duration, tenancy: Arc<Tenancy>) -> Self {
        Self {
            interval,
            window,
            operator: Arc::new(History::new(interval, window)),
            tenants: Mutex::default(),
            tenancy,
        }
    }

    /// The history `who` sees: the operator's, or the tenant's own (empty until its data
    /// arrives).
    pub fn of(&self, who: &Principal) -> Arc<History> {
        match who.tenant() {
            None => self.operator.clone(),
            Some(tenant) => self.tenant(tenant),
        }
    }

    fn tenant(&self, tenant: &str) -> Arc<History> {
        let mut tenants = self.tenants.lock().unwrap_or_else(PoisonError::into_inner);
        tenants
            .entry(tenant.to_owned())
            .or_insert_with(|| Arc::new(History::new(self.interval, self.window)))
            .clone()
    }

    /// Forgets the history of `tenant` (it was deleted).
    pub fn forget(&self, tenant: &str) {
        self.tenants
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(tenant);
    }

    /// Takes a point of every producer of `registries` now and each interval until `stopped`:
    /// all of them for the operator, each tenant's for the tenant.
    pub fn sample_every(
        self: Arc<Self>,
        registries: Arc<Registries>,
        stopped: tokio::sync::watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        crate::ticker::every(self.interval, stopped, move || {
            let producers = registries.all();
            let all: Vec<&Registry> = producers.iter().map(|p| &*p.registry).collect();
            self.operator.sample(&all);
            if self.tenancy.is_on() {
                let mut by_tenant: BTreeMap<String, Vec<&Registry>> = BTreeMap::new();
                for p in &producers {
                    if let Some(tenant) = self.tenancy.owner(p.resource.attributes()) {
                        by_tenant.entry(tenant).or_default().push(&p.registry);
                    }
                }
                for (tenant, registries) in by_tenant {
                    self.tenant(&tenant).sample(&registries);
                }
            }
            std::future::ready(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Descriptor;
    use crate::model::attributes::ValueRef;
    use crate::model::metric::InstrumentKind;

    const S: u64 = 1_000_000_000;

    /// The exact `q` quantile (nearest rank) of sorted `values`.
    fn exact(values: &[f64], q: f64) -> f64 {
        values[((q * values.len() as f64).ceil() as usize).clamp(1, values.len()) - 1]
    }

    #[test]
    fn the_demo_charts_its_own_distributions_within_ten_percent() {
        let registry = Arc::new(Registry::new(2000).with_detail(&DETAILED));
        let deriver =
            crate::derive::Deriver::new(&crate::config::DeriveConfig::default(), &registry)
                .expect("rules");
        let history = History::new(Duration::from_secs(10), Duration::from_secs(60));
        history.sample_at(&[&registry], 10 * S);
        // What the demo sends: each model's TTFT and TPOT as generated.
        let mut rng = fastrand::Rng::with_seed(7);
        let mut truth: BTreeMap<String, (Vec<f64>, Vec<f64>)> = BTreeMap::new();
        let mut lines = Vec::new();
        for seq in 0..4000 {
            let (events, _) = crate::demo::request_events(&mut rng, seq, "gpu-0");
            for e in events {
                let m = &e["metrics"];
                if let (Some(ttft), Some(tpot)) =
                    (m["ttfc_ms"].as_f64(), m["chunk_latency_avg_ms"].as_f64())
                {
                    let t = truth.entry(e["model"].as_str().expect("model").into());
                    let (ttfts, tpots) = t.or_default();
                    ttfts.push(ttft / 1000.0);
                    tpots.push(tpot / 1000.0);
                }
                lines.push(e.to_string());
            }
        }
        let body = lines.join("\n");
        let events = crate::intake::events::parse(body.as_bytes()).expect("events");
        deriver.apply(&events);
        history.sample_at(&[&registry], 20 * S);

        let h = history.json(None);
        let rows = h["models"].as_array().expect("models");
        assert_eq!(rows.len(), truth.len(), "{h}");
        for (model, (ttfts, tpots)) in &mut truth {
            ttfts.sort_by(f64::total_cmp);
            tpots.sort_by(f64::total_cmp);
            let row = rows.iter().find(|r| r["model"] == *model).expect("row");
            for (field, values, q) in [
                ("ttft_p50_seconds", &*ttfts, 0.5),
                ("ttft_p95_seconds", &*ttfts, 0.95),
                ("tpot_p50_seconds", &*tpots, 0.5),
                ("tpot_p95_seconds", &*tpots, 0.95),
            ] {
                let want = exact(values, q);
                let got = row[field][1].as_f64().expect("a value");
                assert!(
                    (got - want).abs() / want < 0.1,
                    "{model} {field}: charted {got}, the demo sent {want}"
                );
            }
        }
        // The buckets alone put every model's TPOT p50 inside (10 ms, 25 ms]: 17.5 ms or so.
        let exported = registry
            .instruments()
            .into_iter()
            .find(|i| i.descriptor().name == DETAILED[1])
            .expect("tpot");
        let mut bucketed = Vec::new();
        Reader::new(None).read(&exported, |p| {
            if let PointValue::Histogram(h, bounds) = &p.value {
                bucketed.push(quantile(0.5, bounds, &h.bucket_counts));
            }
        });
        assert!(bucketed.iter().all(|q| *q > 0.0125), "{bucketed:?}");
    }

    #[test]
    fn quantiles_interpolate_inside_their_bucket() {
        let bounds = [0.1, 0.2, 0.4];
        // 10 in (0, 0.1], 10 in (0.1, 0.2], none above.
        assert_eq!(quantile(0.5, &bounds, &[10, 10, 0, 0]), 0.1);
        assert!((quantile(0.75, &bounds, &[10, 10, 0, 0]) - 0.15).abs() < 1e-12);
        assert_eq!(
            quantile(0.95, &bounds, &[0, 0, 0, 4]),
            0.4,
            "overflow: the top bound"
        );
        assert!(quantile(0.5, &bounds, &[0, 0, 0, 0]).is_nan());
    }

    fn instrument(
        registry: &Registry,
        name: &str,
        kind: InstrumentKind,
        bounds: &[f64],
    ) -> std::sync::Arc<crate::metrics::Instrument> {
        let d = Descriptor {
            name: name.into(),
            unit: String::new(),
            description: String::new(),
            kind,
            scope: "wasmtel".into(),
        };
        registry.instrument(d, bounds).expect("instrument")
    }

    #[test]
    fn points_are_rates_and_quantiles_over_each_interval_and_the_ring_keeps_its_length() {
        let registry = Registry::new(100);
        // A received producer (an OTLP sender) reporting the same model.
        let received = Registry::new(100);
        let durations = |registry: &Registry| {
            instrument(
                registry,
                "gen_ai.server.request.duration",
                InstrumentKind::Histogram,
                &[1.0],
            )
        };
        let (own, theirs) = (durations(&registry), durations(&received));
        let requests = |on: &std::sync::Arc<crate::metrics::Instrument>,
                        attrs: &[(&str, ValueRef)],
                        n: usize| {
            for _ in 0..n {
                on.record(attrs, 0.5);
            }
        };
        let ttft = instrument(
            &registry,
            "gen_ai.server.time_to_first_token",
            InstrumentKind::Histogram,
            &[0.1, 0.2, 0.4],
        );
        let tokens = instrument(
            &registry,
            "gen_ai.client.token.usage",
            InstrumentKind::Histogram,
            &[100.0],
        );
        let util = instrument(&registry, "hw.gpu.utilization", InstrumentKind::Gauge, &[]);
        let m = |model: &'static str| [(MODEL, ValueRef::Str(model))];
        let failed = [
            ("error.type", ValueRef::Str("timeout")),
            (MODEL, ValueRef::Str("a")),
        ];
        let output = [
            (MODEL, ValueRef::Str("a")),
            ("gen_ai.token.type", ValueRef::Str("output")),
        ];
        let input = [
            (MODEL, ValueRef::Str("a")),
            ("gen_ai.token.type", ValueRef::Str("input")),
        ];
        let gpu = |task: &'static str| {
            [
                ("gpu.index", ValueRef::Int(0)),
                ("gpu.name", ValueRef::Str("H100")),
                ("gpu.uuid", ValueRef::Str("GPU-0")),
                ("hw.gpu.task", ValueRef::Str(task)),
            ]
        };

        let history = History::new(Duration::from_secs(2), Duration::from_secs(6));
        requests(&own, &m("a"), 5);
        util.record(&gpu("general"), 0.5);
        util.record(&gpu("encoder"), 0.9);
        let both = [&registry, &received];
        history.sample_at(&both, 10 * S);
        // Over the next 2 s: 8 requests of which 2 failed (reported by the received producer),
        // 1,000 output tokens, and TTFTs.
        requests(&own, &m("a"), 6);
        requests(&theirs, &failed, 2);
        tokens.record(&output, 600.0);
        tokens.record(&output, 400.0);
        tokens.record(&input, 5000.0);
        for v in [0.05; 10].into_iter().chain([0.15; 10]) {
            ttft.record(&m("a"), v);
        }
        requests(&own, &m("b"), 4);
        util.record(&gpu("general"), 0.75);
        history.sample_at(&both, 12 * S);

        let h = history.json(None);
        assert_eq!(h["capacity"], 3);
        assert_eq!(h["interval_seconds"], 2.0);
        assert_eq!(h["times_unix_ms"], json!([10_000, 12_000]));
        let a = &h["models"][0];
        assert_eq!(a["model"], "a");
        assert_eq!(a["requests_per_second"], json!([null, 4.0]));
        assert_eq!(a["error_ratio"], json!([null, 0.25]));
        assert_eq!(a["ttft_p50_seconds"], json!([null, 0.1]));
        assert_eq!(
            a["ttft_p95_seconds"][1]
                .as_f64()
                .map(|v| (v * 1000.0).round()),
            Some(190.0)
        );
        assert_eq!(
            a["tpot_p50_seconds"],
            json!([null, null]),
            "no data is null, not zero"
        );
        assert_eq!(a["output_tokens_per_second"], json!([null, 500.0]));
        let b = &h["models"][1];
        assert_eq!(
            (&b["model"], &b["requests_per_second"]),
            (&json!("b"), &json!([null, 2.0])),
            "a new model is padded and counts from zero"
        );
        assert_eq!(
            b["output_tokens_per_second"],
            json!([null, null]),
            "a model that reports no token usage has no token rate, not zero"
        );
        let g = &h["gpus"][0];
        assert_eq!(
            (&g["uuid"], &g["index"], &g["name"]),
            (&json!("GPU-0"), &json!(0), &json!("H100"))
        );
        assert_eq!(
            g["utilization"],
            json!([0.5, 0.75]),
            "the general task's utilization"
        );

        // Two more samples: the ring keeps 3 points, and `points` takes the last ones.
        requests(&own, &m("b"), 2);
        history.sample_at(&both, 14 * S);
        history.sample_at(&both, 16 * S);
        let h = history.json(None);
        assert_eq!(h["times_unix_ms"], json!([12_000, 14_000, 16_000]));
        assert_eq!(
            h["models"][1]["requests_per_second"],
            json!([2.0, 1.0, 0.0])
        );
        assert_eq!(
            history.json(Some(1))["models"][1]["requests_per_second"],
            json!([0.0])
        );
    }

    #[test]
    fn rows_are_bounded_and_dropped_once_they_hold_nothing() {
        let registry = Registry::new(1000);
        let util = instrument(&registry, "hw.gpu.utilization", InstrumentKind::Gauge, &[]);
        let history = History::new(Duration::from_secs(1), Duration::from_secs(2));
        let uuids: Vec<String> = (0..MAX_ROWS + 3).map(|i| format!("GPU-{i}")).collect();
        for (i, uuid) in uuids.iter().enumerate() {
            util.record(
                &[
                    ("gpu.index", ValueRef::Int(i as i64)),
                    ("gpu.uuid", ValueRef::Str(uuid)),
                ],
                0.1,
            );
        }
        history.sample_at(&[&registry], S);
        let h = history.json(None);
        assert_eq!(h["gpus"].as_array().map(Vec::len), Some(MAX_ROWS));
        assert_eq!(h["rows_left_out"], 3);
        assert_eq!(
            h["gpus"][1]["index"], 1,
            "listed by index, not by UUID text"
        );
        util.retain_series(|_: &AttributeSet| false);
        history.sample_at(&[&registry], 2 * S);
        history.sample_at(&[&registry], 3 * S);
        assert_eq!(
            history.json(None)["gpus"],
            json!([]),
            "a GPU gone for the whole window has no row"
        );
    }
}
