//! Prometheus remote write: the embedded `prometheus-remote-write` exporter against a real
//! Prometheus server (Debian's `prometheus`, as CI installs it) started with
//! `--web.enable-remote-write-receiver`: what its HTTP API gives back equals what was sent.

mod common;

use std::time::{Duration, Instant};

use common::{CHUNK_RULE, exposition, post_ndjson, start};
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
