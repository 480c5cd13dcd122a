//! The explicit-bucket histogram aggregation: count, sum, min, max and bucket counts.

use std::sync::{Arc, Mutex, PoisonError};

use super::exponential::{ExponentialHistogram, ExponentialPoint, MAX_SIZE};

/// Explicit-bucket histogram of a series.
///
/// Bucket `i` counts values in `(bounds[i-1], bounds[i]]`; the last bucket is
/// `(bounds[n-1], +inf)`. A mutex per series keeps count, sum and buckets
/// consistent with each other; it is only contended when two threads record
/// into the *same* series at once.
#[derive(Debug)]
pub struct Histogram {
    bounds: Arc<[f64]>,
    state: Mutex<HistogramPoint>,
    /// The same measurements at a base-2 exponential resolution, where quantiles are read
    /// that the buckets are too coarse for (never exported).
    detail: Option<Box<ExponentialHistogram>>,
}

/// A consistent snapshot of one histogram series.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramPoint {
    /// Number of measurements.
    pub count: u64,
    /// Sum of all measurements.
    pub sum: f64,
    /// Smallest measurement (`+inf` when empty).
    pub min: f64,
    /// Largest measurement (`-inf` when empty).
    pub max: f64,
    /// Per-bucket counts, one more than there are bounds.
    pub bucket_counts: Vec<u64>,
}

impl HistogramPoint {
    /// What was recorded since the cumulative point `before`: counts and sum subtracted bucket
    /// by bucket; `None` when anything went backwards or the buckets differ (a restart).
    ///
    /// The extremes stay this point's: only cumulative extremes are known.
    pub fn since(&self, before: &HistogramPoint) -> Option<HistogramPoint> {
        if before.bucket_counts.len() != self.bucket_counts.len() || self.count < before.count {
            return None;
        }
        let mut delta = self.clone();
        delta.count -= before.count;
        delta.sum -= before.sum;
        for (b, was) in delta.bucket_counts.iter_mut().zip(&before.bucket_counts) {
            *b = b.checked_sub(*was)?;
        }
        Some(delta)
    }
}

impl Histogram {
    /// An empty histogram over `bounds` (strictly increasing, finite).
    pub fn new(bounds: Arc<[f64]>) -> Self {
        Self::with_detail(bounds, false)
    }

    /// An empty histogram over `bounds` that, when `detailed`, also keeps its measurements at
    /// an exponential resolution.
    pub fn with_detail(bounds: Arc<[f64]>, detailed: bool) -> Self {
        let state = HistogramPoint {
            count: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            bucket_counts: vec![0; bounds.len() + 1],
        };
        Self {
            bounds,
            state: Mutex::new(state),
            detail: detailed.then(|| Box::new(ExponentialHistogram::new(MAX_SIZE))),
        }
    }

    /// Adds one measurement; returns the index of its bucket.
    pub fn update(&self, value: f64) -> usize {
        // Counting the bounds below the value is branch-free; a binary search only pays for many bounds.
        let bucket = if self.bounds.len() <= 32 {
            self.bounds.iter().filter(|b| **b < value).count()
        } else {
            self.bounds.partition_point(|b| *b < value)
        };
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        s.count += 1;
        s.sum += value;
        s.min = s.min.min(value);
        s.max = s.max.max(value);
        s.bucket_counts[bucket] += 1;
        drop(s);
        if let Some(detail) = &self.detail {
            detail.update(value);
        }
        bucket
    }

    /// Adds a point aggregated elsewhere over the same bounds (its buckets, count, sum and
    /// extremes); a point with another number of buckets changes nothing and returns `false`.
    pub fn merge(&self, point: &HistogramPoint) -> bool {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if point.bucket_counts.len() != s.bucket_counts.len() {
            return false;
        }
        s.count += point.count;
        s.sum += point.sum;
        s.min = s.min.min(point.min);
        s.max = s.max.max(point.max);
        for (b, n) in s.bucket_counts.iter_mut().zip(&point.bucket_counts) {
            *b += n;
        }
        true
    }

    /// The bucket boundaries.
    pub fn bounds(&self) -> &[f64] {
        &self.bounds
    }

    /// The measurements at an exponential resolution, for a detailed histogram.
    pub fn detail(&self) -> Option<ExponentialPoint> {
        self.detail.as_ref().map(|d| d.snapshot())
    }

    /// A consistent copy of the current state.
    pub fn snapshot(&self) -> HistogramPoint {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_upper_inclusive() {
        let h = Histogram::new(Arc::from([1.0, 5.0]));
        for v in [0.5, 1.0, 1.5, 5.0, 7.0, -3.0] {
            h.update(v);
        }
        let p = h.snapshot();
        assert_eq!(p.bucket_counts, vec![3, 2, 1]);
        assert_eq!(p.count, 6);
        assert_eq!(p.sum, 12.0);
        assert_eq!((p.min, p.max), (-3.0, 7.0));
    }

    #[test]
    fn merging_adds_buckets_and_keeps_the_extremes() {
        let h = Histogram::new(Arc::from([1.0, 5.0]));
        h.update(2.0);
        let point = HistogramPoint {
            count: 3,
            sum: 9.5,
            min: 0.5,
            max: 6.0,
            bucket_counts: vec![1, 1, 1],
        };
        assert!(h.merge(&point));
        let p = h.snapshot();
        assert_eq!(p.bucket_counts, vec![1, 2, 1]);
        assert_eq!((p.count, p.sum, p.min, p.max), (4, 11.5, 0.5, 6.0));
        let wrong = HistogramPoint {
            bucket_counts: vec![1, 1],
            ..point
        };
        assert!(!h.merge(&wrong));
        assert_eq!(h.snapshot(), p, "a mismatched point changes nothing");
    }

    #[test]
    fn a_detailed_histogram_keeps_what_its_buckets_cannot_tell_apart() {
        let plain = Histogram::new(Arc::from([0.01, 0.025]));
        plain.update(0.012);
        assert_eq!(plain.detail(), None);
        let h = Histogram::with_detail(Arc::from([0.01, 0.025]), true);
        for v in [0.011, 0.012, 0.013, 0.024] {
            h.update(v);
        }
        assert_eq!(h.snapshot().bucket_counts, vec![0, 4, 0]);
        let detail = h.detail().expect("detailed");
        assert_eq!(detail.count, 4);
        let median = detail.quantile(0.5);
        assert!((median - 0.012).abs() < 0.0005, "{median}");
    }
}
