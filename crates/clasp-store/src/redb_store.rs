//! The embedded default store: one redb database file.

use std::fmt;
use std::io::ErrorKind;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{
    Database, DatabaseError, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    StorageError, TableDefinition, TableError, TableHandle, WriteTransaction,
};

use crate::{
    Batch, RecordBatch, RecordTable, Store, StoreError, StoredParam, record, validate_table_name,
};

/// The name of the database file inside the data directory.
pub const STATE_FILE_NAME: &str = "state.redb";

/// The database format version this build reads and writes (kept in [`META_TABLE`]).
pub const FORMAT_VERSION: u64 = 2;

/// The params table: address → record (see the [`RedbStore`] docs for the record layout).
pub const PARAMS_TABLE: TableDefinition<'static, &'static str, &'static [u8]> =
    TableDefinition::new("params");

/// The metadata table; key [`FORMAT_VERSION_KEY`] holds the format version.
pub const META_TABLE: TableDefinition<'static, &'static str, u64> = TableDefinition::new("meta");

/// The prefix of the redb table that holds record table `name`: `records.name`.
pub const RECORDS_TABLE_PREFIX: &str = "records.";

/// The key of the format version in [`META_TABLE`].
pub const FORMAT_VERSION_KEY: &str = "format_version";

/// The embedded default: one redb database file, `dir/state.redb`.
///
/// The database has two tables: [`META_TABLE`] holds the format version ([`FORMAT_VERSION`]),
/// and [`PARAMS_TABLE`] maps each address to one record, all integers big-endian:
/// a version byte (2), the revision (u64), the timestamp (u64), a has-expiry flag (u8, 0 or 1)
/// followed by `expires_at` (u64) when set, the writer as a u16 length and UTF-8 bytes, a
/// has-attachment flag (u8) followed, when set, by the attachment's kind (u8 length, UTF-8) and
/// bytes (u32 length), and finally the value as one tagged value of the CLASP binary encoding.
/// Format 1 databases (records of version 1, without the attachment flag) are read, and marked
/// format 2 when opened.
///
/// Each [`Store::records`] table `name` is the redb table `records.name` (string key → bytes)
/// in the same file; each of its writes is its own transaction, committed like `apply`.
///
/// Each [`Store::apply`] is one write transaction committed with [`Durability::Immediate`]
/// (fsync'd before it returns). The database is opened with redb's integrity check, so a file
/// damaged outside redb is reported as an error at open instead of being trusted.
pub struct RedbStore {
    db: Arc<Database>,
    path: PathBuf,
    /// Reused record buffer.
    scratch: Vec<u8>,
}

impl fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedbStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl RedbStore {
    /// Opens (creating if needed) `dir/state.redb`, creating `dir` if needed.
    ///
    /// Fails with [`StoreError::InUse`] if another process (or another `RedbStore` in this one)
    /// has the database open, [`StoreError::Truncated`] if the file exists but is empty or cut
    /// short, [`StoreError::NotADatabase`] if it is not a CLASP state database, and
    /// [`StoreError::UnsupportedFormat`] if it was written in a newer format.
    pub fn open(dir: &Path) -> Result<RedbStore, StoreError> {
        create_dir(dir)?;
        let path = dir.join(STATE_FILE_NAME);
        check_not_cut_short(&path)?;
        let db = open_database(&path)?;
        check_format(&db, &path)?;
        Ok(RedbStore {
            db: Arc::new(db),
            path,
            scratch: Vec::new(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the batch into `txn` (without committing).
    fn write_batch(&mut self, txn: &WriteTransaction, batch: &Batch) -> Result<(), StoreError> {
        let path = &self.path;
        let mut table = txn
            .open_table(PARAMS_TABLE)
            .map_err(db_error(path, "opening the params table"))?;
        let buf = &mut self.scratch;
        for param in &batch.upserts {
            buf.clear();
            record::encode(param, buf).map_err(|detail| StoreError::InvalidParam {
                address: param.address.clone(),
                detail,
            })?;
            table
                .insert(param.address.as_str(), buf.as_slice())
                .map_err(db_error(path, "insert"))?;
        }
        for address in &batch.deletes {
            table
                .remove(address.as_str())
                .map_err(db_error(path, "delete"))?;
        }
        // Don't keep one huge value's buffer around for ever.
        if buf.capacity() > 1 << 20 {
            *buf = Vec::new();
        }
        Ok(())
    }
}

impl Store for RedbStore {
    fn load(&self) -> Result<Vec<StoredParam>, StoreError> {
        let txn = self
            .db
            .begin_read()
            .map_err(db_error(&self.path, "begin read"))?;
        let table = match txn.open_table(PARAMS_TABLE) {
            Ok(table) => table,
            Err(TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(db_error(&self.path, "opening the params table")(e)),
        };
        let len = table
            .len()
            .map_err(db_error(&self.path, "counting params"))?;
        let mut params = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        let iter = table
            .iter()
            .map_err(db_error(&self.path, "reading params"))?;
        for entry in iter {
            let (key, value) = entry.map_err(db_error(&self.path, "reading params"))?;
            let address = key.value();
            let param =
                record::decode(address, value.value()).map_err(|detail| StoreError::Corrupt {
                    path: self.path.clone(),
                    address: address.to_owned(),
                    detail,
                })?;
            params.push(param);
        }
        Ok(params)
    }

    fn apply(&mut self, batch: &Batch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut txn = self
            .db
            .begin_write()
            .map_err(db_error(&self.path, "begin write"))?;
        // Immediate is redb's default; set it anyway, as apply promises durability.
        txn.set_durability(Durability::Immediate)
            .map_err(db_error(&self.path, "setting durability"))?;
        if let Err(e) = self.write_batch(&txn, batch) {
            // Dropping would abort too; an abort error changes nothing for the caller.
            let _ = txn.abort();
            return Err(e);
        }
        txn.commit().map_err(db_error(&self.path, "commit"))
    }

    fn describe(&self) -> String {
        format!("redb:{}", self.path.display())
    }

    fn records(&self, name: &str) -> Result<Arc<dyn RecordTable>, StoreError> {
        validate_table_name(name)?;
        let table = RedbRecordTable {
            db: self.db.clone(),
            path: self.path.clone(),
            table: format!("{RECORDS_TABLE_PREFIX}{name}"),
        };
        // Create the table now, so a type clash or I/O problem shows at once.
        table.apply(&RecordBatch::default())?;
        Ok(Arc::new(table))
    }
}

/// A record table inside a [`RedbStore`]'s database.
struct RedbRecordTable {
    db: Arc<Database>,
    path: PathBuf,
    /// The redb table name, `records.<name>`.
    table: String,
}

impl fmt::Debug for RedbRecordTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedbRecordTable")
            .field("path", &self.path)
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

impl RedbRecordTable {
    fn definition(&self) -> TableDefinition<'_, &'static str, &'static [u8]> {
        TableDefinition::new(self.table.as_str())
    }
}

impl RecordTable for RedbRecordTable {
    fn load_all(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let txn = self
            .db
            .begin_read()
            .map_err(db_error(&self.path, "begin read"))?;
        let table = match txn.open_table(self.definition()) {
            Ok(table) => table,
            Err(TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(db_error(&self.path, "opening a record table")(e)),
        };
        let iter = table
            .iter()
            .map_err(db_error(&self.path, "reading records"))?;
        let mut out = Vec::new();
        for entry in iter {
            let (key, value) = entry.map_err(db_error(&self.path, "reading records"))?;
            out.push((key.value().to_owned(), value.value().to_vec()));
        }
        Ok(out)
    }

    fn apply(&self, batch: &RecordBatch) -> Result<(), StoreError> {
        let path = &self.path;
        let mut txn = self
            .db
            .begin_write()
            .map_err(db_error(path, "begin write"))?;
        txn.set_durability(Durability::Immediate)
            .map_err(db_error(path, "setting durability"))?;
        let written = (|| {
            let mut table = txn
                .open_table(self.definition())
                .map_err(db_error(path, "opening a record table"))?;
            for (key, value) in &batch.puts {
                table
                    .insert(key.as_str(), value.as_slice())
                    .map_err(db_error(path, "insert record"))?;
            }
            for key in &batch.deletes {
                table
                    .remove(key.as_str())
                    .map_err(db_error(path, "delete record"))?;
            }
            Ok(())
        })();
        if let Err(e) = written {
            let _ = txn.abort();
            return Err(e);
        }
        txn.commit().map_err(db_error(path, "commit"))
    }
}

/// Wraps a redb error from `operation` on the database at `path`.
pub(crate) fn db_error<E: Into<redb::Error>>(
    path: &Path,
    operation: &'static str,
) -> impl FnOnce(E) -> StoreError {
    move |error| StoreError::Database {
        path: path.to_path_buf(),
        operation,
        error: Box::new(error.into()),
    }
}

pub(crate) fn create_dir(dir: &Path) -> Result<(), StoreError> {
    let fail = |error| StoreError::CreateDir {
        path: dir.to_path_buf(),
        error,
    };
    if dir.exists() && !dir.is_dir() {
        return Err(fail(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            "it exists and is not a directory",
        )));
    }
    std::fs::create_dir_all(dir).map_err(fail)
}

/// The magic number a redb file starts with (part of its on-disk format).
const REDB_MAGIC: [u8; 9] = [b'r', b'e', b'd', b'b', 0x1A, 0x0A, 0xA9, 0x0D, 0x0A];

/// The size of a redb file header (magic number and layout in 64 bytes, then two 128-byte
/// commit slots); no database is shorter.
const REDB_HEADER_BYTES: u64 = 64 + 2 * 128;

/// Refuses an existing state file that is empty, or shorter than a header and the start of a
/// database (the magic number, or the zeros redb writes before it), which redb would otherwise
/// take for a new database (empty) or fail on obscurely. A missing file is fine: it is created.
pub(crate) fn check_not_cut_short(path: &Path) -> Result<(), StoreError> {
    let truncated = |len| StoreError::Truncated {
        path: path.to_path_buf(),
        len,
    };
    // Anything unreadable here is left for redb to report.
    let len = match std::fs::metadata(path) {
        Ok(m) if m.is_file() => m.len(),
        _ => return Ok(()),
    };
    if len == 0 {
        return Err(truncated(0));
    }
    if len >= REDB_HEADER_BYTES {
        return Ok(());
    }
    let Ok(start) = std::fs::read(path) else {
        return Ok(());
    };
    let n = start.len().min(REDB_MAGIC.len());
    let begins_a_database = start.get(..n) == REDB_MAGIC.get(..n);
    if begins_a_database || start.iter().all(|b| *b == 0) {
        return Err(truncated(len));
    }
    // Short, but something else altogether: redb calls it not a database.
    Ok(())
}

pub(crate) fn open_database(path: &Path) -> Result<Database, StoreError> {
    // redb's integrity check turns a file damaged outside redb into an error rather than a
    // panic; the catch is a last line of defence so a bad file can never take the process down.
    let opened = catch_unwind(AssertUnwindSafe(|| {
        Database::builder()
            .set_check_integrity_on_open(true)
            .create(path)
    }));
    let result = match opened {
        Ok(result) => result,
        Err(panic) => {
            let detail = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "redb panicked while opening it".to_owned());
            return Err(StoreError::NotADatabase {
                path: path.to_path_buf(),
                detail,
            });
        }
    };
    result.map_err(|e| match e {
        DatabaseError::DatabaseAlreadyOpen | DatabaseError::LockProtocolMismatch => {
            StoreError::InUse {
                path: path.to_path_buf(),
            }
        }
        DatabaseError::Storage(StorageError::Corrupted(detail)) => StoreError::NotADatabase {
            path: path.to_path_buf(),
            detail,
        },
        // redb reports a file that does not start with its magic number as invalid data.
        DatabaseError::Storage(StorageError::Io(e)) if e.kind() == ErrorKind::InvalidData => {
            StoreError::NotADatabase {
                path: path.to_path_buf(),
                detail: e.to_string(),
            }
        }
        other => StoreError::Open {
            path: path.to_path_buf(),
            error: Box::new(other.into()),
        },
    })
}

/// Checks the format version, initialising a new database.
fn check_format(db: &Database, path: &Path) -> Result<(), StoreError> {
    let open_error = |error: redb::Error| StoreError::Open {
        path: path.to_path_buf(),
        error: Box::new(error),
    };
    let txn = db.begin_read().map_err(|e| open_error(e.into()))?;
    let version = match txn.open_table(META_TABLE) {
        Ok(meta) => meta
            .get(FORMAT_VERSION_KEY)
            .map_err(|e| open_error(e.into()))?
            .map(|v| v.value()),
        Err(TableError::TableDoesNotExist(_)) => None,
        Err(TableError::TableTypeMismatch { .. }) => {
            return Err(StoreError::NotADatabase {
                path: path.to_path_buf(),
                detail: "it is a redb database with an unexpected `meta` table".to_owned(),
            });
        }
        Err(e) => return Err(open_error(e.into())),
    };
    match version {
        Some(FORMAT_VERSION) => Ok(()),
        // Format 1 records are read as they are; new writes are version 2 records.
        Some(1) => {
            drop(txn);
            let txn = db.begin_write().map_err(|e| open_error(e.into()))?;
            {
                let mut meta = txn
                    .open_table(META_TABLE)
                    .map_err(|e| open_error(e.into()))?;
                meta.insert(FORMAT_VERSION_KEY, FORMAT_VERSION)
                    .map_err(|e| open_error(e.into()))?;
            }
            txn.commit().map_err(|e| open_error(e.into()))
        }
        Some(found) => Err(StoreError::UnsupportedFormat {
            path: path.to_path_buf(),
            found,
            supported: FORMAT_VERSION,
        }),
        None => {
            // A new database, or one that is not ours: refuse to add tables to a foreign one.
            let tables: Vec<String> = txn
                .list_tables()
                .map_err(|e| open_error(e.into()))?
                .map(|t| t.name().to_owned())
                .collect();
            if !tables.is_empty() {
                return Err(StoreError::NotADatabase {
                    path: path.to_path_buf(),
                    detail: format!(
                        "it is a redb database without a format version (tables: {})",
                        tables.join(", ")
                    ),
                });
            }
            drop(txn);
            let txn = db.begin_write().map_err(|e| open_error(e.into()))?;
            {
                let mut meta = txn
                    .open_table(META_TABLE)
                    .map_err(|e| open_error(e.into()))?;
                meta.insert(FORMAT_VERSION_KEY, FORMAT_VERSION)
                    .map_err(|e| open_error(e.into()))?;
                txn.open_table(PARAMS_TABLE)
                    .map_err(|e| open_error(e.into()))?;
            }
            txn.commit().map_err(|e| open_error(e.into()))
        }
    }
}
