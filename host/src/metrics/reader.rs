//! The reader: the one way exporters read the engine's state — a registry's instruments
//! grouped by scope, and every series as a point in the temporality the exporter asked for
//! (cumulative, or deltas through its [`DeltaTracker`]).

use std::sync::Arc;

use super::aggregation::{ExponentialPoint, HistogramPoint, SummaryPoint};
use super::exemplar::Exemplar;
use super::series::Series;
use super::temporality::DeltaTracker;
use super::{Instrument, Registry, Storage};
use crate::clock::unix_nanos;
use crate::model::attributes::AttributeSet;
use crate::model::metric::{Scope, Temporality};

/// How an instrument's points are aggregated, as exporters tell them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// A sum, monotonic or not.
    Sum {
        /// Whether it only grows.
        monotonic: bool,
    },
    /// The last value.
    Gauge,
    /// An explicit-bucket histogram.
    Histogram,
    /// A base-2 exponential histogram.
    ExponentialHistogram,
    /// A summary, as received.
    Summary,
}

impl Shape {
    /// The shape of `instrument`'s points.
    pub fn of(instrument: &Instrument) -> Self {
        match instrument.storage() {
            Storage::Sum(_) => Shape::Sum {
                monotonic: instrument.descriptor().kind.is_monotonic(),
            },
            Storage::LastValue(_) => Shape::Gauge,
            Storage::Histogram(..) => Shape::Histogram,
            Storage::ExponentialHistogram(_) => Shape::ExponentialHistogram,
            Storage::Summary(_) => Shape::Summary,
        }
    }
}

/// A series' value as read.
#[derive(Debug, Clone, PartialEq)]
pub enum PointValue<'a> {
    /// A sum's or a gauge's value.
    Number(f64),
    /// An explicit-bucket histogram, with the instrument's bounds.
    Histogram(HistogramPoint, &'a [f64]),
    /// An exponential histogram.
    Exponential(ExponentialPoint),
    /// A summary (always cumulative).
    Summary(SummaryPoint),
}

/// One series as an exporter receives it.
pub struct SeriesPoint<'a> {
    /// The series' attributes.
    pub attributes: &'a AttributeSet,
    /// Where the point starts: the series' start, or for a delta the previous collection.
    pub start: u64,
    /// When it was read.
    pub time: u64,
    /// Its value.
    pub value: PointValue<'a>,
    exemplars: &'a dyn Fn(u64) -> Vec<(usize, Exemplar)>,
}

impl std::fmt::Debug for SeriesPoint<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeriesPoint")
            .field("attributes", &self.attributes)
            .field("start", &self.start)
            .field("time", &self.time)
            .field("value", &self.value)
            .finish_non_exhaustive()
    }
}

impl SeriesPoint<'_> {
    /// The exemplars measured within the point's interval, with their slots (histogram buckets).
    pub fn exemplars(&self) -> Vec<(usize, Exemplar)> {
        (self.exemplars)(self.start)
    }
}

/// One collection of one registry for one exporter.
#[derive(Debug)]
pub struct Reader<'t> {
    tracker: Option<&'t mut DeltaTracker>,
    now: u64,
}

/// A minimum or maximum when it is known: the point has data and is not a delta's `NaN`.
pub fn known_extreme(count: u64, v: f64) -> Option<f64> {
    (count > 0 && !v.is_nan()).then_some(v)
}

impl<'t> Reader<'t> {
    /// A collection taken now: cumulative, or deltas through `tracker`.
    pub fn new(tracker: Option<&'t mut DeltaTracker>) -> Self {
        Self {
            tracker,
            now: unix_nanos(),
        }
    }

    /// When the collection was taken.
    pub fn now(&self) -> u64 {
        self.now
    }

    /// Runs the registry's callbacks, then lists its instruments by scope, in registration order.
    pub fn scopes(registry: &Registry) -> Vec<(Scope, Vec<Arc<Instrument>>)> {
        Self::scopes_where(registry, &|_| true)
    }

    /// [`Reader::scopes`], of the instruments whose name `keep` takes.
    pub fn scopes_where(
        registry: &Registry,
        keep: &dyn Fn(&str) -> bool,
    ) -> Vec<(Scope, Vec<Arc<Instrument>>)> {
        registry.observe();
        let mut scopes: Vec<(Scope, Vec<Arc<Instrument>>)> = Vec::new();
        for instrument in registry.instruments() {
            if !keep(&instrument.descriptor().name) {
                continue;
            }
            let scope = &instrument.descriptor().scope;
            match scopes.iter_mut().find(|(s, _)| s == scope) {
                Some((_, members)) => members.push(instrument),
                None => scopes.push((scope.clone(), vec![instrument])),
            }
        }
        scopes
    }

    /// The temporality `instrument`'s points come in.
    pub fn temporality(&self, instrument: &Instrument) -> Temporality {
        let delta = self
            .tracker
            .as_ref()
            .is_some_and(|t| t.is_delta(instrument.descriptor().kind));
        if delta {
            Temporality::Delta
        } else {
            Temporality::Cumulative
        }
    }

    /// Visits every series of `instrument` that has a point to export (deltas leave out the
    /// series that did not change); returns how many were visited.
    pub fn read(
        &mut self,
        instrument: &Instrument,
        mut visit: impl FnMut(SeriesPoint<'_>),
    ) -> usize {
        let d = instrument.descriptor();
        let delta = self.temporality(instrument) == Temporality::Delta;
        let interval = self.tracker.as_ref().and_then(|t| t.interval_start());
        let tracker = if delta {
            self.tracker.as_deref_mut()
        } else {
            None
        };
        let now = self.now;
        let start = |series_start: u64| match (delta, interval) {
            (true, Some(i)) => i.max(series_start),
            _ => series_start,
        };
        let mut points = 0;
        let mut emit = |s: &dyn SeriesView, start: u64, value: PointValue<'_>| {
            points += 1;
            visit(SeriesPoint {
                attributes: s.attributes(),
                start,
                time: now,
                value,
                exemplars: &|since| s.exemplars(since),
            });
        };
        match instrument.storage() {
            Storage::Sum(table) => {
                let mut tracker = tracker;
                table.for_each(|s| {
                    let total = s.aggregator.value();
                    let value = match tracker.as_deref_mut() {
                        Some(t) => t.sum(&d.name, &s.attributes, total),
                        None => Some(total),
                    };
                    if let Some(v) = value {
                        emit(s, start(s.start_unix_nano), PointValue::Number(v));
                    }
                });
            }
            Storage::LastValue(table) => table.for_each(|s| {
                emit(
                    s,
                    s.start_unix_nano,
                    PointValue::Number(s.aggregator.value()),
                );
            }),
            Storage::Histogram(bounds, table) => {
                let mut tracker = tracker;
                table.for_each(|s| {
                    let now = s.aggregator.snapshot();
                    let point = match tracker.as_deref_mut() {
                        Some(t) => t.histogram(&d.name, &s.attributes, now),
                        None => Some(now),
                    };
                    if let Some(p) = point {
                        emit(
                            s,
                            start(s.start_unix_nano),
                            PointValue::Histogram(p, bounds),
                        );
                    }
                });
            }
            Storage::ExponentialHistogram(table) => {
                let mut tracker = tracker;
                table.for_each(|s| {
                    let now = s.aggregator.snapshot();
                    let point = match tracker.as_deref_mut() {
                        Some(t) => t.exponential(&d.name, &s.attributes, now),
                        None => Some(now),
                    };
                    if let Some(p) = point {
                        emit(s, start(s.start_unix_nano), PointValue::Exponential(p));
                    }
                });
            }
            Storage::Summary(table) => table.for_each(|s| {
                emit(
                    s,
                    s.start_unix_nano,
                    PointValue::Summary(s.aggregator.snapshot()),
                );
            }),
        }
        points
    }

    /// Ends the collection: the tracker forgets the series it did not see and remembers now
    /// as the start of the next interval.
    pub fn finish(self) {
        if let Some(t) = self.tracker {
            t.finish(self.now);
        }
    }
}

/// What the reader needs of a series, whatever its aggregator.
trait SeriesView {
    fn attributes(&self) -> &AttributeSet;
    fn exemplars(&self, since: u64) -> Vec<(usize, Exemplar)>;
}

impl<A> SeriesView for Series<A> {
    fn attributes(&self) -> &AttributeSet {
        &self.attributes
    }

    fn exemplars(&self, since: u64) -> Vec<(usize, Exemplar)> {
        Series::exemplars(self, since)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Descriptor;
    use crate::model::attributes::ValueRef;
    use crate::model::metric::InstrumentKind;
    use crate::model::metric::TemporalityPreference;

    fn instrument(
        reg: &Registry,
        name: &str,
        kind: InstrumentKind,
        scope: &str,
    ) -> Arc<Instrument> {
        reg.instrument(
            Descriptor {
                name: name.into(),
                unit: String::new(),
                description: String::new(),
                kind,
                scope: scope.into(),
            },
            &[],
        )
        .expect("instrument")
    }

    fn numbers(reader: &mut Reader<'_>, i: &Instrument) -> Vec<(String, f64)> {
        let mut out: Vec<(String, f64)> = Vec::new();
        reader.read(i, |p| {
            if let PointValue::Number(v) = p.value {
                out.push((p.attributes.iter().map(|(_, v)| v.to_string()).collect(), v));
            }
        });
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    #[test]
    fn one_reader_gives_cumulative_totals_or_deltas_by_the_tracker_and_groups_scopes() {
        let reg = Registry::new(100);
        let c = instrument(&reg, "c", InstrumentKind::Counter, "a");
        let g = instrument(&reg, "g", InstrumentKind::Gauge, "b");
        let u = instrument(&reg, "u", InstrumentKind::UpDownCounter, "a");
        c.record(&[("k", ValueRef::Str("x"))], 5.0);
        c.record(&[("k", ValueRef::Str("y"))], 1.0);
        g.record(&[], 7.0);
        u.record(&[], -2.0);
        let scopes: Vec<(String, Vec<String>)> = Reader::scopes(&reg)
            .into_iter()
            .map(|(s, m)| {
                (
                    s.name.to_string(),
                    m.iter().map(|i| i.descriptor().name.clone()).collect(),
                )
            })
            .collect();
        assert_eq!(
            scopes,
            [
                ("a".to_owned(), vec!["c".to_owned(), "u".to_owned()]),
                ("b".to_owned(), vec!["g".to_owned()])
            ]
        );
        let mut tracker = DeltaTracker::new(TemporalityPreference::Delta);
        let mut first = Reader::new(Some(&mut tracker));
        assert_eq!(first.temporality(&c), Temporality::Delta);
        assert_eq!(
            first.temporality(&u),
            Temporality::Cumulative,
            "up-down counters stay cumulative"
        );
        assert_eq!(
            numbers(&mut first, &c),
            [("x".into(), 5.0), ("y".into(), 1.0)]
        );
        first.finish();
        c.record(&[("k", ValueRef::Str("x"))], 2.0);
        let mut second = Reader::new(Some(&mut tracker));
        assert_eq!(
            numbers(&mut second, &c),
            [("x".into(), 2.0)],
            "y did not change"
        );
        assert_eq!(numbers(&mut second, &g), [(String::new(), 7.0)]);
        assert_eq!(numbers(&mut second, &u), [(String::new(), -2.0)]);
        second.finish();
        let mut cumulative = Reader::new(None);
        assert_eq!(
            numbers(&mut cumulative, &c),
            [("x".into(), 7.0), ("y".into(), 1.0)]
        );
        assert_eq!(Shape::of(&c), Shape::Sum { monotonic: true });
        assert_eq!(Shape::of(&u), Shape::Sum { monotonic: false });
        assert_eq!(Shape::of(&g), Shape::Gauge);
    }
}
