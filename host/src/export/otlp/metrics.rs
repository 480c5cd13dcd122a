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
use crate::metrics::aggregation::{Buckets as ExpBuckets, LastValue, Sum as SumAggregator};
use crate::metrics::series::SeriesTable;
use crate::metrics::{Instrument, Registry, Storage};
use crate::resource::Resource;

/// Collects every instrument with data into one request, grouped by scope, cumulative temporality.
pub fn encode(registry: &Registry, res: &Resource) -> ExportMetricsServiceRequest {
    registry.observe();
    let now = unix_nanos();
    let mut scopes: Vec<ScopeMetrics> = Vec::new();
    for instrument in registry.instruments() {
        let Some(metric) = metric(&instrument, now) else {
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
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(resource(res)),
            scope_metrics: scopes,
            schema_url: String::new(),
        }],
    }
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

/// One number point per series of a Sum or LastValue table.
fn number_points<A>(
    table: &SeriesTable<A>,
    now: u64,
    value: impl Fn(&A) -> f64,
) -> Vec<NumberDataPoint> {
    let mut points = Vec::with_capacity(table.len());
    table.for_each(|s| {
        points.push(number(
            &s.attributes,
            s.start_unix_nano,
            now,
            value(&s.aggregator),
        ))
    });
    points
}

fn metric(instrument: &Instrument, now: u64) -> Option<Metric> {
    let d = instrument.descriptor();
    let cumulative = AggregationTemporality::Cumulative as i32;
    let data = match instrument.storage() {
        Storage::Sum(table) => {
            let points = number_points(table, now, SumAggregator::value);
            (!points.is_empty()).then_some(Data::Sum(Sum {
                data_points: points,
                aggregation_temporality: cumulative,
                is_monotonic: d.kind.is_monotonic(),
            }))
        }
        Storage::LastValue(table) => {
            let points = number_points(table, now, LastValue::value);
            (!points.is_empty()).then_some(Data::Gauge(Gauge {
                data_points: points,
            }))
        }
        Storage::Histogram(bounds, table) => {
            let mut points = Vec::with_capacity(table.len());
            table.for_each(|s| {
                let p = s.aggregator.snapshot();
                points.push(HistogramDataPoint {
                    attributes: key_values(&s.attributes),
                    start_time_unix_nano: s.start_unix_nano,
                    time_unix_nano: now,
                    count: p.count,
                    sum: Some(p.sum),
                    bucket_counts: p.bucket_counts,
                    explicit_bounds: bounds.to_vec(),
                    min: (p.count > 0).then_some(p.min),
                    max: (p.count > 0).then_some(p.max),
                    ..Default::default()
                });
            });
            (!points.is_empty()).then_some(Data::Histogram(Histogram {
                data_points: points,
                aggregation_temporality: cumulative,
            }))
        }
        Storage::ExponentialHistogram(table) => {
            let mut points = Vec::with_capacity(table.len());
            table.for_each(|s| {
                let p = s.aggregator.snapshot();
                let buckets = |b: ExpBuckets| {
                    Some(exponential_histogram_data_point::Buckets {
                        offset: b.offset,
                        bucket_counts: b.counts,
                    })
                };
                points.push(ExponentialHistogramDataPoint {
                    attributes: key_values(&s.attributes),
                    start_time_unix_nano: s.start_unix_nano,
                    time_unix_nano: now,
                    count: p.count,
                    sum: Some(p.sum),
                    scale: p.scale,
                    zero_count: p.zero_count,
                    positive: buckets(p.positive),
                    negative: buckets(p.negative),
                    min: (p.count > 0).then_some(p.min),
                    max: (p.count > 0).then_some(p.max),
                    zero_threshold: 0.0,
                    ..Default::default()
                });
            });
            (!points.is_empty()).then_some(Data::ExponentialHistogram(ExponentialHistogram {
                data_points: points,
                aggregation_temporality: cumulative,
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
