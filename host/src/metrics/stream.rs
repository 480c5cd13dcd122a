//! Stream views from the configuration: which instruments they select, and what they change
//! about the metric streams those instruments produce.

use std::sync::Arc;

use super::Descriptor;
use super::view::{AttributeView, Mapping, Pattern};
use crate::model::attributes::{AttributeSet, AttrsRef};
use crate::model::stream::StreamView;

/// What a configured stream view does to the instruments it selects.
pub trait StreamViewExt {
    /// Whether the view selects the instrument `descriptor` describes.
    fn selects(&self, descriptor: &Descriptor) -> bool;

    /// The descriptor the selected instrument's stream gets.
    fn describe(&self, descriptor: Descriptor) -> Descriptor;

    /// The attribute filter the view asks for, if any.
    fn attribute_filter(&self) -> Option<Arc<dyn AttributeView>>;
}

impl StreamViewExt for StreamView {
    fn selects(&self, descriptor: &Descriptor) -> bool {
        self.instrument
            .as_deref()
            .is_none_or(|p| Pattern::new(p).matches(&descriptor.name))
            && self.kind.is_none_or(|k| k == descriptor.kind)
            && self
                .scope
                .as_deref()
                .is_none_or(|s| *s == *descriptor.scope.name)
    }

    fn describe(&self, mut descriptor: Descriptor) -> Descriptor {
        if let Some(name) = &self.rename {
            descriptor.name.clone_from(name);
        }
        if let Some(text) = &self.description {
            descriptor.description.clone_from(text);
        }
        descriptor
    }

    fn attribute_filter(&self) -> Option<Arc<dyn AttributeView>> {
        let keys = self.attribute_keys.as_ref()?;
        Some(Arc::new(KeepKeys(
            keys.iter().map(|k| Arc::from(k.as_str())).collect(),
        )))
    }
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
    use crate::model::metric::InstrumentKind;
    use crate::model::stream::{StreamViewError, conflicts};

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
