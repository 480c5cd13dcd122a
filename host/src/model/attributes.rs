//! Attribute sets: the identity of a metric series.
//!
//! A series is looked up on the hot path from a *borrowed* attribute list
//! ([`AttrsRef`]) so that recording into an existing series allocates
//! nothing; the owned form ([`AttributeSet`]), one compact allocation, is built
//! only when a new series is created. Both hash alike through [`hash_attrs`].

use std::hash::{BuildHasher, Hasher};

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
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

const STR: u8 = 0;
const BOOL: u8 = 1;
const INT: u8 = 2;
const DOUBLE: u8 = 3;

fn varint_len(n: usize) -> usize {
    (usize::BITS - (n | 1).leading_zeros()).div_ceil(7) as usize
}

/// The bytes an [`AttributeSet`] of this sorted list takes.
pub fn attrs_len(attrs: &AttrsRef<'_>) -> usize {
    attrs.iter().map(|(k, v)| encoded_len(k, *v)).sum()
}

fn encoded_len(key: &str, value: ValueRef<'_>) -> usize {
    let value = match value {
        ValueRef::Str(s) => varint_len(s.len()) + s.len(),
        ValueRef::Bool(_) => 1,
        ValueRef::Int(_) | ValueRef::Double(_) => 8,
    };
    varint_len(key.len()) + key.len() + 1 + value
}

fn put(out: &mut [u8], at: &mut usize, bytes: &[u8]) {
    out[*at..*at + bytes.len()].copy_from_slice(bytes);
    *at += bytes.len();
}

fn put_varint(out: &mut [u8], at: &mut usize, mut n: usize) {
    while n >= 0x80 {
        out[*at] = (n as u8) | 0x80;
        n >>= 7;
        *at += 1;
    }
    out[*at] = n as u8;
    *at += 1;
}

fn write_pair(out: &mut [u8], at: &mut usize, key: &str, value: ValueRef<'_>) {
    put_varint(out, at, key.len());
    put(out, at, key.as_bytes());
    match value {
        ValueRef::Str(s) => {
            put(out, at, &[STR]);
            put_varint(out, at, s.len());
            put(out, at, s.as_bytes());
        }
        ValueRef::Bool(b) => put(out, at, &[BOOL, u8::from(b)]),
        ValueRef::Int(i) => {
            put(out, at, &[INT]);
            put(out, at, &i.to_le_bytes());
        }
        ValueRef::Double(d) => {
            put(out, at, &[DOUBLE]);
            put(out, at, &d.to_bits().to_le_bytes());
        }
    }
}

/// An owned, sorted, de-duplicated attribute set, encoded in one allocation, with its hash.
///
/// Each pair is `varint(key length) key tag value`, the value being `varint(length) bytes`
/// for a string, one byte for a boolean and eight little-endian bytes for an integer or a
/// double (bit for bit), so that equal sets have equal bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct AttributeSet {
    bytes: Box<[u8]>,
    hash: u64,
}

impl std::hash::Hash for AttributeSet {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl std::fmt::Debug for AttributeSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl AttributeSet {
    /// Builds an owned set from a borrowed list that is already sorted by key, with its
    /// [`hash_attrs`].
    pub fn from_sorted(attrs: &AttrsRef<'_>, hash: u64) -> Self {
        debug_assert!(
            attrs.windows(2).all(|w| w[0].0 < w[1].0),
            "unsorted attributes"
        );
        let mut bytes = vec![0; attrs_len(attrs)].into_boxed_slice();
        let mut at = 0;
        for (k, v) in attrs {
            write_pair(&mut bytes, &mut at, k, *v);
        }
        Self { bytes, hash }
    }

    /// Builds a set from unsorted owned pairs; later duplicates win.
    pub fn from_pairs(mut pairs: Vec<(Arc<str>, Value)>) -> Self {
        pairs.reverse();
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        pairs.dedup_by(|later, earlier| later.0 == earlier.0);
        let borrowed: Vec<_> = pairs.iter().map(|(k, v)| (&**k, v.as_ref())).collect();
        Self::from_sorted(&borrowed, hash_attrs(&borrowed))
    }

    /// The empty set.
    pub fn empty() -> Self {
        Self::from_sorted(&[], hash_attrs(&[]))
    }

    /// The precomputed hash of this set.
    pub fn hash(&self) -> u64 {
        self.hash
    }

    /// Iterates over the key-value pairs in key order.
    pub fn iter(&self) -> Pairs<'_> {
        Pairs(&self.bytes)
    }

    /// The hash of the set, computed once when it was made.
    pub fn fingerprint(&self) -> u64 {
        self.hash
    }

    /// The bytes the set takes, encoded.
    pub fn encoded_len(&self) -> usize {
        self.bytes.len()
    }

    /// The number of attributes.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// The value of `key`, if the set has it.
    pub fn get(&self, key: &str) -> Option<ValueRef<'_>> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// Whether the set has no attributes.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Whether this set equals a borrowed list, compared byte for byte as it is stored.
    pub fn matches(&self, attrs: &AttrsRef<'_>) -> bool {
        let mut rest = Pairs(&self.bytes);
        attrs.iter().all(|(k, v)| rest.next_is(k, *v)) && rest.0.is_empty()
    }
}

/// Hashes a sorted borrowed list, the key of its series.
///
/// Only the values are hashed: the keys of one instrument's series seldom differ, and
/// equality compares them anyway.
pub fn hash_attrs(attrs: &AttrsRef<'_>) -> u64 {
    let mut h = foldhash::fast::FixedState::with_seed(0x0077_6173_6d74_656c).build_hasher();
    for (_, v) in attrs {
        match v {
            ValueRef::Str(s) => h.write(s.as_bytes()),
            ValueRef::Bool(b) => h.write_u8(u8::from(*b)),
            ValueRef::Int(i) => h.write_i64(*i),
            ValueRef::Double(d) => h.write_u64(d.to_bits()),
        }
    }
    h.finish()
}

/// The pairs of an [`AttributeSet`], decoded from its bytes.
#[derive(Debug, Clone)]
pub struct Pairs<'a>(&'a [u8]);

impl<'a> Pairs<'a> {
    fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head
    }

    fn varint(&mut self) -> usize {
        let mut n = 0;
        let mut shift = 0;
        loop {
            let byte = self.take(1)[0];
            n |= usize::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return n;
            }
            shift += 7;
        }
    }

    fn str(&mut self) -> &'a str {
        let len = self.varint();
        // The bytes were copied from a `&str` by `write_pair`.
        std::str::from_utf8(self.take(len)).unwrap_or_default()
    }

    fn eight(&mut self) -> [u8; 8] {
        self.take(8).try_into().unwrap_or_default()
    }
}

/// Equality of two slices of one length, inline for the short keys and values attributes
/// usually are (a library `memcmp` call costs more than the comparison).
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    fn word<const N: usize>(s: &[u8], at: usize) -> [u8; N] {
        s[at..at + N].try_into().unwrap_or([0; N])
    }
    let n = a.len();
    match n {
        0 => true,
        1..=3 => a[0] == b[0] && a[n / 2] == b[n / 2] && a[n - 1] == b[n - 1],
        4..=7 => word::<4>(a, 0) == word::<4>(b, 0) && word::<4>(a, n - 4) == word::<4>(b, n - 4),
        8..=16 => word::<8>(a, 0) == word::<8>(b, 0) && word::<8>(a, n - 8) == word::<8>(b, n - 8),
        _ => a == b,
    }
}

impl Pairs<'_> {
    /// Whether the next encoded bytes are `bytes`, with their length; consumes them if so.
    fn bytes_are(&mut self, bytes: &[u8]) -> bool {
        let Some((&len, rest)) = self.0.split_first() else {
            return false;
        };
        let len = if len < 0x80 {
            self.0 = rest;
            usize::from(len)
        } else {
            self.varint()
        };
        if len != bytes.len() || self.0.len() < len {
            return false;
        }
        same_bytes(self.take(len), bytes)
    }

    /// Whether the next pair is `key` = `value`; consumes it if so.
    fn next_is(&mut self, key: &str, value: ValueRef<'_>) -> bool {
        if !self.bytes_are(key.as_bytes()) {
            return false;
        }
        let (tag, eight) = match value {
            ValueRef::Str(s) => return self.take_tag(STR) && self.bytes_are(s.as_bytes()),
            ValueRef::Bool(b) => return self.take_tag(BOOL) && self.take_tag(u8::from(b)),
            ValueRef::Int(i) => (INT, i.to_le_bytes()),
            ValueRef::Double(d) => (DOUBLE, d.to_bits().to_le_bytes()),
        };
        self.take_tag(tag) && self.0.len() >= 8 && self.take(8) == eight
    }

    fn take_tag(&mut self, tag: u8) -> bool {
        match self.0.split_first() {
            Some((&first, rest)) if first == tag => {
                self.0 = rest;
                true
            }
            _ => false,
        }
    }
}

impl<'a> Iterator for Pairs<'a> {
    type Item = (&'a str, ValueRef<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.0.is_empty() {
            return None;
        }
        let key = self.str();
        let value = match self.take(1)[0] {
            STR => ValueRef::Str(self.str()),
            BOOL => ValueRef::Bool(self.take(1)[0] != 0),
            INT => ValueRef::Int(i64::from_le_bytes(self.eight())),
            _ => ValueRef::Double(f64::from_bits(u64::from_le_bytes(self.eight()))),
        };
        Some((key, value))
    }
}

impl ValueRef<'_> {
    /// The value as OTLP carries it.
    pub fn to_otlp(self) -> AnyValue {
        let value = match self {
            ValueRef::Str(s) => any_value::Value::StringValue(s.to_owned()),
            ValueRef::Bool(b) => any_value::Value::BoolValue(b),
            ValueRef::Int(i) => any_value::Value::IntValue(i),
            ValueRef::Double(d) => any_value::Value::DoubleValue(d),
        };
        AnyValue { value: Some(value) }
    }
}

impl AttributeSet {
    /// The set as OTLP key-values.
    pub fn to_otlp(&self) -> Vec<KeyValue> {
        self.iter()
            .map(|(k, v)| KeyValue {
                key: k.to_owned(),
                value: Some(v.to_otlp()),
                ..Default::default()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(attrs: &AttrsRef<'_>) -> AttributeSet {
        AttributeSet::from_sorted(attrs, hash_attrs(attrs))
    }

    #[test]
    fn owned_and_borrowed_forms_hash_and_compare_equal() {
        let borrowed = [("a", ValueRef::Str("x")), ("b", ValueRef::Int(3))];
        let owned = set(&borrowed);
        assert!(owned.matches(&borrowed));
        let rebuilt = AttributeSet::from_pairs(vec![
            (Arc::from("b"), Value::Int(3)),
            (Arc::from("a"), Value::Str(Arc::from("x"))),
        ]);
        assert_eq!(rebuilt.hash(), hash_attrs(&borrowed));
        assert_eq!(rebuilt, owned);
        assert_eq!(owned.iter().collect::<Vec<_>>(), borrowed);
    }

    #[test]
    fn every_value_kind_and_long_strings_round_trip() {
        let long = "v".repeat(300);
        let attrs = [
            ("a", ValueRef::Bool(true)),
            ("b", ValueRef::Double(-0.0)),
            ("c", ValueRef::Int(i64::MIN)),
            ("d", ValueRef::Str("")),
            ("e", ValueRef::Str(&long)),
        ];
        let owned = set(&attrs);
        assert_eq!(owned.iter().collect::<Vec<_>>(), attrs);
        assert!(owned.matches(&attrs));
        assert_eq!(owned.len(), 5);
        assert!(AttributeSet::empty().is_empty() && AttributeSet::empty().matches(&[]));
        // Doubles compare bit for bit: 0.0 and -0.0 are different series.
        assert!(!set(&[("b", ValueRef::Double(0.0))]).matches(&[("b", ValueRef::Double(-0.0))]));
    }

    #[test]
    fn different_values_or_keys_do_not_match() {
        let a = set(&[("a", ValueRef::Str("x"))]);
        assert!(!a.matches(&[("a", ValueRef::Str("y"))]));
        assert!(!a.matches(&[("b", ValueRef::Str("x"))]));
        assert!(!a.matches(&[]));
        assert!(!a.matches(&[("a", ValueRef::Str("x")), ("b", ValueRef::Int(1))]));
        assert!(!set(&[("a", ValueRef::Int(1))]).matches(&[("a", ValueRef::Str("1"))]));
        assert!(!set(&[("a", ValueRef::Bool(true))]).matches(&[("a", ValueRef::Bool(false))]));
        // Every length class of the inline comparison, differing only in the middle or at the end.
        for n in [1, 2, 3, 5, 8, 12, 16, 17, 40] {
            let x = "x".repeat(n);
            let mut y = x.clone().into_bytes();
            y[n / 2] = b'y';
            let y = String::from_utf8(y).expect("ascii");
            assert!(set(&[("k", ValueRef::Str(&x))]).matches(&[("k", ValueRef::Str(&x))]));
            assert!(
                !set(&[("k", ValueRef::Str(&x))]).matches(&[("k", ValueRef::Str(&y))]),
                "{n}"
            );
        }
        // A string key/value split differently must not match.
        assert!(!set(&[("ab", ValueRef::Str("c"))]).matches(&[("a", ValueRef::Str("bc"))]));
        assert_ne!(
            hash_attrs(&[("a", ValueRef::Str("x"))]),
            hash_attrs(&[("a", ValueRef::Str("y"))])
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
