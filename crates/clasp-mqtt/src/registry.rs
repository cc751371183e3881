//! The listener's clients and kept sessions: who is connected under which client id, the
//! sessions kept for clients that are away (parked), and opening a session's CLASP side.
//!
//! A persistent MQTT session (clean session 0, MQTT 5 session expiry) keeps its CLASP session
//! when its connection ends: a task keeps running it with the socket gone
//! ([`Kept::parked`]), queueing what the router delivers (`Session::queue_offline`), until its
//! client returns and takes it over a channel ([`Parked::take`]), it expires, the router ends
//! it, or the listener stops (then it is saved to the store, if there is one). An MQTT 5 will
//! with a delay waits there too ([`DelayedWill`]).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use clasp_proto::ErrorCode;
use clasp_router::core::ConnId;
use clasp_router::server::RouterHandle;
use clasp_router::server::inbox::Inbox;
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::MqttConfig;
use crate::packet::{Refuse, Version, Will};
use crate::persist::{self, Saved};
use crate::session::{Ctx, End, Session};
use crate::topic::Topics;

/// State shared by the listener and its connections.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) handle: RouterHandle,
    pub(crate) ctx: Arc<Ctx>,
    /// Connected client ids → their connection.
    pub(crate) clients: Mutex<HashMap<String, Live>>,
    /// Client ids → the session kept while that client is away.
    pub(crate) parked: Mutex<HashMap<String, Parked>>,
    pub(crate) generation: AtomicU64,
    pub(crate) active: AtomicUsize,
    /// Sessions resumed by a returning client.
    pub(crate) resumed: AtomicU64,
    /// Kept sessions taken down by a shutdown, for the store: client id → (generation,
    /// session); the newest session of a client id wins.
    pub(crate) saved: Mutex<HashMap<String, (u64, Saved)>>,
    /// A store keeps sessions across restarts (set by the listener before it accepts).
    pub(crate) persist: AtomicBool,
    /// The listener or the router is shutting down: new clients are refused.
    pub(crate) stopping: AtomicBool,
}

impl Shared {
    pub(crate) fn new(handle: RouterHandle, config: MqttConfig, topics: Topics) -> Shared {
        Shared {
            handle,
            ctx: Arc::new(Ctx {
                config,
                topics,
                offline_dropped: AtomicU64::new(0),
            }),
            clients: Mutex::new(HashMap::new()),
            parked: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(1),
            active: AtomicUsize::new(0),
            resumed: AtomicU64::new(0),
            saved: Mutex::new(HashMap::new()),
            persist: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
        }
    }

    /// The listener's settings.
    pub(crate) fn config(&self) -> &MqttConfig {
        &self.ctx.config
    }

    /// Sessions kept for clients that are away.
    pub(crate) fn parked_count(&self) -> usize {
        self.parked.lock().len()
    }

    /// Opens the CLASP session of an MQTT client (with `token`, checked as a HELLO's would
    /// be): its inbox and connection, or how the router refused it.
    pub(crate) fn open(
        &self,
        client_id: &str,
        token: Option<&str>,
        peer: Option<SocketAddr>,
    ) -> Result<(Inbox, ConnId), Refuse> {
        let inbox = self.handle.inbox();
        inbox.set_peer("mqtt", peer.map(|p| p.to_string()));
        let name = format!("mqtt:{client_id}");
        match self.handle.open_adapter_named(&inbox, token, &name) {
            Ok(conn) => Ok((inbox, conn)),
            Err(r) => {
                tracing::info!(?peer, client_id, code = r.code().code(), reason = %r, "MQTT client refused by the router");
                Err(match r.code() {
                    ErrorCode::Unauthorized => Refuse::BadCredentials,
                    ErrorCode::TokenExpired | ErrorCode::Forbidden => Refuse::NotAuthorized,
                    ErrorCode::Overloaded => Refuse::Busy,
                    _ => Refuse::Unavailable,
                })
            }
        }
    }
}

/// A connected client, as a newer connection with its client id sees it.
#[derive(Debug)]
pub(crate) struct Live {
    pub(crate) generation: u64,
    /// Ends the connection (takeover).
    pub(crate) kicked: CancellationToken,
    /// Cancelled once the connection has ended and, if it keeps one, parked its session.
    pub(crate) done: CancellationToken,
    /// Set (under the `parked` lock) by the newer connection once it has looked for the
    /// session: a session parked after that would be stale, so it is not kept.
    pub(crate) abandoned: Arc<AtomicBool>,
}

/// A session and the queue the router delivers to it: what moves between connections.
#[derive(Debug)]
pub(crate) struct Kept {
    pub(crate) session: Box<Session>,
    pub(crate) inbox: Inbox,
}

/// A session kept after its connection ended.
#[derive(Debug)]
pub(crate) struct Parked {
    generation: u64,
    pub(crate) version: Version,
    /// The credentials it was opened with: only the same ones resume it.
    pub(crate) token: Option<String>,
    /// Asks the parked task for the session; dropping this ends it.
    resume: mpsc::Sender<oneshot::Sender<Kept>>,
}

impl Parked {
    /// Takes the session from its parked task; `None` if it ended meanwhile.
    pub(crate) async fn take(self) -> Option<Kept> {
        let (tx, rx) = oneshot::channel();
        self.resume.send(tx).await.ok()?;
        rx.await.ok()
    }
}

/// An MQTT 5 will waiting for its delay (min(will delay, session expiry), §3.1.3.2.2) in the
/// parked session of a client that went away.
///
/// It is published through the session when the delay has passed, or earlier if the session
/// ends first: it expires, a new connection with the client id does not resume it (clean
/// start, other credentials), a resume is abandoned, or the listener or router shuts down
/// (as Mosquitto publishes pending wills at shutdown: the will is not saved with the session,
/// and the client cannot come back in time). It is dropped if the client resumes the session
/// (as Mosquitto drops it for a new connection with clean start 0), or if the router closes
/// the session (as for a live connection the router closes).
#[derive(Debug)]
pub(crate) struct DelayedWill {
    /// The will.
    pub(crate) will: Will,
    /// When it is due.
    pub(crate) at: Instant,
}

/// Whose a kept session is: its client id, the connection generation that kept it, and the
/// credentials it was opened with.
#[derive(Debug, Clone)]
pub(crate) struct Owner {
    pub(crate) client_id: String,
    pub(crate) generation: u64,
    pub(crate) token: Option<String>,
}

/// Where a parked session's returning client asks for it.
pub(crate) type Resume = mpsc::Receiver<oneshot::Sender<Kept>>;

impl Kept {
    /// Hands the router's deliveries waiting in the inbox to the session.
    pub(crate) fn drain(&mut self) {
        let mut got = Vec::new();
        let close = self.inbox.drain(&mut got);
        if !got.is_empty() || close.is_some() {
            self.session
                .on_deliveries(got, close, std::time::Instant::now());
        }
    }

    /// Publishes a parked session's will through it; nothing goes to a client (what its own
    /// subscriptions match is queued offline).
    fn publish_will(&mut self, will: Will, shared: &Shared) {
        self.session
            .publish_will(will, &mut shared.handle.clone(), std::time::Instant::now());
        self.session.clear_out();
        self.session.clear_closing();
    }

    /// Adds the session to those the listener stores at its end (if it has a store and no
    /// newer session of the client id is there); says what became of it.
    pub(crate) fn save(&self, shared: &Shared, owner: &Owner, keep: Duration) -> &'static str {
        if !shared.persist.load(Ordering::Acquire) {
            return "ended by the shutdown (no store to keep it in)";
        }
        let saved = self
            .session
            .to_saved(&owner.client_id, owner.token.clone(), keep);
        let mut all = shared.saved.lock();
        match all.get(&owner.client_id) {
            Some((g, _)) if *g > owner.generation => "a newer session of the client is saved",
            _ => {
                all.insert(owner.client_id.clone(), (owner.generation, saved));
                "saved for after the restart"
            }
        }
    }

    /// Registers the session as kept for its client's return, unless a newer connection has
    /// gone ahead without it, a newer session is kept already, or the listener keeps as many
    /// as it may. Returns the channel a returning client asks for the session on.
    pub(crate) fn park_entry(
        &self,
        shared: &Shared,
        owner: &Owner,
        abandoned: &AtomicBool,
    ) -> Result<Resume, &'static str> {
        let (client_id, generation) = (owner.client_id.as_str(), owner.generation);
        let (tx, rx) = mpsc::channel(1);
        let max = shared.config().max_kept_sessions;
        let mut parked = shared.parked.lock();
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
                version: self.session.version,
                token: owner.token.clone(),
                resume: tx,
            },
        );
        Ok(rx)
    }

    /// Keeps the parked session for `keep`: the CLASP session stays open, what it delivers
    /// is queued, and a returning client takes the session back through `resume`. Ends
    /// (closing the CLASP session) on expiry, listener shutdown, the router closing the
    /// session, or a new session replacing it. `will` is published when due, or when the
    /// session ends before (see [`DelayedWill`]).
    pub(crate) async fn parked(
        mut self,
        shared: Arc<Shared>,
        owner: Owner,
        mut resume: Resume,
        keep: Duration,
        mut will: Option<DelayedWill>,
        shutdown: &CancellationToken,
    ) {
        let (client_id, generation) = (owner.client_id.as_str(), owner.generation);
        enum Wake {
            Ready,
            Resume(oneshot::Sender<Kept>),
            Will,
            Shutdown,
            End(&'static str),
        }
        self.session.offline = true;
        self.session.clear_out();
        self.session.clear_closing();
        self.session.trim_offline();
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
                () = async {
                    match will.as_ref() {
                        Some(w) => tokio::time::sleep_until(w.at).await,
                        None => std::future::pending().await,
                    }
                } => Wake::Will,
                () = self.inbox.ready() => Wake::Ready,
                r = resume.recv() => match r {
                    Some(reply) => Wake::Resume(reply),
                    None => Wake::End("replaced by a new session"),
                },
            };
            match wake {
                Wake::Ready => {
                    self.drain();
                    // The router says why it closes: shutting down, or the session is over
                    // (token revoked, say).
                    match self.session.closing_end() {
                        Some(End::Shutdown) => break self.save(&shared, &owner, left(expires)),
                        Some(_) => {
                            // As for a live connection the router closes: no will.
                            will = None;
                            break "closed by the router";
                        }
                        None => self.session.clear_out(),
                    }
                }
                Wake::Resume(reply) => {
                    // What the router delivered before the client came back is queued first,
                    // under the offline rules.
                    self.drain();
                    match reply.send(self) {
                        Ok(()) => {
                            if will.is_some() {
                                tracing::debug!(
                                    client_id,
                                    "MQTT client back within its will delay: no will"
                                );
                            }
                            return;
                        }
                        Err(back) => {
                            self = back;
                            break "resume abandoned";
                        }
                    }
                }
                Wake::Will => {
                    if let Some(w) = will.take() {
                        tracing::debug!(client_id, "MQTT will delay passed: will published");
                        self.publish_will(w.will, &shared);
                    }
                }
                Wake::Shutdown => break self.save(&shared, &owner, left(expires)),
                Wake::End(reason) => break reason,
            }
        };
        if let Some(w) = will.take() {
            tracing::debug!(
                client_id,
                reason,
                "MQTT session ended within its will delay: will published"
            );
            self.publish_will(w.will, &shared);
        }
        {
            let mut parked = shared.parked.lock();
            if parked
                .get(client_id)
                .is_some_and(|p| p.generation == generation)
            {
                parked.remove(client_id);
            }
        }
        tracing::debug!(client_id, reason, "MQTT session ended");
        shared.handle.close(self.session.conn);
    }
}

/// A session saved before a restart, open again and kept for its client's return.
pub(crate) struct Restored {
    kept: Kept,
    shared: Arc<Shared>,
    owner: Owner,
    resume: Resume,
    keep: Duration,
}

impl Restored {
    /// Keeps the session until its client returns, it expires or the listener stops.
    pub(crate) async fn run(self, shutdown: CancellationToken) {
        self.kept
            .parked(
                self.shared,
                self.owner,
                self.resume,
                self.keep,
                None,
                &shutdown,
            )
            .await;
    }
}

/// Opens a saved session again: its CLASP session (with the token it had, so the router
/// decides afresh), its subscriptions and what was waiting for its client. `None` if it has
/// expired or the router refuses it now.
pub(crate) fn restore(shared: &Arc<Shared>, saved: Saved) -> Option<Restored> {
    let client_id = saved.client_id.clone();
    let keep = persist::remaining(saved.expires_ms)
        .map(|k| k.min(shared.config().session_expiry))
        .filter(|k| !k.is_zero());
    let Some(keep) = keep else {
        tracing::debug!(
            client_id,
            "kept MQTT session expired (or sessions are off now)"
        );
        return None;
    };
    let version = if saved.v5 { Version::V5 } else { Version::V4 };
    let (inbox, conn) = match shared.open(&client_id, saved.token.as_deref(), None) {
        Ok(opened) => opened,
        Err(r) => {
            tracing::info!(client_id, refusal = ?r, "kept MQTT session not restored: the router refused its token");
            return None;
        }
    };
    let window = shared.config().max_inflight.max(1);
    let mut session = Session::new(version, shared.ctx.clone(), conn, window, usize::MAX);
    session.offline = true;
    session.restore_from(&saved, &mut shared.handle.clone());
    let kept = Kept { session, inbox };
    let owner = Owner {
        client_id: client_id.clone(),
        generation: shared.generation.fetch_add(1, Ordering::Relaxed),
        token: saved.token,
    };
    match kept.park_entry(shared, &owner, &AtomicBool::new(false)) {
        Ok(resume) => Some(Restored {
            kept,
            shared: shared.clone(),
            owner,
            resume,
            keep,
        }),
        Err(reason) => {
            tracing::info!(client_id, reason, "kept MQTT session not restored");
            shared.handle.close(kept.session.conn);
            None
        }
    }
}
