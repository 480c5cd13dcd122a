//! Instruments: named, typed handles that measurements are recorded through.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use super::aggregation::{
    ExponentialHistogram, ExponentialPoint, Histogram, HistogramPoint, LastValue, MAX_SIZE, Sum,
    Summary, SummaryPoint,
};
use super::exemplar::ReservoirKind;
use super::series::{Held, IdleClock, Series, SeriesKey, SeriesTable};
use super::view::{AttributeView, Viewed};
use crate::clock::unix_nanos;
use crate::model::attributes::{AttributeSet, AttrsRef};
use crate::model::event::TraceContext;
use crate::model::metric::{Aggregation, Descriptor, ExemplarFilter, InstrumentKind};

/// The aggregated state of an instrument, one variant per aggregation.
#[derive(Debug)]
pub enum Storage {
    /// Sum aggregation (Counter, UpDownCounter).
    Sum(SeriesTable<Sum>),
    /// LastValue aggregation (Gauge).
    LastValue(SeriesTable<LastValue>),
    /// Explicit-bucket histogram aggregation over shared bounds.
    Histogram(Arc<[f64]>, SeriesTable<Histogram>),
    /// Base-2 exponential histogram aggregation.
    ExponentialHistogram(SeriesTable<ExponentialHistogram>),
    /// Summaries as received (a summary instrument's only aggregation).
    Summary(SeriesTable<Summary>),
}

/// A point aggregated elsewhere (received over OTLP), to be added to one series.
#[derive(Debug, Clone, Copy)]
pub enum Point<'a> {
    /// How much a sum changed.
    Sum(f64),
    /// A gauge's current value.
    Gauge(f64),
    /// What an explicit-bucket histogram over these bounds recorded.
    Histogram(&'a [f64], &'a HistogramPoint),
    /// What a base-2 exponential histogram recorded.
    Exponential(&'a ExponentialPoint),
    /// A summary's current count, sum and quantiles.
    Summary(&'a SummaryPoint),
}

/// Why a point could not be added to an instrument.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MergeError {
    /// The point's type is not the instrument's aggregation (an earlier point or a view chose it).
    #[error("its type differs from the aggregation this metric already has")]
    Shape,
    /// The histogram's bounds are not the instrument's.
    #[error("its bucket bounds differ from those this metric already has")]
    Bounds,
    /// A monotonic sum went down, or a value is not finite.
    #[error("its value is not finite, or a monotonic sum decreased")]
    Value,
}

/// An instrument: a descriptor and the series recorded through it.
#[derive(Debug)]
pub struct Instrument {
    descriptor: Descriptor,
    storage: Storage,
    dropped: bool,
    rejected: AtomicU64,
    view: OnceLock<Viewed>,
    exemplars: ExemplarFilter,
    /// Whether an explicit-bucket histogram also keeps each series at an exponential resolution.
    detailed: bool,
}

/// Exemplars an exponential histogram series keeps: the specification's `min(20, max_size)`.
const EXPONENTIAL_EXEMPLARS: usize = if MAX_SIZE < 20 { MAX_SIZE } else { 20 };

/// A measurement the exemplar filter sampled: its trace and when it was made.
type Sample = Option<(Option<TraceContext>, u64)>;

/// Offers `value` to `series`' reservoir of `kind` when the filter sampled it.
fn offer<A>(series: &Series<A>, sample: Sample, kind: ReservoirKind, value: f64, bucket: usize) {
    if let Some(sampled) = sample {
        series.offer_exemplar(kind, value, bucket, sampled);
    }
}

/// Sets a gauge's series to a measurement.
fn set(series: &Series<LastValue>, value: f64, sample: Sample) {
    series.aggregator.update(value);
    offer(series, sample, ReservoirKind::FixedSize(1), value, 0);
}

/// Counts a measurement in an explicit-bucket histogram's series.
fn count(series: &Series<Histogram>, value: f64, sample: Sample) {
    let bucket = series.aggregator.update(value);
    let aligned = ReservoirKind::Aligned(series.aggregator.bounds().len() + 1);
    offer(series, sample, aligned, value, bucket);
}

/// Adds a measurement to an exponential histogram's series.
fn scale(series: &Series<ExponentialHistogram>, value: f64, sample: Sample) {
    series.aggregator.update(value);
    let fixed = ReservoirKind::FixedSize(EXPONENTIAL_EXEMPLARS);
    offer(series, sample, fixed, value, 0);
}

/// An instrument held open for a batch of measurements: its series are found under one shared
/// lock, taken once, and each found series is then recorded into by its slot with no lookup,
/// in this batch and, through [`Recorder::into_found`], in later ones.
///
/// A set [`Recorder::find`] does not find is new: record it with
/// [`Instrument::record_traced`] once the recorder is dropped (that creates the series, or
/// counts it in the overflow series).
#[derive(Debug)]
pub struct Recorder<'i> {
    instrument: &'i Instrument,
    held: Holding<'i>,
}

/// The series a [`Recorder`] found, by slot, kept for the instrument's next one.
#[derive(Debug, Default)]
pub struct Found(Kept);

/// The series found, of each aggregation that records measurements.
#[derive(Debug, Default)]
enum Kept {
    #[default]
    None,
    Sum(Vec<Arc<Series<Sum>>>),
    LastValue(Vec<Arc<Series<LastValue>>>),
    Histogram(Vec<Arc<Series<Histogram>>>),
    Exponential(Vec<Arc<Series<ExponentialHistogram>>>),
}

/// The held table of each aggregation that records measurements.
#[derive(Debug)]
enum Holding<'i> {
    Sum(Held<'i, Sum>),
    LastValue(Held<'i, LastValue>),
    Histogram(Held<'i, Histogram>),
    Exponential(Held<'i, ExponentialHistogram>),
}

impl Recorder<'_> {
    /// The slot of the series `attrs` (sorted by key) records into, if it exists.
    pub fn find(&mut self, attrs: &AttrsRef<'_>) -> Option<usize> {
        let key = SeriesKey::Attrs(attrs);
        match &mut self.held {
            Holding::Sum(h) => h.find(key),
            Holding::LastValue(h) => h.find(key),
            Holding::Histogram(h) => h.find(key),
            Holding::Exponential(h) => h.find(key),
        }
    }

    /// Records one measurement made under `trace` at `time_unix_nano` into the series at
    /// `slot`, as [`Instrument::record_traced_at`] does; `false`, with nothing recorded, when
    /// that series was removed since it was found (find it again).
    pub fn record(
        &self,
        slot: usize,
        value: f64,
        trace: Option<TraceContext>,
        time_unix_nano: u64,
    ) -> bool {
        let Some(sample) = self.instrument.admit(value, trace, || time_unix_nano) else {
            return true;
        };
        match &self.held {
            Holding::Sum(h) => h.update(slot, |s| self.instrument.add(s, value, sample)),
            Holding::LastValue(h) => h.update(slot, |s| set(s, value, sample)),
            Holding::Histogram(h) => h.update(slot, |s| count(s, value, sample)),
            Holding::Exponential(h) => h.update(slot, |s| scale(s, value, sample)),
        }
    }

    /// Releases the instrument, keeping the series found for its next recorder.
    pub fn into_found(self) -> Found {
        Found(match self.held {
            Holding::Sum(h) => Kept::Sum(h.into_found()),
            Holding::LastValue(h) => Kept::LastValue(h.into_found()),
            Holding::Histogram(h) => Kept::Histogram(h.into_found()),
            Holding::Exponential(h) => Kept::Exponential(h.into_found()),
        })
    }
}

impl Instrument {
    /// An instrument with no series yet, aggregating as its kind does by default; `bounds` is
    /// used by histograms only.
    pub fn new(descriptor: Descriptor, bounds: Arc<[f64]>, cardinality_limit: usize) -> Self {
        let aggregation = Self::default_aggregation(descriptor.kind);
        Self::with_aggregation(descriptor, aggregation, bounds, cardinality_limit)
    }

    /// The aggregation an instrument kind gets unless a view chooses another.
    pub fn default_aggregation(kind: InstrumentKind) -> Aggregation {
        match kind {
            InstrumentKind::Gauge | InstrumentKind::ObservableGauge => Aggregation::LastValue,
            InstrumentKind::Histogram => Aggregation::ExplicitBucketHistogram,
            _ => Aggregation::Sum,
        }
    }

    /// An instrument with no series yet, aggregating with `aggregation` (`Drop` records nothing;
    /// a summary keeps its points as received whatever else is asked).
    pub fn with_aggregation(
        descriptor: Descriptor,
        aggregation: Aggregation,
        bounds: Arc<[f64]>,
        cardinality_limit: usize,
    ) -> Self {
        let limit = cardinality_limit;
        let storage = match aggregation {
            _ if descriptor.kind == InstrumentKind::Summary => {
                Storage::Summary(SeriesTable::new(limit))
            }
            Aggregation::Sum | Aggregation::Drop => Storage::Sum(SeriesTable::new(limit)),
            Aggregation::LastValue => Storage::LastValue(SeriesTable::new(limit)),
            Aggregation::ExplicitBucketHistogram => {
                Storage::Histogram(bounds, SeriesTable::new(limit))
            }
            Aggregation::Base2ExponentialBucketHistogram => {
                Storage::ExponentialHistogram(SeriesTable::new(limit))
            }
        };
        Self {
            descriptor,
            storage,
            dropped: aggregation == Aggregation::Drop,
            rejected: AtomicU64::new(0),
            view: OnceLock::new(),
            exemplars: ExemplarFilter::default(),
            detailed: false,
        }
    }

    /// The same instrument, keeping each series of an explicit-bucket histogram also at an
    /// exponential resolution when `detailed` (see [`Instrument::details`]).
    pub fn with_detail(mut self, detailed: bool) -> Self {
        self.detailed = detailed;
        self
    }

    /// Each series' measurements at an exponential resolution: a detailed histogram's detail,
    /// or an exponential histogram's own point; nothing for other instruments.
    pub fn details(&self, mut visit: impl FnMut(&AttributeSet, ExponentialPoint)) {
        match &self.storage {
            Storage::Histogram(_, table) => table.for_each(|s| {
                if let Some(detail) = s.aggregator.detail() {
                    visit(&s.attributes, detail);
                }
            }),
            Storage::ExponentialHistogram(table) => {
                table.for_each(|s| visit(&s.attributes, s.aggregator.snapshot()));
            }
            Storage::Sum(_) | Storage::LastValue(_) | Storage::Summary(_) => {}
        }
    }

    /// The same instrument, sampling exemplars as `filter` says.
    pub fn with_exemplar_filter(mut self, filter: ExemplarFilter) -> Self {
        self.exemplars = filter;
        self
    }

    /// Whether a view dropped this instrument: it records nothing and is not exported.
    pub fn is_dropped(&self) -> bool {
        self.dropped
    }

    /// Records one measurement made outside any trace for the series `attrs` (sorted by key).
    pub fn record(&self, attrs: &AttrsRef<'_>, value: f64) {
        self.record_traced(attrs, value, None);
    }

    /// Records one measurement made under `trace` for the series `attrs` (sorted by key),
    /// through the instrument's view if it has one; the exemplar filter decides whether it is
    /// also kept as an exemplar.
    ///
    /// Non-finite values, and negative values on a Counter, are counted in
    /// [`Instrument::rejected`] and not recorded.
    pub fn record_traced(&self, attrs: &AttrsRef<'_>, value: f64, trace: Option<TraceContext>) {
        self.record_sampled(attrs, value, trace, unix_nanos);
    }

    /// Like [`Instrument::record_traced`], for a measurement made at `time_unix_nano` (a caller
    /// recording many at once reads the clock once).
    pub fn record_traced_at(
        &self,
        attrs: &AttrsRef<'_>,
        value: f64,
        trace: Option<TraceContext>,
        time_unix_nano: u64,
    ) {
        self.record_sampled(attrs, value, trace, || time_unix_nano);
    }

    /// Records a measurement; `now` says when it was made, read only if it is sampled.
    fn record_sampled(
        &self,
        attrs: &AttrsRef<'_>,
        value: f64,
        trace: Option<TraceContext>,
        now: impl Fn() -> u64,
    ) {
        let Some(sample) = self.admit(value, trace, now) else {
            return;
        };
        match self.view.get() {
            None => self.record_into(SeriesKey::Attrs(attrs), value, sample),
            Some(viewed) => {
                viewed.resolve(&self.descriptor, attrs, |key| {
                    self.record_into(key, value, sample);
                });
            }
        }
    }

    /// Whether a measurement of `value` is recorded (counting it in [`Instrument::rejected`] if
    /// not), and whether the exemplar filter samples it; `now` is read only if it does.
    fn admit(
        &self,
        value: f64,
        trace: Option<TraceContext>,
        now: impl Fn() -> u64,
    ) -> Option<Sample> {
        if self.dropped {
            return None;
        }
        let negative_on_counter = self.descriptor.kind.is_monotonic() && value < 0.0;
        if !value.is_finite() || negative_on_counter {
            self.rejected.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        // Callbacks report totals and current values, not measurements: they carry no exemplars.
        let observed = self.descriptor.kind.is_observable();
        Some((!observed && self.exemplars.samples(trace.as_ref())).then(|| (trace, now())))
    }

    /// The instrument held open for a batch of measurements, with the series `found` for
    /// earlier batches; `None` when its series are not found directly (it has a view, it is
    /// dropped or it is a summary): record one by one then.
    pub fn recorder(&self, found: Found) -> Option<Recorder<'_>> {
        if self.dropped || self.view.get().is_some() {
            return None;
        }
        let held = match (&self.storage, found.0) {
            (Storage::Sum(t), Kept::Sum(f)) => Holding::Sum(t.hold(f)),
            (Storage::Sum(t), _) => Holding::Sum(t.hold(Vec::new())),
            (Storage::LastValue(t), Kept::LastValue(f)) => Holding::LastValue(t.hold(f)),
            (Storage::LastValue(t), _) => Holding::LastValue(t.hold(Vec::new())),
            (Storage::Histogram(_, t), Kept::Histogram(f)) => Holding::Histogram(t.hold(f)),
            (Storage::Histogram(_, t), _) => Holding::Histogram(t.hold(Vec::new())),
            (Storage::ExponentialHistogram(t), Kept::Exponential(f)) => {
                Holding::Exponential(t.hold(f))
            }
            (Storage::ExponentialHistogram(t), _) => Holding::Exponential(t.hold(Vec::new())),
            (Storage::Summary(_), _) => return None,
        };
        Some(Recorder {
            instrument: self,
            held,
        })
    }

    /// Adds `point` to the series `attrs` (sorted by key), through the instrument's view if it
    /// has one; nothing is added when the point does not fit the instrument.
    pub fn merge(&self, attrs: &AttrsRef<'_>, point: Point<'_>) -> Result<(), MergeError> {
        match (&self.storage, point) {
            (Storage::Sum(_), Point::Sum(v)) | (Storage::LastValue(_), Point::Gauge(v))
                if !v.is_finite() || (self.descriptor.kind.is_monotonic() && v < 0.0) =>
            {
                return Err(MergeError::Value);
            }
            (Storage::Summary(_), Point::Summary(p))
                if !p.sum.is_finite()
                    || p.quantiles.iter().any(|(q, v)| {
                        !(0.0..=1.0).contains(q) || !(v.is_finite() || v.is_nan())
                    }) =>
            {
                return Err(MergeError::Value);
            }
            (Storage::Sum(_), Point::Sum(_))
            | (Storage::LastValue(_), Point::Gauge(_))
            | (Storage::ExponentialHistogram(_), Point::Exponential(_))
            | (Storage::Summary(_), Point::Summary(_)) => {}
            (Storage::Histogram(bounds, _), Point::Histogram(b, _)) if **bounds == *b => {}
            (Storage::Histogram(..), Point::Histogram(..)) => return Err(MergeError::Bounds),
            _ if self.dropped => return Ok(()),
            _ => return Err(MergeError::Shape),
        }
        if self.dropped {
            return Ok(());
        }
        match self.view.get() {
            None => self.merge_into(SeriesKey::Attrs(attrs), point),
            Some(viewed) => {
                viewed.resolve(&self.descriptor, attrs, |key| self.merge_into(key, point));
            }
        }
        Ok(())
    }

    fn merge_into(&self, key: SeriesKey<'_, '_>, point: Point<'_>) {
        match (&self.storage, point) {
            (Storage::Sum(t), Point::Sum(v)) => {
                t.with_series(key, Sum::default, |s| s.aggregator.update(v));
            }
            (Storage::LastValue(t), Point::Gauge(v)) => {
                t.with_series(key, LastValue::default, |s| s.aggregator.update(v));
            }
            (Storage::Histogram(bounds, t), Point::Histogram(_, p)) => {
                t.with_series(
                    key,
                    || Histogram::new(bounds.clone()),
                    |s| {
                        s.aggregator.merge(p);
                    },
                );
            }
            (Storage::ExponentialHistogram(t), Point::Exponential(p)) => {
                t.with_series(
                    key,
                    || ExponentialHistogram::new(MAX_SIZE),
                    |s| s.aggregator.merge(p),
                );
            }
            (Storage::Summary(t), Point::Summary(p)) => {
                t.with_series(key, Summary::default, |s| s.aggregator.set(p));
            }
            _ => {}
        }
    }

    fn record_into(&self, key: SeriesKey<'_, '_>, value: f64, sample: Sample) {
        match &self.storage {
            Storage::Sum(table) => {
                table.with_series(key, Sum::default, |s| self.add(s, value, sample));
            }
            Storage::LastValue(table) => {
                table.with_series(key, LastValue::default, |s| set(s, value, sample));
            }
            Storage::Histogram(bounds, table) => table.with_series(
                key,
                || Histogram::with_detail(bounds.clone(), self.detailed),
                |s| count(s, value, sample),
            ),
            Storage::ExponentialHistogram(table) => table.with_series(
                key,
                || ExponentialHistogram::new(MAX_SIZE),
                |s| scale(s, value, sample),
            ),
            // A summary is computed elsewhere: nothing records into it.
            Storage::Summary(_) => {}
        }
    }

    /// Adds a measurement to a sum's series (an observable one's total is replaced).
    fn add(&self, series: &Series<Sum>, value: f64, sample: Sample) {
        if self.descriptor.kind.is_observable() {
            series.aggregator.set(value);
        } else {
            series.aggregator.update(value);
            offer(series, sample, ReservoirKind::FixedSize(1), value, 0);
        }
    }

    /// The filter deciding which measurements become exemplars.
    pub fn exemplar_filter(&self) -> ExemplarFilter {
        self.exemplars
    }

    /// The same instrument, stamping its series with ticks of `clock` (for
    /// [`Instrument::expire`]) and holding at most `byte_limit` bytes of attribute sets.
    pub fn with_series(mut self, clock: IdleClock, byte_limit: usize) -> Self {
        self.storage = match self.storage {
            Storage::Sum(t) => Storage::Sum(t.with_clock(clock).with_byte_limit(byte_limit)),
            Storage::LastValue(t) => {
                Storage::LastValue(t.with_clock(clock).with_byte_limit(byte_limit))
            }
            Storage::Histogram(b, t) => {
                Storage::Histogram(b, t.with_clock(clock).with_byte_limit(byte_limit))
            }
            Storage::ExponentialHistogram(t) => {
                Storage::ExponentialHistogram(t.with_clock(clock).with_byte_limit(byte_limit))
            }
            Storage::Summary(t) => {
                Storage::Summary(t.with_clock(clock).with_byte_limit(byte_limit))
            }
        };
        self
    }

    /// Removes series not measured for more than `ticks` ticks of its clock; returns how many.
    pub fn expire(&self, ticks: u64) -> usize {
        match &self.storage {
            Storage::Sum(t) => t.expire(ticks),
            Storage::LastValue(t) => t.expire(ticks),
            Storage::Histogram(_, t) => t.expire(ticks),
            Storage::ExponentialHistogram(t) => t.expire(ticks),
            Storage::Summary(t) => t.expire(ticks),
        }
    }

    /// Removes the series whose attributes `keep` refuses (a source's series that no longer exist).
    pub fn retain_series(&self, keep: impl Fn(&AttributeSet) -> bool) {
        match &self.storage {
            Storage::Sum(t) => t.retain(keep),
            Storage::LastValue(t) => t.retain(keep),
            Storage::Histogram(_, t) => t.retain(keep),
            Storage::ExponentialHistogram(t) => t.retain(keep),
            Storage::Summary(t) => t.retain(keep),
        }
    }

    /// Routes this instrument's series through `view`; `false` if it already has one (the first view wins).
    pub fn attach_view(&self, view: Arc<dyn AttributeView>) -> bool {
        self.view.set(Viewed::new(view)).is_ok()
    }

    /// The instrument's descriptor.
    pub fn descriptor(&self) -> &Descriptor {
        &self.descriptor
    }

    /// Whether the instrument has no series yet.
    pub fn is_empty(&self) -> bool {
        self.series_count() == 0
    }

    /// The number of its series, the overflow series included.
    pub fn series_count(&self) -> usize {
        match &self.storage {
            Storage::Sum(t) => t.len(),
            Storage::LastValue(t) => t.len(),
            Storage::Histogram(_, t) => t.len(),
            Storage::ExponentialHistogram(t) => t.len(),
            Storage::Summary(t) => t.len(),
        }
    }

    /// The aggregated state, for the reader (and the engine's own tests).
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// How many measurements were rejected (negative on a Counter, or not finite).
    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    /// Whether new attribute sets overflowed because its byte budget, not its series limit,
    /// was spent.
    pub fn past_byte_limit(&self) -> bool {
        match &self.storage {
            Storage::Sum(t) => t.past_byte_limit(),
            Storage::LastValue(t) => t.past_byte_limit(),
            Storage::Histogram(_, t) => t.past_byte_limit(),
            Storage::ExponentialHistogram(t) => t.past_byte_limit(),
            Storage::Summary(t) => t.past_byte_limit(),
        }
    }

    /// How many measurements were folded into the overflow series.
    pub fn overflowed(&self) -> u64 {
        match &self.storage {
            Storage::Sum(t) => t.overflowed(),
            Storage::LastValue(t) => t.overflowed(),
            Storage::Histogram(_, t) => t.overflowed(),
            Storage::ExponentialHistogram(t) => t.overflowed(),
            Storage::Summary(t) => t.overflowed(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::attributes::ValueRef;

    fn descriptor(kind: InstrumentKind) -> Descriptor {
        Descriptor {
            name: "x".into(),
            unit: String::new(),
            description: String::new(),
            kind,
            scope: "test".into(),
        }
    }

    fn sum_of(inst: &Instrument) -> f64 {
        let Storage::Sum(table) = inst.storage() else {
            panic!("not a sum")
        };
        let mut total = 0.0;
        table.for_each(|s| total += s.aggregator.value());
        total
    }

    #[test]
    fn counter_rejects_negative_and_non_finite_values() {
        let c = Instrument::new(descriptor(InstrumentKind::Counter), Arc::from([]), 10);
        let attrs = [("k", ValueRef::Str("v"))];
        c.record(&attrs, 2.0);
        c.record(&attrs, -1.0);
        c.record(&attrs, f64::NAN);
        c.record(&attrs, 3.5);
        assert_eq!(sum_of(&c), 5.5);
        assert_eq!(c.rejected(), 2);
    }

    #[test]
    fn up_down_counter_accepts_negative_values() {
        let c = Instrument::new(descriptor(InstrumentKind::UpDownCounter), Arc::from([]), 10);
        c.record(&[], 2.0);
        c.record(&[], -5.0);
        assert_eq!(sum_of(&c), -3.0);
        assert_eq!(c.rejected(), 0);
    }
}
