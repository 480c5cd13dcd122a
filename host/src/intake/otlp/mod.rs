//! OTLP/HTTP intake: `POST /v1/metrics`, `POST /v1/logs` and `POST /v1/traces` in binary
//! protobuf or JSON, answered with the OTLP specification's status codes, partial-success
//! responses and `Status` bodies.

pub mod content;
pub mod json;
pub mod limits;
pub mod metrics;
pub mod records;

use axum::body::Body;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceResponse,
};
use prost::Message;

use super::error::IntakeError;
use super::{Intake, body};
use crate::model::Signal;
use crate::tenancy::Principal;

/// What one request accepted and rejected, and the first problem found.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Tally {
    /// Items (data points, log records or spans) accepted.
    pub accepted: usize,
    /// Items rejected.
    pub rejected: usize,
    /// The first problem, if any.
    pub message: Option<String>,
}

impl Tally {
    /// Adds what a later stage of the same request accepted and rejected.
    fn absorb(&mut self, later: Tally) {
        self.accepted += later.accepted;
        self.rejected += later.rejected;
        self.message = self.message.take().or(later.message);
    }

    fn accept(&mut self, n: usize) {
        self.accepted += n;
    }

    /// Turns `n` items accepted earlier into rejected ones, because of `why`.
    fn refuse_accepted(&mut self, n: usize, why: &str) {
        self.accepted = self.accepted.saturating_sub(n);
        self.reject(n, why);
    }

    /// Rejects `n` items (0 for a warning that refuses nothing) because of `why`.
    fn reject(&mut self, n: usize, why: &str) {
        self.rejected += n;
        if self.message.is_none() {
            self.message = Some(why.to_owned());
        }
    }
}

/// The two encodings of OTLP/HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// `application/x-protobuf` (also assumed when no content type is given).
    Protobuf,
    /// `application/json`, with OTLP's JSON mapping.
    Json,
}

impl Encoding {
    /// The request's encoding, from its content type.
    pub fn of(headers: &HeaderMap) -> Result<Self, IntakeError> {
        let Some(value) = headers.get(CONTENT_TYPE) else {
            return Ok(Self::Protobuf);
        };
        let raw = value.to_str().unwrap_or("");
        let essence = raw.split(';').next().unwrap_or("").trim();
        match essence.to_ascii_lowercase().as_str() {
            "application/x-protobuf" | "application/protobuf" => Ok(Self::Protobuf),
            "application/json" => Ok(Self::Json),
            _ => Err(IntakeError::UnsupportedMediaType(raw.to_owned())),
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Self::Protobuf => "application/x-protobuf",
            Self::Json => "application/json",
        }
    }

    fn respond<T: Message + serde::Serialize>(self, status: StatusCode, message: &T) -> Response {
        let body = match self {
            Self::Protobuf => message.encode_to_vec(),
            Self::Json => serde_json::to_vec(message).unwrap_or_default(),
        };
        (status, [(CONTENT_TYPE, self.content_type())], body).into_response()
    }
}

/// `google.rpc.Status`, the body of an OTLP/HTTP error response.
#[derive(Clone, PartialEq, Message, serde::Serialize)]
pub struct Status {
    /// The gRPC status code.
    #[prost(int32, tag = "1")]
    pub code: i32,
    /// What went wrong.
    #[prost(string, tag = "2")]
    pub message: String,
}

/// gRPC's INVALID_ARGUMENT.
const INVALID_ARGUMENT: i32 = 3;
/// gRPC's RESOURCE_EXHAUSTED.
const RESOURCE_EXHAUSTED: i32 = 8;
/// gRPC's INTERNAL.
const INTERNAL: i32 = 13;
/// gRPC's UNAVAILABLE.
const UNAVAILABLE: i32 = 14;
/// `google.rpc.Code.UNAUTHENTICATED`.
const UNAUTHENTICATED: i32 = 16;

/// The gRPC status code of a request refused whole: what an OTLP/HTTP `Status` body carries and
/// what OTLP/gRPC answers (UNAVAILABLE, the busy case, is the one a client retries).
pub(crate) fn grpc_code(error: &IntakeError) -> i32 {
    match error.status() {
        StatusCode::PAYLOAD_TOO_LARGE | StatusCode::TOO_MANY_REQUESTS => RESOURCE_EXHAUSTED,
        StatusCode::SERVICE_UNAVAILABLE => UNAVAILABLE,
        StatusCode::INTERNAL_SERVER_ERROR => INTERNAL,
        StatusCode::UNAUTHORIZED => UNAUTHENTICATED,
        _ => INVALID_ARGUMENT,
    }
}

/// The error response for a request refused whole, counted in self-telemetry.
fn refuse(intake: &Intake, error: &IntakeError, encoding: Encoding) -> Response {
    intake.pipeline.reject(error.reason());
    let status = Status {
        code: grpc_code(error),
        message: error.to_string(),
    };
    error.advise(encoding.respond(error.status(), &status))
}

/// Processes one request body of `signal` (off the async workers when it is large or when
/// recording may call plugins) and counts what it accepted and rejected: its tally.
pub(crate) async fn process(
    intake: &Intake,
    sender: Principal,
    signal: Signal,
    encoding: Encoding,
    bytes: Bytes,
) -> Result<Tally, IntakeError> {
    let worker = intake.clone();
    let size = bytes.len();
    let guarded = signal != Signal::Metrics && !intake.guard.content.keys.is_empty();
    let tally = super::work(&intake.pipeline, size, guarded, move || match signal {
        Signal::Metrics => process_metrics(&worker, &sender, encoding, bytes),
        _ => process_records(&worker, &sender, signal, encoding, bytes),
    })
    .await
    .and_then(|tally| tally)?;
    let telemetry = intake.pipeline.telemetry();
    telemetry.otlp_items(signal, tally.accepted, tally.rejected);
    Ok(tally)
}

/// Reads one HTTP request, processes it, and answers with `response` of its tally.
async fn serve<R>(
    intake: Intake,
    headers: HeaderMap,
    body: Body,
    signal: Signal,
    response: fn(Tally) -> R,
) -> Response
where
    R: Message + serde::Serialize,
{
    let encoding = match Encoding::of(&headers) {
        Ok(encoding) => encoding,
        Err(e) => return refuse(&intake, &e, Encoding::Json),
    };
    let sender = match intake.sender(&headers) {
        Ok(sender) => sender,
        Err(e) => return refuse(&intake, &e, encoding),
    };
    let bytes = match body::read(&headers, body, intake.max_body).await {
        Ok(bytes) => bytes,
        Err(e) => return refuse(&intake, &e, encoding),
    };
    match process(&intake, sender, signal, encoding, bytes).await {
        Ok(tally) => encoding.respond(StatusCode::OK, &response(tally)),
        Err(e) => refuse(&intake, &e, encoding),
    }
}

/// One metrics request's body: limits, decoding, recording.
#[allow(
    clippy::needless_pass_by_value,
    reason = "owned like the body `process_records` keeps slices of"
)]
fn process_metrics(
    intake: &Intake,
    sender: &Principal,
    encoding: Encoding,
    bytes: Bytes,
) -> Result<Tally, IntakeError> {
    let mut tally = Tally::default();
    let mut request = match encoding {
        Encoding::Protobuf => {
            limits::metrics(&bytes, &intake.limits)?;
            ExportMetricsServiceRequest::decode(bytes.as_ref()).map_err(|e| {
                IntakeError::Decode(format!(
                    "the body is not a valid ExportMetricsServiceRequest: {e}"
                ))
            })?
        }
        Encoding::Json => {
            limits::json(&bytes, &intake.limits)?;
            let request = json::metrics(&bytes, &mut tally)?;
            limits::metrics(&request.encode_to_vec(), &intake.limits)?;
            request
        }
    };
    if intake.tenancy.is_on() {
        for rm in &mut request.resource_metrics {
            let resource = rm.resource.get_or_insert_with(Default::default);
            intake.tenancy.stamp(sender, &mut resource.attributes);
        }
    }
    tally.absorb(intake.metrics.receive(&request));
    Ok(tally)
}

/// The answer to a metrics request: partial success when anything was rejected or warned of.
pub(crate) fn metrics_response(tally: Tally) -> ExportMetricsServiceResponse {
    ExportMetricsServiceResponse {
        partial_success: tally
            .message
            .map(|error_message| ExportMetricsPartialSuccess {
                rejected_data_points: tally.rejected as i64,
                error_message,
            }),
    }
}

/// One logs or traces request's body: limits, the records scanned (never decoded), queued;
/// then, for traces, the spans the span rules read recorded.
fn process_records(
    intake: &Intake,
    sender: &Principal,
    signal: Signal,
    encoding: Encoding,
    bytes: Bytes,
) -> Result<Tally, IntakeError> {
    let mut tally = Tally::default();
    let (what, limit, check): (_, fn(&[u8], &_) -> _, records::Check) = match signal {
        Signal::Logs => (
            "ExportLogsServiceRequest",
            limits::logs,
            records::log_record,
        ),
        _ => ("ExportTraceServiceRequest", limits::traces, records::span),
    };
    let bytes = match encoding {
        Encoding::Protobuf => bytes,
        Encoding::Json => {
            limits::json(&bytes, &intake.limits)?;
            Bytes::from(match signal {
                Signal::Logs => json::logs(&bytes, &mut tally)?.encode_to_vec(),
                _ => json::traces(&bytes, &mut tally)?.encode_to_vec(),
            })
        }
    };
    limit(&bytes, &intake.limits)?;
    let stamp = records::Stamp {
        attributes: &|attributes: &mut Vec<_>| intake.tenancy.stamp(sender, attributes),
        tenant: sender.tenant().map(std::sync::Arc::from),
    };
    let scanned = records::scan(&bytes, &mut tally, &stamp, (check, &intake.guard.content))
        .map_err(|e| IntakeError::Decode(format!("the body is not a valid {what}: {e}")))?;
    let records = intake.guard.apply(signal, scanned, &mut tally);
    intake.tenancy.take_records(sender, records.len())?;
    if let Some(why) = intake.pipeline.ingest_records(signal, &records)? {
        tally.reject(0, &format!("spans forwarded but not measured: {why}"));
    }
    Ok(tally)
}

/// The answer to a logs request: partial success when anything was rejected or warned of.
pub(crate) fn logs_response(tally: Tally) -> ExportLogsServiceResponse {
    ExportLogsServiceResponse {
        partial_success: tally.message.map(|error_message| ExportLogsPartialSuccess {
            rejected_log_records: tally.rejected as i64,
            error_message,
        }),
    }
}

/// The answer to a traces request: partial success when anything was rejected or warned of.
pub(crate) fn traces_response(tally: Tally) -> ExportTraceServiceResponse {
    ExportTraceServiceResponse {
        partial_success: tally
            .message
            .map(|error_message| ExportTracePartialSuccess {
                rejected_spans: tally.rejected as i64,
                error_message,
            }),
    }
}

/// `POST /v1/metrics`.
pub(super) async fn post_metrics(
    State(intake): State<Intake>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    serve(intake, headers, body, Signal::Metrics, metrics_response).await
}

/// `POST /v1/logs`.
pub(super) async fn post_logs(
    State(intake): State<Intake>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    serve(intake, headers, body, Signal::Logs, logs_response).await
}

/// `POST /v1/traces`.
pub(super) async fn post_traces(
    State(intake): State<Intake>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    serve(intake, headers, body, Signal::Traces, traces_response).await
}
