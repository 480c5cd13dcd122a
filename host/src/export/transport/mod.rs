//! Transports: how one encoded request reaches a backend — an OTLP/HTTP POST, an OTLP/gRPC call, a plugin's HTTP
//! request on the integration's endpoint, or a UDP datagram. The delivery engine above them is
//! the same for all three.

pub mod otlp_grpc;
pub mod otlp_http;
pub mod plugin_http;
pub mod udp;

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;

use super::probe::Diagnosis;
use crate::plugins::bindings::encoder::{HttpRequest, Outbound};

/// A boxed future, so that transports can sit behind one trait object.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One request as an encoder made it.
#[derive(Debug, Clone)]
pub enum Request {
    /// A complete request body for the transport's fixed URL (OTLP).
    Body(Bytes),
    /// An exporter plugin's HTTP request: a path on the integration's endpoint.
    Http(HttpRequest),
    /// A UDP datagram.
    Datagram(Vec<u8>),
}

impl Request {
    /// The payload's size in bytes.
    pub fn len(&self) -> usize {
        match self {
            Request::Body(b) => b.len(),
            Request::Http(r) => r.body.len(),
            Request::Datagram(d) => d.len(),
        }
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// What kind of request it is, for errors.
    pub fn kind(&self) -> &'static str {
        match self {
            Request::Body(_) => "OTLP request",
            Request::Http(_) => "HTTP request",
            Request::Datagram(_) => "datagram",
        }
    }
}

impl From<Outbound> for Request {
    fn from(out: Outbound) -> Self {
        match out {
            Outbound::Http(r) => Request::Http(r),
            Outbound::Datagram(d) => Request::Datagram(d),
        }
    }
}

/// Why a request was not delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Worth another try: unreachable, timed out, 429, 502, 503 or 504.
    #[error("{reason}")]
    Retryable {
        /// What happened.
        reason: String,
        /// How long the server asked to wait (`Retry-After`).
        after: Option<Duration>,
    },
    /// The request is too large for the backend (HTTP 413): its data may go in smaller requests.
    #[error("{0}")]
    TooLarge(String),
    /// Retrying would fail the same way (other 4xx/5xx, or a request this transport cannot send).
    #[error("{0}")]
    Rejected(String),
}

impl SendError {
    /// A retryable failure without a server-given wait.
    pub fn retryable(reason: impl Into<String>) -> Self {
        SendError::Retryable {
            reason: reason.into(),
            after: None,
        }
    }

    /// A request this transport cannot carry.
    pub fn wrong_kind(request: &Request, transport: &str) -> Self {
        SendError::Rejected(format!(
            "a {} cannot be sent to {transport}",
            request.kind()
        ))
    }
}

/// A delivered request, and what of it the backend refused in a partial success.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delivered {
    /// Items refused (`rejected_data_points` / `rejected_log_records` / `rejected_spans`).
    pub rejected: u64,
    /// The backend's message, when it sent a partial success.
    pub message: Option<String>,
}

/// Sends requests to one endpoint.
pub trait Transport: Send + Sync {
    /// Hears of the requests one encoded batch is about to send, before the first is sent.
    fn batch(&self, _requests: &VecDeque<Request>) {}

    /// Sends one request and classifies the outcome.
    fn send<'a>(&'a self, request: &'a Request) -> BoxFuture<'a, Result<Delivered, SendError>>;

    /// Where requests go, for people (never carrying a credential).
    fn endpoint(&self) -> String;

    /// Whether a success means the backend received the data (UDP cannot know).
    fn acknowledged(&self) -> bool {
        true
    }

    /// Tests the connection with one real request, waiting at most `timeout`.
    fn probe(&self, timeout: Duration) -> BoxFuture<'_, Diagnosis>;
}
