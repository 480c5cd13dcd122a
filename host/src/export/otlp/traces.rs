//! Spans into OTLP `ExportTraceServiceRequest`s, one `ResourceSpans` per run of spans from
//! one origin, framed around the spans' bytes as they arrived.

use crate::model::record::Record;

/// Encodes `spans` as one request; none when there are none.
pub fn encode(spans: &[Record]) -> Option<Vec<u8>> {
    (!spans.is_empty()).then(|| super::frame(spans))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    use prost::Message;

    use super::*;
    use crate::model::record::Origin;

    #[test]
    fn framed_spans_are_what_the_types_encode() {
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
        let scope_spans = |origin: &Arc<Origin>, spans: Vec<Span>| ResourceSpans {
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
                scope_spans(&a, vec![span("x"), span("y")]),
                scope_spans(&b, vec![span("z")]),
            ],
        };
        assert_eq!(encode(&spans), Some(want.encode_to_vec()));
        assert_eq!(encode(&[]), None);
    }
}
