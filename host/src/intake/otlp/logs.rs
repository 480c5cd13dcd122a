//! Received OTLP logs as queue entries: each record with its resource and scope, checked.

use std::sync::Arc;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;

use super::Tally;
use crate::model::log::{Entry, Origin};

/// The records of `request` with their origins, leaving out (and counting) records whose trace
/// or span id has the wrong length.
pub fn entries(request: ExportLogsServiceRequest, tally: &mut Tally) -> Vec<Entry> {
    let mut out = Vec::new();
    for rl in request.resource_logs {
        let resource = rl.resource.unwrap_or_default();
        for sl in rl.scope_logs {
            let origin = Arc::new(Origin {
                resource: resource.clone(),
                scope: sl.scope.unwrap_or_default(),
            });
            for record in sl.log_records {
                if !matches!(record.trace_id.len(), 0 | 16) {
                    tally.reject(1, "a log record's trace id is not 16 bytes");
                } else if !matches!(record.span_id.len(), 0 | 8) {
                    tally.reject(1, "a log record's span id is not 8 bytes");
                } else {
                    tally.accept(1);
                    out.push((origin.clone(), record));
                }
            }
        }
    }
    out
}
