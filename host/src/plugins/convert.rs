//! Host data in the contract's types: the engine's state as a metric batch, in the temporality an exporter asked for.

use std::collections::HashMap;

use super::bindings::types::{
    Histogram, HistogramPoint, KeyValue, Metric, MetricBatch, MetricData, NumberPoint, Resource,
    Scope, ScopeMetrics, Sum, Temporality, Value,
};
use crate::clock::unix_nanos;
use crate::metrics::attributes::{AttributeSet, ValueRef};
use crate::metrics::series::Series;
use crate::metrics::{Instrument, InstrumentKind, Registry, Storage};
use crate::resource::Resource as HostResource;

/// An attribute value in the contract's type.
pub fn value(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Str(s) => Value::String(s.to_owned()),
        ValueRef::Bool(b) => Value::Boolean(b),
        ValueRef::Int(i) => Value::Int(i),
        ValueRef::Double(d) => Value::Double(d),
    }
}

/// An attribute set in the contract's type.
pub fn key_values(set: &AttributeSet) -> Vec<KeyValue> {
    set.iter()
        .map(|(k, v)| KeyValue {
            key: k.to_owned(),
            value: value(v),
        })
        .collect()
}

/// The host resource in the contract's type.
pub fn resource(r: &HostResource) -> Resource {
    Resource {
        attributes: key_values(r.attributes()),
        schema_url: String::new(),
    }
}

/// What a delta exporter was last sent for one series.
#[derive(Debug, Clone)]
enum Last {
    Sum(f64),
    Histogram {
        count: u64,
        sum: f64,
        buckets: Vec<u64>,
    },
}

/// The state that turns the engine's cumulative series into deltas for one exporter.
#[derive(Debug, Default)]
pub struct DeltaTracker {
    last: HashMap<(String, u64), Vec<(AttributeSet, Last)>>,
    previous_collection: Option<u64>,
}

impl DeltaTracker {
    fn swap(&mut self, metric: &str, attrs: &AttributeSet, now: Last) -> Option<Last> {
        let slot = self
            .last
            .entry((metric.to_owned(), attrs.hash()))
            .or_default();
        match slot.iter_mut().find(|(a, _)| a == attrs) {
            Some((_, last)) => Some(std::mem::replace(last, now)),
            None => {
                slot.push((attrs.clone(), now));
                None
            }
        }
    }
}

/// Everything in the registry as one batch, cumulative or (with a tracker) delta since the last call.
pub fn metric_batch(
    registry: &Registry,
    res: &HostResource,
    mut delta: Option<&mut DeltaTracker>,
) -> MetricBatch {
    let now = unix_nanos();
    let interval_start = delta.as_ref().and_then(|d| d.previous_collection);
    let mut scopes: Vec<ScopeMetrics> = Vec::new();
    for instrument in registry.instruments() {
        let Some(metric) = metric(&instrument, now, interval_start, delta.as_deref_mut()) else {
            continue;
        };
        let scope = instrument.descriptor().scope;
        match scopes.iter_mut().find(|s| s.scope.name == scope) {
            Some(s) => s.metrics.push(metric),
            None => scopes.push(ScopeMetrics {
                scope: Scope {
                    name: scope.to_owned(),
                    version: env!("CARGO_PKG_VERSION").to_owned(),
                    attributes: Vec::new(),
                },
                metrics: vec![metric],
            }),
        }
    }
    if let Some(d) = delta {
        d.previous_collection = Some(now);
    }
    MetricBatch {
        resource: resource(res),
        scopes,
    }
}

fn metric(
    instrument: &Instrument,
    now: u64,
    interval_start: Option<u64>,
    mut delta: Option<&mut DeltaTracker>,
) -> Option<Metric> {
    let d = instrument.descriptor();
    let temporality = if delta.is_some() {
        Temporality::Delta
    } else {
        Temporality::Cumulative
    };
    let start = |s_start: u64| interval_start.unwrap_or(s_start).max(s_start);
    let data = match instrument.storage() {
        Storage::Sum(table) => {
            let mut points = Vec::with_capacity(table.len());
            table.for_each(|s| {
                let total = s.aggregator.value();
                let value = match delta.as_deref_mut() {
                    Some(t) => match t.swap(&d.name, &s.attributes, Last::Sum(total)) {
                        Some(Last::Sum(before)) => total - before,
                        _ => total,
                    },
                    None => total,
                };
                points.push(number(s, start(s.start_unix_nano), now, value));
            });
            MetricData::Sum(Sum {
                points,
                temporality,
                monotonic: d.kind == InstrumentKind::Counter,
            })
        }
        Storage::LastValue(table) => {
            let mut points = Vec::with_capacity(table.len());
            table
                .for_each(|s| points.push(number(s, s.start_unix_nano, now, s.aggregator.value())));
            MetricData::Gauge(points)
        }
        Storage::Histogram(bounds, table) => {
            let mut points = Vec::with_capacity(table.len());
            table.for_each(|s| {
                let p = s.aggregator.snapshot();
                let mut point = HistogramPoint {
                    attributes: key_values(&s.attributes),
                    start_time_unix_nano: start(s.start_unix_nano),
                    time_unix_nano: now,
                    count: p.count,
                    sum: Some(p.sum),
                    min: (p.count > 0).then_some(p.min),
                    max: (p.count > 0).then_some(p.max),
                    bounds: bounds.to_vec(),
                    bucket_counts: p.bucket_counts.clone(),
                    exemplars: Vec::new(),
                };
                if let Some(t) = delta.as_deref_mut() {
                    let now_state = Last::Histogram {
                        count: p.count,
                        sum: p.sum,
                        buckets: p.bucket_counts,
                    };
                    if let Some(Last::Histogram {
                        count,
                        sum,
                        buckets,
                    }) = t.swap(&d.name, &s.attributes, now_state)
                    {
                        point.count -= count.min(point.count);
                        point.sum = Some(p.sum - sum);
                        for (b, before) in point.bucket_counts.iter_mut().zip(buckets) {
                            *b -= before.min(*b);
                        }
                        // The extremes of one interval are not derivable from cumulative state.
                        point.min = None;
                        point.max = None;
                    }
                }
                points.push(point);
            });
            MetricData::Histogram(Histogram {
                points,
                temporality,
            })
        }
    };
    let empty = match &data {
        MetricData::Sum(s) => s.points.is_empty(),
        MetricData::Gauge(p) => p.is_empty(),
        MetricData::Histogram(h) => h.points.is_empty(),
        MetricData::ExponentialHistogram(h) => h.points.is_empty(),
    };
    (!empty).then(|| Metric {
        name: d.name.clone(),
        description: d.description.clone(),
        unit: d.unit.clone(),
        data,
    })
}

fn number<A>(s: &Series<A>, start: u64, now: u64, value: f64) -> NumberPoint {
    NumberPoint {
        attributes: key_values(&s.attributes),
        start_time_unix_nano: start,
        time_unix_nano: now,
        value,
        exemplars: Vec::new(),
    }
}
