//! Peer-to-peer data between clients over WebRTC DataChannels, signalled through the router
//! (protocol.md §11), with a fallback through the router that really delivers.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use clasp_client::Client;
//! use clasp_client::p2p::{P2p, P2pConfig, P2pEvent};
//!
//! let client = Client::connect("ws://127.0.0.1:7330").await?;
//! let (p2p, mut events) = P2p::attach(&client, P2pConfig::default()).await?;
//! while let Some(event) = events.recv().await {
//!     match event {
//!         P2pEvent::PeerAnnounced { session, .. } => p2p.connect_to_peer(&session).await?,
//!         P2pEvent::Connected { peer } => {
//!             p2p.send_p2p(&peer, b"hello".to_vec(), true).await?;
//!         }
//!         P2pEvent::Data { peer, data, .. } => println!("{peer}: {data:?}"),
//!         _ => {}
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! Each peer connection has two channels, `clasp` (unordered, no retransmits) and
//! `clasp-reliable` (ordered, reliable). Host candidates are the local addresses (loopback
//! included), so peers on one machine connect with no network at all; STUN servers add
//! server-reflexive candidates. The WebRTC stack is `str0m` (Sans-IO; see
//! `docs/architecture.md` for why).
//!
//! Beyond the reference client: `Connected` fires exactly once per peer and side; both sides
//! time out (`ConnectionFailed`); simultaneous offers resolve deterministically (the session
//! with the smaller id yields); candidates that arrive before the offer are kept; a peer whose
//! router session ends is cleaned up at once; P2P is re-established after a router reconnect;
//! and the router fallback delivers the data to the peer (`Route::Router`).

mod link;
mod signal;
mod stun;
mod turn;

pub use turn::TurnServer;

/// Entry points for fuzzing the parsers P2P applies to what other peers send (not an API).
#[doc(hidden)]
pub mod fuzzing {
    use clasp_proto::{Message, PublishPayload};

    use super::signal::{Envelope, Signal, candidate_line, parse_announce};

    /// Decodes `frame` as a router frame and, if it is a PUBLISH with a value, runs every P2P
    /// parser on it: signal envelope, announce, ICE candidate and SDP. Must never panic.
    pub fn signal_frame(frame: &[u8]) {
        let Ok(f) = clasp_proto::decode_frame(frame) else {
            return;
        };
        let Message::Publish(p) = f.message else {
            return;
        };
        let PublishPayload::Value(v) = p.payload else {
            return;
        };
        let _ = parse_announce(&v);
        let Some(env) = Envelope::from_value(&v) else {
            return;
        };
        match env.signal {
            Signal::Offer { sdp } => {
                let _ = str0m::change::SdpOffer::from_sdp_string(&sdp);
            }
            Signal::Answer { sdp } => {
                let _ = str0m::change::SdpAnswer::from_sdp_string(&sdp);
            }
            Signal::IceCandidate { candidate } => {
                if let Some(line) = candidate_line(&candidate) {
                    let _ = str0m::Candidate::from_sdp_string(&line);
                }
            }
            _ => {}
        }
    }
}

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use crate::{Client, ConnectionEvent, Error as ClientError, Update};
use link::{Link, LinkConfig, LinkNote};
use signal::{Envelope, Signal};

/// Signals (and relayed messages) buffered for the manager.
const RELAY_BUFFER: usize = 1 << 16;

/// How long a sender blocked on a full channel buffer waits before trying again.
const BUSY_RETRY: Duration = Duration::from_millis(5);

/// How [`P2p::send_p2p`] routes data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RoutingMode {
    /// Always through the router.
    ServerOnly,
    /// Only directly; an error if the peer is not connected.
    P2POnly,
    /// Directly when connected, otherwise through the router.
    #[default]
    PreferP2P,
}

/// Which way data went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Over the WebRTC DataChannel.
    Direct,
    /// Through the router (as a signal to that peer's session only).
    Router,
}

/// Something that happened to P2P.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum P2pEvent {
    /// A P2P-capable session announced itself (or was there when we joined).
    PeerAnnounced {
        /// Its session id.
        session: String,
        /// Its features (`webrtc`, `reliable`, `unreliable`).
        features: Vec<String>,
    },
    /// The direct connection to `peer` is up (once per connection).
    Connected {
        /// The peer's session id.
        peer: String,
    },
    /// Data from `peer`.
    Data {
        /// The peer's session id.
        peer: String,
        /// The bytes as sent.
        data: Bytes,
        /// Sent on the reliable channel (or reliably through the router).
        reliable: bool,
        /// Which way it came.
        route: Route,
    },
    /// The direct connection to `peer` ended.
    Disconnected {
        /// The peer's session id.
        peer: String,
        /// Why.
        reason: String,
    },
    /// A connection to `peer` could not be made.
    ConnectionFailed {
        /// The peer's session id.
        peer: String,
        /// Why (timed out, no such session, no local address, ...).
        reason: String,
    },
}

/// P2P settings.
#[derive(Debug, Clone)]
pub struct P2pConfig {
    /// How long a connection attempt may take, on either side (default 30 s).
    pub connect_timeout: Duration,
    /// Routing of [`P2p::send_p2p`] (default [`RoutingMode::PreferP2P`]).
    pub routing: RoutingMode,
    /// Local addresses for host candidates; empty (the default) means every interface,
    /// loopback included.
    pub addresses: Vec<IpAddr>,
    /// STUN servers (`host:port`) asked for server-reflexive candidates; none by default, so
    /// nothing leaves the local networks unless configured.
    pub stun_servers: Vec<String>,
    /// TURN servers (UDP, long-term credentials) that relayed candidates are allocated on.
    pub turn_servers: Vec<TurnServer>,
    /// Offer relayed candidates only (the WebRTC "relay" ICE transport policy): the peer never
    /// learns our addresses, at the cost of a detour through the TURN server.
    pub relay_only: bool,
    /// Test hook: SDPs go out without candidates, and an offerer signals its candidates
    /// before its offer, so the answerer must keep candidates that arrive early.
    #[doc(hidden)]
    pub trickle_first: bool,
}

impl Default for P2pConfig {
    fn default() -> Self {
        P2pConfig {
            connect_timeout: Duration::from_secs(30),
            routing: RoutingMode::PreferP2P,
            addresses: Vec::new(),
            stun_servers: Vec::new(),
            turn_servers: Vec::new(),
            relay_only: false,
            trickle_first: false,
        }
    }
}

/// What went wrong in a P2P call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum P2pError {
    /// [`RoutingMode::P2POnly`] and no open direct connection to that peer.
    #[error("no direct connection to {0}")]
    NotConnected(String),
    /// The peer is ourselves.
    #[error("cannot connect to our own session")]
    OwnSession,
    /// The client has no session (not connected).
    #[error("the client is not connected to a router")]
    NoSession,
    /// More than a channel message may carry.
    #[error("{0} bytes is more than the {max} a P2P message may carry", max = link::MAX_MESSAGE)]
    TooLarge(usize),
    /// The P2P manager has stopped.
    #[error("P2P has stopped")]
    Stopped,
    /// The router connection refused a signal.
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// The P2P side of a [`Client`]. Cheap to clone.
#[derive(Debug, Clone)]
pub struct P2p {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    client: Client,
    routing: Mutex<RoutingMode>,
    /// Open direct connections, for the send path.
    open: Mutex<HashMap<String, Arc<Link>>>,
    own: Mutex<String>,
    cmd: mpsc::UnboundedSender<Cmd>,
    notes: mpsc::UnboundedSender<Note>,
    known: Mutex<HashMap<String, Vec<String>>>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(t) = lock(&self.task).take() {
            t.abort();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

enum Cmd {
    Connect(String, oneshot::Sender<Result<(), P2pError>>),
    Disconnect(String),
}

/// A link's report, tagged with the attempt it belongs to.
struct Note {
    peer: String,
    correlation: String,
    note: LinkNote,
}

impl P2p {
    /// Enables P2P on `client`: subscribes to its signal address and to announces, announces
    /// itself, and returns the handle with the stream of events (unbounded: nothing is lost;
    /// read it).
    pub async fn attach(
        client: &Client,
        config: P2pConfig,
    ) -> Result<(P2p, mpsc::UnboundedReceiver<P2pEvent>), P2pError> {
        let own = client.session_id().ok_or(P2pError::NoSession)?;
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (notes_tx, notes_rx) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            client: client.clone(),
            routing: Mutex::new(config.routing),
            open: Mutex::new(HashMap::new()),
            own: Mutex::new(own.clone()),
            cmd: cmd_tx,
            notes: notes_tx,
            known: Mutex::new(HashMap::new()),
            task: Mutex::new(None),
        });
        let conn_events = client.events();
        let subs = Subs::open(client, &own).await?;
        let manager = Manager {
            p2p: Arc::downgrade(&inner),
            client: client.clone(),
            cfg: config,
            own,
            peers: HashMap::new(),
            early: HashMap::new(),
            events: events_tx,
        };
        manager.announce().await?;
        let task = tokio::spawn(manager.run(subs, cmd_rx, notes_rx, conn_events));
        *lock(&inner.task) = Some(task);
        Ok((P2p { inner }, events_rx))
    }

    /// Our session id (changes when the client reconnects).
    pub fn session_id(&self) -> String {
        lock(&self.inner.own).clone()
    }

    /// Starts a connection to `peer` (we offer). Returns once the offer is sent; watch for
    /// [`P2pEvent::Connected`] or [`P2pEvent::ConnectionFailed`].
    pub async fn connect_to_peer(&self, peer: &str) -> Result<(), P2pError> {
        let (tx, rx) = oneshot::channel();
        self.inner
            .cmd
            .send(Cmd::Connect(peer.to_owned(), tx))
            .map_err(|_| P2pError::Stopped)?;
        rx.await.map_err(|_| P2pError::Stopped)?
    }

    /// Closes the direct connection to `peer` (it gets `Disconnected`).
    pub fn disconnect_peer(&self, peer: &str) {
        let _ = self.inner.cmd.send(Cmd::Disconnect(peer.to_owned()));
    }

    /// Whether a direct connection to `peer` is open.
    pub fn is_peer_connected(&self, peer: &str) -> bool {
        lock(&self.inner.open)
            .get(peer)
            .is_some_and(|l| l.is_open())
    }

    /// The P2P-capable sessions we know of, with their features.
    pub fn known_peers(&self) -> HashMap<String, Vec<String>> {
        lock(&self.inner.known).clone()
    }

    /// The current routing mode.
    pub fn routing_mode(&self) -> RoutingMode {
        *lock(&self.inner.routing)
    }

    /// Changes the routing mode.
    pub fn set_routing_mode(&self, mode: RoutingMode) {
        *lock(&self.inner.routing) = mode;
    }

    /// Sends `data` to `peer` on the reliable or the unreliable channel, as the routing mode
    /// says; returns which way it went. Through the router, the data goes to that peer's
    /// session only and arrives as [`P2pEvent::Data`] with [`Route::Router`].
    pub async fn send_p2p(
        &self,
        peer: &str,
        data: impl Into<Bytes>,
        reliable: bool,
    ) -> Result<Route, P2pError> {
        let data: Bytes = data.into();
        if data.len() > link::MAX_MESSAGE {
            return Err(P2pError::TooLarge(data.len()));
        }
        let mode = self.routing_mode();
        if mode != RoutingMode::ServerOnly {
            let link = lock(&self.inner.open).get(peer).cloned();
            match link {
                Some(link) => {
                    // A full send buffer is back-pressure, not a reason to switch routes
                    // (which could reorder the reliable stream): wait for room.
                    let space = link.space();
                    loop {
                        let room = space.notified();
                        match link.send(&data, reliable) {
                            Ok(true) => return Ok(Route::Direct),
                            Ok(false) if link.is_open() => {
                                let _ = tokio::time::timeout(BUSY_RETRY, room).await;
                            }
                            _ if mode == RoutingMode::P2POnly => {
                                return Err(P2pError::NotConnected(peer.to_owned()));
                            }
                            _ => break,
                        }
                    }
                }
                None if mode == RoutingMode::P2POnly => {
                    return Err(P2pError::NotConnected(peer.to_owned()));
                }
                None => {}
            }
        }
        self.relay(peer, data, reliable).await?;
        Ok(Route::Router)
    }

    async fn relay(&self, peer: &str, data: Bytes, reliable: bool) -> Result<(), P2pError> {
        let env = Envelope {
            from: self.session_id(),
            correlation_id: String::new(),
            signal: Signal::Relay { data, reliable },
        };
        self.inner
            .client
            .emit(&signal::signal_address(peer), env.to_value())
            .await?;
        Ok(())
    }
}

/// The subscriptions the manager listens on.
struct Subs {
    signals: crate::Subscription,
    announces: crate::Subscription,
    leaves: crate::Subscription,
}

impl Subs {
    async fn open(client: &Client, own: &str) -> Result<Subs, P2pError> {
        Ok(Subs {
            // Relayed data arrives here too: a deep buffer, so a burst through the router is
            // not dropped while the manager catches up.
            signals: client
                .subscribe_with(
                    &signal::signal_address(own),
                    crate::SubscribeOptions::new().buffer(RELAY_BUFFER),
                )
                .await?,
            announces: client.subscribe(signal::ANNOUNCE).await?,
            leaves: client.subscribe(signal::LEAVE).await?,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Offerer,
    Answerer,
}

struct Peer {
    correlation: String,
    role: Role,
    link: Arc<Link>,
    open: bool,
    deadline: Instant,
}

/// Candidates that came before their offer.
struct Early {
    since: Instant,
    lines: Vec<(String, String)>,
}

/// Most early candidates kept per peer.
const MAX_EARLY: usize = 64;

/// The task that owns every connection attempt.
struct Manager {
    p2p: std::sync::Weak<Inner>,
    client: Client,
    cfg: P2pConfig,
    own: String,
    peers: HashMap<String, Peer>,
    early: HashMap<String, Early>,
    events: mpsc::UnboundedSender<P2pEvent>,
}

impl Manager {
    async fn run(
        mut self,
        mut subs: Subs,
        mut cmds: mpsc::UnboundedReceiver<Cmd>,
        mut notes: mpsc::UnboundedReceiver<Note>,
        mut conn: tokio::sync::broadcast::Receiver<ConnectionEvent>,
    ) {
        loop {
            let next = self
                .peers
                .values()
                .filter(|p| !p.open)
                .map(|p| p.deadline)
                .min()
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                u = subs.signals.recv() => match u {
                    Some(u) => self.on_signal(&u).await,
                    None => return,
                },
                u = subs.announces.recv() => match u {
                    Some(u) => self.on_announce(&u),
                    None => return,
                },
                u = subs.leaves.recv() => match u {
                    Some(u) => self.on_leave(&u).await,
                    None => return,
                },
                c = cmds.recv() => match c {
                    Some(Cmd::Connect(peer, reply)) => {
                        let r = self.connect(&peer).await;
                        let _ = reply.send(r);
                    }
                    Some(Cmd::Disconnect(peer)) => {
                        self.drop_peer(&peer, None, Some("disconnected by the application")).await;
                    }
                    None => return,
                },
                n = notes.recv() => if let Some(n) = n {
                    self.on_note(n).await;
                },
                e = conn.recv() => match e {
                    Ok(ConnectionEvent::Reconnected { session, .. }) => {
                        match self.rejoin(session).await {
                            Ok(new) => subs = new,
                            Err(e) => tracing::warn!(error = %e, "P2P could not rejoin after the reconnect"),
                        }
                    }
                    Ok(ConnectionEvent::Disconnected { .. }) => {
                        self.drop_all("the router connection was lost").await;
                    }
                    Ok(ConnectionEvent::RouterError { address: Some(a), message, .. }) => {
                        self.on_router_error(&a, &message).await;
                    }
                    Ok(ConnectionEvent::Closed) => return,
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                },
                () = tokio::time::sleep_until(next.into()) => self.expire().await,
            }
        }
    }

    fn emit(&self, e: P2pEvent) {
        let _ = self.events.send(e);
    }

    async fn announce(&self) -> Result<(), P2pError> {
        self.client
            .emit(signal::ANNOUNCE, signal::announce_value(&self.own))
            .await?;
        Ok(())
    }

    async fn signal(&self, peer: &str, correlation: &str, s: Signal) {
        let env = Envelope {
            from: self.own.clone(),
            correlation_id: correlation.to_owned(),
            signal: s,
        };
        if let Err(e) = self
            .client
            .emit(&signal::signal_address(peer), env.to_value())
            .await
        {
            tracing::debug!(%peer, error = %e, "P2P signal not sent");
        }
    }

    fn notes_for(&self, peer: &str, correlation: &str) -> link::Notes {
        let peer = peer.to_owned();
        let correlation = correlation.to_owned();
        let events = self.events.clone();
        let tx = self.p2p.upgrade().map(|p| p.notes.clone());
        Arc::new(move |note| match note {
            // Data goes straight to the application: no hop through the manager.
            LinkNote::Data { data, reliable } => {
                let _ = events.send(P2pEvent::Data {
                    peer: peer.clone(),
                    data,
                    reliable,
                    route: Route::Direct,
                });
            }
            note => {
                if let Some(tx) = &tx {
                    let _ = tx.send(Note {
                        peer: peer.clone(),
                        correlation: correlation.clone(),
                        note,
                    });
                }
            }
        })
    }

    fn link_config(&self) -> LinkConfig {
        LinkConfig {
            addresses: link::local_addresses(&self.cfg.addresses),
            stun_servers: self.cfg.stun_servers.clone(),
            turn_servers: self.cfg.turn_servers.clone(),
            relay_only: self.cfg.relay_only,
        }
    }

    async fn connect(&mut self, peer: &str) -> Result<(), P2pError> {
        if peer == self.own {
            return Err(P2pError::OwnSession);
        }
        if self.peers.contains_key(peer) {
            return Ok(());
        }
        let correlation = format!("{}-{}-{}", self.own, peer, uuid_like());
        let cfg = self.link_config();
        let notes = self.notes_for(peer, &correlation);
        let (link, sdp, candidates) = match Link::offer(&cfg, notes).await {
            Ok(x) => x,
            Err(e) => {
                let reason = e.to_string();
                self.emit(P2pEvent::ConnectionFailed {
                    peer: peer.to_owned(),
                    reason,
                });
                return Ok(());
            }
        };
        self.peers.insert(
            peer.to_owned(),
            Peer {
                correlation: correlation.clone(),
                role: Role::Offerer,
                link: Arc::new(link),
                open: false,
                deadline: Instant::now() + self.cfg.connect_timeout,
            },
        );
        // Normally the offer goes first (its SDP carries the candidates) and the candidates
        // follow as signals for peers that expect them trickled; the test hook turns it round.
        let trickled = candidate_signals(&sdp, &candidates);
        if self.cfg.trickle_first {
            self.trickle(peer, &correlation, trickled).await;
            let offer = Signal::Offer {
                sdp: without_candidates(&sdp),
            };
            self.signal(peer, &correlation, offer).await;
        } else {
            self.signal(peer, &correlation, Signal::Offer { sdp }).await;
            self.trickle(peer, &correlation, trickled).await;
        }
        Ok(())
    }

    async fn on_signal(&mut self, u: &Update) {
        let Some(env) = Envelope::from_value(&u.value) else {
            return;
        };
        let from = env.from.clone();
        if from == self.own {
            return;
        }
        match env.signal {
            Signal::Offer { sdp } => self.on_offer(&from, &env.correlation_id, &sdp).await,
            Signal::Answer { sdp } => {
                let ok = match self.peers.get(&from) {
                    Some(p) if p.role == Role::Offerer && p.correlation == env.correlation_id => {
                        p.link.accept_answer(&sdp).map_err(|e| e.to_string())
                    }
                    _ => return,
                };
                if let Err(reason) = ok {
                    self.fail(&from, &format!("bad answer: {reason}")).await;
                }
            }
            Signal::IceCandidate { candidate } => {
                let Some(line) = signal::candidate_line(&candidate) else {
                    return;
                };
                match self.peers.get(&from) {
                    Some(p) if p.correlation == env.correlation_id => {
                        let _ = p.link.add_remote_candidate(&line);
                    }
                    _ => {
                        let e = self.early.entry(from).or_insert_with(|| Early {
                            since: Instant::now(),
                            lines: Vec::new(),
                        });
                        if e.lines.len() < MAX_EARLY {
                            e.lines.push((env.correlation_id, line));
                        }
                    }
                }
            }
            // Our own channel-open event says when we are connected; theirs adds nothing.
            Signal::Connected => {}
            Signal::Disconnected { reason } => {
                let matches = self.peers.get(&from).is_some_and(|p| {
                    env.correlation_id.is_empty() || p.correlation == env.correlation_id
                });
                if matches {
                    let reason = reason.unwrap_or_else(|| "the peer disconnected".into());
                    self.drop_peer(&from, Some(&reason), None).await;
                }
            }
            Signal::Relay { data, reliable } => self.emit(P2pEvent::Data {
                peer: from,
                data,
                reliable,
                route: Route::Router,
            }),
        }
    }

    async fn on_offer(&mut self, from: &str, correlation: &str, sdp: &str) {
        if let Some(p) = self.peers.get(from) {
            if p.correlation == correlation {
                return;
            }
            // Glare: both sides offered. The smaller session id yields and answers; the other
            // ignores the offer it got, knowing its own will be answered.
            if p.role == Role::Offerer && !p.open && self.own.as_str() > from {
                return;
            }
            let stale = self.peers.remove(from);
            self.unpublish(from);
            if let Some(old) = stale {
                if old.open {
                    self.emit(P2pEvent::Disconnected {
                        peer: from.to_owned(),
                        reason: "the peer started a new connection".into(),
                    });
                }
                close_link(old.link);
            }
        }
        let cfg = self.link_config();
        let notes = self.notes_for(from, correlation);
        let (link, answer, candidates) = match Link::answer(&cfg, sdp, notes).await {
            Ok(x) => x,
            Err(e) => {
                self.emit(P2pEvent::ConnectionFailed {
                    peer: from.to_owned(),
                    reason: e.to_string(),
                });
                self.signal(
                    from,
                    correlation,
                    Signal::Disconnected {
                        reason: Some(e.to_string()),
                    },
                )
                .await;
                return;
            }
        };
        if let Some(early) = self.early.remove(from) {
            for (c, line) in early.lines {
                if c == correlation || c.is_empty() {
                    let _ = link.add_remote_candidate(&line);
                }
            }
        }
        self.peers.insert(
            from.to_owned(),
            Peer {
                correlation: correlation.to_owned(),
                role: Role::Answerer,
                link: Arc::new(link),
                open: false,
                deadline: Instant::now() + self.cfg.connect_timeout,
            },
        );
        let trickled = candidate_signals(&answer, &candidates);
        self.signal(from, correlation, Signal::Answer { sdp: answer })
            .await;
        self.trickle(from, correlation, trickled).await;
    }

    /// Sends `peer` the `ice_candidate` signals from [`candidate_signals`].
    async fn trickle(&self, peer: &str, correlation: &str, candidates: Vec<Signal>) {
        for signal in candidates {
            self.signal(peer, correlation, signal).await;
        }
    }

    fn on_announce(&mut self, u: &Update) {
        let Some((session, features)) = signal::parse_announce(&u.value) else {
            return;
        };
        if session == self.own {
            return;
        }
        if let Some(p) = self.p2p.upgrade() {
            lock(&p.known).insert(session.clone(), features.clone());
        }
        self.emit(P2pEvent::PeerAnnounced { session, features });
    }

    async fn on_leave(&mut self, u: &Update) {
        let Some(session) = u.value.get("session_id").and_then(|v| v.as_str()) else {
            return;
        };
        let session = session.to_owned();
        if let Some(p) = self.p2p.upgrade() {
            lock(&p.known).remove(&session);
        }
        self.early.remove(&session);
        if self.peers.contains_key(&session) {
            self.drop_peer(&session, Some("the peer left the router"), None)
                .await;
        }
    }

    async fn on_router_error(&mut self, address: &str, message: &str) {
        let Some(peer) = address.strip_prefix("/clasp/p2p/signal/") else {
            return;
        };
        if self.peers.get(peer).is_some_and(|p| !p.open) {
            let peer = peer.to_owned();
            self.fail(&peer, &format!("the router refused the signal: {message}"))
                .await;
        }
    }

    async fn on_note(&mut self, n: Note) {
        let Some(p) = self.peers.get_mut(&n.peer) else {
            return;
        };
        if !n.correlation.is_empty() && p.correlation != n.correlation {
            return;
        }
        match n.note {
            LinkNote::Open => {
                if p.open {
                    return;
                }
                p.open = true;
                let link = p.link.clone();
                let correlation = p.correlation.clone();
                if let Some(inner) = self.p2p.upgrade() {
                    lock(&inner.open).insert(n.peer.clone(), link);
                }
                self.emit(P2pEvent::Connected {
                    peer: n.peer.clone(),
                });
                self.signal(&n.peer, &correlation, Signal::Connected).await;
            }
            LinkNote::Data { .. } => {}
            LinkNote::Ended { reason } => {
                let peer = n.peer;
                self.drop_peer(&peer, Some(&reason), None).await;
            }
        }
    }

    /// Ends the attempt or connection to `peer`: `Disconnected` if it was open, otherwise
    /// `ConnectionFailed`. With `tell`, the peer is sent `disconnected` with that reason.
    async fn drop_peer(&mut self, peer: &str, reason: Option<&str>, tell: Option<&str>) {
        let Some(p) = self.peers.remove(peer) else {
            return;
        };
        self.unpublish(peer);
        let reason = reason.or(tell).unwrap_or("closed").to_owned();
        if p.open {
            self.emit(P2pEvent::Disconnected {
                peer: peer.to_owned(),
                reason: reason.clone(),
            });
        } else {
            self.emit(P2pEvent::ConnectionFailed {
                peer: peer.to_owned(),
                reason: reason.clone(),
            });
        }
        if let Some(t) = tell {
            self.signal(
                peer,
                &p.correlation,
                Signal::Disconnected {
                    reason: Some(t.to_owned()),
                },
            )
            .await;
        }
        close_link(p.link);
    }

    async fn fail(&mut self, peer: &str, reason: &str) {
        self.drop_peer(peer, Some(reason), None).await;
    }

    fn unpublish(&self, peer: &str) {
        if let Some(inner) = self.p2p.upgrade() {
            lock(&inner.open).remove(peer);
        }
    }

    async fn expire(&mut self) {
        let now = Instant::now();
        let late: Vec<String> = self
            .peers
            .iter()
            .filter(|(_, p)| !p.open && p.deadline <= now)
            .map(|(k, _)| k.clone())
            .collect();
        let secs = self.cfg.connect_timeout.as_secs_f64();
        let reason = format!("connection timed out after {secs:.1} s");
        for peer in late {
            // The peer is told too, so its side ends now rather than at its own deadline.
            self.drop_peer(&peer, None, Some(&reason)).await;
        }
        let ttl = self.cfg.connect_timeout;
        self.early.retain(|_, e| now.duration_since(e.since) < ttl);
    }

    async fn drop_all(&mut self, reason: &str) {
        let peers: Vec<String> = self.peers.keys().cloned().collect();
        for p in peers {
            self.drop_peer(&p, Some(reason), None).await;
        }
        self.early.clear();
    }

    /// After a reconnect: new session id, so new signal address, and a new announce.
    async fn rejoin(&mut self, session: String) -> Result<Subs, P2pError> {
        self.drop_all("the router session changed").await;
        self.own = session.clone();
        if let Some(inner) = self.p2p.upgrade() {
            *lock(&inner.own) = session.clone();
            lock(&inner.known).clear();
        }
        let subs = Subs::open(&self.client, &session).await?;
        self.announce().await?;
        Ok(subs)
    }
}

/// The `ice_candidate` signals for local `candidates`, each naming the data channels'
/// m-section of `local_sdp` by its real mid.
fn candidate_signals(local_sdp: &str, candidates: &[String]) -> Vec<Signal> {
    let section = signal::data_section(local_sdp);
    candidates
        .iter()
        .map(|c| Signal::IceCandidate {
            candidate: signal::candidate_json(c, &section),
        })
        .collect()
}

/// `sdp` without its `a=candidate` lines (see [`P2pConfig::trickle_first`]).
fn without_candidates(sdp: &str) -> String {
    sdp.split_inclusive('\n')
        .filter(|l| !l.trim_start().starts_with("a=candidate:"))
        .collect()
}

fn close_link(link: Arc<Link>) {
    match Arc::try_unwrap(link) {
        Ok(l) => l.close(),
        // A sender still holds it for a moment; dropping ours stops it once it lets go.
        Err(shared) => drop(shared),
    }
}

/// A random id for correlation ids (uuid-shaped, from `fastrand`).
fn uuid_like() -> String {
    let a = fastrand::u64(..);
    let b = fastrand::u64(..);
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0x0fff,
        (b >> 48) & 0x3fff | 0x8000,
        b & 0xffff_ffff_ffff
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `a=mid:` value of an SDP with one m-section.
    fn mid_of(sdp: &str) -> Option<&str> {
        sdp.lines().find_map(|l| l.trim().strip_prefix("a=mid:"))
    }

    /// Browsers drop a trickled candidate whose `sdpMid` is not a mid of the SDP it belongs
    /// to; str0m's mids are random, so the candidates must carry the one in our offer/answer.
    #[tokio::test]
    async fn trickled_candidates_name_the_mid_of_the_local_sdp() {
        let cfg = LinkConfig {
            addresses: vec![IpAddr::from([127, 0, 0, 1])],
            stun_servers: Vec::new(),
            turn_servers: Vec::new(),
            relay_only: false,
        };
        let notes: link::Notes = Arc::new(|_| {});
        let (offerer, offer, offer_lines) = Link::offer(&cfg, notes.clone())
            .await
            .expect("offer on loopback");
        let (answerer, answer, answer_lines) = Link::answer(&cfg, &offer, notes)
            .await
            .expect("answer on loopback");
        let offer_mid = mid_of(&offer).expect("the offer has a mid");
        assert_eq!(mid_of(&answer), Some(offer_mid));
        for (sdp, lines) in [(&offer, &offer_lines), (&answer, &answer_lines)] {
            let signals = candidate_signals(sdp, lines);
            assert_eq!(signals.len(), lines.len());
            assert!(!signals.is_empty());
            for s in signals {
                let Signal::IceCandidate { candidate } = s else {
                    panic!("not a candidate: {s:?}");
                };
                let init: serde_json::Value =
                    serde_json::from_str(&candidate).expect("candidate JSON");
                assert_eq!(init["sdpMid"].as_str(), Some(offer_mid), "{candidate}");
                assert_eq!(init["sdpMLineIndex"], 0, "{candidate}");
                assert!(
                    init["candidate"]
                        .as_str()
                        .is_some_and(|c| c.starts_with("candidate:")),
                    "{candidate}"
                );
            }
        }
        offerer.close();
        answerer.close();
    }
}
