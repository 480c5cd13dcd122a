//! OTLP/gRPC intake: the metrics and logs `Export` methods, served with tonic on
//! `[intake] grpc_listen`. A request's message arrives as its bytes (after gRPC's framing and
//! gzip) and goes through exactly OTLP/HTTP's protobuf processing — limits before decoding,
//! partial success, refusals named — and a refusal is answered with the gRPC status the OTLP
//! specification gives it (RESOURCE_EXHAUSTED, INVALID_ARGUMENT, UNAVAILABLE with `RetryInfo`
//! when busy, INTERNAL).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, Bytes};
use prost::Message;
use tonic::codec::{
    Codec, CompressionEncoding, DecodeBuf, Decoder, EnabledCompressionEncodings, EncodeBuf, Encoder,
};
use tonic::{Code, Status};

use super::Intake;
use super::error::IntakeError;
use super::otlp::{self, Encoding};
use crate::model::Signal;

/// The metrics `Export` method's path.
pub const METRICS_EXPORT: &str = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";
/// The logs `Export` method's path.
pub const LOGS_EXPORT: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";

/// Messages as their bytes, both ways.
#[derive(Debug, Clone, Copy, Default)]
struct Raw;

impl Codec for Raw {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = Raw;
    type Decoder = Raw;

    fn encoder(&mut self) -> Raw {
        Raw
    }

    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// The messages a status's details carry `google.rpc.RetryInfo` in.
mod rpc {
    /// `google.rpc.RetryInfo`: how long a client should wait before retrying.
    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct RetryInfo {
        #[prost(message, optional, tag = "1")]
        pub(super) retry_delay: Option<Duration>,
    }

    /// `google.protobuf.Duration`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct Duration {
        #[prost(int64, tag = "1")]
        pub(super) seconds: i64,
        #[prost(int32, tag = "2")]
        pub(super) nanos: i32,
    }

    /// `google.protobuf.Any`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct Any {
        #[prost(string, tag = "1")]
        pub(super) type_url: String,
        #[prost(bytes = "vec", tag = "2")]
        pub(super) value: Vec<u8>,
    }

    /// `google.rpc.Status`, as `grpc-status-details-bin` carries it.
    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct RpcStatus {
        #[prost(int32, tag = "1")]
        pub(super) code: i32,
        #[prost(string, tag = "2")]
        pub(super) message: String,
        #[prost(message, repeated, tag = "3")]
        pub(super) details: Vec<Any>,
    }
}

/// The gRPC status of a request refused whole; a busy intake asks the client to retry in 1 s.
fn status(error: &IntakeError) -> Status {
    let code = otlp::grpc_code(error);
    let message = error.to_string();
    if code != Code::Unavailable as i32 {
        return Status::new(Code::from_i32(code), message);
    }
    use rpc::{Any, Duration, RetryInfo, RpcStatus};
    let retry = RetryInfo {
        retry_delay: Some(Duration {
            seconds: 1,
            nanos: 0,
        }),
    };
    let details = RpcStatus {
        code,
        message: message.clone(),
        details: vec![Any {
            type_url: "type.googleapis.com/google.rpc.RetryInfo".into(),
            value: retry.encode_to_vec(),
        }],
    };
    Status::with_details(Code::Unavailable, message, details.encode_to_vec().into())
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
            let bytes = request.into_inner();
            match otlp::process(&intake, signal, Encoding::Protobuf, bytes).await {
                Ok(tally) => {
                    let answer = match signal {
                        Signal::Metrics => otlp::metrics_response(tally).encode_to_vec(),
                        Signal::Logs => otlp::logs_response(tally).encode_to_vec(),
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

/// The OTLP/gRPC service: the two `Export` methods; anything else is UNIMPLEMENTED.
#[derive(Clone)]
pub struct Service {
    intake: Intake,
}

impl Service {
    /// The service over `intake`.
    pub fn new(intake: Intake) -> Self {
        Self { intake }
    }
}

impl tower_service::Service<axum::http::Request<tonic::body::Body>> for Service {
    type Response = axum::http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: axum::http::Request<tonic::body::Body>) -> Self::Future {
        let signal = match request.uri().path() {
            METRICS_EXPORT => Signal::Metrics,
            LOGS_EXPORT => Signal::Logs,
            other => {
                let status = Status::unimplemented(format!(
                    "{} is not an OTLP method this host serves",
                    crate::redact::clean(other, 200)
                ));
                return Box::pin(async move { Ok(status.into_http()) });
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
        Box::pin(async move { Ok(grpc.unary(export, request).await) })
    }
}
