//! What one plugin instance may use — memory, time per call — and what its calls may return.

use std::time::Duration;

/// The resources one plugin instance may use, and what its calls may return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// All linear memories and tables of one instance together, in bytes (default 64 MiB).
    pub memory_bytes: usize,
    /// Wall-clock time one call may take (default 100 ms).
    pub call_timeout: Duration,
    /// How long a plugin marked failed rests before it is tried again (default 60 s; doubles
    /// while it keeps failing).
    pub cool_down: Duration,
    /// Bounds on results and log lines.
    pub budgets: Budgets,
}

/// Bounds on what one plugin call may return, resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budgets {
    /// Requests or datagrams per `encode` call.
    pub outbound_items: usize,
    /// Bytes of bodies and datagrams per `encode` call.
    pub outbound_bytes: usize,
    /// Attributes per view answer.
    pub view_attributes: usize,
    /// Bytes per attribute key from a view.
    pub key_bytes: usize,
    /// Bytes per attribute value from a view.
    pub value_bytes: usize,
    /// How many times its input a transform's output may be.
    pub transform_growth: usize,
    /// Log lines per second.
    pub log_lines_per_second: usize,
    /// Bytes per log line.
    pub log_line_bytes: usize,
}

impl From<&crate::config::Budgets> for Budgets {
    fn from(c: &crate::config::Budgets) -> Self {
        Self {
            outbound_items: c.outbound_items.unwrap_or(10_000),
            outbound_bytes: c.outbound_bytes.unwrap_or(32 * 1024 * 1024),
            view_attributes: c.view_attributes.unwrap_or(64),
            key_bytes: c.key_bytes.unwrap_or(256),
            value_bytes: c.value_bytes.unwrap_or(1024),
            transform_growth: c.transform_growth.unwrap_or(2).max(1),
            log_lines_per_second: c.log_lines_per_second.unwrap_or(100),
            log_line_bytes: c.log_line_bytes.unwrap_or(4096).max(64),
        }
    }
}

/// How long a plugin marked failed rests before it is tried again, by default.
const DEFAULT_COOL_DOWN: Duration = Duration::from_secs(60);

impl Limits {
    /// The limits of plugin `name` under `config`.
    pub fn of(config: &crate::config::PluginsConfig, name: &str) -> Self {
        Self {
            memory_bytes: config.memory_limit_bytes,
            call_timeout: config.call_timeout(),
            cool_down: config.cool_down.unwrap_or(DEFAULT_COOL_DOWN),
            budgets: Budgets::from(&config.budgets(name)),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes: 64 * 1024 * 1024,
            call_timeout: Duration::from_millis(100),
            cool_down: DEFAULT_COOL_DOWN,
            budgets: Budgets::from(&crate::config::Budgets::default()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_take_the_plugin_s_own_then_every_plugin_s_then_the_defaults() {
        let config = crate::Config::from_toml(
            "[plugins.budgets.\"*\"]\noutbound_items = 5\nview_attributes = 7\n[plugins.budgets.narrow]\nview_attributes = 3\n",
        )
        .expect("valid");
        let narrow = Limits::of(&config.plugins, "narrow").budgets;
        let other = Limits::of(&config.plugins, "other").budgets;
        assert_eq!(
            (
                narrow.outbound_items,
                narrow.view_attributes,
                narrow.key_bytes
            ),
            (5, 3, 256)
        );
        assert_eq!((other.outbound_items, other.view_attributes), (5, 7));
        assert_eq!(Limits::default().budgets.log_lines_per_second, 100);
        let wrong = crate::Config::from_toml("[plugins.budgets.x]\nlog_lines = 1\n")
            .expect_err("unknown budget");
        assert!(wrong.contains("unknown field `log_lines`"), "{wrong}");
    }
}
