//! Self-telemetry: the host's own counters, recorded in the same engine as everything else.

use std::sync::Arc;

use crate::metrics::{ConflictError, Descriptor, Instrument, Registries, Registry};
use crate::model::Signal;
use crate::model::attributes::ValueRef;
use crate::model::metric::InstrumentKind;

/// The instrumentation scope of self-telemetry.
pub const SELF_SCOPE: &str = "wasmtel";

/// Handles to the host's self-metrics, all named `wasmtel.*`.
#[derive(Debug, Clone)]
pub struct SelfTelemetry {
    received: Received,
    accepted: Arc<Instrument>,
    rejected: Arc<Instrument>,
    otlp: Arc<Instrument>,
    batches: Arc<Instrument>,
    retries: Arc<Instrument>,
    states: Arc<Instrument>,
    dropped: Arc<Instrument>,
}

fn counter(
    registry: &Registry,
    name: &str,
    unit: &str,
    description: &str,
) -> Result<Arc<Instrument>, ConflictError> {
    instrument(registry, InstrumentKind::Counter, name, unit, description)
}

/// Registers one of the host's own instruments (scope [`SELF_SCOPE`]) without advisory buckets.
pub(crate) fn instrument(
    registry: &Registry,
    kind: InstrumentKind,
    name: &str,
    unit: &str,
    description: &str,
) -> Result<Arc<Instrument>, ConflictError> {
    registry.instrument(
        Descriptor {
            name: name.into(),
            unit: unit.into(),
            description: description.into(),
            kind,
            scope: SELF_SCOPE.into(),
        },
        &[],
    )
}

/// The host's producers, once known: self-metrics per instrument then cover the received
/// resources' instruments too.
type Received = Arc<std::sync::OnceLock<std::sync::Weak<Registries>>>;

/// Registers an observable counter reporting, per metric name, the sum of what `read` returns
/// for the instruments of the host's registry and, once `received` is set, of every received
/// resource (when not zero); `warn` says, once per metric, what a first count means.
fn per_instrument(
    registry: &Registry,
    name: &str,
    description: &str,
    read: fn(&Instrument) -> u64,
    received: Received,
    warn: Option<fn(&Instrument) -> String>,
) -> Result<(), ConflictError> {
    let counter = instrument(
        registry,
        InstrumentKind::ObservableCounter,
        name,
        "{measurement}",
        description,
    )?;
    let warned: std::sync::Mutex<std::collections::HashSet<String>> = Default::default();
    // Observable by construction, so the registration cannot be refused.
    let _ = registry.register_callback(
        counter,
        Box::new(move |o| {
            let others = received
                .get()
                .and_then(std::sync::Weak::upgrade)
                .map(|r| r.select(|_| true))
                .unwrap_or_default();
            let mut sums: std::collections::BTreeMap<String, u64> = Default::default();
            let own = o.instruments();
            let all = own.iter().cloned().chain(
                others
                    .iter()
                    .filter(|p| p.id > 0)
                    .flat_map(|p| p.registry.instruments()),
            );
            for i in all {
                let n = read(&i);
                if n == 0 {
                    continue;
                }
                let metric = &i.descriptor().name;
                *sums.entry(metric.clone()).or_default() += n;
                if let Some(warn) = warn {
                    let mut warned = warned
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    if warned.insert(metric.clone()) {
                        tracing::warn!(metric = %metric, "{}", warn(&i));
                    }
                }
            }
            for (metric, n) in sums {
                o.observe(&[("metric", ValueRef::Str(&metric))], n as f64);
            }
        }),
    );
    Ok(())
}

impl SelfTelemetry {
    /// Registers the self-metrics in `registry`.
    pub fn register(registry: &Registry) -> Result<Self, ConflictError> {
        let received = Received::default();
        per_instrument(
            registry,
            "wasmtel.metrics.overflowed",
            "Measurements folded into a metric's otel.metric.overflow series past its cardinality limit or attribute byte budget, of the host's and every received resource.",
            Instrument::overflowed,
            received.clone(),
            Some(|i| {
                let (limit, key) = if i.past_byte_limit() {
                    ("attribute byte budget", "metrics.attribute_bytes_limit")
                } else {
                    (
                        "cardinality limit",
                        "metrics.cardinality_limit, or a view's,",
                    )
                };
                format!(
                    "metric `{}` passed its {limit}: measurements of new attribute sets fold into its otel.metric.overflow series ({key} raises it)",
                    i.descriptor().name
                )
            }),
        )?;
        per_instrument(
            registry,
            "wasmtel.metrics.rejected",
            "Measurements not recorded: negative on a counter, or not a finite number.",
            Instrument::rejected,
            received.clone(),
            None,
        )?;
        Ok(Self {
            received,
            accepted: counter(
                registry,
                "wasmtel.intake.events.accepted",
                "{event}",
                "Events accepted by the intake.",
            )?,
            rejected: counter(
                registry,
                "wasmtel.intake.requests.rejected",
                "{request}",
                "Intake requests rejected whole, by reason.",
            )?,
            otlp: counter(
                registry,
                "wasmtel.intake.otlp.items",
                "{item}",
                "Data points and log records received over OTLP, by signal and outcome (accepted, rejected).",
            )?,
            batches: counter(
                registry,
                "wasmtel.export.batches",
                "{batch}",
                "Exports by integration, signal and outcome (ok, failed).",
            )?,
            retries: counter(
                registry,
                "wasmtel.export.retries",
                "{request}",
                "Requests retried after a retryable failure, by integration and signal.",
            )?,
            states: instrument(
                registry,
                InstrumentKind::Gauge,
                "wasmtel.export.state",
                "",
                "1 for an integration's current state (pending, connected, sending, degraded, paused, disabled), 0 for the others.",
            )?,
            dropped: counter(
                registry,
                "wasmtel.export.dropped",
                "{item}",
                "Metric batches or log records an integration's full export queue dropped.",
            )?,
        })
    }

    /// Makes the per-metric counts cover every received resource of `registries` too.
    pub fn cover(&self, registries: &Arc<Registries>) {
        let _ = self.received.set(Arc::downgrade(registries));
    }

    /// Counts events accepted.
    pub fn events_accepted(&self, n: usize) {
        self.accepted.record(&[], n as f64);
    }

    /// Counts data points or log records received over OTLP.
    pub fn otlp_items(&self, signal: Signal, accepted: usize, rejected: usize) {
        for (outcome, n) in [("accepted", accepted), ("rejected", rejected)] {
            if n > 0 {
                self.otlp.record(
                    &[
                        ("outcome", ValueRef::Str(outcome)),
                        ("signal", ValueRef::Str(signal.as_str())),
                    ],
                    n as f64,
                );
            }
        }
    }

    /// Counts one rejected request.
    pub fn request_rejected(&self, reason: &str) {
        self.rejected
            .record(&[("reason", ValueRef::Str(reason))], 1.0);
    }

    /// Counts one retry of integration `integration`, now in `state`.
    pub fn export_retry(&self, integration: &str, signal: Signal, state: IntegrationState) {
        let attrs = [
            ("integration", ValueRef::Str(integration)),
            ("signal", ValueRef::Str(signal.as_str())),
        ];
        self.retries.record(&attrs, 1.0);
        self.export_state(integration, signal, state);
    }

    /// Records an integration's current state: 1 for it, 0 for the other states.
    pub fn export_state(&self, integration: &str, signal: Signal, state: IntegrationState) {
        for s in state.all {
            let attrs = [
                ("integration", ValueRef::Str(integration)),
                ("signal", ValueRef::Str(signal.as_str())),
                ("state", ValueRef::Str(s)),
            ];
            self.states
                .record(&attrs, f64::from(u8::from(*s == state.now)));
        }
    }

    /// Counts one export an integration delivered (`ok`) or gave up on.
    pub fn export_batch(&self, integration: &str, signal: Signal, ok: bool) {
        let outcome = if ok { "ok" } else { "failed" };
        self.batches.record(
            &[
                ("integration", ValueRef::Str(integration)),
                ("outcome", ValueRef::Str(outcome)),
                ("signal", ValueRef::Str(signal.as_str())),
            ],
            1.0,
        );
    }

    /// Counts items an integration's full export queue dropped.
    pub fn export_dropped(&self, integration: &str, signal: Signal, n: usize) {
        self.dropped.record(
            &[
                ("integration", ValueRef::Str(integration)),
                ("signal", ValueRef::Str(signal.as_str())),
            ],
            n as f64,
        );
    }
}

/// An integration's state by name, among the names of every state, for `wasmtel.export.state`.
#[derive(Debug, Clone, Copy)]
pub struct IntegrationState {
    /// The current state's name.
    pub now: &'static str,
    /// Every state's name.
    pub all: &'static [&'static str],
}
