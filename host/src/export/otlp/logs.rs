//! Encodes raw events as OTLP log records and batches them into `ExportLogsServiceRequest`s.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};

use std::sync::Arc;

use crate::clock::unix_nanos;
use crate::export::queue::DropOldestQueue;
use crate::model::Signal;
use crate::model::event::Event;
use crate::model::log::{Entry, Origin, record};
use crate::model::resource::Resource;
use crate::telemetry::SelfTelemetry;

/// An exporter's bounded queue of log records: events join as records of the host's events
/// origin, received records with their own; what a full queue drops is counted.
pub struct LogQueue {
    queue: Arc<DropOldestQueue<Entry>>,
    events: Arc<Origin>,
    telemetry: SelfTelemetry,
}

impl LogQueue {
    /// Wraps `queue`, taking events as records of the host `resource`.
    pub fn new(
        queue: Arc<DropOldestQueue<Entry>>,
        res: &Resource,
        telemetry: SelfTelemetry,
    ) -> Self {
        Self {
            queue,
            events: Arc::new(Origin::events(res)),
            telemetry,
        }
    }

    /// The queue, for the task that sends it.
    pub fn queue(&self) -> &Arc<DropOldestQueue<Entry>> {
        &self.queue
    }

    /// Queues every event as a log record observed now.
    pub fn push_events(&self, events: &[Event<'_>]) {
        let observed = unix_nanos();
        self.push(
            events
                .iter()
                .map(|e| (self.events.clone(), record(e, observed))),
        );
    }

    /// Queues received log records.
    pub fn push_entries(&self, entries: &[Entry]) {
        self.push(entries.iter().cloned());
    }

    fn push(&self, entries: impl IntoIterator<Item = Entry>) {
        let dropped = self.queue.push(entries);
        if dropped > 0 {
            self.telemetry.export_dropped(Signal::Logs, dropped);
        }
    }
}

/// Wraps runs of log records in one request, one `ResourceLogs` per run.
pub fn request(runs: Vec<(Arc<Origin>, Vec<LogRecord>)>) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: runs
            .into_iter()
            .map(|(origin, records)| ResourceLogs {
                resource: Some(origin.resource.clone()),
                scope_logs: vec![ScopeLogs {
                    scope: Some(origin.scope.clone()),
                    log_records: records,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            })
            .collect(),
    }
}
