//! The series table of one instrument: attribute set → aggregator, under a cardinality limit.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, PoisonError, RwLock, RwLockReadGuard};

use hashbrown::HashTable;

use super::exemplar::{Exemplar, Reservoir, ReservoirKind};
use crate::clock::unix_nanos;
use crate::model::attributes::{AttributeSet, AttrsRef, Value, attrs_len, hash_attrs};
use crate::model::event::TraceContext;

/// The attribute key that marks the overflow series.
pub const OVERFLOW_KEY: &str = "otel.metric.overflow";

/// What identifies the series a measurement goes to.
#[derive(Debug, Clone, Copy)]
pub enum SeriesKey<'k, 'a> {
    /// A borrowed attribute list, sorted by key (the hot path).
    Attrs(&'k AttrsRef<'a>),
    /// A borrowed attribute list whose [`hash_attrs`] is already known.
    Hashed(&'k AttrsRef<'a>, u64),
    /// An owned set, as a view produced it.
    Set(&'k AttributeSet),
}

impl SeriesKey<'_, '_> {
    fn hash(&self) -> u64 {
        match self {
            SeriesKey::Attrs(attrs) => hash_attrs(attrs),
            SeriesKey::Hashed(_, hash) => *hash,
            SeriesKey::Set(set) => set.hash(),
        }
    }

    fn matches(&self, set: &AttributeSet) -> bool {
        match self {
            SeriesKey::Attrs(attrs) | SeriesKey::Hashed(attrs, _) => set.matches(attrs),
            SeriesKey::Set(other) => set == *other,
        }
    }

    /// The bytes its set takes, encoded.
    fn encoded_len(&self) -> usize {
        match self {
            SeriesKey::Attrs(attrs) | SeriesKey::Hashed(attrs, _) => attrs_len(attrs),
            SeriesKey::Set(set) => set.encoded_len(),
        }
    }

    fn to_set_hashed(self, hash: u64) -> AttributeSet {
        match self {
            SeriesKey::Attrs(attrs) | SeriesKey::Hashed(attrs, _) => {
                AttributeSet::from_sorted(attrs, hash)
            }
            SeriesKey::Set(set) => set.clone(),
        }
    }

    /// The key as an owned set.
    pub fn to_set(self) -> AttributeSet {
        self.to_set_hashed(self.hash())
    }
}

/// A coarse clock shared by a registry's series: ticks advance it, records stamp series with it.
#[derive(Debug, Clone, Default)]
pub struct IdleClock(Arc<AtomicU64>);

impl IdleClock {
    /// The current tick.
    pub fn now(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Moves to the next tick.
    pub fn advance(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// One series: its attributes, its aggregator and when it started.
#[derive(Debug)]
pub struct Series<A> {
    /// The series' attribute set.
    pub attributes: AttributeSet,
    /// The aggregator holding its state.
    pub aggregator: A,
    /// When the series was created (Unix nanoseconds); the cumulative start time.
    pub start_unix_nano: u64,
    /// The [`IdleClock`] tick of its last measurement.
    touched: AtomicU64,
    /// Sampled measurements, allocated on the first one.
    exemplars: OnceLock<Box<Reservoir>>,
    /// Whether it was removed from its table (set under the table's exclusive lock).
    removed: AtomicBool,
}

impl<A> Series<A> {
    fn new(attributes: AttributeSet, aggregator: A, tick: u64) -> Self {
        Self {
            attributes,
            aggregator,
            start_unix_nano: unix_nanos(),
            touched: AtomicU64::new(tick),
            exemplars: OnceLock::new(),
            removed: AtomicBool::new(false),
        }
    }

    fn update(&self, tick: u64, update: impl FnOnce(&Self)) {
        update(self);
        if self.touched.load(Ordering::Relaxed) != tick {
            self.touched.store(tick, Ordering::Relaxed);
        }
    }

    /// Keeps `value`, measured at a time under a trace, as an exemplar in a reservoir of
    /// `kind`; `bucket` is its histogram bucket. A time read before the series began (by a
    /// caller reading the clock once for many measurements) is the series' start.
    pub fn offer_exemplar(
        &self,
        kind: ReservoirKind,
        value: f64,
        bucket: usize,
        (trace, time_unix_nano): (Option<TraceContext>, u64),
    ) {
        self.exemplars
            .get_or_init(|| Box::new(Reservoir::new(kind)))
            .offer(
                value,
                bucket,
                trace,
                time_unix_nano.max(self.start_unix_nano),
            );
    }

    /// The series' exemplars measured at or after `since` (Unix nanoseconds), with their slots.
    pub fn exemplars(&self, since: u64) -> Vec<(usize, Exemplar)> {
        self.exemplars
            .get()
            .map_or_else(Vec::new, |r| r.collect(since))
    }
}

/// Attribute set → series map with a cardinality limit, a byte budget and an overflow series.
///
/// Recording into an existing series takes only a shared lock; creating a
/// series takes the exclusive lock once. Past `limit` distinct attribute sets,
/// or once their encoded bytes would pass `byte_limit`, measurements for new sets
/// fold into one series tagged `otel.metric.overflow=true`, and series already
/// present keep aggregating.
#[derive(Debug)]
pub struct SeriesTable<A> {
    table: RwLock<HashTable<Arc<Series<A>>>>,
    overflow: OnceLock<Arc<Series<A>>>,
    overflowed: AtomicU64,
    limit: usize,
    byte_limit: usize,
    /// The encoded bytes of the attribute sets in the table (changed under its write lock).
    bytes: AtomicUsize,
    /// Whether a set overflowed for want of bytes rather than of series.
    past_bytes: AtomicBool,
    clock: IdleClock,
}

impl<A> SeriesTable<A> {
    /// An empty table admitting `limit` distinct attribute sets.
    pub fn new(limit: usize) -> Self {
        Self {
            table: RwLock::new(HashTable::new()),
            overflow: OnceLock::new(),
            overflowed: AtomicU64::new(0),
            limit,
            byte_limit: usize::MAX,
            bytes: AtomicUsize::new(0),
            past_bytes: AtomicBool::new(false),
            clock: IdleClock::default(),
        }
    }

    /// The same table, holding at most `bytes` of encoded attribute sets.
    pub fn with_byte_limit(mut self, bytes: usize) -> Self {
        self.byte_limit = bytes;
        self
    }

    /// The same table, stamping series with ticks of `clock`.
    pub fn with_clock(mut self, clock: IdleClock) -> Self {
        self.clock = clock;
        self
    }

    /// Removes the series (the overflow series aside) not measured for more than `ticks` ticks; returns how many.
    pub fn expire(&self, ticks: u64) -> usize {
        let now = self.clock.now();
        let mut removed = 0;
        self.retain_where(|s| {
            let keep = now.saturating_sub(s.touched.load(Ordering::Relaxed)) <= ticks;
            removed += usize::from(!keep);
            keep
        });
        removed
    }

    /// Removes the series (the overflow series aside) whose attributes `keep` refuses.
    pub fn retain(&self, keep: impl Fn(&AttributeSet) -> bool) {
        self.retain_where(|s| keep(&s.attributes));
    }

    /// Removes the series `keep` refuses, and their bytes from the budget.
    fn retain_where(&self, mut keep: impl FnMut(&Series<A>) -> bool) {
        let mut table = self.table.write().unwrap_or_else(PoisonError::into_inner);
        table.retain(|s| {
            let kept = keep(s);
            if !kept {
                s.removed.store(true, Ordering::Relaxed);
                self.bytes
                    .fetch_sub(s.attributes.encoded_len(), Ordering::Relaxed);
            }
            kept
        });
    }

    /// Applies `update` to the series for `key`, creating it with `create` if new.
    pub fn with_series(
        &self,
        key: SeriesKey<'_, '_>,
        create: impl FnOnce() -> A,
        update: impl FnOnce(&Series<A>),
    ) {
        let hash = key.hash();
        let tick = self.clock.now();
        {
            let table = self.table.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(series) = table.find(hash, |s| key.matches(&s.attributes)) {
                series.update(tick, update);
                return;
            }
        }
        let mut table = self.table.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(series) = table.find(hash, |s| key.matches(&s.attributes)) {
            series.update(tick, update);
            return;
        }
        let bytes = self.bytes.load(Ordering::Relaxed) + key.encoded_len();
        let full = table.len() >= self.limit;
        if full || bytes > self.byte_limit {
            drop(table);
            if !full {
                self.past_bytes.store(true, Ordering::Relaxed);
            }
            self.overflowed.fetch_add(1, Ordering::Relaxed);
            let series = self.overflow.get_or_init(|| {
                let overflow =
                    AttributeSet::from_pairs(vec![(Arc::from(OVERFLOW_KEY), Value::Bool(true))]);
                Arc::new(Series::new(overflow, create(), tick))
            });
            series.update(tick, update);
            return;
        }
        self.bytes.store(bytes, Ordering::Relaxed);
        let series = Arc::new(Series::new(key.to_set_hashed(hash), create(), tick));
        update(&series);
        table.insert_unique(hash, series, |s| s.attributes.hash());
    }

    /// The table held open for a batch of measurements, with the series `found` for earlier
    /// batches (see [`Held`]).
    pub fn hold(&self, found: Vec<Arc<Series<A>>>) -> Held<'_, A> {
        Held {
            table: self.table.read().unwrap_or_else(PoisonError::into_inner),
            tick: self.clock.now(),
            found,
        }
    }

    /// Visits every series, the overflow series last.
    ///
    /// The table is locked only to list the series, so neither updates nor new series wait
    /// while the visit (an export's encoding) runs.
    pub fn for_each(&self, mut visit: impl FnMut(&Series<A>)) {
        let series: Vec<Arc<Series<A>>> = {
            let table = self.table.read().unwrap_or_else(PoisonError::into_inner);
            table.iter().cloned().collect()
        };
        series.iter().for_each(|s| visit(s));
        if let Some(series) = self.overflow.get() {
            visit(series);
        }
    }

    /// The number of series, the overflow series included.
    pub fn len(&self) -> usize {
        let table = self.table.read().unwrap_or_else(PoisonError::into_inner);
        table.len() + usize::from(self.overflow.get().is_some())
    }

    /// Whether no series exists yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many measurements were folded into the overflow series.
    pub fn overflowed(&self) -> u64 {
        self.overflowed.load(Ordering::Relaxed)
    }

    /// Whether a new set overflowed because the byte budget, not the series limit, was spent.
    pub fn past_byte_limit(&self) -> bool {
        self.past_bytes.load(Ordering::Relaxed)
    }
}

/// A table held open for a batch of measurements: the shared lock is taken once, so no series
/// is removed while it is held, and each series found is kept by slot, for this batch's later
/// records and, through [`Held::into_found`], for later batches'.
///
/// A set not in the table is not created here: that needs the exclusive lock, so the caller
/// records it through [`SeriesTable::with_series`] once this is dropped.
#[derive(Debug)]
pub struct Held<'t, A> {
    table: RwLockReadGuard<'t, HashTable<Arc<Series<A>>>>,
    tick: u64,
    found: Vec<Arc<Series<A>>>,
}

impl<A> Held<'_, A> {
    /// The slot of the series `key` records into, if it is in the table.
    pub fn find(&mut self, key: SeriesKey<'_, '_>) -> Option<usize> {
        let series = self
            .table
            .find(key.hash(), |s| key.matches(&s.attributes))?;
        self.found.push(series.clone());
        Some(self.found.len() - 1)
    }

    /// Applies `update` to the series at `slot`; `false`, with nothing applied, when that
    /// series was removed from the table since it was found (find it again).
    pub fn update(&self, slot: usize, update: impl FnOnce(&Series<A>)) -> bool {
        let series = &self.found[slot];
        // Removal takes the exclusive lock, so while this is held the flag cannot change.
        let present = !series.removed.load(Ordering::Relaxed);
        if present {
            series.update(self.tick, update);
        }
        present
    }

    /// The series found, by slot, for a later batch to hold the table with.
    pub fn into_found(self) -> Vec<Arc<Series<A>>> {
        self.found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::aggregation::Sum;
    use crate::model::attributes::ValueRef;

    fn add(table: &SeriesTable<Sum>, id: i64, v: f64) {
        table.with_series(
            SeriesKey::Attrs(&[("id", ValueRef::Int(id))]),
            Sum::default,
            |s| s.aggregator.update(v),
        );
    }

    #[test]
    fn new_series_can_be_created_while_a_collection_walks_the_table() {
        let table = Arc::new(SeriesTable::<Sum>::new(100));
        add(&table, 0, 1.0);
        let (done, finished) = std::sync::mpsc::channel();
        let walker = table.clone();
        std::thread::spawn(move || {
            let mut seen = 0;
            // Recording a new series from inside the walk would deadlock if the walk held the lock.
            walker.for_each(|_| {
                add(&walker, 1, 1.0);
                seen += 1;
            });
            let _ = done.send(seen);
        });
        let seen = finished
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the walk finished while a series was created");
        assert_eq!(
            seen, 1,
            "the walk sees the series that existed when it began"
        );
        assert_eq!(table.len(), 2);
    }

    #[test]
    fn a_held_table_keeps_its_series_from_expiring_until_it_is_released() {
        let clock = IdleClock::default();
        let table = Arc::new(SeriesTable::<Sum>::new(100).with_clock(clock.clone()));
        add(&table, 1, 1.0);
        (0..5).for_each(|_| clock.advance());
        let mut held = table.hold(Vec::new());
        let key = [("id", ValueRef::Int(1))];
        let slot = held
            .find(SeriesKey::Attrs(&key))
            .expect("the series exists");
        assert_eq!(
            held.find(SeriesKey::Attrs(&[("id", ValueRef::Int(2))])),
            None
        );
        let (done, expired) = std::sync::mpsc::channel();
        let sweeper = table.clone();
        let sweep = std::thread::spawn(move || done.send(sweeper.expire(1)));
        // Were the series not held, the idle series would be gone by now, and the record below lost.
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(expired.try_recv().is_err(), "expiry waits for the batch");
        assert!(held.update(slot, |s| s.aggregator.update(2.0)));
        let found = held.into_found();
        assert_eq!(
            expired.recv().expect("the sweep ran"),
            0,
            "measured now: not idle"
        );
        sweep.join().expect("no panic").expect("sent");
        let mut total = 0.0;
        table.for_each(|s| total += s.aggregator.value());
        assert_eq!((table.len(), total), (1, 3.0));
        // Idle again, it expires; held with the series found before, its slot says it is gone.
        (0..5).for_each(|_| clock.advance());
        assert_eq!(table.expire(1), 1);
        let held = table.hold(found);
        assert!(!held.update(slot, |s| s.aggregator.update(4.0)), "removed");
    }

    #[test]
    fn past_the_byte_budget_new_sets_fold_into_the_overflow_series_until_bytes_are_freed() {
        // `id` and an integer: 1 + 2 + 1 + 8 = 12 bytes per set; room for three.
        let table = SeriesTable::<Sum>::new(100).with_byte_limit(36);
        for id in 0..5 {
            add(&table, id, 1.0);
        }
        assert_eq!(table.len(), 4, "three series and the overflow series");
        assert_eq!(table.overflowed(), 2);
        assert!(table.past_byte_limit());
        add(&table, 1, 1.0);
        assert_eq!(table.overflowed(), 2, "a present series keeps aggregating");
        table.retain(|set| set.get("id") != Some(ValueRef::Int(0)));
        add(&table, 7, 1.0);
        assert_eq!(table.overflowed(), 2, "a removed series frees its bytes");
        add(&table, 8, 1.0);
        assert_eq!(table.overflowed(), 3);
    }

    #[test]
    fn overflow_starts_exactly_at_limit_plus_one() {
        let table = SeriesTable::new(3);
        for id in 0..3 {
            add(&table, id, 1.0);
        }
        assert_eq!(table.len(), 3);
        assert_eq!(table.overflowed(), 0);
        add(&table, 3, 10.0);
        add(&table, 4, 20.0);
        add(&table, 0, 5.0); // existing series keep aggregating
        assert_eq!(table.len(), 4);
        assert_eq!(table.overflowed(), 2);
        let mut seen = Vec::new();
        table.for_each(|s| {
            let attrs: Vec<_> = s
                .attributes
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            seen.push((attrs.join(","), s.aggregator.value()));
        });
        seen.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            seen,
            vec![
                ("id=0".into(), 6.0),
                ("id=1".into(), 1.0),
                ("id=2".into(), 1.0),
                ("otel.metric.overflow=true".into(), 30.0),
            ]
        );
    }
}
