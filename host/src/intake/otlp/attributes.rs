//! OTLP key-value lists as the engine's attribute sets.

use std::sync::Arc;

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};

use crate::metrics::attributes::{AttributeSet, Value};

/// The attribute set of an OTLP key-value list: later duplicates win, keys without a value are
/// left out, bytes become hex text, and arrays and maps their OTLP JSON text (as the Prometheus
/// compatibility rules render non-scalar values).
pub fn attribute_set(pairs: &[KeyValue]) -> AttributeSet {
    AttributeSet::from_pairs(
        pairs
            .iter()
            .filter_map(|kv| Some((Arc::from(kv.key.as_str()), value(kv.value.as_ref()?)?)))
            .collect(),
    )
}

fn value(v: &AnyValue) -> Option<Value> {
    Some(match v.value.as_ref()? {
        any_value::Value::StringValue(s) => Value::Str(Arc::from(s.as_str())),
        any_value::Value::BoolValue(b) => Value::Bool(*b),
        any_value::Value::IntValue(i) => Value::Int(*i),
        any_value::Value::DoubleValue(d) => Value::Double(*d),
        any_value::Value::BytesValue(b) => Value::Str(Arc::from(const_hex::encode(b).as_str())),
        other => Value::Str(Arc::from(
            serde_json::to_string(other).unwrap_or_default().as_str(),
        )),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::attributes::ValueRef;

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
