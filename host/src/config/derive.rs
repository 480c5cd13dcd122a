//! `[derive]`: the rules that turn inference events, spans and scraped series into measurements.

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

/// Which built-in span rule set runs before the configured span rules.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SpanRuleSet {
    /// GenAI spans (semantic conventions, vLLM's `llm_request`) into GenAI metrics.
    #[default]
    Genai,
    /// No built-in span rules; only `[[derive.span_rules]]`.
    None,
}

/// A model server whose scraped metrics a built-in series rule set records as GenAI metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerRuleSet {
    /// vLLM (`vllm:*`).
    Vllm,
    /// Hugging Face Text Generation Inference (`tgi_*`).
    Tgi,
    /// NVIDIA Triton Inference Server (`nv_inference_*`).
    Triton,
    /// SGLang (`sglang:*`).
    Sglang,
}

impl ServerRuleSet {
    /// Every built-in series rule set.
    pub const ALL: [ServerRuleSet; 4] = [Self::Vllm, Self::Tgi, Self::Triton, Self::Sglang];
}

/// A series rule as written in the configuration file (`[[derive.series_rules]]`): a scraped
/// metric recorded again under another name, with the model from one of its labels.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SeriesRuleConfig {
    /// The metric recorded.
    pub name: String,
    /// The UCUM unit.
    #[serde(default)]
    pub unit: String,
    /// The description.
    #[serde(default)]
    pub description: String,
    /// The scraped metric read (a counter named without `_total`, as scraping names it), or
    /// several tried in order: the first a target exposes wins.
    pub metric: Sources,
    /// A counter read as the sum of a histogram with no buckets whose count is `metric`.
    #[serde(default)]
    pub sum: Option<String>,
    /// A factor applied to the values (bounds and sums of a histogram; only the sum with `sum`).
    #[serde(default = "one")]
    pub scale: f64,
    /// The label that names the model, recorded as `gen_ai.request.model`; a series without it
    /// takes the target's `gen_ai.request.model` label, if it has one.
    #[serde(default)]
    pub model_label: Option<String>,
    /// Labels recorded under another key: label → attribute key.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Series attributes with a fixed value: attribute key → value.
    #[serde(default)]
    pub constant_attributes: BTreeMap<String, String>,
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
    /// The built-in span rule set.
    pub span_rule_set: SpanRuleSet,
    /// Extra span rules, applied after the built-in span set.
    pub span_rules: Vec<SpanRuleConfig>,
    /// The model servers whose scraped metrics are recorded again as GenAI metrics.
    pub series_rule_sets: Vec<ServerRuleSet>,
    /// Extra series rules, applied after the built-in sets.
    pub series_rules: Vec<SeriesRuleConfig>,
}

impl Default for DeriveConfig {
    fn default() -> Self {
        Self {
            rule_set: RuleSet::Genai,
            forward_prefix: "inference".into(),
            rules: Vec::new(),
            span_rule_set: SpanRuleSet::Genai,
            span_rules: Vec::new(),
            series_rule_sets: ServerRuleSet::ALL.to_vec(),
            series_rules: Vec::new(),
        }
    }
}

/// One source, or several tried in order (the first the span has wins).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Sources {
    /// One source.
    One(String),
    /// Sources in order of preference.
    Many(Vec<String>),
}

impl Sources {
    /// The sources, in order.
    pub fn as_slice(&self) -> &[String] {
        match self {
            Sources::One(one) => std::slice::from_ref(one),
            Sources::Many(many) => many,
        }
    }
}

/// A span kind a span rule may match, as OTLP names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SpanKindName {
    /// `SPAN_KIND_INTERNAL`.
    Internal,
    /// `SPAN_KIND_SERVER`.
    Server,
    /// `SPAN_KIND_CLIENT`.
    Client,
    /// `SPAN_KIND_PRODUCER`.
    Producer,
    /// `SPAN_KIND_CONSUMER`.
    Consumer,
}

impl SpanKindName {
    /// The OTLP `SpanKind` number.
    pub fn number(self) -> i32 {
        match self {
            SpanKindName::Internal => 1,
            SpanKindName::Server => 2,
            SpanKindName::Client => 3,
            SpanKindName::Producer => 4,
            SpanKindName::Consumer => 5,
        }
    }
}

/// A span rule as written in the configuration file (`[[derive.span_rules]]`): which spans it
/// reads, what it records of each and with which attributes.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SpanRuleConfig {
    /// The instrument name.
    pub name: String,
    /// The instrument kind.
    pub instrument: InstrumentKind,
    /// The UCUM unit.
    #[serde(default)]
    pub unit: String,
    /// The description.
    #[serde(default)]
    pub description: String,
    /// Only spans of this kind (default: any).
    #[serde(default)]
    pub kind: Option<SpanKindName>,
    /// Only spans of this name (default: any).
    #[serde(default)]
    pub span_name: Option<String>,
    /// Only spans carrying at least one of these attributes (default: any span).
    #[serde(default)]
    pub requires: Vec<String>,
    /// What is recorded, the first the span has of: `duration` (seconds from start to end),
    /// `attributes.<key>` (a number), `time_per_output_token`; absent, 1 per span (a count).
    #[serde(default)]
    pub value: Option<Sources>,
    /// A factor applied to the value.
    #[serde(default = "one")]
    pub scale: f64,
    /// Histogram bucket bounds; absent, the OpenTelemetry default bounds.
    #[serde(default)]
    pub buckets: Option<Vec<f64>>,
    /// Series attributes: attribute key → source, or sources tried in order (`attributes.<key>`,
    /// `name`, `kind`, `error`: the span's `error.type`, else `_OTHER`, when its status is an
    /// error).
    #[serde(default)]
    pub attributes: BTreeMap<String, Sources>,
    /// Series attributes with a fixed value: attribute key → value.
    #[serde(default)]
    pub constant_attributes: BTreeMap<String, String>,
    /// Which outcomes the rule records (an error is a span whose status is an error).
    #[serde(default)]
    pub when: When,
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
