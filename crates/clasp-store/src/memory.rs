//! The in-memory store.

use std::collections::BTreeMap;

use std::sync::Arc;

use crate::records::MemoryTables;
use crate::{Batch, RecordTable, Store, StoreError, StoredParam, record};

/// Keeps everything in memory (for `--memory` mode and tests): load returns what was applied.
///
/// It checks each param exactly as [`crate::RedbStore`] does (a value or writer that does not fit
/// the record format fails the whole batch), so switching stores never changes which batches
/// succeed.
#[derive(Debug, Default)]
pub struct MemoryStore {
    params: BTreeMap<String, StoredParam>,
    /// Scratch space for checking that params encode.
    scratch: Vec<u8>,
    /// The record tables, shared with whoever asked for them.
    tables: MemoryTables,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many params are stored.
    pub fn len(&self) -> usize {
        self.params.len()
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.params.is_empty()
    }
}

impl Store for MemoryStore {
    fn load(&self) -> Result<Vec<StoredParam>, StoreError> {
        Ok(self.params.values().cloned().collect())
    }

    fn apply(&mut self, batch: &Batch) -> Result<(), StoreError> {
        // Check everything before changing anything, so a failed batch leaves no trace.
        for param in &batch.upserts {
            self.scratch.clear();
            record::encode(param, &mut self.scratch).map_err(|detail| {
                StoreError::InvalidParam {
                    address: param.address.clone(),
                    detail,
                }
            })?;
        }
        for param in &batch.upserts {
            match self.params.get_mut(&param.address) {
                Some(slot) => slot.clone_from(param),
                None => {
                    self.params.insert(param.address.clone(), param.clone());
                }
            }
        }
        for address in &batch.deletes {
            self.params.remove(address);
        }
        Ok(())
    }

    fn describe(&self) -> String {
        "memory".to_owned()
    }

    /// The same in-memory table for every call with the same name.
    fn records(&self, name: &str) -> Result<Arc<dyn RecordTable>, StoreError> {
        self.tables.get(name)
    }
}
