//! `wasmtel load`: drives any OTLP/HTTP agent (wasmtel, the OpenTelemetry Collector, …) with
//! pre-built requests from several connections, and counts what the agent forwards to a sink
//! this tool serves itself, so that one run reports accepted, delivered and lost, and the rates.
//!
//! The sink counts records by walking the protobuf (no decoding), so it costs the tool little;
//! a refused request (429, 503) is sent again after its `Retry-After`, as an SDK would.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, span};
use prost::Message;

use crate::model::wire::{Fields, Value};

/// What to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// OTLP/HTTP logs (`/v1/logs`), records counted at the sink.
    Logs,
    /// OTLP/HTTP metrics (`/v1/metrics`), gauge points.
    Metrics,
    /// NDJSON inference events (`/v1/events`), counted at the sink as log records.
    Events,
    /// OTLP/HTTP traces (`/v1/traces`): spans shaped as vLLM's `llm_request`.
    Traces,
}

/// One load run, as `wasmtel load` takes it.
#[derive(Debug, Clone, clap::Args)]
pub struct Load {
    /// The agent's base URL.
    #[arg(long, default_value = "http://127.0.0.1:4318")]
    pub target: String,
    /// What to send: logs, metrics, events or traces.
    #[arg(long, value_enum, default_value = "logs")]
    pub kind: Kind,
    /// Records, points or events to send in all.
    #[arg(long, default_value_t = 1_000_000)]
    pub items: u64,
    /// Items per request.
    #[arg(long, default_value_t = 100)]
    pub batch: u64,
    /// Connections sending at once.
    #[arg(long, default_value_t = 8)]
    pub connections: usize,
    /// Where to serve the sink the agent forwards to (`/v1/logs`, `/v1/traces`), e.g.
    /// `127.0.0.1:24319`; none
    /// to count nothing.
    #[arg(long)]
    pub sink: Option<SocketAddr>,
    /// How long the sink waits for stragglers once the agent stops sending them.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "2s")]
    pub settle: Duration,
}

/// What one run saw.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Outcome {
    /// Items in requests the agent accepted (2xx).
    pub accepted: u64,
    /// Requests refused with 429 or 503 (and sent again).
    pub retried: u64,
    /// Items in requests refused otherwise (not sent again).
    pub refused: u64,
    /// Items that reached the sink.
    pub delivered: u64,
    /// Seconds from the first request to the last answer.
    pub send_seconds: f64,
    /// Seconds from the first request until the sink had everything (or stopped receiving).
    pub deliver_seconds: f64,
}

impl Outcome {
    /// Accepted items per second.
    pub fn accept_rate(&self) -> f64 {
        self.accepted as f64 / self.send_seconds.max(1e-9)
    }

    /// Delivered items per second, end to end.
    pub fn deliver_rate(&self) -> f64 {
        self.delivered as f64 / self.deliver_seconds.max(1e-9)
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "accepted {} in {:.2} s ({:.0}/s); retried {} requests; refused {}; delivered {} in {:.2} s ({:.0}/s end to end); lost {}",
            self.accepted,
            self.send_seconds,
            self.accept_rate(),
            self.retried,
            self.refused,
            self.delivered,
            self.deliver_seconds,
            self.deliver_rate(),
            self.accepted.saturating_sub(self.delivered)
        )
    }
}

fn text(s: impl Into<String>) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(any_value::Value::StringValue(s.into())),
    })
}

fn kv(key: &str, value: impl Into<String>) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: text(value),
        ..Default::default()
    }
}

/// The body of logs request number `n`: `batch` records with a message, five attributes and a
/// trace context.
pub fn logs_body(n: u64, batch: u64) -> Vec<u8> {
    let records = (0..batch)
        .map(|i| LogRecord {
            time_unix_nano: 1_700_000_000_000_000_000 + n * 1000 + i,
            observed_time_unix_nano: 1_700_000_000_000_000_000 + n * 1000 + i,
            severity_number: 9,
            severity_text: "INFO".into(),
            body: text(format!("generation completed for request {n}-{i}")),
            attributes: vec![
                kv("gen_ai.request.model", format!("model-{}", i % 8)),
                kv("inference.engine", "vllm"),
                kv("inference.request.id", format!("req-{n}-{i}")),
                kv("user.tier", ["free", "pro", "team"][(i % 3) as usize]),
                kv("k8s.pod.name", format!("inference-{}", n % 16)),
            ],
            trace_id: (n * batch + i).to_be_bytes().repeat(2),
            span_id: i.to_be_bytes().to_vec(),
            ..Default::default()
        })
        .collect();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![kv("service.name", "load"), kv("host.name", "node-1")],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: "wasmtel.load".into(),
                    ..Default::default()
                }),
                log_records: records,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
    .encode_to_vec()
}

/// A number attribute.
fn number(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

/// What a vLLM `llm_request` span reports of one request.
#[derive(Debug, Clone, Copy)]
pub struct LlmRequest<'a> {
    /// The model (vLLM puts it in `gen_ai.response.model`).
    pub model: &'a str,
    /// Seconds from arrival to the last token (`gen_ai.latency.e2e`, and the span's length).
    pub e2e: f64,
    /// Seconds to the first token.
    pub ttft: f64,
    /// Prompt tokens.
    pub prompt: i64,
    /// Generated tokens.
    pub completion: i64,
}

impl LlmRequest<'_> {
    /// The request as a server span shaped as vLLM's `llm_request` (attribute names from vLLM's
    /// tracing module, one event), number `n` of its own trace, starting at `start`.
    pub fn span(&self, n: u64, start: u64) -> Span {
        use any_value::Value::{DoubleValue, IntValue};
        Span {
            trace_id: (n + 1).to_be_bytes().repeat(2),
            span_id: (n + 1).to_be_bytes().to_vec(),
            name: "llm_request".into(),
            kind: span::SpanKind::Server as i32,
            start_time_unix_nano: start,
            end_time_unix_nano: start + (self.e2e * 1e9) as u64,
            attributes: vec![
                kv("gen_ai.response.model", self.model),
                kv("gen_ai.request.id", format!("cmpl-{n}")),
                number("gen_ai.usage.prompt_tokens", IntValue(self.prompt)),
                number("gen_ai.usage.completion_tokens", IntValue(self.completion)),
                number("gen_ai.latency.time_in_queue", DoubleValue(0.002)),
                number("gen_ai.latency.time_to_first_token", DoubleValue(self.ttft)),
                number("gen_ai.latency.e2e", DoubleValue(self.e2e)),
            ],
            events: vec![span::Event {
                time_unix_nano: start + 1000,
                name: "first_token".into(),
                ..Default::default()
            }],
            ..Default::default()
        }
    }
}

/// The body of traces request number `n`: `batch` vLLM `llm_request` spans of eight models,
/// each its own trace.
pub fn traces_body(n: u64, batch: u64) -> Vec<u8> {
    let spans = (0..batch)
        .map(|i| {
            let e2e = 0.2 + (i % 50) as f64 / 100.0;
            let request = LlmRequest {
                model: &format!("model-{}", i % 8),
                e2e,
                ttft: e2e / 5.0,
                prompt: 100 + (i % 7) as i64,
                completion: 64,
            };
            request.span(n * batch + i, 1_700_000_000_000_000_000 + n * 1000 + i)
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", "vllm"), kv("host.name", "node-1")],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "vllm.llm_engine".into(),
                    ..Default::default()
                }),
                spans,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
    .encode_to_vec()
}

/// The body of metrics request number `n`: `batch` gauge points, one series each.
pub fn metrics_body(n: u64, batch: u64) -> Vec<u8> {
    let points = (0..batch)
        .map(|i| NumberDataPoint {
            attributes: vec![kv("series", format!("{}", (n * batch + i) % 10_000))],
            time_unix_nano: 1_700_000_000_000_000_000 + n,
            value: Some(number_data_point::Value::AsDouble(i as f64)),
            ..Default::default()
        })
        .collect();
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![kv("service.name", "load")],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "load.value".into(),
                    data: Some(metric::Data::Gauge(Gauge {
                        data_points: points,
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

/// The body of events request number `n`: `batch` inference events, as NDJSON.
pub fn events_body(n: u64, batch: u64) -> Vec<u8> {
    (0..batch)
        .map(|i| {
            let tier = ["free", "pro", "team"][(i % 3) as usize];
            format!(
                "{}\n",
                serde_json::json!({
                    "event_type": "generation_completed", "model": format!("model-{}", i % 8),
                    "engine": "vllm", "request_id": format!("req-{n}-{i}"),
                    "metrics": {"total_duration_ms": 100 + i % 900, "output_tokens": 64},
                    "attributes": {"user.tier": tier},
                })
            )
        })
        .collect::<String>()
        .into_bytes()
}

/// Log records, spans (or metrics) in an OTLP request body, counted without decoding it.
fn count(body: &[u8]) -> u64 {
    // Export{Logs,Trace,Metrics}ServiceRequest have the same outline: resource entries (1) of
    // scope entries (2) of records, spans or metrics (2).
    let nested = |b: &[u8], field: u32| -> Vec<Vec<u8>> {
        Fields::new(b)
            .filter_map(Result::ok)
            .filter_map(|(n, v)| match v {
                Value::Len(inner) if n == field => Some(inner.to_vec()),
                _ => None,
            })
            .collect()
    };
    let mut total = 0;
    for resource in nested(body, 1) {
        for scope in nested(&resource, 2) {
            total += nested(&scope, 2).len() as u64;
        }
    }
    total
}

/// Serves `/v1/logs`, `/v1/traces` and `/v1/metrics` on `listener`, counting what arrives into `received`
/// and when the last of it came (nanoseconds after `started`) into `last`.
async fn sink(
    listener: tokio::net::TcpListener,
    received: Arc<AtomicU64>,
    last: Arc<AtomicU64>,
    started: Instant,
) {
    let handler = move |headers: HeaderMap, body: Bytes| {
        let (received, last) = (received.clone(), last.clone());
        async move {
            let plain = if headers.get("content-encoding").is_some_and(|v| v == "gzip") {
                let mut out = Vec::new();
                if std::io::Read::read_to_end(
                    &mut flate2::read::GzDecoder::new(&body[..]),
                    &mut out,
                )
                .is_err()
                {
                    return StatusCode::BAD_REQUEST;
                }
                out
            } else {
                body.to_vec()
            };
            received.fetch_add(count(&plain), Ordering::Relaxed);
            last.store(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
            StatusCode::OK
        }
    };
    let app = axum::Router::new()
        .route("/v1/logs", axum::routing::post(handler.clone()))
        .route("/v1/traces", axum::routing::post(handler.clone()))
        .route("/v1/metrics", axum::routing::post(handler))
        // An agent's batches may pass axum's 2 MB default (the Collector's 8,192 spans do).
        .layer(axum::extract::DefaultBodyLimit::max(256 << 20));
    let _ = axum::serve(listener, app).await;
}

/// Builds the body of request number `n` with `batch` items.
type Builder = fn(u64, u64) -> Vec<u8>;

/// Stops the sink when the run ends, however it ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs one load: pre-builds 64 distinct requests, sends them round-robin from
/// `connections` connections until `items` are accepted, and waits for the sink.
pub async fn run(load: &Load) -> Result<Outcome, String> {
    let batch = load.batch.max(1);
    let requests = load.items.div_ceil(batch);
    let (path, content_type, build): (&str, &str, Builder) = match load.kind {
        Kind::Logs => ("/v1/logs", "application/x-protobuf", logs_body),
        Kind::Metrics => ("/v1/metrics", "application/x-protobuf", metrics_body),
        Kind::Events => ("/v1/events", "application/x-ndjson", events_body),
        Kind::Traces => ("/v1/traces", "application/x-protobuf", traces_body),
    };
    let bodies: Arc<Vec<Bytes>> = Arc::new((0..64).map(|n| Bytes::from(build(n, batch))).collect());
    let url = format!("{}{path}", load.target.trim_end_matches('/'));
    let origin = Instant::now();
    let (received, last) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let sink_on = load.sink.filter(|_| load.kind != Kind::Metrics);
    let mut serving = None;
    if let Some(addr) = sink_on {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| format!("the sink cannot listen on {addr}: {e}"))?;
        let counting = sink(listener, received.clone(), last.clone(), origin);
        serving = Some(AbortOnDrop(tokio::spawn(counting)));
    }
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(load.connections)
        .build()
        .map_err(|e| e.to_string())?;
    let next = Arc::new(AtomicU64::new(0));
    let counts = Arc::new([AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)]);
    let started = Instant::now();
    let mut senders = Vec::new();
    for _ in 0..load.connections.max(1) {
        let (client, url, bodies, next, counts) = (
            client.clone(),
            url.clone(),
            bodies.clone(),
            next.clone(),
            counts.clone(),
        );
        senders.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= requests {
                    return Ok::<(), String>(());
                }
                let body = bodies[(n % bodies.len() as u64) as usize].clone();
                loop {
                    let response = client
                        .post(&url)
                        .header("content-type", content_type)
                        .body(body.clone())
                        .send()
                        .await
                        .map_err(|e| format!("{url}: {e}"))?;
                    let status = response.status();
                    let after = response
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
                    let _ = response.bytes().await;
                    if status.is_success() {
                        counts[0].fetch_add(batch, Ordering::Relaxed);
                        break;
                    }
                    if matches!(status.as_u16(), 429 | 503) {
                        counts[1].fetch_add(1, Ordering::Relaxed);
                        let wait = after.map_or(Duration::from_millis(100), Duration::from_secs);
                        tokio::time::sleep(wait.min(Duration::from_secs(1))).await;
                        continue;
                    }
                    counts[2].fetch_add(batch, Ordering::Relaxed);
                    break;
                }
            }
        }));
    }
    for sender in senders {
        sender.await.map_err(|e| e.to_string())??;
    }
    let send_seconds = started.elapsed().as_secs_f64();
    let accepted = counts[0].load(Ordering::Relaxed);
    let mut deliver_seconds = send_seconds;
    if sink_on.is_some() {
        let mut quiet = Instant::now();
        let mut seen = received.load(Ordering::Relaxed);
        while seen < accepted && quiet.elapsed() < load.settle {
            tokio::time::sleep(Duration::from_millis(10)).await;
            let now = received.load(Ordering::Relaxed);
            if now != seen {
                seen = now;
                quiet = Instant::now();
            }
        }
        // From the first request to the last record at the sink.
        let last = origin + Duration::from_nanos(last.load(Ordering::Relaxed));
        deliver_seconds = last.saturating_duration_since(started).as_secs_f64();
    }
    drop(serving);
    Ok(Outcome {
        accepted,
        retried: counts[1].load(Ordering::Relaxed),
        refused: counts[2].load(Ordering::Relaxed),
        delivered: received.load(Ordering::Relaxed),
        send_seconds,
        deliver_seconds: deliver_seconds.max(1e-9),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sink_counts_records_without_decoding() {
        assert_eq!(count(&logs_body(3, 17)), 17);
        assert_eq!(count(&traces_body(3, 11)), 11);
        assert_eq!(count(&metrics_body(3, 1)), 1, "one metric of many points");
        assert_eq!(count(&[]), 0);
        let events = String::from_utf8(events_body(0, 3)).expect("text");
        assert_eq!(events.lines().count(), 3);
    }
}
