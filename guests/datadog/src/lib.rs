//! Datadog exporter: metrics to the series API v2 (delta temporality) and log records to the logs intake API v2.
//!
//! The host sends to the integration's endpoints (the `datadog` preset maps a
//! site to `https://api.<site>` for metrics and `https://http-intake.logs.<site>`
//! for logs) and adds the `DD-API-KEY` header itself; this plugin never sees the key.
//!
//! Mapping:
//! - monotonic delta sums → `count`; gauges and non-monotonic sums → `gauge`;
//! - histograms (explicit and exponential) → `<name>.count` and `<name>.sum` (`count`),
//!   `<name>.min` and `<name>.max` (`gauge`), and with `buckets = "true"`, one
//!   `<name>.bucket` count per bucket tagged `lower_bound`/`upper_bound`;
//! - point attributes → `key:value` tags; `service.name`, `service.version` and
//!   `deployment.environment.name` → `service`, `version` and `env` tags; `host.name` → the host resource;
//! - log records → one JSON object each: `message` (the body), `status` (from the
//!   severity), `hostname`, `service`, `ddsource`, `ddtags`, the record's attributes, and
//!   `dd.trace_id`/`dd.span_id` (the low 64 bits, decimal) when it carries a trace context.
//!
//! Configuration: `tags` (comma-separated `key:value` added to everything), `source`
//! (`ddsource`, default `wasmtel`), `buckets` (`true`/`false`), `max_series` and
//! `max_logs` per request (default 1000 each, Datadog's limit for logs).

use serde::Serialize;
use serde_json::{Map, Value as Json};
use wasmtel_guest::{
    Config, Exporter, ExporterInfo, KeyValue, LogBatch, MetricBatch, MetricData, Outbound, Outcome, Resource, Response,
    Temporality, Value,
};

/// Datadog's metric type codes.
const COUNT: u8 = 1;
const GAUGE: u8 = 3;

/// One series of the v2 payload.
#[derive(Debug, Serialize, PartialEq)]
pub struct Series {
    metric: String,
    r#type: u8,
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

#[derive(Serialize)]
struct Payload<'a> {
    series: &'a [Series],
}

/// The exporter's settings.
pub struct Datadog {
    tags: Vec<String>,
    source: String,
    buckets: bool,
    max_series: usize,
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
        let mut push = |metric: String, r#type: u8, time_unix_nano: u64, value: f64, attrs: &[KeyValue], extra: &[String]| {
            let mut tags = origin.tags.clone();
            tags.extend(attrs.iter().map(|kv| format!("{}:{}", kv.key, kv.value)));
            tags.extend_from_slice(extra);
            out.push(Series {
                metric,
                r#type,
                points: [Point { timestamp: time_unix_nano / 1_000_000_000, value }],
                resources: origin.host.iter().map(|h| SeriesResource { name: h.clone(), r#type: "host" }).collect(),
                tags,
            });
        };
        for (_, metric) in batch.metrics() {
            let name = &metric.name;
            match &metric.data {
                MetricData::Gauge(points) => {
                    for p in points {
                        push(name.clone(), GAUGE, p.time_unix_nano, p.value, &p.attributes, &[]);
                    }
                }
                MetricData::Sum(sum) => {
                    let kind = if sum.monotonic && sum.temporality == Temporality::Delta { COUNT } else { GAUGE };
                    for p in &sum.points {
                        push(name.clone(), kind, p.time_unix_nano, p.value, &p.attributes, &[]);
                    }
                }
                MetricData::Histogram(h) => {
                    for p in &h.points {
                        let summary = Summary { count: p.count, sum: p.sum, min: p.min, max: p.max };
                        summary.push(name, p.time_unix_nano, &p.attributes, &mut push);
                        if self.buckets {
                            for (i, count) in p.bucket_counts.iter().enumerate() {
                                let lower = if i == 0 { "-inf".to_owned() } else { p.bounds[i - 1].to_string() };
                                let upper = p.bounds.get(i).map_or_else(|| "inf".to_owned(), ToString::to_string);
                                let bounds = [format!("lower_bound:{lower}"), format!("upper_bound:{upper}")];
                                push(format!("{name}.bucket"), COUNT, p.time_unix_nano, *count as f64, &p.attributes, &bounds);
                            }
                        }
                    }
                }
                MetricData::ExponentialHistogram(h) => {
                    for p in &h.points {
                        let summary = Summary { count: p.count, sum: p.sum, min: p.min, max: p.max };
                        summary.push(name, p.time_unix_nano, &p.attributes, &mut push);
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
    fn push(&self, name: &str, time: u64, attrs: &[KeyValue], push: &mut impl FnMut(String, u8, u64, f64, &[KeyValue], &[String])) {
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

fn body<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, String> {
    serde_json::to_vec(value).map_err(|e| format!("cannot encode JSON: {e}"))
}

fn request(path: &str, body: Vec<u8>) -> Outbound {
    Outbound::post(path, body).header("Content-Type", "application/json")
}

impl Exporter for Datadog {
    fn init(config: Config) -> Result<(Self, ExporterInfo), String> {
        let tags = config.get_or("tags", "").split(',').map(str::trim).filter(|t| !t.is_empty()).map(str::to_owned).collect();
        let max_series = config.parse_or("max_series", 1000usize)?;
        let max_logs = config.parse_or("max_logs", 1000usize)?;
        if max_series == 0 || max_logs == 0 || max_logs > 1000 {
            return Err("`max_series` must be at least 1 and `max_logs` between 1 and 1000".into());
        }
        let exporter = Datadog {
            tags,
            source: config.get_or("source", "wasmtel").to_owned(),
            buckets: config.parse_or("buckets", false)?,
            max_series,
            max_logs,
        };
        Ok((exporter, ExporterInfo::metrics_and_logs(Temporality::Delta)))
    }

    fn encode_metrics(&mut self, batch: &MetricBatch) -> Result<Vec<Outbound>, String> {
        self.series(batch)
            .chunks(self.max_series)
            .map(|chunk| Ok(request("/api/v2/series", body(&Payload { series: chunk })?)))
            .collect()
    }

    fn encode_logs(&mut self, batch: &LogBatch) -> Result<Vec<Outbound>, String> {
        self.logs(batch).chunks(self.max_logs).map(|chunk| Ok(request("/api/v2/logs", body(chunk)?))).collect()
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
            start_time_unix_nano: 0,
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
                        bounds: vec![2.0],
                        bucket_counts: vec![1, 2],
                        exemplars: vec![],
                    }],
                    temporality: Temporality::Delta,
                }),
            ),
        ]);
        let text = String::from_utf8(body(&Payload { series: &dd.series(&b) }).expect("json")).expect("utf-8");
        let host = r#""resources":[{"name":"gpu-1","type":"host"}]"#;
        let series = |m: &str, t: u8, ts: u64, v: &str, tags: &str| {
            format!(r#"{{"metric":"{m}","type":{t},"points":[{{"timestamp":{ts},"value":{v}}}],{host},"tags":["team:ml","service:svc"{tags}]}}"#)
        };
        let expected = [
            series("chunks", 1, 1_700_000_000, "2.0", r#","model:m1""#),
            series("queue", 3, 1_700_000_000, "-1.0", r#","model:m1""#),
            series("temp", 3, 1_700_000_000, "71.5", r#","model:m1""#),
            series("latency.count", 1, 2, "3.0", ""),
            series("latency.sum", 1, 2, "6.0", ""),
            series("latency.min", 3, 2, "1.0", ""),
            series("latency.bucket", 1, 2, "1.0", r#","lower_bound:-inf","upper_bound:2""#),
            series("latency.bucket", 1, 2, "2.0", r#","lower_bound:2","upper_bound:inf""#),
        ];
        assert_eq!(text, format!(r#"{{"series":[{}]}}"#, expected.join(",")));
    }

    #[test]
    fn large_batches_are_split_per_request() {
        let mut dd = exporter(&[("max_series", "2")]);
        let b = batch(vec![("g", MetricData::Gauge(vec![point(1.0), point(2.0), point(3.0)]))]);
        let out = dd.encode_metrics(&b).expect("encodes");
        assert_eq!(out.len(), 2);
        let Outbound::Http(r) = &out[1] else { panic!("http") };
        assert_eq!(r.path, "/api/v2/series");
        assert_eq!(r.headers, vec![("Content-Type".to_owned(), "application/json".to_owned())]);
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
        assert_eq!(err(&[("max_logs", "5000")]).as_deref(), Some("`max_series` must be at least 1 and `max_logs` between 1 and 1000"));
        assert_eq!(err(&[("buckets", "maybe")]).as_deref(), Some("config `buckets`: cannot parse \"maybe\""));
    }
}
