//! The journal: an append-only log of what the router broadcast (SETs with their revision,
//! PUBLISHes), numbered by a sequence, bounded by age, count and bytes.
//!
//! The router appends from one thread; readers (history, REPLAY) read from others at the same
//! time and see every entry appended before they began. Two backends behave alike:
//! [`Journal::open`] keeps the log in its own redb file (`dir/journal.redb`, separate from the
//! state so the two never wait for each other's transactions), [`Journal::memory`] in memory.
//!
//! An entry is stored as it was broadcast: the frame, with the address and signal kind beside it
//! for queries, and the router's wall-clock time. Times never go backwards in the log (the router
//! stamps each entry with the later of its clock and the previous entry's time), so a time range
//! is found by binary search on the sequence.

use std::ops::ControlFlow;
use std::path::Path;

use crate::StoreError;
use crate::journal_memory::MemoryJournal;
use crate::journal_redb::RedbJournal;

/// The journal file's name inside the data directory.
pub const JOURNAL_FILE_NAME: &str = "journal.redb";

/// The version byte that starts every stored entry.
pub(crate) const ENTRY_VERSION: u8 = 1;

/// Largest address an entry may carry (the wire's own limit).
const MAX_ADDRESS: usize = u16::MAX as usize;

/// An entry to append, borrowed from the caller.
#[derive(Debug, Clone, Copy)]
pub struct EntryRef<'a> {
    /// Its sequence number: larger than every earlier entry's.
    pub seq: u64,
    /// Router wall-clock time, µs since the Unix epoch (never less than the previous entry's).
    pub time: u64,
    /// The signal kind as a bit of the SUBSCRIBE/REPLAY type mask (0x01 param, 0x02 event,
    /// 0x04 stream, 0x08 gesture, 0x10 timeline).
    pub kind: u8,
    /// The address.
    pub address: &'a str,
    /// The frame as broadcast.
    pub frame: &'a [u8],
}

/// An entry read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its sequence number.
    pub seq: u64,
    /// Router wall-clock time, µs.
    pub time: u64,
    /// The signal kind bit (see [`EntryRef::kind`]).
    pub kind: u8,
    /// The address.
    pub address: String,
    /// The frame as broadcast.
    pub frame: Vec<u8>,
}

impl Entry {
    /// The entry as a borrowed [`EntryRef`].
    pub fn as_ref(&self) -> EntryRef<'_> {
        EntryRef {
            seq: self.seq,
            time: self.time,
            kind: self.kind,
            address: &self.address,
            frame: &self.frame,
        }
    }
}

/// How much the journal keeps; the oldest entries go first when any bound is passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Entries older than this many µs are removed.
    pub max_age_us: Option<u64>,
    /// At most this many entries.
    pub max_entries: u64,
    /// At most this many bytes of stored entries.
    pub max_bytes: u64,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            max_age_us: Some(24 * 3600 * 1_000_000),
            max_entries: 50_000_000,
            max_bytes: 1 << 30,
        }
    }
}

/// What the journal holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct JournalStats {
    /// Entries held.
    pub entries: u64,
    /// Bytes of stored entries.
    pub bytes: u64,
    /// The oldest entry's sequence and time.
    pub first: Option<(u64, u64)>,
    /// The newest entry's sequence and time.
    pub last: Option<(u64, u64)>,
    /// Entries removed by retention since the journal was opened.
    pub trimmed: u64,
    /// Times the file was compacted since it was opened.
    pub compactions: u64,
}

/// The journal, in a redb file or in memory.
#[derive(Debug)]
pub enum Journal {
    /// In its own redb file.
    Redb(RedbJournal),
    /// In memory (lost at exit).
    Memory(MemoryJournal),
}

impl Journal {
    /// Opens (or creates) the journal in `dir` ([`JOURNAL_FILE_NAME`]).
    pub fn open(dir: &Path) -> Result<Journal, StoreError> {
        RedbJournal::open(&dir.join(JOURNAL_FILE_NAME)).map(Journal::Redb)
    }

    /// A journal in memory.
    pub fn memory() -> Journal {
        Journal::Memory(MemoryJournal::default())
    }

    /// A short description for logs: the file, or `memory`.
    pub fn describe(&self) -> String {
        match self {
            Journal::Redb(j) => format!("redb:{}", j.path().display()),
            Journal::Memory(_) => "memory".to_owned(),
        }
    }

    /// Appends `entries` (in increasing sequence) in one transaction. Entries whose sequence is
    /// not above the last one held are refused with [`StoreError::Corrupt`]-free
    /// [`StoreError::Invalid`], and nothing is written.
    pub fn append(&self, entries: &[EntryRef<'_>]) -> Result<(), StoreError> {
        check_order(self.stats().last.map(|(s, _)| s), entries)?;
        match self {
            Journal::Redb(j) => j.append(entries),
            Journal::Memory(j) => {
                j.append(entries);
                Ok(())
            }
        }
    }

    /// Removes what `retention` no longer keeps, as of wall-clock `now` (µs); returns how many
    /// entries went. The redb file is compacted when much of it was freed.
    pub fn trim(&self, retention: &Retention, now: u64) -> Result<u64, StoreError> {
        match self {
            Journal::Redb(j) => j.trim(retention, now),
            Journal::Memory(j) => Ok(j.trim(retention, now)),
        }
    }

    /// What the journal holds.
    pub fn stats(&self) -> JournalStats {
        match self {
            Journal::Redb(j) => j.stats(),
            Journal::Memory(j) => j.stats(),
        }
    }

    /// The first sequence whose entry's time is at or after `time` (`None`: none is).
    pub fn seek_time(&self, time: u64) -> Result<Option<u64>, StoreError> {
        match self {
            Journal::Redb(j) => j.seek_time(time),
            Journal::Memory(j) => Ok(j.seek_time(time)),
        }
    }

    /// Calls `f` with the entries from sequence `from` to `upto` (both inclusive), oldest first,
    /// until it breaks. Reads at most `batch` entries per read transaction, so appends go on
    /// meanwhile; entries trimmed while the scan runs are skipped.
    pub fn scan(
        &self,
        from: u64,
        upto: u64,
        batch: usize,
        mut f: impl FnMut(Entry) -> ControlFlow<()>,
    ) -> Result<(), StoreError> {
        let mut next = from;
        while next <= upto {
            let chunk = match self {
                Journal::Redb(j) => j.read(next, upto, batch.max(1), false)?,
                Journal::Memory(j) => j.read(next, upto, batch.max(1), false),
            };
            let Some(last) = chunk.last().map(|e| e.seq) else {
                return Ok(());
            };
            for e in chunk {
                if f(e).is_break() {
                    return Ok(());
                }
            }
            match last.checked_add(1) {
                Some(n) => next = n,
                None => return Ok(()),
            }
        }
        Ok(())
    }

    /// Calls `f` with the entries at or below sequence `upto`, newest first, until it breaks
    /// (reading `batch` entries per transaction).
    pub fn scan_back(
        &self,
        upto: u64,
        batch: usize,
        mut f: impl FnMut(Entry) -> ControlFlow<()>,
    ) -> Result<(), StoreError> {
        let mut top = upto;
        loop {
            let chunk = match self {
                Journal::Redb(j) => j.read(0, top, batch.max(1), true)?,
                Journal::Memory(j) => j.read(0, top, batch.max(1), true),
            };
            let Some(oldest) = chunk.last().map(|e| e.seq) else {
                return Ok(());
            };
            for e in chunk {
                if f(e).is_break() {
                    return Ok(());
                }
            }
            match oldest.checked_sub(1) {
                Some(t) => top = t,
                None => return Ok(()),
            }
        }
    }
}

fn check_order(last: Option<u64>, entries: &[EntryRef<'_>]) -> Result<(), StoreError> {
    let mut prev = last;
    for e in entries {
        if prev.is_some_and(|p| e.seq <= p) {
            return Err(StoreError::Invalid(format!(
                "journal entry {} does not follow entry {}",
                e.seq,
                prev.unwrap_or(0)
            )));
        }
        if e.address.len() > MAX_ADDRESS {
            return Err(StoreError::Invalid(format!(
                "journal entry {}: address of {} bytes",
                e.seq,
                e.address.len()
            )));
        }
        prev = Some(e.seq);
    }
    Ok(())
}

/// Encodes an entry's stored form (without its sequence, which is the key).
pub(crate) fn encode_entry(e: &EntryRef<'_>, out: &mut Vec<u8>) {
    out.clear();
    out.push(ENTRY_VERSION);
    out.push(e.kind);
    out.extend_from_slice(&e.time.to_be_bytes());
    // Checked by `check_order`.
    let len = u16::try_from(e.address.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&e.address.as_bytes()[..usize::from(len)]);
    out.extend_from_slice(e.frame);
}

/// Decodes a stored entry; `None` if the bytes are not one.
pub(crate) fn decode_entry(seq: u64, b: &[u8]) -> Option<Entry> {
    let (&version, rest) = b.split_first()?;
    if version != ENTRY_VERSION {
        return None;
    }
    let (&kind, rest) = rest.split_first()?;
    let time = u64::from_be_bytes(rest.get(..8)?.try_into().ok()?);
    let rest = rest.get(8..)?;
    let len = usize::from(u16::from_be_bytes(rest.get(..2)?.try_into().ok()?));
    let address = std::str::from_utf8(rest.get(2..2 + len)?).ok()?.to_owned();
    let frame = rest.get(2 + len..)?.to_vec();
    Some(Entry {
        seq,
        time,
        kind,
        address,
        frame,
    })
}

/// The time of a stored entry, read without decoding the rest.
pub(crate) fn entry_time(b: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(2..10)?.try_into().ok()?))
}
