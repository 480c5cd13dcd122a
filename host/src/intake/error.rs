//! Intake errors and the JSON responses that name them.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::events::ParseError;

/// Why an intake request was refused; nothing of a refused request is recorded.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    /// The body is not valid events.
    #[error("{0}")]
    Parse(ParseError),
    /// The body is not a valid OTLP request.
    #[error("{0}")]
    Decode(String),
    /// The body, after decompression, is larger than the limit.
    #[error("the body is larger than the limit of {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The body's declared length is larger than the limit; it was not read.
    #[error("the body declares {declared} bytes (Content-Length), over the limit of {limit} bytes")]
    DeclaredTooLarge {
        /// The declared length.
        declared: u64,
        /// The limit in bytes.
        limit: usize,
    },
    /// The body arrived more slowly than the listener's minimum rate.
    #[error("{0}")]
    SlowBody(String),
    /// The request has more of something than a configured limit allows.
    #[error("the request has {value} {what}, over the limit of {limit} (intake.limits)")]
    OverLimit {
        /// What was counted, e.g. "resources".
        what: &'static str,
        /// How many the request has.
        value: usize,
        /// The limit.
        limit: usize,
    },
    /// The content type is not one this endpoint reads.
    #[error("unsupported content type `{0}`")]
    UnsupportedMediaType(String),
    /// The content encoding is neither gzip nor identity.
    #[error("unsupported content encoding `{0}`; use gzip or identity")]
    UnsupportedEncoding(String),
    /// The body claims gzip but is not.
    #[error("the body is not valid gzip: {0}")]
    BadGzip(String),
    /// The connection failed while the body was read.
    #[error("the body could not be read: {0}")]
    BodyRead(String),
    /// Intake is overloaded: its workers and their queue are full; retry later.
    #[error("{0}; retry later")]
    Busy(String),
    /// A queue could not keep the request's records (its disk cannot be written); retry later.
    #[error("{0}; retry later")]
    Unqueued(crate::pipeline::SinkError),
    /// The request could not be processed because of a fault in the host.
    #[error("{0}")]
    Internal(String),
    /// The sender's credential was refused (tenancy is on).
    #[error("{0}")]
    Unauthenticated(#[from] crate::tenancy::Refused),
    /// The sender's tenant is over its rate; retry later.
    #[error("{0}")]
    Throttled(#[from] crate::tenancy::Throttled),
    /// The sender's tenant holds its share of a queue; retry later.
    #[error("{0}; retry later")]
    OverShare(String),
}

impl IntakeError {
    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            IntakeError::Parse(_)
            | IntakeError::Decode(_)
            | IntakeError::BadGzip(_)
            | IntakeError::BodyRead(_)
            | IntakeError::OverLimit { .. } => StatusCode::BAD_REQUEST,
            IntakeError::TooLarge { .. } | IntakeError::DeclaredTooLarge { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            IntakeError::SlowBody(_) => StatusCode::REQUEST_TIMEOUT,
            IntakeError::UnsupportedMediaType(_) | IntakeError::UnsupportedEncoding(_) => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            IntakeError::Busy(_) | IntakeError::Unqueued(_) => StatusCode::SERVICE_UNAVAILABLE,
            IntakeError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            IntakeError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            IntakeError::Throttled(_) | IntakeError::OverShare(_) => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    /// A short, stable name for self-telemetry (`reason` attribute).
    pub fn reason(&self) -> &'static str {
        match self {
            IntakeError::Parse(_) | IntakeError::Decode(_) => "malformed",
            IntakeError::TooLarge { .. } | IntakeError::DeclaredTooLarge { .. } => "too_large",
            IntakeError::SlowBody(_) => "slow_body",
            IntakeError::OverLimit { .. } => "over_limit",
            IntakeError::UnsupportedMediaType(_) => "unsupported_media_type",
            IntakeError::UnsupportedEncoding(_) => "unsupported_encoding",
            IntakeError::BadGzip(_) => "bad_gzip",
            IntakeError::BodyRead(_) => "body_read",
            IntakeError::Busy(_) => "busy",
            IntakeError::Unqueued(_) => "unqueued",
            IntakeError::Internal(_) => "internal",
            IntakeError::Unauthenticated(_) => "unauthenticated",
            IntakeError::Throttled(_) => "throttled",
            IntakeError::OverShare(_) => "over_share",
        }
    }
}

impl IntakeError {
    /// After how many seconds the client should retry, when it should.
    pub(crate) fn retry_after(&self) -> Option<u64> {
        match self {
            IntakeError::Busy(_) | IntakeError::Unqueued(_) | IntakeError::OverShare(_) => Some(1),
            IntakeError::Throttled(t) => Some(t.retry_after_secs),
            _ => None,
        }
    }
}

impl From<crate::pipeline::SinkError> for IntakeError {
    /// A full queue is a busy intake; anything else could not be queued.
    fn from(error: crate::pipeline::SinkError) -> Self {
        match error {
            crate::pipeline::SinkError::Full { .. } | crate::pipeline::SinkError::Tenant { .. } => {
                IntakeError::Busy(error.to_string())
            }
            crate::pipeline::SinkError::Share { .. } => IntakeError::OverShare(error.to_string()),
            other => IntakeError::Unqueued(other),
        }
    }
}

impl IntoResponse for IntakeError {
    fn into_response(self) -> Response {
        let body = match &self {
            IntakeError::Parse(p) => json!({
                "error": p.message, "line": p.line, "column": p.column, "index": p.index, "field": p.field,
            }),
            other => json!({ "error": other.to_string() }),
        };
        self.advise((self.status(), Json(body)).into_response())
    }
}

impl IntakeError {
    /// Adds `Retry-After` to `response` when the client should retry later (intake is busy).
    pub(crate) fn advise(&self, mut response: Response) -> Response {
        if matches!(self, IntakeError::Unauthenticated(_)) {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        if let Some(seconds) = self.retry_after() {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(seconds),
            );
        }
        response
    }
}
