//! Received OTLP metrics into the registries: each point is checked, cumulative points become
//! the change since the previous point of their series, and the change is merged into the
//! registry of the point's resource, under its scope.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, ExponentialHistogramDataPoint, HistogramDataPoint, Metric,
    NumberDataPoint, SummaryDataPoint, exponential_histogram_data_point::Buckets as ProtoBuckets,
    metric::Data, number_data_point,
};

use super::Tally;
use crate::metrics::aggregation::{
    Buckets, ExponentialPoint, HistogramPoint, MAX_SCALE, MIN_SCALE, SummaryPoint,
};
use crate::metrics::{Descriptor, Instrument, MergeError, Point, Registries, Registry, Storage};
use crate::model::attributes::{AttributeSet, AttrsRef, hash_attrs};
use crate::model::key_values::{attribute_set, borrowed};
use crate::model::metric::Aggregation;
use crate::model::metric::{InstrumentKind, Scope};
use crate::tenancy::Tenancy;
use hashbrown::HashTable;

/// How many cumulative series the receiver remembers; points of further new series are refused.
pub const MAX_CUMULATIVE_SERIES: usize = 200_000;

/// The OTLP flag marking a point that carries no value (a staleness marker).
const NO_RECORDED_VALUE: u32 = 1;

/// Identifies a received metric: its registry, scope and name.
type MetricId = (usize, Arc<str>, String);

/// A remembered cumulative series: its attributes, start time and last point.
type Tracked = (AttributeSet, u64, Last);

/// What the receiver remembers of cumulative series.
#[derive(Debug, Default)]
struct Memory {
    /// Per metric, its series.
    metrics: HashMap<MetricId, HashTable<Tracked>>,
    /// How many series in all.
    series: usize,
}

/// The previous cumulative point of a series, with its start time.
#[derive(Debug, Clone)]
enum Last {
    Sum(f64),
    Histogram(HistogramPoint),
    Exponential(ExponentialPoint),
}

/// Turns received metrics into registry updates, remembering cumulative series.
#[derive(Debug)]
pub struct MetricsReceiver {
    registries: Arc<Registries>,
    tenancy: Arc<Tenancy>,
    cumulative: Mutex<Memory>,
}

/// One metric's context while its points are read.
struct Target<'a> {
    instrument: Arc<Instrument>,
    name: &'a str,
    /// For a cumulative metric: its remembered series, and the count of all of them.
    memory: Option<(&'a mut HashTable<Tracked>, &'a mut usize)>,
}

impl MetricsReceiver {
    /// A receiver adding to `registries`.
    pub fn new(registries: Arc<Registries>) -> Self {
        Self {
            registries,
            tenancy: Arc::new(Tenancy::off()),
            cumulative: Mutex::default(),
        }
    }

    /// Holds each tenant's new resources to its limits in `tenancy`.
    pub fn with_tenancy(mut self, tenancy: Arc<Tenancy>) -> Self {
        self.tenancy = tenancy;
        self
    }

    /// Adds every valid point of `request`; invalid points are counted and the first problem named.
    pub fn receive(&self, request: &ExportMetricsServiceRequest) -> Tally {
        let mut tally = Tally::default();
        for rm in &request.resource_metrics {
            let resource = attribute_set(rm.resource.as_ref().map_or(&[][..], |r| &r.attributes));
            let waiting = rm.scope_metrics.iter().flat_map(|s| &s.metrics).map(points);
            let admitted = self
                .tenancy
                .admit(&self.registries, &resource, false, waiting.sum());
            let registry = match admitted {
                Ok(registry) => registry,
                Err(e) => {
                    let points = rm.scope_metrics.iter().flat_map(|s| &s.metrics).map(points);
                    tally.reject(points.sum(), &e.to_string());
                    continue;
                }
            };
            for sm in &rm.scope_metrics {
                let proto = sm.scope.clone().unwrap_or_default();
                let scope = Scope {
                    name: Arc::from(proto.name),
                    version: Arc::from(proto.version),
                    attributes: attribute_set(&proto.attributes),
                    schema_url: Arc::from(sm.schema_url.as_str()),
                };
                for metric in &sm.metrics {
                    self.metric(&registry, &scope, metric, &mut tally);
                }
            }
        }
        tally
    }

    fn metric(&self, registry: &Registry, scope: &Scope, metric: &Metric, tally: &mut Tally) {
        let n = points(metric);
        let refuse = |tally: &mut Tally, why: &str| {
            tally.reject(n, &format!("metric `{}`: {why}", metric.name));
        };
        if metric.name.is_empty() {
            return tally.reject(n, "a metric has no name");
        }
        let (kind, shape, bounds) = match &metric.data {
            None => return refuse(tally, "it has no data"),
            Some(Data::Summary(_)) => (InstrumentKind::Summary, Aggregation::LastValue, &[][..]),
            Some(Data::Gauge(_)) => (InstrumentKind::Gauge, Aggregation::LastValue, &[][..]),
            Some(Data::Sum(s)) if s.is_monotonic => {
                (InstrumentKind::Counter, Aggregation::Sum, &[][..])
            }
            Some(Data::Sum(_)) => (InstrumentKind::UpDownCounter, Aggregation::Sum, &[][..]),
            Some(Data::Histogram(h)) => (
                InstrumentKind::Histogram,
                Aggregation::ExplicitBucketHistogram,
                h.data_points
                    .first()
                    .map_or(&[][..], |p| &p.explicit_bounds[..]),
            ),
            Some(Data::ExponentialHistogram(_)) => (
                InstrumentKind::Histogram,
                Aggregation::Base2ExponentialBucketHistogram,
                &[][..],
            ),
        };
        let temporality = match &metric.data {
            Some(Data::Sum(s)) => s.aggregation_temporality,
            Some(Data::Histogram(h)) => h.aggregation_temporality,
            Some(Data::ExponentialHistogram(e)) => e.aggregation_temporality,
            _ => AggregationTemporality::Delta as i32,
        };
        let cumulative = match AggregationTemporality::try_from(temporality) {
            Ok(AggregationTemporality::Cumulative) => true,
            Ok(AggregationTemporality::Delta) => false,
            _ => return refuse(tally, "its aggregation temporality is unspecified"),
        };
        if let Err(why) = check_bounds(bounds) {
            return refuse(tally, why);
        }
        let descriptor = Descriptor {
            name: metric.name.clone(),
            unit: metric.unit.clone(),
            description: metric.description.clone(),
            kind,
            scope: scope.clone(),
        };
        let instrument = match registry.instrument_as(descriptor, bounds, Some(shape)) {
            Ok(instrument) => instrument,
            Err(e) => return refuse(tally, &e.to_string()),
        };
        // Gauges and summaries are kept as received: no change to derive.
        let mut memory = (cumulative
            && !matches!(kind, InstrumentKind::Gauge | InstrumentKind::Summary))
        .then(|| {
            self.cumulative
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
        });
        let memory = memory.as_deref_mut().map(|m| {
            let Memory { metrics, series } = m;
            let id = (
                std::ptr::from_ref(registry) as usize,
                scope.name.clone(),
                metric.name.clone(),
            );
            (metrics.entry(id).or_default(), series)
        });
        let mut target = Target {
            instrument,
            name: &metric.name,
            memory,
        };
        let monotonic = kind.is_monotonic();
        match &metric.data {
            Some(Data::Gauge(g)) => {
                for p in &g.data_points {
                    number(&mut target, p, monotonic, tally);
                }
            }
            Some(Data::Sum(s)) => {
                for p in &s.data_points {
                    number(&mut target, p, monotonic, tally);
                }
            }
            Some(Data::Histogram(h)) => {
                for p in &h.data_points {
                    histogram(&mut target, p, tally);
                }
            }
            Some(Data::ExponentialHistogram(e)) => {
                for p in &e.data_points {
                    exponential(&mut target, p, tally);
                }
            }
            Some(Data::Summary(s)) => {
                for p in &s.data_points {
                    summary(&mut target, p, tally);
                }
            }
            None => {}
        }
    }
}

/// A gauge or sum point.
fn number(target: &mut Target<'_>, p: &NumberDataPoint, monotonic: bool, tally: &mut Tally) {
    if p.flags & NO_RECORDED_VALUE != 0 {
        return target.end(&p.attributes, tally);
    }
    let value = match p.value {
        Some(number_data_point::Value::AsDouble(v)) => v,
        Some(number_data_point::Value::AsInt(i)) => i as f64,
        None => return tally.reject(1, &target.problem("a point has no value")),
    };
    let mut spill = Vec::new();
    let attrs = borrowed(&p.attributes, &mut spill);
    if matches!(target.instrument.storage(), Storage::LastValue(_)) {
        return tally.merged(target.merge(&attrs, Point::Gauge(value)), target);
    }
    if target.memory.is_none() {
        return tally.merged(target.merge(&attrs, Point::Sum(value)), target);
    }
    // A monotonic sum that restarted or went down starts again from zero; an up-down sum's
    // change is always the difference, so the merged total follows the source's.
    let change = |last: Option<&Last>, restarted: bool| match last {
        Some(Last::Sum(before)) if !monotonic || (!restarted && value >= *before) => {
            (Change::Sum(value - before), Last::Sum(value))
        }
        _ => (Change::Sum(value), Last::Sum(value)),
    };
    target.cumulative(&attrs, p.start_time_unix_nano, tally, change);
}

fn histogram(target: &mut Target<'_>, p: &HistogramDataPoint, tally: &mut Tally) {
    if p.flags & NO_RECORDED_VALUE != 0 {
        return target.end(&p.attributes, tally);
    }
    let point = match histogram_point(p) {
        Ok(point) => point,
        Err(why) => return tally.reject(1, &target.problem(why)),
    };
    let mut spill = Vec::new();
    let attrs = borrowed(&p.attributes, &mut spill);
    let bounds = &p.explicit_bounds[..];
    if target.memory.is_none() {
        let merged = target.merge(&attrs, Point::Histogram(bounds, &point));
        return tally.merged(merged, target);
    }
    let change = |last: Option<&Last>, restarted: bool| {
        let delta = match last {
            Some(Last::Histogram(before)) if !restarted => point.since(before),
            _ => None,
        };
        let delta = delta.unwrap_or_else(|| point.clone());
        (
            Change::Histogram(bounds, delta),
            Last::Histogram(point.clone()),
        )
    };
    target.cumulative(&attrs, p.start_time_unix_nano, tally, change);
}

fn exponential(target: &mut Target<'_>, p: &ExponentialHistogramDataPoint, tally: &mut Tally) {
    if p.flags & NO_RECORDED_VALUE != 0 {
        return target.end(&p.attributes, tally);
    }
    let point = match exponential_point(p) {
        Ok(point) => point,
        Err(why) => return tally.reject(1, &target.problem(why)),
    };
    let mut spill = Vec::new();
    let attrs = borrowed(&p.attributes, &mut spill);
    if target.memory.is_none() {
        return tally.merged(target.merge(&attrs, Point::Exponential(&point)), target);
    }
    let change = |last: Option<&Last>, restarted: bool| {
        let delta = match last {
            Some(Last::Exponential(before)) if !restarted => point.since(before),
            _ => None,
        };
        let delta = delta.unwrap_or_else(|| point.clone());
        (Change::Exponential(delta), Last::Exponential(point.clone()))
    };
    target.cumulative(&attrs, p.start_time_unix_nano, tally, change);
}

/// A summary point: kept as it is, the last one per series.
fn summary(target: &mut Target<'_>, p: &SummaryDataPoint, tally: &mut Tally) {
    if p.flags & NO_RECORDED_VALUE != 0 {
        return target.end(&p.attributes, tally);
    }
    if !p.sum.is_finite() {
        return tally.reject(1, &target.problem("a summary's sum is not finite"));
    }
    if p.quantile_values
        .iter()
        .any(|q| !(0.0..=1.0).contains(&q.quantile))
    {
        return tally.reject(
            1,
            &target.problem("a summary's quantiles must be between 0 and 1"),
        );
    }
    let point = SummaryPoint {
        count: p.count,
        sum: p.sum,
        quantiles: p
            .quantile_values
            .iter()
            .map(|q| (q.quantile, q.value))
            .collect(),
    };
    let mut spill = Vec::new();
    let attrs = borrowed(&p.attributes, &mut spill);
    tally.merged(target.merge(&attrs, Point::Summary(&point)), target);
}

/// A change derived from a cumulative point, to merge.
enum Change<'b> {
    Sum(f64),
    Histogram(&'b [f64], HistogramPoint),
    Exponential(ExponentialPoint),
}

impl Change<'_> {
    fn point(&self) -> Point<'_> {
        match self {
            Change::Sum(v) => Point::Sum(*v),
            Change::Histogram(bounds, p) => Point::Histogram(bounds, p),
            Change::Exponential(p) => Point::Exponential(p),
        }
    }
}

impl Target<'_> {
    /// A problem with one of this metric's points, naming the metric.
    fn problem(&self, why: &str) -> String {
        format!("metric `{}`: {why}", self.name)
    }

    /// Adds `point` to the series `attrs`.
    fn merge(&self, attrs: &AttrsRef<'_>, point: Point<'_>) -> Result<(), MergeError> {
        self.instrument.merge(attrs, point)
    }

    /// Ends the series of `attributes` (a point flagged "no recorded value": the source says it
    /// is gone, as a Prometheus staleness marker does): it leaves the instrument, and a later
    /// point starts it afresh.
    fn end(
        &mut self,
        attributes: &[opentelemetry_proto::tonic::common::v1::KeyValue],
        tally: &mut Tally,
    ) {
        let mut spill = Vec::new();
        let attrs = borrowed(attributes, &mut spill);
        if let Some((table, count)) = self.memory.as_mut() {
            let hash = hash_attrs(&attrs);
            if let Ok(entry) = table.find_entry(hash, |(set, _, _)| set.matches(&attrs)) {
                entry.remove();
                **count -= 1;
            }
        }
        self.instrument.retain_series(|set| !set.matches(&attrs));
        tally.accept(1);
    }

    /// Merges the change `change` derives from the series' previous cumulative point (and
    /// whether its start time moved, i.e. the source restarted), then remembers the new one.
    fn cumulative<'b>(
        &mut self,
        attrs: &AttrsRef<'_>,
        start: u64,
        tally: &mut Tally,
        change: impl FnOnce(Option<&Last>, bool) -> (Change<'b>, Last),
    ) {
        let Some((table, count)) = self.memory.as_mut() else {
            return;
        };
        let hash = hash_attrs(attrs);
        let known = table.find_mut(hash, |(set, _, _)| set.matches(attrs));
        if known.is_none() && **count >= MAX_CUMULATIVE_SERIES {
            let why = format!("{MAX_CUMULATIVE_SERIES} cumulative series are already tracked");
            return tally.reject(1, &self.problem(&why));
        }
        let restarted = known.as_ref().is_some_and(|(_, s, _)| *s != start);
        let (delta, last) = change(known.as_ref().map(|(_, _, l)| l), restarted);
        let merged = self.instrument.merge(attrs, delta.point());
        if merged.is_ok() {
            match known {
                Some(entry) => *entry = (entry.0.clone(), start, last),
                None => {
                    let set = AttributeSet::from_sorted(attrs, hash);
                    table.insert_unique(hash, (set, start, last), |(set, _, _)| set.hash());
                    **count += 1;
                }
            }
        }
        tally.merged(merged, self);
    }
}

impl Tally {
    /// Counts one merged point, or rejects it naming the metric.
    fn merged(&mut self, result: Result<(), MergeError>, target: &Target<'_>) {
        match result {
            Ok(()) => self.accept(1),
            Err(e) => self.reject(1, &target.problem(&format!("a point was refused: {e}"))),
        }
    }
}

/// How many data points a metric carries.
fn points(metric: &Metric) -> usize {
    match &metric.data {
        Some(Data::Gauge(g)) => g.data_points.len(),
        Some(Data::Sum(s)) => s.data_points.len(),
        Some(Data::Histogram(h)) => h.data_points.len(),
        Some(Data::ExponentialHistogram(e)) => e.data_points.len(),
        Some(Data::Summary(s)) => s.data_points.len(),
        None => 0,
    }
}

/// Explicit bounds must be finite and strictly increasing.
fn check_bounds(bounds: &[f64]) -> Result<(), &'static str> {
    if bounds.iter().any(|b| !b.is_finite()) {
        return Err("histogram bounds must be finite");
    }
    if bounds.windows(2).any(|w| w[0] >= w[1]) {
        return Err("histogram bounds must increase strictly");
    }
    Ok(())
}

/// A checked explicit-bucket histogram point.
fn histogram_point(p: &HistogramDataPoint) -> Result<HistogramPoint, &'static str> {
    check_bounds(&p.explicit_bounds)?;
    if p.bucket_counts.len() != p.explicit_bounds.len() + 1 {
        return Err("a histogram point needs one more bucket count than bounds");
    }
    if p.bucket_counts
        .iter()
        .try_fold(0u64, |a, n| a.checked_add(*n))
        != Some(p.count)
    {
        return Err("a histogram point's bucket counts do not add up to its count");
    }
    if p.sum.is_some_and(|s| !s.is_finite()) {
        return Err("a histogram point's sum is not finite");
    }
    Ok(HistogramPoint {
        count: p.count,
        sum: p.sum.unwrap_or(0.0),
        min: p.min.unwrap_or(f64::INFINITY),
        max: p.max.unwrap_or(f64::NEG_INFINITY),
        bucket_counts: p.bucket_counts.clone(),
    })
}

/// A checked exponential histogram point.
fn exponential_point(p: &ExponentialHistogramDataPoint) -> Result<ExponentialPoint, &'static str> {
    if !(MIN_SCALE..=MAX_SCALE).contains(&p.scale) {
        return Err("an exponential histogram's scale must be between -10 and 20");
    }
    let buckets = |b: &Option<ProtoBuckets>| -> Result<Buckets, &'static str> {
        let Some(b) = b else {
            return Ok(Buckets::default());
        };
        let len = i32::try_from(b.bucket_counts.len()).map_err(|_| "too many buckets")?;
        b.offset
            .checked_add(len)
            .ok_or("an exponential histogram's bucket indices overflow")?;
        Ok(Buckets {
            offset: b.offset,
            counts: b.bucket_counts.clone(),
        })
    };
    let (positive, negative) = (buckets(&p.positive)?, buckets(&p.negative)?);
    let total = positive
        .counts
        .iter()
        .chain(&negative.counts)
        .try_fold(p.zero_count, |a, n| a.checked_add(*n));
    if total != Some(p.count) {
        return Err(
            "an exponential histogram point's buckets and zero count do not add up to its count",
        );
    }
    if p.sum.is_some_and(|s| !s.is_finite()) {
        return Err("an exponential histogram point's sum is not finite");
    }
    Ok(ExponentialPoint {
        count: p.count,
        sum: p.sum.unwrap_or(0.0),
        min: p.min.unwrap_or(f64::INFINITY),
        max: p.max.unwrap_or(f64::NEG_INFINITY),
        scale: p.scale,
        zero_count: p.zero_count,
        positive,
        negative,
    })
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
    use opentelemetry_proto::tonic::metrics::v1::{
        ExponentialHistogram, Gauge, Histogram, ResourceMetrics, ScopeMetrics, Sum, Summary,
        SummaryDataPoint, summary_data_point::ValueAtQuantile,
    };
    use opentelemetry_proto::tonic::resource::v1::Resource as ProtoResource;

    use super::*;
    use crate::metrics::Producer;
    use crate::model::attributes::ValueRef;
    use crate::model::resource::Resource;
    use wasmtel_tests::kv;

    const CUMULATIVE: i32 = AggregationTemporality::Cumulative as i32;
    const DELTA: i32 = AggregationTemporality::Delta as i32;

    fn request(service: &str, metrics: Vec<Metric>) -> ExportMetricsServiceRequest {
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(ProtoResource {
                    attributes: vec![kv("service.name", service)],
                    ..Default::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(InstrumentationScope {
                        name: "app.meter".into(),
                        version: "1.2".into(),
                        attributes: vec![kv("lib", "x")],
                        ..Default::default()
                    }),
                    metrics,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        }
    }

    fn metric(name: &str, data: Data) -> Metric {
        Metric {
            name: name.into(),
            unit: "1".into(),
            data: Some(data),
            ..Default::default()
        }
    }

    fn number(start: u64, value: f64, route: &str) -> NumberDataPoint {
        NumberDataPoint {
            attributes: vec![kv("route", route)],
            start_time_unix_nano: start,
            value: Some(number_data_point::Value::AsDouble(value)),
            ..Default::default()
        }
    }

    fn sum(name: &str, temporality: i32, monotonic: bool, points: Vec<NumberDataPoint>) -> Metric {
        metric(
            name,
            Data::Sum(Sum {
                data_points: points,
                aggregation_temporality: temporality,
                is_monotonic: monotonic,
            }),
        )
    }

    fn receiver() -> MetricsReceiver {
        let own = Resource::from_attributes(AttributeSet::empty());
        MetricsReceiver::new(Arc::new(Registries::new(Arc::new(Registry::new(100)), own)))
    }

    /// The received producer of `service`.
    fn producer(r: &MetricsReceiver, service: &str) -> Producer {
        r.registries
            .all()
            .into_iter()
            .find(|p| p.resource.get("service.name").as_deref() == Some(service))
            .expect("resource received")
    }

    fn instrument(r: &MetricsReceiver, service: &str, name: &str) -> Arc<Instrument> {
        let found = producer(r, service).registry.instruments();
        found
            .into_iter()
            .find(|i| i.descriptor().name == name)
            .expect("instrument")
    }

    /// Every series of a sum or gauge instrument as `route → value`.
    fn values(i: &Instrument) -> Vec<(String, f64)> {
        let mut out = Vec::new();
        let mut visit = |a: &AttributeSet, v: f64| {
            out.push((a.get("route").map(|v| v.to_string()).unwrap_or_default(), v));
        };
        match i.storage() {
            Storage::Sum(t) => t.for_each(|s| visit(&s.attributes, s.aggregator.value())),
            Storage::LastValue(t) => t.for_each(|s| visit(&s.attributes, s.aggregator.value())),
            _ => panic!("not a number instrument"),
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    fn accepted(n: usize) -> Tally {
        Tally {
            accepted: n,
            ..Tally::default()
        }
    }

    #[test]
    fn cumulative_sums_add_their_changes_and_survive_restarts() {
        let r = receiver();
        let send = |start, value| {
            r.receive(&request(
                "app",
                vec![sum(
                    "reqs",
                    CUMULATIVE,
                    true,
                    vec![number(start, value, "/a")],
                )],
            ))
        };
        assert_eq!(send(10, 5.0), accepted(1));
        assert_eq!(send(10, 8.0), accepted(1));
        assert_eq!(
            values(&instrument(&r, "app", "reqs")),
            [("/a".into(), 8.0)],
            "the source's total"
        );
        send(20, 2.0); // restarted: a new start time, counting from zero again
        assert_eq!(
            values(&instrument(&r, "app", "reqs")),
            [("/a".into(), 10.0)]
        );
        send(20, 1.0); // went down without a new start time: also a restart
        assert_eq!(
            values(&instrument(&r, "app", "reqs")),
            [("/a".into(), 11.0)]
        );
        send(20, 4.0);
        assert_eq!(
            values(&instrument(&r, "app", "reqs")),
            [("/a".into(), 14.0)]
        );
    }

    #[test]
    fn a_point_with_no_recorded_value_ends_its_series() {
        let r = receiver();
        let send = |points| r.receive(&request("app", vec![sum("reqs", CUMULATIVE, true, points)]));
        send(vec![number(10, 5.0, "/a"), number(10, 7.0, "/b")]);
        let mut stale = number(10, 0.0, "/a");
        stale.flags = NO_RECORDED_VALUE;
        assert_eq!(send(vec![stale]), accepted(1));
        assert_eq!(
            values(&instrument(&r, "app", "reqs")),
            [("/b".into(), 7.0)],
            "/a ended; /b stays"
        );
        send(vec![number(10, 6.0, "/a")]);
        assert_eq!(
            values(&instrument(&r, "app", "reqs")),
            [("/a".into(), 6.0), ("/b".into(), 7.0)],
            "a series that comes back starts afresh, with its whole total"
        );
    }

    #[test]
    fn cumulative_up_down_sums_follow_the_source_total() {
        let r = receiver();
        for (start, value) in [(1, 5.0), (1, 3.0), (2, -4.0)] {
            r.receive(&request(
                "app",
                vec![sum(
                    "queue",
                    CUMULATIVE,
                    false,
                    vec![number(start, value, "q")],
                )],
            ));
        }
        assert_eq!(
            values(&instrument(&r, "app", "queue")),
            [("q".into(), -4.0)]
        );
        let kind = instrument(&r, "app", "queue").descriptor().kind;
        assert_eq!(kind, InstrumentKind::UpDownCounter);
    }

    #[test]
    fn delta_sums_add_and_gauges_keep_the_last_value() {
        let r = receiver();
        let req = request(
            "app",
            vec![
                sum(
                    "d",
                    DELTA,
                    true,
                    vec![
                        number(0, 2.0, "/a"),
                        number(0, 3.0, "/a"),
                        number(0, 1.0, "/b"),
                    ],
                ),
                metric(
                    "g",
                    Data::Gauge(Gauge {
                        data_points: vec![number(0, 7.0, "x"), number(0, 6.0, "x")],
                    }),
                ),
            ],
        );
        assert_eq!(r.receive(&req), accepted(5));
        assert_eq!(
            values(&instrument(&r, "app", "d")),
            [("/a".into(), 5.0), ("/b".into(), 1.0)]
        );
        assert_eq!(values(&instrument(&r, "app", "g")), [("x".into(), 6.0)]);
        let negative = sum("d", DELTA, true, vec![number(0, -1.0, "/a")]);
        let tally = r.receive(&request("app", vec![negative]));
        assert_eq!((tally.accepted, tally.rejected), (0, 1));
        assert_eq!(
            tally.message.as_deref(),
            Some(
                "metric `d`: a point was refused: its value is not finite, or a monotonic sum decreased"
            )
        );
        assert_eq!(
            values(&instrument(&r, "app", "d"))[0].1,
            5.0,
            "nothing was added"
        );
    }

    fn histogram(temporality: i32, start: u64, counts: [u64; 3], sum: f64) -> Metric {
        metric(
            "lat",
            Data::Histogram(Histogram {
                data_points: vec![HistogramDataPoint {
                    start_time_unix_nano: start,
                    count: counts.iter().sum(),
                    sum: Some(sum),
                    bucket_counts: counts.to_vec(),
                    explicit_bounds: vec![1.0, 5.0],
                    min: Some(0.5),
                    max: Some(9.0),
                    ..Default::default()
                }],
                aggregation_temporality: temporality,
            }),
        )
    }

    fn snapshot(r: &MetricsReceiver) -> HistogramPoint {
        let i = instrument(r, "app", "lat");
        let Storage::Histogram(bounds, t) = i.storage() else {
            panic!("histogram")
        };
        assert_eq!(**bounds, [1.0, 5.0]);
        let mut out = None;
        t.for_each(|s| out = Some(s.aggregator.snapshot()));
        out.expect("one series")
    }

    #[test]
    fn histograms_merge_deltas_and_follow_cumulative_points() {
        let r = receiver();
        r.receive(&request(
            "app",
            vec![histogram(CUMULATIVE, 1, [1, 2, 0], 6.0)],
        ));
        r.receive(&request(
            "app",
            vec![histogram(CUMULATIVE, 1, [2, 2, 1], 16.0)],
        ));
        let p = snapshot(&r);
        assert_eq!(
            (p.count, p.sum, p.bucket_counts.clone()),
            (5, 16.0, vec![2, 2, 1])
        );
        assert_eq!((p.min, p.max), (0.5, 9.0));
        r.receive(&request(
            "app",
            vec![histogram(CUMULATIVE, 2, [1, 0, 0], 0.5)],
        ));
        let p = snapshot(&r);
        assert_eq!(
            (p.count, p.bucket_counts),
            (6, vec![3, 2, 1]),
            "a restart adds the whole point"
        );

        let r = receiver();
        r.receive(&request("app", vec![histogram(DELTA, 0, [1, 2, 0], 6.0)]));
        r.receive(&request("app", vec![histogram(DELTA, 0, [1, 0, 1], 7.0)]));
        let p = snapshot(&r);
        assert_eq!((p.count, p.sum, p.bucket_counts), (5, 13.0, vec![2, 2, 1]));
    }

    fn exponential(
        temporality: i32,
        start: u64,
        scale: i32,
        offset: i32,
        counts: &[u64],
    ) -> Metric {
        metric(
            "exp",
            Data::ExponentialHistogram(ExponentialHistogram {
                data_points: vec![ExponentialHistogramDataPoint {
                    start_time_unix_nano: start,
                    count: counts.iter().sum::<u64>() + 1,
                    sum: Some(10.0),
                    scale,
                    zero_count: 1,
                    positive: Some(ProtoBuckets {
                        offset,
                        bucket_counts: counts.to_vec(),
                    }),
                    ..Default::default()
                }],
                aggregation_temporality: temporality,
            }),
        )
    }

    fn exponential_snapshot(r: &MetricsReceiver) -> ExponentialPoint {
        let i = instrument(r, "app", "exp");
        let Storage::ExponentialHistogram(t) = i.storage() else {
            panic!("exponential")
        };
        let mut out = None;
        t.for_each(|s| out = Some(s.aggregator.snapshot()));
        out.expect("one series")
    }

    #[test]
    fn exponential_histograms_follow_cumulative_points_across_scales() {
        let r = receiver();
        r.receive(&request(
            "app",
            vec![exponential(CUMULATIVE, 1, 3, 8, &[1, 1])],
        ));
        // The source downscaled: indices 8, 9 at scale 3 are index 4 at scale 2.
        r.receive(&request(
            "app",
            vec![exponential(CUMULATIVE, 1, 2, 4, &[3, 2])],
        ));
        let p = exponential_snapshot(&r);
        assert_eq!(p.scale, 2);
        assert_eq!(
            p.positive,
            Buckets {
                offset: 4,
                counts: vec![3, 2]
            }
        );
        assert_eq!((p.count, p.zero_count), (6, 1));

        let r = receiver();
        r.receive(&request("app", vec![exponential(DELTA, 0, 3, 8, &[1, 1])]));
        r.receive(&request("app", vec![exponential(DELTA, 0, 3, 9, &[2])]));
        let p = exponential_snapshot(&r);
        assert_eq!(
            (p.scale, p.positive.clone()),
            (
                3,
                Buckets {
                    offset: 8,
                    counts: vec![1, 3]
                }
            )
        );
        assert_eq!((p.count, p.zero_count, p.sum), (6, 2, 20.0));
    }

    #[test]
    fn summaries_are_kept_as_received_the_last_point_per_series_until_it_ends() {
        let r = receiver();
        let point = |count: u64, sum: f64, p50: f64, flags: u32| SummaryDataPoint {
            attributes: vec![kv("route", "a")],
            start_time_unix_nano: 1,
            time_unix_nano: 2,
            count,
            sum,
            quantile_values: vec![
                ValueAtQuantile {
                    quantile: 0.5,
                    value: p50,
                },
                ValueAtQuantile {
                    quantile: 0.99,
                    value: f64::NAN,
                },
            ],
            flags,
        };
        let summary = |p: SummaryDataPoint| {
            metric(
                "rpc",
                Data::Summary(Summary {
                    data_points: vec![p],
                }),
            )
        };
        assert_eq!(
            r.receive(&request("app", vec![summary(point(4, 2.0, 0.3, 0))])),
            accepted(1)
        );
        assert_eq!(
            r.receive(&request("app", vec![summary(point(9, 5.0, 0.4, 0))])),
            accepted(1)
        );
        let rpc = instrument(&r, "app", "rpc");
        assert_eq!(rpc.descriptor().kind, InstrumentKind::Summary);
        let read = |i: &Instrument| {
            let mut out = Vec::new();
            crate::metrics::reader::Reader::new(None).read(i, |p| {
                if let crate::metrics::reader::PointValue::Summary(s) = p.value {
                    out.push(s);
                }
            });
            out
        };
        let got = read(&rpc);
        assert_eq!(got.len(), 1);
        assert_eq!(
            (got[0].count, got[0].sum),
            (9, 5.0),
            "the last point, not a total"
        );
        assert_eq!(got[0].quantiles[0], (0.5, 0.4));
        assert!(
            got[0].quantiles[1].1.is_nan(),
            "an empty quantile stays NaN"
        );
        r.receive(&request(
            "app",
            vec![summary(point(0, 0.0, 0.0, NO_RECORDED_VALUE))],
        ));
        assert!(read(&rpc).is_empty(), "a stale point ends the series");
    }

    #[test]
    fn bad_points_are_counted_and_named_and_the_rest_is_kept() {
        let r = receiver();
        let mut bad_bounds = histogram(DELTA, 0, [1, 1, 1], 1.0);
        if let Some(Data::Histogram(h)) = &mut bad_bounds.data {
            h.data_points[0].explicit_bounds = vec![5.0, 1.0];
        }
        let mut bad_count = histogram(DELTA, 0, [1, 1, 1], 1.0);
        if let Some(Data::Histogram(h)) = &mut bad_count.data {
            h.data_points[0].count = 9;
        }
        let quantile = |q: f64| SummaryDataPoint {
            quantile_values: vec![ValueAtQuantile {
                quantile: q,
                value: 1.0,
            }],
            ..Default::default()
        };
        let summary = metric(
            "s",
            Data::Summary(Summary {
                data_points: vec![quantile(1.5)],
            }),
        );
        let cases: Vec<(Metric, usize, &str)> = vec![
            (
                summary,
                1,
                "metric `s`: a summary's quantiles must be between 0 and 1",
            ),
            (
                sum("u", 0, true, vec![number(0, 1.0, "a")]),
                1,
                "metric `u`: its aggregation temporality is unspecified",
            ),
            (
                bad_bounds,
                1,
                "metric `lat`: histogram bounds must increase strictly",
            ),
            (
                bad_count,
                1,
                "metric `lat`: a histogram point's bucket counts do not add up to its count",
            ),
            (
                exponential(DELTA, 0, 21, 0, &[1]),
                1,
                "metric `exp`: an exponential histogram's scale must be between -10 and 20",
            ),
            (
                exponential(DELTA, 0, 0, i32::MAX, &[1, 1]),
                1,
                "metric `exp`: an exponential histogram's bucket indices overflow",
            ),
            (
                sum("", DELTA, true, vec![number(0, 1.0, "a")]),
                1,
                "a metric has no name",
            ),
            (
                sum("n", DELTA, true, vec![NumberDataPoint::default()]),
                1,
                "metric `n`: a point has no value",
            ),
        ];
        for (bad, rejected, message) in cases {
            let good = sum("ok", DELTA, true, vec![number(0, 1.0, "a")]);
            let tally = r.receive(&request("app", vec![bad, good]));
            assert_eq!((tally.accepted, tally.rejected), (1, rejected), "{message}");
            assert_eq!(tally.message.as_deref(), Some(message));
        }
        assert_eq!(values(&instrument(&r, "app", "ok")), [("a".into(), 8.0)]);
        // One name, two shapes: the second is refused whole.
        let gauge = metric(
            "ok",
            Data::Gauge(Gauge {
                data_points: vec![number(0, 1.0, "a")],
            }),
        );
        let tally = r.receive(&request("app", vec![gauge]));
        assert_eq!(tally.rejected, 1);
        assert!(
            tally
                .message
                .as_deref()
                .is_some_and(|m| m.contains("already registered")),
            "{tally:?}"
        );
        let stale = NumberDataPoint {
            flags: NO_RECORDED_VALUE,
            ..NumberDataPoint::default()
        };
        assert_eq!(
            r.receive(&request("app", vec![sum("ok", DELTA, true, vec![stale])])),
            accepted(1),
            "a staleness marker is fine"
        );
    }

    #[test]
    fn configured_views_apply_to_received_metrics() {
        let view = crate::model::stream::StreamView {
            instrument: Some("reqs".into()),
            rename: Some("requests".into()),
            attribute_keys: Some(Vec::new()),
            ..Default::default()
        };
        let own = Registry::new(100)
            .with_stream_views(vec![view])
            .expect("view");
        let resource = Resource::from_attributes(AttributeSet::empty());
        let r = MetricsReceiver::new(Arc::new(Registries::new(Arc::new(own), resource)));
        let points = vec![number(1, 2.0, "/a"), number(1, 3.0, "/b")];
        r.receive(&request("app", vec![sum("reqs", CUMULATIVE, true, points)]));
        let points = vec![number(1, 4.0, "/a"), number(1, 3.0, "/b")];
        r.receive(&request("app", vec![sum("reqs", CUMULATIVE, true, points)]));
        let i = instrument(&r, "app", "requests");
        assert_eq!(
            values(&i),
            [(String::new(), 7.0)],
            "renamed, routes merged, changes added"
        );
    }

    #[test]
    fn resources_and_scopes_are_kept() {
        let r = receiver();
        for service in ["a", "b"] {
            r.receive(&request(
                service,
                vec![sum("reqs", DELTA, true, vec![number(0, 1.0, service)])],
            ));
        }
        for service in ["a", "b"] {
            let i = instrument(&r, service, "reqs");
            let scope = &i.descriptor().scope;
            assert_eq!((&*scope.name, &*scope.version), ("app.meter", "1.2"));
            assert_eq!(scope.attributes.get("lib"), Some(ValueRef::Str("x")));
            assert_eq!(values(&i), [(service.to_owned(), 1.0)]);
        }
        assert_eq!(
            r.registries.all().len(),
            3,
            "the host's own and one per resource"
        );
    }
}
