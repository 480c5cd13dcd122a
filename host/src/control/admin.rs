//! The admin API: integrations, plugins and delivery status over HTTP, behind a bearer token,
//! with JSON errors that name the problem.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Extension, Path, Query, Request, State};
use axum::http::StatusCode;
use axum::http::header::{self, AUTHORIZATION};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use super::history::Histories;
use super::integrations::{ControlError, Integrations};
use super::spec::{BodyError, Change};
use super::tenants::{TenantError, Tenants};
use crate::clock::unix_nanos;
use crate::config::TenantLimits;
use crate::metrics::{Registries, Registry};
use crate::plugins::{Health, PluginSet, UploadError};
use crate::server::{Addresses, BindError, Listeners, Protocol, bind};
use crate::sources::scrape::scraper::Board;
use crate::tenancy::{Principal, Refused, Role, Tenancy};
use bytes::Bytes;

/// Who and where the host is, for the status page's header.
#[derive(Debug, Clone, serde::Serialize)]
pub struct About {
    /// The machine's host name.
    pub host_name: String,
    /// wasmtel's version.
    pub version: &'static str,
    /// When the host started (Unix milliseconds).
    pub started_unix_ms: u64,
    /// Where it keeps its files.
    pub data_dir: String,
    /// Each listener's address by what it serves (`intake`, `otlp_grpc`, `prometheus`, `admin`).
    pub addresses: std::collections::BTreeMap<&'static str, String>,
}

/// Serves the admin API and status page as `config` says, reading the integrations and
/// histories of `tenants`, `plugins` and `registries` (the host's listeners at `at`), and
/// samples the histories until the listeners stop; the address it listens on.
pub async fn serve(
    config: &crate::config::Config,
    listeners: &mut Listeners,
    at: Addresses,
    tenants: Tenants,
    (plugins, scrapes): (Arc<PluginSet>, Board),
    registries: &Arc<Registries>,
) -> Result<std::net::SocketAddr, BindError> {
    let (listener, local) = bind("admin", config.admin.listen).await?;
    let sampling = tenants
        .histories()
        .clone()
        .sample_every(registries.clone(), listeners.stopped());
    let addresses = Addresses {
        admin: Some(local),
        ..at
    };
    let tenancy = tenants.tenancy().clone();
    let sources = Sources {
        integrations: tenants.integrations().clone(),
        plugins,
        scrapes,
        registry: registries.own().registry.clone(),
        histories: tenants.histories().clone(),
        about: About::new(registries, &config.data_dir(), addresses.listed()),
        tenants,
        max_plugin_bytes: config
            .tenancy
            .max_plugin_bytes
            .unwrap_or(crate::config::DEFAULT_MAX_PLUGIN_BYTES),
    };
    listeners.serve_bound(listener, router(sources, tenancy), Protocol::Http1);
    listeners.tasks.push(sampling);
    Ok(local)
}

impl About {
    /// The host of `registries` (its `host.name`), started now, keeping its files in
    /// `data_dir`, listening on `addresses`.
    pub fn new(
        registries: &Registries,
        data_dir: &std::path::Path,
        addresses: std::collections::BTreeMap<&'static str, String>,
    ) -> Self {
        Self {
            host_name: registries
                .own()
                .resource
                .get("host.name")
                .unwrap_or_default(),
            version: env!("CARGO_PKG_VERSION"),
            started_unix_ms: unix_nanos() / 1_000_000,
            data_dir: data_dir.display().to_string(),
            addresses,
        }
    }
}

/// What the admin API reads from the running host.
#[derive(Debug, Clone)]
pub struct Sources {
    /// The integrations it manages.
    pub integrations: Integrations,
    /// The loaded plugins.
    pub plugins: Arc<PluginSet>,
    /// The scrape targets' last scrapes.
    pub scrapes: Board,
    /// The host's own instruments.
    pub registry: Arc<Registry>,
    /// The status page's chart histories.
    pub histories: Arc<Histories>,
    /// The tenants.
    pub tenants: Tenants,
    /// The largest plugin a tenant may upload.
    pub max_plugin_bytes: usize,
    /// Who and where the host is.
    pub about: About,
}

#[derive(Clone)]
struct Admin {
    sources: Arc<Sources>,
    tenancy: Arc<Tenancy>,
}

/// The status page: no external assets; it asks for the token (or takes it from `#token=…`)
/// and reads `/api/v1/status` every two seconds.
const STATUS_PAGE: &str = include_str!("status.html");

/// The admin routes: `/`, `/healthz` and `/readyz` open, `/api/v1/*` behind an admin token
/// that `tenancy` knows (the operator's, or a tenant's for its own things; tenant routes are
/// the operator's only).
pub fn router(sources: Sources, tenancy: Arc<Tenancy>) -> Router {
    let upload_limit = sources.max_plugin_bytes.saturating_add(1);
    let admin = Admin {
        sources: Arc::new(sources),
        tenancy,
    };
    let api = Router::new()
        .route("/api/v1/status", get(status))
        .route("/api/v1/history", get(history))
        .route("/api/v1/integrations", get(list).post(create))
        .route(
            "/api/v1/integrations/{id}",
            get(one).patch(update).delete(delete),
        )
        .route("/api/v1/integrations/{id}/test", post(test))
        .route("/api/v1/integrations/{id}/resume", post(resume))
        .route("/api/v1/integrations/{id}/enable", post(enable))
        .route("/api/v1/integrations/{id}/disable", post(disable))
        .route("/api/v1/plugins", get(plugin_health))
        .route(
            "/api/v1/plugins/{name}",
            axum::routing::put(plugin_upload)
                .layer(axum::extract::DefaultBodyLimit::max(upload_limit)),
        )
        .merge(
            Router::new()
                .route("/api/v1/tenants", get(tenant_list).post(tenant_create))
                .route("/api/v1/scrape", get(scrape_targets))
                .route(
                    "/api/v1/tenants/{name}",
                    get(tenant_one).patch(tenant_update).delete(tenant_delete),
                )
                .route_layer(axum::middleware::from_fn(operator_only)),
        )
        .route_layer(axum::middleware::from_fn_with_state(admin.clone(), auth));
    Router::new()
        .route("/", get(status_page))
        .route(
            "/healthz",
            get(|| async { Json(json!({ "status": "ok" })) }),
        )
        .route(
            "/readyz",
            get(|| async { Json(json!({ "status": "ready" })) }),
        )
        .merge(api)
        .with_state(admin)
}

/// What the page may do: its own inline script and style, requests to this listener only, and
/// no framing by another site.
const PAGE_POLICY: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The status page, with headers that keep it from loading or sending anything elsewhere.
async fn status_page() -> Response {
    (
        [
            (header::CONTENT_SECURITY_POLICY, PAGE_POLICY),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        axum::response::Html(STATUS_PAGE),
    )
        .into_response()
}

/// A JSON error response naming the problem.
fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

fn unknown(id: &str) -> Response {
    error(StatusCode::NOT_FOUND, &format!("no integration `{id}`"))
}

/// Lets a request through only with `Authorization: Bearer <admin token>`, marked with whose
/// token it is.
async fn auth(State(admin): State<Admin>, mut request: Request, next: Next) -> Response {
    let given = request.headers().get(AUTHORIZATION);
    let Some(token) = given.and_then(|v| crate::tenancy::bearer(v.as_bytes())) else {
        return error(
            StatusCode::UNAUTHORIZED,
            "missing bearer token: send `Authorization: Bearer <token>`",
        );
    };
    match admin.tenancy.identify(token, Role::Admin) {
        Ok(who) => {
            request.extensions_mut().insert(who);
            next.run(request).await
        }
        Err(Refused::WrongRole(role)) => error(
            StatusCode::UNAUTHORIZED,
            &format!("invalid bearer token: an {role} token does not work on the admin API"),
        ),
        Err(_) => error(StatusCode::UNAUTHORIZED, "invalid bearer token"),
    }
}

/// The plugins `who` sees: every one for the operator, those of its integrations for a tenant.
fn plugin_list(admin: &Admin, who: &Principal) -> Vec<serde_json::Value> {
    admin
        .sources
        .plugins
        .rows()
        .into_iter()
        .filter(|row| *who == Principal::Operator || row.tenant.as_deref() == who.tenant())
        .map(|row| {
            let (state, reason) = match row.health {
                Health::Running => ("running", None),
                Health::Restarting(why) => ("restarting", Some(why)),
                Health::Failed(why) => ("failed", Some(why)),
            };
            json!({ "name": row.plugin, "kind": row.kind, "integration": row.integration,
                    "state": state, "reason": reason, "stats": row.stats })
        })
        .collect()
}

/// The host's state as `who` may see it: a tenant sees its own integrations and plugins, and
/// none of the host-wide intake counts or GPUs.
async fn status(State(admin): State<Admin>, Extension(who): Extension<Principal>) -> Response {
    let s = &admin.sources;
    let now_ms = unix_nanos() / 1_000_000;
    let mut about = json!(s.about);
    about["uptime_seconds"] = json!(now_ms.saturating_sub(s.about.started_unix_ms) / 1000);
    let operator = who == Principal::Operator;
    about["tenant"] = json!(who.tenant());
    Json(json!({
        "about": about,
        "integrations": s.integrations.list(&who),
        "plugins": plugin_list(&admin, &who),
        "intake": if operator { super::status::intake(&s.registry) } else { json!(null) },
        "gpus": if operator { super::status::gpus(&s.registry) } else { Vec::new() },
        // A discovered pod may be any tenant's: the targets are the operator's.
        "scrape_targets": if operator { s.scrapes.list() } else { Vec::new() },
    }))
    .into_response()
}

/// What `/api/v1/history` takes: how many of the latest points (all kept ones by default).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryQuery {
    points: Option<usize>,
}

async fn history(
    State(admin): State<Admin>,
    Extension(who): Extension<Principal>,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> Response {
    match query {
        Ok(Query(q)) => Json(admin.sources.histories.of(&who).json(q.points)).into_response(),
        Err(e) => error(
            StatusCode::BAD_REQUEST,
            &format!(
                "invalid history query: {} (takes `points`, a whole number)",
                e.body_text()
            ),
        ),
    }
}

async fn list(State(admin): State<Admin>, Extension(who): Extension<Principal>) -> Response {
    Json(json!({ "integrations": admin.sources.integrations.list(&who) })).into_response()
}

async fn one(
    State(admin): State<Admin>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> Response {
    match admin.sources.integrations.get(&who, &id) {
        Some(integration) => Json(integration).into_response(),
        None => unknown(&id),
    }
}

async fn test(
    State(admin): State<Admin>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> Response {
    match admin.sources.integrations.test(&who, &id).await {
        Some(results) => {
            let ok = results.iter().all(|r| r.diagnosis.is_ok());
            Json(json!({ "id": id, "ok": ok, "results": results })).into_response()
        }
        None => unknown(&id),
    }
}

async fn resume(
    State(admin): State<Admin>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> Response {
    match admin.sources.integrations.resume(&who, &id) {
        Some(was_paused) => Json(json!({ "id": id, "resumed": was_paused })).into_response(),
        None => unknown(&id),
    }
}

/// The response for a failed change: the status that fits, and the error (with the field).
fn refused(e: &ControlError) -> Response {
    let status = match e {
        ControlError::NotFound(_) => StatusCode::NOT_FOUND,
        ControlError::ReadOnly(_) => StatusCode::CONFLICT,
        ControlError::Invalid(_) | ControlError::Start(..) => StatusCode::BAD_REQUEST,
        ControlError::Store(_) | ControlError::Crashed(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let field = match e {
        ControlError::Invalid(s) => Some(s.field.clone()),
        _ => None,
    };
    (
        status,
        Json(json!({ "error": e.to_string(), "field": field })),
    )
        .into_response()
}

/// The 400 for a body that is not an integration change, naming what is wrong with it.
fn not_a_change(e: &BodyError) -> Response {
    let message = format!("invalid integration: the body is not a valid integration: {e}");
    error(StatusCode::BAD_REQUEST, &message)
}

async fn create(
    State(admin): State<Admin>,
    Extension(who): Extension<Principal>,
    body: Bytes,
) -> Response {
    let spec = match Change::from_json(&body) {
        Ok(spec) => spec,
        Err(e) => return not_a_change(&e),
    };
    // Starting a plugin integration compiles it: not on the async worker threads.
    let integrations = admin.sources.integrations.clone();
    match blocking(move || integrations.create(&who, spec)).await {
        Ok(integration) => (StatusCode::CREATED, Json(integration)).into_response(),
        Err(e) => refused(&e),
    }
}

async fn update(
    State(admin): State<Admin>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    match Change::from_json(&body) {
        Ok(spec) => change(&admin, who, &id, spec).await,
        Err(e) => not_a_change(&e),
    }
}

async fn change(admin: &Admin, who: Principal, id: &str, spec: Change) -> Response {
    let (integrations, id) = (admin.sources.integrations.clone(), id.to_owned());
    match blocking(move || integrations.update(&who, &id, spec)).await {
        Ok(integration) => Json(integration).into_response(),
        Err(e) => refused(&e),
    }
}

/// Runs a change that may load a plugin on a blocking thread.
async fn blocking<T: Send + 'static>(
    change: impl FnOnce() -> Result<T, ControlError> + Send + 'static,
) -> Result<T, ControlError> {
    tokio::task::spawn_blocking(change)
        .await
        .unwrap_or_else(|e| Err(ControlError::Crashed(e.to_string())))
}

async fn enable(
    State(admin): State<Admin>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> Response {
    change(&admin, who, &id, Change::enabled(true)).await
}

async fn disable(
    State(admin): State<Admin>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> Response {
    change(&admin, who, &id, Change::enabled(false)).await
}

async fn delete(
    State(admin): State<Admin>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> Response {
    let integrations = admin.sources.integrations.clone();
    match blocking(move || integrations.delete(&who, &id)).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => refused(&e),
    }
}

async fn plugin_health(
    State(admin): State<Admin>,
    Extension(who): Extension<Principal>,
) -> Response {
    Json(json!({ "plugins": plugin_list(&admin, &who) })).into_response()
}

/// `GET /api/v1/scrape`: every scrape target's last scrape (the operator's only: a discovered
/// pod may be any tenant's).
async fn scrape_targets(State(admin): State<Admin>) -> Response {
    Json(json!({ "targets": admin.sources.scrapes.list() })).into_response()
}

/// `PUT /api/v1/plugins/{name}`: a tenant's exporter, transform or view, checked as
/// `plugins check` does and stored for that tenant only.
async fn plugin_upload(
    State(admin): State<Admin>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let Some(tenant) = who.tenant().map(str::to_owned) else {
        return error(
            StatusCode::FORBIDDEN,
            "the operator's plugins go in the plugin directory; uploads are a tenant's",
        );
    };
    let (plugins, limit) = (
        admin.sources.plugins.clone(),
        admin.sources.max_plugin_bytes,
    );
    let stored =
        tokio::task::spawn_blocking(move || plugins.upload(&tenant, &name, &body, limit)).await;
    match stored {
        Ok(Ok(world)) => Json(json!({ "plugin": world.to_string() })).into_response(),
        Ok(Err(e)) => {
            let status = match e {
                UploadError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                UploadError::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
                UploadError::Kind { .. } => StatusCode::CONFLICT,
                UploadError::Name(_) | UploadError::Invalid(_) => StatusCode::BAD_REQUEST,
            };
            error(status, &e.to_string())
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// Lets a request to the tenant routes through only with the operator's token (403 for a
/// tenant's).
async fn operator_only(request: Request, next: Next) -> Response {
    match request.extensions().get::<Principal>() {
        Some(Principal::Operator) => next.run(request).await,
        _ => error(
            StatusCode::FORBIDDEN,
            "only the operator's token may manage tenants or read scrape targets",
        ),
    }
}

/// Runs `op` on the tenants on a blocking thread (the store is SQLite): `answer` of its
/// result, else the response its error calls for.
async fn on_tenants<T: Send + 'static>(
    admin: &Admin,
    op: impl FnOnce(&Tenants) -> Result<T, TenantError> + Send + 'static,
    answer: impl FnOnce(T) -> Response,
) -> Response {
    let tenants = admin.sources.tenants.clone();
    match tokio::task::spawn_blocking(move || op(&tenants)).await {
        Ok(Ok(done)) => answer(done),
        Ok(Err(e)) => tenant_refused(&e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// The response for a failed tenant operation.
fn tenant_refused(e: &TenantError) -> Response {
    let status = match e {
        TenantError::Off => StatusCode::CONFLICT,
        TenantError::Name(_) | TenantError::Limits(_) => StatusCode::BAD_REQUEST,
        TenantError::Exists(_) => StatusCode::CONFLICT,
        TenantError::NotFound(_) => StatusCode::NOT_FOUND,
        TenantError::Store(_) | TenantError::Token(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, &e.to_string())
}

/// What `POST /api/v1/tenants` takes.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NewTenant {
    name: String,
    #[serde(default)]
    limits: TenantLimits,
}

/// What `PATCH /api/v1/tenants/{name}` takes.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantChange {
    limits: TenantLimits,
}

/// A JSON body read as `T`, or the 400 naming what is wrong with it.
#[allow(clippy::result_large_err, reason = "the error is the response itself")]
fn tenant_body<T: serde::de::DeserializeOwned>(body: &[u8], takes: &str) -> Result<T, Response> {
    serde_json::from_slice(body).map_err(|e| {
        let message = format!("invalid tenant: {e} (takes {takes})");
        error(StatusCode::BAD_REQUEST, &message)
    })
}

async fn tenant_create(State(admin): State<Admin>, body: Bytes) -> Response {
    let new: NewTenant = match tenant_body(&body, "`name` and optional `limits`") {
        Ok(new) => new,
        Err(refused) => return refused,
    };
    on_tenants(
        &admin,
        move |t| t.create(&new.name, new.limits),
        |created| (StatusCode::CREATED, Json(created)).into_response(),
    )
    .await
}

async fn tenant_list(State(admin): State<Admin>) -> Response {
    match admin.sources.tenants.list() {
        Ok(tenants) => Json(json!({ "tenants": tenants })).into_response(),
        Err(e) => tenant_refused(&e),
    }
}

async fn tenant_one(State(admin): State<Admin>, Path(name): Path<String>) -> Response {
    match admin.sources.tenants.get(&name) {
        Ok(tenant) => Json(tenant).into_response(),
        Err(e) => tenant_refused(&e),
    }
}

async fn tenant_update(
    State(admin): State<Admin>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let change: TenantChange = match tenant_body(&body, "`limits`") {
        Ok(change) => change,
        Err(refused) => return refused,
    };
    on_tenants(
        &admin,
        move |t| t.set_limits(&name, change.limits),
        |tenant| Json(tenant).into_response(),
    )
    .await
}

async fn tenant_delete(State(admin): State<Admin>, Path(name): Path<String>) -> Response {
    on_tenants(
        &admin,
        move |t| t.delete(&name),
        |()| StatusCode::NO_CONTENT.into_response(),
    )
    .await
}
