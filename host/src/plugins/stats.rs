//! What one host's plugins did — calls by function and outcome with their durations, traps by
//! cause, items in and out, memory, and results refused past a budget — kept in a handle the
//! host passes down to each plugin, and read by its self-telemetry at each collection.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::error::{CallError, Failure};
use crate::metrics::aggregation::HistogramPoint;
use crate::metrics::{ConflictError, Point, Registry};
use crate::model::attributes::ValueRef;
use crate::model::metric::InstrumentKind;
use crate::telemetry::instrument;

/// Bounds of `wasmtel.plugin.call.duration`, in seconds: 10 µs to the 100 ms deadline and past.
pub const DURATION_BOUNDS: [f64; 12] = [
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1,
];

/// A plugin, its function and the call's outcome.
pub type CallKey = (String, &'static str, &'static str);

#[derive(Debug, Default)]
struct Tables {
    /// Per call series, the durations of its calls, cumulative.
    calls: HashMap<CallKey, HistogramPoint>,
    traps: HashMap<(String, &'static str), u64>,
    last_trap: HashMap<String, LastTrap>,
    items: HashMap<(String, &'static str), u64>,
    memory: HashMap<String, u64>,
    refused: BTreeMap<(String, &'static str), u64>,
}

/// One host's plugin statistics; clones share them.
#[derive(Debug, Clone, Default)]
pub struct Stats(Arc<Mutex<Tables>>);

/// A call's outcome as self-telemetry names it.
pub fn outcome<R>(result: &Result<R, CallError>) -> &'static str {
    result.as_ref().map_or_else(CallError::outcome, |_| "ok")
}

/// A plugin's latest failure: its cause, what happened (at most 300 characters) and when.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LastTrap {
    /// `deadline`, `memory_limit` or `trap`.
    pub cause: &'static str,
    /// The failure's message.
    pub message: String,
    /// When it happened (Unix nanoseconds).
    pub unix_nano: u64,
}

/// One plugin's totals, for the API: calls by outcome, traps, items in and out, memory.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Summary {
    /// Calls by outcome.
    pub calls: HashMap<&'static str, u64>,
    /// Mean call duration in seconds, over every call.
    pub mean_call_seconds: f64,
    /// Failures by cause.
    pub traps: HashMap<&'static str, u64>,
    /// Items given to the plugin.
    pub items_in: u64,
    /// Items it returned.
    pub items_out: u64,
    /// Bytes its instance held after its last call.
    pub memory_bytes: u64,
    /// Its latest failure, if any.
    pub last_trap: Option<LastTrap>,
}

impl Stats {
    fn with<R>(&self, f: impl FnOnce(&mut Tables) -> R) -> R {
        f(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Counts one call of `function` of `plugin`, its outcome and how long it took.
    pub fn call(
        &self,
        plugin: &str,
        function: &'static str,
        outcome: &'static str,
        took: Duration,
    ) {
        let seconds = took.as_secs_f64();
        let bucket = DURATION_BOUNDS.partition_point(|b| *b < seconds);
        self.with(|s| {
            let h = s
                .calls
                .entry((plugin.to_owned(), function, outcome))
                .or_insert_with(|| HistogramPoint {
                    count: 0,
                    sum: 0.0,
                    min: f64::INFINITY,
                    max: f64::NEG_INFINITY,
                    bucket_counts: vec![0; DURATION_BOUNDS.len() + 1],
                });
            h.count += 1;
            h.sum += seconds;
            h.min = h.min.min(seconds);
            h.max = h.max.max(seconds);
            h.bucket_counts[bucket] += 1;
        });
    }

    /// Counts a failure of `plugin` by its cause and keeps it as its latest.
    pub fn trap(&self, plugin: &str, failure: &Failure) {
        let last = LastTrap {
            cause: failure.cause(),
            message: failure.to_string().chars().take(300).collect(),
            unix_nano: crate::clock::unix_nanos(),
        };
        self.with(|s| {
            *s.traps.entry((plugin.to_owned(), last.cause)).or_default() += 1;
            s.last_trap.insert(plugin.to_owned(), last);
        });
    }

    /// Counts `n` items (points, records, requests, attribute sets) going `direction` (`in` to
    /// the plugin, `out` of it).
    pub fn items(&self, plugin: &str, direction: &'static str, n: usize) {
        self.with(|s| {
            *s.items.entry((plugin.to_owned(), direction)).or_default() += n as u64;
        });
    }

    /// Notes the bytes `plugin`'s instance holds in its memories and tables.
    pub fn memory(&self, plugin: &str, bytes: usize) {
        self.with(|s| {
            s.memory.insert(plugin.to_owned(), bytes as u64);
        });
    }

    /// Counts one refusal of `plugin`'s result past `budget`, logs it (the first, second, fourth
    /// … thousandth … of a kind, so that a plugin cannot flood the log through refusals) and
    /// returns the error.
    pub fn refuse(&self, plugin: &Arc<str>, budget: &'static str, detail: &str) -> CallError {
        let count = self.with(|s| {
            let n = s.refused.entry((plugin.to_string(), budget)).or_insert(0);
            *n += 1;
            *n
        });
        let error = CallError::OverBudget(plugin.clone(), format!("{detail} (over `{budget}`)"));
        if count.is_power_of_two() || count.is_multiple_of(1000) {
            tracing::warn!(plugin = %plugin, budget, refusals = count, "{error}");
        }
        error
    }

    /// Every refusal count so far: plugin, budget, count.
    pub fn refusals(&self) -> Vec<(String, &'static str, u64)> {
        self.with(|s| {
            s.refused
                .iter()
                .map(|((plugin, budget), n)| (plugin.clone(), *budget, *n))
                .collect()
        })
    }

    /// Every call series so far, with its durations.
    pub fn calls(&self) -> Vec<(CallKey, HistogramPoint)> {
        self.with(|s| {
            s.calls
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
    }

    /// Every trap count so far: plugin, cause, count.
    pub fn traps(&self) -> Vec<(String, &'static str, u64)> {
        self.with(|s| {
            s.traps
                .iter()
                .map(|((p, c), n)| (p.clone(), *c, *n))
                .collect()
        })
    }

    /// Every item count so far: plugin, direction, count.
    pub fn item_counts(&self) -> Vec<(String, &'static str, u64)> {
        self.with(|s| {
            s.items
                .iter()
                .map(|((p, d), n)| (p.clone(), *d, *n))
                .collect()
        })
    }

    /// The memory each plugin's instance held after its last call.
    pub fn memories(&self) -> Vec<(String, u64)> {
        self.with(|s| s.memory.iter().map(|(p, n)| (p.clone(), *n)).collect())
    }

    /// `plugin`'s totals.
    pub fn summary(&self, plugin: &str) -> Summary {
        self.with(|s| {
            let mut out = Summary::default();
            let (mut n, mut sum) = (0, 0.0);
            for ((p, _, outcome), c) in &s.calls {
                if p == plugin {
                    *out.calls.entry(outcome).or_default() += c.count;
                    n += c.count;
                    sum += c.sum;
                }
            }
            out.mean_call_seconds = if n > 0 { sum / n as f64 } else { 0.0 };
            for ((p, cause), count) in &s.traps {
                if p == plugin {
                    out.traps.insert(cause, *count);
                }
            }
            for ((p, direction), count) in &s.items {
                if p == plugin {
                    match *direction {
                        "in" => out.items_in += count,
                        _ => out.items_out += count,
                    }
                }
            }
            out.memory_bytes = s.memory.get(plugin).copied().unwrap_or(0);
            out.last_trap = s.last_trap.get(plugin).cloned();
            out
        })
    }

    /// Registers `wasmtel.plugin.refused`, `.calls`, `.call.duration`, `.traps`, `.items` and
    /// `.memory` in `registry`, read from these statistics at each collection (durations
    /// merged as the change since the last one).
    pub fn register(&self, registry: &Registry) -> Result<(), ConflictError> {
        let counted = |name: &str,
                       unit: &str,
                       description: &str,
                       key: &'static str,
                       read: fn(&Stats) -> Vec<(String, &'static str, u64)>| {
            let counter = instrument(
                registry,
                InstrumentKind::ObservableCounter,
                name,
                unit,
                description,
            )?;
            let stats = self.clone();
            // Observable by construction, so the registration cannot be refused.
            let _ = registry.register_callback(
                counter,
                Box::new(move |o| {
                    for (plugin, value, n) in read(&stats) {
                        let attrs = [
                            (key, ValueRef::Str(value)),
                            ("plugin", ValueRef::Str(&plugin)),
                        ];
                        o.observe(&attrs, n as f64);
                    }
                }),
            );
            Ok::<_, ConflictError>(())
        };
        counted(
            "wasmtel.plugin.refused",
            "{result}",
            "Plugin results refused past a budget, and plugin log lines dropped past their rate, by plugin and budget.",
            "budget",
            Stats::refusals,
        )?;
        self.register_calls(registry)?;
        counted(
            "wasmtel.plugin.traps",
            "{failure}",
            "Plugin calls that failed, by plugin and cause (trap, deadline, memory_limit).",
            "cause",
            Stats::traps,
        )?;
        counted(
            "wasmtel.plugin.items",
            "{item}",
            "Items given to plugins (in) and returned by them (out): points, records, requests, attribute sets.",
            "direction",
            Stats::item_counts,
        )?;
        let memory = instrument(
            registry,
            InstrumentKind::ObservableGauge,
            "wasmtel.plugin.memory",
            "By",
            "Bytes each plugin's instance held in its memories and tables after its last call.",
        )?;
        let stats = self.clone();
        let _ = registry.register_callback(
            memory,
            Box::new(move |o| {
                for (plugin, bytes) in stats.memories() {
                    o.observe(&[("plugin", ValueRef::Str(&plugin))], bytes as f64);
                }
            }),
        );
        Ok(())
    }

    /// Registers `wasmtel.plugin.calls` and the histogram of their durations.
    fn register_calls(&self, registry: &Registry) -> Result<(), ConflictError> {
        let calls = instrument(
            registry,
            InstrumentKind::ObservableCounter,
            "wasmtel.plugin.calls",
            "{call}",
            "Plugin calls, by plugin, function and outcome (ok, error, trap, busy, backing_off, failed).",
        )?;
        let duration = registry.instrument(
            crate::metrics::Descriptor {
                name: "wasmtel.plugin.call.duration".into(),
                unit: "s".into(),
                description: "How long plugin calls took, by plugin, function and outcome.".into(),
                kind: InstrumentKind::Histogram,
                scope: crate::telemetry::SELF_SCOPE.into(),
            },
            &DURATION_BOUNDS,
        )?;
        let seen: Mutex<HashMap<CallKey, HistogramPoint>> = Mutex::default();
        let stats = self.clone();
        let _ = registry.register_callback(
            calls,
            Box::new(move |o| {
                let mut seen = seen.lock().unwrap_or_else(PoisonError::into_inner);
                for ((plugin, function, outcome), now) in stats.calls() {
                    let attrs = [
                        ("function", ValueRef::Str(function)),
                        ("outcome", ValueRef::Str(outcome)),
                        ("plugin", ValueRef::Str(&plugin)),
                    ];
                    o.observe(&attrs, now.count as f64);
                    let key = (plugin.clone(), function, outcome);
                    let change = match seen.get(&key) {
                        Some(before) => now.since(before),
                        None => Some(now.clone()),
                    };
                    if let Some(change) = change.filter(|c| c.count > 0) {
                        let _ = duration.merge(&attrs, Point::Histogram(&DURATION_BOUNDS, &change));
                    }
                    seen.insert(key, now);
                }
            }),
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plugin_keeps_its_latest_failure_beside_its_counts() {
        let stats = Stats::default();
        assert_eq!(stats.summary("p").last_trap, None);
        stats.trap("p", &Failure::Deadline(Duration::from_millis(100)));
        stats.trap("p", &Failure::Trap("x".repeat(1000)));
        let s = stats.summary("p");
        assert_eq!(s.traps, HashMap::from([("deadline", 1), ("trap", 1)]));
        let last = s.last_trap.expect("a last trap");
        assert_eq!(last.cause, "trap");
        assert_eq!(last.message.chars().count(), 300, "cut to 300 characters");
        assert!(last.message.starts_with("trapped: xxx"));
        assert!(last.unix_nano > 0);
        assert_eq!(stats.summary("other").last_trap, None);
    }

    #[test]
    fn two_hosts_keep_their_own_counts() {
        let (one, two) = (Stats::default(), Stats::default());
        let plugin: Arc<str> = Arc::from("p");
        one.refuse(&plugin, "outbound_items", "too many");
        one.call("p", "encode-metrics", "ok", Duration::from_millis(1));
        assert_eq!(one.refusals(), [("p".to_owned(), "outbound_items", 1)]);
        assert!(
            two.refusals().is_empty(),
            "another host's refusals are not seen"
        );
        assert!(two.calls().is_empty());
        assert_eq!(one.summary("p").calls, HashMap::from([("ok", 1)]));
    }
}
