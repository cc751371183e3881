//! MQTT 3.1.1 and 5 listener for the CLASP router: MQTT clients join as CLASP sessions.
//!
//! Each MQTT connection becomes one CLASP session through the router's typed door for
//! adapters ([`RouterHandle::open_adapter`](clasp_router::server::RouterHandle::open_adapter),
//! with the client's token: the router's answer decides the CONNACK). Everything the client
//! then does is submitted as CLASP messages through that session and answered in place, so
//! the token's scopes, the rate limit and the router's limits apply exactly as for a native
//! client; what the router delivers comes back tagged with the session's subscription ids.
//! The session itself is a state machine without I/O (`session`), driven by a socket shell
//! (`shell`); `registry` keeps the connected clients and the sessions kept while they are away.
//!
//! * **Transport**: plain TCP ([`MqttListener::bind`]) and/or TLS ([`MqttListener::bind_tls`],
//!   [`MqttListener::add_tls`]: `mqtts://`, usually port 8883), one set of sessions behind
//!   every port; MQTT 3.1.1 and 5 (framing and CONNECT by `rumqttc::mqttbytes`, the other
//!   packets decoded and encoded by the listener, strictly: a packet MQTT or Mosquitto 2.0
//!   refuses closes the connection, MQTT 5: DISCONNECT 0x81, 0x82 or 0x94 first).
//!   The TLS handshake counts against [`MqttConfig::connect_timeout`] and runs off the accept
//!   loop, so a client that never finishes it blocks nobody.
//!   Packets are bounded by [`MqttConfig::max_packet_size`]; an oversized or malformed packet
//!   closes the connection (MQTT 5: DISCONNECT 0x95 / 0x81 first). CONNECT must arrive within
//!   [`MqttConfig::connect_timeout`]; keep-alive is enforced at 1.5 × the client's interval.
//! * **Sessions**: a client that asks for one (3.1.1 clean session 0; MQTT 5 clean start 0
//!   with a session expiry interval) keeps its session after it disconnects, for
//!   [`MqttConfig::session_expiry`] at most (MQTT 5 CONNACK says when the interval was
//!   capped). Meanwhile its CLASP session stays open with its subscriptions, and what they
//!   match is queued: QoS 1 events, and every SET as the latest value per topic, up to
//!   [`MqttConfig::max_offline_messages`] and [`MqttConfig::max_offline_bytes`] (the oldest
//!   go first, with a warning when the client returns). Reconnecting with the same client id,
//!   credentials and protocol version and clean session 0 resumes it: CONNACK session present
//!   1, the unacknowledged QoS 1 publishes again with DUP and their packet ids (no more at
//!   once than the new receive maximum), then the queue. An MQTT 5 DISCONNECT may change the
//!   expiry (0 ends the session at once). Other credentials, or clean
//!   session 1, start a fresh session and end the kept one. With
//!   [`MqttListener::with_store`], a clean shutdown saves the kept sessions and the next
//!   start opens them again (a crash loses them). A second connection with the same client id takes over (the
//!   older one is closed, MQTT 5: DISCONNECT 0x8E, and hands its session over; one that
//!   stopped reading is not waited for). An empty client id gets a
//!   generated one (`auto-…`, sent back to MQTT 5 clients). Will messages are published
//!   (with their QoS and properties, through the session) when a connection ends without
//!   DISCONNECT.
//! * **Auth**: the password is the CLASP token; with a username only, the username is the
//!   token. A refused HELLO gives CONNACK 4 / 0x86 (bad token) or 5 / 0x87 (expired or not
//!   allowed); a full router 3 / 0x89; [`MqttConfig::max_clients`] reached 3 / 0x97.
//! * **Topics** ([`topic`]): `a/b` ↔ `namespace/a/b`; `+` ↔ `*`, `#` ↔ `**` (whole levels).
//!   Every MQTT topic name has an address: empty levels and `%`, `*`, `{`, `}` are escaped
//!   with `%` (`/a` ↔ `namespace/%/a`), and filters match exactly as MQTT says (the `$` rule
//!   included).
//! * **Retained messages are params**: a retained PUBLISH is a CLASP SET (stored, with a
//!   revision); an empty retained payload sets the param to Null, which MQTT subscribers treat
//!   as cleared (the CLASP core has no delete). A non-retained PUBLISH is a CLASP event. A
//!   SUBSCRIBE delivers the matching non-null params as retained messages (after the SUBACK,
//!   as Mosquitto does), then live SETs and events as ordinary messages (MQTT 5
//!   retain-as-published subscriptions get SETs with retain 1).
//! * **MQTT to MQTT, as published**: what an MQTT client publishes carries its MQTT data to
//!   the router as an attachment (`session::meta`): the payload bytes, the QoS, the MQTT 5
//!   properties (user properties, payload format, content type, response topic, correlation
//!   data) and the message expiry. Other MQTT clients get the publish exactly as sent (a
//!   retained one too, for as long as no one else writes the param); a retained message
//!   with an expiry is a SET with that TTL, so it leaves the router when it expires, and the
//!   expiry sent counts down. CLASP clients see the value only.
//! * **Payloads** ([`payload`]): JSON and number text become typed values, other UTF-8 a
//!   string, other bytes bytes; values from CLASP clients go out as text, JSON or raw bytes.
//! * **QoS**: inbound QoS 1 is acknowledged after the router handled the write (the core
//!   answers a refusal synchronously; MQTT 5 PUBACK carries it, e.g. 0x87; MQTT 3.1.1 has no
//!   refusal code, so the PUBACK is sent and the message is dropped). A CLASP event has no
//!   ACK: it counts as accepted when the router did not refuse it. Inbound QoS 2 runs the
//!   PUBREC/PUBREL/PUBCOMP flow (applied once per packet id). A publish nobody subscribes to
//!   is acknowledged with MQTT 5's 0x10. Subscriptions are granted the QoS asked for (up to
//!   2); delivery is at min(published, granted), an update from a CLASP client counting as
//!   QoS 1. Outbound QoS 1 and 2 use packet ids and an in-flight window
//!   ([`MqttConfig::max_inflight`], or the client's receive maximum), redelivered (QoS 2: its
//!   PUBREL again once PUBREC came) when a kept session resumes. While the window is full the
//!   session's inbox is not drained, so its bounds close a session that cannot keep up.
//! * **Refusals**: a subscription the router refuses gets SUBACK 0x80 (3.1.1) or 0x87 / 0x8F /
//!   0x97 (5) and is not installed. UNSUBSCRIBE removes the CLASP subscriptions.
//! * **Subscription identifiers** (MQTT 5) come back with every publish their subscription
//!   matches (one copy, every matching id). **Shared subscriptions** (`$share/{group}/
//!   {filter}`, both versions) are groups in the router: each message goes to one member
//!   session, in turn; they get no retained messages.
//! * **Own publishes**: as in MQTT, a client's publish comes back to its own matching
//!   subscriptions (the router echoes SETs; CLASP does not send an event back to its sender,
//!   so the listener does), except to MQTT 5 no-local subscriptions, which skip the router's
//!   echo of the client's own SET and its own events.
//! * A rate-limited publish is refused in place (MQTT 5 PUBACK 0x97).
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]
#![deny(unused_must_use)]

mod door;
#[doc(hidden)]
pub mod fuzzing;
mod packet;
pub mod payload;
mod persist;
mod registry;
mod session;
mod shell;
pub mod topic;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use clasp_router::server::{IpSlot, IpTable, RouterHandle, TlsConfig, TlsError};
use clasp_store::RecordTable;
use thiserror::Error;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use topic::{TopicError, Topics};

/// Listener settings.
#[derive(Debug, Clone)]
pub struct MqttConfig {
    /// Prefix of the CLASP addresses MQTT topics map to: empty (`a/b` ↔ `/a/b`), or an
    /// absolute path such as `/mqtt` (`a/b` ↔ `/mqtt/a/b`).
    pub namespace: String,
    /// Largest accepted packet (remaining length, bytes).
    pub max_packet_size: usize,
    /// Most connected MQTT clients; 0 for no limit.
    pub max_clients: usize,
    /// Most connections open at once from one IP address (0: no limit); further ones are
    /// closed at once.
    pub max_connections_per_ip: usize,
    /// How long a new connection may take to send CONNECT.
    pub connect_timeout: Duration,
    /// How long one write to a client may take before the connection is dropped.
    pub write_timeout: Duration,
    /// Most outbound QoS 1 messages awaiting PUBACK (lowered to an MQTT 5 client's receive
    /// maximum).
    pub max_inflight: usize,
    /// Most messages held while the in-flight window is full; past it the client is
    /// disconnected as too slow.
    pub max_backlog: usize,
    /// Most bytes of such messages (payloads and topics); past it the client is disconnected
    /// as too slow too.
    pub max_backlog_bytes: usize,
    /// The longest a session outlives its connection: what an MQTT 3.1.1 client with clean
    /// session 0 gets, and the cap of an MQTT 5 client's session expiry interval. Zero keeps
    /// no session.
    pub session_expiry: Duration,
    /// Most messages queued for a client that is away (QoS 1 events, and the latest SET per
    /// topic); past it the oldest is dropped, and a warning says how many when it returns.
    pub max_offline_messages: usize,
    /// Most bytes (topics and payloads) queued for one client that is away; past it the
    /// oldest messages are dropped as for [`MqttConfig::max_offline_messages`].
    pub max_offline_bytes: usize,
    /// Most sessions kept at once for clients that are away (each is a router session);
    /// past it a leaving client's session ends with its connection.
    pub max_kept_sessions: usize,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            namespace: String::new(),
            max_packet_size: 256 * 1024,
            max_clients: 0,
            max_connections_per_ip: 1000,
            connect_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(30),
            max_inflight: 64,
            max_backlog: 65_536,
            max_backlog_bytes: 16 << 20,
            session_expiry: Duration::from_secs(3600),
            max_offline_messages: 1000,
            max_offline_bytes: 256 * 1024,
            max_kept_sessions: 1000,
        }
    }
}

/// Why the listener could not start.
#[derive(Debug, Error)]
pub enum MqttError {
    /// The configured namespace is not usable.
    #[error("invalid MQTT namespace: {0}")]
    Namespace(#[from] TopicError),
    /// The TCP socket could not be bound.
    #[error("cannot listen for MQTT on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The TLS certificate or key is not usable.
    #[error("MQTT over TLS: {0}")]
    Tls(#[from] TlsError),
    /// Another socket error.
    #[error("MQTT listener: {0}")]
    Io(#[from] std::io::Error),
}

/// A listener's counters at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MqttStats {
    /// Clients connected now.
    pub connected: u64,
    /// Sessions kept now for clients that are away.
    pub parked: u64,
    /// Sessions resumed by a returning client, in all.
    pub resumed: u64,
    /// Messages dropped from full offline queues, in all.
    pub offline_dropped: u64,
}

/// A cloneable view of a listener's counters.
#[derive(Debug, Clone)]
pub struct MqttStatsHandle(Arc<registry::Shared>);

impl MqttStatsHandle {
    /// The counters now.
    pub fn snapshot(&self) -> MqttStats {
        use std::sync::atomic::Ordering::Relaxed;
        MqttStats {
            connected: self.0.active.load(Relaxed) as u64,
            parked: self.0.parked_count() as u64,
            resumed: self.0.resumed.load(Relaxed),
            offline_dropped: self.0.ctx.offline_dropped.load(Relaxed),
        }
    }
}

/// An MQTT listener feeding a CLASP router: one or more TCP ports (plain MQTT and MQTT over
/// TLS) sharing one set of sessions, limits and counters.
pub struct MqttListener {
    sockets: Vec<Socket>,
    shared: Arc<registry::Shared>,
    store: Option<Arc<dyn RecordTable>>,
    /// Sessions opened again from the store, kept by [`MqttListener::run`].
    restored: Vec<registry::Restored>,
}

/// One bound port.
struct Socket {
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
}

impl std::fmt::Debug for MqttListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ports: Vec<(Option<SocketAddr>, bool)> = self
            .sockets
            .iter()
            .map(|s| (s.listener.local_addr().ok(), s.tls.is_some()))
            .collect();
        f.debug_struct("MqttListener")
            .field("ports", &ports)
            .finish_non_exhaustive()
    }
}

impl MqttListener {
    /// Binds `addr` (port 0 picks a free one) for the router behind `handle`: plain TCP.
    pub async fn bind(
        addr: SocketAddr,
        handle: RouterHandle,
        config: MqttConfig,
    ) -> Result<MqttListener, MqttError> {
        let mut l = Self::new(handle, config)?;
        l.add_port(addr, None).await?;
        Ok(l)
    }

    /// Binds `addr` for MQTT over TLS (`mqtts://`) with the certificate in `tls`.
    pub async fn bind_tls(
        addr: SocketAddr,
        handle: RouterHandle,
        config: MqttConfig,
        tls: &TlsConfig,
    ) -> Result<MqttListener, MqttError> {
        let mut l = Self::new(handle, config)?;
        l.add_tls(addr, tls).await?;
        Ok(l)
    }

    /// Also serves MQTT over TLS on `addr`, with the same sessions (a client may leave on one
    /// port and resume its session on the other) and limits; returns the bound address.
    pub async fn add_tls(
        &mut self,
        addr: SocketAddr,
        tls: &TlsConfig,
    ) -> Result<SocketAddr, MqttError> {
        // No ALPN list: clients offering "mqtt" (or a cloud vendor's name) are all served.
        let acceptor = TlsAcceptor::from(Arc::new(tls.server_config(&[])?));
        self.add_port(addr, Some(acceptor)).await
    }

    /// Also serves plain MQTT on `addr`; returns the bound address.
    pub async fn add_plain(&mut self, addr: SocketAddr) -> Result<SocketAddr, MqttError> {
        self.add_port(addr, None).await
    }

    fn new(handle: RouterHandle, config: MqttConfig) -> Result<MqttListener, MqttError> {
        let topics = Topics::new(&config.namespace)?;
        Ok(MqttListener {
            sockets: Vec::new(),
            shared: Arc::new(registry::Shared::new(handle, config, topics)),
            store: None,
            restored: Vec::new(),
        })
    }

    async fn add_port(
        &mut self,
        addr: SocketAddr,
        tls: Option<TlsAcceptor>,
    ) -> Result<SocketAddr, MqttError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| MqttError::Bind { addr, source })?;
        let bound = listener.local_addr()?;
        self.sockets.push(Socket { listener, tls });
        Ok(bound)
    }

    /// Keeps sessions across a clean restart in `table` (a record table of the router's
    /// store): the sessions saved there by the last shutdown are opened again now (their CLASP
    /// sessions and subscriptions, so nothing published from now on is missed) and removed
    /// from the table; those kept when this listener or the router shuts down are saved there.
    pub async fn with_store(mut self, table: Arc<dyn RecordTable>) -> MqttListener {
        self.shared.persist.store(true, Ordering::Release);
        let t = table.clone();
        let saved = tokio::task::spawn_blocking(move || persist::take_all(&*t))
            .await
            .unwrap_or_default();
        for s in saved {
            if let Some(r) = registry::restore(&self.shared, s) {
                self.restored.push(r);
            }
        }
        if !self.restored.is_empty() {
            tracing::info!(
                sessions = self.restored.len(),
                "kept MQTT sessions restored"
            );
        }
        self.store = Some(table);
        self
    }

    /// The address of the first port bound.
    pub fn local_addr(&self) -> Result<SocketAddr, MqttError> {
        match self.sockets.first() {
            Some(s) => Ok(s.listener.local_addr()?),
            None => Err(MqttError::Io(std::io::Error::other("no port bound"))),
        }
    }

    /// A view of the listener's counters that outlives [`MqttListener::run`].
    pub fn stats(&self) -> MqttStatsHandle {
        MqttStatsHandle(self.shared.clone())
    }

    /// Whether the first port bound serves TLS (`mqtts://`).
    pub fn is_tls(&self) -> bool {
        self.sockets.first().is_some_and(|s| s.tls.is_some())
    }

    /// Accepts clients on every port until `shutdown` is cancelled, then closes every
    /// connection (MQTT 5: DISCONNECT 0x8B), ends every kept session and returns once they
    /// are gone.
    pub async fn run(self, shutdown: CancellationToken) {
        let tracker = TaskTracker::new();
        let per_ip = Arc::new(IpTable::default());
        // Sessions restored from the store are kept before the first client is accepted.
        for r in self.restored {
            tracker.spawn(r.run(shutdown.child_token()));
        }
        for socket in self.sockets {
            tracker.spawn(accept_loop(
                socket,
                self.shared.clone(),
                per_ip.clone(),
                tracker.clone(),
                shutdown.clone(),
            ));
        }
        tracker.close();
        tracker.wait().await;
        if let Some(table) = self.store {
            let saved: Vec<persist::Saved> = std::mem::take(&mut *self.shared.saved.lock())
                .into_values()
                .map(|(_, s)| s)
                .collect();
            if !saved.is_empty() {
                let _ =
                    tokio::task::spawn_blocking(move || persist::put_all(&*table, &saved)).await;
            }
        }
    }
}

/// Accepts connections on one port until `shutdown` is cancelled.
async fn accept_loop(
    socket: Socket,
    shared: Arc<registry::Shared>,
    per_ip: Arc<IpTable>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => {
                shared.stopping.store(true, Ordering::Release);
                break;
            }
            r = socket.listener.accept() => match r {
                Ok((stream, peer)) => {
                    let Some(slot) = per_ip.take(peer.ip(), shared.config().max_connections_per_ip) else {
                        tracing::debug!(%peer, "too many MQTT connections from this address");
                        continue;
                    };
                    let stop = shutdown.child_token();
                    tracker.spawn(serve(shared.clone(), stream, peer, slot, socket.tls.clone(), stop));
                }
                Err(e) => {
                    // Out of descriptors and the like: wait a little instead of spinning.
                    tracing::warn!(error = %e, "MQTT accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
}

/// One accepted connection: the TLS handshake if any, then the MQTT session.
async fn serve(
    shared: Arc<registry::Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    slot: IpSlot,
    tls: Option<TlsAcceptor>,
    stop: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let Some(acceptor) = tls else {
        let (reader, writer) = stream.into_split();
        shell::serve(shared, reader, writer, Some(peer), None, Some(slot), stop).await;
        return;
    };
    // The handshake and CONNECT share the connect timeout.
    let deadline = Instant::now() + shared.config().connect_timeout;
    let accepted = tokio::select! {
        () = stop.cancelled() => return,
        r = tokio::time::timeout_at(deadline, acceptor.accept(stream)) => r,
    };
    match accepted {
        Ok(Ok(tls)) => {
            let (reader, writer) = tokio::io::split(tls);
            shell::serve(
                shared,
                reader,
                writer,
                Some(peer),
                Some(deadline),
                Some(slot),
                stop,
            )
            .await;
        }
        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "MQTT TLS handshake failed"),
        Err(_) => {
            tracing::debug!(%peer, "MQTT TLS handshake not finished within the connect timeout")
        }
    }
}
