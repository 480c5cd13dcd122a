//! Derivation: the rules that turn inference events into metric measurements.

pub mod forward;
pub mod genai;
pub mod rule;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::event::Event;
use crate::metrics::Registry;
use forward::Forward;
pub use rule::{Rule, RuleConfig, RuleError, When};

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

/// The compiled rules, grouped by the event type they match.
#[derive(Debug)]
pub struct Deriver {
    by_type: Vec<(Box<str>, Vec<Rule>)>,
    any_type: Vec<Rule>,
    forward: Option<Forward>,
}

impl Deriver {
    /// Compiles the configured rules, registering their instruments in `registry`.
    pub fn new(config: &DeriveConfig, registry: &Arc<Registry>) -> Result<Self, RuleError> {
        let mut configs = match config.rule_set {
            RuleSet::Genai => genai::rules(),
            RuleSet::Forward | RuleSet::None => Vec::new(),
        };
        configs.extend(config.rules.iter().cloned());
        let mut deriver = Self {
            by_type: Vec::new(),
            any_type: Vec::new(),
            forward: (config.rule_set == RuleSet::Forward)
                .then(|| Forward::new(&config.forward_prefix, registry.clone())),
        };
        for rc in &configs {
            let rule = Rule::build(rc, registry)?;
            if rc.event_type == "*" {
                deriver.any_type.push(rule);
            } else if let Some((_, rules)) = deriver
                .by_type
                .iter_mut()
                .find(|(t, _)| **t == *rc.event_type)
            {
                rules.push(rule);
            } else {
                deriver
                    .by_type
                    .push((rc.event_type.as_str().into(), vec![rule]));
            }
        }
        Ok(deriver)
    }

    /// Records every measurement the rules derive from `event`.
    pub fn apply(&self, event: &Event<'_>) {
        if let Some((_, rules)) = self.by_type.iter().find(|(t, _)| **t == *event.event_type) {
            rules.iter().for_each(|r| r.apply(event));
        }
        self.any_type.iter().for_each(|r| r.apply(event));
        if let Some(forward) = &self.forward {
            forward.apply(event);
        }
    }
}
