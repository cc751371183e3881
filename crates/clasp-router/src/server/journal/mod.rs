//! The journal's threads: one appends what the core journaled (in batches, one transaction
//! every `flush` interval or 8,192 entries) and trims it by the retention; after appending
//! everything taken before a request it hands the request to a reader, which answers
//! histories and REPLAYs from the journal through the core.
//!
//! Appends come through an unbounded channel with a bound of its own: past
//! [`MAX_QUEUED`] entries waiting, further entries are dropped, counted
//! (`clasp_journal_dropped_total`) and logged, rather than growing memory without end when
//! the disk cannot keep up. Requests are never dropped. The readers are in `read.rs`, the
//! counters for `/metrics` in `metrics.rs`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use clasp_store::{EntryRef, Journal, Retention};

use super::{Link, Shared};
use crate::core::{JournalEntry, JournalRequest, ReplayRequest};

mod metrics;
mod read;

pub(crate) use metrics::metrics;

/// Entries (and bytes of them) waiting to be written past which new ones are dropped.
pub(crate) const MAX_QUEUED: u64 = 2_000_000;
pub(crate) const MAX_QUEUED_BYTES: u64 = 256 << 20;
/// Entries written per transaction at most.
const BATCH: usize = 8_192;
/// How often retention is applied.
const TRIM_EVERY: Duration = Duration::from_secs(1);

/// How the journal is kept (`clasp server --journal`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalConfig {
    /// How much it keeps.
    pub retention: Retention,
    /// The longest an entry waits before it is written.
    pub flush: Duration,
}

impl Default for JournalConfig {
    fn default() -> Self {
        JournalConfig {
            retention: Retention::default(),
            flush: Duration::from_millis(50),
        }
    }
}

/// Counters for `/metrics` and `/healthz`.
#[derive(Debug, Default)]
pub(crate) struct Status {
    pub(crate) queued: AtomicU64,
    pub(crate) queued_bytes: AtomicU64,
    /// Set when the server stops: readers end their scans.
    pub(crate) stopping: std::sync::atomic::AtomicBool,
    pub(crate) written: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) write_errors: AtomicU64,
    pub(crate) entries: AtomicU64,
    pub(crate) bytes: AtomicU64,
    pub(crate) trimmed: AtomicU64,
    pub(crate) compactions: AtomicU64,
}

pub(crate) enum Work {
    Append(Vec<JournalEntry>),
    Request(JournalRequest<Link>),
    Stop,
}

/// The core's side: where journaled entries and requests go.
pub(crate) struct Sender {
    tx: mpsc::Sender<Work>,
    pub(crate) status: Arc<Status>,
    pub(crate) describe: String,
}

impl Sender {
    /// Queues what the core journaled; drops it (counted) past the bound.
    pub(crate) fn append(&self, entries: Vec<JournalEntry>) {
        let n = entries.len() as u64;
        let bytes: u64 = entries
            .iter()
            .map(|e| (e.frame.len() + e.address.len()) as u64)
            .sum();
        if self.status.queued.load(Ordering::Relaxed) + n > MAX_QUEUED
            || self.status.queued_bytes.load(Ordering::Relaxed) + bytes > MAX_QUEUED_BYTES
        {
            let before = self.status.dropped.fetch_add(n, Ordering::Relaxed);
            if before == 0 || (before + n) / 100_000 > before / 100_000 {
                tracing::warn!(
                    dropped = before + n,
                    "the journal cannot keep up: entries dropped (the disk is too slow for this rate)"
                );
            }
            return;
        }
        self.status.queued.fetch_add(n, Ordering::Relaxed);
        self.status.queued_bytes.fetch_add(bytes, Ordering::Relaxed);
        let _ = self.tx.send(Work::Append(entries));
    }

    pub(crate) fn request(&self, r: JournalRequest<Link>) {
        let _ = self.tx.send(Work::Request(r));
    }
}

/// The journal's threads, once started.
pub(crate) struct Threads {
    tx: mpsc::Sender<Work>,
    status: Arc<Status>,
    writer: JoinHandle<()>,
    readers: Vec<JoinHandle<()>>,
}

/// Opens the journal; the receiver is handed to [`spawn`] once the server runs.
pub(crate) fn open(
    dir: Option<&std::path::Path>,
) -> Result<(Arc<Journal>, Sender, mpsc::Receiver<Work>), clasp_store::StoreError> {
    let journal = match dir {
        Some(d) => Journal::open(d)?,
        None => Journal::memory(),
    };
    let (tx, rx) = mpsc::channel();
    let status = Arc::new(Status::default());
    let s = journal.stats();
    status.entries.store(s.entries, Ordering::Relaxed);
    status.bytes.store(s.bytes, Ordering::Relaxed);
    let describe = journal.describe();
    Ok((
        Arc::new(journal),
        Sender {
            tx,
            status,
            describe,
        },
        rx,
    ))
}

/// Starts the writer and the readers.
pub(crate) fn spawn(
    shared: Arc<Shared>,
    journal: Arc<Journal>,
    rx: mpsc::Receiver<Work>,
    config: JournalConfig,
) -> std::io::Result<Threads> {
    let Some(sender) = shared.journal.as_ref() else {
        return Err(std::io::Error::other("no journal configured"));
    };
    let tx = sender.tx.clone();
    let status = sender.status.clone();
    let shared_status = sender.status.clone();
    let (history_tx, history_rx) = mpsc::channel::<JournalRequest<Link>>();
    let (replay_tx, replay_rx) = mpsc::channel::<ReplayRequest<Link>>();
    let mut readers = Vec::new();
    for (name, rx) in [
        ("clasp-journal-history", read::ReaderRx::History(history_rx)),
        ("clasp-journal-replay", read::ReaderRx::Replay(replay_rx)),
    ] {
        let (shared, journal) = (shared.clone(), journal.clone());
        readers.push(
            std::thread::Builder::new()
                .name(name.into())
                .spawn(move || read::read_loop(&shared, &journal, rx))?,
        );
    }
    let writer = std::thread::Builder::new()
        .name("clasp-journal".into())
        .spawn(move || write_loop(&journal, &rx, &status, config, &history_tx, &replay_tx))?;
    Ok(Threads {
        tx,
        status: shared_status,
        writer,
        readers,
    })
}

/// Writes what is queued and stops the threads (the journal file is closed when this
/// returns: the readers end once the writer has, their queues closed).
pub(crate) fn stop(t: Threads) {
    t.status.stopping.store(true, Ordering::Relaxed);
    let _ = t.tx.send(Work::Stop);
    let _ = t.writer.join();
    for r in t.readers {
        let _ = r.join();
    }
}

fn write_loop(
    journal: &Journal,
    rx: &mpsc::Receiver<Work>,
    status: &Status,
    config: JournalConfig,
    history: &mpsc::Sender<JournalRequest<Link>>,
    replay: &mpsc::Sender<ReplayRequest<Link>>,
) {
    let mut buf: Vec<JournalEntry> = Vec::new();
    let mut since = Instant::now();
    let mut trimmed_at = Instant::now();
    loop {
        let wait = config.flush.saturating_sub(since.elapsed());
        let work = if buf.is_empty() {
            rx.recv_timeout(TRIM_EVERY)
        } else {
            rx.recv_timeout(wait)
        };
        match work {
            Ok(Work::Append(entries)) => {
                if buf.is_empty() {
                    since = Instant::now();
                }
                buf.extend(entries);
                if buf.len() >= BATCH || since.elapsed() >= config.flush {
                    write(journal, &mut buf, status);
                }
            }
            Ok(Work::Request(r)) => {
                // Everything journaled before the request is in before it is read.
                write(journal, &mut buf, status);
                let _ = match r {
                    JournalRequest::Replay(r) => replay.send(r).map_err(|_| ()),
                    h @ JournalRequest::History { .. } => history.send(h).map_err(|_| ()),
                };
            }
            Ok(Work::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                // What is still queued behind the stop is written too.
                while let Ok(w) = rx.try_recv() {
                    if let Work::Append(e) = w {
                        buf.extend(e);
                    }
                }
                write(journal, &mut buf, status);
                return;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => write(journal, &mut buf, status),
        }
        if trimmed_at.elapsed() >= TRIM_EVERY {
            trimmed_at = Instant::now();
            trim(journal, &config.retention, status);
        }
    }
}

fn write(journal: &Journal, buf: &mut Vec<JournalEntry>, status: &Status) {
    if buf.is_empty() {
        return;
    }
    for chunk in buf.chunks(BATCH) {
        let refs: Vec<EntryRef<'_>> = chunk
            .iter()
            .map(|e| EntryRef {
                seq: e.seq,
                time: e.time,
                kind: e.signal.mask_bit(),
                address: &e.address,
                frame: &e.frame,
            })
            .collect();
        let n = chunk.len() as u64;
        let bytes: u64 = chunk
            .iter()
            .map(|e| (e.frame.len() + e.address.len()) as u64)
            .sum();
        match journal.append(&refs) {
            Ok(()) => {
                status.written.fetch_add(n, Ordering::Relaxed);
            }
            Err(e) => {
                status.write_errors.fetch_add(1, Ordering::Relaxed);
                status.dropped.fetch_add(n, Ordering::Relaxed);
                tracing::error!(error = %e, entries = n, "journal write failed: entries lost");
            }
        }
        status.queued.fetch_sub(n, Ordering::Relaxed);
        status.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
    }
    buf.clear();
    publish_stats(journal, status);
}

fn trim(journal: &Journal, retention: &Retention, status: &Status) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64);
    if let Err(e) = journal.trim(retention, now) {
        tracing::error!(error = %e, "journal trim failed");
    }
    publish_stats(journal, status);
}

fn publish_stats(journal: &Journal, status: &Status) {
    let s = journal.stats();
    status.entries.store(s.entries, Ordering::Relaxed);
    status.bytes.store(s.bytes, Ordering::Relaxed);
    status.trimmed.store(s.trimmed, Ordering::Relaxed);
    status.compactions.store(s.compactions, Ordering::Relaxed);
}
