//! The OTLP/gRPC transport: each request is the signal service's `Export` call, through tonic,
//! classified as the OTLP specification says for gRPC: OK with a possible partial success;
//! CANCELLED, DEADLINE_EXCEEDED, ABORTED, OUT_OF_RANGE, UNAVAILABLE and DATA_LOSS retried (after
//! the server's `RetryInfo` delay when it gives one), RESOURCE_EXHAUSTED retried only with a
//! `RetryInfo`; every other code rejected.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use tonic::codec::CompressionEncoding;
use tonic::metadata::MetadataMap;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use super::super::spec::BuildError;
use super::otlp_http::{delivered, header_map};
use super::{BoxFuture, Delivered, Request, SendError, Transport};
use crate::export::otlp::Wire;
use crate::export::probe::Diagnosis;
use crate::grpc::{LOGS_EXPORT, METRICS_EXPORT, Raw, TRACES_EXPORT, retry_delay};
use crate::model::Signal;

/// A client of one signal's `Export` method at one endpoint.
#[derive(Debug)]
pub struct OtlpGrpc {
    channel: Channel,
    url: String,
    method: &'static str,
    metadata: MetadataMap,
    gzip: bool,
    timeout: Duration,
}

impl OtlpGrpc {
    /// A client for the gRPC endpoint `url` (`http://host:4317`), sending `headers` as
    /// metadata with every call; the channel connects on first use.
    pub fn new(
        url: &str,
        wire: Wire,
        headers: &BTreeMap<String, String>,
        timeout: Duration,
    ) -> Result<Self, BuildError> {
        let bad = |e: &dyn std::fmt::Display| BuildError::Endpoint {
            endpoint: url.to_owned(),
            reason: e.to_string(),
        };
        let endpoint = Endpoint::from_shared(url.to_owned())
            .map_err(|e| bad(&e))?
            .connect_timeout(timeout)
            .timeout(timeout)
            .user_agent(concat!("wasmtel/", env!("CARGO_PKG_VERSION")))
            .map_err(|e| bad(&e))?;
        let metadata = MetadataMap::from_headers(header_map(headers)?);
        Ok(Self {
            channel: endpoint.connect_lazy(),
            url: url.to_owned(),
            method: match wire.signal {
                Signal::Metrics => METRICS_EXPORT,
                Signal::Logs => LOGS_EXPORT,
                Signal::Traces => TRACES_EXPORT,
            },
            metadata,
            gzip: wire.gzip,
            timeout,
        })
    }

    /// Calls `Export` with one encoded request.
    async fn export(&self, body: Bytes) -> Result<Delivered, SendError> {
        let mut client = tonic::client::Grpc::new(self.channel.clone());
        if self.gzip {
            client = client.send_compressed(CompressionEncoding::Gzip);
        }
        client
            .ready()
            .await
            .map_err(|e| SendError::retryable(format!("{}: cannot connect: {e}", self.url)))?;
        let mut request = tonic::Request::new(body);
        *request.metadata_mut() = self.metadata.clone();
        request.set_timeout(self.timeout);
        let path = self
            .method
            .parse()
            .map_err(|_| SendError::Rejected(format!("invalid method path {}", self.method)))?;
        match client.unary(request, path, Raw).await {
            Ok(response) => Ok(delivered(response.get_ref(), false)),
            Err(status) => Err(classify(&status)),
        }
    }
}

/// What a failed call's status means for the request.
fn classify(status: &Status) -> SendError {
    let reason = format!(
        "gRPC {:?}: {}",
        status.code(),
        crate::redact::redact(&crate::redact::clean(status.message(), 200))
    );
    let after = retry_delay(status);
    match status.code() {
        Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::OutOfRange
        | Code::Unavailable
        | Code::DataLoss => SendError::Retryable { reason, after },
        Code::ResourceExhausted if after.is_some() => SendError::Retryable { reason, after },
        _ => SendError::Rejected(reason),
    }
}

impl Transport for OtlpGrpc {
    fn send<'a>(&'a self, request: &'a Request) -> BoxFuture<'a, Result<Delivered, SendError>> {
        Box::pin(async move {
            match request {
                Request::Body(body) => self.export(body.clone()).await,
                other => Err(SendError::wrong_kind(other, "an OTLP/gRPC endpoint")),
            }
        })
    }

    fn endpoint(&self) -> String {
        self.url.clone()
    }

    /// Calls `Export` with an empty request (valid OTLP, carrying nothing); gRPC's codes are
    /// read as their HTTP counterparts (UNAUTHENTICATED 401, PERMISSION_DENIED 403,
    /// UNIMPLEMENTED 404).
    fn probe(&self, timeout: Duration) -> BoxFuture<'_, Diagnosis> {
        Box::pin(async move {
            let began = std::time::Instant::now();
            let answer = tokio::time::timeout(timeout, self.export(Bytes::new())).await;
            match answer {
                Ok(Ok(_)) => Diagnosis::Ok {
                    status: 200,
                    latency_ms: u64::try_from(began.elapsed().as_millis()).unwrap_or(u64::MAX),
                },
                Ok(Err(SendError::Retryable { reason, .. })) => Diagnosis::Unreachable { reason },
                Ok(Err(e)) if e.to_string().starts_with("gRPC Unauthenticated") => {
                    Diagnosis::Credentials { status: 401 }
                }
                Ok(Err(e)) if e.to_string().starts_with("gRPC PermissionDenied") => {
                    Diagnosis::Credentials { status: 403 }
                }
                Ok(Err(e)) if e.to_string().starts_with("gRPC Unimplemented") => {
                    Diagnosis::NotFound
                }
                Ok(Err(e)) => Diagnosis::Settings {
                    reason: e.to_string(),
                },
                Err(_) => Diagnosis::Unreachable {
                    reason: format!("no answer within {timeout:?}"),
                },
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_retried_or_rejected_as_otlp_says() {
        let retried = |status: Status| matches!(classify(&status), SendError::Retryable { .. });
        for code in [
            Code::Cancelled,
            Code::DeadlineExceeded,
            Code::Aborted,
            Code::OutOfRange,
            Code::Unavailable,
            Code::DataLoss,
        ] {
            assert!(retried(Status::new(code, "x")), "{code:?}");
        }
        for code in [
            Code::InvalidArgument,
            Code::Unauthenticated,
            Code::PermissionDenied,
            Code::NotFound,
            Code::Unimplemented,
            Code::Internal,
            Code::ResourceExhausted,
        ] {
            assert!(!retried(Status::new(code, "x")), "{code:?}");
        }
        let throttled = crate::grpc::with_retry_info(
            Code::ResourceExhausted,
            "slow down".into(),
            Duration::from_secs(3),
        );
        assert_eq!(
            classify(&throttled),
            SendError::Retryable {
                reason: "gRPC ResourceExhausted: slow down".into(),
                after: Some(Duration::from_secs(3)),
            }
        );
    }
}
