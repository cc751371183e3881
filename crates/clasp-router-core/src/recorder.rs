//! A connection handle that records what the core produced for it, for tests and tools that
//! drive the core without sockets.

use std::sync::{Arc, Mutex, MutexGuard};

use crate::adapter::Delivery;
use crate::{CloseReason, Outgoing, Output, Router, Transmit};

/// Frames and the close request of one connection, filled by [`Router::deliver_recorded`].
/// Clones share what they record.
#[derive(Debug, Default, Clone)]
pub struct Recorder {
    inner: Arc<Mutex<Recorded>>,
}

#[derive(Debug, Default)]
struct Recorded {
    sent: Vec<Outgoing>,
    delivered: Vec<Delivery>,
    closed: Option<CloseReason>,
}

impl Recorder {
    /// A new, empty recorder.
    pub fn new() -> Self {
        Recorder::default()
    }

    fn lock(&self) -> MutexGuard<'_, Recorded> {
        // A recorder holds plain data: a panic elsewhere leaves it usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes the frames recorded so far.
    pub fn take(&self) -> Vec<Outgoing> {
        std::mem::take(&mut self.lock().sent)
    }

    /// Takes what was delivered so far to an adapter session.
    pub fn take_deliveries(&self) -> Vec<Delivery> {
        std::mem::take(&mut self.lock().delivered)
    }

    /// Whether and why the core asked to close this connection.
    pub fn closed(&self) -> Option<CloseReason> {
        self.lock().closed
    }

    fn record(&self, transmit: Transmit) {
        let mut r = self.lock();
        match transmit {
            Transmit::Frames(frames) => r.sent.extend(frames),
            Transmit::Deliver(d) => r.delivered.extend(d),
            Transmit::Close(reason) => r.closed = Some(reason),
        }
    }
}

impl Router<Recorder> {
    /// Hands everything produced so far to the recorders it is for.
    pub fn deliver_recorded(&mut self) {
        while let Some(Output { to, transmit, .. }) = self.poll_transmit() {
            to.record(transmit);
        }
    }
}
