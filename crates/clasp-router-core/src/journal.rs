//! Time: the journal entries the core produces, the `history` SUBSCRIBE option and REPLAY.
//!
//! Every broadcast (a SET with its new revision, a PUBLISH as forwarded) of the kinds the
//! journal keeps is numbered and handed to the shell ([`Router::take_journal`]), which appends
//! it to its journal. P2P signalling (`/clasp/p2p/…`) is never journaled.
//!
//! **History.** With a journal, a SUBSCRIBE asking for history becomes a
//! [`JournalRequest::History`] for the shell, answered with [`Router::history_ready`]; until
//! then everything for that connection is held (the snapshot, live updates, replies), so the
//! history comes first and nothing is lost or doubled between the history (entries up to the
//! request's sequence) and what follows (entries after it). Without a journal, the last few
//! broadcasts of each address kept in memory ([`crate::history`]) are sent at once.
//!
//! **REPLAY** becomes a [`JournalRequest::Replay`]; the shell answers a slice at a time with
//! [`Router::replay_ready`], pacing itself by the connection's queue.

use super::*;
use crate::history::{HistoryPicker, Past, Ring};
use crate::replay::ReplayRequest;

/// The longest a connection's output is held for a history.
const HOLD_US: u64 = 10_000_000;
/// The most bytes (and frames) held for a history before the history is given up: with the
/// history itself (at most [`crate::history::MAX_HISTORY_BYTES`]) well within what a
/// connection's queue takes at once.
const HOLD_BYTES: usize = 4 << 20;
const HOLD_FRAMES: usize = 16_384;
/// Histories one session waits for at once.
pub(crate) const MAX_HISTORIES: usize = 4;
/// The most entries a history holds (more can be had with REPLAY, a slice at a time).
pub const MAX_HISTORY: u32 = 10_000;

/// One broadcast for the journal.
#[derive(Debug, Clone)]
pub struct JournalEntry {
    /// Its number: one more than the previous entry's.
    pub seq: u64,
    /// Router wall-clock µs, never less than the previous entry's.
    pub time: u64,
    /// The signal kind.
    pub signal: SignalType,
    /// The address.
    pub address: Arc<str>,
    /// The frame as broadcast.
    pub frame: Bytes,
}

/// Work for the shell's journal, in the order it must be done (after appending every entry
/// taken before it).
#[derive(Debug)]
pub enum JournalRequest<H> {
    /// A new subscription's history: offer the journal's entries up to `upto`, newest first,
    /// to `picker`, then give the result to [`Router::history_ready`].
    History {
        /// The connection.
        conn: ConnId,
        /// Its handle.
        to: H,
        /// The hold it is for (give it back to [`Router::history_ready`]).
        hold: u64,
        /// The newest entry the history may hold.
        upto: u64,
        /// Chooses the entries.
        picker: HistoryPicker,
    },
    /// A REPLAY: send the matching entries up to `upto`, oldest first, through
    /// [`Router::replay_ready`].
    Replay(ReplayRequest<H>),
}

/// A broadcast frame that keeps nothing else alive: a forwarded PUBLISH may be a slice of a
/// larger read buffer, so it is copied; a SET's broadcast frame is its own.
pub(crate) fn owned_frame(signal: SignalType, frame: &Bytes) -> Bytes {
    if signal == SignalType::Param {
        frame.clone()
    } else {
        Bytes::copy_from_slice(frame)
    }
}

/// The signal kind of a journal entry's kind bit (the SUBSCRIBE mask bit).
pub fn signal_of_bit(bit: u8) -> Option<SignalType> {
    SignalType::ALL.into_iter().find(|s| s.mask_bit() == bit)
}

/// What the core keeps for time: the journal's numbering and what waits for the shell, the
/// recent values (no journal), and connections held for a history.
pub(crate) struct Log<H> {
    pub(crate) on: bool,
    kinds: SignalTypes,
    pub(crate) next_seq: u64,
    last_time: u64,
    pending: Vec<JournalEntry>,
    pub(crate) requests: std::collections::VecDeque<JournalRequest<H>>,
    pub(crate) ring: Ring,
    holds: FxHashMap<ConnId, Hold>,
    /// REPLAYs being answered, per connection (see `replay.rs`).
    pub(crate) replays: FxHashMap<ConnId, usize>,
    next_hold: u64,
}

/// A connection's output held until its histories arrive.
struct Hold {
    id: u64,
    waiting: usize,
    /// Monotonic µs after which it is given up.
    deadline: u64,
    ready: Vec<Past>,
    held: Vec<Transmit>,
    bytes: usize,
    frames: usize,
}

impl<H> Log<H> {
    pub(crate) fn new(config: &RouterConfig) -> Self {
        Log {
            on: false,
            kinds: config.journal_kinds,
            next_seq: 1,
            last_time: 0,
            pending: Vec::new(),
            requests: Default::default(),
            ring: Ring::new(config.history_depth, config.history_bytes),
            holds: FxHashMap::default(),
            replays: FxHashMap::default(),
            next_hold: 1,
        }
    }

    /// Whether a broadcast of `signal` at `address` is kept.
    #[inline]
    pub(crate) fn wants(&self, signal: SignalType, address: &str) -> bool {
        (self.on || self.ring.enabled())
            && self.kinds.accepts(signal)
            && !address.starts_with("/clasp/p2p/")
    }

    pub(crate) fn held(&self, conn: ConnId) -> bool {
        !self.holds.is_empty() && self.holds.contains_key(&conn)
    }

    /// Histories `conn` waits for.
    pub(crate) fn waiting(&self, conn: ConnId) -> usize {
        self.holds.get(&conn).map_or(0, |h| h.waiting)
    }

    /// Holds `t` if `conn` is held; gives it back otherwise. `true` once the hold is too big.
    pub(crate) fn hold(&mut self, conn: ConnId, t: Transmit) -> Result<bool, Transmit> {
        let Some(h) = self.holds.get_mut(&conn) else {
            return Err(t);
        };
        let (bytes, frames) = match &t {
            Transmit::Frames(f) => (f.iter().map(|o| o.frame().len()).sum(), f.len()),
            Transmit::Deliver(d) => (64 * d.len(), d.len()),
            Transmit::Close(_) => (0, 0),
        };
        h.bytes += bytes;
        h.frames += frames;
        h.held.push(t);
        Ok(h.bytes > HOLD_BYTES || h.frames > HOLD_FRAMES)
    }
}

impl<H: Clone> Router<H> {
    /// Starts journaling: the shell has a journal whose last entry is `last_seq` at `last_time`
    /// (0 for an empty one). The recent values kept in memory are no longer needed.
    pub fn start_journal(&mut self, last_seq: u64, last_time: u64) {
        let j = &mut self.journal;
        j.on = true;
        j.next_seq = last_seq.saturating_add(1);
        j.last_time = last_time;
        j.ring = Ring::new(0, 0);
    }

    /// Whether `conn`'s output is held for a history now.
    pub fn history_held(&self, conn: ConnId) -> bool {
        self.journal.held(conn)
    }

    /// Whether a journal is kept.
    pub fn journal_on(&self) -> bool {
        self.journal.on
    }

    /// Recent values kept in memory for history (without a journal): entries and bytes.
    pub fn history_usage(&self) -> (usize, usize) {
        self.journal.ring.usage()
    }

    /// Takes the entries journaled since the last call, in order.
    pub fn take_journal(&mut self) -> Vec<JournalEntry> {
        std::mem::take(&mut self.journal.pending)
    }

    /// The next journal request, after the entries taken before it.
    pub fn poll_journal_request(&mut self) -> Option<JournalRequest<H>> {
        self.journal.requests.pop_front()
    }

    /// Records a broadcast (called by the fan-out for the kinds kept).
    pub(super) fn journal_record(
        &mut self,
        signal: SignalType,
        address: &Arc<str>,
        frame: &Bytes,
        now: Now,
    ) {
        let j = &mut self.journal;
        let seq = j.next_seq;
        j.next_seq += 1;
        if j.on {
            j.last_time = j.last_time.max(now.wall);
            let frame = owned_frame(signal, frame);
            j.pending.push(JournalEntry {
                seq,
                time: j.last_time,
                signal,
                address: address.clone(),
                frame,
            });
            self.metrics.journaled += 1;
        } else {
            j.ring.push(seq, signal, address, frame);
        }
    }

    /// Starts a new subscription's history (the subscription is in place, its snapshot not
    /// yet staged).
    pub(super) fn start_history(
        &mut self,
        conn: ConnId,
        pattern: &Pattern,
        types: SignalTypes,
        count: u32,
    ) {
        let reader = self
            .session(conn)
            .and_then(|s| s.grant.as_ref().map(|g| g.scopes.clone()));
        let count = count.min(MAX_HISTORY) as usize;
        let picker = HistoryPicker::new(pattern.clone(), types, count, reader);
        self.metrics.history_requests += 1;
        if !self.journal.on {
            let mut picker = picker;
            self.journal.ring.pick(&mut picker);
            for p in picker.finish() {
                self.send_history(conn, p);
            }
            return;
        }
        let Some(to) = self.conns.get(&conn).map(|c| c.handle.clone()) else {
            return;
        };
        // What was staged before goes out before the hold.
        self.flush();
        let next = self.journal.next_hold;
        let deadline = self.last_now.mono + HOLD_US;
        let j = &mut self.journal;
        let h = j.holds.entry(conn).or_insert_with(|| Hold {
            id: next,
            waiting: 0,
            deadline,
            ready: Vec::new(),
            held: Vec::new(),
            bytes: 0,
            frames: 0,
        });
        if h.id == next {
            j.next_hold += 1;
        }
        h.waiting += 1;
        h.deadline = deadline;
        let hold = h.id;
        self.timers
            .push(Reverse((deadline, Timer::History(conn, hold))));
        let upto = self.journal.next_seq - 1;
        self.journal.requests.push_back(JournalRequest::History {
            conn,
            to,
            hold,
            upto,
            picker,
        });
    }

    fn send_history(&mut self, conn: ConnId, p: Past) {
        self.metrics.history_sent += 1;
        self.send_past(conn, p);
    }

    /// Sends an earlier broadcast again, if the session may read it now (its token's scopes
    /// may have narrowed since it asked). It goes as an event would (never coalesced or
    /// dropped by a slow connection's queue): a history of one param is a series of values,
    /// not a state whose latest value is enough.
    pub(super) fn send_past(&mut self, conn: ConnId, p: Past) {
        if !self.permits(conn, Action::Read, &p.address) {
            return;
        }
        let code = match p.signal {
            SignalType::Param => metrics::OUT_SET,
            _ => metrics::OUT_PUBLISH,
        };
        self.send(conn, Outgoing::Event(p.frame), code);
    }

    /// The history of a subscription of `conn` (oldest first), as chosen by the picker of the
    /// [`JournalRequest::History`] for `hold`; once every history the connection waits for is
    /// here, they are sent, then everything held meanwhile. A history for a hold that was
    /// given up meanwhile is dropped.
    pub fn history_ready(&mut self, conn: ConnId, hold: u64, history: Vec<Past>, now: Now) {
        self.last_now = now;
        let Some(h) = self.journal.holds.get_mut(&conn).filter(|h| h.id == hold) else {
            return;
        };
        h.ready.extend(history);
        h.waiting = h.waiting.saturating_sub(1);
        if h.waiting == 0 {
            self.release_hold(conn, None);
        }
        self.flush();
    }

    /// Sends what a hold kept: the histories that arrived, then what was held (then `error`).
    pub(super) fn release_hold(&mut self, conn: ConnId, error: Option<Refusal>) {
        let Some(mut h) = self.journal.holds.remove(&conn) else {
            return;
        };
        // What is staged for the connection now came after what was held: it joins the hold.
        if let Some(c) = self.conns.get_mut(&conn) {
            if !c.staged.is_empty() {
                h.held.push(Transmit::Frames(std::mem::take(&mut c.staged)));
            }
            if !c.typed.is_empty() {
                h.held.push(Transmit::Deliver(std::mem::take(&mut c.typed)));
            }
        }
        for p in h.ready {
            self.send_history(conn, p);
        }
        self.flush();
        if let Some(c) = self.conns.get(&conn) {
            let to = c.handle.clone();
            for transmit in h.held {
                self.output.push_back(Output {
                    conn,
                    to: to.clone(),
                    transmit,
                });
            }
        }
        if let Some(r) = error {
            self.metrics.history_late += 1;
            self.refuse(conn, r, None);
        }
    }

    /// A hold's time may have run out (its deadline moves on with each history asked for).
    pub(super) fn history_deadline(&mut self, conn: ConnId, id: u64) {
        let now = self.last_now.mono;
        if self
            .journal
            .holds
            .get(&conn)
            .is_some_and(|h| h.id == id && now >= h.deadline)
        {
            let r = Refusal::HistoryLate("the history did not arrive within 10 s".into());
            self.release_hold(conn, Some(r));
        }
    }

    /// Forgets what time kept for a connection that ended.
    pub(super) fn journal_close(&mut self, conn: ConnId) {
        self.journal.holds.remove(&conn);
        self.journal.replays.remove(&conn);
    }
}
