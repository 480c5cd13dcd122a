//! Attribute views: a mapping of the attribute set a series is recorded under,
//! computed once per distinct input set and cached.

use std::sync::{Arc, PoisonError, RwLock};

use hashbrown::HashTable;

use super::series::SeriesKey;
use crate::model::attributes::{AttributeSet, AttrsRef, hash_attrs};
use crate::model::metric::Descriptor;

/// Distinct input sets remembered per instrument; past it the cache starts over.
pub const VIEW_CACHE_LIMIT: usize = 16_384;

/// What a view made of one attribute set.
#[derive(Debug, Clone, PartialEq)]
pub enum Mapping {
    /// Record under the input set.
    Keep,
    /// Record under this set instead.
    Replace(AttributeSet),
    /// The view could not answer now; record under the input set and ask again next time.
    Unavailable,
}

thread_local! {
    /// When views must stop being asked for the work on this thread (see [`patiently`]).
    static PATIENCE: std::cell::Cell<Option<std::time::Instant>> = const { std::cell::Cell::new(None) };
}

/// Runs `f` allowing views time until `until` in all: past it, a cache miss records under the
/// input set without asking the view (as [`Mapping::Unavailable`]).
pub fn patiently<R>(until: std::time::Instant, f: impl FnOnce() -> R) -> R {
    /// Puts the outer bound back, even when `f` unwinds.
    struct Restore(Option<std::time::Instant>);
    impl Drop for Restore {
        fn drop(&mut self) {
            PATIENCE.set(self.0);
        }
    }
    let _restore = Restore(PATIENCE.replace(Some(until)));
    f()
}

/// How long views may still take for the work on this thread; `None` when unbounded.
pub fn patience() -> Option<std::time::Duration> {
    PATIENCE
        .get()
        .map(|until| until.saturating_duration_since(std::time::Instant::now()))
}

/// Something that maps attribute sets (a view plugin).
pub trait AttributeView: Send + Sync {
    /// Maps one attribute set of `instrument`; may be slow, it runs once per distinct set.
    fn map(&self, instrument: &Descriptor, attrs: &AttrsRef<'_>) -> Mapping;

    /// Changes whenever earlier answers may no longer hold (a new plugin version).
    fn generation(&self) -> u64;
}

/// A view bound to one instrument, with its answers cached by input set.
pub struct Viewed {
    view: Arc<dyn AttributeView>,
    cache: RwLock<Cache>,
}

#[derive(Default)]
struct Cache {
    generation: u64,
    answers: HashTable<(AttributeSet, Option<AttributeSet>)>,
}

impl std::fmt::Debug for Viewed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Viewed").finish_non_exhaustive()
    }
}

impl Viewed {
    /// Binds `view` to an instrument.
    pub fn new(view: Arc<dyn AttributeView>) -> Self {
        let generation = view.generation();
        Self {
            view,
            cache: RwLock::new(Cache {
                generation,
                answers: HashTable::new(),
            }),
        }
    }

    /// Calls `record` with the series key that `attrs` maps to, asking the view only on a cache miss.
    pub fn resolve(
        &self,
        descriptor: &Descriptor,
        attrs: &AttrsRef<'_>,
        record: impl FnOnce(SeriesKey<'_, '_>),
    ) {
        let hash = hash_attrs(attrs);
        let generation = self.view.generation();
        {
            let cache = self.cache.read().unwrap_or_else(PoisonError::into_inner);
            if cache.generation == generation
                && let Some((_, answer)) =
                    cache.answers.find(hash, |(input, _)| input.matches(attrs))
            {
                return record(key(attrs, hash, answer.as_ref()));
            }
        }
        if patience().is_some_and(|left| left.is_zero()) {
            return record(SeriesKey::Hashed(attrs, hash));
        }
        let answer = match self.view.map(descriptor, attrs) {
            Mapping::Keep => None,
            Mapping::Replace(set) => Some(set),
            Mapping::Unavailable => return record(SeriesKey::Hashed(attrs, hash)),
        };
        record(key(attrs, hash, answer.as_ref()));
        let mut cache = self.cache.write().unwrap_or_else(PoisonError::into_inner);
        if cache.generation != generation || cache.answers.len() >= VIEW_CACHE_LIMIT {
            cache.answers.clear();
            cache.generation = generation;
        }
        if cache
            .answers
            .find(hash, |(input, _)| input.matches(attrs))
            .is_none()
        {
            let input = AttributeSet::from_sorted(attrs, hash);
            cache
                .answers
                .insert_unique(hash, (input, answer), |(input, _)| input.hash());
        }
    }

    /// The number of cached answers.
    pub fn cached(&self) -> usize {
        self.cache
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .answers
            .len()
    }
}

/// The series key for an answer: the mapped set, else the input list with its hash.
fn key<'k, 'a>(
    attrs: &'k AttrsRef<'a>,
    hash: u64,
    answer: Option<&'k AttributeSet>,
) -> SeriesKey<'k, 'a> {
    answer.map_or(SeriesKey::Hashed(attrs, hash), SeriesKey::Set)
}

/// An instrument-name pattern where `*` matches any run of characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern(String);

impl Pattern {
    /// A pattern from its text.
    pub fn new(text: &str) -> Self {
        Self(text.to_owned())
    }

    /// Whether `name` matches.
    pub fn matches(&self, name: &str) -> bool {
        let mut parts = self.0.split('*');
        let first = parts.next().unwrap_or_default();
        let Some(mut rest) = name.strip_prefix(first) else {
            return false;
        };
        let parts: Vec<&str> = parts.collect();
        let Some((last, middle)) = parts.split_last() else {
            return rest.is_empty();
        };
        for part in middle {
            match rest.find(part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
        rest.len() >= last.len() && rest.ends_with(last)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

    use super::*;
    use crate::model::attributes::{Value, ValueRef};
    use crate::model::metric::InstrumentKind;

    /// Drops the `user` key and counts how often it was asked.
    #[derive(Default)]
    struct DropUser {
        calls: AtomicUsize,
        generation: AtomicU64,
        down: std::sync::atomic::AtomicBool,
    }

    impl AttributeView for DropUser {
        fn map(&self, _: &Descriptor, attrs: &AttrsRef<'_>) -> Mapping {
            self.calls.fetch_add(1, Ordering::Relaxed);
            if self.down.load(Ordering::Relaxed) {
                return Mapping::Unavailable;
            }
            if !attrs.iter().any(|(k, _)| *k == "user") {
                return Mapping::Keep;
            }
            Mapping::Replace(AttributeSet::from_pairs(
                attrs
                    .iter()
                    .filter(|(k, _)| *k != "user")
                    .map(|(k, v)| (Arc::from(*k), v.to_owned_value()))
                    .collect(),
            ))
        }

        fn generation(&self) -> u64 {
            self.generation.load(Ordering::Relaxed)
        }
    }

    fn descriptor() -> Descriptor {
        Descriptor {
            name: "x".into(),
            unit: String::new(),
            description: String::new(),
            kind: InstrumentKind::Counter,
            scope: "test".into(),
        }
    }

    fn resolved(viewed: &Viewed, attrs: &AttrsRef<'_>) -> Vec<(String, Value)> {
        let mut out = Vec::new();
        viewed.resolve(&descriptor(), attrs, |key| {
            out = key
                .to_set()
                .iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned_value()))
                .collect();
        });
        out
    }

    #[test]
    fn asks_once_per_distinct_set_and_again_after_a_new_generation() {
        let view = Arc::new(DropUser::default());
        let viewed = Viewed::new(view.clone());
        let a = [("model", ValueRef::Str("m")), ("user", ValueRef::Str("u1"))];
        let b = [("model", ValueRef::Str("m")), ("user", ValueRef::Str("u2"))];
        let plain = [("model", ValueRef::Str("m"))];
        for _ in 0..3 {
            assert_eq!(
                resolved(&viewed, &a),
                vec![("model".into(), Value::Str("m".into()))]
            );
            assert_eq!(
                resolved(&viewed, &b),
                vec![("model".into(), Value::Str("m".into()))]
            );
            assert_eq!(resolved(&viewed, &plain).len(), 1);
        }
        assert_eq!(view.calls.load(Ordering::Relaxed), 3);
        assert_eq!(viewed.cached(), 3);
        view.generation.store(1, Ordering::Relaxed);
        resolved(&viewed, &a);
        assert_eq!(view.calls.load(Ordering::Relaxed), 4);
        assert_eq!(viewed.cached(), 1);
    }

    #[test]
    fn unavailable_answers_keep_the_input_and_are_not_cached() {
        let view = Arc::new(DropUser::default());
        view.down.store(true, Ordering::Relaxed);
        let viewed = Viewed::new(view.clone());
        let a = [("user", ValueRef::Str("u1"))];
        assert_eq!(resolved(&viewed, &a).len(), 1);
        assert_eq!(resolved(&viewed, &a).len(), 1);
        assert_eq!(view.calls.load(Ordering::Relaxed), 2);
        assert_eq!(viewed.cached(), 0);
        view.down.store(false, Ordering::Relaxed);
        assert!(resolved(&viewed, &a).is_empty());
    }

    #[test]
    fn past_the_work_s_patience_views_are_not_asked_and_the_input_is_kept() {
        let view = Arc::new(DropUser::default());
        let viewed = Viewed::new(view.clone());
        let a = [("model", ValueRef::Str("m")), ("user", ValueRef::Str("u1"))];
        let b = [("model", ValueRef::Str("m")), ("user", ValueRef::Str("u2"))];
        let later = std::time::Instant::now() + std::time::Duration::from_secs(3600);
        assert_eq!(patiently(later, || resolved(&viewed, &a)).len(), 1);
        assert_eq!(view.calls.load(Ordering::Relaxed), 1);
        let spent = std::time::Instant::now();
        patiently(spent, || {
            assert_eq!(patience(), Some(std::time::Duration::ZERO));
            // Cached answers still apply; a miss records under its own attributes, unasked.
            assert_eq!(resolved(&viewed, &a).len(), 1);
            assert_eq!(resolved(&viewed, &b).len(), 2);
        });
        assert_eq!(view.calls.load(Ordering::Relaxed), 1);
        assert_eq!(viewed.cached(), 1);
        assert_eq!(patience(), None);
        assert_eq!(resolved(&viewed, &b).len(), 1);
    }

    #[test]
    fn the_cache_starts_over_when_full() {
        let view = Arc::new(DropUser::default());
        let viewed = Viewed::new(view.clone());
        for i in 0..=VIEW_CACHE_LIMIT as i64 {
            resolved(&viewed, &[("id", ValueRef::Int(i))]);
        }
        assert_eq!(viewed.cached(), 1);
        assert_eq!(view.calls.load(Ordering::Relaxed), VIEW_CACHE_LIMIT + 1);
    }

    #[test]
    fn patterns_match_with_wildcards() {
        let cases = [
            ("*", "anything", true),
            ("gen_ai.*", "gen_ai.client.token.usage", true),
            ("gen_ai.*", "http.duration", false),
            ("*.duration", "gen_ai.server.request.duration", true),
            ("gen_ai.*.duration", "gen_ai.server.request.duration", true),
            ("gen_ai.*.duration", "gen_ai.server.request.count", false),
            ("a*a", "a", false),
            ("exact", "exact", true),
            ("exact", "exactly", false),
        ];
        for (pattern, name, want) in cases {
            assert_eq!(
                Pattern::new(pattern).matches(name),
                want,
                "{pattern} ~ {name}"
            );
        }
    }
}
