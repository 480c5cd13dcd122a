//! Derivation: the rules that turn inference events, spans and scraped series into metrics.

mod batch;
pub mod forward;
pub mod genai;
pub mod rule;
pub mod series;
pub mod servers;
pub mod span;

use std::sync::{Arc, Mutex};

use crate::config::{DeriveConfig, RuleSet};
use crate::metrics::Registry;
use forward::Forward;
use rule::Source;
pub use rule::{Rule, RuleError};

/// The compiled rules, grouped by the instrument they record into.
#[derive(Debug)]
pub struct Deriver {
    /// The event types rules match.
    types: Vec<Box<str>>,
    /// Every rule, with the index in `types` of the type it matches (`None`: any type).
    rules: Vec<(Option<usize>, Rule)>,
    /// Each instrument's rules by index: those matching one type first, then those matching
    /// any (the order in which they apply to an event), each in the order configured.
    instruments: Vec<Vec<usize>>,
    /// The distinct event values rules read (their constants aside).
    sources: Vec<Source>,
    /// The distinct lists of values (indices in `sources`) that key rules' series.
    keys: Vec<Box<[usize]>>,
    /// For each rule, the index in `keys` of the values its series are keyed by.
    keyed_by: Vec<usize>,
    forward: Option<Forward>,
    /// Event values and series remembered from earlier batches.
    memory: Mutex<batch::Memory>,
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
            types: Vec::new(),
            rules: Vec::new(),
            instruments: Vec::new(),
            sources: Vec::new(),
            keys: Vec::new(),
            keyed_by: Vec::new(),
            memory: Mutex::default(),
            forward: (config.rule_set == RuleSet::Forward)
                .then(|| Forward::new(&config.forward_prefix, registry.clone())),
        };
        for rc in &configs {
            let rule = Rule::build(rc, registry)?;
            let event_type = (rc.event_type != "*").then(|| {
                deriver
                    .types
                    .iter()
                    .position(|t| **t == *rc.event_type)
                    .unwrap_or_else(|| {
                        deriver.types.push(rc.event_type.as_str().into());
                        deriver.types.len() - 1
                    })
            });
            let key: Box<[usize]> = rule
                .sources()
                .filter(|source| !matches!(source, Source::Constant(_)))
                .map(|source| {
                    deriver
                        .sources
                        .iter()
                        .position(|s| s == source)
                        .unwrap_or_else(|| {
                            deriver.sources.push(source.clone());
                            deriver.sources.len() - 1
                        })
                })
                .collect();
            let keyed_by = deriver
                .keys
                .iter()
                .position(|k| *k == key)
                .unwrap_or_else(|| {
                    deriver.keys.push(key);
                    deriver.keys.len() - 1
                });
            deriver.keyed_by.push(keyed_by);
            deriver.rules.push((event_type, rule));
        }
        for index in (0..deriver.rules.len())
            .filter(|i| deriver.rules[*i].0.is_some())
            .chain((0..deriver.rules.len()).filter(|i| deriver.rules[*i].0.is_none()))
        {
            let instrument = deriver.rules[index].1.instrument();
            match deriver
                .instruments
                .iter_mut()
                .find(|rules| Arc::ptr_eq(deriver.rules[rules[0]].1.instrument(), instrument))
            {
                Some(rules) => rules.push(index),
                None => deriver.instruments.push(vec![index]),
            }
        }
        Ok(deriver)
    }
}
