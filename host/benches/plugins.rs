//! Plugin costs, each beside its peer in the same run:
//! - per data point: the embedded `statsd` component against the same crate compiled natively;
//! - the fixed cost of one plugin call, and of masking credentials in a backend's answer;
//! - hot-reload swap time, from file write to the new version serving (cold, and with the compile cache warm).

mod timing;

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use wasmtel::config::PluginsConfig;
use wasmtel::plugins::bindings::encoder::Response;
use wasmtel::plugins::{
    Encoder, ExporterPlugin, Limits, PluginSet, Reloadable, Runtime, Stats, embedded,
};
use wasmtel_guest::Exporter as _;

const POINTS: usize = 1000;

/// The same batch in either binding of the contract: half counters, half histograms, 3 attributes
/// each, 17 distinct attribute sets (interned once each, as the host sends them).
macro_rules! batch {
    ($($types:ident)::+) => {{
        use $($types)::+ as t;
        const KEYS: [&str; 3] = ["model", "engine", "device"];
        let mut strings: Vec<String> = ["", "bench", "requests", "latency", "s"].map(String::from).to_vec();
        strings.extend(KEYS.map(String::from));
        let (mut values, mut attributes) = (Vec::new(), Vec::new());
        let mut sets = vec![t::Span { start: 0, len: 0 }];
        for v in 0..17 {
            sets.push(t::Span { start: attributes.len() as u32, len: 3 });
            for (k, key) in KEYS.iter().enumerate() {
                values.push(t::Value::String(format!("{key}-{v}")));
                attributes.push(t::Attribute { key: 5 + k as u32, value: values.len() as u32 - 1 });
            }
        }
        let set = |i: usize| 1 + (i % 17) as u32;
        let number = |i: usize| t::NumberPoint {
            attributes: set(i),
            start_time_unix_nano: 1,
            time_unix_nano: 2,
            value: i as f64,
        };
        let (mut bounds, mut counts) = (Vec::new(), Vec::new());
        let mut histogram = |i: usize| {
            let point = t::HistogramPoint {
                attributes: set(i),
                start_time_unix_nano: 1,
                time_unix_nano: 2,
                count: 10,
                sum: Some(25.0),
                min: Some(0.1),
                max: Some(9.0),
                bounds: t::Span { start: bounds.len() as u32, len: 3 },
                bucket_counts: t::Span { start: counts.len() as u32, len: 4 },
            };
            bounds.extend([0.5, 1.0, 5.0]);
            counts.extend([2, 3, 4, 1]);
            point
        };
        let histograms: Vec<_> = (0..POINTS / 2).map(&mut histogram).collect();
        let metric = |name: u32, unit: u32, monotonic: bool, points: t::Points| t::Metric {
            scope: 0,
            name,
            description: 0,
            unit,
            temporality: t::Temporality::Delta,
            monotonic,
            points,
            bounds: Vec::new(),
            counts: Vec::new(),
            exemplars: Vec::new(),
        };
        let mut latency = metric(3, 4, false, t::Points::Histogram(histograms));
        (latency.bounds, latency.counts) = (bounds, counts);
        t::MetricBatch {
            table: t::Table { strings, values, attributes, sets },
            resource: t::Resource { attributes: 0, schema_url: 0 },
            scopes: vec![t::Scope { name: 1, version: 0, attributes: 0 }],
            metrics: vec![
                metric(2, 0, true, t::Points::Sum((0..POINTS / 2).map(number).collect())),
                latency,
            ],
        }
    }};
}

fn statsd_component(runtime: &Arc<Runtime>) -> ExporterPlugin {
    let bytes = embedded::find("statsd").expect("embedded");
    let component = runtime.compile(bytes).expect("compiles");
    ExporterPlugin::load(
        runtime,
        "statsd",
        &component,
        Vec::new(),
        Limits::default(),
        &Stats::default(),
    )
    .expect("loads")
}

fn per_point(c: &mut Criterion) {
    let runtime = Runtime::shared().expect("runtime");
    let wasm = statsd_component(&runtime);
    let host_batch = batch!(wasmtel::plugins::bindings::types);
    let (mut native, _) = statsd::Statsd::init(wasmtel_guest::Config::default()).expect("init");
    let guest_batch = batch!(wasmtel_guest);
    let mut group = c.benchmark_group("statsd_1000_points");
    group.throughput(Throughput::Elements(POINTS as u64));
    group.bench_function("wasm_component", |b| {
        b.iter(|| {
            wasm.encode_metrics(black_box(&host_batch))
                .expect("encodes")
        })
    });
    group.bench_function("native_same_crate", |b| {
        b.iter(|| {
            native
                .encode_metrics(black_box(&guest_batch))
                .expect("encodes")
        })
    });
    group.finish();
    if !timing::selected("statsd_1000_points") {
        return;
    }

    let time = |f: &mut dyn FnMut()| {
        let start = Instant::now();
        let mut n = 0u32;
        while start.elapsed() < Duration::from_millis(500) {
            f();
            n += 1;
        }
        start.elapsed().as_secs_f64() / f64::from(n)
    };
    let (mut w, mut n) = (f64::MAX, f64::MAX);
    for _ in 0..5 {
        w = w.min(time(&mut || {
            drop(wasm.encode_metrics(black_box(&host_batch)))
        }));
        n = n.min(time(&mut || {
            drop(native.encode_metrics(black_box(&guest_batch)))
        }));
    }
    println!(
        "\nstatsd per data point, best of 5 rounds: wasm {:.0} ns, native {:.0} ns, ratio {:.2}x\n",
        w * 1e9 / POINTS as f64,
        n * 1e9 / POINTS as f64,
        w / n
    );
}

fn call_cost(c: &mut Criterion) {
    let runtime = Runtime::shared().expect("runtime");
    let wasm = statsd_component(&runtime);
    let empty = wasmtel::plugins::bindings::types::MetricBatch {
        table: wasmtel::plugins::batch::Interner::new().finish(),
        resource: wasmtel::plugins::bindings::types::Resource {
            attributes: 0,
            schema_url: 0,
        },
        scopes: Vec::new(),
        metrics: Vec::new(),
    };
    let response = Response {
        status: 202,
        headers: vec![],
        body: vec![],
    };
    let mut group = c.benchmark_group("plugin_call");
    group.bench_function("classify", |b| {
        b.iter(|| wasm.classify(black_box(&response)))
    });
    group.bench_function("encode_metrics_empty_batch", |b| {
        b.iter(|| wasm.encode_metrics(black_box(&empty)).expect("encodes"))
    });
    group.finish();

    // Masking credentials in a backend's answer, beside the copy the host makes anyway.
    for secret in [
        "sk-bench-0123456789abcdef",
        "Bearer tok-bench-42",
        "dd-bench-key-0000",
    ] {
        wasmtel::redact::register(secret);
    }
    let answer: String = (0..16)
        .map(|i| format!("{{\"error\":\"field {i} is not valid for this endpoint\"}},"))
        .collect();
    let mut group = c.benchmark_group("answer_1k");
    group.bench_function("redact", |b| {
        b.iter(|| wasmtel::redact::redact(black_box(&answer)).into_owned())
    });
    group.bench_function("copy_peer", |b| b.iter(|| black_box(&answer).to_owned()));
    group.finish();
}

/// Milliseconds from writing a new version until it serves, `rounds` times.
fn swap_times(warm_cache: bool, rounds: usize) -> Vec<f64> {
    let dir = std::env::temp_dir().join(format!(
        "wasmtel-bench-swap-{}-{warm_cache}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("mkdir");
    let plugins = PluginsConfig {
        dir: dir.clone(),
        ..PluginsConfig::default()
    };
    let set = PluginSet::new(&plugins, Some(dir.join("cache"))).expect("plugins");
    let statsd = embedded::find("statsd").expect("embedded");
    let version = |i: usize| {
        let mut bytes = statsd.to_vec();
        let payload = format!("v{i}-{warm_cache}-{}", std::process::id());
        bytes.extend_from_slice(&[0, (payload.len() + 1) as u8, 0]);
        bytes.extend_from_slice(payload.as_bytes());
        bytes
    };
    std::fs::write(dir.join("statsd.wasm"), version(0)).expect("write");
    let exporter = set
        .open::<Encoder>("statsd", &toml::Table::new(), Some("statsd"), None)
        .expect("loads");
    let rt = tokio::runtime::Runtime::new().expect("tokio");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let watcher = {
        let _runtime = rt.enter();
        set.watch(stop_rx)
    };
    std::thread::sleep(Duration::from_millis(200));
    let mut times = Vec::new();
    for i in 1..=rounds {
        let bytes = version(i);
        if warm_cache {
            set.loader().compile(&bytes).expect("precompiles");
        }
        let want = wasmtel::plugins::cache::digest(&bytes);
        let tmp = dir.join("statsd.partial");
        let start = Instant::now();
        std::fs::write(&tmp, &bytes).expect("write");
        std::fs::rename(&tmp, dir.join("statsd.wasm")).expect("rename");
        while exporter.serving() != Some(want.clone()) {
            std::thread::sleep(Duration::from_micros(200));
        }
        times.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    let _ = stop_tx.send(true);
    let _ = rt.block_on(watcher);
    times.sort_by(f64::total_cmp);
    times
}

fn reload_swap(_c: &mut Criterion) {
    if !timing::selected("reload_swap") {
        return;
    }
    let percentile =
        |t: &[f64], p: f64| t[((t.len() as f64 * p).ceil() as usize).clamp(1, t.len()) - 1];
    for warm in [false, true] {
        let t = swap_times(warm, 30);
        println!(
            "hot-reload swap, {} ({} swaps): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            if warm {
                "compile cache warm"
            } else {
                "cold (compiled on arrival)"
            },
            t.len(),
            percentile(&t, 0.5),
            percentile(&t, 0.99),
            t[t.len() - 1]
        );
    }
}

/// The same 1,000-point batch through exporters written in Rust (the embedded statsd), Python and
/// JavaScript (the examples, built beforehand: `WASMTEL_BENCH_PYTHON` and `WASMTEL_BENCH_JS` name
/// their `.wasm` files): instantiate + `init` time, memory after a call, and time per point.
fn languages(_c: &mut Criterion) {
    if !timing::selected("languages") {
        return;
    }
    let runtime = Runtime::shared().expect("runtime");
    let batch = batch!(wasmtel::plugins::bindings::types);
    let mut exporters = vec![(
        "rust (statsd)",
        embedded::find("statsd").expect("embedded").to_vec(),
    )];
    for (language, var) in [
        ("python", "WASMTEL_BENCH_PYTHON"),
        ("javascript", "WASMTEL_BENCH_JS"),
    ] {
        match std::env::var(var).ok().and_then(|p| std::fs::read(p).ok()) {
            Some(bytes) => exporters.push((language, bytes)),
            None => println!("{language}: set {var} to the built example's .wasm to measure it"),
        }
    }
    for (language, bytes) in exporters {
        let component = runtime.compile(&bytes).expect("compiles");
        let name = format!("bench-{}", language.split(' ').next().unwrap_or(language));
        let stats = Stats::default();
        let started = Instant::now();
        let plugin = ExporterPlugin::load(
            &runtime,
            &name,
            &component,
            Vec::new(),
            Limits::default(),
            &stats,
        )
        .expect("loads");
        let instantiate = started.elapsed();
        let mut best = f64::MAX;
        for _ in 0..5 {
            let start = Instant::now();
            let mut n = 0u32;
            while start.elapsed() < Duration::from_millis(500) {
                drop(black_box(plugin.encode_metrics(black_box(&batch))));
                n += 1;
            }
            best = best.min(start.elapsed().as_secs_f64() / f64::from(n));
        }
        let memory = stats.summary(&name).memory_bytes;
        println!(
            "{language}: instantiate + init {:.1} ms, memory {:.1} MiB, {:.0} ns per point",
            instantiate.as_secs_f64() * 1e3,
            memory as f64 / 1048576.0,
            best * 1e9 / POINTS as f64
        );
    }
}

/// One OTLP metrics export of 1,000 histogram series: encoded straight from the registry (no
/// transform), beside the exporter's path through a transform that changes nothing (the
/// embedded `redact` with nothing to drop: encoded from the registry while the series' sets,
/// cut down to its keys, are gathered and given to it) and the whole batch's path (batch in the
/// contract's types, across the boundary and back, then encoded from the batch).
fn unchanged_transform(_c: &mut Criterion) {
    if !timing::selected("unchanged_transform") {
        return;
    }
    use wasmtel::metrics::{Descriptor, Registry};
    use wasmtel::model::attributes::ValueRef;
    use wasmtel::model::metric::InstrumentKind;
    let runtime = Runtime::shared().expect("runtime");
    let registry = Registry::new(2000);
    let histogram = registry
        .instrument(
            Descriptor {
                name: "latency".into(),
                unit: "s".into(),
                description: String::new(),
                kind: InstrumentKind::Histogram,
                scope: "bench".into(),
            },
            &[0.1, 0.5, 1.0, 5.0],
        )
        .expect("histogram");
    for i in 0..POINTS as i64 {
        histogram.record(&[("series", ValueRef::Int(i))], 0.3);
    }
    let resource = wasmtel::sources::resource::detect(&Default::default());
    let component = runtime
        .compile(embedded::find("redact").expect("embedded"))
        .expect("compiles");
    let direct = || wasmtel::export::otlp::metrics::encode(&registry, &resource, None);
    let slot = Arc::new(wasmtel::plugins::Slot::new(
        "redact",
        Default::default(),
        wasmtel::plugins::TransformPlugin::load(
            &runtime,
            "redact",
            &component,
            Vec::new(),
            Limits::default(),
            &Stats::default(),
        )
        .map(|p| (p, String::new())),
    ));
    let transform = slot.get().expect("loads");
    let chain = wasmtel::plugins::Transforms::new(vec![wasmtel::plugins::Link::new(
        slot,
        wasmtel::config::OnFailure::Open,
    )]);
    let producers = [(0, &resource, &registry)];
    // The exporter's path: probed while encoded from the engine, the whole batch only for edits.
    let probed = || {
        wasmtel::export::otlp::metrics::encode_unchanged(&producers, &chain, &|_| true)
            .expect("unchanged")
    };
    let through = || {
        let mut collected = wasmtel::plugins::convert::metric_batch(&registry, &resource, None);
        if let Some(batch) = transform.metrics(&mut collected.batch).expect("transforms") {
            collected.batch = batch;
        }
        wasmtel::export::otlp::metrics::from_batches(&[collected])
    };
    let best = |f: &dyn Fn() -> Vec<u8>| {
        (0..5)
            .map(|_| {
                let start = Instant::now();
                let mut n = 0u32;
                while start.elapsed() < Duration::from_millis(500) {
                    drop(black_box(f()));
                    n += 1;
                }
                start.elapsed().as_secs_f64() / f64::from(n)
            })
            .fold(f64::MAX, f64::min)
    };
    let built = std::cell::RefCell::new(wasmtel::plugins::convert::metric_batch(
        &registry, &resource, None,
    ));
    let build = best(&|| {
        drop(wasmtel::plugins::convert::metric_batch(
            &registry, &resource, None,
        ));
        Vec::new()
    });
    let (d, p, t) = (best(&direct), best(&probed), best(&through));
    let call = best(&|| {
        drop(
            transform
                .metrics(&mut built.borrow_mut().batch)
                .expect("transforms"),
        );
        Vec::new()
    });
    let encode = best(&|| {
        wasmtel::export::otlp::metrics::from_batches(std::slice::from_ref(&built.borrow()))
    });
    println!(
        "\none OTLP export of {POINTS} histogram series: no transform {:.0} µs, through an unchanged transform {:.0} µs ({:+.0} %); the whole batch's path {:.0} µs ({:+.0} %): batch built {:.0} µs, transform call {:.0} µs, encoded from the batch {:.0} µs\n",
        d * 1e6,
        p * 1e6,
        (p / d - 1.0) * 100.0,
        t * 1e6,
        (t / d - 1.0) * 100.0,
        build * 1e6,
        call * 1e6,
        encode * 1e6
    );
}

criterion_group!(
    benches,
    per_point,
    call_cost,
    reload_swap,
    languages,
    unchanged_transform
);
criterion_main!(benches);
