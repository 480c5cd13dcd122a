//! What one integration is — its id and name, format, endpoints, credentials and delivery
//! settings — resolved the same way whether it comes from the config file or the store.

use std::collections::BTreeMap;

use super::delivery::Settings;
use super::preset;
use crate::config::{Config, DeliveryConfig, ExporterConfig, OtlpConfig, Protocol};
use crate::model::Signal;
use crate::model::metric::TemporalityPreference;
use crate::model::select::Select;

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
        /// How spans travel.
        traces_protocol: Protocol,
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
    /// Where spans go, likewise.
    pub traces: Option<String>,
    /// Headers the host adds to every request (credentials among them).
    pub headers: BTreeMap<String, String>,
    /// The one signal it carries, when it carries only one (a stored integration).
    pub only: Option<Signal>,
    /// How it delivers.
    pub delivery: Settings,
    /// What it receives.
    pub select: Select,
    /// Its own transform plugins, applied after the host's chain.
    pub transforms: Vec<String>,
    /// The tenant that owns it, if a tenant does.
    pub tenant: Option<String>,
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
            .field("traces", &self.traces)
            .field("headers_set", &self.headers.keys().collect::<Vec<_>>())
            .field("only", &self.only)
            .field("delivery", &self.delivery)
            .field("select", &self.select)
            .field("transforms", &self.transforms)
            .field("tenant", &self.tenant)
            .finish()
    }
}

/// A setting of an integration that cannot be accepted, named with the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{field}`: {reason}")]
pub struct SpecError {
    /// The setting (`endpoint`, `headers`, `delivery`, …).
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

impl SpecError {
    /// `field` is wrong because of `reason`.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Why an integration's spec could not be built into a running exporter.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// Its plugin could not be loaded (under `[plugins] strict`).
    #[error("{}", .0.chain())]
    Plugin(crate::plugins::PluginError),
    /// An endpoint cannot be sent to.
    #[error("endpoint `{endpoint}`: {reason}")]
    Endpoint {
        /// The endpoint.
        endpoint: String,
        /// Why not.
        reason: String,
    },
    /// A header cannot be sent.
    #[error(transparent)]
    Header(#[from] super::transport::otlp_http::HeaderError),
    /// The plugin does not export the one signal the integration carries.
    #[error("the plugin `{plugin}` exports no {signal}")]
    NoSignal {
        /// The plugin.
        plugin: String,
        /// The signal.
        signal: &'static str,
    },
    /// The plugin exports a signal the integration has no endpoint for.
    #[error("the plugin exports {0} but no endpoint for them is configured")]
    NoEndpoint(&'static str),
    /// The disk queue cannot be opened.
    #[error("the disk queue {} cannot be opened: {source}", .dir.display())]
    DiskQueue {
        /// Its directory.
        dir: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The HTTP client cannot be made.
    #[error("the HTTP client cannot be made: {0}")]
    Client(#[from] reqwest::Error),
}

/// The shortest collection interval any integration may have.
pub const MIN_INTERVAL: std::time::Duration = std::time::Duration::from_millis(10);

/// Checks the settings every integration shares: its headers and its delivery.
fn check_common(
    headers: &BTreeMap<String, String>,
    delivery: &DeliveryConfig,
) -> Result<(), SpecError> {
    for (k, v) in headers {
        reqwest::header::HeaderName::try_from(k.as_str())
            .map_err(|_| SpecError::new("headers", format!("`{k}` is not a valid header name")))?;
        reqwest::header::HeaderValue::try_from(v.as_str()).map_err(|_| {
            SpecError::new(
                "headers",
                format!("the value of `{k}` is not valid in a header"),
            )
        })?;
    }
    if delivery.interval.is_some_and(|i| i < MIN_INTERVAL) {
        return Err(SpecError::new(
            "delivery",
            format!("`interval` must be at least {MIN_INTERVAL:?}"),
        ));
    }
    Ok(())
}

/// Checks that `url` (the value of `field`) is a URL with a host in one of `schemes`.
fn check_url(field: &str, url: &str, schemes: &[&str]) -> Result<(), SpecError> {
    let parsed =
        reqwest::Url::parse(url).map_err(|e| SpecError::new(field, format!("not a URL: {e}")))?;
    if !schemes.contains(&parsed.scheme()) || parsed.host().is_none() {
        let listed: Vec<String> = schemes.iter().map(|s| format!("{s}://")).collect();
        let any = match listed.split_last() {
            Some((last, [])) => last.clone(),
            Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
            None => String::new(),
        };
        return Err(SpecError::new(
            field,
            format!("must be an {any} URL with a host"),
        ));
    }
    Ok(())
}

/// The preset named `name` for an integration of `kind` (`otlp` or a plugin's name).
fn preset_for(name: &str, kind: &str) -> Result<&'static preset::Preset, SpecError> {
    let found = preset::find(name).map_err(|e| SpecError::new("preset", e.to_string()))?;
    match found.plugin {
        Some(plugin) if plugin != kind && kind != OTLP => Err(SpecError::new(
            "preset",
            format!("the preset `{name}` is for the plugin `{plugin}`"),
        )),
        _ if !found.fits(kind) => Err(SpecError::new(
            "preset",
            format!("preset `{name}` does not fit type `{kind}`"),
        )),
        _ => Ok(found),
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
            Signal::Traces => self.traces.as_deref(),
        }
    }

    /// An `[otlp]` section (the config file's, or a stored OTLP integration's) as integration
    /// `name`: the preset's endpoint unless one is set, `api_key` in the preset's header;
    /// `None` when it has nowhere to send.
    pub fn otlp(
        name: &str,
        config: &OtlpConfig,
        defaults: &DeliveryConfig,
    ) -> Result<Option<Self>, SpecError> {
        let preset = config
            .preset
            .as_deref()
            .map(|p| preset_for(p, OTLP))
            .transpose()?;
        let mut config = config.clone();
        if config.endpoint.is_none()
            && let Some(p) = preset
            && let Ok(Some((base, _))) = p.endpoints(None, &|_| None)
        {
            config.endpoint = Some(base);
        }
        if let Some(key) = &config.api_key {
            let header = preset.and_then(|p| p.credential_header).ok_or_else(|| {
                SpecError::new(
                    "api_key",
                    "needs a preset with a credential header; use headers",
                )
            })?;
            config.headers.insert(header.to_owned(), key.clone());
        }
        check_common(&config.headers, &config.delivery)?;
        for (field, url) in [
            ("endpoint", &config.endpoint),
            ("metrics_endpoint", &config.metrics_endpoint),
            ("logs_endpoint", &config.logs_endpoint),
            ("traces_endpoint", &config.traces_endpoint),
        ] {
            if let Some(url) = url {
                check_url(field, url, &["http", "https"])?;
            }
        }
        let (metrics, logs, traces) =
            (config.metrics_url(), config.logs_url(), config.traces_url());
        if metrics.is_none() && logs.is_none() && traces.is_none() {
            return Ok(None);
        }
        Ok(Some(Self {
            id: name.to_owned(),
            name: name.to_owned(),
            target: Target::Otlp {
                temporality: config.temporality_preference.unwrap_or_default(),
                compression: config.compression.unwrap_or_default(),
                metrics_protocol: config.protocol(Signal::Metrics),
                logs_protocol: config.protocol(Signal::Logs),
                traces_protocol: config.protocol(Signal::Traces),
            },
            preset: config.preset.clone(),
            metrics,
            logs,
            traces,
            headers: config.headers,
            only: None,
            delivery: Settings::resolve(&config.delivery, defaults),
            select: config.select,
            transforms: config.transforms,
            tenant: None,
        }))
    }

    /// An `[[exporters]]` entry (the config file's, or a stored plugin integration's) named
    /// `name`: explicit endpoints over `endpoint` over the preset's, `headers` plus the preset's
    /// credential (`api_key`, else its variable in `env`).
    pub fn exporter(
        entry: &ExporterConfig,
        name: String,
        defaults: &DeliveryConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, SpecError> {
        let preset = match entry.preset.as_deref() {
            Some(name) => Some(preset_for(name, &entry.plugin)?),
            None => preset::for_plugin(&entry.plugin),
        };
        if preset.is_none() && (entry.site.is_some() || entry.api_key.is_some()) {
            let field = if entry.site.is_some() {
                "site"
            } else {
                "api_key"
            };
            return Err(SpecError::new(field, "`site` and `api_key` need a preset"));
        }
        let filled = match preset {
            Some(p) => p
                .endpoints(entry.site.as_deref(), env)
                .map_err(|e| SpecError::new("site", e.to_string()))?,
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
        let traces = pick(&entry.traces_endpoint, None);
        if metrics.is_none() && logs.is_none() && traces.is_none() {
            return Err(SpecError::new(
                "endpoint",
                "no endpoint: set `endpoint` (or `metrics_endpoint`/`logs_endpoint`/`traces_endpoint`, or a `preset`)",
            ));
        }
        for (field, url) in [
            ("endpoint", &entry.endpoint),
            ("metrics_endpoint", &entry.metrics_endpoint),
            ("logs_endpoint", &entry.logs_endpoint),
            ("traces_endpoint", &entry.traces_endpoint),
        ] {
            if let Some(url) = url {
                check_url(field, url, &["http", "https", "udp"])?;
            }
        }
        let mut headers = entry.headers.clone();
        if let Some(p) = preset
            && let Some(header) = p.credential_header
        {
            let key = entry
                .api_key
                .clone()
                .or_else(|| p.credential_env.and_then(env))
                .ok_or_else(|| {
                    let reason = match p.credential_env {
                        Some(var) => format!("needs an API key: set `api_key` or {var}"),
                        None => "needs an API key: set `api_key`".to_owned(),
                    };
                    SpecError::new("api_key", reason)
                })?;
            headers.insert(header.to_owned(), key);
        }
        check_common(&headers, &entry.delivery)?;
        let mut settings = entry.config.clone();
        let whole = metrics
            .as_deref()
            .and_then(|m| preset::whole_url_path(&entry.plugin, m));
        if let Some(path) = whole {
            settings
                .entry("path")
                .or_insert_with(|| toml::Value::String(path.to_owned()));
        }
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
            traces,
            headers,
            only: None,
            delivery: Settings::resolve(&entry.delivery, defaults),
            select: entry.select.clone(),
            transforms: entry.transforms.clone(),
            tenant: None,
        })
    }
}

/// The integrations of the config file: `[otlp]` when it has an endpoint, then every
/// `[[exporters]]` entry under its name; `Err` names the entry at fault and the problem.
pub fn configured(config: &Config) -> Result<Vec<ExporterSpec>, (String, SpecError)> {
    let mut specs: Vec<ExporterSpec> = ExporterSpec::otlp(OTLP, &config.otlp, &config.delivery)
        .map_err(|e| (OTLP.to_owned(), e))?
        .into_iter()
        .collect();
    let taken: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
    let names =
        exporter_names(&config.exporters, &taken).map_err(|e| ("[[exporters]]".to_owned(), e))?;
    let env = |k: &str| std::env::var(k).ok();
    for (entry, name) in config.exporters.iter().zip(names) {
        let spec = ExporterSpec::exporter(entry, name.clone(), &config.delivery, &env)
            .map_err(|e| (name, e))?;
        specs.push(spec);
    }
    Ok(specs)
}

/// The names of the `[[exporters]]` entries: each explicit `name`, else the plugin's name with
/// `-2`, `-3` … when a plugin is used again; a name used twice (or one of `taken`) is an error.
pub fn exporter_names(
    entries: &[ExporterConfig],
    taken: &[&str],
) -> Result<Vec<String>, SpecError> {
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
            return Err(SpecError::new(
                "name",
                format!(
                    "[[exporters]]: the name `{name}` is used twice; give each entry its own `name`"
                ),
            ));
        }
        names.push(name);
    }
    Ok(names)
}

/// Checks an integration name: 1 to 100 printable characters.
pub fn check_name(name: &str) -> Result<(), SpecError> {
    let trimmed = name.trim();
    if trimmed.is_empty() || trimmed.len() > 100 || name.chars().any(char::is_control) {
        return Err(SpecError::new(
            "name",
            format!(
                "the name `{}` must be 1 to 100 printable characters",
                name.escape_debug()
            ),
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
        .map_err(|e| e.reason)
    }

    #[test]
    fn a_remote_write_url_with_a_path_is_used_as_given() {
        let path = |toml: &str| match spec(toml).expect("spec").target {
            Target::Plugin { settings, .. } => settings.get("path").cloned(),
            Target::Otlp { .. } => None,
        };
        let rw = "plugin = \"prometheus-remote-write\"\n";
        let given = path(&format!("{rw}endpoint = \"http://prom:9090/api/v1/write\""));
        assert_eq!(
            given,
            Some(toml::Value::String(String::new())),
            "the endpoint itself"
        );
        assert_eq!(
            path(&format!("{rw}endpoint = \"http://prom:9090\"")),
            None,
            "the plugin's default"
        );
        let mimir = format!(
            "{rw}preset = \"mimir\"\nendpoint = \"http://mimir/api/v1/push\"\napi_key = \"t\""
        );
        assert_eq!(
            path(&mimir),
            Some(toml::Value::String(String::new())),
            "over the preset's path"
        );
        let own = format!("{rw}endpoint = \"http://p/x\"\nconfig = {{ path = \"/w\" }}");
        assert_eq!(
            path(&own),
            Some(toml::Value::String("/w".into())),
            "the integration's own wins"
        );
        let other = "plugin = \"statsd\"\nendpoint = \"http://proxy/statsd\"";
        assert_eq!(path(other), None, "other plugins append their paths");
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
            exporter_names(&clash, &["otlp"]).expect_err("taken").reason,
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
            "no endpoint: set `endpoint` (or `metrics_endpoint`/`logs_endpoint`/`traces_endpoint`, or a `preset`)"
        );
    }
}
