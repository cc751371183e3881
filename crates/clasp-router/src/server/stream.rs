//! Connections over byte streams (raw TCP, a QUIC bidirectional stream): the same router
//! connection as a WebSocket one (core connection, batched input, an [`Outbox`] drained by a
//! writer task on the writer pool, handshake and idle timeouts, close grace), with the way
//! frames are delimited on the stream as a parameter ([`Framing`]).
//!
//! Bad input never desynchronises the stream: the framing skips what it cannot use and says
//! why, the peer gets a CLASP ERROR, and the connection goes on.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use clasp_proto::{ErrorCode, ErrorMessage, Message, encode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::Shared;
use super::cause::CloseCause;
use super::outbox::Outbox;
use crate::core::{CloseReason, ConnId, Outgoing};

/// Most frames handled under one core lock.
const MAX_BATCH: usize = 64;
/// Bytes read from the stream at a time (per connection, so kept small).
const READ_BUFFER: usize = 8 * 1024;
/// How long the writer may take to send what is queued and end the stream once the
/// connection ends.
pub(crate) const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Something wrong in the byte stream, already skipped: the peer is told with an ERROR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FramingError {
    /// The ERROR code sent.
    pub(crate) code: ErrorCode,
    /// The ERROR message sent.
    pub(crate) message: String,
}

/// How CLASP frames are delimited on a byte stream. Sans-IO: bytes in, whole frames out.
pub(crate) trait Framing: Send + 'static {
    /// Appends bytes read from the stream.
    fn push(&mut self, data: &[u8]);
    /// The next whole CLASP frame, `None` if more bytes are needed, or a problem the reader
    /// has already recovered from. Called until `None` after each push.
    fn next_frame(&mut self) -> Option<Result<Bytes, FramingError>>;
    /// Appends `frame` (a whole CLASP frame) to `out` as it goes on the wire.
    fn encode(frame: &[u8], out: &mut BytesMut);
}

/// The writing half of a stream, which knows how to end its connection.
pub(crate) trait StreamEnd: AsyncWrite + Unpin + Send + 'static {
    /// Ends the stream after everything written so far, telling the peer why if the
    /// transport can (bounded by the caller's grace period).
    fn end(self, reason: CloseReason) -> impl std::future::Future<Output = ()> + Send;
}

/// Serves one router connection over `reader`/`writer` until either side ends it.
pub(crate) async fn serve<R, W, F>(
    shared: Arc<Shared>,
    mut reader: R,
    writer: W,
    mut framing: F,
    peer: SocketAddr,
    transport: &'static str,
    accepted: std::time::Instant,
) where
    R: AsyncRead + Unpin + Send,
    W: StreamEnd,
    F: Framing,
{
    let outbox = Outbox::new(shared.config.outbox, shared.counters.clone());
    outbox.set_peer(transport, peer.to_string());
    let conn = shared.with_core(|core, now| core.open(super::Link::Wire(outbox.clone()), now));
    tracing::debug!(%peer, ?conn, transport, "connection opened");
    let write_task = shared.writers.spawn(write_loop::<W, F>(
        writer,
        outbox.clone(),
        shared.config.ping_interval,
    ));
    let reason = read_loop(&shared, conn, &outbox, &mut reader, &mut framing, accepted).await;
    let session = shared.with_core(|core, now| {
        let id = core.session_id(conn).map(str::to_owned);
        if reason == CloseCause::HandshakeTimeout {
            core.count_refusal(crate::core::RefusalKind::HandshakeTimeout);
        }
        core.close(conn, now);
        id
    });
    tracing::debug!(%peer, ?session, %reason, transport, "connection closed");
    outbox.request_close(CloseReason::Shutdown);
    let mut write_task = write_task;
    if tokio::time::timeout(CLOSE_GRACE + Duration::from_secs(1), &mut write_task)
        .await
        .is_err()
    {
        write_task.abort();
        tracing::debug!(%peer, transport, "writer stuck on a full stream: connection dropped");
    }
}

async fn read_loop<R, F>(
    shared: &Shared,
    conn: ConnId,
    outbox: &Outbox,
    reader: &mut R,
    framing: &mut F,
    accepted: std::time::Instant,
) -> CloseCause
where
    R: AsyncRead + Unpin + Send,
    F: Framing,
{
    let cfg = &shared.config;
    let mut established = false;
    let mut buf = vec![0u8; READ_BUFFER];
    let mut batch: Vec<Bytes> = Vec::new();
    // HELLO must arrive by this time however the peer dribbles its bytes.
    let hello_by = tokio::time::Instant::from_std(accepted + cfg.handshake_timeout);
    loop {
        let deadline = if established {
            tokio::time::Instant::now() + cfg.idle_timeout
        } else {
            hello_by
        };
        let read = tokio::select! {
            r = tokio::time::timeout_at(deadline, reader.read(&mut buf)) => r,
            () = outbox.closed() => return CloseCause::ClosedByRouter,
        };
        let n = match read {
            Err(_) if established => return CloseCause::IdleTimeout,
            Err(_) => return CloseCause::HandshakeTimeout,
            Ok(Ok(0)) => return CloseCause::PeerClosed,
            Ok(Err(_)) => return CloseCause::TransportError,
            Ok(Ok(n)) => n,
        };
        framing.push(&buf[..n]);
        while let Some(item) = framing.next_frame() {
            match item {
                Ok(frame) => {
                    batch.push(frame);
                    if batch.len() >= MAX_BATCH {
                        established = handle(shared, conn, &mut batch);
                    }
                }
                Err(e) => {
                    // What came before the bad bytes is answered first.
                    if !batch.is_empty() {
                        established = handle(shared, conn, &mut batch);
                    }
                    tracing::debug!(?conn, code = %e.code, message = %e.message, "bad input skipped");
                    shared.with_core(|core, _| core.count_rejected());
                    report(outbox, e);
                }
            }
        }
        if !batch.is_empty() {
            established = handle(shared, conn, &mut batch);
        }
    }
}

/// Routes `batch` (emptied) under one core lock; whether the connection has a session.
fn handle(shared: &Shared, conn: ConnId, batch: &mut Vec<Bytes>) -> bool {
    let established = shared.with_core(|core, now| {
        core.handle_many(conn, batch, now);
        core.session_id(conn).is_some()
    });
    batch.clear();
    established
}

/// Queues an ERROR about unusable input for the peer.
fn report(outbox: &Outbox, e: FramingError) {
    let msg = Message::Error(ErrorMessage {
        code: e.code,
        message: e.message.into(),
        address: None,
        correlation_id: None,
    });
    if let Ok(frame) = encode(&msg) {
        outbox.send(Outgoing::Control(frame));
    }
}

async fn write_loop<W: StreamEnd, F: Framing>(mut w: W, outbox: Outbox, ping_interval: Duration) {
    // Streams have no transport-level ping that reaches the reader: a CLASP PING makes live
    // clients answer, which keeps the idle timeout from closing them.
    let ping = encode(&Message::Ping).ok();
    let mut tick = tokio::time::interval(ping_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let mut buf = BytesMut::with_capacity(READ_BUFFER);
    let reason = loop {
        let mut pinging = false;
        tokio::select! {
            () = outbox.ready() => {}
            _ = tick.tick() => pinging = true,
        }
        if pinging && let Some(p) = &ping {
            F::encode(p, &mut buf);
        }
        let close = outbox.drain_with(|f| F::encode(&f, &mut buf));
        if !buf.is_empty() {
            if w.write_all(&buf).await.is_err() || w.flush().await.is_err() {
                return;
            }
            buf.clear();
            if buf.capacity() > 4 * READ_BUFFER {
                buf = BytesMut::with_capacity(READ_BUFFER);
            }
        }
        if let Some(reason) = close {
            break reason;
        }
    };
    let _ = tokio::time::timeout(CLOSE_GRACE, w.end(reason)).await;
}
