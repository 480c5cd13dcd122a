//! The Prometheus listener's routes: `/metrics`, and `/metrics/{id}` for each stored Prometheus
//! integration, its metric names prefixed.

use std::sync::Arc;

use axum::Router;
use axum::extract::Path;
use axum::http::header::{
    ACCEPT, ACCEPT_ENCODING, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, VARY, WWW_AUTHENTICATE,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::{Compression, Format, prefixed, render_all};
use crate::metrics::{Producer, Registries};
use crate::model::resource::Resource;
use crate::tenancy::{Principal, Role, Tenancy};

/// The metric name prefix of an enabled stored Prometheus integration, by id.
pub type Prefixes = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Renders the producers of `registries` whose resource `keep` takes (with `prefix` on every
/// name, if given), compressed as the request's `Accept` and `Accept-Encoding` ask, on a
/// blocking thread: a large scrape is CPU work.
async fn scrape(
    registries: Arc<Registries>,
    headers: HeaderMap,
    prefix: Option<String>,
    keep: impl Fn(&Resource) -> bool + Send + 'static,
) -> Response {
    let header = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let format = Format::negotiate(header(ACCEPT));
    let compression = Compression::negotiate(header(ACCEPT_ENCODING));
    let body = tokio::task::spawn_blocking(move || {
        let producers = registries.select(keep);
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

/// Who asks, by the admin token of `headers` (`guard` set: tenancy is on and `/metrics` is
/// not public); `Err` is the 401 to answer. Without a guard everyone is the operator.
#[allow(clippy::result_large_err, reason = "the error is the response itself")]
fn caller(guard: Option<&Tenancy>, headers: &HeaderMap) -> Result<Principal, Response> {
    let Some(tenancy) = guard else {
        return Ok(Principal::Operator);
    };
    let token = headers
        .get(AUTHORIZATION)
        .and_then(|v| crate::tenancy::bearer(v.as_bytes()));
    let refused = |why: String| {
        let mut response = (StatusCode::UNAUTHORIZED, why).into_response();
        response
            .headers_mut()
            .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        response
    };
    let Some(token) = token else {
        return Err(refused(
            "a bearer token is required: the operator's or a tenant's admin token".into(),
        ));
    };
    tenancy
        .identify(token, Role::Admin)
        .map_err(|e| refused(e.to_string()))
}

/// The routes over `registries`; `prefixes` names the stored Prometheus integrations. With a
/// `guard`, `/metrics` takes an admin token and a tenant's sees only its own series;
/// `/metrics/{id}` (the operator's integrations) takes the operator's.
pub fn router(
    registries: Arc<Registries>,
    prefixes: Prefixes,
    guard: Option<Arc<Tenancy>>,
) -> Router {
    let (all, open) = (registries.clone(), guard.clone());
    Router::new()
        .route(
            "/metrics",
            get(move |headers: HeaderMap| async move {
                let who = match caller(open.as_deref(), &headers) {
                    Ok(who) => who,
                    Err(refused) => return refused,
                };
                match (who, open) {
                    (Principal::Tenant(tenant), Some(tenancy)) => {
                        let theirs = move |r: &Resource| {
                            tenancy.owner(r.attributes()).as_deref() == Some(&*tenant)
                        };
                        scrape(all.clone(), headers, None, theirs).await
                    }
                    _ => scrape(all.clone(), headers, None, |_| true).await,
                }
            }),
        )
        .route(
            "/metrics/{id}",
            get(
                move |Path(id): Path<String>, headers: HeaderMap| async move {
                    let unknown = || {
                        let message = format!("no enabled prometheus integration `{id}`");
                        (StatusCode::NOT_FOUND, message).into_response()
                    };
                    match caller(guard.as_deref(), &headers) {
                        Err(refused) => return refused,
                        Ok(Principal::Tenant(_)) => return unknown(),
                        Ok(Principal::Operator) => {}
                    }
                    let Some(prefix) = prefixes(&id) else {
                        return unknown();
                    };
                    scrape(registries.clone(), headers, Some(prefix), |_| true).await
                },
            ),
        )
}
