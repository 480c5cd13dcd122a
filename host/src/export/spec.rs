//! What one integration is — its id and name, format, endpoints, credentials and delivery
//! settings — resolved the same way whether it comes from the config file or the store.

use std::collections::BTreeMap;

use super::delivery::Settings;
use super::preset;
use crate::config::{DeliveryConfig, ExporterConfig, OtlpConfig, Protocol, TemporalityPreference};
use crate::model::Signal;

/// The name and id of the `[otlp]` integration.
pub const OTLP: &str = "otlp";

/// Who encodes an integration's data.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// The native OTLP encoder.
    Otlp {
        /// Which instruments go out as deltas.
        temporality: TemporalityPreference,
        /// How request bodies are compressed.
        compression: crate::config::Compression,
        /// How metrics travel.
        metrics_protocol: Protocol,
        /// How logs travel.
        logs_protocol: Protocol,
    },
    /// An exporter plugin.
    Plugin {
        /// The plugin's name (`statsd`, `datadog`, a `.wasm` file's stem).
        plugin: String,
        /// Its settings, over the plugin's own defaults.
        settings: toml::Table,
    },
}

/// One integration, ready to build.
#[derive(Clone, PartialEq)]
pub struct ExporterSpec {
    /// A stable id (a configured integration's name, a stored one's UUID).
    pub id: String,
    /// A name people recognise it by; self-metrics carry it.
    pub name: String,
    /// Who encodes its data.
    pub target: Target,
    /// The preset that filled in endpoints or the credential header.
    pub preset: Option<String>,
    /// Where metrics go: an OTLP signal URL, or a plugin's base URL or `udp://host:port`.
    pub metrics: Option<String>,
    /// Where logs go, likewise.
    pub logs: Option<String>,
    /// Headers the host adds to every request (credentials among them).
    pub headers: BTreeMap<String, String>,
    /// The one signal it carries, when it carries only one (a stored integration).
    pub only: Option<Signal>,
    /// How it delivers.
    pub delivery: Settings,
}

impl std::fmt::Debug for ExporterSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Header values are credentials: only their names are ever shown.
        f.debug_struct("ExporterSpec")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("target", &self.target)
            .field("preset", &self.preset)
            .field("metrics", &self.metrics)
            .field("logs", &self.logs)
            .field("headers_set", &self.headers.keys().collect::<Vec<_>>())
            .field("only", &self.only)
            .field("delivery", &self.delivery)
            .finish()
    }
}

impl ExporterSpec {
    /// `otlp`, or the plugin's name.
    pub fn kind(&self) -> &str {
        match &self.target {
            Target::Otlp { .. } => OTLP,
            Target::Plugin { plugin, .. } => plugin,
        }
    }

    /// Where `signal` goes, if anywhere.
    pub fn endpoint(&self, signal: Signal) -> Option<&str> {
        match signal {
            Signal::Metrics => self.metrics.as_deref(),
            Signal::Logs => self.logs.as_deref(),
        }
    }

    /// The `[otlp]` integration, when an endpoint is configured.
    pub fn otlp(config: &OtlpConfig, defaults: &DeliveryConfig) -> Option<Self> {
        let (metrics, logs) = (config.metrics_url(), config.logs_url());
        if metrics.is_none() && logs.is_none() {
            return None;
        }
        Some(Self {
            id: OTLP.into(),
            name: OTLP.into(),
            target: Target::Otlp {
                temporality: config.temporality_preference.unwrap_or_default(),
                compression: config.compression.unwrap_or_default(),
                metrics_protocol: config.protocol(Signal::Metrics),
                logs_protocol: config.protocol(Signal::Logs),
            },
            preset: None,
            metrics,
            logs,
            headers: config.headers.clone(),
            only: None,
            delivery: Settings::resolve(&config.delivery, defaults),
        })
    }

    /// An `[[exporters]]` entry named `name`: explicit endpoints over `endpoint` over the
    /// preset's, `headers` plus the preset's credential (`api_key`, else its variable in `env`).
    pub fn exporter(
        entry: &ExporterConfig,
        name: String,
        defaults: &DeliveryConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, String> {
        let preset = match entry.preset.as_deref() {
            Some(name) => Some(preset::find(name)?),
            None => preset::for_plugin(&entry.plugin),
        };
        if preset.is_none() && (entry.site.is_some() || entry.api_key.is_some()) {
            return Err("`site` and `api_key` need a preset".into());
        }
        let filled = match preset {
            Some(p) => p.endpoints(entry.site.as_deref(), env)?,
            None => None,
        };
        let pick = |specific: &Option<String>, from_preset: Option<&String>| {
            specific
                .clone()
                .or_else(|| entry.endpoint.clone())
                .or_else(|| from_preset.cloned())
        };
        let metrics = pick(&entry.metrics_endpoint, filled.as_ref().map(|e| &e.0));
        let logs = pick(&entry.logs_endpoint, filled.as_ref().map(|e| &e.1));
        if metrics.is_none() && logs.is_none() {
            return Err("no endpoint: set `endpoint` (or `metrics_endpoint`/`logs_endpoint`, or a `preset`)".into());
        }
        let mut headers = entry.headers.clone();
        if let Some(p) = preset
            && let Some(header) = p.credential_header
        {
            let key = entry
                .api_key
                .clone()
                .or_else(|| p.credential_env.and_then(env))
                .ok_or_else(|| match p.credential_env {
                    Some(var) => format!("needs an API key: set `api_key` or {var}"),
                    None => "needs an API key: set `api_key`".to_owned(),
                })?;
            headers.insert(header.to_owned(), key);
        }
        if let Some(p) = preset
            && p.plugin.is_some_and(|plugin| plugin != entry.plugin)
        {
            return Err(format!(
                "the preset `{}` is for the plugin `{}`",
                p.name,
                p.plugin.unwrap_or_default()
            ));
        }
        let mut settings = entry.config.clone();
        for (key, value) in preset.map_or(&[][..], |p| p.plugin_settings) {
            settings
                .entry(*key)
                .or_insert_with(|| toml::Value::String((*value).to_owned()));
        }
        Ok(Self {
            id: name.clone(),
            name,
            target: Target::Plugin {
                plugin: entry.plugin.clone(),
                settings,
            },
            preset: preset.map(|p| p.name.to_owned()),
            metrics,
            logs,
            headers,
            only: None,
            delivery: Settings::resolve(&entry.delivery, defaults),
        })
    }
}

/// The names of the `[[exporters]]` entries: each explicit `name`, else the plugin's name with
/// `-2`, `-3` … when a plugin is used again; a name used twice (or one of `taken`) is an error.
pub fn exporter_names(entries: &[ExporterConfig], taken: &[&str]) -> Result<Vec<String>, String> {
    let mut names: Vec<String> = Vec::with_capacity(entries.len());
    for entry in entries {
        let name = match &entry.name {
            Some(name) => {
                check_name(name)?;
                name.clone()
            }
            None => {
                let mut n = 1;
                let mut candidate = entry.plugin.clone();
                while names.contains(&candidate) || taken.contains(&candidate.as_str()) {
                    n += 1;
                    candidate = format!("{}-{n}", entry.plugin);
                }
                candidate
            }
        };
        if names.contains(&name) || taken.contains(&name.as_str()) {
            return Err(format!(
                "[[exporters]]: the name `{name}` is used twice; give each entry its own `name`"
            ));
        }
        names.push(name);
    }
    Ok(names)
}

/// Checks an integration name: 1 to 100 printable characters.
pub fn check_name(name: &str) -> Result<(), String> {
    let trimmed = name.trim();
    if trimmed.is_empty() || trimmed.len() > 100 || name.chars().any(char::is_control) {
        return Err(format!(
            "the name `{}` must be 1 to 100 printable characters",
            name.escape_debug()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(toml: &str) -> ExporterConfig {
        toml::from_str(toml).expect("valid entry")
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn spec(toml: &str) -> Result<ExporterSpec, String> {
        ExporterSpec::exporter(
            &entry(toml),
            "x".into(),
            &DeliveryConfig::default(),
            &no_env,
        )
    }

    #[test]
    fn repeated_plugins_get_suffixes_and_explicit_names_win() {
        let entries = [
            entry("plugin = \"statsd\""),
            entry("plugin = \"statsd\""),
            entry("plugin = \"datadog\"\nname = \"dd-eu\""),
            entry("plugin = \"statsd\""),
        ];
        assert_eq!(
            exporter_names(&entries, &["otlp"]).expect("names"),
            ["statsd", "statsd-2", "dd-eu", "statsd-3"]
        );
        let clash = [entry("plugin = \"a\"\nname = \"otlp\"")];
        assert_eq!(
            exporter_names(&clash, &["otlp"]).expect_err("taken"),
            "[[exporters]]: the name `otlp` is used twice; give each entry its own `name`"
        );
    }

    #[test]
    fn remote_write_presets_give_the_path_and_the_credential_header_when_named() {
        let mimir = spec(
            "plugin = \"prometheus-remote-write\"\npreset = \"mimir\"\nendpoint = \"http://mimir:8080\"\napi_key = \"fleet\"",
        )
        .expect("ok");
        assert_eq!(mimir.headers["X-Scope-OrgID"], "fleet");
        let Target::Plugin { settings, .. } = &mimir.target else {
            panic!("a plugin")
        };
        assert_eq!(settings["path"].as_str(), Some("/api/v1/push"));
        let grafana = spec(
            "plugin = \"prometheus-remote-write\"\npreset = \"grafana-cloud-prometheus\"\nendpoint = \"https://prometheus-prod-1.grafana.net\"\napi_key = \"Basic dTp0\"\nconfig = { path = \"/custom\" }",
        )
        .expect("ok");
        assert_eq!(grafana.headers["authorization"], "Basic dTp0");
        let Target::Plugin { settings, .. } = &grafana.target else {
            panic!("a plugin")
        };
        assert_eq!(
            settings["path"].as_str(),
            Some("/custom"),
            "the integration's own wins"
        );
        let plain = spec("plugin = \"prometheus-remote-write\"\nendpoint = \"http://p:9090\"")
            .expect("no preset, no key needed");
        assert!(plain.headers.is_empty() && plain.preset.is_none());
        assert_eq!(
            spec(
                "plugin = \"statsd\"\npreset = \"mimir\"\nendpoint = \"udp://h:1\"\napi_key = \"x\""
            )
            .expect_err("wrong plugin"),
            "the preset `mimir` is for the plugin `prometheus-remote-write`"
        );
    }

    #[test]
    fn presets_fill_endpoints_and_the_credential_and_explicit_endpoints_win() {
        let dd =
            spec("plugin = \"datadog\"\nsite = \"datadoghq.eu\"\napi_key = \"k\"").expect("ok");
        assert_eq!(dd.metrics.as_deref(), Some("https://api.datadoghq.eu"));
        assert_eq!(
            dd.logs.as_deref(),
            Some("https://http-intake.logs.datadoghq.eu")
        );
        assert_eq!(dd.headers["DD-API-KEY"], "k");
        assert_eq!(dd.preset.as_deref(), Some("datadog"));
        let env = |k: &str| (k == "DD_API_KEY").then(|| "from-env".to_owned());
        let d = ExporterSpec::exporter(
            &entry("plugin = \"datadog\"\nendpoint = \"http://127.0.0.1:9\"\nlogs_endpoint = \"http://127.0.0.1:10/l\""),
            "dd".into(),
            &DeliveryConfig::default(),
            &env,
        )
        .expect("ok");
        assert_eq!(d.metrics.as_deref(), Some("http://127.0.0.1:9"));
        assert_eq!(d.logs.as_deref(), Some("http://127.0.0.1:10/l"));
        assert_eq!(d.headers["DD-API-KEY"], "from-env");
        let shown = format!("{d:?}");
        assert!(!shown.contains("from-env"), "{shown}");
    }

    #[test]
    fn bad_entries_are_named() {
        assert_eq!(
            spec("plugin = \"datadog\"").expect_err("no key"),
            "needs an API key: set `api_key` or DD_API_KEY"
        );
        assert_eq!(
            spec("plugin = \"x\"\npreset = \"graphite\"\nendpoint = \"udp://127.0.0.1:1\"")
                .expect_err("preset"),
            "unknown preset `graphite` (known: custom, self-hosted, grafana-cloud, new-relic, honeycomb, datadog, grafana-cloud-prometheus, mimir)"
        );
        assert_eq!(
            spec("plugin = \"x\"\napi_key = \"k\"\nendpoint = \"udp://127.0.0.1:1\"")
                .expect_err("no preset"),
            "`site` and `api_key` need a preset"
        );
        assert_eq!(
            spec("plugin = \"x\"").expect_err("no endpoint"),
            "no endpoint: set `endpoint` (or `metrics_endpoint`/`logs_endpoint`, or a `preset`)"
        );
    }
}
