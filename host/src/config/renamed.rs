//! Keys renamed since 0.1: a file that still spells one the old way is read as if it used the
//! new spelling, with one warning per key naming the new one, for at least one minor version.

use std::borrow::Cow;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// Every renamed key: its old and its new dotted path from the root, `[]` standing for each
/// entry of an array of tables.
pub(crate) const RENAMED: &[(&str, &str)] = &[
    ("otlp.interval", "otlp.delivery.interval"),
    ("otlp.timeout", "otlp.delivery.timeout"),
    ("otlp.metrics_queue", "otlp.delivery.metrics_queue"),
    ("otlp.logs_queue", "otlp.delivery.logs_queue"),
    ("otlp.logs_batch", "otlp.delivery.logs_batch"),
    ("otlp.retry", "otlp.delivery.retry"),
    ("otlp.shutdown_timeout", "shutdown_timeout"),
    ("exporters[].interval", "exporters[].delivery.interval"),
    ("exporters[].queue", "exporters[].delivery.logs_queue"),
];

/// The minor version that stops reading the old spellings.
const UNTIL: &str = "0.3";

/// One old spelling found in a file, read under its new one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Renamed {
    /// The line it is on.
    pub line: usize,
    /// The key as the file spells it (`exporters[1].interval`).
    pub old: String,
    /// The key it is read as (`exporters[1].delivery.interval`).
    pub new: String,
}

impl std::fmt::Display for Renamed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "line {}: `{}` is now spelled `{}`; it is read as such until wasmtel {UNTIL}, rename it",
            self.line, self.old, self.new
        )
    }
}

/// The line `offset` is on in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Moves every old spelling in `root` to its new place; a key set under both spellings is an
/// error naming both.
pub(crate) fn migrate(root: &mut DeTable<'_>, text: &str) -> Result<Vec<Renamed>, String> {
    let mut found = Vec::new();
    for (old, new) in RENAMED {
        let old: Vec<&str> = old.split('.').collect();
        let new: Vec<&str> = new.split('.').collect();
        let mut taken = Vec::new();
        take(root, &old, Vec::new(), &mut taken);
        for (indices, span, value) in taken {
            let renamed = Renamed {
                line: line_of(text, span.start),
                old: spell(&old, &indices),
                new: spell(&new, &indices),
            };
            put(root, &new, &indices, span, value, &renamed)?;
            found.push(renamed);
        }
    }
    found.sort_by_key(|r| r.line);
    Ok(found)
}

/// `path` with each `[]` replaced by the next of `indices` (`exporters[1].interval`).
fn spell(path: &[&str], indices: &[usize]) -> String {
    let mut indices = indices.iter();
    path.iter()
        .map(|part| match part.strip_suffix("[]") {
            Some(key) => match indices.next() {
                Some(i) => format!("{key}[{i}]"),
                None => (*part).to_owned(),
            },
            None => (*part).to_owned(),
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// A value taken out of the file: the array indices on its way, its key's span, the value.
type Taken<'i> = (Vec<usize>, std::ops::Range<usize>, Spanned<DeValue<'i>>);

/// Removes every value at `path` under `table`, noting the array indices on the way.
fn take<'i>(table: &mut DeTable<'i>, path: &[&str], indices: Vec<usize>, out: &mut Vec<Taken<'i>>) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    if rest.is_empty() {
        if let Some((key, value)) = table.remove_entry(*first) {
            out.push((indices, key.span(), value));
        }
        return;
    }
    let (key, each) = match first.strip_suffix("[]") {
        Some(key) => (key, true),
        None => (*first, false),
    };
    let Some(child) = table.get_mut(key) else {
        return;
    };
    match child.get_mut() {
        DeValue::Table(inner) if !each => take(inner, rest, indices, out),
        DeValue::Array(entries) if each => {
            for (i, entry) in entries.iter_mut().enumerate() {
                if let DeValue::Table(inner) = entry.get_mut() {
                    let mut at = indices.clone();
                    at.push(i);
                    take(inner, rest, at, out);
                }
            }
        }
        // Not what the file format allows here: deserializing names the problem.
        _ => {}
    }
}

/// Puts `value` at `path` under `table` (each `[]` the entry of the next of `indices`),
/// creating tables on the way; a value already there is an error naming both spellings.
fn put<'i>(
    table: &mut DeTable<'i>,
    path: &[&str],
    indices: &[usize],
    span: std::ops::Range<usize>,
    value: Spanned<DeValue<'i>>,
    renamed: &Renamed,
) -> Result<(), String> {
    let both = || {
        format!(
            "line {}: `{}` and `{}` are both set; keep `{}` only",
            renamed.line, renamed.old, renamed.new, renamed.new
        )
    };
    let Some((first, rest)) = path.split_first() else {
        return Ok(());
    };
    if rest.is_empty() {
        if table.contains_key(*first) {
            return Err(both());
        }
        table.insert(Spanned::new(span, Cow::Owned((*first).to_owned())), value);
        return Ok(());
    }
    if let Some(key) = first.strip_suffix("[]") {
        let (i, indices) = indices.split_first().ok_or_else(both)?;
        let entry = match table.get_mut(key).map(Spanned::get_mut) {
            Some(DeValue::Array(entries)) => entries.get_mut(*i).map(Spanned::get_mut),
            _ => None,
        };
        return match entry {
            Some(DeValue::Table(inner)) => put(inner, rest, indices, span, value, renamed),
            _ => Err(both()),
        };
    }
    let key = Spanned::new(span.clone(), Cow::Owned((*first).to_owned()));
    let child = table
        .entry(key)
        .or_insert_with(|| Spanned::new(span.clone(), DeValue::Table(DeTable::default())));
    match child.get_mut() {
        DeValue::Table(inner) => put(inner, rest, indices, span, value, renamed),
        _ => Err(both()),
    }
}
