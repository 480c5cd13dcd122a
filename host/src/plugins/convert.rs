//! Host data in the contract's types: the engine's state as a metric batch, in the temporality an exporter asked for.

use super::bindings::types::{
    Buckets as WitBuckets, Exemplar as WitExemplar, ExponentialHistogram,
    ExponentialHistogramPoint, Histogram, HistogramPoint, KeyValue, Metric, MetricBatch,
    MetricData, NumberPoint, Resource, Scope, ScopeMetrics, Sum, Temporality, Value,
};
use crate::metrics::exemplar::Exemplar;
use crate::metrics::reader::{PointValue, Reader, Shape, known_extreme};
use crate::metrics::{DeltaTracker, Instrument, Registry};
use crate::model::attributes::{AttributeSet, ValueRef};
use crate::model::metric::Temporality as HostTemporality;
use crate::model::resource::Resource as HostResource;

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

/// An exemplar in the contract's type (the host keeps no filtered attributes).
fn exemplar(e: &Exemplar) -> WitExemplar {
    WitExemplar {
        filtered_attributes: Vec::new(),
        time_unix_nano: e.time_unix_nano,
        value: e.value,
        trace_id: e.trace.map(|t| t.trace_id.to_vec()).unwrap_or_default(),
        span_id: e.trace.map(|t| t.span_id.to_vec()).unwrap_or_default(),
    }
}

/// The engine's state as a metric batch, in cumulative temporality or, with a tracker, in the
/// temporality its preference gives each instrument (deltas leave out series that did not change).
pub fn metric_batch(
    registry: &Registry,
    res: &HostResource,
    delta: Option<&mut DeltaTracker>,
) -> MetricBatch {
    let scopes = Reader::scopes(registry);
    let mut reader = Reader::new(delta);
    let mut out: Vec<ScopeMetrics> = Vec::new();
    for (scope, members) in &scopes {
        let metrics: Vec<Metric> = members
            .iter()
            .filter_map(|i| metric(i, &mut reader))
            .collect();
        if metrics.is_empty() {
            continue;
        }
        let same =
            |s: &ScopeMetrics| *s.scope.name == *scope.name && *s.scope.version == *scope.version;
        match out.iter_mut().find(|s| same(s)) {
            Some(s) => s.metrics.extend(metrics),
            None => out.push(ScopeMetrics {
                scope: Scope {
                    name: scope.name.to_string(),
                    version: scope.version.to_string(),
                    attributes: key_values(&scope.attributes),
                },
                metrics,
            }),
        }
    }
    reader.finish();
    MetricBatch {
        resource: resource(res),
        scopes: out,
    }
}

/// One instrument's points as a contract metric; `None` when it has none to export.
fn metric(instrument: &Instrument, reader: &mut Reader<'_>) -> Option<Metric> {
    let d = instrument.descriptor();
    let temporality = match reader.temporality(instrument) {
        HostTemporality::Delta => Temporality::Delta,
        HostTemporality::Cumulative => Temporality::Cumulative,
    };
    let (mut numbers, mut histograms, mut exponentials) = (Vec::new(), Vec::new(), Vec::new());
    let points = reader.read(instrument, |p| {
        let attributes = key_values(p.attributes);
        let exemplars: Vec<WitExemplar> = p
            .exemplars()
            .into_iter()
            .map(|(_, e)| exemplar(&e))
            .collect();
        let (start_time_unix_nano, time_unix_nano) = (p.start, p.time);
        match p.value {
            PointValue::Number(value) => numbers.push(NumberPoint {
                attributes,
                start_time_unix_nano,
                time_unix_nano,
                value,
                exemplars,
            }),
            PointValue::Histogram(h, bounds) => histograms.push(HistogramPoint {
                attributes,
                start_time_unix_nano,
                time_unix_nano,
                count: h.count,
                sum: Some(h.sum),
                min: known_extreme(h.count, h.min),
                max: known_extreme(h.count, h.max),
                bounds: bounds.to_vec(),
                bucket_counts: h.bucket_counts,
                exemplars,
            }),
            PointValue::Exponential(e) => exponentials.push(ExponentialHistogramPoint {
                attributes,
                start_time_unix_nano,
                time_unix_nano,
                count: e.count,
                sum: Some(e.sum),
                min: known_extreme(e.count, e.min),
                max: known_extreme(e.count, e.max),
                scale: e.scale,
                zero_count: e.zero_count,
                zero_threshold: 0.0,
                positive: WitBuckets {
                    offset: e.positive.offset,
                    counts: e.positive.counts,
                },
                negative: WitBuckets {
                    offset: e.negative.offset,
                    counts: e.negative.counts,
                },
                exemplars,
            }),
        }
    });
    if points == 0 {
        return None;
    }
    let data = match Shape::of(instrument) {
        Shape::Sum { monotonic } => MetricData::Sum(Sum {
            points: numbers,
            temporality,
            monotonic,
        }),
        Shape::Gauge => MetricData::Gauge(numbers),
        Shape::Histogram => MetricData::Histogram(Histogram {
            points: histograms,
            temporality,
        }),
        Shape::ExponentialHistogram => MetricData::ExponentialHistogram(ExponentialHistogram {
            points: exponentials,
            temporality,
        }),
    };
    Some(Metric {
        name: d.name.clone(),
        description: d.description.clone(),
        unit: d.unit.clone(),
        data,
    })
}

/// OTLP protobuf ⇄ contract types, so that transforms can rewrite what the OTLP exporter sends.
pub mod otlp {
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{
        AnyValue, ArrayValue, InstrumentationScope, KeyValue as ProtoKeyValue, KeyValueList,
        any_value,
    };
    use opentelemetry_proto::tonic::logs::v1::LogRecord as ProtoLogRecord;
    use opentelemetry_proto::tonic::metrics::v1 as pm;
    use opentelemetry_proto::tonic::resource::v1::Resource as ProtoResource;

    use crate::model::log::Origin;
    use crate::plugins::bindings::types::{
        KeyValue, LogBatch, LogRecord, MetricBatch, MetricData, NumberPoint, Resource, Scope,
        ScopeLogs, Temporality, Value,
    };

    fn json(v: &AnyValue) -> serde_json::Value {
        match &v.value {
            Some(any_value::Value::StringValue(s)) => s.clone().into(),
            Some(any_value::Value::BoolValue(b)) => (*b).into(),
            Some(any_value::Value::IntValue(i)) => (*i).into(),
            Some(any_value::Value::DoubleValue(d)) => (*d).into(),
            Some(any_value::Value::ArrayValue(a)) => a.values.iter().map(json).collect(),
            Some(any_value::Value::KvlistValue(l)) => l
                .values
                .iter()
                .map(|kv| {
                    (
                        kv.key.clone(),
                        kv.value.as_ref().map_or(serde_json::Value::Null, json),
                    )
                })
                .collect::<serde_json::Map<_, _>>()
                .into(),
            Some(any_value::Value::BytesValue(b)) => const_hex::encode(b).into(),
            _ => serde_json::Value::Null,
        }
    }

    fn from_json(v: &serde_json::Value) -> AnyValue {
        let value = match v {
            serde_json::Value::Null => None,
            serde_json::Value::Bool(b) => Some(any_value::Value::BoolValue(*b)),
            serde_json::Value::Number(n) => Some(n.as_i64().map_or_else(
                || any_value::Value::DoubleValue(n.as_f64().unwrap_or(f64::NAN)),
                any_value::Value::IntValue,
            )),
            serde_json::Value::String(s) => Some(any_value::Value::StringValue(s.clone())),
            serde_json::Value::Array(items) => Some(any_value::Value::ArrayValue(ArrayValue {
                values: items.iter().map(from_json).collect(),
            })),
            serde_json::Value::Object(map) => Some(any_value::Value::KvlistValue(KeyValueList {
                values: map
                    .iter()
                    .map(|(k, v)| ProtoKeyValue {
                        key: k.clone(),
                        value: Some(from_json(v)),
                        ..Default::default()
                    })
                    .collect(),
            })),
        };
        AnyValue { value }
    }

    /// An OTLP value as a contract value (arrays and maps as JSON text).
    pub fn value(v: &AnyValue) -> Value {
        match &v.value {
            Some(any_value::Value::StringValue(s)) => Value::String(s.clone()),
            Some(any_value::Value::BoolValue(b)) => Value::Boolean(*b),
            Some(any_value::Value::IntValue(i)) => Value::Int(*i),
            Some(any_value::Value::DoubleValue(d)) => Value::Double(*d),
            Some(any_value::Value::BytesValue(b)) => Value::Bytes(b.clone()),
            _ => Value::Json(json(v).to_string()),
        }
    }

    /// A contract value as an OTLP value (JSON text back into arrays and maps).
    pub fn any_value(v: &Value) -> AnyValue {
        let value = match v {
            Value::String(s) => any_value::Value::StringValue(s.clone()),
            Value::Boolean(b) => any_value::Value::BoolValue(*b),
            Value::Int(i) => any_value::Value::IntValue(*i),
            Value::Double(d) => any_value::Value::DoubleValue(*d),
            Value::Bytes(b) => any_value::Value::BytesValue(b.clone()),
            Value::Json(text) => {
                return serde_json::from_str(text).map_or_else(
                    |_| AnyValue {
                        value: Some(any_value::Value::StringValue(text.clone())),
                    },
                    |j| from_json(&j),
                );
            }
        };
        AnyValue { value: Some(value) }
    }

    fn attributes(kvs: &[ProtoKeyValue]) -> Vec<KeyValue> {
        kvs.iter()
            .map(|kv| KeyValue {
                key: kv.key.clone(),
                value: kv.value.as_ref().map_or(Value::Json("null".into()), value),
            })
            .collect()
    }

    fn proto_attributes(kvs: &[KeyValue]) -> Vec<ProtoKeyValue> {
        kvs.iter()
            .map(|kv| ProtoKeyValue {
                key: kv.key.clone(),
                value: Some(any_value(&kv.value)),
                ..Default::default()
            })
            .collect()
    }

    /// OTLP log records of one origin as a contract log batch.
    pub fn log_batch(records: &[ProtoLogRecord], origin: &Origin) -> LogBatch {
        let records = records
            .iter()
            .map(|r| LogRecord {
                time_unix_nano: r.time_unix_nano,
                observed_time_unix_nano: r.observed_time_unix_nano,
                severity_number: u8::try_from(r.severity_number).unwrap_or(0),
                severity_text: r.severity_text.clone(),
                body: r.body.as_ref().map(value),
                attributes: attributes(&r.attributes),
                trace_id: r.trace_id.clone(),
                span_id: r.span_id.clone(),
                event_name: r.event_name.clone(),
            })
            .collect();
        let (resource, scope) = (origin.resource(), origin.scope());
        LogBatch {
            resource: Resource {
                attributes: attributes(&resource.attributes),
                schema_url: String::new(),
            },
            scopes: vec![ScopeLogs {
                scope: Scope {
                    name: scope.name,
                    version: scope.version,
                    attributes: attributes(&scope.attributes),
                },
                records,
            }],
        }
    }

    /// A contract log batch's records as OTLP log records.
    pub fn log_records(batch: &LogBatch) -> Vec<ProtoLogRecord> {
        batch
            .scopes
            .iter()
            .flat_map(|s| &s.records)
            .map(|r| ProtoLogRecord {
                time_unix_nano: r.time_unix_nano,
                observed_time_unix_nano: r.observed_time_unix_nano,
                severity_number: i32::from(r.severity_number),
                severity_text: r.severity_text.clone(),
                body: r.body.as_ref().map(any_value),
                attributes: proto_attributes(&r.attributes),
                trace_id: r.trace_id.clone(),
                span_id: r.span_id.clone(),
                event_name: r.event_name.clone(),
                ..Default::default()
            })
            .collect()
    }

    fn temporality(t: Temporality) -> i32 {
        match t {
            Temporality::Cumulative => pm::AggregationTemporality::Cumulative as i32,
            Temporality::Delta => pm::AggregationTemporality::Delta as i32,
        }
    }

    fn number_points(points: &[NumberPoint]) -> Vec<pm::NumberDataPoint> {
        points
            .iter()
            .map(|p| pm::NumberDataPoint {
                attributes: proto_attributes(&p.attributes),
                start_time_unix_nano: p.start_time_unix_nano,
                time_unix_nano: p.time_unix_nano,
                value: Some(pm::number_data_point::Value::AsDouble(p.value)),
                exemplars: exemplars(&p.exemplars),
                ..Default::default()
            })
            .collect()
    }

    /// Contract exemplars as OTLP ones.
    fn exemplars(exemplars: &[crate::plugins::bindings::types::Exemplar]) -> Vec<pm::Exemplar> {
        exemplars
            .iter()
            .map(|e| pm::Exemplar {
                filtered_attributes: proto_attributes(&e.filtered_attributes),
                time_unix_nano: e.time_unix_nano,
                span_id: e.span_id.clone(),
                trace_id: e.trace_id.clone(),
                value: Some(pm::exemplar::Value::AsDouble(e.value)),
            })
            .collect()
    }

    /// A contract metric batch as an OTLP export request.
    pub fn metric_request(batch: &MetricBatch) -> ExportMetricsServiceRequest {
        let scopes = batch
            .scopes
            .iter()
            .map(|s| pm::ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: s.scope.name.clone(),
                    version: s.scope.version.clone(),
                    attributes: proto_attributes(&s.scope.attributes),
                    ..Default::default()
                }),
                metrics: s.metrics.iter().map(metric).collect(),
                schema_url: String::new(),
            })
            .collect();
        ExportMetricsServiceRequest {
            resource_metrics: vec![pm::ResourceMetrics {
                resource: Some(ProtoResource {
                    attributes: proto_attributes(&batch.resource.attributes),
                    ..Default::default()
                }),
                scope_metrics: scopes,
                schema_url: batch.resource.schema_url.clone(),
            }],
        }
    }

    fn metric(m: &crate::plugins::bindings::types::Metric) -> pm::Metric {
        let data = match &m.data {
            MetricData::Gauge(points) => pm::metric::Data::Gauge(pm::Gauge {
                data_points: number_points(points),
            }),
            MetricData::Sum(s) => pm::metric::Data::Sum(pm::Sum {
                data_points: number_points(&s.points),
                aggregation_temporality: temporality(s.temporality),
                is_monotonic: s.monotonic,
            }),
            MetricData::Histogram(h) => pm::metric::Data::Histogram(pm::Histogram {
                data_points: h
                    .points
                    .iter()
                    .map(|p| pm::HistogramDataPoint {
                        attributes: proto_attributes(&p.attributes),
                        start_time_unix_nano: p.start_time_unix_nano,
                        time_unix_nano: p.time_unix_nano,
                        count: p.count,
                        sum: p.sum,
                        bucket_counts: p.bucket_counts.clone(),
                        explicit_bounds: p.bounds.clone(),
                        min: p.min,
                        max: p.max,
                        exemplars: exemplars(&p.exemplars),
                        ..Default::default()
                    })
                    .collect(),
                aggregation_temporality: temporality(h.temporality),
            }),
            MetricData::ExponentialHistogram(h) => {
                let buckets = |b: &crate::plugins::bindings::types::Buckets| {
                    Some(pm::exponential_histogram_data_point::Buckets {
                        offset: b.offset,
                        bucket_counts: b.counts.clone(),
                    })
                };
                pm::metric::Data::ExponentialHistogram(pm::ExponentialHistogram {
                    data_points: h
                        .points
                        .iter()
                        .map(|p| pm::ExponentialHistogramDataPoint {
                            attributes: proto_attributes(&p.attributes),
                            start_time_unix_nano: p.start_time_unix_nano,
                            time_unix_nano: p.time_unix_nano,
                            count: p.count,
                            sum: p.sum,
                            scale: p.scale,
                            zero_count: p.zero_count,
                            positive: buckets(&p.positive),
                            negative: buckets(&p.negative),
                            exemplars: exemplars(&p.exemplars),
                            min: p.min,
                            max: p.max,
                            zero_threshold: p.zero_threshold,
                            ..Default::default()
                        })
                        .collect(),
                    aggregation_temporality: temporality(h.temporality),
                })
            }
        };
        pm::Metric {
            name: m.name.clone(),
            description: m.description.clone(),
            unit: m.unit.clone(),
            metadata: Vec::new(),
            data: Some(data),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HistogramAggregation;
    use crate::metrics::Descriptor;
    use crate::model::metric::InstrumentKind;

    fn exponential_points(batch: &MetricBatch) -> Vec<ExponentialHistogramPoint> {
        batch
            .scopes
            .iter()
            .flat_map(|s| &s.metrics)
            .filter_map(|m| match &m.data {
                MetricData::ExponentialHistogram(h) => Some(h.points.clone()),
                _ => None,
            })
            .flatten()
            .collect()
    }

    #[test]
    fn exponential_deltas_survive_a_scale_change() {
        let registry = Registry::new(10)
            .with_histogram_aggregation(HistogramAggregation::Base2ExponentialBucketHistogram);
        let latency = registry
            .instrument(
                Descriptor {
                    name: "latency".into(),
                    unit: "s".into(),
                    description: String::new(),
                    kind: InstrumentKind::Histogram,
                    scope: "test".into(),
                },
                &[],
            )
            .expect("instrument");
        let resource = crate::sources::resource::detect(&Default::default());
        let mut delta = DeltaTracker::new(crate::config::TemporalityPreference::Delta);
        for v in [1.0, 2.0, -2.0, 0.0] {
            latency.record(&[], v);
        }
        let first = exponential_points(&metric_batch(&registry, &resource, Some(&mut delta)));
        assert_eq!((first[0].count, first[0].zero_count), (4, 1));
        assert_eq!((first[0].min, first[0].max), (Some(-2.0), Some(2.0)));

        // 1000 forces a coarser scale; the delta holds only what came since.
        latency.record(&[], 1000.0);
        latency.record(&[], 1.5);
        let second = exponential_points(&metric_batch(&registry, &resource, Some(&mut delta)));
        let p = &second[0];
        assert!(p.scale < first[0].scale);
        assert_eq!((p.count, p.zero_count, p.sum), (2, 0, Some(1001.5)));
        assert_eq!(p.positive.counts.iter().sum::<u64>(), 2);
        assert_eq!(p.negative.counts.iter().sum::<u64>(), 0);
        assert_eq!(
            (p.min, p.max),
            (None, None),
            "an interval's extremes are unknown"
        );

        let third = exponential_points(&metric_batch(&registry, &resource, Some(&mut delta)));
        assert!(
            third.is_empty(),
            "a quiet series is left out of a delta batch"
        );
    }
}
