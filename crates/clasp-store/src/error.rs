//! The error type of every store.

use std::path::PathBuf;

/// Why a store operation failed.
///
/// Every message says what failed and where (the database path or the param address). The
/// underlying error, where there is one, is part of the message rather than a separate
/// [`std::error::Error::source`], so logging the error once shows everything.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The data directory could not be created.
    #[error("cannot create data directory {}: {error}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// What the OS said.
        error: std::io::Error,
    },
    /// Another process (or another store in this process) has the database open.
    #[error(
        "cannot open state database {}: another clasp server is using this data directory \
         (the database is locked)",
        path.display()
    )]
    InUse {
        /// The database file.
        path: PathBuf,
    },
    /// The file exists but is not a CLASP state database, or is damaged beyond repair.
    #[error(
        "cannot open state database {}: the file is not a CLASP state database or is damaged: {detail}",
        path.display()
    )]
    NotADatabase {
        /// The database file.
        path: PathBuf,
        /// What was wrong with it.
        detail: String,
    },
    /// The file exists but is empty, or shorter than a database header and the start of one:
    /// cut short (a full disk, a failed copy, a crash as it was first written). Opening it
    /// would silently start from an empty state, so it is refused instead.
    #[error(
        "cannot open state database {}: the file is {}, so whatever state it held is lost (a full \
         disk, a failed copy or a crash can do this); to start with an empty state, move the file \
         away (or delete it), or restore it from a backup",
        path.display(),
        cut_short(*.len)
    )]
    Truncated {
        /// The database file.
        path: PathBuf,
        /// Its length in bytes.
        len: u64,
    },
    /// The database records a format version this build does not understand.
    #[error(
        "cannot open state database {}: it has format version {found}, but this build of clasp \
         reads only version {supported} (was it written by a newer clasp?)",
        path.display()
    )]
    UnsupportedFormat {
        /// The database file.
        path: PathBuf,
        /// The version stored in the database.
        found: u64,
        /// The version this build reads and writes.
        supported: u64,
    },
    /// The database could not be opened for another reason (I/O error, permissions, ...).
    #[error("cannot open state database {}: {error}", path.display())]
    Open {
        /// The database file.
        path: PathBuf,
        /// What redb said.
        error: Box<redb::Error>,
    },
    /// A database operation on an open database failed.
    #[error("state database {}: {operation} failed: {error}", path.display())]
    Database {
        /// The database file.
        path: PathBuf,
        /// What was being done, e.g. "commit".
        operation: &'static str,
        /// What redb said.
        error: Box<redb::Error>,
    },
    /// A stored record could not be decoded.
    #[error("corrupt record for {address} in state database {}: {detail}", path.display())]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// The address the record is stored under.
        address: String,
        /// What was wrong with it.
        detail: String,
    },
    /// A param in a batch cannot be stored (its value or writer does not fit the record format).
    /// The batch was not applied.
    #[error("cannot store {address}: {detail}")]
    InvalidParam {
        /// The param's address.
        address: String,
        /// What was wrong with it.
        detail: String,
    },
    /// A journal append is out of order or malformed; nothing was written.
    #[error("{0}")]
    Invalid(String),
    /// A record table name is empty, too long or has characters other than ASCII letters,
    /// digits, `-`, `_` and `.`.
    #[error(
        "invalid record table name {name:?}: use 1 to 64 ASCII letters, digits, '-', '_' or '.'"
    )]
    InvalidTableName {
        /// The name asked for (cut to 80 characters).
        name: String,
    },
}

/// How [`StoreError::Truncated`] describes a file of `len` bytes.
fn cut_short(len: u64) -> String {
    if len == 0 {
        "empty (0 bytes)".to_owned()
    } else {
        format!("truncated (only {len} bytes)")
    }
}
