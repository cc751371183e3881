//! An adapter session's queue of typed deliveries (see [`crate::core::adapter`]).
//!
//! The core's output for an adapter session (updates tagged with the adapter's subscription
//! ids, replies as messages) is pushed here without blocking, after the core's lock is
//! released; the adapter's task waits on [`Inbox::ready`] and takes everything with
//! [`Inbox::drain`]. The queue is bounded like an [`Outbox`](super::outbox::Outbox), with the
//! same limits: stream updates past `max_streams` are dropped (and counted); past
//! `max_events` deliveries or `max_bytes` (counted as the updates' frame sizes) the queue is
//! replaced by one ERROR 503 saying why and the session is closed, so an adapter that stops
//! draining cannot grow the router's memory.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use clasp_proto::{ErrorCode, ErrorMessage, Message, SignalType};
use parking_lot::Mutex;
use tokio::sync::Notify;

use super::outbox::{OutboxCounters, OutboxLimits};
use crate::core::CloseReason;
use crate::core::adapter::Delivery;

/// The delivery queue of one adapter session. Cheap to clone: clones share the queue.
#[derive(Clone)]
pub struct Inbox {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    /// What the adapter speaks and who its client is, for session lists.
    peer: std::sync::OnceLock<(&'static str, Option<String>)>,
    limits: OutboxLimits,
    counters: Arc<OutboxCounters>,
    /// Signalled when deliveries arrive.
    notify: Notify,
    /// Signalled when a close is requested.
    closed: Notify,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Delivery>,
    /// Bytes counted for what is queued.
    bytes: usize,
    /// Stream updates queued.
    streams: usize,
    close: Option<CloseReason>,
}

impl std::fmt::Debug for Inbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.inner.state.lock();
        f.debug_struct("Inbox")
            .field("queued", &s.queue.len())
            .field("bytes", &s.bytes)
            .field("close", &s.close)
            .finish()
    }
}

/// What a delivery counts for: its frame size, or a small constant for a reply.
fn cost(d: &Delivery) -> (usize, bool) {
    match d {
        Delivery::Update(u) => {
            let stream =
                matches!(&*u.message, Message::Publish(p) if p.signal == SignalType::Stream);
            (u.size, stream)
        }
        Delivery::Snapshot { params, .. } => (64 * params.len().max(1), false),
        Delivery::Reply(_) => (64, false),
    }
}

impl Inbox {
    /// An empty queue with `limits`, counting into `counters`.
    pub fn new(limits: OutboxLimits, counters: Arc<OutboxCounters>) -> Self {
        Inbox {
            inner: Arc::new(Inner {
                state: Mutex::new(State::default()),
                peer: std::sync::OnceLock::new(),
                limits,
                counters,
                notify: Notify::new(),
                closed: Notify::new(),
            }),
        }
    }

    /// Records what the adapter speaks (`mqtt`, `osc`, …) and its client's address, for
    /// session lists.
    pub fn set_peer(&self, transport: &'static str, peer: Option<String>) {
        let _ = self.inner.peer.set((transport, peer));
    }

    /// What [`Inbox::set_peer`] recorded.
    pub fn peer(&self) -> Option<(&'static str, Option<&str>)> {
        self.inner.peer.get().map(|(t, p)| (*t, p.as_deref()))
    }

    /// Queues `deliveries` in order (leaving the vector empty) and wakes the adapter.
    pub fn push_all(&self, deliveries: &mut Vec<Delivery>) {
        if self.stage_all(deliveries) {
            self.wake();
        }
    }

    /// Wakes the adapter (after [`Inbox::stage_all`]).
    pub fn wake(&self) {
        self.inner.notify.notify_one();
    }

    /// Queues `deliveries` like [`Inbox::push_all`] without waking the adapter; `true` if
    /// [`Inbox::wake`] must be called (a caller waking many does it in one go, elsewhere).
    pub fn stage_all(&self, deliveries: &mut Vec<Delivery>) -> bool {
        let limits = self.inner.limits;
        let counters = &self.inner.counters;
        let mut s = self.inner.state.lock();
        if s.close.is_some() {
            deliveries.clear();
            return false;
        }
        // Only a queue that was empty needs waking its adapter: otherwise the wake-up of the
        // delivery that made it non-empty is still due (the adapter drains everything).
        let was_empty = s.queue.is_empty();
        for d in deliveries.drain(..) {
            let (bytes, stream) = cost(&d);
            if stream && s.streams >= limits.max_streams {
                counters.streams_dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            if s.queue.len() >= limits.max_events || s.bytes + bytes > limits.max_bytes {
                self.overflow(&mut s);
                break;
            }
            s.bytes += bytes;
            s.streams += usize::from(stream);
            s.queue.push_back(d);
        }
        was_empty || s.close.is_some()
    }

    /// The adapter does not take its deliveries fast enough: they are replaced by one ERROR
    /// saying so, and the session closes.
    fn overflow(&self, s: &mut State) {
        self.inner
            .counters
            .slow_disconnects
            .fetch_add(1, Ordering::Relaxed);
        let text = format!(
            "disconnecting: this adapter session is not taking its deliveries fast enough ({} queued, {} bytes)",
            s.queue.len(),
            s.bytes
        );
        s.queue.clear();
        s.bytes = 0;
        s.streams = 0;
        s.queue
            .push_back(Delivery::Reply(Box::new(Message::Error(ErrorMessage {
                code: ErrorCode::Overloaded,
                message: text.into(),
                address: None,
                correlation_id: None,
            }))));
        s.close = Some(CloseReason::Shutdown);
        self.inner.closed.notify_waiters();
    }

    /// Moves everything queued into `into`, in order, and returns the close request, if any
    /// (the deliveries before it are still to be handled).
    pub fn drain(&self, into: &mut Vec<Delivery>) -> Option<CloseReason> {
        let mut s = self.inner.state.lock();
        into.extend(s.queue.drain(..));
        s.bytes = 0;
        s.streams = 0;
        s.close
    }

    /// Asks the adapter to end the session (the router is closing it).
    pub fn request_close(&self, reason: CloseReason) {
        let mut s = self.inner.state.lock();
        if s.close.is_none() {
            s.close = Some(reason);
        }
        drop(s);
        self.inner.closed.notify_waiters();
        self.inner.notify.notify_one();
    }

    /// Whether a close has been requested.
    pub fn closing(&self) -> Option<CloseReason> {
        self.inner.state.lock().close
    }

    /// Resolves once a close has been requested (an adapter that stopped draining its
    /// deliveries still learns that its session is over).
    pub async fn closed(&self) {
        loop {
            let notified = self.inner.closed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.closing().is_some() {
                return;
            }
            notified.await;
        }
    }

    /// Waits until deliveries may be queued (or a close requested). May return spuriously:
    /// drain and look.
    pub async fn ready(&self) {
        self.inner.notify.notified().await;
    }
}
