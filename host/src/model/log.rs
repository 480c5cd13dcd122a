//! Raw events as OpenTelemetry log records, encoded once as OTLP bytes when they are accepted.

use std::sync::Arc;

use bytes::Bytes;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;

use super::event::{AnyValue, Event};
use super::record::{Origin, Record};
use super::resource::Resource;
use super::wire::Reverse;

/// The instrumentation scope of forwarded events.
pub const EVENTS_SCOPE: &str = "wasmtel.events";

/// `AnyValue` fields.
mod any {
    pub(super) const STRING: u32 = 1;
    pub(super) const BOOL: u32 = 2;
    pub(super) const INT: u32 = 3;
    pub(super) const DOUBLE: u32 = 4;
    pub(super) const ARRAY: u32 = 5;
    pub(super) const MAP: u32 = 6;
}

/// Writes `v` as the fields of an `AnyValue` (reversed).
fn write_any(w: &mut Reverse, v: &AnyValue<'_>) {
    match v {
        AnyValue::Str(s) => w.bytes_always(any::STRING, s.as_bytes()),
        AnyValue::Bool(b) => w.varint_always(any::BOOL, u64::from(*b)),
        AnyValue::Int(i) => w.varint_always(any::INT, *i as u64),
        AnyValue::Double(d) => w.fixed64_always(any::DOUBLE, d.to_bits()),
        AnyValue::Array(items) => w.message(any::ARRAY, |w| {
            for item in items.iter().rev() {
                w.message(1, |w| write_any(w, item));
            }
        }),
        AnyValue::Map(pairs) => w.message(any::MAP, |w| {
            for (k, v) in pairs.iter().rev() {
                w.message(1, |w| write_pair(w, k, v));
            }
        }),
        AnyValue::Null => {}
    }
}

/// Writes the fields of a `KeyValue` (reversed).
fn write_pair(w: &mut Reverse, key: &str, value: &AnyValue<'_>) {
    w.message(2, |w| write_any(w, value));
    w.bytes_always(1, key.as_bytes());
}

/// Writes one event as the fields of a `LogRecord` (reversed): event name, times, trace
/// context, every field as an attribute.
///
/// Known fields use the attribute names of the metrics (`gen_ai.request.model`,
/// `inference.engine`, `inference.device.id`, `inference.org.id`,
/// `inference.request.id`, `inference.stream`, `error.type`); each measurement
/// becomes `inference.metric.<name>`; free-form attributes keep their keys.
/// Failed requests are logged at ERROR (17), the rest at INFO (9).
fn write_event(w: &mut Reverse, event: &Event<'_>, observed_unix_nano: u64) {
    w.bytes(12, event.event_type.as_bytes());
    w.fixed64(11, observed_unix_nano);
    w.bytes(10, event.span_id.as_ref().map_or(&[][..], |s| &s[..]));
    w.bytes(9, event.trace_id.as_ref().map_or(&[][..], |t| &t[..]));
    for (k, v) in event.attributes.0.iter().rev() {
        w.message(6, |w| write_pair(w, k, v));
    }
    let mut name = String::new();
    for (metric, v) in event.metrics.0.iter().rev() {
        name.clear();
        name.push_str("inference.metric.");
        name.push_str(metric);
        w.message(6, |w| write_pair(w, &name, &AnyValue::Double(*v)));
    }
    if let Some(stream) = event.stream {
        w.message(6, |w| {
            write_pair(w, "inference.stream", &AnyValue::Bool(stream));
        });
    }
    for (key, value) in [
        ("error.type", &event.error),
        ("inference.request.id", &event.request_id),
        ("inference.org.id", &event.org_id),
        ("inference.device.id", &event.device_id),
        ("inference.engine", &event.engine),
        ("gen_ai.request.model", &event.model),
    ] {
        if let Some(v) = value {
            w.message(6, |w| {
                w.message(2, |w| w.bytes_always(any::STRING, v.as_bytes()));
                w.bytes_always(1, key.as_bytes());
            });
        }
    }
    w.message(5, |w| {
        w.bytes_always(any::STRING, event.event_type.as_bytes())
    });
    let (severity, text) = match event.error {
        Some(_) => (17, "ERROR"),
        None => (9, "INFO"),
    };
    w.bytes(3, text.as_bytes());
    w.varint(2, severity);
    w.fixed64(1, event.time_unix_nano.unwrap_or(0));
}

/// The events of one body as log records of `origin`, encoded into one buffer that every
/// record shares.
pub fn encode_events(events: &[Event<'_>], origin: &Arc<Origin>, observed: u64) -> Vec<Record> {
    let mut w = Reverse::with_capacity(events.len() * 256);
    let mut ends = Vec::with_capacity(events.len());
    for event in events.iter().rev() {
        write_event(&mut w, event, observed);
        ends.push(w.len());
    }
    let bytes = Bytes::from(w.finish());
    // Written last to first and turned around: the first event's record is at the front.
    let mut out = Vec::with_capacity(events.len());
    let mut from = 0;
    for j in (0..ends.len()).rev() {
        let len = ends[j] - if j == 0 { 0 } else { ends[j - 1] };
        out.push(Record {
            origin: origin.clone(),
            bytes: bytes.slice(from..from + len),
        });
        from += len;
    }
    out
}

impl Origin {
    /// The origin of forwarded events of `tenant`, if a tenant sent them: the host resource
    /// (with the tenant key, for a tenant) and the events scope.
    pub fn events(res: &Resource, tenant: Option<Arc<str>>) -> Self {
        let scope = InstrumentationScope {
            name: EVENTS_SCOPE.to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            ..Default::default()
        };
        Self {
            tenant,
            ..Self::new(&res.to_otlp(), &scope)
        }
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::common::v1::{
        AnyValue as ProtoAny, ArrayValue, KeyValue, KeyValueList, any_value::Value,
    };

    use super::*;
    use opentelemetry_proto::tonic::logs::v1::LogRecord;
    use prost::Message;

    use crate::model::record::runs_of;

    /// The record as the OTLP types build it: what [`encode_events`] must write, byte for byte.
    fn reference(event: &Event<'_>, observed: u64) -> LogRecord {
        fn text(s: &str) -> ProtoAny {
            ProtoAny {
                value: Some(Value::StringValue(s.to_owned())),
            }
        }
        fn kv(key: &str, value: ProtoAny) -> KeyValue {
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
                    values: pairs.iter().map(|(k, v)| kv(k, any(v))).collect(),
                }),
                AnyValue::Null => return ProtoAny { value: None },
            };
            ProtoAny { value: Some(value) }
        }
        let mut attributes = Vec::new();
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
            attributes.push(kv("inference.stream", any(&AnyValue::Bool(stream))));
        }
        for (name, v) in &event.metrics.0 {
            let key = format!("inference.metric.{name}");
            attributes.push(kv(&key, any(&AnyValue::Double(*v))));
        }
        for (k, v) in &event.attributes.0 {
            attributes.push(kv(k, any(v)));
        }
        let (severity, severity_text) = match event.error {
            Some(_) => (17, "ERROR"),
            None => (9, "INFO"),
        };
        LogRecord {
            time_unix_nano: event.time_unix_nano.unwrap_or(0),
            observed_time_unix_nano: observed,
            severity_number: severity,
            severity_text: severity_text.to_owned(),
            body: Some(text(&event.event_type)),
            attributes,
            trace_id: event.trace_id.map(|t| t.to_vec()).unwrap_or_default(),
            span_id: event.span_id.map(|s| s.to_vec()).unwrap_or_default(),
            event_name: event.event_type.to_string(),
            ..Default::default()
        }
    }

    #[test]
    fn events_are_written_as_the_otlp_types_would_encode_them() {
        let bodies = [
            r#"{"event_type":"generation_completed","timestamp":"2026-11-01T12:00:00.5Z","model":"m1","engine":"vllm","device_id":"d","org_id":"o","request_id":"r-1","stream":true,"trace_id":"0af7651916cd43dd8448eb211c80319c","span_id":"b7ad6b7169203331","metrics":{"total_duration_ms":12.5,"output_tokens":0},"attributes":{"user":"u1","n":-3,"ok":false,"list":[1,"two",null,{"deep":[true]}],"none":null}}"#,
            r#"{"event_type":"chunk_produced"}"#,
            r#"{"event_type":"generation_completed","error":"timeout","model":"ünïcødé"}"#,
        ];
        let events: Vec<Event<'_>> = bodies
            .iter()
            .map(|b| serde_json::from_str(b).expect("event"))
            .collect();
        let origin = Arc::new(Origin::events(
            &Resource::from_attributes(crate::model::attributes::AttributeSet::from_pairs(
                Vec::new(),
            )),
            None,
        ));
        let records = encode_events(&events, &origin, 42);
        assert_eq!(records.len(), 3);
        for (event, record) in events.iter().zip(&records) {
            assert_eq!(record.bytes, reference(event, 42).encode_to_vec());
            assert!(Arc::ptr_eq(&record.origin, &origin));
        }
        // One buffer for the whole body.
        assert_eq!(
            records[1].bytes.as_ptr() as usize,
            records[0].bytes.as_ptr() as usize + records[0].bytes.len()
        );
        let typed: Vec<LogRecord> = records.iter().map(Record::decode::<LogRecord>).collect();
        let again = Record::encode_all(&typed, &origin);
        assert!(again.iter().zip(&records).all(|(a, b)| a.bytes == b.bytes));
        assert_eq!(runs_of(&records).count(), 1);
    }
}
