//! WebSocket connections: one reader loop and one writer task per connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Extension, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio_util::task::TaskTracker;

use super::Shared;
use super::listen::IpSlot;
use super::outbox::{Drained, Outbox};
use crate::core::{CloseReason, ConnId};

/// Largest WebSocket message accepted. Bigger than any CLASP frame, so an oversize frame is
/// answered with a CLASP ERROR instead of a dropped connection; anything larger is abuse.
const MAX_WS_MESSAGE: usize = 1 << 20;
/// Most frames handled in one go when several have already arrived.
const MAX_BATCH: usize = 64;
/// Bytes read from the socket at a time.
const READ_BUFFER: usize = 4 * 1024;
/// Bytes of outgoing frames gathered before a write (the writer also flushes after each batch).
const WRITE_BUFFER: usize = 16 * 1024;

#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) shared: Arc<Shared>,
    pub(crate) tracker: TaskTracker,
}

/// Any path: a WebSocket upgrade becomes a CLASP connection; anything else gets a hint.
pub(crate) async fn upgrade(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    slot: Option<Extension<Arc<IpSlot>>>,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let Ok(ws) = ws else {
        return (
            StatusCode::NOT_FOUND,
            "CLASP router: connect with a WebSocket (subprotocol \"clasp\"); see /healthz and /metrics\n",
        )
            .into_response();
    };
    let tracker = state.tracker.clone();
    ws.protocols(["clasp"])
        // Small buffers: they are per connection, and the library defaults (128 KiB each way)
        // would cost ~130 KB of memory per idle client. Larger messages are read in pieces.
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_message_size(MAX_WS_MESSAGE)
        .max_frame_size(MAX_WS_MESSAGE)
        .on_upgrade(move |socket| {
            tracker.track_future(async move {
                // The connection keeps its place in the per-IP count until it ends.
                let _slot = slot;
                serve(state.shared, socket, peer).await;
            })
        })
}

async fn serve(shared: Arc<Shared>, socket: WebSocket, peer: SocketAddr) {
    let outbox = Outbox::new(shared.config.outbox, shared.counters.clone());
    let conn = shared.with_core(|core, now| core.open(Box::new(outbox.clone()), now));
    tracing::debug!(%peer, ?conn, "connection opened");
    let (sink, mut stream) = socket.split();
    let writer = tokio::spawn(write_loop(
        sink,
        outbox.clone(),
        shared.config.ping_interval,
    ));

    let reason = read_loop(&shared, conn, &outbox, &mut stream).await;
    let session = shared.with_core(|core, now| {
        let id = core.session_id(conn).map(str::to_owned);
        core.close(conn, now);
        id
    });
    tracing::debug!(%peer, ?session, reason, "connection closed");
    outbox.request_close(CloseReason::Shutdown);
    let _ = writer.await;
}

async fn read_loop(
    shared: &Shared,
    conn: ConnId,
    outbox: &Outbox,
    stream: &mut futures_util::stream::SplitStream<WebSocket>,
) -> &'static str {
    let cfg = &shared.config;
    let mut established = false;
    loop {
        let limit = if established {
            cfg.idle_timeout
        } else {
            cfg.handshake_timeout
        };
        let next = tokio::select! {
            r = tokio::time::timeout(limit, stream.next()) => r,
            () = outbox.closed() => return "closed by the router",
        };
        match next {
            Err(_) if established => return "idle timeout (no traffic, no pong)",
            Err(_) => {
                return "handshake timeout";
            }
            Ok(None) => return "peer closed",
            Ok(Some(Err(_))) => return "transport error",
            Ok(Some(Ok(msg))) => match msg {
                WsMessage::Binary(data) => {
                    // Take whatever else has already arrived, so a burst is handled under one
                    // lock and its output reaches each subscriber's queue in one batch.
                    let mut batch = vec![data];
                    let mut ended = None;
                    while batch.len() < MAX_BATCH {
                        match stream.next().now_or_never() {
                            Some(Some(Ok(WsMessage::Binary(more)))) => batch.push(more),
                            Some(Some(Ok(WsMessage::Close(_)))) | Some(None) => {
                                ended = Some("peer closed");
                                break;
                            }
                            Some(Some(Err(_))) => {
                                ended = Some("transport error");
                                break;
                            }
                            Some(Some(Ok(_))) => {}
                            None => break,
                        }
                    }
                    established = shared.with_core(|core, now| {
                        core.handle_many(conn, &batch, now);
                        core.session_id(conn).is_some()
                    });
                    if let Some(reason) = ended {
                        return reason;
                    }
                    // This peer is sending flat out and some queue is filling: let the writers
                    // run before reading more, so a fast publisher cannot push its subscribers
                    // into coalescing just by being scheduled ahead of their writers.
                    if batch.len() == MAX_BATCH
                        && shared.counters.backlogged.load(Ordering::Relaxed) > 0
                    {
                        tokio::task::yield_now().await;
                    }
                }
                WsMessage::Close(_) => return "peer closed",
                // Text is not CLASP; pings and pongs only prove the peer is alive.
                WsMessage::Text(_) | WsMessage::Ping(_) | WsMessage::Pong(_) => {}
            },
        }
    }
}

async fn write_loop(
    mut sink: futures_util::stream::SplitSink<WebSocket, WsMessage>,
    outbox: Outbox,
    ping_interval: Duration,
) {
    let mut drained = Drained::default();
    let mut ping = tokio::time::interval(ping_interval);
    ping.tick().await;
    loop {
        tokio::select! {
            () = outbox.ready() => {}
            _ = ping.tick() => {
                if sink.send(WsMessage::Ping(Default::default())).await.is_err() {
                    return;
                }
                continue;
            }
        }
        outbox.drain(&mut drained);
        for frame in drained.frames.drain(..) {
            if sink.feed(WsMessage::Binary(frame)).await.is_err() {
                return;
            }
        }
        if sink.flush().await.is_err() {
            return;
        }
        if let Some(reason) = drained.close.take() {
            let (code, text) = match reason {
                CloseReason::Shutdown => (1001, "router closing the connection"),
                CloseReason::Handshake => (1008, "handshake failed"),
                CloseReason::Full => (1013, "router full"),
            };
            let _ = sink
                .send(WsMessage::Close(Some(CloseFrame {
                    code,
                    reason: text.into(),
                })))
                .await;
            let _ = sink.close().await;
            return;
        }
    }
}
