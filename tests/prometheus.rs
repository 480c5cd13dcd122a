//! Prometheus exposition tests: `promtool check metrics`, naming, and `target_info`.

mod common;

use std::io::Write as _;
use std::process::{Command, Stdio};

use common::{Completed, post_ndjson, start};
use serde_json::json;
use wasmtel_tests::{Exposition, post_events, scrape};

/// Runs `promtool check metrics`; without promtool the check is skipped locally but fails in CI.
fn promtool_check(text: &str) {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) if std::env::var_os("CI").is_none() => {
            eprintln!(
                "promtool not available ({e}); install it with `apt-get install prometheus` — .ci/run does"
            );
            return;
        }
        Err(e) => panic!("promtool is required in CI: {e}"),
    };
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("promtool runs");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && report.trim().is_empty(),
        "promtool check metrics failed:\n{report}\n---\n{text}"
    );
}

#[tokio::test]
async fn promtool_accepts_the_exposition() {
    let host = start("[resource]\nservice_name = \"svc\"\n").await;
    let weird = "we\"ird\\model\nname";
    let events = [
        Completed {
            model: weird,
            engine: "vllm",
            total_ms: 120.0,
            ttfc_ms: Some(15.0),
            tpot_ms: Some(3.0),
            input: 10,
            output: 20,
            throughput: Some(333.0),
            error: None,
        }
        .event(1),
        Completed {
            model: "m",
            engine: "tgi",
            total_ms: 90.0,
            ttfc_ms: None,
            tpot_ms: None,
            input: 3,
            output: 0,
            throughput: None,
            error: Some("oom"),
        }
        .event(2),
        json!({"event_type":"generation_started","model":"m"}),
    ];
    let r = post_ndjson(&host, &events).await;
    assert_eq!(r.status, 202);
    post_events(host.intake_addr(), Some("text/csv"), b"x".to_vec(), false).await;
    let text = scrape(host.prometheus_addr().expect("on")).await;
    promtool_check(&text);

    let m = Exposition::parse(&text);
    let labels = [
        ("gen_ai_request_model", weird),
        ("inference_engine", "vllm"),
        ("inference_device_id", "dev-1"),
        ("inference_org_id", "org-1"),
    ];
    assert_eq!(
        m.value("inference_requests_total", &labels),
        Some(1.0),
        "escaped label values round-trip"
    );
    assert!(text.contains("# TYPE gen_ai_server_request_duration_seconds histogram\n"));
    assert!(text.contains("# TYPE inference_requests_total counter\n"));
    assert!(text.contains("# HELP gen_ai_server_time_to_first_token_seconds Time to generate the first token, for successful responses.\n"));
    host.shutdown().await;
}

#[tokio::test]
async fn target_info_carries_the_resource() {
    let host = start(
        "[resource]\nservice_name = \"inference-eu\"\ndevice_id = \"rack7\"\n[resource.attributes]\n\"deployment.environment\" = \"prod\"\n",
    )
    .await;
    let text = scrape(host.prometheus_addr().expect("on")).await;
    let m = Exposition::parse(&text);
    let all: Vec<_> = m.samples("target_info").collect();
    assert_eq!(all.len(), 1, "{text}");
    let (labels, value) = all[0];
    assert_eq!(value, 1.0);
    assert_eq!(labels["service_name"], "inference-eu");
    assert_eq!(labels["device_id"], "rack7");
    assert_eq!(labels["deployment_environment"], "prod");
    assert!(!labels["host_name"].is_empty());
    assert_eq!(labels["service_instance_id"].len(), 36);
    host.shutdown().await;
}

#[tokio::test]
async fn configured_views_rename_filter_and_drop_what_is_exposed() {
    let host = start(
        r#"
[[metrics.views]]
instrument = "gen_ai.server.request.duration"
rename = "inference.latency"
attribute_keys = ["gen_ai.request.model"]

[[metrics.views]]
instrument = "gen_ai.client.token.usage"
aggregation = "drop"
"#,
    )
    .await;
    let events: Vec<_> = ["e1", "e2", "e3"]
        .iter()
        .enumerate()
        .map(|(i, engine)| Completed::ok("m1", engine).event(i as u32))
        .collect();
    assert_eq!(post_ndjson(&host, &events).await.status, 202);
    let text = scrape(host.prometheus_addr().expect("prometheus on")).await;
    promtool_check(&text);
    let m = Exposition::parse(&text);
    assert_eq!(
        m.value(
            "inference_latency_seconds_count",
            &[("gen_ai_request_model", "m1")]
        ),
        Some(3.0),
        "three engines fold into one series under the new name"
    );
    assert_eq!(m.count("gen_ai_server_request_duration_seconds_count"), 0);
    assert_eq!(m.count("gen_ai_client_token_usage_count"), 0, "dropped");
    host.shutdown().await;
}

#[tokio::test]
async fn openmetrics_is_served_when_the_scraper_asks_for_it() {
    let host = start("").await;
    let events = [Completed::ok("m1", "e1").event(1)];
    assert_eq!(post_ndjson(&host, &events).await.status, 202);
    let url = format!(
        "http://{}/metrics",
        host.prometheus_addr().expect("prometheus on")
    );
    let response = reqwest::Client::new()
        .get(&url)
        .header(
            "accept",
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
        )
        .send()
        .await
        .expect("scrape");
    assert_eq!(
        response.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let text = response.text().await.expect("body");
    assert!(text.ends_with("# EOF\n"), "{text}");
    assert!(
        text.contains("# TYPE inference_requests counter\n"),
        "{text}"
    );
    assert!(text.contains("\ninference_requests_total{"), "{text}");
    assert!(text.contains("# TYPE gen_ai_server_request_duration_seconds histogram\n"));
    // The event's trace and span ids come back as the exemplar of the bucket its duration fell in.
    let bucket = text
        .lines()
        .find(|l| {
            l.starts_with("gen_ai_server_request_duration_seconds_bucket{") && l.contains(" # {")
        })
        .expect("an exemplar on a bucket");
    let exemplar = format!(
        " 1 # {{trace_id=\"{:032x}\",span_id=\"{:016x}\"}} 0.001 ",
        2, 2
    );
    assert!(bucket.contains(&exemplar), "{bucket}");
    assert_eq!(
        text.matches(" # {").count(),
        4,
        "duration, input and output token usage, and the requests counter: {text}"
    );
    // Without the header, the same endpoint speaks text format 0.0.4.
    let plain = scrape(host.prometheus_addr().expect("prometheus on")).await;
    assert!(
        !plain.contains("# EOF") && plain.contains("# TYPE inference_requests_total counter\n")
    );
    // Named with a lower q-value than plain text: plain text.
    let response = reqwest::Client::new()
        .get(&url)
        .header(
            "accept",
            "application/openmetrics-text;version=1.0.0;q=0.2,text/plain;version=0.0.4;q=0.9",
        )
        .send()
        .await
        .expect("scrape");
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    host.shutdown().await;
}

#[tokio::test]
async fn scrapes_are_gzipped_when_the_scraper_accepts_it() {
    let host = start("").await;
    let events: Vec<_> = (0..200)
        .map(|i| Completed::ok(&format!("model-{i}"), "e1").event(i))
        .collect();
    assert_eq!(post_ndjson(&host, &events).await.status, 202);
    let url = format!(
        "http://{}/metrics",
        host.prometheus_addr().expect("prometheus on")
    );
    let get = |encoding: &'static str| {
        let url = url.clone();
        async move {
            let response = reqwest::Client::new()
                .get(&url)
                .header("accept-encoding", encoding)
                .send()
                .await
                .expect("scrape");
            let headers = response.headers().clone();
            (headers, response.bytes().await.expect("body").to_vec())
        }
    };
    let (headers, packed) = get("gzip, deflate").await;
    assert_eq!(headers["content-encoding"], "gzip");
    assert_eq!(headers["vary"], "Accept, Accept-Encoding");
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&packed[..]), &mut text)
        .expect("valid gzip");
    let (headers, plain) = get("identity").await;
    assert!(headers.get("content-encoding").is_none());
    let plain = String::from_utf8(plain).expect("text");
    // The same exposition (the self-metrics may move between two scrapes).
    let families = |t: &str| -> Vec<String> {
        t.lines()
            .filter(|l| l.starts_with("# TYPE"))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(families(&text), families(&plain));
    assert!(text.contains("model=\"model-199\""));
    assert!(
        packed.len() * 10 < plain.len(),
        "{} bytes gzipped of {}",
        packed.len(),
        plain.len()
    );
    promtool_check(&text);
    host.shutdown().await;
}

#[tokio::test]
async fn the_host_reports_the_system_and_itself() {
    let host = start(
        "[system]\npoll_interval = \"100ms\"\n[gpu]\nlibrary = \"libnvidia-ml-absent.so.1\"\n",
    )
    .await;
    let addr = host.prometheus_addr().expect("prometheus on");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    // CPU utilisation needs two polls; memory is there from the first.
    let text = loop {
        let text = scrape(addr).await;
        if text.contains("\nprocess_cpu_utilization_ratio{") {
            break text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no CPU utilisation: {text}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let m = Exposition::parse(&text);
    for state in ["used", "free", "cached", "buffers"] {
        let labels = [("system_memory_state", state)];
        assert!(
            m.value("system_memory_usage_bytes", &labels)
                .is_some_and(|v| v >= 0.0),
            "{state}"
        );
    }
    // A scrape may fall between two modes of one poll; the modes of a single poll add up to 1.
    let mut sums = Vec::new();
    for _ in 0..20 {
        let m = Exposition::parse(&scrape(addr).await);
        let cpu: f64 = m
            .samples("system_cpu_utilization_ratio")
            .map(|(_, v)| v)
            .sum();
        sums.push(cpu);
        if (cpu - 1.0).abs() < 1e-6 {
            break;
        }
    }
    assert!(
        sums.iter().any(|c| (c - 1.0).abs() < 1e-6),
        "modes add up to the whole: {sums:?}"
    );
    assert!(
        m.value("process_memory_usage_bytes", &[])
            .is_some_and(|v| v > 1e6)
    );
    assert!(text.contains(&format!(
        "process_memory_usage_bytes{{otel_scope_name=\"wasmtel.system\",otel_scope_version=\"{}\"}}",
        env!("CARGO_PKG_VERSION")
    )));
    assert_eq!(
        m.samples("process_cpu_utilization_ratio").count(),
        2,
        "user and system"
    );
    assert!(!text.contains("hw_gpu"), "no GPU here, so no GPU series");
    host.shutdown().await;
}

/// An OTLP/JSON metric of `kind` (`gauge`, `sum`, `updown` or `histogram`) with one point.
fn otlp_metric(name: &str, kind: &str) -> serde_json::Value {
    let number = json!({"dataPoints": [{"asDouble": 1.0, "timeUnixNano": "1"}]});
    let data = match kind {
        "gauge" => json!({"gauge": number}),
        "sum" | "updown" => json!({"sum": {
            "dataPoints": number["dataPoints"], "aggregationTemporality": 1, "isMonotonic": kind == "sum"
        }}),
        _ => json!({"histogram": {"aggregationTemporality": 1, "dataPoints": [
            {"count": "1", "sum": 1.0, "bucketCounts": ["1", "0"], "explicitBounds": [2.0], "timeUnixNano": "1"}
        ]}}),
    };
    let mut metric = json!({"name": name, "description": "clash"});
    metric
        .as_object_mut()
        .expect("object")
        .extend(data.as_object().expect("object").clone());
    metric
}

#[tokio::test]
async fn every_otlp_name_clash_is_renamed_by_the_rule_and_promtool_accepts_it() {
    let host = start("").await;
    let resource = |service: &str, metrics: Vec<serde_json::Value>| {
        json!({
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
            "scopeMetrics": [{"scope": {"name": "clash"}, "metrics": metrics}]
        })
    };
    let request = json!({"resourceMetrics": [
        resource("a", vec![
            otlp_metric("rel.hh", "histogram"),
            otlp_metric("rel.hh_bucket", "gauge"),
            otlp_metric("rel.hh_count", "gauge"),
            otlp_metric("rel.hh_sum", "sum"),
            otlp_metric("req", "sum"),
            otlp_metric("req_total", "gauge"),
            otlp_metric("target_info", "gauge"),
            otlp_metric("temp", "updown"),
        ]),
        // Another resource: the same names with other types.
        resource("b", vec![otlp_metric("temp", "histogram"), otlp_metric("req", "gauge")]),
    ]});
    let (status, _, body) = wasmtel_tests::post(
        host.intake_addr(),
        "/v1/metrics",
        Some("application/json"),
        serde_json::to_vec(&request).expect("json"),
        false,
    )
    .await;
    let answer = String::from_utf8_lossy(&body);
    assert_eq!(
        (status, answer.as_ref()),
        (200, "{\"partialSuccess\":null}")
    );
    let text = scrape(host.prometheus_addr().expect("on")).await;
    promtool_check(&text);
    let types: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter(|l| {
            ["rel_", "req", "target", "temp"]
                .iter()
                .any(|p| l.starts_with(p))
        })
        .collect();
    assert_eq!(
        types,
        [
            "target_info gauge",
            "rel_hh histogram",
            "rel_hh_bucket_2 gauge",
            "rel_hh_count_2 gauge",
            "rel_hh_sum_2_total counter",
            "req_total counter",
            "req_total_2 gauge",
            "target_info_2 gauge",
            "temp gauge",
            "temp_2 histogram",
            "req_2 gauge",
        ],
        "{text}"
    );
    let m = Exposition::parse(&text);
    // Each sender's series, whatever its (stable) instance.
    let of = |name: &str, job: &str| {
        m.samples(name)
            .find(|(labels, _)| labels.get("job").map(String::as_str) == Some(job))
            .map(|(_, v)| v)
    };
    assert_eq!(of("temp_2_count", "b"), Some(1.0), "{text}");
    assert_eq!(of("req_2", "b"), Some(1.0), "{text}");
    assert_eq!(of("rel_hh_sum_2_total", "a"), Some(1.0), "{text}");
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_keeps_its_instance_id_across_restarts() {
    let data = tempfile::tempdir().expect("tempdir");
    let toml = format!("data_dir = \"{}\"\n", data.path().display());
    let instance_of = |text: &str| -> String {
        text.lines()
            .find(|l| l.starts_with("target_info{"))
            .and_then(|l| l.split("service_instance_id=\"").nth(1))
            .and_then(|rest| rest.split('"').next())
            .expect("target_info with service_instance_id")
            .to_owned()
    };
    let host = start(&toml).await;
    let first = instance_of(&wasmtel_tests::scrape(host.prometheus_addr().expect("on")).await);
    host.shutdown().await;
    let host = start(&toml).await;
    let second = instance_of(&wasmtel_tests::scrape(host.prometheus_addr().expect("on")).await);
    host.shutdown().await;
    assert_eq!(first, second, "the same instance after a restart");
    let kept = std::fs::read_to_string(data.path().join("instance.id")).expect("kept");
    assert_eq!(kept.trim(), first);
    // A configured one wins.
    let host = start(&format!(
        "{toml}[resource.attributes]\n\"service.instance.id\" = \"node-7\"\n"
    ))
    .await;
    let configured = instance_of(&wasmtel_tests::scrape(host.prometheus_addr().expect("on")).await);
    host.shutdown().await;
    assert_eq!(configured, "node-7");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_received_metric_past_its_cardinality_limit_is_counted_and_said_once() {
    let logs = wasmtel_tests::capture_logs();
    let host = start("[metrics]\ncardinality_limit = 2\n").await;
    let points: Vec<serde_json::Value> = ["a", "b", "c", "d", "e"]
        .iter()
        .map(|v| {
            json!({"asDouble": 1.0, "timeUnixNano": "1",
                        "attributes": [{"key": "k", "value": {"stringValue": v}}]})
        })
        .collect();
    let request = json!({"resourceMetrics": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "spreader"}}]},
        "scopeMetrics": [{"metrics": [{"name": "spread.wide", "gauge": {"dataPoints": points}}]}]
    }]});
    for _ in 0..2 {
        assert_eq!(post_json(&host, &request).await, 200);
        let m = Exposition::parse(&scrape(host.prometheus_addr().expect("on")).await);
        assert!(
            m.value(
                "wasmtel_metrics_overflowed_total",
                &[("metric", "spread.wide")]
            )
            .is_some()
        );
    }
    let m = Exposition::parse(&scrape(host.prometheus_addr().expect("on")).await);
    assert_eq!(
        m.value(
            "wasmtel_metrics_overflowed_total",
            &[("metric", "spread.wide")]
        ),
        Some(6.0),
        "three of five sets, twice, past a limit of two"
    );
    assert_eq!(
        logs.count(&["metric `spread.wide` passed its cardinality limit"]),
        1,
        "said once: {}",
        logs.text()
    );
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn received_series_that_stop_arriving_end() {
    let host = start("[metrics]\nreceived_series_expiry = \"200ms\"\n").await;
    let request = json!({"resourceMetrics": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "batch-job"}}]},
        "scopeMetrics": [{"metrics": [{"name": "job.gpu.memory", "unit": "By",
            "gauge": {"dataPoints": [{"asDouble": 5.0, "timeUnixNano": "1"}]}}]}]
    }]});
    assert_eq!(post_json(&host, &request).await, 200);
    let addr = host.prometheus_addr().expect("on");
    assert!(scrape(addr).await.contains("job_gpu_memory_bytes{"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while scrape(addr).await.contains("job_gpu_memory_bytes{") {
        assert!(
            std::time::Instant::now() < deadline,
            "the finished job's value stayed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        scrape(addr)
            .await
            .contains("wasmtel_intake_otlp_items_total"),
        "the host's own series stay"
    );
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_senders_without_an_instance_id_are_told_apart() {
    let host = start("").await;
    for node in ["node-1", "node-2"] {
        let request = json!({"resourceMetrics": [{
            "resource": {"attributes": [
                {"key": "service.name", "value": {"stringValue": "agent"}},
                {"key": "host.name", "value": {"stringValue": node}}]},
            "scopeMetrics": [{"metrics": [{"name": "gpu.util", "unit": "1",
                "gauge": {"dataPoints": [{"asDouble": 0.5, "timeUnixNano": "1"}]}}]}]
        }]});
        assert_eq!(post_json(&host, &request).await, 200);
    }
    let text = scrape(host.prometheus_addr().expect("on")).await;
    let exposition = Exposition::parse(&text);
    let instances: std::collections::BTreeSet<String> = exposition
        .samples("gpu_util_ratio")
        .filter(|(labels, _)| labels.get("job").map(String::as_str) == Some("agent"))
        .map(|(labels, _)| labels["instance"].clone())
        .collect();
    assert_eq!(instances.len(), 2, "{text}");
    assert!(
        instances.iter().all(|i| i.starts_with("resource:")),
        "{instances:?}"
    );
    host.shutdown().await;
}

/// Posts an OTLP/JSON metrics request to `host`: the status.
async fn post_json(host: &wasmtel::Host, request: &serde_json::Value) -> u16 {
    let body = request.to_string().into_bytes();
    let path = "/v1/metrics";
    let ct = Some("application/json");
    wasmtel_tests::post(host.intake_addr(), path, ct, body, false)
        .await
        .0
}
