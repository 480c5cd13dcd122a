//! Span rules: received spans, read on the wire without being decoded, turned into
//! measurements in the registry of their resource, each carrying its span as exemplar.

use std::sync::{Arc, PoisonError, RwLock, Weak};

use super::rule::{Keyed, MAX_RULE_ATTRIBUTES, RuleError, Target, by_key};
use crate::config::{DeriveConfig, SpanRuleConfig, SpanRuleSet, When};
use crate::metrics::{Instrument, Registries, Registry};
use crate::model::attributes::ValueRef;
use crate::model::event::TraceContext;
use crate::model::record::Record;
use crate::model::wire::{Fields, Value as Wire};
use crate::tenancy::Tenancy;

/// OTLP's `STATUS_CODE_ERROR`.
const STATUS_ERROR: u64 = 2;

/// What a span rule may record, as the configuration names it.
const VALUES: &str = "duration, time_per_output_token or attributes.<key>";
/// What a span rule's attribute may read, as the configuration names it.
const SOURCES: &str = "name, kind, error or attributes.<key>";

/// The attribute keys the span rules read, each with its slot in a [`SpanView`]: only these
/// attributes of a span are decoded.
#[derive(Debug, Default)]
struct Keys(hashbrown::HashMap<Box<[u8]>, usize>);

/// Slots of the keys every rule set may read: what `error` and `time_per_output_token` use.
const ERROR_TYPE: usize = 0;
const TIME_TO_FIRST_TOKEN: usize = 1;
const E2E: usize = 2;
const OUTPUT_TOKENS: usize = 3;
const COMPLETION_TOKENS: usize = 4;
const FIXED: [&str; 5] = [
    "error.type",
    "gen_ai.latency.time_to_first_token",
    "gen_ai.latency.e2e",
    "gen_ai.usage.output_tokens",
    "gen_ai.usage.completion_tokens",
];

impl Keys {
    fn new() -> Self {
        let mut keys = Self::default();
        for key in FIXED {
            keys.slot(key);
        }
        keys
    }

    /// The slot of `key`, given one if it has none.
    fn slot(&mut self, key: &str) -> usize {
        let next = self.0.len();
        *self.0.entry(key.as_bytes().into()).or_insert(next)
    }
}

/// A span's fields as span rules read them, borrowed from its encoded bytes: the attributes
/// the rules read, by slot.
#[derive(Debug, Default)]
struct SpanView<'a> {
    name: &'a str,
    kind: i32,
    /// Seconds from start to end.
    duration: f64,
    trace: Option<TraceContext>,
    failed: bool,
    /// The value of each key the rules read, when the span has it.
    slots: Vec<Option<ValueRef<'a>>>,
}

impl<'a> SpanView<'a> {
    /// Reads `span` (an encoded `Span`, checked at intake) into `self`, decoding only the
    /// attributes of `keys`.
    fn read(&mut self, span: &'a [u8], keys: &Keys) {
        let (mut start, mut end) = (0u64, 0u64);
        let (mut trace_id, mut span_id): (&[u8], &[u8]) = (&[], &[]);
        self.name = "";
        self.kind = 0;
        self.failed = false;
        self.slots.clear();
        self.slots.resize(keys.0.len(), None);
        for field in Fields::new(span).filter_map(Result::ok) {
            match field {
                (1, Wire::Len(id)) => trace_id = id,
                (2, Wire::Len(id)) => span_id = id,
                (5, Wire::Len(name)) => self.name = std::str::from_utf8(name).unwrap_or(""),
                (6, Wire::Varint(kind)) => self.kind = kind as i32,
                (7, Wire::Fixed64(t)) => start = t,
                (8, Wire::Fixed64(t)) => end = t,
                (9, Wire::Len(pair)) => {
                    if let Some((slot, value)) = attribute(pair, keys) {
                        self.slots[slot] = Some(value);
                    }
                }
                (15, Wire::Len(status)) => {
                    self.failed = Fields::new(status)
                        .filter_map(Result::ok)
                        .any(|f| matches!(f, (3, Wire::Varint(STATUS_ERROR))));
                }
                _ => {}
            }
        }
        self.duration = end.saturating_sub(start) as f64 / 1e9;
        self.trace = Some(TraceContext {
            trace_id: trace_id.try_into().unwrap_or_default(),
            span_id: span_id.try_into().unwrap_or_default(),
        })
        .filter(|_| trace_id.len() == 16 && span_id.len() == 8);
    }

    /// The value in `slot`.
    fn get(&self, slot: usize) -> Option<ValueRef<'a>> {
        self.slots.get(slot).copied().flatten()
    }

    /// The value in `slot` as a number.
    fn number(&self, slot: usize) -> Option<f64> {
        match self.get(slot)? {
            ValueRef::Int(i) => Some(i as f64),
            ValueRef::Double(d) => Some(d),
            ValueRef::Str(_) | ValueRef::Bool(_) => None,
        }
    }

    /// Time per output token after the first: the end-to-end latency (`gen_ai.latency.e2e`,
    /// else the span's duration) less the time to the first token, over the output tokens
    /// after the first.
    fn time_per_output_token(&self) -> Option<f64> {
        let first = self.number(TIME_TO_FIRST_TOKEN)?;
        let total = self.number(E2E).unwrap_or(self.duration);
        let tokens = self
            .number(OUTPUT_TOKENS)
            .or_else(|| self.number(COMPLETION_TOKENS))?;
        (tokens > 1.0).then(|| (total - first) / (tokens - 1.0))
    }
}

/// A `KeyValue` whose key has a slot and whose value is a string, boolean or number.
fn attribute<'a>(pair: &'a [u8], keys: &Keys) -> Option<(usize, ValueRef<'a>)> {
    let (mut slot, mut value) = (None, None);
    for field in Fields::new(pair).filter_map(Result::ok) {
        match field {
            (1, Wire::Len(k)) => slot = Some(*keys.0.get(k)?),
            (2, Wire::Len(any)) => value = Some(any),
            _ => {}
        }
    }
    let (slot, any) = (slot?, value?);
    let mut value = None;
    for field in Fields::new(any).filter_map(Result::ok) {
        value = match field {
            (1, Wire::Len(s)) => std::str::from_utf8(s).ok().map(ValueRef::Str),
            (2, Wire::Varint(b)) => Some(ValueRef::Bool(b != 0)),
            (3, Wire::Varint(i)) => Some(ValueRef::Int(i as i64)),
            (4, Wire::Fixed64(d)) => Some(ValueRef::Double(f64::from_bits(d))),
            _ => value,
        };
    }
    Some((slot, value?))
}

/// What a rule records of a span.
#[derive(Debug, Clone)]
enum Measured {
    Duration,
    TimePerOutputToken,
    Attribute(usize),
}

/// Where a series attribute's value comes from.
#[derive(Debug, Clone)]
enum Source {
    Name,
    Kind,
    Error,
    Attribute(usize),
    Constant(Box<str>),
}

/// The OTLP names of span kinds, by number.
const KINDS: [&str; 6] = [
    "unspecified",
    "internal",
    "server",
    "client",
    "producer",
    "consumer",
];

impl Source {
    fn resolve<'a>(&'a self, span: &SpanView<'a>) -> Option<ValueRef<'a>> {
        match self {
            Source::Name => Some(ValueRef::Str(span.name)),
            Source::Kind => KINDS
                .get(usize::try_from(span.kind).ok()?)
                .map(|k| ValueRef::Str(k)),
            Source::Error => span.failed.then(|| {
                span.get(ERROR_TYPE)
                    .filter(|v| matches!(v, ValueRef::Str(s) if !s.is_empty()))
                    .unwrap_or(ValueRef::Str("_OTHER"))
            }),
            Source::Attribute(slot) => span.get(*slot),
            Source::Constant(value) => Some(ValueRef::Str(value)),
        }
    }
}

/// One compiled span rule.
#[derive(Debug)]
struct SpanRule {
    config: SpanRuleConfig,
    kind: Option<i32>,
    requires: Box<[usize]>,
    value: Box<[Measured]>,
    /// Series attributes, sorted by key, each with its sources in order.
    attributes: Box<[Keyed<Box<[Source]>>]>,
}

impl SpanRule {
    fn build(config: &SpanRuleConfig, keys: &mut Keys) -> Result<Self, RuleError> {
        let rule = config.name.clone();
        let unknown = |key: &str, source: &str, expected| RuleError::UnknownSpanSource {
            rule: rule.clone(),
            key: key.to_owned(),
            source_name: source.to_owned(),
            expected,
        };
        if rule.is_empty() {
            return Err(RuleError::EmptySpanRuleName);
        }
        target(config).check()?;
        let value = config
            .value
            .iter()
            .flat_map(|v| v.as_slice())
            .map(|v| match v.as_str() {
                "duration" => Ok(Measured::Duration),
                "time_per_output_token" => Ok(Measured::TimePerOutputToken),
                other => attribute_key(other)
                    .map(|k| Measured::Attribute(keys.slot(k)))
                    .ok_or_else(|| unknown("value", other, VALUES)),
            })
            .collect::<Result<Box<[_]>, _>>()?;
        let mut attributes = Vec::new();
        for (key, sources) in &config.attributes {
            let sources = sources
                .as_slice()
                .iter()
                .map(|s| match s.as_str() {
                    "name" => Ok(Source::Name),
                    "kind" => Ok(Source::Kind),
                    "error" => Ok(Source::Error),
                    other => attribute_key(other)
                        .map(|k| Source::Attribute(keys.slot(k)))
                        .ok_or_else(|| unknown(key, other, SOURCES)),
                })
                .collect::<Result<Box<[_]>, _>>()?;
            attributes.push((key.as_str().into(), sources));
        }
        for (key, value) in &config.constant_attributes {
            let constant: Box<[Source]> = Box::new([Source::Constant(value.as_str().into())]);
            attributes.push((key.as_str().into(), constant));
        }
        let attributes = by_key(&rule, attributes)?;
        Ok(Self {
            config: config.clone(),
            kind: config.kind.map(crate::config::SpanKindName::number),
            requires: config.requires.iter().map(|k| keys.slot(k)).collect(),
            value,
            attributes,
        })
    }

    /// What the rule records of `span`, if it reads it.
    fn value(&self, span: &SpanView<'_>) -> Option<f64> {
        if self.kind.is_some_and(|k| k != span.kind)
            || self
                .config
                .span_name
                .as_deref()
                .is_some_and(|n| n != span.name)
        {
            return None;
        }
        match self.config.when {
            When::Success if span.failed => return None,
            When::Error if !span.failed => return None,
            _ => {}
        }
        if !self.requires.is_empty() && !self.requires.iter().any(|k| span.get(*k).is_some()) {
            return None;
        }
        if self.value.is_empty() {
            return Some(1.0);
        }
        let value = self.value.iter().find_map(|m| match m {
            Measured::Duration => Some(span.duration),
            Measured::TimePerOutputToken => span.time_per_output_token(),
            Measured::Attribute(slot) => span.number(*slot),
        })?;
        Some(value * self.config.scale)
    }
}

/// `attributes.<key>`'s key.
fn attribute_key(source: &str) -> Option<&str> {
    source.strip_prefix("attributes.").filter(|k| !k.is_empty())
}

/// The instrument a span rule records into.
fn target(config: &SpanRuleConfig) -> Target<'_> {
    Target {
        name: &config.name,
        kind: config.instrument,
        unit: &config.unit,
        description: &config.description,
        scale: config.scale,
        buckets: config.buckets.as_deref(),
    }
}

/// A registry's instruments of the span rules, in rule order.
type Bound = (Weak<Registry>, Arc<[Arc<Instrument>]>);

/// The span rules of a host: compiled once, bound to each resource's registry when its first
/// span that a rule reads arrives.
#[derive(Debug)]
pub struct SpanMetrics {
    rules: Vec<SpanRule>,
    keys: Keys,
    registries: Arc<Registries>,
    tenancy: Arc<Tenancy>,
    bound: RwLock<Vec<Bound>>,
}

impl SpanMetrics {
    /// The built-in span rule set of `config` and its `span_rules`, recording into the registry
    /// of each span's resource in `registries` (as `tenancy` admits it); a rule that cannot be
    /// built is named.
    pub fn new(
        config: &DeriveConfig,
        registries: Arc<Registries>,
        tenancy: Arc<Tenancy>,
    ) -> Result<Self, RuleError> {
        let mut configs = match config.span_rule_set {
            SpanRuleSet::Genai => super::genai::span_rules(),
            SpanRuleSet::None => Vec::new(),
        };
        configs.extend(config.span_rules.iter().cloned());
        let mut keys = Keys::new();
        let rules = configs
            .iter()
            .map(|c| SpanRule::build(c, &mut keys))
            .collect::<Result<Vec<_>, _>>()?;
        // Instruments that could not share a registry are found now, not at the first span.
        let scratch = Registry::new(1);
        for rule in &rules {
            target(&rule.config).register(&scratch)?;
        }
        Ok(Self {
            rules,
            keys,
            registries,
            tenancy,
            bound: RwLock::default(),
        })
    }

    /// Records what the rules read of `spans` (records of the traces signal), each in the
    /// registry of its resource; a resource the tenancy refuses is named (its spans are still
    /// forwarded, only not measured).
    pub fn record(&self, spans: &[Record]) -> Option<String> {
        if self.rules.is_empty() {
            return None;
        }
        let mut view = SpanView::default();
        let mut problem = None;
        // One clock read for every exemplar of the batch.
        let now = crate::clock::unix_nanos();
        let mut start = 0;
        while start < spans.len() {
            let origin = &spans[start].origin;
            let end = spans[start..]
                .iter()
                .position(|s| !Arc::ptr_eq(&s.origin, origin))
                .map_or(spans.len(), |n| start + n);
            let mut instruments: Option<Arc<[Arc<Instrument>]>> = None;
            for span in &spans[start..end] {
                view.read(&span.bytes, &self.keys);
                for (i, rule) in self.rules.iter().enumerate() {
                    let Some(value) = rule.value(&view) else {
                        continue;
                    };
                    if instruments.is_none() {
                        match self.bind(&origin.attributes, end - start) {
                            Ok(bound) => instruments = Some(bound),
                            Err(why) => {
                                problem.get_or_insert(why);
                                break;
                            }
                        }
                    }
                    let Some(instruments) = &instruments else {
                        break;
                    };
                    record(&instruments[i], rule, &view, value, now);
                }
            }
            start = end;
        }
        problem
    }

    /// The instruments of the registry of the resource with `attributes`, registered there
    /// the first time.
    fn bind(
        &self,
        attributes: &crate::model::attributes::AttributeSet,
        spans: usize,
    ) -> Result<Arc<[Arc<Instrument>]>, String> {
        let registry = self
            .tenancy
            .admit(&self.registries, attributes, false, spans)
            .map_err(|e| e.to_string())?;
        let found = |bound: &[Bound]| {
            bound
                .iter()
                .find(|(r, _)| r.as_ptr() == Arc::as_ptr(&registry))
                .map(|(_, i)| i.clone())
        };
        if let Some(instruments) = found(&self.bound.read().unwrap_or_else(PoisonError::into_inner))
        {
            return Ok(instruments);
        }
        let mut bound = self.bound.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(instruments) = found(&bound) {
            return Ok(instruments);
        }
        let instruments = self
            .rules
            .iter()
            .map(|rule| target(&rule.config).register(&registry))
            .collect::<Result<Arc<[_]>, _>>()
            .map_err(|e| e.to_string())?;
        // Registries that went away take their entries with them.
        bound.retain(|(r, _)| r.strong_count() > 0);
        bound.push((Arc::downgrade(&registry), instruments.clone()));
        Ok(instruments)
    }
}

/// Records `value` of `span` into `instrument` with the rule's attributes and the span as
/// exemplar, measured at `now`.
fn record(instrument: &Instrument, rule: &SpanRule, span: &SpanView<'_>, value: f64, now: u64) {
    let mut buf = [("", ValueRef::Bool(false)); MAX_RULE_ATTRIBUTES];
    let mut n = 0;
    for (key, sources) in &*rule.attributes {
        if let Some(v) = sources.iter().find_map(|s| s.resolve(span)) {
            buf[n] = (key, v);
            n += 1;
        }
    }
    instrument.record_traced_at(&buf[..n], value, span.trace, now);
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue};
    use opentelemetry_proto::tonic::resource::v1::Resource as ProtoResource;
    use opentelemetry_proto::tonic::trace::v1::{Span, Status, span::SpanKind};

    use super::*;
    use crate::metrics::Storage;
    use crate::model::attributes::AttributeSet;
    use crate::model::record::Origin;
    use crate::model::resource::Resource;

    fn kv(key: &str, value: Any) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(value) }),
            ..Default::default()
        }
    }

    fn text(s: &str) -> Any {
        Any::StringValue(s.into())
    }

    /// A span shaped as vLLM's `llm_request` (attribute names from its tracing module).
    fn vllm(n: u8, model: &str, e2e: f64, ttft: f64, prompt: i64, completion: i64) -> Span {
        Span {
            trace_id: vec![n; 16],
            span_id: vec![n; 8],
            name: "llm_request".into(),
            kind: SpanKind::Server as i32,
            start_time_unix_nano: 1_000_000_000,
            end_time_unix_nano: 1_000_000_000 + (e2e * 1e9) as u64,
            attributes: vec![
                kv("gen_ai.response.model", text(model)),
                kv("gen_ai.request.id", text(&format!("req-{n}"))),
                kv("gen_ai.usage.prompt_tokens", Any::IntValue(prompt)),
                kv("gen_ai.usage.completion_tokens", Any::IntValue(completion)),
                kv("gen_ai.latency.time_in_queue", Any::DoubleValue(0.01)),
                kv("gen_ai.latency.time_to_first_token", Any::DoubleValue(ttft)),
                kv("gen_ai.latency.e2e", Any::DoubleValue(e2e)),
                kv("gen_ai.request.temperature", Any::DoubleValue(0.7)),
            ],
            ..Default::default()
        }
    }

    /// A client span as the `openai-v2` instrumentation writes one.
    fn client(n: u8, seconds: f64, error: Option<&str>) -> Span {
        let mut attributes = vec![
            kv("gen_ai.operation.name", text("chat")),
            kv("gen_ai.system", text("openai")),
            kv("gen_ai.request.model", text("gpt-4o-mini")),
            kv("gen_ai.response.model", text("gpt-4o-mini-2024-07-18")),
            kv("gen_ai.usage.input_tokens", Any::IntValue(5)),
            kv("gen_ai.usage.output_tokens", Any::IntValue(7)),
        ];
        attributes.extend(error.map(|e| kv("error.type", text(e))));
        Span {
            trace_id: vec![n; 16],
            span_id: vec![n; 8],
            name: "chat gpt-4o-mini".into(),
            kind: SpanKind::Client as i32,
            start_time_unix_nano: 5,
            end_time_unix_nano: 5 + (seconds * 1e9) as u64,
            attributes,
            status: error.map(|_| Status {
                code: 2,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn spans_of(service: &str, spans: &[Span]) -> Vec<Record> {
        let origin = Arc::new(Origin::new(
            &ProtoResource {
                attributes: vec![kv("service.name", text(service))],
                ..Default::default()
            },
            &InstrumentationScope::default(),
        ));
        Record::encode_all(spans, &origin)
    }

    fn host(config: &DeriveConfig) -> (SpanMetrics, Arc<Registries>) {
        let own = Resource::from_attributes(AttributeSet::empty());
        let registries = Arc::new(Registries::new(Arc::new(Registry::new(100)), own));
        let spans = SpanMetrics::new(config, registries.clone(), Arc::new(Tenancy::off()))
            .expect("rules build");
        (spans, registries)
    }

    /// Every histogram series of `name` in `service`'s registry: its attributes (sorted
    /// `k=v`), count, sum and the trace ids of its exemplars.
    fn series(
        registries: &Registries,
        service: &str,
        name: &str,
    ) -> Vec<(String, u64, f64, Vec<u8>)> {
        let producer = registries
            .all()
            .into_iter()
            .find(|p| p.resource.get("service.name").as_deref() == Some(service))
            .expect("the service's registry");
        let mut out = Vec::new();
        for i in producer.registry.instruments() {
            if i.descriptor().name != name {
                continue;
            }
            let Storage::Histogram(_, table) = i.storage() else {
                panic!("{name} is a histogram");
            };
            table.for_each(|s| {
                let mut attrs: Vec<String> = s
                    .attributes
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                attrs.sort();
                let p = s.aggregator.snapshot();
                let mut traces: Vec<u8> = s
                    .exemplars(0)
                    .iter()
                    .filter_map(|(_, e)| e.trace.map(|t| t.trace_id[0]))
                    .collect();
                traces.sort_unstable();
                out.push((attrs.join(","), p.count, p.sum, traces));
            });
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    #[test]
    fn vllm_request_spans_become_server_metrics_with_their_spans_as_exemplars() {
        let (spans, registries) = host(&DeriveConfig::default());
        let records = spans_of(
            "vllm",
            &[
                vllm(1, "llama-8b", 1.5, 0.3, 12, 31),
                vllm(2, "llama-8b", 0.5, 0.1, 8, 11),
            ],
        );
        assert_eq!(spans.record(&records), None);
        let model = "gen_ai.request.model=llama-8b,gen_ai.response.model=llama-8b";
        let got = series(&registries, "vllm", "gen_ai.server.request.duration");
        assert_eq!(got, [(model.to_owned(), 2, 2.0, vec![1, 2])]);
        let got = series(&registries, "vllm", "gen_ai.server.time_to_first_token");
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].1, got[0].3.clone()), (2, vec![1, 2]));
        assert!((got[0].2 - 0.4).abs() < 1e-12);
        // (1.5 − 0.3) / 30 and (0.5 − 0.1) / 10.
        let got = series(&registries, "vllm", "gen_ai.server.time_per_output_token");
        assert!(
            (got[0].2 - (1.2 / 30.0 + 0.4 / 10.0)).abs() < 1e-12,
            "{got:?}"
        );
        let got = series(&registries, "vllm", "gen_ai.client.token.usage");
        assert_eq!(
            got.iter()
                .map(|s| (s.0.as_str(), s.1, s.2))
                .collect::<Vec<_>>(),
            [
                (&*format!("{model},gen_ai.token.type=input"), 2, 20.0),
                (&*format!("{model},gen_ai.token.type=output"), 2, 42.0),
            ]
        );
        assert!(series(&registries, "vllm", "gen_ai.client.operation.duration").is_empty());
    }

    #[test]
    fn client_spans_become_client_metrics_and_failures_name_their_error_type() {
        let (spans, registries) = host(&DeriveConfig::default());
        let records = spans_of(
            "app",
            &[
                client(1, 0.25, None),
                client(2, 0.5, Some("timeout")),
                Span {
                    attributes: vec![kv("gen_ai.operation.name", text("chat"))],
                    ..client(3, 1.0, Some(""))
                },
            ],
        );
        assert_eq!(spans.record(&records), None);
        let base = "gen_ai.operation.name=chat,gen_ai.provider.name=openai,gen_ai.request.model=gpt-4o-mini,gen_ai.response.model=gpt-4o-mini-2024-07-18";
        let got = series(&registries, "app", "gen_ai.client.operation.duration");
        let got: Vec<(&str, u64, f64)> = got.iter().map(|s| (s.0.as_str(), s.1, s.2)).collect();
        let timeout = format!("error.type=timeout,{base}");
        let mut want = vec![
            ("error.type=_OTHER,gen_ai.operation.name=chat", 1, 1.0),
            (base, 1, 0.25),
            (timeout.as_str(), 1, 0.5),
        ];
        want.sort_by(|a, b| a.0.cmp(b.0));
        assert_eq!(got, want);
        assert!(series(&registries, "app", "gen_ai.server.request.duration").is_empty());
        let usage = series(&registries, "app", "gen_ai.client.token.usage");
        assert_eq!(usage.iter().map(|s| s.2).sum::<f64>(), 24.0, "5 + 7, twice");
    }

    #[test]
    fn spans_without_genai_attributes_record_nothing_and_make_no_registry() {
        let (spans, registries) = host(&DeriveConfig::default());
        let plain = Span {
            attributes: vec![kv("http.route", text("/"))],
            ..client(1, 0.1, None)
        };
        assert_eq!(spans.record(&spans_of("web", &[plain])), None);
        assert_eq!(registries.all().len(), 1, "only the host's own");
    }

    #[test]
    fn span_rules_are_configurable_replaceable_and_bad_ones_named() {
        let config: DeriveConfig = toml::from_str(
            r#"
span_rule_set = "none"
[[span_rules]]
name = "app.spans"
instrument = "histogram"
span_name = "llm_request"
value = "attributes.gen_ai.usage.prompt_tokens"
scale = 2.0
attributes = { route = ["attributes.http.route", "name"], kind = "kind" }
"#,
        )
        .expect("config");
        let (spans, registries) = host(&config);
        spans.record(&spans_of("vllm", &[vllm(1, "m", 1.0, 0.1, 12, 3)]));
        assert_eq!(
            series(&registries, "vllm", "app.spans"),
            [("kind=server,route=llm_request".to_owned(), 1, 24.0, vec![1])]
        );
        assert!(series(&registries, "vllm", "gen_ai.server.request.duration").is_empty());
        let bad = |toml: &str| {
            let config: DeriveConfig = toml::from_str(toml).expect("parses");
            let own = Resource::from_attributes(AttributeSet::empty());
            let registries = Arc::new(Registries::new(Arc::new(Registry::new(1)), own));
            SpanMetrics::new(&config, registries, Arc::new(Tenancy::off()))
                .expect_err("refused")
                .to_string()
        };
        assert_eq!(
            bad("[[span_rules]]\nname = \"x\"\ninstrument = \"counter\"\nvalue = \"latency\""),
            "span rule `x`: `value` reads `latency`, which is not duration, time_per_output_token or attributes.<key>"
        );
        assert_eq!(
            bad(
                "[[span_rules]]\nname = \"x\"\ninstrument = \"counter\"\nattributes = { m = \"model\" }"
            ),
            "span rule `x`: `m` reads `model`, which is not name, kind, error or attributes.<key>"
        );
        assert_eq!(
            bad("[[span_rules]]\nname = \"\"\ninstrument = \"counter\""),
            "a span rule has an empty name"
        );
        assert!(
            bad("[[span_rules]]\nname = \"gen_ai.server.request.duration\"\ninstrument = \"counter\"")
                .contains("gen_ai.server.request.duration"),
            "a rule clashing with the built-in set is named"
        );
    }
}
