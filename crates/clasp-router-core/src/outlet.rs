//! How the core hands frames to a connection.
//!
//! The core never blocks and never touches a socket: it gives each outbound frame to the
//! connection's [`Outlet`], tagged with its kind so the transport can apply the back-pressure
//! policy of that kind when the peer reads slowly:
//!
//! * [`Outgoing::Param`]: state (a SET frame). May be coalesced to the latest frame per address
//!   (intermediate values are skipped, the final state is never lost).
//! * [`Outgoing::Stream`]: samples. The oldest may be dropped (and counted).
//! * [`Outgoing::Event`] and [`Outgoing::Control`]: never dropped silently. Past a hard limit the
//!   transport sends an ERROR and disconnects, and the client resynchronises on reconnect.
//! * [`Outgoing::Snapshot`]: the connect snapshot, sent once per connection; it counts toward
//!   the queue's size but is never refused for it (it is bounded by the param store).

use std::sync::Arc;

use bytes::Bytes;

/// One frame for a connection, with its back-pressure class.
#[derive(Debug, Clone)]
pub enum Outgoing {
    /// Replies and session traffic: WELCOME, SNAPSHOT, ACK, ERROR, PONG, SYNC, RESULT.
    Control(Bytes),
    /// A forwarded event, gesture, timeline or P2P signal.
    Event(Bytes),
    /// A forwarded stream sample.
    Stream(Bytes),
    /// A param update: an encoded SET frame. Its address is the coalescing key.
    Param(Bytes),
    /// A frame of the state snapshot that follows WELCOME.
    Snapshot(Bytes),
}

impl Outgoing {
    /// The encoded frame.
    pub fn frame(&self) -> &Bytes {
        match self {
            Outgoing::Control(b)
            | Outgoing::Event(b)
            | Outgoing::Stream(b)
            | Outgoing::Param(b)
            | Outgoing::Snapshot(b) => b,
        }
    }
}

/// Why the core asks a transport to close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The handshake failed (an ERROR was sent first).
    Handshake,
    /// The router is full (an ERROR was sent first).
    Full,
    /// The router is shutting down.
    Shutdown,
}

/// A connection's sink for outbound frames. Implementations must not block.
pub trait Outlet: Send + Sync {
    /// Queues a frame.
    fn send(&self, msg: Outgoing);
    /// Queues several frames in order, leaving `msgs` empty (its capacity is kept).
    fn send_batch(&self, msgs: &mut Vec<Outgoing>) {
        for m in msgs.drain(..) {
            self.send(m);
        }
    }
    /// Like [`Outlet::send_batch`], for one of few recipients: the transport may write the
    /// frames straight away, from the caller's task, instead of waking a writer.
    fn send_batch_inline(&self, msgs: &mut Vec<Outgoing>) {
        self.send_batch(msgs);
    }
    /// Queues frames without waking whoever writes them; `true` means [`Outlet::wake`] must be
    /// called afterwards (a caller waking many outlets can then do it in one go, elsewhere).
    fn stage_batch(&self, msgs: &mut Vec<Outgoing>) -> bool {
        self.send_batch(msgs);
        false
    }
    /// Wakes the writer after [`Outlet::stage_batch`].
    fn wake(&self) {}
    /// Asks the transport to close once what is queued has been written.
    fn close(&self, reason: CloseReason);
}

/// An outlet that records everything, for tests and tools.
#[derive(Debug, Default, Clone)]
pub struct Recorder {
    inner: Arc<parking_lot_free::Mutex<RecorderInner>>,
}

#[derive(Debug, Default)]
struct RecorderInner {
    sent: Vec<Outgoing>,
    closed: Option<CloseReason>,
}

impl Recorder {
    /// A new, empty recorder.
    pub fn new() -> Self {
        Recorder::default()
    }

    /// Takes the frames recorded so far.
    pub fn take(&self) -> Vec<Outgoing> {
        std::mem::take(&mut self.inner.lock().sent)
    }

    /// Whether and why the core closed this connection.
    pub fn closed(&self) -> Option<CloseReason> {
        self.inner.lock().closed
    }
}

impl Outlet for Recorder {
    fn send(&self, msg: Outgoing) {
        self.inner.lock().sent.push(msg);
    }

    fn close(&self, reason: CloseReason) {
        self.inner.lock().closed = Some(reason);
    }
}

/// `std::sync::Mutex` with poisoning ignored (a recorder holds plain data).
mod parking_lot_free {
    #[derive(Debug, Default)]
    pub(super) struct Mutex<T>(std::sync::Mutex<T>);

    impl<T> Mutex<T> {
        pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, T> {
            self.0.lock().unwrap_or_else(|e| e.into_inner())
        }
    }
}
