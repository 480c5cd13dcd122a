//! The host side of the `host` interface: logging and the clock, the only capabilities a plugin has.
//!
//! A plugin's log line is made safe before it reaches the host's log: credential values are
//! masked, control characters escaped (a plugin cannot forge a host line), the length bounded,
//! and lines past the plugin's rate are dropped and counted.

use std::time::Instant;

use super::bindings::host::{Host, Level};
use super::budget;
use super::runtime::PluginState;
use crate::clock::unix_nanos;

/// A token bucket of log lines: `log_lines_per_second`, with a burst of as many.
#[derive(Debug, Default)]
pub(super) struct LogBucket {
    tokens: f64,
    last: Option<Instant>,
}

impl LogBucket {
    /// Takes one line's token at `now`; `false` when the rate is spent.
    fn take(&mut self, per_second: usize, now: Instant) -> bool {
        let rate = per_second as f64;
        let elapsed = self
            .last
            .map_or(1.0, |t| now.duration_since(t).as_secs_f64());
        self.tokens = (self.tokens + elapsed * rate).min(rate);
        self.last = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

impl Host for PluginState {
    fn log(&mut self, level: Level, message: String) {
        let _span =
            tracing::trace_span!("host function", plugin = %self.name, function = "log").entered();
        let budgets = self.limits.budgets;
        if !self.logs.take(budgets.log_lines_per_second, Instant::now()) {
            let detail = format!(
                "wrote more than {} log lines a second; the rest are dropped",
                budgets.log_lines_per_second
            );
            budget::refuse(&self.name, "log_lines_per_second", detail);
            return;
        }
        let message = crate::redact::clean(&message, budgets.log_line_bytes);
        let plugin = &*self.name;
        match level {
            Level::Trace => tracing::trace!(plugin, "{message}"),
            Level::Debug => tracing::debug!(plugin, "{message}"),
            Level::Info => tracing::info!(plugin, "{message}"),
            Level::Warn => tracing::warn!(plugin, "{message}"),
            Level::Error => tracing::error!(plugin, "{message}"),
        }
    }

    fn now_unix_nano(&mut self) -> u64 {
        let _span =
            tracing::trace_span!("host function", plugin = %self.name, function = "now-unix-nano")
                .entered();
        unix_nanos()
    }
}

impl super::bindings::types::Host for PluginState {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_rate_allows_a_burst_then_refills() {
        let mut bucket = LogBucket::default();
        let start = Instant::now();
        let allowed = (0..150).filter(|_| bucket.take(100, start)).count();
        assert_eq!(allowed, 100, "a burst of one second's lines");
        let later = start + std::time::Duration::from_millis(500);
        let allowed = (0..150).filter(|_| bucket.take(100, later)).count();
        assert_eq!(allowed, 50, "half a second refills half");
    }
}
