//! Received OTLP metrics into the registries: each point is checked, cumulative points become
//! the change since the previous point of their series, and the change is merged into the
//! registry of the point's resource, under its scope.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, ExponentialHistogramDataPoint, HistogramDataPoint, Metric,
    NumberDataPoint, exponential_histogram_data_point::Buckets as ProtoBuckets, metric::Data,
    number_data_point,
};

use super::Tally;
use super::attributes::attribute_set;
use crate::metrics::aggregation::{
    Buckets, ExponentialPoint, HistogramPoint, MAX_SCALE, MIN_SCALE,
};
use crate::metrics::attributes::{AttributeSet, AttrsRef, ValueRef};
use crate::metrics::{
    Aggregation, Descriptor, Instrument, InstrumentKind, MergeError, Point, Registries, Registry,
    Scope, Storage,
};

/// How many cumulative series the receiver remembers; points of further new series are refused.
pub const MAX_CUMULATIVE_SERIES: usize = 200_000;

/// The OTLP flag marking a point that carries no value (a staleness marker).
const NO_RECORDED_VALUE: u32 = 1;

/// Identifies a received cumulative series: its registry, scope, metric and attributes.
type SeriesId = (usize, Arc<str>, String, AttributeSet);

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
    cumulative: Mutex<HashMap<SeriesId, (u64, Last)>>,
}

/// One metric's context while its points are read.
struct Target<'a> {
    registry: &'a Registry,
    instrument: Arc<Instrument>,
    name: &'a str,
    scope: &'a Arc<str>,
}

impl MetricsReceiver {
    /// A receiver adding to `registries`.
    pub fn new(registries: Arc<Registries>) -> Self {
        Self {
            registries,
            cumulative: Mutex::default(),
        }
    }

    /// Adds every valid point of `request`; invalid points are counted and the first problem named.
    pub fn receive(&self, request: &ExportMetricsServiceRequest) -> Tally {
        let mut tally = Tally::default();
        for rm in &request.resource_metrics {
            let resource = attribute_set(rm.resource.as_ref().map_or(&[][..], |r| &r.attributes));
            let registry = match self.registries.received(&resource) {
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
            Some(Data::Summary(_)) => {
                return refuse(tally, "summaries are not supported; send histograms");
            }
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
            return refuse(tally, &why);
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
        let target = Target {
            registry,
            instrument,
            name: &metric.name,
            scope: &scope.name,
        };
        let monotonic = kind.is_monotonic();
        match &metric.data {
            Some(Data::Gauge(g)) => {
                for p in &g.data_points {
                    self.number(&target, p, None, tally);
                }
            }
            Some(Data::Sum(s)) => {
                for p in &s.data_points {
                    self.number(&target, p, cumulative.then_some(monotonic), tally);
                }
            }
            Some(Data::Histogram(h)) => {
                for p in &h.data_points {
                    self.histogram(&target, p, cumulative, tally);
                }
            }
            Some(Data::ExponentialHistogram(e)) => {
                for p in &e.data_points {
                    self.exponential(&target, p, cumulative, tally);
                }
            }
            _ => {}
        }
    }

    /// A gauge point (`cumulative` is `None`) or a sum point (`Some(monotonic)` when cumulative).
    fn number(
        &self,
        target: &Target<'_>,
        p: &NumberDataPoint,
        cumulative: Option<bool>,
        tally: &mut Tally,
    ) {
        if p.flags & NO_RECORDED_VALUE != 0 {
            return tally.accept(1);
        }
        let value = match p.value {
            Some(number_data_point::Value::AsDouble(v)) => v,
            Some(number_data_point::Value::AsInt(i)) => i as f64,
            None => return tally.reject(1, &target.problem("a point has no value")),
        };
        let attrs = attribute_set(&p.attributes);
        if matches!(target.instrument.storage(), Storage::LastValue(_)) {
            return tally.merged(target.merge(&attrs, Point::Gauge(value)), target);
        }
        let Some(monotonic) = cumulative else {
            return tally.merged(target.merge(&attrs, Point::Sum(value)), target);
        };
        // A monotonic sum that restarted or went down starts again from zero; an up-down sum's
        // change is always the difference, so the merged total follows the source's.
        let change = |last: Option<&Last>, restarted: bool| match last {
            Some(Last::Sum(before)) if !monotonic || (!restarted && value >= *before) => {
                (Change::Sum(value - before), Last::Sum(value))
            }
            _ => (Change::Sum(value), Last::Sum(value)),
        };
        self.cumulative(target, &attrs, p.start_time_unix_nano, tally, change);
    }

    fn histogram(
        &self,
        target: &Target<'_>,
        p: &HistogramDataPoint,
        cumulative: bool,
        tally: &mut Tally,
    ) {
        if p.flags & NO_RECORDED_VALUE != 0 {
            return tally.accept(1);
        }
        let point = match histogram_point(p) {
            Ok(point) => point,
            Err(why) => return tally.reject(1, &target.problem(&why)),
        };
        let attrs = attribute_set(&p.attributes);
        let bounds = &p.explicit_bounds[..];
        if !cumulative {
            let merged = target.merge(&attrs, Point::Histogram(bounds, &point));
            return tally.merged(merged, target);
        }
        let change = |last: Option<&Last>, restarted: bool| {
            let delta = match last {
                Some(Last::Histogram(before)) if !restarted => histogram_change(before, &point),
                _ => None,
            };
            let delta = delta.unwrap_or_else(|| point.clone());
            (Change::Histogram(bounds, delta), Last::Histogram(point.clone()))
        };
        self.cumulative(target, &attrs, p.start_time_unix_nano, tally, change);
    }

    fn exponential(
        &self,
        target: &Target<'_>,
        p: &ExponentialHistogramDataPoint,
        cumulative: bool,
        tally: &mut Tally,
    ) {
        if p.flags & NO_RECORDED_VALUE != 0 {
            return tally.accept(1);
        }
        let point = match exponential_point(p) {
            Ok(point) => point,
            Err(why) => return tally.reject(1, &target.problem(why)),
        };
        let attrs = attribute_set(&p.attributes);
        if !cumulative {
            return tally.merged(target.merge(&attrs, Point::Exponential(&point)), target);
        }
        let change = |last: Option<&Last>, restarted: bool| {
            let delta = match last {
                Some(Last::Exponential(before)) if !restarted => exponential_change(before, &point),
                _ => None,
            };
            let delta = delta.unwrap_or_else(|| point.clone());
            (Change::Exponential(delta), Last::Exponential(point.clone()))
        };
        self.cumulative(target, &attrs, p.start_time_unix_nano, tally, change);
    }

    /// Merges the change `change` derives from the series' previous cumulative point (and
    /// whether its start time moved, i.e. the source restarted), then remembers the new one.
    fn cumulative<'b>(
        &self,
        target: &Target<'_>,
        attrs: &AttributeSet,
        start: u64,
        tally: &mut Tally,
        change: impl FnOnce(Option<&Last>, bool) -> (Change<'b>, Last),
    ) {
        let id: SeriesId = (
            std::ptr::from_ref(target.registry) as usize,
            target.scope.clone(),
            target.name.to_owned(),
            attrs.clone(),
        );
        let mut state = self.cumulative.lock().unwrap_or_else(PoisonError::into_inner);
        let previous = state.get(&id);
        if previous.is_none() && state.len() >= MAX_CUMULATIVE_SERIES {
            let why = format!("{MAX_CUMULATIVE_SERIES} cumulative series are already tracked");
            return tally.reject(1, &target.problem(&why));
        }
        let restarted = previous.is_some_and(|(s, _)| *s != start);
        let (delta, last) = change(previous.map(|(_, l)| l), restarted);
        let merged = target.merge(attrs, delta.point());
        if merged.is_ok() {
            state.insert(id, (start, last));
        }
        tally.merged(merged, target);
    }
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
    fn merge(&self, attrs: &AttributeSet, point: Point<'_>) -> Result<(), MergeError> {
        let pairs: Vec<(&str, ValueRef<'_>)> = attrs.iter().collect();
        let pairs: &AttrsRef<'_> = &pairs;
        self.instrument.merge(pairs, point)
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
fn check_bounds(bounds: &[f64]) -> Result<(), String> {
    if bounds.iter().any(|b| !b.is_finite()) {
        return Err("histogram bounds must be finite".into());
    }
    if bounds.windows(2).any(|w| w[0] >= w[1]) {
        return Err("histogram bounds must increase strictly".into());
    }
    Ok(())
}

/// A checked explicit-bucket histogram point.
fn histogram_point(p: &HistogramDataPoint) -> Result<HistogramPoint, String> {
    check_bounds(&p.explicit_bounds)?;
    if p.bucket_counts.len() != p.explicit_bounds.len() + 1 {
        return Err("a histogram point needs one more bucket count than bounds".into());
    }
    if p.bucket_counts.iter().try_fold(0u64, |a, n| a.checked_add(*n)) != Some(p.count) {
        return Err("a histogram point's bucket counts do not add up to its count".into());
    }
    if p.sum.is_some_and(|s| !s.is_finite()) {
        return Err("a histogram point's sum is not finite".into());
    }
    Ok(HistogramPoint {
        count: p.count,
        sum: p.sum.unwrap_or(0.0),
        min: p.min.unwrap_or(f64::INFINITY),
        max: p.max.unwrap_or(f64::NEG_INFINITY),
        bucket_counts: p.bucket_counts.clone(),
    })
}

/// What a cumulative histogram recorded since `before`; `None` when it went backwards (a restart).
///
/// The extremes stay the cumulative point's: merged with `min`/`max`, they are exact.
fn histogram_change(before: &HistogramPoint, now: &HistogramPoint) -> Option<HistogramPoint> {
    if before.bucket_counts.len() != now.bucket_counts.len() || now.count < before.count {
        return None;
    }
    let mut delta = now.clone();
    delta.count -= before.count;
    delta.sum -= before.sum;
    for (b, was) in delta.bucket_counts.iter_mut().zip(&before.bucket_counts) {
        *b = b.checked_sub(*was)?;
    }
    Some(delta)
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
        return Err("an exponential histogram point's buckets and zero count do not add up to its count");
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

/// What a cumulative exponential histogram recorded since `before`, at the coarser of the two
/// scales; `None` when it went backwards (a restart).
fn exponential_change(before: &ExponentialPoint, now: &ExponentialPoint) -> Option<ExponentialPoint> {
    if now.count < before.count || now.zero_count < before.zero_count {
        return None;
    }
    let scale = before.scale.min(now.scale);
    let (by_before, by_now) = (before.scale - scale, now.scale - scale);
    let (mut before, mut delta) = (before.clone(), now.clone());
    for (p, by) in [(&mut before, by_before), (&mut delta, by_now)] {
        let by = u32::try_from(by).unwrap_or(0);
        p.positive.downscale(by);
        p.negative.downscale(by);
        p.scale = scale;
    }
    let covers = |now: &Buckets, was: &Buckets| {
        was.counts.iter().enumerate().all(|(i, n)| {
            *n == 0 || {
                let at = i64::from(was.offset) + i as i64 - i64::from(now.offset);
                usize::try_from(at)
                    .ok()
                    .and_then(|at| now.counts.get(at))
                    .is_some_and(|m| m >= n)
            }
        })
    };
    if !covers(&delta.positive, &before.positive) || !covers(&delta.negative, &before.negative) {
        return None;
    }
    delta.positive.subtract(&before.positive);
    delta.negative.subtract(&before.negative);
    delta.count -= before.count;
    delta.zero_count -= before.zero_count;
    delta.sum -= before.sum;
    Some(delta)
}
