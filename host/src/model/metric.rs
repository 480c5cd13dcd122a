//! What every metric reader and writer shares: the kinds of instrument, the instrumentation
//! scope, and the engine's choices the specification names (aggregation, histogram aggregation,
//! exemplar filter, temporality preference).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::attributes::AttributeSet;
use super::event::TraceContext;

/// Whether a point carries the total since its series started or the change since the previous export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Temporality {
    /// Totals since the series started.
    Cumulative,
    /// Changes since the previous export.
    Delta,
}

/// The kind of an instrument, which fixes its default aggregation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InstrumentKind {
    /// A monotonic sum; negative measurements are rejected.
    Counter,
    /// A sum that may go up and down.
    UpDownCounter,
    /// The last value recorded.
    Gauge,
    /// An explicit-bucket histogram.
    Histogram,
    /// A monotonic sum whose callback reports the total once per collection.
    ObservableCounter,
    /// A sum whose callback reports the current total once per collection.
    ObservableUpDownCounter,
    /// A value a callback reports once per collection.
    ObservableGauge,
    /// A summary aggregated elsewhere (a Prometheus or OTLP summary): count, sum and
    /// quantiles, kept as received; nothing records into it.
    Summary,
}

impl InstrumentKind {
    /// Whether the instrument's sums only ever grow (Counter, ObservableCounter).
    pub fn is_monotonic(self) -> bool {
        matches!(self, Self::Counter | Self::ObservableCounter)
    }

    /// Whether measurements come from a callback at collection time.
    pub fn is_observable(self) -> bool {
        matches!(
            self,
            Self::ObservableCounter | Self::ObservableUpDownCounter | Self::ObservableGauge
        )
    }

    /// The kind's name in the plugin contract and in logs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::UpDownCounter => "up-down-counter",
            Self::Gauge => "gauge",
            Self::Histogram => "histogram",
            Self::ObservableCounter => "observable-counter",
            Self::ObservableUpDownCounter => "observable-up-down-counter",
            Self::ObservableGauge => "observable-gauge",
            Self::Summary => "summary",
        }
    }
}

/// What identifies and documents an instrument.
#[derive(Debug, Clone, PartialEq)]
pub struct Descriptor {
    /// Instrument name, OpenTelemetry style (`gen_ai.server.request.duration`).
    pub name: String,
    /// UCUM unit (`s`, `By`, `{token}`), possibly empty.
    pub unit: String,
    /// Human-readable description.
    pub description: String,
    /// The instrument kind.
    pub kind: InstrumentKind,
    /// The instrumentation scope the instrument belongs to.
    pub scope: Scope,
}

/// An instrumentation scope: the component that produced an instrument, as OTLP names it.
#[derive(Debug, Clone, PartialEq)]
pub struct Scope {
    /// The scope name (`wasmtel.gpu`, an SDK's meter name).
    pub name: Arc<str>,
    /// The scope version, possibly empty.
    pub version: Arc<str>,
    /// The scope attributes.
    pub attributes: AttributeSet,
    /// The schema its telemetry follows (a received scope's `schema_url`), possibly empty.
    pub schema_url: Arc<str>,
}

impl From<&str> for Scope {
    /// One of the host's own scopes: `name`, at the host's version, with no attributes.
    fn from(name: &str) -> Self {
        Self {
            name: Arc::from(name),
            version: Arc::from(env!("CARGO_PKG_VERSION")),
            attributes: AttributeSet::empty(),
            schema_url: Arc::from(""),
        }
    }
}

/// How histogram instruments aggregate, as `OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION` names it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HistogramAggregation {
    /// Explicit bucket boundaries (the default).
    #[default]
    ExplicitBucketHistogram,
    /// Base-2 exponential buckets (160 per range, starting at scale 20).
    Base2ExponentialBucketHistogram,
}

/// Which measurements may become exemplars, as `OTEL_METRICS_EXEMPLAR_FILTER` names it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
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
