//! The OTLP/HTTP client: one POST per batch, classified as delivered, retryable or rejected.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
use prost::Message;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};

use super::PROTOBUF;
use crate::export::delivery::{Delivered, SendError, retry};
use crate::export::probe::{self, Diagnosis};

/// The last known state of the link to the collector, for once-per-change logging.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Link {
    Unknown,
    Up,
    Down,
}

/// A client for one OTLP/HTTP endpoint.
#[derive(Debug)]
pub struct OtlpClient {
    http: reqwest::Client,
    url: String,
    signal: &'static str,
    link: Mutex<Link>,
}

/// A header given in configuration that HTTP cannot carry.
#[derive(Debug, thiserror::Error)]
#[error("invalid OTLP header `{0}`: names must be tokens and values visible ASCII")]
pub struct HeaderError(String);

impl OtlpClient {
    /// A client for `url` sending `headers` with every request.
    pub fn new(
        url: String,
        signal: &'static str,
        headers: &std::collections::BTreeMap<String, String>,
        timeout: Duration,
    ) -> Result<Self, HeaderError> {
        let mut defaults = HeaderMap::new();
        defaults.insert(CONTENT_TYPE, HeaderValue::from_static(PROTOBUF));
        for (k, v) in headers {
            let name = HeaderName::try_from(k.as_str()).map_err(|_| HeaderError(k.clone()))?;
            let mut value =
                HeaderValue::try_from(v.as_str()).map_err(|_| HeaderError(k.clone()))?;
            value.set_sensitive(true);
            defaults.insert(name, value);
        }
        let http = reqwest::Client::builder()
            .default_headers(defaults)
            .user_agent(concat!("wasmtel/", env!("CARGO_PKG_VERSION")))
            .timeout(timeout)
            .build()
            .map_err(|e| HeaderError(e.to_string()))?;
        Ok(Self {
            http,
            url,
            signal,
            link: Mutex::new(Link::Unknown),
        })
    }

    /// The endpoint URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Tests the connection: POSTs an empty export request (valid OTLP, carrying nothing) with
    /// the configured headers, and diagnoses the answer.
    pub async fn probe(&self, timeout: Duration) -> Diagnosis {
        probe::probe(self.http.post(&self.url).body(Vec::new()), timeout).await
    }

    /// POSTs one encoded batch and classifies the outcome.
    pub async fn send(&self, body: bytes::Bytes) -> Result<Delivered, SendError> {
        let outcome = match self.http.post(&self.url).body(body).send().await {
            Err(e) => Err(SendError::Retryable {
                reason: describe(&e),
                after: None,
            }),
            Ok(response) => classify(response).await,
        };
        self.note(&outcome);
        outcome
    }

    /// Logs a change of link state, once per change rather than once per batch.
    fn note(&self, outcome: &Result<Delivered, SendError>) {
        let mut link = self.link.lock().unwrap_or_else(PoisonError::into_inner);
        match outcome {
            Ok(_) if *link != Link::Up => {
                tracing::info!(signal = self.signal, url = %self.url, "OTLP export is delivering");
                *link = Link::Up;
            }
            Err(e) if *link != Link::Down => {
                tracing::warn!(signal = self.signal, url = %self.url, error = %e,
                    "OTLP export is failing; further failures are not logged until it recovers");
                *link = Link::Down;
            }
            _ => {}
        }
    }
}

/// Reads a response: a success with its partial success if any, or a retryable or final failure.
async fn classify(response: reqwest::Response) -> Result<Delivered, SendError> {
    let status = response.status();
    if status.is_success() {
        // Both export responses carry their partial success as field 1, with the same shape.
        let body = response.bytes().await.unwrap_or_default();
        let partial = ExportMetricsServiceResponse::decode(body.as_ref())
            .ok()
            .and_then(|r| r.partial_success)
            .filter(|p| p.rejected_data_points > 0 || !p.error_message.is_empty());
        return Ok(partial.map_or_else(Delivered::default, |p| Delivered {
            rejected: u64::try_from(p.rejected_data_points).unwrap_or(0),
            message: Some(p.error_message),
        }));
    }
    let reason = format!("HTTP {status}");
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

/// A short human reason for a transport error (refused, timed out, …).
fn describe(e: &reqwest::Error) -> String {
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
