//! Param locks across a cluster, in a JetStream key-value bucket of their own
//! (`clasp_NAME_locks`, the param's key, one value per key).
//!
//! A lock is an entry naming the holding session and its router, created with compare-and-set
//! ("must not exist"), so of two sessions on two routers taking one lock at once, one gets it.
//! The bucket's entries age out after the lease (the stream's `max_age`): the holder's router
//! renews its sessions' locks well within it, and releases one (deletes the entry) when the
//! session unlocks or leaves; a lock whose router died frees itself when the lease runs out.
//! nats-server 2.9 removes aged-out entries without telling watchers, so every router also
//! counts the lease from when it last saw an entry.

use std::time::Duration;

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};

use crate::kv::KvError;
use crate::naming;

/// Who holds a lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// The holding session.
    pub session: String,
    /// Its router (an id of the router's own).
    pub router: String,
}

impl Holder {
    fn encode(&self) -> Bytes {
        Bytes::from(format!("{}\n{}", self.session, self.router))
    }

    fn decode(b: &[u8]) -> Option<Holder> {
        let s = std::str::from_utf8(b).ok()?;
        let (session, router) = s.split_once('\n')?;
        Some(Holder {
            session: session.to_owned(),
            router: router.to_owned(),
        })
    }
}

/// Why a lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another session holds it.
    #[error("param is locked by session {0}")]
    Held(String),
    /// The bucket could not be reached or used.
    #[error(transparent)]
    Kv(#[from] KvError),
}

/// A lock change seen in the bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockChange {
    /// The param's address.
    pub address: String,
    /// The holder; `None` when the lock was released.
    pub holder: Option<Holder>,
    /// Whether the watch has caught up with the locks held when it started.
    pub caught_up: bool,
}

/// The locks of one cluster.
#[derive(Clone)]
pub struct LockBucket {
    store: kv::Store,
    js: jetstream::Context,
    bucket: String,
}

impl std::fmt::Debug for LockBucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockBucket").finish_non_exhaustive()
    }
}

fn nats(e: impl std::fmt::Display) -> KvError {
    KvError::Nats(e.to_string())
}

impl LockBucket {
    /// Opens (or creates) the lock bucket of cluster `name`, entries living `lease`.
    pub async fn open(
        js: &jetstream::Context,
        name: &str,
        lease: Duration,
        replicas: usize,
    ) -> Result<LockBucket, KvError> {
        naming::check_cluster_name(name)?;
        let bucket = format!("{}_locks", naming::bucket(name));
        let store = crate::kv::open_store(
            js,
            crate::kv::StoreSpec {
                bucket: &bucket,
                description: format!("CLASP param locks of cluster {name}"),
                max_value: 64 * 1024,
                max_age: lease,
                replicas,
            },
        )
        .await?;
        Ok(LockBucket {
            store,
            js: js.clone(),
            bucket,
        })
    }

    /// Takes the lock on `address` for `holder` (again, if that session holds it already);
    /// returns the entry's revision, for renewing and releasing.
    pub async fn take(&self, address: &str, holder: &Holder) -> Result<u64, LockError> {
        let key = naming::key(address).map_err(KvError::from)?;
        match self.store.create(&key, holder.encode()).await {
            Ok(rev) => return Ok(rev),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {}
            Err(e) => return Err(LockError::Kv(nats(e))),
        }
        let entry = self.store.entry(&key).await.map_err(nats)?;
        match entry {
            Some(e) if e.operation == kv::Operation::Put => {
                let current = Holder::decode(&e.value);
                if current
                    .as_ref()
                    .is_some_and(|h| h.session == holder.session)
                {
                    self.renew(address, holder, e.revision)
                        .await
                        .map_err(LockError::Kv)
                } else {
                    Err(LockError::Held(
                        current.map(|h| h.session).unwrap_or_default(),
                    ))
                }
            }
            // Released (or aged out) in between: try once more from scratch.
            _ => self
                .store
                .create(&key, holder.encode())
                .await
                .map_err(|_| LockError::Held(String::new())),
        }
    }

    /// Renews a lock held at `revision`; the entry's new revision.
    pub async fn renew(
        &self,
        address: &str,
        holder: &Holder,
        revision: u64,
    ) -> Result<u64, KvError> {
        let key = naming::key(address)?;
        self.store
            .update(&key, holder.encode(), revision)
            .await
            .map_err(|e| {
                if e.kind() == kv::UpdateErrorKind::WrongLastRevision {
                    KvError::Conflict { expected: revision }
                } else {
                    nats(e)
                }
            })
    }

    /// Releases a lock held at `revision` (nothing happens if it changed hands meanwhile).
    pub async fn release(&self, address: &str, revision: u64) -> Result<(), KvError> {
        let key = naming::key(address)?;
        match self
            .store
            .delete_expect_revision(&key, Some(revision))
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(()),
            Err(e) => Err(nats(e)),
        }
    }

    /// How many locks the bucket holds (released ones may be counted until they age out),
    /// asked of JetStream now.
    pub async fn count(&self) -> Result<u64, KvError> {
        Ok(crate::kv::fresh_info(&self.js, &self.bucket)
            .await?
            .state
            .messages)
    }

    /// Every lock as it is now, then every change.
    pub async fn watch(
        &self,
    ) -> Result<impl Stream<Item = Result<LockChange, KvError>> + use<>, KvError> {
        let w = self.store.watch_with_history(">").await.map_err(nats)?;
        Ok(w.map(|e| {
            let e = e.map_err(nats)?;
            let address = naming::address_of_key(&e.key)?;
            let holder = match e.operation {
                kv::Operation::Put => Holder::decode(&e.value),
                kv::Operation::Delete | kv::Operation::Purge => None,
            };
            Ok(LockChange {
                address,
                holder,
                caught_up: e.seen_current,
            })
        }))
    }
}
