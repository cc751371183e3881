//! Persistence of CLASP router state.
//!
//! The router keeps its params (address → value, revision, writer, timestamps) in memory and
//! hands changes to a [`Store`] in [`Batch`]es. A store applies each batch atomically and, for
//! [`RedbStore`], durably; on start-up the router reloads everything with [`Store::load`].
//!
//! Two stores are provided:
//! - [`RedbStore`]: one embedded [redb](https://docs.rs/redb) database file, `dir/state.redb`;
//! - [`MemoryStore`]: keeps everything in memory (for `--memory` mode and tests).
//!
//! Besides params, a store holds named [`RecordTable`]s of opaque records (key → bytes), for
//! other services that persist beside the router, e.g. the rendezvous registrations.
//!
//! Both validate every param the same way (the record format is described at [`RedbStore`]), so a batch that one store refuses
//! the other refuses too.

#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]

mod error;
mod journal;
mod journal_memory;
mod journal_redb;
mod memory;
mod record;
mod records;
mod redb_store;

pub use error::StoreError;
pub use journal::{Entry, EntryRef, JOURNAL_FILE_NAME, Journal, JournalStats, Retention};
pub use journal_memory::MemoryJournal;
pub use journal_redb::RedbJournal;
pub use memory::MemoryStore;
pub use records::{
    MAX_TABLE_NAME_LEN, MemoryRecordTable, RecordBatch, RecordTable, validate_table_name,
};
pub use redb_store::{
    FORMAT_VERSION, FORMAT_VERSION_KEY, META_TABLE, PARAMS_TABLE, RECORDS_TABLE_PREFIX, RedbStore,
    STATE_FILE_NAME,
};

/// One persisted param.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredParam {
    /// The param's address, e.g. `/lights/1/level`.
    pub address: String,
    /// The current value.
    pub value: clasp_proto::Value,
    /// The param's revision, incremented by the router on every write.
    pub revision: u64,
    /// Session id of the last writer.
    pub writer: String,
    /// Router wall-clock time of the last write, µs since the Unix epoch.
    pub timestamp: u64,
    /// When the param expires (router wall-clock µs), if it has a TTL.
    pub expires_at: Option<u64>,
    /// What an in-process adapter attached to the write (e.g. an MQTT publish's payload bytes
    /// and properties), in the adapter's own encoding.
    pub attachment: Option<StoredAttachment>,
}

/// An adapter's data kept with a param: opaque bytes, named by the adapter that wrote them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAttachment {
    /// Who can read `bytes` (e.g. `mqtt`); at most 255 bytes of UTF-8.
    pub kind: String,
    /// The adapter's encoding.
    pub bytes: Vec<u8>,
}

/// A batch of changes to apply atomically.
///
/// Upserts are applied first, in order (a later upsert of the same address replaces an earlier
/// one), then deletes: an address that is both upserted and deleted in one batch ends up deleted.
/// Deleting an address that is not stored is not an error.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Batch {
    /// Params to insert or replace, keyed by their address.
    pub upserts: Vec<StoredParam>,
    /// Addresses to remove.
    pub deletes: Vec<String>,
}

impl Batch {
    /// Whether the batch changes nothing.
    pub fn is_empty(&self) -> bool {
        self.upserts.is_empty() && self.deletes.is_empty()
    }
}

/// Persistence backend. Implementations must apply a batch atomically (all or nothing) and
/// durably once `apply` returns Ok (durable = survives the process being killed with SIGKILL; fsync'd).
pub trait Store: Send + 'static {
    /// Loads every stored param (order unspecified).
    fn load(&self) -> Result<Vec<StoredParam>, StoreError>;
    /// Applies a batch atomically and durably.
    fn apply(&mut self, batch: &Batch) -> Result<(), StoreError>;
    /// A short description for logs and /healthz, e.g. "redb:/path/to/state.redb" or "memory".
    fn describe(&self) -> String;
    /// The record table `name` of this store (see [`validate_table_name`] for valid names),
    /// created if needed; it lives as long as the store's data does ([`RedbStore`]: a table
    /// in the same database file). Tables may be asked for at any time, also while the
    /// store is in use, and are independent of the params.
    ///
    /// The default gives a fresh, empty in-memory table on every call.
    fn records(&self, name: &str) -> Result<std::sync::Arc<dyn RecordTable>, StoreError> {
        validate_table_name(name)?;
        Ok(std::sync::Arc::new(MemoryRecordTable::new()))
    }
}

impl<S: Store + ?Sized> Store for Box<S> {
    fn load(&self) -> Result<Vec<StoredParam>, StoreError> {
        (**self).load()
    }

    fn apply(&mut self, batch: &Batch) -> Result<(), StoreError> {
        (**self).apply(batch)
    }

    fn describe(&self) -> String {
        (**self).describe()
    }

    fn records(&self, name: &str) -> Result<std::sync::Arc<dyn RecordTable>, StoreError> {
        (**self).records(name)
    }
}
