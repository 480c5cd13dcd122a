//! The OTLP/HTTP client: one POST per batch, classified as delivered, retryable or rejected.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};

use super::PROTOBUF;

/// Why a batch was not delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Worth another try: unreachable, timed out, 429, 502, 503 or 504.
    #[error("{0}")]
    Retryable(String),
    /// Retrying would fail the same way (other 4xx/5xx).
    #[error("{0}")]
    Rejected(String),
}

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

    /// POSTs one encoded batch and classifies the outcome.
    pub async fn send(&self, body: bytes::Bytes) -> Result<(), SendError> {
        let outcome = match self.http.post(&self.url).body(body).send().await {
            Err(e) => Err(SendError::Retryable(describe(&e))),
            Ok(response) => {
                let status = response.status();
                if status.is_success() {
                    Ok(())
                } else {
                    let reason = format!("HTTP {status}");
                    match status.as_u16() {
                        429 | 502 | 503 | 504 => Err(SendError::Retryable(reason)),
                        _ => Err(SendError::Rejected(reason)),
                    }
                }
            }
        };
        self.note(&outcome);
        outcome
    }

    /// Logs a change of link state, once per change rather than once per batch.
    fn note(&self, outcome: &Result<(), SendError>) {
        let mut link = self.link.lock().unwrap_or_else(PoisonError::into_inner);
        match outcome {
            Ok(()) if *link != Link::Up => {
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
