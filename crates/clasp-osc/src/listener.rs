//! The UDP listener: one adapter session of the router per OSC source address.
//!
//! The path of a value: an OSC datagram becomes [`Message`]s (a SET or PUBLISH per OSC
//! message, a BUNDLE per group of bundle elements due together; see `inbound`) that are handed
//! to the core with [`RouterHandle::submit_all`] and answered in place: a refusal is counted and
//! told to a registered peer as `<prefix>/error`. What the core produces for the session
//! arrives in its [`Inbox`] as typed [`Delivery`]s tagged with the ids of the peer's
//! subscriptions that matched, and the peer's feedback task sends them as OSC within the
//! peer's budget (see `feedback`). No CLASP frame is encoded or decoded on the way.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clasp_proto::pattern::Pattern;
use clasp_proto::{Message, Value};
use clasp_router::core::adapter::Delivery;
use clasp_router::core::{CloseReason, ConnId};
use clasp_router::server::RouterHandle;
use clasp_router::server::inbox::Inbox;
use parking_lot::Mutex;
use rosc::{OscMessage, OscPacket};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::OscConfig;
use crate::guard::{Cookies, SendGuard, is_allowed};
use crate::map::{
    ArgOptions, check_shape, clasp_to_osc, normalize_namespace, osc_to_clasp, to_args,
};
use crate::stats::{Counters, OscStatsHandle, inc};

mod control;
mod feedback;
mod inbound;

use control::{admit, error_message};
use feedback::drain;
use inbound::{Batch, collect, plan, refused, submit};

/// Largest UDP payload.
const MAX_DATAGRAM: usize = 65_535;
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

/// An OSC-over-UDP listener bound to a router: every OSC source address becomes a session of
/// the router (opened with the configured token) that writes what it sends and gets the changes
/// it registered for.
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
        // Opening a static target may answer it at once (why the router refused its session):
        // the receive loop's sends never wait, so the socket must be known writable first.
        r.ctx.socket.writable().await?;
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

/// What the feedback task and the receive loop share about one peer.
#[derive(Debug)]
struct PeerShared {
    addr: SocketAddr,
    /// The peer has feedback registrations (static or self-registered, waiting ones included).
    registered: AtomicBool,
    /// Ids of the peer's subscriptions on the router: what is delivered for no other (one the
    /// peer dropped since) is not sent.
    live: Mutex<Vec<u32>>,
    /// What the peer may still be sent (amplification budget, rate limit).
    guard: Mutex<SendGuard>,
}

impl PeerShared {
    /// Marks subscription `id` as wanted (`true`) or dropped.
    fn set_live(&self, id: u32, wanted: bool) {
        let mut live = self.live.lock();
        live.retain(|&i| i != id);
        if wanted {
            live.push(id);
        }
    }

    /// Whether any of `subs` is still wanted.
    fn wants(&self, mut subs: impl Iterator<Item = u32>) -> bool {
        let live = self.live.lock();
        subs.any(|id| live.contains(&id))
    }
}

#[derive(Debug)]
struct Peer {
    /// `None` once the router closed (or refused) the session: a tombstone until it is reaped.
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
    /// When the peer was last told that the router's rate limit refused its messages.
    rate_told: Option<Instant>,
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

fn wall_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

impl Runner {
    /// Opens an adapter session for `addr` with the configured token (no connect snapshot;
    /// a static target is subscribed to the feedback pattern) and starts its feedback task. A
    /// refused session leaves a tombstone: the source's datagrams are ignored (and counted)
    /// until it is reaped, or a static target is retried.
    fn open(&mut self, addr: SocketAddr, is_static: bool, now: Instant) {
        let verified = is_static || is_allowed(&self.ctx.cfg.allow, addr.ip());
        let shared = Arc::new(PeerShared {
            addr,
            registered: AtomicBool::new(is_static),
            live: Mutex::new(Vec::new()),
            guard: Mutex::new(SendGuard::new(verified, self.ctx.cfg.send_rate, now)),
        });
        let mut peer = Peer {
            conn: None,
            shared,
            cancel: self.shutdown.child_token(),
            last_seen: now,
            closed_at: None,
            is_static,
            subs: HashMap::new(),
            deferred: false,
            reminded: None,
            rate_told: None,
            next_sub: STATIC_SUB + 1,
            scheduled: VecDeque::new(),
        };
        inc(&self.ctx.stats.peers_opened);
        let inbox = self.handle.inbox();
        inbox.set_peer("osc", Some(addr.to_string()));
        let name = format!("osc:{addr}");
        match self
            .handle
            .open_adapter_named(&inbox, self.ctx.cfg.token.as_deref(), &name)
        {
            Ok(conn) => {
                peer.conn = Some(conn);
                self.ctx.stats.peers.fetch_add(1, Ordering::Relaxed);
                if verified {
                    self.ctx
                        .stats
                        .verified_peers
                        .fetch_add(1, Ordering::Relaxed);
                }
                self.tracker.spawn(drain(
                    self.ctx.clone(),
                    peer.shared.clone(),
                    inbox,
                    conn,
                    peer.cancel.clone(),
                    self.closed_tx.clone(),
                ));
                if is_static {
                    let pattern = osc_to_clasp(&self.ctx.ns, &self.ctx.cfg.feedback_pattern);
                    let mut batch = Batch::default();
                    batch.subscribe(&peer.shared, STATIC_SUB, pattern);
                    submit(&self.ctx, &self.handle, conn, &mut peer, batch, now);
                }
                tracing::debug!(%addr, is_static, verified, "OSC session opened");
            }
            Err(r) => {
                tracing::info!(%addr, is_static, error = %r, "the router refused an OSC session");
                refused(&self.ctx, &mut peer, &r, "", now);
                peer.closed_at = Some(now);
            }
        }
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
        collect(&self.ctx, packet, None, false, wall, &mut ops);
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
        let batch = plan(&ctx, peer, ops, wall, now);
        submit(&ctx, &self.handle, conn, peer, batch, now);
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
