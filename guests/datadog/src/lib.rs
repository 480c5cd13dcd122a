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
    Attributes, Config, Exporter, ExporterInfo, LogBatch, MetricBatch, MetricKind, Outbound,
    Outcome, PerSet, Response, Temporality, Value,
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
#[derive(Debug)]
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

impl Datadog {
    fn origin(&self, resource: Attributes<'_>) -> Origin {
        let text = |key: &str| resource.get(key).map(ToString::to_string);
        let mut tags = self.tags.clone();
        for (key, tag) in [
            ("service.name", "service"),
            ("service.version", "version"),
            ("deployment.environment.name", "env"),
        ] {
            if let Some(v) = text(key) {
                tags.push(format!("{tag}:{v}"));
            }
        }
        Origin {
            host: text("host.name"),
            service: text("service.name"),
            tags,
        }
    }

    /// The series of a metric batch, in batch order.
    pub fn series(&self, batch: &MetricBatch) -> Vec<Series> {
        let origin = self.origin(batch.resource());
        let mut out = Vec::new();
        let mut push = |metric: String,
                        r#type: u8,
                        (start, time): (u64, u64),
                        value: f64,
                        attrs: &[String],
                        extra: &[String]| {
            let mut tags = origin.tags.clone();
            tags.extend_from_slice(attrs);
            tags.extend_from_slice(extra);
            // A count covers the delta's interval, in whole seconds (at least one).
            let interval = (r#type == COUNT)
                .then(|| (time.saturating_sub(start) as f64 / 1e9).round().max(1.0) as u64);
            out.push(Series {
                metric,
                r#type,
                interval,
                points: [Point {
                    timestamp: time / 1_000_000_000,
                    value,
                }],
                resources: origin
                    .host
                    .iter()
                    .map(|h| SeriesResource {
                        name: h.clone(),
                        r#type: "host",
                    })
                    .collect(),
                tags,
            });
        };
        // Each attribute set's tags are made once, however many points share it.
        let mut tags = PerSet::new(&batch.table);
        let mut tags_of = |a: Attributes<'_>| {
            tags.get(a, |a| {
                a.iter()
                    .map(|(k, v)| format!("{k}:{v}"))
                    .collect::<Vec<_>>()
            })
            .clone()
        };
        for metric in batch.metrics() {
            let name = metric.name();
            match metric.kind() {
                MetricKind::Gauge | MetricKind::Sum { .. } => {
                    let count = metric.kind() == MetricKind::Sum { monotonic: true }
                        && metric.temporality() == Temporality::Delta;
                    let kind = if count { COUNT } else { GAUGE };
                    for p in metric.numbers() {
                        push(
                            name.to_owned(),
                            kind,
                            (p.start_time_unix_nano, p.time_unix_nano),
                            p.value,
                            &tags_of(p.attributes()),
                            &[],
                        );
                    }
                }
                MetricKind::Histogram => {
                    for p in metric.histograms() {
                        let summary = Summary::of(p.count, p.sum, p.min, p.max);
                        let times = (p.start_time_unix_nano, p.time_unix_nano);
                        let attrs = tags_of(p.attributes());
                        summary.push(name, times, &attrs, &mut push);
                        if self.buckets {
                            let bounds = p.bounds();
                            for (i, count) in p
                                .bucket_counts()
                                .iter()
                                .enumerate()
                                .filter(|(_, c)| **c > 0)
                            {
                                let lower = if i == 0 {
                                    "-inf".to_owned()
                                } else {
                                    bounds[i - 1].to_string()
                                };
                                let upper = bounds
                                    .get(i)
                                    .map_or_else(|| "inf".to_owned(), ToString::to_string);
                                let bounds = [
                                    format!("lower_bound:{lower}"),
                                    format!("upper_bound:{upper}"),
                                ];
                                push(
                                    format!("{name}.bucket"),
                                    COUNT,
                                    times,
                                    *count as f64,
                                    &attrs,
                                    &bounds,
                                );
                            }
                        }
                    }
                }
                MetricKind::ExponentialHistogram => {
                    for p in metric.exponential_histograms() {
                        let summary = Summary::of(p.count, p.sum, p.min, p.max);
                        summary.push(
                            name,
                            (p.start_time_unix_nano, p.time_unix_nano),
                            &tags_of(p.attributes()),
                            &mut push,
                        );
                    }
                }
            }
        }
        out
    }

    /// The log entries of a log batch, one JSON object each.
    pub fn logs(&self, batch: &LogBatch) -> Vec<Map<String, Json>> {
        let origin = self.origin(batch.resource());
        let ddtags = origin.tags.join(",");
        batch
            .records()
            .map(|r| {
                let mut entry: Map<String, Json> = r
                    .attributes()
                    .iter()
                    .map(|(k, v)| (k.to_owned(), json(v)))
                    .collect();
                let message = r
                    .body()
                    .map_or_else(|| r.event_name().to_owned(), ToString::to_string);
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
                // Datadog correlates on the low 64 bits of the trace id; an all-zero id is no trace.
                if let Some(t) = r.trace.filter(|t| (t.trace_id_high | t.trace_id_low) != 0) {
                    entry.insert("dd.trace_id".into(), t.trace_id_low.to_string().into());
                    entry.insert("dd.span_id".into(), t.span_id.to_string().into());
                    entry.insert("otel.trace_id".into(), t.trace_id_hex().into());
                    entry.insert("otel.span_id".into(), t.span_id_hex().into());
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
    /// A histogram point's aggregates.
    fn of(count: u64, sum: Option<f64>, min: Option<f64>, max: Option<f64>) -> Self {
        Self {
            count,
            sum,
            min,
            max,
        }
    }

    fn push(
        &self,
        name: &str,
        time: (u64, u64),
        attrs: &[String],
        push: &mut impl FnMut(String, u8, (u64, u64), f64, &[String], &[String]),
    ) {
        push(
            format!("{name}.count"),
            COUNT,
            time,
            self.count as f64,
            attrs,
            &[],
        );
        for (suffix, kind, value) in [
            (".sum", COUNT, self.sum),
            (".min", GAUGE, self.min),
            (".max", GAUGE, self.max),
        ] {
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
                let mut enc =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                enc.write_all(body).map_err(failed)?;
                enc.finish().map_err(failed)
            }
            Compression::Deflate => {
                let mut enc =
                    flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
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
            if !chunk.is_empty()
                && (chunk.len() >= max_items || size + item.len() + 1 > max_decompressed)
            {
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

#[wasmtel_guest::exporter]
impl Exporter for Datadog {
    fn init(config: Config) -> Result<(Self, ExporterInfo), String> {
        let tags = config
            .get_or("tags", "")
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect();
        let compression = match config.get_or("compression", "gzip") {
            "gzip" => Compression::Gzip,
            "deflate" => Compression::Deflate,
            "none" => Compression::None,
            other => {
                return Err(format!(
                    "config `compression`: {other:?} is not gzip, deflate or none"
                ));
            }
        };
        let max_payload = config.parse_or("max_payload_bytes", MAX_SERIES_COMPRESSED)?;
        let max_logs = config.parse_or("max_logs", MAX_LOGS)?;
        if !(1024..=MAX_SERIES_COMPRESSED).contains(&max_payload) {
            return Err(format!(
                "config `max_payload_bytes`: between 1024 and {MAX_SERIES_COMPRESSED}"
            ));
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
        let items = self
            .series(batch)
            .iter()
            .map(json_bytes)
            .collect::<Result<Vec<_>, _>>()?;
        self.requests(
            "/api/v2/series",
            &items,
            (b"{\"series\":[", b"]}"),
            usize::MAX,
            MAX_SERIES_DECOMPRESSED,
        )
    }

    fn encode_logs(&mut self, batch: &LogBatch) -> Result<Vec<Outbound>, String> {
        let mut items = Vec::new();
        for entry in self.logs(batch) {
            let bytes = json_bytes(&entry)?;
            if bytes.len() > MAX_LOG_ENTRY {
                wasmtel_guest::log(
                    wasmtel_guest::Level::Warn,
                    &format!(
                        "a log entry of {} bytes is over Datadog's 1 MB limit; dropped",
                        bytes.len()
                    ),
                );
                continue;
            }
            items.push(bytes);
        }
        self.requests(
            "/api/v2/logs",
            &items,
            (b"[", b"]"),
            self.max_logs,
            MAX_LOGS_DECOMPRESSED,
        )
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

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtel_guest::BatchBuilder;

    fn exporter(pairs: &[(&str, &str)]) -> Datadog {
        Datadog::init(Config::new(pairs.iter().copied()))
            .expect("valid")
            .0
    }

    /// A batch from a resource with a host and a service, points 10 s long.
    fn builder() -> BatchBuilder {
        BatchBuilder::new()
            .resource(&[
                ("host.name", "gpu-1".into()),
                ("service.name", "svc".into()),
            ])
            .times(1_699_999_990_500_000_000, 1_700_000_000_500_000_000)
    }

    #[test]
    fn sums_gauges_and_histograms_map_to_v2_series() {
        let m1: &[(&str, Value)] = &[("model", "m1".into())];
        let b = builder()
            .temporality(Temporality::Delta)
            .counter("chunks", "", m1, 2.0)
            .temporality(Temporality::Cumulative)
            .up_down_counter("queue", "", m1, -1.0)
            .gauge("temp", "", m1, 71.5)
            .times(0, 2_000_000_000)
            .temporality(Temporality::Delta)
            .histogram("latency", "", &[], &[2.0, 5.0], &[1, 0, 2], 6.0)
            .extremes(1.0, None)
            .metrics();
        let mut dd = exporter(&[("tags", "team:ml"), ("buckets", "true")]);
        let out = dd.encode_metrics(&b).expect("encodes");
        assert_eq!(out.len(), 1);
        let Outbound::Http(r) = &out[0] else {
            panic!("http")
        };
        assert_eq!(r.path, "/api/v2/series");
        assert_eq!(
            r.headers,
            [
                ("Content-Type".to_owned(), "application/json".to_owned()),
                ("Content-Encoding".to_owned(), "gzip".to_owned())
            ]
        );
        let text = gunzip(&r.body);
        let host = r#""resources":[{"name":"gpu-1","type":"host"}]"#;
        let series = |m: &str, t: u8, ts: u64, v: &str, tags: &str| {
            let interval = if t == 1 {
                if ts > 100 {
                    r#""interval":10,"#
                } else {
                    r#""interval":2,"#
                }
            } else {
                ""
            };
            format!(
                r#"{{"metric":"{m}","type":{t},{interval}"points":[{{"timestamp":{ts},"value":{v}}}],{host},"tags":["team:ml","service:svc"{tags}]}}"#
            )
        };
        let expected = [
            series("chunks", 1, 1_700_000_000, "2.0", r#","model:m1""#),
            series("queue", 3, 1_700_000_000, "-1.0", r#","model:m1""#),
            series("temp", 3, 1_700_000_000, "71.5", r#","model:m1""#),
            series("latency.count", 1, 2, "3.0", ""),
            series("latency.sum", 1, 2, "6.0", ""),
            series("latency.min", 3, 2, "1.0", ""),
            series(
                "latency.bucket",
                1,
                2,
                "1.0",
                r#","lower_bound:-inf","upper_bound:2""#,
            ),
            series(
                "latency.bucket",
                1,
                2,
                "2.0",
                r#","lower_bound:5","upper_bound:inf""#,
            ),
        ];
        assert_eq!(
            text,
            format!(r#"{{"series":[{}]}}"#, expected.join(",")),
            "counts carry their interval; the empty bucket is left out"
        );
    }

    #[test]
    fn log_records_carry_their_trace_in_both_forms() {
        let trace = wasmtel_guest::TraceContext {
            trace_id_high: 1,
            trace_id_low: 2,
            span_id: 3,
        };
        let batch = builder()
            .record("hello", &[("k", "v".into())])
            .trace(trace)
            .record("bye", &[])
            .logs();
        let entries = exporter(&[]).logs(&batch);
        assert_eq!(entries[0]["message"], "hello");
        assert_eq!(entries[0]["k"], "v");
        assert_eq!(entries[0]["dd.trace_id"], "2");
        assert_eq!(
            entries[0]["otel.trace_id"],
            "00000000000000010000000000000002"
        );
        assert_eq!(entries[0]["otel.span_id"], "0000000000000003");
        assert_eq!(
            (
                entries[1]["message"].as_str(),
                entries[1].get("dd.trace_id")
            ),
            (Some("bye"), None)
        );
    }

    fn gunzip(body: &[u8]) -> String {
        use std::io::Read as _;
        let mut text = String::new();
        flate2::read::GzDecoder::new(body)
            .read_to_string(&mut text)
            .expect("gzip");
        text
    }

    #[test]
    fn payloads_stay_under_the_compressed_limit_and_are_split_to_fit() {
        // 3000 series with random-looking tags compress poorly: a 4 KiB payload limit splits them.
        let mut dd = exporter(&[("max_payload_bytes", "4096"), ("compression", "deflate")]);
        let batch = (0..3000u64)
            .fold(builder(), |b, i| {
                let id = format!("{:016x}", i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
                b.gauge(
                    "g",
                    "",
                    &[("model", "m1".into()), ("id", id.into())],
                    i as f64,
                )
            })
            .metrics();
        let out = dd.encode_metrics(&batch).expect("encodes");
        assert!(out.len() > 10, "{} requests", out.len());
        let mut total = 0;
        for o in &out {
            let Outbound::Http(r) = o else { panic!("http") };
            assert!(r.body.len() <= 4096, "{} bytes", r.body.len());
            assert!(
                r.headers
                    .contains(&("Content-Encoding".to_owned(), "deflate".to_owned()))
            );
            use std::io::Read as _;
            let mut text = String::new();
            flate2::read::ZlibDecoder::new(&r.body[..])
                .read_to_string(&mut text)
                .expect("zlib");
            let parsed: serde_json::Value = serde_json::from_str(&text).expect("JSON");
            total += parsed["series"].as_array().expect("series").len();
        }
        assert_eq!(total, 3000, "every series once");
    }

    #[test]
    fn responses_are_classified_as_datadog_documents_them() {
        let dd = exporter(&[]);
        let answer = |status: u16, headers: &[(&str, &str)]| {
            dd.classify(&Response {
                status,
                headers: headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                body: b"{}".to_vec(),
            })
        };
        assert_eq!(answer(202, &[]), Outcome::Success);
        assert_eq!(answer(408, &[]), Outcome::Retry(None));
        assert_eq!(
            answer(500, &[("Retry-After", "7")]),
            Outcome::Retry(Some(7000))
        );
        assert_eq!(answer(429, &[]), Outcome::Retry(None));
        assert_eq!(
            answer(403, &[]),
            Outcome::Reject("HTTP 403: the API key was refused".into())
        );
        assert_eq!(answer(413, &[]), Outcome::Reject("HTTP 413: {}".into()));
    }

    #[test]
    fn bad_settings_are_refused() {
        let err = |pairs: &[(&str, &str)]| Datadog::init(Config::new(pairs.iter().copied())).err();
        assert_eq!(
            err(&[("max_logs", "5000")]).as_deref(),
            Some("config `max_logs`: between 1 and 1000")
        );
        assert_eq!(
            err(&[("compression", "zstd")]).as_deref(),
            Some("config `compression`: \"zstd\" is not gzip, deflate or none")
        );
        assert_eq!(
            err(&[("max_payload_bytes", "600000")]).as_deref(),
            Some("config `max_payload_bytes`: between 1024 and 512000")
        );
        assert_eq!(
            err(&[("buckets", "maybe")]).as_deref(),
            Some("config `buckets`: cannot parse \"maybe\"")
        );
    }
}
