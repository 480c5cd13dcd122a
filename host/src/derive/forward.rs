//! The forwarding rule set: every numeric field of every event becomes a gauge `<prefix>.<field>`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use crate::metrics::{Descriptor, Instrument, Registry};
use crate::model::attributes::ValueRef;
use crate::model::event::Event;
use crate::model::metric::InstrumentKind;

use super::rule::DERIVE_SCOPE;

/// The most distinct field names the forwarding set turns into gauges.
pub const MAX_FORWARDED_FIELDS: usize = 1000;

/// Turns every numeric field into a gauge, creating gauges as new fields appear.
#[derive(Debug)]
pub struct Forward {
    prefix: String,
    registry: Arc<Registry>,
    gauges: RwLock<HashMap<String, Option<Arc<Instrument>>>>,
    dropped: AtomicU64,
}

impl Forward {
    /// A forwarding set naming its gauges `<prefix>.<field>`.
    pub fn new(prefix: &str, registry: Arc<Registry>) -> Self {
        Self {
            prefix: prefix.to_owned(),
            registry,
            gauges: RwLock::default(),
            dropped: AtomicU64::new(0),
        }
    }

    /// Records every numeric field of `event`.
    pub fn apply(&self, event: &Event<'_>) {
        let mut attrs = [("", ValueRef::Bool(false)); 5];
        let mut n = 0;
        // Sorted by key: device_id, engine, event_type, model, org_id.
        for (key, value) in [
            ("device_id", event.device_id.as_deref()),
            ("engine", event.engine.as_deref()),
            ("event_type", Some(&*event.event_type)),
            ("model", event.model.as_deref()),
            ("org_id", event.org_id.as_deref()),
        ] {
            if let Some(v) = value {
                attrs[n] = (key, ValueRef::Str(v));
                n += 1;
            }
        }
        for (field, value) in &event.metrics.0 {
            match self.gauge(field) {
                Some(gauge) => gauge.record_traced(&attrs[..n], *value, event.trace()),
                None => {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// How many measurements were dropped because their field could not become a gauge.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn gauge(&self, field: &str) -> Option<Arc<Instrument>> {
        if let Some(found) = self
            .gauges
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(field)
        {
            return found.clone();
        }
        let mut gauges = self.gauges.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(found) = gauges.get(field) {
            return found.clone();
        }
        if gauges.len() >= MAX_FORWARDED_FIELDS {
            return None;
        }
        let created = self
            .registry
            .instrument(
                Descriptor {
                    name: format!("{}.{field}", self.prefix),
                    unit: String::new(),
                    description: format!("Last `{field}` value forwarded from events."),
                    kind: InstrumentKind::Gauge,
                    scope: DERIVE_SCOPE.into(),
                },
                &[],
            )
            .map_err(|e| tracing::warn!("forwarding `{field}`: {e}"))
            .ok();
        gauges.insert(field.to_owned(), created.clone());
        created
    }
}
