//! Kept MQTT sessions across a clean restart: saved to a record table of the router's store
//! when the listener or the router shuts down, loaded (and removed) when the listener starts.
//! A crash loses them, as it loses any in-memory session.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clasp_store::{RecordBatch, RecordTable};
use serde::{Deserialize, Serialize};

/// One kept session as stored (JSON; payloads in hex).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Saved {
    pub(crate) client_id: String,
    pub(crate) v5: bool,
    pub(crate) token: Option<String>,
    /// When the session expires, in milliseconds since the Unix epoch (`u64::MAX`: never).
    pub(crate) expires_ms: u64,
    pub(crate) subs: Vec<SavedSub>,
    /// Unacknowledged publishes first (with their packet ids), in order, then the queue.
    pub(crate) pending: Vec<SavedMsg>,
    pub(crate) qos2: Vec<u16>,
    pub(crate) next_pkid: u16,
}

/// A subscription of a saved session.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SavedSub {
    pub(crate) filter: String,
    pub(crate) qos: u8,
    pub(crate) rap: bool,
    pub(crate) no_local: bool,
    /// MQTT 5 subscription identifier.
    #[serde(default)]
    pub(crate) id: Option<u32>,
}

/// A message waiting for a saved session's client.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SavedMsg {
    pub(crate) topic: String,
    pub(crate) payload: String,
    pub(crate) qos: u8,
    pub(crate) retain: bool,
    pub(crate) state: bool,
    /// The packet id it was sent with and not acknowledged.
    pub(crate) pkid: Option<u16>,
    /// QoS 2: PUBREL was sent, PUBCOMP is awaited.
    #[serde(default)]
    pub(crate) released: bool,
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The expiry `keep` from now, as stored.
pub(crate) fn expires_ms(keep: Duration) -> u64 {
    if keep == Duration::MAX {
        return u64::MAX;
    }
    let keep = u64::try_from(keep.as_millis()).unwrap_or(u64::MAX);
    now_ms().saturating_add(keep)
}

/// How long a stored expiry is from now (`None`: already past).
pub(crate) fn remaining(expires_ms: u64) -> Option<Duration> {
    if expires_ms == u64::MAX {
        return Some(Duration::MAX);
    }
    let left = expires_ms.checked_sub(now_ms()).filter(|ms| *ms > 0)?;
    Some(Duration::from_millis(left))
}

/// Every saved session, removed from the table (they live in memory from now on). Records
/// that do not decode are dropped with a warning.
pub(crate) fn take_all(table: &dyn RecordTable) -> Vec<Saved> {
    let records = match table.load_all() {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "kept MQTT sessions could not be loaded");
            return Vec::new();
        }
    };
    let mut out = Vec::with_capacity(records.len());
    let mut batch = RecordBatch::default();
    for (key, value) in records {
        match serde_json::from_slice::<Saved>(&value) {
            Ok(s) => out.push(s),
            Err(e) => {
                tracing::warn!(client_id = key, error = %e, "a kept MQTT session record does not decode; dropped")
            }
        }
        batch.deletes.push(key);
    }
    if let Err(e) = table.apply(&batch) {
        tracing::warn!(error = %e, "loaded MQTT sessions could not be removed from the store");
    }
    out
}

/// Stores `sessions` (replacing records of the same client ids).
pub(crate) fn put_all(table: &dyn RecordTable, sessions: &[Saved]) {
    let mut batch = RecordBatch::default();
    for s in sessions {
        match serde_json::to_vec(s) {
            Ok(v) => batch.puts.push((s.client_id.clone(), v)),
            Err(e) => tracing::warn!(client_id = s.client_id, error = %e, "MQTT session not saved"),
        }
    }
    if batch.is_empty() {
        return;
    }
    match table.apply(&batch) {
        Ok(()) => tracing::info!(sessions = sessions.len(), "kept MQTT sessions saved"),
        Err(e) => tracing::warn!(error = %e, "kept MQTT sessions could not be saved"),
    }
}
