//! The fault suite, in process: hostile connections, requests of enormous cost, scrapes racing
//! intake, exposition name clashes and malformed OTLP JSON, each with exact expectations.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wasmtel_tests::{ndjson, post_events, resident};

/// A host whose listeners time out quickly and hold at most `max` connections each.
async fn strict_host(max: usize) -> wasmtel::Host {
    host_with(max, "1s", "2s").await
}

/// A host with these connection limits, a body grace of 1 s and a minimum rate of 1,000 B/s.
async fn host_with(max: usize, header_timeout: &str, idle_timeout: &str) -> wasmtel::Host {
    common::start(&format!(
        "{}\n[connections]\nmax_connections = {max}\nheader_timeout = \"{header_timeout}\"\nbody_timeout = \"1s\"\nmin_body_rate = 1000\nidle_timeout = \"{idle_timeout}\"\n",
        common::CHUNK_RULE
    ))
    .await
}

/// Everything the server sends on `stream` until it closes it, and how long that took; fails
/// the test when the connection is still open after `limit`.
async fn until_closed(stream: &mut TcpStream, limit: Duration) -> (String, Duration) {
    let started = Instant::now();
    let mut got = Vec::new();
    let read = tokio::time::timeout(limit, stream.read_to_end(&mut got)).await;
    assert!(
        read.is_ok(),
        "the connection was still open after {limit:?}"
    );
    (
        String::from_utf8_lossy(&got).into_owned(),
        started.elapsed(),
    )
}

fn chunk() -> Vec<u8> {
    ndjson(&[json!({"event_type": "chunk_produced", "model": "m"})])
}

#[tokio::test]
async fn half_sent_headers_are_cut_at_the_header_timeout() {
    let host = strict_host(64).await;
    let mut stream = TcpStream::connect(host.intake_addr())
        .await
        .expect("connect");
    stream
        .write_all(b"POST /v1/events HTTP/1.1\r\nhost: x\r\ncontent-type: appl")
        .await
        .expect("write");
    let (_, took) = until_closed(&mut stream, Duration::from_secs(10)).await;
    assert!(took >= Duration::from_millis(900), "closed after {took:?}");
}

#[tokio::test]
async fn idle_connections_are_closed_before_and_between_requests() {
    // A header timeout longer than the idle one: what closes the connections is the idle timeout.
    let host = host_with(64, "10s", "2s").await;
    let mut silent = TcpStream::connect(host.intake_addr())
        .await
        .expect("connect");
    let mut kept = TcpStream::connect(host.intake_addr())
        .await
        .expect("connect");
    let body = chunk();
    let request = format!(
        "POST /v1/events HTTP/1.1\r\nhost: x\r\ncontent-type: application/x-ndjson\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    kept.write_all(request.as_bytes()).await.expect("write");
    kept.write_all(&body).await.expect("write");
    let started = Instant::now();
    let (silent_got, silent_took) = until_closed(&mut silent, Duration::from_secs(10)).await;
    let (kept_got, _) = until_closed(&mut kept, Duration::from_secs(10)).await;
    let kept_took = started.elapsed();
    assert_eq!(
        silent_got, "",
        "nothing is sent to a connection that asked nothing"
    );
    assert!(
        silent_took >= Duration::from_millis(1900),
        "{silent_took:?}"
    );
    assert!(silent_took < Duration::from_secs(5), "{silent_took:?}");
    assert!(kept_got.starts_with("HTTP/1.1 202"), "{kept_got}");
    assert!(kept_took >= Duration::from_millis(1900), "{kept_took:?}");
    assert!(kept_took < Duration::from_secs(5), "{kept_took:?}");
}

#[tokio::test]
async fn a_stalled_or_dripping_body_is_answered_408_naming_the_rate() {
    let host = strict_host(64).await;
    for drip in [false, true] {
        let stream = TcpStream::connect(host.intake_addr())
            .await
            .expect("connect");
        let (mut reader, mut writer) = stream.into_split();
        writer
            .write_all(b"POST /v1/events HTTP/1.1\r\nhost: x\r\ncontent-type: application/x-ndjson\r\ncontent-length: 100000\r\n\r\n{\"type\":")
            .await
            .expect("write");
        // 10 bytes a second against a minimum of 1,000: cut after the 1 s grace, like a stall.
        let dripping = tokio::spawn(async move {
            for _ in 0..100 {
                if drip && writer.write_all(b" ").await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        let started = Instant::now();
        let mut got = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(8), reader.read_to_end(&mut got)).await;
        dripping.abort();
        assert!(read.is_ok(), "drip={drip}: still open after 8 s");
        let got = String::from_utf8_lossy(&got);
        assert!(got.starts_with("HTTP/1.1 408"), "drip={drip}: {got}");
        assert!(
            got.contains("the request body arrived too slowly")
                && got.contains("1 s per 1000 bytes"),
            "drip={drip}: {got}"
        );
        assert!(started.elapsed() >= Duration::from_millis(900));
    }
}

#[tokio::test]
async fn a_declared_terabyte_is_refused_before_it_is_read() {
    let host = strict_host(64).await;
    let mut stream = TcpStream::connect(host.intake_addr())
        .await
        .expect("connect");
    stream
        .write_all(b"POST /v1/metrics HTTP/1.1\r\nhost: x\r\ncontent-type: application/x-protobuf\r\ncontent-length: 1000000000000\r\n\r\n")
        .await
        .expect("write");
    let (got, took) = until_closed(&mut stream, Duration::from_secs(5)).await;
    assert!(got.starts_with("HTTP/1.1 413"), "{got}");
    assert!(
        got.contains("the body declares 1000000000000 bytes (Content-Length), over the limit of 8388608 bytes"),
        "{got}"
    );
    assert!(
        took < Duration::from_millis(900),
        "answered after {took:?}, not up front"
    );
}

/// Opens `n` connections to `addr` that send nothing.
async fn idle_flood(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut open = Vec::new();
    for _ in 0..n {
        open.push(TcpStream::connect(addr).await.expect("connect"));
    }
    open
}

#[tokio::test]
async fn past_the_connection_limit_idle_connections_give_way_and_busy_ones_get_503() {
    let host = strict_host(8).await;
    let addr = host.intake_addr();
    let mut flood = idle_flood(addr, 20).await;
    // A normal request still gets through: the longest-idle connections make room.
    let answer = post_events(addr, Some("application/x-ndjson"), chunk(), false).await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    let mut closed = 0;
    for stream in &mut flood {
        let mut byte = [0u8; 1];
        if let Ok(Ok(0)) =
            tokio::time::timeout(Duration::from_millis(50), stream.read(&mut byte)).await
        {
            closed += 1;
        }
    }
    // 20 idle and one request through 8 slots: at least 13 of the idle ones were closed early
    // (well before the 2 s idle timeout).
    assert!(closed >= 13, "{closed} of 20 idle connections closed");
    drop(flood);

    // Eight connections each inside a request whose body never comes: a ninth finds no idle
    // connection to replace and is answered 503 at once.
    let mut busy = Vec::new();
    for _ in 0..8 {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream
            .write_all(b"POST /v1/events HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\n")
            .await
            .expect("write");
        busy.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut ninth = TcpStream::connect(addr).await.expect("connect");
    let (got, took) = until_closed(&mut ninth, Duration::from_secs(5)).await;
    assert!(got.starts_with("HTTP/1.1 503"), "{got}");
    assert!(got.to_ascii_lowercase().contains("retry-after: 1"), "{got}");
    assert!(took < Duration::from_millis(500), "{took:?}");
    // The stalled bodies are cut by the body timeout, and the listener serves again.
    for stream in &mut busy {
        let (got, _) = until_closed(stream, Duration::from_secs(8)).await;
        assert!(got.starts_with("HTTP/1.1 408"), "{got}");
    }
    let answer = post_events(addr, Some("application/x-ndjson"), chunk(), false).await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
}

/// POSTs an OTLP protobuf body (gzipped if asked) to `path`; the status and the error message.
async fn otlp(addr: SocketAddr, path: &str, body: Vec<u8>, gzip: bool) -> (u16, String) {
    use prost::Message;
    let (status, _, answer) =
        wasmtel_tests::post(addr, path, Some("application/x-protobuf"), body, gzip).await;
    let message = wasmtel::intake::otlp::Status::decode(answer.as_slice())
        .map(|s| s.message)
        .unwrap_or_else(|_| String::from_utf8_lossy(&answer).into_owned());
    (status, message)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_requests_of_enormous_cost_are_refused_with_the_limit_and_cost_little() {
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::metrics::v1::{
        Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics,
        ScopeMetrics, metric::Data,
    };
    use prost::Message;
    let host = common::start("").await;
    let addr = host.intake_addr();
    // 4,000,000 empty ResourceMetrics: 8 MB, 7.8 KB gzipped.
    let resources = [10u8, 0].repeat(4_000_000);
    let before = resident();
    let sent: Vec<_> = (0..4)
        .map(|_| tokio::spawn(otlp(addr, "/v1/metrics", resources.clone(), true)))
        .collect();
    for answer in sent {
        assert_eq!(
            answer.await.expect("join"),
            (
                400,
                "the request has 4000000 resources, over the limit of 1000 (intake.limits)".into()
            )
        );
    }
    let grown = resident().saturating_sub(before);
    // Four at once: each costs its 8 MB inflated body and no decoding (was 1.6 GiB).
    assert!(grown < 96 << 20, "the host grew by {} MiB", grown >> 20);

    let metric = |name: &str, data: Data| {
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![Metric {
                        name: name.into(),
                        data: Some(data),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
        .encode_to_vec()
    };
    let wide = metric(
        "wide",
        Data::Gauge(Gauge {
            data_points: vec![NumberDataPoint {
                attributes: (0..100_000)
                    .map(|i| wasmtel_tests::kv(&format!("k{i}"), "v"))
                    .collect(),
                ..Default::default()
            }],
        }),
    );
    assert_eq!(
        otlp(addr, "/v1/metrics", wide, false).await,
        (
            400,
            "the request has 100000 attributes on one data point, over the limit of 128 (intake.limits)".into()
        )
    );
    let bounds = metric(
        "tall",
        Data::Histogram(Histogram {
            aggregation_temporality: 1,
            data_points: vec![HistogramDataPoint {
                explicit_bounds: (0..500_000).map(f64::from).collect(),
                bucket_counts: vec![0; 500_001],
                ..Default::default()
            }],
        }),
    );
    assert_eq!(
        otlp(addr, "/v1/metrics", bounds, false).await,
        (
            400,
            "the request has 500000 bounds on one histogram point, over the limit of 256 (intake.limits)".into()
        )
    );
    // Nothing of them reached the exposition.
    let text = wasmtel_tests::scrape(host.prometheus_addr().expect("on")).await;
    assert!(!text.contains("wide") && !text.contains("tall"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_post_is_answered_while_a_scrape_of_100k_series_renders() {
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::metrics::v1::{
        Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric::Data,
        number_data_point::Value,
    };
    use prost::Message;
    let host = common::start(&format!(
        "{}\n[metrics]\ncardinality_limit = 200000\n",
        common::CHUNK_RULE
    ))
    .await;
    let request = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "many".into(),
                    data: Some(Data::Gauge(Gauge {
                        data_points: (0..100_000)
                            .map(|i| NumberDataPoint {
                                attributes: vec![wasmtel_tests::kv("series", &i.to_string())],
                                value: Some(Value::AsDouble(1.0)),
                                ..Default::default()
                            })
                            .collect(),
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let (status, message) = otlp(
        host.intake_addr(),
        "/v1/metrics",
        request.encode_to_vec(),
        false,
    )
    .await;
    assert_eq!(status, 200, "{message}");
    let prometheus = host.prometheus_addr().expect("on");
    let started = Instant::now();
    let text = wasmtel_tests::scrape(prometheus).await;
    let scrape_took = started.elapsed();
    assert_eq!(text.matches("many{").count(), 100_000);
    // Scrapes back to back while events are posted one after another.
    let scraping = tokio::spawn(async move {
        for _ in 0..3 {
            wasmtel_tests::scrape(prometheus).await;
        }
    });
    let mut slowest = Duration::ZERO;
    let mut posted = 0;
    while !scraping.is_finished() {
        let started = Instant::now();
        let answer = post_events(
            host.intake_addr(),
            Some("application/x-ndjson"),
            chunk(),
            false,
        )
        .await;
        assert_eq!(answer.status, 202);
        slowest = slowest.max(started.elapsed());
        posted += 1;
    }
    assert!(posted >= 3, "only {posted} posts during three scrapes");
    // A post waits for no scrape: far less than one scrape takes (the scrape runs on its own thread).
    assert!(
        slowest < scrape_took / 4,
        "slowest post {slowest:?}, one scrape {scrape_took:?}"
    );
}

/// POSTs an OTLP/JSON body to `path`; the status and the parsed answer.
async fn otlp_json(addr: SocketAddr, path: &str, body: Vec<u8>) -> (u16, serde_json::Value) {
    let (status, _, answer) =
        wasmtel_tests::post(addr, path, Some("application/json"), body, false).await;
    (
        status,
        serde_json::from_slice(&answer).expect("a JSON answer"),
    )
}

#[tokio::test]
async fn otlp_json_is_read_strictly_point_by_point() {
    let host = common::start("").await;
    let addr = host.intake_addr();
    // Invalid UTF-8 in a field nobody reads.
    let mut body = br#"{"resourceMetrics":[],"x":"#.to_vec();
    body.extend_from_slice(b"\"\xff\"}");
    let (status, answer) = otlp_json(addr, "/v1/metrics", body).await;
    assert_eq!(status, 400);
    assert_eq!(
        answer["message"],
        "the body is not valid UTF-8 (an invalid byte at offset 27)"
    );

    let gauge = |name: &str, bad: serde_json::Value| {
        let good = json!({"asInt": "5", "timeUnixNano": "1",
            "attributes": [{"key": "ok", "value": {"stringValue": "yes"}}]});
        json!({"name": name, "gauge": {"dataPoints": [bad, good]}})
    };
    let request = json!({"resourceMetrics": [{"scopeMetrics": [{"metrics": [
        gauge("int.overflow", json!({"asInt": "9223372036854775808"})),
        gauge("time.overflow", json!({"asDouble": 1.0, "timeUnixNano": "18446744073709551616"})),
        gauge("not.a.number", json!({"asDouble": "abc"})),
        gauge("attr.overflow", json!({"asInt": "1", "attributes": [
            {"key": "n", "value": {"arrayValue": {"values": [{"intValue": "99999999999999999999"}]}}}
        ]})),
    ]}]}]});
    let (status, answer) = otlp_json(
        addr,
        "/v1/metrics",
        serde_json::to_vec(&request).expect("json"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        answer,
        json!({"partialSuccess": {
            "rejectedDataPoints": 4,
            "errorMessage": "metric `int.overflow`: a point's `asInt` is not a signed 64-bit integer: \"9223372036854775808\""
        }})
    );
    let text = wasmtel_tests::scrape(host.prometheus_addr().expect("on")).await;
    let m = wasmtel_tests::Exposition::parse(&text);
    for name in [
        "int_overflow",
        "time_overflow",
        "not_a_number",
        "attr_overflow",
    ] {
        assert_eq!(m.value(name, &[("ok", "yes")]), Some(5.0), "{name}: {text}");
        assert_eq!(m.count(name), 1, "{name}: only the valid sibling: {text}");
    }

    let record =
        |time: &str, text: &str| json!({"timeUnixNano": time, "body": {"stringValue": text}});
    let logs = json!({"resourceLogs": [{"scopeLogs": [{"logRecords": [
        record("18446744073709551616", "late"), record("1", "fine")
    ]}]}]});
    let (status, answer) =
        otlp_json(addr, "/v1/logs", serde_json::to_vec(&logs).expect("json")).await;
    assert_eq!(status, 200);
    assert_eq!(
        answer,
        json!({"partialSuccess": {
            "rejectedLogRecords": 1,
            "errorMessage": "a log record's `timeUnixNano` is not an unsigned 64-bit integer: \"18446744073709551616\""
        }})
    );
}

/// A 2 MiB tmpfs mounted for the test, unmounted when dropped; `None` (the test skipped)
/// where mounting is not allowed, except in CI, which runs as root.
struct SmallDisk(tempfile::TempDir);

impl SmallDisk {
    fn mount() -> Option<Self> {
        let dir = tempfile::tempdir().expect("dir");
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        match mounted {
            true => Some(Self(dir)),
            false if std::env::var_os("CI").is_none() => {
                eprintln!("cannot mount a tmpfs here (needs root): disk-full test skipped");
                None
            }
            false => panic!("CI must be able to mount a tmpfs for the disk-full test"),
        }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.0.path())
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_with_503_loses_nothing_accepted_and_recovers() {
    let Some(disk) = SmallDisk::mount() else {
        return;
    };
    let receiver = wasmtel_tests::Receiver::start().await;
    receiver.answer(503);
    let host = common::start(&format!(
        "data_dir = \"{}\"\n[otlp]\nendpoint = \"{}\"\ncompression = \"none\"\ndelivery.interval = \"1h\"\ndelivery.queue = \"disk\"\n\
         [otlp.delivery.retry]\nmax_retries = 1000\ninitial_backoff = \"20ms\"\nmax_backoff = \"50ms\"\nbreaker_cooldown = \"20ms\"\n",
        disk.0.path().display(),
        receiver.endpoint()
    ))
    .await;
    let addr = host.intake_addr();
    let batch = |from: u64| -> Vec<u8> {
        (from..from + 100)
            .map(|i| {
                format!("{{\"event_type\":\"generation_completed\",\"model\":\"m\",\"request_id\":\"req-{i}\",\"attributes\":{{\"pad\":\"{}\"}}}}\n", "x".repeat(200))
            })
            .collect::<String>()
            .into_bytes()
    };
    let mut acked = 0u64;
    let refusal = loop {
        let answer = post_events(addr, Some("application/x-ndjson"), batch(acked), false).await;
        match answer.status {
            202 => acked += 100,
            503 => break answer.body,
            other => panic!("{other}: {:?}", answer.body),
        }
        assert!(acked < 100_000, "the 2 MiB disk never filled");
    };
    let message = refusal["error"].as_str().unwrap_or_default().to_owned();
    assert!(
        message.starts_with(
            "integration `otlp`: the disk queue cannot be written: No space left on device"
        ),
        "{message}"
    );
    assert!(message.ends_with("; retry later"), "{message}");
    // The backend comes back: everything accepted is delivered, the journal shrinks, and the
    // host takes events again.
    receiver.answer(200);
    receiver
        .wait_until("every accepted event", |r| {
            let got: std::collections::HashSet<String> = r.request_ids().into_iter().collect();
            (0..acked).all(|i| got.contains(&format!("req-{i}")))
        })
        .await;
    let answer = post_events(addr, Some("application/x-ndjson"), batch(acked), false).await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    host.shutdown().await;
}

#[tokio::test]
async fn a_body_that_came_fast_then_stopped_is_cut_after_the_stall_timeout() {
    // At the default rate rules, 512 KiB received would buy it 18 s; the stall rule ends it.
    let host = common::start("[connections]\nstall_timeout = \"500ms\"\n").await;
    let stream = TcpStream::connect(host.intake_addr())
        .await
        .expect("connect");
    let (mut reader, mut writer) = stream.into_split();
    writer
        .write_all(b"POST /v1/events HTTP/1.1\r\nhost: x\r\ncontent-type: application/x-ndjson\r\ncontent-length: 1048576\r\n\r\n")
        .await
        .expect("write");
    writer
        .write_all(&vec![b' '; 512 * 1024])
        .await
        .expect("write");
    let started = Instant::now();
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), reader.read_to_end(&mut got)).await;
    assert!(read.is_ok(), "still open after 5 s");
    let took = started.elapsed();
    let got = String::from_utf8_lossy(&got);
    assert!(got.starts_with("HTTP/1.1 408"), "{got}");
    assert!(
        got.contains("the request body stopped arriving: 524288 bytes")
            && got.contains("then nothing for 500ms (connections.stall_timeout)"),
        "{got}"
    );
    assert!(took < Duration::from_secs(3), "{took:?}");
    drop(writer);
    host.shutdown().await;
}
