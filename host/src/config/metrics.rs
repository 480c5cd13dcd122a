//! `[metrics]`: the aggregation engine's settings: cardinality limit, histogram aggregation,
//! exemplar filter, idle-series expiry and stream views.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{duration, show_duration};
use crate::model::metric::{ExemplarFilter, HistogramAggregation};
use crate::model::stream::StreamView;

/// Distinct attribute sets per instrument before new ones overflow, by default.
pub const DEFAULT_CARDINALITY_LIMIT: usize = 2000;

/// Bytes of distinct attribute sets per instrument, per series of the cardinality limit, by
/// default: 2,000 series make 1 MiB.
const DEFAULT_BYTES_PER_SERIES: usize = 512;

/// The `[metrics]` section.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Distinct attribute sets per instrument before overflow (default 2000).
    pub cardinality_limit: usize,
    /// Bytes of distinct attribute sets (as stored) per instrument before new sets overflow
    /// (default 512 per series of `cardinality_limit`: 1 MiB): what views add counts, so fat
    /// attribute sets cannot add up unbounded.
    pub attribute_bytes_limit: Option<usize>,
    /// How histogram instruments aggregate (`explicit_bucket_histogram`, the default, or
    /// `base2_exponential_bucket_histogram`).
    pub default_histogram_aggregation: Option<HistogramAggregation>,
    /// Which measurements become exemplars (`trace_based`, the default, `always_on` or `always_off`).
    pub exemplar_filter: Option<ExemplarFilter>,
    /// Remove series not measured for this long (e.g. `"1h"`); unset keeps every series of
    /// the host's own (received ones follow `received_series_expiry`).
    #[serde(deserialize_with = "duration", serialize_with = "show_duration")]
    pub idle_series_expiry: Option<Duration>,
    /// Remove series of received resources (OTLP senders) not measured for this long (default
    /// `idle_series_expiry` when set, else 5 minutes, as the Collector's Prometheus exporter
    /// does; `"0s"` keeps them).
    #[serde(deserialize_with = "duration", serialize_with = "show_duration")]
    pub received_series_expiry: Option<Duration>,
    /// `[[metrics.views]]`: stream views, the first selecting an instrument wins.
    pub views: Vec<StreamView>,
}

/// How long a received series may go unmeasured before it ends, by default.
pub const DEFAULT_RECEIVED_SERIES_EXPIRY: Duration = Duration::from_secs(300);

impl MetricsConfig {
    /// The attribute byte budget of each instrument.
    pub fn attribute_bytes_limit(&self) -> usize {
        self.attribute_bytes_limit.unwrap_or(
            self.cardinality_limit
                .saturating_mul(DEFAULT_BYTES_PER_SERIES),
        )
    }

    /// How long received series may go unmeasured: `None` keeps them.
    pub fn received_expiry(&self) -> Option<Duration> {
        let expiry = self
            .received_series_expiry
            .or(self.idle_series_expiry)
            .unwrap_or(DEFAULT_RECEIVED_SERIES_EXPIRY);
        (!expiry.is_zero()).then_some(expiry)
    }
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            cardinality_limit: DEFAULT_CARDINALITY_LIMIT,
            attribute_bytes_limit: None,
            default_histogram_aggregation: None,
            exemplar_filter: None,
            idle_series_expiry: None,
            received_series_expiry: None,
            views: Vec::new(),
        }
    }
}
