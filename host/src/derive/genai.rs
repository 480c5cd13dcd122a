//! The default rule sets, after the OpenTelemetry GenAI semantic conventions.
//!
//! Every event rule reads `generation_completed` events. Durations arrive in
//! milliseconds and are recorded in seconds; bucket bounds are the ones the
//! conventions recommend. Series carry the model, engine, device and
//! organisation, never the request id.
//!
//! The span rules read spans that carry GenAI attributes: server spans (vLLM's `llm_request`,
//! with its `gen_ai.latency.*` and `gen_ai.usage.prompt_tokens`/`completion_tokens`) give the
//! server metrics, client spans (the `openai-v2` instrumentation, OpenLLMetry) the client
//! ones, both the token usage; each measurement carries its span as exemplar.

use std::collections::BTreeMap;

use crate::config::{RuleConfig, Sources, SpanKindName, SpanRuleConfig, When};
use crate::model::metric::InstrumentKind;

/// Bounds recommended for `gen_ai.server.request.duration` (seconds).
pub const REQUEST_DURATION_BUCKETS: &[f64] = &[
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
];
/// Bounds recommended for `gen_ai.server.time_to_first_token` (seconds).
pub const TIME_TO_FIRST_TOKEN_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];
/// Bounds recommended for `gen_ai.server.time_per_output_token` (seconds).
pub const TIME_PER_OUTPUT_TOKEN_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5,
];
/// Bounds recommended for `gen_ai.client.token.usage` (tokens).
pub const TOKEN_USAGE_BUCKETS: &[f64] = &[
    1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0,
    16777216.0, 67108864.0,
];
/// Bounds for `inference.throughput` (tokens per second).
pub const THROUGHPUT_BUCKETS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0,
];

const COMPLETED: &str = "generation_completed";

pub(super) const REQUEST_DURATION: &str =
    "Generative AI server request duration, to the last output token.";
pub(super) const TIME_TO_FIRST_TOKEN: &str =
    "Time to generate the first token, for successful responses.";
pub(super) const TIME_PER_OUTPUT_TOKEN: &str =
    "Time per output token after the first, for successful responses.";
pub(super) const TOKEN_USAGE: &str = "Number of input and output tokens used.";

/// The series attributes every GenAI rule carries: attribute key → event field.
fn base_attributes() -> BTreeMap<String, String> {
    [
        ("gen_ai.request.model", "model"),
        ("inference.engine", "engine"),
        ("inference.device.id", "device_id"),
        ("inference.org.id", "org_id"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

struct Spec {
    name: &'static str,
    field: Option<&'static str>,
    instrument: InstrumentKind,
    unit: &'static str,
    description: &'static str,
    scale: f64,
    buckets: Option<&'static [f64]>,
    when: When,
    with_error_type: bool,
    token_type: Option<&'static str>,
}

const SPECS: &[Spec] = &[
    Spec {
        name: "gen_ai.server.request.duration",
        field: Some("total_duration_ms"),
        instrument: InstrumentKind::Histogram,
        unit: "s",
        description: REQUEST_DURATION,
        scale: 0.001,
        buckets: Some(REQUEST_DURATION_BUCKETS),
        when: When::Always,
        with_error_type: true,
        token_type: None,
    },
    Spec {
        name: "gen_ai.server.time_to_first_token",
        field: Some("ttfc_ms"),
        instrument: InstrumentKind::Histogram,
        unit: "s",
        description: TIME_TO_FIRST_TOKEN,
        scale: 0.001,
        buckets: Some(TIME_TO_FIRST_TOKEN_BUCKETS),
        when: When::Success,
        with_error_type: false,
        token_type: None,
    },
    Spec {
        name: "gen_ai.server.time_per_output_token",
        field: Some("chunk_latency_avg_ms"),
        instrument: InstrumentKind::Histogram,
        unit: "s",
        description: TIME_PER_OUTPUT_TOKEN,
        scale: 0.001,
        buckets: Some(TIME_PER_OUTPUT_TOKEN_BUCKETS),
        when: When::Success,
        with_error_type: false,
        token_type: None,
    },
    Spec {
        name: "gen_ai.client.token.usage",
        field: Some("input_tokens"),
        instrument: InstrumentKind::Histogram,
        unit: "{token}",
        description: TOKEN_USAGE,
        scale: 1.0,
        buckets: Some(TOKEN_USAGE_BUCKETS),
        when: When::Always,
        with_error_type: false,
        token_type: Some("input"),
    },
    Spec {
        name: "gen_ai.client.token.usage",
        field: Some("output_tokens"),
        instrument: InstrumentKind::Histogram,
        unit: "{token}",
        description: TOKEN_USAGE,
        scale: 1.0,
        buckets: Some(TOKEN_USAGE_BUCKETS),
        when: When::Always,
        with_error_type: false,
        token_type: Some("output"),
    },
    Spec {
        name: "inference.requests",
        field: None,
        instrument: InstrumentKind::Counter,
        unit: "{request}",
        description: "Completed generation requests; failed ones carry error.type.",
        scale: 1.0,
        buckets: None,
        when: When::Always,
        with_error_type: true,
        token_type: None,
    },
    Spec {
        name: "inference.throughput",
        field: Some("throughput_tok_s"),
        instrument: InstrumentKind::Histogram,
        unit: "{token}/s",
        description: "Output tokens per second of each successful request.",
        scale: 1.0,
        buckets: Some(THROUGHPUT_BUCKETS),
        when: When::Success,
        with_error_type: false,
        token_type: None,
    },
];

/// The GenAI rule set as configuration, so it reads like any user rule.
pub fn rules() -> Vec<RuleConfig> {
    SPECS
        .iter()
        .map(|s| {
            let mut attributes = base_attributes();
            if s.with_error_type {
                attributes.insert("error.type".into(), "error".into());
            }
            let constant_attributes = s
                .token_type
                .map(|t| BTreeMap::from([("gen_ai.token.type".to_owned(), t.to_owned())]))
                .unwrap_or_default();
            RuleConfig {
                event_type: COMPLETED.into(),
                field: s.field.map(Into::into),
                instrument: s.instrument,
                name: s.name.into(),
                unit: s.unit.into(),
                description: s.description.into(),
                scale: s.scale,
                buckets: s.buckets.map(<[f64]>::to_vec),
                attributes,
                constant_attributes,
                when: s.when,
            }
        })
        .collect()
}

/// The series attributes every GenAI span rule carries: metric attribute → span attributes,
/// the first present wins.
fn span_attributes(with_error_type: bool) -> BTreeMap<String, Sources> {
    let many =
        |keys: &[&str]| Sources::Many(keys.iter().map(|k| format!("attributes.{k}")).collect());
    let mut out = BTreeMap::from([
        (
            "gen_ai.operation.name".to_owned(),
            many(&["gen_ai.operation.name"]),
        ),
        (
            "gen_ai.provider.name".to_owned(),
            many(&["gen_ai.provider.name", "gen_ai.system"]),
        ),
        (
            "gen_ai.request.model".to_owned(),
            many(&["gen_ai.request.model", "gen_ai.response.model"]),
        ),
        (
            "gen_ai.response.model".to_owned(),
            many(&["gen_ai.response.model"]),
        ),
    ]);
    if with_error_type {
        out.insert("error.type".to_owned(), Sources::One("error".to_owned()));
    }
    out
}

/// One built-in span rule, before it is written as configuration.
struct SpanSpec {
    name: &'static str,
    kind: Option<SpanKindName>,
    value: &'static [&'static str],
    unit: &'static str,
    description: &'static str,
    buckets: &'static [f64],
    when: When,
    with_error_type: bool,
    token_type: Option<&'static str>,
}

const SPAN_SPECS: &[SpanSpec] = &[
    SpanSpec {
        name: "gen_ai.server.request.duration",
        kind: Some(SpanKindName::Server),
        value: &["attributes.gen_ai.latency.e2e", "duration"],
        unit: "s",
        description: REQUEST_DURATION,
        buckets: REQUEST_DURATION_BUCKETS,
        when: When::Always,
        with_error_type: true,
        token_type: None,
    },
    SpanSpec {
        name: "gen_ai.server.time_to_first_token",
        kind: Some(SpanKindName::Server),
        value: &["attributes.gen_ai.latency.time_to_first_token"],
        unit: "s",
        description: TIME_TO_FIRST_TOKEN,
        buckets: TIME_TO_FIRST_TOKEN_BUCKETS,
        when: When::Success,
        with_error_type: false,
        token_type: None,
    },
    SpanSpec {
        name: "gen_ai.server.time_per_output_token",
        kind: Some(SpanKindName::Server),
        value: &["time_per_output_token"],
        unit: "s",
        description: TIME_PER_OUTPUT_TOKEN,
        buckets: TIME_PER_OUTPUT_TOKEN_BUCKETS,
        when: When::Success,
        with_error_type: false,
        token_type: None,
    },
    SpanSpec {
        name: "gen_ai.client.operation.duration",
        kind: Some(SpanKindName::Client),
        value: &["duration"],
        unit: "s",
        description: "GenAI operation duration.",
        buckets: REQUEST_DURATION_BUCKETS,
        when: When::Always,
        with_error_type: true,
        token_type: None,
    },
    SpanSpec {
        name: "gen_ai.client.token.usage",
        kind: None,
        value: &[
            "attributes.gen_ai.usage.input_tokens",
            "attributes.gen_ai.usage.prompt_tokens",
        ],
        unit: "{token}",
        description: TOKEN_USAGE,
        buckets: TOKEN_USAGE_BUCKETS,
        when: When::Always,
        with_error_type: false,
        token_type: Some("input"),
    },
    SpanSpec {
        name: "gen_ai.client.token.usage",
        kind: None,
        value: &[
            "attributes.gen_ai.usage.output_tokens",
            "attributes.gen_ai.usage.completion_tokens",
        ],
        unit: "{token}",
        description: TOKEN_USAGE,
        buckets: TOKEN_USAGE_BUCKETS,
        when: When::Always,
        with_error_type: false,
        token_type: Some("output"),
    },
];

/// The attributes that make a span a GenAI span: a span rule of the set reads only spans with
/// one of them.
pub const GENAI_SPAN_ATTRIBUTES: &[&str] = &[
    "gen_ai.operation.name",
    "gen_ai.request.model",
    "gen_ai.response.model",
];

/// The GenAI span rule set as configuration, so it reads like any user rule.
pub fn span_rules() -> Vec<SpanRuleConfig> {
    SPAN_SPECS
        .iter()
        .map(|s| SpanRuleConfig {
            name: s.name.into(),
            instrument: InstrumentKind::Histogram,
            unit: s.unit.into(),
            description: s.description.into(),
            kind: s.kind,
            span_name: None,
            requires: GENAI_SPAN_ATTRIBUTES
                .iter()
                .map(|k| (*k).to_owned())
                .collect(),
            value: Some(Sources::Many(
                s.value.iter().map(|v| (*v).to_owned()).collect(),
            )),
            scale: 1.0,
            buckets: Some(s.buckets.to_vec()),
            attributes: span_attributes(s.with_error_type),
            constant_attributes: s
                .token_type
                .map(|t| BTreeMap::from([("gen_ai.token.type".to_owned(), t.to_owned())]))
                .unwrap_or_default(),
            when: s.when,
        })
        .collect()
}
