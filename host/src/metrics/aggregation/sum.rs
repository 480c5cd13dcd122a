//! The Sum aggregation: the running total of every measurement.

use super::AtomicF64;

/// Running total of a series (Counter and UpDownCounter).
#[derive(Debug, Default)]
pub struct Sum {
    total: AtomicF64,
}

impl Sum {
    /// Adds one measurement.
    pub fn update(&self, value: f64) {
        self.total.add(value);
    }

    /// Replaces the total with one an observable instrument reported.
    pub fn set(&self, total: f64) {
        self.total.store(total);
    }

    /// The total so far.
    pub fn value(&self) -> f64 {
        self.total.load()
    }
}
