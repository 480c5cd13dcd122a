//! `[derive]`: the rules that turn inference events into measurements.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::metric::InstrumentKind;

/// Which built-in rule set runs before the configured rules.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleSet {
    /// OpenTelemetry GenAI semantic conventions (see [`genai`]).
    #[default]
    Genai,
    /// Every numeric field becomes a gauge `<prefix>.<field>`.
    Forward,
    /// No built-in rules; only `[[derive.rules]]`.
    None,
}

/// The `[derive]` configuration section.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeriveConfig {
    /// The built-in rule set.
    pub rule_set: RuleSet,
    /// The gauge name prefix of the forwarding rule set.
    pub forward_prefix: String,
    /// Extra rules, applied after the built-in set.
    pub rules: Vec<RuleConfig>,
}

impl Default for DeriveConfig {
    fn default() -> Self {
        Self {
            rule_set: RuleSet::Genai,
            forward_prefix: "inference".into(),
            rules: Vec::new(),
        }
    }
}

/// Which events a rule applies to, by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum When {
    /// Every matching event.
    #[default]
    Always,
    /// Only events without an `error`.
    Success,
    /// Only events with an `error`.
    Error,
}

/// A rule as written in the configuration file (`[[derive.rules]]`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// The event type the rule applies to; `*` matches every type.
    pub event_type: String,
    /// The `metrics` field to record; absent, the rule records 1 per event (a count).
    #[serde(default)]
    pub field: Option<String>,
    /// The instrument kind.
    pub instrument: InstrumentKind,
    /// The instrument name.
    pub name: String,
    /// The UCUM unit.
    #[serde(default)]
    pub unit: String,
    /// The description.
    #[serde(default)]
    pub description: String,
    /// A factor applied to the field's value (e.g. 0.001 for ms → s).
    #[serde(default = "one")]
    pub scale: f64,
    /// Histogram bucket bounds; absent, the OpenTelemetry default bounds.
    #[serde(default)]
    pub buckets: Option<Vec<f64>>,
    /// Series attributes: attribute key → event field (`model`, `engine`, `device_id`,
    /// `org_id`, `request_id`, `stream`, `error`, `event_type`, or `attributes.<key>`).
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// Series attributes with a fixed value: attribute key → value.
    #[serde(default)]
    pub constant_attributes: BTreeMap<String, String>,
    /// Which outcomes the rule records.
    #[serde(default)]
    pub when: When,
}

fn one() -> f64 {
    1.0
}
