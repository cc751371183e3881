//! Generic record tables: small keyed byte blobs kept beside the params, in the same store
//! (e.g. the rendezvous service's registrations).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use crate::StoreError;

/// The longest table name [`validate_table_name`] accepts.
pub const MAX_TABLE_NAME_LEN: usize = 64;

/// A batch of record changes, applied atomically: puts first, in order, then deletes.
/// Deleting a key that is not stored is not an error.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RecordBatch {
    /// Records to insert or replace: (key, value).
    pub puts: Vec<(String, Vec<u8>)>,
    /// Keys to remove.
    pub deletes: Vec<String>,
}

impl RecordBatch {
    /// Whether the batch changes nothing.
    pub fn is_empty(&self) -> bool {
        self.puts.is_empty() && self.deletes.is_empty()
    }
}

/// One named table of records (key → bytes) in a store.
///
/// Every method is atomic; for a persistent store, a write is durable (fsync'd) once it returns
/// Ok. Methods block (they may do disk I/O): call them off the async executor.
pub trait RecordTable: Send + Sync + fmt::Debug {
    /// Every record in the table, ordered by key.
    fn load_all(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError>;
    /// Applies a batch atomically and durably.
    fn apply(&self, batch: &RecordBatch) -> Result<(), StoreError>;
    /// Inserts or replaces one record.
    fn put(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.apply(&RecordBatch {
            puts: vec![(key.to_owned(), value.to_vec())],
            deletes: Vec::new(),
        })
    }
    /// Removes one record (not an error if it is absent).
    fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.apply(&RecordBatch {
            puts: Vec::new(),
            deletes: vec![key.to_owned()],
        })
    }
}

/// Checks a record table name: 1 to [`MAX_TABLE_NAME_LEN`] bytes of ASCII letters, digits,
/// `-`, `_` and `.`.
pub fn validate_table_name(name: &str) -> Result<(), StoreError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_TABLE_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(StoreError::InvalidTableName {
            name: name.chars().take(80).collect(),
        })
    }
}

/// A record table held in memory (lost when the process exits).
#[derive(Default)]
pub struct MemoryRecordTable {
    records: Mutex<BTreeMap<String, Vec<u8>>>,
}

impl fmt::Debug for MemoryRecordTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let len = self
            .records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        f.debug_struct("MemoryRecordTable")
            .field("records", &len)
            .finish()
    }
}

impl MemoryRecordTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }
}

impl RecordTable for MemoryRecordTable {
    fn load_all(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let records = self.records.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(records
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn apply(&self, batch: &RecordBatch) -> Result<(), StoreError> {
        let mut records = self.records.lock().unwrap_or_else(PoisonError::into_inner);
        for (key, value) in &batch.puts {
            records.insert(key.clone(), value.clone());
        }
        for key in &batch.deletes {
            records.remove(key);
        }
        Ok(())
    }
}

/// The record tables of a [`crate::MemoryStore`]: asking twice for one name gives the same table.
#[derive(Debug, Default)]
pub(crate) struct MemoryTables {
    tables: Mutex<BTreeMap<String, Arc<MemoryRecordTable>>>,
}

impl MemoryTables {
    pub(crate) fn get(&self, name: &str) -> Result<Arc<dyn RecordTable>, StoreError> {
        validate_table_name(name)?;
        let mut tables = self.tables.lock().unwrap_or_else(PoisonError::into_inner);
        let table = tables.entry(name.to_owned()).or_default().clone();
        Ok(table)
    }
}
