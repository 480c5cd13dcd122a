//! A scraped exposition as an OTLP metrics request, as OpenTelemetry's Prometheus compatibility
//! specification maps it: the target's `job` and `instance` (and `target_info`'s labels) make
//! the resource; counters become monotonic cumulative sums named without `_total`, gauges and
//! untyped series gauges, `info` and `stateset` non-monotonic sums, classic histograms and
//! summaries their OTLP kinds; a series' start time is its `_created`, else when it was first
//! seen; exemplars keep their trace and span ids.
//!
//! The request then takes the path of a pushed one (views, cardinality limits, tenancy, every
//! exporter), so a scraped series behaves as a pushed series of the same shape.

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher as _;
use std::sync::Arc;

use hashbrown::HashTable;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Exemplar as OtlpExemplar, Gauge, Histogram, HistogramDataPoint, Metric,
    NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary, SummaryDataPoint, exemplar,
    metric::Data, number_data_point, summary_data_point::ValueAtQuantile,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

use super::exposition::{Exemplar, Kind, Labels, Line, ParseError, Sample};

/// The scope scraped metrics are recorded under.
pub const SCOPE: &str = "wasmtel.scrape";

/// One target's identity: what makes its resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The `job` label (`service.name`).
    pub job: String,
    /// The `instance` label (`service.instance.id`), `host:port`.
    pub instance: String,
    /// More resource attributes (a discovered pod's `k8s.*`, configured extra labels).
    pub attributes: Vec<(String, String)>,
}

/// What one scrape read: the request, and how many samples the body held.
#[derive(Debug, Default)]
pub struct Scraped {
    /// The request (one resource).
    pub request: ExportMetricsServiceRequest,
    /// Samples in the body.
    pub samples: usize,
    /// Series in the request (a histogram or summary is one series).
    pub series: usize,
    /// Of those, the ones the last scrape did not have.
    pub added: usize,
}

/// How a target's samples are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Keep a scraped `job` or `instance` label as it is (else `exported_job`/`exported_instance`).
    pub honor_labels: bool,
    /// Keep a sample's own timestamp (else the scrape's time).
    pub honor_timestamps: bool,
    /// Labels one series may have; more refuse the scrape (0: no limit).
    pub label_limit: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            honor_labels: false,
            honor_timestamps: true,
            label_limit: 0,
        }
    }
}

/// Why a scrape's body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// A line is not valid.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// A series has more labels than `label_limit`.
    #[error("a series of `{0}` has more labels than label_limit allows")]
    Labels(String),
}

/// Translates one target's scrapes, remembering each series of the last scrape (when it was
/// first seen, and its shape): a series missing from the next scrape ends.
#[derive(Debug, Default)]
pub struct Translator {
    options: Options,
    /// Every series of the last scrape, by a hash of its family name and labels.
    known: HashTable<Known>,
    hasher: foldhash::fast::RandomState,
    /// Which scrape marked a series seen last.
    generation: u64,
    /// Series this scrape has that the last one did not.
    added: usize,
    /// The bounds a histogram series had last, shared by the series that have the same.
    bounds: Option<Arc<[f64]>>,
}

/// A series the last scrape had: its identity, what ending it takes (its kind, a histogram's
/// bounds), when it was first seen, and the scrape that saw it last.
#[derive(Debug)]
struct Known {
    hash: u64,
    /// Its family name and labels, as [`SeriesId`] writes them.
    id: SeriesId,
    kind: Kind,
    bounds: Option<Arc<[f64]>>,
    first_seen: u64,
    seen: u64,
}

/// A series' family name and labels in one allocation: each string after its length (four
/// bytes, little-endian), the name first, then each label's name and value.
#[derive(Debug, Default)]
struct SeriesId(Box<[u8]>);

impl SeriesId {
    fn new(name: &str, labels: &Labels<'_>) -> Self {
        let mut bytes = Vec::new();
        for part in std::iter::once(name).chain(labels.iter().flat_map(|(k, v)| [*k, v.as_ref()])) {
            bytes.extend((part.len() as u32).to_le_bytes());
            bytes.extend(part.as_bytes());
        }
        Self(bytes.into_boxed_slice())
    }

    /// Its strings in order: the name, then each label's name and value.
    fn parts(&self) -> impl Iterator<Item = &str> {
        let mut rest = &self.0[..];
        std::iter::from_fn(move || {
            let (len, tail) = rest.split_first_chunk::<4>()?;
            let (part, tail) = tail.split_at(u32::from_le_bytes(*len) as usize);
            rest = tail;
            std::str::from_utf8(part).ok()
        })
    }

    /// Whether it is the series `labels` of family `name`.
    fn is(&self, name: &str, labels: &Labels<'_>) -> bool {
        let mut parts = self.parts();
        parts.next() == Some(name)
            && labels
                .iter()
                .all(|(k, v)| parts.next() == Some(*k) && parts.next() == Some(v.as_ref()))
            && parts.next().is_none()
    }

    /// The family name and the labels.
    fn split(&self) -> (String, Vec<(String, String)>) {
        let mut parts = self.parts();
        let name = parts.next().unwrap_or_default().to_owned();
        let mut labels = Vec::new();
        while let (Some(k), Some(v)) = (parts.next(), parts.next()) {
            labels.push((k.to_owned(), v.to_owned()));
        }
        (name, labels)
    }
}

/// A family being gathered: its name, kind, unit, help, and series in the order they came.
#[derive(Debug)]
struct Family<'a> {
    name: &'a str,
    kind: Kind,
    unit: String,
    help: String,
    series: Vec<Series<'a>>,
    /// Positions in `series`, by a hash of the labels.
    index: HashTable<usize>,
}

/// What the samples of one series said, with its labels (sorted by name; `le` or `quantile`
/// taken out).
#[derive(Debug, Default)]
struct Series<'a> {
    labels: Labels<'a>,
    value: Option<f64>,
    created: Option<f64>,
    count: Option<f64>,
    sum: Option<f64>,
    /// Histogram buckets (upper bound, cumulative count) or summary quantiles.
    points: Vec<(f64, f64)>,
    time_ms: Option<i64>,
    exemplars: Vec<OtlpExemplar>,
}

/// The families of one scrape, by name.
#[derive(Debug, Default)]
struct Families<'a> {
    list: Vec<Family<'a>>,
    by_name: HashMap<&'a str, usize, foldhash::fast::RandomState>,
    hasher: foldhash::fast::RandomState,
    /// The family of the previous sample: the samples of a family come together.
    last: Option<usize>,
}

/// The suffixes a sample of a family may carry, longest first.
const SUFFIXES: &[&str] = &[
    "_bucket", "_count", "_sum", "_created", "_total", "_info", "_gcount", "_gsum",
];

impl<'a> Families<'a> {
    /// The family named `name`, made of `kind` when new.
    fn family(&mut self, name: &'a str, kind: Kind) -> usize {
        if let Some(&at) = self.by_name.get(name) {
            return at;
        }
        self.list.push(Family {
            name,
            kind,
            unit: String::new(),
            help: String::new(),
            series: Vec::new(),
            index: HashTable::new(),
        });
        self.by_name.insert(name, self.list.len() - 1);
        self.list.len() - 1
    }

    /// The declared family a sample named `name` belongs to, with the suffix it carries: the
    /// family whose name is the sample's less a suffix, else a family of its own name (unknown).
    fn of(&mut self, name: &'a str) -> (usize, &'static str) {
        let declared = |families: &Self, at: usize| {
            let family = families.list[at].name;
            match name.strip_prefix(family)? {
                "" => Some(""),
                rest => SUFFIXES.iter().find(|s| **s == rest).copied(),
            }
        };
        if let Some(at) = self.last
            && let Some(suffix) = declared(self, at)
        {
            return (at, suffix);
        }
        let found = SUFFIXES.iter().find_map(|suffix| {
            let base = name.strip_suffix(suffix)?;
            self.by_name.get(base).map(|&at| (at, *suffix))
        });
        let (at, suffix) = found.unwrap_or_else(|| (self.family(name, Kind::Unknown), ""));
        self.last = Some(at);
        (at, suffix)
    }

    /// Adds one sample to the family it belongs to.
    fn gather(&mut self, sample: Sample<'a>, options: Options) {
        let (at, suffix) = self.of(sample.name);
        let kind = self.list[at].kind;
        let mut labels = sample.labels;
        if !options.honor_labels {
            for (name, _) in &mut labels {
                match *name {
                    "job" => *name = "exported_job",
                    "instance" => *name = "exported_instance",
                    _ => {}
                }
            }
        }
        labels.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let special = match kind {
            Kind::Histogram if suffix == "_bucket" => "le",
            Kind::Summary if suffix.is_empty() => "quantile",
            _ => "",
        };
        let bound = labels
            .iter()
            .position(|(k, _)| *k == special)
            .map(|at| labels.remove(at).1);
        let hash = self.hasher.hash_one(&labels);
        let family = &mut self.list[at];
        let found = family
            .index
            .find(hash, |&i| family.series[i].labels == labels)
            .copied();
        let series = match found {
            Some(i) => &mut family.series[i],
            None => {
                let i = family.series.len();
                family.series.push(Series {
                    labels,
                    ..Series::default()
                });
                let list = &family.series;
                family
                    .index
                    .insert_unique(hash, i, |&j| self.hasher.hash_one(&list[j].labels));
                &mut family.series[i]
            }
        };
        if options.honor_timestamps {
            series.time_ms = sample.timestamp_ms.or(series.time_ms);
        }
        if let Some(e) = &sample.exemplar {
            series.exemplars.push(exemplar_of(e));
        }
        match (suffix, bound) {
            ("_created", _) => series.created = Some(sample.value),
            ("_count" | "_gcount", _) => series.count = Some(sample.value),
            ("_sum" | "_gsum", _) => series.sum = Some(sample.value),
            (_, Some(bound)) => {
                let bound = match bound.as_ref() {
                    "+Inf" | "Inf" => f64::INFINITY,
                    other => other.parse().unwrap_or(f64::NAN),
                };
                series.points.push((bound, sample.value));
            }
            _ => series.value = Some(sample.value),
        }
    }
}

impl Translator {
    /// A translator with nothing seen yet.
    pub fn new(options: Options) -> Self {
        Self {
            options,
            ..Self::default()
        }
    }

    /// The request that ends every series the last scrape had (the target failed or went
    /// away): the target's resource, each series once more with no recorded value.
    pub fn ended(&mut self, target: &Target, now: u64) -> Scraped {
        let gone: Vec<Known> = std::mem::take(&mut self.known).into_iter().collect();
        let mut scraped = self
            .translate(target, std::iter::empty(), now)
            .unwrap_or_default();
        if let Some(scope) = scraped
            .request
            .resource_metrics
            .first_mut()
            .and_then(|r| r.scope_metrics.first_mut())
        {
            scope.metrics = stale(gone, now);
        }
        scraped
    }

    /// The request for one scrape of `target` at `now` (Unix nanoseconds), from its lines. The
    /// first bad line, or a series past the label limit, refuses it.
    pub fn translate<'a>(
        &mut self,
        target: &Target,
        lines: impl Iterator<Item = Result<Line<'a>, ParseError>>,
        now: u64,
    ) -> Result<Scraped, Refused> {
        let mut families = Families {
            hasher: self.hasher.clone(),
            ..Families::default()
        };
        // HELP and UNIT by the name they were written under, and whether it is a unit.
        let mut metadata: HashMap<(&str, bool), String> = HashMap::new();
        let mut info: Vec<(String, String)> = Vec::new();
        let mut samples = 0;
        for line in lines {
            match line? {
                Line::Type(name, kind) => {
                    let at = families.family(family_name(name, kind), kind);
                    families.list[at].kind = kind;
                }
                Line::Help(name, text) => {
                    metadata.insert((name, false), text.into_owned());
                }
                Line::Unit(name, unit) => {
                    metadata.insert((name, true), unit.to_owned());
                }
                Line::Sample(sample) => {
                    samples += 1;
                    if sample.name == "target_info" {
                        info.extend(
                            owned(&sample.labels)
                                .into_iter()
                                .filter(|(k, _)| k != "job" && k != "instance"),
                        );
                        continue;
                    }
                    let limit = self.options.label_limit;
                    if limit > 0 && sample.labels.len() > limit {
                        return Err(Refused::Labels(sample.name.to_owned()));
                    }
                    families.gather(sample, self.options);
                }
            }
        }
        self.generation += 1;
        self.added = 0;
        let mut list = families.list;
        list.sort_unstable_by(|a, b| a.name.cmp(b.name));
        let mut series = 0;
        let mut metrics: Vec<Metric> = Vec::with_capacity(list.len());
        for mut family in list {
            series += family.series.len();
            for (unit, field) in [(false, &mut family.help), (true, &mut family.unit)] {
                *field = ["", "_total", "_info"]
                    .iter()
                    .find_map(|suffix| {
                        let written = format!("{}{suffix}", family.name);
                        metadata.get(&(written.as_str(), unit)).cloned()
                    })
                    .unwrap_or_default();
            }
            metrics.extend(self.metric(family, now));
        }
        let generation = self.generation;
        let mut gone = Vec::new();
        self.known.retain(|k| {
            if k.seen == generation {
                return true;
            }
            gone.push(Known {
                id: std::mem::take(&mut k.id),
                bounds: k.bounds.take(),
                ..*k
            });
            false
        });
        metrics.extend(stale(gone, now));
        let mut attributes = vec![
            kv("service.name", &target.job),
            kv("service.instance.id", &target.instance),
        ];
        attributes.extend(target.attributes.iter().map(|(k, v)| kv(k, v)));
        attributes.extend(info.iter().map(|(k, v)| kv(k, v)));
        let request = ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(Resource {
                    attributes,
                    ..Default::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(InstrumentationScope {
                        name: SCOPE.into(),
                        ..Default::default()
                    }),
                    metrics,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        };
        Ok(Scraped {
            request,
            samples,
            series,
            added: self.added,
        })
    }

    /// Marks the series `labels` of family `name` seen by this scrape, remembering it (its
    /// kind, and a histogram's `bounds`) when new; when it started: its `_created` (seconds),
    /// else when it was first seen.
    fn seen(
        &mut self,
        (name, kind): (&str, Kind),
        labels: &Labels<'_>,
        bounds: &[f64],
        created: Option<f64>,
        now: u64,
    ) -> u64 {
        let hash = self.hasher.hash_one((name, labels));
        let generation = self.generation;
        // Series of one family mostly share their bounds: one copy serves them all.
        let shared = (!bounds.is_empty()).then(|| match &self.bounds {
            Some(last) if **last == *bounds => last.clone(),
            _ => self.bounds.insert(Arc::from(bounds)).clone(),
        });
        let known = match self.known.find_mut(hash, |k| k.id.is(name, labels)) {
            Some(known) => {
                if known.kind != kind || known.bounds.as_deref().unwrap_or_default() != bounds {
                    known.kind = kind;
                    known.bounds = shared;
                }
                known
            }
            None => {
                self.added += 1;
                self.known
                    .insert_unique(
                        hash,
                        Known {
                            hash,
                            id: SeriesId::new(name, labels),
                            kind,
                            bounds: shared,
                            first_seen: now,
                            seen: generation,
                        },
                        |k| k.hash,
                    )
                    .into_mut()
            }
        };
        known.seen = generation;
        match created {
            Some(created) => (created * 1e9) as u64,
            None => known.first_seen,
        }
    }

    /// One family as an OTLP metric; `None` when it has no series.
    fn metric(&mut self, family: Family<'_>, now: u64) -> Option<Metric> {
        if family.series.is_empty() {
            return None;
        }
        let cumulative = AggregationTemporality::Cumulative as i32;
        let mut numbers = Vec::new();
        let mut histograms = Vec::new();
        let mut summaries = Vec::new();
        for s in family.series {
            let time_unix_nano = s.time_ms.map_or(now, |ms| (ms.max(0) as u64) * 1_000_000);
            let mut buckets = s.points;
            let explicit_bounds: Vec<f64> = if family.kind == Kind::Histogram {
                buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
                buckets
                    .iter()
                    .map(|b| b.0)
                    .filter(|b| b.is_finite())
                    .collect()
            } else {
                Vec::new()
            };
            let start_time_unix_nano = self.seen(
                (family.name, family.kind),
                &s.labels,
                &explicit_bounds,
                s.created,
                time_unix_nano,
            );
            let attributes: Vec<KeyValue> = s.labels.iter().map(|(k, v)| kv(k, v)).collect();
            match family.kind {
                Kind::Histogram => {
                    let mut previous = 0.0;
                    let bucket_counts: Vec<u64> = buckets
                        .iter()
                        .map(|(_, cumulative)| {
                            let n = (cumulative - previous).max(0.0) as u64;
                            previous = *cumulative;
                            n
                        })
                        .collect();
                    let count = s.count.unwrap_or(previous).max(0.0) as u64;
                    histograms.push(HistogramDataPoint {
                        attributes,
                        start_time_unix_nano,
                        time_unix_nano,
                        count,
                        sum: s.sum,
                        bucket_counts,
                        explicit_bounds,
                        exemplars: s.exemplars,
                        ..Default::default()
                    });
                }
                Kind::Summary => summaries.push(SummaryDataPoint {
                    attributes,
                    start_time_unix_nano,
                    time_unix_nano,
                    count: s.count.unwrap_or(0.0).max(0.0) as u64,
                    sum: s.sum.unwrap_or(0.0),
                    quantile_values: buckets
                        .iter()
                        .map(|(quantile, value)| ValueAtQuantile {
                            quantile: *quantile,
                            value: *value,
                        })
                        .collect(),
                    ..Default::default()
                }),
                _ => numbers.push(NumberDataPoint {
                    attributes,
                    start_time_unix_nano,
                    time_unix_nano,
                    value: Some(number_data_point::Value::AsDouble(s.value?)),
                    exemplars: s.exemplars,
                    ..Default::default()
                }),
            }
        }
        let data = match family.kind {
            Kind::Counter => Data::Sum(Sum {
                data_points: numbers,
                aggregation_temporality: cumulative,
                is_monotonic: true,
            }),
            Kind::Info | Kind::StateSet => Data::Sum(Sum {
                data_points: numbers,
                aggregation_temporality: cumulative,
                is_monotonic: false,
            }),
            Kind::Histogram => Data::Histogram(Histogram {
                data_points: histograms,
                aggregation_temporality: cumulative,
            }),
            Kind::Summary => Data::Summary(Summary {
                data_points: summaries,
            }),
            Kind::Gauge | Kind::Unknown | Kind::GaugeHistogram => Data::Gauge(Gauge {
                data_points: numbers,
            }),
        };
        Some(Metric {
            name: family.name.to_owned(),
            description: family.help,
            unit: family.unit,
            data: Some(data),
            ..Default::default()
        })
    }
}

/// Each series of `gone` once more, with no recorded value (OTLP's staleness marker), in the
/// shape it had, so that the receiver ends it.
fn stale(gone: Vec<Known>, now: u64) -> Vec<Metric> {
    /// A gone series: its attributes and its bounds.
    type Gone = (Vec<KeyValue>, Vec<f64>);
    let mut by_family: BTreeMap<(String, Kind), Vec<Gone>> = BTreeMap::new();
    for series in gone {
        let (name, labels) = series.id.split();
        let attributes = labels.iter().map(|(k, v)| kv(k, v)).collect();
        let bounds = series.bounds.as_deref().unwrap_or_default().to_vec();
        by_family
            .entry((name, series.kind))
            .or_default()
            .push((attributes, bounds));
    }
    const NO_RECORDED_VALUE: u32 = 1;
    let cumulative = AggregationTemporality::Cumulative as i32;
    by_family
        .into_iter()
        .map(|((name, kind), sets)| {
            let numbers = || {
                sets.iter()
                    .map(|(attributes, _)| NumberDataPoint {
                        attributes: attributes.clone(),
                        time_unix_nano: now,
                        flags: NO_RECORDED_VALUE,
                        ..Default::default()
                    })
                    .collect()
            };
            let data = match kind {
                Kind::Counter | Kind::Info | Kind::StateSet => Data::Sum(Sum {
                    data_points: numbers(),
                    aggregation_temporality: cumulative,
                    is_monotonic: kind == Kind::Counter,
                }),
                Kind::Histogram => Data::Histogram(Histogram {
                    data_points: sets
                        .iter()
                        .map(|(attributes, bounds)| HistogramDataPoint {
                            attributes: attributes.clone(),
                            time_unix_nano: now,
                            flags: NO_RECORDED_VALUE,
                            bucket_counts: vec![0; bounds.len() + 1],
                            explicit_bounds: bounds.clone(),
                            ..Default::default()
                        })
                        .collect(),
                    aggregation_temporality: cumulative,
                }),
                Kind::Summary => Data::Summary(Summary {
                    data_points: sets
                        .iter()
                        .map(|(attributes, _)| SummaryDataPoint {
                            attributes: attributes.clone(),
                            time_unix_nano: now,
                            flags: NO_RECORDED_VALUE,
                            ..Default::default()
                        })
                        .collect(),
                }),
                Kind::Gauge | Kind::Unknown | Kind::GaugeHistogram => Data::Gauge(Gauge {
                    data_points: numbers(),
                }),
            };
            Metric {
                name,
                data: Some(data),
                ..Default::default()
            }
        })
        .collect()
}

/// A family's name as OTLP carries it: a counter's without `_total`, an info's without `_info`.
fn family_name(name: &str, kind: Kind) -> &str {
    let trimmed = match kind {
        Kind::Counter => name.strip_suffix("_total"),
        Kind::Info => name.strip_suffix("_info"),
        _ => None,
    };
    trimmed.unwrap_or(name)
}

/// Labels as owned pairs, in their order.
fn owned(labels: &Labels<'_>) -> Vec<(String, String)> {
    labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.to_string()))
        .collect()
}

/// An OpenMetrics exemplar as OTLP's: `trace_id`/`span_id` labels as ids, the rest filtered
/// attributes.
fn exemplar_of(e: &Exemplar<'_>) -> OtlpExemplar {
    let id = |name: &str, len: usize| {
        e.labels
            .iter()
            .find(|(k, _)| *k == name)
            .and_then(|(_, v)| const_hex::decode(v.as_ref()).ok())
            .filter(|b| b.len() == len)
            .unwrap_or_default()
    };
    OtlpExemplar {
        filtered_attributes: e
            .labels
            .iter()
            .filter(|(k, _)| *k != "trace_id" && *k != "span_id")
            .map(|(k, v)| kv(k, v))
            .collect(),
        time_unix_nano: e.timestamp.map_or(0, |t| (t * 1e9) as u64),
        span_id: id("span_id", 8),
        trace_id: id("trace_id", 16),
        value: Some(exemplar::Value::AsDouble(e.value)),
    }
}

/// A string attribute.
fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_owned())),
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::super::exposition::{Format, Parser};
    use super::*;

    fn target() -> Target {
        Target {
            job: "vllm".into(),
            instance: "10.0.0.7:8000".into(),
            attributes: vec![("k8s.pod.name".into(), "vllm-0".into())],
        }
    }

    fn translate(t: &mut Translator, body: &str, format: Format, now: u64) -> Scraped {
        t.translate(&target(), Parser::new(body, format), now)
            .expect("valid")
    }

    fn metrics(s: &Scraped) -> &[Metric] {
        &s.request.resource_metrics[0].scope_metrics[0].metrics
    }

    #[test]
    fn counters_gauges_and_histograms_become_their_otlp_kinds_under_the_targets_resource() {
        let body = "# HELP vllm:prompt_tokens_total Prompt tokens.\n\
                    # TYPE vllm:prompt_tokens_total counter\n\
                    vllm:prompt_tokens_total{model_name=\"m\"} 120\n\
                    # TYPE vllm:num_requests_running gauge\n\
                    vllm:num_requests_running{model_name=\"m\"} 3\n\
                    # TYPE lat histogram\n\
                    lat_bucket{model_name=\"m\",le=\"0.5\"} 2\n\
                    lat_bucket{model_name=\"m\",le=\"1.0\"} 5\n\
                    lat_bucket{model_name=\"m\",le=\"+Inf\"} 6\n\
                    lat_sum{model_name=\"m\"} 4.5\n\
                    lat_count{model_name=\"m\"} 6\n\
                    untyped_thing 7\n\
                    target_info{job=\"x\",env=\"prod\"} 1\n";
        let mut t = Translator::new(Options::default());
        let scraped = translate(&mut t, body, Format::Text, 5_000);
        assert_eq!((scraped.samples, scraped.series), (9, 4));
        let resource = scraped.request.resource_metrics[0]
            .resource
            .as_ref()
            .expect("resource");
        assert_eq!(
            resource.attributes,
            [
                kv("service.name", "vllm"),
                kv("service.instance.id", "10.0.0.7:8000"),
                kv("k8s.pod.name", "vllm-0"),
                kv("env", "prod"),
            ]
        );
        let m = metrics(&scraped);
        let names: Vec<&str> = m.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "lat",
                "untyped_thing",
                "vllm:num_requests_running",
                "vllm:prompt_tokens"
            ]
        );
        let Some(Data::Histogram(h)) = &m[0].data else {
            panic!("a histogram")
        };
        let p = &h.data_points[0];
        assert_eq!(
            (&p.explicit_bounds, &p.bucket_counts, p.count, p.sum),
            (&vec![0.5, 1.0], &vec![2, 3, 1], 6, Some(4.5))
        );
        assert_eq!(p.start_time_unix_nano, 5_000, "first seen now");
        assert!(matches!(&m[1].data, Some(Data::Gauge(_))));
        let Some(Data::Sum(s)) = &m[3].data else {
            panic!("a sum")
        };
        assert!(s.is_monotonic);
        assert_eq!(m[3].description, "Prompt tokens.");
        assert_eq!(
            s.data_points[0].value,
            Some(number_data_point::Value::AsDouble(120.0))
        );

        // The next scrape keeps each series' start.
        let again = translate(&mut t, body, Format::Text, 9_000);
        let Some(Data::Sum(s)) = &metrics(&again)[3].data else {
            panic!("a sum")
        };
        assert_eq!(
            (
                s.data_points[0].start_time_unix_nano,
                s.data_points[0].time_unix_nano
            ),
            (5_000, 9_000)
        );
    }

    #[test]
    fn openmetrics_created_exemplars_summaries_and_info_are_kept() {
        let body = "# TYPE req counter\n\
                    req_total{code=\"200\"} 9 # {trace_id=\"0102030405060708090a0b0c0d0e0f10\",span_id=\"0102030405060708\",user=\"u\"} 1 1700000000.5\n\
                    req_created{code=\"200\"} 1700000000\n\
                    # TYPE rpc summary\n\
                    rpc{quantile=\"0.5\"} 0.2\n\
                    rpc{quantile=\"0.99\"} 0.9\n\
                    rpc_sum 12.5\n\
                    rpc_count 40\n\
                    # TYPE build info\n\
                    build_info{version=\"1.2\"} 1\n\
                    # EOF\n";
        let scraped = translate(
            &mut Translator::new(Options::default()),
            body,
            Format::OpenMetrics,
            5,
        );
        let m = metrics(&scraped);
        let names: Vec<&str> = m.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["build", "req", "rpc"]);
        let Some(Data::Sum(info)) = &m[0].data else {
            panic!("info is a sum")
        };
        assert!(!info.is_monotonic);
        let Some(Data::Sum(req)) = &m[1].data else {
            panic!("a sum")
        };
        let p = &req.data_points[0];
        assert_eq!(p.start_time_unix_nano, 1_700_000_000_000_000_000);
        let e = &p.exemplars[0];
        assert_eq!(e.trace_id, (1..=16).collect::<Vec<u8>>());
        assert_eq!(e.span_id, (1..=8).collect::<Vec<u8>>());
        assert_eq!(e.filtered_attributes, vec![kv("user", "u")]);
        assert_eq!(e.time_unix_nano, 1_700_000_000_500_000_000);
        let Some(Data::Summary(rpc)) = &m[2].data else {
            panic!("a summary")
        };
        let q = &rpc.data_points[0];
        assert_eq!((q.count, q.sum), (40, 12.5));
        let quantiles: Vec<(f64, f64)> = q
            .quantile_values
            .iter()
            .map(|v| (v.quantile, v.value))
            .collect();
        assert_eq!(quantiles, [(0.5, 0.2), (0.99, 0.9)]);
    }

    #[test]
    fn a_bad_line_refuses_the_scrape_by_line() {
        let err = Translator::new(Options::default())
            .translate(&target(), Parser::new("a 1\nb{ 2\n", Format::Text), 1)
            .expect_err("bad");
        assert_eq!(err.to_string(), "line 2: a label has no `=`");
        let limited = Options {
            label_limit: 1,
            ..Options::default()
        };
        let err = Translator::new(limited)
            .translate(
                &target(),
                Parser::new("a{x=\"1\",y=\"2\"} 1\n", Format::Text),
                1,
            )
            .expect_err("two labels");
        assert_eq!(
            err.to_string(),
            "a series of `a` has more labels than label_limit allows"
        );
    }

    #[test]
    fn a_series_missing_from_the_next_scrape_ends_and_a_failed_target_ends_all() {
        let mut t = Translator::new(Options::default());
        let both = "# TYPE q gauge\nq{x=\"1\"} 1\nq{x=\"2\"} 2\n";
        assert_eq!(translate(&mut t, both, Format::Text, 1).added, 2);
        let one = translate(&mut t, "# TYPE q gauge\nq{x=\"1\"} 1\n", Format::Text, 2);
        assert_eq!((one.series, one.added), (1, 0), "x=1 is no new series");
        let points: Vec<(String, u32)> = metrics(&one)
            .iter()
            .flat_map(|m| match &m.data {
                Some(Data::Gauge(g)) => g.data_points.clone(),
                _ => Vec::new(),
            })
            .map(|p| (format!("{:?}", p.attributes[0].value), p.flags))
            .collect();
        assert_eq!(points.len(), 2, "{points:?}");
        assert_eq!(points[1].1, 1, "x=2 is gone: no recorded value");
        assert!(points[1].0.contains("\"2\""));
        let ended = t.ended(&target(), 3);
        let Some(Data::Gauge(g)) = &metrics(&ended)[0].data else {
            panic!("a gauge")
        };
        assert_eq!(g.data_points.len(), 1);
        assert_eq!(
            g.data_points[0].flags, 1,
            "the last series ends with its target"
        );
        assert!(
            metrics(&t.ended(&target(), 4)).is_empty(),
            "nothing left to end"
        );
        let again = translate(
            &mut t,
            "# TYPE q gauge\nq{x=\"1\"} 1\nq{x=\"3\"} 3\n",
            Format::Text,
            5,
        );
        assert_eq!(
            again.added, 2,
            "after its target ended, every series is new again"
        );
    }

    #[test]
    fn a_scraped_job_or_instance_is_renamed_unless_honored() {
        let body = "up_like{job=\"other\",instance=\"x:1\"} 1\n";
        let labels = |options| {
            let s = Translator::new(options)
                .translate(&target(), Parser::new(body, Format::Text), 1)
                .expect("valid");
            let Some(Data::Gauge(g)) = &metrics(&s)[0].data else {
                panic!("a gauge")
            };
            g.data_points[0]
                .attributes
                .iter()
                .map(|a| a.key.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            labels(Options::default()),
            ["exported_instance", "exported_job"]
        );
        let honored = Options {
            honor_labels: true,
            ..Options::default()
        };
        assert_eq!(labels(honored), ["instance", "job"]);
    }
}
