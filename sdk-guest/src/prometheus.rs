//! Prometheus naming for plugins: the same metric and label names the host's `/metrics` uses.

pub use wasmtel_naming::{Shape, instance, label_name, metric_name};

use crate::{Attributes, MetricKind, MetricRef, Value};

impl MetricRef<'_> {
    /// The metric's Prometheus name: sanitised, with its unit word and, for monotonic sums, `_total`.
    pub fn prometheus_name(&self) -> String {
        let shape = match self.kind() {
            MetricKind::Sum { monotonic: true } => Shape::Counter,
            MetricKind::Gauge => Shape::Gauge,
            _ => Shape::Other,
        };
        metric_name(self.name(), self.unit(), shape)
    }
}

/// An attribute set's Prometheus labels, `{key="value",…}` (empty for no attributes), names
/// sanitised and values escaped as the text format wants: render it once per set with a
/// [`PerSet`](crate::PerSet).
pub fn labels(attributes: Attributes<'_>) -> String {
    let mut out = String::new();
    for (i, (key, value)) in attributes.iter().enumerate() {
        out.push(if i == 0 { '{' } else { ',' });
        out.push_str(&label_name(key));
        out.push_str("=\"");
        let text = match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        for c in text.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    if !out.is_empty() {
        out.push('}');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BatchBuilder, PerSet};

    #[test]
    fn metrics_are_named_as_the_host_exposes_them() {
        let batch = BatchBuilder::new()
            .counter("inference.requests", "{request}", &[], 1.0)
            .gauge("gpu.utilization", "1", &[], 0.5)
            .metrics();
        let names: Vec<String> = batch.metrics().map(|m| m.prometheus_name()).collect();
        assert_eq!(names, ["inference_requests_total", "gpu_utilization_ratio"]);
        assert_eq!(label_name("gen_ai.request.model"), "gen_ai_request_model");
    }

    #[test]
    fn labels_are_rendered_once_per_set_and_escaped() {
        let batch = BatchBuilder::new()
            .gauge(
                "g",
                "1",
                &[("gen_ai.model", "a\"b\\c\n".into()), ("n", 3i64.into())],
                1.0,
            )
            .gauge(
                "g",
                "1",
                &[("gen_ai.model", "a\"b\\c\n".into()), ("n", 3i64.into())],
                2.0,
            )
            .gauge("g", "1", &[], 3.0)
            .metrics();
        let mut cache = PerSet::new(&batch.table);
        let mut rendered = 0;
        let all: Vec<String> = batch
            .metrics()
            .flat_map(|m| m.numbers().collect::<Vec<_>>())
            .map(|p| {
                cache
                    .get(p.attributes(), |a| {
                        rendered += 1;
                        labels(a)
                    })
                    .clone()
            })
            .collect();
        assert_eq!(all[0], "{gen_ai_model=\"a\\\"b\\\\c\\n\",n=\"3\"}");
        assert_eq!((all[0] == all[1], all[2].as_str(), rendered), (true, "", 2));
    }
}
