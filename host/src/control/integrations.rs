//! The integrations the host delivers to, as operators see and manage them: configured ones
//! (read-only), their state, test connection and resume.

use std::sync::Arc;
use std::time::Duration;

use crate::config::OtlpConfig;
use crate::export::delivery::{OTLP_EXPORTER, Report};
use crate::export::otlp::exporter::OtlpExporter;
use crate::export::plugin::PluginExporter;
use crate::export::probe::Diagnosis;
use crate::plugins::reload::Reloadable as _;
use crate::telemetry::Signal;

/// How long a test connection waits for an answer.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// One integration as the API shows it: never a credential value, only which headers are set.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Integration {
    /// Its id (`otlp`, or the plugin's name).
    pub id: String,
    /// `otlp`, or the exporter plugin's name.
    #[serde(rename = "type")]
    pub kind: String,
    /// Where it was defined: `config`.
    pub source: &'static str,
    /// Configured integrations cannot be changed through the API.
    pub read_only: bool,
    /// Each signal's endpoint.
    pub endpoints: Vec<(&'static str, String)>,
    /// The names of the headers sent with its requests.
    pub headers_set: Vec<String>,
    /// Each signal's delivery status.
    pub signals: Vec<Report>,
}

/// One signal's test connection result.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TestResult {
    /// `metrics` or `logs`.
    pub signal: &'static str,
    /// What the probe found.
    #[serde(flatten)]
    pub diagnosis: Diagnosis,
    /// The diagnosis in words.
    pub message: String,
}

/// The native OTLP integration, with its endpoints and the names of its headers.
#[derive(Clone)]
struct Otlp {
    exporter: Arc<OtlpExporter>,
    endpoints: Vec<(&'static str, String)>,
    headers: Vec<String>,
}

/// Every integration of a running host.
#[derive(Clone, Default)]
pub struct Integrations {
    otlp: Option<Otlp>,
    plugins: Vec<Arc<PluginExporter>>,
}

impl Integrations {
    /// The configured OTLP exporter (with its configuration, for endpoints and header names) and plugin exporters.
    pub fn new(
        otlp: Option<Arc<OtlpExporter>>,
        config: &OtlpConfig,
        plugins: Vec<Arc<PluginExporter>>,
    ) -> Self {
        let endpoints = [
            ("metrics", config.metrics_url()),
            ("logs", config.logs_url()),
        ]
        .into_iter()
        .filter_map(|(s, url)| Some((s, url?)))
        .collect();
        let headers = config.headers.keys().cloned().collect();
        Self {
            otlp: otlp.map(|exporter| Otlp {
                exporter,
                endpoints,
                headers,
            }),
            plugins,
        }
    }

    /// Every integration.
    pub fn list(&self) -> Vec<Integration> {
        let otlp = self.otlp.iter().map(|o| Integration {
            id: OTLP_EXPORTER.to_owned(),
            kind: OTLP_EXPORTER.to_owned(),
            source: "config",
            read_only: true,
            endpoints: o.endpoints.clone(),
            headers_set: o.headers.clone(),
            signals: o.exporter.reports(),
        });
        let plugins = self.plugins.iter().map(|p| Integration {
            id: p.plugin().to_owned(),
            kind: p.plugin().to_owned(),
            source: "config",
            read_only: true,
            endpoints: p
                .endpoints()
                .into_iter()
                .map(|(s, e)| (s.as_str(), e))
                .collect(),
            headers_set: p.credential_headers(),
            signals: p.reports(),
        });
        otlp.chain(plugins).collect()
    }

    /// The integration `id`.
    pub fn get(&self, id: &str) -> Option<Integration> {
        self.list().into_iter().find(|i| i.id == id)
    }

    /// Every signal's delivery report.
    pub fn reports(&self) -> Vec<Report> {
        self.list().into_iter().flat_map(|i| i.signals).collect()
    }

    /// Resumes integration `id`: whether it was paused, or `None` if there is no such integration.
    pub fn resume(&self, id: &str) -> Option<bool> {
        if id == OTLP_EXPORTER {
            return self.otlp.as_ref().map(|o| o.exporter.resume());
        }
        let matching: Vec<_> = self.plugins.iter().filter(|p| p.plugin() == id).collect();
        if matching.is_empty() {
            return None;
        }
        Some(matching.iter().fold(false, |any, p| p.resume() | any))
    }

    /// Tests integration `id`'s endpoints, or `None` if there is no such integration.
    pub async fn test(&self, id: &str) -> Option<Vec<TestResult>> {
        let results: Vec<(Signal, Diagnosis)> = if id == OTLP_EXPORTER {
            self.otlp.as_ref()?.exporter.test(PROBE_TIMEOUT).await
        } else {
            let plugin = self.plugins.iter().find(|p| p.plugin() == id)?;
            plugin.test(PROBE_TIMEOUT).await
        };
        Some(
            results
                .into_iter()
                .map(|(signal, diagnosis)| TestResult {
                    signal: signal.as_str(),
                    message: diagnosis.message(),
                    diagnosis,
                })
                .collect(),
        )
    }
}
