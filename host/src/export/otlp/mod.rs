//! OTLP encoders: metrics straight from the engine's series into protobuf, log records and
//! spans framed around their bytes.

pub mod metrics;
pub mod records;

pub use records::frame;

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

use crate::config::Protocol;
use crate::model::Signal;

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
