//! Series rules: scraped metrics of model servers recorded once more under the GenAI metric
//! names the host derives from events and spans, with the model from their labels; the scraped
//! series stay as they are.

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    Exemplar, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint, ScopeMetrics, Sum,
    Summary, exemplar, metric::Data, number_data_point,
};

use super::rule::{DERIVE_SCOPE, RuleError};
use crate::config::{DeriveConfig, SeriesRuleConfig};

/// The attribute that names the model.
const MODEL: &str = "gen_ai.request.model";

/// One compiled series rule.
#[derive(Debug)]
struct SeriesRule {
    name: String,
    unit: String,
    description: String,
    metrics: Vec<String>,
    sum: Option<String>,
    scale: f64,
    model_label: Option<String>,
    labels: BTreeMap<String, String>,
    constant: Vec<KeyValue>,
}

/// The compiled series rules: the built-in sets of the configured model servers, then the
/// configured rules.
#[derive(Debug, Default)]
pub struct SeriesRules(Vec<SeriesRule>);

impl SeriesRules {
    /// Compiles the configured series rules.
    pub fn new(config: &DeriveConfig) -> Result<Self, RuleError> {
        let mut configs: Vec<SeriesRuleConfig> = config
            .series_rule_sets
            .iter()
            .flat_map(|set| super::servers::rules(*set))
            .collect();
        configs.extend(config.series_rules.iter().cloned());
        configs
            .iter()
            .map(SeriesRule::build)
            .collect::<Result<_, _>>()
            .map(Self)
    }

    /// Appends to each resource of `request` a scope holding what the rules record from its
    /// metrics.
    pub fn apply(&self, request: &mut ExportMetricsServiceRequest) {
        if self.0.is_empty() {
            return;
        }
        for resource in &mut request.resource_metrics {
            let model = resource
                .resource
                .as_ref()
                .and_then(|r| r.attributes.iter().find(|kv| kv.key == MODEL))
                .and_then(|kv| kv.value.clone());
            let metrics: Vec<&Metric> = resource
                .scope_metrics
                .iter()
                .flat_map(|s| &s.metrics)
                .collect();
            let mut derived = Vec::new();
            for rule in &self.0 {
                rule.record(&metrics, model.as_ref(), &mut derived);
            }
            if !derived.is_empty() {
                resource.scope_metrics.push(ScopeMetrics {
                    scope: Some(InstrumentationScope {
                        name: DERIVE_SCOPE.into(),
                        ..Default::default()
                    }),
                    metrics: derived,
                    schema_url: String::new(),
                });
            }
        }
    }
}

impl SeriesRule {
    fn build(config: &SeriesRuleConfig) -> Result<Self, RuleError> {
        if config.name.is_empty() {
            return Err(RuleError::EmptySeriesRuleName);
        }
        if !config.scale.is_finite() {
            return Err(RuleError::BadScale(config.name.clone()));
        }
        let metrics = config.metric.as_slice().to_vec();
        if metrics.iter().all(String::is_empty) {
            return Err(RuleError::NoSeriesMetric(config.name.clone()));
        }
        Ok(Self {
            name: config.name.clone(),
            unit: config.unit.clone(),
            description: config.description.clone(),
            metrics,
            sum: config.sum.clone(),
            scale: config.scale,
            model_label: config.model_label.clone(),
            labels: config.labels.clone(),
            constant: config
                .constant_attributes
                .iter()
                .map(|(k, v)| KeyValue {
                    key: k.clone(),
                    value: Some(text(v)),
                    ..Default::default()
                })
                .collect(),
        })
    }

    /// Records into `out` what this rule makes of `metrics` (one resource's), read from the
    /// first of its metrics the resource has.
    fn record(&self, metrics: &[&Metric], model: Option<&AnyValue>, out: &mut Vec<Metric>) {
        let Some(source) = self
            .metrics
            .iter()
            .find(|name| metrics.iter().any(|m| m.name == **name))
        else {
            return;
        };
        let sums: Option<Vec<&NumberDataPoint>> = self.sum.as_ref().map(|sum| {
            metrics
                .iter()
                .filter(|m| m.name == *sum)
                .flat_map(|m| match &m.data {
                    Some(Data::Sum(s)) => s.data_points.iter().collect::<Vec<_>>(),
                    _ => Vec::new(),
                })
                .collect()
        });
        for metric in metrics.iter().filter(|m| m.name == *source) {
            let data = match (&sums, &metric.data) {
                (Some(sums), Some(Data::Sum(counts))) => Some(Data::Histogram(Histogram {
                    data_points: counts
                        .data_points
                        .iter()
                        .filter_map(|p| self.totals(p, sums, model))
                        .collect(),
                    aggregation_temporality: counts.aggregation_temporality,
                })),
                (None, Some(data)) => self.copy(data, model),
                // A metric of another type than the rule reads records nothing.
                _ => None,
            };
            if let Some(data) = data {
                merge(
                    out,
                    Metric {
                        name: self.name.clone(),
                        description: self.description.clone(),
                        unit: self.unit.clone(),
                        data: Some(data),
                        metadata: Vec::new(),
                    },
                );
            }
        }
    }

    /// `data` with this rule's attributes and scale.
    fn copy(&self, data: &Data, model: Option<&AnyValue>) -> Option<Data> {
        let numbers = |points: &[NumberDataPoint]| -> Vec<NumberDataPoint> {
            points
                .iter()
                .map(|p| NumberDataPoint {
                    attributes: self.attributes(&p.attributes, model),
                    value: p.value.map(|v| self.number(v)),
                    exemplars: self.exemplars(&p.exemplars),
                    ..p.clone()
                })
                .collect()
        };
        let scaled = |v: f64| v * self.scale;
        Some(match data {
            Data::Gauge(g) => Data::Gauge(Gauge {
                data_points: numbers(&g.data_points),
            }),
            Data::Sum(s) => Data::Sum(Sum {
                data_points: numbers(&s.data_points),
                ..*s
            }),
            Data::Histogram(h) => Data::Histogram(Histogram {
                data_points: h
                    .data_points
                    .iter()
                    .map(|p| HistogramDataPoint {
                        attributes: self.attributes(&p.attributes, model),
                        sum: p.sum.map(scaled),
                        explicit_bounds: p.explicit_bounds.iter().copied().map(scaled).collect(),
                        exemplars: self.exemplars(&p.exemplars),
                        min: p.min.map(scaled),
                        max: p.max.map(scaled),
                        ..p.clone()
                    })
                    .collect(),
                aggregation_temporality: h.aggregation_temporality,
            }),
            Data::Summary(s) => Data::Summary(Summary {
                data_points: s
                    .data_points
                    .iter()
                    .map(|p| {
                        let mut point = p.clone();
                        point.attributes = self.attributes(&p.attributes, model);
                        point.sum = scaled(p.sum);
                        for q in &mut point.quantile_values {
                            q.value = scaled(q.value);
                        }
                        point
                    })
                    .collect(),
            }),
            // Exponential scales cannot be multiplied by an arbitrary factor.
            Data::ExponentialHistogram(_) => return None,
        })
    }

    /// A histogram with no buckets from a count point and the sum point of its series.
    fn totals(
        &self,
        count: &NumberDataPoint,
        sums: &[&NumberDataPoint],
        model: Option<&AnyValue>,
    ) -> Option<HistogramDataPoint> {
        let sum = sums.iter().find(|s| s.attributes == count.attributes)?;
        let n = value(count.value).max(0.0) as u64;
        Some(HistogramDataPoint {
            attributes: self.attributes(&count.attributes, model),
            start_time_unix_nano: count.start_time_unix_nano,
            time_unix_nano: count.time_unix_nano,
            count: n,
            sum: Some(value(sum.value) * self.scale),
            bucket_counts: vec![n],
            flags: count.flags | sum.flags,
            ..Default::default()
        })
    }

    /// A point's attributes as this rule records them: the model label as
    /// `gen_ai.request.model` (else the target's), renamed labels, then constant attributes
    /// where the series has none of that key.
    fn attributes(&self, labels: &[KeyValue], model: Option<&AnyValue>) -> Vec<KeyValue> {
        let mut out: Vec<KeyValue> = labels
            .iter()
            .map(|kv| {
                let key = if self.model_label.as_ref() == Some(&kv.key) {
                    MODEL.to_owned()
                } else {
                    self.labels.get(&kv.key).unwrap_or(&kv.key).clone()
                };
                KeyValue {
                    key,
                    value: kv.value.clone(),
                    ..Default::default()
                }
            })
            .collect();
        if let Some(model) = model
            && !out.iter().any(|kv| kv.key == MODEL)
        {
            out.push(KeyValue {
                key: MODEL.into(),
                value: Some(model.clone()),
                ..Default::default()
            });
        }
        for kv in &self.constant {
            if !out.iter().any(|o| o.key == kv.key) {
                out.push(kv.clone());
            }
        }
        out
    }

    /// A number scaled; an integer stays one when the scale is 1.
    fn number(&self, v: number_data_point::Value) -> number_data_point::Value {
        if self.scale == 1.0 {
            v
        } else {
            number_data_point::Value::AsDouble(value(Some(v)) * self.scale)
        }
    }

    fn exemplars(&self, exemplars: &[Exemplar]) -> Vec<Exemplar> {
        exemplars
            .iter()
            .map(|e| Exemplar {
                value: e.value.map(|v| match v {
                    exemplar::Value::AsDouble(d) => exemplar::Value::AsDouble(d * self.scale),
                    exemplar::Value::AsInt(i) if self.scale == 1.0 => exemplar::Value::AsInt(i),
                    exemplar::Value::AsInt(i) => exemplar::Value::AsDouble(i as f64 * self.scale),
                }),
                ..e.clone()
            })
            .collect()
    }
}

/// Adds `metric` to `out`, into the metric of its name and type if there is one.
fn merge(out: &mut Vec<Metric>, mut metric: Metric) {
    for same in out.iter_mut().filter(|m| m.name == metric.name) {
        match (same.data.as_mut(), metric.data.as_mut()) {
            (Some(Data::Gauge(a)), Some(Data::Gauge(b))) => {
                a.data_points.append(&mut b.data_points)
            }
            (Some(Data::Sum(a)), Some(Data::Sum(b))) => a.data_points.append(&mut b.data_points),
            (Some(Data::Histogram(a)), Some(Data::Histogram(b))) => {
                a.data_points.append(&mut b.data_points)
            }
            (Some(Data::Summary(a)), Some(Data::Summary(b))) => {
                a.data_points.append(&mut b.data_points)
            }
            _ => continue,
        }
        return;
    }
    out.push(metric);
}

/// A number point's value as a float (0 when it has none).
fn value(v: Option<number_data_point::Value>) -> f64 {
    match v {
        Some(number_data_point::Value::AsDouble(d)) => d,
        Some(number_data_point::Value::AsInt(i)) => i as f64,
        None => 0.0,
    }
}

fn text(s: &str) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::StringValue(s.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ServerRuleSet;
    use crate::sources::scrape::exposition::{Format, Parser};
    use crate::sources::scrape::translate::{Options, Target, Translator};

    /// What `rules` record from `body`, scraped as `attributes`' target: the derived scope's
    /// metrics.
    fn derived(body: &str, attributes: &[(&str, &str)]) -> Vec<Metric> {
        let target = Target {
            job: "server".into(),
            instance: "10.0.0.7:8000".into(),
            attributes: attributes
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        let mut request = Translator::new(Options::default())
            .translate(&target, Parser::new(body, Format::Text), 1_000)
            .expect("valid")
            .request;
        SeriesRules::new(&DeriveConfig::default())
            .expect("built-in rules")
            .apply(&mut request);
        let scopes = &request.resource_metrics[0].scope_metrics;
        assert_eq!(scopes.len(), 2, "the scraped scope and the derived one");
        assert_eq!(
            scopes[1].scope.as_ref().map(|s| s.name.as_str()),
            Some(DERIVE_SCOPE)
        );
        scopes[1].metrics.clone()
    }

    fn fixture(name: &str) -> String {
        let path = format!(
            "{}/../tests/fixtures/expositions/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(&path).expect("fixture")
    }

    fn named<'a>(metrics: &'a [Metric], name: &str) -> &'a Metric {
        metrics
            .iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("{name} recorded"))
    }

    fn attrs(kvs: &[KeyValue]) -> BTreeMap<String, String> {
        kvs.iter()
            .map(|kv| {
                let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                    Some(any_value::Value::StringValue(s)) => s.clone(),
                    other => panic!("a string attribute, not {other:?}"),
                };
                (kv.key.clone(), v)
            })
            .collect()
    }

    fn histograms(m: &Metric) -> &[HistogramDataPoint] {
        match &m.data {
            Some(Data::Histogram(h)) => &h.data_points,
            other => panic!("{} is a histogram, not {other:?}", m.name),
        }
    }

    /// Each number point's attribute `key` and value.
    fn numbers(m: &Metric, key: &str) -> BTreeMap<String, f64> {
        let points = match &m.data {
            Some(Data::Gauge(g)) => &g.data_points,
            Some(Data::Sum(s)) => &s.data_points,
            other => panic!("{} is a number metric, not {other:?}", m.name),
        };
        points
            .iter()
            .map(|p| {
                let a = attrs(&p.attributes);
                (a.get(key).cloned().unwrap_or_default(), value(p.value))
            })
            .collect()
    }

    const LLAMA: &str = "meta-llama/Llama-3.1-8B-Instruct";

    #[test]
    fn vllm_series_are_recorded_as_genai_metrics_with_the_model_from_model_name() {
        let m = derived(&fixture("vllm.txt"), &[]);
        let names: Vec<&str> = m.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "gen_ai.server.request.duration",
                "gen_ai.server.time_to_first_token",
                "gen_ai.server.time_per_output_token",
                "gen_ai.client.token.usage",
                "inference.tokens",
                "inference.requests",
                "inference.requests.running",
                "inference.requests.waiting",
                "inference.kv_cache.usage",
            ]
        );
        let duration = &histograms(named(&m, "gen_ai.server.request.duration"))[0];
        assert_eq!(
            (duration.count, duration.sum, &duration.explicit_bounds[..]),
            (16, Some(27.0), &[0.3, 1.0, 2.5][..])
        );
        assert_eq!(duration.bucket_counts, [0, 3, 12, 1]);
        assert_eq!(
            attrs(&duration.attributes),
            BTreeMap::from([
                ("engine".into(), "0".into()),
                ("gen_ai.request.model".into(), LLAMA.into()),
                ("inference.engine".into(), "vllm".into()),
            ])
        );
        let usage = histograms(named(&m, "gen_ai.client.token.usage"));
        let sums: BTreeMap<String, f64> = usage
            .iter()
            .map(|p| {
                (
                    attrs(&p.attributes)["gen_ai.token.type"].clone(),
                    p.sum.unwrap_or(0.0),
                )
            })
            .collect();
        assert_eq!(
            sums,
            BTreeMap::from([("input".into(), 5120.0), ("output".into(), 2048.0)])
        );
        assert_eq!(
            numbers(named(&m, "inference.tokens"), "gen_ai.token.type"),
            BTreeMap::from([("input".into(), 5120.0), ("output".into(), 2048.0)])
        );
        assert_eq!(
            numbers(named(&m, "inference.requests"), "finished_reason"),
            BTreeMap::from([
                ("abort".into(), 0.0),
                ("length".into(), 2.0),
                ("stop".into(), 14.0)
            ])
        );
        assert_eq!(
            numbers(
                named(&m, "inference.kv_cache.usage"),
                "gen_ai.request.model"
            ),
            BTreeMap::from([(LLAMA.into(), 0.25)])
        );
    }

    #[test]
    fn an_older_vllm_name_is_read_when_the_newer_one_is_absent() {
        let body = "# TYPE vllm:gpu_cache_usage_perc gauge\n\
                    vllm:gpu_cache_usage_perc{model_name=\"m\"} 0.5\n";
        let m = derived(body, &[]);
        assert_eq!(
            numbers(
                named(&m, "inference.kv_cache.usage"),
                "gen_ai.request.model"
            ),
            BTreeMap::from([("m".into(), 0.5)])
        );
    }

    #[test]
    fn triton_counters_make_a_histogram_and_milliseconds_become_seconds() {
        let m = derived(&fixture("triton.txt"), &[]);
        let duration = &histograms(named(&m, "gen_ai.server.request.duration"))[0];
        assert_eq!(
            (duration.count, duration.sum, duration.explicit_bounds.len()),
            (40, Some(62.0), 0)
        );
        assert_eq!(duration.bucket_counts, [40]);
        assert_eq!(
            attrs(&duration.attributes)["gen_ai.request.model"],
            "ensemble_llm"
        );
        let ttft = &histograms(named(&m, "gen_ai.server.time_to_first_token"))[0];
        assert_eq!(ttft.explicit_bounds, [0.1, 0.5]);
        assert_eq!((ttft.count, ttft.sum), (40, Some(6.0)));
        assert_eq!(
            numbers(named(&m, "inference.requests"), "error.type"),
            BTreeMap::from([
                ("".into(), 40.0),
                ("BACKEND".into(), 2.0),
                ("REJECTED".into(), 1.0)
            ])
        );
        assert_eq!(
            numbers(named(&m, "inference.requests.waiting"), "version"),
            BTreeMap::from([("1".into(), 5.0)])
        );
    }

    #[test]
    fn tgi_takes_its_model_from_the_targets_label_and_failures_carry_error_type() {
        let model = [("gen_ai.request.model", "bigscience/bloom-560m")];
        let m = derived(&fixture("tgi.txt"), &model);
        let duration = &histograms(named(&m, "gen_ai.server.request.duration"))[0];
        assert_eq!((duration.count, duration.sum), (10, Some(13.5)));
        assert_eq!(
            attrs(&duration.attributes),
            BTreeMap::from([
                (
                    "gen_ai.request.model".into(),
                    "bigscience/bloom-560m".into()
                ),
                ("inference.engine".into(), "tgi".into()),
            ])
        );
        assert_eq!(
            numbers(named(&m, "inference.requests"), "error.type"),
            BTreeMap::from([("".into(), 10.0), ("validation".into(), 2.0)])
        );
        assert_eq!(
            numbers(named(&m, "inference.requests.running"), "inference.engine"),
            BTreeMap::from([("tgi".into(), 6.0)])
        );
    }

    #[test]
    fn sglang_series_are_recorded_with_the_model_from_model_name() {
        let m = derived(&fixture("sglang.txt"), &[]);
        let tpot = &histograms(named(&m, "gen_ai.server.time_per_output_token"))[0];
        assert_eq!((tpot.count, tpot.sum), (2970, Some(26.7)));
        assert_eq!(
            attrs(&tpot.attributes)["gen_ai.request.model"],
            "Qwen/Qwen2.5-7B-Instruct"
        );
        assert_eq!(
            numbers(named(&m, "inference.requests.running"), "inference.engine"),
            BTreeMap::from([("sglang".into(), 7.0)])
        );
    }

    #[test]
    fn a_vanished_series_ends_its_derived_series_too() {
        let target = Target {
            job: "vllm".into(),
            instance: "a:1".into(),
            attributes: Vec::new(),
        };
        let rules = SeriesRules::new(&DeriveConfig::default()).expect("rules");
        let mut translator = Translator::new(Options::default());
        let body = "# TYPE vllm:num_requests_running gauge\n\
                    vllm:num_requests_running{model_name=\"m\"} 3\n";
        let first = translator.translate(&target, Parser::new(body, Format::Text), 1);
        rules.apply(&mut first.expect("valid").request);
        let mut gone = translator.ended(&target, 2).request;
        rules.apply(&mut gone);
        let derived = &gone.resource_metrics[0].scope_metrics[1].metrics;
        let Some(Data::Gauge(g)) = &named(derived, "inference.requests.running").data else {
            panic!("a gauge")
        };
        assert_eq!(g.data_points.len(), 1);
        assert_eq!(g.data_points[0].flags & 1, 1, "no recorded value");
    }

    #[test]
    fn configured_rules_follow_the_built_in_sets_and_the_sets_can_be_turned_off() {
        let config: DeriveConfig = toml::from_str(
            "series_rule_sets = []\n\
             [[series_rules]]\n\
             name = \"gen_ai.server.request.duration\"\n\
             unit = \"s\"\n\
             metric = \"llama_request_ms\"\n\
             scale = 0.001\n\
             model_label = \"model\"\n\
             constant_attributes = { \"inference.engine\" = \"llama.cpp\" }\n",
        )
        .expect("config");
        assert!(config.series_rule_sets.is_empty());
        let rules = SeriesRules::new(&config).expect("rules");
        let target = Target {
            job: "llama".into(),
            instance: "a:1".into(),
            attributes: Vec::new(),
        };
        let body = "# TYPE llama_request_ms histogram\n\
                    llama_request_ms_bucket{model=\"q4\",le=\"500\"} 1\n\
                    llama_request_ms_bucket{model=\"q4\",le=\"+Inf\"} 2\n\
                    llama_request_ms_sum{model=\"q4\"} 1500\n\
                    llama_request_ms_count{model=\"q4\"} 2\n\
                    # TYPE vllm:num_requests_running gauge\n\
                    vllm:num_requests_running 3\n";
        let mut request = Translator::new(Options::default())
            .translate(&target, Parser::new(body, Format::Text), 1)
            .expect("valid")
            .request;
        rules.apply(&mut request);
        let derived = &request.resource_metrics[0].scope_metrics[1].metrics;
        assert_eq!(derived.len(), 1, "no vLLM rule ran");
        let point = &histograms(&derived[0])[0];
        assert_eq!(
            (point.explicit_bounds.as_slice(), point.sum),
            (&[0.5][..], Some(1.5))
        );
        assert_eq!(attrs(&point.attributes)["gen_ai.request.model"], "q4");
        assert_eq!(
            ServerRuleSet::ALL.len(),
            DeriveConfig::default().series_rule_sets.len()
        );
    }

    #[test]
    fn a_rule_without_a_name_or_a_metric_or_with_a_bad_scale_is_refused_by_name() {
        let rule = |extra: &str| -> String {
            let config: DeriveConfig =
                toml::from_str(&format!("[[series_rules]]\n{extra}")).expect("config");
            SeriesRules::new(&config).expect_err("refused").to_string()
        };
        assert_eq!(
            rule("name = \"\"\nmetric = \"a\""),
            "a series rule has an empty name"
        );
        assert_eq!(
            rule("name = \"x\"\nmetric = []"),
            "series rule `x`: `metric` names no scraped metric"
        );
        assert_eq!(
            rule("name = \"x\"\nmetric = \"a\"\nscale = nan"),
            "rule `x`: scale must be a finite number"
        );
    }
}
