//! A connection's outbound queue, with per-kind back-pressure.
//!
//! The core pushes frames without blocking; one writer task per connection drains everything
//! queued and writes it with a single flush. The queue is bounded in frames and in bytes. When
//! the peer reads slowly and the queue grows past a soft limit (of either):
//!
//! * **params** coalesce: a newer frame for an address still waiting in the queue replaces it in
//!   place, so the subscriber skips intermediate values but always ends with the latest state;
//! * **streams** drop the oldest queued sample beyond their own limit (or the soft byte limit),
//!   counting every drop;
//! * **events, control frames, and params that cannot coalesce** are never dropped: past the
//!   hard limit (frames or bytes) the queue is replaced by one ERROR 503 explaining why, and the
//!   connection is closed; the client resynchronises from the connect snapshot when it
//!   reconnects. The connect snapshot counts toward the bytes but is never refused for them.
//!
//! The gauges an outbox raises in the shared [`OutboxCounters`] (backlogged, congested, queued
//! bytes) are lowered when it drains or when it is dropped, so a client that leaves with a full
//! queue leaves nothing behind.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use clasp_proto::{ErrorCode, ErrorMessage, Message};
use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::core::{CloseReason, Outgoing};

/// Queue limits of one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxLimits {
    /// Queue length above which params coalesce and streams are capped.
    pub soft: usize,
    /// Most stream frames kept queued; older ones are dropped.
    pub max_streams: usize,
    /// Most event and control frames kept queued before the connection is closed.
    pub max_events: usize,
    /// Queued bytes above which params coalesce and streams are dropped.
    pub soft_bytes: usize,
    /// Most bytes kept queued (the connect snapshot aside) before the connection is closed.
    pub max_bytes: usize,
}

impl Default for OutboxLimits {
    fn default() -> Self {
        OutboxLimits {
            soft: 4096,
            max_streams: 4096,
            max_events: 65_536,
            soft_bytes: 4 << 20,
            max_bytes: 16 << 20,
        }
    }
}

/// Counters shared by every outbox, for `/metrics`.
#[derive(Debug, Default)]
pub struct OutboxCounters {
    /// Param frames replaced by a newer value before being written.
    pub params_coalesced: AtomicU64,
    /// Stream frames dropped because the subscriber was too slow.
    pub streams_dropped: AtomicU64,
    /// Connections closed because their event queue passed the hard limit.
    pub slow_disconnects: AtomicU64,
    /// Outboxes currently above their soft limit.
    pub congested: AtomicU64,
    /// Outboxes currently holding a quarter of their soft limit or more: readers then let the
    /// writers catch up before reading more (see `ws::read_loop`).
    pub backlogged: AtomicU64,
    /// Signalled when an outbox stops being backlogged.
    pub relief: Notify,
    /// Bytes queued in every outbox together.
    pub queued_bytes: AtomicU64,
    /// Times a flat-out publisher waited for filling queues (see [`OutboxCounters::filling`]).
    pub publisher_waits: AtomicU64,
}

impl OutboxCounters {
    /// Whether some subscriber's queue is filling but not yet congested: a flat-out publisher
    /// should then wait for the writers (a congested queue coalesces, so it holds nobody up).
    pub fn filling(&self) -> bool {
        self.backlogged.load(Ordering::Relaxed) > self.congested.load(Ordering::Relaxed)
    }
}

enum Slot {
    Frame(Bytes),
    Param(Bytes),
    Dropped,
}

impl Slot {
    fn len(&self) -> usize {
        match self {
            Slot::Frame(b) | Slot::Param(b) => b.len(),
            Slot::Dropped => 0,
        }
    }
}

#[derive(Default)]
struct State {
    queue: VecDeque<Slot>,
    /// Sequence number of `queue[0]`.
    head_seq: u64,
    /// Address (a slice of the SET frame) → sequence number of its queued param frame; kept
    /// only while congested.
    params: HashMap<Bytes, u64>,
    /// Sequence numbers of the queued stream frames, oldest first.
    streams: VecDeque<u64>,
    events: usize,
    /// Bytes of the frames in `queue`.
    bytes: usize,
    /// The part of `bytes` counted in [`OutboxCounters::queued_bytes`] (brought up to date once
    /// per batch, not per frame: the counter is shared by every connection).
    reported: usize,
    congested: bool,
    backlogged: bool,
    close: Option<CloseReason>,
}

/// The outbound queue of one connection. Cheap to share: the core holds it as its
/// connection handle (see [`super::Core`]), the writer task drains it.
#[derive(Clone)]
pub struct Outbox {
    inner: Arc<Inner>,
}

/// Writes an outbox's frames from the caller's task when the socket is free.
pub trait InlineWrite: Send + Sync {
    /// Tries to write everything queued now, without waiting; `false` if the writer task must
    /// do it (or finish it).
    fn try_write(&self, outbox: &Outbox) -> bool;
}

struct Inner {
    inline: std::sync::OnceLock<std::sync::Weak<dyn InlineWrite>>,
    /// Where the connection comes from and over what, for session lists.
    peer: std::sync::OnceLock<(&'static str, String)>,
    state: Mutex<State>,
    notify: Notify,
    closed: Notify,
    limits: OutboxLimits,
    counters: Arc<OutboxCounters>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // A connection that ends with frames queued must not leave the gauges raised: a
        // backlogged gauge left behind would slow every publisher until restart.
        let s = self.state.get_mut();
        release(s, &self.counters);
    }
}

/// Lowers the shared gauges `s` raised and forgets its queue accounting.
fn release(s: &mut State, counters: &OutboxCounters) {
    if s.reported > 0 {
        counters
            .queued_bytes
            .fetch_sub(s.reported as u64, Ordering::Relaxed);
        s.reported = 0;
    }
    s.bytes = 0;
    if s.congested {
        s.congested = false;
        counters.congested.fetch_sub(1, Ordering::Relaxed);
    }
    if s.backlogged {
        s.backlogged = false;
        counters.backlogged.fetch_sub(1, Ordering::Relaxed);
        counters.relief.notify_waiters();
    }
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.inner.state.lock();
        f.debug_struct("Outbox")
            .field("queued", &s.queue.len())
            .field("close", &s.close)
            .finish()
    }
}

/// What the writer takes from the queue in one go.
#[derive(Debug, Default)]
pub struct Drained {
    /// Frames to write, in order.
    pub frames: Vec<Bytes>,
    /// Close after writing them.
    pub close: Option<CloseReason>,
}

impl Outbox {
    /// Records the connection's transport (`ws`, `wss`, `tcp`, `quic`…) and peer address.
    pub fn set_peer(&self, transport: &'static str, peer: String) {
        let _ = self.inner.peer.set((transport, peer));
    }

    /// The transport and peer address, if recorded.
    pub fn peer(&self) -> Option<(&'static str, &str)> {
        self.inner.peer.get().map(|(t, p)| (*t, p.as_str()))
    }

    /// Frames and bytes queued now.
    pub fn depth(&self) -> (usize, usize) {
        let s = self.inner.state.lock();
        (s.queue.len(), s.bytes)
    }

    /// An empty outbox.
    pub fn new(limits: OutboxLimits, counters: Arc<OutboxCounters>) -> Self {
        Outbox {
            inner: Arc::new(Inner {
                inline: std::sync::OnceLock::new(),
                peer: std::sync::OnceLock::new(),
                state: Mutex::new(State::default()),
                notify: Notify::new(),
                closed: Notify::new(),
                limits,
                counters,
            }),
        }
    }

    /// Sets who can write this outbox's frames inline.
    pub fn set_inline(&self, w: std::sync::Weak<dyn InlineWrite>) {
        let _ = self.inner.inline.set(w);
    }

    /// Waits until there is something to write or the connection should close.
    pub async fn ready(&self) {
        self.inner.notify.notified().await;
    }

    /// Takes everything queued.
    pub fn drain(&self, into: &mut Drained) {
        into.close = self.drain_with(|b| into.frames.push(b));
    }

    /// Hands everything queued to `f`, in order, and returns the close request, if any.
    pub fn drain_with(&self, mut f: impl FnMut(Bytes)) -> Option<CloseReason> {
        let mut s = self.inner.state.lock();
        for slot in s.queue.drain(..) {
            match slot {
                Slot::Frame(b) | Slot::Param(b) => f(b),
                Slot::Dropped => {}
            }
        }
        s.head_seq = 0;
        if !s.params.is_empty() {
            s.params.clear();
        }
        s.streams.clear();
        s.events = 0;
        release(&mut s, &self.inner.counters);
        s.close
    }

    /// Whether a close has been requested.
    pub fn closing(&self) -> Option<CloseReason> {
        self.inner.state.lock().close
    }

    /// Requests a close and wakes the writer.
    pub fn request_close(&self, reason: CloseReason) {
        let mut s = self.inner.state.lock();
        s.close.get_or_insert(reason);
        drop(s);
        self.inner.notify.notify_one();
        self.inner.closed.notify_waiters();
    }

    /// Resolves once a close has been requested.
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

    /// Queues one frame and wakes the writer.
    pub fn send(&self, msg: Outgoing) {
        let mut s = self.inner.state.lock();
        self.push_locked(&mut s, msg);
        self.report(&mut s);
        drop(s);
        self.inner.notify.notify_one();
    }

    /// Queues several frames in order and wakes the writer, leaving `msgs` empty.
    pub fn send_batch(&self, msgs: &mut Vec<Outgoing>) {
        self.push_all(msgs);
        self.inner.notify.notify_one();
    }

    /// Like [`Outbox::send_batch`], for one of few recipients: when the connection's writer
    /// is idle the frames are written straight away, from the caller's task, instead of
    /// waking the writer.
    pub fn send_batch_inline(&self, msgs: &mut Vec<Outgoing>) {
        self.push_all(msgs);
        if let Some(w) = self.inner.inline.get().and_then(std::sync::Weak::upgrade)
            && w.try_write(self)
        {
            return;
        }
        self.inner.notify.notify_one();
    }

    /// Wakes the writer (after [`Outbox::push_all`]).
    pub fn wake(&self) {
        self.inner.notify.notify_one();
    }

    /// Queues `msgs` under one lock, without waking the writer (a caller waking many queues
    /// does it in one go afterwards, with [`Outbox::wake`]).
    pub fn push_all(&self, msgs: &mut Vec<Outgoing>) {
        let mut s = self.inner.state.lock();
        for msg in msgs.drain(..) {
            self.push_locked(&mut s, msg);
        }
        self.report(&mut s);
    }

    fn push_locked(&self, s: &mut State, msg: Outgoing) {
        let limits = self.inner.limits;
        let counters = &self.inner.counters;
        if s.close.is_some() {
            return;
        }
        let len = s.queue.len();
        if (len >= limits.soft / 4 || s.bytes >= limits.soft_bytes / 4) && !s.backlogged {
            s.backlogged = true;
            counters.backlogged.fetch_add(1, Ordering::Relaxed);
        }
        if (len >= limits.soft || s.bytes >= limits.soft_bytes) && !s.congested {
            s.congested = true;
            counters.congested.fetch_add(1, Ordering::Relaxed);
        }
        match msg {
            Outgoing::Param(frame) => {
                let mut key = None;
                if s.congested
                    && let Some(address) = clasp_proto::codec::set_address(&frame)
                {
                    let head = s.head_seq;
                    if let Some(&seq) = s.params.get(&address)
                        && seq >= head
                    {
                        let i = (seq - head) as usize;
                        if let Some(Slot::Param(b)) = s.queue.get_mut(i) {
                            let old = std::mem::replace(b, frame);
                            let new = s.queue.get(i).map_or(0, Slot::len);
                            self.grow(s, new);
                            self.shrink(s, old.len());
                            counters.params_coalesced.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                    }
                    key = Some(address);
                }
                if s.bytes + frame.len() > limits.max_bytes {
                    self.overflow(s);
                    return;
                }
                if let Some(address) = key {
                    let seq = s.head_seq + s.queue.len() as u64;
                    s.params.insert(address, seq);
                }
                self.grow(s, frame.len());
                s.queue.push_back(Slot::Param(frame));
            }
            Outgoing::Stream(frame) => {
                // The oldest samples go first; a sample that still does not fit is dropped.
                let mut budget = 4;
                while (s.streams.len() >= limits.max_streams
                    || s.bytes + frame.len() > limits.soft_bytes)
                    && budget > 0
                    && let Some(seq) = s.streams.pop_front()
                {
                    budget -= 1;
                    let i = seq.saturating_sub(s.head_seq) as usize;
                    if let Some(slot) = s.queue.get_mut(i) {
                        let freed = std::mem::replace(slot, Slot::Dropped).len();
                        self.shrink(s, freed);
                    }
                    counters.streams_dropped.fetch_add(1, Ordering::Relaxed);
                }
                if s.streams.len() >= limits.max_streams
                    || s.bytes + frame.len() > limits.soft_bytes
                {
                    counters.streams_dropped.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                let seq = s.head_seq + s.queue.len() as u64;
                s.streams.push_back(seq);
                self.grow(s, frame.len());
                s.queue.push_back(Slot::Frame(frame));
            }
            Outgoing::Control(frame) | Outgoing::Event(frame) => {
                if s.events >= limits.max_events || s.bytes + frame.len() > limits.max_bytes {
                    self.overflow(s);
                } else {
                    s.events += 1;
                    self.grow(s, frame.len());
                    s.queue.push_back(Slot::Frame(frame));
                }
            }
            Outgoing::Snapshot(frame) => {
                s.events += 1;
                self.grow(s, frame.len());
                s.queue.push_back(Slot::Frame(frame));
            }
        }
    }

    fn grow(&self, s: &mut State, n: usize) {
        s.bytes += n;
    }

    fn shrink(&self, s: &mut State, n: usize) {
        s.bytes -= n.min(s.bytes);
    }

    /// Brings the shared count of queued bytes up to date with this queue's.
    fn report(&self, s: &mut State) {
        let counter = &self.inner.counters.queued_bytes;
        if s.bytes > s.reported {
            counter.fetch_add((s.bytes - s.reported) as u64, Ordering::Relaxed);
        } else if s.bytes < s.reported {
            counter.fetch_sub((s.reported - s.bytes) as u64, Ordering::Relaxed);
        }
        s.reported = s.bytes;
    }

    /// The peer does not read fast enough to hold what it must not lose: the queue is
    /// replaced by one ERROR saying so, and the connection closes.
    fn overflow(&self, s: &mut State) {
        let counters = &self.inner.counters;
        counters.slow_disconnects.fetch_add(1, Ordering::Relaxed);
        let text = format!(
            "disconnecting: this client is not reading fast enough ({} messages, {} bytes queued); reconnect to resynchronise",
            s.queue.len(),
            s.bytes
        );
        s.queue.clear();
        s.params.clear();
        s.streams.clear();
        let queued = s.bytes;
        self.shrink(s, queued);
        if let Ok(err) = clasp_proto::encode(&Message::Error(ErrorMessage {
            code: ErrorCode::Overloaded,
            message: text.into(),
            address: None,
            correlation_id: None,
        })) {
            self.grow(s, err.len());
            s.queue.push_back(Slot::Frame(err));
        }
        s.close = Some(CloseReason::Shutdown);
        self.inner.closed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outbox(soft: usize, max_streams: usize, max_events: usize) -> (Outbox, Arc<OutboxCounters>) {
        let counters = Arc::new(OutboxCounters::default());
        let limits = OutboxLimits {
            soft,
            max_streams,
            max_events,
            ..OutboxLimits::default()
        };
        (Outbox::new(limits, counters.clone()), counters)
    }

    /// A SET frame for `addr` whose value is the integer `v`.
    fn param(addr: &str, v: u8) -> Outgoing {
        let set = Message::Set(clasp_proto::Set {
            address: addr.into(),
            value: clasp_proto::Value::Int(v.into()),
            ..Default::default()
        });
        Outgoing::Param(clasp_proto::encode(&set).unwrap_or_default())
    }

    fn value_of(frame: &Bytes) -> u8 {
        match clasp_proto::decode_frame(frame).map(|f| f.message) {
            Ok(Message::Set(s)) => s.value.as_i64().unwrap_or(-1) as u8,
            _ => 255,
        }
    }

    fn drain(o: &Outbox) -> Drained {
        let mut d = Drained::default();
        o.drain(&mut d);
        d
    }

    #[test]
    fn params_coalesce_to_the_latest_value_when_congested() {
        let (o, c) = outbox(2, 10, 10);
        o.send(param("/a", 1));
        o.send(param("/b", 1));
        o.send(param("/a", 2)); // congested from here
        o.send(param("/a", 3));
        o.send(param("/b", 4));
        o.send(param("/b", 5));
        let d = drain(&o);
        let vals: Vec<u8> = d.frames.iter().map(value_of).collect();
        // Order of first appearance kept; the last value per address wins.
        assert_eq!(vals, vec![1, 1, 3, 5]);
        assert_eq!(c.params_coalesced.load(Ordering::Relaxed), 2);
        assert_eq!(c.congested.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn streams_drop_oldest_and_count() {
        let (o, c) = outbox(100, 3, 100);
        for i in 0..6 {
            o.send(Outgoing::Stream(Bytes::from(vec![i])));
        }
        let vals: Vec<u8> = drain(&o).frames.iter().map(|b| b[0]).collect();
        assert_eq!(vals, vec![3, 4, 5]);
        assert_eq!(c.streams_dropped.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn events_past_the_hard_limit_close_with_an_error() {
        let (o, c) = outbox(100, 100, 3);
        for i in 0..5 {
            o.send(Outgoing::Event(Bytes::from(vec![i])));
        }
        let d = drain(&o);
        assert_eq!(d.frames.len(), 1);
        let msg = clasp_proto::decode_frame(&d.frames[0]).unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(msg.message, Message::Error(ref e) if e.code == ErrorCode::Overloaded));
        assert!(d.close.is_some());
        assert_eq!(c.slow_disconnects.load(Ordering::Relaxed), 1);
    }

    fn bytes_outbox(soft_bytes: usize, max_bytes: usize) -> (Outbox, Arc<OutboxCounters>) {
        let counters = Arc::new(OutboxCounters::default());
        let limits = OutboxLimits {
            soft_bytes,
            max_bytes,
            ..OutboxLimits::default()
        };
        (Outbox::new(limits, counters.clone()), counters)
    }

    #[test]
    fn events_past_the_byte_limit_close_with_an_error() {
        let (o, c) = bytes_outbox(64 << 10, 256 << 10);
        for _ in 0..100 {
            o.send(Outgoing::Event(Bytes::from(vec![0u8; 60_000])));
        }
        // Four fit under 256 KiB; the fifth closed the connection, and the rest were not kept.
        assert!(c.queued_bytes.load(Ordering::Relaxed) < 1024);
        let d = drain(&o);
        assert_eq!(d.frames.len(), 1);
        assert!(d.close.is_some());
        assert_eq!(c.slow_disconnects.load(Ordering::Relaxed), 1);
        assert_eq!(c.queued_bytes.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn params_at_new_addresses_past_the_byte_limit_close_the_connection() {
        let (o, c) = bytes_outbox(1 << 10, 64 << 10);
        for i in 0..2000 {
            let set = Message::Set(clasp_proto::Set {
                address: format!("/p/{i}").into(),
                value: clasp_proto::Value::Bytes(vec![0u8; 1000].into()),
                ..Default::default()
            });
            o.send(Outgoing::Param(
                clasp_proto::encode(&set).unwrap_or_default(),
            ));
        }
        let d = drain(&o);
        assert!(d.close.is_some());
        assert_eq!(c.slow_disconnects.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn streams_keep_within_the_soft_byte_limit() {
        let (o, c) = bytes_outbox(10_000, 1 << 20);
        for i in 0..100u8 {
            o.send(Outgoing::Stream(Bytes::from(vec![i; 1000])));
        }
        let d = drain(&o);
        let vals: Vec<u8> = d.frames.iter().map(|b| b[0]).collect();
        // The newest samples that fit are kept, oldest dropped, each drop counted.
        assert_eq!(vals, (90..100).collect::<Vec<u8>>());
        assert_eq!(c.streams_dropped.load(Ordering::Relaxed), 90);
    }

    #[test]
    fn the_connect_snapshot_is_never_refused_for_its_size() {
        let (o, c) = bytes_outbox(1 << 10, 64 << 10);
        for _ in 0..10 {
            o.send(Outgoing::Snapshot(Bytes::from(vec![0u8; 60_000])));
        }
        let d = drain(&o);
        assert_eq!(d.frames.len(), 10);
        assert!(d.close.is_none());
        assert_eq!(c.slow_disconnects.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_dropped_outbox_lowers_the_gauges_it_raised() {
        let (o, c) = outbox(8, 100, 100);
        for i in 0..20 {
            o.send(Outgoing::Event(Bytes::from(vec![i])));
        }
        assert_eq!(c.backlogged.load(Ordering::Relaxed), 1);
        assert_eq!(c.congested.load(Ordering::Relaxed), 1);
        assert!(c.filling() || c.congested.load(Ordering::Relaxed) == 1);
        assert_eq!(c.queued_bytes.load(Ordering::Relaxed), 20);
        drop(o);
        assert_eq!(c.backlogged.load(Ordering::Relaxed), 0);
        assert_eq!(c.congested.load(Ordering::Relaxed), 0);
        assert_eq!(c.queued_bytes.load(Ordering::Relaxed), 0);
        assert!(!c.filling());
    }
}
