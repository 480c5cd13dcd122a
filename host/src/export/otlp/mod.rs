//! OTLP encoders: metrics straight from the engine's series into protobuf, log records and
//! spans framed around their bytes.

pub mod logs;
pub mod metrics;
pub mod traces;

use std::sync::Arc;

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

use crate::config::Protocol;
use crate::model::Signal;
use crate::model::record::{Origin, Record, same_origin};
use crate::model::wire::{len_field_header, len_field_size};

/// How one signal's OTLP requests go on the wire: their protocol, and whether they are gzipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wire {
    /// The signal.
    pub signal: Signal,
    /// The protocol.
    pub protocol: Protocol,
    /// Whether bodies are gzipped (gRPC compresses its messages itself, so its bodies never are).
    pub gzip: bool,
}

impl Wire {
    /// An encoded request as it goes on the wire: protobuf, or OTLP/JSON, gzipped or not.
    pub fn body(self, request: Vec<u8>) -> Bytes {
        let request = match self.protocol {
            Protocol::HttpJson => json(self.signal, &request),
            Protocol::HttpProtobuf | Protocol::Grpc => request,
        };
        let gzip = self.gzip && self.protocol != Protocol::Grpc;
        Bytes::from(if gzip { super::gzip(&request) } else { request })
    }

    /// The content type of its HTTP bodies.
    pub fn content_type(self) -> &'static str {
        match self.protocol {
            Protocol::HttpJson => "application/json",
            Protocol::HttpProtobuf | Protocol::Grpc => "application/x-protobuf",
        }
    }
}

/// An encoded export request of `signal` in OTLP/JSON.
fn json(signal: Signal, protobuf: &[u8]) -> Vec<u8> {
    let encoded = match signal {
        Signal::Metrics => {
            ExportMetricsServiceRequest::decode(protobuf).map(|r| serde_json::to_vec(&r))
        }
        Signal::Logs => ExportLogsServiceRequest::decode(protobuf).map(|r| serde_json::to_vec(&r)),
        Signal::Traces => {
            ExportTraceServiceRequest::decode(protobuf).map(|r| serde_json::to_vec(&r))
        }
    };
    // The host encoded the request itself: it decodes, and it serialises.
    encoded.ok().and_then(Result::ok).unwrap_or_default()
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
