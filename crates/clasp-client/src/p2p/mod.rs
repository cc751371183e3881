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
mod manager;
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
    /// Test hook: SDPs (offers and answers) go out without candidates, which follow as
    /// signals; an offerer signals its candidates before its offer, so the answerer must keep
    /// candidates that arrive early.
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
        let task = manager::start(&inner, client, config, own, events_tx, cmd_rx, notes_rx).await?;
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

#[cfg(test)]
mod tests {
    use super::manager::candidate_signals;
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
