//! Helpers shared by the end-to-end tests: an in-process host on ephemeral ports.

// Each test binary uses a subset of these helpers.
#![allow(dead_code)]

use serde_json::{Value, json};

/// The derive section most tests start from: no rule set, one counter of chunks by model.
macro_rules! chunk_rule {
    () => {
        r#"
[derive]
rule_set = "none"

[[derive.rules]]
event_type = "chunk_produced"
instrument = "counter"
name = "inference.chunks"
attributes = { model = "model" }
"#
    };
}
// Each test binary uses a subset of these helpers.
#[allow(unused_imports)]
pub(crate) use chunk_rule;

/// [`chunk_rule!`] as a constant, for format strings.
pub(crate) const CHUNK_RULE: &str = chunk_rule!();
use wasmtel::{Config, Host};

/// Starts a host from TOML, with intake and Prometheus on free loopback ports and the GPU and
/// system pollers off unless the TOML has their section.
pub(crate) async fn start(toml: &str) -> Host {
    let mut config = Config::from_toml(toml).expect("valid test config");
    // Exact expectations would race the pollers' readings: they run only where a test asks.
    if !toml.contains("[system]") {
        config.system.poll_interval = Some(std::time::Duration::ZERO);
    }
    if !toml.contains("[gpu]") {
        config.gpu.poll_interval = Some(std::time::Duration::ZERO);
    }
    config.intake.listen = "127.0.0.1:0".parse().expect("addr");
    if config.intake.grpc_listen.is_some() {
        config.intake.grpc_listen = Some("127.0.0.1:0".parse().expect("addr"));
    }
    config.prometheus.listen = "127.0.0.1:0".parse().expect("addr");
    config.admin.listen = "127.0.0.1:0".parse().expect("addr");
    if config.data_dir.is_none() {
        // Each host gets its own data directory, kept for the rest of the test process.
        let dir = tempfile::tempdir().expect("tempdir");
        config.data_dir = Some(dir.keep());
    }
    Host::start(&config).await.expect("host starts")
}

/// The Prometheus exposition of `host`, parsed.
pub(crate) async fn exposition(host: &Host) -> wasmtel_tests::Exposition {
    let text = wasmtel_tests::scrape(host.prometheus_addr().expect("prometheus on")).await;
    wasmtel_tests::Exposition::parse(&text)
}

/// A completed request; `None` metrics are left out.
pub(crate) struct Completed<'a> {
    pub(crate) model: &'a str,
    pub(crate) engine: &'a str,
    pub(crate) total_ms: f64,
    pub(crate) ttfc_ms: Option<f64>,
    pub(crate) tpot_ms: Option<f64>,
    pub(crate) input: u32,
    pub(crate) output: u32,
    pub(crate) throughput: Option<f64>,
    pub(crate) error: Option<&'a str>,
}

impl<'a> Completed<'a> {
    /// A successful request of `model` on `engine` lasting 1 ms, one token in and out, nothing else.
    pub(crate) fn ok(model: &'a str, engine: &'a str) -> Self {
        Self {
            model,
            engine,
            total_ms: 1.0,
            ttfc_ms: None,
            tpot_ms: None,
            input: 1,
            output: 1,
            throughput: None,
            error: None,
        }
    }

    /// The `generation_completed` event, numbered `seq` (request and trace ids derive from it).
    pub(crate) fn event(&self, seq: u32) -> Value {
        let mut metrics = json!({ "total_duration_ms": self.total_ms, "input_tokens": self.input, "output_tokens": self.output });
        if let Some(v) = self.ttfc_ms {
            metrics["ttfc_ms"] = json!(v);
        }
        if let Some(v) = self.tpot_ms {
            metrics["chunk_latency_avg_ms"] = json!(v);
        }
        if let Some(v) = self.throughput {
            metrics["throughput_tok_s"] = json!(v);
        }
        let mut e = json!({
            "event_type": "generation_completed", "timestamp": "2026-11-01T12:00:00.5Z",
            "device_id": "dev-1", "org_id": "org-1", "model": self.model, "engine": self.engine,
            "request_id": format!("req-{seq}"), "stream": true,
            "trace_id": format!("{:032x}", u128::from(seq) + 1), "span_id": format!("{:016x}", u64::from(seq) + 1),
            "metrics": metrics,
        });
        if let Some(err) = self.error {
            e["error"] = json!(err);
        }
        e
    }
}

/// POSTs `events` to the host's intake as NDJSON.
pub(crate) async fn post_ndjson(host: &Host, events: &[Value]) -> wasmtel_tests::Answer {
    wasmtel_tests::post_events(
        host.intake_addr(),
        Some("application/x-ndjson"),
        wasmtel_tests::ndjson(events),
        false,
    )
    .await
}

/// A `generation_started` or `chunk_produced` event, which the GenAI rules record nothing for.
pub(crate) fn step(event_type: &str, seq: u32) -> Value {
    json!({ "event_type": event_type, "model": "m1", "engine": "vllm", "request_id": format!("req-{seq}"),
            "metrics": { "input_tokens": 999, "chunk_index": 0 } })
}

/// Waits until `done` holds, checking every 10 ms, or panics after 20 s naming `what`.
pub(crate) async fn eventually(what: &str, done: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// The admin API of a host, with its token.
pub(crate) struct Api {
    base: String,
    pub(crate) token: String,
}

impl Api {
    /// The API of `host`, whose data directory (with the token file) is `data`.
    pub(crate) fn new(host: &wasmtel::Host, data: &std::path::Path) -> Self {
        let token = std::fs::read_to_string(data.join("admin.token")).expect("token file");
        Self {
            base: format!("http://{}", host.admin_addr().expect("admin on")),
            token: token.trim().to_owned(),
        }
    }

    /// Calls `method path` with `token`, if any: status, JSON body and the raw text.
    pub(crate) async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
    ) -> (u16, Value, String) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = reqwest::Client::new().request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let response = req.send().await.expect("admin reachable");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::Null),
            text,
        )
    }

    /// GETs `path` with the token.
    pub(crate) async fn get(&self, path: &str) -> (u16, Value, String) {
        self.call("GET", path, Some(&self.token)).await
    }

    /// POSTs to `path` with the token and no body.
    pub(crate) async fn post(&self, path: &str) -> (u16, Value, String) {
        self.call("POST", path, Some(&self.token)).await
    }
}

impl Api {
    /// Sends `body` as JSON to `method path` with the token.
    pub(crate) async fn send(&self, method: &str, path: &str, body: &str) -> (u16, Value, String) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let response = reqwest::Client::new()
            .request(method, format!("{}{path}", self.base))
            .header("authorization", format!("Bearer {}", self.token))
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .expect("admin reachable");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::Null),
            text,
        )
    }
}

/// A host set up as a GPU inference node for the operator's views: two fake GPUs behind NVML's
/// C interface, a view plugin that traps, `[otlp]` to `receiver`, metrics every 500 ms, system
/// readings and history points every 500 ms, and `extra` TOML after that; its data directory is
/// `dir/data`.
pub(crate) async fn node(
    dir: &std::path::Path,
    receiver: &wasmtel_tests::Receiver,
    extra: &str,
) -> Host {
    let library = wasmtel_tests::fake_nvml(dir);
    let plugins = dir.join("plugins");
    std::fs::create_dir(&plugins).expect("plugins dir");
    std::fs::copy(env!("WASMTEL_FIXTURE_TAGGER"), plugins.join("tagger.wasm")).expect("copy");
    start(&format!(
        r#"data_dir = "{}"
[otlp]
endpoint = "{}"
[delivery]
interval = "500ms"
[gpu]
poll_interval = "250ms"
library = "{}"
[system]
poll_interval = "500ms"
[admin]
history_interval = "500ms"
[plugins]
dir = "{}"
[[views]]
plugin = "tagger"
instruments = ["inference.requests"]
config = {{ trap = "true" }}
{extra}"#,
        dir.join("data").display(),
        receiver.endpoint(),
        library.display(),
        plugins.display(),
    ))
    .await
}

/// `wasmtel demo` at 40 requests/s against `host` for five minutes, or until aborted.
pub(crate) fn demo(
    host: &Host,
    seed: u64,
) -> tokio::task::JoinHandle<Result<wasmtel::demo::DemoSummary, wasmtel::demo::DemoError>> {
    let options = wasmtel::demo::DemoOptions {
        target: format!("http://{}", host.intake_addr()),
        rate: 40.0,
        duration: Some(std::time::Duration::from_secs(300)),
        requests: None,
        seed,
        progress: false,
    };
    tokio::spawn(async move { wasmtel::demo::run(&options).await })
}
