//! Exporter plugins: the `encoder` interface of the exporter world, what `init` says it wants,
//! and the calls that turn batches into requests and classify responses.

use wasmtime::Store;
use wasmtime::component::{Instance, InstancePre};

use super::bindings::encoder::{self, ExporterInfo, Outbound, Outcome, Response};
use super::bindings::types::{LogBatch, MetricBatch, Temporality};
use super::budget;
use super::error::CallError;
use super::kind::{GuestCall, PluginKind, Settings, World};
use super::plugin::Plugin;
use super::runtime::PluginState;

/// The exporter kind: its `init` reports the signals and temporality it wants.
#[derive(Debug, Clone, Copy)]
pub struct Encoder;

impl PluginKind for Encoder {
    const NAME: &'static str = "exporter";
    type Guest = encoder::Guest;
    type Indices = encoder::GuestIndices;
    type Info = ExporterInfo;

    fn indices(pre: &InstancePre<PluginState>) -> wasmtime::Result<Self::Indices> {
        encoder::GuestIndices::new(pre)
    }

    fn start(
        indices: &Self::Indices,
        store: &mut Store<PluginState>,
        instance: &Instance,
        config: &Settings,
    ) -> GuestCall<(Self::Guest, Self::Info)> {
        let guest = indices.load(&mut *store, instance)?;
        Ok(guest
            .call_init(&mut *store, config)?
            .map(|info| (guest, info)))
    }

    fn world(info: &ExporterInfo) -> World {
        let mut signals = Vec::new();
        if info.signals.contains(encoder::Signals::METRICS) {
            signals.push("metrics");
        }
        if info.signals.contains(encoder::Signals::LOGS) {
            signals.push("logs");
        }
        let temporality = match info.temporality {
            Temporality::Cumulative => "cumulative",
            Temporality::Delta => "delta",
        };
        World::Exporter {
            signals: signals.join(", "),
            temporality: temporality.to_owned(),
        }
    }
}

/// A loaded exporter plugin.
pub type ExporterPlugin = Plugin<Encoder>;

impl Plugin<Encoder> {
    /// Encodes a metric batch; a result past the plugin's budgets is refused.
    pub fn encode_metrics(&self, batch: &MetricBatch) -> Result<Vec<Outbound>, CallError> {
        self.encode(
            budget::metric_size(batch).0,
            "encode-metrics",
            |g, store| g.call_encode_metrics(store, batch),
        )
    }

    /// Encodes a log batch; a result past the plugin's budgets is refused.
    pub fn encode_logs(&self, batch: &LogBatch) -> Result<Vec<Outbound>, CallError> {
        self.encode(budget::log_size(batch).0, "encode-logs", |g, store| {
            g.call_encode_logs(store, batch)
        })
    }

    /// Calls `function` on a batch of `items` items, counting what goes in and out.
    fn encode(
        &self,
        items: usize,
        function: &'static str,
        call: impl FnOnce(&encoder::Guest, &mut Store<PluginState>) -> GuestCall<Vec<Outbound>>,
    ) -> Result<Vec<Outbound>, CallError> {
        let instance = self.instance();
        let stats = instance.stats();
        stats.items(self.name(), "in", items);
        let out = instance.call(function, call)?;
        budget::outbound(stats, self.shared_name(), &out, &instance.budgets())?;
        stats.items(self.name(), "out", out.len());
        Ok(out)
    }

    /// Asks the plugin how to treat a response; if it cannot answer, the status code decides.
    pub fn classify(&self, response: &Response) -> Outcome {
        let answer = self.instance().call("classify", |g, store| {
            g.call_classify(store, response).map(Ok)
        });
        answer.unwrap_or_else(|_| match response.status {
            200..=299 => Outcome::Success,
            429 | 502 | 503 | 504 => Outcome::Retry(None),
            status => Outcome::Reject(format!("HTTP {status}")),
        })
    }
}
