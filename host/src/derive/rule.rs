//! One derivation rule: an event type and field mapped to an instrument.

use std::sync::Arc;

use crate::config::{RuleConfig, When};
use crate::metrics::{Descriptor, Instrument, Registry};
use crate::model::attributes::ValueRef;
use crate::model::event::{AnyValue, Event};
use crate::model::metric::InstrumentKind;

/// The most attributes one rule may attach to a series.
pub const MAX_RULE_ATTRIBUTES: usize = 16;

/// The instrumentation scope of every derived instrument.
pub const DERIVE_SCOPE: &str = "wasmtel.derive";

/// The OpenTelemetry SDK's default explicit histogram bounds.
pub const DEFAULT_BUCKETS: &[f64] = &[
    0.0, 5.0, 10.0, 25.0, 50.0, 75.0, 100.0, 250.0, 500.0, 750.0, 1000.0, 2500.0, 5000.0, 7500.0,
    10000.0,
];

/// A rule that cannot be built, naming the rule and the problem.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    /// An attribute source is not an event field.
    #[error(
        "rule `{rule}`: attribute `{key}` reads `{source_name}`, which is not an event field (model, engine, device_id, org_id, request_id, stream, error, event_type, attributes.<key>)"
    )]
    UnknownSource {
        /// The rule's instrument name.
        rule: String,
        /// The attribute key.
        key: String,
        /// The unknown source.
        source_name: String,
    },
    /// Too many attributes.
    #[error("rule `{rule}`: {count} attributes, at most {MAX_RULE_ATTRIBUTES} are allowed")]
    TooManyAttributes {
        /// The rule's instrument name.
        rule: String,
        /// How many were given.
        count: usize,
    },
    /// Bucket bounds are not finite and strictly increasing.
    #[error("rule `{0}`: buckets must be finite and strictly increasing")]
    BadBuckets(String),
    /// The scale is not a finite number.
    #[error("rule `{0}`: scale must be a finite number")]
    BadScale(String),
    /// The name is empty.
    #[error("a rule for event type `{0}` has an empty name")]
    EmptyName(String),
    /// A span rule's name is empty.
    #[error("a span rule has an empty name")]
    EmptySpanRuleName,
    /// A series rule's name is empty.
    #[error("a series rule has an empty name")]
    EmptySeriesRuleName,
    /// A series rule reads no metric.
    #[error("series rule `{0}`: `metric` names no scraped metric")]
    NoSeriesMetric(String),
    /// A span rule's source is not a span field.
    #[error("span rule `{rule}`: `{key}` reads `{source_name}`, which is not {expected}")]
    UnknownSpanSource {
        /// The rule's instrument name.
        rule: String,
        /// The attribute key, or `value`.
        key: String,
        /// The unknown source.
        source_name: String,
        /// What it may read.
        expected: &'static str,
    },
    /// Observable instruments take callbacks, not events.
    #[error(
        "rule `{0}`: observable instruments are fed by callbacks, not events; use counter, up_down_counter, gauge or histogram"
    )]
    Observable(String),
    /// A summary is only ever received, never recorded.
    #[error(
        "rule `{0}`: a summary is only received, never recorded; use counter, up_down_counter, gauge or histogram"
    )]
    Summary(String),
    /// Another rule registered the name differently.
    #[error(transparent)]
    Conflict(#[from] crate::metrics::ConflictError),
}

/// Where an attribute's value comes from.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Source {
    Model,
    Engine,
    DeviceId,
    OrgId,
    RequestId,
    Stream,
    Error,
    EventType,
    Attribute(Box<str>),
    Constant(Box<str>),
}

impl Source {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "model" => Source::Model,
            "engine" => Source::Engine,
            "device_id" => Source::DeviceId,
            "org_id" => Source::OrgId,
            "request_id" => Source::RequestId,
            "stream" => Source::Stream,
            "error" => Source::Error,
            "event_type" => Source::EventType,
            _ => Source::Attribute(
                name.strip_prefix("attributes.")
                    .filter(|k| !k.is_empty())?
                    .into(),
            ),
        })
    }

    pub(super) fn resolve<'a>(&'a self, event: &'a Event<'_>) -> Option<ValueRef<'a>> {
        let text = |t: &'a Option<crate::model::event::Text<'_>>| t.as_deref().map(ValueRef::Str);
        match self {
            Source::Model => text(&event.model),
            Source::Engine => text(&event.engine),
            Source::DeviceId => text(&event.device_id),
            Source::OrgId => text(&event.org_id),
            Source::RequestId => text(&event.request_id),
            Source::Error => text(&event.error),
            Source::Stream => event.stream.map(ValueRef::Bool),
            Source::EventType => Some(ValueRef::Str(&event.event_type)),
            Source::Constant(v) => Some(ValueRef::Str(v)),
            Source::Attribute(key) => match event.attributes.get(key)? {
                AnyValue::Str(s) => Some(ValueRef::Str(s)),
                AnyValue::Bool(b) => Some(ValueRef::Bool(*b)),
                AnyValue::Int(i) => Some(ValueRef::Int(*i)),
                AnyValue::Double(d) => Some(ValueRef::Double(*d)),
                AnyValue::Array(_) | AnyValue::Map(_) | AnyValue::Null => None,
            },
        }
    }
}

/// A series attribute of a rule: its key and where its value comes from.
pub(crate) type Keyed<S> = (Box<str>, S);

/// A rule's series attributes sorted by key, the first given of a key kept; refused past
/// [`MAX_RULE_ATTRIBUTES`].
pub(crate) fn by_key<S>(
    rule: &str,
    mut attributes: Vec<Keyed<S>>,
) -> Result<Box<[Keyed<S>]>, RuleError> {
    attributes.sort_by(|a, b| a.0.cmp(&b.0));
    attributes.dedup_by(|later, earlier| later.0 == earlier.0);
    if attributes.len() > MAX_RULE_ATTRIBUTES {
        return Err(RuleError::TooManyAttributes {
            rule: rule.to_owned(),
            count: attributes.len(),
        });
    }
    Ok(attributes.into_boxed_slice())
}

/// The instrument a rule records into, as configured.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Target<'a> {
    /// The instrument name.
    pub(crate) name: &'a str,
    /// Its kind.
    pub(crate) kind: InstrumentKind,
    /// Its unit.
    pub(crate) unit: &'a str,
    /// Its description.
    pub(crate) description: &'a str,
    /// The factor applied to every value.
    pub(crate) scale: f64,
    /// Histogram bounds; `None` for the default ones.
    pub(crate) buckets: Option<&'a [f64]>,
}

impl Target<'_> {
    /// Refuses a scale that is not finite, an observable kind or a summary, and bounds that are not finite
    /// and strictly increasing.
    pub(crate) fn check(&self) -> Result<(), RuleError> {
        let rule = || self.name.to_owned();
        if !self.scale.is_finite() {
            return Err(RuleError::BadScale(rule()));
        }
        if self.kind.is_observable() {
            return Err(RuleError::Observable(rule()));
        }
        if self.kind == InstrumentKind::Summary {
            return Err(RuleError::Summary(rule()));
        }
        let buckets = self.buckets.unwrap_or(DEFAULT_BUCKETS);
        if buckets.iter().any(|b| !b.is_finite()) || buckets.windows(2).any(|w| w[0] >= w[1]) {
            return Err(RuleError::BadBuckets(rule()));
        }
        Ok(())
    }

    /// Registers the instrument in `registry`, under the derivation scope.
    pub(crate) fn register(&self, registry: &Registry) -> Result<Arc<Instrument>, RuleError> {
        Ok(registry.instrument(
            Descriptor {
                name: self.name.to_owned(),
                unit: self.unit.to_owned(),
                description: self.description.to_owned(),
                kind: self.kind,
                scope: DERIVE_SCOPE.into(),
            },
            self.buckets.unwrap_or(DEFAULT_BUCKETS),
        )?)
    }
}

/// A compiled rule, bound to its instrument.
#[derive(Debug)]
pub struct Rule {
    field: Option<Box<str>>,
    scale: f64,
    when: When,
    attributes: Box<[(Box<str>, Source)]>,
    instrument: Arc<Instrument>,
}

impl Rule {
    /// Validates `config` and registers its instrument.
    pub fn build(config: &RuleConfig, registry: &Registry) -> Result<Self, RuleError> {
        let rule = config.name.clone();
        if rule.is_empty() {
            return Err(RuleError::EmptyName(config.event_type.clone()));
        }
        let target = Target {
            name: &config.name,
            kind: config.instrument,
            unit: &config.unit,
            description: &config.description,
            scale: config.scale,
            buckets: config.buckets.as_deref(),
        };
        target.check()?;
        let mut attributes = Vec::new();
        for (key, source_name) in &config.attributes {
            let source = Source::parse(source_name).ok_or_else(|| RuleError::UnknownSource {
                rule: rule.clone(),
                key: key.clone(),
                source_name: source_name.clone(),
            })?;
            attributes.push((key.as_str().into(), source));
        }
        for (key, value) in &config.constant_attributes {
            attributes.push((key.as_str().into(), Source::Constant(value.as_str().into())));
        }
        let attributes = by_key(&rule, attributes)?;
        let instrument = target.register(registry)?;
        Ok(Self {
            field: config.field.as_deref().map(Into::into),
            scale: config.scale,
            when: config.when,
            attributes,
            instrument,
        })
    }

    /// Records this rule's measurement for `event`, if the event carries it.
    pub fn apply(&self, event: &Event<'_>) {
        if let Some(value) = self.value(event) {
            self.record(event, value);
        }
    }

    /// The measurement this rule takes of `event`, if the event carries it.
    pub(super) fn value(&self, event: &Event<'_>) -> Option<f64> {
        let failed = event.error.is_some();
        match self.when {
            When::Success if failed => None,
            When::Error if !failed => None,
            _ => match &self.field {
                None => Some(1.0),
                Some(field) => event.metrics.get(field).map(|v| v * self.scale),
            },
        }
    }

    /// Records `value`, this rule's measurement of `event`, into the series of its attributes.
    pub(super) fn record(&self, event: &Event<'_>, value: f64) {
        let mut buf = [("", ValueRef::Bool(false)); MAX_RULE_ATTRIBUTES];
        let attrs = self.attributes(event, &mut buf);
        self.instrument.record_traced(attrs, value, event.trace());
    }

    /// The attributes of `event`'s series, sorted by key, written into `buf`.
    pub(super) fn attributes<'a>(
        &'a self,
        event: &'a Event<'_>,
        buf: &'a mut Attrs<'a>,
    ) -> &'a [(&'a str, ValueRef<'a>)] {
        let mut n = 0;
        for (key, source) in &*self.attributes {
            if let Some(v) = source.resolve(event) {
                buf[n] = (key, v);
                n += 1;
            }
        }
        &buf[..n]
    }

    /// Where each of its attributes' values comes from, in key order.
    pub(super) fn sources(&self) -> impl Iterator<Item = &Source> {
        self.attributes.iter().map(|(_, source)| source)
    }

    /// The instrument it records into.
    pub(super) fn instrument(&self) -> &Arc<Instrument> {
        &self.instrument
    }
}

/// Room for the attributes of one rule's series.
pub(super) type Attrs<'a> = [(&'a str, ValueRef<'a>); MAX_RULE_ATTRIBUTES];

#[cfg(test)]
mod tests {
    use super::*;

    fn build(toml: &str) -> Result<Rule, RuleError> {
        let config: RuleConfig = toml::from_str(toml).expect("rule parses");
        Rule::build(&config, &Registry::new(10))
    }

    #[test]
    fn invalid_rules_are_refused_with_their_name() {
        let err = |toml: &str| build(toml).expect_err("refused").to_string();
        let base = "event_type = \"e\"\nname = \"n\"\n";
        assert_eq!(
            err(&format!("{base}instrument = \"observable_gauge\"")),
            "rule `n`: observable instruments are fed by callbacks, not events; use counter, up_down_counter, gauge or histogram"
        );
        assert_eq!(
            err(&format!("{base}instrument = \"summary\"")),
            "rule `n`: a summary is only received, never recorded; use counter, up_down_counter, gauge or histogram"
        );
        assert_eq!(
            err(&format!(
                "{base}instrument = \"histogram\"\nbuckets = [2, 1]"
            )),
            "rule `n`: buckets must be finite and strictly increasing"
        );
        assert_eq!(
            err(&format!(
                "{base}instrument = \"counter\"\nattributes = {{ m = \"modle\" }}"
            )),
            "rule `n`: attribute `m` reads `modle`, which is not an event field (model, engine, device_id, org_id, request_id, stream, error, event_type, attributes.<key>)"
        );
        assert_eq!(
            err("event_type = \"e\"\nname = \"\"\ninstrument = \"counter\""),
            "a rule for event type `e` has an empty name"
        );
        assert!(build(&format!("{base}instrument = \"up_down_counter\"")).is_ok());
    }
}
