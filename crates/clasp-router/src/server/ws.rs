//! WebSocket connections: one reader loop and one writer task per connection, sharing the
//! socket behind a lock that is only held for single non-blocking polls.
//!
//! The reader decodes, routes under the core lock, and hands the output to the recipients'
//! outboxes. When a frame goes to a few connections only, the reader also writes it to their
//! sockets itself if they take it at once (no task switch, no other thread); otherwise each
//! connection's writer task, on the writer pool, drains its outbox.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Extension, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::{FutureExt, Sink as _, StreamExt};
use parking_lot::Mutex;
use tokio_util::task::TaskTracker;

use super::Shared;
use super::cause::CloseCause;
use super::listen::{Accepted, IpSlot};
use super::outbox::{InlineWrite, Outbox};
use crate::core::{CloseReason, ConnId, RefusalKind};

/// Largest WebSocket message accepted. Bigger than any CLASP frame, so an oversize frame is
/// answered with a CLASP ERROR instead of a dropped connection; anything larger is abuse.
const MAX_WS_MESSAGE: usize = 1 << 20;
/// Most frames handled in one go when several have already arrived.
const MAX_BATCH: usize = 64;
/// Fan-outs to at most this many connections are written straight from the reading task, on
/// its thread; larger ones go to the writer pool (see `writers`).
pub(crate) const INLINE_FANOUT: usize = 4;
/// How long the writer may take to send what is queued and the close frame once the
/// connection ends.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// Longest a flat-out publisher waits for filling queues to drain before reading on.
const RELIEF_WAIT: Duration = Duration::from_millis(2);
/// Bytes read from the socket at a time.
const READ_BUFFER: usize = 2 * 1024;
/// Bytes of outgoing frames gathered before a write (the writer also flushes after each batch).
const WRITE_BUFFER: usize = 16 * 1024;

#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) shared: Arc<Shared>,
    pub(crate) tracker: TaskTracker,
    /// More Prometheus text for `/metrics` (see `Server::with_metrics`).
    pub(crate) metrics: Arc<Vec<super::MetricsSource>>,
}

/// Any path: a WebSocket upgrade becomes a CLASP connection; anything else gets a hint.
pub(crate) async fn upgrade(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    slot: Option<Extension<Arc<IpSlot>>>,
    accepted: Option<Extension<Accepted>>,
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
    let accepted = accepted.map_or_else(std::time::Instant::now, |Extension(a)| a.0);
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
                serve(state.shared, socket, peer, accepted).await;
            })
        })
}

async fn serve(
    shared: Arc<Shared>,
    socket: WebSocket,
    peer: SocketAddr,
    accepted: std::time::Instant,
) {
    let outbox = Outbox::new(shared.config.outbox, shared.counters.clone());
    let scheme = if shared.config.tls.is_some() {
        "wss"
    } else {
        "ws"
    };
    outbox.set_peer(scheme, peer.to_string());
    let conn = shared.with_core(|core, now| core.open(super::Link::Wire(outbox.clone()), now));
    tracing::debug!(%peer, ?conn, "connection opened");
    let shared_socket = Arc::new(Socket {
        state: Mutex::new(SocketState {
            ws: socket,
            carry: VecDeque::new(),
            control: None,
            waiting: false,
        }),
    });
    let inline: Arc<dyn InlineWrite> = shared_socket.clone();
    outbox.set_inline(Arc::downgrade(&inline));
    drop(inline);
    let write_task = shared.writers.spawn(write_loop(
        shared_socket.clone(),
        outbox.clone(),
        shared.config.ping_interval,
    ));

    let reason = read_loop(&shared, conn, &outbox, &shared_socket, accepted).await;
    let session = shared.with_core(|core, now| {
        let id = core.session_id(conn).map(str::to_owned);
        if reason == CloseCause::HandshakeTimeout {
            core.count_refusal(RefusalKind::HandshakeTimeout);
        }
        core.close(conn, now);
        id
    });
    tracing::debug!(%peer, ?session, %reason, "connection closed");
    outbox.request_close(CloseReason::Shutdown);
    // A peer that stopped reading can keep the writer waiting for socket space forever; past
    // the grace period the writer is dropped, and with it the socket.
    let mut write_task = write_task;
    if tokio::time::timeout(CLOSE_GRACE, &mut write_task)
        .await
        .is_err()
    {
        write_task.abort();
        tracing::debug!(%peer, "writer stuck on a full socket: connection dropped");
    }
}

async fn read_loop(
    shared: &Shared,
    conn: ConnId,
    outbox: &Outbox,
    socket: &Socket,
    accepted: std::time::Instant,
) -> CloseCause {
    let cfg = &shared.config;
    let mut established = false;
    // HELLO must arrive by this time, whatever else the peer sends meanwhile (pings, text).
    let hello_by = tokio::time::Instant::from_std(accepted + cfg.handshake_timeout);
    loop {
        let deadline = if established {
            tokio::time::Instant::now() + cfg.idle_timeout
        } else {
            hello_by
        };
        let next = tokio::select! {
            r = tokio::time::timeout_at(deadline, socket.next()) => r,
            () = outbox.closed() => return CloseCause::ClosedByRouter,
        };
        match next {
            Err(_) if established => return CloseCause::IdleTimeout,
            Err(_) => return CloseCause::HandshakeTimeout,
            Ok(None) => return CloseCause::PeerClosed,
            Ok(Some(Err(_))) => return CloseCause::TransportError,
            Ok(Some(Ok(msg))) => match msg {
                WsMessage::Binary(data) => {
                    // Take whatever else has already arrived, so a burst is handled under one
                    // lock and its output reaches each subscriber's queue in one batch.
                    let mut batch = vec![data];
                    let mut ended = None;
                    {
                        let mut st = socket.state.lock();
                        while batch.len() < MAX_BATCH {
                            match st.ws.next().now_or_never() {
                                Some(Some(Ok(WsMessage::Binary(more)))) => batch.push(more),
                                Some(Some(Ok(WsMessage::Close(_)))) | Some(None) => {
                                    ended = Some(CloseCause::PeerClosed);
                                    break;
                                }
                                Some(Some(Err(_))) => {
                                    ended = Some(CloseCause::TransportError);
                                    break;
                                }
                                Some(Some(Ok(_))) => {}
                                None => break,
                            }
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
                    if batch.len() == MAX_BATCH && shared.counters.filling() {
                        let relief = shared.counters.relief.notified();
                        tokio::pin!(relief);
                        relief.as_mut().enable();
                        if shared.counters.filling() {
                            shared
                                .counters
                                .publisher_waits
                                .fetch_add(1, Ordering::Relaxed);
                            let _ = tokio::time::timeout(RELIEF_WAIT, relief).await;
                        }
                    }
                }
                WsMessage::Close(_) => return CloseCause::PeerClosed,
                // Text is not CLASP; pings and pongs only prove the peer is alive.
                WsMessage::Text(_) | WsMessage::Ping(_) | WsMessage::Pong(_) => {}
            },
        }
    }
}

/// A connection's WebSocket, shared by its reader, its writer task and inline writes. The lock
/// is only ever held for non-blocking work (one poll), never across an await.
struct Socket {
    state: Mutex<SocketState>,
}

struct SocketState {
    ws: WebSocket,
    /// Frames taken from the outbox but not yet accepted by the sink, oldest first; whoever
    /// writes next writes them before anything newer.
    carry: VecDeque<Bytes>,
    /// A ping or close frame to write after `carry`.
    control: Option<WsMessage>,
    /// The writer task is waiting for socket space (its waker is registered with the socket;
    /// an inline write must not replace it).
    waiting: bool,
}

impl Socket {
    /// The next message from the peer.
    async fn next(&self) -> Option<Result<WsMessage, axum::Error>> {
        std::future::poll_fn(|cx| self.state.lock().ws.poll_next_unpin(cx)).await
    }
}

impl SocketState {
    /// Writes what is in hand (`carry`, then a control frame), then whatever the outbox holds,
    /// and flushes. Frames leave the outbox only once the sink has taken everything before
    /// them, so a reader that stops reading fills the outbox, whose limits then apply. Ready
    /// with the close request (if any) once everything is flushed; pending while the socket is
    /// full; an error when the connection is gone.
    fn poll_send(
        &mut self,
        outbox: &Outbox,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<CloseReason>, ()>> {
        let mut sink = Pin::new(&mut self.ws);
        loop {
            while !self.carry.is_empty() || self.control.is_some() {
                std::task::ready!(sink.as_mut().poll_ready(cx)).map_err(drop)?;
                let msg = match self.carry.pop_front() {
                    Some(frame) => WsMessage::Binary(frame),
                    None => match self.control.take() {
                        Some(msg) => msg,
                        None => break,
                    },
                };
                sink.as_mut().start_send(msg).map_err(drop)?;
            }
            // Taken under the writer lock, so frames keep their order whoever writes them.
            let close = outbox.drain_with(|b| self.carry.push_back(b));
            if self.carry.is_empty() {
                std::task::ready!(sink.as_mut().poll_flush(cx)).map_err(drop)?;
                return Poll::Ready(Ok(close));
            }
        }
    }
}

impl InlineWrite for Socket {
    /// Writes what is queued if the socket takes it now; never waits. Whatever is left (the
    /// writer task is busy, the socket is full, a close is pending: `poll_send` then reports
    /// it) is for the writer task.
    fn try_write(&self, outbox: &Outbox) -> bool {
        let Some(mut st) = self.state.try_lock() else {
            return false;
        };
        if st.waiting {
            return false;
        }
        // A waker that does nothing: if the socket is not ready, the writer task (told so by
        // the `false` returned) polls again with its own.
        let mut cx = Context::from_waker(Waker::noop());
        matches!(st.poll_send(outbox, &mut cx), Poll::Ready(Ok(None)))
    }
}

async fn write_loop(socket: Arc<Socket>, outbox: Outbox, ping_interval: Duration) {
    let mut ping = tokio::time::interval(ping_interval);
    ping.tick().await;
    let mut close = None;
    while close.is_none() {
        let mut pinging = false;
        tokio::select! {
            () = outbox.ready() => {}
            _ = ping.tick() => pinging = true,
        }
        let sent = std::future::poll_fn(|cx| {
            let mut st = socket.state.lock();
            if std::mem::take(&mut pinging) {
                st.control = Some(WsMessage::Ping(Default::default()));
            }
            let r = st.poll_send(&outbox, cx);
            st.waiting = r.is_pending();
            r
        })
        .await;
        match sent {
            Ok(c) => close = c,
            Err(()) => return,
        }
    }
    let (code, text) = match close {
        Some(CloseReason::Handshake) => (1008, "handshake failed"),
        Some(CloseReason::Full) => (1013, "router full"),
        Some(CloseReason::Shutdown) | None => (1001, "router closing the connection"),
    };
    let frame = WsMessage::Close(Some(CloseFrame {
        code,
        reason: text.into(),
    }));
    let mut frame = Some(frame);
    let _ = std::future::poll_fn(|cx| {
        let mut st = socket.state.lock();
        if let Some(f) = frame.take() {
            st.control = Some(f);
        }
        st.waiting = true;
        std::task::ready!(st.poll_send(&outbox, cx))?;
        Pin::new(&mut st.ws).poll_close(cx).map_err(drop)
    })
    .await;
}
