//! Attribute sets: the identity of a metric series.
//!
//! A series is looked up on the hot path from a *borrowed* attribute list
//! ([`AttrsRef`]) so that recording into an existing series allocates
//! nothing; the owned form ([`AttributeSet`]) is built only when a new
//! series is created. Both forms hash identically through [`hash_attrs`].

use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

/// One attribute value, owned.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A UTF-8 string.
    Str(Arc<str>),
    /// A boolean.
    Bool(bool),
    /// A signed integer.
    Int(i64),
    /// A double; compared bit for bit so that it can be a map key.
    Double(f64),
}

/// One attribute value, borrowed from an event or a rule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ValueRef<'a> {
    /// A UTF-8 string.
    Str(&'a str),
    /// A boolean.
    Bool(bool),
    /// A signed integer.
    Int(i64),
    /// A double.
    Double(f64),
}

impl Value {
    /// Borrows this value.
    pub fn as_ref(&self) -> ValueRef<'_> {
        match self {
            Value::Str(s) => ValueRef::Str(s),
            Value::Bool(b) => ValueRef::Bool(*b),
            Value::Int(i) => ValueRef::Int(*i),
            Value::Double(d) => ValueRef::Double(*d),
        }
    }
}

impl ValueRef<'_> {
    /// Copies this value into an owned [`Value`].
    pub fn to_owned_value(self) -> Value {
        match self {
            ValueRef::Str(s) => Value::Str(Arc::from(s)),
            ValueRef::Bool(b) => Value::Bool(b),
            ValueRef::Int(i) => Value::Int(i),
            ValueRef::Double(d) => Value::Double(d),
        }
    }

    fn same_as(self, other: ValueRef<'_>) -> bool {
        match (self, other) {
            (ValueRef::Double(a), ValueRef::Double(b)) => a.to_bits() == b.to_bits(),
            (a, b) => a == b,
        }
    }
}

impl std::fmt::Display for ValueRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ValueRef::Str(s) => f.write_str(s),
            ValueRef::Bool(b) => write!(f, "{b}"),
            ValueRef::Int(i) => write!(f, "{i}"),
            ValueRef::Double(d) => write!(f, "{d}"),
        }
    }
}

/// A borrowed attribute list, sorted by key with no duplicate keys.
pub type AttrsRef<'a> = [(&'a str, ValueRef<'a>)];

/// An owned, sorted, de-duplicated attribute set with its hash precomputed.
#[derive(Debug, Clone)]
pub struct AttributeSet {
    pairs: Box<[(Arc<str>, Value)]>,
    hash: u64,
}

impl AttributeSet {
    /// Builds an owned set from a borrowed list that is already sorted by key.
    pub fn from_sorted(attrs: &AttrsRef<'_>, hash: u64) -> Self {
        debug_assert!(
            attrs.windows(2).all(|w| w[0].0 < w[1].0),
            "unsorted attributes"
        );
        let pairs = attrs
            .iter()
            .map(|(k, v)| (Arc::from(*k), v.to_owned_value()))
            .collect();
        Self { pairs, hash }
    }

    /// Builds a set from unsorted owned pairs; later duplicates win.
    pub fn from_pairs(mut pairs: Vec<(Arc<str>, Value)>) -> Self {
        pairs.reverse();
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        pairs.dedup_by(|later, earlier| later.0 == earlier.0);
        let borrowed: Vec<_> = pairs.iter().map(|(k, v)| (&**k, v.as_ref())).collect();
        let hash = hash_attrs(&borrowed);
        Self {
            pairs: pairs.into_boxed_slice(),
            hash,
        }
    }

    /// The empty set.
    pub fn empty() -> Self {
        Self::from_pairs(Vec::new())
    }

    /// The precomputed hash of this set.
    pub fn hash(&self) -> u64 {
        self.hash
    }

    /// Iterates over the key-value pairs in key order.
    pub fn iter(
        &self,
    ) -> impl DoubleEndedIterator<Item = (&str, ValueRef<'_>)> + ExactSizeIterator {
        self.pairs.iter().map(|(k, v)| (&**k, v.as_ref()))
    }

    /// The number of attributes.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// Whether the set has no attributes.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// Whether this set equals a borrowed list.
    pub fn matches(&self, attrs: &AttrsRef<'_>) -> bool {
        self.pairs.len() == attrs.len()
            && self
                .pairs
                .iter()
                .zip(attrs)
                .all(|((k, v), (bk, bv))| &**k == *bk && v.as_ref().same_as(*bv))
    }
}

impl PartialEq for AttributeSet {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash
            && self.len() == other.len()
            && self
                .iter()
                .zip(other.iter())
                .all(|((k, v), (ok, ov))| k == ok && v.same_as(ov))
    }
}

/// Hashes a sorted borrowed attribute list; equal lists hash equally whether owned or borrowed.
pub fn hash_attrs(attrs: &AttrsRef<'_>) -> u64 {
    let mut h = foldhash::fast::FixedState::with_seed(0x0077_6173_6d74_656c).build_hasher();
    for (k, v) in attrs {
        h.write(k.as_bytes());
        h.write_u8(0xff);
        match v {
            ValueRef::Str(s) => {
                h.write_u8(0);
                h.write(s.as_bytes());
                h.write_u8(0xff);
            }
            ValueRef::Bool(b) => h.write_u16(0x100 | u16::from(*b)),
            ValueRef::Int(i) => {
                h.write_u8(2);
                h.write_i64(*i);
            }
            ValueRef::Double(d) => {
                h.write_u8(3);
                h.write_u64(d.to_bits());
            }
        }
    }
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owned_and_borrowed_forms_hash_and_compare_equal() {
        let borrowed = [("a", ValueRef::Str("x")), ("b", ValueRef::Int(3))];
        let hash = hash_attrs(&borrowed);
        let owned = AttributeSet::from_sorted(&borrowed, hash);
        assert!(owned.matches(&borrowed));
        let rebuilt = AttributeSet::from_pairs(vec![
            (Arc::from("b"), Value::Int(3)),
            (Arc::from("a"), Value::Str(Arc::from("x"))),
        ]);
        assert_eq!(rebuilt.hash(), hash);
        assert_eq!(rebuilt, owned);
    }

    #[test]
    fn different_values_or_keys_do_not_match() {
        let a = [("a", ValueRef::Str("x"))];
        let set = AttributeSet::from_sorted(&a, hash_attrs(&a));
        assert!(!set.matches(&[("a", ValueRef::Str("y"))]));
        assert!(!set.matches(&[("b", ValueRef::Str("x"))]));
        assert!(!set.matches(&[]));
        assert_ne!(hash_attrs(&a), hash_attrs(&[("a", ValueRef::Str("y"))]));
        // A string key/value split differently must not collide structurally.
        assert_ne!(
            hash_attrs(&[("ab", ValueRef::Str("c"))]),
            hash_attrs(&[("a", ValueRef::Str("bc"))])
        );
    }

    #[test]
    fn later_duplicates_win() {
        let set = AttributeSet::from_pairs(vec![
            (Arc::from("k"), Value::Int(1)),
            (Arc::from("k"), Value::Int(2)),
        ]);
        assert_eq!(
            set.iter().collect::<Vec<_>>(),
            vec![("k", ValueRef::Int(2))]
        );
    }
}
