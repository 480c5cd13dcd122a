//! Log records and spans into OTLP requests (`ExportLogsServiceRequest`,
//! `ExportTraceServiceRequest`), one `ResourceLogs`/`ResourceSpans` per run of one origin: framed
//! around their bytes as they arrived, or, when transforms rewrite them, decoded into the plugin
//! contract's batch, transformed and encoded again.

use std::sync::Arc;

use crate::model::Signal;
use crate::model::record::{Origin, Record, same_origin};
use crate::model::wire::{len_field_header, len_field_size};
use crate::plugins::Transforms;

/// Encodes log records or spans (`signal`), after the transforms, as one request; none when
/// nothing is left.
pub fn encode(signal: Signal, records: &[Record], transforms: &Transforms) -> Option<Vec<u8>> {
    if records.is_empty() {
        return None;
    }
    if !transforms.rewrite(signal) {
        return Some(frame(records));
    }
    let rewritten = transforms.records(signal, records);
    (!rewritten.is_empty()).then(|| frame(&rewritten))
}

/// The fields of `ExportLogsServiceRequest` and `ExportTraceServiceRequest`, nested, which
/// have the same numbers: resource_logs/spans; resource, scope_logs/spans; scope,
/// log_records/spans.
const RESOURCE_LOGS: u32 = 1;
const RESOURCE: u32 = 1;
const SCOPE_LOGS: u32 = 2;
const SCOPE: u32 = 1;
const LOG_RECORDS: u32 = 2;

/// Frames log records (or spans) into an `ExportLogsServiceRequest` (or
/// `ExportTraceServiceRequest`), copying each record's bytes once and building no message.
pub fn frame(records: &[Record]) -> Vec<u8> {
    let mut groups: Vec<(&Arc<Origin>, &[Record], usize)> = Vec::new();
    let mut start = 0;
    for (i, record) in records.iter().enumerate() {
        let next = records.get(i + 1);
        if next.is_none_or(|n| !same_origin(&n.origin, &record.origin)) {
            let run = &records[start..=i];
            let scope_logs = len_field_size(SCOPE, record.origin.scope.len())
                + run
                    .iter()
                    .map(|r| len_field_size(LOG_RECORDS, r.bytes.len()))
                    .sum::<usize>();
            groups.push((&record.origin, run, scope_logs));
            start = i + 1;
        }
    }
    let resource_logs = |origin: &Origin, scope_logs: usize| {
        len_field_size(RESOURCE, origin.resource.len()) + len_field_size(SCOPE_LOGS, scope_logs)
    };
    let total: usize = groups
        .iter()
        .map(|(o, _, s)| len_field_size(RESOURCE_LOGS, resource_logs(o, *s)))
        .sum();
    let mut out = Vec::with_capacity(total);
    for (origin, run, scope_logs) in groups {
        len_field_header(&mut out, RESOURCE_LOGS, resource_logs(origin, scope_logs));
        len_field_header(&mut out, RESOURCE, origin.resource.len());
        out.extend_from_slice(&origin.resource);
        len_field_header(&mut out, SCOPE_LOGS, scope_logs);
        len_field_header(&mut out, SCOPE, origin.scope.len());
        out.extend_from_slice(&origin.scope);
        for record in run {
            len_field_header(&mut out, LOG_RECORDS, record.bytes.len());
            out.extend_from_slice(&record.bytes);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, any_value};
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    use prost::Message;

    use super::*;

    fn origin(scope: &str) -> Arc<Origin> {
        Arc::new(Origin::new(
            &Resource::default(),
            &InstrumentationScope {
                name: scope.into(),
                ..Default::default()
            },
        ))
    }

    #[test]
    fn framed_log_records_are_what_the_types_encode() {
        let (a, b) = (origin("a"), origin("b"));
        let typed = |body: &str| LogRecord {
            body: Some(AnyValue {
                value: Some(any_value::Value::StringValue(body.repeat(100))),
            }),
            severity_number: 9,
            ..Default::default()
        };
        let mut records = Record::encode_all(&[typed("x"), typed("y")], &a);
        records.extend(Record::encode_all(&[typed("z")], &b));
        records.extend(Record::encode_all(&[typed("w")], &a));
        let resource_logs = |origin: &Arc<Origin>, log_records| ResourceLogs {
            resource: Some(origin.resource()),
            scope_logs: vec![ScopeLogs {
                scope: Some(origin.scope()),
                log_records,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        };
        let want = ExportLogsServiceRequest {
            resource_logs: vec![
                resource_logs(&a, vec![typed("x"), typed("y")]),
                resource_logs(&b, vec![typed("z")]),
                resource_logs(&a, vec![typed("w")]),
            ],
        };
        assert_eq!(frame(&records), want.encode_to_vec());
        let none = Transforms::default();
        assert_eq!(
            encode(Signal::Logs, &records, &none),
            Some(want.encode_to_vec())
        );
        assert_eq!(encode(Signal::Logs, &[], &none), None);
    }

    #[test]
    fn framed_spans_are_what_the_types_encode() {
        let (a, b) = (origin("a"), origin("b"));
        let span = |name: &str| Span {
            trace_id: vec![7; 16],
            span_id: vec![1; 8],
            name: name.repeat(50),
            start_time_unix_nano: 1,
            end_time_unix_nano: 2,
            ..Default::default()
        };
        let mut spans = Record::encode_all(&[span("x"), span("y")], &a);
        spans.extend(Record::encode_all(&[span("z")], &b));
        let resource_spans = |origin: &Arc<Origin>, spans| ResourceSpans {
            resource: Some(origin.resource()),
            scope_spans: vec![ScopeSpans {
                scope: Some(origin.scope()),
                spans,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        };
        let want = ExportTraceServiceRequest {
            resource_spans: vec![
                resource_spans(&a, vec![span("x"), span("y")]),
                resource_spans(&b, vec![span("z")]),
            ],
        };
        let none = Transforms::default();
        assert_eq!(
            encode(Signal::Traces, &spans, &none),
            Some(want.encode_to_vec())
        );
        assert_eq!(encode(Signal::Traces, &[], &none), None);
    }
}
