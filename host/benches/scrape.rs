//! Reading a scraped exposition, on one core: the host's parser (Prometheus text 0.0.4, no copy)
//! beside the `prometheus-parse` crate, on a 100,000-sample body shaped like a model server's
//! (histograms per model and route, counters, gauges); and the scrape's translation into an
//! OTLP request and its recording through the metrics intake, beside the parser alone. Prints
//! samples per second and the ratios.

mod timing;

use std::fmt::Write as _;
use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use wasmtel::sources::scrape::exposition::{Format, Line, Parser};

/// Series in the body: 5,000 histograms of 12 buckets (+ `_sum`, `_count`) and 30,000 counters
/// and gauges.
const HISTOGRAMS: usize = 5_000;
const COUNTERS: usize = 15_000;
const SAMPLES: u64 = (HISTOGRAMS * 14 + COUNTERS * 2) as u64;

/// A body of [`SAMPLES`] samples in the text format.
fn body() -> String {
    let bounds = [
        "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0", "2.5", "5.0", "10.0", "+Inf",
    ];
    let mut out = String::new();
    out.push_str("# HELP vllm:e2e_request_latency_seconds Histogram of end to end request latency in seconds.\n");
    out.push_str("# TYPE vllm:e2e_request_latency_seconds histogram\n");
    for i in 0..HISTOGRAMS {
        let labels = format!(
            "model_name=\"model-{}\",route=\"/v1/route/{i}\",engine=\"{}\"",
            i % 16,
            i % 4
        );
        for (n, le) in bounds.iter().enumerate() {
            let _ = writeln!(
                out,
                "vllm:e2e_request_latency_seconds_bucket{{{labels},le=\"{le}\"}} {}",
                n * 10 + i % 7
            );
        }
        let _ = writeln!(
            out,
            "vllm:e2e_request_latency_seconds_sum{{{labels}}} {}.25",
            i * 3
        );
        let _ = writeln!(
            out,
            "vllm:e2e_request_latency_seconds_count{{{labels}}} {}",
            110 + i % 7
        );
    }
    out.push_str("# TYPE http_requests_total counter\n");
    for i in 0..COUNTERS {
        let _ = writeln!(
            out,
            "http_requests_total{{method=\"post\",path=\"/api/{i}\",code=\"200\"}} {}",
            i * 13
        );
    }
    out.push_str("# TYPE queue_depth gauge\n");
    for i in 0..COUNTERS {
        let _ = writeln!(out, "queue_depth{{queue=\"q{i}\"}} {}", i % 100);
    }
    out
}

/// The host's parser: the samples and the sum of their values.
fn ours(body: &str) -> (u64, f64) {
    Parser::new(body, Format::Text).fold((0, 0.0), |(n, sum), line| match line {
        Ok(Line::Sample(s)) => (n + 1, sum + s.value),
        Ok(_) => (n, sum),
        Err(e) => panic!("{e}"),
    })
}

/// The `prometheus-parse` crate: the samples and the sum of their values.
fn peer(body: &str) -> (u64, f64) {
    let lines = body.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("valid");
    scrape.samples.iter().fold((0, 0.0), |(n, sum), s| {
        let value = match &s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => *v,
            prometheus_parse::Value::Histogram(buckets) => {
                return (
                    n + buckets.len() as u64,
                    sum + buckets.iter().map(|b| b.count).sum::<f64>(),
                );
            }
            prometheus_parse::Value::Summary(q) => q.iter().map(|q| q.count).sum(),
        };
        (n + 1, sum + value)
    })
}

fn parse(c: &mut Criterion) {
    let body = body();
    assert_eq!(ours(&body).0, SAMPLES);
    let mut g = c.benchmark_group("parse_100000_samples");
    g.throughput(Throughput::Elements(SAMPLES));
    g.bench_function("wasmtel", |b| b.iter(|| black_box(ours(&body))));
    g.bench_function("prometheus_parse", |b| b.iter(|| black_box(peer(&body))));
    g.finish();
    let w = timing::best_of_five(|| {
        black_box(ours(&body));
    });
    let p = timing::best_of_five(|| {
        black_box(peer(&body));
    });
    println!(
        "\nparsing {SAMPLES} samples ({} bytes): wasmtel {:.2} M samples/s, prometheus-parse {:.2} M samples/s, ratio {:.1}x\n",
        body.len(),
        SAMPLES as f64 / w / 1e6,
        SAMPLES as f64 / p / 1e6,
        p / w
    );
}

/// Parse, translate into an OTLP request, and record it into a registry per resource through
/// the metrics intake, as a scrape does (the second scrape of the same body: series known).
fn translate_and_record(c: &mut Criterion) {
    use std::sync::Arc;
    use wasmtel::intake::otlp::metrics::MetricsReceiver;
    use wasmtel::metrics::{Registries, Registry};
    use wasmtel::model::attributes::AttributeSet;
    use wasmtel::model::resource::Resource;
    use wasmtel::sources::scrape::translate::{Options, Target, Translator};
    let body = body();
    let target = Target {
        job: "vllm".into(),
        instance: "10.0.0.7:8000".into(),
        attributes: Vec::new(),
    };
    let own = Resource::from_attributes(AttributeSet::empty());
    let registries = Arc::new(Registries::new(Arc::new(Registry::new(2000)), own));
    let receiver = MetricsReceiver::new(registries);
    let mut translator = Translator::new(Options::default());
    let mut scrape = |now: u64| {
        let scraped = translator
            .translate(&target, Parser::new(&body, Format::Text), now)
            .expect("valid");
        let tally = receiver.receive(&scraped.request);
        assert_eq!(tally.rejected, 0, "{:?}", tally.message);
        scraped.samples
    };
    assert_eq!(scrape(1) as u64, SAMPLES);
    let mut now = 1;
    let mut g = c.benchmark_group("scrape_100000_samples");
    g.throughput(Throughput::Elements(SAMPLES));
    g.bench_function("parse_translate_record", |b| {
        b.iter(|| {
            now += 1;
            black_box(scrape(now))
        })
    });
    g.bench_function("parse_only", |b| b.iter(|| black_box(ours(&body))));
    g.finish();
    let whole = timing::best_of_five(|| {
        now += 1;
        black_box(scrape(now));
    });
    let parse = timing::best_of_five(|| {
        black_box(ours(&body));
    });
    println!(
        "\nscrape of {SAMPLES} samples: parse+translate+record {:.2} M samples/s, parse alone {:.2} M samples/s (the parse is {:.0} % of the loop)\n",
        SAMPLES as f64 / whole / 1e6,
        SAMPLES as f64 / parse / 1e6,
        parse / whole * 100.0
    );
}

criterion_group!(benches, parse, translate_and_record);
criterion_main!(benches);
