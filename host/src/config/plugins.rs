//! `[plugins]`, `[[transforms]]` and `[[views]]`: where plugins come from and how they run.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{duration, show_duration};

/// The `[plugins]` section.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginsConfig {
    /// Where `.wasm` plugins (and their `<name>.toml` configs) are loaded from (default `./plugins`).
    pub dir: std::path::PathBuf,
    /// Memory cap per plugin instance, in bytes (default 64 MiB).
    pub memory_limit_bytes: usize,
    /// Deadline per plugin call (default 100 ms).
    #[serde(deserialize_with = "duration", serialize_with = "show_duration")]
    pub call_timeout: Option<Duration>,
    /// How long a plugin marked failed (5 failures within 60 s) rests before it is tried again
    /// on its own (default 60 s, doubling while it keeps failing, at most 1 h).
    #[serde(deserialize_with = "duration", serialize_with = "show_duration")]
    pub cool_down: Option<Duration>,
    /// Per-plugin configuration tables, by plugin name (`[plugins.config.statsd]`).
    pub config: BTreeMap<String, toml::Table>,
    /// Where compiled plugins are cached, keyed by content hash (default `<data_dir>/plugin-cache`;
    /// empty disables).
    pub cache_dir: Option<std::path::PathBuf>,
    /// What a plugin's results may hold: `[plugins.budgets."*"]` for every plugin, and
    /// `[plugins.budgets.<name>]` over it for one.
    pub budgets: BTreeMap<String, Budgets>,
    /// Whether a plugin that cannot be loaded at start stops the host (default false: the host
    /// starts and reports the plugin `failed` with its reason).
    pub strict: bool,
}

/// Bounds on what one plugin call may return (each unset key takes the `"*"` table's, then the
/// built-in default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Budgets {
    /// Requests or datagrams one `encode` call may return (default 10,000).
    pub outbound_items: Option<usize>,
    /// Bytes of request bodies and datagrams one `encode` call may return (default 32 MiB).
    pub outbound_bytes: Option<usize>,
    /// Attributes in one view answer (default 64).
    pub view_attributes: Option<usize>,
    /// Bytes of one attribute key a view returns (default 256).
    pub key_bytes: Option<usize>,
    /// Bytes of one attribute value a view returns (default 1,024).
    pub value_bytes: Option<usize>,
    /// Data points or log records one transform call may return, as a multiple of what it was
    /// given (default 2).
    pub transform_growth: Option<usize>,
    /// Log lines a plugin may write per second (default 100; more are dropped and counted).
    pub log_lines_per_second: Option<usize>,
    /// Bytes of one log line (default 4,096; longer lines are cut, and the cut is marked).
    pub log_line_bytes: Option<usize>,
}

impl Budgets {
    /// These budgets, with `other` filling in what they leave unset.
    pub fn over(&self, other: &Budgets) -> Budgets {
        Budgets {
            outbound_items: self.outbound_items.or(other.outbound_items),
            outbound_bytes: self.outbound_bytes.or(other.outbound_bytes),
            view_attributes: self.view_attributes.or(other.view_attributes),
            key_bytes: self.key_bytes.or(other.key_bytes),
            value_bytes: self.value_bytes.or(other.value_bytes),
            transform_growth: self.transform_growth.or(other.transform_growth),
            log_lines_per_second: self.log_lines_per_second.or(other.log_lines_per_second),
            log_line_bytes: self.log_line_bytes.or(other.log_line_bytes),
        }
    }
}

impl Default for PluginsConfig {
    fn default() -> Self {
        Self {
            dir: "plugins".into(),
            memory_limit_bytes: 64 * 1024 * 1024,
            call_timeout: None,
            cool_down: None,
            config: BTreeMap::new(),
            cache_dir: None,
            budgets: BTreeMap::new(),
            strict: false,
        }
    }
}

impl PluginsConfig {
    /// The deadline per plugin call, defaulted.
    pub fn call_timeout(&self) -> Duration {
        self.call_timeout.unwrap_or(Duration::from_millis(100))
    }

    /// Plugin `name`'s budgets: its own table over the `"*"` one (unset keys use the defaults).
    pub fn budgets(&self, name: &str) -> Budgets {
        let every = self.budgets.get("*").copied().unwrap_or_default();
        self.budgets.get(name).map_or(every, |own| own.over(&every))
    }
}

/// One `[[views]]` entry.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ViewConfig {
    /// The view plugin (`drop-attributes`, or a `.wasm` in the plugin directory, by file stem).
    pub plugin: String,
    /// Instrument names it applies to, `*` matching any run of characters (default: all).
    #[serde(default = "all_instruments")]
    pub instruments: Vec<String>,
    /// Plugin settings, over the plugin's own `<name>.toml` and `[plugins.config.<name>]`.
    #[serde(default)]
    pub config: toml::Table,
}

fn all_instruments() -> Vec<String> {
    vec!["*".into()]
}

/// One `[[transforms]]` entry.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TransformConfig {
    /// The transform plugin (`redact`, or a `.wasm` in the plugin directory, by file stem).
    pub plugin: String,
    /// `open` (default): a failing transform passes the batch through; `closed`: the batch is dropped.
    #[serde(default)]
    pub on_failure: OnFailure,
    /// Plugin settings, over the plugin's own `<name>.toml` and `[plugins.config.<name>]`.
    #[serde(default)]
    pub config: toml::Table,
}

/// What happens to a batch when a transform fails.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// The batch passes through unchanged (the default).
    #[default]
    Open,
    /// The batch is dropped.
    Closed,
}

/// Flattens a TOML table to the dotted string pairs plugins receive.
pub fn flatten(table: &toml::Table) -> Vec<(String, String)> {
    fn walk(prefix: &str, table: &toml::Table, out: &mut Vec<(String, String)>) {
        for (k, v) in table {
            let key = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match v {
                toml::Value::Table(t) => walk(&key, t, out),
                toml::Value::String(s) => out.push((key, s.clone())),
                other => out.push((key, other.to_string())),
            }
        }
    }
    let mut out = Vec::new();
    walk("", table, &mut out);
    out
}

/// Why `name` cannot name a plugin, if it cannot: 1 to 64 letters, digits, `-`, `_` or `.`,
/// not starting with `.` — a file stem in the plugin directory, never a path.
pub fn plugin_name_error(name: &str) -> Option<String> {
    let valid = (1..=64).contains(&name.len())
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    (!valid).then(|| {
        format!(
            "`{}` is not a plugin name: 1 to 64 letters, digits, `-`, `_` or `.`, not starting with `.` (a file stem in the plugin directory, not a path)",
            name.escape_debug()
        )
    })
}
