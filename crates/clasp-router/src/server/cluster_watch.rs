//! The cluster's params, followed: the bucket replayed into the core at start, then every change
//! applied as it comes; the watch resumed from the last revision applied when it ends, stalls or
//! skips revisions (see `cluster.rs`).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use clasp_cluster::kv::{ParamBucket, WatchItem};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;

use super::cluster::{Status, cluster_err, remote, wall_now};
use super::{Core, ServerError, Shared};

/// Starts a watch of the bucket and applies its replay to `core` until it has caught up;
/// returns the watch, which goes on with live changes, and the last revision applied.
pub(crate) async fn replay(
    bucket: &ParamBucket,
    core: &mut Core,
    status: &Status,
) -> Result<(BoxStream<'static, WatchItem>, u64), ServerError> {
    let empty = bucket.count().await.map_err(cluster_err)? == 0;
    let mut watch = bucket.watch().await.map_err(cluster_err)?.boxed();
    let mut last = 0;
    if empty {
        return Ok((watch, last));
    }
    loop {
        match tokio::time::timeout(Duration::from_secs(30), watch.next()).await {
            Ok(Some(Ok(c))) => {
                let done = c.caught_up;
                last = last.max(c.revision);
                core.apply_remote(remote(c, false), wall_now());
                if done {
                    return Ok((watch, last));
                }
            }
            Ok(Some(Err(e))) => {
                last = last.max(e.revision.unwrap_or(0));
                status.bad_entries.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "cluster: a bucket entry was skipped");
            }
            Ok(None) => return Err(cluster_err("the bucket's watch ended during the replay")),
            Err(_) => return Err(cluster_err("the bucket's replay stalled for 30 s")),
        }
    }
}

/// How often the watch is checked against the bucket's latest revision.
const WATCH_CHECK: Duration = Duration::from_secs(1);

/// Starts the watch again from the revision after `last` (after it ended, or stalled: a
/// consumer lost with a NATS node does not always say so).
async fn resume(
    bucket: &ParamBucket,
    last: u64,
    watch: &mut BoxStream<'static, WatchItem>,
    status: &Status,
) {
    status.rewatches.fetch_add(1, Ordering::Relaxed);
    tracing::warn!(from = last + 1, "cluster: resuming the bucket's watch");
    loop {
        match bucket.watch_from(last + 1).await {
            Ok(w) => {
                *watch = w.boxed();
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cluster: cannot watch the bucket yet");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

pub(crate) async fn watch_loop(
    bucket: ParamBucket,
    mut watch: BoxStream<'static, WatchItem>,
    mut last: u64,
    shared: Arc<Shared>,
    status: Arc<Status>,
) {
    let mut check = tokio::time::interval(WATCH_CHECK);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The last revision seen when the bucket was first found ahead of the watch.
    let mut behind_at: Option<u64> = None;
    // A live change came with a revision more than one past the last: the messages between
    // were either replaced before they were delivered, or missed (a consumer recreated after
    // a NATS node died can skip some). The watch is resumed from there at the next check.
    let mut gap_from: Option<u64> = None;
    loop {
        let first = tokio::select! {
            c = watch.next() => c,
            _ = check.tick() => {
                if let Some(from) = gap_from.take() {
                    status.gaps.fetch_add(1, Ordering::Relaxed);
                    resume(&bucket, from, &mut watch, &status).await;
                    continue;
                }
                match bucket.last_revision().await {
                    Ok(top) if top > last => {
                        // Behind and not moving since the last check: stalled.
                        if behind_at == Some(last) {
                            resume(&bucket, last, &mut watch, &status).await;
                            behind_at = None;
                        } else {
                            behind_at = Some(last);
                        }
                    }
                    Ok(_) => behind_at = None,
                    // NATS unreachable: its reconnection comes first.
                    Err(_) => {}
                }
                continue;
            }
        };
        // Whatever is ready is applied under one lock of the core.
        let Some(first) = first else {
            // The watch ended (its consumer was lost): resume after what was applied; what is
            // held already is not applied twice (revisions).
            resume(&bucket, last, &mut watch, &status).await;
            continue;
        };
        let mut batch = vec![first];
        while batch.len() < 256 {
            match futures_util::FutureExt::now_or_never(watch.next()) {
                Some(Some(c)) => batch.push(c),
                _ => break,
            }
        }
        let mut changes = Vec::with_capacity(batch.len());
        for c in batch {
            match c {
                Ok(c) => {
                    if c.caught_up && last > 0 && c.revision > last + 1 {
                        gap_from.get_or_insert(last);
                    }
                    last = last.max(c.revision);
                    changes.push(remote(c, true));
                }
                Err(e) => {
                    last = last.max(e.revision.unwrap_or(0));
                    status.bad_entries.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, "cluster: a bucket entry was skipped");
                }
            }
        }
        shared.with_core(|core, now| {
            for c in changes {
                core.apply_remote(c, now);
            }
        });
    }
}
