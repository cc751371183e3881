//! Write-behind persistence: a dedicated thread takes the params changed since its last pass
//! (coalesced: one write per address however often it changed) every flush interval and writes
//! them in one transaction, so persistence never slows SET handling. A failed write is kept and
//! retried with the next pass, never dropped.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use clasp_store::{Batch, Store, StoredParam};

use super::Shared;
use crate::core::Router;
use crate::core::state::Param;

/// Persistence counters.
#[derive(Debug, Default)]
pub(crate) struct Status {
    pub(crate) errors: AtomicU64,
    pub(crate) written: AtomicU64,
}

/// Loads stored params into the core.
pub(crate) fn restore(core: &mut Router, params: Vec<StoredParam>) {
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
            },
        );
    }
}

/// The running persistence thread.
pub(crate) struct Persister {
    stop: mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

pub(crate) fn spawn(shared: Arc<Shared>, store: Box<dyn Store>) -> Persister {
    let (stop, stopped) = mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("clasp-persist".into())
        .spawn(move || run(&shared, store, &stopped))
        .unwrap_or_else(|e| panic!("cannot start the persistence thread: {e}"));
    Persister { stop, thread }
}

/// Stops the thread after a final flush.
pub(crate) async fn stop(p: Persister) {
    let _ = p.stop.send(());
    let _ = tokio::task::spawn_blocking(move || p.thread.join()).await;
}

fn run(shared: &Shared, mut store: Box<dyn Store>, stopped: &mpsc::Receiver<()>) {
    let interval = shared.config.flush_interval;
    let mut pending: HashMap<Arc<str>, Option<StoredParam>> = HashMap::new();
    let mut last_warning: Option<Instant> = None;
    loop {
        let stopping = match stopped.recv_timeout(interval) {
            Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => true,
            Err(mpsc::RecvTimeoutError::Timeout) => false,
        };
        let (present, removed) = shared.core.lock().params_mut().take_dirty();
        for (addr, p) in present {
            let stored = StoredParam {
                address: addr.to_string(),
                value: p.value,
                revision: p.revision,
                writer: p.writer.to_string(),
                timestamp: p.timestamp,
                expires_at: p.expires_at,
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
