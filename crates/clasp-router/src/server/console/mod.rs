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
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
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

/// Whether a browser's `Origin` names this router (its `Host`): a page of another site must
/// not drive the console with the viewer's browser. Clients that send no `Origin` (not a
/// browser) are let through: they need the token anyway.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) else {
        return true;
    };
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    origin
        .split_once("://")
        .is_some_and(|(_, rest)| rest.trim_end_matches('/').eq_ignore_ascii_case(host))
}

async fn feed(State(state): State<AppState>, headers: HeaderMap, ws: WebSocketUpgrade) -> Response {
    if !same_origin(&headers) {
        return (
            StatusCode::FORBIDDEN,
            "the console's feed takes pages of this router only (Origin differs from Host)",
        )
            .into_response();
    }
    let shared = state.shared.clone();
    let tracker = state.tracker.clone();
    let sources = state.metrics.clone();
    ws.max_message_size(live::MAX_CLIENT_MESSAGE)
        .on_upgrade(move |socket| tracker.track_future(live::serve(shared, sources, socket)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_pages_of_this_router_drive_the_feed() {
        let h = |origin: Option<&str>, host: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::HOST, HeaderValue::from_str(host).unwrap());
            if let Some(o) = origin {
                m.insert(header::ORIGIN, HeaderValue::from_str(o).unwrap());
            }
            same_origin(&m)
        };
        assert!(h(Some("http://127.0.0.1:7330"), "127.0.0.1:7330"));
        assert!(h(Some("https://Router.local:7330"), "router.local:7330"));
        assert!(h(None, "127.0.0.1:7330"), "not a browser");
        assert!(!h(Some("http://evil.example"), "127.0.0.1:7330"));
        assert!(!h(Some("http://127.0.0.1:7331"), "127.0.0.1:7330"));
        assert!(!h(Some("null"), "127.0.0.1:7330"));
    }
}
