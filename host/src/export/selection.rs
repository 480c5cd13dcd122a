//! An integration's selection applied to the host's producers: which it picks, matched once
//! and kept until a producer comes or goes, so a collection costs nothing per other tenant.

use std::sync::{Mutex, PoisonError};

use crate::metrics::{Producer, Registries};
use crate::model::select::Select;

/// A selection and the producers it picked at a generation of the registries.
#[derive(Debug)]
pub struct Selection {
    select: Select,
    picked: Mutex<Option<(u64, Vec<Producer>)>>,
}

impl Selection {
    /// `select`, nothing picked yet.
    pub fn new(select: Select) -> Self {
        Self {
            select,
            picked: Mutex::new(None),
        }
    }

    /// What it selects.
    pub fn select(&self) -> &Select {
        &self.select
    }

    /// The producers of `registries` whose resource it selects, matched again only when a
    /// producer came or went since the last call.
    pub fn producers(&self, registries: &Registries) -> Vec<Producer> {
        let generation = registries.generation();
        let mut picked = self.picked.lock().unwrap_or_else(PoisonError::into_inner);
        match &*picked {
            Some((at, producers)) if *at == generation => producers.clone(),
            _ => {
                let producers = registries.select(|r| self.select.resource(r.attributes()));
                *picked = Some((generation, producers.clone()));
                producers
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::metrics::{Admission, Registry};
    use crate::model::attributes::{AttributeSet, Value};
    use crate::model::resource::Resource;

    fn set(ns: &str) -> AttributeSet {
        AttributeSet::from_pairs(vec![(Arc::from("ns"), Value::Str(Arc::from(ns)))])
    }

    #[test]
    fn picks_again_only_when_producers_change() {
        let own = Resource::from_attributes(AttributeSet::empty());
        let all = Registries::new(Arc::new(Registry::new(10)), own);
        all.received(&set("a"), &Admission::default()).expect("a");
        let mut select = Select::default();
        select.pin("ns", "a").expect("pinned");
        let selection = Selection::new(select);
        let ids = |s: &Selection| -> Vec<u64> { s.producers(&all).iter().map(|p| p.id).collect() };
        assert_eq!(ids(&selection), [1]);
        all.received(&set("b"), &Admission::default()).expect("b");
        assert_eq!(ids(&selection), [1], "b is not a's");
        all.expire_idle(1);
        all.expire_idle(1);
        assert!(ids(&selection).is_empty(), "a went when it stayed empty");
    }
}
