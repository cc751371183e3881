//! The journal in memory.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};

use crate::journal::{Entry, EntryRef, JournalStats, Retention};

/// The journal in memory (see [`crate::Journal`]): a queue of entries, bounded like the file.
#[derive(Debug, Default)]
pub struct MemoryJournal {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    entries: VecDeque<Entry>,
    stats: JournalStats,
}

/// Bytes an entry is counted for (as the file would store it).
fn size(e: &Entry) -> u64 {
    (12 + e.address.len() + e.frame.len()) as u64
}

impl MemoryJournal {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn stats(&self) -> JournalStats {
        self.lock().stats
    }

    pub(crate) fn append(&self, entries: &[EntryRef<'_>]) {
        let mut g = self.lock();
        for e in entries {
            let e = Entry {
                seq: e.seq,
                time: e.time,
                kind: e.kind,
                address: e.address.to_owned(),
                frame: e.frame.to_vec(),
            };
            g.stats.entries += 1;
            g.stats.bytes += size(&e);
            if g.stats.first.is_none() {
                g.stats.first = Some((e.seq, e.time));
            }
            g.stats.last = Some((e.seq, e.time));
            g.entries.push_back(e);
        }
    }

    pub(crate) fn trim(&self, r: &Retention, now: u64) -> u64 {
        let cutoff = r.max_age_us.map(|age| now.saturating_sub(age));
        let mut g = self.lock();
        let mut n = 0;
        while let Some(front) = g.entries.front() {
            let old = cutoff.is_some_and(|c| front.time < c);
            if !(old || g.stats.entries > r.max_entries || g.stats.bytes > r.max_bytes) {
                break;
            }
            let len = size(front);
            g.entries.pop_front();
            g.stats.entries -= 1;
            g.stats.bytes = g.stats.bytes.saturating_sub(len);
            n += 1;
        }
        g.stats.trimmed += n;
        g.stats.first = g.entries.front().map(|e| (e.seq, e.time));
        if g.entries.is_empty() {
            g.stats.last = None;
        }
        n
    }

    /// Index of the first entry whose sequence is at least `seq`.
    fn index_of(entries: &VecDeque<Entry>, seq: u64) -> usize {
        entries.partition_point(|e| e.seq < seq)
    }

    pub(crate) fn seek_time(&self, time: u64) -> Option<u64> {
        let g = self.lock();
        let i = g.entries.partition_point(|e| e.time < time);
        g.entries.get(i).map(|e| e.seq)
    }

    pub(crate) fn read(&self, from: u64, upto: u64, max: usize, back: bool) -> Vec<Entry> {
        let g = self.lock();
        let start = Self::index_of(&g.entries, from);
        let end = g.entries.partition_point(|e| e.seq <= upto);
        if start >= end {
            return Vec::new();
        }
        if back {
            g.entries
                .range(start..end)
                .rev()
                .take(max)
                .cloned()
                .collect()
        } else {
            g.entries.range(start..end).take(max).cloned().collect()
        }
    }
}
