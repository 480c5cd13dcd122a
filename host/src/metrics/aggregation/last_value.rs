//! The LastValue aggregation: the most recent measurement wins.

use super::AtomicF64;

/// Most recent measurement of a series (Gauge).
#[derive(Debug, Default)]
pub struct LastValue {
    value: AtomicF64,
}

impl LastValue {
    /// Replaces the value with one measurement.
    pub fn update(&self, value: f64) {
        self.value.store(value);
    }

    /// The last value recorded.
    pub fn value(&self) -> f64 {
        self.value.load()
    }
}
