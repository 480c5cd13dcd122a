//! Memory of 100,000 active histogram series with 3 attributes, wasmtel beside the official
//! `opentelemetry_sdk` in the same run: heap bytes (counted by this binary's allocator) and
//! resident set growth, per series, and their ratio; and the same series pushed over OTLP
//! (cumulative, through the metrics intake) and scraped (a Prometheus exposition through the
//! scrape translator and the intake), per series.

// Counting heap bytes takes a global allocator, which is an `unsafe` trait; it forwards to `System`.
#![allow(unsafe_code)]

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{BOUNDS, sdk};
use opentelemetry::KeyValue;
use opentelemetry::metrics::MeterProvider as _;
use wasmtel::metrics::{Descriptor, Registry};
use wasmtel::model::attributes::ValueRef;
use wasmtel::model::event::TraceContext;
use wasmtel::model::metric::ExemplarFilter;
use wasmtel::model::metric::InstrumentKind;

/// The system allocator, keeping count of the bytes live.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to `System` unchanged; only the count is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller upholds `alloc`'s contract, which `System` shares.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const SERIES: usize = 100_000;
const MODELS: [&str; 4] = ["llama-3-70b", "mistral-7b", "qwen-2-72b", "phi-3"];
const REGIONS: [&str; 6] = ["eu-1", "eu-2", "us-1", "us-2", "ap-1", "ap-2"];

/// Resident set size of this process in bytes, from `/proc/self/statm`.
fn resident() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// Heap and resident growth per series while `build` creates the series and keeps them alive.
fn per_series<T>(build: impl FnOnce() -> T) -> (f64, f64, T) {
    let (heap, rss) = (LIVE.load(Ordering::Relaxed), resident());
    let kept = build();
    let heap = LIVE.load(Ordering::Relaxed).saturating_sub(heap);
    let rss = resident().saturating_sub(rss);
    (
        heap as f64 / SERIES as f64,
        rss as f64 / SERIES as f64,
        kept,
    )
}

fn wasmtel(filter: ExemplarFilter, trace: Option<TraceContext>) -> Registry {
    let registry = Registry::new(SERIES + 1).with_exemplar_filter(filter);
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
        histogram.record_traced(
            &[
                ("id", ValueRef::Int(i as i64)),
                ("model", ValueRef::Str(MODELS[i % 4])),
                ("region", ValueRef::Str(REGIONS[i % 6])),
            ],
            0.3,
            trace,
        );
    }
    registry
}

/// The 100,000 series as a Prometheus text exposition: 3 labels, [`BOUNDS`] and `+Inf`.
fn exposition() -> String {
    use std::fmt::Write as _;
    let mut out = String::from("# TYPE bench_h histogram\n");
    for i in 0..SERIES {
        let labels = format!(
            "id=\"{i}\",model=\"{}\",region=\"{}\"",
            MODELS[i % 4],
            REGIONS[i % 6]
        );
        for b in BOUNDS {
            let _ = writeln!(out, "bench_h_bucket{{{labels},le=\"{b}\"}} 1");
        }
        let _ = writeln!(out, "bench_h_bucket{{{labels},le=\"+Inf\"}} 1");
        let _ = writeln!(out, "bench_h_sum{{{labels}}} 0.3");
        let _ = writeln!(out, "bench_h_count{{{labels}}} 1");
    }
    out
}

/// A metrics intake into fresh registries, as the host's.
fn intake() -> wasmtel::intake::otlp::metrics::MetricsReceiver {
    use std::sync::Arc;
    use wasmtel::metrics::Registries;
    use wasmtel::model::attributes::AttributeSet;
    use wasmtel::model::resource::Resource;
    let own = Resource::from_attributes(AttributeSet::empty());
    let registries = Registries::new(Arc::new(Registry::new(SERIES + 1)), own);
    wasmtel::intake::otlp::metrics::MetricsReceiver::new(Arc::new(registries))
}

/// Heap and resident bytes per series pushed over OTLP (the scraped request, received twice:
/// its series and the intake's memory of cumulative points) and scraped (the same, plus the
/// translator's memory of the series).
fn pushed_and_scraped() -> ((f64, f64), (f64, f64)) {
    use wasmtel::sources::scrape::exposition::{Format, Parser};
    use wasmtel::sources::scrape::translate::{Options, Target, Translator};
    let body = exposition();
    let target = Target {
        job: "bench".into(),
        instance: "127.0.0.1:9000".into(),
        attributes: Vec::new(),
    };
    let request = |translator: &mut Translator, now: u64| {
        translator
            .translate(&target, Parser::new(&body, Format::Text), now)
            .expect("valid")
            .request
    };
    let pushed_request = request(&mut Translator::new(Options::default()), 1);
    let (pushed_heap, pushed_rss, pushed) = per_series(|| {
        let intake = intake();
        for _ in 0..2 {
            assert_eq!(intake.receive(&pushed_request).rejected, 0);
        }
        intake
    });
    black_box(&pushed);
    drop(pushed_request);
    let (scraped_heap, scraped_rss, scraped) = per_series(|| {
        let (intake, mut translator) = (intake(), Translator::new(Options::default()));
        for now in 1..3 {
            let scrape = request(&mut translator, now);
            assert_eq!(intake.receive(&scrape).rejected, 0);
        }
        (intake, translator)
    });
    black_box(&scraped);
    ((pushed_heap, pushed_rss), (scraped_heap, scraped_rss))
}

fn main() {
    // Nothing is dropped before the end, so that freed memory is not reused by the next side.
    let (ours_heap, ours_rss, registry) = per_series(|| wasmtel(ExemplarFilter::AlwaysOff, None));
    black_box(&registry);
    let (sdk_heap, sdk_rss, kept) = per_series(|| {
        let (provider, reader) = sdk(None, SERIES + 1);
        let histogram = provider
            .meter("bench")
            .f64_histogram("bench.h")
            .with_boundaries(BOUNDS.to_vec())
            .build();
        for i in 0..SERIES {
            histogram.record(
                0.3,
                &[
                    KeyValue::new("id", i as i64),
                    KeyValue::new("model", MODELS[i % 4]),
                    KeyValue::new("region", REGIONS[i % 6]),
                ],
            );
        }
        (provider, reader, histogram)
    });
    black_box(&kept);
    let trace = TraceContext {
        trace_id: [1; 16],
        span_id: [2; 8],
    };
    let (traced_heap, traced_rss, traced) =
        per_series(|| wasmtel(ExemplarFilter::TraceBased, Some(trace)));
    black_box(&traced);
    println!(
        "memory_100000_histogram_series: wasmtel {ours_heap:.0} B/series heap ({ours_rss:.0} B resident), \
         opentelemetry_sdk {sdk_heap:.0} B/series heap ({sdk_rss:.0} B resident), sdk/wasmtel {:.2}x heap",
        sdk_heap / ours_heap
    );
    println!(
        "with one traced measurement per series (an exemplar each): wasmtel {traced_heap:.0} B/series heap ({traced_rss:.0} B resident)"
    );
    let ((pushed_heap, pushed_rss), (scraped_heap, scraped_rss)) = pushed_and_scraped();
    println!(
        "the same series pushed over OTLP (cumulative): {pushed_heap:.0} B/series heap ({pushed_rss:.0} B resident); \
         scraped: {scraped_heap:.0} B/series heap ({scraped_rss:.0} B resident), scraped/pushed {:.2}x heap",
        scraped_heap / pushed_heap
    );
}
