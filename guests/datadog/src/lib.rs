//! Datadog exporter: metrics to the series API v2 (delta temporality) and log records to the logs intake API v2.
//!
//! The host sends to the integration's endpoints (the `datadog` preset maps a
//! site to `https://api.<site>` for metrics and `https://http-intake.logs.<site>`
//! for logs) and adds the `DD-API-KEY` header itself; this plugin never sees the key.
//!
//! Mapping:
//! - monotonic delta sums → `count` with its `interval` (the delta's length in seconds);
//!   gauges and non-monotonic sums → `gauge`;
//! - histograms (explicit and exponential) → `<name>.count` and `<name>.sum` (`count`),
//!   `<name>.min` and `<name>.max` (`gauge`), and with `buckets = "true"`, one
//!   `<name>.bucket` count per non-empty bucket tagged `lower_bound`/`upper_bound`;
//! - point attributes → `key:value` tags; `service.name`, `service.version` and
//!   `deployment.environment.name` → `service`, `version` and `env` tags; `host.name` → the host resource;
//! - log records → one JSON object each: `message` (the body), `status` (from the
//!   severity), `hostname`, `service`, `ddsource`, `ddtags`, the record's attributes, and
//!   `dd.trace_id`/`dd.span_id` (the low 64 bits, decimal) when it carries a trace context.
//!
//! Requests stay under Datadog's documented limits: a series payload at most 500 KB
//! compressed and 5 MB decompressed; a logs payload at most 1000 entries and 5 MB
//! decompressed (an entry over 1 MB is dropped with a warning). Bodies are compressed
//! (`Content-Encoding: gzip` by default). A request the API still finds too large (413) is
//! split by the host and sent again in halves.
//!
//! Configuration: `tags` (comma-separated `key:value` added to everything), `source`
//! (`ddsource`, default `wasmtel`), `buckets` (`true`/`false`), `compression` (`gzip`,
//! `deflate` or `none`), `max_payload_bytes` (compressed, default 512000),
//! `max_logs` per request (at most 1000).

use serde::Serialize;
use serde_json::{Map, Value as Json};
use wasmtel_guest::{
    Config, Exporter, ExporterInfo, KeyValue, LogBatch, MetricBatch, MetricData, Outbound, Outcome, Resource, Response,
    Temporality, Value,
};

/// Datadog's metric type codes.
const COUNT: u8 = 1;
const GAUGE: u8 = 3;

/// The most bytes of a series payload, compressed (the API's documented 500 KB).
const MAX_SERIES_COMPRESSED: usize = 512_000;
/// The most bytes of a series payload, decompressed (5 MB).
const MAX_SERIES_DECOMPRESSED: usize = 5 * 1024 * 1024;
/// The most bytes of a logs payload, decompressed (5 MB).
const MAX_LOGS_DECOMPRESSED: usize = 5 * 1024 * 1024;
/// The most bytes of one log entry (1 MB).
const MAX_LOG_ENTRY: usize = 1024 * 1024;
/// The most entries of one logs request.
const MAX_LOGS: usize = 1000;

/// How request bodies are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// `Content-Encoding: gzip`.
    Gzip,
    /// `Content-Encoding: deflate` (zlib).
    Deflate,
    /// Uncompressed.
    None,
}

/// One series of the v2 payload.
#[derive(Debug, Serialize, PartialEq)]
pub struct Series {
    metric: String,
    r#type: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    interval: Option<u64>,
    points: [Point; 1],
    #[serde(skip_serializing_if = "Vec::is_empty")]
    resources: Vec<SeriesResource>,
    tags: Vec<String>,
}

#[derive(Debug, Serialize, PartialEq)]
struct Point {
    timestamp: u64,
    value: f64,
}

#[derive(Debug, Serialize, PartialEq)]
struct SeriesResource {
    name: String,
    r#type: &'static str,
}


/// The exporter's settings.
pub struct Datadog {
    tags: Vec<String>,
    source: String,
    buckets: bool,
    compression: Compression,
    max_payload: usize,
    max_logs: usize,
}

/// What the resource contributes: the host, and tags for every series and log.
struct Origin {
    host: Option<String>,
    service: Option<String>,
    tags: Vec<String>,
}

fn attribute<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    attrs.iter().find(|kv| kv.key == key).map(|kv| &kv.value)
}

impl Datadog {
    fn origin(&self, resource: &Resource) -> Origin {
        let text = |key: &str| attribute(&resource.attributes, key).map(ToString::to_string);
        let mut tags = self.tags.clone();
        for (key, tag) in [("service.name", "service"), ("service.version", "version"), ("deployment.environment.name", "env")] {
            if let Some(v) = text(key) {
                tags.push(format!("{tag}:{v}"));
            }
        }
        Origin { host: text("host.name"), service: text("service.name"), tags }
    }

    /// The series of a metric batch, in batch order.
    pub fn series(&self, batch: &MetricBatch) -> Vec<Series> {
        let origin = self.origin(&batch.resource);
        let mut out = Vec::new();
        let mut push = |metric: String, r#type: u8, (start, time): (u64, u64), value: f64, attrs: &[KeyValue], extra: &[String]| {
            let mut tags = origin.tags.clone();
            tags.extend(attrs.iter().map(|kv| format!("{}:{}", kv.key, kv.value)));
            tags.extend_from_slice(extra);
            // A count covers the delta's interval, in whole seconds (at least one).
            let interval = (r#type == COUNT).then(|| (time.saturating_sub(start) as f64 / 1e9).round().max(1.0) as u64);
            out.push(Series {
                metric,
                r#type,
                interval,
                points: [Point { timestamp: time / 1_000_000_000, value }],
                resources: origin.host.iter().map(|h| SeriesResource { name: h.clone(), r#type: "host" }).collect(),
                tags,
            });
        };
        for (_, metric) in batch.metrics() {
            let name = &metric.name;
            match &metric.data {
                MetricData::Gauge(points) => {
                    for p in points {
                        push(name.clone(), GAUGE, (p.start_time_unix_nano, p.time_unix_nano), p.value, &p.attributes, &[]);
                    }
                }
                MetricData::Sum(sum) => {
                    let kind = if sum.monotonic && sum.temporality == Temporality::Delta { COUNT } else { GAUGE };
                    for p in &sum.points {
                        push(name.clone(), kind, (p.start_time_unix_nano, p.time_unix_nano), p.value, &p.attributes, &[]);
                    }
                }
                MetricData::Histogram(h) => {
                    for p in &h.points {
                        let summary = Summary { count: p.count, sum: p.sum, min: p.min, max: p.max };
                        let times = (p.start_time_unix_nano, p.time_unix_nano);
                        summary.push(name, times, &p.attributes, &mut push);
                        if self.buckets {
                            for (i, count) in p.bucket_counts.iter().enumerate().filter(|(_, c)| **c > 0) {
                                let lower = if i == 0 { "-inf".to_owned() } else { p.bounds[i - 1].to_string() };
                                let upper = p.bounds.get(i).map_or_else(|| "inf".to_owned(), ToString::to_string);
                                let bounds = [format!("lower_bound:{lower}"), format!("upper_bound:{upper}")];
                                push(format!("{name}.bucket"), COUNT, times, *count as f64, &p.attributes, &bounds);
                            }
                        }
                    }
                }
                MetricData::ExponentialHistogram(h) => {
                    for p in &h.points {
                        let summary = Summary { count: p.count, sum: p.sum, min: p.min, max: p.max };
                        summary.push(name, (p.start_time_unix_nano, p.time_unix_nano), &p.attributes, &mut push);
                    }
                }
            }
        }
        out
    }

    /// The log entries of a log batch, one JSON object each.
    pub fn logs(&self, batch: &LogBatch) -> Vec<Map<String, Json>> {
        let origin = self.origin(&batch.resource);
        let ddtags = origin.tags.join(",");
        batch
            .records()
            .map(|(_, r)| {
                let mut entry: Map<String, Json> = r.attributes.iter().map(|kv| (kv.key.clone(), json(&kv.value))).collect();
                let message = r.body.as_ref().map_or_else(|| r.event_name.clone(), ToString::to_string);
                entry.insert("message".into(), message.into());
                entry.insert("status".into(), status(r.severity_number).into());
                entry.insert("ddsource".into(), self.source.clone().into());
                if !ddtags.is_empty() {
                    entry.insert("ddtags".into(), ddtags.clone().into());
                }
                if let Some(host) = &origin.host {
                    entry.insert("hostname".into(), host.clone().into());
                }
                if let Some(service) = &origin.service {
                    entry.insert("service".into(), service.clone().into());
                }
                if r.time_unix_nano > 0 {
                    entry.insert("timestamp".into(), (r.time_unix_nano / 1_000_000).into());
                }
                if let (Some(trace), Some(span)) = (low64(&r.trace_id, 16), low64(&r.span_id, 8)) {
                    entry.insert("dd.trace_id".into(), trace.to_string().into());
                    entry.insert("dd.span_id".into(), span.to_string().into());
                    entry.insert("otel.trace_id".into(), hex(&r.trace_id).into());
                    entry.insert("otel.span_id".into(), hex(&r.span_id).into());
                }
                entry
            })
            .collect()
    }
}

/// The aggregate fields every histogram shares.
struct Summary {
    count: u64,
    sum: Option<f64>,
    min: Option<f64>,
    max: Option<f64>,
}

impl Summary {
    fn push(&self, name: &str, time: (u64, u64), attrs: &[KeyValue], push: &mut impl FnMut(String, u8, (u64, u64), f64, &[KeyValue], &[String])) {
        push(format!("{name}.count"), COUNT, time, self.count as f64, attrs, &[]);
        for (suffix, kind, value) in [(".sum", COUNT, self.sum), (".min", GAUGE, self.min), (".max", GAUGE, self.max)] {
            if let Some(v) = value {
                push(format!("{name}{suffix}"), kind, time, v, attrs, &[]);
            }
        }
    }
}

/// Datadog's log status for an OTLP severity number.
fn status(severity: u8) -> &'static str {
    match severity {
        1..=4 => "trace",
        5..=8 => "debug",
        9..=12 => "info",
        13..=16 => "warning",
        17..=20 => "error",
        21.. => "critical",
        0 => "info",
    }
}

/// The last 8 bytes of an id of `len` bytes as an integer; `None` when absent or all zero.
fn low64(id: &[u8], len: usize) -> Option<u64> {
    if id.len() != len {
        return None;
    }
    let low: [u8; 8] = id[len - 8..].try_into().ok()?;
    Some(u64::from_be_bytes(low)).filter(|v| *v != 0 || id.iter().any(|b| *b != 0))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An attribute value as JSON; JSON-carried values are embedded as parsed JSON.
fn json(v: &Value) -> Json {
    match v {
        Value::String(s) => s.clone().into(),
        Value::Boolean(b) => (*b).into(),
        Value::Int(i) => (*i).into(),
        Value::Double(d) => serde_json::Number::from_f64(*d).map_or(Json::Null, Json::Number),
        Value::Bytes(b) => hex(b).into(),
        Value::Json(text) => serde_json::from_str(text).unwrap_or_else(|_| text.clone().into()),
    }
}

/// One JSON item of a payload.
fn json_bytes<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, String> {
    serde_json::to_vec(value).map_err(|e| format!("cannot encode JSON: {e}"))
}

/// A JSON payload: `open`, the items joined by commas, `close`.
fn payload(open: &[u8], items: &[Vec<u8>], close: &[u8]) -> Vec<u8> {
    let len = open.len() + close.len() + items.iter().map(|i| i.len() + 1).sum::<usize>();
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(open);
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(item);
    }
    out.extend_from_slice(close);
    out
}

impl Datadog {
    fn compress(&self, body: &[u8]) -> Result<Vec<u8>, String> {
        use std::io::Write as _;
        let failed = |e: std::io::Error| format!("cannot compress: {e}");
        match self.compression {
            Compression::None => Ok(body.to_vec()),
            Compression::Gzip => {
                let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                enc.write_all(body).map_err(failed)?;
                enc.finish().map_err(failed)
            }
            Compression::Deflate => {
                let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
                enc.write_all(body).map_err(failed)?;
                enc.finish().map_err(failed)
            }
        }
    }

    fn request(&self, path: &str, body: Vec<u8>) -> Outbound {
        let request = Outbound::post(path, body).header("Content-Type", "application/json");
        match self.compression {
            Compression::None => request,
            Compression::Gzip => request.header("Content-Encoding", "gzip"),
            Compression::Deflate => request.header("Content-Encoding", "deflate"),
        }
    }

    /// Requests carrying `items` in payloads of at most `max_items` items and `max_decompressed`
    /// bytes, each compressed to at most `max_payload` bytes (halved until it fits).
    fn requests(
        &self,
        path: &str,
        items: &[Vec<u8>],
        (open, close): (&[u8], &[u8]),
        max_items: usize,
        max_decompressed: usize,
    ) -> Result<Vec<Outbound>, String> {
        let mut out = Vec::new();
        let mut chunk: Vec<Vec<u8>> = Vec::new();
        let mut size = open.len() + close.len();
        let flush = |chunk: &mut Vec<Vec<u8>>, out: &mut Vec<Outbound>| -> Result<(), String> {
            let mut pending = vec![std::mem::take(chunk)];
            while let Some(part) = pending.pop() {
                if part.is_empty() {
                    continue;
                }
                let body = self.compress(&payload(open, &part, close))?;
                if body.len() > self.max_payload && part.len() > 1 {
                    let (a, b) = part.split_at(part.len() / 2);
                    pending.push(b.to_vec());
                    pending.push(a.to_vec());
                    continue;
                }
                out.push(self.request(path, body));
            }
            Ok(())
        };
        for item in items {
            if !chunk.is_empty() && (chunk.len() >= max_items || size + item.len() + 1 > max_decompressed) {
                flush(&mut chunk, &mut out)?;
                size = open.len() + close.len();
            }
            size += item.len() + 1;
            chunk.push(item.clone());
        }
        flush(&mut chunk, &mut out)?;
        Ok(out)
    }
}

impl Exporter for Datadog {
    fn init(config: Config) -> Result<(Self, ExporterInfo), String> {
        let tags = config.get_or("tags", "").split(',').map(str::trim).filter(|t| !t.is_empty()).map(str::to_owned).collect();
        let compression = match config.get_or("compression", "gzip") {
            "gzip" => Compression::Gzip,
            "deflate" => Compression::Deflate,
            "none" => Compression::None,
            other => return Err(format!("config `compression`: {other:?} is not gzip, deflate or none")),
        };
        let max_payload = config.parse_or("max_payload_bytes", MAX_SERIES_COMPRESSED)?;
        let max_logs = config.parse_or("max_logs", MAX_LOGS)?;
        if !(1024..=MAX_SERIES_COMPRESSED).contains(&max_payload) {
            return Err(format!("config `max_payload_bytes`: between 1024 and {MAX_SERIES_COMPRESSED}"));
        }
        if max_logs == 0 || max_logs > MAX_LOGS {
            return Err(format!("config `max_logs`: between 1 and {MAX_LOGS}"));
        }
        let exporter = Datadog {
            tags,
            source: config.get_or("source", "wasmtel").to_owned(),
            buckets: config.parse_or("buckets", false)?,
            compression,
            max_payload,
            max_logs,
        };
        Ok((exporter, ExporterInfo::metrics_and_logs(Temporality::Delta)))
    }

    fn encode_metrics(&mut self, batch: &MetricBatch) -> Result<Vec<Outbound>, String> {
        let items = self.series(batch).iter().map(json_bytes).collect::<Result<Vec<_>, _>>()?;
        self.requests("/api/v2/series", &items, (b"{\"series\":[", b"]}"), usize::MAX, MAX_SERIES_DECOMPRESSED)
    }

    fn encode_logs(&mut self, batch: &LogBatch) -> Result<Vec<Outbound>, String> {
        let mut items = Vec::new();
        for entry in self.logs(batch) {
            let bytes = json_bytes(&entry)?;
            if bytes.len() > MAX_LOG_ENTRY {
                wasmtel_guest::log(wasmtel_guest::Level::Warn, &format!("a log entry of {} bytes is over Datadog's 1 MB limit; dropped", bytes.len()));
                continue;
            }
            items.push(bytes);
        }
        self.requests("/api/v2/logs", &items, (b"[", b"]"), self.max_logs, MAX_LOGS_DECOMPRESSED)
    }

    /// 2xx delivered; 408, 429 and 5xx retried (honouring `Retry-After`); 400, 403 and 413 refused.
    fn classify(&self, response: &Response) -> Outcome {
        match response.status {
            408 | 429 | 500..=599 => Outcome::Retry(response.retry_after_ms()),
            403 => Outcome::Reject("HTTP 403: the API key was refused".into()),
            _ => Outcome::from_status(response),
        }
    }
}

wasmtel_guest::export_exporter!(Datadog);

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtel_guest::{HistogramPoint, Metric, NumberPoint, Scope, ScopeMetrics, Sum};

    fn exporter(pairs: &[(&str, &str)]) -> Datadog {
        Datadog::init(Config::new(pairs.iter().copied())).expect("valid").0
    }

    fn point(value: f64) -> NumberPoint {
        NumberPoint {
            attributes: vec![KeyValue::string("model", "m1")],
            start_time_unix_nano: 1_699_999_990_500_000_000,
            time_unix_nano: 1_700_000_000_500_000_000,
            value,
            exemplars: vec![],
        }
    }

    fn batch(data: Vec<(&str, MetricData)>) -> MetricBatch {
        MetricBatch {
            resource: Resource {
                attributes: vec![KeyValue::string("host.name", "gpu-1"), KeyValue::string("service.name", "svc")],
                schema_url: String::new(),
            },
            scopes: vec![ScopeMetrics {
                scope: Scope { name: "s".into(), version: String::new(), attributes: vec![] },
                metrics: data
                    .into_iter()
                    .map(|(name, data)| Metric { name: name.into(), description: String::new(), unit: String::new(), data })
                    .collect(),
            }],
        }
    }

    #[test]
    fn sums_gauges_and_histograms_map_to_v2_series() {
        let dd = exporter(&[("tags", "team:ml"), ("buckets", "true")]);
        let b = batch(vec![
            ("chunks", MetricData::Sum(Sum { points: vec![point(2.0)], temporality: Temporality::Delta, monotonic: true })),
            ("queue", MetricData::Sum(Sum { points: vec![point(-1.0)], temporality: Temporality::Cumulative, monotonic: false })),
            ("temp", MetricData::Gauge(vec![point(71.5)])),
            (
                "latency",
                MetricData::Histogram(wasmtel_guest::Histogram {
                    points: vec![HistogramPoint {
                        attributes: vec![],
                        start_time_unix_nano: 0,
                        time_unix_nano: 2_000_000_000,
                        count: 3,
                        sum: Some(6.0),
                        min: Some(1.0),
                        max: None,
                        bounds: vec![2.0, 5.0],
                        bucket_counts: vec![1, 0, 2],
                        exemplars: vec![],
                    }],
                    temporality: Temporality::Delta,
                }),
            ),
        ]);
        let mut dd = dd;
        let out = dd.encode_metrics(&b).expect("encodes");
        assert_eq!(out.len(), 1);
        let Outbound::Http(r) = &out[0] else { panic!("http") };
        assert_eq!(r.path, "/api/v2/series");
        assert_eq!(
            r.headers,
            [("Content-Type".to_owned(), "application/json".to_owned()), ("Content-Encoding".to_owned(), "gzip".to_owned())]
        );
        let text = gunzip(&r.body);
        let host = r#""resources":[{"name":"gpu-1","type":"host"}]"#;
        let series = |m: &str, t: u8, ts: u64, v: &str, tags: &str| {
            let interval = if t == 1 { if ts > 100 { r#""interval":10,"# } else { r#""interval":2,"# } } else { "" };
            format!(r#"{{"metric":"{m}","type":{t},{interval}"points":[{{"timestamp":{ts},"value":{v}}}],{host},"tags":["team:ml","service:svc"{tags}]}}"#)
        };
        let expected = [
            series("chunks", 1, 1_700_000_000, "2.0", r#","model:m1""#),
            series("queue", 3, 1_700_000_000, "-1.0", r#","model:m1""#),
            series("temp", 3, 1_700_000_000, "71.5", r#","model:m1""#),
            series("latency.count", 1, 2, "3.0", ""),
            series("latency.sum", 1, 2, "6.0", ""),
            series("latency.min", 3, 2, "1.0", ""),
            series("latency.bucket", 1, 2, "1.0", r#","lower_bound:-inf","upper_bound:2""#),
            series("latency.bucket", 1, 2, "2.0", r#","lower_bound:5","upper_bound:inf""#),
        ];
        assert_eq!(text, format!(r#"{{"series":[{}]}}"#, expected.join(",")), "counts carry their interval; the empty bucket is left out");
    }

    fn gunzip(body: &[u8]) -> String {
        use std::io::Read as _;
        let mut text = String::new();
        flate2::read::GzDecoder::new(body).read_to_string(&mut text).expect("gzip");
        text
    }

    #[test]
    fn payloads_stay_under_the_compressed_limit_and_are_split_to_fit() {
        // 3000 series with random-looking tags compress poorly: a 4 KiB payload limit splits them.
        let mut dd = exporter(&[("max_payload_bytes", "4096"), ("compression", "deflate")]);
        let points = (0..3000u64)
            .map(|i| {
                let mut p = point(i as f64);
                p.attributes.push(KeyValue::string("id", &format!("{:016x}", i.wrapping_mul(0x9E37_79B9_7F4A_7C15))));
                p
            })
            .collect();
        let out = dd.encode_metrics(&batch(vec![("g", MetricData::Gauge(points))])).expect("encodes");
        assert!(out.len() > 10, "{} requests", out.len());
        let mut total = 0;
        for o in &out {
            let Outbound::Http(r) = o else { panic!("http") };
            assert!(r.body.len() <= 4096, "{} bytes", r.body.len());
            assert!(r.headers.contains(&("Content-Encoding".to_owned(), "deflate".to_owned())));
            use std::io::Read as _;
            let mut text = String::new();
            flate2::read::ZlibDecoder::new(&r.body[..]).read_to_string(&mut text).expect("zlib");
            let parsed: serde_json::Value = serde_json::from_str(&text).expect("JSON");
            total += parsed["series"].as_array().expect("series").len();
        }
        assert_eq!(total, 3000, "every series once");
    }

    #[test]
    fn responses_are_classified_as_datadog_documents_them() {
        let dd = exporter(&[]);
        let answer = |status: u16, headers: &[(&str, &str)]| {
            dd.classify(&Response { status, headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(), body: b"{}".to_vec() })
        };
        assert_eq!(answer(202, &[]), Outcome::Success);
        assert_eq!(answer(408, &[]), Outcome::Retry(None));
        assert_eq!(answer(500, &[("Retry-After", "7")]), Outcome::Retry(Some(7000)));
        assert_eq!(answer(429, &[]), Outcome::Retry(None));
        assert_eq!(answer(403, &[]), Outcome::Reject("HTTP 403: the API key was refused".into()));
        assert_eq!(answer(413, &[]), Outcome::Reject("HTTP 413: {}".into()));
    }

    #[test]
    fn bad_settings_are_refused() {
        let err = |pairs: &[(&str, &str)]| Datadog::init(Config::new(pairs.iter().copied())).err();
        assert_eq!(err(&[("max_logs", "5000")]).as_deref(), Some("config `max_logs`: between 1 and 1000"));
        assert_eq!(err(&[("compression", "zstd")]).as_deref(), Some("config `compression`: \"zstd\" is not gzip, deflate or none"));
        assert_eq!(err(&[("max_payload_bytes", "600000")]).as_deref(), Some("config `max_payload_bytes`: between 1024 and 512000"));
        assert_eq!(err(&[("buckets", "maybe")]).as_deref(), Some("config `buckets`: cannot parse \"maybe\""));
    }
}
