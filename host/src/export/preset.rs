//! Backend presets: the endpoints and credential header a known backend needs, so that an
//! integration for it takes only an API key (and, for Datadog, a site).

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

/// Where a preset's endpoints come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoints {
    /// The user gives the endpoint.
    None,
    /// One OTLP base URL for every account.
    Otlp(&'static str),
    /// Datadog's per-site API and logs intake hosts.
    DatadogSite,
}

/// A known backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preset {
    /// The preset's name.
    pub name: &'static str,
    /// The exporter plugin it is made for; `None` for OTLP backends.
    pub plugin: Option<&'static str>,
    endpoints: Endpoints,
    /// The header the API key goes in.
    pub credential_header: Option<&'static str>,
    /// The environment variable read when no API key is given.
    pub credential_env: Option<&'static str>,
    /// Plugin settings the preset gives unless the integration gives them.
    pub plugin_settings: &'static [(&'static str, &'static str)],
}

/// A preset or a preset's site that does not exist.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PresetError {
    /// No preset has this name.
    #[error("unknown preset `{0}` (known: {known})", known = PRESETS.iter().map(|p| p.name).collect::<Vec<_>>().join(", "))]
    Unknown(String),
    /// Datadog has no such site.
    #[error("unknown Datadog site `{0}` (known: {known})", known = DATADOG_SITES.join(", "))]
    Site(String),
}

/// Every preset.
pub const PRESETS: &[Preset] = &[
    Preset {
        name: "custom",
        plugin: None,
        endpoints: Endpoints::None,
        credential_header: None,
        credential_env: None,
        plugin_settings: &[],
    },
    Preset {
        name: "self-hosted",
        plugin: None,
        endpoints: Endpoints::None,
        credential_header: None,
        credential_env: None,
        plugin_settings: &[],
    },
    Preset {
        name: "grafana-cloud",
        plugin: None,
        endpoints: Endpoints::None,
        credential_header: Some("authorization"),
        credential_env: None,
        plugin_settings: &[],
    },
    Preset {
        name: "new-relic",
        plugin: None,
        endpoints: Endpoints::Otlp("https://otlp.nr-data.net"),
        credential_header: Some("api-key"),
        credential_env: None,
        plugin_settings: &[],
    },
    Preset {
        name: "honeycomb",
        plugin: None,
        endpoints: Endpoints::Otlp("https://api.honeycomb.io"),
        credential_header: Some("x-honeycomb-team"),
        credential_env: None,
        plugin_settings: &[],
    },
    Preset {
        name: "datadog",
        plugin: Some("datadog"),
        endpoints: Endpoints::DatadogSite,
        credential_header: Some("DD-API-KEY"),
        credential_env: Some("DD_API_KEY"),
        plugin_settings: &[],
    },
    Preset {
        name: "grafana-cloud-prometheus",
        plugin: Some("prometheus-remote-write"),
        endpoints: Endpoints::None,
        credential_header: Some("authorization"),
        credential_env: None,
        plugin_settings: &[("path", "/api/prom/push")],
    },
    Preset {
        name: "mimir",
        plugin: Some("prometheus-remote-write"),
        endpoints: Endpoints::None,
        credential_header: Some("X-Scope-OrgID"),
        credential_env: None,
        plugin_settings: &[("path", "/api/v1/push")],
    },
];

/// Exporter plugins whose endpoint, when it has a path, is the whole request URL (as a
/// remote-write URL is always given): their `path` setting is then empty unless the
/// integration sets one.
const WHOLE_URL_PLUGINS: &[&str] = &["prometheus-remote-write"];

/// The `path` setting plugin `plugin` gets for `endpoint`: empty (the endpoint as given) when
/// the plugin takes whole URLs and the endpoint has a path; `None` to leave it to the preset or
/// the plugin's default (a bare host).
pub fn whole_url_path(plugin: &str, endpoint: &str) -> Option<&'static str> {
    let url = reqwest::Url::parse(endpoint).ok()?;
    let has_path = !matches!(url.path(), "" | "/");
    (WHOLE_URL_PLUGINS.contains(&plugin) && has_path).then_some("")
}

/// The preset named `name`, or an error listing the known ones.
pub fn find(name: &str) -> Result<&'static Preset, PresetError> {
    PRESETS
        .iter()
        .find(|p| p.name == name)
        .ok_or_else(|| PresetError::Unknown(name.to_owned()))
}

/// The preset every integration of exporter plugin `plugin` gets unless it names one: the
/// plugin's own (named as it is), if there is one.
pub fn for_plugin(plugin: &str) -> Option<&'static Preset> {
    PRESETS
        .iter()
        .find(|p| p.plugin == Some(plugin) && p.name == plugin)
}

impl Preset {
    /// Whether an integration of `kind_type` (`otlp` or a plugin's name) may use this preset:
    /// a plugin's own preset fits only that plugin, the others fit everything else.
    pub fn fits(&self, kind_type: &str) -> bool {
        match self.plugin {
            Some(p) => p == kind_type,
            None => PRESETS.iter().all(|other| other.plugin != Some(kind_type)),
        }
    }

    /// The base URLs the preset fills in, metrics then logs; `site` picks a Datadog site
    /// (else `DD_SITE`, else the first one).
    pub fn endpoints(
        &self,
        site: Option<&str>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<(String, String)>, PresetError> {
        match self.endpoints {
            Endpoints::None => Ok(None),
            Endpoints::Otlp(base) => Ok(Some((base.to_owned(), base.to_owned()))),
            Endpoints::DatadogSite => {
                let site = site
                    .map(str::to_owned)
                    .or_else(|| env("DD_SITE"))
                    .unwrap_or_else(|| DATADOG_SITES[0].to_owned());
                if !DATADOG_SITES.contains(&site.as_str()) {
                    return Err(PresetError::Site(site));
                }
                Ok(Some((
                    format!("https://api.{site}"),
                    format!("https://http-intake.logs.{site}"),
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn datadog_sites_map_to_their_metrics_and_logs_endpoints() {
        let dd = find("datadog").expect("known");
        assert_eq!(
            dd.endpoints(Some("datadoghq.eu"), &no_env),
            Ok(Some((
                "https://api.datadoghq.eu".into(),
                "https://http-intake.logs.datadoghq.eu".into()
            )))
        );
        let env = |k: &str| (k == "DD_SITE").then(|| "us5.datadoghq.com".to_owned());
        assert_eq!(
            dd.endpoints(None, &env).expect("site").map(|e| e.0),
            Some("https://api.us5.datadoghq.com".into())
        );
        assert_eq!(
            dd.endpoints(Some("datadog.com"), &no_env)
                .map_err(|e| e.to_string()),
            Err("unknown Datadog site `datadog.com` (known: datadoghq.com, us3.datadoghq.com, us5.datadoghq.com, datadoghq.eu, ap1.datadoghq.com, ap2.datadoghq.com, ddog-gov.com)".into())
        );
    }

    #[test]
    fn presets_fit_their_types() {
        assert!(find("datadog").expect("known").fits("datadog"));
        assert!(!find("datadog").expect("known").fits("otlp"));
        assert!(find("honeycomb").expect("known").fits("otlp"));
        assert!(find("custom").expect("known").fits("statsd"));
        assert!(!find("honeycomb").expect("known").fits("datadog"));
        assert_eq!(
            find("acme").expect_err("unknown").to_string(),
            "unknown preset `acme` (known: custom, self-hosted, grafana-cloud, new-relic, honeycomb, datadog, grafana-cloud-prometheus, mimir)"
        );
        assert_eq!(for_plugin("datadog").map(|p| p.name), Some("datadog"));
        assert_eq!(for_plugin("statsd"), None);
        assert_eq!(
            for_plugin("prometheus-remote-write"),
            None,
            "its presets apply only when named"
        );
        assert!(
            find("mimir")
                .expect("known")
                .fits("prometheus-remote-write")
        );
        assert!(!find("mimir").expect("known").fits("otlp"));
    }
}
