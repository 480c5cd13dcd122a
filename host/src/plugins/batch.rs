//! The contract's interned batches: built with each string, value and attribute set once, read
//! back by name, and rewritten by a transform's edits.

use std::collections::HashMap;
use std::hash::BuildHasher as _;

use hashbrown::HashTable;

use super::bindings::span_transformer::SpanEdit;
use super::bindings::transformer::{Edit, RemoveAttribute, SetAttribute};
use super::bindings::types::{
    Attribute, LogBatch, MetricBatch, Points, Span, SpanBatch, Table, TraceContext, Value,
};
use crate::model::attributes::{AttributeSet, ValueRef};
use crate::model::content::Patterns;
use crate::model::event::TraceContext as HostTrace;

type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// An attribute value other than a string, as a hash key.
#[derive(Debug, Hash, PartialEq, Eq)]
enum ValueKey {
    Bool(bool),
    Int(i64),
    Double(u64),
    Bytes(Box<[u8]>),
    Json(Box<str>),
}

/// Builds a batch's table, storing each distinct string, value and attribute set once (the
/// lookups hold indices into the table, so each is stored in the table alone).
#[derive(Debug)]
pub struct Interner {
    table: Table,
    /// Each string's hash and index.
    strings: HashTable<(u64, u32)>,
    /// Each string value's hash and index.
    text_values: HashTable<(u64, u32)>,
    other_values: Map<ValueKey, u32>,
    /// Each set's hash and index.
    sets: HashTable<(u64, u32)>,
    host_sets: Map<u64, u32>,
    scratch: Vec<(u32, u32)>,
}

impl Default for Interner {
    fn default() -> Self {
        Self::new()
    }
}

/// A list index as the contract's `u32` (batches are far below 4 G entries: memory limits them).
fn index(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The hash the interner files a string (its bytes) or a set (its index pairs) under.
fn hash<T: std::hash::Hash + ?Sized>(v: &T) -> u64 {
    foldhash::fast::FixedState::with_seed(0x0062_6174_6368).hash_one(v)
}

/// Value `i` of `values` as text (`""` unless it is a string).
fn text_at(values: &[Value], i: u32) -> &str {
    match values.get(i as usize) {
        Some(Value::String(s)) => s,
        _ => "",
    }
}

/// `bytes` as an owned string, if they are UTF-8.
fn owned_utf8(bytes: &[u8]) -> Option<String> {
    std::str::from_utf8(bytes).ok().map(str::to_owned)
}

/// Set `i` of `table` as its (key, value) index pairs.
fn pairs_of(table: &Table, i: u32) -> impl Iterator<Item = (u32, u32)> + '_ {
    table
        .attributes_of(i)
        .unwrap_or_default()
        .iter()
        .map(|a| (a.key, a.value))
}

impl Interner {
    /// An empty table: string 0 is `""` and set 0 the empty set.
    pub fn new() -> Self {
        Self::with_capacity(0)
    }

    /// An empty table with room for about `sets` host attribute sets of one attribute each
    /// (growing the lists and maps as sets arrive costs more than interning them).
    pub fn with_capacity(sets: usize) -> Self {
        let mut interner = Self {
            table: Table {
                strings: Vec::new(),
                values: Vec::with_capacity(sets),
                attributes: Vec::with_capacity(sets),
                sets: Vec::with_capacity(sets + 1),
            },
            strings: HashTable::new(),
            text_values: HashTable::with_capacity(sets),
            other_values: Map::default(),
            sets: HashTable::new(),
            host_sets: Map::with_capacity_and_hasher(sets, Default::default()),
            scratch: Vec::new(),
        };
        interner.string("");
        interner.set_of(std::iter::empty());
        interner
    }

    /// The index of `s` in the string table.
    pub fn string(&mut self, s: &str) -> u32 {
        self.string_or(s.as_bytes(), |_| Some(s.to_owned()))
            .unwrap_or_default()
    }

    /// The index of the text `bytes` in the string table; `None` when they are not UTF-8,
    /// which is checked only for text the table does not hold yet.
    pub fn utf8_string(&mut self, bytes: &[u8]) -> Option<u32> {
        self.string_or(bytes, owned_utf8)
    }

    fn string_or(
        &mut self,
        bytes: &[u8],
        new: impl FnOnce(&[u8]) -> Option<String>,
    ) -> Option<u32> {
        let strings = &self.table.strings;
        let hash = hash(bytes);
        let same = |&(h, i): &(u64, u32)| h == hash && strings[i as usize].as_bytes() == bytes;
        if let Some(&(_, i)) = self.strings.find(hash, same) {
            return Some(i);
        }
        let i = index(strings.len());
        self.table.strings.push(new(bytes)?);
        self.strings.insert_unique(hash, (hash, i), |e| e.0);
        Some(i)
    }

    /// The index of a host attribute value in the value table (strings are looked up; a number
    /// or boolean costs as little to lower twice as to look up, so it is stored as it comes).
    pub fn value_ref(&mut self, v: ValueRef<'_>) -> u32 {
        let value = match v {
            ValueRef::Str(s) => return self.text(s),
            ValueRef::Bool(b) => Value::Boolean(b),
            ValueRef::Int(i) => Value::Int(i),
            ValueRef::Double(d) => Value::Double(d),
        };
        self.table.values.push(value);
        index(self.table.values.len() - 1)
    }

    /// The index of a contract value in the value table.
    pub fn value(&mut self, v: Value) -> u32 {
        match v {
            Value::String(s) => self.text(&s),
            Value::Boolean(b) => self.other(ValueKey::Bool(b), || Value::Boolean(b)),
            Value::Int(i) => self.other(ValueKey::Int(i), || Value::Int(i)),
            Value::Double(d) => self.other(ValueKey::Double(d.to_bits()), || Value::Double(d)),
            Value::Bytes(b) => {
                let key = ValueKey::Bytes(b.clone().into());
                self.other(key, || Value::Bytes(b))
            }
            Value::Json(j) => {
                let key = ValueKey::Json(j.clone().into());
                self.other(key, || Value::Json(j))
            }
        }
    }

    fn text(&mut self, s: &str) -> u32 {
        self.text_or(s.as_bytes(), |_| Some(s.to_owned()))
            .unwrap_or_default()
    }

    /// The index of the string value of the text `bytes` in the value table; `None` when they
    /// are not UTF-8, which is checked only for text the table does not hold yet.
    pub fn utf8_text(&mut self, bytes: &[u8]) -> Option<u32> {
        self.text_or(bytes, owned_utf8)
    }

    fn text_or(&mut self, bytes: &[u8], new: impl FnOnce(&[u8]) -> Option<String>) -> Option<u32> {
        let values = &self.table.values;
        let hash = hash(bytes);
        let same = |&(h, i): &(u64, u32)| h == hash && text_at(values, i).as_bytes() == bytes;
        if let Some(&(_, i)) = self.text_values.find(hash, same) {
            return Some(i);
        }
        let i = index(values.len());
        self.table.values.push(Value::String(new(bytes)?));
        self.text_values.insert_unique(hash, (hash, i), |e| e.0);
        Some(i)
    }

    fn other(&mut self, key: ValueKey, value: impl FnOnce() -> Value) -> u32 {
        if let Some(&i) = self.other_values.get(&key) {
            return i;
        }
        let i = index(self.table.values.len());
        self.table.values.push(value());
        self.other_values.insert(key, i);
        i
    }

    /// The index of the set of these (key, value) index pairs, in their order.
    pub fn set_of(&mut self, pairs: impl Iterator<Item = (u32, u32)>) -> u32 {
        self.scratch.clear();
        self.scratch.extend(pairs);
        let (t, pairs) = (&self.table, &self.scratch);
        let hash = hash(&pairs[..]);
        let same = |&(h, i): &(u64, u32)| h == hash && pairs_of(t, i).eq(pairs.iter().copied());
        if let Some(&(_, i)) = self.sets.find(hash, same) {
            return i;
        }
        let i = index(self.table.sets.len());
        let start = index(self.table.attributes.len());
        self.table.attributes.extend(
            self.scratch
                .iter()
                .map(|&(key, value)| Attribute { key, value }),
        );
        self.table.sets.push(Span {
            start,
            len: index(self.scratch.len()),
        });
        self.sets.insert_unique(hash, (hash, i), |e| e.0);
        i
    }

    /// The index of a host attribute set. Equal host sets have equal pairs, so the set is
    /// looked up whole (its hash is kept with it) and, when new, stored without a second lookup.
    pub fn host_set(&mut self, set: &AttributeSet) -> u32 {
        if set.is_empty() {
            return 0;
        }
        let known = self.host_sets.get(&set.fingerprint()).copied();
        if let Some(i) = known.filter(|&i| self.holds(i, set)) {
            return i;
        }
        let start = index(self.table.attributes.len());
        for (k, v) in set.iter() {
            let (key, value) = (self.string(k), self.value_ref(v));
            self.table.attributes.push(Attribute { key, value });
        }
        let i = index(self.table.sets.len());
        self.table.sets.push(Span {
            start,
            len: index(set.len()),
        });
        if known.is_none() {
            self.host_sets.insert(set.fingerprint(), i);
        }
        i
    }

    /// The index of the pairs of a host attribute set whose key `keys` matches, as one set.
    pub fn host_set_cut(&mut self, set: &AttributeSet, keys: &Patterns) -> u32 {
        if !set.iter().any(|(k, _)| keys.matches(k.as_bytes())) {
            return 0;
        }
        let pairs: Vec<(u32, u32)> = set
            .iter()
            .filter(|(k, _)| keys.matches(k.as_bytes()))
            .map(|(k, v)| (self.string(k), self.value_ref(v)))
            .collect();
        self.set_of(pairs.into_iter())
    }

    /// Whether set `i` holds exactly the pairs of `set`.
    fn holds(&self, i: u32, set: &AttributeSet) -> bool {
        let t = &self.table;
        let len = t.sets.get(i as usize).map_or(0, |s| s.len as usize);
        len == set.len()
            && t.set(i).zip(set.iter()).all(|((k, v), (hk, hv))| {
                k == hk
                    && match (v, hv) {
                        (Value::String(a), ValueRef::Str(b)) => a == b,
                        (Value::Boolean(a), ValueRef::Bool(b)) => *a == b,
                        (Value::Int(a), ValueRef::Int(b)) => *a == b,
                        (Value::Double(a), ValueRef::Double(b)) => a.to_bits() == b.to_bits(),
                        _ => false,
                    }
            })
    }

    /// The table built.
    pub fn finish(self) -> Table {
        self.table
    }
}

impl Table {
    /// String `i` (`""` when out of range).
    pub fn string(&self, i: u32) -> &str {
        self.strings.get(i as usize).map_or("", String::as_str)
    }

    /// Attribute set `i` as (key, value) pairs (empty when out of range).
    pub fn set(&self, i: u32) -> impl Iterator<Item = (&str, &Value)> {
        self.attributes_of(i)
            .unwrap_or_default()
            .iter()
            .filter_map(|a| Some((self.string(a.key), self.values.get(a.value as usize)?)))
    }

    /// The attributes of set `i` (`None` when the table has no such set).
    fn attributes_of(&self, i: u32) -> Option<&[Attribute]> {
        let s = self.sets.get(i as usize)?;
        let from = s.start as usize;
        self.attributes
            .get(from..from.saturating_add(s.len as usize))
            .or(Some(&[]))
    }

    /// Pushes a string without looking for it (edits are few; their strings are new).
    fn push_string(&mut self, s: String) -> u32 {
        self.strings.push(s);
        index(self.strings.len() - 1)
    }

    /// Rewrites set `set` as `f` makes its pairs, which refer into the table: only what an edit
    /// adds is stored, and the rewritten set takes a new range of attributes.
    fn edit_set(
        &mut self,
        set: u32,
        f: impl FnOnce(&mut Self, &mut Vec<Attribute>),
    ) -> Result<(), NoSet> {
        let mut pairs = self
            .attributes_of(set)
            .ok_or(NoSet {
                set,
                of: self.sets.len(),
            })?
            .to_vec();
        f(self, &mut pairs);
        let start = index(self.attributes.len());
        self.attributes.extend(pairs);
        self.sets[set as usize] = Span {
            start,
            len: index(self.attributes.len()) - start,
        };
        Ok(())
    }

    /// Sets a key of a set to a value, replacing the value it had.
    fn set_attribute(&mut self, e: &SetAttribute) -> Result<(), NoSet> {
        self.edit_set(e.set, |t, pairs| {
            t.values.push(e.value.clone());
            let value = index(t.values.len() - 1);
            match pairs.iter_mut().find(|a| t.string(a.key) == e.key) {
                Some(pair) => pair.value = value,
                None => {
                    let key = t.push_string(e.key.clone());
                    pairs.push(Attribute { key, value });
                }
            }
        })
    }

    /// Removes a key from a set.
    fn remove_attribute(&mut self, e: &RemoveAttribute) -> Result<(), NoSet> {
        self.edit_set(e.set, |t, pairs| pairs.retain(|a| t.string(a.key) != e.key))
    }
}

/// A host trace context in the contract's type.
pub fn trace(t: &HostTrace) -> TraceContext {
    let id = u128::from_be_bytes(t.trace_id);
    TraceContext {
        trace_id_high: (id >> 64) as u64,
        trace_id_low: id as u64,
        span_id: u64::from_be_bytes(t.span_id),
    }
}

/// A contract trace context as OTLP's trace and span id bytes.
pub fn trace_bytes(t: &TraceContext) -> ([u8; 16], [u8; 8]) {
    let id = (u128::from(t.trace_id_high) << 64) | u128::from(t.trace_id_low);
    (id.to_be_bytes(), t.span_id.to_be_bytes())
}

/// OTLP trace and span id bytes as a contract trace context; `None` unless both have their size.
pub fn trace_of(trace_id: &[u8], span_id: &[u8]) -> Option<TraceContext> {
    let trace_id: [u8; 16] = trace_id.try_into().ok()?;
    let span_id: [u8; 8] = span_id.try_into().ok()?;
    Some(trace(&HostTrace { trace_id, span_id }))
}

/// The number of points a metric holds.
pub fn point_count(points: &Points) -> usize {
    match points {
        Points::Gauge(p) | Points::Sum(p) => p.len(),
        Points::Histogram(p) => p.len(),
        Points::ExponentialHistogram(p) => p.len(),
    }
}

/// Gives `batch`, whose indices refer to `table`, a table of only what it refers to: a part of
/// a larger batch crosses into a plugin without the strings and sets of the other parts.
pub fn compact(batch: &mut MetricBatch, table: &Table) {
    /// The old table and the new, with where each old string and set went.
    struct Rebuild<'t> {
        old: &'t Table,
        new: Interner,
        strings: Vec<Option<u32>>,
        sets: Vec<Option<u32>>,
    }
    impl Rebuild<'_> {
        fn string(&mut self, i: u32) -> u32 {
            if let Some(Some(n)) = self.strings.get(i as usize) {
                return *n;
            }
            let text = self.old.strings.get(i as usize).map_or("", String::as_str);
            let n = self.new.string(text);
            if let Some(slot) = self.strings.get_mut(i as usize) {
                *slot = Some(n);
            }
            n
        }
        fn set(&mut self, i: u32) -> u32 {
            if let Some(Some(n)) = self.sets.get(i as usize) {
                return *n;
            }
            let span = self
                .old
                .sets
                .get(i as usize)
                .copied()
                .unwrap_or(Span { start: 0, len: 0 });
            let (start, len) = (span.start as usize, span.len as usize);
            let attributes: Vec<Attribute> = (start..start + len)
                .filter_map(|a| self.old.attributes.get(a).copied())
                .collect();
            let pairs: Vec<(u32, u32)> = attributes
                .into_iter()
                .map(|a| {
                    let value = self.old.values.get(a.value as usize).cloned();
                    let value = value.unwrap_or(Value::String(String::new()));
                    (self.string(a.key), self.new.value(value))
                })
                .collect();
            let n = self.new.set_of(pairs.into_iter());
            if let Some(slot) = self.sets.get_mut(i as usize) {
                *slot = Some(n);
            }
            n
        }
    }
    let mut r = Rebuild {
        strings: vec![None; table.strings.len()],
        sets: vec![None; table.sets.len()],
        old: table,
        new: Interner::new(),
    };
    batch.resource.attributes = r.set(batch.resource.attributes);
    batch.resource.schema_url = r.string(batch.resource.schema_url);
    for scope in &mut batch.scopes {
        scope.name = r.string(scope.name);
        scope.version = r.string(scope.version);
        scope.attributes = r.set(scope.attributes);
    }
    for metric in &mut batch.metrics {
        metric.name = r.string(metric.name);
        metric.description = r.string(metric.description);
        metric.unit = r.string(metric.unit);
        match &mut metric.points {
            Points::Gauge(points) | Points::Sum(points) => {
                points
                    .iter_mut()
                    .for_each(|p| p.attributes = r.set(p.attributes));
            }
            Points::Histogram(points) => {
                points
                    .iter_mut()
                    .for_each(|p| p.attributes = r.set(p.attributes));
            }
            Points::ExponentialHistogram(points) => {
                points
                    .iter_mut()
                    .for_each(|p| p.attributes = r.set(p.attributes));
            }
        }
        for e in &mut metric.exemplars {
            e.filtered_attributes = r.set(e.filtered_attributes);
        }
    }
    batch.table = r.new.finish();
}

/// Keeps the items of `list` whose flag in `keep` is set (an item past the flags stays).
fn retain<T>(list: &mut Vec<T>, keep: &[bool]) {
    let mut keep = keep.iter();
    list.retain(|_| keep.next().copied().unwrap_or(true));
}

/// Keeps the points whose flag in `keep` is set.
pub fn retain_points(points: &mut Points, keep: &[bool]) {
    match points {
        Points::Gauge(p) | Points::Sum(p) => retain(p, keep),
        Points::Histogram(p) => retain(p, keep),
        Points::ExponentialHistogram(p) => retain(p, keep),
    }
}

/// Keeps a metric's points flagged in `keep` and the exemplars of those, renumbered.
pub fn keep_points(metric: &mut super::bindings::types::Metric, keep: &[bool]) {
    let mut renumbered = Vec::with_capacity(keep.len());
    let mut next = 0u32;
    for &k in keep {
        renumbered.push(k.then_some(next));
        next += u32::from(k);
    }
    retain_points(&mut metric.points, keep);
    metric.exemplars.retain_mut(
        |e| match renumbered.get(e.point as usize).copied().flatten() {
            Some(p) => {
                e.point = p;
                true
            }
            None => false,
        },
    );
}

/// An attribute set a batch does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("set {set} of {of}")]
pub struct NoSet {
    /// The set named.
    pub set: u32,
    /// How many the batch holds.
    pub of: usize,
}

/// An edit a batch cannot take, named by its position among the edits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    /// It names something the batch does not hold.
    #[error("edit {edit} ({kind}) names {missing}")]
    Missing {
        /// The edit's position.
        edit: usize,
        /// What the edit is (`drop-point`).
        kind: &'static str,
        /// What it names (`point 9 of 2 in metric 0`).
        missing: String,
    },
    /// It is for the other signal.
    #[error("edit {edit} is a {of} edit, and this is a {batch} batch")]
    WrongSignal {
        /// The edit's position.
        edit: usize,
        /// The signal it edits (`metric`, `log record`).
        of: &'static str,
        /// The batch's.
        batch: &'static str,
    },
}

/// Edit `n` (a `what`) names `missing`, which the batch does not hold.
fn bad(n: usize, what: &'static str, missing: impl std::fmt::Display) -> EditError {
    EditError::Missing {
        edit: n,
        kind: what,
        missing: missing.to_string(),
    }
}

/// Edit `n`, an attribute edit, names a set the batch does not hold.
fn attribute(n: usize, missing: NoSet) -> EditError {
    bad(n, "attribute edit", missing)
}

/// A metric batch rewritten by a transform's edits (`None`: no edit, the batch stands); an edit
/// naming something the batch does not hold is an error naming the edit.
pub fn apply_metric_edits(
    batch: &MetricBatch,
    edits: &[Edit],
) -> Result<Option<MetricBatch>, EditError> {
    if edits.is_empty() {
        return Ok(None);
    }
    let mut out = batch.clone();
    let metrics = out.metrics.len();
    let mut keep: Vec<Vec<bool>> = out
        .metrics
        .iter()
        .map(|m| vec![true; point_count(&m.points)])
        .collect();
    let mut dropped = vec![false; metrics];
    for (n, edit) in edits.iter().enumerate() {
        match edit {
            Edit::DropMetric(m) => {
                *dropped
                    .get_mut(*m as usize)
                    .ok_or_else(|| bad(n, "drop-metric", format!("metric {m} of {metrics}")))? =
                    true;
            }
            Edit::DropPoint(p) => {
                let points = keep.get_mut(p.metric as usize).ok_or_else(|| {
                    bad(n, "drop-point", format!("metric {} of {metrics}", p.metric))
                })?;
                let len = points.len();
                *points.get_mut(p.point as usize).ok_or_else(|| {
                    bad(
                        n,
                        "drop-point",
                        format!("point {} of {len} in metric {}", p.point, p.metric),
                    )
                })? = false;
            }
            Edit::RenameMetric(r) => {
                if r.metric as usize >= metrics {
                    return Err(bad(
                        n,
                        "rename-metric",
                        format!("metric {} of {metrics}", r.metric),
                    ));
                }
                let name = out.table.push_string(r.name.clone());
                out.metrics[r.metric as usize].name = name;
            }
            Edit::DropRecord(_) | Edit::SetBody(_) => {
                return Err(EditError::WrongSignal {
                    edit: n,
                    of: "log record",
                    batch: "metric",
                });
            }
            Edit::SetAttribute(e) => out.table.set_attribute(e).map_err(|e| attribute(n, e))?,
            Edit::RemoveAttribute(e) => {
                out.table.remove_attribute(e).map_err(|e| attribute(n, e))?
            }
        }
    }
    let mut i = 0;
    out.metrics.retain_mut(|m| {
        i += 1;
        let (keep, dropped) = (&keep[i - 1], dropped[i - 1]);
        if dropped {
            return false;
        }
        if keep.iter().all(|k| *k) {
            return true;
        }
        keep_points(m, keep);
        point_count(&m.points) > 0
    });
    Ok(Some(out))
}

/// A log batch rewritten by a transform's edits (`None`: no edit, the batch stands); an edit
/// naming something the batch does not hold is an error naming the edit.
pub fn apply_log_edits(batch: &LogBatch, edits: &[Edit]) -> Result<Option<LogBatch>, EditError> {
    if edits.is_empty() {
        return Ok(None);
    }
    let mut out = batch.clone();
    let records = out.records.len();
    let mut keep = vec![true; records];
    for (n, edit) in edits.iter().enumerate() {
        match edit {
            Edit::DropRecord(r) => {
                *keep
                    .get_mut(*r as usize)
                    .ok_or_else(|| bad(n, "drop-record", format!("record {r} of {records}")))? =
                    false;
            }
            Edit::SetBody(b) => {
                out.records
                    .get_mut(b.record as usize)
                    .ok_or_else(|| bad(n, "set-body", format!("record {} of {records}", b.record)))?
                    .body = b.body.clone();
            }
            Edit::DropMetric(_) | Edit::DropPoint(_) | Edit::RenameMetric(_) => {
                return Err(EditError::WrongSignal {
                    edit: n,
                    of: "metric",
                    batch: "log",
                });
            }
            Edit::SetAttribute(e) => out.table.set_attribute(e).map_err(|e| attribute(n, e))?,
            Edit::RemoveAttribute(e) => {
                out.table.remove_attribute(e).map_err(|e| attribute(n, e))?
            }
        }
    }
    retain(&mut out.records, &keep);
    Ok(Some(out))
}

/// Keeps `kept` (an entry per record of a log batch) in step with the records `edits` drop, once
/// they were applied.
pub fn drop_records(edits: &[Edit], kept: &mut Vec<u32>) {
    let mut keep = vec![true; kept.len()];
    for edit in edits {
        if let Edit::DropRecord(r) = edit
            && let Some(k) = keep.get_mut(*r as usize)
        {
            *k = false;
        }
    }
    retain(kept, &keep);
}

/// A table's attribute sets cut down to the keys `keys` matches: the cut table's values,
/// attributes and sets (sets equal once cut are one; its keys index the whole table's strings,
/// and it holds no strings of its own) and, for each set of `table`, the set it became.
pub fn cut(table: &Table, keys: &Patterns) -> (Table, Vec<u32>) {
    let mut t = Interner::new();
    let of = (0..index(table.sets.len()))
        .map(|i| {
            let pairs: Vec<(u32, u32)> = table
                .attributes_of(i)
                .unwrap_or_default()
                .iter()
                .filter(|a| keys.matches(table.string(a.key).as_bytes()))
                .filter_map(|a| Some((a.key, t.value(table.values.get(a.value as usize)?.clone()))))
                .collect();
            t.set_of(pairs.into_iter())
        })
        .collect();
    let cut = t.finish();
    let table = Table {
        strings: Vec::new(),
        values: cut.values,
        attributes: cut.attributes,
        sets: cut.sets,
    };
    (table, of)
}

/// A transform's edits of a cut table's sets (`sets` of them; `of`: what each whole set
/// became) as edits of the whole sets: an attribute edit of a cut set applies to every whole
/// set that became it; an edit naming a set the cut table does not hold is an error naming it.
pub fn widen(edits: &[Edit], of: &[u32], sets: usize) -> Result<Vec<Edit>, EditError> {
    let mut wholes: Vec<Vec<u32>> = vec![Vec::new(); sets];
    for (whole, cut) in (0u32..).zip(of) {
        if let Some(w) = wholes.get_mut(*cut as usize) {
            w.push(whole);
        }
    }
    let mut out = Vec::with_capacity(edits.len());
    for (n, edit) in edits.iter().enumerate() {
        let cut = match edit {
            Edit::SetAttribute(e) => e.set,
            Edit::RemoveAttribute(e) => e.set,
            _ => {
                out.push(edit.clone());
                continue;
            }
        };
        let whole = wholes
            .get(cut as usize)
            .ok_or_else(|| attribute(n, NoSet { set: cut, of: sets }))?;
        for &set in whole {
            out.push(match edit {
                Edit::SetAttribute(e) => Edit::SetAttribute(SetAttribute { set, ..e.clone() }),
                Edit::RemoveAttribute(e) => {
                    Edit::RemoveAttribute(RemoveAttribute { set, ..e.clone() })
                }
                other => other.clone(),
            });
        }
    }
    Ok(out)
}

/// One change an edit makes to an attribute set.
#[derive(Debug, Clone, Copy)]
pub enum SetChange<'e> {
    /// Sets a key to a value: in place of the value it had, or after the others.
    Set(&'e str, &'e Value),
    /// Removes a key.
    Remove(&'e str),
}

impl<'e> SetChange<'e> {
    /// Applies the change to a set's pairs, whose keys `key` reads; `new` makes a pair.
    pub fn apply<P>(
        self,
        pairs: &mut Vec<P>,
        key: impl Fn(&P) -> &[u8],
        new: impl FnOnce(&'e str, &'e Value) -> P,
    ) {
        match self {
            SetChange::Remove(k) => pairs.retain(|p| key(p) != k.as_bytes()),
            SetChange::Set(k, v) => match pairs.iter_mut().find(|p| key(p) == k.as_bytes()) {
                Some(pair) => *pair = new(k, v),
                None => pairs.push(new(k, v)),
            },
        }
    }
}

/// A span batch's edits, checked against it: the spans and events they keep and, for each set
/// they edit, its changes in order (a set is every span, event and link that refers to it).
#[derive(Debug)]
pub struct SpanChanges<'e> {
    spans: Vec<bool>,
    events: Vec<bool>,
    sets: Map<u32, Vec<SetChange<'e>>>,
}

impl<'e> SpanChanges<'e> {
    /// Whether span `n` is kept.
    pub fn keeps_span(&self, n: usize) -> bool {
        self.spans.get(n).copied().unwrap_or(true)
    }

    /// Whether event `n` is kept.
    pub fn keeps_event(&self, n: usize) -> bool {
        self.events.get(n).copied().unwrap_or(true)
    }

    /// Whether set `set` is edited.
    pub fn edits(&self, set: u32) -> bool {
        self.sets.contains_key(&set)
    }

    /// The changes of set `set`, in order (none when it is not edited).
    pub fn of(&self, set: u32) -> &[SetChange<'e>] {
        self.sets.get(&set).map_or(&[], Vec::as_slice)
    }

    /// Adds a change of set `set`, which edit `n` names.
    fn change(
        &mut self,
        n: usize,
        set: u32,
        of: usize,
        change: SetChange<'e>,
    ) -> Result<(), EditError> {
        if set as usize >= of {
            return Err(attribute(n, NoSet { set, of }));
        }
        self.sets.entry(set).or_default().push(change);
        Ok(())
    }
}

/// A transform's edits of a span batch, checked against it (`None`: no edit, the spans stand);
/// an edit naming something the batch does not hold is an error naming the edit.
pub fn span_changes<'e>(
    batch: &SpanBatch,
    edits: &'e [SpanEdit],
) -> Result<Option<SpanChanges<'e>>, EditError> {
    if edits.is_empty() {
        return Ok(None);
    }
    let (spans, events, sets) = (
        batch.spans.len(),
        batch.events.len(),
        batch.table.sets.len(),
    );
    let mut out = SpanChanges {
        spans: vec![true; spans],
        events: vec![true; events],
        sets: Map::default(),
    };
    for (n, edit) in edits.iter().enumerate() {
        match edit {
            SpanEdit::DropSpan(i) => {
                *out.spans
                    .get_mut(*i as usize)
                    .ok_or_else(|| bad(n, "drop-span", format!("span {i} of {spans}")))? = false;
            }
            SpanEdit::DropEvent(i) => {
                *out.events
                    .get_mut(*i as usize)
                    .ok_or_else(|| bad(n, "drop-event", format!("event {i} of {events}")))? = false;
            }
            SpanEdit::SetAttribute(e) => {
                out.change(n, e.set, sets, SetChange::Set(&e.key, &e.value))?
            }
            SpanEdit::RemoveAttribute(e) => {
                out.change(n, e.set, sets, SetChange::Remove(&e.key))?
            }
        }
    }
    Ok(Some(out))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::plugins::bindings::transformer::{PointRef, RenameMetric, SetBody};
    use crate::plugins::bindings::types::{
        Exemplar, LogRecord, Metric, NumberPoint, Resource, Temporality,
    };

    /// A gauge of three points (sets m1, m2, m1) with an exemplar on points 1 and 2.
    pub(crate) fn gauge() -> MetricBatch {
        let mut t = Interner::new();
        let model = t.string("model");
        let (m1, m2) = (
            t.value(Value::String("m1".into())),
            t.value(Value::String("m2".into())),
        );
        let (a, b) = (
            t.set_of([(model, m1)].into_iter()),
            t.set_of([(model, m2)].into_iter()),
        );
        assert_eq!(a, t.set_of([(model, m1)].into_iter()), "equal sets are one");
        let point = |attributes, value| NumberPoint {
            attributes,
            start_time_unix_nano: 1,
            time_unix_nano: 2,
            value,
        };
        let exemplar = |point, value| Exemplar {
            point,
            filtered_attributes: 0,
            time_unix_nano: 2,
            value,
            trace: None,
        };
        let name = t.string("g");
        MetricBatch {
            resource: Resource {
                attributes: 0,
                schema_url: 0,
            },
            scopes: Vec::new(),
            metrics: vec![Metric {
                scope: 0,
                name,
                description: 0,
                unit: 0,
                temporality: Temporality::Cumulative,
                monotonic: false,
                points: Points::Gauge(vec![point(a, 1.0), point(b, 2.0), point(a, 3.0)]),
                bounds: Vec::new(),
                counts: Vec::new(),
                exemplars: vec![exemplar(1, 20.0), exemplar(2, 30.0)],
            }],
            table: t.finish(),
        }
    }

    fn pairs(t: &Table, set: u32) -> Vec<String> {
        t.set(set).map(|(k, v)| format!("{k}={v:?}")).collect()
    }

    #[test]
    fn edits_drop_points_rename_and_set_attributes_of_every_point_with_the_set() {
        let batch = gauge();
        let edits = [
            Edit::DropPoint(PointRef {
                metric: 0,
                point: 1,
            }),
            Edit::SetAttribute(SetAttribute {
                set: 1,
                key: "team".into(),
                value: Value::String("x".into()),
            }),
            Edit::RenameMetric(RenameMetric {
                metric: 0,
                name: "renamed".into(),
            }),
        ];
        let out = apply_metric_edits(&batch, &edits)
            .expect("valid edits")
            .expect("edited");
        let m = &out.metrics[0];
        assert_eq!(out.table.string(m.name), "renamed");
        let Points::Gauge(points) = &m.points else {
            panic!("a gauge")
        };
        let kept: Vec<(f64, Vec<String>)> = points
            .iter()
            .map(|p| (p.value, pairs(&out.table, p.attributes)))
            .collect();
        let tagged = vec![
            "model=Value::String(\"m1\")".to_owned(),
            "team=Value::String(\"x\")".to_owned(),
        ];
        assert_eq!(kept, [(1.0, tagged.clone()), (3.0, tagged)]);
        let exemplars: Vec<(u32, f64)> = m.exemplars.iter().map(|e| (e.point, e.value)).collect();
        assert_eq!(
            exemplars,
            [(1, 30.0)],
            "the dropped point's exemplar goes; the last one follows its point"
        );
        assert_eq!(
            pairs(&batch.table, 1),
            ["model=Value::String(\"m1\")"],
            "the input is untouched"
        );
    }

    #[test]
    fn an_attribute_edit_rewrites_its_set_alone_and_stores_only_what_it_adds() {
        let mut batch = gauge();
        let t = &mut batch.table;
        let (strings, values) = (t.strings.len(), t.values.len());
        let set = |key: &str, value: Value| SetAttribute {
            set: 1,
            key: key.into(),
            value,
        };
        t.set_attribute(&set("model", Value::Int(7)))
            .expect("set 1");
        assert_eq!(
            pairs(t, 1),
            ["model=Value::Int(7)"],
            "replaced where it was"
        );
        assert_eq!((t.strings.len(), t.values.len()), (strings, values + 1));
        t.set_attribute(&set("team", Value::Boolean(true)))
            .expect("set 1");
        assert_eq!(
            pairs(t, 1),
            ["model=Value::Int(7)", "team=Value::Boolean(true)"]
        );
        assert_eq!(t.strings.len(), strings + 1, "a new key is stored once");
        t.remove_attribute(&RemoveAttribute {
            set: 1,
            key: "model".into(),
        })
        .expect("set 1");
        assert_eq!(pairs(t, 1), ["team=Value::Boolean(true)"]);
        assert_eq!(
            pairs(t, 2),
            ["model=Value::String(\"m2\")"],
            "the other set stands"
        );
    }

    #[test]
    fn an_edit_naming_nothing_in_the_batch_is_refused_by_position() {
        let batch = gauge();
        let refused = |edit: Edit| {
            apply_metric_edits(&batch, &[Edit::DropMetric(0), edit])
                .err()
                .map(|e| e.to_string())
        };
        assert_eq!(
            refused(Edit::DropPoint(PointRef {
                metric: 0,
                point: 3
            }))
            .as_deref(),
            Some("edit 1 (drop-point) names point 3 of 3 in metric 0")
        );
        assert_eq!(
            refused(Edit::DropMetric(4)).as_deref(),
            Some("edit 1 (drop-metric) names metric 4 of 1")
        );
        assert_eq!(
            refused(Edit::RemoveAttribute(RemoveAttribute {
                set: 9,
                key: "k".into()
            }))
            .as_deref(),
            Some("edit 1 (attribute edit) names set 9 of 3")
        );
        assert_eq!(
            refused(Edit::DropRecord(0)).as_deref(),
            Some("edit 1 is a log record edit, and this is a metric batch")
        );
        assert!(
            apply_metric_edits(&batch, &[Edit::DropMetric(0)])
                .expect("valid")
                .is_some_and(|b| b.metrics.is_empty())
        );
        assert!(
            apply_metric_edits(&batch, &[]).expect("valid").is_none(),
            "no edit, no copy"
        );
    }

    #[test]
    fn log_edits_drop_records_and_replace_bodies() {
        let mut t = Interner::new();
        let record = |body: &str| LogRecord {
            scope: 0,
            time_unix_nano: 1,
            observed_time_unix_nano: 2,
            severity_number: 9,
            severity_text: 0,
            body: Some(Value::String(body.into())),
            attributes: 0,
            trace: None,
            event_name: 0,
        };
        t.string("unused");
        let batch = LogBatch {
            table: t.finish(),
            resource: Resource {
                attributes: 0,
                schema_url: 0,
            },
            scopes: Vec::new(),
            records: vec![record("a"), record("b"), record("c")],
        };
        let edits = [
            Edit::DropRecord(0),
            Edit::SetBody(SetBody {
                record: 2,
                body: None,
            }),
        ];
        let out = apply_log_edits(&batch, &edits)
            .expect("valid")
            .expect("edited");
        let bodies: Vec<String> = out
            .records
            .iter()
            .map(|r| format!("{:?}", r.body))
            .collect();
        assert_eq!(bodies, ["Some(Value::String(\"b\"))", "None"]);
        // The records left, by their index before the edits.
        let mut kept = vec![0, 1, 2];
        drop_records(&edits, &mut kept);
        assert_eq!(kept, [1, 2]);
        let mut kept = vec![10, 11, 12];
        drop_records(&[Edit::DropRecord(2), Edit::DropRecord(0)], &mut kept);
        assert_eq!(kept, [11]);
        assert_eq!(
            apply_log_edits(&batch, &[Edit::DropMetric(0)])
                .err()
                .map(|e| e.to_string())
                .as_deref(),
            Some("edit 0 is a metric edit, and this is a log batch")
        );
        assert_eq!(
            apply_log_edits(&batch, &[Edit::DropRecord(3)])
                .err()
                .map(|e| e.to_string())
                .as_deref(),
            Some("edit 0 (drop-record) names record 3 of 3")
        );
    }

    #[test]
    fn trace_contexts_round_trip_through_otlp_bytes() {
        let trace_id: Vec<u8> = (1..=16).collect();
        let span_id: Vec<u8> = (17..=24).collect();
        let t = trace_of(&trace_id, &span_id).expect("both ids");
        assert_eq!(t.trace_id_high, 0x0102_0304_0506_0708);
        let (t_id, s_id) = trace_bytes(&t);
        assert_eq!((t_id.to_vec(), s_id.to_vec()), (trace_id, span_id));
        assert!(
            trace_of(&[1; 15], &[1; 8]).is_none(),
            "a short id is no trace"
        );
    }

    /// Three spans (set 1 on spans 0 and 2), with events 0-1 on span 0 and 2 on span 1, and a
    /// link on span 2.
    fn spans() -> SpanBatch {
        use crate::plugins::bindings::types::{
            SpanEvent, SpanKind, SpanLink, StatusCode, TraceSpan,
        };
        let mut t = Interner::new();
        let prompt = t.string("gen_ai.prompt");
        let secret = t.value(Value::String("secret".into()));
        let set = t.set_of([(prompt, secret)].into_iter());
        let trace = TraceContext {
            trace_id_high: 1,
            trace_id_low: 2,
            span_id: 3,
        };
        let span = |attributes, events: (u32, u32), links: (u32, u32)| TraceSpan {
            scope: 0,
            trace,
            parent_span_id: None,
            trace_state: 0,
            flags: 0,
            name: 0,
            kind: SpanKind::Server,
            start_time_unix_nano: 1,
            end_time_unix_nano: 2,
            attributes,
            dropped_attributes_count: 0,
            events: Span {
                start: events.0,
                len: events.1,
            },
            dropped_events_count: 0,
            links: Span {
                start: links.0,
                len: links.1,
            },
            dropped_links_count: 0,
            status_code: StatusCode::Unset,
            status_message: 0,
        };
        let event = |time_unix_nano| SpanEvent {
            time_unix_nano,
            name: 0,
            attributes: set,
            dropped_attributes_count: 0,
        };
        SpanBatch {
            resource: Resource {
                attributes: 0,
                schema_url: 0,
            },
            scopes: Vec::new(),
            spans: vec![
                span(set, (0, 2), (0, 0)),
                span(0, (2, 1), (0, 0)),
                span(set, (3, 0), (0, 1)),
            ],
            events: vec![event(10), event(11), event(12)],
            links: vec![SpanLink {
                trace,
                trace_state: 0,
                attributes: 0,
                dropped_attributes_count: 0,
                flags: 0,
            }],
            table: t.finish(),
        }
    }

    #[test]
    fn span_edits_are_checked_against_the_batch_and_gathered_per_set_in_order() {
        use crate::plugins::bindings::span_transformer::SpanEdit;
        let batch = spans();
        let edits = [
            SpanEdit::DropSpan(1),
            SpanEdit::DropEvent(0),
            SpanEdit::RemoveAttribute(RemoveAttribute {
                set: 1,
                key: "gen_ai.prompt".into(),
            }),
            SpanEdit::SetAttribute(SetAttribute {
                set: 1,
                key: "gen_ai.prompt".into(),
                value: Value::Int(1),
            }),
        ];
        let changes = span_changes(&batch, &edits)
            .expect("valid")
            .expect("edited");
        let kept = |keeps: &dyn Fn(usize) -> bool| (0..4).map(keeps).collect::<Vec<_>>();
        assert_eq!(
            kept(&|n| changes.keeps_span(n)),
            [true, false, true, true],
            "past the batch, nothing is dropped"
        );
        assert_eq!(kept(&|n| changes.keeps_event(n)), [false, true, true, true]);
        assert!(changes.edits(1) && !changes.edits(0));
        let one = changes.of(1);
        assert!(
            matches!(
                one,
                [
                    SetChange::Remove("gen_ai.prompt"),
                    SetChange::Set("gen_ai.prompt", Value::Int(1))
                ]
            ),
            "in the edits' order: {one:?}"
        );
        assert!(changes.of(0).is_empty());
        let mut pairs = vec![("gen_ai.prompt", 0), ("model", 1)];
        for change in one {
            change.apply(&mut pairs, |p| p.0.as_bytes(), |k, _| (k, 9));
        }
        assert_eq!(
            pairs,
            [("model", 1), ("gen_ai.prompt", 9)],
            "removed, then set again after the others"
        );
        let mut pairs = vec![("a", 0), ("gen_ai.prompt", 0), ("b", 1)];
        SetChange::Set("gen_ai.prompt", &Value::Int(1)).apply(
            &mut pairs,
            |p| p.0.as_bytes(),
            |k, _| (k, 9),
        );
        assert_eq!(
            pairs,
            [("a", 0), ("gen_ai.prompt", 9), ("b", 1)],
            "set in place"
        );

        let refused = |edit| span_changes(&batch, &[edit]).err().map(|e| e.to_string());
        assert_eq!(
            refused(SpanEdit::DropSpan(3)).as_deref(),
            Some("edit 0 (drop-span) names span 3 of 3")
        );
        assert_eq!(
            refused(SpanEdit::DropEvent(7)).as_deref(),
            Some("edit 0 (drop-event) names event 7 of 3")
        );
        assert_eq!(
            refused(SpanEdit::SetAttribute(SetAttribute {
                set: 5,
                key: "k".into(),
                value: Value::Int(1),
            }))
            .as_deref(),
            Some("edit 0 (attribute edit) names set 5 of 2")
        );
        assert!(span_changes(&batch, &[]).expect("valid").is_none());
    }
}
