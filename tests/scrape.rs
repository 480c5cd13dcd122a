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
/// histogram, a summary, an info and an enum, served on the port in argv[1] for argv[2] seconds.
const PYTHON_TARGET: &str = r#"
import sys, time
from prometheus_client import Counter, Enum, Gauge, Histogram, Info, Summary, start_http_server
requests = Counter("app_requests", "Requests served.", ["method"])
requests.labels("get").inc(7)
requests.labels("post").inc(2)
Gauge("app_queue_depth", "Queue depth.").set(3.5)
latency = Histogram("app_latency_seconds", "Latency.", buckets=[0.1, 0.5, 1.0])
for v in [0.05, 0.2, 0.7, 2.0]:
    latency.observe(v)
rpc = Summary("app_rpc_seconds", "RPC time.", ["call"])
for v in [0.25, 0.5, 1.25]:
    rpc.labels("get").observe(v)
Info("app_build", "Build.").info({"version": "1.2"})
Enum("app_state", "State.", states=["starting", "running"]).state("running")
start_http_server(int(sys.argv[1]), addr="127.0.0.1")
time.sleep(float(sys.argv[2]))
"#;

/// A Python `script` serving on a free port for a minute, and the host scraping it as job
/// `job`: the process, its `instance` and the host; `None` when `prometheus_client` is missing
/// outside CI.
async fn python_target(
    script: &str,
    job: &str,
) -> Option<(std::process::Child, String, wasmtel::Host)> {
    if !wasmtel_tests::python_has("prometheus_client", "prometheus-client") {
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let child = std::process::Command::new("python3")
        .args(["-c", script, &port.to_string(), "60"])
        .spawn()
        .expect("python runs");
    let instance = format!("127.0.0.1:{port}");
    let host = start(&format!(
        "[[scrape]]\nurl = \"http://{instance}/metrics\"\ninterval = \"200ms\"\njob = \"{job}\"\n"
    ))
    .await;
    Some((child, instance, host))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_prometheus_client_is_scraped_over_openmetrics_with_its_values() {
    let Some((mut child, instance, host)) = python_target(PYTHON_TARGET, "py").await else {
        return;
    };
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
    // The summary flows as one: its count and sum under `# TYPE … summary`.
    let call = with(&[("call", "get")]);
    assert_eq!(m.value("app_rpc_seconds_count", &call), Some(3.0));
    assert_eq!(m.value("app_rpc_seconds_sum", &call), Some(2.0));
    let text = wasmtel_tests::scrape(host.prometheus_addr().expect("prometheus")).await;
    assert!(text.contains("# TYPE app_rpc_seconds summary\n"), "{text}");
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

/// The official client in multi-process mode (`PROMETHEUS_MULTIPROC_DIR`, as gunicorn workers
/// run it): two forked workers count, observe and set a gauge, then exit; the parent serves
/// what `MultiProcessCollector` adds up from their files.
const PYTHON_MULTI_PROCESS: &str = r#"
import os, sys, tempfile, time
os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp()
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess, start_http_server
jobs = Counter("mp_jobs", "Jobs done.", ["queue"])
busy = Gauge("mp_busy", "Busy slots.", multiprocess_mode="sum")
latency = Histogram("mp_latency_seconds", "Latency.", buckets=[0.3, 1.0])
workers = []
for i in range(2):
    pid = os.fork()
    if pid == 0:
        jobs.labels("batch").inc(3 + i)
        busy.set(2 + 3 * i)
        latency.observe(0.25 * (i + 1))
        os._exit(0)
    workers.append(pid)
for pid in workers:
    os.waitpid(pid, 0)
registry = CollectorRegistry()
multiprocess.MultiProcessCollector(registry)
start_http_server(int(sys.argv[1]), addr="127.0.0.1", registry=registry)
time.sleep(float(sys.argv[2]))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_client_in_multi_process_mode_is_scraped_with_the_workers_totals() {
    let Some((mut child, instance, host)) = python_target(PYTHON_MULTI_PROCESS, "mp").await else {
        return;
    };
    let target = [("job", "mp"), ("instance", instance.as_str())];
    let with = |extra: &[(&'static str, &'static str)]| labels(&target, extra);
    until(&host, "mp_jobs_total", &with(&[("queue", "batch")]), 7.0).await;
    let m = exposition(&host).await;
    assert_eq!(m.value("mp_busy", &target), Some(7.0));
    for (le, n) in [("0.3", 1.0), ("1", 2.0), ("+Inf", 2.0)] {
        assert_eq!(
            m.value("mp_latency_seconds_bucket", &with(&[("le", le)])),
            Some(n),
            "le {le}"
        );
    }
    assert_eq!(m.value("mp_latency_seconds_sum", &target), Some(0.75));
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
    // The kubelet's port speaks HTTPS with its own certificate, trusted through `ca_file`.
    let (kubelet, ca) = wasmtel_tests::serve_tls(kubelet).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret\n").expect("token");
    let ca_file = dir.path().join("ca.crt");
    std::fs::write(&ca_file, ca).expect("ca");
    let host = start(&format!(
        "[kubernetes.pods]\nurl = \"https://{kubelet}/pods\"\ntoken_file = \"{}\"\nca_file = \"{}\"\nrefresh = \"200ms\"\ninterval = \"100ms\"\n",
        token.display(),
        ca_file.display()
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

    // A pod that comes is scraped without a restart.
    let (late, late_scrapes) = counted_target().await;
    pods.lock().expect("lock")["items"]
        .as_array_mut()
        .expect("items")
        .push(pod(
            "sglang",
            &serde_json::json!({"prometheus.io/scrape": "true", "prometheus.io/port": late.to_string()}),
        ));
    let late_instance = format!("127.0.0.1:{late}");
    until(
        &host,
        "pod_ready",
        &[("job", "sglang"), ("instance", late_instance.as_str())],
        1.0,
    )
    .await;
    assert!(late_scrapes.load(Ordering::Relaxed) > 0);

    // The pods go: their targets stop within a refresh.
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

/// An exposition of `tests/fixtures/expositions`, written from each project's own metric
/// definitions.
fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/fixtures/expositions/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("fixture")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_servers_are_charted_per_model_as_genai_metrics_and_their_raw_series_kept() {
    let mut app = axum::Router::new();
    for server in ["vllm", "tgi", "triton", "sglang", "dcgm"] {
        let body = fixture(&format!("{server}.txt"));
        app = app.route(
            &format!("/{server}/metrics"),
            axum::routing::get(move || {
                let body = body.clone();
                async move { ([("content-type", "text/plain; version=0.0.4")], body) }
            }),
        );
    }
    let addr = wasmtel_tests::serve(app).await;
    let data = tempfile::tempdir().expect("data dir");
    let mut config = format!(
        "data_dir = \"{}\"\n[admin]\nhistory_interval = \"100ms\"\n",
        data.path().display()
    );
    for server in ["vllm", "tgi", "triton", "sglang", "dcgm"] {
        config += &format!(
            "[[scrape]]\nurl = \"http://{addr}/{server}/metrics\"\ninterval = \"100ms\"\njob = \"{server}\"\n"
        );
        if server == "tgi" {
            config += "labels = { \"gen_ai.request.model\" = \"bigscience/bloom-560m\" }\n";
        }
    }
    let host = start(&config).await;
    let llama = "meta-llama/Llama-3.1-8B-Instruct";
    let vllm = [
        ("job", "vllm"),
        ("engine", "0"),
        ("gen_ai_request_model", llama),
        ("inference_engine", "vllm"),
    ];
    until(
        &host,
        "gen_ai_server_request_duration_seconds_count",
        &vllm,
        16.0,
    )
    .await;
    let m = exposition(&host).await;
    assert_eq!(
        m.value("gen_ai_server_request_duration_seconds_sum", &vllm),
        Some(27.0)
    );
    assert_eq!(
        m.value(
            "gen_ai_server_time_to_first_token_seconds_bucket",
            &labels(&vllm, &[("le", "0.1")])
        ),
        Some(12.0)
    );
    assert_eq!(
        m.value(
            "gen_ai_client_token_usage_sum",
            &labels(&vllm, &[("gen_ai_token_type", "output")])
        ),
        Some(2048.0)
    );
    assert_eq!(
        m.value("inference_kv_cache_usage_ratio", &vllm),
        Some(0.25),
        "{:?}",
        m.samples("inference_kv_cache_usage_ratio")
            .collect::<Vec<_>>()
    );
    // The raw series stay as the server named them.
    let raw = [("job", "vllm"), ("engine", "0"), ("model_name", llama)];
    assert_eq!(m.value("vllm:num_requests_running", &raw), Some(3.0));

    let tgi = [
        ("job", "tgi"),
        ("gen_ai_request_model", "bigscience/bloom-560m"),
        ("inference_engine", "tgi"),
    ];
    until(
        &host,
        "gen_ai_server_request_duration_seconds_count",
        &tgi,
        10.0,
    )
    .await;
    let triton = [
        ("job", "triton"),
        ("gen_ai_request_model", "ensemble_llm"),
        ("inference_engine", "triton"),
        ("version", "1"),
    ];
    until(
        &host,
        "gen_ai_server_request_duration_seconds_sum",
        &triton,
        62.0,
    )
    .await;
    let sglang = [
        ("job", "sglang"),
        ("gen_ai_request_model", "Qwen/Qwen2.5-7B-Instruct"),
        ("inference_engine", "sglang"),
    ];
    until(&host, "inference_requests_running", &sglang, 7.0).await;
    let dcgm = [
        ("job", "dcgm"),
        ("gpu", "0"),
        ("UUID", "GPU-1f3a2b4c-0000-0000-0000-000000000001"),
        ("pci_bus_id", "00000000:3B:00.0"),
        ("device", "nvidia0"),
        ("modelName", "NVIDIA H100 80GB HBM3"),
        ("Hostname", "node-a"),
        ("DCGM_FI_DRIVER_VERSION", "550.54.15"),
        ("container", "vllm"),
        ("namespace", "team-a"),
        ("pod", "vllm-0"),
    ];
    until(&host, "DCGM_FI_DEV_GPU_UTIL", &dcgm, 87.0).await;

    // The status page's history charts every model with no other setup.
    let api = common::Api::new(&host, data.path());
    let models = [
        llama,
        "bigscience/bloom-560m",
        "ensemble_llm",
        "Qwen/Qwen2.5-7B-Instruct",
    ];
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, h, _) = api.get("/api/v1/history").await;
        let charted = h["models"].as_array().map_or(0, |rows| {
            rows.iter()
                .filter(|row| {
                    models.contains(&row["model"].as_str().unwrap_or(""))
                        && row["requests_per_second"]
                            .as_array()
                            .is_some_and(|v| v.iter().any(serde_json::Value::is_number))
                })
                .count()
        });
        if charted == models.len() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "every model server's model is charted: {h}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Each target has its row on the status page.
    let (_, status, _) = api.get("/api/v1/status").await;
    let rows: Vec<(&str, bool)> = status["scrape_targets"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|t| (t["job"].as_str().unwrap_or(""), t["up"] == true))
        .collect();
    assert_eq!(
        rows,
        [
            ("dcgm", true),
            ("sglang", true),
            ("tgi", true),
            ("triton", true),
            ("vllm", true)
        ]
    );
    host.shutdown().await;
}

/// The exposition the side-by-side target serves: a counter, a gauge, a histogram, and, until
/// `gone` is false, a counter that then disappears.
fn side_by_side_body(done: u32, gone: bool) -> String {
    let mut body = format!(
        "# TYPE jobs_done_total counter\n\
         jobs_done_total{{queue=\"a\"}} {done}\n\
         jobs_done_total{{queue=\"b\"}} 3\n\
         # TYPE temperature_celsius gauge\n\
         temperature_celsius{{sensor=\"die\"}} 61.5\n\
         # TYPE wait_seconds histogram\n\
         wait_seconds_bucket{{le=\"0.5\"}} 2\n\
         wait_seconds_bucket{{le=\"1.0\"}} {done}\n\
         wait_seconds_bucket{{le=\"+Inf\"}} {done}\n\
         wait_seconds_sum 12.25\n\
         wait_seconds_count {done}\n"
    );
    if !gone {
        body.push_str("# TYPE retries_total counter\nretries_total{op=\"put\"} 5\n");
    }
    body
}

/// Series as (name, sorted labels) → value.
type Stored = std::collections::BTreeMap<(String, Vec<(String, String)>), f64>;

/// Every series Prometheus stored for `job`; `le` and `quantile` as numbers, so that `1` and
/// `1.0` are one bound.
async fn stored(prometheus: &wasmtel_tests::Prometheus, job: &str) -> Stored {
    let mut out = std::collections::BTreeMap::new();
    for series in prometheus.query(&format!("{{job=\"{job}\"}}")).await {
        let Some(labels) = series["metric"].as_object() else {
            continue;
        };
        let name = labels["__name__"].as_str().unwrap_or_default().to_owned();
        let mut pairs: Vec<(String, String)> = labels
            .iter()
            .filter(|(k, _)| *k != "__name__")
            .map(|(k, v)| (k.clone(), numeric_label(k, v.as_str().unwrap_or_default())))
            .collect();
        pairs.sort();
        let value = series["value"][1].as_str().and_then(|v| v.parse().ok());
        out.insert((name, pairs), value.unwrap_or(f64::NAN));
    }
    out
}

/// A bound or quantile label as its number's shortest text.
fn numeric_label(key: &str, value: &str) -> String {
    match (key, value.parse::<f64>()) {
        ("le" | "quantile", Ok(v)) if v.is_finite() => v.to_string(),
        _ => value.to_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scraping_the_same_target_stores_what_wasmtel_exports() {
    let body = Arc::new(std::sync::Mutex::new(side_by_side_body(41, false)));
    let served = body.clone();
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let text = served.lock().expect("lock").clone();
            async move { ([("content-type", "text/plain; version=0.0.4")], text) }
        }),
    );
    let url = format!("http://{}/metrics", wasmtel_tests::serve(app).await);
    let Some(prometheus) = wasmtel_tests::Prometheus::scraping("side", &url).await else {
        return;
    };
    let host = start(&format!(
        "[[scrape]]\nurl = \"{url}\"\ninterval = \"200ms\"\njob = \"side\"\n"
    ))
    .await;
    // Prometheus' own series about the scrape that wasmtel reports the same way; durations
    // differ by nature, and `scrape_series_added` counts a histogram's lines in Prometheus but
    // the histogram once here.
    let compared = |name: &str| !name.starts_with("scrape_") || name.starts_with("scrape_samples");
    let agree = |stored: &Stored, m: &wasmtel_tests::Exposition| {
        stored
            .iter()
            .filter(|((name, _), _)| compared(name))
            .map(|((name, labels), value)| {
                let labels: Vec<(&str, &str)> = labels
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                let ours = m
                    .samples(name)
                    .find(|(l, _)| {
                        l.iter()
                            .filter(|(k, _)| !k.starts_with("otel_scope_"))
                            .map(|(k, v)| (k.as_str(), numeric_label(k, v)))
                            .eq(labels.iter().map(|(k, v)| (*k, (*v).to_owned())))
                    })
                    .map(|(_, v)| v);
                (name.clone(), ours == Some(*value))
            })
            .filter(|(_, same)| !same)
            .map(|(name, _)| name)
            .collect::<Vec<_>>()
    };
    let until_agreed = |want: &'static str| {
        let (prometheus, host) = (&prometheus, &host);
        async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            loop {
                let stored = stored(prometheus, "side").await;
                let m = exposition(host).await;
                let differ = agree(&stored, &m);
                if stored.keys().any(|(n, _)| n == want) && differ.is_empty() {
                    return stored;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "Prometheus and wasmtel differ on {differ:?}: {stored:?}"
                );
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    };
    let first = until_agreed("retries_total").await;
    assert!(first.len() >= 9, "every series compared: {first:?}");

    // The counter moves and one series goes: both stores end it, none keeps a last value.
    *body.lock().expect("lock") = side_by_side_body(45, true);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let stored = stored(&prometheus, "side").await;
        let m = exposition(&host).await;
        let moved = stored.iter().any(|((n, l), v)| {
            n == "jobs_done_total" && l.iter().any(|(k, v)| k == "queue" && v == "a") && *v == 45.0
        });
        let ended = !stored.keys().any(|(n, _)| n == "retries_total")
            && m.samples("retries_total").count() == 0;
        if moved && ended && agree(&stored, &m).is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "after the change: {stored:?} vs {:?}",
            agree(&stored, &m)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_is_read_and_limits_and_timeouts_fail_the_scrape_by_name() {
    let text = "# TYPE jobs_total counter\njobs_total 3\njobs_total{q=\"b\"} 4\n";
    let zipped = wasmtel_tests::gzipped(text.as_bytes());
    let app = axum::Router::new()
        .route(
            "/gzip",
            axum::routing::get(move |headers: axum::http::HeaderMap| {
                let asked = headers
                    .get("accept-encoding")
                    .is_some_and(|v| v.to_str().unwrap_or("").contains("gzip"));
                let zipped = zipped.clone();
                async move {
                    assert!(asked, "gzip is asked for");
                    ([("content-encoding", "gzip")], zipped)
                }
            }),
        )
        .route("/many", axum::routing::get(move || async move { text }))
        .route(
            "/big",
            axum::routing::get(|| async { format!("# {}\nx 1\n", "a".repeat(2000)) }),
        )
        .route(
            "/slow",
            axum::routing::get(|| async {
                tokio::time::sleep(Duration::from_secs(3)).await;
                "x 1\n"
            }),
        );
    let addr = wasmtel_tests::serve(app).await;
    let data = tempfile::tempdir().expect("data dir");
    let target = |path: &str, extra: &str| {
        format!(
            "[[scrape]]\nurl = \"http://{addr}/{path}\"\ninterval = \"300ms\"\njob = \"{path}\"\n{extra}"
        )
    };
    let host = start(&format!(
        "data_dir = \"{}\"\n{}{}{}{}",
        data.path().display(),
        target("gzip", ""),
        target("many", "sample_limit = 1\n"),
        target("big", "body_size_limit = 1000\n"),
        target("slow", "timeout = \"200ms\"\n"),
    ))
    .await;
    let instance = addr.to_string();
    until(
        &host,
        "jobs_total",
        &[("job", "gzip"), ("instance", instance.as_str()), ("q", "b")],
        4.0,
    )
    .await;
    let api = common::Api::new(&host, data.path());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, body, _) = api.get("/api/v1/scrape").await;
        let rows: std::collections::BTreeMap<String, (bool, String)> = body["targets"]
            .as_array()
            .expect("rows")
            .iter()
            .map(|t| {
                let job = t["job"].as_str().unwrap_or_default().to_owned();
                let error = t["error"].as_str().unwrap_or_default().to_owned();
                (job, (t["up"] == true, error))
            })
            .collect();
        let want = std::collections::BTreeMap::from([
            (
                "big".to_owned(),
                (
                    false,
                    "the body is over body_size_limit (1000 bytes)".to_owned(),
                ),
            ),
            ("gzip".to_owned(), (true, String::new())),
            (
                "many".to_owned(),
                (
                    false,
                    "2 samples, more than sample_limit (1) allows".to_owned(),
                ),
            ),
            (
                "slow".to_owned(),
                (false, "the scrape timed out".to_owned()),
            ),
        ]);
        if rows == want {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{rows:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let m = exposition(&host).await;
    assert_eq!(
        m.value("up", &[("job", "many"), ("instance", instance.as_str())]),
        Some(0.0)
    );
    assert_eq!(
        m.samples("jobs_total")
            .filter(|(l, _)| l.get("job").map(String::as_str) == Some("many"))
            .count(),
        0,
        "a scrape over its sample limit records nothing"
    );
    host.shutdown().await;
}
