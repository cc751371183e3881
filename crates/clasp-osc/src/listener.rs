//! The UDP listener: one CLASP session per OSC source address, feedback to registered peers.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use clasp_proto::pattern::Pattern;
use clasp_proto::{
    Bundle, FrameOptions, Hello, Message, Publish, PublishPayload, Qos, Set, SignalType, Str, Value,
};
use clasp_router::core::CloseReason;
use clasp_router::core::ConnId;
use clasp_router::server::RouterHandle;
use clasp_router::server::outbox::Outbox;
use parking_lot::Mutex;
use rosc::{OscMessage, OscPacket, OscType};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{InboundMode, OscConfig};
use crate::guard::{Cookies, SendGuard, is_allowed};
use crate::map::{
    ArgOptions, args_to_value, check_shape, clasp_to_osc, normalize_namespace, osc_to_clasp,
    to_args,
};
use crate::stats::{Counters, OscStatsHandle, inc};
use crate::time::{Due, plan};

mod control;
mod feedback;

use control::{admit, error_message, register, send_cookie, subscribe, unregister, verify};
use feedback::{EchoFilter, drain, remember_own_write};

/// Largest UDP payload.
const MAX_DATAGRAM: usize = 65_535;
/// How long a peer's own write is remembered to recognise its echo.
const ECHO_TTL: Duration = Duration::from_secs(10);
/// Most own writes remembered per peer.
const ECHO_CAP: usize = 1024;
/// Shortest wait before a closed static feedback session is reopened.
const STATIC_RETRY: Duration = Duration::from_secs(1);
/// How often a source whose registrations wait for verification is sent a new cookie.
const REMIND_EVERY: Duration = Duration::from_secs(1);
/// Subscription id of a static feedback target's pattern.
const STATIC_SUB: u32 = 0;

/// Why the listener could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum OscError {
    /// The UDP socket could not be bound.
    #[error("cannot bind OSC on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// A configuration value is unusable.
    #[error("invalid OSC configuration: {0}")]
    Config(String),
    /// The OS random generator could not supply the cookie key.
    #[error("cannot draw the OSC cookie key from the OS random generator")]
    Random,
    /// A socket operation failed.
    #[error("OSC socket error: {0}")]
    Io(#[from] std::io::Error),
}

/// The validated configuration shared by the listener's tasks.
#[derive(Debug)]
struct Ctx {
    socket: UdpSocket,
    cfg: OscConfig,
    /// Normalised namespace.
    ns: String,
    args: ArgOptions,
    stats: Arc<Counters>,
    cookies: Cookies,
}

/// An OSC-over-UDP listener bound to a router: every OSC source address becomes a CLASP session
/// (`osc:<ip:port>`) that writes what it sends and gets the changes it registered for.
///
/// Control messages, under [`OscConfig::control_prefix`] (`/clasp` by default):
///
/// * `/clasp/subscribe [pattern ...]` registers the sender for feedback of the changes under
///   each pattern (OSC side, within the namespace; none given: `/**`) as a real CLASP
///   subscription of its session, so the token's read scopes apply. The current values under a
///   new pattern are sent at once (at most [`OscConfig::max_snapshot`]). Registration lasts as
///   long as the session: a peer must send something (e.g. the same subscribe) more often than
///   [`OscConfig::session_timeout`].
/// * `/clasp/unsubscribe [pattern ...]` removes those registrations (none given: all).
/// * Errors the router reports to a registered peer come back as `/clasp/error ,iss <code>
///   <message> <address>`.
/// * `/clasp/verify ,s <cookie>` proves that the sender receives at its address. Until a source
///   has done so (or is in [`OscConfig::allow`], or is a static target), it is sent at most 3×
///   the bytes it sent; the rest is dropped, never queued. A subscribe from an unverified
///   source, or its next datagram after feedback was dropped, is answered with `/clasp/verify
///   ,s <cookie>`; `/clasp/verify` without a cookie asks for one; a wrong or expired cookie gets
///   a new one. If feedback was dropped before verification, the source's registrations are
///   renewed so it gets their current values. Verification lasts as long as the session. Every
///   destination also has a byte rate limit ([`OscConfig::send_rate`]).
#[derive(Debug)]
pub struct OscListener {
    ctx: Arc<Ctx>,
    handle: RouterHandle,
}

impl OscListener {
    /// Validates `config` and binds the UDP socket; call [`OscListener::run`] to serve.
    pub async fn bind(
        addr: SocketAddr,
        handle: RouterHandle,
        config: OscConfig,
    ) -> Result<OscListener, OscError> {
        let ns = normalize_namespace(&config.namespace).ok_or_else(|| {
            OscError::Config(format!(
                "namespace `{}` is not a valid address prefix",
                config.namespace
            ))
        })?;
        if !config.control_prefix.starts_with('/') || config.control_prefix.len() < 2 {
            return Err(OscError::Config(format!(
                "control prefix `{}` must start with `/` and name something",
                config.control_prefix
            )));
        }
        let pattern = osc_to_clasp(&ns, &config.feedback_pattern);
        if !config.feedback_pattern.starts_with('/') || Pattern::compile(&pattern).is_err() {
            return Err(OscError::Config(format!(
                "feedback pattern `{}` is not a valid pattern",
                config.feedback_pattern
            )));
        }
        if let Some(rate) = config.send_rate
            && (rate.per_sec == 0 || rate.burst == 0)
        {
            return Err(OscError::Config(
                "the send rate and burst must be at least 1 byte (no limit: `None`)".to_owned(),
            ));
        }
        let cookies = Cookies::new(Instant::now()).map_err(|_| OscError::Random)?;
        let socket = UdpSocket::bind(addr)
            .await
            .map_err(|source| OscError::Bind { addr, source })?;
        let args = ArgOptions {
            float64: config.float64,
        };
        Ok(OscListener {
            ctx: Arc::new(Ctx {
                socket,
                cfg: config,
                ns,
                args,
                stats: Arc::new(Counters::default()),
                cookies,
            }),
            handle,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> Result<SocketAddr, OscError> {
        Ok(self.ctx.socket.local_addr()?)
    }

    /// The listener's counters.
    pub fn stats(&self) -> OscStatsHandle {
        OscStatsHandle(self.ctx.stats.clone())
    }

    /// Serves until `shutdown` is cancelled, then closes every OSC session.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), OscError> {
        let addr = self.local_addr()?;
        tracing::info!(%addr, namespace = %self.ctx.ns, "OSC listener (UDP)");
        let (closed_tx, mut closed_rx) = mpsc::unbounded_channel();
        let mut r = Runner {
            ctx: self.ctx.clone(),
            handle: self.handle,
            peers: HashMap::new(),
            dynamic: 0,
            closed_tx,
            tracker: TaskTracker::new(),
            shutdown: shutdown.clone(),
        };
        let now = Instant::now();
        for target in r.ctx.cfg.feedback.clone() {
            r.open(target, true, now);
        }
        let period = (r.ctx.cfg.session_timeout / 4)
            .clamp(Duration::from_millis(20), Duration::from_secs(5));
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let ctx = self.ctx;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                res = ctx.socket.recv_from(&mut buf) => match res {
                    Ok((n, from)) => r.on_datagram(&buf[..n], from),
                    Err(e) => {
                        // E.g. an ICMP error of an earlier send; the socket stays usable.
                        inc(&ctx.stats.send_errors);
                        tracing::debug!(error = %e, "OSC receive error");
                    }
                },
                Some(c) = closed_rx.recv() => r.on_closed(c),
                _ = tick.tick() => r.reap(Instant::now()),
            }
        }
        r.shutdown_all().await;
        Ok(())
    }
}

/// A peer's session was closed by the router.
#[derive(Debug)]
struct Closed {
    addr: SocketAddr,
    conn: ConnId,
    reason: CloseReason,
}

/// What the drain task and the receive loop share about one peer.
#[derive(Debug)]
struct PeerShared {
    addr: SocketAddr,
    /// The HELLO exchange is over (the PONG after it came): later SNAPSHOTs answer SUBSCRIBEs.
    welcomed: AtomicBool,
    /// The peer has feedback subscriptions (static or self-registered).
    registered: AtomicBool,
    /// Initial values still to send for the latest registration.
    snapshot_budget: AtomicUsize,
    echo: Mutex<EchoFilter>,
    /// What the peer may still be sent (amplification budget, rate limit).
    guard: Mutex<SendGuard>,
}

#[derive(Debug)]
struct Peer {
    /// `None` once the router closed the session (a tombstone until it is reaped).
    conn: Option<ConnId>,
    shared: Arc<PeerShared>,
    cancel: CancellationToken,
    last_seen: Instant,
    closed_at: Option<Instant>,
    is_static: bool,
    /// Self-registered patterns (OSC side) → subscription id.
    subs: HashMap<String, u32>,
    /// Registrations of an unverified source, not yet subscribed on the router: an unverified
    /// source costs the router no fan-out until it proves it can receive.
    deferred: bool,
    /// When the peer was last reminded (with a cookie) that its registrations wait.
    reminded: Option<Instant>,
    next_sub: u32,
    /// Due times (µs since the Unix epoch) of the peer's scheduled groups.
    scheduled: VecDeque<u64>,
}

struct Runner {
    ctx: Arc<Ctx>,
    handle: RouterHandle,
    peers: HashMap<SocketAddr, Peer>,
    /// Peers that count against `max_peers` (tombstones included).
    dynamic: usize,
    closed_tx: mpsc::UnboundedSender<Closed>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

/// One thing a datagram asks for, in order.
enum Op {
    /// Write `msg` at `at` (`None` = now); `grouped` when it came from a bundle.
    Write {
        at: Option<u64>,
        grouped: bool,
        msg: Message,
    },
    Subscribe(Vec<String>),
    Unsubscribe(Vec<String>),
    /// `/clasp/verify`, with the cookie if one was given.
    Verify(Option<String>),
}

fn wall_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

fn fire(msg: &Message) -> Result<Bytes, clasp_proto::EncodeError> {
    clasp_proto::encode_with(msg, FrameOptions::with_qos(Qos::Fire))
}

impl Runner {
    /// Opens a session for `addr` (HELLO with the token, then a PING whose PONG marks that the
    /// HELLO was handled; the session gets no connect snapshot) and starts its feedback task.
    fn open(&mut self, addr: SocketAddr, is_static: bool, now: Instant) {
        let outbox = self.handle.outbox();
        let conn = self.handle.open_without_snapshot(&outbox);
        let verified = is_static || is_allowed(&self.ctx.cfg.allow, addr.ip());
        let shared = Arc::new(PeerShared {
            addr,
            welcomed: AtomicBool::new(false),
            registered: AtomicBool::new(is_static),
            snapshot_budget: AtomicUsize::new(if is_static {
                self.ctx.cfg.max_snapshot
            } else {
                0
            }),
            echo: Mutex::new(EchoFilter::default()),
            guard: Mutex::new(SendGuard::new(verified, self.ctx.cfg.send_rate, now)),
        });
        let cancel = self.shutdown.child_token();
        self.tracker.spawn(drain(
            self.ctx.clone(),
            shared.clone(),
            outbox,
            conn,
            cancel.clone(),
            self.closed_tx.clone(),
        ));
        let hello = Message::Hello(Hello {
            version: 1,
            features: clasp_proto::Features::CLIENT_DEFAULT,
            name: format!("osc:{addr}").into(),
            token: self.ctx.cfg.token.as_deref().map(Str::from),
        });
        let mut frames = Vec::with_capacity(3);
        for m in [hello, Message::Ping] {
            match fire(&m) {
                Ok(f) => frames.push(f),
                Err(e) => tracing::warn!(error = %e, "cannot encode {}", m.name()),
            }
        }
        if is_static {
            let pattern = osc_to_clasp(&self.ctx.ns, &self.ctx.cfg.feedback_pattern);
            if let Ok(f) = fire(&subscribe(STATIC_SUB, pattern)) {
                frames.push(f);
            }
        }
        self.handle.handle(conn, &frames);
        inc(&self.ctx.stats.peers_opened);
        self.ctx.stats.peers.fetch_add(1, Ordering::Relaxed);
        if verified {
            self.ctx
                .stats
                .verified_peers
                .fetch_add(1, Ordering::Relaxed);
        }
        tracing::debug!(%addr, is_static, verified, "OSC session opened");
        let peer = Peer {
            conn: Some(conn),
            shared,
            cancel,
            last_seen: now,
            closed_at: None,
            is_static,
            subs: HashMap::new(),
            deferred: false,
            reminded: None,
            next_sub: STATIC_SUB + 1,
            scheduled: VecDeque::new(),
        };
        if let Some(old) = self.peers.insert(addr, peer) {
            old.cancel.cancel();
        } else if !is_static {
            self.dynamic += 1;
        }
    }

    fn on_datagram(&mut self, buf: &[u8], from: SocketAddr) {
        let stats = &self.ctx.stats;
        inc(&stats.datagrams);
        let cfg = &self.ctx.cfg;
        if let Err(e) = check_shape(buf, cfg.max_bundle_depth, cfg.max_array_depth) {
            inc(&stats.decode_errors);
            tracing::debug!(%from, error = %e, "malformed OSC datagram ignored");
            return;
        }
        let packet = match rosc::decoder::decode_udp(buf) {
            Ok(([], p)) => p,
            Ok((rest, _)) => {
                inc(&stats.decode_errors);
                tracing::debug!(%from, trailing = rest.len(), "OSC datagram with undecodable bytes ignored");
                return;
            }
            Err(e) => {
                inc(&stats.decode_errors);
                tracing::debug!(%from, error = %e, "malformed OSC datagram ignored");
                return;
            }
        };
        let now = Instant::now();
        if !self.peers.contains_key(&from) {
            if self.dynamic >= cfg.max_peers {
                inc(&stats.peers_refused);
                tracing::debug!(%from, max = cfg.max_peers, "OSC peer limit reached; datagram ignored");
                return;
            }
            self.open(from, false, now);
        }
        let wall = wall_micros();
        let mut ops = Vec::new();
        self.collect(packet, None, false, wall, &mut ops);
        let ctx = self.ctx.clone();
        let Some(peer) = self.peers.get_mut(&from) else {
            return;
        };
        let Some(conn) = peer.conn else {
            inc(&ctx.stats.rejected_datagrams);
            return;
        };
        peer.last_seen = now;
        peer.shared.guard.lock().received(buf.len());
        let frames = build_frames(&ctx, peer, ops, wall, now);
        if !frames.is_empty() {
            self.handle.handle(conn, &frames);
        }
    }

    /// Flattens a packet into operations, scheduling bundles by their time tags.
    fn collect(
        &self,
        packet: OscPacket,
        parent: Option<u64>,
        grouped: bool,
        wall: u64,
        ops: &mut Vec<Op>,
    ) {
        let ctx = &self.ctx;
        match packet {
            OscPacket::Message(m) => {
                if let Some(op) = message_op(ctx, m, parent, grouped) {
                    ops.push(op);
                }
            }
            OscPacket::Bundle(b) => {
                inc(&ctx.stats.bundles);
                match plan(b.timetag, parent, wall, ctx.cfg.max_schedule_ahead) {
                    Due::TooFar => {
                        inc(&ctx.stats.schedule_rejected);
                        tracing::debug!("OSC bundle scheduled too far ahead; dropped");
                    }
                    due => {
                        for p in b.content {
                            self.collect(p, due.parent(), true, wall, ops);
                        }
                    }
                }
            }
        }
    }

    fn on_closed(&mut self, c: Closed) {
        let Some(peer) = self.peers.get_mut(&c.addr) else {
            return;
        };
        if peer.conn != Some(c.conn) {
            return;
        }
        tracing::info!(addr = %c.addr, reason = ?c.reason, "the router closed an OSC session");
        self.handle.close(c.conn);
        peer.cancel.cancel();
        peer.conn = None;
        peer.closed_at = Some(Instant::now());
        session_gone(&self.ctx, &peer.shared);
    }

    fn reap(&mut self, now: Instant) {
        let timeout = self.ctx.cfg.session_timeout;
        let mut reopen = Vec::new();
        let mut gone = Vec::new();
        for (addr, p) in &self.peers {
            match (p.is_static, p.closed_at) {
                (true, Some(at)) if now.duration_since(at) >= STATIC_RETRY => reopen.push(*addr),
                (true, _) => {}
                (false, Some(at)) if now.duration_since(at) >= timeout => gone.push(*addr),
                (false, None) if now.duration_since(p.last_seen) >= timeout => gone.push(*addr),
                _ => {}
            }
        }
        for addr in gone {
            if let Some(p) = self.peers.remove(&addr) {
                self.dynamic -= 1;
                p.cancel.cancel();
                if let Some(conn) = p.conn {
                    self.handle.close(conn);
                    session_gone(&self.ctx, &p.shared);
                    inc(&self.ctx.stats.peers_reaped);
                    tracing::debug!(%addr, "idle OSC session closed");
                }
            }
        }
        for addr in reopen {
            self.open(addr, true, now);
        }
    }

    async fn shutdown_all(mut self) {
        for (_, p) in self.peers.drain() {
            p.cancel.cancel();
            if let Some(conn) = p.conn {
                self.handle.close(conn);
                session_gone(&self.ctx, &p.shared);
            }
        }
        self.tracker.close();
        self.tracker.wait().await;
    }
}

/// Updates the gauges for a peer whose session ended.
fn session_gone(ctx: &Ctx, peer: &PeerShared) {
    ctx.stats.peers.fetch_sub(1, Ordering::Relaxed);
    if peer.guard.lock().is_verified() {
        ctx.stats.verified_peers.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The operation of one OSC message, or `None` (counted) if it cannot be applied.
fn message_op(ctx: &Ctx, m: OscMessage, at: Option<u64>, grouped: bool) -> Option<Op> {
    let prefix = &ctx.cfg.control_prefix;
    if let Some(verb) = m
        .addr
        .strip_prefix(prefix.as_str())
        .and_then(|r| r.strip_prefix('/'))
    {
        let patterns: Vec<String> = m
            .args
            .into_iter()
            .filter_map(|a| match a {
                OscType::String(s) => Some(s),
                _ => None,
            })
            .collect();
        return match verb {
            "subscribe" => Some(Op::Subscribe(patterns)),
            "unsubscribe" => Some(Op::Unsubscribe(patterns)),
            "verify" => Some(Op::Verify(patterns.into_iter().next())),
            _ => {
                inc(&ctx.stats.invalid);
                tracing::debug!(address = %m.addr, "unknown OSC control message");
                None
            }
        };
    }
    let address = osc_to_clasp(&ctx.ns, &m.addr);
    if clasp_proto::address::validate_address(&address).is_err() || address.contains('*') {
        inc(&ctx.stats.invalid);
        tracing::debug!(%address, "OSC address is not a CLASP address; message ignored");
        return None;
    }
    let value = args_to_value(&m.args);
    let msg = match ctx.cfg.mode {
        InboundMode::Set => Message::Set(Set {
            address: address.into(),
            value,
            ..Set::default()
        }),
        InboundMode::Publish => Message::Publish(Publish {
            address: address.into(),
            signal: SignalType::Event,
            payload: PublishPayload::Value(value),
            ..Publish::default()
        }),
    };
    Some(Op::Write { at, grouped, msg })
}

/// The CLASP frames of a datagram's operations: a bare message is one SET (or PUBLISH);
/// consecutive messages of bundles due at the same time form one BUNDLE (scheduled by the
/// router when the time is in the future).
fn build_frames(ctx: &Ctx, peer: &mut Peer, ops: Vec<Op>, wall: u64, now: Instant) -> Vec<Bytes> {
    let mut frames = Vec::new();
    let mut group: Option<(Option<u64>, Vec<Message>)> = None;
    let mut cookie_due = false;
    for op in ops {
        match op {
            Op::Write { at, grouped, msg } => {
                inc(&ctx.stats.messages);
                remember_own_write(ctx, peer, &msg, at, wall, now);
                if !grouped {
                    flush(ctx, peer, &mut group, wall, &mut frames);
                    push_frame(ctx, &msg, &mut frames);
                    continue;
                }
                match &mut group {
                    Some((t, msgs)) if *t == at => msgs.push(msg),
                    _ => {
                        flush(ctx, peer, &mut group, wall, &mut frames);
                        group = Some((at, vec![msg]));
                    }
                }
            }
            Op::Subscribe(patterns) => {
                flush(ctx, peer, &mut group, wall, &mut frames);
                register(ctx, peer, patterns, &mut frames);
                cookie_due |= !peer.shared.guard.lock().is_verified();
            }
            Op::Unsubscribe(patterns) => {
                flush(ctx, peer, &mut group, wall, &mut frames);
                unregister(peer, patterns, &mut frames);
            }
            Op::Verify(cookie) => {
                flush(ctx, peer, &mut group, wall, &mut frames);
                cookie_due |= !verify(ctx, peer, cookie, now, &mut frames);
            }
        }
    }
    flush(ctx, peer, &mut group, wall, &mut frames);
    // A registered source whose feedback no longer fits its budget, or whose registrations
    // wait for it to verify, is told how to get it.
    let starved =
        peer.shared.registered.load(Ordering::Relaxed) && peer.shared.guard.lock().take_starved();
    // A source whose registrations wait is reminded at most once a second.
    let remind = peer.deferred
        && peer
            .reminded
            .is_none_or(|t| now.duration_since(t) >= REMIND_EVERY);
    if cookie_due || starved || remind {
        peer.reminded = Some(now);
        send_cookie(ctx, &peer.shared, now);
    }
    frames
}

fn push_frame(ctx: &Ctx, msg: &Message, frames: &mut Vec<Bytes>) {
    match fire(msg) {
        Ok(f) => frames.push(f),
        Err(e) => {
            inc(&ctx.stats.too_large);
            tracing::debug!(error = %e, "OSC message does not fit a CLASP frame; dropped");
        }
    }
}

fn flush(
    ctx: &Ctx,
    peer: &mut Peer,
    group: &mut Option<(Option<u64>, Vec<Message>)>,
    wall: u64,
    frames: &mut Vec<Bytes>,
) {
    let Some((at, messages)) = group.take() else {
        return;
    };
    if let Some(due) = at {
        while peer.scheduled.front().is_some_and(|&t| t <= wall) {
            peer.scheduled.pop_front();
        }
        if peer.scheduled.len() >= ctx.cfg.max_scheduled_per_peer {
            inc(&ctx.stats.schedule_rejected);
            tracing::debug!(addr = %peer.shared.addr, "too many scheduled OSC bundles; dropped");
            return;
        }
        // Kept sorted so the front is always the next to run.
        let pos = peer.scheduled.partition_point(|&t| t <= due);
        peer.scheduled.insert(pos, due);
        inc(&ctx.stats.scheduled);
    }
    let bundle = Message::Bundle(Bundle {
        timestamp: at,
        messages,
    });
    push_frame(ctx, &bundle, frames);
}
