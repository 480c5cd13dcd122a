//! Lean lowering: a batch crosses into a transform with only the parts it reads, the others
//! taken out for the call and put back after it (nothing is copied), and its attribute sets cut
//! down to the keys it reads.

use super::batch;
use super::bindings::reader::Parts;
use super::bindings::types::{
    Attribute, Exemplar, LogBatch, LogRecord, Metric, MetricBatch, Points, Span, SpanBatch,
    SpanEvent, SpanLink, Table, TraceSpan, Value,
};
use crate::model::content::Patterns;

/// A contract batch whose unread parts can be taken out and put back.
pub(crate) trait Lean {
    /// What was taken out.
    type Taken;

    /// Takes out what `parts` leaves out.
    fn strip(&mut self, parts: Parts) -> Self::Taken;

    /// Puts back what [`Lean::strip`] took.
    fn restore(&mut self, taken: Self::Taken);

    /// The batch's table.
    fn table(&mut self) -> &mut Table;

    /// Visits every attribute set index the batch holds, in one order.
    fn each_set(&mut self, f: &mut dyn FnMut(&mut u32));
}

/// How a batch's sets were cut down for a call: what each of its sets became, and how many sets
/// the cut table held.
pub(crate) type CutSets = (Vec<u32>, usize);

/// Runs `f` on `batch` holding only `parts`, its attribute sets cut down to the keys `keys`
/// matches (when it names some), and gives the batch back whole, with how its sets were cut.
pub(crate) fn lowered<B: Lean, R>(
    batch: &mut B,
    parts: Parts,
    keys: Option<&Patterns>,
    f: impl FnOnce(&B) -> R,
) -> (R, Option<CutSets>) {
    let cut = keys.map(|keys| {
        // The strings stay: only the attribute lists are cut.
        let (cut, of) = batch::cut(batch.table(), keys);
        let t = batch.table();
        let whole = (
            std::mem::replace(&mut t.values, cut.values),
            std::mem::replace(&mut t.attributes, cut.attributes),
            std::mem::replace(&mut t.sets, cut.sets),
        );
        let mut indices = Vec::new();
        batch.each_set(&mut |set| {
            indices.push(*set);
            *set = of.get(*set as usize).copied().unwrap_or(*set);
        });
        (whole, indices, of)
    });
    let out = if parts.contains(Parts::all()) {
        f(batch)
    } else {
        let taken = batch.strip(parts);
        let out = f(batch);
        batch.restore(taken);
        out
    };
    let Some((whole, indices, of)) = cut else {
        return (out, None);
    };
    let t = batch.table();
    let sets = t.sets.len();
    (t.values, t.attributes, t.sets) = whole;
    let mut indices = indices.into_iter();
    batch.each_set(&mut |set| *set = indices.next().unwrap_or(*set));
    (out, Some((of, sets)))
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

    fn table(&mut self) -> &mut Table {
        &mut self.table
    }

    fn each_set(&mut self, f: &mut dyn FnMut(&mut u32)) {
        f(&mut self.resource.attributes);
        self.scopes.iter_mut().for_each(|s| f(&mut s.attributes));
        for m in &mut self.metrics {
            match &mut m.points {
                Points::Gauge(p) | Points::Sum(p) => {
                    p.iter_mut().for_each(|p| f(&mut p.attributes))
                }
                Points::Histogram(p) => p.iter_mut().for_each(|p| f(&mut p.attributes)),
                Points::ExponentialHistogram(p) => {
                    p.iter_mut().for_each(|p| f(&mut p.attributes));
                }
            }
            m.exemplars
                .iter_mut()
                .for_each(|e| f(&mut e.filtered_attributes));
        }
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

    fn table(&mut self) -> &mut Table {
        &mut self.table
    }

    fn each_set(&mut self, f: &mut dyn FnMut(&mut u32)) {
        f(&mut self.resource.attributes);
        self.scopes.iter_mut().for_each(|s| f(&mut s.attributes));
        self.records.iter_mut().for_each(|r| f(&mut r.attributes));
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

    fn table(&mut self) -> &mut Table {
        &mut self.table
    }

    fn each_set(&mut self, f: &mut dyn FnMut(&mut u32)) {
        f(&mut self.resource.attributes);
        self.scopes.iter_mut().for_each(|s| f(&mut s.attributes));
        self.spans.iter_mut().for_each(|s| f(&mut s.attributes));
        self.events.iter_mut().for_each(|e| f(&mut e.attributes));
        self.links.iter_mut().for_each(|l| f(&mut l.attributes));
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
            lowered(batch, parts, None, |b: &MetricBatch| {
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
            .0
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
        let Some(Points::Gauge(kind)) = lowered(&mut batch, Parts::ENTRIES, None, |b| {
            b.metrics.first().map(|m| m.points.clone())
        })
        .0
        else {
            panic!("a gauge's points stay a gauge's")
        };
        assert!(kind.is_empty());
    }

    #[test]
    fn sets_cross_cut_down_to_the_keys_read_and_edits_of_a_cut_set_reach_every_set_it_was() {
        use crate::plugins::batch::widen;
        use crate::plugins::bindings::transformer::{Edit, PointRef, RemoveAttribute};
        let mut batch = gauge();
        let whole = format!("{batch:?}");
        let seen = |b: &MetricBatch| {
            let Some(Points::Gauge(points)) = b.metrics.first().map(|m| &m.points) else {
                return (0, Vec::new());
            };
            assert_eq!(
                b.table.strings.len(),
                3,
                "the strings stay: names index them"
            );
            (
                b.table.sets.len(),
                points.iter().map(|p| p.attributes).collect(),
            )
        };
        let other = Patterns::new(&["other"]);
        let (cut, sets) = lowered(&mut batch, Parts::all(), Some(&other), seen);
        assert_eq!(
            cut,
            (1, vec![0, 0, 0]),
            "no set holds `other`: one empty set"
        );
        assert_eq!(format!("{batch:?}"), whole, "the batch comes back whole");
        let (of, count) = sets.expect("cut");
        assert_eq!((of.len(), count), (3, 1));
        let model = Patterns::new(&["mod*"]);
        let (cut, _) = lowered(&mut batch, Parts::all(), Some(&model), seen);
        assert_eq!(
            cut,
            (3, vec![1, 2, 1]),
            "every set holds `model`: as they were"
        );
        assert_eq!(format!("{batch:?}"), whole);

        let remove = |set| {
            Edit::RemoveAttribute(RemoveAttribute {
                set,
                key: "model".into(),
            })
        };
        let drop = Edit::DropPoint(PointRef {
            metric: 0,
            point: 1,
        });
        let shown = |edits: &[Edit]| format!("{edits:?}");
        assert_eq!(
            shown(&widen(&[drop.clone(), remove(0)], &of, count).expect("valid")),
            shown(&[drop, remove(0), remove(1), remove(2)]),
            "one edit of the one cut set is an edit of each set it was"
        );
        assert_eq!(
            widen(&[remove(1)], &of, count).err().map(|e| e.to_string()),
            Some("edit 0 (attribute edit) names set 1 of 1".to_owned())
        );
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
        assert_eq!(lowered(&mut batch, Parts::ENTRIES, None, bodies).0, (1, 0));
        assert_eq!(
            lowered(&mut batch, Parts::ATTRIBUTES, None, bodies).0,
            (0, 0)
        );
        assert_eq!(lowered(&mut batch, Parts::PAYLOAD, None, bodies).0, (1, 1));
        assert_eq!(bodies(&batch), (1, 1));
    }
}
