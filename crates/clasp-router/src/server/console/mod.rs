//! The web console at `/console`: a page served from the binary (its HTML, script and style
//! are in `crates/clasp-router/console/`, included at build time) and its live feed on
//! `/console/ws`.
//!
//! The feed is JSON over a WebSocket (see `protocol.rs`). The page sends `hello` with the
//! viewer's token; the router opens an in-process session for the viewer through the typed
//! door with that token (named `console`), so the viewer sees what the token may read and
//! the console's edits pass the same scope checks as any client's, refused with the router's
//! reason. Nothing of the console runs while nobody has it open.

mod live;
mod protocol;

use axum::Router as HttpRouter;
use axum::extract::State;
use axum::extract::ws::WebSocketUpgrade;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::ws::AppState;

const INDEX: &str = include_str!("../../../console/index.html");
const SCRIPT: &str = include_str!("../../../console/console.js");
const STYLE: &str = include_str!("../../../console/console.css");

/// What the console's page may load and connect to: only the router itself.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The console's routes, to merge into the router's HTTP service.
pub(crate) fn routes() -> HttpRouter<AppState> {
    HttpRouter::new()
        .route("/console", get(index))
        .route("/console/", get(index))
        .route("/console/console.js", get(script))
        .route("/console/console.css", get(style))
        .route("/console/ws", get(feed))
}

fn asset(body: &'static str, kind: &'static str) -> Response {
    let mut r = (StatusCode::OK, body).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

async fn index() -> Response {
    asset(INDEX, "text/html; charset=utf-8")
}

async fn script() -> Response {
    asset(SCRIPT, "text/javascript; charset=utf-8")
}

async fn style() -> Response {
    asset(STYLE, "text/css; charset=utf-8")
}

async fn feed(State(state): State<AppState>, ws: WebSocketUpgrade) -> Response {
    let shared = state.shared.clone();
    let tracker = state.tracker.clone();
    let sources = state.metrics.clone();
    ws.max_message_size(live::MAX_CLIENT_MESSAGE)
        .on_upgrade(move |socket| tracker.track_future(live::serve(shared, sources, socket)))
}
