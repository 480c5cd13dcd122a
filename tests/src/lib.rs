//! Test harness: a real OTLP/HTTP receiver, and helpers to post events and read `/metrics`.
//!
//! It does not depend on `wasmtel`, so the binary's own tests can use it too.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message;

/// Everything a [`Receiver`] was sent.
#[derive(Debug, Default)]
pub struct Received {
    /// Decoded metric requests, in arrival order.
    pub metrics: Vec<ExportMetricsServiceRequest>,
    /// Decoded log requests, in arrival order.
    pub logs: Vec<ExportLogsServiceRequest>,
    /// Decoded trace requests, in arrival order.
    pub traces: Vec<ExportTraceServiceRequest>,
    /// Headers of every request, in arrival order.
    pub headers: Vec<HeaderMap>,
    /// Requests answered with a non-2xx status.
    pub refused: usize,
    /// When each request arrived.
    pub times: Vec<std::time::Instant>,
}

impl Received {
    /// The `inference.request.id` of every log record received, in arrival order.
    pub fn request_ids(&self) -> Vec<String> {
        self.logs
            .iter()
            .flat_map(|l| &l.resource_logs)
            .flat_map(|rl| &rl.scope_logs)
            .flat_map(|sl| &sl.log_records)
            .filter_map(|rec| attrs(&rec.attributes).get("inference.request.id").cloned())
            .collect()
    }

    /// Every span received, in arrival order.
    pub fn spans(&self) -> Vec<&opentelemetry_proto::tonic::trace::v1::Span> {
        self.traces
            .iter()
            .flat_map(|t| &t.resource_spans)
            .flat_map(|rs| &rs.scope_spans)
            .flat_map(|ss| &ss.spans)
            .collect()
    }
}

/// Decides the answer to request number `n` (from 0): a status and extra response headers.
pub type Script = Box<dyn FnMut(usize) -> (u16, Vec<(&'static str, String)>) + Send>;

#[derive(Clone)]
struct Shared {
    received: Arc<Mutex<Received>>,
    status: Arc<AtomicU16>,
    script: Arc<Mutex<Option<Script>>>,
}

/// An OTLP/HTTP collector stand-in on an ephemeral port that decodes what it receives.
pub struct Receiver {
    addr: SocketAddr,
    shared: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("endpoint", &self.endpoint())
            .finish_non_exhaustive()
    }
}

impl Receiver {
    /// Starts a receiver answering 200.
    pub async fn start() -> Self {
        Self::start_under("").await
    }

    /// Starts a receiver answering 200 under a path prefix (`/otlp` serves `/otlp/v1/metrics`).
    pub async fn start_under(prefix: &str) -> Self {
        let shared = Shared {
            received: Arc::default(),
            status: Arc::new(AtomicU16::new(200)),
            script: Arc::default(),
        };
        let app = Router::new()
            .route(&format!("{prefix}/v1/metrics"), routing::post(metrics))
            .route(&format!("{prefix}/v1/logs"), routing::post(logs))
            .route(&format!("{prefix}/v1/traces"), routing::post(traces))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("receiver");
        });
        Self { addr, shared, task }
    }

    /// The base URL, for `[otlp] endpoint`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Makes every later request answer `status` (and be discarded when not 2xx).
    pub fn answer(&self, status: u16) {
        *self
            .shared
            .script
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
        self.shared.status.store(status, Ordering::SeqCst);
    }

    /// Makes `script` decide every later answer (a non-2xx request is discarded).
    pub fn script(&self, script: Script) {
        *self
            .shared
            .script
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(script);
    }

    /// Runs `f` over what was received so far.
    pub fn with<T>(&self, f: impl FnOnce(&Received) -> T) -> T {
        f(&self
            .shared
            .received
            .lock()
            .unwrap_or_else(PoisonError::into_inner))
    }

    /// Waits until `done` holds for what was received, or panics after 10 s.
    pub async fn wait_until(&self, what: &str, done: impl Fn(&Received) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !self.with(&done) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn accept<T: Message + Default>(
    shared: &Shared,
    headers: HeaderMap,
    body: &Bytes,
    store: impl FnOnce(&mut Received, T),
) -> (StatusCode, HeaderMap) {
    let mut received = shared
        .received
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let n = received.headers.len();
    received.headers.push(headers);
    received.times.push(std::time::Instant::now());
    let scripted = shared
        .script
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .as_mut()
        .map(|script| script(n));
    let (code, extra) =
        scripted.unwrap_or_else(|| (shared.status.load(Ordering::SeqCst), Vec::new()));
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
    let mut answer = HeaderMap::new();
    for (k, v) in extra {
        if let Ok(v) = v.parse() {
            answer.insert(k, v);
        }
    }
    if !status.is_success() {
        received.refused += 1;
        return (status, answer);
    }
    let body = match received.headers[n].get("content-encoding") {
        Some(coding) if coding == "gzip" => {
            let mut plain = Vec::new();
            match flate2::read::GzDecoder::new(body.as_ref()).read_to_end(&mut plain) {
                Ok(_) => Bytes::from(plain),
                Err(_) => return (StatusCode::BAD_REQUEST, answer),
            }
        }
        _ => body.clone(),
    };
    match T::decode(body.as_ref()) {
        Ok(request) => {
            store(&mut received, request);
            (status, answer)
        }
        Err(_) => (StatusCode::BAD_REQUEST, answer),
    }
}

async fn metrics(
    State(shared): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, HeaderMap) {
    accept(&shared, headers, &body, |r, m| r.metrics.push(m))
}

async fn logs(
    State(shared): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, HeaderMap) {
    accept(&shared, headers, &body, |r, l| r.logs.push(l))
}

async fn traces(
    State(shared): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, HeaderMap) {
    accept(&shared, headers, &body, |r, t| r.traces.push(t))
}

/// Renders an OTLP attribute list as `key → display value`, for exact comparisons.
pub fn attrs(kvs: &[KeyValue]) -> BTreeMap<String, String> {
    kvs.iter()
        .map(|kv| {
            (
                kv.key.clone(),
                kv.value.as_ref().map(show).unwrap_or_default(),
            )
        })
        .collect()
}

/// Renders one OTLP value as text.
pub fn show(v: &AnyValue) -> String {
    match &v.value {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(any_value::Value::ArrayValue(a)) => format!(
            "[{}]",
            a.values.iter().map(show).collect::<Vec<_>>().join(",")
        ),
        Some(any_value::Value::KvlistValue(l)) => format!("{:?}", attrs(&l.values)),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

/// The response of an intake request.
#[derive(Debug)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// The JSON body.
    pub body: serde_json::Value,
}

/// POSTs `body` to `http://{addr}/v1/events` with a content type and optional gzip.
pub async fn post_events(
    addr: SocketAddr,
    content_type: Option<&str>,
    body: Vec<u8>,
    gzip: bool,
) -> Answer {
    let (status, _, body) = post(addr, "/v1/events", content_type, body, gzip).await;
    let text = String::from_utf8_lossy(&body).into_owned();
    let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    Answer { status, body }
}

/// Posts `body` to `path` (gzipped if asked), returning the status, content type and body.
pub async fn post(
    addr: SocketAddr,
    path: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
    gzip: bool,
) -> (u16, String, Vec<u8>) {
    let mut req = reqwest::Client::new().post(format!("http://{addr}{path}"));
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let body = if gzip {
        req = req.header("content-encoding", "gzip");
        gzipped(&body)
    } else {
        body
    };
    let response = req.body(body).send().await.expect("intake reachable");
    let status = response.status().as_u16();
    let ct = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (status, ct, response.bytes().await.expect("body").to_vec())
}

/// An OTLP string attribute.
pub fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

/// Gzips `data`.
pub fn gzipped(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).expect("gzip");
    enc.finish().expect("gzip")
}

/// Lines of NDJSON from JSON values.
pub fn ndjson(events: &[serde_json::Value]) -> Vec<u8> {
    events
        .iter()
        .map(|e| format!("{e}\n"))
        .collect::<String>()
        .into_bytes()
}

/// Resident memory of this process, in bytes.
pub fn resident() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .expect("VmRSS");
    kb * 1024
}

/// Fetches `http://{addr}/metrics` as text.
pub async fn scrape(addr: SocketAddr) -> String {
    let response = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .expect("scrape");
    assert_eq!(response.status(), 200);
    response.text().await.expect("text")
}

/// Parsed samples of an exposition: `(metric name, labels)` → value.
#[derive(Debug)]
pub struct Exposition(Vec<(String, BTreeMap<String, String>, f64)>);

impl Exposition {
    /// Parses the samples of text format 0.0.4 strictly; panics naming the first bad line.
    pub fn parse(text: &str) -> Self {
        let samples = text
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|line| {
                parse_sample(line).unwrap_or_else(|| panic!("malformed sample line: {line}"))
            })
            .collect();
        Self(samples)
    }

    /// The value of the one sample named `name` whose labels, the `otel_scope_*` ones and a
    /// received resource's `instance` aside unless asked for, are exactly `labels`.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let matching: Vec<f64> = self.matching(name, labels).map(|(_, v)| v).collect();
        assert!(
            matching.len() <= 1,
            "{name} {labels:?} matches {} samples",
            matching.len()
        );
        matching.first().copied()
    }

    /// Every sample named `name` whose labels, the `otel_scope_*` ones and `instance` (a
    /// received resource's identity) aside unless asked for, are exactly `labels`.
    pub fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = (&'a BTreeMap<String, String>, f64)> + 'a {
        self.0
            .iter()
            .filter(move |(n, l, _)| {
                n == name
                    && l.keys().all(|k| {
                        k.starts_with("otel_scope_")
                            || k == "instance"
                            || labels.iter().any(|(lk, _)| lk == k)
                    })
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, l, v)| (l, *v))
    }

    /// Every sample named `name`, whatever its labels.
    pub fn samples<'a>(
        &'a self,
        name: &'a str,
    ) -> impl Iterator<Item = (&'a BTreeMap<String, String>, f64)> + 'a {
        self.0
            .iter()
            .filter(move |(n, _, _)| n == name)
            .map(|(_, l, v)| (l, *v))
    }

    /// The sum of every sample named `name`, whatever its labels.
    pub fn total(&self, name: &str) -> f64 {
        self.0
            .iter()
            .filter(|(n, _, _)| n == name)
            .map(|(_, _, v)| v)
            .sum()
    }

    /// How many samples are named `name`.
    pub fn count(&self, name: &str) -> usize {
        self.0.iter().filter(|(n, _, _)| n == name).count()
    }
}

fn parse_sample(line: &str) -> Option<(String, BTreeMap<String, String>, f64)> {
    let name_end = line.find(['{', ' '])?;
    let name = &line[..name_end];
    let valid_name = name.chars().enumerate().all(|(i, c)| {
        c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
    });
    if name.is_empty() || !valid_name {
        return None;
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices();
        let mut key = String::new();
        loop {
            let (i, c) = chars.next()?;
            match c {
                '}' if key.is_empty() => {
                    rest = &body[i + 1..];
                    break;
                }
                '=' => {
                    if chars.next()?.1 != '"' {
                        return None;
                    }
                    let mut value = String::new();
                    loop {
                        match chars.next()?.1 {
                            '"' => break,
                            '\\' => match chars.next()?.1 {
                                'n' => value.push('\n'),
                                '\\' => value.push('\\'),
                                '"' => value.push('"'),
                                _ => return None,
                            },
                            c => value.push(c),
                        }
                    }
                    if labels.insert(std::mem::take(&mut key), value).is_some() {
                        return None;
                    }
                    match chars.next()?.1 {
                        ',' => {}
                        '}' => {
                            rest = chars.as_str();
                            break;
                        }
                        _ => return None,
                    }
                }
                c if c.is_ascii_alphanumeric() || c == '_' => key.push(c),
                _ => return None,
            }
        }
    }
    let value = rest.strip_prefix(' ')?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse().ok()?,
    };
    Some((name.to_owned(), labels, value))
}

/// Log lines captured from the process's `tracing` output.
#[derive(Debug, Clone, Default)]
pub struct CapturedLogs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for CapturedLogs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl CapturedLogs {
    /// Everything captured so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
    }

    /// How many captured lines contain every one of `needles`.
    pub fn count(&self, needles: &[&str]) -> usize {
        let text = String::from_utf8_lossy(&self.0.lock().unwrap_or_else(PoisonError::into_inner))
            .into_owned();
        text.lines()
            .filter(|l| needles.iter().all(|n| l.contains(n)))
            .count()
    }
}

/// Installs (once per test binary) a global subscriber that captures every log line.
pub fn capture_logs() -> &'static CapturedLogs {
    static LOGS: OnceLock<CapturedLogs> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = CapturedLogs::default();
        let writer = logs.clone();
        tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .init();
        logs
    })
}

/// A Prometheus server (Debian's `prometheus`) on a free port, accepting remote write and
/// scraping what it is told; stopped when dropped.
#[derive(Debug)]
pub struct Prometheus {
    child: std::process::Child,
    /// Its base URL.
    pub url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Starts Prometheus scraping wasmtel's `/metrics` at `target` (`host:port`, keeping the
    /// labels it exposes) every second, if given; `None` (said on stderr) when it is not
    /// installed outside CI.
    pub async fn start(target: Option<SocketAddr>) -> Option<Self> {
        let scrape = match target {
            Some(t) => format!(
                "scrape_configs:\n  - job_name: wasmtel\n    honor_labels: true\n    scrape_interval: 1s\n    static_configs:\n      - targets: [\"{t}\"]\n"
            ),
            None => "scrape_configs: []\n".to_owned(),
        };
        Self::launch(&scrape).await
    }

    /// Starts Prometheus scraping `url` every second as job `job`, as it scrapes any target.
    pub async fn scraping(job: &str, url: &str) -> Option<Self> {
        let url = reqwest::Url::parse(url).expect("a target URL");
        let target = format!(
            "{}:{}",
            url.host_str().unwrap_or_default(),
            url.port_or_known_default().unwrap_or_default()
        );
        Self::launch(&format!(
            "scrape_configs:\n  - job_name: {job}\n    scrape_interval: 1s\n    metrics_path: {}\n    static_configs:\n      - targets: [\"{target}\"]\n",
            url.path()
        ))
        .await
    }

    /// Starts Prometheus with `scrape` (its `scrape_configs`).
    async fn launch(scrape: &str) -> Option<Self> {
        use std::process::{Command, Stdio};
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
        std::fs::write(&config, format!("global:\n  scrape_interval: 1h\n{scrape}"))
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
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let ready = reqwest::get(format!("{url}/-/ready")).await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "prometheus did not become ready"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Some(Self {
            child,
            url,
            _dir: dir,
        })
    }

    /// The answer to an instant query: `Err` with Prometheus' error when it fails.
    pub async fn try_query(&self, promql: &str) -> Result<Vec<serde_json::Value>, String> {
        let body = reqwest::Client::new()
            .get(format!("{}/api/v1/query", self.url))
            .query(&[("query", promql)])
            .send()
            .await
            .map_err(|e| e.to_string())?
            .bytes()
            .await
            .map_err(|e| e.to_string())?;
        let answer: serde_json::Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
        if answer["status"] != "success" {
            return Err(format!("{}: {}", answer["errorType"], answer["error"]));
        }
        Ok(answer["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// The series of a range query over the last `seconds`, one point per second: each
    /// series' labels and its (Unix seconds, value) points.
    pub async fn query_range(
        &self,
        promql: &str,
        seconds: u64,
    ) -> Vec<(BTreeMap<String, String>, Vec<(f64, f64)>)> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        let (start, end) = ((now - seconds).to_string(), now.to_string());
        let answer: serde_json::Value = reqwest::Client::new()
            .get(format!("{}/api/v1/query_range", self.url))
            .query(&[
                ("query", promql),
                ("start", &start),
                ("end", &end),
                ("step", "1"),
            ])
            .send()
            .await
            .expect("query_range")
            .bytes()
            .await
            .map(|b| serde_json::from_slice(&b).expect("JSON"))
            .expect("body");
        assert_eq!(answer["status"], "success", "{promql}: {answer}");
        let series = answer["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        series
            .iter()
            .map(|s| {
                let labels = s["metric"]
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_owned()))
                            .collect()
                    })
                    .unwrap_or_default();
                let points = s["values"]
                    .as_array()
                    .map(|v| {
                        v.iter()
                            .filter_map(|p| {
                                let value = p[1].as_str()?.parse::<f64>().ok()?;
                                Some((p[0].as_f64()?, value))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                (labels, points)
            })
            .collect()
    }

    /// The result of an instant query, which must succeed.
    pub async fn query(&self, promql: &str) -> Vec<serde_json::Value> {
        self.try_query(promql)
            .await
            .unwrap_or_else(|e| panic!("{promql}: {e}"))
    }
}

/// Builds `tests/fixtures/fake-nvml/nvml.c` into `dir/libnvidia-ml.so.1`: two GPUs behind
/// NVML's C interface, for a host's `[gpu] library`.
pub fn fake_nvml(dir: &std::path::Path) -> std::path::PathBuf {
    let source = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/fake-nvml/nvml.c");
    let out = dir.join("libnvidia-ml.so.1");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
    let status = std::process::Command::new(&cc)
        .args(["-shared", "-fPIC", "-O1", "-o"])
        .arg(&out)
        .arg(source)
        .arg("-lm")
        .status()
        .unwrap_or_else(|e| panic!("{cc} runs: {e}"));
    assert!(status.success(), "the fake NVML library did not compile");
    out
}

/// Where the tests leave their screenshots: `WASMTEL_ARTEFACTS`, else `target/artefacts`.
pub fn artefacts() -> std::path::PathBuf {
    let dir = std::env::var_os("WASMTEL_ARTEFACTS").map_or_else(
        || std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/artefacts")),
        std::path::PathBuf::from,
    );
    std::fs::create_dir_all(&dir).expect("artefacts dir");
    dir
}

/// The browser, when the machine has one; CI installs it and requires it.
pub fn chromium() -> Option<&'static str> {
    let found = ["chromium", "chromium-browser"].into_iter().find(|b| {
        std::process::Command::new(b)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI needs chromium for the browser tests"
        );
        eprintln!("chromium is not installed: the browser test is skipped");
    }
    found
}

/// Runs headless chromium on `url` with `args` (a window size, what to output): its stdout.
pub fn headless(browser: &str, url: &str, args: &[&str]) -> String {
    let profile = tempfile::tempdir().expect("profile dir");
    let out = std::process::Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--virtual-time-budget=3000")
        .args(args)
        .arg(url)
        .output()
        .expect("chromium runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The `ResourceMetrics` of `request` whose resource's `service.name` is `service`.
pub fn resource_of<'a>(
    request: &'a ExportMetricsServiceRequest,
    service: &str,
) -> &'a opentelemetry_proto::tonic::metrics::v1::ResourceMetrics {
    request
        .resource_metrics
        .iter()
        .find(|rm| {
            rm.resource.as_ref().is_some_and(|r| {
                attrs(&r.attributes).get("service.name").map(String::as_str) == Some(service)
            })
        })
        .unwrap_or_else(|| panic!("no resource of service `{service}` in the request"))
}

/// Builds the project in `source` with `tool` (`args` before the output path) into a new
/// temporary directory as `<name>.wasm`; `None` (the test skipped) where the tool is missing,
/// except in CI, which installs it.
pub fn build_from(
    tool: &str,
    args: &[&str],
    source: &std::path::Path,
    name: &str,
) -> Option<std::path::PathBuf> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let dir = std::env::temp_dir().join(format!("wasmtel-build-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let out = dir.join(format!("{name}.wasm"));
    let built = std::process::Command::new(tool)
        .current_dir(source)
        .args(args)
        .arg(&out)
        .output();
    match built {
        Ok(o) if o.status.success() => Some(dir),
        Ok(o) => panic!("{tool} failed: {}", String::from_utf8_lossy(&o.stderr)),
        Err(e) if std::env::var_os("CI").is_none() => {
            eprintln!(
                "{tool} is not installed ({e}): {} skipped; .ci/run installs it",
                source.display()
            );
            None
        }
        Err(e) => panic!("{tool} is required in CI: {e}"),
    }
}

/// The WIT directory, for the tools that build examples.
pub fn wit_dir() -> String {
    let wit = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../wit");
    wit.to_str().expect("utf-8 path").to_owned()
}

/// `examples/<example>`.
fn example(example: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(example)
}

/// `examples/python-exporter` built with componentize-py, as `python-exporter.wasm` in the
/// directory returned (`None` where the tool is missing, outside CI).
pub fn python_example() -> Option<std::path::PathBuf> {
    let wit = wit_dir();
    let args = ["-d", &wit, "-w", "exporter", "componentize", "app", "-o"];
    build_from(
        "componentize-py",
        &args,
        &example("python-exporter"),
        "python-exporter",
    )
}

/// `examples/js-exporter` built with componentize-js, as `js-exporter.wasm` in the directory
/// returned (`None` where the tool is missing, outside CI).
pub fn js_example() -> Option<std::path::PathBuf> {
    let wit = wit_dir();
    // The runtime's fetch support would import wasi:http, which the sandbox does not grant.
    let args = [
        "exporter.js",
        "--wit",
        &wit,
        "--world-name",
        "exporter",
        "--disable",
        "http",
        "fetch-event",
        "-o",
    ];
    build_from(
        "componentize-js",
        &args,
        &example("js-exporter"),
        "js-exporter",
    )
}

/// Serves `app` on a free loopback port; the address.
pub async fn serve(app: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    addr
}

/// POSTs an OTLP/JSON metrics request to the intake at `addr`; the status and the answer.
pub async fn post_otlp_metrics(addr: SocketAddr, request: &serde_json::Value) -> (u16, Vec<u8>) {
    let (status, _, body) = post(
        addr,
        "/v1/metrics",
        Some("application/json"),
        request.to_string().into_bytes(),
        false,
    )
    .await;
    (status, body)
}

/// Whether Python can import `modules` (comma-separated); in CI (`CI` set) it must, elsewhere a
/// test without it is skipped, naming `package`.
pub fn python_has(modules: &str, package: &str) -> bool {
    let probe = std::process::Command::new("python3")
        .args(["-c", &format!("import {modules}")])
        .output();
    if probe.is_ok_and(|o| o.status.success()) {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{package} is required in CI"
    );
    eprintln!("{package} is not installed: skipped; .ci/run installs it");
    false
}

/// Runs `script` with `python3 -c` and `args`, off the async workers; panics with its stderr
/// when it fails. Its stderr.
pub async fn python(script: &'static str, args: Vec<String>) -> String {
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .arg("-c")
            .arg(script)
            .args(args)
            .output()
            .expect("python runs")
    })
    .await
    .expect("join");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    stderr
}

/// A loopback listener that speaks TLS with a certificate made for `127.0.0.1` at start.
struct TlsListener {
    tcp: tokio::net::TcpListener,
    tls: tokio_rustls::TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((stream, addr)) = self.tcp.accept().await else {
                continue;
            };
            // A client that fails the handshake is dropped; the next one is served.
            if let Ok(tls) = self.tls.accept(stream).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// Serves `app` over HTTPS on a free loopback port, with a self-signed certificate for
/// `127.0.0.1`: the address and the certificate (PEM), which a client trusts as its CA.
pub async fn serve_tls(app: axum::Router) -> (SocketAddr, String) {
    use tokio_rustls::rustls;
    let key = rcgen::KeyPair::generate().expect("key");
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).expect("params");
    let cert = params.self_signed(&key).expect("certificate");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocols")
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
    .expect("server config");
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = tcp.local_addr().expect("addr");
    let listener = TlsListener {
        tcp,
        tls: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
    };
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    (addr, cert.pem())
}
