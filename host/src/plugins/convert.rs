//! Host data in the contract's types: the engine's state as a metric batch, in the temporality an exporter asked for.

use std::sync::Arc;

use super::batch::{self, Interner};
use super::bindings::types::{
    Exemplar as WitExemplar, ExponentialHistogramPoint, HistogramPoint, Metric, MetricBatch,
    NumberPoint, Points, Resource, Scope, Span, Temporality, Value,
};
use crate::metrics::reader::{PointValue, Reader, Shape, known_extreme};
use crate::metrics::{DeltaTracker, Instrument, Registry};
use crate::model::attributes::{AttributeSet, ValueRef};
use crate::model::content::Patterns;
use crate::model::metric::Temporality as HostTemporality;
use crate::model::resource::Resource as HostResource;
use wasmtel_naming as naming;

/// An attribute value in the contract's type.
pub fn value(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Str(s) => Value::String(s.to_owned()),
        ValueRef::Bool(b) => Value::Boolean(b),
        ValueRef::Int(i) => Value::Int(i),
        ValueRef::Double(d) => Value::Double(d),
    }
}

/// One producer's metrics in the contract's types, with what the contract does not carry.
#[derive(Debug, Clone)]
pub struct Collected {
    /// The batch plugins see.
    pub batch: MetricBatch,
    /// Each of the batch's scopes' schema URL (possibly empty), by scope index: contract 0.2 has
    /// no field for it, and the host writes it back when it encodes OTLP.
    pub schema_urls: Vec<Arc<str>>,
}

impl Collected {
    /// The collection with its batch through `transform`; `None` when that dropped it.
    pub fn transformed(
        self,
        transform: impl FnOnce(MetricBatch) -> Option<MetricBatch>,
    ) -> Option<Self> {
        let schema_urls = self.schema_urls;
        transform(self.batch).map(|batch| Self { batch, schema_urls })
    }
}

/// The engine's state as a metric batch, in cumulative temporality or, with a tracker, in the
/// temporality its preference gives each instrument (deltas leave out series that did not change).
pub fn metric_batch(
    registry: &Registry,
    res: &HostResource,
    delta: Option<&mut DeltaTracker>,
) -> Collected {
    metric_batch_where(registry, res, delta, &|_| true)
}

/// [`metric_batch`], of the instruments whose name `keep` takes.
pub fn metric_batch_where(
    registry: &Registry,
    res: &HostResource,
    delta: Option<&mut DeltaTracker>,
    keep: &dyn Fn(&str) -> bool,
) -> Collected {
    let scoped = Reader::scopes_where(registry, keep);
    let series = scoped.iter().flat_map(|(_, m)| m).map(|i| i.series_count());
    let mut table = Interner::with_capacity(series.sum());
    let resource = Resource {
        attributes: table.host_set(res.attributes()),
        schema_url: 0,
    };
    let mut reader = Reader::new(delta);
    let (mut scopes, mut metrics, mut schema_urls) = (Vec::new(), Vec::new(), Vec::new());
    for (scope, members) in &scoped {
        let index = u32::try_from(scopes.len()).unwrap_or(u32::MAX);
        let before = metrics.len();
        for instrument in members {
            if Shape::of(instrument) == Shape::Summary {
                metrics.extend(summary(instrument, index, &mut reader, &mut table));
            } else if let Some(m) = metric(instrument, index, &mut reader, &mut table) {
                metrics.push(m);
            }
        }
        if metrics.len() > before {
            scopes.push(Scope {
                name: table.string(&scope.name),
                version: table.string(&scope.version),
                attributes: table.host_set(&scope.attributes),
            });
            schema_urls.push(scope.schema_url.clone());
        }
    }
    reader.finish();
    Collected {
        batch: MetricBatch {
            table: table.finish(),
            resource,
            scopes,
            metrics,
        },
        schema_urls,
    }
}

/// What a transform that reads only attributes, of named keys only, is given of one metric
/// collection: the collection's distinct attribute sets cut down to those keys, its scopes and
/// its resource, gathered while the collection is encoded straight from the engine (so it
/// holds exactly the series encoded).
#[derive(Debug)]
pub struct Probe<'k> {
    keys: &'k Patterns,
    table: Interner,
    scopes: Vec<Scope>,
    points: usize,
    /// Whether the batch would hold a set the probe cannot: a summary's `quantile` pair, added
    /// by the conversion, among the keys read.
    short: bool,
}

impl<'k> Probe<'k> {
    /// An empty probe for the keys `keys` matches.
    pub fn new(keys: &'k Patterns) -> Self {
        Self {
            keys,
            table: Interner::new(),
            scopes: Vec::new(),
            points: 0,
            short: false,
        }
    }

    /// A point's attribute set (`summary`: a summary's point).
    pub fn point(&mut self, set: &AttributeSet, summary: bool) {
        self.short |= summary && self.keys.matches(b"quantile");
        self.points += 1;
        self.table.host_set_cut(set, self.keys);
    }

    /// A scope that has points.
    pub fn scope(&mut self, name: &str, version: &str, attributes: &AttributeSet) {
        let scope = Scope {
            name: self.table.string(name),
            version: self.table.string(version),
            attributes: self.table.host_set_cut(attributes, self.keys),
        };
        self.scopes.push(scope);
    }

    /// The batch a transform is given, with the resource's attributes `resource`, and the
    /// points it stands for; `None` when the probe does not stand for the collection's batch.
    pub fn batch(mut self, resource: &AttributeSet) -> Option<(MetricBatch, usize)> {
        let resource = Resource {
            attributes: self.table.host_set_cut(resource, self.keys),
            schema_url: 0,
        };
        let batch = MetricBatch {
            table: self.table.finish(),
            resource,
            scopes: self.scopes,
            metrics: Vec::new(),
        };
        (!self.short).then_some((batch, self.points))
    }
}

/// A list position as the contract's `u32`.
fn at(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Appends `items` to `list`; the span they take.
fn push_span<T: Copy>(list: &mut Vec<T>, items: &[T]) -> Span {
    let start = at(list.len());
    list.extend_from_slice(items);
    Span {
        start,
        len: at(items.len()),
    }
}

/// One instrument's points as a contract metric of scope `scope`; `None` when it has none to export.
fn metric(
    instrument: &Instrument,
    scope: u32,
    reader: &mut Reader<'_>,
    table: &mut Interner,
) -> Option<Metric> {
    let d = instrument.descriptor();
    let temporality = match reader.temporality(instrument) {
        HostTemporality::Delta => Temporality::Delta,
        HostTemporality::Cumulative => Temporality::Cumulative,
    };
    let (mut numbers, mut histograms, mut exponentials) = (Vec::new(), Vec::new(), Vec::new());
    let (mut bounds, mut counts, mut exemplars) = (Vec::new(), Vec::new(), Vec::new());
    let points = reader.read(instrument, |p| {
        let attributes = table.host_set(p.attributes);
        let point = at(numbers.len() + histograms.len() + exponentials.len());
        exemplars.extend(p.exemplars().into_iter().map(|(_, e)| WitExemplar {
            point,
            filtered_attributes: 0,
            time_unix_nano: e.time_unix_nano,
            value: e.value,
            trace: e.trace.as_ref().map(batch::trace),
        }));
        let (start_time_unix_nano, time_unix_nano) = (p.start, p.time);
        match p.value {
            PointValue::Number(value) => numbers.push(NumberPoint {
                attributes,
                start_time_unix_nano,
                time_unix_nano,
                value,
            }),
            PointValue::Histogram(h, b) => histograms.push(HistogramPoint {
                attributes,
                start_time_unix_nano,
                time_unix_nano,
                count: h.count,
                sum: Some(h.sum),
                min: known_extreme(h.count, h.min),
                max: known_extreme(h.count, h.max),
                bounds: push_span(&mut bounds, b),
                bucket_counts: push_span(&mut counts, &h.bucket_counts),
            }),
            // Summaries take `summary`.
            PointValue::Summary(_) => {}
            PointValue::Exponential(e) => exponentials.push(ExponentialHistogramPoint {
                attributes,
                start_time_unix_nano,
                time_unix_nano,
                count: e.count,
                sum: Some(e.sum),
                min: known_extreme(e.count, e.min),
                max: known_extreme(e.count, e.max),
                scale: e.scale,
                zero_count: e.zero_count,
                zero_threshold: 0.0,
                positive_offset: e.positive.offset,
                positive: push_span(&mut counts, &e.positive.counts),
                negative_offset: e.negative.offset,
                negative: push_span(&mut counts, &e.negative.counts),
            }),
        }
    });
    if points == 0 {
        return None;
    }
    let (points, monotonic) = match Shape::of(instrument) {
        Shape::Sum { monotonic } => (Points::Sum(numbers), monotonic),
        Shape::Gauge => (Points::Gauge(numbers), false),
        Shape::Histogram => (Points::Histogram(histograms), false),
        Shape::ExponentialHistogram | Shape::Summary => {
            (Points::ExponentialHistogram(exponentials), false)
        }
    };
    Some(Metric {
        scope,
        name: table.string(&d.name),
        description: table.string(&d.description),
        unit: table.string(&d.unit),
        temporality,
        monotonic,
        points,
        bounds,
        counts,
        exemplars,
    })
}

/// A summary as contract 0.2, which has no summary points, carries one: the series Prometheus
/// exposes for it. A gauge of its quantiles (attribute `quantile`) under its own name and unit,
/// and `<name>_sum` and `<name>_count` as cumulative sums, named as Prometheus names them.
fn summary(
    instrument: &Instrument,
    scope: u32,
    reader: &mut Reader<'_>,
    table: &mut Interner,
) -> Vec<Metric> {
    let d = instrument.descriptor();
    let (mut quantiles, mut sums, mut counts) = (Vec::new(), Vec::new(), Vec::new());
    let quantile = table.string("quantile");
    reader.read(instrument, |p| {
        let PointValue::Summary(s) = &p.value else {
            return;
        };
        let point = |attributes, value| NumberPoint {
            attributes,
            start_time_unix_nano: p.start,
            time_unix_nano: p.time,
            value,
        };
        let attributes = table.host_set(p.attributes);
        sums.push(point(attributes, s.sum));
        counts.push(point(attributes, s.count as f64));
        for (q, v) in &s.quantiles {
            // The set stays in key order, as every set of the batch is.
            let at = p
                .attributes
                .iter()
                .take_while(|(k, _)| *k < "quantile")
                .count();
            let mut pairs: Vec<(u32, u32)> = p
                .attributes
                .iter()
                .map(|(k, v)| (table.string(k), table.value_ref(v)))
                .collect();
            pairs.insert(at, (quantile, table.value(Value::String(q.to_string()))));
            quantiles.push(point(table.set_of(pairs.into_iter()), *v));
        }
    });
    if sums.is_empty() {
        return Vec::new();
    }
    let base = naming::metric_name(&d.name, &d.unit, naming::Shape::Other);
    let mut metric = |name: &str, unit: &str, points| Metric {
        scope,
        name: table.string(name),
        description: table.string(&d.description),
        unit: table.string(unit),
        temporality: Temporality::Cumulative,
        monotonic: false,
        points,
        bounds: Vec::new(),
        counts: Vec::new(),
        exemplars: Vec::new(),
    };
    vec![
        metric(&d.name, &d.unit, Points::Gauge(quantiles)),
        metric(&format!("{base}_sum"), "", Points::Sum(sums)),
        metric(&format!("{base}_count"), "", Points::Sum(counts)),
    ]
}

/// OTLP protobuf ⇄ contract types, so that transforms can rewrite what the OTLP exporter sends.
pub mod otlp {
    use opentelemetry_proto::tonic::common::v1::{
        AnyValue, ArrayValue, KeyValue as ProtoKeyValue, KeyValueList, any_value,
    };
    use opentelemetry_proto::tonic::logs::v1::LogRecord as ProtoLogRecord;
    use opentelemetry_proto::tonic::trace::v1 as pt;
    use prost::Message as _;

    use std::collections::HashMap;

    use bytes::Bytes;

    use super::at;
    use crate::model::content::Patterns;
    use crate::model::record::{Origin, Record};
    use crate::model::wire::len_field_header;
    use crate::model::wire::{Fields, Reverse, Value as Wire, WireError};
    use crate::plugins::batch::{Interner, SetChange, SpanChanges, trace_bytes, trace_of};
    use crate::plugins::bindings::types::{
        LogBatch, LogRecord, Resource, Scope, Span, SpanBatch, SpanEvent, SpanKind, SpanLink,
        StatusCode, Table, TraceContext, TraceSpan, Value,
    };

    fn json(v: &AnyValue) -> serde_json::Value {
        match &v.value {
            Some(any_value::Value::StringValue(s)) => s.clone().into(),
            Some(any_value::Value::BoolValue(b)) => (*b).into(),
            Some(any_value::Value::IntValue(i)) => (*i).into(),
            Some(any_value::Value::DoubleValue(d)) => (*d).into(),
            Some(any_value::Value::ArrayValue(a)) => a.values.iter().map(json).collect(),
            Some(any_value::Value::KvlistValue(l)) => l
                .values
                .iter()
                .map(|kv| {
                    (
                        kv.key.clone(),
                        kv.value.as_ref().map_or(serde_json::Value::Null, json),
                    )
                })
                .collect::<serde_json::Map<_, _>>()
                .into(),
            Some(any_value::Value::BytesValue(b)) => const_hex::encode(b).into(),
            _ => serde_json::Value::Null,
        }
    }

    fn from_json(v: &serde_json::Value) -> AnyValue {
        let value = match v {
            serde_json::Value::Null => None,
            serde_json::Value::Bool(b) => Some(any_value::Value::BoolValue(*b)),
            serde_json::Value::Number(n) => Some(n.as_i64().map_or_else(
                || any_value::Value::DoubleValue(n.as_f64().unwrap_or(f64::NAN)),
                any_value::Value::IntValue,
            )),
            serde_json::Value::String(s) => Some(any_value::Value::StringValue(s.clone())),
            serde_json::Value::Array(items) => Some(any_value::Value::ArrayValue(ArrayValue {
                values: items.iter().map(from_json).collect(),
            })),
            serde_json::Value::Object(map) => Some(any_value::Value::KvlistValue(KeyValueList {
                values: map
                    .iter()
                    .map(|(k, v)| ProtoKeyValue {
                        key: k.clone(),
                        value: Some(from_json(v)),
                        ..Default::default()
                    })
                    .collect(),
            })),
        };
        AnyValue { value }
    }

    /// An OTLP value as a contract value (arrays and maps as JSON text).
    pub fn value(v: &AnyValue) -> Value {
        match &v.value {
            Some(any_value::Value::StringValue(s)) => Value::String(s.clone()),
            Some(any_value::Value::BoolValue(b)) => Value::Boolean(*b),
            Some(any_value::Value::IntValue(i)) => Value::Int(*i),
            Some(any_value::Value::DoubleValue(d)) => Value::Double(*d),
            Some(any_value::Value::BytesValue(b)) => Value::Bytes(b.clone()),
            _ => Value::Json(json(v).to_string()),
        }
    }

    /// A contract value as an OTLP value (JSON text back into arrays and maps).
    pub fn any_value(v: &Value) -> AnyValue {
        let value = match v {
            Value::String(s) => any_value::Value::StringValue(s.clone()),
            Value::Boolean(b) => any_value::Value::BoolValue(*b),
            Value::Int(i) => any_value::Value::IntValue(*i),
            Value::Double(d) => any_value::Value::DoubleValue(*d),
            Value::Bytes(b) => any_value::Value::BytesValue(b.clone()),
            Value::Json(text) => {
                return serde_json::from_str(text).map_or_else(
                    |_| AnyValue {
                        value: Some(any_value::Value::StringValue(text.clone())),
                    },
                    |j| from_json(&j),
                );
            }
        };
        AnyValue { value: Some(value) }
    }

    /// OTLP attributes as an interned set, holding only the keys `keys` matches (`None`: all).
    fn set(table: &mut Interner, kvs: &[ProtoKeyValue], keys: Option<&Patterns>) -> u32 {
        let pairs: Vec<(u32, u32)> = kvs
            .iter()
            .filter(|kv| keys.is_none_or(|k| k.matches(kv.key.as_bytes())))
            .map(|kv| {
                let v = kv.value.as_ref().map_or(Value::Json("null".into()), value);
                (table.string(&kv.key), table.value(v))
            })
            .collect();
        table.set_of(pairs.into_iter())
    }

    /// An interned set as OTLP attributes.
    fn proto_attributes(table: &Table, set: u32) -> Vec<ProtoKeyValue> {
        table
            .set(set)
            .map(|(k, v)| ProtoKeyValue {
                key: k.to_owned(),
                value: Some(any_value(v)),
                ..Default::default()
            })
            .collect()
    }

    fn ids(trace: Option<&TraceContext>) -> (Vec<u8>, Vec<u8>) {
        trace.map_or_else(Default::default, |t| {
            let (trace_id, span_id) = trace_bytes(t);
            (trace_id.to_vec(), span_id.to_vec())
        })
    }

    /// The resource and scope of `origin` in `table`, their sets holding only the keys `keys`
    /// matches (`None`: all).
    fn origin_in(
        table: &mut Interner,
        origin: &Origin,
        keys: Option<&Patterns>,
    ) -> (Resource, Scope) {
        let (resource, scope) = (origin.resource(), origin.scope());
        let resource = Resource {
            attributes: set(table, &resource.attributes, keys),
            schema_url: 0,
        };
        let scope = Scope {
            name: table.string(&scope.name),
            version: table.string(&scope.version),
            attributes: set(table, &scope.attributes, keys),
        };
        (resource, scope)
    }

    /// OTLP log records of one origin as a contract log batch.
    pub fn log_batch(records: &[ProtoLogRecord], origin: &Origin) -> LogBatch {
        let mut table = Interner::new();
        let records = records
            .iter()
            .map(|r| LogRecord {
                scope: 0,
                time_unix_nano: r.time_unix_nano,
                observed_time_unix_nano: r.observed_time_unix_nano,
                severity_number: u8::try_from(r.severity_number).unwrap_or(0),
                severity_text: table.string(&r.severity_text),
                body: r.body.as_ref().map(value),
                attributes: set(&mut table, &r.attributes, None),
                trace: trace_of(&r.trace_id, &r.span_id),
                event_name: table.string(&r.event_name),
            })
            .collect();
        let (resource, scope) = origin_in(&mut table, origin, None);
        LogBatch {
            table: table.finish(),
            resource,
            scopes: vec![scope],
            records,
        }
    }

    /// A contract log batch's records as OTLP log records.
    pub fn log_records(batch: &LogBatch) -> Vec<ProtoLogRecord> {
        let t = &batch.table;
        batch
            .records
            .iter()
            .map(|r| {
                let (trace_id, span_id) = ids(r.trace.as_ref());
                ProtoLogRecord {
                    time_unix_nano: r.time_unix_nano,
                    observed_time_unix_nano: r.observed_time_unix_nano,
                    severity_number: i32::from(r.severity_number),
                    severity_text: t.string(r.severity_text).to_owned(),
                    body: r.body.as_ref().map(any_value),
                    attributes: proto_attributes(t, r.attributes),
                    trace_id,
                    span_id,
                    event_name: t.string(r.event_name).to_owned(),
                    ..Default::default()
                }
            })
            .collect()
    }

    /// Each attribute set of a batch as repeated `KeyValue` messages of a field: encoded where it is
    /// first used, then copied from there.
    pub(crate) struct SetBytes<'t> {
        table: &'t Table,
        written: HashMap<(u32, u32), (usize, usize), foldhash::fast::RandomState>,
    }

    impl<'t> SetBytes<'t> {
        pub(crate) fn new(table: &'t Table) -> Self {
            Self {
                table,
                written: HashMap::default(),
            }
        }

        /// Writes set `set` as field `field` (the writer is never truncated while this lives).
        pub(crate) fn write(&mut self, w: &mut Reverse, field: u32, set: u32) {
            if let Some(&(from, to)) = self.written.get(&(field, set)) {
                w.repeat(from, to);
                return;
            }
            let from = w.len();
            let pairs: Vec<(&str, &Value)> = self.table.set(set).collect();
            for (key, value) in pairs.into_iter().rev() {
                w.message(field, |w| {
                    w.message(2, |w| match value {
                        Value::String(s) => w.bytes_always(1, s.as_bytes()),
                        Value::Boolean(b) => w.varint_always(2, u64::from(*b)),
                        Value::Int(i) => w.varint_always(3, *i as u64),
                        Value::Double(d) => w.fixed64_always(4, d.to_bits()),
                        Value::Bytes(b) => w.bytes_always(7, b),
                        Value::Json(_) => {
                            // Arrays and maps: rare enough to go through the generated types.
                            if let Some(inner) = &any_value(value).value {
                                let mut one = Vec::new();
                                inner.encode(&mut one);
                                one.reverse();
                                w.append_reversed(&one);
                            }
                        }
                    });
                    w.bytes(1, key.as_bytes());
                });
            }
            self.written.insert((field, set), (from, w.len()));
        }
    }

    /// A trace context from OTLP ids (all zero when they are not valid ids, which intake refuses).
    fn context(trace_id: &[u8], span_id: &[u8]) -> TraceContext {
        trace_of(trace_id, span_id).unwrap_or(TraceContext {
            trace_id_high: 0,
            trace_id_low: 0,
            span_id: 0,
        })
    }

    /// Spans of one origin, as their records carry them, as a contract span batch: read
    /// straight from the wire (strings borrowed, interned once), each attribute set holding
    /// only the keys `keys` matches (`None`: all; the others are not even read), a span per
    /// record in order; `Err` when a record is not a `Span` message (intake checked each, so
    /// this is a record damaged since).
    pub fn span_batch(
        spans: &[Record],
        origin: &Origin,
        keys: Option<&Patterns>,
    ) -> Result<SpanBatch, WireError> {
        let mut table = Interner::new();
        let mut read = Read {
            table: &mut table,
            keys,
            events: Vec::new(),
            links: Vec::new(),
            pairs: Vec::new(),
        };
        let spans = spans
            .iter()
            .map(|r| wire_span(&r.bytes, &mut read))
            .collect::<Result<_, _>>()?;
        let (events, links) = (read.events, read.links);
        let (resource, scope) = origin_in(&mut table, origin, keys);
        Ok(SpanBatch {
            table: table.finish(),
            resource,
            scopes: vec![scope],
            spans,
            events,
            links,
        })
    }

    /// A span batch being read from the wire.
    struct Read<'t, 'k> {
        table: &'t mut Interner,
        /// The keys the sets hold (`None`: all).
        keys: Option<&'k Patterns>,
        events: Vec<SpanEvent>,
        links: Vec<SpanLink>,
        /// Attribute pairs while their set is read (left as they were found after each set).
        pairs: Vec<(u32, u32)>,
    }

    impl Read<'_, '_> {
        /// Reads one `KeyValue` message into `pairs`, unless its key is not one kept.
        fn pair(&mut self, bytes: &[u8]) -> Result<(), WireError> {
            if let Some(pair) = wire_pair(bytes, self.table, self.keys)? {
                self.pairs.push(pair);
            }
            Ok(())
        }

        /// The set of the pairs read since `first`.
        fn set(&mut self, first: usize) -> u32 {
            self.table.set_of(self.pairs.drain(first..))
        }
    }

    /// One `Span` message as a contract span, its events and links appended to theirs.
    fn wire_span(bytes: &[u8], read: &mut Read<'_, '_>) -> Result<TraceSpan, WireError> {
        let (mut trace_id, mut span_id, mut parent): (&[u8], &[u8], &[u8]) = (&[], &[], &[]);
        let first_pair = read.pairs.len();
        let mut status: &[u8] = &[];
        let (first_event, first_link) = (at(read.events.len()), at(read.links.len()));
        let mut span = TraceSpan {
            scope: 0,
            trace: context(&[], &[]),
            parent_span_id: None,
            trace_state: 0,
            flags: 0,
            name: 0,
            kind: SpanKind::Unspecified,
            start_time_unix_nano: 0,
            end_time_unix_nano: 0,
            attributes: 0,
            dropped_attributes_count: 0,
            events: Span { start: 0, len: 0 },
            dropped_events_count: 0,
            links: Span { start: 0, len: 0 },
            dropped_links_count: 0,
            status_code: StatusCode::Unset,
            status_message: 0,
        };
        for field in Fields::new(bytes) {
            match field? {
                (1, Wire::Len(b)) => trace_id = b,
                (2, Wire::Len(b)) => span_id = b,
                (3, Wire::Len(b)) => span.trace_state = utf8(read.table.utf8_string(b))?,
                (4, Wire::Len(b)) => parent = b,
                (16, Wire::Fixed32(v)) => span.flags = v,
                (5, Wire::Len(b)) => span.name = utf8(read.table.utf8_string(b))?,
                (6, Wire::Varint(v)) => span.kind = span_kind_of(v as i32),
                (7, Wire::Fixed64(v)) => span.start_time_unix_nano = v,
                (8, Wire::Fixed64(v)) => span.end_time_unix_nano = v,
                (9, Wire::Len(b)) => read.pair(b)?,
                (10, Wire::Varint(v)) => span.dropped_attributes_count = v as u32,
                (11, Wire::Len(b)) => {
                    let event = wire_event(b, read)?;
                    read.events.push(event);
                }
                (12, Wire::Varint(v)) => span.dropped_events_count = v as u32,
                (13, Wire::Len(b)) => {
                    let link = wire_link(b, read)?;
                    read.links.push(link);
                }
                (14, Wire::Varint(v)) => span.dropped_links_count = v as u32,
                (15, Wire::Len(b)) => status = b,
                _ => {}
            }
        }
        span.trace = context(trace_id, span_id);
        span.parent_span_id = <[u8; 8]>::try_from(parent).ok().map(u64::from_be_bytes);
        span.attributes = read.set(first_pair);
        span.events = Span {
            start: first_event,
            len: at(read.events.len()) - first_event,
        };
        span.links = Span {
            start: first_link,
            len: at(read.links.len()) - first_link,
        };
        for field in Fields::new(status) {
            match field? {
                (2, Wire::Len(b)) => span.status_message = utf8(read.table.utf8_string(b))?,
                (3, Wire::Varint(v)) => {
                    span.status_code = match pt::status::StatusCode::try_from(v as i32) {
                        Ok(pt::status::StatusCode::Ok) => StatusCode::Ok,
                        Ok(pt::status::StatusCode::Error) => StatusCode::Error,
                        _ => StatusCode::Unset,
                    }
                }
                _ => {}
            }
        }
        Ok(span)
    }

    /// One `Span.Event` message as a contract event.
    fn wire_event(bytes: &[u8], read: &mut Read<'_, '_>) -> Result<SpanEvent, WireError> {
        let mut event = SpanEvent {
            time_unix_nano: 0,
            name: 0,
            attributes: 0,
            dropped_attributes_count: 0,
        };
        let first = read.pairs.len();
        for field in Fields::new(bytes) {
            match field? {
                (1, Wire::Fixed64(v)) => event.time_unix_nano = v,
                (2, Wire::Len(b)) => event.name = utf8(read.table.utf8_string(b))?,
                (3, Wire::Len(b)) => read.pair(b)?,
                (4, Wire::Varint(v)) => event.dropped_attributes_count = v as u32,
                _ => {}
            }
        }
        event.attributes = read.set(first);
        Ok(event)
    }

    /// One `Span.Link` message as a contract link.
    fn wire_link(bytes: &[u8], read: &mut Read<'_, '_>) -> Result<SpanLink, WireError> {
        let (mut trace_id, mut span_id): (&[u8], &[u8]) = (&[], &[]);
        let mut link = SpanLink {
            trace: context(&[], &[]),
            trace_state: 0,
            attributes: 0,
            dropped_attributes_count: 0,
            flags: 0,
        };
        let first = read.pairs.len();
        for field in Fields::new(bytes) {
            match field? {
                (1, Wire::Len(b)) => trace_id = b,
                (2, Wire::Len(b)) => span_id = b,
                (3, Wire::Len(b)) => link.trace_state = utf8(read.table.utf8_string(b))?,
                (4, Wire::Len(b)) => read.pair(b)?,
                (5, Wire::Varint(v)) => link.dropped_attributes_count = v as u32,
                (6, Wire::Fixed32(v)) => link.flags = v,
                _ => {}
            }
        }
        link.trace = context(trace_id, span_id);
        link.attributes = read.set(first);
        Ok(link)
    }

    /// One `KeyValue` message as interned (key, value) indices, or `None` when `keys` does not
    /// match its key (its value is then not read); a pair without a value is `null`, and arrays
    /// and maps become JSON as [`value`] makes them.
    fn wire_pair(
        bytes: &[u8],
        table: &mut Interner,
        keys: Option<&Patterns>,
    ) -> Result<Option<(u32, u32)>, WireError> {
        let (mut key, mut any): (&[u8], Option<&[u8]>) = (&[], None);
        for field in Fields::new(bytes) {
            match field? {
                (1, Wire::Len(b)) => key = b,
                (2, Wire::Len(b)) => any = Some(b),
                _ => {}
            }
        }
        if keys.is_some_and(|k| !k.matches(key)) {
            return Ok(None);
        }
        let key = utf8(table.utf8_string(key))?;
        let Some(any) = any else {
            return Ok(Some((key, table.value(Value::Json("null".into())))));
        };
        // The last scalar field, as a value or as text still to be checked.
        let mut scalar = None;
        for field in Fields::new(any) {
            scalar = match field? {
                (1, Wire::Len(b)) => Some(Err(b)),
                (2, Wire::Varint(v)) => Some(Ok(Value::Boolean(v != 0))),
                (3, Wire::Varint(v)) => Some(Ok(Value::Int(v as i64))),
                (4, Wire::Fixed64(v)) => Some(Ok(Value::Double(f64::from_bits(v)))),
                _ => None,
            };
        }
        let value = match scalar {
            Some(Err(text)) => utf8(table.utf8_text(text))?,
            Some(Ok(v)) => table.value(v),
            // Bytes, arrays, maps and empty values: rare enough to go through the generated types.
            None => table.value(value(
                &AnyValue::decode(any).map_err(|_| WireError("an attribute value"))?,
            )),
        };
        Ok(Some((key, value)))
    }

    /// A string interned from the wire, or why it could not be.
    fn utf8(interned: Option<u32>) -> Result<u32, WireError> {
        interned.ok_or(WireError("a string that is not UTF-8"))
    }

    /// An OTLP span kind number as the contract's kind.
    fn span_kind_of(kind: i32) -> SpanKind {
        match pt::span::SpanKind::try_from(kind) {
            Ok(pt::span::SpanKind::Internal) => SpanKind::Internal,
            Ok(pt::span::SpanKind::Server) => SpanKind::Server,
            Ok(pt::span::SpanKind::Client) => SpanKind::Client,
            Ok(pt::span::SpanKind::Producer) => SpanKind::Producer,
            Ok(pt::span::SpanKind::Consumer) => SpanKind::Consumer,
            _ => SpanKind::Unspecified,
        }
    }

    /// The entries of `list` that `range` names.
    fn within<T>(list: &[T], range: Span) -> &[T] {
        let start = (range.start as usize).min(list.len());
        let end = start.saturating_add(range.len as usize).min(list.len());
        &list[start..end]
    }

    /// The spans of `run` as `changes` (checked against `batch`, built from them) leave them: a
    /// span dropped is left out, a span they do not touch keeps its bytes, and the others are
    /// written again on the wire, field by field: each edited set of attributes (the span's, an
    /// event's or a link's) changed in place, dropped events left out, every other field
    /// copied as it was. Rewritten spans share one buffer.
    pub fn rewrite_spans(
        run: &[Record],
        batch: &SpanBatch,
        changes: &SpanChanges<'_>,
    ) -> Result<Vec<Record>, WireError> {
        let mut buf = Vec::new();
        let mut placed = Vec::with_capacity(run.len());
        for (n, (record, span)) in run.iter().zip(&batch.spans).enumerate() {
            if !changes.keeps_span(n) {
                continue;
            }
            let events = within(&batch.events, span.events);
            let links = within(&batch.links, span.links);
            let first_event = span.events.start as usize;
            let touched = changes.edits(span.attributes)
                || events
                    .iter()
                    .zip(first_event..)
                    .any(|(e, at)| !changes.keeps_event(at) || changes.edits(e.attributes))
                || links.iter().any(|l| changes.edits(l.attributes));
            if !touched {
                placed.push(Err(record));
                continue;
            }
            let start = buf.len();
            let (mut event, mut link) = (events.iter().zip(first_event..), links.iter());
            let span_set = changes.of(span.attributes);
            rewrite_message(&record.bytes, 9, span_set, &mut buf, |n, value| {
                // Each event and link of the span, in the order the batch read them.
                let (field, set, bytes) = match (n, value) {
                    (11, Wire::Len(bytes)) => match event.next() {
                        Some((_, at)) if !changes.keeps_event(at) => return Ok(Becomes::Dropped),
                        Some((e, _)) => (3, e.attributes, bytes),
                        None => return Ok(Becomes::Kept),
                    },
                    (13, Wire::Len(bytes)) => match link.next() {
                        Some(l) => (4, l.attributes, bytes),
                        None => return Ok(Becomes::Kept),
                    },
                    _ => return Ok(Becomes::Kept),
                };
                match changes.of(set) {
                    [] => Ok(Becomes::Kept),
                    edits => {
                        let mut inner = Vec::new();
                        rewrite_message(bytes, field, edits, &mut inner, |_, _| Ok(Becomes::Kept))?;
                        let mut written = Vec::with_capacity(inner.len() + 6);
                        len_field_header(&mut written, n, inner.len());
                        written.extend_from_slice(&inner);
                        Ok(Becomes::Written(written))
                    }
                }
            })?;
            placed.push(Ok((record, start..buf.len())));
        }
        let buf = Bytes::from(buf);
        Ok(placed
            .into_iter()
            .map(|p| match p {
                Err(kept) => kept.clone(),
                Ok((record, range)) => Record {
                    origin: record.origin.clone(),
                    bytes: buf.slice(range),
                },
            })
            .collect())
    }

    /// What becomes of a field of a message being written again.
    enum Becomes {
        /// It stays as it was.
        Kept,
        /// It is left out.
        Dropped,
        /// These bytes (a whole field) take its place.
        Written(Vec<u8>),
    }

    /// An attribute of a message being written again: its key and its whole field, as it was
    /// or as an edit made it.
    type Pair<'b> = (&'b [u8], std::borrow::Cow<'b, [u8]>);

    /// Message `bytes` written again at the end of `out`: its attributes (repeated `KeyValue`
    /// field `field`) through `edits`, where the first was (or where the next field is, when
    /// it has none), and each other field as `other` says, given its number and value. Bytes
    /// that stay as they were are copied in runs.
    fn rewrite_message(
        bytes: &[u8],
        field: u32,
        edits: &[SetChange<'_>],
        out: &mut Vec<u8>,
        mut other: impl FnMut(u32, Wire<'_>) -> Result<Becomes, WireError>,
    ) -> Result<(), WireError> {
        let mut pairs: Vec<Pair<'_>> = Vec::new();
        let mut fields = Fields::new(bytes);
        loop {
            let from = bytes.len() - fields.left();
            let Some(next) = fields.next() else { break };
            if let (n, Wire::Len(pair)) = next?
                && n == field
            {
                let to = bytes.len() - fields.left();
                pairs.push((pair_key(pair), bytes[from..to].into()));
            }
        }
        for edit in edits {
            edit.apply(
                &mut pairs,
                |p| p.0,
                |key, value| {
                    let pair = ProtoKeyValue {
                        key: key.to_owned(),
                        value: Some(any_value(value)),
                        ..Default::default()
                    };
                    let mut written = Vec::new();
                    len_field_header(&mut written, field, pair.encoded_len());
                    pair.encode_raw(&mut written);
                    (key.as_bytes(), written.into())
                },
            );
        }
        let (mut pending, mut run) = (Some(pairs), 0);
        let mut fields = Fields::new(bytes);
        loop {
            let from = bytes.len() - fields.left();
            let Some(next) = fields.next() else { break };
            let (n, value) = next?;
            let to = bytes.len() - fields.left();
            let pair = n == field && matches!(value, Wire::Len(_));
            let becomes = match pair {
                true => Becomes::Dropped, // written with the others, from `pairs`
                false => other(n, value)?,
            };
            let place = (pair || n > field) && pending.is_some();
            if place || !matches!(becomes, Becomes::Kept) {
                out.extend_from_slice(&bytes[run..from]);
                run = from;
            }
            if place {
                write_pairs(out, pending.take());
            }
            match becomes {
                Becomes::Kept => {}
                Becomes::Dropped => run = to,
                Becomes::Written(written) => {
                    out.extend_from_slice(&written);
                    run = to;
                }
            }
        }
        out.extend_from_slice(&bytes[run..]);
        write_pairs(out, pending);
        Ok(())
    }

    /// Writes attribute fields (none once they are written).
    fn write_pairs(out: &mut Vec<u8>, pairs: Option<Vec<Pair<'_>>>) {
        for (_, pair) in pairs.into_iter().flatten() {
            out.extend_from_slice(&pair);
        }
    }

    /// The key of a `KeyValue` message (empty when it has none, or cannot be read).
    fn pair_key(pair: &[u8]) -> &[u8] {
        Fields::new(pair)
            .map_while(Result::ok)
            .find_map(|(n, v)| match (n, v) {
                (1, Wire::Len(key)) => Some(key),
                _ => None,
            })
            .unwrap_or_default()
    }

    /// A contract status code as OTLP's.
    #[cfg(test)]
    fn status_code(code: StatusCode) -> pt::status::StatusCode {
        match code {
            StatusCode::Unset => pt::status::StatusCode::Unset,
            StatusCode::Ok => pt::status::StatusCode::Ok,
            StatusCode::Error => pt::status::StatusCode::Error,
        }
    }

    /// A contract span kind as OTLP's.
    #[cfg(test)]
    fn span_kind(kind: SpanKind) -> pt::span::SpanKind {
        match kind {
            SpanKind::Unspecified => pt::span::SpanKind::Unspecified,
            SpanKind::Internal => pt::span::SpanKind::Internal,
            SpanKind::Server => pt::span::SpanKind::Server,
            SpanKind::Client => pt::span::SpanKind::Client,
            SpanKind::Producer => pt::span::SpanKind::Producer,
            SpanKind::Consumer => pt::span::SpanKind::Consumer,
        }
    }

    /// A contract span batch's spans as OTLP spans: the reference [`span_batch`] is tested
    /// against.
    #[cfg(test)]
    pub fn spans(batch: &SpanBatch) -> Vec<pt::Span> {
        let t = &batch.table;
        batch
            .spans
            .iter()
            .map(|s| {
                let (trace_id, span_id) = trace_bytes(&s.trace);
                let (trace_id, span_id) = (trace_id.to_vec(), span_id.to_vec());
                let kind = span_kind(s.kind);
                let code = status_code(s.status_code);
                let message = t.string(s.status_message);
                pt::Span {
                    trace_id,
                    span_id,
                    trace_state: t.string(s.trace_state).to_owned(),
                    parent_span_id: s
                        .parent_span_id
                        .map(|p| p.to_be_bytes().to_vec())
                        .unwrap_or_default(),
                    flags: s.flags,
                    name: t.string(s.name).to_owned(),
                    kind: kind as i32,
                    start_time_unix_nano: s.start_time_unix_nano,
                    end_time_unix_nano: s.end_time_unix_nano,
                    attributes: proto_attributes(t, s.attributes),
                    dropped_attributes_count: s.dropped_attributes_count,
                    events: within(&batch.events, s.events)
                        .iter()
                        .map(|e| pt::span::Event {
                            time_unix_nano: e.time_unix_nano,
                            name: t.string(e.name).to_owned(),
                            attributes: proto_attributes(t, e.attributes),
                            dropped_attributes_count: e.dropped_attributes_count,
                        })
                        .collect(),
                    dropped_events_count: s.dropped_events_count,
                    links: within(&batch.links, s.links)
                        .iter()
                        .map(|l| {
                            let (trace_id, span_id) = trace_bytes(&l.trace);
                            pt::span::Link {
                                trace_id: trace_id.to_vec(),
                                span_id: span_id.to_vec(),
                                trace_state: t.string(l.trace_state).to_owned(),
                                attributes: proto_attributes(t, l.attributes),
                                dropped_attributes_count: l.dropped_attributes_count,
                                flags: l.flags,
                            }
                        })
                        .collect(),
                    dropped_links_count: s.dropped_links_count,
                    status: (code != pt::status::StatusCode::Unset || !message.is_empty()).then(
                        || pt::Status {
                            message: message.to_owned(),
                            code: code as i32,
                        },
                    ),
                }
            })
            .collect()
    }

    /// The reference encoder: a contract metric batch as an OTLP request through the
    /// generated types, which the streaming encoder is tested against.
    #[cfg(test)]
    pub(crate) mod reference {
        use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
        use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
        use opentelemetry_proto::tonic::metrics::v1 as pm;
        use opentelemetry_proto::tonic::resource::v1::Resource as ProtoResource;

        use super::{ids, proto_attributes};
        use crate::plugins::bindings::types::{
            Metric, MetricBatch, Points, Span, Table, Temporality,
        };

        fn temporality(t: Temporality) -> i32 {
            match t {
                Temporality::Cumulative => pm::AggregationTemporality::Cumulative as i32,
                Temporality::Delta => pm::AggregationTemporality::Delta as i32,
            }
        }

        /// A contract metric batch as an OTLP export request, through the generated types: the
        /// reference the streaming encoder (`export::otlp::metrics::from_batches`) is tested against.
        pub(crate) fn metric_request(batch: &MetricBatch) -> ExportMetricsServiceRequest {
            let t = &batch.table;
            let scopes = batch
                .scopes
                .iter()
                .enumerate()
                .map(|(i, s)| pm::ScopeMetrics {
                    scope: Some(InstrumentationScope {
                        name: t.string(s.name).to_owned(),
                        version: t.string(s.version).to_owned(),
                        attributes: proto_attributes(t, s.attributes),
                        ..Default::default()
                    }),
                    metrics: batch
                        .metrics
                        .iter()
                        .filter(|m| m.scope as usize == i)
                        .map(|m| metric(t, m))
                        .collect(),
                    schema_url: String::new(),
                })
                .filter(|s| !s.metrics.is_empty())
                .collect();
            ExportMetricsServiceRequest {
                resource_metrics: vec![pm::ResourceMetrics {
                    resource: Some(ProtoResource {
                        attributes: proto_attributes(t, batch.resource.attributes),
                        ..Default::default()
                    }),
                    scope_metrics: scopes,
                    schema_url: t.string(batch.resource.schema_url).to_owned(),
                }],
            }
        }

        fn slice<T: Copy>(list: &[T], span: &Span) -> Vec<T> {
            let start = span.start as usize;
            list.get(start..start.saturating_add(span.len as usize))
                .unwrap_or_default()
                .to_vec()
        }

        /// The OTLP exemplars of point `point`.
        fn exemplars(t: &Table, m: &Metric, point: usize) -> Vec<pm::Exemplar> {
            m.exemplars
                .iter()
                .filter(|e| e.point as usize == point)
                .map(|e| {
                    let (trace_id, span_id) = ids(e.trace.as_ref());
                    pm::Exemplar {
                        filtered_attributes: proto_attributes(t, e.filtered_attributes),
                        time_unix_nano: e.time_unix_nano,
                        span_id,
                        trace_id,
                        value: Some(pm::exemplar::Value::AsDouble(e.value)),
                    }
                })
                .collect()
        }

        fn metric(t: &Table, m: &Metric) -> pm::Metric {
            let numbers = |points: &[crate::plugins::bindings::types::NumberPoint]| {
                points
                    .iter()
                    .enumerate()
                    .map(|(i, p)| pm::NumberDataPoint {
                        attributes: proto_attributes(t, p.attributes),
                        start_time_unix_nano: p.start_time_unix_nano,
                        time_unix_nano: p.time_unix_nano,
                        value: Some(pm::number_data_point::Value::AsDouble(p.value)),
                        exemplars: exemplars(t, m, i),
                        ..Default::default()
                    })
                    .collect()
            };
            let data = match &m.points {
                Points::Gauge(points) => pm::metric::Data::Gauge(pm::Gauge {
                    data_points: numbers(points),
                }),
                Points::Sum(points) => pm::metric::Data::Sum(pm::Sum {
                    data_points: numbers(points),
                    aggregation_temporality: temporality(m.temporality),
                    is_monotonic: m.monotonic,
                }),
                Points::Histogram(points) => pm::metric::Data::Histogram(pm::Histogram {
                    data_points: points
                        .iter()
                        .enumerate()
                        .map(|(i, p)| pm::HistogramDataPoint {
                            attributes: proto_attributes(t, p.attributes),
                            start_time_unix_nano: p.start_time_unix_nano,
                            time_unix_nano: p.time_unix_nano,
                            count: p.count,
                            sum: p.sum,
                            bucket_counts: slice(&m.counts, &p.bucket_counts),
                            explicit_bounds: slice(&m.bounds, &p.bounds),
                            min: p.min,
                            max: p.max,
                            exemplars: exemplars(t, m, i),
                            ..Default::default()
                        })
                        .collect(),
                    aggregation_temporality: temporality(m.temporality),
                }),
                Points::ExponentialHistogram(points) => {
                    let buckets = |offset: i32, span: &Span| {
                        Some(pm::exponential_histogram_data_point::Buckets {
                            offset,
                            bucket_counts: slice(&m.counts, span),
                        })
                    };
                    pm::metric::Data::ExponentialHistogram(pm::ExponentialHistogram {
                        data_points: points
                            .iter()
                            .enumerate()
                            .map(|(i, p)| pm::ExponentialHistogramDataPoint {
                                attributes: proto_attributes(t, p.attributes),
                                start_time_unix_nano: p.start_time_unix_nano,
                                time_unix_nano: p.time_unix_nano,
                                count: p.count,
                                sum: p.sum,
                                scale: p.scale,
                                zero_count: p.zero_count,
                                positive: buckets(p.positive_offset, &p.positive),
                                negative: buckets(p.negative_offset, &p.negative),
                                exemplars: exemplars(t, m, i),
                                min: p.min,
                                max: p.max,
                                zero_threshold: p.zero_threshold,
                                ..Default::default()
                            })
                            .collect(),
                        aggregation_temporality: temporality(m.temporality),
                    })
                }
            };
            pm::Metric {
                name: t.string(m.name).to_owned(),
                description: t.string(m.description).to_owned(),
                unit: t.string(m.unit).to_owned(),
                metadata: Vec::new(),
                data: Some(data),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Descriptor;
    use crate::model::attributes::Value as HostValue;

    #[test]
    fn a_probe_holds_each_cut_set_once_counts_every_point_and_gives_way_to_quantiles_it_reads() {
        let set = |pairs: &[(&str, &str)]| {
            AttributeSet::from_pairs(
                pairs
                    .iter()
                    .map(|(k, v)| (Arc::from(*k), HostValue::Str(Arc::from(*v))))
                    .collect(),
            )
        };
        let keys = Patterns::new(&["tier"]);
        let mut probe = Probe::new(&keys);
        probe.point(&set(&[("tier", "pro"), ("user", "1")]), false);
        probe.point(&set(&[("tier", "pro"), ("user", "2")]), false);
        probe.point(&set(&[("user", "3")]), true);
        probe.scope("scope", "1.0", &set(&[]));
        let (batch, points) = probe
            .batch(&set(&[("service.name", "app")]))
            .expect("stands for the batch");
        assert_eq!(points, 3);
        let t = &batch.table;
        let sets: Vec<String> = (0..t.sets.len() as u32)
            .map(|i| format!("{:?}", t.set(i).collect::<Vec<_>>()))
            .collect();
        assert_eq!(
            sets,
            ["[]", "[(\"tier\", Value::String(\"pro\"))]"],
            "the empty set, and `tier=pro` once; `user` and `service.name` are not read"
        );
        assert_eq!((batch.resource.attributes, batch.scopes.len()), (0, 1));
        assert_eq!(t.string(batch.scopes[0].name), "scope");
        // A summary's points gain `quantile` in the batch: a probe reading it cannot stand.
        let keys = Patterns::new(&["q*"]);
        let mut probe = Probe::new(&keys);
        probe.point(&set(&[]), true);
        assert!(probe.batch(&set(&[])).is_none());
    }
    use crate::model::metric::HistogramAggregation;
    use crate::model::metric::InstrumentKind;

    /// Each exponential point with its positive and negative bucket counts.
    fn exponential_points(
        batch: &MetricBatch,
    ) -> Vec<(ExponentialHistogramPoint, Vec<u64>, Vec<u64>)> {
        let counts =
            |m: &Metric, s: &Span| m.counts[s.start as usize..(s.start + s.len) as usize].to_vec();
        batch
            .metrics
            .iter()
            .flat_map(|m| match &m.points {
                Points::ExponentialHistogram(points) => points
                    .iter()
                    .map(|p| (*p, counts(m, &p.positive), counts(m, &p.negative)))
                    .collect(),
                _ => Vec::new(),
            })
            .collect()
    }

    #[test]
    fn exponential_deltas_survive_a_scale_change() {
        let registry = Registry::new(10)
            .with_histogram_aggregation(HistogramAggregation::Base2ExponentialBucketHistogram);
        let latency = registry
            .instrument(
                Descriptor {
                    name: "latency".into(),
                    unit: "s".into(),
                    description: String::new(),
                    kind: InstrumentKind::Histogram,
                    scope: "test".into(),
                },
                &[],
            )
            .expect("instrument");
        let resource = crate::sources::resource::detect(&Default::default());
        let mut delta = DeltaTracker::new(crate::model::metric::TemporalityPreference::Delta);
        for v in [1.0, 2.0, -2.0, 0.0] {
            latency.record(&[], v);
        }
        let first = exponential_points(&metric_batch(&registry, &resource, Some(&mut delta)).batch);
        assert_eq!((first[0].0.count, first[0].0.zero_count), (4, 1));
        assert_eq!((first[0].0.min, first[0].0.max), (Some(-2.0), Some(2.0)));

        // 1000 forces a coarser scale; the delta holds only what came since.
        latency.record(&[], 1000.0);
        latency.record(&[], 1.5);
        let second =
            exponential_points(&metric_batch(&registry, &resource, Some(&mut delta)).batch);
        let (p, positive, negative) = &second[0];
        assert!(p.scale < first[0].0.scale);
        assert_eq!((p.count, p.zero_count, p.sum), (2, 0, Some(1001.5)));
        assert_eq!(positive.iter().sum::<u64>(), 2);
        assert_eq!(negative.iter().sum::<u64>(), 0);
        assert_eq!(
            (p.min, p.max),
            (None, None),
            "an interval's extremes are unknown"
        );

        let third = exponential_points(&metric_batch(&registry, &resource, Some(&mut delta)).batch);
        assert!(
            third.is_empty(),
            "a quiet series is left out of a delta batch"
        );
    }

    #[test]
    fn spans_round_trip_from_the_wire_through_the_contracts_batch_field_for_field() {
        use opentelemetry_proto::tonic::common::v1::{
            AnyValue, ArrayValue, InstrumentationScope, any_value,
        };
        use opentelemetry_proto::tonic::resource::v1::Resource as ProtoResource;
        use opentelemetry_proto::tonic::trace::v1::{Span as ProtoSpan, Status, span};

        let full = ProtoSpan {
            trace_id: (1..=16).collect(),
            span_id: (17..=24).collect(),
            trace_state: "k=v".into(),
            parent_span_id: (25..=32).collect(),
            flags: 0x101,
            name: "chat m".into(),
            kind: span::SpanKind::Client as i32,
            start_time_unix_nano: 10,
            end_time_unix_nano: 20,
            attributes: vec![
                kv("gen_ai.request.model", text("m")),
                kv("gen_ai.usage.input_tokens", any_value::Value::IntValue(9)),
                kv("negative", any_value::Value::IntValue(-3)),
                kv("raw", any_value::Value::BytesValue(vec![0, 255])),
                kv(
                    "list",
                    any_value::Value::ArrayValue(ArrayValue {
                        values: vec![AnyValue {
                            value: Some(text("x")),
                        }],
                    }),
                ),
            ],
            dropped_attributes_count: 1,
            events: vec![span::Event {
                time_unix_nano: 15,
                name: "first_token".into(),
                attributes: vec![kv("n", any_value::Value::DoubleValue(0.5))],
                dropped_attributes_count: 2,
            }],
            dropped_events_count: 3,
            links: vec![span::Link {
                trace_id: vec![7; 16],
                span_id: vec![8; 8],
                trace_state: "a=b".into(),
                attributes: vec![kv("link", any_value::Value::BoolValue(true))],
                dropped_attributes_count: 4,
                flags: 1,
            }],
            dropped_links_count: 5,
            status: Some(Status {
                message: "boom".into(),
                code: 2,
            }),
        };
        let root = ProtoSpan {
            trace_id: vec![9; 16],
            span_id: vec![6; 8],
            name: "root".into(),
            ..Default::default()
        };
        let origin = crate::model::record::Origin::new(
            &ProtoResource {
                attributes: vec![kv("service.name", text("app"))],
                ..Default::default()
            },
            &InstrumentationScope {
                name: "tracer".into(),
                version: "1".into(),
                ..Default::default()
            },
        );
        let spans = [full, root];
        let origin = std::sync::Arc::new(origin);
        let received = crate::model::record::Record::encode_all(&spans, &origin);
        let batch = otlp::span_batch(&received, &origin, None).expect("spans on the wire");
        assert_eq!(batch.spans[0].parent_span_id, Some(0x191a_1b1c_1d1e_1f20));
        assert_eq!(batch.spans[1].parent_span_id, None);
        assert_eq!(
            batch.table.string(batch.scopes[0].name),
            "tracer",
            "the origin's scope"
        );
        assert_eq!(otlp::spans(&batch), spans);
        // A name, an attribute key and a string value that are not UTF-8; the span before
        // them stored its strings, which are not checked again.
        for (bytes, what) in [
            (&[0x2a, 0x02, 0xff, 0xfe][..], "a name"),
            (&[0x4a, 0x03, 0x0a, 0x01, 0xff], "a key"),
            (
                &[0x4a, 0x08, 0x0a, 0x01, b'k', 0x12, 0x03, 0x0a, 0x01, 0xff],
                "a value",
            ),
        ] {
            let damaged = crate::model::record::Record {
                origin: origin.clone(),
                bytes: bytes::Bytes::copy_from_slice(bytes),
            };
            assert_eq!(
                otlp::span_batch(&[received[0].clone(), damaged], &origin, None)
                    .err()
                    .map(|e| e.to_string()),
                Some("malformed protobuf: a string that is not UTF-8".into()),
                "{what} that is not UTF-8"
            );
        }
    }

    /// An OTLP attribute.
    fn kv(
        key: &str,
        value: opentelemetry_proto::tonic::common::v1::any_value::Value,
    ) -> opentelemetry_proto::tonic::common::v1::KeyValue {
        opentelemetry_proto::tonic::common::v1::KeyValue {
            key: key.into(),
            value: Some(opentelemetry_proto::tonic::common::v1::AnyValue { value: Some(value) }),
            ..Default::default()
        }
    }

    /// An OTLP string value.
    fn text(s: &str) -> opentelemetry_proto::tonic::common::v1::any_value::Value {
        opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(s.into())
    }

    /// Three chat spans as records, each with a prompt in its attributes and in an event, and a
    /// link; the first and third have the same attributes, the second other token counts.
    fn chat_spans() -> (
        Vec<opentelemetry_proto::tonic::trace::v1::Span>,
        Vec<crate::model::record::Record>,
    ) {
        use opentelemetry_proto::tonic::common::v1::any_value;
        use opentelemetry_proto::tonic::trace::v1::{Span as ProtoSpan, span};
        let chat = |n: u8, tokens: i64| ProtoSpan {
            trace_id: vec![n; 16],
            span_id: vec![n; 8],
            name: "chat gpt-x".into(),
            kind: span::SpanKind::Client as i32,
            start_time_unix_nano: 100 + u64::from(n),
            end_time_unix_nano: 900,
            attributes: vec![
                kv("gen_ai.request.model", text("gpt-x")),
                kv("gen_ai.prompt", text("secret")),
                kv(
                    "gen_ai.usage.input_tokens",
                    any_value::Value::IntValue(tokens),
                ),
            ],
            events: vec![
                span::Event {
                    time_unix_nano: 15,
                    name: "gen_ai.content.prompt".into(),
                    attributes: vec![kv("gen_ai.prompt", text("secret"))],
                    dropped_attributes_count: 2,
                },
                span::Event {
                    time_unix_nano: 16,
                    name: "first_token".into(),
                    ..Default::default()
                },
            ],
            dropped_events_count: 3,
            links: vec![span::Link {
                trace_id: vec![7; 16],
                span_id: vec![8; 8],
                attributes: vec![kv("link", any_value::Value::BoolValue(true))],
                ..Default::default()
            }],
            ..Default::default()
        };
        let spans = vec![chat(1, 9), chat(2, 10), chat(3, 9)];
        let origin = std::sync::Arc::new(crate::model::record::Origin::new(
            &Default::default(),
            &Default::default(),
        ));
        let records = crate::model::record::Record::encode_all(&spans, &origin);
        (spans, records)
    }

    #[test]
    fn a_batch_read_for_some_keys_holds_only_those_and_one_set_per_distinct_cut() {
        let (_, records) = chat_spans();
        let keys = crate::model::content::Patterns::new(&["gen_ai.prompt*", "link"]);
        let batch = otlp::span_batch(&records, &records[0].origin, Some(&keys)).expect("read");
        let t = &batch.table;
        let set = |i: u32| {
            t.set(i)
                .map(|(k, v)| format!("{k}={v:?}"))
                .collect::<Vec<_>>()
        };
        let sets: Vec<u32> = batch.spans.iter().map(|s| s.attributes).collect();
        assert_eq!(sets[0], sets[1], "the spans differ only in keys not read");
        assert_eq!(set(sets[0]), ["gen_ai.prompt=Value::String(\"secret\")"]);
        assert_eq!(
            batch
                .events
                .iter()
                .map(|e| set(e.attributes).len())
                .collect::<Vec<_>>(),
            [1, 0, 1, 0, 1, 0]
        );
        assert_eq!(
            set(batch.links[0].attributes),
            ["link=Value::Boolean(true)"]
        );
        assert_eq!(
            t.values.len(),
            2,
            "one prompt and one boolean: no model, no token counts"
        );
        assert!(
            t.strings
                .iter()
                .all(|s| !s.starts_with("gen_ai.request") && !s.starts_with("gen_ai.usage")),
            "keys not read do not cross: {:?}",
            t.strings
        );
        let all = otlp::span_batch(&records, &records[0].origin, None).expect("read");
        assert_ne!(all.spans[0].attributes, all.spans[1].attributes);
        assert_eq!(all.spans[0].attributes, all.spans[2].attributes);
    }

    #[test]
    fn edits_rewrite_spans_on_the_wire_as_prost_would_write_the_edited_spans() {
        use crate::plugins::bindings::span_transformer::SpanEdit;
        use crate::plugins::bindings::transformer::{RemoveAttribute, SetAttribute};
        use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
        let (spans, records) = chat_spans();
        let origin = records[0].origin.clone();
        let keys = crate::model::content::Patterns::new(&["gen_ai.prompt", "gen_ai.request.model"]);
        let batch = otlp::span_batch(&records, &origin, Some(&keys)).expect("read");
        let (span_set, event_set) = (batch.spans[0].attributes, batch.events[0].attributes);
        let edits = [
            SpanEdit::RemoveAttribute(RemoveAttribute {
                set: span_set,
                key: "gen_ai.prompt".into(),
            }),
            SpanEdit::SetAttribute(SetAttribute {
                set: span_set,
                key: "gen_ai.request.model".into(),
                value: Value::String("m2".into()),
            }),
            SpanEdit::SetAttribute(SetAttribute {
                set: span_set,
                key: "redacted".into(),
                value: Value::Int(1),
            }),
            SpanEdit::SetAttribute(SetAttribute {
                set: event_set,
                key: "gen_ai.prompt".into(),
                value: Value::String("[redacted]".into()),
            }),
            SpanEdit::DropEvent(3),
            SpanEdit::DropSpan(2),
        ];
        let changes = batch::span_changes(&batch, &edits)
            .expect("valid")
            .expect("edits");
        let out = otlp::rewrite_spans(&records, &batch, &changes).expect("rewritten");
        let mut expected = spans[..2].to_vec();
        for (n, s) in expected.iter_mut().enumerate() {
            s.attributes.remove(1);
            s.attributes[0].value = Some(AnyValue {
                value: Some(any_value::Value::StringValue("m2".into())),
            });
            s.attributes.push(KeyValue {
                key: "redacted".into(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::IntValue(1)),
                }),
                ..Default::default()
            });
            s.events[0].attributes[0].value = Some(AnyValue {
                value: Some(any_value::Value::StringValue("[redacted]".into())),
            });
            if n == 1 {
                s.events.remove(1);
            }
        }
        let bytes: Vec<Vec<u8>> = out.iter().map(|r| r.bytes.to_vec()).collect();
        let wanted: Vec<Vec<u8>> = expected.iter().map(prost::Message::encode_to_vec).collect();
        assert_eq!(
            bytes, wanted,
            "span 2 dropped; both others edited through the set they share, span 1 without its second event, byte for byte"
        );
        assert!(
            out.iter()
                .all(|r| std::sync::Arc::ptr_eq(&r.origin, &origin))
        );

        // Spans no edit touches keep their bytes, shared, not copied.
        let only = [SpanEdit::DropEvent(5)];
        let changes = batch::span_changes(&batch, &only)
            .expect("valid")
            .expect("edits");
        let out = otlp::rewrite_spans(&records, &batch, &changes).expect("rewritten");
        assert_eq!(out.len(), 3);
        assert_eq!(out[0].bytes.as_ptr(), records[0].bytes.as_ptr());
        assert_eq!(out[1].bytes.as_ptr(), records[1].bytes.as_ptr());
        let mut third = spans[2].clone();
        third.events.remove(1);
        assert_eq!(out[2].bytes.to_vec(), prost::Message::encode_to_vec(&third));
    }
}
