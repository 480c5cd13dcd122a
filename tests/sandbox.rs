//! The plugin sandbox attacked from inside: hostile components (built by `tests/build.rs` from
//! `tests/fixtures/rogue*`, or written here in component text) try each escape, and each test
//! fails if the escape works.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Api, CHUNK_RULE, eventually, exposition, post_ndjson, start};
use prost::Message;
use serde_json::json;
use wasmtel::metrics::{AttributeView, Descriptor, Mapping, Registry};
use wasmtel::model::attributes::ValueRef;
use wasmtel::model::metric::InstrumentKind;
use wasmtel::plugins::bindings::encoder::Response;
use wasmtel::plugins::convert::metric_batch;
use wasmtel::plugins::view::ViewPlugin;
use wasmtel::plugins::{
    CallError, ExporterPlugin, Failure, Health, Limits, PluginError, PluginView, Runtime, Stats,
    TransformPlugin,
};

const ROGUE: &str = env!("WASMTEL_FIXTURE_ROGUE");
const ROGUE_VIEW: &str = env!("WASMTEL_FIXTURE_ROGUE_VIEW");
const ROGUE_TRANSFORM: &str = env!("WASMTEL_FIXTURE_ROGUE_TRANSFORM");
const HELLO: &str = env!("WASMTEL_FIXTURE_HELLO_EXPORTER");

/// How long a sleeping plugin asks to sleep (far past anything a test waits for).
const NAP_MS: &str = "20000";
/// Far under the nap and far over the deadline: a call back within it did not sleep.
const BOUND: Duration = Duration::from_secs(5);
/// The default deadline of a plugin call.
const DEADLINE: Duration = Duration::from_millis(100);
/// A credential the backends echo; it must never come back out of the host.
const CANARY: &str = "canary-9f1c-5ecret-key";

fn runtime() -> Arc<Runtime> {
    Runtime::shared().expect("runtime")
}

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(path).expect("fixture built by tests/build.rs")
}

fn settings(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn rogue(config: &[(&str, &str)]) -> Result<ExporterPlugin, PluginError> {
    let runtime = runtime();
    let component = runtime.compile(&fixture(ROGUE)).expect("compiles");
    ExporterPlugin::load(
        &runtime,
        "rogue",
        &component,
        settings(config),
        Limits::default(),
        &Stats::default(),
    )
}

/// One counter's batch, for `encode` and transform calls.
fn batch() -> wasmtel::plugins::bindings::types::MetricBatch {
    let registry = Registry::new(10);
    let counter = registry.instrument(descriptor("c"), &[]).expect("counter");
    counter.record(&[("model", ValueRef::Str("m"))], 1.0);
    metric_batch(
        &registry,
        &wasmtel::sources::resource::detect(&Default::default()),
        None,
    )
    .batch
}

fn descriptor(name: &str) -> Descriptor {
    Descriptor {
        name: name.into(),
        unit: String::new(),
        description: String::new(),
        kind: InstrumentKind::Counter,
        scope: "test".into(),
    }
}

/// Runs `f`, asserting that it came back within [`BOUND`].
fn bounded<R>(what: &str, f: impl FnOnce() -> R) -> R {
    let started = Instant::now();
    let out = f();
    assert!(
        started.elapsed() < BOUND,
        "{what} took {:?}: a plugin blocked the host",
        started.elapsed()
    );
    out
}

fn deadline_hit(name: &str) -> CallError {
    CallError::Failed(Arc::from(name), Failure::Deadline(DEADLINE))
}

#[test]
fn sleeping_through_wasi_is_cut_at_the_deadline_in_every_entry_point() {
    // init: the plugin is refused, naming the deadline.
    let refused = bounded("init", || {
        rogue(&[("sleep_in", "init"), ("sleep_ms", NAP_MS)])
    });
    match refused {
        Err(PluginError::Init(e)) => assert_eq!(e, deadline_hit("rogue")),
        Err(e) => panic!("unexpected {e}"),
        Ok(_) => panic!("a plugin sleeping in init was loaded"),
    }

    // encode: the batch fails, the plugin restarts later.
    let encoder = rogue(&[("sleep_in", "encode"), ("sleep_ms", NAP_MS)]).expect("loads");
    let err = bounded("encode", || encoder.encode_metrics(&batch())).expect_err("deadline");
    assert_eq!(err, deadline_hit("rogue"));
    assert!(matches!(encoder.health(), Health::Restarting(r) if r.contains("deadline")));

    // classify: every call past the deadline counts, even with successful encodes between them,
    // until the plugin is marked failed.
    let classifier = rogue(&[("sleep_in", "classify"), ("sleep_ms", NAP_MS)]).expect("loads");
    let answer = Response {
        status: 400,
        headers: Vec::new(),
        body: b"no".to_vec(),
    };
    let give_up = Instant::now() + Duration::from_secs(30);
    while !matches!(classifier.health(), Health::Failed(_)) {
        let _ = classifier.encode_metrics(&batch());
        bounded("classify", || classifier.classify(&answer));
        assert!(
            Instant::now() < give_up,
            "a classify past its deadline never failed the plugin"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let Health::Failed(reason) = classifier.health() else {
        unreachable!()
    };
    assert_eq!(
        reason,
        "5 failures within 60s, the last: plugin `rogue` call exceeded its 100ms deadline (plugins.call_timeout raises it)"
    );

    // A view's map: the measurement keeps its attributes.
    let runtime = runtime();
    let component = runtime.compile(&fixture(ROGUE_VIEW)).expect("compiles");
    let plugin = ViewPlugin::load(
        &runtime,
        "rogue_view",
        &component,
        settings(&[("sleep_ms", NAP_MS)]),
        Limits::default(),
        &Stats::default(),
    )
    .expect("loads");
    let view = PluginView::new(
        "rogue_view",
        toml::Table::new(),
        Ok((plugin, "digest".into())),
    );
    let mapped = bounded("view map", || {
        view.map(&descriptor("c"), &[("model", ValueRef::Str("m"))])
    });
    assert_eq!(mapped, Mapping::Unavailable);

    // A transform: the call fails (and the chain applies its on_failure).
    let component = runtime
        .compile(&fixture(ROGUE_TRANSFORM))
        .expect("compiles");
    let transform = TransformPlugin::load(
        &runtime,
        "rogue_transform",
        &component,
        settings(&[("sleep_ms", NAP_MS)]),
        Limits::default(),
        &Stats::default(),
    )
    .expect("loads");
    let err = bounded("transform", || transform.metrics(&mut batch())).expect_err("deadline");
    assert_eq!(err, deadline_hit("rogue_transform"));
}

#[test]
fn plugins_list_and_check_are_bounded_by_the_deadline() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("sleepy.wasm"), fixture(ROGUE)).expect("copy");
    std::fs::write(
        dir.path().join("sleepy.toml"),
        format!("sleep_in = \"init\"\nsleep_ms = {NAP_MS}\n"),
    )
    .expect("config");
    let config = wasmtel::config::PluginsConfig {
        dir: dir.path().to_owned(),
        ..Default::default()
    };
    let entries = bounded("plugins list", || {
        wasmtel::plugins::inspect::list(&runtime(), &config)
    });
    let sleepy = entries.iter().find(|e| e.name == "sleepy").expect("listed");
    let reason = sleepy.world.as_ref().expect_err("refused").to_string();
    assert_eq!(
        reason,
        "call exceeded its 100ms deadline (plugins.call_timeout raises it)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_is_not_held_by_a_plugin_sleeping_in_encode() {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
    let port = socket.local_addr().expect("addr").port();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("sleepy.wasm"), fixture(ROGUE)).expect("copy");
    let host = start(&format!(
        "shutdown_timeout = \"3s\"\n{CHUNK_RULE}\n[plugins]\ndir = \"{}\"\n[[exporters]]\nplugin = \"sleepy\"\nendpoint = \"udp://127.0.0.1:{port}\"\ndelivery.interval = \"1h\"\nconfig = {{ sleep_in = \"encode\", sleep_ms = {NAP_MS} }}\n",
        dir.path().display()
    ))
    .await;
    let chunk = json!({"event_type": "chunk_produced", "model": "m"});
    assert_eq!(post_ndjson(&host, &[chunk]).await.status, 202);
    let started = Instant::now();
    host.shutdown().await;
    assert!(
        started.elapsed() < BOUND,
        "shutdown took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replacement_that_sleeps_in_init_is_refused_without_holding_the_watcher() {
    let logs = wasmtel_tests::capture_logs();
    let (addr, _seen) = sink(202).await;
    let dir = tempfile::tempdir().expect("tempdir");
    for name in ["drowsy", "lively"] {
        std::fs::write(dir.path().join(format!("{name}.wasm")), fixture(HELLO)).expect("copy");
    }
    let host = start(&format!(
        "{CHUNK_RULE}\n[plugins]\ndir = \"{}\"\n[plugins.config.drowsy]\nsleep_in = \"init\"\nsleep_ms = {NAP_MS}\n[[exporters]]\nplugin = \"drowsy\"\nendpoint = \"http://{addr}/base\"\ndelivery.interval = \"1h\"\n[[exporters]]\nplugin = \"lively\"\nendpoint = \"http://{addr}/base\"\ndelivery.interval = \"1h\"\n",
        dir.path().display()
    ))
    .await;
    let hello = digest(&fixture(HELLO));
    let rogue = digest(&fixture(ROGUE));
    replace(&dir.path().join("drowsy.wasm"), &fixture(ROGUE));
    eventually("the sleeping replacement refused", || {
        logs.count(&["drowsy", "exceeded its 100ms deadline"]) > 0
    })
    .await;
    let started = Instant::now();
    replace(&dir.path().join("lively.wasm"), &fixture(ROGUE));
    eventually("the other plugin swapped", || {
        versions(&host).contains(&("lively".to_owned(), Some(rogue.clone())))
    })
    .await;
    assert!(started.elapsed() < BOUND, "the watcher was held");
    assert!(versions(&host).contains(&("drowsy".to_owned(), Some(hello))));
    host.shutdown().await;
}

fn versions(host: &wasmtel::Host) -> Vec<(String, Option<String>)> {
    host.plugin_versions()
}

fn digest(bytes: &[u8]) -> String {
    wasmtel::plugins::cache::digest(bytes)
}

/// Writes a file the way deployments should: a temporary file renamed into place.
fn replace(path: &std::path::Path, bytes: &[u8]) {
    let tmp = path.with_extension("partial");
    std::fs::write(&tmp, bytes).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

/// What an HTTP sink received: method and path, headers, body.
type Seen = Arc<std::sync::Mutex<Vec<(String, axum::http::HeaderMap, Vec<u8>)>>>;

/// An HTTP server on loopback that records every request on any path and answers `status`,
/// echoing the request's `x-…` and `authorization` headers in its body (as careless backends do).
async fn sink(status: u16) -> (std::net::SocketAddr, Seen) {
    let seen: Seen = Arc::default();
    let store = seen.clone();
    let app = axum::Router::new().fallback(
        move |uri: axum::http::Uri, headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let store = store.clone();
            async move {
                let echo: String = headers
                    .iter()
                    .filter(|(k, _)| k.as_str().starts_with("x-") || k.as_str() == "authorization")
                    .map(|(k, v)| format!("{k}: {}; ", v.to_str().unwrap_or("")))
                    .collect();
                store
                    .lock()
                    .expect("lock")
                    .push((uri.path().to_owned(), headers, body.to_vec()));
                (
                    axum::http::StatusCode::from_u16(status).expect("status"),
                    format!("bad request, you sent {echo}"),
                )
            }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    (addr, seen)
}

/// The `last_error` of integration `name`'s metrics, once it has one.
async fn last_error(host: &wasmtel::Host, name: &str) -> String {
    let read = || {
        host.integrations()
            .iter()
            .find(|r| r.integration == name && r.signal == "metrics")
            .and_then(|r| {
                serde_json::to_value(r).ok()?["last_error"]
                    .as_str()
                    .map(str::to_owned)
            })
    };
    eventually(&format!("an error for {name}"), || read().is_some()).await;
    read().expect("error")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_echoed_credential_never_leaves_the_host() {
    let logs = wasmtel_tests::capture_logs();
    let (addr, seen) = sink(400).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("honest.wasm"), fixture(HELLO)).expect("copy");
    std::fs::write(dir.path().join("snoop.wasm"), fixture(ROGUE)).expect("copy");
    let host = start(&format!(
        "data_dir = \"{}\"\n{CHUNK_RULE}\n[plugins]\ndir = \"{}\"\n[delivery.retry]\nmax_retries = 0\n\
         [[exporters]]\nplugin = \"honest\"\nendpoint = \"http://{addr}/base\"\ndelivery.interval = \"1h\"\nheaders = {{ x-api-key = \"{CANARY}\" }}\n\
         [[exporters]]\nplugin = \"snoop\"\nendpoint = \"http://{addr}/base\"\ndelivery.interval = \"1h\"\nheaders = {{ authorization = \"Bearer {CANARY}-2\" }}\nconfig = {{ http_path = \"/v2/series\", reject_with_body = \"true\" }}\n",
        data.path().display(),
        dir.path().display()
    ))
    .await;
    let chunk = json!({"event_type": "chunk_produced", "model": "m"});
    assert_eq!(post_ndjson(&host, &[chunk]).await.status, 202);
    host.collect_now().await;
    let honest = last_error(&host, "honest").await;
    let snoop = last_error(&host, "snoop").await;
    // The credentials went out (the host adds them), and came back in the answers.
    {
        let seen = seen.lock().expect("lock");
        assert_eq!(seen.len(), 2, "{seen:?}");
        let sent = |name: &str, value: &str| {
            seen.iter()
                .any(|(_, h, _)| h.get(name).is_some_and(|v| v == value))
        };
        assert!(sent("x-api-key", CANARY));
        assert!(sent("authorization", &format!("Bearer {CANARY}-2")));
    }
    assert!(honest.contains("[redacted]"), "{honest}");
    assert!(snoop.contains("[redacted]"), "{snoop}");
    // The snooping plugin logs the body it was shown: masked.
    eventually("the snoop's log line", || {
        logs.count(&["backend said: bad request, you sent", "snoop"]) > 0
    })
    .await;
    assert_eq!(
        logs.count(&["backend said: bad request, you sent authorization: [redacted]; "]),
        1
    );
    let api = Api::new(&host, data.path());
    let mut shown = String::new();
    for path in ["/api/v1/status", "/api/v1/integrations", "/api/v1/plugins"] {
        let (status, _, text) = api.get(path).await;
        assert_eq!(status, 200, "{path}");
        shown.push_str(&text);
    }
    assert!(
        shown.contains("[redacted]"),
        "the API shows the masked errors"
    );
    shown.push_str(&serde_json::to_string(&host.integrations()).expect("json"));
    host.shutdown().await;
    for (what, text) in [("logs", logs.text()), ("the API", shown)] {
        assert!(!text.contains(CANARY), "{what} leak the credential");
        assert!(
            !text.contains("5ecret"),
            "{what} leak part of the credential"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_paths_that_leave_the_base_are_refused_and_host_headers_stay_the_host_s() {
    let (addr, seen) = sink(202).await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("rogue.wasm"), fixture(ROGUE)).expect("copy");
    let exporter = |name: &str, path: &str, header: &str| {
        format!(
            "[[exporters]]\nname = \"{name}\"\nplugin = \"rogue\"\nendpoint = \"http://{addr}/base/\"\ndelivery.interval = \"1h\"\nconfig = {{ http_path = \"{path}\", header = \"{header}\" }}\n"
        )
    };
    let host = start(&format!(
        "{CHUNK_RULE}\n[plugins]\ndir = \"{}\"\n[delivery.retry]\nmax_retries = 0\n{}{}{}{}{}",
        dir.path().display(),
        exporter("dots", "/../basement/x", ""),
        exporter("encoded", "/%2e%2E/basement/y", ""),
        exporter("doubled", "//basement/z", ""),
        exporter("length", "/ok", "content-length: 0"),
        exporter("hosted", "/also-ok", "host: evil.example"),
    ))
    .await;
    let chunk = json!({"event_type": "chunk_produced", "model": "m"});
    assert_eq!(post_ndjson(&host, &[chunk]).await.status, 202);
    host.collect_now().await;
    for (name, why) in [
        ("dots", "it has a `.` or `..` segment"),
        ("encoded", "it has a `.` or `..` segment"),
        ("doubled", "it has an empty segment (`//`)"),
    ] {
        let error = last_error(&host, name).await;
        assert!(error.contains("is refused: "), "{error}");
        assert!(error.ends_with(why), "{name}: {error}");
    }
    eventually("two requests", || seen.lock().expect("lock").len() >= 2).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let seen = seen.lock().expect("lock").clone();
    let mut paths: Vec<&str> = seen.iter().map(|(p, _, _)| p.as_str()).collect();
    paths.sort_unstable();
    assert_eq!(
        paths,
        ["/base/also-ok", "/base/ok"],
        "nothing left the base path"
    );
    for (_, headers, body) in &seen {
        assert!(body.starts_with(b"metrics:"), "the body is sent whole");
        assert_eq!(headers["content-length"], body.len().to_string());
        assert_eq!(headers["host"], addr.to_string());
    }
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_log_lines_are_escaped_rate_limited_and_counted() {
    let logs = wasmtel_tests::capture_logs();
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
    let port = socket.local_addr().expect("addr").port();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("flooder.wasm"), fixture(ROGUE)).expect("copy");
    let forged = r"flood-7f3a\r\n2026-11-30T00:00:00.000000Z  INFO wasmtel: forged line\u001b[31m";
    let host = start(&format!(
        "{CHUNK_RULE}\n[plugins]\ndir = \"{}\"\n[[exporters]]\nplugin = \"flooder\"\nendpoint = \"udp://127.0.0.1:{port}\"\ndelivery.interval = \"1h\"\nconfig = {{ log_lines = 1000, log_text = \"{forged}\" }}\n",
        dir.path().display()
    ))
    .await;
    let chunk = json!({"event_type": "chunk_produced", "model": "m"});
    assert_eq!(post_ndjson(&host, &[chunk]).await.status, 202);
    host.collect_now().await;
    let refused = |exp: &wasmtel_tests::Exposition| {
        exp.value(
            "wasmtel_plugin_refused_total",
            &[("plugin", "flooder"), ("budget", "log_lines_per_second")],
        )
        .unwrap_or(0.0) as usize
    };
    // Every line is written or counted as dropped, once the call is over.
    let give_up = Instant::now() + Duration::from_secs(20);
    let (written, dropped) = loop {
        let dropped = refused(&exposition(&host).await);
        let written = logs.count(&["flood-7f3a"]);
        if written + dropped == 1000 {
            break (written, dropped);
        }
        assert!(
            Instant::now() < give_up,
            "{written} lines written and {dropped} counted of 1,000"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(dropped > 0);
    // A burst of one second's lines, plus what the rate refills while the call runs.
    assert!((100..300).contains(&written), "{written} lines got through");
    // Each line that got through is one line, its control characters shown, not obeyed.
    let text = logs.text();
    let lines: Vec<&str> = text.lines().filter(|l| l.contains("flood-7f3a")).collect();
    assert_eq!(lines.len(), written);
    for line in lines {
        assert!(
            line.contains(
                r"flood-7f3a\r\n2026-11-30T00:00:00.000000Z  INFO wasmtel: forged line\u{1b}[31m"
            ),
            "{line}"
        );
        assert!(
            line.contains("flooder"),
            "the line names its plugin: {line}"
        );
        assert!(!line.contains('\u{1b}'));
    }
    assert_eq!(logs.count(&["INFO wasmtel: forged line"]), written);
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with("2026-11-30T00:00:00.000000Z  INFO wasmtel: forged")),
        "a plugin forged a host line"
    );
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floods_from_exporters_views_and_transforms_are_refused_whole_and_counted() {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let port = socket.local_addr().expect("addr").port();
    let receiver = wasmtel_tests::Receiver::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("gusher.wasm"), fixture(ROGUE)).expect("copy");
    std::fs::write(dir.path().join("fat.wasm"), fixture(ROGUE_VIEW)).expect("copy");
    std::fs::write(dir.path().join("long.wasm"), fixture(ROGUE_VIEW)).expect("copy");
    std::fs::write(dir.path().join("copier.wasm"), fixture(ROGUE_TRANSFORM)).expect("copy");
    std::fs::write(dir.path().join("padder.wasm"), fixture(ROGUE_TRANSFORM)).expect("copy");
    let rules = format!(
        "{CHUNK_RULE}\n[[derive.rules]]\nevent_type = \"generation_completed\"\ninstrument = \"counter\"\nname = \"generations\"\nattributes = {{ model = \"model\" }}\n"
    );
    let host = start(&format!(
        "{rules}\n[plugins]\ndir = \"{}\"\n\
         [otlp]\nendpoint = \"{}\"\ndelivery.interval = \"1h\"\n\
         [[views]]\nplugin = \"fat\"\ninstruments = [\"inference.chunks\"]\nconfig = {{ attributes = 100 }}\n\
         [[views]]\nplugin = \"long\"\ninstruments = [\"generations\"]\nconfig = {{ attributes = 1, value_len = 5000 }}\n\
         [[transforms]]\nplugin = \"copier\"\nconfig = {{ edits = 1000 }}\n\
         [[transforms]]\nplugin = \"padder\"\nconfig = {{ pad = 100000 }}\n\
         [[exporters]]\nplugin = \"gusher\"\nendpoint = \"udp://127.0.0.1:{port}\"\ndelivery.interval = \"1h\"\nconfig = {{ datagrams = 20000 }}\n",
        dir.path().display(),
        receiver.endpoint()
    ))
    .await;
    let events: Vec<_> = (0..3)
        .map(|_| json!({"event_type": "chunk_produced", "model": "m"}))
        .chain([json!({"event_type": "generation_completed", "model": "m"})])
        .collect();
    assert_eq!(post_ndjson(&host, &events).await.status, 202);
    host.collect_now().await;

    // The views' answers were refused: every measurement kept its own attributes.
    let exp = exposition(&host).await;
    assert_eq!(
        exp.value("inference_chunks_total", &[("model", "m")]),
        Some(3.0)
    );
    assert_eq!(exp.value("generations_total", &[("model", "m")]), Some(1.0));
    assert_eq!(exp.count("inference_chunks_total"), 1);
    // The transforms' edit flood and padded bodies were refused: the event log records went out
    // unchanged.
    let sizes = |r: &wasmtel_tests::Received| -> Vec<usize> {
        r.logs
            .iter()
            .flat_map(|l| &l.resource_logs)
            .flat_map(|r| &r.scope_logs)
            .flat_map(|s| &s.log_records)
            .map(Message::encoded_len)
            .collect()
    };
    receiver
        .wait_until("four log records", |r| sizes(r).len() >= 4)
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sizes = receiver.with(sizes);
    assert_eq!(sizes.len(), 4);
    let longest = sizes.into_iter().max().unwrap_or(0);
    assert!(
        longest < 10_000,
        "a padded record went out: {longest} bytes"
    );
    // The exporter's 20,000 datagrams were refused whole: none was sent.
    let error = last_error(&host, "gusher").await;
    assert!(
        error.contains("returned 20000 requests or datagrams, at most 10000 are allowed (over `outbound_items`)"),
        "{error}"
    );
    let mut buf = [0u8; 64];
    assert!(socket.recv(&mut buf).is_err(), "a datagram was sent");
    let exp = exposition(&host).await;
    for (plugin, budget) in [
        ("fat", "view_attributes"),
        ("long", "value_bytes"),
        ("copier", "transform_growth"),
        ("padder", "transform_growth"),
        ("gusher", "outbound_items"),
    ] {
        let n = exp
            .value(
                "wasmtel_plugin_refused_total",
                &[("plugin", plugin), ("budget", budget)],
            )
            .unwrap_or(0.0);
        assert!(n >= 1.0, "{plugin}: no `{budget}` refusal counted");
    }
    host.shutdown().await;
}

/// The number of threads of this process.
fn threads() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .expect("status")
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("Threads line")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_view_under_a_burst_delays_no_request_past_its_bound_nor_starves_an_exporter() {
    let receiver = wasmtel_tests::Receiver::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("slow.wasm"), fixture(ROGUE_VIEW)).expect("copy");
    let host = start(&format!(
        "{CHUNK_RULE}\n[plugins]\ndir = \"{}\"\n[otlp]\nendpoint = \"{}\"\nlogs = false\ndelivery.interval = \"100ms\"\n\
         [[views]]\nplugin = \"slow\"\ninstruments = [\"inference.chunks\"]\nconfig = {{ sleep_ms = 80 }}\n",
        dir.path().display(),
        receiver.endpoint()
    ))
    .await;
    let addr = host.intake_addr();
    let client = reqwest::Client::new();
    let burst_started = Instant::now();
    let posts: Vec<_> = (0..400)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move {
                let body = format!(
                    "{}\n",
                    json!({"event_type": "chunk_produced", "model": format!("m{i}")})
                );
                let sent = Instant::now();
                let response = client
                    .post(format!("http://{addr}/v1/events"))
                    .header("content-type", "application/x-ndjson")
                    .body(body)
                    .send()
                    .await
                    .expect("intake reachable");
                let retry = response.headers().get("retry-after").cloned();
                (response.status().as_u16(), retry, sent.elapsed())
            })
        })
        .collect();
    let mut accepted = 0;
    let mut slowest = Duration::ZERO;
    for post in posts {
        let (status, retry, took) = post.await.expect("join");
        match status {
            202 => accepted += 1,
            503 => assert_eq!(retry.expect("Retry-After"), "1"),
            other => panic!("intake answered {other}"),
        }
        slowest = slowest.max(took);
    }
    let burst = burst_started.elapsed();
    assert!(
        slowest < BOUND,
        "a request waited {slowest:?} on a slow view"
    );
    assert!(accepted > 0);
    assert!(threads() < 200, "{} threads", threads());
    // Nothing accepted was lost: asked or not, every chunk is counted under some series.
    let exp = exposition(&host).await;
    assert_eq!(exp.total("inference_chunks_total"), f64::from(accepted));
    // The exporter kept its 100 ms interval through the burst.
    let gaps: Vec<Duration> = receiver.with(|r| {
        r.times
            .windows(2)
            .filter(|w| w[1].duration_since(burst_started) < burst)
            .map(|w| w[1].duration_since(w[0]))
            .collect()
    });
    let widest = gaps.iter().max().copied().unwrap_or_default();
    assert!(
        widest < Duration::from_secs(2),
        "the exporter was silent for {widest:?} during a {burst:?} burst"
    );
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trap_is_explained_and_plugins_failing_at_start_do_not_stop_the_host() {
    let logs = wasmtel_tests::capture_logs();
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
    let port = socket.local_addr().expect("addr").port();
    let dir = tempfile::tempdir().expect("tempdir");
    let data = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("panicky.wasm"), fixture(ROGUE)).expect("copy");
    std::fs::write(dir.path().join("badview.wasm"), fixture(ROGUE_VIEW)).expect("copy");
    let toml = format!(
        "data_dir = \"{}\"\n{CHUNK_RULE}\n[plugins]\ndir = \"{}\"\n\
         [[views]]\nplugin = \"badview\"\nconfig = {{ sleep_ms = \"soon\" }}\n\
         [[transforms]]\nplugin = \"nowhere\"\n\
         [[exporters]]\nplugin = \"ghost\"\nendpoint = \"udp://127.0.0.1:9\"\n\
         [[exporters]]\nplugin = \"panicky\"\nendpoint = \"udp://127.0.0.1:{port}\"\ndelivery.interval = \"1h\"\nconfig = {{ panic_in = \"encode\" }}\n",
        data.path().display(),
        dir.path().display()
    );
    let host = start(&toml).await;
    let api = Api::new(&host, data.path());
    let chunk = json!({"event_type": "chunk_produced", "model": "m"});
    assert_eq!(
        post_ndjson(&host, &[chunk]).await.status,
        202,
        "a failed view fails open"
    );
    host.collect_now().await;
    let row = |plugins: &serde_json::Value, name: &str| {
        plugins["plugins"]
            .as_array()
            .expect("rows")
            .iter()
            .find(|p| p["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} listed: {plugins}"))
    };
    let give_up = Instant::now() + Duration::from_secs(20);
    let plugins = loop {
        let (status, plugins, _) = api.get("/api/v1/plugins").await;
        assert_eq!(status, 200);
        if row(&plugins, "panicky")["state"] != "running" {
            break plugins;
        }
        assert!(Instant::now() < give_up, "the trap was never reported");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let panicky = row(&plugins, "panicky");
    assert_eq!(panicky["kind"], "exporter");
    let reason = panicky["reason"].as_str().expect("reason");
    assert!(
        reason.starts_with(
            "trapped: wasm trap: wasm `unreachable` instruction executed (in abort < std::sys::pal::wasi::helpers::abort_internal < std::process::abort); the plugin said: panicked at rogue/src/lib.rs:"
        ),
        "{reason}"
    );
    assert!(
        reason.ends_with(": the rogue gave up: secret plan #42"),
        "{reason}"
    );
    assert!(logs.count(&["panicky", "the rogue gave up: secret plan #42"]) > 0);
    let badview = row(&plugins, "badview");
    assert_eq!(
        (badview["kind"].as_str(), badview["state"].as_str()),
        (Some("view"), Some("failed"))
    );
    assert_eq!(
        badview["reason"],
        "plugin `badview` returned an error: config `sleep_ms`: cannot parse \"soon\""
    );
    let ghost = row(&plugins, "ghost");
    assert_eq!(
        (ghost["kind"].as_str(), ghost["state"].as_str()),
        (Some("exporter"), Some("failed"))
    );
    assert!(
        ghost["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("no plugin `ghost`: neither ")),
        "{ghost}"
    );
    let nowhere = row(&plugins, "nowhere");
    assert_eq!(
        (nowhere["kind"].as_str(), nowhere["state"].as_str()),
        (Some("transform"), Some("failed"))
    );
    assert!(
        nowhere["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("no plugin `nowhere`: neither ")),
        "{nowhere}"
    );
    host.shutdown().await;

    // Under `strict`, the same configuration does not start, naming the first failure.
    let mut config = wasmtel::Config::from_toml(&toml).expect("config");
    config.plugins.strict = true;
    config.intake.listen = "127.0.0.1:0".parse().expect("addr");
    config.intake.grpc_listen = None;
    config.prometheus.enabled = false;
    config.admin.enabled = false;
    let error = wasmtel::Host::start(&config)
        .await
        .expect_err("strict refuses to start")
        .to_string();
    assert!(error.starts_with("transform `nowhere`: "), "{error}");
}

/// A component (in the component model's text format) whose core module is instantiated
/// `instances` times, each with `module` inside.
fn instances(module: &str, instances: usize) -> Vec<u8> {
    let mut text = format!("(component (core module $m {module})");
    for _ in 0..instances {
        text.push_str(" (core instance (instantiate $m))");
    }
    text.push(')');
    wat::parse_str(&text).expect("valid component text")
}

fn check(bytes: &[u8], memory_bytes: usize) -> Result<String, String> {
    let runtime = runtime();
    let component = runtime.compile(bytes).map_err(|e| e.chain())?;
    wasmtel::plugins::inspect::check(
        &runtime,
        "greedy",
        &component,
        &[],
        Limits {
            memory_bytes,
            ..Limits::default()
        },
    )
    .map(|w| w.to_string())
    .map_err(|e| e.to_string())
}

#[test]
fn memory_is_capped_per_instance_across_all_memories_and_tables() {
    const MIB: usize = 1024 * 1024;
    // Multi-memory is off: one module with 40 memories does not even compile.
    let memories = "(memory 1) ".repeat(40);
    let refused = check(&instances(&memories, 1), MIB).expect_err("refused");
    assert!(
        refused.starts_with("not a valid component:") && refused.contains("multiple memories"),
        "{refused}"
    );
    // 40 instances of a module with one 64 KiB memory: 2.5 MiB in one plugin instance.
    let many = instances("(memory 1)", 40);
    assert_eq!(
        check(&many, MIB),
        Err(format!(
            "memory limit of {MIB} bytes reached (plugins.memory_limit_bytes raises it)"
        ))
    );
    assert_eq!(
        check(&many, 4 * MIB),
        Err("wrong world: it exports none of wasmtel:plugin/encoder, transformer or viewer".into()),
        "under a larger cap the same component instantiates"
    );
    // Tables count too: 100,000 elements at 16 bytes each.
    assert_eq!(
        check(&instances("(table 100000 funcref)", 1), MIB),
        Err(format!(
            "memory limit of {MIB} bytes reached (plugins.memory_limit_bytes raises it)"
        ))
    );
    // A guest growing one memory past the cap at run time is stopped the same way.
    let grow = instances(
        "(memory 1) (func $grow (drop (memory.grow (i32.const 100)))) (start $grow)",
        1,
    );
    assert_eq!(
        check(&grow, MIB),
        Err(format!(
            "memory limit of {MIB} bytes reached (plugins.memory_limit_bytes raises it)"
        ))
    );
}

/// Every WASI 0.2 interface a component can import (and the host interfaces), each with one
/// function or resource it defines: a component asking for that item with the wrong type
/// is told the type is wrong where the host defines the interface, and that the item is
/// missing where it does not.
const INTERFACES: &[(&str, Probe)] = &[
    ("wasmtel:plugin/host", Probe::Func("log")),
    ("wasi:cli/environment", Probe::Func("get-environment")),
    ("wasi:cli/exit", Probe::Func("exit")),
    ("wasi:cli/stdin", Probe::Func("get-stdin")),
    ("wasi:cli/stdout", Probe::Func("get-stdout")),
    ("wasi:cli/stderr", Probe::Func("get-stderr")),
    ("wasi:cli/terminal-input", Probe::Resource("terminal-input")),
    (
        "wasi:cli/terminal-output",
        Probe::Resource("terminal-output"),
    ),
    ("wasi:cli/terminal-stdin", Probe::Func("get-terminal-stdin")),
    (
        "wasi:cli/terminal-stdout",
        Probe::Func("get-terminal-stdout"),
    ),
    (
        "wasi:cli/terminal-stderr",
        Probe::Func("get-terminal-stderr"),
    ),
    ("wasi:clocks/monotonic-clock", Probe::Func("now")),
    ("wasi:clocks/wall-clock", Probe::Func("now")),
    ("wasi:clocks/timezone", Probe::Func("utc-offset")),
    ("wasi:filesystem/types", Probe::Resource("descriptor")),
    ("wasi:filesystem/preopens", Probe::Func("get-directories")),
    ("wasi:io/error", Probe::Resource("error")),
    ("wasi:io/poll", Probe::Func("poll")),
    ("wasi:io/streams", Probe::Resource("input-stream")),
    ("wasi:random/random", Probe::Func("get-random-u64")),
    (
        "wasi:random/insecure",
        Probe::Func("get-insecure-random-u64"),
    ),
    ("wasi:random/insecure-seed", Probe::Func("insecure-seed")),
    ("wasi:sockets/network", Probe::Resource("network")),
    (
        "wasi:sockets/instance-network",
        Probe::Func("instance-network"),
    ),
    ("wasi:sockets/udp", Probe::Resource("udp-socket")),
    (
        "wasi:sockets/udp-create-socket",
        Probe::Func("create-udp-socket"),
    ),
    ("wasi:sockets/tcp", Probe::Resource("tcp-socket")),
    (
        "wasi:sockets/tcp-create-socket",
        Probe::Func("create-tcp-socket"),
    ),
    (
        "wasi:sockets/ip-name-lookup",
        Probe::Func("resolve-addresses"),
    ),
    ("wasi:http/types", Probe::Resource("fields")),
    ("wasi:http/outgoing-handler", Probe::Func("handle")),
    ("wasi:keyvalue/store", Probe::Func("open")),
    ("wasi:config/store", Probe::Func("get")),
];

/// What a probing component asks of an interface.
enum Probe {
    /// A function, typed `func()` (the real ones take or return something, so a present
    /// function answers "wrong type").
    Func(&'static str),
    /// A resource: present or missing.
    Resource(&'static str),
}

/// Whether the host's linker defines `interface`, asked with a component probing it.
fn linked(runtime: &Runtime, interface: &str, probe: &Probe) -> Result<(), String> {
    let version = if interface.starts_with("wasmtel:") {
        "0.1.0"
    } else {
        "0.2.0"
    };
    let item = match probe {
        Probe::Func(name) => format!("(export \"{name}\" (func))"),
        Probe::Resource(name) => format!("(export \"{name}\" (type (sub resource)))"),
    };
    let bytes = wat::parse_str(format!(
        "(component (import \"{interface}@{version}\" (instance {item})))"
    ))
    .expect("valid component text");
    let component = runtime.compile(&bytes).expect("compiles");
    match runtime
        .prepare(&component)
        .map_err(|e| PluginError::from(e).chain())
    {
        Ok(_) => Ok(()),
        Err(e) if e.contains("implementation is missing") => Err(e),
        Err(_) => Ok(()), // defined, with another type than the probe's
    }
}

#[test]
fn only_the_granted_interfaces_link() {
    let runtime = runtime();
    let granted: Vec<&str> = wasmtel::plugins::runtime::GRANTED
        .iter()
        .map(|(name, _)| *name)
        .collect();
    // What the first-party plugins and every test fixture import is within the grant.
    let mut components: Vec<Vec<u8>> = wasmtel::plugins::embedded::PLUGINS
        .iter()
        .map(|(_, bytes)| bytes.to_vec())
        .collect();
    for path in [ROGUE, ROGUE_VIEW, ROGUE_TRANSFORM, HELLO] {
        components.push(fixture(path));
    }
    for bytes in &components {
        let component = runtime.compile(bytes).expect("compiles");
        for import in runtime.imports(&component) {
            let interface = import.split('@').next().unwrap_or_default();
            assert!(granted.contains(&interface), "{import} is not granted");
        }
    }
    // Each granted interface links; every other one is refused at load, named.
    for name in &granted {
        assert!(
            *name == "wasmtel:plugin/types" || INTERFACES.iter().any(|(i, _)| i == name),
            "{name} has no probe"
        );
    }
    for (interface, probe) in INTERFACES {
        match (
            granted.contains(interface),
            linked(&runtime, interface, probe),
        ) {
            (true, Ok(())) => {}
            (true, Err(e)) => panic!("{interface} is granted but does not link: {e}"),
            (false, Ok(())) => panic!("{interface} links but is not granted"),
            (false, Err(e)) => assert!(
                e.starts_with("the component needs imports the host does not offer: ")
                    && e.contains(&format!("`{interface}@")),
                "{interface}: {e}"
            ),
        }
    }
    // The README states exactly this grant, one table row per interface.
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README");
    let rows: Vec<&str> = readme
        .lines()
        .filter(|l| l.starts_with("| `wasi:") || l.starts_with("| `wasmtel:"))
        .collect();
    let expected: Vec<String> = wasmtel::plugins::runtime::GRANTED
        .iter()
        .map(|(name, grant)| format!("| `{name}` | {grant} |"))
        .collect();
    assert_eq!(rows, expected, "the README's capability table");
}

#[test]
fn thousands_of_fault_cycles_keep_memory_bounded() {
    let runtime = runtime();
    let component = runtime.compile(&fixture(ROGUE)).expect("compiles");
    let batch = batch();
    let cycle = |i: usize| {
        let panicky = ExporterPlugin::load(
            &runtime,
            "panicky",
            &component,
            settings(&[("panic_in", "encode"), ("log_lines", "3")]),
            Limits::default(),
            &Stats::default(),
        )
        .expect("loads");
        let err = panicky.encode_metrics(&batch).expect_err("traps");
        assert!(
            matches!(&err, CallError::Failed(_, Failure::Trap(t)) if t.contains("secret plan #42")),
            "cycle {i}: {err}"
        );
    };
    for i in 0..300 {
        cycle(i);
    }
    let warm = wasmtel_tests::resident();
    for i in 300..3000 {
        cycle(i);
    }
    let grown = wasmtel_tests::resident().saturating_sub(warm);
    assert!(
        grown < 64 * 1024 * 1024,
        "resident memory grew {} MiB over 2,700 fault cycles",
        grown / (1024 * 1024)
    );
}

#[test]
fn a_transform_whose_edits_name_nothing_fails_its_call_naming_the_edit() {
    let runtime = runtime();
    let component = runtime
        .compile(&fixture(ROGUE_TRANSFORM))
        .expect("compiles");
    let liar = TransformPlugin::load(
        &runtime,
        "liar",
        &component,
        settings(&[("bad_index", "true")]),
        Limits::default(),
        &Stats::default(),
    )
    .expect("loads");
    let resource = wasmtel::sources::resource::detect(&Default::default());
    let origin = wasmtel::model::record::Origin::events(&resource, None);
    let records = vec![opentelemetry_proto::tonic::logs::v1::LogRecord::default(); 2];
    let mut batch = wasmtel::plugins::convert::otlp::log_batch(&records, &origin);
    let err = liar.logs(&mut batch, &mut Vec::new()).expect_err("refused");
    assert_eq!(
        err.to_string(),
        "plugin `liar` returned an error: invalid edits: edit 0 (drop-record) names record 9 of 2"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_whose_answers_fit_every_call_budget_still_cannot_add_up_past_the_byte_budget() {
    let logs = wasmtel_tests::capture_logs();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("fat.wasm"), fixture(ROGUE_VIEW)).expect("copy");
    // 63 attributes of 1,000 bytes added to each of 300 series: within each answer's budget,
    // some 19 MB in all. A generous deadline, so that on a loaded machine no answer comes too
    // late (which would leave that measurement under its own, thin, attributes).
    let host = start(&format!(
        "{CHUNK_RULE}\n[plugins]\ndir = \"{}\"\ncall_timeout = \"10s\"\n\
         [[views]]\nplugin = \"fat\"\ninstruments = [\"inference.chunks\"]\nconfig = {{ attributes = 63, value_len = 1000 }}\n",
        dir.path().display()
    ))
    .await;
    let events: Vec<_> = (0..300)
        .map(|i| json!({"event_type": "chunk_produced", "model": format!("m-{i:03}")}))
        .collect();
    assert_eq!(post_ndjson(&host, &events).await.status, 202);

    let text = wasmtel_tests::scrape(host.prometheus_addr().expect("prometheus on")).await;
    assert!(
        text.len() < 2 << 20,
        "/metrics is {} bytes: the default 1 MiB budget per instrument did not hold",
        text.len()
    );
    let exp = wasmtel_tests::Exposition::parse(&text);
    let kept = exp.count("inference_chunks_total");
    assert!((10..=17).contains(&kept), "{kept} series kept");
    assert_eq!(
        exp.total("inference_chunks_total"),
        300.0,
        "every chunk counted: past the budget in the overflow series"
    );
    assert_eq!(
        exp.value(
            "inference_chunks_total",
            &[("otel_metric_overflow", "true")]
        ),
        Some((301 - kept) as f64)
    );
    assert_eq!(
        exp.value(
            "wasmtel_metrics_overflowed_total",
            &[("metric", "inference.chunks")]
        ),
        Some((301 - kept) as f64)
    );
    eventually("the overflow logged, naming the key that raises it", || {
        logs.count(&[
            "inference.chunks",
            "attribute byte budget",
            "metrics.attribute_bytes_limit",
        ]) == 1
    })
    .await;
    host.shutdown().await;
}

#[test]
fn a_plugin_marked_failed_is_tried_again_after_a_cool_down_that_doubles_and_then_serves() {
    let runtime = runtime();
    let component = runtime.compile(&fixture(ROGUE)).expect("compiles");
    let limits = Limits {
        cool_down: Duration::from_millis(300),
        ..Limits::default()
    };
    let plugin = ExporterPlugin::load(
        &runtime,
        "rogue",
        &component,
        settings(&[("panic_in", "encode"), ("panic_on", "boom")]),
        limits,
        &Stats::default(),
    )
    .expect("loads");
    let boom = {
        let registry = Registry::new(10);
        let counter = registry
            .instrument(descriptor("boom"), &[])
            .expect("counter");
        counter.record(&[], 1.0);
        metric_batch(
            &registry,
            &wasmtel::sources::resource::detect(&Default::default()),
            None,
        )
        .batch
    };
    // Fails until marked failed: five traps within the crash-loop window.
    let fail_until_marked = || {
        let give_up = Instant::now() + Duration::from_secs(30);
        while !matches!(plugin.health(), Health::Failed(_)) {
            let _ = plugin.encode_metrics(&boom);
            assert!(Instant::now() < give_up, "never marked failed");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    fail_until_marked();
    let refused = plugin.encode_metrics(&batch()).expect_err("resting");
    assert!(
        matches!(refused, CallError::CrashLoop(..)),
        "while it rests it is not called: {refused}"
    );
    // Past the cool-down it is tried again on its own, and fails again: the rest doubles.
    std::thread::sleep(Duration::from_millis(350));
    let again = plugin
        .encode_metrics(&boom)
        .expect_err("tried again and trapped");
    assert!(matches!(again, CallError::Failed(..)), "{again}");
    fail_until_marked();
    std::thread::sleep(Duration::from_millis(350));
    assert!(
        matches!(
            plugin.encode_metrics(&batch()),
            Err(CallError::CrashLoop(..))
        ),
        "the second rest is 600 ms"
    );
    // Once the rest is over, a batch it can encode is served, and it is running again.
    std::thread::sleep(Duration::from_millis(300));
    let sent = plugin.encode_metrics(&batch()).expect("serves again");
    assert_eq!(sent.len(), 1);
    assert_eq!(plugin.health(), Health::Running);
}

#[test]
fn an_instance_past_three_quarters_of_its_memory_cap_is_replaced_before_it_hits_the_cap() {
    let runtime = runtime();
    let component = runtime.compile(&fixture(ROGUE)).expect("compiles");
    let limits = Limits {
        memory_bytes: 16 * 1024 * 1024,
        ..Limits::default()
    };
    // 2 MiB more per call, never freed: without a fresh instance the 7th or so call would
    // hit the 16 MiB cap and trap.
    let plugin = ExporterPlugin::load(
        &runtime,
        "leaky",
        &component,
        settings(&[("leak_kib", "2048")]),
        limits,
        &Stats::default(),
    )
    .expect("loads");
    for call in 0..30 {
        plugin
            .encode_metrics(&batch())
            .unwrap_or_else(|e| panic!("call {call}: {e}"));
    }
    assert_eq!(plugin.health(), Health::Running);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_part_that_fails_at_the_memory_cap_is_sent_again_in_halves_and_nothing_is_lost() {
    let logs = wasmtel_tests::capture_logs();
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("greedy.wasm"), fixture(ROGUE)).expect("copy");
    // 40 KiB held per point: the first part of 2,000 points needs some 80 MiB of the 64 MiB
    // cap; each half fits.
    let host = start(&format!(
        "[derive]\nrule_set = \"none\"\n[plugins]\ndir = \"{}\"\n[[exporters]]\nplugin = \"greedy\"\nendpoint = \"udp://{}\"\ndelivery.interval = \"1h\"\nconfig = {{ kib_per_point = 40 }}\n",
        dir.path().display(),
        socket.local_addr().expect("addr")
    ))
    .await;
    let points: Vec<serde_json::Value> = (0..2000)
        .map(|i| json!({"asDouble": 1.0, "attributes": [{"key": "i", "value": {"intValue": i}}]}))
        .collect();
    let request = json!({"resourceMetrics": [{"scopeMetrics": [{"metrics": [
        {"name": "wide", "gauge": {"dataPoints": points}}]}]}]});
    let (status, _) = wasmtel_tests::post_otlp_metrics(host.intake_addr(), &request).await;
    assert_eq!(status, 200);
    host.collect_now().await;
    eventually("the collection delivered", || {
        host.integrations()
            .iter()
            .any(|r| r.signal == "metrics" && r.items.delivered >= 1)
    })
    .await;
    let r = host
        .integrations()
        .into_iter()
        .find(|r| r.signal == "metrics")
        .expect("report");
    assert_eq!((r.items.refused, r.items.dropped), (0, 0), "{r:?}");
    assert_eq!(
        logs.count(&[
            "greedy",
            "memory limit",
            "sending that part again in two halves"
        ]),
        1
    );
    let mut buf = [0u8; 256];
    let n = socket.recv(&mut buf).expect("a datagram");
    assert!(buf[..n].starts_with(b"metrics:"), "{:?}", &buf[..n]);
    host.shutdown().await;
}
