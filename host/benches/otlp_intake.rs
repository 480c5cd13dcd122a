//! OTLP intake: decode a 1,000-point `ExportMetricsServiceRequest` (cumulative counters and
//! histograms, 100 series each) and merge it into the registries.
//!
//! Peer, in the same run: decoding the same bytes with `prost` and recording every point into
//! the official `opentelemetry_sdk` instruments with its attributes — the re-aggregation a
//! receiver built on the SDK would do. Prints points/s for both and the ratio.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use opentelemetry::KeyValue as SdkKeyValue;
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum, metric::Data, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource as ProtoResource;
use opentelemetry_sdk::metrics::{ManualReader, SdkMeterProvider};
use prost::Message;
use wasmtel::intake::otlp::metrics::MetricsReceiver;
use wasmtel::metrics::{Registries, Registry};
use wasmtel::model::attributes::AttributeSet;
use wasmtel::model::resource::Resource;

const SERIES: usize = 100;
const COUNTERS: usize = 9;
const POINTS: usize = SERIES * (COUNTERS + 1);
const BOUNDS: [f64; 4] = [0.1, 0.5, 1.0, 5.0];

fn kv(key: &str, value: String) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value)),
        }),
        ..Default::default()
    }
}

fn attributes(series: usize) -> Vec<KeyValue> {
    vec![
        kv("http.route", format!("/r{}", series % 10)),
        kv(
            "http.response.status_code",
            format!("{}", 200 + series / 10),
        ),
    ]
}

/// The request an SDK sends at its `round`-th export: every total grows with the round.
fn request(round: u64) -> Vec<u8> {
    let cumulative = AggregationTemporality::Cumulative as i32;
    let mut metrics: Vec<Metric> = (0..COUNTERS)
        .map(|m| Metric {
            name: format!("app.counter.{m}"),
            data: Some(Data::Sum(Sum {
                data_points: (0..SERIES)
                    .map(|s| NumberDataPoint {
                        attributes: attributes(s),
                        start_time_unix_nano: 1,
                        value: Some(number_data_point::Value::AsInt(
                            (round * 3 + s as u64) as i64,
                        )),
                        ..Default::default()
                    })
                    .collect(),
                aggregation_temporality: cumulative,
                is_monotonic: true,
            })),
            ..Default::default()
        })
        .collect();
    metrics.push(Metric {
        name: "app.duration".into(),
        unit: "s".into(),
        data: Some(Data::Histogram(Histogram {
            data_points: (0..SERIES)
                .map(|s| HistogramDataPoint {
                    attributes: attributes(s),
                    start_time_unix_nano: 1,
                    count: 5 * round,
                    sum: Some(round as f64),
                    bucket_counts: vec![round; 5],
                    explicit_bounds: BOUNDS.to_vec(),
                    ..Default::default()
                })
                .collect(),
            aggregation_temporality: cumulative,
        })),
        ..Default::default()
    });
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(ProtoResource {
                attributes: vec![kv("service.name", "bench-app".into())],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics,
                ..Default::default()
            }],
            schema_url: String::new(),
        }],
    }
    .encode_to_vec()
}

fn receiver() -> MetricsReceiver {
    let own = Resource::from_attributes(AttributeSet::empty());
    MetricsReceiver::new(Arc::new(Registries::new(
        Arc::new(Registry::new(2000)),
        own,
    )))
}

/// What intake does with a request: walked against the default limits, decoded, merged.
fn wasmtel_once(receiver: &MetricsReceiver, body: &[u8]) -> usize {
    wasmtel::intake::otlp::limits::metrics(body, &wasmtel::config::RequestLimits::default())
        .expect("within the limits");
    let request = ExportMetricsServiceRequest::decode(body).expect("valid");
    receiver.receive(&request).accepted
}

/// The SDK side: one instrument per metric, fed every point with its attributes.
struct Sdk {
    _provider: SdkMeterProvider,
    counters: Vec<opentelemetry::metrics::Counter<f64>>,
    duration: opentelemetry::metrics::Histogram<f64>,
}

impl Sdk {
    fn new() -> Self {
        let provider = SdkMeterProvider::builder()
            .with_reader(ManualReader::builder().build())
            .build();
        let meter = provider.meter("bench");
        let counters = (0..COUNTERS)
            .map(|m| meter.f64_counter(format!("app.counter.{m}")).build())
            .collect();
        let duration = meter
            .f64_histogram("app.duration")
            .with_boundaries(BOUNDS.to_vec())
            .build();
        Self {
            _provider: provider,
            counters,
            duration,
        }
    }

    fn once(&self, body: &[u8]) -> usize {
        let request = ExportMetricsServiceRequest::decode(body).expect("valid");
        let mut n = 0;
        let sdk_attrs = |kvs: &[KeyValue]| -> Vec<SdkKeyValue> {
            kvs.iter()
                .map(|kv| {
                    let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                        Some(any_value::Value::StringValue(s)) => s.clone(),
                        _ => String::new(),
                    };
                    SdkKeyValue::new(kv.key.clone(), v)
                })
                .collect()
        };
        for metric in &request.resource_metrics[0].scope_metrics[0].metrics {
            match &metric.data {
                Some(Data::Sum(s)) => {
                    let i: usize = metric.name[12..].parse().expect("index");
                    for p in &s.data_points {
                        let v = match p.value {
                            Some(number_data_point::Value::AsInt(v)) => v as f64,
                            _ => 0.0,
                        };
                        self.counters[i].add(v, &sdk_attrs(&p.attributes));
                        n += 1;
                    }
                }
                Some(Data::Histogram(h)) => {
                    for p in &h.data_points {
                        self.duration
                            .record(p.sum.unwrap_or(0.0), &sdk_attrs(&p.attributes));
                        n += 1;
                    }
                }
                _ => {}
            }
        }
        n
    }
}

fn bench(c: &mut Criterion) {
    let bodies: Vec<Vec<u8>> = (1..=8).map(request).collect();
    let receiver = receiver();
    let sdk = Sdk::new();
    let round = std::cell::Cell::new(0usize);
    let next = || {
        round.set(round.get() + 1);
        &bodies[round.get() % bodies.len()]
    };
    let mut group = c.benchmark_group("otlp_intake_1000_points");
    group.throughput(Throughput::Elements(POINTS as u64));
    group.bench_function("wasmtel", |b| {
        b.iter(|| wasmtel_once(&receiver, black_box(next())))
    });
    group.bench_function("prost_decode_only", |b| {
        b.iter(|| ExportMetricsServiceRequest::decode(black_box(&bodies[0][..])).expect("valid"))
    });
    group.bench_function("prost+opentelemetry_sdk", |b| {
        b.iter(|| sdk.once(black_box(next())))
    });
    group.finish();

    // Alternate the two for several rounds on this noisy machine and keep each one's best.
    let rate = |f: &dyn Fn() -> usize| {
        let start = Instant::now();
        let mut points = 0usize;
        while start.elapsed() < Duration::from_millis(500) {
            points += f();
        }
        points as f64 / start.elapsed().as_secs_f64()
    };
    let (mut ours, mut peer) = (0.0f64, 0.0f64);
    for _ in 0..6 {
        ours = ours.max(rate(&|| wasmtel_once(&receiver, black_box(next()))));
        peer = peer.max(rate(&|| sdk.once(black_box(next()))));
    }
    println!(
        "\ndecode + merge, one core, best of 6 rounds: wasmtel {:.2} M points/s, \
         prost + opentelemetry_sdk {:.2} M points/s, ratio {:.1}x\n",
        ours / 1e6,
        peer / 1e6,
        ours / peer
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
