//! Transform plugins and the chain that applies them to batches, failing open by default; each
//! link reloads on its own.

use std::sync::Arc;

use wasmtime::Store;
use wasmtime::component::{Instance, InstancePre};

use super::bindings::reader::{Parts, Reads};
use super::bindings::transformer::Edit;
use super::bindings::types::{LogBatch, MetricBatch};
use super::bindings::{key_reader, reader, span_transformer, transformer};
use super::budget;
use super::error::CallError;
use super::kind::{GuestCall, PluginKind, Settings, WithSpans, World};
use super::plugin::Plugin;
use super::runtime::PluginState;
use super::slot::Slot;
use super::{batch, convert, lean};
use crate::config::OnFailure;
use crate::model::Signal;
use crate::model::content::Patterns;
use crate::model::record::{Record, runs_of};
use crate::model::wire::WireError;

/// The transform kind: its `init` reports nothing; its `reader` (0.2.2) says what it reads, its
/// `key-reader` (0.2.3) which attribute keys, and its world whether it edits spans.
#[derive(Debug, Clone, Copy)]
pub struct Transformer;

/// What a transform reads: the parts of each kind of batch, and which attribute keys.
#[derive(Debug, Clone)]
pub struct Reading {
    reads: Reads,
    /// `None`: every key.
    attribute_keys: Option<Patterns>,
}

/// What a transform reads of `signal`'s batches.
fn parts(reads: &Reads, signal: Signal) -> Parts {
    let parts = match signal {
        Signal::Metrics => reads.metrics,
        Signal::Logs => reads.logs,
        Signal::Traces => reads.spans,
    };
    // The payload comes with its entries.
    if parts.contains(Parts::PAYLOAD) {
        parts | Parts::ENTRIES
    } else {
        parts
    }
}

impl PluginKind for Transformer {
    const NAME: &'static str = "transform";
    type Guest = WithSpans<transformer::Guest, span_transformer::Guest>;
    type Indices = (
        transformer::GuestIndices,
        Option<span_transformer::GuestIndices>,
        Option<reader::GuestIndices>,
        Option<key_reader::GuestIndices>,
    );
    /// What it reads; spans only when it exports `span-transformer` and its `edits-spans` said yes.
    type Info = Reading;

    fn indices(pre: &InstancePre<PluginState>) -> wasmtime::Result<Self::Indices> {
        let spans = span_transformer::GuestIndices::new(pre).ok();
        let reads = reader::GuestIndices::new(pre).ok();
        let keys = key_reader::GuestIndices::new(pre).ok();
        Ok((transformer::GuestIndices::new(pre)?, spans, reads, keys))
    }

    fn start(
        (indices, spans, reader, keys): &Self::Indices,
        store: &mut Store<PluginState>,
        instance: &Instance,
        config: &Settings,
    ) -> GuestCall<(Self::Guest, Reading)> {
        let edits = indices.load(&mut *store, instance)?;
        let spans = spans
            .as_ref()
            .map(|s| s.load(&mut *store, instance))
            .transpose()?;
        let reader = reader
            .as_ref()
            .map(|r| r.load(&mut *store, instance))
            .transpose()?;
        let keys = keys
            .as_ref()
            .map(|k| k.load(&mut *store, instance))
            .transpose()?;
        if let Err(refusal) = edits.call_init(&mut *store, config)? {
            return Ok(Err(refusal));
        }
        // Without `reader` it reads everything (and spans only if it edits them, below).
        let mut reads = match &reader {
            Some(r) => r.call_reading(&mut *store)?,
            None => Reads {
                metrics: Parts::all(),
                logs: Parts::all(),
                spans: Parts::all(),
            },
        };
        let traces = match &spans {
            Some(s) => s.call_edits_spans(&mut *store)?,
            None => false,
        };
        if !traces {
            reads.spans = Parts::empty();
        }
        let attribute_keys = match &keys {
            Some(k) => k.call_attribute_keys(&mut *store)?,
            None => None,
        };
        Ok(Ok((
            WithSpans {
                guest: edits,
                spans,
            },
            Reading {
                reads,
                attribute_keys: attribute_keys.map(|k: Vec<String>| Patterns::new(&k)),
            },
        )))
    }

    fn world(reading: &Reading) -> World {
        let reads = &reading.reads;
        let read: Vec<(&str, Parts)> = [
            ("metrics", Signal::Metrics),
            ("logs", Signal::Logs),
            ("traces", Signal::Traces),
        ]
        .into_iter()
        .map(|(name, signal)| (name, parts(reads, signal)))
        .filter(|(_, p)| *p != Parts::empty())
        .collect();
        // Configured to read nothing, it is never called.
        let join = |each: &dyn Fn(&(&str, Parts)) -> String, none: &str| {
            if read.is_empty() {
                none.to_owned()
            } else {
                read.iter().map(each).collect::<Vec<_>>().join(", ")
            }
        };
        let parts_read = |(name, p): &(&str, Parts)| format!("{name} {}", part_names(*p));
        World::Transform {
            signals: join(&|(name, _)| (*name).to_owned(), "none"),
            reads: match (&reading.attribute_keys, read.is_empty()) {
                (Some(keys), false) => format!("{}; keys {}", join(&parts_read, ""), keys.joined()),
                _ => join(&parts_read, "nothing"),
            },
        }
    }
}

/// Parts as `plugins check` names them: `attributes+entries+payload`.
fn part_names(p: Parts) -> String {
    [
        (Parts::ATTRIBUTES, "attributes"),
        (Parts::ENTRIES, "entries"),
        (Parts::PAYLOAD, "payload"),
    ]
    .into_iter()
    .filter(|(flag, _)| p.contains(*flag))
    .map(|(_, name)| name)
    .collect::<Vec<_>>()
    .join("+")
}

/// A loaded transform plugin.
pub type TransformPlugin = Plugin<Transformer>;

impl Plugin<Transformer> {
    /// Whether it reads something of `signal`'s batches (it is never called for the others).
    pub fn reads(&self, signal: Signal) -> bool {
        parts(&self.info().reads, signal) != Parts::empty()
    }

    /// The error of edits that name something the batch does not hold.
    fn invalid(&self, problem: &batch::EditError) -> CallError {
        CallError::Plugin(
            self.shared_name().clone(),
            format!("invalid edits: {problem}"),
        )
    }

    /// A transform's edits as edits of the batch as the host holds it, whose sets were cut down
    /// for the call as `cut` says (`None`: they were not).
    fn whole<'e>(
        &self,
        edits: &'e [Edit],
        cut: Option<lean::CutSets>,
    ) -> Result<std::borrow::Cow<'e, [Edit]>, CallError> {
        match cut {
            Some((of, sets)) => batch::widen(edits, &of, sets)
                .map(Into::into)
                .map_err(|e| self.invalid(&e)),
            None => Ok(edits.into()),
        }
    }

    /// Checks a transform's edits against the budgets (`before`: the size of what it was
    /// given), applies them and counts the items.
    fn edited<B>(
        &self,
        before: (usize, usize),
        edits: usize,
        size: fn(&B) -> (usize, usize),
        apply: impl FnOnce() -> Result<Option<B>, CallError>,
    ) -> Result<Option<B>, CallError> {
        let instance = self.instance();
        let (stats, b, name) = (instance.stats(), instance.budgets(), self.shared_name());
        budget::edits(stats, name, edits, before.0, &b)?;
        let out = apply()?;
        let after = out.as_ref().map_or(before, size);
        stats.items(name, "in", before.0);
        stats.items(name, "out", after.0);
        budget::growth(stats, name, before, after, &b)?;
        Ok(out)
    }

    /// Rewrites a metric batch (`None`: the plugin changed nothing, or reads no metrics and was
    /// not called), lowering only what it reads; a result past the plugin's budgets is refused.
    pub fn metrics(&self, batch: &mut MetricBatch) -> Result<Option<MetricBatch>, CallError> {
        let parts = parts(&self.info().reads, Signal::Metrics);
        if parts == Parts::empty() {
            return Ok(None);
        }
        let (edits, cut) = self.call_metrics(batch, parts)?;
        let before = budget::metric_size(batch);
        self.edited(before, edits.len(), budget::metric_size, || {
            let edits = self.whole(&edits, cut)?;
            batch::apply_metric_edits(batch, &edits).map_err(|e| self.invalid(&e))
        })
    }

    /// Whether the plugin leaves a collection of `points` points unchanged, given the probe
    /// that holds all it reads of it: any edit or failure says no (and the whole batch then
    /// goes through [`TransformPlugin::metrics`], where budgets and policies apply).
    pub fn leaves(&self, probe: &mut MetricBatch, points: usize) -> bool {
        let parts = parts(&self.info().reads, Signal::Metrics);
        if parts == Parts::empty() {
            return true;
        }
        let unchanged =
            matches!(self.call_metrics(probe, parts), Ok((edits, _)) if edits.is_empty());
        if unchanged {
            let (stats, name) = (self.instance().stats(), self.shared_name());
            stats.items(name, "in", points);
            stats.items(name, "out", points);
        }
        unchanged
    }

    /// Calls `transform-metrics` on `batch` holding only `parts` and the keys the plugin reads:
    /// its edits, and how the sets were cut.
    fn call_metrics(
        &self,
        batch: &mut MetricBatch,
        parts: Parts,
    ) -> Result<(Vec<Edit>, Option<lean::CutSets>), CallError> {
        self.call_lowered("transform-metrics", batch, parts, |g, store, b| {
            g.guest.call_transform_metrics(store, b)
        })
    }

    /// Calls `function` (with `call`) on `batch` holding only `parts` and the keys the plugin
    /// reads: its edits, and how the sets were cut.
    fn call_lowered<B: lean::Lean>(
        &self,
        function: &'static str,
        batch: &mut B,
        parts: Parts,
        call: impl FnOnce(
            &<Transformer as PluginKind>::Guest,
            &mut Store<PluginState>,
            &B,
        ) -> GuestCall<Vec<Edit>>,
    ) -> Result<(Vec<Edit>, Option<lean::CutSets>), CallError> {
        let (keys, mut cut) = (self.info().attribute_keys.as_ref(), None);
        let edits = self.instance().call(function, |g, store| {
            let (edits, sets) = lean::lowered(batch, parts, keys, |b| call(g, store, b));
            cut = sets;
            edits
        })?;
        Ok((edits, cut))
    }

    /// Rewrites a log batch (`None`: the plugin changed nothing, or reads no logs and was not
    /// called), lowering only what it reads; a result past the plugin's budgets is refused.
    /// `kept`, an entry per record (or empty), loses the entries of the records it drops.
    pub fn logs(
        &self,
        batch: &mut LogBatch,
        kept: &mut Vec<u32>,
    ) -> Result<Option<LogBatch>, CallError> {
        let parts = parts(&self.info().reads, Signal::Logs);
        if parts == Parts::empty() {
            return Ok(None);
        }
        let (edits, cut) = self.call_lowered("transform-logs", batch, parts, |g, store, b| {
            g.guest.call_transform_logs(store, b)
        })?;
        let before = budget::log_size(batch);
        let out = self.edited(before, edits.len(), budget::log_size, || {
            let edits = self.whole(&edits, cut)?;
            batch::apply_log_edits(&*batch, &edits).map_err(|e| self.invalid(&e))
        })?;
        batch::drop_records(&edits, kept);
        Ok(out)
    }

    /// Rewrites a run of spans of one origin (`None`: the plugin changed nothing, or edits no
    /// spans and was not called): the batch it is given holds only the parts and keys it reads,
    /// and its edits rewrite the spans on the wire; a result past its budgets is refused.
    pub fn spans(&self, run: &[Record]) -> Result<Option<Vec<Record>>, CallError> {
        let reading = self.info();
        let parts = parts(&reading.reads, Signal::Traces);
        let Some(first) = run.first().filter(|_| parts != Parts::empty()) else {
            return Ok(None);
        };
        let unreadable = |e: WireError| CallError::Unreadable(self.shared_name().clone(), e.0);
        let mut batch =
            convert::otlp::span_batch(run, &first.origin, reading.attribute_keys.as_ref())
                .map_err(unreadable)?;
        let edits = self
            .instance()
            .call("transform-spans", |g, store| match &g.spans {
                Some(spans) => {
                    // Read cut down from the wire already: its sets hold only the keys it reads.
                    let lowered = lean::lowered(&mut batch, parts, None, |b| {
                        spans.call_transform_spans(store, b)
                    });
                    lowered.0
                }
                None => Ok(Ok(Vec::new())),
            })?;
        let size = |spans: &Vec<Record>| budget::record_size(spans);
        self.edited(budget::record_size(run), edits.len(), size, || {
            let Some(changes) =
                batch::span_changes(&batch, &edits).map_err(|e| self.invalid(&e))?
            else {
                return Ok(None);
            };
            convert::otlp::rewrite_spans(run, &batch, &changes)
                .map(Some)
                .map_err(unreadable)
        })
    }
}

/// One configured transform: its plugin (reloaded on its own) and what a failure does.
#[derive(Debug, Clone)]
pub struct Link {
    slot: Arc<Slot<Transformer>>,
    on_failure: OnFailure,
}

impl Link {
    /// A link of the chain running `slot`.
    pub fn new(slot: Arc<Slot<Transformer>>, on_failure: OnFailure) -> Self {
        Self { slot, on_failure }
    }

    /// Whether it may change a batch of `signal`: one that reads something of it, or one not
    /// serving now (whose failure decides).
    fn rewrites(&self, signal: Signal) -> bool {
        self.slot.peek(|p| p.is_none_or(|p| p.reads(signal)))
    }

    /// Applies the serving version with `f`; a link whose plugin failed to load fails the call.
    fn apply<B>(
        &self,
        mut batch: B,
        f: impl FnOnce(&TransformPlugin, &mut B) -> Result<Option<B>, CallError>,
    ) -> Option<B> {
        let name = self.slot.name();
        let result = match (self.slot.get(), self.slot.failure()) {
            (Some(t), _) => f(&t, &mut batch),
            (None, Some(reason)) => Err(CallError::CrashLoop(Arc::from(name), reason)),
            (None, None) => Ok(None), // unloaded: its file was removed
        };
        match result {
            Ok(out) => Some(out.unwrap_or(batch)),
            Err(e) => match self.on_failure {
                OnFailure::Open => {
                    tracing::warn!(plugin = %name, "{e}; the batch passes through unchanged");
                    Some(batch)
                }
                OnFailure::Closed => {
                    tracing::warn!(plugin = %name, "{e}; the batch is dropped");
                    None
                }
            },
        }
    }
}

/// The transforms of a chain that read metrics, as they served at one moment (a version
/// reloaded since is not among them), each reading only attributes of keys it names: all they
/// could change of a collection shows in a [`convert::Probe`] of it cut down to their keys.
#[derive(Debug)]
pub struct KeyReaders {
    /// The keys any of them reads.
    pub keys: Patterns,
    plugins: Vec<Arc<TransformPlugin>>,
}

impl KeyReaders {
    /// Whether each, given `probe` of a collection of `points` points, changes nothing and
    /// fails on nothing (a change or a failure is left to the whole batch's run through the
    /// chain, where its policy applies).
    pub fn leave(&self, probe: &mut MetricBatch, points: usize) -> bool {
        self.plugins.iter().all(|p| p.leaves(probe, points))
    }
}

/// The transforms of the pipeline, applied in configuration order.
#[derive(Debug, Clone, Default)]
pub struct Transforms(Arc<Vec<Link>>);

impl Transforms {
    /// A chain of transforms.
    pub fn new(links: Vec<Link>) -> Self {
        Self(Arc::new(links))
    }

    /// This chain followed by `links`.
    pub fn then(&self, links: impl IntoIterator<Item = Link>) -> Self {
        Self::new(self.0.iter().cloned().chain(links).collect())
    }

    /// Whether some transform may change a batch of `signal` (a transform that reads nothing of
    /// it is not given it).
    pub fn rewrite(&self, signal: Signal) -> bool {
        self.0.iter().any(|l| l.rewrites(signal))
    }

    /// The transforms that read metrics, as they serve now, when each reads only attributes,
    /// of keys it names.
    pub fn key_readers(&self) -> Option<KeyReaders> {
        let (mut keys, mut plugins) = (Vec::new(), Vec::new());
        for link in self.0.iter().filter(|l| l.rewrites(Signal::Metrics)) {
            let plugin = link.slot.get()?;
            let reading = plugin.info();
            if parts(&reading.reads, Signal::Metrics) != Parts::ATTRIBUTES {
                return None;
            }
            keys.push(reading.attribute_keys.clone()?);
            plugins.push(plugin);
        }
        Some(KeyReaders {
            keys: Patterns::union(&keys),
            plugins,
        })
    }

    /// Applies every transform to a metric batch; `None` when a fail-closed transform failed.
    pub fn metrics(&self, batch: MetricBatch) -> Option<MetricBatch> {
        self.0
            .iter()
            .try_fold(batch, |batch, l| l.apply(batch, TransformPlugin::metrics))
    }

    /// Applies every transform to a log batch; `None` when a fail-closed transform failed.
    /// `kept` (empty, or the index of each record in the batch given) ends with the index of
    /// each record left.
    pub fn logs(&self, batch: LogBatch, kept: &mut Vec<u32>) -> Option<LogBatch> {
        self.0
            .iter()
            .try_fold(batch, |batch, l| l.apply(batch, |p, b| p.logs(b, kept)))
    }

    /// Log records or spans (`signal`) through the chain, run by run of one origin: log records
    /// decoded into the contract's batch, transformed and encoded again; spans given to each
    /// transform as it reads them and rewritten by its edits. A run a fail-closed transform
    /// failed on is left out.
    pub fn records(&self, signal: Signal, records: &[Record]) -> Vec<Record> {
        runs_of(records)
            .filter_map(|run| {
                let origin = &run[0].origin;
                match signal {
                    Signal::Traces => self.0.iter().try_fold(run.to_vec(), |spans, l| {
                        l.apply(spans, |p, spans| p.spans(spans))
                    }),
                    Signal::Logs | Signal::Metrics => {
                        let logs: Vec<_> = run.iter().map(Record::decode).collect();
                        let mut kept = (0u32..).take(logs.len()).collect();
                        let batch =
                            self.logs(convert::otlp::log_batch(&logs, origin), &mut kept)?;
                        let mut out = convert::otlp::log_records(&batch);
                        // What contract 0.2 does not carry, from the record each one was.
                        for (record, from) in out.iter_mut().zip(kept) {
                            let was = &logs[from as usize];
                            record.flags = was.flags;
                            record.dropped_attributes_count = was.dropped_attributes_count;
                        }
                        Some(Record::encode_all(&out, origin))
                    }
                }
            })
            .flatten()
            .collect()
    }
}
