//! What the API accepts to create or change a stored integration, checked field by field, and
//! the presets that fill in endpoints and credential header names.

use std::collections::BTreeMap;

use reqwest::header::{HeaderName, HeaderValue};

use super::store::Stored;
use crate::config::DeliveryConfig;
use crate::export::preset;
use crate::model::Signal;

/// The native push integration type.
pub const OTLP: &str = "otlp";

/// The pull integration type: a scrape path `/metrics/<id>` with prefixed metric names.
pub const PROMETHEUS: &str = "prometheus";

/// A create or update request: every field optional, checked against what it applies to.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// `metrics` or `logs`.
    pub kind: Option<Signal>,
    /// The integration type.
    #[serde(rename = "type")]
    pub kind_type: Option<String>,
    /// A name people recognise it by.
    pub name: Option<String>,
    /// A preset filling in endpoint and credential header.
    pub preset: Option<String>,
    /// The base URL (`/v1/metrics` or `/v1/logs` is appended).
    pub endpoint: Option<String>,
    /// Headers to send; on update they replace the stored ones.
    pub headers: Option<BTreeMap<String, String>>,
    /// The credential, sent in the preset's credential header.
    pub api_key: Option<String>,
    /// Plugin settings (and `site` for the Datadog preset); on update they replace the stored ones.
    pub config: Option<serde_json::Map<String, serde_json::Value>>,
    /// Whether it runs (default true).
    pub enabled: Option<bool>,
    /// Delivery settings over `[delivery]` (interval, timeout, queues, retry); on update they
    /// replace the stored ones.
    pub delivery: Option<DeliveryConfig>,
}

/// A field that cannot be accepted, named with the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{field}`: {reason}")]
pub struct SpecError {
    /// The field.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

fn bad(field: &'static str, reason: impl Into<String>) -> SpecError {
    SpecError {
        field,
        reason: reason.into(),
    }
}

impl Spec {
    /// A new stored integration with id `id`.
    pub fn create(self, id: String) -> Result<Stored, SpecError> {
        let kind = self
            .kind
            .ok_or_else(|| bad("kind", "required: metrics or logs"))?;
        let kind_type = self
            .kind_type
            .clone()
            .ok_or_else(|| bad("type", "required: otlp or an exporter plugin's name"))?;
        let name = self.name.clone().ok_or_else(|| bad("name", "required"))?;
        let mut stored = Stored {
            id,
            name,
            kind,
            kind_type,
            preset: None,
            endpoint: String::new(),
            headers: BTreeMap::new(),
            config: serde_json::Map::new(),
            enabled: true,
            delivery: DeliveryConfig::default(),
        };
        self.apply_to(&mut stored)?;
        Ok(stored)
    }

    /// Applies an update to `stored`; kind and type cannot change.
    pub fn update(self, stored: &mut Stored) -> Result<(), SpecError> {
        if self.kind.is_some_and(|k| k != stored.kind) {
            return Err(bad("kind", "cannot change; create another integration"));
        }
        if self
            .kind_type
            .as_ref()
            .is_some_and(|t| *t != stored.kind_type)
        {
            return Err(bad("type", "cannot change; create another integration"));
        }
        let mut next = stored.clone();
        self.apply_to(&mut next)?;
        *stored = next;
        Ok(())
    }

    fn apply_to(self, s: &mut Stored) -> Result<(), SpecError> {
        let plugin_name = |t: &str| {
            !t.is_empty()
                && t.len() <= 64
                && t.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        };
        if !plugin_name(&s.kind_type) {
            return Err(bad(
                "type",
                format!(
                    "`{}` is neither otlp nor an exporter plugin's name",
                    s.kind_type
                ),
            ));
        }
        let otlp = s.kind_type == OTLP;
        if let Some(enabled) = self.enabled {
            s.enabled = enabled;
        }
        if let Some(name) = self.name {
            s.name = name;
        }
        crate::export::spec::check_name(&s.name)
            .map_err(|_| bad("name", "1 to 100 printable characters"))?;
        if let Some(name) = self.preset {
            let found = preset::find(&name).map_err(|e| bad("preset", e))?;
            if !found.fits(&s.kind_type) {
                return Err(bad(
                    "preset",
                    format!("preset `{name}` does not fit type `{}`", s.kind_type),
                ));
            }
            s.preset = Some(name);
        }
        if s.preset.is_none() {
            s.preset = preset::for_plugin(&s.kind_type).map(|p| p.name.to_owned());
        }
        let preset = s.preset.as_deref().and_then(|p| preset::find(p).ok());
        let preset_endpoint = preset
            .and_then(|p| p.endpoints(None, &|_| None).ok().flatten())
            .map(|(metrics, _)| metrics)
            .filter(|_| preset.is_some_and(|p| p.plugin.is_none()));
        if let Some(endpoint) = self
            .endpoint
            .or_else(|| s.endpoint.is_empty().then_some(preset_endpoint).flatten())
        {
            s.endpoint = endpoint;
        }
        if let Some(delivery) = self.delivery {
            if delivery
                .interval
                .is_some_and(|i| i < std::time::Duration::from_millis(100))
            {
                return Err(bad("delivery", "`interval` must be at least 100ms"));
            }
            s.delivery = delivery;
        }
        if let Some(config) = self.config {
            if otlp && !config.is_empty() {
                return Err(bad("config", "otlp integrations take no plugin settings"));
            }
            s.config = config;
        }
        if s.kind_type == PROMETHEUS {
            return pull(s);
        }
        let filled_by_preset = preset.is_some_and(|p| p.plugin.is_some());
        if !(s.endpoint.is_empty() && filled_by_preset) {
            let url = reqwest::Url::parse(&s.endpoint).map_err(|e| {
                let why = if s.endpoint.is_empty() {
                    "required (this preset has no endpoint of its own)".to_owned()
                } else {
                    format!("not a URL: {e}")
                };
                bad("endpoint", why)
            })?;
            let schemes: &[&str] = if otlp {
                &["http", "https"]
            } else {
                &["http", "https", "udp"]
            };
            if !schemes.contains(&url.scheme()) || url.host().is_none() {
                let why = if otlp {
                    "must be an http:// or https:// URL with a host"
                } else {
                    "must be an http://, https:// or udp:// URL with a host"
                };
                return Err(bad("endpoint", why));
            }
        }
        if let Some(headers) = self.headers {
            s.headers = headers;
        }
        if let Some(key) = self.api_key {
            let header = preset.and_then(|p| p.credential_header).ok_or_else(|| {
                bad(
                    "api_key",
                    "needs a preset with a credential header; use headers",
                )
            })?;
            s.headers.insert(header.to_owned(), key);
        }
        for (k, v) in &s.headers {
            HeaderName::try_from(k.as_str())
                .map_err(|_| bad("headers", format!("`{k}` is not a valid header name")))?;
            HeaderValue::try_from(v.as_str()).map_err(|_| {
                bad(
                    "headers",
                    format!("the value of `{k}` is not valid in a header"),
                )
            })?;
        }
        Ok(())
    }
}

/// Checks a Prometheus pull integration: metrics, no endpoint or headers, a valid prefix.
fn pull(s: &Stored) -> Result<(), SpecError> {
    if s.kind != Signal::Metrics {
        return Err(bad("kind", "a prometheus integration serves metrics"));
    }
    if !s.endpoint.is_empty() || !s.headers.is_empty() {
        return Err(bad(
            "endpoint",
            "a prometheus integration is scraped at /metrics/<id>; it has no endpoint or headers",
        ));
    }
    let prefix = s
        .config
        .get("prefix")
        .and_then(|p| p.as_str())
        .unwrap_or("");
    let mut chars = prefix.chars();
    let valid = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
    if !valid {
        return Err(bad(
            "config",
            "a prometheus integration needs `prefix`, a metric name prefix ([a-zA-Z_:][a-zA-Z0-9_:]*)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> Spec {
        serde_json::from_str(json).expect("valid JSON")
    }

    #[test]
    fn presets_fill_the_endpoint_and_the_credential_header() {
        let s =
            spec(r#"{"kind":"logs","type":"otlp","name":"hc","preset":"honeycomb","api_key":"k"}"#)
                .create("id".into())
                .expect("valid");
        assert_eq!(s.endpoint, "https://api.honeycomb.io");
        assert_eq!(s.headers["x-honeycomb-team"], "k");
        assert_eq!(
            crate::config::signal_url(&s.endpoint, s.kind.as_str()),
            "https://api.honeycomb.io/v1/logs"
        );
        let mut s = s;
        spec(r#"{"name":"renamed","enabled":false}"#)
            .update(&mut s)
            .expect("update");
        assert_eq!((s.name.as_str(), s.enabled), ("renamed", false));
        assert_eq!(
            s.headers["x-honeycomb-team"], "k",
            "headers kept unless given"
        );
    }

    #[test]
    fn every_bad_field_is_named() {
        let cases = [
            (
                r#"{"type":"otlp","name":"n","endpoint":"http://x"}"#,
                "`kind`: required: metrics or logs",
            ),
            (
                r#"{"kind":"metrics","name":"n","endpoint":"http://x"}"#,
                "`type`: required: otlp or an exporter plugin's name",
            ),
            (
                r#"{"kind":"metrics","type":"Kafka!","name":"n","endpoint":"http://x"}"#,
                "`type`: `Kafka!` is neither otlp nor an exporter plugin's name",
            ),
            (
                r#"{"kind":"metrics","type":"statsd","name":"n","endpoint":"ftp://x"}"#,
                "`endpoint`: must be an http://, https:// or udp:// URL with a host",
            ),
            (
                r#"{"kind":"metrics","type":"otlp","name":"n","preset":"datadog","endpoint":"http://x"}"#,
                "`preset`: preset `datadog` does not fit type `otlp`",
            ),
            (
                r#"{"kind":"metrics","type":"otlp","name":"n","endpoint":"http://x","config":{"a":1}}"#,
                "`config`: otlp integrations take no plugin settings",
            ),
            (
                r#"{"kind":"metrics","type":"otlp","endpoint":"http://x"}"#,
                "`name`: required",
            ),
            (
                r#"{"kind":"metrics","type":"otlp","name":" ","endpoint":"http://x"}"#,
                "`name`: 1 to 100 printable characters",
            ),
            (
                r#"{"kind":"metrics","type":"otlp","name":"n"}"#,
                "`endpoint`: required (this preset has no endpoint of its own)",
            ),
            (
                r#"{"kind":"metrics","type":"otlp","name":"n","endpoint":"ftp://x"}"#,
                "`endpoint`: must be an http:// or https:// URL with a host",
            ),
            (
                r#"{"kind":"metrics","type":"otlp","name":"n","endpoint":"not a url"}"#,
                "`endpoint`: not a URL: relative URL without a base",
            ),
            (
                r#"{"kind":"metrics","type":"otlp","name":"n","preset":"acme","endpoint":"http://x"}"#,
                "`preset`: unknown preset `acme` (known: custom, self-hosted, grafana-cloud, new-relic, honeycomb, datadog, grafana-cloud-prometheus, mimir)",
            ),
            (
                r#"{"kind":"metrics","type":"otlp","name":"n","endpoint":"http://x","headers":{"bad name":"v"}}"#,
                "`headers`: `bad name` is not a valid header name",
            ),
            (
                r#"{"kind":"metrics","type":"otlp","name":"n","endpoint":"http://x","headers":{"k":"line\nbreak"}}"#,
                "`headers`: the value of `k` is not valid in a header",
            ),
            (
                r#"{"kind":"metrics","type":"otlp","name":"n","endpoint":"http://x","api_key":"k"}"#,
                "`api_key`: needs a preset with a credential header; use headers",
            ),
        ];
        for (json, want) in cases {
            let err = spec(json).create("id".into()).expect_err(json);
            assert_eq!(err.to_string(), want, "{json}");
        }
        assert!(serde_json::from_str::<Spec>(r#"{"kind":"traces"}"#).is_err());
        assert!(serde_json::from_str::<Spec>(r#"{"colour":"red"}"#).is_err());
        let mut s = spec(r#"{"kind":"metrics","type":"otlp","name":"n","endpoint":"http://x"}"#)
            .create("id".into())
            .expect("valid");
        let err = spec(r#"{"kind":"logs"}"#).update(&mut s).expect_err("kind");
        assert_eq!(
            err.to_string(),
            "`kind`: cannot change; create another integration"
        );
        let err = spec(r#"{"endpoint":""}"#)
            .update(&mut s)
            .expect_err("endpoint");
        assert_eq!(err.field, "endpoint");
        assert_eq!(s.endpoint, "http://x", "a refused update changes nothing");
    }
}
