//! One MQTT connection: CONNECT, then a CLASP session driven through the router handle.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use clasp_proto::{
    ErrorCode, ErrorMessage, Features, FrameOptions, Hello, Message, Publish as ClaspPublish,
    PublishPayload, Qos, Set, SignalType, SignalTypes, Subscribe, Unsubscribe, Value, decode_frame,
    encode, encode_with,
};
use clasp_router::core::{CloseReason, ConnId};
use clasp_router::server::IpSlot;
use clasp_router::server::RouterHandle;
use clasp_router::server::outbox::Outbox;
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::MqttConfig;
use crate::packet::{
    self, Connect, DisconnectReason, FrameError, Inbound, Outbound, PubAckReason, PubCompReason,
    Publish, Refuse, ServerCaps, SubAckReason, SubRequest, UnsubAckReason, Version, Will,
};
use crate::payload;
use crate::persist::{self, Saved, SavedMsg, SavedSub};
use crate::topic::{Filter, TopicError, Topics};

/// State shared by the listener and its connections.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) handle: RouterHandle,
    pub(crate) config: MqttConfig,
    pub(crate) topics: Topics,
    /// Connected client ids → their connection.
    clients: Mutex<HashMap<String, Live>>,
    /// Client ids → the session kept while that client is away.
    parked: Mutex<HashMap<String, Parked>>,
    generation: AtomicU64,
    pub(crate) active: AtomicUsize,
    /// Sessions resumed by a returning client.
    pub(crate) resumed: AtomicU64,
    /// Messages dropped from full offline queues.
    pub(crate) offline_dropped: AtomicU64,
    /// Kept sessions taken down by a shutdown, for the store: client id → (generation,
    /// session); the newest session of a client id wins.
    pub(crate) saved: Mutex<HashMap<String, (u64, Saved)>>,
    /// A store keeps sessions across restarts (set by the listener before it accepts).
    pub(crate) persist: AtomicBool,
    /// The listener or the router is shutting down: new clients are refused.
    pub(crate) stopping: AtomicBool,
}

impl Shared {
    /// Sessions kept for clients that are away.
    pub(crate) fn parked_count(&self) -> usize {
        self.parked.lock().len()
    }
}

/// A connected client, as a newer connection with its client id sees it.
#[derive(Debug)]
struct Live {
    generation: u64,
    /// Ends the connection (takeover).
    kicked: CancellationToken,
    /// Cancelled once the connection has ended and, if it keeps one, parked its session.
    done: CancellationToken,
    /// Set (under the `parked` lock) by the newer connection once it has looked for the
    /// session: a session parked after that would be stale, so it is not kept.
    abandoned: Arc<AtomicBool>,
}

/// A session kept after its connection ended (MQTT 3.1.1 clean session 0, MQTT 5 session
/// expiry): its CLASP session stays open and what its subscriptions match is queued.
#[derive(Debug)]
struct Parked {
    generation: u64,
    version: Version,
    /// The credentials it was opened with: only the same ones resume it.
    token: Option<String>,
    /// Asks the parked task for the session; dropping this ends it.
    resume: mpsc::Sender<oneshot::Sender<Box<Session>>>,
}

impl Parked {
    /// Takes the session from its parked task; `None` if it ended meanwhile.
    async fn take(self) -> Option<Box<Session>> {
        let (tx, rx) = oneshot::channel();
        self.resume.send(tx).await.ok()?;
        rx.await.ok()
    }
}

impl Shared {
    pub(crate) fn new(handle: RouterHandle, config: MqttConfig, topics: Topics) -> Shared {
        Shared {
            handle,
            config,
            topics,
            clients: Mutex::new(HashMap::new()),
            parked: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(1),
            active: AtomicUsize::new(0),
            resumed: AtomicU64::new(0),
            offline_dropped: AtomicU64::new(0),
            saved: Mutex::new(HashMap::new()),
            persist: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
        }
    }
}

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
    let wt = shared.config.write_timeout;
    let connect_by = connect_by.unwrap_or_else(|| Instant::now() + shared.config.connect_timeout);
    let mut inbuf = BytesMut::with_capacity(4096);
    let max = shared.config.max_packet_size;
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
    if shared.config.max_clients > 0 && count > shared.config.max_clients {
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
    let token = connect
        .password
        .clone()
        .or_else(|| connect.username.clone());
    let credentials = token.clone();
    let (outbox, conn) = match open_clasp(&shared, &client_id, token, peer) {
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
    let (keep, expiry_reply) = session_keep(version, &connect, &shared.config);
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
    let window = usize::from(connect.receive_max.unwrap_or(u16::MAX))
        .clamp(1, shared.config.max_inflight.max(1));
    let client_max = connect
        .max_packet
        .map_or(usize::MAX, |m| usize::try_from(m).unwrap_or(usize::MAX));
    let mut session = match resumed {
        Some(mut s) => {
            // The new CLASP session only checked the credentials: the kept one goes on.
            shared.handle.close(conn);
            s.offline = false;
            s.window = window;
            s.client_max = client_max;
            s.will = connect.will.clone();
            s.closing = None;
            s.disconnect_expiry = None;
            s.out = out;
            s
        }
        None => {
            let mut s = Session::new(version, shared.clone(), outbox, conn, window, client_max);
            s.out = out;
            s.will = connect.will.clone();
            s
        }
    };
    session.emit(Outbound::ConnAck {
        refused: None,
        assigned_id: (assigned && version == Version::V5).then(|| client_id.clone()),
        session_present,
        session_expiry: expiry_reply,
        caps: ServerCaps::current(u32::try_from(max).unwrap_or(u32::MAX)),
    });
    if session_present {
        shared.resumed.fetch_add(1, Ordering::Relaxed);
        if session.dropped > 0 {
            tracing::warn!(
                client_id,
                dropped = session.dropped,
                limit = shared.config.max_offline_messages,
                "MQTT client back: its offline queue was full, so its oldest messages were dropped"
            );
            session.dropped = 0;
        }
        tracing::debug!(
            ?peer,
            client_id,
            queued = session.backlog.len(),
            unacknowledged = session.inflight.len(),
            "MQTT session resumed"
        );
        session.redeliver();
    }
    tracing::debug!(
        ?peer,
        client_id,
        ?version,
        session_present,
        "MQTT client connected"
    );
    let end = session
        .run(
            &connect,
            &mut reader,
            &mut writer,
            &mut inbuf,
            &shutdown,
            &kicked,
        )
        .await;
    if end.publish_will()
        && let Some(will) = session.will.take()
    {
        session.publish_will(will);
    }
    // A connection taken over may be stuck: its last bytes get a short chance only.
    let t = if end == End::TakenOver {
        HANDOVER_FLUSH
    } else {
        wt
    };
    let _ = session.flush(&mut writer, t).await;
    let _ = tokio::time::timeout(t, writer.shutdown()).await;
    drop((reader, writer, ip_slot, _slot));
    tracing::debug!(?peer, client_id, ?end, "MQTT client gone");
    let mut keep = keep;
    if let End::Disconnect(_) = end
        && let Some(asked) = session.disconnect_expiry.take()
        && !keep.is_zero()
    {
        // MQTT 5: DISCONNECT may change the expiry (0 ends the session now). After a
        // CONNECT without one, a non-zero value is a protocol error and is ignored.
        keep = expiry(asked).min(shared.config.session_expiry);
    }
    let kept = if keep.is_zero() || end == End::Closed {
        Err("no session kept")
    } else if end == End::Shutdown {
        // Stored, to be kept again after the restart.
        Err(session.save(&client_id, generation, credentials.clone(), keep))
    } else {
        session.park_entry(&client_id, generation, credentials.clone(), &abandoned)
    };
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
    match kept {
        Ok(resume) => {
            session
                .parked(client_id, generation, credentials, resume, keep, &shutdown)
                .await;
        }
        Err(reason) => {
            tracing::debug!(client_id, reason, "MQTT session ended");
            shared.handle.close(session.conn);
        }
    }
}

/// Opens the CLASP session of MQTT client `client_id` (named `mqtt:<client id>`, with
/// `token`): its outbox and connection, or how the router refused it.
fn open_clasp(
    shared: &Shared,
    client_id: &str,
    token: Option<String>,
    peer: Option<SocketAddr>,
) -> Result<(Outbox, ConnId), Refuse> {
    let outbox = shared.handle.outbox();
    let conn = shared.handle.open_without_snapshot(&outbox);
    let hello = Hello {
        version: 1,
        features: Features::CLIENT_DEFAULT,
        name: format!("mqtt:{client_id}").into(),
        token: token.map(Into::into),
    };
    let welcomed = match encode(&Message::Hello(hello)) {
        Ok(f) => {
            shared.handle.handle(conn, &[f]);
            let mut result = Err(Refuse::Unavailable);
            outbox.drain_with(|frame| match decode_frame(&frame).map(|d| d.message) {
                Ok(Message::Welcome(_)) if result.is_err() => result = Ok(()),
                Ok(Message::Error(e)) if result.is_err() => {
                    tracing::info!(?peer, client_id, code = e.code.code(), reason = %e.message, "MQTT client refused by the router");
                    result = Err(match e.code {
                        ErrorCode::Unauthorized => Refuse::BadCredentials,
                        ErrorCode::TokenExpired | ErrorCode::Forbidden => Refuse::NotAuthorized,
                        ErrorCode::Overloaded => Refuse::Busy,
                        _ => Refuse::Unavailable,
                    });
                }
                // Anything else before WELCOME (the session is opened without the connect
                // snapshot: MQTT clients get state through SUBSCRIBE only).
                _ => {}
            });
            result
        }
        Err(_) => Err(Refuse::BadCredentials),
    };
    match welcomed {
        Ok(()) => Ok((outbox, conn)),
        Err(r) => {
            shared.handle.close(conn);
            Err(r)
        }
    }
}

/// A session saved before a restart, open again and kept for its client's return.
pub(crate) struct Restored {
    session: Box<Session>,
    client_id: String,
    generation: u64,
    token: Option<String>,
    resume: mpsc::Receiver<oneshot::Sender<Box<Session>>>,
    keep: Duration,
}

impl Restored {
    /// Keeps the session until its client returns, it expires or the listener stops.
    pub(crate) async fn run(self, shutdown: CancellationToken) {
        self.session
            .parked(
                self.client_id,
                self.generation,
                self.token,
                self.resume,
                self.keep,
                &shutdown,
            )
            .await;
    }
}

/// Opens a saved session again: its CLASP session (with the token it had, so the router
/// decides afresh), its subscriptions and what was waiting for its client. `None` if it has
/// expired or the router refuses it now.
pub(crate) fn restore(shared: &Arc<Shared>, saved: Saved) -> Option<Restored> {
    let client_id = saved.client_id;
    let keep = persist::remaining(saved.expires_ms)
        .map(|k| k.min(shared.config.session_expiry))
        .filter(|k| !k.is_zero());
    let Some(keep) = keep else {
        tracing::debug!(
            client_id,
            "kept MQTT session expired (or sessions are off now)"
        );
        return None;
    };
    let version = if saved.v5 { Version::V5 } else { Version::V4 };
    let (outbox, conn) = match open_clasp(shared, &client_id, saved.token.clone(), None) {
        Ok(opened) => opened,
        Err(r) => {
            tracing::info!(client_id, refusal = ?r, "kept MQTT session not restored: the router refused its token");
            return None;
        }
    };
    let window = shared.config.max_inflight.max(1);
    let mut s = Session::new(version, shared.clone(), outbox, conn, window, usize::MAX);
    s.offline = true;
    for sub in &saved.subs {
        let code = s.subscribe_one(SubRequest {
            filter: sub.filter.clone(),
            qos: sub.qos,
            rap: sub.rap,
            retain_handling: 2,
            no_local: sub.no_local,
        });
        if code.is_error() {
            tracing::info!(
                client_id,
                filter = sub.filter,
                code = code.code(),
                "subscription of a kept MQTT session not restored"
            );
        }
    }
    for m in saved.pending {
        let Ok(payload) = hex::decode(&m.payload) else {
            continue;
        };
        let p = Pending {
            topic: m.topic,
            payload: Bytes::from(payload),
            qos: m.qos.min(1),
            retain: m.retain,
            state: m.state,
            redelivery: None,
        };
        match m.pkid {
            Some(id) if p.qos > 0 && id != 0 && !s.inflight.contains_key(&id) => {
                s.sent_seq += 1;
                s.inflight.insert(id, (s.sent_seq, p));
            }
            _ => s.push_back(p),
        }
    }
    s.trim_offline();
    s.qos2 = saved.qos2.into_iter().collect();
    s.next_pkid = saved.next_pkid.max(1);
    let generation = shared.generation.fetch_add(1, Ordering::Relaxed);
    match s.park_entry(
        &client_id,
        generation,
        saved.token.clone(),
        &AtomicBool::new(false),
    ) {
        Ok(resume) => Some(Restored {
            session: s,
            client_id,
            generation,
            token: saved.token,
            resume,
            keep,
        }),
        Err(reason) => {
            tracing::info!(client_id, reason, "kept MQTT session not restored");
            shared.handle.close(s.conn);
            None
        }
    }
}

/// How long a newer connection waits for the one it takes over to end.
const TAKEOVER_WAIT: Duration = Duration::from_secs(5);

/// How long a connection taken over may take to send its last bytes (MQTT 5 DISCONNECT 0x8E).
const HANDOVER_FLUSH: Duration = Duration::from_secs(1);

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

/// How a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// DISCONNECT from the client (`true`: v5 asked for its will anyway).
    Disconnect(bool),
    /// EOF or a socket error without DISCONNECT.
    Lost,
    /// The client broke the protocol or the keep-alive.
    Violation,
    /// A newer connection with the same client id.
    TakenOver,
    /// The router closed the session (or the client was too slow).
    Closed,
    /// The listener or the router is shutting down.
    Shutdown,
}

impl End {
    fn publish_will(self) -> bool {
        matches!(
            self,
            End::Disconnect(true) | End::Lost | End::Violation | End::TakenOver
        )
    }
}

/// One MQTT subscription and the CLASP subscriptions behind it.
#[derive(Debug)]
struct Sub {
    filter: String,
    matcher: Filter,
    ids: Vec<u32>,
    qos: u8,
    rap: bool,
    /// MQTT 5 no-local.
    no_local: bool,
}

/// Most filters of one SUBSCRIBE packet that are installed; the rest are refused.
const MAX_FILTERS_PER_SUBSCRIBE: usize = 64;

/// A publish to a client, not yet sent.
#[derive(Debug, Clone)]
struct Pending {
    topic: String,
    payload: Bytes,
    qos: u8,
    retain: bool,
    /// From a SET: only its latest value matters while the client is away.
    state: bool,
    /// Sent before and not acknowledged: its packet id, to send it again with DUP.
    redelivery: Option<u16>,
}

impl Pending {
    /// What it costs in a queue, roughly.
    fn size(&self) -> usize {
        self.topic.len() + self.payload.len() + 32
    }
}

#[derive(Debug)]
struct Session {
    version: Version,
    shared: Arc<Shared>,
    outbox: Outbox,
    conn: ConnId,
    subs: Vec<Sub>,
    next_sub_id: u32,
    /// QoS 1 publishes awaiting PUBACK by packet id, with their send order (resent, DUP, to
    /// a client that resumes the session).
    inflight: HashMap<u16, (u64, Pending)>,
    sent_seq: u64,
    window: usize,
    next_pkid: u16,
    /// Publishes waiting for room in the in-flight window (the outbox is not drained
    /// meanwhile), or for the client's return while the session is parked.
    backlog: VecDeque<Pending>,
    /// Bytes of topics and payloads in the backlog.
    backlog_bytes: usize,
    /// Packet ids of unacknowledged publishes waiting in the backlog to be sent again.
    reserved: HashSet<u16>,
    /// Parked: no connection; publishes go to the backlog (see [`Session::queue_offline`]).
    offline: bool,
    /// Messages dropped from a full offline queue since the client was last told.
    dropped: u64,
    /// MQTT 5: the session expiry interval the client's DISCONNECT asked for.
    disconnect_expiry: Option<u32>,
    /// While the router's answer to this client's retained publish is read: its address and
    /// payload, to recognise the router's echo of it (kept from no-local subscriptions).
    echo: Option<(String, Bytes)>,
    /// Inbound QoS 2 packet ids awaiting PUBREL.
    qos2: HashSet<u16>,
    out: BytesMut,
    client_max: usize,
    will: Option<Will>,
    /// A DISCONNECT reason to send and end with.
    closing: Option<(DisconnectReason, End)>,
    /// Addresses already sent as retained messages while answering the current SUBSCRIBE: each
    /// is sent once per packet, however many of its filters match it, so one packet can never
    /// queue more than one copy of the state.
    retained_sent: HashSet<String>,
}

impl Session {
    /// A new session on CLASP connection `conn`, nothing subscribed.
    fn new(
        version: Version,
        shared: Arc<Shared>,
        outbox: Outbox,
        conn: ConnId,
        window: usize,
        client_max: usize,
    ) -> Box<Session> {
        Box::new(Session {
            version,
            shared,
            outbox,
            conn,
            subs: Vec::new(),
            retained_sent: HashSet::new(),
            next_sub_id: 1,
            inflight: HashMap::new(),
            sent_seq: 0,
            window,
            next_pkid: 1,
            backlog: VecDeque::new(),
            backlog_bytes: 0,
            reserved: HashSet::new(),
            offline: false,
            dropped: 0,
            disconnect_expiry: None,
            echo: None,
            qos2: HashSet::new(),
            out: BytesMut::new(),
            client_max,
            will: None,
            closing: None,
        })
    }

    /// The session as stored across a restart, expiring `keep` from now.
    fn to_saved(&self, client_id: &str, token: Option<String>, keep: Duration) -> Saved {
        let msg = |p: &Pending, pkid: Option<u16>| SavedMsg {
            topic: p.topic.clone(),
            payload: hex::encode(&p.payload),
            qos: p.qos,
            retain: p.retain,
            state: p.state,
            pkid,
        };
        let mut unacked: Vec<(&u16, &(u64, Pending))> = self.inflight.iter().collect();
        unacked.sort_by_key(|(_, (seq, _))| *seq);
        let pending = unacked
            .into_iter()
            .map(|(id, (_, p))| msg(p, Some(*id)))
            .chain(self.backlog.iter().map(|p| msg(p, p.redelivery)))
            .collect();
        Saved {
            client_id: client_id.to_owned(),
            v5: self.version == Version::V5,
            token,
            expires_ms: persist::expires_ms(keep),
            subs: self
                .subs
                .iter()
                .map(|s| SavedSub {
                    filter: s.filter.clone(),
                    qos: s.qos,
                    rap: s.rap,
                    no_local: s.no_local,
                })
                .collect(),
            pending,
            qos2: self.qos2.iter().copied().collect(),
            next_pkid: self.next_pkid,
        }
    }

    /// Adds the session to those the listener stores at its end (if it has a store and no
    /// newer session of the client id is there); says what became of it.
    fn save(
        &self,
        client_id: &str,
        generation: u64,
        token: Option<String>,
        keep: Duration,
    ) -> &'static str {
        if !self.shared.persist.load(Ordering::Acquire) {
            return "ended by the shutdown (no store to keep it in)";
        }
        let saved = self.to_saved(client_id, token, keep);
        let mut all = self.shared.saved.lock();
        match all.get(client_id) {
            Some((g, _)) if *g > generation => "a newer session of the client is saved",
            _ => {
                all.insert(client_id.to_owned(), (generation, saved));
                "saved for after the restart"
            }
        }
    }

    async fn run<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
        &mut self,
        connect: &Connect,
        reader: &mut R,
        writer: &mut W,
        inbuf: &mut BytesMut,
        shutdown: &CancellationToken,
        kicked: &CancellationToken,
    ) -> End {
        let keep_alive = (connect.keep_alive > 0)
            .then(|| Duration::from_millis(u64::from(connect.keep_alive) * 1500));
        let far = Duration::from_secs(86_400 * 365);
        let mut deadline = Instant::now() + keep_alive.unwrap_or(far);
        if let Some(end) = self.process_input(inbuf, &mut deadline, keep_alive.unwrap_or(far)) {
            return end;
        }
        let wt = self.shared.config.write_timeout;
        loop {
            // A takeover does not wait for a client that stopped reading.
            let stuck = tokio::select! {
                biased;
                r = self.flush(writer, wt) => match r {
                    Ok(()) => false,
                    Err(_) => return End::Lost,
                },
                () = kicked.cancelled() => true,
            };
            if stuck {
                return End::TakenOver;
            }
            if let Some((reason, end)) = self.closing.take() {
                self.emit(Outbound::Disconnect { reason });
                let t = if end == End::TakenOver {
                    HANDOVER_FLUSH
                } else {
                    wt
                };
                let _ = self.flush(writer, t).await;
                return end;
            }
            tokio::select! {
                () = shutdown.cancelled() => self.close(DisconnectReason::ServerShuttingDown, End::Shutdown),
                () = kicked.cancelled() => self.close(DisconnectReason::SessionTakenOver, End::TakenOver),
                () = tokio::time::sleep_until(deadline) => {
                    tracing::debug!("MQTT keep-alive expired");
                    self.close(DisconnectReason::KeepAliveTimeout, End::Violation);
                }
                () = self.outbox.closed() => self.drain(None, &mut Vec::new()),
                () = self.outbox.ready(), if self.backlog.is_empty() => {
                    self.drain(None, &mut Vec::new());
                }
                r = reader.read_buf(inbuf) => {
                    match r {
                        Ok(0) | Err(_) => return End::Lost,
                        Ok(_) => {}
                    }
                    if let Some(end) = self.process_input(inbuf, &mut deadline, keep_alive.unwrap_or(far)) {
                        return end;
                    }
                    inbuf.reserve(4096);
                }
            }
        }
    }

    /// Handles every whole packet buffered in `inbuf`; `Some` ends the connection at once.
    fn process_input(
        &mut self,
        inbuf: &mut BytesMut,
        deadline: &mut Instant,
        keep_alive: Duration,
    ) -> Option<End> {
        let max = self.shared.config.max_packet_size;
        while self.closing.is_none() {
            match packet::frame(inbuf, max) {
                Ok(Some(f)) => {
                    *deadline = Instant::now() + keep_alive;
                    match packet::decode(self.version, f) {
                        Ok(p) => {
                            if let Some(end) = self.on_packet(p) {
                                return Some(end);
                            }
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, "bad MQTT packet");
                            self.close(e.reason(), End::Violation);
                        }
                    }
                }
                Ok(None) => break,
                Err(FrameError::TooLarge(n)) => {
                    tracing::debug!(bytes = n, limit = max, "MQTT packet too large");
                    self.close(DisconnectReason::PacketTooLarge, End::Violation);
                }
                Err(FrameError::Malformed(e)) => {
                    tracing::debug!(error = %e, "malformed MQTT packet");
                    self.close(DisconnectReason::MalformedPacket, End::Violation);
                }
            }
        }
        inbuf.reserve(4096);
        None
    }

    fn close(&mut self, reason: DisconnectReason, end: End) {
        self.closing.get_or_insert((reason, end));
    }

    /// Writes what is encoded, within `t`.
    async fn flush<W: AsyncWrite + Unpin>(
        &mut self,
        writer: &mut W,
        t: Duration,
    ) -> std::io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        // The flush matters for TLS, which may hold records back; for TCP it does nothing.
        let r = tokio::time::timeout(t, async {
            writer.write_all(&self.out).await?;
            writer.flush().await
        })
        .await;
        self.out.clear();
        match r {
            Ok(r) => r,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "MQTT client not reading",
            )),
        }
    }

    /// Encodes `p` for sending (dropped, with a debug line, if over the client's maximum packet
    /// size).
    fn emit(&mut self, p: Outbound) {
        let _ = self.try_emit(p);
    }

    /// Encodes `p` for sending; `false` if it is over the client's maximum packet size and was
    /// not sent.
    fn try_emit(&mut self, p: Outbound) -> bool {
        let sent = packet::encode(self.version, p, &mut self.out, self.client_max);
        if !sent {
            tracing::debug!("MQTT packet over the client's maximum packet size; not sent");
        }
        sent
    }

    /// Handles one packet; `Some` ends the connection at once (no DISCONNECT sent).
    fn on_packet(&mut self, p: Inbound) -> Option<End> {
        match p {
            Inbound::Publish(p) => self.on_publish(p),
            Inbound::PubAck(pkid) => {
                self.inflight.remove(&pkid);
                self.pump_backlog();
            }
            Inbound::PubRel(pkid) => {
                self.qos2.remove(&pkid);
                self.emit(Outbound::PubComp {
                    pkid,
                    reason: PubCompReason::Success,
                });
            }
            Inbound::PubRec { .. } | Inbound::PubComp(_) => {}
            Inbound::Subscribe {
                pkid,
                filters,
                subscription_id,
            } => {
                if subscription_id.is_some() {
                    self.close(
                        DisconnectReason::SubscriptionIdentifiersNotSupported,
                        End::Violation,
                    );
                } else {
                    self.on_subscribe(pkid, filters);
                }
            }
            Inbound::Unsubscribe { pkid, filters } => self.on_unsubscribe(pkid, filters),
            Inbound::PingReq => self.emit(Outbound::PingResp),
            Inbound::Disconnect {
                will,
                session_expiry,
            } => {
                self.disconnect_expiry = session_expiry;
                return Some(End::Disconnect(will));
            }
            Inbound::Unexpected(what) => {
                tracing::debug!(what, "unexpected MQTT packet from a client");
                self.close(DisconnectReason::ProtocolError, End::Violation);
            }
        }
        None
    }

    /// Sends `frames` to the router and returns the errors it answered with.
    fn request(&mut self, frames: &[Bytes], snapshot_for: Option<usize>) -> Vec<ErrorMessage> {
        self.shared.handle.handle(self.conn, frames);
        let mut errors = Vec::new();
        self.drain(snapshot_for, &mut errors);
        errors
    }

    /// Sends this client's SET while a no-local subscription is in place: the router sends
    /// the SET back to its writer, and that echo must be recognised among what else arrives.
    /// What was waiting before is delivered first; then, unless the router refused the SET,
    /// the first SET of the same address and payload in its answer is the echo (the router
    /// sends it while handling the SET, before any later write can land).
    fn request_own_set(
        &mut self,
        frame: Bytes,
        address: &str,
        value: &Value,
    ) -> Option<ErrorMessage> {
        self.drain(None, &mut Vec::new());
        self.shared.handle.handle(self.conn, &[frame]);
        let mut frames = Vec::new();
        let close = self.outbox.drain_with(|f| frames.push(f));
        let refused = frames
            .iter()
            .any(|f| matches!(decode_frame(f).map(|d| d.message), Ok(Message::Error(_))));
        self.echo = (!refused).then(|| (address.to_owned(), payload::to_payload(value)));
        let mut errors = Vec::new();
        self.process(frames, close, None, &mut errors);
        self.echo = None;
        errors.into_iter().next()
    }

    fn on_publish(&mut self, p: Publish) {
        if p.topic_alias.is_some() {
            self.close(DisconnectReason::TopicAliasInvalid, End::Violation);
            return;
        }
        if p.qos == 2 && self.qos2.contains(&p.pkid) {
            // A resend before PUBREL: already applied once.
            self.emit(Outbound::PubRec {
                pkid: p.pkid,
                reason: PubAckReason::Success,
            });
            return;
        }
        let reason = match self.shared.topics.address(&p.topic) {
            Err(TopicError::WildcardInName(_) | TopicError::Empty) => {
                self.close(DisconnectReason::TopicNameInvalid, End::Violation);
                return;
            }
            Err(e) => {
                tracing::debug!(error = %e, "MQTT publish refused");
                PubAckReason::TopicNameInvalid
            }
            Ok(address) => {
                let value = if p.retain && p.payload.is_empty() {
                    Value::Null
                } else {
                    payload::to_value(&p.payload)
                };
                let msg = if p.retain {
                    Message::Set(Set {
                        address: address.as_str().into(),
                        value: value.clone(),
                        ..Set::default()
                    })
                } else {
                    Message::Publish(ClaspPublish {
                        address: address.as_str().into(),
                        signal: SignalType::Event,
                        payload: PublishPayload::Value(value.clone()),
                        ..ClaspPublish::default()
                    })
                };
                let no_local = p.retain && self.subs.iter().any(|s| s.no_local);
                let answer = match encode_with(&msg, FrameOptions::with_qos(Qos::Fire)) {
                    Ok(frame) if no_local => self.request_own_set(frame, &address, &value),
                    Ok(frame) => self.request(&[frame], None).first().cloned(),
                    Err(e) => {
                        tracing::debug!(error = %e, "MQTT publish cannot be encoded for CLASP");
                        return self.ack_publish(&p, PubAckReason::PayloadFormatInvalid);
                    }
                };
                match answer {
                    None => {
                        if !p.retain {
                            // CLASP does not send an event back to its sender, MQTT does
                            // (unless no-local).
                            self.deliver(&address, payload::to_payload(&value), false, true);
                        }
                        PubAckReason::Success
                    }
                    Some(e) => {
                        tracing::debug!(code = e.code.code(), reason = %e.message, "router refused an MQTT publish");
                        error_reason(e.code)
                    }
                }
            }
        };
        self.ack_publish(&p, reason);
    }

    /// Answers a QoS 1 or 2 publish with `reason`.
    fn ack_publish(&mut self, p: &Publish, reason: PubAckReason) {
        match p.qos {
            0 => {}
            1 => self.emit(Outbound::PubAck {
                pkid: p.pkid,
                reason,
            }),
            _ => {
                if !reason.is_error() {
                    self.qos2.insert(p.pkid);
                }
                self.emit(Outbound::PubRec {
                    pkid: p.pkid,
                    reason,
                });
            }
        }
    }

    fn on_subscribe(&mut self, pkid: u16, filters: Vec<SubRequest>) {
        let mut codes = Vec::with_capacity(filters.len());
        self.retained_sent.clear();
        for (i, req) in filters.into_iter().enumerate() {
            // Quota exceeded (a plain failure for MQTT 3.1.1).
            codes.push(if i < MAX_FILTERS_PER_SUBSCRIBE {
                self.subscribe_one(req)
            } else {
                SubAckReason::QuotaExceeded
            });
        }
        self.retained_sent = HashSet::new();
        self.emit(Outbound::SubAck { pkid, codes });
    }

    fn subscribe_one(&mut self, req: SubRequest) -> SubAckReason {
        let matcher = match self.shared.topics.filter(&req.filter) {
            Ok(m) if m.share.is_some() => return SubAckReason::SharedSubscriptionsNotSupported,
            Ok(m) => m,
            Err(TopicError::Shared(_)) => return SubAckReason::SharedSubscriptionsNotSupported,
            Err(e) => {
                tracing::debug!(error = %e, "MQTT filter refused");
                return SubAckReason::TopicFilterInvalid;
            }
        };
        let granted = req.qos.min(1);
        let existing = self.subs.iter().position(|s| s.filter == req.filter);
        let idx = match existing {
            Some(i) => {
                self.subs[i].qos = granted;
                self.subs[i].rap = req.rap;
                self.subs[i].no_local = req.no_local;
                i
            }
            None => {
                let ids = (0..matcher.patterns.len())
                    .map(|_| {
                        let id = self.next_sub_id;
                        self.next_sub_id = self.next_sub_id.wrapping_add(1).max(1);
                        id
                    })
                    .collect();
                self.subs.push(Sub {
                    filter: req.filter.clone(),
                    matcher,
                    ids,
                    qos: granted,
                    rap: req.rap,
                    no_local: req.no_local,
                });
                self.subs.len() - 1
            }
        };
        let send_retained = match req.retain_handling {
            0 => true,
            1 => existing.is_none(),
            _ => false,
        };
        // One request per pattern: for `a/#` a token may allow `a/**` but not `a` itself, and
        // the filter then stands for what is allowed.
        let pairs: Vec<(u32, String)> = self.subs[idx]
            .ids
            .iter()
            .zip(&self.subs[idx].matcher.patterns)
            .map(|(id, p)| (*id, p.as_str().to_owned()))
            .collect();
        let mut accepted = Vec::new();
        let mut refusal = None;
        for (i, (id, pattern)) in pairs.into_iter().enumerate() {
            let frame = encode(&Message::Subscribe(Subscribe {
                id,
                pattern: pattern.as_str().into(),
                types: SignalTypes::ALL,
                options: Default::default(),
            }));
            let errors = match frame {
                Ok(f) => self.request(&[f], send_retained.then_some(idx)),
                Err(_) => vec![ErrorMessage {
                    code: ErrorCode::InvalidPattern,
                    message: "pattern too long".into(),
                    address: None,
                    correlation_id: None,
                }],
            };
            match errors.first() {
                None => accepted.push(i),
                Some(e) => {
                    tracing::debug!(filter = req.filter, code = e.code.code(), reason = %e.message, "router refused an MQTT subscription");
                    refusal.get_or_insert(e.code);
                }
            }
        }
        if accepted.is_empty() {
            let sub = self.subs.remove(idx);
            self.unsubscribe_ids(&sub.ids);
            return match refusal {
                Some(ErrorCode::Forbidden | ErrorCode::Unauthorized) => SubAckReason::NotAuthorized,
                Some(ErrorCode::RateLimited) => SubAckReason::QuotaExceeded,
                Some(ErrorCode::InvalidPattern | ErrorCode::InvalidAddress) => {
                    SubAckReason::TopicFilterInvalid
                }
                _ => SubAckReason::UnspecifiedError,
            };
        }
        let sub = &mut self.subs[idx];
        if accepted.len() < sub.ids.len() {
            keep_indices(&mut sub.ids, &accepted);
            keep_indices(&mut sub.matcher.patterns, &accepted);
        }
        SubAckReason::granted(granted)
    }

    fn unsubscribe_ids(&mut self, ids: &[u32]) {
        let frames: Vec<Bytes> = ids
            .iter()
            .filter_map(|id| encode(&Message::Unsubscribe(Unsubscribe { id: *id })).ok())
            .collect();
        let _ = self.request(&frames, None);
    }

    fn on_unsubscribe(&mut self, pkid: u16, filters: Vec<String>) {
        let mut codes = Vec::with_capacity(filters.len());
        for f in filters {
            match self.subs.iter().position(|s| s.filter == f) {
                Some(i) => {
                    let sub = self.subs.remove(i);
                    self.unsubscribe_ids(&sub.ids);
                    codes.push(UnsubAckReason::Success);
                }
                None => codes.push(UnsubAckReason::NoSubscriptionExisted),
            }
        }
        self.emit(Outbound::UnsubAck { pkid, codes });
    }

    /// Translates everything the router queued. A SNAPSHOT becomes retained messages only
    /// when it answers the subscription `snapshot_for`; ERRORs are collected into `errors`.
    fn drain(&mut self, snapshot_for: Option<usize>, errors: &mut Vec<ErrorMessage>) {
        let mut frames = Vec::new();
        let close = self.outbox.drain_with(|f| frames.push(f));
        self.process(frames, close, snapshot_for, errors);
    }

    /// Translates `frames` from the router (see [`Session::drain`]); `close`: the router
    /// ended the session.
    fn process(
        &mut self,
        frames: Vec<Bytes>,
        close: Option<CloseReason>,
        snapshot_for: Option<usize>,
        errors: &mut Vec<ErrorMessage>,
    ) {
        for frame in frames {
            let Ok(decoded) = decode_frame(&frame) else {
                continue;
            };
            match decoded.message {
                Message::Set(s) => {
                    let payload = payload::to_payload(&s.value);
                    let own = self
                        .echo
                        .take_if(|(a, p)| *a == *s.address && *p == payload)
                        .is_some();
                    self.deliver(&s.address, payload, true, own);
                }
                Message::Publish(p) => {
                    let payload = match &p.payload {
                        PublishPayload::Value(v) => payload::to_payload(v),
                        PublishPayload::None => Bytes::new(),
                        PublishPayload::Samples(s) => payload::to_payload(&Value::Array(
                            s.iter().map(|f| Value::Float(*f)).collect(),
                        )),
                    };
                    self.deliver(&p.address, payload, false, false);
                }
                Message::Snapshot(snap) => {
                    let Some(idx) = snapshot_for else { continue };
                    for param in snap.params {
                        // A null param is a cleared retained message.
                        if param.value.is_null() {
                            continue;
                        }
                        let Some(sub) = self.subs.get(idx) else { break };
                        if !sub.matcher.matches(&param.address) {
                            continue;
                        }
                        let qos = sub.qos;
                        if !self.retained_sent.insert(param.address.to_string()) {
                            continue;
                        }
                        if let Some(topic) = self.shared.topics.topic(&param.address) {
                            self.queue(Pending {
                                topic: topic.into_owned(),
                                payload: payload::to_payload(&param.value),
                                qos,
                                retain: true,
                                state: true,
                                redelivery: None,
                            });
                        }
                    }
                }
                Message::Error(e) => {
                    tracing::debug!(code = e.code.code(), reason = %e.message, "router error for an MQTT session");
                    errors.push(e);
                }
                _ => {}
            }
        }
        if let Some(reason) = close {
            let (code, end) = match reason {
                CloseReason::Shutdown if errors.is_empty() => {
                    self.shared.stopping.store(true, Ordering::Release);
                    (DisconnectReason::ServerShuttingDown, End::Shutdown)
                }
                _ => match errors.last().map(|e| e.code) {
                    Some(ErrorCode::TokenExpired | ErrorCode::Unauthorized) => {
                        (DisconnectReason::NotAuthorized, End::Closed)
                    }
                    _ => (DisconnectReason::ServerBusy, End::Closed),
                },
            };
            self.close(code, end);
        }
    }

    /// Sends a live SET (`is_set`) or PUBLISH to the client if a subscription matches its
    /// address; `own`: the client's own publish, which no-local subscriptions skip.
    fn deliver(&mut self, address: &str, payload: Bytes, is_set: bool, own: bool) {
        let mut qos = None;
        let mut rap = false;
        for s in &self.subs {
            if s.matcher.matches(address) && !(own && s.no_local) {
                qos = qos.max(Some(s.qos));
                rap |= s.rap;
            }
        }
        let Some(qos) = qos else { return };
        let Some(topic) = self.shared.topics.topic(address) else {
            return;
        };
        // MQTT 5 retain-as-published: a SET is state, i.e. a retained message; an event was
        // not retained, so it never carries the flag (MQTT-3.3.1-13).
        let retain = is_set && rap && self.version == Version::V5;
        self.queue(Pending {
            topic: topic.into_owned(),
            payload,
            qos,
            retain,
            state: is_set,
            redelivery: None,
        });
    }

    fn queue(&mut self, p: Pending) {
        if self.offline {
            self.queue_offline(p);
            return;
        }
        if !self.backlog.is_empty() || (p.qos > 0 && self.inflight.len() >= self.window) {
            let cfg = &self.shared.config;
            if self.backlog.len() >= cfg.max_backlog
                || self.backlog_bytes + p.size() > cfg.max_backlog_bytes
            {
                tracing::info!("MQTT client too slow to acknowledge; disconnecting");
                self.close(DisconnectReason::QuotaExceeded, End::Closed);
                return;
            }
            self.push_back(p);
            return;
        }
        self.send_publish(p, None);
    }

    fn push_back(&mut self, p: Pending) {
        self.backlog_bytes += p.size();
        self.backlog.push_back(p);
    }

    fn push_front(&mut self, p: Pending) {
        self.backlog_bytes += p.size();
        self.backlog.push_front(p);
    }

    fn take_backlog(&mut self, i: usize) -> Option<Pending> {
        let p = self.backlog.remove(i)?;
        self.backlog_bytes -= p.size();
        Some(p)
    }

    /// Keeps `p` for a client that is away: QoS 1 messages, and every SET (only the latest
    /// per topic, so the client gets the current state back whatever its QoS). QoS 0 events
    /// are not kept (MQTT leaves that to the server). A full queue drops its oldest message.
    fn queue_offline(&mut self, p: Pending) {
        if p.qos == 0 && !p.state {
            return;
        }
        if p.state
            && let Some(i) = self
                .backlog
                .iter()
                .position(|q| q.state && q.redelivery.is_none() && q.topic == p.topic)
        {
            self.take_backlog(i);
        }
        self.push_back(p);
        self.trim_offline();
    }

    /// Drops the oldest queued messages while the queue is over its count or byte limit.
    /// Unacknowledged publishes waiting to be sent again are kept (MQTT requires them; the
    /// in-flight window bounds them).
    fn trim_offline(&mut self) {
        let cfg = &self.shared.config;
        let (max, max_bytes) = (cfg.max_offline_messages.max(1), cfg.max_offline_bytes);
        while self.backlog.len() > max || self.backlog_bytes > max_bytes {
            let Some(i) = self.backlog.iter().position(|p| p.redelivery.is_none()) else {
                break;
            };
            self.take_backlog(i);
            self.dropped += 1;
            self.shared.offline_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Sends `p`; `dup` is the packet id of an earlier send of it (a redelivery).
    fn send_publish(&mut self, p: Pending, dup: Option<u16>) {
        let pkid = match dup {
            Some(id) => id,
            None if p.qos > 0 => {
                let mut id = self.next_pkid;
                while self.inflight.contains_key(&id) || self.reserved.contains(&id) {
                    id = id.wrapping_add(1).max(1);
                }
                self.next_pkid = id.wrapping_add(1).max(1);
                id
            }
            None => 0,
        };
        let sent = self.try_emit(Outbound::Publish {
            topic: p.topic.clone(),
            payload: p.payload.clone(),
            qos: p.qos,
            retain: p.retain,
            pkid,
            dup: dup.is_some(),
            props: None,
        });
        if p.qos > 0 {
            if sent {
                self.sent_seq += 1;
                self.inflight.insert(pkid, (self.sent_seq, p));
            } else {
                // Never on the wire, so never acknowledged: keeping the id would shrink the
                // in-flight window for good.
                self.inflight.remove(&pkid);
            }
        }
    }

    fn pump_backlog(&mut self) {
        while let Some(p) = self.backlog.front() {
            if p.qos > 0 && self.inflight.len() >= self.window {
                break;
            }
            if let Some(mut p) = self.take_backlog(0) {
                let dup = p.redelivery.take();
                if let Some(id) = dup {
                    self.reserved.remove(&id);
                }
                self.send_publish(p, dup);
            }
        }
    }

    /// After a resume: the unacknowledged QoS 1 publishes again (same packet ids, DUP set,
    /// in their first order, as many as the client's in-flight window takes; the rest wait
    /// first in the queue), then what was queued while the client was away.
    fn redeliver(&mut self) {
        let mut unacked: Vec<(u16, (u64, Pending))> = self.inflight.drain().collect();
        unacked.sort_by_key(|(_, (seq, _))| *seq);
        let mut later = Vec::new();
        for (i, (pkid, (_, mut p))) in unacked.into_iter().enumerate() {
            if i < self.window {
                self.send_publish(p, Some(pkid));
            } else {
                p.redelivery = Some(pkid);
                self.reserved.insert(pkid);
                later.push(p);
            }
        }
        for p in later.into_iter().rev() {
            self.push_front(p);
        }
        self.pump_backlog();
    }

    /// Registers the session as kept for its client's return, unless a newer connection has
    /// gone ahead without it, a newer session is kept already, or the listener keeps as many
    /// as it may. Returns the channel a returning client asks for the session on.
    fn park_entry(
        &mut self,
        client_id: &str,
        generation: u64,
        token: Option<String>,
        abandoned: &AtomicBool,
    ) -> Result<mpsc::Receiver<oneshot::Sender<Box<Session>>>, &'static str> {
        let (tx, rx) = mpsc::channel(1);
        let max = self.shared.config.max_kept_sessions;
        let mut parked = self.shared.parked.lock();
        if abandoned.load(Ordering::Acquire) {
            return Err("a newer connection went ahead without it");
        }
        match parked.get(client_id) {
            Some(p) if p.generation > generation => return Err("a newer session is kept"),
            None if parked.len() >= max => {
                tracing::info!(
                    client_id,
                    limit = max,
                    "MQTT session not kept: the listener keeps as many as it may already"
                );
                return Err("too many kept sessions");
            }
            _ => {}
        }
        parked.insert(
            client_id.to_owned(),
            Parked {
                generation,
                version: self.version,
                token,
                resume: tx,
            },
        );
        Ok(rx)
    }

    /// Keeps the parked session for `keep`: the CLASP session stays open, what it delivers
    /// is queued ([`Session::queue_offline`]), and a returning client takes the session back
    /// through `resume`. Ends (closing the CLASP session) on expiry, listener shutdown, the
    /// router closing the session, or a new session replacing it.
    async fn parked(
        mut self: Box<Self>,
        client_id: String,
        generation: u64,
        token: Option<String>,
        mut resume: mpsc::Receiver<oneshot::Sender<Box<Session>>>,
        keep: Duration,
        shutdown: &CancellationToken,
    ) {
        enum Wake {
            Ready,
            Resume(oneshot::Sender<Box<Session>>),
            Shutdown,
            End(&'static str),
        }
        self.offline = true;
        self.out.clear();
        self.closing = None;
        self.trim_offline();
        let shared = self.shared.clone();
        tracing::debug!(
            client_id,
            keep_secs = keep.as_secs(),
            "MQTT session kept for the client's return"
        );
        let expires = Instant::now().checked_add(keep);
        let left = |t: Option<Instant>| {
            t.map_or(Duration::MAX, |t| {
                t.saturating_duration_since(Instant::now())
            })
        };
        let reason = loop {
            let wake = tokio::select! {
                () = shutdown.cancelled() => Wake::Shutdown,
                () = async {
                    match expires {
                        Some(t) => tokio::time::sleep_until(t).await,
                        None => std::future::pending().await,
                    }
                } => Wake::End("session expired"),
                () = self.outbox.closed() => {
                    // The router says why: shutting down, or the session is over (token
                    // revoked, say).
                    self.drain(None, &mut Vec::new());
                    match self.closing {
                        Some((_, End::Shutdown)) => Wake::Shutdown,
                        _ => Wake::End("closed by the router"),
                    }
                }
                () = self.outbox.ready() => Wake::Ready,
                r = resume.recv() => match r {
                    Some(reply) => Wake::Resume(reply),
                    None => Wake::End("replaced by a new session"),
                },
            };
            match wake {
                Wake::Ready => self.drain(None, &mut Vec::new()),
                Wake::Resume(reply) => {
                    // What the router delivered before the client came back is queued first,
                    // under the offline rules.
                    self.drain(None, &mut Vec::new());
                    match reply.send(self) {
                        Ok(()) => return,
                        Err(back) => {
                            self = back;
                            break "resume abandoned";
                        }
                    }
                }
                Wake::Shutdown => {
                    break self.save(&client_id, generation, token.clone(), left(expires));
                }
                Wake::End(reason) => break reason,
            }
        };
        {
            let mut parked = shared.parked.lock();
            if parked
                .get(&client_id)
                .is_some_and(|p| p.generation == generation)
            {
                parked.remove(&client_id);
            }
        }
        tracing::debug!(client_id, reason, "MQTT session ended");
        shared.handle.close(self.conn);
    }

    /// Publishes the will through the CLASP session (so its scopes apply).
    fn publish_will(&mut self, will: Will) {
        self.on_publish(Publish {
            topic: will.topic,
            payload: will.payload,
            qos: 0,
            retain: will.retain,
            dup: false,
            pkid: 0,
            topic_alias: None,
            props: None,
        });
    }
}

/// Keeps the elements of `v` at the positions in `keep`.
fn keep_indices<T>(v: &mut Vec<T>, keep: &[usize]) {
    let mut i = 0;
    v.retain(|_| {
        i += 1;
        keep.contains(&(i - 1))
    });
}

/// The MQTT 5 PUBACK/PUBREC reason for a router ERROR.
fn error_reason(code: ErrorCode) -> PubAckReason {
    match code {
        ErrorCode::Forbidden | ErrorCode::Unauthorized | ErrorCode::TokenExpired => {
            PubAckReason::NotAuthorized
        }
        ErrorCode::InvalidAddress => PubAckReason::TopicNameInvalid,
        ErrorCode::RateLimited | ErrorCode::TooLarge | ErrorCode::StateRejected => {
            PubAckReason::QuotaExceeded
        }
        ErrorCode::InvalidValue => PubAckReason::PayloadFormatInvalid,
        _ => PubAckReason::UnspecifiedError,
    }
}
