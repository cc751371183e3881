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

use clasp_cluster::kv::{Change, ParamBucket, WatchItem};
use futures_util::stream::BoxStream;
use tokio::sync::mpsc;

use super::cluster_locks::{self, LockWatch, Locks};
use super::cluster_signals::{self, Outbound, SignalStats};
use super::{Core, ServerError, Shared};
use super::{cluster_watch, cluster_writes};
use crate::core::{BundleMark, ClusterWrite, Now, P2pOut, RemoteChange};

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
    /// This router's id in the cluster (new at every start).
    pub(crate) router_id: String,
    /// The other routers, from their heartbeats.
    pub(crate) routers: super::cluster_routers::Routers,
    /// Routers taken for gone after falling silent.
    pub(crate) routers_lost: AtomicU64,
    /// Expired params this router deleted from the bucket.
    pub(crate) expired: AtomicU64,
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
    expired: mpsc::UnboundedReceiver<(Arc<str>, u64)>,
    subjects: clasp_cluster::Subjects,
    status: Arc<Status>,
}

/// Where the core's output for the cluster goes (see `Shared::with_core`).
pub(crate) struct Senders {
    pub(crate) writes: mpsc::UnboundedSender<ClusterWrite>,
    pub(crate) outbound: mpsc::UnboundedSender<Outbound>,
    pub(crate) p2p: mpsc::UnboundedSender<P2pOut>,
    pub(crate) releases: mpsc::UnboundedSender<(Arc<str>, Arc<str>)>,
    pub(crate) expired: mpsc::UnboundedSender<(Arc<str>, u64)>,
}

pub(crate) fn wall_now() -> Now {
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64);
    Now { mono: 0, wall }
}

pub(crate) fn cluster_err(what: impl std::fmt::Display) -> ServerError {
    ServerError::Cluster(what.to_string())
}

/// A change of the bucket for the core; `live`: seen after the replay, so a bundle's SETs are
/// gathered (in the replay each param's latest value is all there is).
pub(crate) fn remote(c: Change, live: bool) -> RemoteChange {
    match c.record {
        Some(r) => RemoteChange {
            address: c.address,
            revision: c.revision,
            value: Some(r.value),
            writer: r.writer,
            timestamp: r.timestamp,
            expires_at: r.expires_at,
            bundle: r.bundle.filter(|_| live).map(|b| {
                Arc::new(BundleMark {
                    id: b.id,
                    sets: b.sets,
                    signals: b.signals,
                })
            }),
        },
        None => RemoteChange {
            address: c.address,
            revision: c.revision,
            value: None,
            writer: String::new(),
            timestamp: 0,
            expires_at: None,
            bundle: None,
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
    let status = Arc::new(Status {
        router_id: uuid::Uuid::new_v4().to_string(),
        ..Status::default()
    });
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
    // A NATS cluster that has just started may not take JetStream requests yet (no meta
    // leader): the buckets are opened again until the connect timeout runs out.
    let deadline = std::time::Instant::now() + cfg.connect_timeout;
    // A record holds a value, its writer and times, and a bundle's signals.
    let record_max = max_value + crate::core::MAX_MARK_BYTES + 8 * 1024;
    let bucket = loop {
        match ParamBucket::open(&js, &cfg.name, record_max, cfg.replicas).await {
            Ok(b) => break b,
            Err(e) if std::time::Instant::now() < deadline => {
                tracing::info!(error = %e, "cluster: JetStream not ready yet; trying again");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => {
                return Err(cluster_err(format!(
                    "cluster {}: {e} (is JetStream enabled on the NATS server?)",
                    cfg.name
                )));
            }
        }
    };
    core.set_clustered(true);
    let (watch, last_revision) = cluster_watch::replay(&bucket, core, &status).await?;
    let router_id = status.router_id.clone();
    let (locks, lock_watch) = loop {
        match Locks::open(&js, &cfg.name, cfg.replicas, router_id.clone(), core).await {
            Ok(l) => break l,
            Err(e) if std::time::Instant::now() < deadline => {
                tracing::info!(error = %e, "cluster: JetStream not ready yet; trying again");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => return Err(e),
        }
    };
    let (writes_tx, writes) = mpsc::unbounded_channel();
    let (outbound_tx, outbound) = mpsc::unbounded_channel();
    let (p2p_tx, p2p) = mpsc::unbounded_channel();
    let (releases_tx, releases) = mpsc::unbounded_channel();
    let (expired_tx, expired) = mpsc::unbounded_channel();
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
            expired,
            subjects,
            status: status.clone(),
        },
        Senders {
            writes: writes_tx,
            outbound: outbound_tx,
            p2p: p2p_tx,
            releases: releases_tx,
            expired: expired_tx,
        },
        status,
    ))
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
        expired,
        subjects,
        status,
    } = link;
    let lock_task = tokio::spawn(cluster_locks::run(
        locks.clone(),
        releases,
        lock_watch,
        shared.clone(),
    ));
    let watcher = tokio::spawn(cluster_watch::watch_loop(
        bucket.clone(),
        watch,
        last_revision,
        shared.clone(),
        status.clone(),
    ));
    let origin = status.router_id.clone();
    let p2p = tokio::spawn(super::cluster_p2p::run(
        client.clone(),
        subjects.clone(),
        origin.clone(),
        p2p,
        shared.clone(),
    ));
    let heartbeat = super::cluster_routers::Heartbeat {
        id: origin.clone(),
        name: shared.config.router.name.clone(),
        sessions: 0,
    };
    let routers = tokio::spawn(super::cluster_routers::run(
        client.clone(),
        subjects.clone(),
        heartbeat,
        shared.clone(),
        status.clone(),
    ));
    let signals = tokio::spawn(cluster_signals::run(
        client.clone(),
        subjects,
        origin,
        outbound,
        shared.clone(),
        status.signals.clone(),
    ));
    let expiry = tokio::spawn(cluster_writes::expire_loop(
        bucket.clone(),
        expired,
        status.clone(),
    ));
    let writer = tokio::spawn(cluster_writes::write_loop(
        bucket, locks, writes, shared, status, client,
    ));
    vec![watcher, signals, p2p, routers, lock_task, expiry, writer]
}
