//! What every metric reader and writer shares: the kinds of instrument and the instrumentation scope.

use std::sync::Arc;

use super::attributes::AttributeSet;

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
        }
    }
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
