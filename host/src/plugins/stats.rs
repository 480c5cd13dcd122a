//! What every plugin did, per scope (one per host, since the plugin runtime is shared by the
//! process): calls by function and outcome with their durations, traps by cause, items in and
//! out, and memory; each host's self-telemetry reads its own scope at each collection.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex, PoisonError};
use std::time::Duration;

use super::runtime::Failure;
use super::supervisor::CallError;
use crate::metrics::aggregation::HistogramPoint;

/// Bounds of `wasmtel.plugin.call.duration`, in seconds: 10 µs to the 100 ms deadline and past.
pub const DURATION_BOUNDS: [f64; 12] = [
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1,
];

/// A plugin, its function and the call's outcome.
pub type CallKey = (String, &'static str, &'static str);

#[derive(Default)]
struct Stats {
    /// Per call series, the durations of its calls, cumulative.
    calls: HashMap<CallKey, HistogramPoint>,
    traps: HashMap<(String, &'static str), u64>,
    last_trap: HashMap<String, LastTrap>,
    items: HashMap<(String, &'static str), u64>,
    memory: HashMap<String, u64>,
}

static STATS: LazyLock<Mutex<HashMap<u64, Stats>>> = LazyLock::new(Mutex::default);
static NEXT_SCOPE: AtomicU64 = AtomicU64::new(1);

/// A new scope, for one host.
pub fn new_scope() -> u64 {
    NEXT_SCOPE.fetch_add(1, Ordering::Relaxed)
}

/// Runs `f` over `scope`'s stats (nothing is kept for scope 0).
fn with<R: Default>(scope: u64, f: impl FnOnce(&mut Stats) -> R) -> R {
    if scope == 0 {
        return R::default();
    }
    let mut all = STATS.lock().unwrap_or_else(PoisonError::into_inner);
    f(all.entry(scope).or_default())
}

/// A call's outcome as self-telemetry names it.
pub fn outcome<R>(result: &Result<R, CallError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(CallError::Plugin(..)) => "error",
        Err(CallError::Failed(..)) => "trap",
        Err(CallError::BackingOff(_)) => "backing_off",
        Err(CallError::CrashLoop(..)) => "failed",
        Err(CallError::OverBudget(..)) => "over_budget",
        Err(CallError::Busy(_)) => "busy",
    }
}

/// A failure's cause as self-telemetry names it.
pub fn cause(failure: &Failure) -> &'static str {
    match failure {
        Failure::Deadline(_) => "deadline",
        Failure::MemoryLimit(_) => "memory_limit",
        Failure::Trap(_) => "trap",
    }
}

/// Counts one call of `function` of `plugin`, its outcome and how long it took.
pub fn call(
    scope: u64,
    plugin: &str,
    function: &'static str,
    outcome: &'static str,
    took: Duration,
) {
    let seconds = took.as_secs_f64();
    let bucket = DURATION_BOUNDS.partition_point(|b| *b < seconds);
    with(scope, |s| {
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

/// Counts a failure of `plugin` by its cause and keeps it as its latest.
pub fn trap(scope: u64, plugin: &str, failure: &Failure) {
    let last = LastTrap {
        cause: cause(failure),
        message: failure.to_string().chars().take(300).collect(),
        unix_nano: crate::clock::unix_nanos(),
    };
    with(scope, |s| {
        *s.traps.entry((plugin.to_owned(), last.cause)).or_default() += 1;
        s.last_trap.insert(plugin.to_owned(), last);
    });
}

/// Counts `n` items (points, records, requests, attribute sets) going `direction` (`in` to
/// the plugin, `out` of it).
pub fn items(scope: u64, plugin: &str, direction: &'static str, n: usize) {
    with(scope, |s| {
        *s.items.entry((plugin.to_owned(), direction)).or_default() += n as u64;
    });
}

/// Notes the bytes `plugin`'s instance holds in its memories and tables.
pub fn memory(scope: u64, plugin: &str, bytes: usize) {
    with(scope, |s| {
        s.memory.insert(plugin.to_owned(), bytes as u64);
    });
}

/// Every call series of `scope` so far, with its durations.
pub fn calls(scope: u64) -> Vec<(CallKey, HistogramPoint)> {
    with(scope, |s| {
        s.calls
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    })
}

/// Every trap count of `scope` so far: plugin, cause, count.
pub fn traps(scope: u64) -> Vec<(String, &'static str, u64)> {
    with(scope, |s| {
        s.traps
            .iter()
            .map(|((p, c), n)| (p.clone(), *c, *n))
            .collect()
    })
}

/// Every item count of `scope` so far: plugin, direction, count.
pub fn item_counts(scope: u64) -> Vec<(String, &'static str, u64)> {
    with(scope, |s| {
        s.items
            .iter()
            .map(|((p, d), n)| (p.clone(), *d, *n))
            .collect()
    })
}

/// The memory each plugin's instance of `scope` held after its last call.
pub fn memories(scope: u64) -> Vec<(String, u64)> {
    with(scope, |s| {
        s.memory.iter().map(|(p, n)| (p.clone(), *n)).collect()
    })
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

/// `plugin`'s totals in `scope`.
pub fn summary(scope: u64, plugin: &str) -> Summary {
    with(scope, |s| summarize(s, plugin))
}

fn summarize(s: &Stats, plugin: &str) -> Summary {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plugin_keeps_its_latest_failure_beside_its_counts() {
        let scope = new_scope();
        assert_eq!(summary(scope, "p").last_trap, None);
        trap(scope, "p", &Failure::Deadline(Duration::from_millis(100)));
        trap(scope, "p", &Failure::Trap("x".repeat(1000)));
        let s = summary(scope, "p");
        assert_eq!(s.traps, HashMap::from([("deadline", 1), ("trap", 1)]));
        let last = s.last_trap.expect("a last trap");
        assert_eq!(last.cause, "trap");
        assert_eq!(last.message.chars().count(), 300, "cut to 300 characters");
        assert!(last.message.starts_with("trapped: xxx"));
        assert!(last.unix_nano > 0);
        assert_eq!(summary(scope, "other").last_trap, None);
    }
}
