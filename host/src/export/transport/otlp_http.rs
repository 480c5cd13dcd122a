//! The OTLP/HTTP transport: one POST (protobuf or OTLP/JSON) per request, classified as the
//! OTLP/HTTP specification says (delivered with a possible partial success, retryable, too large, or
//! rejected).

use std::collections::BTreeMap;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
use prost::Message;
use reqwest::header::{
    CONTENT_ENCODING, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER,
};

use super::{BoxFuture, Delivered, Request, SendError, Transport};
use crate::config::Protocol;
use crate::export::delivery::retry;
use crate::export::otlp::Wire;
use crate::export::probe::{self, Diagnosis};

/// A client for one OTLP/HTTP signal URL.
#[derive(Debug)]
pub struct OtlpHttp {
    http: reqwest::Client,
    url: String,
    wire: Wire,
}

/// A header that HTTP cannot carry; it names the header, never its value.
#[derive(Debug, thiserror::Error)]
#[error("invalid header `{0}`: names must be tokens and values visible ASCII")]
pub struct HeaderError(pub String);

/// The credential and other headers of an integration as a header map, every value marked
/// sensitive (so that it never shows in `Debug` output).
pub fn header_map(headers: &BTreeMap<String, String>) -> Result<HeaderMap, HeaderError> {
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        let name = HeaderName::try_from(k.as_str()).map_err(|_| HeaderError(k.clone()))?;
        let mut value = HeaderValue::try_from(v.as_str()).map_err(|_| HeaderError(k.clone()))?;
        value.set_sensitive(true);
        map.insert(name, value);
    }
    Ok(map)
}

impl OtlpHttp {
    /// A client for `url`, sending `headers` with every request, whose bodies come as `wire`
    /// says (protobuf or JSON, gzipped or not).
    pub fn new(
        url: String,
        headers: &BTreeMap<String, String>,
        timeout: Duration,
        wire: Wire,
    ) -> Result<Self, HeaderError> {
        let mut defaults = header_map(headers)?;
        defaults.insert(CONTENT_TYPE, HeaderValue::from_static(wire.content_type()));
        if wire.gzip {
            defaults.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        let http = reqwest::Client::builder()
            .default_headers(defaults)
            .user_agent(concat!("wasmtel/", env!("CARGO_PKG_VERSION")))
            .timeout(timeout)
            .build()
            .map_err(|_| HeaderError("(client)".into()))?;
        Ok(Self { http, url, wire })
    }

    /// POSTs one encoded request and classifies the outcome.
    async fn post(&self, body: bytes::Bytes) -> Result<Delivered, SendError> {
        match self.http.post(&self.url).body(body).send().await {
            Err(e) => Err(SendError::Retryable {
                reason: describe(&e),
                after: None,
            }),
            Ok(response) => classify(response, self.wire.protocol == Protocol::HttpJson).await,
        }
    }
}

impl Transport for OtlpHttp {
    fn send<'a>(&'a self, request: &'a Request) -> BoxFuture<'a, Result<Delivered, SendError>> {
        Box::pin(async move {
            match request {
                Request::Body(body) => self.post(body.clone()).await,
                other => Err(SendError::wrong_kind(other, "an OTLP endpoint")),
            }
        })
    }

    fn endpoint(&self) -> String {
        self.url.clone()
    }

    /// POSTs an empty export request (valid OTLP, carrying nothing) with the configured
    /// headers, and diagnoses the answer.
    fn probe(&self, timeout: Duration) -> BoxFuture<'_, Diagnosis> {
        let empty = self.wire.body(Vec::new());
        Box::pin(probe::probe(self.http.post(&self.url).body(empty), timeout))
    }
}

/// Reads a response: a success with its partial success if any, or a failure.
async fn classify(response: reqwest::Response, json: bool) -> Result<Delivered, SendError> {
    let status = response.status();
    if status.is_success() {
        let body = response.bytes().await.unwrap_or_default();
        return Ok(delivered(&body, json));
    }
    let reason = format!("HTTP {status}");
    if status.as_u16() == 413 {
        return Err(SendError::TooLarge(reason));
    }
    if !retry::retryable(status.as_u16()) {
        return Err(SendError::Rejected(reason));
    }
    let after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| retry::retry_after(v, std::time::SystemTime::now()));
    Err(SendError::Retryable { reason, after })
}

/// A delivery and its partial success, from an export response's body (protobuf, or OTLP/JSON).
pub fn delivered(body: &[u8], json: bool) -> Delivered {
    // The three export responses carry their partial success as field 1, with the same shape
    // (`rejectedDataPoints`, `rejectedLogRecords` and `rejectedSpans` differ in JSON, so all
    // three are read).
    let partial = if json {
        let value: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        value.get("partialSuccess").map(|p| {
            let rejected = ["rejectedDataPoints", "rejectedLogRecords", "rejectedSpans"]
                .iter()
                .find_map(|k| {
                    let v = p.get(*k)?;
                    v.as_u64().or_else(|| v.as_str()?.parse().ok())
                })
                .unwrap_or(0);
            let message = p.get("errorMessage").and_then(|m| m.as_str()).unwrap_or("");
            (rejected, message.to_owned())
        })
    } else {
        ExportMetricsServiceResponse::decode(body)
            .ok()
            .and_then(|r| r.partial_success)
            .map(|p| {
                let rejected = u64::try_from(p.rejected_data_points).unwrap_or(0);
                (rejected, p.error_message)
            })
    };
    match partial.filter(|(rejected, message)| *rejected > 0 || !message.is_empty()) {
        Some((rejected, message)) => Delivered {
            rejected,
            message: Some(message),
        },
        None => Delivered::default(),
    }
}

/// A short human reason for a transport error (refused, timed out, …).
pub fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "timed out".into();
    }
    let mut source: Option<&dyn std::error::Error> = Some(e);
    let mut last = e.to_string();
    while let Some(s) = source {
        last = s.to_string();
        source = s.source();
    }
    if e.is_connect() {
        format!("cannot connect: {last}")
    } else {
        last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_success_is_read_for_every_signal_in_protobuf_and_json() {
        for key in ["rejectedDataPoints", "rejectedLogRecords", "rejectedSpans"] {
            let body = format!(r#"{{"partialSuccess":{{"{key}":"3","errorMessage":"bad"}}}}"#);
            let got = delivered(body.as_bytes(), true);
            assert_eq!(
                (got.rejected, got.message.as_deref()),
                (3, Some("bad")),
                "{key}"
            );
        }
        let spans = opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse {
            partial_success: Some(
                opentelemetry_proto::tonic::collector::trace::v1::ExportTracePartialSuccess {
                    rejected_spans: 2,
                    error_message: "ids".into(),
                },
            ),
        };
        let got = delivered(&spans.encode_to_vec(), false);
        assert_eq!((got.rejected, got.message.as_deref()), (2, Some("ids")));
        assert_eq!(delivered(br#"{"partialSuccess":null}"#, true).rejected, 0);
    }
}
