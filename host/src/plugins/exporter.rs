//! An exporter plugin: its supervised instance and what `init` said it wants.

use std::sync::{Arc, Mutex, PoisonError};

use wasmtime::component::Component;

use super::bindings::encoder::{self, ExporterInfo, Outbound, Outcome, Response};
use super::bindings::types::{LogBatch, MetricBatch};
use super::budget;
use super::runtime::{Limits, Runtime};
use super::stats;
use super::supervisor::{CallError, Health, LoadError, Shared, Supervised};

/// A loaded exporter plugin.
pub struct ExporterPlugin {
    name: Arc<str>,
    info: ExporterInfo,
    instance: Shared<encoder::Guest>,
}

impl ExporterPlugin {
    /// Validates `component` as an exporter (right world, `init` accepts `config`) and starts it.
    pub fn load(
        runtime: &Arc<Runtime>,
        name: &str,
        component: &Component,
        config: Vec<(String, String)>,
        limits: Limits,
    ) -> Result<Self, LoadError> {
        let name: Arc<str> = Arc::from(name);
        let info = Arc::new(Mutex::new(None));
        let seen = info.clone();
        let instance = Supervised::load(
            runtime,
            &name,
            component,
            limits,
            encoder::GuestIndices::new,
            move |indices, store, instance| {
                let guest = indices.load(&mut *store, instance)?;
                Ok(guest.call_init(&mut *store, &config)?.map(|i| {
                    *seen.lock().unwrap_or_else(PoisonError::into_inner) = Some(i);
                    guest
                }))
            },
        )?;
        let info = info
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .ok_or_else(|| LoadError::WrongWorld("init returned no exporter info".into()))?;
        Ok(Self {
            name,
            info,
            instance: instance.into(),
        })
    }

    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The signals and temporality `init` asked for.
    pub fn info(&self) -> ExporterInfo {
        self.info
    }

    /// Encodes a metric batch; a result past the plugin's budgets is refused.
    pub fn encode_metrics(&self, batch: &MetricBatch) -> Result<Vec<Outbound>, CallError> {
        stats::items(
            self.instance.scope(),
            &self.name,
            "in",
            budget::metric_size(batch).0,
        );
        let out = self.instance.call("encode-metrics", |g, store| {
            g.call_encode_metrics(store, batch)
        })?;
        budget::outbound(&self.name, &out, &self.instance.budgets())?;
        stats::items(self.instance.scope(), &self.name, "out", out.len());
        Ok(out)
    }

    /// Encodes a log batch; a result past the plugin's budgets is refused.
    pub fn encode_logs(&self, batch: &LogBatch) -> Result<Vec<Outbound>, CallError> {
        stats::items(
            self.instance.scope(),
            &self.name,
            "in",
            budget::log_size(batch).0,
        );
        let out = self
            .instance
            .call("encode-logs", |g, store| g.call_encode_logs(store, batch))?;
        budget::outbound(&self.name, &out, &self.instance.budgets())?;
        stats::items(self.instance.scope(), &self.name, "out", out.len());
        Ok(out)
    }

    /// Asks the plugin how to treat a response; if it cannot answer, the status code decides.
    pub fn classify(&self, response: &Response) -> Outcome {
        let answer = self.instance.call("classify", |g, store| {
            g.call_classify(store, response).map(Ok)
        });
        answer.unwrap_or_else(|_| match response.status {
            200..=299 => Outcome::Success,
            429 | 502 | 503 | 504 => Outcome::Retry(None),
            status => Outcome::Reject(format!("HTTP {status}")),
        })
    }

    /// The plugin's health.
    pub fn health(&self) -> Health {
        self.instance.health()
    }
}
