//! `wasmtel plugins run`: one plugin called on sample data, and what it would do printed —
//! the requests an exporter would send, the batch a transform returns, the series a view
//! makes — with nothing sent anywhere.

use std::fmt::Write as _;
use std::sync::Arc;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message as _;
use wasmtime::component::Component;

use crate::config::DeriveConfig;
use crate::derive::Deriver;
use crate::export::delivery::EncodeError;
use crate::export::otlp::frame;
use crate::export::plugin::Pace;
use crate::export::prometheus;
use crate::intake::otlp::Tally;
use crate::intake::otlp::metrics::MetricsReceiver;
use crate::intake::otlp::records::{Stamp, scan, span};
use crate::metrics::{Registries, Registry};
use crate::model::Signal;
use crate::model::content::Content;
use crate::model::log::encode_events;
use crate::model::record::{Origin, Record, runs_of};
use crate::plugins::bindings::encoder::Outbound;
use crate::plugins::bindings::types::LogBatch;
use crate::plugins::convert;
use crate::plugins::inspect;
use crate::plugins::{
    ExporterPlugin, Limits, PluginView, Runtime, Stats, TransformPlugin, ViewPlugin, World,
};

/// Sample data for a trial.
#[derive(Debug)]
pub enum Sample {
    /// Inference events (JSON or NDJSON), recorded through the default GenAI rules and
    /// forwarded as log records.
    Events(Vec<u8>),
    /// An OTLP/JSON `ExportMetricsServiceRequest`, received as intake would.
    Metrics(Vec<u8>),
    /// An OTLP/JSON `ExportTraceServiceRequest`, received as intake would.
    Spans(Vec<u8>),
}

/// What the sample becomes: the registry of its metrics and its log records.
struct Data {
    registry: Arc<Registry>,
    resource: crate::model::resource::Resource,
    logs: Option<LogBatch>,
}

/// Records `sample` into a fresh registry (through `view`, if any).
fn record(sample: &Sample, view: Option<Arc<PluginView>>) -> anyhow::Result<Data> {
    let resource = crate::sources::resource::detect(&Default::default());
    let registry = Arc::new(Registry::new(2000));
    if let Some(view) = view {
        registry.add_view(Arc::new(|_| true), view);
    }
    match sample {
        Sample::Events(bytes) => {
            let events = crate::intake::events::parse(bytes)?;
            let deriver = Deriver::new(&DeriveConfig::default(), &registry)?;
            deriver.apply(&events);
            let origin = Arc::new(Origin::events(&resource, None));
            let records = encode_events(&events, &origin, crate::clock::unix_nanos());
            let decoded: Vec<_> = records.iter().map(|r| r.decode()).collect();
            let logs = convert::otlp::log_batch(&decoded, &origin);
            Ok(Data {
                registry,
                resource,
                logs: Some(logs),
            })
        }
        Sample::Spans(_) => anyhow::bail!("a view maps metric series; spans make none"),
        Sample::Metrics(bytes) => {
            let request = serde_json::from_slice(bytes).map_err(|e| {
                anyhow::anyhow!("not an OTLP/JSON ExportMetricsServiceRequest: {e}")
            })?;
            let registries = Arc::new(Registries::new(registry, resource));
            let tally = MetricsReceiver::new(registries.clone()).receive(&request);
            if let Some(why) = tally.message {
                anyhow::bail!("{} points refused: {why}", tally.rejected);
            }
            // The first received resource's series (the host's own registry is the first producer).
            let producer = registries
                .all()
                .into_iter()
                .nth(1)
                .ok_or_else(|| anyhow::anyhow!("the request holds no points"))?;
            Ok(Data {
                registry: producer.registry,
                resource: producer.resource,
                logs: None,
            })
        }
    }
}

/// Runs the plugin `component` named `name`, configured with `config`, on `sample`; the report.
pub fn run(
    runtime: &Arc<Runtime>,
    name: &str,
    component: &Component,
    config: &[(String, String)],
    sample: &Sample,
) -> anyhow::Result<String> {
    let (runtime, component) = (runtime.clone(), component.clone());
    let limits = Limits::default();
    let stats = Stats::default();
    let world = inspect::check(&runtime, name, &component, config, limits)
        .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
    let mut out = format!("{name}: {world}\n");
    match world {
        World::Exporter { .. } => {
            let plugin =
                ExporterPlugin::load(&runtime, name, &component, config.to_vec(), limits, &stats)?;
            if let Sample::Spans(bytes) = sample {
                anyhow::ensure!(
                    plugin.info().signal(Signal::Traces),
                    "{name} takes no spans (its world is not trace-exporter)"
                );
                let pace = Pace::of(Signal::Traces);
                for run in runs_of(&spans(bytes)?) {
                    let encode = |part: &[Record]| -> Result<_, EncodeError> {
                        let batch = convert::otlp::span_batch(part, &run[0].origin, None)?;
                        Ok(plugin.encode_spans(&batch)?)
                    };
                    show(&mut out, "traces", &pace.records(&plugin, run, &encode)?);
                }
                return Ok(out);
            }
            let data = record(sample, None)?;
            let info = plugin.info();
            if info.signal(Signal::Metrics) {
                let batch = metric_batch(&data).batch;
                let requests = Pace::of(Signal::Metrics).metrics(&plugin, &batch)?;
                show(&mut out, "metrics", &requests);
            }
            if let (true, Some(logs)) = (info.signal(Signal::Logs), &data.logs) {
                let requests = plugin.encode_logs(logs)?;
                show(&mut out, "logs", &requests);
            }
        }
        World::Transform { .. } => {
            let plugin =
                TransformPlugin::load(&runtime, name, &component, config.to_vec(), limits, &stats)?;
            if let Sample::Spans(bytes) = sample {
                anyhow::ensure!(
                    plugin.reads(Signal::Traces),
                    "{name} does not edit spans (its world is not span-transform, or its \
                     configuration left them out): they would pass unchanged"
                );
                let mut after = Vec::new();
                for run in runs_of(&spans(bytes)?) {
                    after.extend(plugin.spans(run)?.unwrap_or_else(|| run.to_vec()));
                }
                let request = ExportTraceServiceRequest::decode(frame(&after).as_slice())?;
                let _ = writeln!(out, "spans after the transform (OTLP/JSON):");
                let _ = writeln!(out, "{}", serde_json::to_string_pretty(&request)?);
                return Ok(out);
            }
            let data = record(sample, None)?;
            let mut collected = metric_batch(&data);
            if let Some(batch) = plugin.metrics(&mut collected.batch)? {
                collected.batch = batch;
            }
            let encoded =
                crate::export::otlp::metrics::from_batches(std::slice::from_ref(&collected));
            let request = <opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest
                as prost::Message>::decode(encoded.as_slice())?;
            let _ = writeln!(out, "metrics after the transform (OTLP/JSON):");
            let _ = writeln!(out, "{}", serde_json::to_string_pretty(&request)?);
            if let Some(mut logs) = data.logs {
                let logs = plugin.logs(&mut logs, &mut Vec::new())?.unwrap_or(logs);
                let _ = writeln!(out, "log records after the transform:");
                for record in convert::otlp::log_records(&logs) {
                    let _ = writeln!(out, "{}", serde_json::to_string(&record)?);
                }
            }
        }
        World::View => {
            let plugin =
                ViewPlugin::load(&runtime, name, &component, config.to_vec(), limits, &stats)?;
            let view = Arc::new(PluginView::new(
                name,
                Default::default(),
                Ok((plugin, String::new())),
            ));
            let data = record(sample, Some(view))?;
            let _ = writeln!(out, "series after the view (Prometheus text):");
            out.push_str(&prometheus::render(&data.registry, &data.resource));
        }
    }
    Ok(out)
}

/// The spans of an OTLP/JSON request, checked as intake checks them (GenAI content kept).
fn spans(bytes: &[u8]) -> anyhow::Result<Vec<Record>> {
    let request: ExportTraceServiceRequest = serde_json::from_slice(bytes)
        .map_err(|e| anyhow::anyhow!("not an OTLP/JSON ExportTraceServiceRequest: {e}"))?;
    let body = bytes::Bytes::from(request.encode_to_vec());
    let mut tally = Tally::default();
    let scanned = scan(&body, &mut tally, &Stamp::NONE, (span, &Content::none()))?;
    if let Some(why) = tally.message {
        anyhow::bail!("{} spans refused: {why}", tally.rejected);
    }
    anyhow::ensure!(!scanned.records.is_empty(), "the request holds no spans");
    Ok(scanned.records)
}

fn metric_batch(data: &Data) -> convert::Collected {
    convert::metric_batch(&data.registry, &data.resource, None)
}

/// Writes each outbound request or datagram of `signal` to `out`.
fn show(out: &mut String, signal: &str, requests: &[Outbound]) {
    let _ = writeln!(out, "{signal}: {} outbound", requests.len());
    for request in requests {
        match request {
            Outbound::Http(r) => {
                let _ = writeln!(out, "HTTP {:?} {}", r.method, r.path);
                for (k, v) in &r.headers {
                    let _ = writeln!(out, "  {k}: {v}");
                }
                match std::str::from_utf8(&r.body) {
                    Ok(text) => {
                        let _ = writeln!(out, "  body ({} bytes): {text}", r.body.len());
                    }
                    Err(_) => {
                        let _ = writeln!(out, "  body ({} bytes, binary)", r.body.len());
                    }
                }
            }
            Outbound::Datagram(d) => {
                let _ = writeln!(out, "UDP {}", String::from_utf8_lossy(d).trim_end());
            }
        }
    }
}
