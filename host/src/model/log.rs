//! Log records: raw events as OpenTelemetry log records, and where records come from.

use std::sync::Arc;

use opentelemetry_proto::tonic::common::v1::{
    AnyValue as ProtoAny, ArrayValue, InstrumentationScope, KeyValue, KeyValueList,
    any_value::Value,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, SeverityNumber};
use opentelemetry_proto::tonic::resource::v1::Resource as ProtoResource;

use super::event::{AnyValue, Event};
use super::resource::Resource;

/// The instrumentation scope of forwarded events.
pub const EVENTS_SCOPE: &str = "wasmtel.events";

fn text(s: &str) -> ProtoAny {
    ProtoAny {
        value: Some(Value::StringValue(s.to_owned())),
    }
}

fn kv(key: impl Into<String>, value: ProtoAny) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(value),
        ..Default::default()
    }
}

fn any(v: &AnyValue<'_>) -> ProtoAny {
    let value = match v {
        AnyValue::Str(s) => Value::StringValue(s.to_string()),
        AnyValue::Bool(b) => Value::BoolValue(*b),
        AnyValue::Int(i) => Value::IntValue(*i),
        AnyValue::Double(d) => Value::DoubleValue(*d),
        AnyValue::Array(items) => Value::ArrayValue(ArrayValue {
            values: items.iter().map(any).collect(),
        }),
        AnyValue::Map(pairs) => Value::KvlistValue(KeyValueList {
            values: pairs.iter().map(|(k, v)| kv(k.as_ref(), any(v))).collect(),
        }),
        AnyValue::Null => return ProtoAny { value: None },
    };
    ProtoAny { value: Some(value) }
}

/// One event as a log record: event name, times, trace context, every field as an attribute.
///
/// Known fields use the attribute names of the metrics (`gen_ai.request.model`,
/// `inference.engine`, `inference.device.id`, `inference.org.id`,
/// `inference.request.id`, `inference.stream`, `error.type`); each measurement
/// becomes `inference.metric.<name>`; free-form attributes keep their keys.
/// Failed requests are logged at ERROR, the rest at INFO.
pub fn record(event: &Event<'_>, observed_unix_nano: u64) -> LogRecord {
    let mut attributes = Vec::with_capacity(8 + event.metrics.0.len() + event.attributes.0.len());
    for (key, value) in [
        ("gen_ai.request.model", &event.model),
        ("inference.engine", &event.engine),
        ("inference.device.id", &event.device_id),
        ("inference.org.id", &event.org_id),
        ("inference.request.id", &event.request_id),
        ("error.type", &event.error),
    ] {
        if let Some(v) = value {
            attributes.push(kv(key, text(v)));
        }
    }
    if let Some(stream) = event.stream {
        attributes.push(kv(
            "inference.stream",
            ProtoAny {
                value: Some(Value::BoolValue(stream)),
            },
        ));
    }
    for (name, v) in &event.metrics.0 {
        attributes.push(kv(
            format!("inference.metric.{name}"),
            ProtoAny {
                value: Some(Value::DoubleValue(*v)),
            },
        ));
    }
    for (k, v) in &event.attributes.0 {
        attributes.push(kv(k.as_ref(), any(v)));
    }
    let (severity, severity_text) = match event.error {
        Some(_) => (SeverityNumber::Error, "ERROR"),
        None => (SeverityNumber::Info, "INFO"),
    };
    LogRecord {
        time_unix_nano: event.time_unix_nano.unwrap_or(0),
        observed_time_unix_nano: observed_unix_nano,
        severity_number: severity as i32,
        severity_text: severity_text.to_owned(),
        body: Some(text(&event.event_type)),
        attributes,
        trace_id: event.trace_id.map(|t| t.to_vec()).unwrap_or_default(),
        span_id: event.span_id.map(|s| s.to_vec()).unwrap_or_default(),
        event_name: event.event_type.to_string(),
        ..Default::default()
    }
}

/// Where log records come from: their resource and instrumentation scope.
#[derive(Debug, Clone, PartialEq)]
pub struct Origin {
    /// The resource, as OTLP carries it.
    pub resource: ProtoResource,
    /// The instrumentation scope.
    pub scope: InstrumentationScope,
}

impl Origin {
    /// The origin of forwarded events: the host resource and the events scope.
    pub fn events(res: &Resource) -> Self {
        Self {
            resource: res.to_otlp(),
            scope: InstrumentationScope {
                name: EVENTS_SCOPE.to_owned(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
                ..Default::default()
            },
        }
    }
}

/// A log record with its origin, as log exporters queue it.
pub type Entry = (Arc<Origin>, LogRecord);

/// Splits entries into runs of one origin, in order.
pub fn runs(entries: &[Entry]) -> Vec<(Arc<Origin>, Vec<LogRecord>)> {
    let mut out: Vec<(Arc<Origin>, Vec<LogRecord>)> = Vec::new();
    for (origin, record) in entries {
        match out.last_mut() {
            Some((last, records)) if Arc::ptr_eq(last, origin) || **last == **origin => {
                records.push(record.clone());
            }
            _ => out.push((origin.clone(), vec![record.clone()])),
        }
    }
    out
}
