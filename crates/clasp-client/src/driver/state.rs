//! The connection's state machine, with no sockets and no clock reads (the quinn-proto style):
//! the shell feeds it what happened (`on_dialed`, `on_frame`, `on_transport_ended`,
//! `on_command`, `on_timeout`, `on_close`, each with the time) and pulls what to do
//! (`poll_transmit`, `poll_action`, `poll_timeout`). The same machine runs the first connect,
//! every reconnect and the clean close; `driver/tests.rs` drives it against an in-memory router
//! core with a clock advanced by hand.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clasp_proto::pattern::Pattern;
use clasp_proto::{
    ClockSync, Hello, Message, SignalType, Str, Subscribe, Unsubscribe, Welcome,
    decode_frame_bytes, encode,
};
use tokio::sync::mpsc;

use super::Shared;
use crate::clock::{Clock, wall_micros};
use crate::command::{Command, Waiter};
use crate::config::{Config, ConnectionEvent};
use crate::error::{Error, Result};
use crate::options::{SubscribeOptions, Update};

/// How long a clean close waits for the router's answer before dropping the transport.
const CLOSE_GRACE: Duration = Duration::from_millis(500);
/// How often waiters whose caller gave up are forgotten.
const PRUNE_EVERY: Duration = Duration::from_secs(1);

/// The time an input happened: monotonic for timers, wall-clock µs for clock sync.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Now {
    pub(crate) at: Instant,
    pub(crate) wall: u64,
}

impl Now {
    /// The machine's clocks now.
    pub(crate) fn system() -> Now {
        Now {
            at: Instant::now(),
            wall: wall_micros(),
        }
    }
}

/// What the shell must do for the machine.
#[derive(Debug)]
pub(crate) enum Action {
    /// Open a transport to the router; answer with `on_dialed` or `on_dial_failed`.
    Dial,
    /// Close the transport cleanly (a WebSocket Close) and keep reading until it ends.
    Close,
    /// Drop the transport, or the dial in progress, at once.
    Abort,
    /// The answer to `connect()`: the first session is up, or it failed for good.
    Opened(Result<()>),
    /// Nothing more to do: the shell ends.
    Done,
}

/// How a transport ended.
#[derive(Debug, Clone)]
pub(crate) enum Ended {
    /// The router closed it (a WebSocket Close), saying why.
    ByRouter(String),
    /// A transport error.
    Error(String),
    /// The stream ended without a close.
    Eof,
}

/// Where the connection is.
#[derive(Debug)]
enum Phase {
    /// A transport is being opened. `attempt` 0 is the first connect, then reconnects from 1.
    Dialing { attempt: u32, deadline: Instant },
    /// HELLO sent (at wall time `t1`), waiting for WELCOME.
    Handshake {
        attempt: u32,
        deadline: Instant,
        t1: u64,
    },
    /// A session is up.
    Connected { next_sync: Instant, prune: Instant },
    /// Waiting before reconnect attempt `attempt`.
    Backoff { attempt: u32, until: Instant },
    /// Close sent, waiting for the transport to end.
    Closing { deadline: Instant },
    /// Finished for good.
    Done,
}

/// A live subscription as the driver sees it.
#[derive(Debug)]
pub(super) struct Sub {
    pub(super) pattern: Pattern,
    pub(super) options: SubscribeOptions,
    pub(super) tx: mpsc::Sender<Update>,
    pub(super) dropped: Arc<AtomicU64>,
    /// Last param delivered per address (revision and value), to drop exact repeats such as
    /// the same state arriving in a connect snapshot and a subscribe snapshot.
    pub(super) last: HashMap<Str, (Option<u64>, clasp_proto::Value)>,
}

impl Sub {
    fn subscribe_frame(&self, id: u32) -> Result<Bytes> {
        let (types, options) = self.options.wire();
        Ok(encode(&Message::Subscribe(Subscribe {
            id,
            pattern: self.pattern.as_str().into(),
            types,
            options,
        }))?)
    }
}

/// The connection's state: sessions, pending calls, subscriptions, reconnecting.
#[derive(Debug)]
pub(crate) struct DriverState {
    pub(super) shared: Arc<Shared>,
    cfg: Arc<Config>,
    phase: Phase,
    /// Live subscriptions, by id (ordered: resubscribing goes in a fixed order).
    pub(super) subs: BTreeMap<u32, Sub>,
    /// Calls waiting for the router, in the order their requests went out.
    pub(super) pending: VecDeque<Waiter>,
    /// Frames to write, in order.
    out: VecDeque<Bytes>,
    actions: VecDeque<Action>,
    /// The last router ERROR that answered no call, named when the router then closes.
    pub(super) last_error: Option<String>,
    /// Jitter for reconnect delays (seeded in tests).
    rng: fastrand::Rng,
    /// BUNDLEs received from the router so far (numbers [`crate::Update::bundle`]).
    pub(super) bundles_in: u64,
    /// The number of the BUNDLE whose messages are being handled, if any.
    pub(super) in_bundle: Option<u64>,
}

impl DriverState {
    /// A machine about to make its first connect: its first action is `Dial`.
    pub(crate) fn new(shared: Arc<Shared>, cfg: Arc<Config>, rng: fastrand::Rng, now: Now) -> Self {
        let mut st = DriverState {
            shared,
            cfg,
            phase: Phase::Done,
            subs: BTreeMap::new(),
            pending: VecDeque::new(),
            out: VecDeque::new(),
            actions: VecDeque::new(),
            last_error: None,
            rng,
            bundles_in: 0,
            in_bundle: None,
        };
        st.dial(0, now);
        st
    }

    // -----------------------------------------------------------------------------------------
    // Output
    // -----------------------------------------------------------------------------------------

    /// The next frame to write to the transport.
    pub(crate) fn poll_transmit(&mut self) -> Option<Bytes> {
        self.out.pop_front()
    }

    /// The next thing the shell must do.
    pub(crate) fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When `on_timeout` is due next.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Dialing { deadline, .. } | Phase::Handshake { deadline, .. } => Some(deadline),
            Phase::Connected { next_sync, prune } => Some(next_sync.min(prune)),
            Phase::Backoff { until, .. } => Some(until),
            Phase::Closing { deadline } => Some(deadline),
            Phase::Done => None,
        }
    }

    /// Whether the machine has finished for good.
    pub(crate) fn is_done(&self) -> bool {
        matches!(self.phase, Phase::Done)
    }

    // -----------------------------------------------------------------------------------------
    // Input
    // -----------------------------------------------------------------------------------------

    /// The transport asked for by `Dial` is open: the handshake starts.
    pub(crate) fn on_dialed(&mut self, now: Now) {
        let Phase::Dialing { attempt, deadline } = self.phase else {
            // Not wanted any more (closed meanwhile).
            self.actions.push_back(Action::Abort);
            return;
        };
        let hello = encode(&Message::Hello(Hello {
            version: 1,
            features: self.cfg.features,
            name: self.cfg.name.as_str().into(),
            token: self.cfg.token.as_deref().map(Str::from),
        }));
        match hello {
            Ok(f) => self.out.push_back(f),
            Err(e) => return self.attempt_failed(attempt, e.into(), now),
        }
        self.phase = Phase::Handshake {
            attempt,
            deadline,
            t1: now.wall,
        };
    }

    /// The transport asked for by `Dial` could not be opened.
    pub(crate) fn on_dial_failed(&mut self, e: Error, now: Now) {
        if let Phase::Dialing { attempt, .. } = self.phase {
            self.attempt_failed(attempt, e, now);
        }
    }

    /// A whole frame from the router.
    pub(crate) fn on_frame(&mut self, bytes: &Bytes, now: Now) {
        match self.phase {
            Phase::Handshake { attempt, t1, .. } => self.handshake_frame(attempt, t1, bytes, now),
            Phase::Connected { .. } => match decode_frame_bytes(bytes) {
                Ok(f) => self.handle(f.message, now),
                Err(e) => tracing::warn!(error = %e, "undecodable frame from the router skipped"),
            },
            _ => {}
        }
    }

    /// The transport ended.
    pub(crate) fn on_transport_ended(&mut self, how: Ended, now: Now) {
        match self.phase {
            Phase::Handshake { attempt, .. } => {
                let reason = match how {
                    Ended::ByRouter(why) => format!("the router closed the connection {why}"),
                    Ended::Error(e) => e,
                    Ended::Eof => "the connection closed during the handshake".into(),
                };
                let e = Error::Connect {
                    url: self.cfg.url.clone(),
                    reason: reason.trim().to_string(),
                };
                self.attempt_failed(attempt, e, now);
            }
            Phase::Connected { .. } => {
                let reason = match how {
                    Ended::ByRouter(mut why) => {
                        if let Some(e) = self.last_error.take() {
                            why = format!("{why} (last error: {e})");
                        }
                        format!("the router closed the connection {why}")
                            .trim()
                            .to_string()
                    }
                    Ended::Error(e) => e,
                    Ended::Eof => "the connection closed".into(),
                };
                self.lost(reason, now);
            }
            Phase::Closing { .. } => self.finish(),
            Phase::Dialing { .. } | Phase::Backoff { .. } | Phase::Done => {}
        }
    }

    /// A command from a client handle.
    pub(crate) fn on_command(&mut self, c: Command) {
        match self.phase {
            Phase::Connected { .. } => self.command(c),
            Phase::Done => self.refuse(c, Error::Closed),
            _ => self.refuse(c, Error::NotConnected),
        }
    }

    /// The time returned by `poll_timeout` has come (early calls do nothing).
    pub(crate) fn on_timeout(&mut self, now: Now) {
        match self.phase {
            Phase::Dialing { attempt, deadline }
            | Phase::Handshake {
                attempt, deadline, ..
            } if now.at >= deadline => {
                self.actions.push_back(Action::Abort);
                let e = Error::ConnectTimeout {
                    url: self.cfg.url.clone(),
                    timeout: self.cfg.connect_timeout,
                };
                self.attempt_failed(attempt, e, now);
            }
            Phase::Connected { next_sync, prune } => {
                let mut next = (next_sync, prune);
                if now.at >= next_sync {
                    next.0 = now.at + self.cfg.sync_interval;
                    self.send_sync(now);
                }
                if now.at >= prune {
                    next.1 = now.at + PRUNE_EVERY;
                    self.pending.retain(|w| !w.is_abandoned());
                }
                self.phase = Phase::Connected {
                    next_sync: next.0,
                    prune: next.1,
                };
            }
            Phase::Backoff { attempt, until } if now.at >= until => self.dial(attempt, now),
            Phase::Closing { deadline } if now.at >= deadline => {
                self.actions.push_back(Action::Abort);
                self.finish();
            }
            _ => {}
        }
    }

    /// The client is being closed (`close()`, or every handle dropped).
    pub(crate) fn on_close(&mut self, now: Now) {
        match self.phase {
            Phase::Connected { .. } => {
                self.actions.push_back(Action::Close);
                self.shared.connected.store(false, Ordering::SeqCst);
                self.phase = Phase::Closing {
                    deadline: now.at + CLOSE_GRACE,
                };
            }
            Phase::Dialing { attempt, .. } | Phase::Handshake { attempt, .. } => {
                self.actions.push_back(Action::Abort);
                if attempt == 0 {
                    self.actions.push_back(Action::Opened(Err(Error::Closed)));
                    self.stop(false);
                } else {
                    self.finish();
                }
            }
            Phase::Backoff { .. } => self.finish(),
            Phase::Closing { .. } | Phase::Done => {}
        }
    }

    // -----------------------------------------------------------------------------------------
    // Sessions
    // -----------------------------------------------------------------------------------------

    fn dial(&mut self, attempt: u32, now: Now) {
        self.phase = Phase::Dialing {
            attempt,
            deadline: now.at + self.cfg.connect_timeout,
        };
        self.actions.push_back(Action::Dial);
    }

    fn handshake_frame(&mut self, attempt: u32, t1: u64, bytes: &Bytes, now: Now) {
        match decode_frame_bytes(bytes).map(|f| f.message) {
            Ok(Message::Welcome(w)) => self.welcomed(attempt, t1, &w, now),
            Ok(Message::Error(e)) => {
                self.actions.push_back(Action::Abort);
                let e = Error::Rejected {
                    code: e.code,
                    message: e.message.to_string(),
                };
                self.attempt_failed(attempt, e, now);
            }
            Ok(other) => tracing::debug!(message = other.name(), "ignored before WELCOME"),
            Err(e) => tracing::debug!(error = %e, "undecodable frame before WELCOME"),
        }
    }

    /// A session is up: record it, restore the subscriptions, then take commands.
    fn welcomed(&mut self, attempt: u32, t1: u64, w: &Welcome, now: Now) {
        {
            let mut st = self.shared.lock();
            // Params deleted while we were away must not survive in the cache; the connect
            // snapshot refills it.
            st.cache.clear();
            st.session = Some(w.session.to_string());
            st.router_name = Some(w.name.to_string());
            // WELCOME.time was taken between our HELLO and its arrival.
            st.clock = Clock::default();
            if w.time > 0 {
                st.clock.sample(t1, w.time, w.time, now.wall);
            }
        }
        self.shared.connected.store(true, Ordering::SeqCst);
        for (id, sub) in &self.subs {
            match sub.subscribe_frame(*id) {
                Ok(f) => self.out.push_back(f),
                Err(e) => tracing::warn!(error = %e, "cannot resubscribe"),
            }
        }
        self.send_sync(now);
        self.phase = Phase::Connected {
            next_sync: now.at + self.cfg.sync_interval,
            prune: now.at + PRUNE_EVERY,
        };
        let session = w.session.to_string();
        if attempt == 0 {
            self.shared.emit(ConnectionEvent::Connected { session });
            self.actions.push_back(Action::Opened(Ok(())));
        } else {
            tracing::info!(url = %self.cfg.url, %session, attempt, "reconnected");
            self.shared.emit(ConnectionEvent::Reconnected {
                session,
                attempts: attempt,
            });
        }
    }

    fn send_sync(&mut self, now: Now) {
        let sync = Message::Sync(ClockSync {
            t1: now.wall,
            t2: None,
            t3: None,
        });
        if let Ok(f) = encode(&sync) {
            self.out.push_back(f);
        }
    }

    /// An attempt to open a session failed: the first one fails `connect()`, later ones back off.
    fn attempt_failed(&mut self, attempt: u32, e: Error, now: Now) {
        self.out.clear();
        if attempt == 0 {
            // No client exists yet to hear of it: `connect()` returns the error.
            self.actions.push_back(Action::Opened(Err(e)));
            self.stop(false);
        } else {
            tracing::debug!(url = %self.cfg.url, error = %e, attempt, "reconnect failed");
            self.back_off(attempt, now);
        }
    }

    /// The session was lost: pending calls fail, then listeners hear of it, then reconnecting.
    fn lost(&mut self, reason: String, now: Now) {
        self.shared.connected.store(false, Ordering::SeqCst);
        self.out.clear();
        for w in self.pending.drain(..) {
            w.fail(Error::Disconnected);
        }
        tracing::info!(url = %self.cfg.url, %reason, "connection lost");
        self.shared.emit(ConnectionEvent::Disconnected { reason });
        if self.cfg.reconnect.enabled {
            self.back_off(0, now);
        } else {
            self.finish();
        }
    }

    /// Waits before the attempt after `failed` (0: none failed yet), or gives up.
    fn back_off(&mut self, failed: u32, now: Now) {
        let policy = &self.cfg.reconnect;
        if policy.max_attempts.is_some_and(|m| failed >= m) {
            tracing::warn!(url = %self.cfg.url, attempts = failed, "giving up reconnecting");
            return self.finish();
        }
        let delay = policy.delay_with(failed, &mut self.rng);
        let attempt = failed + 1;
        self.shared
            .emit(ConnectionEvent::Reconnecting { attempt, delay });
        self.phase = Phase::Backoff {
            attempt,
            until: now.at + delay,
        };
    }

    /// Finished for good: every call and stream ends, and listeners hear `Closed`.
    fn finish(&mut self) {
        self.stop(true);
    }

    fn stop(&mut self, announce: bool) {
        self.shared.connected.store(false, Ordering::SeqCst);
        self.out.clear();
        for w in self.pending.drain(..) {
            w.fail(Error::Disconnected);
        }
        // Dropping the subscriptions' senders ends their streams.
        self.subs.clear();
        self.shared.lock().fresh.clear();
        self.phase = Phase::Done;
        if announce {
            self.shared.emit(ConnectionEvent::Closed);
        }
        self.actions.push_back(Action::Done);
    }

    // -----------------------------------------------------------------------------------------
    // Commands
    // -----------------------------------------------------------------------------------------

    /// Answers a command that cannot be carried out now.
    fn refuse(&mut self, c: Command, e: Error) {
        match c {
            Command::Send { wait, .. } => {
                if let Some(w) = wait {
                    w.fail(e);
                }
            }
            // Kept, and sent when the connection is back (dropped at once when closed).
            Command::Subscribe {
                id,
                pattern,
                options,
                tx,
                dropped,
            } => {
                if !self.is_done() {
                    self.add_sub(id, pattern, options, tx, dropped);
                }
            }
            Command::Unsubscribe { id } => self.remove_sub(id),
            Command::Snapshot { tx, .. } => drop(tx.send(Err(e))),
            Command::Query { tx, .. } => drop(tx.send(Err(e))),
        }
    }

    /// Registers what a command waits for and queues its frames.
    fn command(&mut self, c: Command) {
        match c {
            Command::Send { frame, wait } => {
                if let Some(w) = wait {
                    self.pending.push_back(w);
                }
                self.out.push_back(frame);
            }
            Command::Subscribe {
                id,
                pattern,
                options,
                tx,
                dropped,
            } => {
                self.add_sub(id, pattern, options, tx, dropped);
                if let Some(Ok(f)) = self.subs.get(&id).map(|s| s.subscribe_frame(id)) {
                    self.out.push_back(f);
                }
            }
            Command::Unsubscribe { id } => {
                self.remove_sub(id);
                if let Ok(f) = encode(&Message::Unsubscribe(Unsubscribe { id })) {
                    self.out.push_back(f);
                }
            }
            Command::Snapshot { pattern, tx } => {
                let sub_id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
                let sub = encode(&Message::Subscribe(Subscribe {
                    id: sub_id,
                    pattern: pattern.as_str().into(),
                    types: clasp_proto::SignalTypes::of(&[SignalType::Param]),
                    options: Default::default(),
                }));
                let (Ok(sub), Ok(ping)) = (sub, encode(&Message::Ping)) else {
                    return;
                };
                // The router answers in order: the subscription's snapshot, then the PONG.
                self.out.push_back(sub);
                self.out.push_back(ping);
                self.pending.push_back(Waiter::Snapshot {
                    pattern,
                    sub_id,
                    params: BTreeMap::new(),
                    tx,
                });
            }
            Command::Query { pattern, tx } => {
                let query = encode(&Message::Query(clasp_proto::Query {
                    pattern: pattern.clone(),
                }));
                let (Ok(query), Ok(ping)) = (query, encode(&Message::Ping)) else {
                    return;
                };
                // Every RESULT comes before the PONG.
                self.out.push_back(query);
                self.out.push_back(ping);
                self.pending.push_back(Waiter::Query {
                    pattern,
                    signals: Vec::new(),
                    tx,
                });
            }
        }
    }

    fn add_sub(
        &mut self,
        id: u32,
        pattern: Pattern,
        options: SubscribeOptions,
        tx: mpsc::Sender<Update>,
        dropped: Arc<AtomicU64>,
    ) {
        let wants_params = options.types.is_empty() || options.types.contains(&SignalType::Param);
        if wants_params && options.unfiltered() {
            self.shared.lock().fresh.insert(id, pattern.clone());
        }
        self.subs.insert(
            id,
            Sub {
                pattern,
                options,
                tx,
                dropped,
                last: HashMap::new(),
            },
        );
    }

    fn remove_sub(&mut self, id: u32) {
        self.subs.remove(&id);
        self.shared.lock().fresh.remove(&id);
    }

    /// Queues a frame made while handling input (a PONG, an UNSUBSCRIBE).
    pub(super) fn reply(&mut self, frame: Bytes) {
        self.out.push_back(frame);
    }
}
