//! How the benchmarks time a summary line beside criterion's own figures.

use std::time::{Duration, Instant};

/// Seconds per call of `f`, the best of five half-second rounds.
pub(crate) fn best_of_five(mut f: impl FnMut()) -> f64 {
    (0..5)
        .map(|_| {
            let start = Instant::now();
            let mut calls = 0u32;
            while start.elapsed() < Duration::from_millis(500) {
                f();
                calls += 1;
            }
            start.elapsed().as_secs_f64() / f64::from(calls)
        })
        .fold(f64::MAX, f64::min)
}
