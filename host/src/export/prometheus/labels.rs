//! Label sets of the text formats: `k="v",…` for a series, written once and shared by its lines.

use wasmtel_naming as naming;

use crate::model::attributes::{AttributeSet, ValueRef};

/// Renders series' labels, remembering the label names of the last attribute keys seen (the
/// series of one instrument nearly always share their keys).
#[derive(Debug, Default)]
pub(super) struct Labels {
    /// Attribute key → label name, for the keys of the last series.
    names: Vec<(String, String)>,
    /// Whether two of those keys map to one label name.
    collide: bool,
    /// The rendered labels of the current series.
    text: String,
}

impl Labels {
    /// Renders `attrs`, then `tail` (labels rendered by [`fixed`]); returns the text, without braces.
    pub(super) fn render(&mut self, attrs: &AttributeSet, tail: &str) -> &str {
        self.text.clear();
        self.learn(attrs);
        if self.collide {
            joined(&mut self.text, attrs);
        } else {
            for (i, ((_, v), (_, name))) in attrs.iter().zip(&self.names).enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                pair(&mut self.text, name, v);
            }
        }
        if !tail.is_empty() {
            if !self.text.is_empty() {
                self.text.push(',');
            }
            self.text.push_str(tail);
        }
        &self.text
    }

    /// Makes `names` hold the label names of `attrs`' keys.
    fn learn(&mut self, attrs: &AttributeSet) {
        let mut keys = attrs.iter().map(|(k, _)| k);
        let known = attrs.iter().count() == self.names.len()
            && self
                .names
                .iter()
                .all(|(raw, _)| keys.next() == Some(raw.as_str()));
        if known {
            return;
        }
        self.names = attrs
            .iter()
            .map(|(k, _)| (k.to_owned(), naming::label_name(k)))
            .collect();
        self.collide = self
            .names
            .iter()
            .enumerate()
            .any(|(i, (_, a))| self.names[..i].iter().any(|(_, b)| a == b));
    }
}

/// Renders labels shared by many series (`otel_scope_name`, `job`, `instance`), leaving out empty values.
pub(super) fn fixed(pairs: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (name, value) in pairs.iter().filter(|(_, v)| !v.is_empty()) {
        if !out.is_empty() {
            out.push(',');
        }
        pair(&mut out, name, ValueRef::Str(value));
    }
    out
}

/// Writes `k="v",…` for keys that sanitize to one label name: their values joined by `;`.
fn joined(out: &mut String, attrs: &AttributeSet) {
    let mut labels: Vec<(String, String)> = Vec::new();
    for (k, v) in attrs.iter() {
        let key = naming::label_name(k);
        let value = v.to_string();
        match labels.iter_mut().find(|(lk, _)| *lk == key) {
            Some((_, existing)) => {
                existing.push(';');
                existing.push_str(&value);
            }
            None => labels.push((key, value)),
        }
    }
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        pair(out, k, ValueRef::Str(v));
    }
}

/// One `name="value"` pair, the value escaped.
fn pair(out: &mut String, name: &str, value: ValueRef<'_>) {
    out.push_str(name);
    out.push_str("=\"");
    match value {
        ValueRef::Str(s) => escape(out, s),
        ValueRef::Int(i) => out.push_str(itoa::Buffer::new().format(i)),
        ValueRef::Bool(b) => out.push_str(if b { "true" } else { "false" }),
        ValueRef::Double(d) => escape(out, &d.to_string()),
    }
    out.push('"');
}

/// Escapes a label value: backslash, double quote and newline.
fn escape(out: &mut String, v: &str) {
    if !v.bytes().any(|b| matches!(b, b'\\' | b'"' | b'\n')) {
        out.push_str(v);
        return;
    }
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::model::attributes::Value;

    fn set(pairs: Vec<(&str, Value)>) -> AttributeSet {
        AttributeSet::from_pairs(pairs.into_iter().map(|(k, v)| (Arc::from(k), v)).collect())
    }

    #[test]
    fn colliding_label_names_join_values() {
        let mut labels = Labels::default();
        let colliding = set(vec![("a.b", Value::Int(1)), ("a_b", Value::Int(2))]);
        assert_eq!(
            labels.render(&colliding, &fixed(&[("otel_scope_name", "s")])),
            "a_b=\"1;2\",otel_scope_name=\"s\""
        );
        // The next series with other keys is rendered with its own names.
        let plain = set(vec![("gen_ai.model", Value::Str("m\"1\n".into()))]);
        assert_eq!(labels.render(&plain, ""), "gen_ai_model=\"m\\\"1\\n\"");
        let typed = set(vec![
            ("b", Value::Bool(true)),
            ("d", Value::Double(0.5)),
            ("i", Value::Int(-7)),
        ]);
        assert_eq!(
            labels.render(&typed, "otel_scope_name=\"s\""),
            "b=\"true\",d=\"0.5\",i=\"-7\",otel_scope_name=\"s\""
        );
        assert_eq!(
            labels.render(&AttributeSet::empty(), &fixed(&[("job", "")])),
            ""
        );
    }
}
