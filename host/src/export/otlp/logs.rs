//! Log records into OTLP `ExportLogsServiceRequest`s, one `ResourceLogs` per run of records
//! from one origin: framed around the records' bytes as they are, or, when transforms rewrite
//! them, decoded, transformed and encoded again.

use std::sync::Arc;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use prost::Message;

use crate::model::record::{Origin, Record, runs};
use crate::plugins::{Transforms, convert};

/// Encodes `records`, after the transforms, as one request; none when nothing is left.
pub fn encode(records: &[Record], transforms: &Transforms) -> Option<Vec<u8>> {
    if records.is_empty() {
        return None;
    }
    if transforms.is_empty() {
        return Some(super::frame(records));
    }
    let runs = transformed(transforms, runs(records));
    (!runs.is_empty()).then(|| request(runs).encode_to_vec())
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
        assert_eq!(super::super::frame(&records), want.encode_to_vec());
        assert_eq!(
            encode(&records, &Transforms::default()),
            Some(want.encode_to_vec())
        );
        assert_eq!(encode(&[], &Transforms::default()), None);
    }
}
