//! The registry: devices, their expiry, the per-source and total caps, rate limits, and
//! write-through persistence into a [`RecordTable`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use clasp_proto::rate::{Rate, TokenBucket};
use clasp_store::{RecordBatch, RecordTable, StoreError};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::clock::{Clock, SystemClock};
use crate::model::{Device, Registered, Registration};

mod config;
mod requests;

pub use config::{FieldLimits, RateLimit, RendezvousConfig};

/// Decides whether a register or unregister may proceed: called with the request's bearer token
/// (`Authorization: Bearer <token>`), or `None` when it has none; `true` lets it through. It is
/// asked on every request, so a router that starts or stops requiring tokens while running is
/// followed at once.
pub type TokenCheck = Arc<dyn Fn(Option<&str>) -> bool + Send + Sync>;

/// A sentinel source for requests whose peer address is unknown (no `ConnectInfo`): they all
/// share this one rate-limit bucket and per-source cap.
pub const RATE_LIMIT_ALL_SOURCES: IpAddr = IpAddr::V6(Ipv6Addr::UNSPECIFIED);

/// Why a rendezvous operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RendezvousError {
    /// The record table could not be read at start.
    #[error("cannot load rendezvous registrations: {0}")]
    Load(#[from] StoreError),
    /// A write to the record table failed.
    #[error("cannot store rendezvous registrations: {0}")]
    Persist(String),
    /// The HTTP listener failed.
    #[error("rendezvous HTTP server: {0}")]
    Io(#[from] std::io::Error),
}

/// What a request did wrong (mapped to an HTTP status by the HTTP layer).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// 422: a field is too big.
    Invalid(String),
    /// 429: the source has too many devices.
    SourceFull(usize),
    /// 404.
    NotFound,
    /// 403: missing or wrong owner secret.
    WrongSecret,
    /// 503: the store failed.
    Storage(String),
}

/// The stored form of a device (JSON in the record table, keyed by id).
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredDevice {
    device: Device,
    source: IpAddr,
    secret: String,
}

struct Entry {
    device: Device,
    /// Monotonic µs at which it expires.
    deadline: u64,
    /// Tie-breaker in the deadline index.
    seq: u64,
    source: IpAddr,
    secret: String,
}

impl Entry {
    fn record(&self) -> Vec<u8> {
        let stored = StoredDevice {
            device: self.device.clone(),
            source: self.source,
            secret: self.secret.clone(),
        };
        serde_json::to_vec(&stored).unwrap_or_default()
    }
}

#[derive(Default)]
struct Registry {
    devices: HashMap<String, Entry>,
    /// (deadline, seq) → id: the least recently seen first.
    by_deadline: BTreeMap<(u64, u64), String>,
    per_source: HashMap<IpAddr, usize>,
    next_seq: u64,
    /// Refreshed since the last persist pass.
    dirty: HashSet<String>,
}

impl Registry {
    fn insert(&mut self, id: String, mut entry: Entry) {
        entry.seq = self.next_seq;
        self.next_seq += 1;
        self.by_deadline
            .insert((entry.deadline, entry.seq), id.clone());
        *self.per_source.entry(entry.source).or_default() += 1;
        self.devices.insert(id, entry);
    }

    fn remove(&mut self, id: &str) -> Option<Entry> {
        let entry = self.devices.remove(id)?;
        self.by_deadline.remove(&(entry.deadline, entry.seq));
        if let Some(n) = self.per_source.get_mut(&entry.source) {
            *n -= 1;
            if *n == 0 {
                self.per_source.remove(&entry.source);
            }
        }
        self.dirty.remove(id);
        Some(entry)
    }

    /// Removes every device expired at `now`, returning their ids.
    fn expire(&mut self, now: u64) -> Vec<String> {
        let mut gone = Vec::new();
        while let Some(entry) = self.by_deadline.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let id = entry.get().clone();
            self.remove(&id);
            gone.push(id);
        }
        gone
    }

    /// Removes the least recently seen device.
    fn evict_oldest(&mut self) -> Option<String> {
        let id = self.by_deadline.first_key_value()?.1.clone();
        self.remove(&id);
        Some(id)
    }
}

/// A write for the persistence task; `done` is told the result.
struct WriteOp {
    batch: RecordBatch,
    done: Option<oneshot::Sender<Result<(), String>>>,
}

struct Inner {
    config: RendezvousConfig,
    clock: Arc<dyn Clock>,
    registry: Mutex<Registry>,
    buckets: Mutex<HashMap<IpAddr, TokenBucket>>,
    /// Sends to the writer thread (None without a record table). Sending happens under the
    /// registry lock, so writes reach the store in the order the registry changed.
    writes: Mutex<Option<mpsc::UnboundedSender<WriteOp>>>,
    /// The writer thread, joined by close and on drop (releasing the store).
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Whether a record table was given.
    persistent: bool,
    maintenance_started: AtomicBool,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Hand the last refreshes to the writer thread, which drains its queue and exits.
        let reg = self.registry.get_mut();
        if let Some(batch) = dirty_batch(reg)
            && let Some(w) = self.writes.get_mut()
        {
            let _ = w.send(WriteOp { batch, done: None });
        }
        // Closing the channel lets the writer drain its queue and exit; wait for it.
        *self.writes.get_mut() = None;
        join_writer(self.writer.get_mut().take());
    }
}

fn join_writer(writer: Option<std::thread::JoinHandle<()>>) {
    if let Some(writer) = writer
        && writer.join().is_err()
    {
        tracing::error!("the rendezvous store writer panicked");
    }
}

/// The error of writes after [`RendezvousService::close`].
const CLOSED: &str = "the rendezvous store is closed";

fn dirty_batch(reg: &mut Registry) -> Option<RecordBatch> {
    if reg.dirty.is_empty() {
        return None;
    }
    let ids: Vec<String> = reg.dirty.drain().collect();
    let puts = ids
        .into_iter()
        .filter_map(|id| {
            let record = reg.devices.get(&id)?.record();
            Some((id, record))
        })
        .collect();
    Some(RecordBatch {
        puts,
        deletes: Vec::new(),
    })
}

/// The rendezvous registry. Cheap to clone (all clones share one registry).
///
/// Persistence: each register and unregister is written to the record table (one JSON record
/// per device id) before it is answered; refreshes are written in one batch every
/// [`RendezvousConfig::persist_interval`] and by [`RendezvousService::flush`]. A crash
/// therefore loses at most the refreshes of the last interval: those devices come back with an
/// older `lastSeen` and may expire early (a keep-alive client then registers again). Expired
/// devices are deleted by the sweep, or skipped and deleted at the next start. Dropping the
/// last clone hands pending refreshes to the writer and waits until everything is stored, which
/// also releases the record table (and so the database file).
#[derive(Clone)]
pub struct RendezvousService {
    inner: Arc<Inner>,
}

impl fmt::Debug for RendezvousService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RendezvousService")
            .field("config", &self.inner.config)
            .field("devices", &self.inner.registry.lock().devices.len())
            .field("persistent", &self.inner.persistent)
            .finish()
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// An IPv6 source counts as its /64; an IPv4-mapped address as the IPv4 address.
pub(crate) fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// Compares two secrets without an early exit.
fn secrets_match(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl RendezvousService {
    /// An in-memory service on the system clock.
    pub fn new(config: RendezvousConfig) -> Self {
        Self::build(config, Arc::new(SystemClock::new()), None, Vec::new())
    }

    /// A service on `clock`, persisting into `records` if given. Loads the stored devices that
    /// have not expired (by wall-clock age) and deletes the others; undecodable records are
    /// logged and deleted. Blocks on the store; call it at start-up. With `records`, a writer
    /// thread applies the writes in order.
    pub fn open(
        config: RendezvousConfig,
        clock: Arc<dyn Clock>,
        records: Option<Arc<dyn RecordTable>>,
    ) -> Result<Self, RendezvousError> {
        let Some(table) = records else {
            return Ok(Self::build(config, clock, None, Vec::new()));
        };
        let loaded = table.load_all()?;
        Ok(Self::build(config, clock, Some(table), loaded))
    }

    fn build(
        config: RendezvousConfig,
        clock: Arc<dyn Clock>,
        table: Option<Arc<dyn RecordTable>>,
        loaded: Vec<(String, Vec<u8>)>,
    ) -> Self {
        let mut reg = Registry::default();
        let mut stale = Vec::new();
        let now = micros(clock.monotonic());
        let wall = clock.wall_micros();
        let ttl = micros(config.ttl);
        for (id, bytes) in loaded {
            let stored: StoredDevice = match serde_json::from_slice(&bytes) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(%id, error = %e, "dropping an unreadable rendezvous record");
                    stale.push(id);
                    continue;
                }
            };
            let age = wall.saturating_sub(stored.device.last_seen);
            if age >= ttl || stored.device.id != id {
                stale.push(id);
                continue;
            }
            reg.insert(
                id,
                Entry {
                    device: stored.device,
                    deadline: now.saturating_add(ttl - age),
                    seq: 0,
                    source: stored.source,
                    secret: stored.secret,
                },
            );
        }
        while reg.devices.len() > config.max_total_devices {
            if let Some(id) = reg.evict_oldest() {
                stale.push(id);
            }
        }
        if !reg.devices.is_empty() || !stale.is_empty() {
            tracing::info!(
                restored = reg.devices.len(),
                dropped = stale.len(),
                "rendezvous registrations loaded"
            );
        }
        let persistent = table.is_some();
        let (writes, writer) = match table.map(spawn_writer) {
            Some((w, thread)) => (Some(w), thread),
            None => (None, None),
        };
        if let (Some(w), false) = (&writes, stale.is_empty()) {
            let _ = w.send(WriteOp {
                batch: RecordBatch {
                    puts: Vec::new(),
                    deletes: stale,
                },
                done: None,
            });
        }
        RendezvousService {
            inner: Arc::new(Inner {
                config,
                clock,
                registry: Mutex::new(reg),
                buckets: Mutex::new(HashMap::new()),
                writes: Mutex::new(writes),
                writer: Mutex::new(writer),
                persistent,
                maintenance_started: AtomicBool::new(false),
            }),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &RendezvousConfig {
        &self.inner.config
    }

    /// How many devices are held (including expired ones not yet swept).
    pub fn len(&self) -> usize {
        self.inner.registry.lock().devices.len()
    }

    /// Whether no device is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn now(&self) -> u64 {
        micros(self.inner.clock.monotonic())
    }

    /// Queues a write (called with the registry lock held, to keep the order).
    /// None = nothing to wait for (in memory, or an empty batch).
    fn queue(&self, batch: RecordBatch) -> Option<oneshot::Receiver<Result<(), String>>> {
        if !self.inner.persistent || batch.is_empty() {
            return None;
        }
        let (tx, rx) = oneshot::channel();
        let writes = self.inner.writes.lock();
        let op = WriteOp {
            batch,
            done: Some(tx),
        };
        let refused = match &*writes {
            Some(w) => w.send(op).err().map(|e| e.0),
            None => Some(op),
        };
        if let Some(op) = refused
            && let Some(done) = op.done
        {
            let _ = done.send(Err(CLOSED.to_owned()));
        }
        Some(rx)
    }

    /// Removes expired devices now (also done every `cleanup_interval` by the maintenance
    /// task) and forgets idle rate-limit buckets; returns how many devices it removed.
    pub fn sweep(&self) -> usize {
        let now = self.now();
        let n = {
            let mut reg = self.inner.registry.lock();
            let gone = reg.expire(now);
            let n = gone.len();
            if n > 0 {
                let _ = self.queue(RecordBatch {
                    puts: Vec::new(),
                    deletes: gone,
                });
            }
            n
        };
        if let Some(limit) = self.inner.config.rate_limit {
            let mono = self.inner.clock.monotonic();
            prune_buckets(&mut self.inner.buckets.lock(), mono, limit.rate());
        }
        n
    }

    /// Writes pending refreshes to the store and waits until everything queued so far is
    /// stored. Does nothing for an in-memory service.
    pub async fn flush(&self) -> Result<(), RendezvousError> {
        let pending = {
            let mut reg = self.inner.registry.lock();
            if !self.inner.persistent {
                return Ok(());
            }
            let batch = dirty_batch(&mut reg).unwrap_or_default();
            let writes = self.inner.writes.lock();
            let Some(w) = &*writes else {
                return Err(RendezvousError::Persist(CLOSED.to_owned()));
            };
            let (tx, rx) = oneshot::channel();
            // An empty batch still gets an answer once everything before it is written.
            if w.send(WriteOp {
                batch,
                done: Some(tx),
            })
            .is_err()
            {
                return Err(RendezvousError::Persist(CLOSED.to_owned()));
            }
            rx
        };
        pending
            .await
            .unwrap_or_else(|_| Err("the writer stopped".to_owned()))
            .map_err(RendezvousError::Persist)
    }

    /// Writes pending refreshes, stops the writer and releases the record table (and so the
    /// database file), even while other clones are still alive (e.g. in HTTP connections that
    /// outlive the server). Afterwards reads still work; register answers 503 and other
    /// changes stay in memory only. Closing twice is fine.
    pub async fn close(&self) -> Result<(), RendezvousError> {
        let flushed = match self.flush().await {
            Err(RendezvousError::Persist(e)) if e == CLOSED => Ok(()),
            other => other,
        };
        self.inner.writes.lock().take();
        let writer = self.inner.writer.lock().take();
        if writer.is_some() {
            let _ = tokio::task::spawn_blocking(move || join_writer(writer)).await;
        }
        flushed
    }

    /// Starts the maintenance task (sweep every `cleanup_interval`, persist refreshes every
    /// `persist_interval`) on the current tokio runtime, once; later calls do nothing. The
    /// HTTP routes call it on their first request. The task ends when the last clone of the
    /// service is dropped.
    pub fn start_maintenance(&self) {
        if self.inner.maintenance_started.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            self.inner
                .maintenance_started
                .store(false, Ordering::Release);
            return;
        };
        let weak = Arc::downgrade(&self.inner);
        rt.spawn(maintain(weak));
    }
}

/// Forgets the buckets that have refilled: their sources have been idle.
fn prune_buckets(buckets: &mut HashMap<IpAddr, TokenBucket>, now: Duration, rate: Rate) {
    buckets.retain(|_, b| {
        b.refill(rate, now);
        !b.is_full(rate)
    });
}

async fn maintain(weak: Weak<Inner>) {
    let step = {
        let Some(inner) = weak.upgrade() else { return };
        inner
            .config
            .cleanup_interval
            .min(inner.config.persist_interval)
            .max(Duration::from_millis(10))
    };
    let mut last_sweep = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(step);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(inner) = weak.upgrade() else { return };
        let service = RendezvousService { inner };
        if last_sweep.elapsed() >= service.inner.config.cleanup_interval {
            last_sweep = tokio::time::Instant::now();
            let n = service.sweep();
            if n > 0 {
                tracing::debug!(expired = n, "rendezvous sweep");
            }
        }
        {
            let mut reg = service.inner.registry.lock();
            if let Some(batch) = dirty_batch(&mut reg) {
                let _ = service.queue(batch);
            }
        }
    }
}

/// Starts the writer thread: it takes every queued write, merges them (last write per key
/// wins) into one transaction, and reports to each waiter. A failed batch's unacknowledged
/// writes (refreshes) and all its deletes are kept and retried with the next one.
fn spawn_writer(
    table: Arc<dyn RecordTable>,
) -> (
    mpsc::UnboundedSender<WriteOp>,
    Option<std::thread::JoinHandle<()>>,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<WriteOp>();
    let run = move || {
        // key → (value or None = delete, whether a waiter hears about it)
        let mut retry: BTreeMap<String, (Option<Vec<u8>>, bool)> = BTreeMap::new();
        while let Some(first) = rx.blocking_recv() {
            let mut merged = std::mem::take(&mut retry);
            let mut waiters = Vec::new();
            let mut next = Some(first);
            while let Some(op) = next.take() {
                let acked = op.done.is_some();
                for (k, v) in op.batch.puts {
                    merged.insert(k, (Some(v), acked));
                }
                for k in op.batch.deletes {
                    merged.insert(k, (None, acked));
                }
                waiters.extend(op.done);
                next = rx.try_recv().ok();
            }
            let mut batch = RecordBatch::default();
            for (k, (v, _)) in &merged {
                match v {
                    Some(v) => batch.puts.push((k.clone(), v.clone())),
                    None => batch.deletes.push(k.clone()),
                }
            }
            let result = if batch.is_empty() {
                Ok(())
            } else {
                table.apply(&batch).map_err(|e| e.to_string())
            };
            if let Err(e) = &result {
                tracing::warn!(error = %e, "rendezvous store write failed; will retry");
                // Deletes are always retried; acknowledged puts were reported as failed.
                retry = merged
                    .into_iter()
                    .filter(|(_, (v, acked))| !acked || v.is_none())
                    .collect();
            }
            for w in waiters {
                let _ = w.send(result.clone());
            }
        }
    };
    match std::thread::Builder::new()
        .name("clasp-rendezvous-store".into())
        .spawn(run)
    {
        Ok(thread) => (tx, Some(thread)),
        Err(e) => {
            tracing::error!(error = %e, "cannot start the rendezvous store writer");
            (tx, None)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::net::Ipv4Addr;

    use proptest::prelude::*;

    use super::*;
    use crate::clock::ManualClock;

    #[derive(Debug, Clone)]
    enum Op {
        Register(u8),
        Refresh(usize),
        /// Unregister the i-th known id, with its owner secret or without.
        Unregister(usize, bool),
        Advance(u64),
        Sweep,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u8..3).prop_map(Op::Register),
            2 => any::<usize>().prop_map(Op::Refresh),
            1 => (any::<usize>(), any::<bool>()).prop_map(|(i, s)| Op::Unregister(i, s)),
            2 => (0u64..200).prop_map(Op::Advance),
            1 => Just(Op::Sweep),
        ]
    }

    /// The model: (id, source, last seen in s), oldest first; TTL 300 s, 5 devices, 3 per source.
    struct Model {
        live: Vec<(String, u8, u64)>,
        /// (id, owner secret) of every registration made.
        known: Vec<(String, String)>,
        now: u64,
    }

    impl Model {
        fn expire(&mut self) {
            let now = self.now;
            self.live.retain(|d| now < d.2 + 300);
        }
    }

    proptest! {
        #[test]
        fn registry_matches_a_simple_model(ops in proptest::collection::vec(op(), 1..60)) {
            let clock = Arc::new(ManualClock::new(1_000_000));
            let config = RendezvousConfig {
                max_total_devices: 5,
                max_devices_per_source: 3,
                rate_limit: None,
                ..RendezvousConfig::default()
            };
            let svc = RendezvousService::open(config, clock.clone(), None).unwrap();
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let mut m = Model { live: Vec::new(), known: Vec::new(), now: 0 };
            for op in ops {
                match op {
                    Op::Register(src) => {
                        let ip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, src));
                        let r = rt.block_on(svc.register(
                            Registration { name: "d".into(), ..Registration::default() },
                            ip,
                        ));
                        m.expire();
                        let held = m.live.iter().filter(|d| d.1 == src).count();
                        if held >= 3 {
                            prop_assert_eq!(r.unwrap_err(), Refusal::SourceFull(3));
                        } else {
                            let r = r.unwrap();
                            if m.live.len() >= 5 {
                                m.live.remove(0);
                            }
                            m.live.push((r.id.clone(), src, m.now));
                            m.known.push((r.id, r.secret.unwrap()));
                        }
                    }
                    Op::Refresh(i) | Op::Unregister(i, _) if m.known.is_empty() => { let _ = i; }
                    Op::Refresh(i) => {
                        let id = m.known[i % m.known.len()].0.clone();
                        let r = svc.refresh(&id, None);
                        m.expire();
                        match m.live.iter().position(|d| d.0 == id) {
                            Some(p) => {
                                prop_assert!(r.is_ok());
                                let mut d = m.live.remove(p);
                                d.2 = m.now;
                                m.live.push(d);
                            }
                            None => prop_assert_eq!(r.unwrap_err(), Refusal::NotFound),
                        }
                    }
                    Op::Unregister(i, with_secret) => {
                        let (id, secret) = m.known[i % m.known.len()].clone();
                        let secret = with_secret.then_some(secret.as_str());
                        let r = rt.block_on(svc.unregister(&id, secret));
                        m.expire();
                        match m.live.iter().position(|d| d.0 == id) {
                            // The owner secret is required by default.
                            Some(_) if !with_secret => {
                                prop_assert_eq!(r.unwrap_err(), Refusal::WrongSecret);
                            }
                            Some(p) => {
                                prop_assert!(r.is_ok());
                                m.live.remove(p);
                            }
                            None => prop_assert_eq!(r.unwrap_err(), Refusal::NotFound),
                        }
                    }
                    Op::Advance(s) => {
                        clock.advance(Duration::from_secs(s));
                        m.now += s;
                    }
                    Op::Sweep => {
                        svc.sweep();
                        m.expire();
                        prop_assert_eq!(svc.len(), m.live.len());
                    }
                }
                m.expire();
                let got: Vec<String> = svc.discover(None, None, 1000).into_iter().map(|d| d.id).collect();
                let want: Vec<String> = m.live.iter().rev().map(|d| d.0.clone()).collect();
                prop_assert_eq!(got, want);
                prop_assert!(svc.len() <= 5);
            }
        }

        #[test]
        fn source_keys_group_ipv6_by_64(a in any::<[u16; 8]>(), b in any::<[u16; 4]>()) {
            let x = Ipv6Addr::new(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]);
            let y = Ipv6Addr::new(a[0], a[1], a[2], a[3], b[0], b[1], b[2], b[3]);
            if x.to_ipv4_mapped().is_none() && y.to_ipv4_mapped().is_none() {
                prop_assert_eq!(source_key(IpAddr::V6(x)), source_key(IpAddr::V6(y)));
            }
        }
    }

    #[test]
    fn mapped_ipv4_counts_as_ipv4() {
        let v4 = Ipv4Addr::new(192, 0, 2, 7);
        assert_eq!(source_key(IpAddr::V6(v4.to_ipv6_mapped())), IpAddr::V4(v4));
        assert_eq!(source_key(IpAddr::V4(v4)), IpAddr::V4(v4));
    }

    #[test]
    fn secrets_compare_exactly() {
        assert!(secrets_match("abc", "abc"));
        assert!(!secrets_match("abc", "abd"));
        assert!(!secrets_match("abc", "abcd"));
        assert!(!secrets_match("", "a"));
    }
}
