//! The base-2 exponential histogram aggregation: buckets whose boundaries are powers of
//! `2^(2^-scale)`, downscaled automatically so that each range fits in a fixed number of buckets.

use std::sync::{Mutex, PoisonError};

/// The default and largest number of buckets per range (positive or negative).
pub const MAX_SIZE: usize = 160;
/// The finest (and starting) scale.
pub const MAX_SCALE: i32 = 20;
/// The coarsest scale: at it, every finite `f64` fits in a handful of buckets.
pub const MIN_SCALE: i32 = -10;

/// Consecutive bucket counts starting at bucket index `offset`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Buckets {
    /// The index of the first bucket.
    pub offset: i32,
    /// Counts of buckets `offset`, `offset + 1`, …
    pub counts: Vec<u64>,
}

impl Buckets {
    /// The index range a new `index` would make this span, as (lowest, highest).
    fn span_with(&self, index: i32) -> (i32, i32) {
        if self.counts.is_empty() {
            return (index, index);
        }
        let last = self.offset + self.counts.len() as i32 - 1;
        (self.offset.min(index), last.max(index))
    }

    fn increment(&mut self, index: i32) {
        if self.counts.is_empty() {
            self.offset = index;
            self.counts.push(1);
            return;
        }
        if index < self.offset {
            let grow = (self.offset - index) as usize;
            self.counts.splice(0..0, std::iter::repeat_n(0, grow));
            self.offset = index;
        }
        let at = (index - self.offset) as usize;
        if at >= self.counts.len() {
            self.counts.resize(at + 1, 0);
        }
        self.counts[at] += 1;
    }

    /// Subtracts `earlier` (at the same scale) bucket by bucket, never below zero.
    pub fn subtract(&mut self, earlier: &Buckets) {
        for (i, n) in earlier.counts.iter().enumerate() {
            let at = i64::from(earlier.offset) + i as i64 - i64::from(self.offset);
            if let Some(slot) = usize::try_from(at)
                .ok()
                .and_then(|at| self.counts.get_mut(at))
            {
                *slot -= (*n).min(*slot);
            }
        }
    }

    /// Adds `other` (at the same scale) bucket by bucket.
    pub fn add(&mut self, other: &Buckets) {
        let Some(last) = other.last() else { return };
        let (low, _) = self.span_with(other.offset);
        let (_, high) = self.span_with(last);
        if self.counts.is_empty() || low < self.offset {
            let grow = if self.counts.is_empty() {
                0
            } else {
                (self.offset - low) as usize
            };
            self.counts.splice(0..0, std::iter::repeat_n(0, grow));
            self.offset = low;
        }
        self.counts.resize((high - self.offset + 1) as usize, 0);
        for (i, n) in other.counts.iter().enumerate() {
            self.counts[(other.offset - self.offset) as usize + i] += n;
        }
    }

    /// The index of the last bucket, if there is any.
    fn last(&self) -> Option<i32> {
        (!self.counts.is_empty()).then(|| self.offset + self.counts.len() as i32 - 1)
    }

    /// Merges each run of `2^by` neighbouring buckets into one: the same data at scale `- by`.
    pub fn downscale(&mut self, by: u32) {
        if by == 0 || self.counts.is_empty() {
            return;
        }
        let offset = self.offset >> by;
        let last = (self.offset + self.counts.len() as i32 - 1) >> by;
        let mut counts = vec![0; (last - offset + 1) as usize];
        for (i, n) in self.counts.iter().enumerate() {
            counts[(((self.offset + i as i32) >> by) - offset) as usize] += n;
        }
        self.offset = offset;
        self.counts = counts;
    }
}

/// A consistent snapshot of one exponential histogram series.
#[derive(Debug, Clone, PartialEq)]
pub struct ExponentialPoint {
    /// Number of measurements.
    pub count: u64,
    /// Sum of all measurements.
    pub sum: f64,
    /// Smallest measurement (`+inf` when empty).
    pub min: f64,
    /// Largest measurement (`-inf` when empty).
    pub max: f64,
    /// The scale: bucket `i` holds values in `(base^i, base^(i+1)]` with `base = 2^(2^-scale)`.
    pub scale: i32,
    /// Measurements equal to zero.
    pub zero_count: u64,
    /// Buckets of positive measurements.
    pub positive: Buckets,
    /// Buckets of negative measurements, by absolute value.
    pub negative: Buckets,
}

impl ExponentialPoint {
    /// The `q` quantile of what was recorded, interpolated geometrically inside its bucket and
    /// kept within the extremes; `NaN` when nothing was recorded.
    pub fn quantile(&self, q: f64) -> f64 {
        if self.count == 0 {
            return f64::NAN;
        }
        let rank = q.clamp(0.0, 1.0) * self.count as f64;
        let base = 2f64.powf(2f64.powi(-self.scale));
        let within = |v: f64| v.clamp(self.min, self.max);
        // Negative buckets hold absolute values, largest index the most negative.
        let mut below = 0.0;
        let negative = self.negative.counts.iter().enumerate().rev();
        for (i, n) in negative {
            let n = *n as f64;
            if n > 0.0 && below + n >= rank {
                let index = self.negative.offset + i as i32;
                let (low, high) = (base.powi(index), base.powi(index + 1));
                return within(-(high * (low / high).powf((rank - below) / n)));
            }
            below += n;
        }
        below += self.zero_count as f64;
        if below >= rank {
            return within(0.0);
        }
        for (i, n) in self.positive.counts.iter().enumerate() {
            let n = *n as f64;
            if n > 0.0 && below + n >= rank {
                let index = self.positive.offset + i as i32;
                let (low, high) = (base.powi(index), base.powi(index + 1));
                return within(low * (high / low).powf((rank - below) / n));
            }
            below += n;
        }
        self.max
    }

    /// What was recorded since the cumulative point `before`, at the coarser of the two scales;
    /// `None` when anything went backwards (a restart). The extremes stay this point's.
    pub fn since(&self, before: &ExponentialPoint) -> Option<ExponentialPoint> {
        let now = self;
        if now.count < before.count || now.zero_count < before.zero_count {
            return None;
        }
        let scale = before.scale.min(now.scale);
        let (by_before, by_now) = (before.scale - scale, now.scale - scale);
        let (mut before, mut delta) = (before.clone(), now.clone());
        for (p, by) in [(&mut before, by_before), (&mut delta, by_now)] {
            let by = u32::try_from(by).unwrap_or(0);
            p.positive.downscale(by);
            p.negative.downscale(by);
            p.scale = scale;
        }
        let covers = |now: &Buckets, was: &Buckets| {
            was.counts.iter().enumerate().all(|(i, n)| {
                *n == 0 || {
                    let at = i64::from(was.offset) + i as i64 - i64::from(now.offset);
                    usize::try_from(at)
                        .ok()
                        .and_then(|at| now.counts.get(at))
                        .is_some_and(|m| m >= n)
                }
            })
        };
        if !covers(&delta.positive, &before.positive) || !covers(&delta.negative, &before.negative)
        {
            return None;
        }
        delta.positive.subtract(&before.positive);
        delta.negative.subtract(&before.negative);
        delta.count -= before.count;
        delta.zero_count -= before.zero_count;
        delta.sum -= before.sum;
        Some(delta)
    }
}

/// Exponential histogram of a series; a mutex per series keeps its fields consistent.
#[derive(Debug)]
pub struct ExponentialHistogram {
    max_size: usize,
    state: Mutex<ExponentialPoint>,
}

impl ExponentialHistogram {
    /// An empty histogram holding at most `max_size` buckets per range (at least 2).
    pub fn new(max_size: usize) -> Self {
        Self {
            max_size: max_size.max(2),
            state: Mutex::new(ExponentialPoint {
                count: 0,
                sum: 0.0,
                min: f64::INFINITY,
                max: f64::NEG_INFINITY,
                scale: MAX_SCALE,
                zero_count: 0,
                positive: Buckets::default(),
                negative: Buckets::default(),
            }),
        }
    }

    /// Adds one finite measurement, downscaling first if its bucket would not fit.
    pub fn update(&self, value: f64) {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        s.count += 1;
        s.sum += value;
        s.min = s.min.min(value);
        s.max = s.max.max(value);
        if value == 0.0 {
            s.zero_count += 1;
            return;
        }
        let magnitude = value.abs();
        let mut idx = index(magnitude, s.scale);
        let buckets = if value > 0.0 {
            &s.positive
        } else {
            &s.negative
        };
        let (mut low, mut high) = buckets.span_with(idx);
        let mut change = 0u32;
        while (i64::from(high) - i64::from(low) + 1) as usize > self.max_size
            && s.scale - (change as i32) > MIN_SCALE
        {
            low >>= 1;
            high >>= 1;
            change += 1;
        }
        if change > 0 {
            s.scale -= change as i32;
            s.positive.downscale(change);
            s.negative.downscale(change);
            idx = index(magnitude, s.scale);
        }
        if value > 0.0 {
            s.positive.increment(idx);
        } else {
            s.negative.increment(idx);
        }
    }

    /// Adds a point aggregated elsewhere: both are brought to the coarser scale, then further
    /// down until each range fits in this histogram's size, and the buckets are added.
    pub fn merge(&self, point: &ExponentialPoint) {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let mut other = point.clone();
        let mut scale = s.scale.min(other.scale).max(MIN_SCALE);
        let span = |b: &Buckets, o: &Buckets, by_b: u32, by_o: u32| {
            let ends = |x: &Buckets, by: u32| {
                x.last()
                    .map(|last| (i64::from(x.offset >> by), i64::from(last >> by)))
            };
            let (low, high) = match (ends(b, by_b), ends(o, by_o)) {
                (Some((l1, h1)), Some((l2, h2))) => (l1.min(l2), h1.max(h2)),
                (Some(one), None) | (None, Some(one)) => one,
                (None, None) => return 0,
            };
            (high - low + 1) as usize
        };
        while scale > MIN_SCALE
            && [
                (&s.positive, &other.positive),
                (&s.negative, &other.negative),
            ]
            .iter()
            .any(|(b, o)| {
                span(
                    b,
                    o,
                    (s.scale - scale) as u32,
                    (other.scale - scale).max(0) as u32,
                ) > self.max_size
            })
        {
            scale -= 1;
        }
        let (mine, theirs) = (
            (s.scale - scale) as u32,
            (other.scale - scale).max(0) as u32,
        );
        s.positive.downscale(mine);
        s.negative.downscale(mine);
        other.positive.downscale(theirs);
        other.negative.downscale(theirs);
        s.scale = scale;
        s.positive.add(&other.positive);
        s.negative.add(&other.negative);
        s.count += other.count;
        s.sum += other.sum;
        s.zero_count += other.zero_count;
        s.min = s.min.min(other.min);
        s.max = s.max.max(other.max);
    }

    /// A consistent copy of the current state.
    pub fn snapshot(&self) -> ExponentialPoint {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// The bucket index of a positive finite `value` at `scale`: `value` lies in `(base^i, base^(i+1)]`.
pub(crate) fn index(value: f64, scale: i32) -> i32 {
    let bits = value.to_bits();
    let biased = ((bits >> 52) & 0x7ff) as i32;
    let mantissa = bits & ((1 << 52) - 1);
    // floor(log2(value)), and whether value is an exact power of two.
    let (exponent, power_of_two) = if biased == 0 {
        (
            63 - mantissa.leading_zeros() as i32 - 1074,
            mantissa.is_power_of_two(),
        )
    } else {
        (biased - 1023, mantissa == 0)
    };
    if scale <= 0 {
        return (exponent - i32::from(power_of_two)) >> -scale;
    }
    if power_of_two {
        return (exponent << scale) - 1;
    }
    // Within [2^exponent, 2^(exponent+1)): place the fraction by its base-2 logarithm, then
    // correct by one where rounding put it across a boundary.
    // The value scaled into [1, 2): for normal numbers, its mantissa under a zero exponent.
    let fraction = if biased == 0 {
        value / 2f64.powi(exponent)
    } else {
        f64::from_bits(mantissa | (1023 << 52))
    };
    let sub = 1 << scale;
    let position = fraction.log2() * f64::from(sub);
    let guess = (position.ceil() as i32 - 1).clamp(0, sub - 1);
    // log2 is accurate to far better than this margin: away from a boundary the guess stands.
    let margin = 1e-6 * position.abs().max(1.0);
    if (position - position.round()).abs() > margin {
        return (exponent << scale) + guess;
    }
    let lower = |i: i32| 2f64.powf(f64::from(i) / f64::from(sub));
    let within = if fraction <= lower(guess) && guess > 0 {
        guess - 1
    } else if guess + 1 < sub && fraction > lower(guess + 1) {
        guess + 1
    } else {
        guess
    };
    (exponent << scale) + within
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn quantiles_are_read_within_a_bucket_of_the_truth() {
        let h = ExponentialHistogram::new(MAX_SIZE);
        // 1 ms to 1 s, evenly: three decades in 160 buckets, so scale 3 (buckets 9 % wide).
        for i in 1..=1000 {
            h.update(f64::from(i) / 1000.0);
        }
        let p = h.snapshot();
        for q in [0.05, 0.5, 0.95, 0.99] {
            let got = p.quantile(q);
            assert!((got - q).abs() / q < 0.05, "p{q}: {got}");
        }
        assert_eq!(p.quantile(1.0), 1.0, "the largest is the maximum");
        let signed = ExponentialHistogram::new(MAX_SIZE);
        for v in [-8.0, -4.0, 0.0, 0.0, 2.0] {
            signed.update(v);
        }
        let p = signed.snapshot();
        assert!((p.quantile(0.1) + 8.0).abs() < 0.5, "{}", p.quantile(0.1));
        assert_eq!(p.quantile(0.5), 0.0);
        assert!((p.quantile(1.0) - 2.0).abs() < 1e-9, "{}", p.quantile(1.0));
        assert!(
            ExponentialHistogram::new(4)
                .snapshot()
                .quantile(0.5)
                .is_nan()
        );
    }

    #[test]
    fn powers_of_two_sit_on_bucket_boundaries() {
        for scale in [-3, 0, 1, 3, 20] {
            for k in [-1074, -1022, -5, 0, 1, 7, 1023] {
                let v = if k >= -1022 {
                    f64::from_bits(((k + 1023) as u64) << 52)
                } else {
                    f64::from_bits(1 << (k + 1074))
                };
                let want = if scale > 0 {
                    (k << scale) - 1
                } else {
                    (k - 1) >> -scale
                };
                assert_eq!(index(v, scale), want, "2^{k} at scale {scale}");
            }
        }
        assert_eq!(index(1.5, 0), 0);
        assert_eq!(index(3.0, 1), 3); // bucket i is (2^(i/2), 2^((i+1)/2)]: (2.83, 4]
        assert_eq!(index(2.5, 1), 2); // (2, 2.83]
        assert_eq!(index(f64::MAX, 0), 1023);
        assert_eq!(index(f64::from_bits(1), 0), -1075);
    }

    #[test]
    fn scale_drops_exactly_when_the_range_outgrows_max_size() {
        let h = ExponentialHistogram::new(4);
        // At scale 20 these are far apart; four buckets at scale s hold a range ratio of 2^(4·2^-s).
        h.update(1.0);
        assert_eq!(h.snapshot().scale, MAX_SCALE);
        h.update(2.0);
        h.update(4.0);
        h.update(0.0);
        h.update(-8.0);
        let p = h.snapshot();
        // 1, 2, 4 at scale 1: indices -1, 1, 3 → span 5 > 4; at scale 0: -1, 0, 1 → fits.
        assert_eq!(p.scale, 0);
        assert_eq!(
            p.positive,
            Buckets {
                offset: -1,
                counts: vec![1, 1, 1]
            }
        );
        assert_eq!(
            p.negative,
            Buckets {
                offset: 2,
                counts: vec![1]
            }
        );
        assert_eq!(
            (p.count, p.zero_count, p.sum, p.min, p.max),
            (5, 1, -1.0, -8.0, 4.0)
        );
    }

    /// Bucket index → count of the values of one sign, computed value by value.
    fn naive(stream: &[f64], sign: f64, scale: i32) -> BTreeMap<i32, u64> {
        let mut out = BTreeMap::new();
        for v in stream.iter().filter(|v| **v * sign > 0.0) {
            *out.entry(index(v.abs(), scale)).or_insert(0) += 1;
        }
        out
    }

    fn values() -> impl Strategy<Value = Vec<f64>> {
        let magnitude = prop_oneof![
            1e-300..1e-290f64,
            1e-3..1e3f64,
            1e100..1e110f64,
            Just(0.0),
            (1u32..60).prop_map(|k| 2f64.powi(k as i32)),
        ];
        prop::collection::vec(
            (magnitude, any::<bool>()).prop_map(|(m, neg)| if neg { -m } else { m }),
            1..300,
        )
    }

    proptest! {
        #[test]
        fn merging_two_histograms_equals_recording_both_streams(a in values(), b in values(), size in 2usize..40) {
            let (one, two, both) = (
                ExponentialHistogram::new(size),
                ExponentialHistogram::new(size),
                ExponentialHistogram::new(size),
            );
            a.iter().for_each(|v| { one.update(*v); both.update(*v); });
            b.iter().for_each(|v| { two.update(*v); both.update(*v); });
            one.merge(&two.snapshot());
            let (merged, want) = (one.snapshot(), both.snapshot());
            prop_assert_eq!(merged.scale, want.scale);
            prop_assert_eq!(&merged.positive, &want.positive);
            prop_assert_eq!(&merged.negative, &want.negative);
            prop_assert_eq!((merged.count, merged.zero_count), (want.count, want.zero_count));
            prop_assert_eq!((merged.min, merged.max), (want.min, want.max));
        }

        #[test]
        fn buckets_equal_a_naive_count_at_the_final_scale(stream in values(), size in 2usize..40) {
            let h = ExponentialHistogram::new(size);
            for v in &stream {
                h.update(*v);
            }
            let p = h.snapshot();
            let flatten = |b: &Buckets| -> BTreeMap<i32, u64> {
                b.counts.iter().enumerate().filter(|(_, n)| **n > 0).map(|(i, n)| (b.offset + i as i32, *n)).collect()
            };
            prop_assert_eq!(flatten(&p.positive), naive(&stream, 1.0, p.scale));
            prop_assert_eq!(flatten(&p.negative), naive(&stream, -1.0, p.scale));
            prop_assert!(p.positive.counts.len() <= size && p.negative.counts.len() <= size);
            prop_assert_eq!(p.count, stream.len() as u64);
            prop_assert_eq!(p.zero_count, stream.iter().filter(|v| **v == 0.0).count() as u64);
            // The scale is the finest at which both ranges fit.
            if p.scale < MAX_SCALE {
                let span = |m: BTreeMap<i32, u64>| {
                    m.keys().next().zip(m.keys().last()).map_or(0, |(lo, hi)| (hi - lo + 1) as usize)
                };
                let finer = [1.0, -1.0].map(|sign| span(naive(&stream, sign, p.scale + 1)));
                prop_assert!(finer.iter().any(|s| *s > size), "scale {} is coarser than needed", p.scale);
            }
        }

        #[test]
        fn values_lie_within_their_bucket(v in 1e-300..1e300f64, scale in MIN_SCALE..=MAX_SCALE) {
            let i = f64::from(index(v, scale));
            let width = 2f64.powi(-scale);
            let log = v.log2();
            prop_assert!(log > i * width - 1e-9 && log <= (i + 1.0) * width + 1e-9, "log2 {log}, bucket {i} at scale {scale}");
        }

        #[test]
        fn indices_nest_across_scales(v in 1e-300..1e300f64, scale in (MIN_SCALE + 1)..=MAX_SCALE) {
            prop_assert_eq!(index(v, scale) >> 1, index(v, scale - 1));
        }
    }
}
