//! One MQTT connection's socket loop around its session state machine: CONNECT, the
//! takeover of an older connection with the same client id, reading and writing, the
//! keep-alive, and what becomes of the session when the connection ends.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use clasp_router::server::IpSlot;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::MqttConfig;
use crate::door::CoreDoor;
use crate::packet::{
    self, Connect, DisconnectReason, FrameError, Outbound, Refuse, ServerCaps, Version,
};
use crate::registry::{DelayedWill, Kept, Live, Owner, Shared};
use crate::session::alias::TOPIC_ALIAS_MAX;
use crate::session::{End, Session};

/// How long a newer connection waits for the one it takes over to end.
const TAKEOVER_WAIT: Duration = Duration::from_secs(5);

/// How long a connection taken over may take to send its last bytes (MQTT 5 DISCONNECT 0x8E).
const HANDOVER_FLUSH: Duration = Duration::from_secs(1);

/// Decrements the active-client count when the connection ends.
struct Slot<'a>(&'a AtomicUsize);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Sends the last bytes of a connection (a refusal) and ends the stream, within the write
/// timeout.
async fn send_last<W: AsyncWrite + Unpin>(writer: &mut W, bytes: &[u8], timeout: Duration) {
    let _ = tokio::time::timeout(timeout, async {
        writer.write_all(bytes).await?;
        writer.shutdown().await
    })
    .await;
}

/// Writes `bytes` within `t`.
async fn write_out<W: AsyncWrite + Unpin>(
    writer: &mut W,
    bytes: &[u8],
    t: Duration,
) -> std::io::Result<()> {
    if bytes.is_empty() {
        return Ok(());
    }
    // The flush matters for TLS, which may hold records back; for TCP it does nothing.
    let r = tokio::time::timeout(t, async {
        writer.write_all(bytes).await?;
        writer.flush().await
    })
    .await;
    match r {
        Ok(r) => r,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "MQTT client not reading",
        )),
    }
}

/// Writes what the session has encoded, within `t`.
async fn flush<W: AsyncWrite + Unpin>(
    session: &mut Session,
    writer: &mut W,
    t: Duration,
) -> std::io::Result<()> {
    let out = session.take_out();
    write_out(writer, &out, t).await
}

/// Serves one connection (plain TCP, or TLS once its handshake is done) until it ends or
/// `shutdown` is cancelled; CONNECT must arrive by `connect_by` (default: the connect timeout
/// from now).
pub(crate) async fn serve<R, W>(
    shared: Arc<Shared>,
    mut reader: R,
    mut writer: W,
    peer: Option<SocketAddr>,
    connect_by: Option<Instant>,
    ip_slot: Option<IpSlot>,
    shutdown: CancellationToken,
) where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send,
{
    let config = shared.config();
    let wt = config.write_timeout;
    let connect_by = connect_by.unwrap_or_else(|| Instant::now() + config.connect_timeout);
    let mut inbuf = BytesMut::with_capacity(4096);
    let max = config.max_packet_size;
    let first = tokio::select! {
        () = shutdown.cancelled() => return,
        r = tokio::time::timeout_at(connect_by, read_packet(&mut reader, &mut inbuf, max)) => r,
    };
    let frame = match first {
        Ok(Ok(Some(f))) => f,
        Ok(Ok(None)) => return,
        Ok(Err(e)) => {
            tracing::debug!(?peer, error = %e, "MQTT connection closed before CONNECT");
            return;
        }
        Err(_) => {
            tracing::debug!(?peer, "no MQTT CONNECT within the timeout; closing");
            return;
        }
    };
    let version = match packet::connect_level(&frame) {
        Some(4) => Version::V4,
        Some(5) => Version::V5,
        Some(level) => {
            // CONNACK "unacceptable protocol version" in the 3.1.1 form, which older clients
            // understand too.
            tracing::debug!(?peer, level, "unsupported MQTT protocol level");
            send_last(&mut writer, &[0x20, 0x02, 0x00, 0x01], wt).await;
            return;
        }
        None => {
            tracing::debug!(?peer, "first MQTT packet is not CONNECT; closing");
            return;
        }
    };
    let connect = match packet::decode_connect(version, frame) {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(?peer, error = %e, "malformed MQTT CONNECT; closing");
            return;
        }
    };
    let mut out = BytesMut::new();
    let refuse = |refuse: Refuse, out: &mut BytesMut| {
        packet::encode(
            version,
            Outbound::ConnAck {
                refused: Some(refuse),
                assigned_id: None,
                session_present: false,
                session_expiry: None,
                caps: ServerCaps::default(),
            },
            out,
            usize::MAX,
        );
    };
    if connect.auth_method {
        refuse(Refuse::AuthMethod, &mut out);
        send_last(&mut writer, &out, wt).await;
        return;
    }
    if connect.client_id.is_empty() && !connect.clean && version == Version::V4 {
        refuse(Refuse::ClientId, &mut out);
        send_last(&mut writer, &out, wt).await;
        return;
    }
    let (client_id, assigned) = if connect.client_id.is_empty() {
        (format!("auto-{}", uuid::Uuid::new_v4().simple()), true)
    } else {
        (connect.client_id.clone(), false)
    };
    let count = shared.active.fetch_add(1, Ordering::AcqRel) + 1;
    let _slot = Slot(&shared.active);
    if config.max_clients > 0 && count > config.max_clients {
        tracing::info!(?peer, client_id, "MQTT client refused: max_clients reached");
        refuse(Refuse::Quota, &mut out);
        send_last(&mut writer, &out, wt).await;
        return;
    }
    if shared.stopping.load(Ordering::Acquire) {
        tracing::debug!(?peer, client_id, "MQTT client refused: shutting down");
        refuse(Refuse::Unavailable, &mut out);
        send_last(&mut writer, &out, wt).await;
        return;
    }
    // The password is the CLASP token; a username alone is taken as the token too.
    let credentials = connect
        .password
        .clone()
        .or_else(|| connect.username.clone());
    let (inbox, conn) = match shared.open(&client_id, credentials.as_deref(), peer) {
        Ok(opened) => opened,
        Err(r) => {
            refuse(r, &mut out);
            send_last(&mut writer, &out, wt).await;
            return;
        }
    };

    // Take over an older connection with the same client id, and let it end (and park its
    // session, if it keeps one) first.
    let kicked = CancellationToken::new();
    let done = CancellationToken::new();
    let done_guard = done.clone().drop_guard();
    let abandoned = Arc::new(AtomicBool::new(false));
    let generation = shared.generation.fetch_add(1, Ordering::Relaxed);
    let older = shared.clients.lock().insert(
        client_id.clone(),
        Live {
            generation,
            kicked: kicked.clone(),
            done,
            abandoned: abandoned.clone(),
        },
    );
    if let Some(old) = &older {
        tracing::info!(
            client_id,
            "MQTT client id reconnected: the older connection is taken over"
        );
        old.kicked.cancel();
        if tokio::time::timeout(TAKEOVER_WAIT, old.done.cancelled())
            .await
            .is_err()
        {
            tracing::info!(
                client_id,
                "the older MQTT connection did not end in time; its session is not resumed"
            );
        }
    }
    let (keep, expiry_reply) = session_keep(version, &connect, config);
    // A kept session resumes with the same credentials and protocol version; otherwise (or
    // with a clean session / clean start) it ends here. Whatever the older connection has not
    // parked by now is never kept.
    let parked = {
        let mut parked = shared.parked.lock();
        if let Some(old) = &older {
            old.abandoned.store(true, Ordering::Release);
        }
        parked.remove(&client_id)
    };
    // A session saved by a shutdown under way is superseded by this connection's.
    shared.saved.lock().remove(&client_id);
    let mut resumed = None;
    if let Some(p) = parked
        && !connect.clean
    {
        if p.version == version && p.token == credentials {
            resumed = p.take().await;
        } else {
            tracing::info!(
                client_id,
                "MQTT session not resumed: other credentials or protocol version"
            );
        }
    }
    let session_present = resumed.is_some();
    let window =
        usize::from(connect.receive_max.unwrap_or(u16::MAX)).clamp(1, config.max_inflight.max(1));
    let client_max = connect
        .max_packet
        .map_or(usize::MAX, |m| usize::try_from(m).unwrap_or(usize::MAX));
    let mut kept = match resumed {
        Some(mut k) => {
            // The new CLASP session only checked the credentials: the kept one goes on.
            shared.handle.close(conn);
            let s = &mut k.session;
            s.offline = false;
            s.window = window;
            s.client_max = client_max;
            s.will = connect.will.clone();
            s.clear_closing();
            k
        }
        None => {
            let mut session = Session::new(version, shared.ctx.clone(), conn, window, client_max);
            session.will = connect.will.clone();
            Kept { session, inbox }
        }
    };
    kept.session
        .start_connection(connect.session_expiry.unwrap_or(0));
    // The CONNACK goes first; a resumed session's redeliveries follow it.
    kept.session.clear_out();
    kept.session.emit(Outbound::ConnAck {
        refused: None,
        assigned_id: (assigned && version == Version::V5).then(|| client_id.clone()),
        session_present,
        session_expiry: expiry_reply,
        caps: ServerCaps {
            topic_alias_max: Some(TOPIC_ALIAS_MAX),
            ..ServerCaps::current(u32::try_from(max).unwrap_or(u32::MAX))
        },
    });
    if session_present {
        shared.resumed.fetch_add(1, Ordering::Relaxed);
        let s = &mut kept.session;
        if s.dropped > 0 {
            tracing::warn!(
                client_id,
                dropped = s.dropped,
                limit = config.max_offline_messages,
                "MQTT client back: its offline queue was full, so its oldest messages were dropped"
            );
            s.dropped = 0;
        }
        tracing::debug!(
            ?peer,
            client_id,
            queued = s.backlog.len(),
            unacknowledged = s.inflight.len(),
            "MQTT session resumed"
        );
        s.redeliver();
    }
    tracing::debug!(
        ?peer,
        client_id,
        ?version,
        session_present,
        "MQTT client connected"
    );
    let end = run(
        &mut kept,
        &shared,
        &connect,
        &mut reader,
        &mut writer,
        &mut inbuf,
        &shutdown,
        &kicked,
    )
    .await;
    let mut keep = keep;
    if let End::Disconnect(_) = end
        && let Some(asked) = kept.session.disconnect_expiry.take()
        && !keep.is_zero()
    {
        // MQTT 5: DISCONNECT may change the expiry (0 ends the session now). After a
        // CONNECT without one, a non-zero value is a protocol error (the session answered
        // DISCONNECT 0x82 and did not take it).
        keep = expiry(asked).min(config.session_expiry);
    }
    // The will goes now, or (MQTT 5 will delay) once min(will delay, session expiry) has
    // passed, unless the client resumes the session first (see `Kept::parked`).
    let mut delayed = None;
    if end.publish_will()
        && let Some(will) = kept.session.will.take()
    {
        let delay = Duration::from_secs(u64::from(will.delay.unwrap_or(0))).min(keep);
        match Instant::now().checked_add(delay) {
            Some(at) if !delay.is_zero() => delayed = Some(DelayedWill { will, at }),
            _ => kept.session.publish_will(
                will,
                &mut shared.handle.clone(),
                std::time::Instant::now(),
            ),
        }
    }
    // A connection taken over may be stuck: its last bytes get a short chance only.
    let t = if end == End::TakenOver {
        HANDOVER_FLUSH
    } else {
        wt
    };
    let _ = flush(&mut kept.session, &mut writer, t).await;
    let _ = tokio::time::timeout(t, writer.shutdown()).await;
    drop((reader, writer, ip_slot, _slot));
    tracing::debug!(?peer, client_id, ?end, "MQTT client gone");
    let owner = Owner {
        client_id: client_id.clone(),
        generation,
        token: credentials,
    };
    let parked = if keep.is_zero() || end == End::Closed {
        Err("no session kept")
    } else if end == End::Shutdown {
        // Stored, to be kept again after the restart.
        Err(kept.save(&shared, &owner, keep))
    } else {
        kept.park_entry(&shared, &owner, &abandoned)
    };
    if parked.is_err()
        && let Some(d) = delayed.take()
    {
        // The session ends with the connection after all (too many kept, say), and a will
        // waits no longer than its session (MQTT 5 §3.1.3.2.2).
        kept.session.publish_will(
            d.will,
            &mut shared.handle.clone(),
            std::time::Instant::now(),
        );
    }
    // No longer live: after the session is parked, so that a newer connection with this
    // client id finds either the live one (and waits) or the parked one.
    {
        let mut clients = shared.clients.lock();
        if clients
            .get(&client_id)
            .is_some_and(|l| l.generation == generation)
        {
            clients.remove(&client_id);
        }
    }
    drop(done_guard);
    match parked {
        Ok(resume) => {
            kept.parked(shared.clone(), owner, resume, keep, delayed, &shutdown)
                .await;
        }
        Err(reason) => {
            tracing::debug!(client_id, reason, "MQTT session ended");
            shared.handle.close(kept.session.conn);
        }
    }
}

/// Runs the connection (its CONNACK and a resumed session's redeliveries are encoded
/// already): packets in and deliveries out until it ends.
#[allow(clippy::too_many_arguments)]
async fn run<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    kept: &mut Kept,
    shared: &Shared,
    connect: &Connect,
    reader: &mut R,
    writer: &mut W,
    inbuf: &mut BytesMut,
    shutdown: &CancellationToken,
    kicked: &CancellationToken,
) -> End {
    let wt = shared.config().write_timeout;
    // Every packet of a read is handled under one lock of the core (see `CoreDoor`).
    let handle = &shared.handle;
    let process = |kept: &mut Kept, inbuf: &mut BytesMut| {
        let now = std::time::Instant::now();
        handle.with_core(|core, t| {
            kept.session
                .process_input(inbuf, &mut CoreDoor { core, now: t }, now)
        })
    };
    let keep_alive = (connect.keep_alive > 0)
        .then(|| Duration::from_millis(u64::from(connect.keep_alive) * 1500));
    let far = Duration::from_secs(86_400 * 365);
    let keep_alive = keep_alive.unwrap_or(far);
    let mut deadline = Instant::now() + keep_alive;
    let (read, end) = process(kept, inbuf);
    if read {
        deadline = Instant::now() + keep_alive;
    }
    // One timer for the keep-alive, moved on only when it fires early: a packet just moves
    // the deadline.
    let keep_alive_timer = tokio::time::sleep_until(deadline);
    tokio::pin!(keep_alive_timer);
    if let Some(end) = end {
        return end;
    }
    kept.drain();
    loop {
        let out = kept.session.take_out();
        // A takeover does not wait for a client that stopped reading.
        let stuck = tokio::select! {
            biased;
            r = write_out(writer, &out, wt) => match r {
                Ok(()) => false,
                Err(_) => return End::Lost,
            },
            () = kicked.cancelled() => true,
        };
        if stuck {
            return End::TakenOver;
        }
        if let Some((reason, end)) = kept.session.take_closing() {
            kept.session.emit(Outbound::Disconnect { reason });
            let t = if end == End::TakenOver {
                HANDOVER_FLUSH
            } else {
                wt
            };
            let _ = flush(&mut kept.session, writer, t).await;
            return end;
        }
        tokio::select! {
            () = shutdown.cancelled() => kept.session.close(DisconnectReason::ServerShuttingDown, End::Shutdown),
            () = kicked.cancelled() => kept.session.close(DisconnectReason::SessionTakenOver, End::TakenOver),
            () = &mut keep_alive_timer => {
                if Instant::now() >= deadline {
                    tracing::debug!("MQTT keep-alive expired");
                    kept.session.close(DisconnectReason::KeepAliveTimeout, End::Violation);
                } else {
                    keep_alive_timer.as_mut().reset(deadline);
                }
            }
            () = kept.inbox.ready(), if kept.session.backlog.is_empty() => kept.drain(),
            () = kept.inbox.closed() => kept.drain(),
            r = reader.read_buf(inbuf) => {
                match r {
                    Ok(0) | Err(_) => return End::Lost,
                    Ok(_) => {}
                }
                let (read, end) = process(kept, inbuf);
                if read {
                    deadline = Instant::now() + keep_alive;
                }
                if let Some(end) = end {
                    return end;
                }
                // What the packets made the router deliver (a SUBSCRIBE's retained
                // messages, say) goes out with their answers.
                kept.drain();
                inbuf.reserve(4096);
            }
        }
    }
}

/// An MQTT session expiry interval (`u32::MAX`: never).
fn expiry(secs: u32) -> Duration {
    if secs == u32::MAX {
        Duration::MAX
    } else {
        Duration::from_secs(u64::from(secs))
    }
}

/// How long the session outlives the connection, and the MQTT 5 session expiry to tell the
/// client when it is not the one it asked for.
fn session_keep(
    version: Version,
    connect: &Connect,
    config: &MqttConfig,
) -> (Duration, Option<u32>) {
    let cap = config.session_expiry;
    match version {
        Version::V4 if connect.clean => (Duration::ZERO, None),
        Version::V4 => (cap, None),
        Version::V5 => {
            let wanted = expiry(connect.session_expiry.unwrap_or(0));
            let used = wanted.min(cap);
            let reply =
                (used != wanted).then(|| u32::try_from(used.as_secs()).unwrap_or(u32::MAX - 1));
            (used, reply)
        }
    }
}

/// Reads until one whole packet is buffered; `None` at EOF.
async fn read_packet<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut BytesMut,
    max: usize,
) -> Result<Option<BytesMut>, String> {
    loop {
        match packet::frame(buf, max) {
            Ok(Some(f)) => return Ok(Some(f)),
            Ok(None) => {}
            Err(FrameError::TooLarge(n)) => return Err(format!("packet of {n} bytes too large")),
            Err(FrameError::Malformed(e)) => return Err(e),
        }
        buf.reserve(4096);
        match reader.read_buf(buf).await {
            Ok(0) => return Ok(None),
            Ok(_) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
}
