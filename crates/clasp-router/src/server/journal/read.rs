//! The journal's readers: histories (newest first, through the picker the core made) and
//! REPLAYs (oldest first, a slice at a time, paced by the connection's queue).

use std::ops::ControlFlow;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::Duration;

use bytes::Bytes;
use clasp_store::Journal;

use super::super::{Link, Shared};
use crate::core::{JournalRequest, Past, ReplayEnd, ReplayRequest, signal_of_bit};

/// Entries, and bytes of frames, per slice of a REPLAY's answer at most.
const REPLAY_SLICE: usize = 512;
const REPLAY_SLICE_BYTES: usize = 256 << 10;
/// A REPLAY waits while the connection has more than this many bytes or frames queued.
const REPLAY_QUEUE_BYTES: usize = 1 << 20;
const REPLAY_QUEUE_FRAMES: usize = 8_192;
/// A REPLAY whose connection reads nothing for this long is given up.
const REPLAY_STALL: Duration = Duration::from_secs(30);

pub(super) enum ReaderRx {
    History(mpsc::Receiver<JournalRequest<Link>>),
    Replay(mpsc::Receiver<ReplayRequest<Link>>),
}

pub(super) fn read_loop(shared: &Shared, journal: &Journal, rx: ReaderRx) {
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
