//! The pipeline: what happens to a batch of accepted events and log records.

use std::sync::{Arc, PoisonError, RwLock};

use crate::clock::unix_nanos;
use crate::derive::Deriver;
use crate::model::event::Event;
use crate::model::log::{Origin, Record, encode_events};
use crate::telemetry::SelfTelemetry;

/// Why a sink could not take log records.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Its queue refuses more until it drains.
    #[error("the log queue of integration `{0}` is full")]
    Full(String),
    /// Its queue could not keep them (a disk queue that cannot be written).
    #[error("integration `{integration}`: {error}")]
    Unqueued {
        /// The integration.
        integration: String,
        /// What went wrong.
        error: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Something that receives every accepted log record (a log exporter).
pub trait EventSink: Send + Sync {
    /// Whether it takes log records now (events are encoded as records only if one does).
    fn wants_logs(&self) -> bool;

    /// Whether `records` more records of `bytes` bytes may be accepted; `Err` names the full
    /// queue when they may not (and intake refuses them rather than lose any).
    fn room(&self, records: usize, bytes: usize) -> Result<(), SinkError>;

    /// Takes a batch of log records (events, or received over OTLP); must not block. `Err`
    /// names why it could not keep them (a disk queue that cannot be written).
    fn accept_logs(&self, records: &[Record]) -> Result<(), SinkError>;
}

/// Derives metrics from events, encodes them once as log records, and hands records to every sink.
pub struct Pipeline {
    deriver: Deriver,
    sinks: RwLock<Vec<Arc<dyn EventSink>>>,
    telemetry: SelfTelemetry,
    events: Arc<Origin>,
    view_patience: Option<std::time::Duration>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("sinks", &self.sinks().len())
            .finish_non_exhaustive()
    }
}

impl Pipeline {
    /// A pipeline applying `deriver` and forwarding to `sinks`, events as records of `events`.
    pub fn new(
        deriver: Deriver,
        sinks: Vec<Arc<dyn EventSink>>,
        telemetry: SelfTelemetry,
        events: Arc<Origin>,
    ) -> Self {
        Self {
            deriver,
            sinks: RwLock::new(sinks),
            telemetry,
            events,
            view_patience: None,
        }
    }

    /// Marks that recording may call view plugins (which must not run on async worker
    /// threads), and how long one intake request may spend on them in all.
    pub fn calling_views(mut self, patience: std::time::Duration) -> Self {
        self.view_patience = Some(patience);
        self
    }

    /// How long one intake request may spend on view plugins, when recording may call them.
    pub fn view_patience(&self) -> Option<std::time::Duration> {
        self.view_patience
    }

    /// Whether every sink has room for `records` more records of about `bytes` bytes; `Err`
    /// names the first that has not.
    pub fn room(&self, records: usize, bytes: usize) -> Result<(), SinkError> {
        self.sinks()
            .iter()
            .try_for_each(|sink| sink.room(records, bytes))
    }

    /// Forwards a whole, already validated batch as log records (encoded once for every
    /// sink), then records it; when a sink cannot keep the records, nothing is recorded and
    /// `Err` names why (sinks that kept them deliver them, so a retried batch may arrive twice).
    pub fn ingest(&self, events: &[Event<'_>]) -> Result<(), SinkError> {
        let sinks = self.sinks();
        if sinks.iter().any(|s| s.wants_logs()) {
            let records = encode_events(events, &self.events, unix_nanos());
            sinks
                .iter()
                .try_for_each(|sink| sink.accept_logs(&records))?;
        }
        for event in events {
            self.deriver.apply(event);
        }
        self.telemetry.events_accepted(events.len());
        Ok(())
    }

    /// Forwards log records received over OTLP to every sink; `Err` names a sink that could
    /// not keep them.
    pub fn ingest_logs(&self, records: &[Record]) -> Result<(), SinkError> {
        self.sinks()
            .iter()
            .try_for_each(|sink| sink.accept_logs(records))
    }

    fn sinks(&self) -> std::sync::RwLockReadGuard<'_, Vec<Arc<dyn EventSink>>> {
        self.sinks.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a sink (an integration started at run time).
    pub fn add_sink(&self, sink: Arc<dyn EventSink>) {
        self.sinks
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push(sink);
    }

    /// Removes a sink added before (an integration stopped at run time).
    pub fn remove_sink(&self, sink: &Arc<dyn EventSink>) {
        self.sinks
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|s| !Arc::ptr_eq(s, sink));
    }

    /// The host's self-telemetry.
    pub fn telemetry(&self) -> &SelfTelemetry {
        &self.telemetry
    }

    /// Counts a request rejected whole.
    pub fn reject(&self, reason: &str) {
        self.telemetry.request_rejected(reason);
    }
}
