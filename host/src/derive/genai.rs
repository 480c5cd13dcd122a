//! The default rule set, after the OpenTelemetry GenAI semantic conventions.
//!
//! Every rule reads `generation_completed` events. Durations arrive in
//! milliseconds and are recorded in seconds; bucket bounds are the ones the
//! conventions recommend. Series carry the model, engine, device and
//! organisation, never the request id.

use std::collections::BTreeMap;

use crate::config::{RuleConfig, When};
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
        description: "Generative AI server request duration, to the last output token.",
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
        description: "Time to generate the first token, for successful responses.",
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
        description: "Time per output token after the first, for successful responses.",
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
        description: "Number of input and output tokens used.",
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
        description: "Number of input and output tokens used.",
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
