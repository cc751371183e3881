//! Param locks across the cluster (`clasp_cluster::locks`): taking a lock before the SET that
//! asks for it, renewing this router's sessions' locks well within their lease, releasing them
//! when a session unlocks or leaves, and telling the core about every lock the bucket reports
//! (it refuses other sessions' writes to a locked param).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use clasp_cluster::kv::KvError;
use clasp_cluster::locks::{Holder, LockBucket, LockChange, LockError};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use tokio::sync::mpsc;

use super::{Core, ServerError, Shared};
use crate::core::Now;

/// How long a lock lives without renewal: a lock whose router died is free after this.
pub(crate) const LEASE: Duration = Duration::from_secs(10);

/// A lock one of this router's sessions holds: the session and the entry's revision.
type Held = (Arc<str>, u64);

/// This router's side of the cluster's locks.
pub(crate) struct Locks {
    bucket: LockBucket,
    router: String,
    /// Locks this router's sessions hold: address → (session, entry revision).
    held: parking_lot::Mutex<HashMap<Arc<str>, Held>>,
}

/// Lock changes from the bucket's watch.
pub(crate) type LockWatch = BoxStream<'static, Result<LockChange, KvError>>;

fn lease_us() -> u64 {
    LEASE.as_micros() as u64
}

impl Locks {
    /// Opens the lock bucket and gives `core` the locks held now.
    pub(crate) async fn open(
        js: &async_nats::jetstream::Context,
        name: &str,
        replicas: usize,
        router: String,
        core: &mut Core,
    ) -> Result<(Locks, LockWatch), ServerError> {
        let err = |e: KvError| ServerError::Cluster(format!("cluster {name} locks: {e}"));
        let bucket = LockBucket::open(js, name, LEASE, replicas)
            .await
            .map_err(err)?;
        let empty = bucket.count().await.map_err(err)? == 0;
        let mut watch = bucket.watch().await.map_err(err)?.boxed();
        // The replay: the locks held now, until the watch has caught up.
        if !empty {
            loop {
                match tokio::time::timeout(Duration::from_secs(5), watch.next()).await {
                    Ok(Some(Ok(c))) => {
                        // The core's clock starts about now: the lease counts from here.
                        let holder = c.holder.as_ref().map(|h| h.session.as_str());
                        core.apply_remote_lock(&c.address, holder, lease_us());
                        if c.caught_up {
                            break;
                        }
                    }
                    Ok(Some(Err(e))) => {
                        tracing::warn!(error = %e, "cluster: a lock entry was skipped")
                    }
                    // Nothing came: the entries counted aged out in between.
                    Err(_) => break,
                    Ok(None) => {
                        return Err(ServerError::Cluster(format!(
                            "cluster {name} locks: the replay did not finish"
                        )));
                    }
                }
            }
        }
        Ok((
            Locks {
                bucket,
                router,
                held: parking_lot::Mutex::new(HashMap::new()),
            },
            watch,
        ))
    }

    /// Takes the lock on `address` for `session` (a SET asked for it).
    pub(crate) async fn take(
        &self,
        address: &Arc<str>,
        session: &Arc<str>,
    ) -> Result<(), LockError> {
        let holder = Holder {
            session: session.to_string(),
            router: self.router.clone(),
        };
        let rev = self.bucket.take(address, &holder).await?;
        self.held
            .lock()
            .insert(address.clone(), (session.clone(), rev));
        Ok(())
    }
}

/// Renews, releases and follows the locks until the server stops.
pub(crate) async fn run(
    locks: Arc<Locks>,
    mut releases: mpsc::UnboundedReceiver<(Arc<str>, Arc<str>)>,
    mut watch: LockWatch,
    shared: Arc<Shared>,
) {
    let mut tick = tokio::time::interval(LEASE / 3);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            r = releases.recv() => {
                let Some((address, session)) = r else { return };
                let entry = locks.held.lock().get(&address).cloned();
                if let Some((holder, rev)) = entry && holder == session {
                    locks.held.lock().remove(&address);
                    if let Err(e) = locks.bucket.release(&address, rev).await {
                        tracing::warn!(%address, error = %e, "cluster: cannot release a lock (it frees itself when its lease ends)");
                    }
                }
            }
            _ = tick.tick() => {
                let held: Vec<(Arc<str>, Held)> =
                    locks.held.lock().iter().map(|(a, h)| (a.clone(), h.clone())).collect();
                for (address, (session, rev)) in held {
                    let holder = Holder { session: session.to_string(), router: locks.router.clone() };
                    match locks.bucket.renew(&address, &holder, rev).await {
                        Ok(new) => {
                            if let Some(h) = locks.held.lock().get_mut(&address) && h.1 == rev {
                                h.1 = new;
                            }
                        }
                        Err(e) => {
                            tracing::warn!(%address, %session, error = %e, "cluster: a lock could not be renewed and is lost");
                            locks.held.lock().remove(&address);
                        }
                    }
                }
            }
            c = watch.next() => match c {
                Some(Ok(c)) => {
                    let holder = c.holder.map(|h| h.session);
                    shared.with_core(|core, now: Now| {
                        core.apply_remote_lock(&c.address, holder.as_deref(), now.mono + lease_us());
                    });
                }
                Some(Err(e)) => tracing::warn!(error = %e, "cluster: a lock entry was skipped"),
                None => {
                    tracing::warn!("cluster: the locks' watch ended; starting it again");
                    loop {
                        match locks.bucket.watch().await {
                            Ok(w) => { watch = w.boxed(); break; }
                            Err(e) => {
                                tracing::warn!(error = %e, "cluster: cannot watch the locks yet");
                                tokio::time::sleep(Duration::from_secs(1)).await;
                            }
                        }
                    }
                }
            },
        }
    }
}
