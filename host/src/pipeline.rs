//! The pipeline: what happens to a batch of accepted events.

use std::sync::{Arc, PoisonError, RwLock};

use crate::derive::Deriver;
use crate::model::event::Event;
use crate::model::log::Entry;
use crate::telemetry::SelfTelemetry;

/// Something that receives every accepted event and log record (log exporters).
pub trait EventSink: Send + Sync {
    /// Takes a batch of events; must not block.
    fn accept(&self, events: &[Event<'_>]);

    /// Takes a batch of log records received over OTLP; must not block.
    fn accept_logs(&self, entries: &[Entry]);
}

/// Derives metrics from events and hands them to every sink.
pub struct Pipeline {
    deriver: Deriver,
    sinks: RwLock<Vec<Arc<dyn EventSink>>>,
    telemetry: SelfTelemetry,
    view_patience: Option<std::time::Duration>,
}

impl Pipeline {
    /// A pipeline applying `deriver` and forwarding to `sinks`.
    pub fn new(deriver: Deriver, sinks: Vec<Arc<dyn EventSink>>, telemetry: SelfTelemetry) -> Self {
        Self {
            deriver,
            sinks: RwLock::new(sinks),
            telemetry,
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

    /// Records a whole, already validated batch.
    pub fn ingest(&self, events: &[Event<'_>]) {
        for event in events {
            self.deriver.apply(event);
        }
        for sink in self.sinks().iter() {
            sink.accept(events);
        }
        self.telemetry.events_accepted(events.len());
    }

    /// Forwards log records received over OTLP to every sink.
    pub fn ingest_logs(&self, entries: &[Entry]) {
        for sink in self.sinks().iter() {
            sink.accept_logs(entries);
        }
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
