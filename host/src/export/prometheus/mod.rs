//! Prometheus pull: text exposition format 0.0.4 or OpenMetrics 1.0, rendered straight from aggregator state.

mod labels;
mod negotiate;
pub mod routes;

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::mem::Discriminant;

use wasmtel_naming::{self as naming, Shape};

use crate::metrics::exemplar::Exemplar;
use crate::metrics::reader::{self, PointValue, Reader};
use crate::metrics::{Instrument, Registry};
use crate::model::metric::InstrumentKind;
use crate::model::resource::Resource;
use labels::Labels;
pub use negotiate::Compression;

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The content type of OpenMetrics text.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The two text formats `/metrics` speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text format 0.0.4.
    Prometheus,
    /// OpenMetrics 1.0 text.
    OpenMetrics,
}

impl Format {
    /// The format an `Accept` header prefers: OpenMetrics when its q-value is higher than
    /// plain text's, else Prometheus text.
    pub fn negotiate(accept: Option<&str>) -> Self {
        let Some(accept) = accept else {
            return Self::Prometheus;
        };
        let openmetrics = negotiate::media_quality(accept, "application/openmetrics-text");
        if openmetrics > negotiate::media_quality(accept, "text/plain") {
            Self::OpenMetrics
        } else {
            Self::Prometheus
        }
    }

    /// The response's content type.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Prometheus => CONTENT_TYPE,
            Self::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
        }
    }
}

/// Renders every instrument with at least one series, then `target_info`, in text format 0.0.4.
pub fn render(registry: &Registry, resource: &Resource) -> String {
    render_as(Format::Prometheus, registry, resource)
}

/// Renders `target_info`, then every instrument with at least one series, in `format`.
pub fn render_as(format: Format, registry: &Registry, resource: &Resource) -> String {
    render_all(format, &[(resource, registry)])
}

/// Renders every producer: one `target_info` sample per resource, then each metric family once,
/// with the series of every producer that has it. The first producer is the host itself; the
/// series of the others carry `job` and `instance` from their resource's `service.*`
/// attributes, as OpenTelemetry's Prometheus compatibility rules say.
pub fn render_all(format: Format, producers: &[(&Resource, &Registry)]) -> String {
    let mut out = String::with_capacity(64 * 1024);
    out.push_str(match format {
        Format::Prometheus => "# HELP target_info Target metadata\n# TYPE target_info gauge\n",
        Format::OpenMetrics => "# HELP target Target metadata\n# TYPE target info\n",
    });
    let mut labels = Labels::default();
    // Families by name, type and shape, in the order they first appear.
    let mut families: Vec<(Family, Vec<Member>)> = Vec::new();
    let mut index: HashMap<(String, &'static str, Discriminant<reader::Shape>), usize> =
        HashMap::new();
    for (i, (resource, registry)) in producers.iter().enumerate() {
        registry.observe();
        let identity = if i == 0 {
            Vec::new()
        } else {
            identity(resource)
        };
        let pairs: Vec<(&str, &str)> = identity.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let target = labels.render(resource.attributes(), &labels::fixed(&pairs));
        sample(&mut out, "target_info", target, 1.0, None);
        for instrument in registry.instruments() {
            if !shown(&instrument) {
                continue;
            }
            let family = Family::of(instrument.descriptor());
            let scope = &instrument.descriptor().scope;
            let mut tail = vec![
                ("otel_scope_name", &*scope.name),
                ("otel_scope_version", &*scope.version),
                ("otel_scope_schema_url", &*scope.schema_url),
            ];
            tail.extend(pairs.iter().copied());
            let member = (instrument.clone(), labels::fixed(&tail));
            let key = (
                family.name.clone(),
                family.type_name,
                std::mem::discriminant(&reader::Shape::of(&instrument)),
            );
            match index.get(&key) {
                Some(&at) => families[at].1.push(member),
                None => {
                    index.insert(key, families.len());
                    families.push((family, vec![member]));
                }
            }
        }
    }
    let mut claimed: HashSet<String> = ["target_info", "target"].map(String::from).into();
    for (family, members) in &families {
        let name = family.unclashed(&mut claimed);
        render_family(
            &mut out,
            &mut labels,
            &name,
            family.type_name,
            members,
            format,
        );
    }
    if format == Format::OpenMetrics {
        out.push_str("# EOF\n");
    }
    out
}

/// A received resource's `job` (`service.namespace/service.name`) and `instance`
/// (`service.instance.id`, else a stable identity of the resource, so that two senders
/// without one never expose the same labels).
fn identity(resource: &Resource) -> Vec<(&'static str, String)> {
    let name = resource.get("service.name").unwrap_or_default();
    let job = match resource.get("service.namespace") {
        Some(ns) if !ns.is_empty() => format!("{ns}/{name}"),
        _ => name,
    };
    let pairs = resource
        .attributes()
        .iter()
        .map(|(k, v)| (k, v.to_string()));
    vec![("job", job), ("instance", wasmtel_naming::instance(pairs))]
}

/// An instrument in a family, with the labels all its series share.
type Member = (std::sync::Arc<Instrument>, String);

/// How an instrument is exposed: its sample name and its family's type.
struct Family {
    name: String,
    type_name: &'static str,
}

impl Family {
    /// Every name this family would use under `name` in either text format: its metadata
    /// names and its sample names.
    fn names(&self, name: &str) -> Vec<String> {
        match self.type_name {
            "histogram" => ["", "_bucket", "_sum", "_count"]
                .map(|suffix| format!("{name}{suffix}"))
                .into(),
            "summary" => ["", "_sum", "_count"]
                .map(|suffix| format!("{name}{suffix}"))
                .into(),
            "counter" => vec![
                name.to_owned(),
                name.strip_suffix("_total").unwrap_or(name).to_owned(),
            ],
            _ => vec![name.to_owned()],
        }
    }

    /// The family's name, or, when an earlier family took any name it would use, the first of
    /// `<name>_2`, `<name>_3`, … that is free (a counter keeps `_total` last); the names it
    /// uses are then `claimed`.
    fn unclashed(&self, claimed: &mut HashSet<String>) -> String {
        let (stem, tail) = match self.name.strip_suffix("_total") {
            Some(stem) if self.type_name == "counter" => (stem, "_total"),
            _ => (self.name.as_str(), ""),
        };
        for n in 0.. {
            let candidate = match n {
                0 => self.name.clone(),
                n => format!("{stem}_{}{tail}", n + 1),
            };
            let names = self.names(&candidate);
            if names.iter().all(|n| !claimed.contains(n)) {
                claimed.extend(names);
                return candidate;
            }
        }
        self.name.clone()
    }

    fn of(d: &crate::metrics::Descriptor) -> Self {
        let shape = match d.kind {
            k if k.is_monotonic() => Shape::Counter,
            InstrumentKind::Gauge | InstrumentKind::ObservableGauge => Shape::Gauge,
            _ => Shape::Other,
        };
        let type_name = match d.kind {
            k if k.is_monotonic() => "counter",
            InstrumentKind::Histogram => "histogram",
            InstrumentKind::Summary => "summary",
            _ => "gauge",
        };
        Self {
            name: naming::metric_name(&d.name, &d.unit, shape),
            type_name,
        }
    }
}

/// Whether an instrument has series the text formats can show (they have no exponential histograms).
fn shown(instrument: &Instrument) -> bool {
    reader::Shape::of(instrument) != reader::Shape::ExponentialHistogram && !instrument.is_empty()
}

/// Renders one family under `name`: its header once (from the first member), then the series
/// of every member.
fn render_family(
    out: &mut String,
    labels: &mut Labels,
    name: &str,
    type_name: &str,
    members: &[Member],
    format: Format,
) {
    let Some((first, _)) = members.first() else {
        return;
    };
    // OpenMetrics names a counter's family without the `_total` of its sample.
    let family = match format {
        Format::OpenMetrics if type_name == "counter" => {
            name.strip_suffix("_total").unwrap_or(name)
        }
        _ => name,
    };
    let _ = writeln!(
        out,
        "# HELP {family} {}",
        escape_help(&first.descriptor().description, format)
    );
    let _ = writeln!(out, "# TYPE {family} {type_name}");
    for (instrument, tail) in members {
        render_series(out, labels, instrument, name, type_name, tail, format);
    }
}

/// Renders the series of one instrument under the sample name `name`.
fn render_series(
    out: &mut String,
    labels: &mut Labels,
    instrument: &Instrument,
    name: &str,
    type_name: &str,
    scope: &str,
    format: Format,
) {
    // Only OpenMetrics has exemplars, and only on counters and histogram buckets.
    let exemplars = |series_exemplars: &dyn Fn() -> Vec<(usize, Exemplar)>| match format {
        Format::OpenMetrics => series_exemplars(),
        Format::Prometheus => Vec::new(),
    };
    let mut reader = Reader::new(None);
    match reader::Shape::of(instrument) {
        reader::Shape::Sum { .. } | reader::Shape::Gauge => {
            let counter = type_name == "counter";
            reader.read(instrument, |p| {
                let PointValue::Number(value) = p.value else {
                    return;
                };
                let l = labels.render(p.attributes, scope);
                let e = if counter {
                    exemplars(&|| p.exemplars())
                } else {
                    Vec::new()
                };
                sample(out, name, l, value, e.first().map(|(_, e)| e));
            });
        }
        reader::Shape::Histogram => {
            let bucket = format!("{name}_bucket");
            let (sum, count) = (format!("{name}_sum"), format!("{name}_count"));
            // Each bucket's `le="…"}`, formatted once per instrument on its first series.
            let mut les: Vec<String> = Vec::new();
            let mut head = String::new();
            reader.read(instrument, |point| {
                let PointValue::Histogram(p, bounds) = &point.value else {
                    return;
                };
                if les.is_empty() {
                    les = bounds
                        .iter()
                        .chain([&f64::INFINITY])
                        .map(|b| {
                            let mut le = String::from("le=\"");
                            write_value(&mut le, *b);
                            le.push_str("\"}");
                            le
                        })
                        .collect();
                }
                let l = labels.render(point.attributes, scope);
                let kept = exemplars(&|| point.exemplars());
                // `name_bucket{labels,` is the same on every bucket line of the series.
                open_labels(&mut head, &bucket, l);
                // Room for the series' lines up front: growing a large buffer copies it again.
                out.reserve((les.len() + 2) * (head.len() + 48));
                let mut cumulative = 0u64;
                for (i, (n, le)) in p.bucket_counts.iter().zip(&les).enumerate() {
                    cumulative += n;
                    let e = kept.iter().find(|(slot, _)| *slot == i).map(|(_, e)| e);
                    out.push_str(&head);
                    out.push_str(le);
                    finish(out, Sample::Count(cumulative), e);
                }
                sample(out, &sum, l, p.sum, None);
                sample(out, &count, l, p.count as f64, None);
            });
        }
        reader::Shape::Summary => {
            let (sum, count) = (format!("{name}_sum"), format!("{name}_count"));
            let mut head = String::new();
            reader.read(instrument, |point| {
                let PointValue::Summary(p) = &point.value else {
                    return;
                };
                let l = labels.render(point.attributes, scope);
                open_labels(&mut head, name, l);
                for (quantile, value) in &p.quantiles {
                    out.push_str(&head);
                    out.push_str("quantile=\"");
                    write_value(out, *quantile);
                    out.push_str("\"}");
                    finish(out, Sample::Float(*value), None);
                }
                sample(out, &sum, l, p.sum, None);
                sample(out, &count, l, p.count as f64, None);
            });
        }
        // Text format 0.0.4 has no exponential histograms: they are exported over OTLP only.
        reader::Shape::ExponentialHistogram => {}
    }
}

/// `name{labels,` (or `name{` without labels) into `head`: what every line of a series that
/// adds one more label (`le`, `quantile`) starts with.
fn open_labels(head: &mut String, name: &str, labels: &str) {
    head.clear();
    head.push_str(name);
    head.push('{');
    head.push_str(labels);
    if !labels.is_empty() {
        head.push(',');
    }
}

/// The exposition `text` with every metric name (in samples and in `# HELP`/`# TYPE` lines)
/// prefixed by `prefix`.
pub fn prefixed(text: &str, prefix: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 16);
    for line in text.lines() {
        match ["# HELP ", "# TYPE "]
            .into_iter()
            .find(|m| line.starts_with(m))
        {
            Some(marker) => {
                out.push_str(marker);
                out.push_str(prefix);
                out.push_str(&line[marker.len()..]);
            }
            None if line.starts_with('#') || line.is_empty() => out.push_str(line),
            None => {
                out.push_str(prefix);
                out.push_str(line);
            }
        }
        out.push('\n');
    }
    out
}

/// One sample line: `name{labels} value`, then ` # {trace_id="…",span_id="…"} value
/// timestamp` when it has an exemplar.
fn sample(out: &mut String, name: &str, labels: &str, value: f64, exemplar: Option<&Exemplar>) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        out.push_str(labels);
        out.push('}');
    }
    finish(out, Sample::Float(value), exemplar);
}

/// A sample's value: counts are written as integers without a detour through `f64`.
#[derive(Clone, Copy)]
enum Sample {
    Float(f64),
    Count(u64),
}

/// The end of a sample line: ` value`, the exemplar if any, and the newline.
fn finish(out: &mut String, value: Sample, exemplar: Option<&Exemplar>) {
    out.push(' ');
    match value {
        Sample::Float(v) => write_value(out, v),
        Sample::Count(n) => out.push_str(itoa::Buffer::new().format(n)),
    }
    if let Some(e) = exemplar {
        out.push_str(" # {");
        if let Some(trace) = &e.trace {
            out.push_str("trace_id=\"");
            out.push_str(&const_hex::encode(trace.trace_id));
            out.push_str("\",span_id=\"");
            out.push_str(&const_hex::encode(trace.span_id));
            out.push('"');
        }
        out.push_str("} ");
        write_value(out, e.value);
        let nanos = e.time_unix_nano;
        let _ = write!(
            out,
            " {}.{:09}",
            nanos / 1_000_000_000,
            nanos % 1_000_000_000
        );
    }
    out.push('\n');
}

/// Escapes HELP text: backslash and newline, and in OpenMetrics also the double quote.
fn escape_help(text: &str, format: Format) -> String {
    let escaped = text.replace('\\', "\\\\").replace('\n', "\\n");
    match format {
        Format::Prometheus => escaped,
        Format::OpenMetrics => escaped.replace('"', "\\\""),
    }
}

/// Writes a sample value: integers plainly, other numbers in shortest round-trip form.
pub fn write_value(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        out.push_str(itoa::Buffer::new().format(v as i64));
    } else {
        out.push_str(ryu::Buffer::new().format_finite(v));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ResourceConfig;
    use crate::metrics::Descriptor;
    use crate::model::attributes::ValueRef;

    /// Scope `name` at version 1.2, as a received scope would be.
    fn versioned(name: &str) -> crate::model::metric::Scope {
        crate::model::metric::Scope {
            version: std::sync::Arc::from("1.2"),
            ..crate::model::metric::Scope::from(name)
        }
    }

    #[test]
    fn a_prefix_goes_on_every_metric_name_and_nowhere_else() {
        let text = "# HELP req_total Requests.\n# TYPE req_total counter\nreq_total{a=\"# HELP x\"} 2\n# EOF\n";
        assert_eq!(
            prefixed(text, "edge_"),
            "# HELP edge_req_total Requests.\n# TYPE edge_req_total counter\nedge_req_total{a=\"# HELP x\"} 2\n# EOF\n"
        );
    }

    #[test]
    fn producers_share_families_and_received_series_carry_job_and_instance() {
        use crate::model::attributes::{AttributeSet, Value};
        use std::sync::Arc;
        let d = |name: &str, kind, scope: &str| Descriptor {
            name: name.into(),
            unit: String::new(),
            description: "Requests.".into(),
            kind,
            scope: crate::model::metric::Scope {
                schema_url: Arc::from(if scope == "app.meter" {
                    "https://opentelemetry.io/schemas/1.26.0"
                } else {
                    ""
                }),
                ..versioned(scope)
            },
        };
        let own = Registry::new(10);
        own.instrument(d("req", InstrumentKind::Counter, "s"), &[])
            .expect("c")
            .record(&[], 2.0);
        let app = Registry::new(10);
        app.instrument(d("req", InstrumentKind::Counter, "app.meter"), &[])
            .expect("c")
            .record(&[("route", ValueRef::Str("/"))], 5.0);
        // Same exposed name, another type: a family of its own, renamed rather than breaking the family.
        app.instrument(d("req_total", InstrumentKind::Gauge, "other"), &[])
            .expect("g")
            .record(&[], 9.0);
        let pair = |k: &str, v: &str| (Arc::from(k), Value::Str(Arc::from(v)));
        let app_resource = Resource::from_attributes(AttributeSet::from_pairs(vec![
            pair("service.name", "checkout"),
            pair("service.namespace", "shop"),
            pair("service.instance.id", "pod-1"),
        ]));
        let host_resource = Resource::from_attributes(AttributeSet::from_pairs(vec![pair(
            "service.name",
            "wasmtel",
        )]));
        let text = render_all(
            Format::Prometheus,
            &[(&host_resource, &own), (&app_resource, &app)],
        );
        assert_eq!(
            text,
            "# HELP target_info Target metadata\n# TYPE target_info gauge\n\
             target_info{service_name=\"wasmtel\"} 1\n\
             target_info{service_instance_id=\"pod-1\",service_name=\"checkout\",service_namespace=\"shop\",job=\"shop/checkout\",instance=\"pod-1\"} 1\n\
             # HELP req_total Requests.\n# TYPE req_total counter\n\
             req_total{otel_scope_name=\"s\",otel_scope_version=\"1.2\"} 2\n\
             req_total{route=\"/\",otel_scope_name=\"app.meter\",otel_scope_version=\"1.2\",otel_scope_schema_url=\"https://opentelemetry.io/schemas/1.26.0\",job=\"shop/checkout\",instance=\"pod-1\"} 5\n\
             # HELP req_total_2 Requests.\n# TYPE req_total_2 gauge\n\
             req_total_2{otel_scope_name=\"other\",otel_scope_version=\"1.2\",job=\"shop/checkout\",instance=\"pod-1\"} 9\n"
        );
    }

    #[test]
    fn renders_counters_gauges_and_histograms() {
        let registry = Registry::new(10);
        let d = |name: &str, unit: &str, kind| Descriptor {
            name: name.into(),
            unit: unit.into(),
            description: "Line one\nline \\two".into(),
            kind,
            scope: versioned("s"),
        };
        let c = registry
            .instrument(d("req", "{request}", InstrumentKind::Counter), &[])
            .expect("c");
        let h = registry
            .instrument(d("lat", "s", InstrumentKind::Histogram), &[0.5, 1.0])
            .expect("h");
        registry
            .instrument(d("unused", "", InstrumentKind::Gauge), &[])
            .expect("g");
        c.record(&[("a.b", ValueRef::Str("q\"\n\\"))], 2.0);
        h.record(&[], 0.25);
        h.record(&[], 0.75);
        h.record(&[], 3.0);
        let text = render(
            &registry,
            &crate::sources::resource::detect(&ResourceConfig::default()),
        );
        let body = text
            .split_once("# HELP req")
            .map(|(_, b)| b)
            .expect("req family");
        assert_eq!(
            body,
            "_total Line one\\nline \\\\two\n# TYPE req_total counter\n\
             req_total{a_b=\"q\\\"\\n\\\\\",otel_scope_name=\"s\",otel_scope_version=\"1.2\"} 2\n\
             # HELP lat_seconds Line one\\nline \\\\two\n# TYPE lat_seconds histogram\n\
             lat_seconds_bucket{otel_scope_name=\"s\",otel_scope_version=\"1.2\",le=\"0.5\"} 1\n\
             lat_seconds_bucket{otel_scope_name=\"s\",otel_scope_version=\"1.2\",le=\"1\"} 2\n\
             lat_seconds_bucket{otel_scope_name=\"s\",otel_scope_version=\"1.2\",le=\"+Inf\"} 3\n\
             lat_seconds_sum{otel_scope_name=\"s\",otel_scope_version=\"1.2\"} 4\n\
             lat_seconds_count{otel_scope_name=\"s\",otel_scope_version=\"1.2\"} 3\n"
        );
        assert!(text.starts_with(
            "# HELP target_info Target metadata\n# TYPE target_info gauge\ntarget_info{"
        ));
        assert!(text.contains("service_name=\"wasmtel\""));
    }

    #[test]
    fn each_scrape_runs_the_callbacks_and_types_observable_instruments() {
        let registry = Registry::new(10);
        let d = |name: &str, kind| Descriptor {
            name: name.into(),
            unit: "By".into(),
            description: String::new(),
            kind,
            scope: versioned("s"),
        };
        let sent = registry
            .instrument(d("net.sent", InstrumentKind::ObservableCounter), &[])
            .expect("counter");
        let used = registry
            .instrument(d("mem.used", InstrumentKind::ObservableUpDownCounter), &[])
            .expect("up-down");
        let scrapes = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let n = scrapes;
        registry
            .register_callback(
                sent,
                Box::new(move |o| {
                    let k = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                    o.observe(&[], f64::from(k) * 100.0);
                }),
            )
            .expect("observable");
        registry
            .register_callback(used, Box::new(|o| o.observe(&[], 4096.0)))
            .expect("observable");
        let resource = crate::sources::resource::detect(&ResourceConfig::default());
        render(&registry, &resource);
        let text = render(&registry, &resource);
        assert!(
            text.contains("# TYPE net_sent_bytes_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "\nnet_sent_bytes_total{otel_scope_name=\"s\",otel_scope_version=\"1.2\"} 200\n"
            ),
            "{text}"
        );
        assert!(text.contains("# TYPE mem_used_bytes gauge\n"), "{text}");
        assert!(
            text.contains(
                "\nmem_used_bytes{otel_scope_name=\"s\",otel_scope_version=\"1.2\"} 4096\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn openmetrics_names_counter_families_types_target_as_info_and_ends_with_eof() {
        let registry = Registry::new(10);
        let c = registry
            .instrument(
                Descriptor {
                    name: "req".into(),
                    unit: "{request}".into(),
                    description: "Say \"hi\"".into(),
                    kind: InstrumentKind::Counter,
                    scope: versioned("s"),
                },
                &[],
            )
            .expect("c");
        c.record(&[], 2.0);
        let resource = crate::sources::resource::detect(&ResourceConfig::default());
        let text = render_as(Format::OpenMetrics, &registry, &resource);
        assert!(
            text.starts_with("# HELP target Target metadata\n# TYPE target info\ntarget_info{")
        );
        assert!(
            text.contains("# HELP req Say \\\"hi\\\"\n# TYPE req counter\nreq_total{otel_scope_name=\"s\",otel_scope_version=\"1.2\"} 2\n"),
            "{text}"
        );
        assert!(text.ends_with("\n# EOF\n"));
        assert_eq!(text.matches("# EOF").count(), 1);
        assert_eq!(
            Format::negotiate(Some(
                "application/openmetrics-text;version=1.0.0,text/plain;q=0.5"
            )),
            Format::OpenMetrics
        );
        assert_eq!(Format::negotiate(Some("text/plain")), Format::Prometheus);
        assert_eq!(Format::negotiate(None), Format::Prometheus);
        // Named but not preferred: plain text.
        assert_eq!(
            Format::negotiate(Some(
                "application/openmetrics-text;version=1.0.0;q=0.2,text/plain;version=0.0.4;q=0.9"
            )),
            Format::Prometheus
        );
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text;q=0.5,*/*;q=0.1")),
            Format::OpenMetrics
        );
    }

    #[test]
    fn openmetrics_shows_exemplars_on_counters_and_the_buckets_they_fell_in() {
        use crate::model::event::TraceContext;
        let registry = Registry::new(10);
        let d = |name: &str, kind| Descriptor {
            name: name.into(),
            unit: String::new(),
            description: String::new(),
            kind,
            scope: versioned("s"),
        };
        let c = registry
            .instrument(d("req", InstrumentKind::Counter), &[])
            .expect("c");
        let h = registry
            .instrument(d("lat", InstrumentKind::Histogram), &[0.5, 1.0])
            .expect("h");
        let g = registry
            .instrument(d("temp", InstrumentKind::Gauge), &[])
            .expect("g");
        let trace = Some(TraceContext {
            trace_id: [0xab; 16],
            span_id: [0x01; 8],
        });
        let before = crate::clock::unix_nanos() as f64 / 1e9;
        c.record_traced(&[], 2.0, trace);
        h.record(&[], 0.25); // not traced: not an exemplar under trace_based
        h.record_traced(&[], 0.75, trace);
        g.record_traced(&[], 40.0, trace);
        let resource = crate::sources::resource::detect(&ResourceConfig::default());
        let text = render_as(Format::OpenMetrics, &registry, &resource);
        let exemplar_of = |prefix: &str| -> Option<String> {
            let line = text.lines().find(|l| l.starts_with(prefix))?;
            line.split_once(" # ").map(|(_, e)| e.to_owned())
        };
        let ids = format!(
            "{{trace_id=\"{}\",span_id=\"{}\"}}",
            "ab".repeat(16),
            "01".repeat(8)
        );
        let counter = exemplar_of("req_total{").expect("counter exemplar");
        let (labels_value, time) = counter.rsplit_once(' ').expect("timestamp");
        assert_eq!(labels_value, format!("{ids} 2"));
        let time: f64 = time.parse().expect("seconds");
        assert!(time >= before && time < before + 60.0, "{time}");
        assert_eq!(
            exemplar_of("lat_bucket{otel_scope_name=\"s\",otel_scope_version=\"1.2\",le=\"0.5\"}"),
            None
        );
        let bucket =
            exemplar_of("lat_bucket{otel_scope_name=\"s\",otel_scope_version=\"1.2\",le=\"1\"}")
                .expect("bucket");
        assert!(bucket.starts_with(&format!("{ids} 0.75 ")), "{bucket}");
        assert_eq!(
            exemplar_of("lat_bucket{otel_scope_name=\"s\",otel_scope_version=\"1.2\",le=\"+Inf\"}"),
            None
        );
        assert_eq!(
            exemplar_of("temp{"),
            None,
            "OpenMetrics gauges have no exemplars"
        );
        let plain = render(&registry, &resource);
        assert!(!plain.contains(" # "), "text format 0.0.4 has no exemplars");
    }

    #[test]
    fn values_are_formatted_for_prometheus() {
        let cases = [
            (1.0, "1"),
            (0.1, "0.1"),
            (-2.5, "-2.5"),
            (1e300, "1e300"),
            (f64::INFINITY, "+Inf"),
            (f64::NAN, "NaN"),
        ];
        for (v, want) in cases {
            let mut s = String::new();
            write_value(&mut s, v);
            assert_eq!(s, want);
        }
    }
}
