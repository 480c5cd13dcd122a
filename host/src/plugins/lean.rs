//! Lean lowering: a batch crosses into a transform with only the parts it reads, the others
//! taken out for the call and put back after it (nothing is copied).

use super::bindings::reader::Parts;
use super::bindings::types::{
    Attribute, Exemplar, LogBatch, LogRecord, Metric, MetricBatch, Points, Span, SpanBatch,
    SpanEvent, SpanLink, Table, TraceSpan, Value,
};

/// A contract batch whose unread parts can be taken out and put back.
pub(crate) trait Lean {
    /// What was taken out.
    type Taken;

    /// Takes out what `parts` leaves out.
    fn strip(&mut self, parts: Parts) -> Self::Taken;

    /// Puts back what [`Lean::strip`] took.
    fn restore(&mut self, taken: Self::Taken);
}

/// Runs `f` on `batch` holding only `parts`, and gives the batch back whole.
pub(crate) fn lowered<B: Lean, R>(batch: &mut B, parts: Parts, f: impl FnOnce(&B) -> R) -> R {
    if parts.contains(Parts::all()) {
        return f(batch);
    }
    let taken = batch.strip(parts);
    let out = f(batch);
    batch.restore(taken);
    out
}

/// The attribute lists of a table.
type TableParts = (Vec<Value>, Vec<Attribute>, Vec<Span>);

/// Takes the attribute table's lists out unless `parts` reads attributes.
fn strip_table(table: &mut Table, parts: Parts) -> Option<TableParts> {
    (!parts.contains(Parts::ATTRIBUTES)).then(|| {
        (
            std::mem::take(&mut table.values),
            std::mem::take(&mut table.attributes),
            std::mem::take(&mut table.sets),
        )
    })
}

/// Puts a table's attribute lists back.
fn restore_table(table: &mut Table, taken: Option<TableParts>) {
    if let Some((values, attributes, sets)) = taken {
        (table.values, table.attributes, table.sets) = (values, attributes, sets);
    }
}

/// An empty list of the same kind of points.
fn no_points(points: &Points) -> Points {
    match points {
        Points::Gauge(_) => Points::Gauge(Vec::new()),
        Points::Sum(_) => Points::Sum(Vec::new()),
        Points::Histogram(_) => Points::Histogram(Vec::new()),
        Points::ExponentialHistogram(_) => Points::ExponentialHistogram(Vec::new()),
    }
}

/// A metric's payload: its points, bounds, counts and exemplars.
type Payload = (Points, Vec<f64>, Vec<u64>, Vec<Exemplar>);

/// What a metric or log batch's transform does not read: its table's lists, its entries, or
/// each entry's payload.
#[derive(Debug)]
pub(crate) struct Taken<E, P> {
    table: Option<TableParts>,
    entries: Option<Vec<E>>,
    payloads: Vec<P>,
}

/// Takes out of `table` and `entries` what `parts` leaves out; `payload` takes one entry's.
fn strip_entries<E, P>(
    table: &mut Table,
    entries: &mut Vec<E>,
    parts: Parts,
    payload: impl FnMut(&mut E) -> P,
) -> Taken<E, P> {
    let table = strip_table(table, parts);
    let (mut taken, mut payloads) = (None, Vec::new());
    if !parts.intersects(Parts::ENTRIES | Parts::PAYLOAD) {
        taken = Some(std::mem::take(entries));
    } else if !parts.contains(Parts::PAYLOAD) {
        payloads = entries.iter_mut().map(payload).collect();
    }
    Taken {
        table,
        entries: taken,
        payloads,
    }
}

/// Puts back what [`strip_entries`] took; `put` gives one entry its payload.
fn restore_entries<E, P>(
    table: &mut Table,
    entries: &mut Vec<E>,
    taken: Taken<E, P>,
    mut put: impl FnMut(&mut E, P),
) {
    restore_table(table, taken.table);
    if let Some(list) = taken.entries {
        *entries = list;
    }
    for (entry, payload) in entries.iter_mut().zip(taken.payloads) {
        put(entry, payload);
    }
}

impl Lean for MetricBatch {
    type Taken = Taken<Metric, Payload>;

    fn strip(&mut self, parts: Parts) -> Self::Taken {
        strip_entries(&mut self.table, &mut self.metrics, parts, |m| {
            let empty = no_points(&m.points);
            (
                std::mem::replace(&mut m.points, empty),
                std::mem::take(&mut m.bounds),
                std::mem::take(&mut m.counts),
                std::mem::take(&mut m.exemplars),
            )
        })
    }

    fn restore(&mut self, taken: Self::Taken) {
        restore_entries(&mut self.table, &mut self.metrics, taken, |m, payload| {
            (m.points, m.bounds, m.counts, m.exemplars) = payload;
        });
    }
}

impl Lean for LogBatch {
    type Taken = Taken<LogRecord, Option<Value>>;

    fn strip(&mut self, parts: Parts) -> Self::Taken {
        strip_entries(&mut self.table, &mut self.records, parts, |r| r.body.take())
    }

    fn restore(&mut self, taken: Self::Taken) {
        restore_entries(&mut self.table, &mut self.records, taken, |r, body| {
            r.body = body;
        });
    }
}

/// What a span batch's transform does not read.
#[derive(Debug)]
pub(crate) struct SpansTaken {
    table: Option<TableParts>,
    entries: Option<(Vec<TraceSpan>, Vec<SpanEvent>, Vec<SpanLink>)>,
}

impl Lean for SpanBatch {
    type Taken = SpansTaken;

    fn strip(&mut self, parts: Parts) -> SpansTaken {
        let table = strip_table(&mut self.table, parts);
        let entries = (!parts.intersects(Parts::ENTRIES | Parts::PAYLOAD)).then(|| {
            (
                std::mem::take(&mut self.spans),
                std::mem::take(&mut self.events),
                std::mem::take(&mut self.links),
            )
        });
        SpansTaken { table, entries }
    }

    fn restore(&mut self, taken: SpansTaken) {
        restore_table(&mut self.table, taken.table);
        if let Some((spans, events, links)) = taken.entries {
            (self.spans, self.events, self.links) = (spans, events, links);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::batch::tests::gauge;

    #[test]
    fn a_batch_crosses_with_only_the_parts_read_and_comes_back_whole() {
        let mut batch = gauge();
        let whole = format!("{batch:?}");
        let seen = |batch: &mut MetricBatch, parts| {
            lowered(batch, parts, |b: &MetricBatch| {
                let m = b.metrics.first();
                (
                    b.table.sets.len(),
                    b.table.values.len(),
                    b.table.strings.len(),
                    b.metrics.len(),
                    m.map_or(0, |m| super::super::batch::point_count(&m.points)),
                    m.map_or(0, |m| m.exemplars.len()),
                )
            })
        };
        assert_eq!(seen(&mut batch, Parts::ATTRIBUTES), (3, 2, 3, 0, 0, 0));
        assert_eq!(format!("{batch:?}"), whole);
        assert_eq!(seen(&mut batch, Parts::ENTRIES), (0, 0, 3, 1, 0, 0));
        assert_eq!(format!("{batch:?}"), whole);
        assert_eq!(
            seen(&mut batch, Parts::ATTRIBUTES | Parts::PAYLOAD),
            (3, 2, 3, 1, 3, 2)
        );
        assert_eq!(seen(&mut batch, Parts::all()), (3, 2, 3, 1, 3, 2));
        assert_eq!(format!("{batch:?}"), whole);
        let Some(Points::Gauge(kind)) = lowered(&mut batch, Parts::ENTRIES, |b| {
            b.metrics.first().map(|m| m.points.clone())
        }) else {
            panic!("a gauge's points stay a gauge's")
        };
        assert!(kind.is_empty());
    }

    #[test]
    fn log_records_cross_without_bodies_unless_the_payload_is_read() {
        let resource = crate::model::resource::Resource::from_attributes(
            crate::model::attributes::AttributeSet::empty(),
        );
        let origin = crate::model::record::Origin::events(&resource, None);
        let record = opentelemetry_proto::tonic::logs::v1::LogRecord {
            body: Some(opentelemetry_proto::tonic::common::v1::AnyValue {
                value: Some(
                    opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(
                        "the prompt".into(),
                    ),
                ),
            }),
            ..Default::default()
        };
        let mut batch = crate::plugins::convert::otlp::log_batch(&[record], &origin);
        let bodies = |b: &LogBatch| {
            (
                b.records.len(),
                b.records.iter().flat_map(|r| &r.body).count(),
            )
        };
        assert_eq!(lowered(&mut batch, Parts::ENTRIES, bodies), (1, 0));
        assert_eq!(lowered(&mut batch, Parts::ATTRIBUTES, bodies), (0, 0));
        assert_eq!(lowered(&mut batch, Parts::PAYLOAD, bodies), (1, 1));
        assert_eq!(bodies(&batch), (1, 1));
    }
}
