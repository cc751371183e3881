//! The cluster's params in a JetStream key-value bucket (`clasp_NAME`, one value kept per
//! key): writes with or without an expected revision, reads, and a watch that replays the
//! current state and then follows every change made by any router.
//!
//! The CLASP revision of a param is the KV revision of its last write. KV revisions grow
//! strictly across the whole bucket (one stream sequence shared by all keys), so a param's
//! revisions grow with gaps; a compare-and-set is a publish with JetStream's
//! "expected last subject sequence", decided by the NATS server for every router at once.

use std::time::Duration;

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use thiserror::Error;

use crate::naming::{self, NamingError};
use crate::record::{Record, RecordError};

/// Why a bucket operation failed.
#[derive(Debug, Error)]
pub enum KvError {
    /// The address has no key.
    #[error(transparent)]
    Naming(#[from] NamingError),
    /// A stored entry is damaged, or a record cannot be encoded.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// The expected revision is not the param's current one (another write came first).
    #[error("revision conflict: expected {expected}")]
    Conflict {
        /// What the write expected.
        expected: u64,
    },
    /// NATS or JetStream refused.
    #[error("NATS: {0}")]
    Nats(String),
    /// The write was sent but JetStream did not confirm it in time: it may still be applied
    /// once NATS is reachable again.
    #[error(
        "the cluster did not confirm the write in time; it may still be applied once NATS is reachable again"
    )]
    Unconfirmed,
}

fn nats(e: impl std::fmt::Display) -> KvError {
    KvError::Nats(e.to_string())
}

/// A param change seen in the bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// The param's address.
    pub address: String,
    /// Its KV revision.
    pub revision: u64,
    /// The new record; `None` when the param was deleted.
    pub record: Option<Record>,
    /// Whether the watch has caught up with the bucket's state as it was when it started
    /// (every change before this one was part of the replay).
    pub caught_up: bool,
}

/// An entry of the bucket that could not be read, and its revision when known.
#[derive(Debug, Error)]
#[error("bucket entry {revision:?}: {error}")]
pub struct BadEntry {
    /// The entry's revision, if the watch got that far.
    pub revision: Option<u64>,
    /// Why it could not be read.
    pub error: KvError,
}

/// What a watch of the bucket yields.
pub type WatchItem = Result<Change, BadEntry>;

fn change_of(e: Result<kv::Entry, kv::WatcherError>) -> WatchItem {
    let e = e.map_err(|err| BadEntry {
        revision: None,
        error: nats(err),
    })?;
    let bad = |error: KvError| BadEntry {
        revision: Some(e.revision),
        error,
    };
    let address = naming::address_of_key(&e.key).map_err(|x| bad(x.into()))?;
    let record = match e.operation {
        kv::Operation::Put => Some(Record::decode(&e.value).map_err(|x| bad(x.into()))?),
        kv::Operation::Delete | kv::Operation::Purge => None,
    };
    Ok(Change {
        address,
        revision: e.revision,
        record,
        caught_up: e.seen_current,
    })
}

/// The params of one cluster.
#[derive(Clone)]
pub struct ParamBucket {
    store: kv::Store,
    js: jetstream::Context,
    bucket: String,
}

impl std::fmt::Debug for ParamBucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParamBucket").finish_non_exhaustive()
    }
}

impl ParamBucket {
    /// Opens the bucket of cluster `name`, creating it if this is the first router: file
    /// storage, one value per key, values up to `max_value` bytes, `replicas` copies in a NATS
    /// cluster (1 on a single server). See [`open_store`] for the stream it makes.
    pub async fn open(
        js: &jetstream::Context,
        name: &str,
        max_value: usize,
        replicas: usize,
    ) -> Result<ParamBucket, KvError> {
        naming::check_cluster_name(name)?;
        let bucket = naming::bucket(name);
        let store = open_store(
            js,
            StoreSpec {
                bucket: &bucket,
                description: format!("CLASP params of cluster {name}"),
                max_value,
                max_age: Duration::ZERO,
                replicas,
            },
        )
        .await?;
        Ok(ParamBucket {
            store,
            js: js.clone(),
            bucket,
        })
    }

    /// Sends a write without waiting for JetStream's answer, which the returned future gives
    /// (the new revision, or why not). Writes sent one after another on one connection are
    /// decided in that order, so a router can keep many in flight and still apply a client's
    /// SETs in the order it sent them.
    pub async fn send_write(
        &self,
        address: &str,
        record: &Record,
        expected: Option<u64>,
    ) -> Result<impl std::future::Future<Output = Result<u64, KvError>> + use<>, KvError> {
        let key = naming::key(address)?;
        let value = Bytes::from(record.encode()?);
        let mut headers = async_nats::HeaderMap::new();
        if let Some(rev) = expected {
            headers.insert(
                async_nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
                async_nats::HeaderValue::from(rev),
            );
        }
        let ack = self
            .js
            .publish_with_headers(format!("$KV.{}.{key}", self.bucket), headers, value)
            .await
            .map_err(nats)?;
        Ok(async move {
            match ack.await {
                Ok(a) => Ok(a.sequence),
                Err(e) if e.kind() == jetstream::context::PublishErrorKind::WrongLastSequence => {
                    Err(KvError::Conflict {
                        expected: expected.unwrap_or(0),
                    })
                }
                Err(e) if e.kind() == jetstream::context::PublishErrorKind::TimedOut => {
                    Err(KvError::Unconfirmed)
                }
                Err(e) => Err(nats(e)),
            }
        })
    }

    /// The bucket's latest revision (0 when nothing was ever written), asked of JetStream now.
    pub async fn last_revision(&self) -> Result<u64, KvError> {
        Ok(fresh_info(&self.js, &self.bucket)
            .await?
            .state
            .last_sequence)
    }

    /// Every change from revision `from` on (the latest of each param written since then),
    /// then live changes: to resume a watch that stopped.
    pub async fn watch_from(
        &self,
        from: u64,
    ) -> Result<impl Stream<Item = WatchItem> + use<>, KvError> {
        let w = self
            .store
            .watch_all_from_revision(from.max(1))
            .await
            .map_err(nats)?;
        Ok(w.map(change_of))
    }

    /// How many params the bucket holds (deleted ones may still be counted until purged),
    /// asked of JetStream now.
    pub async fn count(&self) -> Result<u64, KvError> {
        Ok(fresh_info(&self.js, &self.bucket).await?.state.messages)
    }

    /// Writes `record` at `address`: unconditionally, or only if the param's revision is
    /// `expected` (0: only if it does not exist). Returns the new revision.
    pub async fn write(
        &self,
        address: &str,
        record: &Record,
        expected: Option<u64>,
    ) -> Result<u64, KvError> {
        let key = naming::key(address)?;
        let value = Bytes::from(record.encode()?);
        match expected {
            None => self.store.put(&key, value).await.map_err(nats),
            Some(expected) => self.store.update(&key, value, expected).await.map_err(|e| {
                if e.kind() == kv::UpdateErrorKind::WrongLastRevision {
                    KvError::Conflict { expected }
                } else {
                    nats(e)
                }
            }),
        }
    }

    /// Deletes the param at `address` (only if its revision is `expected`, when given).
    pub async fn delete(&self, address: &str, expected: Option<u64>) -> Result<(), KvError> {
        let key = naming::key(address)?;
        self.store
            .delete_expect_revision(&key, expected)
            .await
            .map_err(|e| match (expected, e.kind()) {
                (Some(expected), kv::UpdateErrorKind::WrongLastRevision) => {
                    KvError::Conflict { expected }
                }
                _ => nats(e),
            })
    }

    /// The param at `address` and its revision, if it exists.
    pub async fn get(&self, address: &str) -> Result<Option<(Record, u64)>, KvError> {
        let key = naming::key(address)?;
        match self.store.entry(&key).await.map_err(nats)? {
            Some(e) if e.operation == kv::Operation::Put => {
                Ok(Some((Record::decode(&e.value)?, e.revision)))
            }
            _ => Ok(None),
        }
    }

    /// Every param as it is now, then every change, by any router, in revision order.
    /// Entries that are not ours (a key of another layout, a damaged record) come out as
    /// [`BadEntry`] errors and the watch goes on.
    pub async fn watch(&self) -> Result<impl Stream<Item = WatchItem> + use<>, KvError> {
        let w = self.store.watch_with_history(">").await.map_err(nats)?;
        Ok(w.map(change_of))
    }
}

/// The bucket's stream information as JetStream has it now. (async-nats's `Store::status`
/// answers with the information read when the bucket was opened, which never moves: a watch
/// checked against it would never be found behind.)
pub(crate) async fn fresh_info(
    js: &jetstream::Context,
    bucket: &str,
) -> Result<jetstream::stream::Info, KvError> {
    js.get_stream_no_info(format!("KV_{bucket}"))
        .await
        .map_err(nats)?
        .get_info()
        .await
        .map_err(nats)
}

/// The shape of a key-value bucket of this crate.
pub(crate) struct StoreSpec<'a> {
    /// The bucket's name.
    pub(crate) bucket: &'a str,
    /// What it holds, for operators listing streams.
    pub(crate) description: String,
    /// Largest value, in bytes.
    pub(crate) max_value: usize,
    /// How long entries live (zero: for ever).
    pub(crate) max_age: Duration,
    /// Copies in a NATS cluster.
    pub(crate) replicas: usize,
}

/// Opens a key-value bucket, creating it if it does not exist yet.
///
/// The bucket's stream is created here with the layout JetStream KV defines (stream
/// `KV_<bucket>` on `$KV.<bucket>.>`, one value per key, rollups allowed, deletes denied,
/// direct gets, discard new, file storage) rather than with async-nats's `create_key_value`:
/// that call first reads the account's information and fails on nats-server 2.9, whose
/// answer lacks fields newer servers send.
pub(crate) async fn open_store(
    js: &jetstream::Context,
    spec: StoreSpec<'_>,
) -> Result<kv::Store, KvError> {
    use jetstream::stream::{Config, DiscardPolicy, StorageType};
    let bucket = spec.bucket;
    if let Ok(store) = js.get_key_value(bucket).await {
        return Ok(store);
    }
    let config = Config {
        name: format!("KV_{bucket}"),
        description: Some(spec.description),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: 1,
        max_message_size: i32::try_from(spec.max_value).unwrap_or(i32::MAX),
        max_age: spec.max_age,
        storage: StorageType::File,
        allow_rollup: true,
        deny_delete: true,
        deny_purge: false,
        allow_direct: true,
        num_replicas: spec.replicas.max(1),
        discard: DiscardPolicy::New,
        ..Default::default()
    };
    js.get_or_create_stream(config)
        .await
        .map_err(|e| KvError::Nats(format!("cannot create the bucket {bucket}: {e}")))?;
    js.get_key_value(bucket).await.map_err(nats)
}
