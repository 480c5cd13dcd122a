//! The built-in series rule sets: each model server's own metrics, as its published metric
//! definitions name them, recorded as the GenAI metrics the host derives from events and spans.
//!
//! Versions read: vLLM 0.10 (V1 engine, `vllm/v1/metrics/loggers.py`), Text Generation
//! Inference 3 (`docs/source/reference/metrics.md`), Triton Inference Server 23.10 and later
//! (`docs/user_guide/metrics.md`), SGLang 0.5 (`python/sglang/srt/metrics/collector.py`).
//! Counters are named as scraping names them, without `_total`.

use std::collections::BTreeMap;

use super::genai::{REQUEST_DURATION, TIME_PER_OUTPUT_TOKEN, TIME_TO_FIRST_TOKEN, TOKEN_USAGE};
use crate::config::{SeriesRuleConfig, ServerRuleSet, Sources};

/// What a built-in rule records and from what.
struct Spec {
    /// The metric recorded.
    name: Target,
    /// The server's metrics, in order of preference.
    metric: &'static [&'static str],
    /// With a counter `metric`: the counter that is the histogram's sum.
    sum: Option<&'static str>,
    scale: f64,
    /// Labels recorded under another key.
    labels: &'static [(&'static str, &'static str)],
    /// `gen_ai.token.type`, for token metrics.
    token_type: Option<&'static str>,
}

/// The metrics the built-in sets record.
#[derive(Clone, Copy)]
enum Target {
    RequestDuration,
    TimeToFirstToken,
    TimePerOutputToken,
    TokenUsage,
    Requests,
    Tokens,
    Running,
    Waiting,
    KvCacheUsage,
}

impl Target {
    /// Name, unit and description.
    fn describe(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Target::RequestDuration => ("gen_ai.server.request.duration", "s", REQUEST_DURATION),
            Target::TimeToFirstToken => (
                "gen_ai.server.time_to_first_token",
                "s",
                TIME_TO_FIRST_TOKEN,
            ),
            Target::TimePerOutputToken => (
                "gen_ai.server.time_per_output_token",
                "s",
                TIME_PER_OUTPUT_TOKEN,
            ),
            Target::TokenUsage => ("gen_ai.client.token.usage", "{token}", TOKEN_USAGE),
            Target::Requests => (
                "inference.requests",
                "{request}",
                "Completed generation requests; failed ones carry error.type.",
            ),
            Target::Tokens => (
                "inference.tokens",
                "{token}",
                "Tokens a model server processed, by gen_ai.token.type.",
            ),
            Target::Running => (
                "inference.requests.running",
                "{request}",
                "Requests a model server is running now.",
            ),
            Target::Waiting => (
                "inference.requests.waiting",
                "{request}",
                "Requests waiting in a model server's queue now.",
            ),
            Target::KvCacheUsage => (
                "inference.kv_cache.usage",
                "1",
                "Fraction of a model server's KV cache in use.",
            ),
        }
    }
}

/// A rule reading `metric` as it is.
const fn copy(name: Target, metric: &'static [&'static str]) -> Spec {
    Spec {
        name,
        metric,
        sum: None,
        scale: 1.0,
        labels: &[],
        token_type: None,
    }
}

/// A token rule reading `metric` as it is, for `token_type` tokens.
const fn tokens(name: Target, metric: &'static [&'static str], token_type: &'static str) -> Spec {
    Spec {
        token_type: Some(token_type),
        ..copy(name, metric)
    }
}

/// vLLM 0.10 (V1 engine): every series carries `model_name` and `engine` (the engine index).
const VLLM: &[Spec] = &[
    copy(
        Target::RequestDuration,
        &["vllm:e2e_request_latency_seconds"],
    ),
    copy(
        Target::TimeToFirstToken,
        &["vllm:time_to_first_token_seconds"],
    ),
    copy(
        Target::TimePerOutputToken,
        &[
            "vllm:time_per_output_token_seconds",
            "vllm:inter_token_latency_seconds",
        ],
    ),
    tokens(Target::TokenUsage, &["vllm:request_prompt_tokens"], "input"),
    tokens(
        Target::TokenUsage,
        &["vllm:request_generation_tokens"],
        "output",
    ),
    tokens(Target::Tokens, &["vllm:prompt_tokens"], "input"),
    tokens(Target::Tokens, &["vllm:generation_tokens"], "output"),
    copy(Target::Requests, &["vllm:request_success"]),
    copy(Target::Running, &["vllm:num_requests_running"]),
    copy(Target::Waiting, &["vllm:num_requests_waiting"]),
    copy(
        Target::KvCacheUsage,
        &["vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"],
    ),
];

/// Text Generation Inference 3: one model per server and no model label (give the target a
/// `gen_ai.request.model` label); no time to first token.
const TGI: &[Spec] = &[
    copy(Target::RequestDuration, &["tgi_request_duration"]),
    copy(
        Target::TimePerOutputToken,
        &["tgi_request_mean_time_per_token_duration"],
    ),
    tokens(Target::TokenUsage, &["tgi_request_input_length"], "input"),
    tokens(
        Target::TokenUsage,
        &["tgi_request_generated_tokens"],
        "output",
    ),
    copy(Target::Requests, &["tgi_request_success"]),
    Spec {
        labels: &[("err", "error.type")],
        ..copy(Target::Requests, &["tgi_request_failure"])
    },
    copy(Target::Running, &["tgi_batch_current_size"]),
    copy(Target::Waiting, &["tgi_queue_size"]),
];

/// Triton Inference Server: series carry `model` and `version`. Request latency is a pair of
/// counters (count and total microseconds, failures' time included); time to first response is
/// a histogram in milliseconds when histogram latencies are on.
const TRITON: &[Spec] = &[
    Spec {
        sum: Some("nv_inference_request_duration_us"),
        scale: 1e-6,
        ..copy(Target::RequestDuration, &["nv_inference_request_success"])
    },
    Spec {
        scale: 1e-3,
        ..copy(
            Target::TimeToFirstToken,
            &["nv_inference_first_response_histogram_ms"],
        )
    },
    copy(Target::Requests, &["nv_inference_request_success"]),
    Spec {
        labels: &[("reason", "error.type")],
        ..copy(Target::Requests, &["nv_inference_request_failure"])
    },
    copy(Target::Waiting, &["nv_inference_pending_request_count"]),
];

/// SGLang 0.5: series carry `model_name`; token histograms only with
/// `--collect-tokens-histogram`.
const SGLANG: &[Spec] = &[
    copy(
        Target::RequestDuration,
        &["sglang:e2e_request_latency_seconds"],
    ),
    copy(
        Target::TimeToFirstToken,
        &["sglang:time_to_first_token_seconds"],
    ),
    copy(
        Target::TimePerOutputToken,
        &["sglang:inter_token_latency_seconds"],
    ),
    tokens(
        Target::TokenUsage,
        &["sglang:prompt_tokens_histogram"],
        "input",
    ),
    tokens(
        Target::TokenUsage,
        &["sglang:generation_tokens_histogram"],
        "output",
    ),
    tokens(Target::Tokens, &["sglang:prompt_tokens"], "input"),
    tokens(Target::Tokens, &["sglang:generation_tokens"], "output"),
    copy(Target::Requests, &["sglang:num_requests"]),
    copy(Target::Running, &["sglang:num_running_reqs"]),
    copy(Target::Waiting, &["sglang:num_queue_reqs"]),
    copy(Target::KvCacheUsage, &["sglang:token_usage"]),
];

/// The rules of one built-in set, as configured rules.
pub fn rules(set: ServerRuleSet) -> Vec<SeriesRuleConfig> {
    let (specs, model_label, engine) = match set {
        ServerRuleSet::Vllm => (VLLM, Some("model_name"), "vllm"),
        ServerRuleSet::Tgi => (TGI, None, "tgi"),
        ServerRuleSet::Triton => (TRITON, Some("model"), "triton"),
        ServerRuleSet::Sglang => (SGLANG, Some("model_name"), "sglang"),
    };
    specs
        .iter()
        .map(|spec| {
            let (name, unit, description) = spec.name.describe();
            let mut constant = BTreeMap::from([("inference.engine".to_owned(), engine.to_owned())]);
            if let Some(t) = spec.token_type {
                constant.insert("gen_ai.token.type".into(), t.into());
            }
            // A failure series carries `error.type` even when the server names no reason.
            if spec.labels.iter().any(|(_, to)| *to == "error.type") {
                constant.insert("error.type".into(), "_OTHER".into());
            }
            SeriesRuleConfig {
                name: name.into(),
                unit: unit.into(),
                description: description.into(),
                metric: Sources::Many(spec.metric.iter().map(|m| (*m).to_owned()).collect()),
                sum: spec.sum.map(str::to_owned),
                scale: spec.scale,
                model_label: model_label.map(str::to_owned),
                labels: spec
                    .labels
                    .iter()
                    .map(|(from, to)| ((*from).to_owned(), (*to).to_owned()))
                    .collect(),
                constant_attributes: constant,
            }
        })
        .collect()
}
