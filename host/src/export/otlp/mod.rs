//! OTLP encoders: metrics straight from the engine's series into protobuf, and log records.

pub mod logs;
pub mod metrics;

use bytes::Bytes;

/// A request body as it goes on the wire: gzipped or as it is.
pub fn body(request: Vec<u8>, gzip: bool) -> Bytes {
    Bytes::from(if gzip { super::gzip(&request) } else { request })
}
