//! The CLASP router's core: a plain state machine with no I/O.
//!
//! No sockets, no threads, no clock reads: the shell (the `clasp-router` crate's server, or a
//! test harness) calls [`Router::open`] for each new connection with a handle of its own for
//! it, [`Router::handle`] for each inbound frame, [`Router::close`] when a connection ends and
//! [`Router::tick`] when [`Router::poll_timeout`] is reached. Time is passed in ([`Now`]);
//! session ids come from the id source given to [`Router::new`]. What the core produces is
//! pulled by the shell: frames and closes per connection with [`Router::poll_transmit`] (or
//! [`Router::take_output`]), other work with [`Router::poll_event`].
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]
#![deny(unused_must_use)]

pub mod adapter;
pub mod auth;
pub mod cluster;
pub mod config;
pub mod history;
pub mod index;
pub mod metrics;
pub mod recorder;
pub mod state;
pub mod transmit;

mod bundles;
mod cluster_bundles;
mod cluster_links;
mod durable;
mod fanout;
mod handshake;
mod journal;
mod output;
mod publish;
mod reads;
pub mod refusal;
mod replay;
mod request;
mod session;
mod shared;
mod signals;
mod timers;
mod writes;

use fanout::Sender;
use output::clip;
use request::{PubReq, SetReq, claimed_sender};
pub use session::SessionInfo;
use session::{Bucket, Held, HelloInfo, Session, Sub, gesture_cost, sub_cost};
use timers::Timer;
use writes::{check_address, param_value};

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use rustc_hash::FxHashMap;
use std::sync::Arc;

use bytes::Bytes;
use clasp_proto::codec::binary::SnapshotWriter;
use clasp_proto::codec::view::{self, MessageView, PayloadRef, PublishView, ValueRef};
use clasp_proto::pattern::Pattern;
use clasp_proto::{
    Ack, Bundle, ClockSync, DecodeError, ErrorCode, ErrorMessage, Features, FrameOptions,
    GesturePhase, Message, ParamValue, Publish, PublishPayload, Qos, SetRef, SignalDef, SignalType,
    SignalTypes, Snapshot, Str, Subscribe, SubscribeOptions, Welcome, decode_frame_view, encode,
    encode_set,
};

use auth::{Action, Auth, AuthError, Grant};
pub use cluster::{
    BundleMark, ClusterOutcome, ClusterWrite, InterestChange, P2pIn, P2pOut, RemoteChange,
    SignalOut,
};
pub use cluster_bundles::{MAX_MARK_BYTES, MAX_MARK_SIGNALS};
pub use config::{RateLimit, RouterConfig};
pub use history::{HistoryPicker, MAX_HISTORY_BYTES, Past};
use index::SubscriptionIndex;
pub use journal::{JournalEntry, JournalRequest, MAX_HISTORY, signal_of_bit};
pub use metrics::{Metrics, RefusalKind};
pub use refusal::{Operation, Refusal};
pub use replay::{ReplayEnd, ReplayRequest};
use state::{ParamStore, Write, WriteError};
pub use transmit::{CloseReason, Event, Outgoing, Output, Transmit};

/// Identifies a transport connection inside the core.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(u64);

/// The current time, as the shell sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// Monotonic microseconds (any origin); drives timers.
    pub mono: u64,
    /// Wall-clock microseconds since the Unix epoch; stamped on writes and sent in WELCOME/SYNC.
    pub wall: u64,
}

/// The P2P namespace (protocol.md §11).
const P2P_ANNOUNCE: &str = "/clasp/p2p/announce";
const P2P_SIGNAL_PREFIX: &str = "/clasp/p2p/signal/";
/// Where the router says that a session that announced itself for P2P has ended (an
/// extension: PUBLISH event with payload `{session_id}`).
const P2P_LEAVE: &str = "/clasp/p2p/leave";
/// How often expired signal definitions and stale gestures are swept.
const SWEEP_INTERVAL_US: u64 = 10_000_000;
/// Gestures not updated for this long are forgotten.
const GESTURE_MAX_AGE_US: u64 = 300_000_000;

type SubKey = (ConnId, u32);

/// A source of new session ids (UUIDv4 strings in production).
pub type IdSource = Box<dyn FnMut() -> String + Send>;

struct Conn<H> {
    /// The shell's handle, given back with everything produced for this connection.
    handle: H,
    session: Option<Session>,
    /// Frames produced for this connection during the current call, queued as one batch when
    /// the call ends (one queue lock and one wake-up per connection per batch in the shell).
    staged: Vec<Outgoing>,
    /// An adapter session: gets typed deliveries instead of frames (see [`adapter`]).
    adapter: bool,
    /// What an adapter session gets during the current call, queued like `staged`.
    typed: Vec<adapter::Delivery>,
}

struct Gesture {
    started: u64,
    last_forward: u64,
    buffered: Option<Bytes>,
    armed: bool,
}

type GestureKey = (ConnId, Arc<str>, u32);

struct ScheduledBundle {
    conn: ConnId,
    /// Bytes counted for it against the session's budget.
    cost: usize,
    qos: Qos,
    bundle: Bundle,
}

/// The router state machine; `H` is the shell's handle of a connection, given back with what
/// the core produces for it (the server's outbound queue, a test's connection number).
pub struct Router<H> {
    config: RouterConfig,
    ids: IdSource,
    /// Connections by id (looked up for every delivery; ids are ours, so a fast hash is safe).
    conns: FxHashMap<ConnId, Conn<H>>,
    next_conn: u64,
    sessions: HashMap<Arc<str>, ConnId>,
    index: SubscriptionIndex<SubKey>,
    store: ParamStore,
    signals: signals::Signals,
    /// QUERYs being answered, a slice at a time (see [`signals`]).
    queries: std::collections::VecDeque<signals::QueryJob>,
    /// ACKs of QoS Commit writes waiting for the disk (see [`durable`]).
    commits: durable::Commits,
    /// Cluster mode (see [`cluster`]).
    cluster: cluster::Cluster,
    /// Connections with a QUERY in progress, and the frames they sent since.
    busy: FxHashMap<ConnId, signals::Deferred>,
    /// The last P2P announce of each session that sent one, replayed to later subscribers.
    p2p_announces: FxHashMap<ConnId, Bytes>,
    /// Direct P2P links whose peers told each other they are connected (session ids, in
    /// order), and since when (wall µs): for operators.
    p2p_links: FxHashMap<(Arc<str>, Arc<str>), u64>,
    gestures: HashMap<GestureKey, Gesture>,
    timers: BinaryHeap<Reverse<(u64, Timer)>>,
    bundles: HashMap<u64, ScheduledBundle>,
    next_bundle: u64,
    scratch: Vec<SubKey>,
    /// Shared subscriptions matched by the fan-out in progress (see [`shared`]).
    shared_scratch: Vec<(Arc<str>, ConnId, u32)>,
    /// Number of fan-outs so far (see [`Session::served`]).
    fanouts: u64,
    /// What the shell has yet to pull (see [`Router::poll_transmit`]).
    output: std::collections::VecDeque<Output<H>>,
    auth: Auth,
    /// The adapter submission in progress, whose refusal is answered in place.
    capture: Option<adapter::Capture>,
    /// What the adapter submission in progress attached.
    attaching: Option<adapter::Attached>,
    /// Subscriptions matched by the fan-outs since the adapter submission began.
    matched: usize,
    /// Connections with staged frames.
    dirty: Vec<ConnId>,
    metrics: Metrics,
    last_now: Now,
    /// The journal's numbering, recent values, held connections (see [`journal`]).
    journal: journal::Log<H>,
    /// The fan-out in progress skips adapter sessions (an expiry notice: adapters such as
    /// MQTT have their own rules for what an expiry tells subscribers).
    wire_only: bool,
    /// While a bundle is applied: what its updates give each session that asked for whole
    /// bundles ([`Features::BUNDLES`]), sent as one BUNDLE at its end.
    bundle_out: Option<FxHashMap<ConnId, Vec<Outgoing>>>,
}

impl<H> std::fmt::Debug for Router<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("sessions", &self.sessions.len())
            .field("connections", &self.conns.len())
            .field("params", &self.store.len())
            .field("subscriptions", &self.index.len())
            .finish()
    }
}

impl<H: Clone> Router<H> {
    /// A router with `config`, taking session ids from `ids`.
    pub fn new(config: RouterConfig, ids: IdSource) -> Self {
        let store = ParamStore::with_budget(config.max_params, config.max_param_bytes);
        let journal = journal::Log::new(&config);
        let mut r = Router {
            config,
            ids,
            conns: FxHashMap::default(),
            next_conn: 1,
            sessions: HashMap::new(),
            index: SubscriptionIndex::new(),
            store,
            signals: signals::Signals::default(),
            queries: std::collections::VecDeque::new(),
            busy: FxHashMap::default(),
            commits: durable::Commits::default(),
            cluster: cluster::Cluster::default(),
            p2p_announces: FxHashMap::default(),
            p2p_links: FxHashMap::default(),
            gestures: HashMap::new(),
            timers: BinaryHeap::new(),
            bundles: HashMap::new(),
            next_bundle: 1,
            scratch: Vec::new(),
            shared_scratch: Vec::new(),
            fanouts: 0,
            output: std::collections::VecDeque::new(),
            auth: Auth::open(),
            capture: None,
            attaching: None,
            matched: 0,
            dirty: Vec::new(),
            metrics: Metrics::default(),
            last_now: Now { mono: 0, wall: 0 },
            journal,
            wire_only: false,
            bundle_out: None,
        };
        r.timers.push(Reverse((SWEEP_INTERVAL_US, Timer::Sweep)));
        r
    }

    /// The authenticator (open mode until tokens or keys are given to it).
    pub fn auth(&self) -> &Auth {
        &self.auth
    }

    /// The authenticator, to load tokens, keys and revocations; call [`Router::revalidate`]
    /// afterwards so sessions whose tokens are gone end.
    pub fn auth_mut(&mut self) -> &mut Auth {
        &mut self.auth
    }

    /// The configuration in force.
    pub fn config(&self) -> &RouterConfig {
        &self.config
    }

    /// Counters and gauges.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Counts a frame a transport threw away before it reached the router (a stream's
    /// oversize length prefix, bytes that start no frame), in `clasp_frames_rejected_total`.
    pub fn count_rejected(&mut self) {
        self.metrics.frames_rejected += 1;
    }

    /// Counts a refusal the transport made (a handshake deadline missed, say).
    pub fn count_refusal(&mut self, kind: RefusalKind) {
        self.metrics.refuse(kind);
    }

    /// Number of sessions that completed the handshake.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Number of open connections (sessions plus handshakes in progress).
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// Announced signals (for QUERY), and the bytes they are counted for.
    pub fn signal_usage(&self) -> (usize, usize) {
        (self.signals.len(), self.signals.bytes())
    }

    /// Number of subscriptions across all sessions.
    pub fn subscription_count(&self) -> usize {
        self.index.len()
    }

    /// The param store.
    pub fn params(&self) -> &ParamStore {
        &self.store
    }

    /// Mutable access to the param store, for restoring persisted state and taking dirty sets.
    pub fn params_mut(&mut self) -> &mut ParamStore {
        &mut self.store
    }

    /// The session id of a connection, once it has one.
    pub fn session_id(&self, conn: ConnId) -> Option<&str> {
        self.conns.get(&conn)?.session.as_ref().map(|s| &*s.id)
    }

    /// Registers a new transport connection, which must send HELLO first; what the core
    /// produces for it is given back with `handle`.
    pub fn open(&mut self, handle: H, _now: Now) -> ConnId {
        let id = ConnId(self.next_conn);
        self.next_conn += 1;
        self.conns.insert(
            id,
            Conn {
                handle,
                session: None,
                staged: Vec::new(),
                adapter: false,
                typed: Vec::new(),
            },
        );
        id
    }

    /// Forgets a connection whose transport has closed: its subscriptions, locks, gestures and
    /// scheduled bundles go with it.
    pub fn close(&mut self, conn: ConnId, _now: Now) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        let Some(session) = c.session else {
            return;
        };
        self.sessions.remove(&session.id);
        for id in session.subs.keys() {
            self.index_remove((conn, *id));
        }
        self.store.release_locks(&session.id, &session.locks);
        self.cluster_release_locks(&session.id, &session.locks);
        self.gestures.retain(|(c, _, _), _| *c != conn);
        self.bundles.retain(|_, b| b.conn != conn);
        self.signals.remove_owner(conn);
        self.queries.retain(|q| q.conn() != conn);
        self.busy.remove(&conn);
        self.journal_close(conn);
        self.drop_commits(conn);
        self.p2p_links
            .retain(|(a, b), _| *a != session.id && *b != session.id);
        if self.p2p_announces.remove(&conn).is_some() {
            self.p2p_leave(&session.id, _now);
            self.cluster_p2p(cluster::P2pOut::Leave(session.id.clone()));
        }
    }

    /// Asks every connection to close (the shell then calls [`Router::close`] for each).
    pub fn shutdown(&mut self) {
        self.flush();
        let mut conns: Vec<ConnId> = self.conns.keys().copied().collect();
        conns.sort_unstable();
        for conn in conns {
            self.close_conn(conn, CloseReason::Shutdown);
        }
    }

    /// Handles one inbound frame (one WebSocket message) from `conn`.
    pub fn handle(&mut self, conn: ConnId, frame: &Bytes, now: Now) {
        self.handle_one(conn, frame, now);
        self.flush();
    }

    /// Handles several frames that arrived together from `conn`, handing the frames they produce
    /// to each connection's outlet in one batch.
    pub fn handle_many(&mut self, conn: ConnId, frames: &[Bytes], now: Now) {
        for f in frames {
            self.handle_one(conn, f, now);
        }
        self.flush();
    }

    fn handle_one(&mut self, conn: ConnId, frame: &Bytes, now: Now) {
        self.last_now = now;
        self.metrics.bytes_in += frame.len() as u64;
        // A connection's requests are answered in order: while its QUERY is being answered,
        // what it sends next waits.
        if !self.busy.is_empty() && self.busy.contains_key(&conn) {
            self.defer(conn, frame);
            return;
        }
        self.process(conn, frame, now);
    }

    /// Handles one frame from `conn` (counted already, and not held back).
    fn process(&mut self, conn: ConnId, frame: &Bytes, now: Now) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        let established = c.session.is_some();
        if let Some(len) = oversized(frame, self.config.max_payload) {
            self.metrics.frames_rejected += 1;
            let max = self.config.max_payload;
            self.refuse(conn, Refusal::FrameTooLarge { len, max }, None);
            if !established {
                self.reject(conn, CloseReason::Handshake);
            }
            return;
        }
        // SET and PUBLISH are handled straight from the frame (no copy, no allocation to
        // decode); everything else as an owned message.
        let decoded = match decode_frame_view(frame) {
            Ok(d) => d,
            Err(e) => {
                self.metrics.frames_rejected += 1;
                self.decode_error(conn, &e);
                if !established {
                    self.reject(conn, CloseReason::Handshake);
                }
                return;
            }
        };
        self.metrics.count_in(decoded.message.code());
        let qos = decoded.header.qos();
        if !established {
            match decoded.message {
                MessageView::Other(m) if matches!(*m, Message::Hello(_)) => {
                    if let Message::Hello(h) = *m {
                        let hello = HelloInfo {
                            token: h.token.as_deref(),
                            name: &h.name,
                            features: h.features,
                        };
                        self.on_hello(conn, hello, now);
                    }
                }
                other => {
                    self.refuse(conn, Refusal::ExpectedHello(other.name()), None);
                    self.reject(conn, CloseReason::Handshake);
                }
            }
            return;
        }
        if !self.within_rate(conn, &decoded.message, now) {
            return;
        }
        match decoded.message {
            MessageView::Set(s) => {
                let value = s.value.to_value();
                let req = SetReq {
                    set: SetRef {
                        address: s.address,
                        value: &value,
                        revision: s.revision,
                        lock: s.lock,
                        unlock: s.unlock,
                        ttl: s.ttl,
                    },
                    frame: Some(frame),
                };
                if let Err(r) = self.on_set(conn, qos, &req, now) {
                    self.refuse(conn, r, Some(req.address_str()));
                }
            }
            MessageView::Publish(p) => {
                let req = PubReq::from_view(&p, frame.slice(..decoded.len), frame);
                self.on_publish(conn, &req, now);
            }
            // Router-to-client messages from a client are ignored.
            MessageView::Snapshot(_) => {}
            MessageView::Other(m) => self.dispatch(conn, qos, *m, now),
        }
    }

    fn dispatch(&mut self, conn: ConnId, qos: Qos, msg: Message, now: Now) {
        match msg {
            Message::Hello(_) => self.refuse(conn, Refusal::SecondHello, None),
            Message::Subscribe(s) => self.on_subscribe(conn, s),
            Message::Unsubscribe(u) => {
                if let Some(sess) = self.session_mut(conn)
                    && let Some(sub) = sess.subs.remove(&u.id)
                {
                    sess.held.release_sub(&sub);
                    self.index_remove((conn, u.id));
                }
            }
            Message::Set(s) => {
                let req = SetReq::owned(&s);
                if let Err(r) = self.on_set(conn, qos, &req, now) {
                    self.refuse(conn, r, Some(s.address.clone()));
                }
            }
            Message::Get(g) => {
                if self.permits(conn, Action::Read, &g.address) {
                    self.on_get(conn, g.address);
                } else {
                    self.refuse(conn, Refusal::Scope(Operation::Read), Some(g.address));
                }
            }
            Message::Publish(p) => self.publish_owned(conn, &p, now),
            Message::Bundle(b) => self.on_bundle(conn, qos, b, now),
            Message::Announce(a) => self.on_announce(conn, qos, a, now),
            Message::Query(q) => self.on_query(conn, &q.pattern, now),
            Message::Replay(r) => self.on_replay(conn, qos, r),
            Message::Sync(s) => {
                let reply = ClockSync {
                    t1: s.t1,
                    t2: Some(now.wall),
                    t3: Some(now.wall),
                };
                self.reply(conn, &Message::Sync(reply));
            }
            Message::Ping => self.reply(conn, &Message::Pong),
            // Replies and router-to-client messages from a client are ignored.
            Message::Pong
            | Message::Welcome(_)
            | Message::Snapshot(_)
            | Message::Ack(_)
            | Message::Error(_)
            | Message::Result(_) => {}
        }
    }

    fn session(&self, conn: ConnId) -> Option<&Session> {
        self.conns.get(&conn)?.session.as_ref()
    }

    /// Whether `conn`'s session may do `action` on `address`.
    fn permits(&self, conn: ConnId, action: Action, address: &str) -> bool {
        self.session(conn).is_some_and(|s| s.may(action, address))
    }

    /// Whether `conn`'s session may do `action` on every address `pattern` matches (pattern
    /// inclusion in one of its scopes).
    fn permits_pattern(&self, conn: ConnId, action: Action, pattern: &Pattern) -> bool {
        self.session(conn).is_some_and(|s| {
            s.grant
                .as_ref()
                .is_none_or(|g| g.scopes.allows_pattern(action, pattern))
        })
    }

    fn session_mut(&mut self, conn: ConnId) -> Option<&mut Session> {
        self.conns.get_mut(&conn)?.session.as_mut()
    }

    fn writer_id(&self, conn: ConnId) -> Option<Arc<str>> {
        self.conns
            .get(&conn)?
            .session
            .as_ref()
            .map(|s| s.id.clone())
    }
}

/// The payload length of a frame if it exceeds `max` (a frame whose header does not parse is
/// left to the decoder, which says why).
fn oversized(frame: &[u8], max: usize) -> Option<usize> {
    let len = usize::from(clasp_proto::FrameHeader::parse(frame).ok()??.payload_len);
    (len > max).then_some(len)
}
