//! The pipeline: what happens to a batch of accepted events, log records and spans.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use crate::clock::unix_nanos;
use crate::config::DeriveConfig;
use crate::derive::Deriver;
use crate::derive::span::SpanMetrics;
use crate::metrics::Registries;
use crate::model::Signal;
use crate::model::event::Event;
use crate::model::log::encode_events;
use crate::model::record::{Origin, Record};
use crate::model::resource::Resource;
use crate::telemetry::SelfTelemetry;
use crate::tenancy::{Principal, Tenancy};

/// Why a sink could not take records.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Its queue refuses more until it drains.
    #[error("the {signal} queue of integration `{integration}` is full")]
    Full {
        /// The integration.
        integration: String,
        /// `logs` or `traces`.
        signal: &'static str,
    },
    /// Its queue could not keep them (a disk queue that cannot be written).
    #[error("integration `{integration}`: {error}")]
    Unqueued {
        /// The integration.
        integration: String,
        /// What went wrong.
        error: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A tenant's records would fill more than its share of a queue.
    #[error(
        "tenant `{tenant}` holds its share of the {signal} queue of integration `{integration}`"
    )]
    Share {
        /// The tenant.
        tenant: Arc<str>,
        /// The integration.
        integration: String,
        /// `logs` or `traces`.
        signal: &'static str,
    },
    /// A tenant's events cannot be recorded now (no room for its resource).
    #[error("the events of tenant `{tenant}` cannot be recorded: {reason}")]
    Tenant {
        /// The tenant.
        tenant: Arc<str>,
        /// Why.
        reason: String,
    },
}

/// Something that receives accepted records (an exporter of log records or spans), each
/// taking those it selects.
pub trait RecordSink: Send + Sync {
    /// Whether it takes records of `signal` now (events are encoded as log records only if one
    /// takes logs).
    fn wants(&self, signal: Signal) -> bool;

    /// Whether the records of `signal` it selects of `records` may be accepted; `Err` names the
    /// full queue when they may not (and intake refuses them rather than lose any).
    fn room(&self, signal: Signal, records: &[Record]) -> Result<(), SinkError>;

    /// Takes the records of `signal` it selects of a batch (events, or received over OTLP);
    /// must not block. `Err` names why it could not keep them (a disk queue that cannot be
    /// written).
    fn accept(&self, signal: Signal, records: &[Record]) -> Result<(), SinkError>;

    /// The one tenant whose records it can take, when it is a tenant's (records of no other
    /// tenant are then never offered to it).
    fn tenant(&self) -> Option<Arc<str>>;
}

/// Every sink, a tenant's indexed by its tenant: a batch meets the shared sinks and those of
/// the tenants it holds records of, however many tenants there are.
#[derive(Default)]
struct Sinks {
    shared: Vec<Arc<dyn RecordSink>>,
    by_tenant: HashMap<Arc<str>, Vec<Arc<dyn RecordSink>>>,
}

impl Sinks {
    fn add(&mut self, sink: Arc<dyn RecordSink>) {
        match sink.tenant() {
            Some(tenant) => self.by_tenant.entry(tenant).or_default().push(sink),
            None => self.shared.push(sink),
        }
    }

    fn remove(&mut self, sink: &Arc<dyn RecordSink>) {
        self.shared.retain(|s| !Arc::ptr_eq(s, sink));
        self.by_tenant.retain(|_, list| {
            list.retain(|s| !Arc::ptr_eq(s, sink));
            !list.is_empty()
        });
    }

    fn len(&self) -> usize {
        self.shared.len() + self.by_tenant.values().map(Vec::len).sum::<usize>()
    }

    /// Whether a sink of `tenant` (or a shared one) takes log records now.
    fn want_logs(&self, tenant: Option<&Arc<str>>) -> bool {
        let theirs = tenant.and_then(|t| self.by_tenant.get(t));
        self.shared
            .iter()
            .chain(theirs.into_iter().flatten())
            .any(|s| s.wants(Signal::Logs))
    }

    /// The sinks that may take some of `records`.
    fn for_batch(&self, records: &[Record]) -> Vec<&Arc<dyn RecordSink>> {
        let mut tenants: Vec<&Arc<str>> = Vec::new();
        let mut last: Option<&Arc<Origin>> = None;
        for record in records {
            if last.is_some_and(|o| Arc::ptr_eq(o, &record.origin)) {
                continue;
            }
            last = Some(&record.origin);
            if let Some(t) = &record.origin.tenant
                && !tenants.contains(&t)
            {
                tenants.push(t);
            }
        }
        let theirs = tenants
            .into_iter()
            .filter_map(|t| self.by_tenant.get(t))
            .flatten();
        self.shared.iter().chain(theirs).collect()
    }
}

/// What events of one sender become: the rules recording into its registry, and the origin
/// of their log records.
#[derive(Debug)]
struct Lane {
    deriver: Deriver,
    events: Arc<Origin>,
}

/// Each tenant's lane, made when its first events arrive.
#[derive(Debug)]
struct Tenants {
    tenancy: Arc<Tenancy>,
    config: DeriveConfig,
    registries: Arc<Registries>,
    lanes: RwLock<HashMap<Arc<str>, Arc<Lane>>>,
}

impl Tenants {
    /// The lane of `tenant`: its events recorded under the host's resource with the tenant
    /// key set to it.
    fn lane(&self, tenant: &Arc<str>) -> Result<Arc<Lane>, SinkError> {
        if let Some(lane) = self
            .lanes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(tenant)
        {
            return Ok(lane.clone());
        }
        let refused = |reason: String| SinkError::Tenant {
            tenant: tenant.clone(),
            reason,
        };
        let own = self.registries.own().resource.attributes();
        let attributes = self
            .tenancy
            .stamped(&Principal::Tenant(tenant.clone()), own);
        let registry = self
            .tenancy
            .admit(&self.registries, &attributes, true, 0)
            .map_err(|e| refused(e.to_string()))?;
        let deriver = Deriver::new(&self.config, &registry).map_err(|e| refused(e.to_string()))?;
        let events = Arc::new(Origin::events(
            &Resource::from_attributes(attributes),
            Some(tenant.clone()),
        ));
        let lane = Arc::new(Lane { deriver, events });
        let mut lanes = self.lanes.write().unwrap_or_else(PoisonError::into_inner);
        Ok(lanes.entry(tenant.clone()).or_insert(lane).clone())
    }
}

/// Derives metrics from events and spans, encodes events once as log records, and hands records
/// to every sink.
pub struct Pipeline {
    operator: Arc<Lane>,
    tenants: Option<Tenants>,
    spans: Option<SpanMetrics>,
    sinks: RwLock<Sinks>,
    telemetry: SelfTelemetry,
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
        sinks: Vec<Arc<dyn RecordSink>>,
        telemetry: SelfTelemetry,
        events: Arc<Origin>,
    ) -> Self {
        let mut all = Sinks::default();
        sinks.into_iter().for_each(|s| all.add(s));
        Self {
            operator: Arc::new(Lane { deriver, events }),
            tenants: None,
            spans: None,
            sinks: RwLock::new(all),
            telemetry,
            view_patience: None,
        }
    }

    /// Records each tenant's events under its own resource (the host's, with `tenancy`'s key
    /// set to the tenant) in `registries`, by the rules of `config`; without this every
    /// sender's events are the host's.
    pub fn with_tenants(
        mut self,
        tenancy: Arc<Tenancy>,
        config: DeriveConfig,
        registries: Arc<Registries>,
    ) -> Self {
        self.tenants = tenancy.is_on().then(|| Tenants {
            tenancy,
            config,
            registries,
            lanes: RwLock::default(),
        });
        self
    }

    /// Records what `spans`' rules read of every span received.
    pub fn with_span_metrics(mut self, spans: SpanMetrics) -> Self {
        self.spans = Some(spans);
        self
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

    /// Forwards a whole, already validated batch from `sender` as log records (encoded once
    /// for every sink), then records it; when a sink cannot keep the records, nothing is
    /// recorded and `Err` names why (sinks that kept them deliver them, so a retried batch may
    /// arrive twice).
    pub fn ingest(&self, events: &[Event<'_>], sender: &Principal) -> Result<(), SinkError> {
        let lane = match (sender, &self.tenants) {
            (Principal::Tenant(tenant), Some(tenants)) => tenants.lane(tenant)?,
            _ => self.operator.clone(),
        };
        let sinks = self.sinks();
        if sinks.want_logs(lane.events.tenant.as_ref()) {
            let records = encode_events(events, &lane.events, unix_nanos());
            deliver(&sinks.for_batch(&records), Signal::Logs, &records)?;
        }
        lane.deriver.apply(events);
        self.telemetry.events_accepted(events.len());
        Ok(())
    }

    /// Forwards log records or spans received over OTLP to every sink, once each has room for
    /// what it selects, then records what the span rules read of spans; `Err` names a sink
    /// that is full or could not keep them, `Ok(Some(why))` a resource whose spans could not be
    /// measured (they are forwarded all the same).
    pub fn ingest_records(
        &self,
        signal: Signal,
        records: &[Record],
    ) -> Result<Option<String>, SinkError> {
        deliver(&self.sinks().for_batch(records), signal, records)?;
        Ok(match (&self.spans, signal) {
            (Some(spans), Signal::Traces) => spans.record(records),
            _ => None,
        })
    }

    fn sinks(&self) -> std::sync::RwLockReadGuard<'_, Sinks> {
        self.sinks.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a sink (an integration started at run time).
    pub fn add_sink(&self, sink: Arc<dyn RecordSink>) {
        self.sinks
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .add(sink);
    }

    /// Removes a sink added before (an integration stopped at run time).
    pub fn remove_sink(&self, sink: &Arc<dyn RecordSink>) {
        self.sinks
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(sink);
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

/// Hands `records` of `signal` to every sink once every sink has room for what it selects of
/// them.
fn deliver(
    sinks: &[&Arc<dyn RecordSink>],
    signal: Signal,
    records: &[Record],
) -> Result<(), SinkError> {
    sinks
        .iter()
        .try_for_each(|sink| sink.room(signal, records))?;
    sinks
        .iter()
        .try_for_each(|sink| sink.accept(signal, records))
}
