//! The core's param writes, handed to JetStream in order with many in flight, each outcome
//! given back to the core (see `cluster.rs`); a SET that takes a lock takes it first. And the
//! params that expired here, deleted from the bucket.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use clasp_cluster::kv::{KvError, ParamBucket};
use clasp_cluster::locks::LockError;
use clasp_cluster::record::{BundleMark, Record};
use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use tokio::sync::mpsc;

use super::Shared;
use super::cluster::Status;
use super::cluster_locks::Locks;
use crate::core::{ClusterOutcome, ClusterWrite};

// The core bounds a bundle's signals by what a record can hold.
const _: () = assert!(crate::core::MAX_MARK_SIGNALS <= clasp_cluster::record::MAX_BUNDLE_SIGNALS);

/// Writes sent to JetStream and not yet confirmed, at most.
const MAX_IN_FLIGHT: usize = 1024;

fn outcome_of(result: Result<u64, KvError>, status: &Status) -> ClusterOutcome {
    match result {
        Ok(rev) => {
            status.writes.fetch_add(1, Ordering::Relaxed);
            ClusterOutcome::Written(rev)
        }
        Err(KvError::Conflict { .. }) => {
            status.conflicts.fetch_add(1, Ordering::Relaxed);
            ClusterOutcome::Conflict
        }
        Err(e) => {
            status.write_failures.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %e, "cluster: a write failed");
            ClusterOutcome::Failed(match e {
                KvError::Unconfirmed => e.to_string(),
                e => format!("{e}; nothing was changed"),
            })
        }
    }
}

pub(crate) async fn write_loop(
    bucket: ParamBucket,
    locks: Arc<Locks>,
    mut writes: mpsc::UnboundedReceiver<ClusterWrite>,
    shared: Arc<Shared>,
    status: Arc<Status>,
    client: async_nats::Client,
) {
    type Outcome =
        std::pin::Pin<Box<dyn std::future::Future<Output = (u64, Result<u64, KvError>)> + Send>>;
    let mut in_flight: FuturesOrdered<Outcome> = FuturesOrdered::new();
    let report = |id: u64, outcome: ClusterOutcome| {
        shared.with_core(|core, now| core.cluster_written(id, outcome, now));
    };
    loop {
        tokio::select! {
            // At most MAX_IN_FLIGHT writes wait for JetStream: below async-nats's own cap on
            // unacknowledged publishes, so sending never waits for an acknowledgement this
            // loop is not polling.
            w = writes.recv(), if in_flight.len() < MAX_IN_FLIGHT => {
                let Some(w) = w else { return };
                let id = w.id;
                // While NATS is unreachable nothing is sent: a write queued in the client
                // would go out after the writer was told it failed.
                if client.connection_state() != async_nats::connection::State::Connected {
                    in_flight.push_back(Box::pin(async move {
                        (id, Err(KvError::Nats("the cluster's NATS connection is down".into())))
                    }));
                    continue;
                }
                if w.lock {
                    // The lock is taken first, one round trip: the writes before it finish
                    // first, so the order of writes holds.
                    while let Some((id, r)) = in_flight.next().await {
                        report(id, outcome_of(r, &status));
                    }
                    match locks.take(&w.address, &w.writer).await {
                        Ok(()) => {}
                        Err(LockError::Held(holder)) => {
                            report(id, ClusterOutcome::LockHeld(holder));
                            continue;
                        }
                        Err(LockError::Kv(e)) => {
                            report(id, outcome_of(Err(e), &status));
                            continue;
                        }
                    }
                }
                let record = Record {
                    value: w.value,
                    writer: w.writer.to_string(),
                    timestamp: w.timestamp,
                    expires_at: w.expires_at,
                    bundle: w.bundle.as_deref().map(|b| BundleMark {
                        id: b.id,
                        sets: b.sets,
                        signals: b.signals.clone(),
                    }),
                };
                match bucket.send_write(&w.address, &record, w.expected).await {
                    Ok(ack) => in_flight.push_back(Box::pin(async move { (id, ack.await) })),
                    Err(e) => in_flight.push_back(Box::pin(async move { (id, Err(e)) })),
                }
            }
            Some((id, result)) = in_flight.next(), if !in_flight.is_empty() => {
                report(id, outcome_of(result, &status));
            }
        }
    }
}

/// Deletes from the bucket the params that expired on this router, each only if it still has
/// the revision that expired (a compare-and-set: a newer write stays). Every router holding
/// the param tries; the first wins and the others' attempts find it changed.
pub(crate) async fn expire_loop(
    bucket: ParamBucket,
    mut expired: mpsc::UnboundedReceiver<(Arc<str>, u64)>,
    status: Arc<Status>,
) {
    while let Some((address, revision)) = expired.recv().await {
        if revision == 0 {
            continue;
        }
        match bucket.delete(&address, Some(revision)).await {
            Ok(()) => {
                status.expired.fetch_add(1, Ordering::Relaxed);
            }
            Err(KvError::Conflict { .. }) => {}
            Err(e) => {
                tracing::warn!(%address, error = %e, "cluster: cannot delete an expired param")
            }
        }
    }
}
