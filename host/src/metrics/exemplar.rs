//! Exemplars: sampled measurements kept beside a series' aggregate, with the trace that made them.

use std::sync::{Mutex, PoisonError};

use crate::model::event::TraceContext;

/// One sampled measurement.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Exemplar {
    /// The measured value.
    pub value: f64,
    /// When it was measured (Unix nanoseconds).
    pub time_unix_nano: u64,
    /// The trace it was measured in, if any.
    pub trace: Option<TraceContext>,
}

/// How a series keeps its exemplars.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReservoirKind {
    /// One slot per histogram bucket, holding the latest measurement that fell in it.
    Aligned(usize),
    /// A fixed number of slots holding the latest measurements, oldest replaced first.
    FixedSize(usize),
}

/// A fixed-size store of exemplars, allocated on a series' first sampled measurement.
#[derive(Debug)]
pub struct Reservoir {
    kind: ReservoirKind,
    state: Mutex<Slots>,
}

#[derive(Debug)]
struct Slots {
    slots: Box<[Option<Exemplar>]>,
    offered: usize,
}

impl Reservoir {
    /// An empty reservoir of `kind` (at least one slot).
    pub fn new(kind: ReservoirKind) -> Self {
        let (ReservoirKind::Aligned(n) | ReservoirKind::FixedSize(n)) = kind;
        Self {
            kind,
            state: Mutex::new(Slots {
                slots: vec![None; n.max(1)].into_boxed_slice(),
                offered: 0,
            }),
        }
    }

    /// Keeps `value`, measured at `time_unix_nano` under `trace`; `bucket` is its histogram
    /// bucket (aligned reservoirs).
    pub fn offer(
        &self,
        value: f64,
        bucket: usize,
        trace: Option<TraceContext>,
        time_unix_nano: u64,
    ) {
        let exemplar = Exemplar {
            value,
            time_unix_nano,
            trace,
        };
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let len = s.slots.len();
        let at = match self.kind {
            ReservoirKind::Aligned(_) => bucket.min(len - 1),
            ReservoirKind::FixedSize(_) => s.offered % len,
        };
        s.slots[at] = Some(exemplar);
        s.offered += 1;
    }

    /// The exemplars measured at or after `since` (Unix nanoseconds), by slot; aligned
    /// reservoirs give their bucket with each.
    pub fn collect(&self, since: u64) -> Vec<(usize, Exemplar)> {
        let s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        s.slots
            .iter()
            .enumerate()
            .filter_map(|(i, e)| e.filter(|e| e.time_unix_nano >= since).map(|e| (i, e)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::unix_nanos;

    const TRACE: TraceContext = TraceContext {
        trace_id: [1; 16],
        span_id: [2; 8],
    };

    #[test]
    fn aligned_reservoirs_keep_the_latest_measurement_per_bucket() {
        let r = Reservoir::new(ReservoirKind::Aligned(3));
        r.offer(0.5, 0, None, unix_nanos());
        r.offer(0.7, 0, Some(TRACE), unix_nanos());
        r.offer(9.0, 2, None, unix_nanos());
        r.offer(99.0, 7, None, unix_nanos()); // past the last bucket: kept in the last
        let got: Vec<(usize, f64, bool)> = r
            .collect(0)
            .into_iter()
            .map(|(i, e)| (i, e.value, e.trace.is_some()))
            .collect();
        assert_eq!(got, [(0, 0.7, true), (2, 99.0, false)]);
    }

    #[test]
    fn fixed_size_reservoirs_replace_their_oldest_exemplar() {
        let r = Reservoir::new(ReservoirKind::FixedSize(2));
        for v in [1.0, 2.0, 3.0] {
            r.offer(v, 0, None, unix_nanos());
        }
        let values: Vec<f64> = r.collect(0).into_iter().map(|(_, e)| e.value).collect();
        assert_eq!(values, [3.0, 2.0]);
        let later = unix_nanos() + 1_000_000_000;
        assert!(r.collect(later).is_empty(), "none measured since `later`");
    }
}
