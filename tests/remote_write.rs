//! Prometheus remote write: the embedded `prometheus-remote-write` exporter against a real
//! Prometheus server (Debian's `prometheus`, as CI installs it) started with
//! `--web.enable-remote-write-receiver`: what its HTTP API gives back equals what was sent.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{CHUNK_RULE, exposition, post_ndjson, start};
use serde_json::{Value, json};

/// A Prometheus server on a free port, stopped when dropped.
struct Prometheus {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts Prometheus as a remote-write receiver; `None` (said on stderr) when it is not
/// installed outside CI.
async fn prometheus() -> Option<Prometheus> {
    if Command::new("prometheus")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(
            std::env::var_os("CI").is_none(),
            "prometheus is required in CI"
        );
        eprintln!("prometheus is not installed: skipped; .ci/run installs it");
        return None;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        "global:\n  scrape_interval: 1h\nscrape_configs: []\n",
    )
    .expect("config");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--web.enable-remote-write-receiver")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus starts");
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = reqwest::get(format!("{url}/-/ready")).await;
        if ready.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        assert!(Instant::now() < deadline, "prometheus did not become ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Some(Prometheus {
        child,
        url,
        _dir: dir,
    })
}

/// The result of an instant query.
async fn query(prometheus: &Prometheus, promql: &str) -> Vec<Value> {
    let body = reqwest::Client::new()
        .get(format!("{}/api/v1/query", prometheus.url))
        .query(&[("query", promql)])
        .send()
        .await
        .expect("query")
        .bytes()
        .await
        .expect("body");
    let answer: Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(answer["status"], "success", "{answer}");
    answer["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_prometheus_gives_back_equals_what_was_sent() {
    let Some(prometheus) = prometheus().await else {
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
        "{CHUNK_RULE}{histogram}\n[[exporters]]\nplugin = \"prometheus-remote-write\"\nendpoint = \"{}\"\ndelivery.interval = \"1h\"\n",
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

    let chunks = query(&prometheus, "inference_chunks_total").await;
    assert_eq!(chunks.len(), 1, "{chunks:?}");
    assert_eq!(chunks[0]["metric"]["model"], "m1");
    assert_eq!(chunks[0]["metric"]["job"], "wasmtel");
    assert_eq!(chunks[0]["metric"]["otel_scope_name"], "wasmtel.derive");
    assert_eq!(chunks[0]["value"][1], "3");
    let buckets = query(
        &prometheus,
        "sum by (le) (inference_latency_milliseconds_bucket)",
    )
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
    let sum = query(&prometheus, "inference_latency_milliseconds_sum").await;
    assert_eq!(sum[0]["value"][1], "350");
    let info = query(&prometheus, "target_info").await;
    assert_eq!(info.len(), 1, "{info:?}");
    assert!(info[0]["metric"]["host_name"].is_string());
    host.shutdown().await;
}
