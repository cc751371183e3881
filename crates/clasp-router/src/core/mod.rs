//! The router core: a plain state machine with no I/O.
//!
//! The transport shell calls [`Router::open`] for each new connection, [`Router::handle`] for
//! each inbound frame, [`Router::close`] when a connection ends and [`Router::tick`] when
//! [`Router::next_deadline`] is reached. Time is passed in ([`Now`]); session ids come from the
//! id source given to [`Router::new`]. Outbound frames go to each connection's [`Outlet`].

pub mod auth;
pub mod config;
pub mod index;
pub mod metrics;
pub mod outlet;
pub mod state;

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
    GesturePhase, Message, ParamValue, Publish, PublishPayload, Qos, QueryResult, SetRef,
    SignalDef, SignalType, SignalTypes, Snapshot, Str, Subscribe, SubscribeOptions, Welcome,
    decode_frame_view, encode, encode_set,
};

use auth::{Action, Auth, Grant};
pub use config::{RateLimit, RouterConfig};
use index::SubscriptionIndex;
pub use metrics::Metrics;
pub use outlet::{CloseReason, Outgoing, Outlet};
use state::{ParamStore, Write, WriteError};

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

struct Conn {
    outlet: Arc<dyn Outlet>,
    session: Option<Session>,
    /// Frames produced for this connection during the current call, handed to the outlet in
    /// one batch when the call ends (one queue lock and one wake-up per connection per batch).
    staged: Vec<Outgoing>,
    /// Send the state snapshot after WELCOME (off for adapter sessions, which get state
    /// through their subscriptions only).
    connect_snapshot: bool,
}

struct Session {
    id: Arc<str>,
    /// Subscriptions by the client's id (at most `max_subscriptions`, so colliding ids chosen by a
    /// client can only slow that client's own deliveries).
    subs: FxHashMap<u32, Sub>,
    /// Addresses this session has locked (may include ones since released).
    locks: Vec<Arc<str>>,
    scheduled: usize,
    /// The last fan-out that delivered to this session.
    served: u64,
    /// What the session's token allows; `None` in open mode (everything).
    grant: Option<Grant>,
    /// Rate limit state.
    bucket: Bucket,
}

/// A session's token bucket (see [`RateLimit`]).
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    /// When it was last refilled (monotonic µs).
    at: u64,
    /// When the session was last told it is over the limit.
    warned: Option<u64>,
}

impl Bucket {
    fn full(limit: Option<RateLimit>, now: u64) -> Bucket {
        Bucket {
            tokens: limit.map_or(0.0, |l| f64::from(l.burst)),
            at: now,
            warned: None,
        }
    }

    /// Takes `cost` tokens if there are enough.
    fn take(&mut self, limit: RateLimit, cost: f64, now: u64) -> bool {
        let elapsed = now.saturating_sub(self.at) as f64 / 1e6;
        self.tokens =
            (self.tokens + elapsed * f64::from(limit.per_sec)).min(f64::from(limit.burst));
        self.at = now;
        if self.tokens >= cost {
            self.tokens -= cost;
            true
        } else {
            false
        }
    }
}

impl Session {
    /// Whether the session may do `action` on `address`.
    fn may(&self, action: Action, address: &str) -> bool {
        self.grant
            .as_ref()
            .is_none_or(|g| g.scopes.allows(action, address))
    }
}

struct Sub {
    types: SignalTypes,
    interval_us: Option<u64>,
    epsilon: Option<f64>,
    /// Per-address delivery state, only for subscriptions with `max_rate` or `epsilon`.
    filters: HashMap<Arc<str>, Filter>,
}

#[derive(Default)]
struct Filter {
    last_sent: Option<u64>,
    last_value: Option<f64>,
    pending: Option<(Outgoing, Option<f64>)>,
    armed: bool,
}

enum Decision {
    Now,
    Later,
    Skip,
}

struct Gesture {
    started: u64,
    last_forward: u64,
    buffered: Option<Bytes>,
    armed: bool,
}

type GestureKey = (ConnId, Arc<str>, u32);

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Filter(ConnId, u32, Arc<str>),
    Gesture(ConnId, Arc<str>, u32),
    Bundle(u64),
    /// A session's token expires.
    Grant(ConnId),
    Sweep,
}

struct ScheduledBundle {
    conn: ConnId,
    qos: Qos,
    bundle: Bundle,
}

struct Announced {
    def: SignalDef,
    refreshed: u64,
}

/// Frames and close requests for several outlets, in order, taken from the router with
/// [`Router::take_output`].
#[derive(Default)]
pub struct Output(Vec<(Arc<dyn Outlet>, Delivery)>);

enum Delivery {
    Frames(Vec<Outgoing>),
    Close(CloseReason),
}

impl Output {
    /// Hands everything to its outlet, in the order it was produced.
    pub fn deliver(self) {
        for (outlet, d) in self.0 {
            match d {
                Delivery::Frames(mut batch) => outlet.send_batch(&mut batch),
                Delivery::Close(reason) => outlet.close(reason),
            }
        }
    }

    /// Like [`Output::deliver`], for a shell with its own writers: when at most `few` outlets
    /// get frames they are handed over with [`Outlet::send_batch_inline`]; otherwise they are
    /// staged ([`Outlet::stage_batch`]) and the outlets still to wake are added to `wake`.
    pub fn deliver_staged(self, few: usize, wake: &mut Vec<Arc<dyn Outlet>>) {
        let inline = self.0.len() <= few;
        for (outlet, d) in self.0 {
            match d {
                Delivery::Frames(mut batch) if inline => outlet.send_batch_inline(&mut batch),
                Delivery::Frames(mut batch) => {
                    if outlet.stage_batch(&mut batch) {
                        wake.push(outlet);
                    }
                }
                Delivery::Close(reason) => outlet.close(reason),
            }
        }
    }
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Output")
            .field("outlets", &self.0.len())
            .finish()
    }
}

/// The router state machine.
pub struct Router {
    config: RouterConfig,
    ids: IdSource,
    /// Connections by id (looked up for every delivery; ids are ours, so a fast hash is safe).
    conns: FxHashMap<ConnId, Conn>,
    next_conn: u64,
    sessions: HashMap<Arc<str>, ConnId>,
    index: SubscriptionIndex<SubKey>,
    store: ParamStore,
    signals: HashMap<Str, Announced>,
    /// The last P2P announce of each session that sent one, replayed to later subscribers.
    p2p_announces: FxHashMap<ConnId, Bytes>,
    gestures: HashMap<GestureKey, Gesture>,
    timers: BinaryHeap<Reverse<(u64, Timer)>>,
    bundles: HashMap<u64, ScheduledBundle>,
    next_bundle: u64,
    scratch: Vec<SubKey>,
    /// Number of fan-outs so far (see [`Session::served`]).
    fanouts: u64,
    defer_output: bool,
    output: Output,
    auth: Auth,
    /// Connections with staged frames.
    dirty: Vec<ConnId>,
    metrics: Metrics,
    last_now: Now,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("sessions", &self.sessions.len())
            .field("connections", &self.conns.len())
            .field("params", &self.store.len())
            .field("subscriptions", &self.index.len())
            .finish()
    }
}

impl Router {
    /// A router with `config`, taking session ids from `ids`.
    pub fn new(config: RouterConfig, ids: IdSource) -> Self {
        let store = ParamStore::new(config.max_params);
        let mut r = Router {
            config,
            ids,
            conns: FxHashMap::default(),
            next_conn: 1,
            sessions: HashMap::new(),
            index: SubscriptionIndex::new(),
            store,
            signals: HashMap::new(),
            p2p_announces: FxHashMap::default(),
            gestures: HashMap::new(),
            timers: BinaryHeap::new(),
            bundles: HashMap::new(),
            next_bundle: 1,
            scratch: Vec::new(),
            fanouts: 0,
            defer_output: false,
            output: Output::default(),
            auth: Auth::open(),
            dirty: Vec::new(),
            metrics: Metrics::default(),
            last_now: Now { mono: 0, wall: 0 },
        };
        r.timers.push(Reverse((SWEEP_INTERVAL_US, Timer::Sweep)));
        r
    }

    /// With `on`, the frames each call produces are not handed to the outlets at its end but
    /// kept until [`Router::take_output`], so a caller holding the router under a lock can
    /// deliver them after releasing it (waking writers is then no longer done under the lock).
    pub fn defer_output(&mut self, on: bool) {
        self.defer_output = on;
    }

    /// The frames produced since the last call, per outlet (see [`Router::defer_output`]).
    pub fn take_output(&mut self) -> Output {
        std::mem::take(&mut self.output)
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

    /// Ends `conn`'s session if its token is no longer valid at `now`.
    fn revalidate_one(&mut self, conn: ConnId, now: Now) {
        let invalid = self
            .session(conn)
            .and_then(|s| s.grant.as_ref())
            .and_then(|g| self.auth.still_valid(g, now.wall).err());
        if let Some(e) = invalid {
            self.metrics.sessions_revoked += 1;
            let msg = format!("{e}; the session ends");
            self.error(conn, e.code(), msg, None);
            self.reject(conn, CloseReason::Shutdown);
        }
    }

    /// Ends (ERROR, then close) every session whose token is no longer valid at `now`:
    /// revoked, removed or expired. Also runs on every sweep (every 10 s), and a session is
    /// checked again when its token expires.
    pub fn revalidate(&mut self, now: Now) {
        let with_grant: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.session.as_ref().is_some_and(|s| s.grant.is_some()))
            .map(|(id, _)| *id)
            .collect();
        for conn in with_grant {
            self.revalidate_one(conn, now);
        }
        self.flush();
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

    /// Number of sessions that completed the handshake.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Number of open connections (sessions plus handshakes in progress).
    pub fn connection_count(&self) -> usize {
        self.conns.len()
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

    /// Registers a new transport connection, which must send HELLO first.
    pub fn open(&mut self, outlet: Box<dyn Outlet>, _now: Now) -> ConnId {
        let id = ConnId(self.next_conn);
        self.next_conn += 1;
        self.conns.insert(
            id,
            Conn {
                outlet: Arc::from(outlet),
                session: None,
                staged: Vec::new(),
                connect_snapshot: true,
            },
        );
        id
    }

    /// Like [`Router::open`], for a connection that does not want the full state snapshot
    /// after WELCOME (listeners of other protocols, whose clients get state through their
    /// subscriptions only): it saves building and sending the whole store per new session.
    pub fn open_without_snapshot(&mut self, outlet: Box<dyn Outlet>, now: Now) -> ConnId {
        let id = self.open(outlet, now);
        if let Some(c) = self.conns.get_mut(&id) {
            c.connect_snapshot = false;
        }
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
            self.index.remove((conn, *id));
        }
        self.store.release_locks(&session.id, &session.locks);
        self.gestures.retain(|(c, _, _), _| *c != conn);
        self.bundles.retain(|_, b| b.conn != conn);
        if self.p2p_announces.remove(&conn).is_some() {
            self.p2p_leave(&session.id, _now);
        }
    }

    /// Tells the subscribers of [`P2P_LEAVE`] that a P2P-capable session has ended, so its
    /// peers drop their connections to it at once.
    fn p2p_leave(&mut self, session: &str, now: Now) {
        let msg = Message::Publish(Publish {
            address: P2P_LEAVE.into(),
            signal: SignalType::Event,
            payload: PublishPayload::Value(clasp_proto::Value::Map(vec![(
                "session_id".into(),
                clasp_proto::Value::String(session.into()),
            )])),
            ..Default::default()
        });
        let Ok(frame) = clasp_proto::encode(&msg) else {
            return;
        };
        let address: Arc<str> = Arc::from(P2P_LEAVE);
        self.fan_out(&address, SignalType::Event, None, None, now, || {
            Outgoing::Event(frame.clone())
        });
        self.flush();
    }

    /// Asks every connection to close (the shell then calls [`Router::close`] for each).
    pub fn shutdown(&mut self) {
        self.flush();
        let outlets: Vec<Arc<dyn Outlet>> = self.conns.values().map(|c| c.outlet.clone()).collect();
        for o in &outlets {
            self.close_outlet(o, CloseReason::Shutdown);
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

    /// Hands every staged frame to its connection's outlet, or, with deferred output, keeps
    /// the batches for [`Router::take_output`].
    fn flush(&mut self) {
        for conn in self.dirty.drain(..) {
            if let Some(c) = self.conns.get_mut(&conn) {
                if self.defer_output {
                    let batch = std::mem::take(&mut c.staged);
                    self.output
                        .0
                        .push((c.outlet.clone(), Delivery::Frames(batch)));
                } else if c.staged.len() == 1 {
                    if let Some(out) = c.staged.pop() {
                        c.outlet.send(out);
                    }
                } else {
                    c.outlet.send_batch(&mut c.staged);
                }
            }
        }
    }

    fn handle_one(&mut self, conn: ConnId, frame: &Bytes, now: Now) {
        self.last_now = now;
        self.metrics.bytes_in += frame.len() as u64;
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        let established = c.session.is_some();
        if let Some(len) = oversized(frame, self.config.max_payload) {
            self.metrics.frames_rejected += 1;
            let msg = format!(
                "frame payload of {len} bytes exceeds the limit of {} bytes",
                self.config.max_payload
            );
            self.error(conn, ErrorCode::TooLarge, msg, None);
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
                        self.on_hello(conn, h.token.as_deref(), now);
                    }
                }
                other => {
                    let msg = format!("expected HELLO as the first message, got {}", other.name());
                    self.error(conn, ErrorCode::InvalidMessage, msg, None);
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
                if let Err((code, text)) = self.on_set(conn, qos, &req, now) {
                    self.error(conn, code, text, Some(req.address_str()));
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
            Message::Hello(_) => self.error(
                conn,
                ErrorCode::InvalidMessage,
                "HELLO on an established session is not allowed; the session is unchanged".into(),
                None,
            ),
            Message::Subscribe(s) => self.on_subscribe(conn, s),
            Message::Unsubscribe(u) => {
                if let Some(sess) = self.session_mut(conn)
                    && sess.subs.remove(&u.id).is_some()
                {
                    self.index.remove((conn, u.id));
                }
            }
            Message::Set(s) => {
                let req = SetReq::owned(&s);
                if let Err((code, text)) = self.on_set(conn, qos, &req, now) {
                    self.error(conn, code, text, Some(s.address.clone()));
                }
            }
            Message::Get(g) => {
                if self.permits(conn, Action::Read, &g.address) {
                    self.on_get(conn, g.address);
                } else {
                    let msg = "Insufficient scope for read operation".to_owned();
                    self.error(conn, ErrorCode::Forbidden, msg, Some(g.address));
                }
            }
            Message::Publish(p) => self.publish_owned(conn, &p, now),
            Message::Bundle(b) => self.on_bundle(conn, qos, b, now),
            Message::Announce(a) => {
                let denied = std::iter::once(&a.namespace)
                    .chain(a.signals.iter().map(|d| &d.address))
                    .find(|addr| !self.permits(conn, Action::Write, addr))
                    .cloned();
                if let Some(addr) = denied {
                    let msg = "Insufficient scope for announce".to_owned();
                    self.error(conn, ErrorCode::Forbidden, msg, Some(addr));
                    return;
                }
                for def in a.signals {
                    self.signals.insert(
                        def.address.clone(),
                        Announced {
                            def,
                            refreshed: now.mono,
                        },
                    );
                }
                if qos.wants_ack() {
                    let ack = Ack {
                        address: Some(a.namespace),
                        ..Ack::default()
                    };
                    self.reply(conn, &Message::Ack(ack));
                }
            }
            Message::Query(q) => self.on_query(conn, &q.pattern),
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

    // -----------------------------------------------------------------------------------------
    // Handshake
    // -----------------------------------------------------------------------------------------

    fn on_hello(&mut self, conn: ConnId, token: Option<&str>, now: Now) {
        let grant = if self.auth.enabled() {
            match self.auth.authenticate(token, now.wall) {
                Ok(g) => Some(g),
                Err(e) => {
                    self.metrics.auth_failures += 1;
                    self.error(conn, e.code(), e.to_string(), None);
                    self.reject(conn, CloseReason::Handshake);
                    return;
                }
            }
        } else {
            None
        };
        if self.sessions.len() >= self.config.max_sessions {
            let msg = format!(
                "router is full: {} sessions (the maximum); try again later",
                self.sessions.len()
            );
            self.error(conn, ErrorCode::Overloaded, msg, None);
            self.reject(conn, CloseReason::Full);
            return;
        }
        if let Some(at) = grant.as_ref().and_then(|g| g.expires_at) {
            let due = now.mono.saturating_add(at.saturating_sub(now.wall));
            self.timers.push(Reverse((due, Timer::Grant(conn))));
        }
        let id: Arc<str> = Arc::from((self.ids)());
        self.sessions.insert(id.clone(), conn);
        if let Some(c) = self.conns.get_mut(&conn) {
            c.session = Some(Session {
                id: id.clone(),
                subs: FxHashMap::default(),
                locks: Vec::new(),
                scheduled: 0,
                served: 0,
                grant,
                bucket: Bucket::full(self.config.rate_limit, now.mono),
            });
        }
        let welcome = Welcome {
            version: 1,
            features: Features::ROUTER,
            time: now.wall,
            session: id.to_string().into(),
            name: self.config.name.clone().into(),
            token: None,
        };
        self.reply(conn, &Message::Welcome(welcome));
        if self.conns.get(&conn).is_some_and(|c| !c.connect_snapshot) {
            return;
        }
        let frames = match self.session(conn) {
            Some(s) if s.grant.is_some() => self.snapshot_frames(|a| s.may(Action::Read, a), true),
            _ => self.snapshot_frames(|_| true, true),
        };
        self.send_frames(conn, frames);
    }

    fn reject(&mut self, conn: ConnId, reason: CloseReason) {
        self.flush();
        if let Some(c) = self.conns.get(&conn) {
            self.close_outlet(&c.outlet.clone(), reason);
        }
    }

    /// Asks an outlet to close, after the frames already handed to it (or kept for it).
    fn close_outlet(&mut self, outlet: &Arc<dyn Outlet>, reason: CloseReason) {
        if self.defer_output {
            self.output
                .0
                .push((outlet.clone(), Delivery::Close(reason)));
        } else {
            outlet.close(reason);
        }
    }

    // -----------------------------------------------------------------------------------------
    // Subscriptions and reads
    // -----------------------------------------------------------------------------------------

    fn on_subscribe(&mut self, conn: ConnId, s: Subscribe) {
        let pattern = match Pattern::compile(&s.pattern) {
            Ok(p) => p,
            Err(e) => {
                self.error(
                    conn,
                    ErrorCode::InvalidPattern,
                    e.to_string(),
                    Some(s.pattern),
                );
                return;
            }
        };
        if !self.permits_pattern(conn, Action::Read, &pattern) {
            let msg = "Insufficient scope for subscription".to_owned();
            self.error(conn, ErrorCode::Forbidden, msg, Some(s.pattern));
            return;
        }
        if let Some(opt) = unsupported_option(&s.options) {
            let msg = format!(
                "subscription option `{opt}` is not supported by this router; subscribe without it"
            );
            self.error(conn, ErrorCode::InvalidMessage, msg, Some(s.pattern));
            return;
        }
        let max = self.config.max_subscriptions;
        let Some(sess) = self.session_mut(conn) else {
            return;
        };
        if !sess.subs.contains_key(&s.id) && sess.subs.len() >= max {
            let msg = format!("Subscription limit reached (max {max})");
            self.error(conn, ErrorCode::RateLimited, msg, Some(s.pattern));
            return;
        }
        let interval_us = s
            .options
            .max_rate
            .filter(|r| *r > 0)
            .map(|r| 1_000_000 / u64::from(r));
        sess.subs.insert(
            s.id,
            Sub {
                types: s.types,
                interval_us,
                epsilon: s.options.epsilon.filter(|e| *e > 0.0),
                filters: HashMap::new(),
            },
        );
        let wants_params = s.types.accepts(SignalType::Param);
        self.index.insert((conn, s.id), pattern.clone());
        if pattern.matches(P2P_ANNOUNCE) && !self.p2p_announces.is_empty() {
            // Peers that announced before this subscription (the reference never replays, so
            // its clients only learn of peers that arrive after them).
            let frames: Vec<Bytes> = self
                .p2p_announces
                .iter()
                .filter(|(c, _)| **c != conn)
                .map(|(_, f)| f.clone())
                .collect();
            for f in frames {
                self.send(conn, Outgoing::Event(f), crate::core::metrics::OUT_PUBLISH);
            }
        }
        if wants_params {
            let may = |a: &str| {
                self.session(conn)
                    .is_some_and(|sess| sess.may(Action::Read, a))
            };
            let frames = if pattern.is_exact() {
                self.snapshot_frames(|a| a == pattern.as_str() && may(a), false)
            } else {
                self.snapshot_frames(|a| pattern.matches(a) && may(a), false)
            };
            self.send_frames(conn, frames);
        }
    }

    fn on_get(&mut self, conn: ConnId, address: Str) {
        match self.store.get(&address) {
            Some(p) => {
                let snap = Snapshot {
                    params: vec![param_value(&address, p)],
                };
                self.reply(conn, &Message::Snapshot(snap));
            }
            None => {
                let msg = format!("no param at {address}");
                self.error(conn, ErrorCode::AddressNotFound, msg, Some(address));
            }
        }
    }

    fn on_query(&mut self, conn: ConnId, pattern: &str) {
        let signals = match Pattern::compile(pattern) {
            Ok(p) => self
                .signals
                .values()
                .filter(|s| p.matches(&s.def.address))
                .filter(|s| {
                    self.session(conn)
                        .is_some_and(|sess| sess.may(Action::Read, &s.def.address))
                })
                .map(|s| SignalDef {
                    meta: None,
                    ..s.def.clone()
                })
                .collect(),
            Err(e) => {
                self.error(
                    conn,
                    ErrorCode::InvalidPattern,
                    e.to_string(),
                    Some(Str::from(pattern)),
                );
                return;
            }
        };
        self.reply(conn, &Message::Result(QueryResult { signals }));
    }

    /// SNAPSHOT frames of the params whose address passes `filter`.
    fn snapshot_frames(&self, filter: impl Fn(&str) -> bool, always: bool) -> Vec<Bytes> {
        let mut w = SnapshotWriter::new(self.config.max_payload);
        for (addr, p) in self.store.iter() {
            if filter(addr) {
                // A param that cannot fit a frame is refused when written, so this cannot fail
                // for stored params; if it ever did, the error is counted, not hidden.
                if w.push(&param_value(addr, p)).is_err() {
                    debug_assert!(false, "stored param too large for a snapshot: {addr}");
                }
            }
        }
        w.finish(always)
    }

    // -----------------------------------------------------------------------------------------
    // Writes
    // -----------------------------------------------------------------------------------------

    /// Validates and applies a SET, broadcasts it and ACKs it; returns the new revision. Errors
    /// are (code, text) for the caller to report.
    fn on_set(
        &mut self,
        conn: ConnId,
        qos: Qos,
        req: &SetReq<'_>,
        now: Now,
    ) -> Result<u64, (ErrorCode, String)> {
        let writer = self.writer_id(conn).ok_or((
            ErrorCode::InvalidMessage,
            "no session for this connection".to_owned(),
        ))?;
        let set = &req.set;
        if !self.permits(conn, Action::Write, set.address) {
            return Err((
                ErrorCode::Forbidden,
                "Insufficient scope for write operation".to_owned(),
            ));
        }
        let (frame, written) = self.apply_set(&writer, set, now)?;
        if set.lock
            && let Some(sess) = self.session_mut(conn)
        {
            sess.locks.push(written.key.clone());
        }
        let numeric = set.value.as_f64();
        self.fan_out(&written.key, SignalType::Param, None, numeric, now, || {
            Outgoing::Param(frame.clone())
        });
        if qos.wants_ack() {
            let locked = written.holder.is_some();
            let holder = written.holder.as_deref().map(Str::from);
            let ack = Ack {
                address: Some(req.address_str()),
                revision: Some(written.revision),
                locked: (set.lock || set.unlock || locked).then_some(locked),
                holder,
                correlation_id: None,
            };
            self.reply(conn, &Message::Ack(ack));
        }
        Ok(written.revision)
    }

    /// Checks a SET, encodes its broadcast and applies it. Returns the broadcast frame and what
    /// the store did.
    fn apply_set(
        &mut self,
        writer: &Arc<str>,
        set: &SetRef<'_>,
        now: Now,
    ) -> Result<(Bytes, state::Written), (ErrorCode, String)> {
        check_address(set.address)?;
        let ttl = set.ttl.or(self
            .config
            .param_ttl
            .map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX)));
        let write = Write {
            value: set.value,
            expected: set.revision,
            lock: set.lock,
            unlock: set.unlock,
            ttl,
        };
        let next_revision = self
            .store
            .check(set.address, writer, &write)
            .map_err(write_error)?;
        let broadcast = SetRef {
            revision: Some(next_revision),
            ttl: None,
            ..*set
        };
        let frame = encode_set(&broadcast, FrameOptions::default())
            .map_err(|e| (ErrorCode::TooLarge, e.to_string()))?;
        // The param must also fit in a SNAPSHOT (which adds the writer and a timestamp), or a
        // late joiner could never receive it.
        let snapshot_len = frame.len() - 4 + 13 + writer.len();
        if snapshot_len > self.config.max_payload {
            return Err((
                ErrorCode::TooLarge,
                format!(
                    "value too large to store: its snapshot entry would take {snapshot_len} bytes, over the {}-byte frame limit",
                    self.config.max_payload
                ),
            ));
        }
        let written = self
            .store
            .write(set.address, writer, &write, now.wall)
            .map_err(write_error)?;
        Ok((frame, written))
    }

    // -----------------------------------------------------------------------------------------
    // Publish
    // -----------------------------------------------------------------------------------------

    /// A PUBLISH from a bundle: encoded once, then handled like one from a frame.
    fn publish_owned(&mut self, conn: ConnId, p: &Publish, now: Now) {
        match encode(&Message::Publish(p.clone())) {
            Ok(frame) => {
                let req = PubReq::owned(p, frame);
                self.on_publish(conn, &req, now);
            }
            Err(e) => self.error(
                conn,
                ErrorCode::TooLarge,
                e.to_string(),
                Some(p.address.clone()),
            ),
        }
    }

    fn on_publish(&mut self, conn: ConnId, p: &PubReq<'_>, now: Now) {
        if let Err((code, text)) = self.check_publish(conn, p.address, p.p2p_sender) {
            self.error(conn, code, text, Some(p.address_str()));
            return;
        }
        if let Some(target) = p.address.strip_prefix(P2P_SIGNAL_PREFIX)
            && !target.is_empty()
            && !target.contains('/')
        {
            self.p2p_signal(conn, target, p);
            return;
        }
        if p.address == P2P_ANNOUNCE {
            self.p2p_announces.insert(conn, p.frame.clone());
            let address: Arc<str> = Arc::from(P2P_ANNOUNCE);
            // Announces reach every subscriber of the address, whatever its type filter.
            self.fan_out(&address, SignalType::Event, Some(conn), None, now, || {
                Outgoing::Event(p.frame.clone())
            });
            return;
        }
        if let Err(text) = check_address(p.address) {
            self.error(conn, text.0, text.1, Some(p.address_str()));
            return;
        }
        if p.signal == SignalType::Gesture && self.config.gesture_interval.as_micros() > 0 {
            self.gesture(conn, p, now);
            return;
        }
        self.forward_publish(conn, p, now);
    }

    /// A PUBLISH needs write on its address; a P2P signal or announce must name its sender's
    /// own session (`from`, `session_id`), so no session can speak for another.
    fn check_publish(
        &mut self,
        conn: ConnId,
        address: &str,
        p2p_sender: Option<&str>,
    ) -> Result<(), (ErrorCode, String)> {
        if !self.permits(conn, Action::Write, address) {
            return Err((
                ErrorCode::Forbidden,
                "Insufficient scope for publish operation".to_owned(),
            ));
        }
        if let Some(claimed) = p2p_sender {
            let own = self.session(conn).map(|s| &*s.id);
            if own != Some(claimed) {
                self.metrics.forbidden += 1;
                return Err((
                    ErrorCode::Forbidden,
                    format!(
                        "P2P messages must name the sender's own session, not `{}`",
                        clip(claimed.to_owned())
                    ),
                ));
            }
        }
        Ok(())
    }

    fn forward_publish(&mut self, conn: ConnId, p: &PubReq<'_>, now: Now) {
        self.forward_frame(conn, p.address, p.signal, p.frame.clone(), p.numeric, now);
    }

    fn forward_frame(
        &mut self,
        conn: ConnId,
        address: &str,
        signal: SignalType,
        frame: Bytes,
        numeric: Option<f64>,
        now: Now,
    ) {
        let address: Arc<str> = Arc::from(address);
        let stream = signal == SignalType::Stream;
        self.fan_out(&address, signal, Some(conn), numeric, now, || {
            if stream {
                Outgoing::Stream(frame.clone())
            } else {
                Outgoing::Event(frame.clone())
            }
        });
    }

    fn p2p_signal(&mut self, conn: ConnId, target: &str, p: &PubReq<'_>) {
        let Some(&to) = self.sessions.get(target) else {
            let msg = format!("Target session not found: {target}");
            self.error(conn, ErrorCode::TargetNotFound, msg, Some(p.address_str()));
            return;
        };
        self.send(
            to,
            Outgoing::Event(p.frame.clone()),
            crate::core::metrics::OUT_PUBLISH,
        );
    }

    /// Gesture move coalescing: start, end and cancel go out at once; moves go out at most once
    /// per interval per (session, address, id), always ending with the latest one.
    fn gesture(&mut self, conn: ConnId, p: &PubReq<'_>, now: Now) {
        let key: GestureKey = (conn, Arc::from(p.address), p.id.unwrap_or(0));
        let interval = self.config.gesture_interval.as_micros() as u64;
        match p.phase {
            GesturePhase::Start => {
                self.gestures.insert(
                    key,
                    Gesture {
                        started: now.mono,
                        last_forward: now.mono,
                        buffered: None,
                        armed: false,
                    },
                );
                self.forward_publish(conn, p, now);
            }
            GesturePhase::Move => {
                let Some(g) = self.gestures.get_mut(&key) else {
                    // A move without a start (late join): forward as is.
                    self.forward_publish(conn, p, now);
                    return;
                };
                if g.buffered.is_none() && now.mono >= g.last_forward + interval {
                    g.last_forward = now.mono;
                    self.forward_publish(conn, p, now);
                    return;
                }
                g.buffered = Some(p.frame.clone());
                self.metrics.gesture_moves_coalesced += 1;
                if !g.armed {
                    g.armed = true;
                    let due = g.last_forward + interval;
                    self.timers
                        .push(Reverse((due, Timer::Gesture(conn, key.1.clone(), key.2))));
                }
            }
            GesturePhase::End | GesturePhase::Cancel => {
                if let Some(g) = self.gestures.remove(&key)
                    && let Some(frame) = g.buffered
                {
                    self.forward_frame(conn, p.address, SignalType::Gesture, frame, None, now);
                }
                self.forward_publish(conn, p, now);
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Bundles
    // -----------------------------------------------------------------------------------------

    fn on_bundle(&mut self, conn: ConnId, qos: Qos, bundle: Bundle, now: Now) {
        if let Some(bad) = bundle
            .messages
            .iter()
            .find(|m| !matches!(m, Message::Set(_) | Message::Publish(_)))
        {
            let msg = format!(
                "BUNDLE may contain only SET and PUBLISH, not {}; nothing was applied",
                bad.name()
            );
            self.error(conn, ErrorCode::BundleRejected, msg, None);
            return;
        }
        for m in &bundle.messages {
            let (what, address) = match m {
                Message::Set(s) => ("SET", &s.address),
                Message::Publish(p) => ("PUBLISH", &p.address),
                _ => continue,
            };
            let allowed = match m {
                Message::Publish(p) => self.check_publish(conn, address, claimed_sender(p)).is_ok(),
                _ => self.permits(conn, Action::Write, address),
            };
            if !allowed {
                let msg = format!(
                    "Bundle rejected: insufficient scope for {what} to {address}; nothing was applied"
                );
                self.error(conn, ErrorCode::BundleRejected, msg, Some(address.clone()));
                return;
            }
        }
        match bundle.timestamp {
            Some(at) if at > now.wall => {
                let ahead = at - now.wall;
                if ahead > self.config.max_schedule_ahead.as_micros() as u64 {
                    let msg = format!(
                        "BUNDLE scheduled {} s ahead; the limit is {} s",
                        ahead / 1_000_000,
                        self.config.max_schedule_ahead.as_secs()
                    );
                    self.error(conn, ErrorCode::BundleRejected, msg, None);
                    return;
                }
                let max = self.config.max_scheduled_bundles;
                let Some(sess) = self.session_mut(conn) else {
                    return;
                };
                if sess.scheduled >= max {
                    let msg = format!("too many scheduled bundles (max {max})");
                    self.error(conn, ErrorCode::RateLimited, msg, None);
                    return;
                }
                sess.scheduled += 1;
                let id = self.next_bundle;
                self.next_bundle += 1;
                self.bundles
                    .insert(id, ScheduledBundle { conn, qos, bundle });
                self.timers
                    .push(Reverse((now.mono + ahead, Timer::Bundle(id))));
                self.metrics.bundles_scheduled += 1;
            }
            _ => self.run_bundle(conn, qos, bundle, now),
        }
    }

    /// Executes a bundle atomically: every inner SET is checked first (against the state as the
    /// earlier SETs of the bundle leave it); if one fails nothing is applied and one ERROR names
    /// it. Otherwise the messages are applied in order.
    fn run_bundle(&mut self, conn: ConnId, qos: Qos, bundle: Bundle, now: Now) {
        let Some(writer) = self.writer_id(conn) else {
            return;
        };
        if let Err((address, code, text)) = self.check_bundle(&writer, &bundle) {
            let msg = format!("BUNDLE rejected, nothing was applied: SET {address}: {text}");
            self.error(conn, code, msg, Some(address));
            return;
        }
        let mut last_revision = None;
        for m in bundle.messages {
            match m {
                Message::Set(s) => match self.on_set(conn, Qos::Fire, &SetReq::owned(&s), now) {
                    Ok(revision) => last_revision = Some(revision),
                    // Unreachable after check_bundle; reported rather than hidden.
                    Err((code, text)) => self.error(conn, code, text, Some(s.address.clone())),
                },
                Message::Publish(p) => self.publish_owned(conn, &p, now),
                _ => {}
            }
        }
        if qos.wants_ack() {
            let ack = Ack {
                revision: last_revision,
                ..Ack::default()
            };
            self.reply(conn, &Message::Ack(ack));
        }
    }

    fn check_bundle(
        &self,
        writer: &Arc<str>,
        bundle: &Bundle,
    ) -> Result<(), (Str, ErrorCode, String)> {
        // Revisions and locks as they will be after the earlier SETs of this bundle.
        let mut planned: HashMap<&str, (u64, Option<&str>)> = HashMap::new();
        let mut new_addresses = 0usize;
        for m in &bundle.messages {
            let Message::Set(s) = m else { continue };
            let fail = |code, text: String| (s.address.clone(), code, text);
            check_address(&s.address).map_err(|(c, t)| fail(c, t))?;
            let current = match planned.get(&*s.address) {
                Some(&(rev, lock)) => Some((rev, lock)),
                None => self
                    .store
                    .get(&s.address)
                    .map(|p| (p.revision, p.lock.as_deref())),
            };
            match current {
                None => {
                    new_addresses += 1;
                    if self.store.len() + new_addresses > self.config.max_params {
                        let e = WriteError::AtCapacity {
                            max: self.config.max_params,
                        };
                        let (c, t) = write_error(e);
                        return Err(fail(c, t));
                    }
                    let lock = s.lock.then_some(&**writer);
                    planned.insert(&s.address, (1, lock));
                }
                Some((rev, lock)) => {
                    if let Some(expected) = s.revision
                        && expected != rev
                    {
                        let (c, t) = write_error(WriteError::RevisionConflict {
                            expected,
                            actual: rev,
                        });
                        return Err(fail(c, t));
                    }
                    if let Some(holder) = lock
                        && holder != &**writer
                    {
                        let (c, t) = write_error(WriteError::LockHeld {
                            holder: holder.into(),
                        });
                        return Err(fail(c, t));
                    }
                    let lock = if s.lock {
                        Some(&**writer)
                    } else if s.unlock {
                        None
                    } else {
                        lock
                    };
                    planned.insert(&s.address, (rev + 1, lock));
                }
            }
        }
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // Fan-out
    // -----------------------------------------------------------------------------------------

    /// Delivers to every session with a matching subscription that accepts `signal`, once per
    /// session, applying `maxRate` and `epsilon` for params and streams. `exclude` is the sender
    /// for PUBLISH (SET broadcasts include the writer).
    fn fan_out(
        &mut self,
        address: &Arc<str>,
        signal: SignalType,
        exclude: Option<ConnId>,
        numeric: Option<f64>,
        now: Now,
        make: impl Fn() -> Outgoing,
    ) {
        let mut keys = std::mem::take(&mut self.scratch);
        keys.clear();
        self.index.for_each_match(address, |k| keys.push(k));
        // A session is served once per fan-out however many of its subscriptions match: it is
        // marked with this fan-out's number when it gets the frame.
        self.fanouts += 1;
        let fanout = self.fanouts;
        let p2p_announce = &**address == P2P_ANNOUNCE;
        let filtered_kind = matches!(signal, SignalType::Param | SignalType::Stream);
        let out_code = if signal == SignalType::Param {
            metrics::OUT_SET
        } else {
            metrics::OUT_PUBLISH
        };
        let mut out: Option<Outgoing> = None;
        for &(conn, sub_id) in &keys {
            if Some(conn) == exclude {
                continue;
            }
            let Some(c) = self.conns.get_mut(&conn) else {
                continue;
            };
            let Some(sess) = c.session.as_mut() else {
                continue;
            };
            if sess.served == fanout {
                // The session already has this frame through another subscription: a value
                // this one holds back for its rate limit is now older than what the client
                // has, and must not go out later (found by the core fuzzer).
                if let Some(f) = sess
                    .subs
                    .get_mut(&sub_id)
                    .and_then(|sub| sub.filters.get_mut(address))
                {
                    f.pending = None;
                }
                continue;
            }
            let Some(sub) = sess.subs.get_mut(&sub_id) else {
                continue;
            };
            if !p2p_announce && !sub.types.accepts(signal) {
                continue;
            }
            let deliver = if !filtered_kind || (sub.interval_us.is_none() && sub.epsilon.is_none())
            {
                true
            } else {
                let o = out.get_or_insert_with(&make).clone();
                match filter(sub, address, o, numeric, now.mono) {
                    Decision::Now => true,
                    Decision::Later => {
                        let f = sub.filters.get_mut(address);
                        if let Some(f) = f.filter(|f| !f.armed) {
                            f.armed = true;
                            let due =
                                f.last_sent.unwrap_or(now.mono) + sub.interval_us.unwrap_or(0);
                            self.timers
                                .push(Reverse((due, Timer::Filter(conn, sub_id, address.clone()))));
                        }
                        false
                    }
                    Decision::Skip => false,
                }
            };
            if deliver {
                sess.served = fanout;
                let o = match &out {
                    Some(o) => o.clone(),
                    None => out.insert(make()).clone(),
                };
                self.metrics.count_out(out_code, o.frame().len());
                if c.staged.is_empty() {
                    self.dirty.push(conn);
                }
                c.staged.push(o);
            }
        }
        self.scratch = keys;
    }

    // -----------------------------------------------------------------------------------------
    // Timers
    // -----------------------------------------------------------------------------------------

    /// When [`Router::tick`] should next run (monotonic µs).
    pub fn next_deadline(&self) -> Option<u64> {
        let timer = self.timers.peek().map(|Reverse((at, _))| *at);
        let expiry = self.store.next_expiry().map(|at| {
            let now = self.last_now;
            now.mono + at.saturating_sub(now.wall)
        });
        match (timer, expiry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Runs every timer due at `now`: coalesced gesture moves, rate-limited deliveries,
    /// scheduled bundles, param expiry and periodic sweeps.
    pub fn tick(&mut self, now: Now) {
        self.last_now = now;
        while let Some(Reverse((at, _))) = self.timers.peek() {
            if *at > now.mono {
                break;
            }
            let Some(Reverse((_, timer))) = self.timers.pop() else {
                break;
            };
            match timer {
                Timer::Filter(conn, sub, address) => self.flush_filter(conn, sub, &address, now),
                Timer::Gesture(conn, address, id) => self.flush_gesture(conn, address, id, now),
                Timer::Bundle(id) => {
                    if let Some(b) = self.bundles.remove(&id) {
                        if let Some(sess) = self.session_mut(b.conn) {
                            sess.scheduled = sess.scheduled.saturating_sub(1);
                        }
                        self.run_bundle(b.conn, b.qos, b.bundle, now);
                    }
                }
                Timer::Grant(conn) => self.revalidate_one(conn, now),
                Timer::Sweep => {
                    self.sweep(now);
                    self.timers
                        .push(Reverse((now.mono + SWEEP_INTERVAL_US, Timer::Sweep)));
                }
            }
        }
        let expired = self.store.expire(now.wall);
        self.metrics.params_expired += expired.len() as u64;
        self.flush();
    }

    fn flush_filter(&mut self, conn: ConnId, sub: u32, address: &Arc<str>, now: Now) {
        let Some(f) = self
            .conns
            .get_mut(&conn)
            .and_then(|c| c.session.as_mut())
            .and_then(|s| s.subs.get_mut(&sub))
            .and_then(|s| s.filters.get_mut(address))
        else {
            return;
        };
        f.armed = false;
        if let Some((out, value)) = f.pending.take() {
            f.last_sent = Some(now.mono);
            if value.is_some() {
                f.last_value = value;
            }
            let code = match out {
                Outgoing::Param(_) => metrics::OUT_SET,
                _ => metrics::OUT_PUBLISH,
            };
            self.send(conn, out, code);
        }
    }

    fn flush_gesture(&mut self, conn: ConnId, address: Arc<str>, id: u32, now: Now) {
        let key = (conn, address, id);
        let Some(g) = self.gestures.get_mut(&key) else {
            return;
        };
        g.armed = false;
        if let Some(frame) = g.buffered.take() {
            g.last_forward = now.mono;
            self.forward_frame(conn, &key.1, SignalType::Gesture, frame, None, now);
        }
    }

    fn sweep(&mut self, now: Now) {
        self.auth.sweep(now.wall);
        if self.auth.enabled() {
            self.revalidate(now);
        }
        let ttl = self.config.signal_ttl.as_micros() as u64;
        self.signals
            .retain(|_, s| now.mono.saturating_sub(s.refreshed) < ttl);
        self.gestures
            .retain(|_, g| now.mono.saturating_sub(g.started) < GESTURE_MAX_AGE_US);
    }

    // -----------------------------------------------------------------------------------------
    // Output helpers
    // -----------------------------------------------------------------------------------------

    /// Charges a message to its session's rate limit; false (after at most one ERROR 429 a
    /// second) when the session is over it and the message must be dropped.
    fn within_rate(&mut self, conn: ConnId, msg: &MessageView<'_>, now: Now) -> bool {
        let Some(limit) = self.config.rate_limit else {
            return true;
        };
        let cost = match msg {
            MessageView::Other(m) => match &**m {
                Message::Bundle(b) => b.messages.len().max(1) as f64,
                _ => 1.0,
            },
            _ => 1.0,
        };
        let Some(sess) = self.session_mut(conn) else {
            return true;
        };
        if sess.bucket.take(limit, cost, now.mono) {
            return true;
        }
        let warn = sess
            .bucket
            .warned
            .is_none_or(|at| now.mono.saturating_sub(at) >= 1_000_000);
        if warn {
            sess.bucket.warned = Some(now.mono);
        }
        self.metrics.rate_limited += 1;
        if warn {
            let msg = format!(
                "Rate limit exceeded: {} messages/second (bursts of {}); messages over it are dropped",
                limit.per_sec, limit.burst
            );
            self.error(conn, ErrorCode::RateLimited, msg, None);
        }
        false
    }

    fn session(&self, conn: ConnId) -> Option<&Session> {
        self.conns.get(&conn)?.session.as_ref()
    }

    /// Whether `conn`'s session may do `action` on `address`; counts a refusal.
    fn permits(&mut self, conn: ConnId, action: Action, address: &str) -> bool {
        let ok = self.session(conn).is_some_and(|s| s.may(action, address));
        self.metrics.forbidden += u64::from(!ok);
        ok
    }

    /// Whether `conn`'s session may do `action` on every address `pattern` matches (pattern
    /// inclusion in one of its scopes); counts a refusal.
    fn permits_pattern(&mut self, conn: ConnId, action: Action, pattern: &Pattern) -> bool {
        let ok = self.session(conn).is_some_and(|s| {
            s.grant
                .as_ref()
                .is_none_or(|g| g.scopes.allows_pattern(action, pattern))
        });
        self.metrics.forbidden += u64::from(!ok);
        ok
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

    fn send(&mut self, conn: ConnId, out: Outgoing, code: u8) {
        if let Some(c) = self.conns.get_mut(&conn) {
            self.metrics.count_out(code, out.frame().len());
            if c.staged.is_empty() {
                self.dirty.push(conn);
            }
            c.staged.push(out);
        }
    }

    fn send_frames(&mut self, conn: ConnId, frames: Vec<Bytes>) {
        for f in frames {
            self.send(
                conn,
                Outgoing::Control(f),
                clasp_proto::message::code::SNAPSHOT,
            );
        }
    }

    fn reply(&mut self, conn: ConnId, msg: &Message) {
        match encode(msg) {
            Ok(frame) => self.send(conn, Outgoing::Control(frame), msg.code()),
            Err(e) => {
                // Replies are built from bounded data; report rather than drop silently.
                let text = format!("reply could not be encoded: {e}");
                self.error(conn, ErrorCode::Internal, text, None);
            }
        }
    }

    fn error(&mut self, conn: ConnId, code: ErrorCode, message: String, address: Option<Str>) {
        self.metrics.errors_sent += 1;
        let msg = Message::Error(ErrorMessage {
            code,
            message: clip(message).into(),
            address: address.map(|a| clip_str(&a)),
            correlation_id: None,
        });
        if let Ok(frame) = encode(&msg) {
            self.send(
                conn,
                Outgoing::Control(frame),
                clasp_proto::message::code::ERROR,
            );
        }
    }

    fn decode_error(&mut self, conn: ConnId, e: &DecodeError) {
        let code = if e.context == "frame" {
            ErrorCode::InvalidFrame
        } else {
            ErrorCode::InvalidMessage
        };
        self.error(conn, code, e.to_string(), None);
    }
}

/// Applies a subscription's `maxRate`/`epsilon` to one delivery.
fn filter(
    sub: &mut Sub,
    address: &Arc<str>,
    out: Outgoing,
    value: Option<f64>,
    now: u64,
) -> Decision {
    let f = sub.filters.entry(address.clone()).or_default();
    if let (Some(eps), Some(v), Some(last)) = (sub.epsilon, value, f.last_value)
        && (v - last).abs() < eps
    {
        // A change too small to send on its own; but if an earlier one is waiting for the
        // rate limit, this one replaces it, or the subscriber would later get an older value
        // than the latest (found by the core fuzzer).
        if f.pending.is_some() {
            f.pending = Some((out, value));
            return Decision::Later;
        }
        return Decision::Skip;
    }
    match (sub.interval_us, f.last_sent) {
        (Some(interval), Some(last)) if now < last + interval => {
            f.pending = Some((out, value));
            Decision::Later
        }
        _ => {
            f.last_sent = Some(now);
            f.pending = None;
            if value.is_some() {
                f.last_value = value;
            }
            Decision::Now
        }
    }
}

fn unsupported_option(o: &SubscribeOptions) -> Option<&'static str> {
    if o.history.is_some() {
        Some("history")
    } else if o.window.is_some() {
        Some("window")
    } else {
        None
    }
}

/// The payload length of a frame if it exceeds `max`.
fn oversized(frame: &[u8], max: usize) -> Option<usize> {
    let len = usize::from(u16::from_be_bytes([*frame.get(2)?, *frame.get(3)?]));
    (len > max).then_some(len)
}

fn check_address(address: &str) -> Result<(), (ErrorCode, String)> {
    clasp_proto::address::validate_address(address)
        .map_err(|e| (ErrorCode::InvalidAddress, e.to_string()))?;
    if address.contains('*') {
        return Err((
            ErrorCode::InvalidAddress,
            format!("wildcards are only allowed in patterns, not in addresses: {address}"),
        ));
    }
    Ok(())
}

fn write_error(e: WriteError) -> (ErrorCode, String) {
    let code = match e {
        WriteError::RevisionConflict { .. } => ErrorCode::RevisionConflict,
        WriteError::LockHeld { .. } => ErrorCode::LockHeld,
        WriteError::AtCapacity { .. } => ErrorCode::StateRejected,
    };
    (code, e.to_string())
}

fn param_value(address: &str, p: &state::Param) -> ParamValue {
    ParamValue {
        address: address.to_owned().into(),
        value: p.value.clone(),
        revision: p.revision,
        writer: Some(p.writer.to_string().into()),
        timestamp: Some(p.timestamp),
    }
}

/// `s` as a [`Str`]: sharing `frame` when it was read from it, else a copy.
fn shared_str(frame: Option<&Bytes>, s: &str) -> Str {
    match frame {
        Some(f) => view::share(f, s),
        None => Str::from(s),
    }
}

/// A SET as the core applies it: borrowed from a frame, or from a bundle's owned message.
struct SetReq<'a> {
    set: SetRef<'a>,
    /// The frame `set.address` borrows from, if any.
    frame: Option<&'a Bytes>,
}

impl<'a> SetReq<'a> {
    fn owned(s: &'a clasp_proto::Set) -> Self {
        SetReq {
            set: SetRef::from(s),
            frame: None,
        }
    }

    /// The address as a shared string (for ACKs and ERRORs).
    fn address_str(&self) -> Str {
        shared_str(self.frame, self.set.address)
    }
}

/// A PUBLISH as the core routes it: its routing fields and the frame that is forwarded.
struct PubReq<'a> {
    address: &'a str,
    signal: SignalType,
    phase: GesturePhase,
    id: Option<u32>,
    /// The number `maxRate`/`epsilon` look at: the value if numeric, else the last sample.
    numeric: Option<f64>,
    /// The frame subscribers receive: the received frame itself, or the bundle's PUBLISH encoded.
    frame: Bytes,
    /// The buffer `address` borrows from, if any.
    source: Option<&'a Bytes>,
    /// For P2P signals and announces, the session the payload claims to come from (`from`,
    /// or `session_id` in an announce; `""` when absent).
    p2p_sender: Option<&'a str>,
}

/// For an owned P2P signal or announce, the session its payload names (see [`p2p_field`]).
fn claimed_sender(p: &Publish) -> Option<&str> {
    p2p_field(&p.address).map(|field| {
        p.value()
            .and_then(|v| v.get(field))
            .and_then(clasp_proto::Value::as_str)
            .unwrap_or("")
    })
}

/// The sender a P2P payload names, for signals (`from`) and announces (`session_id`).
fn p2p_field(address: &str) -> Option<&'static str> {
    if address == P2P_ANNOUNCE {
        Some("session_id")
    } else if address.starts_with(P2P_SIGNAL_PREFIX) {
        Some("from")
    } else {
        None
    }
}

impl<'a> PubReq<'a> {
    fn from_view(p: &PublishView<'a>, frame: Bytes, source: &'a Bytes) -> Self {
        let numeric = match p.payload {
            PayloadRef::Value(v) => v.as_f64(),
            PayloadRef::Samples(s) => s.iter().last(),
            PayloadRef::None => None,
        };
        let p2p_sender = p2p_field(p.address).map(|field| match p.payload {
            PayloadRef::Value(ValueRef::Map(m)) => match m.get(field) {
                Some(ValueRef::String(s)) => s,
                _ => "",
            },
            _ => "",
        });
        PubReq {
            address: p.address,
            signal: p.signal,
            phase: p.phase,
            id: p.id,
            numeric,
            frame,
            source: Some(source),
            p2p_sender,
        }
    }

    fn owned(p: &'a Publish, frame: Bytes) -> Self {
        let numeric = match &p.payload {
            PublishPayload::Value(v) => v.as_f64(),
            PublishPayload::Samples(s) => s.last().copied(),
            PublishPayload::None => None,
        };
        PubReq {
            p2p_sender: claimed_sender(p),
            address: &p.address,
            signal: p.signal,
            phase: p.phase,
            id: p.id,
            numeric,
            frame,
            source: None,
        }
    }

    /// The address as a shared string (for ERRORs).
    fn address_str(&self) -> Str {
        shared_str(self.source, self.address)
    }
}

/// Error texts and addresses are clipped so an ERROR always fits a frame.
fn clip_str(s: &Str) -> Str {
    if s.len() <= 1024 {
        s.clone()
    } else {
        clip(s.to_string()).into()
    }
}

fn clip(s: String) -> String {
    const MAX: usize = 1024;
    if s.len() <= MAX {
        return s;
    }
    let mut cut = MAX;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &s[..cut])
}
