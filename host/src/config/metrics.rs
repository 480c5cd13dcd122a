//! `[metrics]`: the aggregation engine's settings, stream views, exemplars and temporality.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{duration, show_duration};
use crate::model::event::TraceContext;
use crate::model::metric::InstrumentKind;

/// Distinct attribute sets per instrument before new ones overflow, by default.
pub const DEFAULT_CARDINALITY_LIMIT: usize = 2000;

/// The `[metrics]` section.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Distinct attribute sets per instrument before overflow (default 2000).
    pub cardinality_limit: usize,
    /// How histogram instruments aggregate (`explicit_bucket_histogram`, the default, or
    /// `base2_exponential_bucket_histogram`).
    pub default_histogram_aggregation: Option<HistogramAggregation>,
    /// Which measurements become exemplars (`trace_based`, the default, `always_on` or `always_off`).
    pub exemplar_filter: Option<ExemplarFilter>,
    /// Remove series not measured for this long (e.g. `"1h"`); unset keeps every series.
    #[serde(deserialize_with = "duration", serialize_with = "show_duration")]
    pub idle_series_expiry: Option<Duration>,
    /// `[[metrics.views]]`: stream views, the first selecting an instrument wins.
    pub views: Vec<StreamView>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            cardinality_limit: DEFAULT_CARDINALITY_LIMIT,
            default_histogram_aggregation: None,
            exemplar_filter: None,
            idle_series_expiry: None,
            views: Vec::new(),
        }
    }
}

/// How histogram instruments aggregate, as `OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION` names it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HistogramAggregation {
    /// Explicit bucket boundaries (the default).
    #[default]
    ExplicitBucketHistogram,
    /// Base-2 exponential buckets (160 per range, starting at scale 20).
    Base2ExponentialBucketHistogram,
}

/// Which measurements may become exemplars, as `OTEL_METRICS_EXEMPLAR_FILTER` names it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExemplarFilter {
    /// Only measurements made in the context of a (sampled) trace: the default.
    #[default]
    TraceBased,
    /// Every measurement.
    AlwaysOn,
    /// None.
    AlwaysOff,
}

impl ExemplarFilter {
    /// Whether a measurement made under `trace` is offered to its series' reservoir.
    pub fn samples(self, trace: Option<&TraceContext>) -> bool {
        match self {
            Self::TraceBased => trace.is_some(),
            Self::AlwaysOn => true,
            Self::AlwaysOff => false,
        }
    }
}

/// An exporter's temporality preference, as `OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE` names it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TemporalityPreference {
    /// Every instrument cumulative (the default).
    #[default]
    Cumulative,
    /// Counters, observable counters and histograms as deltas; up-down counters cumulative.
    Delta,
    /// Counters and histograms as deltas; observable counters and up-down counters cumulative.
    #[serde(rename = "lowmemory")]
    LowMemory,
}

impl TemporalityPreference {
    /// Whether instruments of `kind` are exported as deltas under this preference.
    pub fn is_delta(self, kind: InstrumentKind) -> bool {
        use InstrumentKind::*;
        match self {
            Self::Cumulative => false,
            Self::Delta => matches!(kind, Counter | ObservableCounter | Histogram),
            Self::LowMemory => matches!(kind, Counter | Histogram),
        }
    }
}

/// The aggregation a view can choose for the instruments it selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregation {
    /// Record nothing; the metric is not exported.
    Drop,
    /// The arithmetic sum of measurements.
    Sum,
    /// The last measurement.
    LastValue,
    /// Explicit-bucket histogram (bounds from `buckets`, else the instrument's).
    ExplicitBucketHistogram,
    /// Base-2 exponential histogram.
    Base2ExponentialBucketHistogram,
}

/// One `[[metrics.views]]` entry: selection criteria and what to change.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StreamView {
    /// Instrument name, `*` matching any run of characters (default: every instrument).
    pub instrument: Option<String>,
    /// Only instruments of this kind.
    pub kind: Option<InstrumentKind>,
    /// Only instruments of this scope (`wasmtel.derive`, `wasmtel`).
    pub scope: Option<String>,
    /// The metric's new name (only for a view naming one instrument exactly).
    pub rename: Option<String>,
    /// The metric's new description.
    pub description: Option<String>,
    /// Attribute keys to keep; the others are removed from every series.
    pub attribute_keys: Option<Vec<String>>,
    /// The aggregation to use instead of the instrument kind's default.
    pub aggregation: Option<Aggregation>,
    /// Histogram bucket boundaries, replacing the instrument's advisory ones.
    pub buckets: Option<Vec<f64>>,
    /// Distinct attribute sets before overflow, replacing the global limit.
    pub cardinality_limit: Option<usize>,
}

/// A view that cannot work as configured.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StreamViewError {
    /// A rename on a wildcard selection would give several instruments one name.
    #[error("view {0}: `rename` needs `instrument` to name exactly one instrument, without `*`")]
    WildcardRename(usize),
    /// Bucket boundaries not finite and strictly increasing.
    #[error("view {0}: `buckets` must be finite and strictly increasing")]
    BadBuckets(usize),
    /// A view that changes nothing.
    #[error(
        "view {0} changes nothing: give rename, description, attribute_keys, aggregation, buckets or cardinality_limit"
    )]
    Empty(usize),
}

impl StreamView {
    /// Checks the view (number `index` in the configuration, from 1) for mistakes that would only show later.
    pub fn validate(&self, index: usize) -> Result<(), StreamViewError> {
        let wildcard = self.instrument.as_deref().is_none_or(|i| i.contains('*'));
        if self.rename.is_some() && wildcard {
            return Err(StreamViewError::WildcardRename(index));
        }
        if let Some(b) = &self.buckets
            && (b.iter().any(|x| !x.is_finite()) || b.windows(2).any(|w| w[0] >= w[1]))
        {
            return Err(StreamViewError::BadBuckets(index));
        }
        let changes = self.rename.is_some()
            || self.description.is_some()
            || self.attribute_keys.is_some()
            || self.aggregation.is_some()
            || self.buckets.is_some()
            || self.cardinality_limit.is_some();
        if !changes {
            return Err(StreamViewError::Empty(index));
        }
        Ok(())
    }
}

/// Warnings about views that disagree: two renaming to one name, or one that an earlier
/// catch-all view leaves nothing to select.
pub fn conflicts(views: &[StreamView]) -> Vec<String> {
    let mut out = Vec::new();
    for (i, view) in views.iter().enumerate() {
        if let Some(name) = &view.rename {
            for (j, earlier) in views[..i].iter().enumerate() {
                if earlier.rename.as_deref() == Some(name) {
                    out.push(format!(
                        "views {} and {} both rename to `{name}`",
                        j + 1,
                        i + 1
                    ));
                }
            }
        }
        let catch_all = |v: &StreamView| {
            v.instrument.as_deref().is_none_or(|p| p == "*")
                && v.kind.is_none()
                && v.scope.is_none()
        };
        if let Some(j) = views[..i].iter().position(catch_all) {
            out.push(format!(
                "view {} never applies: view {} selects every instrument first",
                i + 1,
                j + 1
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACE: TraceContext = TraceContext {
        trace_id: [1; 16],
        span_id: [2; 8],
    };

    #[test]
    fn filters_follow_the_specification() {
        use ExemplarFilter::*;
        let cases =
            [TraceBased, AlwaysOn, AlwaysOff].map(|f| (f.samples(Some(&TRACE)), f.samples(None)));
        assert_eq!(cases, [(true, false), (true, true), (false, false)]);
    }
}
