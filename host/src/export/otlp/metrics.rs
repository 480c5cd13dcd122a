//! Encodes the aggregation engine's state as an OTLP `ExportMetricsServiceRequest`.

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram,
    HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
    exponential_histogram_data_point, metric::Data, number_data_point::Value,
};

use super::{key_values, resource};
use crate::clock::unix_nanos;
use crate::metrics::aggregation::{Buckets as ExpBuckets, LastValue};
use crate::metrics::temporality::{Reading, known_extreme};
use crate::metrics::{DeltaTracker, Instrument, Registry, Storage};
use crate::resource::Resource;

/// Collects every instrument with data into one request, grouped by scope: cumulative, or with a
/// tracker in the temporality its preference gives each instrument (deltas leave out quiet series).
pub fn encode(
    registry: &Registry,
    res: &Resource,
    mut delta: Option<&mut DeltaTracker>,
) -> ExportMetricsServiceRequest {
    registry.observe();
    let now = unix_nanos();
    let mut scopes: Vec<ScopeMetrics> = Vec::new();
    for instrument in registry.instruments() {
        let Some(metric) = metric(&instrument, now, delta.as_deref_mut()) else {
            continue;
        };
        let scope = instrument.descriptor().scope;
        match scopes
            .iter_mut()
            .find(|s| s.scope.as_ref().is_some_and(|sc| sc.name == scope))
        {
            Some(s) => s.metrics.push(metric),
            None => scopes.push(ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: scope.to_owned(),
                    version: env!("CARGO_PKG_VERSION").to_owned(),
                    ..Default::default()
                }),
                metrics: vec![metric],
                schema_url: String::new(),
            }),
        }
    }
    if let Some(d) = delta {
        d.finish(now);
    }
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(resource(res)),
            scope_metrics: scopes,
            schema_url: String::new(),
        }],
    }
}

fn metric(instrument: &Instrument, now: u64, delta: Option<&mut DeltaTracker>) -> Option<Metric> {
    let d = instrument.descriptor();
    let mut reading = Reading::new(delta, d.kind);
    let temporality = if reading.is_delta() {
        AggregationTemporality::Delta
    } else {
        AggregationTemporality::Cumulative
    } as i32;
    let data = match instrument.storage() {
        Storage::Sum(table) => {
            let mut points = Vec::with_capacity(table.len());
            table.for_each(|s| {
                if let Some(v) = reading.sum(&d.name, &s.attributes, s.aggregator.value()) {
                    let start = reading.start(s.start_unix_nano);
                    points.push(number(&s.attributes, start, now, v));
                }
            });
            (!points.is_empty()).then_some(Data::Sum(Sum {
                data_points: points,
                aggregation_temporality: temporality,
                is_monotonic: d.kind.is_monotonic(),
            }))
        }
        Storage::LastValue(table) => {
            let mut points = Vec::with_capacity(table.len());
            table.for_each(|s| {
                points.push(number(
                    &s.attributes,
                    s.start_unix_nano,
                    now,
                    LastValue::value(&s.aggregator),
                ));
            });
            (!points.is_empty()).then_some(Data::Gauge(Gauge {
                data_points: points,
            }))
        }
        Storage::Histogram(bounds, table) => {
            let mut points = Vec::with_capacity(table.len());
            table.for_each(|s| {
                let Some(p) = reading.histogram(&d.name, &s.attributes, s.aggregator.snapshot())
                else {
                    return;
                };
                points.push(HistogramDataPoint {
                    attributes: key_values(&s.attributes),
                    start_time_unix_nano: reading.start(s.start_unix_nano),
                    time_unix_nano: now,
                    count: p.count,
                    sum: Some(p.sum),
                    bucket_counts: p.bucket_counts,
                    explicit_bounds: bounds.to_vec(),
                    min: known_extreme(p.count, p.min),
                    max: known_extreme(p.count, p.max),
                    ..Default::default()
                });
            });
            (!points.is_empty()).then_some(Data::Histogram(Histogram {
                data_points: points,
                aggregation_temporality: temporality,
            }))
        }
        Storage::ExponentialHistogram(table) => {
            let mut points = Vec::with_capacity(table.len());
            table.for_each(|s| {
                let Some(p) = reading.exponential(&d.name, &s.attributes, s.aggregator.snapshot())
                else {
                    return;
                };
                let buckets = |b: ExpBuckets| {
                    Some(exponential_histogram_data_point::Buckets {
                        offset: b.offset,
                        bucket_counts: b.counts,
                    })
                };
                points.push(ExponentialHistogramDataPoint {
                    attributes: key_values(&s.attributes),
                    start_time_unix_nano: reading.start(s.start_unix_nano),
                    time_unix_nano: now,
                    count: p.count,
                    sum: Some(p.sum),
                    scale: p.scale,
                    zero_count: p.zero_count,
                    positive: buckets(p.positive),
                    negative: buckets(p.negative),
                    min: known_extreme(p.count, p.min),
                    max: known_extreme(p.count, p.max),
                    zero_threshold: 0.0,
                    ..Default::default()
                });
            });
            (!points.is_empty()).then_some(Data::ExponentialHistogram(ExponentialHistogram {
                data_points: points,
                aggregation_temporality: temporality,
            }))
        }
    }?;
    Some(Metric {
        name: d.name.clone(),
        description: d.description.clone(),
        unit: d.unit.clone(),
        metadata: Vec::new(),
        data: Some(data),
    })
}

fn number(
    attrs: &crate::metrics::attributes::AttributeSet,
    start: u64,
    now: u64,
    v: f64,
) -> NumberDataPoint {
    NumberDataPoint {
        attributes: key_values(attrs),
        start_time_unix_nano: start,
        time_unix_nano: now,
        value: Some(Value::AsDouble(v)),
        ..Default::default()
    }
}
