//! Typed accessors over the contract's interned batches: metrics → points → attributes by name,
//! with no index to resolve by hand.

use crate::{
    ExponentialHistogramPoint, HistogramPoint, LogBatch, LogRecord, Metric, MetricBatch,
    NumberPoint, Points, Scope, Span, SpanBatch, SpanEvent, SpanLink, Table, Temporality,
    TraceContext, TraceSpan, Value,
};

impl Table {
    /// String `i` of the table (`""` when out of range).
    pub fn string(&self, i: u32) -> &str {
        self.strings.get(i as usize).map_or("", String::as_str)
    }

    /// Attribute set `i` of the table.
    pub fn attributes(&self, set: u32) -> Attributes<'_> {
        Attributes { table: self, set }
    }

    fn slice<'a, T>(list: &'a [T], span: &Span) -> &'a [T] {
        let start = span.start as usize;
        list.get(start..start.saturating_add(span.len as usize))
            .unwrap_or_default()
    }
}

/// An attribute set of a batch: the attributes of a point, a record, a scope or the resource.
#[derive(Debug, Clone, Copy)]
pub struct Attributes<'a> {
    table: &'a Table,
    set: u32,
}

impl<'a> Attributes<'a> {
    /// The set's index in the batch: equal sets have equal indices, so it keys a [`PerSet`] cache.
    pub fn index(&self) -> u32 {
        self.set
    }

    /// Each attribute as its key and value, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, &'a Value)> + 'a {
        let table = self.table;
        let span = table.sets.get(self.set as usize).copied();
        span.map_or(&[][..], |s| Table::slice(&table.attributes, &s))
            .iter()
            .filter_map(move |a| Some((table.string(a.key), table.values.get(a.value as usize)?)))
    }

    /// The value of attribute `key`, if the set has it.
    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// The number of attributes.
    pub fn len(&self) -> usize {
        self.table
            .sets
            .get(self.set as usize)
            .map_or(0, |s| s.len as usize)
    }

    /// Whether the set has no attributes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Something computed once per attribute set of a batch (rendered tags, labels) and reused by
/// every point that has the set.
#[derive(Debug)]
pub struct PerSet<T>(Vec<Option<T>>);

impl<T> PerSet<T> {
    /// An empty cache for a batch's sets.
    pub fn new(table: &Table) -> Self {
        Self(
            std::iter::repeat_with(|| None)
                .take(table.sets.len())
                .collect(),
        )
    }

    /// The value for `attributes`, made by `make` the first time the set is met.
    pub fn get(
        &mut self,
        attributes: Attributes<'_>,
        make: impl FnOnce(Attributes<'_>) -> T,
    ) -> &T {
        let i = attributes.index() as usize;
        if i >= self.0.len() {
            self.0.resize_with(i + 1, || None);
        }
        self.0[i].get_or_insert_with(|| make(attributes))
    }
}

/// The instrumentation scope of a metric or record.
#[derive(Debug, Clone, Copy)]
pub struct ScopeRef<'a> {
    table: &'a Table,
    scope: Option<&'a Scope>,
}

impl<'a> ScopeRef<'a> {
    /// The scope's name (`""` if unknown).
    pub fn name(&self) -> &'a str {
        self.scope.map_or("", |s| self.table.string(s.name))
    }

    /// The scope's version (`""` if unknown).
    pub fn version(&self) -> &'a str {
        self.scope.map_or("", |s| self.table.string(s.version))
    }

    /// The scope's attributes.
    pub fn attributes(&self) -> Attributes<'a> {
        self.table
            .attributes(self.scope.map_or(0, |s| s.attributes))
    }
}

/// The kind of a metric's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// The last value of each series.
    Gauge,
    /// A sum; a monotonic one only grows (a counter).
    Sum {
        /// Whether it only grows.
        monotonic: bool,
    },
    /// An explicit-bucket histogram.
    Histogram,
    /// A base-2 exponential histogram.
    ExponentialHistogram,
}

impl MetricBatch {
    /// Every metric of the batch.
    pub fn metrics(&self) -> impl Iterator<Item = MetricRef<'_>> {
        self.metrics
            .iter()
            .enumerate()
            .map(move |(i, metric)| MetricRef {
                batch: self,
                index: i as u32,
                metric,
            })
    }

    /// The resource's attributes.
    pub fn resource(&self) -> Attributes<'_> {
        self.table.attributes(self.resource.attributes)
    }
}

/// One metric of a batch.
#[derive(Debug, Clone, Copy)]
pub struct MetricRef<'a> {
    batch: &'a MetricBatch,
    index: u32,
    metric: &'a Metric,
}

impl<'a> MetricRef<'a> {
    /// The metric's position in the batch, as edits name it.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// The metric's name.
    pub fn name(&self) -> &'a str {
        self.batch.table.string(self.metric.name)
    }

    /// The metric's unit (UCUM, as OpenTelemetry writes it).
    pub fn unit(&self) -> &'a str {
        self.batch.table.string(self.metric.unit)
    }

    /// The metric's description.
    pub fn description(&self) -> &'a str {
        self.batch.table.string(self.metric.description)
    }

    /// The scope that produced it.
    pub fn scope(&self) -> ScopeRef<'a> {
        ScopeRef {
            table: &self.batch.table,
            scope: self.batch.scopes.get(self.metric.scope as usize),
        }
    }

    /// The kind of its data.
    pub fn kind(&self) -> MetricKind {
        match &self.metric.points {
            Points::Gauge(_) => MetricKind::Gauge,
            Points::Sum(_) => MetricKind::Sum {
                monotonic: self.metric.monotonic,
            },
            Points::Histogram(_) => MetricKind::Histogram,
            Points::ExponentialHistogram(_) => MetricKind::ExponentialHistogram,
        }
    }

    /// Whether its points are totals since start or since the previous export.
    pub fn temporality(&self) -> Temporality {
        self.metric.temporality
    }

    /// How many points (series) the metric carries.
    pub fn point_count(&self) -> usize {
        match &self.metric.points {
            Points::Gauge(p) | Points::Sum(p) => p.len(),
            Points::Histogram(p) => p.len(),
            Points::ExponentialHistogram(p) => p.len(),
        }
    }

    /// The points of a gauge or a sum (none for a histogram).
    pub fn numbers(&self) -> impl Iterator<Item = Point<'a, NumberPoint>> + 'a {
        let list: &'a [NumberPoint] = match &self.metric.points {
            Points::Gauge(p) | Points::Sum(p) => p,
            _ => &[],
        };
        self.points(list)
    }

    /// The points of an explicit-bucket histogram (none for other kinds).
    pub fn histograms(&self) -> impl Iterator<Item = Point<'a, HistogramPoint>> + 'a {
        let list: &'a [HistogramPoint] = match &self.metric.points {
            Points::Histogram(p) => p,
            _ => &[],
        };
        self.points(list)
    }

    /// The points of an exponential histogram (none for other kinds).
    pub fn exponential_histograms(
        &self,
    ) -> impl Iterator<Item = Point<'a, ExponentialHistogramPoint>> + 'a {
        let list: &'a [ExponentialHistogramPoint] = match &self.metric.points {
            Points::ExponentialHistogram(p) => p,
            _ => &[],
        };
        self.points(list)
    }

    fn points<P>(&self, list: &'a [P]) -> impl Iterator<Item = Point<'a, P>> + 'a {
        let metric = *self;
        list.iter().enumerate().map(move |(i, point)| Point {
            metric,
            index: i as u32,
            point,
        })
    }
}

/// One point of a metric: its fields (through `Deref`), its attributes and its exemplars.
#[derive(Debug, Clone, Copy)]
pub struct Point<'a, P> {
    metric: MetricRef<'a>,
    index: u32,
    point: &'a P,
}

impl<P> std::ops::Deref for Point<'_, P> {
    type Target = P;

    fn deref(&self) -> &P {
        self.point
    }
}

/// What every kind of point has.
pub trait HasAttributes {
    /// The index of the point's attribute set.
    fn set(&self) -> u32;
}

impl HasAttributes for NumberPoint {
    fn set(&self) -> u32 {
        self.attributes
    }
}

impl HasAttributes for HistogramPoint {
    fn set(&self) -> u32 {
        self.attributes
    }
}

impl HasAttributes for ExponentialHistogramPoint {
    fn set(&self) -> u32 {
        self.attributes
    }
}

impl<'a, P: HasAttributes> Point<'a, P> {
    /// The point's attributes.
    pub fn attributes(&self) -> Attributes<'a> {
        self.metric.batch.table.attributes(self.point.set())
    }

    /// The metric it belongs to.
    pub fn metric(&self) -> MetricRef<'a> {
        self.metric
    }

    /// The point's position in its metric, as edits name it.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// The exemplars measured within the point's interval.
    pub fn exemplars(&self) -> impl Iterator<Item = &'a crate::Exemplar> + 'a {
        let index = self.index;
        self.metric
            .metric
            .exemplars
            .iter()
            .filter(move |e| e.point == index)
    }
}

impl<'a> Point<'a, HistogramPoint> {
    /// The upper bounds of the buckets but the last.
    pub fn bounds(&self) -> &'a [f64] {
        Table::slice(&self.metric.metric.bounds, &self.point.bounds)
    }

    /// The count of each bucket; one more than the bounds.
    pub fn bucket_counts(&self) -> &'a [u64] {
        Table::slice(&self.metric.metric.counts, &self.point.bucket_counts)
    }
}

impl<'a> Point<'a, ExponentialHistogramPoint> {
    /// The counts of the positive buckets, from index `positive_offset`.
    pub fn positive_counts(&self) -> &'a [u64] {
        Table::slice(&self.metric.metric.counts, &self.point.positive)
    }

    /// The counts of the negative buckets, from index `negative_offset`.
    pub fn negative_counts(&self) -> &'a [u64] {
        Table::slice(&self.metric.metric.counts, &self.point.negative)
    }
}

impl LogBatch {
    /// Every log record of the batch.
    pub fn records(&self) -> impl Iterator<Item = RecordRef<'_>> {
        self.records
            .iter()
            .enumerate()
            .map(move |(i, record)| RecordRef {
                batch: self,
                index: i as u32,
                record,
            })
    }

    /// The resource's attributes.
    pub fn resource(&self) -> Attributes<'_> {
        self.table.attributes(self.resource.attributes)
    }
}

/// One log record of a batch: its fields (through `Deref`), and its strings and attributes resolved.
#[derive(Debug, Clone, Copy)]
pub struct RecordRef<'a> {
    batch: &'a LogBatch,
    index: u32,
    record: &'a LogRecord,
}

impl std::ops::Deref for RecordRef<'_> {
    type Target = LogRecord;

    fn deref(&self) -> &LogRecord {
        self.record
    }
}

impl<'a> RecordRef<'a> {
    /// The record's position in the batch, as edits name it.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// The record's attributes.
    pub fn attributes(&self) -> Attributes<'a> {
        self.batch.table.attributes(self.record.attributes)
    }

    /// The severity text (`INFO`), possibly empty.
    pub fn severity_text(&self) -> &'a str {
        self.batch.table.string(self.record.severity_text)
    }

    /// The event name, possibly empty.
    pub fn event_name(&self) -> &'a str {
        self.batch.table.string(self.record.event_name)
    }

    /// The body, if any.
    pub fn body(&self) -> Option<&'a Value> {
        self.record.body.as_ref()
    }

    /// The scope that produced it.
    pub fn scope(&self) -> ScopeRef<'a> {
        ScopeRef {
            table: &self.batch.table,
            scope: self.batch.scopes.get(self.record.scope as usize),
        }
    }
}

impl SpanBatch {
    /// Every span of the batch.
    pub fn spans(&self) -> impl Iterator<Item = SpanRef<'_>> {
        self.spans.iter().enumerate().map(move |(i, span)| SpanRef {
            batch: self,
            index: i as u32,
            span,
        })
    }

    /// The resource's attributes.
    pub fn resource(&self) -> Attributes<'_> {
        self.table.attributes(self.resource.attributes)
    }

    /// Every attribute set of the batch (of spans, events, links, scopes and the resource), each once.
    pub fn attribute_sets(&self) -> impl Iterator<Item = Attributes<'_>> {
        (0..self.table.sets.len() as u32).map(|i| self.table.attributes(i))
    }
}

/// One span of a batch: its fields (through `Deref`), and its strings, attributes, events and
/// links resolved.
#[derive(Debug, Clone, Copy)]
pub struct SpanRef<'a> {
    batch: &'a SpanBatch,
    index: u32,
    span: &'a TraceSpan,
}

impl std::ops::Deref for SpanRef<'_> {
    type Target = TraceSpan;

    fn deref(&self) -> &TraceSpan {
        self.span
    }
}

impl<'a> SpanRef<'a> {
    /// The span's position in the batch, as edits name it.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// The span's name.
    pub fn name(&self) -> &'a str {
        self.batch.table.string(self.span.name)
    }

    /// The span's attributes.
    pub fn attributes(&self) -> Attributes<'a> {
        self.batch.table.attributes(self.span.attributes)
    }

    /// The status message, possibly empty.
    pub fn status_message(&self) -> &'a str {
        self.batch.table.string(self.span.status_message)
    }

    /// The scope that produced it.
    pub fn scope(&self) -> ScopeRef<'a> {
        ScopeRef {
            table: &self.batch.table,
            scope: self.batch.scopes.get(self.span.scope as usize),
        }
    }

    /// Its events, in order.
    pub fn events(&self) -> impl Iterator<Item = EventRef<'a>> + 'a {
        let batch = self.batch;
        let start = self.span.events.start;
        Table::slice(&batch.events, &self.span.events)
            .iter()
            .zip(start..)
            .map(move |(event, index)| EventRef {
                batch,
                index,
                event,
            })
    }

    /// Its links, in order.
    pub fn links(&self) -> &'a [SpanLink] {
        Table::slice(&self.batch.links, &self.span.links)
    }
}

/// One event of a span: its fields (through `Deref`), its name and attributes resolved.
#[derive(Debug, Clone, Copy)]
pub struct EventRef<'a> {
    batch: &'a SpanBatch,
    index: u32,
    event: &'a SpanEvent,
}

impl std::ops::Deref for EventRef<'_> {
    type Target = SpanEvent;

    fn deref(&self) -> &SpanEvent {
        self.event
    }
}

impl<'a> EventRef<'a> {
    /// The event's position in the batch's `events`, as edits name it.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// The event's name.
    pub fn name(&self) -> &'a str {
        self.batch.table.string(self.event.name)
    }

    /// The event's attributes.
    pub fn attributes(&self) -> Attributes<'a> {
        self.batch.table.attributes(self.event.attributes)
    }
}

impl TraceContext {
    /// The 16-byte trace id as 32 lowercase hex digits.
    pub fn trace_id_hex(&self) -> String {
        format!("{:016x}{:016x}", self.trace_id_high, self.trace_id_low)
    }

    /// The 8-byte span id as 16 lowercase hex digits.
    pub fn span_id_hex(&self) -> String {
        format!("{:016x}", self.span_id)
    }
}
