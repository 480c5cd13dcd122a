//! Stream views from the configuration: which instruments they select, and what they change
//! about the metric streams those instruments produce.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::attributes::{AttributeSet, AttrsRef};
use super::view::{AttributeView, Mapping, Pattern};
use super::{Descriptor, InstrumentKind};

/// The aggregation a view can choose for the instruments it selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregation {
    /// Record nothing; the metric is not exported.
    Drop,
    /// The arithmetic sum of measurements.
    Sum,
    /// The last measurement.
    LastValue,
    /// Explicit-bucket histogram (bounds from `buckets`, else the instrument's).
    ExplicitBucketHistogram,
    /// Base-2 exponential histogram.
    Base2ExponentialBucketHistogram,
}

/// One `[[metrics.views]]` entry: selection criteria and what to change.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StreamView {
    /// Instrument name, `*` matching any run of characters (default: every instrument).
    pub instrument: Option<String>,
    /// Only instruments of this kind.
    pub kind: Option<InstrumentKind>,
    /// Only instruments of this scope (`wasmtel.derive`, `wasmtel`).
    pub scope: Option<String>,
    /// The metric's new name (only for a view naming one instrument exactly).
    pub rename: Option<String>,
    /// The metric's new description.
    pub description: Option<String>,
    /// Attribute keys to keep; the others are removed from every series.
    pub attribute_keys: Option<Vec<String>>,
    /// The aggregation to use instead of the instrument kind's default.
    pub aggregation: Option<Aggregation>,
    /// Histogram bucket boundaries, replacing the instrument's advisory ones.
    pub buckets: Option<Vec<f64>>,
    /// Distinct attribute sets before overflow, replacing the global limit.
    pub cardinality_limit: Option<usize>,
}

/// A view that cannot work as configured.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StreamViewError {
    /// A rename on a wildcard selection would give several instruments one name.
    #[error("view {0}: `rename` needs `instrument` to name exactly one instrument, without `*`")]
    WildcardRename(usize),
    /// Bucket boundaries not finite and strictly increasing.
    #[error("view {0}: `buckets` must be finite and strictly increasing")]
    BadBuckets(usize),
    /// A view that changes nothing.
    #[error(
        "view {0} changes nothing: give rename, description, attribute_keys, aggregation, buckets or cardinality_limit"
    )]
    Empty(usize),
}

impl StreamView {
    /// Checks the view (number `index` in the configuration, from 1) for mistakes that would only show later.
    pub fn validate(&self, index: usize) -> Result<(), StreamViewError> {
        let wildcard = self.instrument.as_deref().is_none_or(|i| i.contains('*'));
        if self.rename.is_some() && wildcard {
            return Err(StreamViewError::WildcardRename(index));
        }
        if let Some(b) = &self.buckets
            && (b.iter().any(|x| !x.is_finite()) || b.windows(2).any(|w| w[0] >= w[1]))
        {
            return Err(StreamViewError::BadBuckets(index));
        }
        let changes = self.rename.is_some()
            || self.description.is_some()
            || self.attribute_keys.is_some()
            || self.aggregation.is_some()
            || self.buckets.is_some()
            || self.cardinality_limit.is_some();
        if !changes {
            return Err(StreamViewError::Empty(index));
        }
        Ok(())
    }

    /// Whether the view selects the instrument `descriptor` describes.
    pub fn selects(&self, descriptor: &Descriptor) -> bool {
        self.instrument
            .as_deref()
            .is_none_or(|p| Pattern::new(p).matches(&descriptor.name))
            && self.kind.is_none_or(|k| k == descriptor.kind)
            && self
                .scope
                .as_deref()
                .is_none_or(|s| *s == *descriptor.scope.name)
    }

    /// The descriptor the selected instrument's stream gets.
    pub fn describe(&self, mut descriptor: Descriptor) -> Descriptor {
        if let Some(name) = &self.rename {
            descriptor.name.clone_from(name);
        }
        if let Some(text) = &self.description {
            descriptor.description.clone_from(text);
        }
        descriptor
    }

    /// The attribute filter the view asks for, if any.
    pub fn attribute_filter(&self) -> Option<Arc<dyn AttributeView>> {
        let keys = self.attribute_keys.as_ref()?;
        Some(Arc::new(KeepKeys(
            keys.iter().map(|k| Arc::from(k.as_str())).collect(),
        )))
    }
}

/// Warnings about views that disagree: two renaming to one name, or one that an earlier
/// catch-all view leaves nothing to select.
pub fn conflicts(views: &[StreamView]) -> Vec<String> {
    let mut out = Vec::new();
    for (i, view) in views.iter().enumerate() {
        if let Some(name) = &view.rename {
            for (j, earlier) in views[..i].iter().enumerate() {
                if earlier.rename.as_deref() == Some(name) {
                    out.push(format!(
                        "views {} and {} both rename to `{name}`",
                        j + 1,
                        i + 1
                    ));
                }
            }
        }
        let catch_all = |v: &StreamView| {
            v.instrument.as_deref().is_none_or(|p| p == "*")
                && v.kind.is_none()
                && v.scope.is_none()
        };
        if let Some(j) = views[..i].iter().position(catch_all) {
            out.push(format!(
                "view {} never applies: view {} selects every instrument first",
                i + 1,
                j + 1
            ));
        }
    }
    out
}

/// Keeps only the listed attribute keys.
struct KeepKeys(Box<[Arc<str>]>);

impl AttributeView for KeepKeys {
    fn map(&self, _: &Descriptor, attrs: &AttrsRef<'_>) -> Mapping {
        if attrs
            .iter()
            .all(|(k, _)| self.0.iter().any(|keep| &**keep == *k))
        {
            return Mapping::Keep;
        }
        Mapping::Replace(AttributeSet::from_pairs(
            attrs
                .iter()
                .filter(|(k, _)| self.0.iter().any(|keep| &**keep == *k))
                .map(|(k, v)| (Arc::from(*k), v.to_owned_value()))
                .collect(),
        ))
    }

    fn generation(&self) -> u64 {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(toml: &str) -> StreamView {
        toml::from_str(toml).expect("view parses")
    }

    fn desc(name: &str, kind: InstrumentKind, scope: &'static str) -> Descriptor {
        Descriptor {
            name: name.into(),
            unit: String::new(),
            description: "old".into(),
            kind,
            scope: scope.into(),
        }
    }

    #[test]
    fn selection_by_name_kind_and_scope() {
        let v = view(
            "instrument = \"gen_ai.*\"\nkind = \"histogram\"\nscope = \"wasmtel.derive\"\ndescription = \"d\"",
        );
        assert!(v.selects(&desc(
            "gen_ai.x",
            InstrumentKind::Histogram,
            "wasmtel.derive"
        )));
        assert!(!v.selects(&desc("gen_ai.x", InstrumentKind::Counter, "wasmtel.derive")));
        assert!(!v.selects(&desc("gen_ai.x", InstrumentKind::Histogram, "wasmtel")));
        assert!(!v.selects(&desc("http.x", InstrumentKind::Histogram, "wasmtel.derive")));
        let d = v.describe(desc("gen_ai.x", InstrumentKind::Histogram, "s"));
        assert_eq!((d.name.as_str(), d.description.as_str()), ("gen_ai.x", "d"));
    }

    #[test]
    fn disagreeing_views_are_reported() {
        let views = [
            view("instrument = \"a\"\nrename = \"x\""),
            view("instrument = \"b\"\nrename = \"x\""),
            view("cardinality_limit = 10"),
            view("instrument = \"c\"\ndescription = \"d\""),
        ];
        assert_eq!(
            conflicts(&views),
            [
                "views 1 and 2 both rename to `x`",
                "view 4 never applies: view 3 selects every instrument first"
            ]
        );
        assert!(conflicts(&views[..1]).is_empty());
    }

    #[test]
    fn mistakes_are_named() {
        assert_eq!(
            view("instrument = \"a.*\"\nrename = \"b\"").validate(2),
            Err(StreamViewError::WildcardRename(2))
        );
        assert_eq!(
            view("buckets = [1.0, 1.0]").validate(1),
            Err(StreamViewError::BadBuckets(1))
        );
        assert_eq!(
            view("instrument = \"a\"").validate(3).map_err(|e| e.to_string()),
            Err("view 3 changes nothing: give rename, description, attribute_keys, aggregation, buckets or cardinality_limit".into())
        );
        assert!(
            view("instrument = \"a\"\nrename = \"b\"")
                .validate(1)
                .is_ok()
        );
    }
}
