//! The journal in its own redb file.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard};

use redb::{
    Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition, TableError,
};

use crate::StoreError;
use crate::journal::{
    Entry, EntryRef, JournalStats, Retention, decode_entry, encode_entry, entry_time,
};
use crate::redb_store::{check_not_cut_short, create_dir, db_error, open_database};

/// Entries: sequence → stored entry.
const ENTRIES: TableDefinition<'static, u64, &'static [u8]> =
    TableDefinition::new("journal_entries");
/// Totals kept beside the entries: `bytes`.
const TOTALS: TableDefinition<'static, &'static str, u64> = TableDefinition::new("journal_totals");

/// Most entries removed by one trim transaction (the rest at the next trim).
const TRIM_BATCH: usize = 200_000;
/// The file is compacted once this many bytes were trimmed since the last compaction and they
/// are more than what is left.
const COMPACT_AFTER: u64 = 64 << 20;

/// The journal in a redb file (see [`crate::Journal`]).
pub struct RedbJournal {
    /// Compaction needs the database alone; reads and appends share it.
    db: RwLock<Database>,
    path: PathBuf,
    stats: Mutex<JournalStats>,
    /// Bytes trimmed since the last compaction.
    freed: Mutex<u64>,
}

impl std::fmt::Debug for RedbJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbJournal")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl RedbJournal {
    /// Opens or creates the journal file at `path`.
    pub(crate) fn open(path: &Path) -> Result<RedbJournal, StoreError> {
        if let Some(dir) = path.parent() {
            create_dir(dir)?;
        }
        check_not_cut_short(path)?;
        let db = open_database(path)?;
        let stats = read_stats(&db, path)?;
        Ok(RedbJournal {
            db: RwLock::new(db),
            path: path.to_path_buf(),
            stats: Mutex::new(stats),
            freed: Mutex::new(0),
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn db(&self) -> RwLockReadGuard<'_, Database> {
        self.db.read().unwrap_or_else(|e| e.into_inner())
    }

    fn stats_mut(&self) -> MutexGuard<'_, JournalStats> {
        self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn stats(&self) -> JournalStats {
        *self.stats_mut()
    }

    pub(crate) fn append(&self, entries: &[EntryRef<'_>]) -> Result<(), StoreError> {
        let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
            return Ok(());
        };
        let path = &self.path;
        let db = self.db();
        let txn = db.begin_write().map_err(db_error(path, "begin write"))?;
        let mut added = 0u64;
        {
            let mut table = txn
                .open_table(ENTRIES)
                .map_err(db_error(path, "opening the journal"))?;
            let mut buf = Vec::new();
            for e in entries {
                encode_entry(e, &mut buf);
                added += buf.len() as u64;
                table
                    .insert(e.seq, buf.as_slice())
                    .map_err(db_error(path, "journal append"))?;
            }
            let mut totals = txn
                .open_table(TOTALS)
                .map_err(db_error(path, "opening the journal totals"))?;
            let bytes = self.stats().bytes + added;
            totals
                .insert("bytes", bytes)
                .map_err(db_error(path, "journal totals"))?;
        }
        txn.commit().map_err(db_error(path, "journal commit"))?;
        let mut s = self.stats_mut();
        s.entries += entries.len() as u64;
        s.bytes += added;
        if s.first.is_none() {
            s.first = Some((first.seq, first.time));
        }
        s.last = Some((last.seq, last.time));
        Ok(())
    }

    pub(crate) fn trim(&self, r: &Retention, now: u64) -> Result<u64, StoreError> {
        let stats = self.stats();
        let cutoff = r.max_age_us.map(|age| now.saturating_sub(age));
        let path = &self.path;
        let db = self.db();
        // Find how far to cut (reading), then cut (writing).
        let (cut, n, freed) = {
            let txn = db.begin_read().map_err(db_error(path, "begin read"))?;
            let table = match txn.open_table(ENTRIES) {
                Ok(t) => t,
                Err(TableError::TableDoesNotExist(_)) => return Ok(0),
                Err(e) => return Err(db_error(path, "opening the journal")(e)),
            };
            let (mut entries, mut bytes) = (stats.entries, stats.bytes);
            let (mut cut, mut n, mut freed) = (None, 0u64, 0u64);
            for item in table.iter().map_err(db_error(path, "journal read"))? {
                let (k, v) = item.map_err(db_error(path, "journal read"))?;
                let v = v.value();
                let old = cutoff.is_some_and(|c| entry_time(v).is_some_and(|t| t < c));
                if !(old || entries > r.max_entries || bytes > r.max_bytes)
                    || n as usize >= TRIM_BATCH
                {
                    break;
                }
                let len = v.len() as u64;
                entries -= 1;
                bytes = bytes.saturating_sub(len);
                freed += len;
                n += 1;
                cut = Some(k.value());
            }
            (cut, n, freed)
        };
        let Some(cut) = cut else {
            return Ok(0);
        };
        let txn = db.begin_write().map_err(db_error(path, "begin write"))?;
        let first = {
            let mut table = txn
                .open_table(ENTRIES)
                .map_err(db_error(path, "opening the journal"))?;
            table
                .retain_in(..=cut, |_, _| false)
                .map_err(db_error(path, "journal trim"))?;
            let mut totals = txn
                .open_table(TOTALS)
                .map_err(db_error(path, "opening the journal totals"))?;
            totals
                .insert("bytes", stats.bytes.saturating_sub(freed))
                .map_err(db_error(path, "journal totals"))?;
            let first = table.first().map_err(db_error(path, "journal read"))?;
            first.map(|(k, v)| (k.value(), entry_time(v.value()).unwrap_or(0)))
        };
        txn.commit().map_err(db_error(path, "journal commit"))?;
        drop(db);
        {
            let mut s = self.stats_mut();
            s.entries = s.entries.saturating_sub(n);
            s.bytes = s.bytes.saturating_sub(freed);
            s.first = first;
            if first.is_none() {
                s.last = None;
            }
            s.trimmed += n;
        }
        let compact = {
            let mut f = self.freed.lock().unwrap_or_else(|e| e.into_inner());
            *f += freed;
            let due = *f >= COMPACT_AFTER && *f > self.stats().bytes;
            if due {
                *f = 0;
            }
            due
        };
        if compact {
            self.compact()?;
        }
        Ok(n)
    }

    /// Gives the file's free pages back to the file system.
    fn compact(&self) -> Result<(), StoreError> {
        let mut db = self.db.write().unwrap_or_else(|e| e.into_inner());
        db.compact()
            .map_err(|e| db_error(&self.path, "journal compaction")(redb::Error::from(e)))?;
        self.stats_mut().compactions += 1;
        Ok(())
    }

    pub(crate) fn seek_time(&self, time: u64) -> Result<Option<u64>, StoreError> {
        let stats = self.stats();
        let (Some((mut lo, t0)), Some((mut hi, t1))) = (stats.first, stats.last) else {
            return Ok(None);
        };
        if time <= t0 {
            return Ok(Some(lo));
        }
        if time > t1 {
            return Ok(None);
        }
        let path = &self.path;
        let db = self.db();
        let txn = db.begin_read().map_err(db_error(path, "begin read"))?;
        let table = txn
            .open_table(ENTRIES)
            .map_err(db_error(path, "opening the journal"))?;
        // The first entry at or after `time`: entries may be missing (trimmed, or sequence
        // gaps), so each probe reads the first entry at or after the middle key.
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let probe = table
                .range(mid..)
                .map_err(db_error(path, "journal read"))?
                .next()
                .transpose()
                .map_err(db_error(path, "journal read"))?;
            match probe {
                Some((k, v)) if entry_time(v.value()).unwrap_or(0) < time => lo = k.value() + 1,
                Some(_) => hi = mid,
                None => return Ok(None),
            }
        }
        let found = table
            .range(lo..)
            .map_err(db_error(path, "journal read"))?
            .next()
            .transpose()
            .map_err(db_error(path, "journal read"))?;
        Ok(found.map(|(k, _)| k.value()))
    }

    /// Up to `max` entries between `from` and `upto`, oldest first (or newest first if `back`).
    pub(crate) fn read(
        &self,
        from: u64,
        upto: u64,
        max: usize,
        back: bool,
    ) -> Result<Vec<Entry>, StoreError> {
        let path = &self.path;
        let db = self.db();
        let txn = db.begin_read().map_err(db_error(path, "begin read"))?;
        let table = match txn.open_table(ENTRIES) {
            Ok(t) => t,
            Err(TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(db_error(path, "opening the journal")(e)),
        };
        let range = table
            .range(from..=upto)
            .map_err(db_error(path, "journal read"))?;
        let mut out = Vec::with_capacity(max.min(4096));
        let mut push = |item: Result<
            (redb::AccessGuard<'_, u64>, redb::AccessGuard<'_, &[u8]>),
            redb::StorageError,
        >|
         -> Result<bool, StoreError> {
            let (k, v) = item.map_err(db_error(path, "journal read"))?;
            let seq = k.value();
            let e = decode_entry(seq, v.value()).ok_or_else(|| StoreError::Corrupt {
                path: path.to_path_buf(),
                address: format!("journal entry {seq}"),
                detail: "not a journal entry".to_owned(),
            })?;
            out.push(e);
            Ok(out.len() < max)
        };
        if back {
            for item in range.rev() {
                if !push(item)? {
                    break;
                }
            }
        } else {
            for item in range {
                if !push(item)? {
                    break;
                }
            }
        }
        Ok(out)
    }
}

fn read_stats(db: &Database, path: &Path) -> Result<JournalStats, StoreError> {
    let txn = db.begin_read().map_err(db_error(path, "begin read"))?;
    let table = match txn.open_table(ENTRIES) {
        Ok(t) => t,
        Err(TableError::TableDoesNotExist(_)) => return Ok(JournalStats::default()),
        Err(e) => return Err(db_error(path, "opening the journal")(e)),
    };
    let entries = table.len().map_err(db_error(path, "journal read"))?;
    let ends = |e: Option<(redb::AccessGuard<'_, u64>, redb::AccessGuard<'_, &[u8]>)>| {
        e.map(|(k, v)| (k.value(), entry_time(v.value()).unwrap_or(0)))
    };
    let first = ends(table.first().map_err(db_error(path, "journal read"))?);
    let last = ends(table.last().map_err(db_error(path, "journal read"))?);
    let bytes = match txn.open_table(TOTALS) {
        Ok(t) => t
            .get("bytes")
            .map_err(db_error(path, "journal read"))?
            .map_or(0, |v| v.value()),
        Err(TableError::TableDoesNotExist(_)) => 0,
        Err(e) => return Err(db_error(path, "opening the journal totals")(e)),
    };
    Ok(JournalStats {
        entries,
        bytes,
        first,
        last,
        trimmed: 0,
        compactions: 0,
    })
}
