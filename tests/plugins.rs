//! Plugin tests with real compiled components: output on real sockets, and hostile plugins contained.

mod common;

use std::net::UdpSocket;
use std::sync::Arc;
use std::time::Duration;

use common::{post_ndjson, start};
use serde_json::json;
use wasmtel::plugins::bindings::encoder::Outbound;
use wasmtel::plugins::convert::metric_batch;
use wasmtel::plugins::{
    CallError, ExporterPlugin, Failure, Health, Limits, PluginError, Runtime, Stats,
};

const SPIN: &str = env!("WASMTEL_FIXTURE_SPIN");
const HOG: &str = env!("WASMTEL_FIXTURE_HOG");
const ESCAPE: &str = env!("WASMTEL_FIXTURE_ESCAPE");
const PASSTHROUGH: &str = env!("WASMTEL_FIXTURE_PASSTHROUGH");

/// The exporter label of the failing plugin's batches.
const EXPORTER: &str = "spin";

/// Plugin settings as `load` takes them.
fn settings(config: &[(&str, &str)]) -> Vec<(String, String)> {
    config
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn load(name: &str, bytes: &[u8], config: &[(&str, &str)]) -> Result<ExporterPlugin, PluginError> {
    let runtime = Runtime::shared().expect("runtime");
    let component = runtime.compile(bytes)?;
    let config = settings(config);
    ExporterPlugin::load(
        &runtime,
        name,
        &component,
        config,
        Limits::default(),
        &Stats::default(),
    )
}

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(path).expect("fixture built by tests/build.rs")
}

fn statsd() -> &'static [u8] {
    wasmtel::plugins::embedded::find("statsd").expect("statsd is embedded")
}

/// A UDP socket on loopback that the test reads datagrams from.
fn udp_listener() -> (UdpSocket, u16) {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let port = socket.local_addr().expect("addr").port();
    (socket, port)
}

/// The lines of one export's datagrams (one export may take several), sorted: the first
/// datagram within 10 s, then the others that follow it within 300 ms.
fn receive_lines(socket: &UdpSocket) -> Vec<String> {
    let mut buf = [0u8; 65536];
    let n = socket.recv(&mut buf).expect("a datagram arrives");
    let mut lines: Vec<String> = String::from_utf8_lossy(&buf[..n])
        .lines()
        .map(str::to_owned)
        .collect();
    socket
        .set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    while let Ok(n) = socket.recv(&mut buf) {
        lines.extend(
            String::from_utf8_lossy(&buf[..n])
                .lines()
                .map(str::to_owned),
        );
    }
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    lines.sort();
    lines
}

const RULES: &str = concat!(
    common::chunk_rule!(),
    r#"
[[derive.rules]]
event_type = "generation_completed"
instrument = "histogram"
name = "latency"
field = "total_duration_ms"
buckets = [1, 5]
attributes = { model = "model" }
"#
);

fn events(chunks: usize, latencies: &[f64]) -> Vec<serde_json::Value> {
    let mut out: Vec<_> = (0..chunks)
        .map(|_| json!({"event_type": "chunk_produced", "model": "m1"}))
        .collect();
    out.extend(latencies.iter().map(|l| json!({"event_type": "generation_completed", "model": "m1", "metrics": {"total_duration_ms": l}})));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statsd_datagrams_arrive_byte_for_byte_as_deltas() {
    let (socket, port) = udp_listener();
    let toml = format!(
        "{RULES}\n[[exporters]]\nplugin = \"statsd\"\nendpoint = \"udp://127.0.0.1:{port}\"\ndelivery.interval = \"1h\"\n"
    );
    let host = start(&toml).await;
    post_ndjson(&host, &events(2, &[0.5, 3.0, 3.0])).await;
    host.collect_now().await;
    // Plain StatsD: Graphite tags in the name, histograms as `ms` timers with sample rates.
    // The plugin's own call durations vary: checked apart.
    let received = receive_lines(&socket);
    let (durations, lines): (Vec<String>, Vec<String>) = received
        .iter()
        .cloned()
        .partition(|l| l.starts_with("wasmtel.plugin.call.duration;"));
    assert_eq!(
        lines,
        [
            "inference.chunks;model=m1:2|c",
            "latency;model=m1:0.75|ms",
            "latency;model=m1:2|ms|@0.5",
            "wasmtel.intake.events.accepted:5|c",
            "wasmtel.plugin.calls;function=init;outcome=ok;plugin=statsd:1|c",
            "wasmtel.plugin.up;integration=statsd;kind=exporter;plugin=statsd:1|g",
        ]
    );
    assert_eq!(durations.len(), 1, "{durations:?}");
    assert!(
        durations[0]
            .starts_with("wasmtel.plugin.call.duration;function=init;outcome=ok;plugin=statsd:"),
        "{durations:?}"
    );
    let report = || {
        host.integrations()
            .into_iter()
            .find(|r| r.integration == "statsd")
            .expect("report")
    };
    common::eventually("the first export counted", || report().status.sent == 1).await;
    // UDP acknowledges nothing: the export is `sending`, with datagrams and bytes counted.
    let first = report();
    assert_eq!(
        first.status.state,
        wasmtel::export::delivery::State::Sending
    );
    assert_eq!(first.status.requests, 1);
    assert_eq!(first.status.bytes, received.join("\n").len() as u64);
    // The second export carries only what happened since the first.
    post_ndjson(&host, &events(1, &[7.0])).await;
    host.collect_now().await;
    let state = |s: &str, v: u8| {
        format!("wasmtel.export.state;integration=statsd;signal=metrics;state={s}:{v}|g")
    };
    let mut want = vec![
        "inference.chunks;model=m1:1|c".to_owned(),
        "latency;model=m1:7|ms".to_owned(),
        "wasmtel.export.batches;integration=statsd;outcome=ok;signal=metrics:1|c".to_owned(),
        state("connected", 0),
        state("degraded", 0),
        state("disabled", 0),
        state("paused", 0),
        state("pending", 0),
        state("sending", 1),
        "wasmtel.intake.events.accepted:2|c".to_owned(),
        "wasmtel.plugin.calls;function=encode-metrics;outcome=ok;plugin=statsd:1|c".to_owned(),
        "wasmtel.plugin.items;direction=in;plugin=statsd:6|c".to_owned(),
        "wasmtel.plugin.items;direction=out;plugin=statsd:1|c".to_owned(),
        "wasmtel.plugin.up;integration=statsd;kind=exporter;plugin=statsd:1|g".to_owned(),
    ];
    want.sort();
    let second: Vec<String> = receive_lines(&socket)
        .into_iter()
        .filter(|l| {
            !l.starts_with("wasmtel.plugin.call.duration;")
                && !l.starts_with("wasmtel.plugin.memory;")
        })
        .collect();
    assert_eq!(second, want);
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statsd_sends_a_summary_as_gauges_of_its_quantiles_sum_and_count() {
    let (socket, port) = udp_listener();
    let host = start(&format!(
        "[[exporters]]\nplugin = \"statsd\"\nendpoint = \"udp://127.0.0.1:{port}\"\ndelivery.interval = \"1h\"\n"
    ))
    .await;
    let summary = json!({"resourceMetrics": [{"scopeMetrics": [{"metrics": [{
        "name": "rpc.duration", "unit": "s",
        "summary": {"dataPoints": [{"attributes": [{"key": "route", "value": {"stringValue": "a"}}],
            "timeUnixNano": "2000", "count": "10", "sum": 4.5,
            "quantileValues": [{"quantile": 0.5, "value": 0.3}, {"quantile": 0.99, "value": 0.9}]}]}}]}]}]});
    let (status, body) = wasmtel_tests::post_otlp_metrics(host.intake_addr(), &summary).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    host.collect_now().await;
    let lines: Vec<String> = receive_lines(&socket)
        .into_iter()
        .filter(|l| l.starts_with("rpc"))
        .collect();
    assert_eq!(
        lines,
        [
            "rpc.duration;quantile=0.5;route=a:0.3|g",
            "rpc.duration;quantile=0.99;route=a:0.9|g",
            "rpc_duration_seconds_count;route=a:10|g",
            "rpc_duration_seconds_sum;route=a:4.5|g",
        ]
    );
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_looping_plugin_is_stopped_at_its_deadline_while_another_keeps_delivering() {
    let spin = load("spin", &fixture(SPIN), &[]).expect("spin loads: init is fine");
    let batch = wasmtel::plugins::convert::metric_batch(
        &wasmtel::metrics::Registry::new(10),
        &wasmtel::sources::resource::detect(&Default::default()),
        None,
    )
    .batch;
    let err = spin.encode_metrics(&batch).expect_err("never returns");
    assert_eq!(
        err,
        CallError::Failed(
            Arc::from("spin"),
            Failure::Deadline(Duration::from_millis(100))
        )
    );
    assert!(matches!(spin.health(), Health::Restarting(reason) if reason.contains("deadline")));

    // A host with the spinning exporter and statsd side by side: statsd still delivers.
    let (socket, port) = udp_listener();
    let dir = tempfile_dir();
    std::fs::copy(SPIN, dir.join("spin.wasm")).expect("copy");
    let toml = format!(
        "{RULES}\n[plugins]\ndir = \"{}\"\n[[exporters]]\nplugin = \"spin\"\nendpoint = \"udp://127.0.0.1:9\"\ndelivery.interval = \"1h\"\n[[exporters]]\nplugin = \"statsd\"\nendpoint = \"udp://127.0.0.1:{port}\"\ndelivery.interval = \"1h\"\n",
        dir.display()
    );
    let host = start(&toml).await;
    post_ndjson(&host, &events(3, &[])).await;
    host.collect_now().await;
    assert!(receive_lines(&socket).contains(&"inference.chunks;model=m1:3|c".to_owned()));
    let failed = [
        ("integration", EXPORTER),
        ("outcome", "failed"),
        ("signal", "metrics"),
    ];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while common::exposition(&host)
        .await
        .value("wasmtel_export_batches_total", &failed)
        .is_none()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "spin's export never failed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let m = common::exposition(&host).await;
    assert_eq!(m.value("wasmtel_export_batches_total", &failed), Some(1.0));
    let health: Vec<(String, &str, bool)> = host
        .plugin_health()
        .into_iter()
        .map(|row| (row.plugin, row.kind, row.health == Health::Running))
        .collect();
    assert_eq!(
        health,
        [
            ("spin".to_owned(), "exporter", false),
            ("statsd".to_owned(), "exporter", true)
        ]
    );
    // The health shows in the self-metrics within a health period.
    let up = |m: &wasmtel_tests::Exposition, plugin: &str| {
        m.value(
            "wasmtel_plugin_up",
            &[
                ("integration", plugin),
                ("kind", "exporter"),
                ("plugin", plugin),
            ],
        )
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let m = common::exposition(&host).await;
        if up(&m, "spin") == Some(0.0) {
            assert_eq!(up(&m, "statsd"), Some(1.0));
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "spin never shown down"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    host.shutdown().await;
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "wasmtel-test-{}-{}",
        std::process::id(),
        fastrand_suffix()
    ));
    std::fs::create_dir_all(&dir).expect("mkdir");
    dir
}

fn fastrand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

#[test]
fn a_plugin_that_allocates_past_its_cap_fails_alone() {
    // A deadline no loaded machine reaches first: the memory cap must be what stops it.
    let runtime = Runtime::shared().expect("runtime");
    let limits = Limits {
        call_timeout: std::time::Duration::from_secs(10),
        ..Limits::default()
    };
    let hog = ExporterPlugin::load(
        &runtime,
        "hog",
        &runtime.compile(&fixture(HOG)).expect("compiles"),
        Vec::new(),
        limits,
        &Stats::default(),
    )
    .expect("hog loads");
    let other = load("statsd", statsd(), &[]).expect("statsd loads");
    let registry = wasmtel::metrics::Registry::new(10);
    let counter = registry
        .instrument(
            wasmtel::metrics::Descriptor {
                name: "c".into(),
                unit: String::new(),
                description: String::new(),
                kind: wasmtel::model::metric::InstrumentKind::Counter,
                scope: "test".into(),
            },
            &[],
        )
        .expect("counter");
    counter.record(&[], 1.0);
    let resource = wasmtel::sources::resource::detect(&Default::default());
    let batch = metric_batch(&registry, &resource, None).batch;
    let err = hog.encode_metrics(&batch).expect_err("runs out of memory");
    assert_eq!(
        err,
        CallError::Failed(Arc::from("hog"), Failure::MemoryLimit(64 * 1024 * 1024))
    );
    let out = other.encode_metrics(&batch).expect("statsd unaffected");
    assert!(
        matches!(&out[..], [Outbound::Datagram(d)] if d == b"c:1|c"),
        "{out:?}"
    );
}

#[test]
fn a_plugin_that_keeps_failing_is_marked_failed() {
    let spin = load("spin", &fixture(SPIN), &[]).expect("spin loads");
    let registry = wasmtel::metrics::Registry::new(10);
    let batch = metric_batch(
        &registry,
        &wasmtel::sources::resource::detect(&Default::default()),
        None,
    )
    .batch;
    let mut failures = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        match spin.encode_metrics(&batch) {
            Err(CallError::CrashLoop(name, reason)) => {
                assert_eq!(&*name, "spin");
                assert!(
                    reason.starts_with(
                        "5 failures within 60s, the last: plugin `spin` call exceeded"
                    ),
                    "{reason}"
                );
                break;
            }
            Err(CallError::Failed(_, Failure::Deadline(_))) => failures += 1,
            Err(CallError::BackingOff(_)) => std::thread::sleep(Duration::from_millis(50)),
            other => panic!("unexpected {other:?}"),
        }
        assert!(std::time::Instant::now() < deadline, "never marked failed");
    }
    assert_eq!(failures, 5);
    assert!(matches!(spin.health(), Health::Failed(_)));
}

#[test]
fn a_plugin_gets_no_files_environment_sockets_or_other_hosts() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("tcp");
    let port = listener.local_addr().expect("addr").port();
    let udp = UdpSocket::bind(("127.0.0.1", port)).expect("udp on the same port");
    udp.set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    let escape =
        load("escape", &fixture(ESCAPE), &[("port", &port.to_string())]).expect("escape loads");
    let registry = wasmtel::metrics::Registry::new(10);
    let batch = metric_batch(
        &registry,
        &wasmtel::sources::resource::detect(&Default::default()),
        None,
    )
    .batch;
    let outbound = escape.encode_metrics(&batch).expect("reports");
    let Some(Outbound::Datagram(report)) = outbound.first() else {
        panic!("no report: {outbound:?}")
    };
    let report = String::from_utf8_lossy(report).into_owned();
    for line in report.lines() {
        let (what, result) = line.split_once('=').expect("key=value");
        match what {
            "env" | "args" => assert_eq!(result, "0", "{line}"),
            _ => assert!(result.starts_with("denied"), "{line}"),
        }
    }
    listener.set_nonblocking(true).expect("nonblocking");
    assert!(listener.accept().is_err(), "no TCP connection arrived");
    let mut buf = [0u8; 64];
    assert!(udp.recv(&mut buf).is_err(), "no UDP datagram arrived");
    assert!(!std::path::Path::new("/tmp/wasmtel-escape").exists());

    // Paths that try to leave the endpoint are refused by the host.
    let base = reqwest::Url::parse("http://127.0.0.1:1/").expect("url");
    for item in &outbound[1..] {
        let Outbound::Http(request) = item else {
            panic!("expected http")
        };
        assert!(
            wasmtel::export::transport::plugin_http::url_for(&base, &request.path).is_err(),
            "{}",
            request.path
        );
    }
}

#[test]
fn broken_plugins_are_rejected_with_a_reason() {
    let err = load("junk", b"\0asm not really", &[]).expect_err("not wasm");
    assert!(err.chain().starts_with("not a valid component"), "{err}");
    let old = wat::parse_str(
        r#"(component (import "wasmtel:plugin/host@0.1.0" (instance (export "now-unix-nano" (func (result u64))))))"#,
    )
    .expect("component text");
    let err = load("old", &old, &[]).expect_err("0.1 is refused");
    assert_eq!(
        err.chain(),
        "built for wasmtel:plugin@0.1.0; rebuild with wasmtel-guest 0.2"
    );
    let newer = wat::parse_str(
        r#"(component (import "wasmtel:plugin/host@0.2.7" (instance (export "now-unix-nano" (func (result u64))))))"#,
    )
    .expect("component text");
    let err = load("newer", &newer, &[]).expect_err("0.2.7 is past this host");
    assert_eq!(
        err.chain(),
        "built for wasmtel:plugin@0.2.7; this host serves up to 0.2.3: upgrade wasmtel"
    );
    let err =
        load("passthrough", &fixture(PASSTHROUGH), &[]).expect_err("a transform is no exporter");
    assert!(
        err.chain()
            .starts_with("wrong world: no exported instance named `wasmtel:plugin/encoder@0.2.3`"),
        "{err}"
    );
    let err = load("statsd", statsd(), &[("histogram", "violin")]).expect_err("init refuses");
    assert_eq!(
        err.chain(),
        "plugin `statsd` returned an error: config `histogram`: \"violin\" is not ms, h or d"
    );
}

/// `bytes` with a custom section appended: another file, the same plugin.
fn with_custom_section(bytes: &[u8], payload: &str) -> Vec<u8> {
    fn leb(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            out.push(if n == 0 { byte } else { byte | 0x80 });
            if n == 0 {
                break;
            }
        }
    }
    let name = b"wasmtel-test";
    let mut body = Vec::new();
    leb(name.len(), &mut body);
    body.extend_from_slice(name);
    body.extend_from_slice(payload.as_bytes());
    let mut out = bytes.to_vec();
    out.push(0);
    leb(body.len(), &mut out);
    out.extend_from_slice(&body);
    out
}

/// Writes a file the way deployments should: a temporary file renamed into place.
fn replace_file(path: &std::path::Path, bytes: &[u8]) {
    let tmp = path.with_extension("partial");
    std::fs::write(&tmp, bytes).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

async fn wait_for_version(host: &wasmtel::Host, want: Option<&str>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let versions = host.plugin_versions();
        if versions.iter().any(|(_, d)| d.as_deref() == want) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "version {want:?} never served: {versions:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A host exporting to statsd on `port` every `interval`, with plugins from `dir`.
async fn statsd_host(dir: &std::path::Path, port: u16, interval: &str) -> wasmtel::Host {
    let toml = format!(
        "{RULES}\n[plugins]\ndir = \"{}\"\ncache_dir = \"{}\"\n[[exporters]]\nplugin = \"statsd\"\nendpoint = \"udp://127.0.0.1:{port}\"\ndelivery.interval = \"{interval}\"\n",
        dir.display(),
        dir.join("cache").display()
    );
    start(&toml).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_directory_made_after_start_is_read_and_its_files_load() {
    // No directory to watch at start: the host reads it on an interval until it exists.
    let root = tempfile_dir();
    let dir = root.join("plugins");
    let (_socket, port) = udp_listener();
    let toml = format!(
        "{RULES}\n[plugins]\ndir = \"{}\"\ncache_dir = \"{}\"\n[[exporters]]\nplugin = \"statsd\"\nendpoint = \"udp://127.0.0.1:{port}\"\ndelivery.interval = \"1h\"\n",
        dir.display(),
        root.join("cache").display()
    );
    let host = start(&toml).await;
    let digest = |b: &[u8]| wasmtel::plugins::cache::digest(b);
    wait_for_version(&host, Some(&digest(statsd()))).await;
    assert!(!dir.exists());
    std::fs::create_dir_all(&dir).expect("mkdir");
    let v2 = with_custom_section(statsd(), "made later");
    replace_file(&dir.join("statsd.wasm"), &v2);
    wait_for_version(&host, Some(&digest(&v2))).await;
    // Once it exists it is watched: a newer file is taken too.
    let v3 = with_custom_section(statsd(), "and then watched");
    replace_file(&dir.join("statsd.wasm"), &v3);
    wait_for_version(&host, Some(&digest(&v3))).await;
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replacing_a_plugin_under_load_swaps_versions_and_loses_no_events() {
    let dir = tempfile_dir();
    let v1 = with_custom_section(statsd(), "v1");
    let v2 = with_custom_section(statsd(), "v2");
    std::fs::write(dir.join("statsd.wasm"), &v1).expect("write v1");
    let (socket, port) = udp_listener();
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let host = statsd_host(&dir, port, "50ms").await;
    let digest = |b: &[u8]| wasmtel::plugins::cache::digest(b);
    assert_eq!(
        host.plugin_versions(),
        vec![("statsd".to_owned(), Some(digest(&v1)))]
    );

    let counter = std::thread::spawn(move || {
        let mut total = 0u64;
        let mut buf = [0u8; 65536];
        while let Ok(n) = socket.recv(&mut buf) {
            for line in String::from_utf8_lossy(&buf[..n]).lines() {
                if let Some(rest) = line.strip_prefix("inference.chunks;model=m1:") {
                    total += rest
                        .split('|')
                        .next()
                        .and_then(|v| v.parse::<u64>().ok())
                        .unwrap_or(0);
                }
            }
        }
        total
    });
    let mut sent = 0u64;
    for round in 0..60 {
        if round == 20 {
            replace_file(&dir.join("statsd.wasm"), &v2);
        }
        let r = post_ndjson(&host, &events(10, &[])).await;
        assert_eq!(r.status, 202);
        sent += 10;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    wait_for_version(&host, Some(&digest(&v2))).await;
    host.shutdown().await;
    assert_eq!(
        counter.join().expect("counter"),
        sent,
        "every event was exported exactly once across the swap"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_file_is_rejected_and_the_old_version_keeps_serving() {
    let logs = wasmtel_tests::capture_logs();
    let dir = tempfile_dir();
    std::fs::write(dir.join("statsd.wasm"), statsd()).expect("write");
    let (socket, port) = udp_listener();
    let host = statsd_host(&dir, port, "1h").await;
    let good = host.plugin_versions();
    let file = dir.join("statsd.wasm");
    replace_file(&file, b"\0asm\x0d\0\x01\0 this is not a component");
    let shown = file.display().to_string();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while logs.count(&["rejected plugin file", &shown]) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no rejection logged:\n{}",
            logs.text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        logs.count(&[
            "rejected plugin file",
            &shown,
            "not a valid component",
            "the previous version keeps serving"
        ]),
        1
    );
    assert_eq!(host.plugin_versions(), good);
    post_ndjson(&host, &events(4, &[])).await;
    host.collect_now().await;
    assert!(
        receive_lines(&socket).contains(&"inference.chunks;model=m1:4|c".to_owned()),
        "the old version still exports"
    );

    // A plugin of the wrong world is rejected the same way; deleting the file falls back to the embedded statsd.
    replace_file(&file, &fixture(PASSTHROUGH));
    while logs.count(&["rejected plugin file", &shown, "wrong world"]) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "wrong world not rejected"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    std::fs::remove_file(&file).expect("delete");
    wait_for_version(&host, Some(&wasmtel::plugins::cache::digest(statsd()))).await;
    host.shutdown().await;
}

#[test]
fn compiled_plugins_are_cached_by_content_hash() {
    let dir = tempfile_dir().join("cache");
    let runtime = Runtime::shared().expect("runtime");
    let compile = |bytes: &[u8]| {
        wasmtel::plugins::cache::compile(&runtime, bytes, Some(&dir))
            .map(|(_, s)| s)
            .expect("compiles")
    };
    use wasmtel::plugins::cache::Source;
    assert_eq!(compile(statsd()), Source::Compiled);
    assert_eq!(
        compile(statsd()),
        Source::Cache,
        "a restart does not recompile"
    );
    let files: Vec<_> = std::fs::read_dir(&dir)
        .expect("dir")
        .filter_map(Result::ok)
        .collect();
    assert_eq!(files.len(), 1);
    assert_eq!(
        compile(&with_custom_section(statsd(), "other")),
        Source::Compiled,
        "other bytes, other entry"
    );
    // A damaged entry is discarded and rebuilt.
    let entry = files[0].path();
    std::fs::write(&entry, b"garbage").expect("damage");
    assert_eq!(compile(statsd()), Source::Compiled);
    assert_eq!(compile(statsd()), Source::Cache);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&dir).expect("meta").permissions().mode() & 0o777,
        0o700
    );
    assert_eq!(
        std::fs::metadata(&entry)
            .expect("meta")
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    // One flipped byte of the compiled code: its recorded hash no longer matches.
    let mut bytes = std::fs::read(&entry).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&entry, &bytes).expect("tamper");
    assert_eq!(
        compile(statsd()),
        Source::Compiled,
        "a tampered entry is not loaded"
    );
    assert_eq!(compile(statsd()), Source::Cache);
    // An entry others may write to is not trusted, nor one another user owns.
    std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    assert_eq!(
        compile(statsd()),
        Source::Compiled,
        "a group/world-writable entry is not loaded"
    );
    assert_eq!(compile(statsd()), Source::Cache);
    if rustix::process::geteuid().is_root() {
        std::os::unix::fs::chown(&entry, Some(65534), Some(65534)).expect("chown");
        assert_eq!(
            compile(statsd()),
            Source::Compiled,
            "another user's entry is not loaded"
        );
        assert_eq!(compile(statsd()), Source::Cache);
    }
}

/// A request body as text, decompressed as its `Content-Encoding` says.
fn decoded(headers: &axum::http::HeaderMap, body: &[u8]) -> String {
    use std::io::Read as _;
    let mut text = String::new();
    match headers
        .get("content-encoding")
        .and_then(|v| v.to_str().ok())
    {
        Some("gzip") => flate2::read::GzDecoder::new(body)
            .read_to_string(&mut text)
            .map(drop)
            .expect("gzip body"),
        Some("deflate") => flate2::read::ZlibDecoder::new(body)
            .read_to_string(&mut text)
            .map(drop)
            .expect("deflate body"),
        _ => text = String::from_utf8_lossy(body).into_owned(),
    }
    text
}

/// The public Datadog API formats, field by field as their specifications name them, so that a
/// payload with a field the API does not define, or of the wrong type, fails to parse.
mod datadog_format {
    use serde::Deserialize;

    /// `MetricPayload` of `POST /api/v2/series`.
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(crate) struct MetricPayload {
        pub(crate) series: Vec<MetricSeries>,
    }

    /// `MetricSeries`.
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(crate) struct MetricSeries {
        pub(crate) metric: String,
        /// 0 unspecified, 1 count, 2 rate, 3 gauge.
        #[serde(default)]
        pub(crate) r#type: Option<u8>,
        #[serde(default)]
        pub(crate) interval: Option<i64>,
        pub(crate) points: Vec<MetricPoint>,
        #[serde(default)]
        pub(crate) resources: Vec<MetricResource>,
        #[serde(default)]
        pub(crate) tags: Vec<String>,
        #[serde(default)]
        pub(crate) unit: Option<String>,
        #[serde(default)]
        pub(crate) source_type_name: Option<String>,
        #[serde(default)]
        pub(crate) metadata: Option<serde_json::Value>,
    }

    /// `MetricPoint`.
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(crate) struct MetricPoint {
        pub(crate) timestamp: i64,
        pub(crate) value: f64,
    }

    /// `MetricResource`.
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(crate) struct MetricResource {
        pub(crate) name: String,
        pub(crate) r#type: String,
    }

    /// `HTTPLogItem` of `POST /api/v2/logs`: `message` required, the reserved attributes typed,
    /// any other attribute allowed.
    #[derive(Debug, Deserialize)]
    pub(crate) struct HttpLogItem {
        pub(crate) message: String,
        #[serde(default)]
        pub(crate) ddsource: Option<String>,
        #[serde(default)]
        pub(crate) ddtags: Option<String>,
        #[serde(default)]
        pub(crate) hostname: Option<String>,
        #[serde(default)]
        pub(crate) service: Option<String>,
        #[serde(default)]
        pub(crate) status: Option<String>,
    }
}

/// Requests an HTTP server on loopback received: path, headers, body.
type Requests = Arc<std::sync::Mutex<Vec<(String, axum::http::HeaderMap, String)>>>;

/// A host exporting logs through the `loglines` fixture plugin to `addr`/base, with `extra`
/// TOML before the exporter (transforms) and `exporter` keys added to its entry.
async fn loglines_host(addr: std::net::SocketAddr, extra: &str, exporter: &str) -> wasmtel::Host {
    let dir = tempfile_dir();
    std::fs::copy(env!("WASMTEL_FIXTURE_LOGLINES"), dir.join("loglines.wasm")).expect("copy");
    start(&format!(
        "{RULES}\n[plugins]\ndir = \"{}\"\n{extra}[[exporters]]\nplugin = \"loglines\"\nendpoint = \"http://{addr}/base\"\ndelivery.interval = \"1h\"\n{exporter}",
        dir.display()
    ))
    .await
}

/// Waits until the sink has received `n` requests, then a little longer so that an extra one
/// would show, and returns them all.
async fn received(seen: &Requests, n: usize) -> Vec<(String, axum::http::HeaderMap, String)> {
    common::eventually(&format!("{n} requests"), || {
        seen.lock().expect("lock").len() >= n
    })
    .await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    seen.lock().expect("lock").clone()
}

/// An HTTP server on loopback that records every POST under `/base/` and answers 202.
async fn http_sink() -> (std::net::SocketAddr, Requests) {
    scripted_sink(Vec::new()).await
}

/// An answer a scripted sink gives once, to the first request for its path: status, headers, body.
type Scripted = (
    &'static str,
    u16,
    Vec<(&'static str, &'static str)>,
    &'static str,
);

/// Like [`http_sink`], but answers requests for a path with the first unused `script` entry for it.
async fn scripted_sink(script: Vec<Scripted>) -> (std::net::SocketAddr, Requests) {
    let seen: Requests = Arc::default();
    let store = seen.clone();
    let script = Arc::new(std::sync::Mutex::new(script));
    let app = axum::Router::new().route(
        "/base/{*path}",
        axum::routing::post(
            move |uri: axum::http::Uri, headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let (store, script) = (store.clone(), script.clone());
                async move {
                    let body = decoded(&headers, &body);
                    store
                        .lock()
                        .expect("lock")
                        .push((uri.path().to_owned(), headers, body));
                    let mut script = script.lock().expect("lock");
                    let (_, status, headers, body) =
                        match script.iter().position(|e| e.0 == uri.path()) {
                            Some(i) => script.remove(i),
                            None => ("", 202, Vec::new(), ""),
                        };
                    let mut response = axum::http::Response::builder().status(status);
                    for (k, v) in headers {
                        response = response.header(k, v);
                    }
                    response
                        .body(axum::body::Body::from(body))
                        .expect("response")
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    (addr, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_built_for_contract_0_2_0_loads_and_delivers_as_it_is() {
    // Built with wit-bindgen alone from a snapshot of the 0.2.0 WIT: it imports
    // `host@0.2.0` and exports `encoder@0.2.0`, which the 0.2.1 host serves unchanged.
    let bytes = fixture(env!("WASMTEL_FIXTURE_CONTRACT_0_2_0"));
    let runtime = Runtime::shared().expect("runtime");
    let component = runtime.compile(&bytes).expect("compiles");
    assert_eq!(runtime.contract(&component).as_deref(), Some("0.2.0"));
    let world =
        wasmtel::plugins::inspect::check(&runtime, "v020", &component, &[], Limits::default())
            .expect("a 0.2.0 exporter loads");
    assert_eq!(
        world.to_string(),
        "exporter (signals: logs; temporality: cumulative)"
    );

    let (addr, seen) = http_sink().await;
    let dir = tempfile_dir();
    std::fs::write(dir.join("v020.wasm"), &bytes).expect("copy");
    let host = start(&format!(
        "{RULES}\n[plugins]\ndir = \"{}\"\n[[exporters]]\nplugin = \"v020\"\nendpoint = \"http://{addr}/base\"\n",
        dir.display()
    ))
    .await;
    post_ndjson(&host, &events(1, &[1.0])).await;
    let got = received(&seen, 1).await;
    let requests: Vec<(&str, &str)> = got
        .iter()
        .map(|(path, _, body)| (path.as_str(), body.as_str()))
        .collect();
    assert_eq!(requests, [("/base/v020", "records=2")]);
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_exporter_posts_through_the_host_with_credentials_it_never_sees() {
    let (addr, seen) = http_sink().await;

    let dir = tempfile_dir();
    std::fs::copy(
        env!("WASMTEL_FIXTURE_HELLO_EXPORTER"),
        dir.join("hello-exporter.wasm"),
    )
    .expect("copy");
    std::fs::write(dir.join("hello-exporter.toml"), "path = \"/v1/hello\"\n").expect("settings");
    let toml = format!(
        "{RULES}\n[plugins]\ndir = \"{}\"\n[[exporters]]\nplugin = \"hello-exporter\"\nendpoint = \"http://{addr}/base/\"\ndelivery.interval = \"1h\"\n[exporters.headers]\nauthorization = \"Bearer s3cret\"\n",
        dir.display()
    );
    let host = start(&toml).await;
    post_ndjson(&host, &events(2, &[1.0])).await;
    host.collect_now().await;
    let got = received(&seen, 1).await;
    assert_eq!(got.len(), 1);
    let (path, headers, body) = &got[0];
    assert_eq!(path, "/base/v1/hello");
    assert_eq!(headers["authorization"], "Bearer s3cret");
    assert_eq!(headers["content-type"], "text/plain");
    let mut lines: Vec<&str> = body.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "inference.chunks 1",
            "latency 1",
            "wasmtel.intake.events.accepted 1",
            "wasmtel.plugin.call.duration 1",
            "wasmtel.plugin.calls 1",
            "wasmtel.plugin.up 1"
        ]
    );
    host.shutdown().await;
}

#[test]
fn first_party_plugins_pass_their_native_unit_tests() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["test", "--quiet", "--manifest-path"])
        .arg(root.join("guests/Cargo.toml"))
        .arg("--target-dir")
        .arg(root.join("target/guests-native"))
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .output()
        .expect("cargo runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("test result: ok."), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transforms_also_rewrite_what_exporter_plugins_receive() {
    let (socket, port) = udp_listener();
    let toml = format!(
        "{RULES}\n[[transforms]]\nplugin = \"redact\"\nconfig = {{ hash = \"model\" }}\n[[exporters]]\nplugin = \"statsd\"\nendpoint = \"udp://127.0.0.1:{port}\"\ndelivery.interval = \"1h\"\n"
    );
    let host = start(&toml).await;
    post_ndjson(&host, &events(2, &[])).await;
    host.collect_now().await;
    // sha256("m1")
    assert!(
        receive_lines(&socket).contains(&"inference.chunks;model=ca0df2c95aa144c1d0ff2ff3c8f967fdc1de9ef0c4120b3726416701b519d619:2|c".to_owned()),
        "the tag value is hashed"
    );
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logs_exporter_plugin_receives_every_event_as_a_log_record() {
    let (addr, seen) = http_sink().await;
    let transform = "[[transforms]]\nplugin = \"redact\"\nconfig = { drop = \"inference.metric.total_duration_ms\" }\n";
    let host = loglines_host(addr, transform, "").await;
    let mut batch = events(1, &[2.5]);
    batch[1]["request_id"] = json!("req-9");
    post_ndjson(&host, &batch).await;
    host.collect_now().await;
    let got = received(&seen, 1).await;
    assert_eq!(
        got.len(),
        1,
        "one logs request (the plugin wants no metrics)"
    );
    let (path, _, body) = &got[0];
    assert_eq!(path, "/base/logs");
    assert_eq!(
        body.lines().collect::<Vec<_>>(),
        [
            "chunk_produced gen_ai.request.model=m1",
            "generation_completed gen_ai.request.model=m1 inference.request.id=req-9"
        ]
    );
    host.shutdown().await;
}

const VIEW_RULES: &str = r#"
[derive]
rule_set = "none"

[[derive.rules]]
event_type = "chunk_produced"
instrument = "counter"
name = "inference.chunks"
attributes = { model = "model", user = "attributes.user" }

[[derive.rules]]
event_type = "generation_completed"
instrument = "counter"
name = "generations"
attributes = { model = "model", user = "attributes.user" }
"#;

/// `chunks` chunk events and one completion per user, users numbered `0..users`.
fn user_events(users: usize, chunks: usize) -> Vec<serde_json::Value> {
    (0..chunks)
        .map(|i| json!({"event_type": "chunk_produced", "model": "m1", "attributes": {"user": format!("u{}", i % users)}}))
        .chain((0..users).map(|u| json!({"event_type": "generation_completed", "model": "m1", "attributes": {"user": format!("u{u}")}})))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drop_attributes_view_folds_high_cardinality_series_of_matching_instruments() {
    let toml = format!(
        "{VIEW_RULES}\n[[views]]\nplugin = \"drop-attributes\"\ninstruments = [\"inference.*\"]\nconfig = {{ keys = \"user\" }}\n"
    );
    let host = start(&toml).await;
    post_ndjson(&host, &user_events(50, 200)).await;
    post_ndjson(&host, &user_events(50, 100)).await;
    let exp = common::exposition(&host).await;
    assert_eq!(
        exp.value("inference_chunks_total", &[("model", "m1")]),
        Some(300.0),
        "every chunk lands in the one series without `user`"
    );
    assert_eq!(exp.count("inference_chunks_total"), 1);
    assert_eq!(
        exp.count("generations_total"),
        50,
        "other instruments keep `user`"
    );
    assert_eq!(
        exp.value("generations_total", &[("model", "m1"), ("user", "u7")]),
        Some(2.0)
    );
    assert_eq!(
        exp.value("wasmtel_intake_events_accepted_total", &[]),
        Some(400.0),
        "the host's own metrics are never viewed"
    );
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_plugin_is_asked_once_per_distinct_attribute_set() {
    use wasmtel::metrics::{AttributeView, Descriptor, Registry};
    use wasmtel::model::attributes::ValueRef;
    use wasmtel::model::metric::InstrumentKind;
    use wasmtel::plugins::{PluginSet, Reloadable, Viewer};

    /// Counts the questions that reach the plugin.
    struct Counting(
        Arc<wasmtel::plugins::PluginView>,
        std::sync::atomic::AtomicUsize,
    );
    impl AttributeView for Counting {
        fn map(
            &self,
            d: &Descriptor,
            a: &wasmtel::model::attributes::AttrsRef<'_>,
        ) -> wasmtel::metrics::Mapping {
            self.1.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.0.map(d, a)
        }
        fn generation(&self) -> u64 {
            self.0.generation()
        }
    }

    let set = PluginSet::new(&Default::default(), None).expect("plugins");
    let keys: toml::Table = toml::from_str("keys = \"user\"").expect("toml");
    let view = tokio::task::spawn_blocking(move || {
        let v = set
            .open::<Viewer>("drop-attributes", &keys, None, None)
            .expect("loads");
        assert_eq!(v.plugin(), "drop-attributes");
        v
    })
    .await
    .expect("join");
    let counting = Arc::new(Counting(view, Default::default()));
    let registry = Registry::new(100);
    registry.add_view(Arc::new(|_: &Descriptor| true), counting.clone());
    let chunks = registry
        .instrument(
            Descriptor {
                name: "chunks".into(),
                unit: String::new(),
                description: String::new(),
                kind: InstrumentKind::Counter,
                scope: "test".into(),
            },
            &[],
        )
        .expect("instrument");
    tokio::task::spawn_blocking(move || {
        for i in 0..1000 {
            let user = format!("u{}", i % 10);
            chunks.record(
                &[
                    ("model", ValueRef::Str("m")),
                    ("user", ValueRef::Str(&user)),
                ],
                1.0,
            );
        }
    })
    .await
    .expect("join");
    assert_eq!(counting.1.load(std::sync::atomic::Ordering::Relaxed), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_view_file_takes_over_and_a_broken_or_trapping_one_changes_nothing() {
    let logs = wasmtel_tests::capture_logs();
    let dir = tempfile_dir();
    let file = dir.join("viewer.wasm");
    let dropper = wasmtel::plugins::embedded::find("drop-attributes").expect("embedded");
    std::fs::write(&file, dropper).expect("write");
    std::fs::write(dir.join("viewer.toml"), "keys = \"user\"\ntag = \"v2\"\n").expect("write");
    let toml = format!(
        "{VIEW_RULES}\n[plugins]\ndir = \"{}\"\n[[views]]\nplugin = \"viewer\"\ninstruments = [\"inference.chunks\"]\n",
        dir.display()
    );
    let host = start(&toml).await;
    post_ndjson(&host, &user_events(3, 3)).await;

    // A file of the wrong world is rejected; the dropper keeps serving.
    replace_file(&file, &fixture(PASSTHROUGH));
    let shown = file.display().to_string();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while logs.count(&["rejected plugin file", &shown, "wrong world"]) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no rejection logged:\n{}",
            logs.text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    post_ndjson(&host, &user_events(3, 3)).await;

    // A valid view replaces it; its answers replace the cached ones.
    let tagger = fixture(env!("WASMTEL_FIXTURE_TAGGER"));
    replace_file(&file, &tagger);
    wait_for_version(&host, Some(&wasmtel::plugins::cache::digest(&tagger))).await;
    post_ndjson(&host, &user_events(3, 3)).await;
    let exp = common::exposition(&host).await;
    assert_eq!(
        exp.value("inference_chunks_total", &[("model", "m1")]),
        Some(6.0)
    );
    assert_eq!(
        exp.value(
            "inference_chunks_total",
            &[("model", "m1"), ("user", "u1"), ("viewed_by", "v2")]
        ),
        Some(1.0)
    );
    assert_eq!(exp.count("inference_chunks_total"), 4);
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trapping_view_fails_open_and_loses_no_measurement() {
    let dir = tempfile_dir();
    std::fs::copy(env!("WASMTEL_FIXTURE_TAGGER"), dir.join("tagger.wasm")).expect("copy");
    let toml = format!(
        "{VIEW_RULES}\n[plugins]\ndir = \"{}\"\n[[views]]\nplugin = \"tagger\"\nconfig = {{ trap = \"true\" }}\n",
        dir.display()
    );
    let host = start(&toml).await;
    for _ in 0..3 {
        post_ndjson(&host, &user_events(2, 10)).await;
    }
    let exp = common::exposition(&host).await;
    assert_eq!(exp.total("inference_chunks_total"), 30.0);
    assert_eq!(
        exp.value("inference_chunks_total", &[("model", "m1"), ("user", "u0")]),
        Some(15.0)
    );
    assert_eq!(exp.total("generations_total"), 6.0);
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_datadog_exporter_posts_series_v2_and_logs_with_the_key_only_the_host_holds() {
    let (addr, seen) = http_sink().await;
    let toml = format!(
        "{RULES}\n[resource.attributes]\n\"host.name\" = \"gpu-1\"\n\"service.version\" = \"9.9\"\n\"deployment.environment.name\" = \"test\"\n[[exporters]]\nplugin = \"datadog\"\nendpoint = \"http://{addr}/base\"\napi_key = \"dd-canary-key\"\ndelivery.interval = \"1h\"\nconfig = {{ tags = \"team:ml\" }}\n"
    );
    let host = start(&toml).await;
    let mut batch = events(2, &[2.5]);
    batch[2]["request_id"] = json!("req-1");
    batch[2]["trace_id"] = json!("0af7651916cd43dd8448eb211c80319c");
    batch[2]["span_id"] = json!("b7ad6b7169203331");
    post_ndjson(&host, &batch).await;
    host.collect_now().await;
    let mut got = received(&seen, 2).await;
    got.sort_by(|a, b| b.0.cmp(&a.0));
    let paths: Vec<&str> = got.iter().map(|(p, _, _)| p.as_str()).collect();
    assert_eq!(paths, ["/base/api/v2/series", "/base/api/v2/logs"]);
    for (_, headers, _) in &got {
        assert_eq!(headers["dd-api-key"], "dd-canary-key");
        assert_eq!(headers["content-type"], "application/json");
        assert_eq!(headers["content-encoding"], "gzip");
    }

    let series = &got[0].2;
    // The payload is what the public series v2 format allows, field by field.
    let payload: datadog_format::MetricPayload =
        serde_json::from_str(series).expect("MetricPayload");
    for s in &payload.series {
        assert!(matches!(s.r#type, Some(0..=3)), "{}", s.metric);
        assert_eq!(
            s.interval.is_some(),
            s.r#type == Some(1),
            "counts, and only counts, carry their interval: {}",
            s.metric
        );
        assert_eq!(s.points.len(), 1);
        assert!(s.points[0].timestamp > 0 && s.points[0].value.is_finite());
        assert_eq!(
            (s.resources[0].name.as_str(), s.resources[0].r#type.as_str()),
            ("gpu-1", "host")
        );
        assert!(s.tags.iter().any(|t| t == "team:ml"), "{:?}", s.tags);
        assert!(s.unit.is_none() && s.source_type_name.is_none() && s.metadata.is_none());
    }
    let logs = &got[1].2;
    let items: Vec<datadog_format::HttpLogItem> =
        serde_json::from_str(logs).expect("HTTPLogItem list");
    assert_eq!(items.len(), 3);
    for i in &items {
        assert_eq!(i.ddsource.as_deref(), Some("wasmtel"));
        assert!(!i.message.is_empty());
        assert_eq!(
            (
                i.hostname.as_deref(),
                i.service.as_deref(),
                i.status.as_deref()
            ),
            (Some("gpu-1"), Some("wasmtel"), Some("info"))
        );
        assert!(i.ddtags.as_deref().is_some_and(|t| t.contains("team:ml")));
    }
    let ddtags = "team:ml,service:wasmtel,version:9.9,env:test";
    let completed = format!(
        r#"{{"dd.span_id":"13235353014750950193","dd.trace_id":"9532127138774266268","ddsource":"wasmtel","ddtags":"{ddtags}","gen_ai.request.model":"m1","hostname":"gpu-1","inference.metric.total_duration_ms":2.5,"inference.request.id":"req-1","message":"generation_completed","otel.span_id":"b7ad6b7169203331","otel.trace_id":"0af7651916cd43dd8448eb211c80319c","service":"wasmtel","status":"info"}}"#
    );
    let chunk = format!(
        r#"{{"ddsource":"wasmtel","ddtags":"{ddtags}","gen_ai.request.model":"m1","hostname":"gpu-1","message":"chunk_produced","service":"wasmtel","status":"info"}}"#
    );
    assert_eq!(logs, &format!("[{chunk},{chunk},{completed}]"));
    assert!(!logs.contains("dd-canary-key") && !series.contains("dd-canary-key"));
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plugin_classifies_responses_and_the_host_retries_after_the_time_it_names() {
    let (addr, seen) = scripted_sink(vec![
        ("/base/api/v2/series", 503, vec![("Retry-After", "1")], ""),
        ("/base/api/v2/logs", 403, vec![], ""),
    ])
    .await;
    let toml = format!(
        "{RULES}\n[[exporters]]\nplugin = \"datadog\"\nendpoint = \"http://{addr}/base\"\napi_key = \"k\"\ndelivery.interval = \"1h\"\n"
    );
    let host = start(&toml).await;
    post_ndjson(&host, &events(1, &[])).await;
    let started = std::time::Instant::now();
    host.collect_now().await;
    let sent = |path: &str| -> Vec<String> {
        let seen = seen.lock().expect("lock");
        seen.iter()
            .filter(|r| r.0 == path)
            .map(|r| r.2.clone())
            .collect()
    };
    common::eventually("the retried series request", || {
        sent("/base/api/v2/series").len() == 2
    })
    .await;
    let waited = started.elapsed();
    received(&seen, 3).await;
    // Metrics: 503, then a second later the same body again (202). Logs: 403, never retried.
    let series = sent("/base/api/v2/series");
    assert_eq!(series.len(), 2, "{series:?}");
    assert_eq!(series[0], series[1]);
    assert_eq!(sent("/base/api/v2/logs").len(), 1);
    assert!(
        waited >= Duration::from_secs(1),
        "Retry-After honoured: {waited:?}"
    );
    let exp = common::exposition(&host).await;
    let batches = |signal: &str, outcome: &str| {
        exp.value(
            "wasmtel_export_batches_total",
            &[
                ("integration", "datadog"),
                ("signal", signal),
                ("outcome", outcome),
            ],
        )
    };
    assert_eq!(batches("metrics", "ok"), Some(1.0));
    assert_eq!(batches("logs", "failed"), Some(1.0));
    assert_eq!(
        batches("metrics", "failed"),
        None,
        "a retried request is not a failed export"
    );
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_transform_file_takes_over_the_chain() {
    let (socket, port) = udp_listener();
    let dir = tempfile_dir();
    let file = dir.join("shaper.wasm");
    std::fs::write(
        &file,
        wasmtel::plugins::embedded::find("redact").expect("embedded"),
    )
    .expect("write");
    let toml = format!(
        "{RULES}\n[plugins]\ndir = \"{}\"\n[[transforms]]\nplugin = \"shaper\"\nconfig = {{ drop = \"model\" }}\n[[exporters]]\nplugin = \"statsd\"\nendpoint = \"udp://127.0.0.1:{port}\"\ndelivery.interval = \"1h\"\n",
        dir.display()
    );
    let host = start(&toml).await;
    post_ndjson(&host, &events(2, &[])).await;
    host.collect_now().await;
    assert!(receive_lines(&socket).contains(&"inference.chunks:2|c".to_owned()));

    let passthrough = fixture(PASSTHROUGH);
    replace_file(&file, &passthrough);
    wait_for_version(&host, Some(&wasmtel::plugins::cache::digest(&passthrough))).await;
    post_ndjson(&host, &events(3, &[])).await;
    host.collect_now().await;
    assert!(receive_lines(&socket).contains(&"inference.chunks;model=m1:3|c".to_owned()));
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_success_is_logged_and_never_retried() {
    let logs = wasmtel_tests::capture_logs();
    let (addr, seen) = scripted_sink(vec![("/base/logs", 200, vec![], "rejected:2")]).await;
    let host = loglines_host(addr, "", "").await;
    post_ndjson(&host, &events(3, &[])).await;
    let report = || {
        host.integrations()
            .into_iter()
            .find(|r| r.integration == "loglines")
            .expect("report")
    };
    common::eventually("the export", || report().status.sent == 1).await;
    assert_eq!(received(&seen, 1).await.len(), 1, "not retried");
    assert_eq!(logs.count(&["partial success: some lines refused"]), 1);
    let report = report();
    assert_eq!((report.status.sent, report.status.rejected), (1, 2));
    assert_eq!(
        report.status.last_error.as_deref(),
        Some("partial success: some lines refused")
    );
    let exp = common::exposition(&host).await;
    assert_eq!(
        exp.value(
            "wasmtel_export_batches_total",
            &[
                ("integration", "loglines"),
                ("outcome", "ok"),
                ("signal", "logs")
            ]
        ),
        Some(1.0)
    );
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transforms_rewrite_metrics_and_logs_received_over_otlp() {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::metrics::v1::{
        Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric::Data,
        number_data_point,
    };
    use prost::Message;

    use wasmtel_tests::kv;
    let attributes = vec![kv("region", "eu"), kv("zone", "a")];
    let resource = Some(opentelemetry_proto::tonic::resource::v1::Resource {
        attributes: vec![kv("service.name", "app")],
        ..Default::default()
    });
    let metrics = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: resource.clone(),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "depth".into(),
                    data: Some(Data::Gauge(Gauge {
                        data_points: vec![NumberDataPoint {
                            attributes: attributes.clone(),
                            value: Some(number_data_point::Value::AsDouble(3.0)),
                            ..Default::default()
                        }],
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            schema_url: String::new(),
        }],
    };
    let logs = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource,
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord {
                    attributes,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            schema_url: String::new(),
        }],
    };
    let receiver = wasmtel_tests::Receiver::start().await;
    let toml = format!(
        "[[transforms]]\nplugin = \"redact\"\nconfig = {{ drop = \"region\" }}\n[otlp]\nendpoint = \"{}\"\ndelivery.interval = \"1h\"\n",
        receiver.endpoint()
    );
    let host = start(&toml).await;
    let client = reqwest::Client::new();
    for (path, body) in [
        ("metrics", metrics.encode_to_vec()),
        ("logs", logs.encode_to_vec()),
    ] {
        let response = client
            .post(format!("http://{}/v1/{path}", host.intake_addr()))
            .header("content-type", "application/x-protobuf")
            .body(body)
            .send()
            .await
            .expect("intake");
        assert_eq!(response.status(), 200);
    }
    host.collect_now().await;
    receiver
        .wait_until("metrics and logs", |r| {
            !r.metrics.is_empty() && !r.logs.is_empty()
        })
        .await;
    receiver.with(|r| {
        let app = wasmtel_tests::resource_of(&r.metrics[0], "app");
        let Some(Data::Gauge(g)) = &app.scope_metrics[0].metrics[0].data else {
            panic!("a gauge")
        };
        let keys: Vec<&str> = g.data_points[0]
            .attributes
            .iter()
            .map(|kv| kv.key.as_str())
            .collect();
        assert_eq!(
            keys,
            ["zone"],
            "the transform dropped region from the received metric"
        );
        let record = &r.logs[0].resource_logs[0].scope_logs[0].log_records[0];
        let keys: Vec<&str> = record.attributes.iter().map(|kv| kv.key.as_str()).collect();
        assert_eq!(keys, ["zone"], "and from the received log record");
    });
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_exporter_pauses_after_ten_failed_exports_until_resumed() {
    let (addr, seen) = scripted_sink(
        (0..10)
            .map(|_| ("/base/logs", 500, vec![], "down"))
            .collect(),
    )
    .await;
    let host = loglines_host(addr, "", "").await;
    let state = |host: &wasmtel::Host| {
        let r = host
            .integrations()
            .into_iter()
            .find(|r| r.integration == "loglines");
        r.expect("report").status
    };
    for n in 1..=10 {
        post_ndjson(&host, &events(1, &[])).await;
        common::eventually("a failed export", || state(&host).failed == n).await;
    }
    let status = state(&host);
    assert_eq!(status.state, wasmtel::export::delivery::State::Paused);
    assert_eq!(status.failed, 10);
    assert_eq!(seen.lock().expect("lock").len(), 10);
    post_ndjson(&host, &events(1, &[])).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        seen.lock().expect("lock").len(),
        10,
        "nothing is sent while paused"
    );
    assert!(host.resume("loglines"));
    assert_eq!(
        received(&seen, 11).await.len(),
        11,
        "the sink answers 202 again"
    );
    common::eventually("connected", || {
        state(&host).state == wasmtel::export::delivery::State::Connected
    })
    .await;
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_exporters_log_records_stay_queued_through_a_failed_export() {
    let (addr, seen) = scripted_sink(
        (0..4)
            .map(|_| ("/base/logs", 503, vec![("retry-after", "0")], "busy"))
            .collect(),
    )
    .await;
    let host = loglines_host(addr, "", "delivery.logs_queue = 100\n").await;
    post_ndjson(&host, &events(1, &[])).await;
    let report = || {
        host.integrations()
            .into_iter()
            .find(|r| r.integration == "loglines")
            .expect("report")
    };
    // One try and three retries fail; the records stay queued and the next export delivers them.
    let requests = received(&seen, 5).await;
    assert_eq!(requests.len(), 5);
    assert_eq!(
        requests[4].2, requests[0].2,
        "the same records, delivered now"
    );
    common::eventually("the delivered export", || report().status.sent == 1).await;
    let delivered = report();
    assert_eq!(
        (
            delivered.status.failed,
            delivered.status.retried,
            delivered.status.sent,
            delivered.items.queued
        ),
        (1, 3, 1, 0)
    );
    host.shutdown().await;
}

#[test]
fn plugins_run_shows_what_each_kind_would_do_and_sends_nothing() {
    use wasmtel::trial::Sample;
    let runtime = wasmtel::plugins::Runtime::shared().expect("runtime");
    let run = |name: &str, bytes: &[u8], settings: &[(String, String)], sample: &Sample| {
        let component = runtime.compile(bytes)?;
        wasmtel::trial::run(&runtime, name, &component, settings, sample)
    };
    let events = Sample::Events(
        b"{\"event_type\":\"generation_completed\",\"model\":\"m1\",\"engine\":\"vllm\",\"metrics\":{\"total_duration_ms\":120}}\n"
            .to_vec(),
    );
    let report = run("statsd", statsd(), &[], &events).expect("exporter");
    assert!(
        report.starts_with(
            "statsd: exporter (signals: metrics; temporality: delta)\nmetrics: 1 outbound\nUDP "
        ),
        "{report}"
    );
    assert!(
        report
            .lines()
            .any(|l| l == "inference.requests;gen_ai.request.model=m1;inference.engine=vllm:1|c"),
        "{report}"
    );
    let redact = wasmtel::plugins::embedded::find("redact").expect("embedded");
    let settings = [("drop".to_owned(), "inference.engine".to_owned())];
    let report = run("redact", redact, &settings, &events).expect("transform");
    assert!(
        report.starts_with(
            "redact: transform (signals: metrics, logs, traces; reads: metrics attributes, logs attributes+entries+payload, traces attributes+entries; keys gen_ai.prompt*,gen_ai.completion*,gen_ai.input.messages,gen_ai.output.messages,gen_ai.system_instructions,gen_ai.tool.call.arguments,gen_ai.tool.call.result,inference.engine)\nmetrics after the transform (OTLP/JSON):\n"
        ),
        "{report}"
    );
    assert!(
        report.contains("gen_ai.request.model") && !report.contains("\"inference.engine\""),
        "{report}"
    );
    assert!(
        report.contains("log records after the transform:"),
        "{report}"
    );
    // With nothing to redact it reads nothing, and is never called: the batch stays whole.
    let settings = [("content".to_owned(), String::new())];
    let report = run("redact", redact, &settings, &events).expect("transform");
    assert!(
        report.starts_with("redact: transform (signals: none; reads: nothing)\n"),
        "{report}"
    );
    assert!(report.contains("\"inference.engine\""), "{report}");
    let view = wasmtel::plugins::embedded::find("drop-attributes").expect("embedded");
    let settings = [("keys".to_owned(), "inference.engine".to_owned())];
    let report = run("drop-attributes", view, &settings, &events).expect("view");
    assert!(
        report.contains(&format!(
            "inference_requests_total{{gen_ai_request_model=\"m1\",otel_scope_name=\"wasmtel.derive\",otel_scope_version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )),
        "the engine is gone: {report}"
    );
    // OTLP/JSON metrics as the sample.
    let batch = Sample::Metrics(
        br#"{"resourceMetrics":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"app"}}]},"scopeMetrics":[{"metrics":[{"name":"depth","gauge":{"dataPoints":[{"asDouble":3}]}}]}]}]}"#
            .to_vec(),
    );
    let report = run("statsd", statsd(), &[], &batch).expect("exporter on OTLP");
    assert!(report.lines().any(|l| l == "UDP depth:3|g"), "{report}");
    // A broken sample is named.
    let broken = Sample::Metrics(b"{".to_vec());
    let error = run("statsd", statsd(), &[], &broken).expect_err("not OTLP/JSON");
    assert!(
        error
            .to_string()
            .starts_with("not an OTLP/JSON ExportMetricsServiceRequest"),
        "{error}"
    );
}

#[test]
fn a_python_exception_is_named_first_with_the_file_and_line_it_came_from() {
    // The Python example with a bug two calls deep.
    let source = tempfile_dir();
    let app = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/python-exporter/app.py"
    ))
    .expect("app.py");
    let app = app.replacen(
        "        t = batch.table",
        "        helper(batch)\n        t = batch.table",
        1,
    ) + "\n\ndef helper(batch):\n    return deeper(batch)\n\n\ndef deeper(batch):\n    raise ValueError(\"no metric named x\")\n";
    std::fs::write(source.join("app.py"), app).expect("write");
    let wit = wasmtel_tests::wit_dir();
    let args = ["-d", &wit, "-w", "exporter", "componentize", "app", "-o"];
    let Some(dir) = wasmtel_tests::build_from("componentize-py", &args, &source, "buggy") else {
        return;
    };
    let runtime = wasmtel::plugins::Runtime::shared().expect("runtime");
    let bytes = std::fs::read(dir.join("buggy.wasm")).expect("built");
    let component = runtime.compile(&bytes).expect("compiles");
    let plugin = wasmtel::plugins::ExporterPlugin::load(
        &runtime,
        "buggy",
        &component,
        Vec::new(),
        wasmtel::plugins::Limits::default(),
        &wasmtel::plugins::Stats::default(),
    )
    .expect("loads");
    let registry = wasmtel::metrics::Registry::new(10);
    let resource = wasmtel::sources::resource::detect(&Default::default());
    let error = plugin
        .encode_metrics(&metric_batch(&registry, &resource, None).batch)
        .expect_err("raises")
        .to_string();
    assert!(
        error.starts_with("plugin `buggy` trapped: ValueError: no metric named x (at app.py:")
            && error.contains(" in deeper < app.py:")
            && error.contains(" in helper < app.py:")
            && error.contains(" in encode_metrics); wasm trap:"),
        "{error}"
    );
}

/// Runs the example exporter `name` (built into `dir`, posting lines to the path it is told)
/// in a host and checks the lines reach a real HTTP receiver.
async fn example_delivers(dir: &std::path::Path, name: &str) {
    let (addr, seen) = http_sink().await;
    std::fs::write(
        dir.join(format!("{name}.toml")),
        format!("path = \"/{name}\"\n"),
    )
    .expect("settings");
    let host = start(&format!(
        "{RULES}\n[plugins]\ndir = \"{}\"\n[[exporters]]\nplugin = \"{name}\"\nendpoint = \"http://{addr}/base\"\ndelivery.interval = \"1h\"\n",
        dir.display()
    ))
    .await;
    post_ndjson(&host, &events(2, &[1.0])).await;
    host.collect_now().await;
    let got = received(&seen, 1).await;
    let (path, headers, body) = &got[0];
    assert_eq!(path, &format!("/base/{name}"));
    assert_eq!(headers["content-type"], "text/plain");
    assert!(
        body.lines()
            .any(|l| l == "inference.chunks{model=\"m1\"} 2"),
        "{body}"
    );
    let row = plugin_row(&host, name);
    assert_eq!(
        row.stats.calls.get("ok").copied(),
        Some(3),
        "init, one encode and its classify"
    );
    eprintln!(
        "{name}: mean call {:.1} µs, memory {:.1} MiB",
        row.stats.mean_call_seconds * 1e6,
        row.stats.memory_bytes as f64 / 1048576.0
    );
    host.shutdown().await;
}

/// The row of plugin `name` in the host's plugin list.
fn plugin_row(host: &wasmtel::Host, name: &str) -> wasmtel::plugins::set::Row {
    host.plugin_health()
        .into_iter()
        .find(|row| row.plugin == name)
        .expect("listed")
}

/// Uploads the example exporter `name` (built into `dir`) as a tenant's plugin, runs it in an
/// integration of that tenant and checks the tenant's own data reaches a real HTTP receiver.
async fn example_uploaded_by_a_tenant(dir: &std::path::Path, name: &str) {
    let (addr, seen) = http_sink().await;
    let data = tempfile_dir();
    let host = start(&format!(
        "data_dir = \"{}\"\n{RULES}\n[tenancy]\nkey = \"service.namespace\"\n",
        data.display()
    ))
    .await;
    let operator = std::fs::read_to_string(data.join("admin.token")).expect("token");
    let admin = format!("http://{}/api/v1", host.admin_addr().expect("admin"));
    let client = reqwest::Client::new();
    let send = |method: reqwest::Method, path: &str, token: &str, body: Vec<u8>| {
        client
            .request(method, format!("{admin}{path}"))
            .bearer_auth(token.trim())
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let created = send(
        reqwest::Method::POST,
        "/tenants",
        &operator,
        br#"{"name":"t"}"#.to_vec(),
    )
    .await
    .expect("tenant");
    let created: serde_json::Value =
        serde_json::from_str(&created.text().await.expect("body")).expect("json");
    let (tenant, intake) = (
        created["admin_token"].as_str().expect("admin token"),
        created["intake_token"].as_str().expect("intake token"),
    );
    let component = std::fs::read(dir.join(format!("{name}.wasm"))).expect("component");
    let uploaded = send(
        reqwest::Method::PUT,
        &format!("/plugins/{name}"),
        tenant,
        component,
    )
    .await
    .expect("upload");
    let status = uploaded.status().as_u16();
    assert_eq!(status, 200, "{}", uploaded.text().await.unwrap_or_default());
    let integration = json!({ "kind": "metrics", "type": name, "name": name,
        "endpoint": format!("http://{addr}/base"), "config": { "path": format!("/{name}") } });
    let made = send(
        reqwest::Method::POST,
        "/integrations",
        tenant,
        integration.to_string().into_bytes(),
    )
    .await
    .expect("integration");
    assert_eq!(
        made.status().as_u16(),
        201,
        "{}",
        made.text().await.unwrap_or_default()
    );
    let posted = client
        .post(format!("http://{}/v1/events", host.intake_addr()))
        .bearer_auth(intake)
        .header("content-type", "application/x-ndjson")
        .body(wasmtel_tests::ndjson(&events(2, &[1.0])))
        .send()
        .await
        .expect("events");
    assert_eq!(posted.status().as_u16(), 202);
    host.collect_now().await;
    let got = received(&seen, 1).await;
    let (path, _, body) = &got[0];
    assert_eq!(path, &format!("/base/{name}"));
    assert!(
        body.lines()
            .any(|l| l == "inference.chunks{model=\"m1\"} 2"),
        "{body}"
    );
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_exporter_delivers_through_a_running_host() {
    let name = "python-exporter";
    if let Some(dir) = wasmtel_tests::python_example() {
        example_delivers(&dir, name).await;
        example_uploaded_by_a_tenant(&dir, name).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_javascript_exporter_delivers_through_a_running_host() {
    let name = "js-exporter";
    if let Some(dir) = wasmtel_tests::js_example() {
        example_delivers(&dir, name).await;
        example_uploaded_by_a_tenant(&dir, name).await;
    }
}

#[test]
fn an_unchanged_collection_is_encoded_straight_from_the_engine_and_any_edit_sends_it_whole() {
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::metrics::v1::metric::Data;
    use prost::Message as _;
    use wasmtel::export::otlp::metrics::{encode_all, encode_unchanged};
    use wasmtel::metrics::{Descriptor, Registry};
    use wasmtel::model::attributes::ValueRef;
    use wasmtel::model::metric::InstrumentKind;
    use wasmtel::plugins::{Link, Slot, TransformPlugin, Transforms};

    let registry = Registry::new(100);
    let counter = registry
        .instrument(
            Descriptor {
                name: "requests".into(),
                unit: "{request}".into(),
                description: String::new(),
                kind: InstrumentKind::Counter,
                scope: "test".into(),
            },
            &[],
        )
        .expect("counter");
    for tier in ["free", "pro", "team"] {
        counter.record(&[("tier", ValueRef::Str(tier))], 2.0);
    }
    let resource = wasmtel::sources::resource::detect(&Default::default());
    let producers = [(0, &resource, &registry)];
    let runtime = Runtime::shared().expect("runtime");
    let chain = |name: &str, bytes: &[u8], config: &[(&str, &str)]| {
        let component = runtime.compile(bytes).expect("compiles");
        let plugin = TransformPlugin::load(
            &runtime,
            name,
            &component,
            settings(config),
            Limits::default(),
            &Stats::default(),
        )
        .map(|p| (p, String::new()));
        let slot = Arc::new(Slot::new(name, Default::default(), plugin));
        Transforms::new(vec![Link::new(slot, wasmtel::config::OnFailure::Open)])
    };
    // The request with every point's time cleared (each encoding reads the clock).
    let timeless = |bytes: &[u8]| {
        let mut request = ExportMetricsServiceRequest::decode(bytes).expect("a request");
        for m in request
            .resource_metrics
            .iter_mut()
            .flat_map(|r| &mut r.scope_metrics)
            .flat_map(|s| &mut s.metrics)
        {
            if let Some(Data::Sum(sum)) = &mut m.data {
                sum.data_points
                    .iter_mut()
                    .for_each(|p| p.time_unix_nano = 0);
            }
        }
        request
    };
    let keep = |_: &str| true;
    let direct = timeless(&encode_all(&producers, None, &keep));
    let keyed = [("reads.metrics", "attributes"), ("attribute_keys", "tier")];
    let passthrough = std::fs::read(PASSTHROUGH).expect("fixture");
    // Reading only `tier` and changing nothing: the request is the one without transforms.
    let keyed_chain = chain("keyed-probe", &passthrough, &keyed);
    let probed = encode_unchanged(&producers, &keyed_chain, &keep).expect("straight");
    assert_eq!(timeless(&probed), direct);
    // The embedded `redact` names its keys: a collection without content is encoded straight.
    let redact_bytes = wasmtel::plugins::embedded::find("redact").expect("embedded");
    let redact = chain("redact-probe", redact_bytes, &[]);
    assert_eq!(
        timeless(&encode_unchanged(&producers, &redact, &keep).expect("straight")),
        direct
    );
    // A transform that would edit, one that reads more than named keys' attributes, and one
    // that names no keys: the whole batches must go through them.
    let reported = [
        ("reads.metrics", "attributes"),
        ("attribute_keys", "tier"),
        ("report", "seen"),
    ];
    let more = [
        ("reads.metrics", "attributes+entries"),
        ("attribute_keys", "tier"),
    ];
    let unnamed = [("reads.metrics", "attributes")];
    for (what, config) in [
        ("an edit", &reported[..]),
        ("entries read", &more[..]),
        ("no keys named", &unnamed[..]),
    ] {
        let transforms = chain("probe-refused", &passthrough, config);
        assert!(
            encode_unchanged(&producers, &transforms, &keep).is_none(),
            "{what}"
        );
    }
    // A series carrying prompt content, created after the others: `redact` edits it, so the
    // collection never leaves straight from the engine.
    counter.record(&[("gen_ai.prompt", ValueRef::Str("my secret"))], 1.0);
    assert!(encode_unchanged(&producers, &redact, &keep).is_none());
}
