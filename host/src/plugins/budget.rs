//! Budgets on what a plugin returns: checks that refuse a result past its budget (never cut
//! it silently), and the count of refusals by plugin and budget for self-telemetry.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use super::bindings::encoder::Outbound;
use super::bindings::types::{KeyValue, LogBatch, MetricBatch, MetricData, Value};
use super::runtime::Budgets;
use super::supervisor::CallError;

/// Refusals so far, by plugin and budget.
static REFUSED: Mutex<BTreeMap<(String, &'static str), u64>> = Mutex::new(BTreeMap::new());

/// Counts one refusal of `plugin`'s result past `budget`, logs it (the first, tenth, hundredth …
/// of a kind, so that a plugin cannot flood the log through refusals) and returns the error.
pub fn refuse(plugin: &Arc<str>, budget: &'static str, detail: String) -> CallError {
    let count = {
        let mut refused = REFUSED.lock().unwrap_or_else(PoisonError::into_inner);
        let n = refused.entry((plugin.to_string(), budget)).or_insert(0);
        *n += 1;
        *n
    };
    let error = CallError::OverBudget(plugin.clone(), format!("{detail} (over `{budget}`)"));
    if count.is_power_of_two() || count % 1000 == 0 {
        tracing::warn!(plugin = %plugin, budget, refusals = count, "{error}");
    }
    error
}

/// Every refusal count so far: plugin, budget, count.
pub fn refusals() -> Vec<(String, &'static str, u64)> {
    REFUSED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .map(|((plugin, budget), n)| (plugin.clone(), *budget, *n))
        .collect()
}

/// Refuses an `encode` result with more items or bytes than the budgets allow.
pub fn outbound(plugin: &Arc<str>, out: &[Outbound], b: &Budgets) -> Result<(), CallError> {
    if out.len() > b.outbound_items {
        return Err(refuse(
            plugin,
            "outbound_items",
            format!(
                "returned {} requests or datagrams, at most {} are allowed",
                out.len(),
                b.outbound_items
            ),
        ));
    }
    let bytes: usize = out
        .iter()
        .map(|o| match o {
            Outbound::Http(r) => r.body.len(),
            Outbound::Datagram(d) => d.len(),
        })
        .sum();
    if bytes > b.outbound_bytes {
        return Err(refuse(
            plugin,
            "outbound_bytes",
            format!(
                "returned {bytes} bytes, at most {} are allowed",
                b.outbound_bytes
            ),
        ));
    }
    Ok(())
}

/// Refuses a view answer with too many attributes, or a key or value too long.
pub fn view(plugin: &Arc<str>, pairs: &[KeyValue], b: &Budgets) -> Result<(), CallError> {
    if pairs.len() > b.view_attributes {
        return Err(refuse(
            plugin,
            "view_attributes",
            format!(
                "answered {} attributes, at most {} are allowed",
                pairs.len(),
                b.view_attributes
            ),
        ));
    }
    for kv in pairs {
        if kv.key.len() > b.key_bytes {
            return Err(refuse(
                plugin,
                "key_bytes",
                format!(
                    "answered a key of {} bytes, at most {} are allowed",
                    kv.key.len(),
                    b.key_bytes
                ),
            ));
        }
        let len = match &kv.value {
            Value::String(s) | Value::Json(s) => s.len(),
            Value::Bytes(v) => v.len() * 2,
            _ => 0,
        };
        if len > b.value_bytes {
            return Err(refuse(
                plugin,
                "value_bytes",
                format!(
                    "answered a value of {len} bytes, at most {} are allowed",
                    b.value_bytes
                ),
            ));
        }
    }
    Ok(())
}

/// Data points in a metric batch.
pub fn points(batch: &MetricBatch) -> usize {
    batch
        .scopes
        .iter()
        .flat_map(|s| &s.metrics)
        .map(|m| match &m.data {
            MetricData::Gauge(p) => p.len(),
            MetricData::Sum(s) => s.points.len(),
            MetricData::Histogram(h) => h.points.len(),
            MetricData::ExponentialHistogram(h) => h.points.len(),
        })
        .sum()
}

/// Log records in a log batch.
pub fn records(batch: &LogBatch) -> usize {
    batch.scopes.iter().map(|s| s.records.len()).sum()
}

/// Refuses a transform result that holds more than `transform_growth` times its input.
pub fn growth(
    plugin: &Arc<str>,
    before: usize,
    after: usize,
    b: &Budgets,
) -> Result<(), CallError> {
    let allowed = before.max(1).saturating_mul(b.transform_growth);
    if after > allowed {
        return Err(refuse(
            plugin,
            "transform_growth",
            format!("turned {before} items into {after}, at most {allowed} are allowed"),
        ));
    }
    Ok(())
}
