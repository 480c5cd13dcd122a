//! Wall-clock time as OTLP wants it: nanoseconds since the Unix epoch.

use std::time::{SystemTime, UNIX_EPOCH};

/// The current time in nanoseconds since the Unix epoch (0 if the clock is before 1970).
pub fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}
