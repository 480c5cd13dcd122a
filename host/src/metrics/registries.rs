//! Every registry the host exports, each with the resource it describes: the host's own, and
//! one per resource that sent metrics over OTLP.

use std::sync::{Arc, PoisonError, RwLock};

use super::Registry;
use crate::model::attributes::AttributeSet;
use crate::model::resource::Resource;

/// How many resources may send metrics over OTLP; points of further resources are refused.
pub const MAX_RECEIVED_RESOURCES: usize = 256;

/// A registry and the resource its metrics describe.
#[derive(Debug, Clone)]
pub struct Producer {
    /// The resource.
    pub resource: Resource,
    /// Its instruments.
    pub registry: Arc<Registry>,
}

impl Producer {
    /// The pair as borrowed references, as encoders take them.
    pub fn pair(&self) -> (&Resource, &Registry) {
        (&self.resource, &self.registry)
    }
}

/// The resource limit was reached: a new resource's metrics cannot be kept.
#[derive(Debug, thiserror::Error)]
#[error(
    "metrics are already kept for {MAX_RECEIVED_RESOURCES} resources; a new resource is refused"
)]
pub struct TooManyResources;

/// The host's registry, then the received ones in the order their resources first sent data.
#[derive(Debug)]
pub struct Registries {
    own: Producer,
    received: RwLock<Vec<Producer>>,
}

/// Sweeps per idle-series expiry period.
pub const EXPIRY_SWEEPS: u32 = 4;

impl Registries {
    /// The host's own registry and resource, with nothing received yet.
    pub fn new(registry: Arc<Registry>, resource: Resource) -> Self {
        Self {
            own: Producer { resource, registry },
            received: RwLock::default(),
        }
    }

    /// The host's own registry and resource.
    pub fn own(&self) -> &Producer {
        &self.own
    }

    /// Every producer: the host's first, then the received ones.
    pub fn all(&self) -> Vec<Producer> {
        let received = self.received.read().unwrap_or_else(PoisonError::into_inner);
        std::iter::once(&self.own)
            .chain(received.iter())
            .cloned()
            .collect()
    }

    /// The producers whose resource `keep` takes, each with its position in [`Registries::all`].
    pub fn select(&self, keep: impl Fn(&Resource) -> bool) -> Vec<(usize, Producer)> {
        let received = self.received.read().unwrap_or_else(PoisonError::into_inner);
        std::iter::once(&self.own)
            .chain(received.iter())
            .enumerate()
            .filter(|(_, p)| keep(&p.resource))
            .map(|(i, p)| (i, p.clone()))
            .collect()
    }

    /// Advances the shared idle clock one tick and removes, in every registry, the series not
    /// measured in the last `ticks` ticks; returns how many went.
    pub fn expire_idle(&self, ticks: u64) -> usize {
        let received = self.received.read().unwrap_or_else(PoisonError::into_inner);
        self.own.registry.expire_idle(ticks)
            + received
                .iter()
                .map(|p| p.registry.expire(ticks))
                .sum::<usize>()
    }

    /// Removes series idle for longer than `expiry` until `stopped`, sweeping
    /// [`EXPIRY_SWEEPS`] times per period: a series goes between 1 and 1¼ periods after its
    /// last measurement.
    pub fn expire_every(
        self: Arc<Self>,
        expiry: std::time::Duration,
        stopped: tokio::sync::watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let period = (expiry / EXPIRY_SWEEPS).max(std::time::Duration::from_millis(1));
        crate::ticker::after(period, stopped, move || {
            let gone = self.expire_idle(u64::from(EXPIRY_SWEEPS));
            if gone > 0 {
                tracing::debug!(series = gone, "idle series expired");
            }
            std::future::ready(())
        })
    }

    /// The registry of received `resource`, created (configured as the host's) on first use.
    pub fn received(&self, resource: &AttributeSet) -> Result<Arc<Registry>, TooManyResources> {
        let find = |list: &[Producer]| {
            list.iter()
                .find(|p| p.resource.attributes() == resource)
                .map(|p| p.registry.clone())
        };
        if let Some(found) = find(&self.received.read().unwrap_or_else(PoisonError::into_inner)) {
            return Ok(found);
        }
        let mut received = self
            .received
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(found) = find(&received) {
            return Ok(found);
        }
        if received.len() >= MAX_RECEIVED_RESOURCES {
            return Err(TooManyResources);
        }
        let registry = Arc::new(self.own.registry.sibling());
        received.push(Producer {
            resource: Resource::from_attributes(resource.clone()),
            registry: registry.clone(),
        });
        Ok(registry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::attributes::Value;

    fn set(service: &str) -> AttributeSet {
        AttributeSet::from_pairs(vec![(
            Arc::from("service.name"),
            Value::Str(Arc::from(service)),
        )])
    }

    #[test]
    fn idle_series_expire_in_every_registry_on_one_clock() {
        use crate::metrics::Descriptor;
        use crate::model::metric::InstrumentKind;
        let own = Resource::from_attributes(set("wasmtel"));
        let all = Registries::new(Arc::new(Registry::new(7)), own);
        let counter = |registry: &Registry| {
            let d = Descriptor {
                name: "c".into(),
                unit: String::new(),
                description: String::new(),
                kind: InstrumentKind::Counter,
                scope: "s".into(),
            };
            registry.instrument(d, &[]).expect("counter")
        };
        let mine = counter(&all.own().registry);
        let theirs = counter(&all.received(&set("a")).expect("a"));
        mine.record(&[], 1.0);
        theirs.record(&[], 1.0);
        assert_eq!(all.expire_idle(1), 0, "both idle for one tick");
        theirs.record(&[], 1.0);
        assert_eq!(
            all.expire_idle(1),
            1,
            "mine idle for two ticks, theirs for one"
        );
        assert_eq!(all.expire_idle(1), 1, "theirs idle for two ticks");
    }

    #[test]
    fn one_registry_per_resource_in_arrival_order_up_to_the_limit() {
        let own = Resource::from_attributes(set("wasmtel"));
        let all = Registries::new(Arc::new(Registry::new(7)), own);
        let a = all.received(&set("a")).expect("a");
        let b = all.received(&set("b")).expect("b");
        assert!(Arc::ptr_eq(&a, &all.received(&set("a")).expect("a again")));
        assert!(!Arc::ptr_eq(&a, &b));
        assert_eq!(a.cardinality_limit(), 7, "configured as the host's");
        let names: Vec<String> = all
            .all()
            .iter()
            .map(|p| p.resource.get("service.name").unwrap_or_default())
            .collect();
        assert_eq!(names, ["wasmtel", "a", "b"]);
        for i in 2..MAX_RECEIVED_RESOURCES {
            all.received(&set(&format!("r{i}")))
                .expect("below the limit");
        }
        let refused = all.received(&set("one-too-many")).expect_err("limit");
        assert!(refused.to_string().contains("256 resources"), "{refused}");
        assert!(
            all.received(&set("a")).is_ok(),
            "known resources still work"
        );
    }
}
