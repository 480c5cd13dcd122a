//! Python and JavaScript exporters keep up with real collections at the default settings, in
//! a process of their own: the other plugin tests running beside them on two cores would
//! starve the calls of the CPU their deadline assumes.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::start;
use serde_json::json;

/// A receiver counting the `load_` lines of the bodies POSTed under `/base`.
async fn line_sink() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let seen = Arc::new(AtomicUsize::new(0));
    let count = seen.clone();
    let app = axum::Router::new().route(
        "/base/{*path}",
        axum::routing::post(move |body: String| {
            let count = count.clone();
            async move {
                let n = body.lines().filter(|l| l.starts_with("load_")).count();
                count.fetch_add(n, Ordering::Relaxed);
                axum::http::StatusCode::OK
            }
        }),
    );
    (wasmtel_tests::serve(app).await, seen)
}

/// Runs the example exporter `name` (built into `dir`) with the default plugin settings on a
/// collection of 20,000 series every 2 s: every collection is delivered whole, nothing is
/// refused or dropped, the plugin never fails. Three collections, or as many as
/// `WASMTEL_SOAK_SECONDS` take (the README's five-minute figures).
async fn example_keeps_up_with_20000_series(dir: &std::path::Path, name: &str) {
    let (addr, seen) = line_sink().await;
    let host = start(&format!(
        "[derive]\nrule_set = \"none\"\n[plugins]\ndir = \"{}\"\n[[exporters]]\nplugin = \"{name}\"\nendpoint = \"http://{addr}/base\"\ndelivery.interval = \"2s\"\n",
        dir.display()
    ))
    .await;
    // Ten gauges of 2,000 series each, as an application would send them.
    let metrics: Vec<serde_json::Value> = (0..10)
        .map(|m| {
            let points: Vec<serde_json::Value> = (0..2000)
                .map(|i| {
                    json!({"asDouble": f64::from(i), "attributes": [
                        {"key": "series", "value": {"stringValue": format!("s-{i:04}")}}]})
                })
                .collect();
            json!({"name": format!("load_{m}"), "gauge": {"dataPoints": points}})
        })
        .collect();
    let request = json!({"resourceMetrics": [{"resource": {"attributes": [
        {"key": "service.name", "value": {"stringValue": "load"}}]},
        "scopeMetrics": [{"metrics": metrics}]}]});
    let (status, body) = wasmtel_tests::post_otlp_metrics(host.intake_addr(), &request).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let lines = || seen.load(Ordering::Relaxed);
    let soak: u64 = std::env::var("WASMTEL_SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let collections = (soak / 2).max(3) as usize;
    let deadline = std::time::Instant::now() + Duration::from_secs(120 + soak);
    while lines() < collections * 20_000 {
        assert!(
            std::time::Instant::now() < deadline,
            "{name}: {} of {collections} collections' lines arrived",
            lines()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    host.collect_now().await;
    let r = host
        .integrations()
        .into_iter()
        .find(|r| r.signal == "metrics")
        .expect("the metrics report");
    assert_eq!((r.items.refused, r.items.dropped), (0, 0), "{name}: {r:?}");
    let row = host
        .plugin_health()
        .into_iter()
        .find(|row| row.plugin == name)
        .expect("listed");
    assert_eq!(
        row.stats.calls.get("failed"),
        None,
        "{name}: {:?}",
        row.stats.calls
    );
    eprintln!(
        "{name}: 20,000 series every 2 s, {} collections ({} lines): mean call {:.1} ms, memory {:.1} MiB",
        lines() / 20_000,
        lines(),
        row.stats.mean_call_seconds * 1e3,
        row.stats.memory_bytes as f64 / 1048576.0
    );
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_exporter_keeps_up_with_20000_series() {
    if let Some(dir) = wasmtel_tests::python_example() {
        example_keeps_up_with_20000_series(&dir, "python-exporter").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_javascript_exporter_keeps_up_with_20000_series() {
    if let Some(dir) = wasmtel_tests::js_example() {
        example_keeps_up_with_20000_series(&dir, "js-exporter").await;
    }
}
