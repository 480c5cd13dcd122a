//! What the API accepts to create or change a stored integration: its signal, type, name and
//! state beside the keys of its config entry — any key an `[otlp]` section or an
//! `[[exporters]]` entry takes — read by the config file's own types and checked by the same
//! builder as the config file's integrations.

use serde_json::{Map, Value};

use super::store::{Entry, OTLP, PROMETHEUS, Stored};
use crate::config::{DeliveryConfig, ExporterConfig, OtlpConfig};
use crate::export::spec::{ExporterSpec, SpecError, check_name};
use crate::model::Signal;

/// A request body that is not an integration change.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// Not a JSON object.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// `kind` is not a signal.
    #[error("`kind`: {0}")]
    Kind(serde_json::Error),
    /// A field of the wrong type.
    #[error("`{0}` must be {1}")]
    Type(&'static str, &'static str),
}

/// A create or update request: the change an API call or a CLI command asks for.
#[derive(Debug, Default)]
pub struct Change {
    /// `metrics` or `logs`.
    pub kind: Option<Signal>,
    /// `otlp`, `prometheus`, or an exporter plugin's name.
    pub kind_type: Option<String>,
    /// A name people recognise it by.
    pub name: Option<String>,
    /// Whether it runs (default true).
    pub enabled: Option<bool>,
    /// The keys of its config entry; on update each replaces the stored one.
    pub entry: Map<String, Value>,
}

fn bad(field: &str, reason: impl Into<String>) -> SpecError {
    SpecError::new(field, reason)
}

/// `keys` read as `T`, one of the config file's types; a key `T` does not take, or a value of
/// the wrong type, is named.
fn read<T: serde::de::DeserializeOwned>(keys: Map<String, Value>) -> Result<T, SpecError> {
    serde_path_to_error::deserialize(Value::Object(keys)).map_err(|e| {
        let path = e.path().to_string();
        let message = match crate::config::is_secret_key(&path) {
            // A credential given with the wrong type must not come back in the error.
            true => crate::config::without_quoted(&e.inner().to_string()),
            false => e.inner().to_string(),
        };
        let field = match path {
            path if path != "." => path,
            _ => message
                .strip_prefix("unknown field `")
                .and_then(|rest| rest.split('`').next())
                .unwrap_or("body")
                .to_owned(),
        };
        bad(&field, message)
    })
}

/// A config entry of `kind_type` read from `keys` by the config file's own types; a key the
/// entry does not take, or a value of the wrong type, is named.
fn entry_of(kind_type: &str, mut keys: Map<String, Value>) -> Result<Entry, SpecError> {
    match kind_type {
        PROMETHEUS => {
            let config = keys.remove("config");
            let has = |k: &str| {
                keys.get(k)
                    .is_some_and(|v| !v.is_null() && v != &Value::Object(Map::new()))
            };
            if has("endpoint") || has("headers") {
                return Err(bad(
                    "endpoint",
                    "a prometheus integration is scraped at /metrics/<id>; it has no endpoint or headers",
                ));
            }
            if let Some(key) = keys
                .keys()
                .find(|k| !matches!(k.as_str(), "endpoint" | "headers"))
            {
                return Err(bad(
                    key,
                    format!("a prometheus integration takes no `{key}`"),
                ));
            }
            let prefix = config
                .as_ref()
                .and_then(|c| c.get("prefix"))
                .and_then(Value::as_str)
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
            Ok(Entry::Prometheus {
                prefix: prefix.to_owned(),
            })
        }
        OTLP => {
            if keys
                .remove("config")
                .is_some_and(|c| c.as_object().is_none_or(|c| !c.is_empty()))
            {
                return Err(bad("config", "otlp integrations take no plugin settings"));
            }
            read::<OtlpConfig>(keys).map(Entry::Otlp)
        }
        plugin => {
            // Earlier versions of the API took the Datadog `site` among the plugin settings.
            if let Some(site) = keys
                .get_mut("config")
                .and_then(Value::as_object_mut)
                .and_then(|c| c.remove("site"))
            {
                keys.entry("site").or_insert(site);
            }
            keys.insert("plugin".into(), Value::String(plugin.to_owned()));
            read::<ExporterConfig>(keys).map(Entry::Exporter)
        }
    }
}

/// The keys of `entry` as a request gives them, so that an update replaces some of them.
fn keys_of(entry: &Entry) -> Map<String, Value> {
    let value = match entry {
        Entry::Otlp(c) => serde_json::to_value(c),
        Entry::Exporter(e) => serde_json::to_value(e),
        Entry::Prometheus { prefix } => Ok(serde_json::json!({ "config": { "prefix": prefix } })),
    };
    let mut keys = match value {
        Ok(Value::Object(keys)) => keys,
        _ => Map::new(),
    };
    keys.remove("plugin");
    keys.remove("name");
    keys.retain(|_, v| !v.is_null());
    keys
}

/// The spec a stored integration builds: its entry built as a config file's would be, carrying
/// its one signal; `None` for a Prometheus integration, which is scraped.
pub fn spec_of(
    stored: &Stored,
    defaults: &DeliveryConfig,
) -> Result<Option<ExporterSpec>, SpecError> {
    let env = |k: &str| std::env::var(k).ok();
    let spec = match &stored.entry {
        Entry::Prometheus { .. } => return Ok(None),
        Entry::Otlp(config) => {
            ExporterSpec::otlp(&stored.name, config, defaults)?.ok_or_else(|| {
                bad(
                    "endpoint",
                    "required (this preset has no endpoint of its own)",
                )
            })?
        }
        Entry::Exporter(entry) => {
            ExporterSpec::exporter(entry, stored.name.clone(), defaults, &env)?
        }
    };
    Ok(Some(ExporterSpec {
        id: stored.id.clone(),
        only: Some(stored.kind),
        tenant: stored.tenant.clone(),
        ..spec
    }))
}

impl Change {
    /// Reads a JSON request body.
    pub fn from_json(body: &[u8]) -> Result<Self, BodyError> {
        let mut keys: Map<String, Value> = serde_json::from_slice(body)?;
        let mut take = |key: &str| keys.remove(key).filter(|v| !v.is_null());
        let kind = take("kind")
            .map(serde_json::from_value::<Signal>)
            .transpose()
            .map_err(BodyError::Kind)?;
        let text = |v: Option<Value>, key: &'static str| match v {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(BodyError::Type(key, "a string")),
        };
        let kind_type = text(take("type"), "type")?;
        let name = text(take("name"), "name")?;
        let enabled = match take("enabled") {
            None => None,
            Some(Value::Bool(b)) => Some(b),
            Some(_) => return Err(BodyError::Type("enabled", "true or false")),
        };
        Ok(Self {
            kind,
            kind_type,
            name,
            enabled,
            entry: keys,
        })
    }

    /// A request that only turns an integration on or off.
    pub fn enabled(on: bool) -> Self {
        Self {
            enabled: Some(on),
            ..Self::default()
        }
    }

    /// A new stored integration with id `id`.
    pub fn create(self, id: String) -> Result<Stored, SpecError> {
        let kind = self
            .kind
            .ok_or_else(|| bad("kind", "required: metrics, logs or traces"))?;
        let kind_type = self
            .kind_type
            .clone()
            .ok_or_else(|| bad("type", "required: otlp or an exporter plugin's name"))?;
        let name = self.name.clone().ok_or_else(|| bad("name", "required"))?;
        if crate::config::plugin_name_error(&kind_type).is_some() {
            return Err(bad(
                "type",
                format!("`{kind_type}` is neither otlp nor an exporter plugin's name"),
            ));
        }
        let mut stored = Stored {
            id,
            name,
            kind,
            enabled: true,
            entry: Entry::Prometheus {
                prefix: String::new(),
            },
            tenant: None,
        };
        self.apply(&mut stored, &kind_type, Map::new())?;
        Ok(stored)
    }

    /// Applies an update to `stored`; kind and type cannot change, and a refused update
    /// changes nothing.
    pub fn update(self, stored: &mut Stored) -> Result<(), SpecError> {
        if self.kind.is_some_and(|k| k != stored.kind) {
            return Err(bad("kind", "cannot change; create another integration"));
        }
        let kind_type = stored.entry.kind_type().to_owned();
        if self.kind_type.as_ref().is_some_and(|t| *t != kind_type) {
            return Err(bad("type", "cannot change; create another integration"));
        }
        let mut next = stored.clone();
        let keys = keys_of(&stored.entry);
        self.apply(&mut next, &kind_type, keys)?;
        *stored = next;
        Ok(())
    }

    /// Sets what the request gives over `keys` (the stored entry's) and checks the result as
    /// the config file's integrations are checked.
    fn apply(
        self,
        s: &mut Stored,
        kind_type: &str,
        mut keys: Map<String, Value>,
    ) -> Result<(), SpecError> {
        if let Some(enabled) = self.enabled {
            s.enabled = enabled;
        }
        if let Some(name) = self.name {
            s.name = name;
        }
        check_name(&s.name).map_err(|_| bad("name", "1 to 100 printable characters"))?;
        keys.extend(self.entry);
        s.entry = entry_of(kind_type, keys)?;
        if matches!(s.entry, Entry::Prometheus { .. }) && s.kind != Signal::Metrics {
            return Err(bad("kind", "a prometheus integration serves metrics"));
        }
        spec_of(s, &DeliveryConfig::default()).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> Change {
        Change::from_json(json.as_bytes()).expect("valid JSON")
    }

    fn built(s: &Stored) -> ExporterSpec {
        spec_of(s, &DeliveryConfig::default())
            .expect("builds")
            .expect("pushes")
    }

    #[test]
    fn presets_fill_the_endpoint_and_the_credential_header() {
        let s =
            spec(r#"{"kind":"logs","type":"otlp","name":"hc","preset":"honeycomb","api_key":"k"}"#)
                .create("id".into())
                .expect("valid");
        let b = built(&s);
        assert_eq!(b.logs.as_deref(), Some("https://api.honeycomb.io/v1/logs"));
        assert_eq!(b.headers["x-honeycomb-team"], "k");
        let mut s = s;
        spec(r#"{"name":"renamed","enabled":false}"#)
            .update(&mut s)
            .expect("update");
        assert_eq!((s.name.as_str(), s.enabled), ("renamed", false));
        assert_eq!(
            built(&s).headers["x-honeycomb-team"],
            "k",
            "headers kept unless given"
        );
    }

    #[test]
    fn a_credential_of_the_wrong_type_is_not_shown_in_the_error() {
        for json in [
            r#"{"kind":"logs","type":"otlp","name":"n","endpoint":"http://x","headers":"Bearer canary-1"}"#,
            r#"{"kind":"logs","type":"otlp","name":"n","endpoint":"http://x","headers":{"authorization":4242}}"#,
            r#"{"kind":"logs","type":"datadog","name":"n","api_key":["canary-2"]}"#,
        ] {
            let err = spec(json).create("id".into()).expect_err(json).to_string();
            assert!(!err.contains("canary") && !err.contains("4242"), "{err}");
            assert!(
                err.starts_with("`headers") || err.starts_with("`api_key`"),
                "the field is named: {err}"
            );
        }
    }

    #[test]
    fn every_key_of_a_config_entry_can_be_given() {
        let s = spec(
            r#"{"kind":"metrics","type":"otlp","name":"g","endpoint":"http://c:4317","protocol":"grpc","compression":"none","temporality_preference":"delta","delivery":{"interval":"2s","retry":{"max_retries":7}}}"#,
        )
        .create("id".into())
        .expect("valid");
        let b = built(&s);
        assert_eq!(
            b.metrics.as_deref(),
            Some("http://c:4317"),
            "gRPC keeps the base"
        );
        assert_eq!(
            b.target,
            crate::export::spec::Target::Otlp {
                temporality: crate::model::metric::TemporalityPreference::Delta,
                compression: crate::config::Compression::None,
                metrics_protocol: crate::config::Protocol::Grpc,
                traces_protocol: crate::config::Protocol::Grpc,
                logs_protocol: crate::config::Protocol::Grpc,
            }
        );
        assert_eq!(b.delivery.interval, std::time::Duration::from_secs(2));
        assert_eq!(b.delivery.retry.max_retries, 7);
        let p = spec(
            r#"{"kind":"metrics","type":"statsd","name":"s","metrics_endpoint":"udp://h:8125","config":{"prefix":"x","flavor":"dogstatsd"},"delivery":{"udp_bytes_per_second":1000}}"#,
        )
        .create("id".into())
        .expect("valid");
        let b = built(&p);
        assert_eq!(b.metrics.as_deref(), Some("udp://h:8125"));
        let crate::export::spec::Target::Plugin { settings, .. } = &b.target else {
            panic!("a plugin")
        };
        assert_eq!(settings["flavor"].as_str(), Some("dogstatsd"));
        assert_eq!(b.delivery.udp_bytes_per_second, 1000);
        let err = spec(r#"{"kind":"metrics","type":"otlp","name":"n","endpoint":"http://x","protocol":"thrift"}"#)
            .create("id".into())
            .expect_err("no such protocol");
        assert_eq!(err.field, "protocol");
        assert!(err.reason.contains("unknown variant `thrift`"), "{err}");
    }

    #[test]
    fn every_bad_field_is_named() {
        let cases = [
            (
                r#"{"type":"otlp","name":"n","endpoint":"http://x"}"#,
                "`kind`: required: metrics, logs or traces",
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
            (
                r#"{"kind":"metrics","type":"otlp","name":"n","endpoint":"http://x","colour":"red"}"#,
                "`colour`: unknown field `colour`, expected one of `endpoint`, `metrics_endpoint`, `logs_endpoint`, `traces_endpoint`, `headers`, `preset`, `api_key`, `logs`, `temporality_preference`, `delivery`, `compression`, `protocol`, `metrics_protocol`, `logs_protocol`, `traces_protocol`, `select`, `transforms`",
            ),
        ];
        for (json, want) in cases {
            let err = spec(json).create("id".into()).expect_err(json);
            assert_eq!(err.to_string(), want, "{json}");
        }
        assert!(Change::from_json(br#"{"kind":"profiles"}"#).is_err());
        assert!(Change::from_json(br#"{"kind":"traces"}"#).is_ok());
        assert!(Change::from_json(b"[1]").is_err());
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
        assert_eq!(
            built(&s).metrics.as_deref(),
            Some("http://x/v1/metrics"),
            "a refused update changes nothing"
        );
    }
}
