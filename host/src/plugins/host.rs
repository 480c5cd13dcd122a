//! The host side of the `host` interface: logging and the clock, the only capabilities a plugin has.
//!
//! A plugin's log line is made safe before it reaches the host's log: credential values are
//! masked, control characters escaped (a plugin cannot forge a host line), the length bounded,
//! and lines past the plugin's rate are dropped and counted.

use std::time::Instant;

use super::bindings::host::{Host, Level};
use super::runtime::PluginState;
use crate::clock::unix_nanos;

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
            self.stats
                .refuse(&self.name, "log_lines_per_second", &detail);
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
