//! ACKs for QoS Commit writes wait until the write is on disk.
//!
//! With durable ACKs on (a persistent store behind the router), the ACK of a SET or BUNDLE sent
//! with QoS Commit is held until the shell reports, with [`Router::persisted`], that the store
//! holds every change up to the write's epoch ([`ParamStore::epoch`]). The broadcast to
//! subscribers is not held, only the ACK. The shell's persister writes as soon as a Commit
//! write waits ([`Router::poll_event`]), so Commit writes that arrive together share one
//! transaction (group commit). A write that cannot be made durable within [`COMMIT_TIMEOUT_US`]
//! gets ERROR 500 instead of an ACK: it was applied, and a crash may lose it.

use std::collections::VecDeque;

use super::*;

/// Longest a Commit ACK waits for the disk before the writer is told it is not durable.
pub(super) const COMMIT_TIMEOUT_US: u64 = 10_000_000;

/// An ACK waiting for its write to reach the disk.
pub(super) struct Waiting {
    epoch: u64,
    conn: ConnId,
    ack: Bytes,
    address: Option<Str>,
    since: u64,
}

/// The Commit ACKs in waiting, oldest first (epochs never decrease along the queue).
#[derive(Default)]
pub(super) struct Commits {
    waiting: VecDeque<Waiting>,
    /// A Commit write waits: the shell should write now rather than at its next pass.
    wake: bool,
    /// Whether Commit ACKs wait for the disk at all.
    pub(super) durable: bool,
}

impl<H: Clone> Router<H> {
    /// Makes the ACKs of QoS Commit writes wait until [`Router::persisted`] says they are on
    /// disk (for a shell with a persistent store; without one, Commit is acknowledged like
    /// Confirm).
    pub fn set_durable_acks(&mut self, on: bool) {
        self.commits.durable = on;
    }

    /// The next thing the shell should act on beyond connections: so far only
    /// [`Event::CommitsWaiting`] (a Commit write waits for the disk since this was last asked,
    /// so the shell's persister should write at once).
    pub fn poll_event(&mut self) -> Option<Event> {
        std::mem::take(&mut self.commits.wake).then_some(Event::CommitsWaiting)
    }

    /// Commit ACKs waiting for the disk.
    pub fn commits_waiting(&self) -> usize {
        self.commits.waiting.len()
    }

    /// The store holds every change up to `epoch` (read with [`ParamStore::epoch`] when the
    /// changes were taken): the ACKs of the Commit writes among them go out.
    pub fn persisted(&mut self, epoch: u64) {
        while self
            .commits
            .waiting
            .front()
            .is_some_and(|w| w.epoch <= epoch)
        {
            if let Some(w) = self.commits.waiting.pop_front() {
                self.send(
                    w.conn,
                    Outgoing::Control(w.ack),
                    clasp_proto::message::code::ACK,
                );
            }
        }
        self.flush();
    }

    /// Answers a write with `ack`: at once, or, for QoS Commit with durable ACKs, once the
    /// write is on disk.
    pub(super) fn ack_write(&mut self, conn: ConnId, qos: Qos, ack: Ack, now: Now) {
        if qos != Qos::Commit || !self.commits.durable {
            self.reply(conn, &Message::Ack(ack));
            return;
        }
        let address = ack.address.clone();
        match encode(&Message::Ack(ack)) {
            Ok(frame) => {
                self.commits.waiting.push_back(Waiting {
                    epoch: self.store.epoch(),
                    conn,
                    ack: frame,
                    address,
                    since: now.mono,
                });
                self.commits.wake = true;
            }
            Err(e) => self.refuse(conn, Refusal::Reply(e), None),
        }
    }

    /// Commit ACKs that waited too long become ERROR 500 (run by the sweep).
    pub(super) fn expire_commits(&mut self, now: Now) {
        while self
            .commits
            .waiting
            .front()
            .is_some_and(|w| now.mono.saturating_sub(w.since) >= COMMIT_TIMEOUT_US)
        {
            if let Some(w) = self.commits.waiting.pop_front() {
                let r = Refusal::NotDurable {
                    secs: COMMIT_TIMEOUT_US / 1_000_000,
                };
                self.refuse(w.conn, r, w.address);
            }
        }
    }

    /// Forgets the ACKs waiting for `conn` (it closed).
    pub(super) fn drop_commits(&mut self, conn: ConnId) {
        self.commits.waiting.retain(|w| w.conn != conn);
    }
}
