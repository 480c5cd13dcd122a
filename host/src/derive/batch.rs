//! Recording a batch of events: each event value rules read is interned once per event, the
//! values keying rules' series once per event and list of values, each instrument is held open
//! once, and each rule finds its series by the index of its key, remembered from batch to batch.

use std::hash::BuildHasher as _;
use std::sync::{MutexGuard, TryLockError};

use hashbrown::HashTable;

use super::Deriver;
use super::rule::{Attrs, MAX_RULE_ATTRIBUTES};
use crate::clock::unix_nanos;
use crate::metrics::Found;
use crate::model::attributes::{Value, ValueRef, hash_attrs};
use crate::model::event::Event;

/// How many distinct values and keys the deriver remembers; past it, it starts over.
pub(crate) const MEMORY_LIMIT: usize = 65_536;

/// An interned value, or key: its index among those remembered.
type Id = usize;

/// The id of a value or key not read yet, or a series not found yet.
const UNSET: Id = Id::MAX;

/// The id of a value the event does not have.
const ABSENT: Id = Id::MAX - 1;

/// What the deriver remembers between batches.
#[derive(Debug, Default)]
pub(super) struct Memory {
    /// Every distinct event value read, with its id.
    values: HashTable<(Value, Id)>,
    /// For each list of values keying series, the distinct keys seen.
    keys: Vec<Keys>,
    /// For each rule, by the id of its key, the slot of its series in its instrument's
    /// [`Found`] (`UNSET`: not found yet).
    slots: Vec<Vec<usize>>,
    /// Each instrument's series found, by slot.
    found: Vec<Found>,
    /// Values and keys remembered since it last started over.
    entries: usize,
}

impl Memory {
    /// Starts over when full, and makes room for `rules`, `keys` and `instruments`.
    fn fit(&mut self, rules: usize, keys: usize, instruments: usize) {
        if self.entries > MEMORY_LIMIT {
            *self = Self::default();
        }
        self.slots.resize_with(rules, Vec::new);
        self.keys.resize_with(keys, Keys::default);
        self.found.resize_with(instruments, Found::default);
    }

    fn intern(&mut self, value: ValueRef<'_>) -> Id {
        let hash = |v: ValueRef<'_>| hash_attrs(&[("", v)]);
        let next = self.values.len();
        let entry = self.values.entry(
            hash(value),
            |(v, _)| v.as_ref() == value,
            |(v, _)| hash(v.as_ref()),
        );
        if matches!(entry, hashbrown::hash_table::Entry::Vacant(_)) {
            self.entries += 1;
        }
        entry
            .or_insert_with(|| (value.to_owned_value(), next))
            .get()
            .1
    }
}

/// The distinct keys of one list of values: tuples of value ids, each with its own id.
#[derive(Debug, Default)]
struct Keys {
    ids: Vec<Id>,
    /// The hash of a key, where it starts in `ids`, and its id.
    table: HashTable<(u64, usize, Id)>,
}

impl Keys {
    /// The id of `key`; `true` with it when it is new.
    fn intern(&mut self, hash: u64, key: &[Id]) -> (Id, bool) {
        let ids = &self.ids;
        let found = self.table.find(hash, |(h, start, _)| {
            *h == hash && ids[*start..*start + key.len()].iter().eq(key)
        });
        if let Some((_, _, id)) = found {
            return (*id, false);
        }
        let (start, id) = (self.ids.len(), self.table.len());
        self.ids.extend_from_slice(key);
        self.table
            .insert_unique(hash, (hash, start, id), |(h, _, _)| *h);
        (id, true)
    }
}

impl Deriver {
    /// Records every measurement the rules derive from `events`.
    ///
    /// Instrument by instrument, the series are found under one shared lock, each by the id
    /// of its key once that was seen; a measurement for a set the instrument does not have yet
    /// is recorded once the lock is released. Each series receives its measurements in the
    /// events' order. A batch recorded while another holds the memory starts from an empty one.
    pub fn apply(&self, events: &[Event<'_>]) {
        let mut held: Option<MutexGuard<'_, Memory>> = match self.memory.try_lock() {
            Ok(memory) => Some(memory),
            Err(TryLockError::Poisoned(poisoned)) => {
                let mut memory = poisoned.into_inner();
                *memory = Memory::default();
                Some(memory)
            }
            Err(TryLockError::WouldBlock) => None,
        };
        let mut own = Memory::default();
        let memory = held.as_deref_mut().unwrap_or(&mut own);
        memory.fit(self.rules.len(), self.keys.len(), self.instruments.len());
        let any_type = self.rules.iter().any(|(t, _)| t.is_none());
        // The events some rule reads, with the index of their type.
        let read: Vec<(usize, Option<usize>)> = events
            .iter()
            .map(|e| self.types.iter().position(|t| **t == *e.event_type))
            .enumerate()
            .filter(|(_, t)| any_type || t.is_some())
            .collect();
        let (sources, keys) = (self.sources.len(), self.keys.len());
        let mut values = vec![UNSET; events.len() * sources];
        let mut key_ids = vec![UNSET; events.len() * keys];
        let hasher = foldhash::fast::FixedState::with_seed(0x0000_6465_7269_7665);
        let now = unix_nanos();
        for (group, rules) in self.instruments.iter().enumerate() {
            let found = std::mem::take(&mut memory.found[group]);
            let recorder = self.rules[rules[0]].1.instrument().recorder(found);
            let Some(mut recorder) = recorder else {
                for &(e, of_type) in &read {
                    for &r in rules.iter().filter(|r| self.applies(**r, of_type)) {
                        self.rules[r].1.apply(&events[e]);
                    }
                }
                continue;
            };
            let mut later = Vec::new();
            for &(e, of_type) in &read {
                let event = &events[e];
                for &r in rules.iter().filter(|r| self.applies(**r, of_type)) {
                    let rule = &self.rules[r].1;
                    let Some(value) = rule.value(event) else {
                        continue;
                    };
                    let k = self.keyed_by[r];
                    let key = &mut key_ids[e * keys + k];
                    if *key == UNSET {
                        let mut ids = [0; MAX_RULE_ATTRIBUTES];
                        for (id, &source) in ids.iter_mut().zip(&self.keys[k]) {
                            let value = &mut values[e * sources + source];
                            if *value == UNSET {
                                *value = self.sources[source]
                                    .resolve(event)
                                    .map_or(ABSENT, |v| memory.intern(v));
                            }
                            *id = *value;
                        }
                        let ids = &ids[..self.keys[k].len()];
                        let (id, new) = memory.keys[k].intern(hasher.hash_one(ids), ids);
                        memory.entries += usize::from(new);
                        *key = id;
                    }
                    let (key, trace) = (*key, event.trace());
                    let slots = &mut memory.slots[r];
                    if slots.len() <= key {
                        slots.resize(key + 1, UNSET);
                    }
                    if slots[key] != UNSET && recorder.record(slots[key], value, trace, now) {
                        continue;
                    }
                    let mut buf: Attrs<'_> = [("", ValueRef::Bool(false)); MAX_RULE_ATTRIBUTES];
                    slots[key] = match recorder.find(rule.attributes(event, &mut buf)) {
                        Some(slot) => {
                            recorder.record(slot, value, trace, now);
                            slot
                        }
                        None => {
                            later.push((e, r, value));
                            UNSET
                        }
                    };
                }
            }
            memory.found[group] = recorder.into_found();
            for (e, r, value) in later {
                self.rules[r].1.record(&events[e], value);
            }
        }
        if let Some(forward) = &self.forward {
            events.iter().for_each(|e| forward.apply(e));
        }
    }

    /// Whether rule `r` reads an event of the type at `of_type` (`None`: of no rule's type).
    fn applies(&self, r: usize, of_type: Option<usize>) -> bool {
        self.rules[r].0.is_none_or(|t| of_type == Some(t))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::{DeriveConfig, RuleConfig, RuleSet};
    use crate::metrics::{AttributeView, Descriptor, Mapping, Registry, Storage};
    use crate::model::attributes::{AttributeSet, AttrsRef, Value};
    use crate::model::metric::ExemplarFilter;

    /// Rules: `req` counts `done` events by model and engine; `lat` (a histogram of `ms`, with
    /// a constant) and `last` (a gauge of `ms`) go by model; `all` counts every event by type.
    const RULES: &[&str] = &[
        r#"event_type = "done"
name = "req"
instrument = "counter"
attributes = { model = "model", engine = "engine" }"#,
        r#"event_type = "done"
name = "lat"
instrument = "histogram"
field = "ms"
attributes = { model = "model" }
constant_attributes = { unit = "ms" }"#,
        r#"event_type = "*"
name = "all"
instrument = "counter"
attributes = { type = "event_type" }"#,
        r#"event_type = "done"
name = "last"
instrument = "gauge"
field = "ms"
attributes = { model = "model" }"#,
    ];

    fn deriver(registry: &Arc<Registry>, rules: &[&str]) -> Deriver {
        let config = DeriveConfig {
            rule_set: RuleSet::None,
            rules: rules
                .iter()
                .map(|r| toml::from_str::<RuleConfig>(r).expect("rule parses"))
                .collect(),
            ..DeriveConfig::default()
        };
        Deriver::new(&config, registry).expect("rules build")
    }

    fn event(line: &str) -> String {
        line.replace('\'', "\"")
    }

    /// Every series of the instrument `name` as `attrs → value` (a histogram's: `count/sum`).
    fn series(registry: &Registry, name: &str) -> Vec<String> {
        let instrument = registry
            .instruments()
            .into_iter()
            .find(|i| i.descriptor().name == name)
            .expect("instrument");
        let label = |set: &AttributeSet| {
            let pairs: Vec<String> = set.iter().map(|(k, v)| format!("{k}={v}")).collect();
            pairs.join(",")
        };
        let mut out = Vec::new();
        match instrument.storage() {
            Storage::Sum(t) => t.for_each(|s| {
                out.push(format!(
                    "{} → {}",
                    label(&s.attributes),
                    s.aggregator.value()
                ));
            }),
            Storage::LastValue(t) => t.for_each(|s| {
                out.push(format!(
                    "{} → {}",
                    label(&s.attributes),
                    s.aggregator.value()
                ));
            }),
            Storage::Histogram(_, t) => t.for_each(|s| {
                let p = s.aggregator.snapshot();
                out.push(format!("{} → {}/{}", label(&s.attributes), p.count, p.sum));
            }),
            _ => panic!("unexpected storage"),
        }
        out.sort();
        out
    }

    fn apply(deriver: &Deriver, lines: &[&str]) {
        let body = lines.iter().map(|l| event(l) + "\n").collect::<String>();
        let events = crate::intake::events::parse(body.as_bytes()).expect("valid events");
        deriver.apply(&events);
    }

    const BATCH: &[&str] = &[
        "{'event_type':'done','model':'a','engine':'x','metrics':{'ms':10}}",
        "{'event_type':'done','model':'b','engine':'x','metrics':{'ms':20}}",
        "{'event_type':'other','model':'a','engine':'x','metrics':{'ms':99}}",
        "{'event_type':'done','model':'a','engine':'x','metrics':{'ms':30}}",
        "{'event_type':'done','model':'a','metrics':{'ms':5}}",
        "{'event_type':'done','model':'a','engine':'x'}",
    ];

    #[test]
    fn a_batch_records_exactly_what_its_events_record_one_by_one() {
        let registry = Arc::new(Registry::new(100));
        let batched = deriver(&registry, RULES);
        apply(&batched, BATCH);
        let expected = |n: f64| {
            [
                (
                    "req",
                    vec![
                        format!("engine=x,model=a → {}", 3.0 * n),
                        format!("engine=x,model=b → {n}"),
                        format!("model=a → {n}"),
                    ],
                ),
                (
                    "lat",
                    vec![
                        format!("model=a,unit=ms → {}/{}", 3.0 * n, 45.0 * n),
                        format!("model=b,unit=ms → {n}/{}", 20.0 * n),
                    ],
                ),
                ("last", vec!["model=a → 5".into(), "model=b → 20".into()]),
                (
                    "all",
                    vec![
                        format!("type=done → {}", 5.0 * n),
                        format!("type=other → {n}"),
                    ],
                ),
            ]
        };
        for (name, want) in expected(1.0) {
            assert_eq!(
                series(&registry, name),
                want,
                "{name}, series new in the batch"
            );
        }
        // Again, every series now exists: each is found once, then recorded into by its slot.
        apply(&batched, BATCH);
        for (name, want) in expected(2.0) {
            assert_eq!(series(&registry, name), want, "{name}, series found");
        }
        // And again, by the slots remembered from the batch before.
        apply(&batched, BATCH);
        for (name, want) in expected(3.0) {
            assert_eq!(series(&registry, name), want, "{name}, series remembered");
        }
        // One event at a time gives the same.
        let one_by_one = Arc::new(Registry::new(100));
        let single = deriver(&one_by_one, RULES);
        for _ in 0..3 {
            BATCH.iter().for_each(|line| apply(&single, &[line]));
        }
        for name in ["req", "lat", "last", "all"] {
            assert_eq!(series(&one_by_one, name), series(&registry, name), "{name}");
        }
    }

    #[test]
    fn a_series_removed_between_batches_is_found_again_and_loses_no_measurement() {
        let registry = Arc::new(Registry::new(100));
        let d = deriver(&registry, RULES);
        // The first batch creates the series, the second finds them and remembers their slots.
        apply(&d, BATCH);
        apply(&d, BATCH);
        // Every series idle for a tick goes: the deriver still remembers their slots.
        assert_eq!(registry.expire_idle(0), 9);
        assert!(series(&registry, "req").is_empty());
        apply(&d, BATCH);
        assert_eq!(
            series(&registry, "req"),
            vec![
                "engine=x,model=a → 3",
                "engine=x,model=b → 1",
                "model=a → 1"
            ]
        );
        assert_eq!(
            series(&registry, "all"),
            vec!["type=done → 5", "type=other → 1"]
        );
    }

    #[test]
    fn a_batch_recorded_while_another_holds_the_memory_starts_from_an_empty_one() {
        let registry = Arc::new(Registry::new(100));
        let d = deriver(&registry, RULES);
        apply(&d, BATCH);
        apply(&d, BATCH);
        {
            let _busy = d.memory.lock().expect("not poisoned");
            apply(&d, BATCH);
        }
        apply(&d, BATCH);
        assert_eq!(
            series(&registry, "req"),
            vec![
                "engine=x,model=a → 12",
                "engine=x,model=b → 4",
                "model=a → 4"
            ]
        );
    }

    #[test]
    fn past_its_limit_the_memory_starts_over_and_every_measurement_lands() {
        let registry = Arc::new(Registry::new(100_000));
        let rule = r#"event_type = "done"
name = "by_id"
instrument = "counter"
attributes = { id = "attributes.id" }"#;
        let d = deriver(&registry, &[rule]);
        let batch = |from: usize| -> Vec<String> {
            (from..from + 10_000)
                .map(|i| {
                    format!(
                        "{{'event_type':'done','attributes':{{'id':{}}}}}",
                        i % 40_000
                    )
                })
                .collect()
        };
        let mut entries = Vec::new();
        for b in 0..8 {
            let lines = batch(b * 10_000);
            apply(&d, &lines.iter().map(String::as_str).collect::<Vec<_>>());
            entries.push(d.memory.lock().expect("not poisoned").entries);
        }
        assert!(
            entries.iter().any(|n| *n > MEMORY_LIMIT),
            "it filled: {entries:?}"
        );
        assert!(
            entries.windows(2).any(|w| w[1] < w[0]),
            "and started over: {entries:?}"
        );
        let by_id = series(&registry, "by_id");
        assert_eq!(by_id.len(), 40_000);
        assert!(by_id.iter().all(|s| s.ends_with("→ 2")), "each id twice");
    }

    #[test]
    fn a_gauge_keeps_the_last_value_of_a_batch_whether_its_series_is_new_or_found() {
        let registry = Arc::new(Registry::new(100));
        let d = deriver(&registry, RULES);
        let gauge =
            |ms: u32| format!("{{'event_type':'done','model':'c','metrics':{{'ms':{ms}}}}}");
        let (one, two, three) = (gauge(7), gauge(8), gauge(6));
        apply(&d, &[&one, &two, &three]);
        assert!(series(&registry, "last").contains(&"model=c → 6".to_owned()));
        apply(&d, &[&three, &one, &two]);
        assert!(series(&registry, "last").contains(&"model=c → 8".to_owned()));
    }

    #[test]
    fn past_the_cardinality_limit_new_sets_of_a_batch_fold_into_the_overflow_series() {
        let registry = Arc::new(Registry::new(2));
        let d = deriver(&registry, &RULES[..1]);
        let e = |m: &str| format!("{{'event_type':'done','model':'{m}','engine':'x'}}");
        let lines: Vec<String> = ["a", "b", "c", "d", "a", "c"].map(e).to_vec();
        apply(&d, &lines.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(
            series(&registry, "req"),
            vec![
                "engine=x,model=a → 2",
                "engine=x,model=b → 1",
                "otel.metric.overflow=true → 3",
            ]
        );
        let req = registry
            .instruments()
            .into_iter()
            .find(|i| i.descriptor().name == "req");
        assert_eq!(req.expect("req").overflowed(), 3);
    }

    /// Maps every set to `model=viewed`.
    struct Everything;

    impl AttributeView for Everything {
        fn map(&self, _: &Descriptor, _: &AttrsRef<'_>) -> Mapping {
            Mapping::Replace(AttributeSet::from_pairs(vec![(
                Arc::from("model"),
                Value::Str("viewed".into()),
            )]))
        }

        fn generation(&self) -> u64 {
            0
        }
    }

    #[test]
    fn an_instrument_with_a_view_records_through_it_and_one_dropped_records_nothing() {
        let registry = Arc::new(Registry::new(100));
        let d = deriver(&registry, RULES);
        let find = |name: &str| {
            registry
                .instruments()
                .into_iter()
                .find(|i| i.descriptor().name == name)
                .expect("instrument")
        };
        assert!(find("req").attach_view(Arc::new(Everything)));
        apply(&d, BATCH);
        assert_eq!(series(&registry, "req"), vec!["model=viewed → 5"]);
        assert_eq!(
            series(&registry, "all"),
            vec!["type=done → 5", "type=other → 1"]
        );
    }

    #[test]
    fn a_traced_event_leaves_its_measurement_as_an_exemplar() {
        let registry =
            Arc::new(Registry::new(100).with_exemplar_filter(ExemplarFilter::TraceBased));
        let d = deriver(&registry, &RULES[..2]);
        let traced = "{'event_type':'done','model':'a','metrics':{'ms':12},\
            'trace_id':'0102030405060708090a0b0c0d0e0f10','span_id':'0102030405060708'}";
        let untraced = "{'event_type':'done','model':'a','metrics':{'ms':13}}";
        apply(&d, &[untraced]);
        apply(&d, &[untraced, traced, untraced]);
        let lat = registry
            .instruments()
            .into_iter()
            .find(|i| i.descriptor().name == "lat")
            .expect("lat");
        let Storage::Histogram(_, table) = lat.storage() else {
            panic!("a histogram")
        };
        let mut exemplars = Vec::new();
        table.for_each(|s| exemplars.extend(s.exemplars(0)));
        assert_eq!(exemplars.len(), 1, "{exemplars:?}");
        let (_, exemplar) = &exemplars[0];
        assert_eq!(exemplar.value, 12.0);
        let trace = exemplar.trace.as_ref().expect("its trace");
        assert_eq!(trace.span_id, [1, 2, 3, 4, 5, 6, 7, 8]);
    }
}
