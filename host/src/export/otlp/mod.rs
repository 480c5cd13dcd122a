//! OTLP/HTTP push (protobuf): encoders for metrics and logs, and the HTTP client.

pub mod client;
pub mod exporter;
pub mod logs;
pub mod metrics;
pub mod wire;

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource as ProtoResource;

use crate::model::attributes::{AttributeSet, ValueRef};
use crate::model::resource::Resource;

/// The content type of OTLP/HTTP protobuf requests.
pub const PROTOBUF: &str = "application/x-protobuf";

/// Converts an attribute value to OTLP.
pub fn any_value(v: ValueRef<'_>) -> AnyValue {
    let value = match v {
        ValueRef::Str(s) => any_value::Value::StringValue(s.to_owned()),
        ValueRef::Bool(b) => any_value::Value::BoolValue(b),
        ValueRef::Int(i) => any_value::Value::IntValue(i),
        ValueRef::Double(d) => any_value::Value::DoubleValue(d),
    };
    AnyValue { value: Some(value) }
}

/// Converts an attribute set to OTLP key-values.
pub fn key_values(attrs: &AttributeSet) -> Vec<KeyValue> {
    attrs
        .iter()
        .map(|(k, v)| KeyValue {
            key: k.to_owned(),
            value: Some(any_value(v)),
            ..Default::default()
        })
        .collect()
}

/// Converts the host resource to OTLP.
pub fn resource(r: &Resource) -> ProtoResource {
    ProtoResource {
        attributes: key_values(r.attributes()),
        ..Default::default()
    }
}
