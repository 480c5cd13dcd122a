//! OTLP key-value lists as the engine's attribute sets.

use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};

use super::attributes::{AttributeSet, ValueRef, hash_attrs};

/// The attribute set of an OTLP key-value list: later duplicates win, keys without a value are
/// left out, bytes become hex text, and arrays and maps their OTLP JSON text (as the Prometheus
/// compatibility rules render non-scalar values).
pub fn attribute_set(pairs: &[KeyValue]) -> AttributeSet {
    let mut spill = Vec::new();
    let attrs = borrowed(pairs, &mut spill);
    AttributeSet::from_sorted(&attrs, hash_attrs(&attrs))
}

/// The same attributes as [`attribute_set`], borrowed from the request and sorted by key; the
/// texts of non-scalar values are written into `spill` first.
pub fn borrowed<'a>(
    pairs: &'a [KeyValue],
    spill: &'a mut Vec<String>,
) -> Vec<(&'a str, ValueRef<'a>)> {
    let text = |v: &any_value::Value| match v {
        any_value::Value::BytesValue(b) => Some(const_hex::encode(b)),
        any_value::Value::ArrayValue(_) | any_value::Value::KvlistValue(_) => {
            Some(serde_json::to_string(v).unwrap_or_default())
        }
        _ => None,
    };
    spill.extend(
        pairs
            .iter()
            .filter_map(|kv| text(kv.value.as_ref()?.value.as_ref()?)),
    );
    let spill: &'a [String] = spill;
    let mut spilled = spill.iter();
    let mut out: Vec<(&'a str, ValueRef<'a>)> = pairs
        .iter()
        .filter_map(|kv| {
            let v = kv.value.as_ref()?.value.as_ref()?;
            let value = match v {
                any_value::Value::StringValue(s) => ValueRef::Str(s),
                any_value::Value::BoolValue(b) => ValueRef::Bool(*b),
                any_value::Value::IntValue(i) => ValueRef::Int(*i),
                any_value::Value::DoubleValue(d) => ValueRef::Double(*d),
                _ => ValueRef::Str(spilled.next()?),
            };
            Some((kv.key.as_str(), value))
        })
        .collect();
    // Later duplicates win: reverse, sort stably, keep the first of each key.
    out.reverse();
    out.sort_by(|a, b| a.0.cmp(b.0));
    out.dedup_by(|later, earlier| later.0 == earlier.0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::AnyValue;

    fn kv(key: &str, value: Option<any_value::Value>) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value }),
            ..Default::default()
        }
    }

    #[test]
    fn scalars_keep_their_type_and_the_rest_become_json() {
        let set = attribute_set(&[
            kv("s", Some(any_value::Value::StringValue("x".into()))),
            kv("i", Some(any_value::Value::IntValue(-4))),
            kv("b", Some(any_value::Value::BoolValue(true))),
            kv("d", Some(any_value::Value::DoubleValue(0.5))),
            kv("none", None),
            kv("s", Some(any_value::Value::StringValue("later".into()))),
            kv("bytes", Some(any_value::Value::BytesValue(vec![1, 2]))),
            kv(
                "list",
                Some(any_value::Value::ArrayValue(
                    opentelemetry_proto::tonic::common::v1::ArrayValue {
                        values: vec![AnyValue {
                            value: Some(any_value::Value::IntValue(1)),
                        }],
                    },
                )),
            ),
        ]);
        let pairs: Vec<String> = set.iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert_eq!(
            pairs[..5],
            [
                "b=true",
                "bytes=0102",
                "d=0.5",
                "i=-4",
                "list={\"arrayValue\":{\"values\":[{\"intValue\":\"1\"}]}}"
            ]
        );
        assert_eq!(set.get("s"), Some(ValueRef::Str("later")));
        assert_eq!(set.len(), 6, "the key without a value is left out");
    }
}
