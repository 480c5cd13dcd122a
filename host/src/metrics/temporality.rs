//! Temporality: which instruments an exporter receives as deltas, and the state that turns the
//! engine's cumulative series into deltas for one exporter.

use std::collections::HashMap;

use super::aggregation::{ExponentialPoint, HistogramPoint};
use crate::model::attributes::AttributeSet;
use crate::model::metric::InstrumentKind;
use crate::model::metric::TemporalityPreference;

/// What an exporter was last sent for one series.
#[derive(Debug, Clone)]
enum Last {
    Sum(f64),
    Histogram(HistogramPoint),
    Exponential(ExponentialPoint),
}

/// One remembered series: its attributes, what was last exported, and the round it was last seen.
type Remembered = (AttributeSet, Last, u64);

/// Per exporter: the totals last exported per series, to subtract from the next collection.
///
/// A delta point covers the time since the previous collection; a series that did not
/// change in the interval is left out, and one that no longer exists (expired) is forgotten.
#[derive(Debug, Default)]
pub struct DeltaTracker {
    preference: TemporalityPreference,
    last: HashMap<(String, u64), Vec<Remembered>>,
    previous_collection: Option<u64>,
    round: u64,
}

impl DeltaTracker {
    /// A tracker for an exporter with `preference`.
    pub fn new(preference: TemporalityPreference) -> Self {
        Self {
            preference,
            ..Self::default()
        }
    }

    /// Whether instruments of `kind` go out as deltas.
    pub fn is_delta(&self, kind: InstrumentKind) -> bool {
        self.preference.is_delta(kind)
    }

    /// The start of the current interval: the previous collection, if any.
    pub fn interval_start(&self) -> Option<u64> {
        self.previous_collection
    }

    /// Ends a collection taken at `now`, forgetting the series it did not see.
    pub fn finish(&mut self, now: u64) {
        let round = self.round;
        self.last.retain(|_, slot| {
            slot.retain(|(_, _, seen)| *seen == round);
            !slot.is_empty()
        });
        self.round += 1;
        self.previous_collection = Some(now);
    }

    /// How many series the tracker remembers.
    pub fn len(&self) -> usize {
        self.last.values().map(Vec::len).sum()
    }

    /// Whether it remembers no series.
    pub fn is_empty(&self) -> bool {
        self.last.is_empty()
    }

    fn swap(&mut self, metric: &str, attrs: &AttributeSet, now: Last) -> Option<Last> {
        let slot = self
            .last
            .entry((metric.to_owned(), attrs.hash()))
            .or_default();
        match slot.iter_mut().find(|(a, _, _)| a == attrs) {
            Some((_, last, seen)) => {
                *seen = self.round;
                Some(std::mem::replace(last, now))
            }
            None => {
                slot.push((attrs.clone(), now, self.round));
                None
            }
        }
    }

    /// The change of a sum since the last collection; `None` when it did not change. A total
    /// below the last one is a series that started over (expired and created again): all of it
    /// is new.
    pub fn sum(&mut self, metric: &str, attrs: &AttributeSet, total: f64) -> Option<f64> {
        match self.swap(metric, attrs, Last::Sum(total)) {
            Some(Last::Sum(before)) if before == total => None,
            Some(Last::Sum(before)) if total > before => Some(total - before),
            _ => Some(total),
        }
    }

    /// What a histogram recorded since the last collection; `None` when nothing.
    ///
    /// The extremes of one interval are not derivable from cumulative state: after the
    /// first collection, `min` and `max` are `NaN`, which encoders leave out.
    pub fn histogram(
        &mut self,
        metric: &str,
        attrs: &AttributeSet,
        now: HistogramPoint,
    ) -> Option<HistogramPoint> {
        let Some(Last::Histogram(before)) = self.swap(metric, attrs, Last::Histogram(now.clone()))
        else {
            return Some(now);
        };
        if before.count == now.count {
            return None;
        }
        let Some(mut delta) = now.since(&before) else {
            return Some(now); // started over
        };
        delta.min = f64::NAN;
        delta.max = f64::NAN;
        Some(delta)
    }

    /// What an exponential histogram recorded since the last collection; `None` when nothing.
    ///
    /// `min` and `max` are `NaN` after the first collection, as for [`DeltaTracker::histogram`].
    pub fn exponential(
        &mut self,
        metric: &str,
        attrs: &AttributeSet,
        now: ExponentialPoint,
    ) -> Option<ExponentialPoint> {
        let Some(Last::Exponential(before)) =
            self.swap(metric, attrs, Last::Exponential(now.clone()))
        else {
            return Some(now);
        };
        if before.count == now.count {
            return None;
        }
        let Some(mut delta) = now.since(&before) else {
            return Some(now); // started over
        };
        delta.min = f64::NAN;
        delta.max = f64::NAN;
        Some(delta)
    }
}

/// Per exporter: one [`DeltaTracker`] per producer, by the producer's id (never reused).
#[derive(Debug)]
pub struct DeltaTrackers {
    preference: TemporalityPreference,
    trackers: std::collections::HashMap<u64, DeltaTracker>,
}

impl DeltaTrackers {
    /// No trackers yet, for an exporter with `preference`.
    pub fn new(preference: TemporalityPreference) -> Self {
        Self {
            preference,
            trackers: std::collections::HashMap::new(),
        }
    }

    /// The tracker of producer `id`, created on first use.
    pub fn get(&mut self, id: u64) -> &mut DeltaTracker {
        let preference = self.preference;
        self.trackers
            .entry(id)
            .or_insert_with(|| DeltaTracker::new(preference))
    }

    /// Forgets the trackers of producers not in `ids` (they went).
    pub fn keep_only(&mut self, ids: &[u64]) {
        self.trackers.retain(|id, _| ids.contains(id));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::model::attributes::Value;

    #[test]
    fn preferences_follow_the_sdk_specification() {
        use InstrumentKind::*;
        let kinds = [
            Counter,
            ObservableCounter,
            Histogram,
            UpDownCounter,
            ObservableUpDownCounter,
            Gauge,
        ];
        let delta = |p: TemporalityPreference| -> Vec<bool> {
            kinds.iter().map(|k| p.is_delta(*k)).collect()
        };
        assert_eq!(
            delta(TemporalityPreference::Delta),
            [true, true, true, false, false, false]
        );
        assert_eq!(
            delta(TemporalityPreference::LowMemory),
            [true, false, true, false, false, false]
        );
        assert_eq!(delta(TemporalityPreference::Cumulative), [false; 6]);
    }

    #[test]
    fn sums_report_changes_and_skip_quiet_intervals() {
        let mut t = DeltaTracker::new(TemporalityPreference::Delta);
        let a = AttributeSet::from_pairs(vec![(Arc::from("k"), Value::Int(1))]);
        let b = AttributeSet::empty();
        assert_eq!(t.sum("x", &a, 5.0), Some(5.0));
        assert_eq!(t.sum("x", &b, 1.0), Some(1.0));
        assert_eq!(t.sum("x", &a, 8.0), Some(3.0));
        assert_eq!(t.sum("x", &b, 1.0), None);
        assert_eq!(t.sum("y", &a, 8.0), Some(8.0), "metrics are tracked apart");
        t.finish(1);
        assert_eq!(t.len(), 3);
        // A series absent from a collection (expired) is forgotten; back, it starts over.
        assert_eq!(t.sum("x", &a, 9.0), Some(1.0));
        t.finish(2);
        assert_eq!(t.len(), 1);
        assert_eq!(t.sum("x", &b, 2.0), Some(2.0));
    }

    #[test]
    fn histograms_subtract_bucket_by_bucket() {
        let mut t = DeltaTracker::new(TemporalityPreference::Delta);
        let a = AttributeSet::empty();
        let point = |count, sum, buckets: Vec<u64>| HistogramPoint {
            count,
            sum,
            min: 1.0,
            max: 9.0,
            bucket_counts: buckets,
        };
        let first = t.histogram("h", &a, point(2, 3.0, vec![1, 1]));
        assert_eq!(first, Some(point(2, 3.0, vec![1, 1])));
        assert_eq!(t.histogram("h", &a, point(2, 3.0, vec![1, 1])), None);
        let third = t
            .histogram("h", &a, point(5, 20.0, vec![1, 4]))
            .expect("changed");
        assert_eq!(
            (third.count, third.sum, third.bucket_counts),
            (3, 17.0, vec![0, 3])
        );
        assert!(third.min.is_nan() && third.max.is_nan());
    }

    #[test]
    fn a_series_that_started_over_is_all_new() {
        let mut t = DeltaTracker::new(TemporalityPreference::Delta);
        let a = AttributeSet::empty();
        assert_eq!(t.sum("x", &a, 8.0), Some(8.0));
        assert_eq!(
            t.sum("x", &a, 3.0),
            Some(3.0),
            "below the last total: a new series"
        );
        let point = |count, buckets: Vec<u64>| HistogramPoint {
            count,
            sum: count as f64,
            min: 1.0,
            max: 1.0,
            bucket_counts: buckets,
        };
        t.histogram("h", &a, point(5, vec![2, 3]));
        let again = t.histogram("h", &a, point(2, vec![1, 1])).expect("changed");
        assert_eq!((again.count, again.bucket_counts), (2, vec![1, 1]));
    }
}
