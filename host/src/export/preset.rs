//! Backend presets and destinations: where an integration's signals go and which credential headers the host adds.

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use super::plugin::Endpoint;
use crate::config::ExporterConfig;
use crate::model::Signal;

/// The Datadog sites, as `DD_SITE` names them.
pub const DATADOG_SITES: &[&str] = &[
    "datadoghq.com",
    "us3.datadoghq.com",
    "us5.datadoghq.com",
    "datadoghq.eu",
    "ap1.datadoghq.com",
    "ap2.datadoghq.com",
    "ddog-gov.com",
];

/// The presets there are.
pub const PRESETS: &[&str] = &["datadog"];

/// What a preset fills in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preset {
    /// Base URL for metrics.
    pub metrics: String,
    /// Base URL for logs.
    pub logs: String,
    /// The header the credential (`api_key`) is sent in.
    pub credential_header: &'static str,
    /// The environment variable read when `api_key` is not configured.
    pub credential_env: &'static str,
}

/// The preset `name` for `site` (`None`: the preset's default, or its environment variable).
pub fn preset(
    name: &str,
    site: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Preset, String> {
    match name {
        "datadog" => {
            let site = site
                .map(str::to_owned)
                .or_else(|| env("DD_SITE"))
                .unwrap_or_else(|| DATADOG_SITES[0].to_owned());
            if !DATADOG_SITES.contains(&site.as_str()) {
                return Err(format!(
                    "unknown Datadog site `{site}` (known: {})",
                    DATADOG_SITES.join(", ")
                ));
            }
            Ok(Preset {
                metrics: format!("https://api.{site}"),
                logs: format!("https://http-intake.logs.{site}"),
                credential_header: "DD-API-KEY",
                credential_env: "DD_API_KEY",
            })
        }
        other => Err(format!(
            "unknown preset `{other}` (known: {})",
            PRESETS.join(", ")
        )),
    }
}

/// Where an integration sends, per signal, and the headers the host adds to every request.
#[derive(Debug, Clone)]
pub struct Destination {
    /// Where metrics go, if anywhere.
    pub metrics: Option<Endpoint>,
    /// Where logs go, if anywhere.
    pub logs: Option<Endpoint>,
    /// Credential headers, marked sensitive.
    pub credentials: HeaderMap,
}

impl Destination {
    /// Where `signal` goes, if configured.
    pub fn endpoint(&self, signal: Signal) -> Option<&Endpoint> {
        match signal {
            Signal::Metrics => self.metrics.as_ref(),
            Signal::Logs => self.logs.as_ref(),
        }
    }

    /// Resolves an `[[exporters]]` entry: explicit endpoints over `endpoint` over the preset, `headers` plus the preset's credential.
    pub fn resolve(
        config: &ExporterConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, String> {
        let preset = match config.preset.as_deref() {
            Some(name) => Some(preset(name, config.site.as_deref(), env)?),
            None if PRESETS.contains(&config.plugin.as_str()) => {
                Some(preset(&config.plugin, config.site.as_deref(), env)?)
            }
            None if config.site.is_some() || config.api_key.is_some() => {
                return Err("`site` and `api_key` need a preset".into());
            }
            None => None,
        };
        let pick = |specific: &Option<String>, from_preset: Option<&String>| {
            specific
                .as_ref()
                .or(config.endpoint.as_ref())
                .or(from_preset)
                .map(|text| Endpoint::parse(text))
                .transpose()
        };
        let metrics = pick(
            &config.metrics_endpoint,
            preset.as_ref().map(|p| &p.metrics),
        )?;
        let logs = pick(&config.logs_endpoint, preset.as_ref().map(|p| &p.logs))?;
        if metrics.is_none() && logs.is_none() {
            return Err("no endpoint: set `endpoint` (or `metrics_endpoint`/`logs_endpoint`, or a `preset`)".into());
        }
        let mut credentials = HeaderMap::new();
        for (k, v) in &config.headers {
            insert(&mut credentials, k, v)?;
        }
        if let Some(p) = &preset {
            let key = config
                .api_key
                .clone()
                .or_else(|| env(p.credential_env))
                .ok_or_else(|| {
                    format!("needs an API key: set `api_key` or {}", p.credential_env)
                })?;
            insert(&mut credentials, p.credential_header, &key)?;
        }
        Ok(Self {
            metrics,
            logs,
            credentials,
        })
    }
}

/// Adds one credential header, marked sensitive; errors name the header, never the value.
fn insert(headers: &mut HeaderMap, name: &str, value: &str) -> Result<(), String> {
    let header = HeaderName::try_from(name).map_err(|_| format!("invalid header name `{name}`"))?;
    let mut value =
        HeaderValue::try_from(value).map_err(|_| format!("invalid value for header `{name}`"))?;
    value.set_sensitive(true);
    headers.insert(header, value);
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

    fn url(e: &Option<Endpoint>) -> String {
        match e {
            Some(Endpoint::Http(u)) => u.to_string(),
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn datadog_sites_map_to_their_metrics_and_logs_endpoints() {
        let d = Destination::resolve(
            &entry("plugin = \"datadog\"\nsite = \"datadoghq.eu\"\napi_key = \"k\""),
            &no_env,
        )
        .expect("resolves");
        assert_eq!(url(&d.metrics), "https://api.datadoghq.eu/");
        assert_eq!(url(&d.logs), "https://http-intake.logs.datadoghq.eu/");
        assert_eq!(d.credentials["dd-api-key"], "k");
        assert!(d.credentials["dd-api-key"].is_sensitive());
    }

    #[test]
    fn the_environment_supplies_site_and_key_and_explicit_endpoints_win() {
        let env = |k: &str| match k {
            "DD_SITE" => Some("us5.datadoghq.com".to_owned()),
            "DD_API_KEY" => Some("from-env".to_owned()),
            _ => None,
        };
        let d = Destination::resolve(&entry("plugin = \"datadog\""), &env).expect("resolves");
        assert_eq!(url(&d.metrics), "https://api.us5.datadoghq.com/");
        assert_eq!(d.credentials["dd-api-key"], "from-env");
        let d = Destination::resolve(
            &entry("plugin = \"datadog\"\nendpoint = \"http://127.0.0.1:9\"\nlogs_endpoint = \"http://127.0.0.1:10/l\""),
            &env,
        )
        .expect("resolves");
        assert_eq!(url(&d.metrics), "http://127.0.0.1:9/");
        assert_eq!(url(&d.logs), "http://127.0.0.1:10/l");
    }

    #[test]
    fn bad_presets_sites_and_missing_keys_are_named() {
        let err = |toml: &str| Destination::resolve(&entry(toml), &no_env).expect_err("refused");
        assert_eq!(
            err("plugin = \"datadog\"\nsite = \"datadog.com\"\napi_key = \"k\""),
            "unknown Datadog site `datadog.com` (known: datadoghq.com, us3.datadoghq.com, us5.datadoghq.com, datadoghq.eu, ap1.datadoghq.com, ap2.datadoghq.com, ddog-gov.com)"
        );
        assert_eq!(
            err("plugin = \"datadog\""),
            "needs an API key: set `api_key` or DD_API_KEY"
        );
        assert_eq!(
            err("plugin = \"x\"\npreset = \"graphite\"\nendpoint = \"udp://127.0.0.1:1\""),
            "unknown preset `graphite` (known: datadog)"
        );
        assert_eq!(
            err("plugin = \"x\"\napi_key = \"k\"\nendpoint = \"udp://127.0.0.1:1\""),
            "`site` and `api_key` need a preset"
        );
        assert_eq!(
            err("plugin = \"x\""),
            "no endpoint: set `endpoint` (or `metrics_endpoint`/`logs_endpoint`, or a `preset`)"
        );
        assert_eq!(
            err(
                "plugin = \"x\"\nendpoint = \"udp://127.0.0.1:1\"\nheaders = { \"bad header\" = \"v\" }"
            ),
            "invalid header name `bad header`"
        );
    }
}
