//! Log records into OTLP `ExportLogsServiceRequest`s, one `ResourceLogs` per run of records
//! from one origin: framed around the records' bytes as they are, or, when transforms rewrite
//! them, decoded, transformed and encoded again.

use std::sync::Arc;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use prost::Message;

use crate::model::log::{Origin, Record, runs, same_origin};
use crate::model::wire::{len_field_header, len_field_size};
use crate::plugins::{Transforms, convert};

/// Encodes `records`, after the transforms, as one request; none when nothing is left.
pub fn encode(records: &[Record], transforms: &Transforms) -> Option<Vec<u8>> {
    if records.is_empty() {
        return None;
    }
    if transforms.is_empty() {
        return Some(frame(records));
    }
    let runs = transformed(transforms, runs(records));
    (!runs.is_empty()).then(|| request(runs).encode_to_vec())
}

/// `ExportLogsServiceRequest` fields, nested: resource_logs; resource, scope_logs; scope, log_records.
const RESOURCE_LOGS: u32 = 1;
const RESOURCE: u32 = 1;
const SCOPE_LOGS: u32 = 2;
const SCOPE: u32 = 1;
const LOG_RECORDS: u32 = 2;

/// Frames records into a request, copying each record's bytes once and building no message.
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

/// Runs of log records after the transforms; a run is dropped if a fail-closed transform failed on it.
fn transformed(
    transforms: &Transforms,
    runs: Vec<(Arc<Origin>, Vec<LogRecord>)>,
) -> Vec<(Arc<Origin>, Vec<LogRecord>)> {
    runs.into_iter()
        .filter_map(|(origin, records)| {
            let batch = convert::otlp::log_batch(&records, &origin);
            let records = convert::otlp::log_records(&transforms.logs(batch)?);
            Some((origin, records))
        })
        .filter(|(_, records)| !records.is_empty())
        .collect()
}

/// Wraps runs of log records in one request, one `ResourceLogs` per run.
pub fn request(runs: Vec<(Arc<Origin>, Vec<LogRecord>)>) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: runs
            .into_iter()
            .map(|(origin, records)| ResourceLogs {
                resource: Some(origin.resource()),
                scope_logs: vec![ScopeLogs {
                    scope: Some(origin.scope()),
                    log_records: records,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, any_value};
    use opentelemetry_proto::tonic::resource::v1::Resource;

    use super::*;

    #[test]
    fn framed_bytes_are_what_the_types_encode() {
        let origin = |scope: &str| {
            Arc::new(Origin::new(
                &Resource::default(),
                &InstrumentationScope {
                    name: scope.into(),
                    ..Default::default()
                },
            ))
        };
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
        let want = request(vec![
            (a.clone(), vec![typed("x"), typed("y")]),
            (b, vec![typed("z")]),
            (a, vec![typed("w")]),
        ]);
        assert_eq!(frame(&records), want.encode_to_vec());
        assert_eq!(
            encode(&records, &Transforms::default()),
            Some(want.encode_to_vec())
        );
        assert_eq!(encode(&[], &Transforms::default()), None);
    }
}
