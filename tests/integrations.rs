//! One way to export: configured and stored integrations, native and plugin, built, delivered,
//! reloaded and reported by the same code — against real receivers over real sockets.

mod common;

use std::net::UdpSocket;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Api, CHUNK_RULE, eventually, exposition, post_ndjson, start};
use serde_json::{Value, json};
use wasmtel::export::delivery::{Report, State};
use wasmtel_tests::Receiver;

const LOGLINES: &str = env!("WASMTEL_FIXTURE_LOGLINES");

/// Every request a sink received: path and decoded body, in arrival order.
type Seen = Arc<Mutex<Vec<(String, String)>>>;

/// An HTTP sink on loopback under `/base/`: `answer(n, path)` gives the status of request `n`.
async fn sink(answer: impl Fn(usize, &str) -> u16 + Send + Sync + 'static) -> (String, Seen) {
    use std::io::Read as _;
    let seen: Seen = Arc::default();
    let store = seen.clone();
    let count = Arc::new(AtomicUsize::new(0));
    let answer = Arc::new(answer);
    let app = axum::Router::new().route(
        "/base/{*path}",
        axum::routing::post(
            move |uri: axum::http::Uri, headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let (store, count, answer) = (store.clone(), count.clone(), answer.clone());
                async move {
                    let mut text = String::new();
                    match headers
                        .get("content-encoding")
                        .and_then(|v| v.to_str().ok())
                    {
                        Some("gzip") => {
                            flate2::read::GzDecoder::new(&body[..])
                                .read_to_string(&mut text)
                                .expect("gzip");
                        }
                        _ => text = String::from_utf8_lossy(&body).into_owned(),
                    }
                    let n = count.fetch_add(1, Ordering::SeqCst);
                    let status = answer(n, uri.path());
                    store
                        .lock()
                        .expect("lock")
                        .push((uri.path().to_owned(), text));
                    axum::http::StatusCode::from_u16(status).expect("status")
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    (format!("http://{addr}/base"), seen)
}

/// Reads datagrams from `socket` until one holds `line` (the host's own metrics come too).
fn received_line(socket: &UdpSocket, line: &str) {
    let mut buf = [0u8; 65536];
    let mut seen = Vec::new();
    loop {
        let n = socket
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("no datagram with {line} ({e}); got {seen:?}"));
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        if text.lines().any(|l| l == line) {
            return;
        }
        seen.push(text);
    }
}

/// Two fields of every object of a JSON array.
fn fields<'a>(list: &'a Value, a: &str, b: &str) -> Vec<(&'a str, &'a str)> {
    list.as_array()
        .expect("an array")
        .iter()
        .map(|o| (o[a].as_str().expect(a), o[b].as_str().expect(b)))
        .collect()
}

fn report<'a>(reports: &'a [Report], integration: &str, signal: &str) -> &'a Report {
    reports
        .iter()
        .find(|r| r.integration == integration && r.signal == signal)
        .unwrap_or_else(|| panic!("no {integration} {signal} in {reports:?}"))
}

fn chunks(n: usize) -> Vec<Value> {
    (0..n)
        .map(|_| json!({"event_type": "chunk_produced", "model": "m1"}))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_exporters_of_one_plugin_are_told_apart_by_name_in_status_metrics_and_plugins() {
    let a = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let b = UdpSocket::bind("127.0.0.1:0").expect("bind");
    for s in [&a, &b] {
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
    }
    let data = tempfile::tempdir().expect("tempdir");
    let host = start(&format!(
        "data_dir = \"{}\"\n{CHUNK_RULE}\n\
         [[exporters]]\nplugin = \"statsd\"\nendpoint = \"udp://{}\"\ndelivery.interval = \"1h\"\n\
         [[exporters]]\nplugin = \"statsd\"\nendpoint = \"udp://{}\"\ndelivery.interval = \"1h\"\nconfig = {{ flavor = \"dogstatsd\" }}\n",
        data.path().display(),
        a.local_addr().expect("addr"),
        b.local_addr().expect("addr"),
    ))
    .await;
    post_ndjson(&host, &chunks(3)).await;
    host.collect_now().await;
    received_line(&a, "inference.chunks;model=m1:3|c");
    received_line(&b, "inference.chunks:3|c|#model:m1");
    eventually("both exports counted", || {
        let all = host.integrations();
        ["statsd", "statsd-2"]
            .iter()
            .all(|n| report(&all, n, "metrics").status.sent == 1)
    })
    .await;

    let api = Api::new(&host, data.path());
    let (status, body, _) = api.get("/api/v1/status").await;
    assert_eq!(status, 200);
    assert_eq!(
        fields(&body["integrations"], "id", "name"),
        [("statsd", "statsd"), ("statsd-2", "statsd-2")]
    );
    let (_, body, _) = api.get("/api/v1/plugins").await;
    let plugins = fields(&body["plugins"], "name", "integration");
    assert_eq!(plugins, [("statsd", "statsd"), ("statsd", "statsd-2")]);

    let m = exposition(&host).await;
    for name in ["statsd", "statsd-2"] {
        let batches = [
            ("integration", name),
            ("outcome", "ok"),
            ("signal", "metrics"),
        ];
        assert_eq!(
            m.value("wasmtel_export_batches_total", &batches),
            Some(1.0),
            "{name}"
        );
        let up = [
            ("integration", name),
            ("kind", "exporter"),
            ("plugin", "statsd"),
        ];
        assert_eq!(m.value("wasmtel_plugin_up", &up), Some(1.0), "{name}");
        let sending = [
            ("integration", name),
            ("signal", "metrics"),
            ("state", "sending"),
        ];
        assert_eq!(
            m.value("wasmtel_export_state", &sending),
            Some(1.0),
            "{name}"
        );
    }
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_plugin_integration_hot_reloads_and_shows_with_the_configured_ones() {
    let (endpoint, seen) = sink(|_, _| 202).await;
    let data = tempfile::tempdir().expect("tempdir");
    let plugins = tempfile::tempdir().expect("plugin dir");
    let file = plugins.path().join("loglines.wasm");
    let v1 = std::fs::read(LOGLINES).expect("fixture");
    std::fs::write(&file, &v1).expect("copy");
    let host = start(&format!(
        "data_dir = \"{}\"\n[plugins]\ndir = \"{}\"\n",
        data.path().display(),
        plugins.path().display()
    ))
    .await;
    let api = Api::new(&host, data.path());
    let (status, created, text) = api
        .send(
            "POST",
            "/api/v1/integrations",
            &json!({"kind": "logs", "type": "loglines", "name": "lines", "endpoint": endpoint})
                .to_string(),
        )
        .await;
    assert_eq!(status, 201, "{text}");
    assert_eq!(created["signals"][0]["state"], "pending");
    let id = created["id"].as_str().expect("id").to_owned();

    post_ndjson(&host, &chunks(2)).await;
    eventually("the first records", || {
        seen.lock().expect("lock").len() == 1
    })
    .await;
    let (_, mut body, _) = api.get("/api/v1/plugins").await;
    let stats = body["plugins"][0]
        .as_object_mut()
        .and_then(|p| p.remove("stats"))
        .expect("stats");
    assert!(
        stats["calls"]["ok"].as_u64().is_some_and(|n| n >= 2),
        "{stats}"
    );
    assert_eq!(
        body["plugins"],
        json!([{"name": "loglines", "kind": "exporter", "integration": "lines", "state": "running", "reason": null}])
    );
    let up = [
        ("integration", "lines"),
        ("kind", "exporter"),
        ("plugin", "loglines"),
    ];
    let mut m = exposition(&host).await;
    while m.value("wasmtel_plugin_up", &up).is_none() {
        tokio::time::sleep(Duration::from_millis(50)).await;
        m = exposition(&host).await;
    }
    assert_eq!(m.value("wasmtel_plugin_up", &up), Some(1.0));

    // A new version of the file is picked up by the stored integration too.
    let mut v2 = v1.clone();
    v2.extend_from_slice(&[0, 3, 2, b'v', b'2']);
    let tmp = plugins.path().join("loglines.partial");
    std::fs::write(&tmp, &v2).expect("write");
    std::fs::rename(&tmp, &file).expect("rename");
    let want = wasmtel::plugins::cache::digest(&v2);
    eventually("the new version serving", || {
        host.plugin_versions()
            .iter()
            .any(|(name, digest)| name == "loglines" && digest.as_deref() == Some(&want))
    })
    .await;
    post_ndjson(&host, &chunks(1)).await;
    eventually("records through the new version", || {
        seen.lock().expect("lock").len() == 2
    })
    .await;
    let (_, one, _) = api.get(&format!("/api/v1/integrations/{id}")).await;
    assert_eq!(one["signals"][0]["state"], "connected");
    assert_eq!(one["signals"][0]["integration"], "lines");
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delta_exporter_whose_backend_was_down_for_two_intervals_receives_every_interval_once() {
    // The first four series requests fail: the first interval is tried four times, the second
    // waits behind it. (The exporter's log records go to the same sink and are left aside.)
    let failures = AtomicUsize::new(0);
    let (endpoint, all) = sink(move |_, path| {
        let series = path.ends_with("/series");
        if series && failures.fetch_add(1, Ordering::SeqCst) < 4 {
            503
        } else {
            202
        }
    })
    .await;
    let seen: Seen = Arc::default();
    let series = || {
        let got: Vec<(String, String)> = all
            .lock()
            .expect("lock")
            .iter()
            .filter(|r| r.0.ends_with("/series"))
            .cloned()
            .collect();
        *seen.lock().expect("lock") = got.clone();
        got
    };
    let host = start(&format!(
        "{CHUNK_RULE}\n[[exporters]]\nplugin = \"datadog\"\nendpoint = \"{endpoint}\"\napi_key = \"k\"\n\
         [exporters.delivery]\ninterval = \"1h\"\nretry = {{ max_retries = 0, breaker_cooldown = \"10ms\" }}\n"
    ))
    .await;
    for n in [1, 2] {
        post_ndjson(&host, &chunks(n)).await;
        host.collect_now().await;
    }
    eventually("both intervals delivered", || series().len() >= 6).await;
    post_ndjson(&host, &chunks(4)).await;
    host.collect_now().await;
    eventually("the third interval", || series().len() >= 7).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let got = series();
    let counts: Vec<f64> = got
        .iter()
        .skip(4)
        .map(|(path, body)| {
            assert_eq!(path, "/base/api/v2/series");
            let v: Value = serde_json::from_str(body).expect("JSON");
            let s = v["series"]
                .as_array()
                .expect("series")
                .iter()
                .find(|s| s["metric"] == "inference.chunks")
                .expect("chunks series");
            s["points"][0]["value"].as_f64().expect("value")
        })
        .collect();
    assert_eq!(counts, [1.0, 2.0, 4.0], "every interval once, in order");
    assert_eq!(
        got[..4].iter().map(|r| &r.1).collect::<Vec<_>>(),
        vec![&got[4].1; 4],
        "the first interval was retried whole"
    );
    let all = host.integrations();
    let r = report(&all, "datadog", "metrics");
    assert_eq!(
        (
            r.status.failed,
            r.status.sent,
            r.items.dropped,
            r.items.queued
        ),
        (4, 3, 0, 0)
    );
    host.shutdown().await;
}

/// A host sending logs through the `loglines` fixture to `endpoint`, with `extra` TOML in the entry.
async fn loglines(endpoint: &str, extra: &str) -> (wasmtel::Host, tempfile::TempDir) {
    let plugins = tempfile::tempdir().expect("plugin dir");
    std::fs::copy(LOGLINES, plugins.path().join("loglines.wasm")).expect("copy");
    let host = start(&format!(
        "{CHUNK_RULE}\n[plugins]\ndir = \"{}\"\n[[exporters]]\nplugin = \"loglines\"\nendpoint = \"{endpoint}\"\n{extra}",
        plugins.path().display()
    ))
    .await;
    (host, plugins)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_three_requests_failing_on_the_second_sends_only_that_one_again() {
    let (endpoint, seen) = sink(|n, _| if n == 1 { 503 } else { 202 }).await;
    let (host, _dir) = loglines(
        &endpoint,
        "config = { lines_per_request = \"1\" }\ndelivery.retry.max_retries = 0\n",
    )
    .await;
    post_ndjson(&host, &chunks(3)).await;
    eventually("four requests", || seen.lock().expect("lock").len() == 4).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let paths: Vec<String> = seen
        .lock()
        .expect("lock")
        .iter()
        .map(|r| r.0.clone())
        .collect();
    assert_eq!(
        paths,
        [
            "/base/logs/0",
            "/base/logs/1",
            "/base/logs/1",
            "/base/logs/2"
        ],
        "the delivered first request is not sent again"
    );
    let all = host.integrations();
    let r = report(&all, "loglines", "logs");
    assert_eq!(
        (
            r.status.failed,
            r.status.sent,
            r.status.requests,
            r.items.queued
        ),
        (1, 1, 3, 0)
    );
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_too_large_is_split_and_sent_in_halves() {
    let (endpoint, seen) = sink(|n, _| if n == 0 { 413 } else { 202 }).await;
    let (host, _dir) = loglines(&endpoint, "").await;
    post_ndjson(&host, &chunks(4)).await;
    eventually("three requests", || seen.lock().expect("lock").len() == 3).await;
    let lines: Vec<usize> = seen
        .lock()
        .expect("lock")
        .iter()
        .map(|r| r.1.lines().count())
        .collect();
    assert_eq!(lines, [4, 2, 2], "413 for four lines, then two and two");
    eventually("delivered", || {
        report(&host.integrations(), "loglines", "logs").status.sent == 1
    })
    .await;
    assert_eq!(
        report(&host.integrations(), "loglines", "logs")
            .status
            .failed,
        0
    );
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_signal_has_its_own_circuit_breaker() {
    let receiver = Receiver::start().await;
    // Logs go to a port nothing listens on; a shared breaker would hold metrics back a minute.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let dead_url = format!("http://{}/v1/logs", dead.local_addr().expect("addr"));
    drop(dead);
    let host = start(&format!(
        "{CHUNK_RULE}\n[otlp]\nmetrics_endpoint = \"{}/v1/metrics\"\nlogs_endpoint = \"{dead_url}\"\n\
         [otlp.delivery]\ninterval = \"1h\"\nretry = {{ max_retries = 0, breaker_cooldown = \"60s\" }}\n",
        receiver.endpoint()
    ))
    .await;
    let all = host.integrations();
    assert_eq!(report(&all, "otlp", "metrics").status.state, State::Pending);
    for _ in 0..6 {
        post_ndjson(&host, &chunks(1)).await;
    }
    eventually("five failed log requests open the logs breaker", || {
        report(&host.integrations(), "otlp", "logs").status.failed >= 5
    })
    .await;
    host.collect_now().await;
    receiver
        .wait_until("metrics while the logs breaker is open", |r| {
            !r.metrics.is_empty()
        })
        .await;
    eventually("metrics connected", || {
        report(&host.integrations(), "otlp", "metrics").status.state == State::Connected
    })
    .await;
    let all = host.integrations();
    assert_eq!(report(&all, "otlp", "logs").status.state, State::Degraded);
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_integration_takes_its_own_delivery_interval() {
    let receiver = Receiver::start().await;
    let data = tempfile::tempdir().expect("tempdir");
    let host = start(&format!(
        "data_dir = \"{}\"\n[delivery]\ninterval = \"1h\"\n",
        data.path().display()
    ))
    .await;
    let api = Api::new(&host, data.path());
    let body = json!({"kind": "metrics", "type": "otlp", "name": "fast", "endpoint": receiver.endpoint(),
                      "delivery": {"interval": "200ms"}});
    let (status, created, text) = api
        .send("POST", "/api/v1/integrations", &body.to_string())
        .await;
    assert_eq!(status, 201, "{text}");
    let next = created["signals"][0]["next_export_unix_nano"]
        .as_u64()
        .expect("next export");
    let now = wasmtel::clock::unix_nanos();
    assert!(
        next > now && next <= now + 200_000_000,
        "the first export is due within its interval"
    );
    // The host default is an hour; the integration's own 200 ms brings metrics without a nudge.
    receiver
        .wait_until("metrics on the integration's own interval", |r| {
            r.metrics.len() >= 2
        })
        .await;
    let (status, body, _) = api
        .send(
            "POST",
            "/api/v1/integrations",
            &json!({"kind": "metrics", "type": "otlp", "name": "slow",
            "endpoint": receiver.endpoint(), "delivery": {"interval": "1ms"}})
            .to_string(),
        )
        .await;
    assert_eq!((status, body["field"].as_str()), (400, Some("delivery")));
    let (status, body, _) = api
        .send(
            "POST",
            "/api/v1/integrations",
            &json!({"kind": "metrics", "type": "otlp", "name": "fast",
            "endpoint": receiver.endpoint()})
            .to_string(),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (
            400,
            Some(
                "invalid integration: `name`: another metrics integration is named `fast`; choose another name"
            )
        )
    );
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statsd_paces_datagrams_so_a_small_receive_buffer_loses_nothing() {
    use std::os::fd::AsFd as _;
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    // A small buffer: 16 KiB once Linux doubles it, some 6 full datagrams.
    rustix::net::sockopt::set_socket_recv_buffer_size(socket.as_fd(), 8 * 1024).expect("SO_RCVBUF");
    socket
        .set_read_timeout(Some(Duration::from_millis(1500)))
        .expect("timeout");
    let addr = socket.local_addr().expect("addr");
    let reader = std::thread::spawn(move || {
        let (mut chunks, mut samples, mut datagrams) = (0.0, 0.0, 0usize);
        let mut buf = [0u8; 65536];
        // Until every chunk and sample is counted, or for 30 s at most: collections go on
        // every second, so the socket never falls silent by itself.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while (chunks < 6000.0 || samples < 6000.0 - 1e-6) && std::time::Instant::now() < deadline {
            let Ok(n) = socket.recv(&mut buf) else { break };
            // A slow receiver: 2 ms per datagram.
            std::thread::sleep(Duration::from_millis(2));
            datagrams += 1;
            for line in String::from_utf8_lossy(&buf[..n]).lines() {
                let (name, rest) = line.split_once(':').expect("name:value");
                let mut fields = rest.split('|');
                let value: f64 = fields.next().and_then(|v| v.parse().ok()).expect("value");
                let rate = fields
                    .find_map(|f| f.strip_prefix('@'))
                    .map_or(1.0, |r| r.parse::<f64>().expect("rate"));
                if name.starts_with("inference.chunks;") {
                    chunks += value;
                } else if name.starts_with("latency;") {
                    samples += 1.0 / rate;
                }
            }
        }
        (chunks, samples, datagrams)
    });
    let rules = r#"
[derive]
rule_set = "none"

[[derive.rules]]
event_type = "chunk_produced"
instrument = "counter"
name = "inference.chunks"
attributes = { user = "attributes.user" }

[[derive.rules]]
event_type = "generation_completed"
instrument = "histogram"
name = "latency"
unit = "s"
field = "total_duration_ms"
scale = 0.001
buckets = [0.01, 0.1, 1]
attributes = { user = "attributes.user" }
"#;
    let host = start(&format!(
        "{rules}\n[[exporters]]\nplugin = \"statsd\"\nendpoint = \"udp://{addr}\"\ndelivery.interval = \"1s\"\n"
    ))
    .await;
    // Three intervals of 2,000 requests from 400 users: some 35 full datagrams each, which the
    // default pace (4 MiB/s) alone would send in 20 ms, ten times faster than they are read.
    for round in 0..3 {
        let events: Vec<Value> = (0..2000)
            .flat_map(|i| {
                let user = format!("user-{:03}", i % 400);
                [
                    json!({"event_type": "chunk_produced", "attributes": {"user": user}}),
                    json!({"event_type": "generation_completed", "attributes": {"user": user},
                           "metrics": {"total_duration_ms": (i * 7 + round) % 2000}}),
                ]
            })
            .collect();
        assert_eq!(post_ndjson(&host, &events).await.status, 202);
        host.collect_now().await;
    }
    let (chunks, samples, datagrams) = tokio::task::spawn_blocking(move || reader.join())
        .await
        .expect("join")
        .expect("reader");
    assert_eq!(chunks, 6000.0, "every chunk counted, none lost");
    assert!(
        (samples - 6000.0).abs() < 1e-6,
        "every latency sample counted: {samples}"
    );
    assert!(datagrams > 90, "{datagrams} datagrams");
    let all = host.integrations();
    assert_eq!(
        report(&all, "statsd", "metrics").status.state,
        State::Sending
    );
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_cuts_a_long_retry_wait_short_within_its_timeout() {
    // The backend asks for two minutes' patience; shutdown has one second.
    let app = axum::Router::new().route(
        "/base/{*path}",
        axum::routing::post(|| async {
            (
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                [("retry-after", "120")],
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    let host = start(&format!(
        "shutdown_timeout = \"1s\"\n{CHUNK_RULE}\n[[exporters]]\nplugin = \"datadog\"\nendpoint = \"http://{addr}/base\"\napi_key = \"k\"\ndelivery.interval = \"1h\"\n"
    ))
    .await;
    post_ndjson(&host, &chunks(1)).await;
    eventually("the first 503", || {
        report(&host.integrations(), "datadog", "logs")
            .status
            .retried
            >= 1
    })
    .await;
    tokio::time::timeout(Duration::from_secs(10), host.shutdown())
        .await
        .expect("shutdown does not wait out the server's Retry-After");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statsd_line_longer_than_a_datagram_is_left_out_alone_and_said() {
    let logs = wasmtel_tests::capture_logs();
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let host = start(&format!(
        "{CHUNK_RULE}\n[[exporters]]\nplugin = \"statsd\"\nendpoint = \"udp://{}\"\ndelivery.interval = \"1h\"\nconfig = {{ max_datagram = 64 }}\n",
        socket.local_addr().expect("addr")
    ))
    .await;
    let long = "m".repeat(100);
    let events = [
        json!({"event_type": "chunk_produced", "model": "m1"}),
        json!({"event_type": "chunk_produced", "model": long}),
    ];
    assert_eq!(post_ndjson(&host, &events).await.status, 202);
    host.collect_now().await;
    received_line(&socket, "inference.chunks;model=m1:1|c");
    eventually("the warning", || {
        logs.count(&["lines longer than max_datagram (64 bytes) were left out"]) >= 1
    })
    .await;
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_that_stops_delivering_says_why_in_the_log_once_per_run_of_failures() {
    let logs = wasmtel_tests::capture_logs();
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let host = start(&format!(
        "{CHUNK_RULE}\n[otlp]\nendpoint = \"http://127.0.0.1:{port}\"\ndelivery.interval = \"1h\"\ndelivery.retry.max_retries = 0\n"
    ))
    .await;
    let needle = format!("127.0.0.1:{port}/v1/metrics");
    for round in 1..=3 {
        post_ndjson(&host, &chunks(1)).await;
        host.collect_now().await;
        eventually("the export failed", || {
            report(&host.integrations(), "otlp", "metrics")
                .status
                .failed
                >= round
        })
        .await;
    }
    let said = logs.count(&["export is failing", "Connection refused", &needle]);
    assert_eq!(
        said,
        1,
        "one warning for the run, naming the endpoint:\n{}",
        logs.text()
    );
    host.shutdown().await;
}
