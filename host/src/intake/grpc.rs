//! OTLP/gRPC intake: the metrics, logs and traces `Export` methods, served with tonic on
//! `[intake] grpc_listen`. A request's message arrives as its bytes (after gRPC's framing and
//! gzip) and goes through exactly OTLP/HTTP's protobuf processing — limits before decoding,
//! partial success, refusals named — and a refusal is answered with the gRPC status the OTLP
//! specification gives it (RESOURCE_EXHAUSTED, INVALID_ARGUMENT, UNAVAILABLE with `RetryInfo`
//! when busy, INTERNAL).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use prost::Message;
use tonic::codec::{CompressionEncoding, EnabledCompressionEncodings};
use tonic::{Code, Status};

use super::Intake;
use super::error::IntakeError;
use super::otlp::{self, Encoding};
use crate::grpc::{LOGS_EXPORT, METRICS_EXPORT, Raw, TRACES_EXPORT, with_retry_info};
use crate::model::Signal;

/// The gRPC status of a request refused whole; a busy intake, or a tenant over its rate, asks
/// the client when to retry.
fn status(error: &IntakeError) -> Status {
    let code = Code::from_i32(otlp::grpc_code(error));
    match error.retry_after() {
        Some(secs) => with_retry_info(
            code,
            error.to_string(),
            std::time::Duration::from_secs(secs),
        ),
        None => Status::new(code, error.to_string()),
    }
}

/// One `Export` method.
#[derive(Clone)]
struct Export {
    intake: Intake,
    signal: Signal,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl tonic::server::UnaryService<Bytes> for Export {
    type Response = Bytes;
    type Future = BoxFuture<Result<tonic::Response<Bytes>, Status>>;

    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        let (intake, signal) = (self.intake.clone(), self.signal);
        Box::pin(async move {
            let authorization = request.metadata().get("authorization");
            let sender = intake.tenancy.sender(authorization.map(|v| v.as_bytes()));
            let bytes = request.into_inner();
            let processed = match sender {
                Ok(sender) => {
                    otlp::process(&intake, sender, signal, Encoding::Protobuf, bytes).await
                }
                Err(refused) => Err(IntakeError::from(refused)),
            };
            match processed {
                Ok(tally) => {
                    let answer = match signal {
                        Signal::Metrics => otlp::metrics_response(tally).encode_to_vec(),
                        Signal::Logs => otlp::logs_response(tally).encode_to_vec(),
                        Signal::Traces => otlp::traces_response(tally).encode_to_vec(),
                    };
                    Ok(tonic::Response::new(Bytes::from(answer)))
                }
                Err(e) => {
                    intake.pipeline.reject(e.reason());
                    Err(status(&e))
                }
            }
        })
    }
}

/// The OTLP/gRPC service: the three `Export` methods; anything else is UNIMPLEMENTED.
#[derive(Debug, Clone)]
pub struct Service {
    intake: Intake,
}

impl Service {
    /// The service over `intake`.
    pub fn new(intake: Intake) -> Self {
        Self { intake }
    }
}

/// Served on the host's HTTP/2 listener (`crate::server`), under its connection rules.
impl tower_service::Service<axum::http::Request<axum::body::Body>> for Service {
    type Response = axum::response::Response;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: axum::http::Request<axum::body::Body>) -> Self::Future {
        let request = request.map(tonic::body::Body::new);
        let signal = match request.uri().path() {
            METRICS_EXPORT => Signal::Metrics,
            LOGS_EXPORT => Signal::Logs,
            TRACES_EXPORT => Signal::Traces,
            other => {
                let status = Status::unimplemented(format!(
                    "{} is not an OTLP method this host serves",
                    crate::redact::clean(other, 200)
                ));
                let response = status.into_http::<tonic::body::Body>();
                return Box::pin(async move { Ok(response.map(axum::body::Body::new)) });
            }
        };
        let mut accept = EnabledCompressionEncodings::default();
        accept.enable(CompressionEncoding::Gzip);
        let mut grpc = tonic::server::Grpc::new(Raw)
            .apply_compression_config(accept, EnabledCompressionEncodings::default())
            .apply_max_message_size_config(Some(self.intake.max_body), None);
        let export = Export {
            intake: self.intake.clone(),
            signal,
        };
        Box::pin(async move {
            let response = grpc.unary(export, request).await;
            Ok(response.map(axum::body::Body::new))
        })
    }
}
