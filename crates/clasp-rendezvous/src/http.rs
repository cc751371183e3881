//! The HTTP API on axum: routes, error bodies, rate limiting, and a dedicated-port server.

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde::Deserialize;
use tokio::net::TcpListener;
use tower_http::cors::CorsLayer;

use crate::model::Registration;
use crate::service::{RATE_LIMIT_ALL_SOURCES, Refusal, RendezvousError, RendezvousService};
use crate::{OPENAPI_JSON, SECRET_HEADER};

/// Default `limit` of discover.
const DEFAULT_LIMIT: usize = 100;
/// Largest `limit` of discover.
const MAX_LIMIT: usize = 1000;

/// The API routes (`/api/v1/...`), for a dedicated port ([`serve`]) or to merge into another
/// axum app (e.g. via `Server::with_http` on the router's WebSocket port). Per-source limits
/// use the peer address from `ConnectInfo<SocketAddr>`; without it, every request counts as one
/// source ([`RATE_LIMIT_ALL_SOURCES`]). The first request starts the maintenance task.
pub fn routes(service: RendezvousService) -> Router {
    let body_limit = service.config().max_body_bytes;
    Router::new()
        .route("/api/v1/register", post(register))
        .route("/api/v1/discover", get(discover))
        .route("/api/v1/refresh/{id}", post(refresh))
        .route("/api/v1/unregister/{id}", delete(unregister))
        .route("/api/v1/health", get(health))
        .route("/api/v1/openapi.json", get(openapi))
        .route_layer(middleware::from_fn_with_state(service.clone(), guard))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(CorsLayer::permissive())
        .with_state(service)
}

/// Serves the API on `listener` (e.g. the relay's `--rendezvous-port 7340`) until `shutdown`
/// completes, then closes the service ([`RendezvousService::close`]: pending refreshes are
/// written and the store is released).
pub async fn serve(
    listener: TcpListener,
    service: RendezvousService,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RendezvousError> {
    service.start_maintenance();
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "rendezvous API listening");
    }
    let app = routes(service.clone()).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await?;
    service.close().await
}

/// An error answer: status and `{"error": message}`.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    message: String,
    retry_after: Option<Duration>,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            retry_after: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.message });
        let mut response = (self.status, Json(body)).into_response();
        let headers = response.headers_mut();
        if let Some(wait) = self.retry_after {
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::Invalid(m) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, m),
            Refusal::SourceFull(n) => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "this source already has {n} registrations, the limit; unregister one or let it expire"
                ),
            ),
            Refusal::NotFound => {
                ApiError::new(StatusCode::NOT_FOUND, "no such device (unknown or expired)")
            }
            Refusal::WrongSecret => ApiError::new(
                StatusCode::FORBIDDEN,
                "missing or wrong owner secret (X-Clasp-Secret header)",
            ),
            Refusal::Storage(e) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the registration could not be stored: {e}"),
            ),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        // 400 malformed JSON, 422 missing field / wrong type, 415 content type, 413 too big.
        ApiError::new(r.status(), r.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, r.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, r.body_text())
    }
}

/// The peer address of a request, or [`RATE_LIMIT_ALL_SOURCES`].
fn peer_ip(extensions: &axum::http::Extensions) -> IpAddr {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(RATE_LIMIT_ALL_SOURCES, |c| c.0.ip())
}

/// The request's source address (never rejects).
struct Source(IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for Source {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        Ok(Source(peer_ip(&parts.extensions)))
    }
}

/// Starts maintenance and applies the per-source rate limit (not to health).
async fn guard(State(service): State<RendezvousService>, req: Request, next: Next) -> Response {
    service.start_maintenance();
    if req.uri().path() != "/api/v1/health"
        && let Err(wait) = service.take_token(peer_ip(req.extensions()))
    {
        return ApiError {
            status: StatusCode::TOO_MANY_REQUESTS,
            message: "too many requests from this address; slow down".to_owned(),
            retry_after: Some(wait),
        }
        .into_response();
    }
    next.run(req).await
}

/// Checks `Authorization: Bearer <token>` when auth is configured.
fn check_auth(service: &RendezvousService, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(check) = &service.config().auth else {
        return Ok(());
    };
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
    if check(token) {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::UNAUTHORIZED,
        match token {
            None => "authentication required: send Authorization: Bearer <token>",
            Some(_) => "the bearer token is not valid",
        },
    ))
}

fn secret(headers: &HeaderMap) -> Option<&str> {
    headers.get(SECRET_HEADER).and_then(|v| v.to_str().ok())
}

async fn register(
    State(service): State<RendezvousService>,
    Source(ip): Source,
    headers: HeaderMap,
    body: Result<Json<Registration>, JsonRejection>,
) -> Result<Response, ApiError> {
    check_auth(&service, &headers)?;
    let Json(registration) = body?;
    let registered = service.register(registration, ip).await?;
    Ok((StatusCode::CREATED, Json(registered)).into_response())
}

#[derive(Debug, Deserialize)]
struct DiscoverParams {
    tag: Option<String>,
    feature: Option<String>,
    limit: Option<String>,
}

async fn discover(
    State(service): State<RendezvousService>,
    query: Result<Query<DiscoverParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query?;
    let limit = match q.limit.as_deref() {
        None => DEFAULT_LIMIT,
        Some(s) => s
            .parse::<u64>()
            .map_err(|_| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("limit must be a non-negative integer, not {s:?}"),
                )
            })?
            .min(MAX_LIMIT as u64) as usize,
    };
    let devices = service.discover(q.tag.as_deref(), q.feature.as_deref(), limit);
    Ok(Json(devices).into_response())
}

async fn refresh(
    State(service): State<RendezvousService>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let Path(id) = id?;
    service.refresh(&id, secret(&headers))?;
    Ok(StatusCode::OK)
}

async fn unregister(
    State(service): State<RendezvousService>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    check_auth(&service, &headers)?;
    let Path(id) = id?;
    service.unregister(&id, secret(&headers)).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn health() -> &'static str {
    "OK"
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON).into_response()
}
