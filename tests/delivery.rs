//! Delivery you can trust: retries, Retry-After, refusals, a bounded queue, and the pause after
//! ten failed exports in a row — against a real OTLP/HTTP receiver.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{Completed, exposition, post_ndjson, start};
use serde_json::Value;
use wasmtel::Host;
use wasmtel::export::delivery::{Report, State};
use wasmtel_tests::{Received, Receiver};

/// A host forwarding events as logs to `receiver`, with fast retries.
async fn host(receiver: &Receiver, logs_batch: usize, logs_queue: usize, max_retries: u32) -> Host {
    start(&format!(
        "[otlp]\nendpoint = \"{}\"\ndelivery.interval = \"1h\"\ndelivery.logs_batch = {logs_batch}\ndelivery.logs_queue = {logs_queue}\n\
         [otlp.delivery.retry]\nmax_retries = {max_retries}\ninitial_backoff = \"2ms\"\nmax_backoff = \"20ms\"\nbreaker_cooldown = \"5ms\"\n",
        receiver.endpoint()
    ))
    .await
}

fn events(seqs: std::ops::Range<u32>) -> Vec<Value> {
    let ok = Completed::ok("m1", "vllm");
    seqs.map(|seq| ok.event(seq)).collect()
}

fn logs_report(host: &Host) -> Report {
    host.integrations()
        .into_iter()
        .find(|r| r.integration == "otlp" && r.signal == "logs")
        .expect("the OTLP logs integration")
}

async fn wait_for(what: &str, done: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_arrives_though_half_the_requests_fail() {
    let receiver = Receiver::start().await;
    // About half the requests fail, in runs of up to six: longer than the three retries.
    receiver.script(Box::new(|n| {
        let code = if (n * 9) % 10 < 5 || n % 10 == 6 {
            503
        } else {
            200
        };
        (code, Vec::new())
    }));
    let host = host(&receiver, 200, 20_000, 3).await;
    for chunk in 0..20u32 {
        let r = post_ndjson(&host, &events(chunk * 500..(chunk + 1) * 500)).await;
        assert_eq!(r.status, 202);
    }
    receiver
        .wait_until("all 10,000 events", |r| {
            r.request_ids().iter().collect::<BTreeSet<_>>().len() == 10_000
        })
        .await;
    let ids: BTreeSet<String> = receiver.with(Received::request_ids).into_iter().collect();
    let want: BTreeSet<String> = (0..10_000).map(|i| format!("req-{i}")).collect();
    assert_eq!(ids, want, "every event, none lost");
    let report = logs_report(&host);
    assert!(
        report.status.retried > 0 && report.status.sent >= 50,
        "{report:?}"
    );
    assert_eq!((report.items.dropped, report.items.queued), (0, 0));
    let m = exposition(&host).await;
    let retries = m.value(
        "wasmtel_export_retries_total",
        &[("integration", "otlp"), ("signal", "logs")],
    );
    assert_eq!(retries, Some(report.status.retried as f64));
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_batches_are_not_retried() {
    let receiver = Receiver::start().await;
    receiver.answer(400);
    let host = host(&receiver, 10, 1000, 3).await;
    post_ndjson(&host, &events(0..30)).await;
    wait_for("three failed exports", || {
        logs_report(&host).status.failed == 3
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        receiver.with(|r| r.headers.len()),
        3,
        "one request per batch, no retry"
    );
    let report = logs_report(&host);
    assert_eq!(
        (
            report.status.retried,
            report.status.sent,
            report.items.queued
        ),
        (0, 0, 0)
    );
    assert_eq!(
        report.status.last_error.as_deref(),
        Some("HTTP 400 Bad Request")
    );
    assert_eq!(report.status.state, State::Degraded);
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_failed_exports_pause_it_and_a_full_queue_drops_exactly_the_oldest() {
    let receiver = Receiver::start().await;
    receiver.answer(503);
    let host = host(&receiver, 1, 50, 0).await;
    post_ndjson(&host, &events(0..1)).await;
    wait_for("the pause", || {
        logs_report(&host).status.state == State::Paused
    })
    .await;
    let report = logs_report(&host);
    assert_eq!(
        report.status.paused_reason.as_deref(),
        Some(
            "paused after 10 consecutive failed exports; last error: HTTP 503 Service Unavailable"
        )
    );
    assert_eq!(
        receiver.with(|r| r.headers.len()),
        10,
        "one request per export, ten exports"
    );

    // While paused: 57 more events into a queue of 50 that still holds the first one.
    post_ndjson(&host, &events(1..58)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        receiver.with(|r| r.headers.len()),
        10,
        "nothing is sent while paused"
    );
    let report = logs_report(&host);
    assert_eq!(
        (report.items.queued, report.items.dropped),
        (50, 8),
        "58 events, room for 50"
    );
    let m = exposition(&host).await;
    assert_eq!(
        m.value(
            "wasmtel_export_dropped_total",
            &[("integration", "otlp"), ("signal", "logs")]
        ),
        Some(8.0)
    );
    let paused = [
        ("integration", "otlp"),
        ("signal", "logs"),
        ("state", "paused"),
    ];
    assert_eq!(m.value("wasmtel_export_state", &paused), Some(1.0));

    receiver.answer(200);
    assert!(host.resume("otlp"));
    assert!(!host.resume("otlp"), "already resumed");
    receiver
        .wait_until("the 50 queued events", |r| r.request_ids().len() == 50)
        .await;
    // Several batches go at once, so in any order; exactly the 8 oldest are missing.
    let mut got: Vec<u32> = receiver
        .with(Received::request_ids)
        .iter()
        .filter_map(|id| id.strip_prefix("req-")?.parse().ok())
        .collect();
    got.sort_unstable();
    assert_eq!(
        got,
        (8..58).collect::<Vec<u32>>(),
        "exactly the 8 oldest were dropped"
    );
    wait_for("connected", || {
        logs_report(&host).status.state == State::Connected
    })
    .await;
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_respected_in_both_forms() {
    for form in ["seconds", "date"] {
        let receiver = Receiver::start().await;
        receiver.script(Box::new(move |n| {
            if n > 0 {
                return (200, Vec::new());
            }
            let value = match form {
                "seconds" => "1".to_owned(),
                _ => httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(2)),
            };
            (503, vec![("retry-after", value)])
        }));
        let host = host(&receiver, 10, 1000, 3).await;
        post_ndjson(&host, &events(0..1)).await;
        receiver
            .wait_until("the retried request", |r| r.times.len() == 2)
            .await;
        let gap = receiver.with(|r| r.times[1] - r.times[0]);
        assert!(
            gap >= Duration::from_millis(990),
            "{form}: retried after {gap:?}, not after the 1 s the server asked for (backoff alone is 2 ms)"
        );
        assert_eq!(receiver.with(Received::request_ids), ["req-0"]);
        host.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_connection_probes_each_otlp_endpoint_with_its_headers() {
    let receiver = Receiver::start().await;
    let host = start(&format!(
        "[otlp]\nendpoint = \"{}\"\ndelivery.interval = \"1h\"\n[otlp.headers]\nauthorization = \"Bearer t0ken\"\n",
        receiver.endpoint()
    ))
    .await;
    let results = host.test("otlp").await.expect("OTLP is configured");
    let signals: Vec<&str> = results.iter().map(|r| r.signal).collect();
    assert_eq!(signals, ["metrics", "logs", "traces"]);
    assert!(results.iter().all(|r| r.diagnosis.is_ok()), "{results:?}");
    receiver.with(|r| {
        assert_eq!(r.headers.len(), 3, "one real request per endpoint");
        assert!(
            r.headers
                .iter()
                .all(|h| h["authorization"] == "Bearer t0ken")
        );
        assert_eq!(r.metrics.len(), 1, "a valid, empty OTLP request");
        assert_eq!(r.traces.len(), 1, "a valid, empty OTLP request");
    });
    receiver.answer(401);
    let results = host.test("otlp").await.expect("OTLP is configured");
    for r in &results {
        assert_eq!(
            r.message,
            "HTTP 401: the endpoint refused the credentials; check the API key or token headers"
        );
    }
    assert!(host.test("nope").await.is_none());
    host.shutdown().await;
}

/// A host forwarding events as logs to `receiver` with `on_full`, a queue of 100 records in
/// batches of 10, two exports in flight, and retries that never give up (so the signal never
/// pauses while the receiver refuses).
async fn overloaded(receiver: &Receiver, on_full: &str) -> Host {
    start(&format!(
        "[intake]\non_full = \"{on_full}\"\n[otlp]\nendpoint = \"{}\"\ndelivery.interval = \"1h\"\ndelivery.logs_batch = 10\ndelivery.logs_queue = 100\ndelivery.max_in_flight = 2\n\
         [otlp.delivery.retry]\nmax_retries = 100000\ninitial_backoff = \"5ms\"\nmax_backoff = \"20ms\"\nbreaker_cooldown = \"5ms\"\n",
        receiver.endpoint()
    ))
    .await
}

/// Posts 30 bodies of 10 events each, 10 at a time, checking the accounting between rounds;
/// returns the answers' statuses and the `Retry-After` of each refusal.
async fn flood(host: &Host) -> Vec<(u16, Option<String>)> {
    let client = reqwest::Client::new();
    let url = format!("http://{}/v1/events", host.intake_addr());
    let mut answers = Vec::new();
    for round in 0..3u32 {
        let posts: Vec<_> = (0..10u32)
            .map(|i| {
                let first = (round * 10 + i) * 10;
                let body = wasmtel_tests::ndjson(&events(first..first + 10));
                let post = client
                    .post(&url)
                    .header("content-type", "application/x-ndjson")
                    .body(body);
                tokio::spawn(async move {
                    let response = post.send().await.expect("intake reachable");
                    let retry = response
                        .headers()
                        .get("retry-after")
                        .map(|v| v.to_str().unwrap_or_default().to_owned());
                    (response.status().as_u16(), retry)
                })
            })
            .collect();
        for post in posts {
            answers.push(post.await.expect("join"));
        }
        balanced(host);
    }
    answers
}

/// The logs signal's accounting, checked: every record accepted is delivered, refused,
/// dropped or queued, exactly.
fn balanced(host: &Host) -> wasmtel::export::delivery::queue::Counts {
    let c = logs_report(host).items;
    assert_eq!(
        c.accepted,
        c.delivered + c.refused + c.dropped + c.queued,
        "{c:?}"
    );
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_in_reject_mode_refuses_with_retry_after_and_loses_nothing() {
    let receiver = Receiver::start().await;
    receiver.answer(503);
    let host = overloaded(&receiver, "reject").await;
    let answers = flood(&host).await;
    let accepted = answers.iter().filter(|(s, _)| *s == 202).count() as u64 * 10;
    let refused: Vec<_> = answers.iter().filter(|(s, _)| *s == 503).collect();
    assert_eq!(accepted + refused.len() as u64 * 10, 300, "{answers:?}");
    assert!(
        !refused.is_empty(),
        "a queue of 100 cannot take 300 records"
    );
    assert!(refused.iter().all(|(_, r)| r.as_deref() == Some("1")));
    let c = balanced(&host);
    assert_eq!((c.accepted, c.dropped), (accepted, 0));
    let m = exposition(&host).await;
    assert_eq!(
        m.value(
            "wasmtel_intake_requests_rejected_total",
            &[("reason", "busy")]
        ),
        Some(refused.len() as f64)
    );
    // The receiver recovers: every accepted record arrives, once.
    receiver.answer(200);
    wait_for("every accepted record delivered", || {
        balanced(&host).delivered == accepted
    })
    .await;
    let ids = receiver.with(Received::request_ids);
    let unique: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(
        (ids.len() as u64, unique.len() as u64),
        (accepted, accepted)
    );
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_in_drop_oldest_mode_counts_every_drop_exactly() {
    let receiver = Receiver::start().await;
    receiver.answer(503);
    let host = overloaded(&receiver, "drop_oldest").await;
    let answers = flood(&host).await;
    assert!(answers.iter().all(|(s, _)| *s == 202), "{answers:?}");
    let c = balanced(&host);
    assert_eq!(c.accepted, 300);
    assert!(c.dropped >= 180, "room for 100 at most: {c:?}");
    receiver.answer(200);
    wait_for("the queue drained", || balanced(&host).queued == 0).await;
    let c = balanced(&host);
    let ids = receiver.with(Received::request_ids);
    let unique: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(
        (ids.len() as u64, unique.len() as u64),
        (c.delivered, c.delivered),
        "what was delivered arrived once; nothing both dropped and delivered"
    );
    assert_eq!(c.delivered + c.dropped, 300);
    let m = exposition(&host).await;
    assert_eq!(
        m.value(
            "wasmtel_export_dropped_total",
            &[("integration", "otlp"), ("signal", "logs")]
        ),
        Some(c.dropped as f64)
    );
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_batches_go_several_at_once_and_gzipped() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use prost::Message as _;

    /// Requests in flight now and at most, records received, bodies not gzipped.
    #[derive(Default)]
    struct Seen {
        now: AtomicUsize,
        most: AtomicUsize,
        records: AtomicUsize,
        plain: AtomicUsize,
    }
    let seen = Arc::new(Seen::default());
    let state = seen.clone();
    let app = axum::Router::new().route(
        "/v1/logs",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let seen = state.clone();
                async move {
                    let now = seen.now.fetch_add(1, Ordering::SeqCst) + 1;
                    seen.most.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    let mut plain = Vec::new();
                    if headers.get("content-encoding").is_some_and(|v| v == "gzip") {
                        std::io::Read::read_to_end(
                            &mut flate2::read::GzDecoder::new(&body[..]),
                            &mut plain,
                        )
                        .expect("gzip");
                    } else {
                        seen.plain.fetch_add(1, Ordering::SeqCst);
                        plain = body.to_vec();
                    }
                    let request = opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest::decode(&plain[..])
                        .expect("OTLP");
                    let n: usize = request
                        .resource_logs
                        .iter()
                        .flat_map(|r| &r.scope_logs)
                        .map(|s| s.log_records.len())
                        .sum();
                    seen.records.fetch_add(n, Ordering::SeqCst);
                    seen.now.fetch_sub(1, Ordering::SeqCst);
                    axum::http::StatusCode::OK
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    let host = start(&format!(
        "[otlp]\nendpoint = \"http://{addr}\"\ndelivery.interval = \"1h\"\ndelivery.logs_batch = 5\ndelivery.max_in_flight = 4\n"
    ))
    .await;
    assert_eq!(post_ndjson(&host, &events(0..40)).await.status, 202);
    wait_for("40 records", || seen.records.load(Ordering::SeqCst) == 40).await;
    assert_eq!(
        seen.most.load(Ordering::SeqCst),
        4,
        "four batches in flight at once"
    );
    assert_eq!(seen.plain.load(Ordering::SeqCst), 0, "every body gzipped");
    // The receiver counts a batch before its answer is back at the host.
    wait_for("the host to count 40 delivered", || {
        balanced(&host).delivered == 40
    })
    .await;
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_load_tool_counts_what_the_host_accepts_and_forwards() {
    use wasmtel::load::{Kind, Load, run};
    let sink = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let host = start(&format!(
        "[otlp]\nendpoint = \"http://{sink}\"\ndelivery.interval = \"1h\"\ndelivery.logs_batch = 300\n"
    ))
    .await;
    for kind in [Kind::Logs, Kind::Events] {
        let before = balanced(&host);
        let load = Load {
            target: format!("http://{}", host.intake_addr()),
            kind,
            items: 2_000,
            batch: 100,
            connections: 4,
            sink: Some(sink),
            // The longest quiet spell waited for before counting what is missing.
            settle: Duration::from_secs(20),
        };
        let outcome = run(&load).await.expect("runs");
        assert_eq!(
            (outcome.accepted, outcome.refused, outcome.delivered),
            (2_000, 0, 2_000),
            "{kind:?}: {outcome}"
        );
        // The sink counts a batch when it arrives; the host, when the answer is back.
        wait_for("the host to count the deliveries", || {
            balanced(&host).delivered - before.delivered == 2_000
        })
        .await;
        assert!(outcome.to_string().ends_with("lost 0"), "{outcome}");
    }
    host.shutdown().await;
}
