//! Records: log records and spans, each encoded once as OTLP bytes, and where they come from.
//!
//! A record is encoded when it is accepted (an event written straight from the parsed body, a
//! received OTLP log record or span sliced out of its request) and shared, never copied, by
//! every exporter of its signal: the native one frames the bytes into requests; transforms and
//! plugins decode them.

use std::sync::Arc;

use bytes::Bytes;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::resource::v1::Resource as ProtoResource;
use prost::Message;

use super::attributes::AttributeSet;
use super::key_values::attribute_set;

/// Where records come from: their resource and instrumentation scope, each encoded once as
/// OTLP bytes (decoded only for a transform or a plugin).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The encoded `Resource`.
    pub resource: Bytes,
    /// The encoded `InstrumentationScope`.
    pub scope: Bytes,
    /// The resource's attributes, as selections match them.
    pub attributes: AttributeSet,
    /// The tenant whose data it is, when its sender's token named one.
    pub tenant: Option<Arc<str>>,
}

impl Origin {
    /// An origin from its OTLP messages.
    pub fn new(resource: &ProtoResource, scope: &InstrumentationScope) -> Self {
        Self {
            resource: Bytes::from(resource.encode_to_vec()),
            scope: Bytes::from(scope.encode_to_vec()),
            attributes: attribute_set(&resource.attributes),
            tenant: None,
        }
    }

    /// An origin from its encoded messages (a resource that does not decode has no attributes).
    pub fn from_bytes(resource: Bytes, scope: Bytes) -> Self {
        let decoded = ProtoResource::decode(resource.as_ref()).unwrap_or_default();
        Self {
            attributes: attribute_set(&decoded.attributes),
            resource,
            scope,
            tenant: None,
        }
    }

    /// The resource, decoded.
    pub fn resource(&self) -> ProtoResource {
        ProtoResource::decode(self.resource.as_ref()).unwrap_or_default()
    }

    /// The scope, decoded.
    pub fn scope(&self) -> InstrumentationScope {
        InstrumentationScope::decode(self.scope.as_ref()).unwrap_or_default()
    }
}

/// One log record or span as an encoded OTLP `LogRecord` or `Span`, with its origin; cheap to
/// clone (both are shared).
#[derive(Debug, Clone)]
pub struct Record {
    /// Where it comes from.
    pub origin: Arc<Origin>,
    /// The encoded `LogRecord` or `Span` (checked when it was accepted).
    pub bytes: Bytes,
}

impl Record {
    /// The record as the message it encodes (for transforms and plugins).
    pub fn decode<M: Message + Default>(&self) -> M {
        M::decode(self.bytes.as_ref()).unwrap_or_default()
    }

    /// Typed records (log records or spans) as records of `origin`, encoded into one shared
    /// buffer.
    pub fn encode_all<M: Message>(records: &[M], origin: &Arc<Origin>) -> Vec<Record> {
        let mut buf = Vec::with_capacity(records.iter().map(Message::encoded_len).sum());
        let mut ends = Vec::with_capacity(records.len());
        for r in records {
            r.encode_raw(&mut buf);
            ends.push(buf.len());
        }
        let bytes = Bytes::from(buf);
        let mut start = 0;
        ends.into_iter()
            .map(|end| {
                let record = Record {
                    origin: origin.clone(),
                    bytes: bytes.slice(start..end),
                };
                start = end;
                record
            })
            .collect()
    }
}

/// Records of one origin in a row, in order: what transforms and plugins receive (each run has
/// at least one record).
pub fn runs_of(records: &[Record]) -> impl Iterator<Item = &[Record]> {
    records.chunk_by(|a, b| same_origin(&a.origin, &b.origin))
}

/// Whether two records come from the same place.
pub fn same_origin(a: &Arc<Origin>, b: &Arc<Origin>) -> bool {
    Arc::ptr_eq(a, b) || **a == **b
}
