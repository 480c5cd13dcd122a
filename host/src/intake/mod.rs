//! Intake: `POST /v1/events`, OTLP's `POST /v1/metrics` and `POST /v1/logs`, and OTLP/gRPC's
//! metrics and logs `Export`, with parsing, limits and error responses.

pub mod body;
pub mod error;
pub mod events;
pub mod grpc;
pub mod otlp;
pub mod scan;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use serde_json::json;

use crate::config::{IntakeConfig, RequestLimits};
use crate::pipeline::Pipeline;
use crate::server::Protocol;
use crate::tenancy::{Principal, Tenancy};
use error::IntakeError;
use otlp::content::{ContentGuard, OpenRedaction};

/// Bodies larger than this, and every body when recording may call view plugins, are parsed off the async worker threads.
const INLINE_PARSE_LIMIT: usize = 64 * 1024;

/// What every intake route and the gRPC service share: events and logs feed the pipeline, OTLP
/// metrics the receiver, under the configured body size and request limits.
#[derive(Debug, Clone)]
pub struct Intake {
    pipeline: Arc<Pipeline>,
    metrics: Arc<otlp::metrics::MetricsReceiver>,
    tenancy: Arc<Tenancy>,
    max_body: usize,
    limits: RequestLimits,
    guard: Arc<otlp::content::ContentGuard>,
}

impl Intake {
    /// The intake under `config`, telling senders apart by `tenancy`, redacting GenAI content
    /// with what `redact` opens (the `redact` plugin) unless `config` keeps it.
    pub fn new(
        pipeline: Arc<Pipeline>,
        metrics: Arc<otlp::metrics::MetricsReceiver>,
        tenancy: Arc<Tenancy>,
        config: &IntakeConfig,
        redact: OpenRedaction,
    ) -> Self {
        Self {
            pipeline,
            metrics,
            tenancy,
            max_body: config.max_body_bytes,
            limits: config.limits,
            guard: Arc::new(ContentGuard::new(config.genai_content.content(), redact)),
        }
    }

    /// Who sent a request with `headers`: its bearer token decides, never its payload.
    fn sender(&self, headers: &HeaderMap) -> Result<Principal, IntakeError> {
        let authorization = headers.get(axum::http::header::AUTHORIZATION);
        Ok(self.tenancy.sender(authorization.map(|v| v.as_bytes()))?)
    }
}

/// Serves events and OTLP over HTTP on `config.listen` and, when it is on, OTLP/gRPC on
/// `config.grpc_listen`: what arrives goes to `pipeline` (events, logs) and `registries`
/// (metrics). The addresses they got.
pub async fn serve(
    config: &IntakeConfig,
    pipeline: Arc<Pipeline>,
    registries: Arc<crate::metrics::Registries>,
    tenancy: Arc<Tenancy>,
    redact: OpenRedaction,
    listeners: &mut crate::server::Listeners,
) -> Result<(SocketAddr, Option<SocketAddr>), crate::server::BindError> {
    let receiver =
        Arc::new(otlp::metrics::MetricsReceiver::new(registries).with_tenancy(tenancy.clone()));
    let intake = Intake::new(pipeline, receiver, tenancy, config, redact);
    let http = listeners
        .serve(
            "intake",
            config.listen,
            router(intake.clone()),
            Protocol::Http1,
        )
        .await?;
    let Some(addr) = config.grpc_listen else {
        return Ok((http, None));
    };
    let grpc = Router::new().fallback_service(grpc::Service::new(intake));
    let local = listeners
        .serve("OTLP/gRPC", addr, grpc, Protocol::Http2)
        .await?;
    Ok((http, Some(local)))
}

/// The HTTP intake routes.
pub fn router(intake: Intake) -> Router {
    Router::new()
        .route("/v1/events", post(post_events))
        .route("/v1/metrics", post(otlp::post_metrics))
        .route("/v1/logs", post(otlp::post_logs))
        .route("/v1/traces", post(otlp::post_traces))
        .with_state(intake)
}

async fn post_events(State(intake): State<Intake>, headers: HeaderMap, body: Body) -> Response {
    match accept(&intake, &headers, body).await {
        Ok(n) => (StatusCode::ACCEPTED, Json(json!({ "accepted": n }))).into_response(),
        Err(e) => {
            intake.pipeline.reject(e.reason());
            e.into_response()
        }
    }
}

async fn accept(intake: &Intake, headers: &HeaderMap, body: Body) -> Result<usize, IntakeError> {
    body::MediaType::of(headers)?;
    let sender = intake.sender(headers)?;
    let bytes = body::read(headers, body, intake.max_body).await?;
    let (pipeline, tenancy) = (intake.pipeline.clone(), intake.tenancy.clone());
    work(&intake.pipeline, bytes.len(), false, move || {
        ingest(&pipeline, &tenancy, &sender, &bytes)
    })
    .await?
}

/// Runs the work of one request of `size` bytes: inline when it is small and calls no plugin
/// (no view, and not the content guard when `guarded`), else on the intake pool, with view
/// plugins given the pipeline's patience counted from now (so a request that waited in the
/// queue asks no view); a full pool is [`IntakeError::Busy`].
async fn work<R: Send + 'static>(
    pipeline: &Pipeline,
    size: usize,
    guarded: bool,
    work: impl FnOnce() -> R + Send + 'static,
) -> Result<R, IntakeError> {
    let patience = pipeline.view_patience();
    if patience.is_none() && !guarded && size <= INLINE_PARSE_LIMIT {
        return Ok(work());
    }
    let until = patience.and_then(|p| std::time::Instant::now().checked_add(p));
    crate::pool::intake()
        .run(move || match until {
            Some(until) => crate::metrics::patiently(until, work),
            None => work(),
        })
        .await
        .map_err(|e| match e {
            crate::pool::PoolError::Full(..) => IntakeError::Busy(e.to_string()),
            crate::pool::PoolError::Panicked(_) => IntakeError::Internal(e.to_string()),
        })
}

/// Parses the whole body first, so a bad line records nothing; a body whose records would not
/// fit an export queue that refuses when full is refused whole too.
fn ingest(
    pipeline: &Pipeline,
    tenancy: &Tenancy,
    sender: &Principal,
    bytes: &Bytes,
) -> Result<usize, IntakeError> {
    let events = events::parse(bytes).map_err(IntakeError::Parse)?;
    tenancy.take_records(sender, events.len())?;
    pipeline.ingest(&events, sender)?;
    Ok(events.len())
}
