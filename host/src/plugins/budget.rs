//! Budgets on what a plugin returns: checks that refuse a result past its budget (never cut
//! it silently), each refusal counted in the host's plugin statistics.

use std::sync::Arc;

use super::bindings::encoder::Outbound;
use super::bindings::types::{KeyValue, LogBatch, MetricBatch, Points, SpanBatch, Table, Value};
use super::error::CallError;
use super::limits::Budgets;
use super::stats::Stats;
use crate::model::record::Record;

/// Refuses an `encode` result with more items or bytes than the budgets allow.
pub fn outbound(
    stats: &Stats,
    plugin: &Arc<str>,
    out: &[Outbound],
    b: &Budgets,
) -> Result<(), CallError> {
    if out.len() > b.outbound_items {
        return Err(stats.refuse(
            plugin,
            "outbound_items",
            &format!(
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
        return Err(stats.refuse(
            plugin,
            "outbound_bytes",
            &format!(
                "returned {bytes} bytes, at most {} are allowed",
                b.outbound_bytes
            ),
        ));
    }
    Ok(())
}

/// Refuses a view answer with too many attributes, or a key or value too long.
pub fn view(
    stats: &Stats,
    plugin: &Arc<str>,
    pairs: &[KeyValue],
    b: &Budgets,
) -> Result<(), CallError> {
    if pairs.len() > b.view_attributes {
        return Err(stats.refuse(
            plugin,
            "view_attributes",
            &format!(
                "answered {} attributes, at most {} are allowed",
                pairs.len(),
                b.view_attributes
            ),
        ));
    }
    for kv in pairs {
        if kv.key.len() > b.key_bytes {
            return Err(stats.refuse(
                plugin,
                "key_bytes",
                &format!(
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
            return Err(stats.refuse(
                plugin,
                "value_bytes",
                &format!(
                    "answered a value of {len} bytes, at most {} are allowed",
                    b.value_bytes
                ),
            ));
        }
    }
    Ok(())
}

/// The bytes a value holds (numbers and booleans as 8).
fn value_len(v: &Value) -> usize {
    match v {
        Value::String(s) | Value::Json(s) => s.len(),
        Value::Bytes(b) => b.len(),
        _ => 8,
    }
}

/// The bytes of an attribute set's keys and values.
fn set_len(table: &Table, set: u32) -> usize {
    table.set(set).map(|(k, v)| k.len() + value_len(v)).sum()
}

/// Data points in a metric batch, and the bytes of their names and attributes (as if each point
/// carried its own, which is what an exporter makes of them).
pub fn metric_size(batch: &MetricBatch) -> (usize, usize) {
    let t = &batch.table;
    let mut size = (0, 0);
    for metric in &batch.metrics {
        size.1 += t.string(metric.name).len()
            + t.string(metric.description).len()
            + t.string(metric.unit).len();
        let sets: Vec<u32> = match &metric.points {
            Points::Gauge(p) | Points::Sum(p) => p.iter().map(|p| p.attributes).collect(),
            Points::Histogram(p) => p.iter().map(|p| p.attributes).collect(),
            Points::ExponentialHistogram(p) => p.iter().map(|p| p.attributes).collect(),
        };
        size.0 += sets.len();
        size.1 += sets.iter().map(|s| 8 + set_len(t, *s)).sum::<usize>();
    }
    size
}

/// Log records in a log batch, and the bytes of their bodies and attributes.
pub fn log_size(batch: &LogBatch) -> (usize, usize) {
    let t = &batch.table;
    batch.records.iter().fold((0, 0), |(n, bytes), r| {
        let body = r.body.as_ref().map_or(0, value_len);
        let text = t.string(r.severity_text).len() + t.string(r.event_name).len();
        (n + 1, bytes + body + set_len(t, r.attributes) + text)
    })
}

/// Spans in a span batch, and the bytes of their names and attributes, their events' and links'.
pub fn span_size(batch: &SpanBatch) -> (usize, usize) {
    let t = &batch.table;
    let spans = batch.spans.iter().fold(0, |bytes, s| {
        bytes + t.string(s.name).len() + t.string(s.status_message).len() + set_len(t, s.attributes)
    });
    let events = batch.events.iter().fold(0, |bytes, e| {
        bytes + t.string(e.name).len() + set_len(t, e.attributes)
    });
    let links = batch
        .links
        .iter()
        .fold(0, |bytes, l| bytes + 24 + set_len(t, l.attributes));
    (batch.spans.len(), spans + events + links)
}

/// A run of records' size: how many, and their bytes.
pub fn record_size(records: &[Record]) -> (usize, usize) {
    (records.len(), records.iter().map(|r| r.bytes.len()).sum())
}

/// Edits any transform may return per unit of `transform_growth`, whatever it was given.
const TRANSFORM_FLOOR_EDITS: usize = 1024;

/// Refuses more edits than `transform_growth` per item (data point, log record or span) of the batch
/// (at least 1,024 per unit), before any is applied.
pub fn edits(
    stats: &Stats,
    plugin: &Arc<str>,
    edits: usize,
    items: usize,
    b: &Budgets,
) -> Result<(), CallError> {
    let allowed = items
        .max(TRANSFORM_FLOOR_EDITS)
        .saturating_mul(b.transform_growth);
    if edits > allowed {
        return Err(stats.refuse(
            plugin,
            "transform_growth",
            &format!("returned {edits} edits for {items} items, at most {allowed} are allowed"),
        ));
    }
    Ok(())
}

/// Bytes any transform may return, whatever it was given (so that tiny batches may grow).
const TRANSFORM_FLOOR_BYTES: usize = 64 * 1024;

/// Refuses a transform result holding more than `transform_growth` times its input's items
/// (data points or log records) or bytes.
pub fn growth(
    stats: &Stats,
    plugin: &Arc<str>,
    before: (usize, usize),
    after: (usize, usize),
    b: &Budgets,
) -> Result<(), CallError> {
    let items = before.0.max(1).saturating_mul(b.transform_growth);
    if after.0 > items {
        return Err(stats.refuse(
            plugin,
            "transform_growth",
            &format!(
                "turned {} items into {}, at most {items} are allowed",
                before.0, after.0
            ),
        ));
    }
    let bytes = before
        .1
        .max(TRANSFORM_FLOOR_BYTES)
        .saturating_mul(b.transform_growth);
    if after.1 > bytes {
        return Err(stats.refuse(
            plugin,
            "transform_growth",
            &format!(
                "turned {} bytes into {}, at most {bytes} are allowed",
                before.1, after.1
            ),
        ));
    }
    Ok(())
}
