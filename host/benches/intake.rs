//! Intake hot path: parse + derive + aggregate a 1,000-event NDJSON batch.
//!
//! Peer, in the same run: the conventional way to do the same job —
//! `serde_json::Value` per line recorded into the official
//! `opentelemetry_sdk` instruments with the same buckets and attributes.
//! Prints events/s for both and the ratio.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod timing;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, MeterProvider as _};
use opentelemetry_sdk::metrics::{ManualReader, SdkMeterProvider};
use serde_json::Value;
use wasmtel::config::DeriveConfig;
use wasmtel::derive::{Deriver, genai};
use wasmtel::intake::events;
use wasmtel::metrics::Registry;
use wasmtel::model::metric::ExemplarFilter;
use wasmtel::pipeline::Pipeline;
use wasmtel::telemetry::SelfTelemetry;
use wasmtel::tenancy::Principal;

const EVENTS: usize = 1000;

/// The shared sample data, when this checkout has it beside it.
const SAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/data/events-sample.ndjson"
);

/// 1,000 realistic events as NDJSON: the shared sample's first 1,000, else the demo generator's.
fn batch() -> Vec<u8> {
    if let Ok(sample) = std::fs::read_to_string(SAMPLE) {
        let lines: Vec<&str> = sample.lines().take(EVENTS).collect();
        if lines.len() == EVENTS {
            println!("batch: first {EVENTS} events of {SAMPLE}");
            return (lines.join("\n") + "\n").into_bytes();
        }
    }
    println!("batch: {EVENTS} events from the demo generator");
    let mut rng = fastrand::Rng::with_seed(42);
    let mut lines = Vec::new();
    let mut seq = 0;
    while lines.len() < EVENTS {
        let (events, _) = wasmtel::demo::request_events(&mut rng, seq, "bench-device");
        lines.extend(events.into_iter().map(|e| e.to_string()));
        seq += 1;
    }
    lines.truncate(EVENTS);
    (lines.join("\n") + "\n").into_bytes()
}

fn wasmtel_pipeline(exemplars: ExemplarFilter) -> Pipeline {
    let registry = Arc::new(Registry::new(2000).with_exemplar_filter(exemplars));
    let telemetry = SelfTelemetry::register(&registry).expect("self metrics");
    let deriver = Deriver::new(&DeriveConfig::default(), &registry).expect("rules");
    let events = Arc::new(wasmtel::model::record::Origin::events(
        &wasmtel::sources::resource::detect(&Default::default()),
        None,
    ));
    Pipeline::new(deriver, Vec::new(), telemetry, events)
}

fn wasmtel_once(pipeline: &Pipeline, body: &[u8]) {
    let events = events::parse(body).expect("valid batch");
    pipeline
        .ingest(&events, &Principal::Operator)
        .expect("no sink refuses");
}

/// The same derivation written against the official SDK.
struct Sdk {
    _provider: SdkMeterProvider,
    duration: Histogram<f64>,
    ttft: Histogram<f64>,
    tpot: Histogram<f64>,
    tokens: Histogram<u64>,
    throughput: Histogram<f64>,
    requests: Counter<u64>,
}

impl Sdk {
    fn new() -> Self {
        let provider = SdkMeterProvider::builder()
            .with_reader(ManualReader::builder().build())
            .build();
        let meter = provider.meter("bench");
        let hist = |name: &'static str, unit: &'static str, b: &[f64]| {
            meter
                .f64_histogram(name)
                .with_unit(unit)
                .with_boundaries(b.to_vec())
                .build()
        };
        Self {
            duration: hist(
                "gen_ai.server.request.duration",
                "s",
                genai::REQUEST_DURATION_BUCKETS,
            ),
            ttft: hist(
                "gen_ai.server.time_to_first_token",
                "s",
                genai::TIME_TO_FIRST_TOKEN_BUCKETS,
            ),
            tpot: hist(
                "gen_ai.server.time_per_output_token",
                "s",
                genai::TIME_PER_OUTPUT_TOKEN_BUCKETS,
            ),
            throughput: hist(
                "inference.throughput",
                "{token}/s",
                genai::THROUGHPUT_BUCKETS,
            ),
            tokens: meter
                .u64_histogram("gen_ai.client.token.usage")
                .with_unit("{token}")
                .with_boundaries(genai::TOKEN_USAGE_BUCKETS.to_vec())
                .build(),
            requests: meter
                .u64_counter("inference.requests")
                .with_unit("{request}")
                .build(),
            _provider: provider,
        }
    }

    fn once(&self, body: &[u8]) {
        for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let e: Value = serde_json::from_slice(line).expect("valid line");
            self.record(&measurements(&e));
        }
    }

    /// Records one event's measurements.
    fn record(&self, measurements: &[Measurement]) {
        for (instrument, value, attrs) in measurements {
            match instrument {
                Measured::Duration => self.duration.record(*value, attrs),
                Measured::Ttft => self.ttft.record(*value, attrs),
                Measured::Tpot => self.tpot.record(*value, attrs),
                Measured::Throughput => self.throughput.record(*value, attrs),
                Measured::Tokens => self.tokens.record(*value as u64, attrs),
                Measured::Requests => self.requests.add(1, attrs),
            }
        }
    }
}

/// The instrument a measurement goes to.
enum Measured {
    Duration,
    Ttft,
    Tpot,
    Throughput,
    Tokens,
    Requests,
}

/// One measurement as the SDK takes it: the instrument, the value and the attributes.
type Measurement = (Measured, f64, Vec<KeyValue>);

/// The measurements the GenAI rules take of one event, as the SDK is given them.
fn measurements(e: &Value) -> Vec<Measurement> {
    let mut out = Vec::new();
    if e["event_type"] != "generation_completed" {
        return out;
    }
    let text = |k: &str| e[k].as_str().unwrap_or_default().to_owned();
    let mut attrs = vec![
        KeyValue::new("gen_ai.request.model", text("model")),
        KeyValue::new("inference.engine", text("engine")),
        KeyValue::new("inference.device.id", text("device_id")),
        KeyValue::new("inference.org.id", text("org_id")),
    ];
    let m = &e["metrics"];
    let num = |k: &str| m[k].as_f64();
    let failed = e.get("error").is_some();
    for (field, token_type) in [("input_tokens", "input"), ("output_tokens", "output")] {
        if let Some(v) = num(field) {
            let mut a = attrs.clone();
            a.push(KeyValue::new("gen_ai.token.type", token_type));
            out.push((Measured::Tokens, v, a));
        }
    }
    if !failed {
        if let Some(v) = num("ttfc_ms") {
            out.push((Measured::Ttft, v / 1000.0, attrs.clone()));
        }
        if let Some(v) = num("chunk_latency_avg_ms") {
            out.push((Measured::Tpot, v / 1000.0, attrs.clone()));
        }
        if let Some(v) = num("throughput_tok_s") {
            out.push((Measured::Throughput, v, attrs.clone()));
        }
    }
    if let Some(err) = e["error"].as_str() {
        attrs.push(KeyValue::new("error.type", err.to_owned()));
    }
    if let Some(v) = num("total_duration_ms") {
        out.push((Measured::Duration, v / 1000.0, attrs.clone()));
    }
    out.push((Measured::Requests, 1.0, attrs));
    out
}

fn bench(c: &mut Criterion) {
    let body = batch();
    let pipeline = wasmtel_pipeline(ExemplarFilter::default());
    let sdk = Sdk::new();
    let mut group = c.benchmark_group("intake_1000_events");
    group.throughput(Throughput::Elements(EVENTS as u64));
    group.bench_function("wasmtel", |b| {
        b.iter(|| wasmtel_once(&pipeline, black_box(&body)))
    });
    group.bench_function("wasmtel_parse_only", |b| {
        b.iter(|| events::parse(black_box(&body)).expect("valid").len())
    });
    let parsed = events::parse(&body).expect("valid");
    group.bench_function("wasmtel_derive_only", |b| {
        b.iter(|| pipeline.ingest(black_box(&parsed), &Principal::Operator))
    });
    group.bench_function("serde_json_value+opentelemetry_sdk", |b| {
        b.iter(|| sdk.once(black_box(&body)))
    });
    group.finish();
    record_paths(c, &parsed, &sdk, &body);

    // This benchmark runs on shared, noisy machines: alternate the two for
    // several rounds and report each one's best round.
    let rate = |f: &dyn Fn()| {
        let start = Instant::now();
        let mut batches = 0u64;
        while start.elapsed() < Duration::from_millis(500) {
            f();
            batches += 1;
        }
        (batches * EVENTS as u64) as f64 / start.elapsed().as_secs_f64()
    };
    let (mut ours, mut peer) = (0.0f64, 0.0f64);
    for _ in 0..6 {
        ours = ours.max(rate(&|| wasmtel_once(&pipeline, black_box(&body))));
        peer = peer.max(rate(&|| sdk.once(black_box(&body))));
    }
    println!(
        "\nparse + derive + aggregate, one core, best of 6 rounds: wasmtel {:.2} M events/s, \
         serde_json::Value + opentelemetry_sdk {:.2} M events/s, ratio {:.1}x\n",
        ours / 1e6,
        peer / 1e6,
        ours / peer
    );
}

/// The record path alone: the parsed events through the GenAI rules, against the SDK recording
/// the same measurements with their attributes built ahead (its best case), in ns per
/// measurement. The SDK keeps no exemplars: the like-for-like line keeps none either; the
/// sample's events are traced, so by default each of ours also leaves an exemplar.
fn record_paths(
    c: &mut Criterion,
    parsed: &[wasmtel::model::event::Event<'_>],
    sdk: &Sdk,
    body: &[u8],
) {
    let prepared: Vec<Vec<Measurement>> = body
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|line| measurements(&serde_json::from_slice(line).expect("valid line")))
        .collect();
    let count = prepared.iter().map(Vec::len).sum::<usize>();
    let (plain, traced) = (
        wasmtel_pipeline(ExemplarFilter::AlwaysOff),
        wasmtel_pipeline(ExemplarFilter::TraceBased),
    );
    let ours = |p: &Pipeline| p.ingest(black_box(parsed), &Principal::Operator);
    let theirs = || prepared.iter().for_each(|m| sdk.record(black_box(m)));
    let mut group = c.benchmark_group("record_1000_events");
    group.throughput(Throughput::Elements(count as u64));
    group.bench_function("wasmtel_derive", |b| b.iter(|| ours(&plain)));
    group.bench_function("wasmtel_derive_with_exemplars", |b| {
        b.iter(|| ours(&traced))
    });
    group.bench_function("opentelemetry_sdk_record", |b| b.iter(theirs));
    group.finish();
    let (w, e, s) = (
        timing::best_of_five(|| drop(ours(&plain))),
        timing::best_of_five(|| drop(ours(&traced))),
        timing::best_of_five(theirs),
    );
    let per = |t: f64| t * 1e9 / count as f64;
    println!(
        "\nrecord path, {count} measurements of {EVENTS} events: wasmtel {:.1} ns \
         ({:.1} ns keeping exemplars), opentelemetry_sdk {:.1} ns per measurement, \
         sdk/wasmtel {:.2}x\n",
        per(w),
        per(e),
        per(s),
        s / w
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
