//! Prometheus naming for plugins: the same metric and label names the host's `/metrics` uses.

pub use wasmtel_naming::{Shape, label_name, metric_name};

use crate::{Metric, MetricData};

impl Metric {
    /// The metric's Prometheus name: sanitised, with its unit word and, for monotonic sums, `_total`.
    pub fn prometheus_name(&self) -> String {
        let shape = match &self.data {
            MetricData::Sum(sum) if sum.monotonic => Shape::Counter,
            MetricData::Gauge(_) => Shape::Gauge,
            _ => Shape::Other,
        };
        metric_name(&self.name, &self.unit, shape)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Sum, Temporality};

    fn metric(name: &str, unit: &str, data: MetricData) -> Metric {
        Metric {
            name: name.into(),
            description: String::new(),
            unit: unit.into(),
            data,
        }
    }

    #[test]
    fn metrics_are_named_as_the_host_exposes_them() {
        let counter = MetricData::Sum(Sum {
            points: vec![],
            temporality: Temporality::Cumulative,
            monotonic: true,
        });
        assert_eq!(
            metric("inference.requests", "{request}", counter).prometheus_name(),
            "inference_requests_total"
        );
        assert_eq!(
            metric("gpu.utilization", "1", MetricData::Gauge(vec![])).prometheus_name(),
            "gpu_utilization_ratio"
        );
        assert_eq!(label_name("gen_ai.request.model"), "gen_ai_request_model");
    }
}
