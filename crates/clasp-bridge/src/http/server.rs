//! The HTTP bridge: `GET /params/{address}`, `PUT /params/{address}`, `POST /events/{address}`,
//! `GET /params?pattern=…`, `GET /stream?pattern=…` (Server-Sent Events), `GET /openapi.json`.
//! Each request acts with the scopes of its bearer token: the bridge opens (and keeps, up to
//! a bound) one router session per token, so the router's own authentication and scopes
//! decide, and a request without a token is an anonymous client.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use clasp_mapping::{Write, WriteKind};
use clasp_proto::json::{from_json_within, to_json};
use clasp_proto::{ParamValue, SignalType};
use futures_util::{Stream, StreamExt};
use serde::Deserialize;
use serde_json::{Value as Json, json};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use super::webhook::{WebhookConfig, WebhookStats};
use crate::link::{BridgeError, RouterLink, Update};

/// Router sessions kept for distinct tokens; past it the oldest is closed.
const MAX_SESSIONS: usize = 256;
/// Largest request body.
const MAX_BODY: usize = 64 * 1024;
/// Deepest JSON nesting accepted in a body.
const MAX_DEPTH: usize = 32;

/// One HTTP bridge.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpBridgeConfig {
    /// The TCP address to serve on, e.g. `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// Changes POSTed to URLs as they happen.
    #[serde(default)]
    pub webhooks: Vec<WebhookConfig>,
}

/// Counters of a running HTTP bridge.
#[derive(Debug, Default)]
pub struct HttpStats {
    /// Requests answered.
    pub requests: AtomicU64,
    /// Requests refused (4xx) or failed (5xx).
    pub errors: AtomicU64,
    /// Events sent on `/stream`.
    pub streamed: AtomicU64,
    /// The webhooks' counters.
    pub webhooks: Arc<WebhookStats>,
}

#[derive(Clone)]
struct AppState {
    base: RouterLink,
    sessions: Arc<Mutex<Sessions>>,
    stats: Arc<HttpStats>,
}

#[derive(Default)]
struct Sessions {
    links: HashMap<Option<String>, RouterLink>,
    order: std::collections::VecDeque<Option<String>>,
}

/// An HTTP bridge bound, ready to [`HttpBridge::run`].
#[derive(Debug)]
pub struct HttpBridge {
    listener: tokio::net::TcpListener,
    base: RouterLink,
    webhooks: Vec<super::webhook::Subscribed>,
}

impl HttpBridge {
    /// Binds the port and subscribes the webhooks. `base` is the bridge's own link: requests
    /// open their sessions next to it ([`RouterLink::open_as`]); webhooks use it.
    pub async fn start(base: RouterLink, cfg: HttpBridgeConfig) -> Result<HttpBridge, BridgeError> {
        let listener = tokio::net::TcpListener::bind(cfg.listen)
            .await
            .map_err(|e| {
                BridgeError::Device(format!("cannot listen for HTTP on {}: {e}", cfg.listen))
            })?;
        tracing::info!(listen = %listener.local_addr().map_or(cfg.listen, |a| a), "HTTP bridge running");
        let webhooks = super::webhook::subscribe(&base, cfg.webhooks).await?;
        Ok(HttpBridge {
            listener,
            base,
            webhooks,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `stop`.
    pub async fn run(
        self,
        stats: Arc<HttpStats>,
        stop: CancellationToken,
    ) -> Result<(), BridgeError> {
        super::webhook::spawn(self.webhooks, stats.webhooks.clone(), stop.clone())?;
        let state = AppState {
            base: self.base,
            sessions: Arc::new(Mutex::new(Sessions::default())),
            stats,
        };
        let app = Router::new()
            .route("/params", get(list))
            .route("/params/{*address}", get(get_param).put(put_param))
            .route("/events/{*address}", post(post_event))
            .route("/stream", get(stream))
            .route(
                "/openapi.json",
                get(|| async { axum::Json(super::api::openapi()) }),
            )
            .layer(DefaultBodyLimit::max(MAX_BODY))
            .with_state(state);
        axum::serve(self.listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await
            .map_err(|e| BridgeError::Device(format!("HTTP server: {e}")))
    }
}

/// An error answer: status and `{"error": …}`.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, axum::Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<BridgeError> for ApiError {
    fn from(e: BridgeError) -> Self {
        let status = match &e {
            BridgeError::NotFound(_) => StatusCode::NOT_FOUND,
            BridgeError::Forbidden(_) => StatusCode::FORBIDDEN,
            BridgeError::Router { .. } | BridgeError::Refused(_) => StatusCode::UNAUTHORIZED,
            BridgeError::Client(c) => match c.code() {
                Some(
                    clasp_proto::ErrorCode::Unauthorized | clasp_proto::ErrorCode::TokenExpired,
                ) => StatusCode::UNAUTHORIZED,
                Some(_) => StatusCode::CONFLICT,
                None if matches!(c, clasp_client::Error::InvalidAddress { .. }) => {
                    StatusCode::BAD_REQUEST
                }
                None => StatusCode::BAD_GATEWAY,
            },
            _ => StatusCode::BAD_GATEWAY,
        };
        ApiError(status, e.to_string())
    }
}

impl AppState {
    /// The session for the request's bearer token (opened on first use).
    async fn link(&self, headers: &HeaderMap) -> Result<RouterLink, ApiError> {
        let token = match headers.get(header::AUTHORIZATION) {
            None => None,
            Some(v) => {
                let v = v.to_str().unwrap_or_default();
                match v.strip_prefix("Bearer ") {
                    Some(t) if !t.trim().is_empty() => Some(t.trim().to_owned()),
                    _ => {
                        return Err(ApiError(
                            StatusCode::UNAUTHORIZED,
                            "the Authorization header must be `Bearer <token>`".into(),
                        ));
                    }
                }
            }
        };
        {
            let s = self.sessions.lock().await;
            if let Some(l) = s.links.get(&token)
                && l.is_connected()
            {
                return Ok(l.clone());
            }
        }
        // Opened without holding the lock: a slow router answer holds up no other request.
        let link = self.base.open_as(token.as_deref()).await.map_err(|e| {
            let why = match &token {
                None => {
                    format!("the router refused an anonymous session ({e}); send a bearer token")
                }
                Some(_) => format!("the router refused the token: {e}"),
            };
            ApiError(StatusCode::UNAUTHORIZED, why)
        })?;
        let mut s = self.sessions.lock().await;
        if let Some(l) = s.links.get(&token)
            && l.is_connected()
        {
            // Another request opened one meanwhile: use it (this one closes when dropped).
            return Ok(l.clone());
        }
        if s.links.len() >= MAX_SESSIONS
            && let Some(old) = s.order.pop_front()
        {
            s.links.remove(&old);
        }
        s.order.retain(|t| *t != token);
        s.order.push_back(token.clone());
        s.links.insert(token, link.clone());
        Ok(link)
    }

    fn count<T>(&self, r: Result<T, ApiError>) -> Result<T, ApiError> {
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        if r.is_err() {
            self.stats.errors.fetch_add(1, Ordering::Relaxed);
        }
        r
    }
}

fn param_json(p: &ParamValue) -> Json {
    json!({
        "address": &*p.address,
        "value": to_json(&p.value),
        "revision": p.revision,
        "writer": p.writer.as_deref(),
        "timestamp": p.timestamp,
    })
}

fn body_value(body: &Bytes, empty_is_null: bool) -> Result<clasp_proto::Value, ApiError> {
    if body.is_empty() && empty_is_null {
        return Ok(clasp_proto::Value::Null);
    }
    let j: Json = serde_json::from_slice(body).map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("the body is not JSON: {e}"),
        )
    })?;
    from_json_within(&j, MAX_DEPTH).ok_or_else(|| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("the body nests deeper than {MAX_DEPTH} levels"),
        )
    })
}

#[derive(Deserialize)]
struct PatternQuery {
    pattern: Option<String>,
}

async fn get_param(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(address): Path<String>,
) -> Result<axum::Json<Json>, ApiError> {
    let r = async {
        let link = st.link(&headers).await?;
        let address = format!("/{address}");
        let found = link.read(&address).await?;
        found
            .first()
            .map(|p| axum::Json(param_json(p)))
            .ok_or_else(|| {
                ApiError(
                    StatusCode::NOT_FOUND,
                    format!("nothing is stored at {address}"),
                )
            })
    }
    .await;
    st.count(r)
}

async fn list(
    State(st): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<PatternQuery>,
) -> Result<axum::Json<Json>, ApiError> {
    let r = async {
        let link = st.link(&headers).await?;
        let pattern = q.pattern.unwrap_or_else(|| "/**".into());
        let params = match link.read(&pattern).await {
            Ok(p) => p,
            Err(BridgeError::NotFound(_)) => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        let items: Vec<Json> = params.iter().map(param_json).collect();
        Ok(axum::Json(json!({ "count": items.len(), "params": items })))
    }
    .await;
    st.count(r)
}

async fn put_param(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(address): Path<String>,
    body: Bytes,
) -> Result<axum::Json<Json>, ApiError> {
    let r = async {
        let value = body_value(&body, false)?;
        let link = st.link(&headers).await?;
        let address = format!("/{address}");
        let revision = link.set_confirmed(&address, value.clone()).await?;
        Ok(axum::Json(json!({
            "address": address,
            "value": to_json(&value),
            "revision": revision,
        })))
    }
    .await;
    st.count(r)
}

async fn post_event(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(address): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, axum::Json<Json>), ApiError> {
    let r = async {
        let value = body_value(&body, true)?;
        let link = st.link(&headers).await?;
        let address = format!("/{address}");
        let w = Write {
            address: address.clone(),
            value,
            kind: WriteKind::Event,
            rule: 0,
            feedback: false,
        };
        link.write(&w).await?;
        // A PING: the router has taken the event (or refused it) when this returns.
        link.sync().await?;
        Ok((
            StatusCode::ACCEPTED,
            axum::Json(json!({ "address": address, "status": "published" })),
        ))
    }
    .await;
    st.count(r)
}

async fn stream(
    State(st): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<PatternQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let r = async {
        let link = st.link(&headers).await?;
        let pattern = q.pattern.unwrap_or_else(|| "/**".into());
        let sub = link.subscribe(&pattern).await?;
        Ok(sub)
    }
    .await;
    let sub = st.count(r)?;
    let stats = st.stats.clone();
    let events = sub.map(move |u: Update| {
        stats.streamed.fetch_add(1, Ordering::Relaxed);
        let kind = kind_name(u.kind);
        let data = json!({
            "address": &*u.address,
            "value": to_json(&u.value),
            "kind": kind,
            "revision": u.revision,
        });
        Ok(Event::default().event("update").data(data.to_string()))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// The name of a signal type in JSON answers.
pub(crate) fn kind_name(kind: SignalType) -> &'static str {
    match kind {
        SignalType::Param => "param",
        SignalType::Event => "event",
        SignalType::Stream => "stream",
        SignalType::Gesture => "gesture",
        _ => "timeline",
    }
}
