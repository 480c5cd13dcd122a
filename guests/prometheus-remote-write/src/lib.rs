//! Prometheus remote write 1.0: metrics as a snappy-compressed protobuf `WriteRequest`, POSTed to
//! a store's write endpoint (Prometheus with `--web.enable-remote-write-receiver`, Mimir, Cortex,
//! Thanos Receive, VictoriaMetrics, Grafana Cloud).
//!
//! Asks for cumulative temporality, as remote write wants. Names and labels follow the
//! OpenTelemetry → Prometheus rules the host's `/metrics` follows: the metric's name with its unit
//! word and `_total` for monotonic sums, attribute keys made label names, `otel_scope_name` and
//! `otel_scope_version`, `job` (`service.namespace/service.name`) and `instance`
//! (`service.instance.id`, else a stable identity of the resource) from the resource, and one
//! `target_info` series per batch carrying the
//! other resource attributes. Gauges and sums are one sample each; an explicit-bucket histogram
//! is `_bucket{le=…}` (cumulative, `+Inf` included), `_sum` and `_count`; exponential histograms
//! (native histograms need remote write 2.0) are left out. Metadata (type, help, unit) goes with
//! every request, for the stores that keep it (Prometheus 2.x's receiver does not).
//!
//! Settings: `path` (default `/api/v1/write`; Mimir and Cortex take `/api/v1/push`; empty: the
//! endpoint as given, which the host sets when the endpoint has a path of its own),
//! `max_series` per request (default 2,000). Responses: 2xx delivered; 429 and 5xx retried (a
//! numeric `Retry-After` honoured); any other status rejected, since resending would fail alike.
//! Credentials (`authorization = "Bearer …"` or `"Basic …"`, `X-Scope-OrgID`) are the
//! integration's `headers`, added by the host; the plugin never sees them.

use std::collections::BTreeMap;

use wasmtel_guest::prometheus::{instance, label_name};
use wasmtel_guest::{
    Config, Exporter, ExporterInfo, MetricBatch, MetricKind, MetricRef, Outbound, Outcome,
    Response, Temporality, Value,
};

/// The exporter's settings.
#[derive(Debug)]
pub struct RemoteWrite {
    path: String,
    max_series: usize,
}

/// One series and its one sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Label pairs, sorted by name, `__name__` among them.
    pub labels: Vec<(String, String)>,
    /// The sample's value.
    pub value: f64,
    /// The sample's time, in Unix milliseconds.
    pub timestamp_ms: i64,
}

/// A metric family's metadata: type (1 counter, 2 gauge, 3 histogram), name, help and unit.
type Metadata = (u64, String, String, String);

#[wasmtel_guest::exporter]
impl Exporter for RemoteWrite {
    fn init(config: Config) -> Result<(Self, ExporterInfo), String> {
        let path = config.get_or("path", "/api/v1/write").to_owned();
        if !path.is_empty() && !path.starts_with('/') {
            return Err(format!(
                "config `path`: {path:?} must begin with / (or be empty: the endpoint as given)"
            ));
        }
        let max_series = config.parse_or("max_series", 2000usize)?;
        if max_series == 0 {
            return Err("config `max_series`: at least 1".into());
        }
        Ok((
            RemoteWrite { path, max_series },
            ExporterInfo::metrics(Temporality::Cumulative),
        ))
    }

    fn encode_metrics(&mut self, batch: &MetricBatch) -> Result<Vec<Outbound>, String> {
        let (series, metadata) = series(batch);
        let mut out = Vec::new();
        for chunk in series.chunks(self.max_series) {
            let body = snap::raw::Encoder::new()
                .compress_vec(&write_request(chunk, &metadata))
                .map_err(|e| format!("snappy: {e}"))?;
            out.push(
                Outbound::post(&self.path, body)
                    .header("Content-Encoding", "snappy")
                    .header("Content-Type", "application/x-protobuf")
                    .header("X-Prometheus-Remote-Write-Version", "0.1.0"),
            );
        }
        Ok(out)
    }

    fn classify(&self, response: &Response) -> Outcome {
        match response.status {
            200..=299 => Outcome::Success,
            429 | 500..=599 => Outcome::Retry(response.retry_after_ms()),
            _ => Outcome::from_status(response),
        }
    }
}

/// A value as label text.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Adds `labels` to a sorted label set, a later value of the same label name winning.
fn labelled(base: &BTreeMap<String, String>, extra: &[(&str, String)]) -> Vec<(String, String)> {
    let mut all = base.clone();
    for (k, v) in extra {
        all.insert((*k).to_owned(), v.clone());
    }
    all.into_iter().collect()
}

/// Every series of a batch, with the metadata of each family.
pub fn series(batch: &MetricBatch) -> (Vec<Series>, Vec<Metadata>) {
    let resource = batch.resource();
    let get = |k: &str| resource.get(k).map(text);
    let job = match (get("service.namespace"), get("service.name")) {
        (Some(ns), Some(name)) => Some(format!("{ns}/{name}")),
        (None, Some(name)) => Some(name),
        _ => None,
    };
    let mut identity = BTreeMap::new();
    if let Some(job) = job {
        identity.insert("job".to_owned(), job);
    }
    // The instance id, else a stable identity of the resource, as /metrics names it.
    let id = instance(resource.iter().map(|(k, v)| (k, text(v))));
    identity.insert("instance".to_owned(), id);
    let (mut out, mut metadata) = (Vec::new(), Vec::new());
    let mut latest = 0i64;
    for metric in batch.metrics() {
        let family = metric.prometheus_name();
        let mut base = identity.clone();
        let scope = metric.scope();
        if !scope.name().is_empty() {
            base.insert("otel_scope_name".into(), scope.name().into());
        }
        if !scope.version().is_empty() {
            base.insert("otel_scope_version".into(), scope.version().into());
        }
        let kind = match metric.kind() {
            MetricKind::Sum { monotonic: true } => 1,
            MetricKind::Histogram => 3,
            _ => 2,
        };
        let help = metric.description().to_owned();
        metadata.push((kind, family.clone(), help, metric.unit().to_owned()));
        family_series(&metric, &family, &base, &mut out, &mut latest);
    }
    // target_info: the resource, less what job and instance already say.
    let mut info: Vec<(&str, String)> = vec![("__name__", "target_info".to_owned())];
    let names: Vec<(String, String)> = resource
        .iter()
        .filter(|(k, _)| {
            !matches!(
                *k,
                "service.name" | "service.namespace" | "service.instance.id"
            )
        })
        .map(|(k, v)| (label_name(k), text(v)))
        .collect();
    info.extend(names.iter().map(|(k, v)| (k.as_str(), v.clone())));
    if !out.is_empty() {
        out.push(Series {
            labels: labelled(&identity, &info),
            value: 1.0,
            timestamp_ms: latest,
        });
        metadata.push((
            2,
            "target_info".into(),
            "Target metadata".into(),
            String::new(),
        ));
    }
    (out, metadata)
}

/// The series of one metric family.
fn family_series(
    metric: &MetricRef<'_>,
    family: &str,
    base: &BTreeMap<String, String>,
    out: &mut Vec<Series>,
    latest: &mut i64,
) {
    let ms = |nanos: u64| i64::try_from(nanos / 1_000_000).unwrap_or(i64::MAX);
    let attrs = |a: wasmtel_guest::Attributes<'_>| -> Vec<(String, String)> {
        a.iter().map(|(k, v)| (label_name(k), text(v))).collect()
    };
    let mut push = |name: String,
                    own: &[(String, String)],
                    extra: Option<(&str, String)>,
                    value: f64,
                    t: i64| {
        let mut labels: Vec<(&str, String)> =
            own.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        labels.extend(extra);
        labels.push(("__name__", name));
        *latest = (*latest).max(t);
        out.push(Series {
            labels: labelled(base, &labels),
            value,
            timestamp_ms: t,
        });
    };
    for p in metric.numbers() {
        push(
            family.to_owned(),
            &attrs(p.attributes()),
            None,
            p.value,
            ms(p.time_unix_nano),
        );
    }
    for p in metric.histograms() {
        let (own, t) = (attrs(p.attributes()), ms(p.time_unix_nano));
        let mut cumulative = 0u64;
        for (i, n) in p.bucket_counts().iter().enumerate() {
            cumulative += n;
            let le = p
                .bounds()
                .get(i)
                .map_or_else(|| "+Inf".to_owned(), |b| format!("{b}"));
            push(
                format!("{family}_bucket"),
                &own,
                Some(("le", le)),
                cumulative as f64,
                t,
            );
        }
        if let Some(sum) = p.sum {
            push(format!("{family}_sum"), &own, None, sum, t);
        }
        push(format!("{family}_count"), &own, None, p.count as f64, t);
    }
}

/// Protobuf wire encoding, as much of it as a `WriteRequest` needs.
mod wire {
    pub(super) fn varint(buf: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            buf.push((v as u8) | 0x80);
            v >>= 7;
        }
        buf.push(v as u8);
    }

    pub(super) fn bytes(buf: &mut Vec<u8>, field: u32, b: &[u8]) {
        varint(buf, (u64::from(field) << 3) | 2);
        varint(buf, b.len() as u64);
        buf.extend_from_slice(b);
    }

    pub(super) fn double(buf: &mut Vec<u8>, field: u32, v: f64) {
        varint(buf, (u64::from(field) << 3) | 1);
        buf.extend_from_slice(&v.to_le_bytes());
    }

    pub(super) fn int(buf: &mut Vec<u8>, field: u32, v: u64) {
        varint(buf, u64::from(field) << 3);
        varint(buf, v);
    }
}

/// `WriteRequest { timeseries = 1; metadata = 3 }`, with `TimeSeries { labels = 1; samples = 2 }`,
/// `Label { name = 1; value = 2 }`, `Sample { value = 1; timestamp = 2 }` and
/// `MetricMetadata { type = 1; metric_family_name = 2; help = 4; unit = 5 }`.
pub fn write_request(series: &[Series], metadata: &[Metadata]) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut ts, mut inner) = (Vec::new(), Vec::new());
    for s in series {
        ts.clear();
        for (name, value) in &s.labels {
            inner.clear();
            wire::bytes(&mut inner, 1, name.as_bytes());
            wire::bytes(&mut inner, 2, value.as_bytes());
            wire::bytes(&mut ts, 1, &inner);
        }
        inner.clear();
        wire::double(&mut inner, 1, s.value);
        wire::int(&mut inner, 2, s.timestamp_ms as u64);
        wire::bytes(&mut ts, 2, &inner);
        wire::bytes(&mut out, 1, &ts);
    }
    for (kind, family, help, unit) in metadata {
        inner.clear();
        wire::int(&mut inner, 1, *kind);
        wire::bytes(&mut inner, 2, family.as_bytes());
        if !help.is_empty() {
            wire::bytes(&mut inner, 4, help.as_bytes());
        }
        if !unit.is_empty() {
            wire::bytes(&mut inner, 5, unit.as_bytes());
        }
        wire::bytes(&mut out, 3, &inner);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtel_guest::BatchBuilder;

    fn batch() -> MetricBatch {
        BatchBuilder::new()
            .resource(&[
                ("service.name", "ranker".into()),
                ("service.instance.id", "pod-7".into()),
                ("host.name", "gpu-1".into()),
            ])
            .times(0, 1_700_000_000_123_000_000)
            .counter(
                "ranked",
                "{item}",
                &[("gen_ai.request.model", "m1".into())],
                5.0,
            )
            .histogram("rank.duration", "s", &[], &[0.1, 1.0], &[1, 2, 0], 0.9)
            .metrics()
    }

    fn names(series: &[Series]) -> Vec<String> {
        series
            .iter()
            .map(|s| {
                let labels: Vec<String> =
                    s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!("{} {}", labels.join(","), s.value)
            })
            .collect()
    }

    #[test]
    fn points_become_series_named_as_prometheus_names_them() {
        let (series, metadata) = series(&batch());
        let id = "instance=pod-7";
        let scope = "otel_scope_name=test";
        assert_eq!(
            names(&series),
            [
                format!("__name__=ranked_total,gen_ai_request_model=m1,{id},job=ranker,{scope} 5"),
                format!("__name__=rank_duration_seconds_bucket,{id},job=ranker,le=0.1,{scope} 1"),
                format!("__name__=rank_duration_seconds_bucket,{id},job=ranker,le=1,{scope} 3"),
                format!("__name__=rank_duration_seconds_bucket,{id},job=ranker,le=+Inf,{scope} 3"),
                format!("__name__=rank_duration_seconds_sum,{id},job=ranker,{scope} 0.9"),
                format!("__name__=rank_duration_seconds_count,{id},job=ranker,{scope} 3"),
                format!("__name__=target_info,host_name=gpu-1,{id},job=ranker 1"),
            ]
        );
        assert!(series.iter().all(|s| s.timestamp_ms == 1_700_000_000_123));
        assert!(
            series
                .iter()
                .all(|s| s.labels.windows(2).all(|w| w[0].0 < w[1].0)),
            "sorted"
        );
        let kinds: Vec<(u64, &str)> = metadata.iter().map(|m| (m.0, m.1.as_str())).collect();
        assert_eq!(
            kinds,
            [
                (1, "ranked_total"),
                (3, "rank_duration_seconds"),
                (2, "target_info")
            ]
        );
    }

    #[test]
    fn requests_are_snappy_protobuf_split_by_max_series_and_classified_as_the_spec_says() {
        let config = Config::new([("max_series", "4")]);
        let (mut rw, _) = RemoteWrite::init(config).expect("valid");
        let out = rw.encode_metrics(&batch()).expect("encodes");
        assert_eq!(out.len(), 2, "7 series in requests of at most 4");
        let Outbound::Http(r) = &out[0] else {
            panic!("HTTP")
        };
        assert_eq!(r.path, "/api/v1/write");
        assert!(
            r.headers
                .contains(&("Content-Encoding".into(), "snappy".into()))
        );
        assert!(
            r.headers
                .contains(&("X-Prometheus-Remote-Write-Version".into(), "0.1.0".into()))
        );
        let raw = snap::raw::Decoder::new()
            .decompress_vec(&r.body)
            .expect("snappy");
        assert!(raw.windows(12).any(|w| w == b"ranked_total"));
        let answer = |status| {
            rw.classify(&Response {
                status,
                headers: vec![],
                body: b"out of order sample".to_vec(),
            })
        };
        assert_eq!(answer(204), Outcome::Success);
        assert_eq!(answer(429), Outcome::Retry(None));
        assert_eq!(answer(503), Outcome::Retry(None));
        assert_eq!(
            answer(400),
            Outcome::Reject("HTTP 400: out of order sample".into())
        );
        assert_eq!(
            RemoteWrite::init(Config::new([("path", "api")]))
                .err()
                .as_deref(),
            Some("config `path`: \"api\" must begin with / (or be empty: the endpoint as given)")
        );
        assert!(
            RemoteWrite::init(Config::new([("path", "")])).is_ok(),
            "the endpoint as given"
        );
    }
}
