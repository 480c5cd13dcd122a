//! The telemetry data itself: attributes, resources and scopes, inference events, log records
//! and the kinds of metric. What intake produces and every exporter consumes; no I/O, no
//! configuration.

pub mod attributes;
pub mod content;
pub mod event;
pub mod key_values;
pub mod log;
pub mod metric;
pub mod record;
pub mod resource;
pub mod select;
pub mod stream;
pub mod wire;

/// A telemetry signal an integration carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    /// Metrics.
    Metrics,
    /// Logs (raw events and received OTLP log records).
    Logs,
    /// Traces (received OTLP spans).
    Traces,
}

impl Signal {
    /// Every signal, metrics first.
    pub const ALL: [Signal; 3] = [Signal::Metrics, Signal::Logs, Signal::Traces];

    /// The signals carried as records (log records and spans), each encoded once.
    pub const RECORDS: [Signal; 2] = [Signal::Logs, Signal::Traces];

    /// The signal's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Metrics => "metrics",
            Signal::Logs => "logs",
            Signal::Traces => "traces",
        }
    }

    /// The signal named `text`.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}
