//! View plugins: an attribute view backed by a supervised component, swappable on reload.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use wasmtime::component::Component;

use super::bindings::types::{KeyValue, Value};
use super::bindings::viewer::{self, InstrumentInfo};
use super::budget;
use super::convert;
use super::loader::Loader;
use super::reload::{Reloadable, Source, Versioned, next_version};
use super::runtime::{Limits, Runtime};
use super::stats;
use super::supervisor::{Health, LoadError, Shared, Supervised};
use crate::metrics::{AttributeView, Descriptor, Mapping};
use crate::model::attributes::{AttributeSet, AttrsRef, Value as AttrValue};
use crate::model::metric::InstrumentKind;

/// One loaded version of a view plugin.
pub struct ViewPlugin {
    name: Arc<str>,
    instance: Shared<viewer::Guest>,
}

impl ViewPlugin {
    /// Validates `component` as a view (right world, `init` accepts `config`) and starts it.
    pub fn load(
        runtime: &Arc<Runtime>,
        name: &str,
        component: &Component,
        config: Vec<(String, String)>,
        limits: Limits,
    ) -> Result<Self, LoadError> {
        let name: Arc<str> = Arc::from(name);
        let instance = Supervised::load(
            runtime,
            &name,
            component,
            limits,
            viewer::GuestIndices::new,
            move |indices, store, instance| {
                let guest = indices.load(&mut *store, instance)?;
                Ok(guest.call_init(&mut *store, &config)?.map(|()| guest))
            },
        )?;
        Ok(Self {
            name,
            instance: instance.into(),
        })
    }

    /// The plugin's health.
    pub fn health(&self) -> Health {
        self.instance.health()
    }

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
        // Never wait for a busy instance longer than the deadline, nor than the work that
        // asks may still spend on views.
        let timeout = self.instance.call_timeout();
        let wait = crate::metrics::patience().map_or(timeout, |left| left.min(timeout));
        stats::items(self.instance.scope(), &self.name, "in", 1);
        let answer = self
            .instance
            .call_within("map-attributes", Some(wait), |g, store| {
                g.call_map_attributes(store, &info, &input)
                    .map(Ok::<_, String>)
            });
        let answer = answer.and_then(|pairs| match pairs {
            Some(pairs) => {
                budget::view(&self.name, &pairs, &self.instance.budgets()).map(|()| Some(pairs))
            }
            None => Ok(None),
        });
        match answer {
            Ok(None) => Mapping::Keep,
            Ok(Some(pairs)) => {
                stats::items(self.instance.scope(), &self.name, "out", 1);
                Mapping::Replace(attribute_set(pairs))
            }
            Err(e) => {
                tracing::debug!(plugin = %self.name, "{e}; the series keeps its attributes");
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

/// A configured view: the version serving now, swapped atomically on reload.
pub struct PluginView {
    name: String,
    overrides: toml::Table,
    current: Versioned<ViewPlugin>,
    generation: AtomicU64,
}

impl PluginView {
    /// A view serving `plugin`, whose component has SHA-256 `digest`.
    pub fn new(name: &str, overrides: toml::Table, plugin: ViewPlugin, digest: String) -> Self {
        Self {
            name: name.to_owned(),
            overrides,
            current: Versioned::new(plugin, digest),
            generation: AtomicU64::new(0),
        }
    }

    /// A view whose plugin could not be loaded for `reason`: series keep their attributes
    /// (nothing is cached) until a version of its file loads.
    pub fn failed(name: &str, overrides: toml::Table, reason: String) -> Self {
        Self {
            name: name.to_owned(),
            overrides,
            current: Versioned::failed(reason),
            generation: AtomicU64::new(0),
        }
    }

    /// The serving version's health, or `Failed` when it could not be loaded.
    pub fn health(&self) -> Option<Health> {
        self.current.health(ViewPlugin::health)
    }
}

impl AttributeView for PluginView {
    fn map(&self, instrument: &Descriptor, attrs: &AttrsRef<'_>) -> Mapping {
        match self.current.get() {
            Some(p) => p.map(instrument, attrs),
            None if self.current.failure().is_some() => Mapping::Unavailable,
            None => Mapping::Keep,
        }
    }

    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}

impl Reloadable for PluginView {
    fn plugin(&self) -> &str {
        &self.name
    }

    fn serving(&self) -> Option<String> {
        self.current.digest()
    }

    fn reload(&self, loader: &Loader, source: Source<'_>) -> Result<(), String> {
        let next = next_version(loader, &self.name, source, |component| {
            loader.view(&self.name, component, &self.overrides)
        })?;
        self.current.set(next);
        self.generation.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }
}
