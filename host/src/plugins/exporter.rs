//! Exporter plugins: the `encoder` interface of the exporter world (with `span-encoder` in the
//! trace-exporter world), what `init` says it wants, and the calls that turn batches into
//! requests and classify responses.

use wasmtime::Store;
use wasmtime::component::{Instance, InstancePre};

use super::bindings::encoder::{self, ExporterInfo, Outbound, Outcome, Response, Signals};
use super::bindings::span_encoder;
use super::bindings::types::{LogBatch, MetricBatch, SpanBatch, Temporality};
use super::budget;
use super::error::CallError;
use super::kind::{GuestCall, PluginKind, Settings, WithSpans, World};
use super::plugin::Plugin;
use super::runtime::PluginState;
use crate::model::Signal;

/// The exporter kind: its `init` reports the signals and temporality it wants; its world says
/// whether it takes spans.
#[derive(Debug, Clone, Copy)]
pub struct Encoder;

/// What an exporter takes: what its `init` reported, and whether its world takes spans.
#[derive(Debug, Clone)]
pub struct Takes {
    /// Its `init`'s answer: metrics and logs, and the temporality.
    pub info: ExporterInfo,
    /// Whether it exports `span-encoder` and its `takes-spans` said yes.
    pub traces: bool,
}

impl Takes {
    /// Whether it takes `signal`.
    pub fn signal(&self, signal: Signal) -> bool {
        match signal {
            Signal::Metrics => self.info.signals.contains(Signals::METRICS),
            Signal::Logs => self.info.signals.contains(Signals::LOGS),
            Signal::Traces => self.traces,
        }
    }
}

impl PluginKind for Encoder {
    const NAME: &'static str = "exporter";
    type Guest = WithSpans<encoder::Guest, span_encoder::Guest>;
    type Indices = (encoder::GuestIndices, Option<span_encoder::GuestIndices>);
    type Info = Takes;

    fn indices(pre: &InstancePre<PluginState>) -> wasmtime::Result<Self::Indices> {
        let spans = span_encoder::GuestIndices::new(pre).ok();
        Ok((encoder::GuestIndices::new(pre)?, spans))
    }

    fn start(
        (indices, spans): &Self::Indices,
        store: &mut Store<PluginState>,
        instance: &Instance,
        config: &Settings,
    ) -> GuestCall<(Self::Guest, Self::Info)> {
        let encoder = indices.load(&mut *store, instance)?;
        let spans = spans
            .as_ref()
            .map(|s| s.load(&mut *store, instance))
            .transpose()?;
        let info = match encoder.call_init(&mut *store, config)? {
            Ok(info) => info,
            Err(refusal) => return Ok(Err(refusal)),
        };
        let traces = match &spans {
            Some(s) => s.call_takes_spans(&mut *store)?,
            None => false,
        };
        Ok(Ok((
            WithSpans {
                guest: encoder,
                spans,
            },
            Takes { info, traces },
        )))
    }

    fn world(takes: &Takes) -> World {
        let signals: Vec<&str> = Signal::ALL
            .into_iter()
            .filter(|s| takes.signal(*s))
            .map(Signal::as_str)
            .collect();
        let temporality = match takes.info.temporality {
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
            |g, store| g.guest.call_encode_metrics(store, batch),
        )
    }

    /// Encodes a log batch; a result past the plugin's budgets is refused.
    pub fn encode_logs(&self, batch: &LogBatch) -> Result<Vec<Outbound>, CallError> {
        self.encode(budget::log_size(batch).0, "encode-logs", |g, store| {
            g.guest.call_encode_logs(store, batch)
        })
    }

    /// Encodes a span batch; a result past the plugin's budgets is refused, and a plugin that
    /// takes no spans is an error.
    pub fn encode_spans(&self, batch: &SpanBatch) -> Result<Vec<Outbound>, CallError> {
        self.encode(
            budget::span_size(batch).0,
            "encode-spans",
            |g, store| match &g.spans {
                Some(spans) => spans.call_encode_spans(store, batch),
                None => Ok(Err("this exporter takes no spans".to_owned())),
            },
        )
    }

    /// Calls `function` on a batch of `items` items, counting what goes in and out.
    fn encode(
        &self,
        items: usize,
        function: &'static str,
        call: impl FnOnce(
            &<Encoder as PluginKind>::Guest,
            &mut Store<PluginState>,
        ) -> GuestCall<Vec<Outbound>>,
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
            g.guest.call_classify(store, response).map(Ok)
        });
        answer.unwrap_or_else(|_| match response.status {
            200..=299 => Outcome::Success,
            429 | 502 | 503 | 504 => Outcome::Retry(None),
            status => Outcome::Reject(format!("HTTP {status}")),
        })
    }
}
