//! The aggregation engine: instruments, their series and the registry that owns them.
//!
//! Nothing here knows about HTTP, protobuf or text formats; exporters read
//! aggregator state through [`Instrument::storage`].

pub mod aggregation;
pub mod exemplar;
pub mod instrument;
pub mod reader;
pub mod registries;
pub mod series;
pub mod stream;
pub mod temporality;
pub mod view;

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

pub use crate::model::metric::Descriptor;
pub use instrument::{Found, Instrument, MergeError, Point, Recorder, Storage};
pub use registries::{Admission, Producer, Registries, TooManyResources};
pub use temporality::{DeltaTracker, DeltaTrackers};
pub use view::{AttributeView, Mapping, Pattern, patience, patiently};

use crate::model::metric::{Aggregation, ExemplarFilter, HistogramAggregation, InstrumentKind};
use crate::model::stream::{StreamView, StreamViewError};
use stream::StreamViewExt as _;

/// An observable instrument's callback: reports this collection's measurements through the observer.
pub type Callback = Box<dyn Fn(&Observer<'_>) + Send + Sync>;

/// What a callback reports through: its observable instrument, in its registry.
#[derive(Debug)]
pub struct Observer<'a> {
    instrument: &'a Instrument,
    registry: &'a Registry,
}

impl Observer<'_> {
    /// Reports the value of the series `attrs` (sorted by key): a total for observable
    /// counters, the current value for observable gauges.
    pub fn observe(&self, attrs: &crate::model::attributes::AttrsRef<'_>, value: f64) {
        self.instrument.record(attrs, value);
    }

    /// Every instrument of the registry, for callbacks that report on the engine itself.
    pub fn instruments(&self) -> Vec<Arc<Instrument>> {
        self.registry.instruments()
    }
}

/// A callback was registered for an instrument that is not observable.
#[derive(Debug, thiserror::Error)]
#[error("instrument `{0}` is not observable, so it takes no callback")]
pub struct NotObservable(String);

/// Which instruments a view applies to.
pub type ViewFilter = Arc<dyn Fn(&Descriptor) -> bool + Send + Sync>;

/// Two registrations of one name disagree on kind, unit or bucket bounds.
#[derive(Debug, thiserror::Error)]
#[error(
    "instrument `{name}` is already registered as {existing}, cannot register it as {requested}"
)]
pub struct ConflictError {
    name: String,
    existing: String,
    requested: String,
}

/// A registered instrument with the bucket bounds it was asked for (a view may have replaced them).
type Registered = (Arc<Instrument>, Arc<[f64]>);

/// The instruments of one resource, by scope and name, and the views new instruments are bound to.
pub struct Registry {
    /// By scope name and requested name (lowercase).
    by_name: RwLock<HashMap<String, Registered>>,
    order: RwLock<Vec<Arc<Instrument>>>,
    views: RwLock<Vec<(ViewFilter, Arc<dyn AttributeView>)>>,
    cardinality_limit: usize,
    attribute_bytes_limit: usize,
    histograms: HistogramAggregation,
    callbacks: RwLock<Vec<(Arc<Instrument>, Callback)>>,
    clock: series::IdleClock,
    streams: Vec<StreamView>,
    exemplars: ExemplarFilter,
    /// The names of histograms whose series are also kept at an exponential resolution.
    detailed: Arc<[String]>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("cardinality_limit", &self.cardinality_limit)
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// An empty registry whose instruments admit `cardinality_limit` series each.
    pub fn new(cardinality_limit: usize) -> Self {
        Self {
            by_name: RwLock::default(),
            order: RwLock::default(),
            views: RwLock::default(),
            cardinality_limit,
            attribute_bytes_limit: usize::MAX,
            histograms: HistogramAggregation::default(),
            callbacks: RwLock::default(),
            clock: series::IdleClock::default(),
            streams: Vec::new(),
            exemplars: ExemplarFilter::default(),
            detailed: Arc::from([]),
        }
    }

    /// The same registry, keeping the histograms named in `names` that it creates from now on
    /// also at an exponential resolution (for quantiles their buckets are too coarse for).
    pub fn with_detail(mut self, names: &[&str]) -> Self {
        self.detailed = names.iter().map(|n| n.to_string()).collect();
        self
    }

    /// The same registry, whose instruments created from now on hold at most `bytes` of
    /// distinct attribute sets each before new sets overflow.
    pub fn with_attribute_bytes_limit(mut self, bytes: usize) -> Self {
        self.attribute_bytes_limit = bytes;
        self
    }

    /// The same registry, sampling exemplars with `filter` in instruments created from now on.
    pub fn with_exemplar_filter(mut self, filter: ExemplarFilter) -> Self {
        self.exemplars = filter;
        self
    }

    /// The same registry, applying `views` (first match wins) to instruments created from now on.
    pub fn with_stream_views(mut self, views: Vec<StreamView>) -> Result<Self, StreamViewError> {
        for (i, view) in views.iter().enumerate() {
            view.validate(i + 1)?;
        }
        for warning in crate::model::stream::conflicts(&views) {
            tracing::warn!("[[metrics.views]]: {warning}");
        }
        self.streams = views;
        Ok(self)
    }

    /// The same registry, aggregating histogram instruments created from now on with `aggregation`.
    pub fn with_histogram_aggregation(mut self, aggregation: HistogramAggregation) -> Self {
        self.histograms = aggregation;
        self
    }

    /// An empty registry configured as this one: same limits, aggregations, filters and views.
    ///
    /// Views added to this registry afterwards do not reach the sibling.
    pub fn sibling(&self) -> Self {
        Self {
            by_name: RwLock::default(),
            order: RwLock::default(),
            views: RwLock::new(
                self.views
                    .read()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone(),
            ),
            cardinality_limit: self.cardinality_limit,
            attribute_bytes_limit: self.attribute_bytes_limit,
            histograms: self.histograms,
            callbacks: RwLock::default(),
            clock: self.clock.clone(),
            streams: self.streams.clone(),
            exemplars: self.exemplars,
            detailed: self.detailed.clone(),
        }
    }

    /// Returns the instrument named in `descriptor`, creating it if new.
    ///
    /// Names compare case-insensitively within a scope, as the OpenTelemetry
    /// specification asks; a second registration with another kind, unit or
    /// bounds fails.
    pub fn instrument(
        &self,
        descriptor: Descriptor,
        bounds: &[f64],
    ) -> Result<Arc<Instrument>, ConflictError> {
        self.instrument_as(descriptor, bounds, None)
    }

    /// Like [`Registry::instrument`], but a new instrument aggregates with `aggregation` (unless a
    /// stream view chooses another) instead of its kind's default: received data keeps its shape.
    pub fn instrument_as(
        &self,
        descriptor: Descriptor,
        bounds: &[f64],
        aggregation: Option<Aggregation>,
    ) -> Result<Arc<Instrument>, ConflictError> {
        let key = format!(
            "{}\u{1f}{}",
            descriptor.scope.name,
            descriptor.name.to_ascii_lowercase()
        );
        if let Some(found) = self
            .by_name
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
        {
            return Self::check_same(found, &descriptor, bounds);
        }
        let mut by_name = self.by_name.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(found) = by_name.get(&key) {
            return Self::check_same(found, &descriptor, bounds);
        }
        let requested: Arc<[f64]> = Arc::from(bounds);
        let instrument = Arc::new(self.create(descriptor, requested.clone(), aggregation));
        if instrument.is_dropped() {
            by_name.insert(key, (instrument.clone(), requested));
            return Ok(instrument);
        }
        let name = &instrument.descriptor().name;
        if by_name
            .values()
            .any(|(i, _)| !i.is_dropped() && i.descriptor().name.eq_ignore_ascii_case(name))
        {
            tracing::warn!(metric = %name, "two instruments now export under one name; check the views that rename them");
        }
        let views = self.views.read().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, view)) = views
            .iter()
            .find(|(applies, _)| applies(instrument.descriptor()))
        {
            instrument.attach_view(view.clone());
        }
        drop(views);
        by_name.insert(key, (instrument.clone(), requested));
        self.order
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push(instrument.clone());
        Ok(instrument)
    }

    /// Builds the instrument for `descriptor`, as the first stream view selecting it says.
    fn create(
        &self,
        descriptor: Descriptor,
        bounds: Arc<[f64]>,
        shape: Option<Aggregation>,
    ) -> Instrument {
        let view = self.streams.iter().find(|v| v.selects(&descriptor));
        let mut aggregation =
            shape.unwrap_or_else(|| Instrument::default_aggregation(descriptor.kind));
        if shape.is_none()
            && aggregation == Aggregation::ExplicitBucketHistogram
            && self.histograms == HistogramAggregation::Base2ExponentialBucketHistogram
        {
            aggregation = Aggregation::Base2ExponentialBucketHistogram;
        }
        let detailed = self.detailed.contains(&descriptor.name);
        let Some(view) = view else {
            return Instrument::with_aggregation(
                descriptor,
                aggregation,
                bounds,
                self.cardinality_limit,
            )
            .with_series(self.clock.clone(), self.attribute_bytes_limit)
            .with_exemplar_filter(self.exemplars)
            .with_detail(detailed);
        };
        let bounds = view.buckets.as_deref().map_or(bounds, Arc::from);
        let instrument = Instrument::with_aggregation(
            view.describe(descriptor),
            view.aggregation.unwrap_or(aggregation),
            bounds,
            view.cardinality_limit.unwrap_or(self.cardinality_limit),
        )
        .with_series(self.clock.clone(), self.attribute_bytes_limit)
        .with_exemplar_filter(self.exemplars)
        .with_detail(detailed);
        if let Some(filter) = view.attribute_filter() {
            instrument.attach_view(filter);
        }
        instrument
    }

    fn check_same(
        (found, asked): &(Arc<Instrument>, Arc<[f64]>),
        wanted: &Descriptor,
        bounds: &[f64],
    ) -> Result<Arc<Instrument>, ConflictError> {
        let have = found.descriptor();
        let same_bounds =
            found.descriptor().kind != InstrumentKind::Histogram || **asked == *bounds;
        if have.kind == wanted.kind && have.unit == wanted.unit && same_bounds {
            return Ok(found.clone());
        }
        Err(ConflictError {
            name: wanted.name.clone(),
            existing: format!("{:?} in `{}`", have.kind, have.unit),
            requested: format!("{:?} in `{}`", wanted.kind, wanted.unit),
        })
    }

    /// Binds `view` to every instrument, present or future, that `applies` accepts and no earlier view took.
    pub fn add_view(&self, applies: ViewFilter, view: Arc<dyn AttributeView>) {
        let mut views = self.views.write().unwrap_or_else(PoisonError::into_inner);
        for instrument in self.instruments() {
            if applies(instrument.descriptor()) {
                instrument.attach_view(view.clone());
            }
        }
        views.push((applies, view));
    }

    /// Runs `callback` at every collection to report the measurements of observable `instrument`.
    pub fn register_callback(
        &self,
        instrument: Arc<Instrument>,
        callback: Callback,
    ) -> Result<(), NotObservable> {
        if !instrument.descriptor().kind.is_observable() {
            return Err(NotObservable(instrument.descriptor().name.clone()));
        }
        self.callbacks
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push((instrument, callback));
        Ok(())
    }

    /// Runs every callback once; each collection (exposition, export) starts with it.
    pub fn observe(&self) {
        let callbacks = self
            .callbacks
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        for (instrument, callback) in callbacks.iter() {
            callback(&Observer {
                instrument,
                registry: self,
            });
        }
    }

    /// Advances the idle clock one tick and removes the series not measured in the last `ticks`
    /// ticks (observable instruments keep theirs: callbacks report them); returns how many went.
    pub fn expire_idle(&self, ticks: u64) -> usize {
        self.clock.advance();
        self.expire(ticks)
    }

    /// Removes the series not measured in the last `ticks` ticks, without advancing the clock
    /// (siblings share it); returns how many went.
    pub(crate) fn expire(&self, ticks: u64) -> usize {
        self.instruments()
            .iter()
            .filter(|i| !i.descriptor().kind.is_observable())
            .map(|i| i.expire(ticks))
            .sum()
    }

    /// The instruments in registration order.
    pub fn instruments(&self) -> Vec<Arc<Instrument>> {
        self.order
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Whether no instrument has a series.
    pub fn is_empty(&self) -> bool {
        self.instruments().iter().all(|i| i.is_empty())
    }

    /// The per-instrument cardinality limit.
    pub fn cardinality_limit(&self) -> usize {
        self.cardinality_limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(name: &str, kind: InstrumentKind, unit: &str) -> Descriptor {
        Descriptor {
            name: name.into(),
            unit: unit.into(),
            description: String::new(),
            kind,
            scope: "test".into(),
        }
    }

    fn total(instrument: &Instrument) -> Vec<(String, f64)> {
        let mut out = Vec::new();
        let mut visit = |attrs: &crate::model::attributes::AttributeSet, v: f64| {
            let key: Vec<String> = attrs.iter().map(|(k, v)| format!("{k}={v}")).collect();
            out.push((key.join(","), v));
        };
        match instrument.storage() {
            Storage::Sum(t) => t.for_each(|s| visit(&s.attributes, s.aggregator.value())),
            Storage::LastValue(t) => t.for_each(|s| visit(&s.attributes, s.aggregator.value())),
            _ => {}
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    #[test]
    fn threads_recording_while_another_collects_lose_nothing() {
        use crate::model::attributes::ValueRef;
        use std::sync::atomic::{AtomicBool, Ordering};
        const THREADS: i64 = 4;
        const RECORDS: i64 = 20_000;
        let reg = Registry::new(100);
        let c = reg
            .instrument(desc("c", InstrumentKind::Counter, ""), &[])
            .expect("counter");
        let h = reg
            .instrument(desc("h", InstrumentKind::Histogram, "s"), &[10.0])
            .expect("histogram");
        let done = AtomicBool::new(false);
        let collections = std::thread::scope(|scope| {
            let collector = scope.spawn(|| {
                let mut n = 0u64;
                while !done.load(Ordering::Relaxed) {
                    total(&c);
                    if let Storage::Histogram(_, t) = h.storage() {
                        t.for_each(|s| drop(s.aggregator.snapshot()));
                    }
                    n += 1;
                }
                n
            });
            let writers: Vec<_> = (0..THREADS)
                .map(|t| {
                    let (c, h) = (&c, &h);
                    scope.spawn(move || {
                        for i in 0..RECORDS {
                            // Every thread shares series 0..16 and creates them in its own order.
                            let attrs = [("id", ValueRef::Int((i + t) % 16))];
                            c.record(&attrs, 1.0);
                            h.record(&attrs, (i % 20) as f64);
                        }
                    })
                })
                .collect();
            writers.into_iter().for_each(|w| w.join().expect("writer"));
            done.store(true, Ordering::Relaxed);
            collector.join().expect("collector")
        });
        assert!(collections > 0);
        let sums = total(&c);
        assert_eq!(sums.len(), 16);
        let per_series = (THREADS * RECORDS / 16) as f64;
        assert!(sums.iter().all(|(_, v)| *v == per_series), "{sums:?}");
        let Storage::Histogram(_, t) = h.storage() else {
            panic!("histogram")
        };
        let (mut count, mut low) = (0, 0);
        t.for_each(|s| {
            let p = s.aggregator.snapshot();
            count += p.count;
            low += p.bucket_counts[0];
        });
        assert_eq!(count, (THREADS * RECORDS) as u64);
        assert_eq!(
            low,
            (THREADS * RECORDS * 11 / 20) as u64,
            "values 0..=10 of every 20"
        );
    }

    #[test]
    fn observable_instruments_take_their_callbacks_values_once_per_collection() {
        use crate::model::attributes::ValueRef;
        use std::sync::atomic::{AtomicU64, Ordering};

        let reg = Registry::new(10);
        let energy = reg
            .instrument(
                desc("gpu.energy", InstrumentKind::ObservableCounter, "J"),
                &[],
            )
            .expect("counter");
        let temp = reg
            .instrument(
                desc("gpu.temp", InstrumentKind::ObservableGauge, "Cel"),
                &[],
            )
            .expect("gauge");
        let joules = Arc::new(AtomicU64::new(0));
        let (seen, calls) = (joules.clone(), Arc::new(AtomicU64::new(0)));
        let counted = calls.clone();
        reg.register_callback(
            energy.clone(),
            Box::new(move |o| {
                counted.fetch_add(1, Ordering::Relaxed);
                let total = seen.load(Ordering::Relaxed) as f64;
                o.observe(&[("gpu", ValueRef::Int(0))], total);
                o.observe(&[("gpu", ValueRef::Int(1))], total * 2.0);
            }),
        )
        .expect("observable");
        reg.register_callback(
            temp.clone(),
            Box::new(|o| o.observe(&[("gpu", ValueRef::Int(0))], 71.5)),
        )
        .expect("observable");

        joules.store(10, Ordering::Relaxed);
        reg.observe();
        joules.store(15, Ordering::Relaxed);
        reg.observe();
        // A counter's callback reports totals: the series holds the last one, not their sum.
        assert_eq!(
            total(&energy),
            vec![("gpu=0".into(), 15.0), ("gpu=1".into(), 30.0)]
        );
        assert_eq!(total(&temp), vec![("gpu=0".into(), 71.5)]);
        assert_eq!(calls.load(Ordering::Relaxed), 2);

        let plain = reg
            .instrument(desc("plain", InstrumentKind::Counter, ""), &[])
            .expect("counter");
        let err = reg
            .register_callback(plain, Box::new(|_| {}))
            .expect_err("not observable");
        assert_eq!(
            err.to_string(),
            "instrument `plain` is not observable, so it takes no callback"
        );
    }

    #[test]
    fn an_observable_counter_rejects_a_negative_total() {
        let reg = Registry::new(10);
        let c = reg
            .instrument(desc("c", InstrumentKind::ObservableCounter, ""), &[])
            .expect("counter");
        reg.register_callback(c.clone(), Box::new(|o| o.observe(&[], -1.0)))
            .expect("observable");
        reg.observe();
        assert_eq!(c.rejected(), 1);
        assert!(total(&c).is_empty());
    }

    #[test]
    fn idle_series_expire_and_free_their_cardinality_slot() {
        use crate::model::attributes::ValueRef;
        let reg = Registry::new(2);
        let c = reg
            .instrument(desc("c", InstrumentKind::Counter, ""), &[])
            .expect("counter");
        let at = |id: i64| [("id", ValueRef::Int(id))];
        c.record(&at(1), 1.0);
        c.record(&at(2), 1.0);
        assert_eq!(reg.expire_idle(1), 0, "both idle for one tick");
        c.record(&at(1), 1.0);
        assert_eq!(reg.expire_idle(1), 1, "2 was idle for two ticks, 1 for one");
        c.record(&at(3), 5.0);
        assert_eq!(
            total(&c),
            vec![("id=1".into(), 2.0), ("id=3".into(), 5.0)],
            "3 takes the freed slot instead of overflowing"
        );
        assert_eq!(c.overflowed(), 0);
    }

    fn with_views(toml: &str) -> Registry {
        #[derive(serde::Deserialize)]
        struct Views {
            views: Vec<StreamView>,
        }
        let views: Views = toml::from_str(toml).expect("views parse");
        Registry::new(100)
            .with_stream_views(views.views)
            .expect("valid views")
    }

    #[test]
    fn stream_views_rename_drop_filter_and_reaggregate_first_match_first() {
        use crate::model::attributes::ValueRef;
        let reg = with_views(
            r#"
            [[views]]
            instrument = "requests"
            rename = "inference.requests"
            description = "Requests served."
            attribute_keys = ["model"]
            [[views]]
            instrument = "req*"
            aggregation = "drop"
            [[views]]
            instrument = "debug.*"
            aggregation = "drop"
            [[views]]
            kind = "histogram"
            buckets = [1.0, 10.0]
            cardinality_limit = 1
            [[views]]
            instrument = "queue.depth"
            aggregation = "last_value"
            "#,
        );
        let requests = reg
            .instrument(desc("requests", InstrumentKind::Counter, ""), &[])
            .expect("requests");
        assert_eq!(requests.descriptor().name, "inference.requests");
        assert_eq!(requests.descriptor().description, "Requests served.");
        for user in ["u1", "u2"] {
            requests.record(
                &[("model", ValueRef::Str("m")), ("user", ValueRef::Str(user))],
                1.0,
            );
        }
        assert_eq!(
            total(&requests),
            vec![("model=m".into(), 2.0)],
            "the first view won"
        );

        let requeued = reg
            .instrument(desc("requeued", InstrumentKind::Counter, ""), &[])
            .expect("requeued");
        let debug = reg
            .instrument(desc("debug.x", InstrumentKind::Gauge, ""), &[])
            .expect("debug");
        requeued.record(&[], 1.0);
        debug.record(&[], 1.0);
        assert!(requeued.is_dropped() && debug.is_dropped());
        assert!(total(&requeued).is_empty());

        let latency = reg
            .instrument(desc("latency", InstrumentKind::Histogram, "s"), &[0.5])
            .expect("latency");
        let Storage::Histogram(bounds, _) = latency.storage() else {
            panic!("explicit histogram")
        };
        assert_eq!(**bounds, [1.0, 10.0]);
        latency.record(&[("a", ValueRef::Int(1))], 1.0);
        latency.record(&[("a", ValueRef::Int(2))], 1.0);
        assert_eq!(latency.overflowed(), 1, "the view's limit of one series");
        assert!(
            reg.instrument(desc("latency", InstrumentKind::Histogram, "s"), &[0.5])
                .is_ok(),
            "registering again with the advisory bounds finds it"
        );

        let depth = reg
            .instrument(desc("queue.depth", InstrumentKind::UpDownCounter, ""), &[])
            .expect("depth");
        depth.record(&[], 5.0);
        depth.record(&[], 3.0);
        assert_eq!(
            total(&depth),
            vec![(String::new(), 3.0)],
            "last value, not the sum"
        );

        let names: Vec<String> = reg
            .instruments()
            .iter()
            .map(|i| i.descriptor().name.clone())
            .collect();
        assert_eq!(
            names,
            ["inference.requests", "latency", "queue.depth"],
            "dropped ones are not exported"
        );
    }

    #[test]
    fn invalid_stream_views_are_refused() {
        let err = Registry::new(1)
            .with_stream_views(vec![StreamView {
                instrument: Some("a.*".into()),
                rename: Some("b".into()),
                ..StreamView::default()
            }])
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("view 1: `rename` needs `instrument` to name exactly one instrument, without `*`")
        );
    }

    #[test]
    fn same_name_returns_the_same_instrument_and_conflicts_are_errors() {
        let reg = Registry::new(10);
        let a = reg
            .instrument(desc("a.b", InstrumentKind::Counter, "s"), &[])
            .expect("new");
        let again = reg
            .instrument(desc("A.B", InstrumentKind::Counter, "s"), &[])
            .expect("same");
        assert!(Arc::ptr_eq(&a, &again));
        let err = reg
            .instrument(desc("a.b", InstrumentKind::Gauge, "s"), &[])
            .expect_err("conflict");
        assert_eq!(
            err.to_string(),
            "instrument `a.b` is already registered as Counter in `s`, cannot register it as Gauge in `s`"
        );
        assert_eq!(reg.instruments().len(), 1);
    }
}
