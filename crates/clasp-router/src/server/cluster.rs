//! The router's link to its cluster (`--cluster nats://…`): one NATS connection, the cluster's
//! param bucket (`clasp-cluster`), a watch that applies every change to the core's replica,
//! and a writer that hands the core's SETs to JetStream in order, many in flight, and gives
//! each outcome back (see `clasp_router_core::cluster`).
//!
//! At start the bucket's state is replayed into the core before the router accepts anyone,
//! so a client of any router sees the whole cluster's state from its first SNAPSHOT.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clasp_cluster::kv::{Change, KvError, ParamBucket, WatchItem};
use clasp_cluster::locks::LockError;
use clasp_cluster::record::Record;
use futures_util::StreamExt;
use futures_util::stream::{BoxStream, FuturesOrdered};
use tokio::sync::mpsc;

use super::cluster_locks::{self, LockWatch, Locks};
use super::cluster_signals::{self, Outbound, SignalStats};
use super::{Core, ServerError, Shared};
use crate::core::{ClusterOutcome, ClusterWrite, Now, P2pOut, RemoteChange};

/// Writes sent to JetStream and not yet confirmed, at most.
const MAX_IN_FLIGHT: usize = 1024;

/// How long a write waits for JetStream's confirmation.
const WRITE_CONFIRM_TIMEOUT: Duration = Duration::from_secs(3);

/// How a router joins a cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// NATS server URLs (`nats://host:port`; several for a NATS cluster).
    pub servers: Vec<String>,
    /// The cluster's name: routers with the same NATS and name share one space.
    pub name: String,
    /// A NATS credentials file (JWT and NKey seed), if the NATS server wants one.
    pub creds: Option<PathBuf>,
    /// Copies of the param bucket in a NATS cluster (1 on a single NATS server).
    pub replicas: usize,
    /// How long the router waits for NATS at start before giving up.
    pub connect_timeout: Duration,
}

impl ClusterConfig {
    /// A cluster named `name` on `servers`, with one replica and a 10 s connect timeout.
    pub fn new(servers: Vec<String>, name: impl Into<String>) -> ClusterConfig {
        ClusterConfig {
            servers,
            name: name.into(),
            creds: None,
            replicas: 1,
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// What the cluster link reports in `/healthz` and `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct Status {
    /// The NATS connection is up.
    pub(crate) connected: AtomicBool,
    /// Writes JetStream took.
    pub(crate) writes: AtomicU64,
    /// Writes refused for a revision conflict.
    pub(crate) conflicts: AtomicU64,
    /// Writes that failed (NATS unreachable, JetStream refused or silent): the writer got an
    /// ERROR and nothing changed.
    pub(crate) write_failures: AtomicU64,
    /// Bucket entries that could not be read (not ours, or damaged), skipped.
    pub(crate) bad_entries: AtomicU64,
    /// Times the watch of the bucket ended, stalled or skipped, and was resumed.
    pub(crate) rewatches: AtomicU64,
    /// Live changes that came after a gap in revisions (the watch was then resumed from the
    /// gap to pick up anything it skipped).
    pub(crate) gaps: AtomicU64,
    /// The signal side's counters.
    pub(crate) signals: Arc<SignalStats>,
}

/// A connected cluster link, not yet running.
pub(crate) struct Link {
    client: async_nats::Client,
    bucket: ParamBucket,
    watch: BoxStream<'static, WatchItem>,
    /// The last revision the replay applied.
    last_revision: u64,
    writes: mpsc::UnboundedReceiver<ClusterWrite>,
    outbound: mpsc::UnboundedReceiver<Outbound>,
    p2p: mpsc::UnboundedReceiver<P2pOut>,
    locks: Arc<Locks>,
    lock_watch: LockWatch,
    releases: mpsc::UnboundedReceiver<(Arc<str>, Arc<str>)>,
    subjects: clasp_cluster::Subjects,
    status: Arc<Status>,
}

/// Where the core's output for the cluster goes (see `Shared::with_core`).
pub(crate) struct Senders {
    pub(crate) writes: mpsc::UnboundedSender<ClusterWrite>,
    pub(crate) outbound: mpsc::UnboundedSender<Outbound>,
    pub(crate) p2p: mpsc::UnboundedSender<P2pOut>,
    pub(crate) releases: mpsc::UnboundedSender<(Arc<str>, Arc<str>)>,
}

fn wall_now() -> Now {
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64);
    Now { mono: 0, wall }
}

fn cluster_err(what: impl std::fmt::Display) -> ServerError {
    ServerError::Cluster(what.to_string())
}

fn remote(c: Change) -> RemoteChange {
    match c.record {
        Some(r) => RemoteChange {
            address: c.address,
            revision: c.revision,
            value: Some(r.value),
            writer: r.writer,
            timestamp: r.timestamp,
        },
        None => RemoteChange {
            address: c.address,
            revision: c.revision,
            value: None,
            writer: String::new(),
            timestamp: 0,
        },
    }
}

/// Connects to NATS, opens the bucket and replays it into `core` (put in cluster mode).
pub(crate) async fn connect(
    cfg: &ClusterConfig,
    core: &mut Core,
    max_value: usize,
) -> Result<(Link, Senders, Arc<Status>), ServerError> {
    let subjects = clasp_cluster::Subjects::new(&cfg.name).map_err(cluster_err)?;
    let status = Arc::new(Status::default());
    // no_echo: what this router publishes never comes back to it.
    let mut opts = async_nats::ConnectOptions::new()
        .name(format!("clasp-router/{}", cfg.name))
        .no_echo()
        // Another NATS node is tried at once, then at growing intervals up to 2 s: a router
        // whose node died is back on another one in well under a second.
        .reconnect_delay_callback(|attempts| {
            let step = attempts.min(5) as u32;
            std::time::Duration::from_millis(if attempts <= 1 { 0 } else { 62 << step })
                .min(std::time::Duration::from_secs(2))
        })
        .connection_timeout(cfg.connect_timeout)
        .event_callback({
            let status = status.clone();
            move |e| {
                let status = status.clone();
                async move {
                    match e {
                        async_nats::Event::Connected => {
                            status.connected.store(true, Ordering::Relaxed);
                            tracing::info!("cluster: NATS connection up");
                        }
                        async_nats::Event::Disconnected => {
                            status.connected.store(false, Ordering::Relaxed);
                            tracing::warn!("cluster: NATS connection lost; reconnecting");
                        }
                        other => tracing::debug!(event = %other, "cluster: NATS event"),
                    }
                }
            }
        });
    if let Some(creds) = &cfg.creds {
        opts = opts
            .credentials_file(creds)
            .await
            .map_err(|e| cluster_err(format!("cluster credentials {}: {e}", creds.display())))?;
    }
    let urls = cfg.servers.join(",");
    let mut addrs = Vec::with_capacity(cfg.servers.len());
    for s in &cfg.servers {
        let a: async_nats::ServerAddr = s
            .parse()
            .map_err(|e| cluster_err(format!("cluster NATS URL {s}: {e}")))?;
        addrs.push(a);
    }
    let client = tokio::time::timeout(cfg.connect_timeout, opts.connect(addrs))
        .await
        .map_err(|_| {
            cluster_err(format!(
                "cannot reach the cluster's NATS at {urls} within {:?}",
                cfg.connect_timeout
            ))
        })?
        .map_err(|e| {
            cluster_err(format!(
                "cannot connect to the cluster's NATS at {urls}: {e}"
            ))
        })?;
    status.connected.store(true, Ordering::Relaxed);
    let mut js = async_nats::jetstream::new(client.clone());
    // A write's confirmation is awaited for less than a client's usual request timeout (5 s),
    // so the writer hears from the router rather than timing out on its own.
    js.set_timeout(WRITE_CONFIRM_TIMEOUT);
    let bucket = ParamBucket::open(&js, &cfg.name, max_value, cfg.replicas)
        .await
        .map_err(|e| {
            cluster_err(format!(
                "cluster {}: {e} (is JetStream enabled on the NATS server?)",
                cfg.name
            ))
        })?;
    core.set_clustered(true);
    let (watch, last_revision) = replay(&bucket, core, &status).await?;
    let router_id = uuid::Uuid::new_v4().to_string();
    let (locks, lock_watch) = Locks::open(&js, &cfg.name, cfg.replicas, router_id, core).await?;
    let (writes_tx, writes) = mpsc::unbounded_channel();
    let (outbound_tx, outbound) = mpsc::unbounded_channel();
    let (p2p_tx, p2p) = mpsc::unbounded_channel();
    let (releases_tx, releases) = mpsc::unbounded_channel();
    tracing::info!(cluster = %cfg.name, nats = %urls, params = core.params().len(), "joined the cluster");
    Ok((
        Link {
            client,
            bucket,
            watch,
            last_revision,
            writes,
            outbound,
            p2p,
            locks: Arc::new(locks),
            lock_watch,
            releases,
            subjects,
            status: status.clone(),
        },
        Senders {
            writes: writes_tx,
            outbound: outbound_tx,
            p2p: p2p_tx,
            releases: releases_tx,
        },
        status,
    ))
}

/// Starts a watch of the bucket and applies its replay to `core` until it has caught up;
/// returns the watch, which goes on with live changes, and the last revision applied.
async fn replay(
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
                core.apply_remote(remote(c), wall_now());
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

/// Runs the link: the watch and the writer, until the server stops (the tasks are aborted).
pub(crate) fn spawn(link: Link, shared: Arc<Shared>) -> Vec<tokio::task::JoinHandle<()>> {
    let Link {
        client,
        bucket,
        watch,
        last_revision,
        writes,
        outbound,
        p2p,
        locks,
        lock_watch,
        releases,
        subjects,
        status,
    } = link;
    let lock_task = tokio::spawn(cluster_locks::run(
        locks.clone(),
        releases,
        lock_watch,
        shared.clone(),
    ));
    let watcher = tokio::spawn(watch_loop(
        bucket.clone(),
        watch,
        last_revision,
        shared.clone(),
        status.clone(),
    ));
    let origin = uuid::Uuid::new_v4().to_string();
    let p2p = tokio::spawn(super::cluster_p2p::run(
        client.clone(),
        subjects.clone(),
        p2p,
        shared.clone(),
    ));
    let signals = tokio::spawn(cluster_signals::run(
        client.clone(),
        subjects,
        origin,
        outbound,
        shared.clone(),
        status.signals.clone(),
    ));
    let writer = tokio::spawn(write_loop(bucket, locks, writes, shared, status, client));
    vec![watcher, signals, p2p, lock_task, writer]
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

async fn watch_loop(
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
                    changes.push(remote(c));
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

async fn write_loop(
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
                    lock: None,
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
