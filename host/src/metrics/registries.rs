//! Every registry the host exports, each with the resource it describes: the host's own, and
//! one per resource that sent metrics over OTLP.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use super::Registry;
use crate::model::attributes::AttributeSet;
use crate::model::resource::Resource;

/// How many resources may send metrics over OTLP; points of further resources are refused.
pub const MAX_RECEIVED_RESOURCES: usize = 256;

/// A registry and the resource its metrics describe.
#[derive(Debug, Clone)]
pub struct Producer {
    /// Its id, never reused: 0 is the host's own, received ones count up from 1.
    pub id: u64,
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

/// A new resource's metrics cannot be kept: a limit on received resources was reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TooManyResources {
    /// The host's limit.
    #[error(
        "metrics are already kept for {MAX_RECEIVED_RESOURCES} resources; a new resource is refused"
    )]
    Host,
    /// The limit of the group the resource belongs to (a tenant's).
    #[error(
        "metrics are already kept for this tenant's limit of {0} resources; a new resource is refused"
    )]
    Group(usize),
}

/// Which resources count as of the same group as another.
pub type Same<'a> = &'a dyn Fn(&Resource) -> bool;

/// What a received resource is held to when it is new.
#[derive(Default)]
pub struct Admission<'a> {
    /// The resources counted with it (a tenant's), and how many of them may be kept.
    pub group: Option<(Same<'a>, usize)>,
    /// Its instruments' cardinality limit, when lower than the host's.
    pub cardinality_limit: Option<usize>,
    /// Kept even when it has no series left (a tenant's own events record into it).
    pub pinned: bool,
}

impl std::fmt::Debug for Admission<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admission")
            .field("group_limit", &self.group.map(|(_, n)| n))
            .field("cardinality_limit", &self.cardinality_limit)
            .field("pinned", &self.pinned)
            .finish()
    }
}

/// A received producer, whether it stays when idle, and for how many sweeps in a row it had
/// no series.
#[derive(Debug)]
struct Received {
    producer: Producer,
    pinned: bool,
    empty_sweeps: AtomicU64,
}

/// The host's registry, then the received ones in the order their resources first sent data.
#[derive(Debug)]
pub struct Registries {
    own: Producer,
    received: RwLock<Vec<Received>>,
    next_id: AtomicU64,
    /// Bumped whenever a producer comes or goes.
    generation: AtomicU64,
}

/// Sweeps per idle-series expiry period.
pub const EXPIRY_SWEEPS: u32 = 4;

impl Registries {
    /// The host's own registry and resource, with nothing received yet.
    pub fn new(registry: Arc<Registry>, resource: Resource) -> Self {
        Self {
            own: Producer {
                id: 0,
                resource,
                registry,
            },
            received: RwLock::default(),
            next_id: AtomicU64::new(1),
            generation: AtomicU64::new(0),
        }
    }

    /// A number that changes whenever a producer comes or goes, so that a selection of
    /// producers can be kept until then.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The host's own registry and resource.
    pub fn own(&self) -> &Producer {
        &self.own
    }

    /// Every producer: the host's first, then the received ones.
    pub fn all(&self) -> Vec<Producer> {
        self.select(|_| true)
    }

    /// The producers whose resource `keep` takes, the host's first.
    pub fn select(&self, keep: impl Fn(&Resource) -> bool) -> Vec<Producer> {
        let received = self.received.read().unwrap_or_else(PoisonError::into_inner);
        std::iter::once(&self.own)
            .chain(received.iter().map(|r| &r.producer))
            .filter(|p| keep(&p.resource))
            .cloned()
            .collect()
    }

    /// Advances the shared idle clock one tick and removes, in every registry, the series not
    /// measured in the last `ticks` ticks, then every received resource left without series
    /// (unless pinned), so that its slot comes back; returns how many series went.
    pub fn expire_idle(&self, ticks: u64) -> usize {
        self.expire(Some(ticks), Some(ticks))
    }

    /// [`Registries::expire_idle`] with the host's own series (and pinned resources') idle for
    /// `own` ticks and received resources' for `received` ticks (`None`: kept).
    fn expire(&self, own: Option<u64>, received_ticks: Option<u64>) -> usize {
        self.own.registry.clock.advance();
        let gone = {
            let received = self.received.read().unwrap_or_else(PoisonError::into_inner);
            let own_gone = own.map_or(0, |t| self.own.registry.expire(t));
            own_gone
                + received
                    .iter()
                    .filter_map(|r| {
                        let ticks = if r.pinned { own } else { received_ticks };
                        ticks.map(|t| r.producer.registry.expire(t))
                    })
                    .sum::<usize>()
        };
        // A resource goes after two sweeps in a row without series: one just created has a
        // sweep's time to record its first points.
        let mut received = self
            .received
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let before = received.len();
        received.retain(|r| {
            let empty = !r.pinned && r.producer.registry.is_empty();
            let sweeps = match empty {
                true => r.empty_sweeps.fetch_add(1, Ordering::Relaxed) + 1,
                false => {
                    r.empty_sweeps.store(0, Ordering::Relaxed);
                    0
                }
            };
            sweeps < 2
        });
        if received.len() != before {
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
        gone
    }

    /// Removes the host's own series idle for longer than `own` and received resources'
    /// idle for longer than `received` (either `None`: kept) until `stopped`, sweeping
    /// [`EXPIRY_SWEEPS`] times per shorter period: a series goes between 1 and 1¼ periods
    /// after its last measurement. `None` when both are kept.
    pub fn expire_every(
        self: Arc<Self>,
        own: Option<std::time::Duration>,
        received: Option<std::time::Duration>,
        stopped: tokio::sync::watch::Receiver<bool>,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let shortest = own.into_iter().chain(received).min()?;
        let period = (shortest / EXPIRY_SWEEPS).max(std::time::Duration::from_millis(1));
        let ticks = |d: std::time::Duration| (d.as_nanos() / period.as_nanos()).max(1) as u64;
        let (own, received) = (own.map(ticks), received.map(ticks));
        Some(crate::ticker::after(period, stopped, move || {
            let gone = self.expire(own, received);
            if gone > 0 {
                tracing::debug!(series = gone, "idle series expired");
            }
            std::future::ready(())
        }))
    }

    /// The registry of received `resource`, created (configured as the host's, under
    /// `admission`) on first use.
    pub fn received(
        &self,
        resource: &AttributeSet,
        admission: &Admission<'_>,
    ) -> Result<Arc<Registry>, TooManyResources> {
        let find = |list: &[Received]| {
            list.iter()
                .find(|r| r.producer.resource.attributes() == resource)
                .map(|r| r.producer.registry.clone())
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
            return Err(TooManyResources::Host);
        }
        if let Some((same, limit)) = admission.group {
            let taken = received
                .iter()
                .filter(|r| same(&r.producer.resource))
                .count();
            if taken >= limit {
                return Err(TooManyResources::Group(limit));
            }
        }
        let mut registry = self.own.registry.sibling();
        if let Some(limit) = admission.cardinality_limit {
            registry.cardinality_limit = registry.cardinality_limit.min(limit);
        }
        let registry = Arc::new(registry);
        received.push(Received {
            producer: Producer {
                id: self.next_id.fetch_add(1, Ordering::Relaxed),
                resource: Resource::from_attributes(resource.clone()),
                registry: registry.clone(),
            },
            pinned: admission.pinned,
            empty_sweeps: AtomicU64::new(0),
        });
        self.generation.fetch_add(1, Ordering::AcqRel);
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

    /// Counter `c` of `registry`.
    fn counter(registry: &Registry) -> Arc<crate::metrics::Instrument> {
        let d = crate::metrics::Descriptor {
            name: "c".into(),
            unit: String::new(),
            description: String::new(),
            kind: crate::model::metric::InstrumentKind::Counter,
            scope: "s".into(),
        };
        registry.instrument(d, &[]).expect("counter")
    }

    #[test]
    fn idle_series_expire_in_every_registry_on_one_clock() {
        let own = Resource::from_attributes(set("wasmtel"));
        let all = Registries::new(Arc::new(Registry::new(7)), own);
        let mine = counter(&all.own().registry);
        let theirs = counter(&all.received(&set("a"), &Admission::default()).expect("a"));
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
        let a = all.received(&set("a"), &Admission::default()).expect("a");
        let b = all.received(&set("b"), &Admission::default()).expect("b");
        assert!(Arc::ptr_eq(
            &a,
            &all.received(&set("a"), &Admission::default())
                .expect("a again")
        ));
        assert!(!Arc::ptr_eq(&a, &b));
        assert_eq!(a.cardinality_limit(), 7, "configured as the host's");
        let names: Vec<String> = all
            .all()
            .iter()
            .map(|p| p.resource.get("service.name").unwrap_or_default())
            .collect();
        assert_eq!(names, ["wasmtel", "a", "b"]);
        for i in 2..MAX_RECEIVED_RESOURCES {
            all.received(&set(&format!("r{i}")), &Admission::default())
                .expect("below the limit");
        }
        let refused = all
            .received(&set("one-too-many"), &Admission::default())
            .expect_err("limit");
        assert!(refused.to_string().contains("256 resources"), "{refused}");
        assert!(
            all.received(&set("a"), &Admission::default()).is_ok(),
            "known resources still work"
        );
    }

    #[test]
    fn a_group_keeps_to_its_share_and_idle_resources_give_their_slot_back() {
        let own = Resource::from_attributes(set("wasmtel"));
        let all = Registries::new(Arc::new(Registry::new(7)), own);
        let mine = |r: &Resource| {
            r.get("service.name")
                .is_some_and(|s| s.starts_with("team-"))
        };
        let limited = Admission {
            group: Some((&mine, 1)),
            cardinality_limit: Some(3),
            pinned: false,
        };
        let first = all.received(&set("team-1"), &limited).expect("first");
        assert_eq!(first.cardinality_limit(), 3, "its own series limit");
        assert_eq!(
            all.received(&set("team-2"), &limited).expect_err("second"),
            TooManyResources::Group(1)
        );
        let other = all.received(&set("other"), &Admission::default());
        assert_eq!(other.expect("outside the group").cardinality_limit(), 7);
        counter(&first).record(&[], 1.0);
        all.expire_idle(1);
        assert!(
            all.received(&set("team-2"), &limited).is_err(),
            "team-1 still has a series"
        );
        for _ in 0..3 {
            all.expire_idle(1);
        }
        let ids: Vec<u64> = all.all().iter().map(|p| p.id).collect();
        assert_eq!(ids, [0], "idle resources went, ids are never reused");
        let again = all
            .received(&set("team-2"), &limited)
            .expect("its slot came back");
        assert!(!Arc::ptr_eq(&again, &first));
        assert_eq!(all.all().last().map(|p| p.id), Some(3));
    }

    #[test]
    fn received_series_follow_their_own_expiry_and_the_hosts_may_stay() {
        let own = Resource::from_attributes(set("wasmtel"));
        let all = Registries::new(Arc::new(Registry::new(7)), own);
        let pinned = Admission {
            pinned: true,
            ..Admission::default()
        };
        counter(&all.own().registry).record(&[], 1.0);
        counter(&all.received(&set("lane"), &pinned).expect("lane")).record(&[], 1.0);
        counter(&all.received(&set("a"), &Admission::default()).expect("a")).record(&[], 1.0);
        assert_eq!(all.expire(None, Some(1)), 0, "idle for one tick only");
        assert_eq!(all.expire(None, Some(1)), 1, "the received series went");
        assert!(
            !all.own().registry.is_empty(),
            "the host's own stays without an expiry"
        );
        let ids: Vec<u64> = all.all().iter().map(|p| p.id).collect();
        assert_eq!(
            ids,
            [0, 1, 2],
            "the pinned lane keeps its series, like the host's"
        );
    }
}
