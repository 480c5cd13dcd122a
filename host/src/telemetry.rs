//! Self-telemetry: the host's own counters, recorded in the same engine as everything else.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::metrics::aggregation::HistogramPoint;
use crate::metrics::{ConflictError, Descriptor, Instrument, Point, Registry};
use crate::model::Signal;
use crate::model::attributes::ValueRef;
use crate::model::metric::InstrumentKind;

/// The instrumentation scope of self-telemetry.
pub const SELF_SCOPE: &str = "wasmtel";

/// Handles to the host's self-metrics, all named `wasmtel.*`.
#[derive(Debug, Clone)]
pub struct SelfTelemetry {
    accepted: Arc<Instrument>,
    rejected: Arc<Instrument>,
    otlp: Arc<Instrument>,
    batches: Arc<Instrument>,
    retries: Arc<Instrument>,
    states: Arc<Instrument>,
    dropped: Arc<Instrument>,
    plugin_up: Arc<Instrument>,
}

fn counter(
    registry: &Registry,
    name: &str,
    unit: &str,
    description: &str,
) -> Result<Arc<Instrument>, ConflictError> {
    instrument(registry, InstrumentKind::Counter, name, unit, description)
}

fn instrument(
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

/// Registers an observable counter reporting, per instrument, the count `read` returns (when not zero).
fn per_instrument(
    registry: &Registry,
    name: &str,
    description: &str,
    read: fn(&Instrument) -> u64,
) -> Result<(), ConflictError> {
    let counter = instrument(
        registry,
        InstrumentKind::ObservableCounter,
        name,
        "{measurement}",
        description,
    )?;
    // Observable by construction, so the registration cannot be refused.
    let _ = registry.register_callback(
        counter,
        Box::new(move |o| {
            for i in o.instruments() {
                let n = read(&i);
                if n > 0 {
                    o.observe(&[("metric", ValueRef::Str(&i.descriptor().name))], n as f64);
                }
            }
        }),
    );
    Ok(())
}

/// Registers `wasmtel.plugin.refused`, an observable counter of plugin results refused past a
/// budget, by plugin and budget, as `read` reports them (plugin, budget, count).
pub fn plugin_refusals(
    registry: &Registry,
    read: fn() -> Vec<(String, &'static str, u64)>,
) -> Result<(), ConflictError> {
    let counter = instrument(
        registry,
        InstrumentKind::ObservableCounter,
        "wasmtel.plugin.refused",
        "{result}",
        "Plugin results refused past a budget, and plugin log lines dropped past their rate, by plugin and budget.",
    )?;
    // Observable by construction, so the registration cannot be refused.
    let _ = registry.register_callback(
        counter,
        Box::new(move |o| {
            for (plugin, budget, n) in read() {
                let attrs = [
                    ("budget", ValueRef::Str(budget)),
                    ("plugin", ValueRef::Str(&plugin)),
                ];
                o.observe(&attrs, n as f64);
            }
        }),
    );
    Ok(())
}

/// A plugin, one of its functions and a call outcome.
pub type CallSeries = (String, &'static str, &'static str);

/// What plugins did, process-wide, as the plugin runtime reports it.
pub struct PluginStats {
    /// The host's scope, passed to each reader.
    pub scope: u64,
    /// Per plugin, function and outcome: the durations of the calls, cumulative.
    pub calls: fn(u64) -> Vec<(CallSeries, HistogramPoint)>,
    /// The bounds of those durations, in seconds.
    pub bounds: &'static [f64],
    /// Per plugin and cause: failures.
    pub traps: fn(u64) -> Vec<(String, &'static str, u64)>,
    /// Per plugin and direction: items.
    pub items: fn(u64) -> Vec<(String, &'static str, u64)>,
    /// Per plugin: bytes its instance held after its last call.
    pub memory: fn(u64) -> Vec<(String, u64)>,
}

/// Registers `wasmtel.plugin.calls`, `.call.duration`, `.traps`, `.items` and `.memory`,
/// read from `stats` at each collection (durations merged as the change since the last one).
pub fn plugin_stats(registry: &Registry, stats: PluginStats) -> Result<(), ConflictError> {
    let calls = instrument(
        registry,
        InstrumentKind::ObservableCounter,
        "wasmtel.plugin.calls",
        "{call}",
        "Plugin calls, by plugin, function and outcome (ok, error, trap, busy, backing_off, failed).",
    )?;
    let duration = registry.instrument(
        Descriptor {
            name: "wasmtel.plugin.call.duration".into(),
            unit: "s".into(),
            description: "How long plugin calls took, by plugin, function and outcome.".into(),
            kind: InstrumentKind::Histogram,
            scope: SELF_SCOPE.into(),
        },
        stats.bounds,
    )?;
    let seen: Mutex<HashMap<CallSeries, HistogramPoint>> = Mutex::default();
    let (scope, read_calls) = (stats.scope, stats.calls);
    let _ = registry.register_callback(
        calls,
        Box::new(move |o| {
            let mut seen = seen.lock().unwrap_or_else(PoisonError::into_inner);
            for ((plugin, function, outcome), now) in read_calls(scope) {
                let attrs = [
                    ("function", ValueRef::Str(function)),
                    ("outcome", ValueRef::Str(outcome)),
                    ("plugin", ValueRef::Str(&plugin)),
                ];
                o.observe(&attrs, now.count as f64);
                let key = (plugin.clone(), function, outcome);
                let change = match seen.get(&key) {
                    Some(before) => now.since(before),
                    None => Some(now.clone()),
                };
                if let Some(change) = change.filter(|c| c.count > 0) {
                    let _ = duration.merge(&attrs, Point::Histogram(stats.bounds, &change));
                }
                seen.insert(key, now);
            }
        }),
    );
    let counted = |name: &str,
                   unit: &str,
                   description: &str,
                   key: &'static str,
                   read: fn(u64) -> Vec<(String, &'static str, u64)>| {
        let counter = instrument(
            registry,
            InstrumentKind::ObservableCounter,
            name,
            unit,
            description,
        )?;
        let _ = registry.register_callback(
            counter,
            Box::new(move |o| {
                for (plugin, value, n) in read(scope) {
                    let attrs = [
                        (key, ValueRef::Str(value)),
                        ("plugin", ValueRef::Str(&plugin)),
                    ];
                    o.observe(&attrs, n as f64);
                }
            }),
        );
        Ok::<_, ConflictError>(())
    };
    counted(
        "wasmtel.plugin.traps",
        "{failure}",
        "Plugin calls that failed, by plugin and cause (trap, deadline, memory_limit).",
        "cause",
        stats.traps,
    )?;
    counted(
        "wasmtel.plugin.items",
        "{item}",
        "Items given to plugins (in) and returned by them (out): points, records, requests, attribute sets.",
        "direction",
        stats.items,
    )?;
    let memory = instrument(
        registry,
        InstrumentKind::ObservableGauge,
        "wasmtel.plugin.memory",
        "By",
        "Bytes each plugin's instance held in its memories and tables after its last call.",
    )?;
    let read_memory = stats.memory;
    let _ = registry.register_callback(
        memory,
        Box::new(move |o| {
            for (plugin, bytes) in read_memory(scope) {
                o.observe(&[("plugin", ValueRef::Str(&plugin))], bytes as f64);
            }
        }),
    );
    Ok(())
}

impl SelfTelemetry {
    /// Registers the self-metrics in `registry`.
    pub fn register(registry: &Registry) -> Result<Self, ConflictError> {
        per_instrument(
            registry,
            "wasmtel.metrics.overflowed",
            "Measurements folded into a metric's otel.metric.overflow series past its cardinality limit.",
            Instrument::overflowed,
        )?;
        per_instrument(
            registry,
            "wasmtel.metrics.rejected",
            "Measurements not recorded: negative on a counter, or not a finite number.",
            Instrument::rejected,
        )?;
        Ok(Self {
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
            plugin_up: instrument(
                registry,
                InstrumentKind::Gauge,
                "wasmtel.plugin.up",
                "",
                "1 while a loaded plugin is serving, 0 while it restarts after a failure or is marked failed.",
            )?,
        })
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

    /// Records whether a plugin (an `exporter` of integration `integration`, a `transform` or a
    /// `view`) is serving.
    pub fn plugin_health(&self, plugin: &str, kind: &str, integration: Option<&str>, up: bool) {
        let value = f64::from(u8::from(up));
        let (kind, plugin) = (ValueRef::Str(kind), ValueRef::Str(plugin));
        match integration {
            Some(name) => self.plugin_up.record(
                &[
                    ("integration", ValueRef::Str(name)),
                    ("kind", kind),
                    ("plugin", plugin),
                ],
                value,
            ),
            None => self
                .plugin_up
                .record(&[("kind", kind), ("plugin", plugin)], value),
        }
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
