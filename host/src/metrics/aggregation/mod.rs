//! Aggregations: how the measurements of one series are combined.

mod exponential;
mod histogram;
mod last_value;
mod sum;
mod summary;

pub use exponential::{
    Buckets, ExponentialHistogram, ExponentialPoint, MAX_SCALE, MAX_SIZE, MIN_SCALE,
};
pub use histogram::{Histogram, HistogramPoint};
pub use last_value::LastValue;
pub use sum::Sum;
pub use summary::{Summary, SummaryPoint};

use std::sync::atomic::{AtomicU64, Ordering};

/// A lock-free `f64` cell stored as its bit pattern.
#[derive(Debug, Default)]
pub(crate) struct AtomicF64(AtomicU64);

impl AtomicF64 {
    /// Reads the current value.
    pub(crate) fn load(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }

    /// Replaces the value.
    pub(crate) fn store(&self, value: f64) {
        self.0.store(value.to_bits(), Ordering::Relaxed);
    }

    /// Adds `delta` with a compare-and-swap loop.
    pub(crate) fn add(&self, delta: f64) {
        let mut current = self.0.load(Ordering::Relaxed);
        loop {
            let next = (f64::from_bits(current) + delta).to_bits();
            match self
                .0
                .compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(seen) => current = seen,
            }
        }
    }
}
