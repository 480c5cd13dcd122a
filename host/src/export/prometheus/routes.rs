//! The Prometheus listener's routes: `/metrics`, and `/metrics/{id}` for each stored Prometheus
//! integration, its metric names prefixed.

use std::sync::Arc;

use axum::Router;
use axum::extract::Path;
use axum::http::header::{ACCEPT, ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_TYPE, VARY};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::{Compression, Format, prefixed, render_all};
use crate::metrics::{Producer, Registries};

/// The metric name prefix of an enabled stored Prometheus integration, by id.
pub type Prefixes = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Renders every producer of `registries` (with `prefix` on every name, if given), compressed
/// as the request's `Accept` and `Accept-Encoding` ask, on a blocking thread: a large scrape is
/// CPU work.
async fn scrape(
    registries: Arc<Registries>,
    headers: HeaderMap,
    prefix: Option<String>,
) -> Response {
    let header = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let format = Format::negotiate(header(ACCEPT));
    let compression = Compression::negotiate(header(ACCEPT_ENCODING));
    let body = tokio::task::spawn_blocking(move || {
        let producers = registries.all();
        let pairs: Vec<_> = producers.iter().map(Producer::pair).collect();
        let text = render_all(format, &pairs);
        let text = match prefix {
            Some(prefix) => prefixed(&text, &prefix),
            None => text,
        };
        compression.apply(text)
    })
    .await
    .unwrap_or_default();
    let mut response = ([(CONTENT_TYPE, format.content_type())], body).into_response();
    let headers = response.headers_mut();
    headers.insert(VARY, HeaderValue::from_static("Accept, Accept-Encoding"));
    if let Some(coding) = compression.header() {
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static(coding));
    }
    response
}

/// The routes over `registries`; `prefixes` names the stored Prometheus integrations.
pub fn router(registries: Arc<Registries>, prefixes: Prefixes) -> Router {
    let all = registries.clone();
    Router::new()
        .route(
            "/metrics",
            get(move |headers: HeaderMap| scrape(all.clone(), headers, None)),
        )
        .route(
            "/metrics/{id}",
            get(
                move |Path(id): Path<String>, headers: HeaderMap| async move {
                    let Some(prefix) = prefixes(&id) else {
                        let message = format!("no enabled prometheus integration `{id}`");
                        return (StatusCode::NOT_FOUND, message).into_response();
                    };
                    scrape(registries.clone(), headers, Some(prefix)).await
                },
            ),
        )
}
