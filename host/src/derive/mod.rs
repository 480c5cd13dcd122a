//! Derivation: the rules that turn inference events, spans and scraped series into metrics.

pub mod forward;
pub mod genai;
pub mod rule;
pub mod series;
pub mod servers;
pub mod span;

use std::sync::Arc;

use crate::config::{DeriveConfig, RuleSet};
use crate::metrics::Registry;
use crate::model::event::Event;
use forward::Forward;
pub use rule::{Rule, RuleError};

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
