//! The Summary aggregation: a summary computed elsewhere, the last one received wins.

use std::sync::{Mutex, PoisonError};

/// A summary as received: how many observations, their sum, and quantiles of them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SummaryPoint {
    /// Observations.
    pub count: u64,
    /// Their sum.
    pub sum: f64,
    /// (quantile in `[0, 1]`, value) pairs, as received.
    pub quantiles: Vec<(f64, f64)>,
}

/// The last summary point received for a series.
#[derive(Debug, Default)]
pub struct Summary {
    last: Mutex<SummaryPoint>,
}

impl Summary {
    /// Replaces the point.
    pub fn set(&self, point: &SummaryPoint) {
        point.clone_into(&mut self.last.lock().unwrap_or_else(PoisonError::into_inner));
    }

    /// The last point received.
    pub fn snapshot(&self) -> SummaryPoint {
        self.last
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}
