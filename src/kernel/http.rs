//! The HTTP application every service is wrapped in.
//!
//! [`build`] adds the shared endpoints (`/health`, `/ready`, `/metrics`, `/openapi.json`) and the
//! layers every request passes, outermost first:
//!
//! 1. the edge layer, one function doing the per-request work of the kernel:
//!    - request ids (`x-request-id`, generated unless given, echoed back);
//!    - the constitutional hash: every response carries `X-Constitutional-Hash`; a request that
//!      carries the header with another value is answered 409 naming both (DESIGN §3);
//!    - the error normaliser: any 4xx/5xx produced without a JSON body (405 from routing, 408 from
//!      the time-out, 413 from the body limit) gets the standard JSON error body;
//!    - Prometheus HTTP metrics, and a debug-level log line per request;
//! 2. the request time-out and the body-size limit;
//! 3. the token verifier, as a request extension for the [`Principal`](super::auth::Principal)
//!    extractor.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use futures::future::BoxFuture;
use tower_http::timeout::TimeoutLayer;
use utoipa::OpenApi;

use crate::kernel::auth::Verifier;
use crate::kernel::constitution::HashCell;
use crate::kernel::error::ApiError;
use crate::kernel::metrics::Metrics;
use crate::kernel::service::ServiceName;

/// The header that carries the constitutional hash.
pub const HASH_HEADER: &str = "x-constitutional-hash";

/// The header that carries the request id.
pub const REQUEST_ID: &str = "x-request-id";

/// A named readiness check: `Ok` when the dependency is usable.
pub struct ReadyCheck {
    pub name: &'static str,
    pub check: Box<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>,
}

impl ReadyCheck {
    pub fn new<F, Fut>(name: &'static str, f: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<(), String>> + Send + 'static,
    {
        ReadyCheck { name, check: Box::new(move || Box::pin(f())) }
    }
}

impl ReadyCheck {
    /// The check every service with storage has: the store answers.
    pub fn storage(db: crate::kernel::storage::Db) -> Self {
        ReadyCheck::new("storage", move || {
            let db = db.clone();
            async move { db.ping().await.map_err(|e| e.to_string()) }
        })
    }
}

/// The OpenAPI security scheme `bearer` (a JWT from the auth service) that protected routes name
/// in `security(("bearer" = []))`.
pub struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
        );
    }
}

/// What a service contributes to its HTTP application.
pub struct ServiceApp {
    pub name: ServiceName,
    /// The service's own routes, state already applied.
    pub routes: Router,
    /// The OpenAPI description of those routes.
    pub openapi: utoipa::openapi::OpenApi,
    /// What `/ready` checks besides the constitution being loaded.
    pub ready: Vec<ReadyCheck>,
    pub metrics: Metrics,
}

/// What every service's HTTP application shares in one process.
#[derive(Clone)]
pub struct HttpContext {
    pub hash: HashCell,
    pub verifier: Arc<Verifier>,
    pub body_limit_bytes: usize,
    pub request_timeout: Duration,
}

#[derive(OpenApi)]
#[openapi(paths(health, ready, metrics_text, openapi_json))]
struct SharedApi;

struct Shared {
    name: ServiceName,
    ready: Vec<ReadyCheck>,
    metrics: Metrics,
    openapi_json: String,
    hash: HashCell,
}

/// Wraps a service's routes into its complete HTTP application.
pub fn build(app: ServiceApp, ctx: &HttpContext) -> Router {
    let mut openapi = SharedApi::openapi().merge_from(app.openapi);
    openapi.info.title = format!("acgs {}", app.name);
    openapi.info.version = env!("CARGO_PKG_VERSION").to_string();
    openapi.info.description =
        Some(format!("The {} service of acgs. Every response carries X-Constitutional-Hash.", app.name));
    let openapi_text = openapi.to_json().unwrap_or_else(|_| "{}".into());
    let edge = Edge { hash: ctx.hash.clone(), metrics: app.metrics.clone(), service: app.name, ids: RequestIds::new() };
    let shared = Arc::new(Shared {
        name: app.name,
        ready: app.ready,
        metrics: app.metrics,
        openapi_json: openapi_text,
        hash: ctx.hash.clone(),
    });

    let common = Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics_text))
        .route("/openapi.json", get(openapi_json))
        .with_state(shared);

    app.routes
        .merge(common)
        .fallback(not_found)
        .layer(Extension(ctx.verifier.clone()))
        .layer(axum::extract::DefaultBodyLimit::max(ctx.body_limit_bytes))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(ctx.body_limit_bytes))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, ctx.request_timeout))
        .layer(middleware::from_fn_with_state(edge, edge_layer))
}

/// What the edge layer needs.
#[derive(Clone)]
struct Edge {
    hash: HashCell,
    metrics: Metrics,
    service: ServiceName,
    ids: RequestIds,
}

/// The kernel's per-request work in one layer (one layer is measurably cheaper than several):
/// give the request an id (`x-request-id`, kept if the caller sent one, echoed back), refuse a
/// request pinned to another constitutional hash (409 naming both), run the request, give
/// bodiless error responses the JSON error shape, record metrics, log at debug level, and add
/// `X-Constitutional-Hash` to whatever goes out.
async fn edge_layer(State(edge): State<Edge>, mut request: Request, next: Next) -> Response {
    let start = std::time::Instant::now();
    let current = edge.hash.get();
    let method = request.method().clone();
    let route = request.extensions().get::<MatchedPath>().cloned();
    let request_id = match request.headers().get(REQUEST_ID) {
        Some(given) => given.clone(),
        None => {
            let id = edge.ids.next();
            request.headers_mut().insert(REQUEST_ID, id.clone());
            id
        }
    };
    let mut response = match request.headers().get(HASH_HEADER) {
        Some(given) if given.as_bytes() != current.as_bytes() => ApiError::new(
            StatusCode::CONFLICT,
            "constitutional_hash_mismatch",
            format!(
                "request carries constitutional hash {:?} but this deployment's active constitution has hash {:?}",
                String::from_utf8_lossy(given.as_bytes()),
                &*current
            ),
        )
        .into_response(),
        _ => {
            let response = next.run(request).await;
            let status = response.status();
            if status.is_client_error() || status.is_server_error() {
                normalise_error(response).await
            } else {
                response
            }
        }
    };
    let status = response.status();
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    edge.metrics.record(route, method.as_str(), status, start.elapsed());
    tracing::debug!(service = %edge.service, %method, route, status = status.as_u16(),
        request_id = request_id.to_str().unwrap_or("-"), micros = start.elapsed().as_micros() as u64, "request");
    let headers = response.headers_mut();
    headers.insert(REQUEST_ID, request_id);
    if let Ok(value) = HeaderValue::from_str(&current) {
        headers.insert(HASH_HEADER, value);
    }
    response
}

/// Request ids: a random per-process prefix and a counter. Unique without a system call per
/// request (a UUIDv4 would read the kernel's random source every time).
#[derive(Clone)]
struct RequestIds {
    prefix: u32,
    counter: Arc<std::sync::atomic::AtomicU64>,
}

impl RequestIds {
    fn new() -> Self {
        RequestIds { prefix: rand::random(), counter: Arc::new(std::sync::atomic::AtomicU64::new(0)) }
    }

    fn next(&self) -> HeaderValue {
        let n = self.counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        HeaderValue::from_str(&format!("{:08x}-{n:x}", self.prefix)).unwrap_or(HeaderValue::from_static("-"))
    }
}

/// Gives an error response without a JSON body (405 from routing, 408, 413) the standard JSON
/// error shape.
async fn normalise_error(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.ok().and_then(|b| String::from_utf8(b.to_vec()).ok());
    let (code, default) = match status {
        StatusCode::NOT_FOUND => ("not_found", "no such resource"),
        StatusCode::METHOD_NOT_ALLOWED => ("method_not_allowed", "method not allowed on this route"),
        StatusCode::REQUEST_TIMEOUT => ("timeout", "request took longer than http.request_timeout_secs"),
        StatusCode::PAYLOAD_TOO_LARGE => {
            ("payload_too_large", "request body is larger than the configured limit (http.body_limit_bytes)")
        }
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ("unsupported_media_type", "unsupported content type"),
        s if s.is_server_error() => ("internal", "internal error; see the service log"),
        _ => ("bad_request", "bad request"),
    };
    let message = match text {
        Some(t) if !t.trim().is_empty() && status.is_client_error() && status != StatusCode::PAYLOAD_TOO_LARGE => {
            t.trim().to_string()
        }
        _ => default.to_string(),
    };
    let body = ApiError::new(status, code, message).body_json();
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body))
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

/// Liveness: the process is up and serving.
#[utoipa::path(get, path = "/health", responses((status = 200, description = "The service is alive")))]
async fn health(State(shared): State<Arc<Shared>>) -> Response {
    axum::Json(serde_json::json!({
        "status": "ok",
        "service": shared.name.as_str(),
        "version": env!("CARGO_PKG_VERSION"),
    }))
    .into_response()
}

/// Readiness: storage open, constitution loaded, required peers reachable.
#[utoipa::path(get, path = "/ready", responses(
    (status = 200, description = "Every check passed"),
    (status = 503, description = "At least one check failed; the body says which")))]
async fn ready(State(shared): State<Arc<Shared>>) -> Response {
    let mut checks = serde_json::Map::new();
    let mut all_ok = true;
    let hash = shared.hash.get();
    checks.insert("constitution".into(), serde_json::Value::String(format!("ok ({hash})")));
    for check in &shared.ready {
        let result = match tokio::time::timeout(Duration::from_secs(2), (check.check)()).await {
            Ok(r) => r,
            Err(_) => Err("timed out after 2 s".to_string()),
        };
        let text = match result {
            Ok(()) => "ok".to_string(),
            Err(e) => {
                all_ok = false;
                e
            }
        };
        checks.insert(check.name.into(), serde_json::Value::String(text));
    }
    let status = if all_ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = serde_json::json!({
        "status": if all_ok { "ready" } else { "not_ready" },
        "service": shared.name.as_str(),
        "checks": checks,
    });
    (status, axum::Json(body)).into_response()
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
async fn metrics_text(State(shared): State<Arc<Shared>>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], shared.metrics.render()).into_response()
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", responses((status = 200, description = "OpenAPI 3.1 description of this service")))]
async fn openapi_json(State(shared): State<Arc<Shared>>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], shared.openapi_json.clone()).into_response()
}
