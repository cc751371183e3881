//! The journal's threads: one appends what the core journaled (in batches, one transaction
//! every `flush` interval or 8,192 entries) and trims it by the retention; after appending
//! everything taken before a request it hands the request to a reader, which answers
//! histories and REPLAYs from the journal through the core.
//!
//! Appends come through an unbounded channel with a bound of its own: past
//! [`MAX_QUEUED`] entries waiting, further entries are dropped, counted
//! (`clasp_journal_dropped_total`) and logged, rather than growing memory without end when
//! the disk cannot keep up. Requests are never dropped.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clasp_store::{EntryRef, Journal, Retention};

use super::{Link, Shared};
use crate::core::{JournalEntry, JournalRequest, Past, ReplayEnd, ReplayRequest, signal_of_bit};

/// Entries (and bytes of them) waiting to be written past which new ones are dropped.
pub(crate) const MAX_QUEUED: u64 = 2_000_000;
pub(crate) const MAX_QUEUED_BYTES: u64 = 256 << 20;
/// Entries written per transaction at most.
const BATCH: usize = 8_192;
/// Entries, and bytes of frames, per slice of a REPLAY's answer at most.
const REPLAY_SLICE: usize = 512;
const REPLAY_SLICE_BYTES: usize = 256 << 10;
/// A REPLAY waits while the connection has more than this many bytes or frames queued.
const REPLAY_QUEUE_BYTES: usize = 1 << 20;
const REPLAY_QUEUE_FRAMES: usize = 8_192;
/// A REPLAY whose connection reads nothing for this long is given up.
const REPLAY_STALL: Duration = Duration::from_secs(30);
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
        ("clasp-journal-history", ReaderRx::History(history_rx)),
        ("clasp-journal-replay", ReaderRx::Replay(replay_rx)),
    ] {
        let (shared, journal) = (shared.clone(), journal.clone());
        readers.push(
            std::thread::Builder::new()
                .name(name.into())
                .spawn(move || read_loop(&shared, &journal, rx))?,
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

enum ReaderRx {
    History(mpsc::Receiver<JournalRequest<Link>>),
    Replay(mpsc::Receiver<ReplayRequest<Link>>),
}

fn read_loop(shared: &Shared, journal: &Journal, rx: ReaderRx) {
    let stopping = || {
        shared
            .journal
            .as_ref()
            .is_some_and(|j| j.status.stopping.load(Ordering::Relaxed))
    };
    match rx {
        ReaderRx::History(rx) => {
            while let Ok(r) = rx.recv() {
                let JournalRequest::History {
                    conn,
                    hold,
                    upto,
                    mut picker,
                    ..
                } = r
                else {
                    continue;
                };
                // A hold given up meanwhile (or a connection gone) needs no reading.
                if !shared.core.lock().history_held(conn) {
                    continue;
                }
                let read = journal.scan_back(upto, 1024, |e| {
                    if stopping() {
                        return ControlFlow::Break(());
                    }
                    match signal_of_bit(e.kind) {
                        Some(signal) => picker.offer(signal, &e.address, || Bytes::from(e.frame)),
                        None => ControlFlow::Continue(()),
                    }
                });
                if let Err(e) = read {
                    tracing::error!(error = %e, "journal read for a history failed");
                }
                let history = picker.finish();
                shared.with_core(|core, now| core.history_ready(conn, hold, history, now));
            }
        }
        ReaderRx::Replay(rx) => {
            while let Ok(r) = rx.recv() {
                let end = match replay(shared, journal, &r, &stopping) {
                    Ok(()) => ReplayEnd::Done {
                        pattern: r.replay.pattern.clone(),
                        ack: r.ack,
                    },
                    Err(why) => ReplayEnd::Failed(why),
                };
                shared.with_core(|core, now| core.replay_ready(r.conn, Vec::new(), Some(end), now));
            }
        }
    }
}

/// Sends a REPLAY's answer a slice at a time, waiting while the connection's queue is full
/// (or its output held for a history).
fn replay(
    shared: &Shared,
    journal: &Journal,
    r: &ReplayRequest<Link>,
    stopping: &dyn Fn() -> bool,
) -> Result<(), String> {
    let start = match r.replay.from {
        Some(t) => match journal.seek_time(t).map_err(|e| e.to_string())? {
            Some(seq) => seq,
            None => return Ok(()),
        },
        None => 0,
    };
    let limit = r.replay.limit.map_or(usize::MAX, |n| n as usize);
    let mut sent = 0usize;
    let mut slice: Vec<Past> = Vec::new();
    let mut slice_bytes = 0usize;
    let mut scanned = 0u64;
    let mut failure: Option<String> = None;
    journal
        .scan(start, r.upto, 1024, |e| {
            scanned += 1;
            if r.replay.to.is_some_and(|t| e.time > t) || sent >= limit || stopping() {
                return ControlFlow::Break(());
            }
            // A long scan that matches little still notices its connection is gone.
            if scanned.is_multiple_of(65_536) && shared.core.lock().session_id(r.conn).is_none() {
                failure = Some("the connection closed".into());
                return ControlFlow::Break(());
            }
            let Some(signal) = signal_of_bit(e.kind) else {
                return ControlFlow::Continue(());
            };
            if !r.wants(signal, &e.address, e.time) {
                return ControlFlow::Continue(());
            }
            slice_bytes += e.frame.len();
            slice.push(Past {
                signal,
                address: e.address.into(),
                frame: Bytes::from(e.frame),
            });
            sent += 1;
            if slice.len() >= REPLAY_SLICE || slice_bytes >= REPLAY_SLICE_BYTES {
                if let Err(why) = wait_for_room(shared, r) {
                    failure = Some(why);
                    return ControlFlow::Break(());
                }
                let s = std::mem::take(&mut slice);
                slice_bytes = 0;
                shared.with_core(|core, now| core.replay_ready(r.conn, s, None, now));
            }
            ControlFlow::Continue(())
        })
        .map_err(|e| e.to_string())?;
    if let Some(why) = failure {
        return Err(why);
    }
    if !slice.is_empty() {
        wait_for_room(shared, r)?;
        shared.with_core(|core, now| core.replay_ready(r.conn, slice, None, now));
    }
    Ok(())
}

/// Waits while the connection has a full queue or its output is held; gives up once it is
/// gone, the server stops, or nothing was read for [`REPLAY_STALL`].
fn wait_for_room(shared: &Shared, r: &ReplayRequest<Link>) -> Result<(), String> {
    let Link::Wire(outbox) = &r.to else {
        return Ok(());
    };
    let started = std::time::Instant::now();
    let mut last = outbox.depth();
    let mut progress = started;
    let mut waited = 0u32;
    loop {
        if outbox.closing().is_some() {
            return Err("the connection closed".into());
        }
        let depth = outbox.depth();
        if depth.1 <= REPLAY_QUEUE_BYTES
            && depth.0 <= REPLAY_QUEUE_FRAMES
            && !shared.core.lock().history_held(r.conn)
        {
            return Ok(());
        }
        if depth != last {
            last = depth;
            progress = std::time::Instant::now();
        }
        if progress.elapsed() >= REPLAY_STALL {
            return Err(format!(
                "the connection read nothing for {} s",
                REPLAY_STALL.as_secs()
            ));
        }
        waited += 1;
        if waited.is_multiple_of(100) {
            if shared.core.lock().session_id(r.conn).is_none() {
                return Err("the connection closed".into());
            }
            if shared
                .journal
                .as_ref()
                .is_some_and(|j| j.status.stopping.load(Ordering::Relaxed))
            {
                return Err("the router is stopping".into());
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The journal's and history's counters for `/metrics`.
pub(crate) fn metrics(
    o: &mut String,
    journal: Option<&Sender>,
    m: &crate::core::Metrics,
    (ring_entries, ring_bytes): (usize, usize),
) {
    use super::{write_counter, write_gauge};
    let counters = [
        (
            "clasp_journaled_total",
            "Broadcasts handed to the journal.",
            m.journaled,
        ),
        (
            "clasp_history_requests_total",
            "Subscriptions that asked for history.",
            m.history_requests,
        ),
        (
            "clasp_history_sent_total",
            "Broadcasts sent as history.",
            m.history_sent,
        ),
        (
            "clasp_history_late_total",
            "Histories given up (not read within 10 s, or over 16 MiB of updates waited behind them).",
            m.history_late,
        ),
        ("clasp_replays_total", "REPLAYs accepted.", m.replays),
        (
            "clasp_replayed_total",
            "Entries sent in answer to REPLAYs.",
            m.replayed,
        ),
    ];
    for (name, help, v) in counters {
        write_counter(o, name, help, v);
    }
    write_gauge(
        o,
        "clasp_history_kept",
        "Recent broadcasts kept in memory for history (without a journal).",
        ring_entries as u64,
    );
    write_gauge(
        o,
        "clasp_history_kept_bytes",
        "Bytes of the recent broadcasts kept for history.",
        ring_bytes as u64,
    );
    let Some(j) = journal else {
        return;
    };
    let s = &j.status;
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let counters = [
        (
            "clasp_journal_written_total",
            "Entries written to the journal.",
            load(&s.written),
        ),
        (
            "clasp_journal_dropped_total",
            "Entries lost: the journal could not keep up (over 2,000,000 waiting) or a write failed.",
            load(&s.dropped),
        ),
        (
            "clasp_journal_write_errors_total",
            "Failed journal writes.",
            load(&s.write_errors),
        ),
        (
            "clasp_journal_trimmed_total",
            "Entries removed by the journal's retention.",
            load(&s.trimmed),
        ),
        (
            "clasp_journal_compactions_total",
            "Times the journal file was compacted.",
            load(&s.compactions),
        ),
    ];
    for (name, help, v) in counters {
        write_counter(o, name, help, v);
    }
    let gauges = [
        (
            "clasp_journal_entries",
            "Entries in the journal.",
            load(&s.entries),
        ),
        (
            "clasp_journal_bytes",
            "Bytes of entries in the journal.",
            load(&s.bytes),
        ),
        (
            "clasp_journal_queued",
            "Entries waiting to be written to the journal.",
            load(&s.queued),
        ),
    ];
    for (name, help, v) in gauges {
        write_gauge(o, name, help, v);
    }
}
