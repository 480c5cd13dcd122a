//! Prometheus remote write: the embedded `prometheus-remote-write` exporter against a real
//! Prometheus server (Debian's `prometheus`, as CI installs it) started with
//! `--web.enable-remote-write-receiver`: what its HTTP API gives back equals what was sent.

mod common;

use std::time::{Duration, Instant};

use common::{CHUNK_RULE, exposition, post_ndjson, start};
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use serde_json::{Value, json};
use wasmtel_tests::Prometheus;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_prometheus_gives_back_equals_what_was_sent() {
    let Some(prometheus) = Prometheus::start(None).await else {
        return;
    };
    let histogram = r#"
[[derive.rules]]
event_type = "generation_completed"
instrument = "histogram"
name = "inference.latency"
unit = "ms"
field = "total_ms"
buckets = [100, 500]
attributes = { model = "model" }
"#;
    let host = start(&format!(
        "{CHUNK_RULE}{histogram}\n[[exporters]]\nplugin = \"prometheus-remote-write\"\nendpoint = \"{}/api/v1/write\"\ndelivery.interval = \"1h\"\n",
        prometheus.url
    ))
    .await;
    let events: Vec<Value> = (0..3)
        .map(|_| json!({"event_type": "chunk_produced", "model": "m1"}))
        .chain([50.0, 300.0].map(|ms| {
            json!({"event_type": "generation_completed", "model": "m1", "metrics": {"total_ms": ms}})
        }))
        .collect();
    assert_eq!(post_ndjson(&host, &events).await.status, 202);
    host.collect_now().await;
    let ok = [
        ("integration", "prometheus-remote-write"),
        ("outcome", "ok"),
        ("signal", "metrics"),
    ];
    let deadline = Instant::now() + Duration::from_secs(20);
    while exposition(&host)
        .await
        .value("wasmtel_export_batches_total", &ok)
        != Some(1.0)
    {
        let errors: Vec<_> = host
            .integrations()
            .iter()
            .filter_map(|r| r.status.last_error.clone())
            .collect();
        assert!(Instant::now() < deadline, "not delivered: {errors:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let chunks = prometheus.query("inference_chunks_total").await;
    assert_eq!(chunks.len(), 1, "{chunks:?}");
    assert_eq!(chunks[0]["metric"]["model"], "m1");
    assert_eq!(chunks[0]["metric"]["job"], "wasmtel");
    assert_eq!(chunks[0]["metric"]["otel_scope_name"], "wasmtel.derive");
    assert_eq!(chunks[0]["value"][1], "3");
    let buckets = prometheus
        .query("sum by (le) (inference_latency_milliseconds_bucket)")
        .await;
    let mut le: Vec<(String, String)> = buckets
        .iter()
        .map(|b| {
            (
                b["metric"]["le"].as_str().unwrap_or("").to_owned(),
                b["value"][1].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    le.sort();
    assert_eq!(
        le,
        [
            ("+Inf".to_owned(), "2".to_owned()),
            ("100".to_owned(), "1".to_owned()),
            ("500".to_owned(), "2".to_owned())
        ]
    );
    let sum = prometheus.query("inference_latency_milliseconds_sum").await;
    assert_eq!(sum[0]["value"][1], "350");
    let info = prometheus.query("target_info").await;
    assert_eq!(info.len(), 1, "{info:?}");
    assert!(info[0]["metric"]["host_name"].is_string());
    host.shutdown().await;
}

/// A summary pushed over OTLP/JSON: `rpc.duration` (s), route `a`, 10 observations summing
/// 4.5, median 0.3 and 99th percentile 0.9.
const SUMMARY: &str = r#"{"resourceMetrics":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"api"}}]},"scopeMetrics":[{"scope":{"name":"app"},"metrics":[{"name":"rpc.duration","unit":"s","description":"RPC time.","summary":{"dataPoints":[{"attributes":[{"key":"route","value":{"stringValue":"a"}}],"startTimeUnixNano":"1000","timeUnixNano":"2000","count":"10","sum":4.5,"quantileValues":[{"quantile":0.5,"value":0.3},{"quantile":0.99,"value":0.9}]}]}}]}]}]}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_summary_reaches_metrics_otlp_and_remote_write_each_as_it_represents_one() {
    let Some(prometheus) = Prometheus::start(None).await else {
        return;
    };
    let receiver = wasmtel_tests::Receiver::start().await;
    let host = start(&format!(
        "[otlp]\nendpoint = \"{}\"\ndelivery.interval = \"1h\"\n[[exporters]]\nplugin = \"prometheus-remote-write\"\nendpoint = \"{}/api/v1/write\"\ndelivery.interval = \"1h\"\n",
        receiver.endpoint(),
        prometheus.url
    ))
    .await;
    let (status, body) = wasmtel_tests::post_otlp_metrics(
        host.intake_addr(),
        &serde_json::from_str(SUMMARY).expect("json"),
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));

    // `/metrics`: a Prometheus summary.
    let text = wasmtel_tests::scrape(host.prometheus_addr().expect("prometheus")).await;
    assert!(
        text.contains("# TYPE rpc_duration_seconds summary\n"),
        "{text}"
    );
    let m = wasmtel_tests::Exposition::parse(&text);
    let series = |name: &str, extra: &[(&'static str, &'static str)]| {
        let mut labels = vec![("job", "api"), ("route", "a")];
        labels.extend_from_slice(extra);
        m.value(name, &labels)
    };
    assert_eq!(
        series("rpc_duration_seconds", &[("quantile", "0.5")]),
        Some(0.3)
    );
    assert_eq!(
        series("rpc_duration_seconds", &[("quantile", "0.99")]),
        Some(0.9)
    );
    assert_eq!(series("rpc_duration_seconds_sum", &[]), Some(4.5));
    assert_eq!(series("rpc_duration_seconds_count", &[]), Some(10.0));

    host.collect_now().await;
    // OTLP: the summary point as it came.
    receiver
        .wait_until("the summary exported", |r| {
            r.metrics.iter().any(|req| {
                req.resource_metrics
                    .iter()
                    .flat_map(|rm| &rm.scope_metrics)
                    .flat_map(|sm| &sm.metrics)
                    .any(|m| m.name == "rpc.duration")
            })
        })
        .await;
    let point = receiver.with(|r| {
        r.metrics
            .iter()
            .flat_map(|req| &req.resource_metrics)
            .flat_map(|rm| &rm.scope_metrics)
            .flat_map(|sm| &sm.metrics)
            .find_map(|m| match &m.data {
                Some(Data::Summary(s)) if m.name == "rpc.duration" => {
                    Some((m.unit.clone(), s.data_points[0].clone()))
                }
                _ => None,
            })
            .expect("a summary")
    });
    let (unit, point) = point;
    assert_eq!(unit, "s");
    assert_eq!((point.count, point.sum), (10, 4.5));
    assert_eq!(wasmtel_tests::attrs(&point.attributes)["route"], "a");
    let quantiles: Vec<(f64, f64)> = point
        .quantile_values
        .iter()
        .map(|q| (q.quantile, q.value))
        .collect();
    assert_eq!(quantiles, [(0.5, 0.3), (0.99, 0.9)]);

    // Remote write: the series Prometheus keeps for a summary.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let count = prometheus.query("rpc_duration_seconds_count").await;
        if count.len() == 1 {
            assert_eq!(count[0]["value"][1], "10");
            break;
        }
        assert!(Instant::now() < deadline, "not written: {count:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        prometheus.query("rpc_duration_seconds_sum").await[0]["value"][1],
        "4.5"
    );
    let median = prometheus
        .query("rpc_duration_seconds{quantile=\"0.5\"}")
        .await;
    assert_eq!(median.len(), 1, "{median:?}");
    assert_eq!(median[0]["metric"]["route"], "a");
    assert_eq!(median[0]["value"][1], "0.3");
    host.shutdown().await;
}
