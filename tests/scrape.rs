//! Scraping Prometheus endpoints: a target served by the official Python `prometheus_client`
//! (OpenMetrics, negotiated) and one served here in the 0.0.4 text format, read on an interval,
//! their series on `/metrics` under the target's `job` and `instance` with their values, and the
//! target's own `up`, `scrape_samples_scraped` and `scrape_duration_seconds`; a failing target
//! reads `up` 0.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use common::{exposition, start};

/// Waits until `/metrics` shows `name` with `labels` at `value`.
async fn until(host: &wasmtel::Host, name: &str, labels: &[(&str, &str)], value: f64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let m = exposition(host).await;
        if m.value(name, labels) == Some(value) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{name} {labels:?} never read {value}: {:?}",
            m.samples(name).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A target's `job` and `instance` with `extra` labels after them.
fn labels<'a>(
    target: &[(&'a str, &'a str)],
    extra: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    target.iter().chain(extra).copied().collect()
}

/// A target serving the text format, answering with the status in `status`.
async fn text_target(status: Arc<AtomicU16>) -> String {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let status = status.load(Ordering::Relaxed);
            async move {
                let body = "# HELP jobs_done_total Jobs done.\n\
                            # TYPE jobs_done_total counter\n\
                            jobs_done_total{queue=\"a\"} 41\n\
                            # TYPE temperature_celsius gauge\n\
                            temperature_celsius 61.5\n\
                            # TYPE wait_seconds histogram\n\
                            wait_seconds_bucket{le=\"1\"} 2\n\
                            wait_seconds_bucket{le=\"5\"} 3\n\
                            wait_seconds_bucket{le=\"+Inf\"} 4\n\
                            wait_seconds_sum 12\n\
                            wait_seconds_count 4\n";
                (
                    axum::http::StatusCode::from_u16(status).unwrap_or_default(),
                    [("content-type", "text/plain; version=0.0.4")],
                    body,
                )
            }
        }),
    );
    format!("http://{}/metrics", wasmtel_tests::serve(app).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_text_target_is_scraped_on_its_interval_and_a_failing_one_reads_up_zero() {
    let status = Arc::new(AtomicU16::new(200));
    let url = text_target(status.clone()).await;
    let instance = url
        .trim_start_matches("http://")
        .trim_end_matches("/metrics")
        .to_owned();
    let data = tempfile::tempdir().expect("data dir");
    let host = start(&format!(
        "data_dir = \"{}\"\n[[scrape]]\nurl = \"{url}\"\ninterval = \"200ms\"\njob = \"worker\"\nlabels = {{ team = \"ml\" }}\n",
        data.path().display()
    ))
    .await;
    let api = common::Api::new(&host, data.path());
    let target = [("job", "worker"), ("instance", instance.as_str())];
    let with = |extra: &[(&'static str, &'static str)]| labels(&target, extra);
    until(&host, "up", &target, 1.0).await;
    until(&host, "jobs_done_total", &with(&[("queue", "a")]), 41.0).await;
    let m = exposition(&host).await;
    assert_eq!(m.value("temperature_celsius", &target), Some(61.5));
    for (le, n) in [("1", 2.0), ("5", 3.0), ("+Inf", 4.0)] {
        assert_eq!(
            m.value("wait_seconds_bucket", &with(&[("le", le)])),
            Some(n),
            "le {le}"
        );
    }
    assert_eq!(m.value("wait_seconds_sum", &target), Some(12.0));
    assert_eq!(m.value("scrape_samples_scraped", &target), Some(7.0));
    assert!(
        m.value("scrape_duration_seconds", &target)
            .is_some_and(|d| d > 0.0 && d < 5.0)
    );
    let mut info = with(&[("team", "ml"), ("service_name", "worker")]);
    info.push(("service_instance_id", instance.as_str()));
    assert_eq!(
        m.value("target_info", &info),
        Some(1.0),
        "the target's labels are resource attributes: {:?}",
        m.samples("target_info").collect::<Vec<_>>()
    );

    let (status_code, body, _) = api.get("/api/v1/scrape").await;
    assert_eq!(status_code, 200);
    let row = &body["targets"][0];
    assert_eq!(
        (
            &row["url"],
            &row["job"],
            &row["instance"],
            &row["up"],
            &row["samples"],
            &row["series"]
        ),
        (
            &serde_json::json!(url),
            &serde_json::json!("worker"),
            &serde_json::json!(instance),
            &serde_json::json!(true),
            &serde_json::json!(7),
            &serde_json::json!(3)
        )
    );

    // The counter does not double on the next scrapes: the same total is no new work.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        exposition(&host)
            .await
            .value("jobs_done_total", &with(&[("queue", "a")])),
        Some(41.0)
    );

    status.store(500, Ordering::Relaxed);
    until(&host, "up", &target, 0.0).await;
    until(&host, "scrape_samples_scraped", &target, 0.0).await;
    let m = exposition(&host).await;
    for gone in [
        "jobs_done_total",
        "temperature_celsius",
        "wait_seconds_count",
    ] {
        assert_eq!(
            m.samples(gone).count(),
            0,
            "a failed target's series end, no frozen last value: {gone}"
        );
    }
    let (_, body, _) = api.get("/api/v1/scrape").await;
    assert_eq!(
        (&body["targets"][0]["up"], &body["targets"][0]["error"]),
        (&serde_json::json!(false), &serde_json::json!("HTTP 500"))
    );
    status.store(200, Ordering::Relaxed);
    until(&host, "jobs_done_total", &with(&[("queue", "a")]), 41.0).await;
    host.shutdown().await;
}

/// A service instrumented with the official `prometheus_client`: a counter, a gauge, a
/// histogram, an info and an enum, served on the port in argv[1] for argv[2] seconds.
const PYTHON_TARGET: &str = r#"
import sys, time
from prometheus_client import Counter, Enum, Gauge, Histogram, Info, start_http_server
requests = Counter("app_requests", "Requests served.", ["method"])
requests.labels("get").inc(7)
requests.labels("post").inc(2)
Gauge("app_queue_depth", "Queue depth.").set(3.5)
latency = Histogram("app_latency_seconds", "Latency.", buckets=[0.1, 0.5, 1.0])
for v in [0.05, 0.2, 0.7, 2.0]:
    latency.observe(v)
Info("app_build", "Build.").info({"version": "1.2"})
Enum("app_state", "State.", states=["starting", "running"]).state("running")
start_http_server(int(sys.argv[1]), addr="127.0.0.1")
time.sleep(float(sys.argv[2]))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_prometheus_client_is_scraped_over_openmetrics_with_its_values() {
    if !wasmtel_tests::python_has("prometheus_client", "prometheus-client") {
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut child = std::process::Command::new("python3")
        .args(["-c", PYTHON_TARGET, &port.to_string(), "60"])
        .spawn()
        .expect("python runs");
    let instance = format!("127.0.0.1:{port}");
    let host = start(&format!(
        "[[scrape]]\nurl = \"http://{instance}/metrics\"\ninterval = \"200ms\"\njob = \"py\"\n"
    ))
    .await;
    let target = [("job", "py"), ("instance", instance.as_str())];
    let with = |extra: &[(&'static str, &'static str)]| labels(&target, extra);
    until(&host, "up", &target, 1.0).await;
    until(
        &host,
        "app_requests_total",
        &with(&[("method", "get")]),
        7.0,
    )
    .await;
    let m = exposition(&host).await;
    assert_eq!(
        m.value("app_requests_total", &with(&[("method", "post")])),
        Some(2.0)
    );
    assert_eq!(m.value("app_queue_depth", &target), Some(3.5));
    for (le, n) in [("0.1", 1.0), ("0.5", 2.0), ("1", 3.0), ("+Inf", 4.0)] {
        assert_eq!(
            m.value("app_latency_seconds_bucket", &with(&[("le", le)])),
            Some(n),
            "le {le}"
        );
    }
    assert_eq!(m.value("app_latency_seconds_count", &target), Some(4.0));
    assert_eq!(m.value("app_latency_seconds_sum", &target), Some(2.95));
    assert_eq!(
        m.value("app_state", &with(&[("app_state", "running")])),
        Some(1.0)
    );
    assert_eq!(
        m.value("app_state", &with(&[("app_state", "starting")])),
        Some(0.0)
    );
    host.shutdown().await;
    let _ = child.kill();
    let _ = child.wait();
}

/// A target counting the scrapes it answers.
async fn counted_target() -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
    let scrapes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = scrapes.clone();
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            seen.fetch_add(1, Ordering::Relaxed);
            async { "# TYPE pod_ready gauge\npod_ready 1\n" }
        }),
    );
    (wasmtel_tests::serve(app).await.port(), scrapes)
}

/// A pod of the kubelet's list, on 127.0.0.1, with `annotations`.
fn pod(name: &str, annotations: &serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "metadata": {"name": name, "namespace": "ml", "uid": format!("uid-{name}"),
                     "labels": {"app": name}, "annotations": annotations},
        "spec": {"nodeName": "node-1"},
        "status": {"phase": "Running", "podIP": "127.0.0.1"}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kubelets_annotated_pods_are_scraped_and_stop_when_they_go() {
    let (annotated, annotated_scrapes) = counted_target().await;
    let (plain, plain_scrapes) = counted_target().await;
    let pods = Arc::new(std::sync::Mutex::new(serde_json::json!({"items": [
        pod("vllm", &serde_json::json!({"prometheus.io/scrape": "true", "prometheus.io/port": annotated.to_string()})),
        pod("plain", &serde_json::json!({"prometheus.io/port": plain.to_string()})),
    ]})));
    let listed = pods.clone();
    let kubelet = axum::Router::new().route(
        "/pods",
        axum::routing::get(move |headers: axum::http::HeaderMap| {
            let list = listed.lock().expect("lock").clone();
            async move {
                match headers.get("authorization").and_then(|v| v.to_str().ok()) {
                    Some("Bearer s3cret") => (axum::http::StatusCode::OK, list.to_string()),
                    _ => (axum::http::StatusCode::UNAUTHORIZED, String::new()),
                }
            }
        }),
    );
    let kubelet = wasmtel_tests::serve(kubelet).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret\n").expect("token");
    let host = start(&format!(
        "[kubernetes.pods]\nurl = \"http://{kubelet}/pods\"\ntoken_file = \"{}\"\nrefresh = \"200ms\"\ninterval = \"100ms\"\n",
        token.display()
    ))
    .await;
    let instance = format!("127.0.0.1:{annotated}");
    let target = [("job", "vllm"), ("instance", instance.as_str())];
    until(&host, "pod_ready", &target, 1.0).await;
    let m = exposition(&host).await;
    let info = m
        .samples("target_info")
        .find(|(l, _)| l.get("job").map(String::as_str) == Some("vllm"))
        .map(|(l, _)| l.clone())
        .expect("the pod's target_info");
    assert_eq!(
        info.get("k8s_namespace_name").map(String::as_str),
        Some("ml")
    );
    assert_eq!(info.get("k8s_pod_name").map(String::as_str), Some("vllm"));
    assert_eq!(
        info.get("k8s_node_name").map(String::as_str),
        Some("node-1")
    );
    assert_eq!(
        plain_scrapes.load(Ordering::Relaxed),
        0,
        "an unannotated pod is not scraped"
    );

    // The pod goes: its target stops within a refresh.
    pods.lock().expect("lock")["items"] = serde_json::json!([]);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let after = annotated_scrapes.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        annotated_scrapes.load(Ordering::Relaxed),
        after,
        "no scrape after the pod went"
    );
    assert_eq!(
        exposition(&host).await.samples("pod_ready").count(),
        0,
        "the pod's series ended with it"
    );
    assert_eq!(plain_scrapes.load(Ordering::Relaxed), 0);
    host.shutdown().await;
}
