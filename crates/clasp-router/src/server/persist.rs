//! Write-behind persistence: a dedicated thread takes the params changed since its last pass
//! (coalesced: one write per address however often it changed) every flush interval and writes
//! them in one transaction, so persistence never slows SET handling. A failed write is kept and
//! retried with the next pass, never dropped.
//!
//! QoS Commit writes are the exception to "behind": the core holds their ACKs and the thread is
//! woken at once to write; when the transaction is on disk, the ACKs of every Commit write it
//! holds go out. Commit writes arriving while a transaction is being synced share the next
//! one (group commit).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use clasp_store::{Batch, Store, StoredAttachment, StoredParam};

use super::Core;
use super::Shared;
use crate::core::adapter::{Attached, Persisted};
use crate::core::state::Param;

/// Persistence counters.
#[derive(Debug, Default)]
pub(crate) struct Status {
    pub(crate) errors: AtomicU64,
    pub(crate) written: AtomicU64,
}

/// Loads stored params into the core.
pub(crate) fn restore(core: &mut Core, params: Vec<StoredParam>) {
    let store = core.params_mut();
    for p in params {
        store.restore(
            Arc::from(p.address),
            Param {
                value: p.value,
                revision: p.revision,
                writer: Arc::from(p.writer),
                timestamp: p.timestamp,
                lock: None,
                expires_at: p.expires_at,
                sliding: None,
                attached: p.attachment.map(|a| {
                    Arc::new(Persisted {
                        kind: Arc::from(a.kind),
                        bytes: a.bytes.into(),
                    }) as Attached
                }),
            },
        );
    }
}

/// The stored form of an adapter's attachment, if it has one the store can take.
fn stored(a: &dyn crate::core::adapter::Attachment) -> Option<StoredAttachment> {
    let p = a.persist()?;
    if p.kind.len() > 255 {
        // The record format names kinds in at most 255 bytes; refusing the whole batch over
        // it would stop persistence, so the value is kept and this attachment is not.
        tracing::warn!(kind = %p.kind, "an attachment kind over 255 bytes is not persisted");
        return None;
    }
    Some(StoredAttachment {
        kind: p.kind.to_string(),
        bytes: p.bytes.to_vec(),
    })
}

/// Wakes the persistence thread: to write now (a Commit write waits) or to stop.
#[derive(Debug, Default)]
pub(crate) struct Wake {
    state: Mutex<WakeState>,
    cv: Condvar,
}

#[derive(Debug, Default, Clone, Copy)]
struct WakeState {
    now: bool,
    stop: bool,
}

impl Wake {
    /// Asks for a pass now rather than at the next interval.
    pub(crate) fn write_now(&self) {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .now = true;
        self.cv.notify_one();
    }

    fn stop(&self) {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .stop = true;
        self.cv.notify_one();
    }

    /// Waits up to `interval` for a request; whether to stop.
    fn wait(&self, interval: Duration) -> bool {
        let guard = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let (mut guard, _) = self
            .cv
            .wait_timeout_while(guard, interval, |s| !s.now && !s.stop)
            .unwrap_or_else(PoisonError::into_inner);
        guard.now = false;
        guard.stop
    }
}

/// The running persistence thread.
pub(crate) struct Persister {
    wake: Arc<Wake>,
    thread: std::thread::JoinHandle<()>,
}

pub(crate) fn spawn(shared: Arc<Shared>, store: Box<dyn Store>) -> Persister {
    let wake = shared.persist_wake.clone();
    let thread = std::thread::Builder::new()
        .name("clasp-persist".into())
        .spawn(move || run(&shared, store))
        .unwrap_or_else(|e| panic!("cannot start the persistence thread: {e}"));
    Persister { wake, thread }
}

/// Stops the thread after a final flush.
pub(crate) async fn stop(p: Persister) {
    p.wake.stop();
    let _ = tokio::task::spawn_blocking(move || p.thread.join()).await;
}

fn run(shared: &Shared, mut store: Box<dyn Store>) {
    let interval = shared.config.flush_interval;
    let mut pending: HashMap<Arc<str>, Option<StoredParam>> = HashMap::new();
    let mut last_warning: Option<Instant> = None;
    loop {
        let stopping = shared.persist_wake.wait(interval);
        let (present, removed, epoch, commits) = {
            let mut core = shared.core.lock();
            let waiting = core.commits_waiting();
            let store = core.params_mut();
            let (present, removed) = store.take_dirty();
            (present, removed, store.epoch(), waiting)
        };
        for (addr, p) in present {
            let stored = StoredParam {
                address: addr.to_string(),
                value: p.value,
                revision: p.revision,
                writer: p.writer.to_string(),
                timestamp: p.timestamp,
                expires_at: p.expires_at,
                attachment: p.attached.as_ref().and_then(|a| stored(&**a)),
            };
            pending.insert(addr, Some(stored));
        }
        for addr in removed {
            pending.insert(addr, None);
        }
        if !pending.is_empty() {
            let mut batch = Batch::default();
            for (addr, p) in &pending {
                match p {
                    Some(p) => batch.upserts.push(p.clone()),
                    None => batch.deletes.push(addr.to_string()),
                }
            }
            match store.apply(&batch) {
                Ok(()) => {
                    shared
                        .persist
                        .written
                        .fetch_add(pending.len() as u64, Ordering::Relaxed);
                    pending.clear();
                }
                Err(e) => {
                    shared.persist.errors.fetch_add(1, Ordering::Relaxed);
                    if last_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                        tracing::error!(error = %e, pending = pending.len(), "writing state failed; will retry");
                        last_warning = Some(Instant::now());
                    }
                }
            }
        }
        // Everything up to `epoch` is on disk: the Commit ACKs waiting for it can go.
        if pending.is_empty() && commits > 0 {
            shared.with_core(|core, _| core.persisted(epoch));
        }
        if stopping {
            if pending.is_empty() {
                tracing::info!(store = %store.describe(), "state flushed");
            } else {
                tracing::error!(
                    pending = pending.len(),
                    "could not write the last changes to the state database"
                );
            }
            return;
        }
    }
}
