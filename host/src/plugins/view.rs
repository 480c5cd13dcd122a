//! View plugins: an attribute view backed by a supervised component, swappable on reload.

use std::sync::Arc;

use wasmtime::Store;
use wasmtime::component::{Instance, InstancePre};

use super::bindings::types::{KeyValue, Value};
use super::bindings::viewer::{self, InstrumentInfo};
use super::budget;
use super::convert;
use super::kind::{GuestCall, PluginKind, Settings, World};
use super::plugin::Plugin;
use super::runtime::PluginState;
use super::slot::Slot;
use crate::metrics::{AttributeView, Descriptor, Mapping, Pattern, Registry};
use crate::model::attributes::{AttributeSet, AttrsRef, Value as AttrValue};
use crate::model::metric::InstrumentKind;
use crate::telemetry::SELF_SCOPE;

/// The view kind.
#[derive(Debug, Clone, Copy)]
pub struct Viewer;

impl PluginKind for Viewer {
    const NAME: &'static str = "view";
    type Guest = viewer::Guest;
    type Indices = viewer::GuestIndices;
    type Info = ();

    fn indices(pre: &InstancePre<PluginState>) -> wasmtime::Result<Self::Indices> {
        viewer::GuestIndices::new(pre)
    }

    fn start(
        indices: &Self::Indices,
        store: &mut Store<PluginState>,
        instance: &Instance,
        config: &Settings,
    ) -> GuestCall<(Self::Guest, ())> {
        let guest = indices.load(&mut *store, instance)?;
        Ok(guest.call_init(&mut *store, config)?.map(|()| (guest, ())))
    }

    fn world((): &()) -> World {
        World::View
    }
}

/// One loaded version of a view plugin.
pub type ViewPlugin = Plugin<Viewer>;

/// A configured view: the version serving now, swapped atomically on reload.
pub type PluginView = Slot<Viewer>;

impl Plugin<Viewer> {
    /// Asks the plugin for the attribute set of one series of `instrument`.
    fn map(&self, instrument: &Descriptor, attrs: &AttrsRef<'_>) -> Mapping {
        let info = InstrumentInfo {
            name: instrument.name.clone(),
            unit: instrument.unit.clone(),
            kind: kind(instrument.kind),
            scope: instrument.scope.name.to_string(),
        };
        let input: Vec<KeyValue> = attrs
            .iter()
            .map(|(k, v)| KeyValue {
                key: (*k).to_owned(),
                value: convert::value(*v),
            })
            .collect();
        let instance = self.instance();
        let (stats, name) = (instance.stats(), self.shared_name());
        // Never wait for a busy instance longer than the deadline, nor than the work that
        // asks may still spend on views.
        let timeout = instance.call_timeout();
        let wait = crate::metrics::patience().map_or(timeout, |left| left.min(timeout));
        stats.items(name, "in", 1);
        let answer = instance.call_within("map-attributes", Some(wait), |g, store| {
            g.call_map_attributes(store, &info, &input)
                .map(Ok::<_, String>)
        });
        let answer = answer.and_then(|pairs| match pairs {
            Some(pairs) => {
                budget::view(stats, name, &pairs, &instance.budgets()).map(|()| Some(pairs))
            }
            None => Ok(None),
        });
        match answer {
            Ok(None) => Mapping::Keep,
            Ok(Some(pairs)) => {
                stats.items(name, "out", 1);
                Mapping::Replace(attribute_set(pairs))
            }
            Err(e) => {
                tracing::debug!(plugin = %name, "{e}; the series keeps its attributes");
                Mapping::Unavailable
            }
        }
    }
}

/// An instrument kind in the contract's type.
fn kind(kind: InstrumentKind) -> viewer::InstrumentKind {
    match kind {
        InstrumentKind::Counter => viewer::InstrumentKind::Counter,
        InstrumentKind::UpDownCounter => viewer::InstrumentKind::UpDownCounter,
        InstrumentKind::Gauge => viewer::InstrumentKind::Gauge,
        InstrumentKind::Histogram => viewer::InstrumentKind::Histogram,
        InstrumentKind::ObservableCounter => viewer::InstrumentKind::ObservableCounter,
        InstrumentKind::ObservableUpDownCounter => viewer::InstrumentKind::ObservableUpDownCounter,
        InstrumentKind::ObservableGauge => viewer::InstrumentKind::ObservableGauge,
        // Contract 0.2 has no summary kind: a view sees a summary as the gauge of its quantiles.
        InstrumentKind::Summary => viewer::InstrumentKind::Gauge,
    }
}

/// A plugin's attribute list as a series attribute set; bytes become hex text and JSON stays text.
fn attribute_set(pairs: Vec<KeyValue>) -> AttributeSet {
    AttributeSet::from_pairs(
        pairs
            .into_iter()
            .map(|kv| {
                let value = match kv.value {
                    Value::String(s) | Value::Json(s) => AttrValue::Str(Arc::from(s)),
                    Value::Boolean(b) => AttrValue::Bool(b),
                    Value::Int(i) => AttrValue::Int(i),
                    Value::Double(d) => AttrValue::Double(d),
                    Value::Bytes(b) => AttrValue::Str(Arc::from(
                        b.iter().map(|x| format!("{x:02x}")).collect::<String>(),
                    )),
                };
                (Arc::from(kv.key), value)
            })
            .collect(),
    )
}

/// Binds `view` to the instruments of `registry` whose names match `instruments` (`*` any run of
/// characters), never the host's own.
pub fn bind(view: &Arc<PluginView>, instruments: &[String], registry: &Registry) {
    let patterns: Vec<Pattern> = instruments.iter().map(|p| Pattern::new(p)).collect();
    registry.add_view(
        Arc::new(move |d: &Descriptor| {
            *d.scope.name != *SELF_SCOPE && patterns.iter().any(|p| p.matches(&d.name))
        }),
        view.clone(),
    );
    tracing::info!(plugin = %view.name(), ?instruments, "view bound");
}

impl AttributeView for Slot<Viewer> {
    fn map(&self, instrument: &Descriptor, attrs: &AttrsRef<'_>) -> Mapping {
        match self.get() {
            Some(p) => p.map(instrument, attrs),
            None if self.failure().is_some() => Mapping::Unavailable,
            None => Mapping::Keep,
        }
    }

    fn generation(&self) -> u64 {
        Slot::generation(self)
    }
}
