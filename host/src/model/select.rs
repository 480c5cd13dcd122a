//! Selection: which data an integration receives, by resource attributes, metric names and
//! signal, written as `*` globs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Signal;
use super::attributes::{AttributeSet, ValueRef};

/// One pattern or a list of them (any of which may match), each exact or with `*` globs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "OneOrMany", into = "OneOrMany")]
pub struct Patterns(pub Vec<String>);

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl From<OneOrMany> for Patterns {
    fn from(given: OneOrMany) -> Self {
        match given {
            OneOrMany::One(one) => Self(vec![one]),
            OneOrMany::Many(many) => Self(many),
        }
    }
}

impl From<Patterns> for OneOrMany {
    fn from(patterns: Patterns) -> Self {
        match <[String; 1]>::try_from(patterns.0) {
            Ok([one]) => OneOrMany::One(one),
            Err(many) => OneOrMany::Many(many),
        }
    }
}

impl Patterns {
    /// Whether any pattern matches `text`.
    pub fn any(&self, text: &str) -> bool {
        self.0.iter().any(|p| glob(p, text))
    }

    /// Whether there is no pattern.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Whether `text` matches `pattern`, where `*` stands for any run of characters.
pub fn glob(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let mut parts: Vec<&str> = parts.collect();
    let Some(last) = parts.pop() else {
        return rest.is_empty(); // no `*`: exact
    };
    for part in parts {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// What an integration receives: data whose resource has every listed attribute with a
/// matching value, of the listed metric names (none listed: all) less the excluded ones, of the
/// listed signals (none listed: all). The default selects everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Select {
    /// Resource attributes that must be present, each with a value one of its patterns matches.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub resource: BTreeMap<String, Patterns>,
    /// Metric names taken (none: every name).
    #[serde(skip_serializing_if = "Patterns::is_empty")]
    pub metrics: Patterns,
    /// Metric names left out, over `metrics`.
    #[serde(skip_serializing_if = "Patterns::is_empty")]
    pub exclude_metrics: Patterns,
    /// Signals taken (none: every signal).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub signals: Vec<Signal>,
}

impl Select {
    /// Whether it selects everything.
    pub fn is_all(&self) -> bool {
        *self == Self::default()
    }

    /// Whether data of a resource with `attributes` is selected.
    pub fn resource(&self, attributes: &AttributeSet) -> bool {
        self.resource
            .iter()
            .all(|(key, patterns)| match attributes.get(key) {
                Some(ValueRef::Str(text)) => patterns.any(text),
                Some(other) => patterns.any(&other.to_string()),
                None => false,
            })
    }

    /// Whether the metric named `name` is selected.
    pub fn metric(&self, name: &str) -> bool {
        (self.metrics.is_empty() || self.metrics.any(name)) && !self.exclude_metrics.any(name)
    }

    /// Whether every metric is selected (so no name need be checked).
    pub fn every_metric(&self) -> bool {
        self.metrics.is_empty() && self.exclude_metrics.is_empty()
    }

    /// Whether `signal` is selected.
    pub fn signal(&self, signal: Signal) -> bool {
        self.signals.is_empty() || self.signals.contains(&signal)
    }

    /// Requires resource attribute `key` to be exactly `value` (a tenant's integration); `Err`
    /// when the selection already asks for another value of `key`.
    pub fn pin(&mut self, key: &str, value: &str) -> Result<(), String> {
        match self.resource.get(key) {
            Some(given) if given.0.iter().any(|p| p != value) => Err(format!(
                "`resource.{key}` is always `{value}` here; it cannot select {:?}",
                given.0
            )),
            _ => {
                self.resource
                    .insert(key.to_owned(), Patterns(vec![value.to_owned()]));
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::attributes::Value;
    use std::sync::Arc;

    #[test]
    fn globs_match_exact_prefix_suffix_and_inner_runs() {
        assert!(glob("team-a", "team-a") && !glob("team-a", "team-ab"));
        assert!(glob("prod-*", "prod-eu") && glob("prod-*", "prod-") && !glob("prod-*", "pro"));
        assert!(glob("*-eu", "prod-eu") && !glob("*-eu", "prod-us"));
        assert!(glob("a*b*c", "axxbyyc") && !glob("a*b*c", "axxcyyb"));
        assert!(glob("*", "") && glob("ab*ab", "abab") && !glob("ab*ab", "aba"));
    }

    #[test]
    fn a_selection_needs_every_key_any_pattern_and_reads_one_or_many() {
        let select: Select = toml::from_str(
            r#"resource = { "service.namespace" = "team-a", "k8s.namespace.name" = ["prod-*", "ml"] }
               exclude_metrics = ["gen_ai.*"]
               signals = ["metrics"]"#,
        )
        .expect("parses");
        let set = |pairs: &[(&str, &str)]| {
            AttributeSet::from_pairs(
                pairs
                    .iter()
                    .map(|(k, v)| (Arc::from(*k), Value::Str(Arc::from(*v))))
                    .collect(),
            )
        };
        let ns = "service.namespace";
        assert!(select.resource(&set(&[(ns, "team-a"), ("k8s.namespace.name", "ml")])));
        assert!(select.resource(&set(&[(ns, "team-a"), ("k8s.namespace.name", "prod-1")])));
        assert!(!select.resource(&set(&[(ns, "team-b"), ("k8s.namespace.name", "ml")])));
        assert!(!select.resource(&set(&[(ns, "team-a")])), "a key missing");
        assert!(select.metric("gpu.utilization") && !select.metric("gen_ai.x"));
        assert!(select.signal(Signal::Metrics) && !select.signal(Signal::Logs));
        assert!(Select::default().is_all() && !select.is_all());
        let back: Select = toml::from_str(&toml::to_string(&select).expect("writes")).expect("");
        assert_eq!(back, select);
    }

    #[test]
    fn a_pinned_key_cannot_be_widened() {
        let mut select = Select::default();
        select.pin("org", "acme").expect("pinned");
        assert_eq!(select.resource["org"], Patterns(vec!["acme".into()]));
        let mut wide: Select = toml::from_str(r#"resource = { org = "*" }"#).expect("parses");
        let error = wide.pin("org", "acme").expect_err("widened");
        assert!(error.contains("always `acme`"), "{error}");
    }
}
