//! The aggregation engine against the official `opentelemetry_sdk`, each pair in the same run:
//! counter add and histogram record with 3 attributes, exponential histogram record, recording
//! past the cardinality limit, two threads on one series, and collecting + OTLP-encoding 10,000 series; plus
//! Prometheus exposition of 10,000 series in ns per line, and a scrape of 100,000 series plain
//! beside gzipped (bytes and ns per line). Prints the ratio of each pair.

mod common;
mod timing;

use std::hint::black_box;
use std::sync::Arc;

use common::{BOUNDS, sdk};
use criterion::{Criterion, criterion_group, criterion_main};
use opentelemetry::KeyValue;
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_sdk::metrics::Aggregation as SdkAggregation;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::reader::MetricReader as _;
use prost::Message as _;
use wasmtel::metrics::{Descriptor, Instrument, Registry};
use wasmtel::model::attributes::ValueRef;
use wasmtel::model::metric::HistogramAggregation;
use wasmtel::model::metric::InstrumentKind;

const MODELS: [&str; 4] = ["llama-3-70b", "mistral-7b", "qwen-2-72b", "phi-3"];
const ENGINES: [&str; 4] = ["vllm", "tgi", "trt-llm", "sglang"];
const REGIONS: [&str; 6] = ["eu-1", "eu-2", "us-1", "us-2", "ap-1", "ap-2"];

/// One attribute set as wasmtel records it (sorted by key).
type Ours = [(&'static str, ValueRef<'static>); 3];

/// The 96 attribute sets both sides cycle through, in each side's own form.
fn attribute_sets() -> (Vec<Ours>, Vec<[KeyValue; 3]>) {
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for m in MODELS {
        for e in ENGINES {
            for r in REGIONS {
                ours.push([
                    ("engine", ValueRef::Str(e)),
                    ("model", ValueRef::Str(m)),
                    ("region", ValueRef::Str(r)),
                ]);
                theirs.push([
                    KeyValue::new("model", m),
                    KeyValue::new("engine", e),
                    KeyValue::new("region", r),
                ]);
            }
        }
    }
    (ours, theirs)
}

fn ours(kind: InstrumentKind, limit: usize, histograms: HistogramAggregation) -> Arc<Instrument> {
    Registry::new(limit)
        .with_histogram_aggregation(histograms)
        .instrument(
            Descriptor {
                name: "bench".into(),
                unit: "s".into(),
                description: String::new(),
                kind,
                scope: "bench".into(),
            },
            &BOUNDS,
        )
        .expect("instrument")
}

/// Benchmarks both sides in one group and prints their per-operation times and ratio.
fn pair(c: &mut Criterion, name: &str, ops: u64, mut wasmtel: impl FnMut(), mut sdk: impl FnMut()) {
    let mut group = c.benchmark_group(name);
    group.throughput(criterion::Throughput::Elements(ops));
    group.bench_function("wasmtel", |b| b.iter(&mut wasmtel));
    group.bench_function("opentelemetry_sdk", |b| b.iter(&mut sdk));
    group.finish();
    let (w, s) = (
        timing::best_of_five(&mut wasmtel),
        timing::best_of_five(&mut sdk),
    );
    let per = |t: f64| t * 1e9 / ops as f64;
    println!(
        "\n{name}: wasmtel {:.1} ns/op, opentelemetry_sdk {:.1} ns/op, sdk/wasmtel {:.2}x\n",
        per(w),
        per(s),
        s / w
    );
}

/// 1,000 operations over the 96 attribute sets, so each call of a closure is comparable.
const OPS: u64 = 1000;

fn record_paths(c: &mut Criterion) {
    let (sets, kvs) = attribute_sets();
    let explicit = HistogramAggregation::ExplicitBucketHistogram;

    let counter = ours(InstrumentKind::Counter, 2000, explicit);
    let (provider, _r) = sdk(None, 2000);
    let sdk_counter = provider.meter("bench").u64_counter("bench").build();
    pair(
        c,
        "counter_add_3_attributes",
        OPS,
        || (0..OPS as usize).for_each(|i| counter.record(black_box(&sets[i % 96]), 1.0)),
        || (0..OPS as usize).for_each(|i| sdk_counter.add(1, black_box(&kvs[i % 96]))),
    );

    let histogram = ours(InstrumentKind::Histogram, 2000, explicit);
    let sdk_histogram = provider.meter("bench").f64_histogram("bench.h").build();
    let value = |i: usize| (i % 37) as f64 * 0.07;
    pair(
        c,
        "histogram_record_3_attributes",
        OPS,
        || (0..OPS as usize).for_each(|i| histogram.record(&sets[i % 96], black_box(value(i)))),
        || (0..OPS as usize).for_each(|i| sdk_histogram.record(black_box(value(i)), &kvs[i % 96])),
    );

    let exponential = ours(
        InstrumentKind::Histogram,
        2000,
        HistogramAggregation::Base2ExponentialBucketHistogram,
    );
    let (exp_provider, _r2) = sdk(
        Some(SdkAggregation::Base2ExponentialHistogram {
            max_size: 160,
            max_scale: 20,
            record_min_max: true,
        }),
        2000,
    );
    let sdk_exponential = exp_provider.meter("bench").f64_histogram("bench.e").build();
    pair(
        c,
        "exponential_histogram_record",
        OPS,
        || {
            (0..OPS as usize)
                .for_each(|i| exponential.record(&sets[i % 96], black_box(1.0 + value(i))))
        },
        || {
            (0..OPS as usize)
                .for_each(|i| sdk_exponential.record(black_box(1.0 + value(i)), &kvs[i % 96]))
        },
    );

    // A limit of 10 series: nine in ten measurements go to the overflow series.
    let limited = ours(InstrumentKind::Counter, 10, explicit);
    let (limited_provider, _r3) = sdk(None, 10);
    let sdk_limited = limited_provider.meter("bench").u64_counter("bench").build();
    pair(
        c,
        "counter_add_past_the_cardinality_limit",
        OPS,
        || (0..OPS as usize).for_each(|i| limited.record(&sets[i % 96], 1.0)),
        || (0..OPS as usize).for_each(|i| sdk_limited.add(1, &kvs[i % 96])),
    );

    // Two threads adding to the same series.
    let shared = ours(InstrumentKind::Counter, 2000, explicit);
    let (shared_provider, _r4) = sdk(None, 2000);
    let sdk_shared = shared_provider.meter("bench").u64_counter("bench").build();
    let two_threads = |f: &(dyn Fn() + Sync)| {
        std::thread::scope(|s| {
            s.spawn(|| (0..OPS / 2).for_each(|_| f()));
            (0..OPS / 2).for_each(|_| f());
        });
    };
    pair(
        c,
        "counter_add_two_threads_one_series",
        OPS,
        || two_threads(&|| shared.record(&sets[0], 1.0)),
        || two_threads(&|| sdk_shared.add(1, &kvs[0])),
    );
}

fn collection(c: &mut Criterion) {
    const SERIES: usize = 10_000;
    let registry = Registry::new(SERIES);
    let (provider, reader) = sdk(None, SERIES);
    let sdk_histogram = provider.meter("bench").f64_histogram("bench.h").build();
    let histogram = registry
        .instrument(
            Descriptor {
                name: "bench.h".into(),
                unit: "s".into(),
                description: String::new(),
                kind: InstrumentKind::Histogram,
                scope: "bench".into(),
            },
            &BOUNDS,
        )
        .expect("histogram");
    for i in 0..SERIES {
        let id = i as i64;
        histogram.record(
            &[("id", ValueRef::Int(id)), ("model", ValueRef::Str("m"))],
            0.3,
        );
        sdk_histogram.record(0.3, &[KeyValue::new("id", id), KeyValue::new("model", "m")]);
    }
    let resource = wasmtel::sources::resource::detect(&Default::default());
    pair(
        c,
        "collect_and_encode_10000_histogram_series",
        SERIES as u64,
        || {
            black_box(wasmtel::export::otlp::metrics::encode(
                &registry, &resource, None,
            ));
        },
        || {
            let mut rm = ResourceMetrics::default();
            reader.collect(&mut rm).expect("collects");
            black_box(ExportMetricsServiceRequest::from(&rm).encode_to_vec());
        },
    );

    let text = wasmtel::export::prometheus::render(&registry, &resource);
    let lines = text.lines().filter(|l| !l.starts_with('#')).count();
    let mut group = c.benchmark_group("prometheus_exposition_10000_histogram_series");
    group.throughput(criterion::Throughput::Elements(lines as u64));
    group.bench_function("wasmtel", |b| {
        b.iter(|| black_box(wasmtel::export::prometheus::render(&registry, &resource)))
    });
    group.finish();
    let per_line = timing::best_of_five(|| {
        black_box(wasmtel::export::prometheus::render(&registry, &resource));
    }) * 1e9
        / lines as f64;
    println!("\nprometheus exposition: {lines} sample lines, {per_line:.1} ns per line\n");
}

/// A scrape of 100,000 histogram series (4 bounds, 3 attributes): rendered as it is, beside
/// rendered and gzipped as a scraper sending `Accept-Encoding: gzip` gets it.
fn scrape_100k(c: &mut Criterion) {
    use wasmtel::export::prometheus::{Compression, Format, render_as};
    const SERIES: usize = 100_000;
    let registry = Registry::new(SERIES);
    let histogram = registry
        .instrument(
            Descriptor {
                name: "gen_ai.server.request.duration".into(),
                unit: "s".into(),
                description: "Generation latency".into(),
                kind: InstrumentKind::Histogram,
                scope: "bench".into(),
            },
            &[0.1, 0.5, 1.0, 5.0],
        )
        .expect("histogram");
    for i in 0..SERIES {
        let attrs = [
            (
                "gen_ai.request.model",
                ValueRef::Str(MODELS[i % MODELS.len()]),
            ),
            (
                "inference.engine",
                ValueRef::Str(ENGINES[i % ENGINES.len()]),
            ),
            ("request.id", ValueRef::Int(i as i64)),
        ];
        histogram.record(&attrs, 0.3);
    }
    let resource = wasmtel::sources::resource::detect(&Default::default());
    let plain = || render_as(Format::Prometheus, &registry, &resource);
    let gzipped = || Compression::Gzip.apply(plain());
    let text = plain();
    let lines = text.lines().filter(|l| !l.starts_with('#')).count();
    let packed = gzipped().len();
    let mut group = c.benchmark_group("scrape_100000_histogram_series");
    group.sample_size(10);
    group.throughput(criterion::Throughput::Elements(lines as u64));
    group.bench_function("identity", |b| b.iter(|| black_box(plain())));
    group.bench_function("gzip", |b| b.iter(|| black_box(gzipped())));
    group.finish();
    let (p, g) = (
        timing::best_of_five(|| drop(black_box(plain()))),
        timing::best_of_five(|| drop(black_box(gzipped()))),
    );
    println!(
        "
scrape of {SERIES} series ({lines} lines): identity {:.1} MB in {:.0} ms ({:.1} ns/line), gzip {:.2} MB in {:.0} ms ({:.1} ns/line), {:.0}x smaller\n",
        text.len() as f64 / 1e6,
        p * 1e3,
        p * 1e9 / lines as f64,
        packed as f64 / 1e6,
        g * 1e3,
        g * 1e9 / lines as f64,
        text.len() as f64 / packed as f64
    );
}

criterion_group!(benches, record_paths, collection, scrape_100k);
criterion_main!(benches);
