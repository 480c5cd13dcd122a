//! Encodes log records into OTLP `ExportLogsServiceRequest`s, one `ResourceLogs` per run of
//! records from one origin.

use std::sync::Arc;

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use prost::Message;

use crate::model::log::{Entry, Origin, runs};
use crate::plugins::{Transforms, convert};

/// Encodes `entries`, after the transforms, as one request; none when nothing is left.
pub fn encode(entries: &[Entry], transforms: &Transforms) -> Option<Bytes> {
    let runs = transformed(transforms, runs(entries));
    if runs.is_empty() {
        return None;
    }
    Some(Bytes::from(request(runs).encode_to_vec()))
}

/// Runs of log records after the transforms; a run is dropped if a fail-closed transform failed on it.
fn transformed(
    transforms: &Transforms,
    runs: Vec<(Arc<Origin>, Vec<LogRecord>)>,
) -> Vec<(Arc<Origin>, Vec<LogRecord>)> {
    if transforms.is_empty() {
        return runs;
    }
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
                resource: Some(origin.resource.clone()),
                scope_logs: vec![ScopeLogs {
                    scope: Some(origin.scope.clone()),
                    log_records: records,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            })
            .collect(),
    }
}
