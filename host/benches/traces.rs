//! Spans, per span, on one core: the span rules turning vLLM-shaped `llm_request` spans into
//! GenAI metrics (read on the wire, recorded with their exemplars) beside the same measurements
//! made by decoding each request with `prost` and recording into official `opentelemetry_sdk`
//! histograms; and forwarding (walked, sliced, framed) beside decode-clone-encode. 10,000 spans
//! in 100 requests of 100, as `wasmtel load --kind traces` sends them; and intake's GenAI
//! content redaction of the same spans each carrying a prompt, beside the spans without one.
//! Prints spans per second and the ratios.

mod timing;

use std::hint::black_box;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Histogram, MeterProvider as _};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_sdk::metrics::{ManualReader, SdkMeterProvider};
use prost::Message;
use wasmtel::config::DeriveConfig;
use wasmtel::derive::genai;
use wasmtel::derive::span::SpanMetrics;
use wasmtel::export::otlp::frame;
use wasmtel::intake::otlp::Tally;
use wasmtel::intake::otlp::records::{Stamp, scan, span};
use wasmtel::load::traces_body;
use wasmtel::metrics::{Registries, Registry};
use wasmtel::model::attributes::AttributeSet;
use wasmtel::model::content::Content;
use wasmtel::model::record::Record;
use wasmtel::model::resource::Resource;
use wasmtel::tenancy::Tenancy;

const REQUESTS: u64 = 100;
const BATCH: u64 = 100;
const SPANS: u64 = REQUESTS * BATCH;

fn bodies() -> Vec<Bytes> {
    (0..REQUESTS)
        .map(|n| Bytes::from(traces_body(n, BATCH)))
        .collect()
}

fn records(bodies: &[Bytes]) -> Vec<Vec<Record>> {
    bodies
        .iter()
        .map(|b| {
            scan(
                b,
                &mut Tally::default(),
                &Stamp::NONE,
                (span, &Content::genai()),
            )
            .expect("valid")
            .records
        })
        .collect()
}

/// The host's span rules, recording into a registry per resource.
fn rules() -> SpanMetrics {
    let own = Resource::from_attributes(AttributeSet::empty());
    let registries = Arc::new(Registries::new(Arc::new(Registry::new(2000)), own));
    SpanMetrics::new(
        &DeriveConfig::default(),
        registries,
        Arc::new(Tenancy::off()),
    )
    .expect("the GenAI span rules")
}

/// The same measurements written against the official SDK, from decoded requests.
struct Sdk {
    _provider: SdkMeterProvider,
    duration: Histogram<f64>,
    ttft: Histogram<f64>,
    tpot: Histogram<f64>,
    tokens: Histogram<u64>,
}

impl Sdk {
    fn new() -> Self {
        let provider = SdkMeterProvider::builder()
            .with_reader(ManualReader::builder().build())
            .build();
        let meter = provider.meter("bench");
        let hist = |name: &'static str, b: &[f64]| {
            meter
                .f64_histogram(name)
                .with_unit("s")
                .with_boundaries(b.to_vec())
                .build()
        };
        Self {
            duration: hist(
                "gen_ai.server.request.duration",
                genai::REQUEST_DURATION_BUCKETS,
            ),
            ttft: hist(
                "gen_ai.server.time_to_first_token",
                genai::TIME_TO_FIRST_TOKEN_BUCKETS,
            ),
            tpot: hist(
                "gen_ai.server.time_per_output_token",
                genai::TIME_PER_OUTPUT_TOKEN_BUCKETS,
            ),
            tokens: meter
                .u64_histogram("gen_ai.client.token.usage")
                .with_unit("{token}")
                .with_boundaries(genai::TOKEN_USAGE_BUCKETS.to_vec())
                .build(),
            _provider: provider,
        }
    }

    fn once(&self, bodies: &[Bytes]) {
        for body in bodies {
            let request = ExportTraceServiceRequest::decode(body.as_ref()).expect("valid");
            for s in request
                .resource_spans
                .iter()
                .flat_map(|r| &r.scope_spans)
                .flat_map(|s| &s.spans)
            {
                self.span(s);
            }
        }
    }

    fn span(&self, s: &Span) {
        let get = |key: &str| {
            s.attributes
                .iter()
                .find(|a| a.key == key)
                .and_then(|a| a.value.as_ref()?.value.as_ref())
        };
        let number = |key: &str| match get(key)? {
            Value::IntValue(i) => Some(*i as f64),
            Value::DoubleValue(d) => Some(*d),
            _ => None,
        };
        let Some(Value::StringValue(model)) = get("gen_ai.response.model") else {
            return;
        };
        let attrs = [
            KeyValue::new("gen_ai.request.model", model.clone()),
            KeyValue::new("gen_ai.response.model", model.clone()),
        ];
        let e2e = number("gen_ai.latency.e2e").unwrap_or_default();
        let ttft = number("gen_ai.latency.time_to_first_token").unwrap_or_default();
        let output = number("gen_ai.usage.completion_tokens").unwrap_or_default();
        self.duration.record(e2e, &attrs);
        self.ttft.record(ttft, &attrs);
        self.tpot.record((e2e - ttft) / (output - 1.0), &attrs);
        for (kind, key) in [
            ("input", "gen_ai.usage.prompt_tokens"),
            ("output", "gen_ai.usage.completion_tokens"),
        ] {
            let mut with_type = attrs.to_vec();
            with_type.push(KeyValue::new("gen_ai.token.type", kind));
            self.tokens
                .record(number(key).unwrap_or_default() as u64, &with_type);
        }
    }
}

fn derive(c: &mut Criterion) {
    if !timing::selected("derive_10000_llm_request_spans") {
        return;
    }
    let bodies = bodies();
    let requests = records(&bodies);
    let ours = rules();
    let sdk = Sdk::new();
    let wasmtel = |requests: &[Vec<Record>]| {
        for spans in requests {
            assert_eq!(ours.record(spans), None);
        }
    };
    let mut group = c.benchmark_group("derive_10000_llm_request_spans");
    group.throughput(Throughput::Elements(SPANS));
    group.bench_function("wasmtel_span_rules", |b| b.iter(|| wasmtel(&requests)));
    group.bench_function("prost_decode+opentelemetry_sdk", |b| {
        b.iter(|| sdk.once(black_box(&bodies)))
    });
    group.finish();
    let w = timing::best_of_five(|| wasmtel(&requests));
    let p = timing::best_of_five(|| sdk.once(&bodies));
    let rate = |t: f64| SPANS as f64 / t / 1e6;
    println!(
        "\nspans into GenAI metrics, one core: wasmtel {:.2} M spans/s, prost decode + opentelemetry_sdk {:.2} M spans/s, ratio {:.1}x\n",
        rate(w),
        rate(p),
        p / w
    );
}

fn forward(c: &mut Criterion) {
    if !timing::selected("forward_10000_spans") {
        return;
    }
    let bodies = bodies();
    let ours = |bodies: &[Bytes]| {
        let spans: Vec<Record> = records(bodies).into_iter().flatten().collect();
        frame(&spans)
    };
    let decoding = |bodies: &[Bytes]| {
        let mut batch = ExportTraceServiceRequest::default();
        for body in bodies {
            let request = ExportTraceServiceRequest::decode(body.as_ref()).expect("valid");
            batch
                .resource_spans
                .extend(request.resource_spans.iter().cloned());
        }
        batch.encode_to_vec()
    };
    let spans = |bytes: &[u8]| {
        let request = ExportTraceServiceRequest::decode(bytes).expect("valid");
        let all = request.resource_spans.iter().flat_map(|r| &r.scope_spans);
        all.map(|s| s.spans.len() as u64).sum::<u64>()
    };
    assert_eq!(spans(&ours(&bodies)), SPANS);
    assert_eq!(spans(&decoding(&bodies)), SPANS);
    timing::forwarding(
        c,
        ("forward_10000_spans", "span", SPANS),
        || ours(&bodies),
        || decoding(&bodies),
    );
}

/// The bodies with a prompt on every span (`gen_ai.prompt`, as OpenLLMetry records it).
fn with_prompts(bodies: &[Bytes]) -> Vec<Bytes> {
    bodies
        .iter()
        .map(|body| {
            let mut request = ExportTraceServiceRequest::decode(body.as_ref()).expect("valid");
            let spans = request
                .resource_spans
                .iter_mut()
                .flat_map(|r| &mut r.scope_spans)
                .flat_map(|s| &mut s.spans);
            for s in spans {
                s.attributes
                    .push(opentelemetry_proto::tonic::common::v1::KeyValue {
                        key: "gen_ai.prompt".into(),
                        value: Some(opentelemetry_proto::tonic::common::v1::AnyValue {
                            value: Some(Value::StringValue("Summarise this document …".into())),
                        }),
                        ..Default::default()
                    });
            }
            Bytes::from(request.encode_to_vec())
        })
        .collect()
}

/// Intake's GenAI content redaction: spans that each carry a prompt, marked by the check and
/// redacted by the embedded `redact` plugin (a run of 100 per call), beside the same spans
/// without a prompt, which the check marks none of (so no plugin runs).
fn redact(c: &mut Criterion) {
    if !timing::selected("intake_10000_spans") {
        return;
    }
    use wasmtel::intake::otlp::content::ContentGuard;
    use wasmtel::model::Signal;
    use wasmtel::plugins::{Limits, Link, Runtime, Slot, Stats, TransformPlugin, Transforms};
    let runtime = Runtime::shared().expect("runtime");
    let bytes = wasmtel::plugins::embedded::find("redact").expect("embedded");
    let component = runtime.compile(bytes).expect("compiles");
    let limits = Limits::default();
    let plugin = TransformPlugin::load(
        &runtime,
        "redact",
        &component,
        Vec::new(),
        limits,
        &Stats::default(),
    )
    .expect("loads");
    let slot = Arc::new(Slot::new(
        "redact",
        Default::default(),
        Ok((plugin, String::new())),
    ));
    let chain = Transforms::new(vec![Link::new(slot, wasmtel::config::OnFailure::Closed)]);
    let guard = ContentGuard::new(Content::genai(), Box::new(move || chain.clone()));
    let intake = |bodies: &[Bytes]| -> Vec<Record> {
        let mut tally = Tally::default();
        let mut out = Vec::new();
        for body in bodies {
            let scanned =
                scan(body, &mut tally, &Stamp::NONE, (span, &Content::genai())).expect("valid");
            out.extend(guard.apply(Signal::Traces, scanned, &mut tally));
        }
        assert_eq!(tally.rejected, 0);
        out
    };
    let (plain, prompts) = (bodies(), with_prompts(&bodies()));
    let redacted = intake(&prompts);
    assert_eq!(redacted.len() as u64, SPANS);
    assert!(
        !frame(&redacted).windows(13).any(|w| w == b"gen_ai.prompt"),
        "redacted"
    );
    let mut g = c.benchmark_group("intake_10000_spans");
    g.throughput(Throughput::Elements(SPANS));
    g.bench_function("with_prompts_redacted", |b| {
        b.iter(|| black_box(intake(&prompts)))
    });
    g.bench_function("without_content", |b| b.iter(|| black_box(intake(&plain))));
    g.finish();
    let r = timing::best_of_five(|| drop(black_box(intake(&prompts))));
    let p = timing::best_of_five(|| drop(black_box(intake(&plain))));
    println!(
        "\nintake per span: with a prompt, redacted {:.0} ns ({:.0} k spans/s); without content {:.0} ns; redaction costs {:.1}x\n",
        r * 1e9 / SPANS as f64,
        SPANS as f64 / r / 1e3,
        p * 1e9 / SPANS as f64,
        r / p
    );
}

criterion_group!(benches, derive, forward, redact);
criterion_main!(benches);
