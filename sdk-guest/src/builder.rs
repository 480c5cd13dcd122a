//! Batches built by hand, to unit-test a plugin natively with `cargo test`.
//!
//! ```
//! use wasmtel_guest::{BatchBuilder, MetricKind};
//!
//! let batch = BatchBuilder::new()
//!     .counter("requests", "{request}", &[("model", "m1".into())], 3.0)
//!     .gauge("gpu.utilization", "1", &[("gpu", 0i64.into())], 0.5)
//!     .metrics();
//! let first = batch.metrics().next().unwrap();
//! assert_eq!(first.kind(), MetricKind::Sum { monotonic: true });
//! ```

use std::collections::HashMap;

use crate::{
    Attribute, Exemplar, HistogramPoint, LogBatch, LogRecord, Metric, MetricBatch, NumberPoint,
    Points, Resource, Scope, Span, SpanBatch, SpanEvent, SpanKind, StatusCode, Table, Temporality,
    TraceContext, TraceSpan, Value,
};

/// Attributes as a test writes them.
pub type Pairs<'a> = &'a [(&'a str, Value)];

/// Builds a metric, log or span batch, interning its strings and sets as the host does.
#[derive(Debug)]
pub struct BatchBuilder {
    table: Table,
    strings: HashMap<String, u32>,
    resource: u32,
    temporality: Temporality,
    times: (u64, u64),
    metrics: Vec<Metric>,
    records: Vec<LogRecord>,
    spans: Vec<TraceSpan>,
    events: Vec<SpanEvent>,
}

impl Default for BatchBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::String(s.to_owned())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::String(s)
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Int(i)
    }
}

impl From<f64> for Value {
    fn from(d: f64) -> Self {
        Value::Double(d)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Boolean(b)
    }
}

impl BatchBuilder {
    /// An empty batch of scope `test`, cumulative, with no resource attributes.
    pub fn new() -> Self {
        let mut b = Self {
            table: Table {
                strings: Vec::new(),
                values: Vec::new(),
                attributes: Vec::new(),
                sets: Vec::new(),
            },
            strings: HashMap::new(),
            resource: 0,
            temporality: Temporality::Cumulative,
            times: (1, 2),
            metrics: Vec::new(),
            records: Vec::new(),
            spans: Vec::new(),
            events: Vec::new(),
        };
        b.string("");
        b.set(&[]);
        b
    }

    fn string(&mut self, s: &str) -> u32 {
        if let Some(&i) = self.strings.get(s) {
            return i;
        }
        let i = self.table.strings.len() as u32;
        self.table.strings.push(s.to_owned());
        self.strings.insert(s.to_owned(), i);
        i
    }

    fn set(&mut self, pairs: Pairs<'_>) -> u32 {
        let start = self.table.attributes.len() as u32;
        for (k, v) in pairs {
            let key = self.string(k);
            self.table.values.push(v.clone());
            let value = self.table.values.len() as u32 - 1;
            self.table.attributes.push(Attribute { key, value });
        }
        let span = Span {
            start,
            len: pairs.len() as u32,
        };
        // Equal sets share an index, as in the host's batches.
        let same = |s: &Span| {
            let list = &self.table.attributes;
            let at = |s: &Span| &list[s.start as usize..(s.start + s.len) as usize];
            s.len == span.len
                && at(s).iter().zip(at(&span)).all(|(a, b)| {
                    a.key == b.key
                        && self.table.values[a.value as usize]
                            == self.table.values[b.value as usize]
                })
        };
        if let Some(i) = self.table.sets.iter().position(same) {
            return i as u32;
        }
        self.table.sets.push(span);
        self.table.sets.len() as u32 - 1
    }

    /// Sets the resource's attributes.
    pub fn resource(mut self, pairs: Pairs<'_>) -> Self {
        self.resource = self.set(pairs);
        self
    }

    /// Makes the sums and histograms added next delta (or cumulative) ones.
    pub fn temporality(mut self, temporality: Temporality) -> Self {
        self.temporality = temporality;
        self
    }

    /// Gives the points and records added next these start and end times (Unix nanoseconds).
    pub fn times(mut self, start: u64, time: u64) -> Self {
        self.times = (start, time);
        self
    }

    /// The metric named `name` of this kind, added if the last one is not it.
    fn metric(&mut self, name: &str, unit: &str, empty: Points, monotonic: bool) -> &mut Metric {
        let kind = std::mem::discriminant(&empty);
        let is_last = self.metrics.last().is_some_and(|m| {
            self.table.string(m.name) == name && std::mem::discriminant(&m.points) == kind
        });
        if !is_last {
            let (name, unit, description) = (self.string(name), self.string(unit), 0);
            self.metrics.push(Metric {
                scope: 0,
                name,
                description,
                unit,
                temporality: self.temporality,
                monotonic,
                points: empty,
                bounds: Vec::new(),
                counts: Vec::new(),
                exemplars: Vec::new(),
            });
        }
        self.metrics.last_mut().expect("just pushed")
    }

    fn number(
        mut self,
        name: &str,
        unit: &str,
        pairs: Pairs<'_>,
        value: f64,
        kind: Points,
        monotonic: bool,
    ) -> Self {
        let attributes = self.set(pairs);
        let point = NumberPoint {
            attributes,
            start_time_unix_nano: self.times.0,
            time_unix_nano: self.times.1,
            value,
        };
        if let Points::Gauge(p) | Points::Sum(p) =
            &mut self.metric(name, unit, kind, monotonic).points
        {
            p.push(point);
        }
        self
    }

    /// Adds a gauge point.
    pub fn gauge(self, name: &str, unit: &str, pairs: Pairs<'_>, value: f64) -> Self {
        self.number(name, unit, pairs, value, Points::Gauge(Vec::new()), false)
    }

    /// Adds a point of a monotonic sum (a counter).
    pub fn counter(self, name: &str, unit: &str, pairs: Pairs<'_>, value: f64) -> Self {
        self.number(name, unit, pairs, value, Points::Sum(Vec::new()), true)
    }

    /// Adds a point of a sum that may go down.
    pub fn up_down_counter(self, name: &str, unit: &str, pairs: Pairs<'_>, value: f64) -> Self {
        self.number(name, unit, pairs, value, Points::Sum(Vec::new()), false)
    }

    /// Adds an explicit-bucket histogram point (`counts` has one more entry than `bounds`).
    pub fn histogram(
        mut self,
        name: &str,
        unit: &str,
        pairs: Pairs<'_>,
        bounds: &[f64],
        counts: &[u64],
        sum: f64,
    ) -> Self {
        let attributes = self.set(pairs);
        let times = self.times;
        let metric = self.metric(name, unit, Points::Histogram(Vec::new()), false);
        let span = |start: usize, len: usize| Span {
            start: start as u32,
            len: len as u32,
        };
        let point = HistogramPoint {
            attributes,
            start_time_unix_nano: times.0,
            time_unix_nano: times.1,
            count: counts.iter().sum(),
            sum: Some(sum),
            min: None,
            max: None,
            bounds: span(metric.bounds.len(), bounds.len()),
            bucket_counts: span(metric.counts.len(), counts.len()),
        };
        metric.bounds.extend_from_slice(bounds);
        metric.counts.extend_from_slice(counts);
        if let Points::Histogram(p) = &mut metric.points {
            p.push(point);
        }
        self
    }

    /// Sets the minimum and maximum (each a number or `None`) of the last histogram point added.
    pub fn extremes(mut self, min: impl Into<Option<f64>>, max: impl Into<Option<f64>>) -> Self {
        if let Some(Points::Histogram(p)) = self.metrics.last_mut().map(|m| &mut m.points)
            && let Some(last) = p.last_mut()
        {
            (last.min, last.max) = (min.into(), max.into());
        }
        self
    }

    /// Adds an exemplar to the last point added.
    pub fn exemplar(mut self, value: f64, trace: Option<TraceContext>) -> Self {
        if let Some(metric) = self.metrics.last_mut() {
            let point = match &metric.points {
                Points::Gauge(p) | Points::Sum(p) => p.len(),
                Points::Histogram(p) => p.len(),
                Points::ExponentialHistogram(p) => p.len(),
            };
            metric.exemplars.push(Exemplar {
                point: point.saturating_sub(1) as u32,
                filtered_attributes: 0,
                time_unix_nano: self.times.1,
                value,
                trace,
            });
        }
        self
    }

    /// Adds a log record with a string body, of severity INFO.
    pub fn record(mut self, body: &str, pairs: Pairs<'_>) -> Self {
        let attributes = self.set(pairs);
        let severity_text = self.string("INFO");
        self.records.push(LogRecord {
            scope: 0,
            time_unix_nano: self.times.0,
            observed_time_unix_nano: self.times.1,
            severity_number: 9,
            severity_text,
            body: Some(Value::String(body.to_owned())),
            attributes,
            trace: None,
            event_name: 0,
        });
        self
    }

    /// Adds a server span of trace `trace` (its span id `trace.span_id`), with no events.
    pub fn span(mut self, name: &str, trace: TraceContext, pairs: Pairs<'_>) -> Self {
        let (name, attributes) = (self.string(name), self.set(pairs));
        let events = Span {
            start: self.events.len() as u32,
            len: 0,
        };
        self.spans.push(TraceSpan {
            scope: 0,
            trace,
            parent_span_id: None,
            trace_state: 0,
            flags: 0,
            name,
            kind: SpanKind::Server,
            start_time_unix_nano: self.times.0,
            end_time_unix_nano: self.times.1,
            attributes,
            dropped_attributes_count: 0,
            events,
            dropped_events_count: 0,
            links: Span { start: 0, len: 0 },
            dropped_links_count: 0,
            status_code: StatusCode::Unset,
            status_message: 0,
        });
        self
    }

    /// Adds an event to the last span added (spans take their events in order).
    pub fn event(mut self, name: &str, pairs: Pairs<'_>) -> Self {
        let (name, attributes) = (self.string(name), self.set(pairs));
        self.events.push(SpanEvent {
            time_unix_nano: self.times.1,
            name,
            attributes,
            dropped_attributes_count: 0,
        });
        if let Some(span) = self.spans.last_mut() {
            span.events.len += 1;
        }
        self
    }

    /// Gives the last record added a trace context.
    pub fn trace(mut self, trace: TraceContext) -> Self {
        if let Some(r) = self.records.last_mut() {
            r.trace = Some(trace);
        }
        self
    }

    fn scope(&mut self) -> Vec<Scope> {
        let name = self.string("test");
        vec![Scope {
            name,
            version: 0,
            attributes: 0,
        }]
    }

    /// The metric batch built.
    pub fn metrics(mut self) -> MetricBatch {
        MetricBatch {
            scopes: self.scope(),
            resource: Resource {
                attributes: self.resource,
                schema_url: 0,
            },
            table: self.table,
            metrics: self.metrics,
        }
    }

    /// The span batch built.
    pub fn spans(mut self) -> SpanBatch {
        SpanBatch {
            scopes: self.scope(),
            resource: Resource {
                attributes: self.resource,
                schema_url: 0,
            },
            table: self.table,
            spans: self.spans,
            events: self.events,
            links: Vec::new(),
        }
    }

    /// The log batch built.
    pub fn logs(mut self) -> LogBatch {
        LogBatch {
            scopes: self.scope(),
            resource: Resource {
                attributes: self.resource,
                schema_url: 0,
            },
            table: self.table,
            records: self.records,
        }
    }
}
